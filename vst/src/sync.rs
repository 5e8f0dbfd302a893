//! Copying history between stores, and the rules for moving a branch on
//! either side: push, fetch, pull, clone.
//!
//! **Architecture invariant: a store that holds a commit or a tree holds
//! everything it reaches.** Every writer puts what an object names before
//! the object (blobs, then trees bottom-up, then the commit, parents before
//! children), and every store makes objects visible in the order they were
//! put (the pack store keeps a prefix after a crash; the remote store
//! publishes pack indexes in order). So [`transfer`] never walks into a
//! tree or commit the destination has: "fetch only what is missing" is a
//! `contains` per edge of the part of the graph that is new.
//!
//! A push is fast-forward only and publishes the ref last: the objects are
//! uploaded and synced, then the remote branch moves by compare-and-swap
//! from the value the push read. A push that lost a race, or whose remote
//! branch has commits the local one lacks, is [`Error::PushRejected`],
//! never merged.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use vst_cas::pack::CHUNKING_LEN_MIN;
use vst_cas::remote::gc::PushLease;
use vst_cas::remote::{RemoteRefs, RemoteStore};
use vst_cas::stream::ObjectReader;
use vst_cas::{ObjectId, RefError, RefName, Store, StoreError};

use crate::commit::Commit;
use crate::error::{Error, ObjectKind, Result};
use crate::id::{CommitId, TreeId};
use crate::limits::PATH_DEPTH_MAX;
use crate::read::{check_depth, read_commit};
use crate::repo::Repo;
use crate::tree::{EntryKind, Tree};

/// Blobs under the chunking threshold are copied in batches of at most
/// this many bytes (larger ones are streamed one by one).
pub const TRANSFER_BATCH_LEN_MAX: u64 = 32 << 20;
/// Blobs or trees copied in one batch at most.
pub const TRANSFER_BATCH_COUNT_MAX: usize = 4096;

/// What a transfer copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Commits copied.
    pub commits: u64,
    /// Trees copied.
    pub trees: u64,
    /// Blobs copied.
    pub blobs: u64,
    /// Bytes of the blobs copied.
    pub blob_bytes: u64,
}

impl TransferStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &TransferStats) {
        self.commits += other.commits;
        self.trees += other.trees;
        self.blobs += other.blobs;
        self.blob_bytes += other.blob_bytes;
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The remote branch is at a commit this repository does not have.
    Unknown {
        /// The remote branch's commit.
        remote: CommitId,
    },
    /// The remote branch's commit is not an ancestor of what is pushed.
    NotAncestor {
        /// The remote branch's commit.
        remote: CommitId,
    },
    /// The remote branch moved between the push reading it and writing it:
    /// another push won.
    Raced,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Unknown { remote } => {
                write!(f, "the remote branch is at {remote}, which this repository does not have")
            }
            Rejection::NotAncestor { remote } => write!(
                f,
                "the remote branch is at {remote}, which is not an ancestor of what is pushed"
            ),
            Rejection::Raced => f.write_str("another push moved the remote branch first"),
        }
    }
}

/// Copies into `to` every object reachable from `tip` that `to` lacks,
/// parents before children, and syncs `to`. Trees and commits `to` already
/// has are not walked (see the module documentation). Every object read
/// from `from` is verified, and every tree and commit decoded, before it is
/// written.
pub fn transfer(from: &dyn Store, to: &dyn Store, tip: CommitId) -> Result<TransferStats> {
    let mut stats = TransferStats::default();
    let mut copied = Copied::default();
    for (id, commit, bytes) in missing_commits(from, to, tip)? {
        copy_tree(from, to, commit.tree, &mut copied, &mut stats)?;
        to.put(id.object_id(), &bytes)?;
        stats.commits += 1;
    }
    to.sync()?;
    Ok(stats)
}

/// [`transfer`] from a remote store, reading ahead: the small records of
/// a pack it reads from often come in a few requests, so the number of
/// requests grows with the packs the history is in, not its commits.
pub fn transfer_from_remote(
    from: &RemoteStore,
    to: &dyn Store,
    tip: CommitId,
) -> Result<TransferStats> {
    let _ahead = from.read_ahead();
    transfer(from, to, tip)
}

