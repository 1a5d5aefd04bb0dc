"""Random pipelines WITH scikit-learn steps against the oracle (tests/oracle.py).

Each example draws two random sources (numeric with NaN, string categories
with a rare one and missing values, ints, bools, a label and a regression
target), a chain of data-preparation steps (the steps of
tests/test_random_pipelines.py: filters, assign, map, dropna, fillna, sort,
dedupe, group-bys, merges, concat, explode, ...), then an ML part:

* ``split`` (random test_size, seed, ``by=`` all columns or one), or none;
* 0-2 transformer stages, each fitted on train and applied to train and test:
  StandardScaler, MinMaxScaler, SimpleImputer (mean / median / most_frequent /
  constant, add_indicator), OneHotEncoder (handle_unknown="ignore", sparse or
  dense), OrdinalEncoder, KBinsDiscretizer (ordinal / onehot-dense, uniform),
  PCA, PolynomialFeatures, FunctionTransformer (one-to-one, and one that mixes
  its inputs), a Pipeline of two of them, a ColumnTransformer over column
  subsets (blocks of the above, "passthrough"/"drop" blocks, remainder
  drop/passthrough, verbose_feature_names_out True/False);
* a model: LogisticRegression, DecisionTreeClassifier, GaussianNB,
  SGDClassifier, Pipeline(scaler, logistic regression), LinearRegression,
  DecisionTreeRegressor; applied with predict, predict_proba,
  predict_log_proba or decision_function (sometimes with ``X=`` naming
  renamed feature columns);
* between stages, sometimes a data step on one side (filter, merge with
  source b, dropna, sort);
* the result: train, test, or both concatenated, then data steps on the
  predictions (filter on a class, group by the prediction, merge the groups back,
  assign from an output column).

It runs on pandas, on Dask (1-4 partitions, scheduler="sync"; estimators with
``partial_fit`` are then fitted one partition at a time) and on a LocalCluster
of worker processes, and compares, for ``through_models`` False and True, every
result row's values, row lineage and per-column cell lineage
(:func:`oracle.hippo_records` / :func:`oracle.oracle_records`), plus forward
traces of sampled source cells (:func:`oracle.check_forward`).

The oracle adopts hippo's fitted estimators (``fitted=model.estimator``) for
identical values only. Which input columns an output column is made from is
found by perturbation (change one input column, see which outputs change:
:func:`oracle.perturbed_dependencies`, plus the extra variants below); for the
estimators DESIGN says mix their inputs (PCA, PolynomialFeatures, a
FunctionTransformer without one-to-one names, and Pipelines containing one)
every output of that block is made from all the block's inputs.

Degenerate random data that scikit-learn itself refuses or warns about (one
class for a logistic regression, an all-NaN column, fewer rows than PCA
components, a constant column for KBinsDiscretizer, ...) is found by running
the same estimator on the oracle's pandas frames first, and the example is
rejected; an empty training frame must make hippo raise "no rows to fit on",
output names that clash with kept columns a ColumnError, duplicate output names
a LineageError. The bugs it found are fixed and kept as regression tests at the
end of the file.

Budget: HIPPO_EXAMPLES (default 40) examples on pandas, half as many on Dask,
max(8, HIPPO_EXAMPLES / 25) on the cluster; about a minute on a 2-core machine.
    python -m pytest -q tests/test_random_ml.py -p no:cacheprovider
    HIPPO_EXAMPLES=300 python -m pytest -q tests/test_random_ml.py -p no:cacheprovider
Bug hunting without shrinking (first failure as found, fast):
    HIPPO_NO_SHRINK=1 HIPPO_EXAMPLES=1000 python -m pytest -q -x tests/test_random_ml.py --hypothesis-show-statistics
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle
import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, note, reject, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import hippo_dask as hippo
import test_random_pipelines
from hippo_dask import partition as P  # the split's row choice only (values), never lineage
from oracle import (
    OracleFrame,
    OracleModel,
    check_forward,
    hippo_records,
    oracle_fit,
    oracle_predict,
    oracle_records,
    oracle_transform,
    perturbed_dependencies,
    row_keys,
)
from test_random_pipelines import REORDERING, SETTINGS, STEPS, apply_step

# Worker processes cannot import the test modules: ship their functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(test_random_pipelines)

EXAMPLES = int(os.environ.get("HIPPO_EXAMPLES", "40"))
if os.environ.get("HIPPO_NO_SHRINK"):  # bug hunting: report the first failure as found, unshrunk
    from hypothesis import Phase

    SETTINGS = dict(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
NAN = float("nan")


def sklearn_quiet(test):
    """The scikit-learn warnings a random example may raise in hippo's steps and not in the preflight.

    Convergence; and GaussianNB fitted one partition at a time (partial_fit on Dask), whose variance
    smoothing comes from the first partition alone: a one-row first partition leaves a variance of 0.
    """
    test = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")(test)
    for message in ("divide by zero encountered", "invalid value encountered"):
        test = pytest.mark.filterwarnings(
            f"ignore:{message}:RuntimeWarning:sklearn\\.(naive_bayes|utils\\._array_api)")(test)
    return test


pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True)
def _keep_object_columns():
    with dask.config.set({"dataframe.convert-string": False}):
        yield


# ---------------------------------------------------------------------- sources


def chance(p: float):
    """True with probability about ``p`` (hypothesis draws booleans and small integers far from uniformly)."""
    return st.sampled_from([True] * round(20 * p) + [False] * (20 - round(20 * p)))


CATEGORIES = ["red", "blue", "green", "teal"]  # teal is rare
CATEGORY_P = [0.5, 0.3, 0.17, 0.03]


@st.composite
def ml_sources(draw):
    """Source ``a`` (columns the prep steps know, k x y z, and ML columns f u g lab t, decoy e last) and ``b``."""
    n = draw(st.one_of(st.integers(1, 12), st.sampled_from(range(13, 61))), label="rows") \
        if draw(chance(0.95), label="rows?") else 0
    seed = draw(st.integers(0, 2**32 - 1), label="data seed")
    nan_rate = draw(st.sampled_from([0.0, 0.1, 0.3]), label="nan rate")
    label_kind = draw(st.sampled_from(["binary", "three", "str", "bool"]), label="label kind")
    str_dtype = draw(st.sampled_from(["str", object]), label="string dtype")
    rng = np.random.default_rng(seed)

    def holes(values: np.ndarray) -> np.ndarray:
        values = values.astype(float)
        values[rng.random(n) < nan_rate] = NAN
        return values

    x = rng.integers(0, 10, n)
    u = rng.choice(CATEGORIES, n, p=CATEGORY_P).astype(object)
    u[rng.random(n) < nan_rate / 2] = None
    lab = {
        "binary": lambda: (x + rng.integers(0, 4, n) > 6).astype(np.int64),
        "three": lambda: rng.integers(0, 3, n).astype(np.int64),
        "str": lambda: pd.Series(np.where(rng.random(n) < 0.5, "yes", "no"), dtype=str_dtype),
        "bool": lambda: rng.random(n) < 0.4,
    }[label_kind]()
    a = pd.DataFrame({
        "k": rng.integers(0, 4, n).astype(np.int64),
        "x": x.astype(np.int64),
        "y": holes(np.round(rng.uniform(-5, 5, n), 2)),
        "z": pd.Series(rng.choice(["p", "q", "r"], n).astype(object), dtype=str_dtype),
        "f": holes(np.round(rng.normal(0, 30, n), 3)),
        "u": pd.Series(u, dtype=str_dtype),
        "g": rng.random(n) < 0.5,
        "lab": lab,
        "t": np.round(x * 1.5 + rng.normal(size=n), 3),
        "e": rng.integers(0, 100, n).astype(np.int64),
    })
    m = draw(st.integers(0, 8), label="rows of b")
    b = pd.DataFrame({"k": rng.integers(0, 5, m).astype(np.int64), "w": rng.integers(0, 100, m).astype(np.int64)})
    return a, b


prep_steps = st.lists(st.tuples(st.sampled_from(STEPS), st.sampled_from(["inner", "left", "outer", "right"])),
                      min_size=0, max_size=4)


# ---------------------------------------------------------------------- backends


@dataclass
class Backend:
    name: str
    nparts: int = 1
    scheduler: Any = None

    @property
    def is_dask(self) -> bool:
        return self.name != "pandas"

    def to_frame(self, df: pd.DataFrame):
        return df if not self.is_dask else dd.from_pandas(df, npartitions=self.nparts, sort=False)

    @property
    def kwargs(self) -> dict:
        return {} if not self.is_dask else {"scheduler": self.scheduler}


# ---------------------------------------------------------------------- column kinds


def kinds(frames: list[pd.DataFrame]) -> dict[str, list[str]]:
    """Columns by what an estimator may read: numeric (with/without NaN), bools, strings."""
    common = [c for c in frames[0].columns if all(c in f.columns for f in frames)]
    whole = pd.concat([f[common] for f in frames], ignore_index=True) if len(frames) > 1 else frames[0]
    out: dict[str, list[str]] = {"num": [], "num_nonan": [], "bool": [], "cat": [], "cat_nonan": []}
    for c in whole.columns:
        s = whole[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            out["bool"].append(c)
        elif pd.api.types.is_numeric_dtype(s.dtype):
            values = s.to_numpy(dtype=float)
            if len(values) and not np.isfinite(values[~np.isnan(values)]).all():
                continue
            out["num"].append(c)
            if not np.isnan(values).any():
                out["num_nonan"].append(c)
        elif s.dropna().map(lambda v: isinstance(v, str)).all():
            out["cat"].append(c)
            if not s.isna().any():
                out["cat_nonan"].append(c)
    return out


# ---------------------------------------------------------------------- estimators


def _symlog(X):
    """One-to-one: sign(x) * log1p(|x|), NaN stays NaN, never a warning."""
    values = np.asarray(X, dtype=float)
    return np.sign(values) * np.log1p(np.abs(values))


def _mix(X):
    """Two outputs, each made from every input: a NaN-ignoring sum and weighted sum."""
    values = np.asarray(X, dtype=float)
    weights = np.arange(1, values.shape[1] + 1, dtype=float)
    filled = np.where(np.isnan(values), 0.0, values)
    return np.column_stack([filled.sum(axis=1), filled @ weights])


def _mix_names(transformer, input_features):
    return np.asarray(["mix_sum", "mix_wsum"], dtype=object)


@dataclass
class Spec:
    """An estimator to fit, its X, and which of its outputs DESIGN says mix all their block's inputs."""

    est: Any
    X: list[str]
    mixes: bool = False  # every output made from every input (PCA, polynomial, mixing function)
    blocks: list[tuple[str, "Spec"]] = field(default_factory=list)  # ColumnTransformer: (name, spec over cols)

    def __repr__(self) -> str:
        return f"Spec({self.est!r}, X={self.X})"


