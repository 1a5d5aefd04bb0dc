"""File sources: read a file as a lineage root and record where it came from, for replay.

``hippo.read_csv`` / ``hippo.read_parquet`` call the pandas or Dask reader and
mark the frame as a source, recording the file's location and the reader's
arguments, so a replay (:meth:`hippo_dask.Lineage.replay`) can read it again
and check it against the per-partition content fingerprints taken at capture.
A Dask frame made by ``dd.read_parquet`` and passed to ``.hippo.source`` is
recognised too.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import LineageError
from .identity import jsonable

#: Readers a replay may call, by the name recorded in the run.
READERS = {
    "pandas.read_csv": ("pandas", "read_csv"),
    "pandas.read_parquet": ("pandas", "read_parquet"),
    "dask.read_csv": ("dask.dataframe", "read_csv"),
    "dask.read_parquet": ("dask.dataframe", "read_parquet"),
}


def _location(path: Any) -> Any:
    if isinstance(path, (list, tuple)):
        return [_location(p) for p in path]
    path = os.fspath(path)
    return path if "://" in path else os.path.abspath(path)


def _read(kind: str, path: Any, name: str | None, dask: bool, store: Any, kwargs: dict[str, Any]) -> Any:
    import importlib

    reader = f"{'dask' if dask else 'pandas'}.{kind}"
    module, function = READERS[reader]
    location = _location(path)
    ok, plain = jsonable(kwargs)
    if not ok:
        raise LineageError(f"{reader}: the reader arguments must be plain values (str, numbers, lists, dicts) so a "
                           f"replay can read the file again; got {sorted(kwargs)}")
    frame = getattr(importlib.import_module(module), function)(location, **kwargs)
    if name is None:
        first = location[0] if isinstance(location, list) else location
        name = os.path.splitext(os.path.basename(first.rstrip("/")))[0] or "file"
    from .accessor import _expose
    from .frame import Tracked
    from .store import Store, get_store

    target = get_store() if store is None else (store if isinstance(store, Store) else Store(store))
    return _expose(Tracked.source(frame, name, target, file={"reader": reader, "path": location, "kwargs": plain}))


def read_csv(path: Any, name: str | None = None, *, dask: bool = False, store: Any = None, **kwargs: Any) -> Any:
    """Read a CSV file (pandas, or Dask with ``dask=True``) as a source named ``name`` (default: the file's stem).

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile, os
    >>> folder = tempfile.mkdtemp(); _ = hippo.set_store(os.path.join(folder, "store"))
    >>> pd.DataFrame({"x": [1, 2]}).to_csv(os.path.join(folder, "xs.csv"), index=False)
    >>> xs = hippo.read_csv(os.path.join(folder, "xs.csv"))
    >>> xs.hippo.compute().hippo.lineage.sources
    ['xs']
    """
    return _read("read_csv", path, name, dask, store, kwargs)


def read_parquet(path: Any, name: str | None = None, *, dask: bool = False, store: Any = None, **kwargs: Any) -> Any:
    """Read Parquet (pandas, or Dask with ``dask=True``) as a source named ``name`` (default: the file's stem)."""
    return _read("read_parquet", path, name, dask, store, kwargs)


def dask_file_source(frame: Any) -> dict[str, Any] | None:
    """The file and reader arguments of a frame that ``dd.read_parquet`` made, when they can be replayed."""
    expr = getattr(frame, "expr", None)
    while expr is not None and type(expr).__name__ in ("ArrowStringConversion",):
        expr = expr.frame
    if expr is None or not type(expr).__name__.startswith("ReadParquet"):
        return None
    try:
        kwargs = {k: expr.operand(k) for k in ("columns", "filters", "index", "split_row_groups", "blocksize",
                                                "calculate_divisions", "aggregate_files")}
        path = expr.operand("path")
    except Exception:  # noqa: BLE001 - another Dask version: not recognised, fine
        return None
    extra = {k: v for k, v in (expr.operand("kwargs") or {}).items() if v is not None}
    if expr.operand("storage_options") or extra:
        return None
    ok, plain = jsonable({k: v for k, v in kwargs.items() if v is not None})
    return {"reader": "dask.read_parquet", "path": _location(path), "kwargs": plain} if ok else None


#: Reader arguments that change neither which rows a parquet read returns nor their order.
_ORDER_KEEPING = frozenset({"columns", "index", "calculate_divisions", "split_row_groups", "blocksize",
                            "aggregate_files"})


def rereadable(file: Any) -> bool:
    """Whether a query may re-read a column of this file source (parquet, rows as read at capture).

    Lineage derived from a source column (a group-by's integer key,
    :func:`hippo_dask.partition.derive_key`) is only stored that way for such sources.
    """
    return (isinstance(file, dict) and file.get("reader") in ("pandas.read_parquet", "dask.read_parquet")
            and isinstance(file.get("kwargs") or {}, dict) and set(file.get("kwargs") or {}) <= _ORDER_KEEPING)


def read_column(file: dict[str, Any], column: str, exact: bool = False) -> Any:
    """Column ``column`` of a file source, every row in the order the capture read them, as numpy.

    The fast path reads the parquet file(s) with pyarrow (no pandas, no Dask); ``exact=True``
    calls the recorded reader itself (what a replay does). The caller checks what it derives
    from the values against checksums taken at capture, so a fast read that orders files
    differently from the recorded reader is caught, and retried exactly.
    """
    if not rereadable(file):
        raise LineageError(f"internal: {file!r} is not a source hippo re-reads")
    path = file["path"]
    if not exact:
        return _read_parquet_column(path, column)
    import importlib

    module, function = READERS[file["reader"]]
    kwargs = dict(file.get("kwargs") or {}, columns=[column])
    if kwargs.get("index") == column:
        kwargs.pop("index")
    frame = getattr(importlib.import_module(module), function)(path, **kwargs)
    if hasattr(frame, "compute"):
        frame = frame.compute(scheduler="sync")
    return frame[column].to_numpy()


def _local_parquet_files(path: Any) -> list[str]:
    """The files of a local parquet path in name order (a folder: its files not starting with ``_`` or ``.``)."""
    paths = path if isinstance(path, list) else [path]
    files: list[str] = []
    for p in paths:
        if not isinstance(p, str) or "://" in p or any(ch in p for ch in "*?["):
            raise LineageError(f"{p!r} is not a plain local path")  # the recorded reader handles it
        if os.path.isdir(p):
            files.extend(os.path.join(p, f) for f in sorted(os.listdir(p))
                         if not f.startswith(("_", ".")) and os.path.isfile(os.path.join(p, f)))
        else:
            files.append(p)
    return files


def _read_parquet_column(path: Any, column: str) -> Any:
    """One column of local parquet files with pyarrow alone: integer columns without nulls are taken
    from Arrow's buffers, because ``Array.to_numpy`` imports pandas (~0.4 s of a fresh query)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for name in _local_parquet_files(path):
        with pq.ParquetFile(name) as f:
            chunks = f.read(columns=[column], use_pandas_metadata=False).column(0).chunks
        for chunk in chunks:
            if chunk.null_count == 0 and pa.types.is_integer(chunk.type):
                dtype = np.dtype(chunk.type.to_pandas_dtype())
                parts.append(np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset:chunk.offset + len(chunk)])
            else:
                parts.append(chunk.to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.array([], dtype=np.int64)
