"""Bytes per row of hippo_dask's row-map encodings next to the information-theoretic minimum.

Run: ``python benches/rust/bytes_per_row.py [n_rows]`` (default 10M rows; needs the built
``hippo_dask._core``). The minimum is the log2 of the number of distinct maps of that
shape, per input row; "ratio" is encoded size / minimum (1.00 is optimal).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from hippo_dask._core import RowMap


def log2_factorial(n: int) -> float:
    return math.lgamma(n + 1) / math.log(2)


def log2_binomial(n: int, k: int) -> float:
    return log2_factorial(n) - log2_factorial(k) - log2_factorial(n - k)


def scenarios(n: int, rng: np.random.Generator):
    """(name, build the map, minimum bits for the whole map)."""
    mask = rng.random(n) < 0.5
    yield "select 50% random", lambda: RowMap.select(mask), log2_binomial(n, int(mask.sum()))

    sparse = rng.random(n) < 0.01
    yield "select 1% random", lambda: RowMap.select(sparse), log2_binomial(n, int(sparse.sum()))

    runs = 1000  # keep 1000 random ranges: the 2*runs boundaries are the information
    bounds = np.sort(rng.choice(n, size=2 * runs, replace=False))
    in_run = np.zeros(n + 1, dtype=np.int64)
    np.add.at(in_run, bounds, 1)
    run_mask = (np.cumsum(in_run[:n]) % 2).astype(bool)
    yield "select 1000 sorted runs", lambda: RowMap.select(run_mask), log2_binomial(n, 2 * runs)

    order = rng.permutation(n).astype(np.int64)
    yield "random permutation", lambda: RowMap.permutation(order), log2_factorial(n)

    n_groups = n // 10
    codes = rng.integers(0, n_groups, n)
    yield f"group: {n_groups:,} groups", lambda: RowMap.group(codes, n_groups), n * math.log2(n_groups)

    counts = rng.integers(0, 4, n)
    yield "expand: counts 0..3", lambda: RowMap.expand(counts), n * 2.0

    matches = rng.integers(0, n, n)
    yield "pair: join, 1 input per output", lambda: RowMap.pair(np.arange(n), matches, n, n), n * math.log2(n)

    yield "window(size=100)", lambda: RowMap.window(n, 100), 0.0


def best_time(action, repeats: int = 3):
    """Smallest wall time of ``action()`` over a few runs, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # free the previous result outside the timed region
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    rng = np.random.default_rng(42)
    print(f"{n:,} input rows; times are the best of 3 runs through hippo_dask._core")
    header = (
        f"{'map':32} {'bytes':>12} {'bits/row':>9} {'min bits/row':>13} {'ratio':>6} "
        f"{'build':>9} {'encode':>9} {'decode':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, build, minimum_bits in scenarios(n, rng):
        build_time, row_map = best_time(build)
        encode_time, data = best_time(row_map.to_bytes)
        decode_time, decoded = best_time(lambda: RowMap.from_bytes(data))
        assert decoded == row_map
        bits = 8 * len(data) / n
        minimum = minimum_bits / n
        ratio = f"{bits / minimum:6.3f}" if minimum > 0 else "     -"
        print(
            f"{name:32} {len(data):12,} {bits:9.4f} {minimum:13.4f} {ratio} "
            f"{build_time * 1e3:7.1f}ms {encode_time * 1e3:7.1f}ms {decode_time * 1e3:7.1f}ms"
        )


if __name__ == "__main__":
    main()
