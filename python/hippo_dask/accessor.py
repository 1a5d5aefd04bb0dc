"""The ``.hippo`` accessor on pandas and Dask DataFrames.

The accessor holds no state (pandas builds a new one on every ``df.hippo``).
Lineage lives in two weak registries keyed by the frame object: tracked
frames (the frame the user sees -> its :class:`~hippo_dask.frame.Tracked`)
and computed results (-> their :class:`~hippo_dask.lineage.Lineage`).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .compute import compute as _compute
from .partition import missing_columns, result_fingerprint
from .errors import ColumnError, LineageError, StaleResultError, UntrackedFrameError
from .frame import AGGREGATIONS, Tracked, concat as _concat, is_dask
from .lin import LineageType
from .lineage import Lineage
from .ml import Model
from .store import Store, get_store



class _Handle(str):
    """What rides in a frame's ``attrs``: shared (never deep-copied) by the copies pandas makes.

    pandas copies ``attrs`` into every frame derived from one (``copy``, ``pipe``,
    ``reset_index``, but also a plain ``df[mask]``), so a handle is only trusted
    after checking that the frame holding it is still the frame it was made for.

    A ``str`` to JSON: ``DataFrame.to_parquet`` writes ``attrs`` as JSON, so a result
    saved that way keeps this text, and read back it is a plain string (no lineage).
    Equal only to itself: pandas compares ``attrs`` when it combines frames.
    """

    def __new__(cls, value: Any, fingerprint: Any) -> "_Handle":
        handle = super().__new__(cls, "hippo_dask lineage (in memory only; reopen with hippo.open)")
        handle.value = value
        handle.fingerprint = fingerprint
        return handle

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return id(self)

    def __reduce__(self) -> tuple:
        return _Handle, (self.value, self.fingerprint)

    def __deepcopy__(self, memo: dict) -> "_Handle":
        return self

    def __copy__(self) -> "_Handle":
        return self


_TRACKED_ATTR = "hippo_tracked"
_RESULT_ATTR = "hippo_lineage"


def _buffer_key(values: Any) -> Any:
    """Identity of the memory behind a column block: the same for shallow copies, new after any write."""
    if isinstance(values, np.ndarray):
        return ("nd", values.__array_interface__["data"][0], values.shape, values.strides)
    for inner in ("_ndarray", "_codes"):
        if hasattr(values, inner):
            return (inner, _buffer_key(getattr(values, inner)))
    if hasattr(values, "_data") and hasattr(values, "_mask"):
        return ("masked", _buffer_key(values._data), _buffer_key(values._mask))
    if hasattr(values, "_pa_array"):
        return ("arrow", tuple(b.address if b is not None else 0 for chunk in values._pa_array.chunks
                               for b in chunk.buffers()), len(values))
    return ("object", id(values))


def _pandas_fingerprint(frame: pd.DataFrame) -> tuple:
    """Columns, index and the memory of every column: any in-place edit or plain pandas op changes it."""
    blocks = tuple(sorted((tuple(b.mgr_locs.as_array.tolist()), _buffer_key(b.values)) for b in frame._mgr.blocks))
    index = frame.index
    index_key = ("range", index.start, index.stop, index.step) if isinstance(index, pd.RangeIndex) else ("index", _buffer_key(index._values))
    return tuple(frame.columns), len(frame), index_key, blocks


def _fingerprint(frame: Any) -> Any:
    return ("dask", frame._name) if is_dask(frame) else _pandas_fingerprint(frame)


_UNTRACKED_HINT = (
    "start a pipeline with df.hippo.source('name') and use df.hippo.<operation> for every step "
    "(a plain pandas/Dask operation returns a frame without lineage)"
)

def tracked_of(obj: Any, what: str) -> Tracked:
    handle = _dask_tracked.get(obj._name) if is_dask(obj) else getattr(obj, "attrs", {}).get(_TRACKED_ATTR)
    if handle is None:
        previous = _dask_by_object.get(id(obj)) if is_dask(obj) else None
        if previous is not None and previous[0]() is obj:
            raise LineageError(f"{what}: this frame was changed in place after .hippo made it (a column set, "
                               "dropped or renamed); lineage cannot follow that: use .hippo.assign / .drop / .rename")
        raise UntrackedFrameError(f"{what}: this {type(obj).__name__} has no lineage; {_UNTRACKED_HINT}")
    if not isinstance(handle, _Handle):
        raise UntrackedFrameError(f"{what}: this {type(obj).__name__} has no lineage; {_UNTRACKED_HINT}")
    if handle.fingerprint != _fingerprint(obj):
        raise LineageError(
            f"{what}: this frame is not the one .hippo made: it was changed in place (a column set, edited, "
            "dropped or renamed) or made by a plain pandas operation, and lineage cannot follow that; "
            "use the .hippo operation instead (assign, filter, drop, rename, sort_values, ...)"
        )
    return handle.value


# Dask frames: keyed by expression name (copies share it); in-place edits change it.
_dask_tracked: "weakref.WeakValueDictionary[str, _Handle]" = weakref.WeakValueDictionary()
_dask_by_object: dict[int, tuple[weakref.ref, _Handle]] = {}


def _expose(tracked: Tracked) -> Any:
    view = tracked.user_view()
    handle = _Handle(tracked, _fingerprint(view))
    if is_dask(view):
        _dask_tracked[view._name] = handle
        key = id(view)
        _dask_by_object[key] = (weakref.ref(view, lambda _r, key=key: _dask_by_object.pop(key, None)), handle)
    else:
        view.attrs[_TRACKED_ATTR] = handle
    return view


# pandas names of the aggregations hippo runs, as GroupBy methods (``g.sum()``, ``g["x"].mean()``)
_AGG_METHODS = ("sum", "mean", "min", "max", "count", "nunique", "first", "last", "std", "var", "median", "prod")
# Python builtins pandas itself maps to these names (``agg(sum)`` is ``agg("sum")``)
_BUILTIN_AGGS = {sum: "sum", min: "min", max: "max", len: "size"}


def _agg_name(func: Any, where: str) -> Any:
    """The aggregation as ``agg`` takes it: a name hippo knows, or a function of one group's values."""
    if not isinstance(func, str):
        func = _BUILTIN_AGGS.get(func, func) if _hashable(func) else func
    if isinstance(func, str) and func in AGGREGATIONS:
        return func
    if callable(func) and not isinstance(func, str):
        return func  # called with one group's values of its column: its cell comes from those cells
    raise LineageError(
        f"groupby().{where}: unknown aggregation {func!r}; use one of {sorted(AGGREGATIONS)} by name, or a "
        "function of a group's values (e.g. agg(spread=('x', lambda s: s.max() - s.min())))"
    )


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _label(func: Any) -> str:
    """How pandas names a function's output column: its name (``<lambda>`` for a lambda)."""
    return func if isinstance(func, str) else getattr(func, "__name__", type(func).__name__)