def _pick(draw, pool: list[str], lo: int = 1, hi: int = 3, label: str = "columns") -> list[str]:
    hi = min(hi, len(pool))
    return draw(st.lists(st.sampled_from(pool), min_size=lo, max_size=hi, unique=True), label=label)


#: name -> (pool of columns it may read, builder(draw, columns) -> (estimator, mixes))
SIMPLE: dict[str, tuple[str, Callable]] = {
    "standard": ("num", lambda d, X: (StandardScaler(), False)),
    "minmax": ("num", lambda d, X: (MinMaxScaler(), False)),
    "impute_num": ("num", lambda d, X: (SimpleImputer(
        strategy=d(st.sampled_from(["mean", "median", "most_frequent", "constant"])),
        add_indicator=d(st.booleans())), False)),
    "impute_cat": ("cat", lambda d, X: (SimpleImputer(
        strategy=d(st.sampled_from(["most_frequent", "constant"])), fill_value="missing",
        add_indicator=d(st.booleans())), False)),
    "onehot": ("cat", lambda d, X: (OneHotEncoder(handle_unknown="ignore", sparse_output=d(st.booleans())), False)),
    "onehot_int": ("int", lambda d, X: (OneHotEncoder(handle_unknown="ignore", sparse_output=d(st.booleans())), False)),
    "ordinal": ("cat", lambda d, X: (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), False)),
    "kbins": ("num_nonan", lambda d, X: (KBinsDiscretizer(
        n_bins=d(st.integers(2, 4)), encode=d(st.sampled_from(["ordinal", "onehot-dense"])), strategy="uniform"), False)),
    "pca": ("num_nonan", lambda d, X: (PCA(n_components=d(st.integers(1, min(2, len(X))))), True)),
    "poly": ("num_nonan", lambda d, X: (PolynomialFeatures(
        degree=2, include_bias=d(st.booleans()), interaction_only=d(st.booleans())), True)),
    "func_one": ("num", lambda d, X: (FunctionTransformer(_symlog, feature_names_out="one-to-one"), False)),
    "func_mix": ("num", lambda d, X: (FunctionTransformer(_mix, feature_names_out=_mix_names), True)),
}

