//! Revisions (`vst::rev`): which ref a name means, prefixes, `~N`.

use vst::{CommitId, CommitOptions, Repo, RevError, resolve};
use vst_cas::Store;

use crate::support::p;

/// Commits `content` at `f` on the current branch.
fn commit(repo: &Repo, content: &[u8]) -> CommitId {
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("f"), content).unwrap();
    repo.commit(&mut ws, &CommitOptions::default()).unwrap()
}

#[test]
fn a_name_is_a_branch_then_a_tag_then_a_tracking_ref() {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    let first = commit(&repo, b"1");
    let second = commit(&repo, b"2");
    let third = commit(&repo, b"3");
    let name = Repo::branch("x").unwrap();
    let remote_name = Repo::branch("origin/x").unwrap();
    repo.tracking_refs().update(&remote_name, None, Some(first.object_id()), "t").unwrap();
    assert_eq!(resolve(&repo, "origin/x").unwrap(), first);
    repo.tags().update(&remote_name, None, Some(second.object_id()), "t").unwrap();
    assert_eq!(resolve(&repo, "origin/x").unwrap(), second, "a tag before a tracking ref");
    repo.tags().update(&name, None, Some(second.object_id()), "t").unwrap();
    assert_eq!(resolve(&repo, "x").unwrap(), second);
    repo.refs().update(&name, None, Some(third.object_id()), "t").unwrap();
    assert_eq!(resolve(&repo, "x").unwrap(), third, "a branch before a tag");
    assert_eq!(resolve(&repo, "x~2").unwrap(), first);
    assert_eq!(resolve(&repo, "x~~").unwrap(), first);
    assert_eq!(resolve(&repo, "HEAD~1~1").unwrap(), first);
    assert!(matches!(resolve(&repo, "x~3"), Err(RevError::TooFarBack { have: 2, .. })));
    assert!(matches!(resolve(&repo, "x~y"), Err(RevError::BadAncestor { .. })));
    assert!(matches!(resolve(&repo, "nope"), Err(RevError::Unknown { .. })));
}

#[test]
fn prefixes_need_four_digits_and_ambiguity_names_every_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    assert!(matches!(resolve(&repo, "HEAD"), Err(RevError::Unborn)));
    // Enough commits that two share their first four hex digits.
    let mut by_prefix = std::collections::HashMap::<String, Vec<CommitId>>::new();
    let mut i = 0u32;
    let pair = loop {
        let id = commit(&repo, &i.to_le_bytes());
        i += 1;
        let ids = by_prefix.entry(id.to_string()[..4].to_owned()).or_default();
        ids.push(id);
        if ids.len() == 2 {
            break ids.clone();
        }
    };
    let prefix = &pair[0].to_string()[..4];
    match resolve(&repo, prefix) {
        Err(RevError::Ambiguous { candidates, .. }) => {
            let mut want = pair.clone();
            want.sort();
            assert_eq!(candidates, want);
        }
        other => panic!("{prefix}: {other:?}"),
    }
    let full = pair[0].to_string();
    assert_eq!(resolve(&repo, &full).unwrap(), pair[0]);
    assert_eq!(resolve(&repo, &full[..20].to_ascii_uppercase()).unwrap(), pair[0]);
    assert!(matches!(resolve(&repo, &full[..3]), Err(RevError::TooShort { .. })));
    // A stored blob's id is no commit.
    let blob = vst::hash_blob(&0u32.to_le_bytes()).to_string();
    assert!(repo.store().contains(&vst::hash_blob(&0u32.to_le_bytes()).object_id()).unwrap());
    assert!(matches!(resolve(&repo, &blob), Err(RevError::Unknown { .. })));
}
