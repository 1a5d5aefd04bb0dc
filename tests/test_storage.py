"""Per-key tables in lineage fragments (Hippo's "store a function where the mapping is derivable").

A slot array that is a function of another array of the same fragment (the users row of
every member of a group after ``merge(users)`` then ``groupby(user_id)``) is stored once
per key value. These tests check the round trip against the plain arrays, that damaged
tables are refused, and that a pipeline whose fragments use tables answers like the
oracle on pandas and Dask.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import hippo_dask as hippo
from hippo_dask import _core
from hippo_dask import partition as P
from hippo_dask.errors import CorruptRunError
from oracle import OracleFrame, check_forward, compare_sampled


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), groups=st.integers(1, 40), seed=st.integers(0, 2**32 - 1), noise=st.integers(0, 3))
def test_tables_round_trip_exactly(n, groups, seed, noise):
    rng = np.random.default_rng(seed)
    gid = rng.integers(0, groups, n).astype(np.int64) * 7 - 3
    per_group = rng.integers(0, 1000, groups + 1).astype(np.int64)
    dependent = per_group[(gid + 3) // 7]
    broken = dependent.copy()
    if n and noise:  # a few rows break the dependency: that array must stay per row
        broken[rng.integers(0, n, noise)] += 1
    arrays = {P.GROUP_ID: gid, "__hippo_a:lo": dependent, "__hippo_b:lo": broken,
              "__hippo_c:lo": np.arange(n, dtype=np.int64), "__hippo_c:hi": np.zeros(n, dtype=np.int64)}
    packed = P.tabulate(arrays, P.GROUP_ID)
    back = P.untabulate(_core.decode_fragment(_core.encode_fragment(packed)), "test")
    assert sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        assert np.array_equal(back[k], v), k
    # tables are chosen only where they are smaller (container headers aside)
    assert len(_core.encode_fragment(packed)) <= len(_core.encode_fragment(arrays)) + 64
    # an array that is not a function of the key stays per row (a changed row alone in its group
    # still is one: found by hypothesis, n=124, groups=37, seed=2451851, noise=1)
    if any(len(np.unique(broken[gid == g])) > 1 for g in np.unique(gid)):
        assert "__hippo_b:lo" in packed


def test_a_large_dependent_array_becomes_a_table():
    rng = np.random.default_rng(0)
    gid = rng.integers(0, 500, 20_000).astype(np.int64) * 2
    users = rng.permutation(500).astype(np.int64)[gid // 2]
    packed = P.tabulate({P.GROUP_ID: gid, "users": users, "rows": np.arange(20_000, dtype=np.int64)}, P.GROUP_ID)
    assert "users" + P.TABLE + P.GROUP_ID in packed and "users" not in packed and "rows" in packed
    assert np.array_equal(P.untabulate(packed, "x")["users"], users)
    assert len(_core.encode_fragment(packed)) < 0.7 * len(_core.encode_fragment({P.GROUP_ID: gid, "users": users, "rows": np.arange(20_000)}))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 400), seed=st.integers(0, 2**32 - 1))
def test_several_keys_in_sequence_round_trip(n, seed):
    """The result writer tabulates by every group / concat slot in turn."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, 9, n).astype(np.int64) * 2
    g2 = (g1 // 2 + rng.integers(0, 2, n)).astype(np.int64) * 3 + 1  # not a function of g1
    arrays = {"g1": g1, "g2": g2, "u": (g1 * 5 + 7).astype(np.int64), "v": (g2 * 11).astype(np.int64),
              "e": rng.permutation(n).astype(np.int64)}
    packed = dict(arrays)
    for key in ["g1", "g2"]:
        packed = P.tabulate(packed, key)
    back = P.untabulate(_core.decode_fragment(_core.encode_fragment(packed)), "test")
    assert sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        assert np.array_equal(back[k], v), k


def test_damaged_tables_are_refused():
    gid = np.array([4, 4, 6, 6, 6, 8], dtype=np.int64)
    arrays = {P.GROUP_ID: gid, P.GROUP_ID + P.TABLE: np.array([4, 6, 8], dtype=np.int64),
              "x" + P.TABLE + P.GROUP_ID: np.array([1, 2, 3], dtype=np.int64)}
    assert np.array_equal(P.untabulate(arrays, "frag")["x"], [1, 1, 2, 2, 2, 3])
    lacking = dict(arrays, **{P.GROUP_ID + P.TABLE: np.array([4, 6], dtype=np.int64),
                              "x" + P.TABLE + P.GROUP_ID: np.array([1, 2], dtype=np.int64)})
    with pytest.raises(CorruptRunError, match="lacks"):
        P.untabulate(lacking, "frag")
    bad_codes = {P.GROUP_ID + P.CODES: np.array([0, 3], dtype=np.int64), P.GROUP_ID + P.TABLE: np.array([4, 6], dtype=np.int64)}
    with pytest.raises(CorruptRunError, match="codes"):
        P.untabulate(bad_codes, "frag")
    unsorted = dict(arrays, **{P.GROUP_ID + P.TABLE: np.array([6, 4, 8], dtype=np.int64)})
    with pytest.raises(CorruptRunError, match="malformed"):
        P.untabulate(unsorted, "frag")
    ragged = dict(arrays, **{"x" + P.TABLE + P.GROUP_ID: np.array([1, 2], dtype=np.int64)})
    with pytest.raises(CorruptRunError, match="ragged"):
        P.untabulate(ragged, "frag")
    no_key = {k: v for k, v in arrays.items() if k != P.GROUP_ID + P.TABLE}
    with pytest.raises(CorruptRunError, match="missing"):
        P.untabulate(no_key, "frag")


def _events_users(n_events: int = 1500, n_users: int = 40, seed: int = 3):
    rng = np.random.default_rng(seed)
    events = pd.DataFrame({"user_id": rng.integers(0, n_users + 5, n_events),  # some users unknown
                           "amount": rng.normal(10, 5, n_events).round(2),
                           "ts": rng.permutation(n_events)})
    users = pd.DataFrame({"user_id": np.arange(n_users), "region": rng.choice(["n", "s", "e"], n_users)})
    return events, users


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_reference_shape_with_tables_matches_the_oracle(store, backend):
    """merge(users) -> groupby(user_id) -> merge back -> sort: the users slot is stored once
    per group in the memberships and in the result, and every answer is the oracle's."""
    events, users = _events_users()
    ev = events if backend == "pandas" else dd.from_pandas(events, npartitions=3, sort=False)
    us = users if backend == "pandas" else dd.from_pandas(users, npartitions=2, sort=False)
    d = ev.hippo.source("events").hippo.merge(us.hippo.source("users"), on="user_id")
    g = d.hippo.groupby("user_id").agg(n=("amount", "count"), mean_amount=("amount", "mean"))
    out = d.hippo.merge(g, on="user_id").hippo.sort_values("ts")
    res = out.hippo.compute(**({} if backend == "pandas" else {"scheduler": "sync"}))

    o = OracleFrame.source(events, "events").merge(OracleFrame.source(users, "users"), how="inner", on=["user_id"])
    og = o.groupby_agg(["user_id"], {"n": ("amount", "count"), "mean_amount": ("amount", "mean")})
    expected = o.merge(og, how="inner", on=["user_id"]).sort_values("ts")
    compare_sampled(res, expected, sample=40)
    check_forward(res, expected, {"events": events, "users": users}, samples=8)

    # the tables are really in use: the stored fragments hold per-key arrays
    lin = res.hippo.lineage
    run_dir = lin.store.run_dir(lin.run_id)
    frag = lin.manifest["result"]["fragments"][0]
    raw = lin.store.read_fragment(run_dir.rstrip("/") + "/" + frag["path"], frag["checksum"])
    assert any(P.TABLE in k and not k.endswith(P.TABLE) for k in raw), sorted(raw)
    node = [n for n in lin.manifest["nodes"] if n["op"] == "groupby"][0]["id"]
    names = lin.manifest["group_fragments"][node]
    tabled = [any(P.TABLE in k and not k.endswith(P.TABLE) for k in
                  lin.store.read_fragment(lin.store.fragment_dir(node).rstrip("/") + "/" + name, name.split(".")[0]))
              for name in names]
    assert any(tabled)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-50, 50), max_size=30), min_size=1, max_size=6), st.integers(0, 2**40))
