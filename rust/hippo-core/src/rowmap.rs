//! Row maps: which input rows each output row of an operator comes from.
//!
//! A map relates `n_in` input rows to `n_out` output rows; mathematically it is a set of
//! (output row, input row) pairs. Each kind stores the smallest description of that set
//! (a function of a few parameters where possible) and answers batched queries directly.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use crate::bitset::Bitset;
use crate::error::{invalid, CoreError, Result};
use crate::search::{
    gallop, group_csr, is_non_decreasing, is_strictly_increasing, sorted_unique, sorted_unique_of,
    union_of_groups, Csr,
};

/// The kinds of row map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// Output row i <- input row i.
    Identity,
    /// Output row `offset + i` <- input row i (one piece of a concat).
    Offset,
    /// Output row j <- the j-th kept input row (filter).
    Select,
    /// Output row i <- input row `order[i]` (sort).
    Permutation,
    /// Input row i -> `counts[i]` consecutive output rows (explode).
    Expand,
    /// Input row i -> output row `codes[i]` (aggregation).
    Group,
    /// Explicit (output, input) pairs (join).
    Pair,
    /// Output j <- inputs `[j*step, j*step + size)`, clipped (sliding window).
    Window,
    /// Every output row <- every input row.
    All,
}

impl MapKind {
    /// Lower-case name, as the Python `RowMap.kind` shows it.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Identity => "identity",
            MapKind::Offset => "offset",
            MapKind::Select => "select",
            MapKind::Permutation => "permutation",
            MapKind::Expand => "expand",
            MapKind::Group => "group",
            MapKind::Pair => "pair",
            MapKind::Window => "window",
            MapKind::All => "all",
        }
    }
}

/// A row mapping from an input of `n_in` rows to an output of `n_out` rows.
///
/// Derived indexes (a permutation's inverse, a group's CSR, a pair map's by-input CSR)
/// are built on the first query that needs them, by counting sort, and kept.
#[derive(Clone, Debug)]
pub struct RowMap {
    pub(crate) repr: Repr,
}

#[derive(Clone, Debug)]
pub(crate) enum Repr {
    Identity {
        n: u64,
    },
    Offset {
        offset: u64,
        n_in: u64,
        n_out: u64,
    },
    /// The kept input rows; output row j is the j-th of them.
    Select {
        kept: Bitset,
    },
    /// `order` is a permutation of `0..n`.
    Permutation {
        order: Vec<i64>,
        inverse: OnceLock<Vec<i64>>,
    },
    /// Prefix sums of the counts: input i -> outputs `offsets[i]..offsets[i + 1]`.
    Expand {
        offsets: Vec<i64>,
    },
    Group {
        codes: Vec<i64>,
        n_groups: u64,
        by_group: OnceLock<Csr>,
    },
    /// Pairs grouped by output row, input rows strictly increasing within each output row.
    Pair {
        n_in: u64,
        by_out: Csr,
        by_in: OnceLock<Csr>,
    },
    Window {
        n_in: u64,
        size: u64,
        step: u64,
    },
    All {
        n_in: u64,
        n_out: u64,
    },
}

fn check_size(what: &str, n: u64) -> Result<()> {
    if n > i64::MAX as u64 {
        return Err(invalid(format!("{what} = {n} does not fit in int64")));
    }
    Ok(())
}

fn check_rows(what: &str, rows: &[i64], n: u64) -> Result<()> {
    match rows.iter().find(|&&row| row < 0 || row as u64 >= n) {
        Some(&row) => Err(invalid(format!("{what} row {row} is outside [0, {n})"))),
        None => Ok(()),
    }
}

impl RowMap {
    fn from_repr(repr: Repr) -> RowMap {
        RowMap { repr }
    }

    /// Output row i <- input row i, for `n` rows.
    pub fn identity(n: u64) -> Result<RowMap> {
        check_size("n", n)?;
        Ok(RowMap::from_repr(Repr::Identity { n }))
    }

