//! Refs: compare-and-swap, reflog, HEAD, names, durability.

use std::path::Path;
use std::sync::Arc;

use vst_cas::sim::{Fault, SimFs, Unsynced};
use vst_cas::vfs::{RealFs, Vfs};
use vst_cas::{Head, ObjectId, RefError, RefName, Refs, TrackingRefs};

fn name(s: &str) -> RefName {
    RefName::try_from(s).unwrap()
}

#[test]
fn compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let refs = Refs::new(Arc::new(RealFs::new()), dir.path());
    let (a, b, c) = (ObjectId::of(b"a"), ObjectId::of(b"b"), ObjectId::of(b"c"));
    let main = name("main");
    assert_eq!(refs.get(&main).unwrap(), None);
    refs.update(&main, None, Some(a), "create").unwrap();
    assert!(matches!(refs.update(&main, None, Some(b), "again"), Err(RefError::Conflict { .. })));
    assert!(matches!(
        refs.update(&main, Some(c), Some(b), "stale"),
        Err(RefError::Conflict { .. })
    ));
    assert_eq!(refs.get(&main).unwrap(), Some(a), "a failed swap changes nothing");
    refs.update(&main, Some(a), Some(b), "advance").unwrap();
    refs.update(&name("feature/x"), None, Some(c), "branch").unwrap();
    let listed: Vec<_> =
        refs.list().unwrap().into_iter().map(|(n, id)| (n.to_string(), id)).collect();
    assert_eq!(listed, [("feature/x".to_owned(), c), ("main".to_owned(), b)]);
    refs.update(&name("feature/x"), Some(c), None, "delete").unwrap();
    assert_eq!(refs.get(&name("feature/x")).unwrap(), None);
    let log = refs.reflog(&main).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].old, log[0].new, log[0].message.as_str()), (None, Some(a), "create"));
    assert_eq!((log[1].old, log[1].new), (Some(a), Some(b)));
}

/// Remote-tracking refs live beside the branches, in files of their own:
/// a branch `origin/main` and the tracking ref `origin/main` are two refs.
#[test]
fn tracking_refs_are_a_namespace_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let refs = Refs::new(Arc::new(RealFs::new()), dir.path());
    let tracking = refs.tracking();
    let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
    let origin_main = TrackingRefs::name(&name("origin"), &name("main")).unwrap();
    assert_eq!(origin_main.as_str(), "origin/main");
    tracking.update(&origin_main, None, Some(a), "fetch").unwrap();
    tracking.update(&name("origin/team/x"), None, Some(b), "fetch").unwrap();
    tracking.update(&name("backup/main"), None, Some(b), "fetch").unwrap();
    assert!(dir.path().join("refs/remotes/origin/main").is_file());
    assert!(dir.path().join("logs/remotes/origin/main").is_file());
    assert_eq!(refs.get(&origin_main).unwrap(), None, "not a branch");
    assert!(refs.list().unwrap().is_empty());
    refs.update(&origin_main, None, Some(b), "a branch of that name").unwrap();
    assert_eq!(tracking.get(&origin_main).unwrap(), Some(a));
    assert_eq!(
        tracking.of_remote(&name("origin")).unwrap(),
        vec![(name("main"), a), (name("team/x"), b)]
    );
    assert_eq!(tracking.list().unwrap().len(), 3);
    tracking.update(&origin_main, Some(a), None, "gone").unwrap();
    assert_eq!(tracking.logged().unwrap().len(), 3, "a deleted ref keeps its reflog");
    assert_eq!(tracking.reflog(&origin_main).unwrap().len(), 2);
    assert!(TrackingRefs::name(&name("origin"), &name(&"x".repeat(200))).is_err(), "too long");
}

#[test]
fn head_is_a_branch_or_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let refs = Refs::new(Arc::new(RealFs::new()), dir.path());
    assert_eq!(refs.head().unwrap(), Head::Branch(name("main")), "a new store is on main");
    refs.set_head(&Head::Branch(name("dev"))).unwrap();
    assert_eq!(refs.head().unwrap(), Head::Branch(name("dev")));
    let id = ObjectId::of(b"x");
    refs.set_head(&Head::Detached(id)).unwrap();
    assert_eq!(refs.head().unwrap(), Head::Detached(id));
}

#[test]
fn names_are_checked() {
    for bad in ["", "..", "a/../b", ".hidden", "a//b", "x.lock", "sp ace", "a/", "/a", "ü"] {
        assert!(RefName::try_from(bad).is_err(), "{bad:?} must be refused");
    }
    for good in ["main", "feature/x-1", "v1.2_rc"] {
        assert!(RefName::try_from(good).is_ok(), "{good:?}");
    }
}

