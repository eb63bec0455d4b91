"""The requests, answers and keys every workload shares, so every library sees the same data.

Why one module: fairness depends on it. Every library gets the same request bodies, the same
answer value and the same key rule for peers (``json.dumps(sort_keys=True)`` + SHA-256, the usual
way to key a chat request in a generic cache), and the Zipf workload draws one seeded sequence
that every library replays in the same order.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

import orjson

from asynccache import CacheOptions, CacheRequest

PROVIDER = "openai"
ENDPOINT = "chat.completions"

SYSTEM = (
    "You are Sam, the customer support assistant of Northwind Devices. Answer questions about "
    "orders, billing, shipping, returns and warranty. Be accurate, friendly and brief: at most "
    "five sentences, plain text, no markdown. Never ask for a password, a full card number or a "
    "one-time code; offer a hand-off to a human agent when a request needs account access. "
    "Warranty: two years on every device, three on the Aurora Pro line when registered within "
    "thirty days. Returns: 30 days from delivery, free for defective items; otherwise the "
    "customer pays return shipping. Shipping: standard 3-5 business days, express next day when "
    "ordered before 2 pm. Refunds reach the original payment method within ten business days. "
    "If you do not know, say so and offer the hand-off; never invent order numbers or dates. "
    "Human agents are available Monday to Friday, 8 am to 8 pm Central European Time, and on "
    "Saturdays from 9 am to 1 pm; outside those hours, promise a callback the next morning."
)

#: The answer text FakeProvider sends for every benchmark request (a fixed, realistic length,
#: so the stored value is the same size in every workload and for every library).
ANSWER = (
    "To reset the Aurora X2 to factory settings, keep it powered on and press the recessed "
    "reset button on the back with a paper clip for ten seconds, until the status light "
    "flashes white. The router restarts within two minutes with its default network name and "
    "password, printed on the label underneath. Then open the Northwind app, choose Add device "
    "and follow the setup steps; your previous settings are not kept. If the light stays "
    "orange after the reset, reply here and I will arrange a hand-off to our hardware team."
)

#: How peers key a chat request (and LangChain's ``llm_string``, which we keep constant).
LLM_STRING = "openai:gpt-4o-mini:temperature=0:max_tokens=400"


def chat_body(i: int = 0) -> dict[str, Any]:
    """A typical chat request of about 1.5 KB of JSON: a long system prompt, a short exchange,
    sampling parameters. ``i`` changes the last question, so each ``i`` is its own request."""
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Hi, I bought an Aurora X2 router last month."},
            {
                "role": "assistant",
                "content": (
                    "Thanks for reaching out! I am sorry it is giving you trouble. What happens "
                    "when you try to connect, and which firmware version does the app show?"
                ),
            },
            {
                "role": "user",
                "content": f"How do I reset it to factory settings? (question {i}) The status "
                "light keeps blinking orange and the app does not find it anymore.",
            },
        ],
        "temperature": 0,
        "max_tokens": 400,
        "user": "user-1234",
    }


def body_size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(body))


def naive_key(body: Mapping[str, Any]) -> str:
    """The key a generic cache would use for a chat request: sorted JSON, SHA-256."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def request(body: Mapping[str, Any], ttl: float | None = None) -> CacheRequest:
    options = CacheOptions(ttl=ttl) if ttl is not None else None
    return CacheRequest(PROVIDER, ENDPOINT, body, options=options)


def sized_value(template: Mapping[str, Any], nbytes: int, i: int) -> dict[str, Any]:
    """A ChatCompletion-shaped answer of about ``nbytes`` of JSON, distinct per ``i``
    (a fresh object each call, as an answer arriving from upstream would be)."""
    base = len(orjson.dumps(template)) - len(ANSWER)
    text = (f"[{i}] " + ANSWER * (1 + nbytes // len(ANSWER)))[: max(16, nbytes - base)]
    value: dict[str, Any] = orjson.loads(orjson.dumps(template))
    value["id"] = f"chatcmpl-bench-{i}"
    value["choices"][0]["message"]["content"] = text
    return value


def zipf_sequence(
    n_calls: int, n_distinct: int, s: float, miss_share: float, seed: int
) -> list[int]:
    """Request indices for the mixed workload: a ``miss_share`` of calls ask a brand-new request
    (index >= ``n_distinct``, never seen before), the rest are drawn from ``n_distinct``
    requests with Zipf weights ``1 / rank**s``. Seeded, so every library replays the same list."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**s) for rank in range(1, n_distinct + 1)]
    drawn = rng.choices(range(n_distinct), weights=weights, k=n_calls)
    fresh = n_distinct
    out: list[int] = []
    for index in drawn:
        if rng.random() < miss_share:
            out.append(fresh)
            fresh += 1
        else:
            out.append(index)
    return out