def test_positions_among_matches_a_search(draws, offset):
    """The lookup table (reused, per thread) gives each present key its position and never a
    position holding another value, call after call; far spans take the binary search."""
    from hippo_dask.ids import _positions_among

    for i, values in enumerate(draws):
        base = offset if i % 2 else 0
        distinct = np.unique(np.asarray(values[: len(values) // 2] or [0], dtype=np.int64) + base)
        keys = np.asarray(values, dtype=np.int64) + base
        got = _positions_among(distinct, keys)
        present = np.isin(keys, distinct)
        assert np.array_equal(got[present], np.searchsorted(distinct, keys[present]))
        inside = got[~present]
        assert not np.any((inside >= 0) & (inside < len(distinct)) & (distinct[np.clip(inside, 0, len(distinct) - 1)] == keys[~present]))
    far = np.array([0, 2**40], dtype=np.int64)  # a span no table covers
    assert np.array_equal(_positions_among(far, far), [0, 1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=40), st.integers(0, 3))
def test_factorize_sorted_matches_pandas(values, spread):
    """The presence-table factorize (small spans) and the fallback agree with pd.factorize(sort=True)."""
    keys = np.asarray(values, dtype=np.int64)
    if spread < 3:  # mostly small spans: the table path
        keys = keys % (10 ** (spread + 1))
    codes, uniques = P._factorize_sorted(keys)
    want_codes, want_uniques = pd.factorize(keys, sort=True)
    assert np.array_equal(codes, want_codes) and np.array_equal(uniques, want_uniques)


def test_manifest_versions(store):
    """Runs of format 1 (every group id stored) still open; a newer format is refused, naming both."""
    import json

    from hippo_dask.store import FORMAT_VERSION

    out = pd.DataFrame({"k": [1, 2, 1], "x": [1, 2, 3]}).hippo.source("s").hippo.groupby("k").agg(t=("x", "sum"))
    lin = out.hippo.compute().hippo.lineage
    path = store.run_dir(lin.run_id) + "/manifest.json"
    manifest = json.load(open(path))
    assert manifest["format_version"] == FORMAT_VERSION == 2
    for version, ok in ((1, True), (FORMAT_VERSION + 1, False), (None, False)):
        with open(path, "w") as f:
            json.dump(dict(manifest, format_version=version), f)
        if ok:
            assert list(hippo.open(store, lin.run_id).backward(rows=[0])["s"].rows) == [0, 2]
        else:
            with pytest.raises(CorruptRunError, match=rf"format version {version!r}, this hippo_dask reads 1 and 2"):
                hippo.open(store, lin.run_id)
