//! Commit: order independence, incremental = from scratch, failure
//! handling, and reading commits back.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use vst::{
    ChangeKind, CommitOptions, EntryKind, Error, FileWrite, RepoPath, Stat, Timestamp, WorkingSet,
    commit, diff_trees, read,
};
use vst_cas::{MemStore, ObjectId, Store, StoreError};

use crate::support::{mem, p};

proptest! {
    #[test]
    fn insertion_order_does_not_change_the_tree_id(
        files in prop::collection::btree_map("[a-d]{1,2}(/[a-d]{1,2}){0,3}", prop::collection::vec(any::<u8>(), 0..20), 1..40),
        seed in any::<u64>(),
    ) {
        // Keep only paths that are not a prefix directory of another path.
        let paths: Vec<_> = files.keys().cloned().collect();
        let files: Vec<_> = files
            .into_iter()
            .filter(|(k, _)| !paths.iter().any(|o| o.starts_with(&format!("{k}/"))))
            .collect();
        let mut shuffled = files.clone();
        // A seeded Fisher-Yates shuffle.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let tree_of = |order: &[(String, Vec<u8>)]| {
            let mut ws = WorkingSet::new(mem());
            for (path, content) in order {
                ws.write(&p(path), content).unwrap();
            }
            commit(&mut ws, &CommitOptions::default()).unwrap();
            ws.snapshot().tree_id().unwrap()
        };
        prop_assert_eq!(tree_of(&files), tree_of(&shuffled));
    }
}

proptest! {
    /// `write_batch` groups files by directory; whatever the batch holds
    /// (repeated paths, a file where another needs a directory, files
    /// already there, trees hashed ahead), the outcome, error included,
    /// is that of writing the files one by one.
    #[test]
    fn write_batch_equals_writes_in_order(
        before in prop::collection::vec(("[a-c](/[a-c]){0,2}", 0..3u8), 0..12),
        batch in prop::collection::vec(("[a-c](/[a-c]){0,2}", 0..3u8), 0..30),
        hash_ahead in any::<bool>(),
    ) {
        let content = |c: u8| vec![c; 60 + usize::from(c) * 500];
        let mut one = WorkingSet::new(mem());
        for (path, c) in &before {
            let _ = one.write(&p(path), &content(*c));
        }
        commit(&mut one, &CommitOptions::default()).unwrap();
        for (path, c) in before.iter().take(3) {
            let _ = one.write(&p(path), &content(*c + 1));
        }
        if hash_ahead {
            one.hash_trees();
        }
        let mut batched = one.clone();
        let paths: Vec<RepoPath> = batch.iter().map(|(path, _)| p(path)).collect();
        let contents: Vec<Vec<u8>> = batch.iter().map(|(_, c)| content(*c)).collect();
        let mut in_order = Ok(());
        for (path, c) in paths.iter().zip(&contents) {
            in_order = one.write(path, c).map(drop);
            if in_order.is_err() {
                break;
            }
        }
        let writes: Vec<FileWrite<'_>> =
            paths.iter().zip(&contents).map(|(path, content)| FileWrite { path, content }).collect();
        let at_once = batched.write_batch(&writes);
        prop_assert_eq!(format!("{in_order:?}"), format!("{at_once:?}"));
        prop_assert_eq!(one.snapshot().walk(), batched.snapshot().walk());
        let a = commit(&mut one, &CommitOptions { time: Some(Timestamp::default()), ..Default::default() }).unwrap();
        let b = commit(&mut batched, &CommitOptions { time: Some(Timestamp::default()), ..Default::default() }).unwrap();
        prop_assert_eq!(a, b);
        // The cached ids are those of a working set built from scratch.
        let mut fresh = WorkingSet::new(mem());
        for (path, stat) in batched.snapshot().walk() {
            if let Stat::File(f) = stat {
                fresh.write(&path, &batched.read(&path).unwrap()).unwrap();
                fresh.set_executable(&path, f.executable).unwrap();
            }
        }
        commit(&mut fresh, &CommitOptions::default()).unwrap();
        prop_assert_eq!(fresh.snapshot().tree_id(), batched.snapshot().tree_id());
    }
}

