"""Column pruning at compute() (hippo_dask.prune): narrower Dask graphs, the same answers.

Every test compares a Dask run with pruning (the default) against the oracle or
against the same pipeline run on pandas (never pruned) and on Dask with pruning
off: same rows, same values, same lineage of every cell, same violations. The
structural tests check that pruning does narrow the graph where it should
(the reference pipeline's merge back) and keeps every column where it must (a
user function whose reads are unknown).
"""

from __future__ import annotations

import os
from collections import Counter

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hippo_dask as hippo
from hippo_dask import prune
from hippo_dask.accessor import tracked_of
from oracle import OracleFrame, check_forward, hippo_records, oracle_records, row_keys
from test_random_pipelines import SETTINGS, apply_step, source_frames, step_lists

SYNC = {"scheduler": "sync"}


def to_dask(frame: pd.DataFrame, n: int = 3) -> dd.DataFrame:
    return dd.from_pandas(frame, npartitions=n, sort=False)


@pytest.fixture
def no_pruning():
    prune.ENABLED = False
    try:
        yield
    finally:
        prune.ENABLED = True


def _walk(expr, seen=None):
    seen = set() if seen is None else seen
    if expr._name in seen:
        return
    seen.add(expr._name)
    yield expr
    for dep in expr.dependencies():
        yield from _walk(dep, seen)


def merge_widths(frame) -> list[tuple[int, int]]:
    """(left, right) column counts of every merge in the graph ``compute()`` would run."""
    data, _ = prune.pruned(tracked_of(frame, "test"))
    return sorted((len(e.left.columns), len(e.right.columns)) for e in _walk(data.expr.simplify())
                  if type(e).__name__ == "Merge")


def user_function_widths(frame) -> dict[str, list[int]]:
    """Input column counts (hidden included) of hippo's per-partition functions, by function name."""
    data, _ = prune.pruned(tracked_of(frame, "test"))
    out: dict[str, list[int]] = {}
    for e in _walk(data.expr.simplify()):
        if type(e).__name__ == "MapPartitions":
            out.setdefault(getattr(e.func, "__name__", "?"), []).append(len(e.frame.columns))
    return out


def run_everywhere(build, frames: dict[str, pd.DataFrame], checks: tuple[str, ...] = (), nparts: int = 3):
    """``build`` on pandas, on Dask with pruning and on Dask without: the same results, lineage and violations."""
    results = []
    for backend, enabled in (("pandas", True), ("dask", True), ("dask", False)):
        prune.ENABLED = enabled
        try:
            sources = {name: (f if backend == "pandas" else to_dask(f, nparts)).hippo.source(name) for name, f in frames.items()}
            t = build(**sources)
            results.append(t.hippo.compute(**({} if backend == "pandas" else SYNC)))
        finally:
            prune.ENABLED = True
    first = results[0]
    for other in results[1:]:
        assert list(other.columns) == list(first.columns)
        assert Counter(row_keys(other)) == Counter(row_keys(first))
        assert hippo_records(other) == hippo_records(first)
        for name in checks:
            a, b = first.hippo.lineage.violations(name), other.hippo.lineage.violations(name)
            assert a.count == b.count, name
            for src in frames:
                assert a.trace[src].rows.tolist() == b.trace[src].rows.tolist(), (name, src)
            keys_a, keys_b = row_keys(first), row_keys(other)
            assert Counter(keys_a[i] for i in a.result_rows) == Counter(keys_b[i] for i in b.result_rows), name
    return results


# ---------------------------------------------------------------------- random pipelines, then a selection

EXTRA = ["flag", "filter_y", "map_unknown"]


def extra_step(step: str, t, o: OracleFrame):
    """Steps that read a column only they need, or whose reads are unknown."""
    cols = list(o.df.columns)
    if step == "flag" and "x" in cols and "f" not in cols:  # reads x, which the selection may drop
        fn = lambda p: p.x % 3 == 0  # noqa: E731
        return t.hippo.assign(f=fn), o.assign("f", fn, ["x"])
    if step == "filter_y" and "y" in cols:  # a filter on a column the selection may drop
        pred = lambda p: p.y.fillna(0) > -4  # noqa: E731
        return t.hippo.filter(pred), o.filter(pred)
    if step == "map_unknown" and "x" in cols and "u" not in cols:  # reads every numeric column, inference unsure
        return t.hippo.map(_row_sum), o.map(_row_sum, reads=cols, writes=["u"])
    return t, o


