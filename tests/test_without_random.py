"""``Lineage.without`` against full reruns: the exactness safety net of anomaly removal (issue 8).

For random pipelines (tests/test_random_wide.py's wide steps, tests/test_random_pipelines.py's
steps with explode / map / concat, tests/test_random_ml.py's scikit-learn stages) on pandas, on
Dask (2-4 partitions, scheduler="sync") and on a LocalCluster of worker processes, each example
computes the pipeline once, then removes source rows several times, drawn as:

* positions: one row, a random set (in random order, as a list or an array), every row of one
  key value, every row of the source, rows the result does not reach at all (their forward trace
  is empty: filtered out early, duplicates drop_duplicates did not keep, groups a HAVING-like
  filter dropped), or none;
* a predicate on the source: a key value, a threshold, missing values, every row, no row.

The independent oracle of a removal is a full rerun: the same pipeline built again from the source
frames with those rows dropped (``frame.drop(frame.index[positions])``; on Dask the same rows
dropped from the same partitions, which keep their boundaries) and computed with hippo. Checked:

* ``w.result`` holds the rerun's rows (multisets of rows; NaN/None/NA/NaT alike; floats equal to
  rel 1e-9, Dask and pandas add in other orders), same columns, same dtypes, a RangeIndex;
* ``w.diff``, independently of how the implementation matched rows: its columns; "removed" rows
  hold the original's values at ``row``, "added" and "changed" rows ``w.result``'s at ``new_row``;
  a changed row lists exactly the columns whose value differs from the original's (exactly: a
  refitted model may move a prediction by its last bit, and that is a change); (original rows) -
  (rows at ``diff.row``) + (new values of changed and added rows) == the rerun's rows; it lists no
  unchanged row (it names as many original and new rows as the original and ``w.result`` differ by,
  as multisets of values); the rows of ``w.result`` it does not name are the original rows it does
  not name, in the original's order (surviving rows in the original order, added rows after them);
* ``dry_run=True`` gives the same diff and no result;
* the strategy the implementation did not choose, forced (``strategy="rerun"`` / ``"partial"``),
  gives the same result and diff (``"partial"`` may refuse with a ReplayError, nothing else);
* with scikit-learn steps: when the removal changes the training rows, ``w.refitted`` is not empty;
* when the rerun itself fails (scikit-learn refusing the data that is left, a merge of keys whose
  dtype changed), ``without`` fails too.

Hand-written regression cases follow the random tests (group-by sum, a group losing every member, a
HAVING filter, drop_duplicates, a left merge, a sorted head, a refitted model, a lineage opened from
the store), then the implementation bugs the random tests found, each as its minimal reproducer.

Budget: HIPPO_EXAMPLES (default 40) scales every random test; by default about 290 removals (250
random, 36 hand-written; ``-s`` prints the count), 80 s on a 2-core machine.
    python -m pytest tests/test_without_random.py -q -p no:cacheprovider
    HIPPO_EXAMPLES=300 python -m pytest tests/test_without_random.py -q -p no:cacheprovider
Bug hunting without shrinking (first failure as found, fast):
    HIPPO_NO_SHRINK=1 HIPPO_EXAMPLES=300 python -m pytest tests/test_without_random.py -q -x -p no:cacheprovider
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle
import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import event as _event
from hypothesis import given, reject, settings
from hypothesis import note as _note
from hypothesis import strategies as st
from hypothesis.control import _current_build_context
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

import hippo_dask as hippo
import oracle
import test_random_ml as rml
import test_random_pipelines as rp
import test_random_wide as wide
from hippo_dask.errors import ReplayError

# Worker processes cannot import the test modules: ship their functions by value.
for _module in (sys.modules[__name__], wide, rp, rml, oracle):
    cloudpickle.register_pickle_by_value(_module)

EXAMPLES = int(os.environ.get("HIPPO_EXAMPLES", "40"))


def _n(scale: float, least: int = 1) -> int:
    return max(least, int(EXAMPLES * scale))


SETTINGS = dict(wide.SETTINGS, derandomize=True)
if os.environ.get("HIPPO_NO_SHRINK"):  # bug hunting: report the first failure as found, unshrunk
    from hypothesis import Phase

    SETTINGS = dict(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def note(text: str) -> None:
    """hypothesis' note (printed with a failing example); nothing in the hand-written tests (their assertion
    messages name the removal)."""
    if _current_build_context.value is not None:
        _note(text)


def event(text: str) -> None:
    """hypothesis' event (``--hypothesis-show-statistics``); nothing in the hand-written tests."""
    if _current_build_context.value is not None:
        _event(text)


META = ["change", "row", "new_row", "columns"]
CHANGES = {"changed", "removed", "added"}
#: removals checked in this session, by test (printed with -s at the end of the module)
CHECKED: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _count_removals():
    yield
    if CHECKED:
        print(f"\nwithout(): {sum(CHECKED.values())} removals checked: {dict(CHECKED)}")


pytestmark = pytest.mark.timeout(900)


# ---------------------------------------------------------------------- comparing rows


