"""Checks and validations: the rows that break a rule, recorded without stopping the pipeline.

``df.hippo.check(predicate, name=...)`` and ``df.hippo.validate(schema,
name=...)`` (a pandera ``DataFrameSchema``) are one-to-one operations: every
row passes through unchanged, keeping its slots, like a ``filter`` that keeps
every row. While each partition is computed (on the workers, for Dask), the
predicate or the schema is evaluated on it, and the slot values of the rows
that fail are written as a checksummed fragment of the check's node, named in
the run's manifest like group memberships (written before the manifest, listed
from the receipts the writing tasks return). Nothing else is stored: a row is
identified by its slots, and its source rows and cells come from the lineage.

A fragment holds one line per failing row (a check) or per failure case (a
validation): the slot values of the row (split in 32-bit halves, as
memberships), its position in its partition (``-1``: a failure case of the
whole partition, such as a missing column or a wrong dtype) and, for a
validation, the cases' texts (check, column, failing value) as UTF-8 JSON.

:meth:`hippo_dask.Lineage.violations` reads them back as a
:class:`Violations`.

Examples
--------
>>> import pandas as pd, hippo_dask as hippo, tempfile
>>> _ = hippo.set_store(tempfile.mkdtemp())
>>> df = pd.DataFrame({"age": [34, -1, 52, 200], "city": ["a", "b", "c", "d"]}).hippo.source("people")
>>> out = df.hippo.check(lambda p: p.age.between(0, 130), name="age_ok").hippo.compute()
>>> len(out)  # every row passes through
4
>>> v = out.hippo.lineage.violations("age_ok")
>>> v.count, v.trace["people"].rows, v.trace["people"].cells.column.tolist()
(2, array([1, 3]), ['age', 'age'])
>>> v.result_rows
array([1, 3])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import _core
from . import partition as P
from .errors import CorruptRunError, LineageError, QueryError
from .plan import APPLY_MODEL, CHECKS, MEMBERSHIP, MISSING, ONE_TO_ONE, ROW, Node, hidden

if TYPE_CHECKING:
    from .lineage import Lineage, SlotRows, Trace

#: What a check or validation may be named: an identifier (ASCII letters, digits, underscores).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
#: Array of a fragment holding each line's row position in its partition (-1: no row).
POSITION = "__pos"
#: Array of a validation fragment holding its cases' texts, as UTF-8 JSON bytes.
TEXT = "__text"


# ---------------------------------------------------------------------- capture


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a valid check name, else a clear error."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LineageError(f"{what}: name= must be an identifier-like string (letters, digits and underscores, not "
                           f"starting with a digit, at most 100 characters), got {name!r}")
    return name


def pandera() -> Any:
    """The pandera module for pandas frames, or an ImportError naming the extra to install."""
    try:
        import pandera.pandas as pa
    except ImportError:
        try:
            import pandera as pa  # pandera before 0.24 had no pandera.pandas
        except ImportError:
            raise ImportError("df.hippo.validate needs pandera: pip install 'hippo_dask[validate]' "
                              "(or pip install pandera)") from None
    return pa


def _write(part: pd.DataFrame, arrays: Mapping[str, np.ndarray], lines: int, fragment_dir: str | None,
           node_id: str) -> pd.DataFrame:
    """Write one partition's fragment (when it has lines); ``part`` unchanged, carrying the receipt."""
    receipt: dict[str, Any] = {"rows": int(lines), "fragment": "", "checksum": "", "bytes": 0, "digest": ""}
    if lines and fragment_dir is not None:
        from .store import write_fragment

        data = _core.encode_fragment(dict(arrays))
        receipt["fragment"] = write_fragment(fragment_dir, data)
        receipt["checksum"] = receipt["fragment"].split(".")[0]
        receipt["bytes"] = len(data)
    return P.with_receipt(part.copy(deep=False), node_id, receipt)


def _slot_arrays(part: pd.DataFrame, positions: np.ndarray) -> dict[str, np.ndarray]:
    """Slot values (32-bit halves) of the rows at ``positions`` (-1: no row, every slot ``MISSING``)."""
    arrays = {}
    real = positions >= 0
    for c in P.hidden_of(part):
        ids = np.full(len(positions), MISSING, dtype=np.int64)
        ids[real] = part[c].to_numpy(dtype=np.int64)[positions[real]]
        arrays[c + P.SPLIT_HIGH] = ids >> P.OFFSET_BITS
        arrays[c + P.SPLIT_LOW] = ids & ((1 << P.OFFSET_BITS) - 1)
    arrays[POSITION] = positions.astype(np.int64)
    return arrays


