//! The local pack store: append-only pack files and an index.
//!
//! Layout under the store directory (byte formats in `docs/format.md`):
//!
//! ```text
//! lock                 held exclusively by the one process that writes
//! index                a table of (id -> pack, offset, ...) entries sorted by
//!                      id, then a log of entries appended (`pack_index`)
//! packs/pack-00000001.pack
//! packs/pack-00000002.pack ...
//! ```
//!
//! A pack is a magic header and a sequence of records, each with a CRC-32
//! of its header and payload. Writes go to an in-memory buffer that is
//! appended to the current pack in one write; `sync` appends the buffer,
//! `fsync`s the pack (one `fsync` shared by every thread waiting on it:
//! group commit), and only then appends the index entries of what it made
//! durable. The index is never synced on the commit path: it is a cache of
//! the packs. On open, the index is read (not the packs), then only the
//! tail of each pack that the index does not cover is scanned; a torn last
//! record is cut away. A missing or damaged index is rebuilt from the packs.
//! A writer's open also deletes the packs an interrupted GC left behind.
//! Once its log is long, the index is rewritten whole as a sorted table
//! (at a writer's open, by GC, or by [`PackStore::fold_index`]).
//!
//! Files larger than [`CHUNKING_LEN_MIN`] are split into content-defined
//! chunks ([`fastcdc`]); the file's id then names a manifest record that
//! lists the chunk ids, so a range read touches only the chunks it needs.
//! Chunks and whole objects are compressed with zstd where that saves at
//! least 1/32 of their size; what a sample's byte entropy shows to be
//! nearly incompressible (random or compressed data, directory trees) is
//! stored raw without trying.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::pack_index::{self, INDEX_ENTRY_LEN, Index, LOG_ENTRIES_COMPACT_MIN, Table};
pub use crate::pack_index::{INDEX_MAGIC, INDEX_MAGIC_V1};
use crate::vfs::{Vfs, VfsLock};
use crate::{IdBuildHasher, ObjectId, Store, StoreError};

/// First bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"VSTPACK\x01";
/// A pack is sealed and a new one started once it reaches this length.
pub const PACK_LEN_MAX: u64 = 1 << 30;
/// Objects at least this long are split into content-defined chunks.
pub const CHUNKING_LEN_MIN: usize = 1 << 20;
/// Smallest chunk FastCDC may cut (except the last of a file).
pub const CHUNK_LEN_MIN: usize = 64 * 1024;
/// The chunk length FastCDC aims for.
pub const CHUNK_LEN_AVG: usize = 256 * 1024;
/// Largest chunk FastCDC may cut.
pub const CHUNK_LEN_MAX: usize = 1 << 20;
/// Records shorter than this are never compressed: zstd's frame overhead
/// and the call itself cost more than it saves on small objects.
pub const COMPRESS_LEN_MIN: usize = 4096;
/// The write buffer is appended to the pack once it holds this much.
pub const WRITE_BUFFER_LEN_MAX: usize = 4 << 20;
/// zstd level for chunks and objects: fast, and most of the gain.
const ZSTD_LEVEL: i32 = 3;

pub(crate) const RECORD_HEADER_LEN: usize = 48;
/// How much of a pack a scan reads ahead at a time.
const SCAN_WINDOW_LEN: usize = 4 << 20;
/// Longest bad tail that can still be a torn append: more than the write
/// buffer plus any one record (a chunk list of a very large file included)
/// is damage, not an interrupted write.
const TORN_TAIL_LEN_MAX: usize = 64 << 20;
pub(crate) const RECORD_TRAILER_LEN: usize = 4;

// A whole (unchunked) object and the largest chunk must fit a record's u32
// length, and chunks must be smaller than what gets chunked.
const _: () = assert!(CHUNKING_LEN_MIN <= u32::MAX as usize);
const _: () = assert!(CHUNK_LEN_MAX <= CHUNKING_LEN_MIN);
const _: () = assert!(CHUNK_LEN_MIN < CHUNK_LEN_AVG && CHUNK_LEN_AVG < CHUNK_LEN_MAX);
const _: () = assert!(WRITE_BUFFER_LEN_MAX as u64 <= PACK_LEN_MAX);

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A whole object.
    Object = 0,
    /// One chunk of a large object; its id is the hash of the chunk.
    Chunk = 1,
    /// The list of chunks of a large object, stored under the object's id.
    Manifest = 2,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Kind::Object),
            1 => Some(Kind::Chunk),
            2 => Some(Kind::Manifest),
            _ => None,
        }
    }
}

/// How a record's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Where a record is. The remote store numbers its packs the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) stored_len: u32,
    /// Length of the payload once decoded; for a manifest, the length of the
    /// whole object.
    pub(crate) raw_len: u64,
    pub(crate) kind: Kind,
    pub(crate) codec: Codec,
}

impl Location {
    pub(crate) fn end(&self) -> u64 {
        self.offset + (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64 + u64::from(self.stored_len)
    }
}

/// Where a record may be: the write buffer is checked (under the writer
/// lock) unless the caller holds that lock and has flushed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadFrom {
    PackOrBuffer,
    /// The caller holds the writer lock and the buffer is empty.
    PackOnly,
}

/// How long a command should wait for the store's lock while another
/// command (a commit, a GC) holds it, as git waits for its index lock. The
/// library waits only as long as [`PackOptions::lock_wait`] says.
pub const LOCK_WAIT_DEFAULT: Duration = Duration::from_secs(10);
/// Pauses between tries for a held lock start at 1 ms and double up to
/// this, so a short holder is followed closely and a long one costs little.
const LOCK_RETRY_PAUSE_MAX: Duration = Duration::from_millis(50);
/// What a long-lived holder writes into the lock file (a brief one leaves
/// it empty), so that a writer that finds the lock held knows whether
/// waiting can help.
pub const LOCK_LONG_LIVED: &[u8] = b"long-lived\n";

