//! The trace engine: the data work of every step of a backward or forward lineage query.
//!
//! The Python layer walks a run's operator DAG (it knows the column mappings and which
//! slot of a node copies which slot of its input); every operation on row sets is here:
//!
//! * **slot-tuple sets** ([`Tuples`]): rows of one node, each identified by its slot values
//!   (one int64 column per slot, column-major). Every step ends with a duplicate-free set:
//!   [`unique_rows`] (a sorted set for one slot; otherwise first occurrences, checked in
//!   O(n) through one column that is all-distinct, or hashed), [`select_unique`] (take,
//!   filter, project, dedupe in one pass) and [`union_rows`].
//! * **sorted id sets** (`Vec<i64>` ascending, no duplicates): [`sorted_unique`],
//!   [`sorted_ids`] (without `MISSING`), [`union_sorted`], membership through an [`IdSet`]
//!   (a bitmap over a small span, a hash set, or a few values compared in turn).
//! * **group memberships** ([`Groups`]): each group-by's member rows and their group ids;
//!   the member rows of a set of groups come from a scan for the first queries and from a
//!   [`GroupIndex`] (sorted group ids + CSR of member rows, built once by a counting sort)
//!   after that; window fragments' last positions ([`window_ends`]) and the ids of the
//!   windows around a set of rows ([`window_ids`]).
//! * **forward predicates** ([`Atom`]): "rows whose slot is in these ids and whose concat
//!   tags are these", evaluated into bitsets ([`evaluate`], [`matching_values`],
//!   [`evaluate_sets`]).
//!
//! No comparison sort of a whole table anywhere; no Python here.

use std::sync::Mutex;

use hashbrown::HashTable;

use crate::error::{invalid, CoreError, Result};

/// Value of a slot on a row that has no such lineage (outer merge, concat).
pub const MISSING: i64 = -1;
/// Bits of a window id that hold the position inside its window fragment.
pub const OFFSET_BITS: u32 = 32;
/// Queries of a [`Groups`] answered by a scan before its [`GroupIndex`] is built.
pub const SCANS_BEFORE_INDEX: u32 = 2;
/// Largest bitmap (in bits) any operation allocates: 2^31 bits = 256 MiB.
const MAX_BITMAP_BITS: u128 = 1 << 31;

// ------------------------------------------------------------------ tables

/// A borrowed table: `len` rows of `columns.len()` int64 columns.
#[derive(Clone, Debug)]
pub struct View<'a> {
    len: usize,
    columns: Vec<&'a [i64]>,
}

impl<'a> View<'a> {
    /// A table of `len` rows; every column must have `len` values.
    pub fn new(len: usize, columns: Vec<&'a [i64]>) -> Result<Self> {
        if let Some(c) = columns.iter().position(|c| c.len() != len) {
            return Err(invalid(format!(
                "table column {c} has {} values, the table has {len} rows",
                columns[c].len()
            )));
        }
        Ok(View { len, columns })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Column `j`.
    pub fn column(&self, j: usize) -> &'a [i64] {
        self.columns[j]
    }

    fn check_column(&self, j: usize) -> Result<()> {
        if j >= self.columns.len() {
            return Err(invalid(format!(
                "column {j} does not exist: the table has {} columns",
                self.columns.len()
            )));
        }
        Ok(())
    }
}

/// An owned set of slot tuples, column-major: column `j` is `data[j * len..(j + 1) * len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuples {
    len: usize,
    width: usize,
    data: Vec<i64>,
}

impl Tuples {
    /// Tuples from column-major `data` holding `width` columns of `len` values.
    pub fn new(len: usize, width: usize, data: Vec<i64>) -> Result<Self> {
        if len.checked_mul(width) != Some(data.len()) {
            return Err(invalid(format!(
                "{} values do not make {len} rows of {width} columns",
                data.len()
            )));
        }
        Ok(Tuples { len, width, data })
    }

    /// Tuples from equally long columns.
    pub fn from_columns(columns: &[Vec<i64>]) -> Result<Self> {
        let len = columns.first().map_or(0, Vec::len);
        let view = View::new(len, columns.iter().map(Vec::as_slice).collect())?;
        Ok(gather(&view, &(0..view.width()).collect::<Vec<_>>(), None))
    }

