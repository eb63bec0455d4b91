"""Lay requests out for the providers' own prompt caches, and mark Anthropic's breakpoints.

asynccache answers a request it has seen before. The providers' prompt caches do something
else: they discount the *shared prefix* of requests that differ further on (the same system
prompt and documents before a new question). The two combine: a repeat is answered here for
free; a new question over the same static prefix still goes upstream, where that prefix is
read from the provider's cache at a fraction of the input price (0.1x to 0.5x, by model).

Both provider caches match prefixes exactly, byte for byte, so the order of the parts decides
what can be reused:

- OpenAI caches automatically: prompts of 1,024 tokens or more, the longest previously seen
  prefix, in 128-token steps; tools, images and the response schema are part of that prefix.
  Its guide says to put static content (instructions, examples) first and variable,
  user-specific content last. https://developers.openai.com/api/docs/guides/prompt-caching
  (Newer models also take explicit ``prompt_cache_breakpoint`` markers and
  ``prompt_cache_options``; nothing here places them.)
- Anthropic caches nothing unless asked: a ``cache_control`` breakpoint caches the prompt up to
  and including that block, in the order tools → system → messages; at most 4 breakpoints per
  request; a read also looks back about 20 blocks before each breakpoint for an earlier cached
  prefix; entries live 5 minutes (refreshed on every read) or 1 hour, at 1.25x / 2x the input
  price to write and 0.1x to read; longer-lived breakpoints must come before shorter ones;
  thinking blocks and empty text blocks cannot carry a marker.
  https://platform.claude.com/docs/en/build-with-claude/prompt-caching

So :func:`static_first` builds every request as: static instructions and shared context (with
the tool definitions, identical byte for byte across requests) → the conversation so far →
per-request content (today's date, the user's profile, retrieved passages) together with the
new user turn. Anything per-request placed earlier would end the shared prefix right there.
:func:`add_cache_breakpoints` then marks an Anthropic request where its prefixes end.

Our own cache keys drop ``cache_control`` (it steers the provider's cache, not the answer), so
marking a request never changes which asynccache entry it reads. Everything here is a pure
function over request params: nothing is sent, and the caller's dicts are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ._exceptions import ConfigurationError

__all__ = [
    "ANTHROPIC_MAX_BREAKPOINTS",
    "add_cache_breakpoints",
    "count_breakpoints",
    "static_first",
]

#: Anthropic rejects a request with more ``cache_control`` markers than this.
ANTHROPIC_MAX_BREAKPOINTS = 4

Provider = Literal["openai", "anthropic"]
CacheTTL = Literal["5m", "1h"]

_TTLS = ("5m", "1h")
#: Blocks the API refuses a marker on; they are still cached as part of a longer prefix.
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})
_OWN_PARAMS = ("messages", "system", "input")


def static_first(
    provider: Provider,
    *,
    instructions: str,
    user: str | Sequence[Mapping[str, Any]],
    context: Sequence[str] = (),
    tools: Sequence[Mapping[str, Any]] = (),
    history: Sequence[Mapping[str, Any]] = (),
    dynamic: Sequence[str] = (),
    breakpoints: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Request params (``chat.completions.create`` for OpenAI, ``messages.create`` for
    Anthropic) with every part where the provider's prompt cache rewards it.

    - ``instructions`` and ``context`` (documents, policies, few-shot examples as text) form
      the system prompt, and ``tools`` stay the ``tools`` param: the static prefix every
      request shares. Build them deterministically (no dates, ids or dict-order accidents);
      one changed byte ends the shared prefix there.
    - ``history`` (earlier turns, exactly as they were sent and answered) follows, so each
      request's prefix extends the previous one and a conversation re-reads its past turns
      from the cache instead of paying for them again.
    - ``dynamic`` (per-request text: today's date, the user's profile, retrieved passages)
      goes into the new user message, before ``user`` (its text, or content parts such as
      images): the only part that is new, so the only part paid at the full rate.

    ``params`` are passed through (``model``, ``max_tokens``, ``temperature``, ...). For
    Anthropic, ``breakpoints=True`` marks the result with :func:`add_cache_breakpoints`
    (default 5-minute TTL) after removing markers carried in ``history`` from earlier
    requests, which would otherwise pile up past Anthropic's limit of 4; pass
    ``breakpoints=False`` to place them yourself. OpenAI needs no markers: it caches on its own.
    """
    if provider not in ("openai", "anthropic"):
        raise ConfigurationError(
            f"provider must be 'openai' or 'anthropic', got {provider!r}; "
            "static_first builds chat.completions (OpenAI) or messages (Anthropic) params"
        )
    clash = [name for name in _OWN_PARAMS if name in params]
    if clash:
        raise ConfigurationError(
            f"static_first builds {', '.join(clash)} itself: pass earlier turns as "
            "history=[...], the new turn as user=..., and the system prompt as instructions=..."
        )
    static_text = [text for text in (instructions, *context) if text]
    # Both APIs call a plain text part {"type": "text", "text": ...}.
    turn: list[dict[str, Any]] = [{"type": "text", "text": text} for text in dynamic if text]
    if isinstance(user, str):
        content: Any = user if not turn else [*turn, {"type": "text", "text": user}]
    else:
        content = [*turn, *(_copy(part) for part in user)]
    messages = [_copy(message) for message in history]
    messages.append({"role": "user", "content": content})
    out: dict[str, Any] = dict(params)
    if tools:
        out["tools"] = [_copy(tool) for tool in tools]
    if provider == "openai":
        if static_text:
            messages.insert(0, {"role": "system", "content": "\n\n".join(static_text)})
        out["messages"] = messages
        return out
    if static_text:
        out["system"] = [{"type": "text", "text": text} for text in static_text]
    out["messages"] = messages
    if not breakpoints:
        return out
    for message in messages[:-1]:
        if type(message) is dict and type(message.get("content")) is list:
            message["content"] = [_unmarked(block) for block in message["content"]]
    return add_cache_breakpoints(out)