def _mask(predicate: Callable, frame: pd.DataFrame, what: str) -> np.ndarray:
    """``predicate(frame)`` as one bool per row, True for rows that are OK (a missing value is not OK)."""
    mask = predicate(frame)
    if isinstance(mask, pd.Series):
        if not mask.index.equals(frame.index):
            raise LineageError(f"{what}: the predicate returned a Series with another index; return one aligned with "
                               "the partition")
        if pd.api.types.is_bool_dtype(mask.dtype) and not isinstance(mask.dtype, np.dtype):
            mask = mask.to_numpy(dtype=bool, na_value=False)  # nullable booleans: missing is not OK
        else:
            mask = mask.to_numpy()
    mask = np.asarray(mask)
    if mask.shape != (len(frame),) or mask.dtype != bool:
        raise LineageError(f"{what}: the predicate must return one boolean per row ({len(frame)}), True for rows "
                           f"that are OK; got {mask.dtype} of shape {mask.shape}")
    return mask


def check_partition(part: pd.DataFrame, predicate: Callable | None, call: P.UserCall, fragment_dir: str | None,
                    node_id: str) -> pd.DataFrame:
    """Evaluate a check's predicate on one partition; write the failing rows' slots; pass every row through.

    ``predicate=None`` evaluates nothing (a sliced replay, whose result does not
    depend on the check) and records no row.
    """
    if predicate is None:
        return _write(part, {}, 0, None, node_id)
    user = P.clean(part)

    def apply(frame: pd.DataFrame) -> np.ndarray:
        return _mask(predicate, frame, call.what)

    ok = P.run_user(call, apply, user, part, predicate, {"apply": "check"})
    if call.kind == "rowwise":
        P.verify_rowwise(user, apply, ok, call)
    failing = np.flatnonzero(~ok)
    return _write(part, _slot_arrays(part, failing), len(failing), fragment_dir, node_id)


def _text_array(texts: Sequence[Sequence[str]]) -> np.ndarray:
    return np.frombuffer(json.dumps([list(t) for t in texts]).encode(), dtype=np.uint8).astype(np.int64)


def _case_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def validate_partition(part: pd.DataFrame, schema: Any, call: P.UserCall, fragment_dir: str | None,
                       node_id: str) -> pd.DataFrame:
    """Validate one partition with a pandera schema (lazily); write every failure case; pass every row through.

    Each case keeps the slot values of its row (found by the index pandera
    reports: the partition is validated with a position index unless the
    schema checks the index) or, for a case of the whole partition (a missing
    column, a wrong dtype), none. ``schema=None`` evaluates nothing.
    """
    if schema is None:
        return _write(part, {}, 0, None, node_id)
    pa = pandera()
    user = P.clean(part)
    by_label = getattr(schema, "index", None) is not None
    frame = user if by_label else user.reset_index(drop=True)

    def apply(rows: pd.DataFrame) -> pd.DataFrame | None:
        try:
            schema.validate(rows, lazy=True)
        except pa.errors.SchemaErrors as exc:
            return exc.failure_cases
        return None

    cases = P.run_user(call, apply, frame, part, schema, {"apply": "validate"})
    if cases is None or not len(cases):
        return _write(part, {}, 0, fragment_dir, node_id)
    labels = list(cases["index"]) if "index" in cases.columns else [None] * len(cases)
    positions = np.full(len(cases), -1, dtype=np.int64)
    has_row = np.array([not _missing(label) for label in labels], dtype=bool)
    if has_row.any():
        wanted = [labels[i] for i in np.flatnonzero(has_row)]
        if by_label:
            if not frame.index.is_unique:
                raise LineageError(f"{call.what}: the schema checks the index, and a partition's index repeats labels, "
                                   "so a failure case cannot be tied to one row; give the frame a unique index")
            found = frame.index.get_indexer(pd.Index(wanted, tupleize_cols=False))
        else:
            found = np.asarray([_position(x) for x in wanted], dtype=np.int64)
        if (found < 0).any() or (found >= len(frame)).any():
            raise LineageError(f"internal: {call.what}: pandera reported rows this partition does not have")
        positions[np.flatnonzero(has_row)] = found
    column = cases["column"] if "column" in cases.columns else pd.Series([None] * len(cases))
    texts = [(_case_text(ch), "" if _missing(col) else _case_text(col), _case_text(value))
             for ch, col, value in zip(cases["check"], column, cases["failure_case"])]
    arrays = _slot_arrays(part, positions)
    arrays[TEXT] = _text_array(texts)
    return _write(part, arrays, len(cases), fragment_dir, node_id)


