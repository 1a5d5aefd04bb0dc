"""hippo_dask.view.write_view: the page it writes, its numbers, and what a real browser draws of it.

The numbers are checked against oracles computed here with plain pandas (the
healthcare pipeline redone with explicit row ids) or known by hand (a small
pipeline with a merge and a group-by). What is drawn is checked in headless
Chromium: a script added to a copy of the page measures every box, text and
edge after layout and writes a JSON summary into the DOM, which ``--dump-dom``
returns. Without a chromium binary those tests skip, except under CI (the CI
environment variable set), where a missing browser fails: ``.ci/browser``
installs it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

import hippo_dask as hippo
from hippo_dask.errors import ColumnError, QueryError
from hippo_dask.examples import HEALTHCARE_COLUMNS, healthcare, load_healthcare
from hippo_dask.view import write_view

TRACE_STROKE = "rgb(232, 89, 12)"  # the page's highlight colour, #e8590c, as getComputedStyle gives it
COUNTIES = ["county2", "county3"]


# ---------------------------------------------------------------------- fixtures and oracles
@pytest.fixture(scope="module")
def health(tmp_path_factory):
    """The healthcare pipeline on pandas, computed once; and the same pipeline in plain pandas with row ids."""
    hippo.set_store(tmp_path_factory.mktemp("store"))
    patients, histories = load_healthcare()
    result = healthcare(patients, histories).hippo.compute()
    # The oracle: the same steps in pandas, every row carrying its patient (pid) and history (hid) row.
    merged = patients.reset_index(names="pid").merge(histories.reset_index(names="hid"), on="ssn")
    groups = merged.groupby("age_group", as_index=False).agg(mean_complications=("complications", "mean"))
    data = merged.merge(groups, on="age_group")
    data["label"] = data["complications"] > 1.2 * data["mean_complications"]
    data = data[data["county"].isin(COUNTIES)].reset_index(drop=True)
    shown = list(result.columns)
    pd.testing.assert_frame_equal(data[shown], result.reset_index(drop=True), check_dtype=False)
    return result.hippo.lineage, merged, groups, data


def _health_row(data: pd.DataFrame) -> int:
    """A labelled result row whose visible values no other result row has (so the oracle's row is hippo's)."""
    unique = ~data[HEALTHCARE_COLUMNS].astype(str).duplicated(keep=False)
    return int(np.flatnonzero(unique & data["label"].to_numpy())[0])


def _node_ids(lin) -> dict[str, str]:
    """The healthcare run's node ids by role (its manifest lists inputs before consumers)."""
    nodes = lin.manifest["nodes"]
    merges = [n["id"] for n in nodes if n["op"] == "merge"]
    by_op = {n["op"]: n["id"] for n in nodes if n["op"] not in ("merge", "source")}
    return {"patients": lin.manifest["sources"]["patients"]["node"],
            "histories": lin.manifest["sources"]["histories"]["node"],
            "merge_ssn": merges[0], "merge_age_group": merges[1], **by_op}


@pytest.fixture
def shop(store):
    """A small pipeline with a filter, a merge and a group-by, with its hand-known answers."""
    users = pd.DataFrame({"user_id": [1, 2, 3, 4], "country": ["fr", "de", "fr", "it"]})
    events = pd.DataFrame({"user_id": [1, 1, 2, 3, 3, 3, 4, 5], "amount": [10, -1, 5, 7, 8, -2, 4, 9]})
    positive = events.hippo.source("events").hippo.filter(lambda p: p.amount > 0)
    joined = positive.hippo.merge(users.hippo.source("users"), on="user_id")
    totals = joined.hippo.groupby("country", dropna=False).agg(total=("amount", "sum"), n=("amount", "size"))
    result = totals.hippo.assign(avg=lambda p: p.total / p.n).hippo.compute()
    assert result["country"].tolist() == ["de", "fr", "it"]
    lin = result.hippo.lineage
    ids = {n["op"]: n["id"] for n in lin.manifest["nodes"] if n["op"] != "source"}
    ids.update({name: info["node"] for name, info in lin.manifest["sources"].items()})
    return lin, ids


