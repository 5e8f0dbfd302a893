//! The remote store: objects in an S3-compatible object store, in packs
//! written once under keys named by their content.
//!
//! Layout under the location's prefix (byte formats in `docs/format.md`):
//!
//! ```text
//! packs/<H>.pack     PACK_MAGIC, then records exactly as in local packs
//! packs/<H>.idx      the pack's index; <H> = BLAKE3 of the .pack, in hex
//! packs/all-<G>.cidx the indexes of the packs a remote gc kept
//! refs/heads/NAME    "<64 hex>\n", written only by conditional writes
//! refs/tags/NAME     the same, for tags
//! probe/<random>     short-lived keys of the conditional-write probe
//! ```
//!
//! **Write path.** Puts go into an in-memory pack (records with CRC, zstd,
//! FastCDC chunks, as in [`crate::pack`]). When it reaches
//! [`RemoteOptions::pack_len_target`], or on `flush`/`sync`, it is sealed:
//! named by its BLAKE3, and uploaded on the store's runtime while puts go
//! on into the next one (at most [`UPLOADS_IN_FLIGHT_MAX`] uploads at a
//! time). An upload writes the pack, checks its length with a HEAD, then
//! writes the index; **indexes are written strictly in the order the packs
//! were sealed**, and none after a failed upload. Readers see a pack only
//! through its index, so what becomes visible is always a prefix of what
//! was put: since trees are put after what they name and commits after
//! their trees, a store that holds a tree or commit holds everything it
//! reaches. `sync` returns once every sealed pack is visible; a ref is
//! written only after that (by the caller, see [`RemoteRefs`]).
//!
//! **Read path.** Opening lists `packs/` and loads every index (from the
//! local cache when it has it): those the newest consolidated index holds
//! (written by a remote gc, see [`consolidated`]) in one GET, the others,
//! written since, one by one. A read range-GETs one record and checks its
//! CRC, its header against the index, then the BLAKE3 of what it decodes;
//! a chunked object's chunks come from one coalesced request per pack. An
//! id not in the loaded indexes makes the store list `packs/` again before
//! it answers [`StoreError::NotFound`], so objects another writer published
//! since are found. `contains` answers from the loaded indexes only: a
//! stale `false` costs an upload of something already there, never a loss.
//! A transfer reads under a [`ReadAhead`]: a pack it reads from often is
//! fetched whole (its records that are not chunks, in a few ranges), so a
//! clone costs requests per pack, not per commit.
//!
//! A failed upload poisons the handle, as a failed write poisons the pack
//! store. Requests are retried with exponential backoff on transient
//! errors (timeouts, 5xx, throttling), for [`S3Config::retry_timeout`].

mod ahead;
mod consolidated;
pub mod gc;
mod refs;
mod s3;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::cache::FileCache;
use crate::chunking::{
    CHUNKING_LEN_MIN, decode_manifest, put_records, range_end, read_chunked_range, slice_whole,
};
use crate::record::{
    Codec, Damage, Kind, Location, PACK_MAGIC, RECORD_HEADER_LEN, RECORD_TRAILER_LEN, compress,
    encode_record, lengths_ok, open_record,
};
use crate::vfs::Vfs;
use crate::{IdBuildHasher, ObjectId, Store, StoreError};

pub use ahead::{
    READ_AHEAD_MISSES_MIN, READ_AHEAD_WINDOW_LEN_MAX, READ_AHEAD_WINDOWS_MAX, ReadAhead,
};
pub use consolidated::{CONSOLIDATED_INDEX_LEN_MAX, CONSOLIDATED_INDEX_MAGIC, Consolidated};
pub use refs::RemoteRefs;
pub use s3::{RETRY_TIMEOUT_DEFAULT, S3Config, is_loopback, parse_url};

/// First bytes of a remote pack index.
pub const REMOTE_INDEX_MAGIC: [u8; 8] = *b"VSTRIDX\x01";
/// A pack is sealed and uploaded once it holds this much (default).
pub const REMOTE_PACK_LEN_TARGET: usize = 16 << 20;
/// The largest pack target accepted: its index stays far below
/// [`REMOTE_INDEX_LEN_MAX`].
pub const REMOTE_PACK_LEN_MAX: usize = 32 << 20;
/// Sealed packs uploading at once; a put that seals another waits.
pub const UPLOADS_IN_FLIGHT_MAX: usize = 3;
/// Indexes fetched at once when a store is opened.
const INDEX_FETCHES_IN_FLIGHT_MAX: usize = 16;
/// Largest remote index accepted: 1 Mi entries of 56 bytes, far above what
/// a pack of the default target holds (a record is at least 52 bytes), and
/// a bound on what a hostile listing can make a reader fetch.
const REMOTE_INDEX_LEN_MAX: u64 = (INDEX_ENTRY_LEN as u64) << 20;
const INDEX_ENTRY_LEN: usize = 56;
/// magic, pack name, pack length, entry count.
const INDEX_HEADER_LEN: usize = 8 + 32 + 8 + 4;

const _: () = assert!(REMOTE_PACK_LEN_TARGET >= CHUNKING_LEN_MIN);
const _: () = assert!(REMOTE_PACK_LEN_TARGET <= REMOTE_PACK_LEN_MAX);
// A record is at least 52 bytes; a pack is sealed at most one record
// (a chunk of at most 1 MiB) past its target.
const _: () = assert!(
    ((REMOTE_PACK_LEN_MAX + (2 << 20)) / 52) * INDEX_ENTRY_LEN < REMOTE_INDEX_LEN_MAX as usize
);