class GroupBy:
    """``df.hippo.groupby(keys)``: aggregate each group, as pandas' ``groupby(keys, as_index=False)``.

    Takes pandas' common spellings: ``.agg(total=("x", "sum"))`` (or
    ``pd.NamedAgg``), a function of a group's values (``.agg(spread=("x",
    lambda s: s.max() - s.min()))``), ``.agg("sum")``, ``.agg(["sum", "mean"])``,
    ``.agg({"x": "sum", "y": ["min", "max"]})``, the methods ``.sum()``,
    ``.mean()``, ``.size()``, ``.count()``, ``.nunique()`` and the other
    aggregations, and a column selection ``g["x"].sum()`` / ``g[["x", "y"]].max()``.
    The result always has the keys as columns (lineage traces columns, not
    index labels). Where pandas would make two-level column names (a list of
    functions), the columns are named ``<column>_<function>``; a single
    selected column ``g["x"].agg(["sum", "mean"])`` gives ``sum`` and ``mean``,
    as pandas does.

    Lineage: each aggregated cell comes from its column over every row of the
    group, a key cell from the key over every row of the group; a ``size``
    cell from no column (its row's lineage is the group's rows).

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3], "y": [5, 6, 7]}).hippo.source("df")
    >>> df.hippo.groupby("k")["x"].sum()
       k  x
    0  a  4
    1  b  2
    >>> df.hippo.groupby("k").agg({"x": "sum", "y": ["min", "max"]})
       k  x  y_min  y_max
    0  a  4      5      7
    1  b  2      6      6
    """

    def __init__(self, tracked: Tracked, keys: str | Sequence[str], dropna: bool,
                 selection: str | Sequence[str] | None = None, as_index: bool = False) -> None:
        self._tracked = tracked
        self._keys = [keys] if isinstance(keys, str) else list(keys)
        self._dropna = dropna
        self._as_index = as_index
        # a column selection: g["x"] (one column, named like pandas' SeriesGroupBy) or g[["x", "y"]]
        self._selection = selection

    def __getitem__(self, columns: str | Sequence[str]) -> "GroupBy":
        if self._selection is not None:
            raise LineageError("groupby(): select columns once, e.g. g[['x', 'y']].sum()")
        picked = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in picked if c not in self._tracked.columns]
        if missing:
            raise ColumnError(f"groupby()[...]: unknown column(s) {missing}; the frame has {list(self._tracked.columns)}")
        keys = [c for c in picked if c in self._keys]
        if keys:
            raise ColumnError(f"groupby()[...]: {keys} are the group keys, which the result has anyway; select other columns")
        return GroupBy(self._tracked, self._keys, self._dropna, columns if isinstance(columns, str) else picked,
                       self._as_index)

    def _aggregate(self, named: Mapping[str, tuple[str, Any]]) -> Any:
        out = self._tracked.groupby_agg(self._keys, named, self._dropna)
        # as_index=True: the keys shown as the index, still columns of the lineage
        return _expose(out.set_index(self._keys) if self._as_index else out)

    def _values(self) -> list[str]:
        """The columns an aggregation without names applies to: the selection, else every non-key column."""
        if self._selection is not None:
            return [self._selection] if isinstance(self._selection, str) else list(self._selection)
        return [c for c in self._tracked.columns if c not in self._keys]

    def _named(self, func: Any, named: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """pandas' spellings as named aggregations: output column -> (input column, function)."""
        if func is not None and named:
            raise LineageError("groupby().agg: pass either a function spelling (agg('sum'), agg(['sum', 'mean']), "
                               "agg({'x': 'sum'})) or named aggregations (agg(total=('x', 'sum'))), not both")
        if func is None:
            out = {}
            for name, spec in named.items():
                if isinstance(spec, pd.NamedAgg):
                    if getattr(spec, "args", ()) or getattr(spec, "kwargs", {}):  # pandas 3 adds args / kwargs
                        raise LineageError(f"groupby().agg {name}=: pd.NamedAgg with args / kwargs is not supported; "
                                           "use a function name without arguments")
                    spec = (spec.column, spec.aggfunc)
                if not (isinstance(spec, tuple) and len(spec) == 2):
                    raise LineageError(f"groupby().agg {name}=: use a named aggregation (column, 'function') or "
                                       f"pd.NamedAgg(column, aggfunc), got {spec!r}")
                out[name] = (spec[0], _agg_name(spec[1], f"agg {name}="))
            return out
        values = self._values()
        single = isinstance(self._selection, str)  # g["x"].agg([...]) names outputs by function, like pandas
        if isinstance(func, Mapping):
            out = {}
            for column, funcs in func.items():
                if isinstance(funcs, (list, tuple)):
                    out.update({f"{column}_{_label(f)}": (column, f) for f in (_agg_name(f, "agg") for f in funcs)})
                else:
                    out[column] = (column, _agg_name(funcs, "agg"))
            return out
        if isinstance(func, (list, tuple)):
            funcs = [_agg_name(f, "agg") for f in func]
            return {(_label(f) if single else f"{c}_{_label(f)}"): (c, f) for c in values for f in funcs}
        name = _agg_name(func, "agg")
        if name == "size":
            return self._size()
        return {c: (c, name) for c in values}

    def _size(self) -> dict[str, tuple[str, Any]]:
        return {"size": (self._keys[0], "size")}

    def agg(self, func: Any = None, /, **named: Any) -> Any:
        """Aggregate each group; keys come back as columns.

        Parameters
        ----------
        func : str, list, or dict, optional
            pandas' spellings: one function for every non-key (or selected)
            column (``"sum"``), several (``["sum", "mean"]``: columns
            ``<column>_<function>``), or per column (``{"x": "sum", "y":
            ["min", "max"]}``).
        **named : (column, function) or pd.NamedAgg
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
        return self._aggregate(self._named(func, named))

    aggregate = agg

    def size(self) -> Any:
        """Rows per group, in a column ``size`` (as pandas' ``groupby(..., as_index=False).size()``)."""
        return self._aggregate(self._size())

    def transform(self, func: Any = None, /, **named: tuple[str, str]) -> Any:
        """Give every row its group's aggregates as new columns; same rows, same order.

        Like ``df.assign(out=df.groupby(keys)[column].transform(func))``. Lineage:
        each ``out`` cell comes from ``column`` of every row of the row's group
        (none for a row whose key is missing when ``dropna=True``: it gets NaN).

        pandas' spellings work too: ``g.transform("sum")`` gives, as pandas,
        a frame of the non-key (or selected) columns, each value replaced by its
        group's aggregate; ``g["x"].transform("sum")`` (a Series in pandas) is
        a value for :meth:`HippoAccessor.assign` on the grouped frame:
        ``df.hippo.assign(total=df.hippo.groupby("k")["x"].transform("sum"))``.

        Parameters
        ----------
        func : str, optional
            One of the aggregations of :meth:`agg`, by name (pandas' spelling).
        **named : (column, function)
            New column -> (input column, one of the aggregations of :meth:`agg`).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
        >>> out = df.hippo.groupby("k").transform(total=("x", "sum")).hippo.compute()
        >>> out.total.tolist(), out.hippo.lineage.backward(rows=[0], columns=["total"])["df"].rows
        ([4, 2, 4], array([0, 2]))
        >>> df.hippo.assign(total=df.hippo.groupby("k")["x"].transform("sum"))
           k  x  total
        0  a  1      4
        1  b  2      2
        2  a  3      4
        """
        if func is None:
            return _expose(self._tracked.groupby_transform(self._keys, {k: tuple(v) for k, v in named.items()},
                                                           self._dropna))
        if named:
            raise LineageError("groupby().transform: pass a function name (transform('sum')) or named outputs "
                               "(transform(x_sum=('x', 'sum'))), not both")
        name = _agg_name(func, "transform")
        if not isinstance(name, str):
            raise LineageError("groupby().transform: name one of the aggregations (transform('sum'), 'mean', ...); a "
                               "function of a group's values is taken by agg(...) only")
        if isinstance(self._selection, str) or name == "size":  # pandas gives a Series here
            column = self._selection if isinstance(self._selection, str) else self._keys[0]
            return GroupTransform(self._tracked, self._keys, column, name, self._dropna)
        values = self._values()
        made: dict[str, str] = {}
        for column in values:
            made[column] = _fresh_name(list(self._tracked.columns) + list(made.values()), f"{column}_{name}")
        out = self._tracked.groupby_transform(self._keys, {made[c]: (c, name) for c in values}, self._dropna)
        return _expose(out.select([made[c] for c in values]).rename({made[c]: c for c in values}))


class GroupTransform:
    """``g["x"].transform("sum")``: in pandas a Series aligned with the grouped frame; here a value for
    ``df.hippo.assign(name=...)`` on that frame, which adds the column with the group's lineage."""

    def __init__(self, tracked: Tracked, keys: list[str], column: str, func: str, dropna: bool) -> None:
        self.tracked, self.keys, self.column, self.func, self.dropna = tracked, keys, column, func, dropna
        self.reads = list(keys) + [column]

    def onto(self, origin: Tracked, tracked: Tracked, name: str) -> Tracked:
        """``tracked`` (``origin`` with columns assigned, same rows) with column ``name``: each row's group aggregate."""
        if origin.node.id != self.tracked.node.id:
            raise LineageError(f"assign: this groupby().transform(...) was made from another frame; group the "
                               "frame you assign to (df.hippo.assign(c=df.hippo.groupby(k)[col].transform(f)))")
        if name not in tracked.columns:
            return tracked.groupby_transform(self.keys, {name: (self.column, self.func)}, self.dropna)
        # replacing a column: made under another name, then put in its place (nothing runs in between)
        temporary = _fresh_name(list(tracked.columns), f"{name}_{self.func}")
        out = tracked.groupby_transform(self.keys, {temporary: (self.column, self.func)}, self.dropna)
        return out.drop([name]).rename({temporary: name}).select(list(tracked.columns))

    def __repr__(self) -> str:
        return (f"<groupby({self.keys})[{self.column!r}].transform({self.func!r}): a column for "
                f"df.hippo.assign(name=...)>")


def _aggregation_method(name: str) -> Callable[[GroupBy], Any]:
    def method(self: GroupBy) -> Any:
        return self.agg(name)

    method.__name__ = name
    method.__doc__ = (f"``{name}`` of every non-key (or selected) column per group, as pandas' "
                      f"``groupby(keys, as_index=False).{name}()``; the columns keep their names.")
    return method


for _name in _AGG_METHODS:
    setattr(GroupBy, _name, _aggregation_method(_name))


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
        tracked = tracked_of(self._obj, what)
        if tracked.index and what not in _KEEP_INDEX:
            raise LineageError(
                f"{what} after set_index: hippo takes, on a frame with an index set, only "
                f"{', '.join(sorted(_KEEP_INDEX - {'filter_mask'}))} and loc[mask] / filter(boolean Series); "
                f"call .hippo.reset_index() first (the index columns come back as columns), or set the index later")
        return tracked

    # -- state
    @property
    def is_tracked(self) -> bool:
        """Whether this frame carries lineage (came from ``.hippo`` operations, unchanged since)."""
        try:
            tracked_of(self._obj, "is_tracked")
        except LineageError:
            return False
        return True

    @property
    def lineage(self) -> Lineage:
        """The lineage of a computed result (see :meth:`compute`).

        Queries take row *positions* in this frame. It must hold the rows
        ``compute()`` returned, in that order: copies and ``reset_index`` are
        fine; a result filtered, re-sorted or edited since is refused with
        :class:`~hippo_dask.errors.StaleResultError` (open the run with
        :func:`hippo_dask.open` to query the stored result instead).
        """
        handle = getattr(self._obj, "attrs", {}).get(_RESULT_ATTR) if not is_dask(self._obj) else None
        if isinstance(handle, str) and not isinstance(handle, _Handle):
            raise UntrackedFrameError(
                "lineage: this frame was saved and read back (to_parquet keeps only a note of its lineage): open the "
                "run it came from with hippo.open(store, run_id); queries take the same row positions")
        if not isinstance(handle, _Handle):
            raise UntrackedFrameError(
                "lineage: this frame is not a computed result; call .hippo.compute() on a tracked frame "
                "and use the frame it returns (or hippo.open(store, run_id))"
            )
        lineage: Lineage = handle.value
        missing = missing_columns(self._obj, lineage.columns)
        if missing or result_fingerprint(self._obj, lineage.columns) != handle.fingerprint:
            raise StaleResultError(
                f"lineage: this frame's rows are not the result of run {lineage.run_id} as computed "
                f"({'columns ' + str(missing) + ' are gone' if missing else 'rows were filtered, re-sorted or edited'}); "
                "positions would name other rows. Query the unchanged result, or "
                f"hippo.open({lineage.store.url!r}, {lineage.run_id!r}) for the stored one"
            )
        lineage._result_frame = weakref.ref(self._obj)  # lin.without() starts from these values
        return lineage

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

    def compute(self, progress: bool | None = None, **compute_kwargs: Any) -> pd.DataFrame:
        """Compute the frame; commit its lineage; return a plain pandas DataFrame.

        The returned frame's ``.hippo.lineage`` answers queries; its
        ``run_id`` reopens them later with :func:`hippo_dask.open`.
        Keyword arguments go to ``dask.compute`` (e.g. ``scheduler=``).

        ``progress``: a progress bar on stderr while Dask computes (Dask's own:
        ``distributed.progress`` on a cluster, ``dask.diagnostics.ProgressBar``
        otherwise). By default on when stderr is a terminal, unless the
        environment variable ``HIPPO_PROGRESS`` is ``0``; ``progress=False``
        turns it off, ``True`` on. pandas frames compute step by step as they
        are built, so there is nothing to show for them.
        """
        tracked = self._t("compute")
        result, run_id = _compute(tracked, progress=progress, **compute_kwargs)
        if tracked.index:  # set_index: shown as the index, still columns of the lineage (queries name them)
            result = result.set_index(list(tracked.index))
        lineage = Lineage(tracked.store, run_id)
        # compute() fingerprinted this very frame for the manifest, on all its columns: reuse that
        recorded = lineage.manifest.get("result", {}).get("fingerprint")
        if isinstance(recorded, list) and len(recorded) == 2 and lineage.columns == list(result.columns):
            fingerprint = (int(recorded[0]), str(recorded[1]))
        else:
            fingerprint = result_fingerprint(result, lineage.columns)
        result.attrs[_RESULT_ATTR] = _Handle(lineage, fingerprint)
        return result

    def to_parquet(self, path: str, storage_options: Mapping[str, Any] | None = None, progress: bool | None = None,
                   **compute_kwargs: Any) -> Lineage:
        """Compute the frame and write it as parquet from the workers, with its lineage; gather nothing.

        Each result partition is finished where it was computed: its rows go to
        ``path/part-NNNNN.parquet`` and its lineage fragment into the run; the
        run's manifest is written last, so a result larger than one machine's
        memory can be captured. Result row positions (what queries take) are
        the rows in file-name order, as ``dd.read_parquet(path)`` and
        ``pd.read_parquet(path)`` read them.

        Parameters
        ----------
        path : str
            A folder (local or fsspec URL) that does not exist yet or is empty.
        storage_options : mapping, optional
            fsspec options for ``path``.
        progress : bool, optional
            A progress bar on stderr, as for :meth:`compute`.
        **compute_kwargs
            Passed to ``dask.compute`` (e.g. ``scheduler=client``).

        Returns
        -------
        Lineage
            The committed run (``hippo.open(store, run_id)`` reopens it).

        Examples
        --------
        >>> import pandas as pd, dask.dataframe as dd, hippo_dask as hippo, tempfile, os
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = dd.from_pandas(pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}), npartitions=2)
        >>> folder = os.path.join(tempfile.mkdtemp(), "out")
        >>> lin = df.hippo.source("df").hippo.filter(lambda p: p.x > 1).hippo.to_parquet(folder)
        >>> pd.read_parquet(folder)
           k  x
        0  b  2
        1  a  3
        >>> lin.backward(rows=[1])["df"].rows
        array([2])
        """
        import fsspec

        tracked = self._t("to_parquet")
        fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        if fs.exists(root) and (not fs.isdir(root) or fs.ls(root)):
            raise LineageError(f"to_parquet: {path} exists and is not an empty folder; choose a new folder (files "
                               "already there would be read as rows of this result)")
        fs.makedirs(root, exist_ok=True)
        _, run_id = _compute(tracked, parquet={"path": path, "storage_options": dict(storage_options or {})},
                             progress=progress, **compute_kwargs)
        return Lineage(tracked.store, run_id)

    # -- user code
    def map(self, func: Callable[..., pd.DataFrame], reads: Sequence[str] | None = None,
            writes: Sequence[str] | None = None, meta: Any = None, lineage: LineageType | None = None,
            **kwargs: Any) -> Any:
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
        lineage : hippo.lin.Rowwise, All or Window, optional
            How a written value depends on the rows the function saw (default:
            row-wise, checked on every partition; see :mod:`hippo_dask.lin`).
        """
        return _expose(self._t("map").map(func, reads=reads, writes=writes, meta=meta, lineage=lineage, **kwargs))

    def assign(self, lineage: LineageType | None = None, **assignments: Any) -> Any:
        """Add or replace columns from callables (``lambda p: ...``) or scalars.

        Each callable is checked to be row-wise on every partition (a row's value
        must not change when other rows are left out, nor when columns it does not
        read are scrambled); a function whose values depend on other rows must
        declare it with ``lineage=hippo.lin.All(...)`` or ``hippo.lin.Window(...)``.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"x": [1.0, 2.0, 4.0]}).hippo.source("df")
        >>> out = df.hippo.assign(prev=lambda p: p.x.shift(1), lineage=hippo.lin.Window(reads=["x"], preceding=1))
        >>> out.hippo.compute().hippo.lineage.backward(rows=[2], columns=["prev"])["df"].rows
        array([1, 2])

        A Series is taken when it is one of this frame's columns, unchanged
        (``assign(c=df.x)``): on pandas its memory shows it, on Dask its
        expression. A Series computed
        outside hippo (``df.x * 2``) is refused, since nothing shows which
        cells made it: write the same expression as a callable
        (``assign(c=lambda p: p.x * 2)``).
        """
        origin = self._t("assign")
        values = {name: self._column_of(name, value) for name, value in assignments.items()}
        if not any(isinstance(v, (GroupTransform, _Column)) for v in values.values()):
            return _expose(origin.assign(lineage=lineage, **values))
        # pandas computes a Series argument (df.x, g["x"].transform("sum")) before assigning anything;
        # hippo computes it at its turn, from the frame as assigned so far: the same values unless an
        # earlier assignment of this call replaced a column it reads, which is refused
        tracked, written = origin, []
        for name, value in values.items():
            if isinstance(value, (GroupTransform, _Column)):
                replaced = [c for c in value.reads if c in written]
                if replaced:
                    raise LineageError(
                        f"assign {name}=: the Series was computed from {replaced} before this assign replaced "
                        f"{'it' if len(replaced) == 1 else 'them'} (pandas uses the old values); assign in two calls")
                tracked = value.onto(origin, tracked, name)
            else:
                tracked = tracked.assign(lineage=lineage, **{name: value})
            written.append(name)
        return _expose(tracked)

    def _column_of(self, name: str, value: Any) -> Any:
        """A Series that is one of this frame's columns, as a picklable copy of it; anything else as given."""
        if is_dask(self._obj) and is_dask(value) and getattr(value, "ndim", 0) == 1:
            # Dask: the very expression of a column of this frame (``ddf.x``), named by its token
            same = [c for c in self._obj.columns if self._obj[c]._name == value._name]
            return _Column(same[0]) if len(same) == 1 else value
        if not isinstance(value, pd.Series) or is_dask(self._obj) or not value.index.equals(self._obj.index):
            return value
        # taken from this very frame (pandas hands a frame's attrs to its columns): two sources of
        # one DataFrame share its memory, and b.y must not pass for a's column
        if value.attrs.get(_TRACKED_ATTR) is not self._obj.attrs.get(_TRACKED_ATTR):
            return value
        memory = _buffer_key(value.array)
        # the same memory: the column itself (copy-on-write: never edited since)
        same = [c for c in self._obj.columns
                if _buffer_key(self._obj[c].array) == memory and value.dtype == self._obj[c].dtype]
        if len(same) > 1:  # copy-on-write lets columns share memory (x.fillna(z) without holes is x) and lineage differ
            raise LineageError(f"assign {name}=: this Series shares its memory with columns {same}, so hippo cannot "
                               f"tell which it is; write assign({name}=lambda p: p[<column>])")
        return _Column(same[0]) if same else value

    def filter(self, predicate: Callable[[pd.DataFrame], Any], lineage: LineageType | None = None) -> Any:
        """Keep the rows where ``predicate(partition)`` is True.

        The predicate is checked to be row-wise on every partition; one that
        compares rows with each other (``p.x > p.x.mean()``) must say so with
        ``lineage=hippo.lin.All(...)``. Either way a kept row's cells trace to
        the same row (the predicate's columns are not values of the output).
        """
        tracked = self._t("filter" if callable(predicate) else "filter_mask")
        if callable(predicate):
            return _expose(tracked.filter(predicate, lineage=lineage))
        return _expose(tracked.filter_mask(self._mask(predicate, "filter")))

    def _mask(self, mask: Any, what: str) -> np.ndarray:
        """A boolean Series (or array) over this frame's rows, as positions; refused when it is over other rows."""
        if is_dask(mask) != is_dask(self._obj):
            raise LineageError(f"{what}: the boolean Series and the frame must be both pandas or both Dask; compute "
                               "the Series from this frame (df.x > 0)")
        if is_dask(mask):
            return mask  # checked partition by partition against the frame's (Tracked.filter_mask)
        if isinstance(mask, pd.Series):
            if not mask.index.equals(self._obj.index):
                raise LineageError(f"{what}: the boolean Series has another index than the frame; compute it from this "
                                   "frame (e.g. df.x > 0) so each value belongs to the row at the same position")
            if mask.hasnans:
                raise LineageError(f"{what}: the boolean Series has missing values; fill them first (mask.fillna(False))")
            # only a boolean Series is a mask: numbers would be cast to bool (0 -> drop), which pandas never does
            mask = mask.to_numpy(dtype=bool) if pd.api.types.is_bool_dtype(mask.dtype) else mask.to_numpy()
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise LineageError(f"{what}: pass a callable (lambda p: p.x > 0) or a boolean Series / array "
                               f"with one value per row, got {mask.dtype}")
        return mask

    @property
    def loc(self) -> "_Loc":
        """Select rows and columns, as ``DataFrame.loc``, with lineage.

        ``df.hippo.loc[mask]`` keeps the rows where a boolean Series of this
        frame (``df.x > 0``; on Dask each of its partitions must have the
        index of the frame's partition, checked on the workers) or a function
        of the frame (``lambda p: p.x > 0``) is True; ``df.hippo.loc[mask, ["a", "b"]]``
        also keeps those columns, ``df.hippo.loc[:, "a"]`` only a column (a
        one-column frame, where pandas gives a Series). Row labels are not
        supported: select rows by a condition.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"a": [1, -2, 3], "b": [4, 5, 6]}).hippo.source("df")
        >>> df.hippo.loc[df.a > 0, ["b"]]
           b
        0  4
        2  6
        """
        return _Loc(self)

    def query(self, expr: str, **kwargs: Any) -> Any:
        """Keep the rows where the expression is True, as ``DataFrame.query``.

        The columns the expression names are the filter's reads (checked like
        a :meth:`filter` predicate's); ``@name`` takes a variable of the
        caller, as pandas does (its value is captured when ``query`` is
        called). Keyword arguments go to ``DataFrame.eval`` (``engine=``, ...).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"a": [1, -2, 3], "b": [4, 5, 6]}).hippo.source("df")
        >>> low = 0
        >>> df.hippo.query("a > @low and b < 6")
           a  b
        0  1  4
        """
        import re
        import sys

        from .lin import Rowwise

        tracked = self._t("query")
        if not isinstance(expr, str) or not expr.strip():
            raise LineageError("query: pass an expression string, e.g. df.hippo.query('a > 0 and b < 5')")
        if any(k in kwargs for k in ("inplace", "local_dict", "global_dict", "resolvers", "level", "target")):
            raise LineageError("query: inplace, local_dict, global_dict, resolvers, level and target are not supported; "
                               "refer to variables with @name")
        reads, variables = _query_names(expr, tracked.columns)
        if tracked.index and re.search(r"\bindex\b", re.sub(r"`[^`]*`", "", expr)):
            raise LineageError(f"query: after set_index, name the index by its column name {list(tracked.index)}, "
                               "not 'index'")
        caller = sys._getframe(1)
        scope = {**caller.f_globals, **caller.f_locals}
        missing = [v for v in variables if v not in scope]
        if missing:
            raise LineageError(f"query: {['@' + v for v in missing]} name no variable of the caller")
        predicate = _Query(expr, {v: scope[v] for v in variables}, dict(kwargs))
        return _expose(tracked.filter(predicate, lineage=Rowwise(reads=reads) if reads is not None else None))

    def nlargest(self, n: int, columns: str | Sequence[str], keep: str = "first") -> Any:
        """The ``n`` rows with the largest values, as ``DataFrame.nlargest(n, columns)`` (``keep="first"``).

        A sort by ``columns`` (descending) then the first ``n`` rows. On pandas
        the sort is stable, so ties keep their order, which is what
        ``keep="first"`` picks; Dask's sort breaks ties in no set order, so
        among tied rows others may be picked (each traces to its own row).
        """
        return self._top(n, columns, keep, ascending=False, what="nlargest")

    def nsmallest(self, n: int, columns: str | Sequence[str], keep: str = "first") -> Any:
        """The ``n`` rows with the smallest values, as ``DataFrame.nsmallest(n, columns)`` (``keep="first"``)."""
        return self._top(n, columns, keep, ascending=True, what="nsmallest")

    def _top(self, n: int, columns: str | Sequence[str], keep: str, ascending: bool, what: str) -> Any:
        if keep != "first":
            raise LineageError(f"{what}: only keep='first' is supported; sort_values(...) and head(n) spell the others")
        tracked = self._t(what)
        tracked._refuse_index_columns(what, [columns] if isinstance(columns, str) else columns)  # pandas: KeyError
        return _expose(tracked.sort_values(columns, ascending=ascending).head(n))

    def value_counts(self, subset: str | Sequence[str] | None = None, dropna: bool = True,
                     ascending: bool = False) -> Any:
        """How many rows have each combination of values, as ``DataFrame.value_counts``.

        A frame with the ``subset`` columns (default: all) and ``count``, most
        frequent first (ties in key order), where pandas gives a Series with
        the values as its index. Each row traces to every row with its values.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"]}).hippo.source("df")
        >>> df.hippo.value_counts("k")
           k  count
        0  a      2
        1  b      1
        """
        tracked = self._t("value_counts")
        keys = list(tracked.columns) if subset is None else ([subset] if isinstance(subset, str) else list(subset))
        if "count" in keys:
            raise ColumnError("value_counts: a column is already named 'count'; rename it first")
        counts = tracked.groupby_agg(keys, {"count": (keys[0], "size")}, dropna)
        return _expose(counts.sort_values(["count"], ascending=ascending))

    def pipe(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(df, *args, **kwargs)``, as ``DataFrame.pipe``: for chains of functions that use ``.hippo`` steps."""
        self._t("pipe")
        return func(self._obj, *args, **kwargs)

    def clip(self, lower: Any = None, upper: Any = None) -> Any:
        """Bound the values of every column, as ``DataFrame.clip(lower, upper)`` with scalar bounds.

        Each cell traces to the same cell (one step per column, each reading
        only its own column).
        """
        if not all(b is None or np.isscalar(b) for b in (lower, upper)):
            raise LineageError("clip: only scalar bounds are supported; for per-row bounds use "
                               "df.hippo.assign(x=lambda p: p.x.clip(p.lo, p.hi))")
        tracked = self._t("clip")
        for column in tracked.columns:
            tracked = tracked.assign(**{column: _Clip(column, lower, upper)})
        return _expose(tracked)

    def __getattr__(self, name: str) -> Any:
        hint = _NEAREST.get(name)
        if hint is None or name.startswith("_"):
            raise AttributeError(f"'.hippo' has no attribute {name!r}")
        raise AttributeError(f"df.hippo.{name} is not supported: {hint}")

    def check(self, predicate: Callable[[pd.DataFrame], Any], name: str, lineage: LineageType | None = None) -> Any:
        """Record the rows that break a rule, without stopping or changing the pipeline.

        Every row passes through unchanged (a one-to-one step, like a
        :meth:`filter` that keeps every row). While each partition is computed
        (on the workers, for Dask), ``predicate(partition)`` is evaluated and
        the rows for which it is **not True** are recorded in the run:
        :meth:`hippo_dask.Lineage.violations` then gives them with the source
        rows and cells behind them (the cells of the columns the predicate
        reads, found as for :meth:`filter`).

        Parameters
        ----------
        predicate : callable
            ``predicate(frame) -> boolean Series`` (or array), one value per row,
            **True for the rows that are OK** (the convention of :meth:`filter`:
            the rows a filter would keep). A missing value (nullable booleans)
            counts as not OK. It is checked to be row-wise like a filter's
            predicate; one that compares rows (``p.x < 3 * p.x.std()``) says
            so with ``lineage=hippo.lin.All(...)``. A predicate that raises
            fails the run as any user function does (:class:`hippo_dask.UserFunctionError`).
        name : str
            Unique in the run (an identifier: letters, digits, underscores).
        lineage : hippo.lin.Rowwise or All, optional
            As for :meth:`filter`.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"age": [30, -4, 51], "w": [1, 2, 3]}).hippo.source("people")
        >>> out = df.hippo.check(lambda p: p.age >= 0, name="age_ok").hippo.filter(lambda p: p.w > 1).hippo.compute()
        >>> v = out.hippo.lineage.violations("age_ok")
        >>> v.count, v.trace["people"].cells.values.tolist(), v.result_rows
        (1, [[1, 'age']], array([0]))
        """
        return _expose(self._t("check").check(predicate, name, lineage=lineage))

    def validate(self, schema: Any, name: str | None = None) -> Any:
        """Validate with a pandera ``DataFrameSchema``, recording every failure case; never stops the pipeline.

        Each partition is validated lazily (``schema.validate(part, lazy=True)``,
        on the workers for Dask); rows pass through unchanged (the schema's
        coercions are not applied). Every failure case pandera reports is
        recorded with the row it is about, so
        :meth:`hippo_dask.Lineage.violations` maps it to the source rows and
        cells behind it (the failing column's cells; the row lineage for a
        check of the whole frame). Cases about a whole partition (a missing
        column, a wrong dtype) have no row. Needs pandera
        (``pip install 'hippo_dask[validate]'``).

        Parameters
        ----------
        schema : pandera.DataFrameSchema or DataFrameModel
            The schema.
        name : str, optional
            Unique in the run; default: the schema's name, else ``"schema"``.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> import pandera.pandas as pa
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> schema = pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(0))})
        >>> df = pd.DataFrame({"age": [30, -4, 51]}).hippo.source("people")
        >>> v = df.hippo.validate(schema, name="people_ok").hippo.compute().hippo.lineage.violations("people_ok")
        >>> v.cases[["check", "column", "failure_case", "violation", "people"]]
                                 check column failure_case  violation people
        0  greater_than_or_equal_to(0)    age           -4          0   (1,)
        """
        return _expose(self._t("validate").validate(schema, name=name))

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
        """Sort rows by columns (or index levels, named as pandas does)."""
        return _expose(self._t("sort_values").sort_values(by, ascending=ascending))

    def sort_index(self, ascending: bool = True) -> Any:
        """Sort rows by the index set with :meth:`set_index` (a sort by its columns)."""
        tracked = self._t("sort_index")
        if not tracked.index:
            raise LineageError("sort_index: this frame has no index set (its row labels are not tracked); sort by "
                               "columns with sort_values(...), or set_index(...) first")
        return _expose(tracked.sort_values(list(tracked.index), ascending=ascending))

    def set_index(self, keys: str | Sequence[str], drop: bool = True, append: bool = False) -> Any:
        """Show columns as the row index, as ``DataFrame.set_index``; their cells keep lineage.

        The index columns stay part of the lineage: queries name them like
        columns (``lin.backward(rows=[0], columns=["id"])``), and the frame
        ``compute()`` returns has them as its index. Until
        :meth:`reset_index`, a frame with an index set takes the steps that
        keep an index in pandas (:meth:`join`, :meth:`sort_index`,
        :meth:`sort_values`, :meth:`query`, ``loc[mask]``, column selection,
        :meth:`drop`, :meth:`rename`, :meth:`astype`, :meth:`fillna`,
        :meth:`dropna`, :meth:`drop_duplicates`, :meth:`head` / :meth:`tail`
        / :meth:`sample`, :meth:`compute`); others say to call ``reset_index()``
        first. The rows keep their order, on Dask too (Dask's own
        ``set_index`` sorts them: call :meth:`sort_index` for that); on Dask
        the index is one column (Dask has no MultiIndex).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"id": [7, 3], "x": [1.5, 2.5]}).hippo.source("df")
        >>> out = df.hippo.set_index("id").hippo.compute()
        >>> out
              x
        id     
        7   1.5
        3   2.5
        >>> out.hippo.lineage.backward(rows=[1], columns=["id"])["df"].cells
           row column
        0    1     id
        """
        if not drop or append:
            raise LineageError("set_index: drop=False and append=True are not supported; copy the column first "
                               "(df.hippo.assign(id2=lambda p: p.id).hippo.set_index('id2')) or set all levels at once")
        return _expose(self._t("set_index").set_index(keys))

    def reset_index(self, level: str | Sequence[str] | None = None, drop: bool = False) -> Any:
        """Move the index set with :meth:`set_index` back to columns (first), as ``DataFrame.reset_index``.

        ``drop=True`` drops the index instead; ``level=`` moves some levels
        only. Rows are numbered 0..n-1 again. A frame without an index set
        has row labels hippo does not track: ``reset_index(drop=True)`` is
        fine, ``reset_index()`` is refused (its column would have no lineage).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
        >>> df.hippo.groupby("k", as_index=True).sum().hippo.reset_index()
           k  x
        0  a  4
        1  b  2
        """
        return _expose(self._t("reset_index").reset_index(level=level, drop=drop))

    def join(self, other: Any, on: str | Sequence[str] | None = None, how: str = "left", lsuffix: str = "",
             rsuffix: str = "", sort: bool = False, validate: str | None = None) -> Any:
        """Match ``other``'s index, as ``DataFrame.join``: a :meth:`merge` on the index set with :meth:`set_index`.

        ``other`` must have an index set (``other.hippo.set_index(key)``);
        ``on=`` names this frame's columns to match it with, by default this
        frame's own index. The result keeps this frame's index. Lineage is the
        merge's: a cell copied from a side traces to that side's row, a key
        cell to both rows. ``how="right"`` / ``"outer"`` need the keys named
        alike on both sides (one key column in the result).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> people = pd.DataFrame({"id": [1, 2], "age": [30, 40]}).hippo.source("people")
        >>> visits = pd.DataFrame({"pid": [2, 1, 2], "cost": [5, 6, 7]}).hippo.source("visits")
        >>> visits.hippo.join(people.hippo.set_index("id"), on="pid")
           pid  cost  age
        0    2     5   40
        1    1     6   30
        2    2     7   40
        """
        if sort:
            raise LineageError("join(sort=True): sort afterwards with .hippo.sort_index() / sort_values(...)")
        if how not in ("left", "inner", "right", "outer"):
            raise LineageError(f"join: how must be left, inner, right or outer, got {how!r}")
        left = self._t("join")
        return _expose(left.join(tracked_of(other, "join (other frame)"), on=on, how=how, lsuffix=lsuffix,
                                 rsuffix=rsuffix, validate=validate))

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

    def apply(self, func: Callable[..., Any], axis: int | str = 0, name: str | None = None,
              reads: Sequence[str] | None = None, args: tuple = (), **kwargs: Any) -> Any:
        """``func(row)`` for every row, as ``DataFrame.apply(func, axis=1)``, added as column ``name``.

        pandas returns the values as a Series (``df.assign(c=df.apply(func,
        axis=1))``); hippo adds them to the frame: ``df.hippo.apply(func,
        axis=1, name="c")``. Each value traces to the cells of its row that
        ``func`` reads: found by calling it on a few rows that record which
        fields it looks up (``row["x"]``, ``row.x``, ``row.get("x")``), all
        columns when that cannot tell (the function calls row methods), or
        ``reads=``; then checked on every partition like any row-wise function.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"a": [1, 2], "b": [3, 4], "c": [5, 6]}).hippo.source("df")
        >>> out = df.hippo.apply(lambda row: row["a"] * 10 + row.b, axis=1, name="ab").hippo.compute()
        >>> out.ab.tolist(), out.hippo.lineage.backward(rows=[1], columns=["ab"])["df"].cells.column.tolist()
        ([13, 24], ['a', 'b'])
        """
        from .lin import Rowwise

        if axis not in (1, "columns"):
            raise LineageError("apply: only axis=1 (one call per row) is supported; for a function of each column use "
                               "df.hippo.assign(x=lambda p: f(p.x)), or df.hippo.map(func) for the whole frame")
        if not isinstance(name, str):
            raise LineageError("apply(func, axis=1): name the new column, e.g. df.hippo.apply(func, axis=1, name='c') "
                               "(pandas returns the values as a Series: df.assign(c=df.apply(func, axis=1)))")
        tracked = self._t("apply")
        if reads is None:
            reads = _row_reads(func, tracked._probe(), args, kwargs)
        row_apply = _RowApply(func, tuple(args), dict(kwargs), reads)
        return _expose(tracked.assign(lineage=Rowwise(reads=reads) if reads is not None else None, **{name: row_apply}))

    def tail(self, n: int = 5) -> Any:
        """The last ``n`` rows, as a tracked frame; on Dask, Dask's ``tail`` (the last partition's last rows)."""
        return _expose(self._t("tail").tail(n))

    def where(self, cond: Callable[[pd.DataFrame], Any], other: Any = np.nan) -> Any:
        """Keep values where ``cond(frame)`` is True, else ``other``, as ``DataFrame.where``.

        ``cond`` is a function of the frame giving a boolean frame (``lambda p:
        p > 0``) or one boolean per row (``lambda p: p.x > 0``); ``other`` a
        scalar or a function of the frame. Each cell traces to itself and to the
        cells of its row that ``cond`` (and ``other``) read: one row-wise
        :meth:`assign` per column, each checked like any other.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"a": [1, -2], "b": [3.0, 4.0]}).hippo.source("df")
        >>> out = df.hippo.where(lambda p: p.a > 0, 0).hippo.compute()
        >>> out.values.tolist(), out.hippo.lineage.backward(rows=[1], columns=["b"])["df"].cells.column.tolist()
        ([[1.0, 3.0], [0.0, 0.0]], ['a', 'b'])
        """
        return self._where("where", cond, other, keep=True)

    def mask(self, cond: Callable[[pd.DataFrame], Any], other: Any = np.nan) -> Any:
        """Replace values where ``cond(frame)`` is True by ``other``, as ``DataFrame.mask`` (lineage as :meth:`where`)."""
        return self._where("mask", cond, other, keep=False)

    def _where(self, what: str, cond: Any, other: Any, keep: bool) -> Any:
        if not callable(cond):
            raise LineageError(f"{what}: pass the condition as a function of the frame, e.g. lambda p: p > 0 or "
                               "lambda p: p.x > 0 (a condition computed outside hippo has no lineage to follow)")
        if not (callable(other) or np.isscalar(other) or other is None or other is pd.NA):
            raise LineageError(f"{what}: other must be a scalar or a function of the frame")
        from . import partition as P

        tracked = self._t(what)
        columns = list(tracked.columns)
        # A condition that reads the whole frame (p > 0) must not see the new columns made below
        # (p.sum(axis=1) would change): it gets the original columns only. One that names its
        # columns (p.x > 0) is left as it is, so its cells' lineage stays exact.
        probe = tracked._probe()
        whole = any(P.infer_reads(f, probe)[0] is None for f in ([cond, other] if callable(other) else [cond]))
        # New values go to new columns first, so every condition sees the values as they were
        made = {c: _fresh_name(columns, f"{c}_{what}") for c in columns}
        for column in columns:
            tracked = tracked.assign(**{made[column]: _Where(column, cond, other, keep, columns if whole else None,
                                                             settle=tracked.is_dask)})
        tracked = tracked.drop(columns).rename({made[c]: c for c in columns})
        return _expose(tracked)

    def explode(self, column: str | Sequence[str], ignore_index: bool = False) -> Any:
        """One row per element of list-like ``column``; each keeps its input row's lineage."""
        return _expose(self._t("explode").explode(column, ignore_index=ignore_index))

    # -- many rows
    def groupby(self, by: str | Sequence[str], dropna: bool = True, as_index: bool = False, sort: bool = True) -> GroupBy:
        """Group rows by key columns; follow with ``.agg(...)``, ``.sum()``, ``["x"].mean()``, ``.size()``, ...

        Unlike pandas, ``as_index`` is False by default: the keys come back
        as columns, which every later step takes. ``as_index=True`` shows them
        as the index (:meth:`set_index`; their cells keep lineage either way),
        as pandas' default does. Groups come back sorted by key (``sort=False``
        is accepted and changes nothing). See :class:`GroupBy` for the spellings.
        """
        if callable(by) or isinstance(by, (pd.Series, pd.Index, np.ndarray)) or is_dask(by):
            raise LineageError("groupby: group by column names (df.hippo.groupby('k')); to group by a computed value, "
                               "add it first: df.hippo.assign(k=lambda p: ...).hippo.groupby('k')")
        return GroupBy(self._t("groupby"), by, dropna, as_index=bool(as_index))

    # -- machine learning (scikit-learn)
    def split(self, test_size: float = 0.25, seed: int = 0, by: str | Sequence[str] | None = None) -> tuple[Any, Any]:
        """Split rows into (train, test), reproducibly, like ``train_test_split``.

        Each row goes to ``test`` with probability ``test_size``, decided by a hash
        of its values (of the ``by`` columns, default all) and ``seed``: the same
        split on pandas and Dask whatever the partitioning, on a replay, and for
        equal rows (with ``by=`` a key, all rows of a key land on one side). The
        sizes are therefore close to, not exactly, ``test_size``.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"x": range(1000)}).hippo.source("df")
        >>> train, test = df.hippo.split(test_size=0.2, seed=0)
        >>> len(train) + len(test), 150 < len(test) < 250
        (1000, True)
        """
        train, test = self._t("split").split(test_size, seed, by)
        return _expose(train), _expose(test)

    def fit(self, estimator: Any, X: str | Sequence[str], y: str | None = None,
            incremental: bool | None = None, **compute_kwargs: Any) -> Model:
        """Fit a scikit-learn estimator on this frame's rows; returns a :class:`~hippo_dask.ml.Model`.

        A copy of ``estimator`` is fitted (the one passed in is left as it was),
        stored in the run with a checksum (for replay), and the rows it was fitted
        on become its *model dependency*: queries with ``through_models=True``
        trace what the model makes back to every training row.

        On pandas the estimator is fitted once. On Dask, a model (an estimator
        with ``predict``) that has ``partial_fit`` is fitted one partition at a
        time (the training rows stay on the workers, persisted; empty partitions
        are skipped); any other estimator, transformers included, is fitted once
        on the ``X`` and ``y`` columns gathered into one pandas frame on the
        client, in row-id order. ``incremental=True`` / ``False`` forces one or
        the other. The run records which it was (``fit_mode``).

        Parameters
        ----------
        estimator : scikit-learn estimator
            A transformer, a ``Pipeline`` / ``ColumnTransformer``, or a model.
        X : list of str
            Feature columns, passed to ``fit`` as a DataFrame.
        y : str, optional
            Label column (supervised estimators).
        incremental : bool, optional
            Dask only: ``True`` uses ``partial_fit`` (required), ``False`` never
            does; default: for models that have it. A transformer's ``partial_fit``
            is not its ``fit`` (scikit-learn's scalers make NaN statistics from a
            partition whose column is all missing), hence the default.
        **compute_kwargs
            Dask only: passed to ``dask.compute`` (e.g. ``scheduler=client``).

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> from sklearn.linear_model import LogisticRegression
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"a": [0.0, 1, 2, 3], "b": [1.0, 0, 1, 0], "y": [0, 0, 1, 1]}).hippo.source("df")
        >>> model = df.hippo.fit(LogisticRegression(), X=["a", "b"], y="y")
        >>> out = df.hippo.predict(model, out="pred").hippo.compute()
        >>> lin = out.hippo.lineage
        >>> lin.backward(rows=[0], columns=["pred"])["df"].cells.column.tolist()
        ['a', 'b']
        >>> lin.backward(rows=[0], columns=["pred"], through_models=True)["df"].rows
        array([0, 1, 2, 3])
        """
        return self._t("fit").fit(estimator, X=X, y=y, incremental=incremental, **compute_kwargs)

    def transform(self, model: Model) -> Any:
        """Apply a fitted transformer: its input columns are replaced by the columns it makes.

        Output columns are named as ``get_feature_names_out()`` names them;
        columns the model does not read pass through unchanged. Each output cell
        traces to the same row's input cells it was made from (per column for
        scalers, imputers, encoders and discretizers; every input for estimators
        that mix them, like PCA), and with ``through_models=True`` also to every
        training row of those columns.

        Examples
        --------
        >>> import pandas as pd, hippo_dask as hippo, tempfile
        >>> from sklearn.preprocessing import StandardScaler
        >>> _ = hippo.set_store(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"a": [1.0, 3.0], "b": [0.0, 2.0], "id": [7, 8]}).hippo.source("df")
        >>> scaler = df.hippo.fit(StandardScaler(), X=["a", "b"])
        >>> df.hippo.transform(scaler)
           id    a    b
        0   7 -1.0 -1.0
        1   8  1.0  1.0
        """
        return _expose(self._t("transform").ml_transform(model))

    def fit_transform(self, estimator: Any, columns: str | Sequence[str], y: str | None = None,
                      **compute_kwargs: Any) -> Any:
        """Fit a transformer on this frame and transform it (:meth:`fit`, then :meth:`transform`)."""
        tracked = self._t("fit_transform")
        model = tracked.fit(estimator, X=columns, y=y, **compute_kwargs)
        return _expose(tracked.ml_transform(model))

    def predict(self, model: Model, X: str | Sequence[str] | None = None, out: str = "prediction",
                method: str = "predict") -> Any:
        """Add a fitted model's predictions as column ``out``.

        ``method`` may be ``predict`` (one column), ``predict_proba`` or
        ``predict_log_proba`` (one column per class, ``<out>_<class>``) or
        ``decision_function``. ``X`` defaults to the columns the model was fitted
        on. A prediction traces to the same row's feature cells, and with
        ``through_models=True`` to every training row's features and label.
        """
        return _expose(self._t("predict").predict(model, X=X, out=out, method=method))

    def merge(self, right: Any, how: str = "inner", on: str | Sequence[str] | None = None,
              left_on: str | Sequence[str] | None = None, right_on: str | Sequence[str] | None = None,
              suffixes: tuple[str, str] = ("_x", "_y"), validate: str | None = None,
              indicator: bool | str = False) -> Any:
        """Join with another tracked frame, as ``DataFrame.merge`` (inner, left, right, outer).

        ``validate=`` ("one_to_one", "one_to_many", "many_to_one", ...) is
        checked as pandas does, with pandas' ``MergeError``: on pandas by
        pandas, on Dask (whose merge has no such check) in the graph, so the
        error comes at ``compute()``.
        ``indicator=True`` (or a name) adds pandas' ``_merge`` column; its cells
        trace to no source cell (which sides had a row is a fact about the
        row: its row lineage names both rows).
        """
        left = self._t("merge")
        other = tracked_of(right, "merge (right frame)")
        return _expose(left.merge(other, how=how, on=on, left_on=left_on, right_on=right_on, suffixes=suffixes,
                                  validate=validate, indicator=indicator))


