//! End-to-end tests: they run the `vst` binary.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn vst(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(dir)
        .env("VST_AUTHOR", "tester")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `vst` and requires success; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vst(dir, args);
    assert!(out.status.success(), "vst {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `vst`, requires failure, returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = vst(dir, args);
    assert!(!out.status.success(), "vst {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>, bool),
    Link(Vec<u8>),
    Dir,
}

/// Everything under `root` but `.vst`, byte for byte and bit for bit.
fn tree(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    fn walk(dir: &Path, prefix: &[u8], out: &mut BTreeMap<Vec<u8>, Entry>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if prefix.is_empty() && e.file_name() == ".vst" {
                continue;
            }
            let mut key = prefix.to_vec();
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(e.file_name().as_bytes());
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let entry = if meta.file_type().is_symlink() {
                Entry::Link(fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec())
            } else if meta.is_dir() {
                walk(&e.path(), &key, out);
                Entry::Dir
            } else {
                Entry::File(fs::read(e.path()).unwrap(), meta.permissions().mode() & 0o100 != 0)
            };
            out.insert(key, entry);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, b"", &mut out);
    out
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["init", "-q"]);
    dir
}

#[test]
fn a_large_tree_round_trips_through_commit_and_checkout() {
    let dir = repo();
    let root = dir.path();
    for i in 0..5200u32 {
        let d = root.join(format!("d{}/e{}/f{}", i % 7, i % 13, i % 5));
        fs::create_dir_all(&d).unwrap();
        let file = d.join(format!("file{i}.txt"));
        fs::write(&file, format!("content {i}\n").repeat((i % 40) as usize + 1)).unwrap();
        if i % 97 == 0 {
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/e0", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::create_dir_all(root.join("empty/nested")).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"not UTF-8 name").unwrap();
    let id = ok(root, &["commit", "-m", "import"]);
    assert_eq!(id.trim().len(), 64);
    let out = root.join("out");
    ok(root, &["checkout", "HEAD", "--into", out.to_str().unwrap()]);
    let mut original = tree(root);
    original.retain(|k, _| !k.starts_with(b"out"));
    assert!(original.len() > 5200);
    assert_eq!(tree(&out), original, "checkout --into equals the committed tree");
    assert!(ok(root, &["fsck", "--read-data"]).starts_with("ok:"));
    // cat and ls take paths that are not UTF-8.
    let cat = Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(root)
        .arg("cat")
        .arg(OsStr::from_bytes(b"HEAD:latin1-\xe9t\xe9"))
        .output()
        .unwrap();
    assert!(cat.status.success(), "{}", String::from_utf8_lossy(&cat.stderr));
    assert_eq!(cat.stdout, b"not UTF-8 name");
}

#[test]
fn status_reports_each_kind_of_change_and_commit_says_when_there_is_none() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("keep"), b"1").unwrap();
    fs::write(root.join("modify"), b"1").unwrap();
    fs::write(root.join("delete"), b"1").unwrap();
    fs::write(root.join("retype"), b"1").unwrap();
    ok(root, &["commit", "-m", "one"]);
    assert!(ok(root, &["commit", "-m", "again"]).contains("nothing to commit"));
    fs::write(root.join("modify"), b"2").unwrap();
    fs::remove_file(root.join("delete")).unwrap();
    fs::remove_file(root.join("retype")).unwrap();
    fs::create_dir(root.join("retype")).unwrap();
    fs::write(root.join("added"), b"new").unwrap();
    assert_eq!(ok(root, &["status"]), "On branch main\nA added\nD delete\nM modify\nT retype\n");
    assert_eq!(ok(root, &["status", "--short"]), "A added\nD delete\nM modify\nT retype\n");
    let json: serde_json::Value = serde_json::from_str(&ok(root, &["status", "--json"])).unwrap();
    assert_eq!(json["changes"].as_array().unwrap().len(), 4);
    ok(root, &["commit", "-m", "two"]);
    assert!(ok(root, &["status"]).contains("clean"));
    let log: serde_json::Value = serde_json::from_str(&ok(root, &["log", "--json"])).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[0]["message"], "two");
    assert_eq!(log[0]["author"], "tester");
    assert_eq!(ok(root, &["cat", "HEAD~1:modify"]), "1");
    assert_eq!(ok(root, &["cat", "HEAD:modify"]), "2");
}

#[test]
fn an_edit_right_after_a_commit_is_never_missed() {
    let dir = repo();
    let root = dir.path();
    let file = root.join("f");
    for round in 0..20u8 {
        // Same size every time, written as fast as possible after the
        // commit: the racy-timestamp case.
        fs::write(&file, [b'a' + round; 8]).unwrap();
        ok(root, &["commit", "-q", "-m", "r"]);
        assert_eq!(ok(root, &["cat", "HEAD:f"]).as_bytes(), [b'a' + round; 8], "round {round}");
    }
}

#[test]
fn vstignore_is_respected_and_dot_vst_is_never_stored() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join(".vstignore"), b"*.log\nbuild/\n").unwrap();
    fs::write(root.join("a.log"), b"x").unwrap();
    fs::create_dir(root.join("build")).unwrap();
    fs::write(root.join("build/out"), b"x").unwrap();
    fs::write(root.join("src"), b"x").unwrap();
    ok(root, &["commit", "-m", "one"]);
    let listing = ok(root, &["ls", "HEAD"]);
    assert!(listing.contains(".vstignore") && listing.contains("src"), "{listing}");
    assert!(
        !listing.contains("a.log") && !listing.contains("build") && !listing.contains(".vst "),
        "{listing}"
    );
}

#[test]
fn branches_and_checkout_in_place() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"one").unwrap();
    ok(root, &["commit", "-m", "one"]);
    ok(root, &["branch", "old"]);
    fs::write(root.join("f"), b"two").unwrap();
    fs::write(root.join("g"), b"new").unwrap();
    ok(root, &["commit", "-m", "two"]);
    let branches = ok(root, &["branch"]);
    assert!(branches.contains("* main") && branches.contains("  old"), "{branches}");
    // Uncommitted changes block a checkout.
    fs::write(root.join("f"), b"local").unwrap();
    assert!(fails(root, &["checkout", "old"]).contains("uncommitted"));
    assert_eq!(fs::read(root.join("f")).unwrap(), b"local", "nothing was touched");
    ok(root, &["checkout", "old", "--force"]);
    assert_eq!(fs::read(root.join("f")).unwrap(), b"one");
    assert!(!root.join("g").exists());
    assert!(ok(root, &["branch"]).contains("* old"));
    assert!(ok(root, &["status"]).contains("clean"));
    assert!(fails(root, &["branch", "-d", "old"]).contains("current branch"));
    ok(root, &["checkout", "main"]);
    assert_eq!(fs::read(root.join("g")).unwrap(), b"new");
    ok(root, &["branch", "-d", "old"]);
    ok(root, &["gc"]);
    assert!(ok(root, &["fsck", "--read-data"]).starts_with("ok:"));
}

