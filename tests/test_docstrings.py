"""The examples in public docstrings run and show what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hippo_dask.accessor", "hippo_dask.lin", "hippo_dask.identity", "hippo_dask.lineage", "hippo_dask.store",
           "hippo_dask.ml", "hippo_dask.readers", "hippo_dask.examples", "hippo_dask.diagnose.debug", "hippo_dask.diagnose.replay",
           "hippo_dask.diagnose.inspect", "hippo_dask.diagnose.isolate", "hippo_dask.checks",
           "hippo_dask.diagnose.explain", "hippo_dask.cli", "hippo_dask.view"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
