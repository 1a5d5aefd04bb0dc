//! Codecs for one int64 array; the encoder measures the candidates and keeps the smallest.
//!
//! Every encoded array starts with `[codec: u8][count: u64]`. Candidates:
//! * `Raw`: 8 bytes a value, the fallback.
//! * `FrameOfReference`: `value - min`, bit-packed (a permutation of n costs ceil(log2 n)
//!   bits a value; a constant array costs nothing).
//! * `Delta`: non-decreasing arrays, differences bit-packed.
//! * `Runs`: arrays made of `x, x+1, x+2, ...` runs, as (start, length) arrays.
//! * `Bitmap`: sorted unique values in a known universe `[0, n)`, one bit a possible value.
//! * `Roaring`: sorted unique non-negative values, as a serialized roaring treemap (wins
//!   for sparse but clustered sets).
//! * `Zstd`: any of the above, zstd-compressed, kept only when that is smaller.

use std::io::Read;

use roaring::RoaringTreemap;

use crate::bits::{bit_width, pack, packed_len, try_vec, unpack, ByteReader, ByteWriter};
use crate::bitset::Bitset;
use crate::error::{decode_err, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Codec {
    Raw = 1,
    FrameOfReference = 2,
    Delta = 3,
    Runs = 4,
    Bitmap = 5,
    Roaring = 6,
    Zstd = 7,
}

impl Codec {
    fn from_tag(tag: u8) -> Result<Codec> {
        Ok(match tag {
            1 => Codec::Raw,
            2 => Codec::FrameOfReference,
            3 => Codec::Delta,
            4 => Codec::Runs,
            5 => Codec::Bitmap,
            6 => Codec::Roaring,
            7 => Codec::Zstd,
            _ => return Err(decode_err(format!("unknown array codec {tag}"))),
        })
    }
}

/// Codecs allowed inside a `Runs` encoding (keeps decoding non-recursive).
const PLAIN_CODECS: &[Codec] = &[Codec::Raw, Codec::FrameOfReference, Codec::Delta];
/// Codecs allowed inside a `Zstd` encoding.
const UNCOMPRESSED_CODECS: &[Codec] = &[
    Codec::Raw,
    Codec::FrameOfReference,
    Codec::Delta,
    Codec::Runs,
    Codec::Bitmap,
    Codec::Roaring,
];
const ALL_CODECS: &[Codec] = &[
    Codec::Raw,
    Codec::FrameOfReference,
    Codec::Delta,
    Codec::Runs,
    Codec::Bitmap,
    Codec::Roaring,
    Codec::Zstd,
];

/// Encodings below this size are not worth a zstd attempt.
const ZSTD_MIN_BYTES: usize = 256;
/// zstd is first tried on a prefix this long; the whole array only if the prefix shrank.
const ZSTD_SAMPLE_BYTES: usize = 64 << 10;
const ZSTD_LEVEL: i32 = 3;

/// One pass of facts about an array, enough to size every candidate codec.
struct Stats {
    count: u64,
    first: i64,
    min: i64,
    max: i64,
    non_decreasing: bool,
    strictly_increasing: bool,
    max_delta: u64,
    runs: u64,
}

impl Stats {
    fn of(mut values: impl Iterator<Item = i64>) -> Stats {
        let Some(first) = values.next() else {
            return Stats {
                count: 0,
                first: 0,
                min: 0,
                max: 0,
                non_decreasing: true,
                strictly_increasing: true,
                max_delta: 0,
                runs: 0,
            };
        };
        let mut stats = Stats {
            count: 1,
            first,
            min: first,
            max: first,
            non_decreasing: true,
            strictly_increasing: true,
            max_delta: 0,
            runs: 1,
        };
        let mut previous = first;
        for value in values {
            stats.count += 1;
            stats.min = stats.min.min(value);
            stats.max = stats.max.max(value);
            stats.non_decreasing &= value >= previous;
            stats.strictly_increasing &= value > previous;
            stats.max_delta = stats.max_delta.max(value.wrapping_sub(previous) as u64);
            stats.runs += (value != previous.wrapping_add(1)) as u64;
            previous = value;
        }
        stats
    }

    fn span(&self) -> u64 {
        self.max.wrapping_sub(self.min) as u64
    }
}

/// Appends `values` to `out` with the smallest codec. `universe = Some(n)` says the values
/// may be a sorted set of positions in `[0, n)`, which makes a bitmap a candidate.
pub(crate) fn encode_ints(out: &mut ByteWriter, values: &[i64], universe: Option<u64>) {
    let stats = Stats::of(values.iter().copied());
    encode(out, values.iter().copied(), stats, universe, None);
}

/// [`encode_ints`] for values computed on the fly (the iterator is cloned once per pass).
pub(crate) fn encode_values(out: &mut ByteWriter, values: impl Iterator<Item = i64> + Clone) {
    let stats = Stats::of(values.clone());
    encode(out, values, stats, None, None);
}

/// Appends the positions of `set` to `out` with the smallest codec; when that is a
/// bitmap, the set's words are copied as they are.
pub(crate) fn encode_bitset(out: &mut ByteWriter, set: &Bitset) {
    // The statistics come from word-level operations, so a dense set whose best codec is
    // the bitmap itself is encoded without visiting its positions.
    let shape = set.shape();
    let stats = Stats {
        count: set.count(),
        first: shape.first.unwrap_or(0) as i64,
        min: shape.first.unwrap_or(0) as i64,
        max: shape.last as i64,
        non_decreasing: true,
        strictly_increasing: true,
        max_delta: shape.max_delta,
        runs: shape.runs,
    };
    encode(out, set.ones(), stats, Some(set.len()), Some(set));
}

/// A codec choice with its parameters, sized before anything is written.
enum Plan {
    Raw,
    FrameOfReference {
        min: i64,
        width: u32,
    },
    Delta {
        first: i64,
        width: u32,
    },
    Runs {
        starts: Vec<i64>,
        lengths_minus_one: Vec<i64>,
    },
    Bitmap {
        universe: u64,
    },
    Roaring,
}

/// Sizes every candidate from one pass of statistics, writes only the winner, then
/// replaces it by its zstd compression when that is smaller.
fn encode<I>(
    out: &mut ByteWriter,
    values: I,
    stats: Stats,
    universe: Option<u64>,
    set: Option<&Bitset>,
) where
    I: Iterator<Item = i64> + Clone,
{
    let count = stats.count;
    let (mut plan, mut size) = plain_plan(&stats);
    let is_position_set = stats.strictly_increasing && stats.min >= 0;

    if let Some(universe) =
        universe.filter(|&n| is_position_set && (count == 0 || (stats.max as u64) < n))
    {
        let bitmap_size = HEADER + 8 + universe.div_ceil(64) * 8;
        if bitmap_size < size {
            (plan, size) = (Plan::Bitmap { universe }, bitmap_size);
        }
    }
    if stats.runs > 0 && stats.runs <= count / 4 {
        let (starts, lengths_minus_one) = split_runs(values.clone(), stats.runs);
        let runs_size = HEADER
            + 8
            + plain_plan(&Stats::of(starts.iter().copied())).1
            + plain_plan(&Stats::of(lengths_minus_one.iter().copied())).1;
        if runs_size < size {
            (plan, size) = (
                Plan::Runs {
                    starts,
                    lengths_minus_one,
                },
                runs_size,
            );
        }
    }
    let start = out.bytes.len();
    let roaring_estimate = || match set {
        Some(set) => roaring_size_estimate(set.chunk_counts()),
        None => roaring_size_estimate(chunk_counts(values.clone())),
    };
    if is_position_set && count > 0 && roaring_estimate() < size {
        write_roaring(out, values.clone(), count);
        if ((out.bytes.len() - start) as u64) < size {
            (plan, size) = (Plan::Roaring, (out.bytes.len() - start) as u64);
        } else {
            out.bytes.truncate(start);
        }
    }
    if !matches!(plan, Plan::Roaring) {
        out.bytes.reserve(size as usize);
        write_plan(out, values, count, plan, set);
    }
    debug_assert_eq!((out.bytes.len() - start) as u64, size);
    compress_if_smaller(out, start, count);
}

/// Bytes of `[codec][count]`.
const HEADER: u64 = 9;

/// The smallest of Raw, FrameOfReference and Delta, with its encoded size.
fn plain_plan(stats: &Stats) -> (Plan, u64) {
    let count = stats.count;
    let raw_size = HEADER + 8 * count;
    let for_width = bit_width(stats.span());
    let for_size = HEADER + 9 + packed_len(count, for_width);
    let delta_width = bit_width(stats.max_delta);
    let delta_size = if stats.non_decreasing && count > 0 {
        HEADER + 9 + packed_len(count - 1, delta_width)
    } else {
        u64::MAX
    };
    if raw_size <= for_size && raw_size <= delta_size {
        (Plan::Raw, raw_size)
    } else if for_size <= delta_size {
        (
            Plan::FrameOfReference {
                min: stats.min,
                width: for_width,
            },
            for_size,
        )
    } else {
        (
            Plan::Delta {
                first: stats.first,
                width: delta_width,
            },
            delta_size,
        )
    }
}

fn write_plan(
    out: &mut ByteWriter,
    values: impl Iterator<Item = i64> + Clone,
    count: u64,
    plan: Plan,
    set: Option<&Bitset>,
) {
    match plan {
        Plan::Raw => {
            out.u8(Codec::Raw as u8);
            out.u64(count);
            for value in values {
                out.i64(value);
            }
        }
        Plan::FrameOfReference { min, width } => {
            out.u8(Codec::FrameOfReference as u8);
            out.u64(count);
            out.i64(min);
            out.u8(width as u8);
            pack(
                &mut out.bytes,
                values.map(|v| v.wrapping_sub(min) as u64),
                count,
                width,
            );
        }
        Plan::Delta { first, width } => {
            out.u8(Codec::Delta as u8);
            out.u64(count);
            out.i64(first);
            out.u8(width as u8);
            let deltas = values.scan(first, |previous, value| {
                let delta = value.wrapping_sub(*previous) as u64;
                *previous = value;
                Some(delta)
            });
            pack(&mut out.bytes, deltas.skip(1), count - 1, width);
        }
        Plan::Runs {
            starts,
            lengths_minus_one,
        } => {
            out.u8(Codec::Runs as u8);
            out.u64(count);
            out.u64(starts.len() as u64);
            for part in [starts, lengths_minus_one] {
                let plan = plain_plan(&Stats::of(part.iter().copied())).0;
                write_plan(out, part.iter().copied(), part.len() as u64, plan, None);
            }
        }
        Plan::Bitmap { universe } => {
            out.u8(Codec::Bitmap as u8);
            out.u64(count);
            out.u64(universe);
            let built;
            let set = match set {
                Some(set) => set,
                None => {
                    built = Bitset::from_sorted_positions(values, universe);
                    &built
                }
            };
            set.words().iter().for_each(|&word| out.u64(word));
        }
        Plan::Roaring => unreachable!("roaring sets are written while sizing them"),
    }
}

/// Starts and lengths (minus one) of the maximal `x, x+1, ...` runs of `values`.
fn split_runs(values: impl Iterator<Item = i64>, run_count: u64) -> (Vec<i64>, Vec<i64>) {
    let mut starts = Vec::with_capacity(run_count as usize);
    let mut lengths_minus_one: Vec<i64> = Vec::with_capacity(run_count as usize);
    let mut previous = None;
    for value in values {
        match (previous, lengths_minus_one.last_mut()) {
            (Some(p), Some(length)) if value == i64::wrapping_add(p, 1) => *length += 1,
            _ => {
                starts.push(value);
                lengths_minus_one.push(0);
            }
        }
        previous = Some(value);
    }
    (starts, lengths_minus_one)
}

/// Serialized size of a roaring set with these non-empty 2^16-position chunks, assuming
/// array or bitmap containers (run containers only make it smaller).
fn roaring_size_estimate(chunk_counts: impl Iterator<Item = u64>) -> u64 {
    16 + chunk_counts
        .map(|ones| 8 + (2 * ones).min(8192))
        .sum::<u64>()
}

/// Number of sorted positions in each non-empty 2^16-position chunk.
fn chunk_counts(positions: impl Iterator<Item = i64>) -> impl Iterator<Item = u64> {
    let mut positions = positions.peekable();
    std::iter::from_fn(move || {
        let chunk = positions.next()? >> 16;
        let mut ones = 1;
        while positions.next_if(|&p| p >> 16 == chunk).is_some() {
            ones += 1;
        }
        Some(ones)
    })
}

fn write_roaring(out: &mut ByteWriter, positions: impl Iterator<Item = i64>, count: u64) {
    let set = RoaringTreemap::from_sorted_iter(positions.map(|p| p as u64))
        .expect("positions are sorted and unique");
    out.u8(Codec::Roaring as u8);
    out.u64(count);
    out.u64(set.serialized_size() as u64);
    set.serialize_into(&mut out.bytes)
        .expect("writing to a Vec cannot fail");
}

/// Replaces the encoding in `out.bytes[start..]` by its zstd compression if that is smaller.
fn compress_if_smaller(out: &mut ByteWriter, start: usize, count: u64) {
    let encoded = &out.bytes[start..];
    if encoded.len() < ZSTD_MIN_BYTES {
        return;
    }
    let sample = &encoded[..encoded.len().min(ZSTD_SAMPLE_BYTES)];
    let Ok(compressed_sample) = zstd::bulk::compress(sample, ZSTD_LEVEL) else {
        return;
    };
    if compressed_sample.len() * 10 > sample.len() * 9 {
        return; // the prefix shrank by less than 10%: not worth compressing it all
    }
    let Ok(compressed) = zstd::bulk::compress(encoded, ZSTD_LEVEL) else {
        return;
    };
    if compressed.len() + 25 >= encoded.len() {
        return;
    }
    let encoded_len = encoded.len() as u64;
    out.bytes.truncate(start);
    out.u8(Codec::Zstd as u8);
    out.u64(count);
    out.u64(encoded_len);
    out.u64(compressed.len() as u64);
    out.raw(&compressed);
}

/// Reads one array written by [`encode_ints`].
pub(crate) fn decode_ints(reader: &mut ByteReader) -> Result<Vec<i64>> {
    decode_with(reader, ALL_CODECS)
}

fn decode_with(reader: &mut ByteReader, allowed: &[Codec]) -> Result<Vec<i64>> {
    let codec = Codec::from_tag(reader.u8()?)?;
    if !allowed.contains(&codec) {
        return Err(decode_err(format!(
            "array codec {codec:?} is not allowed here"
        )));
    }
    let count = reader.len()?;
    match codec {
        Codec::Raw => {
            let bytes = reader.bytes(count * 8)?;
            Ok(bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect())
        }
        Codec::FrameOfReference => {
            let min = reader.i64()?;
            let width = read_width(reader)?;
            let bytes = reader.bytes(packed_len(count, width))?;
            let mut values = try_vec(count)?;
            unpack(bytes, count as usize, width, |v| {
                values.push(min.wrapping_add(v as i64))
            });
            Ok(values)
        }
        Codec::Delta => {
            if count == 0 {
                return Err(decode_err("delta-coded array without a first value"));
            }
            let first = reader.i64()?;
            let width = read_width(reader)?;
            let bytes = reader.bytes(packed_len(count - 1, width))?;
            let mut values = try_vec(count)?;
            values.push(first);
            let mut current = first;
            unpack(bytes, count as usize - 1, width, |delta| {
                current = current.wrapping_add(delta as i64);
                values.push(current);
            });
            Ok(values)
        }
        Codec::Runs => decode_runs(reader, count),
        Codec::Bitmap => decode_bitmap(reader, count),
        Codec::Roaring => {
            let len = reader.u64()?;
            let bytes = reader.bytes(len)?;
            let set = RoaringTreemap::deserialize_from(bytes)
                .map_err(|e| decode_err(format!("bad roaring set: {e}")))?;
            if set.len() != count {
                return Err(decode_err("roaring set size does not match its count"));
            }
            if set.max().is_some_and(|max| max > i64::MAX as u64) {
                return Err(decode_err("roaring set holds a value beyond int64"));
            }
            let mut values = try_vec(count)?;
            values.extend(set.iter().map(|v| v as i64));
            Ok(values)
        }
        Codec::Zstd => {
            let inner_len = reader.u64()?;
            reader.check_len(inner_len / 8)?;
            let compressed_len = reader.u64()?;
            let compressed = reader.bytes(compressed_len)?;
            let mut inner = Vec::new();
            zstd::stream::read::Decoder::new(compressed)
                .and_then(|decoder| decoder.take(inner_len).read_to_end(&mut inner))
                .map_err(|e| decode_err(format!("bad zstd data: {e}")))?;
            if inner.len() as u64 != inner_len {
                return Err(decode_err("zstd data has the wrong decompressed length"));
            }
            let mut inner_reader = ByteReader::new(&inner, reader.max_len());
            let values = decode_with(&mut inner_reader, UNCOMPRESSED_CODECS)?;
            inner_reader.finish()?;
            if values.len() as u64 != count {
                return Err(decode_err("compressed array has the wrong count"));
            }
            Ok(values)
        }
    }
}

fn read_width(reader: &mut ByteReader) -> Result<u32> {
    let width = reader.u8()? as u32;
    if width > 64 {
        return Err(decode_err(format!("bit width {width} exceeds 64")));
    }
    Ok(width)
}

fn decode_runs(reader: &mut ByteReader, count: u64) -> Result<Vec<i64>> {
    let (starts, lengths_minus_one) = read_runs(reader, count)?;
    let mut values = try_vec(count)?;
    for (&start, &length) in starts.iter().zip(&lengths_minus_one) {
        values.extend((0..=length).map(|k| start.wrapping_add(k)));
    }
    Ok(values)
}

/// The body of a `Runs` encoding of `count` values: run starts and lengths minus one.
fn read_runs(reader: &mut ByteReader, count: u64) -> Result<(Vec<i64>, Vec<i64>)> {
    let run_count = reader.len()?;
    let starts = decode_with(reader, PLAIN_CODECS)?;
    let lengths_minus_one = decode_with(reader, PLAIN_CODECS)?;
    if starts.len() as u64 != run_count || lengths_minus_one.len() as u64 != run_count {
        return Err(decode_err(
            "run starts and lengths disagree with the run count",
        ));
    }
    let mut total: u64 = 0;
    for &length in &lengths_minus_one {
        if length < 0 {
            return Err(decode_err("negative run length"));
        }
        total = total
            .checked_add(length as u64 + 1)
            .ok_or_else(|| decode_err("run lengths overflow"))?;
    }
    if total != count {
        return Err(decode_err("run lengths do not add up to the count"));
    }
    Ok((starts, lengths_minus_one))
}

fn decode_bitmap(reader: &mut ByteReader, count: u64) -> Result<Vec<i64>> {
    let set = read_bitmap(reader, count)?;
    let mut positions = try_vec(count)?;
    positions.extend(set.ones());
    Ok(positions)
}

/// The body of a `Bitmap` encoding of `count` positions, validated.
fn read_bitmap(reader: &mut ByteReader, count: u64) -> Result<Bitset> {
    let universe = reader.u64()?;
    if universe > i64::MAX as u64 {
        return Err(decode_err("bitmap universe beyond int64"));
    }
    let bytes = reader.bytes(universe.div_ceil(64) * 8)?;
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    if universe % 64 != 0 && words.last().is_some_and(|&w| w >> (universe % 64) != 0) {
        return Err(decode_err("bitmap has bits beyond its universe"));
    }
    let set = Bitset::from_words(universe, words);
    if set.count() != count {
        return Err(decode_err("bitmap population does not match its count"));
    }
    Ok(set)
}

/// Reads a set of positions in `[0, universe)` written by [`encode_bitset`] (or by
/// [`encode_ints`]); a bitmap encoding becomes the set without listing its positions.
pub(crate) fn decode_bitset(reader: &mut ByteReader, universe: u64) -> Result<Bitset> {
    if reader.peek_u8()? == Codec::Bitmap as u8 {
        reader.u8()?;
        let count = reader.len()?;
        let set = read_bitmap(reader, count)?;
        if set.len() != universe {
            return Err(decode_err(
                "bitmap universe differs from the map's input size",
            ));
        }
        return Ok(set);
    }
    reader.check_len(universe)?; // the set will take universe / 8 bytes
    if reader.peek_u8()? == Codec::Runs as u8 {
        // Runs fill whole words at a time; their positions are never listed.
        reader.u8()?;
        let count = reader.len()?;
        let (starts, lengths_minus_one) = read_runs(reader, count)?;
        let mut next_free = 0i64;
        let mut ranges = Vec::with_capacity(starts.len());
        for (&start, &length) in starts.iter().zip(&lengths_minus_one) {
            let end = start
                .checked_add(length)
                .filter(|&last| start >= next_free && (last as u64) < universe);
            let Some(last) = end else {
                return Err(decode_err(format!(
                    "kept runs are not sorted disjoint ranges in [0, {universe})"
                )));
            };
            ranges.push((start as u64, last as u64 + 1));
            next_free = last + 1;
        }
        return Ok(Bitset::from_ranges(ranges.into_iter(), universe));
    }
    let positions = decode_ints(reader)?;
    if positions.iter().any(|&p| p < 0 || p as u64 >= universe)
        || positions.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(decode_err(format!(
            "kept rows are not sorted unique positions in [0, {universe})"
        )));
    }
    Ok(Bitset::from_sorted_positions(
        positions.into_iter(),
        universe,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::DEFAULT_MAX_LEN;

    fn round_trip(values: &[i64], universe: Option<u64>) -> usize {
        let mut out = ByteWriter::default();
        encode_ints(&mut out, values, universe);
        let mut reader = ByteReader::new(&out.bytes, DEFAULT_MAX_LEN);
        assert_eq!(decode_ints(&mut reader).unwrap(), values);
        reader.finish().unwrap();
        out.bytes.len()
    }

    #[test]
    fn each_codec_round_trips() {
        round_trip(&[], None);
        round_trip(&[i64::MIN, i64::MAX, -1, 0], None);
        round_trip(&[-1; 1000], None);
        round_trip(&(0..5000).collect::<Vec<_>>(), None);
        round_trip(
            &(0..5000).filter(|i| i % 3 != 0).collect::<Vec<_>>(),
            Some(5000),
        );
        round_trip(&(0..5000).map(|i| i * 1000).collect::<Vec<_>>(), None);
        let clustered: Vec<i64> = (0..20)
            .flat_map(|c| (0..300).map(move |i| c << 30 | i))
            .collect();
        round_trip(&clustered, None);
    }

    #[test]
    fn ranges_and_constants_cost_almost_nothing() {
        assert!(round_trip(&(0..1_000_000).collect::<Vec<_>>(), None) < 64);
        assert!(round_trip(&[-1; 1_000_000], None) < 32);
    }
}