/// Tuning of a remote store.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// A pack is sealed and uploaded once it holds this many bytes.
    pub pack_len_target: usize,
    /// A bounded local cache of what the store fetches: objects, chunks,
    /// chunk lists and pack indexes.
    pub cache: Option<CacheOptions>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self { pack_len_target: REMOTE_PACK_LEN_TARGET, cache: None }
    }
}

/// Where the local cache is and how large it may grow.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Its directory.
    pub dir: PathBuf,
    /// The most bytes it holds.
    pub len_max: u64,
    /// The filesystem it is on.
    pub vfs: Arc<dyn Vfs>,
}

/// An object-store location: a client, a key prefix, and the runtime the
/// client runs on. Cheap to clone; [`Remote::store`] and [`Remote::refs`]
/// share it.
#[derive(Debug, Clone)]
pub struct Remote {
    inner: Arc<RemoteInner>,
}

#[derive(Debug)]
struct RemoteInner {
    client: Arc<dyn ObjectStore>,
    keys: Keys,
    /// What the location is called in messages.
    name: String,
    /// Only the synchronous side holds the runtime: a runtime must not be
    /// dropped by one of its own tasks.
    rt: tokio::runtime::Runtime,
}

impl Remote {
    /// The S3 location `config` describes.
    pub fn s3(config: &S3Config) -> Result<Self, StoreError> {
        let client = Arc::new(config.build()?);
        Self::with_client(client, &config.prefix, &config.describe())
    }

    /// Keys under `prefix` in `client` (any object_store implementation,
    /// such as `object_store::memory::InMemory` for tests); `name` is what
    /// messages call it.
    pub fn with_client(
        client: Arc<dyn ObjectStore>,
        prefix: &str,
        name: &str,
    ) -> Result<Self, StoreError> {
        // The store is synchronous: requests run on a private runtime. Two
        // workers overlap uploads with the caller's hashing and
        // compression; more buy nothing on the machines vst targets.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vst-remote")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io { op: "start the object store runtime", source })?;
        let prefix = prefix.trim_matches('/').to_owned();
        let keys = Keys { prefix };
        Ok(Self { inner: Arc::new(RemoteInner { client, keys, name: name.to_owned(), rt }) })
    }

    /// What messages call this location.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Opens the object store at this location (loading its indexes).
    pub fn store(&self, options: RemoteOptions) -> Result<RemoteStore, StoreError> {
        RemoteStore::open(self.clone(), options)
    }

    /// The refs at this location.
    pub fn refs(&self) -> RemoteRefs {
        RemoteRefs::new(self.clone())
    }

    fn key(&self, rel: &str) -> Key {
        self.inner.keys.key(rel)
    }

    /// The location's prefix as a key (`None`: the bucket's root).
    fn top(&self) -> Option<Key> {
        let prefix = &self.inner.keys.prefix;
        (!prefix.is_empty()).then(|| Key::from(prefix.as_str()))
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }
}

/// The key names under a location's prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn pack(&self, name: &ObjectId) -> Key {
        self.key(&format!("packs/{name}.pack"))
    }

    fn index(&self, name: &ObjectId) -> Key {
        self.key(&format!("packs/{name}.idx"))
    }
}

fn remote_err(op: &'static str, key: &Key) -> impl FnOnce(object_store::Error) -> StoreError {
    let key = key.to_string();
    move |e| StoreError::Remote { op, key, source: Box::new(e) }
}

/// The body of a GET, read only while it stays within `len_max` bytes:
/// `Ok(None)` as soon as the server sends more. Every read whose length the
/// format bounds goes through this, so a hostile or broken server cannot
/// make a reader allocate more than it asked for (object_store's `bytes()`
/// collects whatever the body holds).
async fn body_capped(
    result: object_store::GetResult,
    len_max: u64,
) -> object_store::Result<Option<Bytes>> {
    let mut stream = result.into_stream();
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    let mut len = 0u64;
    while let Some(piece) = stream.try_next().await? {
        len += piece.len() as u64;
        if len > len_max {
            return Ok(None);
        }
        match &first {
            None => first = Some(piece),
            Some(f) => {
                if rest.is_empty() {
                    // Bounded by `len_max`, which the caller chose.
                    rest.reserve(len_max as usize);
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&piece);
            }
        }
    }
    Ok(Some(if rest.is_empty() { first.unwrap_or_default() } else { Bytes::from(rest) }))
}

/// Exactly the bytes `range` of `key`, or an error: a body longer than the
/// range is not read past it, a shorter one is refused.
async fn get_range_exact(
    client: &dyn ObjectStore,
    key: &Key,
    range: std::ops::Range<u64>,
) -> Result<Bytes, StoreError> {
    let len = range.end - range.start;
    let options = object_store::GetOptions::new().with_range(Some(range));
    let got = async { body_capped(client.get_opts(key, options).await?, len).await }
        .await
        .map_err(remote_err("read", key))?;
    match got {
        Some(bytes) if bytes.len() as u64 == len => Ok(bytes),
        _ => Err(StoreError::RemoteDamaged {
            key: key.to_string(),
            what: "the server returned a range of the wrong length",
        }),
    }
}

