"""An ``s3://`` store on moto's S3 server (loopback only), on a distributed LocalCluster of threads
and of worker processes.

The store's fsspec options (the endpoint and the keys) are given to ``hippo.set_store`` only: the
environment of this process and of the worker processes holds no AWS credentials and points any
S3 client that was not given the options at a closed loopback port, so a store access that drops
them fails at once instead of writing somewhere else. Every answer on the s3 store must equal the
answer of the same pipeline on a local store, and the expectation computed with plain pandas
(``test_cluster.check_answers``). Then the faults: the server going away while a compute runs
(between two tasks, or between the workers' writes and the manifest) is a ``StoreWriteError``
naming the store; that run never answers, and the runs committed before still answer exactly.

moto keeps its buckets in module state of this process, so a server stopped and started again on
the same port serves the same objects (the store "comes back").
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import cloudpickle
import dask.dataframe as dd
import pandas as pd
import pytest

if not os.environ.get("CI"):  # CI installs the test extra (s3fs, moto[server]): a missing one must fail there
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")

import s3fs
from moto.server import ThreadedMotoServer

import hippo_dask as hippo
import hippo_dask.store as hippo_store
from test_cluster import N_PARTS, add_pid, build_pipeline, check_answers, keep, make_frame, zed
from tracesets import cellset, rowset, sample_rows

# Worker processes cannot import this module: ship its functions by value (test_cluster does the same).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)

#: Where an S3 client that was not given the store's options would go: a closed port on loopback.
NOWHERE = "http://127.0.0.1:9"
#: The environment of this process and the worker processes: no credentials, no ~/.aws, no
#: instance metadata service (off loopback), and the endpoint above.
CLEAN_ENV = {"AWS_ENDPOINT_URL": NOWHERE, "AWS_EC2_METADATA_DISABLED": "true",
             "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server on 127.0.0.1 that can go away and come back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            wsgi = getattr(self._server, "_server", None)
            if wsgi is not None:
                wsgi.server_close()  # stop() leaves the socket listening: close it, so connecting fails
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def options(self) -> dict:
        """The store's fsspec (s3fs) options: dummy keys, the endpoint, and a client that fails fast when the
        server is gone (one retry, no kept-alive connections that would outlive a stopped server)."""
        return {"key": "hippo-test-key", "secret": "hippo-test-secret",
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
                "config_kwargs": {"retries": {"total_max_attempts": 2}, "connect_timeout": 5, "read_timeout": 60,
                                  "connector_args": {"force_close": True, "keepalive_timeout": None}}}

    def bucket(self) -> str:
        """A new, empty bucket."""
        import boto3  # moto's own dependency (s3fs would send us-east-1 as a location constraint, which S3 refuses)

        name = f"hippo-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="hippo-test-key",
                     aws_secret_access_key="hippo-test-secret", region_name="us-east-1").create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="module")
def s3():
    werkzeug = logging.getLogger("werkzeug")  # moto's request log
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            mp.delenv(name)
        for name, value in CLEAN_ENV.items():
            mp.setenv(name, value)
        server = S3Server()
        server.start()
        try:
            yield server
        finally:
            server.stop()
            werkzeug.setLevel(level)


@pytest.fixture(scope="module", params=["threads", "processes"])
def cluster(request, s3):
    """A 2-worker LocalCluster on loopback; worker processes get ``CLEAN_ENV`` (no credentials)."""
    from distributed import Client, LocalCluster

    processes = request.param == "processes"
    kwargs: dict = {"protocol": "tcp"} if not processes else {}
    if processes:
        pkg_parent = str(Path(hippo.__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in [pkg_parent, os.environ.get("PYTHONPATH", "")] if p)
        kwargs["env"] = {"PYTHONPATH": path, **CLEAN_ENV}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None,
                      host="127.0.0.1", **kwargs) as c, Client(c, set_as_default=False) as client:
        if processes:  # the workers see no credentials: only the store's options can reach the bucket
            seen = client.run(lambda: sorted(k for k in os.environ if k.startswith("AWS_")))
            assert all(v == sorted(CLEAN_ENV) for v in seen.values()), seen
        yield processes, client


@pytest.fixture
def s3_store(s3):
    """A store in a new bucket, set as the current store with the server's options; ``(url, store)``."""
    if not s3.running:  # a test before failed while the server was away
        s3.start()
    # no s3fs instance made by another test (one made with the CLI test's environment reaches the server
    # without options, and would hide a path that drops them)
    s3fs.S3FileSystem.clear_instance_cache()
    url = f"s3://{s3.bucket()}/lineage"
    previous = hippo_store._default_store
    yield url, hippo.set_store(url, **s3.options())
    hippo_store._default_store = previous  # not a store on a server that stops with this module
    s3fs.S3FileSystem.clear_instance_cache()