#[test]
fn errors_say_what_is_wrong_and_exit_non_zero() {
    let dir = repo();
    let root = dir.path();
    assert!(fails(root, &["log"]).contains("no commit yet"));
    fs::write(root.join("f"), b"x").unwrap();
    ok(root, &["commit", "-m", "one"]);
    assert!(fails(root, &["cat", "nosuchbranch:f"]).contains("unknown revision"));
    assert!(fails(root, &["cat", "HEAD~5:f"]).contains("does not exist"));
    assert!(fails(root, &["cat", "HEAD:missing"]).contains("no such file"));
    let id = ok(root, &["log", "--oneline", "-n", "1"]);
    assert!(fails(root, &["show", &id[..3]]).contains("at least 4 hex digits"));
    assert!(ok(root, &["show", &id[..4]]).contains("one"));
    let outside = tempfile::tempdir().unwrap();
    assert!(fails(outside.path(), &["status"]).contains("vst init"));
    assert!(fails(root, &["init"]).contains("already"));
    let out = root.join("busy");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("x"), b"mine").unwrap();
    assert!(
        fails(root, &["checkout", "HEAD", "--into", "busy"]).contains("not an empty directory")
    );
    assert_eq!(fs::read(out.join("x")).unwrap(), b"mine");
}

/// A commit waits while another command (a commit, a GC) holds the
/// store, and fails at once while a long-lived writer (a writable mount's
/// daemon, which says so in the lock file) does.
#[test]
fn a_commit_waits_for_a_brief_writer_but_not_for_a_long_lived_one() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"x").unwrap();
    let lock = root.join(".vst/lock");
    fs::write(&lock, b"long-lived\n").unwrap();
    let held = fs::OpenOptions::new().write(true).open(&lock).unwrap();
    held.lock().unwrap();
    let err = fails(root, &["commit", "-q", "-m", "m"]);
    assert!(err.contains("for as long as it runs"), "{err}");
    // The same lock, held by a brief writer: released while the commit
    // waits (it waits up to ten seconds).
    fs::write(&lock, b"").unwrap();
    let commit = Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(root)
        .args(["commit", "-q", "-m", "m"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(held);
    let out = commit.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ok(root, &["status"]).contains("clean"));
}

#[test]
fn concurrent_commits_serialize_or_fail_clearly_and_lose_nothing() {
    let dir = repo();
    let root = dir.path().to_owned();
    for round in 0..5 {
        fs::write(root.join(format!("f{round}")), format!("{round}")).unwrap();
        let a = Command::new(env!("CARGO_BIN_EXE_vst"))
            .current_dir(&root)
            .args(["commit", "-q", "-m", "a"])
            .spawn()
            .unwrap();
        let b = Command::new(env!("CARGO_BIN_EXE_vst"))
            .current_dir(&root)
            .args(["commit", "-q", "-m", "b"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        if !b.status.success() {
            let err = String::from_utf8_lossy(&b.stderr);
            assert!(
                err.contains("in use by another process") || err.contains("someone else"),
                "{err}"
            );
        }
        assert!(a.status.success() || b.status.success());
        assert!(ok(&root, &["fsck", "--read-data"]).starts_with("ok:"), "round {round}");
    }
    assert!(ok(&root, &["status"]).contains("clean"));
}

#[test]
fn diff_shows_patches_stats_and_statuses_and_switch_changes_branch() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"a\nb\nc\n").unwrap();
    fs::write(root.join("gone"), b"x\n").unwrap();
    ok(root, &["commit", "-m", "one"]);
    fs::write(root.join("f"), b"a\nB\nc\nd\n").unwrap();
    fs::remove_file(root.join("gone")).unwrap();
    fs::write(root.join("new"), b"n\n").unwrap();
    let patch = ok(root, &["diff"]);
    assert!(patch.contains("-b\n+B\n") && patch.contains("+d\n"), "{patch}");
    assert_eq!(ok(root, &["diff", "--name-status"]), "M\tf\nD\tgone\nA\tnew\n");
    let stat = ok(root, &["diff", "--stat"]);
    assert!(stat.contains("3 files changed, 3 insertions(+), 2 deletions(-)"), "{stat}");
    let json: serde_json::Value = serde_json::from_str(&ok(root, &["--json", "diff"])).unwrap();
    assert_eq!(json[1], serde_json::json!({ "path": "gone", "status": "deleted" }));
    ok(root, &["commit", "-m", "two"]);
    assert_eq!(ok(root, &["diff", "HEAD~1", "HEAD", "--name-status"]), "M\tf\nD\tgone\nA\tnew\n");
    assert_eq!(ok(root, &["diff"]), "", "clean: no diff");
    let json: serde_json::Value = serde_json::from_str(&ok(root, &["show", "--json"])).unwrap();
    assert_eq!(json["message"], "two");
    ok(root, &["branch", "old", "HEAD~1"]);
    ok(root, &["switch", "old"]);
    assert_eq!(fs::read(root.join("f")).unwrap(), b"a\nb\nc\n");
    assert!(ok(root, &["branch"]).contains("* old"));
    assert!(fails(root, &["switch", "nosuch"]).contains("no branch named"));
}

#[test]
fn a_path_outside_the_repository_is_refused() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"x").unwrap();
    ok(root, &["commit", "-m", "one"]);
    for spec in ["HEAD:../f", "HEAD:a/../../f", "HEAD:./f"] {
        let err = fails(root, &["cat", spec]);
        assert!(err.contains("bad path"), "{spec}: {err}");
    }
}

