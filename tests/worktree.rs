//! The work tree on disk through the library (`vst::worktree`): a model
//! test of random edits against snapshots with and without `changed`,
//! check-out in place (conflicts, kind changes, symlinks in the way, an
//! interrupted checkout), the repository format file, and the index's
//! golden bytes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proptest::prelude::*;
use vst::repo::InitStore;
use vst::worktree::{CheckoutOptions, Empty, Force, ProgressEvent, ScanOptions, WorkTree};
use vst::{CommitId, CommitOptions, Repo, RepoPath, Timestamp};
use vst_cas::Head;

use crate::support::{Plain, read_disk, read_tree_plain};

fn init(dir: &Path) -> Repo {
    Repo::init(dir, &InitStore::Local, &|_| None).unwrap()
}

/// A repository in `repo` for the work tree `root`.
fn worktree(repo: &Path, root: &Path) -> WorkTree {
    WorkTree::open(init(repo), root).unwrap()
}

fn options(message: &str) -> CommitOptions {
    CommitOptions { message: message.to_owned(), ..Default::default() }
}

fn commit(wt: &mut WorkTree, message: &str) -> CommitId {
    wt.commit(&options(message), Empty::Allow, &ScanOptions::default()).unwrap().commit.unwrap()
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let full = root.join(path);
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    fs::write(full, content).unwrap();
}

fn tree_of(wt: &WorkTree, commit: CommitId) -> BTreeMap<Vec<u8>, Plain> {
    let store = wt.repo().store();
    let tree = vst::read::read_commit(store.as_ref(), commit).unwrap().tree;
    read_tree_plain(store.as_ref(), tree)
}

fn p(s: &str) -> RepoPath {
    RepoPath::try_from(s).unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Write(String, Vec<u8>),
    Remove(String),
    Rename(String, String),
    Chmod(String, bool),
    Symlink(String, String),
    Mkdir(String),
    /// An ignore file with one pattern, in a directory ("" for the root).
    Ignore(String, &'static str),
    /// A snapshot naming exactly the paths changed since the last one, plus
    /// `extra` paths that did not change (wrong hints cost time only).
    Hinted {
        extra: Vec<String>,
    },
    Full,
    Commit,
    Checkout(usize),
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c.txt", "d"]), 1..4)
        .prop_map(|parts| parts.join("/"))
}

fn arb_op() -> impl Strategy<Value = Op> {
    let content = prop::sample::select(vec![&b""[..], b"x", b"hello\n", b"other content"])
        .prop_map(|c| c.to_vec());
    prop_oneof![
        6 => (arb_path(), content).prop_map(|(p, c)| Op::Write(p, c)),
        2 => arb_path().prop_map(Op::Remove),
        2 => (arb_path(), arb_path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (arb_path(), any::<bool>()).prop_map(|(p, x)| Op::Chmod(p, x)),
        1 => (arb_path(), prop::sample::select(vec!["a", "../up", "/abs"]))
            .prop_map(|(p, t)| Op::Symlink(p, t.to_owned())),
        1 => arb_path().prop_map(Op::Mkdir),
        1 => (prop::sample::select(vec!["", "a", "a/b", "d"]).prop_map(str::to_owned),
              prop::sample::select(vec!["b", "*.txt", "d/", "!c.txt", "a/c.txt"]))
            .prop_map(|(d, pat)| Op::Ignore(d, pat)),
        3 => prop::collection::vec(arb_path(), 0..3).prop_map(|extra| Op::Hinted { extra }),
        1 => Just(Op::Full),
        2 => Just(Op::Commit),
        1 => any::<usize>().prop_map(Op::Checkout),
    ]
}

/// Applies `op` to the disk the way a program would; returns the paths it
/// touched (empty if it could not be done).
fn apply(root: &Path, op: &Op) -> Vec<String> {
    let full = |p: &str| root.join(p);
    let parent_ok = |p: &str| match Path::new(p).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            let mut dir = root.to_owned();
            for c in parent.components() {
                dir.push(c);
                match fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return false,
                    Err(_) => return fs::create_dir_all(root.join(parent)).is_ok(),
                }
            }
            true
        }
        _ => true,
    };
    // A program may write through a symlinked directory, but then what
    // changed is the link's target, and the hint must name that: keep to
    // paths whose parents are real directories (or do not exist yet).
    let through_link = |p: &str| {
        let mut dir = root.to_owned();
        Path::new(p).parent().into_iter().flat_map(|p| p.components()).any(|c| {
            dir.push(c);
            fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink())
        })
    };
    let paths: Vec<&String> = match op {
        Op::Write(a, _) | Op::Remove(a) | Op::Chmod(a, _) | Op::Symlink(a, _) | Op::Mkdir(a) => {
            vec![a]
        }
        Op::Rename(a, b) => vec![a, b],
        Op::Ignore(..) => vec![],
        _ => vec![],
    };
    if paths.iter().any(|p| through_link(p)) {
        return vec![];
    }
    match op {
        Op::Write(path, content) => {
            let meta = fs::symlink_metadata(full(path));
            if meta.is_ok_and(|m| !m.is_file()) || !parent_ok(path) {
                return vec![];
            }
            fs::write(full(path), content).unwrap();
            vec![path.clone()]
        }
        Op::Remove(path) => match fs::symlink_metadata(full(path)) {
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(full(path)).unwrap();
                vec![path.clone()]
            }
            Ok(_) => {
                fs::remove_file(full(path)).unwrap();
                vec![path.clone()]
            }
            Err(_) => vec![],
        },
        Op::Rename(a, b) => {
            let a_meta = fs::symlink_metadata(full(a));
            let into_itself = b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"));
            if a_meta.is_err() || into_itself || a == b || fs::symlink_metadata(full(b)).is_ok() {
                return vec![];
            }
            if !parent_ok(b) {
                return vec![];
            }
            fs::rename(full(a), full(b)).unwrap();
            vec![a.clone(), b.clone()]
        }
        Op::Chmod(path, exec) => match fs::symlink_metadata(full(path)) {
            Ok(m) if m.is_file() => {
                let mode = if *exec { 0o755 } else { 0o644 };
                fs::set_permissions(full(path), fs::Permissions::from_mode(mode)).unwrap();
                vec![path.clone()]
            }
            _ => vec![],
        },
        Op::Symlink(path, target) => {
            if fs::symlink_metadata(full(path)).is_ok() || !parent_ok(path) {
                return vec![];
            }
            std::os::unix::fs::symlink(target, full(path)).unwrap();
            vec![path.clone()]
        }
        Op::Ignore(dir, pattern) => {
            let path =
                if dir.is_empty() { ".vstignore".to_owned() } else { format!("{dir}/.vstignore") };
            let meta = fs::symlink_metadata(full(&path));
            if meta.is_ok_and(|m| !m.is_file()) || through_link(&path) || !parent_ok(&path) {
                return vec![];
            }
            fs::write(full(&path), format!("{pattern}\n")).unwrap();
            vec![path]
        }
        Op::Mkdir(path) => {
            if fs::symlink_metadata(full(path)).is_ok() || !parent_ok(path) {
                return vec![];
            }
            fs::create_dir(full(path)).unwrap();
            vec![path.clone()]
        }
        _ => vec![],
    }
}

