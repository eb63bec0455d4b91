"""OpenAI wire shapes: chat completions, embeddings, the Responses API, errors, models.

Field sets follow the openai SDK's own types (``openai.types.chat.ChatCompletion``,
``ChatCompletionChunk``, ``CreateEmbeddingResponse``, ``responses.Response`` and its stream
events); the tests parse every answer with ``_strict_response_validation=True``.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ._content import (
    InvalidRequest,
    Prompt,
    Reply,
    ToolSpec,
    embed,
    estimate_tokens,
    new_id,
    pieces,
    text_of,
)

FINGERPRINT = "fp_fakeprovider"
MODELS = ("gpt-4o-mini", "gpt-4.1", "o4-mini", "text-embedding-3-small")
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    409: ("conflict_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "api_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def models_body() -> dict[str, Any]:
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fakeprovider"}
        for m in MODELS
    ]
    return {"object": "list", "data": data}


# --- chat completions -------------------------------------------------------------------------


def chat_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    tools = body.get("tools") or []
    specs = tuple(
        ToolSpec(str(t["function"].get("name", "tool")), t["function"].get("parameters") or {})
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    )
    fmt = body.get("response_format") or {}
    schema: Mapping[str, Any] | None = None
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    elif fmt.get("type") == "json_object":
        schema = {}
    chars = sum(len(text_of(m.get("content"))) for m in messages)
    return Prompt(
        user_text=text_of(users[-1].get("content")) if users else "",
        prompt_chars=chars + (len(orjson.dumps(tools)) if tools else 0),
        tools=specs,
        tool_choice=_tool_choice(body.get("tool_choice")),
        tool_turn=bool(messages) and messages[-1].get("role") in ("tool", "function"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        n=int(body.get("n") or 1),
        json_schema=schema,
    )


def _tool_choice(choice: object) -> str | None:
    """Both APIs: "none"/"auto"/"required", or a dict naming a function or a mode."""
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and function.get("name"):
            return str(function["name"])
        if choice.get("name"):
            return str(choice["name"])
        if choice.get("mode"):
            return str(choice["mode"])
    return None


def usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": reply.cached_tokens,
            "cache_write_tokens": reply.cache_creation_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    assert reply.tool_call is not None
    arguments = orjson.dumps(reply.tool_call.arguments).decode()
    function = {"name": reply.tool_call.name, "arguments": arguments}
    return [{"id": new_id("call_"), "type": "function", "function": function}]


def chat_completion(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    choices = []
    for index, text in enumerate(reply.texts):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_call is not None:
            message["content"] = None
            message["tool_calls"] = _tool_calls(reply)
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": reply.finish}
        )
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "choices": choices,
        "usage": usage(reply),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def chat_stream(body: Mapping[str, Any], reply: Reply) -> Iterator[bytes]:
    """SSE events: per choice a role chunk, content (or tool-call) deltas, a finish chunk;
    then a usage chunk when ``stream_options.include_usage``; then ``[DONE]``."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice]})

    for index, text in enumerate(reply.texts):
        if reply.tool_call is not None:
            call = _tool_calls(reply)[0]
            arguments = call["function"]["arguments"]
            first = {
                **call,
                "index": 0,
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield chunk(index, {"role": "assistant", "content": None, "tool_calls": [first]})
            for piece in pieces(arguments):
                yield chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            for piece in pieces(text):
                yield chunk(index, {"content": piece})
        yield chunk(index, {}, reply.finish)
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage(reply)})
    yield b"data: [DONE]\n\n"


# --- embeddings -------------------------------------------------------------------------------