/// A full disk, for real: a small ext4 image on a loop device. Needs root;
/// in CI (`CI` set) not being able to mount is a failure, elsewhere the
/// test says loudly that it did not run.
#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let sh = |cmd: &str| {
        Command::new("sh").arg("-c").arg(cmd).output().map(|o| o.status.success()).unwrap_or(false)
    };
    let mounted = sh(&format!(
        "truncate -s 24M {img} && mkfs.ext4 -q -F -m 0 {img} && mount -o loop {img} {mnt}",
        img = img.display(),
        mnt = mnt.display()
    ));
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a loop ext4 image (root, e2fsprogs)"
        );
        eprintln!(
            "\n*** SKIPPED a_full_disk_is_a_clear_error_and_loses_nothing: cannot mount a loop ext4 image (needs root) ***\n"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let root = mnt.join("repo");
    fs::create_dir(&root).unwrap();
    ok(&root, &["init", "-q"]);
    fs::write(root.join("small"), b"committed").unwrap();
    let first = ok(&root, &["commit", "-q", "-m", "one"]);
    // New content to commit, then fill the disk.
    // Incompressible, so that it cannot fit in the slack of blocks the pack
    // already has.
    let payload = vst_cas::sim::noise(1, 3_000_000);
    fs::write(root.join("big"), &payload).unwrap();
    {
        use std::io::Write;
        let mut filler = fs::File::create(mnt.join("filler")).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        while filler.write_all(&chunk).is_ok() {}
        let _ = filler.sync_all();
    }
    let err = fails(&root, &["commit", "-m", "two"]);
    assert!(err.to_lowercase().contains("space"), "the error says the disk is full: {err}");
    // Nothing was lost and nothing half-written is visible.
    assert_eq!(ok(&root, &["log", "--json"]).matches("\"commit\"").count(), 1);
    assert!(ok(&root, &["log"]).contains(first.trim()));
    assert!(ok(&root, &["fsck", "--read-data"]).starts_with("ok:"));
    // With space again, the same commit goes through.
    fs::remove_file(mnt.join("filler")).unwrap();
    ok(&root, &["commit", "-q", "-m", "two"]);
    assert!(
        vst(&root, &["cat", "HEAD:big"]).stdout == payload,
        "the content committed after the disk had room"
    );
    assert!(ok(&root, &["fsck", "--read-data"]).starts_with("ok:"));
}

