"""Faults during capture, each checked against plain pandas or a clean refusal.

- a Dask worker process killed in the middle of a compute (Distributed recomputes what it held; hippo
  computes once more when computed tasks were lost, so a result never mixes two attempts of a task);
- several pipelines computing into one store at once (threads and separate processes), with
  queries, listings and ``gc`` running meanwhile;
- a reader while a run is being written;
- the store's disk filling up part-way (``ENOSPC``), for fragment writes and for the manifest.

Answers are checked with ``test_cluster.check_answers`` (expectations from plain pandas; the source
frame's ``rid`` is the row position). A fault either leaves a run that answers exactly, or a run that
refuses (``IncompleteRunError``) with runs committed before it untouched: never a run whose answers
mix attempts or runs.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import dask.dataframe as dd
import fsspec.implementations.local as fsspec_local
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.cli import main as cli_main
from test_cluster import N_PARTS, build_pipeline, check_answers, keep, make_frame, zed
from tracesets import cellset, rowset

# Worker processes cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)

TESTS = Path(__file__).resolve().parent


def group_files(store: Path, lin: hippo.Lineage) -> dict[str, set[str]]:
    """Group-by node -> the fragment files on disk (temporary files left by a killed write aside)."""
    return {node: {p.name for p in (store / "fragments" / node).glob("*.hippo")} for node in lin.manifest["group_fragments"]}


def assert_fragments_are_the_runs(store: Path, lin: hippo.Lineage) -> None:
    """The run names one membership fragment per input partition, and nothing else is on disk beside them."""
    man = lin.manifest
    assert {n: set(f) for n, f in man["group_fragments"].items()} == group_files(store, lin)
    assert all(len(f) == N_PARTS for f in man["group_fragments"].values())
    assert len(man["result"]["fragments"]) == 1


# --------------------------------------------------------------------------
# 1. a worker process killed while the compute runs


def die_once(p: pd.DataFrame, target: int, marker: str, driver: int) -> None:
    """The first worker process to see row ``target`` kills itself (SIGKILL, no cleanup); a marker file makes it once."""
    if os.getpid() != driver and len(p) and bool((p["rid"] == target).any()):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once: a recomputation goes through
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


def keep_or_die(p: pd.DataFrame, target: int, marker: str, driver: int) -> pd.Series:
    die_once(p, target, marker, driver)
    return keep(p)


def die_then_tag(p: pd.DataFrame, target: int, marker: str, driver: int) -> pd.DataFrame:
    die_once(p, target, marker, driver)
    return p.assign(tag=np.int64(1))


def killing_pipeline(ddf, where: str, target: int, marker: str):
    """``build_pipeline`` with a worker killed in the filter (before any fragment of that partition is written)
    or in a map after the merge (after every membership fragment was written; its outputs are lost)."""
    kill = dict(target=target, marker=marker, driver=os.getpid())
    src = ddf.hippo.source("events")
    predicate = functools.partial(keep_or_die, **kill) if where == "filter" else keep
    f = src.hippo.filter(predicate).hippo.assign(z=zed)
    f = f.hippo.map(add_pid, reads=[], writes=["pid"])
    g = f.hippo.groupby("k").agg(mz=("z", "mean"), n=("rid", "count"))
    out = f.hippo.merge(g, on="k")
    if where == "after_merge":
        out = out.hippo.map(die_then_tag, reads=["rid"], writes=["tag"], **kill)
    return out.hippo.sort_values("rid")


def add_pid(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(pid=np.full(len(p), os.getpid(), dtype=np.int64))


@pytest.fixture
def process_cluster():
    """A fresh 2-worker process cluster per test (a killed worker's nanny may not bring it back)."""
    from distributed import Client, LocalCluster

    pkg_parent = str(Path(hippo.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in [pkg_parent, str(TESTS), os.environ.get("PYTHONPATH", "")] if p)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      env={"PYTHONPATH": path}) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.mark.parametrize("where", ["filter", "after_merge"])
def test_a_worker_killed_midway_is_recovered_exactly(store, process_cluster, tmp_path, where):
    """Distributed recomputes the killed worker's tasks elsewhere; the run answers exactly, and names
    only fragments of the tasks whose outputs made the result (content-named: a recomputation rewrites
    the same file), one per partition, nothing from the dead attempt beside them."""
    client = process_cluster
    store = Path(store.url)
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    target = int(pdf.rid[pdf.y % 5 != 0].iloc[-5])  # a kept row of the last partition
    marker = str(tmp_path / "killed")
    pids_before = set(client.run(os.getpid).values())

    res = killing_pipeline(ddf, where, target, marker).hippo.compute(scheduler=client)

    killed = int(Path(marker).read_text())
    assert killed in pids_before  # a worker process really died midway
    assert killed not in set(client.run(os.getpid).values())
    lin = res.hippo.lineage
    if where == "after_merge":
        assert (res.tag == 1).all()
        res = res.drop(columns=["tag"])
    check_answers(res, lin, pdf)
    check_answers(res, hippo.open(store, lin.run_id), pdf)
    assert_fragments_are_the_runs(store, lin)
    assert [(r.run_id, r.complete) for r in hippo.Store(store).runs()] == [(lin.run_id, True)]


def test_a_worker_killed_under_a_function_that_differs_between_attempts(store, process_cluster, tmp_path):
    """Group by the worker's process id (a value a recomputation changes), kill a worker after the merge.

    Distributed recomputes only the lost outputs, so before the fix the result mixed two attempts
    (a group's count from the first, its rows' keys from the second) and the memberships named the
    other attempt's fragments: ``backward`` gave no rows, or other rows, for a count. hippo now computes
    again when the cluster lost computed tasks (``compute.compute_without_lost_tasks``): the run's result
    and lineage come from one compute in which every task ran once.
    """
    client = process_cluster
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    marker = str(tmp_path / "killed")
    pids_before = set(client.run(os.getpid).values())
    f = ddf.hippo.source("events").hippo.map(add_pid, reads=[], writes=["pid"])
    g = f.hippo.groupby("pid").agg(n=("rid", "count"), sx=("x", "sum"))
    out = f.hippo.merge(g, on="pid").hippo.map(die_then_tag, reads=["rid"], writes=["tag"], target=1100,
                                               marker=marker, driver=os.getpid())
    res = out.hippo.sort_values("rid").hippo.compute(scheduler=client)

    assert int(Path(marker).read_text()) in pids_before  # a worker died midway
    assert res.rid.tolist() == pdf.rid.tolist()
    lin = hippo.open(store, res.hippo.lineage.run_id)
    for pid, grp in res.groupby("pid"):
        members = sorted(grp.rid.tolist())
        # the result is one compute's: a group's count is the number of its rows ...
        assert (grp.n == len(members)).all()
        np.testing.assert_allclose(grp.sx.to_numpy(), pdf.x.to_numpy()[members].sum())
        # ... and its lineage is exactly those rows
        for r in (int(grp.index[0]), int(grp.index[-1])):
            assert rowset(lin.backward([r], ["n"])["events"]) == set(members)
            assert cellset(lin.backward([r], ["sx"])["events"]) == {(m, "x") for m in members}
        assert rowset(lin.forward("events", [members[0]])) == set(grp.index.tolist())


# --------------------------------------------------------------------------
# 2. pipelines computing into one store at once, queried meanwhile

SEEDS_THREADS = (11, 12, 13)
SEEDS_PROCESSES = (21, 22, 23)

CHILD = """
import sys
sys.path[:0] = [{tests!r}]
import dask.dataframe as dd
import hippo_dask as hippo
from test_cluster import N_PARTS, build_pipeline, make_frame
hippo.set_store({store!r})
ddf = dd.from_pandas(make_frame(seed={seed}), npartitions=N_PARTS)
res = build_pipeline(ddf).hippo.compute(scheduler="threads", num_workers=2)
plain = res.copy()
plain.attrs = {{}}  # the lineage handle rides in attrs; pandas writes attrs into parquet as JSON
plain.to_parquet({out!r})
print(res.hippo.lineage.run_id)
"""


def probe(lin: hippo.Lineage) -> tuple:
    """A few answers of a run, to compare what a reader saw while others wrote with the checked answers."""
    return (lin.nrows, sorted(cellset(lin.backward([0, 5], ["mz"])["events"])),
            sorted(cellset(lin.backward([lin.nrows - 1])["events"])), sorted(rowset(lin.forward("events", [3]))))


def test_concurrent_captures_and_queries_on_one_store(store, tmp_path):
    """Three pipelines in threads and three in other processes compute into one store at once, while
    readers list runs, open every run (complete ones answer, others refuse) and a gc removes failed
    runs. Every run answers exactly its own pipeline; listing never fails."""
    url = store.url
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(Path(hippo.__file__).parents[1]),
                                                                    os.environ.get("PYTHONPATH", "")] if p))
    children = {seed: subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(TESTS), store=url, seed=seed,
                                                                         out=str(tmp_path / f"res-{seed}.parquet"))],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for seed in SEEDS_PROCESSES}

    results: dict[int, pd.DataFrame] = {}
    errors: list[BaseException] = []
    seen: dict[str, tuple] = {}  # run id -> what a reader got from it while the others computed
    stop = threading.Event()

    def capture(seed: int) -> None:
        try:
            ddf = dd.from_pandas(make_frame(seed=seed), npartitions=N_PARTS)
            results[seed] = build_pipeline(ddf).hippo.compute(scheduler="threads", num_workers=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        listings = 0
        try:
            while not stop.is_set() or listings < 3:
                runs = hippo.Store(url).runs()
                listings += 1
                assert len({r.run_id for r in runs}) == len(runs)
                for info in runs:
                    try:
                        lin = hippo.open(url, info.run_id)
                    except (hippo.IncompleteRunError, hippo.RunNotFoundError):
                        assert not info.complete or info.failed  # not committed yet (or a failed run, gc'd)
                        continue
                    if info.run_id not in seen and "events" in lin.manifest["sources"]:
                        seen[info.run_id] = probe(lin)
                if any(r.complete for r in runs):
                    assert hippo.open(url).run_id in {r.run_id for r in hippo.Store(url).runs() if r.complete}
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def churn() -> None:  # failed runs appear and gc removes them, under the readers' listings
        try:
            s = hippo.Store(url)
            while not stop.is_set():
                s.fail_run(s.start_run(), {"error": "on purpose"}, {})
                assert all(reason.startswith("failed") for reason in s.gc().values())
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=capture, args=(seed,)) for seed in SEEDS_THREADS]
    helpers = [threading.Thread(target=read), threading.Thread(target=read), threading.Thread(target=churn)]
    for t in writers + helpers:
        t.start()
    for t in writers:
        t.join()
    outputs = {seed: child.communicate(timeout=100) for seed, child in children.items()}
    stop.set()
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]

    run_of: dict[str, tuple[int, pd.DataFrame]] = {}
    for seed, res in results.items():
        run_of[res.hippo.lineage.run_id] = (seed, res)
    for seed, (out, err) in outputs.items():
        assert children[seed].returncode == 0, err
        run_of[out.strip().splitlines()[-1]] = (seed, pd.read_parquet(tmp_path / f"res-{seed}.parquet"))
    assert len(run_of) == 6
    complete = {r.run_id for r in hippo.Store(url).runs() if r.complete}
    assert complete == set(run_of)
    for run_id, (seed, res) in run_of.items():
        lin = hippo.open(url, run_id)
        check_answers(res, lin, make_frame(seed=seed))
        if run_id in seen:
            assert seen[run_id] == probe(lin)
    assert seen  # the readers did open runs while others were being written