    /// Number of tuples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no tuples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots per tuple.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Column `j`.
    pub fn column(&self, j: usize) -> &[i64] {
        &self.data[j * self.len..(j + 1) * self.len]
    }

    /// Tuple `i`.
    pub fn row(&self, i: usize) -> Vec<i64> {
        (0..self.width).map(|j| self.data[j * self.len + i]).collect()
    }

    /// A borrowed view of all columns.
    pub fn view(&self) -> View<'_> {
        View {
            len: self.len,
            columns: (0..self.width).map(|j| self.column(j)).collect(),
        }
    }

    /// The column-major values (for a zero-copy hand-over to numpy in Fortran order).
    pub fn into_data(self) -> Vec<i64> {
        self.data
    }
}

/// Rows `rows` (all rows when `None`) of columns `project` of `view`, in that order.
fn gather(view: &View<'_>, project: &[usize], rows: Option<&[usize]>) -> Tuples {
    let len = rows.map_or(view.len, <[usize]>::len);
    let mut data = Vec::with_capacity(len * project.len());
    for &j in project {
        let column = view.columns[j];
        match rows {
            None => data.extend_from_slice(column),
            Some(rows) => data.extend(rows.iter().map(|&r| column[r])),
        }
    }
    Tuples {
        len,
        width: project.len(),
        data,
    }
}

// ------------------------------------------------------------------ hashing

#[inline]
fn mix(mut h: u64) -> u64 {
    // murmur3's finalizer: every input bit reaches every output bit
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn hash_row(columns: &[&[i64]], row: usize) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for column in columns {
        h = mix(h ^ column[row] as u64).wrapping_add(0x2545_f491_4f6c_dd1d);
    }
    h
}

#[inline]
fn rows_equal(a: &[&[i64]], i: usize, b: &[&[i64]], j: usize) -> bool {
    a.iter().zip(b).all(|(x, y)| x[i] == y[j])
}

// ------------------------------------------------------------------ sorted id sets

fn is_strictly_increasing(values: &[i64]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

/// Smallest and largest value, and the span between them in values (`hi - lo + 1`).
fn span_of(values: &[i64]) -> Option<(i64, i64, u128)> {
    let (mut lo, mut hi) = (*values.first()?, *values.first()?);
    for &v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    Some((lo, hi, (i128::from(hi) - i128::from(lo) + 1) as u128))
}

/// Whether a bitmap of `span` bits is worth it for `n` values (`factor` bits a value).
fn bitmap_fits(span: u128, n: usize, factor: u128) -> bool {
    span <= MAX_BITMAP_BITS && span <= (n as u128 * factor).max(1 << 16)
}

fn bitmap_values(lo: i64, span: u128, values: impl Iterator<Item = i64>, capacity: usize) -> Vec<i64> {
    let mut words = vec![0u64; span.div_ceil(64) as usize];
    for v in values {
        let offset = (v as i128 - lo as i128) as usize;
        words[offset >> 6] |= 1 << (offset & 63);
    }
    let mut out = Vec::with_capacity(capacity);
    for (index, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            out.push((lo as i128 + (index * 64) as i128 + bits.trailing_zeros() as i128) as i64);
            bits &= bits - 1;
        }
    }
    out
}

/// The distinct `values`, ascending: a bitmap pass when their span is small next to their
/// number, a sort otherwise.
pub fn sorted_unique(values: &[i64]) -> Vec<i64> {
    if is_strictly_increasing(values) {
        return values.to_vec();
    }
    let (lo, _, span) = span_of(values).expect("a non-increasing slice has values");
    if bitmap_fits(span, values.len(), 64) {
        return bitmap_values(lo, span, values.iter().copied(), values.len().min(span as usize));
    }
    let mut out = values.to_vec();
    out.sort_unstable();
    out.dedup();
    out
}

/// The distinct `values` other than [`MISSING`], ascending (a source slot's row positions,
/// a group-by slot's group ids).
pub fn sorted_ids(values: &[i64]) -> Vec<i64> {
    let mut out = sorted_unique(values);
    if let Ok(at) = out.binary_search(&MISSING) {
        out.remove(at);
    }
    out
}

