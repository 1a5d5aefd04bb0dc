"""``hippo``: look into lineage stores from the shell.

    hippo runs                              list runs (complete, failed, incomplete)
    hippo show RUN                          a run's result, sources and operations
    hippo backward RUN ROWS [-c COLS]       source cells (and values) behind result cells
    hippo forward RUN SOURCE ROWS [-c COLS] result cells reached from source cells
    hippo view RUN [-o FILE]                an HTML page of a run's lineage
    hippo replay | debug | explain | without   diagnosis (see ``hippo SUB --help``)
    hippo gc [--dry-run]                    remove failed and abandoned runs
    hippo demo                              the healthcare pipeline on a local Dask cluster

RUN is a run id or ``latest``. ROWS are 0-based positions, comma-separated, with
inclusive ranges: ``3``, ``3,5-9``. COLS are comma-separated (``-c a,b``) or
repeated (``-c a -c b``). ``--store`` goes anywhere; ``--json`` prints JSON
for scripts. Each subcommand imports only what it needs, so ``hippo`` alone
prints its help at once, without importing pandas or Dask.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from typing import Any

from .errors import HippoError, QueryError

ROWS_HELP = "0-based positions, comma-separated; a range includes both ends: 3  or  3,5-9"
COLUMNS_HELP = "columns, comma-separated (-c a,b) or repeated (-c a -c b); default: all"
TRUST_HELP = "unpickle functions stored in the run (only for stores you trust: unpickling runs code)"
#: Cells printed as text; --json prints them all.
SHOWN_CELLS = 40


# ---------------------------------------------------------------------- argument types


def _rows(text: str) -> list[tuple[int, int]]:
    """``"3,5-9"`` -> ``[(3, 3), (5, 9)]``: inclusive ranges, expanded by :func:`_positions` once the size is known."""
    ranges = []
    for part in text.split(","):
        part = part.strip()
        found = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if found is None:
            why = "an empty entry" if not part else f"{part!r} is not a position (0, 1, ...) nor a range (5-9)"
            raise argparse.ArgumentTypeError(f"bad rows {text!r}: {why}; write e.g. 3 or 3,5-9")
        low, high = int(found[1]), int(found[2] if found[2] is not None else found[1])
        if high < low:
            raise argparse.ArgumentTypeError(f"bad rows {text!r}: the range {part!r} runs backwards; write {high}-{low}")
        ranges.append((low, high))
    return ranges


def _positions(ranges: list[tuple[int, int]], n: int, what: str) -> Any:
    """The positions of ``ranges`` (numpy), after checking they are within ``what``'s ``n`` rows.

    Checked before expanding, so a slip such as ``0-4000000000`` is an error, not a huge allocation.
    """
    import numpy as np

    beyond = [str(low) if low == high else f"{low}-{high}" for low, high in ranges if high >= n]
    if beyond:
        raise QueryError(f"rows {','.join(beyond)} are out of range: {what} has {n} rows (valid: 0 to {n - 1})")
    return np.concatenate([np.arange(low, high + 1, dtype=np.int64) for low, high in ranges])


def _columns(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",")]
    if not all(columns):
        raise argparse.ArgumentTypeError(f"bad columns {text!r}: an empty column name; write e.g. -c a,b")
    return columns


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``"30m"`` -> 1800.0 seconds (units s, m, h, d)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if found is None:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: write a number and a unit (s, m, h, d), e.g. 30m, 2h, 1d")
    return float(found[1]) * _UNITS[found[2]]


# ---------------------------------------------------------------------- the parser


def _parser() -> argparse.ArgumentParser:
    # --store is on every parser with a suppressed default, so it may come before or after the
    # subcommand and a subcommand that does not see it leaves the one given before in place
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                        help="store folder or fsspec URL (default: $HIPPO_STORE, else ./.hippo)")
    parser = argparse.ArgumentParser(prog="hippo", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Cell-level lineage for pandas and Dask pipelines: look into a store.",
                                     epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, examples: str, json_output: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=summary, description=summary + ".",
                           epilog="examples:\n" + examples + "\n", formatter_class=argparse.RawDescriptionHelpFormatter)
        if json_output:
            p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of tables")
        return p

    def run_argument(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", metavar="RUN", help="run id, or latest (the newest complete run)")

    p = command("runs", "List the runs of a store, oldest first: id, start time, state",
                "  hippo runs\n  hippo runs --store s3://bucket/lineage/\n"
                "  hippo runs --json     # [{\"run_id\": ..., \"created\": ..., \"state\": \"complete\"}, ...]",
                json_output=True)

    p = command("show", "Describe a run: its result, sources (rows, file) and operations",
                "  hippo show latest\n  hippo show 20250101T120000-1a2b3c4d --json", json_output=True)
    run_argument(p)

    p = command("backward", "Source cells behind result cells, with their values when the source file can be read",
                "  hippo backward latest 3 -c label\n  hippo backward latest 3,5-9 -c label,county\n"
                "  hippo backward latest 0-99 --no-values --json", json_output=True)
    run_argument(p)
    p.add_argument("rows", metavar="ROWS", type=_rows, help=f"result rows: {ROWS_HELP}")
    p.add_argument("-c", "--columns", action="extend", type=_columns, metavar="COLS", help=f"result {COLUMNS_HELP}")
    p.add_argument("--through-models", action="store_true", help="also follow fitted models to their training rows")
    p.add_argument("--no-values", action="store_true",
                   help="positions only: do not read the source files again for their values")

    p = command("forward", "Result cells reached from source cells",
                "  hippo forward latest patients 5-9\n  hippo forward latest patients 5 -c income --json",
                json_output=True)
    run_argument(p)
    p.add_argument("source", metavar="SOURCE", help="a source of the run (hippo show RUN lists them)")
    p.add_argument("rows", metavar="ROWS", type=_rows, help=f"source rows: {ROWS_HELP}")
    p.add_argument("-c", "--columns", action="extend", type=_columns, metavar="COLS", help=f"source {COLUMNS_HELP}")
    p.add_argument("--through-models", action="store_true", help="also follow training rows into what models made")

    p = command("view", "Write an HTML page showing a run's lineage",
                "  hippo view latest\n  hippo view latest -o lineage.html --rows 0-9 -c label\n"
                "  hippo view latest --source patients --source-rows 5")
    run_argument(p)
    p.add_argument("-o", "--output", metavar="FILE", help="the page to write (default: RUN.html here)")
    p.add_argument("--rows", type=_rows, help=f"result rows to trace: {ROWS_HELP}")
    p.add_argument("-c", "--columns", action="extend", type=_columns, metavar="COLS", help=f"result {COLUMNS_HELP}")
    p.add_argument("--source", metavar="NAME", help="a source whose rows to trace forward (with --source-rows)")
    p.add_argument("--source-rows", type=_rows, metavar="ROWS", help=f"rows of --source: {ROWS_HELP}")

    p = command("replay", "Re-run a run from its record (its sources must be files) and compare with the result",
                "  hippo replay latest\n  hippo replay latest --trust")
    run_argument(p)
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)

    p = command("debug", "Re-run the user function of a failed run on the rows it failed on",
                "  hippo runs            # failed runs say FAILED\n  hippo debug 20250101T120000-1a2b3c4d --trust --pdb")
    p.add_argument("run", metavar="RUN", help="id of a failed run")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument("--pdb", action="store_true", help="step into the function with pdb")

    p = command("explain", "Each source value's share of one result value (file sources)",
                "  hippo explain latest 3 mean_complications --trust")
    run_argument(p)
    p.add_argument("row", metavar="ROW", type=int, help="result row position (0-based)")
    p.add_argument("column", metavar="COLUMN", help="result column")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument("--through-models", action="store_true", help="also list the training rows of models behind it")

    p = command("without", "The result without some source rows (file sources): what changes",
                "  hippo without latest patients 0,3 --dry-run\n  hippo without latest events 812,4410-4415 --trust")
    run_argument(p)
    p.add_argument("source", metavar="SOURCE", help="a source of the run")
    p.add_argument("rows", metavar="ROWS", type=_rows, help=f"source rows to remove: {ROWS_HELP}")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument("--dry-run", action="store_true", help="the diff alone (what if)")
    p.add_argument("--strategy", choices=["auto", "partial", "rerun"], default="auto",
                   help="partial: recompute only the affected groups; rerun: everything (default: auto)")

    p = command("gc", "Remove failed runs, and incomplete runs not written to for a while; never a complete run",
                "  hippo gc --dry-run\n  hippo gc --older-than 2h\n  hippo gc --older-than 1d --json",
                json_output=True)
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--older-than", type=_duration, default=3600.0, metavar="AGE",
                   help="remove an incomplete run only when nothing was written to it for AGE "
                        "(30m, 2h, 1d; default 1h); a run still computing rewrites its lease every 30 s")

    p = command("demo", "Run the healthcare pipeline on a local Dask cluster, trace it and show some traces",
                "  hippo demo\n  hippo demo --workers 4 --store lineage/")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    return parser


_EPILOG = f"""\
RUN is a run id or `latest`. ROWS: {ROWS_HELP}.
`hippo COMMAND --help` shows a command's options and examples.