#: Pipelines of two: (first, second), over the first one's pool.
PIPES = [
    ("impute_num", "standard"), ("impute_num", "minmax"), ("impute_num", "kbins"), ("impute_num", "pca"),
    ("impute_num", "poly"), ("impute_num", "func_one"), ("impute_num", "func_mix"),
    ("impute_cat", "onehot"), ("impute_cat", "ordinal"),
    ("standard", "pca"), ("standard", "kbins"), ("minmax", "poly"), ("func_one", "standard"),
]


def _pools(K: dict[str, list[str]]) -> dict[str, list[str]]:
    pools = dict(K)
    pools["int"] = [c for c in K["num_nonan"] if c in ("k", "x")]
    return pools


def simple_spec(draw, K, name: str) -> Spec | None:
    pool = _pools(K)[SIMPLE[name][0]]
    if not pool:
        return None
    X = _pick(draw, pool)
    est, mixes = SIMPLE[name][1](draw, X)
    return Spec(est, X, mixes)


def _pipe_pool(first: str, second: str) -> str:
    """The first step's pool; NaN-free columns when the second takes no NaN and the first keeps them."""
    if SIMPLE[second][0] == "num_nonan" and not first.startswith("impute"):
        return "num_nonan"
    return SIMPLE[first][0]


def pipe_spec(draw, K, first: str, second: str) -> Spec | None:
    pool = _pools(K)[_pipe_pool(first, second)]
    if not pool:
        return None
    X = _pick(draw, pool)
    a, mix_a = SIMPLE[first][1](draw, X)
    b, mix_b = SIMPLE[second][1](draw, X)
    return Spec(Pipeline([(first, a), (second, b)]), X, mix_a or mix_b)


def available(K) -> tuple[list[str], list[tuple[str, str]]]:
    pools = _pools(K)
    simple = [n for n, (pool, _) in SIMPLE.items() if pools[pool]]
    pipes = [(f, s) for f, s in PIPES if pools[_pipe_pool(f, s)]]
    return simple, pipes


def transformer_spec(draw, K, allow_ct: bool = True) -> Spec | None:
    simple, pipes = available(K)
    choices = ["simple"] * bool(simple) + ["pipeline"] * bool(pipes) + ["ct"] * bool(allow_ct and (simple or pipes))
    if not choices:
        return None
    what = draw(st.sampled_from(choices), label="transformer kind")
    if what == "simple":
        return simple_spec(draw, K, draw(st.sampled_from(simple), label="transformer"))
    if what == "pipeline":
        return pipe_spec(draw, K, *draw(st.sampled_from(pipes), label="pipeline"))
    return ct_spec(draw, K)


def ct_spec(draw, K) -> Spec | None:
    blocks: list[tuple[str, Spec]] = []
    for i in range(draw(st.integers(1, 3), label="blocks")):
        kind = draw(st.sampled_from(["est", "est", "est", "passthrough", "drop"]), label="block kind")
        if kind == "est":
            spec = transformer_spec(draw, K, allow_ct=False)
        else:
            every = [c for pool in ("num", "bool", "cat") for c in K[pool]]
            spec = Spec(kind, _pick(draw, every, 1, 2)) if every else None
        if spec is not None:
            blocks.append((f"b{i}", spec))
    if not blocks:
        return None
    used = [c for _, s in blocks for c in s.X]
    every = [c for pool in ("num", "bool", "cat") for c in K[pool] if c not in used]
    extra = _pick(draw, every, 0, 2, label="remainder columns") if every else []
    X = list(dict.fromkeys(used + extra))
    ct = ColumnTransformer([(name, s.est, s.X) for name, s in blocks],
                           remainder=draw(st.sampled_from(["drop", "passthrough"]), label="remainder"),
                           verbose_feature_names_out=draw(st.booleans(), label="verbose names"))
    return Spec(ct, X, False, blocks)


CLASSIFIERS = {
    "logistic": lambda d: LogisticRegression(max_iter=300),
    "tree": lambda d: DecisionTreeClassifier(random_state=0, max_depth=d(st.sampled_from([None, 2]))),
    "gnb": lambda d: GaussianNB(),
    "sgd": lambda d: SGDClassifier(random_state=0),
    "scaled_logistic": lambda d: Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=300))]),
}
ONE_CLASS_OK = {"tree", "gnb"}
REGRESSORS = {
    "linear": lambda d: LinearRegression(),
    "tree_reg": lambda d: DecisionTreeRegressor(random_state=0, max_depth=3),
}


# ---------------------------------------------------------------------- sklearn on the oracle's frames first


