"""The classic pipelines (healthcare, COMPAS, adult) against the oracle, on pandas and Dask."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import pandas as pd
import pytest

from hippo_dask import examples
from oracle import OracleFrame, check_forward, compare_sampled

BACKENDS = {
    "pandas": (lambda f: f, {}),
    "dask": (lambda f: dd.from_pandas(f, npartitions=3, sort=False), {"scheduler": "sync"}),
}


def oracle_healthcare(patients, histories):
    data = OracleFrame.source(patients, "patients").merge(OracleFrame.source(histories, "histories"), "inner", ["ssn"])
    groups = data.groupby_agg(["age_group"], {"mean_complications": ("complications", "mean")})
    data = data.merge(groups, "inner", ["age_group"])
    data = data.assign("label", lambda p: p["complications"] > 1.2 * p["mean_complications"], ["complications", "mean_complications"])
    data = data.select(examples.HEALTHCARE_COLUMNS)
    return data.filter(lambda p: p["county"].isin(["county2", "county3"]))


def oracle_compas(raw):
    data = OracleFrame.source(raw, "compas").select(examples.COMPAS_COLUMNS)
    data = data.filter(lambda p: p["days_b_screening_arrest"] <= 30)
    data = data.filter(lambda p: p["days_b_screening_arrest"] >= -30)
    data = data.filter(lambda p: p["is_recid"] != -1)
    data = data.filter(lambda p: p["c_charge_degree"] != "O")
    data = data.filter(lambda p: p["score_text"] != "N/A")
    return data.with_values(data.df.replace("Medium", "Low"))


def oracle_adult(raw):
    data = OracleFrame.source(raw, "adult").dropna()
    return data.assign("label", lambda p: p["income-per-year"] == ">50K", ["income-per-year"])


@pytest.fixture(autouse=True)
def _keep_object_columns():
    """Dask turns object columns into strings (smoker: True/NaN -> "True"); the oracle is plain pandas."""
    with dask.config.set({"dataframe.convert-string": False}):
        yield


@pytest.mark.parametrize("backend", BACKENDS)
def test_healthcare(store, backend):
    to_frame, kwargs = BACKENDS[backend]
    patients, histories = examples.load_healthcare()
    result = examples.healthcare(to_frame(patients), to_frame(histories)).hippo.compute(**kwargs)
    expected = oracle_healthcare(patients, histories)
    assert len(result) == len(expected.df) > 100
    compare_sampled(result, expected, sample=20)
    check_forward(result, expected, {"patients": patients, "histories": histories}, samples=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compas(store, shared_data, backend):
    to_frame, kwargs = BACKENDS[backend]
    raw = pd.read_csv(shared_data / "compas" / "compas_train.csv", na_values="?", index_col=0)
    result = examples.compas(to_frame(raw)).hippo.compute(**kwargs)
    expected = oracle_compas(raw)
    assert len(result) == len(expected.df) > 1000
    compare_sampled(result, expected, sample=15)
    check_forward(result, expected, {"compas": raw[examples.COMPAS_COLUMNS]}, samples=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adult(store, shared_data, backend):
    to_frame, kwargs = BACKENDS[backend]
    raw = pd.read_csv(shared_data / "adult" / "adult_test.csv", na_values="?", index_col=0)
    result = examples.adult(to_frame(raw)).hippo.compute(**kwargs)
    expected = oracle_adult(raw)
    assert len(result) == len(expected.df) > 1000
    compare_sampled(result, expected, sample=10)
    check_forward(result, expected, {"adult": raw}, samples=2)
