//! End-to-end tests of `vst mount --write`: the binary mounts, the test
//! edits through the kernel like any program, and `vst commit`, `status`
//! and `checkout` run inside the mount go to the daemon.
//!
//! They need to mount FUSE: where that is impossible they fail when `CI`
//! is set and warn otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One test at a time: mounts and processes are counted.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn vst(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(dir)
        .env("VST_AUTHOR", "tester")
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vst(dir, args);
    assert!(
        out.status.success(),
        "vst {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn can_run() -> bool {
    if !Path::new("/dev/fuse").exists() {
        assert!(std::env::var_os("CI").is_none(), "/dev/fuse is missing in CI");
        eprintln!(
            "\n!!!!!!!! WARNING: /dev/fuse IS MISSING: WRITABLE MOUNT TESTS SKIPPED !!!!!!!!\n"
        );
        return false;
    }
    true
}

fn mounted(p: &Path) -> bool {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_owned());
    vst_fuse::mount_points().unwrap().contains(&p)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The start of every test: the turn to run (one at a time), then a
/// repository with one commit and an empty directory outside it; `None`
/// where FUSE is missing (after a loud warning, or a failure in CI).
fn setup() -> Option<(MutexGuard<'static, ()>, tempfile::TempDir, tempfile::TempDir)> {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_run() {
        return None;
    }
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    ok(root, &["init", "-q"]);
    fs::create_dir_all(root.join("src/deep")).unwrap();
    fs::write(root.join("src/deep/a.txt"), b"first\n").unwrap();
    fs::write(root.join("src/b.txt"), vec![b'b'; 3 << 20]).unwrap();
    fs::write(root.join("keep.txt"), b"keep\n").unwrap();
    std::os::unix::fs::symlink("deep/a.txt", root.join("src/link")).unwrap();
    ok(root, &["commit", "-q", "-m", "one"]);
    Some((one, repo, tempfile::tempdir().unwrap()))
}

/// A foreground `vst mount --write` of the repository in `repo` at `at`,
/// once it is live; `None` (after a loud warning, or a failure in CI) if
/// it cannot mount here.
fn mount(repo: &Path, at: &Path, extra: &[&str]) -> Option<Child> {
    mount_by(Command::new(env!("CARGO_BIN_EXE_vst")), repo, at, extra)
}

/// [`mount`], run by `command` (`vst`, or a wrapper that runs it).
fn mount_by(mut command: Command, repo: &Path, at: &Path, extra: &[&str]) -> Option<Child> {
    let mut child = command
        .current_dir(repo)
        .args(["mount", "-q", "--write"])
        .args(extra)
        .arg(at)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted(at) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut said = String::new();
            child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
            let why = format!("vst mount --write exited ({status}): {said}");
            assert!(std::env::var_os("CI").is_none(), "cannot mount in CI: {why}");
            eprintln!("\n!!!!!!!! WARNING: WRITABLE MOUNT TEST SKIPPED: {why} !!!!!!!!\n");
            return None;
        }
        assert!(Instant::now() < deadline, "the mount did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

/// Unmounts `at` (the server saves the uncommitted tree and exits).
/// `vst umount` returns only once the server has let go of the
/// repository, so the next command may write it.
fn unmount(repo: &Path, at: &Path, mut child: Child) {
    ok(repo, &["umount", at.to_str().unwrap()]);
    let lock = fs::File::open(repo.join(".vst/lock")).unwrap();
    assert!(lock.try_lock().is_ok(), "vst umount returned while the server held the repository");
    drop(lock);
    let status = child.wait().unwrap();
    assert!(status.success(), "the mount server exited with {status}");
    assert!(!mounted(at));
}

/// Everything under `root`: a file's bytes and executable bit, a link's
/// target, a directory.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>, bool),
    Link(PathBuf),
    Dir,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            if child == Path::new(".vst") {
                continue;
            }
            let full = root.join(&child);
            let meta = fs::symlink_metadata(&full).unwrap();
            let value = if meta.file_type().is_symlink() {
                Entry::Link(fs::read_link(&full).unwrap())
            } else if meta.is_dir() {
                stack.push(child.clone());
                Entry::Dir
            } else {
                Entry::File(fs::read(&full).unwrap(), meta.permissions().mode() & 0o100 != 0)
            };
            out.insert(child, value);
        }
    }
    out
}

/// The same edits, applied to `root` (the mount, or a plain directory for
/// reference): every kind of change the mount supports.
fn edit(root: &Path) {
    let p = |s: &str| root.join(s);
    // New files, nested directories, an empty directory.
    fs::create_dir_all(p("new/dir/inner")).unwrap();
    fs::create_dir(p("empty")).unwrap();
    fs::write(p("new/dir/inner/x.txt"), b"x\n").unwrap();
    fs::write(p("new/top.txt"), b"top\n").unwrap();
    // Overwrite in the middle of an existing (large, chunked) file.
    let f = fs::OpenOptions::new().write(true).open(p("src/b.txt")).unwrap();
    f.write_all_at(b"MIDDLE", 1 << 20).unwrap();
    drop(f);
    // Sparse: a write far past the end.
    let f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).open(p("sparse")).unwrap();
    f.write_all_at(b"end", 5 << 20).unwrap();
    drop(f);
    // Append.
    let mut f = fs::OpenOptions::new().append(true).open(p("keep.txt")).unwrap();
    f.write_all(b"appended\n").unwrap();
    drop(f);
    // Truncate by path, shorter and longer.
    fs::OpenOptions::new().write(true).open(p("src/deep/a.txt")).unwrap().set_len(3).unwrap();
    fs::write(p("grow"), b"12").unwrap();
    fs::OpenOptions::new().write(true).open(p("grow")).unwrap().set_len(10).unwrap();
    // O_TRUNC on an existing file, then a write.
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(p("new/top.txt")).unwrap();
    f.write_all(b"rewritten\n").unwrap();
    drop(f);
    // O_EXCL: the second create fails.
    fs::OpenOptions::new().write(true).create_new(true).open(p("excl")).unwrap();
    let again = fs::OpenOptions::new().write(true).create_new(true).open(p("excl"));
    assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    // Executable bit.
    fs::write(p("run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(p("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    // Symlinks: new, and replacing a file.
    std::os::unix::fs::symlink("../keep.txt", p("new/link")).unwrap();
    // Renames: a file, a file over another, a directory.
    fs::rename(p("new/dir/inner/x.txt"), p("new/x-moved.txt")).unwrap();
    fs::write(p("victim"), b"victim\n").unwrap();
    fs::rename(p("grow"), p("victim")).unwrap();
    fs::rename(p("new/dir"), p("moved-dir")).unwrap();
    // Removals: a file, an empty directory, a symlink.
    fs::remove_file(p("excl")).unwrap();
    fs::remove_dir(p("moved-dir/inner")).unwrap();
    fs::remove_file(p("src/link")).unwrap();
    // A file written through a handle kept open across a seek.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(p("rw"))
        .unwrap();
    f.write_all(b"hello world").unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"WORLD").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "hello WORLD");
    drop(f);
    // Errors the kernel gets from the daemon.
    assert_eq!(fs::remove_dir(p("new")).unwrap_err().raw_os_error(), Some(39), "ENOTEMPTY");
    assert_eq!(fs::create_dir(p("new")).unwrap_err().raw_os_error(), Some(17), "EEXIST");
    assert_eq!(
        fs::rename(p("moved-dir"), p("moved-dir/sub")).unwrap_err().raw_os_error(),
        Some(22),
        "EINVAL"
    );
    assert_eq!(fs::read(p("nothing")).unwrap_err().raw_os_error(), Some(2), "ENOENT");
    let long = "n".repeat(256);
    assert_eq!(fs::write(p(&long), b"").unwrap_err().raw_os_error(), Some(36), "ENAMETOOLONG");
}