    /// Input row i -> output row `offset + i`, inside an output of `n_out` rows (concat).
    pub fn offset(offset: u64, n_in: u64, n_out: u64) -> Result<RowMap> {
        check_size("n_out", n_out)?;
        if offset.checked_add(n_in).is_none_or(|end| end > n_out) {
            return Err(invalid(format!(
                "offset {offset} + n_in {n_in} exceeds n_out {n_out}"
            )));
        }
        Ok(RowMap::from_repr(Repr::Offset {
            offset,
            n_in,
            n_out,
        }))
    }

    /// Keeps the input rows where `mask` is true, in order (filter).
    pub fn select_mask(mask: &[bool]) -> RowMap {
        RowMap::from_bitset(Bitset::from_mask(mask))
    }

    pub(crate) fn from_bitset(kept: Bitset) -> RowMap {
        RowMap::from_repr(Repr::Select { kept })
    }

    /// Keeps the input rows `kept` (strictly increasing, within `[0, n_in)`), in order.
    pub fn select_ids(kept: Vec<i64>, n_in: u64) -> Result<RowMap> {
        check_size("n_in", n_in)?;
        check_rows("kept", &kept, n_in)?;
        if !is_strictly_increasing(&kept) {
            return Err(invalid(
                "kept rows must be sorted ascending without repeats",
            ));
        }
        Ok(RowMap::from_bitset(Bitset::from_sorted_positions(
            kept.into_iter(),
            n_in,
        )))
    }

    /// Output row i <- input row `order[i]` (sort); `order` must be a permutation.
    pub fn permutation(order: Vec<i64>) -> Result<RowMap> {
        let n = order.len() as u64;
        let mut seen = vec![0u64; order.len().div_ceil(64)];
        for (i, &row) in order.iter().enumerate() {
            if row < 0 || row as u64 >= n {
                return Err(invalid(format!("order[{i}] = {row} is outside [0, {n})")));
            }
            let (word, bit) = (row as usize / 64, row % 64);
            if seen[word] >> bit & 1 == 1 {
                return Err(invalid(format!(
                    "order is not a permutation: {row} appears twice"
                )));
            }
            seen[word] |= 1 << bit;
        }
        Ok(RowMap::from_repr(Repr::Permutation {
            order,
            inverse: OnceLock::new(),
        }))
    }

    /// Input row i -> `counts[i]` consecutive output rows (explode).
    pub fn expand(counts: Vec<i64>) -> Result<RowMap> {
        Ok(RowMap::from_repr(Repr::Expand {
            offsets: counts_to_offsets(counts)?,
        }))
    }

    /// Input row i -> output row `codes[i]`, each code in `[0, n_groups)` (aggregation).
    pub fn group(codes: Vec<i64>, n_groups: u64) -> Result<RowMap> {
        check_size("n_groups", n_groups)?;
        if let Some(i) = codes.iter().position(|&c| c < 0 || c as u64 >= n_groups) {
            return Err(invalid(format!(
                "group code {} at row {i} is outside [0, {n_groups})",
                codes[i]
            )));
        }
        Ok(RowMap::from_repr(Repr::Group {
            codes,
            n_groups,
            by_group: OnceLock::new(),
        }))
    }

    /// Explicit (output row, input row) pairs, in any order, repeats allowed (join).
    pub fn pair(out_rows: &[i64], in_rows: &[i64], n_out: u64, n_in: u64) -> Result<RowMap> {
        check_size("n_out", n_out)?;
        check_size("n_in", n_in)?;
        if out_rows.len() != in_rows.len() {
            return Err(invalid(format!(
                "out_rows has {} rows but in_rows has {}",
                out_rows.len(),
                in_rows.len()
            )));
        }
        check_rows("output", out_rows, n_out)?;
        check_rows("input", in_rows, n_in)?;
        let grouped = if is_non_decreasing(out_rows) {
            // Already grouped by output (a join emits its rows in order): only count them.
            let mut counts = vec![0i64; n_out as usize];
            out_rows.iter().for_each(|&o| counts[o as usize] += 1);
            Csr {
                offsets: counts_to_offsets(counts)?,
                rows: in_rows.to_vec(),
            }
        } else {
            let by_out = group_csr(out_rows, n_out)?;
            let rows = by_out
                .rows
                .iter()
                .map(|&pair| in_rows[pair as usize])
                .collect();
            Csr {
                offsets: by_out.offsets,
                rows,
            }
        };
        let by_out = normalize_groups(grouped);
        Ok(RowMap::from_pair_csr(by_out, n_in))
    }