def _row_sum(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(u=p.select_dtypes("number").sum(axis=1).astype("float64"))


@settings(max_examples=max(1, int(os.environ.get("HIPPO_EXAMPLES", 100)) // 2), **SETTINGS)
@given(frames=source_frames(), steps=step_lists, extras=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(EXTRA)), max_size=3),
       nparts=st.integers(1, 3), data=st.data())
def test_random_pipelines_then_a_selection_dask(store, frames, steps, extras, nparts, data):
    """Random pipelines (and steps reading columns only they need), then a random selection: against the oracle."""
    from test_random_pipelines import REORDERING

    a, b = frames
    ta = to_dask(a, nparts).hippo.source("a")
    tb = to_dask(b, nparts).hippo.source("b")
    t, o = ta, OracleFrame.source(a, "a")
    ctx = {"b": (tb, OracleFrame.source(b, "b")), "row_order_defined": True}
    for i, (step, how) in enumerate(steps):
        for at, extra in extras:
            if at == i:
                t, o = extra_step(extra, t, o)
        t, o = apply_step(step, how, t, o, ctx)
        if step in REORDERING:
            ctx["row_order_defined"] = False
    for at, extra in extras:
        if at >= len(steps):
            t, o = extra_step(extra, t, o)
    cols = list(o.df.columns)
    keep = data.draw(st.lists(st.sampled_from(cols), min_size=1, max_size=len(cols), unique=True))
    t, o = t.hippo.select(keep), o.select(keep)
    result = t.hippo.compute(**SYNC)
    assert list(result.columns) == keep
    assert len(result) == len(o.df)
    assert hippo_records(result) == oracle_records(o)
    check_forward(result, o, {"a": a, "b": b}, samples=2)


# ---------------------------------------------------------------------- the reference pipeline, small


def _features(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(feat_a=p["amount"] * p["f1"], feat_b=(p["f1"] - p["f2"]) / (1.0 + p["amount"]))


def reference_frames(n: int = 400, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    events = pd.DataFrame({"event_id": np.arange(n), "user_id": rng.integers(0, 20, n), "ts": rng.permutation(n),
                           "amount": rng.normal(50, 50, n).round(2), "category": rng.choice(["c0", "c1", "c2"], n)})
    for i in range(1, 8):
        v = rng.normal(size=n).round(3)
        v[rng.random(n) < 0.05] = np.nan
        events[f"f{i}"] = v
    users = pd.DataFrame({"user_id": np.arange(20), "region": rng.choice(["r0", "r1"], 20),
                          "segment": rng.choice(["s0", "s1"], 20), "age": rng.integers(18, 90, 20)})
    return events, users


SELECT = ["event_id", "user_id", "ts", "amount", "category", "feat_a", "feat_b", "region", "mean_amount", "label"]


def reference(events, users):
    d = events.hippo.dropna(subset=["f1", "f2"])
    d = d.hippo.filter(lambda p: p["amount"] > 0)
    d = d.hippo.map(_features, reads=["amount", "f1", "f2"], writes=["feat_a", "feat_b"])
    d = d.hippo.merge(users, on="user_id")
    g = d.hippo.groupby("user_id").agg(n_events=("event_id", "count"), mean_amount=("amount", "mean"),
                                       max_feat=("feat_a", "max"))
    d = d.hippo.merge(g, on="user_id")
    d = d.hippo.assign(label=lambda p: p["amount"] > p["mean_amount"])
    d = d.hippo.filter(lambda p: p["category"].isin(["c0", "c2"]))
    d = d.hippo.sort_values("ts")
    return d.hippo.select(SELECT)


def test_reference_pipeline_merges_only_what_the_result_needs(store):
    events, users = reference_frames()
    out = reference(to_dask(events).hippo.source("events"), to_dask(users, 1).hippo.source("users"))
    # hidden columns: one slot per source, one for the group-by
    # merge(users): events side 7 user columns (5 + feat_a, feat_b) + 1 slot; users side user_id, region + 1 slot
    # merge back: 8 user columns + 2 slots; groups: user_id, mean_amount + 1 slot
    assert merge_widths(out) == [(8, 3), (10, 3)]
    widths = user_function_widths(out)
    # the first filter sees what the map reads and what survives to the result (7 user columns + slot), not 13
    assert min(widths["filter_partition"]) == 8
    prune.ENABLED = False
    try:
        assert merge_widths(out) == [(15, 5), (19, 5)]
    finally:
        prune.ENABLED = True


def test_reference_pipeline_answers_do_not_change(store):
    events, users = reference_frames(300)
    run_everywhere(reference, {"events": events, "users": users})


def test_reference_pipeline_replays_and_removes_rows_after_pruning(store):
    events, users = reference_frames(300)
    e, u = to_dask(events), to_dask(users, 1)
    result = reference(e.hippo.source("events"), u.hippo.source("users")).hippo.compute(**SYNC)
    lin = result.hippo.lineage
    report = lin.replay(sources={"events": e, "users": u}, trust=True, **SYNC)
    assert report.identical, str(report)
    sliced = lin.replay(rows=[0, 5], sources={"events": e, "users": u}, trust=True, **SYNC)
    assert row_keys(sliced) == row_keys(result.iloc[[0, 5]])
    removed = lin.without("events", rows=[1, 2, 3], sources={"events": e, "users": u}, trust=True, **SYNC)
    rerun = reference(to_dask(events.drop(index=[1, 2, 3]).reset_index(drop=True)).hippo.source("events"),
                      u.hippo.source("users")).hippo.compute(**SYNC)
    assert Counter(row_keys(removed.result)) == Counter(row_keys(rerun))


# ---------------------------------------------------------------------- user functions and the columns they read


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.integers(0, 9, n), "b": rng.normal(size=n).round(3), "c": rng.integers(-5, 5, n),
                         "s": rng.choice(["p", "q"], n)})


def test_a_function_reading_a_column_only_it_needs(store):
    """c is read by the assign and the filter only; the result never shows it."""
    def build(a):
        t = a.hippo.assign(z=lambda p: p.a * 10 + p.c)
        t = t.hippo.filter(lambda p: p.c > -3)
        return t.hippo.select(["z", "s"])

    pandas_result, dask_result, _ = run_everywhere(build, {"a": _frame()})
    frame = _frame()
    expected = frame[frame.c > -3].assign(z=lambda p: p.a * 10 + p.c)[["z", "s"]]
    assert Counter(row_keys(dask_result)) == Counter(row_keys(expected))


def _row_total(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(total=p.sum(axis=1, numeric_only=True))


def test_unknown_reads_keep_every_column(store):
    """A function whose reads cannot be inferred sees every column, however few the result keeps."""
    frame = _frame()
    out = to_dask(frame).hippo.source("a").hippo.map(_row_total).hippo.select(["total"])
    assert tracked_of(out, "t").node.inputs[0].params["reads"] is None
    assert user_function_widths(out)["map_partition"] == [5]  # a, b, c, s + slot
    result = out.hippo.compute(**SYNC)
    assert np.allclose(np.sort(result.total.to_numpy()), np.sort(frame[["a", "b", "c"]].sum(axis=1).to_numpy()))
    cells = result.hippo.lineage.backward(rows=[0], columns=["total"])["a"].cells
    assert set(cells.column) == {"a", "b", "c", "s"}
    run_everywhere(lambda a: a.hippo.map(_row_total).hippo.select(["total"]), {"a": frame})


def _pick(p: pd.DataFrame) -> pd.DataFrame:
    return p[["a", "b"]].assign(d=p["a"] * 2)


def test_a_map_that_picks_columns_by_name_keeps_its_input(store):
    """reads=["a"] is the truth for d, but the function also names b: its input is not cut."""
    build = lambda a: a.hippo.map(_pick, reads=["a"], writes=["d"]).hippo.select(["d"])  # noqa: E731
    out = build(to_dask(_frame()).hippo.source("a"))
    assert user_function_widths(out)["map_partition"] == [5]
    run_everywhere(build, {"a": _frame()})


def test_declared_reads_cut_the_input(store):
    build = lambda a: a.hippo.map(_features2, reads=["a"], writes=["d"]).hippo.select(["d", "s"])  # noqa: E731
    out = build(to_dask(_frame()).hippo.source("a"))
    assert user_function_widths(out)["map_partition"] == [3]  # a, s + slot
    run_everywhere(build, {"a": _frame()})


def _features2(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(d=p["a"] * 3)


# ---------------------------------------------------------------------- operations that name columns


def test_merge_keeps_both_sides_of_a_clashing_column(store):
    """v_x alone is needed, but pandas names it v_x only while the right side's v is there too."""
    left = pd.DataFrame({"k": [0, 1, 2, 1, 0, 3], "v": [1, 2, 3, 4, 5, 6], "w": [9, 8, 7, 6, 5, 4]})
    right = pd.DataFrame({"k": [0, 1, 2, 4], "v": [10, 20, 30, 40], "r": ["a", "b", "c", "d"]})
    for how in ("inner", "left", "outer"):
        build = lambda left, right, how=how: left.hippo.merge(right, on="k", how=how).hippo.select(["v_x"])  # noqa: E731
        run_everywhere(build, {"left": left, "right": right}, nparts=2)
    build = lambda left, right: left.hippo.merge(right, on="k").hippo.select(["k", "r"])  # noqa: E731
    out = build(to_dask(left, 2).hippo.source("left"), to_dask(right, 1).hippo.source("right"))
    assert merge_widths(out) == [(2, 3)]  # k + slot; k, r + slot
    run_everywhere(build, {"left": left, "right": right}, nparts=2)


def test_astype_fillna_replace_naming_columns_the_result_drops(store):
    frame = _frame().astype({"b": "float64"})
    frame.loc[[1, 4], "b"] = np.nan

    def build(a):
        t = a.hippo.astype({"c": "float64", "a": "int32"})
        t = t.hippo.fillna({"b": 0.0})
        t = t.hippo.replace({"s": {"p": "P"}})
        return t.hippo.select(["a"])

    run_everywhere(build, {"a": frame})


def test_checks_and_validations_on_columns_the_result_drops(store):
    pa = pytest.importorskip("pandera.pandas")
    schema = pa.DataFrameSchema({"b": pa.Column(float, pa.Check.ge(-1.0)), "s": pa.Column(str)})

    def build(a):
        t = a.hippo.check(lambda p: p.c >= 0, name="c_ok")
        t = t.hippo.validate(schema, name="schema")
        t = t.hippo.filter(lambda p: p.a > 2)
        return t.hippo.select(["a"])

    run_everywhere(build, {"a": _frame()}, checks=("c_ok", "schema"))


def test_group_transform_concat_rename_explode_then_a_selection(store):
    frame = _frame()

    def build(a):
        t = a.hippo.groupby("s").transform(m=("b", "mean"))
        t = hippo.concat([t, t.hippo.filter(lambda p: p.a > 5)], ignore_index=True)
        t = t.hippo.rename({"c": "cc"})
        t = t.hippo.assign(l=lambda p: p.a.map(lambda v: list(range(int(v) % 3))))
        t = t.hippo.explode("l")
        t = t.hippo.drop_duplicates(subset=["cc", "l"])
        return t.hippo.select(["m", "l"])

    run_everywhere(build, {"a": frame})


def test_ml_steps_then_a_selection(store):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    frame = _frame(60)
    frame["y"] = frame.a * 2.0 + frame.b

    def build(a):
        scaler = a.hippo.fit(StandardScaler(), X=["a", "b"], **({"scheduler": "sync"} if hasattr(a, "npartitions") else {}))
        t = a.hippo.transform(scaler)
        model = t.hippo.fit(LinearRegression(), X=["a", "b"], y="y", **({"scheduler": "sync"} if hasattr(a, "npartitions") else {}))
        return t.hippo.predict(model).hippo.select(["prediction", "s"])

    results = run_everywhere(build, {"a": frame})
    assert np.allclose(np.sort(results[0].prediction), np.sort(results[1].prediction))


def test_a_size_aggregation_keeps_the_column_it_names(store):
    """("x", "size") reads no value of x, and lineage says so; pandas still wants x there."""
    a = pd.DataFrame({"k": np.arange(60) % 7, "x": np.arange(60)[::-1], "y": np.arange(60) * 0.5})
    b = pd.DataFrame({"k": np.arange(7), "w": np.arange(7) * 2})
    build = lambda a, b: a.hippo.merge(b, on="k").hippo.sort_values("y").hippo.groupby("k").agg(  # noqa: E731
        s=("w", "sum"), n=("x", "size"))
    run_everywhere(build, {"a": a, "b": b})
    build = lambda a: a.hippo.groupby("k").transform(n=("x", "size")).hippo.select(["n"])  # noqa: E731
    run_everywhere(build, {"a": a})


def test_declared_reads_that_the_function_exceeds_are_not_pruned(store, monkeypatch):
    """reads=["a"] but the function sums every column: pruning would hand it fewer
    columns and silently change the sum; a probe of the function sees it touch more
    than its reads, so nothing is pruned and the values are those of the unpruned run."""
    from hippo_dask import prune

    df = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [1.0, 1, 1, 1], "c": [5.0, 6, 7, 8]})

    def run(enabled: bool) -> pd.DataFrame:
        monkeypatch.setattr(prune, "ENABLED", enabled)
        d = dd.from_pandas(df, npartitions=2, sort=False).hippo.source("d")
        m = d.hippo.map(lambda p: p.assign(s=p.sum(axis=1)), reads=["a"], writes=["s"])
        return m.hippo.select(["a", "s"]).hippo.compute(scheduler="sync")

    pruned, unpruned = run(True), run(False)
    pd.testing.assert_frame_equal(pruned, unpruned)
    assert pruned["s"].tolist() == (df.a + df.b + df.c).tolist()


def test_declared_reads_that_leave_out_a_read_column_are_refused(store):
    """reads=["a"] for a function that indexes b too would under-report lineage: refused at once,
    naming the column, for map, assign and filter, on pandas and Dask."""
    frame = _frame()
    for source in (frame, to_dask(frame)):
        t = source.hippo.source("a")
        with pytest.raises(hippo.LineageError, match=r"leaves out \['b'\]"):
            t.hippo.map(lambda p: p.assign(d=p["a"] + p["b"]), reads=["a"], writes=["d"])
        with pytest.raises(hippo.LineageError, match=r"leaves out \['b'\]"):
            t.hippo.assign(d=lambda p: p.a * p.b, lineage=hippo.lin.Rowwise(reads=["a"]))
        with pytest.raises(hippo.LineageError, match=r"leaves out \['b'\]"):
            t.hippo.filter(lambda p: p.b > p.a, lineage=hippo.lin.Rowwise(reads=["a"]))


def test_parquet_source_reads_only_the_columns_the_run_needs(store, tmp_path):
    """The source is read again cut to what the run needs (fingerprints name only those columns);
    answers, a whole replay and a sliced replay agree with the data."""
    frame = pd.DataFrame({"a": np.arange(30) % 7, "b": np.arange(30) * 1.5, "c": np.arange(30) % 3,
                          "s": [f"s{i % 4}" for i in range(30)], "unused": np.arange(30) * 2})
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(3):
        frame.iloc[10 * i: 10 * i + 10].to_parquet(folder / f"part-{i}.parquet", index=False)
    src = dd.read_parquet(str(folder)).hippo.source("src")
    out = src.hippo.filter(lambda p: p.a > 2).hippo.groupby("c").agg(t=("b", "sum")).hippo.compute(scheduler="sync")
    lin = out.hippo.lineage
    recorded = lin.manifest["sources"]["src"]["partition_column_fingerprints"]
    assert [sorted(r) for r in recorded] == [["a", "b", "c"]] * 3
    assert lin.manifest["sources"]["src"]["partition_rows"] == [10, 10, 10]
    kept = frame[frame.a > 2]
    for row, key in enumerate(out["c"]):
        assert list(lin.backward(rows=[row], columns="t")["src"].rows) == sorted(kept.index[kept.c == key])
    assert lin.replay(trust=True, scheduler="sync").identical
    again = lin.replay(rows=[0, 1], trust=True, scheduler="sync")
    assert np.allclose(again["t"].to_numpy(), out["t"].iloc[[0, 1]].to_numpy())
