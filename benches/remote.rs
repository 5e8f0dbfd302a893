//! Push and clone throughput through SeaweedFS on loopback, against the
//! same transfers between two local pack stores, in one run:
//!
//! - a tree of many small files (`VST_BENCH_FILES`, default 50,000: 100 B
//!   to 4 KiB, 100 per directory);
//! - one large file (`VST_BENCH_BIG_MIB`, default 1024);
//! - a second push after changing one file of the first tree.
//!
//! - a long history (`VST_BENCH_COMMITS`, default 20,000: each commit
//!   changes one file of a tree of 100): push it, clone it (reading ahead,
//!   as `clone_into` does, and, for comparison, object by object), push as
//!   many commits again and pull them into the clone.
//!
//! `cargo bench --bench remote` (needs `weed`, as the tests do). At full
//! size this moves about 1.2 GiB each way; set the variables smaller for a
//! quick look, e.g. `VST_BENCH_FILES=2000 VST_BENCH_BIG_MIB=16`;
//! `VST_BENCH_ONLY=history` runs only the history.

#[path = "../cas/tests/support/seaweed.rs"]
mod seaweed;

use std::time::{Duration, Instant};

use vst::sync::{clone_into, pull, push, transfer};
use vst::{CommitId, CommitOptions, Repo, RepoPath};
use vst_cas::remote::{Remote, RemoteOptions, S3Config};
use vst_cas::sim::noise;
use vst_cas::{Durability, RefName};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn commit(repo: &Repo, files: &[(String, Vec<u8>)], message: &str) -> CommitId {
    let mut ws = repo.working_set().unwrap();
    for (path, content) in files {
        ws.write(&RepoPath::try_from(path.as_str()).unwrap(), content).unwrap();
    }
    let options = CommitOptions { message: message.to_owned(), ..Default::default() };
    repo.commit_on(&mut ws, &RefName::try_from("main").unwrap(), &options).unwrap()
}

fn rate(bytes: u64, took: Duration) -> String {
    format!("{:8.1} MiB/s", bytes as f64 / (1 << 20) as f64 / took.as_secs_f64())
}

struct Row {
    workload: String,
    bytes: u64,
    s3_push: Duration,
    s3_clone: Duration,
    disk_push: Duration,
    disk_clone: Duration,
}

fn main() {
    let files_n = env_usize("VST_BENCH_FILES", 50_000);
    let big_mib = env_usize("VST_BENCH_BIG_MIB", 1024);
    let Some(server) = seaweed::start() else {
        eprintln!("no SeaweedFS: nothing measured");
        return;
    };
    server.bucket("bench");
    let endpoint = server.endpoint.clone();
    let var = move |k: &str| (k == "AWS_ENDPOINT_URL").then(|| endpoint.clone());
    let tmp = tempfile::tempdir().unwrap();
    let branch = RefName::try_from("main").unwrap();
    let commits_n = env_usize("VST_BENCH_COMMITS", 20_000);
    history(&var, tmp.path(), commits_n);
    if std::env::var("VST_BENCH_ONLY").is_ok_and(|v| v == "history") {
        return;
    }

    let small: Vec<(String, Vec<u8>)> = (0..files_n)
        .map(|i| (format!("d{}/f{i}", i / 100), noise(i as u64, 100 + (i * 7919) % 3997)))
        .collect();
    let big = vec![("big.bin".to_owned(), noise(u64::MAX, big_mib << 20))];
    let mut rows = Vec::new();
    for (name, files) in
        [(format!("{files_n} files"), &small), (format!("{big_mib} MiB file"), &big)]
    {
        let bytes: u64 = files.iter().map(|(_, c)| c.len() as u64).sum();
        let src = init(&tmp.path().join(format!("src-{}", rows.len()))).unwrap();
        let tip = commit(&src, files, "bench");
        let remote =
            Remote::s3(&S3Config::from_url(&format!("s3://bench/{}", rows.len()), &var).unwrap())
                .unwrap();
        let store = remote.store(RemoteOptions::default()).unwrap();
        let t = Instant::now();
        push(src.store().as_ref(), &store, &remote.refs(), &branch, tip).unwrap();
        let s3_push = t.elapsed();
        let dst = init(&tmp.path().join(format!("clone-{}", rows.len()))).unwrap();
        let t = Instant::now();
        let fresh = remote.store(RemoteOptions::default()).unwrap();
        transfer(&fresh, dst.store().as_ref(), tip).unwrap();
        let s3_clone = t.elapsed();
        let disk = init(&tmp.path().join(format!("disk-{}", rows.len()))).unwrap();
        let t = Instant::now();
        transfer(src.store().as_ref(), disk.store().as_ref(), tip).unwrap();
        let disk_push = t.elapsed();
        let back = init(&tmp.path().join(format!("disk-back-{}", rows.len()))).unwrap();
        let t = Instant::now();
        transfer(disk.store().as_ref(), back.store().as_ref(), tip).unwrap();
        let disk_clone = t.elapsed();
        rows.push(Row { workload: name, bytes, s3_push, s3_clone, disk_push, disk_clone });
        if rows.len() == 1 {
            // A second push after changing one file.
            let changed = vec![(small[files_n / 2].0.clone(), b"changed".to_vec())];
            let tip2 = commit(&src, &changed, "one file");
            let t = Instant::now();
            push(src.store().as_ref(), &store, &remote.refs(), &branch, tip2).unwrap();
            let s3 = t.elapsed();
            let t = Instant::now();
            transfer(src.store().as_ref(), disk.store().as_ref(), tip2).unwrap();
            let local = t.elapsed();
            println!("second push after changing one file: S3 {s3:?}, local disk {local:?}");
        }
    }
    println!(
        "{:<16} {:>10} | {:>13} {:>13} | {:>13} {:>13} | push ratio",
        "workload", "MiB", "S3 push", "S3 clone", "disk push", "disk clone"
    );
    for r in &rows {
        println!(
            "{:<16} {:>10.1} | {} {} | {} {} | {:.2}x",
            r.workload,
            r.bytes as f64 / (1 << 20) as f64,
            rate(r.bytes, r.s3_push),
            rate(r.bytes, r.s3_clone),
            rate(r.bytes, r.disk_push),
            rate(r.bytes, r.disk_clone),
            r.s3_push.as_secs_f64() / r.disk_push.as_secs_f64()
        );
    }
}

