"""Listing and opening runs in a store with many runs (issue 11).

    python benches/many_runs.py /tmp/runs10 10
    python benches/many_runs.py /tmp/runs10k 10000

Makes one real run (a group-by on a 3-row pandas frame), copies it to N-1 more run folders
with ids one second apart, then times ``Store.runs()``, ``hippo.open(store)`` (the latest run),
``hippo.open(store, run_id)`` and ``hippo runs`` in a new process.
"""
import os, shutil, sys, time, json, subprocess, tempfile
import pandas as pd, hippo_dask as hippo
root = sys.argv[1]; n = int(sys.argv[2])
if not os.path.exists(root):
    store = hippo.set_store(root)
    df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]})
    out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    rid = out.hippo.lineage.run_id
    src = os.path.join(root, "runs", rid)
    for i in range(n - 1):
        new = f"20200101T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:08x}"
        dst = os.path.join(root, "runs", new)
        shutil.copytree(src, dst)
        m = json.load(open(os.path.join(dst, "manifest.json"))); m["run_id"] = new
        json.dump(m, open(os.path.join(dst, "manifest.json"), "w"))
        st = json.load(open(os.path.join(dst, "started.json"))); st["run_id"] = new; st["created"] = 1e9 + i
        json.dump(st, open(os.path.join(dst, "started.json"), "w"))
store = hippo.Store(root)
first = store.runs()[0].run_id
for what, fn in [("runs()", lambda: store.runs()), ("open(latest)", lambda: hippo.open(store)),
                 ("open(id)", lambda: hippo.open(store, first))]:
    t = time.perf_counter(); fn(); print(n, what, round(time.perf_counter() - t, 3), "s")
t = time.perf_counter(); subprocess.run(["hippo", "--store", root, "runs"], stdout=subprocess.DEVNULL, check=True); print(n, "hippo runs (process)", round(time.perf_counter() - t, 3), "s")
