//! Group commit: threads that `sync` together share one `fsync` (the first
//! becomes the leader and syncs everything written so far).

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use super::index::encode_index_entries;
use super::{PackStore, Writer, io_err};
use crate::StoreError;

impl PackStore {
    /// Appends the write buffer to the pack, without fsync: the records
    /// survive the process dying, and recovery indexes them on open.
    pub(super) fn flush_buffer(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut w = self.lock_writer();
        self.append_buffer(&mut w)
    }

    /// Makes everything put so far durable. Threads that call this together
    /// share one `fsync`: the first becomes the leader and syncs everything
    /// appended so far; the others wait and return once it covers them.
    pub(super) fn sync_all(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        let target = {
            let mut w = self.lock_writer();
            self.append_buffer(&mut w)?;
            w.position()
        };
        let mut state = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.durable >= target {
                return Ok(());
            }
            if self.poisoned.load(Ordering::Acquire) {
                return Err(StoreError::Poisoned);
            }
            if state.leader {
                state = self.synced_cond.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.leader = true;
            drop(state);
            // The guard gives the role back even if the leader panics, so
            // that waiters are not stuck forever.
            let lead = Leadership(self);
            let result = self.sync_leader();
            if let Ok(position) = result {
                let mut state = self.synced.lock().unwrap_or_else(|e| e.into_inner());
                state.durable = state.durable.max(position);
            }
            drop(lead);
            result?;
            state = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Holding the group-commit leader role: no other `sync` leader or GC runs
/// until it is dropped.
pub(super) struct Leadership<'a>(&'a PackStore);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        self.0.synced.lock().unwrap_or_else(|e| e.into_inner()).leader = false;
        self.0.synced_cond.notify_all();
    }
}

impl PackStore {
    /// Waits until no leader runs, then becomes it.
    fn lead(&self) -> Leadership<'_> {
        let mut state = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        while state.leader {
            state = self.synced_cond.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.leader = true;
        Leadership(self)
    }

    /// One group-commit `fsync`: appends what is buffered, syncs the pack,
    /// then appends the index entries of what is now durable. (A new pack
    /// is made durable, directory entry included, when it is created.)
    fn sync_leader(&self) -> Result<(u32, u64), StoreError> {
        let (position, pack, entries) = {
            let mut w = self.lock_writer();
            self.append_buffer(&mut w)?;
            (w.position(), w.pack, std::mem::take(&mut w.unindexed))
        };
        let result = (|| {
            self.vfs.sync(&self.pack_path(pack)).map_err(io_err("sync a pack"))?;
            if !entries.is_empty() {
                self.vfs
                    .append(&self.index_path(), &encode_index_entries(&entries))
                    .map_err(io_err("append to the index"))?;
            }
            Ok(position)
        })();
        self.poison(result)
    }
}

impl PackStore {
    /// Takes the group-commit leader role (no sync runs) and the writer
    /// lock (no put runs), then appends the buffer and syncs the current
    /// pack: every record is durable until both are dropped. For GC and
    /// `fold_index`.
    pub(super) fn hold_all_synced(
        &self,
    ) -> Result<(Leadership<'_>, MutexGuard<'_, Writer>), StoreError> {
        self.check_writable()?;
        let lead = self.lead();
        let mut w = self.lock_writer();
        // A sync that failed while this waited for the leader role
        // poisoned the store: check again.
        self.check_writable()?;
        self.append_buffer(&mut w)?;
        let synced = self.vfs.sync(&self.pack_path(w.pack)).map_err(io_err("sync a pack"));
        self.poison(synced)?;
        Ok((lead, w))
    }
}
