//! What a remote gc needs from the object store: the mutual exclusion of a
//! gc and pushes (`gc.lock` and `push-*.lease`), the packs with their
//! ages, and deleting packs.
//!
//! A push holds a lease, `push-<random>.lease`, from before it looks at
//! what the store holds until its ref is written; a gc holds `gc.lock`
//! from before it looks at the refs until it has deleted packs. (Both are
//! keys directly under the location's prefix, not in a directory of their
//! own: SeaweedFS removes a directory when its last key goes, and a write
//! racing that removal fails.) Each
//! writes its own key first and then looks for the other's: a push that
//! finds `locks/gc` removes its lease and waits; a gc waits until no lease
//! written before its lock is left. The store's reads and lists see every
//! write that finished before them (S3 is strongly consistent), so of a
//! push and a gc that start together at least one sees the other, and no
//! push runs between a gc's mark and its deletes. See `docs/format.md`
//! ("Remote gc") for the whole argument.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{Remote, remote_err};
use crate::{ObjectId, StoreError};

/// A lease older than this (by the server's clock, against the gc's lock)
/// is taken for the lease of a push that died, and not waited for.
pub const PUSH_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// A push whose lease is older than this (by its own clock) fails before
/// it writes its ref: a gc may already take its lease for dead.
pub const PUSH_LEASE_USE_MAX: Duration = Duration::from_secs(12 * 3600);
const _: () = assert!(PUSH_LEASE_USE_MAX.as_secs() * 2 <= PUSH_LEASE_TTL.as_secs());
/// How long a push waits for a running gc before it gives up.
pub const PUSH_GC_WAIT_MAX: Duration = Duration::from_secs(600);
/// How long a gc waits for pushes that started before it.
pub const GC_PUSH_WAIT_MAX: Duration = Duration::from_secs(3600);
/// The gc lock's key under the location's prefix.
const GC_LOCK_KEY: &str = "gc.lock";
/// First and longest pause between two looks at a lock.
const POLL_MIN: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(2);

/// A push's lease: while it is held, no gc deletes anything. Released by
/// [`PushLease::release`] or when dropped.
#[derive(Debug)]
pub struct PushLease {
    remote: Remote,
    key: Key,
    taken: std::time::Instant,
    released: bool,
}

impl PushLease {
    /// Takes a lease at `remote`, waiting (up to [`PUSH_GC_WAIT_MAX`]) while
    /// a gc runs.
    pub fn take(remote: &Remote) -> Result<Self, StoreError> {
        let nonce = ObjectId::of(
            format!(
                "{}-{:?}-{:?}",
                std::process::id(),
                SystemTime::now(),
                std::thread::current().id()
            )
            .as_bytes(),
        );
        let key = remote.key(&format!("push-{nonce}.lease"));
        let gc_key = remote.key(GC_LOCK_KEY);
        let client = &remote.inner.client;
        let start = std::time::Instant::now();
        let mut pause = POLL_MIN;
        loop {
            let taken = std::time::Instant::now();
            remote
                .block_on(client.put(&key, PutPayload::from_static(b"push\n")))
                .map_err(remote_err("take a push lease", &key))?;
            match remote.block_on(client.head(&gc_key)) {
                Err(object_store::Error::NotFound { .. }) => {
                    return Ok(Self { remote: remote.clone(), key, taken, released: false });
                }
                Ok(meta) => {
                    // A gc runs: out of its way until it is done.
                    remote
                        .block_on(client.delete(&key))
                        .map_err(remote_err("release a push lease", &key))?;
                    if start.elapsed() > PUSH_GC_WAIT_MAX {
                        return Err(StoreError::RemoteLocked {
                            key: gc_key.to_string(),
                            since: meta.last_modified.to_rfc3339(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(POLL_MAX);
                }
                Err(e) => {
                    let _ = remote.block_on(client.delete(&key));
                    return Err(remote_err("look for a gc", &gc_key)(e));
                }
            }
        }
    }

    /// Checks that the lease is young enough to rely on (see
    /// [`PUSH_LEASE_USE_MAX`]): a push calls it right before its ref write.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.taken.elapsed() > PUSH_LEASE_USE_MAX {
            return Err(StoreError::RemoteConfig {
                what: format!(
                    "the push took longer than {} h, after which a gc may take it for dead; push again",
                    PUSH_LEASE_USE_MAX.as_secs() / 3600
                ),
            });
        }
        Ok(())
    }

    /// Releases the lease.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.released = true;
        let client = &self.remote.inner.client;
        self.remote
            .block_on(client.delete(&self.key))
            .map_err(remote_err("release a push lease", &self.key))
    }
}

impl Drop for PushLease {
    fn drop(&mut self) {
        if !self.released {
            // Best effort: a lease left behind delays gcs until it expires.
            let _ = self.remote.block_on(self.remote.inner.client.delete(&self.key));
        }
    }
}

/// A pack and when it was written (the server's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackListing {
    /// Its name (the BLAKE3 of its bytes).
    pub name: ObjectId,
    /// When its index was written: when it became visible.
    pub written: SystemTime,
    /// Its length in bytes.
    pub len: u64,
}

