"""pandas' own spellings on ``.hippo`` (issue 10): each gives the values pandas gives and the
lineage the oracle (tests/oracle.py) gives for the same step written with hippo's core
operations; refused spellings name the one to use instead.

Oracles are independent of the code under test: the expected named aggregations are written
out by hand, values come from pandas itself, and the rows ``nlargest`` keeps are the ones
pandas' ``nlargest`` keeps.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import hippo_dask as hippo
from hippo_dask.errors import ColumnError, LineageError

from oracle import OracleFrame, hippo_records, oracle_records

BACKENDS = ["pandas", "dask"]


def table(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "k": rng.choice(["a", "b", "c"], size=n),
        "j": rng.integers(0, 2, size=n),
        "x": rng.integers(-5, 6, size=n),
        "y": rng.normal(size=n).round(2),
    }, index=pd.Index([f"r{i}" for i in range(n)]))  # labels, not positions: lineage must not use them


def tracked(backend: str, df: pd.DataFrame, name: str = "t", nparts: int = 3):
    data = df if backend == "pandas" else dd.from_pandas(df, npartitions=nparts, sort=False)
    return data.hippo.source(name)


def compute(t, backend: str) -> pd.DataFrame:
    return t.hippo.compute(**({} if backend == "pandas" else {"scheduler": "sync"}))


def same_values(got: pd.DataFrame, want: pd.DataFrame, ordered: bool = True) -> None:
    got, want = got.reset_index(drop=True), want.reset_index(drop=True)
    if not ordered:
        got = got.sort_values(list(got.columns), kind="stable").reset_index(drop=True)
        want = want.sort_values(list(want.columns), kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=False, rtol=1e-9)


# ---------------------------------------------------------------------- group-by spellings

def spread(values: pd.Series) -> float:
    """A function of one group's values, as pandas' agg takes it."""
    return values.max() - values.min()


# (spelling on a GroupBy, the same as named aggregations written out by hand, pandas' own result)
GROUPBY_CASES = {
    "callable": (lambda g: g.agg(width=("x", spread), top=("y", "max"), anon=("y", lambda v: v.abs().sum())),
                 {"width": ("x", spread), "top": ("y", "max"), "anon": ("y", lambda v: v.abs().sum())},
                 lambda df: df.groupby("k", as_index=False).agg(width=("x", spread), top=("y", "max"),
                                                                anon=("y", lambda v: v.abs().sum()))),
    "callable_in_list": (lambda g: g["x"].agg(["sum", spread]), {"sum": ("x", "sum"), "spread": ("x", spread)},
                         lambda df: df.groupby("k")["x"].agg(["sum", spread]).reset_index()),
    "agg_str": (lambda g: g.agg("sum"), {"j": ("j", "sum"), "x": ("x", "sum"), "y": ("y", "sum")},
                lambda df: df.groupby("k", as_index=False).agg("sum")),
    "agg_list": (lambda g: g[["x", "y"]].agg(["min", "max"]),
                 {"x_min": ("x", "min"), "x_max": ("x", "max"), "y_min": ("y", "min"), "y_max": ("y", "max")},
                 lambda df: _flat(df.groupby("k")[["x", "y"]].agg(["min", "max"]))),
    "agg_dict": (lambda g: g.agg({"x": "sum", "y": ["mean", "count"]}),
                 {"x": ("x", "sum"), "y_mean": ("y", "mean"), "y_count": ("y", "count")},
                 lambda df: _flat(df.groupby("k").agg({"x": ["sum"], "y": ["mean", "count"]})).rename(columns={"x_sum": "x"})),
    "named_agg": (lambda g: g.agg(total=pd.NamedAgg(column="x", aggfunc="sum"), top=("y", max)),
                  {"total": ("x", "sum"), "top": ("y", "max")},
                  lambda df: df.groupby("k", as_index=False).agg(total=("x", "sum"), top=("y", "max"))),
    "sum_method": (lambda g: g.sum(), {"j": ("j", "sum"), "x": ("x", "sum"), "y": ("y", "sum")},
                   lambda df: df.groupby("k", as_index=False).sum()),
    "mean_selected": (lambda g: g["y"].mean(), {"y": ("y", "mean")},
                      lambda df: df.groupby("k", as_index=False)["y"].mean()),
    "series_agg_list": (lambda g: g["x"].agg(["sum", "max"]), {"sum": ("x", "sum"), "max": ("x", "max")},
                        lambda df: df.groupby("k")["x"].agg(["sum", "max"]).reset_index()),
    "size": (lambda g: g.size(), {"size": ("k", "size")}, lambda df: df.groupby("k", as_index=False).size()),
    "count": (lambda g: g.count(), {"j": ("j", "count"), "x": ("x", "count"), "y": ("y", "count")},
              lambda df: df.groupby("k", as_index=False).count()),
    "nunique": (lambda g: g[["j", "x"]].nunique(), {"j": ("j", "nunique"), "x": ("x", "nunique")},
                lambda df: df.groupby("k", as_index=False)[["j", "x"]].nunique()),
}


def _flat(wide: pd.DataFrame) -> pd.DataFrame:
    """pandas' two-level column names, flattened as hippo names them (``<column>_<function>``)."""
    wide = wide.copy()
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    return wide.reset_index()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(GROUPBY_CASES))
def test_groupby_spellings(store, backend, case):
    spell, named, pandas_result = GROUPBY_CASES[case]
    df = table()
    out = compute(spell(tracked(backend, df).hippo.groupby("k")), backend)
    same_values(out, pandas_result(df.reset_index(drop=True)), ordered=backend == "pandas")
    want = OracleFrame.source(df, "t").groupby_agg(["k"], named)
    assert list(out.columns) == ["k", *named]
    assert hippo_records(out) == oracle_records(want)


