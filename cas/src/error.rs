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
    /// Another process has the store open for writing (and, if it is a
    /// brief holder, kept it past the time the opener was willing to wait).
    #[error("the store at {path} is in use by another process{}", match holder {
        crate::pack::Holder::Brief => "; wait for it to finish",
        crate::pack::Holder::LongLived => ", which holds it for as long as it runs; stop it first",
    })]
    Locked {
        /// The store directory.
        path: std::path::PathBuf,
        /// What the lock file says about the holder.
        holder: crate::pack::Holder,
    },
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// An earlier write or sync failed; the store refuses writes until it is
    /// reopened, because it can no longer tell what reached the disk.
    #[error("the store refused a write after an earlier failure; reopen it")]
    Poisoned,
    /// A request to the object store failed, after its retries.
    #[error("object store: {op} {key} failed")]
    Remote {
        /// What the store was doing.
        op: &'static str,
        /// The key (or prefix) it was working on.
        key: String,
        /// The object store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file in the object store is damaged or not what its name says.
    #[error("object store: {key} is damaged: {what}")]
    RemoteDamaged {
        /// The key.
        key: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The object store is held by a remote gc (`locks/gc`) for longer
    /// than a push waits, or by another gc.
    #[error(
        "object store: {key} is held by a gc (since {since}); wait for it to finish, or, if no gc is running (one was killed), delete {key}"
    )]
    RemoteLocked {
        /// The lock's key.
        key: String,
        /// When it was taken, as the server's clock says.
        since: String,
    },
    /// An object store location or its settings are unusable.
    #[error("object store: {what}")]
    RemoteConfig {
        /// What is wrong, and what to do.
        what: String,
    },
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
