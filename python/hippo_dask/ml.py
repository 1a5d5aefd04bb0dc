"""Machine-learning steps: scikit-learn estimators fitted and applied on tracked frames.

Lineage (after Hippo): an output row of ``transform`` / ``predict`` comes from
the same input row; an output column from the input columns it was made from.
The rows an estimator was *fitted* on are a model dependency, kept apart: a
fit is a node whose one "row" (the fitted model) has every training row as a
member, like a group-by with a single group, and ``transform`` / ``predict``
nodes take it as a second input whose edges queries follow only with
``through_models=True``.

Column maps (which inputs an output column was made from) come from the
estimator's structure: ``Pipeline`` steps compose, ``ColumnTransformer`` maps
each output block to its transformer's columns, and the transformers that
work column by column (scalers, imputers, encoders, discretizers, one-to-one
``FunctionTransformer``) map each output to its own input. Every other
estimator (PCA, polynomial features, models, anything unknown) is taken to mix
all its inputs: over-approximated, never fewer columns than the truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import LineageError
from .partition import GROUP_ID, clean, membership_slots, reattach, write_membership

#: Transformers whose output column ``c`` (same name as an input, or an indicator
#: ``missingindicator_c``) is made from input column ``c`` alone.
_PER_COLUMN = frozenset({
    "StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "SimpleImputer", "OrdinalEncoder",
    "PowerTransformer", "QuantileTransformer", "Binarizer", "MissingIndicator",
})
#: Transformers that make several output columns ``c_<suffix>`` from each input ``c``.
_PER_COLUMN_EXPANDING = frozenset({"OneHotEncoder", "KBinsDiscretizer", "SplineTransformer"})


def feature_names(estimator: Any, inputs: Sequence[str]) -> list[str]:
    """Output column names of a fitted transformer, as ``get_feature_names_out()`` gives them."""
    try:
        return [str(n) for n in estimator.get_feature_names_out(list(inputs))]
    except (AttributeError, ValueError, TypeError, NotImplementedError) as exc:
        raise LineageError(
            f"transform: {type(estimator).__name__} cannot name its output columns (get_feature_names_out: {exc}); "
            "use a transformer that implements get_feature_names_out (for FunctionTransformer pass feature_names_out=)"
        ) from None


def _per_column(names: Sequence[str], inputs: Sequence[str], expanding: bool,
                indicators: bool = False) -> dict[str, list[str]] | None:
    """Map each output name to the input(s) it is named after; ``None`` when a name fits none.

    ``indicators``: the estimator may add ``missingindicator_<c>`` columns (imputers), made from ``c``.
    """
    out: dict[str, list[str]] = {}
    for name in names:
        base = name
        if indicators and name not in inputs and name.startswith("missingindicator_"):
            base = name[len("missingindicator_"):]
        found = [c for c in inputs if c == base or (expanding and base.startswith(c + "_"))]
        if not found:
            return None
        out[name] = found  # several candidates (columns "a" and "a_b"): all of them, never fewer
    return out


def feature_map(estimator: Any, inputs: Sequence[str]) -> dict[str, list[str]]:
    """Output column -> the input columns it was made from, in output order (fitted estimator).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.compose import ColumnTransformer
    >>> from sklearn.preprocessing import OneHotEncoder, StandardScaler
    >>> from hippo_dask.ml import feature_map
    >>> X = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    >>> ct = ColumnTransformer([("num", StandardScaler(), ["a"]), ("cat", OneHotEncoder(), ["b"])]).fit(X)
    >>> feature_map(ct, ["a", "b"])
    {'num__a': ['a'], 'cat__b_x': ['b'], 'cat__b_y': ['b']}
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    inputs = list(inputs)
    if isinstance(estimator, Pipeline):
        current = {c: [c] for c in inputs}
        for _, step in estimator.steps:
            if step is None or step == "passthrough":
                continue
            if not hasattr(step, "transform"):
                break  # a final model: its output is a prediction, not features
            step_map = feature_map(step, list(current))
            current = {o: sorted({src for i in srcs for src in current[i]}) for o, srcs in step_map.items()}
        return current
    if isinstance(estimator, ColumnTransformer):
        names = feature_names(estimator, inputs)
        by_input = getattr(estimator, "_transformer_to_input_indices", {})
        blocks = getattr(estimator, "output_indices_", {})  # absent when no block makes a column
        out: dict[str, list[str]] = {}
        for name, transformer, _ in estimator.transformers_:
            block = blocks.get(name, slice(0, 0))
            if block.stop <= block.start:
                continue
            if name not in by_input:  # cannot tell the columns: every input (never fewer)
                out.update({n: list(inputs) for n in names[block]})
                continue
            block_inputs = [inputs[i] for i in by_input[name]]
            if transformer == "passthrough":
                sub = {c: [c] for c in block_inputs}
            else:
                sub = feature_map(transformer, block_inputs)
            block_names = names[block]
            if len(sub) != len(block_names):
                out.update({n: list(block_inputs) for n in block_names})
            else:
                out.update({n: srcs for n, srcs in zip(block_names, sub.values())})
        return out
    names = feature_names(estimator, inputs)
    kind = type(estimator).__name__
    one_to_one = isinstance(estimator, FunctionTransformer) and estimator.feature_names_out == "one-to-one"
    if kind in _PER_COLUMN or kind in _PER_COLUMN_EXPANDING or one_to_one:
        found = _per_column(names, inputs, expanding=kind in _PER_COLUMN_EXPANDING,
                            indicators=kind in ("SimpleImputer", "MissingIndicator"))
        if found is not None:
            return found
    return {n: list(inputs) for n in names}  # mixes its inputs (or unknown): all of them


