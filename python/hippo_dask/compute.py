"""Computing a tracked frame: the result, plus its lineage committed to the store.

For Dask, every result partition is finished by a task on a worker: it strips
the hidden columns, turns source ids into source positions, writes its slot
arrays as a fragment and returns the clean rows. Group memberships were
already written by the tasks that computed them. The driver then writes the
manifest, last and atomically, naming every fragment with its checksum.
"""

from __future__ import annotations

import posixpath
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


def compute(tracked: Tracked, **compute_kwargs: Any) -> tuple[pd.DataFrame, str]:
    """Compute ``tracked``; return the clean pandas result and the committed run id."""
    if tracked.is_dask and compute_kwargs.get("scheduler") is not None:
        import dask

        # Optimizing the graph may itself compute (sort_values computes its divisions):
        # that must run on the scheduler the caller chose too, not on local threads.
        with dask.config.set(scheduler=compute_kwargs["scheduler"]):
            return _compute(tracked, **compute_kwargs)
    return _compute(tracked, **compute_kwargs)


def _compute(tracked: Tracked, **compute_kwargs: Any) -> tuple[pd.DataFrame, str]:
    store = tracked.store
    run_id = store.start_run()
    run_dir = store.run_dir(run_id)
    # every source of the pipeline, including those whose slots a group-by consumed
    source_slots = dict(tracked.sources)

    by_source: dict[str, list[str]] = {}  # source node id -> its slot columns in the result
    infos = {}
    for col, info in source_slots.items():
        by_source.setdefault(info.node.id, []).append(col)
        infos[info.node.id] = info
    names = [info.name for info in infos.values()]
    if len(set(names)) != len(names):
        raise LineageError(
            f"two different sources are named {sorted({n for n in names if names.count(n) > 1})}; "
            "give each .source() a unique name"
        )

    if tracked.is_dask:
        import dask

        node_counts = {
            nid: list(info.counts) if info.counts is not None else [dask.delayed(len)(part) for part in info.partitions]
            for nid, info in infos.items()
        }
        counts = {col: node_counts[info.node.id] for col, info in source_slots.items() if col in tracked.data.columns}
        finished = [
            dask.delayed(P.finish_partition)(part, counts, _join(run_dir, f"result-{i:05d}.hippo"))
            for i, part in enumerate(tracked.data.to_delayed())
        ]
        finished, node_counts = dask.compute(finished, node_counts, **compute_kwargs)
        pieces = [frame for frame, _ in finished]
        fragments = [info for _, info in finished]
        non_empty = [p for p in pieces if len(p)]
        result = pd.concat(non_empty) if len(non_empty) > 1 else (non_empty[0] if non_empty else pieces[0])
    else:
        node_counts = {nid: list(info.counts) for nid, info in infos.items()}
        counts = {col: node_counts[info.node.id] for col, info in source_slots.items() if col in tracked.data.columns}
        result, fragment = P.finish_partition(tracked.data, counts, _join(run_dir, "result-00000.hippo"))
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

