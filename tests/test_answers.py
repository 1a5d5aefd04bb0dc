"""Answers people can read: a trace's rows themselves (``TraceSet.frame`` / ``.index``) and the reprs.

The oracle for the rows is the source frame itself: ``df.iloc[rows]`` with the
labels it had when ``.hippo.source()`` was called (for Dask, the partitions
concatenated in order), and, for which rows a result row came from, the same
question answered with plain pandas.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import types
from html.parser import HTMLParser

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask import live_sources


def _people_and_visits(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two sources with labels that are not positions: person names, and shuffled integers."""
    rng = np.random.default_rng(seed)
    names = [f"person-{i}" for i in rng.permutation(12)]
    people = pd.DataFrame({"pid": np.arange(12), "city": rng.choice(["Oslo", "Lima", "Pune"], 12),
                           "age": rng.integers(18, 90, 12)}, index=pd.Index(names, name="who"))
    n = 60
    visits = pd.DataFrame({"pid": rng.integers(0, 12, n), "amount": rng.integers(1, 100, n).astype(float),
                           "note": rng.choice(["a", "b", "c"], n)}, index=rng.permutation(n) * 10 + 7)
    return people, visits


def _city_totals(people: pd.DataFrame, visits: pd.DataFrame) -> pd.DataFrame:
    joined = visits.hippo.source("visits").hippo.filter(lambda p: p.amount > 20)
    joined = joined.hippo.merge(people.hippo.source("people"), on="pid")
    return joined.hippo.groupby("city").agg(total=("amount", "sum")).hippo.compute()


def _expected_labels(people: pd.DataFrame, visits: pd.DataFrame, city: str) -> tuple[set, set]:
    """Plain pandas: the visit and person labels behind one city's total."""
    kept = visits[visits.amount > 20]
    cities = people.set_index("pid")["city"]
    mine = kept[kept.pid.map(cities) == city]
    return set(mine.index), set(people.index[people.pid.isin(mine.pid)])


def _assert_rows_of(ts: hippo.TraceSet, source: pd.DataFrame, columns: list[str] | None = None) -> None:
    """``ts.frame`` / ``ts.index`` are exactly the source's rows at ``ts.rows``, labels included."""
    expected = source.iloc[ts.rows] if columns is None else source.iloc[ts.rows][columns]
    pd.testing.assert_frame_equal(ts.frame, expected)
    pd.testing.assert_index_equal(ts.index, expected.index)


# ---------------------------------------------------------------------- pandas sources, alive


def test_frame_and_index_of_pandas_sources_with_their_own_labels(store):
    people, visits = _people_and_visits()
    original_people, original_visits = people.copy(), visits.copy()
    result = _city_totals(people, visits)
    lin = result.hippo.lineage
    for row, city in enumerate(result.city):
        trace = lin.backward(rows=[row], columns=["total"])
        visit_labels, person_labels = _expected_labels(original_people, original_visits, city)
        assert set(trace["visits"].index) == visit_labels
        assert set(lin.backward(rows=[row])["people"].index) == person_labels
        _assert_rows_of(trace["visits"], original_visits)
        _assert_rows_of(lin.backward(rows=[row])["people"], original_people)


def test_frame_of_result_rows_while_the_result_is_alive(store):
    people, visits = _people_and_visits()
    result = _city_totals(people, visits)
    hits = result.hippo.lineage.forward("visits", rows=[0, 1, 2])
    assert len(hits)
    pd.testing.assert_frame_equal(hits.frame, result.iloc[hits.rows])
    pd.testing.assert_index_equal(hits.index, pd.Index(hits.rows))


def test_empty_trace_has_an_empty_frame_with_the_source_columns(store):
    people, visits = _people_and_visits()
    result = _city_totals(people, visits)
    lin = result.hippo.lineage
    dropped = int(np.flatnonzero(visits.amount.to_numpy() <= 20)[0])  # filtered out: reaches nothing
    hits = lin.forward("visits", rows=[dropped])
    assert len(hits) == 0 and len(hits.frame) == 0 and list(hits.frame.columns) == ["city", "total"]
    empty = lin.backward(rows=[0], columns=["city"])["visits"]  # the key came from people only
    assert len(empty) == 0
    assert list(empty.frame.columns) == list(visits.columns) and len(empty.frame) == 0