/// One pack, numbered by the order this handle learnt of it (the
/// `Location::pack` of its records).
#[derive(Debug, Clone, Default)]
struct Pack {
    /// BLAKE3 of the whole pack: its key. `None` while it is being filled.
    name: Option<ObjectId>,
    /// Its bytes, while sealed but not yet known to be uploaded.
    data: Option<Bytes>,
}

/// State shared with the upload tasks (which must not hold the runtime).
#[derive(Debug)]
struct Shared {
    index: RwLock<HashMap<ObjectId, Location, IdBuildHasher>>,
    packs: RwLock<Vec<Pack>>,
    /// Names of the packs whose index is loaded or being uploaded.
    known: Mutex<HashSet<ObjectId>>,
    /// The generation of the consolidated index last loaded.
    consolidated: Mutex<Option<u64>>,
    poisoned: AtomicBool,
    cache: Option<FileCache>,
}

#[derive(Debug)]
struct Writer {
    /// The pack being filled.
    pack: u32,
    buf: Vec<u8>,
    entries: Vec<(ObjectId, Location)>,
    /// Uploads in sealing order.
    uploads: VecDeque<tokio::task::JoinHandle<Result<(), StoreError>>>,
    /// Resolved when the last sealed pack's index is written (`true`) or
    /// its upload failed (`false`); the next upload waits for it.
    last_published: Option<tokio::sync::watch::Receiver<Option<bool>>>,
}

/// An object store used as a vst store. See the module documentation.
#[derive(Debug)]
pub struct RemoteStore {
    remote: Remote,
    shared: Arc<Shared>,
    writer: Mutex<Writer>,
    pack_len_target: usize,
    ahead: Mutex<ahead::AheadState>,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Every update under these locks is a single insert or assignment, so a
    // poisoned lock still guards a sound value.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RemoteStore {
    /// Opens the store at `remote`: lists `packs/` and loads every index.
    pub fn open(remote: Remote, options: RemoteOptions) -> Result<Self, StoreError> {
        let store = Self::open_blind(remote, options)?;
        store.refresh()?;
        Ok(store)
    }

    /// A handle at `remote` that has loaded no index: it contains nothing
    /// but what it puts, so every object put is written again into its own
    /// packs (a remote gc's copy of what is live). It reads only what it
    /// wrote until [`RemoteStore::refresh`].
    pub fn open_blind(remote: Remote, options: RemoteOptions) -> Result<Self, StoreError> {
        let cache = match &options.cache {
            Some(c) => {
                Some(FileCache::open(c.vfs.clone(), &c.dir, c.len_max).map_err(|source| {
                    StoreError::Io { op: "open the object store's local cache", source }
                })?)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            index: RwLock::default(),
            packs: RwLock::new(vec![Pack::default()]),
            known: Mutex::default(),
            consolidated: Mutex::default(),
            poisoned: AtomicBool::new(false),
            cache,
        });
        let store = Self {
            remote,
            shared,
            writer: Mutex::new(Writer {
                pack: 0,
                buf: Vec::new(),
                entries: Vec::new(),
                uploads: VecDeque::new(),
                last_published: None,
            }),
            pack_len_target: options.pack_len_target.clamp(CHUNKING_LEN_MIN, REMOTE_PACK_LEN_MAX),
            ahead: Mutex::default(),
        };
        Ok(store)
    }

    /// The names of the packs this handle knows of (loaded or uploaded).
    pub fn pack_names(&self) -> Vec<ObjectId> {
        let mut out: Vec<ObjectId> = lock(&self.shared.known).iter().copied().collect();
        out.sort();
        out
    }

    /// The location.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The local cache, if it has one.
    pub fn cache(&self) -> Option<&FileCache> {
        self.shared.cache.as_ref()
    }

    /// How many packs this handle knows of (uploaded, loaded or pending).
    pub fn pack_count(&self) -> usize {
        lock(&self.shared.known).len()
    }

    /// Every id in the loaded indexes and the unsent pack: objects and
    /// chunks.
    pub fn ids(&self) -> Vec<ObjectId> {
        read_lock(&self.shared.index).keys().copied().collect()
    }

