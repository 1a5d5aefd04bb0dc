"""Group-by lineage derived from a source file instead of stored (issue 9, "store a function").

When a group-by's one key is an integer column copied unchanged from a parquet source, the
memberships and the result keep only a checksum of the group ids; a query re-reads the key
column and refuses to answer unless the derived ids match exactly. Checked here:

* random wide pipelines (tests/test_random_wide.py's generator) over parquet sources, on pandas
  (``hippo.read_parquet``) and Dask (``dd.read_parquet``, one file per partition), against the
  oracle: int keys derive, big ints / strings / two keys do not, and answers agree either way;
* the reference pipeline shape on parquet, pandas / Dask / LocalCluster (threads and processes):
  the same answers as the same pipeline over in-memory sources (which store every id), and the
  stores hold the marker instead of the ids;
* a source file edited, truncated or deleted after capture: a ``SourceChangedError``, never an
  answer for other rows; fragments whose marker or manifest record is damaged: ``CorruptRunError``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hippo_dask as hippo
from hippo_dask import _core
from hippo_dask import partition as P
from hippo_dask.errors import CorruptRunError, SourceChangedError

import test_random_wide as wide

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
import refpipe  # noqa: E402

FILE_KINDS = ("int", "int", "int", "bigint", "str", "float_nan")  # int keys derive: drawn most


def _write_parts(frame: pd.DataFrame, folder: Path, parts: int) -> None:
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(frame), max(1, min(parts, len(frame))) + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        frame.iloc[lo:hi].to_parquet(folder / f"part-{i:03d}.parquet", index=False)


def _file_inputs(tmp: Path, a: pd.DataFrame, b: pd.DataFrame, nparts: int | None):
    import dask.dataframe as dd

    if nparts is None:
        a.to_parquet(tmp / "a.parquet", index=False)
        b.to_parquet(tmp / "b.parquet", index=False)
        return hippo.read_parquet(tmp / "a.parquet", name="a"), hippo.read_parquet(tmp / "b.parquet", name="b")
    _write_parts(a, tmp / "a", nparts)
    _write_parts(b, tmp / "b", 1)
    return dd.read_parquet(tmp / "a").hippo.source("a"), dd.read_parquet(tmp / "b").hippo.source("b")


_counter = iter(range(10**9))


@settings(max_examples=wide._n(0.6), **wide.SETTINGS)
@given(src=wide.sources(kinds=FILE_KINDS), steps=wide.steps_of(wide.STEPS, max_size=4),
       nparts=st.one_of(st.none(), st.integers(1, 3)))
def test_wide_file_sources(store, tmp_path, src, steps, nparts):
    """Random pipelines over parquet sources against the oracle (derived group ids where allowed)."""
    kind, a, b = src
    tmp = tmp_path / f"ex{next(_counter)}"
    tmp.mkdir()
    inputs = _file_inputs(tmp, a, b, nparts)
    t, o, _ = wide.build(kind, a, b, steps, nparts, inputs=inputs, sourced=True)
    result = wide._compute(t, nparts)
    wide._check_exact(result, o, a, b)
    # and from a fresh handle (nothing cached: every derived id re-read from the files)
    again = hippo.open(store, result.hippo.lineage.run_id)
    for row in range(min(len(result), 3)):
        first, fresh = result.hippo.lineage.backward(rows=[row]), again.backward(rows=[row])
        assert {k: list(v.rows) for k, v in first.items()} == {k: list(v.rows) for k, v in fresh.items()}


def test_wide_file_sources_do_derive(store, tmp_path):
    """The generator's int-key group-bys over files take the derived path (the test above is not vacuous)."""
    a = pd.DataFrame({"g": [0, 1, 2, 1, 0, 3], "x": [1, 2, 3, 4, 5, 6], "y": [0.25] * 6, "s": list("pqrpqr")})
    b = pd.DataFrame({"g": [0, 1, 7], "w": [10, 20, 30]})
    steps = [("group_back", ("inner", 0, True, False, 0))]
    inputs = _file_inputs(tmp_path, a, b, 2)
    t, o, _ = wide.build("int", a, b, steps, 2, inputs=inputs, sourced=True)
    result = wide._compute(t, 2)
    wide._check_exact(result, o, a, b)
    derived = result.hippo.lineage.manifest.get("derived", {})
    assert derived.get("memberships") and derived.get("result"), derived


