//! Hostile repositories (issue 16): each is written byte by byte from
//! `docs/format.md` by `support::craft` (a pack and refs, never the
//! library's encoder), opened as a repository, and every reader must refuse
//! it clearly without writing anything it should not.

use std::path::Path;

use vst::fsck::ReadData;
use vst::{CommitId, DecodeError, Error, InvalidName, ObjectKind, Repo, TreeId, read};
use vst_cas::ObjectId;

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
            read_disk(&target).keys().all(|k| !k.to_ascii_lowercase().ends_with(b".vst")),
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
