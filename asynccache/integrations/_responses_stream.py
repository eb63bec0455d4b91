"""OpenAI Responses API: the typed event stream <-> the ``response`` object.

Why it is simpler than chat: every stream ends with a terminal event that carries the whole
``response`` (``response.completed``, or ``response.incomplete`` for a cut answer), which is
exactly what the request without ``stream`` returns, so :func:`assemble` takes it rather than
rebuilding it from deltas. :func:`split` gives the event sequence the API documents ("Streaming
events" in the API reference; the openai SDK's ``ResponseStreamEvent`` union), numbered by
``sequence_number`` from 0, so a stored whole answer can serve a stream request. Pure functions
over JSON: no SDK, no I/O. Results share nested values with their input; neither is mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._recording import Event, StreamShape
from ._chat_stream import pieces, spread_tokens

__all__ = ["SHAPE", "assemble", "split"]

_TERMINAL = {"response.completed": "completed", "response.incomplete": "incomplete"}
_TERMINAL_OF = {"incomplete": "response.incomplete", "failed": "response.failed"}
_FAILED = frozenset({"error", "response.failed"})

Emit = Callable[..., None]


def _assemble(events: Sequence[Event]) -> dict[str, Any] | None:
    final: dict[str, Any] | None = None
    done_items: dict[int, Any] = {}
    for name, data in events:
        if type(data) is not dict:
            return None  # the SDK would fail to parse it: not a stream we understand
        kind = data.get("type")
        if name in _FAILED or kind in _FAILED:
            return None
        if final is not None:
            continue  # after the terminal event only an error still matters
        if kind == "response.output_item.done" and type(data.get("output_index")) is int:
            done_items[data["output_index"]] = data.get("item")
        elif kind in _TERMINAL:
            response = data.get("response")
            if type(response) is not dict or response.get("status") != _TERMINAL[kind]:
                return None
            final = response
    if final is None or ("output" not in final and not done_items):
        return None
    if not final.get("output") and done_items:
        # Seen from ChatGPT's Codex endpoint and several gateways: a terminal response with
        # ``output: []`` after the items streamed. Each ``output_item.done`` carries its item
        # whole, so the answer is still known exactly (litellm and open-webui do the same).
        if sorted(done_items) != list(range(len(done_items))):
            return None
        final = {**final, "output": [done_items[i] for i in range(len(done_items))]}
    return final


def assemble(events: Sequence[Event]) -> dict[str, Any] | None:
    """The ``response`` of the terminal ``response.completed`` / ``response.incomplete`` event
    (its status must agree), or None: no terminal event (a cut stream), ``response.failed``,
    an ``error`` event anywhere, or a payload that is not a JSON object. Other events, known or
    not, do not change the answer: the terminal event carries it whole."""
    try:
        return _assemble(events)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _text_part(emit: Emit, where: dict[str, Any], part: dict[str, Any]) -> None:
    text = part.get("text") or ""
    whole_lp = part.get("logprobs")
    parts = pieces(text)
    spread = spread_tokens(parts, whole_lp if isinstance(whole_lp, list) else [])
    added = {**part, "text": "", "annotations": []}
    if "logprobs" in part:
        added["logprobs"] = []
    emit("response.content_part.added", part=added, **where)
    for piece, entries in zip(parts, spread, strict=True):
        emit("response.output_text.delta", delta=piece, logprobs=entries, **where)
    for index, annotation in enumerate(part.get("annotations") or []):
        emit(
            "response.output_text.annotation.added",
            annotation=annotation,
            annotation_index=index,
            **where,
        )
    logprobs = whole_lp if isinstance(whole_lp, list) else []
    emit("response.output_text.done", text=text, logprobs=logprobs, **where)
    emit("response.content_part.done", part=part, **where)


def _streamed_part(emit: Emit, where: dict[str, Any], part: dict[str, Any], kind: str) -> None:
    """A part whose one text field streams as ``<kind>.delta`` events, then ``<kind>.done``."""
    key = "refusal" if part.get("type") == "refusal" else "text"
    emit("response.content_part.added", part={**part, key: ""}, **where)
    for piece in pieces(part.get(key) or ""):
        emit(f"{kind}.delta", delta=piece, **where)
    emit(f"{kind}.done", **{key: part.get(key) or ""}, **where)
    emit("response.content_part.done", part=part, **where)


def _content(emit: Emit, item: dict[str, Any], output_index: int, key: str) -> None:
    for index, part in enumerate(item.get(key) or []):
        where = {"item_id": item.get("id"), "output_index": output_index, "content_index": index}
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "output_text":
            _text_part(emit, where, part)
        elif kind == "refusal":
            _streamed_part(emit, where, part, "response.refusal")
        elif kind == "reasoning_text":
            _streamed_part(emit, where, part, "response.reasoning_text")
        else:
            emit("response.content_part.added", part=part, **where)
            emit("response.content_part.done", part=part, **where)


def _summary(emit: Emit, item: dict[str, Any], output_index: int) -> None:
    for index, part in enumerate(item.get("summary") or []):
        where = {"item_id": item.get("id"), "output_index": output_index, "summary_index": index}
        text = part.get("text") or ""
        emit("response.reasoning_summary_part.added", part={**part, "text": ""}, **where)
        for piece in pieces(text):
            emit("response.reasoning_summary_text.delta", delta=piece, **where)
        emit("response.reasoning_summary_text.done", text=text, **where)
        emit("response.reasoning_summary_part.done", part=part, **where)


def _opening(item: dict[str, Any], **empty: Any) -> dict[str, Any]:
    """The item as ``output_item.added`` shows it: nothing generated yet, still in progress."""
    added = {**item, **empty}
    if "status" in item:
        added["status"] = "in_progress"
    return added


def _item(emit: Emit, item: Any, output_index: int) -> None:
    kind = item.get("type") if isinstance(item, dict) else None
    where = {"item_id": item.get("id") if kind else None, "output_index": output_index}
    if kind == "message":
        emit(
            "response.output_item.added", item=_opening(item, content=[]), output_index=output_index
        )
        _content(emit, item, output_index, "content")
    elif kind == "reasoning":
        empty: dict[str, Any] = {"summary": []}
        if isinstance(item.get("content"), list):
            empty["content"] = []
        emit("response.output_item.added", item=_opening(item, **empty), output_index=output_index)
        _summary(emit, item, output_index)
        _content(emit, item, output_index, "content")
    elif kind in ("function_call", "custom_tool_call"):
        key, event = (
            ("arguments", "response.function_call_arguments")
            if kind == "function_call"
            else ("input", "response.custom_tool_call_input")
        )
        whole = item.get(key) or ""
        emit(
            "response.output_item.added",
            item=_opening(item, **{key: ""}),
            output_index=output_index,
        )
        for piece in pieces(whole):
            emit(f"{event}.delta", delta=piece, **where)
        name = {"name": item["name"]} if kind == "function_call" and "name" in item else {}
        emit(f"{event}.done", **{key: whole}, **name, **where)
    else:
        emit("response.output_item.added", item=item, output_index=output_index)
    emit("response.output_item.done", item=item, output_index=output_index)


def split(value: dict[str, Any]) -> list[Event]:
    """``response.created`` and ``response.in_progress`` (the response with no output yet),
    per output item ``output_item.added`` … ``output_item.done`` with the content streamed in
    word-sized deltas (message text and refusal parts, function-call arguments, reasoning
    summaries and text; any other item is added and done whole), then the terminal event with
    the whole ``value`` (``response.incomplete`` / ``response.failed`` when its status says so).
    Each event is named by its ``type``, as the API sends it."""
    events: list[Event] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": len(events), **fields}))

    opening = {**value, "status": "in_progress", "output": []}
    for key in ("usage", "completed_at", "incomplete_details", "error"):
        if key in opening:
            opening[key] = None
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    for index, item in enumerate(value.get("output") or []):
        _item(emit, item, index)
    status = str(value.get("status"))
    emit(_TERMINAL_OF.get(status, "response.completed"), response=value)
    return events


class _ResponsesShape:
    assemble = staticmethod(assemble)
    split = staticmethod(split)


#: ``_responses_stream.SHAPE.assemble(events)`` / ``.split(answer)`` for the streams module.
SHAPE: StreamShape = _ResponsesShape()