    /// A pair map from a CSR by output whose groups are already strictly increasing.
    pub(crate) fn from_pair_csr(by_out: Csr, n_in: u64) -> RowMap {
        RowMap::from_repr(Repr::Pair {
            n_in,
            by_out,
            by_in: OnceLock::new(),
        })
    }

    /// Output j <- inputs `[j*step, j*step + size)` clipped to `n_in`;
    /// there are `ceil(n_in / step)` outputs.
    pub fn window(n_in: u64, size: u64, step: u64) -> Result<RowMap> {
        check_size("n_in", n_in)?;
        if size == 0 || step == 0 {
            return Err(invalid(format!(
                "window size ({size}) and step ({step}) must be >= 1"
            )));
        }
        Ok(RowMap::from_repr(Repr::Window { n_in, size, step }))
    }

    /// Every output row <- every input row.
    pub fn all(n_in: u64, n_out: u64) -> Result<RowMap> {
        check_size("n_in", n_in)?;
        check_size("n_out", n_out)?;
        Ok(RowMap::from_repr(Repr::All { n_in, n_out }))
    }

    /// Which kind of map this is.
    pub fn kind(&self) -> MapKind {
        match self.repr {
            Repr::Identity { .. } => MapKind::Identity,
            Repr::Offset { .. } => MapKind::Offset,
            Repr::Select { .. } => MapKind::Select,
            Repr::Permutation { .. } => MapKind::Permutation,
            Repr::Expand { .. } => MapKind::Expand,
            Repr::Group { .. } => MapKind::Group,
            Repr::Pair { .. } => MapKind::Pair,
            Repr::Window { .. } => MapKind::Window,
            Repr::All { .. } => MapKind::All,
        }
    }

    /// Number of input rows.
    pub fn n_in(&self) -> u64 {
        match &self.repr {
            Repr::Identity { n } => *n,
            Repr::Select { kept } => kept.len(),
            Repr::Offset { n_in, .. }
            | Repr::Pair { n_in, .. }
            | Repr::Window { n_in, .. }
            | Repr::All { n_in, .. } => *n_in,
            Repr::Permutation { order, .. } => order.len() as u64,
            Repr::Expand { offsets } => offsets.len() as u64 - 1,
            Repr::Group { codes, .. } => codes.len() as u64,
        }
    }

    /// Number of output rows.
    pub fn n_out(&self) -> u64 {
        match &self.repr {
            Repr::Identity { n } => *n,
            Repr::Offset { n_out, .. } | Repr::All { n_out, .. } => *n_out,
            Repr::Select { kept } => kept.count(),
            Repr::Permutation { order, .. } => order.len() as u64,
            Repr::Expand { offsets } => *offsets.last().expect("offsets start with 0") as u64,
            Repr::Group { n_groups, .. } => *n_groups,
            Repr::Pair { by_out, .. } => by_out.offsets.len() as u64 - 1,
            Repr::Window { n_in, step, .. } => n_in.div_ceil(*step),
        }
    }

    /// Input rows that the output `rows` come from: sorted, unique.
    /// `rows` may come in any order; a sorted batch is answered by one merge walk.
    pub fn backward(&self, rows: &[i64]) -> Result<Vec<i64>> {
        let rows = sorted_query(rows, self.n_out())?;
        Ok(self.backward_sorted(&rows))
    }