#[test]
fn edits_commit_through_the_daemon_and_check_out_identically() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    // The reference: the same edits on the local disk, in a checkout.
    let reference = tempfile::tempdir().unwrap();
    let reference = reference.path().join("ref");
    ok(repo, &["checkout", "HEAD", "--into", reference.to_str().unwrap()]);
    edit(&reference);

    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert_eq!(snapshot(mnt), snapshot(repo), "the mount shows HEAD");
    // Outside the mount, writing the repository says where it is held.
    let held = vst(repo, &["commit", "-m", "outside"]);
    let said = String::from_utf8_lossy(&held.stderr);
    assert!(!held.status.success() && said.contains("held by its writable mount"), "{said}");
    edit(mnt);
    assert_eq!(snapshot(mnt), snapshot(&reference), "the mount after the edits");
    // No entry may be named `.vst`, in any letter case: the CLI inside the
    // mount would take it for the repository.
    for name in [".vst", "new/.VST"] {
        let at = mnt.join(name);
        let einval = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(22);
        assert!(einval(fs::create_dir(&at)), "mkdir {name}: EINVAL");
        assert!(einval(fs::write(&at, b"")), "create {name}: EINVAL");
        assert!(einval(std::os::unix::fs::symlink("keep.txt", &at)), "symlink {name}: EINVAL");
        assert!(einval(fs::rename(mnt.join("keep.txt"), &at)), "rename to {name}: EINVAL");
        let missing = fs::symlink_metadata(&at).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(2), "lookup {name}: ENOENT");
    }
    assert_eq!(snapshot(mnt), snapshot(&reference), "the refused names changed nothing");

    let status = ok(mnt, &["status"]);
    assert!(status.contains("M keep.txt"), "{status}");
    assert!(status.contains("A sparse"), "{status}");
    assert!(status.contains("D src/link"), "{status}");
    // The content diff of the mount, as the CLI shows it between commits.
    let patch = ok(mnt, &["diff"]);
    assert!(patch.contains("+++ b/keep.txt") && patch.contains("+appended"), "{patch}");
    let names = ok(mnt, &["diff", "--name-status"]);
    assert!(names.contains("M\tkeep.txt\n") && names.contains("A\tsparse\n"), "{names}");
    let id = ok(mnt, &["commit", "-m", "through the mount"]).trim().to_owned();
    assert_eq!(ok(repo, &["diff", "HEAD~1", "HEAD"]), patch, "the same diff once committed");
    assert_eq!(ok(repo, &["diff", "HEAD~1", "HEAD", "--name-status"]), names);
    assert_eq!(id.len(), 64, "a commit id: {id}");
    assert!(ok(mnt, &["status"]).contains("clean"), "nothing left after the commit");
    let json = ok(mnt, &["--json", "commit", "-m", "again"]);
    assert!(json.contains("\"commit\":null"), "{json}");

    // Outside the mount, the CLI sees the commit: HEAD moved; inside, the
    // commands the daemon does not serve use the mount's repository.
    let log = ok(repo, &["log", "-n", "1"]);
    assert!(log.contains(&id), "{log}");
    assert_eq!(ok(mnt, &["log", "-n", "1"]), log);
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("co");
    ok(repo, &["checkout", &id, "--into", out.to_str().unwrap()]);
    assert_eq!(snapshot(&out), snapshot(&reference), "checkout --into of the mount's commit");

    unmount(repo, mnt, child);
}

#[test]
fn fsynced_data_survives_kill_9_and_the_tree_survives_unmount() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(mut child) = mount(repo, mnt, &[]) else { return };
    // Fsynced while open (the overlay is recorded), and closed then
    // fsynced through the directory (the stored content is recorded).
    let mut open = fs::File::create(mnt.join("open.bin")).unwrap();
    open.write_all(&vec![7; 300_000]).unwrap();
    open.sync_all().unwrap();
    fs::create_dir(mnt.join("d")).unwrap();
    fs::write(mnt.join("d/closed.txt"), b"closed\n").unwrap();
    fs::rename(mnt.join("keep.txt"), mnt.join("d/kept.txt")).unwrap();
    fs::File::open(mnt.join("d/closed.txt")).unwrap().sync_all().unwrap();
    fs::File::open(mnt.join("d")).unwrap().sync_all().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(open);
    // The dead mount's entry stays until it is unmounted.
    let _ = Command::new("umount").arg("-l").arg(mnt).status();
    let _ = Command::new("fusermount3").arg("-uz").arg(mnt).status();
    wait_until("the dead mount is gone", || !mounted(mnt));

    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert_eq!(fs::read(mnt.join("open.bin")).unwrap(), vec![7; 300_000]);
    assert_eq!(fs::read(mnt.join("d/closed.txt")).unwrap(), b"closed\n");
    assert_eq!(fs::read(mnt.join("d/kept.txt")).unwrap(), b"keep\n");
    assert!(!mnt.join("keep.txt").exists());
    // An orderly unmount keeps the uncommitted tree, unfsynced edits too.
    fs::write(mnt.join("late.txt"), b"late\n").unwrap();
    fs::remove_file(mnt.join("src/b.txt")).unwrap();
    let before = snapshot(mnt);
    unmount(repo, mnt, child);
    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert_eq!(snapshot(mnt), before, "the same tree after an unmount and a mount");
    let status = ok(mnt, &["status"]);
    assert!(status.contains("A late.txt") && status.contains("D src/b.txt"), "{status}");
    unmount(repo, mnt, child);
}

/// A remount starts at the branch's head when the last mount left nothing
/// uncommitted (the branch may have moved meanwhile); it resumes changes
/// the last mount left, refuses `--rev` of another commit while they are
/// there, and `--discard` drops them.
#[test]
fn a_remount_resumes_changes_or_starts_at_the_head() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    fs::write(mnt.join("keep.txt"), b"from the mount\n").unwrap();
    ok(mnt, &["commit", "-q", "-m", "in the mount"]);
    unmount(repo, mnt, child);
    // The branch moves while nothing is mounted. The files on disk are
    // still at the commit before the mount's: a commit there would revert
    // the mount's, so it is refused until the work tree is checked out at
    // HEAD (which keeps the local edit).
    fs::write(repo.join("outside.txt"), b"outside\n").unwrap();
    let refused = vst(repo, &["commit", "-q", "-m", "outside"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("vst checkout HEAD"), "{said}");
    ok(repo, &["checkout", "HEAD"]);
    assert_eq!(fs::read(repo.join("keep.txt")).unwrap(), b"from the mount\n");
    ok(repo, &["commit", "-q", "-m", "outside"]);
    assert_eq!(ok(repo, &["status", "-s"]), "");
    let out = tempfile::tempdir().unwrap();
    let head = out.path().join("head");
    ok(repo, &["checkout", "HEAD", "--into", head.to_str().unwrap()]);

    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert_eq!(snapshot(mnt), snapshot(&head), "the mount starts at the head, not where it was");
    fs::write(mnt.join("pending.txt"), b"pending\n").unwrap();
    unmount(repo, mnt, child);

    let at = mnt.to_str().unwrap();
    let refused = vst(repo, &["mount", "-q", "--write", "--rev", "HEAD~1", at]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("--discard"), "{said}");
    assert!(said.contains("1 uncommitted changes (pending.txt)"), "names the changes: {said}");
    assert!(!mounted(mnt));
    // On the same commit they are resumed.
    let Some(child) = mount(repo, mnt, &["--rev", "HEAD"]) else { return };
    assert_eq!(fs::read(mnt.join("pending.txt")).unwrap(), b"pending\n");
    unmount(repo, mnt, child);
    let Some(child) = mount(repo, mnt, &["--discard", "--rev", "HEAD~1"]) else { return };
    assert!(!mnt.join("pending.txt").exists() && !mnt.join("outside.txt").exists());
    assert_eq!(fs::read(mnt.join("keep.txt")).unwrap(), b"from the mount\n");
    assert_eq!(ok(mnt, &["status", "-s"]), "", "nothing uncommitted");
    unmount(repo, mnt, child);
}

