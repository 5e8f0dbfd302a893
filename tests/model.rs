//! The model test: random sequences of operations on a working set,
//! checked against a `BTreeMap` that does the same thing the obvious way.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vst::{
    ChangeKind, CommitId, CommitOptions, RepoPath, Snapshot, Stat, TreeId, WorkingSet, checkout,
    checkout_update, commit, diff_trees, read,
};

use crate::support::{Plain, mem, read_disk, read_tree_plain};

type Model = BTreeMap<Vec<u8>, Plain>;

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    Symlink(Vec<u8>, Vec<u8>),
    Chmod(Vec<u8>, bool),
    Mkdir(Vec<u8>),
    Snapshot,
    /// `hash_trees`: ids computed ahead, trees kept for the next commit.
    HashTrees,
    Commit,
    Checkout(usize),
}

fn arb_path() -> impl Strategy<Value = Vec<u8>> {
    // Few names and shallow paths, so that operations collide: a file
    // written where a directory is, a removal of a directory with content.
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c.txt", "\u{e9}"]), 1..4)
        .prop_map(|parts| parts.join("/").into_bytes())
}

fn arb_op() -> impl Strategy<Value = Op> {
    let content = prop::sample::select(vec![&b""[..], b"x", b"hello\n", b"other content"])
        .prop_map(|c| c.to_vec());
    let target =
        prop::sample::select(vec!["a", "../up", "/abs/path"]).prop_map(|t| t.as_bytes().to_vec());
    prop_oneof![
        6 => (arb_path(), content).prop_map(|(p, c)| Op::Write(p, c)),
        2 => arb_path().prop_map(Op::Remove),
        1 => (arb_path(), target).prop_map(|(p, t)| Op::Symlink(p, t)),
        2 => (arb_path(), any::<bool>()).prop_map(|(p, x)| Op::Chmod(p, x)),
        1 => arb_path().prop_map(Op::Mkdir),
        1 => Just(Op::Snapshot),
        2 => Just(Op::HashTrees),
        2 => Just(Op::Commit),
        1 => any::<usize>().prop_map(Op::Checkout),
    ]
}

/// The parent paths of `path`, shortest first.
fn ancestors(path: &[u8]) -> Vec<Vec<u8>> {
    path.iter().enumerate().filter(|(_, b)| **b == b'/').map(|(i, _)| path[..i].to_vec()).collect()
}

/// Applies an operation to the model, with the working set's rules:
/// missing parents are created, nothing is written through a file, a
/// directory is never replaced by a write. Returns whether it succeeded.
fn apply(model: &mut Model, op: &Op) -> bool {
    let parents_ok = |model: &Model, path: &[u8]| {
        ancestors(path).iter().all(|a| matches!(model.get(a), None | Some(Plain::Dir)))
    };
    let make_parents = |model: &mut Model, path: &[u8]| {
        for a in ancestors(path) {
            model.insert(a, Plain::Dir);
        }
    };
    match op {
        Op::Write(path, content) => {
            if !parents_ok(model, path) || model.get(path) == Some(&Plain::Dir) {
                return false;
            }
            make_parents(model, path);
            let executable = matches!(model.get(path), Some(Plain::File { executable: true, .. }));
            model.insert(path.clone(), Plain::File { content: content.clone(), executable });
            true
        }
        Op::Symlink(path, target) => {
            if !parents_ok(model, path) || model.get(path) == Some(&Plain::Dir) {
                return false;
            }
            make_parents(model, path);
            model.insert(path.clone(), Plain::Symlink(target.clone()));
            true
        }
        Op::Chmod(path, x) => match model.get_mut(path) {
            Some(Plain::File { executable, .. }) => {
                *executable = *x;
                true
            }
            _ => false,
        },
        Op::Mkdir(path) => {
            if !parents_ok(model, path) || !matches!(model.get(path), None | Some(Plain::Dir)) {
                return false;
            }
            make_parents(model, path);
            model.insert(path.clone(), Plain::Dir);
            true
        }
        Op::Remove(path) => {
            if model.remove(path).is_none() {
                return false;
            }
            let mut prefix = path.clone();
            prefix.push(b'/');
            model.retain(|k, _| !k.starts_with(&prefix));
            true
        }
        Op::Snapshot | Op::HashTrees | Op::Commit | Op::Checkout(_) => true,
    }
}

fn run(ws: &mut WorkingSet, op: &Op) -> bool {
    let path = |p: &Vec<u8>| RepoPath::try_from(&p[..]).unwrap();
    match op {
        Op::Write(p, c) => ws.write(&path(p), c).is_ok(),
        Op::Remove(p) => ws.remove(&path(p)).is_ok(),
        Op::Symlink(p, t) => ws.symlink(&path(p), t).is_ok(),
        Op::Chmod(p, x) => ws.set_executable(&path(p), *x).is_ok(),
        Op::Mkdir(p) => ws.create_dir_all(&path(p)).is_ok(),
        Op::Snapshot | Op::HashTrees | Op::Commit | Op::Checkout(_) => true,
    }
}

