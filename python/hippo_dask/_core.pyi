"""Type stubs for ``hippo_dask._core``, the Rust core (crate ``hippo-py`` over ``hippo-core``).

Every int array is a 1-d ``numpy.int64`` array (non-contiguous arrays are copied);
every O(n) call releases the GIL. Errors are the classes of :mod:`hippo_dask.errors`:
:class:`~hippo_dask.errors.DecodeError` for damaged, truncated or foreign bytes,
:class:`~hippo_dask.errors.LineageError` for arguments that describe no valid map,
:class:`~hippo_dask.errors.QueryError` for rows outside the queried side.
"""

from collections.abc import Callable
from typing import final

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

def encode_ids(ids: Int64Array) -> bytes:
    """Encode an int64 array into a checksummed container.

    Any values (negatives too, e.g. ``-1`` for missing) in any order; the smallest of
    several codecs (runs, frame-of-reference or delta bit-packing, zstd, ...) is kept.

    Parameters
    ----------
    ids : numpy.ndarray[int64]
        The values to encode.

    Returns
    -------
    bytes
        Magic ``b"HIPPO\\0"``, format version, kind, payload, xxh3-64 checksum.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import encode_ids, decode_ids
    >>> data = encode_ids(np.arange(1_000_000, dtype=np.int64))
    >>> len(data) < 100
    True
    >>> decode_ids(data)[:3]
    array([0, 1, 2])
    """

def decode_ids(data: bytes) -> Int64Array:
    """Decode the bytes of :func:`encode_ids` (exact inverse).

    Raises
    ------
    DecodeError
        If the bytes are damaged, truncated or not an ids container.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import encode_ids, decode_ids
    >>> decode_ids(encode_ids(np.array([3, -1, 7], dtype=np.int64)))
    array([ 3, -1,  7])
    """

def encode_fragment(arrays: dict[str, Int64Array]) -> bytes:
    """Encode several named int64 arrays into one checksummed container.

    Each array is stored with its own smallest codec; the order of the dict is kept.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import encode_fragment, decode_fragment
    >>> data = encode_fragment({"ids": np.arange(4, dtype=np.int64), "codes": np.zeros(4, dtype=np.int64)})
    >>> list(decode_fragment(data))
    ['ids', 'codes']
    """

def decode_fragment(data: bytes) -> dict[str, Int64Array]:
    """Decode the bytes of :func:`encode_fragment`, keeping the array order.

    Raises
    ------
    DecodeError
        If the bytes are damaged, truncated or not a fragment container.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import encode_fragment, decode_fragment
    >>> decode_fragment(encode_fragment({"a": np.array([5, 6], dtype=np.int64)}))["a"]
    array([5, 6])
    """

def checksum(data: bytes) -> int:
    """The checksum containers use: xxh3-64 of ``data``, as an unsigned int.

    Examples
    --------
    >>> from hippo_dask._core import checksum
    >>> checksum(b"abc") == checksum(b"abc") != checksum(b"abd")
    True
    """

def group_csr(codes: Int64Array, n_groups: int) -> tuple[Int64Array, Int64Array]:
    """Group row positions by code with a counting sort (O(n + n_groups), no sort).

    Parameters
    ----------
    codes : numpy.ndarray[int64]
        Group code of each row, each in ``[0, n_groups)``.
    n_groups : int
        Number of groups.

    Returns
    -------
    offsets : numpy.ndarray[int64]
        ``n_groups + 1`` prefix sums of the group sizes.
    rows : numpy.ndarray[int64]
        Positions ``0..n-1`` ordered by group, ascending within a group: the rows of
        group ``g`` are ``rows[offsets[g]:offsets[g + 1]]``.

    Raises
    ------
    LineageError
        If a code is outside ``[0, n_groups)``.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import group_csr
    >>> group_csr(np.array([2, 0, 2, 1], dtype=np.int64), 3)
    (array([0, 1, 2, 4]), array([1, 3, 0, 2]))
    """

