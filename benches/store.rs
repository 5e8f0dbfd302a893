//! Store benchmarks: the pack store's puts and gets, small and large,
//! durable commits (the whole protocol: objects, fsync, ref) with one and
//! with eight committers sharing fsyncs, and opening a store of 100,000
//! objects read-only to read one (what a short command like `vst cat`
//! pays before its work).
//!
//! Run: `cargo bench --bench store`. Uses a temporary directory on the
//! disk that holds `target/` (so `fsync` costs what it costs there).

#![allow(missing_docs)]

use std::time::{Duration, Instant};
use vst_cas::sim::noise;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vst::{CommitOptions, Repo, RepoPath};
use vst_cas::{Access, ObjectId, PackStore, Store};

/// A scratch directory beside `target/`, on the same disk.
fn scratch() -> tempfile::TempDir {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scratch");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// An empty pack store in a new scratch directory (kept alive with it).
fn fresh_store() -> (tempfile::TempDir, PackStore) {
    let dir = scratch();
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    (dir, store)
}

fn small(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    let objects: Vec<Vec<u8>> = (0..1000).map(|i| noise(i, 1024)).collect();
    let ids: Vec<ObjectId> = objects.iter().map(|o| ObjectId::of(o)).collect();
    group.throughput(Throughput::Elements(1000));
    group.bench_function(BenchmarkId::new("put_small", 1000), |b| {
        b.iter_batched(
            fresh_store,
            |(dir, store)| {
                for (id, o) in ids.iter().zip(&objects) {
                    store.put(*id, o).unwrap();
                }
                store.sync().unwrap();
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    let dir = scratch();
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    for (id, o) in ids.iter().zip(&objects) {
        store.put(*id, o).unwrap();
    }
    store.sync().unwrap();
    group.bench_function(BenchmarkId::new("get_small", 1000), |b| {
        b.iter(|| {
            for id in &ids {
                std::hint::black_box(store.get(id).unwrap());
            }
        })
    });
    group.finish();
}

fn large(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    let len = 64 << 20;
    let data = noise(42, len);
    let id = ObjectId::of(&data);
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function(BenchmarkId::new("put_large", "64MiB"), |b| {
        b.iter_batched(
            fresh_store,
            |(dir, store)| {
                store.put(id, &data).unwrap();
                store.sync().unwrap();
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    let dir = scratch();
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    store.put(id, &data).unwrap();
    store.sync().unwrap();
    group.bench_function(BenchmarkId::new("get_large", "64MiB"), |b| {
        b.iter(|| std::hint::black_box(store.get(&id).unwrap()))
    });
    group.finish();
}

fn durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    let content = noise(7, 1024);
    for committers in [1usize, 8] {
        let dir = scratch();
        let repo = vst::Repo::init(dir.path(), &vst::repo::InitStore::Local, &|_| None).unwrap();
        let branches: Vec<_> =
            (0..committers).map(|t| Repo::branch(&format!("c{t}")).unwrap()).collect();
        let mut sets: Vec<_> = (0..committers).map(|_| repo.working_set().unwrap()).collect();
        let mut round = 0u64;
        group.throughput(Throughput::Elements(committers as u64));
        group.bench_function(BenchmarkId::new("commit_durable", committers), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    round += 1;
                    std::thread::scope(|s| {
                        for (ws, branch) in sets.iter_mut().zip(&branches) {
                            let (repo, content) = (&repo, &content);
                            let mut run = move || {
                                let mut data = content.clone();
                                data[..8].copy_from_slice(&round.to_le_bytes());
                                ws.write(&RepoPath::try_from("file").unwrap(), &data).unwrap();
                                repo.commit_on(ws, branch, &CommitOptions::default()).unwrap();
                            };
                            if committers == 1 {
                                run();
                            } else {
                                s.spawn(run);
                            }
                        }
                    });
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    let dir = scratch();
    let ids: Vec<ObjectId> = {
        let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
        let ids: Vec<ObjectId> = (0..100_000u32)
            .map(|i| {
                let bytes = format!("object {i}").into_bytes();
                let id = ObjectId::of(&bytes);
                store.put(id, &bytes).unwrap();
                id
            })
            .collect();
        store.sync().unwrap();
        ids
    };
    // A writer's open folds the log into the table, as the first command
    // after many puts does.
    drop(PackStore::open(dir.path(), Access::ReadWrite).unwrap());
    let mut n = 0;
    group.bench_function(BenchmarkId::new("open_read_one", 100_000), |b| {
        b.iter(|| {
            n = (n + 7919) % ids.len();
            let store = PackStore::open(dir.path(), Access::ReadOnly).unwrap();
            store.get(&ids[n]).unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = small, large, durable, open
}
criterion_main!(benches);
