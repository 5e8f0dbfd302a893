//! Three-way merges (`vst::merge`): random edits on two branches from a
//! common base against a model merge; symmetry; a side equal to the base;
//! each kind of conflict; the merge base of two histories; and a merge of
//! a 100,000-file tree that reads only the directories on changed paths.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use vst::merge::{ConflictKind, merge_base, merge_trees};
use vst::{CommitOptions, EntryKind, TreeId, WorkingSet, commit};
use vst_cas::{MemStore, Store};

use crate::support::{Largest, Plain, mem, p, read_tree_plain};

/// Paths none of which is a prefix of another: the model's merge is then
/// one decision per path (file/directory conflicts are tested apart).
const PATHS: [&str; 6] = ["top", "a/x", "a/y", "b/c/z", "b/c/w", "b/d"];

#[derive(Clone, Debug)]
enum Edit {
    Write(usize, u8),
    Remove(usize),
    Chmod(usize, bool),
    Symlink(usize, u8),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let path = 0..PATHS.len();
    prop_oneof![
        (path.clone(), 0..4u8).prop_map(|(i, c)| Edit::Write(i, c)),
        path.clone().prop_map(Edit::Remove),
        (path.clone(), any::<bool>()).prop_map(|(i, x)| Edit::Chmod(i, x)),
        (path, 0..2u8).prop_map(|(i, c)| Edit::Symlink(i, c)),
    ]
}

/// What a path holds, as the model sees it.
type Model = BTreeMap<&'static str, Plain>;

fn apply(ws: &mut WorkingSet, model: &mut Model, edit: &Edit) {
    match *edit {
        Edit::Write(i, c) => {
            let content = vec![b'0' + c; 3];
            ws.write(&p(PATHS[i]), &content).unwrap();
            let executable =
                matches!(model.get(PATHS[i]), Some(Plain::File { executable: true, .. }));
            if executable {
                ws.set_executable(&p(PATHS[i]), true).unwrap();
            }
            model.insert(PATHS[i], Plain::File { content, executable });
        }
        Edit::Remove(i) => {
            if model.remove(PATHS[i]).is_some() {
                ws.remove(&p(PATHS[i])).unwrap();
            }
        }
        Edit::Chmod(i, x) => {
            if let Some(Plain::File { executable, .. }) = model.get_mut(PATHS[i]) {
                ws.set_executable(&p(PATHS[i]), x).unwrap();
                *executable = x;
            }
        }
        Edit::Symlink(i, c) => {
            let target = vec![b't', b'0' + c];
            if model.contains_key(PATHS[i]) {
                ws.remove(&p(PATHS[i])).unwrap();
            }
            ws.symlink(&p(PATHS[i]), &target).unwrap();
            model.insert(PATHS[i], Plain::Symlink(target));
        }
    }
}

/// The files and symlinks of a stored tree (directories left out: the
/// model has none, and a directory emptied on both sides may remain).
fn leaves(store: &dyn Store, tree: TreeId) -> BTreeMap<Vec<u8>, Plain> {
    read_tree_plain(store, tree).into_iter().filter(|(_, v)| *v != Plain::Dir).collect()
}

fn as_bytes(model: &Model) -> BTreeMap<Vec<u8>, Plain> {
    model.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect()
}

/// The model's merge: one decision per path; a file's content and
/// executable bit apart; a conflict keeps ours.
fn model_merge(base: &Model, ours: &Model, theirs: &Model) -> (Model, BTreeSet<&'static str>) {
    let mut out = Model::new();
    let mut conflicts = BTreeSet::new();
    for path in PATHS {
        let (b, o, t) = (base.get(path), ours.get(path), theirs.get(path));
        let merged = if o == t || b == t {
            o.cloned()
        } else if b == o {
            t.cloned()
        } else {
            match (b, o, t) {
                (
                    b,
                    Some(Plain::File { content: oc, executable: ox }),
                    Some(Plain::File { content: tc, executable: tx }),
                ) => {
                    let (bc, bx) = match b {
                        Some(Plain::File { content, executable }) => {
                            (Some(content), Some(*executable))
                        }
                        _ => (None, None),
                    };
                    let content = if oc == tc || bc == Some(tc) {
                        Some(oc.clone())
                    } else if bc == Some(oc) {
                        Some(tc.clone())
                    } else {
                        None
                    };
                    let executable = if ox == tx {
                        Some(*ox)
                    } else {
                        bx.map(|bx| if bx == *ox { *tx } else { *ox })
                    };
                    match (content, executable) {
                        (Some(content), Some(executable)) => {
                            Some(Plain::File { content, executable })
                        }
                        _ => {
                            conflicts.insert(path);
                            o.cloned()
                        }
                    }
                }
                _ => {
                    conflicts.insert(path);
                    o.cloned()
                }
            }
        };
        if let Some(m) = merged {
            out.insert(path, m);
        }
    }
    (out, conflicts)
}