#[test]
fn a_damaged_ref_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let refs = Refs::new(Arc::new(RealFs::new()), dir.path());
    refs.update(&name("main"), None, Some(ObjectId::of(b"a")), "x").unwrap();
    let path = dir.path().join("refs/heads/main");
    let mut text = std::fs::read(&path).unwrap();
    text[5] = b'z';
    std::fs::write(&path, text).unwrap();
    assert!(matches!(refs.get(&name("main")), Err(RefError::Damaged { .. })));
}

#[test]
fn an_update_survives_any_crash_as_old_or_new() {
    let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
    let main = name("main");
    let probe = SimFs::new();
    probe.create_dir_all(Path::new("/s")).unwrap();
    let refs = Refs::new(Arc::new(probe.clone()), Path::new("/s"));
    refs.update(&main, None, Some(a), "one").unwrap();
    let start = probe.ops();
    refs.update(&main, Some(a), Some(b), "two").unwrap();
    let end = probe.ops();
    for at in start..=end {
        for unsynced in Unsynced::ALL {
            let fs = SimFs::new();
            fs.create_dir_all(Path::new("/s")).unwrap();
            let refs = Refs::new(Arc::new(fs.clone()), Path::new("/s"));
            refs.update(&main, None, Some(a), "one").unwrap();
            fs.set_fault(fs.ops() + (at - start), vst_cas::sim::Fault::Crash);
            let acknowledged = refs.update(&main, Some(a), Some(b), "two").is_ok();
            let after = Refs::new(Arc::new(fs.crash_image(unsynced)), Path::new("/s"));
            let value = after.get(&main).unwrap();
            if acknowledged {
                assert_eq!(
                    value,
                    Some(b),
                    "an acknowledged update is durable (crash at {at}, {unsynced:?})"
                );
            } else {
                assert!(
                    value == Some(a) || value == Some(b),
                    "old or new, never torn ({at}, {unsynced:?})"
                );
            }
        }
    }
}

/// `update_once_durable` overlaps the store's sync with the ref's, yet a
/// ref that names the new value after any crash implies the durable step
/// finished; a failing durable step leaves the ref as it was.
#[test]
fn a_ref_never_names_what_is_not_durable() {
    let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
    let main = name("main");
    let setup = || {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/s")).unwrap();
        let refs = Refs::new(Arc::new(fs.clone()), Path::new("/s"));
        refs.update(&main, None, Some(a), "one").unwrap();
        // The pack's name is durable; what is appended to it is not yet.
        fs.write_file(Path::new("/s/pack"), b"").unwrap();
        fs.sync(Path::new("/s/pack")).unwrap();
        fs.sync_dir(Path::new("/s")).unwrap();
        fs.append(Path::new("/s/pack"), b"the objects b names").unwrap();
        (fs, refs)
    };
    let (fs, refs) = setup();
    let failing =
        || Err(vst_cas::StoreError::Io { op: "sync", source: std::io::Error::other("x") });
    assert!(refs.update_once_durable(&main, Some(a), Some(b), "two", &failing).is_err());
    assert_eq!(refs.get(&main).unwrap(), Some(a), "a failed durable step moves nothing");
    let files: Vec<String> =
        fs.list(Path::new("/s/refs/heads")).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(files, ["main"], "the temporary file is gone");
    let start = fs.ops();
    let sync = || {
        fs.sync(Path::new("/s/pack"))
            .map_err(|source| vst_cas::StoreError::Io { op: "sync", source })
    };
    refs.update_once_durable(&main, Some(a), Some(b), "two", &sync).unwrap();
    let ops = fs.ops() - start;
    for at in 0..=ops {
        for unsynced in [Unsynced::Drop, Unsynced::Keep, Unsynced::TearHalf] {
            let (fs, refs) = setup();
            fs.set_fault(fs.ops() + at, vst_cas::sim::Fault::Crash);
            let sync = || {
                fs.sync(Path::new("/s/pack"))
                    .map_err(|source| vst_cas::StoreError::Io { op: "sync", source })
            };
            let acknowledged =
                refs.update_once_durable(&main, Some(a), Some(b), "two", &sync).is_ok();
            let image = fs.crash_image(unsynced);
            let value = Refs::new(Arc::new(image.clone()), Path::new("/s")).get(&main).unwrap();
            if acknowledged {
                assert_eq!(value, Some(b), "acknowledged is durable ({at}, {unsynced:?})");
            }
            if value == Some(b) {
                assert_eq!(
                    image.read_file(Path::new("/s/pack")).unwrap(),
                    b"the objects b names",
                    "the ref names only durable objects ({at}, {unsynced:?})"
                );
            } else {
                assert_eq!(value, Some(a), "old or new ({at}, {unsynced:?})");
            }
        }
    }
}