    /// Output rows that the input `rows` flow into: sorted, unique.
    pub fn forward(&self, rows: &[i64]) -> Result<Vec<i64>> {
        let rows = sorted_query(rows, self.n_in())?;
        Ok(self.forward_sorted(&rows))
    }

    fn backward_sorted(&self, rows: &[i64]) -> Vec<i64> {
        match &self.repr {
            Repr::Identity { .. } => rows.to_vec(),
            Repr::Offset { offset, n_in, .. } => {
                let (start, end) = (*offset as i64, (*offset + *n_in) as i64);
                let from = rows.partition_point(|&r| r < start);
                let to = rows.partition_point(|&r| r < end);
                rows[from..to].iter().map(|&r| r - start).collect()
            }
            Repr::Select { kept } => kept.select_sorted(rows),
            Repr::Permutation { order, .. } => {
                let inputs = rows.iter().map(|&r| order[r as usize]);
                sorted_unique_of(inputs, rows.len(), order.len() as u64)
            }
            Repr::Expand { offsets } => {
                // Input i owns outputs [offsets[i], offsets[i+1]): find it among the ends.
                let ends = &offsets[1..];
                let mut inputs: Vec<i64> = Vec::new();
                let mut position = 0;
                for &row in rows {
                    position = gallop(ends, position, row + 1);
                    if inputs.last() != Some(&(position as i64)) {
                        inputs.push(position as i64);
                    }
                }
                inputs
            }
            Repr::Group { codes, .. } => union_of_groups(self.by_group(), rows, codes.len() as u64),
            Repr::Pair { n_in, by_out, .. } => union_of_groups(by_out, rows, *n_in),
            Repr::Window { n_in, size, step } => {
                let windows = rows.iter().map(|&j| {
                    let start = j as u64 * step;
                    (start, start.saturating_add(*size).min(*n_in))
                });
                union_of_intervals(windows)
            }
            Repr::All { n_in, .. } => all_rows_if_any(rows, *n_in),
        }
    }

    fn forward_sorted(&self, rows: &[i64]) -> Vec<i64> {
        match &self.repr {
            Repr::Identity { .. } => rows.to_vec(),
            Repr::Offset { offset, .. } => rows.iter().map(|&r| r + *offset as i64).collect(),
            Repr::Select { kept } => rows
                .iter()
                .filter(|&&row| kept.contains(row as u64))
                .map(|&row| kept.rank(row as u64) as i64)
                .collect(),
            Repr::Permutation { order, inverse } => {
                let inverse = inverse.get_or_init(|| {
                    let mut inverse = vec![0i64; order.len()];
                    for (output, &input) in order.iter().enumerate() {
                        inverse[input as usize] = output as i64;
                    }
                    inverse
                });
                let outputs = rows.iter().map(|&r| inverse[r as usize]);
                sorted_unique_of(outputs, rows.len(), order.len() as u64)
            }
            Repr::Expand { offsets } => rows
                .iter()
                .flat_map(|&r| offsets[r as usize]..offsets[r as usize + 1])
                .collect(),
            Repr::Group {
                codes, n_groups, ..
            } => sorted_unique_of(
                rows.iter().map(|&r| codes[r as usize]),
                rows.len(),
                *n_groups,
            ),
            Repr::Pair { by_out, .. } => {
                union_of_groups(self.pair_by_in(), rows, by_out.offsets.len() as u64 - 1)
            }
            Repr::Window { size, step, .. } => {
                // Input i is in windows j with j*step <= i < j*step + size.
                let windows = rows.iter().map(|&i| {
                    let i = i as u64;
                    let first = if i + 1 > *size {
                        (i + 1 - size).div_ceil(*step)
                    } else {
                        0
                    };
                    (first, i / step + 1)
                });
                union_of_intervals(windows)
            }
            Repr::All { n_out, .. } => all_rows_if_any(rows, *n_out),
        }
    }

