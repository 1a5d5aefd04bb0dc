"""Exact size of the cell-wise lineage baseline (DESIGN section 6) of the reference pipeline.

    PYTHONPATH=python python benches/cellwise_baseline.py --n 1000000

Runs the reference pipeline in plain pandas over the same parquet data as
``benches/capture.py`` and counts, per operator, every (output cell, input cell) pair of
DESIGN section 3, at 16 bytes a pair (two int64 cell ids). Counts come from the data
(rows that survive each step, join multiplicities, group sizes), not from estimates:

* dropna / filter / sort_values / select: every output cell <- the same cell of its
  input row: rows_out x cols_out pairs (the predicate's columns are not values).
* map(writes=W, reads=R): unwritten columns <- themselves (rows x (cols - |W|)), every
  written cell <- the |R| read cells of its row (rows x |W| x |R|).
* assign(label <- amount, mean_amount): the same, with |W| = 1, |R| = 2.
* merge(on=key): per output row, every non-key column <- its one input cell, and the key
  <- the key cell of every side present (2 for an inner join): summed over output rows.
* groupby(key).agg(out=(col, f)): each output cell (key and every aggregate) <- that
  column's cell in every member row of its group: sum over groups of members x (1 + aggs).

If ``/tmp/hippo_bench/capture_n<N>.json`` exists (``benches/capture.py``), the store size
of its last hippo run is compared with the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refpipe  # noqa: E402

PAIR_BYTES = 16


def count(n: int) -> tuple[list[tuple[str, int, int, int, str]], int, int]:
    base = refpipe.generate(n)
    events = pd.read_parquet(os.path.join(base, "events"))
    users = pd.read_parquet(os.path.join(base, "users.parquet"))
    ops: list[tuple[str, int, int, int, str]] = []  # (op, rows out, cols out, pairs, formula)

    def unary(name, frame, per_row, formula):
        ops.append((name, len(frame), frame.shape[1], len(frame) * per_row, formula))

    d = events.dropna(subset=["f1", "f2"])
    unary("dropna(f1, f2)", d, d.shape[1], "rows x cols")
    d = d[d["amount"] > 0]
    unary("filter(amount > 0)", d, d.shape[1], "rows x cols")
    before = list(d.columns)
    d = refpipe.features(d)
    writes, reads = ["feat_a", "feat_b"], ["amount", "f1", "f2"]
    unary("map(feat_a, feat_b <- amount, f1, f2)", d, (len(before)) + len(writes) * len(reads),
          f"rows x ({len(before)} + {len(writes)}x{len(reads)})")

    def merge(name, left, right, key):
        out = left.merge(right, on=key, how="inner", indicator=True)
        sides = np.where(out["_merge"].to_numpy() == "both", 2, 1)  # key <- key of each side present
        out = out.drop(columns="_merge")
        non_key = out.shape[1] - 1
        pairs = int(len(out) * non_key + sides.sum())
        ops.append((name, len(out), out.shape[1], pairs, f"rows x {non_key} non-key + key x sides present"))
        return out

    d = merge("merge(users, on=user_id)", d, users, "user_id")
    aggs = {"n_events": ("event_id", "count"), "mean_amount": ("amount", "mean"), "max_feat": ("feat_a", "max")}
    g = d.groupby("user_id").agg(**aggs).reset_index()
    members = d["user_id"].value_counts()  # group sizes, from the data
    pairs = int(members.sum()) * (1 + len(aggs))
    assert len(members) == len(g)
    ops.append(("groupby(user_id).agg(3)", len(g), g.shape[1], pairs, "sum over groups of members x (key + 3 aggs)"))
    d = merge("merge(groups, on=user_id)", d, g, "user_id")
    ncols = d.shape[1]
    d = d.assign(label=d["amount"] > d["mean_amount"])
    unary("assign(label <- amount, mean_amount)", d, ncols + 2, f"rows x ({ncols} + 1x2)")
    d = d[d["category"].isin(refpipe.KEEP)]
    unary("filter(category in KEEP)", d, d.shape[1], "rows x cols")
    d = d.sort_values("ts")
    unary("sort_values(ts)", d, d.shape[1], "rows x cols")
    d = d[refpipe.SELECT]
    unary("select 10 columns", d, d.shape[1], "rows x cols")
    return ops, len(events) + len(users), len(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e6)
    args = ap.parse_args()
    n = int(args.n)
    t0 = time.perf_counter()
    ops, src_rows, result_rows = count(n)
    total = sum(p for _, _, _, p, _ in ops)
    print(f"cell-wise baseline, reference pipeline, N={n:,} ({src_rows:,} source rows, {result_rows:,} result rows); "
          f"counted in {time.perf_counter() - t0:.1f} s")
    print("| operator | rows out | cols out | pairs | formula | bytes (16/pair) |")
    print("|---|---|---|---|---|---|")
    for name, rows, cols, pairs, formula in ops:
        print(f"| {name} | {rows:,} | {cols} | {pairs:,} | {formula} | {pairs * PAIR_BYTES:,} |")
    print(f"| **total** | | | {total:,} | | {total * PAIR_BYTES:,} ({total * PAIR_BYTES / 2**30:.2f} GiB) |")
    path = os.path.join(refpipe.ROOT, f"capture_n{n}.json")
    out = {"n": n, "pairs": total, "bytes": total * PAIR_BYTES, "ops": ops}
    if os.path.exists(path):
        with open(path) as f:
            cap = json.load(f)
        store = cap["store"]["total"]
        print(f"\nhippo store (last run of {path}): {store:,} bytes; baseline / hippo = "
              f"{total * PAIR_BYTES / store:,.0f}x (target >= 1000x); {store / src_rows:.3f} bytes per source row "
              f"(target <= 3)")
        out["store"] = store
    with open(os.path.join(refpipe.ROOT, f"baseline_n{n}.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
