//! What the control socket asks of a mount: commit, status, checkout,
//! and the checkpoint an orderly unmount leaves.

use super::*;

/// What a commit through the mount did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new commit, or `None` if there was nothing to commit.
    pub commit: Option<CommitId>,
    /// Its tree.
    pub tree: TreeId,
    /// Files the commit hashed itself (written and not yet settled); the
    /// rest were hashed as they were closed.
    pub hashed: usize,
    /// Microseconds to finalize the files still pending and to hash and
    /// store the changed trees (those the settler prepared only stored),
    /// before any sync.
    pub hash_us: u64,
    /// Microseconds for the whole commit in the daemon, the syncs of the
    /// store, the ref and the journal included.
    pub total_us: u64,
    /// Special files (FIFOs, sockets, devices) in the mount, which a tree
    /// cannot hold: not committed.
    pub skipped: Vec<RepoPath>,
}

/// What a writable mount's daemon holds, for `vst status --json`: a
/// long-lived mount's memory follows these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountStats {
    /// Inodes in the table: the loaded part of the tree, plus files out of
    /// it that are still open or not yet forgotten by the kernel.
    pub inodes: u64,
    /// Open file handles.
    pub open_handles: u64,
    /// Records in the journal of uncommitted changes.
    pub journal_records: u64,
}

/// What differs from the commit the mount is based on.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) lines: Vec<StatusLine>,
    pub(crate) stats: MountStats,
    /// The base commit's tree.
    pub(crate) base: Option<TreeId>,
    /// The mount's tree, stored (not synced).
    pub(crate) tree: TreeId,
    /// Special files in the mount, which a tree cannot hold.
    pub(crate) skipped: Vec<RepoPath>,
}

/// A path that differs from the commit the mount is based on.
#[derive(Debug, Clone)]
pub struct StatusLine {
    /// What happened to it.
    pub kind: vst::ChangeKind,
    /// Where.
    pub path: RepoPath,
}

/// Why a checkout through the mount failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// There are uncommitted changes.
    #[error(
        "the mount has uncommitted changes: commit them, or check out with --force to discard them"
    )]
    LocalChanges,
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Vst(#[from] vst::Error),
    /// `HEAD` could not be moved.
    #[error("moving HEAD")]
    Ref(#[source] vst_cas::RefError),
}

/// What a merge through the mount did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergeDone {
    /// Nothing to merge: `HEAD` already holds it.
    UpToDate,
    /// `HEAD` moved forward to it.
    FastForward(CommitId),
    /// A merge commit (two parents), which the mount is now at.
    Merged(CommitId),
}

