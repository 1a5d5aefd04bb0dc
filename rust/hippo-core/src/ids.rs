//! Containers of int64 arrays: one array (`encode_ids`) or several named ones
//! (`encode_fragment`), each stored with its smallest codec.

use crate::bits::{ByteReader, DEFAULT_MAX_LEN};
use crate::codec::{decode_ints, encode_ints};
use crate::container::{begin, finish, open_as, ContainerKind};
use crate::error::{decode_err, Result};

/// Encodes any int64 array (any order, negatives allowed) into a checksummed container.
pub fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = begin(ContainerKind::Ids);
    encode_ints(&mut out, ids, None);
    finish(out)
}

/// Exact inverse of [`encode_ids`]; fails on damaged, truncated or foreign bytes.
pub fn decode_ids(data: &[u8]) -> Result<Vec<i64>> {
    let payload = open_as(data, ContainerKind::Ids)?;
    decode_ids_payload(payload, DEFAULT_MAX_LEN)
}

pub(crate) fn decode_ids_payload(payload: &[u8], max_len: u64) -> Result<Vec<i64>> {
    let mut reader = ByteReader::new(payload, max_len);
    let ids = decode_ints(&mut reader)?;
    reader.finish()?;
    Ok(ids)
}

/// Encodes several named int64 arrays into one checksummed container, in the given order.
pub fn encode_fragment<'a>(arrays: impl IntoIterator<Item = (&'a str, &'a [i64])>) -> Vec<u8> {
    let arrays: Vec<_> = arrays.into_iter().collect();
    let mut out = begin(ContainerKind::Fragment);
    out.u64(arrays.len() as u64);
    for (name, values) in arrays {
        out.u64(name.len() as u64);
        out.raw(name.as_bytes());
        encode_ints(&mut out, values, None);
    }
    finish(out)
}

/// Inverse of [`encode_fragment`], keeping the order; fails on bad bytes or repeated names.
pub fn decode_fragment(data: &[u8]) -> Result<Vec<(String, Vec<i64>)>> {
    let payload = open_as(data, ContainerKind::Fragment)?;
    decode_fragment_payload(payload, DEFAULT_MAX_LEN)
}

pub(crate) fn decode_fragment_payload(
    payload: &[u8],
    max_len: u64,
) -> Result<Vec<(String, Vec<i64>)>> {
    let mut reader = ByteReader::new(payload, max_len);
    let count = reader.len()?;
    let mut arrays: Vec<(String, Vec<i64>)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for _ in 0..count {
        let name_len = reader.u64()?;
        let name = std::str::from_utf8(reader.bytes(name_len)?)
            .map_err(|_| decode_err("array name is not UTF-8"))?
            .to_owned();
        if !names.insert(name.clone()) {
            return Err(decode_err(format!("array name {name:?} appears twice")));
        }
        let values = decode_ints(&mut reader)?;
        arrays.push((name, values));
    }
    reader.finish()?;
    Ok(arrays)
}