#[test]
fn batch_writes_equal_single_writes() {
    let contents: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 1024 + i as usize]).collect();
    let paths: Vec<RepoPath> = (0..300).map(|i| p(&format!("d{}/f{i}", i % 7))).collect();
    let mut one = WorkingSet::new(mem());
    for (path, c) in paths.iter().zip(&contents) {
        one.write(path, c).unwrap();
    }
    let mut batch = WorkingSet::new(mem());
    let writes: Vec<FileWrite<'_>> =
        paths.iter().zip(&contents).map(|(path, content)| FileWrite { path, content }).collect();
    batch.write_batch(&writes).unwrap();
    commit(&mut one, &CommitOptions::default()).unwrap();
    commit(&mut batch, &CommitOptions::default()).unwrap();
    assert_eq!(one.snapshot().tree_id(), batch.snapshot().tree_id());
    assert_eq!(batch.read(&paths[5]).unwrap(), contents[5]);
}

#[test]
fn parallel_tree_hashing_gives_the_sequential_ids() {
    let paths: Vec<RepoPath> =
        (0..4000).map(|i| p(&format!("a{}/b{}/c{}/f{i}", i % 7, i % 11, i % 17))).collect();
    // All at once: over a thousand new directories (7 x 11 x 17 leaves),
    // above PARALLEL_DIRTY_DIRS_MIN, so hashed on all cores.
    let mut wide = WorkingSet::new(mem());
    for (i, path) in paths.iter().enumerate() {
        wide.write(path, &i.to_le_bytes()).unwrap();
    }
    commit(&mut wide, &CommitOptions::default()).unwrap();
    // A few files per commit: always below the parallel threshold.
    let mut narrow = WorkingSet::new(mem());
    for (i, path) in paths.iter().enumerate() {
        narrow.write(path, &i.to_le_bytes()).unwrap();
        if i % 5 == 0 {
            commit(&mut narrow, &CommitOptions::default()).unwrap();
        }
    }
    commit(&mut narrow, &CommitOptions::default()).unwrap();
    assert_eq!(wide.snapshot().tree_id(), narrow.snapshot().tree_id());
    const { assert!(7 * 11 * 17 > vst::PARALLEL_DIRTY_DIRS_MIN) };
}

#[test]
fn large_files_hash_to_plain_blake3() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut ws = WorkingSet::new(mem());
    let id = ws.write(&p("big"), &big).unwrap();
    assert_eq!(id.as_bytes(), blake3::hash(&big).as_bytes());
}

