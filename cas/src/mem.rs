//! An in-memory store for tests and benchmarks.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;

use crate::{IdBuildHasher, ObjectId, Store, StoreError};

/// A store that keeps every object in memory. Nothing is ever durable;
/// [`Store::sync`] succeeds at once.
///
/// Reads are verified like every other store's, so a test that damages an
/// object through [`MemStore::insert_unchecked`] sees the same error a damaged
/// disk would give.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: RwLock<HashMap<ObjectId, Bytes, IdBuildHasher>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of the sizes of all stored objects, in bytes.
    pub fn bytes_len(&self) -> u64 {
        self.read_map().values().map(|b| b.len() as u64).sum()
    }

    /// Stores `bytes` under `id` without checking that they match. For tests
    /// that need a damaged or crafted store; never used by vst itself.
    pub fn insert_unchecked(&self, id: ObjectId, bytes: impl Into<Bytes>) {
        self.write_map().insert(id, bytes.into());
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ObjectId, Bytes, IdBuildHasher>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is a single insert), so a poisoned lock is still sound.
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<ObjectId, Bytes, IdBuildHasher>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        debug_assert_eq!(
            ObjectId::of(bytes),
            id,
            "put with an id that is not the hash of the bytes"
        );
        self.write_map().entry(id).or_insert_with(|| Bytes::copy_from_slice(bytes));
        Ok(())
    }

    /// The new objects are copied into one buffer and stored as slices of
    /// it: one allocation per batch instead of one per object (for 1,000
    /// files of 1 KiB, the allocations and their page faults cost more than
    /// hashing them). A slice keeps its whole batch in memory, which
    /// matters to no one: a `MemStore` never drops an object.
    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        let mut map = self.write_map();
        map.reserve(objects.len());
        let new: Vec<&(ObjectId, &[u8])> =
            objects.iter().filter(|(id, _)| !map.contains_key(id)).collect();
        let mut buffer = Vec::with_capacity(new.iter().map(|(_, bytes)| bytes.len()).sum());
        for (id, bytes) in &new {
            debug_assert_eq!(
                ObjectId::of(bytes),
                *id,
                "put with an id that is not the hash of the bytes"
            );
            buffer.extend_from_slice(bytes);
        }
        let buffer = Bytes::from(buffer);
        let mut start = 0;
        for (id, bytes) in new {
            // An object twice in the batch is in the buffer twice; the
            // first copy is kept.
            let end = start + bytes.len();
            map.entry(*id).or_insert_with(|| buffer.slice(start..end));
            start = end;
        }
        Ok(())
    }

    fn get(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        let bytes = self.read_map().get(id).cloned().ok_or(StoreError::NotFound { id: *id })?;
        crate::verify(id, &bytes)?;
        Ok(bytes)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        Ok(self.read_map().contains_key(id))
    }

    fn object_len(&self, id: &ObjectId) -> Result<Option<u64>, StoreError> {
        Ok(self.read_map().get(id).map(|bytes| bytes.len() as u64))
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
