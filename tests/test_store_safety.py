"""A store is data that can be shared: ids and names taken from a caller or a manifest cannot reach
outside it (issue 11). Traversal, absolute paths, symbolic links in a local store, oversized and
malformed manifests: each a clear error, and nothing outside the store is read."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.errors import CorruptRunError, StoreError


def committed(store_path) -> tuple[hippo.Store, str]:
    store = hippo.set_store(store_path)
    df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]})
    out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    return store, out.hippo.lineage.run_id


def edit_manifest(store: hippo.Store, run_id: str, edit) -> None:
    path = os.path.join(store.root, "runs", run_id, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)


@pytest.mark.parametrize("run_id", ["../../elsewhere", "..", "/etc", "a/b", "runs/../x", ".hidden", "", "x" * 300, 7])
def test_run_ids_cannot_leave_the_store(tmp_path, run_id):
    store, _ = committed(tmp_path / "store")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(StoreError, match="not a name inside a store"):
        hippo.open(store, run_id)


def test_fragment_names_from_a_manifest_cannot_leave_the_store(tmp_path):
    store, run_id = committed(tmp_path / "store")
    secret = tmp_path / "secret.hippo"
    secret.write_bytes(b"not yours")

    def traverse(m):
        m["result"]["fragments"][0]["path"] = "../../../secret.hippo"
    edit_manifest(store, run_id, traverse)
    with pytest.raises(StoreError, match="result fragment '../../../secret.hippo' is not a name inside a store"):
        hippo.open(store, run_id).backward(rows=[0])

    def absolute(m):
        m["result"]["fragments"][0]["path"] = str(secret)
    edit_manifest(store, run_id, absolute)
    with pytest.raises(StoreError, match="not a name inside a store"):
        hippo.open(store, run_id).backward(rows=[0])


def test_node_ids_from_a_manifest_cannot_leave_the_store(tmp_path):
    store, run_id = committed(tmp_path / "store")

    def traverse(m):
        groups = m["group_fragments"]
        node = next(iter(groups))
        groups["../../" + node] = groups.pop(node)
        for n in m["nodes"]:
            if n["id"] == node:
                n["id"] = "../../" + node
        for n in m["nodes"]:
            n["inputs"] = ["../../" + node if i == node else i for i in n.get("inputs", [])]
    edit_manifest(store, run_id, traverse)
    with pytest.raises((StoreError, CorruptRunError)):
        hippo.open(store, run_id).backward(rows=[0], columns=["total"])


def test_symbolic_links_out_of_a_local_store_are_refused(tmp_path):
    store, run_id = committed(tmp_path / "store")
    lin = hippo.open(store, run_id)
    name = lin.manifest["result"]["fragments"][0]["path"]
    fragment = os.path.join(store.root, "runs", run_id, name)
    outside = tmp_path / "outside.hippo"
    os.replace(fragment, outside)  # the same bytes, now outside the store, reached through a link
    os.symlink(outside, fragment)
    with pytest.raises(StoreError, match="outside the store"):
        hippo.open(store, run_id).backward(rows=[0])
    # a link that stays inside the store is fine
    os.remove(fragment)
    inside = os.path.join(store.root, "runs", run_id, "moved.hippo")
    os.replace(outside, inside)
    os.symlink(inside, fragment)
    assert hippo.open(store, run_id).backward(rows=[0])["df"].rows.tolist() == [0, 2]


def test_a_manifest_linked_from_outside_is_refused(tmp_path):
    store, run_id = committed(tmp_path / "store")
    manifest = os.path.join(store.root, "runs", run_id, "manifest.json")
    outside = tmp_path / "manifest.json"
    os.replace(manifest, outside)
    os.symlink(outside, manifest)
    with pytest.raises(StoreError, match="outside the store"):
        hippo.open(store, run_id)


@pytest.mark.parametrize("text", ["[1, 2]", "{", "\"just a string\"", "[" * 100000 + "]" * 100000, "{\"nodes\": 3}"])
def test_malformed_manifests_are_clear_errors(tmp_path, text):
    store, run_id = committed(tmp_path / "store")
    with open(os.path.join(store.root, "runs", run_id, "manifest.json"), "w") as f:
        f.write(text)
    with pytest.raises(CorruptRunError, match="manifest"):
        hippo.open(store, run_id).backward(rows=[0])


def test_an_oversized_manifest_is_refused_before_it_is_read(tmp_path, monkeypatch):
    store, run_id = committed(tmp_path / "store")
    monkeypatch.setattr("hippo_dask.store.MAX_MANIFEST_BYTES", 100)
    with pytest.raises(CorruptRunError, match="more than the 100"):
        hippo.open(store, run_id)


def test_stray_entries_in_runs_are_not_listed(tmp_path):
    store, run_id = committed(tmp_path / "store")
    runs = os.path.join(store.root, "runs")
    os.makedirs(os.path.join(runs, "..odd"))
    with open(os.path.join(runs, "notes.txt"), "w") as f:
        f.write("x")
    assert [r.run_id for r in store.runs()] == [run_id]
    assert store.gc(older_than=0) == {}
    assert hippo.open(store).run_id == run_id


# ---------------------------------------------------------------------- housekeeping cannot hurt a live run


@pytest.mark.parametrize("older_than", [0.3, 0])
def test_gc_leaves_a_run_that_is_still_computing(tmp_path, monkeypatch, older_than):
    """A compute longer than gc's older_than keeps its run: the lease is written at once and rewritten while
    it runs, and a live lease protects the run whatever older_than says (older_than=0 removed it before)."""
    import threading
    import time

    import dask.dataframe as dd

    monkeypatch.setattr("hippo_dask.store.LEASE_SECONDS", 0.1)
    store = hippo.set_store(tmp_path / "store")
    df = dd.from_pandas(pd.DataFrame({"k": list("abcabc"), "x": range(6)}), npartitions=3)

    def slow(p):
        time.sleep(0.4)
        return p

    t = df.hippo.source("df").hippo.map(slow, reads=[], writes=[]).hippo.groupby("k").agg(s=("x", "sum"))
    removed: list[dict] = []
    stop = threading.Event()

    def collector():
        while not stop.is_set():
            removed.append(store.gc(older_than=older_than))
            time.sleep(0.05)

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        out = t.hippo.compute(scheduler="sync")
    finally:
        stop.set()
        thread.join()
    assert not any(removed), removed
    assert sorted(out.s) == [3, 5, 7]
    assert hippo.open(store, out.hippo.lineage.run_id).backward(rows=[0], columns=["s"])["df"].rows.size == 2


def test_a_lease_stops_with_its_block(tmp_path):
    import time

    store = hippo.Store(tmp_path / "store")
    run_id = store.start_run()
    with store.lease(run_id, every=0.05):
        time.sleep(0.5)
        assert store.gc(older_than=0.3) == {}
        assert os.path.exists(os.path.join(store.root, "runs", run_id, "lease.json"))
    time.sleep(0.5)
    assert list(store.gc(older_than=0.3)) == [run_id]


# ---------------------------------------------------------------------- the manifest reader takes any JSON

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _paths(value, prefix=()):
    """Every place in a JSON value: key paths into objects and lists."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _mutations(manifest: dict):
    """A valid manifest with one part, at any depth, replaced by arbitrary JSON."""
    return st.tuples(st.sampled_from([p for p in _paths(manifest) if p]), _json)


