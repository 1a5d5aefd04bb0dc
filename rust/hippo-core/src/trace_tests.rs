//! Every engine operation against a naive oracle (BTreeSet / nested loops), on fixed cases
//! and with proptest on random tables shaped like lineage data (small spans for bitmaps,
//! huge ones for hashing, MISSING, duplicates, several slots).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn set_of(t: &Tuples) -> BTreeSet<Vec<i64>> {
    (0..t.len()).map(|i| t.row(i)).collect()
}

fn rows_of(columns: &[Vec<i64>]) -> Vec<Vec<i64>> {
    let n = columns.first().map_or(0, Vec::len);
    (0..n).map(|i| columns.iter().map(|c| c[i]).collect()).collect()
}

fn view_of(columns: &[Vec<i64>]) -> View<'_> {
    View::new(columns.first().map_or(0, Vec::len), columns.iter().map(Vec::as_slice).collect()).unwrap()
}

fn oracle_sorted_unique(values: &[i64]) -> Vec<i64> {
    values.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
}

fn is_duplicate_free(t: &Tuples) -> bool {
    set_of(t).len() == t.len()
}

/// Python's `_window_ids`, literally.
fn oracle_window_ids(ids: &[i64], before: Option<i64>, after: Option<i64>, ends: &BTreeMap<i64, i64>) -> Vec<i64> {
    let mut out = BTreeSet::new();
    for &id in ids {
        let (high, pos) = (id >> 32, id & 0xffff_ffff);
        let end = *ends.get(&high).unwrap_or(&-1);
        let lo = before.map_or(0, |b| (pos - b).max(0));
        let hi = after.map_or(end, |a| (pos + a).min(end.max(pos)));
        for p in lo..=hi {
            out.insert((high << 32) | p);
        }
    }
    out.into_iter().collect()
}

fn oracle_atom(rows: &[Vec<i64>], atom: &Atom<'_>) -> Vec<bool> {
    rows.iter()
        .map(|r| {
            let v = r[atom.column];
            let hit = match atom.ids {
                None => v != MISSING,
                Some(ids) => ids.contains(&v),
            };
            hit && atom.conds.iter().all(|&(j, x)| r[j] == x)
        })
        .collect()
}

// ------------------------------------------------------------------ fixed cases

#[test]
fn sorted_unique_takes_every_path() {
    assert_eq!(sorted_unique(&[]), Vec::<i64>::new());
    assert_eq!(sorted_unique(&[3, 1, 3, -1, 2]), [-1, 1, 2, 3]);
    assert_eq!(sorted_unique(&[1, 2, 5]), [1, 2, 5]);
    // a huge span: the sort path
    let wide = [i64::MAX, i64::MIN, 0, i64::MAX, -1];
    assert_eq!(sorted_unique(&wide), [i64::MIN, -1, 0, i64::MAX]);
    assert_eq!(sorted_ids(&[5, -1, 5, 2, -1]), [2, 5]);
    assert_eq!(sorted_ids(&[-1, -1]), Vec::<i64>::new());
}

#[test]
fn union_sorted_of_parts() {
    assert_eq!(union_sorted(&[]), Vec::<i64>::new());
    assert_eq!(union_sorted(&[&[1, 4, 9], &[2, 4, 10]]), [1, 2, 4, 9, 10]);
    assert_eq!(union_sorted(&[&[9, 1], &[1], &[], &[i64::MIN]]), [i64::MIN, 1, 9]);
}

#[test]
fn id_sets_of_each_shape_agree() {
    let probes: Vec<i64> = (-70..300).chain([i64::MIN, i64::MAX, 1 << 40]).collect();
    for ids in [
        vec![3, 7],
        (0..200).step_by(3).collect::<Vec<_>>(),
        (0..50).map(|i| i * (1i64 << 40)).collect(),
        vec![i64::MIN, -5, 0, 4, 9, 12, 100, 250, i64::MAX],
    ] {
        let set = IdSet::new(&ids, probes.len());
        for &p in &probes {
            assert_eq!(set.contains(p), ids.contains(&p), "{p} in {ids:?} ({set:?})");
        }
    }
    assert!(matches!(IdSet::new(&(0..100).collect::<Vec<_>>(), 10), IdSet::Dense { .. }));
    assert!(matches!(IdSet::new(&(0..100).map(|i| i << 40).collect::<Vec<_>>(), 10), IdSet::Hashed(_)));
}