def describe_estimator(estimator: Any) -> dict[str, Any]:
    """The estimator's class and parameters, readable, for the run record."""
    try:
        params = {k: repr(v) for k, v in estimator.get_params(deep=False).items()}
    except Exception:  # noqa: BLE001 - a describe must never fail the capture
        params = {}
    kind = type(estimator)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", "params": params, "repr": repr(estimator)[:2000]}


def random_states(estimator: Any) -> dict[str, Any]:
    """Every ``random_state`` parameter (nested ones too): ``None`` means the fit is not reproducible."""
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # noqa: BLE001
        return {}
    return {k: (v if isinstance(v, (int, type(None))) else repr(v)) for k, v in params.items()
            if k == "random_state" or k.endswith("__random_state")}


def sklearn_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns as scikit-learn takes them: ``pd.NA`` (nullable and Arrow string dtypes, as Dask makes
    them) becomes ``NaN``, in float columns for numbers and object columns otherwise."""
    fixed = {}
    for name in frame.columns:
        col = frame[name]
        if getattr(col.dtype, "na_value", None) is pd.NA:
            numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)
            fixed[name] = col.to_numpy(dtype=np.float64 if numeric else object, na_value=np.nan)
    return frame.assign(**fixed) if fixed else frame


def _dense(values: Any) -> np.ndarray:
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


@dataclass(frozen=True)
class Model:
    """A scikit-learn estimator fitted on a tracked frame, with the lineage of its training rows.

    Get one from ``train.hippo.fit(estimator, X=[...], y="label")`` and apply it
    with ``frame.hippo.transform(model)`` or ``frame.hippo.predict(model)``.

    Attributes
    ----------
    estimator : object
        The fitted estimator (a copy: the one passed to ``fit`` is left unfitted).
    X : tuple of str
        The feature columns it was fitted on.
    y : str or None
        The label column (supervised estimators).
    fit_mode : str
        ``"fit"`` (one call on the gathered columns) or ``"partial_fit"`` (one call per partition).
    checksum : str
        Checksum of the pickled fitted estimator, as stored in the run for replay.
    """

    estimator: Any
    X: tuple[str, ...]
    y: str | None
    node: Any  # plan.Node of the fit
    store: Any
    fit_mode: str
    checksum: str
    features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # transformers: output -> inputs
    sample: pd.DataFrame | None = None  # a few training rows (X): output types for Dask's meta
    sources: Mapping[str, Any] = field(default_factory=dict)  # hidden column -> SourceInfo (with counts)
    receipts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # node id -> fragments already written
    pickled: bytes = b""

    def __repr__(self) -> str:
        y = f", y={self.y!r}" if self.y else ""
        return f"Model({type(self.estimator).__name__}, X={list(self.X)}{y}, fit_mode={self.fit_mode!r})"

    @property
    def is_transformer(self) -> bool:
        return hasattr(self.estimator, "transform")


def checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _canonical(value: Any, depth: int = 0) -> Any:
    """A structure that is equal for equal fitted states (pickle bytes are not: memo layout varies)."""
    if depth > 40:
        return type(value).__qualname__
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return ("nd", value.shape, tuple(_canonical(v, depth + 1) for v in value.ravel()))
        return ("nd", value.dtype.str, value.shape, hashlib.blake2b(np.ascontiguousarray(value).tobytes()).hexdigest())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_canonical(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _canonical(v, depth + 1)) for k, v in value.items())))
    if isinstance(value, (str, bytes, bool, int, float, type(None), np.generic)):
        return repr(value)
    if callable(value) and not hasattr(value, "get_params"):
        return ("callable", getattr(value, "__module__", None), getattr(value, "__qualname__", repr(type(value))))
    if hasattr(value, "__dict__"):
        return (type(value).__module__, type(value).__qualname__, _canonical(vars(value), depth + 1))
    return repr(value)


def fitted_digest(estimator: Any) -> str:
    """A digest of a fitted estimator's state: equal for estimators fitted alike (replay compares these)."""
    return hashlib.blake2b(repr(_canonical(estimator)).encode(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------
# per partition (pandas: the whole frame; Dask: on the workers)


def record_training(part: pd.DataFrame, columns: Sequence[str], fragment_dir: str | None, node_id: str) -> pd.DataFrame:
    """Write which rows a model is fitted on (one group, id 0); return their training columns.

    The receipt of the fragment rides on the returned frame (see
    :func:`hippo_dask.partition.write_membership`).
    """
    arrays = membership_slots(part)
    arrays[GROUP_ID] = np.zeros(len(part), dtype=np.int64)
    hidden = [c for c in part.columns if c.startswith("__hippo_")]
    return write_membership(part, arrays, fragment_dir, node_id, part[list(columns) + hidden])


def in_id_order(part: pd.DataFrame) -> pd.DataFrame:
    """Training rows in the order of their ids, without the ids: a distributed shuffle delivers rows in
    a varying order, and an estimator's floating-point sums depend on it; this order never varies."""
    hidden = [c for c in part.columns if c.startswith("__hippo_")]
    if hidden and len(part) > 1:
        part = part.sort_values(hidden, kind="stable")
    return clean(part)


def transform_partition(part: pd.DataFrame, estimator: Any, inputs: Sequence[str], names: Sequence[str],
                        dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Replace ``inputs`` by the estimator's output columns ``names``; other columns pass through."""
    user = clean(part)
    if len(user):
        values = _dense(estimator.transform(sklearn_ready(user[list(inputs)])))
        if values.shape != (len(user), len(names)):
            raise LineageError(f"transform: {type(estimator).__name__} returned shape {values.shape}, "
                               f"expected ({len(user)}, {len(names)})")
        made = pd.DataFrame(values, columns=list(names))
        made = made.astype({n: dtypes[n] for n in names if made[n].dtype != dtypes[n]}) if dtypes else made
        columns = {n: made[n].array for n in names}  # arrays keep pandas dtypes (str) and go by position
    else:
        columns = {n: pd.array([], dtype=dtypes.get(n, np.float64)) for n in names}
    # by position (arrays), never by index label: a partition's index may repeat labels (explode)
    out = user.drop(columns=list(inputs)).assign(**columns)
    return reattach(out, part)


def predict_partition(part: pd.DataFrame, estimator: Any, X: Sequence[str], model_X: Sequence[str],
                      method: str, outs: Sequence[str], dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Add the estimator's predictions (``predict`` or ``predict_proba`` columns) to every row."""
    user = clean(part)
    if len(user):
        features = sklearn_ready(user[list(X)])
        if list(X) != list(model_X):
            features = features.set_axis(list(model_X), axis=1)
        values = np.asarray(getattr(estimator, method)(features))
        values = values.reshape(len(user), -1)
        made = {o: values[:, i].astype(dtypes[o]) for i, o in enumerate(outs)}  # arrays: by position
    else:
        made = {o: pd.array([], dtype=dtypes[o]) for o in outs}
    return reattach(user.assign(**made), part)


def fit_estimator(estimator: Any, batches: Any, X: Sequence[str], y: str | None, mode: str,
                  classes: np.ndarray | None = None) -> Any:
    """Fit ``estimator`` on the training columns: one call (``fit``) or one per batch (``partial_fit``)."""
    for batch in batches:
        if mode == "partial_fit" and not len(batch):
            continue  # a filter or split may leave a partition empty; scikit-learn refuses 0 rows
        features = sklearn_ready(batch[list(X)])
        target = batch[y] if y is not None else None
        if mode == "fit":
            estimator.fit(features) if target is None else estimator.fit(features, target)
        elif target is None:
            estimator.partial_fit(features)
        elif classes is not None:
            estimator.partial_fit(features, target, classes=classes)
        else:
            estimator.partial_fit(features, target)
    return estimator