# ---------------------------------------------------------------------- the reference pipeline shape

N = 3000


@pytest.fixture(scope="module")
def ref_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("refdata")
    old = refpipe.ROOT
    refpipe.ROOT = str(root)
    try:
        base = refpipe.generate(N, seed=3)
    finally:
        refpipe.ROOT = old
    events = pd.read_parquet(os.path.join(base, "events"))
    users = pd.read_parquet(os.path.join(base, "users.parquet"))
    return base, events, users


def _answers(lin, rows, sources):
    out = []
    for r in rows:
        for col in (None, "mean_amount", "label", "region"):
            trace = lin.backward(rows=[r], columns=col)
            out.append({k: list(v.rows) for k, v in trace.items()})
    for name, picks in sources.items():
        for i in picks:
            out.append(list(lin.forward(name, rows=[i]).rows))
            out.append(list(lin.forward(name, rows=[i], columns="user_id" if name == "events" else "region").rows))
    return out


def _reference(ref_data, store):
    """The pipeline over in-memory pandas sources: every group id stored (the oracle suites cover this path)."""
    base, events, users = ref_data
    result = refpipe.hippo_pipeline(events, users).hippo.compute()
    assert "derived" not in result.hippo.lineage.manifest
    return result


def _check_same(result, reference, events):
    lin, ref = result.hippo.lineage, reference.hippo.lineage
    pd.testing.assert_frame_equal(result.reset_index(drop=True), reference.reset_index(drop=True), check_dtype=False)
    rng = np.random.default_rng(0)
    rows = sorted(rng.choice(len(result), 12, replace=False).tolist()) + [0, len(result) - 1]
    picks = {"events": rng.choice(len(events), 12, replace=False).tolist(), "users": [0, 1, 5]}
    assert _answers(lin, rows, picks) == _answers(ref, rows, picks)
    fresh = hippo.open(lin.store, lin.run_id)
    assert _answers(fresh, rows, picks) == _answers(ref, rows, picks)
    derived = lin.manifest["derived"]
    assert len(derived["memberships"]) == 1 and len(derived["result"]) == 1
    return lin


def _membership_arrays(lin):
    node = next(n for n in lin._order if n.op == "groupby")
    directory = lin.store.fragment_dir(node.id)
    return [lin.store.read_fragment(directory + "/" + name) for name in lin.manifest["group_fragments"][node.id]]


def test_reference_pandas_files(store, ref_data):
    base, events, users = ref_data
    reference = _reference(ref_data, store)
    ev = hippo.read_parquet(os.path.join(base, "events"), name="events")
    us = hippo.read_parquet(os.path.join(base, "users.parquet"), name="users")
    result = _hippo_on_sources(ev, us).hippo.compute()
    lin = _check_same(result, reference, events)
    for arrays in _membership_arrays(lin):
        assert P.GROUP_ID + P.DERIVED in arrays and P.GROUP_ID not in arrays and P.GROUP_ID + P.CODES not in arrays
    assert lin.storage()["bytes"].iloc[-1] < reference.hippo.lineage.storage()["bytes"].iloc[-1]


def _hippo_on_sources(ev, us):
    """refpipe.hippo_pipeline, from frames that are tracked sources already."""
    d = ev.hippo.dropna(subset=["f1", "f2"])
    d = d.hippo.filter(lambda p: p["amount"] > 0)
    d = d.hippo.map(refpipe.features, reads=["amount", "f1", "f2"], writes=["feat_a", "feat_b"])
    d = d.hippo.merge(us, on="user_id")
    g = d.hippo.groupby("user_id").agg(n_events=("event_id", "count"), mean_amount=("amount", "mean"),
                                       max_feat=("feat_a", "max"))
    d = d.hippo.merge(g, on="user_id")
    d = d.hippo.assign(label=lambda p: p["amount"] > p["mean_amount"])
    d = d.hippo.filter(lambda p: p["category"].isin(refpipe.KEEP))
    d = d.hippo.sort_values("ts")
    return d.hippo.select(refpipe.SELECT)


