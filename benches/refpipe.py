"""The DESIGN section 6 reference pipeline: data generation and the two variants.

Shared by ``benches/capture.py`` (wall time, memory, store bytes),
``benches/cellwise_baseline.py`` (exact cell-pair count) and ``benches/queries.py``.

events (N x 20): event_id, user_id, ts, amount, category, f1..f15 (floats, 5% NaN each)
users (N/100 x 6): user_id, region, segment, age, tenure, score

dropna(f1, f2) -> filter(amount > 0) -> map(feat_a, feat_b <- amount, f1, f2)
-> merge(users, on=user_id) -> groupby(user_id).agg(n_events, mean_amount, max_feat)
-> merge back on user_id -> assign(label <- amount, mean_amount)
-> filter(category in KEEP) -> sort_values(ts) -> select 10 columns

Data is written as parquet under /tmp/hippo_bench/n<N>/ (events: one file per 250,000 rows;
users: one file) and read with ``dd.read_parquet`` by both variants.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

ROOT = os.environ.get("HIPPO_BENCH_DIR", "/tmp/hippo_bench")
ROWS_PER_FILE = 250_000
CATEGORIES = [f"c{i}" for i in range(10)]
KEEP = ["c0", "c2", "c4", "c6", "c8"]
REGIONS = [f"r{i}" for i in range(8)]
SEGMENTS = ["consumer", "smb", "enterprise", "public"]
FEATURES = [f"f{i}" for i in range(1, 16)]
SELECT = ["event_id", "user_id", "ts", "amount", "category", "feat_a", "feat_b", "region", "mean_amount", "label"]


def data_dir(n: int) -> str:
    return os.path.join(ROOT, f"n{n}")


def generate(n: int, seed: int = 0) -> str:
    """Write events and users parquet for ``n`` events (skipped when already there)."""
    base = data_dir(n)
    done = os.path.join(base, "_DONE")
    if os.path.exists(done):
        return base
    os.makedirs(os.path.join(base, "events"), exist_ok=True)
    n_users = max(1, n // 100)
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, n, ROWS_PER_FILE)):
        m = min(ROWS_PER_FILE, n - start)
        cols = {
            "event_id": np.arange(start, start + m, dtype=np.int64),
            "user_id": rng.integers(0, n_users, m, dtype=np.int64),
            "ts": rng.integers(1_600_000_000, 1_700_000_000, m, dtype=np.int64),
            "amount": rng.normal(50.0, 50.0, m),
            "category": pd.array(np.asarray(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), m)], dtype="str"),
        }
        for f in FEATURES:
            v = rng.normal(size=m)
            v[rng.random(m) < 0.05] = np.nan
            cols[f] = v
        pd.DataFrame(cols).to_parquet(os.path.join(base, "events", f"part-{i:04d}.parquet"), index=False)
    users = pd.DataFrame(
        {
            "user_id": np.arange(n_users, dtype=np.int64),
            "region": pd.array(np.asarray(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), n_users)], dtype="str"),
            "segment": pd.array(np.asarray(SEGMENTS, dtype=object)[rng.integers(0, len(SEGMENTS), n_users)], dtype="str"),
            "age": rng.integers(18, 90, n_users, dtype=np.int64),
            "tenure": rng.integers(0, 240, n_users, dtype=np.int64),
            "score": rng.random(n_users),
        }
    )
    users.to_parquet(os.path.join(base, "users.parquet"), index=False)
    open(done, "w").close()
    return base


def features(p: pd.DataFrame) -> pd.DataFrame:
    """The map step: two derived features from amount, f1, f2."""
    return p.assign(feat_a=p["amount"] * p["f1"], feat_b=(p["f1"] - p["f2"]) / (1.0 + p["amount"]))


def _same(p: pd.DataFrame) -> pd.DataFrame:
    return p


def read(n: int):
    import dask.dataframe as dd

    base = data_dir(n)
    return dd.read_parquet(os.path.join(base, "events")), dd.read_parquet(os.path.join(base, "users.parquet"))


def plain_pipeline(events, users):
    """The reference pipeline in plain Dask (or pandas), idiomatic API."""
    d = events.dropna(subset=["f1", "f2"])
    d = d[d["amount"] > 0]
    d = d.map_partitions(features) if hasattr(d, "map_partitions") else features(d)
    d = d.merge(users, on="user_id")
    g = d.groupby("user_id").agg(
        n_events=("event_id", "count"), mean_amount=("amount", "mean"), max_feat=("feat_a", "max")
    ).reset_index()
    if hasattr(g, "map_partitions"):
        # A blockwise no-op, like the group-id column hippo adds here. Without it dask 2026.8
        # fails to lower this graph at N=10M (40 partitions; the group-by output is then
        # shuffled): KeyError "['user_id'] not in index" in
        # Expr.unique_partition_mapping_columns_from_shuffle, from Merge._lower.
        g = g.map_partitions(_same, meta=g._meta)
    d = d.merge(g, on="user_id")
    d = d.assign(label=d["amount"] > d["mean_amount"])
    d = d[d["category"].isin(KEEP)]
    d = d.sort_values("ts")
    return d[SELECT]


def _filter_amount(p: pd.DataFrame) -> pd.DataFrame:
    return p[p["amount"] > 0]


def _assign_label(p: pd.DataFrame) -> pd.DataFrame:
    return p.assign(label=p["amount"] > p["mean_amount"])


def _filter_category(p: pd.DataFrame) -> pd.DataFrame:
    return p[p["category"].isin(KEEP)]


def plain_opaque_pipeline(events, users):
    """The plain Dask pipeline with its filters and assign as opaque ``map_partitions``,
    like hippo's partition functions: dask-expr can then no longer push the final column
    selection down into the merges (and the users read). Isolates that cost from capture."""
    d = events.dropna(subset=["f1", "f2"])
    d = d.map_partitions(_filter_amount)
    d = d.map_partitions(features)
    d = d.merge(users, on="user_id")
    g = d.groupby("user_id").agg(
        n_events=("event_id", "count"), mean_amount=("amount", "mean"), max_feat=("feat_a", "max")
    ).reset_index()
    g = g.map_partitions(_same, meta=g._meta)
    d = d.merge(g, on="user_id")
    d = d.map_partitions(_assign_label)
    d = d.map_partitions(_filter_category)
    d = d.sort_values("ts")
    return d[SELECT]


def hippo_pipeline(events, users):
    """The same pipeline with ``.hippo`` (lineage captured)."""
    import hippo_dask  # noqa: F401  (registers the accessor)

    ev = events.hippo.source("events")
    us = users.hippo.source("users")
    d = ev.hippo.dropna(subset=["f1", "f2"])
    d = d.hippo.filter(lambda p: p["amount"] > 0)
    d = d.hippo.map(features, reads=["amount", "f1", "f2"], writes=["feat_a", "feat_b"])
    d = d.hippo.merge(us, on="user_id")
    g = d.hippo.groupby("user_id").agg(
        n_events=("event_id", "count"), mean_amount=("amount", "mean"), max_feat=("feat_a", "max")
    )
    d = d.hippo.merge(g, on="user_id")
    d = d.hippo.assign(label=lambda p: p["amount"] > p["mean_amount"])
    d = d.hippo.filter(lambda p: p["category"].isin(KEEP))
    d = d.hippo.sort_values("ts")
    return d.hippo.select(SELECT)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(generate(int(float(arg))))
