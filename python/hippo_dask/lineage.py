"""Lineage queries: backward (result cells -> source cells) and forward.

A row of any node is identified by the values of its slots (see
:mod:`hippo_dask.plan`). The result's slot values are stored per result row;
group-bys store, per input row, its slot values and group id. Everything else
is the static column mapping in the manifest. So:

* **backward** starts from the slot tuples of the asked result rows, one set
  per asked column, and walks the DAG from the result to the sources: one-to-one
  operators keep the tuples, a merge projects them onto each side, a concat
  keeps the tuples tagged with that input, a group-by swaps a group id for
  its members' tuples. At a source, the source slot *is* the row position.
* **forward** starts from source positions and walks the other way, carrying
  per column a small predicate ("rows whose slot s is in ids, and whose concat
  tag is k") that is evaluated on group memberships and, last, on the
  result's slot arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from . import _core
from .errors import ColumnError, CorruptRunError, QueryError, ReplayError, SourceChangedError, StaleResultError
from .ids import (DERIVED, GROUP_ID, OFFSET_BITS, SPLIT_HIGH, SPLIT_LOW, ids_checksum, positions_from_halves,
                  untabulate, unique_sorted, zigzag)
from .manifest import check_manifest
from .plan import APPLY_MODEL, MEMBERSHIP, MISSING, ONE_TO_ONE, ROW, Node, hidden, nodes_from_json
from .store import Store, _join, get_store

if TYPE_CHECKING:
    import pandas as pd


#: How many positions, columns or sources a repr lists before it says how many more there are.
_SHOWN = 10


class TraceSet:
    """The lineage found in one frame: rows and cells of a source, or of the run's result.

    :meth:`Lineage.backward` gives one per source (in a :class:`Trace`),
    :meth:`Lineage.forward` one of the result. Printed, it says how many rows
    and cells it holds and where; ``.frame`` shows the rows themselves.

    Attributes
    ----------
    rows : numpy.ndarray of int64
        Sorted unique 0-based row positions. In a pandas source: positions in
        the frame given to ``.hippo.source()`` (``df.iloc[rows]``). In a Dask
        source: row numbers in partition order (partition 0's rows first, then
        partition 1's, ...). In the result: positions in the computed result.
    source : str or None
        The source these rows are in; None for rows of the result.
    cells : pandas.DataFrame
        Columns ``row`` (int64) and ``column`` (str), sorted by row then column,
        one line per cell. Built on first access: a wide trace can hold tens of
        millions of cells, and many callers only need ``rows``.

    Examples
    --------
    A CSV file source (read again when asked for its rows), with its own labels:

    >>> import os, tempfile, pandas as pd, hippo_dask as hippo
    >>> folder = tempfile.mkdtemp(); _ = hippo.set_store(os.path.join(folder, "store"))
    >>> pd.DataFrame({"id": ["p1", "p2", "p3"], "k": ["a", "b", "a"], "x": [1, 2, 3]}).to_csv(
    ...     os.path.join(folder, "xs.csv"), index=False)
    >>> xs = hippo.read_csv(os.path.join(folder, "xs.csv"), index_col="id")
    >>> out = xs.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    >>> ts = out.hippo.lineage.backward(rows=[0], columns=["total"])["xs"]
    >>> ts
    TraceSet: 2 rows of source 'xs', at positions 0, 2
      2 cells, in 1 column: 'x' (2 cells)
    >>> ts.frame
        k  x
    id
    p1  a  1
    p3  a  3
    >>> ts.index.tolist()
    ['p1', 'p3']
    """

    __slots__ = ("rows", "source", "_by_column", "_cells", "_lineage")

    def __init__(self, rows: np.ndarray, by_column: Mapping[str, np.ndarray], source: str | None = None, *,
                 lineage: "Lineage | None" = None) -> None:
        self.rows = rows
        self.source = source
        self._by_column = dict(by_column)  # column -> sorted unique rows
        self._cells: pd.DataFrame | None = None
        self._lineage = lineage  # where the rows can be read back from (None: made by hand, or unpickled)

    def __reduce__(self) -> tuple:
        # a run's Lineage does not pickle (weak references, the Rust trace engine): a copy keeps
        # the rows and cells, and reads no rows back
        return (TraceSet, (self.rows, self._by_column, self.source))

    @property
    def cells(self) -> "pd.DataFrame":
        if self._cells is None:
            import pandas as pd  # here, not at import: queries themselves never need pandas

            names = sorted(self._by_column)
            if names:
                # one int64 key per cell, ordered like (row, column name): sorted at once
                keys = np.sort(np.concatenate([self._by_column[c] * len(names) + i for i, c in enumerate(names)]))
                rows, codes = np.divmod(keys, len(names))
                column = pd.array(np.asarray(names, dtype=object)[codes], dtype=str)
            else:
                rows, column = np.array([], dtype=np.int64), pd.array([], dtype=str)
            self._cells = pd.DataFrame({"row": rows, "column": column})
        return self._cells

    @property
    def n_cells(self) -> int:
        """Number of cells, without building :attr:`cells`."""
        return sum(len(v) for v in self._by_column.values())

    @property
    def columns(self) -> list[str]:
        """Columns with at least one traced cell, sorted."""
        return sorted(c for c, rows in self._by_column.items() if len(rows))

    # ------------------------------------------------------------------ the rows themselves
    @property
    def frame(self) -> "pd.DataFrame":
        """The traced rows themselves: every column, in row order, with their own index labels.

        Rows of a source come from the frame given to ``.hippo.source()``
        while it is alive in this process, else from its file read again
        (``hippo.read_csv`` / ``hippo.read_parquet``, or a ``dd.read_parquet``
        frame): only the partitions holding traced rows are read, and each is
        checked against the content fingerprints the run recorded first, so
        rows of a frame or file changed since are refused, never shown. The
        labels are the ones the source had at ``.hippo.source()`` (a pandas
        frame whose index was replaced since is refused); a Dask source's rows
        keep their partition's own labels, which may repeat across partitions.
        A Dask run fingerprints only the source columns it read: the frame
        holds those columns (the others could have changed since, unchecked). Rows of the result come from
        the result frame while it is alive (``result.hippo.lineage``), checked
        against the run's record.

        Returns
        -------
        pandas.DataFrame
            ``len(self)`` rows (the source's or the result's columns).

        Raises
        ------
        SourceChangedError
            The source frame or file is not the one the run read.
        StaleResultError
            The result frame was filtered, re-sorted or edited since compute().
        ReplayError
            Neither the frame nor a file is at hand (an in-memory source no
            longer alive, a Lineage opened from the store): pass the data to
            :meth:`frame_from`.
        """
        return self._context()._traced_rows(self.source, self.rows, None)

    @property
    def index(self) -> "pd.Index":
        """The index labels of the traced rows (beside :attr:`rows`, their positions); see :attr:`frame`.

        For a Dask source, the labels of each row's partition as read back:
        Dask partitions' labels may repeat across partitions.
        """
        return self.frame.index

    def frame_from(self, data: Any) -> "pd.DataFrame":
        """The traced rows of ``data``: the frame the run read, passed back (see :attr:`frame`).

        Parameters
        ----------
        data : pandas.DataFrame or dask.dataframe.DataFrame
            For a source: the frame given to ``.hippo.source()`` (or one with
            the same partitions and values); for the result: the frame
            ``compute()`` returned. Checked against the run's record first.

        Returns
        -------
        pandas.DataFrame
            The traced rows, every column, with ``data``'s index labels.

        Examples
        --------
        >>> import pandas as pd, tempfile, hippo_dask as hippo
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}, index=[30, 10, 20])
        >>> out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
        >>> out.hippo.lineage.backward(rows=[0], columns=["total"])["df"].frame_from(df)
            k  x
        30  a  1
        20  a  3
        """
        return self._context()._traced_rows(self.source, self.rows, data)

    def _context(self) -> "Lineage":
        if self._lineage is None:
            raise QueryError("this TraceSet is not attached to a run (it was made by hand, or unpickled), so it "
                             "knows no frame to read its rows from; query the run again (hippo.open(store, run_id))")
        return self._lineage

    # ------------------------------------------------------------------ reprs
    def _where(self) -> str:
        """Which frame the positions are in, e.g. ``source 'events'`` or ``the result``."""
        if self.source is not None:
            return f"source {self.source!r}"
        return "the result" if self._lineage is not None else "a frame"

    def _in_partition_order(self) -> bool:
        """Whether positions are row numbers in partition order (a Dask source)."""
        return self._lineage is not None and self.source is not None and self._lineage._is_dask_source(self.source)

    def _column_counts(self) -> list[tuple[str, int]]:
        return [(c, len(self._by_column[c])) for c in self.columns]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        lines = [f"TraceSet: {_count(len(self.rows), 'row')} of {self._where()}"
                 + (f", at {_positions(self.rows)}" if len(self.rows) else "")]
        counts = self._column_counts()
        if counts:
            listed = _listed([f"{c!r} ({_count(n, 'cell')})" for c, n in counts])
            lines.append(f"  {_count(self.n_cells, 'cell')}, in {_count(len(counts), 'column')}: {listed}")
        else:
            lines.append("  0 cells")
        if self._in_partition_order():
            lines.append(f"  {_PARTITION_ORDER}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        counts = self._column_counts()
        body = [[c, n] for c, n in counts[:_SHOWN]]
        if len(counts) > _SHOWN:
            body.append([f"... and {len(counts) - _SHOWN:,} more columns", sum(n for _, n in counts[_SHOWN:])])
        parts = [f"<p><b>TraceSet</b>: {_count(len(self.rows), 'row')} of {escape(self._where())}"
                 + (f", at {escape(_positions(self.rows))}" if len(self.rows) else "") + "; "
                 f"{_count(self.n_cells, 'cell')} in {_count(len(counts), 'column')}</p>"]
        if body:
            parts.append(_html_table(["column", "cells"], body))
        if self._in_partition_order():
            parts.append(f"<p>{escape(_PARTITION_ORDER)}</p>")
        return "<div>" + "".join(parts) + "</div>"


class Trace(Mapping[str, TraceSet]):
    """Backward lineage: source name -> :class:`TraceSet` of that source (every source, possibly empty).

    Printed, it lists per source how many rows and cells the trace reaches.

    Examples
    --------
    >>> import pandas as pd, tempfile, hippo_dask as hippo
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
    >>> trace = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute().hippo.lineage.backward(rows=[0])
    >>> trace  # doctest: +ELLIPSIS
    Trace: backward lineage in 1 source of run ...
      'df': 2 rows (positions 0, 2); 4 cells in 2 columns: 'k', 'x'
    """

    def __init__(self, sets: Mapping[str, TraceSet]) -> None:
        self._sets = dict(sets)

    def __getitem__(self, name: str) -> TraceSet:
        try:
            return self._sets[name]
        except KeyError:
            raise KeyError(f"no source named {name!r}; this run's sources are {sorted(self._sets)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._sets)

    def __len__(self) -> int:
        return len(self._sets)

    def _run(self) -> str:
        lineages = {id(ts._lineage): ts._lineage for ts in self._sets.values() if ts._lineage is not None}
        return f" of run {next(iter(lineages.values())).run_id}" if len(lineages) == 1 else ""

    @staticmethod
    def _where(ts: TraceSet) -> str:
        """The positions of one source's rows, as the reprs show them."""
        if not len(ts.rows):
            return ""
        return _positions(ts.rows) + (" in partition order" if ts._in_partition_order() else "")

    def __repr__(self) -> str:
        lines = [f"Trace: backward lineage in {_count(len(self._sets), 'source')}{self._run()}"]
        for name, ts in list(self._sets.items())[:_SHOWN]:
            where = f" ({self._where(ts)})" if len(ts.rows) else ""
            spread = ""
            if ts.n_cells:
                spread = f" in {_count(len(ts.columns), 'column')}: {_listed([repr(c) for c in ts.columns])}"
            lines.append(f"  {name!r}: {_count(len(ts.rows), 'row')}{where}; {_count(ts.n_cells, 'cell')}{spread}")
        if len(self._sets) > _SHOWN:
            lines.append(f"  ... and {len(self._sets) - _SHOWN:,} more sources")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body: list[list[Any]] = [[name, len(ts.rows), self._where(ts), ts.n_cells, _listed(ts.columns)]
                                 for name, ts in list(self._sets.items())[:_SHOWN]]
        if len(self._sets) > _SHOWN:
            body.append([f"... and {len(self._sets) - _SHOWN:,} more sources", "", "", "", ""])
        head = f"<p><b>Trace</b>: backward lineage in {_count(len(self._sets), 'source')}{escape(self._run())}</p>"
        return "<div>" + head + _html_table(["source", "rows", "positions", "cells", "columns"], body) + "</div>"


