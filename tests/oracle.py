"""A slow, obvious reference implementation of DESIGN section 3.

Every cell carries the explicit set of source cells it was computed from,
and every row the explicit set of source rows it exists because of. Each
operation is written out row by row from the table in section 3; nothing
here knows about slots, fragments or the Rust core. Tests run a pipeline
through hippo_dask and through this oracle and compare every answer.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

Cell = tuple[str, int, str]  # (source, row, column)
SourceRow = tuple[str, int]


@dataclass
class OracleFrame:
    df: pd.DataFrame  # user columns, RangeIndex
    cells: dict[str, list[frozenset[Cell]]]
    rows: list[frozenset[SourceRow]]
    #: Dask partition label of each row (see :meth:`partition_labels`), or None
    #: when unknown (after a shuffle: merge, groupby, sort, concat, drop_duplicates).
    #: Row-preserving operations keep it; per-partition user functions need it.
    parts: list[int] | None = None

    # ------------------------------------------------------------------ helpers
    def _take(self, positions: Sequence[int], keep_parts: bool = False) -> "OracleFrame":
        positions = [int(p) for p in positions]
        return OracleFrame(
            self.df.iloc[positions].reset_index(drop=True),
            {c: [v[i] for i in positions] for c, v in self.cells.items()},
            [self.rows[i] for i in positions],
            [self.parts[i] for i in positions] if keep_parts and self.parts is not None else None,
        )

    @staticmethod
    def partition_labels(df: pd.DataFrame, npartitions: int) -> list[int]:
        """Partition of each row of ``dd.from_pandas(df, npartitions, sort=False)``, asked of Dask."""
        import dask.dataframe as dd

        if len(df) == 0:
            return []
        lengths = dd.from_pandas(df.reset_index(drop=True), npartitions=npartitions, sort=False).map_partitions(len).compute(scheduler="sync")
        labels = [p for p, n in enumerate(lengths) for _ in range(int(n))]
        assert len(labels) == len(df)
        return labels

    # ------------------------------------------------------------------ ops
    @staticmethod
    def source(df: pd.DataFrame, name: str, npartitions: int | None = None) -> "OracleFrame":
        """A root; with ``npartitions``, rows carry the partition labels Dask gives them."""
        df = df.reset_index(drop=True)
        return OracleFrame(
            df,
            {c: [frozenset({(name, i, c)}) for i in range(len(df))] for c in df.columns},
            [frozenset({(name, i)}) for i in range(len(df))],
            None if npartitions is None else OracleFrame.partition_labels(df, npartitions),
        )

    def filter(self, predicate: Callable[[pd.DataFrame], Any]) -> "OracleFrame":
        mask = np.asarray(predicate(self.df), dtype=bool)
        return self._take(np.flatnonzero(mask), keep_parts=True)

    def dropna(self, subset: Sequence[str] | None = None) -> "OracleFrame":
        mask = self.df[list(subset or self.df.columns)].notna().all(axis=1).to_numpy()
        return self._take(np.flatnonzero(mask), keep_parts=True)

    def sort_values(self, by: Sequence[str] | str) -> "OracleFrame":
        order = self.df.reset_index(drop=True).sort_values(by, kind="stable").index
        return self._take(order)

    def drop_duplicates(self, subset: Sequence[str] | None = None, keep: str = "first") -> "OracleFrame":
        mask = ~self.df.duplicated(subset=list(subset) if subset else None, keep=keep).to_numpy()
        return self._take(np.flatnonzero(mask))

    def head(self, n: int) -> "OracleFrame":
        return self._take(range(min(n, len(self.df))))

    def select(self, columns: Sequence[str]) -> "OracleFrame":
        return OracleFrame(self.df[list(columns)], {c: self.cells[c] for c in columns}, self.rows, self.parts)

    def drop(self, columns: Sequence[str]) -> "OracleFrame":
        return self.select([c for c in self.df.columns if c not in columns])

    def rename(self, mapping: dict[str, str]) -> "OracleFrame":
        return OracleFrame(self.df.rename(columns=mapping), {mapping.get(c, c): v for c, v in self.cells.items()}, self.rows, self.parts)

    def with_values(self, df: pd.DataFrame) -> "OracleFrame":
        """Same rows and lineage, new values (fillna, replace, astype)."""
        return OracleFrame(df.reset_index(drop=True), dict(self.cells), self.rows, self.parts)

    def assign(self, name: str, func: Callable[[pd.DataFrame], Any], reads: Sequence[str]) -> "OracleFrame":
        df = self.df.assign(**{name: func(self.df)})
        cells = dict(self.cells)
        cells[name] = [frozenset().union(*(self.cells[r][i] for r in reads)) for i in range(len(df))]
        return OracleFrame(df, cells, self.rows, self.parts)

    def flatmap(self, func: Callable[[dict], Any], columns: Sequence[str], reads: Sequence[str]) -> "OracleFrame":
        records, rows = [], []
        cells: dict[str, list[frozenset[Cell]]] = {c: [] for c in columns}
        for i, rec in enumerate(self.df.to_dict("records")):
            for out in func(rec):
                records.append(out)
                rows.append(self.rows[i])
                for c in columns:
                    same = c in self.cells and c not in reads_written(columns, self.df.columns)
                    cells[c].append(self.cells[c][i] if same else frozenset().union(*(self.cells[r][i] for r in reads)))
        return OracleFrame(pd.DataFrame.from_records(records, columns=list(columns)), cells, rows)

    def map(self, func: Callable[[pd.DataFrame], pd.DataFrame], reads: Sequence[str], writes: Sequence[str]) -> "OracleFrame":
        df = func(self.df.copy())
        cells = {}
        for c in df.columns:
            if c in writes:
                cells[c] = [frozenset().union(*(self.cells[r][i] for r in reads)) for i in range(len(df))]
            else:
                cells[c] = self.cells[c]
        return OracleFrame(df.reset_index(drop=True), cells, self.rows, self.parts)

    def explode(self, column: str) -> "OracleFrame":
        exploded = self.df.explode(column)
        positions = [int(p) for p in exploded.index]  # RangeIndex in: labels are positions
        out = self._take(positions)
        return OracleFrame(exploded.reset_index(drop=True), out.cells, out.rows)

    def groupby_agg(self, keys: Sequence[str], named: dict[str, tuple[str, str]], dropna: bool = True) -> "OracleFrame":
        # Members are found by group number, not by looking a key up: iterrows() turned
        # int64 keys >= 2**53 into floats (a wrong or missing group), and NaN keys
        # (dropna=False) are not found by lookup at all.
        return self._groupby_agg_by_codes(list(keys), named, dropna=dropna)

    def _group_codes(self, keys: list[str], dropna: bool) -> np.ndarray:
        """Group number of each row (pandas' sorted group order), -1 for rows in no group."""
        if len(self.df) == 0:
            return np.zeros(0, dtype=np.int64)
        codes = self.df.reset_index(drop=True).groupby(keys, sort=True, dropna=dropna, observed=True).ngroup()
        return codes.fillna(-1).astype(np.int64).to_numpy()

    def _groupby_agg_by_codes(self, keys: list[str], named: dict[str, tuple[str, str]], dropna: bool) -> "OracleFrame":
        """groupby().agg through group numbers: NaN/None/NaT keys form groups when ``dropna=False``."""
        frame = self.df.reset_index(drop=True)
        agg = frame.groupby(keys, sort=True, dropna=dropna, observed=True).agg(
            **{k: pd.NamedAgg(c, f) for k, (c, f) in named.items()}).reset_index()
        codes = self._group_codes(keys, dropna)
        cells: dict[str, list[frozenset[Cell]]] = {c: [] for c in keys + list(named)}
        rows: list[frozenset[SourceRow]] = []
        for g in range(len(agg)):
            members = np.flatnonzero(codes == g)
            assert len(members), "group numbering disagrees with the aggregation"
            for k in keys:  # the group's key is the key of its first member
                assert _canon(frame[k].iloc[members[0]]) == _canon(agg[k].iloc[g]), (k, g)
                cells[k].append(frozenset().union(*(self.cells[k][m] for m in members)))
            for name, (col, func) in named.items():
                cells[name].append(frozenset() if func == "size" else frozenset().union(*(self.cells[col][m] for m in members)))
            rows.append(frozenset().union(*(self.rows[m] for m in members)))
        return OracleFrame(agg.reset_index(drop=True), cells, rows)

    # ---------------------------------------------------------- row-dependent user functions
    def _chunks(self, per_partition: bool) -> list[np.ndarray]:
        """Row positions each call of a user function sees: all rows (pandas) or one partition (Dask)."""
        if not per_partition:
            return [np.arange(len(self.df))]
        if self.parts is None:
            raise AssertionError("oracle: partition labels unknown here (after a shuffle); a per-partition function has no oracle")
        labels = np.asarray(self.parts, dtype=np.int64)
        return [np.flatnonzero(labels == p) for p in sorted(set(self.parts))]

    def assign_rows(self, name: str, func: Callable[[pd.DataFrame], Any], reads: Sequence[str],
                    depends: Callable[[pd.DataFrame], Sequence[Sequence[int]]], per_partition: bool = False) -> "OracleFrame":
        """assign(name=func) where row i of a chunk depends on ``reads`` of chunk rows ``depends(chunk)[i]``.

        ``func`` runs once per chunk (the whole frame, or each Dask partition,
        see :meth:`_chunks`); ``depends`` gives, per chunk row, the chunk
        positions it depends on.
        """
        pieces: list[pd.Series] = []
        deps: list[frozenset[Cell]] = [frozenset()] * len(self.df)
        for positions in self._chunks(per_partition):
            chunk = self.df.iloc[positions].reset_index(drop=True)
            pieces.append(pd.Series(func(chunk), index=chunk.index).set_axis(positions))
            lists = depends(chunk)
            for j, i in enumerate(positions):
                deps[i] = frozenset().union(*(self.cells[r][positions[d]] for d in lists[j] for r in reads))
        series = pd.concat(pieces).sort_index() if pieces else pd.Series(func(self.df))
        assert len(series) == len(self.df)
        df = self.df.assign(**{name: series.to_numpy()})
        cells = dict(self.cells)
        cells[name] = deps
        return OracleFrame(df, cells, self.rows, self.parts)

    def assign_all(self, name: str, func: Callable[[pd.DataFrame], Any], reads: Sequence[str], per_partition: bool = False) -> "OracleFrame":
        """Declared ``lin.All(reads)``: every value depends on ``reads`` of every row the function saw."""
        return self.assign_rows(name, func, reads, lambda c: [range(len(c))] * len(c), per_partition)

    def assign_window(self, name: str, func: Callable[[pd.DataFrame], Any], reads: Sequence[str], preceding: int | None,
                      following: int = 0, per_partition: bool = False) -> "OracleFrame":
        """Declared ``lin.Window(reads, preceding, following)`` in the current row order (``None``: unbounded)."""
        def depends(chunk: pd.DataFrame) -> list[range]:
            n = len(chunk)
            lo = (lambda i: 0) if preceding is None else (lambda i: max(0, i - preceding))
            hi = (lambda i: n) if following is None else (lambda i: min(n, i + following + 1))
            return [range(lo(i), hi(i)) for i in range(n)]
        return self.assign_rows(name, func, reads, depends, per_partition)

    def groupby_transform(self, keys: Sequence[str], out: str, col: str, func: str, dropna: bool = True) -> "OracleFrame":
        """``groupby(keys, dropna).transform(out=(col, func))``: same rows, same order, one new column.

        ``out`` of a row depends on ``col`` of every row of its group; rows in no
        group (an NA key with ``dropna=True``) get an empty set. Other columns: identity.
        """
        keys = list(keys)
        frame = self.df.reset_index(drop=True)
        codes = self._group_codes(keys, dropna)
        values = frame.groupby(keys, sort=True, dropna=dropna, observed=True)[col].transform(func) if len(frame) else pd.Series([], dtype="float64")
        members = {g: np.flatnonzero(codes == g) for g in set(codes.tolist()) if g >= 0}
        deps = [frozenset() if codes[i] < 0 else frozenset().union(*(self.cells[col][m] for m in members[codes[i]])) for i in range(len(frame))]
        cells = dict(self.cells)
        cells[out] = deps
        return OracleFrame(frame.assign(**{out: values.to_numpy()}), cells, self.rows, self.parts)

    def merge(self, right: "OracleFrame", how: str, on: Sequence[str] | None = None, suffixes=("_x", "_y"),
              left_on: Sequence[str] | None = None, right_on: Sequence[str] | None = None) -> "OracleFrame":
        left_on = list(on if on is not None else left_on)
        right_on = list(on if on is not None else right_on)
        shared = {lk for lk, rk in zip(left_on, right_on) if lk == rk}  # one output column, from both sides
        left_df = self.df.assign(__l=np.arange(len(self.df)))
        right_df = right.df.assign(__r=np.arange(len(right.df)))
        merged = left_df.merge(right_df, how=how, left_on=left_on, right_on=right_on, suffixes=suffixes)
        overlap = (set(self.df.columns) & set(right.df.columns)) - shared
        out_cols = [c for c in merged.columns if c not in ("__l", "__r")]
        cells: dict[str, list[frozenset[Cell]]] = {c: [] for c in out_cols}
        rows: list[frozenset[SourceRow]] = []
        for _, rec in merged.iterrows():
            li = None if pd.isna(rec["__l"]) else int(rec["__l"])
            ri = None if pd.isna(rec["__r"]) else int(rec["__r"])
            for c in self.df.columns:
                name = c + suffixes[0] if c in overlap else c
                parts = [self.cells[c][li]] if li is not None else []
                if c in shared and ri is not None:
                    parts.append(right.cells[c][ri])
                cells[name].append(frozenset().union(*parts))
            for c in right.df.columns:
                if c in shared:
                    continue
                name = c + suffixes[1] if c in overlap else c
                cells[name].append(right.cells[c][ri] if ri is not None else frozenset())
            rows.append((self.rows[li] if li is not None else frozenset()) | (right.rows[ri] if ri is not None else frozenset()))
        return OracleFrame(merged[out_cols].reset_index(drop=True), cells, rows)

    @staticmethod
    def concat(frames: Sequence["OracleFrame"]) -> "OracleFrame":
        df = pd.concat([f.df for f in frames if len(f.df.columns)], ignore_index=True)
        cells = {c: [] for c in df.columns}
        rows: list[frozenset[SourceRow]] = []
        for f in frames:
            for c in df.columns:
                cells[c].extend(f.cells[c] if c in f.cells else [frozenset()] * len(f.df))
            rows.extend(f.rows)
        return OracleFrame(df, cells, rows)


# ---------------------------------------------------------------------- ML steps (DESIGN section 3, last two rows)


@dataclass
class OracleModel:
    """A fitted estimator with its model dependency: every training row's cells, per column."""

    fitted: Any
    X: list[str]
    y: str | None
    column_cells: dict[str, frozenset[Cell]]  # training column -> cells of every training row
    rows: frozenset[SourceRow]  # row lineage of every training row


def oracle_fit(frame: OracleFrame, estimator: Any, X: Sequence[str], y: str | None = None, fitted: Any = None) -> OracleModel:
    """Fit (a clone of) ``estimator`` on the frame; ``fitted`` adopts an already fitted one for the values."""
    from sklearn.base import clone

    X = list(X)
    if fitted is None:
        fitted = clone(estimator)
        fitted.fit(frame.df[X]) if y is None else fitted.fit(frame.df[X], frame.df[y])
    columns = X + ([y] if y is not None else [])
    column_cells = {c: frozenset().union(*frame.cells[c]) if len(frame.df) else frozenset() for c in columns}
    return OracleModel(fitted, X, y, column_cells, frozenset().union(*frame.rows) if frame.rows else frozenset())


def _dense(values: Any) -> np.ndarray:
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


def perturbed_dependencies(fitted: Any, sample: pd.DataFrame, X: Sequence[str],
                           values_from: pd.DataFrame | None = None) -> dict[str, set[str]]:
    """Output column -> input columns whose change changes it, found by changing one input at a time.

    Independent of how hippo_dask reads an estimator's structure: each input
    column of ``sample`` is replaced by other values (rotated by one row; and,
    one at a time, every category or a few quantiles of ``values_from``, the
    training rows, so a rare category's indicator column is seen to change too),
    the estimator re-applied, and the outputs that changed are the ones made from it.
    """
    names = [str(n) for n in fitted.get_feature_names_out(list(X))]
    base = _dense(fitted.transform(sample[list(X)]))
    deps: dict[str, set[str]] = {n: set() for n in names}
    values_from = sample if values_from is None else values_from
    for c in X:
        col = sample[c]
        variants = [np.roll(col.to_numpy(), 1)]
        pool = values_from[c].dropna()
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            numbers = pool.to_numpy(dtype=float)
            spread = float(np.nanstd(numbers)) if len(numbers) else 1.0
            candidates = list(np.quantile(numbers, [0, 0.25, 0.5, 0.75, 1])) if len(numbers) else []
            candidates += [float(np.nanmean(numbers)) + 10 * spread + 1 if len(numbers) else 1.0, np.nan]
        else:
            candidates = list(pd.unique(pool))[:200]
        variants += [np.full(len(col), v, dtype=object if not isinstance(v, float) else float) for v in candidates]
        for variant in variants:
            changed = sample[list(X)].copy()
            changed[c] = pd.Series(variant, index=changed.index).astype(col.dtype, errors="ignore") if len(variant) else variant
            try:
                out = _dense(fitted.transform(changed))
            except (ValueError, TypeError):
                continue  # a value this estimator refuses: says nothing
            for j, n in enumerate(names):
                a, b = base[:, j], out[:, j]
                same = (a == b) | (pd.isna(a) & pd.isna(b))
                if not same.all():
                    deps[n].add(c)
    return deps


def oracle_transform(frame: OracleFrame, model: OracleModel, through_models: bool = False,
                     deps: dict[str, set[str]] | None = None, values_from: pd.DataFrame | None = None) -> OracleFrame:
    """Replace the model's inputs by its outputs; each output cell <- its inputs in the row (+ training rows)."""
    X = model.X
    names = [str(n) for n in model.fitted.get_feature_names_out(X)]
    deps = perturbed_dependencies(model.fitted, frame.df, X, values_from) if deps is None else deps
    values = _dense(model.fitted.transform(frame.df[X])) if len(frame.df) else np.zeros((0, len(names)))
    kept = [c for c in frame.df.columns if c not in X]
    df = pd.concat([frame.df[kept].reset_index(drop=True), pd.DataFrame(values, columns=names)], axis=1)
    cells = {c: frame.cells[c] for c in kept}
    for n in names:
        model_part = frozenset()
        if through_models:
            model_part = frozenset().union(*(model.column_cells[c] for c in sorted(deps[n]) + ([model.y] if model.y else [])))
        cells[n] = [frozenset().union(*(frame.cells[c][i] for c in deps[n])) | model_part for i in range(len(df))]
    rows = [r | model.rows for r in frame.rows] if through_models else frame.rows
    return OracleFrame(df, cells, rows, frame.parts)


def oracle_predict(frame: OracleFrame, model: OracleModel, out: str, through_models: bool = False) -> OracleFrame:
    """Add predictions; a prediction <- the row's feature cells (+ every training row's features and label)."""
    X = model.X
    values = model.fitted.predict(frame.df[X]) if len(frame.df) else np.array([])
    df = frame.df.assign(**{out: values})
    cells = dict(frame.cells)
    model_part = frozenset()
    if through_models:
        model_part = frozenset().union(*(model.column_cells[c] for c in X + ([model.y] if model.y else [])))
    cells[out] = [frozenset().union(*(frame.cells[c][i] for c in X)) | model_part for i in range(len(df))]
    rows = [r | model.rows for r in frame.rows] if through_models else frame.rows
    return OracleFrame(df, cells, rows, frame.parts)


def reads_written(columns: Sequence[str], inputs: Sequence[str]) -> set[str]:
    """Flatmap output columns that are new (computed from its reads)."""
    return {c for c in columns if c not in set(inputs)}


# ---------------------------------------------------------------------- comparison


def _canon(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.9g}")
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_canon(v) for v in value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def row_keys(df: pd.DataFrame) -> list[tuple]:
    """Order-free identity of each row's values (floats rounded, NaN/None alike)."""
    cols = sorted(df.columns)
    return [tuple(_canon(v) for v in rec) for rec in df[cols].itertuples(index=False, name=None)]


def oracle_records(frame: OracleFrame) -> Counter:
    """Multiset of (values, row lineage, per-column cell lineage) over the oracle's rows."""
    keys = row_keys(frame.df)
    cols = sorted(frame.df.columns)
    return Counter(
        (keys[i], frame.rows[i], tuple(frame.cells[c][i] for c in cols)) for i in range(len(frame.df))
    )


def hippo_records(result: pd.DataFrame, through_models: bool = False) -> Counter:
    """The same multiset, read from a computed result's lineage, one query per cell."""
    return Counter(hippo_row_records(result, through_models))


def check_forward(result: pd.DataFrame, frame: OracleFrame, sources: dict[str, pd.DataFrame], samples: int = 4,
                  through_models: bool = False) -> None:
    """Forward traces of a few source cells (and whole rows) match the oracle."""
    lineage = result.hippo.lineage
    keys = row_keys(result)
    okeys = row_keys(frame.df)
    ocols = list(frame.df.columns)
    for name, src in sources.items():
        if name not in lineage.sources:  # the pipeline never read it
            assert not any(r for rows in frame.rows for r in rows if r[0] == name)
            continue
        picks = np.linspace(0, len(src) - 1, num=min(samples, len(src)), dtype=int) if len(src) else []
        for r in sorted(set(int(p) for p in picks)):
            for c in list(src.columns) + [None]:
                got = lineage.forward(name, rows=[r], columns=None if c is None else [c], through_models=through_models)
                if c is None:
                    got_rows = Counter(keys[i] for i in got.rows)
                    want_rows = Counter(okeys[i] for i in range(len(frame.df)) if (name, r) in frame.rows[i])
                    assert got_rows == want_rows, (name, r, "rows", got_rows, want_rows)
                    continue
                got_cells = Counter((keys[i], col) for i, col in got.cells.itertuples(index=False, name=None))
                want_cells = Counter(
                    (okeys[i], oc) for i in range(len(frame.df)) for oc in ocols if (name, r, c) in frame.cells[oc][i]
                )
                assert got_cells == want_cells, (name, r, c, got_cells, want_cells)


def compare_sampled(result: pd.DataFrame, frame: OracleFrame, sample: int = 25, seed: int = 0) -> None:
    """Row lineage of every row, and cell lineage of a sample of rows, match the oracle.

    For frames too big for one query per cell: rows are matched to oracle rows
    by (values, row lineage), which identifies a row up to rows whose lineage
    is the same anyway.
    """
    lineage = result.hippo.lineage
    keys = row_keys(result)
    ours: dict[tuple, int] = {}
    counted = Counter()
    for i in range(len(result)):
        whole = lineage.backward(rows=[i])
        key = (keys[i], frozenset((src, int(r)) for src, ts in whole.items() for r in ts.rows))
        counted[key] += 1
        ours.setdefault(key, i)
    okeys = row_keys(frame.df)
    theirs: dict[tuple, int] = {}
    expected = Counter()
    for j in range(len(frame.df)):
        key = (okeys[j], frame.rows[j])
        expected[key] += 1
        theirs.setdefault(key, j)
    assert counted == expected
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(result), size=min(sample, len(result)), replace=False) if len(result) else []
    for i in picks:
        key = (keys[i], frozenset((src, int(r)) for src, ts in lineage.backward(rows=[int(i)]).items() for r in ts.rows))
        j = theirs[key]
        for c in result.columns:
            trace = lineage.backward(rows=[int(i)], columns=[c])
            got = frozenset((src, int(r), str(col)) for src, ts in trace.items() for r, col in ts.cells.itertuples(index=False, name=None))
            assert got == frame.cells[c][j], (int(i), c)