def _position(label: Any) -> int:
    """A row position pandera reported for a frame indexed by position (-1 if it is not one)."""
    if isinstance(label, (bool, np.bool_)):
        return -1
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        return int(label)
    return -1


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------- reading a run


@dataclass(frozen=True)
class Recorded:
    """What a check node wrote in a run, one line per failing row (check) or failure case (validation).

    ``slots``: the row's slot values, source slots as source positions
    (``MISSING`` for a case without a row); ``fragment`` and ``position``:
    which fragment and which row of its partition (-1: no row); ``texts``:
    (check, column, failure case) per line of a validation.
    """

    slots: "SlotRows"
    fragment: np.ndarray
    position: np.ndarray
    texts: list[tuple[str, str, str]] | None


def check_nodes(lineage: "Lineage") -> dict[str, Node]:
    """The run's checks and validations by name."""
    return {n.params["name"]: n for n in lineage._order if n.op in CHECKS}


def recorded(lineage: "Lineage", node: Node) -> Recorded:
    """Read every fragment a check node wrote in ``lineage``'s run (checksums verified)."""
    from .lineage import SlotRows

    directory = lineage.store.fragment_dir(node.id)
    counts = lineage._slot_source_counts(node)
    names = list(lineage.manifest["group_fragments"].get(node.id, []))
    keys = [hidden(s) + half for s in node.slots for half in (P.SPLIT_HIGH, P.SPLIT_LOW)] + [POSITION]
    columns: list[list[np.ndarray]] = [[] for _ in node.slots]
    fragments, positions, texts = [], [], ([] if node.op == "validate" else None)
    for f, name in enumerate(names):
        url = lineage.store.child(directory, name, "check fragment")
        arrays = lineage.store.read_fragment(url, name.split(".")[0])
        n = len(arrays.get(POSITION, ()))
        if any(k not in arrays or len(arrays[k]) != n for k in keys) or (texts is not None and TEXT not in arrays):
            raise CorruptRunError(f"{url}: a check fragment lacks the slots of {node.op} {node.params.get('name')!r} "
                                  "or has ragged arrays")
        for i, slot in enumerate(node.slots):
            high, low = arrays[hidden(slot) + P.SPLIT_HIGH], arrays[hidden(slot) + P.SPLIT_LOW]
            if slot in counts:
                columns[i].append(P.positions_from_halves(high, low, counts[slot]))
            else:
                columns[i].append((high << P.OFFSET_BITS) | low)
        fragments.append(np.full(n, f, dtype=np.int64))
        positions.append(arrays[POSITION])
        if texts is not None:
            try:
                lines = json.loads(bytes(arrays[TEXT].astype(np.uint8)).decode())
            except (ValueError, UnicodeDecodeError):
                raise CorruptRunError(f"{url}: the failure cases of a validation fragment do not decode") from None
            if len(lines) != n:
                raise CorruptRunError(f"{url}: a validation fragment has {len(lines)} cases for {n} rows")
            texts.extend(tuple(str(x) for x in line) for line in lines)
    empty = np.array([], dtype=np.int64)
    values = {s: (np.concatenate(c) if c else empty) for s, c in zip(node.slots, columns)}
    return Recorded(SlotRows.from_arrays(values, node.slots), np.concatenate(fragments) if fragments else empty,
                    np.concatenate(positions) if positions else empty, texts)


