"""The main job: the healthcare pipeline on a local Dask cluster, traced.

Runs the classic healthcare pipeline (data shipped in the package) on a
``distributed.LocalCluster`` of worker processes, commits its lineage to the
store (default ``./.hippo``), and prints backward and forward traces a person
can read. ``python -m hippo_dask demo`` or ``hippo demo``.
"""

from __future__ import annotations

import time
from typing import TextIO

import pandas as pd


def _show_rows(frame: pd.DataFrame, rows, columns=None, limit: int = 6) -> str:
    rows = list(rows)[:limit]
    shown = frame.iloc[rows] if columns is None else frame.iloc[rows][list(columns)]
    return shown.to_string()


def run(workers: int = 2, partitions: int = 4, store: str | None = None, out: TextIO | None = None) -> str:
    """Run the demo; return the committed run id."""
    import sys

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import hippo_dask as hippo
    from hippo_dask.examples import healthcare, load_healthcare

    import logging

    out = out or sys.stdout
    # distributed logs every p2p shuffle it starts at WARNING; not news for a demo
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    say = lambda *a: print(*a, file=out)  # noqa: E731
    if store is not None:
        hippo.set_store(store)
    patients, histories = load_healthcare()
    say(f"hippo_dask {hippo.__version__}: healthcare pipeline, {len(patients)} patients, {len(histories)} histories")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        say(f"cluster: {len(client.scheduler_info()['workers'])} worker processes at {cluster.scheduler_address}")
        started = time.perf_counter()
        pipeline = healthcare(
            dd.from_pandas(patients, npartitions=partitions, sort=False),
            dd.from_pandas(histories, npartitions=partitions, sort=False),
        )
        result = pipeline.hippo.compute()
        elapsed = time.perf_counter() - started
    lineage = result.hippo.lineage
    result = result.reset_index(drop=True)
    say(f"computed {len(result)} rows x {len(result.columns)} columns in {elapsed:.2f} s; "
        f"run {lineage.run_id} committed to {lineage.store.url}")
    say("")

    labelled = result.index[result["label"].astype(bool)].tolist()
    row = labelled[0] if labelled else 0
    say(f"== backward: why is result row {row} labelled {bool(result.loc[row, 'label'])}? ==")
    say(_show_rows(result, [row]))
    trace = lineage.backward(rows=[row], columns=["label"])
    histories_rows = trace["histories"].rows
    say(f"'label' compares the row's complications with the mean complications of its age group, so the "
        f"label cell was computed from {len(trace['histories'].cells)} source cells of histories, in "
        f"{len(histories_rows)} histories rows (the row's own and those the mean was taken over), and from "
        f"{len(trace['patients'].cells)} cells of patients (the age group picks the rows the mean is taken "
        "over; it is not a value the mean is computed from). Cells per source column:")
    say(trace["histories"].cells.groupby("column").size().rename("cells").to_string())
    say("")

    say(f"== backward: where does row {row}'s income come from? ==")
    trace = lineage.backward(rows=[row], columns=["income"])
    src_row = int(trace["patients"].rows[0])
    say(f"patients row {src_row}:")
    say(_show_rows(patients, [src_row], ["id", "first_name", "last_name", "county", "income", "age_group"]))
    say("")

    hist_row = int(lineage.backward(rows=[row], columns=["smoker"])["histories"].rows[0])
    say(f"== forward: which results does history row {hist_row}'s complications value touch? ==")
    hits = lineage.forward("histories", rows=[hist_row], columns=["complications"])
    say(f"the 'complications' cell of histories row {hist_row} was used to compute {len(hits.cells)} result "
        f"cells, in {len(hits.rows)} result rows (every label of its age group in the kept counties), e.g.:")
    say(_show_rows(result, hits.rows, ["last_name", "county", "label"]))
    say("")

    say("== forward: a corrupt patients batch (rows 0-49): which outputs did it touch? ==")
    hits = lineage.forward("patients", rows=range(50))
    say(f"{len(hits.rows)} of {len(result)} result rows exist because of them (row lineage: one of these "
        f"patients was joined into the row); {len(hits.cells)} result cells were computed from their values "
        "(cell lineage): those are what a recompute without the batch can change")
    say("")
    say(f"reopen later: hippo.open({lineage.store.url!r}, {lineage.run_id!r})")
    return lineage.run_id


def main() -> None:
    run()


if __name__ == "__main__":
    main()
