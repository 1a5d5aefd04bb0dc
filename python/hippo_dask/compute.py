"""Computing a tracked frame: the result, plus its lineage committed to the store.

For Dask, the result is gathered into one partition (as ``DataFrame.compute``
does) and finished by a task on a worker: it strips the hidden columns, turns
source ids into source positions, writes the slot arrays as a fragment and
returns the clean rows. Group memberships were
already written by the tasks that computed them. The driver then writes the
manifest, last and atomically, naming every fragment with its checksum.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from importlib import metadata
from typing import Any, Mapping

import pandas as pd

from . import partition as P
from .errors import IncompleteRunError, LineageError, UserFunctionError
from .frame import SourceInfo, Tracked, key_source
from .plan import CHECKS, MEMBERSHIP, Node, ancestors, copied_from, hidden
from .prune import pruned
from .store import _join

_VERSIONED = ("hippo_dask", "pandas", "numpy", "dask", "distributed", "pyarrow", "scikit-learn", "cloudpickle")


_FOUND_VERSIONS: dict[str, str] | None = None


def _versions() -> dict[str, str]:
    """Versions of the libraries a run depends on, as installed when this process first committed a run
    (looked up once: ~1 ms a package, on every compute otherwise)."""
    global _FOUND_VERSIONS
    if _FOUND_VERSIONS is None:
        found = {}
        for name in _VERSIONED:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
        _FOUND_VERSIONS = found
    return dict(_FOUND_VERSIONS)


class _NoLock:
    """Stands in for the lock Python 3.11's cached_property takes."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _release_cached_property_locks() -> None:
    """Drop the class-wide lock of ``functools.cached_property`` on Dask's expressions.

    Optimizing a graph may compute (sort_values computes its partition boundaries
    inside ``Expr.npartitions``, a cached property). On Python 3.11 that property's
    lock is shared by every expression, so when the distributed scheduler runs in this
    process (``LocalCluster``) and materializes the boundary graph in its own thread,
    it blocks on the lock the optimizing thread holds, and both wait forever (the hang
    DESIGN section 4 measured). Python 3.12 removed the lock for this reason; without
    it a property may at worst be computed twice, harmless for Dask's pure ones.
    """
    if sys.version_info >= (3, 12):
        return
    import functools

    from dask._expr import Expr

    pending, seen = [Expr], set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        for attribute in vars(cls).values():
            if isinstance(attribute, functools.cached_property) and not isinstance(getattr(attribute, "lock", None), _NoLock):
                attribute.lock = _NoLock()


def _receipt_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"path": r.fragment, "rows": int(r.rows), "checksum": r.checksum, "bytes": int(r.bytes),
             **({"digest": json.loads(r.digest)} if r.digest else {})}
            for r in frame.itertuples(index=False) if r.fragment]


_COUNTS_META = pd.DataFrame({"node": pd.Series([], dtype=object), "counts": pd.Series([], dtype=object)})


def _counts_frame(node_facts: dict[str, list]) -> pd.DataFrame:
    """``[rows, fingerprint]`` of every source partition, as a frame (so it is computed with the result's graph)."""
    return pd.DataFrame({"node": list(node_facts),
                         "counts": [json.dumps([[int(f[0]), str(f[1]), dict(f[2])] for f in v]) for v in node_facts.values()]},
                        columns=["node", "counts"]).astype(object)


def _facts_of_frame(table: pd.DataFrame) -> dict[str, list]:
    return {r.node: json.loads(r.counts) for r in table.itertuples(index=False)}


def _source_counts_of_frame(table: pd.DataFrame, slot_nodes: dict[str, str]) -> dict[str, list[int]]:
    counts = {nid: [f[0] for f in facts] for nid, facts in _facts_of_frame(table).items()}
    return _source_counts(counts, slot_nodes)


def _source_counts(counts: dict[str, list[int]], slot_nodes: dict[str, str]) -> dict[str, list[int]]:
    return {col: list(counts[nid]) for col, nid in slot_nodes.items()}


