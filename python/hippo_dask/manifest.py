"""The shape a committed manifest must have before a query reads it.

A store can be shared, copied and damaged, so a manifest is data from outside:
:func:`check_manifest` checks, once when a run is opened, every field the
queries read (types, ranges, references between nodes, sources and fragments).
A manifest that fails gets a :class:`~hippo_dask.errors.CorruptRunError`
naming the field, instead of a ``KeyError`` or ``TypeError`` from deep inside
a query, and the query code after it can rely on the shape.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import CorruptRunError
from .plan import MEMBERSHIP

#: Operations whose node starts a slot of its own (``new_slot``), which queries trace through.
NEW_SLOT_OPS = frozenset({"source", "concat"}) | MEMBERSHIP


class _Check:
    def __init__(self, url: str) -> None:
        self.url = url

    def fail(self, where: str, what: str) -> None:
        raise CorruptRunError(f"{self.url}: malformed manifest: {where} {what}; the run cannot be queried "
                              "(damaged, edited, or not written by hippo_dask)")

    def dict(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {type(value).__name__}")
        return value

    def list(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {type(value).__name__}")
        return value

    def str(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"must be a string, got {type(value).__name__}")
        return value

    def strs(self, value: Any, where: str) -> list[str]:
        items = self.list(value, where)
        for i, item in enumerate(items):
            self.str(item, f"{where}[{i}]")
        return items

    def count(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            self.fail(where, f"must be a count (an integer from 0), got {value!r}")
        return value


def check_manifest(manifest: Any, url: str) -> None:
    """Raise :class:`CorruptRunError` unless ``manifest`` has the shape queries read."""
    c = _Check(url)
    m = c.dict(manifest, "the manifest")
    ids: dict[str, int] = {}  # node id -> number of inputs
    slots_of: dict[str, set[str]] = {}  # node id -> its slots
    source_nodes: set[str] = set()
    for i, node in enumerate(c.list(m.get("nodes"), "nodes")):
        where = f"nodes[{i}]"
        node = c.dict(node, where)
        nid = c.str(node.get("id"), f"{where}.id")
        c.str(node.get("op"), f"{where}.op")
        inputs = c.strs(node.get("inputs"), f"{where}.inputs")
        missing = [x for x in inputs if x not in ids]
        if missing:
            c.fail(f"{where}.inputs", f"name nodes not listed before it: {missing[:3]}")
        c.strs(node.get("columns"), f"{where}.columns")
        for column, sources in c.dict(node.get("colmap"), f"{where}.colmap").items():
            for j, pair in enumerate(c.list(sources, f"{where}.colmap[{column!r}]")):
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], int)
                        and not isinstance(pair[0], bool) and 0 <= pair[0] < len(inputs) and isinstance(pair[1], str)):
                    c.fail(f"{where}.colmap[{column!r}][{j}]", "must be [input number, column]")
        slots = set(c.strs(node.get("slots"), f"{where}.slots"))
        slot_from = c.list(node.get("slot_from"), f"{where}.slot_from")
        if slot_from and len(slot_from) != len(inputs):
            c.fail(f"{where}.slot_from", f"has {len(slot_from)} entries for {len(inputs)} inputs")
        for j, mapping in enumerate(slot_from):
            for k, v in c.dict(mapping, f"{where}.slot_from[{j}]").items():
                if k not in slots or c.str(v, f"{where}.slot_from[{j}][{k!r}]") not in slots_of[inputs[j]]:
                    c.fail(f"{where}.slot_from[{j}][{k!r}]", "maps slots the node or its input does not have")
        # the nodes that start a slot (a source, a concat's tag, a group, a spread) are traced through it
        needs_slot = node.get("op") in NEW_SLOT_OPS or bool(node.get("spread"))
        if (needs_slot or node.get("new_slot") is not None) and c.str(node.get("new_slot"),
                                                                        f"{where}.new_slot") not in slots:
            c.fail(f"{where}.new_slot", "is not one of the node's slots")
        for k, v in c.dict(node.get("slot_origin"), f"{where}.slot_origin").items():
            c.str(v, f"{where}.slot_origin[{k!r}]")
        c.dict(node.get("params"), f"{where}.params")
        for k, v in c.dict(node.get("spread", {}), f"{where}.spread").items():
            c.dict(v, f"{where}.spread[{k!r}]")
        for j, k in enumerate(c.list(node.get("model_inputs", []), f"{where}.model_inputs")):
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(inputs):
                c.fail(f"{where}.model_inputs[{j}]", "must be an input number")
        if nid in ids:
            c.fail(f"{where}.id", f"repeats node {nid!r}")
        ids[nid] = len(inputs)
        slots_of[nid] = slots
        if node.get("op") == "source":
            source_nodes.add(nid)

    result = c.dict(m.get("result"), "result")
    if c.str(result.get("node"), "result.node") not in ids:
        c.fail("result.node", "names no node")
    rows = c.count(result.get("rows"), "result.rows")
    columns = c.strs(result.get("columns"), "result.columns")
    if result.get("index") is not None and not set(c.strs(result.get("index"), "result.index")) <= set(columns or ()):
        c.fail("result.index", "names columns the result does not have")
    total = 0
    for i, frag in enumerate(c.list(result.get("fragments"), "result.fragments")):
        frag = c.dict(frag, f"result.fragments[{i}]")
        c.str(frag.get("path"), f"result.fragments[{i}].path")
        c.str(frag.get("checksum"), f"result.fragments[{i}].checksum")
        total += c.count(frag.get("rows"), f"result.fragments[{i}].rows")
        if frag.get("bytes") is not None:
            c.count(frag.get("bytes"), f"result.fragments[{i}].bytes")
    if total != rows:
        c.fail("result.fragments", f"hold {total} rows, result.rows says {rows}")

    for name, info in c.dict(m.get("sources"), "sources").items():
        where = f"sources[{name!r}]"
        info = c.dict(info, where)
        if c.str(info.get("node"), f"{where}.node") not in ids:
            c.fail(f"{where}.node", "names no node")
        n = c.count(info.get("rows"), f"{where}.rows")
        parts = [c.count(p, f"{where}.partition_rows[{i}]")
                 for i, p in enumerate(c.list(info.get("partition_rows"), f"{where}.partition_rows"))]
        if sum(parts) != n:
            c.fail(f"{where}.partition_rows", f"add up to {sum(parts)}, rows says {n}")
        c.strs(info.get("columns"), f"{where}.columns")
        if info.get("identity") is not None:
            c.dict(info.get("identity"), f"{where}.identity")

    described = {info["node"] for info in m["sources"].values()}
    if described != source_nodes or len(described) != len(m["sources"]):
        c.fail("sources", "must describe each source node of the DAG exactly once")

    for nid, names in c.dict(m.get("group_fragments", {}), "group_fragments").items():
        c.strs(names, f"group_fragments[{nid!r}]")

    derived = c.dict(m.get("derived") or {}, "derived")
    for part in ("memberships", "result"):
        for key, spec in c.dict(derived.get(part) or {}, f"derived.{part}").items():
            spec = c.dict(spec, f"derived.{part}[{key!r}]")
            for field in ("source", "column", "slot"):
                c.str(spec.get(field), f"derived.{part}[{key!r}].{field}")
