"""``wrap_openai``: chat.completions, responses and embeddings through the cache.

The cache makes its upstream calls through a copy of the client with ``max_retries=0`` (the
cache's own tenacity policy retries; attempts must not multiply) and reads the provider's raw
JSON, so what is stored is byte-for-byte what the provider said, and a hit is rebuilt with the
SDK's own model class (validated, with ``construct`` as the fallback) into the very type a miss returns (``ChatCompletion``, ``Response``…).

Embeddings are cached per input text: a batch of 100 texts with 90 cached sends one request
for the other 10 and reassembles the answer in the caller's order. OpenAI reports one token
count per batch; it is split over the texts in proportion to their length, for accounting only.

Streaming requests pass through uncached for now (a later issue records and replays streams).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._cache import Cache
from .._models import CacheOptions, CacheRequest, CacheStatus
from ._common import Passthrough, build, clean_params, loads, request_body, tag

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

    def __init__(self, inner: Any, upstream: Any, cache: Cache, tenant: str | None) -> None:
        super().__init__(inner)
        self._upstream = upstream
        self._cache = cache
        self._tenant = tenant

    def _resource(self, client: Any) -> Any:
        raise NotImplementedError

    def _build(self, value: Any) -> Any:
        raise NotImplementedError

    async def create(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        params = clean_params(kwargs)
        if params.get("stream"):
            return await self._inner.create(**params)
        request = CacheRequest(
            "openai", self.endpoint, request_body(params), self._tenant, cache_options
        )
        resource = self._resource(self._upstream)

        async def send() -> Any:
            raw = await resource.with_raw_response.create(**params)
            return loads(raw.content)

        result = await self._cache.get_or_fetch(request, send)
        return tag(self._build(result.value), result.status)


class _Completions(_Endpoint):
    endpoint = "chat.completions"

    def _resource(self, client: Any) -> Any:
        return client.chat.completions

    def _build(self, value: Any) -> Any:
        from openai.types.chat import ChatCompletion

        return build(ChatCompletion, value)


class _Responses(_Endpoint):
    endpoint = "responses"

    def _resource(self, client: Any) -> Any:
        return client.responses

    def _build(self, value: Any) -> Any:
        from openai.types.responses import Response

        return build(Response, value)


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