def _write_code(store: Any, nodes: list) -> dict[str, dict[str, Any]]:
    """Pickle (cloudpickle) what each node needs for replay beyond its JSON parameters; store it by checksum.

    Reading a store never unpickles these: a replay imports functions by name
    and checks them against the recorded token, and unpickles only with
    ``trust=True``. A function that does not pickle is recorded as such.
    """
    import cloudpickle

    from .ml import checksum
    from .store import write_bytes

    records: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if node.code is None:
            continue
        try:
            blob = cloudpickle.dumps(dict(node.code))
        except Exception as exc:  # noqa: BLE001 - any pickling failure: recorded, never fatal
            records[node.id] = {"error": f"does not pickle: {exc!r}"[:500]}
            continue
        digest = checksum(blob)
        url = _join(store.code_dir(node.id), f"{digest}.pkl")
        if not store.fs.exists(store.fs._strip_protocol(url)):
            write_bytes(url, blob)
        records[node.id] = {"path": f"{digest}.pkl", "checksum": digest, "bytes": len(blob)}
    return records


def show_progress(progress: bool | None) -> bool:
    """Whether a compute shows a progress bar: as asked, else when stderr is a terminal and
    ``$HIPPO_PROGRESS`` is not ``0`` (so scripts, pipes and CI logs stay quiet)."""
    import os

    if progress is not None:
        return bool(progress)
    return os.environ.get("HIPPO_PROGRESS", "") != "0" and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def dask_compute(collections: tuple[Any, ...], compute_kwargs: Mapping[str, Any], progress: bool) -> tuple[Any, ...]:
    """``dask.compute(*collections)``, with Dask's own progress bar when ``progress``.

    On the distributed scheduler that is ``distributed.progress`` over the
    submitted futures (the local schedulers' ``ProgressBar`` sees no task of
    a cluster); elsewhere ``dask.diagnostics.ProgressBar``. Either way the bar
    is drawn on stderr, so stdout stays the program's.
    """
    import dask

    if not progress:
        return dask.compute(*collections, **compute_kwargs)
    client = _distributed_client(collections, compute_kwargs)
    if client is not None:
        from distributed import progress as distributed_progress

        # Client.compute takes a flat list of collections (a dict of them would become one
        # Delayed, which dask-expr cannot key before optimizing): flatten, then rebuild
        flat = [c for item in collections for c in (item.values() if isinstance(item, dict) else [item])]
        futures = client.compute(flat, **{k: v for k, v in compute_kwargs.items() if k != "scheduler"})
        with contextlib.redirect_stdout(sys.stderr):  # distributed draws on stdout
            distributed_progress(futures, notebook=False, multi=False, scheduler=client.scheduler.address)
            print(file=sys.stderr)
        values = iter(client.gather(futures))
        return tuple({k: next(values) for k in item} if isinstance(item, dict) else next(values) for item in collections)
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=sys.stderr):
        return dask.compute(*collections, **compute_kwargs)


def _on_scheduler(scheduler: Any) -> contextlib.AbstractContextManager:
    """Make ``scheduler`` the one Dask uses for what it computes on its own (a sort's boundaries, while optimizing).

    A ``distributed.Client`` is made the current client, not put into ``dask.config``:
    a LocalCluster's nanny pickles the config into a worker it restarts (after a worker
    died mid-compute), and a Client does not pickle, so the restart failed and closing
    the cluster hung (distributed 2026.7).
    """
    import dask

    if scheduler is None:
        return contextlib.nullcontext()
    if type(scheduler).__name__ == "Client" and hasattr(scheduler, "as_current"):
        return scheduler.as_current()
    return dask.config.set(scheduler=scheduler)


def _distributed_client(collections: tuple[Any, ...], compute_kwargs: Mapping[str, Any]) -> Any:
    """The ``distributed.Client`` the compute runs on; None for Dask's local schedulers (they never recompute a task)."""
    from dask.base import get_scheduler

    flat = [c for item in collections for c in (item.values() if isinstance(item, dict) else [item])]
    scheduler = get_scheduler(scheduler=compute_kwargs.get("scheduler"), collections=flat)
    client = getattr(scheduler, "__self__", None)
    return client if client is not None and type(client).__name__ == "Client" else None


def _lost_computed_tasks(client: Any, since: float) -> tuple[float, int]:
    """The time of the scheduler's newest event, and how many already computed tasks it lost with a
    worker (a worker that died or was removed: Dask computes them again elsewhere) after ``since``."""
    events = client.get_events("all")
    newest = max((when for when, _ in events), default=since)
    lost = sum(len(msg.get("lost-computed-tasks") or ()) for when, msg in events
               if when > since and isinstance(msg, dict) and msg.get("action") == "remove-worker")
    return max(newest, since), lost