/// Whether an ignore file is anywhere under `root`.
fn has_ignore_files(root: &Path) -> bool {
    read_disk(root).keys().any(|k| k.ends_with(b".vstignore"))
}

fn run_model(ops: Vec<Op>) {
    let (repo_dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let mut wt = worktree(&repo_dir.path().join("repo"), root);
    let store = wt.repo().store();
    // The reference: what a work tree that has never seen the directory
    // finds (a full scan with no index, into a repository of its own),
    // plus whatever the last snapshot tracked that is still on disk:
    // ignoring never drops a tracked path (git's rule).
    let scratch = init(&repo_dir.path().join("scratch"));
    let tracked: std::cell::RefCell<BTreeMap<Vec<u8>, Plain>> = Default::default();
    let reference = || {
        let mut wt = WorkTree::open(scratch.clone(), root).unwrap();
        let tree = wt.snapshot(&ScanOptions::default()).unwrap().tree;
        let mut out = read_tree_plain(scratch.store().as_ref(), tree);
        let disk = read_disk(root);
        for path in tracked.borrow().keys() {
            if let Some(entry) = disk.get(path) {
                out.insert(path.clone(), entry.clone());
            }
        }
        out
    };
    // Without ignore files, the disk itself is the reference too.
    let check = |tree: vst::TreeId, what: &Op| {
        let got = read_tree_plain(store.as_ref(), tree);
        assert_eq!(got, reference(), "{what:?}");
        if !has_ignore_files(root) {
            assert_eq!(got, read_disk(root), "{what:?}");
        }
        *tracked.borrow_mut() = got;
    };
    let mut commits: Vec<CommitId> = Vec::new();
    // Paths changed since the last snapshot.
    let mut pending: Vec<String> = Vec::new();
    for op in &ops {
        match op {
            Op::Hinted { extra } => {
                let mut hint: Vec<RepoPath> = pending.iter().map(|s| p(s)).collect();
                hint.extend(extra.iter().map(|s| p(s)));
                let snap = wt
                    .snapshot(&ScanOptions { changed: Some(&hint), ..Default::default() })
                    .unwrap();
                check(snap.tree, op);
                pending.clear();
            }
            Op::Full => {
                check(wt.snapshot(&ScanOptions::default()).unwrap().tree, op);
                pending.clear();
            }
            Op::Commit => {
                let id = commit(&mut wt, "c");
                let tree = vst::read::read_commit(store.as_ref(), id).unwrap().tree;
                check(tree, op);
                assert!(wt.status(&ScanOptions::default()).unwrap().changes.is_empty());
                commits.push(id);
                pending.clear();
            }
            // (With ignore files on disk, an ignored file may stand where
            // an older commit puts something: a conflict, tested elsewhere.)
            Op::Checkout(i)
                if !commits.is_empty() && pending.is_empty() && !has_ignore_files(root) =>
            {
                let target = commits[i % commits.len()];
                let head = Head::Detached(target.object_id());
                let options = CheckoutOptions { head: Some(&head), ..Default::default() };
                wt.check_out(target, &options).unwrap();
                assert_eq!(read_disk(root), tree_of(&wt, target), "checked out in place");
                *tracked.borrow_mut() = tree_of(&wt, target);
                let status = wt.status(&ScanOptions::default()).unwrap();
                assert!(status.changes.is_empty(), "{:?}", status.changes);
            }
            Op::Checkout(_) => {}
            disk_op => pending.extend(apply(root, disk_op)),
        }
    }
    // Whatever the hints were, a full scan agrees with the reference.
    check(wt.snapshot(&ScanOptions::default()).unwrap().tree, &Op::Full);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random edits on a real directory; every hinted snapshot equals the
    /// disk (so a full scan), and so does every commit and checkout.
    #[test]
    fn hinted_snapshots_equal_full_scans(ops in prop::collection::vec(arb_op(), 1..40)) {
        run_model(ops);
    }
}

#[test]
fn a_hint_that_misses_a_change_does_not_see_it_and_a_full_scan_does() {
    let (repo_dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    write(root, "a/x", b"1");
    write(root, "b/y", b"1");
    let mut wt = worktree(&repo_dir.path().join("repo"), root);
    commit(&mut wt, "one");
    write(root, "a/x", b"2");
    write(root, "b/y", b"2");
    let hint = [p("a/x")];
    let status = wt.status(&ScanOptions { changed: Some(&hint), ..Default::default() }).unwrap();
    let changed: Vec<String> = status.changes.iter().map(|d| d.path.to_string()).collect();
    assert_eq!(changed, ["a/x"], "what the list omits is not looked at");
    let status = wt.status(&ScanOptions::default()).unwrap();
    let changed: Vec<String> = status.changes.iter().map(|d| d.path.to_string()).collect();
    assert_eq!(changed, ["a/x", "b/y"]);
}

/// A repository with branch `base` holding `a/x`, and `target` holding
/// `a/b/...` and `a/c`, checked out at `base`.
fn two_branches(root: &Path, repo_dir: &Path) -> (WorkTree, CommitId, CommitId) {
    write(root, "a/x", b"x");
    let mut wt = WorkTree::open(init(repo_dir), root).unwrap();
    let base = commit(&mut wt, "base");
    write(root, "a/b/one", b"1");
    write(root, "a/b/two", b"2");
    write(root, "a/c", b"c");
    let target = commit(&mut wt, "target");
    let head = Head::Detached(base.object_id());
    wt.check_out(base, &CheckoutOptions { head: Some(&head), ..Default::default() }).unwrap();
    assert!(!root.join("a/b").exists() && !root.join("a/c").exists());
    (wt, base, target)
}

#[test]
fn a_forced_checkout_never_deletes_through_a_symlinked_directory() {
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = dir.path().join("root");
    let (mut wt, _, target) = two_branches(&root, &dir.path().join("repo"));
    // What the attack would delete: files named like the target's paths.
    write(elsewhere.path(), "b/one", b"precious");
    write(elsewhere.path(), "c", b"precious");
    write(elsewhere.path(), "x", b"precious");
    fs::remove_dir_all(root.join("a")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), root.join("a")).unwrap();
    let head = Head::Detached(target.object_id());
    let forced = CheckoutOptions { force: Force::Yes, head: Some(&head), ..Default::default() };
    wt.check_out(target, &forced).unwrap();
    for name in ["b/one", "c", "x"] {
        assert_eq!(fs::read(elsewhere.path().join(name)).unwrap(), b"precious", "{name}");
    }
    // The link was replaced by the target's directory.
    assert!(fs::symlink_metadata(root.join("a")).unwrap().is_dir());
    assert_eq!(read_disk(&root), tree_of(&wt, target));
}

#[test]
fn a_checkout_without_force_refuses_a_symlink_in_the_way_and_writes_nothing() {
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = dir.path().join("root");
    let (mut wt, _, target) = two_branches(&root, &dir.path().join("repo"));
    fs::remove_dir_all(root.join("a")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), root.join("a")).unwrap();
    let e = wt.check_out(target, &CheckoutOptions::default()).unwrap_err();
    assert!(matches!(e, vst::Error::Conflicts { .. }), "{e}");
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[test]
fn a_path_that_changes_kind_is_checked_out_both_ways() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    write(root, "k", b"a file");
    write(root, "l/inner", b"in a directory");
    let mut wt = worktree(&dir.path().join("repo"), root);
    let files = commit(&mut wt, "k file, l dir");
    fs::remove_file(root.join("k")).unwrap();
    write(root, "k/inner", b"now a directory");
    fs::remove_dir_all(root.join("l")).unwrap();
    std::os::unix::fs::symlink("k", root.join("l")).unwrap();
    let dirs = commit(&mut wt, "k dir, l symlink");
    for (target, name) in [(files, "files"), (dirs, "dirs"), (files, "files")] {
        let head = Head::Detached(target.object_id());
        wt.check_out(target, &CheckoutOptions { head: Some(&head), ..Default::default() })
            .unwrap_or_else(|e| panic!("to {name}: {e}"));
        assert_eq!(read_disk(root), tree_of(&wt, target), "{name}");
    }
}

