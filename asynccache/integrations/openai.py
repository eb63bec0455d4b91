"""``wrap_openai``: chat.completions, responses and embeddings through the cache.

The cache makes its upstream calls through a copy of the client with ``max_retries=0`` (the
cache's own tenacity policy retries; attempts must not multiply) and reads the provider's raw
JSON, so what is stored is byte-for-byte what the provider said, and a hit is rebuilt with the
SDK's own model class (validated, with ``construct`` as the fallback) into the very type a miss returns (``ChatCompletion``, ``Response``…).

Embeddings are cached per input text: a batch of 100 texts with 90 cached sends one request
for the other 10 and reassembles the answer in the caller's order. OpenAI reports one token
count per batch; it is split over the texts in proportion to their length, for accounting only.

Streams (``stream=True``) are cached too (see ``_streams`` and ``_streaming``): a miss reaches
the caller event by event while it is recorded, a hit replays the recording as the SDK's own
``AsyncStream``, and a stream and a plain request for the same thing share one entry. For chat,
the cache always asks upstream for ``stream_options.include_usage`` (so every stored answer can
be accounted in tokens and serve a plain request whole) and removes the usage chunk again for a
caller who did not ask for it, as the provider would have.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx2

from .._cache import Cache
from .._models import CacheOptions, CacheRequest, CacheStatus, request_of
from .._recording import Event, StreamShape
from . import _chat_stream, _responses_stream
from ._common import Passthrough, build, cache_status, clean_params, loads, request_body, tag
from ._streams import read_events, sdk_stream, url_of

if TYPE_CHECKING:
    from openai import AsyncOpenAI


def wrap_openai(client: AsyncOpenAI, cache: Cache, tenant: str | None = None) -> Any:
    """Return a client that behaves like ``client`` with chat completions, responses and
    embeddings answered from ``cache`` when possible. Everything else passes through."""
    return _CachedOpenAI(client, cache, tenant)


class _CachedOpenAI(Passthrough):
    def __init__(self, client: Any, cache: Cache, tenant: str | None) -> None:
        super().__init__(client)
        upstream = client.with_options(max_retries=0)
        self.chat = _Chat(
            client.chat, _Completions(client.chat.completions, upstream, cache, tenant)
        )
        self.responses = _Responses(client.responses, upstream, cache, tenant)
        self.embeddings = _Embeddings(client.embeddings, upstream, cache, tenant)
        self._cache = cache
        self._tenant = tenant

    def with_options(self, **options: Any) -> Any:
        """The SDK's per-call client copy (``timeout=``, ``max_retries=``…), still cached."""
        return wrap_openai(self._inner.with_options(**options), self._cache, self._tenant)

    copy = with_options


class _Chat(Passthrough):
    def __init__(self, inner: Any, completions: _Completions) -> None:
        super().__init__(inner)
        self.completions = completions