def _split_events(ref_data, tmp_path) -> str:
    """The events as 3 parquet files (3 Dask partitions)."""
    base, events, users = ref_data
    _write_parts(events, tmp_path / "events", 3)
    return str(tmp_path / "events")


def test_reference_dask_files(store, ref_data, tmp_path):
    import dask.dataframe as dd

    base, events, users = ref_data
    reference = _reference(ref_data, store)
    folder = _split_events(ref_data, tmp_path)
    ev, us = dd.read_parquet(folder), dd.read_parquet(os.path.join(base, "users.parquet"))
    result = refpipe.hippo_pipeline(ev, us).hippo.compute(scheduler="sync")
    lin = _check_same(result, reference, events)
    assert all(P.GROUP_ID + P.DERIVED in arrays for arrays in _membership_arrays(lin))


def test_reference_cluster_files(store, ref_data, tmp_path, cluster_client):
    import cloudpickle
    import dask.dataframe as dd

    cloudpickle.register_pickle_by_value(refpipe)
    processes, client = cluster_client
    base, events, users = ref_data
    reference = _reference(ref_data, store)
    folder = _split_events(ref_data, tmp_path)
    ev, us = dd.read_parquet(folder), dd.read_parquet(os.path.join(base, "users.parquet"))
    result = refpipe.hippo_pipeline(ev, us).hippo.compute(scheduler=client)
    _check_same(result, reference, events)
    # and written from the workers
    out = tmp_path / "out"
    lin = hippo.open(store, refpipe.hippo_pipeline(ev, us).hippo.to_parquet(str(out), scheduler=client).run_id)
    assert lin.manifest["derived"]["result"]
    written = pd.read_parquet(out)
    rows = [0, 7, len(written) - 1]
    ref_rows = [_row_of(reference, written.iloc[r]) for r in rows]
    for r, rr in zip(rows, ref_rows):
        got = {k: list(v.rows) for k, v in lin.backward(rows=[r]).items()}
        want = {k: list(v.rows) for k, v in reference.hippo.lineage.backward(rows=[rr]).items()}
        assert got == want


def _row_of(frame: pd.DataFrame, row: pd.Series) -> int:
    hit = np.flatnonzero(frame["event_id"].to_numpy() == row["event_id"])
    assert len(hit) == 1
    return int(hit[0])


# ---------------------------------------------------------------------- refusals


def _small_run(tmp_path, keys=(0, 1, 2, 1, 0, 2, 1)):
    src = pd.DataFrame({"k": np.array(keys, dtype=np.int64), "x": np.arange(len(keys), dtype=np.int64)})
    path = tmp_path / "src.parquet"
    src.to_parquet(path, index=False)
    out = hippo.read_parquet(path, name="src").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    assert out.hippo.lineage.manifest.get("derived", {}).get("memberships")
    return path, src, out


def test_edited_source_is_refused(store, tmp_path):
    path, src, out = _small_run(tmp_path)
    run_id = out.hippo.lineage.run_id
    assert list(hippo.open(store, run_id).backward(rows=[1])["src"].rows) == [1, 3, 6]
    edited = src.assign(k=src["k"].where(src.index != 3, 2))  # row 3 moves from group 1 to group 2
    edited.to_parquet(path, index=False)
    with pytest.raises(SourceChangedError, match="no longer holds"):
        hippo.open(store, run_id).backward(rows=[1])
    with pytest.raises(SourceChangedError):
        hippo.open(store, run_id).forward("src", rows=[3])


def test_truncated_or_deleted_source_is_refused(store, tmp_path):
    path, src, out = _small_run(tmp_path)
    run_id = out.hippo.lineage.run_id
    src.iloc[:5].to_parquet(path, index=False)
    with pytest.raises(SourceChangedError, match="rows"):
        hippo.open(store, run_id).backward(rows=[0])
    os.remove(path)
    with pytest.raises(SourceChangedError, match="cannot read"):
        hippo.open(store, run_id).backward(rows=[0])


