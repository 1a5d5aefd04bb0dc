//! Decoder robustness: arbitrary, damaged and truncated bytes never panic and never decode
//! to anything but the original.
//!
//! Two layers are attacked. Through the public decoders, any change to valid bytes must be
//! an error (the checksum sees it). Below the checksum, the payload parsers are fed
//! mutated and arbitrary payloads directly, with a small element limit so that a corrupted
//! length cannot ask for a huge allocation: they must fail cleanly or return a map that
//! satisfies its invariants.
//!
//! Case counts: 60,000 per test with `--release`, 4,000 in debug builds;
//! `PROPTEST_CASES` overrides them.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{cases, spec, Spec};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::container::{open, ContainerKind};
use crate::ids::{decode_fragment_payload, decode_ids_payload};
use crate::{decode_fragment, decode_ids, encode_fragment, encode_ids, RowMap};

/// Element limit for the payload-level tests.
const SMALL_MAX_LEN: u64 = 1 << 16;

const ALL_KINDS: [ContainerKind; 11] = [
    ContainerKind::Ids,
    ContainerKind::Fragment,
    ContainerKind::Identity,
    ContainerKind::Offset,
    ContainerKind::Select,
    ContainerKind::Permutation,
    ContainerKind::Expand,
    ContainerKind::Group,
    ContainerKind::Pair,
    ContainerKind::Window,
    ContainerKind::All,
];

/// Something valid to encode: a row map, an ids array or a fragment.
#[derive(Clone, Debug)]
enum Original {
    Map(Spec),
    Ids(Vec<i64>),
    Fragment(Vec<(String, Vec<i64>)>),
}

fn ids() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        prop::collection::vec(any::<i64>(), 0..64),
        prop::collection::vec(-3..40i64, 0..400),
        (0..1000i64, 0..600usize).prop_map(|(start, len)| (start..start + len as i64).collect()),
        prop::collection::btree_set(0..5000i64, 0..600).prop_map(|set| set.into_iter().collect()),
    ]
}

fn original() -> impl Strategy<Value = Original> {
    prop_oneof![
        spec(300).prop_map(Original::Map),
        ids().prop_map(Original::Ids),
        prop::collection::vec(("[a-z]{0,6}", ids()), 0..4).prop_map(|arrays| {
            let mut seen = std::collections::HashSet::new();
            Original::Fragment(
                arrays
                    .into_iter()
                    .filter(|(name, _)| seen.insert(name.clone()))
                    .collect(),
            )
        }),
    ]
}

impl Original {
    fn encode(&self) -> Vec<u8> {
        match self {
            Original::Map(spec) => spec.build().to_bytes(),
            Original::Ids(ids) => encode_ids(ids),
            Original::Fragment(arrays) => encode_fragment(
                arrays
                    .iter()
                    .map(|(name, values)| (name.as_str(), values.as_slice())),
            ),
        }
    }

    /// Decodes `data` as this kind of object and checks the result against `self`:
    /// unchanged bytes must give back the original, changed bytes an error.
    fn check_decode(&self, data: &[u8], unchanged: bool) -> Result<(), TestCaseError> {
        let same = match self {
            Original::Map(spec) => RowMap::from_bytes(data).map(|map| map == spec.build()),
            Original::Ids(ids) => decode_ids(data).map(|decoded| decoded == *ids),
            Original::Fragment(arrays) => decode_fragment(data).map(|decoded| decoded == *arrays),
        };
        if unchanged {
            prop_assert_eq!(same, Ok(true));
        } else {
            prop_assert!(same.is_err(), "damaged bytes decoded: {:?}", same);
        }
        Ok(())
    }
}

/// A change to some bytes: flips of single bits, overwritten bytes, then a cut.
#[derive(Clone, Debug)]
struct Damage {
    flips: Vec<(Index, u8)>,
    overwrites: Vec<(Index, u8)>,
    keep: Option<Index>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((any::<Index>(), 0..8u8), 0..4),
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
        prop::option::weighted(0.3, any::<Index>()),
    )
        .prop_map(|(flips, overwrites, keep)| Damage {
            flips,
            overwrites,
            keep,
        })
}