class _Endpoint(Passthrough):
    endpoint = ""
    path = ""
    shape: StreamShape

    def __init__(self, inner: Any, upstream: Any, cache: Cache, tenant: str | None) -> None:
        super().__init__(inner)
        self._upstream = upstream
        self._sdk = self._resource(upstream)  # the SDK resource the cache calls, looked up once
        self._cache = cache
        self._tenant = tenant

    def _resource(self, client: Any) -> Any:
        raise NotImplementedError

    def _build(self, value: Any) -> Any:
        raise NotImplementedError

    def _chunk_type(self) -> Any:
        raise NotImplementedError

    def _sent_for_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        """What the cache sends upstream for a stream request (chat adds include_usage)."""
        return params

    def _present(self, events: AsyncIterator[Event], params: Mapping[str, Any]) -> Any:
        """The events this caller's request would have received from the provider."""
        return events

    @staticmethod
    def _terminal(event: Event) -> bool:
        """The event after which the SDK reads no more."""
        raise NotImplementedError

    async def create(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        params = clean_params(kwargs)
        request = request_of(
            "openai", self.endpoint, request_body(params), self._tenant, cache_options
        )
        resource = self._sdk
        if params.get("stream"):
            return await self._stream(request, resource, params)

        async def send() -> Any:
            raw = await resource.with_raw_response.create(**params)
            return loads(raw.content)

        result = await self._cache.get_or_fetch(request, send)
        return tag(self._build(result.value), result.status)

    def stream(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        """The SDK's own ``.stream()`` helper (``async with client.chat.completions.stream(...)
        as s``), over a cached stream. The helper builds the request (a pydantic
        ``response_format``, strict tools) and calls ``create(stream=True)`` on the resource it
        is given: we give it this one, so the SDK's own code does the conversion and parsing."""
        bound = _Bound(self, cache_options)
        return _Tagging(type(self._inner).stream(bound, **kwargs), bound)

    async def _stream(self, request: CacheRequest, resource: Any, params: dict[str, Any]) -> Any:
        from openai import AsyncStream

        sent = self._sent_for_stream(params)

        async def opener() -> AsyncIterator[Event]:
            raw = await resource.with_raw_response.create(**sent)
            response = raw.http_response
            return read_events(
                response, self._terminal, lambda exc: _sdk_error(exc, response.request)
            )

        async def bypass() -> Any:
            return await resource.create(**params)

        answer = await self._cache.get_or_stream(request, opener, self.shape, bypass=bypass)
        if answer.events is None:
            return tag(answer.value, answer.status)
        return sdk_stream(
            AsyncStream,
            self._chunk_type(),
            self._upstream,
            url_of(self._upstream, self.path),
            answer.status,
            answer.events,
            self._present(answer.events, params),
        )


class _Bound(Passthrough):
    """The cached resource with this call's cache options, as the SDK helper's ``resource``."""

    def __init__(self, endpoint: _Endpoint, options: CacheOptions | None) -> None:
        super().__init__(endpoint)
        self._options = options
        self.status: CacheStatus | None = None

    async def create(self, **kwargs: Any) -> Any:
        result = await self._inner.create(cache_options=self._options, **kwargs)
        self.status = cache_status(result)
        return result


class _Tagging:
    """The SDK's stream manager, whose stream also says where it came from (``cache_status``)."""

    def __init__(self, manager: Any, bound: _Bound) -> None:
        self._manager = manager
        self._bound = bound

    async def __aenter__(self) -> Any:
        stream = await self._manager.__aenter__()
        status = self._bound.status
        return tag(stream, status) if status is not None else stream

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._manager.__aexit__(*exc_info)


def _sdk_error(exc: Exception, request: httpx2.Request) -> Exception:
    """What the openai SDK's own stream raises for a transport error."""
    import openai

    if isinstance(exc, httpx2.TimeoutException):
        return openai.APITimeoutError(request=request)
    return openai.APIConnectionError(request=request)


class _Completions(_Endpoint):
    endpoint = "chat.completions"
    path = "chat/completions"
    shape = _chat_stream.SHAPE

    def _resource(self, client: Any) -> Any:
        return client.chat.completions

    def _build(self, value: Any) -> Any:
        return build(_chat_completion(), value)

    def _chunk_type(self) -> Any:
        from openai.types.chat import ChatCompletionChunk

        return ChatCompletionChunk

    @staticmethod
    def _terminal(event: Event) -> bool:
        return bool(event[1] == "[DONE]")

    def _sent_for_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        options = params.get("stream_options") or {}
        return {**params, "stream_options": {**options, "include_usage": True}}

    def _present(self, events: AsyncIterator[Event], params: Mapping[str, Any]) -> Any:
        options = params.get("stream_options") or {}
        return _chat_stream.present(events, include_usage=bool(options.get("include_usage")))


class _Responses(_Endpoint):
    endpoint = "responses"
    path = "responses"
    shape = _responses_stream.SHAPE

    def _resource(self, client: Any) -> Any:
        return client.responses

    def _build(self, value: Any) -> Any:
        return build(_response(), value)

    def _chunk_type(self) -> Any:
        from openai.types.responses import ResponseStreamEvent

        return ResponseStreamEvent

    @staticmethod
    def _terminal(event: Event) -> bool:
        data = event[1]
        return type(data) is dict and data.get("type") in _RESPONSES_TERMINAL


_RESPONSES_TERMINAL = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)


class _Embeddings(Passthrough):
    def __init__(self, inner: Any, upstream: Any, cache: Cache, tenant: str | None) -> None:
        super().__init__(inner)
        self._upstream = upstream.embeddings
        self._cache = cache
        self._tenant = tenant

    async def create(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        from openai.types import CreateEmbeddingResponse

        params = clean_params(kwargs)
        inputs = params.get("input")
        single = isinstance(inputs, str) or (
            isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], int)
        )
        items: list[Any] = [inputs] if single else list(inputs or [])
        if not items:
            return await self._inner.create(**params)
        shared = request_body({k: v for k, v in params.items() if k != "input"})
        requests = [
            CacheRequest(
                "openai", "embeddings", {**shared, "input": item}, self._tenant, cache_options
            )
            for item in items
        ]

        async def fetch(indices: list[int]) -> list[Any]:
            batch = [items[i] for i in indices]
            resp = await self._upstream.create(**{**params, "input": batch})
            total = resp.usage.prompt_tokens if resp.usage else 0
            weights = [len(str(b)) or 1 for b in batch]
            shares = _apportion(total, weights)
            return [
                {"embedding": d.embedding, "tokens": share, "model": resp.model}
                for d, share in zip(sorted(resp.data, key=lambda d: d.index), shares, strict=True)
            ]

        results = await self._cache.get_or_fetch_many(requests, fetch)
        fetched = [r for r in results if r.status.outcome in ("miss", "bypass")]
        tokens = sum(int(r.value.get("tokens", 0)) for r in fetched)
        model = results[0].value.get("model") or params.get("model")
        response = build(
            CreateEmbeddingResponse,
            {
                "object": "list",
                "model": model,
                "data": [
                    {"object": "embedding", "index": i, "embedding": r.value["embedding"]}
                    for i, r in enumerate(results)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )
        outcomes = {r.status.outcome for r in results}
        outcome = "hit" if outcomes == {"hit"} else ("bypass" if outcomes == {"bypass"} else "miss")
        layer = results[0].status.layer if outcome == "hit" else None
        return tag(response, CacheStatus(outcome, layer, None))  # type: ignore[arg-type]


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integer shares proportional to ``weights`` that sum to ``total``."""
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    for i in range(total - sum(shares)):
        shares[i % len(shares)] += 1
    return shares


# The SDK types a hit is rebuilt into, imported on first use (``import asynccache`` must not
# pay for importing openai) and then kept: an import statement costs 0.3 us on every hit.


@functools.cache
def _chat_completion() -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion


@functools.cache
def _response() -> Any:
    from openai.types.responses import Response

    return Response
