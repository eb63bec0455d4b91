"""Deterministic answers, token counts and embeddings, independent of any wire format.

Each provider module pulls a :class:`Prompt` out of its request body; :func:`plan_reply` turns
it into a :class:`Reply` (texts or a tool call, finish reason, token counts); the provider module
shapes that into its JSON or SSE. Everything is a pure function of the request and the knobs, so
a cached answer and a fresh one can be compared byte for byte (ids and timestamps aside).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import secrets
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson

_FILLER = (
    "This reply comes from FakeProvider, a stand-in for a real model.",
    "The same request always yields the same words.",
    "Token counts are estimated at four characters per token.",
    "Nothing left this machine to produce this text.",
    "Latency, failures and finish reasons are set by the test.",
    "Every sentence here is chosen by a hash of the prompt.",
)
_WORDS = re.compile(r"\w+")
_PIECES = re.compile(r"\s*\S+\s*|\s+")
_NAME_LIKE = re.compile(r"[A-Za-z][\w-]*")


class InvalidRequest(Exception):
    """The request body is not one the real API would accept (answered with a 400)."""


def new_id(prefix: str) -> str:
    """A fresh id in the provider's style: ids differ between calls, as real ones do."""
    return prefix + secrets.token_hex(12)


def pieces(text: str) -> list[str]:
    """Stream deltas: roughly a word each, whitespace kept, so joining them restores the text."""
    return _PIECES.findall(text)


class Knobs(Protocol):
    """The FakeProvider settings an answer depends on (read once per request)."""

    answer: str | Callable[[Mapping[str, Any]], str] | None
    finish_reason: str | None
    empty_answer: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int
    cache_creation_tokens: int
    cache_creation_1h_tokens: int
    reasoning_tokens: int
    honour_max_tokens: bool


@dataclass(frozen=True)
class ToolSpec:
    name: str
    schema: Mapping[str, Any]  # JSON schema of the arguments


@dataclass(frozen=True)
class Prompt:
    """What the answer depends on, pulled out of one provider request."""

    user_text: str  # the last user message, as text
    prompt_chars: int  # everything that would be tokenised as input
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None  # None/"auto", "none", "required", or a forced tool name
    tool_turn: bool = False  # the last message carries a tool result: answer in words
    max_tokens: int | None = None
    n: int = 1
    json_schema: Mapping[str, Any] | None = None  # structured output asked for ({}: any object)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    texts: tuple[str, ...]  # one per choice; "" for an empty answer or a tool call
    tool_call: ToolCall | None
    finish: str  # OpenAI words (stop, length, content_filter, tool_calls) or an override verbatim
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    cache_creation_1h_tokens: int
    reasoning_tokens: int