def isin_sorted(haystack: Int64Array, needles: Int64Array) -> BoolArray:
    """For each needle, whether it occurs in ``haystack``.

    ``haystack`` must be sorted ascending (repeats allowed). Sorted needles are answered
    with one galloping merge walk, unsorted ones by binary search.

    Raises
    ------
    LineageError
        If ``haystack`` is not sorted ascending.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import isin_sorted
    >>> isin_sorted(np.array([1, 3, 5], dtype=np.int64), np.array([0, 1, 5, 6], dtype=np.int64))
    array([False,  True,  True, False])
    """

@final
class RowMap:
    """Which input rows each output row of an operator comes from.

    A map relates an input of ``n_in`` rows to an output of ``n_out`` rows. Parametric
    kinds (identity, offset, window, all) store only their parameters; the others store
    row ids compressed. Maps are immutable; equal maps relate the same rows, whatever
    their kinds.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import RowMap
    >>> kept = RowMap.select(np.array([True, False, True, True]))
    >>> kept.backward(np.array([0, 2], dtype=np.int64))
    array([0, 3])
    >>> kept.forward(np.array([1, 2], dtype=np.int64))
    array([1])
    """

    @staticmethod
    def identity(n: int) -> RowMap:
        """Output row ``i`` <- input row ``i``, for ``n`` rows.

        Examples
        --------
        >>> from hippo_dask._core import RowMap
        >>> RowMap.identity(3).nbytes < 40
        True
        """

    @staticmethod
    def offset(offset: int, n_in: int, n_out: int) -> RowMap:
        """One piece of a concat: input row ``i`` -> output row ``offset + i``.

        Raises
        ------
        LineageError
            If ``offset + n_in > n_out``.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.offset(2, 3, 5).forward(np.array([0], dtype=np.int64))
        array([2])
        """

    @staticmethod
    def select(mask: BoolArray) -> RowMap:
        """Filter: the output rows are the input rows where ``mask`` is true, in order.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.select(np.array([True, False, True])).n_out
        2
        """

    @staticmethod
    def select_ids(kept: Int64Array, n_in: int) -> RowMap:
        """Filter given the kept input rows (sorted ascending, unique, in ``[0, n_in)``).

        Raises
        ------
        LineageError
            If ``kept`` is unsorted, repeats a row or leaves ``[0, n_in)``.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.select_ids(np.array([0, 2], dtype=np.int64), 3) == RowMap.select(np.array([True, False, True]))
        True
        """

    @staticmethod
    def permutation(order: Int64Array) -> RowMap:
        """Sort: output row ``i`` <- input row ``order[i]``.

        Raises
        ------
        LineageError
            If ``order`` is not a permutation of ``0..len(order)-1``.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.permutation(np.array([2, 0, 1], dtype=np.int64)).backward(np.array([0], dtype=np.int64))
        array([2])
        """

    @staticmethod
    def expand(counts: Int64Array) -> RowMap:
        """Explode: input row ``i`` -> ``counts[i]`` consecutive output rows.

        Raises
        ------
        LineageError
            If a count is negative.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.expand(np.array([2, 0, 1], dtype=np.int64)).forward(np.array([0], dtype=np.int64))
        array([0, 1])
        """

    @staticmethod
    def group(codes: Int64Array, n_groups: int) -> RowMap:
        """Aggregation: input row ``i`` -> output row ``codes[i]``.

        The by-group index used by :meth:`backward` is built on first use by counting
        sort (O(n + n_groups)).

        Raises
        ------
        LineageError
            If a code is outside ``[0, n_groups)``.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.group(np.array([1, 0, 1], dtype=np.int64), 2).backward(np.array([1], dtype=np.int64))
        array([0, 2])
        """

    @staticmethod
    def pair(out_rows: Int64Array, in_rows: Int64Array, n_out: int, n_in: int) -> RowMap:
        """Join: explicit ``(out_rows[k], in_rows[k])`` pairs, in any order, repeats allowed.

        Raises
        ------
        LineageError
            If the arrays differ in length or a row is out of its range.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> m = RowMap.pair(np.array([0, 1, 1], dtype=np.int64), np.array([4, 0, 4], dtype=np.int64), 2, 5)
        >>> m.forward(np.array([4], dtype=np.int64))
        array([0, 1])
        """

    @staticmethod
    def window(n_in: int, size: int, step: int = 1) -> RowMap:
        """Sliding window: output ``j`` <- inputs ``[j*step, j*step + size)`` clipped to ``n_in``.

        There are ``ceil(n_in / step)`` output rows (the last windows are clipped).

        Raises
        ------
        LineageError
            If ``size`` or ``step`` is below 1.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.window(5, size=3).backward(np.array([3], dtype=np.int64))
        array([3, 4])
        """

    @staticmethod
    def all(n_in: int, n_out: int = 1) -> RowMap:
        """Every output row <- every input row (e.g. a global aggregate).

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.all(3).backward(np.array([0], dtype=np.int64))
        array([0, 1, 2])
        """

    @property
    def kind(self) -> str:
        """One of ``"identity", "offset", "select", "permutation", "expand", "group",
        "pair", "window", "all"``."""

    @property
    def n_in(self) -> int:
        """Number of input rows."""

    @property
    def n_out(self) -> int:
        """Number of output rows."""

    @property
    def nbytes(self) -> int:
        """``len(self.to_bytes())``."""

    def backward(self, rows: Int64Array) -> Int64Array:
        """Input rows that the output ``rows`` come from, sorted and unique.

        ``rows`` may be in any order and repeat; a sorted batch is answered with one
        merge walk.

        Raises
        ------
        QueryError
            If a row is outside ``[0, n_out)`` (the message names the valid range).

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.window(6, size=2, step=2).backward(np.array([2, 0], dtype=np.int64))
        array([0, 1, 4, 5])
        """

    def forward(self, rows: Int64Array) -> Int64Array:
        """Output rows that the input ``rows`` flow into, sorted and unique.

        Raises
        ------
        QueryError
            If a row is outside ``[0, n_in)`` (the message names the valid range).

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.window(4, size=2).forward(np.array([1], dtype=np.int64))
        array([0, 1])
        """

    def then(self, other: RowMap) -> RowMap:
        """Composition: ``self`` maps A -> B, ``other`` maps B -> C; the result maps A -> C.

        Simplifies where it can: identities vanish, ``all`` absorbs (when every row on
        the other side takes part), select.then(select) is a select, offsets add,
        permutations compose; anything else becomes a ``pair`` map with every pair
        materialised.

        Raises
        ------
        LineageError
            If ``self.n_out != other.n_in``.

        Examples
        --------
        >>> import numpy as np
        >>> from hippo_dask._core import RowMap
        >>> RowMap.offset(1, 2, 4).then(RowMap.offset(3, 4, 7)).kind
        'offset'
        >>> RowMap.identity(3).then(RowMap.all(3)).kind
        'all'
        """

    def to_bytes(self) -> bytes:
        """The map as a checksummed container, in its smallest encoding.

        Examples
        --------
        >>> from hippo_dask._core import RowMap
        >>> m = RowMap.window(10, 3)
        >>> RowMap.from_bytes(m.to_bytes()) == m
        True
        """

    @staticmethod
    def from_bytes(data: bytes) -> RowMap:
        """Decode :meth:`to_bytes` output; the decoded map is validated.

        Raises
        ------
        DecodeError
            If the bytes are damaged, truncated or not a row map.

        Examples
        --------
        >>> from hippo_dask._core import RowMap
        >>> RowMap.from_bytes(RowMap.identity(5).to_bytes()).n_in
        5
        """

    def __eq__(self, other: object) -> bool: ...
    def __repr__(self) -> str: ...
    def __reduce__(self) -> tuple[Callable[[bytes], RowMap], tuple[bytes]]:
        """Pickle support: a map pickles as its :meth:`to_bytes`.

        Examples
        --------
        >>> import pickle
        >>> from hippo_dask._core import RowMap
        >>> pickle.loads(pickle.dumps(RowMap.window(10, 3))) == RowMap.window(10, 3)
        True
        """

