"""Source frames of this process, while they are alive: where a trace's rows are read back from.

``.hippo.source(name)`` registers the frame it was called on under the source's
node id, the id the run's manifest records for the source
(``manifest["sources"][name]["node"]``), so :attr:`hippo_dask.TraceSet.frame`
can show the traced rows themselves. Only a weak reference is kept: lineage
never keeps a frame alive.

A frame can change after it was registered. Its values are checked against
the run's fingerprints whenever rows are read from it
(:func:`hippo_dask.diagnose.replay.source_rows`); the fingerprints do not
cover the index, so the registry also keeps what the labels come from and
refuses a frame whose labels were replaced in place: the index object of a
pandas frame (``df.index = ...``, ``df.sort_index(inplace=True)`` put a new
one), the expression of a Dask frame (``ddf["x"] = ...`` makes a new one).
"""

from __future__ import annotations

import weakref
from typing import Any

from .errors import SourceChangedError

# node id -> (weak reference to the frame, what its labels came from: a weak reference to a
# pandas frame's index object, or a Dask frame's expression name). Plain dict operations, no
# lock: the weak reference callbacks that remove entries run inside garbage collection, at any
# point of any thread, where taking a lock that thread already holds would deadlock.
_frames: dict[str, tuple[weakref.ref, Any]] = {}


def register(node_id: str, frame: Any) -> None:
    """Remember ``frame`` (pandas or Dask) as the source of node ``node_id``, while it is alive."""

    def forget(ref: weakref.ref, node_id: str = node_id) -> None:
        entry = _frames.get(node_id)
        if entry is not None and entry[0] is ref:  # not a newer registration under the same id
            _frames.pop(node_id, None)

    labels = frame._name if hasattr(frame, "to_delayed") else weakref.ref(frame.index)
    _frames[node_id] = (weakref.ref(frame, forget), labels)


def frame_of(node_id: str, name: str) -> Any | None:
    """The registered source frame of node ``node_id`` (source ``name``), or None if there is none alive.

    Raises
    ------
    SourceChangedError
        The frame is alive but its labels were replaced since it was registered.
    """
    entry = _frames.get(node_id)
    frame = entry[0]() if entry is not None else None
    if frame is None:
        return None
    labels = entry[1]
    if isinstance(labels, str):
        if frame._name != labels:
            raise SourceChangedError(
                f"source {name!r}: the Dask frame given to .hippo.source() was changed in place since (a column "
                "assigned, ...): it is not the frame the run read. Pass the data the run read: "
                f"trace[{name!r}].frame_from(ddf)")
    elif labels() is not frame.index:
        raise SourceChangedError(
            f"source {name!r}: the index of the frame given to .hippo.source() was replaced since (df.index = ..., "
            "an inplace sort, reset or drop): its labels are not the ones the run read. Pass the data the run read: "
            f"trace[{name!r}].frame_from(df)")
    return frame