/// An unreadable file fails the commit with its name, and the repository
/// stays as it was. Root reads everything, so as root the test runs `vst`
/// as `nobody` (setpriv) on a directory given to it.
#[test]
fn an_unreadable_file_fails_the_commit_and_changes_nothing() {
    use std::os::unix::fs::chown;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let as_root =
        Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let run = |args: &[&str]| -> Output {
        let mut cmd = if as_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_vst"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_vst"))
        };
        cmd.current_dir(&root).env("VST_AUTHOR", "tester").args(args).output().unwrap()
    };
    if as_root {
        chown(&root, Some(65534), Some(65534)).unwrap();
    }
    assert!(run(&["init", "-q"]).status.success());
    fs::write(root.join("ok"), b"fine").unwrap();
    fs::write(root.join("secret"), b"hidden").unwrap();
    for p in ["ok", "secret"] {
        if as_root {
            chown(root.join(p), Some(65534), Some(65534)).unwrap();
        }
    }
    let first = run(&["commit", "-q", "-m", "one"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    fs::write(root.join("ok"), b"changed").unwrap();
    fs::write(root.join("secret2"), b"x").unwrap();
    fs::set_permissions(root.join("secret2"), fs::Permissions::from_mode(0o000)).unwrap();
    if as_root {
        chown(root.join("secret2"), Some(65534), Some(65534)).unwrap();
    }
    let out = run(&["commit", "-m", "two"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a commit with an unreadable file must fail");
    assert!(err.contains("secret2") && err.to_lowercase().contains("permission denied"), "{err}");
    let log = run(&["log", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).matches("\"commit\"").count(),
        1,
        "no commit was made"
    );
    assert!(run(&["fsck", "--read-data"]).status.success());
}

#[test]
fn checkout_keeps_untracked_and_ignored_files_and_refuses_to_overwrite_them() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join(".vstignore"), b"target/\n*.log\n").unwrap();
    fs::create_dir_all(root.join("crate/src")).unwrap();
    fs::write(root.join("crate/src/lib.rs"), b"code").unwrap();
    fs::write(root.join("app.log"), b"tracked before it was ignored").unwrap();
    fs::write(root.join(".vstignore"), b"target/\n").unwrap();
    ok(root, &["commit", "-m", "with crate and app.log"]);
    ok(root, &["branch", "old"]);
    fs::remove_dir_all(root.join("crate")).unwrap();
    fs::remove_file(root.join("app.log")).unwrap();
    fs::write(root.join(".vstignore"), b"target/\n*.log\n").unwrap();
    ok(root, &["commit", "-m", "without"]);
    // Ignored and untracked files that no checkout should touch.
    fs::create_dir_all(root.join("crate/target")).unwrap();
    fs::write(root.join("crate/target/app"), b"built").unwrap();
    fs::write(root.join("notes.txt"), b"mine").unwrap();
    // An ignored file where the old commit has a tracked one.
    fs::write(root.join("app.log"), b"today's log").unwrap();
    let err = fails(root, &["checkout", "old"]);
    assert!(err.contains("app.log"), "{err}");
    assert_eq!(fs::read(root.join("app.log")).unwrap(), b"today's log", "refused: nothing touched");
    ok(root, &["checkout", "old", "--force"]);
    assert_eq!(fs::read(root.join("app.log")).unwrap(), b"tracked before it was ignored");
    assert_eq!(fs::read(root.join("crate/src/lib.rs")).unwrap(), b"code");
    assert_eq!(
        fs::read(root.join("notes.txt")).unwrap(),
        b"mine",
        "--force keeps unrelated untracked files"
    );
    assert_eq!(fs::read(root.join("crate/target/app")).unwrap(), b"built");
    ok(root, &["checkout", "main", "--force"]);
    assert!(!root.join("crate/src").exists());
    assert_eq!(
        fs::read(root.join("crate/target/app")).unwrap(),
        b"built",
        "ignored output survives"
    );
    assert_eq!(fs::read(root.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn checkout_head_stays_on_the_branch_and_an_ancestor_detaches() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"1").unwrap();
    ok(root, &["commit", "-m", "one"]);
    fs::write(root.join("f"), b"2").unwrap();
    ok(root, &["commit", "-m", "two"]);
    fs::write(root.join("f"), b"local edit").unwrap();
    ok(root, &["checkout", "HEAD", "--force"]);
    assert_eq!(fs::read(root.join("f")).unwrap(), b"2", "--force HEAD discards the edit");
    assert!(ok(root, &["branch"]).contains("* main"), "still on main");
    let out = vst(root, &["checkout", "HEAD~1"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("detached"));
    assert_eq!(fs::read(root.join("f")).unwrap(), b"1");
    assert_eq!(ok(root, &["cat", "main~1~0:f"]), "1");
    ok(root, &["switch", "main"]);
    assert_eq!(fs::read(root.join("f")).unwrap(), b"2");
}

#[test]
fn review_fixes_for_flags_branches_and_nested_repositories() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"1").unwrap();
    ok(root, &["commit", "-m", "one"]);
    // -C to a missing directory fails instead of using the repository here.
    assert!(fails(root, &["-C", "no-such-dir", "status"]).contains("no such directory"));
    // -C and init's own DIR compose: `-C a init` creates a/.vst, and
    // `-C a init b` creates a/b/.vst.
    fs::create_dir(root.join("a")).unwrap();
    ok(root, &["-C", "a", "init", "-q"]);
    assert!(root.join("a/.vst").is_dir() && !root.join("a/a").exists());
    ok(root, &["-C", "a", "init", "-q", "b"]);
    assert!(root.join("a/b/.vst").is_dir());
    fs::remove_dir_all(root.join("a")).unwrap();
    // Creating a branch that exists says so.
    ok(root, &["branch", "b"]);
    assert!(fails(root, &["branch", "b"]).contains("already exists"));
    // A nested repository is not part of the outer one.
    fs::create_dir(root.join("sub")).unwrap();
    ok(&root.join("sub"), &["init", "-q"]);
    fs::write(root.join("sub/x"), b"x").unwrap();
    ok(root, &["commit", "-q", "-m", "with sub"]);
    let listing = ok(root, &["ls", "HEAD:sub"]);
    assert!(listing.contains(" x") && !listing.contains(".vst"), "{listing}");
    // One vocabulary for statuses in JSON.
    let show: serde_json::Value = serde_json::from_str(&ok(root, &["show", "--json"])).unwrap();
    assert!(show["changes"].as_array().unwrap().iter().all(|c| c["status"] == "added"), "{show}");
    // A closed pipe is not an error.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(root)
        .args(["log"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn revisions_flags_and_fsck_failures() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("f"), b"1").unwrap();
    let first = ok(root, &["commit", "-q", "-m", "one"]).trim().to_owned();
    fs::write(root.join("f"), b"2").unwrap();
    ok(root, &["commit", "-q", "-m", "two"]);
    // A unique prefix resolves; a too-short or unknown one is refused.
    assert_eq!(ok(root, &["cat", &format!("{}:f", &first[..10])]), "1");
    assert!(fails(root, &["cat", "zzzz:f"]).contains("unknown revision"));
    // log -n, --allow-empty, --quiet.
    let log: serde_json::Value =
        serde_json::from_str(&ok(root, &["log", "-n", "1", "--json"])).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert!(ok(root, &["commit", "-m", "none"]).contains("nothing to commit"));
    ok(root, &["commit", "-q", "--allow-empty", "-m", "empty"]);
    let log: serde_json::Value = serde_json::from_str(&ok(root, &["log", "--json"])).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 3);
    assert_eq!(ok(root, &["status", "--quiet"]), "");
    // diff against one revision compares it with the working directory.
    assert_eq!(ok(root, &["diff", &first, "--name-status"]), "M\tf\n");
    // gc --dry-run removes nothing.
    assert!(ok(root, &["gc", "--dry-run"]).contains("would remove"));
    // A FIFO is skipped with a warning and does not stop the commit.
    assert!(Command::new("mkfifo").arg(root.join("pipe")).status().unwrap().success());
    fs::write(root.join("g"), b"g").unwrap();
    let out = vst(root, &["commit", "-m", "with a fifo around"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipping"));
    fs::remove_file(root.join("pipe")).unwrap();
    // A damaged pack makes fsck --read-data fail with a non-zero exit.
    let packs = root.join(".vst/packs");
    let pack = fs::read_dir(&packs).unwrap().next().unwrap().unwrap().path();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&pack, bytes).unwrap();
    let out = vst(root, &["fsck", "--read-data"]);
    assert!(!out.status.success(), "fsck must fail on a damaged pack");
}

#[test]
fn nested_vstignore_files_and_negation() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join(".vstignore"), b"*.tmp\n").unwrap();
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    // The deeper file re-includes one pattern the root excludes, and
    // excludes something of its own.
    fs::write(root.join("sub/.vstignore"), b"!keep.tmp\n*.bak\n").unwrap();
    for f in [
        "a.tmp",
        "sub/keep.tmp",
        "sub/drop.tmp",
        "sub/x.bak",
        "sub/deeper/y.bak",
        "sub/deeper/z.txt",
        "top.bak",
    ] {
        fs::write(root.join(f), b"x").unwrap();
    }
    ok(root, &["commit", "-m", "one"]);
    let mut listed: Vec<String> = Vec::new();
    for d in ["HEAD", "HEAD:sub", "HEAD:sub/deeper"] {
        let prefix = d.split_once(':').map_or(String::new(), |(_, p)| format!("{p}/"));
        let json: serde_json::Value =
            serde_json::from_str(&ok(root, &["ls", d, "--json"])).unwrap();
        for e in json.as_array().unwrap() {
            listed.push(format!("{prefix}{}", e["name"].as_str().unwrap()));
        }
    }
    listed.sort();
    assert_eq!(
        listed,
        [
            ".vstignore",
            "sub",
            "sub/.vstignore",
            "sub/deeper",
            "sub/deeper/z.txt",
            "sub/keep.tmp",
            "top.bak"
        ]
    );
}