impl Damage {
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let mut damaged = bytes.to_vec();
        if !damaged.is_empty() {
            for (index, bit) in &self.flips {
                damaged[index.index(bytes.len())] ^= 1 << bit;
            }
            for (index, value) in &self.overwrites {
                damaged[index.index(bytes.len())] = *value;
            }
        }
        if let Some(keep) = &self.keep {
            damaged.truncate(keep.index(bytes.len() + 1));
        }
        damaged
    }
}

/// A map decoded from untrusted bytes must satisfy its invariants: re-encoding gives it
/// back, and (when small enough to enumerate) all its pairs lie inside its row ranges and
/// every query over it succeeds.
fn check_valid_map(map: &RowMap) -> Result<(), TestCaseError> {
    prop_assert!(RowMap::from_bytes(&map.to_bytes()).unwrap() == *map);
    let (n_in, n_out) = (map.n_in(), map.n_out());
    if n_in > SMALL_MAX_LEN || n_out > SMALL_MAX_LEN || n_in.saturating_mul(n_out) > 1 << 20 {
        return Ok(());
    }
    let pairs = map.pairs_by_output();
    prop_assert_eq!(pairs.offsets.len() as u64, n_out + 1);
    prop_assert!(pairs
        .rows
        .iter()
        .all(|&row| row >= 0 && (row as u64) < n_in));
    let inputs: Vec<i64> = (0..n_in as i64).collect();
    let outputs: Vec<i64> = (0..n_out as i64).collect();
    prop_assert!(map
        .forward(&inputs)
        .unwrap()
        .iter()
        .all(|&row| (row as u64) < n_out));
    prop_assert!(map
        .backward(&outputs)
        .unwrap()
        .iter()
        .all(|&row| (row as u64) < n_in));
    Ok(())
}

fn decode_payload_safely(kind: ContainerKind, payload: &[u8]) -> Result<(), TestCaseError> {
    match kind {
        ContainerKind::Ids => {
            let _ = decode_ids_payload(payload, SMALL_MAX_LEN);
        }
        ContainerKind::Fragment => {
            let _ = decode_fragment_payload(payload, SMALL_MAX_LEN);
        }
        _ => {
            if let Ok(map) = RowMap::from_payload(kind, payload, SMALL_MAX_LEN) {
                check_valid_map(&map)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(60_000)))]

    #[test]
    fn arbitrary_bytes_are_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        with_header in any::<bool>(),
        kind in prop::sample::select(ALL_KINDS.to_vec()),
    ) {
        let mut data = Vec::new();
        if with_header {
            // A plausible header, so the checksum and not the magic has to catch it.
            data.extend_from_slice(b"HIPPO\0\x01");
            data.push(kind as u8);
            data.extend_from_slice(&(bytes.len().saturating_sub(8) as u64).to_le_bytes());
        }
        data.extend_from_slice(&bytes);
        prop_assert!(decode_ids(&data).is_err());
        prop_assert!(decode_fragment(&data).is_err());
        prop_assert!(RowMap::from_bytes(&data).is_err());
    }

    #[test]
    fn damaged_encodings_are_refused(original in original(), damage in damage()) {
        let bytes = original.encode();
        let damaged = damage.apply(&bytes);
        original.check_decode(&damaged, damaged == bytes)?;
    }

    #[test]
    fn damaged_payloads_decode_safely(original in original(), damage in damage(), relabel in any::<Option<Index>>()) {
        let bytes = original.encode();
        let (kind, payload) = open(&bytes).unwrap();
        let kind = relabel.map_or(kind, |index| ALL_KINDS[index.index(ALL_KINDS.len())]);
        decode_payload_safely(kind, &damage.apply(payload))?;
    }

    #[test]
    fn arbitrary_payloads_decode_safely(
        kind in prop::sample::select(ALL_KINDS.to_vec()),
        payload in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()], 0..300),
    ) {
        decode_payload_safely(kind, &payload)?;
    }
}
