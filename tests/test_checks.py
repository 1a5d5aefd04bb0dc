"""Checks and validations (``df.hippo.check`` / ``validate``, ``lin.violations``) against an oracle.

The failing rows are computed again with plain pandas (and pandera) on the
oracle's frames (tests/oracle.py: every row carries its source rows, every
cell its source cells), so each violation's rows and cells are compared with
what the oracle says the failing rows came from; the result rows a failing row
reached are computed from the values (each test frame carries unique ids).
On pandas, on Dask with several partitions, and on a LocalCluster with threads
and with worker processes.
"""

from __future__ import annotations

import sys
from collections import Counter

import cloudpickle
import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

import hippo_dask as hippo
from hippo_dask import examples
from oracle import OracleFrame, row_keys

# worker processes cannot import this module: its functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _keep_object_columns():
    """The oracle is plain pandas: Dask must not turn object columns into strings."""
    with dask.config.set({"dataframe.convert-string": False}):
        yield


# ---------------------------------------------------------------------- data and predicates


def frames(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 9, n).astype(float)
    score[rng.random(n) < 0.1] = np.nan
    events = pd.DataFrame({"eid": np.arange(n), "k": rng.integers(0, 12, n), "x": rng.integers(-10, 10, n) / 4,  # sums exact in any order
                           "c": rng.choice(["u", "v"], n), "score": score})
    users = pd.DataFrame({"k": np.arange(12), "w": rng.integers(0, 50, 12)})
    return events, users


def x_ok(p: pd.DataFrame) -> pd.Series:
    return p["x"] > -1


def w_small(p: pd.DataFrame) -> pd.Series:
    return p["w"] < 40


def total_ok(p: pd.DataFrame) -> pd.Series:
    return p["total"] < 3


def only_u(p: pd.DataFrame) -> pd.Series:
    return p["c"] == "u"


def product_small(df: pd.DataFrame) -> pd.Series:
    return (df["x"] * df["w"]) < 60


SCHEMA = pa.DataFrameSchema(
    {
        "w": pa.Column(int, pa.Check.le(45)),              # value check: users' cells
        "x": pa.Column(float, pa.Check.ge(-1.5)),          # value check: events' cells
        "score": pa.Column(float),                         # missing values (rows)
        "k": pa.Column(float),                             # wrong dtype (no row)
        "missing": pa.Column(float),                       # missing column (no row)
    },
    checks=[pa.Check(product_small, name="product_small")],  # a check of the whole frame: row lineage
)
NAMES = ["x_ok", "w_small", "total_ok", "schema"]


def pipeline(events, users, schema=SCHEMA):
    """Checks upstream of a filter, after a merge, after a group-by; a validation on one branch of a diamond."""
    e = events.hippo.source("events").hippo.check(x_ok, name="x_ok")
    e = e.hippo.filter(only_u)
    t = e.hippo.merge(users.hippo.source("users"), on="k").hippo.check(w_small, name="w_small")
    g = t.hippo.groupby("k").agg(total=("x", "sum"), n=("x", "count")).hippo.check(total_ok, name="total_ok")
    t = t.hippo.validate(schema, name="schema")
    return t.hippo.merge(g, on="k")


# ---------------------------------------------------------------------- the oracle


def check_oracle(frame: OracleFrame, predicate, reads) -> dict:
    """What a check on ``frame`` must report: failing rows' source rows and the cells of ``reads``."""
    ok = np.asarray(predicate(frame.df), dtype=bool)
    failing = np.flatnonzero(~ok)
    return {
        "count": len(failing),
        "rows": frozenset().union(*(frame.rows[i] for i in failing)),
        "cells": frozenset().union(*(frame.cells[c][i] for i in failing for c in reads)),
        "per_row": Counter(frame.rows[i] for i in failing),
        "failing": failing,
    }


