"""How the capture runs on pandas: the whole frame is the one partition.

Every function here has a twin of the same name and signature in
:mod:`hippo_dask._dask`; :mod:`hippo_dask.frame` calls whichever matches the
data and never branches on the backend itself.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import partition as P

IS_DASK = False


def partitionwise(data: pd.DataFrame, fn: Callable, *args: Any, meta: pd.DataFrame | None = None) -> pd.DataFrame:
    """``fn(partition, *args)`` on the one partition (``meta`` is for Dask only)."""
    return fn(data, *args)


def user_meta(meta: Any, data: pd.DataFrame, call: Any) -> None:
    """pandas needs no meta: the data is at hand."""
    return None


def meta(data: pd.DataFrame) -> pd.DataFrame:
    return data.iloc[:0]


def probe(data: pd.DataFrame) -> pd.DataFrame:
    """Real rows to learn what user callables read and write (the checks run on all rows later)."""
    return P.clean(data.head(64))


def attach_source(frame: pd.DataFrame, column: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The source with its row ids, and what identifies it (its content fingerprint, for replay)."""
    data = P.attach_source(frame, column, 0)
    facts = {"kind": "pandas", "rows": len(frame), "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
    _, combined, sums = P.partition_facts(frame)
    return data, {"counts": (len(frame),), "fingerprints": (combined,), "column_fingerprints": (sums,),
                  "partitions": (), "identity": facts}


def groupby_agg(data: pd.DataFrame, keys: Sequence[str], named: Mapping[str, tuple[str, str]], dropna: bool) -> pd.DataFrame:
    grouped = data.groupby(list(keys), dropna=dropna, sort=True, observed=True)
    out = grouped.agg(**{k: pd.NamedAgg(column=c, aggfunc=f) for k, (c, f) in named.items()}).reset_index()
    if len(out) == 0:
        out = out.astype({k: data[k].dtype for k in keys})
    return out


def sort_values(data: pd.DataFrame, by: list[str], ascending: bool) -> pd.DataFrame:
    """A stable sort: ties keep their order, so which duplicate a later step keeps is defined."""
    return data.sort_values(by=by, ascending=ascending, kind="stable")


def drop_duplicates(data: pd.DataFrame, subset: list[str], keep: str) -> pd.DataFrame:
    return data.drop_duplicates(subset=subset, keep=keep)


def sample(data: pd.DataFrame, n: int | None, frac: float | None, replace: bool, random_state: int) -> pd.DataFrame:
    return data.sample(n=n, frac=frac, replace=replace, random_state=random_state)


def head(data: pd.DataFrame, n: int) -> pd.DataFrame:
    return data.head(n)


def concat(pieces: list[pd.DataFrame], ignore_index: bool) -> pd.DataFrame:
    return pd.concat(pieces, ignore_index=ignore_index)


def hole_dtypes(data: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """pandas types columns with merge holes itself, per frame: nothing to align."""
    return {}


def to_nullable_ids(data: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Hidden id columns as nullable Int64, so a merge's holes never pass them through float."""
    return data.astype({c: "Int64" for c in columns}) if columns else data


def gather_training(training: pd.DataFrame, fit_id: str, receipt_frames: Mapping[str, pd.DataFrame],
                    infos: Mapping[str, Any], partial: bool, y: str | None, compute_kwargs: Mapping[str, Any]) -> tuple[list[pd.DataFrame], dict[str, list[str]], dict[str, list[int]], Any]:
    """The training rows to fit on, with the receipts of what computing them wrote.

    ``compute_kwargs`` are for Dask. Returns (batches to fit on, node id -> fragment names, source node id ->
    ``[rows, fingerprint]`` per partition, the label's classes for ``partial_fit`` or None).
    """
    receipt_frames = {**receipt_frames, fit_id: training}
    receipts = {nid: [r for r in P.receipt_of(frame, nid)["fragment"] if r] for nid, frame in receipt_frames.items()}
    counts = {nid: [[int(n), fp, cols] for n, fp, cols in zip(info.counts, info.fingerprints, info.column_fingerprints)]
              for nid, info in infos.items()}
    classes = np.unique(training[y].to_numpy()) if partial and y is not None else None
    return [P.clean(training)], receipts, counts, classes
