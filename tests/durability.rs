//! Crash safety of the whole commit protocol: objects, commit, ref.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use vst::{CommitId, CommitOptions, ReadData, Repo, Timestamp, WorkingSet, read};
use vst_cas::Access;
use vst_cas::sim::{Fault, SimFs, Unsynced};
use vst_cas::vfs::Vfs;

use crate::support::{p, read_tree_plain};

fn options(message: &str) -> CommitOptions {
    CommitOptions {
        author: "crash test".into(),
        message: message.into(),
        time: Some(Timestamp { unix_us: 1_700_000_000_000_000, tz_offset_min: 0 }),
        ..Default::default()
    }
}

fn open(fs: &SimFs) -> Repo {
    Repo::open_with(Arc::new(fs.clone()), Path::new("/r"), Access::ReadWrite).unwrap()
}

/// The first commit: a few files, acknowledged before any fault.
fn first_commit(repo: &Repo) -> (WorkingSet, CommitId) {
    let mut ws = repo.working_set().unwrap();
    for i in 0..5 {
        ws.write(&p(&format!("src/f{i}")), format!("version one of {i}").as_bytes()).unwrap();
    }
    let id = repo.commit(&mut ws, &options("one")).unwrap();
    (ws, id)
}

/// The second commit: small files, a large chunked file, a removal.
fn second_commit(repo: &Repo, ws: &mut WorkingSet) -> vst::Result<CommitId> {
    ws.write(&p("src/f1"), b"version two")?;
    ws.remove(&p("src/f2"))?;
    let big: Vec<u8> =
        (0..1_500_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    ws.write(&p("big/blob"), &big)?;
    repo.commit(ws, &options("two"))
}

#[test]
fn a_crash_at_any_step_of_a_commit_leaves_the_old_or_the_new_state() {
    // Count the operations of the second commit once.
    let probe = SimFs::new();
    let repo = open(&probe);
    let (mut ws, first) = first_commit(&repo);
    let start = probe.ops();
    let second = second_commit(&repo, &mut ws).unwrap();
    let end = probe.ops();
    let first_tree = read_tree_plain(
        repo.store().as_ref(),
        read::read_commit(repo.store().as_ref(), first).unwrap().tree,
    );
    let second_tree = read_tree_plain(
        repo.store().as_ref(),
        read::read_commit(repo.store().as_ref(), second).unwrap().tree,
    );
    drop((repo, ws));
    assert!(end - start >= 5, "the commit does some I/O ({} steps)", end - start);

    for at in start..=end {
        for unsynced in Unsynced::ALL {
            let fs = SimFs::new();
            let repo = open(&fs);
            let (mut ws, got_first) = first_commit(&repo);
            assert_eq!(got_first, first);
            fs.set_fault(fs.ops() + (at - start), Fault::Crash);
            let acknowledged = second_commit(&repo, &mut ws).is_ok();
            drop((repo, ws));

            let after = open(&fs.crash_image(unsynced));
            let report = after.fsck(ReadData::Yes).unwrap();
            assert!(
                report.is_clean(),
                "fsck after a crash at step {at} ({unsynced:?}): {:?}",
                report.problems
            );
            let head = after.head_commit().unwrap().expect("the first commit survives");
            if acknowledged {
                assert_eq!(
                    head, second,
                    "an acknowledged commit is never lost (step {at}, {unsynced:?})"
                );
            }
            assert!(head == first || head == second, "old or new state (step {at}, {unsynced:?})");
            let tree = read::read_commit(after.store().as_ref(), head).unwrap().tree;
            let expected = if head == first { &first_tree } else { &second_tree };
            assert_eq!(&read_tree_plain(after.store().as_ref(), tree), expected);
            // And the repository takes new commits.
            let mut ws = after.working_set().unwrap();
            ws.write(&p("after"), b"crash").unwrap();
            after.commit(&mut ws, &options("three")).unwrap();
        }
    }
}

/// The child side of the kill test: commits in a loop and prints each
/// acknowledged commit id. Runs only when the parent test starts it.
#[test]
fn kill_test_child() {
    let Ok(dir) = std::env::var("VST_KILL_TEST_REPO") else { return };
    let repo = crate::support::repo(Path::new(&dir));
    let mut ws = repo.working_set().unwrap();
    let start = ws.head().map_or(0, |_| 1);
    for i in start..100_000u64 {
        let size = (i * 7919 % 9000) as usize;
        let content: Vec<u8> = (0..size).map(|j| (j as u64 ^ i) as u8).collect();
        ws.write(&p(&format!("d{}/f{}", i % 7, i % 50)), &content).unwrap();
        let id = repo
            .commit(&mut ws, &CommitOptions { message: format!("{i}"), ..Default::default() })
            .unwrap();
        println!("{id}");
    }
}

#[test]
fn commits_survive_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: Vec<CommitId> = Vec::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let rounds = 100;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["--exact", "durability::kill_test_child", "--nocapture", "--test-threads=1"])
            .env("VST_KILL_TEST_REPO", &repo_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Let it acknowledge a few commits (the first may wait for the
        // previous child's lock to go), then kill it mid-flight.
        let wanted = 1 + (seed % 8) as usize;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < wanted {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Ok(id) = line.trim().parse::<CommitId>() {
                        acknowledged.push(id);
                        seen += 1;
                    }
                }
                _ => break,
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(seed % 3000));
        child.kill().unwrap();
        // Whatever it printed before dying was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Ok(id) = line.trim().parse::<CommitId>() {
                acknowledged.push(id);
            }
        }
        child.wait().unwrap();

        let repo = crate::support::repo(&repo_dir);
        let report = repo.fsck(ReadData::No).unwrap();
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        // Every acknowledged commit is the head or one of its ancestors.
        let mut chain = std::collections::HashSet::new();
        let mut next = repo.head_commit().unwrap();
        while let Some(id) = next {
            chain.insert(id);
            next = read::read_commit(repo.store().as_ref(), id).unwrap().parents.first().copied();
        }
        for id in &acknowledged {
            assert!(chain.contains(id), "round {round}: acknowledged commit {id} was lost");
        }
    }
    assert!(acknowledged.len() >= rounds, "the children made progress");
    let repo = crate::support::repo(&repo_dir);
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
}

