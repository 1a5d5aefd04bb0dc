"""Capture on a distributed cluster: workers write the fragments, the driver commits.

Runs a filter / assign / map / groupby-agg / merge-back / sort pipeline on a
``distributed.LocalCluster`` (worker processes, and a threads-only variant),
checks every answer against an expectation computed with plain pandas (source
frames carry ``rid`` = row position), and checks who wrote what: result and
group-membership fragments come from the workers, the manifest from the
driver, last. Then the failure modes: a run whose compute fails is reported
incomplete and never answers; a damaged fragment is an error naming the file.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import cloudpickle
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from tracesets import cells_of, cellset, rowset, sample_rows
import hippo_dask.store as hippo_store

# Worker processes cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)

N_ROWS = 1200
N_PARTS = 6


# --------------------------------------------------------------------------
# helpers


def make_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "rid": np.arange(n, dtype=np.int64),
            "k": rng.integers(0, 12, n).astype(np.int64),
            "x": rng.normal(size=n),
            "y": rng.integers(0, 100, n).astype(np.int64),
            "cat": rng.choice(["a", "b", "c"], n),
        }
    )










def add_pid(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(pid=np.full(len(p), os.getpid(), dtype=np.int64))


def thread_name(_: object) -> str:
    return threading.current_thread().name


def keep(p: pd.DataFrame) -> pd.Series:
    return p["y"] % 5 != 0


def zed(p: pd.DataFrame) -> pd.Series:
    return p["x"] * 2 + 1


def build_pipeline(ddf, sort: bool = True):
    src = ddf.hippo.source("events")
    f = src.hippo.filter(keep).hippo.assign(z=zed)
    f = f.hippo.map(add_pid, reads=[], writes=["pid"])
    g = f.hippo.groupby("k").agg(mz=("z", "mean"), n=("rid", "count"))
    out = f.hippo.merge(g, on="k")
    return out.hippo.sort_values("rid") if sort else out


def expected(pdf: pd.DataFrame):
    kept = pdf[pdf.y % 5 != 0]
    members = {int(k): sorted(g.rid.tolist()) for k, g in kept.groupby("k")}
    return kept, members


def check_answers(res: pd.DataFrame, lin, pdf: pd.DataFrame) -> None:
    kept, members = expected(pdf)
    assert sorted(res.rid.tolist()) == kept.rid.tolist()
    np.testing.assert_allclose(res.z.to_numpy(), pdf.x.to_numpy()[res.rid.to_numpy()] * 2 + 1)
    assert list(res.columns) == ["rid", "k", "x", "y", "cat", "z", "pid", "mz", "n"]
    for r in sample_rows(len(res)):
        rid, k = int(res.rid.iloc[r]), int(res.k.iloc[r])
        grp = members[k]
        b = lambda col: cellset(lin.backward([r], [col])["events"])  # noqa: E731
        assert b("z") == {(rid, "x")}
        assert b("cat") == {(rid, "cat")}
        assert b("pid") == set()
        assert b("mz") == cells_of(grp, ["x"])
        assert b("n") == cells_of(grp, ["rid"])
        assert b("k") == cells_of(set(grp) | {rid}, ["k"])
        whole = lin.backward([r])["events"]
        assert rowset(whole) == set(grp) | {rid}
        assert cellset(whole) == (cells_of([rid], ["rid", "k", "x", "y", "cat"])
                                  | cells_of(grp, ["x", "rid", "k"]))
    # batch
    rows = sample_rows(len(res))
    want = set()
    for r in rows:
        want |= cells_of(members[int(res.k.iloc[r])], ["x"])
    assert cellset(lin.backward(rows, ["mz"])["events"]) == want
    # forward from a kept row and from a dropped one
    for pos in kept.rid.iloc[[0, 7, len(kept) // 2]].tolist():
        own = np.flatnonzero(res.rid.to_numpy() == pos)
        grp_rows = np.flatnonzero(res.k.to_numpy() == pdf.k.iloc[pos])
        assert cellset(lin.forward("events", [pos], ["x"])) == cells_of(own, ["x", "z"]) | cells_of(grp_rows, ["mz"])
        assert rowset(lin.forward("events", [pos])) == set(grp_rows.tolist())
    dropped = int(pdf.rid[pdf.y % 5 == 0].iloc[0])
    assert len(lin.forward("events", [dropped])) == 0


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module", params=["processes", "threads"])
def cluster_client(request):
    from distributed import Client, LocalCluster

    processes = request.param == "processes"
    kwargs = {}
    if processes:
        # the worker processes must import the same hippo_dask as this one
        pkg_parent = str(Path(hippo.__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in [pkg_parent, os.environ.get("PYTHONPATH", "")] if p)
        kwargs["env"] = {"PYTHONPATH": path}
    else:
        kwargs["protocol"] = "tcp"  # host= needs tcp; the in-process default is inproc://
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0",
                      host="127.0.0.1", **kwargs) as cluster, Client(cluster, set_as_default=False) as client:
        yield processes, client


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    hippo.set_store(root)
    return root


@pytest.fixture
def write_log(monkeypatch):
    """Every store write made *in this process*: (url, thread name)."""
    log: list[tuple[str, str]] = []
    real = hippo_store.write_bytes

    def recording(url, data):
        log.append((str(url), threading.current_thread().name))
        return real(url, data)

    monkeypatch.setattr(hippo_store, "write_bytes", recording)
    return log


# --------------------------------------------------------------------------
# the pipeline on the cluster


@pytest.mark.timeout(180)
def test_pipeline_on_cluster(store, cluster_client):
    processes, client = cluster_client
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)

    res = build_pipeline(ddf).hippo.compute(scheduler=client)
    lin = res.hippo.lineage
    check_answers(res, lin, pdf)
    assert res.rid.tolist() == sorted(res.rid.tolist())
    # the same answers from the store, in a fresh Lineage
    again = hippo.open(store, lin.run_id)
    assert again.backward([3], ["mz"])["events"].cells.equals(lin.backward([3], ["mz"])["events"].cells)

    # the user functions ran on the workers
    worker_pids = set(client.run(os.getpid).values())
    assert set(res.pid.unique()) <= worker_pids
    if processes:
        assert os.getpid() not in set(res.pid)

    # what the store holds, and that the manifest names all of it
    man = lin.manifest
    run_dir = store / "runs" / lin.run_id
    frags = man["result"]["fragments"]
    on_disk = {p.name for p in run_dir.glob("result-*.hippo")}
    assert on_disk == {f["path"] for f in frags} and on_disk
    assert sum(f["rows"] for f in frags) == len(res)
    for f in frags:
        assert (run_dir / f["path"]).stat().st_size == f["bytes"]
    (gnode,) = man["group_fragments"]
    group_files = {p.name for p in (store / "fragments" / gnode).glob("*.hippo")}
    assert group_files == set(man["group_fragments"][gnode]) and group_files
    assert (run_dir / "manifest.json").is_file()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sort", [False, True], ids=["no_sort", "sort"])
def test_fragments_are_written_by_the_workers(store, cluster_client, write_log, sort):
    """``.hippo.compute(scheduler=client)``: the driver writes only the run marker and the manifest."""
    processes, client = cluster_client
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    main_thread = threading.current_thread().name
    res = build_pipeline(ddf, sort=sort).hippo.compute(scheduler=client)
    lin = res.hippo.lineage
    check_answers(res, lin, pdf)
    man = lin.manifest
    on_disk = {p.name for p in (store / "runs" / lin.run_id).glob("result-*.hippo")}
    (gnode,) = man["group_fragments"]
    group_files = {p.name for p in (store / "fragments" / gnode).glob("*.hippo")}

    # who wrote what: the driver only the run's start marker, its lease (gc keeps a live run), the
    # replay copies of the user's functions (they live on the driver) and the manifest; never a lineage fragment
    driver_main = [url for url, thread in write_log if thread == main_thread]
    code_copies = [u for u in driver_main if u.endswith(".pkl")]
    assert all(f"code{os.sep}" in u for u in code_copies)
    assert sorted(os.path.basename(u) for u in driver_main if u not in code_copies) == ["lease.json", "manifest.json",
                                                                                          "started.json"]
    assert not (store / "runs" / lin.run_id / "lease.json").exists()  # removed once the run committed
    assert write_log[-1][0].endswith("manifest.json")  # the manifest last
    fragment_writes = [(u, t) for u, t in write_log if u.endswith(".hippo")]
    if processes:
        assert fragment_writes == [], "fragments must be written by the worker processes"
    else:
        # threads-only cluster: the writes happen in this process, but on the workers' threads
        # (threads_per_worker=1: one executor thread per worker)
        workers = list(client.scheduler_info()["workers"])
        worker_threads = set(client.gather([client.submit(thread_name, w, workers=[w], pure=False) for w in workers]))
        assert fragment_writes
        assert {t for _, t in fragment_writes} <= worker_threads, "fragments must be written by the workers"
        written = {os.path.basename(u) for u, _ in fragment_writes}
        assert on_disk <= written and group_files <= written


# --------------------------------------------------------------------------
# a run killed midway


def failing_pid(p: pd.DataFrame, target: int) -> pd.DataFrame:
    if len(p) and (p["rid"] == target).any():
        raise RuntimeError(f"boom on purpose at rid {target}")
    return add_pid(p)


@pytest.mark.timeout(180)
def test_run_failing_midway_is_incomplete(store, cluster_client):
    processes, client = cluster_client
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    target = int(pdf.rid.iloc[-5])  # a row of the last partition

    # one good run first
    good = build_pipeline(ddf).hippo.compute(scheduler=client)
    good_id = good.hippo.lineage.run_id
    assert [(r.run_id, r.complete) for r in hippo.Store(store).runs()] == [(good_id, True)]

    src = ddf.hippo.source("events")
    f = src.hippo.filter(keep).hippo.assign(z=zed)
    g = f.hippo.groupby("k").agg(mz=("z", "mean"))
    meta = make_frame(0).assign(z=np.array([], dtype=float), mz=np.array([], dtype=float),
                                pid=np.array([], dtype=np.int64))
    # reads rid to decide to fail: declared (a short reads= is refused when the function indexes a column)
    out = f.hippo.merge(g, on="k").hippo.map(failing_pid, reads=["rid"], writes=["pid"], meta=meta,
                                             target=target)
    with pytest.raises(RuntimeError, match="boom on purpose"):
        out.hippo.compute(scheduler=client)

    runs = hippo.Store(store).runs()
    assert len(runs) == 2
    bad = [r for r in runs if r.run_id != good_id]
    assert len(bad) == 1 and bad[0].complete is False
    bad_id = bad[0].run_id
    bad_dir = store / "runs" / bad_id
    assert (bad_dir / "started.json").exists()  # the run began, and other partitions ran
    assert not (bad_dir / "manifest.json").exists()

    with pytest.raises(hippo.IncompleteRunError) as info:
        hippo.open(store, bad_id)
    msg = str(info.value)
    assert bad_id in msg and "failed" in msg and "hippo.debug" in msg  # a user function raised: a failed run
    assert isinstance(info.value, RuntimeError)
    assert bad[0].failed
    # the newest *complete* run is still the good one, and still answers
    latest = hippo.open(store)
    assert latest.run_id == good_id
    check_answers(good, latest, pdf)
    with pytest.raises(hippo.RunNotFoundError):
        hippo.open(store, "no-such-run")


# --------------------------------------------------------------------------
# damage


def flip(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    i = min(len(data) - 1, int(len(data) * at))
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.timeout(180)
def test_damaged_fragments_raise_corrupt_run_error(store, cluster_client):
    _, client = cluster_client
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    res = build_pipeline(ddf).hippo.compute(scheduler=client)
    run_id = res.hippo.lineage.run_id
    run_dir = store / "runs" / run_id
    man = res.hippo.lineage.manifest
    assert hippo.open(store, run_id).backward([0], ["z"])["events"].rows.tolist() == [int(res.rid.iloc[0])]

    # a flipped byte in a result fragment
    victim = run_dir / man["result"]["fragments"][0]["path"]
    pristine = victim.read_bytes()
    flip(victim)
    for query in (lambda l: l.backward([0], ["z"]), lambda l: l.forward("events", [int(res.rid.iloc[0])])):
        with pytest.raises(hippo.CorruptRunError, match=victim.name) as info:
            query(hippo.open(store, run_id))
        assert isinstance(info.value, ValueError)

    # a truncated one
    victim.write_bytes(pristine[: len(pristine) // 2])
    with pytest.raises(hippo.CorruptRunError, match=victim.name):
        hippo.open(store, run_id).backward([0])
    # a missing one
    victim.unlink()
    with pytest.raises(hippo.CorruptRunError, match=victim.name):
        hippo.open(store, run_id).backward([0])
    victim.write_bytes(pristine)
    assert hippo.open(store, run_id).backward([0], ["z"])["events"].rows.tolist() == [int(res.rid.iloc[0])]

    # a flipped byte in a group membership fragment
    (gnode,) = man["group_fragments"]
    gvictim = store / "fragments" / gnode / man["group_fragments"][gnode][0]
    flip(gvictim)
    with pytest.raises(hippo.CorruptRunError, match=gvictim.name) as info:
        hippo.open(store, run_id).backward([0], ["mz"])
    assert isinstance(info.value, ValueError)

    # a damaged manifest
    manifest = run_dir / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:-40])
    with pytest.raises(hippo.CorruptRunError, match="manifest.json") as info:
        hippo.open(store, run_id)
    assert isinstance(info.value, ValueError)