#[test]
fn closed_files_are_finalized_in_the_background() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    for i in 0..50 {
        fs::write(mnt.join(format!("src/new{i}.txt")), format!("{i}\n")).unwrap();
    }
    fs::write(mnt.join("src/deep/a.txt"), b"second\n").unwrap();
    // The settler finalizes what was closed, without a commit asking: the
    // overlays go once their content is stored and recorded.
    let overlays = repo.join(".vst/mount/overlay");
    wait_until("every closed file is finalized", || {
        fs::read_dir(&overlays).unwrap().next().is_none()
    });
    let status = ok(mnt, &["status"]);
    assert!(status.contains("A src/new49.txt") && status.contains("M src/deep/a.txt"), "{status}");
    let before = snapshot(mnt);
    ok(mnt, &["commit", "-q", "-m", "fifty"]);
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("c");
    ok(repo, &["checkout", "HEAD", "--into", into.to_str().unwrap()]);
    assert_eq!(snapshot(&into), before, "the commit holds what was written");
    unmount(repo, mnt, child);
}

/// Once the mount has been quiet a moment, the settler stores the trees of
/// what changed and syncs them, so that a commit only adds its commit
/// object: the edited tree is in the store before anything asks for it.
#[test]
fn a_quiet_mount_stores_its_trees_before_a_commit() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    // The same trees made outside, by the CLI in a repository of its own:
    // content addressing gives them the same ids.
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy");
    ok(repo, &["checkout", "HEAD", "--into", copy.to_str().unwrap()]);
    ok(&copy, &["init", "-q"]);
    // Makes the same edit in the mount and in the copy; then waits until
    // the mount's tree is in the store, looked for from another handle,
    // read-only, as `vst` outside would: nothing in the mount is asked (a
    // status would store the trees itself).
    let edit_and_wait = |edit: &dyn Fn(&Path)| {
        edit(mnt);
        edit(&copy);
        ok(&copy, &["commit", "-q", "-m", "same"]);
        let log = ok(&copy, &["--json", "log", "-n", "1"]);
        let tree = log.split("\"tree\":\"").nth(1).and_then(|t| t.get(..64)).expect("a tree id");
        let tree: vst_cas::ObjectId = tree.parse().unwrap();
        use vst_cas::Store as _;
        wait_until("the quiet mount's tree is in the store", || {
            let store =
                vst_cas::PackStore::open(&repo.join(".vst"), vst_cas::Access::ReadOnly).unwrap();
            store.contains(&tree).unwrap()
        });
    };
    edit_and_wait(&|root| {
        fs::write(root.join("src/deep/a.txt"), b"quiet\n").unwrap();
        fs::create_dir(root.join("fresh")).unwrap();
        fs::write(root.join("fresh/new.txt"), b"new\n").unwrap();
    });
    let status = ok(mnt, &["status"]);
    assert!(status.contains("M src/deep/a.txt") && status.contains("A fresh/new.txt"), "{status}");
    // Each store makes the next wait longer, until a commit; both go on.
    edit_and_wait(&|root| fs::write(root.join("fresh/second.txt"), b"2\n").unwrap());
    ok(mnt, &["commit", "-q", "-m", "through the mount"]);
    edit_and_wait(&|root| fs::write(root.join("fresh/third.txt"), b"3\n").unwrap());
    unmount(repo, mnt, child);
}

/// Files made and deleted through the mount leave the daemon's inode
/// table once the kernel forgets them, except one still open: a long-lived
/// mount does not grow with its churn.
#[test]
fn deleted_files_leave_the_inode_table_once_forgotten() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let inodes = || -> u64 {
        let out = ok(mnt, &["--json", "status"]);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        value["mount"]["inodes"].as_u64().unwrap_or_else(|| panic!("no inode count in {out}"))
    };
    let forget = || {
        // Evicting the kernel's unused dentries and inodes sends the
        // forgets now rather than under memory pressure.
        let _ = fs::write("/proc/sys/vm/drop_caches", "2");
    };
    fs::create_dir(mnt.join("scratch")).unwrap();
    let before = inodes();
    for round in 0..3 {
        for i in 0..200 {
            fs::write(mnt.join(format!("scratch/f{i}")), format!("{round} {i}\n")).unwrap();
        }
        for i in 0..200 {
            fs::remove_file(mnt.join(format!("scratch/f{i}"))).unwrap();
        }
    }
    let mut open = fs::File::create(mnt.join("scratch/open")).unwrap();
    fs::remove_file(mnt.join("scratch/open")).unwrap();
    wait_until("the kernel forgets the deleted files", || {
        forget();
        inodes() <= before + 1
    });
    // The deleted file still open is still there for its handle.
    open.write_all(b"still open\n").unwrap();
    open.seek(SeekFrom::Start(0)).unwrap();
    drop(open);
    wait_until("the last deleted file is forgotten once closed", || {
        forget();
        inodes() <= before
    });
    assert!(ok(mnt, &["status"]).contains("A scratch"), "the empty directory is still there");
    unmount(repo, mnt, child);
}

/// The daemon's resident memory, in KiB (`VmRSS`).
fn resident_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A long-lived mount's state is bounded by what it holds, not by its
/// history: five rounds of 20,000 files made and removed leave the inode
/// table where it started, and a writer that closes files faster than the
/// settler keeps up does not run the daemon (started here with 1,024 file
/// descriptors) out of them. The resident memory is reported, not checked
/// (the allocator decides when it returns pages); on a debug build it
/// went from 41 MiB after the first round to 45 MiB after the fifth.
#[test]
fn churn_of_many_files_leaves_the_daemon_bounded() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let mut limited = Command::new("sh");
    limited.args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_vst")]);
    let Some(child) = mount_by(limited, repo, mnt, &[]) else { return };
    let inodes = || -> u64 {
        let out = ok(mnt, &["--json", "status"]);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        value["mount"]["inodes"].as_u64().unwrap_or_else(|| panic!("no inode count in {out}"))
    };
    fs::create_dir(mnt.join("scratch")).unwrap();
    let before = inodes();
    for round in 0..5 {
        for i in 0..20_000 {
            let path = mnt.join(format!("scratch/f{i}"));
            fs::write(&path, format!("{i}\n")).unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        for i in 0..20_000 {
            fs::remove_file(mnt.join(format!("scratch/f{i}"))).unwrap();
        }
        wait_until("the kernel forgets the deleted files", || {
            let _ = fs::write("/proc/sys/vm/drop_caches", "2");
            inodes() <= before
        });
        let fds = fs::read_dir(format!("/proc/{}/fd", child.id())).unwrap().count();
        eprintln!(
            "round {round}: daemon resident {} KiB, {fds} descriptors, {} inodes",
            resident_kib(child.id()),
            inodes()
        );
    }
    assert!(ok(mnt, &["status"]).contains("A scratch"), "the empty directory is still there");
    unmount(repo, mnt, child);
}

