"""hippo_dask: cell-level lineage for pandas and Dask pipelines.

Importing the package registers the ``.hippo`` accessor on pandas and Dask
DataFrames. See the README for a tour; the public names are below.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import errors, lin
from .accessor import GroupBy, HippoAccessor, concat, register as _register
from .errors import (
    ColumnError,
    CorruptRunError,
    DecodeError,
    HippoError,
    IncompleteRunError,
    LineageError,
    QueryError,
    ReplayError,
    RunNotFoundError,
    SourceChangedError,
    StaleResultError,
    UntrackedFrameError,
    UserFunctionError,
)
from .diagnose.debug import debug
from .lineage import Lineage, Trace, TraceSet, open
from .ml import Model
from .readers import read_csv, read_parquet
from .store import RunInfo, Store, get_store, set_store

try:
    __version__ = _metadata.version("hippo_dask")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

_register()

__all__ = [
    "ColumnError",
    "CorruptRunError",
    "DecodeError",
    "GroupBy",
    "HippoAccessor",
    "HippoError",
    "IncompleteRunError",
    "Lineage",
    "LineageError",
    "Model",
    "QueryError",
    "ReplayError",
    "RunInfo",
    "RunNotFoundError",
    "SourceChangedError",
    "StaleResultError",
    "Store",
    "Trace",
    "TraceSet",
    "UntrackedFrameError",
    "UserFunctionError",
    "concat",
    "debug",
    "errors",
    "get_store",
    "lin",
    "open",
    "read_csv",
    "read_parquet",
    "set_store",
]
