//! GC: what it keeps, what it removes, and that it loses nothing when a
//! commit runs at the same time or the process dies in the middle.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vst_cas::sim::noise;

use vst::{CommitId, CommitOptions, ReadData, Repo, read};
use vst_cas::sim::{Fault, SimFs, Unsynced};
use vst_cas::{Access, GcMode, Store};

use crate::support::{p, read_tree_plain};

const HOUR: Duration = Duration::from_secs(3600);

/// A repository with `main` (two commits) and a deleted branch `tmp`
/// whose commit holds a large file only it references.
fn setup(open: &dyn Fn() -> Repo) -> (CommitId, CommitId) {
    let repo = open();
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("a"), b"one").unwrap();
    repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    ws.write(&p("b"), &noise(1, 200_000)).unwrap();
    let main = repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    let tmp = Repo::branch("tmp").unwrap();
    let mut side = repo.working_set().unwrap();
    side.write(&p("big"), &noise(2, 3_000_000)).unwrap();
    let side_commit = vst::commit(&mut side, &CommitOptions::default()).unwrap();
    repo.refs().update(&tmp, None, Some(side_commit.object_id()), "branch").unwrap();
    repo.refs().update(&tmp, Some(side_commit.object_id()), None, "delete").unwrap();
    (main, side_commit)
}

#[test]
fn gc_keeps_what_refs_and_recent_reflogs_reach_and_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (main, side) = setup(&|| crate::support::repo(dir.path()));
    // A new handle: nothing is "fresh" any more.
    let repo = crate::support::repo(dir.path());
    let dry = repo.gc(Duration::ZERO, GcMode::DryRun).unwrap();
    assert!(dry.records_removed > 0);
    let kept = repo.gc(HOUR, GcMode::Collect).unwrap();
    assert_eq!(kept.records_removed, 0, "the deleted branch is still in its reflog's grace period");
    assert!(repo.store().contains(&side.object_id()).unwrap());
    let stats = repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    assert_eq!(stats.records_removed, dry.records_removed);
    assert!(stats.bytes_after < stats.bytes_before / 2, "{stats:?}");
    assert!(!repo.store().contains(&side.object_id()).unwrap());
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
    drop(repo);
    let repo = crate::support::repo(dir.path());
    assert_eq!(repo.head_commit().unwrap(), Some(main));
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
    assert!(!repo.store().contains(&side.object_id()).unwrap(), "gone for good");
    let tree = read::read_commit(repo.store().as_ref(), main).unwrap().tree;
    assert_eq!(read::read_file(repo.store().as_ref(), tree, &p("b")).unwrap().len(), 200_000);
}

/// A GC with nothing to collect (every record live, the packs holding
/// nothing else) writes nothing; one with garbage rewrites.
#[test]
fn gc_with_nothing_to_collect_writes_nothing() {
    let fs = SimFs::new();
    let open =
        || Repo::open_with(Arc::new(fs.clone()), Path::new("/r"), Access::ReadWrite).unwrap();
    setup(&open);
    let packs = || {
        use vst_cas::vfs::Vfs;
        let dir = Path::new("/r/packs");
        let mut names = fs.list(dir).unwrap();
        names.sort();
        names.into_iter().map(|(n, _)| (fs.len(&dir.join(&n)).unwrap(), n)).collect::<Vec<_>>()
    };
    let repo = open();
    let first = repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    assert!(first.records_removed > 0 && first.rewritten, "{first:?}");
    drop(repo);
    for mode in [GcMode::DryRun, GcMode::Collect] {
        let before = packs();
        let repo = open();
        let ops = fs.ops();
        let stats = repo.gc(Duration::ZERO, mode).unwrap();
        assert_eq!(stats.records_removed, 0);
        assert!(!stats.rewritten, "{mode:?}: {stats:?}");
        assert_eq!(stats.bytes_after, stats.bytes_before);
        assert!(fs.ops() - ops <= 1, "{mode:?}: at most the sync of the current pack");
        assert_eq!(packs(), before, "{mode:?}");
        assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
    }
}

#[test]
fn uncommitted_writes_survive_gc() {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("a"), b"committed").unwrap();
    repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    ws.write(&p("pending"), &noise(3, 50_000)).unwrap();
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
}

