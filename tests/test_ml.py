"""ML steps (scikit-learn) against the oracle: data lineage and model dependencies, pandas and Dask."""

from __future__ import annotations

from collections import Counter

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

import hippo_dask as hippo
from hippo_dask import partition as P
from oracle import OracleFrame, check_forward, hippo_records, oracle_fit, oracle_predict, oracle_records, oracle_transform


def _data(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(size=n) * 3 + 1, "c": rng.choice(["x", "y", "z"], n),
        "y": rng.integers(0, 2, n),
    })
    df.loc[::7, "a"] = np.nan
    return df


def _prep() -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    return ColumnTransformer([("num", numeric, ["a", "b"]),
                              ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["c"])])


def _frame(df: pd.DataFrame, kind: str):
    return df if kind == "pandas" else dd.from_pandas(df, npartitions=3, sort=False)


def _split_mask(df: pd.DataFrame, test: bool) -> np.ndarray:
    kept = P.split_partition(df.reset_index(drop=True), list(df.columns), 0.3, 5, test)
    mask = np.zeros(len(df), dtype=bool)
    mask[kept.index.to_numpy()] = True
    return mask


@pytest.mark.parametrize("kind", ["pandas", "dask"])
@pytest.mark.parametrize("through_models", [False, True])
def test_prep_then_model_matches_oracle(tmp_path, kind, through_models):
    hippo.set_store(tmp_path)
    raw = _data()
    src = _frame(raw, kind).hippo.source("raw")
    train, test = src.hippo.split(test_size=0.3, seed=5)
    prep = train.hippo.fit(_prep(), X=["a", "b", "c"])
    features = list(prep.features)
    model = train.hippo.transform(prep).hippo.fit(LogisticRegression(), X=features, y="y")
    result = test.hippo.transform(prep).hippo.predict(model, out="pred").hippo.compute(scheduler="sync")

    o = OracleFrame.source(raw, "raw")
    o_train, o_test = o.filter(lambda d: _split_mask(d, False)), o.filter(lambda d: _split_mask(d, True))
    o_prep = oracle_fit(o_train, _prep(), ["a", "b", "c"], fitted=prep.estimator)
    o_model = oracle_fit(oracle_transform(o_train, o_prep, through_models), None, features, "y", fitted=model.estimator)
    expected = oracle_predict(oracle_transform(o_test, o_prep, through_models), o_model, "pred", through_models)
    assert len(result) == len(expected.df) > 0
    assert hippo_records(result, through_models) == oracle_records(expected)
    check_forward(result, expected, {"raw": raw}, samples=5, through_models=through_models)


@pytest.mark.parametrize("estimator,per_column", [
    (KBinsDiscretizer(n_bins=3, encode="onehot-dense", strategy="uniform"), True),
    (PCA(n_components=2), False),
])
def test_transformer_column_maps(tmp_path, estimator, per_column):
    hippo.set_store(tmp_path)
    raw = _data().dropna()
    src = raw.hippo.source("raw")
    model = src.hippo.fit(estimator, X=["a", "b"])
    result = src.hippo.transform(model).hippo.compute()
    for name in model.features:
        got = set(result.hippo.lineage.backward(rows=[0], columns=[name])["raw"].cells.column)
        assert got == ({name.split("_")[0]} if per_column else {"a", "b"}), (name, got)
    o = OracleFrame.source(raw, "raw")
    expected = oracle_transform(o, oracle_fit(o, estimator, ["a", "b"], fitted=model.estimator), through_models=True)
    assert hippo_records(result, through_models=True) == oracle_records(expected)