# ---------------------------------------------------------------------- per-row and bounded comparison


def hippo_row_records(result: pd.DataFrame, through_models: bool = False) -> list[tuple]:
    """Per result row, in order: (values, row lineage, per-column cell lineage), as :func:`hippo_records`."""
    lineage = result.hippo.lineage
    keys = row_keys(result)
    cols = sorted(result.columns)
    out = []
    for i in range(len(result)):
        whole = lineage.backward(rows=[i], through_models=through_models)
        row_lin = frozenset((src, int(r)) for src, ts in whole.items() for r in ts.rows)
        per_col = []
        for c in cols:
            trace = lineage.backward(rows=[i], columns=[c], through_models=through_models)
            per_col.append(frozenset(
                (src, int(r), str(col)) for src, ts in trace.items() for r, col in ts.cells.itertuples(index=False, name=None)
            ))
        out.append((keys[i], row_lin, tuple(per_col)))
    return out


def check_between(result: pd.DataFrame, low: OracleFrame, high: OracleFrame) -> None:
    """Every result row matches an oracle row whose cell lineage bounds it: low <= got <= high, per column.

    ``low`` and ``high`` are two oracles of the same pipeline (same values, same
    rows) that differ only in how precise one step's cell lineage is, e.g. the
    exact dependencies of ``x.shift(1)`` (low) and its declared ``Window(1)``
    (high). Row lineage and values must be exact. Rows are matched greedily by
    (values, row lineage).
    """
    assert row_keys(low.df) == row_keys(high.df) and low.rows == high.rows
    cols = sorted(low.df.columns)
    assert sorted(result.columns) == cols, (sorted(result.columns), cols)
    okeys = row_keys(low.df)
    free: dict[tuple, list[int]] = {}
    for j in range(len(low.df)):
        free.setdefault((okeys[j], low.rows[j]), []).append(j)
    for i, (key, row_lin, per_col) in enumerate(hippo_row_records(result)):
        candidates = free.get((key, row_lin), [])
        assert candidates, ("no oracle row with these values and row lineage", i, key, sorted(row_lin))
        for n, j in enumerate(candidates):
            if all(low.cells[c][j] <= got <= high.cells[c][j] for c, got in zip(cols, per_col)):
                del candidates[n]
                break
        else:
            j = candidates[0]
            bad = {c: (sorted(got), sorted(low.cells[c][j]), sorted(high.cells[c][j]))
                   for c, got in zip(cols, per_col) if not low.cells[c][j] <= got <= high.cells[c][j]}
            raise AssertionError(f"row {i}: cell lineage outside [exact, declared] (got, low, high): {bad}")


def check_forward_between(result: pd.DataFrame, low: OracleFrame, high: OracleFrame, sources: dict[str, pd.DataFrame],
                          samples: int = 3) -> None:
    """Forward traces of sampled source cells lie between the two oracles' (as multisets of (row values, column))."""
    lineage = result.hippo.lineage
    keys = row_keys(result)
    okeys = row_keys(low.df)
    ocols = list(low.df.columns)
    for name, src in sources.items():
        if name not in lineage.sources:
            continue
        picks = np.linspace(0, len(src) - 1, num=min(samples, len(src)), dtype=int) if len(src) else []
        for r in sorted(set(int(p) for p in picks)):
            for c in src.columns:
                got = lineage.forward(name, rows=[r], columns=[c])
                got_cells = Counter((keys[i], col) for i, col in got.cells.itertuples(index=False, name=None))
                bounds = [Counter((okeys[i], oc) for i in range(len(o.df)) for oc in ocols if (name, r, c) in o.cells[oc][i])
                          for o in (low, high)]
                assert all(got_cells[k] >= n for k, n in bounds[0].items()) and all(
                    bounds[1][k] >= n for k, n in got_cells.items()), (name, r, c, got_cells, bounds)
