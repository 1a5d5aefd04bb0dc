"""Store bytes of the reference pipeline, per operator and per array, against the cell-wise baseline.

    PYTHONPATH=python python benches/storage.py --n 1e7          # capture once, then report
    PYTHONPATH=python python benches/storage.py --n 1e7 --run RUN  # report on a run already in the store

Captures the hippo variant of ``refpipe`` once on a ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`` into /tmp/hippo_bench/stores/storage_n<N> (a fresh store),
then prints ``Lineage.storage()`` (bytes per operator), each stored array's bytes (every array of
every fragment re-encoded alone: ``capture.store_breakdown``), and the ratio to the cell-wise baseline
(``cellwise_baseline.count``, 16 bytes per (output cell, input cell) pair; cached in
/tmp/hippo_bench/baseline_n<N>.json). Results go to /tmp/hippo_bench/storage_n<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402


def capture(n: int, store: str) -> str:
    from distributed import Client, LocalCluster

    import hippo_dask as hippo

    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(store + "-result", ignore_errors=True)
    hippo.set_store(store)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        events, users = refpipe.read(n)
        t0 = time.perf_counter()
        lin = refpipe.hippo_pipeline(events, users).hippo.to_parquet(store + "-result")
        print(f"captured in {time.perf_counter() - t0:.1f} s: run {lin.run_id}")
        return lin.run_id


def baseline(n: int) -> dict:
    path = os.path.join(refpipe.ROOT, f"baseline_n{n}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    import cellwise_baseline

    ops, src_rows, result_rows = cellwise_baseline.count(n)
    pairs = sum(p for _, _, _, p, _ in ops)
    out = {"n": n, "pairs": pairs, "bytes": pairs * cellwise_baseline.PAIR_BYTES, "ops": ops, "source_rows": src_rows}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--run", default=None, help="report on this run of the store instead of capturing")
    args = ap.parse_args()
    n = int(args.n)
    refpipe.generate(n)
    store = os.path.join(refpipe.ROOT, "stores", f"storage_n{n}")
    run_id = args.run or capture(n, store)

    import hippo_dask as hippo

    lin = hippo.open(store, run_id)
    table = lin.storage()
    base = baseline(n)
    source_rows = sum(int(s["rows"]) for s in lin.manifest["sources"].values())
    total = int(table["bytes"].iloc[-1])
    print(table.to_string(index=False))
    print("\n| array | bytes | bytes per source row |\n|---|---|---|")
    import capture as capture_bench  # its store_breakdown re-encodes every array of every fragment alone

    sizes = {name: b for name, (b, _rows) in capture_bench.store_breakdown(store)["arrays"].items()}
    for name, b in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {b:,} | {b / source_rows:.3f} |")
    ratio = base["bytes"] / total
    print(f"\nstore {total:,} bytes = {total / source_rows:.3f} bytes per source row (target <= 3); "
          f"cell-wise baseline {base['bytes']:,} bytes = {ratio:,.0f}x the store (target >= 1000x)")
    out = {"n": n, "run": run_id, "store_bytes": total, "bytes_per_source_row": total / source_rows,
           "baseline_bytes": base["bytes"], "ratio": ratio, "per_operator": table.astype(object).to_dict("records"),
           "per_array": sizes}
    with open(os.path.join(refpipe.ROOT, f"storage_n{n}.json"), "w") as f:
        json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
