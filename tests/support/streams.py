"""Requests and readers shared by the SDK tests (test_streaming, test_stream_edges,
test_integrations)."""

from __future__ import annotations

from typing import Any

MSGS = [
    {"role": "system", "content": "You are a support bot."},
    {"role": "user", "content": "How do I reset my password?"},
]
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS, "temperature": 0}
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLAUDE: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 256,
    "system": "You are a support bot.",
    "messages": [{"role": "user", "content": "Where is my order?"}],
}


async def chunks_of(stream: Any) -> list[Any]:
    """Every chunk of an SDK stream, read to the end and closed."""
    async with stream:
        return [chunk async for chunk in stream]


def chat_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def dumps(chunks: list[Any]) -> list[dict[str, Any]]:
    return [c.model_dump() for c in chunks]
