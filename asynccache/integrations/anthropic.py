"""``wrap_anthropic``: messages.create (plain and ``stream=True``) and ``messages.stream()``.

Same shape as the OpenAI wrapper: upstream calls go through a ``max_retries=0`` copy of the
client (the cache retries), the provider's raw JSON (or raw stream events) is stored, and hits
are rebuilt with the SDK's own types: a real ``anthropic.types.Message``, or a real
``anthropic.AsyncStream`` of ``RawMessageStreamEvent`` that the SDK's ``AsyncMessageStream``
helper reads as it reads the provider (``text_stream``, ``get_final_message()``…).
``messages.stream(output_format=SomeType)`` (the SDK parses into your type) passes through
uncached: the schema transformation it sends is the SDK's private business.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._cache import Cache
from .._models import CacheOptions, CacheRequest, request_of
from .._recording import Event
from . import _anthropic_stream
from ._common import Passthrough, build, cache_status, clean_params, loads, request_body, tag
from ._streams import read_events, sdk_stream, url_of

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic


def wrap_anthropic(client: AsyncAnthropic, cache: Cache, tenant: str | None = None) -> Any:
    """Return a client that behaves like ``client`` with ``messages.create`` and
    ``messages.stream`` answered from ``cache`` when possible. Everything else passes through."""
    return _CachedAnthropic(client, cache, tenant)


class _CachedAnthropic(Passthrough):
    def __init__(self, client: Any, cache: Cache, tenant: str | None) -> None:
        super().__init__(client)
        self._cache = cache
        self._tenant = tenant
        self.messages = _Messages(
            client.messages, client.with_options(max_retries=0), cache, tenant
        )

    def with_options(self, **options: Any) -> Any:
        """The SDK's per-call client copy (``timeout=``, ``max_retries=``…), still cached."""
        return wrap_anthropic(self._inner.with_options(**options), self._cache, self._tenant)

    copy = with_options


class _Messages(Passthrough):
    def __init__(self, inner: Any, upstream: Any, cache: Cache, tenant: str | None) -> None:
        super().__init__(inner)
        self._client = upstream
        self._upstream = upstream.messages
        self._cache = cache
        self._tenant = tenant

    async def create(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        params = clean_params(kwargs)
        request = request_of(
            "anthropic", "messages", request_body(params), self._tenant, cache_options
        )
        if params.get("stream"):
            return await self._stream(request, params)

        async def send() -> Any:
            raw = await self._upstream.with_raw_response.create(**params)
            return loads(await raw.read())

        result = await self._cache.get_or_fetch(request, send)
        return tag(build(_message(), result.value), result.status)

    def stream(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        """The SDK's ``messages.stream()`` helper over a cached stream: use it as
        ``async with client.messages.stream(...) as stream:``."""
        params = clean_params(kwargs)  # may be ``kwargs`` itself: never changed in place
        if params.get("output_format") is not None:
            return self._inner.stream(**kwargs)
        if "output_format" in params:  # given as None: unset
            params = {k: v for k, v in params.items() if k != "output_format"}
        return _MessageStreamManager(
            lambda: self.create(cache_options=cache_options, **params, stream=True)
        )

    async def _stream(self, request: CacheRequest, params: dict[str, Any]) -> Any:
        from anthropic import AsyncStream
        from anthropic.types import RawMessageStreamEvent

        async def opener() -> AsyncIterator[Event]:
            raw = await self._upstream.with_raw_response.create(**params)
            return read_events(raw.http_response, _terminal)

        async def bypass() -> Any:
            return await self._upstream.create(**params)

        answer = await self._cache.get_or_stream(
            request, opener, _anthropic_stream.SHAPE, bypass=bypass
        )
        if answer.events is None:
            return tag(answer.value, answer.status)
        url = url_of(self._client, "/v1/messages")
        return sdk_stream(
            AsyncStream, RawMessageStreamEvent, self._client, url, answer.status, answer.events
        )


def _terminal(event: Event) -> bool:
    """``message_stop`` ends a message; an ``error`` event ends the stream (the SDK raises)."""
    return event[0] in ("message_stop", "error")


class _MessageStreamManager:
    """Like the SDK's ``AsyncMessageStreamManager``: the request starts on ``__aenter__``, and
    the SDK's own ``AsyncMessageStream`` accumulates the events (tagged with their status)."""

    def __init__(self, start: Callable[[], Awaitable[Any]]) -> None:
        self._start = start
        self._stream: Any = None

    async def __aenter__(self) -> Any:
        from anthropic import NOT_GIVEN
        from anthropic.lib.streaming import AsyncMessageStream

        raw = await self._start()
        self._stream = AsyncMessageStream(raw, output_format=NOT_GIVEN)
        status = cache_status(raw)
        return tag(self._stream, status) if status is not None else self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.close()


@functools.cache
def _message() -> Any:
    """``anthropic.types.Message``, imported once (``import asynccache`` must not import the SDK,
    and an import statement on every hit costs 0.3 us)."""
    from anthropic.types import Message

    return Message
