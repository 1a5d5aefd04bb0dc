"""Capture overhead, store bytes and peak memory of the reference pipeline on a LocalCluster.

    PYTHONPATH=python python benches/capture.py --n 1000000 --runs 3

Every run is a fresh subprocess with its own ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)``; variants alternate (plain, hippo, hippo, plain,
...). Timed: building the pipeline + compute until the pandas result is in the driver
(for hippo: including the manifest commit). Workers are warmed (imports) before timing.
Memory: RSS of both worker processes and the driver, sampled every 20 ms with psutil
from the driver; "peak" is the sum of per-process peaks. Each hippo run writes to a
fresh store under /tmp/hippo_bench/stores/; its bytes are broken down per file kind and
per slot array. Results also go to /tmp/hippo_bench/capture_n<N>.json.

Options: ``--delayed`` adds a variant ``plain_delayed``: the plain pipeline computed the way
hippo's ``compute()`` computed before f95ea39 (``dask.compute(*frame.to_delayed())``).
``--opaque`` adds ``plain_opaque``: the plain pipeline with its filters and assign as opaque
``map_partitions`` (as hippo runs them), which separates the cost of losing dask-expr's
projection pushdown from the cost of capture proper.
``--graph`` prints the column counts of every merge in each variant's Dask graph (hippo: as
built, and as ``compute()`` runs it after column pruning) without running anything.
``--profile`` runs one hippo and one plain run with cProfile on the driver and
``client.profile()`` (distributed's statistical sampler) for the workers, saved under
/tmp/hippo_bench/prof/, and prints the top driver functions and the workers' hottest frames
(bokeh is not installed, so no HTML performance report), and the task stream summed per
key prefix (compute / transfer / disk seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import refpipe  # noqa: E402


# --------------------------------------------------------------------------- one run (child)


class Sampler(threading.Thread):
    def __init__(self, pids, period=0.02):
        super().__init__(daemon=True)
        import psutil

        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self.period = period
        self.stop = threading.Event()

    def sample(self):
        for pid, p in self.procs.items():
            try:
                rss = p.memory_info().rss
            except Exception:
                continue
            if rss > self.peak[pid]:
                self.peak[pid] = rss

    def run(self):
        while not self.stop.is_set():
            self.sample()
            time.sleep(self.period)


def _warm():
    import dask.dataframe  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import hippo_dask  # noqa: F401

    return os.getpid()


def task_stream_summary(records) -> dict:
    """Task stream per key prefix: tasks, compute seconds, transfer seconds, disk seconds."""
    from dask.utils import key_split

    prefixes: dict[str, dict] = {}
    busy: dict[str, float] = {}
    for r in records:
        rec = prefixes.setdefault(key_split(r["key"]), {"tasks": 0, "compute": 0.0, "transfer": 0.0, "disk": 0.0})
        rec["tasks"] += 1
        for s in r.get("startstops", ()):
            d = s["stop"] - s["start"]
            kind = "transfer" if s["action"] == "transfer" else "disk" if "disk" in s["action"] else "compute"
            rec[kind] += d
            if kind == "compute":
                busy[r.get("worker", "?")] = busy.get(r.get("worker", "?"), 0.0) + d
    return {"prefixes": prefixes, "worker_compute": busy}


def child(n: int, variant: str, store: str | None, profile_dir: str | None) -> dict:
    import dask
    from distributed import Client, LocalCluster

    import hippo_dask as hippo

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        worker_pids = list(client.run(_warm).values())
        sampler = Sampler(worker_pids + [os.getpid()])
        sampler.sample()
        idle = dict(sampler.peak)
        for pid in sampler.peak:
            sampler.peak[pid] = 0
        sampler.start()
        prof = None
        ts_ctx = None
        if profile_dir:
            import cProfile

            from distributed import get_task_stream

            ts_ctx = get_task_stream(client)
            ts_ctx.__enter__()

            os.makedirs(profile_dir, exist_ok=True)
            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        events, users = refpipe.read(n)
        if variant == "hippo":
            hippo.set_store(store)
            result = refpipe.hippo_pipeline(events, users).hippo.compute()
            run_id = result.hippo.lineage.run_id
        elif variant == "plain":
            result = refpipe.plain_pipeline(events, users).compute()
            run_id = None
        elif variant == "plain_opaque":
            result = refpipe.plain_opaque_pipeline(events, users).compute()
            run_id = None
        else:  # plain_delayed: plain pipeline computed via to_delayed (hippo's compute() before f95ea39)
            import pandas as pd

            result = pd.concat(dask.compute(*refpipe.plain_pipeline(events, users).to_delayed()))
            run_id = None
        wall = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(profile_dir, f"driver-{variant}-n{n}.pstats"))
            # workers' hottest frames, from distributed's statistical profiler
            wprof = client.profile(start=time.time() - wall - 1)
            with open(os.path.join(profile_dir, f"workers-{variant}-n{n}.json"), "w") as f:
                json.dump(wprof, f)
            ts_ctx.__exit__(None, None, None)
            with open(os.path.join(profile_dir, f"taskstream-{variant}-n{n}.json"), "w") as f:
                json.dump(task_stream_summary(ts_ctx.data), f, indent=1)
        sampler.stop.set()
        sampler.join()
        sampler.sample()
        wpeaks = [sampler.peak[p] for p in worker_pids]
        return {
            "variant": variant, "n": n, "wall": wall, "rows": len(result), "cols": list(result.columns),
            "run_id": run_id, "store": store, "worker_peak": wpeaks, "driver_peak": sampler.peak[os.getpid()],
            "worker_idle": [idle[p] for p in worker_pids], "driver_idle": idle[os.getpid()],
            "loadavg": os.getloadavg(), "dask": dask.__version__,
        }


# --------------------------------------------------------------------------- store bytes


def store_breakdown(store: str) -> dict:
    """Bytes of a store by file kind, and of every slot array inside the fragments."""
    from hippo_dask import _core

    empty = len(_core.encode_fragment({}))
    kinds: dict[str, int] = {}
    arrays: dict[tuple[str, str], list[int]] = {}  # (kind, array) -> [bytes alone, rows]
    files = 0
    for dirpath, _, names in os.walk(store):
        for name in names:
            path = os.path.join(dirpath, name)
            size = os.path.getsize(path)
            files += 1
            if name.endswith(".hippo"):
                kind = "result fragments" if name.startswith("result-") else "membership fragments"
                with open(path, "rb") as f:
                    decoded = _core.decode_fragment(f.read())
                for a, values in decoded.items():
                    alone = len(_core.encode_fragment({a: values})) - empty
                    rec = arrays.setdefault((kind, a), [0, 0])
                    rec[0] += alone
                    rec[1] += len(values)
            elif name == "manifest.json":
                kind = "manifest"
            else:
                kind = "other (" + name + ")"
            kinds[kind] = kinds.get(kind, 0) + size
    total = sum(kinds.values())
    return {"total": total, "kinds": kinds, "files": files, "empty_container": empty,
            "arrays": {f"{k}: {a}": v for (k, a), v in sorted(arrays.items())}}


# --------------------------------------------------------------------------- driver (parent)


def spawn(n: int, variant: str, store: str | None, profile_dir: str | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--n", str(n)]
    if store:
        cmd += ["--store", store]
    if profile_dir:
        cmd += ["--profile-dir", profile_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def provenance() -> str:
    """Which hippo_dask is measured: its path, the repo commit and whether python/ or rust/ were dirty."""
    import hashlib

    import hippo_dask
    from hippo_dask import _core

    repo = os.path.dirname(HERE)

    def git(*a):
        try:
            return subprocess.run(["git", "-C", repo, *a], capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    with open(_core.__file__, "rb") as f:
        so = hashlib.blake2b(f.read(), digest_size=6).hexdigest()
    dirty = git("status", "--short", "--", "python", "rust").replace("\n", "; ") or "clean"
    return (f"hippo_dask from {os.path.dirname(hippo_dask.__file__)} (_core {so}); repo HEAD {git('rev-parse', '--short', 'HEAD')}, "
            f"python/ rust/ in the repo: {dirty}")


def merge_widths(expr) -> list[str]:
    """Every merge of a simplified Dask expression, as "left x right" column counts (hidden columns included)."""
    out, seen, stack = [], set(), [expr.simplify()]
    while stack:
        e = stack.pop()
        if e._name in seen:
            continue
        seen.add(e._name)
        if type(e).__name__ == "Merge":
            out.append(f"{len(e.left.columns)} x {len(e.right.columns)}")
        stack.extend(e.dependencies())
    return sorted(out, key=lambda w: int(w.split()[0]))


def print_graph(n: int) -> None:
    """Column counts of the merges each variant's graph runs (nothing computed)."""
    import hippo_dask as hippo
    from hippo_dask import prune
    from hippo_dask.accessor import tracked_of

    events, users = refpipe.read(n)
    print("merges as left x right columns (dask-expr simplify(); hippo: hidden slot columns included)")
    print(f"  plain         {merge_widths(refpipe.plain_pipeline(events, users).expr)}")
    print(f"  plain_opaque  {merge_widths(refpipe.plain_opaque_pipeline(events, users).expr)}")
    hippo.set_store(os.path.join(refpipe.ROOT, "stores", "graph"))
    tracked = tracked_of(refpipe.hippo_pipeline(events, users), "graph")
    print(f"  hippo, as built (no pruning)  {merge_widths(tracked.data.expr)}")
    print(f"  hippo, as computed (pruned)   {merge_widths(prune.pruned(tracked)[0].expr)}")