# ---------------------------------------------------------------------- Dask sources


def _dask_with_repeating_labels(frame: pd.DataFrame, sizes: list[int]) -> tuple[dd.DataFrame, pd.DataFrame]:
    """A Dask frame whose partitions each have labels 0..k-1 (they repeat across partitions), and its
    rows as one pandas frame in partition order, as Dask computes them (the oracle)."""
    bounds = np.cumsum([0] + sizes)
    parts = [frame.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds[:-1], bounds[1:])]
    data = dd.from_map(lambda part: part, parts)
    return data, data.compute(scheduler="sync")


def test_dask_source_rows_in_partition_order_with_repeating_labels(store):
    people, visits = _people_and_visits()
    dvisits, in_partition_order = _dask_with_repeating_labels(visits, [25, 5, 30])
    assert dvisits.npartitions == 3 and in_partition_order.index.has_duplicates
    t = dvisits.hippo.source("visits").hippo.filter(lambda p: p.amount > 20)
    t = t.hippo.merge(dd.from_pandas(people, npartitions=2, sort=False).hippo.source("people"), on="pid")
    result = t.hippo.groupby("city").agg(total=("amount", "sum")).hippo.compute(scheduler="sync")
    lin = result.hippo.lineage
    for row, city in enumerate(result.city):
        ts = lin.backward(rows=[row], columns=["total"])["visits"]
        # the oracle: the visits of that city's people, as positions in partition order
        kept = in_partition_order.amount.to_numpy() > 20
        cities = people.set_index("pid")["city"]
        expected = np.flatnonzero(kept & (in_partition_order.pid.map(cities).to_numpy() == city))
        np.testing.assert_array_equal(ts.rows, expected)
        # the columns the run read and fingerprinted; the unread "note" could have changed unchecked
        _assert_rows_of(ts, in_partition_order, [c for c in in_partition_order.columns if c != "note"])
        assert "partition order" in repr(ts) and "partition order" in repr(lin.backward(rows=[row]))


def test_dask_source_changed_in_place_is_refused(store):
    people, visits = _people_and_visits()
    dvisits = dd.from_pandas(visits, npartitions=3, sort=False)
    result = dvisits.hippo.source("visits").hippo.filter(lambda p: p.amount > 20).hippo.compute(scheduler="sync")
    ts = result.hippo.lineage.backward(rows=[0])["visits"]
    assert len(ts.frame) == 1
    dvisits["amount"] = dvisits["amount"] + 1
    with pytest.raises(hippo.SourceChangedError, match="changed in place"):
        ts.frame


# ---------------------------------------------------------------------- file sources, read again


def _assert_read_from_the_file(lin: hippo.Lineage, name: str) -> None:
    """No frame of source ``name`` is alive in this process: its rows can only come from its file."""
    assert live_sources.frame_of(lin.manifest["sources"][name]["node"], name) is None


def test_parquet_source_is_read_again_with_its_labels(store, tmp_path):
    people, visits = _people_and_visits()
    path = tmp_path / "visits.parquet"
    visits.to_parquet(path)  # the shuffled integer index is stored with the rows
    t = hippo.read_parquet(path).hippo.filter(lambda p: p.amount > 20)
    result = t.hippo.merge(people.hippo.source("people"), on="pid").hippo.groupby("city").agg(
        total=("amount", "sum")).hippo.compute()
    gc.collect()
    _assert_read_from_the_file(result.hippo.lineage, "visits")
    ts = result.hippo.lineage.backward(rows=[1], columns=["total"])["visits"]
    assert set(ts.index) == _expected_labels(people, visits, result.city[1])[0]
    _assert_rows_of(ts, visits)


