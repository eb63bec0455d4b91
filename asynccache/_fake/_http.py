"""Just enough HTTP/1.1 for the FakeProvider, on plain asyncio streams.

Why not a web framework: the fake must run inside the test's own event loop with no new
dependencies, and tests need control a framework hides (closing a connection without an answer,
cutting a stream mid-body). The subset: keep-alive, ``Content-Length`` request bodies,
``Content-Length`` responses, and chunked responses for server-sent events (RFC 9112 §7.1).
Chunked *request* bodies are refused with 501; the SDKs never send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

import orjson

#: StreamReader limit: the largest request head accepted (bodies are read by length, unbounded).
MAX_HEAD_BYTES = 1 << 20

_EXTRA_REASONS = {529: "Overloaded"}

Headers = Iterable[tuple[str, str]]


class BadRequest(Exception):
    """The bytes on the wire are not a request this server understands: answer once, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """Read one request; ``None`` when the client closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest(400, "incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None
    lines = head[:-4].decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest(501, "chunked request bodies are not supported by FakeProvider")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise BadRequest(400, "invalid Content-Length")
    body = await reader.readexactly(int(length)) if int(length) else b""
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    path, _, query = target.partition("?")
    return HttpRequest(method.upper(), path, query, headers, body, keep_alive)


def _head(status: int, headers: Headers, *, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = _EXTRA_REASONS.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_response(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    headers: Headers = (),
    content_type: str = "application/json",
    keep_alive: bool = True,
) -> None:
    """Send a whole response with a ``Content-Length`` body."""
    all_headers = [("content-type", content_type), ("content-length", str(len(body))), *headers]
    writer.write(_head(status, all_headers, keep_alive=keep_alive) + body)
    await writer.drain()


class ChunkedResponse:
    """A response whose body is sent piece by piece (chunked transfer coding).

    Ending it writes the zero-length last chunk, so the connection stays reusable; a caller
    that wants the client to see a cut stream simply closes the connection instead.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def start(
        self, status: int, *, content_type: str, headers: Headers = (), keep_alive: bool = True
    ) -> None:
        all_headers = [
            ("content-type", content_type),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
            *headers,
        ]
        self._writer.write(_head(status, all_headers, keep_alive=keep_alive))
        await self._writer.drain()

    async def send(self, data: bytes) -> None:
        if data:
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()

    async def end(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()


Handler = Callable[[HttpRequest, asyncio.StreamWriter], Awaitable[bool]]


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler
) -> None:
    """Answer requests on one connection until either side closes it.

    ``handle`` answers one request and returns whether the connection may be reused. The
    connection is closed on every way out, including cancellation by the server's shutdown.
    """
    try:
        while True:
            try:
                request = await read_request(reader)
            except BadRequest as exc:
                error = {"error": {"message": exc.message, "type": "invalid_request_error"}}
                await send_response(writer, exc.status, orjson.dumps(error), keep_alive=False)
                return
            if request is None or not await handle(request, writer):
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return  # the client went away mid-request or mid-answer: nothing left to say
    finally:
        writer.close()