/// Tuning of a pack store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// A pack is sealed and the next one started once it would exceed this
    /// length ([`PACK_LEN_MAX`] by default; tests use small packs).
    pub pack_len_max: u64,
    /// How long a writer's open waits for the lock while a
    /// [`Holder::Brief`] holder has it (zero by default: it fails at once
    /// with [`StoreError::Locked`]). A [`Holder::LongLived`] holder is
    /// never waited for.
    pub lock_wait: Duration,
    /// What kind of writer this is, recorded in the lock file for other
    /// writers to see.
    pub holder: Holder,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self { pack_len_max: PACK_LEN_MAX, lock_wait: Duration::ZERO, holder: Holder::Brief }
    }
}

/// How long a writer holds the store's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Holder {
    /// For one operation (a commit, a GC): another writer may wait for it.
    #[default]
    Brief,
    /// For as long as it runs (a daemon serving a writable mount): another
    /// writer fails at once, since waiting would only delay the failure.
    LongLived,
}

/// Whether a store may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// One process at a time: takes the store's lock, repairs a torn tail
    /// on open, writes.
    ReadWrite,
    /// Any number of processes: reads what was durable when opened, never
    /// changes a file.
    ReadOnly,
}

/// What opening a store found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records found in packs but not in the index (added to it).
    pub records_reindexed: u64,
    /// Bytes cut from the end of the last pack (a torn write).
    pub torn_bytes_cut: u64,
    /// Whether the index was rebuilt from the packs.
    pub index_rebuilt: bool,
    /// Packs whose tail could not be read (damage; `fsck` reports it).
    pub damaged_packs: Vec<u32>,
    /// Packs deleted because every record in them is indexed in another
    /// pack (copies left by an interrupted GC, or old packs a GC did not
    /// get to delete), and their bytes.
    pub stale_packs_removed: Vec<u32>,
    /// Bytes of the packs in `stale_packs_removed`.
    pub stale_bytes_removed: u64,
}

/// The local pack store. See the module documentation.
#[derive(Debug)]
pub struct PackStore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    access: Access,
    _lock: Option<VfsLock>,
    index: RwLock<Index>,
    writer: Mutex<Writer>,
    synced: Mutex<SyncState>,
    synced_cond: Condvar,
    poisoned: AtomicBool,
    recovery: Recovery,
    pack_len_max: u64,
    /// The current pack and how much of it is in the file, published so
    /// that a read of a record already appended takes no lock (see
    /// [`PackStore::publish`]).
    appended_pack: std::sync::atomic::AtomicU32,
    appended_len: std::sync::atomic::AtomicU64,
    /// Bumped by every GC: a reader whose location went stale retries.
    generation: std::sync::atomic::AtomicU64,
    /// Ids put through this handle that were already stored before
    /// [`Writer::fresh_from`] (the put found them). GC keeps these and
    /// every record from `fresh_from` on: they may belong to a working set
    /// that has not committed yet. Only re-puts of old objects are listed,
    /// so a long-lived handle's set does not grow with what it writes.
    fresh: Mutex<std::collections::HashSet<ObjectId, IdBuildHasher>>,
}

#[derive(Debug)]
struct Writer {
    pack: u32,
    /// Bytes of the current pack that are in the file (durable or not).
    pack_len: u64,
    /// Records not yet appended to the pack.
    buf: Vec<u8>,
    /// Index entries of records appended but not yet made durable.
    unindexed: Vec<(ObjectId, Location)>,
    /// Where this handle's records start (where the packs ended when it
    /// opened, or after its last GC): every record from here on was put
    /// through it.
    fresh_from: (u32, u64),
}

impl Writer {
    fn position(&self) -> (u32, u64) {
        (self.pack, self.pack_len + self.buf.len() as u64)
    }
}

#[derive(Debug, Default)]
struct SyncState {
    /// Everything up to this (pack, length) is durable and indexed.
    durable: (u32, u64),
    leader: bool,
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

fn pack_name(n: u32) -> String {
    format!("pack-{n:08}.pack")
}

fn parse_pack_name(name: &str) -> Option<u32> {
    let n = name.strip_prefix("pack-")?.strip_suffix(".pack")?;
    if n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()) { n.parse().ok() } else { None }
}

/// Takes the store's lock in `dir` for a writer, waiting while a brief
/// holder has it (up to `options.lock_wait`), then records the holder's
/// kind in the lock file.
fn take_lock(vfs: &dyn Vfs, dir: &Path, options: &PackOptions) -> Result<VfsLock, StoreError> {
    let path = dir.join("lock");
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let lock = loop {
        match vfs.lock(&path, false) {
            Ok(lock) => break lock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Read again at every try: a holder writes its kind just
                // after it takes the lock.
                let holder = holder_of(vfs, &path);
                let waited = start.elapsed();
                if holder == Holder::LongLived || waited >= options.lock_wait {
                    return Err(StoreError::Locked { path: dir.to_owned(), holder });
                }
                std::thread::sleep(pause.min(options.lock_wait - waited));
                pause = (pause * 2).min(LOCK_RETRY_PAUSE_MAX);
            }
            Err(e) => return Err(StoreError::Io { op: "lock the store", source: e }),
        }
    };
    // Only written when it changes: a brief holder after a brief holder
    // (every commit) writes nothing. Not synced: a crash releases the lock,
    // and the next holder rewrites what is stale.
    let kind = match options.holder {
        Holder::Brief => &b""[..],
        Holder::LongLived => LOCK_LONG_LIVED,
    };
    // (A lock file that cannot be read says "brief", as an empty one.)
    if vfs.read_file(&path).unwrap_or_default() != kind {
        vfs.write_file(&path, kind).map_err(io_err("record the lock's holder"))?;
    }
    Ok(lock)
}