def test_dask_parquet_folder_is_read_again_partition_by_partition(store, tmp_path):
    people, visits = _people_and_visits()
    folder = tmp_path / "visits"
    folder.mkdir()
    bounds = [0, 20, 45, 60]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        visits.iloc[a:b].to_parquet(folder / f"part-{i}.parquet")
    t = hippo.read_parquet(str(folder), dask=True).hippo.filter(lambda p: p.amount > 20)
    people = dd.from_pandas(people, npartitions=1, sort=False)
    result = t.hippo.merge(people.hippo.source("people"), on="pid").hippo.compute(scheduler="sync")
    lin = result.hippo.lineage
    gc.collect()
    ts = lin.backward(rows=list(range(len(result))), columns=["amount"])["visits"]
    np.testing.assert_array_equal(ts.rows, np.flatnonzero(visits.amount.to_numpy() > 20))
    as_read = dd.read_parquet(str(folder)).compute(scheduler="sync")  # the source as Dask reads it (its dtypes)
    pd.testing.assert_frame_equal(as_read, visits, check_dtype=False)
    _assert_rows_of(ts, as_read)
    # one value the run read changes in the middle file: its rows are refused, naming the partition
    changed = visits.iloc[20:45].copy()
    changed.iloc[3, changed.columns.get_loc("amount")] += 1
    changed.to_parquet(folder / "part-1.parquet")
    with pytest.raises(hippo.SourceChangedError, match="partition 1 of source 'visits'"):
        ts.frame
    # a row in partition 0, which did not change, is still shown
    in_first = [ts for ts in (lin.backward(rows=[r], columns=["amount"])["visits"] for r in range(len(result)))
                if ts.rows[0] < 20]
    assert in_first
    _assert_rows_of(in_first[0], as_read)


def test_csv_source_is_read_again_and_a_changed_file_is_refused(store, tmp_path):
    people, visits = _people_and_visits()
    path = tmp_path / "visits.csv"
    visits.to_csv(path, index_label="vid")
    t = hippo.read_csv(path, index_col="vid").hippo.filter(lambda p: p.amount > 20)
    result = t.hippo.merge(people.hippo.source("people"), on="pid").hippo.compute()
    lin = result.hippo.lineage
    _assert_read_from_the_file(lin, "visits")
    ts = lin.backward(rows=[0, 5])["visits"]
    _assert_rows_of(ts, pd.read_csv(path, index_col="vid"))
    assert list(ts.index) == list(visits.index[ts.rows])  # the labels the file holds

    edited = visits.copy()
    edited.iloc[-1, edited.columns.get_loc("note")] = "changed"  # one value: the file is checked whole
    edited.to_csv(path, index_label="vid")
    with pytest.raises(hippo.SourceChangedError, match="'visits'"):
        ts.frame
    pd.concat([visits, visits.iloc[:1]]).to_csv(path, index_label="vid")  # a row added
    with pytest.raises(hippo.SourceChangedError, match="61 rows, the run read 60"):
        ts.index
    os.remove(path)
    with pytest.raises(hippo.ReplayError, match="is gone"):
        ts.frame


def test_csv_source_of_the_shared_healthcare_data(store, shared_data):
    path = shared_data / "healthcare" / "histories.csv"
    histories = hippo.read_csv(path)
    patients = pd.read_csv(shared_data / "healthcare" / "patients.csv")
    result = histories.hippo.merge(patients.hippo.source("patients"), on="ssn").hippo.compute()
    trace = result.hippo.lineage.backward(rows=[0, 3, 7])
    _assert_rows_of(trace["histories"], pd.read_csv(path))
    _assert_rows_of(trace["patients"], patients)
    # the rows are those whose ssn the result rows carry
    assert list(trace["patients"].frame.ssn.sort_values()) == sorted(result.ssn.iloc[[0, 3, 7]].unique())


# ---------------------------------------------------------------------- refused, or not at hand


def test_source_changed_in_place_after_capture_is_refused(store):
    people, visits = _people_and_visits()
    result = _city_totals(people, visits)
    ts = result.hippo.lineage.backward(rows=[0])["visits"]
    assert len(ts.frame) == len(ts)
    visits.loc[visits.index[-1], "amount"] = 1e6  # copy-on-write pandas: this edits the source frame itself
    with pytest.raises(hippo.SourceChangedError, match="partition 0 of source 'visits' changed"):
        ts.frame


