"""Result analysis: which source values a result value is made of, and by how much.

:func:`explain` replays the pipeline on the backward closure of one result row
(a sliced replay, nothing intermediate is stored at capture) and walks the
value back from the result:

* through operations that copy it (select, rename, filters, sorts, merges,
  concats) to the row it was copied from;
* through an aggregation to the group's members, each with its exact share:
  sum -> its value, mean -> value / n, count / size -> 1, min / max / first /
  last / median -> the row(s) that gave the value, nunique -> 1 / (rows sharing
  its value), var -> its term (x - mean)^2 / (n - 1). Shares compose through
  further sums and means (a sum of sums, a mean of sums) by carrying a weight;
* everything else (user functions, std, prod, fitted models, an aggregate of
  an aggregate that is not linear) is **not additive**: the source cells are
  listed with a missing contribution, or, for std and prod, with each row's
  leave-one-out influence (the value minus the value without that row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import QueryError
from ..partition import group_ids
from ..plan import APPLY_MODEL, MISSING, ONE_TO_ONE, ROW, Node, hidden
from .replay import SlicedRun, check_sliceable, closure, describe_node

if TYPE_CHECKING:
    from ..lineage import Lineage

#: Operations that hand a column's value on unchanged (the row may be another's: merges, concats).
COPIES = frozenset({"select", "drop", "rename", "filter", "dropna", "sort_values", "head", "sample",
                    "drop_duplicates", "split", "merge", "concat", "check", "validate", "reset_index"})
#: Aggregations whose shares add up to the value, and compose through outer sums and means.
LINEAR = frozenset({"sum", "mean"})
#: Groups above this size get no leave-one-out influence (it costs one aggregation per member).
_INFLUENCE_LIMIT = 2_000

COLUMNS = ["source", "row", "column", "value", "contribution", "note"]


class _Frames:
    """The sliced replay's frame of every node, rows keyed by their original slot values."""

    def __init__(self, lineage: "Lineage", run: SlicedRun) -> None:
        self.lineage, self.run = lineage, run
        self._index: dict[str, tuple[pd.DataFrame, dict[bytes, list[int]], np.ndarray]] = {}

    def of(self, node: Node) -> tuple[pd.DataFrame, dict[bytes, list[int]], np.ndarray]:
        if node.id not in self._index:
            built = self.run.rebuild.tracked[node.id]
            data = built.data
            values = np.column_stack([data[hidden(s)].to_numpy(dtype=np.int64) for s in built.node.slots]) \
                if len(data) and built.node.slots else np.empty((len(data), len(built.node.slots)), dtype=np.int64)
            mine = np.ascontiguousarray(self.run.translate(node, built.node, values))
            index: dict[bytes, list[int]] = {}
            for i in range(len(mine)):
                index.setdefault(mine[i].tobytes(), []).append(i)
            self._index[node.id] = (data, index, mine)
        return self._index[node.id]

    def value(self, node: Node, slots: np.ndarray, column: str) -> Any:
        """The value of ``column`` on the row ``slots`` of ``node`` (refused when twin rows disagree)."""
        data, index, _ = self.of(node)
        found = index.get(np.ascontiguousarray(slots, dtype=np.int64).tobytes())
        if not found:
            raise QueryError(f"explain: internal: the replay did not make the traced row of {describe_node(node)}; "
                             "please report")
        values = data[column].iloc[found]
        if len(found) > 1 and values.nunique(dropna=False) > 1:
            raise QueryError(f"explain: rows of {describe_node(node)} share one lineage (made by explode / flatmap "
                             f"from one row) and differ in {column!r}: the value cannot be attributed to one of them")
        return values.iloc[0]


