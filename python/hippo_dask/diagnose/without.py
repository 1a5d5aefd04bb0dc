"""Data anomaly removal: the result as a rerun without some source rows would give it.

``lin.without(source, rows)`` answers "what would my result be without these
raw records?". The forward trace of the removed rows (through fitted models
too) names the result rows that can change: every other row is kept as it is.
Then one of two strategies, both exact:

* **partial**: recompute only the affected result rows, by a sliced replay
  (:class:`~hippo_dask.diagnose.replay.SlicedRun`) of their backward closure
  minus the removed rows. An affected group is recomputed from its remaining
  members (so min / max / median are as exact as sums), a pair of a merge whose
  side was removed disappears with it. This is exact when removing rows can
  only remove rows or change values *downstream of the removed rows*, which
  holds when every operation that decides which rows exist, match or group
  (filters, ``dropna``, merge and group-by keys, splits, explodes) reads values
  that do not depend on other rows, merges are inner, and no fitted model's
  training rows are removed. :func:`partial_obstacle` checks that from the plan.
* **rerun**: otherwise (a filter on an aggregate can make rows appear, a
  ``drop_duplicates`` brings back a dropped twin, a left merge turns a matched
  row into an unmatched one, a model must be refitted) the pipeline is rebuilt
  from its record on the sources minus the rows, on the run's own backend, and
  its rows are matched to the original's by lineage.

Rows are matched by identity, not by value: the slot values that identify a
row in the lineage (source positions, group keys, concat inputs), with source
positions of the reduced sources mapped back to the original positions.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import _core
from ..errors import QueryError, ReplayError
from ..partition import unique_sorted
from ..plan import APPLY_MODEL, MEMBERSHIP, ONE_TO_ONE, ROW
from ..store import Store
from .replay import (Rebuild, SlicedRun, _check_fingerprints, _read_file, _row_reads, as_recorded,
                     check_sliceable, closure, describe_node, positions_back)

if TYPE_CHECKING:
    from ..lineage import Lineage

#: Above this share of a source's rows in the closure, a partial recompute is no cheaper than a rerun.
_PARTIAL_SHARE = 0.5

CHANGES = ("changed", "removed", "added")


@dataclass
class Without:
    """The result without some source rows: see :meth:`hippo_dask.Lineage.without`.

    Attributes
    ----------
    source : str
        The source rows were removed from.
    removed : numpy.ndarray
        Their positions in that source (sorted).
    result : pandas.DataFrame or None
        The corrected result (``None`` for a dry run): exactly the rows a full
        rerun without the removed rows gives, surviving rows in the original
        order, added rows after them, with a fresh ``RangeIndex`` (a rerun's
        result has the rerun's columns and dtypes). A removed row whose place
        another row takes with equal values (``drop_duplicates``) counts as
        unchanged.
    diff : pandas.DataFrame
        One line per result row that changed, disappeared or appeared:
        ``change`` ("changed" / "removed" / "added"), ``row`` (position in the
        original result, ``<NA>`` for added rows), ``new_row`` (position in
        :attr:`result`, ``<NA>`` for removed rows), ``columns`` (the columns
        whose value changed), then the result's columns: new values, or the old
        ones for removed rows.
    strategy : str
        ``"partial"`` (only the affected rows recomputed) or ``"rerun"``.
    reason : str
        Why that strategy.
    refitted : list of str
        The fitted models that were refitted (their training rows were removed).
    affected : int
        Result rows the removed rows' forward trace reaches (those recomputed by a partial run).
    seconds : float
        Wall time.
    """

    source: str
    removed: np.ndarray
    result: pd.DataFrame | None
    diff: pd.DataFrame
    strategy: str
    reason: str
    refitted: list[str]
    affected: int
    seconds: float
    _lineage: "Lineage" = field(repr=False, default=None)  # type: ignore[assignment]
    _replay_args: dict[str, Any] = field(repr=False, default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Rows per kind of change."""
        found = self.diff["change"].value_counts()
        return {c: int(found.get(c, 0)) for c in CHANGES}

    def __str__(self) -> str:
        c = self.counts()
        return (f"without {len(self.removed)} row(s) of {self.source!r}: {c['changed']} result row(s) changed, "
                f"{c['removed']} removed, {c['added']} added ({self.strategy}: {self.reason}; "
                f"{self.affected} row(s) reached; {self.seconds:.2f} s)"
                + (f"; refitted {', '.join(self.refitted)}" if self.refitted else ""))

    def __repr__(self) -> str:
        return f"<Without {self}>"

    def capture(self) -> "Lineage":
        """Run the pipeline without the removed rows as a new captured run, linked to the original.

        The new run is a full rerun (rebuilt from the record) committed to the
        original run's store; its manifest names the original run and the
        removal under ``"without_of"``. Its result is checked against
        :attr:`result` (the same rows, as a multiset).

        Returns
        -------
        Lineage
            The new run's lineage.
        """
        from ..compute import compute
        from ..lineage import Lineage
        from ..partition import multiset_digest

        lineage = self._lineage
        args = self._replay_args
        rebuild = _rebuild_without(lineage, self.source, self.removed, args, lineage.store)
        links = {"without_of": {"run": lineage.run_id, "source": self.source, "rows": int(len(self.removed)),
                                "positions": _positions_checksum(self.removed)}}
        frame, run_id = compute(rebuild.run(), links=links, **args["compute_kwargs"])
        if self.result is not None and multiset_digest(frame) != multiset_digest(self.result) \
                and not _same_rows(frame, self.result):
            raise ReplayError(f"internal: the captured rerun {run_id} differs from the corrected result; please report")
        return Lineage(lineage.store, run_id)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two frames hold the same rows in any order, values compared as text (dtypes may differ)."""
    if len(a) != len(b) or list(a.columns) != list(b.columns):
        return False

    def canonical(frame: pd.DataFrame) -> pd.DataFrame:
        text = frame.astype(str)
        return text.sort_values(list(text.columns)).reset_index(drop=True)

    return canonical(a).equals(canonical(b))


def _positions_checksum(positions: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(positions, dtype="<i8").tobytes()).hexdigest()[:32]


# ---------------------------------------------------------------------- what can be recomputed in part


def partial_obstacle(lineage: "Lineage", reached: set[str]) -> str | None:
    """Why a partial recompute could miss rows of the rerun; ``None`` when it is exact.

    A column is *local* when its value on a row depends only on that row's own
    source cells (not on other rows: aggregates, group transforms, window and
    partition-wide functions are not). Removing rows then can only remove rows
    and change values downstream of them when every row-deciding read (see
    ``_row_reads``) is local, merges are inner, nothing keeps rows by position
    or by first occurrence, and no fitted model's training rows were removed
    (``reached``: ids of the nodes the removed rows' forward trace reached).
    """
    try:
        check_sliceable(lineage)
    except ReplayError as exc:
        return str(exc).split(": ", 1)[-1]
    nonlocal_columns: dict[str, set[str]] = {}
    for node in lineage._order:
        if node.op == "source":
            nonlocal_columns[node.id] = set()
            continue
        if node.op == "fit":
            if node.id in reached:
                return f"{describe_node(node)} must be refitted: its training rows include removed rows"
            nonlocal_columns[node.id] = set()
            continue
        if node.op == "drop_duplicates":
            return f"{describe_node(node)} keeps one row of each duplicate set: removing it brings back another"
        if node.op == "merge" and node.params.get("how") != "inner":
            return (f"{describe_node(node)} is a {node.params.get('how')} merge: removing a row's partners turns it "
                    "into an unmatched row")
        upstream = [nonlocal_columns[parent.id] for parent in node.inputs]
        reads = [(k, c) for k, c in _row_reads(node) if k not in node.model_inputs]
        if node.op == "split" and not node.params.get("by"):
            reads = [(0, c) for c in node.inputs[0].columns]
        if node.op in ("map", "assign") and node.spread:
            reads = []  # its rows are one to one; its spread columns are non-local (below)
        bad = sorted({c for k, c in reads if c in upstream[k]})
        if bad:
            return (f"{describe_node(node)} decides which rows exist or match from {bad}, values that removing other "
                    "rows can change (e.g. a filter on an aggregate can let new rows through)")
        out: set[str] = set()
        for column, sources in node.colmap.items():
            if column == ROW:
                continue
            if column in node.spread or any(c in upstream[k] for k, c in sources if k < len(upstream)):
                out.add(column)
        if node.op in MEMBERSHIP or node.op == "transform":
            keys = set(node.params.get("keys", ()))
            out |= {c for c in node.columns if c not in keys}
        if node.op in APPLY_MODEL:
            pass  # a model that was not refitted maps each row on its own: local when its inputs are
        elif node.op not in ONE_TO_ONE | MEMBERSHIP | {"merge", "concat", "transform"}:
            return f"{describe_node(node)}: operation {node.op!r} is not known to this version's partial recompute"
        nonlocal_columns[node.id] = out
    return None


# ---------------------------------------------------------------------- matching rows by identity


def _row_keys(values: np.ndarray) -> np.ndarray:
    """One int64 key per row of slot values (exact for one slot; a 64-bit mix otherwise, verified later)."""
    if values.shape[1] == 1:
        return values[:, 0].astype(np.int64, copy=True)
    h = np.zeros(len(values), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(values.shape[1]):
            h = (h ^ values[:, j].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(31)
    return h.view(np.int64)


def _occurrence(keys: np.ndarray) -> np.ndarray:
    """For each key, how many earlier entries have the same key (0 for the first)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    series = pd.Series(keys, copy=False)
    if not series.duplicated().any():  # the common case (no explode / flatmap): one hash pass
        return np.zeros(len(keys), dtype=np.int64)
    return series.groupby(keys, sort=False).cumcount().to_numpy(dtype=np.int64)


def match_rows(old: np.ndarray, old_rank: np.ndarray, new: np.ndarray, new_rank: np.ndarray) -> np.ndarray:
    """For each ``old`` row (slot values, occurrence rank), the ``new`` row with equal values and rank, or -1."""
    if not len(old) or not len(new):
        return np.full(len(old), -1, dtype=np.int64)
    old_keys, new_keys = _row_keys(old), _row_keys(new)
    index = pd.MultiIndex.from_arrays([new_keys, new_rank])
    if not index.is_unique:
        raise ReplayError("internal: the recomputed result holds two rows with one identity; please report")
    found = index.get_indexer(pd.MultiIndex.from_arrays([old_keys, old_rank])).astype(np.int64)
    hit = found >= 0
    if hit.any() and not (new[found[hit]] == old[hit]).all():
        raise ReplayError("internal: two row identities share a hash; please report")
    return found


# ---------------------------------------------------------------------- the removal


def _removed_positions(lineage: "Lineage", source: str, rows: Any, sources: Mapping[str, Any] | None,
                       compute_kwargs: Mapping[str, Any]) -> np.ndarray:
    info = lineage._source(source)
    n = int(info["rows"])
    if callable(rows):
        frame = (sources or {}).get(source)
        file = info["identity"].get("file")
        if frame is None and file is None:
            raise ReplayError(f"without: source {source!r} was an in-memory frame; pass it: sources={{{source!r}: df}}")
        if frame is None:
            frame = _read_file(file)
        _check_fingerprints(source, info, frame, compute_kwargs)
        if hasattr(frame, "to_delayed"):
            mask = frame.map_partitions(lambda part: pd.Series(np.asarray(rows(part), dtype=bool), index=part.index),
                                        meta=(None, bool)).compute(**compute_kwargs)
        else:
            mask = rows(frame)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise QueryError(f"without: the predicate on source {source!r} must give one boolean per row ({n}), "
                             f"got shape {mask.shape}")
        return np.flatnonzero(mask).astype(np.int64)
    if isinstance(rows, (pd.Series, pd.Index)) and rows.dtype == bool:
        raise QueryError("without: rows= takes positions or a predicate; for a boolean mask pass "
                         "np.flatnonzero(mask), or a function of the source frame")
    positions = lineage._rows(rows, n, f"source {source!r}")
    return unique_sorted(np.asarray(positions, dtype=np.int64))


def _original_result(lineage: "Lineage", result: pd.DataFrame | None) -> pd.DataFrame | None:
    """The run's result frame, checked row for row against the recorded fingerprint."""
    from ..partition import missing_columns, result_columns, result_fingerprint

    if result is None:
        ref = getattr(lineage, "_result_frame", None)
        result = ref() if isinstance(ref, weakref.ref) else None
        if result is None:
            return None
    recorded = lineage.manifest["result"].get("fingerprint")
    missing = missing_columns(result, lineage.columns)
    if missing or len(result) != lineage.nrows or (
            recorded is not None and list(result_fingerprint(result, lineage.columns)) != list(recorded)):
        raise QueryError(f"without: result= is not the result of run {lineage.run_id} as computed (rows filtered, "
                         "re-sorted or edited); pass the frame compute() returned, or omit it to recompute it")
    frame = result_columns(result, lineage.columns).reset_index(drop=True)
    frame.attrs = {}
    return frame


def without(lineage: "Lineage", source: str, rows: Any, sources: Mapping[str, Any] | None = None,
            result: pd.DataFrame | None = None, dry_run: bool = False, strategy: str = "auto", trust: bool = False,
            functions: Mapping[str, Callable] | None = None, estimators: Mapping[str, Any] | None = None,
            **compute_kwargs: Any) -> Without:
    """See :meth:`hippo_dask.Lineage.without`."""
    start = time.perf_counter()
    if strategy not in ("auto", "partial", "rerun"):
        raise QueryError(f"without: strategy must be 'auto', 'partial' or 'rerun', not {strategy!r}")
    removed = _removed_positions(lineage, source, rows, sources, compute_kwargs)
    original = _original_result(lineage, result)
    reached: set[str] = set()
    trace = lineage._forward(source, removed, None, True, reached=reached) if len(removed) else None
    if trace is not None:
        parts = [trace.rows] + list(trace._by_column.values())
        affected = unique_sorted(np.concatenate(parts).astype(np.int64))
    else:
        affected = np.array([], dtype=np.int64)
    fits = [n for n in lineage._order if n.op == "fit" and n.id in reached]
    refit = {n.id for n in fits}
    args = dict(sources=sources, trust=trust, functions=functions, estimators=estimators, refit=sorted(refit),
                compute_kwargs=dict(compute_kwargs))
    obstacle = partial_obstacle(lineage, reached)
    if strategy == "partial" and obstacle:
        raise ReplayError(f"without(strategy='partial'): a partial recompute would not be exact here: {obstacle}")
    chosen, reason = "rerun", obstacle or "asked for"
    subset: dict[str, np.ndarray] | None = None
    if strategy != "rerun" and obstacle is None:
        subset = closure(lineage, affected) if len(affected) else {name: np.array([], dtype=np.int64) for name in lineage.sources}
        subset[source] = subset[source][~_core.isin_sorted(removed, subset[source])]
        share = max((len(v) / max(lineage.source_rows(k), 1) for k, v in subset.items()), default=0.0)
        if strategy == "auto" and share > _PARTIAL_SHARE:
            chosen, reason, subset = "rerun", f"the affected rows depend on {share:.0%} of a source's rows", None
        else:
            chosen, reason = "partial", f"{len(affected)} of {lineage.nrows} result rows reached by the removed rows"
    if chosen == "partial":
        assert subset is not None
        out = _partial(lineage, affected, subset, original, dry_run, args)
        if out is None:  # could not place a recomputed row: never guess, rerun
            warnings.warn("without: the partial recompute made a row it could not match to the original result; "
                          "rerunning the whole pipeline instead (please report this pipeline)", RuntimeWarning,
                          stacklevel=3)
            chosen, reason = "rerun", "the partial recompute could not place every row"
    if chosen == "rerun":
        out = _rerun(lineage, source, removed, original, dry_run, args)
    new_result, diff = out
    if new_result is not None and lineage.index:  # as compute() returned the run's result: set_index columns as its index
        new_result = new_result.set_index(lineage.index)
    return Without(source, removed, new_result, diff, chosen, reason, [describe_node(n) for n in fits],
                   int(len(affected)), time.perf_counter() - start, lineage, args)


def _partial(lineage: "Lineage", affected: np.ndarray, subset: Mapping[str, np.ndarray],
             original: pd.DataFrame | None, dry_run: bool,
             args: Mapping[str, Any]) -> tuple[pd.DataFrame | None, pd.DataFrame] | None:
    """Recompute the affected rows from their closure without the removed rows; ``None``: a row did not fit."""
    columns = lineage.columns
    if not len(affected):
        old = original if original is not None else _whole_original(lineage, args) if not dry_run else None
        return (None if dry_run else old.copy()), _diff_frame(columns, [])
    run = SlicedRun(lineage, subset, args["sources"], args["trust"], args["functions"],
                    compute_kwargs=args["compute_kwargs"])
    everything = lineage.result_slots().values
    new_values = run.translate(lineage._result, run.sliced._result, run.sliced.result_slots().values)
    all_keys = _row_keys(everything)
    old_rank = _occurrence(all_keys)[affected]
    new_rank = _occurrence(_row_keys(new_values))
    found = match_rows(everything[affected], old_rank, new_values, new_rank)
    matched_new = np.zeros(len(new_values), dtype=bool)
    matched_new[found[found >= 0]] = True
    if not matched_new.all():
        # rows of the slice that are not affected rows must be unaffected rows made again (equal values)
        extra = np.flatnonzero(~matched_new)
        back = match_rows(new_values[extra], new_rank[extra], everything, _occurrence(all_keys))
        if (back < 0).any() or np.isin(back, affected).any():
            return None
    fresh = as_recorded(run.result[columns].reset_index(drop=True), lineage)
    if original is None:
        before = _affected_original(lineage, affected, args)
    else:
        before = original.iloc[affected].reset_index(drop=True)
    kept = np.flatnonzero(found >= 0)
    removed_rows = affected[found < 0]
    new_of_kept = fresh.iloc[found[kept]].reset_index(drop=True)
    old_of_kept = before.iloc[kept].reset_index(drop=True)
    differs = _differences(old_of_kept, new_of_kept, columns)
    changing = np.flatnonzero(differs.any(axis=1))
    changed_rows_arr = affected[kept[changing]]
    changed_cols = _changed_columns(differs[changing], columns)
    survive = np.ones(lineage.nrows, dtype=bool)
    survive[removed_rows] = False
    new_position = np.cumsum(survive) - 1
    changed_values = new_of_kept.iloc[changing].reset_index(drop=True)
    removed_values = before.iloc[np.flatnonzero(found < 0)].reset_index(drop=True)
    diff = _diff_frame(columns,
                       [("changed", changed_rows_arr, new_position[changed_rows_arr], changed_cols, changed_values),
                        ("removed", removed_rows, None, None, removed_values)])
    if dry_run:
        return None, diff
    base = original if original is not None else _whole_original(lineage, args)
    # one take of the surviving rows, then only the columns that changed somewhere are patched
    corrected = base.iloc[np.flatnonzero(survive)].reset_index(drop=True) if not survive.all() else base.copy()
    touched = {c for names in changed_cols for c in names}
    at = new_position[changed_rows_arr]
    for c in columns:
        if c in touched:
            column = corrected[c].copy()
            try:
                column.iloc[at] = changed_values[c].to_numpy()
            except (TypeError, ValueError):  # a value the old dtype cannot hold (pandas 3 does not upcast)
                column = column.astype(object)
                column.iloc[at] = changed_values[c].to_numpy(dtype=object)
            corrected[c] = column
    return as_recorded(corrected, lineage), diff


def _rerun(lineage: "Lineage", source: str, removed: np.ndarray, original: pd.DataFrame | None, dry_run: bool,
           args: Mapping[str, Any]) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Rebuild the whole pipeline without the rows (on the run's backend) and match its rows by identity."""
    from ..compute import compute
    from ..lineage import Lineage

    columns = lineage.columns
    scratch = tempfile.mkdtemp(prefix="hippo-without-")
    try:
        store = Store(scratch)
        fresh, run_id = compute(_rebuild_without(lineage, source, removed, args, store).run(), **args["compute_kwargs"])
        again = Lineage(store, run_id)
        # the rerun's source positions are positions in the reduced source: map them back
        kept = {source: np.delete(np.arange(lineage.source_rows(source), dtype=np.int64), removed)}
        new_slots = positions_back(lineage, lineage._result, again.result_slots().values, kept)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # a rerun's result is what the pipeline now gives: its own columns (a refitted classifier can
    # know other classes) and dtypes (a left merge without holes keeps ints)
    fresh = fresh.reset_index(drop=True)
    fresh.attrs = {}
    before = original if original is not None else _whole_original(lineage, args)
    both = list(columns) + [c for c in fresh.columns if c not in columns]
    everything = lineage.result_slots().values
    found = match_rows(everything, _occurrence(_row_keys(everything)), new_slots, _occurrence(_row_keys(new_slots)))
    unmatched = np.ones(len(fresh), dtype=bool)
    unmatched[found[found >= 0]] = False
    old_twin, new_twin = _twins(before.reindex(columns=both), np.flatnonzero(found < 0),
                                fresh.reindex(columns=both), np.flatnonzero(unmatched), both)
    found[old_twin] = new_twin  # another row took the removed one's place with the same values
    kept_rows = np.flatnonzero(found >= 0)
    differs = _differences(before.iloc[kept_rows].reset_index(drop=True).reindex(columns=both),
                           fresh.iloc[found[kept_rows]].reset_index(drop=True).reindex(columns=both), both)
    changing = np.flatnonzero(differs.any(axis=1))
    changed_rows = kept_rows[changing]
    changed_cols = _changed_columns(differs[changing], both)
    removed_rows = np.flatnonzero(found < 0)
    matched = np.zeros(len(fresh), dtype=bool)
    matched[found[kept_rows]] = True
    # the documented order: surviving rows as in the original, then the added rows as the rerun made them
    order = np.concatenate([found[kept_rows], np.flatnonzero(~matched)]).astype(np.int64)
    fresh = fresh.iloc[order].reset_index(drop=True)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    found = np.where(found >= 0, position[np.maximum(found, 0)], -1) if len(order) else np.full(len(found), -1)
    added_rows = np.arange(len(kept_rows), len(order), dtype=np.int64)
    diff = _diff_frame(both,
                       [("changed", changed_rows, found[changed_rows], changed_cols,
                         fresh.iloc[found[changed_rows]].reset_index(drop=True).reindex(columns=both)),
                        ("removed", removed_rows, None, None,
                         before.iloc[removed_rows].reset_index(drop=True).reindex(columns=both)),
                        ("added", None, added_rows, None,
                         fresh.iloc[added_rows].reset_index(drop=True).reindex(columns=both))])
    return (None if dry_run else fresh), diff


def _twins(before: pd.DataFrame, removed: np.ndarray, after: pd.DataFrame, added: np.ndarray,
           columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (original row, rerun row) of a removed and an added row with equal values.

    E.g. ``drop_duplicates`` keeps the next of two equal rows when the first is removed: by lineage
    one row went and one came, but the result reads the same, so the rerun row takes the removed
    row's place and the diff lists neither.
    """
    none = (np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    if not len(removed) or not len(added):
        return none
    old = before.iloc[removed].reset_index(drop=True)[list(columns)]
    new = after.iloc[added].reset_index(drop=True)[list(columns)]
    try:
        old_keys = pd.util.hash_pandas_object(old.astype(str), index=False).to_numpy().view(np.int64)
        new_keys = pd.util.hash_pandas_object(new.astype(str), index=False).to_numpy().view(np.int64)
    except TypeError:
        return none
    pairs = match_rows(old_keys[:, None], _occurrence(old_keys), new_keys[:, None], _occurrence(new_keys))
    hit = np.flatnonzero(pairs >= 0)
    if not len(hit):
        return none
    # keep only pairs whose values are really equal (a hash is not proof)
    same = ~_differences(old.iloc[hit].reset_index(drop=True), new.iloc[pairs[hit]].reset_index(drop=True),
                         columns).any(axis=1)
    return removed[hit[same]], added[pairs[hit[same]]]


def _rebuild_without(lineage: "Lineage", source: str, removed: np.ndarray, args: Mapping[str, Any],
                     store: Store) -> Rebuild:
    """The run's pipeline rebuilt on its sources minus ``removed``, models the removal reaches refitted."""
    return Rebuild(lineage, args["sources"], args["trust"], args["functions"], args["estimators"], store,
                   drop={source: removed}, refit=set(args["refit"]), compute_kwargs=args["compute_kwargs"])


def _whole_original(lineage: "Lineage", args: Mapping[str, Any]) -> pd.DataFrame:
    """The original result, recomputed by a whole replay (when the caller did not pass it)."""
    from .replay import replay

    report = replay(lineage, sources=args["sources"], verify=True, trust=args["trust"], functions=args["functions"],
                    estimators=args["estimators"], **args["compute_kwargs"])
    if not report.identical:
        raise ReplayError(f"without: replaying run {lineage.run_id} to get its result did not reproduce it "
                          f"({report.first}); pass result=")
    return as_recorded(report.result[lineage.columns].reset_index(drop=True), lineage)


def _affected_original(lineage: "Lineage", affected: np.ndarray, args: Mapping[str, Any]) -> pd.DataFrame:
    """The original values of the affected rows, recomputed from their closure (no result frame given)."""
    from .replay import replay_rows

    return replay_rows(lineage, affected, sources=args["sources"], trust=args["trust"], functions=args["functions"],
                       **args["compute_kwargs"]).reset_index(drop=True)


def _differences(old: pd.DataFrame, new: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Boolean (rows x columns): where ``new`` differs from ``old`` (missing equals missing)."""
    out = np.zeros((len(old), len(columns)), dtype=bool)
    for j, c in enumerate(columns):
        a, b = old[c], new[c]
        try:
            same = (a.to_numpy() == b.to_numpy())
            same = np.asarray(pd.array(same, dtype="boolean").fillna(False), dtype=bool)
        except (TypeError, ValueError):
            same = np.array([_same(x, y) for x, y in zip(a, b)], dtype=bool)
        both_missing = np.asarray(a.isna(), dtype=bool) & np.asarray(b.isna(), dtype=bool)
        out[:, j] = ~(same | both_missing)
    return out


def _changed_columns(differs: np.ndarray, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Per row of a (rows x columns) boolean table, the names of its True columns."""
    if not len(differs):
        return []
    if differs.shape[1] <= 62:  # one int per row (a bit per column): a 1-d factorize
        codes = differs.astype(np.int64) @ (np.int64(1) << np.arange(differs.shape[1], dtype=np.int64))
        inverse, patterns = pd.factorize(codes)
        names = [tuple(c for j, c in enumerate(columns) if (int(code) >> j) & 1) for code in patterns]
        return [names[i] for i in inverse]
    patterns, inverse = np.unique(differs, axis=0, return_inverse=True)
    names = [tuple(c for c, hit in zip(columns, pattern) if hit) for pattern in patterns]
    return [names[i] for i in inverse.reshape(-1)]


def _same(x: Any, y: Any) -> bool:
    try:
        return bool(x == y)
    except (TypeError, ValueError):
        return repr(x) == repr(y)


def _diff_frame(columns: Sequence[str], parts: list) -> pd.DataFrame:
    """The diff table from (change, old rows, new rows, changed columns, values) parts."""
    frames = []
    for change, old_rows, new_rows, cols, values in parts:
        n = len(values)
        if not n:
            continue
        head = pd.DataFrame({
            "change": pd.array([change] * n, dtype="str"),
            "row": pd.array(old_rows if old_rows is not None else [pd.NA] * n, dtype="Int64"),
            "new_row": pd.array(new_rows if new_rows is not None else [pd.NA] * n, dtype="Int64"),
            "columns": pd.Series(cols if cols is not None else [()] * n, dtype=object),
        })
        frames.append(pd.concat([head, values[list(columns)].reset_index(drop=True)], axis=1))
    if not frames:
        empty = pd.DataFrame({"change": pd.array([], dtype="str"), "row": pd.array([], dtype="Int64"),
                              "new_row": pd.array([], dtype="Int64"), "columns": pd.Series([], dtype=object)})
        return pd.concat([empty, pd.DataFrame({c: [] for c in columns})], axis=1)
    return pd.concat(frames, ignore_index=True)
