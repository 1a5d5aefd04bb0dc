"""lin.explain(row, column): each source value's share of a result value, against a plain-pandas oracle.

The oracle does not use hippo's lineage: it finds a result row's group by its
key in the source data and computes each member's share from the definition
(sum: the value, mean: value / n, ...), so a wrong member set or a wrong share
fails here.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.errors import QueryError

FUNCS = ["sum", "mean", "count", "size", "min", "max", "first", "last", "median", "nunique", "var", "std"]


def _events(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.integers(-20, 20, n).astype(float)
    x[rng.random(n) < 0.15] = np.nan
    return pd.DataFrame({"u": rng.integers(0, 6, n), "x": x, "c": rng.integers(0, 4, n)})


def _frame(df: pd.DataFrame, nparts: int | None):
    return df if nparts is None else dd.from_pandas(df, npartitions=nparts, sort=False)


def _oracle(members: pd.DataFrame, func: str, column: str = "x") -> dict[int, float]:
    """Source position -> expected contribution for a group's members (rows in source order)."""
    values = members[column]
    present = values.dropna()
    n = len(present)
    if func == "sum":
        return {int(i): float(v) for i, v in present.items()}
    if func == "mean":
        return {int(i): float(v) / n for i, v in present.items()}
    if func == "count":
        return {int(i): 1.0 for i in present.index}
    if func == "size":
        return {int(i): 1.0 for i in values.index}
    if func in ("min", "max"):
        return {int(present.idxmin() if func == "min" else present.idxmax()): float(getattr(present, func)())}
    if func in ("first", "last"):
        i = present.index[0 if func == "first" else -1]
        return {int(i): float(present[i])}
    if func == "median":
        ordered = present.sort_values(kind="stable")
        if n % 2:
            return {int(ordered.index[n // 2]): float(ordered.iloc[n // 2])}
        a, b = ordered.index[n // 2 - 1], ordered.index[n // 2]
        return {int(a): float(ordered[a]) / 2, int(b): float(ordered[b]) / 2}
    if func == "nunique":
        counts = present.map(present.value_counts())
        return {int(i): 1.0 / c for i, c in counts.items()}
    if func == "var":
        mean = present.mean()
        return {int(i): float((v - mean) ** 2 / (n - 1)) for i, v in present.items()}
    if func == "std":  # leave-one-out influence
        whole = present.std()
        return {int(i): float(whole - present.drop(index=i).std()) for i in present.index}
    raise AssertionError(func)


@pytest.mark.parametrize("nparts", [None, 3])
def test_every_aggregation_against_the_oracle(store, nparts):
    ev = _events()
    # on Dask, first / last follow Dask's row order, which a sliced replay cannot reproduce: refused
    funcs = [f for f in FUNCS if nparts is None or f not in ("first", "last")]
    named = {f"a_{f}": ("x", f) for f in funcs}
    out = _frame(ev, nparts).hippo.source("ev").hippo.groupby("u").agg(**named).hippo.compute()
    lin = out.hippo.lineage
    for row in range(len(out)):
        members = ev[ev.u == out.loc[row, "u"]]
        for func in funcs:
            column = f"a_{func}"
            got = lin.explain(row, column, sources={"ev": _frame(ev, nparts)})
            assert list(got.columns) == ["source", "row", "column", "value", "contribution", "note"]
            want = _oracle(members, func)
            shares = got.dropna(subset=["contribution"])
            if func == "size":
                assert set(got.row) == set(want), (row, func)
            else:
                assert dict(zip(shares.row, shares.contribution)) == pytest.approx(want, rel=1e-9, abs=1e-12), (row, func)
            if func in ("sum", "mean", "count", "size", "nunique", "var", "min", "max", "median", "first", "last"):
                total = got.contribution.sum()
                assert total == pytest.approx(float(out.loc[row, column]), rel=1e-9, abs=1e-12), (row, func)
            values = got[got.column == "x"]
            assert np.array_equal(values.value.to_numpy(float), ev.x.to_numpy()[values.row.to_numpy()], equal_nan=True)
            magnitude = got.contribution.abs().fillna(-1).to_numpy()
            assert (np.diff(magnitude) <= 1e-12).all(), "largest |contribution| first"


@pytest.mark.parametrize("nparts", [None, 2])
def test_shares_compose_through_merges_and_further_aggregations(store, nparts):
    ev = _events(80, seed=1)
    users = pd.DataFrame({"u": range(6), "region": list("aabbcc")})
    e = _frame(ev, nparts).hippo.source("ev")
    u = _frame(users, nparts).hippo.source("users")
    per_user = e.hippo.merge(u, on="u").hippo.groupby("u").agg(total=("x", "sum"), avg=("x", "mean"))
    per_region = per_user.hippo.merge(u, on="u").hippo.groupby("region").agg(
        total=("total", "sum"), avg_of_sums=("total", "mean"), avg_of_avgs=("avg", "mean"))
    out = per_region.hippo.compute()
    lin = out.hippo.lineage
    srcs = {"ev": _frame(ev, nparts), "users": _frame(users, nparts)}
    for row in range(len(out)):
        region = out.loc[row, "region"]
        user_ids = users.u[users.region == region].tolist()
        groups = [ev[(ev.u == k)].x.dropna() for k in user_ids if (ev.u == k).any()]
        want_total = {int(i): float(v) for g in groups for i, v in g.items()}
        want_avg_sums = {i: v / len(groups) for i, v in want_total.items()}
        want_avg_avgs = {int(i): float(v) / len(g) / len(groups) for g in groups for i, v in g.items()}
        for column, want in [("total", want_total), ("avg_of_sums", want_avg_sums), ("avg_of_avgs", want_avg_avgs)]:
            got = lin.explain(row, column, sources=srcs)
            shares = got[got.source == "ev"]
            assert dict(zip(shares.row, shares.contribution)) == pytest.approx(want, rel=1e-9), (row, column)
            assert got.contribution.sum() == pytest.approx(float(out.loc[row, column]), rel=1e-9)


def test_a_copied_value_and_a_derived_one(store):
    ev = _events(40, seed=2)
    e = ev.hippo.source("ev")
    g = e.hippo.groupby("u").agg(total=("x", "sum"))
    out = e.hippo.merge(g, on="u").hippo.assign(scaled=lambda p: p.x * 2).hippo.sort_values("c").hippo.compute()
    lin = out.hippo.lineage
    expected_source = ev.merge(ev.groupby("u", as_index=False).agg(total=("x", "sum")), on="u")
    row = 5
    got = lin.explain(row, "x", sources={"ev": ev}, trust=True)
    assert len(got) == 1 and got.value[0] == out.x[row] or (np.isnan(got.value[0]) and np.isnan(out.x[row]))
    assert got.note[0] == "the value itself"
    got = lin.explain(row, "total", sources={"ev": ev}, trust=True)
    members = ev[ev.u == out.u[row]].x.dropna()
    assert dict(zip(got.row, got.contribution)) == pytest.approx({int(i): float(v) for i, v in members.items()})
    got = lin.explain(row, "scaled", sources={"ev": ev}, trust=True)
    assert got.contribution.isna().all() and got.note.str.startswith("not additive").all()
    assert list(got.column) == ["x"] and got.value.iloc[0] == out.x[row] or np.isnan(out.x[row])
    del expected_source


def test_prediction_lists_its_features_and_with_models_its_training_rows(store, shared_data):
    from hippo_dask.examples import healthcare_ml

    patients = pd.read_csv(shared_data / "healthcare" / "patients.csv")
    histories = pd.read_csv(shared_data / "healthcare" / "histories.csv")
    out = healthcare_ml(patients, histories).hippo.compute()
    lin = out.hippo.lineage
    srcs = {"patients": patients, "histories": histories}
    got = lin.explain(0, "prediction", sources=srcs, trust=True)
    trace = lin.backward([0], ["prediction"])
    want = {(name, int(r), c) for name in trace for r, c in zip(trace[name].cells.row, trace[name].cells.column)}
    assert {(s, int(r), c) for s, r, c in zip(got.source, got.row, got.column)} == want
    assert got.contribution.isna().all()
    wide = lin.explain(0, "prediction", sources=srcs, trust=True, through_models=True)
    training = wide[wide.note.str.startswith("training row")]
    full = lin.backward([0], ["prediction"], through_models=True)
    want_rows = {(name, int(r)) for name in full for r in full[name].cells.row.unique()} - {(s, r) for s, r, _ in want}
    assert {(s, int(r)) for s, r in zip(training.source, training.row)} == want_rows
    assert len(training) > 100


def test_healthcare_mean_complications_adds_up(store, shared_data):
    """Real data: the per-age-group mean of complications, over patients merged with histories."""
    patients = pd.read_csv(shared_data / "healthcare" / "patients.csv")
    histories = pd.read_csv(shared_data / "healthcare" / "histories.csv")
    data = patients.hippo.source("patients").hippo.merge(histories.hippo.source("histories"), on="ssn")
    out = data.hippo.groupby("age_group").agg(mean_complications=("complications", "mean")).hippo.compute()
    lin = out.hippo.lineage
    merged = patients.reset_index(names="p_row").merge(histories.reset_index(names="h_row"), on="ssn")
    for row in range(len(out)):
        got = lin.explain(row, "mean_complications", sources={"patients": patients, "histories": histories})
        assert got.contribution.sum() == pytest.approx(float(out.mean_complications[row]), rel=1e-9)
        group = merged[(merged.age_group == out.age_group[row]) & merged.complications.notna()]
        want = group.groupby("h_row").complications.sum() / len(group)
        assert set(got.source) == {"histories"}
        assert dict(zip(got.row, got.contribution)) == pytest.approx(want.to_dict(), rel=1e-9)


def test_bad_input(store):
    ev = _events(10)
    out = ev.hippo.source("ev").hippo.groupby("u").agg(total=("x", "sum")).hippo.compute()
    lin = out.hippo.lineage
    with pytest.raises(QueryError, match="no column 'nope'"):
        lin.explain(0, "nope", sources={"ev": ev})
    with pytest.raises(QueryError):
        lin.explain(len(out), "total", sources={"ev": ev})


def test_exploded_rows_are_told_apart_by_position(store):
    """Reproducer (review): rows exploded from one row share their slots; values were read from the first."""
    ev = pd.DataFrame({"k": ["a", "a", "b"], "lst": [[5.0, 1.0], [3.0], [np.nan, 2.0]]})
    plain = ev.explode("lst").astype({"lst": float})
    for func, row, check in [("min", 0, lambda got: set(got.row) == {0}),
                             ("var", 0, lambda got: got.contribution.sum() == pytest.approx(plain[plain.k == "a"].lst.var())),
                             ("nunique", 0, lambda got: got.contribution.sum() == pytest.approx(3.0)),
                             ("count", 1, lambda got: dict(zip(got.row, got.contribution)) == {2: 1.0}),
                             ("min", 1, lambda got: set(got.row) == {2})]:
        out = ev.hippo.source("ev").hippo.explode("lst").hippo.groupby("k").agg(v=("lst", func)).hippo.compute()
        got = out.hippo.lineage.explain(row, "v", sources={"ev": ev})
        assert check(got), (func, row, got)


def test_sizes_and_group_transforms_list_their_rows(store):
    """Reproducers (review): a size has no cell lineage (it counts rows) and transform columns spread."""
    ev = pd.DataFrame({"r": ["x", "x", "x", "x", "y", "y"], "u": [1, 1, 2, 3, 4, 4], "x": [1.0, 2, 3, 4, 5, 6]})
    e = ev.hippo.source("ev")
    out = e.hippo.groupby(["r", "u"]).agg(n=("x", "size")).hippo.groupby("r").agg(
        var_n=("n", "var"), count_n=("n", "count"), nunique_n=("n", "nunique")).hippo.compute()
    lin = out.hippo.lineage
    for column in ("var_n", "count_n", "nunique_n"):
        got = lin.explain(0, column, sources={"ev": ev})
        assert set(got.row) == {0, 1, 2, 3}, column
        assert got.contribution.sum() == pytest.approx(float(out.loc[0, column])), column
    out = e.hippo.groupby("r").transform(t=("x", "sum")).hippo.compute()
    got = out.hippo.lineage.explain(0, "t", sources={"ev": ev})
    assert set(got.row) == {0, 1, 2, 3}


def test_explain_and_without_on_a_cluster(store, cluster_client):
    """The same answers computed on a LocalCluster (threads and worker processes) as on pandas."""
    _, client = cluster_client
    ev = _events(80, seed=3)
    users = pd.DataFrame({"u": range(6), "region": list("aabbcc")})

    def pipeline(e, u):
        e, u = e.hippo.source("ev"), u.hippo.source("users")
        per_user = e.hippo.merge(u, on="u").hippo.groupby("u").agg(total=("x", "sum"), top=("x", "max"))
        return e.hippo.merge(per_user, on="u")

    frames = {"ev": dd.from_pandas(ev, npartitions=3, sort=False), "users": dd.from_pandas(users, npartitions=2, sort=False)}
    out = pipeline(frames["ev"], frames["users"]).hippo.compute(scheduler=client)
    lin = out.hippo.lineage
    for row in (0, len(out) // 2, len(out) - 1):
        got = lin.explain(row, "total", sources=frames, scheduler=client)
        members = ev[ev.u == out.u[row]].x.dropna()
        assert dict(zip(got.row, got.contribution)) == pytest.approx({int(i): float(v) for i, v in members.items()})
    removed = [int(i) for i in np.flatnonzero(ev.u.to_numpy() == out.u[0])[:2]]
    w = lin.without("ev", removed, sources=frames, scheduler=client)
    again = pipeline(ev.drop(ev.index[removed]).reset_index(drop=True), users).hippo.compute()
    key = ["u", "x", "total", "top", "c"]
    pd.testing.assert_frame_equal(w.result.sort_values(key).reset_index(drop=True)[key],
                                  again.sort_values(key).reset_index(drop=True)[key], check_dtype=False, rtol=1e-9)