def test_source_whose_index_was_replaced_is_refused(store):
    people, visits = _people_and_visits()
    result = _city_totals(people, visits)
    ts = result.hippo.lineage.backward(rows=[0])["people"]
    people.index = [f"other-{i}" for i in range(len(people))]  # same values, other labels
    with pytest.raises(hippo.SourceChangedError, match="index"):
        ts.index


def test_collected_in_memory_source_says_how_to_get_the_rows(store):
    people, visits = _people_and_visits()
    original = visits.copy()
    result = _city_totals(people, visits)
    ts = result.hippo.lineage.backward(rows=[0])["visits"]
    del visits
    gc.collect()
    with pytest.raises(hippo.ReplayError, match=r"no longer alive.*frame_from\(df\)"):
        ts.frame
    pd.testing.assert_frame_equal(ts.frame_from(original), original.iloc[ts.rows])
    other = original.copy()
    other["amount"] = other["amount"] + 1
    with pytest.raises(hippo.SourceChangedError):
        ts.frame_from(other)
    with pytest.raises(hippo.QueryError, match="DataFrame"):
        ts.frame_from(original.to_numpy())


def test_reopened_run_needs_the_frames_passed_back(store):
    people, visits = _people_and_visits()
    result = _city_totals(people, visits)
    lin = hippo.open(store, result.hippo.lineage.run_id)
    hits = lin.forward("people", rows=[0])
    with pytest.raises(hippo.ReplayError, match=r"frame_from\(result\)"):
        hits.frame
    pd.testing.assert_frame_equal(hits.frame_from(result), result.iloc[hits.rows])
    edited = result.copy()
    edited.loc[hits.rows[0], "total"] += 1
    with pytest.raises(hippo.StaleResultError):
        hits.frame_from(edited)
    ts = lin.backward(rows=[0])["people"]  # the source frames are alive: they are found by their run's ids
    _assert_rows_of(ts, people)


def test_to_parquet_result_says_where_its_rows_are(store, tmp_path):
    people, _ = _people_and_visits()
    lin = dd.from_pandas(people, npartitions=2, sort=False).hippo.source("people").hippo.to_parquet(
        str(tmp_path / "out"), scheduler="sync")
    hits = lin.forward("people", rows=[0])
    with pytest.raises(hippo.ReplayError, match="read_parquet"):
        hits.frame


def test_pickled_trace_keeps_its_rows_and_reads_none_back(store):
    people, visits = _people_and_visits()
    result = _city_totals(people, visits)
    trace = result.hippo.lineage.backward(rows=[0])
    copy = pickle.loads(pickle.dumps(trace))
    for name in trace:
        np.testing.assert_array_equal(copy[name].rows, trace[name].rows)
        pd.testing.assert_frame_equal(copy[name].cells, trace[name].cells)
        assert copy[name].source == name
    with pytest.raises(hippo.QueryError, match="not attached to a run"):
        copy["visits"].frame


# ---------------------------------------------------------------------- reprs