examples:
  hippo runs
  hippo show latest
  hippo backward latest 3 -c label
  hippo forward latest patients 5-9 --json
  hippo gc --dry-run
"""


# ---------------------------------------------------------------------- output helpers


class _ReaderGone(Exception):
    """Whoever read hippo's output went away (``hippo runs | head -1``): stop quietly."""


class _Stdout:
    """``sys.stdout`` (looked up at each write), where a broken pipe becomes :class:`_ReaderGone`.

    Only output written here ends hippo quietly: a broken pipe from anything
    else (a socket, say) is still an error.
    """

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except BrokenPipeError:
            raise _ReaderGone from None

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            raise _ReaderGone from None


_STDOUT = _Stdout()


def _say(*values: Any) -> None:
    print(*values, file=_STDOUT)


def _print_json(value: Any) -> None:
    _say(json.dumps(value, indent=1, allow_nan=False))


def _plain(value: Any) -> Any:
    """A cell value as JSON can hold it: missing -> null, infinities as text, dates in ISO format."""
    import numpy as np
    import pandas as pd

    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (not isinstance(value, (list, tuple, dict, np.ndarray)) and pd.isna(value)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _cells_text(shown: Any, total: int) -> str:
    """A table of the first cells of a trace, saying how many of ``total`` it leaves out."""
    text = shown.to_string(index=False)
    if total > len(shown):
        text += f"\n... and {total - len(shown)} more cells (--json lists them all)"
    return text


def _ranges(rows: Any, limit: int = SHOWN_CELLS) -> str:
    """Sorted positions as ROWS text (``3,5-9``), the first ``limit`` runs of them."""
    import numpy as np

    consecutive = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    text = ",".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in consecutive[:limit])
    return text + (f" ... ({len(consecutive) - limit} more ranges)" if len(consecutive) > limit else "")


