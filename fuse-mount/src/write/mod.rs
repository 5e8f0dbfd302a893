//! The writable mount: [`WriteFs`], a `fuser::Filesystem` over a
//! [`WorkingSet`], with written file data in an on-disk overlay and a
//! metadata journal for crash safety.
//!
//! # Design
//!
//! - The **working set** is the truth for everything a commit takes: every
//!   change made through the mount (create, mkdir, symlink, unlink, rmdir,
//!   rename, chmod of the executable bit, a file's finalized content) is
//!   applied to it at once, by path. A commit is [`Repo::commit`] of the
//!   working set: it encodes only the directories whose cached id an edit
//!   cleared, and scans nothing.
//! - The **inode table** mirrors the working set for the kernel: a node per
//!   path shown, with the metadata the working set does not version (the
//!   permission bits other than the executable bit, owner, times). A
//!   directory's children are loaded from the working set the first time
//!   they are needed. One path keeps its inode for the life of the mount
//!   (a rename moves the inode).
//! - A file that is written gets an **overlay file**
//!   (`.vst/mount/overlay/N`), a copy of its content that writes go to
//!   (sparse writes make holes). Reads of a file without an overlay come
//!   from the store by range. When the last writable handle is released,
//!   the file is queued for the **settler** thread, which finalizes the
//!   files closed meanwhile in one batch: reads their overlays and hashes
//!   them (BLAKE3) on all cores without the lock, puts them into the store,
//!   hands the store's buffer to the operating system once, and records
//!   each in the working set and the journal, unless it changed meanwhile;
//!   then the overlay is dropped, and the file is served from the store
//!   again. A truncation of a file nobody has open is finalized at once.
//!   Then the settler computes the ids of the changed directories
//!   ([`WorkingSet::hash_trees`]), so that a commit finds content and trees
//!   hashed and only stores the trees. It runs at most a quarter of the
//!   time, so a stream of closes cannot keep the lock busy. Once the mount
//!   has been quiet for a moment ([`STORE_QUIET_MIN`] after a commit,
//!   twice as long after each store, up to [`STORE_QUIET_MAX`]), it stores
//!   the trees and syncs the store, so a commit after a pause puts only its
//!   commit object.
//! - The **journal** (`journal.rs`) records each change by path. `fsync`
//!   and `fsyncdir` make it durable (after syncing the store, so that
//!   every blob a durable record names is durable first); a file fsynced
//!   while still open is recorded as its overlay, which is kept until a
//!   later record supersedes it durably.
//!
//! # Locking
//!
//! One mutex guards the table, the working set and the journal. It is held
//! for in-memory work, overlay writes (to the page cache) and journal
//! appends, never across a read from the store for a reader or an fsync:
//! those run on handles cloned out of it. So a slow reader holds up only
//! itself. Kernel notifications (after a checkout) are sent after the lock
//! is released: the kernel may wait on requests that wait on the lock.
//!
//! # Files
//!
//! The state ([`Shared`], `Inner` behind its lock, the node types) and the
//! limits are defined here; each concern adds its methods in a file of its
//! own:
//! - `replay.rs`: where a mount starts ([`Start`], [`Left`]): the journal
//!   replayed, the start refused or the changes saved, the compact journal;
//! - `inodes.rs`: the inode table: loading, names and hard links,
//!   attributes, nodes leaving once forgotten;
//! - `overlay.rs`: content being written: copy-up, finalizing;
//! - `settler.rs`: the settler thread, storing trees, compacting the journal;
//! - `requests.rs`: the filesystem operations;
//! - `session.rs`: what the control socket asks: commit, status, checkout,
//!   and the checkpoint at unmount;
//! - `fuse.rs`: [`WriteFs`], the kernel adapter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rayon::prelude::*;
use vst::{
    BlobId, Change, CommitId, CommitOptions, EntryKind, FileEntry, Name, Repo, RepoPath, Stat,
    SymlinkTarget, TreeId, WorkingSet, diff_trees, read, write_tree,
};
use vst_cas::{Durability, Head, ObjectId, RefName, Store};

use crate::ErrorLog;
use crate::journal::{self, Journal, Record};
use crate::kernel::{Attr, ReadError, Windows, errno, io_errno};

mod fuse;
mod inodes;
mod overlay;
mod replay;
mod requests;
mod session;
mod settler;
#[cfg(test)]
mod tests;

