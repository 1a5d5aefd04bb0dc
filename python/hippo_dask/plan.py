"""The operator DAG: what every captured operation did, independent of the data.

A :class:`Node` is one operation. It records

* its **column mapping** (``colmap``): for each output column, the input
  columns its values were computed from. This is static per operator, so it
  is stored once per run, in the manifest (Hippo's *metadata separation*);
* its **slots**: the hidden int64 id columns that ride with its rows. A slot
  is created by a source (row positions), a group-by (group ids) or a concat
  (which input a row came from) and copied unchanged by every other
  operation. A row of any node is identified by the values of its slots, so
  one-to-one operations (map, filter, sort, ...) store no row mapping at all;
* ``ROW``: a pseudo column for *row* lineage ("why does this row exist"),
  mapped like a column through every operator.

Node ids are deterministic tokens of (operation, parameters, raw arguments,
input ids), with user functions identified by their code, closure, defaults
and the globals they read (:mod:`hippo_dask.identity`), so two calls are one
node only when they compute the same thing, like Dask merges identical
expressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

#: Pseudo column carrying row lineage through the column mappings.
ROW = "\x00row"
#: Prefix of the hidden slot columns that ride with the data.
HIDDEN_PREFIX = "__hippo_"
#: Value of a slot on a row that has no such lineage (outer merge, concat).
MISSING = -1

#: Operations whose rows keep the slots of their single input unchanged.
ONE_TO_ONE = frozenset(
    {
        "map", "assign", "filter", "select", "drop", "rename", "astype", "dropna",
        "fillna", "replace", "explode", "flatmap", "sort_values", "drop_duplicates",
        "sample", "head", "transform", "split", "check", "validate", "reset_index",
    }
)
#: One-to-one operations that record the rows failing a rule (as fragments of their node).
CHECKS = frozenset({"check", "validate"})
#: Operations that apply a fitted model: one-to-one on input 0, a model dependency on the rest.
APPLY_MODEL = frozenset({"ml_transform", "predict"})
#: Operations whose rows are groups of input rows, listed in membership fragments
#: (a fit is one group: the model, whose members are its training rows).
MEMBERSHIP = frozenset({"groupby", "fit"})

ColumnSources = tuple[tuple[int, str], ...]


def hidden(slot: str) -> str:
    """Name of the hidden column that carries ``slot``."""
    return HIDDEN_PREFIX + slot


from .identity import token  # noqa: E402  (re-exported: one way to name nodes)


@dataclass(frozen=True, eq=False)
class Node:
    """One captured operation in the lineage DAG.

    Attributes
    ----------
    id : str
        Deterministic token of the operation and its inputs.
    op : str
        Operation name (``"source"``, ``"merge"``, ``"groupby"``, ...).
    inputs : tuple of Node
        The nodes this operation read.
    columns : tuple of str
        User-visible output columns, in order.
    colmap : mapping of str to tuple of (int, str)
        Output column (or ``ROW``) -> (input index, input column) it came from.
    slots : tuple of str
        Slots (hidden id columns) carried by the output rows.
    slot_from : tuple of mapping
        Per input: output slot -> the input slot it copies.
    new_slot : str or None
        The slot this node creates (source, groupby, concat).
    slot_origin : mapping of str to str
        Output slot -> id of the node that created its values.
    params : mapping
        JSON-able parameters, enough to describe (and replay) the operation.
    model_inputs : tuple of int
        Inputs that are fitted models (``transform`` / ``predict``): their
        edges in ``colmap`` are model dependencies, followed only by queries
        with ``through_models=True``.
    spread : mapping of str to mapping
        Output columns whose cells come from *other* rows of the input too:
        column -> ``{"kind": "group"}`` (every row sharing the row's ``new_slot``
        id: a partition for ``lin.All``, a key group for ``groupby().transform``)
        or ``{"kind": "window", "preceding": p, "following": f}`` (rows whose
        ``new_slot`` id is within that range of the row's). Rows themselves map
        one to one.
    """

    id: str
    op: str
    inputs: tuple["Node", ...]
    columns: tuple[str, ...]
    colmap: Mapping[str, ColumnSources]
    slots: tuple[str, ...]
    slot_from: tuple[Mapping[str, str], ...]
    new_slot: str | None = None
    slot_origin: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    spread: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_inputs: tuple[int, ...] = ()
    #: The raw arguments a replay needs that JSON cannot hold (user functions,
    #: values): pickled into the store by compute(), never part of the id.
    code: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def hidden_columns(self) -> list[str]:
        return [hidden(s) for s in self.slots]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "inputs": [n.id for n in self.inputs],
            "columns": list(self.columns),
            "colmap": {c: [list(s) for s in src] for c, src in self.colmap.items()},
            "slots": list(self.slots),
            "slot_from": [dict(m) for m in self.slot_from],
            "new_slot": self.new_slot,
            "slot_origin": dict(self.slot_origin),
            "params": dict(self.params),
            "spread": {c: dict(v) for c, v in self.spread.items()},
            "model_inputs": list(self.model_inputs),
        }


def ancestors(node: Node) -> list[Node]:
    """``node`` and everything it depends on, inputs before consumers."""
    order: list[Node] = []
    seen: set[str] = set()
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, expanded = stack.pop()
        if expanded:
            order.append(current)
            continue
        if current.id in seen:
            continue
        seen.add(current.id)
        stack.append((current, True))
        for parent in reversed(current.inputs):
            if parent.id not in seen:
                stack.append((parent, False))
    return order


def nodes_from_json(records: Iterable[Mapping[str, Any]]) -> dict[str, Node]:
    """Rebuild the DAG written by :meth:`Node.to_json` (inputs listed first)."""
    nodes: dict[str, Node] = {}
    for r in records:
        nodes[r["id"]] = Node(
            id=r["id"],
            op=r["op"],
            inputs=tuple(nodes[i] for i in r["inputs"]),
            columns=tuple(r["columns"]),
            colmap={c: tuple((int(k), str(col)) for k, col in src) for c, src in r["colmap"].items()},
            slots=tuple(r["slots"]),
            slot_from=tuple(dict(m) for m in r["slot_from"]),
            new_slot=r["new_slot"],
            slot_origin=dict(r["slot_origin"]),
            params=r["params"],
            spread={c: dict(v) for c, v in r.get("spread", {}).items()},
            model_inputs=tuple(int(k) for k in r.get("model_inputs", ())),
        )
    return nodes


def unary(
    op: str,
    parent: Node,
    columns: Iterable[str],
    colmap: Mapping[str, Iterable[str]],
    params: Mapping[str, Any],
    key: Any = None,
    node_id: str | None = None,
    spread: Mapping[str, Mapping[str, Any]] | None = None,
    code: Mapping[str, Any] | None = None,
) -> Node:
    """A node whose rows keep their parent's slots (``op`` in ``ONE_TO_ONE``).

    ``colmap`` maps each output column to the parent columns it was computed
    from; row lineage is the parent's row. The node id covers ``op``, the
    parent, ``params`` and ``key`` (the raw arguments: functions, values), so
    two nodes are one only when they compute the same thing. A node with
    ``spread`` columns adds one slot, named after its id (see :class:`Node`).
    """
    assert op in ONE_TO_ONE, op
    full = {c: tuple((0, s) for s in srcs) for c, srcs in colmap.items()}
    full[ROW] = ((0, ROW),)
    identity = node_id or token(op, parent.id, params, key)
    slots, origin, new_slot = parent.slots, dict(parent.slot_origin), None
    if spread:
        new_slot = spread_slot(identity)
        slots = parent.slots + (new_slot,)
        origin[new_slot] = identity
    return Node(
        id=identity,
        op=op,
        inputs=(parent,),
        columns=tuple(columns),
        colmap=full,
        slots=slots,
        slot_from=({s: s for s in parent.slots},),
        new_slot=new_slot,
        slot_origin=origin,
        params=dict(params),
        spread=dict(spread or {}),
        code=code,
    )


def spread_slot(node_id: str) -> str:
    """Name of the slot a node with spread columns adds (group / window ids)."""
    return "w" + node_id[:10]


def identity_colmap(columns: Iterable[str]) -> dict[str, list[str]]:
    """Column map of an operation that keeps every column as it is."""
    return {c: [c] for c in columns}


def row_reads(node: Node) -> list[tuple[int, str]]:
    """(input, column) pairs an operation reads to decide which rows it keeps, makes or orders."""
    p, every = node.params, list(node.inputs[0].columns) if node.inputs else []
    if node.op in ("filter", "flatmap"):
        return [(0, c) for c in (p.get("reads") if p.get("reads") is not None else every)]
    if node.op in ("dropna", "drop_duplicates"):
        return [(0, c) for c in p.get("subset") or every]
    if node.op == "sort_values":
        return [(0, c) for c in p["by"]]
    if node.op == "split":
        return [(0, c) for c in p["by"]]
    if node.op == "explode":
        return [(0, c) for c in p["column"]]
    if node.op in ("groupby", "transform"):
        return [(0, c) for c in p["keys"]]
    if node.op == "merge":
        return [(0, c) for c in p["left_on"]] + [(1, c) for c in p["right_on"]]
    if node.op in ("map", "assign") and node.spread:
        return [(0, c) for c in every]
    return []


def run_reads(node: Node) -> list[tuple[int, str]]:
    """(input, column) pairs an operation needs present to *run*, beyond the sources of the columns it outputs.

    A user function reads its ``reads`` even when nothing downstream uses what it
    writes, and every column when its reads are unknown; a map whose output lacks
    some of its input's columns picks columns by name, so it keeps them all; a
    pandera schema may check any column; ``astype`` / ``fillna`` / ``replace``
    name columns in their arguments; a merge keeps both sides of a clashing column
    (the suffixes pandas gives depend on both being there); a fitted model reads
    its feature columns; a group-by's ``size`` names a column (pandas wants it
    there, though no value of it is read).
    """
    p = node.params
    every = [(0, c) for c in node.inputs[0].columns] if node.inputs else []
    if node.op == "map":
        if p.get("reads") is None or not set(node.inputs[0].columns) <= set(node.columns):
            return every
        return [(0, c) for c in p["reads"]]
    if node.op in ("assign", "check"):
        if "func" not in p and node.op == "assign":
            return []  # a value
        return every if p.get("reads") is None else [(0, c) for c in p["reads"]]
    if node.op == "validate":
        return every
    if node.op in ("astype", "fillna", "replace"):
        if node.code is None:
            return every
        arguments = list(node.code.get("args", ())) + list(dict(node.code.get("kwargs", {})).values())
        named = {k for a in arguments if isinstance(a, Mapping) for k in a}
        return [(0, c) for c in node.inputs[0].columns if c in named]
    if node.op in APPLY_MODEL:
        return [(0, c) for c in p["X"]]
    if node.op in ("groupby", "transform"):  # a size names a column it does not read, and pandas wants it there
        return [(0, spec[0]) for spec in p["aggregations"].values()]
    if node.op == "merge":
        left, right = node.inputs[0].columns, node.inputs[1].columns
        keys = {lk for lk, rk in zip(p["left_on"], p["right_on"]) if lk == rk}
        clash = [c for c in left if c in right and c not in keys]
        return [(k, c) for c in clash for k in (0, 1)]
    return []


def needed_columns(result: Node, order: Sequence[Node] | None = None, run: bool = False,
                   columns: Iterable[str] | None = None) -> dict[str, set[str]]:
    """Per node id, the node's output columns (and ``ROW``) the result depends on: a static walk of the plan.

    From the result's columns (and its rows) back to the sources through each
    operation's column map, adding the columns that decide which rows exist
    (:func:`row_reads`). Group-bys and fitted models read all their inputs (an
    aggregation over a placeholder could fail). Model dependencies are not
    followed (a fitted model is used as it is).

    ``run=False``: what the result's *values* depend on (a sliced replay reads
    and checks only these source columns). ``run=True``: what must be present to
    compute the result (:func:`run_reads` too): column pruning keeps exactly these.
    ``order`` is ``ancestors(result)`` (inputs before consumers) when given;
    ``columns`` the result columns wanted (default: all of them).
    """
    order = ancestors(result) if order is None else order
    needed: dict[str, set[str]] = {result.id: set(result.columns if columns is None else columns) | {ROW}}
    for node in reversed(order):
        want = needed.get(node.id)
        if not want or node.op == "source":
            continue
        inputs: list[set[str]] = [set() for _ in node.inputs]
        outputs = set(want)
        if node.op in ("groupby", "transform") or node.op in APPLY_MODEL:
            outputs |= set(node.columns)
        for column in outputs:
            for k, source_column in node.colmap.get(column, ()):
                if k not in node.model_inputs:
                    inputs[k].add(source_column)
        if ROW in want:
            for k, column in row_reads(node):
                inputs[k].add(column)
        if run:
            for k, column in run_reads(node):
                inputs[k].add(column)
        for k, parent in enumerate(node.inputs):
            if inputs[k] and k not in node.model_inputs:
                needed.setdefault(parent.id, set()).update(inputs[k])
    return needed


#: One-to-one operations whose output columns hold their input's values unchanged (a
#: column they keep is a copy, row for row). Not ``astype`` / ``fillna`` / ``replace``
#: (they change values), ``validate`` (a schema may coerce), ``explode`` / ``flatmap``.
_COPYING = frozenset({"filter", "select", "drop", "dropna", "sort_values", "drop_duplicates", "sample", "head",
                      "split", "check", "rename", "map", "assign", "transform"})


def copied_from(node: Node, column: str) -> tuple[Node, str, str] | None:
    """The source column whose values ``column`` of ``node`` holds unchanged on every row, if any.

    Returns ``(source node, source column, slot)``: on each row of ``node``, the value of
    ``column`` equals the source's ``source column`` at the source row named by the row's
    ``slot`` (the slot's name as ``node`` carries it). ``None`` when no such copy is
    certain: the column was computed, or passes through an operation that may change
    values or leave holes (the side of an outer merge, a concat, a group-by). Used to
    store a *reference* to a source column where lineage is a function of its values
    (:func:`hippo_dask.partition.derivable_group_ids`); what a query derives from it is
    checked against a checksum taken at capture, so an answer is exact or refused.
    """
    while True:
        if column not in node.columns:
            return None
        if node.op == "source":
            return node, column, node.new_slot
        p = node.params
        if node.op == "merge":
            how, sources = p.get("how"), node.colmap.get(column, ())
            # an inner merge's shared key equals both sides; otherwise follow the side that is always there
            present = {"inner": (0, 1), "left": (0,), "right": (1,)}.get(how, ())
            side = next(((k, c) for k, c in sources if k in present), None)
            if side is None:
                return None
            found = copied_from(node.inputs[side[0]], side[1])
            if found is None:
                return None
            renamed = {s: t for t, s in node.slot_from[side[0]].items()}  # input slot -> its name here
            if found[2] not in renamed:
                return None
            return found[0], found[1], renamed[found[2]]
        if node.op not in _COPYING or node.colmap.get(column) is None:
            return None
        written = {"map": p.get("writes") or [], "assign": [p.get("column")],
                   "transform": list(p.get("aggregations") or {})}.get(node.op, [])
        sources = node.colmap[column]
        if column in written or len(sources) != 1 or sources[0][0] != 0:
            return None
        if node.op != "rename" and sources[0][1] != column:
            return None
        node, column = node.inputs[0], sources[0][1]