class _Loc:
    """``df.hippo.loc[rows]`` / ``df.hippo.loc[rows, columns]``."""

    def __init__(self, accessor: HippoAccessor) -> None:
        self._accessor = accessor

    def __getitem__(self, key: Any) -> Any:
        rows, columns = key if isinstance(key, tuple) and len(key) == 2 else (key, slice(None))
        accessor, out = self._accessor, self._accessor._obj
        if not (isinstance(rows, slice) and rows == slice(None)):
            if not (callable(rows) or isinstance(rows, (pd.Series, np.ndarray)) or is_dask(rows)):
                raise LineageError("loc: select rows by a condition (a boolean Series of this frame, or lambda p: ...); "
                                   "row labels and slices are not supported: use filter / head / sample")
            out = accessor.filter(rows)
        if not (isinstance(columns, slice) and columns == slice(None)):
            if isinstance(columns, slice):
                raise LineageError("loc: select columns by name or a list of names")
            out = out.hippo.select([columns] if isinstance(columns, str) else list(columns))
        return out


class _Query:
    """``DataFrame.eval(expression)`` as a filter predicate, with the caller's ``@variables`` captured (picklable).

    (No attribute is named ``expr``: older dask-expr takes any argument with an ``expr`` attribute
    for one of its collections and passes that attribute on instead.)
    """

    def __init__(self, expression: str, variables: Mapping[str, Any], kwargs: Mapping[str, Any]) -> None:
        self.expression, self.variables, self.kwargs = expression, dict(variables), dict(kwargs)

    def __call__(self, frame: pd.DataFrame) -> Any:
        return frame.eval(self.expression, local_dict=self.variables, global_dict={}, **self.kwargs)

    def __repr__(self) -> str:
        return f"query({self.expression!r})"


