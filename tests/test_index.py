"""The index pandas users set (issue 10): ``set_index``, ``reset_index``, ``groupby(as_index=True)``,
``join``, ``sort_index``.

Index columns stay columns of the lineage, so each index cell traces exactly where the column's
cell did. Values are checked against pandas' own ``set_index`` / ``join`` / ``groupby``; lineage
against the oracle (tests/oracle.py) for the same step written with the core operations (a join
is the merge of the key columns with the other frame's index column, which pandas does not repeat).
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.errors import ColumnError, LineageError, StaleResultError

from oracle import OracleFrame, hippo_records, oracle_records
from test_pandas_api import compute, table, tracked  # the same labelled table and helpers

BACKENDS = ["pandas", "dask"]


def people() -> pd.DataFrame:
    return pd.DataFrame({"k": ["a", "b", "d"], "age": [30, 40, 50], "y": [0.5, 1.5, 2.5]})


def same_frame(got: pd.DataFrame, want: pd.DataFrame, ordered: bool) -> None:
    """Equal values, index included; Dask row order is its own (shuffles), so compared sorted there."""
    assert list(got.index.names) == list(want.index.names)
    named = any(n is not None for n in want.index.names)
    got, want = got.reset_index(drop=not named), want.reset_index(drop=not named)
    if not ordered:
        got = got.sort_values(list(got.columns), kind="stable").reset_index(drop=True)
        want = want.sort_values(list(want.columns), kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=False, rtol=1e-9)


def records(result: pd.DataFrame):
    """The lineage records of every cell, index cells included (reset_index keeps a result's lineage)."""
    return hippo_records(result.reset_index() if any(result.index.names) else result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_index_keeps_the_lineage_of_its_columns(store, backend):
    df = table()
    out = compute(tracked(backend, df).hippo.set_index("k"), backend)
    plain = df.reset_index(drop=True)
    want = plain.set_index("k")  # in row order on Dask too (Dask's own set_index sorts)
    same_frame(out, want, ordered=True)
    assert out.index.name == "k" and list(out.columns) == ["j", "x", "y"]
    lin = out.hippo.lineage
    assert lin.index == ["k"] and hippo.open(store, lin.run_id).index == ["k"]
    # an index cell traces to its source cell, like any column's
    assert records(out) == oracle_records(OracleFrame.source(df, "t"))
    first = lin.backward(rows=[0], columns=["k"])["t"]
    assert first.cells.column.tolist() == ["k"] and plain.k[first.rows[0]] == out.index[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("drop", [False, True])
def test_reset_index_puts_the_columns_back_first(store, backend, drop):
    df = table()
    t = tracked(backend, df).hippo.filter(lambda p: p.x > -3).hippo.set_index("k").hippo.reset_index(drop=drop)
    out = compute(t, backend)
    kept = df.reset_index(drop=True)
    kept = kept[kept.x > -3]
    want = kept.set_index("k").reset_index(drop=drop)
    assert list(out.columns) == list(want.columns)
    assert isinstance(out.index, pd.RangeIndex)
    same_frame(out, want.reset_index(drop=True), ordered=backend == "pandas")
    oracle = OracleFrame.source(df, "t").filter(lambda p: p.x > -3)
    if drop:
        oracle = oracle.drop(["k"])
    assert hippo_records(out) == oracle_records(oracle)


def test_multi_level_index_and_reset_of_one_level(store):
    df = table()
    t = tracked("pandas", df).hippo.set_index(["k", "j"])
    out = t.hippo.compute()
    same_frame(out, df.reset_index(drop=True).set_index(["k", "j"]), ordered=True)
    assert records(out) == oracle_records(OracleFrame.source(df, "t"))
    half = t.hippo.reset_index(level="j").hippo.compute()
    want = df.reset_index(drop=True).set_index(["k", "j"]).reset_index(level="j")
    assert list(half.columns) == list(want.columns) and half.index.name == "k"
    same_frame(half, want, ordered=True)
    assert records(half) == oracle_records(OracleFrame.source(df, "t"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_groupby_as_index(store, backend):
    df = table()
    plain = df.reset_index(drop=True)
    g = tracked(backend, df).hippo.groupby("k", as_index=True)
    out = compute(g.agg(total=("x", "sum"), top=("y", "max")), backend)
    same_frame(out, plain.groupby("k").agg(total=("x", "sum"), top=("y", "max")), ordered=backend == "pandas")
    want = OracleFrame.source(df, "t").groupby_agg(["k"], {"total": ("x", "sum"), "top": ("y", "max")})
    assert records(out) == oracle_records(want)
    sizes = compute(tracked(backend, df, "u").hippo.groupby("k", as_index=True).size(), backend)
    expected = plain.groupby("k").size()
    assert sizes["size"].sort_index().to_dict() == expected.to_dict()  # pandas gives a Series named by its keys
    # the pandas spelling that follows it
    back = compute(tracked(backend, df, "v").hippo.groupby("k", as_index=True).sum().hippo.reset_index(), backend)
    same_frame(back, plain.groupby("k").sum().reset_index(), ordered=backend == "pandas")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["left", "inner"])
def test_join_on_a_column_against_the_index(store, backend, how):
    left, right = table(), people().rename(columns={"k": "pid"})
    t = tracked(backend, left, "l").hippo.join(tracked(backend, right, "r", 2).hippo.set_index("pid"), on="k",
                                               how=how, rsuffix="_r")
    out = compute(t, backend)
    plain = left.reset_index(drop=True)
    want_values = plain.join(right.set_index("pid"), on="k", how=how, rsuffix="_r")
    same_frame(out, want_values.reset_index(drop=True), ordered=backend == "pandas")
    # the join is a merge of k with the index column pid, which pandas does not repeat
    want = OracleFrame.source(left, "l").merge(OracleFrame.source(right, "r"), how=how, left_on=["k"],
                                               right_on=["pid"], suffixes=("", "_r")).drop(["pid"])
    assert hippo_records(out) == oracle_records(want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["left", "inner", "right", "outer"])
def test_join_index_with_index(store, backend, how):
    left, right = table(), people()
    t = tracked(backend, left, "l").hippo.set_index("k").hippo.join(tracked(backend, right, "r", 2).hippo.set_index("k"),
                                                                     how=how, lsuffix="_l")
    out = compute(t, backend)
    want_values = left.reset_index(drop=True).set_index("k").join(right.set_index("k"), how=how, lsuffix="_l")
    assert out.index.name == "k"
    same_frame(out, want_values, ordered=backend == "pandas" and how != "outer")
    want = OracleFrame.source(left, "l").merge(OracleFrame.source(right, "r"), how=how, on=["k"], suffixes=("_l", ""))
    assert records(out) == oracle_records(want)


def test_index_steps_that_keep_it(store):
    df = table()
    t = tracked("pandas", df).hippo.set_index("k")
    chained = (t.hippo.astype("float64").hippo.fillna(0).hippo.dropna().hippo.query("k != 'b' and x > -4")
               .hippo.sort_index().hippo.select(["x", "y"]).hippo.head(6))
    out = chained.hippo.compute()
    plain = df.reset_index(drop=True).set_index("k")
    want = plain.astype("float64").fillna(0).dropna().query("k != 'b' and x > -4").sort_index(kind="stable")[["x", "y"]].head(6)
    same_frame(out, want, ordered=True)
    oracle = (OracleFrame.source(df, "t").filter(lambda p: (p.k != "b") & (p.x > -4)).sort_values(["k"])
              .select(["k", "x", "y"]).head(6))
    assert records(out) == oracle_records(oracle.with_values(oracle.df.astype({"x": "float64", "y": "float64"})))
    # a boolean Series of the indexed frame selects by position
    mask_out = t.hippo.loc[t.x > 0].hippo.compute()
    same_frame(mask_out, plain[plain.x > 0], ordered=True)
    # a result that was re-sorted since is refused, not answered for other rows
    with pytest.raises(StaleResultError):
        out.sort_index(ascending=False).hippo.lineage


def test_concat_keeps_a_shared_index(store):
    a, b = table(4, 1), table(3, 2)
    ta = tracked("pandas", a, "a").hippo.set_index("k")
    tb = tracked("pandas", b, "b").hippo.set_index("k")
    out = hippo.concat([ta, tb]).hippo.compute()
    same_frame(out, pd.concat([a.reset_index(drop=True).set_index("k"), b.reset_index(drop=True).set_index("k")]),
               ordered=True)
    assert records(out) == oracle_records(OracleFrame.concat([OracleFrame.source(a, "a"), OracleFrame.source(b, "b")]))
    flat = hippo.concat([ta, tb], ignore_index=True).hippo.compute()
    assert list(flat.columns) == ["j", "x", "y"] and isinstance(flat.index, pd.RangeIndex)
    with pytest.raises(LineageError, match="different indexes"):
        hippo.concat([ta, tracked("pandas", b, "c")])


def test_indexed_results_answer_everything_else(store):
    df = table()
    out = tracked("pandas", df).hippo.set_index("k").hippo.compute()
    lin = out.hippo.lineage
    trace = lin.backward(rows=[2, 3], columns=["k", "x"])
    src = trace["t"].frame
    assert src.index.tolist() == [df.index[r] for r in trace["t"].rows]  # the source rows, with their labels
    without = lin.without("t", rows=[0], sources={"t": df})
    want = df.reset_index(drop=True).iloc[1:].set_index("k")
    same_frame(without.result, want, ordered=True)  # indexed as compute() returned the run's result


def test_replay_of_reset_index_and_join(store):
    left, right = table(), people()
    t = (tracked("pandas", left, "l").hippo.set_index("k").hippo.join(tracked("pandas", right, "r").hippo.set_index("k"),
                                                                      lsuffix="_l")
         .hippo.reset_index())
    out = t.hippo.compute()
    replayed = out.hippo.lineage.replay(sources={"l": left, "r": right})
    pd.testing.assert_frame_equal(replayed.result.reset_index(drop=True), out.reset_index(drop=True), check_dtype=False)
    indexed = tracked("pandas", left, "l").hippo.set_index("k").hippo.compute()
    again = indexed.hippo.lineage.replay(sources={"l": left})
    assert again.identical
    pd.testing.assert_frame_equal(again.result, indexed, check_dtype=False)  # indexed as compute() returned it
    assert hippo.open(store, again.run_id).index == ["k"]


def test_index_refusals_name_the_spelling(store):
    df = table()
    t = tracked("pandas", df)
    indexed = t.hippo.set_index("k")
    with pytest.raises(LineageError, match=r"assign after set_index.*reset_index\(\)"):
        indexed.hippo.assign(z=lambda p: p.x)
    with pytest.raises(LineageError, match="reset_index"):
        indexed.hippo.merge(t, on="k")
    with pytest.raises(LineageError, match=r"join\(other, on=\.\.\.\)"):
        t.hippo.merge(indexed, on="k")
    with pytest.raises(LineageError, match=r"not tracked.*drop=True"):
        t.hippo.reset_index()
    assert t.hippo.reset_index(drop=True).hippo.compute().equals(df.reset_index(drop=True))
    with pytest.raises(LineageError, match="has no index set"):
        t.hippo.join(t)
    with pytest.raises(LineageError, match="drop=False"):
        t.hippo.set_index("k", drop=False)
    with pytest.raises(LineageError, match="column names"):
        t.hippo.set_index(df.index)
    with pytest.raises(ColumnError, match="is the index"):
        indexed.hippo.select(["k", "x"])
    with pytest.raises(ColumnError, match="is the index"):
        indexed.hippo.drop("k")
    with pytest.raises(ColumnError, match="no suffix"):
        indexed.hippo.join(tracked("pandas", people(), "p").hippo.set_index("k"))
    with pytest.raises(LineageError, match="'index'"):
        indexed.hippo.query("index > 2")
    with pytest.raises(ColumnError, match="not in the index"):
        indexed.hippo.reset_index(level="x")
    d = tracked("dask", df, "d")
    with pytest.raises(LineageError, match="MultiIndex"):
        d.hippo.set_index(["k", "j"])


def test_a_dask_mask_of_an_indexed_frame(store):
    """On Dask, a boolean Series of a frame with an index set carries that index: it is checked against it."""
    df = table()
    t = tracked("dask", df).hippo.set_index("k")
    out = compute(t.hippo.loc[t.x > 0, ["y"]], "dask")
    plain = df.reset_index(drop=True)
    same_frame(out, plain.set_index("k").loc[lambda f: f.x > 0, ["y"]], ordered=True)
    want = OracleFrame.source(df, "t").filter(lambda p: p.x > 0).select(["k", "y"])
    assert records(out) == oracle_records(want)


def test_join_of_two_multi_indexes_matches_levels_by_name(store):
    """pandas matches two MultiIndexes by level name: the same levels in another order join by name,
    no common names are refused (hippo matched them by position)."""
    left = pd.DataFrame({"a": [1, 1, 2], "b": [5, 6, 5], "v": [10, 20, 30]})
    right = pd.DataFrame({"b": [6, 5, 5], "a": [1, 1, 2], "w": [100, 200, 300]})
    t = tracked("pandas", left, "l").hippo.set_index(["a", "b"])
    out = t.hippo.join(tracked("pandas", right, "r").hippo.set_index(["b", "a"])).hippo.compute()
    same_frame(out, left.set_index(["a", "b"]).join(right.set_index(["b", "a"])), ordered=True)
    want = OracleFrame.source(left, "l").merge(OracleFrame.source(right, "r"), how="left", on=["a", "b"])
    assert records(out) == oracle_records(want)
    other = pd.DataFrame({"c": [1], "d": [5], "w": [1]})
    with pytest.raises(LineageError, match="no overlapping index names"):
        t.hippo.join(tracked("pandas", other, "o").hippo.set_index(["c", "d"]))


def test_reset_index_levels_in_index_order_and_index_subsets_refused(store):
    df = table()
    t = tracked("pandas", df).hippo.set_index(["k", "j"])
    out = t.hippo.reset_index(level=["j", "k"]).hippo.compute()
    assert list(out.columns) == list(df.reset_index(drop=True).set_index(["k", "j"]).reset_index(level=["j", "k"]).columns)
    for step in (lambda f: f.hippo.dropna(subset=["k"]), lambda f: f.hippo.drop_duplicates(subset=["j"]),
                 lambda f: f.hippo.nlargest(2, "k")):
        with pytest.raises(ColumnError, match="is the index"):  # pandas: KeyError
            step(t)