#[test]
fn the_index_is_a_cache_losing_or_damaging_it_costs_only_time() {
    let dir = repo();
    let root = dir.path();
    fs::create_dir_all(root.join("a/b")).unwrap();
    for i in 0..20 {
        fs::write(root.join(format!("a/b/f{i}")), format!("{i}")).unwrap();
    }
    fs::write(root.join("top"), b"top").unwrap();
    ok(root, &["commit", "-q", "-m", "one"]);
    let index = root.join(".vst/worktree");
    let first_index = fs::read(&index).unwrap();
    // The pack store's own index, next to it, is never overwritten.
    let pack_index = || fs::read(root.join(".vst/index")).unwrap()[..8].to_vec();
    assert_eq!(pack_index(), vst_cas::pack::INDEX_MAGIC);

    // A second commit, then the first commit's index put back: the index
    // says the files are at the first commit while HEAD is at the second
    // (what a writable mount's commit leaves): status says so and shows
    // the edit against the files' commit, commit refuses, and a checkout
    // of HEAD, finding the edit already as HEAD has it, brings the index
    // there without a conflict. Nothing is lost or reported again.
    fs::write(root.join("a/b/f3"), b"three").unwrap();
    ok(root, &["commit", "-q", "-m", "two"]);
    fs::write(&index, &first_index).unwrap();
    let out = vst(root, &["status", "-s"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "M a/b/f3\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("vst checkout HEAD"));
    assert!(fails(root, &["commit", "-m", "none"]).contains("vst checkout HEAD"));
    ok(root, &["checkout", "HEAD"]);
    assert_eq!(ok(root, &["status", "-s"]), "");
    assert!(ok(root, &["commit", "-m", "none"]).contains("nothing to commit"));

    // Damaged (one byte flipped) or gone: the same answers.
    let mut bytes = fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&index, &bytes).unwrap();
    fs::write(root.join("a/b/f4"), b"four").unwrap();
    assert_eq!(ok(root, &["status", "-s"]), "M a/b/f4\n");
    fs::remove_file(&index).unwrap();
    assert_eq!(ok(root, &["status", "-s"]), "M a/b/f4\n");
    ok(root, &["commit", "-q", "-m", "three"]);
    assert_eq!(ok(root, &["cat", "HEAD:a/b/f4"]), "four");
    assert_eq!(ok(root, &["cat", "HEAD:a/b/f3"]), "three");
    assert_eq!(ok(root, &["diff", "HEAD~2", "--name-status"]), "M\ta/b/f3\nM\ta/b/f4\n");

    // Deleting a directory, replacing a file with a directory, and the
    // reverse, in one commit: the commit holds exactly the disk.
    fs::remove_dir_all(root.join("a/b")).unwrap();
    fs::remove_file(root.join("top")).unwrap();
    fs::create_dir(root.join("top")).unwrap();
    fs::write(root.join("top/inner"), b"in").unwrap();
    fs::write(root.join("a/b"), b"now a file").unwrap();
    let status = ok(root, &["status"]);
    assert!(status.contains("T a/b\n") && status.contains("D a/b/f0\n"), "{status}");
    assert!(status.contains("T top\n") && status.contains("A top/inner\n"), "{status}");
    ok(root, &["commit", "-q", "-m", "four"]);
    assert_eq!(ok(root, &["status", "-s"]), "");
    let out = tempfile::tempdir().unwrap();
    ok(root, &["checkout", "HEAD", "--into", out.path().join("c").to_str().unwrap()]);
    assert_eq!(tree(&out.path().join("c")), tree(root));
    assert_eq!(pack_index(), vst_cas::pack::INDEX_MAGIC);
}

#[test]
fn an_ambiguous_commit_prefix_is_refused_with_the_count() {
    let dir = repo();
    let root = dir.path();
    // Commit until two commit ids share their first four hex digits (about
    // 300 commits on average; 4,000 without a match is out of reach).
    let mut seen = std::collections::HashSet::new();
    let prefix = (0..4000)
        .find_map(|i| {
            let id = ok(root, &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
            let prefix = id.trim()[..4].to_owned();
            (!seen.insert(prefix.clone())).then_some(prefix)
        })
        .expect("two of 4,000 commit ids share a 4-digit prefix");
    let err = fails(root, &["log", "-n", "1", &prefix]);
    assert!(err.contains("ambiguous") && err.contains("give more digits"), "{err}");
}

#[test]
fn checkout_force_never_deletes_through_a_symlinked_directory() {
    let dir = repo();
    let root = dir.path();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.join("a")).unwrap();
    fs::write(root.join("a/x"), b"x").unwrap();
    ok(root, &["commit", "-q", "-m", "base"]);
    ok(root, &["branch", "base"]);
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/one"), b"1").unwrap();
    fs::write(root.join("a/c"), b"c").unwrap();
    ok(root, &["commit", "-q", "-m", "target"]);
    ok(root, &["branch", "target"]);
    ok(root, &["switch", "base"]);
    // The attack: `a` replaced by a link to a directory holding files
    // named like the target's paths.
    fs::create_dir_all(elsewhere.path().join("b")).unwrap();
    fs::write(elsewhere.path().join("b/one"), b"precious").unwrap();
    fs::write(elsewhere.path().join("c"), b"precious").unwrap();
    fs::remove_dir_all(root.join("a")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), root.join("a")).unwrap();
    let refused = fails(root, &["checkout", "target"]);
    assert!(refused.contains("--force"), "{refused}");
    ok(root, &["checkout", "target", "--force"]);
    assert_eq!(fs::read(elsewhere.path().join("b/one")).unwrap(), b"precious");
    assert_eq!(fs::read(elsewhere.path().join("c")).unwrap(), b"precious");
    assert!(fs::symlink_metadata(root.join("a")).unwrap().is_dir(), "the link is replaced");
    assert_eq!(fs::read(root.join("a/b/one")).unwrap(), b"1");
    assert!(ok(root, &["status"]).contains("clean"));
}

#[test]
fn checkout_in_place_when_a_path_changes_kind() {
    let dir = repo();
    let root = dir.path();
    fs::write(root.join("k"), b"a file").unwrap();
    fs::create_dir_all(root.join("l")).unwrap();
    fs::write(root.join("l/inner"), b"in a directory").unwrap();
    ok(root, &["commit", "-q", "-m", "files"]);
    ok(root, &["branch", "files"]);
    fs::remove_file(root.join("k")).unwrap();
    fs::create_dir_all(root.join("k")).unwrap();
    fs::write(root.join("k/inner"), b"now a directory").unwrap();
    fs::remove_dir_all(root.join("l")).unwrap();
    std::os::unix::fs::symlink("k", root.join("l")).unwrap();
    ok(root, &["commit", "-q", "-m", "dirs"]);
    ok(root, &["branch", "dirs"]);
    let at_dirs = tree(root);
    ok(root, &["switch", "files"]);
    assert_eq!(fs::read(root.join("k")).unwrap(), b"a file");
    assert_eq!(fs::read(root.join("l/inner")).unwrap(), b"in a directory");
    ok(root, &["checkout", "dirs"]);
    assert_eq!(tree(root), at_dirs);
    assert!(ok(root, &["status"]).contains("clean"));
}

