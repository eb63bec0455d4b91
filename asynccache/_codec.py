"""Entry <-> bytes: the only place entries are (de)serialised. Never pickle.

An orjson array, versioned, so a reader can refuse what it does not understand rather than
misread it: ``[version, digest, tenant, created_at, ttl, model, usage counts, tags, category,
held, value]``, then the stream recording for a streamed answer.

``held`` is the memory the decoded entry holds (``_footprint``), measured by its writer so a
reader's L1 need not measure it again: ``[the writer's object-size tag, bytes]``, or None.
Object sizes differ between CPython versions and builds, so a reader takes the hint only from a
writer with its own tag.

An array, not an object: orjson reads it faster and the reader takes its fields by position, not
by a lookup each (an L2 hit: 106,175 -> 98,566 instructions). A later writer may append fields,
which this reader ignores; a change in the meaning of a position needs a new
``ENVELOPE_VERSION`` and a new ``KEY_SCHEMA`` (so old and new processes never read each other's
entries). Anything malformed raises :class:`CodecError`; the engine treats that as a miss,
deletes the entry and counts an integrity error.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._footprint import SIZES
from ._models import Entry, Usage, entry_of, usage_of
from ._recording import Recording

ENVELOPE_VERSION = 2
_FIELDS = 11  # the fields every entry has; a streamed answer's recording comes after them


class CodecError(ValueError):
    """Stored bytes are not a valid entry envelope."""


def encode(entry: Entry, held: int | None = None) -> bytes:
    """``held``: the bytes the decoded entry holds in memory (``_footprint.held_by``)."""
    u = entry.usage
    doc: list[Any] = [
        ENVELOPE_VERSION,
        entry.digest,
        entry.tenant,
        entry.created_at,
        entry.ttl,
        entry.model,
        [
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens,
        ],
        list(entry.tags),
        entry.category,
        None if held is None else [SIZES, held],
        entry.value,
    ]
    if entry.stream is not None:
        doc.append(entry.stream.to_json())
    return orjson.dumps(doc)


def decode(raw: bytes) -> tuple[Entry, int | None]:
    """The entry in ``raw`` and its writer's memory-size hint (None if absent or written where
    object sizes differ); every field is type-checked, since another process (or version, or a
    corrupted store) wrote it. Runs on every L2 hit, so the checks are plain type tests and the
    entry is built with the engine's fast constructors. ``_footprint.plausible`` judges the
    hint's value."""
    try:
        doc = orjson.loads(raw)
        if type(doc) is not list or len(doc) < _FIELDS or doc[0] != ENVELOPE_VERSION:
            raise CodecError("unknown envelope version")
        _, digest, tenant, created, ttl, model, counts, tags, category, hint, value = doc[:_FIELDS]
        stream = doc[_FIELDS] if len(doc) > _FIELDS else None
        if type(digest) is not str or (tenant is not None and type(tenant) is not str):
            raise CodecError("corrupt entry: digest/tenant have the wrong type")
        if (
            type(created) not in _NUMBERS
            or (ttl is not None and type(ttl) not in _NUMBERS)
            or (model is not None and type(model) is not str)
            or (category is not None and type(category) is not str)
            or type(tags) is not list
            or (tags and not all(type(tag) is str for tag in tags))
            or (
                hint is not None
                and (type(hint) is not list or len(hint) != 2 or type(hint[1]) is not int)
            )
        ):
            raise CodecError("corrupt entry: a field has the wrong type")
        entry = entry_of(
            value,
            digest,
            tenant,
            float(created),
            None if ttl is None else float(ttl),
            model,
            _usage(counts),
            tuple(tags),
            category,
            None if stream is None else Recording.from_json(stream),
        )
        return entry, hint[1] if hint is not None and hint[0] == SIZES else None
    except CodecError:
        raise
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise CodecError(f"corrupt entry: {exc}") from exc


_NUMBERS = (int, float)


def _usage(counts: Any) -> Usage:
    """The token counts: four in entries written before 1-hour cache writes were counted, five
    now; a later writer may append more, of any type, which this reader ignores (never
    deletes). Types are checked before the memo is asked: ``True == 1 == 1.0`` there."""
    if type(counts) is not list or len(counts) < 4:
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
    key = (inp, out, cached, write, write_1h)
    usage = _usages.get(key)
    if usage is None:
        if len(_usages) >= _MAX_USAGES:
            _usages.clear()
        usage = _usages[key] = usage_of(inp, out, cached, write, write_1h)
    return usage


#: Usage objects are immutable, and every L2 hit of one answer decodes the same counts: sharing
#: one object per counts saves building it, and lets the stats recorder price it once (it
#: remembers prices by Usage identity). Bounded; a clear costs only a re-build.
_usages: dict[tuple[int, int, int, int, int], Usage] = {}
_MAX_USAGES = 4096