def embeddings(body: Mapping[str, Any], default_dims: int) -> dict[str, Any]:
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        texts = [" ".join(map(str, raw))]  # one input given as token ids
    elif isinstance(raw, list) and raw and all(isinstance(x, (str, list)) for x in raw):
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
    else:
        raise InvalidRequest("'input' must be a string or a non-empty list of strings")
    dims = body.get("dimensions") or default_dims
    if not isinstance(dims, int) or not 0 < dims <= 8192:
        raise InvalidRequest("'dimensions' must be an integer between 1 and 8192")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector: list[float] | str = embed(text, dims)
        if as_base64:
            packed = array("f", vector)
            if sys.byteorder == "big":
                packed.byteswap()
            vector = base64.b64encode(packed.tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(max(1, estimate_tokens(text)) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- responses --------------------------------------------------------------------------------

_PART_TYPES = ("input_text", "output_text", "text")


def responses_prompt(body: Mapping[str, Any]) -> Prompt:
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw or []
    items = [i for i in items if isinstance(i, dict)]
    users = [i for i in items if i.get("role") == "user"]
    chars = len(str(body.get("instructions") or ""))
    for item in items:
        chars += len(text_of(item.get("content"), part_types=_PART_TYPES))
        chars += (
            len(str(item.get("output", ""))) if item.get("type") == "function_call_output" else 0
        )
    tools = body.get("tools") or []
    specs = tuple(
        ToolSpec(str(t.get("name", "tool")), t.get("parameters") or {})
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function"
    )
    fmt = (body.get("text") or {}).get("format") or {}
    schema: Mapping[str, Any] | None = None
    if fmt.get("type") == "json_schema":
        schema = fmt.get("schema") or {"type": "object"}
    elif fmt.get("type") == "json_object":
        schema = {}
    return Prompt(
        user_text=text_of(users[-1].get("content"), part_types=_PART_TYPES) if users else "",
        prompt_chars=chars + (len(orjson.dumps(tools)) if tools else 0),
        tools=specs,
        tool_choice=_tool_choice(body.get("tool_choice")),
        tool_turn=bool(items) and items[-1].get("type") == "function_call_output",
        max_tokens=body.get("max_output_tokens"),
        json_schema=schema,
    )


def _echo_tool(tool: object) -> object:
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "parameters": None, "strict": True, **tool}
    return tool


def response_body(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}
    reason = incomplete.get(reply.finish)
    status = "incomplete" if reason else "completed"
    if reply.tool_call is not None:
        call = _tool_calls(reply)[0]
        item: dict[str, Any] = {
            "type": "function_call",
            "id": new_id("fc_"),
            "call_id": call["id"],
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"],
            "status": "completed",
        }
    else:
        text = {"type": "output_text", "text": reply.texts[0], "annotations": [], "logprobs": []}
        item = {
            "type": "message",
            "id": new_id("msg_"),
            "status": status,
            "role": "assistant",
            "content": [text],
        }
    now = time.time()
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": int(now),
        "completed_at": None if reason else int(now),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": str(body.get("model", "")),
        "output": [item],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [_echo_tool(t) for t in body.get("tools") or []],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": reply.cached_tokens,
                "cache_write_tokens": reply.cache_creation_tokens,
            },
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
        "user": body.get("user"),
    }


def response_stream(body: Mapping[str, Any], reply: Reply) -> Iterator[bytes]:
    """The Responses API event sequence for one output item, ending in response.completed
    (or response.incomplete), each event with its ``sequence_number``."""
    final = response_body(body, reply)
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    opening = {
        **final,
        "status": "in_progress",
        "output": [],
        "usage": None,
        "completed_at": None,
        "incomplete_details": None,
    }
    yield event("response.created", response=opening)
    yield event("response.in_progress", response=opening)
    item = final["output"][0]
    where = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "function_call":
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, "arguments": "", "status": "in_progress"},
        )
        for piece in pieces(item["arguments"]):
            yield event("response.function_call_arguments.delta", delta=piece, **where)
        yield event(
            "response.function_call_arguments.done",
            arguments=item["arguments"],
            name=item["name"],
            **where,
        )
    else:
        part = item["content"][0]
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        )
        yield event(
            "response.content_part.added", content_index=0, part={**part, "text": ""}, **where
        )
        for piece in pieces(part["text"]):
            yield event(
                "response.output_text.delta", content_index=0, delta=piece, logprobs=[], **where
            )
        yield event(
            "response.output_text.done", content_index=0, text=part["text"], logprobs=[], **where
        )
        yield event("response.content_part.done", content_index=0, part=part, **where)
    yield event("response.output_item.done", output_index=0, item=item)
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    yield event(kind, response=final)