pub(crate) use self::fuse::WriteFs;
pub(crate) use self::overlay::{put_content, read_at};
pub use self::replay::{Left, Saved, Start, StartError};
use self::replay::{records_of, remove_overlays, tree_of};
pub(crate) use self::session::MergeDone;
pub use self::session::{CheckoutError, Committed, MountStats, StatusLine};
pub(crate) use self::settler::Settler;

/// An inode number.
type Ino = u64;

/// The root directory's inode.
const ROOT: Ino = 1;

/// The extended attribute of the mount's root that names the repository
/// directory: how the CLI finds the daemon from inside the mount.
pub const XATTR_REPO: &[u8] = b"user.vst.repo";

/// A journal longer than this is rewritten compactly at the next commit
/// (instead of having a `Base` record appended), or by the settler once the
/// mount is quiet. A commit that finds nothing to commit rewrites any
/// journal that grew since it was last written whole.
const JOURNAL_COMPACT_LEN: u64 = 4 << 20;

/// Copy-up reads a file in pieces of this many bytes.
const COPY_LEN: u64 = 1 << 20;

/// A file at most this long is finalized in memory: read whole, hashed on
/// all cores, put. A longer one streams from its overlay into the store a
/// few chunks at a time ([`Store::put_reader`]), so that a large file, or a
/// large sparse one, costs bounded memory, not its length (twice, with the
/// store's copy). The cost: its hash runs on one core.
const FINALIZE_IN_MEMORY_LEN_MAX: u64 = 64 << 20;

/// The settler pauses after a round for this many times as long as the
/// round held the lock (so it holds it at most a quarter of the time), ...
const SETTLE_PAUSE_FACTOR: u32 = 3;

/// ... but never longer than this.
const SETTLE_PAUSE_MAX: Duration = Duration::from_millis(20);

/// At most this many closed files wait for the settler (each holds its
/// overlay's file open); the close that would queue more settles them
/// itself.
const SETTLE_QUEUE_LEN_MAX: usize = 256;

/// Once the mount has gone this long without a change since the last
/// commit, the settler stores the trees of what changed and syncs the
/// store, so that a commit finds them stored and durable: a build step
/// that writes its files and exits leaves the few milliseconds before the
/// next `vst commit` starts.
const STORE_QUIET_MIN: Duration = Duration::from_millis(2);

/// Each store doubles the quiet time the next one waits for, up to this,
/// until a commit: a writer that keeps pausing between changes (each pause
/// would store a new set of trees, which the next change replaces) leaves
/// at most one set of trees per pause this long, plus a few sets before the
/// doubling gets here.
const STORE_QUIET_MAX: Duration = Duration::from_millis(100);

/// The longest name a directory entry may have (as on ext4).
const NAME_LEN_MAX: usize = 255;

/// Debug builds recount a directory's subdirectories at each `getattr`
/// only up to this many entries.
const DEBUG_RECOUNT_LEN_MAX: usize = 256;

/// The metadata vst does not version: kept in the mount only.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Permission bits (`0o7777`); the owner's executable bit is versioned.
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

/// A file's data being written.
#[derive(Debug)]
struct Overlay {
    /// `overlay/N`.
    number: u64,
    file: Arc<File>,
    size: u64,
    /// Written since last finalized.
    dirty: bool,
    /// Named by a journal record: deleted only once a later record is durable.
    journaled: bool,
    /// Bumped by every change of the data, so that content hashed without
    /// the lock is recorded only if nothing changed it meanwhile.
    generation: u64,
}

#[derive(Debug)]
struct FileNode {
    /// The content the working set holds for this file (last finalized).
    stored: FileEntry,
    overlay: Option<Overlay>,
    /// Open handles that may write.
    writers: u32,
}

#[derive(Debug)]
enum Kind {
    /// `None` until loaded from the working set.
    Dir(Option<Children>),
    File(FileNode),
    Symlink(SymlinkTarget),
    /// A FIFO, socket or device node: local to the mount, never in the
    /// working set nor the journal (a tree cannot hold one), so a commit
    /// and a status skip it and it does not survive an unmount. The kernel
    /// serves it (a FIFO's pipe, a device's driver); the mount only keeps
    /// its entry and attributes.
    Special {
        /// Which of them.
        kind: FileType,
        /// A device's number.
        rdev: u32,
    },
}

