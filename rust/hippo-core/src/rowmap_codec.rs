//! `RowMap` to and from bytes: a container whose kind is the map kind, and whose payload
//! holds the map's parameters and its arrays, each in its smallest codec.
//!
//! Decoding rebuilds the map through the validating constructors, so a decoded map
//! always satisfies its kind's invariants (a permutation is a permutation, ...).

use crate::bits::{ByteReader, DEFAULT_MAX_LEN};
use crate::codec::{decode_bitset, decode_ints, encode_bitset, encode_ints, encode_values};
use crate::container::{begin, finish, open, ContainerKind};
use crate::error::{decode_err, CoreError, Result};
use crate::rowmap::{counts_to_offsets, MapKind, Repr, RowMap};
use crate::search::Csr;

impl RowMap {
    /// The map as a checksummed container.
    pub fn to_bytes(&self) -> Vec<u8> {
        let kind = match self.kind() {
            MapKind::Identity => ContainerKind::Identity,
            MapKind::Offset => ContainerKind::Offset,
            MapKind::Select => ContainerKind::Select,
            MapKind::Permutation => ContainerKind::Permutation,
            MapKind::Expand => ContainerKind::Expand,
            MapKind::Group => ContainerKind::Group,
            MapKind::Pair => ContainerKind::Pair,
            MapKind::Window => ContainerKind::Window,
            MapKind::All => ContainerKind::All,
        };
        let mut out = begin(kind);
        match &self.repr {
            Repr::Identity { n } => out.u64(*n),
            Repr::Offset {
                offset,
                n_in,
                n_out,
            } => {
                out.u64(*offset);
                out.u64(*n_in);
                out.u64(*n_out);
            }
            Repr::Select { kept } => {
                out.u64(kept.len());
                encode_bitset(&mut out, kept);
            }
            Repr::Permutation { order, .. } => encode_ints(&mut out, order, None),
            Repr::Expand { offsets } => encode_values(&mut out, counts(offsets)),
            Repr::Group {
                codes, n_groups, ..
            } => {
                out.u64(*n_groups);
                encode_ints(&mut out, codes, None);
            }
            Repr::Pair { n_in, by_out, .. } => {
                out.u64(*n_in);
                encode_values(&mut out, counts(&by_out.offsets));
                encode_ints(&mut out, &by_out.rows, None);
            }
            Repr::Window { n_in, size, step } => {
                out.u64(*n_in);
                out.u64(*size);
                out.u64(*step);
            }
            Repr::All { n_in, n_out } => {
                out.u64(*n_in);
                out.u64(*n_out);
            }
        }
        finish(out)
    }

    /// Inverse of [`RowMap::to_bytes`]; fails on damaged, truncated or foreign bytes.
    pub fn from_bytes(data: &[u8]) -> Result<RowMap> {
        let (kind, payload) = open(data)?;
        RowMap::from_payload(kind, payload, DEFAULT_MAX_LEN)
    }

    /// Decodes a payload whose integrity was already checked; arrays longer than
    /// `max_len` are refused before allocation.
    pub(crate) fn from_payload(
        kind: ContainerKind,
        payload: &[u8],
        max_len: u64,
    ) -> Result<RowMap> {
        let mut reader = ByteReader::new(payload, max_len);
        let map = match kind {
            ContainerKind::Identity => RowMap::identity(reader.u64()?),
            ContainerKind::Offset => {
                let (offset, n_in, n_out) = (reader.u64()?, reader.u64()?, reader.u64()?);
                RowMap::offset(offset, n_in, n_out)
            }
            ContainerKind::Select => {
                let n_in = reader.u64()?;
                Ok(RowMap::from_bitset(decode_bitset(&mut reader, n_in)?))
            }
            ContainerKind::Permutation => RowMap::permutation(decode_ints(&mut reader)?),
            ContainerKind::Expand => RowMap::expand(decode_ints(&mut reader)?),
            ContainerKind::Group => {
                let n_groups = reader.len()?;
                RowMap::group(decode_ints(&mut reader)?, n_groups)
            }
            ContainerKind::Pair => decode_pair(&mut reader),
            ContainerKind::Window => {
                let (n_in, size, step) = (reader.u64()?, reader.u64()?, reader.u64()?);
                RowMap::window(n_in, size, step)
            }
            ContainerKind::All => {
                let (n_in, n_out) = (reader.u64()?, reader.u64()?);
                RowMap::all(n_in, n_out)
            }
            ContainerKind::Ids | ContainerKind::Fragment => {
                return Err(decode_err(format!(
                    "expected a row map, found a {kind:?} container"
                )))
            }
        }
        .map_err(as_decode_error)?;
        reader.finish()?;
        Ok(map)
    }

    /// Length of [`RowMap::to_bytes`].
    pub fn nbytes(&self) -> usize {
        self.to_bytes().len()
    }
}

/// Group sizes from their prefix sums.
fn counts(offsets: &[i64]) -> impl Iterator<Item = i64> + Clone + '_ {
    offsets.windows(2).map(|w| w[1] - w[0])
}

/// Pair maps are stored in their canonical form (per output row: how many inputs, then
/// the inputs ascending); anything else is refused rather than silently repaired.
fn decode_pair(reader: &mut ByteReader) -> Result<RowMap> {
    let n_in = reader.u64()?;
    if n_in > i64::MAX as u64 {
        return Err(decode_err("n_in does not fit in int64"));
    }
    let offsets = counts_to_offsets(decode_ints(reader)?).map_err(as_decode_error)?;
    let rows = decode_ints(reader)?;
    let total = *offsets.last().expect("offsets start with 0");
    if total as usize != rows.len() {
        return Err(decode_err(
            "pair counts do not add up to the number of input rows",
        ));
    }
    let by_out = Csr { offsets, rows };
    for output in 0..by_out.offsets.len() - 1 {
        let group = by_out.group(output);
        if group.iter().any(|&row| row < 0 || row as u64 >= n_in) {
            return Err(decode_err(format!("pair input row outside [0, {n_in})")));
        }
        if group.windows(2).any(|w| w[0] >= w[1]) {
            return Err(decode_err(
                "pair input rows are not canonical (sorted, unique)",
            ));
        }
    }
    Ok(RowMap::from_pair_csr(by_out, n_in))
}

/// A constructor refusing decoded values means the bytes were wrong, not the caller.
fn as_decode_error(error: CoreError) -> CoreError {
    match error {
        CoreError::Decode(_) => error,
        other => decode_err(format!("decoded map is invalid: {other}")),
    }
}
