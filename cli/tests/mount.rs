//! End-to-end tests of `vst mount` and `vst umount`: they run the binary.
//!
//! They need to mount FUSE: where that is impossible they fail when `CI`
//! is set and warn otherwise, like the library's.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One test at a time: they count server processes.
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
    assert!(out.status.success(), "vst {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = vst(dir, args);
    assert!(!out.status.success(), "vst {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether these tests can run here; if not, says why (loudly) or, in CI
/// where mounting must work, fails.
fn can_run(dir: &Path) -> bool {
    assert!(vst(dir, &["mount", "--help"]).status.success(), "`vst mount` exists");
    if !Path::new("/dev/fuse").exists() {
        assert!(std::env::var_os("CI").is_none(), "/dev/fuse is missing in CI");
        eprintln!("\n!!!!!!!! WARNING: /dev/fuse IS MISSING: CLI MOUNT TESTS SKIPPED !!!!!!!!\n");
        return false;
    }
    true
}

fn mounted(p: &Path) -> bool {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_owned());
    vst_fuse::mount_points().unwrap().contains(&p)
}

/// A repository with two commits on main and a branch, and an empty
/// directory outside it to mount on.
fn setup() -> (tempfile::TempDir, tempfile::TempDir) {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    ok(root, &["init", "-q"]);
    fs::create_dir_all(root.join("src/deep")).unwrap();
    fs::write(root.join("src/deep/a.txt"), b"first\n").unwrap();
    ok(root, &["commit", "-q", "-m", "one"]);
    fs::write(root.join("src/deep/a.txt"), b"second\n").unwrap();
    std::os::unix::fs::symlink("deep/a.txt", root.join("src/link")).unwrap();
    ok(root, &["commit", "-q", "-m", "two"]);
    ok(root, &["branch", "topic", "HEAD~1"]);
    (repo, tempfile::tempdir().unwrap())
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is still running (a zombie is not).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn background_mount_and_umount() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (repo, mnt) = setup();
    let (root, at) = (repo.path(), mnt.path().to_str().unwrap());
    if !can_run(root) {
        return;
    }
    let out = ok(root, &["mount", at, "--background"]);
    assert!(mounted(mnt.path()), "live when the command returns: {out}");
    let pid = server_pid(&out);
    assert_eq!(fs::read(mnt.path().join("src/deep/a.txt")).unwrap(), b"second\n");
    assert_eq!(fs::read_link(mnt.path().join("src/link")).unwrap(), Path::new("deep/a.txt"));
    // Mounting again on a live mount fails, and says why.
    assert!(fails(root, &["mount", at]).contains("already a vst mount"));
    // Busy: refused, still mounted.
    let busy = Command::new("sleep")
        .arg("30")
        .current_dir(mnt.path().join("src"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(fails(root, &["umount", at]).contains("busy"));
    assert!(mounted(mnt.path()));
    let mut busy = busy;
    busy.kill().unwrap();
    busy.wait().unwrap();
    ok(root, &["umount", at]);
    assert!(!mounted(mnt.path()));
    wait_until("the server exits", || !running(pid));
    assert!(fails(root, &["umount", at]).contains("not a vst mount"));
}

#[test]
fn foreground_mount_stops_on_sigterm_and_sigint() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (repo, mnt) = setup();
    let root = repo.path();
    if !can_run(root) {
        return;
    }
    for signal in ["-TERM", "-INT"] {
        let mut server = Command::new(env!("CARGO_BIN_EXE_vst"))
            .current_dir(root)
            .args(["mount", "--rev", "HEAD~1"])
            .arg(mnt.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("mounted", || mounted(mnt.path()));
        assert_eq!(fs::read(mnt.path().join("src/deep/a.txt")).unwrap(), b"first\n");
        let kill = Command::new("kill").arg(signal).arg(server.id().to_string()).status();
        assert!(kill.unwrap().success());
        let status = server.wait().unwrap();
        assert!(status.success(), "{signal}: {status}");
        assert!(!mounted(mnt.path()), "{signal} unmounts");
    }
}

#[test]
fn all_view_and_errors_before_mounting() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (repo, mnt) = setup();
    let (root, at) = (repo.path(), mnt.path().to_str().unwrap());
    if !can_run(root) {
        return;
    }
    // Nothing is mounted by a command that fails.
    assert!(fails(root, &["mount", at, "--rev", "nosuch"]).contains("unknown revision"));
    let missing = mnt.path().join("missing");
    assert!(fails(root, &["mount", missing.to_str().unwrap()]).contains("does not exist"));
    let file = mnt.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(fails(root, &["mount", file.to_str().unwrap()]).contains("not a directory"));
    assert!(fails(root, &["mount", at]).contains("not empty"));
    fs::remove_file(&file).unwrap();
    // Inside the working tree, a commit would snapshot the mount.
    fs::create_dir(root.join("mnt")).unwrap();
    assert!(fails(root, &["mount", "mnt"]).contains("inside the working tree"));
    fs::remove_dir(root.join("mnt")).unwrap();
    assert!(!mounted(mnt.path()));
    // --all: every branch, every commit.
    ok(root, &["mount", at, "--all", "--background", "-q"]);
    let names = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(mnt.path()), ["branches", "commits"]);
    assert_eq!(names(&mnt.path().join("branches")), ["main", "topic"]);
    assert_eq!(names(&mnt.path().join("commits")).len(), 2);
    let topic = fs::read(mnt.path().join("branches/topic/src/deep/a.txt")).unwrap();
    assert_eq!(topic, b"first\n");
    ok(root, &["umount", at]);
    assert!(!mounted(mnt.path()));
}

/// Unmounts what it names when dropped, so that a failing test leaves no
/// server behind.
struct Unmount<'a>(&'a Path, Vec<&'a Path>);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        for at in &self.1 {
            if mounted(at) {
                let _ = vst(self.0, &["umount", at.to_str().unwrap()]);
            }
        }
    }
}