    fn by_group(&self) -> &Csr {
        match &self.repr {
            Repr::Group {
                codes,
                n_groups,
                by_group,
            } => {
                by_group.get_or_init(|| group_csr(codes, *n_groups).expect("codes were validated"))
            }
            _ => unreachable!("by_group is only called on group maps"),
        }
    }

    fn pair_by_in(&self) -> &Csr {
        match &self.repr {
            Repr::Pair {
                n_in,
                by_out,
                by_in,
            } => by_in.get_or_init(|| transpose(by_out, *n_in)),
            _ => unreachable!("pair_by_in is only called on pair maps"),
        }
    }

    /// Whether every output row comes from at least one input row.
    fn every_output_has_input(&self) -> bool {
        match &self.repr {
            Repr::Offset {
                offset,
                n_in,
                n_out,
            } => *offset == 0 && n_in == n_out,
            Repr::Group { .. } => self.by_group().offsets.windows(2).all(|w| w[0] < w[1]),
            Repr::Pair { by_out, .. } => by_out.offsets.windows(2).all(|w| w[0] < w[1]),
            Repr::All { n_in, n_out } => *n_in > 0 || *n_out == 0,
            Repr::Identity { .. }
            | Repr::Select { .. }
            | Repr::Permutation { .. }
            | Repr::Expand { .. }
            | Repr::Window { .. } => true,
        }
    }

    /// Whether every input row flows into at least one output row.
    fn every_input_has_output(&self) -> bool {
        match &self.repr {
            Repr::Select { kept } => kept.count() == kept.len(),
            Repr::Expand { offsets } => offsets.windows(2).all(|w| w[0] < w[1]),
            Repr::Pair { .. } => self.pair_by_in().offsets.windows(2).all(|w| w[0] < w[1]),
            Repr::Window { n_in, size, step } => step <= size || n_in <= size,
            Repr::All { n_in, n_out } => *n_out > 0 || *n_in == 0,
            Repr::Identity { .. }
            | Repr::Offset { .. }
            | Repr::Permutation { .. }
            | Repr::Group { .. } => true,
        }
    }

    /// Composition: `self` maps A -> B, `other` maps B -> C; the result maps A -> C.
    ///
    /// Simplifies where the result has a small description (identities vanish, `All`
    /// absorbs, selects, offsets and permutations compose in closed form); otherwise the
    /// result is a pair map with every (C row, A row) pair materialised.
    pub fn then(&self, other: &RowMap) -> Result<RowMap> {
        if self.n_out() != other.n_in() {
            return Err(invalid(format!(
                "cannot compose: the first map has {} output rows, the second {} input rows",
                self.n_out(),
                other.n_in()
            )));
        }
        let (n_in, n_out) = (self.n_in(), other.n_out());
        Ok(match (&self.repr, &other.repr) {
            (Repr::Identity { .. }, _) => other.clone(),
            (_, Repr::Identity { .. }) => self.clone(),
            (Repr::All { .. }, _) if n_in == 0 || other.every_output_has_input() => {
                RowMap::all(n_in, n_out)?
            }
            (_, Repr::All { .. }) if n_out == 0 || self.every_input_has_output() => {
                RowMap::all(n_in, n_out)?
            }
            (Repr::Select { kept: first }, Repr::Select { kept: second }) => {
                let first: Vec<i64> = first.ones().collect();
                let kept = second.ones().map(|j| first[j as usize]);
                RowMap::from_bitset(Bitset::from_sorted_positions(kept, n_in))
            }
            (Repr::Offset { offset: first, .. }, Repr::Offset { offset: second, .. }) => {
                RowMap::offset(first + second, n_in, n_out)?
            }
            (Repr::Permutation { order: first, .. }, Repr::Permutation { order: second, .. }) => {
                let order = second.iter().map(|&b| first[b as usize]).collect();
                RowMap::from_repr(Repr::Permutation {
                    order,
                    inverse: OnceLock::new(),
                })
            }
            _ => self.materialized_then(other),
        })
    }