def identify(rec: Recorded) -> tuple[np.ndarray, np.ndarray]:
    """The failing rows of a check, each once, and the row of each recorded line.

    A row is its slot values plus its rank among the rows of its fragment
    with the same slot values (rows that one row became, by ``explode``), so
    a partition that was computed twice (a fit computes its training rows
    apart from the result) and recorded in another row order names the same
    rows. Returns the rows (slot values and rank, sorted: by slot values
    first) and, per line, its row (-1: a case without a row).
    """
    width = rec.slots.values.shape[1]
    has_row = rec.position >= 0
    line_row = np.full(len(rec.position), -1, dtype=np.int64)
    if not has_row.any():
        return np.empty((0, width + 1), dtype=np.int64), line_row
    keys = np.column_stack([rec.slots.values, rec.fragment, rec.position]).astype(np.int64)[has_row]
    physical, line_physical = np.unique(keys, axis=0, return_inverse=True)  # sorted by slots, fragment, position
    ranks = pd.DataFrame(physical[:, :width + 1]).groupby(list(range(width + 1)), sort=False).cumcount().to_numpy()
    identity = np.column_stack([physical[:, :width], ranks]).astype(np.int64)
    rows, physical_row = np.unique(identity, axis=0, return_inverse=True)
    line_row[has_row] = np.asarray(physical_row, dtype=np.int64).reshape(-1)[np.asarray(line_physical).reshape(-1)]
    return rows, line_row


def recorded_digest(lineage: "Lineage", node: Node) -> bytes:
    """An order-free value of what a check recorded (its failing rows and cases), to compare two runs."""
    rec = recorded(lineage, node)
    rows, line_row = identify(rec)
    texts = rec.texts if rec.texts is not None else [("", "", "")] * len(line_row)
    cases = sorted({(tuple(int(v) for v in rows[r]) if r >= 0 else (), tuple(t)) for r, t in zip(line_row, texts)})
    return json.dumps([rows.tolist(), cases]).encode()


# ---------------------------------------------------------------------- the answer