#[test]
fn commits_chain_and_read_back() {
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("src/lib.rs"), b"pub fn f() {}\n").unwrap();
    ws.write(&p("README"), b"hi\n").unwrap();
    ws.symlink(&p("docs"), b"README").unwrap();
    let first =
        commit(&mut ws, &CommitOptions { message: "one".into(), ..Default::default() }).unwrap();
    ws.write(&p("src/lib.rs"), b"pub fn g() {}\n").unwrap();
    ws.remove(&p("README")).unwrap();
    let second =
        commit(&mut ws, &CommitOptions { message: "two".into(), ..Default::default() }).unwrap();

    let c2 = read::read_commit(store.as_ref(), second).unwrap();
    assert_eq!(c2.parents.as_slice(), [first]);
    assert_eq!(c2.message, "two");
    let c1 = read::read_commit(store.as_ref(), first).unwrap();
    assert!(c1.parents.is_empty());

    assert_eq!(
        read::read_file(store.as_ref(), c1.tree, &p("README")).unwrap(),
        Bytes::from_static(b"hi\n")
    );
    assert_eq!(
        read::read_file(store.as_ref(), c2.tree, &p("src/lib.rs")).unwrap(),
        Bytes::from_static(b"pub fn g() {}\n")
    );
    assert!(matches!(
        read::read_file(store.as_ref(), c2.tree, &p("README")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        read::read_file(store.as_ref(), c2.tree, &p("src")),
        Err(Error::IsADirectory { .. })
    ));
    assert!(matches!(
        read::read_file(store.as_ref(), c2.tree, &p("docs")),
        Err(Error::NotAFile { .. })
    ));
    assert!(matches!(
        read::lookup(store.as_ref(), c2.tree, &p("src/lib.rs/x")),
        Err(Error::NotADirectory { .. })
    ));
    let root = read::list_dir(store.as_ref(), c1.tree, &RepoPath::root()).unwrap();
    let names: Vec<_> = root.entries().iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["README", "docs", "src"]);

    let mut walked = Vec::new();
    read::walk(store.as_ref(), c1.tree, &mut |path, _| {
        walked.push(path.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(walked, ["README", "docs", "src", "src/lib.rs"]);

    let changes = diff_trees(store.as_ref(), Some(c1.tree), Some(c2.tree)).unwrap();
    let summary: Vec<_> = changes.iter().map(|c| (c.path.to_string(), c.kind())).collect();
    assert_eq!(
        summary,
        [("README".into(), ChangeKind::Removed), ("src/lib.rs".into(), ChangeKind::Modified)]
    );
    assert!(diff_trees(store.as_ref(), Some(c2.tree), Some(c2.tree)).unwrap().is_empty());

    let reloaded = WorkingSet::from_commit(store.clone(), second).unwrap();
    assert_eq!(reloaded.head(), Some(second));
    assert_eq!(reloaded.snapshot().tree_id(), Some(c2.tree));
    assert_eq!(reloaded.read(&p("src/lib.rs")).unwrap(), Bytes::from_static(b"pub fn g() {}\n"));
}

#[test]
fn diff_reports_type_changes_and_whole_subtrees() {
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("x"), b"file").unwrap();
    ws.write(&p("gone/a"), b"1").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let old = ws.snapshot().tree_id().unwrap();
    ws.remove(&p("x")).unwrap();
    ws.write(&p("x/inner"), b"now a dir").unwrap();
    ws.remove(&p("gone")).unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let new = ws.snapshot().tree_id().unwrap();
    let changes = diff_trees(store.as_ref(), Some(old), Some(new)).unwrap();
    let summary: Vec<_> = changes.iter().map(|c| (c.path.to_string(), c.kind())).collect();
    assert_eq!(
        summary,
        [
            ("gone".into(), ChangeKind::Removed),
            ("gone/a".into(), ChangeKind::Removed),
            ("x".into(), ChangeKind::TypeChanged),
            ("x/inner".into(), ChangeKind::Added),
        ]
    );
    assert!(matches!(changes[2].new, Some(EntryKind::Dir(_))));
}

#[test]
fn snapshots_are_frozen() {
    let mut ws = WorkingSet::new(mem());
    ws.write(&p("a/b"), b"1").unwrap();
    let before = ws.snapshot();
    ws.write(&p("a/b"), b"2").unwrap();
    ws.write(&p("a/c"), b"3").unwrap();
    ws.remove(&p("a/b")).unwrap();
    assert_eq!(before.read(&p("a/b")).unwrap(), Bytes::from_static(b"1"));
    assert!(before.stat(&p("a/c")).is_none());
    assert!(ws.stat(&p("a/b")).is_none());
}

#[test]
fn working_set_errors_change_nothing() {
    let mut ws = WorkingSet::new(mem());
    ws.write(&p("f"), b"file").unwrap();
    ws.create_dir_all(&p("d")).unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let clean = ws.snapshot().tree_id();
    assert!(matches!(ws.write(&p("f/x"), b""), Err(Error::NotADirectory { .. })));
    assert!(matches!(ws.write(&p("d"), b""), Err(Error::IsADirectory { .. })));
    assert!(matches!(ws.symlink(&p("d"), b"t"), Err(Error::IsADirectory { .. })));
    assert!(matches!(ws.symlink(&p("l"), b""), Err(Error::InvalidSymlink { .. })));
    assert!(matches!(ws.set_executable(&p("d"), true), Err(Error::IsADirectory { .. })));
    assert!(matches!(ws.set_executable(&p("nope"), true), Err(Error::NotFound { .. })));
    assert!(matches!(ws.remove(&p("nope")), Err(Error::NotFound { .. })));
    assert!(matches!(ws.create_dir_all(&p("f")), Err(Error::NotADirectory { .. })));
    assert!(matches!(ws.remove(&RepoPath::root()), Err(Error::Root { .. })));
    assert_eq!(ws.snapshot().tree_id(), clean, "failed operations leave the cached ids alone");
    assert!(matches!(ws.stat(&p("f")), Some(Stat::File(_))));
}

/// A store that fails writes when told to.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemStore,
    fail: std::sync::atomic::AtomicBool,
    fail_sync: std::sync::atomic::AtomicBool,
}