    /// Lists `packs/` and loads the indexes this handle has not seen, so
    /// that objects published by other writers since it was opened are
    /// found.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let remote = &self.remote;
        let dir = remote.key("packs");
        let listed: Vec<object_store::ObjectMeta> = remote
            .block_on(remote.inner.client.list(Some(&dir)).try_collect())
            .map_err(remote_err("list", &dir))?;
        self.forget_deleted(&listed)?;
        let mut names: Vec<(ObjectId, u64)> = {
            let known = lock(&self.shared.known);
            listed
                .iter()
                .filter_map(|meta| {
                    let stem = meta.location.filename()?.strip_suffix(".idx")?;
                    let name: ObjectId = stem.parse().ok()?;
                    (!known.contains(&name)).then_some((name, meta.size))
                })
                .collect()
        };
        let mut fetched = self.load_consolidated(&listed, &mut names);
        // Sorted so that two handles number packs alike; the order means
        // nothing else.
        names.sort();
        let fetched_alone: Vec<consolidated::PackIndex> = remote.block_on(
            futures::stream::iter(names.into_iter().map(|(name, size)| {
                let (client, keys) = (&remote.inner.client, &remote.inner.keys);
                let shared = &self.shared;
                async move {
                    let entries = load_index(client.as_ref(), keys, shared, name, size).await?;
                    Ok::<_, StoreError>((name, entries))
                }
            }))
            .buffered(INDEX_FETCHES_IN_FLIGHT_MAX)
            .try_collect(),
        )?;
        fetched.extend(fetched_alone);
        fetched.sort_by_key(|(name, _)| *name);
        let mut known = lock(&self.shared.known);
        let mut packs = write_lock(&self.shared.packs);
        let mut index = write_lock(&self.shared.index);
        for (name, entries) in fetched {
            if !known.insert(name) {
                continue;
            }
            let slot = u32::try_from(packs.len()).expect("fewer than 2^32 packs");
            packs.push(Pack { name: Some(name), data: None });
            for (id, mut loc) in entries {
                loc.pack = slot;
                index.entry(id).or_insert(loc);
            }
        }
        Ok(())
    }

    /// The entries of the packs in `unknown` (listed, not loaded) that the
    /// newest listed consolidated index holds, which are taken out of
    /// `unknown`. Only when it saves requests (two unknown packs or more)
    /// and it is not the one already loaded; a consolidated index that
    /// cannot be read is passed over (see [`consolidated`]): the packs'
    /// own indexes are read instead.
    fn load_consolidated(
        &self,
        listed: &[object_store::ObjectMeta],
        unknown: &mut Vec<(ObjectId, u64)>,
    ) -> Vec<consolidated::PackIndex> {
        let newest = listed
            .iter()
            .filter_map(|m| Some((consolidated::parse_name(m.location.filename()?)?, m.size)))
            .max();
        let Some((generation, size)) = newest else { return Vec::new() };
        if unknown.len() < 2 || *lock(&self.shared.consolidated) == Some(generation) {
            return Vec::new();
        }
        let remote = &self.remote;
        let loaded = remote.block_on(consolidated::load(
            remote.inner.client.as_ref(),
            &remote.inner.keys,
            &self.shared,
            generation,
            size,
        ));
        let Ok(packs) = loaded else { return Vec::new() };
        *lock(&self.shared.consolidated) = Some(generation);
        let wanted: HashSet<ObjectId> = unknown.iter().map(|(name, _)| *name).collect();
        let found: Vec<_> = packs.into_iter().filter(|(name, _)| wanted.contains(name)).collect();
        let found_names: HashSet<ObjectId> = found.iter().map(|(name, _)| *name).collect();
        unknown.retain(|(name, _)| !found_names.contains(name));
        found
    }

    /// Forgets the packs a remote gc deleted since they were loaded (known,
    /// uploaded, and no longer listed), so that `contains` does not vouch
    /// for objects that are gone: a push relies on what `contains` says.
    /// The ids they held are looked up again in the other loaded packs.
    fn forget_deleted(&self, listed: &[object_store::ObjectMeta]) -> Result<(), StoreError> {
        let sizes: HashMap<ObjectId, u64> = listed
            .iter()
            .filter_map(|m| {
                Some((m.location.filename()?.strip_suffix(".idx")?.parse().ok()?, m.size))
            })
            .collect();
        let listed: HashSet<ObjectId> = sizes.keys().copied().collect();
        let gone: HashSet<u32> = {
            let packs = read_lock(&self.shared.packs);
            (0..packs.len())
                .filter(|&slot| match (&packs[slot].name, &packs[slot].data) {
                    // Uploaded or loaded: it must be listed.
                    (Some(name), None) => !listed.contains(name),
                    // Being filled, or still uploading.
                    _ => false,
                })
                .map(|slot| u32::try_from(slot).expect("fewer than 2^32 packs"))
                .collect()
        };
        if gone.is_empty() {
            return Ok(());
        }
        let mut known = lock(&self.shared.known);
        let mut packs = write_lock(&self.shared.packs);
        let mut index = write_lock(&self.shared.index);
        for &slot in &gone {
            if let Some(name) = packs[slot as usize].name.take() {
                known.remove(&name);
            }
        }
        index.retain(|_, loc| !gone.contains(&loc.pack));
        // An id that was indexed from a deleted pack may be in a pack that
        // is still here: reload those (from the cache, usually).
        let remaining: Vec<(u32, ObjectId)> = packs
            .iter()
            .enumerate()
            .filter_map(|(slot, p)| match (&p.name, &p.data) {
                (Some(name), None) => Some((slot as u32, *name)),
                _ => None,
            })
            .collect();
        drop((known, packs, index));
        let remote = &self.remote;
        for (slot, name) in remaining {
            // Uploaded by this handle after the listing: its own index.
            let Some(&size) = sizes.get(&name) else { continue };
            let entries = remote.block_on(load_index(
                remote.inner.client.as_ref(),
                &remote.inner.keys,
                &self.shared,
                name,
                size,
            ))?;
            let mut index = write_lock(&self.shared.index);
            for (id, mut loc) in entries {
                loc.pack = slot;
                index.entry(id).or_insert(loc);
            }
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            Err(StoreError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.shared.poisoned.store(true, Ordering::Release);
        }
        result
    }

    fn contains_id(&self, id: &ObjectId) -> bool {
        read_lock(&self.shared.index).contains_key(id)
    }

    fn add_record(
        &self,
        w: &mut Writer,
        kind: Kind,
        id: ObjectId,
        payload: &[u8],
        raw_len: u64,
    ) -> Result<(), StoreError> {
        if w.buf.is_empty() {
            // One allocation for the whole pack: it is sealed at most one
            // record (a chunk, or a small object) past its target. Grown by
            // doubling instead, each pack would copy itself several times
            // and leave blocks of every size behind; with the pack's
            // size fixed, the allocator reuses the few blocks of a size
            // that uploads free, so a long push stays within a constant.
            w.buf.reserve_exact(
                self.pack_len_target + CHUNKING_LEN_MIN + RECORD_HEADER_LEN + RECORD_TRAILER_LEN,
            );
            w.buf.extend_from_slice(&PACK_MAGIC);
        }
        let compressed = compress(kind, payload);
        let (codec, stored) = match &compressed {
            Some(c) => (Codec::Zstd, c.as_slice()),
            None => (Codec::Raw, payload),
        };
        let loc = Location {
            pack: w.pack,
            offset: w.buf.len() as u64,
            stored_len: u32::try_from(stored.len())
                .expect("a record (a chunk, a small object or a chunk list) is under 4 GiB"),
            raw_len,
            kind,
            codec,
        };
        encode_record(&mut w.buf, id, &loc, stored);
        w.entries.push((id, loc));
        write_lock(&self.shared.index).insert(id, loc);
        if w.buf.len() >= self.pack_len_target {
            self.seal(w)?;
        }
        Ok(())
    }

    fn put_locked(&self, w: &mut Writer, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        put_records(id, bytes, &|id| self.contains_id(id), &mut |kind, id, data, raw| {
            self.add_record(w, kind, id, data, raw)
        })
    }

    /// Seals the pack being filled and starts its upload; waits for the
    /// oldest upload first if too many are in flight.
    fn seal(&self, w: &mut Writer) -> Result<(), StoreError> {
        if w.buf.is_empty() {
            return Ok(());
        }
        while w.uploads.len() >= UPLOADS_IN_FLIGHT_MAX {
            let oldest = w.uploads.pop_front().expect("not empty");
            let result = join(&self.remote, oldest);
            self.poison(result)?;
        }
        let data = Bytes::from(std::mem::take(&mut w.buf));
        let entries = std::mem::take(&mut w.entries);
        let name = ObjectId::of(&data);
        let index = encode_index(name, data.len() as u64, &entries);
        let slot;
        {
            let mut packs = write_lock(&self.shared.packs);
            packs[w.pack as usize] = Pack { name: Some(name), data: Some(data.clone()) };
            // The sealed pack's slot, taken before `w.pack` moves on (a
            // refresh may have appended packs after it).
            slot = w.pack;
            w.pack = u32::try_from(packs.len()).expect("fewer than 2^32 packs");
            packs.push(Pack::default());
        }
        lock(&self.shared.known).insert(name);
        let (done_tx, done_rx) = tokio::sync::watch::channel(None);
        let previous = w.last_published.replace(done_rx);
        let upload = Upload {
            client: self.remote.inner.client.clone(),
            keys: self.remote.inner.keys.clone(),
            shared: self.shared.clone(),
            slot,
            name,
            data,
            index,
        };
        let handle = self.remote.inner.rt.spawn(async move {
            let result = upload.run(previous).await;
            let _ = done_tx.send(Some(result.is_ok()));
            result
        });
        w.uploads.push_back(handle);
        Ok(())
    }

    /// Seals the pack being filled and waits until every sealed pack is
    /// uploaded and its index written.
    fn publish_all(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut w = lock(&self.writer);
        let sealed = self.seal(&mut w);
        self.poison(sealed)?;
        while let Some(upload) = w.uploads.pop_front() {
            let result = join(&self.remote, upload);
            self.poison(result)?;
        }
        Ok(())
    }

    fn location(&self, id: &ObjectId) -> Result<Location, StoreError> {
        if let Some(loc) = read_lock(&self.shared.index).get(id) {
            return Ok(*loc);
        }
        // Another writer may have published it since the indexes were
        // loaded.
        self.refresh()?;
        read_lock(&self.shared.index).get(id).copied().ok_or(StoreError::NotFound { id: *id })
    }

    /// Where the records of pack `slot` are: its bytes in memory, or its
    /// key. `None`: it is the pack being filled.
    fn pack_source(&self, slot: u32) -> Option<Result<Bytes, Key>> {
        let packs = read_lock(&self.shared.packs);
        let pack = &packs[slot as usize];
        match (&pack.data, &pack.name) {
            (Some(data), _) => Some(Ok(data.clone())),
            (None, Some(name)) => Some(Err(self.remote.inner.keys.pack(name))),
            (None, None) => None,
        }
    }

    /// The raw bytes of the records at `locs` (all of pack `slot`).
    fn fetch_records(&self, slot: u32, locs: &[Location]) -> Result<Vec<Bytes>, StoreError> {
        let ranges: Vec<std::ops::Range<u64>> = locs.iter().map(|l| l.offset..l.end()).collect();
        let source = match self.pack_source(slot) {
            Some(source) => source,
            None => {
                let w = lock(&self.writer);
                if w.pack == slot {
                    return Ok(ranges
                        .iter()
                        .map(|r| Bytes::copy_from_slice(&w.buf[r.start as usize..r.end as usize]))
                        .collect());
                }
                drop(w);
                // Sealed between the two looks.
                self.pack_source(slot).expect("a sealed pack has a name")
            }
        };
        match source {
            Ok(data) => ranges
                .iter()
                .map(|r| {
                    let range = r.start as usize..r.end as usize;
                    (range.end <= data.len()).then(|| data.slice(range)).ok_or_else(|| {
                        StoreError::RemoteDamaged {
                            key: format!("pack {slot}"),
                            what: "an index entry points past the end of its pack",
                        }
                    })
                })
                .collect(),
            Err(key) => {
                if let Some(records) = self.read_ahead_records(slot, &key, locs)? {
                    return Ok(records);
                }
                // Nearby records in one request, as object_store's
                // `get_ranges` does, but each request read no further than
                // the range it asked for.
                let client = self.remote.inner.client.as_ref();
                self.remote.block_on(object_store::coalesce_ranges(
                    &ranges,
                    |r| get_range_exact(client, &key, r),
                    object_store::OBJECT_STORE_COALESCE_DEFAULT,
                ))
            }
        }
    }

    fn cache_get(&self, name: &str, check: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let cache = self.shared.cache.as_ref()?;
        let bytes = cache.get(name)?;
        if check(&bytes) {
            Some(bytes)
        } else {
            cache.remove(name);
            None
        }
    }

    fn cache_put(&self, name: &str, bytes: &[u8]) {
        if let Some(cache) = &self.shared.cache {
            cache.insert(name, bytes);
        }
    }

    /// Whole objects or chunks (not chunk lists), verified, from the cache
    /// or in one request per pack.
    fn read_whole(&self, wanted: &[(ObjectId, Location)]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
        let mut by_pack: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, (id, loc)) in wanted.iter().enumerate() {
            match self.cache_get(&id.to_string(), |b| ObjectId::of(b) == *id) {
                Some(bytes) => out[i] = Some(bytes),
                None => by_pack.entry(loc.pack).or_default().push(i),
            }
        }
        for (slot, members) in by_pack {
            let locs: Vec<Location> = members.iter().map(|&i| wanted[i].1).collect();
            let raws = self.fetch_records(slot, &locs)?;
            for (&i, raw) in members.iter().zip(raws) {
                let (id, loc) = &wanted[i];
                let bytes = open_record(id, loc, &raw)?;
                crate::verify(id, &bytes)?;
                self.cache_put(&id.to_string(), &bytes);
                out[i] = Some(bytes);
            }
        }
        Ok(out.into_iter().map(|b| b.expect("every object read")).collect())
    }

    /// The chunk list of `id`.
    fn read_manifest(
        &self,
        id: &ObjectId,
        loc: &Location,
    ) -> Result<Vec<(ObjectId, u64)>, StoreError> {
        let name = format!("{id}.list");
        if let Some(bytes) = self.cache_get(&name, |b| decode_manifest(id, loc.raw_len, b).is_ok())
        {
            return decode_manifest(id, loc.raw_len, &bytes);
        }
        let raw = self.fetch_records(loc.pack, &[*loc])?.pop().expect("one record");
        let bytes = open_record(id, loc, &raw)?;
        let chunks = decode_manifest(id, loc.raw_len, &bytes)?;
        self.cache_put(&name, &bytes);
        Ok(chunks)
    }

    /// The chunks `[first, last]` of a chunk list, verified, in order.
    fn read_chunks(
        &self,
        id: &ObjectId,
        chunks: &[(ObjectId, u64)],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let wanted: Vec<(ObjectId, Location)> = chunks
            .iter()
            .map(|(cid, _)| self.location(cid).map(|l| (*cid, l)))
            .collect::<Result<_, _>>()?;
        let datas = self.read_whole(&wanted)?;
        for (data, (_, len)) in datas.iter().zip(chunks) {
            if data.len() as u64 != *len {
                return Err(StoreError::Damaged { id: *id, damage: Damage::Manifest });
            }
        }
        Ok(datas)
    }

    fn get_one(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        let loc = self.location(id)?;
        match loc.kind {
            Kind::Object | Kind::Chunk => {
                Ok(Bytes::from(self.read_whole(&[(*id, loc)])?.pop().expect("one")))
            }
            Kind::Manifest => {
                let chunks = self.read_manifest(id, &loc)?;
                let mut out = Vec::with_capacity(loc.raw_len.min(64 << 20) as usize);
                for data in self.read_chunks(id, &chunks)? {
                    out.extend_from_slice(&data);
                }
                crate::verify(id, &out)?;
                Ok(Bytes::from(out))
            }
        }
    }
}