# ---------------------------------------------------------------- trace engine
# The set algebra of every backward / forward query step (``hippo_core::trace``). A slot
# table is a (rows x slots) int64 array; Fortran order is borrowed as is, other layouts
# are copied. Tables come back in Fortran order. "Sorted ids": ascending, no repeats.

Int64Matrix = npt.NDArray[np.int64]  # 2-d: rows x slots
#: A forward predicate: (tested column, accepted ids sorted or None for "any but MISSING",
#: [(column, value), ...] further equalities).
AtomSpec = tuple[int, Int64Array | None, list[tuple[int, int]]]

def unique_rows(values: Int64Matrix) -> Int64Matrix:
    """The distinct rows: one slot as a sorted set; several in order of first occurrence.

    Examples
    --------
    >>> import numpy as np
    >>> from hippo_dask._core import unique_rows
    >>> unique_rows(np.array([[3], [1], [3]])).ravel()
    array([1, 3])
    """

def select_unique(values: Int64Matrix, project: list[int], rows: Int64Array | None = None,
                  present: bool = False, equals: tuple[int, int] | None = None) -> Int64Matrix:
    """Rows kept by ``rows`` (positions; out of range: QueryError), ``present`` (one of
    the projected slots set) or ``equals`` ((column, value)); columns ``project``; distinct.
    At most one of ``rows``, ``present``, ``equals`` (else LineageError)."""

