//! Commit benchmarks: the seed table, incremental commits in large trees,
//! snapshots, and the measurements behind the parallel-hashing thresholds.
//!
//! Run: `cargo bench --bench commit`. Fixtures are built outside the timed
//! code; randomness is seeded so every run measures the same trees.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use vst::{BlobId, CommitOptions, FileEntry, FileWrite, RepoPath, WorkingSet, commit};
use vst_cas::{Access, MemStore, PackStore, Store};

const FILE_LEN: usize = 1024;

/// A small deterministic generator (xorshift64*), so fixtures are the same
/// in every run without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(len).collect()
    }
}

fn options() -> CommitOptions {
    CommitOptions { author: "bench".into(), message: "bench".into(), ..Default::default() }
}

fn new_ws() -> WorkingSet {
    WorkingSet::new(Arc::new(MemStore::new()))
}

/// N files of 1 KiB spread over four directories, as in the seed report.
fn seed_files(n: usize) -> Vec<(RepoPath, Vec<u8>)> {
    let mut rng = Rng(0x5eed + n as u64);
    (0..n)
        .map(|i| {
            let path =
                RepoPath::try_from(format!("src/d{}/file{i:05}.txt", i % 4).as_str()).unwrap();
            (path, rng.bytes(FILE_LEN))
        })
        .collect()
}