def _quietly(fn: Callable, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def preflight(est: Any, X: list[str], y: str | None, train: pd.DataFrame, others: list[pd.DataFrame],
              methods: tuple[str, ...] = ()) -> Any:
    """Fit a clone on the oracle's training frame and apply it, with warnings as errors.

    scikit-learn refusing (or warning about) this random data means a degenerate
    case (one class, all-NaN column, too few rows, a constant column for binning,
    ...): the example is rejected. Returns the fitted clone.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        try:
            fitted = clone(est)
            fitted.fit(train[X]) if y is None else fitted.fit(train[X], train[y])
            if hasattr(fitted, "transform") and y is None:
                fitted.get_feature_names_out(X)
                for o in others:
                    if len(o):
                        fitted.transform(o[X])
            for m in methods:
                for o in others:
                    if len(o):
                        getattr(fitted, m)(o[X])
        except Exception as exc:  # noqa: BLE001 - scikit-learn refuses this random data
            note(f"rejected by scikit-learn: {type(exc).__name__}: {exc}")
            event(f"rejected: {type(est).__name__}: {type(exc).__name__}: {str(exc)[:60]}")
            reject()
    return fitted


# ---------------------------------------------------------------------- the oracle's column map


def _extra_dependencies(fitted: Any, sample: pd.DataFrame, X: list[str], train: pd.DataFrame) -> dict[str, set[str]]:
    """More perturbations than :func:`oracle.perturbed_dependencies`: missing, unseen and in-range values.

    (A missing-value indicator changes only when a value goes missing; a
    one-hot column of a category that every row has changes only for a value
    never seen; the middle bin of a uniform discretizer only for a value inside
    the training range, which the training quantiles may all miss.)
    """
    names = [str(n) for n in fitted.get_feature_names_out(list(X))]
    base = _dense(fitted.transform(sample[X]))
    deps: dict[str, set[str]] = {n: set() for n in names}
    for c in X:
        col = sample[c]
        if pd.api.types.is_bool_dtype(col.dtype):
            variants = [np.ones(len(col), dtype=bool), np.zeros(len(col), dtype=bool)]
        elif pd.api.types.is_numeric_dtype(col.dtype):
            seen = train[c].to_numpy(dtype=float)
            seen = seen[~np.isnan(seen)]
            grid = list(np.linspace(seen.min(), seen.max(), 17)) if len(seen) else []
            variants = [np.full(len(col), v) for v in [NAN, 0.0, 1.0, -1.0, 1e6, -1e6] + grid]
        else:
            variants = [pd.Series([None] * len(col), dtype=col.dtype), pd.Series(["zz_unseen"] * len(col), dtype=col.dtype)]
        for variant in variants:
            changed = sample[X].copy()
            changed[c] = np.asarray(variant) if not isinstance(variant, pd.Series) else variant.set_axis(changed.index)
            try:
                out = _dense(fitted.transform(changed))
            except (ValueError, TypeError):
                continue
            for j, n in enumerate(names):
                a, b = base[:, j], out[:, j]
                same = (a == b) | (pd.isna(a) & pd.isna(b))
                if not np.asarray(same, dtype=bool).all():
                    deps[n].add(c)
    return deps


def _dense(values: Any) -> np.ndarray:
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


def oracle_column_map(fitted: Any, spec: Spec, frames: list[pd.DataFrame], train: pd.DataFrame) -> dict[str, set[str]]:
    """Output column -> input columns it is made from: by perturbation, all block inputs for mixing blocks."""
    X = spec.X
    names = [str(n) for n in fitted.get_feature_names_out(X)]
    sample = pd.concat([f[X] for f in frames if len(f)], ignore_index=True)
    deps = _quietly(perturbed_dependencies, fitted, sample, X, train)
    for n, cols in _quietly(_extra_dependencies, fitted, sample, X, train).items():
        deps[n] |= cols
    if spec.mixes:
        for n in names:
            deps[n] |= set(X)
    for name, block in spec.blocks:
        if block.mixes:
            for n in names[fitted.output_indices_[name]]:
                deps[n] |= set(block.X)
    return deps


# ---------------------------------------------------------------------- oracle of predict with other methods


def oracle_predict_method(frame: OracleFrame, model: OracleModel, out: str, method: str, X: list[str],
                          through_models: bool) -> OracleFrame:
    """``predict``/``predict_proba``/... as new column(s): one column ``out``, or ``out_<class>`` per class.

    Each new cell <- the row's feature cells (+ every training row's features and label).
    """
    features = frame.df[X].set_axis(model.X, axis=1)
    values = np.asarray(getattr(model.fitted, method)(features)) if len(frame.df) else None
    if method == "predict" or (method == "decision_function" and len(model.fitted.classes_) == 2):
        outs = [out]
    else:
        outs = [f"{out}_{c}" for c in model.fitted.classes_]
    if values is None:
        values = np.zeros((0, len(outs)))
    values = values.reshape(len(frame.df), len(outs))
    df = frame.df.assign(**{o: values[:, i] for i, o in enumerate(outs)})
    model_part = frozenset()
    if through_models:
        model_part = frozenset().union(*(model.column_cells[c] for c in model.X + ([model.y] if model.y else [])))
    cells = dict(frame.cells)
    for o in outs:
        cells[o] = [frozenset().union(*(frame.cells[c][i] for c in X)) | model_part for i in range(len(df))]
    rows = [r | model.rows for r in frame.rows] if through_models else frame.rows
    return OracleFrame(df, cells, rows, frame.parts)


# ---------------------------------------------------------------------- the pipeline


class Stop(Exception):
    """The example ended early as expected (an expected error was checked)."""


def _split_oracle(o: OracleFrame, by: list[str], test_size: float, seed: int) -> tuple[OracleFrame, OracleFrame]:
    df = o.df.reset_index(drop=True)
    sides = []
    for test in (False, True):
        kept = P.split_partition(df, by, test_size, seed, test).index.to_numpy()
        sides.append(o._take(kept, keep_parts=True))
    assert len(sides[0].df) + len(sides[1].df) == len(df)
    return sides[0], sides[1]


class Run:
    """One example: the tracked frames per side, and the oracle's per side for through_models False/True."""

    def __init__(self, draw, backend: Backend):
        self.draw = draw
        self.backend = backend
        self.H: dict[str, Any] = {}
        self.O: dict[bool, dict[str, OracleFrame]] = {False: {}, True: {}}

    @property
    def sides(self) -> list[str]:
        return list(self.H)

    def frames(self) -> list[pd.DataFrame]:
        return [self.O[False][s].df for s in self.sides]

    def apply(self, side: str, tracked: Callable, oracle: Callable) -> None:
        self.H[side] = tracked(self.H[side])
        for tm in (False, True):
            self.O[tm][side] = oracle(self.O[tm][side], tm)

    # ------------------------------------------------------------ fit
    def fit(self, spec: Spec, y: str | None, methods: tuple[str, ...] = ()):
        """Fit on train in hippo (after checking scikit-learn accepts the data); expected errors end the example."""
        train = self.O[False]["train"].df
        draw, backend = self.draw, self.backend
        if len(train) == 0:
            with pytest.raises(hippo.LineageError, match="no rows to fit on"):
                self.H["train"].hippo.fit(spec.est, X=spec.X, y=y, **backend.kwargs)
            raise Stop("empty training frame")
        fitted = preflight(spec.est, spec.X, y, train, self.frames(), methods)
        if y is None and len(set(fitted.get_feature_names_out(spec.X))) < len(fitted.get_feature_names_out(spec.X)):
            # scikit-learn names two outputs alike (PolynomialFeatures over "x" and "x^2" makes "x^2" twice):
            # no frame holds that, hippo must refuse it (it does at transform time)
            with pytest.raises(hippo.LineageError):
                model = self.H["train"].hippo.fit(spec.est, X=spec.X, **backend.kwargs)
                self.H["train"].hippo.transform(model).hippo.compute(**backend.kwargs)
            raise Stop("duplicate output names")
        incremental = None
        if backend.is_dask:
            incremental = draw(st.sampled_from([None, None, False] + [True] * hasattr(spec.est, "partial_fit")),
                               label="incremental")
        # hippo's default: partial_fit on Dask for models that have it; transformers are gathered
        is_model = hasattr(spec.est, "predict") or hasattr(spec.est, "fit_predict")
        partial = backend.is_dask and hasattr(spec.est, "partial_fit") and (
            incremental is True or (incremental is None and is_model))
        try:
            model = self.H["train"].hippo.fit(spec.est, X=spec.X, y=y, incremental=incremental, **backend.kwargs)
        except RuntimeWarning as exc:
            if partial and ("invalid value encountered" in str(exc) or "All-NaN slice" in str(exc)):
                # scikit-learn's partial_fit of scalers (asked for with incremental=True): see
                # test_scaler_on_dask_with_an_all_missing_partition
                event("rejected: known bug, partial_fit on an all-NaN partition column")
                reject()
            raise
        assert model.fit_mode == ("partial_fit" if partial else "fit"), (model.fit_mode, partial)
        assert model.X == tuple(spec.X) and model.y == y
        return model

    def align_dtypes(self) -> None:
        """Give the oracle's columns hippo's dtypes where only the dtype differs, not the values.

        By design hippo's merges give every column that may get missing values the dtype pandas gives it
        when it does (int -> float64, bool -> object), in every Dask partition, even when none is missing.
        scikit-learn sees hippo's dtypes (an object column of bools is no label; a SimpleImputer fitted on
        floats refuses ints): the preflight and the oracle's transforms must see them too. (Not before the
        split: the split must be the same as on pandas, whatever the dtypes.)
        """
        for side in self.sides:
            want = self.H[side].dtypes
            for tm in (False, True):
                df = self.O[tm][side].df
                fixed = df.copy()
                for c in df.columns:
                    if c in want.index and df[c].dtype != want[c]:
                        try:
                            cast = df[c].astype(want[c])
                        except (TypeError, ValueError):
                            continue
                        if row_keys(cast.to_frame()) == row_keys(df[[c]]):
                            fixed[c] = cast
                self.O[tm][side] = self.O[tm][side].with_values(fixed)

    # ------------------------------------------------------------ stages
    def transformer_stage(self) -> None:
        self.align_dtypes()
        K = kinds(self.frames())
        spec = transformer_spec(self.draw, K)
        if spec is None:
            return
        note(f"transformer: {spec!r}")
        event(f"transformer {type(spec.est).__name__}")
        model = self.fit(spec, None)
        names = [str(n) for n in model.estimator.get_feature_names_out(spec.X)]
        assert list(model.features) == names
        kept = [c for c in self.O[False]["train"].df.columns if c not in spec.X]
        if set(names) & set(kept):
            for side in self.sides:
                with pytest.raises(hippo.ColumnError, match="already exist"):
                    self.H[side].hippo.transform(model)
            raise Stop("output names clash")
        deps = oracle_column_map(model.estimator, spec, self.frames(), self.O[False]["train"].df)
        note(f"column map: {deps}")
        if any(not deps[n] for n in names):
            # an output no input change changes (e.g. the middle bins of a discretized 0/1 indicator): which
            # column it is "made from" is then DESIGN's per-column rule, which perturbation cannot see
            event("rejected: an output column that no input changes")
            reject()
        o_models = {tm: oracle_fit(self.O[tm]["train"], None, spec.X, fitted=model.estimator) for tm in (False, True)}
        use_fit_transform = not self.backend.is_dask and self.draw(chance(0.2), label="fit_transform")
        for side in self.sides:
            if side == "train" and use_fit_transform:  # pandas: the same single fit on the same rows
                tracked = lambda t: t.hippo.fit_transform(spec.est, spec.X)  # noqa: E731
            else:
                tracked = lambda t: t.hippo.transform(model)  # noqa: E731
            self.apply(side, tracked, lambda o, tm: oracle_transform(o, o_models[tm], tm, deps=deps))

    def model_stage(self) -> None:
        draw = self.draw
        self.align_dtypes()
        K = kinds(self.frames())
        train = self.O[False]["train"].df
        cls_labels = [c for c in train.columns
                      if (c in K["bool"] or c in K["cat"] or (c in K["num"] and pd.api.types.is_integer_dtype(train[c].dtype))
                          or c == "lab") and 1 <= train[c].nunique() <= 5]
        cls_labels = sorted(cls_labels, key=lambda c: c != "lab")
        reg_labels = [c for c in K["num"] if c in train.columns]
        kind = draw(st.sampled_from(["clf"] * bool(cls_labels) * 3 + ["reg"] * bool(reg_labels)), label="task") \
            if (cls_labels or reg_labels) else None
        if kind is None:
            event("no model: no label")
            return
        y = draw(st.sampled_from(cls_labels if kind == "clf" else reg_labels), label="label")
        features = [c for c in K["num_nonan"] + K["bool"] if c != y]
        if not features:
            event("no model: no features")
            return
        if train[y].isna().any():  # scikit-learn takes no missing labels: drop them first, on train
            self.apply("train", lambda t: t.hippo.dropna(subset=[y]), lambda o, tm: o.dropna([y]))
            train = self.O[False]["train"].df
        X = _pick(draw, features, 1, 4, label="features")
        if kind == "clf":
            names = list(CLASSIFIERS) if train[y].nunique() >= 2 else sorted(ONE_CLASS_OK)
            name = draw(st.sampled_from(names), label="classifier")
            est = CLASSIFIERS[name](draw)
        else:
            est = REGRESSORS[draw(st.sampled_from(list(REGRESSORS)), label="regressor")](draw)
        note(f"model: {est!r} X={X} y={y}")
        pool = ["predict_proba", "decision_function"] + (["predict_log_proba"] if isinstance(est, GaussianNB) else [])
        extra = [m for m in draw(st.lists(st.sampled_from(pool), max_size=2, unique=True), label="methods")
                 if hasattr(est, m)]
        methods = ("predict",) * draw(st.booleans(), label="predict") + tuple(extra) or ("predict",)
        model = self.fit(Spec(est, X), y, methods)
        event(f"model {type(est).__name__} {methods} fit_mode={model.fit_mode}")
        o_models = {tm: oracle_fit(self.O[tm]["train"], None, X, y, fitted=model.estimator) for tm in (False, True)}
        rename = draw(st.booleans(), label="predict with renamed X")
        for side in self.sides:
            use = list(X)
            if rename and "test" in self.sides and side == "test":
                mapping = {c: f"{c}_r" for c in X}
                if not set(mapping.values()) & set(self.O[False][side].df.columns):
                    self.apply(side, lambda t: t.hippo.rename(mapping), lambda o, tm: o.rename(mapping))
                    use = [mapping[c] for c in X]
            for method in methods:
                out = {"predict": "pred", "predict_proba": "proba", "predict_log_proba": "logp",
                       "decision_function": "dec"}[method]
                if method == "predict" and use == list(X) and draw(st.booleans(), label="oracle_predict"):
                    oracle_step = lambda o, tm: oracle_predict(o, o_models[tm], out, tm)  # noqa: E731
                else:
                    oracle_step = lambda o, tm: oracle_predict_method(o, o_models[tm], out, method, use, tm)  # noqa: E731
                kwargs = {} if use == list(X) and method == "predict" else {"X": use, "method": method}
                self.apply(side, lambda t: t.hippo.predict(model, out=out, **kwargs), oracle_step)
        self.outputs = [c for c in self.O[False]["train"].df.columns if c.split("_")[0] in ("pred", "proba", "logp", "dec")]
        self.classes = list(getattr(model.estimator, "classes_", []))
        # group-by keys must be values that do not depend on how rows were batched: classes and tree leaves, not
        # probabilities or linear scores (a Dask partition computes them with other rounding than the whole frame)
        self.discrete = "pred" in self.outputs and (bool(self.classes) or isinstance(est, DecisionTreeRegressor))

    def side_step(self) -> None:
        """A data step on one side, between ML steps: filter, merge with source b, dropna, sort."""
        draw = self.draw
        side = draw(st.sampled_from(self.sides), label="side")
        df = self.O[False][side].df
        nums = kinds([df])["num"]
        step = draw(st.sampled_from(["filter", "merge_b", "dropna", "sort"]), label="side step kind")
        if step == "merge_b":
            if "k" in df.columns and "w" not in df.columns and pd.api.types.is_integer_dtype(df["k"].dtype):
                how = draw(st.sampled_from(["inner", "left", "outer", "right"]), label="how")
                tb, ob = self.b
                self.apply(side, lambda t: t.hippo.merge(tb, on="k", how=how), lambda o, tm: o.merge(ob, how=how, on=["k"]))
            return
        if not nums:
            return
        c = draw(st.sampled_from(nums), label="column")
        if step == "filter":
            pred = lambda p, c=c: p[c] > 0  # noqa: E731
            self.apply(side, lambda t: t.hippo.filter(pred), lambda o, tm: o.filter(pred))
        elif step == "dropna":
            self.apply(side, lambda t: t.hippo.dropna(subset=[c]), lambda o, tm: o.dropna([c]))
        else:
            self.apply(side, lambda t: t.hippo.sort_values(c), lambda o, tm: o.sort_values(c))

    # ------------------------------------------------------------ after the ML part
    def result(self):
        draw = self.draw
        choices = ["train"] + (["test", "concat", "concat"] if "test" in self.sides else [])
        which = draw(st.sampled_from(choices), label="result")
        if which == "concat":
            t = hippo.concat([self.H["train"], self.H["test"]], ignore_index=True)
            o = {tm: OracleFrame.concat([self.O[tm]["train"], self.O[tm]["test"]]) for tm in (False, True)}
        else:
            t, o = self.H[which], {tm: self.O[tm][which] for tm in (False, True)}
        outputs = getattr(self, "outputs", [])
        for step in draw(st.lists(st.sampled_from(["filter", "group", "merge_back", "assign"]), max_size=2), label="after"):
            cols = list(o[False].df.columns)
            out = ("pred" if "pred" in outputs else outputs[0]) if outputs and outputs[0] in cols else None
            if step == "filter" and out:
                if out == "pred" and self.classes:
                    pred = lambda p, v=self.classes[0]: p["pred"] == v  # noqa: E731
                else:
                    pred = lambda p, c=out: p[c] > 0  # noqa: E731
                t, o = t.hippo.filter(pred), {tm: o[tm].filter(pred) for tm in o}
            elif step in ("group", "merge_back") and out == "pred" and getattr(self, "discrete", False) and "post_n" not in cols:
                others = [c for c in kinds([o[False].df])["num"] if c != out]
                named = {"post_n": (out, "size")}
                if others:
                    named["post_m"] = (others[0], "max")
                tg, og = t.hippo.groupby(out).agg(**named), {tm: o[tm].groupby_agg([out], named) for tm in o}
                if step == "group":
                    t, o = tg, og
                else:
                    how = draw(st.sampled_from(["inner", "left", "outer", "right"]), label="how")
                    t, o = t.hippo.merge(tg, on=out, how=how), {tm: o[tm].merge(og[tm], how=how, on=[out]) for tm in o}
            elif step == "assign" and "post_a" not in cols:
                nums = [c for c in kinds([o[False].df])["num"]  # numbers in hippo's dtypes too (an empty
                        if pd.api.types.is_numeric_dtype(t.dtypes[c])]  # oracle frame has float for everything)
                if nums:
                    c = nums[-1]
                    fn = lambda p, c=c: p[c] * 2 + 1  # noqa: E731
                    t, o = t.hippo.assign(post_a=fn), {tm: o[tm].assign("post_a", fn, [c]) for tm in o}
        return t, o


