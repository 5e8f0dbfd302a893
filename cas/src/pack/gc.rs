//! GC (marking is the caller's: it passes the live ids; this copies them
//! into new packs and deletes the old) and rewriting the index as a table.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::index::{self, Index, Table, log_is_long};
use super::{PackStore, ReadFrom, Writer, io_err, parse_pack_name};
use crate::record::{Damage, Kind, Location, PACK_MAGIC, parse_record};
use crate::{IdBuildHasher, ObjectId, StoreError};

impl PackStore {
    /// Writes `index` whole, as a table, durably, replacing the index
    /// file; then `index` holds it as its table and nothing else.
    pub(super) fn write_index(&self, index: &mut Index) -> Result<(), StoreError> {
        let table = self.prepare_table(index.iter().collect())?;
        self.install_table()?;
        *index = Index { table, map: HashMap::default() };
        Ok(())
    }

    /// Writes an index of `entries` as a table to `index.tmp`, synced, and
    /// returns the table. On an error the temporary file is removed and the
    /// index file is untouched.
    pub(super) fn prepare_table(
        &self,
        entries: Vec<(ObjectId, Location)>,
    ) -> Result<Table, StoreError> {
        let (bytes, table) = index::encode(entries);
        let tmp = self.dir.join("index.tmp");
        let written = self
            .vfs
            .write_file(&tmp, &bytes)
            .map_err(io_err("write the index"))
            .and_then(|()| self.vfs.sync(&tmp).map_err(io_err("sync the index")));
        if written.is_err() {
            let _ = self.vfs.remove(&tmp);
        }
        written.map(|()| table)
    }

    /// Renames the table `prepare_table` wrote over the index, durably.
    pub(super) fn install_table(&self) -> Result<(), StoreError> {
        let tmp = self.dir.join("index.tmp");
        self.vfs.rename(&tmp, &self.index_path()).map_err(io_err("replace the index"))?;
        self.vfs.sync_dir(&self.dir).map_err(io_err("sync the store directory"))
    }
}

impl PackStore {
    /// Rewrites the index whole as a sorted table if its log has grown long
    /// (see `docs/format.md`, Index), after syncing what was put, so that
    /// the next open, in any process, reads one table. For a long-lived
    /// writer (a mount), which never reopens; costs a write of the whole
    /// index and two fsyncs when it does. Returns whether it did.
    pub fn fold_index(&self) -> Result<bool, StoreError> {
        self.check_writable()?;
        if !log_is_long(&self.index.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(false);
        }
        // No sync, GC or put meanwhile; the table may name only durable
        // records, so everything put is synced first.
        let (_lead, mut w) = self.hold_all_synced()?;
        {
            let mut state = self.synced.lock().unwrap_or_else(|e| e.into_inner());
            state.durable = state.durable.max(w.position());
        }
        // Written outside the index's lock, so that reads go on: with the
        // writer lock held and no leader, nothing changes the index.
        let entries: Vec<(ObjectId, Location)> =
            self.index.read().unwrap_or_else(|e| e.into_inner()).iter().collect();
        let table = self.prepare_table(entries)?;
        self.install_table()?;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) =
            Index { table, map: HashMap::default() };
        // The entries not yet logged are in the table now. (Had the install
        // failed after its rename, they would be logged by the next sync
        // again: a duplicate of a table entry, which a reader skips.)
        w.unindexed.clear();
        Ok(true)
    }
}

/// Whether GC changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Only count what would be removed.
    DryRun,
    /// Repack what is kept and delete the old packs.
    Collect,
}

/// What a GC kept and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Records kept (objects, chunks and chunk lists).
    pub records_kept: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Bytes of pack files before.
    pub bytes_before: u64,
    /// Bytes of pack files after (for a dry run: what they would be).
    pub bytes_after: u64,
    /// Whether the kept records were copied into new packs. Not when every
    /// record is kept and the packs hold nothing else: then GC writes
    /// nothing (and a dry run says so).
    pub rewritten: bool,
}