def validate_oracle(frame: OracleFrame, schema) -> dict:
    """What a validation of ``frame`` must report, from pandera run on the whole oracle frame."""
    try:
        schema.validate(frame.df, lazy=True)
        cases = pd.DataFrame(columns=["check", "column", "failure_case", "index"])
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    with_row, without_row, failing = Counter(), set(), set()
    cells = set()
    for check, column, value, index in zip(cases["check"], cases["column"], cases["failure_case"], cases["index"]):
        column = "" if column is None or (isinstance(column, float) and np.isnan(column)) else str(column)
        text = value if isinstance(value, str) else str(value)
        if index is None or (isinstance(index, float) and np.isnan(index)):
            without_row.add((str(check), column, text))
            continue
        i = int(index)
        failing.add(i)
        with_row[(str(check), column, text, frame.rows[i])] += 1
        if column in frame.cells:
            cells |= frame.cells[column][i]
    return {
        "count": len(failing),
        "rows": frozenset().union(*(frame.rows[i] for i in failing)) if failing else frozenset(),
        "cells": frozenset(cells),
        "per_row": Counter(frame.rows[i] for i in failing),
        "with_row": with_row,
        "without_row": without_row,
        "failing": np.array(sorted(failing), dtype=np.int64),
    }


def oracle(events, users, schema=SCHEMA):
    src = OracleFrame.source(events, "events")
    found = {"x_ok": check_oracle(src, x_ok, ["x"])}
    e = src.filter(only_u)
    t = e.merge(OracleFrame.source(users, "users"), "inner", ["k"])
    found["w_small"] = check_oracle(t, w_small, ["w"])
    g = t.groupby_agg(["k"], {"total": ("x", "sum"), "n": ("x", "count")})
    found["total_ok"] = check_oracle(g, total_ok, ["total"])
    found["schema"] = validate_oracle(t, schema)
    return found, {"events": src, "t": t, "g": g}


# ---------------------------------------------------------------------- comparing


def trace_sets(v) -> tuple[frozenset, frozenset]:
    rows = frozenset((s, int(r)) for s, ts in v.trace.items() for r in ts.rows)
    cells = frozenset((s, int(r), str(c)) for s, ts in v.trace.items() for r, c in ts.cells.itertuples(index=False, name=None))
    return rows, cells


def per_row(frame: pd.DataFrame) -> Counter:
    """Multiset of row lineages of the lines of ``Violations.rows`` (or ``.cases``), per source column."""
    sources = [c for c in frame.columns if c not in ("check", "column", "failure_case", "violation")]
    return Counter(frozenset((s, int(r)) for s in sources for r in line[s]) for _, line in frame.iterrows())


def assert_same(v, expected: dict) -> None:
    """A ``Violations`` equals the oracle's answer: count, trace rows and cells, each failing row's source rows."""
    rows, cells = trace_sets(v)
    assert v.count == expected["count"], (v.name, v.count, expected["count"])
    assert rows == expected["rows"], (v.name, sorted(rows ^ expected["rows"])[:10])
    assert cells == expected["cells"], (v.name, sorted(cells ^ expected["cells"])[:10])
    assert per_row(v.rows) == expected["per_row"], v.name
    assert list(v.rows.index) == list(range(v.count))
    if "with_row" in expected:  # a validation: every failure case, with its row's source rows
        cases = v.cases
        got_with = Counter()
        for _, line in cases[cases.violation >= 0].iterrows():
            lineage = frozenset((s, int(r)) for s in v.trace for r in line[s])
            got_with[(line.check, line.column, line.failure_case, lineage)] += 1
        assert got_with == expected["with_row"], v.name
        without = cases[cases.violation < 0]
        assert set(zip(without.check, without.column, without.failure_case)) == expected["without_row"]
        assert len(without) == len(expected["without_row"])  # listed once, whatever the partitions


def expected_result_eids(result: pd.DataFrame, events: pd.DataFrame, users: pd.DataFrame, found: dict,
                         frames_: dict) -> dict[str, set]:
    """The result rows (by their unique ``eid``) each check's failing rows flowed into, from the values."""
    t, g = frames_["t"].df, frames_["g"].df
    out = {}
    bad_events = set(events.eid[~x_ok(events)])
    # a failing event reaches the result rows of its own eid, and, as a member of its key's group, every row of that key
    reached = t[t.eid.isin(bad_events)]
    out["x_ok"] = set(result.eid[result.eid.isin(bad_events) | result.k.isin(set(reached.k))])
    bad_pairs = t.iloc[found["w_small"]["failing"]]
    out["w_small"] = set(result.eid[result.eid.isin(set(bad_pairs.eid)) | result.k.isin(set(bad_pairs.k))])
    out["total_ok"] = set(result.eid[result.k.isin(set(g.iloc[found["total_ok"]["failing"]].k))])
    # the validation is on the branch the group-by did not read: only the row itself
    out["schema"] = set(result.eid[result.eid.isin(set(t.iloc[found["schema"]["failing"]].eid))])
    return out