/// The commits reachable from `tip` that `to` lacks, each after its
/// parents.
fn missing_commits(
    from: &dyn Store,
    to: &dyn Store,
    tip: CommitId,
) -> Result<Vec<(CommitId, Commit, Bytes)>> {
    let mut out = Vec::new();
    let mut seen: HashSet<CommitId> = HashSet::new();
    // Post-order over parents, with an explicit stack: a long history
    // cannot overflow the thread's stack.
    let mut stack: Vec<(CommitId, Option<(Commit, Bytes)>)> = vec![(tip, None)];
    while let Some((id, loaded)) = stack.pop() {
        match loaded {
            Some((commit, bytes)) => out.push((id, commit, bytes)),
            None => {
                if !seen.insert(id) || to.contains(&id.object_id())? {
                    continue;
                }
                let bytes = from.get(&id.object_id())?;
                let commit = Commit::decode(&bytes).map_err(|source| Error::Decode {
                    kind: ObjectKind::Commit,
                    id: id.object_id(),
                    source,
                })?;
                let parents = commit.parents.clone();
                stack.push((id, Some((commit, bytes))));
                for parent in parents.iter().rev() {
                    stack.push((*parent, None));
                }
            }
        }
    }
    Ok(out)
}

/// What a transfer has copied so far, across its commits.
#[derive(Default)]
struct Copied {
    /// Trees read, each with its height: how many components its deepest
    /// path adds (0 for an empty tree), counting a subdirectory `to`
    /// already had before the transfer as one (see [`copy_tree`]).
    trees: HashMap<TreeId, usize>,
    blobs: HashSet<ObjectId>,
}

/// Copies the tree `root` and what it reaches that `to` lacks: reads the
/// new trees level by level (one batch a level), checks the depth limit,
/// copies the new blobs in batches, then writes the trees, each after
/// every tree below it (by height, not by level: a subtree shared at
/// depths 1 and 3 is read at level 1 but must still be written before its
/// parent at level 2), so that a transfer cut short never leaves a tree
/// without its children.
///
/// The depth limit holds at every depth a new tree is reused at, not only
/// the shallowest: a tree is too deep where it is nonempty at
/// `PATH_DEPTH_MAX` components or more, which is checked at the deepest
/// depth it has in `root` (and, for a tree an earlier commit of the
/// transfer copied, from its height). A subtree `to` already had is not
/// read (the point of a transfer); it is taken to be within the limit
/// where it is reused, and checkout still checks it there.
fn copy_tree(
    from: &dyn Store,
    to: &dyn Store,
    root: TreeId,
    copied: &mut Copied,
    stats: &mut TransferStats,
) -> Result<()> {
    let (seen_trees, seen_blobs) = (&mut copied.trees, &mut copied.blobs);
    // Read order, with each tree's subdirectories and whether it is empty.
    let mut read: Vec<(TreeId, Bytes, Vec<TreeId>, bool)> = Vec::new();
    let mut depth = 0;
    let mut blobs: Vec<(ObjectId, u64)> = Vec::new();
    let mut frontier: Vec<TreeId> = Vec::new();
    if !seen_trees.contains_key(&root) && !to.contains(&root.object_id())? {
        seen_trees.insert(root, 0);
        frontier.push(root);
    }
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for batch in frontier.chunks(TRANSFER_BATCH_COUNT_MAX) {
            let ids: Vec<ObjectId> = batch.iter().map(|t| t.object_id()).collect();
            for (id, bytes) in batch.iter().zip(from.get_many(&ids)?) {
                let tree = Tree::decode(&bytes).map_err(|source| Error::Decode {
                    kind: ObjectKind::Tree,
                    id: id.object_id(),
                    source,
                })?;
                check_depth(depth, *id, &tree)?;
                let mut subdirs = Vec::new();
                for entry in tree.entries() {
                    match &entry.kind {
                        EntryKind::Dir(sub) => {
                            subdirs.push(*sub);
                            if !seen_trees.contains_key(sub) && !to.contains(&sub.object_id())? {
                                seen_trees.insert(*sub, 0);
                                next.push(*sub);
                            }
                        }
                        EntryKind::File(f) => {
                            let blob = f.id.object_id();
                            if !seen_blobs.contains(&blob) && !to.contains(&blob)? {
                                seen_blobs.insert(blob);
                                blobs.push((blob, f.size));
                            }
                        }
                        EntryKind::Symlink(_) => {}
                    }
                }
                read.push((*id, bytes, subdirs, tree.is_empty()));
            }
        }
        depth += 1;
        frontier = next;
    }
    // Heights within the new trees (a subdirectory `to` already has, or
    // one an earlier call wrote, counts as 0), computed deepest read
    // first; a shared subtree read early is computed on demand.
    let index: HashMap<TreeId, usize> =
        read.iter().enumerate().map(|(i, (id, ..))| (*id, i)).collect();
    let mut height: Vec<Option<usize>> = vec![None; read.len()];
    for i in (0..read.len()).rev() {
        tree_height(i, &read, &index, &mut height);
    }
    let mut order: Vec<usize> = (0..read.len()).collect();
    order.sort_by_key(|&i| height[i]);
    check_depths(&read, &index, &order, seen_trees)?;
    copy_blobs(from, to, &blobs, stats)?;
    for batch in order.chunks(TRANSFER_BATCH_COUNT_MAX) {
        let objects: Vec<(ObjectId, &[u8])> =
            batch.iter().map(|&i| (read[i].0.object_id(), read[i].1.as_ref())).collect();
        to.put_batch(&objects)?;
        stats.trees += batch.len() as u64;
    }
    Ok(())
}