class _Drawn(HTMLParser):
    """The SVG node groups and edge paths of a page, with their attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.nodes: dict[str, dict[str, str]] = {}
        self.edges: list[dict[str, str]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = attributes.get("class", "").split()
        if tag == "g" and "node" in classes:
            self.nodes[attributes["data-node-id"]] = attributes
        elif tag == "path" and "edge" in classes:
            self.edges.append(attributes)


def _on_trace(attributes: dict[str, str]) -> bool:
    return "on-trace" in attributes["class"].split()


def _read(path) -> str:
    with open(path, encoding="utf-8") as page:
        return page.read()


# ---------------------------------------------------------------------- numbers, without a browser
def test_backward_cell_trace_counts_match_pandas(health, tmp_path):
    lin, merged, groups, data = health
    row = _health_row(data)
    page = _read(write_view(lin, tmp_path / "v.html", rows=[row], columns=["label"]))
    drawn, ids = _Drawn(page), _node_ids(lin)
    # label <- complications and the mean of complications over the row's age group: every
    # merged row (and history) of that group; no patient cell (patients give no value of it)
    group = merged[merged["age_group"] == data.loc[row, "age_group"]]
    expected_rows = {"histories": group["hid"].nunique(), "merge_ssn": len(group), "groupby": 1,
                     "merge_age_group": 1, "assign": 1, "select": 1, "filter": 1}
    expected_cells = dict(expected_rows, merge_age_group=2)  # complications and mean_complications
    assert {ids[k] for k in expected_rows} == {i for i, a in drawn.nodes.items() if _on_trace(a)}
    for role, count in expected_rows.items():
        assert drawn.nodes[ids[role]]["data-traced-rows"] == str(count), role
        assert drawn.nodes[ids[role]]["data-traced-cells"] == str(expected_cells[role]), role
    assert drawn.nodes[ids["patients"]]["data-traced-rows"] == "0"
    # the public query agrees on the sources
    trace = lin.backward(rows=[row], columns=["label"])
    assert len(trace["histories"].rows) == expected_rows["histories"] and len(trace["patients"].rows) == 0

    on_edges = {(e["data-from"], e["data-to"]): e.get("data-traced-rows") for e in drawn.edges if _on_trace(e)}
    assert on_edges == {
        (ids["histories"], ids["merge_ssn"]): str(len(group)),
        (ids["merge_ssn"], ids["groupby"]): str(len(group)),
        (ids["merge_ssn"], ids["merge_age_group"]): "1",
        (ids["groupby"], ids["merge_age_group"]): "1",
        (ids["merge_age_group"], ids["assign"]): "1",
        (ids["assign"], ids["select"]): "1",
        (ids["select"], ids["filter"]): "1",
    }


def test_rows_in_and_out_where_the_run_records_them(health, tmp_path):
    lin, merged, groups, data = health
    drawn, ids = _Drawn(_read(write_view(lin, tmp_path / "v.html"))), _node_ids(lin)
    patients, histories = load_healthcare()
    rows = {role: (drawn.nodes[ids[role]]["data-rows-in"], drawn.nodes[ids[role]]["data-rows-out"]) for role in ids}
    assert rows == {
        "patients": ("", str(len(patients))),
        "histories": ("", str(len(histories))),
        "merge_ssn": (f"{len(patients)},{len(histories)}", "?"),  # a merge's rows are not stored
        "groupby": (str(merged["age_group"].notna().sum()), str(len(groups))),  # members, groups
        "merge_age_group": (f"?,{len(groups)}", "?"),
        "assign": ("?", "?"),
        "select": ("?", "?"),  # the filter after it keeps rows: its count is not recorded
        "filter": ("?", str(len(data))),
    }
    assert not any("data-traced-rows" in a or _on_trace(a) for a in drawn.nodes.values())  # no trace asked


def test_lineage_bytes_per_operator_are_the_store_sizes(health, tmp_path):
    lin, *_ = health
    drawn = _Drawn(_read(write_view(lin, tmp_path / "v.html")))
    # storage() reads the fragment files' sizes: an oracle for what the page says
    table = lin.storage()
    expected = table[table["op"] != "total"].groupby("node")["bytes"].sum().to_dict()
    shown = {node: int(a["data-lineage-bytes"]) for node, a in drawn.nodes.items()}
    assert {n: b for n, b in shown.items() if b} == expected
    directory = lin.store.fragment_dir(_node_ids(lin)["groupby"])
    on_disk = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    assert shown[_node_ids(lin)["groupby"]] == on_disk


def test_forward_trace_highlights_source_reached_operators_and_result(health, tmp_path):
    lin, merged, groups, data = health
    patient = int(data.loc[_health_row(data), "pid"])  # a patient whose row is in the result
    drawn = _Drawn(_read(write_view(lin, tmp_path / "v.html", source="patients", source_rows=[patient])))
    ids = _node_ids(lin)
    assert {i for i, a in drawn.nodes.items() if _on_trace(a)} == {v for k, v in ids.items() if k != "histories"}
    # the patient's row reaches every result row of its age group (the group's mean depends on it)
    age_group = merged.loc[merged["pid"] == patient, "age_group"].iloc[0]
    assert drawn.nodes[ids["filter"]]["data-traced-rows"] == str((data["age_group"] == age_group).sum())
    # and, as values, its own row's patient columns (not label: complications are the histories')
    assert drawn.nodes[ids["filter"]]["data-traced-cells"] == "5"
    assert drawn.nodes[ids["patients"]]["data-traced-rows"] == "1"
    assert drawn.nodes[ids["merge_ssn"]]["data-traced-rows"] == "unknown"  # not recorded between
    assert drawn.nodes[ids["histories"]]["data-traced-rows"] == "0"


def test_small_pipeline_hand_known_answers(shop, tmp_path):
    lin, ids = shop
    drawn = _Drawn(_read(write_view(lin, tmp_path / "v.html", rows=[1], columns=["total"])))  # the "fr" row
    # total of fr = amounts of events 0, 3 and 4 (users 1 and 3, positive amounts)
    on = {node: a["data-traced-rows"] for node, a in drawn.nodes.items() if _on_trace(a)}
    assert on == {ids["events"]: "3", ids["filter"]: "3", ids["merge"]: "3", ids["groupby"]: "1", ids["assign"]: "1"}
    assert drawn.nodes[ids["users"]]["data-traced-rows"] == "0"  # no users cell is a value of total
    counts = {op: (drawn.nodes[i]["data-rows-in"], drawn.nodes[i]["data-rows-out"]) for op, i in ids.items()}
    assert counts == {"events": ("", "8"), "users": ("", "4"), "filter": ("8", "?"),
                      "merge": ("?,4", "5"),  # a group-by with dropna=False groups every row it reads
                      "groupby": ("5", "3"), "assign": ("3", "3")}

    drawn = _Drawn(_read(write_view(lin, tmp_path / "f.html", source="users", source_rows=[2])))  # user 3, fr
    on = {node: a["data-traced-rows"] for node, a in drawn.nodes.items() if _on_trace(a)}
    assert on == {ids["users"]: "1", ids["merge"]: "unknown", ids["groupby"]: "unknown", ids["assign"]: "1"}
    assert drawn.nodes[ids["assign"]]["data-traced-cells"] == "1"  # the fr row's country


def test_default_path_is_the_run_id_in_the_current_directory(shop, tmp_path, monkeypatch):
    lin, _ = shop
    monkeypatch.chdir(tmp_path)
    path = write_view(lin)
    assert path == f"{lin.run_id}.html" and (tmp_path / path).is_file()


def test_page_is_self_contained_and_explains_its_numbers(shop, tmp_path):
    lin, _ = shop
    page = _read(write_view(lin, tmp_path / "v.html", rows=[0]))
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|\bhref=|@import|https?:", page)
    assert re.findall(r"url\(([^)]*)\)", page) and all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page))
    legend = page[page.index("<h2>Legend</h2>"):page.index("<h2>Operators</h2>")]
    assert re.findall(r"<dt>(.*?)</dt>", legend) == ["The graph", "rows in -&gt; out", "lineage", "trace"]
    assert "? where the run does not record the count" in legend


def test_names_are_escaped(store, tmp_path):
    name, column = '<b>"x"&amp;</b>', "<i>a&b</i>"
    result = pd.DataFrame({column: [1, 2]}).hippo.source(name).hippo.compute()
    page = _read(write_view(result.hippo.lineage, tmp_path / "v.html", rows=[0], columns=[column]))
    assert name not in page and column not in page
    assert html.escape(name) in page and html.escape(column) in page


@pytest.mark.parametrize("kwargs, query", [
    ({"rows": [10_000]}, lambda lin: lin.backward(rows=[10_000])),
    ({"rows": [-1]}, lambda lin: lin.backward(rows=[-1])),
    ({"rows": [0], "columns": ["nope"]}, lambda lin: lin.backward(rows=[0], columns=["nope"])),
    ({"source": "nope", "source_rows": [0]}, lambda lin: lin.forward("nope", rows=[0])),
    ({"source": "users", "source_rows": [4]}, lambda lin: lin.forward("users", rows=[4])),
])
def test_bad_input_raises_what_the_query_raises(shop, tmp_path, kwargs, query):
    lin, _ = shop
    with pytest.raises((QueryError, ColumnError)) as expected:
        query(lin)
    with pytest.raises(expected.type) as got:
        write_view(lin, tmp_path / "v.html", **kwargs)
    assert str(got.value) == str(expected.value)
    assert not (tmp_path / "v.html").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": [0], "source": "users", "source_rows": [0]}, "not both"),
    ({"columns": ["total"], "source_rows": [0]}, "not both"),
    ({"columns": ["total"]}, "pass rows= too"),
    ({"source": "users"}, "needs both source= "),
    ({"source_rows": [0]}, "needs both source= "),
])
def test_ambiguous_or_half_traces_are_refused(shop, tmp_path, kwargs, message):
    lin, _ = shop
    with pytest.raises(QueryError, match=message):
        write_view(lin, tmp_path / "v.html", **kwargs)
    assert not (tmp_path / "v.html").exists()


def test_a_frame_instead_of_a_lineage_is_refused(shop, tmp_path):
    with pytest.raises(TypeError, match="pass a hippo_dask Lineage"):
        write_view(pd.DataFrame({"x": [1]}), tmp_path / "v.html")


# ---------------------------------------------------------------------- what a browser draws
#: Added to a copy of the page: after layout, measure every node, text and edge and write the
#: measurements into the DOM, where --dump-dom shows them.
_RENDER_CHECK = """<script>
(() => {
  const svg = document.querySelector("svg.dag");
  const user = b => ({x: b.x, y: b.y, width: b.width, height: b.height});
  const nodes = [...svg.querySelectorAll("g.node")].map(g => {
    const rect = g.querySelector("rect");
    const style = getComputedStyle(rect);
    return {id: g.dataset.nodeId, classes: g.getAttribute("class"), box: user(rect.getBBox()),
            screen: user(rect.getBoundingClientRect()), stroke: style.stroke,
            texts: [...g.querySelectorAll("text")].map(t => ({box: user(t.getBBox()), text: t.textContent}))};
  });
  const edges = [...svg.querySelectorAll("path.edge")].map(p => {
    const length = p.getTotalLength(), points = [];
    for (let d = 0; d <= length; d += 3) { const q = p.getPointAtLength(d); points.push([q.x, q.y]); }
    return {from: p.dataset.from, to: p.dataset.to, classes: p.getAttribute("class"), length,
            stroke: getComputedStyle(p).stroke, points};
  });
  const view = svg.viewBox.baseVal;
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({view: {width: view.width, height: view.height},
                                    screen: user(svg.getBoundingClientRect()), nodes, edges,
                                    elements_in_svg: [...new Set([...svg.querySelectorAll("*")].map(e => e.tagName))]});
  document.body.appendChild(out);
})();
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("no chromium on PATH: CI must test the page in a browser (.ci/browser installs it)")
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium, or run .ci/browser)")