/// Who holds the lock at `path`, as its file says. A long-lived holder
/// that died leaves its mark, which the next holder clears; until then
/// (a moment after it takes the lock) a writer may take it for long-lived.
fn holder_of(vfs: &dyn Vfs, path: &Path) -> Holder {
    match vfs.read_file(path) {
        Ok(bytes) if bytes == LOCK_LONG_LIVED => Holder::LongLived,
        _ => Holder::Brief,
    }
}

impl PackStore {
    /// Opens (creating if needed) the store in `dir` on the real filesystem.
    pub fn open(dir: &Path, access: Access) -> Result<Self, StoreError> {
        Self::open_with(Arc::new(crate::vfs::RealFs::new()), dir, access)
    }

    /// Opens the store in `dir` through `vfs`.
    pub fn open_with(vfs: Arc<dyn Vfs>, dir: &Path, access: Access) -> Result<Self, StoreError> {
        Self::open_with_options(vfs, dir, access, PackOptions::default())
    }

    /// Opens the store in `dir` through `vfs`, tuned by `options`.
    pub fn open_with_options(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        access: Access,
        options: PackOptions,
    ) -> Result<Self, StoreError> {
        let packs_dir = dir.join("packs");
        let lock = match access {
            Access::ReadWrite => {
                vfs.create_dir_all(&packs_dir).map_err(io_err("create the store directory"))?;
                Some(take_lock(vfs.as_ref(), dir, &options)?)
            }
            Access::ReadOnly => None,
        };
        // The index first, then the packs' lengths: entries name only synced
        // records, so a writer appending meanwhile can only make the packs
        // longer than the index says, never shorter.
        let index_bytes = match vfs.read_file(&dir.join("index")) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Io { op: "read the index", source: e }),
        };
        let mut packs: Vec<(u32, u64)> = Vec::new();
        for (name, _) in vfs.list(&packs_dir).map_err(io_err("list packs"))? {
            if let Some(n) = parse_pack_name(&name) {
                let len =
                    vfs.len(&packs_dir.join(&name)).map_err(io_err("stat a pack"))?.unwrap_or(0);
                packs.push((n, len));
            }
        }
        packs.sort_unstable();

        let mut store = PackStore {
            vfs,
            dir: dir.to_owned(),
            access,
            _lock: lock,
            index: RwLock::new(Index::default()),
            writer: Mutex::new(Writer {
                pack: 0,
                pack_len: 0,
                buf: Vec::new(),
                unindexed: Vec::new(),
                fresh_from: (0, 0),
            }),
            synced: Mutex::new(SyncState::default()),
            synced_cond: Condvar::new(),
            poisoned: AtomicBool::new(false),
            recovery: Recovery::default(),
            pack_len_max: options.pack_len_max.max(PACK_MAGIC.len() as u64 + 1),
            generation: std::sync::atomic::AtomicU64::new(0),
            appended_pack: std::sync::atomic::AtomicU32::new(0),
            appended_len: std::sync::atomic::AtomicU64::new(0),
            fresh: Mutex::new(Default::default()),
        };
        store.recover(&mut packs, index_bytes)?;
        Ok(store)
    }

    /// What opening the store found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pack_path(&self, pack: u32) -> PathBuf {
        self.dir.join("packs").join(pack_name(pack))
    }

    /// The index file. Puts append to it; GC, and folding its log into
    /// its table, replace it whole (a new file renamed over it).
    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// Loads the index, scans what it does not cover, repairs torn tails,
    /// and sets up the current pack.
    fn recover(
        &mut self,
        packs: &mut [(u32, u64)],
        index_bytes: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let rw = self.access == Access::ReadWrite;
        let pack_len: HashMap<u32, u64> = packs.iter().copied().collect();
        let loaded = index_bytes.and_then(|b| pack_index::load(b, &pack_len));
        let index_ok = loaded.is_some();
        let mut recovery = Recovery { index_rebuilt: !index_ok, ..Recovery::default() };
        let (mut index, covers, index_valid_len) =
            loaded.map_or_else(Default::default, |l| (l.index, l.covers, l.valid_len));
        // What the index covers of each pack: the contiguous run of
        // records from the header on (see `pack_index::covered`).
        let covered = pack_index::covered(&covers, index.map.values().copied());
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

    /// Creates pack `n` with its header, durably (file and directory).
    fn start_pack(&self, n: u32) -> Result<(), StoreError> {
        let path = self.pack_path(n);
        self.vfs.write_file(&path, &PACK_MAGIC).map_err(io_err("create a pack"))?;
        self.vfs.sync(&path).map_err(io_err("sync a new pack"))?;
        self.vfs.sync_dir(&self.dir.join("packs")).map_err(io_err("sync the packs directory"))
    }

    /// Writes `index` whole, as a table, durably, replacing the index
    /// file; then `index` holds it as its table and nothing else.
    fn write_index(&self, index: &mut Index) -> Result<(), StoreError> {
        let table = self.prepare_table(index.iter().collect())?;
        self.install_table()?;
        *index = Index { table, map: HashMap::default() };
        Ok(())
    }

    /// Writes an index of `entries` as a table to `index.tmp`, synced, and
    /// returns the table. On an error the temporary file is removed and the
    /// index file is untouched.
    fn prepare_table(&self, entries: Vec<(ObjectId, Location)>) -> Result<Table, StoreError> {
        let (bytes, table) = pack_index::encode(entries);
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
    fn install_table(&self) -> Result<(), StoreError> {
        let tmp = self.dir.join("index.tmp");
        self.vfs.rename(&tmp, &self.index_path()).map_err(io_err("replace the index"))?;
        self.vfs.sync_dir(&self.dir).map_err(io_err("sync the store directory"))
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

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Marks the store as failed: after an I/O error nobody can tell what
    /// reached the disk, so nothing more is written until it is reopened.
    fn poison<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record for `payload` to the write buffer and indexes it.
    fn add_record(
        &self,
        w: &mut Writer,
        kind: Kind,
        id: ObjectId,
        payload: &[u8],
        raw_len: u64,
    ) -> Result<(), StoreError> {
        let compressed = compress(kind, payload);
        let (codec, stored) = match &compressed {
            Some(c) => (Codec::Zstd, c.as_slice()),
            None => (Codec::Raw, payload),
        };
        let record_len = (RECORD_HEADER_LEN + stored.len() + RECORD_TRAILER_LEN) as u64;
        // Roll over unless the pack holds nothing yet (a record larger than
        // a pack still has to go somewhere).
        let used = w.pack_len + w.buf.len() as u64;
        if used + record_len > self.pack_len_max && used > PACK_MAGIC.len() as u64 {
            self.roll_pack(w)?;
        }
        let loc = Location {
            pack: w.pack,
            offset: w.pack_len + w.buf.len() as u64,
            stored_len: u32::try_from(stored.len())
                .expect("records are at most CHUNKING_LEN_MIN long"),
            raw_len,
            kind,
            codec,
        };
        encode_record(&mut w.buf, id, &loc, stored);
        w.unindexed.push((id, loc));
        self.index.write().unwrap_or_else(|e| e.into_inner()).insert(id, loc);
        if w.buf.len() >= WRITE_BUFFER_LEN_MAX {
            self.append_buffer(w)?;
        }
        Ok(())
    }

    /// Appends the write buffer to the current pack.
    fn append_buffer(&self, w: &mut Writer) -> Result<(), StoreError> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let path = self.pack_path(w.pack);
        let result = self.vfs.append(&path, &w.buf).map_err(io_err("append to a pack"));
        self.poison(result)?;
        w.pack_len += w.buf.len() as u64;
        w.buf.clear();
        self.publish(w);
        Ok(())
    }

    /// Publishes where the current pack's file ends. The length is stored
    /// before the pack number: a reader loads the pack first, so if it sees
    /// a new pack it also sees that pack's length; if it sees the old pack
    /// with the new pack's short length, it only takes the locked path.
    fn publish(&self, w: &Writer) {
        self.appended_len.store(w.pack_len, Ordering::Release);
        self.appended_pack.store(w.pack, Ordering::Release);
    }

    /// Whether the record at `loc` is entirely in its pack file (not in the
    /// write buffer), known without a lock.
    fn in_file(&self, loc: &Location) -> bool {
        let pack = self.appended_pack.load(Ordering::Acquire);
        let len = self.appended_len.load(Ordering::Acquire);
        loc.pack < pack || (loc.pack == pack && loc.end() <= len)
    }

    /// Seals the current pack (durably, with its index entries) and starts
    /// the next one.
    fn roll_pack(&self, w: &mut Writer) -> Result<(), StoreError> {
        self.append_buffer(w)?;
        let path = self.pack_path(w.pack);
        let result = self.vfs.sync(&path).map_err(io_err("sync a full pack"));
        self.poison(result)?;
        let entries = std::mem::take(&mut w.unindexed);
        let result = self
            .vfs
            .append(&self.index_path(), &encode_index_entries(&entries))
            .map_err(io_err("append to the index"));
        self.poison(result)?;
        let next = w.pack + 1;
        let result = self.start_pack(next);
        self.poison(result)?;
        w.pack = next;
        w.pack_len = PACK_MAGIC.len() as u64;
        self.publish(w);
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        synced.durable = synced.durable.max((next, w.pack_len));
        Ok(())
    }

    /// Puts one object: whole, or as chunks and a manifest.
    fn put_locked(&self, w: &mut Writer, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        let fresh_from = w.fresh_from;
        put_records(
            id,
            bytes,
            &|id| self.has_put(fresh_from, id),
            &mut |kind, id, data, raw_len| self.add_record(w, kind, id, data, raw_len),
        )
    }

    /// Whether `id` is stored, for a put through this handle: an id stored
    /// before `fresh_from` (the writer's) is listed as put again, so that
    /// GC keeps it.
    fn has_put(&self, fresh_from: (u32, u64), id: &ObjectId) -> bool {
        let found = self.index.read().unwrap_or_else(|e| e.into_inner()).get(id);
        if let Some(loc) = found
            && (loc.pack, loc.offset) < fresh_from
        {
            self.fresh.lock().unwrap_or_else(|e| e.into_inner()).insert(*id);
        }
        found.is_some()
    }

    /// Reads and checks one record's payload (decompressed). Checks the
    /// record's checksum and that it is the record of `id`; not that the
    /// payload hashes to `id` (callers do, by kind). `from` says whether
    /// the record may still sit in the write buffer.
    fn read_record(
        &self,
        id: &ObjectId,
        loc: &Location,
        from: ReadFrom,
    ) -> Result<Vec<u8>, StoreError> {
        let total = RECORD_HEADER_LEN + loc.stored_len as usize + RECORD_TRAILER_LEN;
        let mut raw = vec![0u8; total];
        // Most reads are of records already in the file: no lock for them.
        let buffered = from == ReadFrom::PackOrBuffer && !self.in_file(loc) && {
            let w = self.lock_writer();
            if loc.pack == w.pack && loc.offset >= w.pack_len {
                let start = (loc.offset - w.pack_len) as usize;
                raw.copy_from_slice(&w.buf[start..start + total]);
                true
            } else {
                false
            }
        };
        if !buffered {
            self.vfs.read_at(&self.pack_path(loc.pack), loc.offset, &mut raw).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    StoreError::Damaged { id: *id, damage: Damage::Truncated }
                } else {
                    StoreError::Io { op: "read a pack", source: e }
                }
            })?;
        }
        let Some((found, header, _)) = parse_record(&raw) else {
            return Err(StoreError::Damaged { id: *id, damage: Damage::Checksum });
        };
        let same = (header.kind, header.codec, header.stored_len, header.raw_len)
            == (loc.kind, loc.codec, loc.stored_len, loc.raw_len);
        if found != *id || !same {
            return Err(StoreError::Damaged { id: *id, damage: Damage::WrongRecord });
        }
        decode_stored(id, loc, &raw[RECORD_HEADER_LEN..RECORD_HEADER_LEN + loc.stored_len as usize])
    }

    fn location(&self, id: &ObjectId) -> Result<Location, StoreError> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .ok_or(StoreError::NotFound { id: *id })
    }

    /// A whole chunk or object, verified against its id.
    fn read_verified(&self, id: &ObjectId, loc: &Location) -> Result<Vec<u8>, StoreError> {
        let bytes = self.read_record(id, loc, ReadFrom::PackOrBuffer)?;
        crate::verify(id, &bytes)?;
        Ok(bytes)
    }

    fn read_manifest(
        &self,
        id: &ObjectId,
        loc: &Location,
        from: ReadFrom,
    ) -> Result<Vec<(ObjectId, u64)>, StoreError> {
        decode_manifest(id, loc.raw_len, &self.read_record(id, loc, from)?)
    }

    /// Every id in the store: objects and chunks.
    pub fn ids(&self) -> Vec<ObjectId> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(id, _)| id).collect()
    }

    /// Checks every record the index names: checksum, decoding, and the
    /// hash of every whole object and chunk. Returns the ids that fail.
    pub fn verify_all(&self) -> Vec<(ObjectId, StoreError)> {
        let entries: Vec<(ObjectId, Location)> =
            self.index.read().unwrap_or_else(|e| e.into_inner()).iter().collect();
        let mut bad = Vec::new();
        for (id, loc) in entries {
            let result = match loc.kind {
                Kind::Object | Kind::Chunk => self.read_verified(&id, &loc).map(drop),
                Kind::Manifest => {
                    self.read_manifest(&id, &loc, ReadFrom::PackOrBuffer).and_then(|chunks| {
                        // Each chunk must be a record of content of its own
                        // (a list naming itself, which a store written
                        // before the single-chunk fix can hold, is not).
                        chunks.iter().try_for_each(|(cid, _)| {
                            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                            match index.get(cid) {
                                Some(l) if *cid != id && l.kind != Kind::Manifest => Ok(()),
                                Some(_) => {
                                    Err(StoreError::Damaged { id, damage: Damage::WrongRecord })
                                }
                                None => Err(StoreError::NotFound { id: *cid }),
                            }
                        })
                    })
                }
            };
            if let Err(e) = result {
                bad.push((id, e));
            }
        }
        bad
    }
}

