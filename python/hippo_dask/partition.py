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
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import _core
from .errors import HippoError, LineageError
from .plan import HIDDEN_PREFIX, MISSING
from .ids import (  # noqa: F401  (re-exported: capture writes what queries read)
    _positions_among,
    CODES,
    DERIVED,
    GROUP_ID,
    OFFSET_BITS,
    SPLIT_HIGH,
    SPLIT_LOW,
    TABLE,
    _OFFSET_MASK,
    ids_checksum,
    ids_to_positions,
    positions_from_halves,
    unique_sorted,
    untabulate,
    zigzag,
)




# --------------------------------------------------------------------------
# hidden columns


def clean(part: pd.DataFrame) -> pd.DataFrame:
    """``part`` without its hidden slot columns (what a user may see)."""
    hidden_cols = [c for c in part.columns if isinstance(c, str) and c.startswith(HIDDEN_PREFIX)]
    out = part.drop(columns=hidden_cols) if hidden_cols else part
    if isinstance(out, pd.DataFrame) and out.attrs:  # receipts ride in attrs between hippo's own tasks; user code never sees them
        out = out.copy(deep=False) if out is part else out
        out.attrs = {}
    return out


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


def attach_source(part: pd.DataFrame, column: str, partition_index: int) -> pd.DataFrame:
    """The source partition with its row ids in the hidden ``column``."""
    if not isinstance(part, pd.DataFrame):
        raise LineageError(f"a source partition must be a pandas DataFrame, got {type(part).__name__}")
    return part.assign(**{column: source_ids(partition_index, len(part))})


def _value_hashes(col: pd.Series) -> np.ndarray:
    """pandas' per-value hashes; values it cannot hash (lists, dicts in object columns) by their repr."""
    try:  # what hash_pandas_object(col, index=False) gives, without building a Series around it
        return pd.util.hash_array(col._values).astype(np.uint64, copy=False)
    except TypeError:
        return pd.util.hash_pandas_object(col.map(repr).astype(object), index=False).to_numpy()


def _arrow_text(col: pd.Series) -> Any:
    """A text or bytes column as one Arrow array of 64-bit offsets, or ``None`` for any other column.

    pandas string columns of either storage (``str``, ``string``: Arrow or Python
    objects) and Arrow string / binary columns; one array however the column is
    chunked, so the checksum of :func:`_arrow_text_checksum` depends on the values only.
    """
    import pyarrow as pa

    dtype = col.dtype
    if isinstance(dtype, pd.StringDtype):
        values = getattr(col.array, "_pa_array", None)
        if values is None:  # Python storage: the same values as Arrow text
            try:
                values = pa.array(col.to_numpy(dtype=object, na_value=None), type=pa.large_string(), from_pandas=True)
            except (pa.ArrowException, UnicodeError, TypeError):
                return None  # not valid UTF-8 text (a lone surrogate): hashed value by value instead
    elif isinstance(dtype, pd.ArrowDtype):
        values = col.array._pa_array
    else:
        return None
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        target = pa.large_string()
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        target = pa.large_binary()
    else:
        return None
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], type=kind)
    return values.cast(target) if values.type != target else values


def _arrow_text_checksum(values: Any) -> int:
    """A checksum of every value of an Arrow large string / binary array, in order: missing or not, length, bytes.

    Equal values give equal checksums whatever their buffers hold beyond them
    (an array's offset into shared buffers, bytes under a missing value); it
    reads each buffer once, where value hashing costs a hash per value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(values)
    parts = [b"text", n.to_bytes(8, "little")]
    if values.null_count:
        parts.append(_core.checksum(np.packbits(values.is_valid().to_numpy(zero_copy_only=False)).tobytes()).to_bytes(8, "little"))
        values = pc.fill_null(values, "" if pa.types.is_large_string(values.type) else b"")  # no bytes under a missing value
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=8 * values.offset) if n else np.zeros(1, np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(buffers[2], dtype=np.uint8, count=stop - start, offset=start) if stop > start else np.empty(0, np.uint8)
    lengths = offsets - start if start else offsets
    parts.append(_core.checksum(lengths.tobytes()).to_bytes(8, "little"))
    parts.append(_core.checksum(data.tobytes()).to_bytes(8, "little"))
    return _core.checksum(b"".join(parts))


def column_fingerprints(frame: pd.DataFrame) -> dict[str, str]:
    """Per column, a checksum of its dtype and every value, in order (not the index).

    Every value of every column counts: a change to any one cell changes its
    column's fingerprint (up to a 64-bit checksum collision). Plain numpy
    columns are checksummed as bytes (~4 ns a row for 16 columns); text and
    bytes columns (pandas ``str`` / ``string`` of either storage, Arrow
    string / binary) as their Arrow buffers (validity, lengths, bytes), about
    as cheap; others through pandas' value hashing. Neither depends on how an
    Arrow column is chunked.
    """
    sums = {}
    for i, name in enumerate(frame.columns):
        col = frame.iloc[:, i]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "biufcmM":
            checksum = _core.checksum(np.ascontiguousarray(col.to_numpy()).tobytes())
        else:
            text = _arrow_text(col)
            checksum = (_arrow_text_checksum(text) if text is not None
                        else _core.checksum(np.ascontiguousarray(_value_hashes(col)).tobytes()))
        sums[str(name)] = f"{col.dtype}:{checksum:016x}"
    return sums


def multiset_digest(frame: pd.DataFrame) -> dict[str, str]:
    """Order-free digests of a result: of its rows (all columns together), and of each column's values.

    Sums of per-value hashes, so the same rows in another order (a
    distributed shuffle delivers them so) give the same digest; a replay
    compares these. Each column is hashed once; a row's hash mixes its
    columns' hashes. Keys: ``"\x00rows"`` and every column (``dtype:digest``).
    """
    out: dict[str, str] = {}
    rows = row_hashes(frame, columns_out=out)
    return {"\x00rows": f"{len(frame)}:{int(rows.sum(dtype=np.uint64)):016x}", **out}


def row_hashes(frame: pd.DataFrame, positions: np.ndarray | None = None,
               columns_out: dict[str, str] | None = None) -> np.ndarray:
    """A uint64 hash of every row's values (mixing each column's value hashes; lists and dicts by repr).

    ``positions`` mixes each row's position in too; ``columns_out`` receives
    each column's order-free digest (``dtype:sum of its value hashes``).
    """
    rows = np.zeros(len(frame), dtype=np.uint64)
    with np.errstate(over="ignore"):
        if positions is not None:
            rows ^= np.asarray(positions, dtype=np.int64).view(np.uint64)
        for i in range(frame.shape[1]):
            col = frame.iloc[:, i]
            hashes = _value_hashes(col)
            if columns_out is not None:
                columns_out[str(frame.columns[i])] = f"{col.dtype}:{int(hashes.sum(dtype=np.uint64)):016x}"
            rows ^= hashes  # (rows ^ hashes) * _MIX + i + 1, in place
            rows *= _MIX
            rows += np.uint64(i + 1)
    return rows


def content_fingerprint(frame: pd.DataFrame) -> str:
    """One checksum of a frame's column names, dtypes and values (see :func:`column_fingerprints`).

    Recorded per source partition, so a replay can tell which partition of a
    source changed since capture.
    """
    return combined_fingerprint(column_fingerprints(frame))


def combined_fingerprint(sums: Mapping[str, str]) -> str:
    """The one fingerprint of a frame, from its per-column fingerprints (names and order included)."""
    return f"{_core.checksum(chr(0).join(f'{k}={v}' for k, v in sums.items()).encode()):016x}"


def partition_facts(part: pd.DataFrame) -> list:
    """``[rows, fingerprint, per-column fingerprints]`` of one source partition (user columns only).

    Per column too, so a replay that reads only some columns can check just those.
    """
    sums = column_fingerprints(clean(part))
    return [int(len(part)), combined_fingerprint(sums), sums]


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


@dataclass(frozen=True)
class UserCall:
    """How one user function is applied and checked, per partition.

    ``what`` names the operation in errors (``"assign z="``); ``kind`` is the
    declared or default lineage type (``rowwise``, ``all``, ``window``);
    ``reads`` the columns it reads (``None``: all of them). Operations whose
    values spread over rows (``all``, ``window``) write a membership fragment
    to ``fragment_dir`` and put each row's group / window id in ``slot_column``.
    """

    what: str
    kind: str = "rowwise"
    reads: tuple[str, ...] | None = None
    node_id: str = ""
    fragment_dir: str | None = None
    slot_column: str | None = None
    order: str | None = None
    dry: bool = False  # a run on fake rows (Dask's meta): errors pass through as they are


def run_user(call: UserCall, apply: Callable[[pd.DataFrame], Any], user: pd.DataFrame, part: pd.DataFrame,
             func: Any, replay: Mapping[str, Any]) -> Any:
    """``apply(user)``; if the user's function raises, narrow the rows it raises on (see :mod:`hippo_dask.diagnose.debug`)."""
    try:
        return apply(user)
    except HippoError:
        raise
    except Exception as exc:  # noqa: BLE001 - any user exception is narrowed and reported
        if call.dry:
            raise
        from .diagnose.debug import failure

        raise failure(call, apply, user, part, exc, func, replay) from exc


