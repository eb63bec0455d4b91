"""Entry <-> bytes: the only place entries are (de)serialised. Never pickle.

An orjson envelope, versioned, so a reader can refuse what it does not understand rather than
misread it. A streamed answer adds its recording under ``s``, and the writer the memory the
decoded entry holds under ``z`` (both optional, so older entries still read, and older readers
ignore them). Anything malformed raises :class:`CodecError`; the engine treats that as a miss,
deletes the entry and counts an integrity error.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._models import Entry, Usage, entry_of, usage_of
from ._recording import Recording

ENVELOPE_VERSION = 1


class CodecError(ValueError):
    """Stored bytes are not a valid entry envelope."""


def encode(entry: Entry, held: int | None = None) -> bytes:
    """``held``: the bytes the decoded entry holds in memory (``_footprint.held_by``), kept so a
    reader's L1 need not measure it again; readers that predate it ignore it."""
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
    if held is not None:
        doc["z"] = held
    return orjson.dumps(doc)


def decode(raw: bytes) -> tuple[Entry, int | None]:
    """The entry in ``raw`` and its writer's memory-size hint (None if absent); every field is
    type-checked, since another process (or version, or a corrupted store) wrote it. Runs on
    every L2 hit, so the checks are plain type tests and the entry is built with the engine's
    fast constructors. The hint is only type-checked here: ``_footprint.plausible`` judges it."""
    try:
        doc = orjson.loads(raw)
        if type(doc) is not dict or doc.get("v") != ENVELOPE_VERSION:
            raise CodecError("unknown envelope version")
        digest, tenant, created, ttl, model = doc["d"], doc["t"], doc["c"], doc["x"], doc["m"]
        tags, category, stream, held = doc["g"], doc["k"], doc.get("s"), doc.get("z")
        if type(digest) is not str or (tenant is not None and type(tenant) is not str):
            raise CodecError("corrupt entry: digest/tenant have the wrong type")
        if (
            type(created) not in _NUMBERS
            or (ttl is not None and type(ttl) not in _NUMBERS)
            or (model is not None and type(model) is not str)
            or (category is not None and type(category) is not str)
            or type(tags) is not list
            or (tags and not all(type(tag) is str for tag in tags))
            or (held is not None and type(held) is not int)
        ):
            raise CodecError("corrupt entry: a field has the wrong type")
        entry = entry_of(
            doc["b"],
            digest,
            tenant,
            float(created),
            None if ttl is None else float(ttl),
            model,
            _usage(doc["u"]),
            tuple(tags),
            category,
            None if stream is None else Recording.from_json(stream),
        )
        return entry, held
    except CodecError:
        raise
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise CodecError(f"corrupt entry: {exc}") from exc


_NUMBERS = (int, float)


def _usage(counts: Any) -> Usage:
    """The token counts: four in entries written before 1-hour cache writes were counted, five
    now; a later writer may append more, which this reader ignores (never deletes)."""
    if type(counts) is not list:
        raise CodecError("corrupt entry: usage must be a list of at least 4 counts")
    usage = _usages.get(tuple(counts))
    if usage is not None:  # counts equal to ones checked before (1 == 1.0 == True: same Usage)
        return usage
    if len(counts) < 4:
        raise CodecError("corrupt entry: usage must be a list of at least 4 counts")
    inp, out, cached, write = counts[0], counts[1], counts[2], counts[3]
    write_1h = counts[4] if len(counts) > 4 else 0
    if (
        type(inp) is not int
        or type(out) is not int
        or type(cached) is not int
        or type(write) is not int
        or type(write_1h) is not int
    ):
        raise CodecError("corrupt entry: usage counts must be integers")
    if len(_usages) >= _MAX_USAGES:
        _usages.clear()
    usage = _usages[tuple(counts)] = usage_of(inp, out, cached, write, write_1h)
    return usage


#: Usage objects are immutable, and every L2 hit of one answer decodes the same counts: sharing
#: one object per counts saves building it, and lets the stats recorder price it once (it
#: remembers prices by Usage identity). Bounded; a clear costs only a re-build.
_usages: dict[tuple[Any, ...], Usage] = {}
_MAX_USAGES = 4096