/// The union of sorted id sets (each ascending; duplicates and unsorted parts are accepted).
pub fn union_sorted(parts: &[&[i64]]) -> Vec<i64> {
    let parts: Vec<&[i64]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    match parts.len() {
        0 => Vec::new(),
        1 => sorted_unique(parts[0]),
        2 if is_strictly_increasing(parts[0]) && is_strictly_increasing(parts[1]) => {
            let (a, b) = (parts[0], parts[1]);
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() && j < b.len() {
                match a[i].cmp(&b[j]) {
                    std::cmp::Ordering::Less => {
                        out.push(a[i]);
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        out.push(b[j]);
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        out.push(a[i]);
                        i += 1;
                        j += 1;
                    }
                }
            }
            out.extend_from_slice(&a[i..]);
            out.extend_from_slice(&b[j..]);
            out
        }
        _ => sorted_unique(&parts.concat()),
    }
}

/// A set of int64 ids answering membership tests: a few values compared in turn, a bitmap
/// over their span when it is small next to the number of tests, or a hash set.
#[derive(Clone, Debug)]
pub enum IdSet {
    /// Up to eight ids.
    Few(Vec<i64>),
    /// Bit `v - lo` is set for each id `v`.
    Dense {
        /// Smallest id.
        lo: i64,
        /// Number of bits.
        span: u64,
        /// The bitmap.
        words: Vec<u64>,
    },
    /// A hash set of the ids.
    Hashed(HashTable<i64>),
}

impl IdSet {
    /// A set of `ids` (any order, duplicates allowed), shaped for about `probes` tests.
    pub fn new(ids: &[i64], probes: usize) -> IdSet {
        if ids.len() <= 8 {
            let mut few = ids.to_vec();
            few.sort_unstable();
            few.dedup();
            return IdSet::Few(few);
        }
        let (lo, _, span) = span_of(ids).expect("more than eight ids");
        if bitmap_fits(span, probes.max(ids.len()), 8) {
            let mut words = vec![0u64; span.div_ceil(64) as usize];
            for &v in ids {
                let offset = (v as i128 - lo as i128) as usize;
                words[offset >> 6] |= 1 << (offset & 63);
            }
            return IdSet::Dense {
                lo,
                span: span as u64,
                words,
            };
        }
        let mut table = HashTable::with_capacity(ids.len());
        for &v in ids {
            let h = mix(v as u64);
            if table.find(h, |&x| x == v).is_none() {
                table.insert_unique(h, v, |&x| mix(x as u64));
            }
        }
        IdSet::Hashed(table)
    }

    /// Whether `v` is in the set.
    #[inline]
    pub fn contains(&self, v: i64) -> bool {
        match self {
            IdSet::Few(few) => few.contains(&v),
            IdSet::Dense { lo, span, words } => {
                let offset = (v as i128) - (*lo as i128);
                if offset < 0 || offset >= *span as i128 {
                    return false;
                }
                let offset = offset as usize;
                (words[offset >> 6] >> (offset & 63)) & 1 == 1
            }
            IdSet::Hashed(table) => table.find(mix(v as u64), |&x| x == v).is_some(),
        }
    }
}

// ------------------------------------------------------------------ slot-tuple sets

/// Whether the values of `column` are all distinct, when a bitmap can tell cheaply (`None`:
/// it cannot; the caller hashes).
fn all_distinct(column: &[i64]) -> Option<bool> {
    if column.len() <= 1 {
        return Some(true);
    }
    let (lo, _, span) = span_of(column)?;
    if !(span <= MAX_BITMAP_BITS && span <= (column.len() as u128 * 64).max(1 << 24)) {
        return None;
    }
    let mut words = vec![0u64; span.div_ceil(64) as usize];
    for &v in column {
        let offset = (v as i128 - lo as i128) as usize;
        let (word, bit) = (offset >> 6, 1u64 << (offset & 63));
        if words[word] & bit != 0 {
            return Some(false);
        }
        words[word] |= bit;
    }
    Some(true)
}