# --------------------------------------------------------------------------
# 3. a reader while a run is being written

GATES: dict[str, tuple[threading.Event, threading.Event]] = {}


def gated(p: pd.DataFrame, gate: str) -> pd.DataFrame:
    """Pass ``p`` through; the first real partition waits until the test opens the gate."""
    entered, release = GATES[gate]
    if len(p) > 20 and not entered.is_set():
        entered.set()
        assert release.wait(60), "the test never opened the gate"
    return p


def test_a_reader_sees_only_complete_runs_while_one_is_written(store, tmp_path):
    url = store.url
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    first = build_pipeline(ddf).hippo.compute(scheduler="threads")
    first_id = first.hippo.lineage.run_id

    gate = "reader"
    GATES[gate] = entered, release = threading.Event(), threading.Event()
    pdf2 = make_frame(seed=5)
    # gated after the merge: every membership fragment of the live run is written when it waits
    live = build_pipeline(dd.from_pandas(pdf2, npartitions=N_PARTS), sort=False)
    live = live.hippo.map(gated, reads=[], writes=[], gate=gate).hippo.sort_values("rid")
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["res"] = live.hippo.compute(scheduler="threads", num_workers=2)
        except BaseException as exc:  # noqa: BLE001
            done["error"] = exc
        finally:
            release.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert entered.wait(60)
        runs = hippo.Store(url).runs()
        assert [r.run_id for r in runs if r.complete] == [first_id]
        (live_id,) = [r.run_id for r in runs if not r.complete]
        assert list((Path(url) / "fragments").glob("*/*.hippo"))  # the live run has written fragments
        # the newest complete run, not the one being written
        latest = hippo.open(url)
        assert latest.run_id == first_id
        check_answers(first, latest, pdf)
        with pytest.raises(hippo.IncompleteRunError, match=live_id):
            hippo.open(url, live_id)
        # gc leaves the live run (and the complete one) alone
        assert hippo.Store(url).gc() == {}
        assert hippo.Store(url).gc(older_than=60) == {}
        assert cli_main(["gc", "--store", url]) in (0, None)
        assert (Path(url) / "runs" / live_id / "started.json").exists()
        assert [r.run_id for r in hippo.Store(url).runs()] == [first_id, live_id]
    finally:
        release.set()
        thread.join(60)
        GATES.pop(gate, None)
    if "error" in done:
        raise done["error"]
    res = done["res"]
    assert res.hippo.lineage.run_id == live_id
    check_answers(res, hippo.open(url, live_id), pdf2)
    assert hippo.open(url).run_id == live_id
    check_answers(first, hippo.open(url, first_id), pdf)


