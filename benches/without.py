"""Anomaly removal (``lin.without``) and result analysis (``lin.explain``) on the reference pipeline.

    PYTHONPATH=python python benches/without.py --n 1000000
    PYTHONPATH=python python benches/without.py --n 10000000

One process, one ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``;
data from ``refpipe.generate`` (parquet under /tmp/hippo_bench/n<N>/). Timed, in order:

* ``plain``: the plain Dask pipeline, computed: what a full rerun without the rows costs
  (the same pipeline on 0.1% fewer rows);
* ``capture``: the hippo pipeline, computed;
* ``random``: ``lin.without("events", rows)`` for 0.1% of the events drawn at random, with
  the result frame at hand (``out.hippo.lineage``), then the same as a dry run (diff only);
* ``user``: the same for every event of one user (positions found beforehand; the
  predicate form, which reads the events once more, is timed apart);
* ``what-if``: single-event dry runs, removals per second, against ``1 / plain``;
* ``check``: once per size, the corrected result of the random removal against a forced
  full rerun (``strategy="rerun"``), as multisets of rows;
* ``explain``: ``lin.explain(r, "mean_amount")`` for a result row, warm (median of 3), and
  from a fresh process (``hippo.open`` + explain, import included, median of 3).

Results print as JSON and go to /tmp/hippo_bench/without_n<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402

FRESH = """
import sys, time
t = time.perf_counter()
import hippo_dask as hippo
lin = hippo.open(sys.argv[1], sys.argv[2])
got = lin.explain(int(sys.argv[3]), "mean_amount", trust=True)
print(time.perf_counter() - t, len(got))
"""


def canonical(frame):
    import pandas as pd

    frame = frame.copy()
    for c in frame.columns:
        if frame[c].dtype.kind == "f":
            frame[c] = frame[c].round(9)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True).astype(str)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--whatif", type=int, default=5)
    args = parser.parse_args()
    n = int(args.n)
    refpipe.generate(n)

    import numpy as np
    import pandas as pd
    from distributed import Client, LocalCluster

    import hippo_dask as hippo

    out: dict = {"n": n}
    store = os.path.join(refpipe.ROOT, "stores", f"without-n{n}")
    shutil.rmtree(store, ignore_errors=True)
    hippo.set_store(store)
    rng = np.random.default_rng(7)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("hippo_dask"))
        t = time.perf_counter()
        refpipe.plain_pipeline(*refpipe.read(n)).compute()
        out["plain_s"] = time.perf_counter() - t

        t = time.perf_counter()
        result = refpipe.hippo_pipeline(*refpipe.read(n)).hippo.compute()
        out["capture_s"] = time.perf_counter() - t
        lin = result.hippo.lineage
        out["rows"] = len(result)

        removed = np.sort(rng.choice(n, size=max(1, n // 1000), replace=False))
        t = time.perf_counter()
        w = lin.without("events", removed, trust=True)
        out["random_s"] = time.perf_counter() - t
        out["random_of_plain"] = out["random_s"] / out["plain_s"]
        out["random"] = {"strategy": w.strategy, "affected": w.affected, **w.counts()}
        t = time.perf_counter()
        lin.without("events", removed, trust=True, dry_run=True)
        out["random_dry_s"] = time.perf_counter() - t

        t = time.perf_counter()
        full = lin.without("events", removed, trust=True, strategy="rerun")
        out["random_rerun_s"] = time.perf_counter() - t
        out["random_equals_rerun"] = bool(canonical(w.result).equals(canonical(full.result)))
        out["random_diff_equals_rerun"] = w.counts() == full.counts()

        import dask.dataframe as dd

        user = int(result["user_id"].iloc[len(result) // 2])
        events = dd.read_parquet(os.path.join(refpipe.data_dir(n), "events"), columns=["user_id"])
        positions = np.flatnonzero(events["user_id"].compute().to_numpy() == user)
        t = time.perf_counter()
        w = lin.without("events", positions, trust=True)
        out["user_s"] = time.perf_counter() - t
        out["user_of_plain"] = out["user_s"] / out["plain_s"]
        out["user"] = {"strategy": w.strategy, "events": len(positions), "affected": w.affected, **w.counts()}
        t = time.perf_counter()
        lin.without("events", positions, trust=True, dry_run=True)
        out["user_dry_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lin.without("events", lambda f: f["user_id"] == user, trust=True, dry_run=True)
        out["user_predicate_dry_s"] = time.perf_counter() - t

        times = []
        for position in rng.choice(n, size=args.whatif, replace=False):
            t = time.perf_counter()
            lin.without("events", [int(position)], trust=True, dry_run=True)
            times.append(time.perf_counter() - t)
        out["whatif_s"] = times
        out["whatif_per_s"] = len(times) / sum(times)
        out["rerun_per_s"] = 1 / out["plain_s"]

        row = len(result) // 3
        times = []
        for _ in range(3):
            t = time.perf_counter()
            got = lin.explain(row, "mean_amount", trust=True)
            times.append(time.perf_counter() - t)
        out["explain_warm_s"] = statistics.median(times)
        out["explain_lines"] = len(got)
        out["explain_adds_up"] = bool(np.isclose(got["contribution"].sum(), result["mean_amount"].iloc[row], rtol=1e-9))
    print(json.dumps(out, indent=1), flush=True)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", FRESH, store, lin.run_id, str(row)], capture_output=True,
                              text=True, check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, "..", "python"), HERE])))
        times.append(time.perf_counter() - t)
        out.setdefault("explain_fresh_inner_s", []).append(float(done.stdout.split()[0]))
    out["explain_fresh_s"] = statistics.median(times)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import hippo_dask"], check=True,
                   env=dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "python")))
    out["import_s"] = time.perf_counter() - t
    print(json.dumps(out, indent=1))
    with open(os.path.join(refpipe.ROOT, f"without_n{n}.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