/// Rows of `view` to keep, first occurrences of each distinct tuple, in order.
fn first_occurrences(view: &View<'_>) -> Vec<usize> {
    let columns = &view.columns;
    let mut table: HashTable<usize> = HashTable::with_capacity(view.len);
    let mut kept = Vec::new();
    for row in 0..view.len {
        let h = hash_row(columns, row);
        if table
            .find(h, |&other| rows_equal(columns, other, columns, row))
            .is_none()
        {
            table.insert_unique(h, row, |&r| hash_row(columns, r));
            kept.push(row);
        }
    }
    kept
}

/// `tuples` without duplicates: one slot as a sorted set; several in their order, each
/// tuple's first occurrence (no work when one slot is all-distinct: its tuples are).
pub fn dedupe(tuples: Tuples) -> Tuples {
    if tuples.len <= 1 {
        return tuples;
    }
    match tuples.width {
        0 => Tuples {
            len: 1,
            width: 0,
            data: Vec::new(),
        },
        1 => {
            let data = sorted_unique(&tuples.data);
            Tuples {
                len: data.len(),
                width: 1,
                data,
            }
        }
        width => {
            if (0..width).any(|j| all_distinct(tuples.column(j)) == Some(true)) {
                return tuples;
            }
            let view = tuples.view();
            let kept = first_occurrences(&view);
            if kept.len() == tuples.len {
                return tuples;
            }
            gather(&view, &(0..width).collect::<Vec<_>>(), Some(&kept))
        }
    }
}

/// The distinct tuples of `view` (see [`dedupe`]).
pub fn unique_rows(view: &View<'_>) -> Tuples {
    dedupe(gather(view, &(0..view.width()).collect::<Vec<_>>(), None))
}

/// Which rows a selection keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Every row.
    All,
    /// Rows `0 <= r < len` listed (any order, repeats allowed).
    Rows(Vec<i64>),
    /// Rows with at least one of the projected slots set (not [`MISSING`]): a merge side.
    Present,
    /// Rows whose column `.0` holds `.1`: a concat input.
    Equals(usize, i64),
}

/// Rows of `view` chosen by `keep`, columns `project` (in that order), without duplicates.
pub fn select_unique(view: &View<'_>, keep: &Keep, project: &[usize]) -> Result<Tuples> {
    for &j in project {
        view.check_column(j)?;
    }
    if let ([j], Keep::All | Keep::Present) = (project, keep) {
        // one slot: its sorted distinct values straight from the column (a merge side with
        // one slot: the same without MISSING)
        let column = view.columns[*j];
        let mut data = sorted_unique(column);
        if *keep == Keep::Present {
            if let Ok(at) = data.binary_search(&MISSING) {
                data.remove(at);
            }
        }
        return Ok(Tuples {
            len: data.len(),
            width: 1,
            data,
        });
    }
    let rows: Option<Vec<usize>> = match keep {
        Keep::All => None,
        Keep::Rows(rows) => {
            let n = view.len;
            let mut out = Vec::with_capacity(rows.len());
            for &r in rows {
                if r < 0 || r as u64 >= n as u64 {
                    return Err(CoreError::OutOfRange { row: r, n: n as u64 });
                }
                out.push(r as usize);
            }
            Some(out)
        }
        Keep::Present => {
            let columns: Vec<&[i64]> = project.iter().map(|&j| view.columns[j]).collect();
            Some(
                (0..view.len)
                    .filter(|&r| columns.iter().any(|c| c[r] != MISSING))
                    .collect(),
            )
        }
        Keep::Equals(j, value) => {
            view.check_column(*j)?;
            let column = view.columns[*j];
            Some((0..view.len).filter(|&r| column[r] == *value).collect())
        }
    };
    Ok(dedupe(gather(view, project, rows.as_deref())))
}

