"""The hippo_dask exception hierarchy.

Every error inherits from :class:`HippoError` *and* from the built-in that
describes it best, so callers can catch either (the pyarrow convention):
``except ValueError`` keeps working for code that does not know hippo_dask.
The Rust extension raises these same classes (it imports them from here).
"""

from __future__ import annotations

__all__ = [
    "HippoError",
    "DecodeError",
    "LineageError",
    "UntrackedFrameError",
    "StaleResultError",
    "ColumnError",
    "QueryError",
    "IncompleteRunError",
    "CorruptRunError",
    "RunNotFoundError",
    "ReplayError",
    "SourceChangedError",
    "UserFunctionError",
    "StoreError",
    "StoreWriteError",
]


class HippoError(Exception):
    """Root of every error hippo_dask raises."""


class DecodeError(ValueError, HippoError):
    """Encoded lineage bytes are damaged, truncated or not hippo_dask's."""


class LineageError(ValueError, HippoError):
    """An operation cannot be captured as asked (e.g. a ``map`` that drops rows)."""


class UntrackedFrameError(LineageError):
    """A frame without lineage was passed where a tracked one is needed."""


class StaleResultError(LineageError):
    """A result frame was filtered, re-sorted or edited after compute(): its positions name other rows."""


class ColumnError(KeyError, HippoError):
    """A column named in an operation or a query does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class QueryError(ValueError, HippoError):
    """A lineage query asks for rows or columns that do not exist."""


class RunNotFoundError(LookupError, HippoError):
    """No run with that id exists in the store."""


class IncompleteRunError(RuntimeError, HippoError):
    """The run never committed its manifest (it was killed or is still running)."""


class CorruptRunError(DecodeError):
    """A stored fragment or manifest of a run is damaged; names the file."""


class StoreError(ValueError, HippoError):
    """A store cannot be used as asked: its location is a file, or a store operation got a bad argument."""


class StoreWriteError(OSError, HippoError):
    """A file of the store could not be written (disk full, no permission, storage gone).

    Names the file and the OS error (``errno`` is the OS's, e.g. ``errno.ENOSPC``). A run
    whose writes failed never commits its manifest, so it answers no queries; runs
    committed before it are untouched.
    """


class ReplayError(RuntimeError, HippoError):
    """A run cannot be replayed as asked (a source or function is missing, an operation cannot be sliced)."""


class SourceChangedError(ReplayError):
    """A source is not the one the run read: one passed back to a replay, or a file a query must read again
    (group-by lineage stored as a reference to the source's key column). Names the source and what differs."""


class UserFunctionError(RuntimeError, HippoError):
    """A user function raised inside a partition.

    The message names the operation, the smallest set of input rows found to
    make it raise (delta debugging over that partition's rows) and the source
    rows they came from; the original exception is chained (``__cause__``) and
    kept in :attr:`original`. ``run_id`` names the run left in the store,
    marked failed, that :func:`hippo_dask.debug` re-runs locally.
    """

    def __init__(self, message: str, record: dict | None = None, original: BaseException | None = None,
                 run_id: str | None = None) -> None:
        super().__init__(message)
        self.record = record or {}
        self.original = original
        self.run_id = run_id

    def __reduce__(self):  # crosses process boundaries (Dask workers) with its record
        return (type(self), (self.args[0], self.record, self.original, self.run_id))
