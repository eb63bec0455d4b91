"""Read what matters out of a provider's answer: how it finished, whether it is empty, its usage.

Pure functions over the provider's JSON, so the core never imports an SDK. One reader per
(provider, endpoint) shape; an unknown shape (e.g. a memoized function's result) is "complete,
not empty, no usage" — the policy then has nothing to refuse it for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._models import NO_USAGE, Entry, Layer, Usage, usage_of


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    finish_reasons: tuple[str, ...] = ()
    empty: bool = False
    usage: Usage = NO_USAGE
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Landed:
    """What a flight produced: the value, the stored entry (None if refused), where from.
    ``complete`` is False for a stream that ended without finishing: there is no answer to
    share, so a follower who wanted a whole answer asks upstream itself."""

    value: Any
    entry: Entry | None
    facts: AnswerFacts
    layer: Layer | None
    complete: bool = True


def _int(d: Any, name: str) -> int:
    v = d.get(name) if isinstance(d, dict) else None
    return v if type(v) is int else 0


# OpenAI's cached_tokens and cache_write_tokens are subsets of prompt/input tokens.
def _openai_chat(v: dict[str, Any]) -> AnswerFacts:
    choices = v.get("choices") or []
    reasons = tuple(str(c.get("finish_reason")) for c in choices)
    empty = not any(
        (c.get("message") or {}).get("content") or (c.get("message") or {}).get("tool_calls")
        for c in choices
    )
    u = v.get("usage") or {}
    details = u.get("prompt_tokens_details")
    usage = usage_of(
        _int(u, "prompt_tokens"),
        _int(u, "completion_tokens"),
        _int(details, "cached_tokens"),
        _int(details, "cache_write_tokens"),
        0,
    )
    return AnswerFacts(reasons, empty, usage, v.get("model"))


def _openai_responses(v: dict[str, Any]) -> AnswerFacts:
    status = str(v.get("status"))
    incomplete = (v.get("incomplete_details") or {}).get("reason")
    reason = (
        "length"
        if incomplete == "max_output_tokens"
        else ("content_filter" if incomplete == "content_filter" else status)
    )
    output = [item for item in v.get("output") or [] if isinstance(item, dict)]
    empty = not any(_has_output(item) for item in output)
    u = v.get("usage") or {}
    details = u.get("input_tokens_details")
    usage = usage_of(
        _int(u, "input_tokens"),
        _int(u, "output_tokens"),
        _int(details, "cached_tokens"),
        _int(details, "cache_write_tokens"),
        0,
    )
    return AnswerFacts((reason,), empty, usage, v.get("model"))


# Anthropic stop reasons in the policy's vocabulary: cut short counts as "length", a paused
# server-tool turn is not a finished answer.
def _has_output(item: dict[str, Any]) -> bool:
    """A Responses output item that carries an answer: text or a refusal in a message, or any
    tool call. Reasoning items alone are not an answer."""
    kind = item.get("type")
    if kind == "reasoning":
        return False
    if kind == "message":
        return any(
            isinstance(part, dict) and (part.get("text") or part.get("refusal"))
            for part in item.get("content") or []
        )
    return True  # function_call, web_search_call, ...: a tool call is an answer


_ANTHROPIC_REASONS = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "pause_turn": "incomplete",
}


def _anthropic_messages(v: dict[str, Any]) -> AnswerFacts:
    stop = str(v.get("stop_reason"))
    empty = not any(
        (b.get("type") == "text" and b.get("text")) or b.get("type") == "tool_use"
        for b in (v.get("content") or [])
        if isinstance(b, dict)
    )
    u = v.get("usage") or {}
    # Anthropic reports cache reads/writes *separately* from input_tokens; fold them in so
    # input_tokens means "all prompt tokens" for every provider.
    cache_read = _int(u, "cache_read_input_tokens")
    cache_write = _int(u, "cache_creation_input_tokens")
    usage = usage_of(
        _int(u, "input_tokens") + cache_read + cache_write,
        _int(u, "output_tokens"),
        cache_read,
        cache_write,
        min(cache_write, _int(u.get("cache_creation"), "ephemeral_1h_input_tokens")),
    )
    return AnswerFacts((_ANTHROPIC_REASONS.get(stop, stop),), empty, usage, v.get("model"))


def _openai_embedding(v: dict[str, Any]) -> AnswerFacts:
    # One cached item of a batch: {"embedding": [...], "tokens": n, "model": ...}
    return AnswerFacts(
        ("stop",), not v.get("embedding"), usage_of(_int(v, "tokens"), 0, 0, 0, 0), v.get("model")
    )


_READERS: dict[tuple[str, str], Callable[[dict[str, Any]], AnswerFacts]] = {
    ("openai", "chat.completions"): _openai_chat,
    ("openai", "responses"): _openai_responses,
    ("openai", "embeddings"): _openai_embedding,
    ("anthropic", "messages"): _anthropic_messages,
}

_OPAQUE = AnswerFacts()
#: An answer of a known shape with fields of the wrong type (``"usage": "n/a"``): returned to
#: the caller as the provider sent it, never stored (we cannot tell whether it is complete).
MALFORMED = AnswerFacts(finish_reasons=("malformed",))


def inspect_answer(provider: str, endpoint: str, value: Any) -> AnswerFacts:
    reader = _READERS.get((provider, endpoint))
    if reader is None or not isinstance(value, dict):
        return _OPAQUE
    try:
        return reader(value)
    except (AttributeError, TypeError, KeyError, ValueError):
        return MALFORMED
