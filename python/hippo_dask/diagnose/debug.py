"""Code debugging: a user function that raises is narrowed to the rows that make it raise.

When a user function raises inside a partition, :func:`narrow` runs delta
debugging (Zeller's ddmin) over that partition's rows to find a smallest set
of rows on which it still raises the same exception type, then keeps going on
the remaining rows so every failing row of the partition is named. The error
that reaches the user names the operation, those rows, the source rows they
came from, and chains the original exception. The run is left in the store,
marked failed with that record, and :func:`debug` re-runs the operation on
exactly those rows in the current process, where a debugger can step in.
"""

from __future__ import annotations

import io
import json
import traceback
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import HippoError, ReplayError, UserFunctionError

#: Most test runs one narrowing may take (each runs the function on some rows).
MAX_TESTS = 4000
#: Failing rows named per partition at most (after that: "and more").
MAX_ROWS = 64


def ddmin(items: Sequence[int], fails: Callable[[list[int]], bool], budget: int = MAX_TESTS) -> tuple[list[int], int]:
    """A 1-minimal subset of ``items`` on which ``fails`` holds (``fails(items)`` must hold), and the tests run.

    Zeller and Hildebrandt's ddmin: try halves, then complements, then finer
    splits. A single culprit costs about ``2 log2(len(items))`` tests.

    Examples
    --------
    >>> from hippo_dask.diagnose.debug import ddmin
    >>> ddmin(list(range(1000)), lambda rows: 417 in rows and 3 in rows)
    ([3, 417], 62)
    """
    items = list(items)
    tests = 0
    cache: dict[tuple[int, ...], bool] = {}

    def check(subset: list[int]) -> bool:
        nonlocal tests
        key = tuple(subset)
        if key not in cache:
            tests += 1
            cache[key] = bool(fails(subset))
        return cache[key]

    n = 2
    while len(items) >= 2 and tests < budget:
        size = len(items)
        chunks = [items[i * size // n:(i + 1) * size // n] for i in range(n)]
        chunks = [c for c in chunks if c]
        for chunk in chunks:
            if check(chunk):
                items, n = chunk, 2
                break
        else:
            for chunk in chunks:
                drop = set(chunk)
                complement = [i for i in items if i not in drop]
                if complement and check(complement):
                    items, n = complement, max(n - 1, 2)
                    break
            else:
                if n >= len(items):
                    break
                n = min(len(items), 2 * n)
    return items, tests


def narrow(user: pd.DataFrame, apply: Callable[[pd.DataFrame], Any], error: BaseException) -> tuple[list[int], int]:
    """Positions of the rows of ``user`` on which ``apply`` raises ``error``'s type: each found by ddmin."""
    kind = type(error)

    def fails(rows: list[int]) -> bool:
        try:
            apply(user.iloc[rows])
        except HippoError:
            return False
        except Exception as exc:  # noqa: BLE001 - the user's exception, whatever it is
            return type(exc) is kind
        return False

    everything = list(range(len(user)))
    found: list[int] = []
    tests = 0
    rest = everything
    while rest and len(found) < MAX_ROWS and tests < MAX_TESTS:
        if found:  # more failing rows left once those found are out?
            tests += 1
            if not fails(rest):
                break
        culprit, used = ddmin(rest, fails, MAX_TESTS - tests)
        tests += used
        if not fails(culprit):  # the failure needs rows together with ones outside the set: stop
            break
        found.extend(culprit)
        drop = set(culprit)
        rest = [i for i in rest if i not in drop]
    return sorted(found) or everything, tests


def _rows_blob(rows: pd.DataFrame) -> tuple[str, bytes]:
    """The failing rows as bytes that load without running code: Parquet, or JSON when Parquet refuses them."""
    try:
        buffer = io.BytesIO()
        rows.to_parquet(buffer)
        return "parquet", buffer.getvalue()
    except Exception:  # noqa: BLE001 - mixed object columns and the like
        return "json", rows.to_json(orient="split", date_format="iso").encode()


def _rows_from_blob(kind: str, blob: bytes) -> pd.DataFrame:
    if kind == "parquet":
        return pd.read_parquet(io.BytesIO(blob))
    return pd.read_json(io.BytesIO(blob), orient="split")


def failure(call: Any, apply: Callable[[pd.DataFrame], Any], user: pd.DataFrame, part: pd.DataFrame,
            error: BaseException, func: Any, replay: Mapping[str, Any]) -> UserFunctionError:
    """The error for a user function that raised on ``user`` (the clean partition), with its narrowed rows.

    ``replay`` says how :func:`debug` re-applies the function (``{"apply":
    "map", "kwargs": ...}``); it is pickled with the function, for ``trust=True``.
    """
    import cloudpickle

    from ..identity import describe_function

    rows, tests = narrow(user, apply, error)
    hidden = [c for c in part.columns if isinstance(c, str) and c.startswith("__hippo_")]
    slots = {c: part[c].to_numpy(dtype=np.int64)[rows].tolist() for c in hidden}
    kind, blob = _rows_blob(user.iloc[rows])
    try:
        code = cloudpickle.dumps({"func": func, **replay})
    except Exception:  # noqa: BLE001 - an unpicklable function: debug then needs it by name
        code = b""
    try:
        described = describe_function(func)
    except Exception:  # noqa: BLE001
        described = {"name": repr(func)}
    record = {
        "operation": call.what, "node": call.node_id, "apply": {k: v for k, v in replay.items() if k != "kwargs"},
        "function": {k: v for k, v in described.items() if k != "source"},
        "exception": {"type": type(error).__qualname__, "module": type(error).__module__, "message": str(error)[:4000],
                      "traceback": "".join(traceback.format_exception(error))[-8000:]},
        "partition_rows": int(len(user)), "rows": [int(r) for r in rows], "tests": int(tests), "slots": slots,
        "rows_format": kind, "rows_blob": blob, "code_blob": code,
    }
    preview = user.iloc[rows[:5]].to_string(max_cols=12, max_colwidth=30)
    message = (f"{call.what}: the function raised {type(error).__name__}: {error}\n"
               f"It raises on these {len(rows)} of the partition's {len(user)} rows "
               f"(delta debugging, {tests} test runs):\n{preview}")
    return UserFunctionError(message, record, error)


def source_rows(record: Mapping[str, Any], sources: Mapping[str, Any], counts: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Source name -> positions of the failing rows, from their slot values (``counts``: rows per partition)."""
    from ..partition import ids_to_positions

    out: dict[str, list[int]] = {}
    for column, ids in record["slots"].items():
        info = sources.get(column)
        if info is None or info.node.id not in counts:
            continue
        ids = np.asarray(ids, dtype=np.int64)
        positions = ids_to_positions(ids[ids >= 0], counts[info.node.id])
        out.setdefault(info.name, [])
        out[info.name] = sorted(set(out[info.name]) | {int(p) for p in positions})
    return out


def record_failure(store: Any, error: UserFunctionError, sources: Mapping[str, Any],
                   counts: Mapping[str, Sequence[int]], run_id: str | None = None) -> UserFunctionError:
    """Leave the run in ``store`` marked failed with ``error``'s record; the error to raise, naming source rows."""
    record = dict(error.record)
    found = source_rows(record, sources, counts)
    run_id = run_id or store.start_run()
    blobs = {"rows": record.pop("rows_blob"), "code": record.pop("code_blob")}
    record["source_rows"] = found
    store.fail_run(run_id, record, blobs)
    where = "; ".join(f"source {name!r} rows {rows[:20]}{' ...' if len(rows) > 20 else ''}" for name, rows in found.items())
    message = (f"{error.args[0]}\nThey come from {where or 'rows made by a group-by (no single source row)'}.\n"
               f"Run {run_id} is kept, marked failed: hippo.debug({run_id!r}) re-runs the function on those rows here.")
    raised = UserFunctionError(message, record, error.original, run_id)
    return raised


def debug(run_id: str, store: Any = None, trust: bool = False, functions: Mapping[str, Callable] | None = None,
          pdb: bool = False) -> Any:
    """Re-run the user function of a failed run on the rows it failed on, in this process.

    The failing rows were narrowed by delta debugging when the run failed and
    stored with it. The function is taken from ``functions`` (by qualified name
    or node id), else re-imported by name, else (``trust=True``) unpickled from
    the run. With ``pdb=True`` it runs under :func:`pdb.runcall`, so you step
    into it; otherwise the function's exception propagates as it would.

    Returns the function's output when it no longer raises (e.g. a fixed
    function passed in ``functions``).

    Examples
    --------
    >>> import pandas as pd, hippo_dask as hippo, tempfile
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 0.0, 4.0]}).hippo.source("df")
    >>> def inverse(p):
    ...     if (p.x == 0).any():
    ...         raise ZeroDivisionError("x is 0")
    ...     return 1 / p.x
    >>> try:
    ...     df.hippo.assign(inv=inverse)
    ... except hippo.UserFunctionError as e:
    ...     failed = e
    >>> failed.record["source_rows"]
    {'df': [2]}
    >>> hippo.debug(failed.run_id, trust=True)
    Traceback (most recent call last):
    ...
    ZeroDivisionError: x is 0
    """
    from ..store import Store, get_store

    store = get_store() if store is None else (store if isinstance(store, Store) else Store(store))
    record, blobs = store.failure(run_id)
    rows = _rows_from_blob(record["rows_format"], blobs["rows"])
    described = record.get("function", {})
    func, extra = None, {}
    for alias in (record.get("node"), f"{described.get('module')}.{described.get('name')}", described.get("name")):
        if functions and alias in functions:
            func = functions[alias]
            break
    if func is None:
        name, module = described.get("name") or "", described.get("module")
        if module and "<" not in name and module != "__main__":
            import importlib

            try:
                func = importlib.import_module(module)
                for part in name.split("."):
                    func = getattr(func, part)
            except (ImportError, AttributeError):
                func = None
    if trust and blobs["code"]:
        import cloudpickle

        stored = cloudpickle.loads(blobs["code"])
        extra = {k: v for k, v in stored.items() if k != "func"}
        func = stored["func"] if func is None else func
    if func is None:
        raise ReplayError(f"debug: the function of run {run_id} ({described.get('name')}) cannot be re-imported; "
                          "pass trust=True to unpickle the stored copy (only for stores you trust), or functions={name: f}")
    how = record["apply"]
    kwargs = extra.get("kwargs", {})

    def apply(frame: pd.DataFrame) -> Any:
        kind = how.get("apply")
        if kind == "map":
            return func(frame, **kwargs)
        if kind == "assign":
            return frame.assign(**{how["column"]: func})
        if kind in ("filter", "check"):
            return func(frame)
        if kind == "validate":  # func is the pandera schema
            return func.validate(frame, lazy=True)
        if kind == "flatmap":
            return [list(func(dict(r))) for r in frame.to_dict("records")]
        raise ReplayError(f"debug: unknown operation kind {kind!r} in the failure record")

    if pdb:
        import pdb as debugger

        return debugger.runcall(apply, rows)
    return apply(rows)


def failure_summary(record: Mapping[str, Any]) -> str:
    """A readable account of a failure record (for ``hippo runs`` and the like)."""
    exc = record.get("exception", {})
    return (f"{record.get('operation')}: {exc.get('type')}: {exc.get('message')} on {len(record.get('rows', []))} rows; "
            f"source rows {json.dumps(record.get('source_rows', {}))}")
