//! `vst-cas`: the content-addressed store under vst.
//!
//! A store maps [`ObjectId`]s (BLAKE3 digests) to the bytes they are the
//! hash of. It knows bytes and ids, never trees or commits: what an object
//! means is the business of the `vst` crate above it.
//!
//! Every store implements one trait, [`Store`]. Its contract, which every
//! implementation must keep and which [`conformance`] checks:
//!
//! - **Content addressing.** `put(id, bytes)` requires `id == ObjectId::of(bytes)`.
//!   Putting an object that is already stored is a no-op.
//! - **Verified reads.** `get` and `read_range` check the bytes against the
//!   id before returning them. A mismatch is [`StoreError::Corrupt`], never
//!   wrong bytes. `object_len` is the length `get` returns.
//! - **Explicit durability.** A `put` may sit in a buffer until `sync`
//!   returns. After `sync` returns `Ok`, every object put before it survives a
//!   crash. After a failed write or sync, a durable store answers every later
//!   write with [`StoreError::Poisoned`] until it is reopened.

#![forbid(unsafe_code)]

pub mod batch_hash;
pub mod cache;
mod chunking;
pub mod conformance;
mod error;
mod id;
mod mem;
pub mod pack;
mod record;
pub mod refs;
#[cfg(feature = "s3")]
pub mod remote;
pub mod sim;
pub mod stream;
mod sync_ahead;
pub mod vfs;

use bytes::Bytes;

pub use error::StoreError;
pub use id::{ID_LEN, IdBuildHasher, IdHasher, ObjectId, ParseIdError};
pub use mem::MemStore;
pub use pack::{Access, GcMode, GcStats, Holder, PackOptions, PackStore};
pub use refs::{Head, RefError, RefName, Refs, Tags, TrackingRefs};
pub use sync_ahead::{SYNC_AHEAD_LEN, SyncAhead};

/// How much a write must be on stable storage before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged when handed to the store; a crash may lose it. For
    /// scratch snapshots that can be recomputed.
    None,
    /// Acknowledged once written to the operating system: survives the
    /// process being killed, not a power cut or a kernel crash.
    Flush,
    /// Acknowledged once synced to stable storage (`fsync`): survives a crash
    /// or a power cut.
    #[default]
    Sync,
}

/// A content-addressed object store. See the crate documentation for the
/// contract every implementation keeps.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `id`, which must be `ObjectId::of(bytes)`.
    /// Idempotent. Not durable until [`Store::sync`] returns.
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError>;

    /// Stores several objects at once. A store that writes to disk appends
    /// them in one sequential write; the default puts them one by one.
    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        for (id, bytes) in objects {
            self.put(*id, bytes)?;
        }
        Ok(())
    }

    /// The bytes of object `id`, verified against `id`.
    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError>;

    /// The bytes of several objects, verified, in the order asked. A store
    /// with a round trip per read fetches them together; the default reads
    /// them one by one.
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Bytes>, StoreError> {
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// `len` bytes of object `id` from `offset`, verified. A store that keeps
    /// large objects in chunks reads only the chunks the range touches; the
    /// default reads the whole object.
    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let bytes = self.get(id)?;
        let size = bytes.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(bytes.slice(offset as usize..end as usize)),
            _ => Err(StoreError::RangeOutOfBounds { id: *id, offset, len, size }),
        }
    }

    /// Whether object `id` is stored. Does not read or verify it.
    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError>;

    /// The length in bytes of object `id`, `None` if it is not stored. A
    /// store that records lengths (a pack index entry, a chunk list's total)
    /// answers without reading the object, and like [`Store::contains`]
    /// trusts that record: reading the content still verifies it. The
    /// default reads the object.
    fn object_len(&self, id: &ObjectId) -> Result<Option<u64>, StoreError> {
        match self.get(id) {
            Ok(bytes) => Ok(Some(bytes.len() as u64)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hands every object put so far to the operating system, so that it
    /// survives the process dying (not a power cut). The default does
    /// nothing: a store that holds no buffer of its own has nothing to hand.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes every object put so far durable.
    fn sync(&self) -> Result<(), StoreError>;

    /// Whether a writer of many objects should sync as it puts them
    /// ([`SyncAhead`]): a store whose sync has the disk write what it was
    /// handed says yes (a local pack store); the default is no (a store
    /// whose sync does nothing, or publishes: a remote store would seal
    /// short packs and wait for uploads).
    fn syncs_ahead(&self) -> bool {
        false
    }

    /// Stores the bytes `reader` yields until its end, exactly as `put` of
    /// those bytes would (the same id, the same records), and returns their
    /// id and length. A store that chunks large objects hashes and chunks
    /// them while reading, holding a few chunks in memory, not the object
    /// ([`stream`]); the default reads the whole object, then puts it.
    /// An error from `reader` comes back as [`StoreError::Io`] (or, if it
    /// wraps a `StoreError`, as that error); chunks stored before it are
    /// garbage for GC.
    fn put_reader(&self, reader: &mut dyn std::io::Read) -> Result<(ObjectId, u64), StoreError> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(stream::reader_err)?;
        let id = ObjectId::of(&bytes);
        self.put(id, &bytes)?;
        Ok((id, bytes.len() as u64))
    }

    /// The chunks object `id` is stored as, in order, with their lengths,
    /// if this store keeps it in chunks (each readable with `get` under its
    /// own id, and verified against it); `None` if it keeps it whole. Lets
    /// a reader take a large object a chunk at a time
    /// ([`stream::ObjectReader`]). The default keeps everything whole.
    fn chunks(&self, id: &ObjectId) -> Result<Option<Vec<(ObjectId, u64)>>, StoreError> {
        if self.contains(id)? { Ok(None) } else { Err(StoreError::NotFound { id: *id }) }
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        (**self).put(id, bytes)
    }
    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        (**self).put_batch(objects)
    }
    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        (**self).get(id)
    }
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Bytes>, StoreError> {
        (**self).get_many(ids)
    }
    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        (**self).read_range(id, offset, len)
    }
    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        (**self).contains(id)
    }
    fn object_len(&self, id: &ObjectId) -> Result<Option<u64>, StoreError> {
        (**self).object_len(id)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn syncs_ahead(&self) -> bool {
        (**self).syncs_ahead()
    }
    fn put_reader(&self, reader: &mut dyn std::io::Read) -> Result<(ObjectId, u64), StoreError> {
        (**self).put_reader(reader)
    }
    fn chunks(&self, id: &ObjectId) -> Result<Option<Vec<(ObjectId, u64)>>, StoreError> {
        (**self).chunks(id)
    }
}

/// Checks that `bytes` hash to `id`. Every store calls this on every read
/// before handing bytes out.
pub fn verify(id: &ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
    let actual = ObjectId::of(bytes);
    if actual == *id { Ok(()) } else { Err(StoreError::Corrupt { id: *id, actual }) }
}
