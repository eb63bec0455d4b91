"""``wrap_anthropic``: messages.create through the cache.

Same shape as the OpenAI wrapper: upstream calls go through a ``max_retries=0`` copy of the
client (the cache retries), the provider's raw JSON is stored, and hits are rebuilt with the
SDK's own model class (validated, with ``construct`` as the fallback) into a real ``anthropic.types.Message``. Streaming passes through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._cache import Cache
from .._models import CacheOptions, CacheRequest
from ._common import Passthrough, build, clean_params, loads, request_body, tag

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic


def wrap_anthropic(client: AsyncAnthropic, cache: Cache, tenant: str | None = None) -> Any:
    """Return a client that behaves like ``client`` with ``messages.create`` answered from
    ``cache`` when possible. Everything else passes through."""
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
        self._upstream = upstream.messages
        self._cache = cache
        self._tenant = tenant

    async def create(self, *, cache_options: CacheOptions | None = None, **kwargs: Any) -> Any:
        from anthropic.types import Message

        params = clean_params(kwargs)
        if params.get("stream"):
            return await self._inner.create(**params)
        request = CacheRequest(
            "anthropic", "messages", request_body(params), self._tenant, cache_options
        )

        async def send() -> Any:
            raw = await self._upstream.with_raw_response.create(**params)
            return loads(await raw.read())

        result = await self._cache.get_or_fetch(request, send)
        return tag(build(Message, result.value), result.status)