#: Rows of a partition a row-wise check re-runs the function on.
CHECK_ROWS = 32


def _check_positions(user: pd.DataFrame, reads: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows to re-run a function on: checked rows, and other rows whose values get changed.

    The checked rows take rows with missing values in the reads first (a
    ``fillna(mean)`` shows only there), then spread rows; always fewer than all
    rows, so a value that depends on the rows left out changes. Deterministic,
    so a retried task checks the same rows.
    """
    n = len(user)
    size = min(n - 1, CHECK_ROWS)
    cols = [c for c in (reads if reads is not None else user.columns) if c in user.columns]
    rng = np.random.default_rng(n)
    # a few random positions, without permuting all n (that would cost more than the check)
    drawn = np.unique(rng.integers(0, n, size=min(n, 4 * (size + CHECK_ROWS))))
    order = rng.permutation(drawn) if len(drawn) >= min(n, size + CHECK_ROWS) else rng.permutation(n)
    if cols:
        na_first = np.flatnonzero(_any_missing(user, cols))[: max(1, size // 2)]
        order = np.concatenate([na_first, order[~np.isin(order, na_first)]])
    checked = np.sort(order[:size])
    others = np.sort(order[size: size + CHECK_ROWS])
    return checked, others


def _any_missing(frame: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """Rows where any of ``cols`` is missing (``frame[cols].isna().any(axis=1)``, column by column)."""
    if not frame.columns.is_unique:
        return frame[list(cols)].isna().to_numpy().any(axis=1)
    missing = np.zeros(len(frame), dtype=bool)
    for c in cols:
        col = frame[c]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "biu":
            continue  # plain integers and booleans hold no missing value
        missing |= np.isnan(col.to_numpy()) if col.dtype == np.float64 else col.isna().to_numpy()
    return missing


def _perturbed(values: pd.Series) -> pd.Series:
    """Other values of the same type for the same rows: every one changed, none equal to another.

    Numbers become ``-2 v - 3 - i`` (order reversed, so ranks change; distinct,
    so ties break; shifted, so sums change), missing values become values (a
    ``fillna(mean)`` of an all-missing column shows then), times move back,
    strings get a prefix.
    """
    dtype = values.dtype
    step = np.arange(len(values))
    if dtype == np.float64 or dtype == np.int64:  # the same arithmetic as below, on the numpy values directly
        with np.errstate(over="ignore", invalid="ignore"):
            moved = values.to_numpy() * -2 - 3 - step
        if dtype == np.float64:
            moved = np.where(np.isnan(moved), 0.5 + step, moved)
        return pd.Series(moved, index=values.index, name=values.name)
    try:
        if pd.api.types.is_bool_dtype(dtype):
            return ~values.fillna(False).astype(bool)
        if pd.api.types.is_numeric_dtype(dtype):
            return (values * -2 - 3 - step).fillna(pd.Series(0.5 + step, index=values.index)).astype(dtype, errors="ignore")
        if pd.api.types.is_datetime64_any_dtype(dtype):
            moved = values - pd.to_timedelta(3653 + step, unit="D")
            return moved.fillna(pd.Timestamp("2000-01-01", tz=getattr(dtype, "tz", None)))
        if pd.api.types.is_timedelta64_dtype(dtype):
            return (values + pd.to_timedelta(1 + step, unit="s")).fillna(pd.Timedelta(seconds=1))
        if pd.api.types.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
            return pd.Series([f"~{i}~{v}" if isinstance(v, str) else f"~{i}" for i, v in enumerate(values)],
                             index=values.index).astype(dtype)
    except (TypeError, ValueError, OverflowError):
        pass
    return pd.Series(values.to_numpy()[::-1], index=values.index, dtype=dtype)


def _as_frame(value: Any) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    if isinstance(value, pd.Series):
        return value.to_frame().reset_index(drop=True).set_axis(["value"], axis=1)
    arr = np.asarray(value)
    return pd.DataFrame({"value": arr.reshape(len(arr), -1)[:, 0] if arr.ndim > 1 else arr})


def _plain_numbers(value: Any) -> np.ndarray | None:
    """The values of a Series or 1-d array of plain numpy numbers or booleans (default flags), else None."""
    if isinstance(value, pd.Series):
        if isinstance(value.dtype, np.dtype) and value.dtype.kind in "biuf" and value.flags.allows_duplicate_labels:
            return value.to_numpy()
    elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "biuf":
        return value
    return None


def _same(got: Any, expected: Any) -> bool:
    a, b = _plain_numbers(got), _plain_numbers(expected)
    if (a is not None and b is not None and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")):
        return True  # the same numbers, missing in the same rows: what the comparison below finds, without frames
    a, b = _as_frame(got), _as_frame(expected)
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return False
    for c in a.columns:
        left, right = a[c], b[c]
        if (isinstance(left, pd.Series) and isinstance(left.dtype, np.dtype) and left.dtype == right.dtype
                and left.dtype.kind in "biuf"
                and type(left) is type(right) and left.flags == right.flags
                and np.array_equal(left.to_numpy(), right.to_numpy(), equal_nan=left.dtype.kind == "f")):
            continue  # the same numbers, missing in the same rows: the comparison below would pass
        try:
            pd.testing.assert_series_equal(a[c], b[c], check_dtype=False, check_exact=False, rtol=1e-9,
                                           check_names=False, check_index=False, check_categorical=False)
        except (AssertionError, TypeError, ValueError):
            return False
    return True


def _declare_hint(what: str) -> str:
    return (
        f"declare its lineage: {what} ..., lineage=hippo.lin.All(reads=[...]) (each value from every row the "
        "function sees: the frame on pandas, the partition on Dask), hippo.lin.Window(reads=[...], preceding=k) "
        "(shift, rolling, cumsum), or use df.hippo.groupby(keys).transform(out=(column, func)) for group-wise values"
    )


def verify_rowwise(user: pd.DataFrame, apply: Callable[[pd.DataFrame], Any], full: Any, call: UserCall) -> None:
    """Check that ``apply`` is row-wise and reads only ``call.reads``; raise otherwise.

    Re-runs ``apply`` on at most 64 rows of the partition and compares with the
    values it gave those rows on the whole partition (``full``): (1) the checked
    rows alone, the columns outside ``reads`` scrambled; (2) the checked rows
    among other rows whose read values changed; (3) the other way round. Cheap
    (about 5 ms a partition), and run on every partition, pandas or Dask alike:
    inference is checked, not trusted. A sample, so a dependency that shows on
    none of these rows can pass.
    """
    n = len(user)
    if n < 2:
        return  # one row: its value can depend on no other row
    rows, others = _check_positions(user, call.reads)
    # every re-run works on these few rows, taken from the partition once
    both = np.sort(np.concatenate([rows, others]))
    probe = user.iloc[both]
    in_rows = np.isin(both, rows)
    sub = probe.iloc[np.flatnonzero(in_rows)]
    full_at = full.iloc[both] if isinstance(full, (pd.Series, pd.DataFrame)) else np.asarray(full)[both]
    expected = _take(full_at, np.flatnonzero(in_rows))
    unread = [c for c in user.columns if call.reads is not None and c not in call.reads]
    # 1. the checked rows alone (other rows left out), with the columns it does not read scrambled
    scrambled = sub
    if unread and len(sub) > 1:
        shift = np.roll(np.arange(len(sub)), 1)
        # the unread columns moved down one row, joined back by position: every column keeps its dtype
        # (putting values back with assign lets pandas infer a new one: object strings became str)
        moved = sub[unread].iloc[shift].set_axis(sub.index, axis=0)
        scrambled = pd.concat([sub.drop(columns=unread), moved], axis=1)[list(sub.columns)]
    try:
        ok = _same(apply(scrambled), expected)
    except Exception:  # noqa: BLE001 - scrambled columns it reads may break it: decided below
        if scrambled is sub:
            raise  # the function itself failed on its own rows: the user's error, as it is
        ok = False
    if not ok:
        plain_ok = _same(apply(sub), expected)  # an exception here is the function's own: it propagates
        if plain_ok and unread:
            raise LineageError(
                f"{call.what}: the function's values changed when columns outside its reads {list(call.reads or [])} "
                f"were scrambled, so it reads more columns than that; pass lineage=hippo.lin.Rowwise(reads=[...]) "
                "with every column it reads"
            )
        raise _not_rowwise(call)
    # 2. the checked rows among other rows whose values changed, and the other way round (a cumsum
    #    of zeros, or a mean of equal values, shows only here)
    if len(others):
        read = [c for c in user.columns if call.reads is None or c in call.reads]
        for changed in (~in_rows, in_rows):
            got = apply(probe.assign(**{c: _where(changed, _perturbed(probe[c]), probe[c]) for c in read}))
            kept = np.flatnonzero(~changed)
            if not _same(_take(got, kept), _take(full_at, kept)):
                raise _not_rowwise(call)


def _take(values: Any, positions: np.ndarray) -> Any:
    return values.iloc[positions] if isinstance(values, (pd.Series, pd.DataFrame)) else np.asarray(values)[positions]


def _where(mask: np.ndarray, new: pd.Series, old: pd.Series) -> pd.Series:
    if isinstance(old.dtype, np.dtype) and new.dtype == old.dtype:  # plain numpy values: no setitem machinery
        # dtype= kept explicitly: from an object array of strings pandas would infer str
        return pd.Series(np.where(mask, new.to_numpy(), old.to_numpy()), index=old.index, name=old.name, dtype=old.dtype)
    out = old.copy()
    out.iloc[np.flatnonzero(mask)] = new.iloc[np.flatnonzero(mask)].to_numpy()
    return out


def _not_rowwise(call: UserCall) -> LineageError:
    return LineageError(
        f"{call.what}: the function is not row-wise: its values for some rows changed when other rows of the "
        f"partition were left out or changed (it depends on other rows, or is not deterministic); "
        f"{_declare_hint(call.what)}"
    )


def _content_id(part: pd.DataFrame, salt: str) -> int:
    """A non-negative id of a partition's rows (their slot values), stable across task retries."""
    data = b"".join(np.ascontiguousarray(part[c].to_numpy(dtype=np.int64)).tobytes() for c in hidden_of(part))
    return int(_core.checksum(salt.encode() + data)) & ((1 << 63) - 1)


def spread(part: pd.DataFrame, out: pd.DataFrame, call: UserCall) -> pd.DataFrame:
    """For ``all`` / ``window`` lineage: give each row its group / window id and record the membership.

    ``all``: every row of the partition shares one id (a hash of its rows).
    ``window``: row ``i`` in window order gets ``high << 32 | i`` (``high``: 31 bits
    of a hash of the partition's rows), so a window is a range of ids.
    """
    if call.kind == "rowwise":
        return out
    n = len(part)
    if call.kind == "all":
        ids = np.full(n, _content_id(part, call.node_id) | int(_HASHED), dtype=np.int64)
    else:
        position = np.arange(n, dtype=np.int64)
        if call.order is not None:
            order = np.argsort(part[call.order].to_numpy(), kind="stable") if n else position
            position = np.empty(n, dtype=np.int64)
            position[order] = np.arange(n, dtype=np.int64)
        high = _content_id(part, call.node_id) & ((1 << 31) - 1)
        ids = (np.int64(high) << OFFSET_BITS) | position
    arrays = membership_slots(part)
    arrays[GROUP_ID] = ids
    out = out.assign(**{call.slot_column: ids})
    return write_membership(part, arrays, call.fragment_dir, call.node_id, out)


def map_partition(
    part: pd.DataFrame, func: Callable, writes: Sequence[str] | None, kwargs: Mapping[str, Any],
    call: UserCall = UserCall("map"),
) -> pd.DataFrame:
    """Apply a user ``map`` function: same rows, same order, some columns rewritten.

    ``writes`` lists the columns the function may change; when it is given
    every other output column must be unchanged, which is checked here (it
    is what keeps inferred write sets honest on Dask).
    """
    user = clean(part)
    out = run_user(call, lambda u: func(u, **kwargs), user, part, func, {"apply": "map", "kwargs": dict(kwargs)})
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
    written = list(out.columns) if writes is None else [c for c in writes if c in out.columns]
    if call.kind == "rowwise" and written:  # unwritten columns were checked unchanged above
        verify_rowwise(user, lambda u: func(u, **kwargs)[written], out[written], call)
    return spread(part, reattach(out, part), call)


def assign_partition(part: pd.DataFrame, name: str, value: Any, call: UserCall = UserCall("assign")) -> pd.DataFrame:
    """Add or replace one column from a callable (checked per ``call``) or a scalar."""
    user = clean(part)
    out = run_user(call, lambda u: u.assign(**{name: value}), user, part, value, {"apply": "assign", "column": name})
    if callable(value) and call.kind == "rowwise":
        verify_rowwise(user, lambda u: u.assign(**{name: value})[name], out[name], call)
    return spread(part, reattach(out, part), call)


class FixedMask:
    """A filter's predicate that is a boolean mask computed outside hippo (``df.hippo.loc[df.x > 0]``).

    It selects by position, so it applies only to the very rows it was computed
    on: a frame of another length (a sliced replay, a probe) is refused rather
    than filtered by a mask meant for other rows.
    """

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = np.asarray(mask, dtype=bool)

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) != len(self.mask):
            raise LineageError(
                f"filter: this step keeps rows by a boolean mask of {len(self.mask)} values computed outside hippo, "
                f"and cannot be applied to {len(frame)} other rows (e.g. a sliced replay); write the condition as a "
                "function of the frame instead, e.g. df.hippo.filter(lambda p: p.x > 0)")
        return self.mask

    def __repr__(self) -> str:
        return f"FixedMask({int(self.mask.sum())} of {len(self.mask)} rows kept)"


