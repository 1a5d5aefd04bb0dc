"""How the capture runs on Dask: the same per-partition functions, through ``map_partitions``.

Twin of :mod:`hippo_dask._pandas` (same names, same signatures). Nothing here
depends on Dask partition numbers: source partitions are bound to explicit
indices through ``to_delayed`` / ``from_delayed`` when the source is built.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import partition as P

IS_DASK = True


def partitionwise(data: Any, fn: Callable, *args: Any, meta: pd.DataFrame | None = None) -> Any:
    """``fn(partition, *args)`` on every partition, on the workers.

    Without ``meta``, the output's meta comes from a dry run (see :func:`dry_meta`).
    Dask collections among ``args`` (one partition) are broadcast to every partition.
    """
    if meta is None:
        meta = dry_meta(data, fn, *args)
    return data.map_partitions(fn, *args, meta=meta, enforce_metadata=False)


def dry_meta(data: Any, fn: Callable, *args: Any) -> pd.DataFrame:
    """``fn``'s output types, from a run on fake rows that writes nothing.

    User code runs on a few fake rows of the right types (an empty frame tells a
    user function too little); a :class:`~hippo_dask.partition.UserCall` loses its
    fragment folder, so a spread records nothing; collections become their meta.
    """
    from dask.dataframe.utils import meta_nonempty

    user_code = any(isinstance(a, P.UserCall) for a in args)
    sample = meta_nonempty(data._meta) if user_code else data._meta
    dry = [replace(a, fragment_dir=None, dry=True) if isinstance(a, P.UserCall) else (a._meta if hasattr(a, "_meta") else a)
           for a in args]
    return fn(sample, *dry).iloc[:0]


def user_meta(meta: Any, data: Any, call: Any) -> pd.DataFrame:
    """The meta a user gave for a ``map``, with hippo's hidden columns added."""
    from dask.dataframe.utils import make_meta

    out = P.reattach(make_meta(meta), data._meta)
    if call.slot_column:
        out = out.assign(**{call.slot_column: np.zeros(0, dtype=np.int64)})
    return out


def meta(data: Any) -> pd.DataFrame:
    return data._meta


def probe(data: Any) -> pd.DataFrame:
    """Fake rows of the right types (Dask data is not at hand); the per-partition checks see real rows."""
    from dask.dataframe.utils import meta_nonempty

    return P.clean(meta_nonempty(data._meta))


def source_partitions(frame: Any, column: str, key: str) -> tuple[Any, tuple[Any, ...]]:
    """``frame`` with the source ids in hidden ``column``: (the data, its delayed partitions).

    Ids are bound per partition index here, once (never a Dask partition number at run
    time); the tasks are named ``key-<i>``.
    """
    import dask
    import dask.dataframe as dd

    partitions = tuple(
        dask.delayed(P.attach_source, pure=True)(part, column, i, dask_key_name=f"{key}-{i}")
        for i, part in enumerate(frame.to_delayed())
    )
    divisions = frame.divisions if len(partitions) == frame.npartitions else None
    data = dd.from_delayed(list(partitions), meta=P.attach_source(frame._meta, column, 0), divisions=divisions,
                           verify_meta=False)
    return data, partitions


