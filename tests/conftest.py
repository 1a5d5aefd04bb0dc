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


@pytest.fixture(scope="module", params=["threads", "processes"])
def cluster_client(request):
    """A 2-worker ``distributed.LocalCluster`` (in-process threads, or worker processes) and its client.

    Yields ``(processes, client)``; compute with ``scheduler=client``. Worker
    processes import the hippo_dask this process imports; a test module whose
    functions run on them registers itself with ``cloudpickle.register_pickle_by_value``.
    """
    import hippo_dask as hippo
    from distributed import Client, LocalCluster

    processes = request.param == "processes"
    kwargs = {}
    if processes:
        pkg_parent = str(Path(hippo.__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in [pkg_parent, os.environ.get("PYTHONPATH", "")] if p)
        kwargs["env"] = {"PYTHONPATH": path}
    else:
        kwargs["protocol"] = "tcp"  # host= needs tcp; the in-process default is inproc://
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0",
                      host="127.0.0.1", **kwargs) as cluster, Client(cluster, set_as_default=False) as client:
        yield processes, client
