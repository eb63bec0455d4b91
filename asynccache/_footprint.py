"""How much memory an entry really holds once it sits decoded in L1.

L1's byte bound (``l1_max_bytes``) is a promise about the process's memory, so it must count
what the decoded answer costs in Python objects, not the length of its JSON: a 2 KB answer is
about 3.5 KB of dicts, strings and numbers, and an answer made of many small numbers far more.
The walk runs once per answer, in the process that stores it (after its upstream call); the
size goes into the stored entry, so another process's L2 hit puts the answer in its L1 without
walking it again (3.6 us for a 1 KB ChatCompletion, timeit). The writer measures its own
objects after encoding them, when each non-ASCII string holds the UTF-8 copy orjson leaves in
it; the reader's, decoded from JSON, are the same size or smaller (no UTF-8 copy until something
encodes them; no spare room in lists), so the reader's L1 errs towards holding less than its
bound.

What is left out, on purpose: objects every entry shares (``None``, booleans, small ints, and
the short field names of records, which orjson and CPython reuse across objects), so a
thousand entries are not charged a thousand times for the string ``"role"``. The keys of a
large dict (a table of ids, say) are not shared, and are charged. Anything else is counted each time it is
referenced: sharing inside one answer is rare in JSON, and counting it twice only makes L1
hold a little less than its bound.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from ._models import Entry

#: What L1 spends per key besides the entry's own objects: the OrderedDict node and its hash
#: table slots, the record tuple with its size and deadline, and the entry's two floats.
#: Measured with tracemalloc on CPython 3.11 (tests/test_footprint.py keeps it honest).
RECORD_OVERHEAD = 110

#: orjson reuses dict keys up to 64 bytes long across objects (its key cache)...
_SHARED_KEY_LEN = 64
#: ...but only keys that repeat: field names of records. A dict with more keys than this is
#: taken for a table (ids or names to values), whose keys are its own and are charged.
_RECORD_KEYS = 32
_getsizeof = sys.getsizeof
#: Where object sizes are the same: the CPython version, its ABI flags (a free-threaded build's
#: objects are larger) and the pointer width. A size hint is only taken from the same tag.
SIZES = f"{sys.implementation.cache_tag}{getattr(sys, 'abiflags', '')}-{struct.calcsize('P') * 8}"


def footprint(key: str, entry: Entry, held: int | None = None) -> int:
    """Bytes of memory L1 holds for ``entry`` under ``key`` (an estimate within a few percent
    for JSON-like answers). ``held``: :func:`held_by` of the entry, when already known."""
    return RECORD_OVERHEAD + _getsizeof(key) + (held_by(entry) if held is None else held)


def held_by(entry: Entry) -> int:
    """Bytes the entry's own objects hold (no key, no L1 record): computed once per answer by
    its writer and stored with it (``_codec``), so an L2 hit need not walk the answer again."""
    size = _getsizeof(entry) + _getsizeof(entry.digest) + _getsizeof(entry.usage)
    size += size_of(entry.value)
    if entry.model is not None:
        size += _getsizeof(entry.model)
    if entry.tags:
        size += size_of(entry.tags)
    if entry.stream is not None:
        # Events decoded from a stored recording share their common fields: counted per event.
        size += _getsizeof(entry.stream) + size_of(entry.stream.events)
        size += size_of(entry.stream.offsets)
    return size


def plausible(held: int | None, encoded: int) -> int | None:
    """A size hint read from the store, if believable for an entry of ``encoded`` bytes; else
    None (walk the answer). Decoded JSON holds from about half its length (Latin-1 text, one
    byte per character in Python against two in UTF-8) to a few times it (small numbers, short
    strings); the bounds are wider than that, so only a corrupt or foreign hint is refused. A
    writer that lies within them can make L1 hold a few times its bound; one that can write the
    store can already serve any answer it likes."""
    if held is None or not encoded // _HINT_LOW <= held <= encoded * _HINT_HIGH:
        return None
    return held


_HINT_LOW, _HINT_HIGH = 2, 32


def size_of(value: Any) -> int:
    """Bytes held by a JSON-like value. An object referenced twice is counted twice: that
    overestimates (L1 then holds a little less than its bound), never the other way."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            size += _getsizeof(item)
        elif kind is dict:
            size += _getsizeof(item)
            if len(item) > _RECORD_KEYS:  # a table: its keys (ids, names) are its own
                for k, v in item.items():
                    size += _getsizeof(k)
                    stack.append(v)
                continue
            for k, v in item.items():
                if type(k) is not str or len(k) > _SHARED_KEY_LEN:
                    size += _getsizeof(k)
                stack.append(v)
        elif kind is list or kind is tuple:
            size += _getsizeof(item)
            stack.extend(item)
        elif kind is int:
            if not -5 <= item <= 256:  # small ints are shared singletons
                size += _getsizeof(item)
        elif item is not None and kind is not bool:  # floats, and anything unexpected
            size += _getsizeof(item)
    return size