#[test]
fn identity_comes_from_config_and_the_environment_overrides_it() {
    let dir = repo();
    let root = dir.path();
    let home = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vst"));
        cmd.current_dir(root).env_remove("VST_AUTHOR").env("HOME", home.path());
        cmd.env_remove("XDG_CONFIG_HOME")
            .env_remove("VST_AUTHOR_NAME")
            .env_remove("VST_AUTHOR_EMAIL");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let author = |envs: &[(&str, &str)]| {
        let out = run(envs, &["--json", "log", "-n", "1"]);
        let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        log[0]["author"].as_str().unwrap().to_owned()
    };
    // No identity: the login name, and a hint said once.
    fs::write(root.join("f"), "1").unwrap();
    let first = run(&[("USER", "login")], &["commit", "-q", "-m", "1"]);
    assert!(String::from_utf8_lossy(&first.stderr).contains("vst config --global user.name"));
    assert_eq!(author(&[]), "login");
    fs::write(root.join("f"), "2").unwrap();
    let second = run(&[("USER", "login")], &["commit", "-q", "-m", "2"]);
    assert!(second.stderr.is_empty(), "the hint is said once");
    // The user's file, then the repository's over it.
    run(&[], &["config", "--global", "user.name", "Global Name"]);
    run(&[], &["config", "--global", "user.email", "g@example.com"]);
    run(&[], &["config", "user.name", "Repo Name"]);
    assert!(home.path().join(".config/vst/config").exists());
    fs::write(root.join("f"), "3").unwrap();
    run(&[], &["commit", "-q", "-m", "3"]);
    assert_eq!(author(&[]), "Repo Name <g@example.com>");
    assert_eq!(
        String::from_utf8(run(&[], &["config", "user.name"]).stdout).unwrap(),
        "Repo Name\n"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&run(&[], &["--json", "config", "--list"]).stdout).unwrap();
    assert_eq!(list["user.email"], "g@example.com");
    // The environment wins.
    fs::write(root.join("f"), "4").unwrap();
    run(
        &[("VST_AUTHOR_NAME", "Env"), ("VST_AUTHOR_EMAIL", "e@example.com")],
        &["commit", "-q", "-m", "4"],
    );
    assert_eq!(author(&[]), "Env <e@example.com>");
    run(&[], &["config", "--unset", "user.name"]);
    fs::write(root.join("f"), "5").unwrap();
    run(&[], &["commit", "-q", "-m", "5"]);
    assert_eq!(author(&[]), "Global Name <g@example.com>");
    assert!(!vst(root, &["config", "nodot", "x"]).status.success());
}

#[test]
fn restore_reset_log_of_a_path_and_show_of_a_file() {
    let dir = repo();
    let r = dir.path();
    fs::create_dir(r.join("d")).unwrap();
    fs::write(r.join("d/a"), "1\n").unwrap();
    fs::write(r.join("b"), "1\n").unwrap();
    let one = ok(r, &["commit", "-m", "one"]).trim().to_owned();
    fs::write(r.join("d/a"), "2\n").unwrap();
    let two = ok(r, &["commit", "-m", "two"]).trim().to_owned();
    fs::write(r.join("b"), "3\n").unwrap();
    let three = ok(r, &["commit", "-m", "three"]).trim().to_owned();
    // log: --oneline, and only the commits that changed a path.
    let short = |id: &str| id[..12].to_owned();
    assert_eq!(
        ok(r, &["log", "--oneline"]),
        format!("{} three\n{} two\n{} one\n", short(&three), short(&two), short(&one))
    );
    assert_eq!(
        ok(r, &["log", "--oneline", "--", "d"]),
        format!("{} two\n{} one\n", short(&two), short(&one))
    );
    assert_eq!(
        ok(r, &["log", "--oneline", "b"]),
        format!("{} three\n{} one\n", short(&three), short(&one))
    );
    // show REV:PATH: a file's content, a directory's listing.
    assert_eq!(ok(r, &["show", "HEAD~2:d/a"]), "1\n");
    assert!(ok(r, &["show", "HEAD:d"]).contains(" a\n"));
    assert!(!vst(r, &["show", "HEAD:nothing"]).status.success());
    // restore: local changes at the paths go, a deleted file comes back,
    // nothing else moves.
    fs::write(r.join("d/a"), "local\n").unwrap();
    fs::remove_file(r.join("b")).unwrap();
    fs::write(r.join("untouched"), "mine\n").unwrap();
    ok(r, &["restore", "d", "b"]);
    assert_eq!(fs::read_to_string(r.join("d/a")).unwrap(), "2\n");
    assert_eq!(fs::read_to_string(r.join("b")).unwrap(), "3\n");
    assert_eq!(fs::read_to_string(r.join("untouched")).unwrap(), "mine\n");
    ok(r, &["restore", "--source", "HEAD~2", "d/a"]);
    assert_eq!(fs::read_to_string(r.join("d/a")).unwrap(), "1\n");
    let status: serde_json::Value = serde_json::from_str(&ok(r, &["--json", "status"])).unwrap();
    assert_eq!(
        status["changes"],
        serde_json::json!([{"path": "d/a", "status": "modified"}, {"path": "untouched", "status": "added"}])
    );
    // diff -- PATH shows only that path.
    let diff: serde_json::Value =
        serde_json::from_str(&ok(r, &["--json", "diff", "--", "d"])).unwrap();
    assert_eq!(diff, serde_json::json!([{"path": "d/a", "status": "modified"}]));
    // reset: the branch moves, the files stay (their differences show);
    // --hard makes them the commit's.
    ok(r, &["reset", "HEAD~1"]);
    assert_eq!(ok(r, &["log", "-n", "1", "--oneline"]), format!("{} two\n", short(&two)));
    assert_eq!(fs::read_to_string(r.join("b")).unwrap(), "3\n");
    let status: serde_json::Value = serde_json::from_str(&ok(r, &["--json", "status"])).unwrap();
    assert!(status["changes"].as_array().unwrap().iter().any(|c| c["path"] == "b"), "{status}");
    ok(r, &["reset", "--hard", &three]);
    assert_eq!(fs::read_to_string(r.join("d/a")).unwrap(), "2\n");
    let status: serde_json::Value = serde_json::from_str(&ok(r, &["--json", "status"])).unwrap();
    assert_eq!(status["changes"], serde_json::json!([{"path": "untouched", "status": "added"}]));
    assert_eq!(ok(r, &["log", "-n", "1", "--oneline"]), format!("{} three\n", short(&three)));
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let bash = ok(dir.path(), &["completions", "bash"]);
    assert!(bash.contains("complete") && bash.contains("merge") && bash.contains("restore"));
    let check = Command::new("bash").arg("-n").arg("-c").arg(&bash).status().unwrap();
    assert!(check.success(), "the bash script parses");
    assert!(ok(dir.path(), &["completions", "zsh"]).contains("#compdef vst"));
    let man = ok(dir.path(), &["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH vst 1"), "{}", &man[..200.min(man.len())]);
    assert!(man.contains("restore"));
}