def compute_without_lost_tasks(collections: tuple[Any, ...], compute_kwargs: Mapping[str, Any],
                               progress: bool) -> tuple[Any, ...]:
    """:func:`dask_compute`, again once if the cluster lost computed tasks meanwhile; refused if it lost some again.

    When a worker dies, Distributed computes the tasks whose outputs it held again
    elsewhere, while tasks that already used the first outputs keep theirs. A function
    that does not give the same rows twice (one reading the worker, the clock, an
    unseeded generator) then leaves a result mixing two attempts, and group
    memberships written by the other attempt than the one the result used: answers
    for other rows. So a compute during which computed tasks were lost is computed
    once more, and that compute, in which every task ran once, is the run.
    """
    client = _distributed_client(collections, compute_kwargs)
    if client is None:
        return dask_compute(collections, compute_kwargs, progress)
    since, _ = _lost_computed_tasks(client, float("-inf"))
    for _ in range(2):
        values = dask_compute(collections, compute_kwargs, progress)
        since, lost = _lost_computed_tasks(client, since)
        if not lost:
            return values
    raise IncompleteRunError(
        f"the cluster lost workers holding computed tasks ({lost} tasks) in two computes of this pipeline in a row; "
        "Dask computed them again, and a result mixing two attempts of a task cannot be traced exactly, so the run "
        "is not committed. Compute again when the cluster is stable"
    )


def _failed(tracked: Tracked, infos: dict[str, Any], error: UserFunctionError, run_id: str,
            compute_kwargs: dict[str, Any]) -> UserFunctionError:
    """A user function raised on a worker: count the source partitions (to name source rows), mark the run failed."""
    import dask

    counts = {nid: list(info.counts) for nid, info in infos.items() if info.counts is not None}
    pending = {nid: [dask.delayed(len)(part) for part in info.partitions] for nid, info in infos.items() if nid not in counts}
    if pending:
        counted = dask.compute(pending, **compute_kwargs)[0]
        counts.update({nid: [int(n) for n in v] for nid, v in counted.items()})
    return tracked.failed(error, run_id, counts)


