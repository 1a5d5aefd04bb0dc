//! Bit packing and bounds-checked byte cursors shared by every codec.

use crate::error::{decode_err, Result};

/// Largest element count a decoder accepts by default. Counts are checked against it (and
/// against the bytes actually present) before anything is allocated.
pub(crate) const DEFAULT_MAX_LEN: u64 = 1 << 40;

/// Bits needed to write `value` (0 for 0).
pub(crate) fn bit_width(value: u64) -> u32 {
    64 - value.leading_zeros()
}

/// Bytes taken by `count` values of `width` bits, packed and padded to a whole byte.
pub(crate) fn packed_len(count: u64, width: u32) -> u64 {
    ((count as u128 * width as u128).div_ceil(8)) as u64
}

/// Appends `values` to `out`, `width` bits each, least significant bit first.
/// Every value must be below `2^width`.
pub(crate) fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, count: u64, width: u32) {
    if width == 0 {
        return;
    }
    out.reserve(packed_len(count, width) as usize + 8);
    let mut word: u64 = 0;
    let mut filled: u32 = 0; // bits of `word` in use, always < 64 between values
    for value in values {
        debug_assert!(width == 64 || value >> width == 0);
        word |= value << filled;
        let total = filled + width;
        if total >= 64 {
            out.extend_from_slice(&word.to_le_bytes());
            // The high bits of `value` that did not fit start the next word.
            word = if filled == 0 {
                0
            } else {
                value >> (64 - filled)
            };
            filled = total - 64;
        } else {
            filled = total;
        }
    }
    let tail = filled.div_ceil(8) as usize;
    out.extend_from_slice(&word.to_le_bytes()[..tail]);
}

/// Calls `sink` with each of the `count` values of `width` bits packed in `bytes`.
/// The caller has checked that `bytes` holds at least [`packed_len`] bytes.
pub(crate) fn unpack(bytes: &[u8], count: usize, width: u32, mut sink: impl FnMut(u64)) {
    if width == 0 {
        (0..count).for_each(|_| sink(0));
        return;
    }
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    if width <= 56 {
        // Each value lies within the 8 bytes starting at its first byte.
        let mut bit = 0usize;
        for _ in 0..count {
            let byte = bit / 8;
            let word = match bytes.get(byte..byte + 8) {
                Some(eight) => u64::from_le_bytes(eight.try_into().expect("8 bytes")),
                None => {
                    let mut tail = [0u8; 8];
                    tail[..bytes.len() - byte].copy_from_slice(&bytes[byte..]);
                    u64::from_le_bytes(tail)
                }
            };
            sink((word >> (bit % 8)) & mask);
            bit += width as usize;
        }
        return;
    }
    // Wider values may straddle 9 bytes: keep a 128-bit window.
    let mut window: u128 = 0;
    let mut filled: u32 = 0;
    let mut position = 0;
    for _ in 0..count {
        if filled < width {
            let take = (bytes.len() - position).min(8);
            let mut word = [0u8; 8];
            word[..take].copy_from_slice(&bytes[position..position + take]);
            position += take;
            window |= (u64::from_le_bytes(word) as u128) << filled;
            filled += 8 * take as u32;
        }
        sink(window as u64 & mask);
        window >>= width;
        filled -= width;
    }
}

/// Little-endian writer for headers and payloads.
#[derive(Default)]
pub(crate) struct ByteWriter {
    pub(crate) bytes: Vec<u8>,
}

impl ByteWriter {
    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

/// Bounds-checked little-endian reader: every read fails cleanly past the end, and every
/// element count is checked against `max_len` before it can size an allocation.
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    position: usize,
    max_len: u64,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8], max_len: u64) -> Self {
        ByteReader {
            data,
            position: 0,
            max_len,
        }
    }

    pub(crate) fn max_len(&self) -> u64 {
        self.max_len
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.position
    }

    pub(crate) fn bytes(&mut self, len: u64) -> Result<&'a [u8]> {
        if len > self.remaining() as u64 {
            return Err(decode_err(format!(
                "truncated: needs {len} more bytes at offset {}, has {}",
                self.position,
                self.remaining()
            )));
        }
        let start = self.position;
        self.position += len as usize;
        Ok(&self.data[start..self.position])
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn peek_u8(&self) -> Result<u8> {
        self.data
            .get(self.position)
            .copied()
            .ok_or_else(|| decode_err("truncated: no byte left"))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(self.u64()? as i64)
    }

    /// Reads an element count and checks it against the reader's limit.
    pub(crate) fn len(&mut self) -> Result<u64> {
        let len = self.u64()?;
        self.check_len(len)?;
        Ok(len)
    }

    pub(crate) fn check_len(&self, len: u64) -> Result<()> {
        if len > self.max_len {
            return Err(decode_err(format!(
                "length {len} exceeds the limit {}",
                self.max_len
            )));
        }
        Ok(())
    }

    /// Fails unless every byte was consumed (trailing garbage means a foreign layout).
    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(decode_err(format!(
                "{} unexpected trailing bytes",
                self.remaining()
            )));
        }
        Ok(())
    }
}

/// An allocation of `len` elements that reports failure instead of aborting.
pub(crate) fn try_vec<T>(len: u64) -> Result<Vec<T>> {
    let mut vec = Vec::new();
    vec.try_reserve_exact(len as usize)
        .map_err(|_| decode_err(format!("cannot allocate {len} elements")))?;
    Ok(vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip_every_width() {
        for width in 0..=64u32 {
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            let values: Vec<u64> = (0..37u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & mask)
                .collect();
            let mut bytes = Vec::new();
            pack(
                &mut bytes,
                values.iter().copied(),
                values.len() as u64,
                width,
            );
            assert_eq!(bytes.len() as u64, packed_len(values.len() as u64, width));
            let mut back = Vec::new();
            unpack(&bytes, values.len(), width, |v| back.push(v));
            assert_eq!(back, values, "width {width}");
        }
    }
}
