//! Hostile repositories (issue 16): each is written byte by byte from
//! `docs/format.md` by `support::craft` (a pack and refs, never the
//! library's encoder), opened as a repository, and every reader must refuse
//! it clearly without writing anything it should not.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use vst::fsck::ReadData;
use vst::{CommitId, DecodeError, Error, InvalidName, ObjectKind, Repo, TreeId, read};
use vst_cas::{ObjectId, Store, StoreError};

use crate::support::craft::{Objects, raw};
use crate::support::{mem, p, read_disk};

/// Writes `objects` as the repository `root/.vst` with `main` at `tip`
/// and opens it.
fn open_crafted(root: &Path, objects: &Objects, tip: [u8; 32]) -> Repo {
    objects.write_repo(&root.join(".vst"), &tip);
    Repo::open(&root.join(".vst")).unwrap()
}

fn tree_of(repo: &Repo, commit: [u8; 32]) -> TreeId {
    read::read_commit(repo.store().as_ref(), CommitId::new(ObjectId::from_bytes(commit)))
        .unwrap()
        .tree
}

fn is_repo_dir_name(e: &Error) -> bool {
    matches!(
        e,
        Error::Decode {
            kind: ObjectKind::Tree,
            source: DecodeError::InvalidName { source: InvalidName::RepoDir, .. },
            ..
        }
    )
}

/// Item 1: a tree holding `.vst` (here a `.vst/store` that names an
/// attacker's bucket), at the top or deeper, in any letter case, is
/// refused by the decoder, so by fsck, checkout, a transfer (clone, fetch),
/// a walk and the working set (the writable mount).
#[test]
fn a_tree_holding_the_repository_directory_is_refused() {
    for (name, nested) in [(&b".vst"[..], false), (b".VST", false), (b".vSt", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut objects = Objects::default();
        let store_file = b"s3://attacker/loot\n1000000\n";
        let store_blob = objects.put(store_file);
        let evil =
            objects.tree(&[raw::file(b"store", &store_blob, store_file.len() as u64, false)]);
        let readme = objects.put(b"hello\n");
        let mut root =
            objects.tree(&[raw::dir(name, &evil), raw::file(b"readme", &readme, 6, false)]);
        if nested {
            root = objects.tree(&[raw::dir(b"a", &root)]);
        }
        let tip = objects.commit(&root, "a tree with a repository directory");
        let repo = open_crafted(tmp.path(), &objects, tip);
        let store = repo.store();
        let tree = tree_of(&repo, tip);
        let what = String::from_utf8_lossy(name);

        let report = repo.fsck(ReadData::Yes).unwrap();
        assert_eq!(report.problems.len(), 1, "{what}: {report:?}");
        assert!(is_repo_dir_name(&report.problems[0].error), "{what}: {report:?}");

        let target = tmp.path().join("checkout");
        let e = vst::checkout(store.as_ref(), tree, &target).unwrap_err();
        assert!(is_repo_dir_name(&e), "{what}: {e}");
        assert!(
            !target.exists()
                || read_disk(&target).keys().all(|k| !k.to_ascii_lowercase().ends_with(b".vst")),
            "{what}: checkout wrote a repository directory"
        );

        let e = vst::sync::transfer(
            store.as_ref(),
            mem().as_ref(),
            CommitId::new(ObjectId::from_bytes(tip)),
        )
        .unwrap_err();
        assert!(is_repo_dir_name(&e), "{what}: {e}");

        let e = read::walk(store.as_ref(), tree, &mut |_, _| Ok(())).unwrap_err();
        assert!(is_repo_dir_name(&e), "{what}: {e}");
        let e = vst::WorkingSet::from_tree(store.clone(), tree).unwrap_err();
        assert!(is_repo_dir_name(&e), "{what}: {e}");
    }
}

/// Item 12: a file entry whose recorded size is wrong, larger or smaller
/// than its blob (a whole blob here; a chunked one's length comes from its
/// chunk list, checked by the store conformance suite): fsck with and
/// without reading data, `cat` (`read_file`) and checkout all refuse it
/// with the same error. (The mount: `fuse-mount/tests/mount.rs`.)
#[test]
fn a_file_whose_recorded_size_is_wrong_is_refused_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let mut objects = Objects::default();
    let content = b"hello world\n";
    let blob = objects.put(content);
    let root = objects.tree(&[
        raw::file(b"exact", &blob, 12, false),
        raw::file(b"larger", &blob, 20, false),
        raw::file(b"smaller", &blob, 5, false),
        raw::file(b"zero", &blob, 0, false),
    ]);
    let tip = objects.commit(&root, "wrong sizes");
    let repo = open_crafted(tmp.path(), &objects, tip);
    let store = repo.store();
    let tree = tree_of(&repo, tip);
    let mismatch = |e: &Error, size: u64| matches!(e, Error::SizeMismatch { recorded, actual: 12, .. } if *recorded == size);

    for read_data in [ReadData::No, ReadData::Yes] {
        let report = repo.fsck(read_data).unwrap();
        // The blob is checked for every size recorded for it.
        let wrong: Vec<u64> = report
            .problems
            .iter()
            .filter_map(|p| match p.error {
                Error::SizeMismatch { recorded, actual: 12, .. } => Some(recorded),
                _ => None,
            })
            .collect();
        assert_eq!(wrong, [20, 5, 0], "{read_data:?}: {report:?}");
        assert_eq!(report.problems.len(), 3, "{read_data:?}: {report:?}");
    }
    assert_eq!(&read::read_file(store.as_ref(), tree, &p("exact")).unwrap()[..], content);
    for (name, size) in [("larger", 20), ("smaller", 5), ("zero", 0)] {
        let e = read::read_file(store.as_ref(), tree, &p(name)).unwrap_err();
        assert!(mismatch(&e, size), "cat {name}: {e}");
        let e = vst::checkout(store.as_ref(), tree, &tmp.path().join(name)).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "checkout {name}: {e}");
    }
}

