"""Entry <-> bytes: the only place entries are (de)serialised. Never pickle.

An orjson envelope, versioned, so a reader can refuse what it does not understand rather than
misread it. A streamed answer adds its recording under ``s`` (optional, so entries written
before streams were recorded still read, and older readers ignore it). Anything malformed raises :class:`CodecError`; the engine treats that as a miss,
deletes the entry and counts an integrity error.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._models import Entry, Usage
from ._recording import Recording

ENVELOPE_VERSION = 1


class CodecError(ValueError):
    """Stored bytes are not a valid entry envelope."""


def encode(entry: Entry) -> bytes:
    u = entry.usage
    doc: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "d": entry.digest,
        "t": entry.tenant,
        "c": entry.created_at,
        "x": entry.ttl,
        "m": entry.model,
        "u": [
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens,
        ],
        "g": list(entry.tags),
        "k": entry.category,
        "b": entry.value,
    }
    if entry.stream is not None:
        doc["s"] = entry.stream.to_json()
    return orjson.dumps(doc)


def decode(raw: bytes) -> Entry:
    try:
        doc = orjson.loads(raw)
        if type(doc) is not dict or doc.get("v") != ENVELOPE_VERSION:
            raise CodecError("unknown envelope version")
        u = doc["u"]
        stream = doc.get("s")
        entry = Entry(
            value=doc["b"],
            digest=doc["d"],
            tenant=doc["t"],
            created_at=float(doc["c"]),
            ttl=None if doc["x"] is None else float(doc["x"]),
            model=doc["m"],
            usage=Usage(*(int(n) for n in u[:5])),  # the 5th was added later: optional
            tags=tuple(doc["g"]),
            category=doc["k"],
            stream=None if stream is None else Recording.from_json(stream),
        )
    except CodecError:
        raise
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise CodecError(f"corrupt entry: {exc}") from exc
    if type(entry.digest) is not str or (
        entry.tenant is not None and type(entry.tenant) is not str
    ):
        raise CodecError("corrupt entry: digest/tenant have the wrong type")
    return entry