#[test]
fn dedupe_keeps_first_occurrences() {
    let columns = vec![vec![1, 2, 1, 3, 2], vec![7, 8, 7, 9, 5]];
    let t = unique_rows(&view_of(&columns));
    assert_eq!(rows_of(&[t.column(0).to_vec(), t.column(1).to_vec()]), [[1, 7], [2, 8], [3, 9], [2, 5]]);
    // one column all-distinct: nothing to do, order kept
    let columns = vec![vec![9, 8, 8], vec![1, 2, 3]];
    assert_eq!(unique_rows(&view_of(&columns)).into_data(), [9, 8, 8, 1, 2, 3]);
    // no slots: at most one (empty) tuple
    let empty = View::new(4, vec![]).unwrap();
    assert_eq!(unique_rows(&empty).len(), 1);
    assert_eq!(unique_rows(&View::new(0, vec![]).unwrap()).len(), 0);
}

#[test]
fn select_unique_checks_rows_and_columns() {
    let columns = vec![vec![1, -1, 3], vec![-1, -1, 4]];
    let view = view_of(&columns);
    let err = select_unique(&view, &Keep::Rows(vec![3]), &[0]).unwrap_err();
    assert!(matches!(err, CoreError::OutOfRange { row: 3, n: 3 }));
    assert!(select_unique(&view, &Keep::Rows(vec![-1]), &[0]).is_err());
    assert!(select_unique(&view, &Keep::All, &[2]).is_err());
    assert!(select_unique(&view, &Keep::Equals(5, 0), &[0]).is_err());
    let present = select_unique(&view, &Keep::Present, &[1, 0]).unwrap();
    assert_eq!(set_of(&present), BTreeSet::from([vec![-1, 1], vec![4, 3]]));
    let tagged = select_unique(&view, &Keep::Equals(1, -1), &[0]).unwrap();
    assert_eq!(tagged.into_data(), [-1, 1]);
}

#[test]
fn union_rows_of_small_and_large() {
    let a = vec![vec![1, 2, 3], vec![10, 20, 30]];
    let b = vec![vec![3, 4, 1, 5], vec![30, 40, 11, 50]];
    let u = union_rows(&view_of(&a), &view_of(&b)).unwrap();
    let expected: BTreeSet<Vec<i64>> = rows_of(&a).into_iter().chain(rows_of(&b)).collect();
    assert_eq!(set_of(&u), expected);
    assert!(is_duplicate_free(&u));
    assert!(union_rows(&view_of(&a), &view_of(&[vec![1]])).is_err());
}

#[test]
fn group_index_of_dense_and_hashed_ids() {
    for gids in [
        vec![4, 2, 4, 0, 2, 4],
        vec![1 << 62, 5, 1 << 62, -7, 5, i64::MAX],
        vec![],
        vec![9],
    ] {
        let index = GroupIndex::build(&gids).unwrap();
        let distinct = oracle_sorted_unique(&gids);
        assert_eq!(index.keys(), distinct.as_slice());
        for g in &distinct {
            let rows: Vec<usize> = (0..gids.len()).filter(|&r| gids[r] == *g).collect();
            assert_eq!(index.rows_of(&[*g]), rows);
        }
        assert_eq!(index.rows_of(&distinct).len(), gids.len());
        assert!(index.rows_of(&[-100, 3, 1 << 61]).is_empty());
    }
}

