"""Diagnosis on a run's lineage: replay, inspect, debugging failed user functions, isolating bad rows.

Each builds on the queries of :mod:`hippo_dask.lineage` and on a run's
replay record; :class:`hippo_dask.Lineage` exposes them as methods.
"""

from .replay import Difference, ReplayReport

__all__ = ["Difference", "ReplayReport"]