/// The gc's lock: while it is held, pushes wait. Released by
/// [`GcLock::release`] or when dropped.
#[derive(Debug)]
pub struct GcLock {
    remote: Remote,
    key: Key,
    /// When the lock was written, by the server's clock: "now" for the
    /// gc's grace period.
    pub taken: SystemTime,
    released: bool,
}

impl GcLock {
    /// Takes the gc lock (refused if another gc holds it), then waits (up
    /// to [`GC_PUSH_WAIT_MAX`]) until every push that may not have seen it
    /// is done: until no lease written no later than the lock, and younger
    /// than [`PUSH_LEASE_TTL`], is left.
    pub fn take(remote: &Remote) -> Result<Self, StoreError> {
        let key = remote.key(GC_LOCK_KEY);
        let client = &remote.inner.client;
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match remote.block_on(client.put_opts(&key, PutPayload::from_static(b"gc\n"), opts)) {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let since = remote
                    .block_on(client.head(&key))
                    .map(|m| m.last_modified.to_rfc3339())
                    .unwrap_or_else(|_| "a moment ago".to_owned());
                return Err(StoreError::RemoteLocked { key: key.to_string(), since });
            }
            Err(e) => return Err(remote_err("take the gc lock", &key)(e)),
        }
        let mut lock =
            Self { remote: remote.clone(), key, taken: SystemTime::UNIX_EPOCH, released: false };
        let meta = remote
            .block_on(client.head(&lock.key))
            .map_err(remote_err("read the gc lock", &lock.key))?;
        lock.taken = meta.last_modified.into();
        let start = std::time::Instant::now();
        let mut pause = POLL_MIN;
        let top = remote.top();
        loop {
            let listed: Vec<object_store::ObjectMeta> = remote
                .block_on(client.list_with_delimiter(top.as_ref()))
                .map_err(remote_err("list", &top.clone().unwrap_or_default()))?
                .objects;
            let waiting = listed.iter().any(|m| {
                let written: SystemTime = m.last_modified.into();
                let is_lease = m
                    .location
                    .filename()
                    .is_some_and(|f| f.starts_with("push-") && f.ends_with(".lease"));
                // Written after the lock (by the server's clock, which
                // counts whole seconds on some servers: a lease in the same
                // second is waited for), its push saw the lock and backs off.
                let before = written <= lock.taken;
                let alive =
                    lock.taken.duration_since(written).map_or(true, |age| age < PUSH_LEASE_TTL);
                is_lease && before && alive
            });
            if !waiting {
                return Ok(lock);
            }
            if start.elapsed() > GC_PUSH_WAIT_MAX {
                return Err(StoreError::RemoteConfig {
                    what: format!(
                        "pushes kept running for {} s after the gc started; try again later",
                        GC_PUSH_WAIT_MAX.as_secs()
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Every published pack (one with an index) and when its index was
    /// written.
    pub fn packs(&self) -> Result<Vec<PackListing>, StoreError> {
        let listed = self.list_packs_dir()?;
        let lens: std::collections::HashMap<ObjectId, u64> = listed
            .iter()
            .filter_map(|m| {
                let stem = m.location.filename()?.strip_suffix(".pack")?;
                Some((stem.parse().ok()?, m.size))
            })
            .collect();
        let mut out: Vec<PackListing> = listed
            .iter()
            .filter_map(|m| {
                let stem = m.location.filename()?.strip_suffix(".idx")?;
                let name: ObjectId = stem.parse().ok()?;
                Some(PackListing {
                    name,
                    written: m.last_modified.into(),
                    len: lens.get(&name).copied().unwrap_or(0),
                })
            })
            .collect();
        out.sort_by_key(|p| p.name);
        Ok(out)
    }

    /// Bytes under `packs/`, indexes and packs without an index included.
    pub fn stored_len(&self) -> Result<u64, StoreError> {
        Ok(self.list_packs_dir()?.iter().map(|m| m.size).sum())
    }

    /// Every key under `packs/`.
    fn list_packs_dir(&self) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        let dir = self.remote.key("packs");
        let client = &self.remote.inner.client;
        self.remote
            .block_on(client.list(Some(&dir)).try_collect())
            .map_err(remote_err("list", &dir))
    }

    /// Deletes pack `name`: its index first (it stops being visible), then
    /// the pack.
    pub fn delete_pack(&self, name: &ObjectId) -> Result<(), StoreError> {
        let client = &self.remote.inner.client;
        for key in [self.remote.inner.keys.index(name), self.remote.inner.keys.pack(name)] {
            match self.remote.block_on(client.delete(&key)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(remote_err("delete", &key)(e)),
            }
        }
        Ok(())
    }

    /// The location it locks.
    pub(super) fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Releases the lock: pushes go on.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.released = true;
        self.remote
            .block_on(self.remote.inner.client.delete(&self.key))
            .map_err(remote_err("release the gc lock", &self.key))
    }
}

impl Drop for GcLock {
    fn drop(&mut self) {
        if !self.released {
            // A gc that failed releases its lock too: it deleted nothing it
            // should not have, and pushes must go on.
            let _ = self.remote.block_on(self.remote.inner.client.delete(&self.key));
        }
    }
}
