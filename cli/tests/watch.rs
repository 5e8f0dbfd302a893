//! `vst watch`: with the daemon running, `status`, `diff` and `commit`
//! answer as a full scan would; the daemon follows commits and checkouts
//! made around it; killing it at any moment leaves the CLI correct.

use std::fs;
use std::path::Path;
use std::process::Command;

mod support;

use support::{ok, vst};

/// The changes `status --json` lists (without the notes around them).
fn changes(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "status"];
    args.extend_from_slice(extra);
    let value: serde_json::Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    value["changes"].clone()
}

/// A work tree with a few committed files and a daemon watching it.
fn watched() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(root, &["init", "-q"]);
    for i in 0..20 {
        fs::create_dir_all(root.join(format!("d{}", i % 4))).unwrap();
        fs::write(root.join(format!("d{}/f{i}", i % 4)), format!("{i}\n")).unwrap();
    }
    ok(root, &["commit", "-q", "-m", "base"]);
    ok(root, &["watch", "--background", "-q"]);
    dir
}

/// Stops the daemon when a test ends, however it ends.
struct Daemon<'a>(&'a Path);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = vst(self.0, &["watch", "--stop", "-q"]);
    }
}

fn daemon_pid(root: &Path) -> Option<u32> {
    let out = vst(root, &["--json", "watch", "--status"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.success(), value["running"] == true, "exit status and JSON agree");
    value["pid"].as_u64().map(|p| p as u32)
}

#[test]
fn with_the_daemon_status_diff_and_commit_answer_as_a_scan() {
    let dir = watched();
    let root = dir.path();
    let _daemon = Daemon(root);
    assert!(daemon_pid(root).is_some());
    let steps: &[&dyn Fn(&Path)] = &[
        &|r| fs::write(r.join("d1/f1"), b"edited\n").unwrap(),
        &|r| {
            fs::create_dir_all(r.join("new/deep/er")).unwrap();
            fs::write(r.join("new/deep/er/x"), b"x\n").unwrap();
        },
        &|r| fs::rename(r.join("d2"), r.join("new/d2")).unwrap(),
        &|r| fs::remove_file(r.join("d3/f3")).unwrap(),
        &|r| std::os::unix::fs::symlink("d0", r.join("link")).unwrap(),
        &|r| fs::remove_dir_all(r.join("new/deep")).unwrap(),
        &|r| fs::write(r.join(".vstignore"), b"d0/\n").unwrap(),
        &|r| fs::write(r.join("d0/f4"), b"ignored now\n").unwrap(),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(root);
        let watched = changes(root, &[]);
        assert_eq!(watched, changes(root, &["--scan"]), "step {i}");
        assert_eq!(ok(root, &["diff"]), ok(root, &["diff", "--scan"]), "step {i}");
        if i % 3 == 2 {
            // A commit through the daemon, then nothing is left.
            let commit = ok(root, &["commit", "-m", &format!("step {i}")]);
            assert_eq!(commit.trim().len(), 64, "{commit}");
            assert_eq!(changes(root, &["--scan"]), serde_json::json!([]), "step {i}");
            assert_eq!(changes(root, &[]), serde_json::json!([]), "step {i}");
        }
    }
    // The daemon served them, each from what its watcher saw (a whole
    // scan is noted in the answer).
    let info: serde_json::Value =
        serde_json::from_str(&ok(root, &["--json", "watch", "--status"])).unwrap();
    assert!(info["served"].as_u64().unwrap() >= 2 * steps.len() as u64, "{info}");
    let answer: serde_json::Value = serde_json::from_str(&ok(root, &["--json", "status"])).unwrap();
    assert!(answer.get("full_scan").is_none(), "{answer}");
    ok(root, &["watch", "--stop"]);
    assert!(daemon_pid(root).is_none());
    assert!(!root.join(".vst/watch.sock").exists());
}

#[test]
fn the_daemon_follows_commits_and_checkouts_made_around_it() {
    let dir = watched();
    let root = dir.path();
    let _daemon = Daemon(root);
    fs::write(root.join("d1/f1"), b"one\n").unwrap();
    assert_eq!(changes(root, &[]).as_array().unwrap().len(), 1);
    // Committed without the daemon: it reads the new index.
    ok(root, &["commit", "--scan", "-q", "-m", "around"]);
    assert_eq!(changes(root, &[]), serde_json::json!([]));
    // A checkout without the daemon (it does not go through it).
    ok(root, &["checkout", "-q", "HEAD~1"]);
    assert_eq!(fs::read(root.join("d1/f1")).unwrap(), b"1\n");
    assert_eq!(changes(root, &[]), serde_json::json!([]));
    fs::write(root.join("d1/f5"), b"five\n").unwrap();
    assert_eq!(changes(root, &[]), changes(root, &["--scan"]));
    assert_eq!(changes(root, &[]).as_array().unwrap().len(), 1);
}

#[test]
fn a_second_daemon_is_refused() {
    let dir = watched();
    let root = dir.path();
    let _daemon = Daemon(root);
    let out = vst(root, &["watch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already runs"));
}

/// SIGKILL, and waits until the process is gone: reaped, or a zombie
/// whose other threads have all exited (the leader turns zombie first,
/// while the last thread out may still hold its files and locks).
fn kill(pid: u32) {
    let status = Command::new("kill").arg("-9").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
    let gone = || match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let zombie = stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'));
            let threads = fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
            zombie && threads <= 1
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !gone() {
        assert!(std::time::Instant::now() < deadline, "process {pid} survived SIGKILL");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn killing_the_daemon_at_any_moment_leaves_the_cli_correct() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(root, &["init", "-q"]);
    fs::write(root.join("f"), b"0\n").unwrap();
    ok(root, &["commit", "-q", "-m", "base"]);
    for round in 0..12u64 {
        ok(root, &["watch", "--background", "-q"]);
        let pid = daemon_pid(root).unwrap();
        let content = format!("round {round}\n");
        fs::write(root.join("f"), &content).unwrap();
        fs::write(root.join(format!("new{round}")), b"new\n").unwrap();
        // A commit asked of the daemon while it is killed, at a point
        // that moves through the request from round to round.
        let commit = Command::new(env!("CARGO_BIN_EXE_vst"))
            .current_dir(root)
            .env("VST_AUTHOR", "tester")
            .args(["commit", "-q", "-m", &format!("round {round}")])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(round * 400));
        kill(pid);
        let out = commit.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        // Killed between moving the branch and saving the index, the
        // daemon leaves what a killed `vst commit` leaves: the branch
        // ahead of the index, which the CLI explains and checkout mends.
        if !out.status.success() {
            assert!(said.contains("vst checkout HEAD"), "round {round}: {said}");
        }
        // (Killed after answering, before saving the index, it leaves the
        // same: the status says so.)
        let answer: serde_json::Value =
            serde_json::from_str(&ok(root, &["--json", "status", "--scan"])).unwrap();
        if !out.status.success() || answer.get("head").is_some() {
            ok(root, &["checkout", "-q", "HEAD"]);
        }
        // Whatever happened, the CLI scans by itself and is right: the
        // edit is committed or still a change, never lost, never wrong.
        let status = changes(root, &[]);
        assert_eq!(status, changes(root, &["--scan"]), "round {round}");
        let committed = ok(root, &["cat", "HEAD:f"]) == content;
        assert_eq!(status == serde_json::json!([]), committed, "round {round}: {status}");
        if !committed {
            ok(root, &["commit", "-q", "-m", "after the kill"]);
        }
        ok(root, &["fsck"]);
        // A dead daemon's socket is left behind; it is never trusted.
        assert!(daemon_pid(root).is_none());
    }
}
