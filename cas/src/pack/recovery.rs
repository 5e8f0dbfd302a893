//! Opening a pack store: loading the index, scanning what it does not
//! cover, telling a torn append from damage, repairing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::index::{self, Index, encode_index_entries, log_is_long};
use super::{Access, PackStore, Recovery, io_err};
use crate::record::{
    Location, PACK_MAGIC, RECORD_HEADER_LEN, RECORD_TRAILER_LEN, header_fields, parse_record,
};
use crate::vfs::Vfs;
use crate::{ObjectId, StoreError};

/// How much of a pack a scan reads ahead at a time.
const SCAN_WINDOW_LEN: usize = 4 << 20;
/// Longest bad tail that can still be a torn append: more than the write
/// buffer plus any one record (a chunk list of a very large file included)
/// is damage, not an interrupted write.
const TORN_TAIL_LEN_MAX: usize = 64 << 20;

impl PackStore {
    /// Loads the index, scans what it does not cover, repairs torn tails,
    /// and sets up the current pack.
    pub(super) fn recover(
        &mut self,
        packs: &mut [(u32, u64)],
        index_bytes: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let rw = self.access == Access::ReadWrite;
        let pack_len: HashMap<u32, u64> = packs.iter().copied().collect();
        let loaded = index_bytes.and_then(|b| index::load(b, &pack_len));
        let index_ok = loaded.is_some();
        let mut recovery = Recovery { index_rebuilt: !index_ok, ..Recovery::default() };
        let (mut index, covers, index_valid_len) =
            loaded.map_or_else(Default::default, |l| (l.index, l.covers, l.valid_len));
        // What the index covers of each pack: the contiguous run of
        // records from the header on (see `index::covered`).
        let covered = index::covered(&covers, index.map.values().copied());
        let last = packs.last().map(|p| p.0);
        let mut found: Vec<(ObjectId, Location)> = Vec::new();
        let mut damaged_last = false;
        // Packs the index covers nothing of, scanned whole and intact by a
        // writer: each with the ids of its records (see `stale` below).
        let mut unindexed_packs: Vec<(u32, Vec<ObjectId>)> = Vec::new();
        for (pack, len) in packs.iter_mut() {
            let path = self.pack_path(*pack);
            let start = covered.get(pack).copied().unwrap_or(0);
            let found_before = found.len();
            let (good_end, damage) = self.scan_pack(*pack, &path, start, *len, &mut found)?;
            // An empty pack other than the last holds nothing and is never
            // written to again: as stale as a copy.
            let whole = start <= PACK_MAGIC.len() as u64
                && (found.len() > found_before || Some(*pack) != last);
            let intact = damage.is_none() || (damage == Some(Tail::Torn) && Some(*pack) == last);
            if rw && whole && intact {
                unindexed_packs
                    .push((*pack, found[found_before..].iter().map(|(id, _)| *id).collect()));
            }
            match damage {
                Some(Tail::Torn) if Some(*pack) == last && rw => {
                    // A torn write at the end of the log: nothing valid
                    // follows it, so it was never acknowledged. Cut it away.
                    self.vfs.truncate(&path, good_end).map_err(io_err("cut a torn pack tail"))?;
                    self.vfs.sync(&path).map_err(io_err("sync a repaired pack"))?;
                    recovery.torn_bytes_cut += *len - good_end;
                    *len = good_end;
                }
                Some(Tail::Torn) if Some(*pack) == last => {
                    // Read-only: a torn tail (or a writer's append in
                    // progress) simply ends what this handle sees.
                }
                Some(_) => {
                    // Valid records follow the bad one (or the pack is not
                    // the last): damage, not a torn write. Keep every byte
                    // for fsck and write into a new pack.
                    recovery.damaged_packs.push(*pack);
                    damaged_last |= Some(*pack) == last;
                }
                None => {}
            }
            if rw && found.len() > found_before {
                // These records were appended but maybe never synced (the
                // process died before its fsync). Sync them now, before the
                // index names them and before anything can rely on them.
                self.vfs.sync(&path).map_err(io_err("sync a recovered pack"))?;
            }
        }
        if rw {
            // A killed process may have created a pack (a rollover, a GC)
            // without syncing the directory: make every pack's name durable
            // before anything is written into one.
            self.vfs
                .sync_dir(&self.dir.join("packs"))
                .map_err(io_err("sync the packs directory"))?;
        }
        // Packs a GC superseded: it installed its table, which names only
        // its new packs, and was interrupted before deleting the old ones.
        // Every other table (a rebuild, a fold) names every record of every
        // pack that existed when it was written, and pack numbers only
        // grow, so a pack numbered below one the table names, of which the
        // index names nothing, is one of those old packs. What it holds
        // that the new packs do not is what the GC collected: not indexed
        // again, and deleted below.
        let table_pack_max = covers.iter().map(|c| c.pack).max();
        let superseded: Vec<u32> = if recovery.damaged_packs.is_empty() {
            unindexed_packs
                .iter()
                .filter(|(pack, ids)| {
                    table_pack_max.is_some_and(|max| *pack < max)
                        && !ids.iter().any(|id| index.get(id).is_some_and(|l| l.pack == *pack))
                })
                .map(|(pack, _)| *pack)
                .collect()
        } else {
            Vec::new()
        };
        found.retain(|(_, loc)| !superseded.contains(&loc.pack));
        // Keep the first location of an id (the index's own, then the scan
        // order) and index only what was new, so that duplicates left by an
        // interrupted GC are not appended again on every open.
        found.retain(|(id, _)| !index.contains(id));
        let mut seen_now = std::collections::HashSet::new();
        found.retain(|(id, _)| seen_now.insert(*id));
        recovery.records_reindexed = found.len() as u64;
        for (id, loc) in &found {
            index.insert(*id, *loc);
        }
        // Copies: a pack every record of which the index names in another
        // pack holds nothing a reader can reach. A GC interrupted before
        // its table is in place leaves them. Both kinds would otherwise
        // stay (and be copied again) until a GC completes. Only when
        // nothing is damaged: then every record the index names was
        // checked, is durable, and is intact.
        let mut stale = superseded;
        if recovery.damaged_packs.is_empty() {
            let copies: Vec<u32> = unindexed_packs
                .iter()
                .filter(|(pack, ids)| {
                    !stale.contains(pack)
                        && ids.iter().all(|id| index.get(id).is_some_and(|l| l.pack != *pack))
                })
                .map(|(pack, _)| *pack)
                .collect();
            stale.extend(copies);
        }
        drop(unindexed_packs);
        if rw {
            // The table is rewritten once the log outgrows an eighth of it,
            // so that opening stays one read of a sorted table.
            let folded = if !index_ok {
                self.write_index(&mut index)?;
                true
            } else if log_is_long(&index) {
                // Optional: if the table cannot be written (a full disk),
                // the log is kept and appended to as usual. Once renamed
                // into place it is the index, so errors after that fail.
                match self.prepare_table(index.iter().collect()) {
                    Ok(table) => {
                        self.install_table()?;
                        index = Index { table, map: HashMap::default() };
                        true
                    }
                    Err(_) => false,
                }
            } else {
                false
            };
            if !folded {
                if let Some(valid) = index_valid_len {
                    self.vfs
                        .truncate(&self.index_path(), valid)
                        .map_err(io_err("cut a torn index tail"))?;
                }
                if !found.is_empty() {
                    self.vfs
                        .append(&self.index_path(), &encode_index_entries(&found))
                        .map_err(io_err("append to the index"))?;
                }
            }
        }
        // Deleted after the index is settled (it names nothing in them).
        // Best effort: one left behind is found stale again next time.
        for &stale_pack in &stale {
            let len = packs.iter().find(|p| p.0 == stale_pack).map_or(0, |p| p.1);
            if self.vfs.remove(&self.pack_path(stale_pack)).is_ok() {
                recovery.stale_packs_removed.push(stale_pack);
                recovery.stale_bytes_removed += len;
            }
        }
        if !recovery.stale_packs_removed.is_empty() {
            let _ = self.vfs.sync_dir(&self.dir.join("packs"));
        }
        // The current pack: the last one, unless it is missing, empty of
        // even a header, full, or was stale (numbers are never reused).
        let last_usable = !damaged_last && !packs.last().is_some_and(|p| stale.contains(&p.0));
        let (pack, len) = match packs.last() {
            Some(&(n, len))
                if last_usable && len >= PACK_MAGIC.len() as u64 && len < self.pack_len_max =>
            {
                (n, len)
            }
            Some(&(n, len)) if last_usable && len < PACK_MAGIC.len() as u64 => {
                if rw {
                    self.start_pack(n)?;
                }
                (n, PACK_MAGIC.len() as u64)
            }
            other => {
                let n = other.map_or(1, |p| p.0 + 1);
                if rw {
                    self.start_pack(n)?;
                }
                (n, PACK_MAGIC.len() as u64)
            }
        };
        {
            let w = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
            w.pack = pack;
            w.pack_len = len;
            w.fresh_from = (pack, len);
        }
        self.appended_len.store(len, Ordering::Release);
        self.appended_pack.store(pack, Ordering::Release);
        self.synced.get_mut().unwrap_or_else(|e| e.into_inner()).durable = (pack, len);
        *self.index.get_mut().unwrap_or_else(|e| e.into_inner()) = index;
        self.recovery = recovery;
        Ok(())
    }