def estimate_tokens(text_or_chars: str | int) -> int:
    """About four characters per token, rounded up (OpenAI's rule of thumb)."""
    chars = text_or_chars if isinstance(text_or_chars, int) else len(text_or_chars)
    return -(-chars // 4)


def text_of(content: object, *, part_types: Sequence[str] = ("text", "input_text")) -> str:
    """The text of a message content: a plain string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in part_types
        ]
        return "\n".join(texts)
    return ""


def answer_text(user_text: str, index: int = 0) -> str:
    """A short deterministic answer (at most ~50 tokens, so max_tokens >= 64 never truncates)."""
    snippet = " ".join(user_text.split())[:60] or "an empty message"
    digest = hashlib.blake2b(f"{index}\0{user_text}".encode(), digest_size=8).digest()
    start = digest[1] % len(_FILLER)
    filler = " ".join(_FILLER[(start + i) % len(_FILLER)] for i in range(1 + digest[0] % 2))
    label = "Answer" if index == 0 else f"Answer {index + 1}"
    return f"{label} to: {snippet}\n{filler}"


def plan_reply(prompt: Prompt, body: Mapping[str, Any], knobs: Knobs) -> Reply:
    """Decide what the fake model says, and what it costs in tokens."""
    tool_call = None if knobs.empty_answer else choose_tool(prompt)
    finish = "stop"
    if tool_call is not None:
        texts: tuple[str, ...] = ("",)
        finish = "tool_calls"
        completion = estimate_tokens(len(tool_call.name) + len(_json(tool_call.arguments)))
    else:
        texts = tuple(_text_for(prompt, body, knobs, i) for i in range(max(1, prompt.n)))
        if knobs.honour_max_tokens and prompt.max_tokens is not None:
            limit = max(0, prompt.max_tokens)
            if any(estimate_tokens(text) > limit for text in texts):
                texts = tuple(text[: limit * 4] for text in texts)
                finish = "length"
        completion = sum(estimate_tokens(text) for text in texts)
    return Reply(
        texts=texts,
        tool_call=tool_call,
        finish=knobs.finish_reason or finish,
        prompt_tokens=(
            knobs.prompt_tokens
            if knobs.prompt_tokens is not None
            else max(1, estimate_tokens(prompt.prompt_chars))
        ),
        completion_tokens=(
            knobs.completion_tokens if knobs.completion_tokens is not None else completion
        ),
        cached_tokens=knobs.cached_tokens,
        cache_creation_tokens=knobs.cache_creation_tokens,
        cache_creation_1h_tokens=min(knobs.cache_creation_1h_tokens, knobs.cache_creation_tokens),
        reasoning_tokens=knobs.reasoning_tokens,
    )


def _text_for(prompt: Prompt, body: Mapping[str, Any], knobs: Knobs, index: int) -> str:
    if knobs.empty_answer:
        return ""
    if isinstance(knobs.answer, str):
        return knobs.answer
    if knobs.answer is not None:
        return knobs.answer(body)
    if prompt.json_schema is not None:
        if not prompt.json_schema:
            return _json({"answer": answer_text(prompt.user_text, index)})
        return _json(fill_schema(prompt.json_schema, subject_of(prompt.user_text)))
    return answer_text(prompt.user_text, index)


def choose_tool(prompt: Prompt) -> ToolCall | None:
    """Call a tool when forced to, or when the user asks about the weather (and tools exist)."""
    if not prompt.tools or prompt.tool_turn or prompt.tool_choice == "none":
        return None
    forced = prompt.tool_choice not in (None, "auto")
    if not forced and "weather" not in prompt.user_text.lower():
        return None
    spec = next((t for t in prompt.tools if t.name == prompt.tool_choice), prompt.tools[0])
    arguments = fill_schema(spec.schema, subject_of(prompt.user_text))
    return ToolCall(spec.name, arguments if isinstance(arguments, dict) else {})


def subject_of(text: str) -> str:
    """A plausible string argument: the last capitalised word ("... in Paris?" gives Paris)."""
    words = _NAME_LIKE.findall(text)
    names = [word for word in words[1:] if word[0].isupper()]
    return names[-1] if names else (words[-1] if words else "example")


def fill_schema(
    schema: Mapping[str, Any], subject: str, root: Mapping[str, Any] | None = None, depth: int = 0
) -> Any:
    """A value that satisfies a (simple) JSON schema: every property filled, first choices taken."""
    root = schema if root is None else root
    if depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return fill_schema(target, subject, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            return fill_schema((usable or options)[0], subject, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {
            name: fill_schema(sub, subject, root, depth + 1)
            for name, sub in properties.items()
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        items = schema.get("items")
        return [fill_schema(items, subject, root, depth + 1)] if isinstance(items, Mapping) else []
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), subject)


@lru_cache(maxsize=8192)
def _unit_noise(token: str, dims: int) -> tuple[float, ...]:
    seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    return tuple(rng.uniform(-1.0, 1.0) for _ in range(dims))


def embed(text: str, dims: int) -> list[float]:
    """A unit vector from hashes of the text's words plus a little of the whole text.

    The same text always gives the same vector; texts sharing most words get close vectors
    (cosine near 1), so a semantic layer can be tested; unrelated texts are far apart when
    ``dims`` is large enough (64+). Values are float32-exact, so the base64 encoding the SDK
    asks for by default decodes to the very same numbers as ``encoding_format="float"``.
    """
    total = [0.0] * dims
    for token in [*_WORDS.findall(text.lower()), "\0" + text]:
        weight = 0.5 if token.startswith("\0") else 1.0
        for i, value in enumerate(_unit_noise(token, dims)):
            total[i] += weight * value
    norm = math.sqrt(sum(x * x for x in total)) or 1.0
    return array("f", [x / norm for x in total]).tolist()


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
