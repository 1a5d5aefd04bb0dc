"""hippo_dask: cell-level lineage for pandas and Dask pipelines.

Importing the package registers the ``.hippo`` accessor on pandas and Dask
DataFrames. See the README for a tour; the public names are below.

The package imports its parts on first use (PEP 562), so answering queries
(``hippo_dask.open(store).backward(...)``) never imports Dask. The ``.hippo``
accessors are registered as soon as pandas / ``dask.dataframe`` are imported,
before or after this package, and load the capture machinery on first use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading
from importlib import metadata as _metadata
from typing import Any, Callable

from . import errors
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
    StoreError,
    StoreWriteError,
    UntrackedFrameError,
    UserFunctionError,
)


def _check_single_extension() -> None:
    # A checkout built before the extension became abi3 can still hold _core.cpython-3XX-*.so beside
    # _core.abi3.so; Python imports the version-specific one first, so stale Rust code would answer.
    from pathlib import Path

    package = Path(__file__).parent
    builds = sorted(p.name for p in package.glob("_core.*") if p.suffix in (".so", ".pyd"))
    if len(builds) > 1:
        raise ImportError(f"hippo_dask holds several builds of its Rust extension ({', '.join(builds)}); "
                          f"delete them from {package} and reinstall (pip install -e .)")


_check_single_extension()


try:
    __version__ = _metadata.version("hippo_dask")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

#: Public name -> the submodule that defines it (imported on first access).
_LAZY = {
    "GroupBy": "accessor",
    "HippoAccessor": "accessor",
    "concat": "accessor",
    "debug": "diagnose.debug",
    "Lineage": "lineage",
    "Trace": "lineage",
    "TraceSet": "lineage",
    "open": "lineage",
    "Model": "ml",
    "read_csv": "readers",
    "read_parquet": "readers",
    "RunInfo": "store",
    "Store": "store",
    "get_store": "store",
    "set_store": "store",
}
_SUBMODULES = {"lin"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


# ------------------------------------------------------------------ accessors
def _hippo_accessor(obj: Any) -> Any:
    """The ``.hippo`` of a pandas / Dask frame: loads the capture machinery on first use."""
    from .accessor import HippoAccessor

    return HippoAccessor(obj)


class _LazyHippoAccessor:
    """What ``DataFrame.hippo`` is registered as: calling it gives the real
    :class:`hippo_dask.HippoAccessor` of the frame (imported on first use)."""

    def __new__(cls, obj: Any) -> Any:  # type: ignore[misc]
        return _hippo_accessor(obj)


def _register_pandas(pandas: Any) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # re-registration (a reload) warns
        pandas.api.extensions.register_dataframe_accessor("hippo")(_LazyHippoAccessor)


def _register_dask(dask_dataframe: Any) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dask_dataframe.extensions.register_dataframe_accessor("hippo")(_LazyHippoAccessor)


class _Chained(importlib.abc.Loader):
    """A module's own loader, then a callback on the module (a post-import hook)."""

    def __init__(self, loader: Any, callback: Callable[[Any], None]) -> None:
        self.loader = loader
        self.callback = callback

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # the module sees its real loader (importlib.resources, inspect, pickling need it)
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        if getattr(getattr(module, "__spec__", None), "loader", None) is self:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.callback(module)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after a module is imported (for modules not imported yet)."""

    def __init__(self) -> None:
        self.hooks: dict[str, Callable[[Any], None]] = {}
        self.lock = threading.RLock()
        self.busy = threading.local()

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.hooks or getattr(self.busy, "active", False):
            return None
        self.busy.active = True  # asking the other finders must not come back here
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy.active = False
        with self.lock:
            callback = self.hooks.pop(name, None)
            if not self.hooks and self in sys.meta_path:
                sys.meta_path.remove(self)
        if spec is None or spec.loader is None or callback is None or not hasattr(spec.loader, "exec_module"):
            return spec  # pandas and Dask are plain source packages: not reached in practice
        spec.loader = _Chained(spec.loader, callback)
        return spec

    def when_imported(self, name: str, callback: Callable[[Any], None]) -> None:
        with self.lock:
            if name in sys.modules:
                callback(sys.modules[name])
                return
            self.hooks[name] = callback
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)


_after_import = _AfterImport()
_after_import.when_imported("pandas", _register_pandas)
_after_import.when_imported("dask.dataframe", _register_dask)

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
    "StoreError",
    "StoreWriteError",
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