def _query_names(expr: str, columns: Sequence[str]) -> tuple[list[str] | None, list[str]]:
    """(columns a query expression names, or None when it cannot be parsed; the ``@variables`` it uses)."""
    import ast
    import re

    quoted = re.findall(r"`([^`]*)`", expr)
    variables = sorted(set(re.findall(r"@([A-Za-z_][A-Za-z0-9_]*)", expr)))
    plain = re.sub(r"`[^`]*`", " _q_ ", expr)
    plain = re.sub(r"@([A-Za-z_][A-Za-z0-9_]*)", r" _v_\1 ", plain)
    try:
        tree = ast.parse(plain.replace("&&", " and ").replace("||", " or "), mode="eval")
    except SyntaxError:
        return None, variables  # pandas will say what is wrong; hippo assumes every column
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return sorted((names | set(quoted)) & set(columns)), variables


class _RowApply:
    """``frame.apply(func, axis=1)`` as an assign's callable, picklable; an empty frame gives an empty column.

    With ``reads`` (declared, or found on a few rows), every row is also looked at
    once through a :class:`_RecordingRow`: a row whose branch reads another field
    (``row.a if row.flag else row.b``) is refused, so a read that a sample of rows
    does not show can never go unreported.
    """

    def __init__(self, func: Callable, args: tuple, kwargs: Mapping[str, Any], reads: Sequence[str] | None) -> None:
        self.func, self.args, self.kwargs = func, args, dict(kwargs)
        self.reads = None if reads is None else frozenset(reads)

    def __call__(self, frame: pd.DataFrame) -> Any:
        if len(frame) == 0:
            return pd.Series([], index=frame.index, dtype=object)
        if self.reads is not None:
            self._check_reads(frame)
        return frame.apply(self.func, axis=1, args=self.args, **self.kwargs)

    def _check_reads(self, frame: pd.DataFrame) -> None:
        for i, record in enumerate(frame.to_dict("records")):
            seen: set[str] = set()
            try:
                self.func(_RecordingRow(record, seen), *self.args, **self.kwargs)
            except Exception as exc:  # noqa: BLE001 - decided here: hippo cannot see what this row reads
                raise LineageError(
                    f"apply: cannot tell which fields the function reads on row {i} of the partition (looking them up "
                    f"raised {type(exc).__name__}: {exc}); pass reads=[...] with every column it may read, or "
                    "reads=list(df.columns)") from None
            extra = sorted(c for c in seen - self.reads if c in frame.columns)
            if extra:
                raise LineageError(f"apply: on row {i} of the partition the function reads {extra}, outside its reads "
                                   f"{sorted(self.reads)}; pass reads=[...] with every column it may read")

    def __repr__(self) -> str:
        return f"apply({getattr(self.func, '__name__', self.func)!r}, axis=1)"


