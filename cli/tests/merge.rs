//! `vst merge`: fast-forwards, clean merges (a line merge of text both
//! sides changed), conflicts left marked for `vst commit` to finish, and
//! `--abort`.

use std::fs;
use std::path::Path;

mod support;

use support::{ok, vst};

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&vst(dir, &all).stdout).unwrap()
}

/// A repository on `main` with a base commit and a branch `other` made
/// from it; `ours` and `theirs` then edit each side and commit.
fn diverged(ours: impl Fn(&Path), theirs: impl Fn(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    ok(r, &["init", "-q"]);
    fs::write(r.join("text"), "1\n2\n3\n4\n5\n6\n7\n").unwrap();
    fs::write(r.join("gone"), "both keep it?\n").unwrap();
    fs::create_dir(r.join("d")).unwrap();
    fs::write(r.join("d/f"), "f\n").unwrap();
    ok(r, &["commit", "-q", "-m", "base"]);
    ok(r, &["branch", "other"]);
    theirs_on(r, "other", &theirs);
    ours(r);
    ok(r, &["commit", "-q", "-m", "ours"]);
    dir
}

fn theirs_on(r: &Path, branch: &str, theirs: &impl Fn(&Path)) {
    ok(r, &["switch", "-q", branch]);
    theirs(r);
    ok(r, &["commit", "-q", "-m", "theirs"]);
    ok(r, &["switch", "-q", "main"]);
}

fn parents(r: &Path) -> usize {
    json(r, &["log", "-n", "1"])[0]["parents"].as_array().unwrap().len()
}

#[test]
fn a_clean_merge_commits_with_two_parents_and_touches_only_what_differs() {
    let dir = diverged(
        |r| {
            fs::write(r.join("text"), "ONE\n2\n3\n4\n5\n6\n7\n").unwrap();
            fs::write(r.join("ours-only"), "o\n").unwrap();
        },
        |r| {
            fs::write(r.join("text"), "1\n2\n3\n4\n5\n6\nSEVEN\n").unwrap();
            fs::write(r.join("d/g"), "theirs\n").unwrap();
            fs::remove_file(r.join("gone")).unwrap();
        },
    );
    let r = dir.path();
    // A local edit the merge does not touch stays.
    fs::write(r.join("ours-only"), "edited, uncommitted\n").unwrap();
    let answer = json(r, &["merge", "other"]);
    assert_eq!(answer["status"], "merged", "{answer}");
    assert_eq!(fs::read_to_string(r.join("text")).unwrap(), "ONE\n2\n3\n4\n5\n6\nSEVEN\n");
    assert_eq!(fs::read_to_string(r.join("d/g")).unwrap(), "theirs\n");
    assert!(!r.join("gone").exists());
    assert_eq!(fs::read_to_string(r.join("ours-only")).unwrap(), "edited, uncommitted\n");
    assert_eq!(parents(r), 2);
    let status = json(r, &["status"]);
    assert_eq!(
        status["changes"],
        serde_json::json!([{ "path": "ours-only", "status": "modified" }])
    );
    assert!(ok(r, &["log", "-n", "1"]).contains("merge  "));
    // Merging again: nothing to do.
    assert_eq!(json(r, &["merge", "other"])["status"], "up to date");
    ok(r, &["fsck", "--read-data"]);
}

#[test]
fn a_branch_behind_fast_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    ok(r, &["init", "-q"]);
    fs::write(r.join("f"), "1\n").unwrap();
    ok(r, &["commit", "-q", "-m", "base"]);
    ok(r, &["branch", "ahead"]);
    theirs_on(r, "ahead", &|r: &Path| fs::write(r.join("f"), "2\n").unwrap());
    assert_eq!(json(r, &["merge", "ahead"])["status"], "fast-forward");
    assert_eq!(fs::read_to_string(r.join("f")).unwrap(), "2\n");
    assert_eq!(parents(r), 1);
    assert_eq!(json(r, &["status"])["changes"], serde_json::json!([]));
}