def _cell(value: Any) -> Any:
    """A comparable value: NaN/None/NA/NaT alike, numpy scalars as Python's, -0.0 as 0.0, lists as tuples."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_cell(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value) + 0.0
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _rows(df: pd.DataFrame, columns: list[str] | None = None) -> list[tuple]:
    columns = list(df.columns) if columns is None else list(columns)
    return [tuple(_cell(v) for v in rec) for rec in df[columns].itertuples(index=False, name=None)]


def _close(u: Any, v: Any) -> bool:
    if isinstance(u, float) and isinstance(v, float):
        return u == v or math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(u, tuple) and isinstance(v, tuple):
        return len(u) == len(v) and all(_close(a, b) for a, b in zip(u, v))
    if isinstance(u, bool) != isinstance(v, bool):
        return False
    try:
        return bool(u == v)
    except (TypeError, ValueError):
        return False


def _match(xs: list, ys: list) -> tuple[list, list]:
    """Multiset difference both ways (exact first, then to the float tolerance): (only in xs, only in ys)."""
    cx, cy = Counter(xs), Counter(ys)
    extra, missing = list((cx - cy).elements()), list((cy - cx).elements())
    left = []
    for x in extra:
        for i, y in enumerate(missing):
            if _close(x, y):
                del missing[i]
                break
        else:
            left.append(x)
    return left, missing


def _shown(rows: list, n: int = 6) -> str:
    return "\n".join(f"    {r}" for r in sorted(rows, key=repr)[:n]) + ("\n    ..." if len(rows) > n else "")


def _assert_same_rows(got: list, want: list, what: str) -> None:
    extra, missing = _match(got, want)
    assert not extra and not missing, (f"{what}: {len(got)} rows, expected {len(want)}\n  only in got:\n{_shown(extra)}"
                                       f"\n  only expected:\n{_shown(missing)}")


def _na(value: Any) -> bool:
    return value is None or value is pd.NA or (not isinstance(value, (tuple, list)) and bool(pd.isna(value)))


# ---------------------------------------------------------------------- cases: pipelines to build again


def _drop_rows(part: pd.DataFrame, drops: dict[int, list[int]], partition_info=None) -> pd.DataFrame:
    local = drops.get(partition_info["number"], []) if partition_info else []
    return part.drop(part.index[local]) if len(local) else part


@dataclass
class Case:
    """A pipeline that can be built again over other source frames: ``make(inputs) -> tracked result``.

    ``frames``: the pandas sources by name; ``nparts``: Dask partitions of each (None: pandas);
    ``columns``: per source, a key column, a numeric column and (optionally) a column with missing
    values, for predicates; ``training``: for pipelines with fitted models, ``inputs -> the training
    frame(s) before any fit`` (pandas inputs).
    """

    frames: dict[str, pd.DataFrame]
    make: Callable[[dict[str, Any]], Any]
    columns: dict[str, dict[str, str]]
    nparts: int | None = None
    scheduler: Any = None
    training: Callable[[dict[str, Any]], pd.DataFrame] | None = None
    lengths: dict[str, list[int]] = field(default_factory=dict)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {} if self.nparts is None else {"scheduler": self.scheduler or "sync"}

    def inputs(self, removed: dict[str, Any] | None = None, pandas: bool = False) -> dict[str, Any]:
        """The source frames (Dask when the case is), with ``removed`` positions dropped."""
        out = {}
        for name, df in self.frames.items():
            drop = np.asarray((removed or {}).get(name, []), dtype=np.int64)
            if self.nparts is None or pandas:
                out[name] = df.drop(df.index[drop]) if len(drop) else df
                continue
            frame = dd.from_pandas(df, npartitions=self.nparts, sort=False)
            if len(drop):  # the same partitions, less those rows
                if name not in self.lengths:
                    self.lengths[name] = [int(n) for n in frame.map_partitions(len).compute(scheduler="sync")]
                starts = np.cumsum([0] + self.lengths[name])
                drops = {i: [int(p - starts[i]) for p in drop if starts[i] <= p < starts[i + 1]]
                         for i in range(len(self.lengths[name]))}
                frame = frame.map_partitions(_drop_rows, drops, meta=frame._meta)
            out[name] = frame
        return out

    def compute(self, inputs: dict[str, Any]) -> pd.DataFrame:
        return self.make(inputs).hippo.compute(**self.kwargs)


@dataclass
class Run:
    case: Case
    out: pd.DataFrame
    lin: Any
    sources: dict[str, Any]
    start: int = 0  # first removal kind (see draw_removal)

    @staticmethod
    def of(case: Case) -> "Run":
        inputs = case.inputs()
        out = case.compute(inputs)
        lin = out.hippo.lineage
        return Run(case, out, lin, {n: inputs[n] for n in lin.sources})

    def without(self, source: str, rows: Any, **kwargs: Any):
        return self.lin.without(source, rows, sources=self.sources, trust=True, **self.case.kwargs, **kwargs)


WIDE_COLUMNS = {"a": {"key": "g", "num": "x", "nan": "y"}, "b": {"key": "g", "num": "w"}}
PIPELINE_COLUMNS = {"a": {"key": "k", "num": "x", "nan": "y"}, "b": {"key": "k", "num": "w"}}


def wide_case(src, steps, nparts: int | None, scheduler: Any = None) -> Case:
    kind, a, b = src

    def make(inputs):
        return wide.build(kind, a, b, steps, nparts, inputs=(inputs["a"], inputs["b"]))[0]

    return Case({"a": a, "b": b}, make, WIDE_COLUMNS, nparts, scheduler)


def pipeline_case(frames, steps, nparts: int | None) -> Case:
    a, b = frames

    def make(inputs):
        # run_pipeline chooses its steps from column names only: the same steps over any rows
        return rp.run_pipeline(a, b, steps, lambda f: inputs["a"] if f is a else inputs["b"],
                               dask_order=nparts is not None)[0]

    return Case({"a": a, "b": b}, make, PIPELINE_COLUMNS, nparts)


# ---------------------------------------------------------------------- removals


def _equal(column: str, value: Any) -> Callable:
    if _na(value):
        return lambda f: f[column].isna()
    return lambda f: (f[column] == value).fillna(False).astype(bool)


def _above(column: str, th: int) -> Callable:
    return lambda f: (f[column] > th).fillna(False).astype(bool)


def _missing(column: str) -> Callable:
    return lambda f: f[column].isna()


def _every(column: str) -> Callable:
    return lambda f: f[column].isna() | f[column].notna()


def _none(column: str) -> Callable:
    return lambda f: f[column].isna() & f[column].notna()


def positions_of(frame: pd.DataFrame, rows: Any) -> np.ndarray:
    if callable(rows):
        return np.flatnonzero(np.asarray(rows(frame), dtype=bool))
    return np.asarray(rows, dtype=np.int64)


#: removal kinds in turn (hypothesis draws small indices far more often than others)
ROTATION = ["one", "some", "key", "unreached", "predicate", "every", "some", "unreached", "predicate", "one", "empty",
            "predicate"]


def draw_removal(data, run: Run, i: int = 0) -> tuple[str, str, Any]:
    """(source, kind, rows or predicate) for a source the run read; the ``i``-th removal of an example."""
    draw = data.draw
    case = run.case
    names = [n for n in case.frames if n in run.lin.sources]
    source = draw(st.sampled_from(names), label="source")
    frame, cols = case.frames[source], case.columns[source]
    n = len(frame)
    start = draw(st.integers(0, 2**16), label="first kind") % len(ROTATION) if i == 0 else run.start
    run.start = start
    kind = ROTATION[(start + i) % len(ROTATION)]
    if kind == "predicate":
        kind = draw(st.sampled_from(["key", "above", "missing", "every", "none"]), label="predicate")
        if kind == "key" and n:
            value = frame[cols["key"]].iloc[draw(st.integers(0, n - 1), label="row of the key")]
            return source, "key(pred)", _equal(cols["key"], value)
        if kind == "above":
            return source, "above(pred)", _above(cols["num"], draw(st.integers(-1, 60), label="threshold"))
        if kind == "missing" and "nan" in cols:
            return source, "missing(pred)", _missing(cols["nan"])
        if kind == "every":
            return source, "every(pred)", _every(cols["num"])
        return source, "none(pred)", _none(cols["num"])
    if n == 0:
        kind = "empty"
    rows: list[int] = []
    if kind == "unreached":
        unreached = [r for r in range(n) if not len(run.lin.forward(source, rows=[r]).rows)]
        if unreached:
            rows = draw(st.lists(st.sampled_from(unreached), min_size=1, max_size=len(unreached), unique=True),
                        label="unreached rows")
        else:
            kind = "one"
    if kind == "one":
        rows = [draw(st.integers(0, n - 1), label="row")]
    elif kind == "some":
        rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True), label="rows")
    elif kind == "key":
        value = frame[cols["key"]].iloc[draw(st.integers(0, n - 1), label="row of the key")]
        rows = [int(p) for p in positions_of(frame, _equal(cols["key"], value))]
    elif kind == "every":
        rows = draw(st.permutations(range(n)), label="order")
    if draw(st.booleans(), label="as array"):
        return source, kind, np.asarray(rows, dtype=np.int64)
    return source, kind, list(rows)


# ---------------------------------------------------------------------- the checks


def check_result(got: Any, rerun: pd.DataFrame, what: str) -> None:
    assert isinstance(got, pd.DataFrame), f"{what}: result is {type(got).__name__}"
    assert isinstance(got.index, pd.RangeIndex) and got.index.equals(pd.RangeIndex(len(got))), (what, got.index)
    assert list(got.columns) == list(rerun.columns), f"{what}: columns {list(got.columns)}, rerun {list(rerun.columns)}"
    _assert_same_rows(_rows(got), _rows(rerun), f"{what}: result against the full rerun")
    if len(rerun):
        dtypes, want = got.dtypes.to_dict(), rerun.dtypes.to_dict()
        assert dtypes == want, f"{what}: dtypes {dtypes}, rerun {want}"


def diff_records(diff: pd.DataFrame) -> list[tuple]:
    """Diff rows without ``new_row`` (positions of added rows are the implementation's choice)."""
    values = [c for c in diff.columns if c not in META]
    meta = [(str(c), None if _na(r) else int(r), tuple(sorted(cols))) for c, r, cols in
            diff[["change", "row", "columns"]].itertuples(index=False, name=None)]
    return [m + v for m, v in zip(meta, _rows(diff, values))]


def check_diff(diff: Any, original: pd.DataFrame, new: pd.DataFrame | None, rerun: pd.DataFrame, what: str) -> None:
    """The diff, checked against the original result and the rerun only (not the implementation's matching)."""
    assert isinstance(diff, pd.DataFrame), f"{what}: diff is {type(diff).__name__}"
    assert list(diff.columns[:4]) == META, f"{what}: diff columns {list(diff.columns)}"
    if list(rerun.columns) != list(original.columns):
        event("the removal changes the result's columns")
        return
    values = list(diff.columns[4:])
    assert values == list(original.columns), f"{what}: diff value columns {values}, result {list(original.columns)}"
    old, want = _rows(original), _rows(rerun)
    now = _rows(new) if new is not None else None
    seen_old: set[int] = set()
    seen_new: set[int] = set()
    added_or_changed = []
    for i, ((change, row, new_row, cols), vals) in enumerate(zip(diff[META].itertuples(index=False, name=None),
                                                              _rows(diff, values))):
        where = f"{what}: diff row {i} ({change}, row={row}, new_row={new_row}, columns={cols})"
        assert change in CHANGES, where
        assert isinstance(cols, tuple), f"{where}: columns is a {type(cols).__name__}"
        if change == "added":
            assert _na(row), where
        else:
            assert not _na(row) and 0 <= int(row) < len(old) and int(row) not in seen_old, where
            seen_old.add(int(row))
        if change == "removed":
            assert _na(new_row), where
        else:
            assert not _na(new_row), where
            added_or_changed.append(vals)
            if now is not None:
                assert 0 <= int(new_row) < len(now) and int(new_row) not in seen_new, where
                seen_new.add(int(new_row))
                assert vals == now[int(new_row)], f"{where}: values {vals}, result row {now[int(new_row)]}"
        if change == "removed":
            assert cols == () and vals == old[int(row)], f"{where}: values {vals}, original {old[int(row)]}"
        elif change == "added":
            assert cols == (), where
        else:
            differ = [c for c, u, v in zip(values, old[int(row)], vals) if u != v]  # exactly: a last bit counts
            assert differ and sorted(cols) == sorted(differ) and len(set(cols)) == len(cols), (
                f"{where}: original {old[int(row)]}, new {vals}: differ in {differ}")
    kept = [r for i, r in enumerate(old) if i not in seen_old]
    _assert_same_rows(kept + added_or_changed, want,
                      f"{what}: original - diff's old rows + its new rows, against the rerun")
    # exactly, against the result the diff describes (a refit may move a prediction by its last bit)
    unchanged = sum((Counter(old) & Counter(now if now is not None else want)).values())
    assert (len(seen_old), len(added_or_changed)) == (len(old) - unchanged, len(want) - unchanged), (
        f"{what}: the diff names {len(seen_old)} original and {len(added_or_changed)} new rows; only "
        f"{len(old) - unchanged} and {len(want) - unchanged} differ (it lists unchanged rows)")
    if now is not None:
        untouched = [r for j, r in enumerate(now) if j not in seen_new]
        assert Counter(untouched) == Counter(kept), (f"{what}: rows of the result the diff does not name, against "
                                                     f"the original's\n{_shown(_match(untouched, kept)[0])}")
        # the documented order: surviving rows (unchanged or changed) as in the original, added rows after them
        removed = {int(r) for r in diff.row[diff.change == "removed"]}
        place = {i: j for j, i in enumerate(i for i in range(len(old)) if i not in removed)}
        changed = diff[diff.change == "changed"]
        moved = [(int(r), int(n)) for r, n in zip(changed.row, changed.new_row) if place[int(r)] != int(n)]
        assert not moved, f"{what}: changed rows (row, new_row) not in the original's order: {moved[:5]}"
        added = sorted(int(n) for n in diff.new_row[diff.change == "added"])
        assert added == list(range(len(place), len(now))), f"{what}: added rows at {added}, not after the others"
        untouched = [i for i in range(len(old)) if i not in seen_old]
        assert [now[place[i]] for i in untouched] == [old[i] for i in untouched], (
            f"{what}: unchanged rows not in the original's order")


def _check_without(w: Any, run: Run, rerun: pd.DataFrame, what: str, strategy: str | None = None) -> None:
    assert w.strategy in ("partial", "rerun"), (what, w.strategy)
    assert isinstance(w.reason, str) and w.reason, (what, w.reason)
    if strategy is not None:
        assert w.strategy == strategy, (what, w.strategy, w.reason)
    check_result(w.result, rerun, f"{what} [{w.strategy}: {w.reason}]")
    check_diff(w.diff, run.out, w.result, rerun, f"{what} [{w.strategy}: {w.reason}]")


def check_removal(run: Run, source: str, rows: Any, kind: str = "", *, dry: bool = True, other: bool = True,
                  counter: str = "fixed") -> Any:
    """One removal against the full rerun; returns the ``without`` answer (None when the rerun fails)."""
    case = run.case
    positions = positions_of(case.frames[source], rows)
    what = f"without({source!r}, {kind or 'rows'} -> positions {positions.tolist()})"
    note(what)
    CHECKED[counter] += 1
    try:
        rerun = case.compute(case.inputs({source: positions}))
    except Exception as exc:  # noqa: BLE001 - the pipeline fails on what is left: so must without()
        event(f"rerun fails: {type(exc).__name__}")
        note(f"the full rerun fails: {type(exc).__name__}: {exc}")
        with pytest.raises(Exception):  # noqa: B017, PT011
            run.without(source, rows)
        return None
    note(f"rerun: {len(rerun)} rows (original {len(run.out)})")
    w = run.without(source, rows)
    event(f"strategy {w.strategy}")
    _check_without(w, run, rerun, what)
    if not len(positions):
        assert len(w.diff) == 0, f"{what}: an empty removal changes\n{w.diff}"
    if case.training is not None:
        before = case.training(case.inputs(pandas=True))
        after = case.training(case.inputs({source: positions}, pandas=True))
        if _match(_rows(before), _rows(after)) != ([], []):
            event("training rows changed")
            assert len(w.refitted) > 0, f"{what}: the training rows changed, nothing refitted ({w.refitted!r})"
    if dry:
        d = run.without(source, rows, dry_run=True)
        assert d.result is None, f"{what}: dry_run gave a result"
        _assert_same_rows(diff_records(d.diff), diff_records(w.diff), f"{what}: dry-run diff against the diff")
    if other:
        forced = "rerun" if w.strategy == "partial" else "partial"
        try:
            f = run.without(source, rows, strategy=forced)
        except ReplayError as exc:
            assert forced == "partial", f"{what}: strategy='rerun' refused: {exc}"
            event("strategy='partial' refused")
        else:
            _check_without(f, run, rerun, f"{what} forced {forced}", strategy=forced)
            _assert_same_rows(diff_records(f.diff), diff_records(w.diff),
                              f"{what}: diff of {forced} against {w.strategy}")
    return w


def check_removals(data, run: Run, n: int, counter: str, dry_every: int = 2, other_every: int = 2) -> None:
    for i in range(n):
        source, kind, rows = draw_removal(data, run, i)
        event(f"removal: {kind}")
        check_removal(run, source, rows, kind, dry=i % dry_every == 0, other=i % other_every == 1 % other_every,
                      counter=counter)


# ---------------------------------------------------------------------- 1: wide pipelines (test_random_wide)


@settings(max_examples=_n(0.9), **SETTINGS)
@given(src=wide.sources(), steps=wide.steps_of(wide.STEPS, max_size=4), data=st.data())
def test_without_wide_pandas(store, src, steps, data):
    note(f"steps: {steps}")
    check_removals(data, Run.of(wide_case(src, steps, None)), 4, "wide pandas")


@settings(max_examples=_n(0.2), **SETTINGS)
@given(src=wide.sources(min_rows=1), steps=wide.steps_of(wide.STEPS, max_size=4), nparts=st.integers(2, 4),
       data=st.data())
def test_without_wide_dask(store, src, steps, nparts, data):
    note(f"steps: {steps}, nparts={nparts}")
    check_removals(data, Run.of(wide_case(src, steps, nparts)), 3, "wide dask", dry_every=3, other_every=3)


# ---------------------------------------------------------------------- 2: explode, map, concat (test_random_pipelines)


@settings(max_examples=_n(0.4), **SETTINGS)
@given(frames=rp.source_frames(), steps=rp.step_lists, nparts=st.sampled_from([0, 0, 0, 2, 3]), data=st.data())
def test_without_pipelines(store, frames, steps, nparts, data):
    note(f"steps: {steps}, nparts={nparts}")
    nparts = nparts or None
    check_removals(data, Run.of(pipeline_case(frames, steps, nparts)), 3 if nparts is None else 2,
                   "pipelines " + ("pandas" if nparts is None else "dask"))


# ---------------------------------------------------------------------- 3: scikit-learn stages (test_random_ml)


@dataclass
class MLPlan:
    """Data steps, an optional split, an optional transformer fitted on train, a model, its predictions."""

    prep: list
    dask_order: bool
    split: tuple | None = None  # (test_size, seed, by)
    transformer: Any = None  # test_random_ml.Spec
    model: tuple | None = None  # (estimator, X, y, method)
    result: str = "train"  # train, test or concat


def ml_sides(plan: MLPlan, a: pd.DataFrame, b: pd.DataFrame, inputs: dict[str, Any], kwargs: dict[str, Any],
             upto: str = "result") -> Any:
    """The tracked frames by side after the split ("split") or the transformer ("transformed"), or the result."""
    t, _ = rp.run_pipeline(a, b, plan.prep, lambda f: inputs["a"] if f is a else inputs["b"],
                           dask_order=plan.dask_order)
    sides = dict(zip(("train", "test"), t.hippo.split(*plan.split))) if plan.split else {"train": t}
    if upto == "split":
        return sides
    if plan.transformer is not None:
        scaler = sides["train"].hippo.fit(clone(plan.transformer.est), X=plan.transformer.X, **kwargs)
        sides = {k: v.hippo.transform(scaler) for k, v in sides.items()}
    if upto == "transformed":
        return sides
    est, X, y, method = plan.model
    sides["train"] = sides["train"].hippo.dropna(subset=[y])
    model = sides["train"].hippo.fit(clone(est), X=X, y=y, **kwargs)
    sides = {k: v.hippo.predict(model, out="pred", method=method) for k, v in sides.items()}
    if plan.result == "concat":
        return hippo.concat([sides["train"], sides["test"]], ignore_index=True)
    return sides[plan.result]


def _computed(sides: dict[str, Any]) -> dict[str, pd.DataFrame]:
    return {k: v.hippo.compute() for k, v in sides.items()}


def draw_ml_case(data, a: pd.DataFrame, b: pd.DataFrame, nparts: int | None, scheduler: Any = None) -> Case:
    """A plan drawn on the pandas frames of the original data (scikit-learn refusing them: rejected)."""
    draw = data.draw
    plan = MLPlan(draw(rml.prep_steps, label="prep"), nparts is not None)
    here = {"a": a, "b": b}
    cols = list(_computed(ml_sides(plan, a, b, here, {}, "split"))["train"].columns)
    if draw(rml.chance(0.7), label="split"):
        plan.split = (draw(st.sampled_from([0.2, 0.3, 0.5]), label="test_size"),
                      draw(st.integers(0, 2**31), label="seed"),
                      draw(st.one_of(st.none(), st.sampled_from(cols)), label="by"))
    frames = _computed(ml_sides(plan, a, b, here, {}, "split"))
    if not len(frames["train"]):
        reject()
    if draw(rml.chance(0.5), label="transformer?"):
        spec = rml.transformer_spec(draw, rml.kinds(list(frames.values())))
        if spec is not None:
            fitted = rml.preflight(spec.est, spec.X, None, frames["train"], list(frames.values()))
            names = [str(n) for n in fitted.get_feature_names_out(spec.X)]
            kept = [c for c in frames["train"].columns if c not in spec.X]
            if len(set(names)) == len(names) and not set(names) & set(kept):
                note(f"transformer: {spec!r}")
                plan.transformer = spec
                frames = _computed(ml_sides(plan, a, b, here, {}, "transformed"))
    K = rml.kinds(list(frames.values()))
    train = frames["train"]
    labels = [c for c in ("lab", "g") if c in train.columns and 2 <= train[c].nunique() <= 5]
    targets = [c for c in ("t",) if c in K["num"]]
    if not labels and not targets:
        reject()
    task = draw(st.sampled_from(["clf"] * 3 * bool(labels) + ["reg"] * bool(targets)), label="task")
    y = draw(st.sampled_from(labels if task == "clf" else targets), label="label")
    features = [c for c in K["num_nonan"] + K["bool"] if c != y]
    if not features:
        reject()
    X = rml._pick(draw, features, 1, 3, label="features")
    if task == "clf":
        est = rml.CLASSIFIERS[draw(st.sampled_from(sorted(rml.CLASSIFIERS)), label="classifier")](draw)
        method = draw(st.sampled_from(["predict", "predict_proba"]), label="method")
    else:
        est = rml.REGRESSORS[draw(st.sampled_from(sorted(rml.REGRESSORS)), label="regressor")](draw)
        method = "predict"
    rml.preflight(est, X, y, train.dropna(subset=[y]), list(frames.values()), (method,))
    plan.model = (est, X, y, method)
    plan.result = draw(st.sampled_from(["train"] + (["test", "concat"] if plan.split else [])), label="result")
    note(f"plan: {plan}")

    def make(inputs):
        return ml_sides(plan, a, b, inputs, {} if nparts is None else {"scheduler": scheduler or "sync"})

    def training(inputs):  # pandas inputs: the training rows before any fit
        return ml_sides(plan, a, b, inputs, {}, "split")["train"].hippo.compute()

    return Case({"a": a, "b": b}, make, PIPELINE_COLUMNS, nparts, scheduler, training)


def _ml_run(case: Case) -> Run:
    try:
        return Run.of(case)
    except (ValueError, RuntimeWarning, UserWarning) as exc:  # scikit-learn refuses the data on Dask's dtypes
        note(f"original run refused: {exc!r}")
        reject()


@pytest.fixture
def keep_object_columns():
    with dask.config.set({"dataframe.convert-string": False}):
        yield


@rml.sklearn_quiet
@settings(max_examples=_n(0.3), **SETTINGS)
@given(src=rml.ml_sources(), nparts=st.sampled_from([0, 0, 0, 0, 2, 3]), data=st.data())
def test_without_ml(store, keep_object_columns, src, nparts, data):
    a, b = src
    nparts = nparts or None
    run = _ml_run(draw_ml_case(data, a, b, nparts))
    check_removals(data, run, 3 if nparts is None else 2, "ml " + ("pandas" if nparts is None else "dask"))


# ---------------------------------------------------------------------- 4: worker processes


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


@settings(max_examples=_n(0.05, least=2), **SETTINGS)
@given(src=wide.sources(min_rows=1), steps=wide.steps_of(wide.STEPS, max_size=4), nparts=st.integers(2, 3),
       data=st.data())
def test_without_on_worker_processes(store, client, src, steps, nparts, data):
    note(f"steps: {steps}, nparts={nparts}")
    check_removals(data, Run.of(wide_case(src, steps, nparts, client)), 2, "cluster", dry_every=2, other_every=2)


@rml.sklearn_quiet
def test_without_ml_on_worker_processes(store, client, keep_object_columns):
    """A scaler and a model fitted on the workers; removing training rows refits both."""
    rng = np.random.default_rng(3)
    a = pd.DataFrame({"k": rng.integers(0, 3, 24), "x": rng.normal(size=24).round(3),
                      "f": rng.normal(size=24).round(3)})
    a["t"] = (a.x * 2 + a.f + rng.normal(size=24) * 0.1).round(3)
    b = pd.DataFrame({"k": [0, 1, 2], "w": [5, 6, 7]})

    def make(inputs):
        t = inputs["a"].hippo.source("a").hippo.merge(inputs["b"].hippo.source("b"), on="k", how="inner")
        scaler = t.hippo.fit(StandardScaler(), X=["x", "f"], scheduler=client)
        t = t.hippo.transform(scaler)
        model = t.hippo.fit(LinearRegression(), X=["x", "f", "w"], y="t", scheduler=client)
        return t.hippo.predict(model, out="pred")

    case = Case({"a": a, "b": b}, make, PIPELINE_COLUMNS, 3, client, training=lambda i: i["a"].assign(w=0))
    run = Run.of(case)
    w = check_removal(run, "a", [0, 5, 17], counter="cluster")
    assert len(w.refitted) >= 2, w.refitted  # the scaler and the model
    check_removal(run, "b", _equal("k", 2), counter="cluster", dry=False, other=False)


# ---------------------------------------------------------------------- 5: hand-written regression cases


def _pandas_case(frames: dict[str, pd.DataFrame], make: Callable, nparts: int | None = None,
                 columns: dict | None = None) -> Case:
    columns = columns or {n: {"key": f.columns[0], "num": f.columns[1]} for n, f in frames.items()}
    return Case(frames, make, columns, nparts)


def _by_values(df: pd.DataFrame) -> list[tuple]:
    return sorted(_rows(df), key=repr)


BACKENDS = pytest.mark.parametrize("nparts", [None, 2], ids=["pandas", "dask"])


def _group_sum(inputs):
    return inputs["df"].hippo.source("df").hippo.groupby("k").agg(s=("x", "sum"), n=("x", "count"))


@BACKENDS
def test_group_sum_with_a_removed_row(store, nparts):
    df = pd.DataFrame({"k": ["a", "b", "a", "b", "c"], "x": [1, 2, 3, 4, 5]})
    run = Run.of(_pandas_case({"df": df}, _group_sum, nparts))
    w = check_removal(run, "df", [2])
    assert _by_values(w.result) == [("a", 1, 1), ("b", 6, 2), ("c", 5, 1)]
    assert w.diff.change.tolist() == ["changed"]
    assert run.out.k[int(w.diff.row.iloc[0])] == "a" and sorted(w.diff["columns"].iloc[0]) == ["n", "s"]


@BACKENDS
def test_group_whose_every_member_is_removed(store, nparts):
    df = pd.DataFrame({"k": ["a", "b", "a", "b", "c"], "x": [1, 2, 3, 4, 5]})
    run = Run.of(_pandas_case({"df": df}, _group_sum, nparts))
    for rows in ([1, 3], _equal("k", "b")):
        w = check_removal(run, "df", rows)
        assert _by_values(w.result) == [("a", 4, 2), ("c", 5, 1)]
        assert w.diff.change.tolist() == ["removed"] and w.diff.k.tolist() == ["b"] and w.diff.s.tolist() == [6]


@BACKENDS
def test_having_a_group_appears(store, nparts):
    """A filter on an aggregate: removing a negative member lifts a group over the threshold."""
    df = pd.DataFrame({"k": ["a", "b", "a", "b", "c"], "x": [7, 2, -3, 9, 8]})

    def make(inputs):
        return _group_sum(inputs).hippo.filter(lambda p: p.s > 5)

    run = Run.of(_pandas_case({"df": df}, make, nparts))
    assert _by_values(run.out) == [("b", 11, 2), ("c", 8, 1)]
    assert not len(run.lin.forward("df", rows=[2]).rows)  # row 2 reaches nothing
    w = check_removal(run, "df", [2])
    assert _by_values(w.result) == [("a", 7, 1), ("b", 11, 2), ("c", 8, 1)]
    assert w.diff.change.tolist() == ["added"] and w.diff.k.tolist() == ["a"]
    w = check_removal(run, "df", [3])  # b drops under the threshold
    assert _by_values(w.result) == [("c", 8, 1)]


@BACKENDS
def test_drop_duplicates_whose_kept_row_is_removed(store, nparts):
    df = pd.DataFrame({"k": ["a", "b", "a", "a", "b"], "x": [1, 2, 3, 4, 5]})

    def make(inputs):
        return inputs["df"].hippo.source("df").hippo.drop_duplicates(subset=["k"])

    run = Run.of(_pandas_case({"df": df}, make, nparts))
    for rows, want in (([0], [("a", 3), ("b", 2)]), ([0, 2], [("a", 4), ("b", 2)]), ([2], [("a", 1), ("b", 2)]),
                       ([0, 1, 2, 3], [("b", 5)])):
        w = check_removal(run, "df", rows)
        assert _by_values(w.result) == want, rows


@BACKENDS
def test_left_merge_whose_only_partner_is_removed(store, nparts):
    left = pd.DataFrame({"k": [1, 2, 3], "v": ["p", "q", "r"]})
    right = pd.DataFrame({"k": [1, 2, 2], "w": [10, 20, 21]})

    def make(inputs):
        return inputs["l"].hippo.source("l").hippo.merge(inputs["r"].hippo.source("r"), on="k", how="left")

    run = Run.of(_pandas_case({"l": left, "r": right}, make, nparts))
    w = check_removal(run, "r", [0])  # k=1 keeps its row, with no w
    assert _by_values(w.result) == sorted([(1, "p", None), (2, "q", 20.0), (2, "q", 21.0), (3, "r", None)], key=repr)
    w = check_removal(run, "r", [1])  # one of two partners: that pair only
    assert _by_values(w.result) == sorted([(1, "p", 10.0), (2, "q", 21.0), (3, "r", None)], key=repr)
    assert w.diff.change.tolist() == ["removed"]
    w = check_removal(run, "l", [1])
    assert len(w.result) == 2 and sorted(w.diff.change) == ["removed", "removed"]


@BACKENDS
def test_sorted_head_takes_the_next_row(store, nparts):
    df = pd.DataFrame({"k": list("abcdef"), "x": [5, 1, 4, 2, 6, 3]})

    def make(inputs):
        return inputs["df"].hippo.source("df").hippo.sort_values("x").hippo.head(3)

    run = Run.of(_pandas_case({"df": df}, make, nparts))
    w = check_removal(run, "df", [1])
    assert _by_values(w.result) == [("c", 4), ("d", 2), ("f", 3)]


@rml.sklearn_quiet
@BACKENDS
def test_model_whose_training_row_is_removed_is_refitted(store, nparts):
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 10.0, 4.0], "t": [0.0, 1.0, 2.0, 3.0, 100.0, 4.0],
                       "train": [True, True, True, True, True, False]})

    def make(inputs):
        src = inputs["df"].hippo.source("df")
        model = src.hippo.filter(lambda p: p.train).hippo.fit(LinearRegression(), X=["x"], y="t",
                                                              **({} if nparts is None else {"scheduler": "sync"}))
        return src.hippo.predict(model, out="pred")

    run = Run.of(_pandas_case({"df": df}, make, nparts, {"df": {"key": "train", "num": "x"}}))
    w = check_removal(run, "df", [4])  # the outlier, a training row
    assert len(w.refitted) > 0, w.refitted
    train = [0, 1, 2, 3]
    expected = LinearRegression().fit(df.loc[train, ["x"]], df.t[train]).predict(df.loc[train + [5], ["x"]])
    got = w.result.sort_values("x").pred.to_numpy()
    np.testing.assert_allclose(got, np.sort(expected), rtol=1e-9, atol=1e-9)
    assert w.diff.change.value_counts().to_dict() == {"changed": 5, "removed": 1}
    w = check_removal(run, "df", [5])  # not a training row: its prediction goes, the others stay
    assert w.diff.change.tolist() == ["removed"]


