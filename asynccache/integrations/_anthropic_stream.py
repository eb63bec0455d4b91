"""Anthropic Messages: the ``message_start`` … ``message_stop`` event stream <-> the ``message``.

Why it mirrors the SDK: a client that streams sees the message the anthropic SDK accumulates
(``accumulate_event`` in ``anthropic/lib/streaming/_messages.py``), and a client that does not
sees the JSON the API returns; a cached answer must be both. :func:`assemble` follows the SDK's
rules (blocks appended on ``content_block_start``, text/thinking concatenated, the signature
replaced, citations appended, tool input parsed from the concatenated ``partial_json``, usage
totals on ``message_delta`` overwriting the start's), but says None where the SDK would go on
with a half answer: no ``message_stop``, an ``error`` event, a delta it does not know, a block
never stopped. :func:`split` gives the events the API sends for a whole message ("Streaming
Messages" in Anthropic's docs). Pure functions over JSON: no SDK, no I/O. Results share nested
values with their input; neither side is mutated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .._recording import Event, StreamShape
from ._chat_stream import pieces

__all__ = ["SHAPE", "assemble", "split"]

#: Blocks whose ``input`` streams as ``input_json_delta`` (the SDK's ``TRACKS_TOOL_INPUT``);
#: any other block that starts with an ``input`` object is treated the same way.
_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})
_KNOWN = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)
#: Delta type -> the block type it may apply to.
_DELTA_BLOCK = {
    "text_delta": "text",
    "citations_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "thinking",
}
#: ``message_delta`` usage fields a stream of a whole answer repeats (the totals).
_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
    "output_tokens_details",
)


class _Malformed(Exception):
    """An event we cannot be sure about: the message is not known to be complete."""


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Malformed
    return value


def _delta(block: dict[str, Any], delta: dict[str, Any], json_buf: list[str] | None) -> None:
    kind = delta.get("type")
    if kind == "input_json_delta":
        if json_buf is None:
            raise _Malformed
        json_buf.append(_str(delta.get("partial_json")))
        return
    if kind not in _DELTA_BLOCK or block.get("type") != _DELTA_BLOCK[kind]:
        raise _Malformed  # a delta we do not know changes content we would miss
    if kind == "text_delta":
        block["text"] = _str(block.get("text", "")) + _str(delta.get("text"))
    elif kind == "thinking_delta":
        block["thinking"] = _str(block.get("thinking", "")) + _str(delta.get("thinking"))
    elif kind == "signature_delta":
        block["signature"] = _str(delta.get("signature"))
    else:  # citations_delta, as the SDK: a falsy list (None, []) becomes [citation]
        block["citations"] = [*(block.get("citations") or []), delta["citation"]]


def _message_delta(message: dict[str, Any], data: dict[str, Any]) -> None:
    delta = data.get("delta") or {}
    message["stop_reason"] = delta.get("stop_reason")
    message["stop_sequence"] = delta.get("stop_sequence")
    for key, value in delta.items():
        # stop_details is set as given (the SDK does); container and newer fields when present
        if key not in ("stop_reason", "stop_sequence") and (
            key == "stop_details" or value is not None
        ):
            message[key] = value
    usage = data.get("usage")
    if usage is not None:
        # Totals, not increments: they overwrite; a null one leaves the start's value.
        message["usage"] = {
            **message["usage"],
            **{k: v for k, v in usage.items() if v is not None},
        }


def _assemble(events: Sequence[Event]) -> dict[str, Any] | None:
    message: dict[str, Any] | None = None
    blocks: list[dict[str, Any]] = []
    open_blocks: set[int] = set()
    json_bufs: dict[int, list[str]] = {}
    stopped = False
    for name, data in events:
        kind = data.get("type") if type(data) is dict else None
        if name == "error" or kind == "error":
            return None
        # The SDK dispatches on the SSE event name and skips names it does not know (ping).
        effective = name if name is not None else kind
        if stopped or effective not in _KNOWN:
            continue
        if kind != effective:
            return None
        if message is None:
            if kind != "message_start":
                return None  # the SDK raises: events before message_start
            message = dict(data["message"])
            message["usage"] = dict(message["usage"])
            blocks = [dict(block) for block in message.get("content") or []]
        elif kind == "content_block_start":
            index, block = data["index"], dict(data["content_block"])
            if index != len(blocks):
                return None
            blocks.append(block)
            open_blocks.add(index)
            if block.get("type") in _TOOL_BLOCKS or isinstance(block.get("input"), dict):
                json_bufs[index] = []
        elif kind == "content_block_delta":
            index = data["index"]
            if index not in open_blocks:
                return None
            _delta(blocks[index], data["delta"], json_bufs.get(index))
        elif kind == "content_block_stop":
            index = data["index"]
            if index not in open_blocks:
                return None
            open_blocks.discard(index)
            buf = "".join(json_bufs.get(index) or [])
            if buf:  # as the SDK: no JSON at all leaves the start's input ({})
                parsed = orjson.loads(buf)
                if type(parsed) is not dict:
                    return None
                blocks[index]["input"] = parsed
            elif index in json_bufs and not isinstance(blocks[index].get("input"), dict):
                blocks[index]["input"] = {}
        elif kind == "message_delta":
            _message_delta(message, data)
        elif kind == "message_stop":
            stopped = True
        else:
            return None  # a second message_start
    if not stopped or message is None or open_blocks or message.get("stop_reason") is None:
        return None
    return {**message, "content": blocks}


def assemble(events: Sequence[Event]) -> dict[str, Any] | None:
    """The ``message`` the events amount to (what the API returns without ``stream``), or
    None: no ``message_stop`` or no ``stop_reason`` (a cut stream), an ``error`` event
    anywhere, a delta of an unknown type or for the wrong block, an unparsable tool input.
    ``ping`` and event types the SDK does not know are skipped, as the SDK skips them."""
    try:
        return _assemble(events)
    except (_Malformed, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None  # orjson.JSONDecodeError is a ValueError


def _block_events(index: int, block: Any) -> list[Event]:
    kind = block.get("type") if isinstance(block, dict) else None
    deltas: list[dict[str, Any]] = []
    start = block
    if kind == "text":
        citations = block.get("citations")
        start = {**block, "text": ""}
        if citations:
            start["citations"] = None
            deltas += [{"type": "citations_delta", "citation": c} for c in citations]
        deltas += [{"type": "text_delta", "text": p} for p in pieces(block.get("text") or "")]
    elif kind == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        text = block.get("thinking") or ""
        deltas += [{"type": "thinking_delta", "thinking": p} for p in pieces(text)]
        deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
    elif kind in _TOOL_BLOCKS or (isinstance(block, dict) and isinstance(block.get("input"), dict)):
        start = {**block, "input": {}}
        arguments = orjson.dumps(block["input"]).decode() if block["input"] else ""
        # A tool without arguments still gets one (empty) delta, as the API sends it.
        parts = pieces(arguments) or [""]
        deltas += [{"type": "input_json_delta", "partial_json": p} for p in parts]
    events: list[Event] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
    ]
    for delta in deltas:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        events.append(("content_block_delta", payload))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def split(value: dict[str, Any]) -> list[Event]:
    """``message_start`` (the message with no content, no stop reason, ``output_tokens`` 1 as
    the API reports at start), a ``ping``, per block ``content_block_start`` / deltas /
    ``content_block_stop`` (text and thinking in word-sized pieces plus the thinking's
    ``signature_delta``, citations as ``citations_delta`` before the text, tool input as
    ``input_json_delta`` pieces of its JSON; any other block starts whole), ``message_delta``
    (stop reason, stop sequence, usage totals) and ``message_stop``."""
    usage = value.get("usage") or {}
    opening: dict[str, Any] = {
        **value,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    if "stop_details" in value:
        opening["stop_details"] = None
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": opening}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(value.get("content") or []):
        events += _block_events(index, block)
    delta: dict[str, Any] = {
        "stop_reason": value.get("stop_reason"),
        "stop_sequence": value.get("stop_sequence"),
    }
    if "stop_details" in value:
        delta["stop_details"] = value["stop_details"]
    if value.get("container") is not None:
        delta["container"] = value["container"]
    totals = {key: usage[key] for key in _DELTA_USAGE if key in usage}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": totals}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class _AnthropicShape:
    assemble = staticmethod(assemble)
    split = staticmethod(split)


#: ``_anthropic_stream.SHAPE.assemble(events)`` / ``.split(answer)`` for the streams module.
SHAPE: StreamShape = _AnthropicShape()
