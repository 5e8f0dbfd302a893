//! Checkout: crafted trees that try to write outside the target are
//! refused, and nothing lands outside.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use vst::{CommitOptions, Error, TreeId, WorkingSet, checkout, checkout_update, commit};
use vst_cas::{MemStore, ObjectId};

use crate::support::{mem, p, put_raw, raw, read_disk};

/// A sandbox: `outside/` must stay empty whatever a checkout into
/// `target/` does.
struct Sandbox {
    _dir: tempfile::TempDir,
    outside: std::path::PathBuf,
    target: std::path::PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let target = dir.path().join("target");
        Self { outside, target, _dir: dir }
    }

    fn assert_outside_untouched(&self) {
        assert!(read_disk(&self.outside).is_empty(), "something was written outside the target");
        let siblings: Vec<_> = fs::read_dir(self.outside.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for name in siblings {
            assert!(name == "outside" || name == "target", "unexpected {name} next to the target");
        }
    }
}

/// The tree after `first`, and the tree after `then` on top of it, both
/// committed into `store`.
fn two_trees(
    store: &Arc<MemStore>,
    first: impl FnOnce(&mut WorkingSet),
    then: impl FnOnce(&mut WorkingSet),
) -> (TreeId, TreeId) {
    let mut ws = WorkingSet::new(store.clone());
    first(&mut ws);
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let old = ws.snapshot().tree_id().unwrap();
    then(&mut ws);
    commit(&mut ws, &CommitOptions::default()).unwrap();
    (old, ws.snapshot().tree_id().unwrap())
}

fn blob(store: &MemStore, content: &[u8]) -> [u8; 32] {
    *put_raw(store, content).as_bytes()
}

fn tree_id(id: ObjectId) -> TreeId {
    TreeId::new(id)
}

#[test]
fn a_name_that_is_a_path_is_refused() {
    for evil in [&b"../outside/pwned"[..], b"..", b"/abs", b"a/../../outside/x", b"."] {
        let sandbox = Sandbox::new();
        let store = MemStore::new();
        let content = blob(&store, b"pwned");
        let root = put_raw(&store, &raw::tree(&[raw::file(evil, &content, 5, false)]));
        let err = checkout(&store, tree_id(root), &sandbox.target).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        sandbox.assert_outside_untouched();
    }
}

#[test]
fn a_name_that_is_a_path_deep_in_the_tree_is_refused() {
    let sandbox = Sandbox::new();
    let store = MemStore::new();
    let content = blob(&store, b"pwned");
    let evil = put_raw(&store, &raw::tree(&[raw::file(b"../../outside/x", &content, 5, false)]));
    let sub = put_raw(&store, &raw::tree(&[raw::dir(b"evil", evil.as_bytes())]));
    let root = put_raw(&store, &raw::tree(&[raw::dir(b"a", sub.as_bytes())]));
    assert!(checkout(&store, tree_id(root), &sandbox.target).is_err());
    sandbox.assert_outside_untouched();
}

#[test]
fn a_symlink_followed_by_a_file_under_it_is_refused() {
    let sandbox = Sandbox::new();
    let store = MemStore::new();
    let content = blob(&store, b"pwned");
    let inner = put_raw(&store, &raw::tree(&[raw::file(b"x", &content, 5, false)]));
    let outside = sandbox.outside.as_os_str().as_encoded_bytes().to_vec();
    // Same name twice: first a link to the outside, then a directory under
    // it. Checking out in order would write through the link.
    let root = put_raw(
        &store,
        &raw::tree(&[raw::symlink(b"link", &outside), raw::dir(b"link", inner.as_bytes())]),
    );
    assert!(matches!(checkout(&store, tree_id(root), &sandbox.target), Err(Error::Decode { .. })));
    sandbox.assert_outside_untouched();
}

