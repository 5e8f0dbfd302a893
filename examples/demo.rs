//! A tour of vst's main job: open a repository on disk, write a tree into
//! a working set, commit it durably, change it, commit again, diff the two
//! commits, check both out (the second over the first), and fsck.
//!
//! Run: `cargo run --release --example demo [OUT_DIR]`

use std::path::PathBuf;
use std::time::Instant;

use vst::{
    CommitOptions, FileWrite, ReadData, Repo, RepoPath, checkout, checkout_update, diff_trees, read,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vst-demo-{}", std::process::id())));
    let repo = Repo::init(&out.join(".vst"), &vst::repo::InitStore::Local, &|_| None)?;
    let store = repo.store();
    let mut ws = repo.working_set()?;
    let options = |message: &str| CommitOptions {
        author: "vst demo <demo@example.com>".into(),
        message: message.into(),
        ..Default::default()
    };

    // 1,000 source files of 1 KiB in 10 directories, written as one batch.
    let paths: Vec<RepoPath> = (0..1000)
        .map(|i| RepoPath::try_from(format!("src/mod{}/file{i}.rs", i % 10).as_str()))
        .collect::<Result<_, _>>()?;
    let contents: Vec<Vec<u8>> =
        (0..1000).map(|i| format!("// file {i}\n").into_bytes().repeat(90)).collect();
    let writes: Vec<FileWrite<'_>> =
        paths.iter().zip(&contents).map(|(path, content)| FileWrite { path, content }).collect();
    ws.write_batch(&writes)?;
    ws.write(&RepoPath::try_from("build.sh")?, b"#!/bin/sh\ncargo build\n")?;
    ws.set_executable(&RepoPath::try_from("build.sh")?, true)?;
    ws.symlink(&RepoPath::try_from("latest")?, b"src/mod0")?;
    let start = Instant::now();
    let first = repo.commit(&mut ws, &options("import 1,000 files"))?;
    println!("commit {first}: 1,002 entries, durable, in {:?}", start.elapsed());

    let before = ws.snapshot();
    ws.write(&RepoPath::try_from("src/mod3/file3.rs")?, b"// changed\n")?;
    ws.remove(&RepoPath::try_from("src/mod9")?)?;
    ws.write(&RepoPath::try_from("docs/README.md")?, b"# demo\n")?;
    let start = Instant::now();
    let second = repo.commit(&mut ws, &options("edit, remove a directory, add docs"))?;
    println!("commit {second}: 3 changes, durable, in {:?}", start.elapsed());
    assert!(
        before.stat(&RepoPath::try_from("src/mod9/file9.rs")?).is_some(),
        "snapshots are frozen"
    );

    let (t1, t2) = (
        read::read_commit(store.as_ref(), first)?.tree,
        read::read_commit(store.as_ref(), second)?.tree,
    );
    let changes = diff_trees(store.as_ref(), Some(t1), Some(t2))?;
    println!("diff: {} paths changed, for example:", changes.len());
    for change in changes.iter().take(4) {
        println!("  {:?} {}", change.kind(), change.path);
    }

    let target = out.join("checkout");
    let stats = checkout(store.as_ref(), t1, &target)?;
    println!(
        "checkout of the first commit into {}: {} files, {} dirs, {} symlinks",
        target.display(),
        stats.files_written,
        stats.dirs_created,
        stats.symlinks_created
    );
    let stats = checkout_update(store.as_ref(), t1, t2, &target)?;
    println!(
        "update to the second commit: {} files written, {} entries removed, {} dirs created",
        stats.files_written, stats.removed, stats.dirs_created
    );
    let on_disk = std::fs::read(target.join("src/mod3/file3.rs"))?;
    assert_eq!(on_disk, b"// changed\n");
    println!("ok: {} holds the second commit", target.display());
    let report = repo.fsck(ReadData::Yes)?;
    println!(
        "fsck of {}: {} commits, {} trees, {} blobs, {} problems",
        repo.dir().display(),
        report.commits,
        report.trees,
        report.blobs,
        report.problems.len() + report.bad_refs.len()
    );
    Ok(())
}
