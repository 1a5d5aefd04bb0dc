"""Per-partition work, shared by the pandas path and the Dask path.

Every function here takes one pandas partition that carries hidden slot
columns (see :mod:`hippo_dask.plan`) and returns one. The pandas backend
calls them on the whole frame; the Dask backend hands them to
``map_partitions`` so they run on the workers. User functions only ever see
the partition *without* the hidden columns.

Nothing here depends on a Dask partition number: source ids come from an
explicit index bound when the source was built, and fragments written from
here are named by their content, so a task run twice (a retry, two identical
expressions) writes the same bytes to the same key.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import _core
from .errors import LineageError
from .plan import HIDDEN_PREFIX, MISSING

#: Bits of a source row id that hold the offset inside its source partition.
OFFSET_BITS = 32
_OFFSET_MASK = (1 << OFFSET_BITS) - 1
#: Name of the group-id array inside a group membership fragment.
GROUP_ID = "__gid"
#: Suffixes of the two halves of a slot array in a membership fragment.
SPLIT_HIGH, SPLIT_LOW = ":hi", ":lo"


# --------------------------------------------------------------------------
# hidden columns


def clean(part: pd.DataFrame) -> pd.DataFrame:
    """``part`` without its hidden slot columns (what a user may see)."""
    hidden_cols = [c for c in part.columns if isinstance(c, str) and c.startswith(HIDDEN_PREFIX)]
    return part.drop(columns=hidden_cols) if hidden_cols else part


def hidden_of(part: pd.DataFrame) -> list[str]:
    return [c for c in part.columns if isinstance(c, str) and c.startswith(HIDDEN_PREFIX)]


def reattach(out: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """``out`` (same rows as ``part``, in order) with ``part``'s slots appended."""
    cols = hidden_of(part)
    if not cols:
        return out
    slots = {c: part[c].to_numpy() for c in cols}
    return out.assign(**slots) if len(out.columns) else pd.DataFrame(slots, index=out.index)


def source_ids(partition_index: int, n: int) -> np.ndarray:
    """Stable ids of the rows of one source partition: ``index << 32 | offset``."""
    if n > _OFFSET_MASK:
        raise LineageError(f"a source partition has {n} rows; at most {_OFFSET_MASK} are supported")
    return (np.int64(partition_index) << OFFSET_BITS) | np.arange(n, dtype=np.int64)


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


def attach_source(part: pd.DataFrame, column: str, partition_index: int) -> pd.DataFrame:
    """The source partition with its row ids in the hidden ``column``."""
    if not isinstance(part, pd.DataFrame):
        raise LineageError(f"a source partition must be a pandas DataFrame, got {type(part).__name__}")
    return part.assign(**{column: source_ids(partition_index, len(part))})


# --------------------------------------------------------------------------
# column reads of user callables


class _Reads:
    """What a callable touched while running on a probe frame."""

    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.unsure = False


_current_reads: contextvars.ContextVar[_Reads | None] = contextvars.ContextVar("hippo_reads", default=None)

# Public DataFrame attributes that reveal no cell values (or hand the frame back
# to user code that is recorded in turn). Anything else public -> "unsure".
_SAFE_ATTRIBUTES = frozenset(
    {"columns", "index", "shape", "dtypes", "empty", "ndim", "size", "attrs", "flags",
     "copy", "assign", "keys", "pipe"}
)


class _RecordingFrame(pd.DataFrame):
    """A DataFrame that notes which columns user code reads from it."""

    @property
    def _constructor(self):  # copies stay recording
        return _RecordingFrame

    @property
    def _constructor_sliced(self):
        return pd.Series

    def __getitem__(self, key):
        reads = _current_reads.get()
        if reads is not None:
            if isinstance(key, str):
                reads.columns.add(key)
            elif isinstance(key, list) and all(isinstance(k, str) for k in key):
                reads.columns.update(key)
            else:
                reads.unsure = True
        return super().__getitem__(key)

    def __getattribute__(self, name: str):
        if not name.startswith("_"):
            reads = _current_reads.get()
            if reads is not None and name not in _SAFE_ATTRIBUTES:
                columns = object.__getattribute__(self, "columns")
                if name in columns:
                    reads.columns.add(name)
                else:
                    reads.unsure = True
        return super().__getattribute__(name)


def infer_reads(func: Callable[[pd.DataFrame], Any], probe: pd.DataFrame) -> tuple[set[str] | None, Any]:
    """Run ``func`` on a recording copy of ``probe``; return (columns read, output).

    The set is ``None`` when the callable did something that could read any
    column (``.values``, ``.apply``, a boolean mask, an exception, ...): the
    caller must then assume it read every column, never fewer.
    """
    reads = _Reads()
    recording = _RecordingFrame(probe)
    reset = _current_reads.set(reads)
    try:
        output = func(recording)
    except Exception:
        return None, None
    finally:
        _current_reads.reset(reset)
    if isinstance(output, _RecordingFrame):
        output = pd.DataFrame(output)
    known = reads.columns & set(probe.columns)
    return (None if reads.unsure else known), output