# --------------------------------------------------------------------------
# 4. the disk fills up part-way


class DiskFull:
    """Every write to a file whose name contains ``which`` fails with ENOSPC once ``after`` of them succeeded.

    Patched into fsspec's local file (what the store writes through), so the store's own handling of
    the error is what is tested. In threads mode the workers share this process.
    """

    def __init__(self, monkeypatch, which: str, after: int) -> None:
        self.which, self.after, self.ok, self.failed = which, after, 0, 0
        self.lock = threading.Lock()
        real = fsspec_local.LocalFileOpener.write

        def write(opener, *args, **kwargs):
            if self.which in os.path.basename(opener.path):
                with self.lock:
                    full = self.ok >= self.after
                    self.failed += full
                    self.ok += not full
                if full:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(opener, *args, **kwargs)

        monkeypatch.setattr(fsspec_local.LocalFileOpener, "write", write)


@pytest.mark.parametrize("which,after", [(".hippo.tmp", 0), (".hippo.tmp", 3), ("manifest.json", 0)],
                         ids=["first_fragment", "fourth_fragment", "manifest"])
def test_a_full_disk_is_a_clear_error_and_commits_nothing(store, monkeypatch, which, after):
    url = store.url
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    good = build_pipeline(ddf).hippo.compute(scheduler="threads")
    good_id = good.hippo.lineage.run_id

    pdf2 = make_frame(seed=3)
    with monkeypatch.context() as patch:
        full = DiskFull(patch, which, after)
        with pytest.raises(hippo.StoreWriteError) as info:
            build_pipeline(dd.from_pandas(pdf2, npartitions=N_PARTS)).hippo.compute(scheduler="threads")
    assert full.failed >= 1 and full.ok == after
    error = info.value
    msg = str(error)
    assert isinstance(error, OSError) and isinstance(error, hippo.HippoError)
    assert error.errno == errno.ENOSPC
    assert "No space left on device" in msg and "ENOSPC" in msg and "could not be written" in msg
    assert url in msg and which.split(".tmp")[0] in msg and ".tmp" not in msg  # names the file, not its temporary
    assert "not committed" in msg

    # the run is there, uncommitted, and refuses; no temporary file is left behind
    runs = hippo.Store(url).runs()
    assert [(r.run_id == good_id, r.complete) for r in runs] == [(True, True), (False, False)]
    bad_id = runs[1].run_id
    with pytest.raises(hippo.IncompleteRunError, match=bad_id):
        hippo.open(url, bad_id)
    assert not (Path(url) / "runs" / bad_id / "manifest.json").exists()
    assert not [p for p in Path(url).rglob("*") if ".tmp-" in p.name]
    # the run committed before still answers exactly, and is the newest complete one
    assert hippo.open(url).run_id == good_id
    check_answers(good, hippo.open(url, good_id), pdf)

    # space back: the same pipeline computes and answers
    again = build_pipeline(dd.from_pandas(pdf2, npartitions=N_PARTS)).hippo.compute(scheduler="threads")
    check_answers(again, hippo.open(url, again.hippo.lineage.run_id), pdf2)
    assert hippo.open(url).run_id == again.hippo.lineage.run_id