fn run_model(base_edits: Vec<Edit>, our_edits: Vec<Edit>, their_edits: Vec<Edit>) {
    let store = mem();
    let options = CommitOptions::default();
    let mut ws = WorkingSet::new(store.clone());
    let mut base = Model::new();
    for e in &base_edits {
        apply(&mut ws, &mut base, e);
    }
    commit(&mut ws, &options).unwrap();
    let base_tree = ws.snapshot().tree_id().unwrap();
    let side = |edits: &[Edit]| {
        let mut ws = WorkingSet::from_tree(store.clone(), base_tree).unwrap();
        let mut model = base.clone();
        for e in edits {
            apply(&mut ws, &mut model, e);
        }
        commit(&mut ws, &options).unwrap();
        (ws.snapshot().tree_id().unwrap(), model)
    };
    let (ours, our_model) = side(&our_edits);
    let (theirs, their_model) = side(&their_edits);

    let merged = merge_trees(store.as_ref(), Some(base_tree), ours, theirs).unwrap();
    let (want, want_conflicts) = model_merge(&base, &our_model, &their_model);
    assert_eq!(leaves(store.as_ref(), merged.tree), as_bytes(&want));
    let got_conflicts: BTreeSet<String> =
        merged.conflicts.iter().map(|c| c.path.to_string()).collect();
    let want_conflicts: BTreeSet<String> = want_conflicts.iter().map(|s| s.to_string()).collect();
    assert_eq!(got_conflicts, want_conflicts);

    // Symmetric up to which side is ours: the same conflicts, and the same
    // tree wherever there is none.
    let swapped = merge_trees(store.as_ref(), Some(base_tree), theirs, ours).unwrap();
    let paths =
        |m: &vst::merge::Merged| m.conflicts.iter().map(|c| c.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&merged), paths(&swapped));
    let outside = |tree| {
        let mut l = leaves(store.as_ref(), tree);
        l.retain(|k, _| !got_conflicts.contains(std::str::from_utf8(k).unwrap()));
        l
    };
    assert_eq!(outside(merged.tree), outside(swapped.tree));
    if merged.conflicts.is_empty() {
        assert_eq!(merged.tree, swapped.tree);
    }

    // A side equal to the base: the other side, exactly.
    let same = merge_trees(store.as_ref(), Some(base_tree), base_tree, theirs).unwrap();
    assert_eq!((same.tree, same.conflicts.len()), (theirs, 0));
    let same = merge_trees(store.as_ref(), Some(base_tree), ours, base_tree).unwrap();
    assert_eq!((same.tree, same.conflicts.len()), (ours, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn merges_equal_the_model_and_are_symmetric(
        base in prop::collection::vec(arb_edit(), 0..8),
        ours in prop::collection::vec(arb_edit(), 0..6),
        theirs in prop::collection::vec(arb_edit(), 0..6),
    ) {
        run_model(base, ours, theirs);
    }
}

/// A tree from `(path, content)` pairs, stored.
fn tree(store: &Arc<MemStore>, files: &[(&str, &str)]) -> TreeId {
    let mut ws = WorkingSet::new(store.clone());
    for (path, content) in files {
        ws.write(&p(path), content.as_bytes()).unwrap();
    }
    commit(&mut ws, &CommitOptions::default()).unwrap();
    ws.snapshot().tree_id().unwrap()
}

#[test]
fn each_kind_of_conflict_is_named() {
    let store = mem();
    let base = tree(&store, &[("m", "1"), ("d", "1"), ("fd", "1"), ("keep", "k")]);
    let ours = tree(&store, &[("m", "ours"), ("fd", "2"), ("add", "ours"), ("keep", "k")]);
    let theirs = tree(
        &store,
        &[("m", "theirs"), ("d", "changed"), ("fd/inner", "x"), ("add", "theirs"), ("keep", "k")],
    );
    let merged = merge_trees(store.as_ref(), Some(base), ours, theirs).unwrap();
    let kinds: Vec<(String, ConflictKind)> =
        merged.conflicts.iter().map(|c| (c.path.to_string(), c.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("add".to_owned(), ConflictKind::BothAdded),
            ("d".to_owned(), ConflictKind::ModifiedDeleted),
            ("fd".to_owned(), ConflictKind::FileDirectory),
            ("m".to_owned(), ConflictKind::BothModified),
        ]
    );
    // Ours is kept at each conflict; `d` is gone as on our side.
    let files = leaves(store.as_ref(), merged.tree);
    let names: Vec<&[u8]> = files.keys().map(|k| k.as_slice()).collect();
    assert_eq!(names, [&b"add"[..], b"fd", b"keep", b"m"]);
}

#[test]
fn content_and_executable_bit_merge_apart() {
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("run.sh"), b"echo 1").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let base = ws.snapshot().tree_id().unwrap();
    ws.set_executable(&p("run.sh"), true).unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let ours = ws.snapshot().tree_id().unwrap();
    let theirs = tree(&store, &[("run.sh", "echo 2")]);
    let merged = merge_trees(store.as_ref(), Some(base), ours, theirs).unwrap();
    assert!(merged.conflicts.is_empty());
    let entry = vst::read::lookup(store.as_ref(), merged.tree, &p("run.sh")).unwrap();
    let Some(EntryKind::File(f)) = entry else { panic!("{entry:?}") };
    assert!(f.executable);
    assert_eq!(vst::read::read_blob(store.as_ref(), &f).unwrap().as_ref(), b"echo 2");
}