impl PackStore {
    /// Removes every record that is neither in `live` nor put through this
    /// handle since it was opened (nor a chunk of one of those), by copying
    /// the kept records into new packs, writing a new index durably, and
    /// only then deleting the old packs.
    ///
    /// Safe against commits running at the same time: other processes
    /// cannot write (the store's lock), and everything this process put
    /// since opening is kept, so objects of a commit whose ref the caller's
    /// mark did not see yet survive. Writers wait while the repack runs.
    /// A crash at any point leaves either the old packs and index, or the
    /// new ones; the next writer's open deletes the packs of the other set
    /// that survive it (see `recover`).
    pub fn gc(
        &self,
        live: &std::collections::HashSet<ObjectId>,
        mode: GcMode,
    ) -> Result<GcStats, StoreError> {
        // No sync runs while the packs are rewritten, and no put.
        let (_lead, mut w) = self.hold_all_synced()?;
        let index: HashMap<ObjectId, Location, IdBuildHasher> =
            self.index.read().unwrap_or_else(|e| e.into_inner()).iter().collect();
        let mut keep: std::collections::HashSet<ObjectId> = live.clone();
        // What this handle put: the old objects it put again, and every
        // record since it opened.
        let fresh: Vec<ObjectId> = {
            let listed = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            let since = index.iter().filter(|(_, l)| (l.pack, l.offset) >= w.fresh_from);
            listed.iter().copied().chain(since.map(|(id, _)| *id)).collect()
        };
        keep.extend(fresh.iter().copied());
        // Chunks of kept chunk lists are kept.
        let manifests: Vec<(ObjectId, Location)> = index
            .iter()
            .filter(|(id, l)| l.kind == Kind::Manifest && keep.contains(*id))
            .map(|(i, l)| (*i, *l))
            .collect();
        for (id, loc) in manifests {
            keep.extend(
                self.read_manifest(&id, &loc, ReadFrom::PackOnly)?.into_iter().map(|(cid, _)| cid),
            );
        }
        let mut kept: Vec<(ObjectId, Location)> =
            index.iter().filter(|(id, _)| keep.contains(*id)).map(|(i, l)| (*i, *l)).collect();
        kept.sort_unstable_by_key(|(_, l)| (l.pack, l.offset));
        // Every pack file on disk up to the current one: also those that
        // hold only superseded records (left by a crash during an earlier
        // GC), which no index entry names.
        let mut old_packs: Vec<u32> = Vec::new();
        for (name, _) in self.vfs.list(&self.dir.join("packs")).map_err(io_err("list packs"))? {
            if let Some(n) = parse_pack_name(&name).filter(|&n| n <= w.pack) {
                old_packs.push(n);
            }
        }
        let mut stats = GcStats {
            records_kept: kept.len() as u64,
            records_removed: (index.len() - kept.len()) as u64,
            ..GcStats::default()
        };
        for pack in &old_packs {
            stats.bytes_before +=
                self.vfs.len(&self.pack_path(*pack)).map_err(io_err("stat a pack"))?.unwrap_or(0);
        }
        let kept_len: u64 = kept.iter().map(|(_, l)| l.end() - l.offset).sum();
        // Nothing to collect: every record is kept, and the packs hold
        // only them (no duplicates, no damaged bytes). A copy would only
        // cost a rewrite of every byte.
        let nothing_to_collect = stats.records_removed == 0
            && stats.bytes_before == old_packs.len() as u64 * PACK_MAGIC.len() as u64 + kept_len;
        if nothing_to_collect {
            stats.bytes_after = stats.bytes_before;
            return Ok(stats);
        }
        stats.bytes_after = PACK_MAGIC.len() as u64 + kept_len;
        if mode == GcMode::DryRun {
            return Ok(stats);
        }
        let result = self.repack(&mut w, &kept, &old_packs);
        self.poison(result)?;
        stats.rewritten = true;
        // The records moved: from here on the fresh ones are listed.
        *self.fresh.lock().unwrap_or_else(|e| e.into_inner()) = fresh.into_iter().collect();
        w.fresh_from = w.position();
        Ok(stats)
    }

    /// Copies `kept` records into new packs after the last one, installs
    /// a new index, then deletes `old_packs`.
    fn repack(
        &self,
        w: &mut Writer,
        kept: &[(ObjectId, Location)],
        old_packs: &[u32],
    ) -> Result<(), StoreError> {
        let first_new = w.pack + 1;
        let mut pack = first_new;
        let mut out = PACK_MAGIC.to_vec();
        let mut new_index = Index::default();
        let write_pack = |n: u32, bytes: &[u8]| -> Result<(), StoreError> {
            let path = self.pack_path(n);
            self.vfs.write_file(&path, bytes).map_err(io_err("write a new pack"))?;
            self.vfs.sync(&path).map_err(io_err("sync a new pack"))
        };
        for (id, loc) in kept {
            let total = (loc.end() - loc.offset) as usize;
            if (out.len() + total) as u64 > self.pack_len_max && out.len() > PACK_MAGIC.len() {
                write_pack(pack, &out)?;
                pack += 1;
                out = PACK_MAGIC.to_vec();
            }
            let mut record = vec![0u8; total];
            self.vfs
                .read_at(&self.pack_path(loc.pack), loc.offset, &mut record)
                .map_err(io_err("read a pack"))?;
            if parse_record(&record).map(|r| r.0) != Some(*id) {
                return Err(StoreError::Damaged { id: *id, damage: Damage::Checksum });
            }
            new_index.map.insert(*id, Location { pack, offset: out.len() as u64, ..*loc });
            out.extend_from_slice(&record);
        }
        write_pack(pack, &out)?;
        self.vfs.sync_dir(&self.dir.join("packs")).map_err(io_err("sync the packs directory"))?;
        // The new index names only the new packs; once it is in place the
        // old packs are garbage.
        self.write_index(&mut new_index)?;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = new_index;
        // Before any old pack goes: a reader that fails on one from now on
        // sees the new generation and retries against the new index.
        self.generation.fetch_add(1, Ordering::AcqRel);
        w.pack = pack;
        w.pack_len = out.len() as u64;
        w.buf.clear();
        w.unindexed.clear();
        self.publish(w);
        {
            let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
            synced.durable = (pack, w.pack_len);
        }
        for old in old_packs {
            self.vfs.remove(&self.pack_path(*old)).map_err(io_err("delete an old pack"))?;
        }
        self.vfs.sync_dir(&self.dir.join("packs")).map_err(io_err("sync the packs directory"))
    }
}