#[test]
fn diff_speaks_gits_patch_format() {
    let dir = repo();
    let r = dir.path();
    fs::write(r.join("f"), "a\nb\n").unwrap();
    fs::write(r.join("run"), "x\n").unwrap();
    fs::write(r.join("gone"), "g\n").unwrap();
    ok(r, &["commit", "-q", "-m", "one"]);
    assert_eq!(vst(r, &["diff", "--exit-code"]).status.code(), Some(0));
    fs::write(r.join("f"), "a\nB\n").unwrap();
    fs::set_permissions(r.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(r.join("gone")).unwrap();
    std::os::unix::fs::symlink("f", r.join("link")).unwrap();
    fs::write(r.join("bin"), b"\0\x01").unwrap();
    assert_eq!(
        ok(r, &["diff"]),
        "diff --git a/bin b/bin\nnew file mode 100644\nBinary files /dev/null and b/bin differ\n\
         diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n\
         diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-g\n\
         diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+f\n\\ No newline at end of file\n\
         diff --git a/run b/run\nold mode 100644\nnew mode 100755\n"
    );
    assert_eq!(
        ok(r, &["diff", "--stat"]),
        " bin  | Bin\n f    |   2 +-\n gone |   1 -\n link |   1 +\n run  |   0 \n \
         5 files changed, 2 insertions(+), 2 deletions(-)\n"
    );
    assert_eq!(vst(r, &["diff", "--exit-code"]).status.code(), Some(1));
}

#[test]
fn status_and_show_print_what_a_git_user_reads() {
    let dir = repo();
    let r = dir.path();
    fs::create_dir_all(r.join("src/deep")).unwrap();
    fs::write(r.join("src/deep/a"), "a\n").unwrap();
    fs::write(r.join("top"), "t\n").unwrap();
    ok(r, &["commit", "-q", "-m", "one"]);
    fs::create_dir_all(r.join("new/inner")).unwrap();
    fs::write(r.join("new/inner/f"), "f\n").unwrap();
    fs::create_dir(r.join("empty")).unwrap();
    fs::write(r.join("src/deep/a"), "changed\n").unwrap();
    // Files, not each new directory again; an empty directory still shows.
    assert_eq!(ok(r, &["status", "-s"]), "A empty\nA new/inner/f\nM src/deep/a\n");
    // From a subdirectory, paths are relative to it.
    assert_eq!(ok(&r.join("src"), &["status", "-s"]), "A ../empty\nA ../new/inner/f\nM deep/a\n");
    // JSON keeps every path, from the root.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&r.join("src"), &["--json", "status"])).unwrap();
    assert_eq!(json["changes"].as_array().unwrap().len(), 5, "{json}");
    ok(r, &["commit", "-q", "-m", "two"]);
    // show: the date, and the status letters.
    let show = ok(r, &["show"]);
    assert!(show.contains("\ndate   20"), "{show}");
    assert!(show.ends_with("A empty\nA new/inner/f\nM src/deep/a\n"), "{show}");
}

#[test]
fn every_command_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = vst(r, &all);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
    };
    json(&["init"]);
    fs::write(r.join("f"), "1\n").unwrap();
    json(&["commit", "-m", "one"]);
    json(&["commit", "-m", "nothing"]);
    fs::write(r.join("f"), "2\n").unwrap();
    for args in [
        &["status"][..],
        &["diff"],
        &["diff", "--stat"],
        &["restore", "f"],
        &["log"],
        &["log", "--oneline"],
        &["ls", "HEAD"],
        &["cat", "HEAD:f"],
        &["show"],
        &["show", "HEAD:f"],
        &["branch"],
        &["branch", "other"],
        &["branch", "-r"],
        &["switch", "other"],
        &["checkout", "main"],
        &["checkout", "HEAD", "--into", "copy"],
        &["merge", "other"],
        &["reset", "HEAD"],
        &["branch", "-d", "other"],
        &["tag", "v1"],
        &["tag"],
        &["tag", "-f", "v1", "HEAD"],
        &["tag", "-d", "v1"],
        &["fsck"],
        &["gc", "--dry-run"],
        &["config", "user.name", "J"],
        &["config", "user.name"],
        &["config", "--list"],
        &["remote", "add", "origin", "s3://bucket/prefix"],
        &["remote", "list"],
        &["remote", "remove", "origin"],
        &["watch", "--background"],
        &["watch", "--status"],
        &["watch", "--stop"],
        &["completions", "bash"],
        &["man"],
    ] {
        json(args);
    }
}

#[test]
fn branch_marks_a_detached_head_and_keeps_unmerged_work_without_capital_d() {
    let dir = repo();
    let r = dir.path();
    fs::write(r.join("f"), "1\n").unwrap();
    ok(r, &["commit", "-q", "-m", "one"]);
    ok(r, &["branch", "side"]);
    ok(r, &["switch", "-q", "side"]);
    fs::write(r.join("f"), "2\n").unwrap();
    ok(r, &["commit", "-q", "-m", "two"]);
    ok(r, &["switch", "-q", "main"]);
    let refused = fails(r, &["branch", "-d", "side"]);
    assert!(refused.contains("not merged") && refused.contains("-D"), "{refused}");
    assert!(ok(r, &["branch"]).contains("  side "));
    ok(r, &["branch", "-D", "side"]);
    assert!(!ok(r, &["branch"]).contains("side"));
    ok(r, &["checkout", "-q", "HEAD~0"]);
    let id = ok(r, &["log", "--oneline", "-n", "1"]);
    let listing = ok(r, &["branch"]);
    assert!(listing.starts_with(&format!("* (HEAD detached at {})\n", &id[..12])), "{listing}");
    assert!(listing.contains("  main "), "{listing}");
    let json: serde_json::Value = serde_json::from_str(&ok(r, &["--json", "branch"])).unwrap();
    assert_eq!(json["detached"].as_str().map(|s| &s[..12]), Some(&id[..12]));
}