/// Checks that no new tree is nonempty at `PATH_DEPTH_MAX` components or
/// deeper, wherever it is reused in the tree `read[0]`, and that no tree
/// an earlier commit copied is reused where its height takes it past the
/// limit; then records the new trees' heights in `heights`.
///
/// `heights` holds every tree of the transfer: those an earlier commit
/// copied, with their heights, and the new ones (`index`), so a tree in it
/// and not in `index` is one an earlier commit copied. (Not a copy of that
/// set per commit: that made a long history quadratic.)
///
/// `order` puts every tree after its new subdirectories, so the trees'
/// heights are computed in it, and their deepest depths in its reverse
/// (every path from the root to a new tree goes through new trees only:
/// a tree `to` has, it has with everything below it).
fn check_depths(
    read: &[(TreeId, Bytes, Vec<TreeId>, bool)],
    index: &HashMap<TreeId, usize>,
    order: &[usize],
    heights: &mut HashMap<TreeId, usize>,
) -> Result<()> {
    // A subdirectory neither new nor copied earlier counts as one level:
    // it was in `to` already, and is not read. A new one's height is
    // computed before its parent's (`order`).
    let sub_height =
        |heights: &HashMap<TreeId, usize>, sub: &TreeId| 1 + heights.get(sub).copied().unwrap_or(0);
    for &i in order {
        let (id, _, subdirs, empty) = &read[i];
        // A nonempty tree holds at least a file: one level.
        let files = usize::from(!empty);
        let height = subdirs.iter().map(|s| sub_height(heights, s)).fold(files, usize::max);
        heights.insert(*id, height);
    }
    let mut deepest: Vec<usize> = vec![0; read.len()];
    for &i in order.iter().rev() {
        let (id, _, subdirs, empty) = &read[i];
        let depth = deepest[i];
        if depth >= PATH_DEPTH_MAX && !empty {
            return Err(Error::TooDeep { id: id.object_id() });
        }
        for sub in subdirs {
            if let Some(&j) = index.get(sub) {
                deepest[j] = deepest[j].max(depth + 1);
            } else if let Some(&height) = heights.get(sub)
                && depth + 1 + height > PATH_DEPTH_MAX
            {
                return Err(Error::TooDeep { id: sub.object_id() });
            }
        }
    }
    Ok(())
}