#[test]
fn the_merge_base_is_the_newest_common_commit() {
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    let at = |unix_us| CommitOptions {
        time: Some(vst::Timestamp { unix_us, tz_offset_min: 0 }),
        ..Default::default()
    };
    ws.write(&p("f"), b"0").unwrap();
    let root = commit(&mut ws, &at(1)).unwrap();
    ws.write(&p("f"), b"1").unwrap();
    let fork = commit(&mut ws, &at(2)).unwrap();
    ws.write(&p("a"), b"a").unwrap();
    let a1 = commit(&mut ws, &at(3)).unwrap();
    ws.write(&p("a"), b"aa").unwrap();
    let a2 = commit(&mut ws, &at(6)).unwrap();
    let mut other = WorkingSet::from_commit(store.clone(), fork).unwrap();
    other.write(&p("b"), b"b").unwrap();
    let b1 = commit(&mut other, &at(4)).unwrap();
    assert_eq!(merge_base(store.as_ref(), a2, b1).unwrap(), Some(fork));
    assert_eq!(merge_base(store.as_ref(), b1, a2).unwrap(), Some(fork));
    assert_eq!(merge_base(store.as_ref(), a2, a1).unwrap(), Some(a1));
    assert_eq!(merge_base(store.as_ref(), root, a2).unwrap(), Some(root));
    // After a merge of b1 into a2, the next merge's base is b1.
    ws.write(&p("b"), b"b").unwrap();
    let merge = commit(&mut ws, &CommitOptions { merged: vec![b1], ..at(7) }).unwrap();
    other.write(&p("b"), b"bb").unwrap();
    let b2 = commit(&mut other, &at(8)).unwrap();
    assert_eq!(merge_base(store.as_ref(), merge, b2).unwrap(), Some(b1));
    // Unrelated histories share nothing.
    let mut lone = WorkingSet::new(store.clone());
    lone.write(&p("z"), b"z").unwrap();
    let z = commit(&mut lone, &at(5)).unwrap();
    assert_eq!(merge_base(store.as_ref(), z, a2).unwrap(), None);
}

#[test]
fn a_merge_reads_only_the_directories_on_changed_paths() {
    let store = Arc::new(Largest::new(MemStore::new()));
    let mut ws = WorkingSet::new(store.clone());
    // 100,000 files: 10 top directories, 100 below each, 100 files in each.
    let paths: Vec<_> =
        (0..100_000).map(|i| p(&format!("t{}/m{}/f{i}", i % 10, (i / 10) % 100))).collect();
    let batch: Vec<_> = paths.iter().map(|path| vst::FileWrite { path, content: b"x" }).collect();
    ws.write_batch(&batch).unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let base = ws.snapshot().tree_id().unwrap();
    let side = |changed: std::ops::Range<usize>| {
        let mut ws = WorkingSet::from_tree(store.clone(), base).unwrap();
        for i in changed.clone() {
            ws.write(&paths[i * 997], format!("changed {i}").as_bytes()).unwrap();
        }
        commit(&mut ws, &CommitOptions::default()).unwrap();
        let dirs: BTreeSet<String> = changed
            .flat_map(|i| {
                let path = paths[i * 997].to_string();
                let parts: Vec<&str> = path.split('/').collect();
                (0..parts.len()).map(move |n| parts[..n].join("/")).collect::<Vec<_>>()
            })
            .collect();
        (ws.snapshot().tree_id().unwrap(), dirs)
    };
    let (ours, our_dirs) = side(0..10);
    let (theirs, their_dirs) = side(10..20);
    let before = store.gets();
    let merged = merge_trees(store.as_ref(), Some(base), ours, theirs).unwrap();
    let reads = store.gets() - before;
    assert!(merged.conflicts.is_empty());
    // A directory both sides changed is read three times (base, ours,
    // theirs); one only a side changed is taken whole, unread.
    let both: BTreeSet<_> = our_dirs.intersection(&their_dirs).collect();
    assert!(reads <= 3 * both.len() as u64, "{reads} reads for {} directories", both.len());
    // And the result is every change of both.
    for i in 0..20 {
        let got = vst::read::read_file(store.as_ref(), merged.tree, &paths[i * 997]).unwrap();
        assert_eq!(got.as_ref(), format!("changed {i}").as_bytes());
    }
}