impl Store for PackStore {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_batch(&[(id, bytes)])
    }

    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut w = self.lock_writer();
        for (id, bytes) in objects {
            debug_assert_eq!(
                ObjectId::of(bytes),
                *id,
                "put with an id that is not the hash of the bytes"
            );
            self.put_locked(&mut w, *id, bytes)?;
        }
        Ok(())
    }

    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        self.retry_after_gc(|| self.get_once(id))
    }

    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        self.retry_after_gc(|| self.read_range_once(id, offset, len))
    }

    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        Ok(self.index.read().unwrap_or_else(|e| e.into_inner()).contains(id))
    }

    /// From the index entry: `raw_len` is the object's length, a chunked
    /// object's included (its chunk list's total).
    fn object_len(&self, id: &ObjectId) -> Result<Option<u64>, StoreError> {
        Ok(self.index.read().unwrap_or_else(|e| e.into_inner()).get(id).map(|loc| loc.raw_len))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.flush_buffer()
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.sync_all()
    }

    /// Takes the writer lock for each record, not for the whole object, so
    /// that other puts (and GC, which keeps what this handle put) go on
    /// while the reader is read.
    fn put_reader(&self, reader: &mut dyn std::io::Read) -> Result<(ObjectId, u64), StoreError> {
        self.check_writable()?;
        crate::stream::put_records_from_reader(reader, &mut |kind, id, data, raw_len| {
            self.check_writable()?;
            let mut w = self.lock_writer();
            if self.has_put(w.fresh_from, &id) {
                return Ok(());
            }
            self.add_record(&mut w, kind, id, data, raw_len)
        })
    }

    fn chunks(&self, id: &ObjectId) -> Result<Option<Vec<(ObjectId, u64)>>, StoreError> {
        self.retry_after_gc(|| {
            let loc = self.location(id)?;
            match loc.kind {
                Kind::Manifest => Ok(Some(self.read_manifest(id, &loc, ReadFrom::PackOrBuffer)?)),
                Kind::Object | Kind::Chunk => Ok(None),
            }
        })
    }
}