def add_cache_breakpoints(
    params: Mapping[str, Any],
    *,
    ttl: CacheTTL = "5m",
    static_ttl: CacheTTL | None = None,
    previous_turn: bool = True,
) -> dict[str, Any]:
    """A copy of Anthropic ``messages.create`` params with ``cache_control`` breakpoints where
    the reusable prefixes end, as many as the limit of 4 allows after the caller's own.

    In order of value:

    1. the end of the static part: the last system block (a string system becomes one block),
       or the last tool when there is no system prompt; ``static_ttl`` (default: ``ttl``);
    2. the end of the conversation: the last block that can carry a marker (skipped when the
       top-level ``cache_control`` param already marks it); ``ttl``;
    3. with ``previous_turn``, the user turn before the last one: the point the previous
       request cached, so a turn that adds more than ~20 blocks (parallel tool calls) still
       finds it; ``ttl``;
    4. the last tool, when a system prompt exists: tools stay cached when the system changes.

    Blocks that already carry a marker, thinking blocks and empty text are skipped. Raises
    :class:`~asynccache.ConfigurationError` for a TTL other than ``"5m"``/``"1h"``, for more
    than 4 existing breakpoints, or when the result would put a 1-hour breakpoint after a
    5-minute one (Anthropic requires longer-lived entries first).
    """
    _check_ttl("ttl", ttl)
    static = ttl if static_ttl is None else static_ttl
    _check_ttl("static_ttl", static)
    if static == "5m" and ttl == "1h":
        raise ConfigurationError(
            "static_ttl='5m' with ttl='1h' would put 1h breakpoints after 5m ones, which "
            "Anthropic rejects; use static_ttl='1h' (or ttl='5m')"
        )
    out: dict[str, Any] = _copy(params)
    budget = ANTHROPIC_MAX_BREAKPOINTS - count_breakpoints(out)
    if budget < 0:
        raise ConfigurationError(
            f"the request already has {count_breakpoints(out)} cache_control breakpoints; "
            f"Anthropic allows at most {ANTHROPIC_MAX_BREAKPOINTS} (tools, system blocks, "
            "content blocks and the top-level cache_control param all count): remove some"
        )
    _check_order(out, "the request's own cache_control breakpoints")
    system_spot = _last_spot(out, "system")
    tool_spot = _last_tool(out)
    user_turns = [i for i, m in enumerate(_messages(out)) if m.get("role") == "user"]
    wanted: list[tuple[_Spot | None, CacheTTL]] = [
        (system_spot or tool_spot, static),
        (None if out.get("cache_control") is not None else _conversation_end(out), ttl),
    ]
    if previous_turn and len(user_turns) >= 2:
        wanted.append((_last_spot(_messages(out)[user_turns[-2]], "content"), ttl))
    if system_spot is not None:
        wanted.append((tool_spot, static))
    marker_of = {"5m": {"type": "ephemeral"}, "1h": {"type": "ephemeral", "ttl": "1h"}}
    for spot, spot_ttl in wanted:
        if budget == 0:
            break
        if spot is None or _is_marked(spot):
            continue
        _mark(spot, dict(marker_of[spot_ttl]))
        budget -= 1
    _check_order(out, "the breakpoints added")
    return out


def count_breakpoints(params: Mapping[str, Any]) -> int:
    """How many ``cache_control`` breakpoints Anthropic will count for these params: on
    tools, system blocks, message content blocks (also nested in tool results), and the
    top-level ``cache_control`` param, which marks the last cacheable block by itself."""
    return len(_breakpoints(params))


# Finding and marking spots ------------------------------------------------------------------