class _RecordingRow(dict):
    """A row as a dict that notes which fields are looked up (by key, attribute or ``get``)."""

    def __init__(self, values: Mapping[str, Any], seen: set[str]) -> None:
        super().__init__(values)
        self._seen = seen

    def __getitem__(self, key: Any) -> Any:
        self._seen.add(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._seen.add(key)
        return super().get(key, default)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in self:
            raise AttributeError(key)
        self._seen.add(key)
        return super().__getitem__(key)


def _row_reads(func: Callable, probe: pd.DataFrame, args: tuple, kwargs: Mapping[str, Any]) -> list[str] | None:
    """Fields ``func(row)`` looks up on a few real rows; None when it does anything else with the row."""
    seen: set[str] = set()
    if len(probe) == 0:
        return None
    try:
        for record in probe.head(8).to_dict("records"):
            func(_RecordingRow(record, seen), *args, **kwargs)
    except Exception:  # noqa: BLE001 - a Series method or anything else: hippo cannot tell, so every column
        return None
    return sorted(c for c in seen if c in probe.columns)


class _Where:
    """One column of ``frame.where(cond(frame), other)`` (or ``mask``), picklable."""

    def __init__(self, column: str, cond: Callable, other: Any, keep: bool, originals: Sequence[str] | None,
                 settle: bool = False) -> None:
        self.column, self.cond, self.other, self.keep = column, cond, other, keep
        self.originals = None if originals is None else list(originals)
        # Dask: pandas' where gives int64 where no value is replaced and float64 where one is, so
        # partitions would disagree with each other and with Dask's meta (a later sort then fails
        # computing divisions). Every partition takes the dtype of a column with a value replaced.
        self.settle = settle

    def __call__(self, frame: pd.DataFrame) -> pd.Series:
        if self.originals is not None:
            frame = frame[self.originals]
        cond = self.cond(frame)
        if isinstance(cond, pd.DataFrame):
            cond = cond[self.column]
        other = self.other(frame) if callable(self.other) else self.other
        if isinstance(other, pd.DataFrame):
            other = other[self.column]
        values = frame[self.column]
        out = values.where(cond, other) if self.keep else values.mask(cond, other)
        if self.settle:
            from dask.dataframe.utils import meta_nonempty

            sample = meta_nonempty(values.iloc[:0]).iloc[:2]
            replaced = sample.where(np.arange(len(sample)) == 0, other if not callable(self.other) else np.nan)
            if out.dtype != replaced.dtype:
                out = out.astype(replaced.dtype)
        return out


def _fresh_name(taken: Sequence[str], base: str) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}{i}"
    return name