impl Drop for PackStore {
    /// Hands buffered records to the OS (no fsync), so that a handle
    /// dropped without a sync loses nothing to a clean exit.
    fn drop(&mut self) {
        if self.access == Access::ReadWrite && !self.poisoned.load(Ordering::Acquire) {
            let _ = self.flush_buffer();
        }
    }
}

impl PackStore {
    /// Runs a read; if it failed while a GC moved records, runs it again
    /// against the new index.
    fn retry_after_gc<T>(&self, read: impl Fn() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        match read() {
            Err(_) if self.generation.load(Ordering::Acquire) != generation => read(),
            result => result,
        }
    }

    fn get_once(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        let loc = self.location(id)?;
        match loc.kind {
            Kind::Object | Kind::Chunk => self.read_verified(id, &loc).map(Bytes::from),
            Kind::Manifest => {
                let chunks = self.read_manifest(id, &loc, ReadFrom::PackOrBuffer)?;
                // The length comes from disk: reserve no more than a sane
                // amount up front.
                let mut out = Vec::with_capacity(loc.raw_len.min(64 << 20) as usize);
                for (cid, _) in chunks {
                    out.extend_from_slice(&self.read_verified(&cid, &self.location(&cid)?)?);
                }
                crate::verify(id, &out)?;
                Ok(Bytes::from(out))
            }
        }
    }