#[test]
fn an_interrupted_checkout_is_finished_by_the_next_and_keeps_unrelated_edits() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    for i in 0..64 {
        write(root, &format!("many/f{i}"), b"old");
    }
    write(root, "mine.txt", b"base");
    let mut wt = worktree(&dir.path().join("repo"), root);
    let old = commit(&mut wt, "old");
    for i in 0..64 {
        write(root, &format!("many/f{i}"), format!("new {i}").as_bytes());
    }
    let new = commit(&mut wt, "new");
    let head = Head::Detached(old.object_id());
    wt.check_out(old, &CheckoutOptions { head: Some(&head), ..Default::default() }).unwrap();
    // An edit the checkout does not touch.
    write(root, "mine.txt", b"my edit");

    // Interrupted after a few files: the flag is set from the progress
    // callback, so where it stops does not depend on timing.
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let progress = |e: ProgressEvent| {
        if let ProgressEvent::Written { .. } = e
            && written.fetch_add(1, Ordering::SeqCst) >= 4
        {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let head = Head::Detached(new.object_id());
    let options = CheckoutOptions {
        head: Some(&head),
        progress: Some(&progress),
        interrupt: Some(&stop),
        ..Default::default()
    };
    let e = wt.check_out(new, &options).unwrap_err();
    assert!(matches!(e, vst::Error::Interrupted), "{e}");
    drop(wt);

    // A new process: status says where the checkout was going, and does
    // not count its files as the user's changes only... they are changes
    // against the old commit, which is where the index still is.
    let mut wt = WorkTree::open(Repo::open(&dir.path().join("repo")).unwrap(), root).unwrap();
    assert_eq!(wt.interrupted().unwrap(), Some(new));
    assert!(wt.status(&ScanOptions::default()).unwrap().interrupted.is_some());
    // A plain checkout (no force) finishes it: what it wrote is not in the
    // way, and the unrelated edit stays.
    wt.check_out(new, &CheckoutOptions { head: Some(&head), ..Default::default() }).unwrap();
    assert_eq!(wt.interrupted().unwrap(), None);
    let mut expected = tree_of(&wt, new);
    expected.insert(
        b"mine.txt".to_vec(),
        Plain::File { content: b"my edit".to_vec(), executable: false },
    );
    assert_eq!(read_disk(root), expected);
    let status = wt.status(&ScanOptions::default()).unwrap();
    let changed: Vec<String> = status.changes.iter().map(|d| d.path.to_string()).collect();
    assert_eq!(changed, ["mine.txt"]);
    // No temporary file is left in the repository or the work tree.
    assert_eq!(fs::read_dir(dir.path().join("repo/tmp")).unwrap().count(), 0);
}

#[test]
fn a_checkout_records_what_it_wrote_so_the_next_status_reads_nothing() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    for i in 0..20 {
        write(root, &format!("d/f{i}"), b"one");
    }
    write(root, "d/run", b"#!/bin/sh\n");
    let mut wt = worktree(&dir.path().join("repo"), root);
    let one = commit(&mut wt, "one");
    for i in 0..20 {
        write(root, &format!("d/f{i}"), b"two");
    }
    // Only the mode changes: changed in place, and recorded too.
    fs::set_permissions(root.join("d/run"), fs::Permissions::from_mode(0o755)).unwrap();
    let two = commit(&mut wt, "two");
    let head = Head::Detached(one.object_id());
    wt.check_out(one, &CheckoutOptions { head: Some(&head), ..Default::default() }).unwrap();
    let status = wt.status(&ScanOptions::default()).unwrap();
    assert!(status.changes.is_empty());
    assert_eq!(status.hashed, 0, "every written file's stat was recorded");
    let _ = two;
}