def mb(x: float) -> str:
    return f"{x / 2**20:,.0f}"


def print_profile(profile_dir: str, n: int) -> None:
    import pstats

    for variant in ("hippo", "plain"):
        path = os.path.join(profile_dir, f"driver-{variant}-n{n}.pstats")
        print(f"\n--- driver cProfile, {variant} (top 25 by cumulative time) ---")
        pstats.Stats(path).sort_stats("cumulative").print_stats(25)
    # worker profile: self time by function, hippo_dask frames and overall
    for variant in ("hippo", "plain"):
        with open(os.path.join(profile_dir, f"workers-{variant}-n{n}.json")) as f:
            tree = json.load(f)
        own: dict[str, int] = {}
        total: dict[str, int] = {}

        def walk(node, stack):
            ident = node.get("identifier", "root")
            desc = node.get("description", {})
            name = f"{desc.get('filename', '?').split('site-packages/')[-1]}:{desc.get('name', '?')}" if desc else ident
            children = node.get("children", {})
            child_count = sum(c["count"] for c in children.values())
            own[name] = own.get(name, 0) + node["count"] - child_count
            if name not in stack:
                total[name] = total.get(name, 0) + node["count"]
            for c in children.values():
                walk(c, stack | {name})

        walk(tree, frozenset())
        all_count = tree["count"] or 1
        print(f"\n--- worker samples, {variant}: {all_count} samples; top self time ---")
        for name, c in sorted(own.items(), key=lambda kv: -kv[1])[:20]:
            print(f"  {100 * c / all_count:5.1f}%  {name}")
        print(f"--- worker samples, {variant}: inclusive time of hippo_dask / partition functions ---")
        for name, c in sorted(total.items(), key=lambda kv: -kv[1]):
            if "hippo_dask" in name or "refpipe" in name:
                print(f"  {100 * c / all_count:5.1f}%  {name}")