/// The height of `read[i]` among the new trees: 0 without new
/// subdirectories, else one more than the highest. Recursion is bounded by
/// the nesting limit `check_depth` enforced while reading.
fn tree_height(
    i: usize,
    read: &[(TreeId, Bytes, Vec<TreeId>, bool)],
    index: &HashMap<TreeId, usize>,
    height: &mut [Option<usize>],
) -> usize {
    if let Some(h) = height[i] {
        return h;
    }
    let mut h = 0;
    for sub in &read[i].2 {
        if let Some(&j) = index.get(sub) {
            h = h.max(1 + tree_height(j, read, index, height));
        }
    }
    height[i] = Some(h);
    h
}

/// Copies `blobs` (id, size as the tree records it): those the store may
/// keep in chunks (from [`CHUNKING_LEN_MIN`] bytes) one by one, streamed a
/// few chunks at a time, never whole (so a large file costs a bounded
/// amount of memory); the others in batches.
fn copy_blobs(
    from: &dyn Store,
    to: &dyn Store,
    blobs: &[(ObjectId, u64)],
    stats: &mut TransferStats,
) -> Result<()> {
    let (large, small): (Vec<_>, Vec<_>) =
        blobs.iter().partition(|(_, size)| *size >= CHUNKING_LEN_MIN as u64);
    for (id, _) in &large {
        // The reader verifies every chunk, and the whole blob at its end,
        // before put_reader writes the chunk list that makes it visible.
        let mut reader = ObjectReader::new(from, id)?;
        let (stored, len) = to.put_reader(&mut reader)?;
        if stored != *id {
            return Err(StoreError::Corrupt { id: *id, actual: stored }.into());
        }
        stats.blobs += 1;
        stats.blob_bytes += len;
    }
    copy_small_blobs(from, to, &small, stats)
}

fn copy_small_blobs(
    from: &dyn Store,
    to: &dyn Store,
    blobs: &[(ObjectId, u64)],
    stats: &mut TransferStats,
) -> Result<()> {
    let mut start = 0;
    while start < blobs.len() {
        let mut end = start;
        let mut len = 0u64;
        while end < blobs.len()
            && end - start < TRANSFER_BATCH_COUNT_MAX
            && (end == start || len.saturating_add(blobs[end].1) <= TRANSFER_BATCH_LEN_MAX)
        {
            len = len.saturating_add(blobs[end].1);
            end += 1;
        }
        let ids: Vec<ObjectId> = blobs[start..end].iter().map(|(id, _)| *id).collect();
        let datas = from.get_many(&ids)?;
        let batch: Vec<(ObjectId, &[u8])> =
            ids.iter().zip(&datas).map(|(id, bytes)| (*id, bytes.as_ref())).collect();
        to.put_batch(&batch)?;
        stats.blobs += ids.len() as u64;
        stats.blob_bytes += datas.iter().map(|b| b.len() as u64).sum::<u64>();
        start = end;
    }
    Ok(())
}

/// Whether `ancestor` is `descendant` or one of its ancestors (all parents
/// followed), reading commits from `store`.
pub fn is_ancestor(store: &dyn Store, ancestor: CommitId, descendant: CommitId) -> Result<bool> {
    let mut seen = HashSet::new();
    let mut stack = vec![descendant];
    while let Some(id) = stack.pop() {
        if id == ancestor {
            return Ok(true);
        }
        if seen.insert(id) {
            stack.extend(read_commit(store, id)?.parents.iter().copied());
        }
    }
    Ok(false)
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote branch already named the commit.
    UpToDate,
    /// The remote branch moved from `old` (`None`: created) to `new`.
    Pushed {
        /// Where it was.
        old: Option<CommitId>,
        /// Where it is.
        new: CommitId,
        /// What was uploaded.
        stats: TransferStats,
    },
}