def _source_values(lin: Any, name: str, cells: Any) -> tuple[Any, str | None]:
    """``cells`` of source ``name`` with a ``value`` column, read again from the source's file; or why not.

    The rows come from :attr:`TraceSet.frame <hippo_dask.TraceSet.frame>`: only the partitions
    holding them are read, each checked against the run's fingerprints first, so a file changed
    since the run shows no values rather than other ones.
    """
    import numpy as np

    from .errors import ReplayError
    from .lineage import TraceSet

    info = lin.manifest["sources"][name]
    if not (info.get("identity") or {}).get("file"):
        return None, (f"values not shown: source {name!r} was an in-memory frame; the shell reads again only "
                      "files read with hippo.read_csv / hippo.read_parquet")
    columns = sorted(set(cells["column"]))
    # TraceSet.frame shows a column a Dask run did not fingerprint as the file holds it now: not here
    fingerprinted = info.get("partition_column_fingerprints")
    unchecked = sorted({c for sums in fingerprinted or [] for c in columns if c not in sums})
    if unchecked:
        return None, f"values not shown: the run recorded no fingerprint of column(s) {unchecked}, so a change could not be seen"
    positions = np.unique(cells["row"].to_numpy())  # only the rows of the cells shown
    try:
        rows = TraceSet(positions, {}, lineage=lin, source=name).frame
    except (ReplayError, OSError, ValueError) as exc:  # SourceChangedError is a ReplayError; a damaged file, ValueError
        return None, "values not shown: " + " ".join(str(exc).split())
    at = np.searchsorted(positions, cells["row"].to_numpy())
    values = np.empty(len(cells), dtype=object)
    for column in columns:
        mine = (cells["column"] == column).to_numpy()
        values[mine] = rows[column].to_numpy(dtype=object)[at[mine]]
    return cells.assign(value=values), None


