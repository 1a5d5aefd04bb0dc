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
    min: i64,
    max: i64,
    non_decreasing: bool,
    strictly_increasing: bool,
    max_delta: u64,
    runs: u64,
}

impl Stats {
    fn of(values: &[i64]) -> Stats {
        let Some(&first) = values.first() else {
            return Stats {
                min: 0,
                max: 0,
                non_decreasing: true,
                strictly_increasing: true,
                max_delta: 0,
                runs: 0,
            };
        };
        let mut stats = Stats {
            min: first,
            max: first,
            non_decreasing: true,
            strictly_increasing: true,
            max_delta: 0,
            runs: 1,
        };
        let mut previous = first;
        for &value in &values[1..] {
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
    let best = encode_uncompressed(values, universe);
    out.raw(&compress_if_smaller(best, values.len() as u64));
}

fn encode_uncompressed(values: &[i64], universe: Option<u64>) -> Vec<u8> {
    let stats = Stats::of(values);
    let count = values.len() as u64;
    let mut best = encode_plain(values, &stats);
    let is_position_set = stats.strictly_increasing && stats.min >= 0;

    if let Some(universe) = universe.filter(|&n| is_position_set && (count == 0 || (stats.max as u64) < n)) {
        let size = 17 + universe.div_ceil(64) * 8;
        if size < best.len() as u64 {
            best = encode_bitmap(values, universe);
        }
    }
    if stats.runs > 0 && stats.runs <= count / 4 {
        let runs = encode_runs(values, stats.runs);
        if runs.len() < best.len() {
            best = runs;
        }
    }
    if is_position_set && count > 0 && roaring_size_estimate(values) < best.len() as u64 {
        let roaring = encode_roaring(values);
        if roaring.len() < best.len() {
            best = roaring;
        }
    }
    best
}

/// The smallest of Raw, FrameOfReference and Delta.
fn encode_plain(values: &[i64], stats: &Stats) -> Vec<u8> {
    let count = values.len() as u64;
    let raw_size = 8 * count;
    let for_width = bit_width(stats.span());
    let for_size = 9 + packed_len(count, for_width);
    let delta_width = bit_width(stats.max_delta);
    let delta_size = if stats.non_decreasing && count > 0 {
        9 + packed_len(count - 1, delta_width)
    } else {
        u64::MAX
    };

    let mut out = ByteWriter::default();
    if raw_size <= for_size && raw_size <= delta_size {
        out.u8(Codec::Raw as u8);
        out.u64(count);
        out.bytes.reserve(values.len() * 8);
        for &value in values {
            out.i64(value);
        }
    } else if for_size <= delta_size {
        out.u8(Codec::FrameOfReference as u8);
        out.u64(count);
        out.i64(stats.min);
        out.u8(for_width as u8);
        let min = stats.min;
        pack(&mut out.bytes, values.iter().map(|&v| v.wrapping_sub(min) as u64), for_width);
    } else {
        out.u8(Codec::Delta as u8);
        out.u64(count);
        out.i64(values[0]);
        out.u8(delta_width as u8);
        let deltas = values.windows(2).map(|pair| pair[1].wrapping_sub(pair[0]) as u64);
        pack(&mut out.bytes, deltas, delta_width);
    }
    out.bytes
}

fn encode_runs(values: &[i64], run_count: u64) -> Vec<u8> {
    let mut starts = Vec::with_capacity(run_count as usize);
    let mut lengths_minus_one = Vec::with_capacity(run_count as usize);
    let mut start = 0;
    for i in 1..=values.len() {
        if i == values.len() || values[i] != values[i - 1].wrapping_add(1) {
            starts.push(values[start]);
            lengths_minus_one.push((i - start - 1) as i64);
            start = i;
        }
    }
    let mut out = ByteWriter::default();
    out.u8(Codec::Runs as u8);
    out.u64(values.len() as u64);
    out.u64(starts.len() as u64);
    out.raw(&encode_plain(&starts, &Stats::of(&starts)));
    out.raw(&encode_plain(&lengths_minus_one, &Stats::of(&lengths_minus_one)));
    out.bytes
}

fn encode_bitmap(positions: &[i64], universe: u64) -> Vec<u8> {
    let mut words = vec![0u64; universe.div_ceil(64) as usize];
    for &position in positions {
        words[position as usize / 64] |= 1 << (position % 64);
    }
    let mut out = ByteWriter::default();
    out.u8(Codec::Bitmap as u8);
    out.u64(positions.len() as u64);
    out.u64(universe);
    out.bytes.reserve(words.len() * 8);
    for word in words {
        out.u64(word);
    }
    out.bytes
}

/// Serialized size of a roaring set, assuming array or bitmap containers (runs only help).
fn roaring_size_estimate(positions: &[i64]) -> u64 {
    let mut size = 16;
    let mut chunk_start = 0;
    for i in 1..=positions.len() {
        if i == positions.len() || positions[i] >> 16 != positions[chunk_start] >> 16 {
            size += 8 + (2 * (i - chunk_start) as u64).min(8192);
            chunk_start = i;
        }
    }
    size
}

fn encode_roaring(positions: &[i64]) -> Vec<u8> {
    let set = RoaringTreemap::from_sorted_iter(positions.iter().map(|&p| p as u64))
        .expect("positions are sorted and unique");
    let mut serialized = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut serialized).expect("writing to a Vec cannot fail");
    let mut out = ByteWriter::default();
    out.u8(Codec::Roaring as u8);
    out.u64(positions.len() as u64);
    out.u64(serialized.len() as u64);
    out.raw(&serialized);
    out.bytes
}

fn compress_if_smaller(encoded: Vec<u8>, count: u64) -> Vec<u8> {
    if encoded.len() < ZSTD_MIN_BYTES {
        return encoded;
    }
    let sample = &encoded[..encoded.len().min(ZSTD_SAMPLE_BYTES)];
    let Ok(compressed_sample) = zstd::bulk::compress(sample, ZSTD_LEVEL) else {
        return encoded;
    };
    if compressed_sample.len() * 10 > sample.len() * 9 {
        return encoded; // the prefix shrank by less than 10%: not worth compressing it all
    }
    let Ok(compressed) = zstd::bulk::compress(&encoded, ZSTD_LEVEL) else {
        return encoded;
    };
    if compressed.len() + 25 >= encoded.len() {
        return encoded;
    }
    let mut out = ByteWriter::default();
    out.u8(Codec::Zstd as u8);
    out.u64(count);
    out.u64(encoded.len() as u64);
    out.u64(compressed.len() as u64);
    out.raw(&compressed);
    out.bytes
}

/// Reads one array written by [`encode_ints`].
pub(crate) fn decode_ints(reader: &mut ByteReader) -> Result<Vec<i64>> {
    decode_with(reader, ALL_CODECS)
}

fn decode_with(reader: &mut ByteReader, allowed: &[Codec]) -> Result<Vec<i64>> {
    let codec = Codec::from_tag(reader.u8()?)?;
    if !allowed.contains(&codec) {
        return Err(decode_err(format!("array codec {codec:?} is not allowed here")));
    }
    let count = reader.len()?;
    match codec {
        Codec::Raw => {
            let bytes = reader.bytes(count * 8)?;
            Ok(bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
        }
        Codec::FrameOfReference => {
            let min = reader.i64()?;
            let width = read_width(reader)?;
            let bytes = reader.bytes(packed_len(count, width))?;
            let mut values = try_vec(count)?;
            unpack(bytes, count as usize, width, |v| values.push(min.wrapping_add(v as i64)));
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
    let run_count = reader.len()?;
    let starts = decode_with(reader, PLAIN_CODECS)?;
    let lengths_minus_one = decode_with(reader, PLAIN_CODECS)?;
    if starts.len() as u64 != run_count || lengths_minus_one.len() as u64 != run_count {
        return Err(decode_err("run starts and lengths disagree with the run count"));
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
    let mut values = try_vec(count)?;
    for (&start, &length) in starts.iter().zip(&lengths_minus_one) {
        values.extend((0..=length).map(|k| start.wrapping_add(k)));
    }
    Ok(values)
}

fn decode_bitmap(reader: &mut ByteReader, count: u64) -> Result<Vec<i64>> {
    let universe = reader.u64()?;
    if universe > i64::MAX as u64 {
        return Err(decode_err("bitmap universe beyond int64"));
    }
    let bytes = reader.bytes(universe.div_ceil(64) * 8)?;
    let words: Vec<u64> =
        bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).collect();
    let ones: u64 = words.iter().map(|w| w.count_ones() as u64).sum();
    if ones != count {
        return Err(decode_err("bitmap population does not match its count"));
    }
    if universe % 64 != 0 && words.last().is_some_and(|&w| w >> (universe % 64) != 0) {
        return Err(decode_err("bitmap has bits beyond its universe"));
    }
    let mut positions = try_vec(count)?;
    for (index, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            positions.push((index * 64 + bits.trailing_zeros() as usize) as i64);
            bits &= bits - 1;
        }
    }
    Ok(positions)
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
        round_trip(&(0..5000).filter(|i| i % 3 != 0).collect::<Vec<_>>(), Some(5000));
        round_trip(&(0..5000).map(|i| i * 1000).collect::<Vec<_>>(), None);
        let clustered: Vec<i64> = (0..20).flat_map(|c| (0..300).map(move |i| c << 30 | i)).collect();
        round_trip(&clustered, None);
    }

    #[test]
    fn ranges_and_constants_cost_almost_nothing() {
        assert!(round_trip(&(0..1_000_000).collect::<Vec<_>>(), None) < 64);
        assert!(round_trip(&[-1; 1_000_000], None) < 32);
    }
}
