from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/oracle.py

#: ../shared/data beside the repository (present on developer machines and in CI).
SHARED_DATA = Path(os.environ.get("HIPPO_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def store(tmp_path):
    import hippo_dask as hippo

    return hippo.set_store(tmp_path / "store")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not found (the shared datasets live beside the repository)")
    return SHARED_DATA