def run_example(data, a: pd.DataFrame, b: pd.DataFrame, prep: list, backend: Backend) -> None:
    draw = data.draw
    run = Run(draw, backend)
    # test_random_pipelines.run_pipeline, keeping source b for merges later on
    t, o = backend.to_frame(a).hippo.source("a"), OracleFrame.source(a, "a")
    run.b = (backend.to_frame(b).hippo.source("b"), OracleFrame.source(b, "b"))
    ctx = {"b": run.b, "row_order_defined": True}
    for step, how in prep:
        t, o = apply_step(step, how, t, o, ctx)
        if backend.is_dask and step in REORDERING:
            ctx["row_order_defined"] = False
    cols = list(o.df.columns)
    if draw(chance(0.85), label="split"):
        test_size = draw(st.sampled_from([0.2, 0.3, 0.5]), label="test_size")
        seed = draw(st.integers(0, 2**31), label="split seed")
        by = draw(st.one_of(st.none(), st.sampled_from(cols)), label="split by")
        tr, te = t.hippo.split(test_size=test_size, seed=seed, by=by)
        otr, ote = _split_oracle(o, cols if by is None else [by], test_size, seed)
        run.H = {"train": tr, "test": te}
        run.O = {tm: {"train": otr, "test": ote} for tm in (False, True)}
    else:
        run.H = {"train": t}
        run.O = {tm: {"train": o} for tm in (False, True)}
    if draw(chance(0.2), label="filter train") and "x" in cols:  # a step on one side only
        pred = lambda p: p.x > 2  # noqa: E731
        run.apply("train", lambda f: f.hippo.filter(pred), lambda f, tm: f.filter(pred))
    try:
        for _ in range(draw(st.sampled_from([1, 0, 1, 2, 1, 2]), label="transformer stages")):
            run.transformer_stage()
            if draw(chance(0.3), label="side step"):
                run.side_step()
        if draw(chance(0.75), label="model"):
            run.model_stage()
    except Stop as stop:
        note(f"stopped as expected: {stop}")
        event(f"stopped: {stop}")
        return
    t, expected = run.result()
    result = t.hippo.compute(**backend.kwargs)
    event(f"compared: {len(result)} rows" if len(result) < 10 else "compared: 10+ rows")
    compare(result, expected, {"a": a, "b": b})


