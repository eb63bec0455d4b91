"""FakeProvider: an OpenAI- and Anthropic-compatible HTTP server for tests, demos and load tests.

Why it exists: the cache must be tested against the *real* SDKs (their request building, retries,
response parsing and streaming all change how a caching layer behaves), without network access,
keys or cost. FakeProvider runs inside the caller's own event loop on ``127.0.0.1`` and a free
port, answers deterministically, counts what it receives, and injects the failures a cache must
survive (HTTP errors with ``Retry-After``, dropped connections, stalls, streams cut midway)::

    async with FakeProvider(latency=0.05) as fp:
        client = openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="test")
        await client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert fp.calls_by_endpoint["/v1/chat/completions"] == 1

    anthropic.AsyncAnthropic(base_url=fp.anthropic_base_url, api_key="test")  # no /v1: the SDK adds it

Endpoints: ``POST /v1/chat/completions``, ``/v1/embeddings``, ``/v1/responses``, ``/v1/messages``
(each with ``stream: true`` where the real API has it, except embeddings),
``/v1/messages/count_tokens``, and ``GET /v1/models`` (Anthropic-shaped when the request carries
``anthropic-version``). Answers are a pure function of the request ("Answer to: <the last user
message>" plus a sentence or two, at most ~50 tokens); ids and timestamps are fresh per call.
A request asking for fewer ``max_tokens`` than the answer needs is cut and finishes with
``length`` / ``max_tokens``, as the real APIs do (``honour_max_tokens=False`` turns that off).
Tools: the model calls a tool when ``tool_choice`` forces one, or when the last user message
mentions "weather"; it answers in words once a tool result is sent back.

Every knob is a constructor argument *and* a plain attribute, so a test can change behaviour
between calls. API keys are never stored: ``last_headers`` omits credential headers.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import orjson

from ._fake import _anthropic, _openai
from ._fake._content import InvalidRequest, Prompt, Reply, new_id, plan_reply
from ._fake._http import (
    MAX_HEAD_BYTES,
    ChunkedResponse,
    HttpRequest,
    send_response,
    serve_connection,
)
from ._fake.redis_server import RedisClusterServer, RedisServer

__all__ = ["FakeProvider", "RedisClusterServer", "RedisServer"]

FailureKind = Literal["status", "disconnect", "stall"]
Provider = Literal["openai", "anthropic"]

#: Headers that may carry credentials: never kept in ``last_headers``.
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie", "x-goog-api-key"}
)
MAX_RECORDED_REQUESTS = 10_000


@dataclass(frozen=True)
class _Failure:
    kind: FailureKind
    status: int
    retry_after: float | None
    body: object
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Generator:
    """One text-generating endpoint: read the prompt, shape the whole answer or its stream."""

    prompt: Callable[[Mapping[str, Any]], Prompt]
    whole: Callable[[Mapping[str, Any], Reply], dict[str, Any]]
    stream: Callable[[Mapping[str, Any], Reply], Iterator[bytes]]


_GENERATORS = {
    "/v1/chat/completions": _Generator(
        _openai.chat_prompt, _openai.chat_completion, _openai.chat_stream
    ),
    "/v1/responses": _Generator(
        _openai.responses_prompt, _openai.response_body, _openai.response_stream
    ),
    "/v1/messages": _Generator(
        _anthropic.message_prompt, _anthropic.message_body, _anthropic.message_stream
    ),
}
_POST_PATHS = frozenset({*_GENERATORS, "/v1/embeddings", "/v1/messages/count_tokens"})
_GET_PATHS = frozenset({"/v1/models"})


class FakeProvider:
    """A deterministic OpenAI/Anthropic stand-in server; see the module docstring.

    Counters (reset with :meth:`reset`): ``calls`` counts every request received, answered or
    failed; ``calls_by_endpoint`` counts them by URL path; ``requests`` holds the JSON bodies
    received (the last 10,000); ``concurrent_max`` is the peak number of requests in progress;
    ``last_headers`` are the last request's headers, lower-case, without credentials.

    Token knobs: ``prompt_tokens`` / ``completion_tokens`` replace the estimates (about four
    characters per token); ``cached_tokens`` is reported as OpenAI's ``cached_tokens`` and
    Anthropic's ``cache_read_input_tokens``; ``cache_creation_tokens`` as Anthropic's
    ``cache_creation_input_tokens`` and OpenAI's ``cache_write_tokens``, of which
    ``cache_creation_1h_tokens`` are reported as Anthropic's 1-hour cache writes
    (``cache_creation.ephemeral_1h_input_tokens``); ``reasoning_tokens`` as OpenAI's
    ``reasoning_tokens``.
    """

    def __init__(
        self,
        *,
        latency: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        answer: str | Callable[[Mapping[str, Any]], str] | None = None,
        finish_reason: str | None = None,
        empty_answer: bool = False,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cached_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cache_creation_1h_tokens: int = 0,
        reasoning_tokens: int = 0,
        honour_max_tokens: bool = True,
        embedding_dimensions: int = 8,
        stall_seconds: float = 30.0,
        stream_chunk_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        #: Seconds per call, or a (low, high) range drawn from ``rng`` (seeded by ``seed``).
        self.latency = latency
        self.rng = random.Random(seed)
        #: Fixed answer text, or a function of the request body; None: the deterministic answer.
        self.answer = answer
        #: Reported instead of the natural finish ("length", "content_filter", ...); OpenAI words
        #: are mapped to Anthropic's ("length" -> "max_tokens"), other values are sent verbatim.
        self.finish_reason = finish_reason
        #: Answer with no text and no tool call.
        self.empty_answer = empty_answer
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cached_tokens = cached_tokens
        self.cache_creation_tokens = cache_creation_tokens
        self.cache_creation_1h_tokens = cache_creation_1h_tokens
        self.reasoning_tokens = reasoning_tokens
        self.honour_max_tokens = honour_max_tokens
        self.embedding_dimensions = embedding_dimensions
        #: How long a ``fail_next(kind="stall")`` request is held before it is answered normally.
        self.stall_seconds = stall_seconds
        #: Pause between stream events (0: send as fast as the client reads).
        self.stream_chunk_delay = stream_chunk_delay
        self.host = host
        self._requested_port = port

        self.calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.concurrent_max = 0
        self.last_headers: dict[str, str] = {}
        self._active = 0
        self._failures: list[_Failure] = []
        self._abort_after: int | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeProvider:
        """Start listening (in the running event loop); returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeProvider is already started")
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._requested_port, limit=MAX_HEAD_BYTES
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def aclose(self) -> None:
        """Stop listening and drop every open connection (in-flight answers are cut)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks, writers = list(self._connections), list(self._connections.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.transport.abort()
        for writer in writers:
            with suppress(Exception):
                await writer.wait_closed()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks close the sockets

    async def __aenter__(self) -> FakeProvider:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeProvider is not started: use 'async with' or 'await start()'")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """For ``AsyncOpenAI(base_url=...)``: the SDK appends ``/chat/completions`` etc."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For ``AsyncAnthropic(base_url=...)``: the SDK's paths already start with ``/v1``."""
        return self.base_url

    # --- control ------------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        kind: FailureKind = "status",
        retry_after: float | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``n`` requests fail, in arrival order (queued after earlier calls).

        ``kind="status"``: answer ``status`` with a provider-shaped error (or ``body``: a dict
        is sent as JSON, str/bytes verbatim), a ``retry-after`` header when ``retry_after`` is
        given, plus ``headers``. ``"disconnect"``: close the connection without answering.
        ``"stall"``: hold the request for ``stall_seconds``, then answer normally.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if kind not in ("status", "disconnect", "stall"):
            raise ValueError(f"kind must be 'status', 'disconnect' or 'stall', got {kind!r}")
        if kind == "status" and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status!r}")
        failure = _Failure(kind, status, retry_after, body, tuple((headers or {}).items()))
        self._failures.extend([failure] * n)

    def abort_stream_after(self, k: int) -> None:
        """Cut the next streamed answer after ``k`` SSE events: the connection is closed with
        the chunked body unfinished, so the client sees a transport error, never a finish.

        ``k`` counts events on the wire: Anthropic streams carry a ``ping`` second, which the
        SDK skips, and OpenAI chat streams end with ``data: [DONE]``, which it consumes.
        """
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}")
        self._abort_after = k

    @property
    def pending_failures(self) -> int:
        return len(self._failures)

    def reset(self) -> None:
        """Zero the counters and drop pending failures and stream aborts (knobs are kept)."""
        self.calls = 0
        self.calls_by_endpoint.clear()
        self.requests.clear()
        self.concurrent_max = self._active
        self.last_headers = {}
        self._failures.clear()
        self._abort_after = None

    # --- serving ------------------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task (not start_server's coroutine form), so shutdown can cancel it cleanly.
        coro = serve_connection(reader, writer, self._handle)
        task = asyncio.get_running_loop().create_task(coro, name="FakeProvider connection")
        self._connections[task] = writer
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._connections.pop(task, None)

    async def _handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; returns whether the connection may carry another."""
        provider: Provider = (
            "anthropic"
            if request.path.startswith("/v1/messages") or "anthropic-version" in request.headers
            else "openai"
        )
        self.calls += 1
        self.calls_by_endpoint[request.path] += 1
        self.last_headers = {k: v for k, v in request.headers.items() if k not in SECRET_HEADERS}
        try:
            body = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            return await self._error(writer, request, provider, 400, "request body is not JSON")
        if isinstance(body, dict):
            self.requests.append(body)
            del self.requests[:-MAX_RECORDED_REQUESTS]
        self._active += 1
        self.concurrent_max = max(self.concurrent_max, self._active)
        try:
            failure = self._failures.pop(0) if self._failures else None
            await self._sleep(self._latency())
            if failure is not None and failure.kind == "disconnect":
                return False
            if failure is not None and failure.kind == "stall":
                await self._sleep(self.stall_seconds)
            elif failure is not None:
                return await self._send_failure(writer, request, provider, failure)
            return await self._route(writer, request, provider, body)
        finally:
            self._active -= 1

    async def _route(
        self, writer: asyncio.StreamWriter, request: HttpRequest, provider: Provider, body: Any
    ) -> bool:
        allowed = _GET_PATHS if request.method == "GET" else _POST_PATHS
        if request.path not in allowed:
            known = request.path in _GET_PATHS | _POST_PATHS
            status, what = (405, "method not allowed") if known else (404, "unknown path")
            message = f"FakeProvider: {what}: {request.method} {request.path}"
            return await self._error(writer, request, provider, status, message)
        if request.method == "GET":
            models = _anthropic.models_body() if provider == "anthropic" else _openai.models_body()
            return await self._json(writer, request, provider, models)
        if not isinstance(body, dict):
            return await self._error(writer, request, provider, 400, "body must be a JSON object")
        try:
            if request.path == "/v1/embeddings":
                answer = _openai.embeddings(body, self.embedding_dimensions)
            elif request.path == "/v1/messages/count_tokens":
                reply = plan_reply(_anthropic.message_prompt(body), body, self)
                answer = {"input_tokens": reply.prompt_tokens}
            else:
                generator = _GENERATORS[request.path]
                reply = plan_reply(generator.prompt(body), body, self)
                if body.get("stream") is True:
                    events = generator.stream(body, reply)
                    return await self._stream(writer, request, provider, events)
                answer = generator.whole(body, reply)
        except InvalidRequest as exc:
            return await self._error(writer, request, provider, 400, str(exc))
        except Exception as exc:  # a bug here must reach the test as an answer, not a hang
            message = f"FakeProvider could not answer: {exc!r}"
            return await self._error(writer, request, provider, 500, message)
        return await self._json(writer, request, provider, answer)

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        request: HttpRequest,
        provider: Provider,
        events: Iterator[bytes],
    ) -> bool:
        abort_after, self._abort_after = self._abort_after, None
        response = ChunkedResponse(writer)
        await response.start(
            200,
            content_type="text/event-stream; charset=utf-8",
            headers=self._headers(provider),
            keep_alive=request.keep_alive,
        )
        for index, event in enumerate(events):
            if index == abort_after:
                return False  # closing now leaves the chunked body unfinished: a cut stream
            if index and self.stream_chunk_delay > 0:
                await asyncio.sleep(self.stream_chunk_delay)
            await response.send(event)
        if abort_after is not None:  # the stream had fewer events than k: still cut it
            return False
        await response.end()
        return request.keep_alive

    async def _send_failure(
        self, writer: asyncio.StreamWriter, request: HttpRequest, provider: Provider, f: _Failure
    ) -> bool:
        headers = [*self._headers(provider), *f.headers]
        if f.retry_after is not None:
            headers.append(("retry-after", f"{f.retry_after:g}"))
        if f.body is None:
            message = f"FakeProvider: injected failure with status {f.status}"
            return await self._error(writer, request, provider, f.status, message, headers)
        if isinstance(f.body, bytes):
            payload = f.body
        elif isinstance(f.body, str):
            payload = f.body.encode()
        else:
            payload = orjson.dumps(f.body)
        await send_response(
            writer, f.status, payload, headers=headers, keep_alive=request.keep_alive
        )
        return request.keep_alive

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        request: HttpRequest,
        provider: Provider,
        status: int,
        message: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> bool:
        shape = _anthropic.error_body if provider == "anthropic" else _openai.error_body
        await send_response(
            writer,
            status,
            orjson.dumps(shape(status, message)),
            headers=headers if headers is not None else self._headers(provider),
            keep_alive=request.keep_alive,
        )
        return request.keep_alive

    async def _json(
        self, writer: asyncio.StreamWriter, request: HttpRequest, provider: Provider, answer: Any
    ) -> bool:
        await send_response(
            writer,
            200,
            orjson.dumps(answer),
            headers=self._headers(provider),
            keep_alive=request.keep_alive,
        )
        return request.keep_alive

    @staticmethod
    def _headers(provider: Provider) -> list[tuple[str, str]]:
        name = "request-id" if provider == "anthropic" else "x-request-id"
        return [(name, new_id("req_"))]

    def _latency(self) -> float:
        if isinstance(self.latency, tuple):
            low, high = self.latency
            return self.rng.uniform(low, high)
        return float(self.latency)

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
