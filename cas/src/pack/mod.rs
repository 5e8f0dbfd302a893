//! The local pack store: append-only pack files and an index.
//!
//! Layout under the store directory (byte formats in `docs/format.md`):
//!
//! ```text
//! lock                 held exclusively by the one process that writes
//! index                a table of (id -> pack, offset, ...) entries sorted by
//!                      id, then a log of entries appended (`index.rs`)
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
//!
//! The records, their compression and the chunk lists are
//! `crate::record` and `crate::chunking`, shared with the remote store.
//! Here: the store and its reads and writes (`mod.rs`), opening and
//! repairing (`recovery.rs`), group commit (`group_commit.rs`), GC and
//! rewriting the index (`gc.rs`), and the index itself (`index.rs`, which
//! depends on the record format only, not on the store).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

mod gc;
mod group_commit;
mod index;
mod recovery;

pub use self::gc::{GcMode, GcStats};
pub use self::index::{INDEX_MAGIC, INDEX_MAGIC_V1};
use self::index::{Index, encode_index_entries};
pub use crate::chunking::{CHUNK_LEN_AVG, CHUNK_LEN_MAX, CHUNK_LEN_MIN, CHUNKING_LEN_MIN};
use crate::chunking::{decode_manifest, put_records, range_end, read_chunked_range, slice_whole};
pub use crate::record::{COMPRESS_LEN_MIN, Damage, PACK_MAGIC};
use crate::record::{
    Codec, Kind, Location, RECORD_HEADER_LEN, RECORD_TRAILER_LEN, compress, encode_record,
    open_record,
};
use crate::vfs::{Vfs, VfsLock};
use crate::{IdBuildHasher, ObjectId, Store, StoreError};

/// A pack is sealed and a new one started once it reaches this length.
pub const PACK_LEN_MAX: u64 = 1 << 30;
/// The write buffer is appended to the pack once it holds this much.
pub const WRITE_BUFFER_LEN_MAX: usize = 4 << 20;

