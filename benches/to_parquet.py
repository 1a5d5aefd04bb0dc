"""``to_parquet`` (results written from the workers) against ``compute()`` on the reference pipeline.

    PYTHONPATH=python python benches/to_parquet.py --n 10000000

One process, one ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``; data from
``refpipe.generate``. Timed: the hippo pipeline with ``.hippo.compute()`` (result gathered into
the client) and with ``.hippo.to_parquet(folder)`` (nothing gathered), alternating, twice each;
the client's peak RSS growth during each (sampled every 50 ms); then a backward query of one row
of the written run, warm. Results print as JSON and go to /tmp/hippo_bench/to_parquet_n<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402


class PeakRSS:
    """Peak resident memory of this process above its level at start, sampled in a thread."""

    def __enter__(self):
        import psutil

        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def grown_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=float, default=1e6)
    args = parser.parse_args()
    n = int(args.n)
    refpipe.generate(n)

    import numpy as np
    from distributed import Client, LocalCluster

    import hippo_dask as hippo

    out: dict = {"n": n, "compute_s": [], "to_parquet_s": [], "compute_rss_mb": [], "to_parquet_rss_mb": []}
    store = os.path.join(refpipe.ROOT, "stores", f"to-parquet-n{n}")
    shutil.rmtree(store, ignore_errors=True)
    hippo.set_store(store)
    folder = os.path.join(refpipe.ROOT, f"to-parquet-out-n{n}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("hippo_dask"))
        for _ in range(2):
            with PeakRSS() as peak:
                t = time.perf_counter()
                result = refpipe.hippo_pipeline(*refpipe.read(n)).hippo.compute()
                out["compute_s"].append(time.perf_counter() - t)
            out["compute_rss_mb"].append(peak.grown_mb)
            rows = len(result)
            del result
            shutil.rmtree(folder, ignore_errors=True)
            with PeakRSS() as peak:
                t = time.perf_counter()
                lin = refpipe.hippo_pipeline(*refpipe.read(n)).hippo.to_parquet(folder)
                out["to_parquet_s"].append(time.perf_counter() - t)
            out["to_parquet_rss_mb"].append(peak.grown_mb)
        out["rows"] = rows
        out["written_rows"] = lin.nrows
        out["files"] = len(lin.manifest["result"]["fragments"])
        lin.backward([lin.nrows // 2])
        times = []
        for r in np.linspace(0, lin.nrows - 1, 5).astype(int):
            t = time.perf_counter()
            lin.backward([int(r)])
            times.append(time.perf_counter() - t)
        out["backward_warm_ms"] = 1000 * float(np.median(times))
    print(json.dumps(out, indent=1))
    with open(os.path.join(refpipe.ROOT, f"to_parquet_n{n}.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