impl Store for FlakyStore {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_batch(&[(id, bytes)])
    }
    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Io { op: "append", source: std::io::Error::other("injected") });
        }
        self.inner.put_batch(objects)
    }
    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        self.inner.get(id)
    }
    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        self.inner.contains(id)
    }
    fn sync(&self) -> Result<(), StoreError> {
        if self.fail_sync.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Io { op: "sync", source: std::io::Error::other("injected") });
        }
        Ok(())
    }
}

#[test]
fn a_failed_commit_loses_nothing_and_the_next_one_is_complete() {
    let store = Arc::new(FlakyStore::default());
    let mut ws = WorkingSet::new(store.clone());
    for i in 0..20 {
        ws.write(&p(&format!("a/b{}/f{i}", i % 3)), &[i as u8; 10]).unwrap();
    }
    store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        commit(&mut ws, &CommitOptions::default()),
        Err(Error::Store(StoreError::Io { .. }))
    ));
    assert_eq!(ws.head(), None);
    assert_eq!(ws.read(&p("a/b1/f1")).unwrap(), Bytes::from(vec![1u8; 10]));
    store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let id = commit(&mut ws, &CommitOptions::default()).unwrap();
    // Every tree the commit names is in the store: a full walk succeeds.
    let tree = read::read_commit(&*store, id).unwrap().tree;
    let mut files = 0;
    read::walk(&*store, tree, &mut |_, k| {
        files += matches!(k, EntryKind::File(_)) as usize;
        Ok(())
    })
    .unwrap();
    assert_eq!(files, 20);
}