/// A program that removes entries while it reads the directory (as `rm -r`
/// or a scandir loop may) still sees every other entry exactly once: the
/// offsets of an open directory handle do not shift when entries go.
#[test]
fn entries_removed_while_a_directory_is_read_do_not_hide_others() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let dir = mnt.join("many");
    fs::create_dir(&dir).unwrap();
    // Enough long names that one getdents buffer cannot hold them all.
    let names: Vec<String> =
        (0..2000).map(|i| format!("an-entry-with-a-long-name-{i:05}")).collect();
    for name in &names {
        fs::write(dir.join(name), b"x").unwrap();
    }
    let mut seen = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        fs::remove_file(entry.path()).unwrap();
        seen.push(entry.file_name().into_string().unwrap());
    }
    seen.sort();
    assert_eq!(seen, names, "every entry listed once while the others went");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    // A new handle lists what is there now.
    fs::write(dir.join("late"), b"y").unwrap();
    let now: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(now, ["late"]);
    unmount(repo, mnt, child);
}

#[test]
fn checkout_inside_the_mount_changes_what_open_readers_see() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    fs::write(mnt.join("src/deep/a.txt"), b"second version\n").unwrap();
    fs::write(mnt.join("added.txt"), b"added\n").unwrap();
    let second = ok(mnt, &["commit", "-m", "two"]).trim().to_owned();
    // A reader that keeps the file open, and a directory kept open.
    let reader = fs::File::open(mnt.join("src/deep/a.txt")).unwrap();
    let read_all = |f: &fs::File| {
        let mut buf = vec![0; 100];
        let n = f.read_at(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    };
    assert_eq!(read_all(&reader), b"second version\n");
    let names = |d: &Path| {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert!(names(mnt).contains(&"added.txt".to_owned()));
    // Local changes block a checkout without --force.
    fs::write(mnt.join("scratch"), b"x").unwrap();
    let refused = vst(mnt, &["checkout", "HEAD~1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("uncommitted"));
    fs::remove_file(mnt.join("scratch")).unwrap();

    ok(mnt, &["checkout", "HEAD~1"]);
    assert_eq!(read_all(&reader), b"first\n", "the open file shows the checked-out content");
    assert_eq!(fs::read(mnt.join("src/deep/a.txt")).unwrap(), b"first\n");
    assert!(!names(mnt).contains(&"added.txt".to_owned()), "the listing changed");
    assert!(!mnt.join("added.txt").exists());
    assert!(ok(mnt, &["status"]).contains("clean"));
    // HEAD is detached at the first commit; switch goes back to main.
    ok(mnt, &["switch", "main"]);
    assert_eq!(read_all(&reader), b"second version\n");
    assert_eq!(fs::read(mnt.join("added.txt")).unwrap(), b"added\n");
    let head = ok(repo, &["log", "-n", "1"]);
    assert!(head.contains(&second), "{head}");
    drop(reader);
    unmount(repo, mnt, child);
}

#[test]
fn many_processes_at_once_never_deadlock() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let deadline = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|s| {
        // Writers: each in its own directory, creating, appending,
        // renaming, reading back and removing.
        for w in 0..4 {
            s.spawn(move || {
                let dir = mnt.join(format!("w{w}"));
                fs::create_dir(&dir).unwrap();
                let mut round = 0u32;
                while Instant::now() < deadline {
                    let a = dir.join(format!("f{round}"));
                    fs::write(&a, format!("{w} {round}\n")).unwrap();
                    let mut f = fs::OpenOptions::new().append(true).open(&a).unwrap();
                    f.write_all(b"more\n").unwrap();
                    drop(f);
                    let b = dir.join(format!("g{round}"));
                    fs::rename(&a, &b).unwrap();
                    assert_eq!(fs::read(&b).unwrap(), format!("{w} {round}\nmore\n").as_bytes());
                    if round.is_multiple_of(2) {
                        fs::remove_file(&b).unwrap();
                    }
                    round += 1;
                }
            });
        }
        // A reader of a large stored file, and a lister.
        s.spawn(move || {
            while Instant::now() < deadline {
                assert_eq!(fs::read(mnt.join("src/b.txt")).unwrap().len(), 3 << 20);
                let _ = fs::read_dir(mnt).unwrap().count();
            }
        });
        // Status and commits through the socket meanwhile.
        let mut commits = 0;
        while Instant::now() < deadline {
            ok(mnt, &["status"]);
            let out = vst(mnt, &["commit", "-m", "during"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            commits += 1;
        }
        assert!(commits > 0);
    });
    // Everything settled: one more commit, and it matches the mount.
    ok(mnt, &["commit", "-m", "after", "--allow-empty"]);
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("co");
    ok(repo, &["checkout", "HEAD", "--into", out.to_str().unwrap()]);
    assert_eq!(snapshot(&out), snapshot(mnt));
    unmount(repo, mnt, child);
}

#[test]
fn the_server_exits_after_an_unmount_even_without_its_socket() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    // The socket's path gone (say, the repository moved): stopping the
    // control thread must not depend on connecting to it.
    fs::remove_file(repo.join(".vst/mount/sock")).unwrap();
    unmount(repo, mnt, child);
}

/// The id of `rev`'s commit and of its first parent.
fn commit_of(repo: &Path, rev: &str) -> (String, Option<String>) {
    let log: serde_json::Value =
        serde_json::from_str(&ok(repo, &["log", "--json", "-n", "1", rev])).unwrap();
    let commit = &log[0];
    let id = commit["commit"].as_str().unwrap().to_owned();
    (id, commit["parents"][0].as_str().map(str::to_owned))
}

/// What `vst mount --write` (in the background, so that it returns if it
/// does mount) says when it refuses; a mount it makes is unmounted, then
/// the test fails.
fn refused_mount(repo: &Path, at: &Path, extra: &[&str]) -> String {
    let at = at.to_str().unwrap();
    let out = vst(repo, &[&["mount", "--write", "--background", at][..], extra].concat());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        ok(repo, &["umount", at]);
        panic!("mounted, where it had to refuse: {}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(!mounted(Path::new(at)));
    said
}

/// Work a mount left uncommitted on a commit the branch has since moved
/// past is never hidden nor dropped: the next mount refuses, naming both
/// commits and the choices, and changes nothing; `--save BRANCH` keeps the
/// work on a new branch on top of the commit it was made on, and mounts
/// the branch's new head.
#[test]
fn a_remount_after_the_branch_moved_keeps_the_uncommitted_work() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let (base, _) = commit_of(repo, "HEAD");
    let Some(child) = mount(repo, mnt, &[]) else { return };
    fs::write(mnt.join("precious.txt"), b"precious\n").unwrap();
    unmount(repo, mnt, child);
    fs::write(repo.join("outside.txt"), b"outside\n").unwrap();
    ok(repo, &["commit", "-q", "-m", "outside"]);
    let (moved, _) = commit_of(repo, "HEAD");

    let said = refused_mount(repo, mnt, &[]);
    for needed in [&base, &moved, "--save", "--discard"] {
        assert!(said.contains(needed), "the refusal names {needed}: {said}");
    }
    assert_eq!(commit_of(repo, "HEAD").0, moved, "a refused mount moves nothing");

    let Some(child) = mount(repo, mnt, &["--save", "kept"]) else { return };
    assert!(mnt.join("outside.txt").exists() && !mnt.join("precious.txt").exists());
    assert_eq!(ok(mnt, &["status", "-s"]), "", "the new head, clean");
    unmount(repo, mnt, child);
    let (kept, parent) = commit_of(repo, "kept");
    assert_eq!(parent.as_deref(), Some(base.as_str()), "saved on the commit it was made on");
    assert_eq!(ok(repo, &["cat", &format!("{kept}:precious.txt")]), "precious\n");
    // Nothing is left to save: the next mount resumes normally.
    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert!(mnt.join("outside.txt").exists());
    unmount(repo, mnt, child);
}

/// A commit in the mount that the moved branch refuses changes nothing:
/// the work stays uncommitted on its base (not on the refused commit,
/// which no ref names), so the next mount still finds it.
#[test]
fn a_commit_refused_in_the_mount_changes_nothing() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let (first, _) = commit_of(repo, "HEAD");
    fs::write(repo.join("second.txt"), b"second\n").unwrap();
    ok(repo, &["commit", "-q", "-m", "second"]);
    let (second, _) = commit_of(repo, "HEAD");
    let Some(child) = mount(repo, mnt, &[]) else { return };
    fs::write(mnt.join("precious.txt"), b"precious\n").unwrap();
    // Another writer moves the branch under the mount (refs are not under
    // the store's lock): back to the first commit.
    let refs = vst_cas::Refs::new(
        std::sync::Arc::new(vst_cas::vfs::RealFs::new()),
        &repo.join(".vst").canonicalize().unwrap(),
    );
    let id = |s: &str| s.parse::<vst_cas::ObjectId>().unwrap();
    let main = vst_cas::RefName::try_from("main").unwrap();
    refs.update(&main, Some(id(&second)), Some(id(&first)), "test: reset").unwrap();
    let refused = vst(mnt, &["commit", "-m", "refused"]);
    assert!(!refused.status.success(), "the branch moved: the commit must fail");
    assert!(ok(mnt, &["status"]).contains("A precious.txt"), "still uncommitted");
    unmount(repo, mnt, child);

    let said = refused_mount(repo, mnt, &[]);
    assert!(said.contains(&second), "the work is on {second}: {said}");
    let Some(child) = mount(repo, mnt, &["--save", "kept"]) else { return };
    unmount(repo, mnt, child);
    let (kept, parent) = commit_of(repo, "kept");
    assert_eq!(parent.as_deref(), Some(second.as_str()));
    assert_eq!(ok(repo, &["cat", &format!("{kept}:precious.txt")]), "precious\n");
}

/// `--rev` of an older commit detaches `HEAD` there, so a commit in the
/// mount succeeds and moves no branch; `--rev BRANCH` makes `HEAD` name
/// that branch, and a commit moves it.
#[test]
fn a_mount_of_another_revision_commits_from_it() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let (first, _) = commit_of(repo, "HEAD");
    fs::write(repo.join("second.txt"), b"second\n").unwrap();
    ok(repo, &["commit", "-q", "-m", "second"]);
    let (second, _) = commit_of(repo, "HEAD");
    ok(repo, &["branch", "side", "HEAD~1"]);

    let Some(child) = mount(repo, mnt, &["--rev", "HEAD~1"]) else { return };
    assert!(!mnt.join("second.txt").exists());
    fs::write(mnt.join("old.txt"), b"on the old commit\n").unwrap();
    let out = vst(mnt, &["commit", "-m", "on the old commit"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    unmount(repo, mnt, child);
    assert_eq!(commit_of(repo, "main").0, second, "no branch moved");
    assert_eq!(commit_of(repo, "HEAD"), (made, Some(first.clone())), "HEAD detached");

    let Some(child) = mount(repo, mnt, &["--rev", "side"]) else { return };
    fs::write(mnt.join("side.txt"), b"side\n").unwrap();
    let out = vst(mnt, &["commit", "-m", "on side"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    unmount(repo, mnt, child);
    let (side, parent) = commit_of(repo, "side");
    assert_eq!(parent.as_deref(), Some(first.as_str()));
    assert_eq!(commit_of(repo, "HEAD").0, side, "HEAD names side");
    assert_eq!(commit_of(repo, "main").0, second);
}

/// SIGTERM to a background server whose mount is in use is not dropped:
/// the mount is detached at once (and that is logged in `.vst/mount/log`),
/// the file still open under it keeps working, and once it is closed the
/// server saves the uncommitted tree and exits.
#[test]
fn sigterm_to_a_busy_background_server_detaches_logs_and_exits() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let at = mnt.to_str().unwrap();
    let out = vst(repo, &["mount", "--write", "--background", at]);
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(std::env::var_os("CI").is_none(), "cannot mount in CI: {why}");
        eprintln!("\n!!!!!!!! WARNING: WRITABLE MOUNT TEST SKIPPED: {why} !!!!!!!!\n");
        return;
    }
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let pid = said
        .split("server process ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no server process in {said}"));
    let mut open = fs::File::create(mnt.join("open.txt")).unwrap();
    open.write_all(b"before the signal\n").unwrap();
    let kill = Command::new("kill").args(["-TERM", pid]).status().unwrap();
    assert!(kill.success());
    wait_until("the busy mount is detached", || !mounted(mnt));
    open.write_all(b"after it\n").unwrap();
    drop(open);
    wait_until("the server exits and lets go of the repository", || {
        let lock = fs::File::open(repo.join(".vst/lock")).unwrap();
        lock.try_lock().is_ok()
    });
    let log = fs::read_to_string(repo.join(".vst/mount/log")).unwrap_or_default();
    assert!(log.contains("asked to stop") && log.contains("detached"), "logged: {log}");
    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert_eq!(fs::read(mnt.join("open.txt")).unwrap(), b"before the signal\nafter it\n");
    unmount(repo, mnt, child);
}

/// How many records the mount's journal holds (`vst status --json`).
fn journal_records(mnt: &Path) -> u64 {
    let status: serde_json::Value = serde_json::from_str(&ok(mnt, &["status", "--json"])).unwrap();
    status["mount"]["journal_records"].as_u64().unwrap()
}

/// Churn (files made and removed) does not grow the journal for ever: a
/// commit that finds nothing to commit rewrites it as its base alone, and
/// a quiet mount rewrites one grown past its limit (4 MiB) compactly.
#[test]
fn churn_does_not_grow_the_journal() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let fresh = journal_records(mnt);
    for i in 0..50 {
        let path = mnt.join(format!("tmp{i}"));
        fs::write(&path, b"x").unwrap();
        fs::remove_file(&path).unwrap();
    }
    assert!(journal_records(mnt) > fresh + 50, "the churn is journaled");
    assert!(ok(mnt, &["commit", "-m", "nothing"]).contains("nothing to commit"));
    assert_eq!(journal_records(mnt), fresh, "nothing to commit: the base alone");

    // About 6 KB of records per file made and removed, at a path of 3 KB.
    let mut deep = mnt.to_owned();
    for c in b'a'..b'm' {
        deep.push(String::from_utf8(vec![c; 250]).unwrap());
    }
    fs::create_dir_all(&deep).unwrap();
    let journal = repo.join(".vst/mount/journal");
    let limit = 4 << 20;
    let mut made = 0;
    while fs::metadata(&journal).unwrap().len() <= limit {
        let path = deep.join(format!("tmp{made}"));
        fs::File::create(&path).unwrap();
        fs::remove_file(&path).unwrap();
        made += 1;
        assert!(made < 10_000, "the journal does not grow");
    }
    wait_until("the quiet mount compacts its journal", || {
        fs::metadata(&journal).unwrap().len() < limit
    });
    assert!(ok(mnt, &["status", "-s"]).starts_with("A "), "the new directories, uncommitted");
    unmount(repo, mnt, child);
    let Some(child) = mount(repo, mnt, &[]) else { return };
    assert!(deep.is_dir() && fs::read_dir(&deep).unwrap().next().is_none());
    unmount(repo, mnt, child);
}