def _diff(got: Counter, want: Counter) -> str:
    missing, extra = want - got, got - want
    lines = [f"hippo lacks {sum(missing.values())} record(s), has {sum(extra.values())} extra"]
    for label, recs in (("oracle only", missing), ("hippo only", extra)):
        for rec in list(recs)[:3]:
            lines.append(f"  {label}: values={rec[0]} rows={sorted(rec[1])}")
            lines.append(f"     cells={[sorted(c) for c in rec[2]]}")
    return "\n".join(lines)


def compare(result: pd.DataFrame, expected: dict[bool, OracleFrame], sources: dict[str, pd.DataFrame]) -> None:
    for tm in (False, True):
        exp = expected[tm]
        assert sorted(result.columns) == sorted(exp.df.columns), (list(result.columns), list(exp.df.columns))
        assert len(result) == len(exp.df)
        got, want = hippo_records(result, tm), oracle_records(exp)
        assert got == want, f"through_models={tm}, columns {sorted(exp.df.columns)}\n" + _diff(got, want)
        check_forward(result, exp, sources, samples=3, through_models=tm)


# ---------------------------------------------------------------------- the random tests


@sklearn_quiet
@settings(max_examples=EXAMPLES, **SETTINGS)
@given(src=ml_sources(), prep=prep_steps, data=st.data())
def test_random_ml_pandas(store, src, prep, data):
    a, b = src
    run_example(data, a, b, prep, Backend("pandas"))


