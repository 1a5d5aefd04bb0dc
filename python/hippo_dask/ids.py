"""Row ids, slot arrays and fragment tables: the numpy-only part of reading lineage.

Queries use only this module (with :mod:`hippo_dask._core`), never pandas, so opening a
run and tracing from a fresh process does not pay pandas' import. Capture
(:mod:`hippo_dask.partition`) writes what these functions read.
"""

from __future__ import annotations

import threading
from typing import Mapping, Sequence

import numpy as np

from . import _core
from .errors import CorruptRunError, LineageError
from .plan import MISSING

#: Bits of a source row id that hold the offset inside its source partition.
OFFSET_BITS = 32
_OFFSET_MASK = (1 << OFFSET_BITS) - 1
#: Name of the group-id array inside a group membership fragment.
GROUP_ID = "__gid"
#: Suffixes of the two halves of a slot array in a membership fragment.
SPLIT_HIGH, SPLIT_LOW = ":hi", ":lo"


def ids_to_positions(ids: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Source row ids -> 0-based positions in the whole source (``MISSING`` kept)."""
    ids = np.asarray(ids, dtype=np.int64)
    return positions_from_halves(ids >> OFFSET_BITS, ids & _OFFSET_MASK, counts)


def positions_from_halves(high: np.ndarray, low: np.ndarray, counts: Sequence[int],
                          out: np.ndarray | None = None) -> np.ndarray:
    """Source ids split into (partition, offset) halves -> positions, in two passes.

    ``table[p]`` is the number of rows before partition ``p``; its extra last entry
    answers ``high == -1`` (a ``MISSING`` id, whose low half is all ones) with
    ``MISSING``, so no mask or ``where`` pass is needed.
    """
    table = np.empty(len(counts) + 1, dtype=np.int64)
    table[0] = 0
    if len(counts) > 1:
        np.cumsum(np.asarray(counts, dtype=np.int64)[:-1], out=table[1:-1])
    table[-1] = MISSING - _OFFSET_MASK
    if len(high) and (high.max() >= len(counts) or high.min() < -1):
        raise LineageError("a source row id names a partition the source does not have")
    out = np.take(table, high, out=out)
    out += low
    return out


#: Separator of a per-key table's name: ``array + TABLE + key`` (see :func:`tabulate`).
TABLE = "@"
#: Suffix of a key stored as codes into its distinct values ``key + TABLE``.
CODES = "#"


def _positions_among(distinct: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each key's position among ``distinct`` (ascending), or a position whose value differs.

    Through a dense lookup table when the keys span a range that is small next to the
    number of keys or of distinct values (group ids of integer keys: 11M lookups in
    ~40 ms), else a binary search (~20 ms per 100k keys, in cache misses).
    """
    if len(distinct) and len(keys):
        low, high = int(distinct[0]), int(distinct[-1])
        span = high - low + 1
        if span <= min(max(64 * len(distinct), 32 * len(keys), 1 << 16), 1 << 26):
            # one zeroed table per thread, grown when needed and zeroed again after use: a fresh
            # np.zeros per fragment costs its page faults every time (~10 ms for 2M entries)
            table = getattr(_SCRATCH, "table", None)
            if table is None or len(table) < span:
                table = _SCRATCH.table = np.zeros(span, dtype=np.int64)
            slots = distinct - low
            table[slots] = np.arange(len(distinct), dtype=np.int64)  # a miss reads 0: the caller's check refuses it
            inside = np.clip(keys, low, high)
            inside -= low
            found = table[inside]
            table[slots] = 0
            return found
    return np.searchsorted(distinct, keys)


_SCRATCH = threading.local()


def untabulate(arrays: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Undo :func:`hippo_dask.partition.tabulate`: every per-key table back to one value per row."""
    tables = [k for k in arrays if TABLE in k and not k.endswith(TABLE)]
    coded = [k for k in arrays if k.endswith(CODES)]
    if not tables and not coded:
        return dict(arrays)
    out = {k: v for k, v in arrays.items() if TABLE not in k and not k.endswith(CODES)}
    index_of: dict[str, np.ndarray] = {}  # key -> each row's position among the key's distinct values
    for name in coded:
        key = name[: -len(CODES)]
        codes, distinct = arrays[name], arrays.get(key + TABLE)
        if distinct is None or (len(codes) and (codes.min() < 0 or codes.max() >= len(distinct))):
            raise CorruptRunError(f"{where}: the codes of {key!r} do not fit its distinct values")
        out[key] = distinct[codes]
        index_of[key] = codes  # no search needed for its tables
    for name in tables:
        target, key = name.split(TABLE, 1)
        if key not in index_of:
            keys, distinct = out.get(key), arrays.get(key + TABLE)
            if keys is None or distinct is None or (len(distinct) > 1 and not (distinct[1:] > distinct[:-1]).all()):
                raise CorruptRunError(f"{where}: the table of {key!r} is missing or malformed")
            index = _positions_among(distinct, keys)
            if len(keys) and (index.max() >= len(distinct) or not np.array_equal(distinct[index], keys)):
                raise CorruptRunError(f"{where}: the table of {key!r} lacks some of its values")
            index_of[key] = index
        if len(arrays[name]) != len(arrays[key + TABLE]):
            raise CorruptRunError(f"{where}: the table {name!r} is ragged")
        out[target] = arrays[name][index_of[key]]
    return out


#: Suffix of a per-row key that a fragment does not store: a query derives it from a source
#: column (:func:`hippo_dask.partition.derive_key`). The fragment keeps ``key + DERIVED``: one int64, the checksum
#: of the per-row values, which the derived values must match exactly.
DERIVED = "!"


def zigzag(values: np.ndarray) -> np.ndarray:
    """The group id of a single small-integer key (see :func:`hippo_dask.partition.group_ids`): the value, zigzag-coded."""
    v = np.asarray(values).astype(np.int64, copy=False)
    return (v << 1) ^ (v >> 63)


def ids_checksum(ids: np.ndarray) -> int:
    """Checksum of an int64 array's values (little-endian bytes), as a signed int64."""
    data = np.ascontiguousarray(ids, dtype="<i8").tobytes()
    return int(np.array([_core.checksum(data)], dtype=np.uint64).view(np.int64)[0])


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """Sorted unique values of a 1-d integer array, by sort and compare.

    numpy 2.4's ``np.unique`` hashes integer arrays first and is ~10x slower than
    a plain sort on the 10^6-10^7 ids a trace dedupes (2.1 s against 0.23 s for
    2M ids on this machine); so is everything built on it (``union1d``, ...).
    """
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        return np.unique(values)
    if len(values) < 2:
        return values.copy()
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]
