"""Lineage types of user functions (Hippo's primitive lineage types, in frame terms).

A user function given to ``map``, ``assign`` or ``filter`` declares how the
value it computes for a row depends on the rows it was given:

* :class:`Rowwise` (the default): only on the same row's ``reads`` columns.
  Hippo does not trust this: on every partition it re-runs the function on a
  small sample of the partition's rows, with the columns outside ``reads``
  scrambled, and raises :class:`~hippo_dask.errors.LineageError` naming the
  operation and the declaration to use when the values differ. It also re-runs
  it with other rows' values changed. The check sees up to 64 rows a partition,
  so a dependency that shows on none of them can pass: declare what you know.
* :class:`All`: on the ``reads`` of *every* row the function saw
  (``x - x.mean()``, ``fillna(x.mean())``). On pandas that is the whole frame;
  on Dask it is the rows of the same partition (the function runs per partition,
  so that is exactly what it read).
* :class:`Window`: on the ``reads`` of the row and of the ``preceding`` rows
  before it (and ``following`` after it) in the partition's row order, or in
  the order of column ``order`` (``shift``, ``rolling``, ``cumsum``).

Group-wise values use ``df.hippo.groupby(keys).transform(out=(column, func))``:
each value then depends on ``column`` of every row of the row's group.

Examples
--------
>>> import pandas as pd, tempfile, hippo_dask as hippo
>>> _ = hippo.set_store(tempfile.mkdtemp())
>>> df = pd.DataFrame({"x": [1.0, 2.0, 6.0]}).hippo.source("df")
>>> out = df.hippo.assign(z=lambda p: p.x - p.x.mean(), lineage=hippo.lin.All(reads=["x"])).hippo.compute()
>>> out.hippo.lineage.backward(rows=[0], columns=["z"])["df"].rows
array([0, 1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import LineageError

__all__ = ["Rowwise", "All", "Window", "LineageType"]


def _columns(reads: Sequence[str] | str | None, what: str) -> tuple[str, ...] | None:
    if reads is None:
        return None
    if isinstance(reads, str):
        return (reads,)
    reads = tuple(reads)
    if not all(isinstance(c, str) for c in reads):
        raise LineageError(f"{what}(reads=...): column names must be strings, got {list(reads)}")
    return reads


@dataclass(frozen=True)
class LineageType:
    """Base of the lineage declarations; ``reads=None`` means "infer the columns read"."""

    reads: tuple[str, ...] | None = None

    kind = "rowwise"

    def describe(self) -> dict:
        return {"kind": self.kind, "reads": None if self.reads is None else list(self.reads)}


@dataclass(frozen=True, init=False)
class Rowwise(LineageType):
    """Each output value depends on the same row's ``reads`` only (verified per partition).

    Parameters
    ----------
    reads : list of str, optional
        The columns the function reads; inferred (and checked) when omitted.

    Examples
    --------
    >>> import hippo_dask as hippo
    >>> hippo.lin.Rowwise(reads=["x", "y"])
    Rowwise(reads=('x', 'y'))
    """

    kind = "rowwise"

    def __init__(self, reads: Sequence[str] | str | None = None) -> None:
        object.__setattr__(self, "reads", _columns(reads, "Rowwise"))


@dataclass(frozen=True, init=False)
class All(LineageType):
    """Each output value depends on ``reads`` of every row the function saw.

    On pandas that is every row of the frame at that step; on Dask, every row
    of the same partition (the function is applied per partition).

    Parameters
    ----------
    reads : list of str, optional
        The columns the function reads; inferred (and checked) when omitted.

    Examples
    --------
    >>> import hippo_dask as hippo
    >>> hippo.lin.All(reads=["x"])
    All(reads=('x',))
    """

    kind = "all"

    def __init__(self, reads: Sequence[str] | str | None = None) -> None:
        object.__setattr__(self, "reads", _columns(reads, "All"))


@dataclass(frozen=True, init=False)
class Window(LineageType):
    """Each output value depends on ``reads`` of the row and its neighbours in an order.

    Parameters
    ----------
    reads : list of str, optional
        The columns the function reads; inferred (and checked) when omitted.
    preceding : int or None
        How many rows before the row count (``None``: every row before it, as
        ``cumsum`` or an expanding window).
    following : int
        How many rows after the row count (``shift(-1)``: 1).
    order : str, optional
        The column whose ascending (stable) order the window follows; default:
        the partition's row order as the function receives it.

    Examples
    --------
    >>> import hippo_dask as hippo
    >>> hippo.lin.Window(reads=["x"], preceding=1)
    Window(reads=('x',), preceding=1, following=0, order=None)
    """

    preceding: int | None = 0
    following: int = 0
    order: str | None = None
    kind = "window"

    def __init__(self, reads: Sequence[str] | str | None = None, preceding: int | None = 1, following: int = 0,
                 order: str | None = None) -> None:
        if preceding is not None and (not isinstance(preceding, int) or preceding < 0):
            raise LineageError(f"Window(preceding=...): a non-negative int or None (unbounded), got {preceding!r}")
        if not isinstance(following, int) or following < 0:
            raise LineageError(f"Window(following=...): a non-negative int, got {following!r}")
        if order is not None and not isinstance(order, str):
            raise LineageError(f"Window(order=...): one column name, got {order!r}")
        object.__setattr__(self, "reads", _columns(reads, "Window"))
        object.__setattr__(self, "preceding", preceding)
        object.__setattr__(self, "following", following)
        object.__setattr__(self, "order", order)

    def describe(self) -> dict:
        return dict(super().describe(), preceding=self.preceding, following=self.following, order=self.order)


def as_lineage_type(value: object, what: str) -> LineageType:
    """``None`` -> :class:`Rowwise`; a declaration as is; anything else is an error."""
    if value is None:
        return Rowwise()
    if isinstance(value, LineageType):
        return value
    raise LineageError(
        f"{what} lineage=: pass hippo.lin.Rowwise(...), hippo.lin.All(...) or hippo.lin.Window(...), got {value!r}"
    )


def from_description(described: dict | None) -> LineageType:
    """The lineage type a :meth:`LineageType.describe` record names (for replay)."""
    if not described:
        return Rowwise()
    kind = described.get("kind", "rowwise")
    if kind == "rowwise":
        return Rowwise(described.get("reads"))
    if kind == "all":
        return All(described.get("reads"))
    if kind == "window":
        return Window(described.get("reads"), described.get("preceding"), described.get("following", 0),
                      described.get("order"))
    raise LineageError(f"unknown lineage kind {kind!r} in a run record")