_PARTITION_ORDER = "positions count rows in partition order (partition 0's rows first)"


def _count(n: int, word: str) -> str:
    """``1 row``, ``3 rows``, ``1,234 rows``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _listed(names: Sequence[str]) -> str:
    """The first few names, comma-separated, and how many more there are."""
    more = f", and {len(names) - _SHOWN:,} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _positions(rows: np.ndarray) -> str:
    """``position 3``, ``positions 0, 5, 9``, or the first few and how many more."""
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN])
    more = f", ... ({len(rows) - _SHOWN:,} more)" if len(rows) > _SHOWN else ""
    return f"position{'' if len(rows) == 1 else 's'} {shown}{more}"


def _html_table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """A plain HTML table, every value escaped."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _trace_set(rows: np.ndarray | None, cell_parts: list[tuple[np.ndarray, str]], lineage: "Lineage | None" = None,
               source: str | None = None) -> TraceSet:
    """A TraceSet from per-column sorted unique rows; ``rows=None``: the rows of those cells.

    ``lineage`` and ``source`` say where the rows are (``source=None``: the result)."""
    by_column: dict[str, np.ndarray] = {}
    for part, column in cell_parts:
        part = part.astype(np.int64, copy=False)
        if column not in by_column:
            by_column[column] = part
        elif by_column[column] is not part:
            by_column[column] = _core.union_sorted([by_column[column], part])
    if rows is None:
        rows = _union_sorted(list(by_column.values()))
    return TraceSet(rows.astype(np.int64, copy=False), by_column, lineage=lineage, source=source)


def _union_sorted(parts: list[np.ndarray]) -> np.ndarray:
    """The union of sorted id sets; columns often share one array, united once."""
    distinct = list({id(p): p for p in parts}.values())
    if len(distinct) == 1:
        return distinct[0]
    return _core.union_sorted(distinct) if distinct else np.array([], dtype=np.int64)


def _int64_columns(values: np.ndarray) -> np.ndarray:
    """``values`` as int64 with contiguous columns (no copy when they already are)."""
    return np.asfortranarray(values, dtype=np.int64)


@dataclass(frozen=True)
class SlotRows:
    """A set of rows of one node, each identified by its slot values.

    ``values`` holds one row per line and one slot per column (int64). Plain
    numpy, because queries run many small steps and DataFrame overhead would
    dominate them; the set algebra (dedupe, union, select) runs in the Rust
    trace engine (``hippo_core::trace``).
    """

    slots: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def column(self, slot: str) -> np.ndarray:
        return self.values[:, self.slots.index(slot)]

    def ids(self, slot: str) -> np.ndarray:
        """Sorted distinct values of ``slot``, without ``MISSING``."""
        return _core.column_ids(_int64_columns(self.values), self.slots.index(slot))

    def take(self, selector: np.ndarray) -> "SlotRows":
        return SlotRows(self.slots, self.values[selector])

    def project(self, mapping: Mapping[str, str]) -> "SlotRows":
        """Keep the slots named by ``mapping``'s keys, renamed to its values."""
        index = [self.slots.index(s) for s in mapping]
        return SlotRows(tuple(mapping.values()), self.values[:, index])

    def select(self, mapping: Mapping[str, str], *, present: bool = False,
               equals: tuple[str, int] | None = None) -> "SlotRows":
        """:meth:`project` then :meth:`unique` in one pass; ``present``: only rows with one
        of the kept slots set; ``equals=(slot, value)``: only rows with that value."""
        index = [self.slots.index(s) for s in mapping]
        where = None if equals is None else (self.slots.index(equals[0]), int(equals[1]))
        values = _core.select_unique(_int64_columns(self.values), index, present=present, equals=where)
        return SlotRows(tuple(mapping.values()), values)

    def unique(self) -> "SlotRows":
        """The distinct rows (one slot: sorted; several: first occurrences, in order)."""
        if len(self.values) <= 1:
            return self
        return SlotRows(self.slots, _core.unique_rows(_int64_columns(self.values)))

    def union(self, other: "SlotRows") -> "SlotRows":
        """The rows of both (duplicate-free when both are, as every trace step's are)."""
        other_values = other.values if other.slots == self.slots else other.values[:, [other.slots.index(s) for s in self.slots]]
        return SlotRows(self.slots, _core.union_rows(_int64_columns(self.values), _int64_columns(other_values)))

    @staticmethod
    def from_arrays(arrays: Mapping[str, np.ndarray], slots: Sequence[str]) -> "SlotRows":
        n = len(next(iter(arrays.values()))) if arrays else 0
        values = np.empty((n, len(slots)), dtype=np.int64, order="F")  # contiguous columns: fast scans
        for i, s in enumerate(slots):
            values[:, i] = arrays[s]
        return SlotRows(tuple(slots), values)


