//! The settler thread: finalizes closed files in batches without the
//! lock, prepares the changed trees, stores them once the mount is quiet,
//! and compacts a grown journal.

use super::*;

/// What the settler does next.
enum Work {
    /// Finalize closed files ([`Shared::settle_round`]).
    Settle,
    /// Store the changed trees of a quiet mount ([`Shared::store_trees`]).
    Store,
}

/// The settler thread of a writable mount ([`Shared::run_settler`]);
/// stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct Settler {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Settler {
    pub(crate) fn start(shared: Arc<Shared>) -> io::Result<Self> {
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vst-mount-settle".to_owned())
                .spawn(move || shared.run_settler())?
        };
        Ok(Self { shared, thread: Some(thread) })
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        self.shared.stop_settler();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// The settler's loop: waits for closed files, finalizes them in a
    /// batch and hashes the changed trees ([`Shared::settle_round`]), then
    /// pauses three times as long as the round held the lock. Once the
    /// mount has been quiet for `Inner::store_quiet`, stores the changed
    /// trees ([`Shared::store_trees`]) and doubles that time. Returns once
    /// [`Shared::stop_settler`] is called.
    pub(crate) fn run_settler(&self) {
        // The changes count at which storing trees last failed: not retried
        // before the next change (a full disk is not hashed against).
        let mut failed_at = None;
        loop {
            let work = {
                let mut inner = self.lock();
                loop {
                    if inner.settler_stop {
                        return;
                    }
                    if !inner.closed.is_empty() || !inner.trash.is_empty() {
                        break Work::Settle;
                    }
                    if inner.ws.changed_dirs_estimate() == 0 || failed_at == Some(inner.changes) {
                        // Nothing to store: sleep until the next change.
                        inner.settler_idle = true;
                        inner =
                            self.settle_wake.wait(inner).unwrap_or_else(PoisonError::into_inner);
                        continue;
                    }
                    let quiet = inner.last_change.elapsed();
                    if quiet >= inner.store_quiet {
                        inner.store_quiet = (inner.store_quiet * 2).min(STORE_QUIET_MAX);
                        break Work::Store;
                    }
                    let rest = inner.store_quiet - quiet;
                    inner = self
                        .settle_wake
                        .wait_timeout(inner, rest)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            };
            match work {
                Work::Settle => {
                    let locked = self.settle_round();
                    std::thread::sleep((locked * SETTLE_PAUSE_FACTOR).min(SETTLE_PAUSE_MAX));
                }
                Work::Store => {
                    if let Err(changes) = self.store_trees() {
                        failed_at = Some(changes);
                    }
                }
            }
        }
    }

    /// Stores the trees of every directory changed since the last commit
    /// (or since the last time this ran), under the lock, then syncs the
    /// store without it: a commit that follows only stores its commit
    /// object, and its sync has little left to write. Trees a later change replaces before
    /// a commit stay in the store until `vst gc`, as files rewritten before
    /// a commit do; the growing quiet time bounds them (see
    /// [`STORE_QUIET_MAX`]).
    /// On failure, returns the changes count it failed at.
    /// Then, if the journal has grown past [`JOURNAL_COMPACT_LEN`] and
    /// nothing changed meanwhile, rewrites it compactly: churn between
    /// commits (files made and removed) must not grow it for ever.
    pub(super) fn store_trees(&self) -> Result<(), u64> {
        let (changes, tree) = {
            let mut inner = self.lock();
            match write_tree(&mut inner.ws, Durability::None) {
                Ok(tree) => (inner.changes, tree),
                Err(e) => {
                    self.log(&format!("storing the changed trees: {e}"));
                    return Err(inner.changes);
                }
            }
        };
        self.store.sync().map_err(|e| {
            self.log(&format!("syncing the store after storing trees: {e}"));
            changes
        })?;
        {
            let mut inner = self.lock();
            // Unchanged since `tree` was stored, and the store is synced:
            // everything it names is durable.
            if inner.changes == changes && inner.journal.len() > JOURNAL_COMPACT_LEN {
                self.compact_journal(&mut inner, tree);
            }
        }
        // A mount never reopens its store: fold the index's log into its
        // table here once it is long, so that commands outside the mount
        // open one table (tens of ms, about every hundred commits).
        if let Err(e) = self.repo.fold_index() {
            self.log(&format!("rewriting the store's index: {e}"));
        }
        Ok(())
    }

    /// Rewrites the journal as the base, the differences of `tree` (the
    /// working set's, everything it names durable) from the base, and the
    /// fsynced overlays of files not yet settled. Overlays only the old
    /// journal named go to the trash. A failure is logged and fails every
    /// later fsync, as a failed append does.
    pub(super) fn compact_journal(&self, inner: &mut Inner, tree: TreeId) {
        let changes = match diff_trees(self.store.as_ref(), inner.base_tree, Some(tree)) {
            Ok(c) => c,
            Err(e) => {
                self.log(&format!("compacting the journal: {e}"));
                return;
            }
        };
        let mut records = vec![Record::Base { commit: inner.ws.head().map(|c| *c.as_bytes()) }];
        records.extend(records_of(&changes));
        for &ino in &inner.dirty {
            let Ok(node) = inner.node(ino) else { continue };
            if let Kind::File(FileNode { overlay: Some(o), .. }) = &node.kind
                && o.journaled
            {
                for path in inner.paths(ino) {
                    records.push(Record::Overlay {
                        path: path_bytes(&path),
                        overlay: o.number,
                        executable: node.meta.perm & 0o100 != 0,
                    });
                }
            }
        }
        let path = inner.journal.path().to_owned();
        match Journal::create(&path, &records) {
            Ok(j) => {
                inner.journal = j;
                inner.journal_failed = false;
                let retired = std::mem::take(&mut inner.retired);
                inner.trash.extend(retired);
            }
            Err(e) => {
                self.log(&format!("compacting the journal {}: {e}", path.display()));
                inner.journal_failed = true;
            }
        }
    }

    /// Makes [`Shared::run_settler`] return.
    pub(crate) fn stop_settler(&self) {
        self.lock().settler_stop = true;
        self.settle_wake.notify_all();
    }

    /// Finalizes the files closed since the last round: reads, hashes and
    /// stores them on all cores without the lock, flushes the store once,
    /// then records each whose overlay did not change meanwhile (one that
    /// did is left dirty, for its next close or the next commit). Then
    /// computes the ids of the changed directories.
    /// Returns how long it held the lock.
    pub(crate) fn settle_round(&self) -> Duration {
        let started = Instant::now();
        let batch: Vec<Unsettled> = {
            let mut inner = self.lock();
            let queued = std::mem::take(&mut inner.closed);
            queued
                .into_iter()
                .filter_map(|ino| {
                    let f = inner.file(ino).ok()?;
                    let o = f.overlay.as_ref().filter(|o| o.dirty && f.writers == 0)?;
                    let (file, size, generation) = (o.file.clone(), o.size, o.generation);
                    Some(Unsettled { ino, file, size, generation, path: inner.path(ino)? })
                })
                .collect()
        };
        let mut locked = started.elapsed();
        let overlays: Vec<(&File, u64)> = batch.iter().map(|c| (&*c.file, c.size)).collect();
        let ids: Vec<Option<BlobId>> =
            crate::put_batch::put_contents(self.store.as_ref(), &overlays)
                .into_iter()
                .zip(&batch)
                .map(|(id, c)| id.map_err(|e| self.log(&format!("{}: {e}", c.path))).ok())
                .collect();
        if !batch.is_empty() && self.flush_store().is_err() {
            return locked;
        }
        let relocked = Instant::now();
        let mut inner = self.lock();
        let mut records = Vec::new();
        for (c, id) in batch.iter().zip(ids) {
            let Some(id) = id else { continue };
            let unchanged = matches!(inner.file(c.ino).map(|f| &f.overlay),
                Ok(Some(o)) if Arc::ptr_eq(&o.file, &c.file) && o.generation == c.generation && o.dirty);
            if unchanged
                && let Err(e) = self.settle(&mut inner, c.ino, Some((id, c.size)), &mut records)
            {
                self.log(&format!("{}: recording its content: {e:?}", c.path));
            }
        }
        self.journal_all(&mut inner, &records);
        inner.ws.hash_trees();
        let trash = std::mem::take(&mut inner.trash);
        drop(inner);
        locked += relocked.elapsed();
        self.remove_overlay_files(trash);
        locked
    }
}