/// Adds `n` commits to `main` of `repo`, each changing one file of 100,
/// stored without a sync each (one at the end).
fn grow_history(repo: &Repo, n: usize, seed: usize) -> CommitId {
    let mut ws = repo.working_set().unwrap();
    let old = ws.head();
    let mut options = CommitOptions { durability: Durability::None, ..Default::default() };
    let mut tip = None;
    for i in 0..n {
        let path = RepoPath::try_from(format!("d{}/f{}", i % 10, i % 100).as_str()).unwrap();
        ws.write(&path, format!("version {}", seed + i).as_bytes()).unwrap();
        options.message = format!("commit {}", seed + i);
        tip = Some(vst::commit(&mut ws, &options).unwrap());
    }
    repo.store().sync().unwrap();
    let tip = tip.unwrap();
    let main = RefName::try_from("main").unwrap();
    repo.refs().update(&main, old.map(|c| c.object_id()), Some(tip.object_id()), "bench").unwrap();
    tip
}

/// Push, clone and pull of a history of `n` commits (see the module
/// documentation).
fn history(var: &dyn Fn(&str) -> Option<String>, tmp: &std::path::Path, n: usize) {
    let branch = RefName::try_from("main").unwrap();
    let src = init(&tmp.join("history-src")).unwrap();
    let tip = grow_history(&src, n, 0);
    let remote = Remote::s3(&S3Config::from_url("s3://bench/history", var).unwrap()).unwrap();
    let store = remote.store(RemoteOptions::default()).unwrap();
    let t = Instant::now();
    push(src.store().as_ref(), &store, &remote.refs(), &branch, tip).unwrap();
    let pushed = t.elapsed();
    let t = Instant::now();
    let dst = init(&tmp.join("history-clone")).unwrap();
    let fresh = remote.store(RemoteOptions::default()).unwrap();
    clone_into(&dst, &fresh, &remote.refs()).unwrap();
    let cloned = t.elapsed();
    println!("history of {n} commits: push {pushed:?}, clone {cloned:?}");
    if std::env::var("VST_BENCH_ONE_BY_ONE").is_ok() {
        let t = Instant::now();
        let plain = init(&tmp.join("history-plain")).unwrap();
        let fresh = remote.store(RemoteOptions::default()).unwrap();
        transfer(&fresh, plain.store().as_ref(), tip).unwrap();
        println!("  clone object by object (no read-ahead): {:?}", t.elapsed());
    }
    let tip2 = grow_history(&src, n, n);
    let t = Instant::now();
    push(src.store().as_ref(), &store, &remote.refs(), &branch, tip2).unwrap();
    let pushed = t.elapsed();
    let t = Instant::now();
    let fresh = remote.store(RemoteOptions::default()).unwrap();
    pull(&dst, &fresh, &remote.refs(), &branch).unwrap();
    println!("  {n} more: push {pushed:?}, pull {:?}", t.elapsed());
}

/// A new repository in `dir`.
fn init(dir: &std::path::Path) -> Result<Repo, vst::Error> {
    Repo::init(dir, &vst::repo::InitStore::Local, &|_| None)
}
