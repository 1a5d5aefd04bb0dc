"""A picture of a run: its operator DAG, row counts, lineage bytes and a trace, as one HTML page.

:func:`write_view` draws the operators of a run (from its manifest) as an
inline SVG graph, laid out in Python: each operator sits in the column of
its longest path from a source, and an edge that skips columns runs through
a reserved slot in each column it crosses, so no edge passes over an
operator. The page is self-contained (inline CSS and SVG, no script, no
network): it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import QueryError
from .lineage import Lineage, SlotRows
from .plan import APPLY_MODEL, MEMBERSHIP, ROW, Node, nodes_from_json

__all__ = ["write_view"]

#: Operations whose output has exactly the rows of their (first) input: a count known
#: on one side is known on the other.
_KEEPS_ROWS = frozenset({"map", "assign", "select", "drop", "rename", "astype", "fillna", "replace",
                         "reset_index", "sort_values", "transform", "check", "validate"}) | APPLY_MODEL

# Geometry of the drawing, in SVG pixels.
_NODE_WIDTH, _NODE_HEIGHT = 250, 72
_SLOT_HEIGHT = 14  # the slot a long edge takes in a column it crosses
_GAP_X, _GAP_Y, _MARGIN = 90, 22, 16
_FONT_SIZE, _LINE_HEIGHT, _TEXT_PAD = 11, 15, 8
#: Characters that fit on a line of a node: monospace glyphs are 0.6 em wide in the
#: common fonts (DejaVu Sans Mono, Liberation Mono, Menlo, Courier); 0.62 leaves room.
_LINE_CHARS = int((_NODE_WIDTH - 2 * _TEXT_PAD) / (0.62 * _FONT_SIZE))

_TRACE_COLOUR = "#e8590c"

_CSS = f"""
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #212529; }}
h1 {{ font-size: 1.3em; margin: 0 0 .4em; }} h2 {{ font-size: 1.1em; margin: 1.4em 0 .4em; }}
code, .mono {{ font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }}
.facts, .trace-summary {{ margin: .2em 0; }}
.trace-summary {{ border-left: 4px solid {_TRACE_COLOUR}; padding-left: .6em; }}
.legend dt {{ font-weight: 600; margin-top: .4em; }} .legend dd {{ margin-left: 1.5em; }}
.dag-box {{ overflow: auto; border: 1px solid #dee2e6; margin: 1em 0; }}
svg.dag {{ display: block; background: #fff; }}
svg.dag text {{ font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace;
               font-size: {_FONT_SIZE}px; fill: #212529; }}
svg.dag text.head {{ font-weight: 700; }} svg.dag text.unknown {{ fill: #868e96; }}
.node rect {{ fill: #ffffff; stroke: #868e96; stroke-width: 1.5px; }}
.node.source rect {{ fill: #e7f5ff; }} .node.result rect {{ fill: #ebfbee; }}
.node.on-trace rect {{ stroke: {_TRACE_COLOUR}; stroke-width: 3.5px; }}
.edge {{ fill: none; stroke: #adb5bd; stroke-width: 1.5px; }}
.edge.model {{ stroke-dasharray: 6 4; }}
.edge.on-trace {{ stroke: {_TRACE_COLOUR}; stroke-width: 3px; }}
.swatch {{ display: inline-block; width: 1.6em; height: .9em; vertical-align: middle; margin-right: .3em;
          border: 1.5px solid #868e96; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #dee2e6; padding: .2em .5em; text-align: left; vertical-align: top; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.on-trace td:first-child {{ border-left: 4px solid {_TRACE_COLOUR}; }}
"""


def write_view(lineage: Lineage, path: str | os.PathLike[str] | None = None, *,
               rows: int | Sequence[int] | np.ndarray | None = None,
               columns: str | Sequence[str] | None = None,
               source: str | None = None,
               source_rows: int | Sequence[int] | np.ndarray | None = None) -> str:
    """Write one self-contained HTML page picturing a run, optionally with a trace across it.

    The page draws the run's operator DAG and gives, per operator, the rows
    it read and produced where the run records them, the lineage bytes it
    keeps in the store and, with a trace, how many of its rows and cells the
    trace passes through. Operators and edges on the trace are highlighted
    (SVG class ``on-trace``). Everything is inline (CSS and SVG, no script):
    the page opens offline. A legend on the page says what each number counts.

    Parameters
    ----------
    lineage : Lineage
        The run (``result.hippo.lineage`` or :func:`hippo_dask.open`).
    path : str or path-like, optional
        Where to write the page. Default: ``<run_id>.html`` in the current
        directory. An existing file is replaced.
    rows : int or sequence of int, optional
        Result row positions: draw their backward trace, from the result
        cells to the source cells they were computed from.
    columns : str or sequence of str, optional
        Result columns of that backward trace. Omitted: whole rows (as
        :meth:`Lineage.backward`).
    source : str, optional
        A source of the run: draw the forward trace of ``source_rows`` of it
        (whole rows) to the result cells they reached.
    source_rows : int or sequence of int, optional
        Row positions in ``source``.

    Returns
    -------
    str
        The path of the page written.

    Raises
    ------
    QueryError
        Both a backward (``rows`` / ``columns``) and a forward (``source`` /
        ``source_rows``) trace asked for, half of one, or rows out of range.
    ColumnError
        A column the result does not have.

    Notes
    -----
    A backward trace gives exact counts on every operator. A forward trace
    gives them on the source and the result only: hippo stores no rows of
    intermediate operators, so in between it highlights the operators the
    traced row ids pass through, and a filter on the way may have dropped
    those rows. Group-by counts read the run's membership fragments.

    Examples
    --------
    >>> import os, re, tempfile
    >>> import pandas as pd
    >>> import hippo_dask as hippo
    >>> from hippo_dask.view import write_view
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
    >>> lin = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute().hippo.lineage
    >>> path = write_view(lin, os.path.join(tempfile.mkdtemp(), "run.html"), rows=[0], columns=["total"])
    >>> page = open(path, encoding="utf-8").read()
    >>> re.findall(r'data-op="(\\w+)" data-traced-rows="(\\d+)"', page)  # group "a" is rows 0 and 2 of df
    [('source', '2'), ('groupby', '1')]
    """
    if not isinstance(lineage, Lineage):
        raise TypeError(f"write_view: pass a hippo_dask Lineage (result.hippo.lineage or hippo.open(...)), "
                        f"got {type(lineage).__name__}")
    backward = rows is not None or columns is not None
    forward = source is not None or source_rows is not None
    if backward and forward:
        raise QueryError("write_view: pass rows=/columns= (a backward trace of result cells) or source=/source_rows= "
                         "(a forward trace of source rows), not both")
    if columns is not None and rows is None:
        raise QueryError("write_view: columns= names the result columns of a backward trace; pass rows= too "
                         "(the result rows to trace)")
    if forward and (source is None or source_rows is None):
        raise QueryError("write_view: a forward trace needs both source= (a source name) and source_rows= "
                         "(row positions in it)")

    manifest = lineage.manifest
    nodes = nodes_from_json(manifest["nodes"])
    order = [nodes[record["id"]] for record in manifest["nodes"]]  # inputs before consumers
    result_id = manifest["result"]["node"]

    if backward:
        trace = _backward_trace(lineage, order, rows, columns)
    elif forward:
        trace = _forward_trace(lineage, order, source, source_rows)
    else:
        trace = None
    counts = _row_counts(lineage, order, result_id)
    stored, total_bytes = _stored_bytes(lineage)
    page = _page(lineage, order, result_id, counts, stored, total_bytes, trace)

    if path is None:
        path = f"{lineage.run_id}.html"
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as out:
        out.write(page)
    return path


# ---------------------------------------------------------------------- what each operator shows
@dataclass
class _Trace:
    """A trace as the picture shows it. Counts are None where the run does not record them."""

    kind: str  # "backward" or "forward"
    summary: str  # one plain-text sentence
    node_rows: dict[str, int | None] = field(default_factory=dict)  # node id -> traced rows (only nodes reached)
    node_cells: dict[str, int | None] = field(default_factory=dict)
    node_columns: dict[str, list[str]] = field(default_factory=dict)
    edges: dict[tuple[str, str, int], int | None] = field(default_factory=dict)  # (parent, child, input) -> rows

    def on(self, node_id: str) -> bool:
        """Whether the trace passes through ``node_id`` (reached, with rows or a count not recorded)."""
        if node_id not in self.node_rows:
            return False
        count = self.node_rows[node_id]
        return count is None or count > 0


def _distinct_rows(sets: Iterable[SlotRows]) -> int:
    """Rows in the union of slot-tuple sets of one node (sets shared by several columns counted once)."""
    distinct = list({id(s): s for s in sets if len(s)}.values())
    if not distinct:
        return 0
    union = distinct[0]
    for other in distinct[1:]:
        union = union.union(other)
    return len(union)


def _backward_trace(lineage: Lineage, order: list[Node], rows: Any, columns: Any) -> _Trace:
    """Every operator's traced rows, cells and columns, and the rows each edge passed, of a backward trace."""
    kept: dict[str, dict[str, SlotRows]] = {}
    found = lineage._backward(rows, columns, keep=kept)  # validates rows and columns as backward() does
    trace = _Trace("backward", "")
    for node in order:
        traced = kept.get(node.id)
        if traced is None:
            continue
        trace.node_rows[node.id] = _distinct_rows(traced.values())
        cells = {c: len(t) for c, t in traced.items() if c != ROW and len(t)}
        trace.node_cells[node.id] = sum(cells.values())
        trace.node_columns[node.id] = list(cells)
        # The rows each edge passed: the same steps the query took (one per distinct
        # (rows, input, spread kind), as there), recomputed from this node's traced rows.
        passed: dict[int, list[SlotRows]] = {}
        steps: dict[tuple[int, int, str], SlotRows] = {}
        for column, tuples in traced.items():
            if node.op == "source" or not len(tuples):
                continue
            spread = node.spread.get(column)
            for k, _ in node.colmap.get(column, ()):
                if k in node.model_inputs:  # the view traces without through_models, as backward() does
                    continue
                key = (id(tuples), k, spread["kind"] if spread else "")
                if key not in steps:
                    steps[key] = (lineage._spread_backward(node, tuples, spread) if spread
                                  else lineage._backward_step(node, k, tuples))
                passed.setdefault(k, []).append(steps[key])
        for k, parts in passed.items():
            count = _distinct_rows(parts)
            if count:
                trace.edges[(node.inputs[k].id, node.id, k)] = count
    asked = np.unique(np.atleast_1d(np.asarray(rows)))
    if columns is None:
        cols = "whole rows"
    else:
        names = [columns] if isinstance(columns, str) else [str(c) for c in columns]
        cols = ("column " if len(names) == 1 else "columns ") + ", ".join(names)
    reached = [f"{name}: {_count(len(s.rows), 'row')}, {_count(s.n_cells, 'cell')}" for name, s in found.items()]
    trace.summary = (f"Backward trace of result {_count(len(asked), 'row')} {_positions(asked)} ({cols}), "
                     f"computed from: " + "; ".join(reached) + ".")
    return trace


def _forward_trace(lineage: Lineage, order: list[Node], source: str, source_rows: Any) -> _Trace:
    """A forward trace: exact counts at the source and the result, the operators reached in between."""
    reached: set[str] = set()
    hits = lineage._forward(source, source_rows, None, reached=reached)  # validates as forward() does
    info = lineage.manifest["sources"][source]
    source_id, result_id = info["node"], lineage.manifest["result"]["node"]
    asked = np.unique(np.atleast_1d(np.asarray(source_rows)))
    trace = _Trace("forward", "")
    for node in order:
        if node.id in reached:
            trace.node_rows[node.id] = trace.node_cells[node.id] = None
    trace.node_rows[source_id] = len(asked)
    trace.node_cells[source_id] = len(asked) * len(info["columns"])
    trace.node_columns[source_id] = list(info["columns"])
    trace.node_rows[result_id] = len(hits.rows)
    trace.node_cells[result_id] = hits.n_cells
    trace.node_columns[result_id] = [c for c in lineage.columns if len(hits._by_column.get(c, ()))]
    for node in order:
        for k, parent in enumerate(node.inputs):
            if k not in node.model_inputs and node.id in reached and trace.on(node.id) and trace.on(parent.id):
                trace.edges[(parent.id, node.id, k)] = None
    trace.summary = (f"Forward trace of source {source!r} {_count(len(asked), 'row')} {_positions(asked)} (whole rows): "
                     f"reaches {_count(len(hits.rows), 'result row')} {_positions(hits.rows)}, "
                     f"{_count(hits.n_cells, 'result cell')}.")
    return trace


def _row_counts(lineage: Lineage, order: list[Node], result_id: str) -> dict[str, tuple[list[int | None], int | None]]:
    """Per node id: rows in (per data input) and rows out, None where the run does not record them.

    Recorded: the rows of every source and of the result, a mask filter's rows
    and kept rows, a group-by's (or fit's) groups and members (from its
    membership fragments). Counts then carry through operators that keep every
    row, both ways.
    """
    out: dict[str, int | None] = {node.id: None for node in order}
    grouped: dict[str, int] = {}  # group-by / fit id -> distinct member rows
    for info in lineage.manifest["sources"].values():
        out[info["node"]] = int(info["rows"])
    out[result_id] = int(lineage.manifest["result"]["rows"])
    group_fragments = lineage.manifest.get("group_fragments") or {}
    for node in order:
        if node.op == "filter" and isinstance(node.params.get("predicate"), Mapping) and node.params["predicate"].get("mask"):
            out[node.inputs[0].id] = int(node.params["predicate"]["rows"])
            out[node.id] = int(node.params["predicate"]["kept"])
        if node.op in MEMBERSHIP and node.id in group_fragments:
            members, group_ids = lineage.members(node)
            grouped[node.id] = len(members.unique())
            out[node.id] = len(np.unique(group_ids))
            if node.op == "groupby" and node.params.get("dropna") is False:
                out[node.inputs[0].id] = grouped[node.id]  # every row is in a group, missing keys too
    changed = True
    while changed:  # carry counts through row-keeping operators, downstream and upstream
        changed = False
        for node in order:
            if node.op not in _KEEPS_ROWS:
                continue
            parent = node.inputs[0].id
            if out[node.id] is None and out[parent] is not None:
                out[node.id], changed = out[parent], True
            elif out[parent] is None and out[node.id] is not None:
                out[parent], changed = out[node.id], True
    counts = {}
    for node in order:
        if node.id in grouped:
            ins: list[int | None] = [grouped[node.id]]
        else:
            ins = [out[p.id] for k, p in enumerate(node.inputs) if k not in node.model_inputs]
        counts[node.id] = (ins, out[node.id])
    return counts


def _stored_bytes(lineage: Lineage) -> tuple[dict[str, list[tuple[str, int]]], int]:
    """Per node id, what it stores ((kind, bytes) pairs), and the run's total with the manifest."""
    table = lineage.storage()
    stored: dict[str, list[tuple[str, int]]] = {}
    total = 0
    for row in table.itertuples(index=False):
        if row.op == "total":
            total = int(row.bytes)
            continue
        kind = "result row ids" if row.op == "result" else {"groupby": "group membership", "fit": "training rows",
                                                             "check": "failing rows", "validate": "failure cases"
                                                             }.get(row.op, row.op)
        stored.setdefault(row.node, []).append((kind, int(row.bytes)))
    return stored, total


def _describe(node: Node) -> str:
    """A few words on what the operation did (its parameters), for the node's first line."""
    p, op = node.params, node.op

    def names(values: Any) -> str:
        return ", ".join(map(str, values or []))

    if op == "source":
        return str(p.get("name", ""))
    if op == "merge":
        left, right = p.get("left_on") or [], p.get("right_on") or []
        keys = names(left) if left == right else ", ".join(f"{a}={b}" for a, b in zip(left, right))
        return f"{p.get('how', '')} on {keys}"
    if op in ("groupby", "transform"):
        return f"by {names(p.get('keys'))}: {names(p.get('aggregations'))}"
    if op == "assign":
        return str(p.get("column", ""))
    if op in ("map", "flatmap"):
        return f"writes {names(p.get('writes'))}" if p.get("writes") else ""
    if op == "filter":
        predicate = p.get("predicate")
        if isinstance(predicate, Mapping) and predicate.get("mask"):
            return "by a mask"
        return f"reads {names(p.get('reads'))}" if p.get("reads") else ""
    if op in ("select", "drop"):
        return names(p.get("columns"))
    if op == "rename":
        return ", ".join(f"{a}->{b}" for a, b in dict(p.get("columns") or {}).items())
    if op == "sort_values":
        return f"by {names(p.get('by'))}"
    if op in ("dropna", "drop_duplicates"):
        return f"subset {names(p.get('subset'))}" if p.get("subset") else ""
    if op in ("check", "validate"):
        return str(p.get("name", ""))
    if op == "explode":
        return names(p.get("column"))
    if op == "head":
        return str(p.get("n", ""))
    if op == "split":
        return str(p.get("side", ""))
    if op == "fit":
        estimator = p.get("estimator")
        return str(estimator.get("class", "")).rsplit(".", 1)[-1] if isinstance(estimator, Mapping) else ""
    if op == "predict":
        return names(p.get("out"))
    if op == "concat":
        return f"{len(node.inputs)} frames"
    return ""


# ---------------------------------------------------------------------- layout
@dataclass
class _Layout:
    """Where everything goes: node boxes (x, y of the top-left corner), edge paths, canvas size."""

    boxes: dict[str, tuple[float, float]]
    paths: dict[tuple[str, str, int], str]
    width: float
    height: float


def _layout(order: list[Node]) -> _Layout:
    """Longest-path layers left to right; edges that skip layers take a slot in each layer they cross."""
    layer: dict[str, int] = {}
    for node in order:
        layer[node.id] = 1 + max((layer[p.id] for p in node.inputs), default=-1)
    n_layers = 1 + max(layer.values(), default=0)

    # Items of each layer: node ids, and (edge, layer) slots for edges crossing it. Each
    # item knows what feeds it (items of the layer before) and what it feeds (items of
    # the layer after, with the height of the port it enters: input k of n enters at (k+1)/(n+1)).
    items: list[list[Any]] = [[] for _ in range(n_layers)]
    before: dict[Any, list[Any]] = {}
    after: dict[Any, list[tuple[Any, float]]] = {}
    chains: dict[tuple[str, str, int], list[Any]] = {}
    for node in order:
        items[layer[node.id]].append(node.id)
    for node in order:
        for k, parent in enumerate(node.inputs):
            edge = (parent.id, node.id, k)
            chain: list[Any] = [parent.id]
            for crossed in range(layer[parent.id] + 1, layer[node.id]):
                items[crossed].append((edge, crossed))
                chain.append((edge, crossed))
            chain.append(node.id)
            for i, (feeding, fed) in enumerate(zip(chain, chain[1:])):
                before.setdefault(fed, []).append(feeding)
                port = (k + 1) / (len(node.inputs) + 1) if i == len(chain) - 2 else 0.5
                after.setdefault(feeding, []).append((fed, port))
            chains[edge] = chain

    # Order each layer by the mean position of its neighbours (the barycentre heuristic):
    # a sweep from the sources, one back from the result, one more forward. Fewer edges
    # cross, and a merge's inputs arrive in the order of its ports. Ties keep the order.
    position = {item: i for layer_items in items for i, item in enumerate(layer_items)}

    def arrange(layer_items: list[Any], key: Any) -> None:
        layer_items.sort(key=lambda it: (key(it), position[it]))
        position.update({item: i for i, item in enumerate(layer_items)})

    def from_before(item: Any) -> float:
        return float(np.mean([position[b] for b in before[item]])) if item in before else position[item]

    def from_after(item: Any) -> float:
        return float(np.mean([position[a] + port for a, port in after[item]])) if item in after else position[item]

    for layer_items in items[1:]:
        arrange(layer_items, from_before)
    for layer_items in reversed(items[:-1]):
        arrange(layer_items, from_after)
    for layer_items in items[1:]:
        arrange(layer_items, from_before)

    def height(item: Any) -> int:
        return _SLOT_HEIGHT if isinstance(item, tuple) else _NODE_HEIGHT

    column_heights = [sum(height(it) for it in its) + _GAP_Y * (len(its) - 1) for its in items]
    tallest = max(column_heights, default=0)
    boxes: dict[str, tuple[float, float]] = {}
    slots: dict[Any, tuple[float, float]] = {}  # slot -> (x, y of its centre line)
    for index, layer_items in enumerate(items):
        x = _MARGIN + index * (_NODE_WIDTH + _GAP_X)
        y = _MARGIN + (tallest - column_heights[index]) / 2  # centre each column
        for item in layer_items:
            if isinstance(item, tuple):
                slots[item] = (x, y + _SLOT_HEIGHT / 2)
            else:
                boxes[item] = (x, y)
            y += height(item) + _GAP_Y

    by_id = {node.id: node for node in order}
    paths = {}
    for (parent, child, k), chain in chains.items():
        px, py = boxes[parent]
        points = [(px + _NODE_WIDTH, py + _NODE_HEIGHT / 2)]
        for slot in chain[1:-1]:
            sx, sy = slots[slot]
            points += [(sx, sy), (sx + _NODE_WIDTH, sy)]
        cx, cy = boxes[child]
        ports = len(by_id[child].inputs)  # each input enters at its own height, in input order
        points.append((cx, cy + _NODE_HEIGHT * (k + 1) / (ports + 1)))
        # curves between layers (horizontal tangents), straight through crossed layers
        parts = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
        for i in range(0, len(points) - 1, 2):
            (x1, y1), (x2, y2) = points[i], points[i + 1]
            mid = (x1 + x2) / 2
            parts.append(f"C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
            if i + 2 < len(points):
                parts.append(f"L{points[i + 2][0]:.1f},{points[i + 2][1]:.1f}")
        paths[(parent, child, k)] = " ".join(parts)
    width = 2 * _MARGIN + n_layers * _NODE_WIDTH + (n_layers - 1) * _GAP_X
    return _Layout(boxes, paths, width, tallest + 2 * _MARGIN)


# ---------------------------------------------------------------------- rendering
def _e(value: Any) -> str:
    """``value`` as text safe inside HTML and attribute values."""
    return html.escape(str(value), quote=True)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _positions(values: np.ndarray, shown: int = 10) -> str:
    values = [int(v) for v in values]
    return "[" + ", ".join(map(str, values[:shown])) + (", ..." if len(values) > shown else "") + "]"


def _number(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"


def _fit(text: str, limit: int = _LINE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (the full text is in the node's tooltip and the table)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass
class _Shown:
    """What one operator shows, in words and numbers."""

    node: Node
    classes: list[str]
    rows_in: list[int | None]  # per data input; a group-by's: the rows it grouped
    rows_out: int | None
    stored: list[tuple[str, int]]  # (what, bytes) it keeps in the store
    traced: tuple[int | None, int | None] | None = None  # (rows, cells); None: no trace drawn; counts None: not recorded
    traced_columns: list[str] = field(default_factory=list)

    @property
    def head(self) -> str:
        return f"{self.node.op} {_describe(self.node)}".strip()

    @property
    def lineage_bytes(self) -> int:
        return sum(size for _, size in self.stored)

    def lines(self) -> list[tuple[str, str]]:
        """The box's text lines, each with its CSS class."""
        if self.node.inputs:
            rows = f"rows in {' + '.join(map(_number, self.rows_in))} -> out {_number(self.rows_out)}"
        else:
            rows = f"rows {_number(self.rows_out)}"
        lines = [("head", self.head), ("unknown" if self.rows_out is None else "", rows),
                 ("", f"lineage {_size(self.lineage_bytes)}")]
        if self.traced is not None and self.traced != (0, 0):
            traced_rows, traced_cells = self.traced
            lines.append(("", "trace: reached, rows not recorded" if traced_rows is None
                          else f"trace {_count(traced_rows, 'row')}, {_count(traced_cells or 0, 'cell')}"))
        return lines

    def data_attributes(self) -> str:
        """The numbers as data attributes (a test or a script reads what is drawn from them)."""
        attributes = {"data-node-id": self.node.id, "data-op": self.node.op}
        if self.traced is not None:
            attributes["data-traced-rows"] = _exact(self.traced[0])
            attributes["data-traced-cells"] = _exact(self.traced[1])
        attributes["data-rows-in"] = ",".join("?" if n is None else str(n) for n in self.rows_in)
        attributes["data-rows-out"] = "?" if self.rows_out is None else str(self.rows_out)
        attributes["data-lineage-bytes"] = str(self.lineage_bytes)
        return " ".join(f'{name}="{_e(value)}"' for name, value in attributes.items())

    def tooltip(self) -> str:
        lines = [text for _, text in self.lines()]
        lines[1:1] = [f"node {self.node.id}", f"columns: {', '.join(self.node.columns)}"]
        lines += [f"stores {what}: {size:,} bytes" for what, size in self.stored]
        if self.traced_columns:
            lines.append(f"traced columns: {', '.join(self.traced_columns)}")
        lines.append("params: " + _fit(json.dumps(self.node.params, default=str), 600))
        return "\n".join(lines)

    def svg(self, x: float, y: float) -> str:
        texts = "".join(
            f'<text class="{css}" x="{x + _TEXT_PAD:.1f}" y="{y + _TEXT_PAD + (i + 0.75) * _LINE_HEIGHT:.1f}">'
            f"{_e(_fit(text))}</text>"
            for i, (css, text) in enumerate(self.lines()))
        return (f'<g class="{" ".join(self.classes)}" {self.data_attributes()}><title>{_e(self.tooltip())}</title>'
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{_NODE_WIDTH}" height="{_NODE_HEIGHT}" rx="6"/>{texts}</g>')

    def table_row(self) -> str:
        cells = [_e(self.node.op), _e(_describe(self.node)), _e(self.node.id),
                 _e(", ".join(p.id for p in self.node.inputs)), " + ".join(map(_number, self.rows_in)),
                 _number(self.rows_out), f"{self.lineage_bytes:,}", _e("; ".join(what for what, _ in self.stored))]
        kinds = ["", "", "mono", "mono", "n", "n", "n", ""]
        if self.traced is not None:
            cells += [_exact(self.traced[0]), _exact(self.traced[1]), _e(", ".join(self.traced_columns))]
            kinds += ["n", "n", ""]
        row = "".join(f'<td class="{kind}">{cell}</td>' for kind, cell in zip(kinds, cells))
        return f'<tr class="on-trace">{row}</tr>' if "on-trace" in self.classes else f"<tr>{row}</tr>"


def _exact(count: int | None) -> str:
    return "unknown" if count is None else str(count)


def _edge_svg(parent: Node, node: Node, k: int, path: str, trace: _Trace | None) -> str:
    edge = (parent.id, node.id, k)
    classes = ["edge"] + (["model"] if k in node.model_inputs else [])
    attributes, tooltip = "", f"{parent.op} -> {node.op} (input {k})"
    if trace is not None and edge in trace.edges:
        classes.append("on-trace")
        passed = trace.edges[edge]
        attributes = f' data-traced-rows="{_exact(passed)}"'
        tooltip += (": on the trace" if passed is None
                    else f": the trace passed {_count(passed, 'row')} of the input along it")
    marker = "arrow-trace" if "on-trace" in classes else "arrow"
    return (f'<path class="{" ".join(classes)}" data-from="{_e(parent.id)}" data-to="{_e(node.id)}" data-input="{k}"'
            f'{attributes} d="{path}" marker-end="url(#{marker})"><title>{_e(tooltip)}</title></path>')


def _page(lineage: Lineage, order: list[Node], result_id: str, counts: Mapping[str, tuple[list[int | None], int | None]],
          stored: Mapping[str, list[tuple[str, int]]], total_bytes: int, trace: _Trace | None) -> str:
    manifest = lineage.manifest
    source_ids = {info["node"] for info in manifest["sources"].values()}
    shown = []
    for node in order:
        classes = ["node"] + (["source"] if node.id in source_ids else []) + (["result"] if node.id == result_id else [])
        box = _Shown(node, classes, *counts[node.id], stored.get(node.id, []))
        if trace is not None:
            box.traced = (trace.node_rows.get(node.id, 0), trace.node_cells.get(node.id, 0))
            box.traced_columns = trace.node_columns.get(node.id, [])
            if trace.on(node.id):
                classes.append("on-trace")
        shown.append(box)

    layout = _layout(order)
    svg = [f'<svg class="dag" width="{layout.width:.0f}" height="{layout.height:.0f}" '
           f'viewBox="0 0 {layout.width:.0f} {layout.height:.0f}" role="img" aria-label="operator graph">',
           '<defs>'
           '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#adb5bd"/></marker>'
           '<marker id="arrow-trace" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="5" markerHeight="5" '
           f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{_TRACE_COLOUR}"/></marker></defs>']
    # edges first: the boxes are drawn over their ends
    svg += [_edge_svg(parent, node, k, layout.paths[(parent.id, node.id, k)], trace)
            for node in order for k, parent in enumerate(node.inputs)]
    svg += [box.svg(*layout.boxes[box.node.id]) for box in shown]
    svg.append("</svg>")

    created = manifest.get("created")
    when = (datetime.datetime.fromtimestamp(float(created), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            if isinstance(created, (int, float)) else "unknown")
    sources = ", ".join(f"{_e(name)} ({int(info['rows']):,} rows)" for name, info in manifest["sources"].items())
    facts = (f"Created {when}. Sources: {sources}. Result: {lineage.nrows:,} rows &times; {len(lineage.columns)} "
             f"columns. Lineage stored: {total_bytes:,} bytes ({_size(total_bytes)}), fragments and manifest.")
    summary = "No trace: the operators of the run only." if trace is None else trace.summary
    header = ["operation", "parameters", "node", "inputs", "rows in", "rows out", "lineage bytes", "stored"]
    if trace is not None:
        header += ["traced rows", "traced cells", "traced columns"]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hippo_dask run {_e(lineage.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>hippo_dask run <code>{_e(lineage.run_id)}</code></h1>",
        f'<p class="facts">{facts}</p>',
        f'<p class="trace-summary">{_e(summary)}</p>',
        '<div class="dag-box">', *svg, "</div>",
        _legend(trace),
        "<h2>Operators</h2>",
        "<table><tr>" + "".join(f"<th>{name}</th>" for name in header) + "</tr>",
        *(box.table_row() for box in shown),
        "</table>",
        "</body></html>",
        "",
    ])


def _legend(trace: _Trace | None) -> str:
    items = [
        ("The graph", "Each box is one operation of the run, drawn left of the operations that read its output; "
                      "an arrow enters the box at the height of its input (the top one is the first input: a "
                      "merge's left side). A dashed arrow is a fitted model applied to the frame. "
                      '<span class="swatch" style="background:#e7f5ff"></span>source, '
                      '<span class="swatch" style="background:#ebfbee"></span>result (the last operation).'),
        ("rows in -> out", "Rows the operation read from each input (joined by +) and rows it produced. For a "
                           "group-by, <em>in</em> is the rows it put in a group (with dropna, rows whose key is "
                           "missing are in none) and <em>out</em> its groups; for a fit, the rows it was fitted "
                           "on and 1, the model. ? where the run does not record the count: hippo stores the rows "
                           "of sources, group-bys and the result only, and counts carry through operations that "
                           "keep every row (assign, select, sort, ...), not through a filter or a merge."),
        ("lineage", "Bytes of lineage this operation keeps in the store: a group-by's membership (each input row "
                    "and its group), a fit's training rows, a check's failing rows, and for the last operation the "
                    "row ids of every result row. Other operations keep none: their rows carry their inputs' row "
                    "ids, and their column mapping is in the run's manifest (counted in the total above)."),
    ]
    if trace is not None and trace.kind == "backward":
        items.append(("trace", f'<span class="swatch" style="border:3px solid {_TRACE_COLOUR}"></span>'
                               "Operations and edges the backward trace passes through. <em>rows</em>: rows of "
                               "the operation's output the traced result cells were computed from (counted by row "
                               "ids: the rows an explode or flatmap made from one row count once); <em>cells</em>: "
                               "those rows' cells in the columns traced, summed over columns (a column traced on "
                               "fewer rows adds fewer cells). An edge's tooltip gives the rows of its input the "
                               "trace passed along it."))
    elif trace is not None:
        items.append(("trace", f'<span class="swatch" style="border:3px solid {_TRACE_COLOUR}"></span>'
                               "Operations and edges the forward trace passes through. At the source: the rows "
                               "given, and their cells (whole rows). At the result: the rows and cells the source "
                               "rows reached. In between, hippo stores no rows, so an operation is highlighted "
                               "when the traced row ids pass through it (<em>rows not recorded</em>): a filter or "
                               "an inner merge there may already have dropped them, and the result count is the "
                               "one that counts."))
    body = "".join(f"<dt>{_e(term)}</dt><dd>{text}</dd>" for term, text in items)  # texts: markup of this module
    return f'<h2>Legend</h2><dl class="legend">{body}</dl>'