/// A branch file holds two slots: each update overwrites the older one in
/// place, so a torn or damaged slot leaves the other, the value before.
#[test]
fn a_torn_slot_leaves_the_value_before_it() {
    let ids: Vec<ObjectId> = (0..4u8).map(|i| ObjectId::of(&[i])).collect();
    let main = name("main");
    let dir = tempfile::tempdir().unwrap();
    let refs = Refs::new(Arc::new(RealFs::new()), dir.path());
    let path = dir.path().join("refs/heads/main");
    refs.update(&main, None, Some(ids[0]), "create").unwrap();
    for pair in ids.windows(2) {
        refs.update(&main, Some(pair[0]), Some(pair[1]), "move").unwrap();
        assert_eq!(refs.get(&main).unwrap(), Some(pair[1]));
    }
    let before = std::fs::read(&path).unwrap();
    assert_eq!(before.len(), 8192, "two 4 KiB slots");
    // The slot with the highest sequence number holds the value.
    let newest = (0..2).find(|k| before[k * 4096..].starts_with(b"0000000000000004")).unwrap();
    // In the sequence number, the id, the CRC.
    for at in [0, 20, 85] {
        let mut torn = before.clone();
        let byte = &mut torn[newest * 4096 + at];
        *byte = if *byte == b'a' { b'b' } else { b'a' };
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(refs.get(&main).unwrap(), Some(ids[2]), "byte {at} torn: the value before");
    }
    // Updating from there overwrites the torn slot, not the good one.
    let good = 1 - newest;
    refs.update(&main, Some(ids[2]), Some(ids[0]), "again").unwrap();
    assert_eq!(refs.get(&main).unwrap(), Some(ids[0]));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after[good * 4096..][..4096], before[good * 4096..][..4096], "the good slot kept");
    assert_eq!(refs.held(&main).unwrap(), [ids[0], ids[2]], "the value and the one before");
    let mut both = std::fs::read(&path).unwrap();
    both[4] ^= 1;
    both[4096 + 4] ^= 1;
    std::fs::write(&path, &both).unwrap();
    assert!(matches!(refs.get(&main), Err(RefError::Damaged { .. })), "no valid slot");
}

/// A crash during any of several updates in a row (both slots in turn)
/// leaves the old or the new value, the new one if it was acknowledged.
#[test]
fn updates_in_place_survive_any_crash_as_old_or_new() {
    let ids: Vec<ObjectId> = (0..4u8).map(|i| ObjectId::of(&[i])).collect();
    let main = name("main");
    for last in 1..ids.len() {
        let run = |fault: Option<usize>, unsynced: Unsynced| {
            let fs = SimFs::new();
            fs.create_dir_all(Path::new("/s")).unwrap();
            let refs = Refs::new(Arc::new(fs.clone()), Path::new("/s"));
            refs.update(&main, None, Some(ids[0]), "create").unwrap();
            for i in 1..last {
                refs.update(&main, Some(ids[i - 1]), Some(ids[i]), "move").unwrap();
            }
            let start = fs.ops();
            if let Some(at) = fault {
                fs.set_fault(start + at, vst_cas::sim::Fault::Crash);
            }
            let acknowledged =
                refs.update(&main, Some(ids[last - 1]), Some(ids[last]), "last").is_ok();
            let after = Refs::new(Arc::new(fs.crash_image(unsynced)), Path::new("/s"));
            (fs.ops() - start, acknowledged, after.get(&main).unwrap())
        };
        let (ops, ..) = run(None, Unsynced::Keep);
        for at in 0..=ops {
            for unsynced in Unsynced::ALL {
                let (_, acknowledged, value) = run(Some(at), unsynced);
                if acknowledged {
                    assert_eq!(
                        value,
                        Some(ids[last]),
                        "update {last}, crash at {at}, {unsynced:?}"
                    );
                } else {
                    assert!(
                        value == Some(ids[last - 1]) || value == Some(ids[last]),
                        "update {last}, crash at {at}, {unsynced:?}: old or new, got {value:?}"
                    );
                }
            }
        }
    }
}

/// A branch written in the one-line form (`"<64 hex>\n"`, before the
/// slots) is read as it is and becomes a file of slots at its next update.
#[test]
fn a_one_line_ref_is_read_and_converted_on_update() {
    let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
    let main = name("main");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refs/heads/main");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{a}\n")).unwrap();
    let refs = Refs::new(Arc::new(RealFs::new()), dir.path());
    assert_eq!(refs.get(&main).unwrap(), Some(a));
    assert_eq!(refs.list().unwrap(), [(main.clone(), a)]);
    refs.update(&main, Some(a), Some(b), "convert").unwrap();
    assert_eq!(refs.get(&main).unwrap(), Some(b));
    assert_eq!(std::fs::read(&path).unwrap().len(), 8192);
    refs.update(&main, Some(b), Some(a), "in place").unwrap();
    assert_eq!(refs.get(&main).unwrap(), Some(a));
}