/// An uncommitted working set may hold objects the store had before the
/// handle opened (garbage then, written again now): GC keeps them, and a
/// second GC through the same handle keeps what the first kept as fresh.
#[test]
fn garbage_written_again_survives_gc_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, side) = setup(&|| crate::support::repo(dir.path()));
    let big = read::read_commit(crate::support::repo(dir.path()).store().as_ref(), side).unwrap();
    let repo = crate::support::repo(dir.path());
    let mut ws = repo.working_set().unwrap();
    // The deleted branch's large file, written again: the store has it.
    ws.write(&p("again"), &noise(2, 3_000_000)).unwrap();
    ws.write(&p("new"), &noise(4, 10_000)).unwrap();
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    let id = repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
    let tree = read::read_commit(repo.store().as_ref(), id).unwrap().tree;
    assert_eq!(read::read_file(repo.store().as_ref(), tree, &p("again")).unwrap().len(), 3_000_000);
    assert!(!repo.store().contains(&big.tree.object_id()).unwrap(), "the rest of it went");
}

#[test]
fn gc_while_another_thread_commits_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    let committer = {
        let repo = repo.clone();
        std::thread::spawn(move || {
            let mut ws = repo.working_set().unwrap();
            let mut acknowledged = Vec::new();
            for i in 0..150u64 {
                ws.write(&p(&format!("f{}", i % 10)), &noise(i, 2000)).unwrap();
                acknowledged.push(repo.commit(&mut ws, &CommitOptions::default()).unwrap());
            }
            acknowledged
        })
    };
    while !committer.is_finished() {
        repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    }
    let acknowledged = committer.join().unwrap();
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    drop(repo);
    let repo = crate::support::repo(dir.path());
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
    assert_eq!(repo.head_commit().unwrap(), acknowledged.last().copied());
}

#[test]
fn a_crash_at_any_step_of_gc_loses_nothing_live() {
    let open = |fs: &SimFs| {
        Repo::open_with(Arc::new(fs.clone()), Path::new("/r"), Access::ReadWrite).unwrap()
    };
    let probe = SimFs::new();
    let (main, _) = setup(&|| open(&probe));
    let expected = {
        let repo = open(&probe);
        let tree = read::read_commit(repo.store().as_ref(), main).unwrap().tree;
        read_tree_plain(repo.store().as_ref(), tree)
    };
    let base = probe.crash_image(Unsynced::Keep);
    let before = base.ops();
    let packs_len_before = packs_len(&base);
    let repo = open(&base);
    let start = base.ops();
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    let end = base.ops();
    drop(repo);
    assert!(end > start);
    for at in start..=end {
        for unsynced in [Unsynced::Drop, Unsynced::Keep, Unsynced::TearHalf, Unsynced::Mixed] {
            let fs = probe.crash_image(Unsynced::Keep);
            assert_eq!(fs.ops(), before);
            let repo = open(&fs);
            fs.set_fault(fs.ops() + (at - start), Fault::Crash);
            let _ = repo.gc(Duration::ZERO, GcMode::Collect);
            drop(repo);
            let after = open(&fs.crash_image(unsynced));
            let report = after.fsck(ReadData::Yes).unwrap();
            assert!(
                report.is_clean(),
                "crash at gc step {at} ({unsynced:?}): {:?}",
                report.problems
            );
            assert_eq!(after.head_commit().unwrap(), Some(main));
            let tree = read::read_commit(after.store().as_ref(), main).unwrap().tree;
            assert_eq!(read_tree_plain(after.store().as_ref(), tree), expected);
            // The copies of an interrupted GC (or the old packs of one that
            // did not finish deleting them) are gone after the open: no more
            // pack bytes than before GC, plus a new pack's header.
            let fs = fs.crash_image(unsynced);
            drop(open(&fs));
            let len = packs_len(&fs);
            assert!(
                len <= packs_len_before + vst_cas::pack::PACK_MAGIC.len() as u64,
                "crash at gc step {at} ({unsynced:?}): {len} pack bytes, {packs_len_before} before"
            );
        }
    }
}

/// Bytes of every pack file of the store at `/r` in `fs`.
fn packs_len(fs: &SimFs) -> u64 {
    use vst_cas::vfs::Vfs;
    let dir = Path::new("/r/packs");
    fs.list(dir).unwrap().iter().map(|(name, _)| fs.len(&dir.join(name)).unwrap().unwrap()).sum()
}