#[test]
fn groups_switch_from_scans_to_the_index() {
    let gids: Vec<i64> = (0..1000).map(|r| (r * 7) % 97).collect();
    let members = vec![(0..1000).collect::<Vec<i64>>(), gids.iter().map(|g| g * 10).collect()];
    let view = view_of(&members);
    let groups = Groups::new();
    for round in 0..(SCANS_BEFORE_INDEX + 3) {
        let got = groups.members_of(&view, &gids, &[3, 50], &[1, 0]).unwrap();
        let expected: BTreeSet<Vec<i64>> =
            (0..1000).filter(|&r| gids[r as usize] == 3 || gids[r as usize] == 50).map(|r| vec![gids[r as usize] * 10, r]).collect();
        assert_eq!(set_of(&got), expected);
        assert_eq!(groups.indexed(), round >= SCANS_BEFORE_INDEX);
    }
    // many groups: a scan even with the index; the same answer
    let all: Vec<i64> = (0..97).collect();
    assert_eq!(groups.members_of(&view, &gids, &all, &[0]).unwrap().len(), 1000);
    assert!(groups.members_of(&view, &gids, &[5, 3], &[0]).is_err()); // not sorted
    assert!(groups.members_of(&view, &gids[1..], &[3], &[0]).is_err()); // ragged
}

#[test]
fn windows_stay_in_their_fragment() {
    let gids: Vec<i64> = [(3i64, 0..5), (7, 0..3)].into_iter().flat_map(|(h, r)| r.map(move |p| (h << 32) | p)).collect();
    let ends = window_ends(&gids);
    assert_eq!(ends, [(3, 4), (7, 2)]);
    let map: BTreeMap<i64, i64> = ends.iter().copied().collect();
    let ids = [(3 << 32) | 2, (7 << 32) | 0, (9 << 32) | 4];
    for (before, after) in [(Some(1), Some(0)), (None, Some(0)), (Some(0), None), (None, None), (Some(10), Some(10))] {
        assert_eq!(window_ids(&ids, before, after, &ends), oracle_window_ids(&ids, before, after, &map), "{before:?} {after:?}");
    }
    assert!(window_ids(&[], Some(1), Some(1), &ends).is_empty());
}

#[test]
fn atoms_match_like_the_oracle() {
    let columns = vec![vec![1, 2, -1, 4, 2], vec![0, 1, 0, 1, 1], vec![5, 5, 6, -1, 7]];
    let view = view_of(&columns);
    let rows = rows_of(&columns);
    let ids = [2i64, 4];
    let atoms = vec![
        Atom { column: 0, ids: Some(&ids), conds: vec![(1, 1)] },
        Atom { column: 2, ids: None, conds: vec![] },
        Atom { column: 0, ids: Some(&[]), conds: vec![] },
    ];
    for (a, atom) in atoms.iter().enumerate() {
        let expected: Vec<i64> = (0..5).filter(|&r| oracle_atom(&rows, atom)[r as usize]).collect();
        assert_eq!(evaluate(&view, std::slice::from_ref(atom)).unwrap(), expected, "atom {a}");
    }
    let sets = evaluate_sets(&view, &atoms, &[vec![0], vec![0, 1], vec![], vec![2, 0]]).unwrap();
    assert_eq!(sets, [vec![1, 3, 4], vec![0, 1, 2, 4, 3].into_iter().collect::<BTreeSet<_>>().into_iter().collect(), vec![], vec![1, 3, 4]]);
    assert_eq!(matching_values(&view, &atoms[..1], &[10, 20, 30, 40, -1]).unwrap(), [20, 40]);
    assert!(evaluate(&view, &[Atom { column: 3, ids: None, conds: vec![] }]).is_err());
    assert!(evaluate(&view, &[Atom { column: 0, ids: Some(&[4, 2]), conds: vec![] }]).is_err());
    assert!(evaluate_sets(&view, &atoms, &[vec![3]]).is_err());
}

// ------------------------------------------------------------------ random cases

/// Values shaped like slot values: small positions, MISSING, or huge hashed ids.
fn value() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..40,
        1 => Just(MISSING),
        1 => prop::sample::select(vec![1i64 << 62, (1 << 62) + 3, i64::MAX, 5 << 32]),
    ]
}