    fn read_range_once(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let loc = self.location(id)?;
        let size = loc.raw_len;
        let end = offset.checked_add(len).filter(|&e| e <= size);
        let Some(end) = end else {
            return Err(StoreError::RangeOutOfBounds { id: *id, offset, len, size });
        };
        if loc.kind != Kind::Manifest {
            let bytes = self.get_once(id)?;
            if bytes.len() as u64 != size {
                return Err(StoreError::Damaged { id: *id, damage: Damage::WrongRecord });
            }
            return Ok(bytes.slice(offset as usize..end as usize));
        }
        // Only the chunks that overlap the range are read, each verified
        // against its own id.
        let mut out = Vec::with_capacity(len as usize);
        let mut chunk_start = 0u64;
        for (cid, chunk_len) in self.read_manifest(id, &loc, ReadFrom::PackOrBuffer)? {
            let chunk_end = chunk_start + chunk_len;
            if chunk_end > offset && chunk_start < end {
                let data = self.read_verified(&cid, &self.location(&cid)?)?;
                if data.len() as u64 != chunk_len {
                    return Err(StoreError::Damaged { id: *id, damage: Damage::Manifest });
                }
                let from = offset.max(chunk_start) - chunk_start;
                let to = end.min(chunk_end) - chunk_start;
                out.extend_from_slice(&data[from as usize..to as usize]);
            }
            if chunk_end >= end {
                break;
            }
            chunk_start = chunk_end;
        }
        Ok(Bytes::from(out))
    }

    /// Appends the write buffer to the pack, without fsync: the records
    /// survive the process dying, and recovery indexes them on open.
    fn flush_buffer(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut w = self.lock_writer();
        self.append_buffer(&mut w)
    }

    /// Makes everything put so far durable. Threads that call this together
    /// share one `fsync`: the first becomes the leader and syncs everything
    /// appended so far; the others wait and return once it covers them.
    fn sync_all(&self) -> Result<(), StoreError> {
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
struct Leadership<'a>(&'a PackStore);

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

impl PackStore {
    /// Takes the group-commit leader role (no sync runs) and the writer
    /// lock (no put runs), then appends the buffer and syncs the current
    /// pack: every record is durable until both are dropped. For GC and
    /// `fold_index`.
    fn hold_all_synced(&self) -> Result<(Leadership<'_>, MutexGuard<'_, Writer>), StoreError> {
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

/// Whether the index's log is long enough to be folded into its table.
fn log_is_long(index: &Index) -> bool {
    index.map.len() > LOG_ENTRIES_COMPACT_MIN && index.map.len() > index.table.len() / 8
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
    let header = bytes.get(..RECORD_HEADER_LEN)?;
    let (kind, codec) = (Kind::from_byte(header[0])?, Codec::from_byte(header[1])?);
    if header[2..4] != [0, 0] {
        return None;
    }
    let stored_len = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let raw_len = u64::from_le_bytes(header[8..16].try_into().ok()?);
    lengths_ok(kind, codec, stored_len, raw_len)
        .then_some(RECORD_HEADER_LEN + stored_len as usize + RECORD_TRAILER_LEN)
}

/// Whether a valid record starts anywhere in `bytes` after its first byte.
/// Only called on the bytes after a bad record, to tell damage from a torn
/// append; most offsets fail on the header's fixed bytes at once.
fn has_valid_record_after(bytes: &[u8]) -> bool {
    (1..bytes.len()).any(|i| parse_record(&bytes[i..]).is_some())
}

/// What is wrong with a damaged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The record's checksum does not match its bytes.
    Checksum,
    /// The index points at a record of another object.
    WrongRecord,
    /// The record ends past the end of its pack.
    Truncated,
    /// The compressed payload does not decompress to its recorded length.
    Decompress,
    /// A chunk list is malformed or fails its own hash.
    Manifest,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::Checksum => "its record fails its checksum",
            Damage::WrongRecord => "the index points at another record",
            Damage::Truncated => "its record is cut short",
            Damage::Decompress => "its compressed bytes do not decompress",
            Damage::Manifest => "its chunk list is damaged",
        })
    }
}

/// The record payload's compressed form, if it is stored compressed: zstd
/// for chunks and whole objects of at least [`COMPRESS_LEN_MIN`] bytes when
/// that saves at least 1/32.
pub(crate) fn compress(kind: Kind, payload: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        /// One compression context per thread: making one per record cost
        /// about 40 µs, as much as compressing 20 KB of text.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    if payload.len() < COMPRESS_LEN_MIN || kind == Kind::Manifest || looks_incompressible(payload) {
        return None;
    }
    COMPRESSOR
        .with_borrow_mut(|c| {
            let c = match c {
                Some(c) => c,
                None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
            };
            c.compress(payload).ok()
        })
        .filter(|c| c.len() + payload.len() / 32 <= payload.len())
}

