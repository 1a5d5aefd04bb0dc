"""The ``hippo`` shell command: arguments, output for people and scripts, values, gc, pipes.

Lineage answers are checked against positions worked out from the data (unique
ids in the frames), values against the frames written to the files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types

import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask import cli
from hippo_dask.errors import HippoError, StoreError

SUBCOMMANDS = ["runs", "show", "backward", "forward", "view", "replay", "debug", "explain", "without", "gc", "demo"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``hippo argv`` in this process: exit code, stdout, stderr (argparse errors exit through SystemExit)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def shell(store, *argv: str) -> subprocess.CompletedProcess:
    """``hippo --store STORE argv`` as a shell runs it."""
    return subprocess.run([sys.executable, "-m", "hippo_dask", "--store", store.url, *argv], capture_output=True,
                          text=True, timeout=300)


def inverse(p: pd.DataFrame) -> pd.Series:
    if (p["x"] == 0).any():
        raise ZeroDivisionError("x is 0")
    return 1 / p["x"]


@pytest.fixture
def files(tmp_path):
    """Events (parquet) and users (csv), each row with a unique id, so positions can be found from values."""
    rng = np.random.default_rng(7)
    events = pd.DataFrame({"eid": np.arange(100, 130), "k": rng.integers(0, 6, 30),
                           "x": rng.normal(size=30).round(3), "c": rng.choice(["u", "v"], 30)})
    events.loc[4, "x"] = np.nan
    users = pd.DataFrame({"k": np.arange(6), "w": rng.integers(0, 50, 6), "name": [f"user{i}" for i in range(6)]})
    events.to_parquet(tmp_path / "events.parquet")
    users.to_csv(tmp_path / "users.csv", index=False)
    return events, users, tmp_path / "events.parquet", tmp_path / "users.csv"


def file_run(files, dask: bool = False) -> tuple[pd.DataFrame, str]:
    """events x users on k, events with x > -0.5 kept: the result and its run id."""
    _, _, events_path, users_path = files
    events = hippo.read_parquet(str(events_path), "events", dask=dask)
    users = hippo.read_csv(str(users_path), "users", dask=dask)
    out = events.hippo.merge(users, on="k").hippo.filter(lambda p: p.x > -0.5)
    result = out.hippo.compute(scheduler="sync") if dask else out.hippo.compute()
    return result, result.hippo.lineage.run_id


def expected_sources(files, result: pd.DataFrame, row: int) -> tuple[int, int]:
    """The events and users positions behind a result row, found by its unique event id and its key."""
    events, users, _, _ = files
    return (int(np.flatnonzero(events.eid == result.eid[row])[0]), int(np.flatnonzero(users.k == result.k[row])[0]))


# ---------------------------------------------------------------------- help


def test_no_arguments_prints_help_at_once_without_importing_dask(tmp_path):
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "hippo_dask"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert out.returncode == 0 and out.stdout.startswith("usage: hippo")
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("dask", "distributed", "pandas"))
    assert "hippo_dask.cli" in imported and heavy == []
    assert elapsed < 20  # generous on a loaded machine; importing dask and a cluster take far longer
    assert not (tmp_path / ".hippo").exists()  # nothing written either


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_a_summary_and_examples(capsys, command):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    listed = {line.split()[0]: line for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert command in listed and len(listed[command].split()) > 2  # listed with a one-line summary
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and f"usage: hippo {command}" in out
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert any(line.startswith(f"  hippo {command}") for line in examples)


@pytest.mark.parametrize("command", ["backward", "forward", "without", "view"])
def test_row_ranges_are_documented(capsys, command):
    _, out, _ = run_cli(capsys, command, "--help")
    assert "3,5-9" in out and "0-based" in out and "both ends" in out


def test_demo_is_still_reachable_by_python_m(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hippo_dask", "demo", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "--workers" in out.stdout and "healthcare" in out.stdout


# ---------------------------------------------------------------------- arguments


@pytest.mark.parametrize("text, rows", [("3", [3]), ("3,5-9", [3, 5, 6, 7, 8, 9]), (" 1 , 2-3", [1, 2, 3]),
                                        ("7-7", [7]), ("0,0", [0, 0])])
def test_rows_text(text, rows):
    assert cli._positions(cli._rows(text), 10, "the result").tolist() == rows


def test_rows_beyond_the_end_are_refused_before_being_expanded(capsys, store, files):
    result, run_id = file_run(files)
    code, out, err = run_cli(capsys, "--store", store.url, "backward", run_id, f"0,2-{len(result)}")
    assert code == 2 and out == ""
    assert f"rows 2-{len(result)} are out of range: the result has {len(result)} rows" in err
    code, out, err = run_cli(capsys, "--store", store.url, "forward", run_id, "users", "1,0-4000000000,7")
    assert code == 2 and "rows 0-4000000000,7 are out of range: source 'users' has 6 rows (valid: 0 to 5)" in err


@pytest.mark.parametrize("text, named", [("1-x", "'1-x'"), ("5-3", "'5-3'"), ("1,,2", "empty"), ("-1", "'-1'"),
                                         ("two", "'two'"), ("", "empty"), ("1.5", "'1.5'")])
def test_bad_rows_exit_2_naming_the_bad_part(capsys, store, text, named):
    code, out, err = run_cli(capsys, "--store", store.url, "backward", "latest", text)
    assert code == 2 and out == ""
    assert "hippo backward: error: argument ROWS: bad rows" in err and named in err and "Traceback" not in err


def test_bad_columns_and_durations_exit_2(capsys, store):
    code, _, err = run_cli(capsys, "--store", store.url, "backward", "latest", "0", "-c", "a,,b")
    assert code == 2 and "empty column name" in err
    for text in ["3x", "2", "h", "1hour"]:
        code, _, err = run_cli(capsys, "--store", store.url, "gc", "--older-than", text)
        assert code == 2 and f"bad duration {text!r}" in err


def test_columns_comma_separated_or_repeated(capsys, store, files):
    result, run_id = file_run(files)
    events_row, users_row = expected_sources(files, result, 1)
    expected = {(events_row, "x"), (events_row, "eid"), (users_row, "w")}
    for columns in (["-c", "x,eid,w"], ["-c", "x", "-c", "eid,w"], ["-c", "x", "-c", "eid", "-c", "w"]):
        code, out, _ = run_cli(capsys, "--store", store.url, "backward", run_id, "1", *columns, "--json")
        assert code == 0
        got = json.loads(out)
        assert got["columns"] == ["x", "eid", "w"]
        cells = {(c["row"], c["column"]) for s in ("events", "users") for c in got["sources"][s]["cells"]}
        assert cells == expected


def test_store_option_before_or_after_the_subcommand(capsys, store, files, tmp_path):
    _, run_id = file_run(files)
    hippo.set_store(tmp_path / "elsewhere")  # the default store is not the one asked for
    for argv in (["--store", store.url, "runs"], ["runs", "--store", store.url],
                 ["--store", str(tmp_path / "elsewhere"), "runs", "--store", store.url],
                 ["show", "latest", "--store", store.url]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and run_id in out, argv
    code, out, _ = run_cli(capsys, "--store", store.url, "runs", "--store", str(tmp_path / "elsewhere"))
    assert code == 0 and out == ""  # the later one wins


# ---------------------------------------------------------------------- backward with values


@pytest.mark.parametrize("dask", [False, True])
def test_backward_shows_source_values_beside_positions(capsys, store, files, dask):
    events, users, _, _ = files
    result, run_id = file_run(files, dask=dask)
    rows = [0, 2, 3]
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", run_id, "0,2-3", "-c", "x,name", "--json")
    assert code == 0
    got = json.loads(out)
    expected = [expected_sources(files, result, r) for r in rows]
    want_events = sorted({(e, "x", events.x[e]) for e, _ in expected})
    want_users = sorted({(u, "name", users.name[u]) for _, u in expected})
    for name, want in (("events", want_events), ("users", want_users)):
        part = got["sources"][name]
        assert part["values_note"] is None
        assert [(c["row"], c["column"], c["value"]) for c in part["cells"]] == want
        assert part["rows"] == sorted({w[0] for w in want})
    code, text, _ = run_cli(capsys, "--store", store.url, "backward", run_id, "0", "-c", "name")
    users_row = expected[0][1]
    assert code == 0 and f"users: 1 rows, 1 cells\n  rows: {users_row}\n" in text
    assert "value" in text and users.name[users_row] in text


def test_missing_values_are_null_in_json(capsys, store, tmp_path):
    frame = pd.DataFrame({"x": [1.0, np.nan, np.inf], "d": pd.to_datetime(["2024-01-02", None, "2024-03-04"])})
    frame.to_parquet(tmp_path / "f.parquet")
    hippo.read_parquet(str(tmp_path / "f.parquet"), "f").hippo.compute()
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", "latest", "0-2", "--json")
    assert code == 0
    values = {(c["row"], c["column"]): c["value"] for c in json.loads(out)["sources"]["f"]["cells"]}
    assert values == {(0, "x"): 1.0, (1, "x"): None, (2, "x"): "inf",
                      (0, "d"): "2024-01-02T00:00:00", (1, "d"): None, (2, "d"): "2024-03-04T00:00:00"}


def test_backward_says_why_values_are_not_shown_and_still_shows_positions(capsys, store, files):
    events, users, events_path, _ = files
    memory = pd.DataFrame({"k": np.arange(6), "z": np.arange(6) * 10})
    result = (hippo.read_parquet(str(events_path), "events").hippo.merge(memory.hippo.source("memory"), on="k")
              .hippo.compute())
    events_row = int(np.flatnonzero(events.eid == result.eid[0])[0])
    memory_row = int(result.k[0])
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", "latest", "0", "-c", "z,x")
    assert code == 0
    assert f"memory: 1 rows, 1 cells\n  rows: {memory_row}\n  values not shown: source 'memory' was an in-memory" in out
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", "latest", "0", "-c", "z,x", "--json")
    got = json.loads(out)["sources"]
    assert got["memory"]["cells"] == [{"row": memory_row, "column": "z"}] and "in-memory" in got["memory"]["values_note"]
    assert got["events"]["cells"] == [{"row": events_row, "column": "x", "value": events.x[events_row]}]

    # A file changed or gone: in a shell (a fresh process, where no source frame is alive) no values,
    # never other ones, and still the positions
    changed = events.copy()
    changed.loc[events_row, "x"] = 1000.0
    changed.to_parquet(events_path)
    out = shell(store, "backward", "latest", "0", "-c", "x", "--json")
    part = json.loads(out.stdout)["sources"]["events"]
    assert out.returncode == 0 and "changed since capture" in part["values_note"]
    assert part["cells"] == [{"row": events_row, "column": "x"}]
    os.remove(events_path)
    out = shell(store, "backward", "latest", "0", "-c", "x")
    assert out.returncode == 0 and f"  rows: {events_row}\n  values not shown: " in out.stdout and "gone" in out.stdout
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", "latest", "0", "-c", "x", "--no-values")
    assert code == 0 and "--no-values" in out


def test_no_values_for_a_column_the_run_did_not_fingerprint(capsys, store, files):
    _, run_id = file_run(files)
    path = os.path.join(store.run_dir(run_id), "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    for sums in manifest["sources"]["events"]["partition_column_fingerprints"]:
        del sums["x"]  # as a Dask run records a column it did not read
    with open(path, "w") as f:
        json.dump(manifest, f)
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", run_id, "0", "-c", "x,w", "--json")
    got = json.loads(out)["sources"]
    assert code == 0 and "no fingerprint of column(s) ['x']" in got["events"]["values_note"]
    assert all("value" not in cell for cell in got["events"]["cells"])
    assert got["users"]["values_note"] is None and all("value" in cell for cell in got["users"]["cells"])


def test_long_traces_print_a_few_cells_and_say_how_many_more(capsys, store, tmp_path):
    frame = pd.DataFrame({"g": np.zeros(100, dtype=np.int64), "x": np.arange(100.0)})
    frame.to_parquet(tmp_path / "f.parquet")
    hippo.read_parquet(str(tmp_path / "f.parquet"), "f").hippo.groupby("g").agg(s=("x", "sum")).hippo.compute()
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", "latest", "0", "-c", "s")
    assert code == 0 and "f: 100 rows, 100 cells\n  rows: 0-99\n" in out
    table = out.split(" row column value\n", 1)[1].splitlines()
    assert [line.split() for line in table[:40]] == [[str(i), "x", f"{i}.0"] for i in range(40)]
    assert table[40:] == ["... and 60 more cells (--json lists them all)"]
    code, out, _ = run_cli(capsys, "--store", store.url, "backward", "latest", "0", "-c", "s", "--json")
    cells = json.loads(out)["sources"]["f"]["cells"]
    assert [(c["row"], c["value"]) for c in cells] == [(i, float(i)) for i in range(100)]


# ---------------------------------------------------------------------- JSON for scripts


def test_json_output_of_runs_show_and_forward(capsys, store, files):
    events, users, events_path, users_path = files
    result, run_id = file_run(files)
    code, out, _ = run_cli(capsys, "--store", store.url, "runs", "--json")
    assert code == 0 and [(r["run_id"], r["state"]) for r in json.loads(out)] == [(run_id, "complete")]
    code, out, _ = run_cli(capsys, "--store", store.url, "show", "latest", "--json")
    shown = json.loads(out)
    assert shown["run_id"] == run_id and shown["rows"] == len(result) and shown["columns"] == list(result.columns)
    assert shown["sources"] == {"events": {"rows": 30, "file": str(events_path)},
                                "users": {"rows": 6, "file": str(users_path)}}
    assert [op["op"] for op in shown["operations"]][-2:] == ["merge", "filter"]
    # forward: every result row made from events rows 3-9 (its unique event id is among theirs)
    code, out, _ = run_cli(capsys, "forward", run_id, "events", "3-9", "-c", "x", "--json", "--store", store.url)
    hits = json.loads(out)
    want = np.flatnonzero(result.eid.isin(events.eid[3:10])).tolist()
    assert code == 0 and hits["source_rows"] == list(range(3, 10)) and hits["rows"] == want
    assert hits["cells"] == [{"row": r, "column": "x"} for r in want]
    code, out, _ = run_cli(capsys, "--store", store.url, "forward", run_id, "users", "2")
    assert code == 0 and out.startswith(f"{int((result.k == 2).sum())} result rows")


def test_query_errors_exit_2_with_a_message(capsys, store, files):
    file_run(files)
    code, out, err = run_cli(capsys, "--store", store.url, "backward", "latest", "999")
    assert code == 2 and out == "" and "out of range" in err
    code, out, err = run_cli(capsys, "--store", store.url, "forward", "latest", "nobody", "1", "--json")
    assert code == 2 and out == "" and "no source named 'nobody'" in err


def test_piping_into_head_exits_quietly(store):
    for _ in range(2000):  # ~110 KB of listing: more than a pipe holds, so the writer sees the reader go
        store.start_run()
    writer = subprocess.Popen([sys.executable, "-m", "hippo_dask", "--store", store.url, "runs"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, text=True, timeout=120)
    writer.stdout.close()
    _, err = writer.communicate(timeout=120)
    assert head.stdout.count("\n") == 1 and "INCOMPLETE" in head.stdout
    assert err.decode() == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert writer.returncode == 1


# ---------------------------------------------------------------------- gc


def _age(store, run_id: str, seconds: float) -> None:
    """Make every file of a run look ``seconds`` old."""
    folder = store.run_dir(run_id)
    stamp = time.time() - seconds
    for base, _, names in os.walk(folder):
        for name in names + ["."]:
            os.utime(os.path.join(base, name), (stamp, stamp))


@pytest.fixture
def mixed_store(store, files):
    """A store with two complete runs (one very old), a failed run, an old and a fresh incomplete run,
    and an old run caught committing (its manifest's temporary file)."""
    _, old_complete = file_run(files)
    _age(store, old_complete, 30 * 86400)
    with pytest.raises(hippo.UserFunctionError) as failed:
        pd.DataFrame({"x": [1.0, 0.0, 2.0]}).hippo.source("df").hippo.assign(inv=inverse)
    _, complete = file_run(files)
    old_incomplete = store.start_run()
    _age(store, old_incomplete, 3 * 3600)
    fresh_incomplete = store.start_run()
    committing = store.start_run()
    _age(store, committing, 3 * 3600)
    with open(os.path.join(store.run_dir(committing), "manifest.json.tmp-0a1b2c"), "w") as f:
        f.write("{}")
    return {"old_complete": old_complete, "complete": complete, "failed": failed.value.run_id,
            "old_incomplete": old_incomplete, "fresh_incomplete": fresh_incomplete, "committing": committing}


def test_gc_removes_failed_and_abandoned_runs_only(mixed_store, store, files):
    runs = mixed_store
    planned = store.gc(dry_run=True)
    assert sorted(planned) == sorted([runs["failed"], runs["old_incomplete"]])
    assert planned[runs["failed"]].startswith("failed") and planned[runs["old_incomplete"]].startswith("incomplete")
    assert len(store.runs()) == 6  # a dry run removes nothing
    assert store.gc() == planned
    assert sorted(r.run_id for r in store.runs()) == sorted(
        runs[k] for k in ("old_complete", "complete", "fresh_incomplete", "committing"))
    assert not os.path.exists(store.run_dir(runs["failed"]))
    assert store.gc() == {}
    # the complete runs answer as before
    result, _ = file_run(files)
    events_row, _ = expected_sources(files, result, 0)
    for run_id in (runs["old_complete"], runs["complete"]):
        assert hippo.open(store, run_id).backward(rows=[0], columns=["x"])["events"].rows.tolist() == [events_row]
    # with no age limit, every run without a manifest goes; complete ones still stay
    assert sorted(store.gc(older_than=0)) == sorted([runs["fresh_incomplete"], runs["committing"]])
    assert sorted(r.run_id for r in store.runs()) == sorted([runs["old_complete"], runs["complete"],
                                                            result.hippo.lineage.run_id])


def test_gc_from_the_shell(capsys, mixed_store, store):
    runs = mixed_store
    code, out, _ = run_cli(capsys, "--store", store.url, "gc", "--dry-run")
    assert code == 0 and out.startswith("would remove 2 run(s):")
    assert runs["failed"] in out and runs["old_incomplete"] in out and len(store.runs()) == 6
    # 3 hours old: older than 2h and 30m, younger than 1d and 4h
    for age, removed in (("1d", []), ("4h", []), ("2h", ["old_incomplete"]), ("30m", ["old_incomplete"])):
        code, out, _ = run_cli(capsys, "--store", store.url, "gc", "--older-than", age, "--dry-run", "--json")
        got = json.loads(out)
        assert code == 0 and got["dry_run"] is True
        assert sorted(r["run_id"] for r in got["removed"]) == sorted(runs[k] for k in ["failed"] + removed)
    code, out, _ = run_cli(capsys, "--store", store.url, "gc")
    assert code == 0 and out.startswith("removed 2 run(s):")
    code, out, _ = run_cli(capsys, "--store", store.url, "gc")
    assert code == 0 and out == "nothing to remove\n"


def test_gc_refuses_a_bad_age(store):
    for bad in (-1, float("nan"), "1h", None):
        with pytest.raises(StoreError, match="older_than must be a duration"):
            store.gc(older_than=bad)


# ---------------------------------------------------------------------- a file is not a store


def test_a_file_is_refused_as_a_store(capsys, tmp_path):
    before = hippo.set_store(tmp_path / "store")
    path = tmp_path / "notes.txt"
    path.write_text("not a store")
    for make in (hippo.set_store, hippo.Store):
        with pytest.raises(StoreError, match="is a file, not a store: a store is a directory") as info:
            make(path)
        assert isinstance(info.value, HippoError) and isinstance(info.value, ValueError)
        assert str(path) in str(info.value)
    assert hippo.get_store() == before  # the refused one did not replace it
    assert hippo.Store(tmp_path / "new").url == str(tmp_path / "new")  # a folder to be: fine
    code, _, err = run_cli(capsys, "--store", path, "runs")
    assert code == 2 and "is a file, not a store" in err


# ---------------------------------------------------------------------- view


def test_view_passes_its_arguments_to_write_view(capsys, store, files, monkeypatch):
    _, run_id = file_run(files)
    calls = []

    def write_view(lineage, path=None, *, rows=None, columns=None, source=None, source_rows=None):
        calls.append((lineage.run_id, path, rows, columns, source, source_rows))
        return path or f"{lineage.run_id}.html"

    monkeypatch.setitem(sys.modules, "hippo_dask.view", types.SimpleNamespace(write_view=write_view))
    code, out, _ = run_cli(capsys, "--store", store.url, "view", "latest")
    assert code == 0 and out == f"{run_id}.html\n" and calls.pop() == (run_id, None, None, None, None, None)
    code, out, _ = run_cli(capsys, "--store", store.url, "view", run_id, "-o", "page.html", "--rows", "0-2",
                           "-c", "x,w", "--source", "events", "--source-rows", "1,4")
    assert code == 0 and out == "page.html\n"
    got = calls.pop()
    assert got[:2] == (run_id, "page.html") and got[3:5] == (["x", "w"], "events")
    assert got[2].tolist() == [0, 1, 2] and got[5].tolist() == [1, 4]
    code, _, err = run_cli(capsys, "--store", store.url, "view", run_id, "--source-rows", "1")
    assert code == 2 and "--source and --source-rows go together" in err and not calls


def test_view_writes_a_page(capsys, store, files, tmp_path):
    pytest.importorskip("hippo_dask.view", reason="view.py is not there yet")
    _, run_id = file_run(files)
    code, out, _ = run_cli(capsys, "--store", store.url, "view", run_id, "-o", tmp_path / "page.html", "--rows", "0")
    assert code == 0 and os.path.exists(out.strip()) and "<html" in open(out.strip()).read().lower()
