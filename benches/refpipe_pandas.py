"""The reference pipeline (benches/refpipe.py) on plain pandas frames: hippo vs plain.

    python benches/refpipe_pandas.py --n 1000000 --runs 5          # with the installed pandas
    /tmp/minv/bin/python benches/refpipe_pandas.py --n 1000000     # e.g. in a venv at the floors

No Dask scheduler: events and users are read once with ``pd.read_parquet`` (not timed; the
parquet is written by ``refpipe.generate`` under /tmp/hippo_bench/n<N>/ when missing), then
``refpipe.plain_pipeline`` and ``refpipe.hippo_pipeline`` run on the pandas frames. Timed:
building the pipeline until the pandas result is in hand (hippo: ``.hippo.compute()``, which
includes committing the run to a fresh store under /tmp/hippo_bench/stores/). Variants
alternate after one warm-up each; the median and minimum of ``--runs`` each and their ratios
are printed
with the versions of pandas, numpy, pyarrow and dask, and saved to
/tmp/hippo_bench/refpipe_pandas_n<N>_pandas<version>.json.

This is the measurement behind the ``pandas>=3.0.0`` floor (issue 9): without pandas 3's
copy-on-write, each step of the hippo pipeline copied whole frames. ``--cow`` turns pandas 2.x's
opt-in copy-on-write on first (a global option: hippo cannot set it for its users).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cow", action="store_true", help="pandas 2.x: set pd.options.mode.copy_on_write = True first")
    args = ap.parse_args()
    n = int(args.n)

    import dask
    import numpy as np
    import pandas as pd
    import pyarrow

    import hippo_dask as hippo

    pandas3 = int(pd.__version__.split(".")[0]) >= 3
    if args.cow and not pandas3:
        pd.options.mode.copy_on_write = True
    base = refpipe.generate(n)
    events = pd.read_parquet(os.path.join(base, "events"))
    users = pd.read_parquet(os.path.join(base, "users.parquet"))
    stores = os.path.join(refpipe.ROOT, "stores")
    os.makedirs(stores, exist_ok=True)

    def plain() -> pd.DataFrame:
        return refpipe.plain_pipeline(events, users)

    def traced() -> pd.DataFrame:
        store = tempfile.mkdtemp(prefix="refpipe_pandas_", dir=stores)
        try:
            hippo.set_store(store)
            return refpipe.hippo_pipeline(events, users).hippo.compute()
        finally:
            shutil.rmtree(store, ignore_errors=True)

    variants = {"plain": plain, "hippo": traced}
    rows = {}
    for name, fn in variants.items():  # warm-up (imports, caches)
        rows[name] = len(fn())
    assert rows["plain"] == rows["hippo"], rows
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.runs):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    out = {
        "n": n,
        "rows": rows["plain"],
        "versions": {
            "python": sys.version.split()[0],
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "pyarrow": pyarrow.__version__,
            "dask": dask.__version__,
        },
        "copy_on_write": True if pandas3 else bool(pd.options.mode.copy_on_write),
        "times_s": times,
        "median_s": med,
        "min_s": best,
        "ratio": med["hippo"] / med["plain"],
        "ratio_of_min": best["hippo"] / best["plain"],
    }
    v = out["versions"]
    print(f"pandas {v['pandas']}, numpy {v['numpy']}, pyarrow {v['pyarrow']}, dask {v['dask']}, "
          f"python {v['python']}, copy-on-write {out['copy_on_write']}; N={n:,} events, {rows['plain']:,} result rows")
    for k in variants:
        print(f"  {k:6s} median {med[k] * 1000:8.1f} ms   min {best[k] * 1000:8.1f} ms   runs "
              + ", ".join(f"{t * 1000:.0f}" for t in times[k]))
    print(f"  hippo / plain = {out['ratio']:.2f} (medians), {out['ratio_of_min']:.2f} (minima)")
    cow = "_cow" if args.cow and not pandas3 else ""
    path = os.path.join(refpipe.ROOT, f"refpipe_pandas_n{n}_pandas{pd.__version__}{cow}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
