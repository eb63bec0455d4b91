"""Anthropic wire shapes: Messages (whole and streamed), count_tokens, errors, models.

Field sets follow the anthropic SDK's types (``anthropic.types.Message`` and the
``RawMessageStreamEvent`` union). Every SSE event carries an ``event:`` line: the SDK skips
events without one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ._content import Prompt, Reply, ToolSpec, new_id, pieces, text_of
from ._openai import sse

#: OpenAI finish words -> Anthropic stop reasons; anything else passes through verbatim.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": new_id("req_"),
    }


def models_body() -> dict[str, Any]:
    data = [
        {
            "type": "model",
            "id": m,
            "display_name": m,
            "created_at": "2025-01-01T00:00:00Z",
            "lifecycle": "active",
        }
        for m in MODELS
    ]
    return {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}


def message_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    chars = len(text_of(body.get("system")))
    for message in messages:
        content = message.get("content")
        chars += len(text_of(content))
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                chars += len(text_of(block.get("content")))
    last = messages[-1].get("content") if messages else None
    tool_turn = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    )
    tools = body.get("tools") or []
    specs = tuple(
        ToolSpec(str(t["name"]), t.get("input_schema") or {})
        for t in tools
        if isinstance(t, dict) and "name" in t and t.get("type") in (None, "custom")
    )
    choice = body.get("tool_choice") or {}
    forced = {"auto": None, "any": "required", "none": "none"}.get(str(choice.get("type")))
    fmt = (body.get("output_config") or {}).get("format") or {}
    return Prompt(
        user_text=text_of(users[-1].get("content")) if users else "",
        prompt_chars=chars + (len(orjson.dumps(tools)) if tools else 0),
        tools=specs,
        tool_choice=str(choice.get("name")) if choice.get("type") == "tool" else forced,
        tool_turn=tool_turn,
        max_tokens=body.get("max_tokens"),
        json_schema=fmt.get("schema") if fmt.get("type") == "json_schema" else None,
    )


def usage(reply: Reply) -> dict[str, Any]:
    """Anthropic counts are additive: ``input_tokens`` excludes cache reads and writes."""
    return {
        "input_tokens": reply.prompt_tokens,
        "output_tokens": reply.completion_tokens,
        "cache_creation_input_tokens": reply.cache_creation_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_creation_tokens
            - reply.cache_creation_1h_tokens,
            "ephemeral_1h_input_tokens": reply.cache_creation_1h_tokens,
        },
        "server_tool_use": None,
        "service_tier": "standard",
    }


def message_body(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.tool_call is not None:
        content.append(
            {
                "type": "tool_use",
                "id": new_id("toolu_"),
                "name": reply.tool_call.name,
                "input": reply.tool_call.arguments,
            }
        )
    elif reply.texts[0]:
        content.append({"type": "text", "text": reply.texts[0], "citations": None})
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "")),
        "content": content,
        "stop_reason": STOP_REASONS.get(reply.finish, reply.finish),
        "stop_sequence": None,
        "usage": usage(reply),
    }


def message_stream(body: Mapping[str, Any], reply: Reply) -> Iterator[bytes]:
    """message_start, a ping, per block start/deltas/stop, message_delta, message_stop."""
    final = message_body(body, reply)
    opening: dict[str, Any] = {
        **final,
        "content": [],
        "stop_reason": None,
        "usage": {**final["usage"], "output_tokens": 1},
    }
    yield sse({"type": "message_start", "message": opening}, event="message_start")
    yield sse({"type": "ping"}, event="ping")
    for index, block in enumerate(final["content"]):
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in pieces(orjson.dumps(block["input"]).decode())
            ]
        else:
            start = {**block, "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        yield sse(
            {"type": "content_block_start", "index": index, "content_block": start},
            event="content_block_start",
        )
        for delta in deltas:
            yield sse(
                {"type": "content_block_delta", "index": index, "delta": delta},
                event="content_block_delta",
            )
        yield sse({"type": "content_block_stop", "index": index}, event="content_block_stop")
    totals = {
        key: final["usage"][key]
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        )
    }
    stop = {"stop_reason": final["stop_reason"], "stop_sequence": None}
    yield sse({"type": "message_delta", "delta": stop, "usage": totals}, event="message_delta")
    yield sse({"type": "message_stop"}, event="message_stop")