def print_task_stream(profile_dir: str, n: int) -> None:
    for variant in ("hippo", "plain"):
        with open(os.path.join(profile_dir, f"taskstream-{variant}-n{n}.json")) as f:
            ts = json.load(f)
        tot = sum(v["compute"] for v in ts["prefixes"].values())
        print(f"\n--- task stream, {variant}: compute {tot:.2f} s over both workers "
              f"(per worker: {', '.join(f'{v:.2f}' for v in ts['worker_compute'].values())}) ---")
        print("| prefix | tasks | compute (s) | transfer (s) | disk (s) |")
        print("|---|---|---|---|---|")
        for k, v in sorted(ts["prefixes"].items(), key=lambda kv: -kv[1]["compute"])[:25]:
            print(f"| {k} | {v['tasks']} | {v['compute']:.2f} | {v['transfer']:.2f} | {v['disk']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--store")
    ap.add_argument("--profile-dir")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--delayed", action="store_true", help="also run plain_delayed (plain via to_delayed)")
    ap.add_argument("--graph", action="store_true", help="print the merges' column counts of each variant and exit")
    ap.add_argument("--opaque", action="store_true",
                    help="also run plain_opaque (filters/assign as map_partitions: no projection pushdown)")
    args = ap.parse_args()
    n = int(args.n)
    if args.child:
        print(json.dumps(child(n, args.child, args.store, args.profile_dir)))
        return

    refpipe.generate(n)
    if args.graph:
        print_graph(n)
        return
    stores = os.path.join(refpipe.ROOT, "stores")
    if args.profile:
        pdir = os.path.join(refpipe.ROOT, "prof")
        store = os.path.join(stores, f"prof-n{n}")
        shutil.rmtree(store, ignore_errors=True)
        print(f"load: {os.getloadavg()}")
        h = spawn(n, "hippo", store, pdir)
        p = spawn(n, "plain", None, pdir)
        print(f"profiled walls: hippo {h['wall']:.2f} s, plain {p['wall']:.2f} s (profiling on)")
        print_profile(pdir, n)
        print_task_stream(pdir, n)
        return

    print(f"reference pipeline, N={n:,} events, {n // 100:,} users; load before: {os.getloadavg()}")
    print(provenance())
    runs = []
    for i in range(args.runs):
        order = ("plain", "hippo") if i % 2 == 0 else ("hippo", "plain")
        if args.delayed:
            order = order + ("plain_delayed",) if i % 2 == 0 else ("plain_delayed",) + order
        if args.opaque:
            order = order + ("plain_opaque",) if i % 2 == 0 else ("plain_opaque",) + order
        for variant in order:
            store = None
            if variant == "hippo":
                store = os.path.join(stores, f"n{n}-{i}")
                shutil.rmtree(store, ignore_errors=True)
            r = spawn(n, variant, store)
            runs.append(r)
            print(f"  run {i} {variant:13s} wall {r['wall']:7.2f} s  rows {r['rows']:,}  workers peak "
                  f"{mb(sum(r['worker_peak']))} MiB  driver peak {mb(r['driver_peak'])} MiB  load {r['loadavg'][0]:.2f}",
                  flush=True)
    hip = [r for r in runs if r["variant"] == "hippo"]
    pla = [r for r in runs if r["variant"] == "plain"]
    assert len({r["rows"] for r in runs}) == 1, "variants disagree on the result size"
    wh, wp = statistics.median(r["wall"] for r in hip), statistics.median(r["wall"] for r in pla)

    def peak(r):
        return sum(r["worker_peak"]) + r["driver_peak"]

    mh, mp = statistics.median(peak(r) for r in hip), statistics.median(peak(r) for r in pla)
    wkh = statistics.median(sum(r["worker_peak"]) for r in hip)
    wkp = statistics.median(sum(r["worker_peak"]) for r in pla)
    drh = statistics.median(r["driver_peak"] for r in hip)
    drp = statistics.median(r["driver_peak"] for r in pla)
    idle = statistics.median(sum(r["worker_idle"]) + r["driver_idle"] for r in runs)
    last = hip[-1]
    bd = store_breakdown(last["store"])
    src_rows = n + n // 100
    print()
    print(f"| N | plain wall (s) | hippo wall (s) | ratio (target <= 1.15) | result rows |")
    print(f"|---|---|---|---|---|")
    walls_p = ", ".join("%.2f" % r["wall"] for r in pla)
    walls_h = ", ".join("%.2f" % r["wall"] for r in hip)
    print(f"| {n:,} | {wp:.2f} ({walls_p}) | {wh:.2f} ({walls_h}) | {wh / wp:.3f} | {last['rows']:,} |")
    pdl = [r for r in runs if r["variant"] == "plain_delayed"]
    if pdl:
        wd = statistics.median(r["wall"] for r in pdl)
        walls_d = ", ".join("%.2f" % r["wall"] for r in pdl)
        print(f"\nplain_delayed (plain pipeline, computed via to_delayed like hippo's compute()): median {wd:.2f} s "
              f"({walls_d}); plain_delayed / plain = {wd / wp:.3f}; hippo / plain_delayed = {wh / wd:.3f}")
    pop = [r for r in runs if r["variant"] == "plain_opaque"]
    if pop:
        wo = statistics.median(r["wall"] for r in pop)
        walls_o = ", ".join(f"{r['wall']:.2f}" for r in pop)
        print(f"\nplain_opaque (plain pipeline, filters/assign as map_partitions: no projection pushdown): median "
              f"{wo:.2f} s ({walls_o}); plain_opaque / plain = {wo / wp:.3f}; hippo / plain_opaque = {wh / wo:.3f}")
    loads = [r["loadavg"][0] for r in runs]
    print(f"1-min load average at the end of each run: min {min(loads):.2f}, max {max(loads):.2f} "
          "(2 cores; the benchmark itself runs 2 workers + driver + scheduler)")
    print()
    print("| peak RSS (MiB, median) | plain | hippo | ratio |")
    print("|---|---|---|---|")
    print(f"| workers (sum of 2 peaks) | {mb(wkp)} | {mb(wkh)} | {wkh / wkp:.2f} |")
    print(f"| driver | {mb(drp)} | {mb(drh)} | {drh / drp:.2f} |")
    print(f"| total (target ratio <= 1.3) | {mb(mp)} | {mb(mh)} | {mh / mp:.2f} |")
    print(f"| (idle before the pipeline: {mb(idle)} MiB total) | | | |")
    print()
    print(f"store of run {last['run_id']}: {bd['total']:,} bytes in {bd['files']} files "
          f"= {bd['total'] / src_rows:.3f} bytes per source row ({src_rows:,} events + users rows)")
    print("| part | bytes | bytes/source row |")
    print("|---|---|---|")
    for k, v in sorted(bd["kinds"].items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v:,} | {v / src_rows:.3f} |")
    print()
    print("| slot array (encoded alone) | rows | bytes | bytes/row |")
    print("|---|---|---|---|")
    for k, (b, rows) in bd["arrays"].items():
        print(f"| {k} | {rows:,} | {b:,} | {b / max(rows, 1):.3f} |")
    out = {"n": n, "runs": runs, "store": bd, "last_hippo": last,
           "median_wall": {"hippo": wh, "plain": wp}, "median_peak": {"hippo": mh, "plain": mp}}
    path = os.path.join(refpipe.ROOT, f"capture_n{n}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