def test_partial_fit_on_dask_records_mode_and_gathers_nothing(tmp_path):
    from sklearn.linear_model import SGDClassifier

    hippo.set_store(tmp_path)
    raw = _data(300).dropna()
    src = dd.from_pandas(raw, npartitions=4, sort=False).hippo.source("raw")
    model = src.hippo.fit(SGDClassifier(random_state=0), X=["a", "b"], y="y")
    assert model.fit_mode == "partial_fit"
    gathered = src.hippo.fit(SGDClassifier(random_state=0), X=["a", "b"], y="y", incremental=False)
    assert gathered.fit_mode == "fit"
    result = src.hippo.predict(model, out="pred").hippo.compute(scheduler="sync")
    fit_node = next(n for n in result.hippo.lineage.manifest["nodes"] if n["op"] == "fit")
    assert fit_node["params"]["fit_mode"] == "partial_fit" and "partition" in fit_node["params"]["fit_note"]
    o = OracleFrame.source(raw, "raw")
    expected = oracle_predict(o, oracle_fit(o, None, ["a", "b"], "y", fitted=model.estimator), "pred", through_models=True)
    assert hippo_records(result, through_models=True) == oracle_records(expected)


def test_ml_errors_are_clear(tmp_path):
    hippo.set_store(tmp_path)
    src = _data().hippo.source("raw")
    with pytest.raises(hippo.ColumnError, match="nope"):
        src.hippo.fit(StandardScaler(), X=["nope"])
    with pytest.raises(hippo.LineageError, match="label"):
        src.hippo.fit(LogisticRegression(), X=["a", "y"], y="y")
    with pytest.raises(hippo.LineageError, match="estimator"):
        src.hippo.fit(object(), X=["a"])
    model = src.hippo.fit(StandardScaler(), X=["b"])
    with pytest.raises(hippo.LineageError, match="no predict"):
        src.hippo.predict(model)
    with pytest.raises(hippo.LineageError, match="test_size"):
        src.hippo.split(test_size=1.5)


def test_transform_and_predict_after_explode_keep_rows_in_place(tmp_path):
    """An exploded partition repeats index labels: outputs must go by position, never by label."""
    hippo.set_store(tmp_path)
    raw = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "l": [[1, 2], [3], [4, 5, 6], [7]], "y": [0, 1, 0, 1]})
    src = raw.hippo.source("raw").hippo.explode("l").hippo.astype({"l": "float64"})
    scaler = src.hippo.fit(StandardScaler(), X=["a", "l"])
    model = src.hippo.transform(scaler).hippo.fit(LogisticRegression(), X=["a", "l"], y="y")
    result = src.hippo.transform(scaler).hippo.predict(model, out="pred").hippo.compute()
    exploded = raw.explode("l").astype({"l": "float64"})
    expected = scaler.estimator.transform(exploded[["a", "l"]])
    np.testing.assert_allclose(result[["a", "l"]].to_numpy(), expected)
    np.testing.assert_array_equal(result["pred"].to_numpy(), model.estimator.predict(result[["a", "l"]]))
    o = OracleFrame.source(raw, "raw").explode("l")
    o = o.with_values(o.df.astype({"l": "float64"}))
    o_scaler = oracle_fit(o, None, ["a", "l"], fitted=scaler.estimator)
    transformed = oracle_transform(o, o_scaler, through_models=True, values_from=o.df)
    expected = oracle_predict(transformed, oracle_fit(transformed, None, ["a", "l"], "y", fitted=model.estimator), "pred",
                              through_models=True)
    assert hippo_records(result, through_models=True) == oracle_records(expected)


def test_an_estimator_naming_two_outputs_alike_is_refused_at_fit(tmp_path):
    """Found by the random ML generator: PolynomialFeatures over "x" and "x^2" makes "x^2" twice; hippo
    failed only at transform, with a confusing shape error."""
    from sklearn.preprocessing import PolynomialFeatures

    hippo.set_store(tmp_path)
    src = pd.DataFrame({"x": [1.0, 2.0, 3.0], "x^2": [1.0, 4.0, 9.0]}).hippo.source("df")
    with pytest.raises(hippo.LineageError, match=r"names several output columns \['x\^2'"):
        src.hippo.fit(PolynomialFeatures(degree=2), X=["x", "x^2"])