/// The union of two slot-tuple sets of the same width (`b`'s columns already in `a`'s
/// order): duplicate-free when both are. The smaller side is hashed, the larger probes it.
pub fn union_rows(a: &View<'_>, b: &View<'_>) -> Result<Tuples> {
    if a.width() != b.width() {
        return Err(invalid(format!(
            "cannot unite tuples of {} and {} slots",
            a.width(),
            b.width()
        )));
    }
    let all: Vec<usize> = (0..a.width()).collect();
    if b.is_empty() {
        return Ok(dedupe(gather(a, &all, None)));
    }
    if a.is_empty() {
        return Ok(dedupe(gather(b, &all, None)));
    }
    if a.width() <= 1 {
        if a.width() == 0 {
            return Ok(Tuples {
                len: 1,
                width: 0,
                data: Vec::new(),
            });
        }
        let data = union_sorted(&[a.columns[0], b.columns[0]]);
        return Ok(Tuples {
            len: data.len(),
            width: 1,
            data,
        });
    }
    let (small, large) = if a.len <= b.len { (a, b) } else { (b, a) };
    // the smaller side, deduplicated, in a hash table of its row numbers
    let (sc, lc) = (&small.columns, &large.columns);
    let mut table: HashTable<usize> = HashTable::with_capacity(small.len);
    let mut small_rows = Vec::with_capacity(small.len);
    for row in 0..small.len {
        let h = hash_row(sc, row);
        if table.find(h, |&o| rows_equal(sc, o, sc, row)).is_none() {
            table.insert_unique(h, row, |&r| hash_row(sc, r));
            small_rows.push(row);
        }
    }
    let mut covered = vec![false; small.len];
    // A bitmap of one of the small side's columns, when its span is small, spares the
    // large side's rows whose value there the small side never has from hashing.
    let filter = (0..sc.len()).find_map(|j| {
        let (_, _, span) = span_of(sc[j])?;
        bitmap_fits(span, large.len, 8).then(|| (j, IdSet::new(sc[j], large.len)))
    });
    for row in 0..large.len {
        if let Some((j, set)) = &filter {
            if !set.contains(lc[*j][row]) {
                continue;
            }
        }
        let h = hash_row(lc, row);
        if let Some(&o) = table.find(h, |&o| rows_equal(sc, o, lc, row)) {
            covered[o] = true;
        }
    }
    let extra: Vec<usize> = small_rows.into_iter().filter(|&r| !covered[r]).collect();
    let len = large.len + extra.len();
    let mut data = Vec::with_capacity(len * a.width());
    for j in 0..a.width() {
        data.extend_from_slice(lc[j]);
        data.extend(extra.iter().map(|&r| sc[j][r]));
    }
    Ok(Tuples {
        len,
        width: a.width(),
        data,
    })
}

// ------------------------------------------------------------------ group memberships

/// Group id -> member rows, built once per group-by: the distinct group ids ascending and,
/// for the `i`-th, its member rows `rows[offsets[i]..offsets[i + 1]]` (ascending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupIndex {
    keys: Vec<i64>,
    offsets: Vec<usize>,
    rows: Vec<u32>,
}