def fill_the_disk(which: str, after: int) -> None:
    """On a worker process: from now on, ENOSPC for writes to ``which`` files after ``after`` succeeded."""
    opener = fsspec_local.LocalFileOpener
    real = opener.__dict__.get("_real_write", opener.write)
    count = {"ok": 0}

    def write(self, *args, **kwargs):
        if which in os.path.basename(self.path):
            if count["ok"] >= after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            count["ok"] += 1
        return real(self, *args, **kwargs)

    opener._real_write = real
    opener.write = write


def free_the_disk() -> None:
    opener = fsspec_local.LocalFileOpener
    if "_real_write" in opener.__dict__:
        opener.write = opener._real_write
        del opener._real_write


def test_a_full_disk_on_a_worker_process_is_a_clear_error(store, process_cluster):
    """The disk fills up under the worker processes (each writes one fragment, then fails): the error
    that crosses back to the driver is the same clear StoreWriteError; nothing is committed."""
    client = process_cluster
    url = store.url
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    good = build_pipeline(ddf).hippo.compute(scheduler=client)
    client.run(fill_the_disk, ".hippo.tmp", 1)
    try:
        with pytest.raises(hippo.StoreWriteError,
                           match=r"could not be written: .*\.hippo: No space left on device \(ENOSPC\)") as info:
            build_pipeline(dd.from_pandas(make_frame(seed=4), npartitions=N_PARTS)).hippo.compute(scheduler=client)
    finally:
        client.run(free_the_disk)
    assert info.value.errno == errno.ENOSPC and url in str(info.value)
    runs = hippo.Store(url).runs()
    assert [r.complete for r in runs] == [True, False]
    with pytest.raises(hippo.IncompleteRunError):
        hippo.open(url, runs[1].run_id)
    check_answers(good, hippo.open(url), pdf)
    again = build_pipeline(ddf).hippo.compute(scheduler=client)
    check_answers(again, hippo.open(url, again.hippo.lineage.run_id), pdf)