#[test]
fn replacing_a_symlink_by_a_directory_does_not_follow_it() {
    let sandbox = Sandbox::new();
    let store = mem();
    let (old, new) = two_trees(
        &store,
        |ws| {
            ws.symlink(&p("link"), sandbox.outside.as_os_str().as_encoded_bytes()).unwrap();
        },
        |ws| {
            ws.remove(&p("link")).unwrap();
            ws.write(&p("link/x"), b"inside").unwrap();
        },
    );

    checkout(store.as_ref(), old, &sandbox.target).unwrap();
    assert!(fs::symlink_metadata(sandbox.target.join("link")).unwrap().file_type().is_symlink());
    checkout_update(store.as_ref(), old, new, &sandbox.target).unwrap();
    assert_eq!(fs::read(sandbox.target.join("link/x")).unwrap(), b"inside");
    assert!(!fs::symlink_metadata(sandbox.target.join("link")).unwrap().file_type().is_symlink());
    sandbox.assert_outside_untouched();
}

#[test]
fn a_symlink_planted_on_disk_is_not_written_through() {
    let sandbox = Sandbox::new();
    let store = mem();
    let (old, new) = two_trees(
        &store,
        |ws| {
            ws.write(&p("d/x"), b"1").unwrap();
            ws.write(&p("f"), b"1").unwrap();
        },
        |ws| {
            ws.write(&p("d/x"), b"2").unwrap();
            ws.write(&p("d/y"), b"3").unwrap();
        },
    );

    checkout(store.as_ref(), old, &sandbox.target).unwrap();
    // Someone replaces the directory by a link to the outside.
    fs::remove_dir_all(sandbox.target.join("d")).unwrap();
    std::os::unix::fs::symlink(&sandbox.outside, sandbox.target.join("d")).unwrap();
    let err = checkout_update(store.as_ref(), old, new, &sandbox.target).unwrap_err();
    assert!(matches!(err, Error::CheckoutUnsafe { .. }), "{err}");
    sandbox.assert_outside_untouched();
}

#[test]
fn a_chmod_does_not_follow_a_planted_symlink() {
    let sandbox = Sandbox::new();
    let store = mem();
    let (old, new) = two_trees(
        &store,
        |ws| {
            ws.write(&p("run"), b"#!/bin/sh\n").unwrap();
        },
        |ws| {
            ws.set_executable(&p("run"), true).unwrap();
        },
    );

    checkout(store.as_ref(), old, &sandbox.target).unwrap();
    let victim = sandbox.outside.join("victim");
    fs::write(&victim, b"keep me").unwrap();
    fs::remove_file(sandbox.target.join("run")).unwrap();
    std::os::unix::fs::symlink(&victim, sandbox.target.join("run")).unwrap();
    // The link is replaced by the file (its mode is never changed through
    // the link).
    checkout_update(store.as_ref(), old, new, &sandbox.target).unwrap();
    assert!(fs::symlink_metadata(sandbox.target.join("run")).unwrap().is_file());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode() & 0o111,
        0,
        "the link target kept its mode"
    );
    fs::remove_file(victim).unwrap();
    sandbox.assert_outside_untouched();
}

#[test]
fn a_chmod_does_not_reach_through_a_hard_link() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let store = mem();
    let (old, new) = two_trees(
        &store,
        |ws| {
            ws.write(&p("run"), b"#!/bin/sh\n").unwrap();
        },
        |ws| {
            ws.set_executable(&p("run"), true).unwrap();
        },
    );

    checkout(store.as_ref(), old, &sandbox.target).unwrap();
    let victim = sandbox.outside.join("victim");
    fs::write(&victim, b"#!/bin/sh\n").unwrap();
    fs::remove_file(sandbox.target.join("run")).unwrap();
    fs::hard_link(&victim, sandbox.target.join("run")).unwrap();
    checkout_update(store.as_ref(), old, new, &sandbox.target).unwrap();
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode() & 0o111,
        0,
        "the other link kept its mode"
    );
    assert_ne!(fs::metadata(sandbox.target.join("run")).unwrap().permissions().mode() & 0o100, 0);
    fs::remove_file(victim).unwrap();
    sandbox.assert_outside_untouched();
}