#[test]
fn conflicts_are_marked_and_the_commit_finishes_the_merge() {
    let dir = diverged(
        |r| {
            fs::write(r.join("text"), "1\n2\nOURS\n4\n5\n6\n7\n").unwrap();
            fs::write(r.join("bin"), b"\0ours").unwrap();
            fs::write(r.join("gone"), "changed by us\n").unwrap();
            fs::remove_dir_all(r.join("d")).unwrap();
            fs::write(r.join("d"), "a file now\n").unwrap();
        },
        |r| {
            fs::write(r.join("text"), "1\n2\nTHEIRS\n4\n5\n6\nseven\n").unwrap();
            fs::write(r.join("bin"), b"\0theirs").unwrap();
            fs::remove_file(r.join("gone")).unwrap();
            fs::write(r.join("d/f"), "changed in the directory\n").unwrap();
        },
    );
    let r = dir.path();
    let out = vst(r, &["--json", "merge", "other"]);
    assert_eq!(out.status.code(), Some(1), "conflicts exit 1");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<(String, String)> = answer["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap().to_owned(), c["kind"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("bin".to_owned(), "both added".to_owned()),
            ("d".to_owned(), "file and directory".to_owned()),
            ("gone".to_owned(), "modified and deleted".to_owned()),
            ("text".to_owned(), "both modified".to_owned()),
        ]
    );
    // Text: git's markers around the lines both changed; the rest merged.
    assert_eq!(
        fs::read_to_string(r.join("text")).unwrap(),
        "1\n2\n<<<<<<< HEAD\nOURS\n=======\nTHEIRS\n>>>>>>> other\n4\n5\n6\nseven\n"
    );
    // Binary: ours in place, theirs beside it; a directory likewise.
    assert_eq!(fs::read(r.join("bin")).unwrap(), b"\0ours");
    assert_eq!(fs::read(r.join("bin~theirs")).unwrap(), b"\0theirs");
    assert_eq!(fs::read_to_string(r.join("d")).unwrap(), "a file now\n");
    assert_eq!(fs::read_to_string(r.join("d~theirs/f")).unwrap(), "changed in the directory\n");
    // Modified here, deleted there: ours stays.
    assert_eq!(fs::read_to_string(r.join("gone")).unwrap(), "changed by us\n");
    // Status says a merge is in progress and lists the conflicts.
    let status = json(r, &["status"]);
    assert_eq!(status["merging"]["rev"], "other", "{status}");
    assert_eq!(status["merging"]["conflicts"].as_array().unwrap().len(), 4);
    // A second merge, and a commit with markers or side files left, are
    // refused.
    assert!(!vst(r, &["merge", "other"]).status.success());
    let refused = vst(r, &["commit", "-m", "too soon"]);
    assert!(!refused.status.success());
    fs::remove_file(r.join("bin~theirs")).unwrap();
    fs::remove_dir_all(r.join("d~theirs")).unwrap();
    let refused = vst(r, &["commit", "-m", "too soon"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("conflict markers"));
    fs::write(r.join("text"), "1\n2\nBOTH\n4\n5\n6\nseven\n").unwrap();
    ok(r, &["commit", "-q", "-m", "merged by hand"]);
    assert_eq!(parents(r), 2);
    let status = json(r, &["status"]);
    assert!(status.get("merging").is_none(), "{status}");
    assert_eq!(status["changes"], serde_json::json!([]));
    ok(r, &["fsck"]);
}