#[test]
fn tags_name_commits_that_gc_keeps_and_refuse_to_move() {
    let dir = repo();
    let r = dir.path();
    fs::write(r.join("f"), "1\n").unwrap();
    ok(r, &["commit", "-q", "-m", "one"]);
    ok(r, &["tag", "v1"]);
    // The first tag marks the format: a vst that knows no tags would
    // collect what only a tag reaches, and must refuse the repository.
    assert!(fs::read_to_string(r.join(".vst/format")).unwrap().lines().any(|l| l == "tags"));
    ok(r, &["branch", "side"]);
    ok(r, &["switch", "-q", "side"]);
    fs::write(r.join("f"), "2\n").unwrap();
    ok(r, &["commit", "-q", "-m", "two on side"]);
    ok(r, &["tag", "v2"]);
    ok(r, &["switch", "-q", "main"]);
    // A tag is a revision; a branch of the same name is refused both ways.
    assert_eq!(ok(r, &["cat", "v1:f"]), "1\n");
    assert_eq!(ok(r, &["cat", "v2:f"]), "2\n");
    assert!(fails(r, &["branch", "v1"]).contains("a tag named v1 exists"));
    assert!(fails(r, &["tag", "main"]).contains("a branch named main exists"));
    // A tag does not move unless forced.
    let refused = fails(r, &["tag", "v1", "side"]);
    assert!(refused.contains("already exists") && refused.contains("-f"), "{refused}");
    assert_eq!(ok(r, &["cat", "v1:f"]), "1\n");
    // The only name of "two on side" is now v2: gc keeps it, fsck checks it.
    ok(r, &["branch", "-D", "side"]);
    ok(r, &["gc", "--grace-hours", "0"]);
    assert_eq!(ok(r, &["cat", "v2:f"]), "2\n");
    assert!(ok(r, &["log", "v2"]).contains("two on side"));
    ok(r, &["fsck"]);
    let listing = ok(r, &["tag"]);
    assert!(listing.starts_with("v1 ") && listing.contains(" one\nv2 "), "{listing}");
    assert!(listing.ends_with(" two on side\n"), "{listing}");
    let json: serde_json::Value = serde_json::from_str(&ok(r, &["--json", "tag"])).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");
    // Forced, it moves; deleted, it is gone and gc may take what it held.
    assert!(ok(r, &["tag", "-f", "v2", "v1"]).contains("moved tag v2"));
    assert_eq!(ok(r, &["cat", "v2:f"]), "1\n");
    assert!(ok(r, &["tag", "-d", "v1"]).contains("deleted tag v1"));
    assert!(fails(r, &["cat", "v1:f"]).contains("unknown revision"));
    assert!(fails(r, &["tag", "-d", "v1"]).contains("no tag named v1"));
}

#[test]
fn log_names_the_revision_it_cannot_reach() {
    let dir = repo();
    let r = dir.path();
    for i in 0..3 {
        fs::write(r.join("f"), format!("{i}\n")).unwrap();
        ok(r, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    let said = fails(r, &["log", "HEAD~50"]);
    assert!(said.contains("HEAD~50") && said.contains("only 2"), "{said}");
}

/// Progress is drawn on a terminal (a pseudo-terminal from `script`), never
/// when piped or with `--quiet`. The bar's first draw does not wait for
/// its refresh interval, so this holds however slow the machine.
#[test]
fn progress_shows_on_a_terminal_and_never_when_piped() {
    let dir = repo();
    let r = dir.path();
    let write_all = |round: usize| {
        for i in 0..1500 {
            fs::write(r.join(format!("f{i}")), format!("{round} {i}\n")).unwrap();
        }
    };
    let on_a_terminal = |args: &str| -> String {
        let out = Command::new("script")
            .current_dir(r)
            .env("VST_AUTHOR", "tester")
            .args(["-q", "-e", "-c", &format!("{} {args}", env!("CARGO_BIN_EXE_vst")), "/dev/null"])
            .output()
            .expect("`script` (util-linux) runs commands on a pseudo-terminal for this test");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    write_all(1);
    let shown = on_a_terminal("commit -m one");
    assert!(shown.contains("hashing [") && shown.contains("/1500 files"), "{shown:?}");
    write_all(2);
    assert!(!on_a_terminal("--quiet commit -m two").contains("files"), "--quiet draws nothing");
    write_all(3);
    let piped = vst(r, &["commit", "-m", "three"]);
    assert!(piped.status.success());
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("files"), "nothing when piped");
    assert!(!String::from_utf8_lossy(&piped.stdout).contains("files"), "nothing when piped");
}

/// A new file above snapshot.max-new-file-size is left out of a commit and
/// listed, with or without the watch daemon, until `--allow-large`; a
/// tracked file that grows is committed.
#[test]
fn new_files_above_the_size_limit_wait_for_allow_large() {
    let dir = repo();
    let r = dir.path();
    fs::write(r.join("small"), "s\n").unwrap();
    ok(r, &["commit", "-q", "-m", "one"]);
    ok(r, &["config", "snapshot.max-new-file-size", "2K"]);
    for daemon in [false, true] {
        if daemon {
            ok(r, &["watch", "--background"]);
        }
        let name = format!("core.{daemon}");
        fs::write(r.join(&name), vec![0u8; 4096]).unwrap();
        fs::write(r.join("small"), vec![u8::from(daemon) + 1; 4096]).unwrap();
        let status = vst(r, &["status", "-s"]);
        assert_eq!(String::from_utf8_lossy(&status.stdout), "M small\n", "daemon: {daemon}");
        // A diff shows what a commit would take.
        assert_eq!(ok(r, &["diff", "--name-status"]), "M\tsmall\n", "daemon: {daemon}");
        let warned = String::from_utf8_lossy(&status.stderr).into_owned();
        assert!(warned.contains(&format!("{name} (4.00 KiB) would be left out")), "{warned}");
        let json: serde_json::Value =
            serde_json::from_str(&ok(r, &["--json", "commit", "-m", "grown"])).unwrap();
        assert_eq!(json["too_large"][0]["path"], name.as_str(), "{json}");
        assert_eq!(json["too_large"][0]["size"], 4096, "{json}");
        assert!(fails(r, &["cat", &format!("HEAD:{name}")]).contains("no such file"), "left out");
        assert_eq!(ok(r, &["cat", "HEAD:small"]).len(), 4096, "a tracked file grows as it likes");
        let said = ok(r, &["commit", "-m", "nothing but large"]);
        assert!(said.contains("nothing to commit: 1 new files left out"), "{said}");
        ok(r, &["commit", "-q", "-m", "large", "--allow-large"]);
        assert_eq!(ok(r, &["cat", &format!("HEAD:{name}")]).len(), 4096);
        if daemon {
            ok(r, &["watch", "--stop"]);
        }
    }
    ok(r, &["config", "snapshot.max-new-file-size", "lots"]);
    let refused = fails(r, &["status"]);
    assert!(
        refused.contains("snapshot.max-new-file-size") && refused.contains("100M"),
        "{refused}"
    );
}
