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
from typing import Any, Iterable, Mapping

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
        "sample", "head", "transform", "split", "check", "validate",
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