impl GroupIndex {
    /// The index of `gids` (one group id per member row), by counting sort: direct
    /// addressing when the ids span little more than the rows, a hash table otherwise.
    pub fn build(gids: &[i64]) -> Result<GroupIndex> {
        let n = gids.len();
        if u32::try_from(n).is_err() {
            return Err(invalid(format!("{n} members are too many to index")));
        }
        let Some((lo, _, span)) = span_of(gids) else {
            return Ok(GroupIndex {
                keys: Vec::new(),
                offsets: vec![0],
                rows: Vec::new(),
            });
        };
        // codes[r]: the rank of row r's group among the distinct ids (ascending)
        let (keys, codes): (Vec<i64>, Vec<u32>) = if span <= (2 * n as u128).max(1 << 16) {
            let mut seen = vec![0u32; span as usize];
            for &g in gids {
                seen[(g - lo) as usize] = 1;
            }
            let mut keys = Vec::new();
            for (offset, rank) in seen.iter_mut().enumerate() {
                if *rank != 0 {
                    *rank = keys.len() as u32;
                    keys.push(lo + offset as i64);
                }
            }
            let codes = gids.iter().map(|&g| seen[(g - lo) as usize]).collect();
            (keys, codes)
        } else {
            let mut table: HashTable<(i64, u32)> = HashTable::new();
            let mut firsts: Vec<i64> = Vec::new();
            let mut codes: Vec<u32> = Vec::with_capacity(n);
            for &g in gids {
                let h = mix(g as u64);
                let code = match table.find(h, |&(k, _)| k == g) {
                    Some(&(_, code)) => code,
                    None => {
                        let code = firsts.len() as u32;
                        table.insert_unique(h, (g, code), |&(k, _)| mix(k as u64));
                        firsts.push(g);
                        code
                    }
                };
                codes.push(code);
            }
            // rank the (few) distinct ids by value
            let mut order: Vec<u32> = (0..firsts.len() as u32).collect();
            order.sort_unstable_by_key(|&c| firsts[c as usize]);
            let mut rank = vec![0u32; firsts.len()];
            for (r, &c) in order.iter().enumerate() {
                rank[c as usize] = r as u32;
            }
            let keys = order.iter().map(|&c| firsts[c as usize]).collect();
            for code in &mut codes {
                *code = rank[*code as usize];
            }
            (keys, codes)
        };
        let mut offsets = vec![0usize; keys.len() + 1];
        for &c in &codes {
            offsets[c as usize + 1] += 1;
        }
        for i in 0..keys.len() {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets[..keys.len()].to_vec();
        let mut rows = vec![0u32; n];
        for (row, &c) in codes.iter().enumerate() {
            rows[next[c as usize]] = row as u32;
            next[c as usize] += 1;
        }
        Ok(GroupIndex {
            keys,
            offsets,
            rows,
        })
    }

    /// Number of groups.
    pub fn n_groups(&self) -> usize {
        self.keys.len()
    }

    /// The distinct group ids, ascending.
    pub fn keys(&self) -> &[i64] {
        &self.keys
    }

    /// Member rows of the groups `wanted` (ascending, no duplicates), group after group.
    pub fn rows_of(&self, wanted: &[i64]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        for &g in wanted {
            at = crate::search::gallop(&self.keys, at, g);
            if at == self.keys.len() {
                break;
            }
            if self.keys[at] == g {
                out.extend(
                    self.rows[self.offsets[at]..self.offsets[at + 1]]
                        .iter()
                        .map(|&r| r as usize),
                );
            }
        }
        out
    }
}

/// Rows whose value in `gids` is in `wanted`, ascending.
pub fn scan(gids: &[i64], wanted: &IdSet) -> Vec<usize> {
    match wanted {
        IdSet::Few(few) if few.len() == 1 => {
            let g = few[0];
            gids.iter()
                .enumerate()
                .filter_map(|(r, &v)| (v == g).then_some(r))
                .collect()
        }
        _ => gids
            .iter()
            .enumerate()
            .filter_map(|(r, &v)| wanted.contains(v).then_some(r))
            .collect(),
    }
}

/// Per window fragment (the high half of its ids), the last position in it: `(high, end)`
/// pairs ascending by `high`.
pub fn window_ends(gids: &[i64]) -> Vec<(i64, i64)> {
    let mask = (1i64 << OFFSET_BITS) - 1;
    let mut ends: Vec<(i64, i64)> = Vec::new();
    let mut table: HashTable<usize> = HashTable::new();
    let mut last: Option<usize> = None;
    for &g in gids {
        let (high, low) = (g >> OFFSET_BITS, g & mask);
        let at = match last {
            Some(at) if ends[at].0 == high => at,
            _ => {
                let h = mix(high as u64);
                match table.find(h, |&i| ends[i].0 == high) {
                    Some(&i) => i,
                    None => {
                        ends.push((high, low));
                        let i = ends.len() - 1;
                        let snapshot = &ends;
                        table.insert_unique(h, i, |&i| mix(snapshot[i].0 as u64));
                        i
                    }
                }
            }
        };
        ends[at].1 = ends[at].1.max(low);
        last = Some(at);
    }
    ends.sort_unstable();
    ends
}

/// The ids of the windows within `[pos - before, pos + after]` of each of `ids` (ids are
/// `high << 32 | pos`), sorted and distinct. `None`: unbounded, back to position 0 or on to
/// the fragment's end (`ends`, from [`window_ends`]; a fragment not listed ends at -1). A
/// range never leaves its fragment.
pub fn window_ids(ids: &[i64], before: Option<i64>, after: Option<i64>, ends: &[(i64, i64)]) -> Vec<i64> {
    let mask = (1i64 << OFFSET_BITS) - 1;
    let mut ranges: Vec<(i64, i64)> = Vec::with_capacity(ids.len());
    for &id in ids {
        let (high, pos) = (id >> OFFSET_BITS, id & mask);
        let end = ends
            .binary_search_by_key(&high, |&(h, _)| h)
            .map_or(-1, |i| ends[i].1);
        let lo = before.map_or(0, |b| pos.saturating_sub(b).max(0));
        let hi = after.map_or(end, |a| pos.saturating_add(a).min(end.max(pos)));
        if hi >= lo {
            let base = high.wrapping_shl(OFFSET_BITS);
            ranges.push((base | lo, base | hi));
        }
    }
    ranges.sort_unstable();
    let mut out = Vec::new();
    let mut next: i128 = i128::MIN; // every id below `next` that a range holds is out already
    for (lo, hi) in ranges {
        let from = (lo as i128).max(next);
        if from <= hi as i128 {
            out.extend(from as i64..=hi);
            next = hi as i128 + 1;
        }
    }
    out
}

/// One group-by's memberships as the engine keeps them between queries: the index (after
/// [`SCANS_BEFORE_INDEX`] scans) and the window ends. The member table itself is borrowed
/// at each call (it lives in Python).
#[derive(Debug, Default)]
pub struct Groups {
    state: Mutex<GroupsState>,
}

#[derive(Debug, Default)]
struct GroupsState {
    scans: u32,
    index: Option<GroupIndex>,
    ends: Option<Vec<(i64, i64)>>,
}

impl Groups {
    /// A new, empty state.
    pub fn new() -> Groups {
        Groups::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupsState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the index has been built.
    pub fn indexed(&self) -> bool {
        self.lock().index.is_some()
    }

    /// Member rows (of `gids`) of the groups `wanted` (ascending, no duplicates). A scan
    /// while the group-by is new or when many groups are asked; the index otherwise.
    pub fn member_rows(&self, gids: &[i64], wanted: &[i64]) -> Result<Vec<usize>> {
        check_sorted_ids(wanted, "group ids")?;
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        if state.index.is_none() {
            state.scans += 1;
            if state.scans > SCANS_BEFORE_INDEX && u32::try_from(gids.len()).is_ok() {
                state.index = Some(GroupIndex::build(gids)?);
            }
        }
        match &state.index {
            Some(index) if wanted.len().saturating_mul(4) <= index.n_groups() => Ok(index.rows_of(wanted)),
            _ => {
                drop(state);
                Ok(scan(gids, &IdSet::new(wanted, gids.len())))
            }
        }
    }

    /// The window fragments' ends (computed once).
    pub fn window_ends(&self, gids: &[i64]) -> Vec<(i64, i64)> {
        let mut state = self.lock();
        state.ends.get_or_insert_with(|| window_ends(gids)).clone()
    }

    /// Member tuples (columns `project` of `members`) of the groups `wanted`, distinct.
    pub fn members_of(&self, members: &View<'_>, gids: &[i64], wanted: &[i64], project: &[usize]) -> Result<Tuples> {
        if gids.len() != members.len() {
            return Err(invalid(format!(
                "{} group ids for {} member rows",
                gids.len(),
                members.len()
            )));
        }
        for &j in project {
            members.check_column(j)?;
        }
        let rows = self.member_rows(gids, wanted)?;
        Ok(dedupe(gather(members, project, Some(&rows))))
    }
}

fn check_sorted_ids(ids: &[i64], what: &str) -> Result<()> {
    if let Some(i) = ids.windows(2).position(|w| w[0] >= w[1]) {
        return Err(invalid(format!(
            "{what} must be sorted ascending without repeats (position {})",
            i + 1
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------ forward predicates

/// A forward predicate: rows whose `column` holds one of `ids` (`None`: any value but
/// [`MISSING`]) and, for each `(column, value)` of `conds`, that value in that column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atom<'a> {
    /// The tested column.
    pub column: usize,
    /// Its accepted values, ascending without repeats; `None`: any but `MISSING`.
    pub ids: Option<&'a [i64]>,
    /// Further equalities (concat tags).
    pub conds: Vec<(usize, i64)>,
}

/// A bitset over a table's rows.
type Bits = Vec<u64>;

fn evaluate_atom(view: &View<'_>, atom: &Atom<'_>) -> Result<Bits> {
    view.check_column(atom.column)?;
    for &(j, _) in &atom.conds {
        view.check_column(j)?;
    }
    let column = view.columns[atom.column];
    let n = view.len;
    let mut bits = vec![0u64; n.div_ceil(64)];
    match atom.ids {
        None => fill_bits(&mut bits, column, |v| v != MISSING),
        Some(ids) => {
            check_sorted_ids(ids, "an atom's ids")?;
            if ids.is_empty() {
                return Ok(bits);
            }
            let set = IdSet::new(ids, n);
            match &set {
                IdSet::Few(few) if few.len() == 1 => {
                    let g = few[0];
                    fill_bits(&mut bits, column, |v| v == g)
                }
                IdSet::Dense { lo, span, words } => {
                    let (lo, span) = (*lo, *span);
                    fill_bits(&mut bits, column, |v| {
                        let offset = v.wrapping_sub(lo) as u64;
                        offset < span && (words[(offset >> 6) as usize] >> (offset & 63)) & 1 == 1
                    })
                }
                _ => fill_bits(&mut bits, column, |v| set.contains(v)),
            }
        }
    }
    for &(j, value) in &atom.conds {
        let mut cond = vec![0u64; bits.len()];
        fill_bits(&mut cond, view.columns[j], |v| v == value);
        for (b, c) in bits.iter_mut().zip(&cond) {
            *b &= c;
        }
    }
    Ok(bits)
}

#[inline]
fn fill_bits(bits: &mut [u64], column: &[i64], test: impl Fn(i64) -> bool) {
    for (word, chunk) in bits.iter_mut().zip(column.chunks(64)) {
        let mut w = 0u64;
        for (i, &v) in chunk.iter().enumerate() {
            w |= (test(v) as u64) << i;
        }
        *word = w;
    }
}

fn set_rows(bits: &[u64]) -> Vec<i64> {
    let mut out = Vec::new();
    for (index, &word) in bits.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            out.push((index * 64 + w.trailing_zeros() as usize) as i64);
            w &= w - 1;
        }
    }
    out
}

fn any_bits(view: &View<'_>, atoms: &[Atom<'_>]) -> Result<Bits> {
    let mut bits = vec![0u64; view.len.div_ceil(64)];
    for atom in atoms {
        let hit = evaluate_atom(view, atom)?;
        for (b, h) in bits.iter_mut().zip(&hit) {
            *b |= h;
        }
    }
    Ok(bits)
}

/// The rows (ascending) of `view` that any of `atoms` matches.
pub fn evaluate(view: &View<'_>, atoms: &[Atom<'_>]) -> Result<Vec<i64>> {
    Ok(set_rows(&any_bits(view, atoms)?))
}

/// The distinct values (ascending, without `MISSING`) of `values` in the rows of `view`
/// that any of `atoms` matches: the group ids a set of members reaches.
pub fn matching_values(view: &View<'_>, atoms: &[Atom<'_>], values: &[i64]) -> Result<Vec<i64>> {
    if values.len() != view.len {
        return Err(invalid(format!(
            "{} values for a table of {} rows",
            values.len(),
            view.len
        )));
    }
    let bits = any_bits(view, atoms)?;
    let mut hits = Vec::new();
    for (index, &word) in bits.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            hits.push(values[index * 64 + w.trailing_zeros() as usize]);
            w &= w - 1;
        }
    }
    Ok(sorted_ids(&hits))
}

/// For each set of atoms (indices into `atoms`), the rows of `view` any of them matches;
/// every atom is evaluated once, however many sets name it.
pub fn evaluate_sets(view: &View<'_>, atoms: &[Atom<'_>], sets: &[Vec<usize>]) -> Result<Vec<Vec<i64>>> {
    let mut cache: Vec<Option<Bits>> = vec![None; atoms.len()];
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        let mut bits = vec![0u64; view.len.div_ceil(64)];
        for &a in set {
            if a >= atoms.len() {
                return Err(invalid(format!("atom {a} does not exist ({} atoms)", atoms.len())));
            }
            if cache[a].is_none() {
                cache[a] = Some(evaluate_atom(view, &atoms[a])?);
            }
            for (b, h) in bits.iter_mut().zip(cache[a].as_ref().expect("just evaluated")) {
                *b |= h;
            }
        }
        out.push(set_rows(&bits));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
