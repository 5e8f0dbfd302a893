//! `vst remote`, `push`, `pull`, `clone` and `init --store` end to end,
//! against SeaweedFS on loopback.

#[path = "../../cas/tests/support/seaweed.rs"]
mod seaweed;

use std::path::Path;
use std::process::{Command, Output};

fn vst(dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(dir)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("VST_AUTHOR", "test")
        .output()
        .unwrap()
}

fn ok(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = vst(dir, endpoint, args);
    assert!(
        out.status.success(),
        "vst {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn push_clone_commit_push_pull() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("vst");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(a.join("src")).unwrap();
    std::fs::write(a.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(a.join("big.bin"), vec![7u8; 3 << 20]).unwrap();
    ok(&a, e, &["init"]);
    ok(&a, e, &["commit", "-m", "first"]);
    ok(&a, e, &["remote", "add", "origin", "s3://vst/e2e"]);
    assert_eq!(ok(&a, e, &["remote", "list"]), "origin s3://vst/e2e\n");
    ok(&a, e, &["push", "origin"]);
    assert!(ok(&a, e, &["push", "origin", "main"]).contains("up to date"));

    ok(tmp.path(), e, &["clone", "s3://vst/e2e", "b"]);
    let b = tmp.path().join("b");
    assert_eq!(std::fs::read(b.join("src/main.rs")).unwrap(), b"fn main() {}\n");
    assert!(ok(&b, e, &["status"]).contains("clean"));
    std::fs::write(b.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    ok(&b, e, &["commit", "-m", "from b"]);
    ok(&b, e, &["push", "origin"]);

    // A commits without pulling: its push is refused.
    std::fs::write(a.join("notes"), "a\n").unwrap();
    ok(&a, e, &["commit", "-m", "from a"]);
    let refused = vst(&a, e, &["push", "origin"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pull first"));

    // A fresh clone of the remote has B's tree; a pull into a third
    // repository that is behind fast-forwards it and its files.
    ok(tmp.path(), e, &["clone", "s3://vst/e2e", "c"]);
    let c = tmp.path().join("c");
    assert_eq!(std::fs::read(c.join("src/lib.rs")).unwrap(), b"pub fn f() {}\n");
    std::fs::write(b.join("src/lib.rs"), "pub fn g() {}\n").unwrap();
    ok(&b, e, &["commit", "-m", "again"]);
    ok(&b, e, &["push", "origin"]);
    assert!(ok(&c, e, &["pull", "origin"]).contains("main ->"));
    assert_eq!(std::fs::read(c.join("src/lib.rs")).unwrap(), b"pub fn g() {}\n");
    assert!(ok(&c, e, &["status"]).contains("clean"));
    assert_eq!(ok(&c, e, &["log", "-n", "1", "--json"]), ok(&b, e, &["log", "-n", "1", "--json"]));
    ok(&c, e, &["fsck", "--read-data"]);

    // A pull of a branch that is not the current one moves only it (it
    // used to open the repository twice and fail).
    ok(&b, e, &["branch", "feature"]);
    ok(&b, e, &["push", "origin", "feature"]);
    assert!(ok(&c, e, &["pull", "origin", "feature"]).contains("feature ->"));
    assert!(ok(&c, e, &["branch"]).contains("* main"));
    // An untracked file that the update does not touch does not stop a
    // pull (the checkout rule, not "any local change").
    std::fs::write(c.join("scratch.txt"), "mine\n").unwrap();
    std::fs::write(b.join("src/lib.rs"), "pub fn h() {}\n").unwrap();
    ok(&b, e, &["commit", "-m", "third"]);
    ok(&b, e, &["push", "origin"]);
    assert!(ok(&c, e, &["pull", "origin"]).contains("main ->"));
    assert_eq!(std::fs::read(c.join("src/lib.rs")).unwrap(), b"pub fn h() {}\n");
    assert_eq!(std::fs::read(c.join("scratch.txt")).unwrap(), b"mine\n");

    // What a killed clone leaves (its marker in .vst) is cleaned up by the
    // next clone into the same directory.
    let d = tmp.path().join("d");
    std::fs::create_dir_all(d.join(".vst")).unwrap();
    std::fs::write(d.join(".vst/cloning"), "s3://vst/e2e\n").unwrap();
    std::fs::write(d.join("half-written"), "").unwrap();
    ok(tmp.path(), e, &["clone", "-q", "s3://vst/e2e", "d"]);
    assert!(!d.join("half-written").exists() && !d.join(".vst/cloning").exists());
    assert!(ok(&d, e, &["status"]).contains("clean"));
}

fn dir_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

#[test]
fn a_repository_whose_objects_are_in_the_object_store() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("prim");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(a.join("src")).unwrap();
    std::fs::write(a.join("src/main.rs"), "fn main() {}\n").unwrap();
    // 6 MiB of varied bytes: more than the 2 MiB cache, chunked.
    let big: Vec<u8> =
        (0..6u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(a.join("big.bin"), &big).unwrap();
    // A wrong URL fails before anything is made.
    let bad = vst(tmp.path(), e, &["init", "x", "--store", "http://nope"]);
    assert!(!bad.status.success() && !tmp.path().join("x/.vst").exists());
    ok(&a, e, &["init", "-q", "--store", "s3://prim/repo", "--cache-mib", "2"]);
    ok(&a, e, &["commit", "-q", "-m", "first"]);
    assert!(!a.join(".vst/packs").exists(), "no local pack store");
    assert!(ok(&a, e, &["status"]).contains("clean"));
    std::fs::write(a.join("src/main.rs"), "fn main() { run() }\n").unwrap();
    ok(&a, e, &["commit", "-q", "-m", "second"]);

    // A second repository on the same store, after its cache is gone,
    // reads everything back lazily; the cache never passes its limit.
    std::fs::remove_dir_all(a.join(".vst/cache")).unwrap();
    let out = tmp.path().join("out");
    ok(&a, e, &["checkout", "HEAD~1", "--into", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(out.join("src/main.rs")).unwrap(), b"fn main() {}\n");
    assert!(dir_len(&a.join(".vst/cache")) <= 2 << 20, "the cache stays within 2 MiB");
    ok(&a, e, &["fsck", "--read-data"]);
    assert!(ok(&a, e, &["log", "--json"]).contains("second"));
    // Mounted, it reads the same, fetching on demand.
    let mnt = tempfile::tempdir().unwrap();
    let at = mnt.path().to_str().unwrap();
    ok(&a, e, &["mount", at, "--rev", "HEAD~1", "--background", "-q"]);
    let read = std::fs::read(mnt.path().join("big.bin"));
    let src = std::fs::read(mnt.path().join("src/main.rs"));
    ok(&a, e, &["umount", at]);
    assert_eq!(read.unwrap(), big);
    assert_eq!(src.unwrap(), b"fn main() {}\n");
    assert!(dir_len(&a.join(".vst/cache")) <= 2 << 20);
    let gc = vst(&a, e, &["gc"]);
    assert!(!gc.status.success());
    assert!(String::from_utf8_lossy(&gc.stderr).contains("not supported"));

    // Every command opens the objects where .vst/store says: a push to
    // another remote sends them from the object store (it used to look in
    // an empty local pack store), and a clone of that remote has it all.
    ok(&a, e, &["remote", "add", "backup", "s3://prim/backup"]);
    ok(&a, e, &["push", "-q", "backup"]);
    ok(tmp.path(), e, &["clone", "-q", "s3://prim/backup", "copy"]);
    assert_eq!(std::fs::read(tmp.path().join("copy/big.bin")).unwrap(), big);
    // In place, checkout and switch read the object store too.
    ok(&a, e, &["checkout", "-q", "HEAD~1"]);
    assert_eq!(std::fs::read(a.join("src/main.rs")).unwrap(), b"fn main() {}\n");
    ok(&a, e, &["switch", "-q", "main"]);
    assert_eq!(std::fs::read(a.join("src/main.rs")).unwrap(), b"fn main() { run() }\n");
    assert!(ok(&a, e, &["status"]).contains("clean"));
}

#[test]
fn two_processes_pushing_at_once_one_wins_the_other_is_told_to_pull() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("race");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("f"), "0").unwrap();
    ok(&seed, e, &["init", "-q"]);
    ok(&seed, e, &["commit", "-q", "-m", "base"]);
    ok(&seed, e, &["remote", "add", "origin", "s3://race/r"]);
    ok(&seed, e, &["push", "-q", "origin"]);
    for round in 0..6 {
        // Two repositories at the remote's head, each with a commit of its
        // own, push at the same moment from two processes.
        let dirs: Vec<_> = ["a", "b"]
            .iter()
            .map(|n| {
                let d = tmp.path().join(format!("{n}{round}"));
                ok(tmp.path(), e, &["clone", "-q", "s3://race/r", d.to_str().unwrap()]);
                std::fs::write(d.join(format!("{n}-{round}")), n).unwrap();
                ok(&d, e, &["commit", "-q", "-m", n]);
                d
            })
            .collect();
        let pushes: Vec<_> = dirs
            .iter()
            .map(|d| {
                Command::new(env!("CARGO_BIN_EXE_vst"))
                    .current_dir(d)
                    .args(["push", "origin"])
                    .env("AWS_ENDPOINT_URL", e)
                    .env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<Output> =
            pushes.into_iter().map(|p| p.wait_with_output().unwrap()).collect();
        let won: Vec<bool> = results.iter().map(|r| r.status.success()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}: exactly one wins");
        let loser = &results[won.iter().position(|w| !w).unwrap()];
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(err.contains("pull first"), "round {round}: {err}");
        // The remote names the winner's commit, with everything below it.
        let check = tmp.path().join(format!("check{round}"));
        ok(tmp.path(), e, &["clone", "-q", "s3://race/r", check.to_str().unwrap()]);
        let winner = &dirs[won.iter().position(|w| *w).unwrap()];
        assert_eq!(
            ok(&check, e, &["log", "-n", "1", "--json"]),
            ok(winner, e, &["log", "-n", "1", "--json"])
        );
        ok(&check, e, &["fsck", "--read-data"]);
    }
}

fn fails(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = vst(dir, endpoint, args);
    assert!(!out.status.success(), "vst {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// `vst fetch` keeps REMOTE/BRANCH at the remote's branches; `log`, `diff`
/// and `branch -r` read them; `push --delete` deletes a remote branch only
/// where this repository last saw it; gc keeps what they reach.
#[test]
fn fetch_tracking_refs_and_deleting_a_remote_branch() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("track");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), "one\n").unwrap();
    ok(&a, e, &["init", "-q"]);
    ok(&a, e, &["commit", "-q", "-m", "one"]);
    ok(&a, e, &["branch", "topic"]);
    ok(&a, e, &["remote", "add", "origin", "s3://track/r"]);
    ok(&a, e, &["push", "-q", "origin"]);
    ok(&a, e, &["push", "-q", "origin", "topic"]);
    let listed = ok(&a, e, &["branch", "-r"]);
    assert!(listed.contains("origin/main") && listed.contains("origin/topic"), "{listed}");

    ok(tmp.path(), e, &["clone", "-q", "s3://track/r", "b"]);
    let b = tmp.path().join("b");
    let listed = ok(&b, e, &["branch", "-r"]);
    assert!(listed.contains("origin/main") && listed.contains("origin/topic"), "{listed}");
    assert!(ok(&b, e, &["fetch", "origin"]).contains("up to date"));

    // A moves main on; B fetches: origin/main moves, B's main does not.
    std::fs::write(a.join("f"), "two\n").unwrap();
    std::fs::write(a.join("big.bin"), vec![3u8; 2 << 20]).unwrap();
    ok(&a, e, &["commit", "-q", "-m", "two"]);
    ok(&a, e, &["push", "-q", "origin"]);
    let b_main = ok(&b, e, &["log", "-n", "1", "--json"]);
    assert!(ok(&b, e, &["fetch", "origin"]).contains("origin/main: "));
    assert_eq!(ok(&b, e, &["log", "-n", "1", "--json"]), b_main, "main does not move");
    assert_eq!(
        ok(&b, e, &["log", "origin/main", "-n", "2", "--json"]),
        ok(&a, e, &["log", "main", "-n", "2", "--json"])
    );
    let diff = ok(&b, e, &["diff", "main", "origin/main", "--name-status"]);
    assert!(diff.contains("f") && diff.contains("big.bin"), "{diff}");
    // GC keeps what only a tracking ref reaches (B's main is behind it).
    ok(&b, e, &["gc", "--grace-hours", "0"]);
    ok(&b, e, &["fsck", "--read-data"]);
    ok(&b, e, &["cat", "origin/main:big.bin"]);

    // A deletes topic; B's fetch deletes origin/topic; a clone lacks it.
    assert!(ok(&a, e, &["push", "origin", "--delete", "topic"]).contains("deleted topic"));
    assert!(!ok(&a, e, &["branch", "-r"]).contains("origin/topic"));
    assert!(ok(&a, e, &["branch"]).contains("topic"), "the local branch stays");
    assert!(fails(&a, e, &["push", "origin", "--delete", "topic"]).contains("no branch topic"));
    assert!(ok(&b, e, &["fetch", "origin"]).contains("origin/topic: deleted"));
    assert!(!ok(&b, e, &["branch", "-r"]).contains("origin/topic"));
    ok(tmp.path(), e, &["clone", "-q", "s3://track/r", "c"]);
    let c = tmp.path().join("c");
    assert!(!ok(&c, e, &["branch"]).contains("topic"));

    // B's view of main is stale once A pushes again: B's delete is
    // refused, and main stays.
    std::fs::write(a.join("f"), "three\n").unwrap();
    ok(&a, e, &["commit", "-q", "-m", "three"]);
    ok(&a, e, &["push", "-q", "origin"]);
    let err = fails(&b, e, &["push", "origin", "--delete", "main"]);
    assert!(err.contains("refused") && err.contains("fetch"), "{err}");
    assert_eq!(ok(&c, e, &["fetch", "origin"]).lines().count(), 1, "main is still on the remote");
    // A pushed topic again: the branch comes back.
    ok(&a, e, &["push", "-q", "origin", "topic"]);
    assert!(ok(&b, e, &["fetch", "origin"]).contains("origin/topic: new"));
}

/// `vst gc --remote`: after a branch with a large file is deleted, a gc
/// with no grace period leaves less than a tenth of what was stored; with
/// the default grace period (an hour) nothing just written is deleted.
#[test]
fn gc_of_a_remote() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("rgc");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), "small\n").unwrap();
    ok(&a, e, &["init", "-q"]);
    ok(&a, e, &["commit", "-q", "-m", "small"]);
    ok(&a, e, &["remote", "add", "origin", "s3://rgc/r"]);
    ok(&a, e, &["push", "-q", "origin"]);
    ok(&a, e, &["branch", "topic"]);
    ok(&a, e, &["switch", "-q", "topic"]);
    let big: Vec<u8> =
        (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(a.join("big.bin"), &big).unwrap();
    ok(&a, e, &["commit", "-q", "-m", "big"]);
    ok(&a, e, &["push", "-q", "origin"]);
    let stats = |out: &str| -> serde_json::Value { serde_json::from_str(out.trim()).unwrap() };
    let kept = stats(&ok(&a, e, &["gc", "--remote", "origin", "--json"]));
    assert_eq!(kept["packs_deleted"], 0, "{kept}");
    // (The file compresses to about a quarter.)
    let stored = kept["bytes_after"].as_u64().unwrap();
    assert!(stored > 1 << 20, "{kept}");
    ok(&a, e, &["push", "-q", "origin", "--delete", "topic"]);
    let done = stats(&ok(&a, e, &["gc", "--remote", "origin", "--grace", "0s", "--json"]));
    assert!(done["bytes_after"].as_u64().unwrap() < stored / 10, "{done}");
    assert!(fails(&a, e, &["gc", "--remote", "origin", "--grace", "soon"]).contains("duration"));
    ok(tmp.path(), e, &["clone", "-q", "s3://rgc/r", "b"]);
    let b = tmp.path().join("b");
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"small\n");
    ok(&b, e, &["fsck", "--read-data"]);
}

#[test]
fn diverged_clones_pull_merges_and_push_shares_both() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("vst");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("shared.txt"), "one\ntwo\nthree\n").unwrap();
    ok(&a, e, &["init", "-q"]);
    ok(&a, e, &["commit", "-q", "-m", "base"]);
    ok(&a, e, &["remote", "add", "origin", "s3://vst/diverge"]);
    ok(&a, e, &["push", "-q", "origin"]);
    ok(tmp.path(), e, &["clone", "-q", "s3://vst/diverge", "b"]);
    let b = tmp.path().join("b");
    // Both change different files (and different lines of one file).
    std::fs::write(a.join("from-a"), "a\n").unwrap();
    std::fs::write(a.join("shared.txt"), "ONE\ntwo\nthree\n").unwrap();
    ok(&a, e, &["commit", "-q", "-m", "a"]);
    std::fs::write(b.join("from-b"), "b\n").unwrap();
    std::fs::write(b.join("shared.txt"), "one\ntwo\nTHREE\n").unwrap();
    ok(&b, e, &["commit", "-q", "-m", "b"]);
    ok(&b, e, &["push", "-q", "origin"]);
    // --ff-only refuses; a pull merges.
    let refused = vst(&a, e, &["pull", "--ff-only", "origin"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("diverged"));
    assert!(ok(&a, e, &["pull", "origin"]).contains("merged origin/main"));
    assert!(ok(&a, e, &["status"]).contains("clean"));
    ok(&a, e, &["push", "-q", "origin"]);
    ok(tmp.path(), e, &["clone", "-q", "s3://vst/diverge", "c"]);
    let c = tmp.path().join("c");
    assert_eq!(std::fs::read(c.join("from-a")).unwrap(), b"a\n");
    assert_eq!(std::fs::read(c.join("from-b")).unwrap(), b"b\n");
    assert_eq!(std::fs::read(c.join("shared.txt")).unwrap(), b"ONE\ntwo\nTHREE\n");
    let log: serde_json::Value =
        serde_json::from_str(&ok(&c, e, &["--json", "log", "-n", "1"])).unwrap();
    assert_eq!(log[0]["parents"].as_array().unwrap().len(), 2, "{log}");
    ok(&c, e, &["fsck", "--read-data"]);
    // And B fast-forwards to the merge.
    assert!(ok(&b, e, &["pull", "origin"]).contains("main ->"));
    assert_eq!(std::fs::read(b.join("from-a")).unwrap(), b"a\n");
}

#[test]
fn cloning_a_prefix_that_holds_no_branch_is_an_error_that_leaves_nothing() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("vst");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let out = vst(tmp.path(), e, &["clone", "s3://vst/no-such-prefix", "c"]);
    assert!(!out.status.success(), "an empty clone would hide a mistyped URL");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holds no branch") && said.contains("check the URL"), "{said}");
    assert!(!tmp.path().join("c").exists(), "nothing made");
}