def assert_pipeline(result: pd.DataFrame, events: pd.DataFrame, users: pd.DataFrame) -> None:
    lin = result.hippo.lineage
    found, frames_ = oracle(events, users)
    assert result.eid.is_unique
    reach = expected_result_eids(result, events, users, found, frames_)
    for name in NAMES:
        v = lin.violations(name)
        assert v.count > 0, name
        assert_same(v, found[name])
        assert set(result.eid.iloc[v.result_rows]) == reach[name], name
        assert len(v.result_rows) == len(reach[name])
        assert not v.ambiguous
    # the check upstream of the filter reports events the filter dropped (they reach no result row)
    dropped = set(events.index[~x_ok(events) & ~only_u(events)])
    assert dropped and dropped <= set(lin.violations("x_ok").trace["events"].rows.tolist())
    kinds = {name: lin.violations(name).kind for name in NAMES}
    assert kinds == {"x_ok": "check", "w_small": "check", "total_ok": "check", "schema": "validate"}
    assert lin.violations("x_ok").cases is None


def to_dask(frame: pd.DataFrame, n: int) -> dd.DataFrame:
    return dd.from_pandas(frame, npartitions=n, sort=False)


# ---------------------------------------------------------------------- the pipeline on every backend


def test_pandas(store):
    events, users = frames()
    result = pipeline(events, users).hippo.compute()
    # every row passed every check: the result is the pipeline's without them
    plain = events[only_u(events)].merge(users, on="k")
    assert len(result) == len(plain.merge(plain.groupby("k").x.agg(["sum"]).reset_index(), on="k"))
    assert_pipeline(result, events, users)
    v = result.hippo.lineage.violations("schema")
    assert set(v.cases.check) >= {"less_than_or_equal_to(45)", "greater_than_or_equal_to(-1.5)", "not_nullable",
                                  "dtype('float64')", "column_in_dataframe", "product_small"}
    assert "failing rows" in repr(v) and "failure cases" in repr(v)


def test_dask_partitions(store):
    events, users = frames()
    result = pipeline(to_dask(events, 4), to_dask(users, 2)).hippo.compute(scheduler="sync")
    assert_pipeline(result, events, users)


def test_local_cluster(store, cluster_client):
    _processes, client = cluster_client
    events, users = frames(seed=5)
    result = pipeline(to_dask(events, 5), to_dask(users, 2)).hippo.compute(scheduler=client)
    assert_pipeline(result, events, users)


def test_pandas_and_dask_agree(store):
    events, users = frames(seed=7)
    a = pipeline(events, users).hippo.compute().hippo.lineage
    b = pipeline(to_dask(events, 3), to_dask(users, 3)).hippo.compute(scheduler="sync").hippo.lineage
    for name in NAMES:
        va, vb = a.violations(name), b.violations(name)
        assert trace_sets(va) == trace_sets(vb)
        pd.testing.assert_frame_equal(va.rows, vb.rows)  # the same order: by source rows and groups
        if va.cases is not None:
            pd.testing.assert_frame_equal(va.cases, vb.cases)


# ---------------------------------------------------------------------- the healthcare data


def healthcare_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema({
        "income": pa.Column(float, pa.Check.ge(10_000)),
        "county": pa.Column(nullable=False),
        "race": pa.Column(checks=pa.Check.isin(["race1", "race2"]), nullable=True),
        "num_children": pa.Column(float),  # it is int64: a dtype failure
        "zip": pa.Column(str),             # not there
    })