def _file_of(lin: Any, name: str) -> Any:
    return ((lin.manifest["sources"][name].get("identity") or {}).get("file") or {}).get("path")


# ---------------------------------------------------------------------- commands


def _store(args: argparse.Namespace) -> Any:
    from .store import Store, get_store

    url = getattr(args, "store", None)
    return Store(url) if url else get_store()


def _open(args: argparse.Namespace) -> Any:
    from . import lineage as lineage_module

    return lineage_module.open(_store(args), None if args.run == "latest" else args.run)


def _runs(args: argparse.Namespace) -> None:
    infos = _store(args).runs()

    def state(info: Any) -> str:
        return "complete" if info.complete else ("failed" if info.failed else "incomplete")

    if args.json:
        _print_json([{"run_id": i.run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(i.created))
                      if i.created else None, "state": state(i)} for i in infos])
        return
    for info in infos:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created)) if info.created else "?"
        shown = {"complete": "complete", "failed": "FAILED (hippo debug RUN)", "incomplete": "INCOMPLETE"}[state(info)]
        _say(f"{info.run_id}  {when}  {shown}")


def _show(args: argparse.Namespace) -> None:
    lin = _open(args)
    nodes = lin.manifest["nodes"]
    if args.json:
        _print_json({"run_id": lin.run_id, "rows": lin.nrows, "columns": lin.columns,
                     "sources": {name: {"rows": lin.source_rows(name), "file": _file_of(lin, name)} for name in lin.sources},
                     "operations": [{"id": n["id"], "op": n["op"], "inputs": n["inputs"], "columns": n["columns"]}
                                    for n in nodes]})
        return
    _say(lin)  # the result, the sources with their rows, the operations
    for name in lin.sources:  # where each source's rows come from (what `backward` can show values of)
        file = _file_of(lin, name)
        _say(f"  source {name!r} read from {file}" if file else f"  source {name!r} was an in-memory frame")
    _say("  operations (id, op <- inputs, columns):")
    for node in nodes:
        _say(f"  {node['id'][:8]} {node['op']:<16} <- {[i[:8] for i in node['inputs']]}  columns={node['columns']}")


def _backward(args: argparse.Namespace) -> None:
    lin = _open(args)
    rows = _positions(args.rows, lin.nrows, "the result")
    trace = lin.backward(rows, args.columns, through_models=args.through_models)
    found = {}
    for name, ts in trace.items():
        cells = ts.cells if args.json else ts.cells.head(SHOWN_CELLS)  # text shows the first: read only their values
        note = "values not shown (--no-values)" if args.no_values and len(cells) else None
        if len(cells) and not args.no_values:
            with_values, note = _source_values(lin, name, cells)
            cells = cells if with_values is None else with_values
        found[name] = (ts, cells, note)
    if args.json:
        _print_json({"run_id": lin.run_id, "rows": sorted(set(rows.tolist())),
                     "columns": args.columns,
                     "sources": {name: {"rows": ts.rows.tolist(), "values_note": note,
                                        "cells": [{k: _plain(v) for k, v in cell.items()}
                                                  for cell in cells.to_dict(orient="records")]}
                                 for name, (ts, cells, note) in found.items()}})
        return
    for name, (ts, cells, note) in found.items():
        _say(f"{name}: {len(ts.rows)} rows, {ts.n_cells} cells")
        if len(ts.rows):
            _say(f"  rows: {_ranges(ts.rows)}")
        if note:
            _say(f"  {note}")
        if len(cells):
            _say(_cells_text(cells, ts.n_cells))


