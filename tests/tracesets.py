"""Small helpers to compare TraceSets with expectations written by hand."""

from __future__ import annotations

import numpy as np

import hippo_dask as hippo


def cellset(ts: hippo.TraceSet) -> set[tuple[int, str]]:
    return set(zip(ts.cells["row"].astype(int).tolist(), ts.cells["column"].astype(str).tolist(), strict=True))


def rowset(ts: hippo.TraceSet) -> set[int]:
    assert ts.rows.dtype == np.int64
    assert np.all(np.diff(ts.rows) > 0), "TraceSet.rows must be sorted and unique"
    return set(ts.rows.tolist())


def cells_of(rows, columns) -> set[tuple[int, str]]:
    return {(int(r), c) for r in rows for c in columns}


def sample_rows(n: int, k: int = 25, seed: int = 1) -> list[int]:
    """Up to ``k`` row positions of ``n``, always with the first and the last."""
    if n <= k:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(set(rng.choice(n, size=k - 2, replace=False).tolist()) | {0, n - 1})