/// Bits per byte of order-0 entropy above which a payload is stored
/// without trying zstd. Random and already compressed data measure about
/// 8; a directory's tree of short names (mostly 32-byte ids) about 7.5,
/// where zstd saves under a fifth at about 120 MB/s on the project's
/// machine (longer names bring a tree below the limit, and zstd then
/// gains more); source text and executables measure 3 to 5.
const INCOMPRESSIBLE_BITS_PER_BYTE: f64 = 7.0;
/// Bytes the estimate reads: this many slices of [`ENTROPY_SLICE_LEN`],
/// spread over the payload.
const ENTROPY_SLICES: usize = 16;
const ENTROPY_SLICE_LEN: usize = 256;

/// Whether `payload` would gain too little from zstd to be worth its
/// time, judged by the byte entropy of a sample (a few µs, where trying
/// zstd on a 20 KB tree costs about 150 µs).
fn looks_incompressible(payload: &[u8]) -> bool {
    let mut counts = [0u32; 256];
    let step = (payload.len() / ENTROPY_SLICES).max(ENTROPY_SLICE_LEN);
    let mut n = 0u32;
    for start in (0..payload.len()).step_by(step) {
        for &b in &payload[start..payload.len().min(start + ENTROPY_SLICE_LEN)] {
            counts[b as usize] += 1;
        }
        n += payload.len().min(start + ENTROPY_SLICE_LEN) as u32 - start as u32;
    }
    let n = f64::from(n);
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    bits > INCOMPRESSIBLE_BITS_PER_BYTE
}

/// Decodes a record's stored payload (checked against its header already)
/// to the bytes it holds. Does not hash them.
pub(crate) fn decode_stored(
    id: &ObjectId,
    loc: &Location,
    stored: &[u8],
) -> Result<Vec<u8>, StoreError> {
    match loc.codec {
        Codec::Raw => Ok(stored.to_vec()),
        Codec::Zstd => {
            let len = usize::try_from(loc.raw_len)
                .map_err(|_| StoreError::Damaged { id: *id, damage: Damage::Decompress })?;
            zstd::bulk::decompress(stored, len)
                .ok()
                .filter(|d| d.len() == len)
                .ok_or(StoreError::Damaged { id: *id, damage: Damage::Decompress })
        }
    }
}

/// The content-defined chunks of an object of at least
/// [`CHUNKING_LEN_MIN`] bytes, in order.
/// Appends one record: kind, id, payload, raw length.
pub(crate) type AddRecord<'a> =
    dyn FnMut(Kind, ObjectId, &[u8], u64) -> Result<(), StoreError> + 'a;

/// Puts the records that store `bytes` as `id` through `add` (kind, id,
/// payload, raw length), skipping what `has` says is stored: the object
/// whole below [`CHUNKING_LEN_MIN`], else its chunks and a chunk list. One
/// plan for every store that writes pack records.
pub(crate) fn put_records(
    id: ObjectId,
    bytes: &[u8],
    has: &dyn Fn(&ObjectId) -> bool,
    add: &mut AddRecord<'_>,
) -> Result<(), StoreError> {
    if has(&id) {
        return Ok(());
    }
    if bytes.len() < CHUNKING_LEN_MIN {
        return add(Kind::Object, id, bytes, bytes.len() as u64);
    }
    let mut listed = Vec::new();
    for data in chunks(bytes) {
        let cid = ObjectId::of(data);
        if !has(&cid) {
            add(Kind::Chunk, cid, data, data.len() as u64)?;
        }
        listed.push((cid, data.len() as u64));
    }
    // An object that is one chunk (at most CHUNK_LEN_MAX long) has the
    // chunk's id: the chunk record is the object, and a chunk list under
    // the same id would shadow it.
    if let [(only, _)] = listed[..]
        && only == id
    {
        return Ok(());
    }
    add(Kind::Manifest, id, &encode_manifest(&listed), bytes.len() as u64)
}

pub(crate) fn chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    fastcdc::v2020::FastCDC::new(bytes, CHUNK_LEN_MIN, CHUNK_LEN_AVG, CHUNK_LEN_MAX)
        .map(move |c| &bytes[c.offset..c.offset + c.length])
}

/// A chunk list's payload: the count, each chunk's id and length, and the
/// BLAKE3 of what comes before.
pub(crate) fn encode_manifest(listed: &[(ObjectId, u64)]) -> Vec<u8> {
    let mut manifest = Vec::new();
    put_varint(&mut manifest, listed.len() as u64);
    for (cid, len) in listed {
        manifest.extend_from_slice(cid.as_bytes());
        put_varint(&mut manifest, *len);
    }
    let check = ObjectId::of(&manifest);
    manifest.extend_from_slice(check.as_bytes());
    manifest
}

/// Parses and checks the chunk list of object `id` of `raw_len` bytes.
pub(crate) fn decode_manifest(
    id: &ObjectId,
    raw_len: u64,
    bytes: &[u8],
) -> Result<Vec<(ObjectId, u64)>, StoreError> {
    let damaged = || StoreError::Damaged { id: *id, damage: Damage::Manifest };
    let body_len = bytes.len().checked_sub(32).ok_or_else(damaged)?;
    let (body, check) = bytes.split_at(body_len);
    if ObjectId::of(body).as_bytes() != check {
        return Err(damaged());
    }
    let (count, mut rest) = take_varint(body).ok_or_else(damaged)?;
    let mut chunks = Vec::new();
    let mut total = 0u64;
    for _ in 0..count {
        let cid: [u8; 32] = rest.get(..32).ok_or_else(damaged)?.try_into().expect("32 bytes");
        let (len, next) = take_varint(&rest[32..]).ok_or_else(damaged)?;
        total = total.checked_add(len).ok_or_else(damaged)?;
        chunks.push((ObjectId::from_bytes(cid), len));
        rest = next;
    }
    if !rest.is_empty() || total != raw_len {
        return Err(damaged());
    }
    Ok(chunks)
}

