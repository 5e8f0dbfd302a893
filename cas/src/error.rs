//! Errors of the store.

use crate::ObjectId;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No object with this id is in the store.
    #[error("object {id} is not in the store")]
    NotFound {
        /// The id that was asked for.
        id: ObjectId,
    },
    /// The bytes stored under `id` do not hash to `id`: the store is damaged.
    #[error("object {id} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The id that was asked for.
        id: ObjectId,
        /// What the stored bytes hash to.
        actual: ObjectId,
    },
    /// A byte range reaches past the end of the object.
    #[error("range {offset}+{len} is outside object {id} of {size} bytes")]
    RangeOutOfBounds {
        /// The object.
        id: ObjectId,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the object.
        size: u64,
    },
    /// The bytes stored for `id` are damaged in a way found before hashing
    /// them (a failed checksum, a bad chunk list).
    #[error("object {id} is damaged: {damage}")]
    Damaged {
        /// The object.
        id: ObjectId,
        /// What is wrong.
        damage: crate::pack::Damage,
    },
    /// Another process has the store open for writing.
    #[error("the store at {path} is in use by another process; wait for it to finish")]
    Locked {
        /// The store directory.
        path: std::path::PathBuf,
    },
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// An earlier write or sync failed; the store refuses writes until it is
    /// reopened, because it can no longer tell what reached the disk.
    #[error("the store refused a write after an earlier failure; reopen it")]
    Poisoned,
    /// An I/O operation failed.
    #[error("{op} failed")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