/// A loaded directory's entries, and how many of them are directories
/// (its link count is 2 plus that, asked for after every change in it:
/// counting them there cost O(entries) a `create` or an `unlink`).
#[derive(Debug, Default)]
struct Children {
    by_name: BTreeMap<Name, Ino>,
    dirs: usize,
}

impl Children {
    fn add(&mut self, name: Name, ino: Ino, is_dir: bool) {
        if self.by_name.insert(name, ino).is_none() {
            self.dirs += usize::from(is_dir);
        }
    }

    fn remove(&mut self, name: &[u8], is_dir: bool) {
        if self.by_name.remove(name).is_some() {
            self.dirs -= usize::from(is_dir);
        }
    }
}

#[derive(Debug)]
struct Node {
    parent: Ino,
    /// `None` for the root, and for a node no longer in the tree (unlinked
    /// or replaced, possibly still open).
    name: Option<Name>,
    /// The node's other names (hard links: parent and name), never a
    /// directory's. While the mount lives they share the node (content,
    /// attributes); the working set and the journal hold each name as a
    /// file of its own, so a commit records each with the content it has
    /// and a remount makes them separate files. When `name` goes, one of
    /// these takes its place.
    links: Vec<(Ino, Name)>,
    kind: Kind,
    meta: Meta,
    /// How many times the kernel was handed this inode (`lookup`,
    /// `create`, `mkdir`, ...) and has not yet forgotten it. A node out of
    /// the tree leaves the table once this is 0 and no handle is open.
    lookups: u64,
}

/// A directory entry for `readdir`: inode, offset of the next entry, kind,
/// name.
type DirEntry = (Ino, u64, FileType, Vec<u8>);

/// A notification for the kernel, sent once the lock is released.
#[derive(Debug)]
enum Note {
    Entry(Ino, Name),
    Inode(Ino),
}

/// Everything the lock guards.
struct Inner {
    ws: WorkingSet,
    /// The tree of the working set's head (`None`: no commit yet).
    base_tree: Option<TreeId>,
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    next_overlay: u64,
    next_fh: u64,
    /// Open file handles: inode and whether it may write.
    handles: HashMap<u64, (Ino, bool)>,
    /// Files whose overlay was written since last finalized.
    dirty: BTreeSet<Ino>,
    /// Files closed dirty since the settler's last round.
    closed: BTreeSet<Ino>,
    /// The special files in the tree ([`Kind::Special`]): what a status
    /// and a commit skip.
    specials: BTreeSet<Ino>,
    /// Set when the mount ends: the settler returns.
    settler_stop: bool,
    /// Set while the settler waits with nothing to do: the next change
    /// wakes it.
    settler_idle: bool,
    /// When the working set last changed (the journal's last record).
    last_change: Instant,
    /// How many times it changed (journal records), for the settler to
    /// tell whether anything changed since storing trees failed.
    changes: u64,
    /// How long the mount must go without a change before the settler
    /// stores trees: [`STORE_QUIET_MIN`] after a commit, doubled by each
    /// store up to [`STORE_QUIET_MAX`].
    store_quiet: Duration,
    journal: Journal,
    /// Set when an append failed: the journal no longer matches, and every
    /// fsync fails until the mount is restarted.
    journal_failed: bool,
    /// Overlays to delete once the journal is next synced.
    retired: Vec<u64>,
    /// Overlays to delete, by the settler without the lock (an unmount
    /// deletes whatever is left).
    trash: Vec<u64>,
    /// The time shown for what was loaded from a commit.
    base_time: SystemTime,
}

/// The state of a writable mount, shared by the threads serving the kernel
/// and the control socket.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// What each open directory handle lists, taken when it reads from
    /// offset 0 (opening, `rewinddir`): an offset then names the same
    /// entry however the directory changes meanwhile, so that a program
    /// that removes entries as it reads them (`rm -r`, a scandir loop) sees
    /// every other entry once. POSIX leaves it open whether entries added
    /// or removed after the open are listed.
    listings: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    /// The last directory handle given out.
    last_listing: AtomicU64,
    /// Wakes the settler (with `inner`'s lock).
    settle_wake: Condvar,
    /// Windows over the stored content read last (files without an
    /// overlay), as the read-only mount reads.
    windows: Windows,
    store: Arc<dyn Store>,
    repo: Repo,
    state_dir: PathBuf,
    repo_dir: PathBuf,
    pub(crate) notifier: OnceLock<fuser::Notifier>,
    error_log: ErrorLog,
    ttl: Duration,
    uid: u32,
    gid: u32,
    /// The uncommitted changes this mount saved on a new branch.
    pub(crate) saved: Option<Saved>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("state_dir", &self.state_dir).finish_non_exhaustive()
    }
}