class Violations:
    """The rows a check or validation found failing in a run, and the source rows and cells behind them.

    Returned by :meth:`hippo_dask.Lineage.violations`. A failing row is named
    by its lineage (its slot values), in a fixed order: by the source rows and
    groups it came from. Rows that one row became (``explode``, ``flatmap``,
    ``sample(replace=True)``, with no group-by after) share their lineage and
    cannot be told apart afterwards: ``ambiguous`` is True when this can
    happen, and then :attr:`result_rows` includes the result rows of such
    siblings of a failing row too (and failing siblings that a shuffle put in
    different partitions count as one row). The trace is the same for
    siblings either way.

    Attributes
    ----------
    name : str
        The check's name.
    kind : str
        ``"check"`` or ``"validate"``.
    count : int
        Failing rows (rows with at least one failure case, for a validation).
    trace : Trace
        Source name -> :class:`~hippo_dask.lineage.TraceSet`: ``rows`` is the
        row lineage of every failing row, ``cells`` the cells behind the values
        that failed (a check: the columns its predicate read; a validation: the
        failing column of each case, none for cases without a column).
    ambiguous : bool
        Failing rows may share their lineage with sibling rows (see above).
    """

    def __init__(self, lineage: "Lineage", node: Node, rec: Recorded) -> None:
        from .lineage import SlotRows

        self._lineage = lineage
        self.node = node
        self.name: str = node.params["name"]
        self.kind: str = node.op
        rows, self._case_rows = identify(rec)  # one violation per failing row, sorted by slot values first
        self._tuples = SlotRows(tuple(node.slots), np.ascontiguousarray(rows[:, :len(node.slots)]))
        self.count = int(len(rows))
        self._texts = rec.texts
        self.ambiguous = _may_repeat(node)
        self.trace: "Trace" = lineage._backward(None, start=(node.id, self._start()))
        self._sources: list[dict[str, tuple[int, ...]]] | None = None
        self._result_rows: np.ndarray | None = None

    def _start(self) -> dict[str, "SlotRows"]:
        """Per column of the check's node (and ``ROW``), the failing rows whose cells in it are traced."""
        everything = self._tuples.unique()
        if self.kind == "check":
            reads = self.node.params.get("reads")
            columns = list(self.node.columns) if reads is None else [c for c in reads if c in self.node.columns]
            return {ROW: everything, **{c: everything for c in columns}}
        start = {ROW: everything}
        assert self._texts is not None
        by_column: dict[str, list[int]] = {}
        for (_, column, _), row in zip(self._texts, self._case_rows):
            if row >= 0 and column in self.node.columns:
                by_column.setdefault(column, []).append(int(row))
        for column, rows in by_column.items():
            start[column] = self._tuples.take(np.unique(np.asarray(rows, dtype=np.int64))).unique()
        return start

    def __len__(self) -> int:
        return self.count

    @property
    def rows(self) -> pd.DataFrame:
        """The failing rows: one line per row (index ``violation``), per source the tuple of its source rows.

        A row straight from the sources (through filters, merges, concats) has
        one source row per source it joined; a row made by a group-by has every
        member's. Computed on first use (one backward walk per row when a
        group-by came before the check).
        """
        sources = self._row_sources()
        names = self._lineage.sources
        frame = pd.DataFrame({name: [s.get(name, ()) for s in sources] for name in names},
                             index=pd.RangeIndex(len(sources), name="violation"))
        return frame

    @property
    def cases(self) -> pd.DataFrame | None:
        """A validation's failure cases (``None`` for a check).

        Columns ``check``, ``column`` (empty for a case of the whole frame),
        ``failure_case`` (the failing value, as text), ``violation`` (the failing
        row, a line of :attr:`rows`; -1 for a case without a row, such as a
        missing column or a wrong dtype, listed once however many partitions
        reported it) and, per source, the tuple of source rows behind the row.
        """
        if self._texts is None:
            return None
        sources = self._row_sources()
        names = self._lineage.sources
        taken = {"check", "column", "failure_case", "violation"}
        labels = {name: (name if name not in taken else f"{name}_rows") for name in names}
        lines, seen = [], set()
        order = np.lexsort((np.arange(len(self._case_rows)), np.where(self._case_rows < 0, np.iinfo(np.int64).max,
                                                                       self._case_rows)))
        for i in order:
            check, column, value = self._texts[i]
            row = int(self._case_rows[i])
            if (row, check, column, value) in seen:  # a case recorded twice (a partition computed twice)
                continue
            seen.add((row, check, column, value))
            origin = sources[row] if row >= 0 else {}
            lines.append({"check": check, "column": column, "failure_case": value, "violation": row,
                          **{labels[name]: origin.get(name, ()) for name in names}})
        columns = ["check", "column", "failure_case", "violation"] + [labels[n] for n in names]
        return pd.DataFrame(lines, columns=columns).astype({"violation": np.int64})

    @property
    def result_rows(self) -> np.ndarray:
        """Positions of the result rows the failing rows flowed into (exact), sorted.

        A result row counts when a failing row is in its row lineage: itself,
        a row merged or concatenated from it, or a group it was a member of (a
        failing row that a later filter dropped reaches none). Model
        dependencies are not followed (a failing training row does not reach
        every prediction). See ``ambiguous`` for rows that share their lineage.
        """
        if self._result_rows is None:
            self._result_rows = _flow(self._lineage, self.node, self._tuples.unique())
        return self._result_rows

    def _row_sources(self) -> list[dict[str, tuple[int, ...]]]:
        if self._sources is None:
            self._sources = _row_sources(self._lineage, self.node, self._tuples)
        return self._sources

    def __repr__(self) -> str:
        parts = []
        for name, ts in self.trace.items():
            parts.append(f"{name}: {len(ts.rows)} rows, {ts.n_cells} cells")
        cases = "" if self._texts is None else f", {len(set(zip(self._case_rows.tolist(), self._texts)))} failure cases"
        return (f"Violations({self.name!r}, {self.kind}: {self.count} failing rows{cases}; "
                f"sources {{{'; '.join(parts)}}})")


def violations(lineage: "Lineage", name: str) -> Violations:
    """The failing rows of the check or validation ``name`` of ``lineage``'s run; see :class:`Violations`."""
    nodes = check_nodes(lineage)
    if name not in nodes:
        known = sorted(nodes)
        raise QueryError(f"no check or validation named {name!r} in run {lineage.run_id}; "
                         f"{'its checks are ' + str(known) if known else 'it has none'}")
    node = nodes[name]
    return Violations(lineage, node, recorded(lineage, node))


# ---------------------------------------------------------------------- walks


def _row_inputs(node: Node) -> list[int]:
    """Inputs a node's row lineage follows (model inputs are model dependencies, not rows)."""
    return [k for k in range(len(node.inputs)) if k not in node.model_inputs]


def _may_repeat(node: Node) -> bool:
    """Whether two rows of ``node`` may carry equal slot values (made from one row, with no group-by after)."""
    memo: dict[str, bool] = {}

    def repeats(n: Node) -> bool:
        if n.id not in memo:
            if n.op == "source" or n.op in MEMBERSHIP:
                memo[n.id] = False
            elif n.op in ("explode", "flatmap") or (n.op == "sample" and n.params.get("replace")):
                memo[n.id] = True
            else:
                memo[n.id] = any(repeats(n.inputs[k]) for k in _row_inputs(n))
        return memo[n.id]

    return repeats(node)