    fn materialized_then(&self, other: &RowMap) -> RowMap {
        let first = self.pairs_by_output();
        let second = other.pairs_by_output();
        let mut offsets = Vec::with_capacity(second.offsets.len());
        let mut rows = Vec::new();
        offsets.push(0);
        for c in 0..second.offsets.len() - 1 {
            rows.extend(
                second
                    .group(c)
                    .iter()
                    .flat_map(|&b| first.group(b as usize)),
            );
            offsets.push(rows.len() as i64);
        }
        let by_out = normalize_groups(Csr { offsets, rows });
        RowMap::from_pair_csr(by_out, self.n_in())
    }

    /// Every (output, input) pair, as a CSR by output with strictly increasing groups.
    pub fn pairs_by_output(&self) -> Csr {
        let n_out = self.n_out() as usize;
        let one_each = |rows: Vec<i64>| Csr {
            offsets: (0..=rows.len() as i64).collect(),
            rows,
        };
        match &self.repr {
            Repr::Identity { n } => one_each((0..*n as i64).collect()),
            Repr::Offset { offset, n_in, .. } => {
                let offsets = (0..=n_out as u64)
                    .map(|o| (o.saturating_sub(*offset)).min(*n_in) as i64)
                    .collect();
                Csr {
                    offsets,
                    rows: (0..*n_in as i64).collect(),
                }
            }
            Repr::Select { kept } => one_each(kept.ones().collect()),
            Repr::Permutation { order, .. } => one_each(order.clone()),
            Repr::Expand { offsets } => one_each(
                (0..offsets.len() - 1)
                    .flat_map(|i| {
                        std::iter::repeat_n(i as i64, (offsets[i + 1] - offsets[i]) as usize)
                    })
                    .collect(),
            ),
            Repr::Group { .. } => {
                // Output g <- the rows of group g: exactly the grouping CSR.
                self.by_group().clone()
            }
            Repr::Pair { by_out, .. } => by_out.clone(),
            Repr::Window { .. } | Repr::All { .. } => {
                let mut offsets = Vec::with_capacity(n_out + 1);
                let mut rows = Vec::new();
                offsets.push(0);
                for output in 0..n_out as i64 {
                    rows.extend(self.backward_sorted(&[output]));
                    offsets.push(rows.len() as i64);
                }
                Csr { offsets, rows }
            }
        }
    }
}

/// Turns group sizes into their prefix sums, with a leading 0, reusing the allocation.
pub(crate) fn counts_to_offsets(mut counts: Vec<i64>) -> Result<Vec<i64>> {
    counts.insert(0, 0);
    let mut total: i64 = 0;
    for (i, slot) in counts.iter_mut().enumerate().skip(1) {
        if *slot < 0 {
            return Err(invalid(format!(
                "counts[{}] = {} is negative",
                i - 1,
                *slot
            )));
        }
        total = total
            .checked_add(*slot)
            .ok_or_else(|| invalid("counts overflow int64"))?;
        *slot = total;
    }
    Ok(counts)
}

/// Sorts each group of `csr` and drops repeats within a group. Groups are the few input
/// rows of one output row, so these sorts are small; the grouping itself was a counting sort.
fn normalize_groups(csr: Csr) -> Csr {
    let Csr { offsets, mut rows } = csr;
    let mut new_offsets = Vec::with_capacity(offsets.len());
    new_offsets.push(0);
    let mut write = 0;
    for group in offsets.windows(2) {
        let (start, end) = (group[0] as usize, group[1] as usize);
        let members = &mut rows[start..end];
        if !is_strictly_increasing(members) {
            members.sort_unstable();
        }
        let mut last = None;
        for read in start..end {
            let row = rows[read];
            if last != Some(row) {
                rows[write] = row;
                write += 1;
                last = Some(row);
            }
        }
        new_offsets.push(write as i64);
    }
    rows.truncate(write);
    Csr {
        offsets: new_offsets,
        rows,
    }
}