/// A first import stats a new file through its descriptor once open (the
/// directory listing says it is a file): what it records must be the
/// file's own stat (the next status reads nothing), its executable bit is
/// kept, and files larger together than what one run of reads holds are
/// stored whole.
#[test]
fn new_files_stat_ed_once_open_are_trusted_by_the_next_status() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    for i in 0..4u8 {
        let big: Vec<u8> = (0..700_000u32).map(|j| (j % 251) as u8 ^ i).collect();
        write(root, &format!("big/b{i}"), &big);
    }
    for i in 0..50 {
        write(root, &format!("small/s{i}"), format!("small {i}").as_bytes());
    }
    write(root, "run.sh", b"#!/bin/sh\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    // Past the coarsest clock tick a file is stamped with, so that no file
    // is "racy" for the import's scan (it would be read again, rightly).
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut wt = worktree(&dir.path().join("repo"), root);
    let import = commit(&mut wt, "import");
    assert_eq!(tree_of(&wt, import), read_disk(root));
    assert!(matches!(tree_of(&wt, import)[&b"run.sh"[..]], Plain::File { executable: true, .. }));
    let status = wt.status(&ScanOptions::default()).unwrap();
    assert!(status.changes.is_empty());
    assert_eq!(status.hashed, 0, "every new file's stat was recorded as it is on disk");
}

