//! `vst`: content-addressed, versioned file trees with copy-on-write
//! commits.
//!
//! A [`WorkingSet`] is a persistent tree of files. [`WorkingSet::snapshot`]
//! freezes it in O(1); [`commit`] turns what changed since the last commit
//! into Merkle trees in a [`Store`](vst_cas::Store), in one pass over the
//! changed directories. [`read`], [`diff_trees`] and [`checkout`] read
//! committed trees back.
//!
//! ```
//! use std::sync::Arc;
//! use vst::{CommitOptions, RepoPath, WorkingSet, commit};
//! use vst_cas::MemStore;
//!
//! let mut ws = WorkingSet::new(Arc::new(MemStore::new()));
//! ws.write(&RepoPath::try_from("src/main.rs")?, b"fn main() {}\n")?;
//! let first = commit(&mut ws, &CommitOptions::default())?;
//! assert_eq!(ws.head(), Some(first));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod blob_hash;
pub mod checkout;
pub mod commit;
pub mod diff;
mod error;
pub mod format;
pub mod fsck;
mod id;
pub mod limits;
pub mod merge;
mod name;
pub mod read;
pub mod remote_gc;
pub mod repo;
pub mod rev;
pub mod sync;
pub mod tracking;
pub mod tree;
mod working_set;
pub mod worktree;

pub use blob_hash::{
    PARALLEL_BATCH_LEN_MIN, PARALLEL_BATCH_RUN_LEN, PARALLEL_BLOB_LEN_MIN, hash_blob, hash_blobs,
};
pub use checkout::{CheckoutStats, checkout, checkout_update};
pub use commit::{Commit, Timestamp};
pub use diff::{Change, ChangeKind, diff_trees};
pub use error::{Error, ObjectKind, Result};
pub use fsck::{FsckReport, ReadData, fsck};
pub use id::{BlobId, CommitId, TreeId};
pub use name::{InvalidName, Name, RepoPath, validate_name};
pub use repo::Repo;
pub use rev::{RevError, resolve};
pub use tree::{DecodeError, EntryKind, FileEntry, SymlinkTarget, Tree, TreeEntry};
pub use working_set::{
    CommitOptions, FileWrite, PARALLEL_DIRTY_DIRS_MIN, Snapshot, Stat, WorkingSet, commit,
    write_tree,
};
pub use worktree::WorkTree;
