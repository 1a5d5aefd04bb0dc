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