class _Explainer:
    def __init__(self, lineage: "Lineage", frames: _Frames, through_models: bool) -> None:
        self.lineage, self.frames, self.through_models = lineage, frames, through_models
        self.lines: list[dict[str, Any]] = []

    # -- walking a value back
    def value(self, node: Node, slots: np.ndarray, column: str, weight: float, note: str = "") -> None:
        """Add lines for the value ``column`` of the row ``slots`` of ``node``, scaled by ``weight``."""
        while node.op in COPIES or _passes_unchanged(node, column):
            k, column = self._copied_from(node, slots, column)
            slots = self._project(node, k, slots)
            node = node.inputs[k]
        if node.op == "source":
            value = self.frames.value(node, slots, column)
            share = weight * _number(value) if weight == weight else np.nan
            self._line(node, slots, column, value, share, note or "the value itself")
            return
        if node.op == "groupby" and column in node.params.get("aggregations", {}):
            self._aggregate(node, slots, column, weight)
            return
        if node.op == "groupby":  # a key column: every member has it
            parent = node.inputs[0]
            for member in self._members(node, slots):
                self.value(parent, member, column, np.nan, "group key (every member has it)")
            return
        self._not_additive(node, slots, column, _why(node))

    def _aggregate(self, node: Node, slots: np.ndarray, column: str, weight: float) -> None:
        source_column, func = node.params["aggregations"][column]
        if not isinstance(func, str):  # a function of the group's values: no share can be told apart
            self._not_additive(node, slots, column, f"a function ({func.get('name')}) of the group's values")
            return
        parent = node.inputs[0]
        positions, members = self._member_rows(node, slots)
        if not members:
            return
        # by position in the replayed input: rows split from one row (explode) share their slots
        values = pd.Series(self.frames.of(parent)[0][source_column].to_numpy()[positions])
        present = values.notna().to_numpy()
        n = int(present.sum())
        label = f"{func} of {source_column}"
        if func in LINEAR:
            scale = 1.0 if func == "sum" else (1.0 / n if n else np.nan)
            for member, ok in zip(members, present):
                if ok:
                    self.value(parent, member, source_column, weight * scale, f"share of the {label}")
            return
        if func in ("count", "size"):
            for member, ok in zip(members, present):
                if ok or func == "size":
                    self._cells(parent, member, source_column if func == "count" else ROW, weight,
                                f"counted by the {label}")
            return
        if func in ("min", "max", "first", "last", "median"):
            chosen = _deciding(values, func)
            for i, share in chosen:
                self.value(parent, members[i], source_column, weight * share, f"gives the {label}")
            return
        if func == "nunique":
            for member, ok, c in zip(members, present, values.map(values[present].value_counts()).to_numpy()):
                if ok:
                    self._cells(parent, member, source_column, weight / float(c), f"one of {int(c)} row(s) with a value "
                                "the nunique counts")
            return
        if func == "var" and n > 1:
            numbers = values[present].astype(float).to_numpy()
            terms = (numbers - numbers.mean()) ** 2 / (n - 1)
            for member, term in zip([m for m, ok in zip(members, present) if ok], terms):
                self._cells(parent, member, source_column, weight * term, f"term (x - mean)^2 / (n - 1) of the {label}")
            return
        # std, prod, var of one row: not additive; each row's leave-one-out influence where affordable
        whole = _apply(values, func)
        for i, member in enumerate(members):
            influence = np.nan
            if len(members) <= _INFLUENCE_LIMIT and present[i]:
                influence = whole - _apply(values.drop(index=i), func)
            self._cells(parent, member, source_column, weight * influence if weight == weight else np.nan,
                        f"not additive ({label}): leave-one-out influence")

    # -- rows and cells
    def _members(self, node: Node, slots: np.ndarray) -> list[np.ndarray]:
        """The member rows (slot values of the input) of the group ``slots`` of a group-by or transform."""
        return self._member_rows(node, slots)[1]

    def _member_rows(self, node: Node, slots: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Positions in the replayed input, and slot values, of the members of the group ``slots``."""
        if node.op not in ("groupby", "transform"):
            raise QueryError(f"explain: internal: {describe_node(node)} has no groups; please report")
        gid = int(slots[node.slots.index(node.new_slot)])
        parent = node.inputs[0]
        data, _, mine = self.frames.of(parent)
        if not len(data):
            return np.array([], dtype=np.int64), []
        keys = list(node.params["keys"])
        ids = group_ids(data[keys])
        hit = np.flatnonzero(ids == gid)
        if node.params.get("dropna", True) and len(hit):
            hit = hit[~data[keys].iloc[hit].isna().any(axis=1).to_numpy()]
        return hit, [mine[i] for i in hit]

    def _cells(self, node: Node, slots: np.ndarray, column: str, share: float, note: str) -> None:
        """Lines for the source cells behind ``column`` (or ROW) of one row, the share on the first of them."""
        cells = self._cells_behind(node, slots, column)
        for j, (source, row_slots, source_column) in enumerate(cells):
            value = self.frames.value(source, row_slots, source_column) if source_column != ROW else np.nan
            self._line(source, row_slots, source_column if source_column != ROW else "", value,
                       share if j == 0 else (0.0 if share == share else np.nan),
                       note if j == 0 else note + " (the row's share is on its first cell)")

    def _cells_behind(self, node: Node, slots: np.ndarray, column: str) -> list[tuple[Node, np.ndarray, str]]:
        out: list[tuple[Node, np.ndarray, str]] = []
        stack = [(node, slots, column)]
        seen: set[tuple[str, bytes, str]] = set()
        while stack:
            current, row, col = stack.pop()
            key = (current.id, np.ascontiguousarray(row).tobytes(), col)
            if key in seen:
                continue
            seen.add(key)
            if current.op == "source":
                out.append((current, row, col))
                continue
            if current.op in ("groupby", "fit") or col in current.spread:
                if current.op == "fit":
                    continue  # training rows are listed apart (see explain)
                if current.op not in ("groupby", "transform"):
                    raise QueryError(f"explain: {describe_node(current)} spreads values across rows in a way a "
                                     "replay of a few rows cannot show")
                parent = current.inputs[0]
                members = self._members(current, row)
                # a size counts member rows, not values: it reads their row lineage
                inputs = current.colmap.get(col, ()) or ((0, ROW),)
                for k, in_col in inputs:
                    for member in members:
                        stack.append((parent, member, in_col))
                continue
            for k, in_col in current.colmap.get(col, ()):
                if k in current.model_inputs and not self.through_models:
                    continue
                if k in current.model_inputs:
                    continue  # training rows are listed apart (see explain)
                projected = self._project(current, k, row)
                if projected is not None:
                    stack.append((current.inputs[k], projected, in_col))
        return sorted(out, key=lambda c: (c[0].params["name"], int(c[1][c[0].slots.index(c[0].new_slot)]), c[2]))

    def _not_additive(self, node: Node, slots: np.ndarray, column: str, why: str) -> None:
        for source, row_slots, source_column in self._cells_behind(node, slots, column):
            value = self.frames.value(source, row_slots, source_column) if source_column != ROW else np.nan
            self._line(source, row_slots, source_column if source_column != ROW else "", value, np.nan,
                       f"not additive: {why}")

    def _copied_from(self, node: Node, slots: np.ndarray, column: str) -> tuple[int, str]:
        sources = node.colmap.get(column, ())
        if node.op == "concat":
            k = int(slots[node.slots.index(node.new_slot)])
            return k, next(c for kk, c in sources if kk == k)
        if node.op == "merge" and len(sources) > 1:  # a key: equal on both sides, take a side the row has
            for k, c in sources:
                if self._project(node, k, slots) is not None:
                    return k, c
        if len(sources) != 1:
            raise QueryError(f"explain: internal: {describe_node(node)} does not copy {column!r} from one column")
        return sources[0]

    def _project(self, node: Node, k: int, slots: np.ndarray) -> np.ndarray | None:
        parent = node.inputs[k]
        mapping = node.slot_from[k] if k < len(node.slot_from) else {}
        if node.op in APPLY_MODEL and k in node.model_inputs:
            return np.zeros(1, dtype=np.int64)
        out = np.array([slots[node.slots.index(next(o for o, i in mapping.items() if i == s))] for s in parent.slots],
                       dtype=np.int64)
        return None if len(out) and (out == MISSING).all() else out

    def _line(self, source: Node, slots: np.ndarray, column: str, value: Any, contribution: float, note: str) -> None:
        position = int(slots[source.slots.index(source.new_slot)])
        self.lines.append({"source": source.params["name"], "row": position, "column": column, "value": value,
                           "contribution": float(contribution) if contribution == contribution else np.nan,
                           "note": note})


def _passes_unchanged(node: Node, column: str) -> bool:
    """Whether a one-to-one operation hands ``column`` on as it was (it does not write it)."""
    if node.op not in ONE_TO_ONE and node.op not in APPLY_MODEL:
        return False
    if tuple(node.colmap.get(column, ())) != ((0, column),) or column in node.spread:
        return False
    p = node.params
    if node.op in ("map", "flatmap"):
        written = set(p.get("writes") or ())
    elif node.op == "assign":
        written = {p.get("column")}
    elif node.op == "explode":
        written = set(p.get("column") or ())
    elif node.op == "transform":
        written = set(p.get("aggregations", {}))
    elif node.op in APPLY_MODEL:
        written = {c for c, srcs in node.colmap.items() if any(k in node.model_inputs for k, _ in srcs)}
    else:  # astype, fillna, replace may change any value
        return False
    return column not in written


def _why(node: Node) -> str:
    if node.op in APPLY_MODEL:
        return f"made by a fitted model ({describe_node(node)}); these are its input features"
    return f"computed by {describe_node(node)}"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _apply(values: pd.Series, func: str) -> float:
    present = values.dropna()
    if not len(present):
        return np.nan
    return float(getattr(present.astype(float), func)())


def _deciding(values: pd.Series, func: str) -> list[tuple[int, float]]:
    """(member index, share) of the rows that give a min / max / first / last / median."""
    present = values.dropna()
    if not len(present):
        return []
    if func in ("first", "last"):
        return [(int(present.index[0 if func == "first" else -1]), 1.0)]
    if func in ("min", "max"):
        return [(int(present.idxmin() if func == "min" else present.idxmax()), 1.0)]
    ordered = present.sort_values(kind="stable")
    n = len(ordered)
    if n % 2:
        return [(int(ordered.index[n // 2]), 1.0)]
    return [(int(ordered.index[n // 2 - 1]), 0.5), (int(ordered.index[n // 2]), 0.5)]


def explain(lineage: "Lineage", row: int, column: str, sources: Mapping[str, Any] | None = None,
            through_models: bool = False, trust: bool = False, functions: Mapping[str, Callable] | None = None,
            **compute_kwargs: Any) -> pd.DataFrame:
    """See :meth:`hippo_dask.Lineage.explain`.

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]})
    >>> out = df.hippo.source("df").hippo.groupby("k").agg(avg=("x", "mean")).hippo.compute()
    >>> explain(out.hippo.lineage, 0, "avg", sources={"df": df})[["source", "row", "value", "contribution"]]
      source  row  value  contribution
    0     df    2    3.0           1.5
    1     df    0    1.0           0.5
    """
    check_sliceable(lineage, "explain")
    position = int(lineage._rows([row], lineage.nrows, "the result")[0])
    if column not in lineage.columns:
        raise QueryError(f"explain: the result has no column {column!r}; its columns are {lineage.columns}")
    run = SlicedRun(lineage, closure(lineage, [position]), sources, trust, functions, compute_kwargs=compute_kwargs)
    try:
        explainer = _Explainer(lineage, _Frames(lineage, run), through_models)
        explainer.value(lineage._result, lineage.result_slots().values[position], column, 1.0)
        frame = pd.DataFrame(explainer.lines, columns=COLUMNS)
        if through_models:
            frame = pd.concat([frame, _training_rows(lineage, position, column)], ignore_index=True)
    finally:
        run.close()
    if not len(frame):
        return frame
    frame = (frame.groupby(["source", "row", "column", "note"], sort=False, dropna=False)
             .agg(value=("value", "first"), contribution=("contribution", lambda s: s.sum(min_count=1)))
             .reset_index()[COLUMNS])
    magnitude = frame["contribution"].abs().fillna(-1.0)
    order = np.lexsort((frame["row"].to_numpy(), frame["source"].to_numpy().astype(str), -magnitude.to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def _training_rows(lineage: "Lineage", position: int, column: str) -> pd.DataFrame:
    """The training rows of the models behind the value (listed, not weighted)."""
    plain = lineage.backward([position], [column])
    full = lineage.backward([position], [column], through_models=True)
    lines = []
    for name in lineage.sources:
        extra = np.setdiff1d(full[name].rows if len(full[name].rows) else full[name].cells["row"].unique(),
                             plain[name].cells["row"].unique())
        for r in extra:
            lines.append({"source": name, "row": int(r), "column": "", "value": np.nan, "contribution": np.nan,
                          "note": "training row of a fitted model behind the value (not weighted)"})
    return pd.DataFrame(lines, columns=COLUMNS)