#[test]
fn the_deepest_allowed_paths_round_trip() {
    let max = vst::limits::PATH_DEPTH_MAX;
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    let deepest_dir = vec!["d"; max].join("/");
    ws.create_dir_all(&p(&deepest_dir)).unwrap();
    let deepest_file = format!("{}/f", vec!["e"; max - 1].join("/"));
    ws.write(&p(&deepest_file), b"deep").unwrap();
    let id = commit(&mut ws, &CommitOptions::default()).unwrap();
    let tree = read::read_commit(&*store, id).unwrap().tree;
    let reloaded = WorkingSet::from_commit(store.clone(), id).unwrap();
    assert_eq!(reloaded.read(&p(&deepest_file)).unwrap(), Bytes::from_static(b"deep"));
    let mut count = 0;
    read::walk(&*store, tree, &mut |_, _| {
        count += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(count, 2 * max);
    assert_eq!(diff_trees(&*store, None, Some(tree)).unwrap().len(), 2 * max);
    let dir = tempfile::tempdir().unwrap();
    vst::checkout(&*store, tree, &dir.path().join("t")).unwrap();
}

#[test]
fn a_shared_subtree_reused_deeper_is_still_bounded() {
    use crate::support::{put_raw, raw};
    let store = MemStore::new();
    let chain = |store: &MemStore, name: &[u8], levels: usize, bottom: ObjectId| {
        let mut id = bottom;
        for _ in 0..levels {
            id = put_raw(store, &raw::tree(&[raw::dir(name, id.as_bytes())]));
        }
        id
    };
    let empty = put_raw(&store, &raw::tree(&[]));
    let x200 = chain(&store, b"d", 200, empty);
    // "a" holds the 200-deep chain; "b" reaches the same chain 100 levels
    // down: 300 levels, over the limit, although each tree alone is fine.
    let y = chain(&store, b"e", 100, x200);
    let root = put_raw(
        &store,
        &raw::tree(&[raw::dir(b"a", x200.as_bytes()), raw::dir(b"b", y.as_bytes())]),
    );
    let store: Arc<dyn Store> = Arc::new(store);
    let tree = vst::TreeId::new(root);
    assert!(matches!(WorkingSet::from_tree(store.clone(), tree), Err(Error::TooDeep { .. })));
    assert!(matches!(
        read::walk(store.as_ref(), tree, &mut |_, _| Ok(())),
        Err(Error::TooDeep { .. })
    ));
}

#[test]
fn a_failed_sync_fails_the_commit() {
    let store = Arc::new(FlakyStore::default());
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("a/b"), b"1").unwrap();
    store.fail_sync.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(commit(&mut ws, &CommitOptions::default()).is_err());
    assert_eq!(ws.head(), None, "an unsynced commit is not the head");
    store.fail_sync.store(false, std::sync::atomic::Ordering::SeqCst);
    let id = commit(&mut ws, &CommitOptions::default()).unwrap();
    assert_eq!(ws.head(), Some(id));
    // A commit without durability does not sync at all.
    ws.write(&p("a/c"), b"2").unwrap();
    store.fail_sync.store(true, std::sync::atomic::Ordering::SeqCst);
    let options = CommitOptions { durability: vst_cas::Durability::None, ..Default::default() };
    assert!(commit(&mut ws, &options).is_ok());
}

#[test]
fn a_tree_nested_too_deep_is_refused() {
    // Build the chain from the bottom with the tests' own encoder: the
    // library refuses to build paths this deep.
    let store = MemStore::new();
    let mut id = crate::support::put_raw(&store, &crate::support::raw::tree(&[]));
    for _ in 0..=vst::limits::PATH_DEPTH_MAX {
        id = crate::support::put_raw(
            &store,
            &crate::support::raw::tree(&[crate::support::raw::dir(b"d", id.as_bytes())]),
        );
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let tree = vst::TreeId::new(id);
    assert!(matches!(WorkingSet::from_tree(store.clone(), tree), Err(Error::TooDeep { .. })));
    assert!(matches!(
        read::walk(store.as_ref(), tree, &mut |_, _| Ok(())),
        Err(Error::TooDeep { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        vst::checkout(store.as_ref(), tree, &dir.path().join("t")),
        Err(Error::TooDeep { .. })
    ));
}

#[test]
fn rename_moves_files_and_subtrees_like_a_rewrite() {
    let mut ws = WorkingSet::new(mem());
    ws.write(&p("a/b/c.txt"), b"c").unwrap();
    ws.write(&p("a/b/d.txt"), b"d").unwrap();
    ws.write(&p("a/x.txt"), b"x").unwrap();
    ws.write(&p("z/keep.txt"), b"keep").unwrap();
    ws.write(&p("z/over.txt"), b"old").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();

    // A directory into another directory (its cached id travels with it),
    // a file over a file, and a file renamed in place.
    ws.rename(&p("a/b"), &p("z/b")).unwrap();
    assert!(matches!(ws.stat(&p("z/b")), Some(Stat::Dir(Some(_)))), "the moved dir keeps its id");
    ws.rename(&p("a/x.txt"), &p("z/over.txt")).unwrap();
    ws.rename(&p("z/keep.txt"), &p("z/kept.txt")).unwrap();
    let renamed = commit(&mut ws, &CommitOptions::default()).unwrap();

    let mut fresh = WorkingSet::new(mem());
    fresh.write(&p("z/b/c.txt"), b"c").unwrap();
    fresh.write(&p("z/b/d.txt"), b"d").unwrap();
    fresh.write(&p("z/over.txt"), b"x").unwrap();
    fresh.write(&p("z/kept.txt"), b"keep").unwrap();
    fresh.create_dir_all(&p("a")).unwrap();
    let expected = commit(&mut fresh, &CommitOptions::default()).unwrap();
    let tree = |ws: &WorkingSet, id| read::read_commit(ws.store().as_ref(), id).unwrap().tree;
    assert_eq!(tree(&ws, renamed), tree(&fresh, expected));

    // Into itself, over an ancestor, from nowhere, to a missing parent.
    assert!(matches!(ws.rename(&p("z"), &p("z/b/in")), Err(Error::RenameIntoItself { .. })));
    assert!(matches!(ws.rename(&p("z/b"), &p("z")), Err(Error::RenameIntoItself { .. })));
    assert!(matches!(ws.rename(&p("nothing"), &p("q")), Err(Error::NotFound { .. })));
    assert!(matches!(ws.rename(&p("z/b"), &p("no/where")), Err(Error::NotFound { .. })));
    ws.rename(&p("z/b"), &p("z/b")).unwrap();
    assert_eq!(
        ws.snapshot().tree_id(),
        Some(tree(&fresh, expected)),
        "failed renames change nothing"
    );
}

#[test]
fn prepared_trees_are_stored_by_the_next_commit_and_dropped_when_edited() {
    let store = Arc::new(MemStore::new());
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("a/b/c.txt"), b"c").unwrap();
    ws.write(&p("a/x.txt"), b"x").unwrap();
    ws.write(&p("z/keep.txt"), b"keep").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();

    ws.write(&p("a/b/c.txt"), b"c2").unwrap();
    ws.write(&p("z/new/n.txt"), b"n").unwrap();
    let objects = store.len();
    let prepared = ws.hash_trees();
    assert_eq!(store.len(), objects, "hash_trees stores nothing");
    assert_eq!(ws.snapshot().tree_id(), None, "a prepared root is not a stored tree");
    assert_eq!(ws.stat(&p("a/b")), Some(Stat::Dir(None)), "nor a prepared directory");
    assert_eq!(ws.hash_trees(), prepared, "preparing twice changes nothing");

    // An edit after preparing: the prepared trees above it are dropped,
    // and a prepared subtree moved elsewhere is still stored.
    ws.write(&p("a/x.txt"), b"x2").unwrap();
    ws.rename(&p("z/new"), &p("a/new")).unwrap();
    let id = commit(&mut ws, &CommitOptions::default()).unwrap();
    let tree = read::read_commit(store.as_ref(), id).unwrap().tree;
    assert_eq!(ws.snapshot().tree_id(), Some(tree));

    let mut fresh = WorkingSet::new(mem());
    fresh.write(&p("a/b/c.txt"), b"c2").unwrap();
    fresh.write(&p("a/x.txt"), b"x2").unwrap();
    fresh.write(&p("a/new/n.txt"), b"n").unwrap();
    fresh.write(&p("z/keep.txt"), b"keep").unwrap();
    commit(&mut fresh, &CommitOptions::default()).unwrap();
    assert_eq!(Some(tree), fresh.snapshot().tree_id());
    // Every tree the commit names is in the store: loading reads them all.
    let loaded = WorkingSet::from_commit(store.clone(), id).unwrap();
    assert_eq!(loaded.read(&p("a/new/n.txt")).unwrap(), Bytes::from_static(b"n"));
    // The prepared root of before the edit was never stored.
    assert!(!store.contains(&prepared.object_id()).unwrap());
}

#[test]
fn a_tree_prepared_in_two_directories_is_stored_while_either_still_has_it() {
    let store = Arc::new(MemStore::new());
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("base.txt"), b"base").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();

    // Two directories with the same content: one tree, prepared twice.
    ws.write(&p("one/same.txt"), b"same").unwrap();
    ws.write(&p("two/same.txt"), b"same").unwrap();
    ws.hash_trees();
    assert_eq!(ws.stat(&p("one")), Some(Stat::Dir(None)), "prepared, not stored yet");
    // An edit in one of them drops one count of the shared tree, not the
    // tree: the other directory still has it.
    ws.write(&p("one/other.txt"), b"other").unwrap();
    let id = commit(&mut ws, &CommitOptions::default()).unwrap();
    let loaded = WorkingSet::from_commit(store.clone(), id).unwrap();
    assert_eq!(loaded.read(&p("two/same.txt")).unwrap(), Bytes::from_static(b"same"));
    assert_eq!(loaded.read(&p("one/other.txt")).unwrap(), Bytes::from_static(b"other"));
}

#[test]
fn preparing_after_every_edit_stores_only_the_trees_of_the_commit() {
    let store = Arc::new(MemStore::new());
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("d/e/f.txt"), b"0").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    // Ten rounds of edit and prepare, as the mount's settler does between
    // closes: each round prepares a new root, d and d/e.
    for round in 1..=10u32 {
        ws.write(&p("d/e/f.txt"), round.to_string().as_bytes()).unwrap();
        ws.hash_trees();
    }
    let before = store.len();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    // The last round's three trees and the commit object; the blobs were
    // stored as they were written.
    assert_eq!(store.len(), before + 4, "only the trees the commit names are stored");
}

#[test]
fn a_repo_commit_refused_by_a_moved_branch_leaves_the_working_set_on_its_head() {
    use std::path::Path;
    use vst::Repo;
    use vst_cas::Access;
    use vst_cas::sim::SimFs;
    let fs = SimFs::new();
    let repo = Repo::open_with(Arc::new(fs), Path::new("/r"), Access::ReadWrite).unwrap();
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("a"), b"a").unwrap();
    let base = repo.commit(&mut ws, &CommitOptions::default()).unwrap();
    // Another writer moves the branch.
    let mut other = repo.working_set().unwrap();
    other.write(&p("b"), b"b").unwrap();
    let moved = repo.commit(&mut other, &CommitOptions::default()).unwrap();
    ws.write(&p("c"), b"c").unwrap();
    let refused = repo.commit(&mut ws, &CommitOptions::default());
    assert!(refused.is_err(), "the branch moved: {refused:?}");
    assert_eq!(ws.head(), Some(base), "not the commit no ref names");
    assert_eq!(repo.head_commit().unwrap(), Some(moved));
}