def test_groupby_refusals_name_the_spelling(store):
    t = tracked("pandas", table())
    with pytest.raises(LineageError, match=r"unknown aggregation 'mode'.*sum.*function of a group's values"):
        t.hippo.groupby("k").agg("mode")
    with pytest.raises(LineageError, match=r"transform\('sum'\)"):
        t.hippo.groupby("k").transform(lambda s: s - s.mean())
    with pytest.raises(LineageError, match="another frame"):
        t.hippo.filter(lambda p: p.x > 0).hippo.assign(s=t.hippo.groupby("k")["x"].transform("sum"))
    with pytest.raises(ColumnError, match="group keys"):
        t.hippo.groupby("k")["k"]
    with pytest.raises(ColumnError, match="unknown column"):
        t.hippo.groupby("k")["nope"]
    with pytest.raises(LineageError, match="either a function spelling"):
        t.hippo.groupby("k").agg("sum", total=("x", "sum"))
    with pytest.raises(LineageError, match="assign"):
        t.hippo.groupby(lambda i: i)


# ---------------------------------------------------------------------- row selections


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_reads_the_named_columns(store, backend):
    df = table()
    low = -1
    out = compute(tracked(backend, df).hippo.query("x > @low and `y` < 0.5"), backend)
    same_values(out, df.query("x > @low and `y` < 0.5"))
    want = OracleFrame.source(df, "t").filter(lambda p: (p.x > low) & (p.y < 0.5))
    assert hippo_records(out) == oracle_records(want)
    node = [n for n in out.hippo.lineage.manifest["nodes"] if n["op"] == "filter"][0]
    assert node["params"]["reads"] == ["x", "y"]


