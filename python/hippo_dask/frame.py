"""Tracked frames: data with hidden slot columns, plus the node that made it.

One implementation serves pandas and Dask. Both kinds of frame share most of
the DataFrame API (``merge``, ``groupby().agg``, ``sort_values``,
``drop_duplicates``, ``explode``, ``dropna``), so those run on the tracked
data directly: the hidden id columns travel with the rows by construction.
Operations that run user code go through the per-partition functions of
:mod:`hippo_dask.partition` (directly for pandas, ``map_partitions`` for Dask),
so user code never sees the hidden columns.
"""

from __future__ import annotations

import hashlib
import inspect
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import partition as P
from .errors import ColumnError, LineageError
from .plan import (
    HIDDEN_PREFIX,
    ROW,
    Node,
    hidden,
    identity_colmap,
    token,
    unary,
)
from .store import Store

#: Distinguishes sources made by different processes, so fragments of two
#: sessions never mix even when their Dask expressions have the same name.
_PROCESS_NONCE = secrets.token_hex(8)

AGGREGATIONS = frozenset({"sum", "mean", "min", "max", "count", "size", "nunique", "first", "last", "std", "var", "median", "prod"})


def is_dask(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith("dask.") and hasattr(obj, "map_partitions")


def partitionwise(data: Any, fn: Callable, *args: Any, meta: pd.DataFrame | None = None) -> Any:
    """Run ``fn(partition, *args)`` on every partition (on the whole frame for pandas)."""
    if not is_dask(data):
        return fn(data, *args)
    if meta is None:
        meta = fn(data._meta, *args)
    return data.map_partitions(fn, *args, meta=meta)


def describe_function(func: Callable) -> dict[str, Any]:
    """Code identity of a user function: where it is defined and a hash of its source."""
    name = getattr(func, "__qualname__", None) or type(func).__name__
    module = getattr(func, "__module__", None)
    try:
        source = inspect.getsource(func)
        digest = hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
    except (OSError, TypeError):
        source, digest = None, None
    return {"name": name, "module": module, "source_hash": digest}


@dataclass(frozen=True)
class SourceInfo:
    """A lineage root: its name, node, and how to count its rows per partition."""

    name: str
    node: Node
    columns: tuple[str, ...]
    counts: tuple[int, ...] | None = None  # pandas: known at once
    partitions: tuple[Any, ...] = ()  # Dask: delayed id-attaching tasks, one per partition
    identity: Mapping[str, Any] = field(default_factory=dict)  # what the source was, for the manifest


@dataclass(frozen=True)
class Tracked:
    """Data carrying hidden slot columns, the node that produced it, and its store."""

    data: Any  # pandas.DataFrame or dask.dataframe.DataFrame
    node: Node
    store: Store
    sources: Mapping[str, SourceInfo] = field(default_factory=dict)  # hidden column -> source

    @property
    def is_dask(self) -> bool:
        return is_dask(self.data)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.node.columns

    def user_view(self) -> Any:
        """The frame the user sees: the data without hidden columns."""
        return self.data.drop(columns=self.node.hidden_columns)

    # ------------------------------------------------------------------ helpers
    def _derive(self, data: Any, node: Node, sources: Mapping[str, SourceInfo] | None = None) -> "Tracked":
        return Tracked(data, node, self.store, self.sources if sources is None else sources)

    def _require(self, op: str, columns: Iterable[str]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ColumnError(f"{op}: unknown column(s) {missing}; the frame has {list(self.columns)}")

    def _meta(self) -> pd.DataFrame:
        return self.data._meta if self.is_dask else self.data.iloc[:0]

    def _probe(self) -> pd.DataFrame:
        """A small frame of user columns to run user callables on, to learn what they read."""
        if self.is_dask:
            from dask.dataframe.utils import meta_nonempty

            return P.clean(meta_nonempty(self.data._meta))
        return P.clean(self.data.head(64))

    def _partitionwise(self, fn: Callable, *args: Any, meta: pd.DataFrame | None = None) -> Any:
        return partitionwise(self.data, fn, *args, meta=meta)

    def _user_meta(self, fn: Callable, *args: Any) -> pd.DataFrame:
        """Output meta of a partition function that runs user code (probe, then empty)."""
        from dask.dataframe.utils import meta_nonempty

        return fn(meta_nonempty(self.data._meta), *args).iloc[:0]

    # ------------------------------------------------------------------ sources
    @staticmethod
    def source(frame: Any, name: str, store: Store) -> "Tracked":
        if not isinstance(name, str) or not name:
            raise LineageError("source: name must be a non-empty string, e.g. df.hippo.source('patients')")
        bad = [c for c in frame.columns if not isinstance(c, str)]
        if bad:
            raise ColumnError(f"source {name!r}: column names must be strings, got {bad[:5]}; rename them first")
        hidden_cols = [c for c in frame.columns if c.startswith(HIDDEN_PREFIX)]
        if hidden_cols:
            raise ColumnError(f"source {name!r}: column names starting with {HIDDEN_PREFIX!r} are reserved: {hidden_cols}")
        if is_dask(frame):
            identity = token("source", name, frame._name, _PROCESS_NONCE)
        else:
            identity = token("source", name, secrets.token_hex(8))
        slot = "s" + identity[:10]
        column = hidden(slot)
        columns = tuple(frame.columns)
        colmap = {c: () for c in columns}
        colmap[ROW] = ()
        node = Node(
            id=identity, op="source", inputs=(), columns=columns, colmap=colmap, slots=(slot,),
            slot_from=(), new_slot=slot, slot_origin={slot: identity}, params={"name": name},
        )
        if is_dask(frame):
            import dask
            import dask.dataframe as dd

            partitions = tuple(
                dask.delayed(P.attach_source, pure=True)(part, column, i, dask_key_name=f"hippo-source-{identity}-{i}")
                for i, part in enumerate(frame.to_delayed())
            )
            divisions = frame.divisions if len(partitions) == frame.npartitions else None
            data = dd.from_delayed(list(partitions), meta=P.attach_source(frame._meta, column, 0), divisions=divisions, verify_meta=False)
            identity_facts = {"kind": "dask", "expression": frame._name, "partitions": len(partitions),
                              "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
            info = SourceInfo(name, node, columns, partitions=partitions, identity=identity_facts)
        else:
            data = P.attach_source(frame, column, 0)
            # a fingerprint of up to 4096 evenly spread rows: hashing every cell would cost
            # more than the rest of a pandas pipeline's capture
            sample = frame.iloc[np.unique(np.linspace(0, len(frame) - 1, num=min(len(frame), 4096)).astype(np.int64))]
            content = int(pd.util.hash_pandas_object(sample, index=True).to_numpy().sum(dtype=np.uint64))
            identity_facts = {"kind": "pandas", "rows": len(frame), "sample_hash": f"{content:016x}",
                              "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
            info = SourceInfo(name, node, columns, counts=(len(frame),), identity=identity_facts)
        return Tracked(data, node, store, {column: info})

    # ------------------------------------------------------------------ user code
    def map(self, func: Callable, reads: Sequence[str] | None = None, writes: Sequence[str] | None = None,
            meta: Any = None, **kwargs: Any) -> "Tracked":
        if not callable(func):
            raise LineageError(f"map: func must be callable, got {type(func).__name__}")
        if reads is not None:
            self._require("map reads=", reads)
            reads = list(reads)
        probe = self._probe()
        if reads is None:
            inferred, _ = P.infer_reads(lambda f: func(f, **kwargs), probe)
            reads = sorted(inferred) if inferred is not None else list(self.columns)
        if self.is_dask:
            if writes is None:
                try:
                    probe_out = func(probe.copy(), **kwargs)
                except Exception as exc:
                    raise LineageError(
                        f"map: could not run the function on a sample partition to learn what it writes ({exc!r}); pass writes=[...]"
                    ) from exc
                writes = sorted(P.changed_columns(probe, probe_out))
            if meta is None:
                meta = self._user_meta(P.map_partition, func, list(writes), kwargs)
            else:
                from dask.dataframe.utils import make_meta

                meta = P.reattach(make_meta(meta), self.data._meta)
            data = self.data.map_partitions(P.map_partition, func, list(writes), kwargs, meta=meta)
            out_columns = [c for c in meta.columns if not c.startswith(HIDDEN_PREFIX)]
        else:
            data = P.map_partition(self.data, func, None if writes is None else list(writes), kwargs)
            out_user = P.clean(data)
            if writes is None:
                writes = sorted(P.changed_columns(P.clean(self.data), out_user))
            out_columns = list(out_user.columns)
        writes = list(writes)
        unknown = [c for c in writes if c not in out_columns]
        if unknown:
            raise ColumnError(f"map writes=: {unknown} are not columns of the function's output {out_columns}")
        colmap = {c: (reads if c in writes else [c]) for c in out_columns}
        missing = [c for c in out_columns if c not in writes and c not in self.columns]
        if missing:
            raise LineageError(f"map: output columns {missing} are new; list them in writes=")
        params = {"func": describe_function(func), "reads": reads, "writes": writes, "kwargs": repr(kwargs)}
        return self._derive(data, unary("map", self.node, out_columns, colmap, params))

    def assign(self, **assignments: Any) -> "Tracked":
        for name, value in assignments.items():
            if isinstance(value, (pd.Series, pd.DataFrame, np.ndarray, list)) or is_dask(value):
                raise LineageError(
                    f"assign {name}=: pass a callable (lambda p: ...) or a scalar, not a {type(value).__name__}; "
                    "values computed outside hippo carry no lineage"
                )
        probe = self._probe()
        sources: dict[str, list[str]] = {c: [c] for c in self.columns}
        for name, value in assignments.items():
            if callable(value):
                reads, out = P.infer_reads(value, probe)
                if reads is None:
                    reads = set(probe.columns)
                sources[name] = sorted({s for c in reads for s in sources.get(c, [c])})
                try:
                    probe = probe.assign(**{name: out if out is not None else value(probe)})
                except Exception:  # the probe is only for inference; fall back to "reads everything"
                    probe = probe.assign(**{name: np.nan})
            else:
                sources[name] = []
                probe = probe.assign(**{name: value})
        if self.is_dask:
            data = self.data.map_partitions(P.assign_partition, assignments, meta=self._user_meta(P.assign_partition, assignments))
        else:
            data = P.assign_partition(self.data, assignments)
        out_columns = list(self.columns) + [c for c in assignments if c not in self.columns]
        params = {name: (describe_function(v) if callable(v) else repr(v)) for name, v in assignments.items()}
        return self._derive(data, unary("assign", self.node, out_columns, {c: sources[c] for c in out_columns}, params))

    def filter(self, predicate: Callable) -> "Tracked":
        if not callable(predicate):
            raise LineageError(
                "filter: pass a callable that takes a partition and returns a boolean mask, e.g. lambda p: p.amount > 0"
            )
        if self.is_dask:
            data = self.data.map_partitions(P.filter_partition, predicate, meta=self.data._meta)
        else:
            data = P.filter_partition(self.data, predicate)
        reads, _ = P.infer_reads(predicate, self._probe())
        params = {"predicate": describe_function(predicate), "reads": sorted(reads) if reads is not None else None}
        return self._derive(data, unary("filter", self.node, self.columns, identity_colmap(self.columns), params))

    def flatmap(self, func: Callable, columns: Sequence[str] | None = None, reads: Sequence[str] | None = None,
                writes: Sequence[str] | None = None) -> "Tracked":
        if not callable(func):
            raise LineageError(f"flatmap: func must be callable (row dict -> iterable of dicts), got {type(func).__name__}")
        if columns is None:
            probe = self._probe()
            produced = [] if probe.empty else list(func(dict(probe.iloc[0])))
            columns = list(dict.fromkeys(k for rec in produced for k in rec))
            if not columns:
                raise LineageError("flatmap: could not learn the output columns from a sample row; pass columns=[...]")
        columns = list(columns)
        reads = list(self.columns) if reads is None else list(reads)
        self._require("flatmap reads=", reads)
        if writes is None:
            writes = [c for c in columns if c not in self.columns]
        writes = list(writes)
        colmap = {c: (reads if (c in writes or c not in self.columns) else [c]) for c in columns}
        if self.is_dask:
            meta = P.flatmap_partition(self.data._meta, func, columns)
            data = self.data.map_partitions(P.flatmap_partition, func, columns, meta=meta, enforce_metadata=False)
        else:
            data = P.flatmap_partition(self.data, func, columns)
        params = {"func": describe_function(func), "reads": reads, "writes": writes}
        return self._derive(data, unary("flatmap", self.node, columns, colmap, params))

    # ------------------------------------------------------------------ column ops
    def select(self, columns: str | Sequence[str]) -> "Tracked":
        columns = [columns] if isinstance(columns, str) else list(columns)
        self._require("select", columns)
        if len(set(columns)) != len(columns):
            raise ColumnError(f"select: duplicate columns in {columns}")
        data = self.data[columns + self.node.hidden_columns]
        return self._derive(data, unary("select", self.node, columns, identity_colmap(columns), {"columns": columns}))

    def drop(self, columns: str | Sequence[str]) -> "Tracked":
        columns = [columns] if isinstance(columns, str) else list(columns)
        self._require("drop", columns)
        kept = [c for c in self.columns if c not in columns]
        data = self.data.drop(columns=columns)
        return self._derive(data, unary("drop", self.node, kept, identity_colmap(kept), {"columns": columns}))

    def rename(self, columns: Mapping[str, str]) -> "Tracked":
        if not isinstance(columns, Mapping):
            raise LineageError("rename: pass columns={old: new, ...}")
        self._require("rename", columns)
        out = [columns.get(c, c) for c in self.columns]
        if len(set(out)) != len(out) or any(not isinstance(c, str) or c.startswith(HIDDEN_PREFIX) for c in out):
            raise ColumnError(f"rename: the new names {out} must be unique strings not starting with {HIDDEN_PREFIX!r}")
        data = self.data.rename(columns=dict(columns))
        colmap = {columns.get(c, c): [c] for c in self.columns}
        return self._derive(data, unary("rename", self.node, out, colmap, {"columns": dict(columns)}))

    def _row_preserving(self, op: str, method: str, args: tuple, kwargs: dict, params: dict) -> "Tracked":
        data = self._partitionwise(P.on_user_columns, method, args, kwargs)
        return self._derive(data, unary(op, self.node, self.columns, identity_colmap(self.columns), params))

    def astype(self, dtype: Any) -> "Tracked":
        if isinstance(dtype, Mapping):
            self._require("astype", dtype)
        return self._row_preserving("astype", "astype", (dtype,), {}, {"dtype": repr(dtype)})

    def fillna(self, value: Any) -> "Tracked":
        if isinstance(value, Mapping):
            self._require("fillna", value)
        return self._row_preserving("fillna", "fillna", (value,), {}, {"value": repr(value)})

    def replace(self, to_replace: Any = None, value: Any = None) -> "Tracked":
        kwargs = {"to_replace": to_replace} if value is None else {"to_replace": to_replace, "value": value}
        return self._row_preserving("replace", "replace", (), kwargs, {"to_replace": repr(to_replace), "value": repr(value)})

    # ------------------------------------------------------------------ row selection
    def dropna(self, subset: Sequence[str] | None = None, how: str = "any") -> "Tracked":
        subset = list(self.columns) if subset is None else ([subset] if isinstance(subset, str) else list(subset))
        self._require("dropna", subset)
        if how not in ("any", "all"):
            raise LineageError(f"dropna: how must be 'any' or 'all', got {how!r}")
        data = self.data.dropna(subset=subset, how=how)
        params = {"subset": subset, "how": how}
        return self._derive(data, unary("dropna", self.node, self.columns, identity_colmap(self.columns), params))

    def sort_values(self, by: str | Sequence[str], ascending: bool = True) -> "Tracked":
        by_list = [by] if isinstance(by, str) else list(by)
        self._require("sort_values", by_list)
        data = self.data.sort_values(by=by_list if len(by_list) > 1 else by_list[0], ascending=ascending)
        params = {"by": by_list, "ascending": ascending}
        return self._derive(data, unary("sort_values", self.node, self.columns, identity_colmap(self.columns), params))

    def drop_duplicates(self, subset: Sequence[str] | None = None, keep: str = "first") -> "Tracked":
        subset = list(self.columns) if subset is None else ([subset] if isinstance(subset, str) else list(subset))
        self._require("drop_duplicates", subset)
        if keep not in ("first", "last"):
            raise LineageError(f"drop_duplicates: keep must be 'first' or 'last', got {keep!r}")
        kwargs = {"split_out": 1} if self.is_dask else {}
        data = self.data.drop_duplicates(subset=subset, keep=keep, **kwargs)
        params = {"subset": subset, "keep": keep}
        return self._derive(data, unary("drop_duplicates", self.node, self.columns, identity_colmap(self.columns), params))

    def sample(self, n: int | None = None, frac: float | None = None, replace: bool = False,
               random_state: int | None = None) -> "Tracked":
        if random_state is None:  # recorded, so the sample can be replayed
            random_state = int(np.random.default_rng().integers(2**31 - 1))
        if self.is_dask:
            if n is not None or frac is None:
                raise LineageError("sample on a Dask frame takes frac=, not n= (Dask cannot sample an exact count)")
            data = self.data.sample(frac=frac, replace=replace, random_state=random_state)
        else:
            data = self.data.sample(n=n, frac=frac, replace=replace, random_state=random_state)
        params = {"n": n, "frac": frac, "replace": replace, "random_state": random_state}
        return self._derive(data, unary("sample", self.node, self.columns, identity_colmap(self.columns), params))

    def head(self, n: int = 5) -> "Tracked":
        data = self.data.head(n, npartitions=-1, compute=False) if self.is_dask else self.data.head(n)
        return self._derive(data, unary("head", self.node, self.columns, identity_colmap(self.columns), {"n": n}))

    def explode(self, column: str | Sequence[str], ignore_index: bool = False) -> "Tracked":
        cols = [column] if isinstance(column, str) else list(column)
        self._require("explode", cols)
        data = self.data.explode(column if isinstance(column, str) else cols)
        if ignore_index:
            data = data.reset_index(drop=True)
        params = {"column": cols, "ignore_index": ignore_index}
        return self._derive(data, unary("explode", self.node, self.columns, identity_colmap(self.columns), params))

    # ------------------------------------------------------------------ many-to-one, many-to-many
    def groupby_agg(self, keys: Sequence[str], named: Mapping[str, tuple[str, str]], dropna: bool = True) -> "Tracked":
        keys = [keys] if isinstance(keys, str) else list(keys)
        self._require("groupby", keys)
        if not named:
            raise LineageError("groupby().agg: name at least one aggregation, e.g. agg(mean_x=('x', 'mean'))")
        for out, spec in named.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str)):
                raise LineageError(f"groupby().agg {out}=: use a named aggregation (column, 'function'), got {spec!r}")
            col, func = spec
            if func not in AGGREGATIONS:
                raise LineageError(f"groupby().agg {out}=: unknown aggregation {func!r}; use one of {sorted(AGGREGATIONS)}")
            self._require(f"groupby().agg {out}=", [col])
            if out in keys or out.startswith(HIDDEN_PREFIX):
                raise ColumnError(f"groupby().agg: output name {out!r} clashes with a key or is reserved")
        params = {"keys": keys, "aggregations": {k: list(v) for k, v in named.items()}, "dropna": dropna}
        identity = token("groupby", self.node.id, params)
        slot = "g" + identity[:10]
        fragment_dir = self.store.fragment_dir(identity)
        recorded = self._partitionwise(P.record_membership, keys, fragment_dir, meta=self._meta())
        grouped = recorded.groupby(keys, dropna=dropna) if self.is_dask else recorded.groupby(keys, dropna=dropna, sort=True)
        if self.is_dask:
            # Dask cannot mix its custom nunique aggregation with the shuffle-based ones
            # (median) in one call: aggregate them apart and join the results on the keys.
            batches = [{k: v for k, v in named.items() if (v[1] == "nunique") == custom} for custom in (False, True)]
            outs = [grouped.agg(**{k: pd.NamedAgg(column=c, aggfunc=P.dask_aggregation(f)) for k, (c, f) in b.items()})
                    for b in batches if b]
            out = outs[0] if len(outs) == 1 else outs[0].join(outs[1])
            out = out[list(named)].reset_index()
        else:
            out = grouped.agg(**{k: pd.NamedAgg(column=c, aggfunc=f) for k, (c, f) in named.items()}).reset_index()
        if not self.is_dask and len(out) == 0:
            out = out.astype({k: self.data[k].dtype for k in keys})
        data = partitionwise(out, P.add_group_id, keys, hidden(slot))
        columns = keys + list(named)
        colmap: dict[str, tuple[tuple[int, str], ...]] = {k: ((0, k),) for k in keys}
        for k, (c, f) in named.items():
            colmap[k] = () if f == "size" else ((0, c),)
        colmap[ROW] = ((0, ROW),)
        node = Node(
            id=identity, op="groupby", inputs=(self.node,), columns=tuple(columns), colmap=colmap,
            slots=(slot,), slot_from=({},), new_slot=slot, slot_origin={slot: identity}, params=params,
        )
        return self._derive(data, node)

    def merge(self, right: "Tracked", how: str = "inner", on: str | Sequence[str] | None = None,
              left_on: str | Sequence[str] | None = None, right_on: str | Sequence[str] | None = None,
              suffixes: tuple[str, str] = ("_x", "_y")) -> "Tracked":
        if how not in ("inner", "left", "right", "outer"):
            raise LineageError(f"merge: how must be inner, left, right or outer, got {how!r}")
        if self.is_dask != right.is_dask:
            raise LineageError("merge: both frames must be pandas or both Dask")
        if self.store != right.store:
            raise LineageError(f"merge: the frames write to different stores ({self.store.url} vs {right.store.url})")
        as_list = lambda v: None if v is None else ([v] if isinstance(v, str) else list(v))  # noqa: E731
        on, left_on, right_on = as_list(on), as_list(left_on), as_list(right_on)
        if on is None and left_on is None and right_on is None:
            on = [c for c in self.columns if c in right.columns]
            if not on:
                raise LineageError("merge: the frames share no column; pass on= or left_on=/right_on=")
        if on is not None:
            if left_on is not None or right_on is not None:
                raise LineageError("merge: pass on= or left_on=/right_on=, not both")
            left_on, right_on = on, on
        if left_on is None or right_on is None or len(left_on) != len(right_on):
            raise LineageError("merge: left_on and right_on must both be given, with the same number of columns")
        self._require("merge left_on", left_on)
        right._require("merge right_on", right_on)
        params = {"how": how, "left_on": left_on, "right_on": right_on, "suffixes": list(suffixes)}
        identity = token("merge", self.node.id, right.node.id, params)
        # The right side's slots get new names where they collide (self-joins, diamonds).
        renamed = {s: (s if s not in self.node.slots else f"{s}_{identity[:6]}") for s in right.node.slots}
        right_data = right.data.rename(columns={hidden(s): hidden(t) for s, t in renamed.items() if s != t})
        data = self.data.merge(right_data, how=how, left_on=left_on, right_on=right_on, suffixes=suffixes)
        slots = self.node.slots + tuple(renamed.values())
        # Output column names follow pandas; learn them from an empty merge of the user columns.
        left_meta, right_meta = P.clean(self._meta()), P.clean(right._meta())
        out_columns = [c for c in left_meta.merge(right_meta, how=how, left_on=left_on, right_on=right_on, suffixes=suffixes).columns]
        colmap = _merge_colmap(list(self.columns), list(right.columns), left_on, right_on, suffixes, out_columns)
        if how != "inner":
            casts = {}
            if self.is_dask:  # columns of a side that may be absent, typed as pandas types them with holes
                sides = {"left": (1,), "right": (0,), "outer": (0, 1)}[how]
                for c, srcs in colmap.items():
                    from_sides = {k for k, _ in srcs}
                    if len(from_sides) == 1 and from_sides <= set(sides):  # a shared key is never missing
                        dtype = data._meta[c].dtype
                        if P.nullable_dtype(dtype) != dtype:
                            casts[c] = P.nullable_dtype(dtype)
            data = partitionwise(data, P.fill_missing_slots, [hidden(s) for s in slots], casts)
        colmap[ROW] = ((0, ROW), (1, ROW))
        origin = dict(self.node.slot_origin)
        origin.update({t: right.node.slot_origin[s] for s, t in renamed.items()})
        node = Node(
            id=identity, op="merge", inputs=(self.node, right.node), columns=tuple(out_columns), colmap=colmap,
            slots=slots, slot_from=({s: s for s in self.node.slots}, {t: s for s, t in renamed.items()}),
            slot_origin=origin, params=params,
        )
        sources = dict(self.sources)
        for col, info in right.sources.items():
            slot = col[len(HIDDEN_PREFIX):]
            sources[hidden(renamed.get(slot, slot))] = info
        return self._derive(data, node, sources)


def _merge_colmap(left: list[str], right: list[str], left_on: list[str], right_on: list[str],
                  suffixes: tuple[str, str], out_columns: list[str]) -> dict[str, tuple[tuple[int, str], ...]]:
    """Which input column each merge output column comes from, following pandas' naming."""
    colmap: dict[str, tuple[tuple[int, str], ...]] = {}
    shared_keys = {lk for lk, rk in zip(left_on, right_on) if lk == rk}
    overlap = (set(left) & set(right)) - shared_keys
    for c in left:
        name = c + suffixes[0] if c in overlap else c
        colmap[name] = ((0, c), (1, c)) if c in shared_keys else ((0, c),)
    for c in right:
        if c in shared_keys:
            continue
        name = c + suffixes[1] if c in overlap else c
        colmap[name] = ((1, c),)
    if sorted(colmap) != sorted(out_columns):
        raise LineageError(f"merge: cannot attribute the output columns {out_columns} to the inputs; rename clashing columns first")
    return {c: colmap[c] for c in out_columns}


def concat(frames: Sequence[Tracked], ignore_index: bool = False) -> Tracked:
    """Rows of every input, in order; each output row keeps its input's slots plus a tag."""
    if len(frames) < 1:
        raise LineageError("concat: pass at least one tracked frame")
    kinds = {f.is_dask for f in frames}
    if len(kinds) != 1:
        raise LineageError("concat: the frames must be all pandas or all Dask")
    stores = {f.store for f in frames}
    if len(stores) != 1:
        raise LineageError("concat: the frames write to different stores")
    params = {"ignore_index": ignore_index}
    identity = token("concat", [f.node.id for f in frames], params)
    tag = "t" + identity[:10]
    slots: list[str] = []
    for f in frames:
        slots.extend(s for s in f.node.slots if s not in slots)
    pieces = []
    for k, f in enumerate(frames):
        absent = [hidden(s) for s in slots if s not in f.node.slots]
        pieces.append(f._partitionwise(P.tag_input, hidden(tag), k, absent))
    if frames[0].is_dask:
        import dask.dataframe as dd

        data = dd.concat(pieces, ignore_unknown_divisions=True)
        if ignore_index:
            data = data.reset_index(drop=True)
    else:
        data = pd.concat(pieces, ignore_index=ignore_index)
    columns: list[str] = []
    for f in frames:
        columns.extend(c for c in f.columns if c not in columns)
    data = data[columns + [hidden(s) for s in slots] + [hidden(tag)]]
    colmap = {c: tuple((k, c) for k, f in enumerate(frames) if c in f.columns) for c in columns}
    colmap[ROW] = tuple((k, ROW) for k in range(len(frames)))
    origin: dict[str, str] = {}
    sources: dict[str, SourceInfo] = {}
    for f in frames:
        origin.update(f.node.slot_origin)
        sources.update(f.sources)
    origin[tag] = identity
    node = Node(
        id=identity, op="concat", inputs=tuple(f.node for f in frames), columns=tuple(columns), colmap=colmap,
        slots=tuple(slots) + (tag,), slot_from=tuple({s: s for s in f.node.slots} for f in frames),
        new_slot=tag, slot_origin=origin, params=params,
    )
    return Tracked(data, node, frames[0].store, sources)