#[test]
fn a_file_that_equals_a_tree_encoding_does_not_hide_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    {
        let repo = crate::support::repo(dir.path());
        let mut ws = repo.working_set().unwrap();
        ws.write(&p("d/inner"), &noise(5, 10_000)).unwrap();
        repo.commit(&mut ws, &CommitOptions::default()).unwrap();
        // A file whose content is the encoding of directory "d": same id.
        let d_tree = match ws.stat(&p("d")).unwrap() {
            vst::Stat::Dir(Some(id)) => id,
            other => panic!("{other:?}"),
        };
        let encoding = repo.store().get(&d_tree.object_id()).unwrap();
        // "a" sorts before "d": the walk meets the file first.
        ws.write(&p("a"), &encoding).unwrap();
        repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    }
    let repo = crate::support::repo(dir.path());
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean(), "d/inner survived GC");
}

#[test]
fn detached_commits_are_compared_and_swapped_and_kept_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let detached = {
        let repo = crate::support::repo(dir.path());
        let mut ws = repo.working_set().unwrap();
        ws.write(&p("a"), b"on main").unwrap();
        let main = repo.commit(&mut ws, &CommitOptions::default()).unwrap();
        repo.refs().set_head(&vst_cas::Head::Detached(main.object_id())).unwrap();
        let mut one = repo.working_set().unwrap();
        let mut two = repo.working_set().unwrap();
        one.write(&p("big"), &noise(6, 500_000)).unwrap();
        let detached = repo.commit(&mut one, &CommitOptions::default()).unwrap();
        two.write(&p("other"), b"stale").unwrap();
        assert!(
            matches!(repo.commit(&mut two, &CommitOptions::default()), Err(vst::Error::Ref(_))),
            "a commit from a stale detached HEAD is refused"
        );
        assert_eq!(repo.head_commit().unwrap(), Some(detached));
        assert_eq!(
            repo.refs().head_reflog().unwrap().last().unwrap().new,
            Some(detached.object_id())
        );
        repo.refs().set_head(&vst_cas::Head::Branch(Repo::branch("main").unwrap())).unwrap();
        detached
    };
    let repo = crate::support::repo(dir.path());
    repo.gc(HOUR, GcMode::Collect).unwrap();
    assert!(repo.store().contains(&detached.object_id()).unwrap(), "kept: HEAD's reflog is young");
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    assert!(!repo.store().contains(&detached.object_id()).unwrap());
    assert!(repo.fsck(ReadData::Yes).unwrap().is_clean());
}

/// A branch file keeps its value before the last update in its other slot,
/// which the branch falls back to if the current slot is ever damaged: GC
/// keeps what that value reaches, even past the reflog's grace period and
/// when the branch moved to an unrelated commit.
#[test]
fn gc_keeps_what_the_value_before_in_a_branch_file_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("big"), &noise(3, 2_000_000)).unwrap();
    let before = repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    let mut other = vst::WorkingSet::new(repo.store());
    other.write(&p("small"), b"unrelated").unwrap();
    let unrelated = vst::commit(&mut other, &CommitOptions::default()).unwrap();
    let main = Repo::branch("main").unwrap();
    let (b, u) = (before.object_id(), unrelated.object_id());
    repo.refs().update(&main, Some(b), Some(u), "reset").unwrap();
    assert_eq!(repo.refs().held(&main).unwrap(), [u, b]);
    drop((repo, ws, other));
    let repo = crate::support::repo(dir.path());
    repo.gc(Duration::ZERO, GcMode::Collect).unwrap();
    assert!(repo.store().contains(&b).unwrap(), "the value before is kept");
    // The current slot damaged: the branch reads as the value before,
    // and everything it reaches is there.
    let path = dir.path().join("refs/heads/main");
    let mut file = std::fs::read(&path).unwrap();
    let current = (0..2).find(|k| file[k * 4096..].starts_with(b"0000000000000002")).unwrap();
    file[current * 4096 + 30] ^= 1;
    std::fs::write(&path, file).unwrap();
    assert_eq!(repo.head_commit().unwrap(), Some(before));
    let tree = read::read_commit(repo.store().as_ref(), before).unwrap().tree;
    assert_eq!(read::read_file(repo.store().as_ref(), tree, &p("big")).unwrap().len(), 2_000_000);
}
