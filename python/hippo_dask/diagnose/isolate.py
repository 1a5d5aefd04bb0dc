"""Isolate the source rows behind a wrong output, by delta debugging over its backward trace (after BigSift).

Given a test on result rows (True while the output is wrong), :func:`isolate`
reads the source rows those result rows depend on once, then searches (ddmin)
for a smallest set of them whose removal makes the test pass, recomputing the
rows on pandas from what is left each time (a sliced replay: fitted models are
used as stored, not refitted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ReplayError
from .debug import ddmin
from .replay import SlicedRun, as_recorded, check_sliceable, closure

if TYPE_CHECKING:
    from ..lineage import Lineage


@dataclass
class Isolation:
    """What :meth:`hippo_dask.Lineage.isolate` found.

    Attributes
    ----------
    rows : dict of str to numpy.ndarray
        Source name -> positions of the rows whose removal makes the test pass.
    candidates : int
        Source rows the searched result rows depend on (the search space).
    tests : int
        Times the test ran (on a recomputation without some of the candidates).
    seconds : float
        Wall time of the search, reading the candidates included.
    """

    rows: dict[str, np.ndarray] = field(default_factory=dict)
    candidates: int = 0
    tests: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        found = "; ".join(f"{name!r} rows {r.tolist()}" for name, r in self.rows.items() if len(r)) or "nothing"
        return (f"isolated {found}: removing them makes the test pass "
                f"({self.candidates} candidate source rows, {self.tests} test runs, {self.seconds:.2f} s)")

    __repr__ = __str__


def isolate(lineage: "Lineage", test: Callable[[pd.DataFrame], bool], rows: Sequence[int] | None = None,
            sources: Mapping[str, Any] | None = None, trust: bool = False,
            functions: Mapping[str, Callable] | None = None, **compute_kwargs: Any) -> Isolation:
    """See :meth:`hippo_dask.Lineage.isolate`.

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "a", "b", "a"], "x": [1, 2, 3, 900]})
    >>> out = df.hippo.source("df").hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    >>> out.hippo.lineage.isolate(lambda rows: (rows.total > 100).any(), sources={"df": df}).rows
    {'df': array([3])}
    """
    start = time.perf_counter()
    check_sliceable(lineage)
    asked = np.arange(lineage.nrows, dtype=np.int64) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    lineage._rows(asked, lineage.nrows, "the result")
    candidates = closure(lineage, asked)
    items = [(name, int(p)) for name, positions in candidates.items() for p in positions]
    loaded: dict[str, pd.DataFrame] = {}
    runs = 0

    def wrong(removed: set[tuple[str, int]]) -> bool:
        nonlocal runs
        runs += 1
        keep = {name: np.array([p for p in positions if (name, int(p)) not in removed], dtype=np.int64)
                for name, positions in candidates.items()}
        run = SlicedRun(lineage, keep, sources, trust, functions, loaded=loaded, compute_kwargs=compute_kwargs)
        found = run.rows_of(asked, strict=False)
        present = found >= 0
        frame = run.result.iloc[found[present]].copy()
        frame.index = pd.Index(asked[present])
        frame.attrs = {}
        return bool(test(as_recorded(frame[lineage.columns], lineage)))

    if not wrong(set()):
        raise ReplayError("isolate: the test already passes on these result rows (it must return True while the "
                          "output is wrong)")
    if wrong(set(items)):
        raise ReplayError("isolate: the test still fails with every source row behind these rows removed; the fault "
                          "is not in the data they depend on")
    culprit, tests = ddmin(list(range(len(items))), lambda subset: not wrong({items[i] for i in subset}))
    found: dict[str, list[int]] = {name: [] for name in candidates}
    for i in culprit:
        name, position = items[i]
        found[name].append(position)
    return Isolation({name: np.asarray(sorted(v), dtype=np.int64) for name, v in found.items() if v},
                     len(items), runs, time.perf_counter() - start)