def check_unique_keys(part: pd.DataFrame, sides: Sequence[str], validate: str, *largest: Any) -> pd.DataFrame:
    """``part`` unchanged if no side in ``sides`` has a key on more than one row (``largest``: rows of its
    most frequent key); else pandas' own error for ``merge(validate=)`` (Dask's merge has no such check)."""
    for side, most in zip(sides, largest):
        if most is not None and not pd.isna(most) and int(most) > 1:
            kind = validate.replace("_", "-") if "_" in validate else {"1:1": "one-to-one", "1:m": "one-to-many",
                                                                       "m:1": "many-to-one"}.get(validate, validate)
            raise pd.errors.MergeError(f"Merge keys are not unique in {side} dataset; not a {kind} merge")
    return part


def filter_by_mask_partition(part: pd.DataFrame, mask: pd.Series, shown_index: str | None = None) -> pd.DataFrame:
    """The rows of ``part`` where ``mask`` (the same partition of a boolean Series of the frame) is True.

    ``shown_index``: the column the user's frame shows as its index (``set_index``), whose
    values the mask's index then holds."""
    index = part.index if shown_index is None else pd.Index(part[shown_index])
    if not isinstance(mask, pd.Series) or not mask.index.equals(index):
        raise LineageError("filter / loc: a partition of the boolean Series has another index than the frame's "
                           "partition: it was not computed from this frame; compute it from the frame (df.x > 0) "
                           "or pass a function (lambda p: p.x > 0)")
    if mask.hasnans or not pd.api.types.is_bool_dtype(mask.dtype):
        raise LineageError(f"filter / loc: the boolean Series must hold booleans without missing values, got "
                           f"{mask.dtype}{' with missing values' if mask.hasnans else ''} (mask.fillna(False))")
    return part[mask.to_numpy(dtype=bool)]


