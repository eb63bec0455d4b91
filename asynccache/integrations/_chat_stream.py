"""OpenAI chat completions: ``chat.completion.chunk`` events <-> the ``chat.completion``.

Why both ways: a stream that finished is stored as the answer the same request without
``stream`` returns, so a plain request can be served from it (:func:`assemble`); an answer
stored whole can serve a stream request (:func:`split`). Field sets follow the openai SDK's
``ChatCompletion`` / ``ChatCompletionChunk`` and the API reference ("Streaming", "The chat
completion chunk object"). Pure functions over JSON: no SDK, no I/O. Results may share nested
values with their input; neither side is mutated.

What a stream cannot carry, so :func:`assemble` cannot give back:

- ``usage`` is None unless the request asked for ``stream_options.include_usage`` (the cache
  always asks upstream, and :func:`present` strips it again for a caller who did not);
- ``metadata`` (stored completions) and chunk-only fields (``obfuscation``) are not copied;
- ``message.annotations`` is ``[]`` when no delta carried annotations (as the API returns);
- audio arrives as base64 pieces: their bytes are joined and encoded once more (a bad piece
  gives None).
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from .._recording import Event, StreamShape

__all__ = ["SHAPE", "assemble", "pieces", "present", "split", "spread_tokens"]

_PIECES = re.compile(r"\s*\S+\s*|\s+")
#: Tool-call (and legacy ``function_call``) fields streamed in pieces, by call kind.
_STREAMED = {"function": "arguments", "custom": "input"}
_CONCAT = frozenset({"content", "refusal", "arguments", "input", "transcript"})
#: What a delta may carry (``ChoiceDelta``, plus ``annotations``).
_DELTA_FIELDS = frozenset(
    {"role", "content", "refusal", "tool_calls", "function_call", "audio", "annotations"}
)


class _Malformed(Exception):
    """An event we cannot be sure about: the stream is not known to be complete."""


def pieces(text: str) -> list[str]:
    """Word-sized deltas, whitespace kept, so that joining them gives back ``text``."""
    return _PIECES.findall(text)


def spread_tokens(parts: Sequence[str], tokens: Sequence[Any]) -> list[list[Any]]:
    """Give each text part the logprob entries whose token starts inside it, in order, so the
    concatenated lists equal ``tokens`` (entries past the end go to the last part)."""
    out: list[list[Any]] = [[] for _ in parts]
    if not parts:
        return out
    ends, total = [], 0
    for part in parts:
        total += len(part)
        ends.append(total)
    at, where = 0, 0
    for entry in tokens:
        while where < len(parts) - 1 and at >= ends[where]:
            where += 1
        out[where].append(entry)
        token = entry.get("token") if isinstance(entry, dict) else None
        at += len(token) if isinstance(token, str) else 0
    return out


@dataclass
class _Choice:
    message: dict[str, Any] = field(default_factory=dict)
    logprobs: dict[str, list[Any] | None] | None = None
    finish_reason: str | None = None


def _text(acc: str | None, piece: Any) -> str:
    if not isinstance(piece, str):
        raise _Malformed
    return (acc or "") + piece


def _merge(acc: dict[str, Any], delta: dict[str, Any]) -> None:
    """A delta into its accumulator, at any depth: text fields are concatenated, tool calls
    merged by ``index``, annotations appended, audio data kept in pieces; any other field is
    sent once (id, type, name, role) and taken from the first delta that carries it."""
    for key, value in delta.items():
        if value is None or key == "index":
            continue
        if key in _CONCAT:
            acc[key] = _text(acc.get(key), value)
        elif key == "data":
            acc.setdefault(key, []).append(value)
        elif key == "annotations":
            acc[key] = [*acc.get(key, []), *value]
        elif key == "tool_calls":
            calls = acc.setdefault(key, {})
            for call in value:
                if type(call["index"]) is not int:
                    raise _Malformed
                _merge(calls.setdefault(call["index"], {}), call)
        elif isinstance(value, dict):
            _merge(acc.setdefault(key, {}), value)
        elif key == "expires_at":
            acc[key] = value  # audio: the last update carries only its expiry
        else:
            acc.setdefault(key, value)


def _logprobs(choice: _Choice, logprobs: dict[str, Any]) -> None:
    acc = choice.logprobs = choice.logprobs or {"content": None, "refusal": None}
    for key in ("content", "refusal"):
        if logprobs.get(key) is not None:
            acc[key] = [*(acc[key] or []), *logprobs[key]]


def _joined_audio(chunks: list[str]) -> str:
    """Each piece is base64 of its own bytes (padded): join the bytes, not the texts."""
    return base64.b64encode(b"".join(base64.b64decode(c, validate=True) for c in chunks)).decode()


def _named(call: dict[str, Any], kind: str) -> dict[str, Any]:
    """A function (or custom tool) call as the whole answer has it: a name, maybe no pieces."""
    if "name" not in call:
        raise _Malformed
    return {_STREAMED[kind]: "", **call}


def _message(acc: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "assistant", "content": None, "refusal": None, "annotations": [], **acc}
    if "audio" in acc:
        message["audio"] = {**acc["audio"], "data": _joined_audio(acc["audio"].get("data", []))}
    if "function_call" in acc:
        message["function_call"] = _named(acc["function_call"], "function")
    if "tool_calls" in acc:
        calls = []
        for _, call in sorted(acc["tool_calls"].items()):
            kind = call.get("type", "function")
            if "id" not in call:
                raise _Malformed
            if kind in _STREAMED:
                call = {**call, "type": kind, kind: _named(call.get(kind, {}), kind)}
            calls.append(call)
        message["tool_calls"] = calls
    return message


def _assemble(events: Sequence[Event]) -> dict[str, Any] | None:
    head: dict[str, Any] | None = None
    extra: dict[str, Any] = {"service_tier": None, "system_fingerprint": None}
    usage: Any = None
    choices: dict[int, _Choice] = {}
    done = False
    for name, data in events:
        if done:
            break  # the SDK stops reading at [DONE]: nothing after it reaches a client
        if isinstance(data, str) and data.strip() == "[DONE]":
            done = True
            continue
        # The SDK parses every event as a chunk, whatever its name (chat sends none), and
        # raises on an ``error`` payload: anything else is not a stream we understand.
        if name == "error" or type(data) is not dict or data.get("error"):
            raise _Malformed
        if data.get("object") == "":
            continue  # Azure's filter-only events: no content (the SDK's helper skips them)
        if data.get("object") != "chat.completion.chunk":
            raise _Malformed
        if head is None:
            head = {"id": data["id"], "created": data["created"], "model": data["model"]}
        for key in ("service_tier", "system_fingerprint", "moderation"):
            if data.get(key) is not None and extra.get(key) is None:
                extra[key] = data[key]
        if data.get("usage") is not None:
            usage = data["usage"]
        for raw in data["choices"]:
            index = raw["index"]
            if type(index) is not int:
                raise _Malformed
            choice = choices.setdefault(index, _Choice())
            delta = raw.get("delta") or {}
            if any(delta[key] is not None for key in delta.keys() - _DELTA_FIELDS):
                raise _Malformed  # a field we do not know may carry content we would lose
            _merge(choice.message, delta)
            if raw.get("logprobs") is not None:
                _logprobs(choice, raw["logprobs"])
            if raw.get("finish_reason") is not None:
                choice.finish_reason = raw["finish_reason"]
    finished = all(choice.finish_reason is not None for choice in choices.values())
    if not (
        done and head and choices and finished and sorted(choices) == list(range(len(choices)))
    ):
        return None
    out = [
        {
            "index": index,
            "message": _message(choice.message),
            "logprobs": choice.logprobs,
            "finish_reason": choice.finish_reason,
        }
        for index, choice in sorted(choices.items())
    ]
    return {**head, "object": "chat.completion", "choices": out, "usage": usage, **extra}


def assemble(events: Sequence[Event]) -> dict[str, Any] | None:
    """The ``chat.completion`` the chunks amount to, or None unless every choice finished and
    ``[DONE]`` arrived. Choices are merged by ``index`` (output in index order), tool calls by
    their ``index``; a malformed, error or non-chunk event gives None, never an exception."""
    try:
        return _assemble(events)
    except (_Malformed, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _choice_chunks(choice: dict[str, Any]) -> list[tuple[dict[str, Any], Any, Any]]:
    """(delta, logprobs, finish_reason) for one choice, in the order the API sends them."""
    message = choice["message"]
    content, refusal = message.get("content"), message.get("refusal")
    whole_lp = choice.get("logprobs")
    first: dict[str, Any] = {
        "role": message.get("role", "assistant"),
        "content": "" if isinstance(content, str) else None,
        "refusal": "" if isinstance(refusal, str) else None,
    }
    out: list[tuple[dict[str, Any], Any, Any]] = [(first, None, None)]
    carried = False
    left: dict[str, Any] = {"content": None, "refusal": None}
    for key, text in (("content", content), ("refusal", refusal)):
        parts = pieces(text) if isinstance(text, str) else []
        tokens = whole_lp.get(key) if isinstance(whole_lp, dict) else None
        spread = spread_tokens(parts, tokens) if tokens is not None else [None] * len(parts)
        if tokens is not None and not parts:
            left[key] = tokens
        for part, entries in zip(parts, spread, strict=True):
            lp = None if entries is None else {"content": None, "refusal": None, key: entries}
            carried = carried or lp is not None
            out.append(({key: part}, lp, None))
    if message.get("audio") is not None:
        out.append(({"audio": message["audio"]}, None, None))
    if message.get("function_call") is not None:
        call = message["function_call"]
        out.append(({"function_call": {**call, "arguments": ""}}, None, None))
        out.extend(
            ({"function_call": {"arguments": p}}, None, None) for p in pieces(call["arguments"])
        )
    for index, call in enumerate(message.get("tool_calls") or []):
        kind = call.get("type")
        streamed = _STREAMED.get(kind) if isinstance(kind, str) else None
        if streamed is None or not isinstance(call.get(kind), dict):
            out.append(({"tool_calls": [{"index": index, **call}]}, None, None))
            continue
        start = {"index": index, **call, kind: {**call[kind], streamed: ""}}
        out.append(({"tool_calls": [start]}, None, None))
        for part in pieces(call[kind][streamed]):
            delta = {"index": index, kind: {streamed: part}}
            out.append(({"tool_calls": [delta]}, None, None))
    if message.get("annotations"):
        out.append(({"annotations": message["annotations"]}, None, None))
    leftover = any(v is not None for v in left.values())
    last_lp = left if whole_lp is not None and (leftover or not carried) else None
    out.append(({}, last_lp, choice["finish_reason"]))
    return out


def split(value: dict[str, Any]) -> list[Event]:
    """The chunks a stream of this completion carries, with ``stream_options.include_usage``
    on (``"usage": null`` on every chunk, then a usage-only chunk), ending with ``[DONE]``:
    pass them through :func:`present` for a caller who did not ask for usage. Text, refusals
    and tool-call arguments come in word-sized pieces; logprob entries ride with the piece
    their token starts in. Choices are streamed one after the other."""
    base = {
        "id": value["id"],
        "object": "chat.completion.chunk",
        "created": value["created"],
        "model": value["model"],
        "service_tier": value.get("service_tier"),
        "system_fingerprint": value.get("system_fingerprint"),
    }
    events: list[Event] = []
    for choice in value["choices"]:
        for delta, logprobs, finish in _choice_chunks(choice):
            one = {"index": choice["index"], "delta": delta, "logprobs": logprobs}
            chunk = {**base, "choices": [{**one, "finish_reason": finish}], "usage": None}
            events.append((None, chunk))
    if value.get("moderation") is not None:
        events.append((None, {**base, "choices": [], "moderation": value["moderation"]}))
    if value.get("usage") is not None:
        events.append((None, {**base, "choices": [], "usage": value["usage"]}))
    events.append((None, "[DONE]"))
    return events


def _present_one(event: Event) -> Event | None:
    name, data = event
    if type(data) is dict and "usage" in data:
        if data["usage"] is not None and data.get("choices") == []:
            return None
        data = {k: v for k, v in data.items() if k != "usage"}
    return name, data


async def _present_live(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    try:
        async for event in events:
            shown = _present_one(event)
            if shown is not None:
                yield shown
    finally:  # closing what we hand out closes the cursor it reads
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


@overload
def present(events: AsyncIterator[Event], include_usage: bool) -> AsyncIterator[Event]: ...
@overload
def present(events: Iterable[Event], include_usage: bool) -> list[Event]: ...
def present(
    events: AsyncIterator[Event] | Iterable[Event], include_usage: bool
) -> AsyncIterator[Event] | list[Event]:
    """The events as the caller asked for them. The cache always streams upstream with
    ``include_usage`` (to count tokens); a caller who did not ask gets what the API sends
    then: no ``usage`` key on any chunk, and no usage-only chunk (``choices: []``).

    A list (or any iterable) gives a list; an async iterator (events as they arrive) gives
    an async iterator, which closes its source when it is closed."""
    if isinstance(events, AsyncIterator):
        return events if include_usage else _present_live(events)
    if include_usage:
        return list(events)
    return [shown for shown in map(_present_one, events) if shown is not None]


class _ChatShape:
    assemble = staticmethod(assemble)
    split = staticmethod(split)


#: ``_chat_stream.SHAPE.assemble(events)`` / ``.split(answer)`` for the streams module.
SHAPE: StreamShape = _ChatShape()
