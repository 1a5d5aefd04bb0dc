"""The healthcare pipeline (hippo_dask.examples.healthcare) on pandas, data replicated x100.

    PYTHONPATH=python python benches/healthcare_x100.py [--copies 100] [--runs 5] [--profile]

patients and histories (887 rows each) are repeated ``--copies`` times; copy k gets
ssn + "-k" on both sides, so the merge stays one-to-one (88,700 patients at x100).
Timed: the whole pipeline, from ``.hippo.source`` to the computed result (the lineage
variant includes writing the run to a fresh store under /tmp/hippo_bench/stores/), against
the same pipeline in plain pandas; variants alternate, median of ``--runs`` each.
``--profile`` prints cProfile of one lineage run (top by cumulative and by self time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import numpy as np
import pandas as pd

import hippo_dask as hippo
from hippo_dask.examples import HEALTHCARE_COLUMNS, healthcare, load_healthcare

STORES = "/tmp/hippo_bench/stores"


def replicate(copies: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    patients, histories = load_healthcare()
    k = np.repeat(np.arange(copies), len(patients))
    p = pd.concat([patients] * copies, ignore_index=True)
    p["ssn"] = p["ssn"] + "-" + pd.Series(k).astype(str)
    k = np.repeat(np.arange(copies), len(histories))
    h = pd.concat([histories] * copies, ignore_index=True)
    h["ssn"] = h["ssn"] + "-" + pd.Series(k).astype(str)
    return p, h


def plain(patients: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    data = patients.merge(histories, on="ssn")
    complications = data.groupby("age_group").agg(mean_complications=("complications", "mean")).reset_index()
    data = data.merge(complications, on="age_group")
    data = data.assign(label=data["complications"] > 1.2 * data["mean_complications"])
    data = data[HEALTHCARE_COLUMNS]
    return data[data["county"].isin(["county2", "county3"])]


def with_lineage(patients: pd.DataFrame, histories: pd.DataFrame, store: str) -> pd.DataFrame:
    hippo.set_store(store)
    return healthcare(patients, histories).hippo.compute()


def store_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    patients, histories = replicate(args.copies)
    print(f"healthcare x{args.copies}: {len(patients):,} patients, {len(histories):,} histories (pandas); "
          f"load {os.getloadavg()}")
    if args.profile:
        import cProfile
        import pstats

        store = os.path.join(STORES, "healthcare-prof")
        shutil.rmtree(store, ignore_errors=True)
        with_lineage(patients, histories, store)  # warm
        prof = cProfile.Profile()
        prof.enable()
        with_lineage(patients, histories, store)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    # warm both (imports, caches)
    plain(patients, histories)
    with_lineage(patients, histories, os.path.join(STORES, "healthcare-warm"))
    times: dict[str, list[float]] = {"plain": [], "hippo": []}
    sizes = []
    rows = set()
    for i in range(args.runs):
        for variant in (("plain", "hippo") if i % 2 == 0 else ("hippo", "plain")):
            t = time.perf_counter()
            if variant == "plain":
                out = plain(patients, histories)
            else:
                store = os.path.join(STORES, f"healthcare-{i}")
                shutil.rmtree(store, ignore_errors=True)
                out = with_lineage(patients, histories, store)
            times[variant].append(time.perf_counter() - t)
            rows.add(len(out))
            if variant == "hippo":
                sizes.append(store_bytes(store))
    assert len(rows) == 1, rows
    mp, mh = statistics.median(times["plain"]), statistics.median(times["hippo"])
    print("| variant | median (ms) | runs (ms) |")
    print("|---|---|---|")
    print(f"| plain pandas | {mp * 1e3:.1f} | {', '.join('%.1f' % (t * 1e3) for t in times['plain'])} |")
    print(f"| .hippo (lineage) | {mh * 1e3:.1f} | {', '.join('%.1f' % (t * 1e3) for t in times['hippo'])} |")
    print(f"ratio hippo / plain = {mh / mp:.2f}; result rows {rows.pop():,}; store {statistics.median(sizes):,.0f} bytes "
          f"({statistics.median(sizes) / (len(patients) + len(histories)):.2f} bytes per source row); load {os.getloadavg()}")


if __name__ == "__main__":
    main()