#[test]
fn removing_a_directory_keeps_files_the_tree_does_not_list() {
    let sandbox = Sandbox::new();
    let store = mem();
    let (old, new) = two_trees(
        &store,
        |ws| {
            ws.write(&p("crate/src/lib.rs"), b"code").unwrap();
            ws.write(&p("other"), b"x").unwrap();
        },
        |ws| ws.remove(&p("crate")).unwrap(),
    );
    checkout(store.as_ref(), old, &sandbox.target).unwrap();
    // Build output the tree never listed (an ignored directory).
    fs::create_dir_all(sandbox.target.join("crate/target")).unwrap();
    fs::write(sandbox.target.join("crate/target/app"), b"built").unwrap();
    let stats = checkout_update(store.as_ref(), old, new, &sandbox.target).unwrap();
    assert_eq!(fs::read(sandbox.target.join("crate/target/app")).unwrap(), b"built");
    assert!(!sandbox.target.join("crate/src").exists(), "what the tree listed is gone");
    assert_eq!(stats.kept_unknown, 1, "crate/ stays because of crate/target/");
}

#[test]
fn symlinks_pointing_outside_are_created_not_followed() {
    let sandbox = Sandbox::new();
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    let outside_file = sandbox.outside.join("f");
    ws.symlink(&p("l"), outside_file.as_os_str().as_encoded_bytes()).unwrap();
    ws.symlink(&p("up"), b"../../..").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    checkout(store.as_ref(), ws.snapshot().tree_id().unwrap(), &sandbox.target).unwrap();
    assert_eq!(fs::read_link(sandbox.target.join("l")).unwrap(), outside_file);
    assert_eq!(fs::read_link(sandbox.target.join("up")).unwrap(), Path::new("../../.."));
    sandbox.assert_outside_untouched();
}

#[test]
fn checkout_needs_an_empty_target() {
    let sandbox = Sandbox::new();
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    ws.write(&p("a"), b"1").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    let tree = ws.snapshot().tree_id().unwrap();
    fs::create_dir(&sandbox.target).unwrap();
    fs::write(sandbox.target.join("mine"), b"precious").unwrap();
    assert!(matches!(
        checkout(store.as_ref(), tree, &sandbox.target),
        Err(Error::TargetNotEmpty { .. })
    ));
    assert_eq!(fs::read(sandbox.target.join("mine")).unwrap(), b"precious");
}

#[test]
fn a_corrupt_blob_fails_the_checkout_with_its_id() {
    let sandbox = Sandbox::new();
    let store = mem();
    let mut ws = WorkingSet::new(store.clone());
    let id = ws.write(&p("a"), b"good").unwrap();
    commit(&mut ws, &CommitOptions::default()).unwrap();
    store.insert_unchecked(id.object_id(), &b"evil"[..]);
    let err =
        checkout(store.as_ref(), ws.snapshot().tree_id().unwrap(), &sandbox.target).unwrap_err();
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    // Written aside and renamed only when complete: a failed checkout
    // leaves nothing at the target.
    assert!(!sandbox.target.exists());
}

#[test]
fn update_touches_only_what_differs() {
    let sandbox = Sandbox::new();
    let store = mem();
    let (old, new) = two_trees(
        &store,
        |ws| {
            for i in 0..50 {
                ws.write(&p(&format!("d{}/f{i}", i % 5)), format!("{i}").as_bytes()).unwrap();
            }
        },
        |ws| {
            ws.write(&p("d1/f1"), b"changed").unwrap();
            ws.remove(&p("d2")).unwrap();
            ws.set_executable(&p("d3/f3"), true).unwrap();
        },
    );

    checkout(store.as_ref(), old, &sandbox.target).unwrap();
    let stats = checkout_update(store.as_ref(), old, new, &sandbox.target).unwrap();
    assert_eq!(stats.files_written, 1);
    // The changed file is replaced by a rename, not removed first.
    assert_eq!(stats.removed, 11, "d2's ten files, and d2");
    assert_eq!(stats.modes_changed, 1);
    assert_eq!(stats.dirs_created, 0);
}
