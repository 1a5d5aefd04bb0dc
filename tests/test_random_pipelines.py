"""Random pipelines of random operations over random frames, against the oracle.

Each example builds two sources, draws a chain of operations, runs it through
hippo_dask (pandas, or Dask with several partitions on the sync scheduler)
and through :mod:`oracle`, then compares, for every result row, its values,
its row lineage and the cell lineage of every column; and forward traces of
sampled source cells.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hippo_dask as hippo
from oracle import OracleFrame, check_forward, hippo_records, oracle_records


@st.composite
def source_frames(draw, min_rows: int = 0):
    n = draw(st.integers(min_rows, 10))
    a = pd.DataFrame(
        {
            "k": draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
            "x": draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)),
            "y": draw(st.lists(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 2))), min_size=n, max_size=n)),
            "z": draw(st.lists(st.sampled_from(["p", "q", "r"]), min_size=n, max_size=n)),
        }
    ).astype({"k": "int64", "x": "int64", "y": "float64"})
    m = draw(st.integers(0, 6))
    b = pd.DataFrame(
        {
            "k": draw(st.lists(st.integers(0, 4), min_size=m, max_size=m)),
            "w": draw(st.lists(st.integers(0, 99), min_size=m, max_size=m)),
        }
    ).astype({"k": "int64", "w": "int64"})
    return a, b


def _bump_x(p: pd.DataFrame) -> pd.DataFrame:
    p = p.copy()
    p["x"] = p["x"] + 1
    return p


STEPS = ["filter", "assign", "map", "dropna", "fillna", "sort", "dedupe", "group", "group_merge", "merge_b",
         "concat_self", "select", "rename", "explode", "replace"]


def apply_step(step: str, how: str, t, o: OracleFrame, ctx):
    """Apply one named step to the tracked frame ``t`` and the oracle ``o`` alike."""
    cols = list(o.df.columns)
    if step == "filter" and "x" in cols:
        pred = lambda p: p.x > 3  # noqa: E731
        return t.hippo.filter(pred), o.filter(pred)
    if step == "assign" and {"x", "y"} <= set(cols):
        fn = lambda p: p.x * 2 + p.y.fillna(0)  # noqa: E731
        return t.hippo.assign(n=fn), o.assign("n", fn, ["x", "y"])
    if step == "map" and "x" in cols:
        return t.hippo.map(_bump_x), o.map(_bump_x, reads=["x"], writes=["x"])
    if step == "dropna" and "y" in cols:
        return t.hippo.dropna(subset=["y"]), o.dropna(["y"])
    if step == "fillna" and "y" in cols:
        return t.hippo.fillna({"y": 0.5}), o.with_values(o.df.fillna({"y": 0.5}))
    if step == "replace" and "z" in cols:
        return t.hippo.replace({"z": {"p": "P"}}), o.with_values(o.df.replace({"z": {"p": "P"}}))
    if step == "sort" and "x" in cols:
        return t.hippo.sort_values("x"), o.sort_values("x")
    if step == "dedupe" and "k" in cols and ctx["row_order_defined"]:
        return t.hippo.drop_duplicates(subset=["k"]), o.drop_duplicates(["k"])
    if step in ("group", "group_merge") and {"k", "x"} <= set(cols) and "s" not in cols:
        named = {"s": ("x", "sum"), "c": ("x", "size")}
        if "y" in cols:
            named["m"] = ("y", "max")
        tg, og = t.hippo.groupby("k").agg(**named), o.groupby_agg(["k"], named)
        if step == "group":
            return tg, og
        return t.hippo.merge(tg, on="k", how=how), o.merge(og, how=how, on=["k"])
    if step == "merge_b" and "k" in cols and "w" not in cols:
        tb, ob = ctx["b"]
        return t.hippo.merge(tb, on="k", how=how), o.merge(ob, how=how, on=["k"])
    if step == "concat_self" and "x" in cols:
        pred = lambda p: p.x % 2 == 0  # noqa: E731
        return hippo.concat([t, t.hippo.filter(pred)], ignore_index=True), OracleFrame.concat([o, o.filter(pred)])
    if step == "select" and len(cols) > 1:
        keep = cols[: max(1, len(cols) - 1)]
        return t.hippo.select(keep), o.select(keep)
    if step == "rename" and "z" in cols and "zz" not in cols:
        return t.hippo.rename({"z": "zz"}), o.rename({"z": "zz"})
    if step == "explode" and "x" in cols and "l" not in cols:
        fn = lambda p: p.x.map(lambda v: list(range(int(v) % 3)) if v == v else [])  # noqa: E731
        t2, o2 = t.hippo.assign(l=fn), o.assign("l", fn, ["x"])
        return t2.hippo.explode("l"), o2.explode("l")
    return t, o


# Steps after which Dask's row order differs from pandas' (shuffles), so that which
# duplicate drop_duplicates keeps is not the oracle's: a different, equally right answer.
REORDERING = {"group", "group_merge", "merge_b", "concat_self", "sort"}


def run_pipeline(a, b, steps, to_frame, dask_order: bool = False):
    ta = to_frame(a).hippo.source("a")
    tb = to_frame(b).hippo.source("b")
    t, o = ta, OracleFrame.source(a, "a")
    ctx = {"b": (tb, OracleFrame.source(b, "b")), "row_order_defined": True}
    for step, how in steps:
        t, o = apply_step(step, how, t, o, ctx)
        if dask_order and step in REORDERING:
            ctx["row_order_defined"] = False
    return t, o


step_lists = st.lists(st.tuples(st.sampled_from(STEPS), st.sampled_from(["inner", "left", "outer", "right"])), min_size=1, max_size=5)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _check(t, o, a, b, compute_kwargs):
    result = t.hippo.compute(**compute_kwargs)
    assert sorted(result.columns) == sorted(o.df.columns)
    assert len(result) == len(o.df)
    assert hippo_records(result) == oracle_records(o)
    check_forward(result, o, {"a": a, "b": b}, samples=3)


@settings(max_examples=int(os.environ.get("HIPPO_EXAMPLES", 100)), **SETTINGS)
@given(frames=source_frames(), steps=step_lists)
def test_random_pipelines_pandas(store, frames, steps):
    a, b = frames
    t, o = run_pipeline(a, b, steps, lambda f: f)
    _check(t, o, a, b, {})


@settings(max_examples=max(1, int(os.environ.get("HIPPO_EXAMPLES", 100)) // 2), **SETTINGS)
@given(frames=source_frames(), steps=step_lists, nparts=st.integers(1, 3))
def test_random_pipelines_dask(store, frames, steps, nparts):
    import dask.dataframe as dd

    a, b = frames
    t, o = run_pipeline(a, b, steps, lambda f: dd.from_pandas(f, npartitions=nparts, sort=False), dask_order=True)
    _check(t, o, a, b, {"scheduler": "sync"})


def test_oracle_disagrees_with_wrong_lineage(store):
    """The comparison is not vacuous: a wrong oracle is caught."""
    a = pd.DataFrame({"k": [1, 1, 2], "x": [1, 2, 3]})
    t = a.hippo.source("a").hippo.groupby("k").agg(s=("x", "sum"))
    o = OracleFrame.source(a, "a").groupby_agg(["k"], {"s": ("x", "sum")})
    o.cells["s"][0] = frozenset({("a", 0, "x")})  # drop a member
    result = t.hippo.compute()
    with pytest.raises(AssertionError):
        assert hippo_records(result) == oracle_records(o)


AGGREGATIONS = ["sum", "mean", "min", "max", "count", "size", "nunique", "first", "last", "std", "var", "median", "prod"]


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_every_aggregation_against_the_oracle(store, backend):
    import dask.dataframe as dd

    rng = np.random.default_rng(7)
    a = pd.DataFrame({"k": rng.integers(0, 4, 30), "j": rng.choice(["u", "v"], 30), "x": rng.normal(size=30).round(3)})
    a.loc[[3, 11], "x"] = np.nan
    named = {f"{f}_x": ("x", f) for f in AGGREGATIONS}
    source = a if backend == "pandas" else dd.from_pandas(a, npartitions=3, sort=False)
    t = source.hippo.source("a").hippo.groupby(["k", "j"]).agg(**named)
    result = t.hippo.compute(**({} if backend == "pandas" else {"scheduler": "sync"}))
    expected = OracleFrame.source(a, "a").groupby_agg(["k", "j"], named)
    assert hippo_records(result) == oracle_records(expected)
    check_forward(result, expected, {"a": a})