pub(crate) fn encode_record(out: &mut Vec<u8>, id: ObjectId, loc: &Location, stored: &[u8]) {
    let start = out.len();
    out.push(loc.kind as u8);
    out.push(loc.codec as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&loc.stored_len.to_le_bytes());
    out.extend_from_slice(&loc.raw_len.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(stored);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Parses the record at the start of `bytes`: its id, its location fields
/// (pack and offset left 0) and its total length. `None` if it is
/// truncated, malformed or fails its checksum.
pub(crate) fn parse_record(bytes: &[u8]) -> Option<(ObjectId, Location, usize)> {
    let header = bytes.get(..RECORD_HEADER_LEN)?;
    let (kind, codec) = (Kind::from_byte(header[0])?, Codec::from_byte(header[1])?);
    if header[2..4] != [0, 0] {
        return None;
    }
    let stored_len = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let raw_len = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let id = ObjectId::from_bytes(header[16..48].try_into().ok()?);
    // Lengths first: they are cheap to check, and a CRC over a bogus length
    // would be work for nothing (a scan tries many offsets).
    if !lengths_ok(kind, codec, stored_len, raw_len) {
        return None;
    }
    let body_end = RECORD_HEADER_LEN.checked_add(stored_len as usize)?;
    let crc = bytes.get(body_end..body_end + RECORD_TRAILER_LEN)?;
    if crc32fast::hash(&bytes[..body_end]).to_le_bytes() != crc {
        return None;
    }
    let loc = Location { pack: 0, offset: 0, stored_len, raw_len, kind, codec };
    Some((id, loc, body_end + RECORD_TRAILER_LEN))
}

/// Whether a record's lengths can be true: a whole object is under the
/// chunking threshold, a chunk at most the largest chunk, a raw payload is
/// as long as its object, a compressed one shorter, and a chunk list is
/// never compressed. Lengths come from disk; nothing is allocated or
/// sliced by them before this holds.
pub(crate) fn lengths_ok(kind: Kind, codec: Codec, stored_len: u32, raw_len: u64) -> bool {
    let stored = u64::from(stored_len);
    let size_ok = match kind {
        Kind::Object => raw_len < CHUNKING_LEN_MIN as u64,
        Kind::Chunk => raw_len <= CHUNK_LEN_MAX as u64,
        Kind::Manifest => codec == Codec::Raw,
    };
    let codec_ok = match (kind, codec) {
        (Kind::Manifest, _) => true,
        (_, Codec::Raw) => raw_len == stored,
        (_, Codec::Zstd) => stored <= raw_len,
    };
    size_ok && codec_ok
}

/// The 64-byte index entries of `entries` (`docs/format.md`, Index).
pub(crate) fn encode_index_entries(entries: &[(ObjectId, Location)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY_LEN);
    for (id, loc) in entries {
        let start = out.len();
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&loc.pack.to_le_bytes());
        out.extend_from_slice(&loc.offset.to_le_bytes());
        out.extend_from_slice(&loc.stored_len.to_le_bytes());
        out.extend_from_slice(&loc.raw_len.to_le_bytes());
        out.push(loc.kind as u8);
        out.push(loc.codec as u8);
        out.extend_from_slice(&[0, 0]);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

pub(crate) fn decode_index_entry(raw: &[u8]) -> Option<(ObjectId, Location)> {
    if raw.len() != INDEX_ENTRY_LEN {
        return None;
    }
    let (body, crc) = raw.split_at(INDEX_ENTRY_LEN - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let (kind, codec) = (Kind::from_byte(body[56])?, Codec::from_byte(body[57])?);
    if body[58..60] != [0, 0] {
        return None;
    }
    let loc = Location {
        pack: u32::from_le_bytes(body[32..36].try_into().ok()?),
        offset: u64::from_le_bytes(body[36..44].try_into().ok()?),
        stored_len: u32::from_le_bytes(body[44..48].try_into().ok()?),
        raw_len: u64::from_le_bytes(body[48..56].try_into().ok()?),
        kind,
        codec,
    };
    // A record starts after the pack header, and far enough from the end
    // of the address space that its end cannot overflow.
    let offset_ok = loc.offset >= PACK_MAGIC.len() as u64 && loc.offset < u64::MAX / 2;
    if !offset_ok || !lengths_ok(kind, codec, loc.stored_len, loc.raw_len) {
        return None;
    }
    Some((ObjectId::from_bytes(body[..32].try_into().ok()?), loc))
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((n, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text and repetitive data are worth compressing; random bytes and a
    /// tree-like layout (short names, 32-byte ids) are not.
    #[test]
    fn incompressible_data_is_recognized_by_its_entropy() {
        let text = include_bytes!("pack.rs");
        assert!(!looks_incompressible(text));
        assert!(!looks_incompressible(&[7u8; 10_000]));
        let mut random = Vec::new();
        let mut tree = Vec::new();
        for i in 0..500u32 {
            let id = ObjectId::of(&i.to_le_bytes());
            random.extend_from_slice(id.as_bytes());
            let name = format!("f{i}.txt");
            tree.push(name.len() as u8);
            tree.extend_from_slice(name.as_bytes());
            tree.push(1);
            tree.extend_from_slice(id.as_bytes());
            tree.extend_from_slice(&(i * 37 % 4000).to_le_bytes()[..2]);
        }
        assert!(looks_incompressible(&random));
        assert!(looks_incompressible(&tree));
        assert_eq!(compress(Kind::Object, &tree), None, "stored as it is");
        assert!(compress(Kind::Object, text).is_some());
    }
}
