"""Inspect one result value: operator by operator, the rows and values that fed it.

Nothing intermediate is stored at capture. :func:`inspect` traces the result
row backward (which rows of every operation fed it), replays the pipeline on
just the source rows in that trace (a sliced replay, on pandas), and shows,
for each operation, those rows as the replay computed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..partition import clean
from ..plan import ROW, hidden
from .replay import SlicedRun, check_sliceable, closure, describe_node

if TYPE_CHECKING:
    from ..lineage import Lineage


@dataclass
class Step:
    """One operation's rows that fed the inspected value.

    Attributes
    ----------
    operation : str
        The operation, readable (``merge(how='inner', ...)``).
    node : str
        Its node id in the run.
    columns : list of str
        The columns of these rows that the value was computed from.
    rows : pandas.DataFrame
        Those rows, with every column, as the replay computed them.
    """

    operation: str
    node: str
    columns: list[str]
    rows: pd.DataFrame


@dataclass
class Inspection:
    """The operator-by-operator story of one result value; ``print()`` it, or walk :attr:`steps`."""

    run_id: str
    row: int
    column: str | None
    steps: list[Step] = field(default_factory=list)

    def __str__(self) -> str:
        what = f"column {self.column!r} of " if self.column else ""
        lines = [f"{what}result row {self.row} of run {self.run_id}, from the sources on:"]
        with pd.option_context("display.max_columns", 12, "display.width", 120, "display.max_colwidth", 24):
            for i, step in enumerate(self.steps, 1):
                traced = f"; traced columns {step.columns}" if step.columns else ""
                lines.append(f"[{i}] {step.operation}: {len(step.rows)} row(s){traced}")
                lines.extend("    " + line for line in step.rows.head(10).to_string().splitlines())
                if len(step.rows) > 10:
                    lines.append(f"    ... {len(step.rows) - 10} more")
        return "\n".join(lines)

    __repr__ = __str__


def inspect(lineage: "Lineage", row: int, column: str | None = None, sources: Mapping[str, Any] | None = None,
            trust: bool = False, functions: Mapping[str, Callable] | None = None, **compute_kwargs: Any) -> Inspection:
    """See :meth:`hippo_dask.Lineage.inspect`.

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]})
    >>> out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    >>> story = out.hippo.lineage.inspect(0, "total", sources={"df": df})
    >>> [(s.operation, len(s.rows)) for s in story.steps]
    [("source 'df'", 2), ("groupby(['k']).agg(total)", 1)]
    """
    check_sliceable(lineage)
    states: dict[str, dict[str, Any]] = {}
    lineage._backward([row], None if column is None else [column], keep=states)
    run = SlicedRun(lineage, closure(lineage, [row]), sources, trust, functions, prune=False,  # show every column
                    compute_kwargs=compute_kwargs)
    story = Inspection(lineage.run_id, int(row), column)
    for node in lineage._order:
        traced = states.get(node.id)
        if not traced:
            continue
        built = run.rebuild.tracked[node.id]
        if node.op == "fit":
            model = built.model
            story.steps.append(Step(describe_node(node), node.id, [c for c in traced if c != ROW],
                                    pd.DataFrame({"fitted": [type(model.estimator).__name__], "fit_mode": [model.fit_mode]})))
            continue
        data = built.data
        values = np.column_stack([data[hidden(s)].to_numpy(dtype=np.int64) for s in built.node.slots]) if len(data) \
            else np.empty((0, len(built.node.slots)), dtype=np.int64)
        mine = run.translate(node, built.node, values)
        wanted = set()
        for rows in traced.values():
            order = [rows.slots.index(s) for s in node.slots]
            wanted.update(r.tobytes() for r in np.ascontiguousarray(rows.values[:, order]))
        mask = np.fromiter((r.tobytes() in wanted for r in np.ascontiguousarray(mine)), dtype=bool, count=len(mine))
        shown = clean(data)[mask]
        shown.attrs = {}
        story.steps.append(Step(describe_node(node), node.id, [c for c in traced if c != ROW], shown))
    run.close()
    return story