@settings(max_examples=int(os.environ.get("HIPPO_EXAMPLES", "300")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_json_manifest_is_answered_or_refused_cleanly(tmp_path_factory, data):
    """Arbitrary JSON in place of a manifest or of any part of one: queries answer or raise a HippoError."""
    base = tmp_path_factory.mktemp("store")
    store, run_id = committed(base / "store")
    path = os.path.join(store.root, "runs", run_id, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    if data.draw(st.booleans()):
        where, value = data.draw(_mutations(manifest))
        target = manifest
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
        text = json.dumps(manifest)
    else:
        text = json.dumps(data.draw(_json))
    with open(path, "w") as f:
        f.write(text)
    try:
        lin = hippo.open(store, run_id)
        lin.backward(rows=[0])
        lin.forward("df", rows=[0])
        repr(lin)
    except hippo.HippoError:
        pass  # refused, with one of hippo's errors: what a damaged manifest must give


def test_runs_started_in_the_same_second_keep_their_order(tmp_path):
    """Run ids carry the second a run started; ties are ordered by the exact start in started.json."""
    store = hippo.Store(tmp_path / "store")
    made = [store.start_run() for _ in range(5)]
    assert [r.run_id for r in store.runs()] == made


def test_a_source_node_without_its_slot_is_refused(tmp_path):
    """Reproducer (found by the any-JSON test in a CI dry run): nodes[0].slots = [] crashed backward."""
    store, run_id = committed(tmp_path / "store")
    edit_manifest(store, run_id, lambda m: m["nodes"][0].update(slots=[]))
    with pytest.raises(CorruptRunError, match="new_slot is not one of the node's slots"):
        hippo.open(store, run_id)


@pytest.mark.parametrize("op_index", [0, -1])
def test_a_node_without_its_new_slot_is_refused(tmp_path, op_index):
    """Reproducer (found by the any-JSON test): a source node's new_slot set to null crashed backward
    with a raw ValueError; every node that starts a slot (source, group, concat, spread) must name it."""
    store, run_id = committed(tmp_path / "store")
    with open(os.path.join(store.root, "runs", run_id, "manifest.json")) as f:
        manifest = json.load(f)
    starting = [i for i, n in enumerate(manifest["nodes"]) if n.get("new_slot") is not None]
    index = starting[op_index]
    edit_manifest(store, run_id, lambda m: m["nodes"][index].update(new_slot=None))
    with pytest.raises(CorruptRunError, match="new_slot"):
        hippo.open(store, run_id)