    /// Scans the records of a pack from `start` (0: from the header) to
    /// `len`, adding every valid record to `found`. Returns where the valid
    /// records end and, if something invalid follows them, whether it looks
    /// like a torn write (nothing valid after it) or damage.
    fn scan_pack(
        &self,
        pack: u32,
        path: &Path,
        start: u64,
        len: u64,
        found: &mut Vec<(ObjectId, Location)>,
    ) -> Result<(u64, Option<Tail>), StoreError> {
        let magic_len = PACK_MAGIC.len() as u64;
        if start < magic_len {
            let mut magic = [0u8; 8];
            if len < magic_len
                || self.vfs.read_at(path, 0, &mut magic).is_err()
                || magic != PACK_MAGIC
            {
                let tail = if len < magic_len && magic[..len as usize].iter().all(|&b| b == 0) {
                    Tail::Torn
                } else {
                    Tail::Damaged
                };
                return Ok((0, (len > 0).then_some(tail)));
            }
        }
        let mut offset = start.max(magic_len);
        let mut window = ReadAhead { path, len, start: offset, bytes: Vec::new() };
        while offset < len {
            let header = window.get(
                self.vfs.as_ref(),
                offset,
                RECORD_HEADER_LEN.min((len - offset) as usize),
            )?;
            let record = record_len(header)
                .filter(|&total| offset + total as u64 <= len)
                .map(|total| window.get(self.vfs.as_ref(), offset, total))
                .transpose()?
                .and_then(parse_record);
            let Some((id, mut loc, total)) = record else {
                return Ok((offset, Some(self.classify_tail(path, offset, len)?)));
            };
            loc.pack = pack;
            loc.offset = offset;
            found.push((id, loc));
            offset += total as u64;
        }
        Ok((offset, None))
    }