def test_without_from_a_store(store):
    """The lineage opened from the store, with the result passed in, answers alike."""
    df = pd.DataFrame({"k": ["a", "b", "a", "b", "c"], "x": [1, 2, 3, 4, 5]})
    run = Run.of(_pandas_case({"df": df}, _group_sum))
    w = check_removal(run, "df", [0, 4])
    opened = hippo.open(store, run.lin.run_id)
    again = opened.without("df", [0, 4], sources={"df": df}, result=run.out, trust=True)
    _assert_same_rows(_rows(again.result), _rows(w.result), "opened from the store")
    _assert_same_rows(diff_records(again.diff), diff_records(w.diff), "opened from the store: diff")


# ---------------------------------------------------------------------- 6: implementation bugs the random tests found


@rml.sklearn_quiet
def test_removal_that_changes_the_result_columns(store):
    """Found by test_without_ml: removing every training row of one class drops that class's predict_proba
    column from a full rerun; without() raised KeyError "['p_0'] not in index" (its rerun re-selected the
    original result's columns)."""
    from sklearn.linear_model import LogisticRegression

    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "lab": [0, 0, 1, 1, 2, 2]})

    def make(inputs):
        src = inputs["df"].hippo.source("df")
        model = src.hippo.fit(LogisticRegression(), X=["x"], y="lab")
        return src.hippo.predict(model, out="p", method="predict_proba")

    run = Run.of(_pandas_case({"df": df}, make, columns={"df": {"key": "lab", "num": "x"}}))
    assert list(run.out.columns) == ["x", "lab", "p_0", "p_1", "p_2"]
    w = check_removal(run, "df", [0, 1])
    assert list(w.result.columns) == ["x", "lab", "p_1", "p_2"] and len(w.refitted) > 0