def changed_columns(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    """Columns of ``after`` that are new or whose values differ from ``before``."""
    changed = set()
    for c in after.columns:
        if c not in before.columns:
            changed.add(c)
            continue
        if not _same_values(before[c], after[c]):
            changed.add(c)
    return changed


def _same_values(old: pd.Series, new: pd.Series) -> bool:
    if old.dtype != new.dtype:
        return False
    if isinstance(old.dtype, np.dtype) and old.dtype.kind in "biufcmM":
        a, b = old.to_numpy(), new.to_numpy()
        # copy-on-write frames share untouched columns: same buffer, same values
        if a.__array_interface__["data"][0] == b.__array_interface__["data"][0]:
            return True
    return bool(old.equals(new))


# --------------------------------------------------------------------------
# one-to-one operations


def map_partition(
    part: pd.DataFrame, func: Callable, writes: Sequence[str] | None, kwargs: Mapping[str, Any]
) -> pd.DataFrame:
    """Apply a user ``map`` function: same rows, same order, some columns rewritten.

    ``writes`` lists the columns the function may change; when it is given
    every other output column must be unchanged, which is checked here (it
    is what keeps inferred write sets honest on Dask).
    """
    user = clean(part)
    out = func(user, **kwargs)
    if not isinstance(out, pd.DataFrame):
        raise LineageError(f"map: the function must return a DataFrame, got {type(out).__name__}")
    if len(out) != len(user):
        raise LineageError(
            f"map: the function changed the number of rows ({len(user)} -> {len(out)}); "
            "map keeps every row in place: use .hippo.filter to drop rows or .hippo.flatmap to make several"
        )
    if not out.index.equals(user.index):
        raise LineageError(
            "map: the function changed the row order or the index; map keeps every row in place: "
            "use .hippo.sort_values to reorder and .hippo.filter / .hippo.flatmap to change rows"
        )
    if writes is not None:
        undeclared = changed_columns(user, out.drop(columns=[c for c in writes if c in out.columns]))
        if undeclared:
            raise LineageError(
                f"map: the function changed column(s) {sorted(undeclared)} that are not in writes={list(writes)}; "
                "pass writes= with every column the function creates or modifies"
            )
    return reattach(out, part)


def assign_partition(part: pd.DataFrame, assignments: Mapping[str, Any]) -> pd.DataFrame:
    out = clean(part).assign(**assignments)
    return reattach(out, part)


def filter_partition(part: pd.DataFrame, predicate: Callable) -> pd.DataFrame:
    user = clean(part)
    mask = predicate(user)
    if isinstance(mask, pd.Series):
        if not mask.index.equals(user.index):
            raise LineageError("filter: the predicate returned a Series with another index; return one aligned with the partition")
        mask = mask.to_numpy()
    mask = np.asarray(mask)
    if mask.shape != (len(user),) or mask.dtype != bool:
        raise LineageError(
            f"filter: the predicate must return one boolean per row ({len(user)}), got {mask.dtype} of shape {mask.shape}"
        )
    return part[mask]


def on_user_columns(part: pd.DataFrame, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> pd.DataFrame:
    """Run a row-preserving pandas method (fillna, replace, astype) on user columns only."""
    out = getattr(clean(part), method)(*args, **kwargs)
    return reattach(out, part)


def flatmap_partition(part: pd.DataFrame, func: Callable, columns: Sequence[str]) -> pd.DataFrame:
    """Each input row -> the rows ``func(row)`` yields; every output row keeps its input's slots."""
    user = clean(part)
    records: list[Mapping[str, Any]] = []
    repeats = np.zeros(len(user), dtype=np.int64)
    for i, row in enumerate(user.itertuples(index=False, name=None)):
        produced = func(dict(zip(user.columns, row)))
        if isinstance(produced, pd.DataFrame):
            produced = produced.to_dict("records")
        produced = list(produced)
        for rec in produced:
            if not isinstance(rec, Mapping):
                raise LineageError(f"flatmap: the function must yield mappings (dicts), got {type(rec).__name__}")
        repeats[i] = len(produced)
        records.extend(produced)
    out = pd.DataFrame.from_records(records, columns=list(columns)) if records else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in columns}
    )
    index = user.index.repeat(repeats)
    out.index = index
    for c in hidden_of(part):
        out[c] = np.repeat(part[c].to_numpy(), repeats)
    return out


# --------------------------------------------------------------------------
# group-by, concat


