"""``hippo_dask._core.RowMap`` against a pure-Python oracle: explicit (output, input) pair sets."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_dask import _core
from hippo_dask._core import RowMap
from hippo_dask.errors import DecodeError, HippoError, LineageError, QueryError

SETTINGS = settings(max_examples=400, deadline=None)


def i64(values) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64)


@dataclass
class Case:
    """A map, and what it must mean: its pairs and its sizes."""

    map: RowMap
    pairs: frozenset[tuple[int, int]]
    n_in: int
    n_out: int


def identity(n):
    return Case(RowMap.identity(n), frozenset((i, i) for i in range(n)), n, n)


def offset(offset, n_in, n_out):
    pairs = frozenset((offset + i, i) for i in range(n_in))
    return Case(RowMap.offset(offset, n_in, n_out), pairs, n_in, n_out)


def select(mask):
    kept = [i for i, keep in enumerate(mask) if keep]
    pairs = frozenset(enumerate(kept))
    return Case(RowMap.select(np.asarray(mask, dtype=bool)), pairs, len(mask), len(kept))


def select_ids(kept, n_in):
    return Case(RowMap.select_ids(i64(kept), n_in), frozenset(enumerate(kept)), n_in, len(kept))


def permutation(order):
    n = len(order)
    return Case(RowMap.permutation(i64(order)), frozenset(enumerate(order)), n, n)


def expand(counts):
    outputs = [i for i, count in enumerate(counts) for _ in range(count)]
    pairs = frozenset(enumerate(outputs))
    return Case(RowMap.expand(i64(counts)), pairs, len(counts), len(outputs))


def group(codes, n_groups):
    pairs = frozenset((g, i) for i, g in enumerate(codes))
    return Case(RowMap.group(i64(codes), n_groups), pairs, len(codes), n_groups)


def pair(pairs, n_out, n_in):
    outs, ins = i64(o for o, _ in pairs), i64(i for _, i in pairs)
    return Case(RowMap.pair(outs, ins, n_out, n_in), frozenset(pairs), n_in, n_out)


def window(n_in, size, step):
    pairs, j = set(), 0
    while j * step < n_in:
        pairs.update((j, i) for i in range(j * step, min(j * step + size, n_in)))
        j += 1
    return Case(RowMap.window(n_in, size, step), frozenset(pairs), n_in, j)


def all_(n_in, n_out):
    pairs = frozenset((o, i) for o in range(n_out) for i in range(n_in))
    return Case(RowMap.all(n_in, n_out), pairs, n_in, n_out)


KINDS = ["identity", "offset", "select", "permutation", "expand", "group", "pair", "window", "all"]


@st.composite
def cases(draw, n_in=None, max_rows=20):
    """Any map (with ``n_in`` input rows when given)."""
    n = draw(st.integers(0, max_rows)) if n_in is None else n_in
    kind = draw(st.sampled_from(KINDS + ["select_ids"]))
    if kind == "identity":
        return identity(n)
    if kind == "offset":
        start = draw(st.integers(0, 3))
        return offset(start, n, n + start + draw(st.integers(0, 3)))
    if kind == "select":
        return select(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if kind == "select_ids":
        return select_ids(sorted(draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n))) if n else [], n)
    if kind == "permutation":
        return permutation(draw(st.permutations(range(n))))
    if kind == "expand":
        return expand(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    if kind == "group":
        n_groups = draw(st.integers(1 if n else 0, n + 2))
        return group(draw(st.lists(st.integers(0, max(n_groups - 1, 0)), min_size=n, max_size=n)), n_groups)
    if kind == "pair":
        n_out = draw(st.integers(0, 6))
        if n == 0 or n_out == 0:
            return pair([], n_out, n)
        return pair(draw(st.lists(st.tuples(st.integers(0, n_out - 1), st.integers(0, n - 1)), max_size=20)), n_out, n)
    if kind == "window":
        return window(n, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return all_(n, draw(st.integers(0, 3)))


def all_pairs(m: RowMap) -> frozenset[tuple[int, int]]:
    """The pairs of a map, read back one output row at a time."""
    return frozenset((o, int(i)) for o in range(m.n_out) for i in m.backward(i64([o])))


def oracle_backward(pairs, rows):
    return sorted({i for o, i in pairs if o in set(rows)})


def oracle_forward(pairs, rows):
    return sorted({o for o, i in pairs if i in set(rows)})


@st.composite
def case_and_rows(draw, side):
    case = draw(cases())
    n = case.n_out if side == "out" else case.n_in
    rows = draw(st.lists(st.integers(0, n - 1), max_size=10)) if n else []
    return case, rows


@SETTINGS
@given(cases())
def test_sizes_kind_and_pairs(case):
    assert (case.map.n_in, case.map.n_out) == (case.n_in, case.n_out)
    assert case.map.kind in KINDS
    assert all_pairs(case.map) == case.pairs


@SETTINGS
@given(case_and_rows("out"))
def test_backward(case_rows):
    case, rows = case_rows
    result = case.map.backward(i64(rows))
    assert result.dtype == np.int64
    assert result.tolist() == oracle_backward(case.pairs, rows)


@SETTINGS
@given(case_and_rows("in"))
def test_forward(case_rows):
    case, rows = case_rows
    result = case.map.forward(i64(rows))
    assert result.dtype == np.int64
    assert result.tolist() == oracle_forward(case.pairs, rows)


@st.composite
def composable(draw):
    first = draw(cases(max_rows=12))
    return first, draw(cases(n_in=first.n_out))


@SETTINGS
@given(composable())
def test_then_is_the_join_of_pair_sets(maps):
    first, second = maps
    composed = first.map.then(second.map)
    expected = frozenset((c, a) for c, b in second.pairs for b2, a in first.pairs if b == b2)
    assert (composed.n_in, composed.n_out) == (first.n_in, second.n_out)
    assert all_pairs(composed) == expected


@SETTINGS
@given(cases())
def test_bytes_round_trip(case):
    data = case.map.to_bytes()
    assert isinstance(data, bytes) and case.map.nbytes == len(data)
    decoded = RowMap.from_bytes(data)
    assert decoded == case.map
    assert decoded.kind == case.map.kind
    assert all_pairs(decoded) == case.pairs


@SETTINGS
@given(cases())
def test_pickle_round_trip(case):
    assert pickle.loads(pickle.dumps(case.map)) == case.map


@SETTINGS
@given(cases(max_rows=40), st.data())
def test_damaged_bytes_raise_decode_error(case, data):
    original = case.map.to_bytes()
    damaged = bytearray(original)
    position = data.draw(st.integers(0, len(damaged) - 1))
    damaged[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecodeError):
        RowMap.from_bytes(bytes(damaged))
    with pytest.raises(DecodeError):
        RowMap.from_bytes(original[: data.draw(st.integers(0, len(original) - 1))])


def test_simplifications():
    mask = np.array([True, False, True, True])
    s = RowMap.select(mask)
    assert RowMap.identity(4).then(s) == s and RowMap.identity(4).then(s).kind == "select"
    assert s.then(RowMap.identity(3)).kind == "select"
    assert s.then(RowMap.select(np.array([False, True, True]))).kind == "select"
    assert RowMap.offset(1, 2, 4).then(RowMap.offset(3, 4, 9)).kind == "offset"
    p = RowMap.permutation(i64([2, 0, 1]))
    assert p.then(p).kind == "permutation"
    assert RowMap.all(5, 4).then(s).kind == "all"
    assert RowMap.group(i64([0, 1, 1]), 2).then(RowMap.all(2)).kind == "all"
    assert RowMap.window(10, 3).then(RowMap.group(i64([0] * 10), 1)).kind == "pair"


def test_equality_is_by_pairs():
    assert RowMap.identity(3) == RowMap.permutation(i64([0, 1, 2]))
    assert RowMap.identity(3) == RowMap.select(np.ones(3, dtype=bool))
    assert RowMap.identity(3) != RowMap.identity(4)
    assert RowMap.window(3, size=5, step=1) != RowMap.all(3, 3)
    assert RowMap.window(3, size=5, step=7) == RowMap.all(3, 1)
    assert RowMap.identity(2) != "identity"


def test_repr_names_kind_and_sizes():
    assert repr(RowMap.window(10, 3, 2)) == "RowMap(kind='window', n_in=10, n_out=5, size=3, step=2)"


def test_out_of_range_query_is_query_error_naming_the_range():
    m = RowMap.select(np.array([True, False, True]))
    with pytest.raises(QueryError, match=r"row 2 .*0 <= row < 2"):
        m.backward(i64([0, 2]))
    with pytest.raises(QueryError, match=r"0 <= row < 3"):
        m.forward(i64([-1]))
    err = pytest.raises(QueryError, m.forward, i64([3])).value
    assert isinstance(err, ValueError) and isinstance(err, HippoError)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RowMap.permutation(i64([0, 0])),
        lambda: RowMap.select_ids(i64([2, 1]), 3),
        lambda: RowMap.offset(2, 3, 4),
        lambda: RowMap.expand(i64([1, -1])),
        lambda: RowMap.group(i64([0, 2]), 2),
        lambda: RowMap.pair(i64([0]), i64([0, 1]), 1, 2),
        lambda: RowMap.window(3, 0),
        lambda: RowMap.identity(3).then(RowMap.identity(4)),
    ],
)
def test_invalid_arguments_raise_lineage_error(build):
    with pytest.raises(LineageError):
        build()


def test_foreign_bytes_raise_decode_error():
    for data in [b"", b"not hippo", _core.encode_ids(i64([1, 2]))]:
        with pytest.raises(DecodeError) as info:
            RowMap.from_bytes(data)
        assert isinstance(info.value, ValueError) and isinstance(info.value, HippoError)


def test_non_contiguous_input_is_accepted():
    order = np.arange(20, dtype=np.int64)[::-2] // 2
    m = RowMap.permutation(order)
    assert m.backward(np.arange(10, dtype=np.int64)[::3]).tolist() == sorted(order[::3].tolist())