/// Runs `vst`, requires success, returns stderr (where fetches report
/// tags).
fn ok_err(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = vst(dir, endpoint, args);
    assert!(out.status.success(), "vst {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn tags_push_fetch_and_clone_never_move_unforced_and_keep_what_they_name_from_gc() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("vst");
    let e = server.endpoint.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), "one\n").unwrap();
    ok(&a, e, &["init"]);
    ok(&a, e, &["commit", "-m", "one"]);
    ok(&a, e, &["tag", "v1"]);
    std::fs::write(a.join("f"), "two\n").unwrap();
    ok(&a, e, &["commit", "-m", "two"]);
    ok(&a, e, &["remote", "add", "origin", "s3://vst/tags"]);
    ok(&a, e, &["push", "origin"]);
    assert!(ok(&a, e, &["push", "origin", "--tags"]).contains("tag v1: new tag"));
    assert!(ok(&a, e, &["push", "origin", "--tags"]).contains("up to date"));

    // A clone has the tags; a fetch brings new ones.
    ok(tmp.path(), e, &["clone", "s3://vst/tags", "b"]);
    assert_eq!(ok(&b, e, &["cat", "v1:f"]), "one\n");
    ok(&a, e, &["tag", "v2"]);
    ok(&a, e, &["push", "origin", "--tags"]);
    assert!(ok_err(&b, e, &["fetch", "origin"]).contains("new tag v2"));
    assert_eq!(ok(&b, e, &["cat", "v2:f"]), "two\n");

    // Moved here, a tag is refused on the remote unless forced; a fetch
    // never moves the one another repository has.
    ok(&a, e, &["tag", "-f", "v1", "HEAD"]);
    let refused = fails(&a, e, &["push", "origin", "--tags"]);
    assert!(refused.contains("tag v1 is at") && refused.contains("--force"), "{refused}");
    ok(&a, e, &["push", "origin", "--tags", "--force"]);
    assert!(ok_err(&b, e, &["fetch", "origin"]).contains("tag v1 is at"));
    assert_eq!(ok(&b, e, &["cat", "v1:f"]), "one\n", "kept as it was here");

    // A tag is never taken where a branch has its name, here or there.
    ok(&b, e, &["branch", "rel"]);
    ok(&a, e, &["tag", "rel"]);
    ok(&a, e, &["push", "origin", "--tags"]);
    assert!(ok_err(&b, e, &["fetch", "origin"]).contains("tag rel of origin not taken"));
    ok(&b, e, &["push", "origin", "rel"]);
    ok(&a, e, &["tag", "-d", "rel"]);
    ok(&a, e, &["tag", "rel", "v2"]);
    let refused = fails(&a, e, &["push", "origin", "--tags"]);
    assert!(refused.contains("has a branch named rel"), "{refused}");
    ok(&a, e, &["tag", "-d", "rel"]);

    // A commit only a tag names survives a remote gc.
    ok(&a, e, &["branch", "tmp"]);
    ok(&a, e, &["switch", "-q", "tmp"]);
    std::fs::write(a.join("t"), "tagged only\n").unwrap();
    ok(&a, e, &["commit", "-m", "three"]);
    ok(&a, e, &["tag", "v3"]);
    ok(&a, e, &["switch", "-q", "main"]);
    ok(&a, e, &["branch", "-D", "tmp"]);
    ok(&a, e, &["push", "origin", "--tags"]);
    ok(&a, e, &["gc", "--remote", "origin", "--grace", "0s"]);
    ok(tmp.path(), e, &["clone", "s3://vst/tags", "c"]);
    assert_eq!(ok(&c, e, &["cat", "v3:t"]), "tagged only\n");
    assert_eq!(ok(&c, e, &["cat", "v1:f"]), "two\n", "the forced tag");
    ok(&c, e, &["fsck"]);
}