def attach_source(frame: Any, column: str, identity: str) -> tuple[Any, dict[str, Any]]:
    data, partitions = source_partitions(frame, column, f"hippo-source-{identity}")
    facts = {"kind": "dask", "expression": frame._name, "partitions": len(partitions),
             "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
    return data, {"counts": None, "fingerprints": None, "column_fingerprints": None, "partitions": partitions,
                  "identity": facts}


def groupby_agg(data: Any, keys: Sequence[str], named: Mapping[str, tuple[str, Any]], dropna: bool) -> Any:
    if any(callable(f) for _, f in named.values()):
        # A function of a whole group's values: every group in one partition first (a shuffle on
        # the keys), then pandas aggregates each partition's groups.
        from dask.dataframe.utils import meta_nonempty

        from . import _pandas

        shuffled = data.shuffle(on=list(keys))
        meta = _pandas.groupby_agg(meta_nonempty(data._meta), keys, named, dropna).iloc[:0]
        return shuffled.map_partitions(_pandas.groupby_agg, list(keys), dict(named), dropna, meta=meta,
                                       enforce_metadata=False)
    grouped = data.groupby(list(keys), dropna=dropna, observed=True)
    # Dask cannot mix a custom aggregation (nunique) with the shuffle-based median in one
    # call: aggregate those two kinds apart and join the results on the keys (only then:
    # a join of two aggregations trips Dask's optimizer in some graphs).
    batches = [{k: v for k, v in named.items() if (v[1] == "median") == shuffled} for shuffled in (False, True)]
    if not any(f == "nunique" for _, f in named.values()):
        batches = [dict(named)]
    outs = [grouped.agg(**{k: pd.NamedAgg(column=c, aggfunc=P.dask_aggregation(f)) for k, (c, f) in b.items()})
            for b in batches if b]
    out = outs[0] if len(outs) == 1 else outs[0].join(outs[1])
    return out[list(named)].reset_index()


def sort_values(data: Any, by: list[str], ascending: bool) -> Any:
    return data.sort_values(by=by if len(by) > 1 else by[0], ascending=ascending)


def drop_duplicates(data: Any, subset: list[str], keep: str) -> Any:
    return data.drop_duplicates(subset=subset, keep=keep, split_out=1)


def sample(data: Any, n: int | None, frac: float | None, replace: bool, random_state: int) -> Any:
    from .errors import LineageError

    if n is not None or frac is None:
        raise LineageError("sample on a Dask frame takes frac=, not n= (Dask cannot sample an exact count)")
    return data.sample(frac=frac, replace=replace, random_state=random_state)


def head(data: Any, n: int) -> Any:
    return data.head(n, npartitions=-1, compute=False)


def concat(pieces: list[Any], ignore_index: bool) -> Any:
    import dask.dataframe as dd

    data = dd.concat(pieces, ignore_unknown_divisions=True)
    return data.reset_index(drop=True) if ignore_index else data


def hole_dtypes(data: Any, columns: Sequence[str]) -> dict[str, Any]:
    """Columns a merge may leave holes in, typed as pandas types them with holes, in every partition.

    Else partitions with and without holes disagree on dtypes (int vs float) and
    Dask's sort_values fails on them.
    """
    casts = {}
    for c in columns:
        dtype = data._meta[c].dtype
        if P.nullable_dtype(dtype) != dtype:
            casts[c] = P.nullable_dtype(dtype)
    return casts


def to_nullable_ids(data: Any, columns: Sequence[str]) -> Any:
    """Hidden id columns as nullable Int64, so a merge's holes never pass them through float."""
    return data.astype({c: "Int64" for c in columns}) if columns else data


def gather_training(training: Any, fit_id: str, receipt_frames: Mapping[str, Any], infos: Mapping[str, Any],
                    partial: bool, y: str | None, compute_kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, list[str]], dict[str, list[int]], Any]:
    """The training rows to fit on, computed once, with the receipts of what computing them wrote.

    ``partial=False``: every training row gathered into one pandas frame (the
    columns to fit on only). ``partial=True``: the training rows are persisted
    (on the workers, with a distributed Client) and handed out one partition at a
    time, for ``partial_fit``. Either way the receipts and source row counts are
    computed in the same pass.
    """
    import dask

    import dask.dataframe as dd

    from .compute import _COUNTS_META, _counts_frame, _release_cached_property_locks

    counts = {nid: known_facts(info) or [dask.delayed(P.partition_facts)(part) for part in info.partitions]
              for nid, info in infos.items()}
    # as a (one-partition) frame: one compute may not mix delayed objects and expressions
    counts = dd.from_delayed([dask.delayed(_counts_frame, pure=True)(counts)], meta=_COUNTS_META, verify_meta=False)
    if partial:
        training = training.persist(**compute_kwargs)
    receipt_frames = {**receipt_frames, fit_id: training}
    receipts = {nid: frame.map_partitions(P.receipt_of, nid, meta=P.RECEIPT_META, enforce_metadata=False)
                for nid, frame in receipt_frames.items()}
    _release_cached_property_locks()
    classes = training[y].drop_duplicates() if partial and y is not None else None
    whole = None if partial else training
    whole, computed, counts_table, classes = dask.compute(whole, receipts, counts, classes, **compute_kwargs)
    counts = {r.node: json.loads(r.counts) for r in counts_table.itertuples(index=False)}
    found = {nid: [r for r in frame["fragment"] if r] for nid, frame in computed.items()}
    if classes is not None:
        classes = np.unique(classes.to_numpy())
    from .ml import in_id_order

    if partial:
        batches = (in_id_order(part.compute(**compute_kwargs)) for part in training.partitions)
    else:
        batches = [in_id_order(whole)]
    return batches, found, counts, classes


def known_facts(info: Any) -> list | None:
    """``[rows, fingerprint]`` per partition of a source, when already computed (by a fit)."""
    if info.counts is None or info.fingerprints is None or info.column_fingerprints is None:
        return None
    return [[int(n), fp, cols] for n, fp, cols in zip(info.counts, info.fingerprints, info.column_fingerprints)]