def group_ids(keys: pd.DataFrame) -> np.ndarray:
    """Deterministic non-negative int64 id of each row's group (its key values).

    A single plain integer key is its own id (zigzag-coded so negatives stay
    distinct): "rows with equal key" is then stored as the key itself, which
    compresses like the key does. Other keys use pandas' 64-bit hash, masked
    to 63 bits so ids never collide with ``MISSING``.
    """
    if keys.shape[1] == 1:
        col = keys.iloc[:, 0]
        if pd.api.types.is_integer_dtype(col.dtype) and not pd.api.types.is_extension_array_dtype(col.dtype):
            v = col.to_numpy().astype(np.int64, copy=False)
            return ((v << 1) ^ (v >> 63)) & np.int64(0x7FFF_FFFF_FFFF_FFFF)
    hashed = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    return (hashed & np.uint64(0x7FFF_FFFF_FFFF_FFFF)).astype(np.int64)


def _distinct_values(values: pd.Series) -> list:
    return list(set(values.dropna()))


def _nunique_chunk(grouped):
    return grouped.apply(_distinct_values)


def _nunique_combine(chunks):
    return chunks.obj.groupby(level=list(range(chunks.obj.index.nlevels))).sum()


def _nunique_finalize(combined):
    return combined.apply(lambda values: len(set(values)))


def dask_aggregation(func: str):
    """The Dask spelling of a named aggregation (Dask has no built-in ``nunique`` here)."""
    if func != "nunique":
        return func
    import dask.dataframe as dd

    return dd.Aggregation(name="nunique", chunk=_nunique_chunk, agg=_nunique_combine, finalize=_nunique_finalize)


def membership_arrays(part: pd.DataFrame, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Which group each row of a group-by input belongs to, by slot tuple.

    Slot ids are stored split into their high and low 32 bits: source ids are
    ``partition << 32 | offset``, and the two halves bit-pack into about
    log2(partitions) + log2(partition rows) bits, where the whole id would take 32+.
    """
    arrays = {}
    for c in hidden_of(part):
        ids = part[c].to_numpy(dtype=np.int64)
        arrays[c + SPLIT_HIGH] = ids >> OFFSET_BITS
        arrays[c + SPLIT_LOW] = ids & _OFFSET_MASK
    arrays[GROUP_ID] = group_ids(part[list(keys)])
    return arrays


def record_membership(part: pd.DataFrame, keys: Sequence[str], fragment_dir: str) -> pd.DataFrame:
    """Write the group membership of this partition to the store; pass it through.

    Runs where the partition is (on a worker for Dask). The fragment is named
    by its checksum, so re-running the task rewrites the same file.
    """
    if len(part):
        from .store import write_fragment

        write_fragment(fragment_dir, _core.encode_fragment(membership_arrays(part, keys)))
    return part


def add_group_id(part: pd.DataFrame, keys: Sequence[str], column: str) -> pd.DataFrame:
    return part.assign(**{column: group_ids(part[list(keys)])})


def tag_input(part: pd.DataFrame, tag_column: str, index: int, absent: Sequence[str]) -> pd.DataFrame:
    """Mark which concat input rows came from, and give absent slots ``MISSING``."""
    n = len(part)
    extra = {c: np.full(n, MISSING, dtype=np.int64) for c in absent}
    extra[tag_column] = np.full(n, index, dtype=np.int64)
    return part.assign(**extra)


def fill_missing_slots(part: pd.DataFrame, columns: Sequence[str], casts: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Slots that an outer merge left empty become ``MISSING`` int64.

    ``casts`` gives user columns that may hold missing values the dtype pandas
    gives them when they do (int -> float64), in every partition alike: else
    partitions disagree on dtypes and Dask's sort_values fails on them.
    """
    fixed = {}
    for c in columns:
        col = part[c]
        if col.dtype != np.int64:
            fixed[c] = col.fillna(MISSING).to_numpy(dtype=np.int64)
    for c, dtype in (casts or {}).items():
        if part[c].dtype != dtype:
            fixed[c] = part[c].astype(dtype)
    return part.assign(**fixed) if fixed else part


def nullable_dtype(dtype: Any) -> Any:
    """The dtype a column of ``dtype`` gets from pandas when a merge leaves holes in it."""
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return np.dtype("float64")
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return np.dtype(object)
    return dtype


# --------------------------------------------------------------------------
# result


def finish_partition(
    part: pd.DataFrame,
    source_counts: Mapping[str, Sequence[int]],
    path: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write one result partition's slot arrays to the store; return its clean rows.

    ``source_counts`` maps every source slot (hidden column name) to the row
    counts of its source's partitions, so source ids are stored as positions
    in the source (the smallest numbers, and what queries answer in).
    """
    from .store import write_bytes

    arrays = {}
    for c in hidden_of(part):
        ids = part[c].to_numpy(dtype=np.int64)
        if c in source_counts:
            ids = ids_to_positions(ids, source_counts[c])
        arrays[c] = ids
    data = _core.encode_fragment(arrays)
    write_bytes(path, data)
    return clean(part), {"path": path.rsplit("/", 1)[-1], "rows": len(part), "checksum": f"{_core.checksum(data):016x}", "bytes": len(data)}
