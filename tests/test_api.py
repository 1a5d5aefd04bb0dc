"""The public API: hidden bookkeeping, column-read inference, store, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo

BACKENDS = ["pandas", "dask"]


def frame(backend: str, df: pd.DataFrame):
    return df if backend == "pandas" else dd.from_pandas(df, npartitions=2, sort=False)


def compute(t, backend: str) -> pd.DataFrame:
    return t.hippo.compute(**({} if backend == "pandas" else {"scheduler": "sync"}))


@pytest.fixture
def people():
    return pd.DataFrame({"name": ["ann", "bob", "cy", "dee"], "age": [31, 45, 27, 60], "city": ["a", "b", "a", "c"]})


# ---------------------------------------------------------------------- bookkeeping stays hidden


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_functions_and_results_never_see_hidden_columns(store, people, backend):
    seen: list[list[str]] = []

    def spy(p):
        seen.append(list(p.columns))
        return p.assign(old=p.age > 40)

    t = frame(backend, people).hippo.source("people")
    assert list(t.columns) == list(people.columns)
    assert t.hippo.is_tracked and not frame(backend, people).hippo.is_tracked
    t = t.hippo.map(spy, reads=["age"], writes=["old"]).hippo.filter(lambda p: seen.append(list(p.columns)) or p.age > 0)
    result = compute(t, backend)
    assert list(result.columns) == ["name", "age", "city", "old"]
    assert seen and all(not any(c.startswith("__hippo") for c in cols) for cols in seen)


def test_user_frames_are_not_mutated(store, people):
    before = people.copy()
    t = people.hippo.source("people").hippo.assign(x=lambda p: p.age * 2).hippo.rename({"city": "town"})
    compute(t, "pandas")
    pd.testing.assert_frame_equal(people, before)


# ---------------------------------------------------------------------- column reads


@pytest.mark.parametrize("backend", BACKENDS)
def test_assign_reads_are_inferred(store, people, backend):
    t = frame(backend, people).hippo.source("people").hippo.assign(older=lambda p: p["age"] + 1, tag=lambda p: p.city.str.upper())
    lin = compute(t, backend).hippo.lineage
    assert set(lin.backward(rows=[0], columns=["older"])["people"].cells.column) == {"age"}
    assert set(lin.backward(rows=[0], columns=["tag"])["people"].cells.column) == {"city"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsure_inference_falls_back_to_all_columns(store, people, backend):
    # .apply(axis=1) may read any column: lineage must not claim fewer
    t = frame(backend, people).hippo.source("people").hippo.assign(n=lambda p: p.apply(lambda r: len(str(r["name"])), axis=1))
    lin = compute(t, backend).hippo.lineage
    assert set(lin.backward(rows=[1], columns=["n"])["people"].cells.column) == {"name", "age", "city"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_reads_and_writes(store, people, backend):
    def add_decade(p):
        p = p.copy()
        p["decade"] = p["age"] // 10
        return p

    t = frame(backend, people).hippo.source("people")
    inferred = compute(t.hippo.map(add_decade), backend).hippo.lineage
    assert set(inferred.backward(rows=[2], columns=["decade"])["people"].cells.column) == {"age"}
    assert set(inferred.backward(rows=[2], columns=["name"])["people"].cells.column) == {"name"}
    declared = compute(t.hippo.map(add_decade, reads=["age", "city"], writes=["decade"]), backend).hippo.lineage
    assert set(declared.backward(rows=[2], columns=["decade"])["people"].cells.column) == {"age", "city"}


def test_map_that_changes_an_undeclared_column_is_an_error_on_dask(store, people):
    def sneaky(p):
        p = p.copy()
        p["age"] = p["age"] + 1
        p["x"] = 1
        return p

    t = frame("dask", people).hippo.source("people")
    with pytest.raises(hippo.LineageError, match="not in writes"):  # at build (meta) or at compute
        compute(t.hippo.map(sneaky, writes=["x"]), "dask")

    def sneaky_on_real_data(p):  # the sample partition passes; real partitions do not
        p = p.copy()
        p["x"] = 1
        p.loc[p["age"] > 40, "age"] = 0
        return p

    lazy = t.hippo.map(sneaky_on_real_data, writes=["x"], meta={"name": "str", "age": "int64", "city": "str", "x": "int64"})
    with pytest.raises(hippo.LineageError, match="not in writes"):
        compute(lazy, "dask")


# ---------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_that_changes_rows_points_to_filter_or_flatmap(store, people, backend):
    t = frame(backend, people).hippo.source("people")
    with pytest.raises(hippo.LineageError, match="filter.*flatmap"):
        compute(t.hippo.map(lambda p: p[p.age > 30], writes=[]), backend)
    with pytest.raises(hippo.LineageError, match="order"):
        compute(t.hippo.map(lambda p: p.sort_values("age", ascending=False), writes=[]), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_columns(store, people, backend):
    t = frame(backend, people).hippo.source("people")
    for op in (lambda: t.hippo.select(["nope"]), lambda: t.hippo.groupby("nope").agg(n=("age", "sum")),
               lambda: t.hippo.groupby("city").agg(n=("nope", "sum")), lambda: t.hippo.merge(t, on="nope"),
               lambda: t.hippo.sort_values("nope"), lambda: t.hippo.dropna(subset=["nope"]), lambda: t.hippo.drop("nope")):
        with pytest.raises(hippo.ColumnError, match="nope") as info:
            op()
        assert isinstance(info.value, KeyError) and "the frame has" in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_untracked_frames(store, people, backend):
    t = frame(backend, people).hippo.source("people")
    plain = frame(backend, people)
    with pytest.raises(hippo.UntrackedFrameError, match=r"\.hippo\.source"):
        t.hippo.merge(plain, on="name")
    with pytest.raises(hippo.UntrackedFrameError):
        hippo.concat([t, plain])
    with pytest.raises(hippo.UntrackedFrameError):
        plain.hippo.filter(lambda p: p.age > 1)
    with pytest.raises(hippo.UntrackedFrameError, match="compute"):
        people.hippo.lineage


def test_bad_arguments(store, people):
    t = people.hippo.source("people")
    with pytest.raises(hippo.LineageError, match="callable"):
        t.hippo.filter("age > 3")
    with pytest.raises(hippo.LineageError, match="named aggregation"):
        t.hippo.groupby("city").agg(n="age")
    with pytest.raises(hippo.LineageError, match="unknown aggregation"):
        t.hippo.groupby("city").agg(n=("age", "mode"))
    with pytest.raises(hippo.LineageError, match="callable"):
        t.hippo.assign(x=people.age)
    with pytest.raises(hippo.LineageError, match="how"):
        t.hippo.merge(t, on="name", how="cross")
    with pytest.raises(hippo.ColumnError, match="reserved"):
        people.rename(columns={"age": "__hippo_x"}).hippo.source("p")


def test_query_errors(store, people):
    lin = compute(people.hippo.source("people"), "pandas").hippo.lineage
    with pytest.raises(hippo.QueryError, match=r"valid: 0 to 3"):
        lin.backward(rows=[4])
    with pytest.raises(hippo.QueryError, match="out of range"):
        lin.forward("people", rows=[-1])
    with pytest.raises(hippo.QueryError, match="people"):
        lin.forward("nobody", rows=[0])
    with pytest.raises(hippo.ColumnError, match="age"):
        lin.backward(rows=[0], columns=["agee"])
    assert isinstance(hippo.QueryError("x"), ValueError)


# ---------------------------------------------------------------------- store


def test_store_runs_and_reopen(store, people):
    first = compute(people.hippo.source("people"), "pandas").hippo.lineage
    second = compute(people.hippo.source("people").hippo.filter(lambda p: p.age > 30), "pandas").hippo.lineage
    runs = store.runs()
    assert [r.run_id for r in runs] == [first.run_id, second.run_id] and all(r.complete for r in runs)
    again = hippo.open(store.url, first.run_id)
    assert again.nrows == 4 and again.backward(rows=[3])["people"].rows.tolist() == [3]
    assert hippo.open(store).run_id == second.run_id  # newest complete run
    with pytest.raises(hippo.RunNotFoundError):
        hippo.open(store, "no-such-run")


def test_incomplete_run_never_answers(store, people):
    run_id = store.start_run()  # what a killed compute leaves behind
    assert [r.complete for r in store.runs() if r.run_id == run_id] == [False]
    with pytest.raises(hippo.IncompleteRunError, match="no manifest"):
        hippo.open(store, run_id)


def test_damaged_fragment_is_a_clear_error(store, people):
    t = people.hippo.source("people").hippo.groupby("city").agg(n=("age", "sum"))
    lin = compute(t, "pandas").hippo.lineage
    fragment = Path(store.run_dir(lin.run_id)) / lin.manifest["result"]["fragments"][0]["path"]
    data = bytearray(fragment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fragment.write_bytes(bytes(data))
    fresh = hippo.open(store, lin.run_id)
    with pytest.raises(hippo.CorruptRunError, match=fragment.name) as info:
        fresh.backward(rows=[0])
    assert isinstance(info.value, ValueError)
    # a truncated membership fragment too
    directory = Path(store.fragment_dir(lin.manifest["nodes"][-1]["id"]))
    member = next(directory.glob("*.hippo"))
    member.write_bytes(member.read_bytes()[:10])
    fragment.write_bytes(bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1 :]))
    with pytest.raises(hippo.CorruptRunError, match=member.name):
        hippo.open(store, lin.run_id).backward(rows=[0])


def test_default_store_is_env_or_dot_hippo(tmp_path, people):
    code = (
        "import pandas as pd, hippo_dask as hippo;"
        "r = pd.DataFrame({'a': [1, 2]}).hippo.source('a').hippo.compute();"
        "print(r.hippo.lineage.store.url)"
    )
    env = dict(os.environ, HIPPO_STORE=str(tmp_path / "envstore"))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "envstore")
    env.pop("HIPPO_STORE")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / ".hippo")


def test_cli(store, people):
    lin = compute(people.hippo.source("people").hippo.filter(lambda p: p.age > 30), "pandas").hippo.lineage
    run = lambda *a: subprocess.run([sys.executable, "-m", "hippo_dask", "--store", store.url, *a],  # noqa: E731
                                    capture_output=True, text=True)
    assert lin.run_id in run("runs").stdout
    out = run("backward", "latest", "0", "-c", "age")
    assert out.returncode == 0 and "people: 1 rows, 1 cells" in out.stdout
    out = run("forward", lin.run_id, "people", "1-3")
    assert out.returncode == 0 and "2 result rows" in out.stdout
    bad = run("backward", "latest", "99")
    assert bad.returncode == 2 and "out of range" in bad.stderr


def test_sample_records_its_seed_and_replays(store, people):
    t = people.hippo.source("people").hippo.sample(n=2)
    result = compute(t, "pandas")
    params = [n for n in result.hippo.lineage.manifest["nodes"] if n["op"] == "sample"][0]["params"]
    again = people.sample(n=2, random_state=params["random_state"])
    pd.testing.assert_frame_equal(result, again.reset_index(drop=True))
    rows = result.hippo.lineage.backward(rows=[0, 1])["people"].rows
    assert sorted(rows.tolist()) == sorted(people.index.get_indexer(again.index).tolist())


# ---------------------------------------------------------------------- more operations against the oracle

from oracle import OracleFrame, check_forward, hippo_records, oracle_records  # noqa: E402


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_merge_left_on_right_on_and_suffixes(store, backend, how):
    left = pd.DataFrame({"id": [1, 2, 3, 3], "v": [10, 20, 30, 31], "w": ["a", "b", "c", "d"]})
    right = pd.DataFrame({"key": [3, 1, 4], "v": [7, 8, 9]})
    t = frame(backend, left).hippo.source("l").hippo.merge(
        frame(backend, right).hippo.source("r"), how=how, left_on="id", right_on="key", suffixes=("_l", "_r"))
    result = compute(t, backend)
    expected = OracleFrame.source(left, "l").merge(OracleFrame.source(right, "r"), how, left_on=["id"], right_on=["key"], suffixes=("_l", "_r"))
    assert sorted(result.columns) == sorted(expected.df.columns) == sorted(["id", "v_l", "w", "key", "v_r"])
    assert hippo_records(result) == oracle_records(expected)
    check_forward(result, expected, {"l": left, "r": right})


@pytest.mark.parametrize("backend", BACKENDS)
def test_concat_of_different_sources(store, backend):
    a = pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
    b = pd.DataFrame({"x": [3], "z": [0.5]})
    t = hippo.concat([frame(backend, a).hippo.source("a"), frame(backend, b).hippo.source("b")], ignore_index=True)
    result = compute(t, backend)
    expected = OracleFrame.concat([OracleFrame.source(a, "a"), OracleFrame.source(b, "b")])
    assert hippo_records(result) == oracle_records(expected)
    check_forward(result, expected, {"a": a, "b": b})


def _repeat_by_n(row):
    return [{"name": row["name"], "copy": i} for i in range(row["n"])]


@pytest.mark.parametrize("backend", BACKENDS)
def test_flatmap(store, backend):
    df = pd.DataFrame({"name": ["a", "b", "c"], "n": [2, 0, 1], "other": [1.0, 2.0, 3.0]})
    t = frame(backend, df).hippo.source("s").hippo.flatmap(_repeat_by_n, columns=["name", "copy"], reads=["n"])
    result = compute(t, backend)
    assert len(result) == 3 and list(result.columns) == ["name", "copy"]
    expected = OracleFrame.source(df, "s").flatmap(_repeat_by_n, ["name", "copy"], reads=["n"])
    assert hippo_records(result) == oracle_records(expected)
    check_forward(result, expected, {"s": df})


@pytest.mark.parametrize("backend", BACKENDS)
def test_astype_and_drop_and_head(store, backend, people):
    t = frame(backend, people).hippo.source("p").hippo.astype({"age": "float64"}).hippo.drop("city").hippo.head(3)
    result = compute(t, backend)
    expected = OracleFrame.source(people, "p").drop(["city"]).head(3)
    assert result["age"].dtype == np.float64
    assert hippo_records(result) == oracle_records(expected.with_values(expected.df.astype({"age": "float64"})))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fsspec_memory_store(backend, people):
    store = hippo.set_store("memory://hippo-test-store")
    t = frame(backend, people).hippo.source("p").hippo.groupby("city").agg(n=("age", "sum"))
    lin = compute(t, backend).hippo.lineage
    assert lin.store.url == "memory://hippo-test-store"
    reopened = hippo.open("memory://hippo-test-store", lin.run_id)
    row = int(np.flatnonzero(compute(t, backend)["city"].to_numpy() == "a")[0])
    assert sorted(reopened.backward(rows=[row], columns=["n"])["p"].rows.tolist()) == [0, 2]
    assert any(r.run_id == lin.run_id and r.complete for r in store.runs())


@pytest.mark.timeout(180)
def test_main_job(tmp_path):
    """The README's main job: healthcare on a LocalCluster, traced and committed."""
    import io

    from hippo_dask import demo

    out = io.StringIO()
    run_id = demo.run(store=str(tmp_path / "demo"), out=out)
    text = out.getvalue()
    assert "== backward" in text and "== forward" in text and run_id in text
    lin = hippo.open(str(tmp_path / "demo"), run_id)
    assert lin.nrows == 290 and sorted(lin.sources) == ["histories", "patients"]


def test_two_sources_with_one_name(store, people):
    a = people.hippo.source("p")
    b = people.assign(age=people.age + 1).hippo.source("p")
    with pytest.raises(hippo.LineageError, match="unique name"):
        a.hippo.merge(b, on="name").hippo.compute()
    assert store.runs() == []  # refused before anything was written


def test_a_result_saves_to_parquet_and_pickles(store, tmp_path):
    """pandas writes attrs (where the lineage rides) into parquet as JSON: saving a result or a tracked
    frame works (it raised TypeError), the file read back says to reopen the run; a pickle keeps the lineage."""
    import pickle

    src = pd.DataFrame({"x": range(6)}).hippo.source("s")
    res = src.hippo.filter(lambda p: p.x > 1).hippo.compute()
    res.to_parquet(tmp_path / "r.parquet")
    src.to_parquet(tmp_path / "s.parquet")
    back = pd.read_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(back, res)
    with pytest.raises(hippo.UntrackedFrameError, match="hippo.open"):
        back.hippo.lineage
    again = pickle.loads(pickle.dumps(res))
    assert again.hippo.lineage.backward(rows=[0])["s"].rows.tolist() == [2]
