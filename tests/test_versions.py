"""The version floors: pyproject.toml's ``>=`` floors, ``.ci/min-versions.txt``'s ``==`` pins and the
README's requirements line say the same, so what the package claims is what CI's min-versions job
installs and tests (``.ci/min-versions``). In that job (``HIPPO_MIN_VERSIONS`` set) it also checks
that the venv really holds the pinned versions and the floor Python.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PINS_FILE = ROOT / ".ci" / "min-versions.txt"


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def floor_of(text: str) -> tuple[str, Version]:
    """``name``, ``X`` of a requirement written ``name[extras]>=X`` (the only form allowed)."""
    req = Requirement(text)
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == ">=", f"{text!r}: write each requirement as name>=floor"
    assert req.marker is None, f"{text!r}: a marker makes the floor depend on the platform; pin it per platform"
    return canonicalize_name(req.name), Version(specs[0].version)


def floors() -> dict[str, Version]:
    """Every floor in ``dependencies`` and all extras (a name in several must have one floor)."""
    project = pyproject()
    texts = list(project["dependencies"]) + [t for extra in project["optional-dependencies"].values() for t in extra]
    out: dict[str, Version] = {}
    for text in texts:
        name, floor = floor_of(text)
        assert out.setdefault(name, floor) == floor, f"{name}: two floors, {out[name]} and {floor}"
    return out


def pins() -> dict[str, str]:
    out = {}
    for line in PINS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.extras, f"{line!r}: write name==version"
        out[canonicalize_name(req.name)] = specs[0].version
    return out


def python_floor() -> tuple[int, int]:
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject()["requires-python"].strip())
    assert m, "requires-python: write >=3.N"
    return int(m.group(1)), int(m.group(2))


def test_min_versions_pin_exactly_the_pyproject_floors():
    want = {name: str(v) for name, v in floors().items()}
    got = pins()
    assert sorted(got) == sorted(want), "pyproject.toml and .ci/min-versions.txt name different packages"
    for name, floor in floors().items():
        assert Version(got[name]) == floor, f"{name}: pyproject says >={floor}, .ci/min-versions.txt pins =={got[name]}"
        assert got[name] == str(floor), f"{name}: write the floor in full ({floor}) in both files"


def test_readme_states_the_floors():
    text = (ROOT / "README.md").read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("Requires ")), None)
    assert line, "README.md: the 'Requires ...' line with the floors is missing"
    major, minor = python_floor()
    assert f"Python >= {major}.{minor}" in line, line
    for text_ in pyproject()["dependencies"]:
        name, floor = floor_of(text_)
        assert f"{Requirement(text_).name} >= {floor}" in line, f"README.md 'Requires' line: {name} >= {floor} missing"


@pytest.mark.parametrize("backend", ["pandas", "dask"])
def test_read_a_source_from_an_fsspec_url(store, backend):
    """The installed fsspec reads URLs for pandas and Dask (pandas 3.0 refuses fsspec older than 2024.10)."""
    import uuid

    import fsspec

    import hippo_dask as hippo

    url = f"memory://hippo-test-versions-{uuid.uuid4().hex}/xs.csv"
    with fsspec.open(url, "w") as f:
        f.write("x,y\n1,a\n2,b\n3,c\n")
    xs = hippo.read_csv(url, dask=backend == "dask")
    out = xs.hippo.filter(lambda p: p.x > 1).hippo.compute(**({"scheduler": "sync"} if backend == "dask" else {}))
    assert out["x"].tolist() == [2, 3]
    assert list(out.hippo.lineage.backward(rows=[1])["xs"].rows) == [2]


@pytest.mark.skipif(not os.environ.get("HIPPO_MIN_VERSIONS"), reason="only in CI's min-versions job (.ci/min-versions)")
def test_installed_versions_are_the_floors():
    assert sys.version_info[:2] == python_floor(), f"the min-versions job runs on Python {python_floor()}"
    for name, version in pins().items():
        assert metadata.version(name) == version, f"{name} {metadata.version(name)} installed, pinned =={version}"
    import hippo_dask

    assert Path(hippo_dask.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), (
        f"hippo_dask imported from {hippo_dask.__file__}, not from the job's venv {sys.prefix}")