def _derivations(result: Node, nodes: list[Node], sources: list[SourceInfo]) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Which group ids the run derives from a source file instead of storing (:func:`hippo_dask.partition.derive_key`).

    Returns the manifest's ``derived`` record (per group-by node, and per group slot of
    the result: ``{"source", "column", "slot"}``) and, for the result fragments,
    group slot -> (result column, source slot) to check on every partition. A fragment
    marks what it did derive; the record says from where.
    """
    record: dict[str, Any] = {"memberships": {}, "result": {}}
    for node in nodes:
        if node.op in ("groupby", "transform"):
            found = key_source(node.inputs[0], node.params["keys"], sources)
            if found is not None:
                record["memberships"][node.id] = {"source": found[0].name, "column": found[1], "slot": found[2]}
    by_id = {n.id: n for n in nodes}
    derivable: dict[str, tuple[str, str]] = {}
    for slot in result.slots:
        spec = record["memberships"].get(result.slot_origin.get(slot, ""))
        origin = by_id.get(result.slot_origin.get(slot, ""))
        if spec is None or origin is None or slot != origin.new_slot:
            continue
        source = next(i for i in sources if i.name == spec["source"])
        for column in result.columns:
            found = copied_from(result, column)
            if found is not None and found[0].id == source.node.id and found[1] == spec["column"]:
                derivable[hidden(slot)] = (column, hidden(found[2]))
                record["result"][hidden(slot)] = {"source": spec["source"], "column": spec["column"], "slot": found[2]}
                break
    return record, derivable


def compute(tracked: Tracked, replay_of: str | None = None, links: Mapping[str, Any] | None = None,
            parquet: Mapping[str, Any] | None = None, progress: bool | None = None,
            **compute_kwargs: Any) -> tuple[pd.DataFrame | None, str]:
    """Compute ``tracked``; return the clean pandas result and the committed run id.

    ``parquet={"path": folder, "storage_options": {...}}`` writes the result
    from the workers instead, one parquet file and one lineage fragment per
    partition, and returns ``None`` for the result (nothing is gathered).

    ``progress``: a progress bar for the Dask compute (see :func:`show_progress`).

    ``replay_of`` and ``links`` (JSON) are written into the manifest: what run
    this one replays or was derived from (e.g. a rerun without some rows).

    The manifest lists exactly the fragments this run's own tasks wrote: each
    writing task leaves a receipt on its output partition, and the receipts are
    computed in the same graph as the result (one pass over the data).
    """
    # every source of the pipeline, including those whose slots a group-by consumed
    source_slots = dict(tracked.sources)
    infos: dict[str, Any] = {}  # source node id -> source (the copy whose row counts a fit computed, if any)
    for info in source_slots.values():
        if info.node.id not in infos or (infos[info.node.id].counts is None and info.counts is not None):
            infos[info.node.id] = info
    names = [info.name for info in infos.values()]
    if len(set(names)) != len(names):
        raise LineageError(
            f"two different sources are named {sorted({n for n in names if names.count(n) > 1})}; "
            "give each .source() a unique name"
        )
    nodes = ancestors(tracked.node)
    check_names = [n.params.get("name") for n in nodes if n.op in CHECKS]
    if len(set(check_names)) != len(check_names):
        raise LineageError(
            f"two checks or validations are named {sorted({n for n in check_names if check_names.count(n) > 1})}; "
            "names must be unique in a run (lin.violations(name) finds them by name)"
        )
    derived, derivable = _derivations(tracked.node, nodes, list(infos.values()))
    # Dask: every step built again on only the columns it and later steps need (pandas: as it ran)
    cut_sources: dict[str, Any] = {}  # source node id -> its partitions, read with the columns the run needs
    data, recorders = pruned(tracked, sources=cut_sources)
    recorders = {nid: rec for nid, rec in recorders.items() if nid in {n.id for n in nodes}}
    store = tracked.store
    run_id = store.start_run()
    # while it computes, the run's folder gets a fresh lease file (Store.gc leaves it alone)
    with store.lease(run_id):
        run_dir = store.run_dir(run_id)
        result_path = _join(run_dir, "result-00000.hippo")
        slot_nodes = {col: info.node.id for col, info in source_slots.items() if col in data.columns}
        if tracked.is_dask:
            import dask

            from ._dask import known_facts

            node_facts = {nid: known_facts(info) or [dask.delayed(P.partition_facts)(part)
                                                     for part in cut_sources.get(nid, info.partitions)]
                          for nid, info in infos.items()}
            import dask.dataframe as dd

            all_counts = dask.delayed(_counts_frame, pure=True)(node_facts)
            counts = dask.delayed(_source_counts_of_frame, pure=True)(all_counts, slot_nodes)
            # One partition, as DataFrame.compute() does: the result is gathered into one pandas
            # frame anyway, and a final sort_values then sorts in place instead of computing the
            # whole pipeline once more for its partition boundaries. A worker finishes it.
            if parquet is not None:  # every partition writes its rows and its lineage where it was computed
                finished = data.map_partitions(P.finish_to_parquet, counts, run_dir, parquet["path"],
                                                       parquet.get("storage_options"), derivable=derivable,
                                                       meta=P.RECEIPT_META, enforce_metadata=False)
                receipts = {P.RESULT_RECEIPT: finished}
            else:
                finished = data.repartition(npartitions=1).map_partitions(
                    P.finish_partition, counts, result_path, derivable, meta=P.clean(data._meta), enforce_metadata=False)
                receipts = {P.RESULT_RECEIPT: finished.map_partitions(P.receipt_of, P.RESULT_RECEIPT, meta=P.RECEIPT_META)}
            for nid, recorded in recorders.items():
                receipts[nid] = recorded.map_partitions(P.receipt_of, nid, meta=P.RECEIPT_META, enforce_metadata=False)
            _release_cached_property_locks()
            scheduler = compute_kwargs.get("scheduler")
            # optimizing may compute (sort boundaries): on the caller's scheduler, so workers do it
            with _on_scheduler(scheduler):
                # all expressions, computed in one graph: what tasks share runs once
                counts_frame = dd.from_delayed([all_counts], meta=_COUNTS_META, verify_meta=False)
                try:
                    bar = show_progress(progress)
                    if parquet is not None:
                        result = None
                        receipt_frames, counts_table = compute_without_lost_tasks((receipts, counts_frame),
                                                                                  compute_kwargs, bar)
                    else:
                        result, receipt_frames, counts_table = compute_without_lost_tasks(
                            (finished, receipts, counts_frame), compute_kwargs, bar)
                except UserFunctionError as error:
                    raise _failed(tracked, infos, error, run_id, compute_kwargs) from error.original
            node_facts = _facts_of_frame(counts_table)
        else:
            node_facts = {nid: [[n, fp, cols] for n, fp, cols in zip(info.counts, info.fingerprints, info.column_fingerprints)]
                          for nid, info in infos.items()}
        node_counts = {nid: [int(f[0]) for f in facts] for nid, facts in node_facts.items()}
        if not tracked.is_dask:
            finished = P.finish_partition(data, _source_counts(node_counts, slot_nodes), result_path, derivable)
            receipt_frames = {P.RESULT_RECEIPT: P.receipt_of(finished, P.RESULT_RECEIPT)}
            receipt_frames.update({nid: P.receipt_of(recorded, nid) for nid, recorded in recorders.items()})
            result = finished
            if parquet is not None:
                import fsspec

                rows = P.clean(finished)
                rows.attrs = {}
                with fsspec.open(parquet["path"].rstrip("/") + "/" + P.result_file_name(0), "wb",
                                 **dict(parquet.get("storage_options") or {})) as f:
                    rows.to_parquet(f, index=False)
        fragments = _receipt_rows(receipt_frames.pop(P.RESULT_RECEIPT))
        if len(fragments) != 1 and parquet is None:
            raise LineageError(f"internal: expected one result fragment, got {len(fragments)}")
        groups = {nid: sorted({r["path"] for r in _receipt_rows(frame)}) for nid, frame in receipt_frames.items()}
        for nid, names in tracked.receipts.items():  # written before this compute (by a fit)
            if nid in {n.id for n in nodes}:
                groups[nid] = sorted(set(groups.get(nid, [])) | set(names))
        missing = [n.id for n in nodes if (n.op in MEMBERSHIP or n.op in CHECKS or n.spread) and n.id not in groups]
        if missing:
            raise LineageError(f"internal: no receipts for the membership of node(s) {missing}; the run is not committed")
        codes = _write_code(store, nodes)
        if result is not None:
            result = result.reset_index(drop=True)  # rows are positions: labels and positions agree
            result.attrs = {}
            summary = {"columns": list(result.columns), "rows": len(result), "digest": fragments[0].get("digest", {}),
                       "index": list(tracked.index),  # columns compute() returns as the index (set_index)
                       # order-sensitive: lets a caller check a frame is this result, row for row
                       "fingerprint": list(P.result_fingerprint(result, list(result.columns)))}
            if parquet is not None:
                summary["parquet"] = {"path": parquet["path"], "files": [P.result_file_name(0)]}
        else:
            summary = {"columns": [c for c in data._meta.columns if not str(c).startswith(P.HIDDEN_PREFIX)],
                       "rows": sum(int(f["rows"]) for f in fragments),
                       "digest": P.combine_digests([f.get("digest", {}) for f in fragments]),
                       "parquet": {"path": parquet["path"], "files": [P.result_file_name(i) for i in range(len(fragments))]}}
        manifest = {
            "created": time.time(),
            "versions": _versions(),
            "nodes": [dict(n.to_json(), **({"code": codes[n.id]} if n.id in codes else {})) for n in nodes],
            "result": {
                "node": tracked.node.id,
                "fragments": [{k: v for k, v in f.items() if k != "digest"} for f in fragments],
                **summary,
            },
            "sources": {
                info.name: {
                    "node": nid,
                    "identity": dict(info.identity),
                    "columns": list(info.columns),
                    "partition_rows": [int(c) for c in node_counts[nid]],
                    "partition_fingerprints": [f[1] for f in node_facts[nid]],
                    "partition_column_fingerprints": [f[2] for f in node_facts[nid]],
                    "rows": int(sum(node_counts[nid])),
                }
                for nid, info in infos.items()
            },
            "group_fragments": groups,
        }
        if derived["memberships"] or derived["result"]:
            manifest["derived"] = derived
        if replay_of is not None:
            manifest["replay_of"] = replay_of
        manifest.update(dict(links or {}))
        store.commit_run(run_id, manifest)
        return result, run_id