def _forward(args: argparse.Namespace) -> None:
    lin = _open(args)
    rows = _positions(args.rows, lin.source_rows(args.source), f"source {args.source!r}")
    hits = lin.forward(args.source, rows, args.columns, through_models=args.through_models)
    if args.json:
        _print_json({"run_id": lin.run_id, "source": args.source, "source_rows": sorted(set(rows.tolist())),
                     "columns": args.columns, "rows": hits.rows.tolist(),
                     "cells": [{"row": int(r), "column": str(c)} for r, c in zip(hits.cells["row"], hits.cells["column"])]})
        return
    _say(f"{len(hits.rows)} result rows, {hits.n_cells} cells")
    if hits.n_cells:
        _say(_cells_text(hits.cells.head(SHOWN_CELLS), hits.n_cells))


def _view(args: argparse.Namespace) -> None:
    if (args.source is None) != (args.source_rows is None):
        raise _UsageError("--source and --source-rows go together (rows of which source?)")
    from .view import write_view

    lin = _open(args)
    rows = None if args.rows is None else _positions(args.rows, lin.nrows, "the result")
    source_rows = (None if args.source_rows is None else
                   _positions(args.source_rows, lin.source_rows(args.source), f"source {args.source!r}"))
    _say(write_view(lin, args.output, rows=rows, columns=args.columns, source=args.source, source_rows=source_rows))


def _gc(args: argparse.Namespace) -> None:
    removed = _store(args).gc(dry_run=args.dry_run, older_than=args.older_than)
    if args.json:
        _print_json({"dry_run": args.dry_run, "removed": [{"run_id": r, "reason": why} for r, why in removed.items()]})
        return
    if not removed:
        _say("nothing to remove")
        return
    _say(f"{'would remove' if args.dry_run else 'removed'} {len(removed)} run(s):")
    for run_id, why in removed.items():
        _say(f"  {run_id}  {why}")


def _replay(args: argparse.Namespace) -> None:
    _say(_open(args).replay(trust=args.trust))


def _debug(args: argparse.Namespace) -> None:
    from .diagnose.debug import debug

    out = debug(args.run, store=_store(args), trust=args.trust, pdb=args.pdb)
    _say("the function did not raise on those rows; it returned:")
    _say(out)


def _explain(args: argparse.Namespace) -> None:
    found = _open(args).explain(args.row, args.column, trust=args.trust, through_models=args.through_models)
    _say(found.to_string(index=False, max_rows=60))
    _say(f"sum of contributions: {found['contribution'].sum(min_count=1)}")


def _without(args: argparse.Namespace) -> None:
    lin = _open(args)
    rows = _positions(args.rows, lin.source_rows(args.source), f"source {args.source!r}")
    w = lin.without(args.source, rows, trust=args.trust, dry_run=args.dry_run, strategy=args.strategy)
    _say(w)
    if len(w.diff):
        _say(w.diff.to_string(index=False, max_rows=60))


def _demo(args: argparse.Namespace) -> None:
    from .demo import run

    run(workers=args.workers, store=getattr(args, "store", None), out=_STDOUT)


COMMANDS = {"runs": _runs, "show": _show, "backward": _backward, "forward": _forward, "view": _view, "gc": _gc,
            "replay": _replay, "debug": _debug, "explain": _explain, "without": _without, "demo": _demo}


class _UsageError(Exception):
    """Arguments that parse but do not go together."""


def main(argv: list[str] | None = None) -> int:
    """Run the ``hippo`` command with ``argv`` (default: the command line); return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``hippo``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 when it went well; 2 for a bad argument or a query hippo refuses
        (the message is on stderr); 1 when the reader of the output went away
        (``hippo runs | head -1``), quietly.

    Examples
    --------
    >>> import tempfile
    >>> from hippo_dask.cli import main
    >>> main(["gc", "--dry-run", "--store", tempfile.mkdtemp()])
    nothing to remove
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        COMMANDS[args.command](args)
        _STDOUT.flush()  # here, so a reader that went away is seen below and not at exit
    except _UsageError as exc:
        print(f"hippo {args.command}: error: {exc}", file=sys.stderr)  # as argparse says it
        return 2
    except (HippoError, KeyError) as exc:
        print(f"hippo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except _ReaderGone:
        # Python flushes stdout again at exit and would fail again: point it at devnull
        # (the recipe of the Python docs, "Note on SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