/// A batch large enough that the store copies it while the files are
/// recorded: a failed put leaves the working set as it was, as a small
/// batch's does (nothing recorded that the store lacks).
#[test]
fn a_large_batch_whose_put_fails_records_nothing() {
    for files in [4usize, 600] {
        let store = Arc::new(FlakyStore::default());
        let mut ws = WorkingSet::new(store.clone());
        ws.write(&p("kept"), b"k").unwrap();
        let before = ws.snapshot().tree_id();
        let paths: Vec<RepoPath> = (0..files).map(|i| p(&format!("d{}/f{i}", i % 7))).collect();
        let contents: Vec<Vec<u8>> = (0..files).map(|i| vec![i as u8; 1024]).collect();
        let writes: Vec<FileWrite<'_>> = paths
            .iter()
            .zip(&contents)
            .map(|(path, content)| FileWrite { path, content })
            .collect();
        store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(ws.write_batch(&writes), Err(Error::Store(StoreError::Io { .. }))));
        assert_eq!(ws.snapshot().tree_id(), before, "{files} files: nothing recorded");
        assert!(ws.stat(&p("d0/f0")).is_none());
        store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        ws.write_batch(&writes).unwrap();
        let id = commit(&mut ws, &CommitOptions::default()).unwrap();
        let tree = read::read_commit(&*store, id).unwrap().tree;
        let mut stored = 0;
        read::walk(&*store, tree, &mut |_, k| {
            stored += matches!(k, EntryKind::File(_)) as usize;
            Ok(())
        })
        .unwrap();
        assert_eq!(stored, files + 1);
    }
}