/// How the mount's state directory is laid out.
fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

fn overlay_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("overlay")
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// A name from the kernel, validated: one that breaks the naming rules
/// (`.vst` in any letter case among them) is `EINVAL`.
fn name_of(name: &OsStr) -> Result<Name, Errno> {
    let bytes = name.as_bytes();
    if bytes.len() > NAME_LEN_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Name::try_from(bytes).map_err(|_| Errno::EINVAL)
}

fn path_bytes(path: &RepoPath) -> Vec<u8> {
    path.as_bytes().to_vec()
}

fn repo_path(bytes: &[u8]) -> Option<RepoPath> {
    RepoPath::try_from(bytes).ok()
}

/// A closed file's overlay to finalize, taken out of the lock: hashed
/// without it, recorded only if the overlay is still this one at this
/// generation.
struct Unsettled {
    ino: Ino,
    file: Arc<File>,
    size: u64,
    generation: u64,
    path: RepoPath,
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn errno_error(what: &'static str, e: Errno) -> vst::Error {
    io_error(what, io::Error::from_raw_os_error(i32::from(e)))
}

fn io_error(what: &'static str, source: io::Error) -> vst::Error {
    vst::Error::CheckoutIo { op: what, path: PathBuf::new(), source }
}

/// What a new overlay starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// The file's stored content.
    Content,
    /// Nothing (the file is being truncated to 0).
    Nothing,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, message: &str) {
        self.error_log.write(message);
    }

    /// `EIO` unless the blob of `stored` has the size the entry records: a
    /// file is never served as a prefix of its blob, nor as more.
    fn check_len(&self, stored: &FileEntry) -> Result<(), Errno> {
        read::check_file_len(self.store.as_ref(), stored).map_err(|e| {
            self.log(&format!("checking the size of blob {}: {e}", stored.id));
            Errno::EIO
        })
    }

    /// The repository directory (`.vst`).
    pub(crate) fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    /// Where the control socket goes.
    pub(crate) fn socket_path(&self) -> PathBuf {
        self.state_dir.join("sock")
    }

    /// Appends `record` to the journal; a failure is logged and fails every
    /// later fsync.
    fn journal(&self, inner: &mut Inner, record: Record) {
        self.changed(inner);
        if inner.journal_failed {
            return;
        }
        if let Err(e) = inner.journal.append(&record) {
            inner.journal_failed = true;
            self.log(&format!("journal {}: append failed: {e}", inner.journal.path().display()));
        }
    }

    /// Notes that the working set changed (every change is journaled), and
    /// wakes the settler if it waits for one.
    fn changed(&self, inner: &mut Inner) {
        inner.last_change = Instant::now();
        inner.changes += 1;
        if inner.settler_idle {
            inner.settler_idle = false;
            self.settle_wake.notify_one();
        }
    }

    /// Appends `records` to the journal in one write, as [`Shared::journal`]
    /// appends one.
    fn journal_all(&self, inner: &mut Inner, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        self.changed(inner);
        if inner.journal_failed {
            return;
        }
        if let Err(e) = inner.journal.append_all(records) {
            inner.journal_failed = true;
            self.log(&format!("journal {}: append failed: {e}", inner.journal.path().display()));
        }
    }

    /// Finalizes the files closed meanwhile, makes the store and then the
    /// journal durable, and deletes the overlays retired before. Called
    /// without the lock.
    fn sync(&self) -> Result<(), Errno> {
        // Files closed but not yet finalized are recorded first: their
        // content, like that of files finalized before, survives.
        self.settle_round();
        let (file, retired, failed) = {
            let mut inner = self.lock();
            (inner.journal.file(), std::mem::take(&mut inner.retired), inner.journal_failed)
        };
        if failed {
            return Err(Errno::EIO);
        }
        if let Err(e) = self.store.sync() {
            self.log(&format!("syncing the store: {e}"));
            return Err(Errno::EIO);
        }
        if let Err(e) = file.sync_data() {
            self.log(&format!("syncing the journal: {e}"));
            return Err(io_errno(&e));
        }
        for number in retired {
            let _ = std::fs::remove_file(overlay_dir(&self.state_dir).join(number.to_string()));
        }
        Ok(())
    }
}