/// The daemon's peak resident memory, in bytes (`VmHWM`).
fn peak_memory(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// A large sparse file is finalized from its overlay a few chunks at a
/// time: committing 256 MiB (holes but for a few bytes at the end) never
/// holds the file in the daemon's memory.
#[test]
fn a_large_sparse_file_commits_in_bounded_memory() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let len: u64 = 256 << 20;
    let file = fs::File::create(mnt.join("sparse.bin")).unwrap();
    file.set_len(len).unwrap();
    file.write_all_at(b"the end", len - 7).unwrap();
    drop(file);
    ok(mnt, &["commit", "-q", "-m", "sparse"]);
    let peak = peak_memory(child.id());
    assert!(peak < len / 2, "the daemon held {} MiB at its peak", peak >> 20);
    let file = fs::File::open(mnt.join("sparse.bin")).unwrap();
    assert_eq!(file.metadata().unwrap().len(), len);
    let mut tail = [0; 11];
    file.read_exact_at(&mut tail, len - 11).unwrap();
    assert_eq!(&tail, b"\0\0\0\0the end");
    drop(file);
    unmount(repo, mnt, child);
}

/// FIFOs, sockets and device nodes live in the mount as local entries:
/// listed, stat-able, usable and removable; a status and a commit skip
/// them with the warning a work tree on disk gives, and they do not
/// survive an unmount.
#[test]
fn special_files_are_local_entries_that_commits_skip() {
    use std::os::unix::fs::FileTypeExt as _;
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).current_dir(mnt).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("mkfifo", &["fifo"]);
    run("mknod", &["null", "c", "1", "3"]);
    let listener = std::os::unix::net::UnixListener::bind(mnt.join("sock")).unwrap();
    let kinds = |name: &str| fs::symlink_metadata(mnt.join(name)).unwrap().file_type();
    assert!(kinds("fifo").is_fifo() && kinds("null").is_char_device() && kinds("sock").is_socket());
    let null = fs::symlink_metadata(mnt.join("null")).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(null.rdev(), fs::metadata("/dev/null").unwrap().rdev(), "the device number");
    let listed: Vec<String> =
        fs::read_dir(mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for name in ["fifo", "null", "sock"] {
        assert!(listed.iter().any(|l| l == name), "{name} is listed: {listed:?}");
    }

    // Each works as it does on a local disk.
    let fifo = mnt.join("fifo");
    let writer = std::thread::spawn(move || fs::write(fifo, b"through the pipe\n").unwrap());
    assert_eq!(fs::read(mnt.join("fifo")).unwrap(), b"through the pipe\n");
    writer.join().unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(mnt.join("sock")).unwrap();
    client.write_all(b"hello").unwrap();
    let mut got = [0; 5];
    listener.accept().unwrap().0.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    fs::write(mnt.join("null"), b"into the device").unwrap();
    assert_eq!(fs::read(mnt.join("null")).unwrap(), b"", "/dev/null's driver serves it");

    // A status and a commit skip them, with the warning.
    fs::write(mnt.join("real.txt"), b"versioned\n").unwrap();
    let status = vst(mnt, &["status", "-s"]);
    let (said, warned) = (
        String::from_utf8_lossy(&status.stdout).into_owned(),
        String::from_utf8_lossy(&status.stderr).into_owned(),
    );
    assert_eq!(said, "A real.txt\n", "only the file is a change ({warned})");
    for name in ["fifo", "null", "sock"] {
        let warning = format!("vst: warning: skipping {name}: not a file, directory or symlink");
        assert!(warned.contains(&warning), "{warned}");
    }
    let commit = vst(mnt, &["commit", "-q", "-m", "with specials around"]);
    assert!(commit.status.success(), "{}", String::from_utf8_lossy(&commit.stderr));
    assert!(String::from_utf8_lossy(&commit.stderr).contains("skipping sock"));
    let tree = ok(repo, &["ls", "HEAD"]);
    assert!(
        tree.contains("real.txt") && !tree.contains("fifo") && !tree.contains("sock"),
        "{tree}"
    );

    // Removable, renamable, and a rename over a versioned file takes the
    // file out of the next commit.
    fs::remove_file(mnt.join("null")).unwrap();
    fs::rename(mnt.join("fifo"), mnt.join("real.txt")).unwrap();
    assert!(kinds("real.txt").is_fifo() && !mnt.join("fifo").exists());
    assert_eq!(ok(mnt, &["status", "-s"]), "D real.txt\n");
    drop(listener);
    unmount(repo, mnt, child);
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let left: Vec<_> = fs::read_dir(mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n == "sock" || n == "real.txt"), "gone after a remount: {left:?}");
    unmount(repo, mnt, child);
}