def test_damaged_marker_or_record_is_refused(store, tmp_path):
    path, src, out = _small_run(tmp_path)
    lin = out.hippo.lineage
    node = next(n for n in lin._order if n.op == "groupby")
    directory = lin.store.fragment_dir(node.id)
    (name,) = lin.manifest["group_fragments"][node.id]
    arrays = lin.store.read_fragment(directory + "/" + name)
    # a marker whose checksum does not match what the source gives: refused, as a changed source would be
    bad = dict(arrays, **{P.GROUP_ID + P.DERIVED: arrays[P.GROUP_ID + P.DERIVED] + 1})
    fresh = hippo.open(store, lin.run_id)
    read = fresh.store.read_fragment
    fresh.store.read_fragment = lambda url, checksum=None: bad if url.endswith(name) else read(url, checksum)
    fresh._result_slots = fresh.result_slots()  # the result fragment is fine; the membership is damaged
    with pytest.raises(SourceChangedError):
        fresh.backward(rows=[0])
    fresh.store.read_fragment = read
    # a fragment that says "derived" while the manifest does not say from where
    fresh = hippo.open(store, lin.run_id)
    fresh._derived_members = {}
    with pytest.raises(CorruptRunError, match="does not say which"):
        fresh.backward(rows=[0])


def test_not_derived_where_not_a_copy(store, tmp_path):
    """A key computed by the pipeline, a key read from CSV, two keys: ids stored as before."""
    src = pd.DataFrame({"k": np.array([0, 1, 1, 2], dtype=np.int64), "j": [5, 5, 6, 6], "x": [1, 2, 3, 4]})
    src.to_parquet(tmp_path / "s.parquet", index=False)
    src.to_csv(tmp_path / "s.csv", index=False)
    parquet = hippo.read_parquet(tmp_path / "s.parquet", name="s")
    cases = [
        parquet.hippo.assign(k=lambda p: p.k * 2).hippo.groupby("k").agg(t=("x", "sum")),
        parquet.hippo.fillna({"k": 0}).hippo.groupby("k").agg(t=("x", "sum")),
        parquet.hippo.groupby(["k", "j"]).agg(t=("x", "sum")),
        hippo.read_csv(tmp_path / "s.csv", name="c").hippo.groupby("k").agg(t=("x", "sum")),
    ]
    for tracked in cases:
        lin = tracked.hippo.compute().hippo.lineage
        assert "derived" not in lin.manifest
    # a rename keeps the copy; the derived answer is the oracle's
    lin = parquet.hippo.rename(columns={"k": "key"}).hippo.groupby("key").agg(t=("x", "sum")).hippo.compute().hippo.lineage
    assert "derived" in lin.manifest
    assert [list(lin.backward(rows=[i])["s"].rows) for i in range(3)] == [[0], [1, 2], [3]]


def test_checksum_is_exact():
    ids = P.zigzag(np.array([0, 5, -3, 2**40], dtype=np.int64))
    assert P.zigzag(np.array([-1], dtype=np.int64))[0] == 1
    assert P.ids_checksum(ids) == P.ids_checksum(ids.copy())
    assert P.ids_checksum(ids) != P.ids_checksum(ids[::-1].copy())
    assert P.ids_checksum(ids) == int(np.array([_core.checksum(ids.astype("<i8").tobytes())], np.uint64).view(np.int64)[0])


def test_glob_path_falls_back_to_the_recorded_reader(store, tmp_path):
    """A source read with a glob (which only Dask expands) is re-read with Dask's reader: same answers."""
    import dask.dataframe as dd

    src = pd.DataFrame({"k": np.array([3, 1, 3, 2, 1, 3], dtype=np.int64), "x": np.arange(6, dtype=np.int64)})
    (tmp_path / "d").mkdir()
    src.iloc[:4].to_parquet(tmp_path / "d" / "p0.parquet", index=False)
    src.iloc[4:].to_parquet(tmp_path / "d" / "p1.parquet", index=False)
    frame = dd.read_parquet(str(tmp_path / "d" / "*.parquet")).hippo.source("src")
    out = frame.hippo.groupby("k").agg(t=("x", "sum")).hippo.compute(scheduler="sync")
    lin = hippo.open(store, out.hippo.lineage.run_id)
    assert lin.manifest.get("derived", {}).get("memberships")
    got = {int(k): sorted(lin.backward(rows=[i])["src"].rows.tolist()) for i, k in enumerate(out["k"])}
    assert got == {1: [1, 4], 2: [3], 3: [0, 2, 5]}