class _Html(HTMLParser):
    """Checks that tags nest and close, and collects the text and the tags."""

    VOID = {"br", "hr", "img", "meta", "link", "input", "col"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Html:
    parser = _Html()
    parser.feed(html)
    parser.close()
    assert not parser.stack, f"unclosed tags {parser.stack}"
    return parser


def test_reprs_say_what_each_number_counts(store):
    frame = pd.DataFrame({"k": list("abcab"), "x": [1, 2, 3, 4, 5], "y": [9, 8, 7, 6, 5]})
    result = frame.hippo.source("src").hippo.groupby("k").agg(total=("x", "sum"), top=("y", "max")).hippo.compute()
    lin = result.hippo.lineage
    ts = lin.backward(rows=[0], columns=["total"])["src"]  # group "a": rows 0 and 3, column x
    assert repr(ts) == "TraceSet: 2 rows of source 'src', at positions 0, 3\n  2 cells, in 1 column: 'x' (2 cells)"
    trace = lin.backward(rows=[1])  # group "b": rows 1 and 4, every column
    text = repr(trace)
    assert text.splitlines()[0] == f"Trace: backward lineage in 1 source of run {lin.run_id}"
    assert text.splitlines()[1] == "  'src': 2 rows (positions 1, 4); 6 cells in 3 columns: 'k', 'x', 'y'"
    hits = lin.forward("src", rows=[2])
    assert repr(hits).splitlines()[0] == "TraceSet: 1 row of the result, at position 2"
    text = repr(lin)
    assert lin.run_id in text and "3 rows x 3 columns: 'k', 'total', 'top'" in text
    assert "1 source: 'src' (5 rows, pandas)" in text and "1 operation: groupby" in text


def test_reprs_of_huge_traces_are_capped_and_cheap(store):
    n = 5000
    frame = pd.DataFrame({f"c{i}": np.arange(n) for i in range(15)})
    result = frame.hippo.source("wide").hippo.compute()
    lin = result.hippo.lineage
    ts = lin.backward(rows=np.arange(n))["wide"]
    text = repr(ts)
    assert "5,000 rows" in text and "75,000 cells, in 15 columns" in text
    assert "positions 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (4,990 more)" in text and "and 5 more" in text
    assert "4999" not in text
    _parse(ts._repr_html_())
    assert ts._cells is None  # the reprs did not build the cell table


def test_reprs_read_no_files(store, tmp_path):
    path = tmp_path / "xs.csv"
    pd.DataFrame({"x": [1, 2, 3]}).to_csv(path, index=False)
    result = hippo.read_csv(path).hippo.filter(lambda p: p.x > 1).hippo.compute()
    os.remove(path)
    lin = result.hippo.lineage
    trace = lin.backward(rows=[0])
    assert "1 row (position 1)" in repr(trace) and "file " + str(path) in repr(lin)
    for shown in (lin, trace, trace["xs"]):
        _parse(shown._repr_html_())


def test_html_reprs_parse_and_escape_column_names(store):
    tricky = '<script>alert("x")</script>'
    frame = pd.DataFrame({"k": ["a", "b", "a"], tricky: [1, 2, 3], "x & y": [4, 5, 6]})
    result = frame.hippo.source("<src>").hippo.groupby("k").agg(total=(tricky, "sum"), top=("x & y", "max")).hippo.compute()
    lin = result.hippo.lineage
    trace = lin.backward(rows=[0])
    for shown in (lin, trace, trace["<src>"], lin.forward("<src>", rows=[0])):
        html = shown._repr_html_()
        parsed = _parse(html)
        assert "script" not in parsed.tags and "<src>" not in html
        assert set(parsed.tags) <= {"div", "p", "b", "code", "table", "thead", "tbody", "tr", "th", "td"}
    text = "".join(_parse(trace["<src>"]._repr_html_()).text)
    assert tricky in text and "x & y" in text and "2 rows of source '<src>'" in text and "6 cells" in text
    text = "".join(_parse(trace._repr_html_()).text)
    assert "<src>" in text and "positions 0, 2" in text and tricky in text
    text = "".join(_parse(lin._repr_html_()).text)
    assert lin.run_id in text and "groupby" in text and "total" in text and "<src>" in text


# ---------------------------------------------------------------------- Lineage.view


def test_view_hands_its_arguments_to_write_view(store, monkeypatch):
    calls = []
    fake = types.ModuleType("hippo_dask.view")
    fake.write_view = lambda lineage, path, **kwargs: calls.append((lineage, path, kwargs)) or "written"
    monkeypatch.setitem(sys.modules, "hippo_dask.view", fake)
    result = pd.DataFrame({"x": [1, 2]}).hippo.source("xs").hippo.compute()
    lin = result.hippo.lineage
    assert lin.view("out.html", rows=[1], columns=["x"]) == "written"
    assert lin.view(source="xs", source_rows=[0]) == "written"
    assert calls == [(lin, "out.html", {"rows": [1], "columns": ["x"], "source": None, "source_rows": None}),
                     (lin, None, {"rows": None, "columns": None, "source": "xs", "source_rows": [0]})]