/// A hard link is a second name for the same inode while the mount lives
/// (content and attributes shared, the link count counted); a commit
/// records each name as a file with the content it has, and after a
/// remount they are separate files, as a checkout makes them.
#[test]
fn hard_links_share_an_inode_and_commit_as_files() {
    use std::os::unix::fs::MetadataExt as _;
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let p = |s: &str| mnt.join(s);
    // A file from the commit, linked into another directory.
    fs::hard_link(p("keep.txt"), p("src/keep-link")).unwrap();
    let (a, b) = (fs::metadata(p("keep.txt")).unwrap(), fs::metadata(p("src/keep-link")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "one inode, two links");
    // Written through one name (a handle kept open across the commit),
    // read through the other; the mode is shared too.
    let mut open = fs::OpenOptions::new().append(true).open(p("src/keep-link")).unwrap();
    open.write_all(b"more\n").unwrap();
    assert_eq!(fs::read(p("keep.txt")).unwrap(), b"keep\nmore\n");
    fs::set_permissions(p("keep.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(fs::metadata(p("src/keep-link")).unwrap().mode() & 0o777, 0o755);
    // A third name, then one of them renamed and another removed.
    fs::hard_link(p("src/keep-link"), p("third")).unwrap();
    assert_eq!(fs::metadata(p("keep.txt")).unwrap().nlink(), 3);
    fs::rename(p("third"), p("src/deep/third")).unwrap();
    fs::remove_file(p("keep.txt")).unwrap();
    assert_eq!(fs::metadata(p("src/keep-link")).unwrap().nlink(), 2);
    // `cp -al` and `ln` work as on a local disk.
    let cp = Command::new("cp").current_dir(mnt).args(["-al", "src", "src-copy"]).status();
    assert!(cp.unwrap().success());
    assert_eq!(
        fs::metadata(p("src-copy/b.txt")).unwrap().ino(),
        fs::metadata(p("src/b.txt")).unwrap().ino()
    );
    let linked_symlink =
        Command::new("ln").current_dir(mnt).args(["-P", "src/link", "link2"]).status();
    assert!(linked_symlink.unwrap().success(), "a hard link of a symlink");
    assert_eq!(fs::read_link(p("link2")).unwrap(), Path::new("deep/a.txt"));
    // Linking a directory is refused, as everywhere.
    assert_eq!(fs::hard_link(p("src/deep"), p("dir-link")).unwrap_err().raw_os_error(), Some(1));

    ok(mnt, &["commit", "-q", "-m", "links"]);
    drop(open);
    let show = |path: &str| ok(repo, &["cat", &format!("HEAD:{path}")]);
    assert_eq!(show("src/keep-link"), "keep\nmore\n");
    assert_eq!(show("src/deep/third"), "keep\nmore\n");
    assert_eq!(show("src-copy/b.txt").len(), 3 << 20);
    let listed = ok(repo, &["ls", "HEAD"]);
    assert!(!listed.contains("keep.txt"), "removed: {listed}");
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("c");
    ok(repo, &["checkout", "HEAD", "--into", into.to_str().unwrap()]);
    assert_eq!(snapshot(&into), snapshot(mnt), "the commit holds each name's content");
    unmount(repo, mnt, child);

    // After a remount: separate files.
    let Some(child) = mount(repo, mnt, &[]) else { return };
    let (a, b) =
        (fs::metadata(p("src/keep-link")).unwrap(), fs::metadata(p("src/deep/third")).unwrap());
    assert!(a.ino() != b.ino() && a.nlink() == 1 && b.nlink() == 1);
    fs::write(p("src/keep-link"), b"only this one\n").unwrap();
    assert_eq!(fs::read(p("src/deep/third")).unwrap(), b"keep\nmore\n");
    unmount(repo, mnt, child);
}

/// `statfs` in the mount reports the sizes of the filesystem its data
/// goes to (the repository's: the store and the overlays), so `df` and
/// programs that check for room before writing see real numbers.
#[test]
fn statfs_reports_the_repository_filesystem() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    // Block size, total blocks and total inodes: these do not change
    // while other programs write (free space does).
    let sizes = |dir: &Path| {
        let out = Command::new("stat").args(["-f", "-c", "%S %b %c"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let there = sizes(&repo.join(".vst"));
    assert!(!there.starts_with("0 ") && !there.contains(" 0 "), "{there}");
    assert_eq!(sizes(mnt), there);
    unmount(repo, mnt, child);
}

/// An ordinary user mounts (writable and read-only), edits, commits,
/// checks out and unmounts through fusermount3, without root. Run as
/// root, the test makes such a user (useradd) and lets everyone open
/// `/dev/fuse` (0666, as distributions ship it); run as anyone else, it
/// is that user.
#[test]
fn an_ordinary_user_mounts_edits_commits_and_unmounts() {
    use std::os::unix::fs::MetadataExt as _;
    let Some((_one, _, _)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (repo, mnt, ro) = (dir.path().join("repo"), dir.path().join("mnt"), dir.path().join("ro"));
    for d in [&repo, &mnt, &ro] {
        fs::create_dir(d).unwrap();
    }
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id").args(args).output().unwrap();
        assert!(out.status.success(), "id {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    const USER: &str = "vst-mount-test";
    let as_root = id(&["-u"]) == 0;
    let (uid, gid) = if as_root {
        let known = Command::new("getent").args(["passwd", USER]).output().unwrap();
        if !known.status.success() {
            let made = Command::new("useradd")
                .args(["-M", "-N", "-s", "/usr/sbin/nologin", USER])
                .output()
                .expect("useradd (Debian: passwd) makes the test's user");
            assert!(made.status.success(), "useradd: {}", String::from_utf8_lossy(&made.stderr));
        }
        let fuse = fs::metadata("/dev/fuse").unwrap();
        if fuse.mode() & 0o666 != 0o666 {
            fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
        }
        let (uid, gid) = (id(&["-u", USER]), id(&["-g", USER]));
        for d in [dir.path(), &repo, &mnt, &ro] {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        }
        (uid, gid)
    } else {
        (id(&["-u"]), id(&["-g"]))
    };
    // Runs `program` as the user, in `at` (entered as the user: root may
    // not enter another user's mount).
    let run = |at: &Path, program: &str, args: &[&str]| -> Output {
        let mut command = if as_root {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"]);
            c.args(["sh", "-c", "cd \"$0\" && exec \"$@\""]).arg(at).arg(program);
            c
        } else {
            let mut c = Command::new(program);
            c.current_dir(at);
            c
        };
        command.env("HOME", dir.path()).env("VST_AUTHOR", "user").args(args);
        command.output().unwrap()
    };
    let vst_as = |at: &Path, args: &[&str]| -> String {
        let out = run(at, env!("CARGO_BIN_EXE_vst"), args);
        assert!(
            out.status.success(),
            "vst {args:?} as uid {uid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sh_as = |at: &Path, script: &str| {
        let out = run(at, "sh", &["-c", script]);
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    vst_as(&repo, &["init", "-q"]);
    sh_as(&repo, "echo one > a.txt && mkdir src && echo code > src/main.c");
    vst_as(&repo, &["commit", "-q", "-m", "one"]);

    // A writable mount: owned by the user, mounted by fusermount3.
    vst_as(&repo, &["mount", "-q", "--write", "--background", mnt.to_str().unwrap()]);
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
        .map(str::to_owned)
        .expect("the mount shows in mountinfo");
    assert!(line.contains("fuse.vst") && line.contains(&format!("user_id={uid}")), "{line}");
    sh_as(
        &mnt,
        "echo two > b.txt && mkdir -p new/dir && echo x > new/dir/x && ln b.txt c.txt && mkfifo pipe && echo edited >> src/main.c",
    );
    let status = vst_as(&mnt, &["status"]);
    for line in ["A b.txt", "A c.txt", "A new/dir/x", "M src/main.c"] {
        assert!(status.contains(line), "{line} in {status}");
    }
    let made = vst_as(&mnt, &["commit", "-m", "two"]).trim().to_owned();
    vst_as(&mnt, &["checkout", "HEAD~1"]);
    assert_eq!(sh_as(&mnt, "ls"), "a.txt\npipe\nsrc\n", "at the first commit");
    vst_as(&mnt, &["switch", "main"]);
    assert_eq!(sh_as(&mnt, "cat c.txt src/main.c"), "two\ncode\nedited\n");
    vst_as(&repo, &["umount", mnt.to_str().unwrap()]);
    assert!(!mounted(&mnt));
    assert_eq!(commit_of(&repo, "HEAD").0, made);
    assert_eq!(ok(&repo, &["cat", "HEAD:new/dir/x"]), "x\n");

    // --allow-other takes `user_allow_other` in /etc/fuse.conf (root
    // needs none).
    let conf = fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    let allowed = conf.lines().any(|l| l.trim() == "user_allow_other");
    let out = run(
        &repo,
        env!("CARGO_BIN_EXE_vst"),
        &["mount", "--allow-other", "--background", ro.to_str().unwrap()],
    );
    if allowed {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        vst_as(&repo, &["umount", ro.to_str().unwrap()]);
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && said.contains(
                    "with --allow-other (an ordinary user needs the line `user_allow_other`"
                ),
            "{said}"
        );
    }
    // A read-only mount of the commit.
    vst_as(&repo, &["mount", "-q", "--background", ro.to_str().unwrap()]);
    assert_eq!(sh_as(&ro, "cat b.txt src/main.c"), "two\ncode\nedited\n");
    vst_as(&repo, &["umount", ro.to_str().unwrap()]);
    assert!(!mounted(&ro));
    // The background server lets go of the repository once unmounted.
    wait_until("the user's mount servers exit", || {
        fs::File::open(repo.join(".vst/lock")).unwrap().try_lock().is_ok()
    });
}

#[test]
fn merge_inside_the_mount_goes_to_the_daemon() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    // A branch that changed another file, and one that conflicts.
    ok(repo, &["branch", "other"]);
    ok(repo, &["branch", "clash"]);
    ok(repo, &["switch", "-q", "other"]);
    fs::write(repo.join("theirs.txt"), b"theirs\n").unwrap();
    ok(repo, &["commit", "-q", "-m", "theirs"]);
    ok(repo, &["switch", "-q", "clash"]);
    fs::write(repo.join("keep.txt"), b"clash\n").unwrap();
    ok(repo, &["commit", "-q", "-m", "clash"]);
    ok(repo, &["switch", "-q", "main"]);
    let Some(child) = mount(repo, mnt, &[]) else { return };
    fs::write(mnt.join("keep.txt"), b"ours\n").unwrap();
    // Uncommitted changes first refuse a merge.
    let refused = vst(mnt, &["merge", "other"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("uncommitted"));
    ok(mnt, &["commit", "-q", "-m", "ours"]);
    let merged: serde_json::Value =
        serde_json::from_str(&ok(mnt, &["--json", "merge", "other"])).unwrap();
    assert_eq!(merged["status"], "merged", "{merged}");
    assert_eq!(fs::read(mnt.join("theirs.txt")).unwrap(), b"theirs\n");
    assert_eq!(fs::read(mnt.join("keep.txt")).unwrap(), b"ours\n");
    assert!(ok(mnt, &["status"]).contains("clean"));
    let log: serde_json::Value =
        serde_json::from_str(&ok(repo, &["--json", "log", "-n", "1"])).unwrap();
    assert_eq!(log[0]["parents"].as_array().unwrap().len(), 2);
    // A merge with conflicts is refused, naming them, and changes nothing.
    let refused = vst(mnt, &["merge", "clash"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("keep.txt"));
    assert_eq!(fs::read(mnt.join("keep.txt")).unwrap(), b"ours\n");
    unmount(repo, mnt, child);
}

/// Runs `program args` in `dir`, requiring success; returns stdout.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run here ({e}): .ci/run installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn everyday_programs_work_inside_the_mount() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    // git: a repository inside the work tree, committed and checked.
    run_in(mnt, "git", &["init", "-q", "g"]);
    let g = mnt.join("g");
    fs::write(g.join("a.txt"), b"a\n").unwrap();
    fs::create_dir(g.join("sub")).unwrap();
    fs::write(g.join("sub/b.txt"), b"b\n").unwrap();
    run_in(&g, "git", &["add", "-A"]);
    run_in(&g, "git", &["commit", "-q", "-m", "in the mount"]);
    assert_eq!(run_in(&g, "git", &["status", "--porcelain"]), "");
    run_in(&g, "git", &["fsck", "--no-progress"]);
    // tar: an archive made outside, unpacked inside, identical.
    let outside = tempfile::tempdir().unwrap();
    let src = outside.path().join("src");
    fs::create_dir_all(src.join("deep/er")).unwrap();
    fs::write(src.join("deep/er/x"), vec![7u8; 100_000]).unwrap();
    fs::write(src.join("y"), b"y\n").unwrap();
    std::os::unix::fs::symlink("y", src.join("l")).unwrap();
    let archive = outside.path().join("a.tar");
    run_in(outside.path(), "tar", &["cf", archive.to_str().unwrap(), "src"]);
    fs::create_dir(mnt.join("untar")).unwrap();
    run_in(&mnt.join("untar"), "tar", &["xf", archive.to_str().unwrap()]);
    assert_eq!(snapshot(&mnt.join("untar/src")), snapshot(&src));
    // rsync -a, and cp -al (hard links).
    run_in(mnt, "rsync", &["-a", &format!("{}/", src.display()), "synced/"]);
    assert_eq!(snapshot(&mnt.join("synced")), snapshot(&src));
    run_in(mnt, "cp", &["-al", "synced", "linked"]);
    assert_eq!(snapshot(&mnt.join("linked")), snapshot(&src));
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&mnt.join("linked/y")), ino(&mnt.join("synced/y")));
    // SQLite in WAL mode.
    let db = mnt.join("db.sqlite");
    let sql = "PRAGMA journal_mode=WAL; CREATE TABLE t(x); \
               WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<1000) \
               INSERT INTO t SELECT i FROM n; SELECT count(*), sum(x) FROM t;";
    let said = run_in(mnt, "sqlite3", &[db.to_str().unwrap(), sql]);
    assert!(said.ends_with("1000|500500\n"), "{said}");
    run_in(mnt, "sqlite3", &[db.to_str().unwrap(), "PRAGMA integrity_check;"]);
    // cargo: a small crate built inside.
    run_in(mnt, "cargo", &["new", "-q", "--vcs", "none", "small"]);
    run_in(&mnt.join("small"), "cargo", &["build", "-q", "--offline"]);
    assert!(run_in(&mnt.join("small"), "cargo", &["run", "-q", "--offline"]).contains("Hello"));
    // And all of it commits and reads back from the store.
    ok(mnt, &["commit", "-q", "-m", "programs"]);
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy");
    ok(repo, &["checkout", "HEAD", "--into", copy.to_str().unwrap()]);
    assert_eq!(snapshot(&copy.join("untar/src")), snapshot(&src));
    assert_eq!(fs::read(copy.join("g/sub/b.txt")).unwrap(), b"b\n");
    ok(repo, &["fsck", "--read-data"]);
    unmount(repo, mnt, child);
}

#[test]
fn mount_and_umount_speak_json() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let parse = |text: String| -> serde_json::Value { serde_json::from_str(&text).unwrap() };
    let at = mnt.to_str().unwrap();
    let said = parse(ok(repo, &["--json", "mount", "--write", "--background", at]));
    assert_eq!(said["mounted"], true, "{said}");
    assert_eq!(said["write"], true, "{said}");
    assert!(mounted(mnt));
    let unmounted = parse(ok(repo, &["--json", "umount", at]));
    assert_eq!(unmounted["unmounted"].as_str(), Some(at));
    assert!(!mounted(mnt));
}

/// Inside the mount, commands that change refs only (branches, tags) work:
/// the daemon holds the repository's writer lock, which they do not need.
#[test]
fn branches_and_tags_are_made_inside_the_mount() {
    let Some((_one, repo, mnt)) = setup() else { return };
    let (repo, mnt) = (repo.path(), mnt.path());
    let Some(child) = mount(repo, mnt, &[]) else { return };
    ok(mnt, &["branch", "side"]);
    ok(mnt, &["tag", "v1"]);
    assert!(ok(mnt, &["branch"]).contains("  side "));
    assert!(ok(mnt, &["tag"]).starts_with("v1 "));
    let nothing: serde_json::Value =
        serde_json::from_str(&ok(mnt, &["--json", "commit", "-m", "none"])).unwrap();
    assert_eq!(nothing["reason"], "nothing to commit", "{nothing}");
    assert_eq!(nothing["hashed"], 0, "{nothing}");
    fs::write(mnt.join("fresh.txt"), b"written\n").unwrap();
    let made: serde_json::Value =
        serde_json::from_str(&ok(mnt, &["--json", "commit", "-m", "one"])).unwrap();
    assert!(made["hashed"].is_u64() && made["commit"].is_string(), "{made}");
    ok(mnt, &["tag", "-d", "v1"]);
    ok(mnt, &["branch", "-d", "side"]);
    assert!(!ok(mnt, &["branch"]).contains("side"));
    unmount(repo, mnt, child);
}
