"""The classic ML-preprocessing pipelines, written with ``.hippo``.

They come from the mlinspect project's examples (Apache-2.0) over the
healthcare, COMPAS and adult datasets. The healthcare data (887 patients)
ships inside this package (``hippo_dask/data/healthcare``, copied from
mlinspect's example data); COMPAS and adult are read from a path you give.
Each function takes the raw frames (pandas or Dask) and returns the tracked,
not yet computed, output frame.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd

HEALTHCARE_COLUMNS = ["smoker", "last_name", "county", "num_children", "race", "income", "label"]
COMPAS_COLUMNS = [
    "sex", "dob", "age", "c_charge_degree", "race", "score_text", "priors_count",
    "days_b_screening_arrest", "decile_score", "is_recid", "two_year_recid", "c_jail_in", "c_jail_out",
]


def load_healthcare() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shipped healthcare data: (patients, histories)."""
    base = resources.files("hippo_dask") / "data" / "healthcare"
    with resources.as_file(base / "patients.csv") as p, resources.as_file(base / "histories.csv") as h:
        return pd.read_csv(p, na_values="?"), pd.read_csv(h, na_values="?")


def healthcare(patients: Any, histories: Any) -> Any:
    """Merge patients with histories, label high-complication patients, keep two counties.

    Examples
    --------
    >>> import hippo_dask as hippo, tempfile
    >>> from hippo_dask.examples import healthcare, load_healthcare
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> patients, histories = load_healthcare()
    >>> result = healthcare(patients, histories).hippo.compute()
    >>> sorted(result.hippo.lineage.sources)
    ['histories', 'patients']
    """
    patients = patients.hippo.source("patients")
    histories = histories.hippo.source("histories")
    data = patients.hippo.merge(histories, on="ssn")
    complications = data.hippo.groupby("age_group").agg(mean_complications=("complications", "mean"))
    data = data.hippo.merge(complications, on="age_group")
    data = data.hippo.assign(label=lambda p: p["complications"] > 1.2 * p["mean_complications"])
    data = data.hippo.select(HEALTHCARE_COLUMNS)
    return data.hippo.filter(lambda p: p["county"].isin(["county2", "county3"]))


def compas(raw: Any) -> Any:
    """Select the COMPAS columns, apply ProPublica's filters, merge score levels."""
    data = raw.hippo.source("compas").hippo.select(COMPAS_COLUMNS)
    data = data.hippo.filter(lambda p: p["days_b_screening_arrest"] <= 30)
    data = data.hippo.filter(lambda p: p["days_b_screening_arrest"] >= -30)
    data = data.hippo.filter(lambda p: p["is_recid"] != -1)
    data = data.hippo.filter(lambda p: p["c_charge_degree"] != "O")
    data = data.hippo.filter(lambda p: p["score_text"] != "N/A")
    return data.hippo.replace("Medium", "Low")


def adult(raw: Any) -> Any:
    """Drop incomplete rows and binarise the income label."""
    data = raw.hippo.source("adult").hippo.dropna()
    return data.hippo.assign(label=lambda p: p["income-per-year"] == ">50K")


# --------------------------------------------------------------------------
# the same pipelines with their ML part (scikit-learn): impute, encode, scale or
# discretize, fit a classifier on a seeded train split, predict the test split.
# Fitting runs when the function is called (it needs the data); the predictions
# are returned as a tracked frame, computed by the caller.

HEALTHCARE_NUMERIC = ["num_children", "income"]
HEALTHCARE_CATEGORICAL = ["smoker", "county", "race"]


def _impute_and_onehot() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    return Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                     ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])


def _train_and_predict(data: Any, featurize: Any, X: list[str], label: str, classifier: Any, seed: int,
                       compute_kwargs: dict[str, Any]) -> Any:
    train, test = data.hippo.split(test_size=0.25, seed=seed)
    features = train.hippo.fit(featurize, X=X, **compute_kwargs)
    model = train.hippo.transform(features).hippo.fit(classifier, X=list(features.features), y=label, **compute_kwargs)
    return test.hippo.transform(features).hippo.predict(model, out="prediction")


def healthcare_ml(patients: Any, histories: Any, seed: int = 0, **compute_kwargs: Any) -> Any:
    """:func:`healthcare`, then impute + one-hot / impute + scale, and a logistic regression.

    Examples
    --------
    >>> import hippo_dask as hippo, tempfile
    >>> from hippo_dask.examples import healthcare_ml, load_healthcare
    >>> _ = hippo.set_store(tempfile.mkdtemp())
    >>> result = healthcare_ml(*load_healthcare()).hippo.compute()
    >>> trace = result.hippo.lineage.backward(rows=[0], columns=["prediction"])
    >>> sorted(set(trace["patients"].cells.column)), sorted(set(trace["histories"].cells.column))
    (['county', 'income', 'num_children', 'race'], ['smoker'])
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    featurize = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]), HEALTHCARE_NUMERIC),
        ("categorical", _impute_and_onehot(), HEALTHCARE_CATEGORICAL),
    ])
    data = healthcare(patients, histories)
    return _train_and_predict(data, featurize, HEALTHCARE_NUMERIC + HEALTHCARE_CATEGORICAL, "label",
                              LogisticRegression(), seed, compute_kwargs)


def compas_ml(raw: Any, seed: int = 0, **compute_kwargs: Any) -> Any:
    """:func:`compas`, then one-hot of ``is_recid``, impute + 4 uniform bins of ``age``, a logistic regression
    predicting a high risk score."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import KBinsDiscretizer

    featurize = ColumnTransformer([
        ("recid", _impute_and_onehot(), ["is_recid"]),
        ("age", Pipeline([("impute", SimpleImputer(strategy="mean")),
                          ("bins", KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="uniform"))]), ["age"]),
        ("priors", SimpleImputer(strategy="median"), ["priors_count"]),
    ])
    data = compas(raw).hippo.assign(high_risk=lambda p: p["score_text"] == "High")
    return _train_and_predict(data, featurize, ["is_recid", "age", "priors_count"], "high_risk",
                              LogisticRegression(), seed, compute_kwargs)


def adult_ml(raw: Any, seed: int = 0, **compute_kwargs: Any) -> Any:
    """:func:`adult`, then one-hot of education and workclass, scaled age and hours, a decision tree."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    featurize = ColumnTransformer([
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["education", "workclass"]),
        ("numeric", StandardScaler(), ["age", "hours-per-week"]),
    ])
    data = adult(raw)
    return _train_and_predict(data, featurize, ["education", "workclass", "age", "hours-per-week"], "label",
                              DecisionTreeClassifier(max_depth=6, random_state=seed), seed, compute_kwargs)
