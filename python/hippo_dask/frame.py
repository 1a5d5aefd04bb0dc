"""Tracked frames: data with hidden slot columns, plus the node that made it.

One implementation serves pandas and Dask: pandas is the one-partition case.
Every operation that runs user code, records lineage or checks a function goes
through the per-partition functions of :mod:`hippo_dask.partition`; what
differs between backends (how a function reaches the partitions, Dask's
spelling of a group-by or a sample) is in the twin modules
:mod:`hippo_dask._pandas` and :mod:`hippo_dask._dask`, picked once per frame.
Operations that pandas and Dask spell alike (``merge``, ``sort_values``,
``dropna``, ``explode``, projections) run on the tracked data directly: the
hidden id columns travel with the rows by construction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import cloudpickle
import numpy as np
import pandas as pd

from . import _core, _dask, _pandas, ml
from . import partition as P
from .errors import ColumnError, LineageError, UserFunctionError
from .identity import describe_function, jsonable, token
from .lin import LineageType, Window, as_lineage_type
from .plan import HIDDEN_PREFIX, ROW, Node, copied_from, hidden, identity_colmap, spread_slot, unary
from .live_sources import register as register_live_source
from .store import Store

#: Distinguishes sources made by different processes, so fragments of two
#: sessions never mix even when their Dask expressions have the same name.
_PROCESS_NONCE = secrets.token_hex(8)

AGGREGATIONS = frozenset({"sum", "mean", "min", "max", "count", "size", "nunique", "first", "last", "std", "var", "median", "prod"})


def is_dask(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith("dask.") and hasattr(obj, "map_partitions")


def backend_of(obj: Any):
    """The module that runs the capture on ``obj``'s kind of frame."""
    return _dask if is_dask(obj) else _pandas


@dataclass(frozen=True)
class SourceInfo:
    """A lineage root: its name, node, and how to count its rows per partition."""

    name: str
    node: Node
    columns: tuple[str, ...]
    counts: tuple[int, ...] | None = None  # pandas: known at once
    fingerprints: tuple[str, ...] | None = None  # content checksum per partition (known with the counts)
    column_fingerprints: tuple[dict[str, str], ...] | None = None  # the same, per column
    partitions: tuple[Any, ...] = ()  # Dask: delayed id-attaching tasks, one per partition
    frame: Any = None  # Dask: the frame before ids, so compute() can read only the columns the run needs
    identity: Mapping[str, Any] = field(default_factory=dict)  # what the source was, for the manifest


def key_source(parent: Node, keys: Sequence[str], sources: Iterable[SourceInfo]) -> tuple[SourceInfo, str, str] | None:
    """Where a group-by's group ids can be derived from instead of stored: ``(source, column, slot)``.

    Only for one key column that holds a file source's column unchanged
    (:func:`hippo_dask.plan.copied_from`), a parquet file a query can read again
    (:func:`hippo_dask.readers.rereadable`); ``slot`` is the source's slot in ``parent``.
    Capture (the memberships) and the manifest both decide with this one function.
    """
    from .readers import rereadable

    if len(keys) != 1:
        return None
    found = copied_from(parent, keys[0])
    if found is None:
        return None
    node, column, slot = found
    info = next((i for i in sources if i.node.id == node.id), None)
    if info is None or not rereadable(info.identity.get("file")):
        return None
    return info, column, slot


