"""The Rust trace engine (``hippo_dask._core`` trace functions and ``TraceEngine``) against
numpy oracles, queries that switch from scans to the group index mid-way, and the lazy
package import: the query path imports no Dask, and ``.hippo`` works in every import order."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hippo_dask as hippo
from hippo_dask import _core
from hippo_dask.errors import LineageError, QueryError
from hippo_dask.lineage import SlotRows

MISSING = -1

# ------------------------------------------------------------------ oracles


def as_set(values: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in values}


def fortran(rows: list[list[int]], width: int) -> np.ndarray:
    return np.asfortranarray(np.array(rows, dtype=np.int64).reshape(len(rows), width))


slot_value = st.one_of(st.integers(0, 30), st.just(MISSING), st.sampled_from([1 << 62, (5 << 32) | 3, 2**63 - 1]))


@st.composite
def tables(draw, max_width=3):
    width = draw(st.integers(1, max_width))
    rows = draw(st.lists(st.lists(slot_value, min_size=width, max_size=width), max_size=60))
    return fortran(rows, width)


@settings(max_examples=150, deadline=None)
@given(values=tables(), order=st.sampled_from(["F", "C"]))
def test_unique_rows_is_the_distinct_rows(values, order):
    values = np.asarray(values, order=order)
    out = _core.unique_rows(values)
    assert out.flags.f_contiguous and out.dtype == np.int64
    assert len(out) == len(as_set(out)) == len(as_set(values))
    assert as_set(out) == as_set(values)
    if values.shape[1] == 1:
        column = out[:, 0].tolist()
        assert column == sorted(set(column))


@settings(max_examples=150, deadline=None)
@given(values=tables(), picks=st.lists(st.integers(0, 10**6), max_size=30), tag=st.integers(0, 3))
def test_select_unique_is_take_filter_project_dedupe(values, picks, tag):
    n, width = values.shape
    project = list(range(width))[::-1]
    rows = np.array([p % n for p in picks] if n else [], dtype=np.int64)
    got = _core.select_unique(values, project, rows=rows)
    assert as_set(got) == as_set(values[rows][:, project]) and len(got) == len(as_set(got))
    side = project[: max(1, width // 2)]
    present = values[(values[:, side] != MISSING).any(axis=1)][:, side]
    assert as_set(_core.select_unique(values, side, present=True)) == as_set(present)
    tagged = values[values[:, width - 1] == tag][:, [0]]
    assert as_set(_core.select_unique(values, [0], equals=(width - 1, tag))) == as_set(tagged)
    assert as_set(_core.select_unique(values, project)) == as_set(values[:, project])


def test_select_unique_refuses_bad_arguments():
    values = fortran([[1, 2], [3, 4]], 2)
    with pytest.raises(QueryError):
        _core.select_unique(values, [0], rows=np.array([2]))
    with pytest.raises(LineageError):
        _core.select_unique(values, [2])
    with pytest.raises(LineageError):
        _core.select_unique(values, [0], rows=np.array([0]), present=True)


@settings(max_examples=150, deadline=None)
@given(values=tables(), cut=st.integers(0, 100))
def test_union_rows_of_two_sets(values, cut):
    distinct = _core.unique_rows(values)
    cut = cut % (len(distinct) + 1)
    a, b = distinct[:cut], distinct[cut // 2:]
    for x, y in [(a, b), (b, a)]:
        out = _core.union_rows(np.asfortranarray(x), np.asfortranarray(y))
        assert as_set(out) == as_set(distinct) and len(out) == len(distinct)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.integers(-3, 300), st.integers(-2**63, 2**63 - 1)), max_size=200))
def test_sorted_id_sets(values):
    arr = np.array(values, dtype=np.int64)
    expected = np.unique(arr)
    assert np.array_equal(_core.union_sorted([arr]), expected)
    half = len(arr) // 2
    assert np.array_equal(_core.union_sorted([np.unique(arr[:half]), np.unique(arr[half:])]), expected)
    assert np.array_equal(_core.column_ids(arr[:, None], 0), expected[expected != MISSING])


@settings(max_examples=100, deadline=None)
@given(fragments=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 20)), min_size=1, max_size=3),
       picks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30)), max_size=6),
       before=st.one_of(st.none(), st.integers(0, 5)), after=st.one_of(st.none(), st.integers(0, 5)))
def test_window_ids_follow_the_formula(fragments, picks, before, after):
    ends: dict[int, int] = {}
    for high, n in fragments:
        ends[high] = max(ends.get(high, -1), n - 1)
    ids = np.unique(np.array([((fragments[f][0] if f < len(fragments) else 9) << 32) | p for f, p in picks],
                             dtype=np.int64))
    expected = set()
    for i in ids.tolist():
        high, pos = i >> 32, i & 0xFFFFFFFF
        end = ends.get(high, -1)
        lo = 0 if before is None else max(pos - before, 0)
        hi = end if after is None else min(pos + after, max(end, pos))
        expected.update((high << 32) | p for p in range(lo, hi + 1))
    got = _core.window_ids(ids, before, after, sorted(ends.items()))
    assert got.tolist() == sorted(expected)


def test_engine_tables_against_numpy():
    rng = np.random.default_rng(3)
    n = 5000
    members = np.asfortranarray(np.stack([rng.permutation(n), rng.integers(0, 50, n)], axis=1).astype(np.int64))
    gids = rng.integers(0, 300, n).astype(np.int64) * 2
    engine = _core.TraceEngine()
    engine.add_table("g", members, gids)
    engine.add_table("r", members)
    assert engine.has_table("g") and not engine.has_table("x")
    for round_ in range(8):  # scans first, then the index
        wanted = np.unique(rng.choice(gids, 1 + round_ * 3))
        got = engine.members_of("g", wanted, [1, 0])
        assert as_set(got) == as_set(members[np.isin(gids, wanted)][:, [1, 0]])
        rows = rng.integers(0, n, 40)
        assert as_set(engine.take_unique("r", rows)) == as_set(members[rows])
    assert engine.indexed("g")
    ids = np.unique(rng.integers(0, n, 300))
    atoms = [(0, ids, []), (1, np.array([7], dtype=np.int64), [(0, int(ids[0]))]), (1, None, [(1, 3)])]
    masks = [np.isin(members[:, 0], ids),
             (members[:, 1] == 7) & (members[:, 0] == ids[0]),
             (members[:, 1] != MISSING) & (members[:, 1] == 3)]
    assert np.array_equal(engine.matching_groups("g", atoms[:1]), np.unique(gids[masks[0]]))
    sets = engine.evaluate_sets("r", atoms, [[0], [1, 2], [0, 1, 2], []])
    for got, mask in zip(sets, [masks[0], masks[1] | masks[2], masks[0] | masks[1] | masks[2], np.zeros(n, bool)]):
        assert np.array_equal(got, np.flatnonzero(mask))
    with pytest.raises(LineageError):
        engine.members_of("g", np.array([4, 2]), [0])  # not sorted
    with pytest.raises(LineageError):
        engine.members_of("r", np.array([2]), [0])  # no group ids
    with pytest.raises(LineageError):
        engine.add_table("bad", members, gids[1:])


def test_slot_rows_keep_their_api():
    t = SlotRows(("a", "b"), np.array([[1, 2], [1, 2], [3, -1]], dtype=np.int64))  # C order is accepted
    assert as_set(t.unique().values) == {(1, 2), (3, -1)}
    assert t.select({"b": "x"}, present=True).values[:, 0].tolist() == [2]
    assert t.ids("b").tolist() == [2]
    other = SlotRows(("b", "a"), np.array([[2, 1], [9, 9]], dtype=np.int64))
    assert as_set(t.unique().union(other).values) == {(1, 2), (3, -1), (9, 9)}


# ------------------------------------------------------------------ through a run


def test_group_queries_agree_before_and_after_the_index(tmp_path):
    hippo.set_store(str(tmp_path / "store"))
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"k": rng.integers(0, 25, n), "x": rng.normal(size=n)})
    out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    lin = hippo.open(str(tmp_path / "store"), out.hippo.lineage.run_id)
    keys = out["k"].to_numpy()
    for round_ in range(10):
        rows = rng.choice(len(out), 1 + round_ % 4, replace=False)
        got = lin.backward(rows=rows, columns=["total"])["df"]
        expected = np.flatnonzero(np.isin(df["k"].to_numpy(), keys[rows]))
        assert np.array_equal(got.rows, expected)
        hits = lin.forward("df", rows=expected[:3], columns=["x"])
        assert np.array_equal(hits.rows, np.flatnonzero(np.isin(keys, df["k"].to_numpy()[expected[:3]])))
    assert lin._engine().indexed(next(n.id for n in lin._order if n.op == "groupby"))


# ------------------------------------------------------------------ imports


def run_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("query_path") / "store"
    code = f"""
        import json, pandas as pd, hippo_dask as hippo
        hippo.set_store({str(store)!r})
        a = pd.DataFrame({{"k": [1, 2, 1, 3], "x": [1.0, 2.0, 3.0, 4.0]}}).hippo.source("a")
        b = pd.DataFrame({{"k": [1, 2, 3], "y": [10, 20, 30]}}).hippo.source("b")
        g = a.hippo.groupby("k").agg(total=("x", "sum"))
        out = g.hippo.merge(b, on="k").hippo.compute()
        print(json.dumps({{"run": out.hippo.lineage.run_id}}))
    """
    return str(store), run_python(code)["run"]


def test_the_query_path_imports_no_dask(small_run):
    store, run = small_run
    got = run_python(f"""
        import json, sys
        import hippo_dask as hippo
        after_import = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        lin = hippo.open({store!r}, {run!r})
        back = lin.backward(rows=[0])
        fwd = lin.forward("a", rows=[0, 2])
        cells = len(back["a"].cells)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        print(json.dumps({{"import": after_import, "query": loaded, "rows": back["a"].rows.tolist(),
                          "fwd": fwd.rows.tolist(), "cells": cells}}))
    """)
    assert got["import"] == [] and got["query"] == []
    assert got["rows"] == [0, 2] and got["fwd"] == [0] and got["cells"] == 4


ORDERS = {
    "pandas, then hippo_dask": "import pandas as pd\nimport hippo_dask as hippo",
    "hippo_dask, then pandas": "import hippo_dask as hippo\nimport pandas as pd",
    "hippo_dask, a query, then pandas": "import hippo_dask as hippo\nhippo.open\nimport pandas as pd",
    "dask.dataframe, then hippo_dask": "import dask.dataframe as dd\nimport pandas as pd\nimport hippo_dask as hippo",
    "hippo_dask, then dask.dataframe": "import hippo_dask as hippo\nimport dask.dataframe as dd\nimport pandas as pd",
    "hippo_dask, pandas, then dask": "import hippo_dask as hippo\nimport pandas as pd\nimport dask\nimport dask.dataframe as dd",
    "dask, then hippo_dask, then dask.dataframe": "import dask\nimport hippo_dask as hippo\nimport pandas as pd\n"
                                                  "import dask.dataframe as dd",
    "from hippo_dask import *": "from hippo_dask import *\nimport hippo_dask as hippo\nimport pandas as pd",
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_the_accessor_works_in_every_import_order(order, tmp_path):
    got = run_python(ORDERS[order] + f"""