/// Pushes commit `tip` from `local` to the remote `branch`: fast-forward
/// only, objects uploaded and synced before the ref moves, the ref moved
/// by compare-and-swap from the value read at the start.
pub fn push(
    local: &dyn Store,
    store: &RemoteStore,
    refs: &RemoteRefs,
    branch: &RefName,
    tip: CommitId,
) -> Result<PushOutcome> {
    // Fail early, before uploading anything, on a server that cannot keep
    // refs safely.
    refs.probe().map_err(ref_err)?;
    let old = refs.get(branch).map_err(ref_err)?.map(CommitId::new);
    if old == Some(tip) {
        return Ok(PushOutcome::UpToDate);
    }
    if let Some(remote) = old {
        let reason = if !local.contains(&remote.object_id())? {
            Some(Rejection::Unknown { remote })
        } else if !is_ancestor(local, remote, tip)? {
            Some(Rejection::NotAncestor { remote })
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::PushRejected { branch: branch.clone(), reason });
        }
    }
    match publish(local, store, refs, branch, old, tip)? {
        Some(stats) => Ok(PushOutcome::Pushed { old, new: tip, stats }),
        None => Err(Error::PushRejected { branch: branch.clone(), reason: Rejection::Raced }),
    }
}

/// Uploads what `tip` reaches and moves the remote ref `name` from `old`
/// to it by compare-and-swap; `None` if another writer moved the ref
/// first (the upload stays: it is garbage a remote gc collects).
fn publish(
    local: &dyn Store,
    store: &RemoteStore,
    refs: &RemoteRefs,
    name: &RefName,
    old: Option<CommitId>,
    tip: CommitId,
) -> Result<Option<TransferStats>> {
    // No remote gc deletes anything while the lease is held; and what the
    // store says it contains is read after the lease was taken (packs a gc
    // deleted before are forgotten), so the push never relies on an
    // object that is about to go. See docs/format.md, "Remote gc".
    let lease = PushLease::take(store.remote())?;
    // Objects other writers published since the store was opened count as
    // present: nothing they hold is uploaded again.
    store.refresh()?;
    let stats = transfer(local, store, tip)?;
    lease.check()?;
    let updated = refs.update(name, old.map(|c| c.object_id()), tip.object_id());
    lease.release()?;
    match updated {
        Ok(()) => Ok(Some(stats)),
        Err(RefError::Conflict { .. }) => Ok(None),
        Err(e) => Err(ref_err(e)),
    }
}

/// Pushes tag `name` at commit `tip` to the remote's tags (`tags`, from
/// [`RemoteRefs::tags`]): created if the remote lacks it; a remote tag at
/// another commit is [`Error::TagExists`] unless `force`, which moves it
/// (a tag names one commit: moving it is never a fast-forward question).
/// Objects are uploaded and synced before the tag is written, by
/// compare-and-swap, as for a branch.
pub fn push_tag(
    local: &dyn Store,
    store: &RemoteStore,
    tags: &RemoteRefs,
    name: &RefName,
    tip: CommitId,
    force: bool,
) -> Result<PushOutcome> {
    tags.probe().map_err(ref_err)?;
    let old = tags.get(name).map_err(ref_err)?.map(CommitId::new);
    if old == Some(tip) {
        return Ok(PushOutcome::UpToDate);
    }
    if let Some(remote) = old
        && !force
    {
        return Err(Error::TagExists { tag: name.clone(), at: remote });
    }
    let mut old = old;
    let mut stats = TransferStats::default();
    // Forced, a race is lost only to give way to what the winner wrote:
    // a forced tag goes over it too (its objects are up by then).
    for _ in 0..PUSH_TAG_TRIES_MAX {
        match publish(local, store, tags, name, old, tip)? {
            Some(sent) => {
                stats.add(&sent);
                return Ok(PushOutcome::Pushed { old, new: tip, stats });
            }
            None => {
                let at = tags.get(name).map_err(ref_err)?.map(CommitId::new);
                match at {
                    Some(at) if at == tip => return Ok(PushOutcome::UpToDate),
                    Some(at) if !force => {
                        return Err(Error::TagExists { tag: name.clone(), at });
                    }
                    _ => old = at,
                }
            }
        }
    }
    Err(Error::PushRejected { branch: name.clone(), reason: Rejection::Raced })
}

/// Times a forced [`push_tag`] writes again after losing a race.
const PUSH_TAG_TRIES_MAX: usize = 4;

