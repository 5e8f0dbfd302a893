//! A build tool's loop over a work tree on disk, to read and copy:
//! snapshot once by scan, then after each build step snapshot only the
//! files the step wrote (`ScanOptions::changed`), which costs what changed,
//! not the tree.
//!
//! ```sh
//! cargo run --release --example worktree_bench -- DIR [REPO_DIR]
//! ```
//!
//! DIR holds the files (it is modified: K of its files are rewritten each
//! round). The repository goes in REPO_DIR (default: a new temporary
//! directory outside DIR, so DIR is left without a `.vst`). For K in 1 and
//! 100, 20 rounds each: rewrite K existing files with new 1 KiB content,
//! snapshot with `changed` naming exactly them, then snapshot by a full
//! scan and check that both give the same tree. Prints one JSON line:
//! `{"files": N, "first_snapshot_ms": F, "hinted_snapshot_us": {"1": A,
//! "100": B}, "scan_snapshot_ms": S, "equal": true}` (medians; a hinted
//! snapshot's time includes reading and hashing the K files).

use std::path::{Path, PathBuf};
use std::time::Instant;

use vst::repo::InitStore;
use vst::worktree::{ScanOptions, WorkTree};
use vst::{Repo, RepoPath};

const ROUNDS: usize = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: worktree_bench DIR [REPO_DIR]")?);
    let tmp;
    let repo_dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("repo")
        }
    };
    let repo = Repo::init(&repo_dir, &InitStore::Local, &|_| None)?;
    let mut worktree = WorkTree::open(repo, &dir)?;

    let start = Instant::now();
    let first = worktree.snapshot(&ScanOptions::default())?;
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    let files = files(&dir)?;
    if files.is_empty() {
        return Err("DIR holds no files".into());
    }

    let mut hinted_us = Vec::new();
    let mut scan_ms = Vec::new();
    let mut equal = true;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for k in [1usize, 100] {
        let mut times = Vec::new();
        for round in 0..ROUNDS {
            // K distinct files, chosen by a seeded generator.
            let mut chosen = Vec::with_capacity(k);
            while chosen.len() < k.min(files.len()) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let path = &files[(seed % files.len() as u64) as usize];
                if !chosen.contains(path) {
                    chosen.push(path.clone());
                }
            }
            for path in &chosen {
                let content = format!("{k} {round} {seed:x} {}\n", path);
                let mut bytes = content.into_bytes();
                bytes.resize(1024, b'.');
                std::fs::write(dir.join(path.to_string()), bytes)?;
            }
            let start = Instant::now();
            let hinted =
                worktree.snapshot(&ScanOptions { changed: Some(&chosen), ..Default::default() })?;
            times.push(start.elapsed().as_secs_f64() * 1e6);
            let start = Instant::now();
            let scanned = worktree.snapshot(&ScanOptions::default())?;
            scan_ms.push(start.elapsed().as_secs_f64() * 1e3);
            equal &= hinted.tree == scanned.tree;
        }
        hinted_us.push((k, median(&mut times)));
    }
    let _ = first;
    println!(
        "{{\"files\": {}, \"first_snapshot_ms\": {:.3}, \"hinted_snapshot_us\": {{\"1\": {:.1}, \"100\": {:.1}}}, \"scan_snapshot_ms\": {:.3}, \"equal\": {equal}}}",
        files.len(),
        first_ms,
        hinted_us[0].1,
        hinted_us[1].1,
        median(&mut scan_ms),
    );
    Ok(())
}

/// Every regular file under `dir` (outside `.vst`), as paths in the tree.
fn files(dir: &Path) -> Result<Vec<RepoPath>, Box<dyn std::error::Error>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if entry.file_name() == ".vst" {
                continue;
            }
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let rel = entry.path();
                let rel = rel.strip_prefix(dir)?;
                out.push(RepoPath::try_from(rel.as_os_str().as_bytes())?);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