/// A tree with a subtree `s` (one file) reached twice: at depth 1 (as `z`,
/// the entry a stack-based walk pops first), and at the end of a chain of
/// `chain` directories, at depth `chain + 2`.
fn shared_at_two_depths(objects: &mut Objects, chain: usize) -> [u8; 32] {
    let blob = objects.put(b"f");
    let shared = objects.tree(&[raw::file(b"f", &blob, 1, false)]);
    let mut link = objects.tree(&[raw::dir(b"s", &shared)]);
    for _ in 0..chain {
        link = objects.tree(&[raw::dir(b"d", &link)]);
    }
    let root = objects.tree(&[raw::dir(b"deep", &link), raw::dir(b"z", &shared)]);
    objects.commit(&root, "a subtree shared at two depths")
}

/// Item 11: a subtree shared at depth 1 and at depth 256 (so its file is
/// 257 components deep) is too deep for fsck and a transfer (push, fetch,
/// clone), as for checkout, though it is first seen at depth 1; at depth
/// 255 it is fine everywhere.
#[test]
fn a_subtree_reused_too_deep_is_refused_wherever_it_is_first_seen() {
    use vst::limits::PATH_DEPTH_MAX;
    for (chain, too_deep) in [(PATH_DEPTH_MAX - 3, false), (PATH_DEPTH_MAX - 2, true)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut objects = Objects::default();
        let tip = shared_at_two_depths(&mut objects, chain);
        let repo = open_crafted(tmp.path(), &objects, tip);
        let store = repo.store();
        let tree = tree_of(&repo, tip);
        let shared = match read::lookup(store.as_ref(), tree, &p("z")).unwrap() {
            Some(vst::EntryKind::Dir(id)) => id.object_id(),
            other => panic!("{other:?}"),
        };
        let is_too_deep = |e: &Error| matches!(e, Error::TooDeep { id } if *id == shared);

        let report = repo.fsck(ReadData::No).unwrap();
        let checkout = vst::checkout(store.as_ref(), tree, &tmp.path().join("out"));
        let tip = CommitId::new(ObjectId::from_bytes(tip));
        let transfer = vst::sync::transfer(store.as_ref(), mem().as_ref(), tip);
        if too_deep {
            assert_eq!(report.problems.len(), 1, "{report:?}");
            assert!(is_too_deep(&report.problems[0].error), "{report:?}");
            assert!(matches!(checkout, Err(Error::TooDeep { .. })), "{checkout:?}");
            assert!(transfer.as_ref().is_err_and(is_too_deep), "{transfer:?}");
        } else {
            assert!(report.is_clean(), "{report:?}");
            checkout.unwrap();
            transfer.unwrap();
        }
    }
}

/// Item 11, the other way round: a transfer that copies the shared
/// subtree with one commit and reuses it too deep in the next still
/// refuses the second (from the height it recorded), and fsck of both
/// reports it once.
#[test]
fn a_subtree_copied_earlier_and_reused_too_deep_is_refused() {
    use vst::limits::PATH_DEPTH_MAX;
    let tmp = tempfile::tempdir().unwrap();
    let mut objects = Objects::default();
    let blob = objects.put(b"f");
    let shared = objects.tree(&[raw::file(b"f", &blob, 1, false)]);
    let first_root = objects.tree(&[raw::dir(b"z", &shared)]);
    let first = objects.commit(&first_root, "first");
    let mut link = objects.tree(&[raw::dir(b"s", &shared)]);
    for _ in 0..PATH_DEPTH_MAX - 2 {
        link = objects.tree(&[raw::dir(b"d", &link)]);
    }
    let root = objects.tree(&[raw::dir(b"deep", &link), raw::dir(b"z", &shared)]);
    let second = objects.put(&raw::commit(&root, &[first], "second"));
    let repo = open_crafted(tmp.path(), &objects, second);
    let e = vst::sync::transfer(
        repo.store().as_ref(),
        mem().as_ref(),
        CommitId::new(ObjectId::from_bytes(second)),
    )
    .unwrap_err();
    assert!(matches!(e, Error::TooDeep { id } if id == ObjectId::from_bytes(shared)), "{e}");
    let report = repo.fsck(ReadData::No).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
}

