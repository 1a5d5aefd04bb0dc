//! Every row-map kind against the naive oracle of explicit (output, input) pair sets.

mod common;

use common::*;
use hippo_core::{CoreError, RowMap};
use proptest::prelude::*;

/// Query rows in `[0, n)`, in any order and with repeats.
fn query(n: u64) -> BoxedStrategy<Vec<i64>> {
    if n == 0 {
        Just(Vec::new()).boxed()
    } else {
        prop::collection::vec(0..n as i64, 0..12).boxed()
    }
}

fn spec_and_query(backward: bool) -> impl Strategy<Value = (Spec, Vec<i64>)> {
    spec(24).prop_flat_map(move |spec| {
        let n = if backward { spec.n_out() } else { spec.n_in() };
        (Just(spec), query(n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(20_000)))]

    #[test]
    fn maps_hold_exactly_the_oracle_pairs(spec in spec(24)) {
        let map = spec.build();
        prop_assert_eq!(map.n_in(), spec.n_in());
        prop_assert_eq!(map.n_out(), spec.n_out());
        prop_assert_eq!(pairs_of(&map), spec.pairs());
    }

    #[test]
    fn bytes_round_trip(spec in spec(24)) {
        let map = spec.build();
        let decoded = RowMap::from_bytes(&map.to_bytes()).unwrap();
        prop_assert_eq!(decoded.kind(), map.kind());
        prop_assert_eq!(pairs_of(&decoded), spec.pairs());
        prop_assert!(decoded == map);
        prop_assert_eq!(map.nbytes(), map.to_bytes().len());
    }

    #[test]
    fn backward_matches_oracle((spec, rows) in spec_and_query(true)) {
        let map = spec.build();
        prop_assert_eq!(map.backward(&rows).unwrap(), oracle_backward(&spec.pairs(), &rows));
        let n_out = map.n_out();
        prop_assert_eq!(
            map.backward(&[n_out as i64]),
            Err(CoreError::OutOfRange { row: n_out as i64, n: n_out })
        );
        prop_assert!(map.backward(&[-1]).is_err());
    }

    #[test]
    fn forward_matches_oracle((spec, rows) in spec_and_query(false)) {
        let map = spec.build();
        prop_assert_eq!(map.forward(&rows).unwrap(), oracle_forward(&spec.pairs(), &rows));
        let n_in = map.n_in();
        prop_assert_eq!(
            map.forward(&[n_in as i64]),
            Err(CoreError::OutOfRange { row: n_in as i64, n: n_in })
        );
    }

    #[test]
    fn composition_is_the_join_of_pair_sets((first, second) in composable(16)) {
        let composed = first.build().then(&second.build()).unwrap();
        let expected = compose_pairs(&first.pairs(), &second.pairs());
        prop_assert_eq!(composed.n_in(), first.n_in());
        prop_assert_eq!(composed.n_out(), second.n_out());
        prop_assert_eq!(pairs_of(&composed), expected.clone());
        let all_outputs: Vec<i64> = (0..composed.n_out() as i64).collect();
        prop_assert_eq!(composed.backward(&all_outputs).unwrap(), oracle_backward(&expected, &all_outputs));
        let all_inputs: Vec<i64> = (0..composed.n_in() as i64).collect();
        prop_assert_eq!(composed.forward(&all_inputs).unwrap(), oracle_forward(&expected, &all_inputs));
        prop_assert!(RowMap::from_bytes(&composed.to_bytes()).unwrap() == composed);
    }

    #[test]
    fn equality_means_same_pairs((a, b) in (spec(6), spec(6))) {
        let same = a.n_in() == b.n_in() && a.n_out() == b.n_out() && a.pairs() == b.pairs();
        prop_assert_eq!(a.build() == b.build(), same);
    }
}

#[test]
fn composition_simplifies() {
    let mask = |bits: &[bool]| RowMap::select_mask(bits);
    let identity = RowMap::identity(4).unwrap();
    let select = mask(&[true, false, true, true]);
    assert_eq!(identity.then(&select).unwrap().kind(), select.kind());
    assert_eq!(
        select.then(&RowMap::identity(3).unwrap()).unwrap().kind(),
        select.kind()
    );
    let twice = select.then(&mask(&[false, true, true])).unwrap();
    assert_eq!(twice.kind(), hippo_core::MapKind::Select);
    assert_eq!(twice.backward(&[0, 1]).unwrap(), [2, 3]);
    let offsets = RowMap::offset(1, 2, 4)
        .unwrap()
        .then(&RowMap::offset(3, 4, 9).unwrap())
        .unwrap();
    assert_eq!(offsets.kind(), hippo_core::MapKind::Offset);
    assert_eq!(offsets.forward(&[0]).unwrap(), [4]);
    let order = RowMap::permutation(vec![2, 0, 1]).unwrap();
    assert_eq!(
        order.then(&order).unwrap().kind(),
        hippo_core::MapKind::Permutation
    );
    let all = RowMap::all(5, 4).unwrap();
    assert_eq!(all.then(&select).unwrap().kind(), hippo_core::MapKind::All);
    assert_eq!(
        select.then(&RowMap::all(3, 2).unwrap()).unwrap().kind(),
        hippo_core::MapKind::Pair
    );
    assert_eq!(
        identity.then(&RowMap::all(4, 2).unwrap()).unwrap().kind(),
        hippo_core::MapKind::All
    );
    assert!(matches!(
        select.then(&select),
        Err(CoreError::InvalidInput(_))
    ));
}

#[test]
fn invalid_arguments_are_refused() {
    assert!(RowMap::permutation(vec![0, 0]).is_err());
    assert!(RowMap::permutation(vec![1]).is_err());
    assert!(RowMap::select_ids(vec![2, 1], 3).is_err());
    assert!(RowMap::select_ids(vec![3], 3).is_err());
    assert!(RowMap::offset(2, 3, 4).is_err());
    assert!(RowMap::expand(vec![1, -1]).is_err());
    assert!(RowMap::group(vec![0, 2], 2).is_err());
    assert!(RowMap::pair(&[0], &[0, 1], 1, 2).is_err());
    assert!(RowMap::pair(&[1], &[0], 1, 2).is_err());
    assert!(RowMap::window(3, 0, 1).is_err());
    assert!(RowMap::window(3, 1, 0).is_err());
}
