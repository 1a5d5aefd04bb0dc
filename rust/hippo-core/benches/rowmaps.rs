//! Throughput of row-map encoding, decoding and queries on 10M-row maps.
//!
//! `cargo bench -p hippo-core --bench rowmaps` (a few minutes: 10 samples per benchmark).
//! Bytes per row against the information-theoretic minimum: `benches/rust/bytes_per_row.py`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use hippo_core::RowMap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const ROWS: usize = 10_000_000;
const BATCH: usize = 1_000_000;

/// The maps measured, each built from 10M input rows.
fn maps(rng: &mut StdRng) -> Vec<(&'static str, RowMap)> {
    let mask: Vec<bool> = (0..ROWS).map(|_| rng.random_bool(0.5)).collect();
    let mut order: Vec<i64> = (0..ROWS as i64).collect();
    order.shuffle(rng);
    let n_groups = ROWS / 10;
    let codes: Vec<i64> = (0..ROWS)
        .map(|_| rng.random_range(0..n_groups as i64))
        .collect();
    let counts: Vec<i64> = (0..ROWS).map(|_| rng.random_range(0..4)).collect();
    let outputs: Vec<i64> = (0..ROWS as i64).collect();
    let matches: Vec<i64> = (0..ROWS)
        .map(|_| rng.random_range(0..ROWS as i64))
        .collect();
    vec![
        ("select_50pct", RowMap::select_mask(&mask)),
        ("permutation", RowMap::permutation(order).unwrap()),
        ("group_1M", RowMap::group(codes, n_groups as u64).unwrap()),
        ("expand_0to3", RowMap::expand(counts).unwrap()),
        (
            "pair_join",
            RowMap::pair(&outputs, &matches, ROWS as u64, ROWS as u64).unwrap(),
        ),
        ("window_100", RowMap::window(ROWS as u64, 100, 1).unwrap()),
    ]
}

/// `count` sorted distinct rows spread evenly over `[0, n)`.
fn sorted_batch(n: u64, count: usize) -> Vec<i64> {
    let count = count.min(n as usize);
    (0..count)
        .map(|k| (k as u64 * n / count as u64) as i64)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let maps = maps(&mut rng);

    let mut encode = c.benchmark_group("encode");
    encode.throughput(Throughput::Elements(ROWS as u64));
    let mask: Vec<bool> = (0..ROWS).map(|_| rng.random_bool(0.5)).collect();
    encode.bench_function("select_from_mask_then_to_bytes", |b| {
        b.iter(|| RowMap::select_mask(black_box(&mask)).to_bytes())
    });
    for (name, map) in &maps {
        encode.bench_function(*name, |b| b.iter(|| black_box(map).to_bytes()));
    }
    encode.finish();

    let mut decode = c.benchmark_group("decode");
    decode.throughput(Throughput::Elements(ROWS as u64));
    for (name, map) in &maps {
        let bytes = map.to_bytes();
        decode.bench_function(*name, |b| {
            b.iter_batched(
                || (),
                |()| RowMap::from_bytes(black_box(&bytes)).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    decode.finish();

    for direction in ["backward", "forward"] {
        let mut group = c.benchmark_group(direction);
        for (name, map) in &maps {
            let n = if direction == "backward" {
                map.n_out()
            } else {
                map.n_in()
            };
            let query = |rows: &[i64]| {
                if direction == "backward" {
                    map.backward(rows)
                } else {
                    map.forward(rows)
                }
            };
            query(&[0]).unwrap(); // builds the lazy index (inverse, CSR) outside the timing
            let one = [(n / 2) as i64];
            group.throughput(Throughput::Elements(1));
            group.bench_function(BenchmarkId::new(*name, "1_row"), |b| {
                b.iter(|| query(black_box(&one)).unwrap())
            });
            let batch = sorted_batch(n, BATCH);
            group.throughput(Throughput::Elements(batch.len() as u64));
            group.bench_function(BenchmarkId::new(*name, "1M_sorted_rows"), |b| {
                b.iter(|| query(black_box(&batch)).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
