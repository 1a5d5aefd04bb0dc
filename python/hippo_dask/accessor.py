"""The ``.hippo`` accessor on pandas and Dask DataFrames.

The accessor holds no state (pandas builds a new one on every ``df.hippo``).
Lineage lives in two weak registries keyed by the frame object: tracked
frames (the frame the user sees -> its :class:`~hippo_dask.frame.Tracked`)
and computed results (-> their :class:`~hippo_dask.lineage.Lineage`).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

import pandas as pd

from .compute import compute as _compute
from .errors import LineageError, UntrackedFrameError
from .frame import Tracked, concat as _concat, is_dask
from .lineage import Lineage
from .store import Store, get_store

V = TypeVar("V")


class _WeakRegistry(Generic[V]):
    """Values attached to frame objects, dropped when the frame is collected."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, V]] = {}

    def put(self, obj: Any, value: V) -> None:
        key = id(obj)
        self._entries[key] = (weakref.ref(obj, lambda _ref, key=key: self._entries.pop(key, None)), value)

    def get(self, obj: Any) -> V | None:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        return entry[1]


_tracked: _WeakRegistry[Tracked] = _WeakRegistry()
_results: _WeakRegistry[Lineage] = _WeakRegistry()

_UNTRACKED_HINT = (
    "start a pipeline with df.hippo.source('name') and use df.hippo.<operation> for every step "
    "(a plain pandas/Dask operation returns a frame without lineage)"
)


def tracked_of(obj: Any, what: str) -> Tracked:
    found = _tracked.get(obj)
    if found is None:
        raise UntrackedFrameError(f"{what}: this {type(obj).__name__} has no lineage; {_UNTRACKED_HINT}")
    return found


def _expose(tracked: Tracked) -> Any:
    view = tracked.user_view()
    _tracked.put(view, tracked)
    return view


class GroupBy:
    """``df.hippo.groupby(keys)``: call :meth:`agg` with named aggregations."""

    def __init__(self, tracked: Tracked, keys: str | Sequence[str], dropna: bool) -> None:
        self._tracked = tracked
        self._keys = [keys] if isinstance(keys, str) else list(keys)
        self._dropna = dropna

    def agg(self, **named: tuple[str, str]) -> Any:
        """Aggregate each group; keys come back as columns.

        Parameters
        ----------
        **named : (column, function)
            Output column -> (input column, one of sum, mean, min, max, count,
            size, nunique, first, last, std, var, median, prod).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
        >>> df.hippo.groupby("k").agg(total=("x", "sum"))
           k  total
        0  a      4
        1  b      2
        """
        return _expose(self._tracked.groupby_agg(self._keys, {k: tuple(v) for k, v in named.items()}, self._dropna))