#[test]
fn an_unknown_format_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join(".vst");
    drop(init(&repo_dir));
    let listing = || {
        let mut names: Vec<(String, Vec<u8>)> = fs::read_dir(&repo_dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
            .collect();
        names.sort();
        names
    };
    for (text, named) in [
        ("vst-repository 2\n", "version 2"),
        ("vst-repository 1\nslotted-refs\nshiny-future\n", "shiny-future"),
    ] {
        fs::write(repo_dir.join("format"), text).unwrap();
        let before = listing();
        let e = Repo::open(&repo_dir).unwrap_err();
        assert!(matches!(e, vst::Error::UnsupportedFormat { .. }), "{e}");
        assert!(e.to_string().contains(named), "{e}");
        assert_eq!(listing(), before, "nothing written");
    }
    // A repository from before the file: opened, and given the file.
    fs::remove_file(repo_dir.join("format")).unwrap();
    drop(Repo::open(&repo_dir).unwrap());
    assert_eq!(
        fs::read_to_string(repo_dir.join("format")).unwrap(),
        "vst-repository 1\nslotted-refs\nindex-table\n"
    );
    // `open` never creates.
    let e = Repo::open(&dir.path().join("nothing")).unwrap_err();
    assert!(matches!(e, vst::Error::NotARepository { .. }), "{e}");
    assert!(!dir.path().join("nothing").exists());
}

#[test]
fn the_index_file_has_the_documented_bytes() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo_dir = dir.path().join("repo");
    let repo = init(&repo_dir);
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("a/f"), b"hi").unwrap();
    ws.symlink(&p("l"), b"a").unwrap();
    let options = CommitOptions {
        time: Some(Timestamp { unix_us: 0, tz_offset_min: 0 }),
        ..options("golden")
    };
    let id = repo.commit(&mut ws, &options).unwrap();
    // No index file yet: built from the tree, with no stats.
    let mut wt = WorkTree::open(repo, root.path()).unwrap();
    assert_eq!(wt.at(), Some(id));
    wt.save().unwrap();
    let bytes = fs::read(repo_dir.join("worktree")).unwrap();
    let tree = vst::read::read_commit(wt.repo().store().as_ref(), id).unwrap().tree;
    let sub = match vst::read::lookup(wt.repo().store().as_ref(), tree, &p("a")).unwrap() {
        Some(vst::EntryKind::Dir(t)) => t,
        other => panic!("{other:?}"),
    };
    // Written from docs/format.md ("The index"), not by the library.
    let mut expected = b"VSTWTRE2".to_vec();
    expected.push(1);
    expected.extend_from_slice(id.as_bytes());
    expected.extend_from_slice(tree.as_bytes());
    expected.extend_from_slice(&i64::MIN.to_le_bytes());
    expected.extend_from_slice(tree.as_bytes());
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.extend_from_slice(&[1, b'a', 3]);
    expected.extend_from_slice(sub.as_bytes());
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&[1, b'f', 0]);
    expected.extend_from_slice(blake3::hash(b"hi").as_bytes());
    expected.extend_from_slice(&2u64.to_le_bytes());
    expected.push(0);
    expected.extend_from_slice(&[1, b'l', 2]);
    expected.extend_from_slice(&1u16.to_le_bytes());
    expected.push(b'a');
    let check = *blake3::hash(&expected).as_bytes();
    expected.extend_from_slice(&check);
    assert_eq!(bytes, expected);
}

