"""Query latency on the reference pipeline's stored run (run ``benches/capture.py`` first).

    PYTHONPATH=python python benches/queries.py --n 10000000 [--profile]

Uses the last hippo run recorded in /tmp/hippo_bench/capture_n<N>.json (or ``--store`` and
``--run-id``).

* warm: one ``Lineage`` object, the query repeated (after one untimed call); median.
* fresh: a new Python process per sample; median of 5 of: ``import hippo_dask`` (lazy: it
  imports no Dask, and the query path imports none later either), ``hippo.open(store,
  run_id)`` (imports what queries need), the first query (the ``Trace`` / ``TraceSet``;
  building ``.cells`` DataFrames is timed apart) and their total; plus the whole
  process's wall time (interpreter start and exit included).
* backward: one result row (the middle one) to all sources, ``columns=None`` (whole row)
  and one column (``label``, which goes through the group-by; ``amount``, which does not);
  and a batch of 100,000 random result rows, whole rows and ``label``.
* forward: 10,000 random events rows (sorted), whole rows and one column (``amount``).

``--profile``: cProfile of a cold backward / forward on a new Lineage object in this
process (top functions by cumulative and self time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refpipe  # noqa: E402

FRESH = r"""
import sys, time, json
t0 = time.perf_counter()
import hippo_dask as hippo
t1 = time.perf_counter()
import numpy as np
store, run_id, kind, arg, cols = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
t2 = time.perf_counter()
lin = hippo.open(store, run_id)
t3 = time.perf_counter()
if kind == "backward":
    out = lin.backward(rows=arg, columns=cols)
    t4 = time.perf_counter()
    size = sum(len(v.cells) for v in out.values())
else:
    out = lin.forward("events", rows=np.asarray(arg, dtype=np.int64), columns=cols)
    t4 = time.perf_counter()
    size = len(out.cells)
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "open": t3 - t2, "query": t4 - t3, "total": t4 - t0 - (t2 - t1), "cells_s": t5 - t4,
                  "cells": size, "dask": any(m.split(".")[0] in ("dask", "distributed") for m in sys.modules)}))
"""


def timeit(fn, repeat: int) -> tuple[float, float, object]:
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return first, statistics.median(samples), out


def fresh(store, run_id, kind, arg, cols, repeat=5) -> dict:
    rows = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", FRESH, store, run_id, kind, json.dumps(arg), json.dumps(cols)],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t
        if out.returncode:
            raise RuntimeError(f"fresh query failed:\n{out.stderr}")
        rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "process": wall})
    return {k: (any(r[k] for r in rows) if k == "dask" else statistics.median(r[k] for r in rows)) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e7)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--store", help="store of the run to query (default: the last run of capture.py)")
    ap.add_argument("--run-id")
    ap.add_argument("--fresh", type=int, default=5, help="fresh processes per query")
    args = ap.parse_args()
    n = int(args.n)
    import numpy as np

    import hippo_dask as hippo

    if args.store:
        store, run_id = args.store, args.run_id or hippo.open(args.store).run_id
    else:
        with open(os.path.join(refpipe.ROOT, f"capture_n{n}.json")) as f:
            cap = json.load(f)
        store, run_id = cap["last_hippo"]["store"], cap["last_hippo"]["run_id"]
    lin = hippo.open(store, run_id)
    row = lin.nrows // 2
    fwd_rows = np.sort(np.random.default_rng(0).choice(lin.source_rows("events"), 10_000, replace=False))
    batch = np.sort(np.random.default_rng(1).choice(lin.nrows, min(100_000, lin.nrows), replace=False))

    if args.profile:
        import cProfile
        import pstats

        for label, call in [
            ("backward(row, columns=None), cold", lambda l: l.backward(rows=[row])),
            ("forward(events, 10k rows), cold", lambda l: l.forward("events", rows=fwd_rows)),
        ]:
            fresh_lin = hippo.open(store, run_id)
            prof = cProfile.Profile()
            prof.enable()
            call(fresh_lin)
            prof.disable()
            print(f"\n--- {label} ---")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(5):
                call(fresh_lin)
            prof.disable()
            print(f"\n--- {label.replace('cold', 'warm x5')} ---")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return

    print(f"queries on run {run_id} (N={n:,}: {lin.nrows:,} result rows, sources {lin.sources}); "
          f"load {os.getloadavg()}")
    cases = [
        ("backward 1 result row, columns=None", "backward", [row], None),
        ("backward 1 result row, columns=['label']", "backward", [row], ["label"]),
        ("backward 1 result row, columns=['amount']", "backward", [row], ["amount"]),
        ("forward 10,000 events rows, columns=None", "forward", fwd_rows.tolist(), None),
        ("forward 10,000 events rows, columns=['amount']", "forward", fwd_rows.tolist(), ["amount"]),
        (f"backward {len(batch):,} result rows, columns=None", "batch", batch.tolist(), None),
        (f"backward {len(batch):,} result rows, columns=['label']", "batch", batch.tolist(), ["label"]),
    ]
    targets = {"backward": "warm <= 5, fresh <= 300 (import included)", "forward": "warm <= 100", "batch": "warm <= 1000"}
    print("| query | answer (cells) | first call on the open Lineage (ms) | warm median (ms) "
          "| fresh process: import + open + first query = total (ms) [.cells; process wall] | target |")
    print("|---|---|---|---|---|---|")
    dask_seen = False
    for label, kind, arg, cols in cases:
        if kind in ("backward", "batch"):
            call = lambda: lin.backward(rows=np.asarray(arg), columns=cols)  # noqa: E731
        else:
            call = lambda: lin.forward("events", rows=fwd_rows, columns=cols)  # noqa: E731
        first, warm, out = timeit(call, args.repeat if kind != "batch" else max(3, args.repeat // 5))
        cells = sum(v.n_cells for v in out.values()) if kind != "forward" else out.n_cells
        if kind == "batch":
            fr_text = "-"
        else:
            fr = fresh(store, run_id, kind, arg, cols, args.fresh)
            dask_seen |= fr["dask"]
            fr_text = (f"{fr['import'] * 1e3:.0f} + {fr['open'] * 1e3:.0f} + {fr['query'] * 1e3:.0f} = "
                       f"**{fr['total'] * 1e3:.0f}** [{fr['cells_s'] * 1e3:.0f}; {fr['process'] * 1e3:.0f}]")
        print(f"| {label} | {cells:,} | {first * 1e3:.1f} | {warm * 1e3:.2f} | {fr_text} | {targets[kind]} |", flush=True)
    print(f"\n(fresh processes imported Dask: {dask_seen}; load {os.getloadavg()})")

if __name__ == "__main__":
    main()
