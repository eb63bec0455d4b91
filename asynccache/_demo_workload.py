"""The demo's traffic: support-bot questions with the skew real support traffic has.

Why this shape: an exact-match cache is only as good as the repetition in its traffic, so a
demo with uniform random questions would undersell it and one with a single repeated question
would oversell it. Real support traffic is heavy-tailed: a few questions ("how do I reset…")
dominate and a long tail is asked once or twice; request popularity in web and query logs is
well described by a Zipf law with exponent near 1 (Breslau et al., "Web Caching and Zipf-like
Distributions", INFOCOM 1999). Every paraphrase is a distinct question here, because an
exact-match cache treats it as one: the demo does not pretend paraphrases hit.

Bursts model an incident: when a product goes down, many users ask the same new question within
the same second. Those questions are kept out of the Zipf pool, so each burst arrives on a
cold key and shows single-flight (one upstream call, the rest coalesced) rather than plain hits.

Everything is a pure function of the seed, so two runs (and the demo's two passes) send the
same requests in the same order.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SYSTEM_PROMPT",
    "Question",
    "Workload",
    "build_workload",
    "question_pool",
    "support_answer",
]

SYSTEM_PROMPT = (
    "You are Sam, the customer support assistant of Northwind Devices. Answer the customer's "
    "question about Northwind products, orders, billing, shipping, returns and warranty. "
    "Be accurate, friendly and brief: at most five sentences, plain text, no markdown. "
    "If a question needs account access (an order status, a refund, a password change made on "
    "the customer's behalf), explain the self-service steps and offer a hand-off to a human "
    "agent; never ask for a password, a full card number or a one-time code. If you are not "
    "sure, say so and point to support.northwind.example. Products: Aurora X2 router, Echo mesh "
    "Wi-Fi, Harbor NAS, Nimbus cloud backup, Pulse smartwatch, Vista 4K camera, Quill e-reader, "
    "Lumen smart bulb, Breeze air purifier, Atlas standing desk, Orbit e-bike, Summit hiking GPS. "
    "Standard warranty: two years; returns: 30 days from delivery, free for defective items. "
    "Shipping: 2-4 business days in the EU and US. Support hours: 8:00-20:00 CET, Monday to "
    "Saturday. Today is a regular business day."
)

PRODUCTS: tuple[str, ...] = (
    "Aurora X2 router",
    "Echo mesh Wi-Fi",
    "Harbor NAS",
    "Nimbus cloud backup",
    "Pulse smartwatch",
    "Vista 4K camera",
    "Quill e-reader",
    "Lumen smart bulb",
    "Breeze air purifier",
    "Atlas standing desk",
    "Orbit e-bike",
    "Summit hiking GPS",
)

#: category -> intents; each intent is a tuple of phrasings of the same question.
_PRODUCT_INTENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "faq": (
        ("How do I reset my {p} to factory settings?", "how can i factory reset the {p}"),
        ("What is your return policy for the {p}?", "Can I still return my {p}?"),
        (
            "How do I update the firmware on my {p}?",
            "my {p} says an update is available, how do I install it?",
        ),
        ("Is my {p} still under warranty?", "What does the warranty cover for the {p}?"),
    ),
    "product_info": (
        ("What is the battery life of the {p}?", "how long does the {p} last on one charge"),
        ("Does the {p} work with Apple HomeKit?", "Is the {p} compatible with Google Home?"),
        ("What's the difference between the {p} and the previous model?",),
    ),
    "news": (("What's new in the latest {p} update?", "any new features for the {p} this month?"),),
}

_GREETINGS: tuple[str, ...] = (
    "Hi!",
    "Hello, is anyone there?",
    "Good morning",
    "Hey, I need some help",
    "Thanks, that solved it!",
    "hello",
    "Can I talk to a human please?",
    "Thank you so much!",
)

_OUTAGE = "Is the {p} service down right now? It stopped working a few minutes ago."


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    category: str  # faq | product_info | greeting | news
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Workload:
    """``groups`` in send order: a group of one is a lone user; a larger group is a burst of
    users asking the same question at the same moment."""

    questions: tuple[Question, ...]  # the Zipf pool, most popular first
    groups: tuple[tuple[Question, ...], ...]
    bursts: int
    burst_size: int
    zipf_s: float

    @property
    def requests(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def distinct(self) -> int:
        return len({q.text for g in self.groups for q in g})


def _slug(product: str) -> str:
    return product.lower().replace(" ", "-")


def question_pool() -> list[Question]:
    """Templates x products x phrasings, plus greetings: every distinct question of the pool."""
    pool: list[Question] = []
    for product in PRODUCTS:
        tag = f"product:{_slug(product)}"
        for category, intents in _PRODUCT_INTENTS.items():
            for phrasings in intents:
                for phrasing in phrasings:
                    pool.append(Question(phrasing.format(p=product), category, (category, tag)))
    pool.extend(Question(g, "greeting", ("greeting",)) for g in _GREETINGS)
    return pool


def build_workload(
    requests: int, *, seed: int, zipf_s: float = 1.1, burst_size: int = 20, burst_every: int = 500
) -> Workload:
    """``requests`` questions: Zipf(s) draws from the pool, with a burst of ``burst_size``
    identical outage questions about every ``burst_every`` requests (at least one burst when
    there is room for it)."""
    rng = random.Random(seed)
    pool = question_pool()
    rng.shuffle(pool)  # popularity rank is random across templates, but fixed by the seed
    weights = [1.0 / (rank**zipf_s) for rank in range(1, len(pool) + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]

    bursts = min(len(PRODUCTS), requests // burst_every) if requests >= 2 * burst_size else 0
    if bursts == 0 and requests >= 5 * burst_size:
        bursts = 1
    singles = requests - bursts * burst_size
    draws = [pool[bisect.bisect_left(cumulative, rng.random() * total)] for _ in range(singles)]

    outage_products = rng.sample(PRODUCTS, bursts)
    groups: list[tuple[Question, ...]] = [(q,) for q in draws]
    for i, product in enumerate(outage_products):
        # Spread bursts over the run, never at the very start (the cache is busy warming up).
        at = (i + 1) * len(groups) // (bursts + 1)
        question = Question(
            _OUTAGE.format(p=product), "news", ("news", f"product:{_slug(product)}")
        )
        groups.insert(at, (question,) * burst_size)
    return Workload(tuple(pool), tuple(groups), bursts, burst_size, zipf_s)


_ANSWER_SENTENCES: tuple[str, ...] = (
    "Thanks for reaching out, I am happy to help with that.",
    "You can find the step-by-step guide in the Northwind app under Settings, then Help and support.",
    "Most customers are done in under five minutes, and nothing you have saved is lost along the way.",
    "If the status light keeps blinking orange afterwards, unplug the device for thirty seconds and try again.",
    "Your purchase is covered by our standard two-year warranty, counted from the delivery date on your invoice.",
    "Returns are free within 30 days of delivery: start one from Orders in your account and print the label.",
    "Firmware updates install automatically overnight, but you can start one right away from the device page.",
    "Please do not share your password or any one-time code with anyone, including our support team.",
    "If that does not solve it, reply here and I will hand you over to a human agent with your case notes.",
    "Our support team is available from 8:00 to 20:00 CET, Monday to Saturday, by chat and by phone.",
    "You can check the live service status at any time on status.northwind.example.",
    "Compatibility details, including smart home platforms, are listed on the product's specifications page.",
)


def support_answer(body: Mapping[str, Any]) -> str:
    """A plausible support answer for FakeProvider to return: 4-7 sentences (roughly 90-180
    output tokens at four characters per token), chosen by a hash of the question, so the same
    question always gets the same answer and answers have realistic, varied lengths."""
    messages = body.get("messages") or []
    question = str(messages[-1].get("content", "")) if messages else ""
    digest = hashlib.blake2b(question.encode(), digest_size=8).digest()
    count = 4 + digest[0] % 4
    start = digest[1] % len(_ANSWER_SENTENCES)
    picked = [_ANSWER_SENTENCES[(start + 5 * i) % len(_ANSWER_SENTENCES)] for i in range(count)]
    return " ".join(picked)