def _render(page_path, tmp_path) -> dict:
    """What headless Chromium drew of the page: the measurements of _RENDER_CHECK."""
    browser = _chromium()
    page = _read(page_path)
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", _RENDER_CHECK + "</body>"), encoding="utf-8")
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1400,900",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="render-check">(.*?)</pre>', run.stdout, re.S)
    assert found, f"chromium drew no render check (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _assert_drawn(drawn: dict, lin, on_trace: set[str], edges_on_trace: set[tuple[str, str]]) -> None:
    """Every operator drawn once, visible, inside the canvas, apart; texts inside their box; edges
    drawn, never over a box; the trace in the highlight colour, exactly on ``on_trace``."""
    manifest_nodes = lin.manifest["nodes"]
    assert sorted(n["id"] for n in drawn["nodes"]) == sorted(n["id"] for n in manifest_nodes)
    width, height = drawn["view"]["width"], drawn["view"]["height"]
    assert drawn["screen"]["width"] == pytest.approx(width) and drawn["screen"]["height"] == pytest.approx(height)
    boxes = {}
    for node in drawn["nodes"]:
        box, screen = node["box"], node["screen"]
        assert box["width"] > 0 and box["height"] > 0 and screen["width"] > 0 and screen["height"] > 0
        assert 0 <= box["x"] and box["x"] + box["width"] <= width and 0 <= box["y"] and box["y"] + box["height"] <= height
        for text in node["texts"]:
            t = text["box"]
            assert t["width"] > 0, text
            assert box["x"] <= t["x"] and t["x"] + t["width"] <= box["x"] + box["width"], f"text overflows: {text}"
            assert box["y"] <= t["y"] and t["y"] + t["height"] <= box["y"] + box["height"], f"text overflows: {text}"
        boxes[node["id"]] = box
    for (a, p), (b, q) in combinations(boxes.items(), 2):
        apart = (p["x"] + p["width"] <= q["x"] or q["x"] + q["width"] <= p["x"]
                 or p["y"] + p["height"] <= q["y"] or q["y"] + q["height"] <= p["y"])
        assert apart, f"nodes {a} and {b} overlap"

    highlighted = {n["id"] for n in drawn["nodes"] if n["stroke"] == TRACE_STROKE}
    assert highlighted == {n["id"] for n in drawn["nodes"] if "on-trace" in n["classes"].split()}
    assert highlighted == on_trace

    assert len(drawn["edges"]) == sum(len(n["inputs"]) for n in manifest_nodes)
    assert {(e["from"], e["to"]) for e in drawn["edges"]} == {(i, n["id"]) for n in manifest_nodes for i in n["inputs"]}
    for edge in drawn["edges"]:
        assert edge["length"] > 0
        for x, y in edge["points"]:
            for node_id, b in boxes.items():
                inside = b["x"] + 1 < x < b["x"] + b["width"] - 1 and b["y"] + 1 < y < b["y"] + b["height"] - 1
                assert not inside, f"edge {edge['from']}->{edge['to']} passes over node {node_id}"
    assert {(e["from"], e["to"]) for e in drawn["edges"] if e["stroke"] == TRACE_STROKE} == edges_on_trace