def test_store_paths_carry_the_options_and_never_show_them():
    """What the workers get: every path a Store hands out pickles with the store's options, and prints and
    tokenizes as the bare URL (no key in a message, a repr or a Dask key)."""
    import pickle

    from dask.base import tokenize

    from hippo_dask.store import Location, url_to_fs

    store = hippo.Store("s3://bucket/lineage", key="K3Y", secret="S3CRET", client_kwargs={"endpoint_url": NOWHERE})
    paths = [store.fragment_dir("n1"), store.code_dir("n1"), store.run_dir("r1"),
             store.child(store.run_dir("r1"), "result-00000.hippo")]
    for path in paths:
        assert isinstance(path, Location) and path.startswith("s3://bucket/lineage/")
        shipped = pickle.loads(cloudpickle.dumps(path))
        assert shipped == path and shipped.storage_options == store.storage_options
        assert url_to_fs(shipped)[0].key == "K3Y"
        assert "S3CRET" not in repr(path) + str(path) + f"{path}" and tokenize(path) == tokenize(str(path))
    assert "S3CRET" not in repr(store)
    with pytest.raises(hippo.StoreError, match="own storage options"):
        hippo.set_store(store, key="other")


# --------------------------------------------------------------------------
# answers


def answers(lin, res: pd.DataFrame, pdf: pd.DataFrame) -> dict:
    """Every backward and forward answer the checks look at, as plain sets (comparable across stores)."""
    out: dict = {}
    rows = sample_rows(len(res), k=10)
    for r in rows:
        for col in res.columns:
            out["b", r, col] = cellset(lin.backward([r], [col])["events"])
        whole = lin.backward([r])["events"]
        out["b", r] = (rowset(whole), cellset(whole))
    everything = lin.backward(list(range(len(res))))["events"]
    out["b", "all"] = (rowset(everything), cellset(everything))
    out["b", "batch", "mz"] = cellset(lin.backward(rows, ["mz"])["events"])
    for pos in sample_rows(len(pdf), k=8, seed=2):
        out["f", pos] = (rowset(lin.forward("events", [pos])), cellset(lin.forward("events", [pos])))
        for col in ["x", "k", "y", "cat"]:
            out["f", pos, col] = cellset(lin.forward("events", [pos], [col]))
    return out


