//! Remote-tracking refs: `refs/remotes/REMOTE/BRANCH`, what each branch of
//! a remote was at when this repository last fetched, pushed or cloned it,
//! deleting a remote branch, and fetching tags.
//!
//! A tracking ref moves only after what it names is durable in the local
//! store (a transfer syncs before it returns), so, like a branch, it never
//! names a missing object, and GC keeps what it reaches. A fetch makes the
//! tracking refs of a remote mirror its branches: it creates, moves and
//! deletes them. A tracking ref is a record of what was seen, not a lock:
//! two fetches running at once each leave a value one of them saw.
//!
//! Deleting a remote branch is a compare-and-swap
//! ([`RemoteRefs::delete`]) against what the tracking ref says (what this
//! repository last saw there), so a delete never removes commits pushed
//! since that nobody here has looked at; without a tracking ref, against
//! the value read just before.

use vst_cas::remote::{RemoteRefs, RemoteStore};
use vst_cas::{RefError, RefName, TrackingRefs};

use crate::error::{Error, Result};
use crate::id::CommitId;
use crate::repo::Repo;
use crate::sync::{TransferStats, fetch, ref_err, transfer_from_remote};

/// Times [`track`] retries a tracking ref another process moved between
/// its read and its write.
const TRACK_TRIES_MAX: usize = 8;

/// How one tracking ref changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingUpdate {
    /// The remote's branch.
    pub branch: RefName,
    /// What the tracking ref held before (`None`: it did not exist).
    pub old: Option<CommitId>,
    /// What it holds now (`None`: the branch is gone from the remote).
    pub new: Option<CommitId>,
}

/// What a fetch of every branch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The tracking refs that changed, sorted by branch.
    pub updates: Vec<TrackingUpdate>,
    /// The remote's branches (and their commits) now tracked.
    pub branches: Vec<(RefName, CommitId)>,
    /// What was copied.
    pub stats: TransferStats,
}