    /// Tells a torn append from damage: an append that a crash cut short
    /// is the last thing in the pack, so if a valid record follows the bad
    /// bytes, they are damage. An append is never longer than
    /// [`TORN_TAIL_LEN_MAX`]; a longer bad tail is damage too.
    fn classify_tail(&self, path: &Path, offset: u64, len: u64) -> Result<Tail, StoreError> {
        if len - offset > TORN_TAIL_LEN_MAX as u64 {
            return Ok(Tail::Damaged);
        }
        let mut rest = vec![0u8; (len - offset) as usize];
        self.vfs.read_at(path, offset, &mut rest).map_err(io_err("read a pack"))?;
        Ok(if has_valid_record_after(&rest) { Tail::Damaged } else { Tail::Torn })
    }
}

/// What follows the last valid record of a scanned pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing valid: an interrupted append.
    Torn,
    /// A valid record further on: bytes were damaged in place.
    Damaged,
}

/// Reads a pack forward in large pieces, so a scan costs one read per few
/// MiB, not one per record.
struct ReadAhead<'a> {
    path: &'a Path,
    len: u64,
    start: u64,
    bytes: Vec<u8>,
}

impl ReadAhead<'_> {
    /// `n` bytes at `offset` (which the caller keeps within the file).
    fn get(&mut self, vfs: &dyn Vfs, offset: u64, n: usize) -> Result<&[u8], StoreError> {
        let inside =
            offset >= self.start && offset + n as u64 <= self.start + self.bytes.len() as u64;
        if !inside {
            let want = (n.max(SCAN_WINDOW_LEN) as u64).min(self.len - offset) as usize;
            self.bytes = vec![0u8; want];
            vfs.read_at(self.path, offset, &mut self.bytes).map_err(io_err("read a pack"))?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.bytes[from..from + n])
    }
}

/// The total length of the record whose header starts `bytes`, if the
/// header's fixed fields are valid (the checksum is not checked here).
fn record_len(bytes: &[u8]) -> Option<usize> {
    let (_, _, stored_len, _) = header_fields(bytes)?;
    Some(RECORD_HEADER_LEN + stored_len as usize + RECORD_TRAILER_LEN)
}

/// Whether a valid record starts anywhere in `bytes` after its first byte.
/// Only called on the bytes after a bad record, to tell damage from a torn
/// append; most offsets fail on the header's fixed bytes at once.
fn has_valid_record_after(bytes: &[u8]) -> bool {
    (1..bytes.len()).any(|i| parse_record(&bytes[i..]).is_some())
}
