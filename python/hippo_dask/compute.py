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
import posixpath
import sys
import time
from importlib import metadata
from typing import Any

import fsspec
import pandas as pd

from . import partition as P
from .errors import LineageError
from .frame import Tracked
from .plan import ancestors
from .store import _join

_VERSIONED = ("hippo_dask", "pandas", "numpy", "dask", "distributed", "pyarrow")


def _versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


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


def compute(tracked: Tracked, **compute_kwargs: Any) -> tuple[pd.DataFrame, str]:
    """Compute ``tracked``; return the clean pandas result and the committed run id."""
    # every source of the pipeline, including those whose slots a group-by consumed
    source_slots = dict(tracked.sources)
    infos = {info.node.id: info for info in source_slots.values()}  # source node id -> source
    names = [info.name for info in infos.values()]
    if len(set(names)) != len(names):
        raise LineageError(
            f"two different sources are named {sorted({n for n in names if names.count(n) > 1})}; "
            "give each .source() a unique name"
        )
    store = tracked.store
    run_id = store.start_run()
    run_dir = store.run_dir(run_id)

    result_path = _join(run_dir, "result-00000.hippo")
    if tracked.is_dask:
        import dask

        node_counts = {
            nid: list(info.counts) if info.counts is not None else [dask.delayed(len)(part) for part in info.partitions]
            for nid, info in infos.items()
        }
        counts = {col: node_counts[info.node.id] for col, info in source_slots.items() if col in tracked.data.columns}
        # One partition, as DataFrame.compute() does: the result is gathered into one pandas
        # frame anyway, and a final sort_values then sorts in place instead of computing the
        # whole pipeline once more for its partition boundaries. A worker finishes it.
        _release_cached_property_locks()
        scheduler = compute_kwargs.get("scheduler")
        # optimizing may compute (sort boundaries): on the caller's scheduler, so workers do it
        with dask.config.set(scheduler=scheduler) if scheduler is not None else contextlib.nullcontext():
            (whole,) = tracked.data.repartition(npartitions=1).to_delayed()
        finished = dask.delayed(P.finish_partition)(whole, counts, result_path)
        (result, fragment), node_counts = dask.compute(finished, node_counts, **compute_kwargs)
    else:
        node_counts = {nid: list(info.counts) for nid, info in infos.items()}
        counts = {col: node_counts[info.node.id] for col, info in source_slots.items() if col in tracked.data.columns}
        result, fragment = P.finish_partition(tracked.data, counts, result_path)
    fragments = [fragment]

    nodes = ancestors(tracked.node)
    groups = {}
    for node in nodes:
        if node.op == "groupby":
            fs, path = fsspec.core.url_to_fs(store.fragment_dir(node.id))
            names = fs.ls(path, detail=False) if fs.exists(path) else []
            groups[node.id] = sorted(posixpath.basename(p) for p in names if p.endswith(".hippo"))
    manifest = {
        "created": time.time(),
        "versions": _versions(),
        "nodes": [n.to_json() for n in nodes],
        "result": {
            "node": tracked.node.id,
            "columns": list(result.columns),
            "rows": len(result),
            "fragments": fragments,
        },
        "sources": {
            info.name: {
                "node": nid,
                "identity": dict(info.identity),
                "columns": list(info.columns),
                "partition_rows": [int(c) for c in node_counts[nid]],
                "rows": int(sum(node_counts[nid])),
            }
            for nid, info in infos.items()
        },
        "group_fragments": groups,
    }
    store.commit_run(run_id, manifest)
    return result, run_id

