"""``hippo``: inspect lineage stores from the shell.

    hippo demo                         run the healthcare pipeline on a local cluster
    hippo runs [--store URL]           list runs (complete or not)
    hippo show RUN                     a run's sources, operators and sizes
    hippo backward RUN ROWS [-c COL]   source cells behind result cells
    hippo forward RUN SOURCE ROWS [-c COL]   result cells reached from source cells
    hippo replay RUN [--trust]         re-run a run from its record (file sources) and compare
    hippo debug RUN [--trust] [--pdb]  re-run the user function of a failed run on its failing rows
    hippo explain RUN ROW COLUMN [--trust]          each source value's share of one result value
    hippo without RUN SOURCE ROWS [--trust] [--dry-run]   the result without some source rows: the diff

RUN may be ``latest``. ROWS is a comma-separated list of positions or ranges (``3,5-9``).
"""

from __future__ import annotations

import argparse
import sys
import time

from .errors import HippoError


def _rows(text: str) -> list[int]:
    rows: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            rows.extend(range(int(lo), int(hi) + 1))
        else:
            rows.append(int(part))
    return rows


def _open(args):
    from . import lineage as lineage_module
    from .store import Store, get_store

    store = Store(args.store) if args.store else get_store()
    return lineage_module.open(store, None if args.run == "latest" else args.run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hippo", description="Cell-level lineage for pandas and Dask pipelines.")
    parser.add_argument("--store", help="store directory or fsspec URL (default: $HIPPO_STORE or ./.hippo)")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run the healthcare pipeline on a local Dask cluster and trace it")
    demo.add_argument("--workers", type=int, default=2)
    sub.add_parser("runs", help="list runs")
    show = sub.add_parser("show", help="describe a run")
    show.add_argument("run")
    back = sub.add_parser("backward", help="trace result cells back to source cells")
    back.add_argument("run")
    back.add_argument("rows", type=_rows)
    back.add_argument("-c", "--columns", action="append")
    back.add_argument("--through-models", action="store_true", help="also follow fitted models to their training rows")
    fwd = sub.add_parser("forward", help="trace source cells forward to result cells")
    fwd.add_argument("run")
    fwd.add_argument("source")
    fwd.add_argument("rows", type=_rows)
    fwd.add_argument("-c", "--columns", action="append")
    fwd.add_argument("--through-models", action="store_true", help="also follow training rows into what models made")
    rep = sub.add_parser("replay", help="re-run a run from its record (its sources must be files) and compare")
    rep.add_argument("run")
    rep.add_argument("--trust", action="store_true", help="unpickle functions stored in the run (trusted stores only)")
    dbg = sub.add_parser("debug", help="re-run the user function of a failed run on the rows it failed on")
    dbg.add_argument("run")
    dbg.add_argument("--trust", action="store_true", help="unpickle the function stored in the run (trusted stores only)")
    dbg.add_argument("--pdb", action="store_true", help="step into the function with pdb")
    exp = sub.add_parser("explain", help="each source value's share of one result value (file sources)")
    exp.add_argument("run")
    exp.add_argument("row", type=int)
    exp.add_argument("column")
    exp.add_argument("--trust", action="store_true", help="unpickle functions stored in the run (trusted stores only)")
    exp.add_argument("--through-models", action="store_true", help="also list the training rows of models behind it")
    wo = sub.add_parser("without", help="the result without some source rows (file sources): what changes")
    wo.add_argument("run")
    wo.add_argument("source")
    wo.add_argument("rows", type=_rows)
    wo.add_argument("--trust", action="store_true", help="unpickle functions stored in the run (trusted stores only)")
    wo.add_argument("--dry-run", action="store_true", help="the diff alone (what if)")
    wo.add_argument("--strategy", choices=["auto", "partial", "rerun"], default="auto")
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "demo"):
            from .demo import run

            run(workers=getattr(args, "workers", 2), store=args.store)
        elif args.command == "runs":
            from .store import Store, get_store

            store = Store(args.store) if args.store else get_store()
            for info in store.runs():
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created)) if info.created else "?"
                state = "complete" if info.complete else ("FAILED (hippo debug RUN)" if info.failed else "INCOMPLETE")
                print(f"{info.run_id}  {when}  {state}")
        elif args.command == "show":
            lin = _open(args)
            print(lin)
            for name in lin.sources:
                print(f"  source {name}: {lin.source_rows(name)} rows")
            for node in lin.manifest["nodes"]:
                print(f"  {node['id'][:8]} {node['op']:<16} <- {[i[:8] for i in node['inputs']]}  columns={node['columns']}")
        elif args.command == "backward":
            trace = _open(args).backward(args.rows, args.columns, through_models=args.through_models)
            for name, ts in trace.items():
                print(f"{name}: {len(ts.rows)} rows, {len(ts.cells)} cells")
                if len(ts.cells):
                    print(ts.cells.to_string(index=False, max_rows=40))
        elif args.command == "forward":
            hits = _open(args).forward(args.source, args.rows, args.columns, through_models=args.through_models)
            print(f"{len(hits.rows)} result rows, {len(hits.cells)} cells")
            if len(hits.cells):
                print(hits.cells.to_string(index=False, max_rows=40))
        elif args.command == "replay":
            print(_open(args).replay(trust=args.trust))
        elif args.command == "explain":
            found = _open(args).explain(args.row, args.column, trust=args.trust, through_models=args.through_models)
            print(found.to_string(index=False, max_rows=60))
            print(f"sum of contributions: {found['contribution'].sum(min_count=1)}")
        elif args.command == "without":
            w = _open(args).without(args.source, args.rows, trust=args.trust, dry_run=args.dry_run,
                                    strategy=args.strategy)
            print(w)
            if len(w.diff):
                print(w.diff.to_string(index=False, max_rows=60))
        elif args.command == "debug":
            from .diagnose.debug import debug
            from .store import Store, get_store

            store = Store(args.store) if args.store else get_store()
            out = debug(args.run, store=store, trust=args.trust, pdb=args.pdb)
            print("the function did not raise on those rows; it returned:")
            print(out)
    except (HippoError, KeyError) as exc:
        print(f"hippo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
