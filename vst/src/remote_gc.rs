//! Remote gc: collecting what no branch of a remote reaches.
//!
//! Under the gc lock (`vst_cas::remote::gc::GcLock`: no push runs from the
//! moment it is taken until it is released), everything the remote's
//! branches and tags reach is copied into new packs by a handle that sees no old
//! pack (so it writes every live object again, in put order), synced, and
//! then every pack that was there before the copy and is older than the
//! grace period is deleted. A pack younger than the grace period is never
//! deleted, whatever it holds. Last it writes a consolidated index of the
//! packs kept, so that opening the store reads one index instead of one
//! per pack. See `docs/format.md` ("Remote gc") for the protocol and why
//! it is safe against pushes.

use std::collections::HashSet;
use std::time::Duration;

use vst_cas::Store;
use vst_cas::remote::gc::GcLock;
use vst_cas::remote::{Consolidated, Remote, RemoteOptions, RemoteStore};

use crate::error::Result;
use crate::id::CommitId;
use crate::sync::{TransferStats, ref_err, transfer_from_remote};

/// The default grace period: a pack younger than this is never deleted.
pub const REMOTE_GC_GRACE_DEFAULT: Duration = Duration::from_secs(3600);

/// What a remote gc did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteGcStats {
    /// Branches marked from.
    pub branches: usize,
    /// Packs before.
    pub packs_before: usize,
    /// Bytes under `packs/` before.
    pub bytes_before: u64,
    /// Packs deleted.
    pub packs_deleted: usize,
    /// Packs kept because they are younger than the grace period.
    pub packs_young: usize,
    /// Bytes under `packs/` after.
    pub bytes_after: u64,
    /// What was copied into the new packs: everything live.
    pub copied: TransferStats,
    /// The consolidated index written (`None`: it would have been too
    /// large; readers then read every pack's index).
    pub consolidated: Option<Consolidated>,
}

/// Collects the remote at `remote`: marks from its branches and tags, copies what
/// is live into new packs, and deletes the packs that were there before
/// and are older than `grace` (by the server's clock). Pushes wait while
/// it runs; it waits for pushes that started before it.
pub fn gc_remote(
    remote: &Remote,
    grace: Duration,
    options: &RemoteOptions,
) -> Result<RemoteGcStats> {
    let lock = GcLock::take(remote)?;
    let mut stats = RemoteGcStats::default();
    // After the lock: every push that finished is visible, none is running.
    let before = lock.packs()?;
    stats.packs_before = before.len();
    stats.bytes_before = lock.stored_len()?;
    let reader = RemoteStore::open(remote.clone(), options.clone())?;
    let mut roots = remote.refs().list().map_err(ref_err)?;
    stats.branches = roots.len();
    // A tag keeps what it names, as a branch does.
    roots.extend(remote.refs().tags().list().map_err(ref_err)?);
    let writer = RemoteStore::open_blind(remote.clone(), options.clone())?;
    for (_, tip) in &roots {
        // Synced when it returns: the copies are published before any
        // old pack is deleted.
        stats.copied.add(&transfer_from_remote(&reader, &writer, CommitId::new(*tip))?);
    }
    writer.sync()?;
    let fresh: HashSet<_> = writer.pack_names().into_iter().collect();
    for pack in &before {
        if fresh.contains(&pack.name) {
            continue;
        }
        // A pack written after the lock by the server's clock counts as
        // young (it cannot be older than the grace period).
        let age = lock.taken.duration_since(pack.written).unwrap_or(Duration::ZERO);
        if age < grace {
            stats.packs_young += 1;
            continue;
        }
        lock.delete_pack(&pack.name)?;
        stats.packs_deleted += 1;
    }
    // After the deletions: it holds the indexes of what is kept, so the
    // next open reads it and the indexes pushed since.
    stats.consolidated = lock.consolidate()?;
    stats.bytes_after = lock.stored_len()?;
    lock.release()?;
    Ok(stats)
}