const _: () = assert!(WRITE_BUFFER_LEN_MAX as u64 <= PACK_LEN_MAX);

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
    /// Held while bytes are written to the current pack file, and taken
    /// with the writer lock held (never the other way round): a buffer
    /// handed off ([`PackStore::end_put`]) is written without the writer
    /// lock, so that puts go on meanwhile, and whoever appends next waits
    /// here until it is in the file.
    file: Mutex<()>,
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
    /// Bytes of the current pack that are in the file (durable or not), or
    /// being written to it (`in_flight`).
    pack_len: u64,
    /// Records not yet appended to the pack.
    buf: Vec<u8>,
    /// A buffer handed off and (until its writer takes it back) being
    /// written to the current pack, and where it starts: records in it are
    /// read from here until they are in the file.
    in_flight: Option<(u64, Arc<Vec<u8>>)>,
    /// A buffer written, kept for the next hand-off (a fresh one would
    /// fault in its pages again).
    spare: Vec<u8>,
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
            file: Mutex::new(()),
            writer: Mutex::new(Writer {
                pack: 0,
                pack_len: 0,
                buf: Vec::new(),
                in_flight: None,
                spare: Vec::new(),
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

    /// Creates pack `n` with its header, durably (file and directory).
    fn start_pack(&self, n: u32) -> Result<(), StoreError> {
        let path = self.pack_path(n);
        self.vfs.write_file(&path, &PACK_MAGIC).map_err(io_err("create a pack"))?;
        self.vfs.sync(&path).map_err(io_err("sync a new pack"))?;
        self.vfs.sync_dir(&self.dir.join("packs")).map_err(io_err("sync the packs directory"))
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
        self.add_compressed(w, kind, id, payload, raw_len, compress(kind, payload))
    }

    /// [`PackStore::add_record`] with `payload`'s compressed form already
    /// made ([`compress`]), outside the writer lock.
    fn add_compressed(
        &self,
        w: &mut Writer,
        kind: Kind,
        id: ObjectId,
        payload: &[u8],
        raw_len: u64,
        compressed: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
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
        // (A put hands a full buffer off when it is done; one put of many
        // objects writes here, holding the lock, to keep the buffer bounded.)
        if w.buf.len() >= 2 * WRITE_BUFFER_LEN_MAX {
            self.append_buffer(w)?;
        }
        Ok(())
    }

    /// Appends the write buffer to the current pack, after the write of a
    /// buffer handed off before: once this returns, every record put so
    /// far is in the file.
    fn append_buffer(&self, w: &mut Writer) -> Result<(), StoreError> {
        let _file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // (A handed-off write that failed poisoned the store: its records
        // are not in the file.)
        self.check_writable()?;
        w.in_flight = None;
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

    /// Ends a put: if the write buffer is full, hands it off and writes it
    /// to the pack without the writer lock, so that other threads put into
    /// a new buffer meanwhile (a first import of many small files spent
    /// half of its time in this lock, most of it in the `write`).
    fn end_put(&self, mut w: MutexGuard<'_, Writer>) -> Result<(), StoreError> {
        if w.buf.len() < WRITE_BUFFER_LEN_MAX {
            return Ok(());
        }
        // Waits for the previous hand-off's write: the file takes buffers
        // in the order they were handed off.
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        self.check_writable()?;
        let spare = std::mem::take(&mut w.spare);
        let bytes = Arc::new(std::mem::replace(&mut w.buf, spare));
        let (pack, offset) = (w.pack, w.pack_len);
        w.pack_len += bytes.len() as u64;
        w.in_flight = Some((offset, bytes.clone()));
        drop(w);
        let result =
            self.vfs.append(&self.pack_path(pack), &bytes).map_err(io_err("append to a pack"));
        self.poison(result)?;
        // (No pack rolls while this holds the file lock: the pack number
        // stands.)
        self.appended_len.store(offset + bytes.len() as u64, Ordering::Release);
        drop(file);
        let mut w = self.lock_writer();
        if w.in_flight.as_ref().is_some_and(|(_, b)| Arc::ptr_eq(b, &bytes)) {
            w.in_flight = None;
        }
        if let Ok(mut written) = Arc::try_unwrap(bytes) {
            written.clear();
            w.spare = written;
        }
        Ok(())
    }

    /// Publishes where the current pack's file ends. The length is stored
    /// before the pack number: a reader loads the pack first, so if it sees
    /// a new pack it also sees that pack's length; if it sees the old pack
    /// with the new pack's short length, it only takes the locked path.
    /// Called with nothing in flight (after `append_buffer`, holding the
    /// writer lock).
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
            if loc.pack != w.pack {
                false
            } else if loc.offset >= w.pack_len {
                let start = (loc.offset - w.pack_len) as usize;
                raw.copy_from_slice(&w.buf[start..start + total]);
                true
            } else if let Some((at, bytes)) = w
                .in_flight
                .as_ref()
                .filter(|(at, b)| loc.offset >= *at && loc.end() <= at + b.len() as u64)
            {
                let start = (loc.offset - at) as usize;
                raw.copy_from_slice(&bytes[start..start + total]);
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
        open_record(id, loc, &raw)
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
        // Whole objects are compressed before the lock, so that threads
        // putting batches compress side by side (a first import of source
        // files is mostly zstd). One the index has already is not: it is
        // not written again.
        let new: Vec<bool> = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            objects.iter().map(|(id, _)| !index.contains(id)).collect()
        };
        let compressed: Vec<Option<Vec<u8>>> = (objects.iter().zip(new))
            .map(|((_, bytes), new)| {
                let whole = bytes.len() < CHUNKING_LEN_MIN;
                (whole && new).then(|| compress(Kind::Object, bytes)).flatten()
            })
            .collect();
        let mut w = self.lock_writer();
        for ((id, bytes), compressed) in objects.iter().zip(compressed) {
            debug_assert_eq!(
                ObjectId::of(bytes),
                *id,
                "put with an id that is not the hash of the bytes"
            );
            if bytes.len() < CHUNKING_LEN_MIN {
                if !self.has_put(w.fresh_from, id) {
                    let len = bytes.len() as u64;
                    self.add_compressed(&mut w, Kind::Object, *id, bytes, len, compressed)?;
                }
            } else {
                self.put_locked(&mut w, *id, bytes)?;
            }
        }
        self.end_put(w)
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

    /// A sync ahead has the disk write the pack while more is put, so the
    /// sync that ends a large batch waits for its tail only.
    fn syncs_ahead(&self) -> bool {
        true
    }

    /// Takes the writer lock for each record, not for the whole object, so
    /// that other puts (and GC, which keeps what this handle put) go on
    /// while the reader is read.
    fn put_reader(&self, reader: &mut dyn std::io::Read) -> Result<(ObjectId, u64), StoreError> {
        self.check_writable()?;
        crate::stream::put_records_from_reader(reader, &mut |kind, id, data, raw_len| {
            self.check_writable()?;
            // Compressed before the lock (unless already stored), as in
            // `put_batch`.
            let stored = self.index.read().unwrap_or_else(|e| e.into_inner()).contains(&id);
            let compressed = if stored { None } else { compress(kind, data) };
            let mut w = self.lock_writer();
            if self.has_put(w.fresh_from, &id) {
                return Ok(());
            }
            self.add_compressed(&mut w, kind, id, data, raw_len, compressed)?;
            self.end_put(w)
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
        let end = range_end(id, offset, len, loc.raw_len)?;
        if loc.kind != Kind::Manifest {
            return slice_whole(id, self.get_once(id)?, offset, end, loc.raw_len);
        }
        // Only the chunks that overlap the range are read, each verified
        // against its own id.
        let chunks = self.read_manifest(id, &loc, ReadFrom::PackOrBuffer)?;
        read_chunked_range(id, &chunks, offset, end, &mut |wanted| {
            wanted.iter().map(|(cid, _)| self.read_verified(cid, &self.location(cid)?)).collect()
        })
    }
}
