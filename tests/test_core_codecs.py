"""``hippo_dask._core`` array codecs, containers and O(n) helpers against plain-Python oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_dask import _core
from hippo_dask.errors import DecodeError, HippoError, LineageError

SETTINGS = settings(max_examples=300, deadline=None)

int64s = st.integers(-(2**63), 2**63 - 1)
id_arrays = st.one_of(
    st.lists(int64s, max_size=50),
    st.lists(st.integers(-1, 30), max_size=300),
    st.builds(lambda start, n: list(range(start, start + n)), st.integers(-50, 50), st.integers(0, 500)),
    st.builds(sorted, st.sets(st.integers(0, 10_000), max_size=400)),
).map(lambda values: np.asarray(values, dtype=np.int64))


@SETTINGS
@given(id_arrays)
def test_ids_round_trip(ids):
    data = _core.encode_ids(ids)
    decoded = _core.decode_ids(data)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, ids)


@SETTINGS
@given(id_arrays, st.data())
def test_damaged_ids_raise_decode_error(ids, data):
    encoded = bytearray(_core.encode_ids(ids))
    encoded[data.draw(st.integers(0, len(encoded) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecodeError):
        _core.decode_ids(bytes(encoded))


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), id_arrays, max_size=4))
def test_fragment_round_trip_keeps_order(arrays):
    decoded = _core.decode_fragment(_core.encode_fragment(arrays))
    assert list(decoded) == list(arrays)
    for name, values in arrays.items():
        np.testing.assert_array_equal(decoded[name], values)


def test_fragment_codecs_pick_small_encodings():
    n = 1_000_000
    rng = np.random.default_rng(0)
    arrays = {
        "range": np.arange(n, dtype=np.int64),
        "constant": np.full(n, -1, dtype=np.int64),
        "small": rng.integers(0, 16, n),
    }
    data = _core.encode_fragment(arrays)
    assert len(data) < 200 + n // 2  # 4 bits a value for "small", nearly nothing for the rest
    assert _core.decode_fragment(data)["small"].tolist() == arrays["small"].tolist()


def test_truncated_and_foreign_bytes_raise_decode_error():
    data = _core.encode_fragment({"a": np.arange(5, dtype=np.int64)})
    for bad in [b"", data[:-1], data[:10], b"HIPPO\x00" + bytes(30), _core.encode_ids(np.arange(3))]:
        with pytest.raises(DecodeError) as info:
            _core.decode_fragment(bad)
        assert isinstance(info.value, ValueError) and isinstance(info.value, HippoError)


def test_checksum_is_the_container_checksum():
    data = _core.encode_ids(np.arange(10, dtype=np.int64))
    assert _core.checksum(data[:-8]) == int.from_bytes(data[-8:], "little")
    assert isinstance(_core.checksum(b""), int)


@SETTINGS
@given(st.integers(0, 12).flatmap(lambda g: st.tuples(st.just(g), st.lists(st.integers(0, g - 1), max_size=60) if g else st.just([]))))
def test_group_csr(groups_codes):
    n_groups, codes = groups_codes
    offsets, rows = _core.group_csr(np.asarray(codes, dtype=np.int64), n_groups)
    assert offsets.dtype == rows.dtype == np.int64
    assert len(offsets) == n_groups + 1 and offsets[0] == 0
    for g in range(n_groups):
        assert rows[offsets[g] : offsets[g + 1]].tolist() == [i for i, c in enumerate(codes) if c == g]


def test_group_csr_refuses_codes_out_of_range():
    with pytest.raises(LineageError, match="outside"):
        _core.group_csr(np.array([0, 3], dtype=np.int64), 3)
    with pytest.raises(LineageError):
        _core.group_csr(np.array([-1], dtype=np.int64), 3)


@SETTINGS
@given(st.lists(st.integers(-20, 20), max_size=40), st.lists(st.integers(-25, 25), max_size=40), st.booleans())
def test_isin_sorted(haystack, needles, sort_needles):
    haystack = sorted(haystack)
    if sort_needles:
        needles = sorted(needles)
    mask = _core.isin_sorted(np.asarray(haystack, dtype=np.int64), np.asarray(needles, dtype=np.int64))
    assert mask.dtype == np.bool_
    assert mask.tolist() == [n in set(haystack) for n in needles]


def test_isin_sorted_refuses_unsorted_haystack():
    with pytest.raises(LineageError, match="not sorted"):
        _core.isin_sorted(np.array([2, 1], dtype=np.int64), np.array([1], dtype=np.int64))