/// Why a merge through the mount failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
    /// There are uncommitted changes.
    #[error("the mount has uncommitted changes: commit them first")]
    LocalChanges,
    /// The trees conflict: the mount cannot hold a merge in progress.
    #[error(
        "merging gives {} conflicts ({}); a writable mount cannot hold a merge in progress: `vst umount`, merge in the work tree on disk, then mount again",
        .0.len(),
        .0.iter().take(5).map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    )]
    Conflicts(Vec<RepoPath>),
    /// `HEAD` names no commit.
    #[error("nothing to merge into: HEAD has no commit yet")]
    NoHead,
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Vst(#[from] vst::Error),
    /// The branch could not be moved.
    #[error("moving the branch")]
    Ref(#[source] vst_cas::RefError),
    /// The mount could not move to the merge.
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
}

impl Shared {
    /// Merges `theirs` into `HEAD` as `vst merge` does on disk, when it
    /// needs no resolution: a fast-forward, or a merge commit with two
    /// parents; the branch moves first (compare-and-swap), then the mount.
    /// Refuses with uncommitted changes, and with conflicts.
    pub(crate) fn merge(
        &self,
        theirs: CommitId,
        options: &CommitOptions,
    ) -> Result<(MergeDone, usize), MergeError> {
        let head = self.repo.refs().head().map_err(MergeError::Ref)?;
        let ours = self.repo.head_commit()?.ok_or(MergeError::NoHead)?;
        {
            let mut inner = self.lock();
            self.finalize_all(&mut inner)
                .map_err(|e| MergeError::Vst(errno_error("finalizing open files", e)))?;
            let current = write_tree(&mut inner.ws, Durability::None)?;
            if Some(current) != inner.base_tree {
                return Err(MergeError::LocalChanges);
            }
        }
        let store = self.store.as_ref();
        let base = vst::merge::merge_base(store, ours, theirs)?;
        if base == Some(theirs) {
            return Ok((MergeDone::UpToDate, 0));
        }
        let done = if base == Some(ours) {
            MergeDone::FastForward(theirs)
        } else {
            let tree_of = |c| -> vst::Result<TreeId> { Ok(vst::read::read_commit(store, c)?.tree) };
            let base_tree = base.map(tree_of).transpose()?;
            let merged =
                vst::merge::merge_trees(store, base_tree, tree_of(ours)?, tree_of(theirs)?)?;
            if !merged.conflicts.is_empty() {
                return Err(MergeError::Conflicts(
                    merged.conflicts.into_iter().map(|c| c.path).collect(),
                ));
            }
            let mut ws = WorkingSet::from_tree(self.store.clone(), merged.tree)?;
            ws.set_head(Some(ours));
            let options = CommitOptions { merged: vec![theirs], ..options.clone() };
            MergeDone::Merged(vst::commit(&mut ws, &options)?)
        };
        let target = match done {
            MergeDone::FastForward(c) | MergeDone::Merged(c) => c,
            MergeDone::UpToDate => unreachable!("returned above"),
        };
        let branch = match head {
            Head::Branch(b) => {
                self.repo
                    .refs()
                    .update(&b, Some(ours.object_id()), Some(target.object_id()), &options.message)
                    .map_err(MergeError::Ref)?;
                Some(b)
            }
            Head::Detached(_) => None,
        };
        let changed = self.checkout(target, branch, false)?;
        Ok((done, changed))
    }

    /// Commits the working set and moves the branch `HEAD` names (or a
    /// detached `HEAD`) by compare-and-swap, as `vst commit` does. Scans
    /// nothing: files closed since the last commit are already hashed and
    /// stored; files still being written are finalized first.
    pub(crate) fn commit(
        &self,
        options: &CommitOptions,
        allow_empty: bool,
    ) -> vst::Result<Committed> {
        let started = Instant::now();
        let (committed, file, retired) = {
            let mut inner = self.lock();
            let hashed = self
                .finalize_all(&mut inner)
                .map_err(|e| errno_error("finalizing open files", e))?;
            let tree = write_tree(&mut inner.ws, Durability::None)?;
            let hash_us = micros(started);
            if !allow_empty && Some(tree) == inner.base_tree {
                // The tree is the base's (durable): whatever the journal
                // holds since its base record changes nothing.
                if inner.journal.grown() {
                    self.compact_journal(&mut inner, tree);
                }
                let total_us = micros(started);
                let skipped = inner.special_paths();
                return Ok(Committed { commit: None, tree, hashed, hash_us, total_us, skipped });
            }
            let id = self.repo.commit(&mut inner.ws, options)?;
            inner.base_tree = Some(tree);
            inner.store_quiet = STORE_QUIET_MIN;
            let base = Record::Base { commit: Some(*id.as_bytes()) };
            if inner.journal.len() > JOURNAL_COMPACT_LEN {
                let path = inner.journal.path().to_owned();
                match Journal::create(&path, std::slice::from_ref(&base)) {
                    Ok(j) => {
                        inner.journal = j;
                        inner.journal_failed = false;
                    }
                    Err(e) => {
                        self.log(&format!("rewriting the journal: {e}"));
                        inner.journal_failed = true;
                    }
                }
            } else {
                self.journal(&mut inner, base);
            }
            let retired = std::mem::take(&mut inner.retired);
            (
                Committed {
                    commit: Some(id),
                    tree,
                    hashed,
                    hash_us,
                    total_us: 0,
                    skipped: inner.special_paths(),
                },
                inner.journal.file(),
                retired,
            )
        };
        // The commit is durable (its ref moved). The journal's new base need
        // not be: a mount that finds the ref's commit holding the journal's
        // tree takes it as the base. Only if overlays named by the journal
        // are to go must it be synced first (its replay would miss them).
        if !retired.is_empty()
            && let Err(e) = file.sync_data()
        {
            self.log(&format!("syncing the journal after a commit: {e}"));
            return Ok(Committed { total_us: micros(started), ..committed });
        }
        for number in retired {
            let _ = std::fs::remove_file(overlay_dir(&self.state_dir).join(number.to_string()));
        }
        Ok(Committed { total_us: micros(started), ..committed })
    }

    /// What differs from the commit the mount is based on: O(changed
    /// directories), from the working set's cleared tree ids. The mount's
    /// trees are stored and handed to the operating system, so that another
    /// process can read them (and the files) from the store.
    pub(crate) fn status(&self) -> vst::Result<Status> {
        let mut inner = self.lock();
        self.finalize_all(&mut inner).map_err(|e| errno_error("finalizing open files", e))?;
        let tree = write_tree(&mut inner.ws, Durability::None)?;
        self.flush_store().map_err(|e| errno_error("writing the store", e))?;
        let changes = diff_trees(self.store.as_ref(), inner.base_tree, Some(tree))?;
        let stats = MountStats {
            inodes: inner.nodes.len() as u64,
            open_handles: inner.handles.len() as u64,
            journal_records: inner.journal.records(),
        };
        let lines = changes.into_iter().map(|c| StatusLine { kind: c.kind(), path: c.path });
        let skipped = inner.special_paths();
        Ok(Status { lines: lines.collect(), stats, base: inner.base_tree, tree, skipped })
    }

    /// Moves the mount to `target`: only the paths that differ change, and
    /// the kernel's caches of them are invalidated. Refuses while there are
    /// uncommitted changes, unless `force` (which discards them). Then
    /// `HEAD` names `branch`, or `target` detached.
    pub(crate) fn checkout(
        &self,
        target: CommitId,
        branch: Option<RefName>,
        force: bool,
    ) -> Result<usize, CheckoutError> {
        // Read the target's trees before taking the lock.
        let new_ws = WorkingSet::from_commit(self.store.clone(), target)?;
        let target_tree = tree_of(self.store.as_ref(), Some(target))?;
        let (notes, changed, file, retired) = {
            let mut inner = self.lock();
            self.finalize_all(&mut inner)
                .map_err(|e| CheckoutError::Vst(errno_error("finalizing open files", e)))?;
            let current = write_tree(&mut inner.ws, Durability::None)?;
            if !force && Some(current) != inner.base_tree {
                return Err(CheckoutError::LocalChanges);
            }
            let changes = diff_trees(self.store.as_ref(), Some(current), target_tree)?;
            let head = match &branch {
                Some(b) => Head::Branch(b.clone()),
                None => Head::Detached(target.object_id()),
            };
            self.repo.refs().set_head(&head).map_err(CheckoutError::Ref)?;
            inner.ws = new_ws;
            inner.base_tree = target_tree;
            let notes = self.apply_changes(&mut inner, &changes);
            self.journal(&mut inner, Record::Base { commit: Some(*target.as_bytes()) });
            let retired = std::mem::take(&mut inner.retired);
            (notes, changes.len(), inner.journal.file(), retired)
        };
        if let Err(e) = file.sync_data() {
            self.log(&format!("syncing the journal after a checkout: {e}"));
        }
        for number in retired {
            let _ = std::fs::remove_file(overlay_dir(&self.state_dir).join(number.to_string()));
        }
        self.notify(notes);
        Ok(changed)
    }

    /// Brings the loaded part of the inode table to the new working set,
    /// path by changed path; returns what the kernel must forget.
    fn apply_changes(&self, inner: &mut Inner, changes: &[Change]) -> Vec<Note> {
        let mut notes = Vec::new();
        let t = now();
        for change in changes {
            let Some((parent_path, name)) = change.path.split_last() else { continue };
            let Ok(name) = Name::try_from(name) else { continue };
            let Some(parent) = inner.loaded(&parent_path) else { continue };
            let old = match inner.nodes.get(&parent).map(|n| &n.kind) {
                Some(Kind::Dir(Some(children))) => children.by_name.get(name.as_bytes()).copied(),
                _ => continue,
            };
            notes.push(Note::Inode(parent));
            // A file with hard links is replaced instead: its other names
            // keep their content.
            let same_file = match (old.and_then(|o| inner.nodes.get(&o)), &change.new) {
                (Some(Node { kind: Kind::File(_), links, .. }), Some(EntryKind::File(_)))
                    if links.is_empty() =>
                {
                    old
                }
                _ => None,
            };
            if let (Some(ino), Some(EntryKind::File(f))) = (same_file, &change.new) {
                // The same inode, new content: an open reader sees it.
                inner.dirty.remove(&ino);
                if let Some(node) = inner.nodes.get_mut(&ino)
                    && let Kind::File(file) = &mut node.kind
                {
                    file.stored = *f;
                    let dropped = file.overlay.take();
                    node.meta.perm =
                        if f.executable { node.meta.perm | 0o111 } else { node.meta.perm & !0o111 };
                    node.meta.mtime = t;
                    node.meta.ctime = t;
                    if let Some(o) = dropped {
                        self.discard_overlay(inner, &o, true);
                    }
                }
                notes.push(Note::Inode(ino));
                continue;
            }
            if let Some(ino) = old {
                self.unlink_entry(inner, parent, &name, ino);
            }
            notes.push(Note::Entry(parent, name.clone()));
            if let Some(kind) = &change.new {
                let (kind, perm) = match kind {
                    EntryKind::File(f) => (
                        Kind::File(FileNode { stored: *f, overlay: None, writers: 0 }),
                        if f.executable { 0o755 } else { 0o644 },
                    ),
                    EntryKind::Dir(_) => (Kind::Dir(None), 0o755),
                    EntryKind::Symlink(s) => (Kind::Symlink(s.clone()), 0o777),
                };
                let meta =
                    Meta { perm, uid: self.uid, gid: self.gid, atime: t, mtime: t, ctime: t };
                let _ = inner.insert(parent, name, kind, meta);
            }
        }
        notes
    }

    /// Tells the kernel to forget cached entries, attributes and pages.
    /// Errors (the kernel did not know the entry) do not matter.
    fn notify(&self, notes: Vec<Note>) {
        let Some(notifier) = self.notifier.get() else { return };
        for note in notes {
            let _ = match note {
                Note::Entry(parent, name) => {
                    notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(name.as_bytes()))
                }
                Note::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
            };
        }
    }

    /// Finalizes every file, syncs the store, and writes a compact journal
    /// (the base and the differences from it), then deletes the overlays:
    /// what an orderly unmount leaves for the next mount.
    pub(crate) fn checkpoint(&self) -> vst::Result<()> {
        let mut inner = self.lock();
        let open: Vec<Ino> = inner.dirty.iter().copied().collect();
        for ino in open {
            if let Ok(f) = inner.file_mut(ino) {
                f.writers = 0;
            }
        }
        self.finalize_all(&mut inner).map_err(|e| errno_error("finalizing open files", e))?;
        let tree = write_tree(&mut inner.ws, Durability::None)?;
        let changes = diff_trees(self.store.as_ref(), inner.base_tree, Some(tree))?;
        self.store.sync()?;
        let mut records = vec![Record::Base { commit: inner.ws.head().map(|c| *c.as_bytes()) }];
        records.extend(records_of(&changes));
        let path = inner.journal.path().to_owned();
        inner.journal = Journal::create(&path, &records).map_err(|e| io_error("the journal", e))?;
        inner.journal_failed = false;
        inner.retired.clear();
        let overlays = overlay_dir(&self.state_dir);
        drop(inner);
        remove_overlays(&overlays).map_err(|e| io_error("the overlay directory", e))?;
        Ok(())
    }
}