/// A large file is scanned, stored and checked out a few chunks at a
/// time: the scan never puts it whole (it streams it into the store), and
/// a checkout never reads more than a read-ahead window of it at once.
#[test]
fn a_large_file_is_scanned_and_checked_out_in_bounded_pieces() {
    use vst::worktree::index::Index;
    use vst::worktree::scan;
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let big = vst_cas::sim::noise(7, 40 << 20);
    write(root, "big.bin", &big);
    write(root, "small", b"s");
    let repo = init(&dir.path().join("repo"));
    let store = crate::support::Largest::new(repo.store());
    let index = Index::load(repo.dir(), &store, None, None).unwrap();
    let walk = scan::walk(root, repo.dir(), &index, None, None).unwrap();
    let scanned = walk.hash(Some(&store), None).unwrap();
    let (_, written) = store.largest();
    assert!(written < 1 << 20, "the scan put {written} bytes at once");
    let file = match &scanned.deltas.iter().find(|d| d.path == p("big.bin")).unwrap().new {
        Some(vst::worktree::Found::File(f)) => *f,
        other => panic!("{other:?}"),
    };
    assert_eq!(file.id, vst::BlobId::of(&big));
    assert_eq!(file.size, 40 << 20);

    // A tree holding it, checked out into a new directory and updated in
    // place, through the recording store.
    let mut index = index;
    index.apply(&scanned.deltas).unwrap();
    let tree = index.write_trees(&store).unwrap();
    let out = dir.path().join("out");
    vst::checkout(&store, tree, &out).unwrap();
    assert!(fs::read(out.join("big.bin")).unwrap() == big);
    let read_max = vst_cas::stream::READ_AHEAD_LEN_MAX + vst_cas::pack::CHUNK_LEN_MAX as u64;
    let (read, _) = store.largest();
    assert!(read <= read_max, "the checkout read {read} bytes at once");
}

/// A process holding an older index (a status started before a commit)
/// never writes it over the newer one: otherwise the work tree would look
/// behind its own commit.
#[test]
fn an_older_index_is_never_saved_over_a_newer_one() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let repo_dir = dir.path().join("repo");
    write(root, "f", b"1");
    let mut writer = worktree(&repo_dir, root);
    commit(&mut writer, "one");
    writer.save().unwrap();
    let read_only = vst::repo::OpenOptions {
        access: vst_cas::Access::ReadOnly,
        settings: &|_| None,
        pack: Default::default(),
    };
    let mut reader =
        WorkTree::open(Repo::open_configured(&repo_dir, &read_only).unwrap(), root).unwrap();
    write(root, "f", b"2");
    reader.status(&ScanOptions::default()).unwrap();
    let two = commit(&mut writer, "two");
    writer.save().unwrap();
    reader.save().unwrap();
    let fresh = WorkTree::open(Repo::open_configured(&repo_dir, &read_only).unwrap(), root);
    assert_eq!(fresh.unwrap().at(), Some(two), "the commit's index is still there");
}