def test_query_refusals(store):
    t = tracked("pandas", table())
    with pytest.raises(LineageError, match="name no variable"):
        t.hippo.query("x > @not_defined_anywhere")
    with pytest.raises(LineageError, match="inplace"):
        t.hippo.query("x > 0", inplace=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_loc_with_a_function_and_columns(store, backend):
    df = table()
    out = compute(tracked(backend, df).hippo.loc[lambda p: p.x >= 0, ["k", "y"]], backend)
    same_values(out, df.loc[df.x >= 0, ["k", "y"]])
    want = OracleFrame.source(df, "t").filter(lambda p: p.x >= 0).select(["k", "y"])
    assert hippo_records(out) == oracle_records(want)


@given(st.lists(st.booleans(), min_size=1, max_size=30), st.integers(0, 2**31))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_loc_and_filter_with_a_boolean_series(store, keep, seed):
    df = table(len(keep), seed)
    mask = pd.Series(keep, index=df.index)
    t = tracked("pandas", df)
    for out in (t.hippo.loc[mask], t.hippo.filter(mask), t.hippo.loc[mask.to_numpy(), "x"]):
        res = out.hippo.compute()
        cols = list(res.columns)
        same_values(res, df.loc[mask.to_numpy(), cols])
        want = OracleFrame.source(df, "t").filter(lambda p: np.asarray(keep)).select(cols)
        assert hippo_records(res) == oracle_records(want)


def test_boolean_series_refusals(store):
    df = table()
    t = tracked("pandas", df)
    with pytest.raises(LineageError, match="another index"):
        t.hippo.loc[(df.x > 0).reset_index(drop=True)]
    with pytest.raises(LineageError, match="missing values"):
        t.hippo.filter(pd.Series([True, None] * 6, index=df.index, dtype="boolean"))
    with pytest.raises(LineageError, match="row labels"):
        t.hippo.loc["r1"]
    with pytest.raises(LineageError, match="boolean Series / array"):  # numbers are not a mask (were cast to bool)
        t.hippo.filter(df.x)
    d = tracked("dask", df)
    with pytest.raises(LineageError, match="both pandas or both Dask"):
        d.hippo.loc[df.x > 0]
    with pytest.raises(LineageError, match="partitions"):
        d.hippo.loc[tracked("dask", df, "e", nparts=2).x > 0]
    # a mask of other rows (another frame's partitions, of the same number) is refused on the workers
    kept = d.hippo.filter(lambda p: p.x > -3)
    with pytest.raises(LineageError, match="another index"):
        compute(kept.hippo.loc[d.x > 0], "dask")


@given(st.lists(st.booleans(), min_size=1, max_size=30), st.integers(1, 4))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_dask_boolean_series_filters_partition_by_partition(store, keep, nparts):
    df = table(len(keep), 3)
    df["keep"] = keep
    d = tracked("dask", df, nparts=nparts)
    f = d.hippo.filter(lambda p: p.x != 7)  # a step before: the Series is of the frame it filters
    for out in (f.hippo.loc[f.keep, ["x", "y"]], f.hippo.filter(f.keep)):
        res = compute(out, "dask")
        cols = list(res.columns)
        same_values(res, df.loc[np.asarray(keep), cols])
        want = OracleFrame.source(df, "t").filter(lambda p: np.asarray(keep)).select(cols)
        assert hippo_records(res) == oracle_records(want)
    with pytest.raises(hippo.ReplayError, match="Dask boolean Series"):
        res.hippo.lineage.replay(sources={"t": dd.from_pandas(df, npartitions=nparts, sort=False)}, trust=True,
                                 scheduler="sync")


def test_a_mask_filter_is_not_reused_on_other_rows(store):
    """A sliced replay cannot apply a mask computed outside hippo: refused, never filtered by it."""
    df = table()
    src = tracked("pandas", df)
    res = src.hippo.filter(df.x > 0).hippo.compute()
    with pytest.raises(hippo.ReplayError, match="replay the whole run"):
        res.hippo.lineage.replay(rows=[0], sources={"t": df})
    assert res.hippo.lineage.replay(sources={"t": df}, trust=True).identical


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("largest", [True, False])
def test_nlargest_nsmallest(store, backend, largest):
    df = table(20).assign(x=lambda d: d.x % 3)  # many ties: keep="first" decides
    flat = df.reset_index(drop=True)
    t = tracked(backend, df)
    out = compute(t.hippo.nlargest(5, ["x"]) if largest else t.hippo.nsmallest(5, ["x"]), backend)
    picked = flat.nlargest(5, ["x"]) if largest else flat.nsmallest(5, ["x"])
    if backend == "pandas":
        same_values(out, picked)
        rows = list(picked.index)
    else:  # Dask's sort breaks ties in no set order: the same values, maybe other tied rows
        assert sorted(out.x) == sorted(picked.x)
        rows = [int(out.hippo.lineage.backward(rows=[i])["t"].rows[0]) for i in range(len(out))]
    # each result row traces to exactly one source row, whose values it has
    assert hippo_records(out) == oracle_records(OracleFrame.source(df, "t")._take(rows))


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_counts(store, backend):
    df = table(30)
    out = compute(tracked(backend, df).hippo.value_counts(["k", "j"]), backend)
    expected = df.value_counts(["k", "j"]).reset_index()
    same_values(out, expected, ordered=False)
    assert out["count"].is_monotonic_decreasing
    want = OracleFrame.source(df, "t").groupby_agg(["k", "j"], {"count": ("k", "size")})
    assert hippo_records(out) == oracle_records(want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_keeps_each_cell_on_its_own_cell(store, backend):
    df = table()[["x", "y"]]
    out = compute(tracked(backend, df).hippo.clip(lower=-1, upper=1), backend)
    same_values(out, df.clip(lower=-1, upper=1))
    want = OracleFrame.source(df, "t")
    for c in ("x", "y"):
        want = want.assign(c, lambda p, c=c: p[c].clip(-1, 1), reads=[c])
    assert hippo_records(out) == oracle_records(want)


def test_pipe_chains_functions(store):
    df = table()

    def positive(frame, column):
        return frame.hippo.filter(lambda p: p[column] > 0)

    out = tracked("pandas", df).hippo.pipe(positive, "x").hippo.compute()
    assert hippo_records(out) == oracle_records(OracleFrame.source(df, "t").filter(lambda p: p.x > 0))


def test_unsupported_names_say_what_to_write(store):
    t = tracked("pandas", table())
    for name, hint in [("pivot_table", "groupby"), ("melt", "flatmap"), ("iloc", "condition")]:
        with pytest.raises(AttributeError, match=hint):
            getattr(t.hippo, name)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        t.hippo.nonsense


# ---------------------------------------------------------------------- merge options, tail, where / mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["inner", "left", "outer"])
def test_merge_indicator(store, backend, how):
    left = pd.DataFrame({"k": [1, 2, 3, 3], "x": [1.0, 2.0, 3.0, 4.0]})
    right = pd.DataFrame({"k": [1, 1, 4], "y": [5.0, 6.0, 7.0]})
    out = compute(tracked(backend, left, "l", 2).hippo.merge(tracked(backend, right, "r", 2), on="k", how=how,
                                                             indicator=True), backend)
    expected = left.merge(right, on="k", how=how, indicator=True)
    same_values(out.astype({"_merge": str}), expected.astype({"_merge": str}), ordered=False)
    want = OracleFrame.source(left, "l").merge(OracleFrame.source(right, "r"), how=how, on=["k"])
    # the indicator: values from pandas, cells from no source cell, the row's lineage as the merge's
    flags = expected.sort_values(["k", "x", "y"]).reset_index(drop=True)
    want_df = want.df.sort_values(["k", "x", "y"]).reset_index(drop=True)
    assert want_df[["k", "x", "y"]].equals(flags[["k", "x", "y"]])
    order = want.df.sort_values(["k", "x", "y"]).index
    want = want._take(list(order))
    want.df["_merge"] = flags["_merge"].astype(str).to_numpy()
    want.cells["_merge"] = [frozenset()] * len(want.df)
    assert hippo_records(out.astype({"_merge": str})) == oracle_records(want)
    if backend == "pandas":  # a replay merges with the indicator too (it once dropped it)
        assert out.hippo.lineage.replay(sources={"l": left, "r": right}).identical


def test_merge_validate(store):
    left = tracked("pandas", pd.DataFrame({"k": [1, 2], "x": [1, 2]}), "l")
    right = tracked("pandas", pd.DataFrame({"k": [1, 1], "y": [5, 6]}), "r")
    with pytest.raises(pd.errors.MergeError, match="one-to-one"):
        left.hippo.merge(right, on="k", validate="one_to_one")
    out = left.hippo.merge(right, on="k", validate="one_to_many").hippo.compute()
    assert out.hippo.lineage.backward(rows=[1])["r"].rows.tolist() == [1]
    with pytest.raises(LineageError, match="validate must be one of"):
        left.hippo.merge(right, on="k", validate="one_to_none")


@pytest.mark.parametrize("validate", ["one_to_one", "1:m", "many_to_one", "m:m"])
def test_merge_validate_on_dask_as_pandas(store, validate):
    """Dask's merge has no validate=: hippo checks the keys in the graph and raises pandas' own error."""
    left = pd.DataFrame({"k": [1, 2, 3, 4, 5], "x": range(5)})
    for right in (pd.DataFrame({"k": [1, 1, 4], "y": [5, 6, 7]}), pd.DataFrame({"k": [5, 1, 4], "y": [5, 6, 7]}),
                  pd.DataFrame({"k": [1, 2, 2, 3], "y": [1, 2, 3, 4]}).iloc[::-1]):
        try:
            want = left.merge(right, on="k", validate=validate)
        except pd.errors.MergeError as error:
            with pytest.raises(pd.errors.MergeError, match=str(error).splitlines()[0]):
                compute(tracked("dask", left, "l", 2).hippo.merge(tracked("dask", right, "r", 2), on="k",
                                                                  validate=validate), "dask")
            continue
        got = compute(tracked("dask", left, "l", 2).hippo.merge(tracked("dask", right, "r", 2), on="k",
                                                                validate=validate), "dask")
        same_values(got, want, ordered=False)


def test_tail(store):
    df = table(10)
    out = tracked("pandas", df).hippo.filter(lambda p: p.x != 0).hippo.tail(3).hippo.compute()
    kept = OracleFrame.source(df, "t").filter(lambda p: p.x != 0)
    want = kept._take(range(len(kept.df) - 3, len(kept.df)))
    same_values(out, want.df)
    assert hippo_records(out) == oracle_records(want)
    assert out.hippo.lineage.replay(sources={"t": df}, trust=True).identical
    # Dask's tail: the last rows of the last partition (4 partitions of 2 or 3 rows: fewer than asked)
    d = dd.from_pandas(df, npartitions=4, sort=False)
    last = d.partitions[-1].compute()
    got = compute(d.hippo.source("t").hippo.tail(3), "dask")
    same_values(got, last.tail(3))
    want = OracleFrame.source(df, "t")._take(range(len(df) - len(last.tail(3)), len(df)))
    assert hippo_records(got) == oracle_records(want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("keep", [True, False])
def test_where_and_mask(store, backend, keep):
    df = table()[["x", "y"]]
    t = tracked(backend, df)
    out = compute(t.hippo.where(lambda p: p.x > 0, 0) if keep else t.hippo.mask(lambda p: p.x > 0, 0), backend)
    same_values(out, df.where(df.x > 0, 0, axis=0) if keep else df.mask(df.x > 0, 0, axis=0))
    want = OracleFrame.source(df, "t")
    cond = (df.x > 0).to_numpy()  # of the original values: the oracle's assigns run one after the other
    for c in ("x", "y"):  # each cell: itself and the condition's column
        want = want.assign(c, lambda p, c=c: p[c].where(cond, 0) if keep else p[c].mask(cond, 0), reads=[c, "x"])
    assert hippo_records(out) == oracle_records(want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_with_a_whole_frame_condition(store, backend):
    """A condition over the whole frame sees every original value, never a value already replaced."""
    df = table()[["x", "y"]]
    out = compute(tracked(backend, df).hippo.mask(lambda p: p.sum(axis=1) > 0, -9), backend)
    same_values(out, df.mask(df.sum(axis=1) > 0, -9, axis=0))
    want = OracleFrame.source(df, "t")
    cond = (df.sum(axis=1) > 0).to_numpy()
    for c in ("x", "y"):
        want = want.assign(c, lambda p, c=c: p[c].mask(cond, -9), reads=["x", "y"])
    assert hippo_records(out) == oracle_records(want)


def test_callable_aggregation_replays_and_explains(store):
    df = table(20)
    out = tracked("pandas", df).hippo.groupby("k").agg(width=("x", spread), total=("x", "sum")).hippo.compute()
    lin = out.hippo.lineage
    assert lin.replay(sources={"t": df}, trust=True).identical
    assert lin.replay(sources={"t": df}).identical  # a module's function: re-imported by name, no unpickling
    anonymous = tracked("pandas", df).hippo.groupby("k").agg(w=("x", lambda v: v.max() - v.min())).hippo.compute()
    with pytest.raises(hippo.ReplayError, match="trust=True"):
        anonymous.hippo.lineage.replay(sources={"t": df})
    assert anonymous.hippo.lineage.replay(sources={"t": df}, trust=True).identical
    shares = lin.explain(0, "width", sources={"t": df})
    members = df.reset_index(drop=True).index[df.k.to_numpy() == out.k[0]].tolist()
    assert sorted(shares.row.tolist()) == members and shares.contribution.isna().all()
    assert shares.note.str.contains("not additive").all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_rowwise_check_keeps_object_string_columns(store, backend):
    """Reproducer (found by test_wide_dask drawing `where`): the row-wise check rebuilt columns with
    assign / np.where, and pandas 3 inferred str for object columns of strings, so None became NaN
    and a correct function was refused as reading more columns / not row-wise."""
    df = pd.DataFrame({"g": pd.Series(["a", "a", "a", "a", None], dtype=object), "x": [0, 0, 0, 0, 1],
                       "s": pd.Series(["p"] * 5, dtype="str")})
    out = compute(tracked(backend, df, nparts=1).hippo.where(lambda p: p.x > 0), backend)
    assert out.x.tolist()[-1] == 1 and out.g.isna().all() and out.s.tolist()[-1] == "p"
    want = OracleFrame.source(df, "t")
    cond = (df.x > 0).to_numpy()
    for c in df.columns:
        want = want.assign(c, lambda p, c=c: p[c].where(cond), reads=sorted({c, "x"}))
    assert hippo_records(out) == oracle_records(want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_rows(store, backend):
    df = table()

    def score(row):  # (Dask first runs it on made-up rows, whose k may be missing: hence str())
        return row["x"] * 10 + (row.y if str(row.get("k")) == "a" else 0.0)

    out = compute(tracked(backend, df).hippo.apply(score, axis=1, name="score"), backend)
    same_values(out, df.assign(score=df.apply(score, axis=1)))
    want = OracleFrame.source(df, "t").assign("score", lambda p: p.apply(score, axis=1), reads=["k", "x", "y"])
    assert hippo_records(out) == oracle_records(want)
    # row methods: hippo cannot tell which fields, so every column (more cells, never fewer)
    out = compute(tracked(backend, df[["x", "y"]]).hippo.apply(lambda r: r.sum(), axis=1, name="s"), backend)
    want = OracleFrame.source(df[["x", "y"]], "t").assign("s", lambda p: p.sum(axis=1), reads=["x", "y"])
    assert hippo_records(out) == oracle_records(want)


def test_apply_refuses_a_read_no_probed_row_showed(store):
    """A branch that reads another field only on rows after the first few is refused, never under-reported."""
    df = pd.DataFrame({"flag": [False] * 70 + [True], "a": range(71), "b": range(71)})
    with pytest.raises(LineageError, match=r"reads \['b'\], outside its reads \['a', 'flag'\]"):
        tracked("pandas", df).hippo.apply(lambda r: r.b if r.flag else r.a, axis=1, name="c")
    with pytest.raises(LineageError, match="axis=1"):
        tracked("pandas", df).hippo.apply(lambda c: c.max())
    with pytest.raises(LineageError, match="name the new column"):
        tracked("pandas", df).hippo.apply(lambda r: r.a, axis=1)


def test_assign_a_series_that_is_a_column(store):
    """assign(c=df.y): the frame's own column (its memory shows it) is a copy with the column's lineage;
    a Series computed outside hippo (df.y * 2, a copy, another frame's column) is refused."""
    df = table()
    t = tracked("pandas", df).hippo.filter(lambda p: p.x > -3)
    out = t.hippo.assign(c=t.y, d=t["k"]).hippo.compute()
    kept = df.reset_index(drop=True)
    kept = kept[kept.x > -3].reset_index(drop=True)
    same_values(out, kept.assign(c=kept.y, d=kept.k))
    want = (OracleFrame.source(df, "t").filter(lambda p: p.x > -3).assign("c", lambda p: p.y, ["y"])
            .assign("d", lambda p: p.k, ["k"]))
    assert hippo_records(out) == oracle_records(want)
    twin_a, twin_b = tracked("pandas", df, "a"), tracked("pandas", df, "b")  # one frame's memory, two sources
    assert twin_a.hippo.assign(c=twin_a.y).hippo.compute().hippo.lineage.backward(rows=[0], columns=["c"]).keys() == {"a"}
    with pytest.raises(LineageError, match="callable"):
        twin_a.hippo.assign(c=twin_b.y)
    # pandas' copy-on-write lets two columns share memory (x.fillna(z) without holes is x): which one is
    # meant cannot be told, and their lineage differs
    shared = t.hippo.assign(z=lambda p: p.x.fillna(p.y))
    with pytest.raises(LineageError, match="shares its memory"):
        shared.hippo.assign(c=shared.z)
    for outside in (t.y * 2, t.y.copy(), tracked("pandas", df, "u").y):
        with pytest.raises(LineageError, match="callable"):
            t.hippo.assign(c=outside)
    # Dask: the column's own expression
    d = tracked("dask", df, "d").hippo.filter(lambda p: p.x > -3)
    got = compute(d.hippo.assign(c=d.y), "dask")
    same_values(got, kept.assign(c=kept.y), ordered=False)
    want = OracleFrame.source(df, "d").filter(lambda p: p.x > -3).assign("c", lambda p: p.y, ["y"])
    assert hippo_records(got) == oracle_records(want)
    for outside in (d.y * 2, tracked("dask", df, "e").y):
        with pytest.raises(LineageError, match="callable"):
            d.hippo.assign(c=outside)


@pytest.mark.parametrize("backend", BACKENDS)
def test_groupby_transform_spellings(store, backend):
    """df.assign(tot=df.groupby(k)[x].transform(f)) and df.groupby(k).transform(f), as pandas computes them:
    a transform reads the frame as it was before the assign, callables run in order after it."""
    df = table()
    df.loc[df.index[3], "k"] = None  # a row without a group: NaN, traced to nothing
    plain = df.reset_index(drop=True)
    t = tracked(backend, df)
    g = t.hippo.groupby("k")
    out = compute(t.hippo.assign(tot=g["x"].transform("sum"), x=lambda p: p.x * 10, n=g["y"].transform("size"),
                                 w=lambda p: p.shape[1]), backend)
    pg = plain.groupby("k")
    same_values(out, plain.assign(tot=pg["x"].transform("sum"), x=lambda p: p.x * 10, n=pg["y"].transform("size"),
                                  w=lambda p: p.shape[1]), ordered=backend == "pandas")
    want = (OracleFrame.source(df, "t").groupby_transform(["k"], "tot", "x", "sum")
            .assign("x", lambda p: p.x * 10, ["x"]).groupby_transform(["k"], "n", "y", "size"))
    want = want.assign("w", lambda p: np.full(len(p), p.shape[1]), [])  # a count of columns: no cell
    assert hippo_records(out) == oracle_records(want)
    # pandas computes a Series argument before assigning anything: one read after this call replaced
    # its column would differ, so it is refused (as is a copy of a column replaced earlier in the call)
    with pytest.raises(LineageError, match=r"before this assign replaced it.*two calls"):
        t.hippo.assign(x=lambda p: p.x * 10, tot=g["x"].transform("sum"))
    if backend == "pandas":  # a column as a Series: pandas only
        with pytest.raises(LineageError, match="before this assign replaced it"):
            t.hippo.assign(x=lambda p: p.y, c=t.x)
    whole = compute(g[["x", "y"]].transform("max"), backend)
    same_values(whole, pg[["x", "y"]].transform("max"), ordered=backend == "pandas")
    want = (OracleFrame.source(df, "t").groupby_transform(["k"], "x_max", "x", "max")
            .groupby_transform(["k"], "y_max", "y", "max").select(["x_max", "y_max"])
            .rename({"x_max": "x", "y_max": "y"}))
    assert hippo_records(whole) == oracle_records(want)


def test_replay_rebuilds_hippos_own_callables_from_the_stored_copy(store):
    """query / clip / assign(c=df.x) run hippo's own callable objects: replay once imported their class and
    called it in their place (a silently wrong row); now they come from the stored copy (trust=True)."""
    raw = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, 2, 3]})
    t = tracked("pandas", raw, "d")
    out = t.hippo.assign(c=t.x).hippo.query("x > 1").hippo.clip(lower=0, upper=2).hippo.compute()
    with pytest.raises(hippo.ReplayError, match="trust=True"):
        out.hippo.lineage.replay(rows=[0], sources={"d": raw})
    one = out.hippo.lineage.replay(rows=[0], sources={"d": raw}, trust=True)
    pd.testing.assert_frame_equal(one.reset_index(drop=True), out.iloc[[0]].reset_index(drop=True), check_dtype=False)
    assert out.hippo.lineage.replay(sources={"d": raw}, trust=True).identical
