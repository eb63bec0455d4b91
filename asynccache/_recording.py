"""Streams as data: the events a provider sent, in order, and when each one arrived.

A streamed answer is stored as its :class:`Recording` next to the whole answer it amounts to, so
one entry serves both kinds of request: a stream hit replays the recording (same deltas, same
order, optionally the same pacing); a plain request reads the whole answer. An answer stored
from a plain request has no recording; a stream hit then gets the events a :class:`StreamShape`
splits it into.

An event is ``(name, data)``: the SSE ``event:`` name (Anthropic and the Responses API send one,
OpenAI chat does not) and the payload, parsed when it is a JSON object or array, else the raw
text (``[DONE]``). Pure data and pure functions: no SDK, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Event = tuple[str | None, Any]


class StreamShape(Protocol):
    """How one provider endpoint's stream relates to its whole answer (integrations supply it)."""

    def assemble(self, events: Sequence[Event]) -> Any | None:
        """The whole answer these events amount to (what the same request without ``stream``
        returns), or None when the stream did not finish (no terminal event): never stored."""

    def split(self, value: Any) -> list[Event]:
        """Events that stream this whole answer, for a stream request served from an answer
        that was stored whole."""


@dataclass(frozen=True, slots=True)
class Recording:
    """The events of one stream and their arrival times (seconds after the first event)."""

    events: tuple[Event, ...]
    offsets: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form. OpenAI chat chunks repeat the same ``id``, ``model``,
        ``created``, ``system_fingerprint``… in every event: fields equal in every object
        payload are stored once (about a third of the size of a chat stream)."""
        objects = [data for _, data in self.events if type(data) is dict]
        common: dict[str, Any] = dict(objects[0]) if objects else {}
        for data in objects[1:]:
            for field_name in [n for n in common if n not in data or data[n] != common[n]]:
                del common[field_name]
        rows: list[list[Any]] = []
        for (name, data), at in zip(self.events, self.offsets, strict=True):
            if common and type(data) is dict:
                data = {k: v for k, v in data.items() if k not in common}
            rows.append([name, data, round(at, 4)])
        return {"common": common, "events": rows}

    @classmethod
    def from_json(cls, doc: Any) -> Recording:
        """Inverse of :meth:`to_json`; raises ValueError/TypeError/KeyError on a malformed doc."""
        common = doc["common"]
        if type(common) is not dict:
            raise TypeError("recording: 'common' must be an object")
        events: list[Event] = []
        offsets: list[float] = []
        for name, data, at in doc["events"]:
            if name is not None and type(name) is not str:
                raise TypeError("recording: an event name must be a string or null")
            if common and type(data) is dict:
                data = {**common, **data}
            events.append((name, data))
            offsets.append(float(at))
        return cls(tuple(events), tuple(offsets))
