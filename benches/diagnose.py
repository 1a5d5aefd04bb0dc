"""Replay and isolate on the reference pipeline, against plain full reruns, on a LocalCluster.

    PYTHONPATH=python python benches/diagnose.py --n 1000000
    PYTHONPATH=python python benches/diagnose.py --n 10000000

One process, one ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``;
data from ``refpipe.generate`` (parquet under /tmp/hippo_bench/n<N>/). Timed, in order:

* ``plain``: the plain Dask pipeline, computed (what "a full rerun" costs);
* ``capture``: the hippo pipeline, computed (with its replay record);
* ``replay``: ``lin.replay(verify=True, trust=True)`` (events and users re-read from their
  files, every operation re-run, the result compared by digest);
* ``slice``: ``lin.replay(rows=[r], trust=True)`` for 3 result rows (median), against ``plain``;
* ``isolate``: one event's amount is planted as 1e6 (in a copy of the data, one file
  rewritten); the pipeline is captured on it, and ``lin.isolate`` searches the backward
  trace of the result rows whose ``mean_amount`` is off for the rows whose removal fixes
  them; the time includes reading those rows once, against ``plain``.

Results print as JSON and go to /tmp/hippo_bench/diagnose_n<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402


def planted_copy(n: int, file_index: int = 1, offset: int = 777) -> tuple[str, int]:
    """A copy of the n-event data with one event's amount set to 1e6; its source position."""
    import pandas as pd

    base = refpipe.generate(n)
    target = os.path.join(refpipe.ROOT, f"n{n}-planted")
    events = os.path.join(target, "events")
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(events)
    names = sorted(os.listdir(os.path.join(base, "events")))
    for name in names:
        os.symlink(os.path.join(base, "events", name), os.path.join(events, name))
    os.symlink(os.path.join(base, "users.parquet"), os.path.join(target, "users.parquet"))
    victim = os.path.join(events, names[file_index])
    frame = pd.read_parquet(victim)
    os.unlink(victim)
    usable = frame.index[(frame.index >= offset) & frame["f1"].notna().to_numpy() & frame["f2"].notna().to_numpy()]
    offset = int(usable[0])  # a row the pipeline keeps (dropna(f1, f2) runs before the group-by)
    frame.loc[offset, "amount"] = 1e6
    frame.to_parquet(victim, index=False)
    return target, file_index * refpipe.ROWS_PER_FILE + offset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=float, default=1e6)
    args = parser.parse_args()
    n = int(args.n)
    refpipe.generate(n)

    import dask.dataframe as dd
    import numpy as np
    from distributed import Client, LocalCluster

    import hippo_dask as hippo

    out: dict = {"n": n}
    store = os.path.join(refpipe.ROOT, "stores", f"diagnose-n{n}")
    shutil.rmtree(store, ignore_errors=True)
    hippo.set_store(store)
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

        t = time.perf_counter()
        report = lin.replay(trust=True)
        out["replay_s"] = time.perf_counter() - t
        out["replay_identical"] = report.identical
        out["replay_differences"] = [str(d) for d in report.differences]

        times = []
        for r in np.linspace(0, len(result) - 1, 3).astype(int):
            t = time.perf_counter()
            got = lin.replay(rows=[int(r)], trust=True)
            times.append(time.perf_counter() - t)
            # floats may differ in the last bits: Dask sums a group across partitions in another order
            import pandas as pd

            pd.testing.assert_frame_equal(got, result.iloc[[int(r)]], check_exact=False, rtol=1e-12)
        out["slice_s"] = statistics.median(times)
        out["slice_all_s"] = times
        out["slice_of_plain"] = out["slice_s"] / out["plain_s"]

        folder, planted = planted_copy(n)
        events = dd.read_parquet(os.path.join(folder, "events"))
        users = dd.read_parquet(os.path.join(folder, "users.parquet"))
        bad = refpipe.hippo_pipeline(events, users).hippo.compute()
        wrong = np.flatnonzero(bad["mean_amount"].to_numpy() > 1e4)
        t = time.perf_counter()
        found = bad.hippo.lineage.isolate(lambda rows: bool((rows["mean_amount"] > 1e4).any()), rows=wrong, trust=True)
        out["isolate_s"] = time.perf_counter() - t
        out["isolate_of_plain"] = out["isolate_s"] / out["plain_s"]
        out["isolate_found"] = {k: v.tolist() for k, v in found.rows.items()}
        out["isolate_planted"] = planted
        out["isolate_exact"] = out["isolate_found"] == {"events": [planted]}
        out["isolate_tests"] = found.tests
        out["isolate_candidates"] = found.candidates
        out["isolate_wrong_rows"] = len(wrong)
    print(json.dumps(out, indent=1))
    with open(os.path.join(refpipe.ROOT, f"diagnose_n{n}.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