@sklearn_quiet
@settings(max_examples=max(1, EXAMPLES // 2), **SETTINGS)
@given(src=ml_sources(), prep=prep_steps, nparts=st.integers(1, 4), data=st.data())
def test_random_ml_dask(store, src, prep, nparts, data):
    a, b = src
    run_example(data, a, b, prep, Backend("dask", nparts, "sync"))


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


@sklearn_quiet
@settings(max_examples=max(8, EXAMPLES // 25), **SETTINGS)
@given(src=ml_sources(), prep=prep_steps, nparts=st.integers(1, 4), data=st.data())
def test_random_ml_on_worker_processes(store, client, src, prep, nparts, data):
    a, b = src
    run_example(data, a, b, prep, Backend("cluster", nparts, client))


# ---------------------------------------------------------------------- fixed cases


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_fit_on_no_rows_raises(store, backend):
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    src = Backend(backend, 2, "sync").to_frame(df).hippo.source("df")
    empty = src.hippo.filter(lambda p: p.a > 10)
    with pytest.raises(hippo.LineageError, match="no rows to fit on"):
        empty.hippo.fit(StandardScaler(), X=["a"], **Backend(backend, 2, "sync").kwargs)
    with pytest.raises(hippo.LineageError, match="no rows to fit on"):
        empty.hippo.fit(LogisticRegression(), X=["a"], y="y", **Backend(backend, 2, "sync").kwargs)


def _expect(result: pd.DataFrame, build: Callable[[bool], OracleFrame], sources: dict[str, pd.DataFrame]) -> None:
    compare(result, {tm: build(tm) for tm in (False, True)}, sources)




# Regression tests: hippo bugs the generator above found, each as its minimal reproducer checked against the
# oracle (all fixed). What the generator still steers around is scikit-learn's own partial_fit of scalers
# (asked for with incremental=True), see Run.fit.


@pytest.mark.parametrize("estimator", [GaussianNB(), SGDClassifier(random_state=0), StandardScaler()],
                         ids=["GaussianNB", "SGDClassifier", "StandardScaler"])
def test_partial_fit_with_an_empty_partition(store, estimator):
    """Was: partial_fit called on the empty partition too, and scikit-learn refusing 0 samples."""
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    keep = lambda p: p.a > 2.5  # noqa: E731  - partition 0 (rows 0, 1) is left empty
    train = dd.from_pandas(df, npartitions=2, sort=False).hippo.source("df").hippo.filter(keep)
    y = None if isinstance(estimator, StandardScaler) else "y"
    model = train.hippo.fit(estimator, X=["a"], y=y, incremental=True, scheduler="sync")
    assert model.fit_mode == "partial_fit"
    apply = (lambda t: t.hippo.transform(model)) if y is None else (lambda t: t.hippo.predict(model, out="pred"))
    result = apply(train).hippo.compute(scheduler="sync")

    def build(tm: bool) -> OracleFrame:
        o = OracleFrame.source(df, "df").filter(keep)
        om = oracle_fit(o, None, ["a"], y, fitted=model.estimator)
        return oracle_transform(o, om, tm, deps={"a": {"a"}}) if y is None else oracle_predict(o, om, "pred", tm)

    _expect(result, build, {"df": df})


def test_column_transformer_without_outputs(store):
    """Was: AttributeError 'output_indices_' (scikit-learn sets none when every block is 'drop')."""
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 7.0]})
    src = df.hippo.source("df")
    model = src.hippo.fit(ColumnTransformer([("gone", "drop", ["a"])]), X=["a"])
    result = src.hippo.transform(model).hippo.compute()  # column a consumed, b passes through
    assert list(result.columns) == ["b"]

    def build(tm: bool) -> OracleFrame:
        o = OracleFrame.source(df, "df")
        return oracle_transform(o, oracle_fit(o, None, ["a"], fitted=model.estimator), tm, deps={})

    _expect(result, build, {"df": df})


@pytest.mark.parametrize("estimator", [DecisionTreeClassifier(random_state=0), GaussianNB()], ids=["tree", "gnb"])
def test_predict_proba_of_one_class(store, estimator):
    """Was: the one column named ``out``, not ``out_<class>`` as the predict docstring says."""
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [1, 1, 1]})
    src = df.hippo.source("df")
    model = src.hippo.fit(estimator, X=["a"], y="y")
    result = src.hippo.predict(model, out="p", method="predict_proba").hippo.compute()
    assert list(result.columns) == ["a", "y", "p_1"]

    def build(tm: bool) -> OracleFrame:
        o = OracleFrame.source(df, "df")
        return oracle_predict_method(o, oracle_fit(o, None, ["a"], "y", fitted=model.estimator), "p", "predict_proba",
                                     ["a"], tm)

    _expect(result, build, {"df": df})