def union_rows(a: Int64Matrix, b: Int64Matrix) -> Int64Matrix:
    """The rows of both (same columns); duplicate-free when both are."""

def column_ids(values: Int64Matrix, column: int) -> Int64Array:
    """Sorted distinct values of one column, without MISSING (-1)."""

def union_sorted(parts: list[Int64Array]) -> Int64Array:
    """Sorted distinct values of all ``parts``."""

def window_ids(ids: Int64Array, before: int | None, after: int | None,
               ends: list[tuple[int, int]]) -> Int64Array:
    """Window ids ``high << 32 | p`` for ``p`` in ``[pos - before, pos + after]`` around each
    of ``ids`` (None: unbounded, to 0 or to the fragment's end from ``ends``, (high, end)
    pairs sorted by high; a fragment not listed ends at -1), sorted and distinct."""

class TraceEngine:
    """A run's loaded maps: the result's slot table and each group-by's members with their
    group ids (borrowed from the arrays, not copied), and per group-by the index from group
    id to member rows, built after a few scans. Thread-safe; the GIL is released in every
    O(n) step. Unknown keys and tables without group ids raise LineageError."""

    def __init__(self) -> None: ...
    def add_table(self, key: str, values: Int64Matrix, gids: Int64Array | None = None) -> None:
        """Register (or replace) a table; ``gids``: one group id per row (a group-by's members)."""
    def has_table(self, key: str) -> bool: ...
    def indexed(self, key: str) -> bool:
        """Whether the group index of ``key`` has been built."""
    def take_unique(self, key: str, rows: Int64Array) -> Int64Matrix:
        """Distinct tuples of rows ``rows`` of table ``key``."""
    def members_of(self, key: str, wanted: Int64Array, project: list[int],
                   window: tuple[int | None, int | None] | None = None) -> Int64Matrix:
        """Distinct member tuples (columns ``project``) of the groups ``wanted`` (sorted ids);
        with ``window=(before, after)``, of the windows around those ids."""
    def window_ids(self, key: str, ids: Int64Array, before: int | None, after: int | None) -> Int64Array:
        """:func:`window_ids` with the fragment ends of group table ``key``."""
    def matching_groups(self, key: str, atoms: list[AtomSpec]) -> Int64Array:
        """Sorted group ids of the members any atom matches."""
    def evaluate_sets(self, key: str, atoms: list[AtomSpec], sets: list[list[int]]) -> list[Int64Array]:
        """Per set of atom indices, the sorted rows any of its atoms matches (each atom evaluated once)."""
