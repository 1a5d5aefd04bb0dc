//! Shared by the property tests: a description of a row map from which both the map
//! and a naive oracle (the explicit set of (output row, input row) pairs) are built.

#![allow(dead_code)] // each test target uses part of this module

use std::collections::BTreeSet;

use hippo_core::RowMap;
use proptest::prelude::*;

/// The arguments of one row-map constructor.
#[derive(Clone, Debug)]
pub enum Spec {
    Identity(u64),
    Offset {
        offset: u64,
        n_in: u64,
        n_out: u64,
    },
    Select(Vec<bool>),
    Permutation(Vec<i64>),
    Expand(Vec<i64>),
    Group {
        codes: Vec<i64>,
        n_groups: u64,
    },
    Pair {
        outs: Vec<i64>,
        ins: Vec<i64>,
        n_out: u64,
        n_in: u64,
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

/// Pairs (output row, input row): the whole meaning of a row map.
pub type Pairs = BTreeSet<(i64, i64)>;

impl Spec {
    pub fn build(&self) -> RowMap {
        match self {
            Spec::Identity(n) => RowMap::identity(*n),
            Spec::Offset {
                offset,
                n_in,
                n_out,
            } => RowMap::offset(*offset, *n_in, *n_out),
            Spec::Select(mask) => Ok(RowMap::select_mask(mask)),
            Spec::Permutation(order) => RowMap::permutation(order.clone()),
            Spec::Expand(counts) => RowMap::expand(counts.clone()),
            Spec::Group { codes, n_groups } => RowMap::group(codes.clone(), *n_groups),
            Spec::Pair {
                outs,
                ins,
                n_out,
                n_in,
            } => RowMap::pair(outs, ins, *n_out, *n_in),
            Spec::Window { n_in, size, step } => RowMap::window(*n_in, *size, *step),
            Spec::All { n_in, n_out } => RowMap::all(*n_in, *n_out),
        }
        .expect("specs are valid")
    }

    /// The pairs, written out the obvious way.
    pub fn pairs(&self) -> Pairs {
        match self {
            Spec::Identity(n) => (0..*n as i64).map(|i| (i, i)).collect(),
            Spec::Offset { offset, n_in, .. } => {
                (0..*n_in as i64).map(|i| (*offset as i64 + i, i)).collect()
            }
            Spec::Select(mask) => {
                let kept: Vec<i64> = (0..mask.len() as i64)
                    .filter(|&i| mask[i as usize])
                    .collect();
                kept.iter()
                    .enumerate()
                    .map(|(j, &i)| (j as i64, i))
                    .collect()
            }
            Spec::Permutation(order) => order
                .iter()
                .enumerate()
                .map(|(o, &i)| (o as i64, i))
                .collect(),
            Spec::Expand(counts) => {
                let mut pairs = Pairs::new();
                let mut output = 0;
                for (input, &count) in counts.iter().enumerate() {
                    for _ in 0..count {
                        pairs.insert((output, input as i64));
                        output += 1;
                    }
                }
                pairs
            }
            Spec::Group { codes, .. } => codes
                .iter()
                .enumerate()
                .map(|(i, &g)| (g, i as i64))
                .collect(),
            Spec::Pair { outs, ins, .. } => outs.iter().copied().zip(ins.iter().copied()).collect(),
            Spec::Window { n_in, size, step } => {
                let mut pairs = Pairs::new();
                let mut window = 0;
                while window * step < *n_in {
                    for input in window * step..(window * step + size).min(*n_in) {
                        pairs.insert((window as i64, input as i64));
                    }
                    window += 1;
                }
                pairs
            }
            Spec::All { n_in, n_out } => (0..*n_out as i64)
                .flat_map(|o| (0..*n_in as i64).map(move |i| (o, i)))
                .collect(),
        }
    }

    pub fn n_in(&self) -> u64 {
        match self {
            Spec::Identity(n) => *n,
            Spec::Offset { n_in, .. }
            | Spec::Pair { n_in, .. }
            | Spec::Window { n_in, .. }
            | Spec::All { n_in, .. } => *n_in,
            Spec::Select(mask) => mask.len() as u64,
            Spec::Permutation(order) => order.len() as u64,
            Spec::Expand(counts) => counts.len() as u64,
            Spec::Group { codes, .. } => codes.len() as u64,
        }
    }

    pub fn n_out(&self) -> u64 {
        match self {
            Spec::Identity(n) => *n,
            Spec::Offset { n_out, .. } | Spec::Pair { n_out, .. } | Spec::All { n_out, .. } => {
                *n_out
            }
            Spec::Select(mask) => mask.iter().filter(|&&keep| keep).count() as u64,
            Spec::Permutation(order) => order.len() as u64,
            Spec::Expand(counts) => counts.iter().sum::<i64>() as u64,
            Spec::Group { n_groups, .. } => *n_groups,
            Spec::Window { n_in, step, .. } => {
                (0..).take_while(|j| j * step < *n_in).count() as u64
            }
        }
    }
}

/// Any map with `n_in` input rows.
pub fn spec_with_n_in(n_in: u64) -> BoxedStrategy<Spec> {
    let n = n_in as usize;
    let mut kinds: Vec<BoxedStrategy<Spec>> = vec![
        Just(Spec::Identity(n_in)).boxed(),
        (0..4u64, 0..4u64)
            .prop_map(move |(offset, slack)| Spec::Offset {
                offset,
                n_in,
                n_out: n_in + offset + slack,
            })
            .boxed(),
        prop::collection::vec(any::<bool>(), n)
            .prop_map(Spec::Select)
            .boxed(),
        Just((0..n_in as i64).collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(Spec::Permutation)
            .boxed(),
        prop::collection::vec(0..4i64, n)
            .prop_map(Spec::Expand)
            .boxed(),
        (1..5u64, 1..5u64)
            .prop_map(move |(size, step)| Spec::Window { n_in, size, step })
            .boxed(),
        (0..4u64)
            .prop_map(move |n_out| Spec::All { n_in, n_out })
            .boxed(),
        (0..6u64)
            .prop_flat_map(move |n_out| {
                let pairs = if n_in == 0 || n_out == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    prop::collection::vec((0..n_out as i64, 0..n_in as i64), 0..24).boxed()
                };
                pairs.prop_map(move |pairs| {
                    let (outs, ins) = pairs.into_iter().unzip();
                    Spec::Pair {
                        outs,
                        ins,
                        n_out,
                        n_in,
                    }
                })
            })
            .boxed(),
    ];
    let groups = if n_in == 0 {
        (0..3u64)
            .prop_map(|n_groups| Spec::Group {
                codes: Vec::new(),
                n_groups,
            })
            .boxed()
    } else {
        (1..n_in + 3)
            .prop_flat_map(move |n_groups| {
                prop::collection::vec(0..n_groups as i64, n)
                    .prop_map(move |codes| Spec::Group { codes, n_groups })
            })
            .boxed()
    };
    kinds.push(groups);
    proptest::strategy::Union::new(kinds).boxed()
}

/// Any map with up to `max_rows` input rows.
pub fn spec(max_rows: u64) -> BoxedStrategy<Spec> {
    (0..=max_rows).prop_flat_map(spec_with_n_in).boxed()
}

/// Two maps that compose: the second's input is the first's output.
pub fn composable(max_rows: u64) -> BoxedStrategy<(Spec, Spec)> {
    spec(max_rows)
        .prop_flat_map(|first| {
            let second = spec_with_n_in(first.n_out());
            (Just(first), second)
        })
        .boxed()
}

/// The relational join of two pair sets: (c, a) for (b, a) in `first`, (c, b) in `second`.
pub fn compose_pairs(first: &Pairs, second: &Pairs) -> Pairs {
    let mut result = Pairs::new();
    for &(c, b) in second {
        for &(b2, a) in first {
            if b == b2 {
                result.insert((c, a));
            }
        }
    }
    result
}

/// All pairs of `map`, read back through its public API.
pub fn pairs_of(map: &RowMap) -> Pairs {
    let by_output = map.pairs_by_output();
    let mut pairs = Pairs::new();
    for output in 0..by_output.offsets.len() - 1 {
        for &input in by_output.group(output) {
            pairs.insert((output as i64, input));
        }
    }
    pairs
}

/// Sorted unique inputs of `outputs` according to `pairs`.
pub fn oracle_backward(pairs: &Pairs, outputs: &[i64]) -> Vec<i64> {
    let wanted: BTreeSet<i64> = outputs.iter().copied().collect();
    let found: BTreeSet<i64> = pairs
        .iter()
        .filter(|(o, _)| wanted.contains(o))
        .map(|&(_, i)| i)
        .collect();
    found.into_iter().collect()
}

/// Sorted unique outputs of `inputs` according to `pairs`.
pub fn oracle_forward(pairs: &Pairs, inputs: &[i64]) -> Vec<i64> {
    let wanted: BTreeSet<i64> = inputs.iter().copied().collect();
    let found: BTreeSet<i64> = pairs
        .iter()
        .filter(|(_, i)| wanted.contains(i))
        .map(|&(o, _)| o)
        .collect();
    found.into_iter().collect()
}

/// Number of proptest cases: `PROPTEST_CASES` if set, else `release_default` in optimized
/// builds and a fifteenth of it in debug builds (so plain `cargo test` stays quick).
pub fn cases(release_default: u32) -> u32 {
    let default = if cfg!(debug_assertions) {
        release_default / 15
    } else {
        release_default
    };
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