/// A sealed pack on its way to the server. Holds the client and the key
/// names, never the runtime it runs on.
struct Upload {
    client: Arc<dyn ObjectStore>,
    keys: Keys,
    shared: Arc<Shared>,
    slot: u32,
    name: ObjectId,
    data: Bytes,
    index: Vec<u8>,
}

impl Upload {
    /// Uploads the pack, checks it is there whole, waits for the previous
    /// pack's index, then writes this one's.
    async fn run(
        self,
        previous: Option<tokio::sync::watch::Receiver<Option<bool>>>,
    ) -> Result<(), StoreError> {
        let (pack_key, index_key) = (self.keys.pack(&self.name), self.keys.index(&self.name));
        let client = &self.client;
        // Immutable keys named by content: an overwrite writes the same
        // bytes, so the plain (idempotent, retried) PUT is right.
        client
            .put(&pack_key, PutPayload::from_bytes(self.data.clone()))
            .await
            .map_err(remote_err("upload", &pack_key))?;
        let meta = client.head(&pack_key).await.map_err(remote_err("check", &pack_key))?;
        if meta.size != self.data.len() as u64 {
            return Err(StoreError::RemoteDamaged {
                key: pack_key.to_string(),
                what: "the server holds a different length than was uploaded",
            });
        }
        if let Some(mut previous) = previous {
            let published = previous.wait_for(|v| v.is_some()).await.ok().and_then(|v| *v);
            if published != Some(true) {
                return Err(StoreError::RemoteDamaged {
                    key: index_key.to_string(),
                    what: "not written, because an earlier pack's upload failed",
                });
            }
        }
        client
            .put(&index_key, PutPayload::from(self.index.clone()))
            .await
            .map_err(remote_err("upload", &index_key))?;
        if let Some(cache) = &self.shared.cache {
            cache.insert(&format!("{}.idx", self.name), &self.index);
        }
        // Reads now go to the server; the memory is freed.
        write_lock(&self.shared.packs)[self.slot as usize].data = None;
        Ok(())
    }
}