fn seed(c: &mut Criterion) {
    let mut group = c.benchmark_group("seed");
    for n in [1usize, 10, 100, 1000] {
        let files = seed_files(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("commit_only", n), &files, |b, files| {
            b.iter_batched_ref(
                || {
                    let mut ws = new_ws();
                    for (path, content) in files {
                        ws.write(path, content).unwrap();
                    }
                    ws
                },
                |ws| commit(ws, &options()).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("write_commit", n), &files, |b, files| {
            let writes: Vec<FileWrite<'_>> =
                files.iter().map(|(path, content)| FileWrite { path, content }).collect();
            b.iter_batched_ref(
                new_ws,
                |ws| {
                    ws.write_batch(&writes).unwrap();
                    commit(ws, &options()).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("write_each_commit", n), &files, |b, files| {
            b.iter_batched_ref(
                new_ws,
                |ws| {
                    for (path, content) in files {
                        ws.write(path, content).unwrap();
                    }
                    commit(ws, &options()).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        // The reference for write_commit: one BLAKE3 call per file, one thread.
        group.bench_with_input(BenchmarkId::new("hash_only", n), &files, |b, files| {
            b.iter(|| {
                for (_, content) in files {
                    black_box(blake3::hash(content));
                }
            })
        });
        // The same files through the batch hasher: SIMD lanes, one thread.
        group.bench_with_input(BenchmarkId::new("hash_many", n), &files, |b, files| {
            let contents: Vec<&[u8]> =
                files.iter().map(|(_, content)| content.as_slice()).collect();
            b.iter(|| black_box(vst_cas::batch_hash::hash_many(&contents)))
        });
    }
    group.finish();
}

/// Where hashing in lanes stops paying: 256 inputs of one length, one
/// `blake3::hash` call each or through the batch hasher (one thread).
fn lanes(c: &mut Criterion) {
    let mut group = c.benchmark_group("lanes");
    let mut rng = Rng(11);
    for len in [1024usize, 2048, 4096, 8192, 16384] {
        let inputs: Vec<Vec<u8>> = (0..256).map(|_| rng.bytes(len)).collect();
        group.throughput(Throughput::Bytes((256 * len) as u64));
        group.bench_with_input(BenchmarkId::new("hash_only", len), &inputs, |b, inputs| {
            b.iter(|| inputs.iter().map(|i| blake3::hash(i)).collect::<Vec<_>>())
        });
        group.bench_with_input(BenchmarkId::new("hash_many", len), &inputs, |b, inputs| {
            b.iter(|| vst_cas::batch_hash::hash_many(inputs))
        });
    }
    group.finish();
}

/// Paths of a tree of `n` files in directories of 16 files, nested 3 to 5
/// deep (leaf directory included).
fn tree_paths(n: usize) -> Vec<RepoPath> {
    (0..n)
        .map(|i| {
            let leaf = i / 16;
            let depth = 2 + leaf % 3;
            let mut path = String::new();
            let mut k = leaf;
            for _ in 0..depth {
                path.push_str(&format!("d{}/", k % 8));
                k /= 8;
            }
            path.push_str(&format!("leaf{leaf}/f{}.rs", i % 16));
            RepoPath::try_from(path.as_str()).unwrap()
        })
        .collect()
}

fn build_tree(n: usize) -> (WorkingSet, Vec<RepoPath>) {
    let paths = tree_paths(n);
    let mut rng = Rng(n as u64);
    let contents: Vec<Vec<u8>> = paths.iter().map(|_| rng.bytes(FILE_LEN)).collect();
    let writes: Vec<FileWrite<'_>> =
        paths.iter().zip(&contents).map(|(path, content)| FileWrite { path, content }).collect();
    let mut ws = new_ws();
    ws.write_batch(&writes).unwrap();
    commit(&mut ws, &options()).unwrap();
    (ws, paths)
}

fn incremental(c: &mut Criterion) {
    let mut group = c.benchmark_group("incremental");
    for n in [1000usize, 10_000, 100_000] {
        let (mut ws, paths) = build_tree(n);
        let mut rng = Rng(7);
        let mut content = rng.bytes(FILE_LEN);
        let mut round = 0u64;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                // A different file and new content every round.
                round += 1;
                content[..8].copy_from_slice(&round.to_le_bytes());
                let path = &paths[(rng.next() as usize) % paths.len()];
                ws.write(path, &content).unwrap();
                commit(&mut ws, &options()).unwrap()
            })
        });
    }
    group.finish();
}

/// A first commit of a whole tree (every directory new), and commits that
/// change one file in each of `k` leaf directories of a 100k-file tree:
/// where hashing trees on all cores starts to pay.
fn import(c: &mut Criterion) {
    let mut group = c.benchmark_group("import");
    group.sample_size(20);
    for n in [10_000usize, 100_000] {
        let paths = tree_paths(n);
        let mut rng = Rng(n as u64);
        let contents: Vec<Vec<u8>> = paths.iter().map(|_| rng.bytes(FILE_LEN)).collect();
        let writes: Vec<FileWrite<'_>> = paths
            .iter()
            .zip(&contents)
            .map(|(path, content)| FileWrite { path, content })
            .collect();
        let mut ws = new_ws();
        ws.write_batch(&writes).unwrap();
        group.bench_function(BenchmarkId::new("commit_only", n), |b| {
            b.iter_batched_ref(
                || ws.clone(),
                |ws| commit(ws, &options()).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("wide");
    let (ws, paths) = build_tree(100_000);
    let mut rng = Rng(3);
    let content = rng.bytes(FILE_LEN);
    for k in [8usize, 16, 32, 64, 128, 256, 1024] {
        group.bench_function(BenchmarkId::new("commit_only", k), |b| {
            b.iter_batched_ref(
                || {
                    let mut ws = ws.clone();
                    // One file in each of k different leaf directories.
                    for i in 0..k {
                        ws.write(&paths[(i * 16 * 5) % paths.len()], &content).unwrap();
                    }
                    ws
                },
                |ws| commit(ws, &options()).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Paths of the writable-mount benchmark's tree (`benches/wmount.sh`):
/// `n` files, 50 to a leaf directory, 40 leaf directories to a top one.
fn mount_paths(n: usize) -> Vec<RepoPath> {
    let dirs = (n / 50).max(1);
    (0..n)
        .map(|i| {
            let leaf = i % dirs;
            RepoPath::try_from(format!("d{}/e{leaf}/f{i}.txt", leaf / 40).as_str()).unwrap()
        })
        .collect()
}

/// The writable mount's commit: files already hashed and stored at close
/// are recorded with `put_file` (not timed), then the commit encodes and
/// puts the changed trees and the commit object into the store's write
/// buffer (timed); then the buffer is written out (not timed: the daemon's
/// sync after the commit does that, with the fsync).
/// `k` files in `k` different leaf directories of a 100k-file tree, as
/// `wmount.sh` touches them, into a pack store; `prepared` hashes the trees
/// ahead with `hash_trees` (not timed), as the mount does while idle.
fn mount_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("mount_commit");
    let n = 100_000;
    let paths = mount_paths(n);
    let entry = |i: usize, round: u64| FileEntry {
        id: BlobId::of(format!("{i} {round}").as_bytes()),
        size: 100,
        executable: false,
    };
    // The daemon syncs after the commit, once for the store and the ref.
    let no_sync = CommitOptions { durability: vst_cas::Durability::None, ..options() };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(PackStore::open(dir.path(), Access::ReadWrite).unwrap());
    let mut ws = WorkingSet::new(store.clone());
    for (i, path) in paths.iter().enumerate() {
        ws.put_file(path, entry(i, 0)).unwrap();
    }
    commit(&mut ws, &options()).unwrap();
    let mut round = 0u64;
    for prepared in [false, true] {
        for k in [1usize, 100] {
            let name = if prepared { "prepared" } else { "direct" };
            group.bench_function(BenchmarkId::new(name, k), |b| {
                b.iter_custom(|iters| {
                    let mut timed = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        for i in 0..k {
                            let f = ((i * 997) as u64 + round * 31) as usize % n;
                            ws.put_file(&paths[f], entry(f, round)).unwrap();
                        }
                        if prepared {
                            ws.hash_trees();
                        }
                        let started = std::time::Instant::now();
                        black_box(commit(&mut ws, &no_sync).unwrap());
                        timed += started.elapsed();
                        store.flush().unwrap();
                    }
                    timed
                })
            });
        }
    }
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    for n in [1000usize, 100_000] {
        let (ws, _) = build_tree(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(ws.snapshot()))
        });
    }
    group.finish();
}

/// Where parallel hashing starts to pay: a batch of 1 KiB files hashed on
/// one thread or on all cores (one call per file, or the batch hasher),
/// and one large blob hashed by `update` or
/// `update_rayon`.
fn threshold(c: &mut Criterion) {
    let mut group = c.benchmark_group("threshold");
    let mut rng = Rng(99);
    for files in [4usize, 16, 32, 64, 128, 256, 512, 1024] {
        let batch: Vec<Vec<u8>> = (0..files).map(|_| rng.bytes(FILE_LEN)).collect();
        group.throughput(Throughput::Bytes((files * FILE_LEN) as u64));
        let kib = files * FILE_LEN / 1024;
        group.bench_with_input(BenchmarkId::new("batch_seq_kib", kib), &batch, |b, batch| {
            b.iter(|| batch.iter().map(|f| blake3::hash(f)).collect::<Vec<_>>())
        });
        group.bench_with_input(BenchmarkId::new("batch_par_kib", kib), &batch, |b, batch| {
            b.iter(|| batch.par_iter().map(|f| blake3::hash(f)).collect::<Vec<_>>())
        });
        // The batch hasher (SIMD lanes) on one thread, and on all cores in
        // runs as `vst::hash_blobs` splits them.
        group.bench_with_input(BenchmarkId::new("lanes_seq_kib", kib), &batch, |b, batch| {
            b.iter(|| vst_cas::batch_hash::hash_many(batch))
        });
        group.bench_with_input(BenchmarkId::new("lanes_par_kib", kib), &batch, |b, batch| {
            b.iter(|| {
                batch
                    .par_chunks(vst::PARALLEL_BATCH_RUN_LEN)
                    .map(vst_cas::batch_hash::hash_many)
                    .collect::<Vec<_>>()
            })
        });
    }
    for kib in [64usize, 128, 256, 512, 1024, 4096] {
        let blob = rng.bytes(kib * 1024);
        group.throughput(Throughput::Bytes(blob.len() as u64));
        group.bench_with_input(BenchmarkId::new("blob_seq_kib", kib), &blob, |b, blob| {
            b.iter(|| blake3::hash(blob))
        });
        group.bench_with_input(BenchmarkId::new("blob_par_kib", kib), &blob, |b, blob| {
            b.iter(|| blake3::Hasher::new().update_rayon(blob).finalize())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = seed, lanes, incremental, snapshot, threshold, import, mount_commit
}
criterion_main!(benches);