def test_browser_draws_the_healthcare_backward_trace(health, tmp_path):
    lin, merged, groups, data = health
    ids = _node_ids(lin)
    path = write_view(lin, tmp_path / "v.html", rows=[_health_row(data)], columns=["label"])
    drawn = _render(path, tmp_path)
    on = {v for k, v in ids.items() if k != "patients"}  # all but patients: no patient cell is a value of label
    edges = {(i, n["id"]) for n in lin.manifest["nodes"] for i in n["inputs"]} - {(ids["patients"], ids["merge_ssn"])}
    _assert_drawn(drawn, lin, on, edges)
    assert drawn["elements_in_svg"] and not {"foreignObject", "script", "image"} & set(drawn["elements_in_svg"])


def test_browser_draws_the_healthcare_forward_trace(health, tmp_path):
    lin, merged, groups, data = health
    ids = _node_ids(lin)
    patient = int(data.loc[_health_row(data), "pid"])
    drawn = _render(write_view(lin, tmp_path / "v.html", source="patients", source_rows=[patient]), tmp_path)
    on = {v for k, v in ids.items() if k != "histories"}
    edges = {(i, n["id"]) for n in lin.manifest["nodes"] for i in n["inputs"]} - {(ids["histories"], ids["merge_ssn"])}
    _assert_drawn(drawn, lin, on, edges)


def test_browser_draws_the_small_pipeline_with_and_without_a_trace(shop, tmp_path):
    lin, ids = shop
    drawn = _render(write_view(lin, tmp_path / "plain.html"), tmp_path)
    _assert_drawn(drawn, lin, set(), set())
    drawn = _render(write_view(lin, tmp_path / "traced.html", rows=[1], columns=["total"]), tmp_path)
    on = {ids[k] for k in ("events", "filter", "merge", "groupby", "assign")}
    edges = {(ids["events"], ids["filter"]), (ids["filter"], ids["merge"]), (ids["merge"], ids["groupby"]),
             (ids["groupby"], ids["assign"])}
    _assert_drawn(drawn, lin, on, edges)


def test_browser_shows_names_as_text(store, tmp_path):
    name, column = "<b>x & y</b>", "<i>a</i>"
    result = pd.DataFrame({column: [1, 2]}).hippo.source(name).hippo.compute()
    drawn = _render(write_view(result.hippo.lineage, tmp_path / "v.html", rows=[0]), tmp_path)
    assert drawn["nodes"][0]["texts"][0]["text"] == f"source {name}"
    assert not {"b", "i", "B", "I"} & set(drawn["elements_in_svg"])