fn join(
    remote: &Remote,
    handle: tokio::task::JoinHandle<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    match remote.block_on(handle) {
        Ok(result) => result,
        Err(e) => Err(StoreError::Io {
            op: "upload a pack",
            source: std::io::Error::other(format!("the upload task failed: {e}")),
        }),
    }
}

/// Encodes the index of pack `name` (`pack_len` bytes).
fn encode_index(name: ObjectId, pack_len: u64, entries: &[(ObjectId, Location)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len() * INDEX_ENTRY_LEN + 32);
    out.extend_from_slice(&REMOTE_INDEX_MAGIC);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&pack_len.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(entries.len()).expect("a pack holds fewer than 2^32 records").to_le_bytes(),
    );
    for (id, loc) in entries {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&loc.offset.to_le_bytes());
        out.extend_from_slice(&loc.stored_len.to_le_bytes());
        out.extend_from_slice(&loc.raw_len.to_le_bytes());
        out.push(loc.kind as u8);
        out.push(loc.codec as u8);
        out.extend_from_slice(&[0, 0]);
    }
    let check = ObjectId::of(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

/// Decodes and checks the index of pack `name`; `None` if it is damaged.
/// Locations come back with pack 0: the caller numbers them.
fn decode_index(name: ObjectId, bytes: &[u8]) -> Option<Vec<(ObjectId, Location)>> {
    let body = bytes.get(..bytes.len().checked_sub(32)?)?;
    if ObjectId::of(body).as_bytes() != &bytes[body.len()..] {
        return None;
    }
    let header = body.get(..INDEX_HEADER_LEN)?;
    if header[..8] != REMOTE_INDEX_MAGIC || header[8..40] != *name.as_bytes() {
        return None;
    }
    let pack_len = u64::from_le_bytes(header[40..48].try_into().ok()?);
    let count = u32::from_le_bytes(header[48..52].try_into().ok()?) as usize;
    let rest = &body[INDEX_HEADER_LEN..];
    if rest.len() != count.checked_mul(INDEX_ENTRY_LEN)? {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for raw in rest.chunks_exact(INDEX_ENTRY_LEN) {
        let (kind, codec) = (Kind::from_byte(raw[52])?, Codec::from_byte(raw[53])?);
        if raw[54..56] != [0, 0] {
            return None;
        }
        let loc = Location {
            pack: 0,
            offset: u64::from_le_bytes(raw[32..40].try_into().ok()?),
            stored_len: u32::from_le_bytes(raw[40..44].try_into().ok()?),
            raw_len: u64::from_le_bytes(raw[44..52].try_into().ok()?),
            kind,
            codec,
        };
        let inside = loc.offset >= PACK_MAGIC.len() as u64
            && loc.offset < u64::MAX / 2
            && loc.end() <= pack_len;
        if !inside || !lengths_ok(kind, codec, loc.stored_len, loc.raw_len) {
            return None;
        }
        out.push((ObjectId::from_bytes(raw[..32].try_into().ok()?), loc));
    }
    Some(out)
}

/// Loads the index of pack `name` (`size` bytes as listed), from the cache
/// when it is there.
async fn load_index(
    client: &dyn ObjectStore,
    keys: &Keys,
    shared: &Shared,
    name: ObjectId,
    size: u64,
) -> Result<Vec<(ObjectId, Location)>, StoreError> {
    let limits = Bounded {
        len_max: REMOTE_INDEX_LEN_MAX,
        invalid: "it fails its checksum or its entries are invalid",
    };
    let decode = |bytes: &[u8]| decode_index(name, bytes);
    load_cached(client, shared, &format!("{name}.idx"), &keys.index(&name), size, limits, decode)
        .await
}

/// How [`load_cached`] bounds and names a key's content.
struct Bounded {
    /// The most bytes it may hold.
    len_max: u64,
    /// What is wrong with it when it does not decode.
    invalid: &'static str,
}

/// The `size` bytes (as listed) of `key`, decoded by `decode`: from the
/// cache under `cache_name` when they are there and decode, else fetched
/// (exactly that range, refused above `limits.len_max`) and cached once
/// they decode.
async fn load_cached<T>(
    client: &dyn ObjectStore,
    shared: &Shared,
    cache_name: &str,
    key: &Key,
    size: u64,
    limits: Bounded,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Result<T, StoreError> {
    if let Some(cache) = &shared.cache
        && let Some(bytes) = cache.get(cache_name)
    {
        match decode(&bytes) {
            Some(out) => return Ok(out),
            None => cache.remove(cache_name),
        }
    }
    if size > limits.len_max {
        return Err(StoreError::RemoteDamaged { key: key.to_string(), what: "it is too large" });
    }
    // The range the listing promised, not whatever the body holds.
    let bytes = get_range_exact(client, key, 0..size).await?;
    let out = decode(&bytes)
        .ok_or_else(|| StoreError::RemoteDamaged { key: key.to_string(), what: limits.invalid })?;
    if let Some(cache) = &shared.cache {
        cache.insert(cache_name, &bytes);
    }
    Ok(out)
}

impl Store for RemoteStore {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_batch(&[(id, bytes)])
    }

    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut w = lock(&self.writer);
        for (id, bytes) in objects {
            debug_assert_eq!(
                ObjectId::of(bytes),
                *id,
                "put with an id that is not the hash of the bytes"
            );
            let result = self.put_locked(&mut w, *id, bytes);
            self.poison(result)?;
        }
        Ok(())
    }

    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        self.get_one(id)
    }

    /// Whole objects come from one request per pack (adjacent records
    /// coalesced); chunked ones one by one.
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Bytes>, StoreError> {
        let locs: Vec<Location> =
            ids.iter().map(|id| self.location(id)).collect::<Result<_, _>>()?;
        let whole: Vec<(ObjectId, Location)> = ids
            .iter()
            .zip(&locs)
            .filter(|(_, l)| l.kind != Kind::Manifest)
            .map(|(id, l)| (*id, *l))
            .collect();
        let mut fetched = self.read_whole(&whole)?.into_iter();
        ids.iter()
            .zip(&locs)
            .map(|(id, loc)| match loc.kind {
                Kind::Manifest => self.get_one(id),
                _ => Ok(Bytes::from(fetched.next().expect("one for each whole object"))),
            })
            .collect()
    }

    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let loc = self.location(id)?;
        let end = range_end(id, offset, len, loc.raw_len)?;
        if loc.kind != Kind::Manifest {
            return slice_whole(id, self.get_one(id)?, offset, end, loc.raw_len);
        }
        // Only the chunks that overlap the range are fetched, a group at a
        // time in one request per pack.
        let chunks = self.read_manifest(id, &loc)?;
        read_chunked_range(id, &chunks, offset, end, &mut |wanted| self.read_chunks(id, wanted))
    }

    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        Ok(self.contains_id(id))
    }

    /// From the pack index entry, as for local packs.
    fn object_len(&self, id: &ObjectId) -> Result<Option<u64>, StoreError> {
        Ok(read_lock(&self.shared.index).get(id).map(|loc| loc.raw_len))
    }

    /// Uploads everything put so far: for an object store, the only way to
    /// survive the process dying.
    fn flush(&self) -> Result<(), StoreError> {
        self.publish_all()
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.publish_all()
    }

    /// Takes the writer lock for each record, so that a pack sealed
    /// meanwhile is uploaded while the reader is read.
    fn put_reader(&self, reader: &mut dyn std::io::Read) -> Result<(ObjectId, u64), StoreError> {
        self.check_writable()?;
        crate::stream::put_records_from_reader(reader, &mut |kind, id, data, raw_len| {
            self.check_writable()?;
            let mut w = lock(&self.writer);
            if self.contains_id(&id) {
                return Ok(());
            }
            let result = self.add_record(&mut w, kind, id, data, raw_len);
            self.poison(result)
        })
    }

    fn chunks(&self, id: &ObjectId) -> Result<Option<Vec<(ObjectId, u64)>>, StoreError> {
        let loc = self.location(id)?;
        match loc.kind {
            Kind::Manifest => Ok(Some(self.read_manifest(id, &loc)?)),
            Kind::Object | Kind::Chunk => Ok(None),
        }
    }
}