def healthcare_checked(patients, histories):
    patients = patients.hippo.source("patients").hippo.check(lambda p: p["num_children"] <= 3, name="few_children")
    data = patients.hippo.merge(histories.hippo.source("histories"), on="ssn")
    data = data.hippo.check(lambda p: p["complications"] < 8, name="complications_low")
    groups = data.hippo.groupby("age_group").agg(mean_complications=("complications", "mean"))
    data = data.hippo.merge(groups, on="age_group")
    data = data.hippo.assign(label=lambda p: p["complications"] > 1.2 * p["mean_complications"])
    data = data.hippo.select(examples.HEALTHCARE_COLUMNS).hippo.validate(healthcare_schema(), name="healthcare")
    return data.hippo.filter(lambda p: p["county"].isin(["county2", "county3"]))


def healthcare_oracle(patients, histories):
    src = OracleFrame.source(patients, "patients")
    found = {"few_children": check_oracle(src, lambda p: p["num_children"] <= 3, ["num_children"])}
    data = src.merge(OracleFrame.source(histories, "histories"), "inner", ["ssn"])
    found["complications_low"] = check_oracle(data, lambda p: p["complications"] < 8, ["complications"])
    groups = data.groupby_agg(["age_group"], {"mean_complications": ("complications", "mean")})
    data = data.merge(groups, "inner", ["age_group"])
    data = data.assign("label", lambda p: p["complications"] > 1.2 * p["mean_complications"],
                       ["complications", "mean_complications"])
    data = data.select(examples.HEALTHCARE_COLUMNS)
    found["healthcare"] = validate_oracle(data, healthcare_schema())
    final = data.filter(lambda p: p["county"].isin(["county2", "county3"]))
    return found, data, final


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_healthcare(store, shared_data, backend):
    patients = pd.read_csv(shared_data / "healthcare" / "patients.csv", na_values="?")
    histories = pd.read_csv(shared_data / "healthcare" / "histories.csv", na_values="?")
    to = (lambda f: f) if backend == "pandas" else (lambda f: to_dask(f, 3))
    result = healthcare_checked(to(patients), to(histories)).hippo.compute(scheduler="sync")
    found, validated, final = healthcare_oracle(patients, histories)
    assert Counter(row_keys(result)) == Counter(row_keys(final.df))
    lin = result.hippo.lineage
    keys = row_keys(result)
    final_keys = row_keys(final.df)
    for name in ["few_children", "complications_low", "healthcare"]:
        v = lin.violations(name)
        assert v.count > 0, name
        assert_same(v, found[name])
        # a failing row reaches the result rows whose row lineage holds it: a patient (and the
        # patient-history pair, ssn being unique on both sides) is in its own row and in every
        # row of its age group (the group's mean); the validation, after the group-by, only its own
        if name == "healthcare":  # after the group-by: a failing row reaches only itself, if the filter keeps it
            kept = found[name]["failing"][validated.df.county.iloc[found[name]["failing"]].isin(["county2", "county3"])]
            expected = Counter(row_keys(validated.df.iloc[kept]))
        else:
            expected = Counter(final_keys[j] for j, lineage_j in enumerate(final.rows)
                               if any(r <= lineage_j for r in found[name]["per_row"]))
        assert Counter(keys[i] for i in v.result_rows) == expected, name
    v = lin.violations("healthcare")
    assert {"not_nullable", "isin(['race1', 'race2'])", "greater_than_or_equal_to(10000)",
            "column_in_dataframe", "dtype('float64')"} <= set(v.cases.check)
    # rows whose county is missing fail the validation and never reach the result
    assert 0 < len(v.result_rows) < v.count


# ---------------------------------------------------------------------- smaller shapes