def test_pipeline_on_an_s3_store_answers_as_on_a_local_one(s3, s3_store, cluster, tmp_path):
    """filter / assign / map / groupby-agg / merge / sort on the cluster, lineage in s3://: the workers write
    the fragments with the store's options; every answer equals the local store's and pandas'."""
    url, store = s3_store
    processes, client = cluster
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)

    res = build_pipeline(ddf).hippo.compute(scheduler=client)
    lin = res.hippo.lineage
    assert lin.store == store and lin.store.url == url
    check_answers(res, lin, pdf)
    got = answers(lin, res, pdf)

    # what the bucket holds: the manifest names exactly the fragments the workers wrote
    fs = s3fs.S3FileSystem(**s3.options(), skip_instance_cache=True)
    root = url[len("s3://"):]
    man = lin.manifest
    run_files = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/runs/{lin.run_id}")}
    results = {f["path"] for f in man["result"]["fragments"]}
    assert results and {n for n in run_files if n.startswith("result-")} == results
    assert {"manifest.json", "started.json"} <= run_files
    assert not [n for n in run_files if ".tmp-" in n]
    (gnode,) = man["group_fragments"]
    assert {p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/fragments/{gnode}")} == set(man["group_fragments"][gnode])
    if processes:
        assert os.getpid() not in set(res.pid)  # the user function, and the writes after it, ran elsewhere

    # a fresh Store with the options (another session: its own s3fs instance) answers the same
    s3fs.S3FileSystem.clear_instance_cache()
    again = hippo.open(hippo.Store(url, **s3.options()), lin.run_id)
    assert answers(again, res, pdf) == got
    assert [r.run_id for r in again.store.runs()] == [lin.run_id]
    by_url = hippo.open(url, lin.run_id, **s3.options())  # the URL with its options, as set_store takes them
    assert answers(by_url, res, pdf) == got
    with pytest.raises(hippo.StoreError, match="a Store already has its own"):
        hippo.open(again.store, lin.run_id, **s3.options())

    # the same pipeline with a local store: the same answers, row for row
    hippo.set_store(tmp_path / "local")
    local_res = build_pipeline(dd.from_pandas(pdf, npartitions=N_PARTS)).hippo.compute(scheduler=client)
    pd.testing.assert_frame_equal(local_res.drop(columns="pid"), res.drop(columns="pid"))
    local = local_res.hippo.lineage
    check_answers(local_res, local, pdf)
    assert answers(local, local_res, pdf) == got
    # byte for byte: fragments are named by their checksums
    assert local.manifest["group_fragments"] == man["group_fragments"]
    checksums = lambda m: [f["checksum"] for f in m["result"]["fragments"]]  # noqa: E731
    assert checksums(local.manifest) == checksums(man)


@pytest.mark.parametrize("cluster", ["processes"], indirect=True)
def test_to_parquet_in_the_bucket_from_worker_processes(s3, s3_store, cluster):
    """``to_parquet``: each worker process writes its rows (the folder's options) and its result fragment (the
    store's options) into the bucket; the rows in file order answer as pandas says."""
    url, store = s3_store
    _, client = cluster
    pdf = make_frame()
    folder = url.rsplit("/", 1)[0] + "/out"
    lin = build_pipeline(dd.from_pandas(pdf, npartitions=N_PARTS), sort=False).hippo.to_parquet(
        folder, storage_options=s3.options(), scheduler=client)
    written = pd.read_parquet(folder, storage_options=s3.options())
    assert lin.nrows == len(written) and len(lin.manifest["result"]["fragments"]) > 1
    check_answers(written, hippo.open(hippo.Store(url, **s3.options()), lin.run_id), pdf)


def test_without_the_options_nothing_reaches_the_bucket(s3, s3_store):
    """The guard the test above relies on: a client without the store's options finds no credentials
    (so a path that dropped them would fail, never write elsewhere)."""
    url, store = s3_store
    pd.DataFrame({"x": [1, 2, 3]}).hippo.source("xs").hippo.compute()
    assert len(store.runs()) == 1
    with pytest.raises(Exception, match="credentials"):
        hippo.Store(url, skip_instance_cache=True).runs()


def test_the_cli_reads_an_s3_store_from_the_aws_environment(s3, s3_store, monkeypatch, capsys):
    """``hippo runs --store s3://...``: no flags for keys or endpoints, s3fs reads the standard variables."""
    url, store = s3_store
    xs = pd.DataFrame({"x": [1, 2, 3]}).hippo.source("xs")
    lin = xs.hippo.filter(lambda p: p.x > 1).hippo.compute().hippo.lineage
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "hippo-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hippo-test-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()  # one made before the variables were set would be reused
    from hippo_dask.cli import main

    assert main(["runs", "--store", url]) == 0
    assert lin.run_id in capsys.readouterr().out
    opened = hippo.open(url, lin.run_id)
    assert list(opened.backward([0])["xs"].rows) == [1]


def test_storage_of_a_run_in_an_s3_store(s3, s3_store, tmp_path):
    """``lin.storage()`` sizes the run's files in the bucket: the same fragments, of the same sizes, as locally."""
    url, store = s3_store
    frame = pd.DataFrame({"k": ["a", "b", "a", "c"], "x": [1, 2, 3, 4]})
    on_s3 = frame.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute().hippo.lineage
    table = on_s3.storage()
    hippo.set_store(tmp_path / "local")
    local = frame.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute().hippo.lineage.storage()
    cols = ["op", "fragments", "bytes"]
    pd.testing.assert_frame_equal(table[cols].iloc[:-1], local[cols].iloc[:-1])


def test_a_reader_sees_runs_committed_after_it_listed_the_store(s3, s3_store):
    """Another session's Store (its own filesystem instance and listing cache) that listed the store before a
    run committed sees that run: listings are not answered from a cache."""
    url, store = s3_store
    first = pd.DataFrame({"x": [1, 2]}).hippo.source("xs").hippo.compute().hippo.lineage.run_id
    reader = hippo.Store(url, **s3.options(), default_block_size=2**20)  # another s3fs instance, its own cache
    assert reader.fs is not store.fs
    assert [r.run_id for r in reader.runs()] == [first]
    assert hippo.open(reader).run_id == first
    pending = store.start_run()  # started, not committed yet
    assert [(r.run_id, r.complete) for r in reader.runs()] == [(first, True), (pending, False)]
    with pytest.raises(hippo.IncompleteRunError):
        hippo.open(reader, pending)
    second = pd.DataFrame({"x": [3, 4, 5]}).hippo.source("xs").hippo.compute().hippo.lineage.run_id
    assert [r.run_id for r in reader.runs() if r.complete] == [first, second]
    assert hippo.open(reader).run_id == second and hippo.open(reader).nrows == 3
    assert hippo.open(reader, second).nrows == 3


# --------------------------------------------------------------------------
# the server going away


def wait_for_outage(p: pd.DataFrame, flags: str) -> pd.DataFrame:
    """A user function that, on real partitions (not Dask's few fake meta rows), says it runs and waits until
    the test took the server away; the writes after it (group memberships, result) find no server."""
    if len(p) > 20:
        Path(flags, "reached").touch()
        deadline = time.monotonic() + 60
        while not Path(flags, "down").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never took the server away")
            time.sleep(0.02)
    return add_pid(p)


def take_server_away_when_reached(s3: S3Server, flags: Path) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 60
        while not (flags / "reached").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        s3.stop()
        (flags / "down").touch()

    thread = threading.Thread(target=run, name="take-server-away", daemon=True)
    thread.start()
    return thread


def outage_pipeline(ddf, flags: Path):
    src = ddf.hippo.source("events")
    f = src.hippo.filter(keep).hippo.assign(z=zed)
    f = f.hippo.map(wait_for_outage, reads=[], writes=["pid"], flags=str(flags))
    g = f.hippo.groupby("k").agg(mz=("z", "mean"), n=("rid", "count"))
    return f.hippo.merge(g, on="k").hippo.sort_values("rid")


def check_failed_run(s3: S3Server, url: str, good: pd.DataFrame, good_answers: dict, pdf: pd.DataFrame,
                     error: pytest.ExceptionInfo) -> None:
    """The error names the store; with the server back, the failed run never answers and the good one
    answers exactly as before."""
    assert isinstance(error.value, OSError) and isinstance(error.value, hippo.HippoError)
    assert url + "/" in str(error.value) and "not committed" in str(error.value)
    assert not s3.running
    s3.start()
    store = hippo.Store(url, **s3.options())
    runs = store.runs()
    good_id = good.hippo.lineage.run_id
    (bad,) = [r for r in runs if r.run_id != good_id]
    assert not bad.complete and not bad.failed
    with pytest.raises((hippo.IncompleteRunError, hippo.RunNotFoundError)):
        hippo.open(store, bad.run_id)
    latest = hippo.open(store)
    assert latest.run_id == good_id
    check_answers(good, latest, pdf)
    assert answers(latest, good, pdf) == good_answers


def committed_before(client) -> tuple:
    """A run committed before the outage: (its frame, as Dask, its result, its answers)."""
    pdf = make_frame()
    ddf = dd.from_pandas(pdf, npartitions=N_PARTS)
    good = build_pipeline(ddf).hippo.compute(scheduler=client)
    return pdf, ddf, good, answers(good.hippo.lineage, good, pdf)


def test_the_server_going_away_mid_compute(s3, s3_store, cluster, tmp_path):
    """The server stops while the workers compute (after a user function, before the fragments after it are
    written): a StoreWriteError naming the store, from the worker's write."""
    url, store = s3_store
    _, client = cluster
    pdf, ddf, good, good_answers = committed_before(client)

    flags = tmp_path / "flags"
    flags.mkdir()
    out = outage_pipeline(ddf, flags)
    thread = take_server_away_when_reached(s3, flags)
    try:
        with pytest.raises(hippo.StoreWriteError) as error:
            out.hippo.compute(scheduler=client)
    finally:
        thread.join(70)
        if not s3.running and not (flags / "down").exists():
            s3.start()
    assert "/fragments/" in str(error.value) or "/result-" in str(error.value)  # a worker's write
    check_failed_run(s3, url, good, good_answers, pdf, error)


@pytest.mark.parametrize("cluster", ["threads"], indirect=True)  # the driver commits, whatever the workers are
def test_the_server_going_away_before_the_commit(s3, s3_store, cluster, monkeypatch):
    """The server stops after every worker wrote its fragments, before the driver writes the manifest: the run
    stays uncommitted, the error names the manifest in the store."""
    url, store = s3_store
    _, client = cluster
    pdf, ddf, good, good_answers = committed_before(client)

    real_commit = hippo.Store.commit_run

    def commit_after_outage(self, run_id, manifest):
        s3.stop()
        return real_commit(self, run_id, manifest)

    monkeypatch.setattr(hippo.Store, "commit_run", commit_after_outage)
    try:
        with pytest.raises(hippo.StoreWriteError) as error:
            build_pipeline(ddf).hippo.compute(scheduler=client)
    finally:
        monkeypatch.undo()
    assert "manifest.json" in str(error.value)
    check_failed_run(s3, url, good, good_answers, pdf, error)