class _Column:
    """``lambda p: p[column]``, picklable: ``assign(c=df.x)`` as a copy of the column."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.reads = [column]

    def __call__(self, frame: pd.DataFrame) -> pd.Series:
        return frame[self.column]

    def onto(self, origin: Tracked, tracked: Tracked, name: str) -> Tracked:
        """``tracked`` with column ``name``, a copy of ``column``."""
        return tracked.assign(**{name: self})


class _Clip:
    """``lambda p: p[column].clip(lower, upper)``, picklable, reading only ``column``."""

    def __init__(self, column: str, lower: Any, upper: Any) -> None:
        self.column, self.lower, self.upper = column, lower, upper

    def __call__(self, frame: pd.DataFrame) -> pd.Series:
        return frame[self.column].clip(self.lower, self.upper)


# Steps that keep a frame's index (set_index) as pandas does; others refuse a frame with one.
_KEEP_INDEX = frozenset({"compute", "to_parquet", "select", "drop", "rename", "astype", "fillna", "dropna",
                         "drop_duplicates", "sort_values", "sort_index", "head", "tail", "sample", "query", "pipe",
                         "reset_index", "set_index", "join", "filter_mask", "nlargest", "nsmallest"})

# pandas methods hippo does not take (yet), with the nearest spelling it does take
_NEAREST = {
    "iloc": "select rows by a condition (df.hippo.loc[mask] or df.hippo.filter(...)) or df.hippo.head(n)",
    "agg": "use df.hippo.groupby(keys).agg(...) (per group), or group by a constant column for the whole frame",
    "transform": "use df.hippo.assign(...) or df.hippo.groupby(keys).transform(...)",
    "pivot_table": "use df.hippo.groupby([...]).agg(...) (long format)",
    "melt": "use df.hippo.flatmap(...) (one output row per (row, column))",
    "reindex": "select rows by a condition with df.hippo.loc[...] or df.hippo.filter(...)",
}


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
