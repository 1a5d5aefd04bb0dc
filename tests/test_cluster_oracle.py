"""The classic healthcare pipeline and random pipelines on a LocalCluster of worker processes, against the oracle."""

from __future__ import annotations

import sys

import cloudpickle
import dask
import dask.dataframe as dd
import pytest
from hypothesis import given, settings

import test_random_pipelines
from hippo_dask import examples
from oracle import check_forward, compare_sampled, hippo_records, oracle_records
from test_classic_pipelines import oracle_adult, oracle_compas, oracle_healthcare
from test_random_pipelines import SETTINGS, run_pipeline, source_frames, step_lists

# Worker processes cannot import the test modules: ship their functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(test_random_pipelines)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


def test_healthcare_on_worker_processes(store, client):
    patients, histories = examples.load_healthcare()
    with dask.config.set({"dataframe.convert-string": False}):
        pipeline = examples.healthcare(dd.from_pandas(patients, npartitions=4, sort=False),
                                       dd.from_pandas(histories, npartitions=3, sort=False))
        result = pipeline.hippo.compute(scheduler=client)
    expected = oracle_healthcare(patients, histories)
    compare_sampled(result, expected, sample=15)
    check_forward(result, expected, {"patients": patients, "histories": histories}, samples=3)


def test_compas_and_adult_on_worker_processes(store, client, shared_data):
    import pandas as pd

    compas = pd.read_csv(shared_data / "compas" / "compas_train.csv", na_values="?", index_col=0)
    adult = pd.read_csv(shared_data / "adult" / "adult_test.csv", na_values="?", index_col=0)
    with dask.config.set({"dataframe.convert-string": False}):
        got_compas = examples.compas(dd.from_pandas(compas, npartitions=4, sort=False)).hippo.compute(scheduler=client)
        got_adult = examples.adult(dd.from_pandas(adult, npartitions=4, sort=False)).hippo.compute(scheduler=client)
    compare_sampled(got_compas, oracle_compas(compas), sample=10)
    check_forward(got_compas, oracle_compas(compas), {"compas": compas[examples.COMPAS_COLUMNS]}, samples=2)
    compare_sampled(got_adult, oracle_adult(adult), sample=8)


@settings(max_examples=8, **SETTINGS)
@given(frames=source_frames(), steps=step_lists)
def test_random_pipelines_on_worker_processes(store, client, frames, steps):
    a, b = frames
    t, o = run_pipeline(a, b, steps, lambda f: dd.from_pandas(f, npartitions=2, sort=False), dask_order=True)
    result = t.hippo.compute(scheduler=client)
    assert hippo_records(result) == oracle_records(o)
    check_forward(result, o, {"a": a, "b": b}, samples=2)


def test_sort_between_shuffles_on_worker_processes(store, client):
    """A sort whose boundaries Dask computes while optimizing, after a p2p merge: no hang, right lineage."""
    import numpy as np
    import pandas as pd

    from oracle import OracleFrame

    a = pd.DataFrame({"k": np.arange(600) % 25, "x": np.arange(600)[::-1]})
    b = pd.DataFrame({"k": np.arange(25), "w": np.arange(25) * 2})
    with dask.config.set({"dataframe.shuffle.method": "p2p"}):
        ta = dd.from_pandas(a, npartitions=4).hippo.source("a")
        tb = dd.from_pandas(b, npartitions=3).hippo.source("b")
        t = ta.hippo.merge(tb, on="k").hippo.sort_values("x").hippo.groupby("k").agg(s=("w", "sum"), n=("x", "size"))
        result = t.hippo.compute(scheduler=client)
    expected = OracleFrame.source(a, "a").merge(OracleFrame.source(b, "b"), "inner", ["k"]).groupby_agg(
        ["k"], {"s": ("w", "sum"), "n": ("x", "size")})
    assert hippo_records(result) == oracle_records(expected)


# The wide generator on worker processes: the same pipelines, computed by a LocalCluster,
# must match the oracle (and so pandas and the sync scheduler) exactly.
import test_derived  # noqa: E402
import test_random_wide  # noqa: E402

cloudpickle.register_pickle_by_value(test_random_wide)


@settings(max_examples=12, **test_random_wide.SETTINGS)
@given(src=test_random_wide.sources(), steps=test_random_wide.steps_of(test_random_wide.STEPS, max_size=4),
       nparts=test_random_wide.st.integers(1, 4))
def test_wide_pipelines_on_worker_processes(store, client, src, steps, nparts):
    kind, a, b = src
    t, o, _ = test_random_wide.build(kind, a, b, steps, nparts)
    test_random_wide._check_exact(t.hippo.compute(scheduler=client), o, a, b)


@pytest.mark.parametrize("fname", sorted(test_random_wide.DECLARED))
def test_declared_lineage_on_worker_processes(store, client, fname):
    import numpy as np
    import pandas as pd

    from oracle import OracleFrame

    rng = np.random.default_rng(3)
    a = pd.DataFrame({"g": rng.integers(0, 4, 40), "x": rng.integers(0, 9, 40), "y": rng.normal(size=40).round(2),
                      "s": rng.choice(["p", "q"], 40)})
    a.loc[[2, 9, 33], "y"] = np.nan
    func, reads, decl = test_random_wide.DECLARED[fname]
    t = dd.from_pandas(a, npartitions=3, sort=False).hippo.source("a").hippo.filter(lambda p: p.x > 1)
    t = t.hippo.assign(z=func, lineage=test_random_wide._declaration(reads, decl))
    t = t.hippo.groupby("g").transform(tz=("x", "sum"))
    o = OracleFrame.source(a, "a", npartitions=3).filter(lambda p: p.x > 1)
    o = test_random_wide._declared_oracle(o, func, reads, decl, True).groupby_transform(["g"], "tz", "x", "sum", True)
    test_random_wide._check_exact(t.hippo.compute(scheduler=client), o, a, a.iloc[:0])


@settings(max_examples=10, **test_random_wide.SETTINGS)
@given(src=test_random_wide.sources(kinds=("int", "int", "bigint", "str")),
       steps=test_random_wide.steps_of(test_random_wide.STEPS, max_size=4), nparts=test_random_wide.st.integers(1, 3))
def test_wide_pipelines_over_parquet_on_worker_processes(store, client, tmp_path_factory, src, steps, nparts):
    """The same over parquet sources: int-key group-bys derive their ids from the files (workers
    check every fragment); the driver re-reads the files to answer. Against the oracle."""
    kind, a, b = src
    inputs = test_derived._file_inputs(tmp_path_factory.mktemp("files"), a, b, nparts)
    t, o, _ = test_random_wide.build(kind, a, b, steps, nparts, inputs=inputs, sourced=True)
    test_random_wide._check_exact(t.hippo.compute(scheduler=client), o, a, b)