def filter_partition(part: pd.DataFrame, predicate: Callable, call: UserCall = UserCall("filter")) -> pd.DataFrame:
    user = clean(part)

    def mask_of(frame: pd.DataFrame) -> np.ndarray:
        mask = predicate(frame)
        if isinstance(mask, pd.Series):
            if not mask.index.equals(frame.index):
                raise LineageError("filter: the predicate returned a Series with another index; return one aligned with the partition")
            mask = mask.to_numpy()
        mask = np.asarray(mask)
        if mask.shape != (len(frame),) or mask.dtype != bool:
            raise LineageError(
                f"filter: the predicate must return one boolean per row ({len(frame)}), got {mask.dtype} of shape {mask.shape}"
            )
        return mask

    mask = run_user(call, mask_of, user, part, predicate, {"apply": "filter"})
    if call.kind == "rowwise":
        verify_rowwise(user, mask_of, mask, call)
    return part[mask]


def on_user_columns(part: pd.DataFrame, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> pd.DataFrame:
    """Run a row-preserving pandas method (fillna, replace, astype) on user columns only."""
    out = getattr(clean(part), method)(*args, **kwargs)
    return reattach(out, part)


def flatmap_partition(part: pd.DataFrame, func: Callable, columns: Sequence[str],
                      call: UserCall = UserCall("flatmap")) -> pd.DataFrame:
    """Each input row -> the rows ``func(row)`` yields; every output row keeps its input's slots."""
    user = clean(part)
    records: list[Mapping[str, Any]] = []
    repeats = np.zeros(len(user), dtype=np.int64)

    def produce(frame: pd.DataFrame) -> list[list[Any]]:
        made = []
        for row in frame.itertuples(index=False, name=None):
            produced = func(dict(zip(frame.columns, row)))
            made.append(produced.to_dict("records") if isinstance(produced, pd.DataFrame) else list(produced))
        return made

    for i, produced in enumerate(run_user(call, produce, user, part, func, {"apply": "flatmap"})):
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


#: Group ids of plain integer keys in [-2**61, 2**61) are the zigzag-coded key: in [0, 2**62).
_SMALL_KEY = 1 << 61
#: Every other group id is a 62-bit hash with bit 62 set: in [2**62, 2**63), never MISSING.
_HASHED = np.int64(1 << 62)
_HASH_MASK = np.uint64((1 << 62) - 1)
_NA_HASH = np.uint64(0x5BD1E9955BD1E995)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_KIND_SALT = {"int": np.uint64(0x1F), "float": np.uint64(0x2F), "str": np.uint64(0x3F), "time": np.uint64(0x4F),
              "delta": np.uint64(0x5F), "other": np.uint64(0x6F)}


def _salted(hashes: np.ndarray, kind: str) -> np.ndarray:
    return (hashes ^ _KIND_SALT[kind]) * _MIX


def _hash_numbers(values: np.ndarray, na: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical hashes of numbers, so that equal numbers (3, 3.0, True) hash alike.

    Returns (hashes, integral mask, the integral values as int64).
    """
    from pandas.util import hash_array

    n = len(values)
    hashes = np.full(n, _NA_HASH, dtype=np.uint64)
    if values.dtype.kind in "biu":
        ints = values.astype(np.int64, copy=False) if values.dtype.kind != "u" else values.astype(np.int64)
        integral = ~na
        if values.dtype.kind == "u":  # above int64: a number of its own
            big = values > np.uint64(np.iinfo(np.int64).max)
            integral &= ~big
            if big.any():
                hashes[big] = _salted(hash_array(values[big].astype(np.uint64)), "other")
        hashes[integral] = _salted(hash_array(ints[integral]), "int")
        return hashes, integral, ints
    floats = values.astype(np.float64, copy=False)
    finite = ~na & np.isfinite(floats)
    with np.errstate(invalid="ignore"):
        integral = finite & (floats == np.floor(floats)) & (np.abs(floats) < 2.0**63)
    ints = np.zeros(n, dtype=np.int64)
    ints[integral] = floats[integral].astype(np.int64)
    hashes[integral] = _salted(hash_array(ints[integral]), "int")
    other = ~na & ~integral  # fractions and infinities, by their bits (-0.0 is integral, so never here)
    hashes[other] = _salted(hash_array(floats[other]), "float")
    return hashes, integral, ints


def _hash_objects(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical hashes of an object column: NA-likes alike, numbers by value, the rest by str."""
    import numbers

    from pandas.util import hash_array

    n = len(values)
    na = np.asarray(pd.isna(values), dtype=bool)
    as_number = np.zeros(n, dtype=bool)
    numbers_ = np.zeros(n, dtype=np.float64)
    exact_ints: dict[int, int] = {}  # position -> a Python int, kept exact (not through float)
    texts = np.empty(n, dtype=object)
    kinds = np.zeros(n, dtype=np.int8)  # 0 number, 1 str, 2 other
    for i, v in enumerate(values):
        if na[i]:
            continue
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Integral)):
            iv = int(v)
            if -(1 << 63) <= iv < (1 << 63):
                exact_ints[i] = iv
                as_number[i] = True
                continue
            texts[i], kinds[i] = repr(iv), 2
        elif isinstance(v, numbers.Real):
            as_number[i] = True
            numbers_[i] = float(v)
        elif isinstance(v, str):
            texts[i], kinds[i] = v, 1
        else:
            texts[i], kinds[i] = f"{type(v).__qualname__}:{v!r}", 2
    hashes = np.full(n, _NA_HASH, dtype=np.uint64)
    integral = np.zeros(n, dtype=bool)
    ints = np.zeros(n, dtype=np.int64)
    if as_number.any():
        idx = np.flatnonzero(as_number)
        floats = numbers_[idx]
        exact = np.array([i in exact_ints for i in idx])
        h, integ, iv = _hash_numbers(floats, np.zeros(len(idx), dtype=bool))
        if exact.any():  # Python ints: exact, not through float
            exact_vals = np.array([exact_ints[i] for i in idx[exact]], dtype=np.int64)
            h[exact] = _salted(hash_array(exact_vals), "int")
            integ[exact] = True
            iv[exact] = exact_vals
        hashes[idx], integral[idx], ints[idx] = h, integ, iv
    for kind, salt in ((1, "str"), (2, "other")):
        sel = (kinds == kind) & ~na & ~as_number
        if sel.any():
            hashes[sel] = _salted(hash_array(texts[sel].astype(object)), salt)
    return hashes, integral, ints