#[test]
fn abort_brings_the_work_tree_back_and_local_changes_block_a_conflicted_merge() {
    let dir = diverged(
        |r| fs::write(r.join("text"), "1\nours\n3\n4\n5\n6\n7\n").unwrap(),
        |r| {
            fs::write(r.join("text"), "1\ntheirs\n3\n4\n5\n6\n7\n").unwrap();
            fs::write(r.join("new"), "from them\n").unwrap();
        },
    );
    let r = dir.path();
    let before = ok(r, &["log", "--json", "-n", "1"]);
    // A local change with a merge that conflicts: refused, nothing touched.
    fs::write(r.join("d/f"), "local\n").unwrap();
    let refused = vst(r, &["merge", "other"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("local changes"));
    assert!(!r.join("new").exists());
    assert_eq!(fs::read_to_string(r.join("d/f")).unwrap(), "local\n");
    fs::write(r.join("d/f"), "f\n").unwrap();
    // Conflicted, then aborted: exactly as before.
    assert_eq!(vst(r, &["merge", "other"]).status.code(), Some(1));
    assert!(r.join("new").exists());
    ok(r, &["merge", "--abort"]);
    assert_eq!(fs::read_to_string(r.join("text")).unwrap(), "1\nours\n3\n4\n5\n6\n7\n");
    assert!(!r.join("new").exists());
    assert_eq!(json(r, &["status"])["changes"], serde_json::json!([]));
    assert_eq!(ok(r, &["log", "--json", "-n", "1"]), before);
    assert!(!vst(r, &["merge", "--abort"]).status.success(), "no merge to abort");
}

#[test]
fn the_watch_daemon_finishes_a_merge_too() {
    let dir = diverged(
        |r| fs::write(r.join("text"), "1\nours\n3\n4\n5\n6\n7\n").unwrap(),
        |r| fs::write(r.join("text"), "1\ntheirs\n3\n4\n5\n6\n7\n").unwrap(),
    );
    let r = dir.path();
    ok(r, &["watch", "--background", "-q"]);
    let merged = vst(r, &["merge", "other"]);
    assert_eq!(merged.status.code(), Some(1));
    assert_eq!(json(r, &["status"])["merging"]["rev"], "other");
    fs::write(r.join("text"), "1\nresolved\n3\n4\n5\n6\n7\n").unwrap();
    ok(r, &["commit", "-q", "-m", "resolved"]);
    let info = json(r, &["watch", "--status"]);
    ok(r, &["watch", "--stop", "-q"]);
    assert!(info["served"].as_u64().unwrap() >= 2, "{info}");
    assert_eq!(parents(r), 2);
    assert_eq!(json(r, &["status", "--scan"])["changes"], serde_json::json!([]));
}

#[test]
fn abort_touches_only_what_the_merge_wrote_and_a_partial_commit_is_refused() {
    let dir = diverged(
        |r| {
            fs::write(r.join("text"), "1\nours\n3\n4\n5\n6\n7\n").unwrap();
            fs::remove_file(r.join("gone")).unwrap();
        },
        |r| {
            fs::write(r.join("text"), "1\ntheirs\n3\n4\n5\n6\n7\n").unwrap();
            fs::write(r.join("gone"), "changed by them\n").unwrap();
            fs::write(r.join("new"), "from them\n").unwrap();
        },
    );
    let r = dir.path();
    assert_eq!(vst(r, &["merge", "other"]).status.code(), Some(1));
    // We deleted `gone`, they changed it: theirs is in the work tree.
    assert!(r.join("gone").exists());
    // A commit of some paths only would record the merge without the
    // rest of the resolution.
    fs::write(r.join("text"), "1\nresolved\n3\n4\n5\n6\n7\n").unwrap();
    let refused = vst(r, &["commit", "-m", "part", "text"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("commit it whole"));
    // Work on a file the merge did not touch survives the abort.
    fs::write(r.join("d/f"), "my own work\n").unwrap();
    ok(r, &["merge", "--abort"]);
    assert_eq!(fs::read_to_string(r.join("d/f")).unwrap(), "my own work\n");
    assert_eq!(fs::read_to_string(r.join("text")).unwrap(), "1\nours\n3\n4\n5\n6\n7\n");
    assert!(!r.join("gone").exists(), "what we deleted stays deleted");
    assert!(!r.join("new").exists());
    let status = json(r, &["status"]);
    assert_eq!(status["changes"], serde_json::json!([{ "path": "d/f", "status": "modified" }]));
}

#[test]
fn a_merge_that_cannot_place_their_side_changes_nothing() {
    // A binary conflict on a name so long that `~theirs` cannot be added.
    let long = "n".repeat(250);
    let dir = diverged(
        |r| fs::write(r.join(&long), b"\0ours").unwrap(),
        |r| fs::write(r.join(&long), b"\0theirs").unwrap(),
    );
    let r = dir.path();
    let refused = vst(r, &["merge", "other"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("naming the file beside"));
    assert_eq!(fs::read(r.join(&long)).unwrap(), b"\0ours");
    let status = json(r, &["status"]);
    assert_eq!(status["changes"], serde_json::json!([]), "{status}");
    assert!(status.get("merging").is_none(), "{status}");
}