/// The pack files process `pid` holds open that were deleted.
fn deleted_packs_open(pid: u32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains("/packs/") && p.ends_with("(deleted)"))
        .collect()
}

fn server_pid(out: &str) -> u32 {
    out.split("server process ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no server pid in {out:?}"))
}

#[test]
fn a_mount_moves_to_the_packs_gc_wrote_when_they_hold_its_commit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (repo, mnt) = setup();
    let root = repo.path();
    if !can_run(root) {
        return;
    }
    let kept: Vec<Vec<u8>> = (0..4).map(|i| vst_cas::sim::noise(i, 200_000)).collect();
    for (i, content) in kept.iter().enumerate() {
        fs::write(root.join(format!("kept{i}")), content).unwrap();
    }
    ok(root, &["commit", "-q", "-m", "kept"]);
    // A branch of garbage, mounted, then deleted: GC collects it.
    ok(root, &["branch", "junk"]);
    ok(root, &["switch", "-q", "junk"]);
    let junk = vst_cas::sim::noise(99, 400_000);
    fs::write(root.join("junk"), &junk).unwrap();
    ok(root, &["commit", "-q", "-m", "junk"]);
    ok(root, &["switch", "-q", "main"]);
    let other = tempfile::tempdir().unwrap();
    let log = root.join("junk-mount.log");
    let (at, at_junk) = (mnt.path(), other.path());
    let _unmount = Unmount(root, vec![at, at_junk]);
    let main_pid = server_pid(&ok(root, &["mount", at.to_str().unwrap(), "--background"]));
    let junk_pid = server_pid(&ok(
        root,
        &[
            "mount",
            at_junk.to_str().unwrap(),
            "--rev",
            "junk",
            "--background",
            "--log",
            log.to_str().unwrap(),
        ],
    ));
    ok(root, &["branch", "-D", "junk"]);
    assert_eq!(fs::read(at.join("kept0")).unwrap(), kept[0]);
    assert_eq!(fs::read(at_junk.join("kept0")).unwrap(), kept[0]);

    let gc = ok(root, &["gc", "--grace-hours", "0"]);
    assert!(gc.contains("removed"), "{gc}");

    // Files not read before reach the server, which moves to the new
    // packs: nothing holds the old ones.
    for (i, content) in kept.iter().enumerate().skip(1) {
        assert_eq!(&fs::read(at.join(format!("kept{i}"))).unwrap(), content);
    }
    assert_eq!(deleted_packs_open(main_pid), Vec::<String>::new());
    // The new packs do not hold the junk commit: that mount keeps reading
    // the old ones, and says so.
    assert_eq!(fs::read(at_junk.join("junk")).unwrap(), junk);
    assert_eq!(&fs::read(at_junk.join("kept1")).unwrap(), &kept[1]);
    assert_eq!(deleted_packs_open(junk_pid).len(), 1);
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("still reading the packs opened before"), "{logged}");

    // And a second GC (the index replaced again) moves it no further.
    ok(root, &["gc", "--grace-hours", "0"]);
    assert_eq!(&fs::read(at.join("src/deep/a.txt")).unwrap(), b"second\n");
    assert_eq!(deleted_packs_open(main_pid), Vec::<String>::new());
    for at in [at, at_junk] {
        ok(root, &["umount", at.to_str().unwrap()]);
    }
    wait_until("the servers exit", || !running(main_pid) && !running(junk_pid));
}