/// Copies what the remote `branch` reaches into `local`; returns its
/// commit (`None` if the remote has no such branch). Moves no local ref.
pub fn fetch(
    store: &RemoteStore,
    refs: &RemoteRefs,
    branch: &RefName,
    local: &dyn Store,
) -> Result<Option<(CommitId, TransferStats)>> {
    let Some(tip) = refs.get(branch).map_err(ref_err)?.map(CommitId::new) else {
        return Ok(None);
    };
    // The ref was written after what it names was published: list the
    // packs again so that this handle sees them.
    store.refresh()?;
    let stats = transfer_from_remote(store, local, tip)?;
    Ok(Some((tip, stats)))
}

/// What a pull did to the local branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// The local branch already named the remote's commit.
    UpToDate,
    /// The local branch did not exist and was created at `new`.
    Created {
        /// The remote's commit.
        new: CommitId,
    },
    /// The local branch moved forward from `old` to `new`.
    FastForward {
        /// Where it was.
        old: CommitId,
        /// The remote's commit.
        new: CommitId,
    },
    /// The local branch already contains the remote's commit: nothing to do.
    Ahead,
    /// Both sides have commits the other lacks; the remote's are fetched,
    /// the local branch is left as it was (vst does not merge).
    Diverged {
        /// The local branch's commit.
        local: CommitId,
        /// The remote's commit.
        remote: CommitId,
    },
}

/// Fetches the remote `branch` into `repo` and moves the local branch of
/// the same name forward to it when that is a fast-forward (by
/// compare-and-swap, logged as `pull`). `None` if the remote has no such
/// branch.
pub fn pull(
    repo: &Repo,
    store: &RemoteStore,
    refs: &RemoteRefs,
    branch: &RefName,
) -> Result<Option<(PullOutcome, TransferStats)>> {
    let local_store = repo.store();
    let Some((remote, stats)) = fetch(store, refs, branch, local_store.as_ref())? else {
        return Ok(None);
    };
    Ok(Some((fast_forward(repo, branch, remote)?, stats)))
}

/// Moves the local `branch` of `repo` forward to `remote` (a commit the
/// repository has) when that is a fast-forward or creates it, by
/// compare-and-swap, logged as `pull`; says what it did otherwise.
pub fn fast_forward(repo: &Repo, branch: &RefName, remote: CommitId) -> Result<PullOutcome> {
    let local_store = repo.store();
    let local = repo.refs().get(branch).map_err(ref_err)?.map(CommitId::new);
    let outcome = match local {
        Some(local) if local == remote => PullOutcome::UpToDate,
        None => PullOutcome::Created { new: remote },
        Some(local) if is_ancestor(local_store.as_ref(), local, remote)? => {
            PullOutcome::FastForward { old: local, new: remote }
        }
        Some(local) if is_ancestor(local_store.as_ref(), remote, local)? => PullOutcome::Ahead,
        Some(local) => PullOutcome::Diverged { local, remote },
    };
    if matches!(outcome, PullOutcome::Created { .. } | PullOutcome::FastForward { .. }) {
        repo.refs()
            .update(branch, local.map(|c| c.object_id()), Some(remote.object_id()), "pull")
            .map_err(ref_err)?;
    }
    Ok(outcome)
}

/// Fetches every branch of the remote into `repo` (a new repository) and
/// creates the local branches. Returns the branches and their commits.
pub fn clone_into(
    repo: &Repo,
    store: &RemoteStore,
    refs: &RemoteRefs,
) -> Result<(Vec<(RefName, CommitId)>, TransferStats)> {
    let local = repo.store();
    let mut total = TransferStats::default();
    let branches = refs.list().map_err(ref_err)?;
    store.refresh()?;
    let mut out = Vec::new();
    for (name, id) in branches {
        let tip = CommitId::new(id);
        total.add(&transfer_from_remote(store, local.as_ref(), tip)?);
        repo.refs().update(&name, None, Some(id), "clone").map_err(ref_err)?;
        out.push((name, tip));
    }
    Ok((out, total))
}

pub(crate) fn ref_err(e: RefError) -> Error {
    match e {
        RefError::Store(e) => Error::Store(e),
        other => Error::Ref(other),
    }
}