fn table(max_width: usize) -> impl Strategy<Value = Vec<Vec<i64>>> {
    (1..=max_width, 0usize..120).prop_flat_map(|(width, len)| prop::collection::vec(prop::collection::vec(value(), len), width))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sorted_sets_match_btreeset(values in prop::collection::vec(prop_oneof![0i64..200, any::<i64>()], 0..300)) {
        prop_assert_eq!(sorted_unique(&values), oracle_sorted_unique(&values));
        let without: Vec<i64> = oracle_sorted_unique(&values).into_iter().filter(|&v| v != MISSING).collect();
        prop_assert_eq!(sorted_ids(&values), without);
        let (a, b) = values.split_at(values.len() / 2);
        prop_assert_eq!(union_sorted(&[a, b]), oracle_sorted_unique(&values));
        let (sa, sb) = (oracle_sorted_unique(a), oracle_sorted_unique(b));
        prop_assert_eq!(union_sorted(&[&sa, &sb]), oracle_sorted_unique(&values));
    }

    #[test]
    fn tuple_sets_match_btreeset(columns in table(3), picks in prop::collection::vec(0usize..1000, 0..50), tag in 0i64..3) {
        let view = view_of(&columns);
        let rows = rows_of(&columns);
        let n = rows.len();
        let width = columns.len();
        let u = unique_rows(&view);
        prop_assert!(is_duplicate_free(&u));
        prop_assert_eq!(set_of(&u), rows.iter().cloned().collect::<BTreeSet<_>>());
        if width == 1 {
            prop_assert!(is_strictly_increasing(u.column(0)));
        }
        // take + project (reversed order)
        let project: Vec<usize> = (0..width).rev().collect();
        let take: Vec<i64> = if n == 0 { vec![] } else { picks.iter().map(|&p| (p % n) as i64).collect() };
        let got = select_unique(&view, &Keep::Rows(take.clone()), &project).unwrap();
        let expected: BTreeSet<Vec<i64>> = take.iter().map(|&r| project.iter().map(|&j| rows[r as usize][j]).collect()).collect();
        prop_assert!(is_duplicate_free(&got));
        prop_assert_eq!(set_of(&got), expected);
        // merge side: rows with any projected slot set
        let side = &project[..1.max(width / 2)];
        let got = select_unique(&view, &Keep::Present, side).unwrap();
        let expected: BTreeSet<Vec<i64>> = rows.iter().map(|r| side.iter().map(|&j| r[j]).collect::<Vec<_>>())
            .filter(|t| t.iter().any(|&v| v != MISSING)).collect();
        prop_assert_eq!(set_of(&got), expected);
        // concat input: rows tagged `tag` in the last column
        let got = select_unique(&view, &Keep::Equals(width - 1, tag), &[0]).unwrap();
        let expected: BTreeSet<Vec<i64>> = rows.iter().filter(|r| r[width - 1] == tag).map(|r| vec![r[0]]).collect();
        prop_assert_eq!(set_of(&got), expected);
    }

    #[test]
    fn unions_match_btreeset(a in table(3), split in 0usize..200) {
        // two duplicate-free sets of the same width, overlapping
        let width = a.len();
        let all = unique_rows(&view_of(&a));
        let rows: Vec<Vec<i64>> = (0..all.len()).map(|i| all.row(i)).collect();
        let cut = if rows.is_empty() { 0 } else { split % (rows.len() + 1) };
        let overlap = cut / 2;
        let left: Vec<Vec<i64>> = rows[..cut].to_vec();
        let right: Vec<Vec<i64>> = rows[overlap..].to_vec();
        let cols = |rs: &[Vec<i64>]| -> Vec<Vec<i64>> { (0..width).map(|j| rs.iter().map(|r| r[j]).collect()).collect() };
        let (lc, rc) = (cols(&left), cols(&right));
        let (lv, rv) = (View::new(left.len(), lc.iter().map(Vec::as_slice).collect()).unwrap(),
                        View::new(right.len(), rc.iter().map(Vec::as_slice).collect()).unwrap());
        for (x, y) in [(&lv, &rv), (&rv, &lv)] {
            let u = union_rows(x, y).unwrap();
            prop_assert!(is_duplicate_free(&u));
            prop_assert_eq!(set_of(&u), rows.iter().cloned().collect::<BTreeSet<_>>());
        }
    }

    #[test]
    fn group_lookups_match_a_scan(gids in prop::collection::vec(value(), 0..200), wanted in prop::collection::vec(value(), 0..12)) {
        let wanted = oracle_sorted_unique(&wanted);
        let expected: Vec<usize> = (0..gids.len()).filter(|&r| wanted.contains(&gids[r])).collect();
        let index = GroupIndex::build(&gids).unwrap();
        let mut got = index.rows_of(&wanted);
        got.sort_unstable();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(scan(&gids, &IdSet::new(&wanted, gids.len())), expected.clone());
        let groups = Groups::new();
        let members = vec![(0..gids.len() as i64).collect::<Vec<_>>()];
        for _ in 0..(SCANS_BEFORE_INDEX + 2) {
            let t = groups.members_of(&view_of(&members), &gids, &wanted, &[0]).unwrap();
            prop_assert_eq!(t.column(0).iter().map(|&r| r as usize).collect::<Vec<_>>(), expected.clone());
        }
    }

    #[test]
    fn windows_match_the_python_formula(
        fragments in prop::collection::vec((0i64..5, 1i64..30), 1..4),
        picks in prop::collection::vec((0usize..4, 0i64..40), 0..8),
        before in prop::option::of(0i64..6),
        after in prop::option::of(0i64..6),
    ) {
        let gids: Vec<i64> = fragments.iter().flat_map(|&(h, n)| (0..n).map(move |p| (h << 32) | p)).collect();
        let ends = window_ends(&gids);
        let mut map = BTreeMap::new();
        for &(h, n) in &fragments {
            let e = map.entry(h).or_insert(n - 1);
            *e = (*e).max(n - 1);
        }
        prop_assert_eq!(ends.clone(), map.iter().map(|(&h, &e)| (h, e)).collect::<Vec<_>>());
        // ids in and (high 9) out of the memberships, positions past a fragment's end too
        let ids = oracle_sorted_unique(&picks.iter().map(|&(f, p)| {
            let h = fragments.get(f).map_or(9, |x| x.0);
            (h << 32) | p
        }).collect::<Vec<_>>());
        prop_assert_eq!(window_ids(&ids, before, after, &ends), oracle_window_ids(&ids, before, after, &map));
    }

    #[test]
    fn atoms_match_a_row_by_row_oracle(columns in table(3), ids in prop::collection::vec(value(), 0..20),
                                        column in 0usize..3, cond in prop::option::of((0usize..3, 0i64..3)), none in any::<bool>()) {
        let width = columns.len();
        let view = view_of(&columns);
        let rows = rows_of(&columns);
        let ids = oracle_sorted_unique(&ids);
        let atom = Atom {
            column: column % width,
            ids: if none { None } else { Some(&ids) },
            conds: cond.map(|(j, v)| vec![(j % width, v)]).unwrap_or_default(),
        };
        let other = Atom { column: 0, ids: Some(&ids[..ids.len() / 2]), conds: vec![] };
        let m1 = oracle_atom(&rows, &atom);
        let m2 = oracle_atom(&rows, &other);
        let one: Vec<i64> = (0..rows.len()).filter(|&r| m1[r]).map(|r| r as i64).collect();
        let both: Vec<i64> = (0..rows.len()).filter(|&r| m1[r] || m2[r]).map(|r| r as i64).collect();
        prop_assert_eq!(evaluate(&view, std::slice::from_ref(&atom)).unwrap(), one.clone());
        let atoms = [atom.clone(), other.clone()];
        prop_assert_eq!(evaluate(&view, &atoms).unwrap(), both.clone());
        prop_assert_eq!(evaluate_sets(&view, &atoms, &[vec![0], vec![1, 0], vec![]]).unwrap(), vec![one, both.clone(), vec![]]);
        let values: Vec<i64> = (0..rows.len() as i64).map(|r| r % 7 - 1).collect();
        let expected = oracle_sorted_unique(&both.iter().map(|&r| values[r as usize]).filter(|&v| v != MISSING).collect::<Vec<_>>());
        prop_assert_eq!(matching_values(&view, &atoms, &values).unwrap(), expected);
    }
}
