"""lin.without on real data and its API edges; the random-pipeline exactness net is test_without_random.py.

The oracle for a removal is the pipeline run again, by the test, on the
source minus those rows: `without()` must give the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.errors import QueryError, ReplayError
from hippo_dask.examples import healthcare


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True).copy()
    for c in frame.columns:
        if frame[c].dtype.kind == "f":
            frame[c] = frame[c].round(9)
    return frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture
def health(shared_data):
    patients = pd.read_csv(shared_data / "healthcare" / "patients.csv")
    histories = pd.read_csv(shared_data / "healthcare" / "histories.csv")
    return patients, histories


@pytest.mark.parametrize("strategy", ["auto", "partial", "rerun"])
def test_healthcare_without_histories_equals_a_rerun(store, health, strategy):
    patients, histories = health
    out = healthcare(patients, histories).hippo.compute()
    lin = out.hippo.lineage
    rng = np.random.default_rng(0)
    sources = {"patients": patients, "histories": histories}
    for removed in (rng.choice(len(histories), 1, replace=False), rng.choice(len(histories), 25, replace=False),
                    np.flatnonzero(histories.smoker.to_numpy() == histories.smoker.iloc[0])[:40]):
        w = lin.without("histories", removed, sources=sources, trust=True, strategy=strategy)
        again = healthcare(patients, histories.drop(histories.index[removed]).reset_index(drop=True)).hippo.compute()
        pd.testing.assert_frame_equal(_canonical(w.result), _canonical(again[lin.columns]))
        # the diff accounts for exactly the difference between the two results
        counts = w.counts()
        assert len(out) - counts["removed"] + counts["added"] == len(again)
        changed = w.diff[w.diff.change == "changed"]
        for _, line in changed.iterrows():
            old = out.iloc[int(line.row)]
            assert all(str(old[c]) != str(line[c]) for c in line["columns"])
        assert w.strategy == strategy or (strategy == "auto" and w.reason)


def test_dry_run_and_capture(store, health):
    patients, histories = health
    out = healthcare(patients, histories).hippo.compute()
    lin = out.hippo.lineage
    sources = {"patients": patients, "histories": histories}
    w = lin.without("patients", [0, 5, 9], sources=sources, trust=True)
    dry = lin.without("patients", [0, 5, 9], sources=sources, trust=True, dry_run=True)
    assert dry.result is None
    pd.testing.assert_frame_equal(dry.diff, w.diff)
    captured = w.capture()
    assert captured.manifest["without_of"]["run"] == lin.run_id
    assert captured.manifest["without_of"]["rows"] == 3
    assert captured.nrows == len(w.result)
    assert captured.source_rows("patients") == len(patients) - 3


def test_predicate_and_result_from_the_store(store, health):
    patients, histories = health
    out = healthcare(patients, histories).hippo.compute()
    sources = {"patients": patients, "histories": histories}
    opened = hippo.open(store, out.hippo.lineage.run_id)  # no result frame at hand: recomputed
    by_predicate = opened.without("patients", lambda f: f.county == "county2", sources=sources, trust=True)
    positions = np.flatnonzero(patients.county.to_numpy() == "county2")
    by_positions = out.hippo.lineage.without("patients", positions, sources=sources, trust=True)
    pd.testing.assert_frame_equal(by_predicate.result, by_positions.result)
    pd.testing.assert_frame_equal(by_predicate.diff, by_positions.diff)
    assert (by_predicate.result.county != "county2").all()
    assert by_predicate.counts()["removed"] == int((out.county == "county2").sum())


def test_a_model_trained_on_removed_rows_is_refitted(store, health):
    from hippo_dask.examples import healthcare_ml

    patients, histories = health
    out = healthcare_ml(patients, histories).hippo.compute()
    lin = out.hippo.lineage
    sources = {"patients": patients, "histories": histories}
    w = lin.without("histories", [3], sources=sources, trust=True)
    assert w.strategy == "rerun" and len(w.refitted) == 2  # the ColumnTransformer and the classifier
    again = healthcare_ml(patients, histories.drop(histories.index[[3]]).reset_index(drop=True)).hippo.compute()
    pd.testing.assert_frame_equal(_canonical(w.result), _canonical(again[lin.columns]))
    with pytest.raises(ReplayError, match="partial recompute would not be exact"):
        lin.without("histories", [3], sources=sources, trust=True, strategy="partial")


def test_bad_input_is_refused_and_nothing_is_written(store, health):
    patients, histories = health
    out = healthcare(patients, histories).hippo.compute()
    lin = out.hippo.lineage
    runs = len(store.runs())
    sources = {"patients": patients, "histories": histories}
    with pytest.raises(QueryError, match="no source named 'nope'"):
        lin.without("nope", [0], sources=sources)
    with pytest.raises(QueryError):
        lin.without("patients", [len(patients)], sources=sources)
    with pytest.raises(QueryError, match="strategy"):
        lin.without("patients", [0], sources=sources, strategy="fast")
    with pytest.raises(QueryError, match="boolean mask"):
        lin.without("patients", pd.Series(np.zeros(len(patients), dtype=bool)), sources=sources)
    with pytest.raises(ReplayError, match="in-memory frame"):
        lin.without("patients", [0], trust=True, strategy="rerun")
    with pytest.raises(QueryError, match="not the result"):
        lin.without("patients", [0], sources=sources, result=out.iloc[::-1], trust=True)
    with pytest.raises(hippo.SourceChangedError):
        changed = patients.copy()
        changed.loc[0, "income"] = -1
        lin.without("patients", [1], sources={"patients": changed, "histories": histories}, trust=True)
    assert len(store.runs()) == runs  # a removal is computed aside: the store holds what it held


def test_cli_explain_and_without(store, tmp_path, capsys):
    from hippo_dask.cli import main

    path = tmp_path / "d.csv"
    pd.DataFrame({"k": ["a", "b", "a", "c"], "x": [1, 2, 3, 4]}).to_csv(path, index=False)
    out = hippo.read_csv(str(path), "d").hippo.groupby("k").agg(t=("x", "sum")).hippo.compute()
    assert list(out.t) == [4, 2, 4]
    assert main(["--store", str(store.url), "explain", "latest", "0", "t"]) == 0
    text = capsys.readouterr().out
    assert "share of the sum of x" in text and "sum of contributions: 4.0" in text
    assert main(["--store", str(store.url), "without", "latest", "d", "0,3", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "1 result row(s) changed, 1 removed, 0 added" in text


def test_rerun_keeps_the_original_order_and_appends_added_rows(store):
    """Reproducer (review): a left merge whose only partner is removed: the row comes back unmatched."""
    left = pd.DataFrame({"k": [1, 2, 3], "a": [10, 20, 30]})
    right = pd.DataFrame({"k": [1, 2, 3], "b": [1.0, 2.0, 3.0]})
    out = left.hippo.source("L").hippo.merge(right.hippo.source("R"), on="k", how="left").hippo.compute()
    w = out.hippo.lineage.without("R", [1], sources={"L": left, "R": right})
    assert w.strategy == "rerun" and "left merge" in w.reason
    assert list(w.result.k) == [1, 3, 2] and np.isnan(w.result.b[2])
    assert w.counts() == {"changed": 0, "removed": 1, "added": 1}
    added = w.diff[w.diff.change == "added"]
    assert list(added.new_row) == [2] and list(w.diff[w.diff.change == "removed"].row) == [1]


def test_dask_group_transform_first_is_not_recomputed_in_part(store):
    """Reproducer (review): first/last of a Dask group transform follow Dask's row order."""
    import dask.dataframe as dd

    ev = pd.DataFrame({"k": [1, 2, 1, 2, 1], "x": [5.0, 6, 7, 8, 9]})
    frame = dd.from_pandas(ev, npartitions=3, sort=False)
    out = frame.hippo.source("ev").hippo.groupby("k").transform(f=("x", "first")).hippo.compute()
    with pytest.raises(ReplayError, match="first/last"):
        out.hippo.lineage.without("ev", [0], sources={"ev": frame}, strategy="partial")
    assert out.hippo.lineage.without("ev", [0], sources={"ev": frame}).strategy == "rerun"
