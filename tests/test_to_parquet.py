"""df.hippo.to_parquet: results written from the workers with their lineage, nothing gathered.

The oracle is the same pipeline computed with ``.hippo.compute()`` (one
gathered partition, in partition order): the parquet files must hold the same
rows in the same order, the manifests the same order-free digest, and every
trace must answer alike.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.errors import LineageError


def _data(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    events = pd.DataFrame({"id": np.arange(n), "u": rng.integers(0, 12, n), "x": rng.normal(size=n).round(3),
                           "c": pd.array(rng.choice(["p", "q", "r"], n), dtype="str")})
    users = pd.DataFrame({"u": range(12), "region": pd.array(list("aabbccddeeff"), dtype="str")})
    return events, users


def _pipeline(events, users):
    e = events.hippo.source("events")
    u = users.hippo.source("users")
    per_user = e.hippo.merge(u, on="u").hippo.groupby("u").agg(total=("x", "sum"), n=("x", "count"))
    out = e.hippo.merge(per_user, on="u").hippo.filter(lambda p: p.c != "r")
    return out.hippo.assign(share=lambda p: p.x / p.total)


def _same_traces(a, b, written: pd.DataFrame, gathered: pd.DataFrame, rows) -> None:
    """Traces of the same result rows (found by their event id: two Dask runs may order a shuffle's rows
    differently) agree; forward traces reach the same rows."""
    where = pd.Series(np.arange(len(gathered)), index=gathered["id"].to_numpy())
    for r in rows:
        ta, tb = a.backward([int(r)]), b.backward([int(where[written["id"].iloc[int(r)]])])
        for name in ta:
            np.testing.assert_array_equal(ta[name].rows, tb[name].rows)
            pd.testing.assert_frame_equal(ta[name].cells, tb[name].cells)
    for source, n in (("events", 5), ("users", 2)):
        fa, fb = a.forward(source, list(range(n))), b.forward(source, list(range(n)))
        assert sorted(written["id"].iloc[fa.rows]) == sorted(gathered["id"].iloc[fb.rows])


def _same_rows(written: pd.DataFrame, gathered: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(written.sort_values("id").reset_index(drop=True),
                                  gathered.sort_values("id").reset_index(drop=True), check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize("nparts", [1, 4])
def test_dask_result_written_from_the_workers(store, tmp_path, nparts):
    events, users = _data()
    frames = (dd.from_pandas(events, npartitions=nparts, sort=False), dd.from_pandas(users, npartitions=2, sort=False))
    gathered = _pipeline(*frames).hippo.compute()
    lin = _pipeline(*frames).hippo.to_parquet(str(tmp_path / "out"))
    written = pd.read_parquet(tmp_path / "out")
    _same_rows(written, gathered)
    assert lin.nrows == len(gathered) and lin.columns == list(gathered.columns)
    # the combined digest of the exact columns equals compute()'s (Dask sums floats in varying order)
    digest, recorded = lin.manifest["result"]["digest"], gathered.hippo.lineage.manifest["result"]["digest"]
    assert {c: digest[c] for c in ("id", "u", "x", "c", "n")} == {c: recorded[c] for c in ("id", "u", "x", "c", "n")}
    assert digest["\x00rows"].split(":")[0] == recorded["\x00rows"].split(":")[0] == str(len(gathered))
    _same_traces(lin, gathered.hippo.lineage, written, gathered, np.linspace(0, len(gathered) - 1, 7).astype(int))
    again = hippo.open(store, lin.run_id)
    assert again.nrows == len(written)


def test_on_a_cluster(store, tmp_path, cluster_client):
    _, client = cluster_client
    events, users = _data(300, seed=1)
    frames = (dd.from_pandas(events, npartitions=3, sort=False), dd.from_pandas(users, npartitions=2, sort=False))
    gathered = _pipeline(*frames).hippo.compute(scheduler=client)
    lin = _pipeline(*frames).hippo.to_parquet(str(tmp_path / "out"), scheduler=client)
    written = pd.read_parquet(tmp_path / "out")
    _same_rows(written, gathered)
    _same_traces(lin, gathered.hippo.lineage, written, gathered, [0, len(gathered) // 2, len(gathered) - 1])


def test_pandas_frame_and_bad_folders(store, tmp_path):
    events, users = _data(50)
    gathered = _pipeline(events, users).hippo.compute()
    lin = _pipeline(events, users).hippo.to_parquet(str(tmp_path / "out"))
    written = pd.read_parquet(tmp_path / "out")
    pd.testing.assert_frame_equal(written, gathered, check_dtype=False)  # pandas: the same rows, in order
    assert lin.manifest["result"]["digest"] == gathered.hippo.lineage.manifest["result"]["digest"]
    _same_traces(lin, gathered.hippo.lineage, written, gathered, [0, len(gathered) - 1])
    runs = len(store.runs())
    with pytest.raises(LineageError, match="not an empty folder"):
        _pipeline(events, users).hippo.to_parquet(str(tmp_path / "out"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(LineageError, match="not an empty folder"):
        _pipeline(events, users).hippo.to_parquet(str(tmp_path / "file"))
    assert len(store.runs()) == runs
