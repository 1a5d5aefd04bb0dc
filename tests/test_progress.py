"""Progress bars on Dask computes (issue 10): Dask's own diagnostics, on stderr, off by default
outside a terminal, and the answers the same with or without them."""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd

from hippo_dask.compute import show_progress


def pipeline():
    pdf = pd.DataFrame({"k": list("abcabcabca"), "x": range(10)})
    d = dd.from_pandas(pdf, npartitions=3).hippo.source("t")
    return d.hippo.filter(lambda p: p.x > 1).hippo.groupby("k").agg(s=("x", "sum"))


def test_default_follows_the_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.delenv("HIPPO_PROGRESS", raising=False)
    assert show_progress(None) is True
    monkeypatch.setenv("HIPPO_PROGRESS", "0")
    assert show_progress(None) is False
    assert show_progress(True) is True and show_progress(False) is False


def test_local_scheduler_bar_on_stderr(store, capfd):
    quiet = pipeline().hippo.compute(scheduler="sync", progress=False)
    assert capfd.readouterr().err == ""
    shown = pipeline().hippo.compute(scheduler="sync", progress=True)
    out = capfd.readouterr()
    assert "Completed" in out.err and "100%" in out.err and "Completed" not in out.out
    pd.testing.assert_frame_equal(quiet.sort_values("k").reset_index(drop=True), shown.sort_values("k").reset_index(drop=True))
    row_a = int(shown.index[shown.k == "a"][0])  # Dask does not sort the groups
    assert shown.hippo.lineage.backward(rows=[row_a], columns=["s"])["t"].rows.tolist() == [3, 6, 9]


def test_cluster_bar_on_stderr(store, capfd, cluster_client):
    processes, client = cluster_client
    if processes:  # the pipeline's lambdas run on worker processes
        import cloudpickle, sys
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    capfd.readouterr()
    shown = pipeline().hippo.compute(scheduler=client, progress=True)
    out = capfd.readouterr()
    assert "Completed" in out.err and "Completed" not in out.out
    plain = pipeline().hippo.compute(scheduler=client, progress=False)
    assert "Completed" not in capfd.readouterr().err
    pd.testing.assert_frame_equal(shown.sort_values("k").reset_index(drop=True), plain.sort_values("k").reset_index(drop=True))
    row_a = int(shown.index[shown.k == "a"][0])
    assert shown.hippo.lineage.backward(rows=[row_a], columns=["s"])["t"].rows.tolist() == [3, 6, 9]


def test_default_scheduler_bar(store, capfd, tmp_path):
    """No scheduler= (Dask's default threads): the bar is drawn (it crashed asking a dict of the
    collections for its scheduler), for compute() and to_parquet() alike."""
    shown = pipeline().hippo.compute(progress=True)
    assert "100%" in capfd.readouterr().err
    row_a = int(shown.index[shown.k == "a"][0])
    assert shown.hippo.lineage.backward(rows=[row_a], columns=["s"])["t"].rows.tolist() == [3, 6, 9]
    lin = pipeline().hippo.to_parquet(str(tmp_path / "out"), progress=True)
    assert "100%" in capfd.readouterr().err and lin.nrows == 3
