"""The reference pipeline at scale (100M events), written from the workers: plain Dask against hippo.

    PYTHONPATH=python python benches/scale.py --n 1e8                 # both variants, then queries
    PYTHONPATH=python python benches/scale.py --n 1e8 --only hippo    # one variant

Each variant runs in a fresh subprocess with its own ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`` (Dask's default memory limits: spilling to disk and
p2p shuffles on disk make the run out of core). Parquet sources from ``refpipe.generate``
(400 files of 250,000 events at 1e8). Plain: ``refpipe.plain_pipeline(...).to_parquet(folder)``;
hippo: ``refpipe.hippo_pipeline(...).hippo.to_parquet(folder)``: the result never reaches the
client in either. Measured: wall time, peak RSS of each worker and of the client process
(sampled every 50 ms with psutil; the client also hosts the scheduler), the store's bytes per
operator (``Lineage.storage()``), and query latency on the hippo run (``hippo.open``, backward of
one row warm and from a fresh process, forward of 10,000 events rows warm). Results go to
/tmp/hippo_bench/scale_n<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402


class Peaks(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        import psutil

        self.procs = {p: psutil.Process(p) for p in pids}
        self.peak = {p: 0 for p in pids}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for p, proc in self.procs.items():
                try:
                    self.peak[p] = max(self.peak[p], proc.memory_info().rss)
                except Exception:
                    pass
            time.sleep(0.05)


def child(n: int, variant: str) -> dict:
    from distributed import Client, LocalCluster

    import hippo_dask as hippo

    folder = os.path.join(refpipe.ROOT, f"scale-out-{variant}-n{n}")
    shutil.rmtree(folder, ignore_errors=True)
    store = os.path.join(refpipe.ROOT, "stores", f"scale_n{n}")
    if variant == "hippo":
        shutil.rmtree(store, ignore_errors=True)
        hippo.set_store(store)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = list(client.run(lambda: (__import__("hippo_dask"), os.getpid())[1]).values())
        peaks = Peaks(pids + [os.getpid()])
        peaks.start()
        t0 = time.perf_counter()
        events, users = refpipe.read(n)
        error = None
        run_id = None
        try:
            if variant == "hippo":
                lin = refpipe.hippo_pipeline(events, users).hippo.to_parquet(folder)
                run_id = lin.run_id
            else:
                refpipe.plain_pipeline(events, users).to_parquet(folder, write_index=False)
        except Exception as exc:  # report what breaks
            error = f"{type(exc).__name__}: {exc}"[:2000]
        wall = time.perf_counter() - t0
        peaks.stop.set()
        peaks.join()
    return {"variant": variant, "n": n, "wall_s": wall, "error": error, "run_id": run_id, "store": store,
            "worker_peak_mb": [peaks.peak[p] / 2**20 for p in pids], "client_peak_mb": peaks.peak[os.getpid()] / 2**20,
            "loadavg": os.getloadavg()}


def fresh_backward(store: str, run_id: str, row: int) -> dict:
    code = ("import time; t0 = time.perf_counter(); import hippo_dask as hippo; t1 = time.perf_counter(); "
            f"lin = hippo.open({store!r}, {run_id!r}); lin.backward([{row}]); t2 = time.perf_counter(); "
            "print(t1 - t0, t2 - t1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imp, query = map(float, out.stdout.split())
    return {"import_s": imp, "query_s": query}


def queries(store: str, run_id: str) -> dict:
    import numpy as np

    import hippo_dask as hippo

    lin = hippo.open(store, run_id)
    out: dict = {"result_rows": lin.nrows, "storage": lin.storage().astype(object).to_dict("records")}
    t = time.perf_counter()
    lin.backward([lin.nrows // 2])
    out["backward_first_s"] = time.perf_counter() - t
    warm = []
    for r in np.linspace(0, lin.nrows - 1, 11).astype(int):
        t = time.perf_counter()
        lin.backward([int(r)])
        warm.append(time.perf_counter() - t)
    out["backward_warm_ms"] = 1000 * float(np.median(warm))
    rows = np.random.default_rng(0).choice(lin.source_rows("events"), 10_000, replace=False)
    lin.forward("events", rows)
    t = time.perf_counter()
    lin.forward("events", rows)
    out["forward_10k_warm_ms"] = 1000 * (time.perf_counter() - t)
    out["fresh"] = [fresh_backward(store, run_id, lin.nrows // 3) for _ in range(3)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--only", choices=["plain", "hippo"], default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = int(args.n)
    if args.child:
        print("RESULT " + json.dumps(child(n, args.child)))
        return
    refpipe.generate(n)
    results: dict = {"n": n}
    for variant in ([args.only] if args.only else ["plain", "hippo"]):
        proc = subprocess.run([sys.executable, __file__, "--n", str(n), "--child", variant],
                              capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        results[variant] = json.loads(line[-1][7:]) if line else {"error": proc.stderr[-3000:]}
        print(variant, json.dumps(results[variant], indent=1), flush=True)
    hippo_run = results.get("hippo", {})
    if hippo_run.get("run_id"):
        results["queries"] = queries(hippo_run["store"], hippo_run["run_id"])
        print(json.dumps(results["queries"], indent=1, default=str))
    with open(os.path.join(refpipe.ROOT, f"scale_n{n}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
