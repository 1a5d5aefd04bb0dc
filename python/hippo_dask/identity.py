"""Identity of operations: what makes two captured calls the same node.

Two calls are one node only when they provably compute the same thing, so a
node's id covers everything that can change its rows: the operation, its
inputs, its parameters and, for user functions, the code, its constants, the
defaults, the closure and the globals it reads. Values are normalised by Dask's
``tokenize`` (the same function identity Dask uses to merge identical tasks);
on top of it, functions that Dask would pickle by reference (importable ones)
also contribute their bytecode and the values of the globals they read, so an
edited function or a changed global gives a new node. Where a value cannot be
tokenized deterministically, Dask returns a random token: the node is then
never shared, which costs storage, never correctness.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import types
from typing import Any, Callable


def tokenize(*args: Any, **kwargs: Any) -> str:
    """Dask's ``tokenize``, imported on first use (reading a store never imports Dask)."""
    from dask.base import tokenize as dask_tokenize

    return dask_tokenize(*args, **kwargs)


#: How deep referenced functions are followed for their own globals.
_MAX_DEPTH = 3


def token(*parts: Any) -> str:
    """A short deterministic id of ``parts`` (any Python values, via Dask's tokenize)."""
    return hashlib.blake2b(tokenize(*parts, ensure_deterministic=False).encode(), digest_size=10).hexdigest()


def json_token(*parts: Any) -> str:
    """A short deterministic id of JSON-able ``parts`` (stable across processes and versions)."""
    payload = json.dumps(parts, sort_keys=True, default=repr).encode()
    return hashlib.blake2b(payload, digest_size=10).hexdigest()


def _code_parts(code: types.CodeType) -> tuple:
    consts = tuple(_code_parts(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _function_parts(func: Callable, depth: int) -> Any:
    if isinstance(func, types.MethodType):
        return ("method", _function_parts(func.__func__, depth), tokenize(func.__self__, ensure_deterministic=False))
    code = getattr(func, "__code__", None)
    if code is None:  # builtins, ufuncs, callable objects, partials: Dask's normalisation knows them
        return ("object", tokenize(func, ensure_deterministic=False))
    closure = tuple(_value_part(cell.cell_contents, depth) if _cell_full(cell) else "<empty>"
                    for cell in (func.__closure__ or ()))
    globals_ = getattr(func, "__globals__", {})
    read_globals = tuple(
        (name, _value_part(globals_[name], depth)) for name in sorted(_global_names(code)) if name in globals_
    )
    return (
        "function",
        getattr(func, "__module__", None),
        getattr(func, "__qualname__", None),
        _code_parts(code),
        _value_part(func.__defaults__, depth),
        _value_part(func.__kwdefaults__, depth),
        closure,
        read_globals,
    )


def _cell_full(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _value_part(value: Any, depth: int) -> Any:
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, (types.FunctionType, types.MethodType)):
        if depth >= _MAX_DEPTH:
            return ("function", getattr(value, "__module__", None), getattr(value, "__qualname__", None))
        return _function_parts(value, depth + 1)
    if isinstance(value, type):
        return ("type", value.__module__, value.__qualname__)
    return tokenize(value, ensure_deterministic=False)


def function_token(func: Callable) -> str:
    """Deterministic id of a user function: its code, defaults, closure and the globals it reads.

    Examples
    --------
    >>> from hippo_dask.identity import function_token
    >>> fs = [lambda p, t=t: p.x > t for t in (0, 1)]
    >>> function_token(fs[0]) == function_token(fs[1])
    False
    """
    return token(_function_parts(func, 0))


#: Longest function source text kept in a run record.
_MAX_SOURCE = 20_000


def describe_function(func: Callable) -> dict[str, Any]:
    """Code identity of a user function for the run record: name, module, source text and hash, token.

    ``token`` is :func:`function_token` (code, constants, defaults, closure and
    read globals): what a replay compares to tell whether a re-imported
    function is still the one that ran.
    """
    name = getattr(func, "__qualname__", None) or type(func).__name__
    module = getattr(func, "__module__", None)
    # a callable object (functools.partial, hippo's own _Query / _Where ...) is named by its class,
    # which replay must not import and call in its place: it is rebuilt from the stored copy
    instance = not (inspect.isroutine(func) or isinstance(func, type))
    try:
        source = inspect.getsource(func)
        digest = hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
    except (OSError, TypeError):
        source, digest = None, None
    return {"name": name, "module": module, "source_hash": digest, "token": function_token(func),
            "source": None if source is None else source[:_MAX_SOURCE], **({"instance": True} if instance else {})}


def jsonable(value: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` survives a JSON round trip unchanged (numpy scalars as Python ones)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (bool, int, float, str)) or v is None:
            return v
        if hasattr(v, "item") and getattr(v, "shape", None) == ():
            return v.item()
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {k: plain(x) for k, x in v.items()}
        raise TypeError(type(v).__name__)

    try:
        converted = plain(value)
        json.dumps(converted, allow_nan=True)
    except (TypeError, ValueError):
        return False, None
    return True, converted