def _hash_column(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, integral mask, int value) of each value of one key column, by its value alone.

    Equal keys hash alike whatever their dtype: pandas groups and joins by value,
    so an id that depended on the dtype (int in one partition, float after a hole
    in another) or on the representation (-0.0, a NaN payload, None vs NaN) would
    split one group and lose lineage.
    """
    from pandas.util import hash_array

    dtype = col.dtype
    na = np.asarray(col.isna().to_numpy(), dtype=bool)
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories.to_series(index=range(len(dtype.categories)))
        h, integ, iv = _hash_column(cats)
        codes = col.cat.codes.to_numpy()
        ok = codes >= 0
        hashes = np.full(len(col), _NA_HASH, dtype=np.uint64)
        integral = np.zeros(len(col), dtype=bool)
        ints = np.zeros(len(col), dtype=np.int64)
        hashes[ok], integral[ok], ints[ok] = h[codes[ok]], integ[codes[ok]], iv[codes[ok]]
        return hashes, integral, ints
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        if isinstance(dtype, np.dtype):
            values = col.to_numpy()
        else:  # masked / arrow numbers: fill holes with 0 (masked by ``na``)
            target = np.float64 if pd.api.types.is_float_dtype(dtype) else (np.uint64 if pd.api.types.is_unsigned_integer_dtype(dtype) else np.int64)
            values = col.to_numpy(dtype=target, na_value=0)
        return _hash_numbers(values, na)
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        kind = "time" if pd.api.types.is_datetime64_any_dtype(dtype) else "delta"
        values = col.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(dtype, "tz", None) is not None else col
        ns = values.astype("datetime64[ns]" if kind == "time" else "timedelta64[ns]").to_numpy().view(np.int64)
        hashes = np.full(len(col), _NA_HASH, dtype=np.uint64)
        hashes[~na] = _salted(hash_array(ns[~na]), kind)
        return hashes, np.zeros(len(col), dtype=bool), np.zeros(len(col), dtype=np.int64)
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        hashes = np.full(len(col), _NA_HASH, dtype=np.uint64)
        if (~na).any():
            distinct, codes = _arrow_codes(col)
            if distinct is not None:  # each distinct text hashed once, as hash_array's categorize does
                hashes[~na] = _salted(hash_array(distinct, categorize=False)[codes[~na]], "str")
            else:
                texts = col.to_numpy(dtype=object, na_value=None)
                hashes[~na] = _salted(hash_array(texts[~na]), "str")
        return hashes, np.zeros(len(col), dtype=bool), np.zeros(len(col), dtype=np.int64)
    return _hash_objects(col.to_numpy(dtype=object))


def _arrow_codes(col: pd.Series) -> tuple[np.ndarray | None, np.ndarray | None]:
    """An Arrow-backed text column as (its distinct texts as Python str objects, each row's code into them).

    ``(None, None)`` for other columns. A missing value's code is 0: callers mask them.
    """
    import pyarrow as pa

    values = getattr(col.array, "_pa_array", None)
    if values is None or not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None, None
    values = values.combine_chunks() if values.num_chunks else pa.array([], type=values.type)
    encoded = values.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
    return distinct, codes


def group_ids(keys: pd.DataFrame) -> np.ndarray:
    """Deterministic non-negative int64 id of each row's group (its key values), exact.

    A single key whose value is an integer in [-2**61, 2**61) (whatever the
    column's dtype: 3 and 3.0 are one group, as pandas groups them) is its own
    id, zigzag-coded into [0, 2**62): "rows with equal key" is then stored as
    the key itself, which compresses like the key does. Every other key is a
    62-bit hash of its values with bit 62 set, in [2**62, 2**63): the two
    ranges never meet, and no id is ``MISSING``.
    """
    n = len(keys)
    if keys.shape[1] == 1 and isinstance(keys.dtypes.iloc[0], np.dtype) and keys.dtypes.iloc[0].kind in "iu":
        # the common case, fast: plain integers in range are their own id; hash only the others
        values = keys.iloc[:, 0].to_numpy()
        small = (values >= -_SMALL_KEY) & (values < _SMALL_KEY) if values.dtype.kind == "i" else values < _SMALL_KEY
        if small.all():
            v = values.astype(np.int64, copy=False)
            return (v << 1) ^ (v >> 63)
    combined = np.zeros(n, dtype=np.uint64)
    small = np.zeros(n, dtype=bool)
    zigzag = np.zeros(n, dtype=np.int64)
    for j in range(keys.shape[1]):
        hashes, integral, ints = _hash_column(keys.iloc[:, j])
        combined = (combined ^ hashes) * _MIX + np.uint64(j + 1)
        combined ^= combined >> np.uint64(29)
        if keys.shape[1] == 1:
            small = integral & (ints >= -_SMALL_KEY) & (ints < _SMALL_KEY)
            zigzag = (ints << 1) ^ (ints >> 63)
    ids = (combined & _HASH_MASK).astype(np.int64) | _HASHED
    if small.any():
        ids[small] = zigzag[small]
    return ids


def _distinct_values(values: pd.Series) -> list:
    return list(set(values.dropna()))


def _nunique_chunk(grouped):
    return grouped.apply(_distinct_values)


def _nunique_combine(chunks):
    # dropna=False: a missing key is a group of its own here (the user's dropna already chose the groups)
    return chunks.obj.groupby(level=list(range(chunks.obj.index.nlevels)), dropna=False).sum()


def _nunique_finalize(combined):
    return combined.apply(lambda values: len(set(values)) if isinstance(values, list) else 0)


def dask_aggregation(func: str):
    """The Dask spelling of a named aggregation (Dask has no built-in ``nunique`` here)."""
    if func != "nunique":
        return func
    import dask.dataframe as dd

    return dd.Aggregation(name="nunique", chunk=_nunique_chunk, agg=_nunique_combine, finalize=_nunique_finalize)


def membership_slots(part: pd.DataFrame) -> dict[str, np.ndarray]:
    """A partition's slot values, each split into high and low 32 bits (see :func:`membership_arrays`)."""
    arrays = {}
    for c in hidden_of(part):
        ids = part[c].to_numpy(dtype=np.int64)
        arrays[c + SPLIT_HIGH] = ids >> OFFSET_BITS
        arrays[c + SPLIT_LOW] = ids & _OFFSET_MASK
    return arrays


def membership_arrays(part: pd.DataFrame, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Which group each row of a group-by input belongs to, by slot tuple.

    Slot ids are stored split into their high and low 32 bits: source ids are
    ``partition << 32 | offset``, and the two halves bit-pack into about
    log2(partitions) + log2(partition rows) bits, where the whole id would take 32+.
    """
    arrays = membership_slots(part)
    arrays[GROUP_ID] = group_ids(part[list(keys)])
    return arrays


def _factorize_sorted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, ascending distinct values) of int64 ``keys``: ``pd.factorize(keys, sort=True)``.

    Through a presence table when the keys span a small range (group ids of integer keys:
    ~2 ms for 190k keys, against ~20 ms for a hash table then a sort of the distinct values).
    """
    low, high = int(keys.min()), int(keys.max())
    span = high - low + 1
    if span <= max(4 * len(keys), 1 << 16):
        present = np.zeros(span, dtype=bool)
        present[keys - low] = True
        uniques = np.flatnonzero(present) + low
        return _positions_among(uniques, keys), uniques  # the same lookup table queries use
    codes, uniques = pd.factorize(keys, sort=True)
    return codes.astype(np.int64, copy=False), uniques.astype(np.int64, copy=False)


def tabulate(arrays: Mapping[str, np.ndarray], key: str, fixed: Sequence[str] = (),
             derived: bool = False) -> dict[str, np.ndarray]:
    """A fragment's arrays, with every array that is a function of array ``key`` stored once
    per distinct key value instead of once per row.

    ``key`` stays per row. An array ``a`` that takes one value per distinct value of ``key``
    in this fragment becomes ``a + TABLE + key``: its value for each distinct key, in the
    ascending order of ``key + TABLE`` (the distinct keys). Exact by construction (checked
    here, value by value); :func:`untabulate` undoes it. Hippo's "store a function where the
    mapping is derivable": after ``merge(users, on="user_id")`` then ``groupby("user_id")``
    the users row is one per group, so a membership fragment stores it once per group, and
    the result stores it once per group slot value. The key itself may become
    ``key + CODES``, its rows' positions among the distinct keys, where that is smaller.
    Every choice is by the Rust codec's encoded size: the smallest encoding wins.
    Arrays named in ``fixed`` stay per row (what a derived key is computed from, see
    :func:`derive_key`); a ``derived`` key is not stored per row at all, so its codes
    are not tried.
    """
    keys = arrays.get(key)
    if keys is None or len(keys) < 2 or key + TABLE in arrays or keys.dtype != np.int64:
        return dict(arrays)
    # not the key of an earlier table nor codes: one pass of untabulate undoes them all;
    # constant arrays already cost nothing per row
    candidates = [k for k, v in arrays.items()
                  if k != key and k not in fixed and TABLE not in k and not k.endswith(CODES) and k + TABLE not in arrays
                  and len(v) == len(keys) and v.dtype == np.int64 and v.min() != v.max()]
    codes, uniques = _factorize_sorted(keys)
    if len(uniques) == len(keys):  # distinct keys: a table saves nothing
        return dict(arrays)
    key_cost = len(_core.encode_fragment({key + TABLE: uniques}))  # paid once, by the first table
    out = dict(arrays)
    for k in candidates:
        table = np.empty(len(uniques), dtype=np.int64)
        table[codes] = arrays[k]
        if not np.array_equal(table[codes], arrays[k]):
            continue  # not a function of the key here
        # the smallest encoding wins: per row, or per key (plus the distinct keys, once)
        per_key = len(_core.encode_fragment({k + TABLE + key: table})) + (0 if key + TABLE in out else key_cost)
        if per_key < len(_core.encode_fragment({k: arrays[k]})):
            out[k + TABLE + key] = table
            del out[k]
            out[key + TABLE] = uniques
    if derived:
        return out
    # the key itself as codes into its distinct values, where smaller (group ids are zigzag
    # coded or hashed: a fragment's 85k distinct ids code in 17 bits where the ids take 18+)
    as_codes = len(_core.encode_fragment({key + CODES: codes})) + (0 if key + TABLE in out else key_cost)
    if as_codes < len(_core.encode_fragment({key: keys})):
        out[key + CODES] = codes
        del out[key]
        out[key + TABLE] = uniques
    return out


def is_small_int_key(values: pd.Series) -> bool:
    """Whether :func:`group_ids` of this one key column is :func:`zigzag` of its values."""
    dtype = values.dtype
    if not (isinstance(dtype, np.dtype) and dtype.kind in "iu"):
        return False
    v = values.to_numpy()
    if not len(v):
        return True
    return bool(v.max() < _SMALL_KEY and (dtype.kind == "u" or v.min() >= -_SMALL_KEY))


def derive_key(packed: Mapping[str, np.ndarray], key: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """``packed`` (from :func:`tabulate`) without per-row ``key``: a query derives it from a source column.

    Hippo's "store a function where the mapping is derivable": when a group-by's one key is
    an integer column copied unchanged from a file source (:func:`hippo_dask.plan.copied_from`),
    each row's group id is that source value at the row's source slot, zigzag-coded, so the
    fragment keeps only the checksum of ``values`` (the per-row ids) under ``key + DERIVED``;
    the distinct keys stay when tables are keyed on them. The reader re-reads the source
    column and refuses an answer unless the derived ids match the checksum exactly.
    """
    out = {k: v for k, v in packed.items() if k not in (key, key + CODES)}
    if not any(k.endswith(TABLE + key) for k in out):
        out.pop(key + TABLE, None)  # nothing is keyed on the distinct values
    out[key + DERIVED] = np.array([ids_checksum(values)], dtype=np.int64)
    return out


#: Key of the receipts dict in a partition's ``attrs``: node id -> receipt of the fragment it wrote.
RECEIPTS = "hippo_receipts"


def write_membership(part: pd.DataFrame, arrays: Mapping[str, np.ndarray], fragment_dir: str | None, node_id: str,
                     out: pd.DataFrame, derived_from: str | None = None) -> pd.DataFrame:
    """Write one partition's membership fragment; return ``out`` carrying its receipt.

    The fragment is named by its checksum, so re-running the task rewrites the
    same file. The receipt (the fragment's name) rides in ``out.attrs`` to the
    task that collects receipts for the manifest (:func:`receipt_of`): a run lists
    exactly the fragments its own tasks wrote, never a folder's contents.
    ``fragment_dir=None`` (a dry run on fake rows, for Dask's meta) writes nothing.
    ``derived_from`` (a source slot's hidden column) says the group ids are derived from
    that source's key column at that slot (:func:`derive_key`): they are not stored.
    """
    receipt: dict[str, Any] = {"rows": int(len(part)), "fragment": "", "checksum": "", "bytes": 0, "digest": ""}
    if len(part) and fragment_dir is not None:
        from .store import write_fragment

        if derived_from is None:
            packed = tabulate(arrays, GROUP_ID)
        else:  # the slot the ids are derived from stays per row
            packed = tabulate(arrays, GROUP_ID, fixed=(derived_from + SPLIT_HIGH, derived_from + SPLIT_LOW), derived=True)
            packed = derive_key(packed, GROUP_ID, arrays[GROUP_ID])
        data = _core.encode_fragment(packed)
        receipt["fragment"] = write_fragment(fragment_dir, data)
        receipt["checksum"] = receipt["fragment"].split(".")[0]
        receipt["bytes"] = len(data)
    return with_receipt(out if out is not part else part.copy(deep=False), node_id, receipt)


def with_receipt(out: pd.DataFrame, key: str, receipt: Mapping[str, Any]) -> pd.DataFrame:
    """``out`` (a frame hippo owns) carrying ``receipt`` under ``key`` in its attrs."""
    out.attrs = {RECEIPTS: {**out.attrs.get(RECEIPTS, {}), key: dict(receipt)}}
    return out


RECEIPT_META = pd.DataFrame({"fragment": pd.Series([], dtype=object), "rows": pd.Series([], dtype=np.int64),
                             "checksum": pd.Series([], dtype=object), "bytes": pd.Series([], dtype=np.int64),
                             "digest": pd.Series([], dtype=object)})


def receipt_of(part: pd.DataFrame, key: str) -> pd.DataFrame:
    """The receipt a writing task left on its output partition, as a one-row frame."""
    receipt = part.attrs.get(RECEIPTS, {}).get(key)
    if receipt is None:
        raise LineageError(f"internal: the receipt of {key} did not reach the driver; the run is not committed")
    return pd.DataFrame({c: [receipt[c]] for c in RECEIPT_META.columns}).astype(RECEIPT_META.dtypes.to_dict())


def record_membership(part: pd.DataFrame, keys: Sequence[str], dropna: bool, fragment_dir: str,
                      node_id: str, derive_from: str | None = None) -> pd.DataFrame:
    """Write which group every row of this group-by input partition joined; pass it through.

    Rows whose key has a missing value join no group when ``dropna`` (pandas
    drops them); they are left out of the membership. ``derive_from``: the hidden
    column of the source slot whose source holds the one key column unchanged
    (:func:`hippo_dask.plan.copied_from`); where the key is a small integer on every row
    and the slot is set, the group ids are derived at query time instead of stored.
    """
    arrays = membership_arrays(part, keys)
    if dropna:
        keep = ~part[list(keys)].isna().any(axis=1).to_numpy()
        if not keep.all():
            arrays = {k: v[keep] for k, v in arrays.items()}
    derived = (derive_from is not None and len(keys) == 1 and derive_from in part.columns
               and is_small_int_key(part[keys[0]]) and bool((part[derive_from].to_numpy() >= 0).all()))
    return write_membership(part, arrays, fragment_dir, node_id, part, derive_from if derived else None)


def add_group_id(part: pd.DataFrame, keys: Sequence[str], column: str) -> pd.DataFrame:
    return part.assign(**{column: group_ids(part[list(keys)])})


def transform_partition(part: pd.DataFrame, groups: pd.DataFrame, keys: Sequence[str], outs: Sequence[str],
                        dropna: bool, slot_column: str, casts: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Each row of ``part`` gets its group's aggregated values (``groups``: keys + ``outs``) and group id.

    A left merge on the keys, by position: pandas matches keys by value as its
    group-by did, and a row whose group does not exist (a missing key under
    ``dropna``) gets missing values and the ``MISSING`` group id.
    """
    user = clean(part)
    ids = group_ids(user[list(keys)])
    if dropna and len(user):
        ids[user[list(keys)].isna().to_numpy().any(axis=1)] = MISSING
    # matched by group id, which is by value whatever the dtypes (a None key of an object
    # column comes back from the group-by as a float NaN, which a merge on keys refuses)
    found = pd.Index(group_ids(groups[list(keys)])).get_indexer(ids)
    hit = found >= 0
    values = {}
    for o in outs:
        column = groups[o].iloc[np.where(hit, found, 0)] if len(groups) else pd.Series(np.nan, index=range(len(user)))
        values[o] = column.where(pd.Series(hit, index=column.index)).to_numpy() if not hit.all() else column.to_numpy()
    out = user.assign(**values)
    if casts:
        out = out.astype({o: t for o, t in casts.items() if out[o].dtype != t})
    return reattach(out, part).assign(**{slot_column: ids})


def _splitmix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread uint64 from any uint64 (vectorised)."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_partition(part: pd.DataFrame, by: Sequence[str], test_size: float, seed: int, test: bool) -> pd.DataFrame:
    """The rows of ``part`` on one side of a seeded split, decided per row by a hash of its ``by`` values.

    A row's side depends only on its values and the seed: the same on pandas
    and Dask, whatever the partitioning, and on a replay of any subset.
    """
    ids = group_ids(part[list(by)]).view(np.uint64)
    salt = _splitmix(np.array([seed], dtype=np.uint64))[0]
    draw = _splitmix(ids ^ salt) >> np.uint64(11)  # 53 bits: exact as a float fraction
    in_test = draw < np.uint64(int(test_size * (1 << 53)))
    return part[in_test if test else ~in_test]


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
            if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
                # a slot that went through float64 may have lost bits: refuse, never guess
                raise LineageError(f"internal: hidden id column {c} passed through float64; ids would be inexact")
            fixed[c] = col.to_numpy(dtype=np.int64, na_value=MISSING)
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
    derivable: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Write one result partition's slot arrays to the store; return its clean rows with the receipt.

    ``source_counts`` maps every source slot (hidden column name) to the row
    counts of its source's partitions, so source ids are stored as positions
    in the source (the smallest numbers, and what queries answer in).
    ``derivable`` maps a group slot (hidden column) to ``(column, source slot)``: a
    result column that holds a file source's column unchanged at that slot's rows. Where
    the group ids equal :func:`zigzag` of that column on every row of this partition, they
    are not stored (:func:`derive_key`): a query derives them from the source file.
    """
    from .store import write_bytes

    arrays = {}
    for c in hidden_of(part):
        ids = part[c].to_numpy(dtype=np.int64)
        if c in source_counts:
            ids = ids_to_positions(ids, source_counts[c])
        arrays[c] = ids
    derived = {}
    for slot, (column, source_slot) in (derivable or {}).items():
        if (slot in arrays and column in part.columns and source_slot in arrays and len(part)
                and is_small_int_key(part[column]) and bool((arrays[source_slot] >= 0).all())
                and np.array_equal(zigzag(part[column].to_numpy()), arrays[slot])):
            derived[slot] = source_slot
    # group / concat slots have few values: tables keyed on them. Derived keys go first, and
    # the slots they are derived from stay per row (a reader derives before it untabulates).
    fixed = tuple(derived.values())
    keys = [c for c in arrays if c not in source_counts]
    for key in sorted(keys, key=lambda k: k not in derived):
        if key in derived:
            arrays = derive_key(tabulate(arrays, key, fixed=fixed, derived=True), key, arrays[key])
        else:
            arrays = tabulate(arrays, key, fixed=fixed)
    data = _core.encode_fragment(arrays)
    write_bytes(path, data)
    out = clean(part)
    receipt = {"fragment": path.rsplit("/", 1)[-1], "rows": len(part), "checksum": f"{_core.checksum(data):016x}",
               "bytes": len(data), "digest": json.dumps(multiset_digest(out))}
    out = out.copy(deep=False) if out is part else out
    return with_receipt(out, RESULT_RECEIPT, receipt)


#: Receipt key of the result fragment.
RESULT_RECEIPT = "result"


def result_fragment_name(index: int) -> str:
    """Name of result partition ``index``'s lineage fragment in the run folder (partition order = name order)."""
    return f"result-{index:05d}.hippo"


def result_file_name(index: int) -> str:
    """Name of result partition ``index``'s data file in a ``to_parquet`` folder (readers list files by name)."""
    return f"part-{index:05d}.parquet"


def finish_to_parquet(part: pd.DataFrame, source_counts: Mapping[str, Sequence[int]], run_dir: str, folder: str,
                      storage_options: Mapping[str, Any] | None = None,
                      derivable: Mapping[str, Sequence[str]] | None = None,
                      partition_info: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Write one result partition, from the worker that computed it: its lineage fragment into the
    run, its rows as a parquet file into ``folder``; return only the receipt (nothing is gathered)."""
    import fsspec

    from .store import _join

    index = int(partition_info["number"]) if partition_info else 0
    # _join: run_dir is a store Location, and the fragment's path keeps the store's storage options
    finished = finish_partition(part, source_counts, _join(run_dir, result_fragment_name(index)), derivable)
    rows = clean(finished)
    rows.attrs = {}
    with fsspec.open(folder.rstrip("/") + "/" + result_file_name(index), "wb", **dict(storage_options or {})) as f:
        rows.to_parquet(f, index=False)
    return receipt_of(finished, RESULT_RECEIPT)


def combine_digests(digests: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """One order-free digest (see :func:`multiset_digest`) for the concatenation of several frames."""
    if not digests:
        return {}
    out: dict[str, str] = {}
    for key in digests[0]:
        prefixes = {d[key].rsplit(":", 1)[0] for d in digests if key in d}
        total = sum(int(d[key].rsplit(":", 1)[1], 16) for d in digests if key in d) % (1 << 64)
        if key == "\x00rows":
            count = sum(int(d[key].rsplit(":", 1)[0]) for d in digests if key in d)
            out[key] = f"{count}:{total:016x}"
        else:
            out[key] = f"{prefixes.pop() if len(prefixes) == 1 else 'mixed'}:{total:016x}"
    return out


#: Rows of a result whose values make its fingerprint (all of them up to this many).
_FINGERPRINT_ROWS = 4096


def missing_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The ``columns`` a result frame has neither as a column nor as an index level (``set_index``)."""
    levels = set(frame.index.names)
    return [c for c in columns if c not in frame.columns and c not in levels]


def result_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame[columns]``, taking the columns a ``set_index`` made index levels from the index."""
    levels = [c for c in columns if c not in frame.columns and c in frame.index.names]
    if levels:
        frame = frame.reset_index(level=levels)
    return frame[list(columns)]


def result_fingerprint(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[int, str]:
    """Row count and a hash of the values of ``columns`` on evenly spread rows (all rows when few).

    Checked before a query answers for a result frame: a result that was
    filtered, re-sorted or edited since compute() no longer matches, so its
    positions are refused instead of answered for other rows. Copies and
    ``reset_index`` keep the values, so they keep the lineage.
    """
    n = len(frame)
    rows = np.arange(n) if n <= _FINGERPRINT_ROWS else np.unique(np.linspace(0, n - 1, _FINGERPRINT_ROWS).astype(np.int64))
    sample = result_columns(frame.iloc[rows], columns)
    # each row hashed with its position, both spread first: a raw position XORed into the value
    # hashes is linear, so two rows swapped could sum alike (rows (0, 0) and (2, 0) did)
    hashed = _splitmix(row_hashes(sample, positions=_splitmix(rows).view(np.int64)))
    return n, f"{int(hashed.sum(dtype=np.uint64)):016x}"