_Spot = tuple[Any, Any]  # (container, key): container[key] is a block, or a str to wrap


def _messages(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = params.get("messages")
    if not isinstance(messages, list):
        return []
    return [m if type(m) is dict else {} for m in messages]  # SDK objects: never marked


def _markable(block: Any) -> bool:
    if type(block) is not dict or block.get("type") in _UNMARKABLE:
        return False
    return block.get("type") != "text" or bool(str(block.get("text") or "").strip())


def _last_spot(holder: Any, key: str) -> _Spot | None:
    """The last block of ``holder[key]`` (a string or a block list) that can carry a marker."""
    value = holder.get(key) if type(holder) is dict else None
    if isinstance(value, str):
        return (holder, key) if value.strip() else None
    if isinstance(value, list):
        for i in range(len(value) - 1, -1, -1):
            if _markable(value[i]):
                return (value, i)
    return None


def _last_tool(params: Mapping[str, Any]) -> _Spot | None:
    tools = params.get("tools")
    if isinstance(tools, list) and tools and type(tools[-1]) is dict:
        return (tools, len(tools) - 1)
    return None


def _conversation_end(params: Mapping[str, Any]) -> _Spot | None:
    for message in reversed(_messages(params)):
        spot = _last_spot(message, "content")
        if spot is not None:
            return spot
    return None


def _is_marked(spot: _Spot) -> bool:
    block = spot[0][spot[1]]
    return type(block) is dict and block.get("cache_control") is not None


def _mark(spot: _Spot, marker: dict[str, str]) -> None:
    container, key = spot
    value = container[key]
    if isinstance(value, str):
        container[key] = [{"type": "text", "text": value, "cache_control": marker}]
    else:
        container[key] = {**value, "cache_control": marker}


def _unmarked(block: Any) -> Any:
    """The block without markers, also on blocks nested in it (a tool result's content)."""
    if type(block) is not dict:
        return block
    out = {k: v for k, v in block.items() if k != "cache_control"}
    if type(out.get("content")) is list:
        out["content"] = [_unmarked(inner) for inner in out["content"]]
    return out


# Counting and TTL order ---------------------------------------------------------------------


def _breakpoints(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every breakpoint as (where, ttl), in prefix order: tools → system → messages → the
    top-level param (which lands on the last cacheable block)."""
    found: list[tuple[str, str]] = []
    for name in ("tools", "system"):
        blocks = params.get(name)
        if isinstance(blocks, list):
            for i, block in enumerate(blocks):
                _collect(block, f"{name}[{i}]", found)
    raw = params.get("messages")
    for i, message in enumerate(raw if isinstance(raw, list) else []):
        content = message.get("content") if type(message) is dict else None
        if isinstance(content, list):
            for j, block in enumerate(content):
                _collect(block, f"messages[{i}].content[{j}]", found)
    if params.get("cache_control") is not None:
        found.append(("cache_control", _ttl_of(params["cache_control"])))
    return found


def _collect(block: Any, where: str, found: list[tuple[str, str]]) -> None:
    if type(block) is not dict:
        return
    if block.get("cache_control") is not None:
        found.append((where, _ttl_of(block["cache_control"])))
    nested = block.get("content")  # tool_result, search_result
    source = block.get("source")
    if type(source) is dict and isinstance(source.get("content"), list):  # document content
        nested, where = source["content"], f"{where}.source"
    if isinstance(nested, list):
        for k, inner in enumerate(nested):
            _collect(inner, f"{where}.content[{k}]", found)


def _ttl_of(marker: Any) -> str:
    ttl = marker.get("ttl") if type(marker) is dict else None
    return ttl if isinstance(ttl, str) else "5m"


def _check_order(params: Mapping[str, Any], whose: str) -> None:
    first_short: str | None = None
    for where, ttl in _breakpoints(params):
        if ttl != "1h":
            first_short = first_short or where
        elif first_short is not None:
            raise ConfigurationError(
                f"{whose} put a 1h breakpoint at {where} after a 5m one at {first_short}; "
                "Anthropic requires longer-lived breakpoints first (tools, system, messages "
                "order): give the earlier one ttl '1h', or the later one '5m' "
                "(add_cache_breakpoints(ttl=..., static_ttl=...) sets the TTL of those it adds)"
            )


def _check_ttl(name: str, ttl: object) -> None:
    if ttl not in _TTLS:
        raise ConfigurationError(
            f"{name} must be '5m' or '1h' (Anthropic's two cache lifetimes), got {ttl!r}"
        )


def _copy(value: Any) -> Any:
    """A copy of the dict/list structure (leaves shared): marking the copy never reaches
    the caller's params, and it costs far less than ``deepcopy`` of a long conversation."""
    if type(value) is dict or isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list or type(value) is tuple:
        return [_copy(v) for v in value]
    return value