/// The same pairs grouped by input row (counting sort; groups come out ascending).
fn transpose(by_out: &Csr, n_in: u64) -> Csr {
    let mut offsets = vec![0i64; n_in as usize + 1];
    for &input in &by_out.rows {
        offsets[input as usize + 1] += 1;
    }
    for i in 0..n_in as usize {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets[..n_in as usize].to_vec();
    let mut rows = vec![0i64; by_out.rows.len()];
    for output in 0..by_out.offsets.len() - 1 {
        for &input in by_out.group(output) {
            rows[next[input as usize] as usize] = output as i64;
            next[input as usize] += 1;
        }
    }
    Csr { offsets, rows }
}

/// Checks a query against `[0, n)` and returns it sorted and unique.
fn sorted_query(rows: &[i64], n: u64) -> Result<Cow<'_, [i64]>> {
    if let Some(&row) = rows.iter().find(|&&row| row < 0 || row as u64 >= n) {
        return Err(CoreError::OutOfRange { row, n });
    }
    if is_strictly_increasing(rows) {
        Ok(Cow::Borrowed(rows))
    } else {
        Ok(Cow::Owned(sorted_unique(rows.to_vec(), n)))
    }
}

/// Rows of the union of half-open intervals whose starts and ends never decrease.
fn union_of_intervals(intervals: impl Iterator<Item = (u64, u64)>) -> Vec<i64> {
    let mut rows = Vec::new();
    let mut next: u64 = 0;
    for (start, end) in intervals {
        let start = start.max(next);
        if start < end {
            rows.extend(start as i64..end as i64);
            next = end;
        }
    }
    rows
}

fn all_rows_if_any(query: &[i64], n: u64) -> Vec<i64> {
    if query.is_empty() {
        Vec::new()
    } else {
        (0..n as i64).collect()
    }
}

impl PartialEq for RowMap {
    /// Two maps are equal when they relate the same rows, whatever their kinds.
    fn eq(&self, other: &RowMap) -> bool {
        if self.n_in() != other.n_in() || self.n_out() != other.n_out() {
            return false;
        }
        match (&self.repr, &other.repr) {
            (Repr::Identity { .. }, Repr::Identity { .. }) => true,
            (
                Repr::Offset {
                    offset: a, n_in, ..
                },
                Repr::Offset { offset: b, .. },
            ) => a == b || *n_in == 0,
            (Repr::Select { kept: a }, Repr::Select { kept: b }) => a == b,
            (Repr::Permutation { order: a, .. }, Repr::Permutation { order: b, .. }) => a == b,
            (Repr::Expand { offsets: a }, Repr::Expand { offsets: b }) => a == b,
            (Repr::Group { codes: a, .. }, Repr::Group { codes: b, .. }) => a == b,
            (Repr::Pair { by_out: a, .. }, Repr::Pair { by_out: b, .. }) => a == b,
            (Repr::All { .. }, Repr::All { .. }) => true,
            (
                Repr::Window {
                    n_in,
                    size: size_a,
                    step: step_a,
                },
                Repr::Window {
                    size: size_b,
                    step: step_b,
                    ..
                },
            ) => {
                // Sizes beyond n_in are clipped, and the step is irrelevant with one window.
                (*size_a).min(*n_in) == (*size_b).min(*n_in)
                    && (self.n_out() <= 1 || step_a == step_b)
            }
            // Maps of different kinds can still describe the same pairs.
            _ => self.pairs_by_output() == other.pairs_by_output(),
        }
    }
}

impl fmt::Display for RowMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RowMap(kind='{}', n_in={}, n_out={}",
            self.kind().name(),
            self.n_in(),
            self.n_out()
        )?;
        match &self.repr {
            Repr::Offset { offset, .. } => write!(f, ", offset={offset}")?,
            Repr::Window { size, step, .. } => write!(f, ", size={size}, step={step}")?,
            Repr::Pair { by_out, .. } => write!(f, ", pairs={}", by_out.rows.len())?,
            _ => {}
        }
        write!(f, ")")
    }
}