/// A store that counts its reads.
#[derive(Debug)]
struct Counting {
    inner: std::sync::Arc<dyn Store>,
    gets: AtomicU64,
}

impl Counting {
    fn reads(&self) -> u64 {
        self.gets.swap(0, Ordering::SeqCst)
    }
}

impl Store for Counting {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put(id, bytes)
    }
    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id)
    }
    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        self.inner.contains(id)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
}

/// Item 7: the shared-subtree bomb of the issue, 41 trees (40 levels, each
/// two entries for the one below; 2^40 paths to the file at the bottom).
/// Every walk refuses it, clearly and early: after reading its few
/// distinct trees, before visiting an entry or creating a directory. What
/// is bounded by distinct trees (fsck, a transfer) handles it, and a diff
/// that skips the equal subtrees by id stays small.
#[test]
fn a_shared_subtree_bomb_is_refused_before_it_expands() {
    let tmp = tempfile::tempdir().unwrap();
    let mut objects = Objects::default();
    let blob = objects.put(b"boom\n");
    let small = objects.tree(&[raw::file(b"f", &blob, 5, false)]);
    let mut below = small;
    for _ in 0..39 {
        below = objects.tree(&[raw::dir(b"a", &below), raw::dir(b"b", &below)]);
    }
    let bomb_root = objects.tree(&[raw::dir(b"a", &below), raw::dir(b"b", &below)]);
    // The bomb and one more file: the same two halves.
    let grown = objects.tree(&[
        raw::dir(b"a", &below),
        raw::dir(b"b", &below),
        raw::file(b"c", &blob, 5, false),
    ]);
    let tip = objects.commit(&bomb_root, "a shared-subtree bomb");
    let repo = open_crafted(tmp.path(), &objects, tip);
    let store = Counting { inner: repo.store(), gets: AtomicU64::new(0) };
    let [bomb, small, grown] =
        [bomb_root, small, grown].map(|t| TreeId::new(ObjectId::from_bytes(t)));
    let too_large = |e: &Error| matches!(e, Error::WalkTooLarge { id } if *id == bomb.object_id());
    // Its distinct trees, the commit, a little slack: no walk of paths.
    let early = 50;

    let e = read::walk(&store, bomb, &mut |path, _| panic!("visited {path}")).unwrap_err();
    assert!(too_large(&e), "walk: {e}");
    assert!(store.reads() < early, "walk read too much");

    let target = tmp.path().join("into");
    let e = vst::checkout(&store, bomb, &target).unwrap_err();
    assert!(too_large(&e), "checkout: {e}");
    assert!(store.reads() < early, "checkout read too much");
    assert!(!target.exists() || read_disk(&target).is_empty(), "checkout created something");

    vst::checkout(&store, small, &target).unwrap();
    // The update counts each directory it adds: here `a`, the bomb's half.
    let e = vst::checkout_update(&store, small, bomb, &target).unwrap_err();
    assert!(matches!(e, Error::WalkTooLarge { .. }), "checkout update: {e}");
    assert!(store.reads() < early, "checkout update read too much");
    assert_eq!(read_disk(&target).len(), 1, "checkout update created something");

    // `show` of the bomb's commit, and of one that removes it.
    for (old, new) in [(None, Some(bomb)), (Some(bomb), None), (Some(small), Some(bomb))] {
        let e = vst::diff_trees(&store, old, new).unwrap_err();
        assert!(matches!(e, Error::WalkTooLarge { .. }), "diff: {e}");
        assert!(store.reads() < early, "diff read too much");
    }
    let changes = vst::diff_trees(&store, Some(bomb), Some(grown)).unwrap();
    assert_eq!(changes.len(), 1, "equal subtrees are skipped: {changes:?}");

    let report = repo.fsck(ReadData::Yes).unwrap();
    assert!(report.is_clean() && report.trees == 41, "{report:?}");
    let stats =
        vst::sync::transfer(&store, mem().as_ref(), CommitId::new(ObjectId::from_bytes(tip)));
    assert_eq!(stats.unwrap().trees, 41);
}