import json
hippo.set_store({str(tmp_path / "store")!r})
df = pd.DataFrame({{"k": [1, 2, 1], "x": [1.0, 2.0, 3.0]}})
acc = df.hippo
pandas_ok = isinstance(acc, hippo.HippoAccessor)
out = df.hippo.source("df").hippo.groupby("k").agg(t=("x", "sum")).hippo.compute()
rows = out.hippo.lineage.backward(rows=[0], columns=["t"])["df"].rows.tolist()
import dask.dataframe as dd
ddf = dd.from_pandas(df, npartitions=2).hippo.source("ddf")
dask_out = ddf.hippo.filter(lambda p: p.x > 1).hippo.compute()
print(json.dumps({{"pandas": pandas_ok, "rows": rows, "dask": isinstance(dd.from_pandas(df, npartitions=1).hippo, hippo.HippoAccessor),
                  "dask_rows": dask_out.hippo.lineage.backward(rows=[0])["ddf"].rows.tolist()}}))
""")
    assert got == {"pandas": True, "rows": [0, 2], "dask": True, "dask_rows": [1]}


def test_public_names_resolve():
    for name in hippo.__all__:
        assert getattr(hippo, name) is not None, name
    assert set(hippo.__all__) <= set(dir(hippo))
    with pytest.raises(AttributeError):
        hippo.no_such_name  # noqa: B018