def test_upstream_of_filter_reaches_nothing(store):
    df = pd.DataFrame({"id": range(6), "x": [1, -1, 2, -3, 4, 5]})
    out = df.hippo.source("df").hippo.check(lambda p: p["x"] > 0, name="positive")
    out = out.hippo.filter(lambda p: p["x"] > 0).hippo.compute()
    v = out.hippo.lineage.violations("positive")
    assert v.count == 2 and v.trace["df"].rows.tolist() == [1, 3]
    assert v.trace["df"].cells.values.tolist() == [[1, "x"], [3, "x"]]
    assert v.result_rows.tolist() == []
    assert out.x.tolist() == [1, 2, 4, 5]


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_concat_and_outer_merge(store, backend):
    a = pd.DataFrame({"id": range(5), "k": [0, 1, 2, 3, 4], "x": [1.0, 7.0, 3.0, 9.0, 2.0]})
    b = pd.DataFrame({"id": range(100, 104), "k": [1, 5, 2, 6], "x": [6.0, 0.0, 8.0, 1.0]})
    d = pd.DataFrame({"k": [1, 2, 2, 7], "y": [10, 20, 21, 70]})
    to = (lambda f, n: f) if backend == "pandas" else to_dask
    tracked = hippo.concat([to(a, 2).hippo.source("a"), to(b, 2).hippo.source("b")], ignore_index=True)
    tracked = tracked.hippo.check(lambda p: p["x"] < 5, name="x_lt5")
    result = tracked.hippo.merge(to(d, 1).hippo.source("d"), on="k", how="outer").hippo.compute(scheduler="sync")
    both = OracleFrame.concat([OracleFrame.source(a, "a"), OracleFrame.source(b, "b")])
    expected = check_oracle(both, lambda p: p["x"] < 5, ["x"])
    v = result.hippo.lineage.violations("x_lt5")
    assert_same(v, expected)
    bad_ids = set(both.df.id[~(both.df.x < 5)])
    assert sorted(result.id.iloc[v.result_rows]) == sorted(i for i in result.id if i in bad_ids)
    assert len(v.result_rows) == int(result.id.isin(bad_ids).sum())  # the outer merge's pairs, each once