/// Ignored files in the way are found before anything is written: under a
/// directory that is already on disk, and inside a directory the target
/// replaces by a file. Without --force the checkout is refused with the
/// disk untouched; with it, the checkout goes through.
#[test]
fn ignored_files_in_the_way_refuse_the_checkout_before_it_writes() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    write(root, ".vstignore", b"target/\n*.o\n");
    write(root, "out/a.txt", b"tracked");
    let mut wt = worktree(&dir.path().join("repo"), root);
    let base = commit(&mut wt, "base");
    // The other branch tracks target/out.txt (force-added: the ignore
    // file is changed for that commit) and has `out` as a file.
    write(root, ".vstignore", b"*.o\n");
    write(root, "target/out.txt", b"tracked in other");
    fs::remove_dir_all(root.join("out")).unwrap();
    write(root, "out", b"now a file");
    let other = commit(&mut wt, "other");
    let head = Head::Detached(base.object_id());
    wt.check_out(base, &CheckoutOptions { head: Some(&head), ..Default::default() }).unwrap();
    // Ignored build output in both places.
    write(root, "target/out.txt", b"build output");
    write(root, "out/x.o", b"object");
    let before = read_disk(root);
    let head = Head::Detached(other.object_id());
    let e = wt.check_out(other, &CheckoutOptions { head: Some(&head), ..Default::default() });
    match e {
        Err(vst::Error::Conflicts { paths }) => {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            assert!(paths.contains(&"target/out.txt".to_owned()), "{paths:?}");
            assert!(paths.contains(&"out".to_owned()), "{paths:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(read_disk(root), before, "nothing written");
    assert_eq!(wt.interrupted().unwrap(), None);
    let forced = CheckoutOptions { force: Force::Yes, head: Some(&head), ..Default::default() };
    wt.check_out(other, &forced).unwrap();
    assert_eq!(read_disk(root), tree_of(&wt, other));
}

/// A directory swapped for a symlink between the walk and the reading of
/// its files (a race with another program) makes the scan fail; it never
/// reads the files the link leads to, outside the root.
#[test]
fn a_scan_never_reads_through_a_directory_swapped_for_a_symlink() {
    use vst::worktree::index::Index;
    use vst::worktree::scan;
    let (dir, root, outside) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    write(root, "a/secret.txt", b"mine");
    write(outside.path(), "secret.txt", b"someone else's");
    let repo = init(&dir.path().join("repo"));
    let index = Index::load(repo.dir(), repo.store().as_ref(), None, None).unwrap();
    let walk = scan::walk(root, repo.dir(), &index, None, None).unwrap();
    fs::rename(root.join("a"), root.join("a.moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("a")).unwrap();
    let e = walk.hash(None, None).map(|s| s.deltas).unwrap_err();
    assert!(e.to_string().contains("secret.txt"), "{e}");
}

/// GC keeps a snapshot that the index holds but no commit names yet (a
/// library caller's): a checkout from it still works afterwards.
#[test]
fn gc_keeps_the_snapshot_the_index_holds() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    write(root, "f", b"1");
    let repo_dir = dir.path().join("repo");
    let mut wt = worktree(&repo_dir, root);
    let one = commit(&mut wt, "one");
    write(root, "g/new", b"only in the snapshot");
    let snapshot = wt.snapshot(&ScanOptions::default()).unwrap().tree;
    wt.save().unwrap();
    wt.repo().store().sync().unwrap();
    drop(wt);
    // Another handle (GC keeps what its own handle wrote anyway).
    let repo = Repo::open(&repo_dir).unwrap();
    repo.gc(std::time::Duration::ZERO, vst_cas::GcMode::Collect).unwrap();
    let mut wt = WorkTree::open(repo, root).unwrap();
    let store = wt.repo().store();
    assert_eq!(read_tree_plain(store.as_ref(), snapshot), read_disk(root));
    let head = Head::Detached(one.object_id());
    let forced = CheckoutOptions { force: Force::Yes, head: Some(&head), ..Default::default() };
    wt.check_out(one, &forced).unwrap();
    assert_eq!(read_disk(root), tree_of(&wt, one));
}

/// A directory of the work tree on another filesystem (a mount point in
/// it): files are written aside in that directory and renamed there, never
/// written in place, and nothing is left behind.
#[test]
fn a_checkout_across_a_mount_point_in_the_work_tree_still_renames_into_place() {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root: this test must run");
        eprintln!("\n!!!!!!!! WARNING: SKIPPED: mounting a tmpfs needs root !!!!!!!!\n");
        return;
    }
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let m = root.join("m");
    fs::create_dir(&m).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&m)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -t tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(m.clone());
    write(root, "m/a", b"one");
    let mut wt = worktree(&dir.path().join("repo"), root);
    let one = commit(&mut wt, "one");
    write(root, "m/a", b"two");
    commit(&mut wt, "two");
    let head = Head::Detached(one.object_id());
    wt.check_out(one, &CheckoutOptions { head: Some(&head), ..Default::default() }).unwrap();
    assert_eq!(fs::read(m.join("a")).unwrap(), b"one");
    let left: Vec<_> = fs::read_dir(&m).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["a"], "nothing left aside");
    assert!(wt.status(&ScanOptions::default()).unwrap().changes.is_empty());
}