impl Drop for RemoteStore {
    /// Waits for uploads already started, so that none is cut off by the
    /// runtime shutting down; the unsealed pack is not uploaded (a store
    /// dropped without a sync promised nothing about it).
    fn drop(&mut self) {
        let mut w = lock(&self.writer);
        while let Some(upload) = w.uploads.pop_front() {
            let _ = join(&self.remote, upload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_damage() {
        let name = ObjectId::of(b"pack");
        let entries = vec![
            (
                ObjectId::of(b"a"),
                Location {
                    pack: 0,
                    offset: 8,
                    stored_len: 1,
                    raw_len: 1,
                    kind: Kind::Object,
                    codec: Codec::Raw,
                },
            ),
            (
                ObjectId::of(b"b"),
                Location {
                    pack: 0,
                    offset: 61,
                    stored_len: 10,
                    raw_len: 5000,
                    kind: Kind::Chunk,
                    codec: Codec::Zstd,
                },
            ),
        ];
        let bytes = encode_index(name, 200, &entries);
        assert_eq!(decode_index(name, &bytes).unwrap(), entries);
        assert!(decode_index(ObjectId::of(b"other"), &bytes).is_none(), "named for its pack");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_index(name, &bad).is_none(), "flipped byte {i}");
        }
        assert!(decode_index(name, &encode_index(name, 60, &entries)).is_none(), "past the end");
        assert!(decode_index(name, &bytes[..bytes.len() - 1]).is_none());
    }
}