def test_group_rows_checked_trace_their_members(store):
    df = pd.DataFrame({"k": ["a", "b", "a", "c", "b"], "x": [1, 5, 2, 9, 1]})
    g = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.check(lambda p: p["total"] < 6,
                                                                                        name="small")
    out = g.hippo.compute()
    v = out.hippo.lineage.violations("small")
    assert v.count == 2  # b (6) and c (9)
    assert v.trace["df"].rows.tolist() == [1, 3, 4]
    assert sorted(map(tuple, v.rows["df"])) == [(1, 4), (3,)]
    assert sorted(out.k.iloc[v.result_rows]) == ["b", "c"]


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_check_before_a_fit(store, backend):
    """The fit computes the checked rows once more (apart from the result): each failing row is still named once."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"id": np.arange(200), "a": rng.normal(size=200).round(2), "b": rng.normal(size=200).round(2)})
    df["y"] = (df.a + df.b > 0).astype(int)
    to = (lambda f: f) if backend == "pandas" else (lambda f: to_dask(f, 3))
    t = to(df).hippo.source("df").hippo.sort_values("a").hippo.check(lambda p: p["b"] > -1.5, name="b_ok")
    model = t.hippo.fit(LogisticRegression(), X=["a", "b"], y="y", scheduler="sync")
    out = t.hippo.predict(model, out="pred").hippo.compute(scheduler="sync")
    v = out.hippo.lineage.violations("b_ok")
    bad = set(df.id[~(df.b > -1.5)])
    assert v.count == len(bad) > 0
    assert set(v.trace["df"].rows.tolist()) == bad and set(v.trace["df"].cells.column) == {"b"}
    assert set(out.id.iloc[v.result_rows]) == bad and len(v.result_rows) == len(bad)  # model dependencies not followed


def test_nullable_booleans_missing_is_not_ok(store):
    df = pd.DataFrame({"v": pd.array([1, None, -2, 3], dtype="Int64")})
    out = df.hippo.source("df").hippo.check(lambda p: p["v"] > 0, name="v_pos").hippo.compute()
    assert out.hippo.lineage.violations("v_pos").trace["df"].rows.tolist() == [1, 2]


def test_explode_makes_rows_that_share_lineage(store):
    df = pd.DataFrame({"id": [0, 1], "tags": [["a", "bad"], ["c"]]})
    out = df.hippo.source("df").hippo.explode("tags").hippo.check(lambda p: p["tags"] != "bad", name="tags_ok")
    out = out.hippo.compute()
    v = out.hippo.lineage.violations("tags_ok")
    assert v.ambiguous and v.count == 1
    assert v.trace["df"].cells.values.tolist() == [[0, "tags"]]
    # the sibling row ("a") shares the failing row's lineage and is named too: documented by `ambiguous`
    assert v.result_rows.tolist() == [0, 1]


def test_declared_row_dependent_predicate(store):
    df = pd.DataFrame({"x": [1.0, 1.2, 0.9, 50.0, 1.1]})
    within = lambda p: (p["x"] - p["x"].mean()).abs() < 1.5 * p["x"].std()  # noqa: E731
    with pytest.raises(hippo.LineageError, match="not row-wise"):
        df.hippo.source("df").hippo.check(within, name="outlier")
    out = df.hippo.source("df").hippo.check(within, name="outlier", lineage=hippo.lin.All(reads=["x"])).hippo.compute()
    assert out.hippo.lineage.violations("outlier").trace["df"].rows.tolist() == [3]


def test_dataframe_model(store):
    class People(pa.DataFrameModel):
        age: int = pa.Field(ge=0)

    df = pd.DataFrame({"age": [3, -1, 4]})
    out = df.hippo.source("df").hippo.validate(People, name="people").hippo.compute()
    cases = out.hippo.lineage.violations("people").cases
    assert cases[["column", "failure_case", "violation"]].values.tolist() == [["age", "-1", 0]]
    assert cases["df"].tolist() == [(1,)]


def test_schema_on_the_index_maps_labels(store):
    df = pd.DataFrame({"x": [1, 2, 3]}, index=[10, -5, 7])
    schema = pa.DataFrameSchema({"x": pa.Column(int, pa.Check.le(2))}, index=pa.Index(int, pa.Check.ge(0)))
    out = df.hippo.source("df").hippo.validate(schema, name="indexed").hippo.compute()
    v = out.hippo.lineage.violations("indexed")
    assert v.cases[["column", "failure_case", "violation", "df"]].values.tolist() == [["", "-5", 0, (1,)],
                                                                                      ["x", "3", 1, (2,)]]
    assert v.trace["df"].cells.values.tolist() == [[2, "x"]]  # the index case has no column: row lineage only
    assert v.trace["df"].rows.tolist() == [1, 2]


# ---------------------------------------------------------------------- errors


def test_unknown_and_bad_names(store):
    events, users = frames(n=60)
    lin = pipeline(events, users).hippo.compute().hippo.lineage
    with pytest.raises(hippo.QueryError, match=r"no check or validation named 'nope'.*\['schema', 'total_ok', 'w_small', 'x_ok'\]"):
        lin.violations("nope")
    plain = pd.DataFrame({"x": [1]}).hippo.source("p").hippo.compute().hippo.lineage
    with pytest.raises(hippo.QueryError, match="it has none"):
        plain.violations("x_ok")
    src = events.hippo.source("events")
    for bad in ["", "1st", "has space", "a-b", 5, None]:
        with pytest.raises(hippo.LineageError, match="identifier-like"):
            src.hippo.check(x_ok, name=bad)
    with pytest.raises(hippo.LineageError, match="callable"):
        src.hippo.check("x > 0", name="text")
    with pytest.raises(hippo.LineageError, match="one boolean per row"):
        src.hippo.check(lambda p: p["x"], name="numbers")


def test_duplicate_names(store):
    events, users = frames(n=60)
    src = events.hippo.source("events").hippo.check(x_ok, name="dup")
    with pytest.raises(hippo.LineageError, match="already has a check or validation named 'dup'"):
        src.hippo.check(lambda p: p["x"] < 1, name="dup")
    with pytest.raises(hippo.LineageError, match="already has a check or validation named 'dup'"):
        src.hippo.validate(pa.DataFrameSchema({"x": pa.Column(float)}), name="dup")
    # two branches, each with its own "twice", joined: refused at compute
    left = events.hippo.source("events").hippo.check(x_ok, name="twice")
    right = users.hippo.source("users").hippo.check(w_small, name="twice")
    with pytest.raises(hippo.LineageError, match=r"two checks or validations are named \['twice'\]"):
        left.hippo.merge(right, on="k").hippo.compute()


def test_validate_needs_a_schema_and_pandera(store, monkeypatch):
    src = pd.DataFrame({"x": [1]}).hippo.source("df")
    with pytest.raises(hippo.LineageError, match="pandera DataFrameSchema"):
        src.hippo.validate({"x": int}, name="bad")
    monkeypatch.setitem(sys.modules, "pandera", None)
    monkeypatch.setitem(sys.modules, "pandera.pandas", None)
    with pytest.raises(ImportError, match=r"hippo_dask\[validate\]"):
        src.hippo.validate(SCHEMA, name="nopandera")


def too_big(p: pd.DataFrame) -> pd.Series:
    if (p["x"] > 2).any():
        raise ValueError("x above 2")
    return p["x"] > -1


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_predicate_that_raises(store, backend):
    events, _ = frames()
    expected = sorted(events.eid[events.x > 2].tolist())
    assert expected
    if backend == "pandas":
        with pytest.raises(hippo.UserFunctionError, match="check 'big'") as err:
            events.hippo.source("events").hippo.check(too_big, name="big")
    else:
        tracked = to_dask(events, 1).hippo.source("events").hippo.check(too_big, name="big")
        with pytest.raises(hippo.UserFunctionError, match="check 'big'") as err:
            tracked.hippo.compute(scheduler="sync")
    assert err.value.record["source_rows"] == {"events": expected}
    with pytest.raises(ValueError, match="x above 2"):
        hippo.debug(err.value.run_id, trust=True)
    with pytest.raises(hippo.IncompleteRunError, match="failed"):
        hippo.open(store, err.value.run_id)


# ---------------------------------------------------------------------- replay


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_replay_gives_identical_violations(store, backend):
    events, users = frames(seed=7)
    to = (lambda f, n: f) if backend == "pandas" else to_dask
    e, u = to(events, 3), to(users, 2)
    result = pipeline(e, u).hippo.compute(scheduler="sync")
    lin = result.hippo.lineage
    with pytest.raises(hippo.ReplayError, match="trust=True"):  # the schema is a stored (pickled) value
        lin.replay(sources={"events": e, "users": u}, scheduler="sync")
    report = lin.replay(sources={"events": e, "users": u}, trust=True, scheduler="sync")
    assert report.identical and not report.differences, report
    again = hippo.open(store, report.run_id)
    for name in NAMES:
        old, new = lin.violations(name), again.violations(name)
        assert trace_sets(old) == trace_sets(new)
        pd.testing.assert_frame_equal(old.rows, new.rows)
        # positions in each run's own result (a Dask shuffle may order the rows otherwise): compare the rows
        assert sorted(result.eid.iloc[old.result_rows]) == sorted(report.result.eid.iloc[new.result_rows])
        if old.cases is not None:
            pd.testing.assert_frame_equal(old.cases, new.cases)
    # a changed predicate: the replay says which check found other rows
    changed = lin.replay(sources={"events": e, "users": u}, trust=True, scheduler="sync",
                         functions={f"{__name__}.x_ok": lambda p: p["x"] > 0})
    assert any("failing rows" in d.reason and "x_ok" in d.operation for d in changed.differences), changed
    # a sliced replay does not evaluate checks (the result does not depend on them)
    rows = [0, 3, len(result) - 1]
    sliced = lin.replay(rows=rows, sources={"events": e, "users": u}, trust=True, scheduler="sync")
    pd.testing.assert_frame_equal(sliced, result.iloc[rows], check_dtype=False)


def test_a_partition_recorded_twice_names_each_row_once():
    """Two fragments of one partition in two row orders (a fit computed it apart): the same rows, once each."""
    from hippo_dask.checks import Recorded, identify
    from hippo_dask.lineage import SlotRows

    slots = np.array([[5], [3], [3], [3], [5], [3]], dtype=np.int64)
    rec = Recorded(SlotRows(("s",), slots), np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]), None)
    rows, line_row = identify(rec)
    assert rows.tolist() == [[3, 0], [3, 1], [5, 0]]  # slot value, rank among equal ones (explode siblings)
    assert line_row.tolist() == [2, 0, 1, 0, 2, 1]