/// An in-place update whose write or sync fails may leave a slot that
/// reads as the new value but will never be durable (after a failed
/// `fsync`, Linux counts the pages as written back; the simulated disk
/// does the same). The next update must not then overwrite the only
/// durable slot: after a failure at any step of one update, a crash at any
/// step of the next leaves the value that update started from or its new
/// one (the new one if it was acknowledged), never an older one.
#[test]
fn a_failed_update_in_place_never_costs_a_later_one() {
    let ids: Vec<ObjectId> = (0..3u8).map(|i| ObjectId::of(&[i])).collect();
    let main = name("main");
    let setup = || {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/s")).unwrap();
        let refs = Refs::new(Arc::new(fs.clone()), Path::new("/s"));
        refs.update(&main, None, Some(ids[0]), "create").unwrap();
        (fs, refs)
    };
    let ops = |run: &dyn Fn(&SimFs, &Refs)| {
        let (fs, refs) = setup();
        let start = fs.ops();
        run(&fs, &refs);
        fs.ops() - start
    };
    let first = ops(&|_, refs| refs.update(&main, Some(ids[0]), Some(ids[1]), "x").unwrap());
    let second = ops(&|_, refs| refs.update(&main, Some(ids[0]), Some(ids[2]), "y").unwrap());
    for fail_at in 0..first {
        for crash_at in 0..=second {
            let (fs, refs) = setup();
            fs.set_fault(fs.ops() + fail_at, Fault::Error(std::io::ErrorKind::Other));
            let _ = refs.update(&main, Some(ids[0]), Some(ids[1]), "fails");
            let now = refs.get(&main).unwrap();
            assert!(now == Some(ids[0]) || now == Some(ids[1]), "failure at {fail_at}: {now:?}");
            fs.set_fault(fs.ops() + crash_at, Fault::Crash);
            let acknowledged = refs.update(&main, now, Some(ids[2]), "later").is_ok();
            for unsynced in [Unsynced::Drop, Unsynced::Keep, Unsynced::TearHalf, Unsynced::Zeros] {
                let after = Refs::new(Arc::new(fs.crash_image(unsynced)), Path::new("/s"));
                let value = after.get(&main).unwrap();
                let at = format!("failure at {fail_at}, crash at {crash_at}, {unsynced:?}");
                if acknowledged {
                    assert_eq!(value, Some(ids[2]), "{at}");
                } else {
                    assert!(value == now || value == Some(ids[2]), "{at}: {value:?}");
                }
            }
        }
    }
}

/// Creating a branch with `update_once_durable` (a temporary file synced
/// while the store syncs, then the rename): after a crash at any step, the
/// branch names the new value only if the store's sync finished, and an
/// acknowledged creation is durable.
#[test]
fn a_branch_created_never_names_what_is_not_durable() {
    let a = ObjectId::of(b"a");
    let main = name("main");
    let setup = || {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/s")).unwrap();
        fs.write_file(Path::new("/s/pack"), b"").unwrap();
        fs.sync(Path::new("/s/pack")).unwrap();
        fs.sync_dir(Path::new("/s")).unwrap();
        fs.append(Path::new("/s/pack"), b"the objects a names").unwrap();
        let refs = Refs::new(Arc::new(fs.clone()), Path::new("/s"));
        (fs, refs)
    };
    let sync_of = |fs: &SimFs| {
        let fs = fs.clone();
        move || {
            fs.sync(Path::new("/s/pack"))
                .map_err(|source| vst_cas::StoreError::Io { op: "sync", source })
        }
    };
    let ops = {
        let (fs, refs) = setup();
        let start = fs.ops();
        refs.update_once_durable(&main, None, Some(a), "create", &sync_of(&fs)).unwrap();
        fs.ops() - start
    };
    for at in 0..=ops {
        for unsynced in [Unsynced::Drop, Unsynced::Keep, Unsynced::TearHalf, Unsynced::Zeros] {
            let (fs, refs) = setup();
            fs.set_fault(fs.ops() + at, vst_cas::sim::Fault::Crash);
            let acknowledged =
                refs.update_once_durable(&main, None, Some(a), "create", &sync_of(&fs)).is_ok();
            let image = fs.crash_image(unsynced);
            let value = Refs::new(Arc::new(image.clone()), Path::new("/s")).get(&main).unwrap();
            let pack = image.read_file(Path::new("/s/pack")).unwrap();
            if acknowledged {
                assert_eq!(value, Some(a), "crash at {at}, {unsynced:?}");
            }
            if value.is_some() {
                assert_eq!(pack, b"the objects a names", "crash at {at}, {unsynced:?}");
            }
        }
    }
}
