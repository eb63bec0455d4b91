"""Server-sent events, both ways: the provider's byte stream to events, and events back to bytes.

Decoding follows the WHATWG HTML "event stream" rules (lines end in CRLF, LF or CR; ``:``
starts a comment; ``data`` lines are joined with LF; a blank line dispatches; an event with no
data is dropped). Payloads are parsed when they are JSON objects or arrays, and kept as text
otherwise (OpenAI's ``[DONE]``), so encoding gives back what the provider sent, field for field.
Our own decoder, not the SDKs' (private, and different in each SDK): the cache reads raw events
once, records them, and hands every caller the same bytes for its own SDK to parse.
"""

from __future__ import annotations

from typing import Any

import orjson

from .._recording import Event


def parse_data(text: str) -> Any:
    if text[:1] in ("{", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return text


def encode(event: Event) -> bytes:
    name, data = event
    head = b"event: " + name.encode() + b"\n" if name else b""
    if type(data) is dict or type(data) is list:
        return head + b"data: " + orjson.dumps(data) + b"\n\n"
    lines = str(data).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return head + b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"


class Decoder:
    """Incremental: feed bytes as they arrive, get the events completed so far."""

    def __init__(self) -> None:
        self._buffer = b""
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk
        # A CR at the very end may be the first half of a CRLF split across chunks: keep it.
        keep_cr = buffer.endswith(b"\r")
        if keep_cr:
            buffer = buffer[:-1]
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buffer.split(b"\n")
        self._buffer = rest + (b"\r" if keep_cr else b"")
        out: list[Event] = []
        for line in lines:
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                out.append(event)
        return out

    def close(self) -> list[Event]:
        """End of stream: a last event without its blank line is dropped, as the spec says."""
        self._buffer = b""
        self._name, self._data = None, []
        return []

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data:
                self._name = None
                return None
            event = (self._name, parse_data("\n".join(self._data)))
            self._name, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value or None
        return None  # id and retry are not used by either provider's SDK for these endpoints