#: Key of the result's slot table in a Lineage's trace engine (group-bys use their node id).
_RESULT = "\x00result"

# An atom of a forward predicate: rows whose ``slot`` is in ``ids`` (``None``:
# any value but MISSING) and whose concat tags match ``conds`` (slot, value) pairs.
Atom = tuple[str, "np.ndarray | None", tuple[tuple[str, int], ...]]


class Lineage:
    """The committed lineage of one run: answers backward and forward queries.

    Get one from a computed result (``result.hippo.lineage``) or from a store
    (:func:`hippo_dask.open`). Printed (or shown in Jupyter), it lists the
    run's facts: result rows and columns, sources, operations.

    Examples
    --------
    >>> import pandas as pd, tempfile, hippo_dask as hippo
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
    >>> out = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    >>> lin = out.hippo.lineage
    >>> lin.backward(rows=[0], columns=["total"])["df"].rows
    array([0, 2])
    >>> lin.forward("df", rows=[1]).rows
    array([1])
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        manifest = store.manifest(run_id)
        check_manifest(manifest, _join(store.run_dir(run_id), "manifest.json"))
        self._manifest = manifest
        try:
            self._nodes = nodes_from_json(manifest["nodes"])
            self._order = [self._nodes[r["id"]] for r in manifest["nodes"]]
            self._result = self._nodes[manifest["result"]["node"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRunError(f"{_join(store.run_dir(run_id), 'manifest.json')}: malformed manifest ({exc!r})") from None
        self._sources = manifest["sources"]
        self._source_by_node = {info["node"]: name for name, info in self._sources.items()}
        self._result_slots: SlotRows | None = None
        self._members: dict[str, tuple[SlotRows, np.ndarray]] = {}
        self._trace_engine: _core.TraceEngine | None = None  # the run's maps, loaded into the Rust trace engine
        self._source_columns: dict[tuple[str, str], Any] = {}  # (source, column) -> values re-read from its file
        derived = manifest.get("derived") or {}
        self._derived_members = dict(derived.get("memberships") or {})  # group-by node id -> where its ids come from
        self._derived_result = dict(derived.get("result") or {})  # result group slot (hidden) -> the same
        self._result_frame: Any = None  # weak reference to the result frame, set by ``result.hippo.lineage``

    # ------------------------------------------------------------------ facts
    @property
    def sources(self) -> list[str]:
        """Names of the run's sources."""
        return list(self._sources)

    @property
    def columns(self) -> list[str]:
        """Columns of the result, with those ``compute()`` returned as its index (:attr:`index`)."""
        return list(self._manifest["result"]["columns"])

    @property
    def index(self) -> list[str]:
        """The columns the result shows as its index (``set_index``); queries name them like columns."""
        return list(self._manifest["result"].get("index") or [])

    @property
    def nrows(self) -> int:
        """Rows in the result."""
        return int(self._manifest["result"]["rows"])

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's manifest: operator DAG, column mappings, sources, fragments."""
        return self._manifest

    def source_rows(self, name: str) -> int:
        """Rows in source ``name``."""
        return int(self._source(name)["rows"])

    def _is_dask_source(self, name: str) -> bool:
        """Whether source ``name`` was a Dask frame (its positions count rows in partition order)."""
        return self._source(name).get("identity", {}).get("kind") == "dask"

    def _source_kind(self, name: str) -> str:
        """How a source was given, for the reprs: ``pandas``, ``dask, 4 partitions``, ``file /data/x.csv``."""
        info = self._source(name)
        identity = info.get("identity", {})
        kind = str(identity.get("kind", "?"))
        if kind == "dask":
            kind += f", {_count(len(info.get('partition_rows', ())), 'partition')}"
        file = identity.get("file")
        if isinstance(file, dict):
            paths = file.get("path") if isinstance(file.get("path"), list) else [file.get("path")]
            kind += f", file {paths[0]}" + (f" and {len(paths) - 1:,} more" if len(paths) > 1 else "")
        return kind

    def _operations(self) -> list[str]:
        """The run's operations in pipeline order, sources left out."""
        return [node.op for node in self._order if node.op != "source"]

    def __repr__(self) -> str:
        sources = _listed([f"{name!r} ({_count(self.source_rows(name), 'row')}, {self._source_kind(name)})"
                           for name in self.sources])
        ops = self._operations()
        return "\n".join([
            f"Lineage of run {self.run_id} (store {self.store.url})",
            f"  result: {_count(self.nrows, 'row')} x {_count(len(self.columns), 'column')}: "
            f"{_listed([repr(c) for c in self.columns])}",
            f"  {_count(len(self.sources), 'source')}: {sources}",
            f"  {_count(len(ops), 'operation')}" + (f": {_listed(ops)}" if ops else ""),
        ])

    def _repr_html_(self) -> str:
        body: list[list[Any]] = [[name, self.source_rows(name), self._source_kind(name)]
                                 for name in self.sources[:_SHOWN]]
        if len(self.sources) > _SHOWN:
            body.append([f"... and {len(self.sources) - _SHOWN:,} more sources", "", ""])
        return ("<div>"
                f"<p><b>Lineage</b> of run <code>{escape(self.run_id)}</code> "
                f"(store <code>{escape(self.store.url)}</code>)</p>"
                + _html_table(["result rows", "result columns", "operations"],
                              [[self.nrows, _listed(self.columns), _listed(self._operations())]])
                + _html_table(["source", "rows", "kind"], body)
                + "</div>")

    def view(self, path: str | os.PathLike[str] | None = None, *, rows: int | Sequence[int] | np.ndarray | None = None,
             columns: str | Sequence[str] | None = None, source: str | None = None,
             source_rows: int | Sequence[int] | np.ndarray | None = None) -> str:
        """Write one self-contained HTML page picturing this run, optionally with a trace across it.

        A thin front for :func:`hippo_dask.view.write_view` (every argument is
        passed on as it is; that function says what the page holds).

        Parameters
        ----------
        path : str or path-like, optional
            Where to write the page (default: ``<run_id>.html`` in the current directory).
        rows : int or sequence of int, optional
            Result row positions whose backward trace to draw.
        columns : str or sequence of str, optional
            Result columns of that trace (default: whole rows).
        source : str, optional
            A source whose ``source_rows`` to trace forward.
        source_rows : int or sequence of int, optional
            Row positions in ``source``.

        Returns
        -------
        str
            The path of the page written.

        Examples
        --------
        >>> import pandas as pd, tempfile, os, hippo_dask as hippo
        >>> folder = tempfile.mkdtemp(); _ = hippo.set_store(os.path.join(folder, "store"))
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
        >>> lin = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute().hippo.lineage
        >>> os.path.basename(lin.view(os.path.join(folder, "run.html"), rows=[0], columns=["total"]))
        'run.html'
        """
        from .view import write_view

        return write_view(self, path, rows=rows, columns=columns, source=source, source_rows=source_rows)

    # ------------------------------------------------------------------ the rows themselves
    def _traced_rows(self, source: str | None, rows: np.ndarray, data: Any = None) -> "pd.DataFrame":
        """Rows ``rows`` of source ``source`` (None: the result) as a DataFrame; see :attr:`TraceSet.frame`.

        ``data`` is the frame to take them from (checked against the run's
        record); None: the source frame while it is alive, else its file read
        again (the result: the result frame while it is alive).
        """
        import pandas as pd

        rows = np.asarray(rows, dtype=np.int64)
        if source is None:
            return self._result_rows(rows, data)
        info = self._source(source)
        if data is not None and not (isinstance(data, pd.DataFrame) or hasattr(data, "to_delayed")):
            raise QueryError(f"frame_from: pass the frame source {source!r} was made from (a pandas or Dask "
                             f"DataFrame), got {type(data).__name__}")
        what = "TraceSet.frame"  # the messages below and from source_rows name the source
        how = (f"pass the frame the run read: trace[{source!r}].frame_from(df) (a Dask source: the same partitions "
               "and values)")
        if data is None:
            from .live_sources import frame_of

            data = frame_of(info["node"], source)
        if data is None:
            file = info.get("identity", {}).get("file")
            if file is None:
                raise ReplayError(f"{what}: source {source!r} was an in-memory frame that is no longer alive in this "
                                  f"process (or this Lineage was opened from the store), so its rows cannot be read "
                                  f"back; {how}")
            from .diagnose.replay import _read_file

            data = _read_file(file, what=what, advice=how)
        from .diagnose.replay import source_rows

        # Only columns whose values the run fingerprinted can be checked: a Dask run records the columns
        # it read, and the others may have changed since, so they are left out rather than shown unchecked.
        per_column = info.get("partition_column_fingerprints")
        columns = [c for c in info["columns"] if not per_column or all(c in fp for fp in per_column)]
        return source_rows(source, info, data, rows, columns, what=what)

    def _result_rows(self, rows: np.ndarray, data: Any) -> "pd.DataFrame":
        """Result rows ``rows`` of ``data`` or of the result frame while it is alive, checked row for row."""
        import pandas as pd

        from .partition import missing_columns, result_columns, result_fingerprint

        what = f"TraceSet.frame (the result of run {self.run_id})"
        parquet = self._manifest["result"].get("parquet")
        if data is None:
            data = self._result_frame() if self._result_frame is not None else None
            if data is None and parquet:
                raise ReplayError(f"{what}: the result was written to {parquet.get('path')} (to_parquet) and is not in "
                                  "memory; result positions are rows in file-name order: "
                                  f"pd.read_parquet({parquet.get('path')!r}).iloc[rows]")
            if data is None:
                raise ReplayError(f"{what}: the result frame is not at hand (it is no longer alive, or this Lineage was "
                                  "opened from the store); pass the frame compute() returned: TraceSet.frame_from(result)")
        if not isinstance(data, pd.DataFrame):
            raise QueryError(f"frame_from: pass the result frame compute() returned (a pandas DataFrame), got "
                             f"{type(data).__name__}")
        recorded = self._manifest["result"].get("fingerprint")
        if recorded is None:
            raise ReplayError(f"{what}: the run recorded no row-order fingerprint of its result (a to_parquet run), "
                              "so no frame can be checked to hold its rows in order; result positions are rows in "
                              "file-name order of the parquet files")
        missing = missing_columns(data, self.columns)
        if missing or list(result_fingerprint(data, self.columns)) != list(recorded):
            raise StaleResultError(
                f"{what}: this frame's rows are not the result as computed "
                f"({'columns ' + str(missing) + ' are gone' if missing else 'rows were filtered, re-sorted or edited'}); "
                "positions would name other rows. Pass the frame compute() returned, unchanged")
        taken = result_columns(data.iloc[rows], self.columns)
        taken.attrs = {}  # not the result: its lineage handle must not ride along
        return taken

    # ------------------------------------------------------------------ diagnosis
    def explain(self, row: int, column: str, *, sources: Mapping[str, Any] | None = None,
                through_models: bool = False, trust: bool = False, functions: Mapping[str, Any] | None = None,
                **compute_kwargs: Any) -> pd.DataFrame:
        """Which source values one result value is made of, and each one's share of it.

        Replays the pipeline on the rows the value depends on (as
        :meth:`inspect` does) and follows the value back: through copies
        (merges, filters, renames) to the row it came from, through an
        aggregation to the group's members with their exact share (sum: the
        value; mean: value / n; count / size: 1; min / max / first / last: the
        row that gave it; median: the middle row(s); nunique: 1 / rows sharing
        the value; var: the row's term), composed through further sums and
        means. Values made by user functions or fitted models are listed cell
        by cell with no contribution ("not additive"); std and prod give each
        row's leave-one-out influence.

        Parameters
        ----------
        row : int
            Result row position.
        column : str
            Result column.
        sources : mapping of str to DataFrame, optional
            In-memory sources by name, as for :meth:`replay`.
        through_models : bool, default False
            Also list the training rows of fitted models behind the value (not weighted).
        trust, functions, **compute_kwargs
            As for :meth:`replay`.

        Returns
        -------
        pandas.DataFrame
            Columns ``source``, ``row`` (source position), ``column`` (source
            column), ``value`` (the value that was aggregated or copied),
            ``contribution`` (its share; the shares of a sum or mean add up to
            the value) and ``note``; largest ``|contribution|`` first.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [10, 2, 30]})
        >>> out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
        >>> out.hippo.lineage.explain(0, "total", sources={"df": df})[["source", "row", "value", "contribution"]]
          source  row  value  contribution
        0     df    2     30          30.0
        1     df    0     10          10.0
        """
        from .diagnose.explain import explain

        return explain(self, row, column, sources=sources, through_models=through_models, trust=trust,
                       functions=functions, **compute_kwargs)

    def without(self, source: str, rows: Any, *, sources: Mapping[str, Any] | None = None,
                result: pd.DataFrame | None = None, dry_run: bool = False, strategy: str = "auto",
                trust: bool = False, functions: Mapping[str, Any] | None = None,
                estimators: Mapping[str, Any] | None = None, **compute_kwargs: Any) -> Any:
        """The result as a full rerun without some source rows would give it, and what changed.

        The removed rows' forward trace (through fitted models too) names the
        result rows that can change. When the pipeline allows it (rows are
        decided, matched and grouped by values of their own: no filter on an
        aggregate, inner merges, no ``drop_duplicates``, ``head`` or ``sample``,
        no model trained on removed rows), only those rows are recomputed, each
        affected group from its remaining members (``strategy="partial"``).
        Otherwise the pipeline is rebuilt from its record and rerun on the
        sources minus the rows, on the run's own backend (``"rerun"``), and a
        model whose training rows were removed is refitted. Both give exactly
        the rows of a full rerun (floating-point sums of a Dask run may differ
        from a rerun in the last bits, as two Dask runs over other partitions do).

        Parameters
        ----------
        source : str
            The source to remove rows from.
        rows : int, sequence of int, or callable
            Row positions in that source, or ``predicate(frame) -> boolean mask``
            evaluated on the source (per partition on Dask).
        sources : mapping of str to DataFrame, optional
            In-memory sources by name, as for :meth:`replay` (file sources are read again).
        result : pandas.DataFrame, optional
            The run's result as ``compute()`` returned it (taken automatically
            when this Lineage came from ``result.hippo.lineage``). Without it,
            the original values are recomputed (a replay).
        dry_run : bool, default False
            Only the diff ("what if"); ``.result`` is None.
        strategy : {"auto", "partial", "rerun"}
            ``"partial"`` raises :class:`~hippo_dask.errors.ReplayError` with the
            reason when a partial recompute would not be exact.
        trust, functions, estimators, **compute_kwargs
            As for :meth:`replay`.

        Returns
        -------
        Without
            ``.result``, ``.diff`` (``change`` in "changed" / "removed" /
            "added", ``row``, ``new_row``, ``columns``, then the values),
            ``.strategy``, ``.reason``, ``.refitted``; ``.capture()`` records the
            corrected pipeline as a new run linked to this one.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 300]})
        >>> out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
        >>> w = out.hippo.lineage.without("df", [2], sources={"df": df})
        >>> w.result
           k  total
        0  a      1
        1  b      2
        >>> w.diff[["change", "row", "total"]]
            change  row  total
        0  changed    0      1
        """
        from .diagnose.without import without

        return without(self, source, rows, sources=sources, result=result, dry_run=dry_run, strategy=strategy,
                       trust=trust, functions=functions, estimators=estimators, **compute_kwargs)

    def replay(self, rows: Sequence[int] | np.ndarray | None = None, sources: Mapping[str, Any] | None = None,
               verify: bool = True, trust: bool = False, functions: Mapping[str, Any] | None = None,
               estimators: Mapping[str, Any] | None = None, **compute_kwargs: Any) -> Any:
        """Re-execute this run from its record: all of it, or only what some result rows need.

        Sources are read again (file sources: from the recorded location with the
        recorded reader arguments) or passed back in ``sources`` (in-memory
        frames; checked against the content fingerprint of every partition: a
        frame that differs raises :class:`~hippo_dask.errors.SourceChangedError`).
        User functions are re-imported by qualified name and compared with the
        token recorded at capture; functions that cannot be imported (lambdas,
        local functions) need ``trust=True``, which unpickles the copies stored
        in the run (unpickling runs code: only for stores you trust), or
        ``functions={"qualified.name": func}``.

        Parameters
        ----------
        rows : sequence of int, optional
            Result rows to recompute. Only their backward closure is read and run
            (on pandas), using fitted models as stored; returns those rows as a
            DataFrame indexed by ``rows``, equal to the result's. Runs whose rows
            depend on rows outside any closure (``head``, ``sample``, ``lin.All`` /
            ``lin.Window`` steps, and on Dask ``first`` / ``last`` /
            ``drop_duplicates``, which follow Dask's row order) are refused.
        sources : mapping of str to DataFrame, optional
            In-memory sources by name.
        verify : bool, default True
            Compare the replay with the record (whole replay only).
        trust : bool, default False
            Allow unpickling the functions, values and estimators stored in the run.
        functions : mapping, optional
            Functions by qualified name (or node id), used instead of importing.
        estimators : mapping, optional
            Unfitted estimators by class name (or node id) for refitting, instead of the stored ones.
        **compute_kwargs
            Passed to ``dask.compute`` (e.g. ``scheduler=client``).

        Returns
        -------
        ReplayReport or pandas.DataFrame
            Whole replay: a report (``.identical``, ``.first`` difference, the
            new ``.run_id`` and ``.result``). With ``rows``: those rows.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]})
        >>> out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
        >>> out.hippo.lineage.replay(sources={"df": df}).identical
        True
        >>> out.hippo.lineage.replay(rows=[1], sources={"df": df})
           k  total
        1  b      2
        """
        from .diagnose.replay import replay, replay_rows

        if rows is not None:
            return replay_rows(self, rows, sources=sources, trust=trust, functions=functions, **compute_kwargs)
        return replay(self, sources=sources, verify=verify, trust=trust, functions=functions, estimators=estimators,
                      **compute_kwargs)

    def inspect(self, row: int, column: str | None = None, sources: Mapping[str, Any] | None = None,
                trust: bool = False, functions: Mapping[str, Any] | None = None, **compute_kwargs: Any) -> Any:
        """Operator by operator from the sources, the rows and values that fed one result value.

        Traces ``row`` (and ``column``) backward, replays the pipeline on just the
        source rows it depends on (nothing intermediate is stored at capture) and
        returns an :class:`~hippo_dask.diagnose.inspect.Inspection`: ``print()``
        it, or read ``.steps`` (operation, traced columns, rows). Sources,
        ``trust`` and ``functions`` are as for :meth:`replay`.
        """
        from .diagnose.inspect import inspect

        return inspect(self, row, column, sources=sources, trust=trust, functions=functions, **compute_kwargs)

    def isolate(self, test: Any, rows: Sequence[int] | None = None, sources: Mapping[str, Any] | None = None,
                trust: bool = False, functions: Mapping[str, Any] | None = None, **compute_kwargs: Any) -> Any:
        """Find a small set of source rows whose removal makes ``test`` pass (delta debugging, after BigSift).

        ``test(frame) -> bool`` gets the result rows ``rows`` (default: all),
        recomputed, as a DataFrame indexed by their result positions (rows that a
        removal makes disappear are left out) and returns True while the output
        is wrong. The search runs over the source rows those result rows depend
        on (their backward trace), read once; each test run recomputes the rows
        on pandas from the remaining ones, with fitted models as stored. Returns
        an :class:`~hippo_dask.diagnose.isolate.Isolation` (``.rows`` per
        source, ``.tests``, ``.seconds``). Sources, ``trust``, ``functions`` and
        ``compute_kwargs`` (for reading Dask sources) are as for :meth:`replay`.
        """
        from .diagnose.isolate import isolate

        return isolate(self, test, rows=rows, sources=sources, trust=trust, functions=functions, **compute_kwargs)

    def violations(self, name: str) -> Any:
        """The rows a check (``df.hippo.check``) or validation (``df.hippo.validate``) recorded as failing.

        Parameters
        ----------
        name : str
            The check's or validation's name (unique in the run).

        Returns
        -------
        Violations
            ``.count`` failing rows; ``.trace``, a :class:`Trace` (source name
            -> rows and cells behind them: the row lineage of every failing row,
            and the cells of the columns the predicate read, or of each failure
            case's column); ``.rows`` (per failing row, its source rows);
            ``.result_rows`` (the result rows they flowed into, exact);
            ``.cases`` for a validation (check, column, failing value, row, source
            rows). See :class:`hippo_dask.checks.Violations`.

        Raises
        ------
        QueryError
            No check or validation of that name in this run (the message lists them).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, -2, 3]}).hippo.source("df")
        >>> df = df.hippo.check(lambda p: p.x > 0, name="positive")
        >>> out = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
        >>> v = out.hippo.lineage.violations("positive")
        >>> v.trace["df"].cells
           row column
        0    1      x
        >>> v.result_rows  # the group it joined
        array([1])
        """
        from .checks import violations

        return violations(self, name)

    def storage(self) -> "pd.DataFrame":
        """Lineage bytes per operator: what this run keeps in the store, and where.

        One row per operator that stores anything: the result's slot arrays
        (``result``), a group-by's or a fit's membership, a check's failing rows.
        One-to-one operators (map, filter, sort, ...) and merges store nothing:
        their rows keep their inputs' slots, and their column mappings are in
        the manifest. ``bytes`` are the fragments' sizes in the store;
        ``bytes_per_source_row`` divides by the rows of every source together.

        Returns
        -------
        pandas.DataFrame
            Columns ``node``, ``op``, ``fragments``, ``rows`` (result rows; NA
            for memberships), ``bytes``, ``bytes_per_source_row``;
            largest first, then a ``total`` row (which includes the manifest).

        Examples
        --------
        >>> import pandas as pd, tempfile, hippo_dask as hippo
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
        >>> lin = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute().hippo.lineage
        >>> list(lin.storage()["op"])
        ['groupby', 'result', 'total']
        """
        import pandas as pd

        from .store import url_to_fs

        run_dir = self.store.run_dir(self.run_id)

        def size(url: str) -> int:
            fs, path = url_to_fs(url)  # with the store's storage options (url is a store Location)
            return int(fs.size(path))

        sources = sum(int(info["rows"]) for info in self._sources.values()) or 1
        rows = []
        result_frags = self._manifest["result"]["fragments"]
        rows.append({"node": self._result.id, "op": "result", "fragments": len(result_frags),
                     "rows": int(self.nrows), "bytes": sum(int(f.get("bytes") or size(self.store.child(run_dir, f["path"])))
                                                          for f in result_frags)})
        for node_id, names in self._manifest.get("group_fragments", {}).items():
            node = self._nodes.get(node_id)
            directory = self.store.fragment_dir(node_id)
            rows.append({"node": node_id, "op": node.op if node is not None else "?", "fragments": len(names),
                         "rows": None, "bytes": sum(size(self.store.child(directory, name)) for name in names)})
        manifest_bytes = size(_join(run_dir, "manifest.json"))
        table = pd.DataFrame(rows).sort_values("bytes", ascending=False, kind="stable")
        total = {"node": "", "op": "total", "fragments": int(table["fragments"].sum()), "rows": None,
                 "bytes": int(table["bytes"].sum()) + manifest_bytes}
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True).astype({"rows": "Int64"})
        table["bytes_per_source_row"] = table["bytes"] / sources
        return table

    # ------------------------------------------------------------------ loading
    def _source(self, name: str) -> Mapping[str, Any]:
        if name not in self._sources:
            raise QueryError(f"no source named {name!r}; this run's sources are {sorted(self._sources)}")
        return self._sources[name]

    def _slot_source_counts(self, node: Node) -> dict[str, list[int]]:
        """Slots of ``node`` that carry source ids, with their source's partition sizes."""
        found = {}
        for slot in node.slots:
            origin = node.slot_origin.get(slot)
            if origin in self._source_by_node:
                found[slot] = self._sources[self._source_by_node[origin]]["partition_rows"]
        return found

    def _source_column(self, name: str, column: str, exact: bool = False) -> np.ndarray:
        """Column ``column`` of file source ``name``, read again (cached), every row in capture order."""
        from .readers import read_column

        cached = self._source_columns.get((name, column))
        if cached is not None and (cached[1] or not exact):
            return cached[0]
        info = self._source(name)
        file = info.get("identity", {}).get("file")
        try:
            values = read_column(file, column, exact=exact)
        except (OSError, KeyError, ValueError) as exc:
            raise SourceChangedError(
                f"source {name!r}: cannot read column {column!r} of {file.get('path') if file else None} again "
                f"({type(exc).__name__}: {exc}). This run stores its group-by lineage as a reference to that "
                "column (the group of a row is its key there); restore the file as it was at capture to query it"
            ) from None
        if len(values) != int(info["rows"]):
            raise SourceChangedError(f"source {name!r}: {file.get('path')} now has {len(values)} rows, the run read "
                                     f"{info['rows']}; restore the file as it was at capture to query this run")
        self._source_columns[(name, column)] = (values, exact)
        return values

    def _derive(self, arrays: dict[str, np.ndarray], key: str, spec: Mapping[str, Any] | None,
                positions: np.ndarray | None, url: str) -> dict[str, np.ndarray]:
        """``arrays`` with derived per-row ``key`` filled in from the source file (see
        :func:`hippo_dask.partition.derive_key`), checked exactly against the fragment's checksum."""
        marker = arrays.pop(key + DERIVED, None)
        if marker is None:
            return arrays
        if spec is None or positions is None or len(marker) != 1:
            raise CorruptRunError(f"{url}: {key!r} is derived from a source, but the manifest does not say which")
        if len(positions) and positions.min() < 0:
            raise CorruptRunError(f"{url}: a derived key's source slot has holes")
        for exact in (False, True):  # the fast read first; the recorded reader if it fails or disagrees
            try:
                values = self._source_column(spec["source"], spec["column"], exact=exact)
            except SourceChangedError:
                if exact:
                    raise
                continue
            if len(positions) and positions.max() >= len(values):
                raise CorruptRunError(f"{url}: source positions beyond source {spec['source']!r}")
            taken = values[positions]
            if taken.dtype.kind in "iu":
                ids = zigzag(taken)
                if ids_checksum(ids) == int(marker[0]):
                    arrays[key] = ids
                    return arrays
        raise SourceChangedError(
            f"source {spec['source']!r}: column {spec['column']!r} no longer holds the values this run read "
            f"(checked against {url}). This run stores its group-by lineage as a reference to that column; restore "
            "the source file as it was at capture to query it")

    def result_slots(self) -> SlotRows:
        """Slot values of every result row (source slots as source positions)."""
        if self._result_slots is None:
            run_dir = self.store.run_dir(self.run_id)
            slots = list(self._result.slots)
            frags = self._manifest["result"]["fragments"]
            # one preallocated column per slot, filled fragment by fragment (at millions of rows a
            # concatenate then a copy into the table cost as much as decoding)
            if sum(int(f["rows"]) for f in frags) != self.nrows or self.nrows < 0:
                raise CorruptRunError(f"{run_dir}: the result fragments' rows do not add up to the manifest's {self.nrows}")
            values = np.empty((int(self.nrows), len(slots)), dtype=np.int64, order="F")
            start = 0
            for frag in frags:
                url = self.store.child(run_dir, frag["path"], "result fragment")
                arrays = self.store.read_fragment(url, frag["checksum"])
                for key, spec in self._derived_result.items():
                    source_slot = arrays.get(hidden(spec["slot"]))
                    arrays = self._derive(arrays, key, spec, source_slot, url)
                arrays = untabulate(arrays, url)
                stop = start + int(frag["rows"])
                if stop > len(values):
                    raise CorruptRunError(f"{run_dir}: result fragments hold more rows than the manifest's {self.nrows}")
                for i, s in enumerate(slots):
                    column = arrays.get(hidden(s))
                    if column is None or len(column) != frag["rows"]:
                        raise CorruptRunError(f"{url}: does not hold the rows and slots the manifest says")
                    values[start:stop, i] = column
                start = stop
            if start != len(values) and slots:
                raise CorruptRunError(f"{run_dir}: result fragments hold {start} rows, the manifest says {self.nrows}")
            self._result_slots = SlotRows(tuple(slots), values if slots else np.empty((0, 0), np.int64))
        return self._result_slots

    def members(self, node: Node) -> tuple[SlotRows, np.ndarray]:
        """Group membership of a group-by node: input slot tuples, and each one's group id."""
        if node.id not in self._members:
            parent = node.inputs[0]
            directory = self.store.fragment_dir(node.id)
            source_counts = self._slot_source_counts(parent)
            fragments = []
            for name in self._manifest["group_fragments"].get(node.id, []):
                url = self.store.child(directory, name, "membership fragment")
                arrays = self.store.read_fragment(url, name.split(".")[0])
                if GROUP_ID + DERIVED in arrays:
                    spec = self._derived_members.get(node.id)
                    positions = None
                    if spec is not None and spec["slot"] in source_counts:
                        high, low = (arrays.get(hidden(spec["slot"]) + half) for half in (SPLIT_HIGH, SPLIT_LOW))
                        if high is not None and low is not None and len(high) == len(low):
                            positions = positions_from_halves(high, low, source_counts[spec["slot"]])
                    arrays = self._derive(arrays, GROUP_ID, spec, positions, url)
                arrays = untabulate(arrays, url)
                for key in [hidden(s) + half for s in parent.slots for half in (SPLIT_HIGH, SPLIT_LOW)] + [GROUP_ID]:
                    if key not in arrays or len(arrays[key]) != len(arrays[GROUP_ID]):
                        raise CorruptRunError(f"{url}: a membership fragment lacks {key!r} or has ragged arrays")
                fragments.append(arrays)
            # Fill one preallocated column per slot, fragment by fragment: at millions of
            # members, temporaries (concatenate, then join, then convert) cost more than decoding.
            n = sum(len(a[GROUP_ID]) for a in fragments)
            values = np.empty((n, len(parent.slots)), dtype=np.int64, order="F")
            gids = np.empty(n, dtype=np.int64)
            start = 0
            for arrays in fragments:
                stop = start + len(arrays[GROUP_ID])
                for i, slot in enumerate(parent.slots):
                    high, low = arrays[hidden(slot) + SPLIT_HIGH], arrays[hidden(slot) + SPLIT_LOW]
                    column = values[start:stop, i]
                    if slot in source_counts:
                        positions_from_halves(high, low, source_counts[slot], out=column)
                    else:
                        np.left_shift(high, OFFSET_BITS, out=column)
                        column |= low
                gids[start:stop] = arrays[GROUP_ID]
                start = stop
            # Fragments may repeat rows (a partial compute, another partitioning): harmless, as
            # every query dedupes what it takes, so no O(n log n) dedupe of the whole table here.
            self._members[node.id] = (SlotRows(tuple(parent.slots), values), gids)
        return self._members[node.id]

    def _engine(self) -> _core.TraceEngine:
        """The Rust trace engine holding this run's loaded maps (created on first use)."""
        if self._trace_engine is None:
            self._trace_engine = _core.TraceEngine()
        return self._trace_engine

    def _result_table(self) -> tuple[_core.TraceEngine, SlotRows]:
        """The engine, with the result's slot table registered (borrowed, not copied)."""
        engine, slots = self._engine(), self.result_slots()
        if not engine.has_table(_RESULT):
            engine.add_table(_RESULT, _int64_columns(slots.values))
        return engine, slots

    def _group_table(self, node: Node) -> tuple[_core.TraceEngine, SlotRows]:
        """The engine, with group-by ``node``'s members and group ids registered; the engine
        scans them for the first queries, then builds its group id -> member rows index."""
        engine = self._engine()
        members, gids = self.members(node)
        if not engine.has_table(node.id):
            engine.add_table(node.id, _int64_columns(members.values), np.ascontiguousarray(gids, dtype=np.int64))
        return engine, members

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _rows(rows: int | Sequence[int] | np.ndarray, n: int, what: str) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(rows))
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise QueryError(f"rows must be integer positions, got {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise QueryError(f"rows {bad[:5].tolist()} are out of range: {what} has {n} rows (valid: 0 to {n - 1})")
        return unique_sorted(arr)

    @staticmethod
    def _columns(columns: str | Sequence[str] | None, available: Sequence[str], what: str) -> list[str] | None:
        if columns is None:
            return None
        columns = [columns] if isinstance(columns, str) else list(columns)
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise ColumnError(f"unknown column(s) {unknown} in {what}; its columns are {list(available)}")
        return columns

    # ------------------------------------------------------------------ backward
    def backward(self, rows: int | Sequence[int] | np.ndarray, columns: str | Sequence[str] | None = None,
                 through_models: bool = False) -> Trace:
        """Source cells that result cells were computed from.

        Parameters
        ----------
        rows : int or sequence of int
            Result row *positions* (0 to ``nrows - 1``, as ``result.iloc`` takes
            them; ``compute()`` returns a ``RangeIndex``, so labels agree).
        columns : str or sequence of str, optional
            Result columns to trace. Omitted: whole rows (row lineage, and the
            cell lineage of every column of those rows).
        through_models : bool, default False
            Also follow model dependencies: a value made by a fitted estimator
            (``transform`` / ``predict``) then traces to every training row of the
            columns the estimator was fitted on, too.

        Returns
        -------
        Trace
            Source name -> :class:`TraceSet` (every source, possibly empty).
        """
        return self._backward(rows, columns, through_models)

    def _backward(self, rows: int | Sequence[int] | np.ndarray, columns: str | Sequence[str] | None = None,
                  through_models: bool = False, keep: dict[str, dict[str, SlotRows]] | None = None,
                  start: tuple[str, Mapping[str, SlotRows]] | None = None) -> Trace:
        """:meth:`backward`; with ``keep``, also every node's traced rows (column -> slot tuples).

        ``start=(node id, {column or ROW: rows of that node})`` starts at those
        rows of an earlier node instead (``rows`` and ``columns`` are ignored);
        the trace has row lineage when ``ROW`` is among the columns.
        """
        if start is None:
            rows = self._rows(rows, self.nrows, "the result")
            cols = self._columns(columns, self.columns, "the result")
            targets = (list(self.columns) + [ROW]) if cols is None else cols
            engine, slots = self._result_table()
            tuples = SlotRows(slots.slots, engine.take_unique(_RESULT, rows))
            state: dict[str, dict[str, SlotRows]] = {self._result.id: {c: tuples for c in targets}}
        else:
            state = {start[0]: dict(start[1])}
            targets = list(start[1])
        found: dict[str, tuple[list[np.ndarray], list[tuple[np.ndarray, str]]]] = {n: ([], []) for n in self._sources}
        # (id(a), id(b)) -> (a, b, a | b): columns that reach a node by the same two paths share
        # one union (a and b are kept alive, so their ids are not reused meanwhile)
        unions: dict[tuple[int, int], tuple[SlotRows, SlotRows, SlotRows]] = {}
        for node in reversed(self._order):
            current = state.pop(node.id, None)
            if not current:
                continue
            if keep is not None:
                keep[node.id] = dict(current)
            if node.op == "source":
                row_parts, cell_parts = found[self._source_by_node[node.id]]
                positions_of: dict[int, np.ndarray] = {}  # columns share tuple sets: one id set each
                for col, t in current.items():
                    if id(t) not in positions_of:
                        positions_of[id(t)] = t.ids(node.new_slot)
                    positions = positions_of[id(t)]
                    if col == ROW:
                        row_parts.append(positions)
                    else:
                        cell_parts.append((positions, col))
                continue
            projected: dict[tuple[int, int, str], SlotRows] = {}
            for col, t in current.items():
                spread = node.spread.get(col)
                for k, in_col in node.colmap.get(col, ()):
                    if k in node.model_inputs and not through_models:
                        continue
                    key = (id(t), k, spread["kind"] if spread else "")
                    if key not in projected:
                        projected[key] = (self._spread_backward(node, t, spread) if spread
                                          else self._backward_step(node, k, t))
                    t_in = projected[key]
                    if not len(t_in):
                        continue
                    target = state.setdefault(node.inputs[k].id, {})
                    before = target.get(in_col)
                    if before is None or before is t_in:
                        target[in_col] = t_in
                        continue
                    pair = unions.get((id(before), id(t_in))) or unions.get((id(t_in), id(before)))
                    if pair is None:
                        pair = unions[(id(before), id(t_in))] = (before, t_in, before.union(t_in))
                    target[in_col] = pair[2]
        sets = {}
        for name, (row_parts, cell_parts) in found.items():
            rows = None if ROW not in targets else _union_sorted(row_parts)
            sets[name] = _trace_set(rows, cell_parts, self, name)
        return Trace(sets)

    def _backward_step(self, node: Node, k: int, t: SlotRows) -> SlotRows:
        """Slot tuples of ``node``'s rows -> slot tuples of the rows of input ``k`` they came from."""
        if node.op in ONE_TO_ONE:
            return t if t.slots == node.inputs[0].slots else t.select(node.slot_from[0])
        if node.op in APPLY_MODEL:
            if k not in node.model_inputs:
                return t
            model = node.inputs[k]  # a fit: one row, the model, group id 0
            return SlotRows((model.new_slot,), np.zeros((1 if len(t) else 0, 1), dtype=np.int64))
        if node.op == "merge":
            return t.select(node.slot_from[k], present=True)  # every real row of a side has a slot set
        if node.op == "concat":
            return t.select(node.slot_from[k], equals=(node.new_slot, k))
        if node.op in MEMBERSHIP:
            return self._members_of(node, t.ids(node.new_slot))
        raise CorruptRunError(f"unknown operation {node.op!r} in run {self.run_id}")

    def _members_of(self, node: Node, wanted: np.ndarray, window: tuple[int | None, int | None] | None = None) -> SlotRows:
        """Distinct member tuples of group-by ``node``'s groups ``wanted`` (sorted ids), or of
        the windows ``(before, after)`` around them."""
        engine, members = self._group_table(node)
        if not len(wanted):
            return SlotRows(members.slots, np.empty((0, len(members.slots)), dtype=np.int64, order="F"))
        return SlotRows(members.slots, engine.members_of(node.id, wanted, list(range(len(members.slots))), window))

    def _spread_backward(self, node: Node, t: SlotRows, spread: Mapping[str, Any]) -> SlotRows:
        """Rows of the input whose values fed a spread column of rows ``t`` (a group, a window)."""
        window = None
        if spread["kind"] == "window":
            window = (_bound(spread["preceding"]), _bound(spread["following"]))
        return self._members_of(node, t.ids(node.new_slot), window)

    # ------------------------------------------------------------------ forward
    def forward(self, source: str, rows: int | Sequence[int] | np.ndarray,
                columns: str | Sequence[str] | None = None, through_models: bool = False) -> TraceSet:
        """Result cells that source cells flowed into.

        Parameters
        ----------
        source : str
            Name of a source of this run.
        rows : int or sequence of int
            Row positions in that source.
        columns : str or sequence of str, optional
            Source columns. Omitted: whole rows (result rows whose row lineage
            includes them, and every result cell any of their values reached).
        through_models : bool, default False
            Also follow model dependencies: when the source cells were training
            data of a fitted estimator, every value that estimator made is reached.

        Returns
        -------
        TraceSet
            Affected result rows and cells.
        """
        return self._forward(source, rows, columns, through_models)

    def _forward(self, source: str, rows: int | Sequence[int] | np.ndarray, columns: str | Sequence[str] | None = None,
                 through_models: bool = False, reached: set[str] | None = None) -> TraceSet:
        """:meth:`forward`; with ``reached``, also collect the ids of every node the trace reached."""
        info = self._source(source)
        node = self._nodes[info["node"]]
        rows = self._rows(rows, int(info["rows"]), f"source {source!r}")
        cols = self._columns(columns, info["columns"], f"source {source!r}")
        targets = (list(info["columns"]) + [ROW]) if cols is None else cols
        start: list[Atom] = [(node.new_slot, rows, ())]
        state: dict[str, dict[str, list[Atom]]] = {node.id: {c: start for c in targets}}
        merged: dict[tuple, tuple[list, np.ndarray]] = {}  # id sets united once for all columns
        for current in self._order:
            if current.op == "source":
                continue
            produced: dict[str, list[Atom]] = {}
            for k, parent in enumerate(current.inputs):
                upstream = state.get(parent.id)
                if not upstream:
                    continue
                mapped: dict[tuple[int, str], list[Atom]] = {}
                for out_col, srcs in current.colmap.items():
                    spread = current.spread.get(out_col)
                    for kk, in_col in srcs:
                        if kk != k or in_col not in upstream or (k in current.model_inputs and not through_models):
                            continue
                        atoms = upstream[in_col]
                        key = (_atoms_key(atoms), spread["kind"] if spread else "")
                        if key not in mapped:
                            mapped[key] = (self._spread_forward(current, atoms, spread) if spread
                                           else self._forward_step(current, k, atoms))
                        if mapped[key]:
                            produced.setdefault(out_col, []).extend(mapped[key])
            if produced:
                state[current.id] = {c: _merge_atoms(a, merged) for c, a in produced.items()}
                if reached is not None:
                    reached.add(current.id)
        final = state.get(self._result.id, {})
        engine, slots = self._result_table()
        atoms, sets, set_of_column = _atom_sets(final, slots.slots)
        found = engine.evaluate_sets(_RESULT, atoms, sets) if sets else []
        cell_parts = [(found[i], col) for col, i in set_of_column.items() if col != ROW]
        if cols is None:
            rows = found[set_of_column[ROW]] if ROW in set_of_column else np.array([], dtype=np.int64)
        else:
            rows = _union_sorted([part for part, _ in cell_parts])
        return _trace_set(rows, cell_parts, self)

    def _spread_forward(self, node: Node, atoms: list[Atom], spread: Mapping[str, Any]) -> list[Atom]:
        """Output rows whose spread column a set of input rows fed: their group / window ids."""
        gids = self._matching_groups(node, atoms)
        if spread["kind"] == "window" and len(gids):
            gids = self._engine().window_ids(node.id, gids, _bound(spread["following"]), _bound(spread["preceding"]))
        return [(node.new_slot, gids, ())] if len(gids) else []

    def _matching_groups(self, node: Node, atoms: list[Atom]) -> np.ndarray:
        """Sorted group ids of group-by ``node`` whose members any of ``atoms`` matches."""
        engine, members = self._group_table(node)
        return engine.matching_groups(node.id, [_engine_atom(a, members.slots) for a in atoms])

    def _forward_step(self, node: Node, k: int, atoms: list[Atom]) -> list[Atom]:
        if node.op in ONE_TO_ONE:
            return atoms
        if node.op in APPLY_MODEL:
            if k not in node.model_inputs:
                return atoms
            # the model changed: every row it was applied to (each has at least one slot set)
            return [(s, None, ()) for s in node.slots]
        if node.op == "merge":
            inverse = {src: out for out, src in node.slot_from[k].items()}
            return [(inverse[s], ids, tuple((inverse[c], v) for c, v in conds)) for s, ids, conds in atoms]
        if node.op == "concat":
            return [(s, ids, conds + ((node.new_slot, k),)) for s, ids, conds in atoms]
        if node.op in MEMBERSHIP:
            gids = self._matching_groups(node, atoms)
            return [(node.new_slot, gids, ())] if len(gids) else []
        raise CorruptRunError(f"unknown operation {node.op!r} in run {self.run_id}")


def _bound(value: Any) -> int | None:
    """A window bound from the manifest: an int, or None (unbounded)."""
    return None if value is None else int(value)


def _atoms_key(atoms: list[Atom]) -> tuple:
    """What a list of atoms tests, with id arrays by identity (the caller keeps them alive):
    columns carrying equal atoms share one step."""
    return tuple((slot, None if ids is None else id(ids), conds) for slot, ids, conds in atoms)


def _merge_atoms(atoms: list[Atom], memo: dict[tuple, tuple[list, np.ndarray]] | None = None) -> list[Atom]:
    """Union the id sets of atoms that test the same slot under the same conditions.

    ``memo`` shares unions between calls: (id arrays by identity) -> (those arrays, union).
    """
    by_key: dict[tuple[str, tuple[tuple[str, int], ...]], list[np.ndarray | None]] = {}
    for slot, ids, conds in atoms:
        by_key.setdefault((slot, conds), []).append(ids)
    merged: list[Atom] = []
    for (slot, conds), ids_list in by_key.items():
        if any(ids is None for ids in ids_list):
            merged.append((slot, None, conds))
            continue
        distinct = list({id(ids): ids for ids in ids_list}.values())
        if len(distinct) == 1:
            merged.append((slot, distinct[0], conds))
            continue
        key = tuple(sorted(id(ids) for ids in distinct))
        if memo is None or key not in memo:
            union = (distinct, _union_sorted(distinct))  # type: ignore[arg-type]
            if memo is None:
                merged.append((slot, union[1], conds))
                continue
            memo[key] = union
        merged.append((slot, memo[key][1], conds))
    return merged


def _engine_atom(atom: Atom, slots: Sequence[str]) -> tuple[int, np.ndarray | None, list[tuple[int, int]]]:
    """An atom as the engine takes it: column positions in a table of ``slots``."""
    slot, ids, conds = atom
    return slots.index(slot), ids, [(slots.index(c), int(v)) for c, v in conds]


def _atom_sets(final: Mapping[str, list[Atom]], slots: Sequence[str]) -> tuple[list, list[list[int]], dict[str, int]]:
    """Distinct atoms (by slot, conditions and id array), distinct sets of them, and each
    column's set: the engine then evaluates each atom and each set once."""
    atoms: list = []
    atom_index: dict[tuple, int] = {}
    sets: list[list[int]] = []
    set_index: dict[tuple[int, ...], int] = {}
    set_of_column: dict[str, int] = {}
    for col, col_atoms in final.items():
        members = set()
        for atom in col_atoms:
            slot, ids, conds = atom
            key = (slot, conds, None if ids is None else id(ids))  # ``final`` keeps the arrays alive
            if key not in atom_index:
                atom_index[key] = len(atoms)
                atoms.append(_engine_atom(atom, slots))
            members.add(atom_index[key])
        ordered = tuple(sorted(members))
        if ordered not in set_index:
            set_index[ordered] = len(sets)
            sets.append(list(ordered))
        set_of_column[col] = set_index[ordered]
    return atoms, sets, set_of_column


def open(store: str | Store | None = None, run_id: str | None = None, **storage_options: Any) -> Lineage:  # noqa: A001
    """Open a committed run of a store.

    Parameters
    ----------
    store : str, path or Store, optional
        The store (default: the current one, see :func:`hippo_dask.set_store`).
    run_id : str, optional
        The run; default: the newest complete run.
    **storage_options
        fsspec options for a store given as a URL (``key=``, ``secret=``,
        ``client_kwargs={"endpoint_url": ...}`` for S3), as :func:`hippo_dask.set_store` takes them.

    Examples
    --------
    >>> import hippo_dask as hippo, pandas as pd, tempfile
    >>> store = hippo.set_store(tempfile.mkdtemp())
    >>> _ = pd.DataFrame({"x": [1, 2]}).hippo.source("xs").hippo.compute()
    >>> hippo.open(store).nrows
    2
    """
    if storage_options and (store is None or isinstance(store, Store)):
        from .errors import StoreError

        raise StoreError("open: storage options go with a store URL (hippo.open('s3://bucket/lineage', key=...)); "
                         "a Store already has its own")
    store = get_store() if store is None else (store if isinstance(store, Store) else Store(store, **storage_options))
    if run_id is None:
        complete = [r for r in store.runs() if r.complete]
        if not complete:
            from .errors import RunNotFoundError

            raise RunNotFoundError(f"no complete run in {store.url}")
        run_id = complete[-1].run_id
    return Lineage(store, run_id)
