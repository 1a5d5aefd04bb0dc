"""Computation replay: re-execute a run from its record, whole or for a few result rows.

A run's manifest records every operation with its parameters, the identity of
its user functions (qualified name, source text, a content token) and, in the
store, a cloudpickle copy of what JSON cannot hold (functions, values, fitted
estimators); every source has a content fingerprint per partition, and file
sources their location and reader arguments.

:class:`Rebuild` turns that record back into a tracked pipeline: it reads or
takes the sources, resolves every function, and calls the same ``.hippo``
operations, so a replay runs exactly the capture's code path and is itself a
run with lineage. Functions are re-imported by qualified name and checked
against their recorded token; the pickled copies are only loaded with
``trust=True`` (unpickling runs code: only for stores you trust).
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ReplayError, SourceChangedError
from ..identity import function_token
from ..lin import from_description
from ..partition import unique_sorted
from ..plan import CHECKS, MEMBERSHIP, ROW, Node, needed_columns, row_reads
from ..store import Store, read_bytes

if TYPE_CHECKING:
    from ..frame import Tracked
    from ..lineage import Lineage


def describe_node(node: Node) -> str:
    """A short readable name of an operation: ``map(add_features)``, ``source 'events'``, ``groupby(['k'])``."""
    p = node.params
    if node.op == "source":
        return f"source {p.get('name')!r}"
    if node.op in ("map", "flatmap"):
        return f"{node.op}({p.get('func', {}).get('name')})"
    if node.op == "filter":
        return f"filter({p.get('predicate', {}).get('name')})"
    if node.op == "check":
        return f"check {p.get('name')!r} ({p.get('predicate', {}).get('name')})"
    if node.op == "validate":
        return f"validate {p.get('name')!r}"
    if node.op == "assign":
        func = p.get("func", {}).get("name") if "func" in p else p.get("value")
        return f"assign({p.get('column')}={func})"
    if node.op in ("groupby", "transform"):
        return f"groupby({p.get('keys')}).{'agg' if node.op == 'groupby' else 'transform'}({', '.join(p.get('aggregations', {}))})"
    if node.op == "merge":
        return f"merge(how={p.get('how')!r}, left_on={p.get('left_on')}, right_on={p.get('right_on')})"
    if node.op == "fit":
        return f"fit({p.get('estimator', {}).get('class', '?').rsplit('.', 1)[-1]}, X={p.get('X')}, y={p.get('y')!r})"
    if node.op in ("ml_transform", "predict"):
        return f"{'transform' if node.op == 'ml_transform' else 'predict'}(model {p.get('model', '')[:8]})"
    shown = {k: v for k, v in p.items() if k not in ("arguments", "method")}
    return f"{node.op}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


@dataclass(frozen=True)
class Difference:
    """One way a replay differs from the run it replays (or a note about it)."""

    operation: str
    node: str
    reason: str
    partition: int | None = None

    def __str__(self) -> str:
        where = f", partition {self.partition}" if self.partition is not None else ""
        return f"{self.operation}{where}: {self.reason}"


@dataclass
class ReplayReport:
    """What :meth:`hippo_dask.Lineage.replay` found.

    Attributes
    ----------
    identical : bool or None
        The replayed result equals the recorded one (row count, and every
        column's dtype and values by checksum); ``None`` without ``verify``.
    result : pandas.DataFrame
        The replayed result.
    run_id : str
        The replay's own run (with lineage) in the store.
    differences : list of Difference
        In pipeline order: changed source partitions, changed functions, a
        refitted model that differs, a group-by whose input changed, the result.
        ``first`` is where to look.
    source_changed : bool
        Some source's content differs from its fingerprint at capture.
    """

    identical: bool | None
    result: pd.DataFrame
    run_id: str
    replayed: str
    differences: list[Difference] = field(default_factory=list)
    source_changed: bool = False

    @property
    def first(self) -> Difference | None:
        """The first difference in pipeline order (the first operation that differs)."""
        return self.differences[0] if self.differences else None

    def __str__(self) -> str:
        head = {True: "identical", False: "NOT identical", None: "not verified"}[self.identical]
        lines = [f"replay of run {self.replayed} -> run {self.run_id}: {head} ({len(self.result)} rows)"]
        if self.source_changed:
            lines.append("a source changed since capture")
        lines += [f"  {d}" for d in self.differences]
        return "\n".join(lines)

    __repr__ = __str__


# ---------------------------------------------------------------------- rebuilding a pipeline


class Rebuild:
    """A run's pipeline, built again from its record with ``.hippo`` operations.

    Parameters
    ----------
    lineage : Lineage
        The run to rebuild.
    sources : mapping of str to DataFrame
        In-memory sources by name (file sources are read again when omitted).
    trust : bool
        Allow unpickling the functions, values and estimators stored in the run.
    functions : mapping of str to callable
        Functions by qualified name (or node id), instead of re-importing them.
    estimators : mapping of str to estimator
        Unfitted estimators for ``fit`` steps by node id or class name (refit).
    store : Store
        Where the rebuilt pipeline records its lineage.
    subset : mapping of str to array, optional
        Per source, the row positions to keep (a sliced replay): the rows are
        taken, in order, from the source, and fitted models are used as stored.
    drop : mapping of str to array, optional
        Per source, row positions to remove from the whole source (a rerun
        without those rows, on the run's own backend): the source is checked
        against its recorded fingerprints first.
    refit : set of str, optional
        Fit nodes refitted even in a sliced replay (their training rows changed).
    """

    def __init__(self, lineage: "Lineage", sources: Mapping[str, Any] | None, trust: bool,
                 functions: Mapping[str, Callable] | None, estimators: Mapping[str, Any] | None, store: Store,
                 subset: Mapping[str, np.ndarray] | None = None, compute_kwargs: Mapping[str, Any] | None = None,
                 loaded: dict[str, tuple[np.ndarray, pd.DataFrame]] | None = None, prune: bool = True,
                 drop: Mapping[str, np.ndarray] | None = None, refit: set[str] | None = None) -> None:
        self.lineage = lineage
        self.drop = {name: np.asarray(p, dtype=np.int64) for name, p in (drop or {}).items()}
        self.refit = set(refit or ())
        self.loaded = loaded  # source rows read by an earlier sliced run of the same rows, reused
        # frames the run did not read are ignored (pass every frame you have); a needed one that is
        # missing is named when it is needed
        self.sources = {name: frame for name, frame in (sources or {}).items() if name in lineage.sources}
        self.trust = trust
        self.functions = dict(functions or {})
        self.estimators = dict(estimators or {})
        self.store = store
        self.subset = subset
        self.columns = used_source_columns(lineage) if subset is not None and prune else {}
        self.compute_kwargs = dict(compute_kwargs or {})
        self.records = {r["id"]: r for r in lineage.manifest["nodes"]}
        self.tracked: dict[str, Tracked] = {}
        self.models: dict[str, Any] = {}
        self.changes: list[Difference] = []
        self._code: dict[str, dict[str, Any]] = {}

    # -- stored code
    def _stored_code(self, node: Node) -> dict[str, Any]:
        if node.id in self._code:
            return self._code[node.id]
        record = self.records[node.id].get("code")
        if record is None or "path" not in record:
            reason = record.get("error", "nothing was stored") if record else "nothing was stored"
            raise ReplayError(f"replay: {describe_node(node)} needs its code or values, and the run has no copy ({reason}); "
                              "pass functions={...} with the function")
        if not self.trust:
            raise ReplayError(
                f"replay: {describe_node(node)} needs the function or values stored (pickled) in the run, and "
                "unpickling runs code: pass trust=True if you trust this store, or functions={'<qualified name>': func} "
                "(for functions defined in a module, replay imports them by name without trust)")
        import cloudpickle

        from ..ml import checksum

        url = self.lineage.store.child(self.lineage.store.code_dir(node.id), record["path"], "stored code")
        self.lineage.store.check_inside(url)
        blob = read_bytes(url)
        if checksum(blob) != record["checksum"]:
            raise ReplayError(f"replay: {url} does not match its recorded checksum; the stored code is damaged")
        self._code[node.id] = cloudpickle.loads(blob)
        return self._code[node.id]

    def _function(self, node: Node, key: str) -> Callable:
        """The user function of ``node`` (params[key] describes it): given, re-imported, or unpickled."""
        return self._find_function(node, node.params[key], lambda code: code["func"] if "func" in code else code["value"])

    def _aggregations(self, node: Node) -> dict[str, tuple[str, Any]]:
        """A group-by's named aggregations, its functions of a group's values found like a map's function."""
        return {out: (column, func if isinstance(func, str) else
                      self._find_function(node, func, lambda code, out=out: code["aggregations"][out]))
                for out, (column, func) in node.params["aggregations"].items()}

    def _find_function(self, node: Node, described: Mapping[str, Any], stored: Callable[[dict], Callable]) -> Callable:
        """A function described in ``node``'s params: given, re-imported, or unpickled (``stored`` picks it from the code)."""
        name, module, token = described.get("name"), described.get("module"), described.get("token")
        for alias in (node.id, f"{module}.{name}", name):
            if alias in self.functions:
                func = self.functions[alias]
                if function_token(func) != token:
                    self.changes.append(Difference(describe_node(node), node.id,
                                                   "the function passed in functions= differs from the one that ran"))
                return func
        if module and name and "<" not in name and module != "__main__" and not described.get("instance"):
            try:
                func: Any = importlib.import_module(module)
                for part in name.split("."):
                    func = getattr(func, part)
            except (ImportError, AttributeError):
                func = None
            if isinstance(func, type):  # a run recorded before "instance": a callable object's class, not it
                func = None
            if func is not None:
                if function_token(func) != token:
                    self.changes.append(Difference(describe_node(node), node.id,
                                                   f"{module}.{name} changed since capture (its code, defaults, closure "
                                                   "or the globals it reads differ)"))
                return func
        return stored(self._stored_code(node))

    def _value(self, node: Node, json_key: str, ok_key: str | None, code_key: str) -> Any:
        p = node.params
        if (p.get(ok_key) if ok_key else p.get(json_key) is not None):
            return p[json_key]
        return self._stored_code(node)[code_key]

    def _estimator(self, node: Node) -> Any:
        for alias in (node.id, node.params["estimator"]["class"].rsplit(".", 1)[-1], node.params["estimator"]["class"]):
            if alias in self.estimators:
                return self.estimators[alias]
        if not self.trust:
            raise ReplayError(
                f"replay: {describe_node(node)} needs the estimator stored (pickled) in the run; unpickling runs code: "
                "pass trust=True if you trust this store, or estimators={'<class name>': unfitted_estimator}")
        import pickle

        record = node.params["model"]
        url = self.lineage.store.child(self.lineage.store.code_dir(node.id), record["path"], "stored code")
        self.lineage.store.check_inside(url)
        blob = read_bytes(url)
        from ..ml import checksum

        if checksum(blob) != record["checksum"]:
            raise ReplayError(f"replay: {url} does not match its recorded checksum; the stored estimator is damaged")
        return pickle.loads(blob)

    # -- sources
    def _source_frame(self, node: Node) -> Any:
        name = node.params["name"]
        info = self.lineage.manifest["sources"][name]
        frame = self.sources.get(name)
        file = info["identity"].get("file")
        if frame is None and file is None:
            raise ReplayError(f"replay: source {name!r} was an in-memory frame; pass it back: replay(sources={{{name!r}: df}})")
        if self.subset is not None:
            return self._source_subset(name, info, frame, file)
        if frame is None:
            frame = _read_file(file)
            if name not in self.drop:
                return frame  # a whole replay compares the sources it read with the record afterwards
        _check_fingerprints(name, info, frame, self.compute_kwargs)
        if name in self.drop:
            return drop_positions(frame, self.drop[name], info["partition_rows"])
        return frame

    def _source_subset(self, name: str, info: Mapping[str, Any], frame: Any, file: Mapping[str, Any] | None) -> pd.DataFrame:
        """The rows of a source a sliced replay needs, read partition by partition and checked."""
        assert self.subset is not None
        positions = np.asarray(self.subset.get(name, np.array([], dtype=np.int64)), dtype=np.int64)
        if self.loaded is not None and name in self.loaded:
            have_positions, have = self.loaded[name]
            return have.iloc[np.flatnonzero(np.isin(have_positions, positions))]
        taken = self._read_subset(name, info, frame, file, positions)
        if self.loaded is not None:
            self.loaded[name] = (positions, taken)
        return taken

    def _read_subset(self, name: str, info: Mapping[str, Any], frame: Any, file: Mapping[str, Any] | None,
                     positions: np.ndarray) -> pd.DataFrame:
        if frame is None:
            frame = _read_file(file)
        meta = frame._meta if hasattr(frame, "_meta") else frame.iloc[:0]
        # Only the columns the rows' values and existence depend on are read and checked; the
        # others are placeholders (never reaching a value the slice returns). Runs recorded
        # without per-column fingerprints are read and checked whole.
        per_column = info.get("partition_column_fingerprints")
        used = [c for c in meta.columns if c in self.columns.get(name, set(meta.columns))] if per_column else list(meta.columns)
        used = used or list(meta.columns[:1])
        taken = source_rows(name, info, frame, positions, used, self.compute_kwargs)
        return _with_placeholders(taken, meta)

    # -- operations
    def run(self) -> "Tracked":
        from ..frame import Tracked, concat

        for node in self.lineage._order:
            inputs = [self.tracked[parent.id] for parent in node.inputs]
            p = node.params
            if node.op == "source":
                frame = self._source_frame(node)
                built = Tracked.source(frame, p["name"], self.store, file=self.lineage.manifest["sources"][p["name"]]["identity"].get("file"))
            elif node.op == "fit":
                built = self._fit(node, inputs[0])
            elif node.op == "concat":
                built = concat(inputs, ignore_index=p["ignore_index"])
            elif node.op == "merge":
                built = inputs[0].merge(inputs[1], how=p["how"], left_on=p["left_on"], right_on=p["right_on"],
                                        suffixes=tuple(p["suffixes"]), validate=p.get("validate"),
                                        indicator=p.get("indicator", False))
            else:
                built = self._unary(node, inputs)
            if built.node.op != node.op:
                raise ReplayError(f"internal: replaying {describe_node(node)} made a {built.node.op} node")
            self.tracked[node.id] = built
        result = self.tracked[self.lineage._result.id]
        # the columns the run showed as its index (set_index) are shown so again, and recorded so
        return replace(result, index=tuple(self.lineage.index)) if self.lineage.index else result

    def _fit(self, node: Node, training: "Tracked") -> "Tracked":
        p = node.params
        estimator = self._estimator(node)
        if self.subset is not None and node.id not in self.refit:  # sliced: the model as fitted on all training rows
            model = training.fit(estimator, X=p["X"], y=p["y"], prefitted=estimator)
        else:
            from sklearn.base import clone

            model = training.fit(clone(estimator), X=p["X"], y=p["y"], incremental=p["fit_mode"] == "partial_fit",
                                 **self.compute_kwargs)
            from ..ml import fitted_digest

            if fitted_digest(model.estimator) != p["model"].get("digest"):
                self.changes.append(Difference(describe_node(node), node.id,
                                               "the refitted estimator differs from the stored one (its training rows "
                                               "or its randomness differ)"))
        self.models[node.id] = model
        return _ModelHolder(model)

    def _unary(self, node: Node, inputs: list["Tracked"]) -> "Tracked":
        t, p, op = inputs[0], node.params, node.op
        if op == "map":
            func = self._function(node, "func")
            kwargs = p["kwargs_json"] if p.get("kwargs_json") is not None or p.get("kwargs") == "{}" else None
            if kwargs is None:
                kwargs = self._stored_code(node)["kwargs"]
            return t.map(func, reads=p["reads"], writes=p["writes"], lineage=from_description(p.get("lineage")), **(kwargs or {}))
        if op == "assign":
            if "func" in p:
                value = self._function(node, "func")
                return t.assign(lineage=from_description(p.get("lineage")), **{p["column"]: value})
            return t.assign(**{p["column"]: self._value(node, "value_json", "is_json", "value")})
        if op == "filter" and p.get("predicate", {}).get("dask"):
            raise ReplayError(f"replay: run {self.lineage.run_id} filtered by a Dask boolean Series computed outside "
                              "hippo, whose values were not kept; write the condition as a function "
                              "(df.hippo.filter(lambda p: p.x > 0)) to make the run replayable")
        if op == "filter" and p.get("predicate", {}).get("mask"):  # a mask computed outside hippo (pandas)
            return t.filter_mask(self._function(node, "predicate").mask)
        if op == "filter":
            return t.filter(self._function(node, "predicate"), lineage=from_description(p.get("lineage")))
        if op == "check":  # a slice's rows do not depend on a check: it is not evaluated there
            if self.subset is not None:
                return t.check(_unevaluated, p["name"], lineage=from_description(p.get("lineage")), record=False)
            return t.check(self._function(node, "predicate"), p["name"], lineage=from_description(p.get("lineage")))
        if op == "validate":
            if self.subset is not None:
                return t.validate(None, p["name"], record=False)
            return t.validate(self._stored_code(node)["schema"], p["name"])
        if op == "flatmap":
            return t.flatmap(self._function(node, "func"), columns=p["columns"], reads=p["reads"], writes=p["writes"])
        if op in ("select", "drop"):
            return getattr(t, op)(p["columns"])
        if op == "rename":
            return t.rename(p["columns"])
        if op in ("astype", "fillna", "replace", "reset_index"):
            arguments = p.get("arguments")
            if arguments is None:
                code = self._stored_code(node)
                arguments = {"args": list(code["args"]), "kwargs": dict(code["kwargs"])}
            return getattr(t, op)(*arguments["args"], **arguments["kwargs"])
        if op == "dropna":
            return t.dropna(subset=p["subset"], how=p["how"])
        if op == "sort_values":
            return t.sort_values(p["by"], ascending=p["ascending"])
        if op == "drop_duplicates":
            return t.drop_duplicates(subset=p["subset"], keep=p["keep"])
        if op == "sample":
            return t.sample(n=p["n"], frac=p["frac"], replace=p["replace"], random_state=p["random_state"])
        if op == "head":
            return t.tail(p["n"]) if p.get("last") else t.head(p["n"])
        if op == "explode":
            return t.explode(p["column"][0] if len(p["column"]) == 1 else p["column"], ignore_index=p["ignore_index"])
        if op == "split":
            train, test = t.split(p["test_size"], p["seed"], p["by"])
            return test if p["side"] == "test" else train
        if op == "groupby":
            return t.groupby_agg(p["keys"], self._aggregations(node), p["dropna"])
        if op == "transform":
            return t.groupby_transform(p["keys"], {k: tuple(v) for k, v in p["aggregations"].items()}, p["dropna"])
        if op == "ml_transform":
            return t.ml_transform(self.models[node.inputs[1].id])
        if op == "predict":
            return t.predict(self.models[node.inputs[1].id], X=p["X"], out=p.get("out_name", p["out"][0]), method=p["method"])
        raise ReplayError(f"replay: operation {op!r} of run {self.lineage.run_id} cannot be replayed by this version")


def _unevaluated(part: pd.DataFrame) -> Any:
    """Stands for a check's predicate in a sliced replay, where the check is not evaluated."""
    return np.ones(len(part), dtype=bool)


def drop_positions(frame: Any, positions: np.ndarray, partition_rows: Sequence[int]) -> Any:
    """``frame`` without the rows at global ``positions``, every partition kept (possibly emptied)."""
    counts = np.asarray(partition_rows, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    positions = unique_sorted(np.asarray(positions, dtype=np.int64))
    if not hasattr(frame, "to_delayed"):
        keep = np.ones(len(frame), dtype=bool)
        keep[positions] = False
        return frame.iloc[np.flatnonzero(keep)]
    import dask
    import dask.dataframe as dd

    parts = frame.to_delayed()
    out = []
    for i, part in enumerate(parts):
        local = positions[(positions >= starts[i]) & (positions < starts[i] + counts[i])] - starts[i]
        out.append(dask.delayed(_drop_local)(part, local) if len(local) else part)
    return dd.from_delayed(out, meta=frame._meta, verify_meta=False)


def _drop_local(part: pd.DataFrame, offsets: np.ndarray) -> pd.DataFrame:
    keep = np.ones(len(part), dtype=bool)
    keep[offsets] = False
    return part.iloc[np.flatnonzero(keep)]


def source_rows(name: str, info: Mapping[str, Any], frame: Any, positions: np.ndarray, columns: Sequence[str],
                compute_kwargs: Mapping[str, Any] | None = None, what: str = "replay",
                allow_unchecked: bool = False) -> pd.DataFrame:
    """Rows ``positions`` of source ``name``, columns ``columns``, after checking they are the rows the run read.

    The one way hippo reads source rows back (a sliced replay, ``TraceSet.frame``).
    ``frame`` is the source as a pandas or Dask frame (passed back, still alive, or
    read again from its file); ``info`` is the source's entry in the run's manifest;
    ``positions`` are sorted global row positions (partition 0's rows first). Only
    the partitions that hold a wanted row are read (on Dask, the workers read, check
    and cut them), and each is checked first: its row count, and the fingerprint of
    every column of ``columns`` (for runs recorded without per-column fingerprints,
    the whole partition's). A Dask run fingerprints only the source columns it read:
    ``allow_unchecked=True`` also returns other columns, unchecked, as they are now
    (otherwise such a column is refused). The rows keep the frame's index labels (a
    Dask partition's own labels). ``what`` starts the error messages.

    Raises
    ------
    SourceChangedError
        The frame has other partitions or rows, a checked partition's content
        differs, it lacks one of ``columns``, or (without ``allow_unchecked``) the
        run recorded no fingerprint of one of them.
    """
    counts = np.asarray(info["partition_rows"], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SourceChangedError(f"{what}: source {name!r} lacks column(s) {missing} the run read")
    per_column = info.get("partition_column_fingerprints")
    if per_column:
        read = columns
        checks: list[Any] = [{c: fingerprints[c] for c in columns if c in fingerprints} for fingerprints in per_column]
        unchecked = sorted({c for fingerprints in per_column for c in columns if c not in fingerprints})
        if (unchecked and not allow_unchecked) or not all(checks):
            raise SourceChangedError(f"{what}: source {name!r}: the run recorded no fingerprint of column(s) "
                                     f"{unchecked[:10]} (it did not read them), so their rows cannot be checked")
    else:  # an older run: one fingerprint of the whole partition, so every column is read to check it
        read = list(frame.columns)
        checks = list(info["partition_fingerprints"])
    needed = np.unique(np.searchsorted(starts, positions, side="right") - 1) if len(positions) else np.array([], int)
    offsets = {int(i): positions[(positions >= starts[i]) & (positions < starts[i] + counts[i])] - starts[i] for i in needed}
    meta = frame._meta if hasattr(frame, "_meta") else frame.iloc[:0]
    if hasattr(frame, "to_delayed"):  # Dask: the workers read, check and cut the partitions holding needed rows
        if frame.npartitions != len(counts):
            raise SourceChangedError(f"{what}: source {name!r} now has {frame.npartitions} partitions, the run read {len(counts)}")
        import dask

        delayed_parts = (frame[read] if len(read) < len(meta.columns) else frame).to_delayed()
        pieces = list(dask.compute(*[dask.delayed(_take_checked)(delayed_parts[i], offsets[i], int(counts[i]),
                                                                  checks[i], name, i, what) for i in offsets],
                                   **dict(compute_kwargs or {})))
    else:
        if len(frame) != counts.sum():
            raise SourceChangedError(f"{what}: source {name!r} has {len(frame)} rows, the run read {int(counts.sum())}")
        pieces = [_take_checked(frame.iloc[starts[i]:starts[i] + counts[i]][read], offsets[i], int(counts[i]), checks[i],
                                name, i, what) for i in offsets]
    taken = pd.concat(pieces) if len(pieces) > 1 else (pieces[0] if pieces else meta[read].iloc[:0])
    return taken if read == columns else taken[columns]


def _take_checked(part: pd.DataFrame, offsets: np.ndarray, rows: int, fingerprint: Any, name: str,
                  index: int, what: str = "replay") -> pd.DataFrame:
    """Rows ``offsets`` of source partition ``index``, after checking it is the partition the run read.

    ``fingerprint`` is the whole partition's, or a dict of the fingerprints of the columns read.
    """
    from ..partition import column_fingerprints, content_fingerprint

    if isinstance(fingerprint, dict):
        same = column_fingerprints(part[list(fingerprint)]) == fingerprint
    else:
        same = content_fingerprint(part) == fingerprint
    if len(part) != rows or not same:
        raise SourceChangedError(f"{what}: partition {index} of source {name!r} changed since capture")
    return part.iloc[offsets]


def _with_placeholders(taken: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """``taken`` with the source's other columns as placeholders (zeros / missing), in the source's order."""
    n = len(taken)
    missing = {}
    for c in meta.columns:
        if c in taken.columns:
            continue
        dtype = meta[c].dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
            missing[c] = np.zeros(n, dtype=dtype)
        else:
            missing[c] = pd.array([None] * n, dtype=dtype)
    if not missing:
        return taken
    return taken.assign(**missing)[list(meta.columns)]


def used_source_columns(lineage: "Lineage") -> dict[str, set[str]]:
    """Per source, the columns the result's values and rows depend on (:func:`hippo_dask.plan.needed_columns`).

    Model dependencies are not followed: a sliced replay uses models as stored.
    """
    needed = needed_columns(lineage._result, lineage._order)
    return {lineage._source_by_node[n.id]: needed.get(n.id, set()) - {ROW} for n in lineage._order if n.op == "source"}


_row_reads = row_reads  # (input, column) pairs an operation reads to decide its rows


class _ModelHolder:
    """Stands in the rebuilt DAG for a fit: its node is the fit node (the Model is kept apart)."""

    def __init__(self, model: Any) -> None:
        self.node = model.node
        self.model = model


def _read_file(file: Mapping[str, Any], what: str = "replay", advice: str = "pass the data with sources=") -> Any:
    """A file source read again with its recorded reader and arguments (checking it is the caller's job)."""
    from ..readers import READERS

    if file["reader"] not in READERS:
        raise ReplayError(f"{what}: unknown reader {file['reader']!r} in the run record")
    module, function = READERS[file["reader"]]
    try:
        return getattr(importlib.import_module(module), function)(file["path"], **(file.get("kwargs") or {}))
    except FileNotFoundError as exc:
        raise ReplayError(f"{what}: the source file {file['path']} is gone ({exc}); {advice}") from None


def _check_fingerprints(name: str, info: Mapping[str, Any], frame: Any, compute_kwargs: Mapping[str, Any]) -> None:
    """An in-memory source passed back must be the one the run read, partition by partition."""
    from ..partition import content_fingerprint, partition_facts

    recorded = list(info["partition_fingerprints"])
    counts = list(info["partition_rows"])
    # a run fingerprints only the source columns it needs (its own reads): check those
    per_column = info.get("partition_column_fingerprints")
    if per_column:
        columns = list(per_column[0])
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SourceChangedError(f"replay: source {name!r} lacks column(s) {missing} the run read")
        if len(columns) < len(frame.columns):
            frame = frame[columns]
    if hasattr(frame, "to_delayed"):
        import dask

        facts = dask.compute(*[dask.delayed(partition_facts)(part) for part in frame.to_delayed()], **compute_kwargs)
        got_counts, got = [f[0] for f in facts], [f[1] for f in facts]
    else:
        if len(frame) != sum(counts):
            raise SourceChangedError(f"replay: source {name!r} has {len(frame)} rows, the run read {sum(counts)}")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        got_counts = counts
        got = [content_fingerprint(frame.iloc[s:s + n]) for s, n in zip(starts, counts)]
    if got_counts != counts:
        raise SourceChangedError(f"replay: source {name!r} has partitions of {got_counts} rows, the run read {counts}")
    changed = [i for i, (a, b) in enumerate(zip(got, recorded)) if a != b]
    if changed:
        raise SourceChangedError(f"replay: source {name!r} is not the frame the run read: partition(s) {changed[:10]} "
                                 "differ in content; pass the original data")


# ---------------------------------------------------------------------- whole replay


def replay(lineage: "Lineage", sources: Mapping[str, Any] | None = None, verify: bool = True, trust: bool = False,
           functions: Mapping[str, Callable] | None = None, estimators: Mapping[str, Any] | None = None,
           **compute_kwargs: Any) -> ReplayReport:
    """Re-execute ``lineage``'s run from its record; see :meth:`hippo_dask.Lineage.replay`."""
    from ..compute import compute
    from ..lineage import Lineage

    rebuild = Rebuild(lineage, sources, trust, functions, estimators, lineage.store, compute_kwargs=compute_kwargs)
    tracked = rebuild.run()
    result, run_id = compute(tracked, replay_of=lineage.run_id, **compute_kwargs)
    if tracked.index:  # as compute() returned the run's result
        result = result.set_index(list(tracked.index))
    again = Lineage(lineage.store, run_id)
    if not verify:
        return ReplayReport(None, result, run_id, lineage.run_id, rebuild.changes)
    differences, source_changed = _compare(lineage, again, rebuild)
    old, new = lineage.manifest["result"], again.manifest["result"]
    identical = old["rows"] == new["rows"] and old.get("digest") == new.get("digest") and old["columns"] == new["columns"]
    if not identical:
        changed = [c for c in new["columns"] if old.get("digest", {}).get(c) != new.get("digest", {}).get(c)]
        if not changed and old["rows"] == new["rows"]:
            changed = ["(the same values per column, in other combinations across rows)"]
        differences.append(Difference("result", lineage._result.id,
                                      f"{new['rows']} rows (recorded {old['rows']}); columns that differ: {changed}"))
    return ReplayReport(identical, result, run_id, lineage.run_id, differences, source_changed)


def _compare(old: "Lineage", new: "Lineage", rebuild: Rebuild) -> tuple[list[Difference], bool]:
    """Differences between a run and its replay, in pipeline order."""
    if [n.op for n in old._order] != [n.op for n in new._order]:
        raise ReplayError("internal: the replay's operations do not line up with the run's")
    changes = {d.node: d for d in rebuild.changes}
    out: list[Difference] = []
    source_changed = False
    for a, b in zip(old._order, new._order):
        if a.op == "source":
            name = a.params["name"]
            was, now = old.manifest["sources"][name], new.manifest["sources"][name]
            if was["partition_rows"] != now["partition_rows"]:
                source_changed = True
                out.append(Difference(describe_node(a), a.id, f"partitions of {now['partition_rows']} rows, recorded "
                                                              f"{was['partition_rows']}"))
            else:
                for i, (x, y) in enumerate(zip(was["partition_fingerprints"], now["partition_fingerprints"])):
                    if x != y:
                        source_changed = True
                        out.append(Difference(describe_node(a), a.id, "content changed since capture", partition=i))
            continue
        if a.id in changes:
            out.append(changes[a.id])
        if a.op in CHECKS:
            from ..checks import recorded_digest

            if recorded_digest(old, a) != recorded_digest(new, b):
                out.append(Difference(describe_node(a), a.id, "its failing rows or failure cases differ"))
        if a.op in MEMBERSHIP or a.spread:
            # fragment names differ between runs (slot names carry node ids): compare contents
            # and as sets of rows: a distributed shuffle delivers the same rows in varying order
            if _membership(old, a) != _membership(new, b):
                what = "its training rows differ" if a.op == "fit" else "its input rows or keys differ (group membership changed)"
                out.append(Difference(describe_node(a), a.id, what))
    return out, source_changed


def _membership(lineage: "Lineage", node: Node) -> tuple[int, bytes]:
    """A node's membership as an order-free value: row count and the sorted (slots, group id) rows."""
    rows, ids = lineage.members(node)
    table = np.column_stack([rows.values, ids]) if len(ids) else np.empty((0, rows.values.shape[1] + 1), np.int64)
    order = np.lexsort(table.T[::-1]) if len(table) else np.array([], dtype=np.int64)
    return len(table), np.ascontiguousarray(table[order]).tobytes()


# ---------------------------------------------------------------------- sliced replay

#: Operations whose rows depend on rows outside any closure: a slice cannot reproduce them.
_UNSLICEABLE = {"head": "keeps the first n rows", "sample": "draws rows by position"}


def check_sliceable(lineage: "Lineage", what: str = "replay(rows=...)") -> None:
    """Refuse, with the reason, runs a replay of a few rows cannot reproduce exactly."""
    was_dask = any(info["identity"].get("kind") == "dask" for info in lineage.manifest["sources"].values())
    for node in lineage._order:
        why = _UNSLICEABLE.get(node.op)
        if node.op in ("map", "assign") and node.params.get("lineage", {}).get("kind") in ("all", "window"):
            why = "is declared lin.All / lin.Window: its values depend on whole partitions"
        if node.op == "filter" and node.params.get("lineage", {}).get("kind") not in (None, "rowwise"):
            why = "has a row-dependent predicate"
        if was_dask and node.op == "drop_duplicates":
            why = "keeps the first row in Dask's row order, which a slice does not reproduce"
        if was_dask and node.op in ("groupby", "transform") and any(
                f in ("first", "last") for _, f in node.params["aggregations"].values()):
            why = "takes first/last rows in Dask's row order, which a slice does not reproduce"
        if why:
            raise ReplayError(f"{what}: {describe_node(node)} {why}; replay the whole run instead")


def closure(lineage: "Lineage", rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Per source, every row the result ``rows`` depend on (row lineage and every cell).

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> from hippo_dask.diagnose.replay import closure
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3]}).hippo.source("df")
    >>> out = df.hippo.groupby("k").agg(total=("x", "sum")).hippo.compute()
    >>> closure(out.hippo.lineage, [0])
    {'df': array([0, 2])}
    """
    trace = lineage.backward(rows)
    out = {}
    for name, ts in trace.items():
        parts = [ts.rows] + [np.asarray(v) for v in ts._by_column.values()]
        out[name] = unique_sorted(np.concatenate(parts).astype(np.int64)) if parts else np.array([], dtype=np.int64)
    return out


class SlicedRun:
    """A pandas run of the pipeline on a subset of source rows, mapped back to the original run.

    ``rows_of(result_rows)`` finds, for original result rows, the rows of the
    sliced result with the same lineage (same source rows, same groups); the
    rebuilt pipeline's intermediate frames stay available for :func:`inspect`.
    """

    def __init__(self, lineage: "Lineage", subset: Mapping[str, np.ndarray], sources: Mapping[str, Any] | None,
                 trust: bool, functions: Mapping[str, Callable] | None, keep_store: bool = False,
                 compute_kwargs: Mapping[str, Any] | None = None,
                 loaded: dict[str, tuple[np.ndarray, pd.DataFrame]] | None = None, prune: bool = True) -> None:
        from ..compute import compute
        from ..lineage import Lineage

        self.lineage = lineage
        self.subset = {name: np.asarray(subset.get(name, np.array([], dtype=np.int64)), dtype=np.int64)
                       for name in lineage.sources}
        self._dir = tempfile.mkdtemp(prefix="hippo-slice-")
        try:
            self.rebuild = Rebuild(lineage, sources, trust, functions, None, Store(self._dir), subset=self.subset,
                                   compute_kwargs=compute_kwargs, loaded=loaded, prune=prune)
            self.tracked = self.rebuild.run()
            self.result, run_id = compute(self.tracked)
            self.sliced = Lineage(Store(self._dir), run_id)
            self.sliced.result_slots()  # read before the scratch store goes
        finally:
            if not keep_store:
                shutil.rmtree(self._dir, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def slot_map(self, original: Node, rebuilt: Node) -> dict[str, str]:
        """Rebuilt slot name -> original slot name, for two twin nodes."""
        return dict(zip(rebuilt.slots, original.slots))

    def translate(self, original: Node, rebuilt: Node, values: np.ndarray) -> np.ndarray:
        """Slot values of rebuilt rows (columns in ``rebuilt.slots`` order) as the original run's values."""
        return positions_back(self.lineage, original, values, self.subset)

    def rows_of(self, rows: np.ndarray, strict: bool = True) -> np.ndarray:
        """Positions in the sliced result of the original result ``rows`` (same slot values).

        ``strict=False``: a row the slice does not make (rows were removed) is -1.
        """
        original = self.lineage._result
        rebuilt = self.sliced._result
        mine = self.translate(original, rebuilt, self.sliced.result_slots().values)
        wanted = self.lineage.result_slots().values[rows]
        index: dict[bytes, list[int]] = {}
        for i in range(len(mine)):
            index.setdefault(mine[i].tobytes(), []).append(i)
        everything = self.lineage.result_slots().values
        found = []
        for r, row in zip(rows, wanted):
            candidates = index.get(row.tobytes(), [])
            k = 0
            if len(candidates) > 1:  # rows with equal slots (explode, flatmap): the k-th is the k-th
                k = int((everything[:r] == row).all(axis=1).sum())
            if k >= len(candidates) and not strict:
                found.append(-1)
                continue
            if k >= len(candidates):
                raise ReplayError(f"replay(rows=...): result row {int(r)} was not reproduced from the source rows it "
                                  "depends on; this run cannot be replayed in slices")
            found.append(candidates[k])
        return np.asarray(found, dtype=np.int64)


def positions_back(lineage: "Lineage", original: Node, values: np.ndarray, kept: Mapping[str, np.ndarray]) -> np.ndarray:
    """Slot values of a run over some source rows, as ``original``'s values in ``lineage``.

    ``kept[name]`` lists, in order, the original positions of the rows the run
    read from source ``name``: its position ``i`` is the original ``kept[name][i]``.
    Sources not in ``kept`` were read whole.
    """
    out = np.array(values, dtype=np.int64, copy=True)
    for j, slot in enumerate(original.slots):
        name = lineage._source_by_node.get(original.slot_origin.get(slot))
        if name in kept:
            column = out[:, j]
            real = column != -1
            column[real] = kept[name][column[real]]
    return out


def recorded_dtypes(lineage: "Lineage") -> dict[str, str]:
    """The result's dtypes as recorded in its digest (``dtype:digest`` per column)."""
    return {c: v.rsplit(":", 1)[0] for c, v in lineage.manifest["result"].get("digest", {}).items() if c in lineage.columns}


def as_recorded(frame: pd.DataFrame, lineage: "Lineage") -> pd.DataFrame:
    """``frame`` with the result's recorded dtypes (a slice without holes keeps ints a full result made floats)."""
    casts = {c: t for c, t in recorded_dtypes(lineage).items() if c in frame.columns and str(frame[c].dtype) != t}
    for c, t in casts.items():
        try:
            frame[c] = frame[c].astype(t)
        except (TypeError, ValueError):
            pass
    return frame


def replay_rows(lineage: "Lineage", rows: Sequence[int] | np.ndarray, sources: Mapping[str, Any] | None = None,
                trust: bool = False, functions: Mapping[str, Callable] | None = None,
                **compute_kwargs: Any) -> pd.DataFrame:
    """Recompute result ``rows`` from their backward closure; see :meth:`hippo_dask.Lineage.replay`."""
    check_sliceable(lineage)
    asked = np.atleast_1d(np.asarray(rows, dtype=np.int64))
    valid = lineage._rows(asked, lineage.nrows, "the result")
    del valid
    run = SlicedRun(lineage, closure(lineage, asked), sources, trust, functions, compute_kwargs=compute_kwargs)
    picked = run.rows_of(asked)
    out = run.result.iloc[picked].copy()
    out.index = pd.Index(asked)
    out.attrs = {}
    return as_recorded(out[lineage.columns], lineage)
