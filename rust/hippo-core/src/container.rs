//! The checksummed envelope around every encoded object.
//!
//! Layout: `b"HIPPO\0"`, format version (u8), kind (u8), payload length (u64 LE), payload,
//! then the xxh3-64 of everything before it (u64 LE). The checksum is verified before
//! any of the payload is parsed, so damaged bytes never reach a decoder.

use xxhash_rust::xxh3::xxh3_64;

use crate::bits::ByteWriter;
use crate::error::{decode_err, Result};

const MAGIC: &[u8; 6] = b"HIPPO\0";
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2 + 8;
const CHECKSUM_LEN: usize = 8;

/// What a container holds; one tag per row-map kind plus the two array containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ContainerKind {
    Ids = 1,
    Fragment = 2,
    Identity = 16,
    Offset = 17,
    Select = 18,
    Permutation = 19,
    Expand = 20,
    Group = 21,
    Pair = 22,
    Window = 23,
    All = 24,
}

impl ContainerKind {
    fn from_tag(tag: u8) -> Result<ContainerKind> {
        use ContainerKind::*;
        Ok(match tag {
            1 => Ids,
            2 => Fragment,
            16 => Identity,
            17 => Offset,
            18 => Select,
            19 => Permutation,
            20 => Expand,
            21 => Group,
            22 => Pair,
            23 => Window,
            24 => All,
            _ => return Err(decode_err(format!("unknown container kind {tag}"))),
        })
    }
}

/// The checksum containers use: xxh3-64 of `data`.
pub fn checksum(data: &[u8]) -> u64 {
    xxh3_64(data)
}

/// Starts a container of `kind`: the header, with the payload length left to [`finish`].
/// The payload is then written straight after it, so sealing never copies it.
pub(crate) fn begin(kind: ContainerKind) -> ByteWriter {
    let mut out = ByteWriter::default();
    out.raw(MAGIC);
    out.u8(FORMAT_VERSION);
    out.u8(kind as u8);
    out.u64(0);
    out
}

/// Fills in the payload length and appends the checksum.
pub(crate) fn finish(mut out: ByteWriter) -> Vec<u8> {
    let payload_len = (out.bytes.len() - HEADER_LEN) as u64;
    out.bytes[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&payload_len.to_le_bytes());
    let sum = checksum(&out.bytes);
    out.u64(sum);
    out.bytes
}

/// Verifies magic, version, length and checksum; returns the kind and the payload.
pub(crate) fn open(data: &[u8]) -> Result<(ContainerKind, &[u8])> {
    if data.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(decode_err(format!(
            "{} bytes is too short for a hippo_dask container",
            data.len()
        )));
    }
    if &data[..MAGIC.len()] != MAGIC {
        return Err(decode_err("not a hippo_dask container (bad magic bytes)"));
    }
    let version = data[MAGIC.len()];
    if version != FORMAT_VERSION {
        return Err(decode_err(format!(
            "unsupported format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let declared = u64::from_le_bytes(data[MAGIC.len() + 2..HEADER_LEN].try_into().unwrap());
    let actual = (data.len() - HEADER_LEN - CHECKSUM_LEN) as u64;
    if declared != actual {
        return Err(decode_err(format!(
            "truncated or padded: header declares a {declared}-byte payload, found {actual}"
        )));
    }
    let (body, stored) = data.split_at(data.len() - CHECKSUM_LEN);
    let stored = u64::from_le_bytes(stored.try_into().unwrap());
    if checksum(body) != stored {
        return Err(decode_err("checksum mismatch: the bytes are damaged"));
    }
    let kind = ContainerKind::from_tag(data[MAGIC.len() + 1])?;
    Ok((kind, &body[HEADER_LEN..]))
}

/// [`open`], failing unless the container holds `expected`.
pub(crate) fn open_as(data: &[u8], expected: ContainerKind) -> Result<&[u8]> {
    let (kind, payload) = open(data)?;
    if kind != expected {
        return Err(decode_err(format!(
            "expected a {expected:?} container, found {kind:?}"
        )));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let mut writer = begin(ContainerKind::Ids);
        writer.raw(b"payload");
        let sealed = finish(writer);
        assert_eq!(
            open(&sealed).unwrap(),
            (ContainerKind::Ids, &b"payload"[..])
        );
        for cut in 0..sealed.len() {
            assert!(open(&sealed[..cut]).is_err());
        }
    }
}