/// A new file above `new_file_len_max` is left out of status and snapshot
/// (listed with its size), by a full scan, a scan of named paths and a
/// watcher alike, until the limit allows it; a tracked file never is.
#[test]
fn new_files_above_the_size_limit_are_left_out_and_listed() {
    let (repo_dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    write(root, "small", b"s");
    write(root, "grows", b"g");
    let mut wt = worktree(&repo_dir.path().join("repo"), root);
    commit(&mut wt, "one");
    wt.watch().unwrap();
    write(root, "big/image.raw", &[7; 4096]);
    write(root, "grows", &[1; 4096]);
    let limit = ScanOptions { new_file_len_max: Some(1024), ..Default::default() };
    let big = vec![(p("big/image.raw"), 4096)];
    for round in 0..2 {
        // The watcher reports the path once; it is looked at again.
        let status = wt.status(&limit).unwrap();
        let changed: Vec<String> = status.changes.iter().map(|d| d.path.to_string()).collect();
        // (`big` holds nothing else: it is left out with its file.)
        assert_eq!(changed, ["grows"], "round {round}");
        assert_eq!(status.too_large, big, "round {round}");
    }
    let named = [p("big/image.raw")];
    let status = wt.status(&ScanOptions { changed: Some(&named), ..limit }).unwrap();
    assert_eq!(status.too_large, big);
    let outcome = wt.commit(&options("two"), Empty::Skip, &limit).unwrap();
    assert_eq!(outcome.snapshot.too_large, big);
    let tree = tree_of(&wt, outcome.commit.unwrap());
    assert!(tree.contains_key(&b"grows"[..]), "a tracked file is never left out");
    assert!(!tree.contains_key(&b"big"[..]), "no empty directory for what was left out");
    write(root, "big/small", b"s");
    let status = wt.status(&limit).unwrap();
    let changed: Vec<String> = status.changes.iter().map(|d| d.path.to_string()).collect();
    assert_eq!(changed, ["big", "big/small"], "with something else in it, it comes");
    // Without the limit it goes in.
    let outcome = wt.commit(&options("three"), Empty::Skip, &ScanOptions::default()).unwrap();
    assert!(outcome.snapshot.too_large.is_empty());
    assert!(tree_of(&wt, outcome.commit.unwrap()).contains_key(&b"big/image.raw"[..]));
}

/// A store whose batch puts fail from the `fail_from`-th on, and that
/// keeps the largest batch it was given.
#[derive(Debug)]
struct FailingPuts {
    inner: vst_cas::MemStore,
    batches: AtomicU64,
    fail_from: u64,
    largest: AtomicU64,
}

impl vst_cas::Store for FailingPuts {
    fn put(&self, id: vst_cas::ObjectId, bytes: &[u8]) -> Result<(), vst_cas::StoreError> {
        self.put_batch(&[(id, bytes)])
    }
    fn put_batch(&self, objects: &[(vst_cas::ObjectId, &[u8])]) -> Result<(), vst_cas::StoreError> {
        if self.batches.fetch_add(1, Ordering::SeqCst) >= self.fail_from {
            return Err(vst_cas::StoreError::Poisoned);
        }
        self.largest.fetch_max(objects.len() as u64, Ordering::SeqCst);
        self.inner.put_batch(objects)
    }
    fn get(&self, id: &vst_cas::ObjectId) -> Result<bytes::Bytes, vst_cas::StoreError> {
        self.inner.get(id)
    }
    fn contains(&self, id: &vst_cas::ObjectId) -> Result<bool, vst_cas::StoreError> {
        self.inner.contains(id)
    }
    fn sync(&self) -> Result<(), vst_cas::StoreError> {
        self.inner.sync()
    }
}

fn failing_puts(fail_from: u64) -> FailingPuts {
    let (batches, largest) = (AtomicU64::new(0), AtomicU64::new(0));
    FailingPuts { inner: vst_cas::MemStore::new(), batches, fail_from, largest }
}

/// A full scan reads files while it walks (runs of them go to other
/// threads as they are found): a store that fails partway fails the scan
/// with its error, progress counts every file, never past the files
/// found, and a directory of many files is read in runs of 64 (on all
/// cores), not as one.
#[test]
fn a_scan_reading_as_it_walks_reports_a_failed_put_and_counts_every_file() {
    use vst::worktree::index::Index;
    use vst::worktree::scan;
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    for i in 0..600 {
        write(root, &format!("d{}/f{i}", i % 12), format!("file {i}").as_bytes());
    }
    let repo = init(&dir.path().join("repo"));
    let index = Index::load(repo.dir(), repo.store().as_ref(), None, None).unwrap();

    for fail_from in [0, 3] {
        let store = failing_puts(fail_from);
        let scanned = scan::scan(root, repo.dir(), &index, None, None, Some(&store), None);
        let Err(e) = scanned else { panic!("a scan whose puts fail from {fail_from} succeeded") };
        assert!(matches!(e, vst::Error::Store(vst_cas::StoreError::Poisoned)), "{e}");
    }

    let (events, last_done, overcounted) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let progress = |e: ProgressEvent| {
        if let ProgressEvent::Hashed { done, total } = e {
            events.fetch_add(1, Ordering::SeqCst);
            last_done.fetch_max(done, Ordering::SeqCst);
            overcounted.fetch_or(done > total || total > 600, Ordering::SeqCst);
        }
    };
    let store = vst_cas::MemStore::new();
    let scanned =
        scan::scan(root, repo.dir(), &index, None, None, Some(&store), Some(&progress)).unwrap();
    assert_eq!(scanned.hashed.len(), 600);
    assert_eq!(scanned.deltas.len(), 612, "600 files and 12 directories");
    assert_eq!(events.load(Ordering::SeqCst), 600);
    assert_eq!(last_done.load(Ordering::SeqCst), 600);
    assert!(!overcounted.load(Ordering::SeqCst));
    for (_, file, _) in &scanned.hashed {
        assert!(vst_cas::Store::contains(&store, &file.id.object_id()).unwrap());
    }

    let (dir, flat) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for i in 0..300 {
        write(flat.path(), &format!("f{i}"), format!("flat {i}").as_bytes());
    }
    let repo = init(&dir.path().join("repo"));
    let index = Index::load(repo.dir(), repo.store().as_ref(), None, None).unwrap();
    let store = failing_puts(u64::MAX);
    let scanned = scan::scan(flat.path(), repo.dir(), &index, None, None, Some(&store), None);
    assert_eq!(scanned.unwrap().hashed.len(), 300);
    let largest = store.largest.load(Ordering::SeqCst);
    assert!(largest <= vst::PARALLEL_BATCH_RUN_LEN as u64, "a run of {largest} files");
}