#[test]
fn fsck_reports_flipped_bytes_in_a_pack_and_a_ref_and_survives_a_flipped_index() {
    let fs = SimFs::new();
    let repo = open(&fs);
    let (mut ws, _) = first_commit(&repo);
    ws.write(&p("payload"), &vec![7u8; 300]).unwrap();
    let head = repo.commit(&mut ws, &options("two")).unwrap();
    repo.refs().update(&Repo::branch("other").unwrap(), None, Some(head.object_id()), "x").unwrap();
    drop((repo, ws));

    // A flipped byte in the index: the entry fails its checksum, the index
    // is rebuilt from the packs, and nothing is lost.
    let flipped = fs.crash_image(Unsynced::Keep);
    flipped.tamper(Path::new("/r/index"), |b| b[100] ^= 1);
    assert!(open(&flipped).fsck(ReadData::Yes).unwrap().is_clean());

    // A flipped byte in a pack: reported by fsck (naming the object), and
    // a read of it is an error, never other bytes.
    let flipped = fs.crash_image(Unsynced::Keep);
    let pack = Path::new("/r/packs/pack-00000001.pack");
    let len = flipped.len(pack).unwrap().unwrap() as usize;
    flipped.tamper(pack, |b| b[len / 2] ^= 0x10);
    let report = open(&flipped).fsck(ReadData::Yes).unwrap();
    assert!(!report.is_clean());
    assert!(report.problems.iter().all(|p| p.error.to_string().contains(&p.id.to_string())));

    // A flipped byte in a ref: reported by name; the other branch is still
    // checked.
    let flipped = fs.crash_image(Unsynced::Keep);
    flipped.tamper(Path::new("/r/refs/heads/other"), |b| b[3] = b'x');
    let report = open(&flipped).fsck(ReadData::No).unwrap();
    assert_eq!(report.bad_refs.len(), 1, "{:?}", report.bad_refs);
    assert_eq!(report.bad_refs[0].0, "other");
    assert!(report.commits >= 2, "main was still checked");
}

#[test]
fn a_repo_commit_is_durable_whatever_the_options_say() {
    for durability in [vst_cas::Durability::None, vst_cas::Durability::Flush] {
        let fs = SimFs::new();
        let repo = open(&fs);
        let mut ws = repo.working_set().unwrap();
        ws.write(&p("f"), b"content").unwrap();
        let id = repo.commit(&mut ws, &CommitOptions { durability, ..options("x") }).unwrap();
        drop((repo, ws));
        let after = open(&fs.crash_image(Unsynced::Drop));
        assert_eq!(after.head_commit().unwrap(), Some(id), "{durability:?}");
        assert!(after.fsck(ReadData::Yes).unwrap().is_clean(), "{durability:?}");
    }
}