/// What a snapshot holds, in model form.
fn snapshot_plain(snap: &Snapshot) -> Model {
    snap.walk()
        .into_iter()
        .map(|(path, stat)| {
            let plain = match stat {
                Stat::File(f) => Plain::File {
                    content: snap.read(&path).unwrap().to_vec(),
                    executable: f.executable,
                },
                Stat::Symlink(t) => Plain::Symlink(t.as_bytes().to_vec()),
                Stat::Dir(_) => Plain::Dir,
            };
            (path.as_bytes().to_vec(), plain)
        })
        .collect()
}

/// The tree id of `model` committed from scratch, with entries inserted in
/// the reverse of sorted order.
fn scratch_tree_id(model: &Model) -> TreeId {
    let mut ws = WorkingSet::new(mem());
    for (path, plain) in model.iter().rev() {
        let path = RepoPath::try_from(&path[..]).unwrap();
        match plain {
            Plain::File { content, executable } => {
                ws.write(&path, content).unwrap();
                ws.set_executable(&path, *executable).unwrap();
            }
            Plain::Symlink(t) => ws.symlink(&path, t).unwrap(),
            Plain::Dir => ws.create_dir_all(&path).unwrap(),
        }
    }
    commit(&mut ws, &CommitOptions::default()).unwrap();
    ws.snapshot().tree_id().unwrap()
}

/// The changes between two models, as (path, kind), the way `diff_trees`
/// reports them: directories on both sides are not changes themselves.
fn model_diff(old: &Model, new: &Model) -> BTreeSet<(Vec<u8>, ChangeKind)> {
    let keys: BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let kind = match (old.get(k), new.get(k)) {
                (Some(a), Some(b)) if a == b => return None,
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Removed,
                (Some(a), Some(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => {
                    ChangeKind::Modified
                }
                _ => ChangeKind::TypeChanged,
            };
            Some((k.clone(), kind))
        })
        .collect()
}

fn check_sequence(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    let mut commits: Vec<(CommitId, Model)> = Vec::new();
    let live = tempfile::tempdir().unwrap();
    let live_dir = live.path().join("live");
    let mut live_tree: Option<TreeId> = None;

    for op in &ops {
        let expect_ok = apply(&mut model, op);
        prop_assert_eq!(run(&mut ws, op), expect_ok, "op {:?} succeeded on one side only", op);
        match op {
            Op::Snapshot => snapshots.push((ws.snapshot(), model.clone())),
            Op::HashTrees => {
                let before = store.len();
                prop_assert_eq!(ws.hash_trees(), scratch_tree_id(&model), "prepared id = model's");
                prop_assert_eq!(store.len(), before, "hash_trees stores nothing");
            }
            Op::Commit => {
                let id = commit(
                    &mut ws,
                    &CommitOptions { message: format!("{}", commits.len()), ..Default::default() },
                )
                .unwrap();
                let tree = ws.snapshot().tree_id().expect("a commit leaves the root hashed");
                prop_assert_eq!(read::read_commit(store.as_ref(), id).unwrap().tree, tree);
                prop_assert_eq!(
                    read_tree_plain(store.as_ref(), tree),
                    model.clone(),
                    "committed tree = model"
                );
                prop_assert_eq!(
                    tree,
                    scratch_tree_id(&model),
                    "incremental commit = commit from scratch"
                );
                commits.push((id, model.clone()));
            }
            Op::Checkout(i) if !commits.is_empty() => {
                let (id, expected) = &commits[i % commits.len()];
                let tree = read::read_commit(store.as_ref(), *id).unwrap().tree;
                // Into a fresh directory.
                let fresh = tempfile::tempdir().unwrap();
                let target = fresh.path().join("out");
                checkout(store.as_ref(), tree, &target).unwrap();
                prop_assert_eq!(
                    &read_disk(&target),
                    expected,
                    "fresh checkout = model at that commit"
                );
                // Over the previous checkout, touching only what differs.
                match live_tree {
                    None => {
                        checkout(store.as_ref(), tree, &live_dir).unwrap();
                    }
                    Some(from) => {
                        let before = read_disk(&live_dir);
                        let changes = diff_trees(store.as_ref(), Some(from), Some(tree)).unwrap();
                        let got: BTreeSet<_> = changes
                            .iter()
                            .map(|c| (c.path.as_bytes().to_vec(), c.kind()))
                            .collect();
                        prop_assert_eq!(got, model_diff(&before, expected), "diff = model diff");
                        checkout_update(store.as_ref(), from, tree, &live_dir).unwrap();
                    }
                }
                live_tree = Some(tree);
                prop_assert_eq!(
                    &read_disk(&live_dir),
                    expected,
                    "updated checkout = model at that commit"
                );
            }
            _ => {}
        }
    }
    prop_assert_eq!(snapshot_plain(&ws.snapshot()), model, "working set = model");
    for (snap, expected) in &snapshots {
        prop_assert_eq!(&snapshot_plain(snap), expected, "old snapshots never change");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn working_set_behaves_like_a_map(ops in prop::collection::vec(arb_op(), 1..60)) {
        check_sequence(ops)?;
    }
}