@BACKENDS
def test_removed_row_whose_identical_twin_takes_its_place(store, nparts):
    """drop_duplicates keeps row 0; without it row 1, equal in every value, is kept instead: the result is
    unchanged, so the diff is empty. Was: "removed" row 0 and "added" the same values (rows matched by
    lineage identity only), listing an unchanged row."""
    df = pd.DataFrame({"k": ["a", "a", "b"], "x": [1, 1, 2]})

    def make(inputs):
        return inputs["df"].hippo.source("df").hippo.drop_duplicates(subset=["k"])

    run = Run.of(_pandas_case({"df": df}, make, nparts))
    w = check_removal(run, "df", [0])
    assert _by_values(w.result) == [("a", 1), ("b", 2)] and len(w.diff) == 0, w.diff


@BACKENDS
def test_rerun_strategy_removing_every_row(store, nparts):
    """Found by test_without_wide_pandas: with the rerun strategy, removing every source row (an empty rerun)
    raised IndexError "index 0 is out of bounds for axis 0 with size 0" while matching rerun rows."""
    df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]})

    def make(inputs):
        return inputs["df"].hippo.source("df").hippo.drop_duplicates(subset=["k"])

    run = Run.of(_pandas_case({"df": df}, make, nparts))
    w = check_removal(run, "df", [0, 1, 2])
    assert len(w.result) == 0 and sorted(w.diff.change) == ["removed", "removed"]


@BACKENDS
def test_result_has_the_dtypes_of_the_rerun(store, nparts):
    """Found by test_without_wide_pandas: a left merge leaves row g=1 without a partner (w float64); removing
    that row, a full rerun matches every row and gives w as int64, but without() kept float64 (the original
    result's dtype) on pandas. (On Dask hippo's merges make w float64 either way.)"""
    a = pd.DataFrame({"g": [1, 2, 3], "x": [5, 6, 7]})
    b = pd.DataFrame({"g": [2, 3], "w": [10, 20]})

    def make(inputs):
        return inputs["a"].hippo.source("a").hippo.merge(inputs["b"].hippo.source("b"), on="g", how="left")

    run = Run.of(_pandas_case({"a": a, "b": b}, make, nparts))
    w = check_removal(run, "a", [0])
    assert _by_values(w.result) == [(2, 6, 10), (3, 7, 20)]