/// Sets the tracking ref of `branch` of `remote` to `new` (`None` deletes
/// it) and logs `message`; returns what it held before. The caller has
/// made `new` durable in the local store.
pub fn track(
    repo: &Repo,
    remote: &RefName,
    branch: &RefName,
    new: Option<CommitId>,
    message: &str,
) -> Result<Option<CommitId>> {
    let name = TrackingRefs::name(remote, branch).map_err(ref_err)?;
    let refs = repo.tracking_refs();
    let new_id = new.map(|c| c.object_id());
    let mut last = None;
    for _ in 0..TRACK_TRIES_MAX {
        let old = refs.get(&name).map_err(ref_err)?;
        if old == new_id {
            return Ok(old.map(CommitId::new));
        }
        match refs.update(&name, old, new_id, message) {
            Ok(()) => return Ok(old.map(CommitId::new)),
            // Another fetch moved it meanwhile: read again.
            Err(e @ RefError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(ref_err(e)),
        }
    }
    Err(ref_err(last.expect("a try was made")))
}

/// Copies what every branch of the remote reaches into `repo` and makes
/// the tracking refs of `remote` (`REMOTE/BRANCH`) match the remote's
/// branches: new ones created, moved ones moved, those the remote no
/// longer has deleted. Moves no local branch.
pub fn fetch_all(
    repo: &Repo,
    remote: &RefName,
    store: &RemoteStore,
    refs: &RemoteRefs,
) -> Result<Fetched> {
    let listed = refs.list().map_err(ref_err)?;
    // Every name checked before anything is copied.
    for (branch, _) in &listed {
        TrackingRefs::name(remote, branch).map_err(ref_err)?;
    }
    // The refs were written after what they name was published.
    store.refresh()?;
    let local = repo.store();
    let mut out = Fetched::default();
    for (branch, id) in listed {
        let tip = CommitId::new(id);
        out.stats.add(&transfer_from_remote(store, local.as_ref(), tip)?);
        let old = track(repo, remote, &branch, Some(tip), "fetch")?;
        if old != Some(tip) {
            out.updates.push(TrackingUpdate { branch: branch.clone(), old, new: Some(tip) });
        }
        out.branches.push((branch, tip));
    }
    for (branch, old) in repo.tracking_refs().of_remote(remote).map_err(ref_err)? {
        if !out.branches.iter().any(|(b, _)| *b == branch) {
            track(repo, remote, &branch, None, "fetch: gone from the remote")?;
            out.updates.push(TrackingUpdate { branch, old: Some(CommitId::new(old)), new: None });
        }
    }
    out.updates.sort_by(|a, b| a.branch.cmp(&b.branch));
    Ok(out)
}

/// Fetches the remote `branch` into `repo` and sets its tracking ref
/// (deletes it if the remote has no such branch). Returns the remote's
/// commit and what was copied.
pub fn fetch_branch(
    repo: &Repo,
    remote: &RefName,
    store: &RemoteStore,
    refs: &RemoteRefs,
    branch: &RefName,
) -> Result<Option<(CommitId, TransferStats)>> {
    TrackingRefs::name(remote, branch).map_err(ref_err)?;
    let fetched = fetch(store, refs, branch, repo.store().as_ref())?;
    let tip = fetched.as_ref().map(|(tip, _)| *tip);
    track(repo, remote, branch, tip, "fetch")?;
    Ok(fetched)
}

/// Deletes the remote `branch` if it is where the tracking ref says (or,
/// without one, where it is now), by a conditional write, then deletes
/// the tracking ref. Returns the commit the branch was at.
pub fn delete_branch(
    repo: &Repo,
    remote: &RefName,
    refs: &RemoteRefs,
    branch: &RefName,
) -> Result<CommitId> {
    let name = TrackingRefs::name(remote, branch).map_err(ref_err)?;
    let seen = repo.tracking_refs().get(&name).map_err(ref_err)?;
    let expected = match seen {
        Some(id) => id,
        None => refs
            .get(branch)
            .map_err(ref_err)?
            .ok_or_else(|| Error::NoRemoteBranch { branch: branch.clone() })?,
    };
    match refs.delete(branch, expected) {
        Ok(()) => {}
        Err(RefError::Conflict { .. }) => {
            let actual = refs.get(branch).map_err(ref_err)?.map(CommitId::new);
            if actual.is_none() && seen.is_some() {
                // Gone already (someone else deleted it): only the
                // tracking ref is left to remove.
                track(repo, remote, branch, None, "push: deleted elsewhere")?;
            }
            return Err(Error::DeleteRejected {
                branch: branch.clone(),
                ids: Box::new(crate::error::DeleteIds {
                    expected: CommitId::new(expected),
                    actual,
                }),
            });
        }
        Err(e) => return Err(ref_err(e)),
    }
    track(repo, remote, branch, None, "push: delete")?;
    Ok(CommitId::new(expected))
}

/// What [`fetch_tags`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagsFetched {
    /// Tags the remote has and this repository did not: now created here.
    pub created: Vec<(RefName, CommitId)>,
    /// Tags both have at different commits: kept as they are here (as
    /// git, a fetch never moves a local tag), each with the remote's
    /// commit, which is not fetched.
    pub differing: Vec<(RefName, CommitId)>,
    /// The remote's tags not taken because a branch or a remote-tracking
    /// ref here has the name (a revision would never reach the tag).
    pub shadowed: Vec<RefName>,
    /// What was copied.
    pub stats: TransferStats,
}

/// Copies the remote's tags (`tags`, from [`RemoteRefs::tags`]) that
/// `repo` lacks, with what they reach, and creates them here; a tag this
/// repository has is never moved (see [`TagsFetched`]).
pub fn fetch_tags(repo: &Repo, store: &RemoteStore, tags: &RemoteRefs) -> Result<TagsFetched> {
    let listed = tags.list().map_err(ref_err)?;
    let local = repo.tags();
    let mut out = TagsFetched::default();
    // The refs were written after what they name was published.
    if !listed.is_empty() {
        store.refresh()?;
    }
    for (name, id) in listed {
        let tip = CommitId::new(id);
        match local.get(&name).map_err(ref_err)? {
            Some(here) if here == id => {}
            Some(_) => out.differing.push((name, tip)),
            None if repo.refs().get(&name).map_err(ref_err)?.is_some()
                || repo.tracking_refs().get(&name).map_err(ref_err)?.is_some() =>
            {
                out.shadowed.push(name);
            }
            None => {
                out.stats.add(&transfer_from_remote(store, repo.store().as_ref(), tip)?);
                match repo.update_tag(&name, None, Some(id), "fetch: tag") {
                    Ok(()) => out.created.push((name, tip)),
                    // Made here meanwhile (another fetch, or `vst tag`).
                    Err(Error::Ref(RefError::Conflict { .. })) => {
                        if local.get(&name).map_err(ref_err)? != Some(id) {
                            out.differing.push((name, tip));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}