class HippoAccessor:
    """Lineage-capturing operations: ``df.hippo.<operation>``.

    Every operation returns the same kind of frame it was called on (pandas
    in, pandas out; Dask in, lazy Dask out) and records its cell-level
    lineage. Start with :meth:`source`, end with :meth:`compute`.

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"a": [1, -2, 3], "b": [4, 5, 6]}).hippo.source("df")
    >>> out = df.hippo.filter(lambda p: p.a > 0).hippo.assign(c=lambda p: p.a + p.b).hippo.compute()
    >>> out.hippo.lineage.backward(rows=[1], columns=["c"])["df"].cells
       row column
    0    2      a
    1    2      b
    """

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def _t(self, what: str) -> Tracked:
        return tracked_of(self._obj, what)

    # -- state
    @property
    def is_tracked(self) -> bool:
        """Whether this frame carries lineage (came from ``.hippo`` operations)."""
        return _tracked.get(self._obj) is not None

    @property
    def lineage(self) -> Lineage:
        """The lineage of a computed result (see :meth:`compute`)."""
        found = _results.get(self._obj)
        if found is None:
            raise UntrackedFrameError(
                "lineage: this frame is not a computed result; call .hippo.compute() on a tracked frame "
                "and use the frame it returns (or hippo.open(store, run_id))"
            )
        return found

    # -- roots and results
    def source(self, name: str, store: str | Store | None = None) -> Any:
        """Mark this frame as a lineage root named ``name`` (row positions start here).

        Parameters
        ----------
        name : str
            Name the source goes by in traces.
        store : str or Store, optional
            Where this pipeline's lineage is written (default: :func:`hippo_dask.get_store`).
        """
        if is_dask(self._obj) is False and not isinstance(self._obj, pd.DataFrame):
            raise LineageError(f"source: expected a pandas or Dask DataFrame, got {type(self._obj).__name__}")
        target = get_store() if store is None else (store if isinstance(store, Store) else Store(store))
        return _expose(Tracked.source(self._obj, name, target))

    def compute(self, **compute_kwargs: Any) -> pd.DataFrame:
        """Compute the frame; commit its lineage; return a plain pandas DataFrame.

        The returned frame's ``.hippo.lineage`` answers queries; its
        ``run_id`` reopens them later with :func:`hippo_dask.open`.
        Keyword arguments go to ``dask.compute`` (e.g. ``scheduler=``).
        """
        result, run_id = _compute(self._t("compute"), **compute_kwargs)
        tracked = self._t("compute")
        _results.put(result, Lineage(tracked.store, run_id))
        return result

    # -- user code
    def map(self, func: Callable[..., pd.DataFrame], reads: Sequence[str] | None = None,
            writes: Sequence[str] | None = None, meta: Any = None, **kwargs: Any) -> Any:
        """Apply ``func(partition) -> partition`` that keeps every row in place.

        Parameters
        ----------
        func : callable
            Takes and returns a pandas DataFrame with the same rows in the same order.
        reads, writes : list of str, optional
            Columns the function reads / creates or modifies. Inferred when omitted
            (reads: by recording what it touches, all columns when unsure; writes:
            by comparing its output, checked on every partition for Dask).
        meta : optional
            Output meta for Dask (default: run ``func`` on a sample).
        """
        return _expose(self._t("map").map(func, reads=reads, writes=writes, meta=meta, **kwargs))

    def assign(self, **assignments: Any) -> Any:
        """Add or replace columns from callables (``lambda p: ...``) or scalars."""
        return _expose(self._t("assign").assign(**assignments))

    def filter(self, predicate: Callable[[pd.DataFrame], Any]) -> Any:
        """Keep the rows where ``predicate(partition)`` is True."""
        return _expose(self._t("filter").filter(predicate))

    def flatmap(self, func: Callable[[dict], Any], columns: Sequence[str] | None = None,
                reads: Sequence[str] | None = None, writes: Sequence[str] | None = None) -> Any:
        """Replace each row by the rows ``func(row_dict)`` yields (dicts); each keeps its input row's lineage."""
        return _expose(self._t("flatmap").flatmap(func, columns=columns, reads=reads, writes=writes))

    # -- columns
    def select(self, columns: str | Sequence[str]) -> Any:
        """Keep these columns, in this order."""
        return _expose(self._t("select").select(columns))

    def drop(self, columns: str | Sequence[str]) -> Any:
        """Drop these columns."""
        return _expose(self._t("drop").drop(columns))

    def rename(self, columns: Mapping[str, str]) -> Any:
        """Rename columns (``{old: new}``)."""
        return _expose(self._t("rename").rename(columns))

    def astype(self, dtype: Any) -> Any:
        """Cast columns, as ``DataFrame.astype``."""
        return _expose(self._t("astype").astype(dtype))

    def fillna(self, value: Any) -> Any:
        """Fill missing values, as ``DataFrame.fillna(value)``."""
        return _expose(self._t("fillna").fillna(value))

    def replace(self, to_replace: Any = None, value: Any = None) -> Any:
        """Replace values, as ``DataFrame.replace``."""
        return _expose(self._t("replace").replace(to_replace, value))

    # -- rows
    def dropna(self, subset: Sequence[str] | None = None, how: str = "any") -> Any:
        """Drop rows with missing values (in ``subset``)."""
        return _expose(self._t("dropna").dropna(subset=subset, how=how))

    def sort_values(self, by: str | Sequence[str], ascending: bool = True) -> Any:
        """Sort rows by columns."""
        return _expose(self._t("sort_values").sort_values(by, ascending=ascending))

    def drop_duplicates(self, subset: Sequence[str] | None = None, keep: str = "first") -> Any:
        """Drop duplicate rows, keeping the first (or last) of each."""
        return _expose(self._t("drop_duplicates").drop_duplicates(subset=subset, keep=keep))

    def sample(self, n: int | None = None, frac: float | None = None, replace: bool = False,
               random_state: int | None = None) -> Any:
        """Random rows; the seed is recorded (drawn when not given) so the sample can be replayed."""
        return _expose(self._t("sample").sample(n=n, frac=frac, replace=replace, random_state=random_state))

    def head(self, n: int = 5) -> Any:
        """The first ``n`` rows, as a tracked frame (lazy for Dask)."""
        return _expose(self._t("head").head(n))

    def explode(self, column: str | Sequence[str], ignore_index: bool = False) -> Any:
        """One row per element of list-like ``column``; each keeps its input row's lineage."""
        return _expose(self._t("explode").explode(column, ignore_index=ignore_index))

    # -- many rows
    def groupby(self, keys: str | Sequence[str], dropna: bool = True) -> GroupBy:
        """Group rows by key columns; follow with ``.agg(out=(column, function), ...)``."""
        return GroupBy(self._t("groupby"), keys, dropna)

    def merge(self, right: Any, how: str = "inner", on: str | Sequence[str] | None = None,
              left_on: str | Sequence[str] | None = None, right_on: str | Sequence[str] | None = None,
              suffixes: tuple[str, str] = ("_x", "_y")) -> Any:
        """Join with another tracked frame, as ``DataFrame.merge`` (inner, left, right, outer)."""
        left = self._t("merge")
        other = tracked_of(right, "merge (right frame)")
        return _expose(left.merge(other, how=how, on=on, left_on=left_on, right_on=right_on, suffixes=suffixes))


def concat(frames: Sequence[Any], ignore_index: bool = False) -> Any:
    """Stack tracked frames (all pandas or all Dask); each row keeps the lineage of its input.

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> a = pd.DataFrame({"x": [1]}).hippo.source("a")
    >>> b = pd.DataFrame({"x": [2]}).hippo.source("b")
    >>> hippo.concat([a, b], ignore_index=True)
       x
    0  1
    1  2
    """
    if isinstance(frames, (pd.DataFrame,)) or is_dask(frames):
        raise LineageError("concat: pass a list of frames")
    return _expose(_concat([tracked_of(f, f"concat (frame {i})") for i, f in enumerate(frames)], ignore_index=ignore_index))


def register() -> None:
    """Register ``.hippo`` on pandas and Dask DataFrames (done on import)."""
    import warnings

    import dask.dataframe as dd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # re-registration on reload warns
        pd.api.extensions.register_dataframe_accessor("hippo")(HippoAccessor)
        dd.extensions.register_dataframe_accessor("hippo")(HippoAccessor)