@dataclass(frozen=True)
class Tracked:
    """Data carrying hidden slot columns, the node that produced it, and its store.

    ``recorders`` holds, per node that writes membership fragments, the data
    whose partitions carry the receipts of what they wrote (see
    :func:`hippo_dask.partition.write_membership`).
    """

    data: Any  # pandas.DataFrame or dask.dataframe.DataFrame
    node: Node
    store: Store
    sources: Mapping[str, SourceInfo] = field(default_factory=dict)  # hidden column -> source
    recorders: Mapping[str, Any] = field(default_factory=dict)  # node id -> data carrying its receipts
    receipts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # node id -> fragments already written (fits)
    #: How ``data`` was made (Dask only): ``make(*parent datas)`` builds it, and builds it again
    #: from narrower parents when :mod:`hippo_dask.prune` drops columns nothing downstream needs.
    #: pandas runs every step at once, so its frames keep neither (nor their parents alive).
    parents: tuple["Tracked", ...] = field(default=(), repr=False, compare=False)
    make: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    #: Columns shown as the row index (``set_index``). They stay columns of ``data`` and of the
    #: node, so their cells keep lineage and queries name them like columns; only the frame the
    #: user sees, and the result ``compute()`` returns, show them as the index.
    index: tuple[str, ...] = ()

    @property
    def backend(self):
        return backend_of(self.data)

    @property
    def is_dask(self) -> bool:
        return self.backend.IS_DASK

    @property
    def columns(self) -> tuple[str, ...]:
        return self.node.columns

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The columns pandas would show as columns: all but those shown as the index."""
        return tuple(c for c in self.columns if c not in self.index)

    def user_view(self) -> Any:
        """The frame the user sees: the data without hidden columns, the ``set_index`` columns as its index."""
        view = P.clean(self.data)
        if not self.index:
            return view
        if self.is_dask:  # lazily, partition by partition, the rows in their order (sort_index sorts them)
            return view.set_index(self.index[0], sort=False)
        return view.set_index(list(self.index))

    # ------------------------------------------------------------------ helpers
    def _derive(self, data: Any, node: Node, sources: Mapping[str, SourceInfo] | None = None,
                recorders: Mapping[str, Any] | None = None,
                receipts: Mapping[str, tuple[str, ...]] | None = None,
                make: Callable[..., Any] | None = None, parents: Sequence["Tracked"] | None = None,
                index: Sequence[str] | None = None) -> "Tracked":
        """The frame after one step; ``make`` (with ``parents``, default this frame) is how its data was built.

        The index columns carry over (rows keep their labels) unless ``index`` says otherwise.
        """
        lazy = make is not None and self.is_dask
        return Tracked(data, node, self.store, self.sources if sources is None else sources,
                       self.recorders if recorders is None else recorders,
                       self.receipts if receipts is None else receipts,
                       parents=(tuple((self,) if parents is None else parents) if lazy else ()),
                       make=make if lazy else None, index=self.index if index is None else tuple(index))

    def _run(self, make: Callable[..., Any], *parents: "Tracked") -> Any:
        """``make(*parent datas)`` now (default parent: this frame); a user function failing on pandas is recorded."""
        try:
            return make(*[p.data for p in (parents or (self,))])
        except UserFunctionError as error:
            if error.run_id is not None:
                raise
            # pandas runs user code right here: the failed run is recorded now
            raise self.failed(error) from error.original

    def _require(self, op: str, columns: Iterable[str]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ColumnError(f"{op}: unknown column(s) {missing}; the frame has {list(self.columns)}")

    def _meta(self) -> pd.DataFrame:
        return self.backend.meta(self.data)

    def _probe(self) -> pd.DataFrame:
        """A small frame of user columns to run user callables on, to learn what they read."""
        return self.backend.probe(self.data)

    def failed(self, error: UserFunctionError, run_id: str | None = None,
               counts: Mapping[str, Sequence[int]] | None = None) -> UserFunctionError:
        """Record a failed user function as a failed run of this pipeline; the error to raise."""
        from .diagnose.debug import record_failure

        if counts is None:  # pandas: every source is one partition, its size known
            counts = {info.node.id: list(info.counts) for info in self.sources.values() if info.counts is not None}
        return record_failure(self.store, error, self.sources, counts, run_id)

    def _user_call(self, what: str, lineage: LineageType, reads: Sequence[str] | None, node_id: str) -> P.UserCall:
        """How a user function of node ``node_id`` runs: its checks, and where a spread records."""
        if lineage.kind == "rowwise":
            return P.UserCall(what, "rowwise", None if reads is None else tuple(reads), node_id)
        order = lineage.order if isinstance(lineage, Window) else None
        if order is not None:
            self._require(f"{what} Window(order=)", [order])
        return P.UserCall(what, lineage.kind, None if reads is None else tuple(reads), node_id,
                          self.store.fragment_dir(node_id), hidden(spread_slot(node_id)), order)

    def _with_spread(self, data: Any, node: Node) -> dict[str, Any]:
        """Recorders after a node that may have written membership fragments."""
        if not node.spread:
            return dict(self.recorders)
        return {**self.recorders, node.id: data}

    @staticmethod
    def _spread_of(lineage: LineageType, columns: Iterable[str]) -> dict[str, dict[str, Any]]:
        if lineage.kind == "all":
            return {c: {"kind": "group"} for c in columns}
        if lineage.kind == "window":
            assert isinstance(lineage, Window)
            return {c: {"kind": "window", "preceding": lineage.preceding, "following": lineage.following}
                    for c in columns}
        return {}

    def _reads(self, what: str, func: Callable, declared: Sequence[str] | None, probe: pd.DataFrame) -> list[str] | None:
        """Columns ``func`` reads: as declared, else inferred; ``None`` when unsure (all columns).

        Declared reads that a recording probe shows to be short (the function indexes
        a column by name that ``reads=`` leaves out) are refused: lineage would under-report.
        """
        if declared is not None:
            self._require(f"{what} reads=", declared)
            seen, _ = P.infer_reads(func, probe)
            extra = sorted((seen or set()) - set(declared))
            if extra:
                raise LineageError(
                    f"{what}: reads={list(declared)} leaves out {extra}, which the function reads; list every "
                    f"column it reads (reads={sorted(set(declared) | set(extra))}), or leave reads= out to infer them")
            return list(declared)
        inferred, _ = P.infer_reads(func, probe)
        return sorted(inferred) if inferred is not None else None

    # ------------------------------------------------------------------ sources
    @staticmethod
    def source(frame: Any, name: str, store: Store, file: Mapping[str, Any] | None = None) -> "Tracked":
        if not isinstance(name, str) or not name:
            raise LineageError("source: name must be a non-empty string, e.g. df.hippo.source('patients')")
        bad = [c for c in frame.columns if not isinstance(c, str)]
        if bad:
            raise ColumnError(f"source {name!r}: column names must be strings, got {bad[:5]}; rename them first")
        hidden_cols = [c for c in frame.columns if c.startswith(HIDDEN_PREFIX)]
        if hidden_cols:
            raise ColumnError(f"source {name!r}: column names starting with {HIDDEN_PREFIX!r} are reserved: {hidden_cols}")
        if len(set(frame.columns)) != len(frame.columns):
            raise ColumnError(f"source {name!r}: duplicate column names; make them unique first")
        backend = backend_of(frame)
        if backend.IS_DASK:
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
        if backend.IS_DASK:
            data, facts = backend.attach_source(frame, column, identity)
        else:
            data, facts = backend.attach_source(frame, column)
        identity_facts = dict(facts["identity"])
        if file is None and backend.IS_DASK:
            from .readers import dask_file_source

            file = dask_file_source(frame)
        if file is not None:
            identity_facts["file"] = dict(file)
        facts = dict(facts, identity=identity_facts)
        info = SourceInfo(name, node, columns, counts=facts["counts"], fingerprints=facts["fingerprints"],
                          column_fingerprints=facts["column_fingerprints"],
                          partitions=facts["partitions"],
                          identity=facts["identity"], frame=frame if backend.IS_DASK else None)
        register_live_source(identity, frame)  # TraceSet.frame reads traced rows back from it while it is alive
        return Tracked(data, node, store, {column: info})

    # ------------------------------------------------------------------ user code
    def map(self, func: Callable, reads: Sequence[str] | None = None, writes: Sequence[str] | None = None,
            meta: Any = None, lineage: LineageType | None = None, **kwargs: Any) -> "Tracked":
        if not callable(func):
            raise LineageError(f"map: func must be callable, got {type(func).__name__}")
        lineage = as_lineage_type(lineage, "map")
        if reads is not None and lineage.reads is not None and list(reads) != list(lineage.reads):
            raise LineageError("map: pass reads= or lineage=...(reads=...), not two different lists")
        probe = self._probe()
        reads = self._reads("map", lambda f: func(f, **kwargs), reads if reads is not None else lineage.reads, probe)
        if writes is None:
            try:
                probe_out = func(probe.copy(), **kwargs)
            except Exception as exc:
                raise LineageError(
                    f"map: could not run the function on a sample of rows to learn what it writes ({exc!r}); pass writes=[...]"
                ) from exc
            if not isinstance(probe_out, pd.DataFrame):
                raise LineageError(f"map: the function must return a DataFrame, got {type(probe_out).__name__}")
            writes = sorted(P.changed_columns(probe, probe_out))
        writes = list(writes)
        ok, plain_kwargs = jsonable(kwargs)
        params = {"func": describe_function(func), "reads": reads, "writes": writes, "kwargs": repr(kwargs),
                  "kwargs_json": plain_kwargs if ok else None, "lineage": lineage.describe()}
        node_id = token("map", self.node.id, params, func, kwargs)
        call = self._user_call("map", lineage, reads, node_id)
        backend = self.backend

        def make(d: Any) -> Any:
            given = None if meta is None else backend.user_meta(meta, d, call)
            if given is not None:  # a pruned input lacks some passed-through columns: so does the output
                present = set(backend.meta(d).columns)
                given = given[[c for c in given.columns if c in present or c in writes or c == call.slot_column]]
            return backend.partitionwise(d, P.map_partition, func, writes, kwargs, call, meta=given)

        data = self._run(make)
        out_columns = [c for c in self.backend.meta(data).columns if not c.startswith(HIDDEN_PREFIX)]
        unknown = [c for c in writes if c not in out_columns]
        if unknown:
            raise ColumnError(f"map writes=: {unknown} are not columns of the function's output {out_columns}")
        missing = [c for c in out_columns if c not in writes and c not in self.columns]
        if missing:
            raise LineageError(f"map: output columns {missing} are new; list them in writes=")
        sources = list(self.columns) if reads is None else reads
        colmap = {c: (sources if c in writes else [c]) for c in out_columns}
        node = unary("map", self.node, out_columns, colmap, params, node_id=node_id,
                     spread=self._spread_of(lineage, [c for c in writes if c in out_columns]),
                     code={"func": func, "kwargs": kwargs})
        return self._derive(data, node, recorders=self._with_spread(data, node), make=make)

    def assign(self, lineage: LineageType | None = None, **assignments: Any) -> "Tracked":
        if lineage is not None and not isinstance(lineage, LineageType):
            assignments = {"lineage": lineage, **assignments}  # a column named "lineage"
            lineage = None
        if not assignments:
            raise LineageError("assign: name at least one column, e.g. assign(total=lambda p: p.a + p.b)")
        for name, value in assignments.items():
            if not isinstance(name, str) or name.startswith(HIDDEN_PREFIX):
                raise ColumnError(f"assign: column names must be strings not starting with {HIDDEN_PREFIX!r}, got {name!r}")
            if isinstance(value, (pd.Series, pd.DataFrame, np.ndarray, list)) or is_dask(value):
                raise LineageError(
                    f"assign {name}=: pass a callable (lambda p: ...) or a scalar, not a {type(value).__name__}: "
                    "values computed outside hippo carry no lineage (hippo cannot see which cells made them). Write "
                    f"the same expression on the frame it is given: assign({name}=lambda p: p.x * 2) for "
                    f"assign({name}=df.x * 2)"
                )
        declared = as_lineage_type(lineage, "assign")
        # one node per column, in order, as pandas evaluates them: each is checked on its own
        tracked = self
        for name, value in assignments.items():
            tracked = tracked._assign_one(name, value, declared)
        return tracked

    def _assign_one(self, name: str, value: Any, lineage: LineageType) -> "Tracked":
        what = f"assign {name}="
        if callable(value):
            reads = self._reads(what, value, lineage.reads, self._probe())
            sources = list(self.columns) if reads is None else reads
            params = {"column": name, "func": describe_function(value), "reads": reads, "lineage": lineage.describe()}
            kind = lineage
        else:
            reads, sources, kind = [], [], as_lineage_type(None, what)
            ok, plain = jsonable(value)
            params = {"column": name, "value": repr(value), "value_json": plain if ok else None, "is_json": ok}
        node_id = token("assign", self.node.id, params, value)
        call = self._user_call(what, kind, reads, node_id)
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.partitionwise(d, P.assign_partition, name, value, call)

        data = self._run(make)
        out_columns = list(self.columns) + ([name] if name not in self.columns else [])
        colmap: dict[str, list[str]] = {c: [c] for c in self.columns}
        colmap[name] = sources
        node = unary("assign", self.node, out_columns, colmap, params, node_id=node_id,
                     spread=self._spread_of(kind, [name]), code={"value": value})
        return self._derive(data, node, recorders=self._with_spread(data, node), make=make)

    def filter(self, predicate: Callable, lineage: LineageType | None = None) -> "Tracked":
        if not callable(predicate):
            raise LineageError(
                "filter: pass a callable that takes a partition and returns a boolean mask, e.g. lambda p: p.amount > 0"
            )
        lineage = as_lineage_type(lineage, "filter")
        reads = self._reads("filter", predicate, lineage.reads, self._probe())
        params = {"predicate": describe_function(predicate), "reads": reads, "lineage": lineage.describe()}
        node_id = token("filter", self.node.id, params, predicate)
        # The predicate's columns are not values of the output (DESIGN: filter keeps identity
        # lineage), so even a row-dependent predicate spreads nothing; it is still checked,
        # so a sliced replay can trust a row-wise predicate.
        call = P.UserCall("filter", lineage.kind if lineage.kind == "rowwise" else "declared",
                          None if reads is None else tuple(reads), node_id)
        return self._filter_node(params, node_id, {"func": predicate}, P.filter_partition, predicate, call)

    def _filter_dask_mask(self, mask: Any) -> "Tracked":
        """A Dask boolean Series of this frame: partition i keeps the rows of partition i where it is True.

        Each mask partition must have the index of the data partition it is applied to
        (checked on the workers, as pandas' mask is checked against the frame's index),
        so a mask of other rows is refused instead of keeping rows by another's values.
        """
        if not is_dask(mask) or mask.ndim != 1:
            raise LineageError("filter / loc on a Dask frame: pass a boolean Dask Series of this frame (df.x > 0) "
                               f"or a function of each partition (lambda p: p.x > 0), got {type(mask).__name__}")
        if mask.npartitions != self.data.npartitions:
            raise LineageError(f"filter / loc: the boolean Series has {mask.npartitions} partitions and the frame "
                               f"{self.data.npartitions}; compute it from this frame (df.x > 0)")
        # lineage "all": the condition may depend on any row; its values are not kept (no sliced replay)
        params = {"predicate": {"name": "<boolean mask>", "mask": True, "dask": True}, "reads": None,
                  "lineage": {"kind": "all", "reads": None}}
        node_id = token("filter", self.node.id, params, mask._name)
        shown_index = self.index[0] if self.index else None  # the mask carries the index the user sees
        return self._filter_node(params, node_id, None, P.filter_by_mask_partition, mask, shown_index)

    def _filter_node(self, params: Mapping[str, Any], node_id: str, code: Mapping[str, Any] | None,
                     keep_rows: Callable[..., Any], *args: Any) -> "Tracked":
        """The filter step itself, whichever way its rows are chosen: ``keep_rows(partition, *args)``
        (a predicate function, a mask computed outside hippo, a Dask Series partition by partition)."""
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.partitionwise(d, keep_rows, *args, meta=backend.meta(d))

        data = self._run(make)
        return self._derive(data, unary("filter", self.node, self.columns, identity_colmap(self.columns), params,
                                        node_id=node_id, code=code), make=make)

    def filter_mask(self, mask: np.ndarray) -> "Tracked":
        """Keep the rows where ``mask`` (one boolean per row, computed outside hippo) is True; pandas only.

        A filter's lineage does not depend on how its condition was computed
        (a kept row's cells trace to the same row), so a mask is exact. Its
        columns are unknown, so where hippo asks what decided which rows were
        kept (``row_reads``) it answers every column.
        """
        if self.is_dask:
            return self._filter_dask_mask(mask)
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (len(self.data),):
            raise LineageError(f"filter: a mask must hold one boolean per row ({len(self.data)}, no missing values), "
                               f"got {mask.dtype} of shape {mask.shape}")
        # lineage "all": the condition may depend on any row (a replay of some rows only is refused)
        params = {"predicate": {"name": "<boolean mask>", "mask": True, "rows": int(len(mask)), "kept": int(mask.sum())},
                  "reads": None, "lineage": {"kind": "all", "reads": None}}
        predicate = P.FixedMask(mask)
        node_id = token("filter", self.node.id, params, int(_core.checksum(np.packbits(mask).tobytes())))
        return self._filter_node(params, node_id, {"func": predicate}, P.filter_partition, predicate,
                                 P.UserCall("filter", "declared", None, node_id))

    # ------------------------------------------------------------------ checks
    def _check_name(self, what: str, name: Any) -> str:
        """A valid name, unique among the checks of this pipeline (so far: joined branches are checked at compute)."""
        from .checks import check_name
        from .plan import CHECKS, ancestors

        name = check_name(name, what)
        if any(n.op in CHECKS and n.params.get("name") == name for n in ancestors(self.node)):
            raise LineageError(f"{what}: this pipeline already has a check or validation named {name!r}; names must be "
                               "unique in a run (lin.violations(name) finds it by name)")
        return name

    def check(self, predicate: Callable, name: str, lineage: LineageType | None = None,
              record: bool = True) -> "Tracked":
        """Record the rows for which ``predicate`` is not True; every row passes through unchanged.

        ``record=False`` (a sliced replay, whose rows do not depend on the
        check) builds the node without calling the predicate.
        """
        from .checks import check_partition

        if not callable(predicate):
            raise LineageError("check: pass a callable that takes a partition and returns a boolean Series, True for "
                               "the rows that are OK, e.g. lambda p: p.age >= 0")
        name = self._check_name("check", name)
        lineage = as_lineage_type(lineage, "check")
        what = f"check {name!r}"
        if record:
            reads = self._reads(what, predicate, lineage.reads, self._probe())
        else:
            reads = None if lineage.reads is None else list(lineage.reads)
        params = {"name": name, "predicate": describe_function(predicate), "reads": reads, "lineage": lineage.describe()}
        node_id = token("check", self.node.id, params, predicate, record)
        # like a filter's, the predicate's values are not values of the output: nothing spreads
        call = P.UserCall(what, lineage.kind if lineage.kind == "rowwise" else "declared",
                          None if reads is None else tuple(reads), node_id)
        backend, fragment_dir = self.backend, self.store.fragment_dir(node_id)

        def make(d: Any) -> Any:
            return backend.partitionwise(d, check_partition, predicate if record else None, call, fragment_dir, node_id,
                                         meta=backend.meta(d))

        data = self._run(make)
        node = unary("check", self.node, self.columns, identity_colmap(self.columns), params, node_id=node_id,
                     code={"func": predicate})
        return self._derive(data, node, recorders={**self.recorders, node_id: data}, make=make)

    def validate(self, schema: Any, name: str | None = None, record: bool = True) -> "Tracked":
        """Validate every partition with a pandera schema (lazily); record the failure cases; rows pass unchanged.

        ``record=False`` (a sliced replay) builds the node without validating.
        """
        from .checks import pandera, validate_partition

        if record or schema is not None:
            pa = pandera()
            if isinstance(schema, type) and issubclass(schema, pa.DataFrameModel):
                schema = schema.to_schema()
            if not isinstance(schema, pa.DataFrameSchema):
                raise LineageError(f"validate: pass a pandera DataFrameSchema (or DataFrameModel), got {type(schema).__name__}")
        if name is None:  # the schema's name when it is a valid one
            named = getattr(schema, "name", None)
            name = named if isinstance(named, str) and named.isidentifier() and named.isascii() else "schema"
        name = self._check_name("validate", name)
        what = f"validate {name!r}"
        columns = list(getattr(schema, "columns", {}) or {})
        params = {"name": name, "schema": repr(schema)[:20_000], "columns": [str(c) for c in columns]}
        node_id = token("validate", self.node.id, params, schema, record)
        call = P.UserCall(what, "declared", None, node_id)  # schema checks may compare rows (unique=True)
        backend, fragment_dir = self.backend, self.store.fragment_dir(node_id)

        def make(d: Any) -> Any:
            return backend.partitionwise(d, validate_partition, schema if record else None, call, fragment_dir, node_id,
                                         meta=backend.meta(d))

        data = self._run(make)
        node = unary("validate", self.node, self.columns, identity_colmap(self.columns), params, node_id=node_id,
                     code={"schema": schema})
        return self._derive(data, node, recorders={**self.recorders, node_id: data}, make=make)

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
        # the function sees one row at a time, so it is row-wise by construction
        reads = list(self.columns) if reads is None else list(reads)
        self._require("flatmap reads=", reads)
        if writes is None:
            writes = [c for c in columns if c not in self.columns]
        writes = list(writes)
        colmap = {c: (reads if (c in writes or c not in self.columns) else [c]) for c in columns}
        params = {"func": describe_function(func), "reads": reads, "writes": writes, "columns": columns}
        node_id = token("flatmap", self.node.id, params, func)
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.partitionwise(d, P.flatmap_partition, func, columns, P.UserCall("flatmap", node_id=node_id))

        data = self._run(make)
        return self._derive(data, unary("flatmap", self.node, columns, colmap, params, node_id=node_id,
                                        code={"func": func}), make=make)

    # ------------------------------------------------------------------ column ops
    def _refuse_index_columns(self, what: str, columns: Iterable[str]) -> None:
        """pandas names only columns here; the ``set_index`` columns are the index."""
        shown = [c for c in columns if c in self.index]
        if shown:
            raise ColumnError(f"{what}: {shown} {'is' if len(shown) == 1 else 'are'} the index (set_index), not "
                              "a column; name other columns, or call .hippo.reset_index() first")

    def select(self, columns: str | Sequence[str]) -> "Tracked":
        """The ``columns`` (with the index columns, which a column selection keeps)."""
        columns = [columns] if isinstance(columns, str) else list(columns)
        self._require("select", columns)
        self._refuse_index_columns("select", columns)
        return self._select(list(self.index) + columns)

    def _select(self, columns: list[str]) -> "Tracked":
        if len(set(columns)) != len(columns):
            raise ColumnError(f"select: duplicate columns in {columns}")
        hidden_columns = self.node.hidden_columns

        def make(d: Any) -> Any:  # a pruned input may lack columns nothing downstream reads
            return d[[c for c in columns if c in d.columns] + hidden_columns]

        data = self._run(make)
        return self._derive(data, unary("select", self.node, columns, identity_colmap(columns), {"columns": columns}),
                            make=make)

    def drop(self, columns: str | Sequence[str]) -> "Tracked":
        columns = [columns] if isinstance(columns, str) else list(columns)
        self._require("drop", columns)
        self._refuse_index_columns("drop", columns)
        return self._drop(columns)

    def _drop(self, columns: list[str]) -> "Tracked":
        kept = [c for c in self.columns if c not in columns]

        def make(d: Any) -> Any:
            return d.drop(columns=[c for c in columns if c in d.columns])

        data = self._run(make)
        return self._derive(data, unary("drop", self.node, kept, identity_colmap(kept), {"columns": columns}), make=make)

    def rename(self, columns: Mapping[str, str]) -> "Tracked":
        if not isinstance(columns, Mapping):
            raise LineageError("rename: pass columns={old: new, ...}")
        self._require("rename", columns)
        self._refuse_index_columns("rename", columns)
        out = [columns.get(c, c) for c in self.columns]
        if len(set(out)) != len(out) or any(not isinstance(c, str) or c.startswith(HIDDEN_PREFIX) for c in out):
            raise ColumnError(f"rename: the new names {out} must be unique strings not starting with {HIDDEN_PREFIX!r}")
        mapping = dict(columns)

        def make(d: Any) -> Any:
            return d.rename(columns={k: v for k, v in mapping.items() if k in d.columns})

        data = self._run(make)
        colmap = {columns.get(c, c): [c] for c in self.columns}
        return self._derive(data, unary("rename", self.node, out, colmap, {"columns": dict(columns)}), make=make)

    def _row_preserving(self, op: str, method: str, args: tuple, kwargs: dict, params: dict) -> "Tracked":
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.partitionwise(d, P.on_user_columns, method, args, kwargs)

        data = self._run(make)
        ok, plain = jsonable({"args": list(args), "kwargs": kwargs})
        params = dict(params, method=method, arguments=plain if ok else None)
        return self._derive(data, unary(op, self.node, self.columns, identity_colmap(self.columns), params,
                                        key=(args, kwargs), code={"args": args, "kwargs": kwargs}), make=make)

    def _per_value_column(self, what: str, value: Any) -> Any:
        """``value`` for every column, as a mapping when the frame has index columns (pandas leaves the index alone)."""
        if isinstance(value, Mapping):
            self._require(what, value)
            self._refuse_index_columns(what, value)
            return value
        if not self.index:
            return value
        if not np.isscalar(value) and value is not None and not isinstance(value, (type, np.dtype, pd.api.extensions.ExtensionDtype)):
            raise LineageError(f"{what} after set_index: pass one value or a mapping {{column: value}}, or call "
                               ".hippo.reset_index() first")
        return {c: value for c in self.value_columns}

    def astype(self, dtype: Any) -> "Tracked":
        dtype = self._per_value_column("astype", dtype)
        return self._row_preserving("astype", "astype", (dtype,), {}, {"dtype": repr(dtype)})

    def fillna(self, value: Any) -> "Tracked":
        value = self._per_value_column("fillna", value)
        return self._row_preserving("fillna", "fillna", (value,), {}, {"value": repr(value)})

    def replace(self, to_replace: Any = None, value: Any = None) -> "Tracked":
        if self.index:
            raise LineageError("replace after set_index: call .hippo.reset_index() first, or replace before set_index")
        kwargs = {"to_replace": to_replace} if value is None else {"to_replace": to_replace, "value": value}
        return self._row_preserving("replace", "replace", (), kwargs, {"to_replace": repr(to_replace), "value": repr(value)})

    # ------------------------------------------------------------------ row selection
    def dropna(self, subset: Sequence[str] | None = None, how: str = "any") -> "Tracked":
        subset = list(self.value_columns) if subset is None else ([subset] if isinstance(subset, str) else list(subset))
        self._require("dropna", subset)
        self._refuse_index_columns("dropna subset", subset)
        if how not in ("any", "all"):
            raise LineageError(f"dropna: how must be 'any' or 'all', got {how!r}")

        def make(d: Any) -> Any:
            return d.dropna(subset=subset, how=how)

        data = self._run(make)
        params = {"subset": subset, "how": how}
        return self._derive(data, unary("dropna", self.node, self.columns, identity_colmap(self.columns), params),
                            make=make)

    def sort_values(self, by: str | Sequence[str], ascending: bool = True) -> "Tracked":
        by_list = [by] if isinstance(by, str) else list(by)
        self._require("sort_values", by_list)
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.sort_values(d, by_list, ascending)

        data = self._run(make)
        params = {"by": by_list, "ascending": ascending}
        return self._derive(data, unary("sort_values", self.node, self.columns, identity_colmap(self.columns), params),
                            make=make)

    def drop_duplicates(self, subset: Sequence[str] | None = None, keep: str = "first") -> "Tracked":
        subset = list(self.value_columns) if subset is None else ([subset] if isinstance(subset, str) else list(subset))
        self._require("drop_duplicates", subset)
        self._refuse_index_columns("drop_duplicates subset", subset)
        if keep not in ("first", "last"):
            raise LineageError(f"drop_duplicates: keep must be 'first' or 'last', got {keep!r}")
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.drop_duplicates(d, subset, keep)

        data = self._run(make)
        params = {"subset": subset, "keep": keep}
        return self._derive(data, unary("drop_duplicates", self.node, self.columns, identity_colmap(self.columns), params),
                            make=make)

    def sample(self, n: int | None = None, frac: float | None = None, replace: bool = False,
               random_state: int | None = None) -> "Tracked":
        if random_state is None:  # recorded, so the sample can be replayed
            random_state = int(np.random.default_rng().integers(2**31 - 1))
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.sample(d, n, frac, replace, random_state)

        data = self._run(make)
        params = {"n": n, "frac": frac, "replace": replace, "random_state": random_state}
        return self._derive(data, unary("sample", self.node, self.columns, identity_colmap(self.columns), params),
                            make=make)

    def head(self, n: int = 5) -> "Tracked":
        backend = self.backend

        def make(d: Any) -> Any:
            return backend.head(d, n)

        data = self._run(make)
        return self._derive(data, unary("head", self.node, self.columns, identity_colmap(self.columns), {"n": n}),
                            make=make)

    def tail(self, n: int = 5) -> "Tracked":
        """The last ``n`` rows: a ``head`` node counted from the end (``params["last"]``).

        On Dask, Dask's own ``tail``: the last rows of the last partition (fewer
        than ``n`` when it has fewer); each traces to its own row either way.
        """
        dask_tail = self.is_dask

        def make(d: Any) -> Any:
            return d.tail(n, compute=False) if dask_tail else d.tail(n)

        data = self._run(make)
        return self._derive(data, unary("head", self.node, self.columns, identity_colmap(self.columns),
                                        {"n": n, "last": True}), make=make)

    def explode(self, column: str | Sequence[str], ignore_index: bool = False) -> "Tracked":
        cols = [column] if isinstance(column, str) else list(column)
        self._require("explode", cols)

        def make(d: Any) -> Any:
            out = d.explode(column if isinstance(column, str) else cols)
            return out.reset_index(drop=True) if ignore_index else out

        data = self._run(make)
        params = {"column": cols, "ignore_index": ignore_index}
        return self._derive(data, unary("explode", self.node, self.columns, identity_colmap(self.columns), params),
                            make=make)

    # ------------------------------------------------------------------ the index
    def set_index(self, keys: str | Sequence[str]) -> "Tracked":
        """Show the ``keys`` columns as the row index; they stay tracked columns (their cells keep lineage).

        As pandas, the previous index columns are dropped. The rows keep their
        order on Dask too (Dask's own ``set_index`` sorts; ``sort_index()`` does).
        """
        keys = [keys] if isinstance(keys, str) else list(keys) if isinstance(keys, (list, tuple)) else keys
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise LineageError("set_index: pass column names (df.hippo.set_index('id') or set_index(['a', 'b'])); "
                               "an array or Series of labels has no lineage")
        self._require("set_index", keys)
        self._refuse_index_columns("set_index", keys)
        if len(set(keys)) != len(keys):
            raise ColumnError(f"set_index: duplicate columns in {keys}")
        if self.is_dask and len(keys) > 1:
            raise LineageError(f"set_index({keys}) on a Dask frame: Dask has no MultiIndex; set one column as the index")
        base = replace(self, index=())._drop(list(self.index)) if self.index else self
        return replace(base, index=tuple(keys))

    def reset_index(self, level: str | Sequence[str] | None = None, drop: bool = False) -> "Tracked":
        """The index columns back as columns (first, as pandas puts them), or dropped; rows numbered anew."""
        if not self.index:
            if not drop:
                raise LineageError(
                    "reset_index(): this frame's row labels are not tracked (hippo numbers a result's rows 0..n-1), "
                    "so a column made from them would have no lineage. hippo's groupby already returns the keys "
                    "as columns (as_index=False); to keep a source's labels, make them a column before "
                    ".hippo.source(...) (df.reset_index().hippo.source(name)); reset_index(drop=True) is fine")
            return self._renumber()
        levels = list(self.index) if level is None else [level] if isinstance(level, str) else list(level)
        unknown = [c for c in levels if c not in self.index]
        if unknown:
            raise ColumnError(f"reset_index: {unknown} {'is' if len(unknown) == 1 else 'are'} not in the index "
                              f"{list(self.index)}")
        levels = [c for c in self.index if c in levels]  # in the index's order, as pandas puts them
        staying = [c for c in self.index if c not in levels]
        base = replace(self, index=())
        if drop:
            base = base._drop(levels)
        else:
            base = base._select(levels + [c for c in self.columns if c not in levels])
        return replace(base._renumber(), index=tuple(staying))

    def _renumber(self) -> "Tracked":
        """The same rows labelled 0..n-1 (on Dask: within each partition, as Dask's reset_index does)."""
        return self._row_preserving("reset_index", "reset_index", (), {"drop": True}, {})

    def join(self, other: "Tracked", on: str | Sequence[str] | None = None, how: str = "left",
             lsuffix: str = "", rsuffix: str = "", validate: str | None = None) -> "Tracked":
        """pandas' ``join``: match ``on`` (default: this frame's index) with ``other``'s index, as a merge.

        The result keeps this frame's index; ``other``'s index columns, matched
        by the keys, are not repeated.
        """
        if not other.index:
            raise LineageError("join: the other frame has no index set, and join matches its index: call "
                               "other.hippo.set_index(key) first, or use df.hippo.merge(other, left_on=..., right_on=...)")
        if on is None:
            if not self.index:
                raise LineageError("join: this frame has no index set: pass on='column' to match the other frame's "
                                   "index, or call df.hippo.set_index(key) first")
            left_on = list(self.index)
        else:
            left_on = [on] if isinstance(on, str) else list(on)
        right_on = list(other.index)
        if on is None and (len(left_on) > 1 or len(right_on) > 1):
            # two MultiIndexes: pandas matches their levels by name, not by position
            if set(left_on) != set(right_on):
                raise LineageError(f"join: the indexes {left_on} and {right_on} share no level names as pandas needs "
                                   "them to join two MultiIndexes (cannot join with no overlapping index names); "
                                   "set the index of both by the same key columns")
            right_on = list(left_on)
        if len(left_on) != len(right_on):
            raise LineageError(f"join: {left_on} and the other frame's index {right_on} differ in length")
        self._require("join on", left_on)
        clash = [c for c in right_on if c in self.columns and c not in left_on]
        clash += [c for c in self.index if c in other.columns and c not in right_on]
        if clash:
            raise ColumnError(f"join: {clash} names an index level of one frame and a column of the other; rename "
                              "one of them first (rename(columns=...) before set_index)")
        overlap = [c for c in self.value_columns if c in other.value_columns]
        if overlap and not (lsuffix or rsuffix):
            raise ColumnError(f"join: columns overlap but no suffix specified: {overlap}; pass lsuffix= and/or rsuffix=")
        named_alike = left_on == right_on
        if how in ("right", "outer") and not named_alike:
            raise LineageError(f"join(how={how!r}) on {left_on} against the index {right_on}: the result's keys would "
                               "come from both sides; name them alike first (rename) so they are one column")
        merged = replace(self, index=()).merge(replace(other, index=()), how=how, left_on=left_on, right_on=right_on,
                                               suffixes=(lsuffix, rsuffix), validate=validate)
        if not named_alike:  # the other frame's index is the matched keys: pandas does not repeat it
            merged = merged._drop([c for c in right_on if c in merged.columns])
        return replace(merged, index=self.index)

    # ------------------------------------------------------------------ many-to-one, many-to-many
    def _check_named(self, what: str, keys: list[str], named: Mapping[str, tuple[str, str]]) -> None:
        if not named:
            raise LineageError(f"groupby().{what}: name at least one output, e.g. {what}(mean_x=('x', 'mean'))")
        for out, spec in named.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and (isinstance(spec[1], str)
                                                                     or (what == "agg" and callable(spec[1])))):
                raise LineageError(f"groupby().{what} {out}=: use a named aggregation (column, 'function'), got {spec!r}")
            col, func = spec
            if callable(func):
                self._require(f"groupby().{what} {out}=", [col])
            elif func not in AGGREGATIONS:
                raise LineageError(f"groupby().{what} {out}=: unknown aggregation {func!r}; use one of {sorted(AGGREGATIONS)}")
            self._require(f"groupby().{what} {out}=", [col])
            if out in keys or out.startswith(HIDDEN_PREFIX):
                raise ColumnError(f"groupby().{what}: output name {out!r} clashes with a key or is reserved")

    def _recorder(self, keys: list[str], dropna: bool, node_id: str) -> Callable[[Any], Any]:
        """How to make this frame's data with each partition writing which group its rows joined (on the workers)."""
        backend, fragment_dir = self.backend, self.store.fragment_dir(node_id)
        derivable = key_source(self.node, keys, self.sources.values())
        derive_from = None if derivable is None else hidden(derivable[2])

        def recorded(d: Any) -> Any:
            return backend.partitionwise(d, P.record_membership, keys, dropna, fragment_dir, node_id, derive_from,
                                         meta=backend.meta(d))

        return recorded

    def groupby_agg(self, keys: Sequence[str], named: Mapping[str, tuple[str, str]], dropna: bool = True) -> "Tracked":
        keys = [keys] if isinstance(keys, str) else list(keys)
        self._require("groupby", keys)
        self._check_named("agg", keys, named)
        # A function of the group's values (a callable) is recorded like a map's function: described in
        # the manifest, its code kept for replay; its cell still comes from its column over the group.
        functions = {out: func for out, (_, func) in named.items() if callable(func)}
        params = {"keys": keys, "aggregations": {k: [c, describe_function(f) if callable(f) else f]
                                                 for k, (c, f) in named.items()}, "dropna": dropna}
        identity = token("groupby", self.node.id, params, *functions.values())
        slot = "g" + identity[:10]
        backend, record = self.backend, self._recorder(keys, dropna, identity)

        def make(d: Any) -> tuple[Any, Any]:  # (the groups, the data carrying the membership receipts)
            recorded = record(d)
            out = backend.groupby_agg(recorded, keys, named, dropna)
            return backend.partitionwise(out, P.add_group_id, keys, hidden(slot)), recorded

        data, recorded = self._run(make)
        columns = keys + list(named)
        colmap: dict[str, tuple[tuple[int, str], ...]] = {k: ((0, k),) for k in keys}
        for k, (c, f) in named.items():
            colmap[k] = () if f == "size" else ((0, c),)
        colmap[ROW] = ((0, ROW),)
        node = Node(
            id=identity, op="groupby", inputs=(self.node,), columns=tuple(columns), colmap=colmap,
            slots=(slot,), slot_from=({},), new_slot=slot, slot_origin={slot: identity}, params=params,
            code={"aggregations": functions} if functions else None,
        )
        return self._derive(data, node, recorders={**self.recorders, identity: recorded}, make=make, index=())

    def groupby_transform(self, keys: Sequence[str], named: Mapping[str, tuple[str, str]],
                          dropna: bool = True) -> "Tracked":
        """Each row gets its group's aggregates as new columns; same rows, same order."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        self._require("groupby", keys)
        self._check_named("transform", keys, named)
        clash = [o for o in named if o in self.columns]
        if clash:
            raise ColumnError(f"groupby().transform: output column(s) {clash} already exist; pick new names")
        params = {"keys": keys, "aggregations": {k: list(v) for k, v in named.items()}, "dropna": dropna}
        identity = token("transform", self.node.id, params)
        slot_column = hidden(spread_slot(identity))
        backend, record = self.backend, self._recorder(keys, dropna, identity)
        outs = list(named)

        def make(d: Any) -> tuple[Any, Any]:  # (the data, the data carrying the membership receipts)
            recorded = record(d)
            groups = backend.groupby_agg(recorded, keys, named, dropna)
            # under dropna a row may find no group: its values are holes, typed alike in every partition
            casts = backend.hole_dtypes(groups, outs) if dropna else {}
            return backend.partitionwise(d, P.transform_partition, groups, keys, outs, dropna, slot_column, casts), recorded

        data, recorded = self._run(make)
        out_columns = list(self.columns) + outs
        colmap: dict[str, list[str]] = {c: [c] for c in self.columns}
        for o, (c, f) in named.items():
            # every output, a size too, reads its column over the row's group: the row keeps its own row
            # lineage here (unlike agg, whose size row is the group's rows), so an empty map would lose the
            # group's members entirely
            colmap[o] = [c]
        node = unary("transform", self.node, out_columns, colmap, params, node_id=identity,
                     spread={o: {"kind": "group"} for o in outs})
        return self._derive(data, node, recorders={**self.recorders, identity: recorded}, make=make)

    def merge(self, right: "Tracked", how: str = "inner", on: str | Sequence[str] | None = None,
              left_on: str | Sequence[str] | None = None, right_on: str | Sequence[str] | None = None,
              suffixes: tuple[str, str] = ("_x", "_y"), validate: str | None = None,
              indicator: bool | str = False) -> "Tracked":
        if how not in ("inner", "left", "right", "outer"):
            raise LineageError(f"merge: how must be inner, left, right or outer, got {how!r}")
        unique_sides = _UNIQUE_SIDES.get(validate, ()) if validate is not None else ()
        if validate is not None and validate not in _UNIQUE_SIDES:
            raise LineageError(f"merge: validate must be one of {sorted(_UNIQUE_SIDES)}, got {validate!r}")
        indicator_name = "_merge" if indicator is True else (indicator or None)
        if indicator_name is not None and not isinstance(indicator_name, str):
            raise LineageError(f"merge: indicator must be True, False or a column name, got {indicator!r}")
        if self.is_dask != right.is_dask:
            raise LineageError("merge: both frames must be pandas or both Dask")
        if self.index or right.index:  # pandas would drop (or match on) the index levels: join says which
            raise LineageError("merge: a frame has an index set (set_index); use df.hippo.join(other, on=...) to "
                               "match an index, or call .hippo.reset_index() on it first")
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
        if validate is not None:
            params["validate"] = validate
        if indicator_name is not None:
            params["indicator"] = indicator_name
        # Dask's merge has no validate=: the keys' uniqueness is checked in the graph instead (below)
        extra = {k: v for k, v in (("validate", None if self.is_dask else validate),
                                   ("indicator", indicator_name or False)) if v}
        identity = token("merge", self.node.id, right.node.id, params)
        # The right side's slots get new names where they collide (self-joins, diamonds).
        renamed = {s: (s if s not in self.node.slots else f"{s}_{identity[:6]}") for s in right.node.slots}
        slots = self.node.slots + tuple(renamed.values())
        # Output column names follow pandas; learn them from an empty merge of the user columns.
        try:
            left_meta, right_meta = P.clean(self._meta()), P.clean(right._meta())
            named = left_meta.merge(right_meta, how=how, left_on=left_on, right_on=right_on, suffixes=suffixes,
                                    indicator=extra.get("indicator", False))
        except ValueError:
            # pandas refuses some key dtype pairs only when both sides are empty (float64 keys
            # against an object column it cannot infer): ask again on rows, as the merge will run
            named = P.clean(self._probe()).merge(P.clean(right._probe()), how=how, left_on=left_on,
                                                 right_on=right_on, suffixes=suffixes, indicator=extra.get("indicator", False))
        out_columns = list(named.columns)
        if indicator_name is not None and indicator_name in list(self.columns) + list(right.columns):
            raise ColumnError(f"merge: indicator column {indicator_name!r} is already a column; pass indicator='<new name>'")
        colmap = _merge_colmap(list(self.columns), list(right.columns), left_on, right_on, suffixes,
                               [c for c in out_columns if c != indicator_name])
        if indicator_name is not None:
            # which sides had a row: a fact about the row (its row lineage), made from no cell
            colmap[indicator_name] = ()
            colmap = {c: colmap[c] for c in out_columns}
        may_miss: list[str] = []
        if how != "inner":
            sides = {"left": (1,), "right": (0,), "outer": (0, 1)}[how]
            # a shared key is never missing
            may_miss = [c for c, srcs in colmap.items() if {k for k, _ in srcs} <= set(sides) and len({k for k, _ in srcs}) == 1]
        backend, left_hidden = self.backend, self.node.hidden_columns

        def make(left_data: Any, right_data: Any) -> Any:
            right_data = right_data.rename(columns={hidden(s): hidden(t) for s, t in renamed.items() if s != t})
            # A side that may be absent carries its ids as nullable Int64 through the merge: its
            # holes are then a state of their own, never a float that rounds a large id.
            if how in ("right", "outer"):
                left_data = backend.to_nullable_ids(left_data, left_hidden)
            if how in ("left", "outer"):
                right_data = backend.to_nullable_ids(right_data, [hidden(t) for t in renamed.values()])
            data = left_data.merge(right_data, how=how, left_on=left_on, right_on=right_on, suffixes=suffixes, **extra)
            if backend.IS_DASK and unique_sides:
                sides = {"left": (left_data, left_on), "right": (right_data, right_on)}
                largest = [sides[side][0][sides[side][1]].groupby(sides[side][1], dropna=False).size().max()
                           for side in unique_sides]
                data = data.map_partitions(P.check_unique_keys, list(unique_sides), validate, *largest,
                                           meta=data._meta, enforce_metadata=False)
            if how != "inner":
                casts = backend.hole_dtypes(data, [c for c in may_miss if c in data.columns])
                data = backend.partitionwise(data, P.fill_missing_slots, [hidden(s) for s in slots], casts)
            return data

        data = self._run(make, self, right)
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
        # pandas numbers a merge's rows anew: neither side's index survives (join keeps the left one)
        return self._derive(data, node, sources, recorders={**self.recorders, **right.recorders},
                            receipts=union_receipts(self.receipts, right.receipts), make=make, parents=(self, right),
                            index=())

    # ------------------------------------------------------------------ ML steps
    def split(self, test_size: float, seed: int, by: Sequence[str] | None = None) -> tuple["Tracked", "Tracked"]:
        """(train, test): each row goes to test with probability ``test_size``, by a seeded hash of its values."""
        if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
            raise LineageError(f"split: test_size must be a fraction between 0 and 1, got {test_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
            raise LineageError(f"split: seed must be a non-negative int (it is recorded for replay), got {seed!r}")
        by_list = list(self.columns) if by is None else ([by] if isinstance(by, str) else list(by))
        self._require("split by=", by_list)
        sides = []
        for test in (False, True):
            params = {"test_size": float(test_size), "seed": int(seed), "by": by_list, "side": "test" if test else "train"}

            def make(d: Any, test: bool = test, backend: Any = self.backend) -> Any:
                return backend.partitionwise(d, P.split_partition, by_list, float(test_size), int(seed), test,
                                             meta=backend.meta(d))

            data = self._run(make)
            sides.append(self._derive(data, unary("split", self.node, self.columns, identity_colmap(self.columns), params),
                                      make=make))
        return sides[0], sides[1]

    def fit(self, estimator: Any, X: Sequence[str], y: str | None = None, incremental: bool | None = None,
            prefitted: Any = None, **compute_kwargs: Any) -> "ml.Model":
        """Fit a copy of ``estimator`` on this frame's rows; the rows become the model's dependency.

        ``prefitted`` (a sliced replay) is an estimator already fitted on these
        rows: it is used as is, and only the training rows are recorded.
        """
        from sklearn.base import clone, is_classifier

        if not hasattr(estimator, "fit"):
            raise LineageError(f"fit: expected a scikit-learn estimator (with .fit), got {type(estimator).__name__}")
        X = [X] if isinstance(X, str) else list(X)
        if not X:
            raise LineageError("fit: X= must name at least one feature column")
        self._require("fit X=", X)
        if y is not None:
            self._require("fit y=", [y])
            if y in X:
                raise LineageError(f"fit: the label {y!r} is also a feature in X=; remove it from X")
        try:
            fitted = clone(estimator)
        except Exception as exc:  # noqa: BLE001
            raise LineageError(f"fit: cannot copy {type(estimator).__name__} with sklearn.base.clone ({exc})") from exc
        # partial_fit by default for models only: a transformer's partial_fit (scalers) is not its fit
        # (an all-missing column in one partition makes StandardScaler's statistics NaN), and the
        # columns a transformer needs fit in memory far sooner than a model's training matrix
        is_model = hasattr(fitted, "predict") or hasattr(fitted, "fit_predict")
        partial = bool(self.is_dask and hasattr(fitted, "partial_fit") and
                       (incremental is True or (incremental is None and is_model)))
        if incremental and not hasattr(fitted, "partial_fit"):
            raise LineageError(f"fit: incremental=True needs partial_fit, which {type(fitted).__name__} does not have")
        mode = "partial_fit" if partial else "fit"
        columns = X + ([y] if y is not None else [])
        described = ml.describe_estimator(fitted)
        identity = token("fit", self.node.id, columns, y, mode, described, fitted)
        slot = "f" + identity[:10]
        # Dask: the pipeline built again on only the columns the training rows need (hippo_dask.prune)
        from .prune import pruned

        data, recorders = pruned(self, columns)
        training = self.backend.partitionwise(data, ml.record_training, columns, self.store.fragment_dir(identity),
                                              identity, meta=self._meta()[columns + self.node.hidden_columns])
        infos = {info.node.id: info for info in self.sources.values()}
        batches, receipts, counts, classes = self.backend.gather_training(training, identity, recorders, infos, partial, y,
                                                                            compute_kwargs)
        if not receipts.get(identity) and prefitted is None:
            raise LineageError("fit: the frame has no rows to fit on")
        receipts.setdefault(identity, [])
        with_classes = classes if (partial and y is not None and is_classifier(fitted)) else None
        sample: list[pd.DataFrame] = []

        def keep_sample(parts: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
            for part in parts:
                if len(sample) == 0 and len(part):
                    sample.append(part[X].head(16))
                yield part

        if prefitted is None:
            ml.fit_estimator(fitted, keep_sample(batches), X, y, mode, with_classes)
        else:
            for _ in keep_sample(batches):
                pass
            fitted = prefitted
        pickled = cloudpickle.dumps(fitted)
        checksum = ml.checksum(pickled)
        from .store import write_bytes
        from .store import _join as join_url

        write_bytes(join_url(self.store.code_dir(identity), f"{checksum}.pkl"), pickled)
        if hasattr(fitted, "transform") and hasattr(fitted, "get_feature_names_out"):
            names = ml.feature_names(fitted, X)
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:  # no frame holds two columns of one name (PolynomialFeatures over "x" and "x^2")
                raise LineageError(f"fit: {type(fitted).__name__} names several output columns {twice}; rename the "
                                   "input columns so its output names differ")
        features = {k: tuple(v) for k, v in ml.feature_map(fitted, X).items()} if hasattr(fitted, "transform") else {}
        params = {
            "estimator": described, "X": X, "y": y, "fit_mode": mode,
            "fit_note": ("partial_fit, one call per partition of the training rows" if partial
                         else "fit, once, on the training columns gathered into one frame"),
            "random_states": ml.random_states(estimator),
            "model": {"path": f"{checksum}.pkl", "checksum": checksum, "bytes": len(pickled),
                      "digest": ml.fitted_digest(fitted)},
            "features": {k: list(v) for k, v in features.items()},
        }
        colmap: dict[str, tuple[tuple[int, str], ...]] = {c: ((0, c),) for c in columns}
        colmap[ROW] = ((0, ROW),)
        node = Node(id=identity, op="fit", inputs=(self.node,), columns=tuple(columns), colmap=colmap, slots=(slot,),
                    slot_from=({},), new_slot=slot, slot_origin={slot: identity}, params=params)
        sources = {col: replace(info, counts=tuple(f[0] for f in counts[info.node.id]),
                                fingerprints=tuple(f[1] for f in counts[info.node.id]),
                                column_fingerprints=tuple(f[2] for f in counts[info.node.id]))
                   for col, info in self.sources.items()}
        return ml.Model(
            estimator=fitted, X=tuple(X), y=y, node=node, store=self.store, fit_mode=mode, checksum=checksum,
            features=features, sample=sample[0] if sample else None, sources=sources,
            receipts=union_receipts(self.receipts, receipts), pickled=pickled,
        )

    def _apply_model(self, op: str, model: "ml.Model", data: Any, columns: list[str],
                     colmap: dict[str, tuple[tuple[int, str], ...]], params: dict[str, Any],
                     make: Callable[[Any], Any]) -> "Tracked":
        """A node that applies ``model``: rows one to one with this frame, the model as a second input."""
        colmap[ROW] = ((0, ROW), (1, ROW))
        identity = token(op, self.node.id, model.node.id, params)
        node = Node(id=identity, op=op, inputs=(self.node, model.node), columns=tuple(columns), colmap=colmap,
                    slots=self.node.slots, slot_from=({s: s for s in self.node.slots}, {}),
                    slot_origin=dict(self.node.slot_origin), params=params, model_inputs=(1,))
        return self._derive(data, node, sources=union_sources(self.sources, model.sources),
                            receipts=union_receipts(self.receipts, model.receipts), make=make)

    def _check_model(self, what: str, model: Any, X: Sequence[str]) -> None:
        if not isinstance(model, ml.Model):
            raise LineageError(f"{what}: pass the Model that df.hippo.fit(...) returned, got {type(model).__name__}")
        if model.store != self.store:
            raise LineageError(f"{what}: the model's lineage is in {model.store.url}, this frame's in {self.store.url}")
        self._require(what, X)

    def ml_transform(self, model: "ml.Model") -> "Tracked":
        """Replace the model's input columns by the columns its ``transform`` makes; other columns pass through."""
        self._check_model("transform", model, model.X)
        if not model.is_transformer:
            raise LineageError(f"transform: {type(model.estimator).__name__} has no transform; use .hippo.predict")
        names = list(model.features)
        passthrough = [c for c in self.columns if c not in model.X]
        clash = [n for n in names if n in passthrough]
        if clash:
            raise ColumnError(f"transform: output column(s) {clash} already exist in the frame; rename them first")
        sample = model.sample
        if sample is None and not self.is_dask and len(self.data):  # a model used as stored (sliced replay)
            sample = P.clean(self.data)[list(model.X)].head(16)
        made = ml.transform_partition(sample, model.estimator, model.X, names, {}) if sample is not None else None
        dtypes = {n: made[n].dtype for n in names} if made is not None else {}
        backend, estimator, inputs = self.backend, model.estimator, model.X

        def make(d: Any) -> Any:
            meta = ml.transform_partition(backend.meta(d), estimator, inputs, names, dtypes)
            return backend.partitionwise(d, ml.transform_partition, estimator, inputs, names, dtypes, meta=meta)

        data = self._run(make)
        depends = list(model.X) + ([model.y] if model.y else [])
        colmap: dict[str, tuple[tuple[int, str], ...]] = {c: ((0, c),) for c in passthrough}
        for n in names:
            model_cols = [c for c in depends if c in model.features[n] or c == model.y]
            colmap[n] = tuple((0, c) for c in model.features[n]) + tuple((1, c) for c in model_cols)
        params = {"model": model.node.id, "checksum": model.checksum, "X": list(model.X), "features": names}
        return self._apply_model("ml_transform", model, data, passthrough + names, colmap, params, make)

    def predict(self, model: "ml.Model", X: Sequence[str] | None = None, out: str = "prediction",
                method: str = "predict") -> "Tracked":
        """Add the model's predictions as column ``out`` (``predict_proba``: one column per class)."""
        X = list(model.X) if X is None else ([X] if isinstance(X, str) else list(X))
        self._check_model("predict", model, X)
        if len(X) != len(model.X):
            raise LineageError(f"predict: X= has {len(X)} columns, the model was fitted on {len(model.X)}: {list(model.X)}")
        if method not in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
            raise LineageError(f"predict: method must be predict, predict_proba, predict_log_proba or decision_function, got {method!r}")
        if not hasattr(model.estimator, method):
            raise LineageError(f"predict: {type(model.estimator).__name__} has no {method}")
        sample = model.sample
        if sample is None and not self.is_dask and len(self.data):  # a model used as stored (sliced replay)
            sample = P.clean(self.data)[X].head(16).set_axis(list(model.X), axis=1)
        classes = list(getattr(model.estimator, "classes_", []))
        if sample is not None:
            probe = np.asarray(getattr(model.estimator, method)(ml.sklearn_ready(sample[list(model.X)]))).reshape(len(sample), -1)
        elif not self.is_dask and not len(self.data):  # nothing to predict: types from the model alone
            width = len(classes) if method in ("predict_proba", "predict_log_proba") and classes else 1
            kind = np.asarray(classes).dtype if (method == "predict" and classes) else np.dtype(np.float64)
            probe = np.zeros((0, width), dtype=kind)
        else:
            raise LineageError("predict: the model kept no sample rows to learn its output types")
        if method in ("predict_proba", "predict_log_proba") and len(classes) == probe.shape[1]:
            outs = [f"{out}_{c}" for c in classes]  # one column per class, even when there is one class
        elif probe.shape[1] == 1:
            outs = [out]
        else:
            outs = [f"{out}_{c}" for c in classes] if len(classes) == probe.shape[1] else [f"{out}_{i}" for i in range(probe.shape[1])]
        clash = [o for o in outs if o in self.columns]
        if clash:
            raise ColumnError(f"predict: output column(s) {clash} already exist; pass another out=")
        dtypes = {o: (probe.dtype if probe.dtype != object else np.dtype(object)) for o in outs}
        backend, estimator, model_X = self.backend, model.estimator, model.X

        def make(d: Any) -> Any:
            meta = ml.predict_partition(backend.meta(d), estimator, X, model_X, method, outs, dtypes)
            return backend.partitionwise(d, ml.predict_partition, estimator, X, model_X, method, outs, dtypes, meta=meta)

        data = self._run(make)
        depends = list(model.X) + ([model.y] if model.y else [])
        colmap: dict[str, tuple[tuple[int, str], ...]] = {c: ((0, c),) for c in self.columns}
        for o in outs:
            colmap[o] = tuple((0, c) for c in X) + tuple((1, c) for c in depends)
        params = {"model": model.node.id, "checksum": model.checksum, "X": X, "method": method, "out": outs,
                  "out_name": out}
        return self._apply_model("predict", model, data, list(self.columns) + outs, colmap, params, make)



#: pandas' merge(validate=) spellings -> the sides whose keys must be unique
_UNIQUE_SIDES = {"one_to_one": ("left", "right"), "1:1": ("left", "right"), "one_to_many": ("left",),
                 "1:m": ("left",), "many_to_one": ("right",), "m:1": ("right",), "many_to_many": (), "m:m": ()}


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
    columns: list[str] = []
    for f in frames:
        columns.extend(c for c in f.columns if c not in columns)
    backend = frames[0].backend
    absents = [[hidden(s) for s in slots if s not in f.node.slots] for f in frames]

    def make(*datas: Any) -> Any:
        pieces = [backend.partitionwise(d, P.tag_input, hidden(tag), k, absents[k]) for k, d in enumerate(datas)]
        data = backend.concat(pieces, ignore_index)
        # a pruned input may lack columns nothing downstream reads
        return data[[c for c in columns if c in data.columns] + [hidden(s) for s in slots] + [hidden(tag)]]

    data = frames[0]._run(make, *frames)
    colmap = {c: tuple((k, c) for k, f in enumerate(frames) if c in f.columns) for c in columns}
    colmap[ROW] = tuple((k, ROW) for k in range(len(frames)))
    origin: dict[str, str] = {}
    sources: dict[str, SourceInfo] = {}
    recorders: dict[str, Any] = {}
    receipts: Mapping[str, tuple[str, ...]] = {}
    for f in frames:
        origin.update(f.node.slot_origin)
        sources.update(f.sources)
        recorders.update(f.recorders)
        receipts = union_receipts(receipts, f.receipts)
    origin[tag] = identity
    node = Node(
        id=identity, op="concat", inputs=tuple(f.node for f in frames), columns=tuple(columns), colmap=colmap,
        slots=tuple(slots) + (tag,), slot_from=tuple({s: s for s in f.node.slots} for f in frames),
        new_slot=tag, slot_origin=origin, params=params,
    )
    lazy = frames[0].is_dask
    indexes = {f.index for f in frames}
    if len(indexes) != 1:
        raise LineageError(f"concat: the frames have different indexes ({sorted(indexes)}); set the same index on "
                           "each (set_index) or none")
    stacked = Tracked(data, node, frames[0].store, sources, recorders, receipts,
                      parents=tuple(frames) if lazy else (), make=make if lazy else None)
    index = frames[0].index
    if index and ignore_index:  # pandas drops the labels
        return stacked._drop(list(index))
    return replace(stacked, index=index)


def union_receipts(*parts: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Fragments already written, per node, from several pipelines joined into one."""
    out: dict[str, set[str]] = {}
    for part in parts:
        for nid, names in part.items():
            out.setdefault(nid, set()).update(names)
    return {nid: tuple(sorted(names)) for nid, names in out.items()}


def union_sources(*parts: Mapping[str, SourceInfo]) -> dict[str, SourceInfo]:
    """Sources of several pipelines, keeping the copy whose row counts are known (a fit computed them)."""
    out: dict[str, SourceInfo] = {}
    for part in parts:
        for column, info in part.items():
            if column not in out or (out[column].counts is None and info.counts is not None):
                out[column] = info
    return out