def _rows_in(rows: "SlotRows", wanted: "SlotRows") -> np.ndarray:
    """Which of ``rows`` have, in ``wanted``'s slots, a tuple of values that ``wanted`` holds."""
    if not len(rows) or not len(wanted):
        return np.zeros(len(rows), dtype=bool)
    if len(wanted.slots) == 1:
        return np.isin(rows.column(wanted.slots[0]), wanted.values[:, 0])
    mine = pd.MultiIndex.from_arrays([rows.column(s) for s in wanted.slots])
    theirs = pd.MultiIndex.from_arrays([wanted.values[:, i] for i in range(len(wanted.slots))])
    return np.asarray(mine.isin(theirs), dtype=bool)


def _flow(lineage: "Lineage", node: Node, tuples: "SlotRows") -> np.ndarray:
    """Result positions whose row lineage holds one of ``tuples`` (rows of ``node``): a forward walk.

    The state of a node is a list of constraints, each "rows whose values in
    these slots are one of these tuples" (a merge keeps one side's slots, a
    concat adds its tag, a group-by turns members into their group ids), so a
    row is matched by all its slots together, never one slot at a time.
    """
    from .lineage import SlotRows

    state: dict[str, list[SlotRows]] = {node.id: [tuples]} if len(tuples) else {}
    downstream = False
    for current in lineage._order:
        if current.id == node.id:
            downstream = True
            continue
        if not downstream or not state:
            continue
        out: list[SlotRows] = []
        for k in _row_inputs(current):
            for t in state.get(current.inputs[k].id, []):
                stepped = _flow_step(lineage, current, k, t)
                if stepped is not None and len(stepped):
                    out.append(stepped)
        if out:
            state[current.id] = out
    slots = lineage.result_slots()
    mask = np.zeros(len(slots), dtype=bool)
    for t in state.get(lineage._result.id, []):
        mask |= _rows_in(slots, t)
    return np.flatnonzero(mask)


def _flow_step(lineage: "Lineage", node: Node, k: int, t: "SlotRows") -> "SlotRows | None":
    from .lineage import SlotRows

    if node.op in ONE_TO_ONE or node.op in APPLY_MODEL:
        return t
    if node.op == "merge":
        inverse = {src: out for out, src in node.slot_from[k].items()}
        return t.project({s: inverse[s] for s in t.slots})
    if node.op == "concat":
        tag = np.full((len(t), 1), k, dtype=np.int64)
        return SlotRows(t.slots + (node.new_slot,), np.hstack([t.values, tag]))
    if node.op == "groupby":
        members, gids = lineage.members(node)
        found = np.unique(gids[_rows_in(members, t)])
        return SlotRows((node.new_slot,), found[:, None])
    if node.op == "fit":
        return None  # reached only through model inputs, which rows do not follow
    raise CorruptRunError(f"unknown operation {node.op!r} in run {lineage.run_id}")


def _direct_sources(lineage: "Lineage", node: Node) -> dict[str, list[int]] | None:
    """Source name -> columns of ``node.slots`` holding its row positions, when no group-by came before."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen.add(n.id)
        if n.op in MEMBERSHIP:
            return None
        stack.extend(n.inputs[k] for k in _row_inputs(n))
    found: dict[str, list[int]] = {}
    for i, slot in enumerate(node.slots):
        name = lineage._source_by_node.get(node.slot_origin.get(slot, ""))
        if name is not None:
            found.setdefault(name, []).append(i)
    return found


def _row_sources(lineage: "Lineage", node: Node, tuples: "SlotRows") -> list[dict[str, tuple[int, ...]]]:
    """Per row of ``tuples`` (rows of ``node``), source name -> its source rows (row lineage)."""
    from .lineage import SlotRows

    direct = _direct_sources(lineage, node)
    out: list[dict[str, tuple[int, ...]]] = []
    if direct is not None:  # rows carry their source positions in their slots
        for row in tuples.values:
            out.append({name: tuple(sorted({int(row[i]) for i in cols if row[i] != MISSING}))
                        for name, cols in direct.items()})
        return out
    for i in range(len(tuples)):
        one = SlotRows(tuples.slots, tuples.values[i:i + 1])
        trace = lineage._backward(None, start=(node.id, {ROW: one}))
        out.append({name: tuple(int(r) for r in ts.rows) for name, ts in trace.items()})
    return out