@pytest.mark.parametrize("other", ["missingindicator_a", "missingindicator_q"])
def test_input_named_like_a_missing_indicator(store, other):
    """Was: a scaler's input ``missingindicator_a`` traced to column ``a`` (and with no ``q``, every output to
    every input)."""
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
    src = df.hippo.source("df").hippo.rename({"b": other})
    model = src.hippo.fit(StandardScaler(), X=["a", other])
    result = src.hippo.transform(model).hippo.compute()

    def build(tm: bool) -> OracleFrame:
        o = OracleFrame.source(df, "df").rename({"b": other})
        deps = oracle_column_map(model.estimator, Spec(model.estimator, ["a", other]), [o.df], o.df)
        assert deps == {"a": {"a"}, other: {other}}
        return oracle_transform(o, oracle_fit(o, None, ["a", other], fitted=model.estimator), tm, deps=deps)

    _expect(result, build, {"df": df})


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_transform_making_string_columns(store, backend):
    """Was (since 31e52b1): np.array([], dtype=StringDtype) failed for the empty meta of str outputs."""
    df = pd.DataFrame({"s": ["p", None, "p", "q"], "a": [1.0, 2.0, 3.0, 4.0]})
    kwargs = Backend(backend, 2, "sync").kwargs
    src = Backend(backend, 2, "sync").to_frame(df).hippo.source("df")
    model = src.hippo.fit(SimpleImputer(strategy="most_frequent"), X=["s"], **kwargs)
    result = src.hippo.transform(model).hippo.compute(**kwargs)

    def build(tm: bool) -> OracleFrame:
        o = OracleFrame.source(df, "df")
        return oracle_transform(o, oracle_fit(o, None, ["s"], fitted=model.estimator), tm, deps={"s": {"s"}})

    _expect(result, build, {"df": df})


@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler()], ids=["StandardScaler", "MinMaxScaler"])
def test_scaler_on_dask_with_an_all_missing_partition(store, scaler):
    """Was: on Dask every estimator with partial_fit was fitted a partition at a time by default, and a
    scaler's partial_fit on a partition whose column is all missing made NaN statistics (every value
    NaN). Transformers are now fitted on the gathered columns by default, like the pandas fit."""
    df = pd.DataFrame({"y": [NAN, NAN, 1.0, 2.0, 5.0], "k": [0, 1, 2, 3, 4]})
    keep = lambda p: p.k != 2  # noqa: E731  - partition 0 (rows 0-2) keeps only missing y
    src = dd.from_pandas(df, npartitions=2, sort=False).hippo.source("df").hippo.filter(keep)
    model = src.hippo.fit(scaler, X=["y"], scheduler="sync")
    assert model.fit_mode == "fit"
    result = src.hippo.transform(model).hippo.compute(scheduler="sync")
    one_call = clone(scaler).fit(df[df.k != 2][["y"]])  # what fitting the same rows at once gives

    def build(tm: bool) -> OracleFrame:
        o = OracleFrame.source(df, "df").filter(keep)
        return oracle_transform(o, oracle_fit(o, None, ["y"], fitted=one_call), tm, deps={"y": {"y"}})

    _expect(result, build, {"df": df})
