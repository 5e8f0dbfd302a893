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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::panic::AssertUnwindSafe;
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

/// Why a writable mount could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The mount's state directory or journal could not be read or written.
    #[error("mount state in {}", dir.display())]
    State {
        /// `.vst/mount`.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The repository could not be read.
    #[error("reading the repository")]
    Repo {
        /// Why.
        #[source]
        source: vst::Error,
    },
    /// The last writable mount left uncommitted changes on top of another
    /// commit than the one to mount (the branch moved since, or another
    /// was asked for): mounting would hide them, and a commit in the mount
    /// could not move the branch. Nothing was changed.
    #[error(
        "the last writable mount of this repository left {changes} uncommitted changes on top of {}, not on {}, the commit to mount",
        show(*base),
        show(*wanted)
    )]
    Uncommitted {
        /// The commit the changes are on.
        base: Option<CommitId>,
        /// The commit to mount.
        wanted: Option<CommitId>,
        /// How many paths they change.
        changes: usize,
    },
    /// The uncommitted changes could not be saved on a new branch.
    #[error("cannot save the uncommitted changes on a new branch {branch}")]
    Save {
        /// The branch asked for.
        branch: RefName,
        /// Why (most often: it exists). Boxed: it would make every
        /// mount error as large.
        #[source]
        source: Box<vst_cas::RefError>,
    },
    /// `HEAD` could not be moved to what the mount starts at.
    #[error("cannot point HEAD at {head:?}")]
    Head {
        /// What it was to name.
        head: Head,
        /// Why. Boxed: it would make every mount error as large.
        #[source]
        source: Box<vst_cas::RefError>,
    },
}

/// A commit, or the empty tree, for a message.
fn show(commit: Option<CommitId>) -> String {
    commit.map_or_else(|| "an empty tree".to_owned(), |c| format!("commit {c}"))
}

/// Where a writable mount starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The commit whose tree to mount (`None`: the empty tree of a
    /// repository without a commit).
    pub commit: Option<CommitId>,
    /// What to do with the uncommitted changes the last writable mount
    /// left, if it left any.
    pub left: Left,
    /// What `HEAD` names once mounted (a commit in the mount moves it);
    /// `None` leaves it as it is, which must then name `commit`.
    pub head: Option<Head>,
}

/// What a writable mount does with the uncommitted changes the last one
/// left. Changes on `Start::commit` are resumed unless discarded; none is
/// ever dropped without [`Left::Discard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// Resume them if they are on the commit to mount, else refuse
    /// ([`StartError::Uncommitted`]).
    Resume,
    /// Drop them.
    Discard,
    /// Resume them if they are on the commit to mount, else commit them
    /// (parent: the commit they are on) on the new branch `branch`, and
    /// start clean ([`WritableMount::saved`](crate::WritableMount::saved)
    /// says so).
    SaveAs {
        /// The new branch.
        branch: RefName,
        /// The saved commit's author.
        author: String,
    },
}

/// Uncommitted changes a mount saved on a new branch ([`Left::SaveAs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The new branch.
    pub branch: RefName,
    /// The commit it names: the changes, on top of `base`.
    pub commit: CommitId,
    /// The commit the changes were made on.
    pub base: Option<CommitId>,
}

/// What a commit through the mount did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new commit, or `None` if there was nothing to commit.
    pub commit: Option<CommitId>,
    /// Its tree.
    pub tree: TreeId,
    /// Microseconds to finalize the files still pending and to hash and
    /// store the changed trees (those the settler prepared only stored),
    /// before any sync.
    pub hash_us: u64,
    /// Microseconds for the whole commit in the daemon, the syncs of the
    /// store, the ref and the journal included.
    pub total_us: u64,
}

/// What a writable mount's daemon holds, for `vst status --json`: a
/// long-lived mount's memory follows these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountStats {
    /// Inodes in the table: the loaded part of the tree, plus files out of
    /// it that are still open or not yet forgotten by the kernel.
    pub inodes: u64,
    /// Open file handles.
    pub open_handles: u64,
    /// Records in the journal of uncommitted changes.
    pub journal_records: u64,
}

/// What differs from the commit the mount is based on.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) lines: Vec<StatusLine>,
    pub(crate) stats: MountStats,
    /// The base commit's tree.
    pub(crate) base: Option<TreeId>,
    /// The mount's tree, stored (not synced).
    pub(crate) tree: TreeId,
}

/// A path that differs from the commit the mount is based on.
#[derive(Debug, Clone)]
pub struct StatusLine {
    /// What happened to it.
    pub kind: vst::ChangeKind,
    /// Where.
    pub path: RepoPath,
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

/// The errno for a working-set error.
fn errno(e: &vst::Error) -> Errno {
    match e {
        vst::Error::NotFound { .. } => Errno::ENOENT,
        vst::Error::NotADirectory { .. } => Errno::ENOTDIR,
        vst::Error::IsADirectory { .. } => Errno::EISDIR,
        vst::Error::NotAFile { .. } => Errno::EINVAL,
        vst::Error::TooManyEntries { .. } => Errno::ENOSPC,
        vst::Error::RenameIntoItself { .. } => Errno::EINVAL,
        vst::Error::TooDeep { .. } => Errno::ENAMETOOLONG,
        vst::Error::Root { .. } => Errno::EBUSY,
        vst::Error::InvalidSymlink { source, .. } => match source {
            vst::tree::InvalidSymlink::TooLong(_) => Errno::ENAMETOOLONG,
            vst::tree::InvalidSymlink::Empty => Errno::ENOENT,
            _ => Errno::EINVAL,
        },
        _ => Errno::EIO,
    }
}

fn io_errno(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
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

/// Reads `len` bytes of `file` from `offset`, fewer at its end.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Reads a file by position (`pread`), from `offset` to `end`, without
/// moving the cursor that other clones of its handle share.
struct RangeReader<'a> {
    file: &'a File,
    offset: u64,
    end: u64,
}

impl io::Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Puts the first `size` bytes of `file` (an overlay) into `store` and
/// returns their id: in memory up to [`FINALIZE_IN_MEMORY_LEN_MAX`], else
/// streamed. The error says what went wrong, for the log.
pub(crate) fn put_content(store: &dyn Store, file: &File, size: u64) -> Result<BlobId, String> {
    if size <= FINALIZE_IN_MEMORY_LEN_MAX {
        let bytes = read_at(file, 0, size).map_err(|e| format!("reading its overlay: {e}"))?;
        if bytes.len() as u64 != size {
            return Err(format!("its overlay is {} bytes, expected {size}", bytes.len()));
        }
        let id = hash_blob(&bytes);
        store.put(id.object_id(), &bytes).map_err(|e| format!("storing its content: {e}"))?;
        return Ok(id);
    }
    let mut reader = RangeReader { file, offset: 0, end: size };
    let (id, len) =
        store.put_reader(&mut reader).map_err(|e| format!("storing its content: {e}"))?;
    if len != size {
        return Err(format!("its overlay is {len} bytes, expected {size}"));
    }
    Ok(BlobId::new(id))
}

/// BLAKE3 of file content, on all cores when large (as the working set
/// hashes written content).
fn hash_blob(content: &[u8]) -> BlobId {
    if content.len() >= vst::PARALLEL_BLOB_LEN_MIN {
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(content);
        BlobId::new(ObjectId::from(hasher.finalize()))
    } else {
        BlobId::of(content)
    }
}

fn path_bytes(path: &RepoPath) -> Vec<u8> {
    path.as_bytes().to_vec()
}

fn repo_path(bytes: &[u8]) -> Option<RepoPath> {
    RepoPath::try_from(bytes).ok()
}

/// Applies one journal record to `ws` (replay). A record that cannot be
/// applied is reported through `log` and skipped: the rest still counts.
fn replay(ws: &mut WorkingSet, record: &Record, state_dir: &Path, log: &dyn Fn(String)) {
    let store = ws.store().clone();
    let result: Result<(), String> = (|| {
        let path_of = |p: &[u8]| repo_path(p).ok_or_else(|| "an invalid path".to_owned());
        match record {
            Record::Base { commit } => {
                *ws = match commit {
                    Some(c) => {
                        WorkingSet::from_commit(store, CommitId::new(ObjectId::from_bytes(*c)))
                            .map_err(|e| e.to_string())?
                    }
                    None => WorkingSet::new(store),
                };
                Ok(())
            }
            Record::File { path, id, size, executable } => {
                let id = BlobId::new(ObjectId::from_bytes(*id));
                let path = path_of(path)?;
                if !store.contains(&id.object_id()).map_err(|e| e.to_string())? {
                    // Its blob was lost with the store's buffer: the file was
                    // not fsynced since.
                    let _ = ws.remove(&path);
                    return Err(format!("{path}: content {id} is not in the store; dropped"));
                }
                let entry = FileEntry { id, size: *size, executable: *executable };
                ws.put_file(&path, entry).map_err(|e| e.to_string())
            }
            Record::Overlay { path, overlay, executable } => {
                let path = path_of(path)?;
                let file = overlay_dir(state_dir).join(overlay.to_string());
                let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
                let open = File::open(&file).map_err(|e| shown(&e))?;
                let size = open.metadata().map_err(|e| shown(&e))?.len();
                let id = put_content(store.as_ref(), &open, size).map_err(|e| shown(&e))?;
                let entry = FileEntry { id, size, executable: *executable };
                ws.put_file(&path, entry).map_err(|e| e.to_string())
            }
            Record::Symlink { path, target } => {
                ws.symlink(&path_of(path)?, target).map_err(|e| e.to_string())
            }
            Record::Mkdir { path } => ws.create_dir_all(&path_of(path)?).map_err(|e| e.to_string()),
            Record::Remove { path } => match ws.remove(&path_of(path)?) {
                Ok(()) | Err(vst::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Record::Rename { from, to } => {
                ws.rename(&path_of(from)?, &path_of(to)?).map_err(|e| e.to_string())
            }
            Record::Executable { path, executable } => {
                ws.set_executable(&path_of(path)?, *executable).map_err(|e| e.to_string())
            }
        }
    })();
    if let Err(e) = result {
        log(format!("journal replay: {record:?}: {e}"));
    }
}

/// The records that rebuild `changes` (from a diff of the base tree to the
/// current one) on top of the base.
fn records_of(changes: &[Change]) -> Vec<Record> {
    let mut out = Vec::new();
    for c in changes {
        let path = path_bytes(&c.path);
        let kind_changed = matches!((&c.old, &c.new), (Some(a), Some(b))
            if std::mem::discriminant(a) != std::mem::discriminant(b));
        if kind_changed || c.new.is_none() {
            out.push(Record::Remove { path: path.clone() });
        }
        match &c.new {
            None => {}
            Some(EntryKind::File(f)) => out.push(Record::File {
                path,
                id: *f.id.as_bytes(),
                size: f.size,
                executable: f.executable,
            }),
            Some(EntryKind::Dir(_)) => out.push(Record::Mkdir { path }),
            Some(EntryKind::Symlink(t)) => {
                out.push(Record::Symlink { path, target: t.as_bytes().to_vec() })
            }
        }
    }
    out
}

/// The tree id of `commit` (`None` for no commit).
fn tree_of(store: &dyn Store, commit: Option<CommitId>) -> vst::Result<Option<TreeId>> {
    commit.map(|c| read::read_commit(store, c).map(|c| c.tree)).transpose()
}

/// Commits `tree` (stored, with everything below it) with `base` as its
/// parent on the new branch `branch`, once the store is durable: where a
/// mount keeps the uncommitted changes the last one left on another commit.
/// The branch's reflog records it.
fn save_on_branch(
    repo: &Repo,
    tree: TreeId,
    base: Option<CommitId>,
    branch: &RefName,
    author: &str,
) -> Result<CommitId, StartError> {
    let repo_err = |source| StartError::Repo { source };
    let commit = vst::Commit {
        tree,
        parents: base.into_iter().collect(),
        author: author.to_owned(),
        time: vst::Timestamp::now(),
        message: format!(
            "uncommitted changes a writable mount left on {}, saved at a remount",
            show(base)
        ),
    };
    let bytes = commit.encode().map_err(|e| repo_err(e.into()))?;
    let id = CommitId::of(&bytes);
    repo.store().put(id.object_id(), &bytes).map_err(|e| repo_err(e.into()))?;
    let store = repo.store();
    let durable = || store.sync();
    repo.refs()
        .update_once_durable(
            branch,
            None,
            Some(id.object_id()),
            "mount: save uncommitted changes",
            &durable,
        )
        .map_err(|source| StartError::Save { branch: branch.clone(), source: Box::new(source) })?;
    Ok(id)
}

impl Shared {
    /// Opens the mount state of `repo`: resumes the journal in
    /// `.vst/mount/` (the uncommitted tree of the last mount) if it holds
    /// changes and `start` allows, else starts at `start`'s commit. Then
    /// writes a compact journal (the differences from the base, every blob
    /// synced first) and deletes the overlays, which it has put into the
    /// store.
    pub(crate) fn open(
        repo: Repo,
        start: &Start,
        error_log: ErrorLog,
        ttl: Duration,
    ) -> Result<Self, StartError> {
        let repo_dir = repo.dir().canonicalize().unwrap_or_else(|_| repo.dir().to_owned());
        let state_dir = repo_dir.join("mount");
        let state_err = |source| StartError::State { dir: state_dir.clone(), source };
        let repo_err = |source| StartError::Repo { source };
        std::fs::create_dir_all(overlay_dir(&state_dir)).map_err(state_err)?;
        let store = repo.store();
        let empty = BlobId::of(b"");
        store.put(empty.object_id(), b"").map_err(|e| repo_err(e.into()))?;

        let log = |m: String| error_log.write(&m);
        let journal_file = journal_path(&state_dir);
        let found = match &start.left {
            Left::Discard => None,
            _ => journal::read(&journal_file).map_err(state_err)?,
        };
        let at = |commit: Option<CommitId>| match commit {
            Some(c) => WorkingSet::from_commit(store.clone(), c).map_err(repo_err),
            None => Ok(WorkingSet::new(store.clone())),
        };
        // The journal starts with its own base.
        let resumed = found.is_some();
        let mut ws = if resumed { WorkingSet::new(store.clone()) } else { at(start.commit)? };
        if let Some(found) = found {
            if found.torn {
                log(format!(
                    "{}: cut a torn tail after {} bytes (not fsynced)",
                    journal_file.display(),
                    found.valid_len
                ));
            }
            for record in &found.records {
                replay(&mut ws, record, &state_dir, &log);
            }
        }
        let tree = write_tree(&mut ws, Durability::None).map_err(repo_err)?;
        // A commit through the mount moves the ref before the journal's new
        // base is durable: if the ref's commit has exactly this tree, the
        // crash came in between, and that commit is the base.
        if let Ok(Some(head)) = repo.head_commit()
            && Some(head) != ws.head()
            && tree_of(store.as_ref(), Some(head)).ok() == Some(Some(tree))
        {
            ws.set_head(Some(head));
        }
        let mut base_tree = tree_of(store.as_ref(), ws.head()).map_err(repo_err)?;
        let mut changes = diff_trees(store.as_ref(), base_tree, Some(tree)).map_err(repo_err)?;
        let mut saved = None;
        if resumed && ws.head() != start.commit {
            // Architecture invariant: uncommitted changes are never dropped
            // without `Left::Discard`. Resuming them on their old base would
            // hide what the branch gained meanwhile, and a commit in the
            // mount could not move it; starting where asked would lose them.
            if !changes.is_empty() {
                let base = ws.head();
                match &start.left {
                    Left::SaveAs { branch, author } => {
                        let commit = save_on_branch(&repo, tree, base, branch, author)?;
                        saved = Some(Saved { branch: branch.clone(), commit, base });
                    }
                    _ => {
                        return Err(StartError::Uncommitted {
                            base,
                            wanted: start.commit,
                            changes: changes.len(),
                        });
                    }
                }
            }
            // Nothing uncommitted left to keep: start where asked (the
            // branch may have moved while nothing was mounted).
            ws = at(start.commit)?;
            base_tree = tree_of(store.as_ref(), ws.head()).map_err(repo_err)?;
            changes.clear();
        }
        store.sync().map_err(|e| repo_err(e.into()))?;
        let mut records = vec![Record::Base { commit: ws.head().map(|c| *c.as_bytes()) }];
        records.extend(records_of(&changes));
        let journal = Journal::create(&journal_file, &records).map_err(state_err)?;
        remove_overlays(&overlay_dir(&state_dir)).map_err(state_err)?;

        let base_time = match ws.head() {
            Some(c) => read::read_commit(store.as_ref(), c)
                .map(|c| crate::fs::system_time(c.time))
                .map_err(repo_err)?,
            None => now(),
        };
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let root = Node {
            parent: ROOT,
            name: None,
            lookups: 0,
            kind: Kind::Dir(None),
            meta: Meta {
                perm: 0o755,
                uid,
                gid,
                atime: base_time,
                mtime: base_time,
                ctime: base_time,
            },
        };
        let inner = Inner {
            ws,
            base_tree,
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            next_overlay: 1,
            next_fh: 1,
            handles: HashMap::new(),
            dirty: BTreeSet::new(),
            closed: BTreeSet::new(),
            settler_stop: false,
            settler_idle: false,
            last_change: Instant::now(),
            changes: 0,
            store_quiet: STORE_QUIET_MIN,
            journal,
            journal_failed: false,
            retired: Vec::new(),
            trash: Vec::new(),
            base_time,
        };
        Ok(Self {
            inner: Mutex::new(inner),
            listings: Mutex::new(HashMap::new()),
            last_listing: AtomicU64::new(0),
            settle_wake: Condvar::new(),
            store,
            repo,
            state_dir,
            repo_dir,
            notifier: OnceLock::new(),
            error_log,
            ttl,
            uid,
            gid,
            saved,
        })
    }

    /// Points `HEAD` at `head` unless it names it already: where a mount
    /// of another commit than `HEAD`'s puts it, so that a commit in the
    /// mount moves it (and no branch, if it is a detached commit).
    pub(crate) fn point_head(&self, head: &Head) -> Result<(), StartError> {
        let err = |source| StartError::Head { head: head.clone(), source: Box::new(source) };
        if self.repo.refs().head().map_err(err)? != *head {
            self.repo.refs().set_head(head).map_err(err)?;
        }
        Ok(())
    }

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

    fn attr_of(&self, ino: Ino, node: &Node, subdirs: usize) -> FileAttr {
        let (kind, size, nlink) = match &node.kind {
            Kind::Dir(children) => (
                FileType::Directory,
                children.as_ref().map_or(0, |c| c.by_name.len()) as u64,
                2 + subdirs,
            ),
            Kind::File(f) => {
                (FileType::RegularFile, f.overlay.as_ref().map_or(f.stored.size, |o| o.size), 1)
            }
            Kind::Symlink(t) => (FileType::Symlink, t.as_bytes().len() as u64, 1),
        };
        let nlink = if node.name.is_none() && ino != ROOT { 0 } else { nlink };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.meta.atime,
            mtime: node.meta.mtime,
            ctime: node.meta.ctime,
            crtime: node.meta.ctime,
            kind,
            perm: node.meta.perm,
            nlink: u32::try_from(nlink).unwrap_or(u32::MAX),
            uid: node.meta.uid,
            gid: node.meta.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The attributes of `ino` (a directory is loaded for its link count).
    fn attr(&self, inner: &mut Inner, ino: Ino) -> Result<FileAttr, Errno> {
        let is_dir = matches!(inner.node(ino)?.kind, Kind::Dir(_));
        let subdirs = if is_dir {
            inner.load(ino)?;
            let dirs = match &inner.node(ino)?.kind {
                Kind::Dir(Some(children)) => children.dirs,
                _ => 0,
            };
            if cfg!(debug_assertions) {
                let below: Vec<Ino> = inner.children(ino)?.values().copied().collect();
                let is_dir =
                    |c: &Ino| matches!(inner.nodes.get(c).map(|n| &n.kind), Some(Kind::Dir(_)));
                assert_eq!(
                    dirs,
                    below.iter().filter(|c| is_dir(c)).count(),
                    "subdirectories miscounted"
                );
            }
            dirs
        } else {
            0
        };
        Ok(self.attr_of(ino, inner.node(ino)?, subdirs))
    }

    /// Gives `ino` an overlay if it has none: a copy of its stored content
    /// (`Fill::Content`), or empty (`Fill::Nothing`, for a truncation to 0).
    fn overlay(&self, inner: &mut Inner, ino: Ino, fill: Fill) -> Result<Arc<File>, Errno> {
        let number = inner.next_overlay;
        let stored = match &inner.file(ino)?.overlay {
            Some(o) => return Ok(o.file.clone()),
            None => inner.file(ino)?.stored,
        };
        if fill == Fill::Content {
            self.check_len(&stored)?;
        }
        let path = overlay_dir(&self.state_dir).join(number.to_string());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| {
                self.log(&format!("creating overlay {}: {e}", path.display()));
                io_errno(&e)
            })?;
        inner.next_overlay += 1;
        let size = if fill == Fill::Content { stored.size } else { 0 };
        let mut offset = 0;
        while offset < size {
            let len = COPY_LEN.min(size - offset);
            let bytes =
                self.store.read_range(&stored.id.object_id(), offset, len).map_err(|e| {
                    self.log(&format!("copying blob {} into an overlay: {e}", stored.id));
                    Errno::EIO
                })?;
            if bytes.len() as u64 != len {
                return Err(Errno::EIO);
            }
            // Zeros stay a hole (the length is set below): a sparse file
            // copied up costs no disk for them.
            if bytes.iter().any(|&b| b != 0) {
                file.write_all_at(&bytes, offset).map_err(|e| io_errno(&e))?;
            }
            offset += len;
        }
        file.set_len(size).map_err(|e| io_errno(&e))?;
        let file = Arc::new(file);
        inner.file_mut(ino)?.overlay = Some(Overlay {
            number,
            file: file.clone(),
            size,
            dirty: false,
            journaled: false,
            generation: 0,
        });
        Ok(file)
    }

    /// Finalizes a dirty overlay: hashes it, puts it into the store (handed
    /// to the operating system), records it in the working set and the
    /// journal. Then, if nothing may write it any more, drops the overlay
    /// (the file is served from the store again).
    fn finalize(&self, inner: &mut Inner, ino: Ino) -> Result<(), Errno> {
        let path = inner.path(ino);
        let Some(overlay) = &inner.file(ino)?.overlay else { return Ok(()) };
        let (file, size, dirty) = (overlay.file.clone(), overlay.size, overlay.dirty);
        let stored = match (&path, dirty) {
            (Some(path), true) => Some((self.store_overlay(&file, size, path)?, size)),
            _ => None,
        };
        let mut records = Vec::new();
        let settled = self.settle(inner, ino, stored, &mut records);
        self.journal_all(inner, &records);
        settled
    }

    /// Reads, hashes and stores (handed to the operating system) the
    /// first `size` bytes of an overlay: the content of the file at `path`.
    fn store_overlay(&self, file: &File, size: u64, path: &RepoPath) -> Result<BlobId, Errno> {
        let id = self.put_overlay(file, size, path)?;
        self.flush_store()?;
        Ok(id)
    }

    /// Reads, hashes and puts into the store the first `size` bytes of an
    /// overlay, maybe only into the store's buffer: flush before a journal
    /// record names the blob.
    fn put_overlay(&self, file: &File, size: u64, path: &RepoPath) -> Result<BlobId, Errno> {
        put_content(self.store.as_ref(), file, size).map_err(|e| {
            self.log(&format!("{path}: {e}"));
            Errno::EIO
        })
    }

    /// Hands the store's buffer to the operating system.
    fn flush_store(&self) -> Result<(), Errno> {
        self.store.flush().map_err(|e| {
            self.log(&format!("writing to the store: {e}"));
            Errno::EIO
        })
    }

    /// Records finalized content (`stored`: its id and size, if the file
    /// was dirty) in the working set and the journal, marks the overlay
    /// clean, and drops it if nothing may write the file any more.
    /// The journal record goes to `records`, for the caller to append
    /// with those of the rest of its batch.
    fn settle(
        &self,
        inner: &mut Inner,
        ino: Ino,
        stored: Option<(BlobId, u64)>,
        records: &mut Vec<Record>,
    ) -> Result<(), Errno> {
        let path = inner.path(ino);
        let perm = inner.node(ino)?.meta.perm;
        if let (Some((id, size)), Some(path)) = (stored, &path) {
            let entry = FileEntry { id, size, executable: perm & 0o100 != 0 };
            inner.file_mut(ino)?.stored = entry;
            inner.ws.put_file(path, entry).map_err(|e| errno(&e))?;
            records.push(Record::File {
                path: path_bytes(path),
                id: *id.as_bytes(),
                size,
                executable: entry.executable,
            });
        }
        inner.dirty.remove(&ino);
        let node = inner.file_mut(ino)?;
        if let Some(o) = &mut node.overlay {
            o.dirty = false;
        }
        let dropped = if node.writers == 0 { node.overlay.take() } else { None };
        if let Some(o) = dropped {
            self.discard_overlay(inner, &o, path.is_some());
        }
        Ok(())
    }

    /// Finalizes every dirty overlay (before a commit or status), as
    /// [`Shared::finalize`] does one, but hashing them on all cores and
    /// flushing the store once.
    fn finalize_all(&self, inner: &mut Inner) -> Result<(), Errno> {
        let work: Vec<(Ino, Option<Unsettled>)> = inner
            .dirty
            .iter()
            .map(|&ino| {
                let overlay = inner.file(ino).ok().and_then(|f| f.overlay.as_ref());
                let work = match (overlay, inner.path(ino)) {
                    (Some(o), Some(path)) if o.dirty => Some(Unsettled {
                        ino,
                        file: o.file.clone(),
                        size: o.size,
                        generation: o.generation,
                        path,
                    }),
                    _ => None,
                };
                (ino, work)
            })
            .collect();
        let ids: Vec<Result<Option<BlobId>, Errno>> = work
            .par_iter()
            .map(|(_, w)| {
                w.as_ref().map(|u| self.put_overlay(&u.file, u.size, &u.path)).transpose()
            })
            .collect();
        if ids.iter().any(|id| matches!(id, Ok(Some(_)))) {
            self.flush_store()?;
        }
        let mut records = Vec::new();
        let mut settled = Ok(());
        for ((ino, w), id) in work.iter().zip(ids) {
            settled = id.and_then(|id| {
                let stored = id.zip(w.as_ref().map(|u| u.size));
                self.settle(inner, *ino, stored, &mut records)
            });
            if settled.is_err() {
                break;
            }
        }
        self.journal_all(inner, &records);
        settled
    }

    /// Queues a dropped overlay's file for deletion: once the journal is
    /// next synced if a record may name it (`journaled`, of a file still
    /// named), else by the settler without the lock.
    fn discard_overlay(&self, inner: &mut Inner, overlay: &Overlay, named: bool) {
        if overlay.journaled && named {
            inner.retired.push(overlay.number);
        } else {
            inner.trash.push(overlay.number);
            self.settle_wake.notify_one();
        }
    }

    /// Deletes overlay files (without the lock).
    fn remove_overlay_files(&self, numbers: Vec<u64>) {
        let dir = overlay_dir(&self.state_dir);
        for number in numbers {
            let _ = std::fs::remove_file(dir.join(number.to_string()));
        }
    }

    /// Takes `ino` out of the tree (after an unlink, rmdir, or a rename
    /// over it): its name goes, its overlay too unless it is still open.
    fn orphan(&self, inner: &mut Inner, ino: Ino) {
        let t = now();
        let mut below = vec![ino];
        while let Some(ino) = below.pop() {
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.name = None;
                node.meta.ctime = t;
                match &mut node.kind {
                    // A directory a checkout removes may be loaded: what is
                    // below it leaves the tree with it, and it lists empty.
                    Kind::Dir(Some(children)) => {
                        below.extend(std::mem::take(children).by_name.into_values());
                    }
                    Kind::File(f) if f.writers == 0 => {
                        if let Some(o) = f.overlay.take() {
                            self.discard_overlay(inner, &o, true);
                        }
                    }
                    _ => {}
                }
            }
            inner.dirty.remove(&ino);
            self.drop_if_unused(inner, ino);
        }
    }

    /// Removes `ino` from the inode table once nothing can reach it: out
    /// of the tree, no handle open, and every lookup forgotten by the
    /// kernel. A long-lived mount's table so stays as large as the loaded
    /// tree plus what is still open.
    fn drop_if_unused(&self, inner: &mut Inner, ino: Ino) {
        let unused = ino != ROOT
            && inner.nodes.get(&ino).is_some_and(|n| n.name.is_none() && n.lookups == 0)
            && !inner.handles.values().any(|(i, _)| *i == ino);
        if !unused {
            return;
        }
        if let Some(Node { kind: Kind::File(f), .. }) = inner.nodes.remove(&ino)
            && let Some(o) = f.overlay
        {
            // As `orphan` does: a journal record may still name it.
            self.discard_overlay(inner, &o, true);
        }
        inner.dirty.remove(&ino);
        inner.closed.remove(&ino);
    }

    /// The kernel dropped `count` of its lookups of `ino`.
    fn forget(&self, inner: &mut Inner, ino: Ino, count: u64) {
        if let Some(node) = inner.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
        }
        self.drop_if_unused(inner, ino);
    }

    /// The attributes of `ino` for a reply that hands the kernel the inode
    /// (an entry): counts the lookup that the kernel will later forget.
    fn entry(&self, inner: &mut Inner, ino: Ino) -> Result<FileAttr, Errno> {
        let attr = self.attr(inner, ino)?;
        inner.node_mut(ino)?.lookups += 1;
        Ok(attr)
    }

    fn touch_dir(&self, inner: &mut Inner, ino: Ino) {
        if let Some(node) = inner.nodes.get_mut(&ino) {
            let t = now();
            node.meta.mtime = t;
            node.meta.ctime = t;
        }
    }

    /// The metadata of a new node made by `req` in `parent`: owned by the
    /// caller, except that a set-group-id directory passes on its group
    /// (and, to a new directory, the bit), as on ext4.
    fn new_meta(&self, inner: &Inner, parent: Ino, req: &Request, perm: u32, dir: bool) -> Meta {
        let t = now();
        let mut meta = Meta {
            perm: (perm & 0o7777) as u16,
            uid: req.uid(),
            gid: req.gid(),
            atime: t,
            mtime: t,
            ctime: t,
        };
        if let Ok(p) = inner.node(parent)
            && p.meta.perm & 0o2000 != 0
        {
            meta.gid = p.meta.gid;
            if dir {
                meta.perm |= 0o2000;
            }
        }
        meta
    }

    // ---- requests ----

    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FileAttr, Errno> {
        // A name no entry can have (`.vst` among them) is simply not there;
        // creating one is `EINVAL`.
        let name = name_of(name).map_err(|e| if e == Errno::EINVAL { Errno::ENOENT } else { e })?;
        let mut inner = self.lock();
        let ino = inner.child(parent, name.as_bytes())?.ok_or(Errno::ENOENT)?;
        self.entry(&mut inner, ino)
    }

    fn getattr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let mut inner = self.lock();
        self.attr(&mut inner, ino)
    }

    fn create_file(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        writable: Option<bool>,
    ) -> Result<(FileAttr, Option<u64>), Errno> {
        let name = name_of(name)?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(parent, &name)?;
        let perm = mode & !umask;
        let entry = FileEntry { id: BlobId::of(b""), size: 0, executable: perm & 0o100 != 0 };
        inner.ws.put_file(&path, entry).map_err(|e| errno(&e))?;
        let record = Record::File {
            path: path_bytes(&path),
            id: *entry.id.as_bytes(),
            size: 0,
            executable: entry.executable,
        };
        self.journal(&mut inner, record);
        let file = FileNode { stored: entry, overlay: None, writers: 0 };
        let meta = self.new_meta(&inner, parent, req, perm, false);
        let ino = inner.insert(parent, name, Kind::File(file), meta)?;
        self.touch_dir(&mut inner, parent);
        let fh = writable.map(|w| inner.open_handle(ino, w));
        Ok((self.entry(&mut inner, ino)?, fh))
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, Errno> {
        let name = name_of(name)?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(parent, &name)?;
        inner.ws.create_dir_all(&path).map_err(|e| errno(&e))?;
        self.journal(&mut inner, Record::Mkdir { path: path_bytes(&path) });
        let meta = self.new_meta(&inner, parent, req, mode & !umask, true);
        let ino = inner.insert(parent, name, Kind::Dir(Some(Children::default())), meta)?;
        self.touch_dir(&mut inner, parent);
        self.entry(&mut inner, ino)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, Errno> {
        let name = name_of(name)?;
        let target_bytes = target.as_os_str().as_bytes();
        let target = SymlinkTarget::try_from(target_bytes).map_err(|e| match e {
            vst::tree::InvalidSymlink::TooLong(_) => Errno::ENAMETOOLONG,
            vst::tree::InvalidSymlink::Empty => Errno::ENOENT,
            _ => Errno::EINVAL,
        })?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(parent, &name)?;
        inner.ws.symlink(&path, target_bytes).map_err(|e| errno(&e))?;
        let record = Record::Symlink { path: path_bytes(&path), target: target_bytes.to_vec() };
        self.journal(&mut inner, record);
        let meta = self.new_meta(&inner, parent, req, 0o777, false);
        let ino = inner.insert(parent, name, Kind::Symlink(target), meta)?;
        self.touch_dir(&mut inner, parent);
        self.entry(&mut inner, ino)
    }

    fn unlink(&self, parent: Ino, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let name = name_of(name)?;
        let mut inner = self.lock();
        let ino = inner.child(parent, name.as_bytes())?.ok_or(Errno::ENOENT)?;
        let is_dir = matches!(inner.node(ino)?.kind, Kind::Dir(_));
        match (dir, is_dir) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if !inner.children(ino)?.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let path = inner.child_path(parent, &name)?;
        inner.ws.remove(&path).map_err(|e| errno(&e))?;
        self.journal(&mut inner, Record::Remove { path: path_bytes(&path) });
        inner.children_mut(parent)?.remove(name.as_bytes(), is_dir);
        self.orphan(&mut inner, ino);
        self.touch_dir(&mut inner, parent);
        Ok(())
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        let (name, new_name) = (name_of(name)?, name_of(new_name)?);
        let mut inner = self.lock();
        let ino = inner.child(parent, name.as_bytes())?.ok_or(Errno::ENOENT)?;
        if !matches!(inner.node(new_parent)?.kind, Kind::Dir(_)) {
            return Err(Errno::ENOTDIR);
        }
        let is_dir = matches!(inner.node(ino)?.kind, Kind::Dir(_));
        if is_dir {
            // Not into itself or below itself.
            let mut at = new_parent;
            loop {
                if at == ino {
                    return Err(Errno::EINVAL);
                }
                if at == ROOT {
                    break;
                }
                at = inner.node(at)?.parent;
            }
        }
        let target = inner.child(new_parent, new_name.as_bytes())?;
        if let Some(target) = target {
            if target == ino {
                return Ok(());
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            let target_is_dir = matches!(inner.node(target)?.kind, Kind::Dir(_));
            match (is_dir, target_is_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !inner.children(target)?.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        let from = inner.child_path(parent, &name)?;
        let to = inner.child_path(new_parent, &new_name)?;
        inner.ws.rename(&from, &to).map_err(|e| errno(&e))?;
        self.journal(&mut inner, Record::Rename { from: path_bytes(&from), to: path_bytes(&to) });
        inner.children_mut(parent)?.remove(name.as_bytes(), is_dir);
        if let Some(target) = target {
            // Same kind as the entry replacing it: the count stands.
            inner.children_mut(new_parent)?.remove(new_name.as_bytes(), is_dir);
            self.orphan(&mut inner, target);
        }
        inner.children_mut(new_parent)?.add(new_name.clone(), ino, is_dir);
        let node = inner.node_mut(ino)?;
        node.parent = new_parent;
        node.name = Some(new_name);
        node.meta.ctime = now();
        self.touch_dir(&mut inner, parent);
        self.touch_dir(&mut inner, new_parent);
        Ok(())
    }

    fn open_file(&self, ino: Ino, flags: OpenFlags) -> Result<u64, Errno> {
        let mut inner = self.lock();
        match inner.node(ino)?.kind {
            Kind::File(_) => {}
            Kind::Dir(_) => return Err(Errno::EISDIR),
            Kind::Symlink(_) => return Err(Errno::ELOOP),
        }
        let writable = flags.acc_mode() != OpenAccMode::O_RDONLY;
        Ok(inner.open_handle(ino, writable))
    }

    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        enum Source {
            Overlay(Arc<File>, u64),
            Store(FileEntry),
        }
        let source = {
            let mut inner = self.lock();
            let file = inner.file(ino)?;
            let source = match &file.overlay {
                Some(o) => Source::Overlay(o.file.clone(), o.size),
                None => Source::Store(file.stored),
            };
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.meta.atime = now();
            }
            source
        };
        // The lock is released: a slow read holds up only this request.
        match source {
            Source::Overlay(file, file_size) => {
                let end = offset.saturating_add(u64::from(size)).min(file_size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                read_at(&file, offset, end - offset).map_err(|e| io_errno(&e))
            }
            Source::Store(entry) => {
                self.check_len(&entry)?;
                let end = offset.saturating_add(u64::from(size)).min(entry.size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                match self.store.read_range(&entry.id.object_id(), offset, end - offset) {
                    Ok(bytes) if bytes.len() as u64 == end - offset => Ok(bytes.to_vec()),
                    Ok(_) => Err(Errno::EIO),
                    Err(e) => {
                        self.log(&format!("reading blob {}: {e}", entry.id));
                        Err(Errno::EIO)
                    }
                }
            }
        }
    }

    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let mut inner = self.lock();
        let file = self.overlay(&mut inner, ino, Fill::Content)?;
        file.write_all_at(data, offset).map_err(|e| io_errno(&e))?;
        let end = offset + data.len() as u64;
        if let Some(o) = &mut inner.file_mut(ino)?.overlay {
            o.size = o.size.max(end);
            o.dirty = true;
            o.generation += 1;
        }
        inner.dirty.insert(ino);
        let node = inner.node_mut(ino)?;
        let t = now();
        node.meta.mtime = t;
        node.meta.ctime = t;
        // The set-user-id and set-group-id bits a write clears reach us from
        // the kernel as a setattr of the mode.
        Ok(u32::try_from(data.len()).unwrap_or(u32::MAX))
    }

    fn truncate(&self, inner: &mut Inner, ino: Ino, size: u64) -> Result<(), Errno> {
        let fill = if size == 0 { Fill::Nothing } else { Fill::Content };
        if inner.size(ino)? == size && inner.file(ino)?.overlay.is_none() {
            return Ok(());
        }
        self.resize(inner, ino, size, fill)
    }

    /// Sets the length of `ino`'s content (in its overlay, made with
    /// `fill` if it has none), and finalizes it at once if no writable
    /// handle is open (no release will come).
    fn resize(&self, inner: &mut Inner, ino: Ino, size: u64, fill: Fill) -> Result<(), Errno> {
        let file = self.overlay(inner, ino, fill)?;
        file.set_len(size).map_err(|e| io_errno(&e))?;
        if let Some(o) = &mut inner.file_mut(ino)?.overlay {
            o.size = size;
            o.dirty = true;
            o.generation += 1;
        }
        inner.dirty.insert(ino);
        if inner.file(ino)?.writers == 0 {
            self.finalize(inner, ino)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr, Errno> {
        let mut inner = self.lock();
        let t = now();
        if let Some(size) = size {
            match inner.node(ino)?.kind {
                Kind::File(_) => {}
                Kind::Dir(_) => return Err(Errno::EISDIR),
                Kind::Symlink(_) => return Err(Errno::EINVAL),
            }
            self.truncate(&mut inner, ino, size)?;
            let node = inner.node_mut(ino)?;
            node.meta.mtime = t;
            node.meta.ctime = t;
        }
        if let Some(mode) = mode {
            let perm = (mode & 0o7777) as u16;
            let executable = perm & 0o100 != 0;
            let path = inner.path(ino);
            let was = match &inner.node(ino)?.kind {
                Kind::File(f) => Some(f.stored.executable),
                _ => None,
            };
            if let (Some(was), Some(path)) = (was, path)
                && was != executable
            {
                inner.ws.set_executable(&path, executable).map_err(|e| errno(&e))?;
                self.journal(
                    &mut inner,
                    Record::Executable { path: path_bytes(&path), executable },
                );
            }
            if let Kind::File(f) = &mut inner.node_mut(ino)?.kind {
                f.stored.executable = executable;
            }
            let node = inner.node_mut(ino)?;
            node.meta.perm = perm;
            node.meta.ctime = t;
        }
        if uid.is_some() || gid.is_some() {
            let node = inner.node_mut(ino)?;
            if let Some(uid) = uid {
                node.meta.uid = uid;
            }
            if let Some(gid) = gid {
                node.meta.gid = gid;
            }
            node.meta.ctime = t;
        }
        let resolve = |x: TimeOrNow| match x {
            TimeOrNow::SpecificTime(s) => s,
            TimeOrNow::Now => t,
        };
        if let Some(a) = atime {
            let node = inner.node_mut(ino)?;
            node.meta.atime = resolve(a);
            node.meta.ctime = t;
        }
        if let Some(m) = mtime {
            let node = inner.node_mut(ino)?;
            node.meta.mtime = resolve(m);
            node.meta.ctime = t;
        }
        self.attr(&mut inner, ino)
    }

    fn release(&self, fh: u64) -> Result<(), Errno> {
        let mut inner = self.lock();
        let Some((ino, writable)) = inner.handles.remove(&fh) else { return Ok(()) };
        let released = if writable { self.release_writer(&mut inner, ino) } else { Ok(()) };
        self.drop_if_unused(&mut inner, ino);
        released
    }

    /// The last writable handle of `ino` closed: its content is final.
    fn release_writer(&self, inner: &mut Inner, ino: Ino) -> Result<(), Errno> {
        let Ok(f) = inner.file_mut(ino) else { return Ok(()) };
        f.writers = f.writers.saturating_sub(1);
        if f.writers > 0 {
            return Ok(());
        }
        if matches!(&f.overlay, Some(o) if o.dirty) && inner.path(ino).is_some() {
            // Hashed by the settler with the other files closed meanwhile,
            // without the lock: closing holds up no other request.
            inner.closed.insert(ino);
            self.settle_wake.notify_one();
            Ok(())
        } else {
            self.finalize(inner, ino)
        }
    }

    /// The settler's loop: waits for closed files, finalizes them in a
    /// batch and hashes the changed trees ([`Shared::settle_round`]), then
    /// pauses three times as long as the round held the lock. Once the
    /// mount has been quiet for `Inner::store_quiet`, stores the changed
    /// trees ([`Shared::store_trees`]) and doubles that time. Returns once
    /// [`Shared::stop_settler`] is called.
    pub(crate) fn run_settler(&self) {
        // The changes count at which storing trees last failed: not retried
        // before the next change (a full disk is not hashed against).
        let mut failed_at = None;
        loop {
            let work = {
                let mut inner = self.lock();
                loop {
                    if inner.settler_stop {
                        return;
                    }
                    if !inner.closed.is_empty() || !inner.trash.is_empty() {
                        break Work::Settle;
                    }
                    if inner.ws.changed_dirs_estimate() == 0 || failed_at == Some(inner.changes) {
                        // Nothing to store: sleep until the next change.
                        inner.settler_idle = true;
                        inner =
                            self.settle_wake.wait(inner).unwrap_or_else(PoisonError::into_inner);
                        continue;
                    }
                    let quiet = inner.last_change.elapsed();
                    if quiet >= inner.store_quiet {
                        inner.store_quiet = (inner.store_quiet * 2).min(STORE_QUIET_MAX);
                        break Work::Store;
                    }
                    let rest = inner.store_quiet - quiet;
                    inner = self
                        .settle_wake
                        .wait_timeout(inner, rest)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            };
            match work {
                Work::Settle => {
                    let locked = self.settle_round();
                    std::thread::sleep((locked * SETTLE_PAUSE_FACTOR).min(SETTLE_PAUSE_MAX));
                }
                Work::Store => {
                    if let Err(changes) = self.store_trees() {
                        failed_at = Some(changes);
                    }
                }
            }
        }
    }

    /// Stores the trees of every directory changed since the last commit
    /// (or since the last time this ran), under the lock, then syncs the
    /// store without it: a commit that follows only stores its commit
    /// object, and its sync has little left to write. Trees a later change replaces before
    /// a commit stay in the store until `vst gc`, as files rewritten before
    /// a commit do; the growing quiet time bounds them (see
    /// [`STORE_QUIET_MAX`]).
    /// On failure, returns the changes count it failed at.
    /// Then, if the journal has grown past [`JOURNAL_COMPACT_LEN`] and
    /// nothing changed meanwhile, rewrites it compactly: churn between
    /// commits (files made and removed) must not grow it for ever.
    fn store_trees(&self) -> Result<(), u64> {
        let (changes, tree) = {
            let mut inner = self.lock();
            match write_tree(&mut inner.ws, Durability::None) {
                Ok(tree) => (inner.changes, tree),
                Err(e) => {
                    self.log(&format!("storing the changed trees: {e}"));
                    return Err(inner.changes);
                }
            }
        };
        self.store.sync().map_err(|e| {
            self.log(&format!("syncing the store after storing trees: {e}"));
            changes
        })?;
        {
            let mut inner = self.lock();
            // Unchanged since `tree` was stored, and the store is synced:
            // everything it names is durable.
            if inner.changes == changes && inner.journal.len() > JOURNAL_COMPACT_LEN {
                self.compact_journal(&mut inner, tree);
            }
        }
        // A mount never reopens its store: fold the index's log into its
        // table here once it is long, so that commands outside the mount
        // open one table (tens of ms, about every hundred commits).
        if let Err(e) = self.repo.fold_index() {
            self.log(&format!("rewriting the store's index: {e}"));
        }
        Ok(())
    }

    /// Rewrites the journal as the base, the differences of `tree` (the
    /// working set's, everything it names durable) from the base, and the
    /// fsynced overlays of files not yet settled. Overlays only the old
    /// journal named go to the trash. A failure is logged and fails every
    /// later fsync, as a failed append does.
    fn compact_journal(&self, inner: &mut Inner, tree: TreeId) {
        let changes = match diff_trees(self.store.as_ref(), inner.base_tree, Some(tree)) {
            Ok(c) => c,
            Err(e) => {
                self.log(&format!("compacting the journal: {e}"));
                return;
            }
        };
        let mut records = vec![Record::Base { commit: inner.ws.head().map(|c| *c.as_bytes()) }];
        records.extend(records_of(&changes));
        for &ino in &inner.dirty {
            let (Ok(node), Some(path)) = (inner.node(ino), inner.path(ino)) else { continue };
            if let Kind::File(FileNode { overlay: Some(o), .. }) = &node.kind
                && o.journaled
            {
                records.push(Record::Overlay {
                    path: path_bytes(&path),
                    overlay: o.number,
                    executable: node.meta.perm & 0o100 != 0,
                });
            }
        }
        let path = inner.journal.path().to_owned();
        match Journal::create(&path, &records) {
            Ok(j) => {
                inner.journal = j;
                inner.journal_failed = false;
                let retired = std::mem::take(&mut inner.retired);
                inner.trash.extend(retired);
            }
            Err(e) => {
                self.log(&format!("compacting the journal {}: {e}", path.display()));
                inner.journal_failed = true;
            }
        }
    }

    /// Makes [`Shared::run_settler`] return.
    pub(crate) fn stop_settler(&self) {
        self.lock().settler_stop = true;
        self.settle_wake.notify_all();
    }

    /// Finalizes the files closed since the last round: reads, hashes and
    /// stores them on all cores without the lock, flushes the store once,
    /// then records each whose overlay did not change meanwhile (one that
    /// did is left dirty, for its next close or the next commit). Then
    /// computes the ids of the changed directories.
    /// Returns how long it held the lock.
    pub(crate) fn settle_round(&self) -> Duration {
        let started = Instant::now();
        let batch: Vec<Unsettled> = {
            let mut inner = self.lock();
            let queued = std::mem::take(&mut inner.closed);
            queued
                .into_iter()
                .filter_map(|ino| {
                    let f = inner.file(ino).ok()?;
                    let o = f.overlay.as_ref().filter(|o| o.dirty && f.writers == 0)?;
                    let (file, size, generation) = (o.file.clone(), o.size, o.generation);
                    Some(Unsettled { ino, file, size, generation, path: inner.path(ino)? })
                })
                .collect()
        };
        let mut locked = started.elapsed();
        let overlays: Vec<(&File, u64)> = batch.iter().map(|c| (&*c.file, c.size)).collect();
        let ids: Vec<Option<BlobId>> =
            crate::put_batch::put_contents(self.store.as_ref(), &overlays)
                .into_iter()
                .zip(&batch)
                .map(|(id, c)| id.map_err(|e| self.log(&format!("{}: {e}", c.path))).ok())
                .collect();
        if !batch.is_empty() && self.flush_store().is_err() {
            return locked;
        }
        let relocked = Instant::now();
        let mut inner = self.lock();
        let mut records = Vec::new();
        for (c, id) in batch.iter().zip(ids) {
            let Some(id) = id else { continue };
            let unchanged = matches!(inner.file(c.ino).map(|f| &f.overlay),
                Ok(Some(o)) if Arc::ptr_eq(&o.file, &c.file) && o.generation == c.generation && o.dirty);
            if unchanged
                && let Err(e) = self.settle(&mut inner, c.ino, Some((id, c.size)), &mut records)
            {
                self.log(&format!("{}: recording its content: {e:?}", c.path));
            }
        }
        self.journal_all(&mut inner, &records);
        inner.ws.hash_trees();
        let trash = std::mem::take(&mut inner.trash);
        drop(inner);
        locked += relocked.elapsed();
        self.remove_overlay_files(trash);
        locked
    }

    fn fsync(&self, ino: Ino) -> Result<(), Errno> {
        let file = {
            let inner = self.lock();
            inner
                .file(ino)
                .ok()
                .and_then(|f| f.overlay.as_ref().map(|o| (o.file.clone(), o.number)))
        };
        if let Some((file, number)) = file {
            file.sync_data().map_err(|e| io_errno(&e))?;
            let mut inner = self.lock();
            let path = inner.path(ino);
            let perm = inner.node(ino)?.meta.perm;
            let record = match &mut inner.file_mut(ino)?.overlay {
                Some(o) if o.number == number && o.dirty => path.map(|path| {
                    o.journaled = true;
                    Record::Overlay {
                        path: path_bytes(&path),
                        overlay: number,
                        executable: perm & 0o100 != 0,
                    }
                }),
                _ => None,
            };
            if let Some(record) = record {
                self.journal(&mut inner, record);
            }
        }
        self.sync()
    }

    /// A new directory handle (never 0).
    fn open_listing(&self) -> u64 {
        self.last_listing.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The listing of directory handle `fh`, taken afresh at offset 0 (or
    /// if the handle has none).
    fn listing(&self, ino: Ino, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>, Errno> {
        let held = || self.listings.lock().unwrap_or_else(PoisonError::into_inner);
        if offset != 0
            && let Some(listing) = held().get(&fh)
        {
            return Ok(listing.clone());
        }
        let listing = Arc::new(self.list(ino)?);
        held().insert(fh, listing.clone());
        Ok(listing)
    }

    fn release_listing(&self, fh: u64) {
        self.listings.lock().unwrap_or_else(PoisonError::into_inner).remove(&fh);
    }

    /// Every entry of directory `ino`, `.` and `..` first, each with the
    /// offset of the one after it.
    fn list(&self, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        let mut inner = self.lock();
        let parent = inner.node(ino)?.parent;
        let children: Vec<(Name, Ino)> =
            inner.children(ino)?.iter().map(|(n, i)| (n.clone(), *i)).collect();
        let kind = |inner: &Inner, i: Ino| match inner.nodes.get(&i).map(|n| &n.kind) {
            Some(Kind::File(_)) => FileType::RegularFile,
            Some(Kind::Symlink(_)) => FileType::Symlink,
            _ => FileType::Directory,
        };
        let mut all = vec![
            (ino, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        all.extend(children.into_iter().map(|(n, i)| (i, kind(&inner, i), n.as_bytes().to_vec())));
        Ok(all.into_iter().enumerate().map(|(at, (i, k, n))| (i, at as u64 + 1, k, n)).collect())
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        let inner = self.lock();
        match &inner.node(ino)?.kind {
            Kind::Symlink(t) => Ok(t.as_bytes().to_vec()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn fallocate(&self, ino: Ino, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut inner = self.lock();
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        if end > inner.size(ino)? {
            self.resize(&mut inner, ino, end, Fill::Content)?;
            inner.node_mut(ino)?.meta.mtime = now();
        }
        inner.node_mut(ino)?.meta.ctime = now();
        Ok(())
    }

    // ---- the control socket's operations ----

    /// Commits the working set and moves the branch `HEAD` names (or a
    /// detached `HEAD`) by compare-and-swap, as `vst commit` does. Scans
    /// nothing: files closed since the last commit are already hashed and
    /// stored; files still being written are finalized first.
    pub(crate) fn commit(
        &self,
        options: &CommitOptions,
        allow_empty: bool,
    ) -> vst::Result<Committed> {
        let started = Instant::now();
        let (committed, file, retired) = {
            let mut inner = self.lock();
            self.finalize_all(&mut inner).map_err(|e| errno_error("finalizing open files", e))?;
            let tree = write_tree(&mut inner.ws, Durability::None)?;
            let hash_us = micros(started);
            if !allow_empty && Some(tree) == inner.base_tree {
                // The tree is the base's (durable): whatever the journal
                // holds since its base record changes nothing.
                if inner.journal.grown() {
                    self.compact_journal(&mut inner, tree);
                }
                let total_us = micros(started);
                return Ok(Committed { commit: None, tree, hash_us, total_us });
            }
            let id = self.repo.commit(&mut inner.ws, options)?;
            inner.base_tree = Some(tree);
            inner.store_quiet = STORE_QUIET_MIN;
            let base = Record::Base { commit: Some(*id.as_bytes()) };
            if inner.journal.len() > JOURNAL_COMPACT_LEN {
                let path = inner.journal.path().to_owned();
                match Journal::create(&path, std::slice::from_ref(&base)) {
                    Ok(j) => {
                        inner.journal = j;
                        inner.journal_failed = false;
                    }
                    Err(e) => {
                        self.log(&format!("rewriting the journal: {e}"));
                        inner.journal_failed = true;
                    }
                }
            } else {
                self.journal(&mut inner, base);
            }
            let retired = std::mem::take(&mut inner.retired);
            (
                Committed { commit: Some(id), tree, hash_us, total_us: 0 },
                inner.journal.file(),
                retired,
            )
        };
        // The commit is durable (its ref moved). The journal's new base need
        // not be: a mount that finds the ref's commit holding the journal's
        // tree takes it as the base. Only if overlays named by the journal
        // are to go must it be synced first (its replay would miss them).
        if !retired.is_empty()
            && let Err(e) = file.sync_data()
        {
            self.log(&format!("syncing the journal after a commit: {e}"));
            return Ok(Committed { total_us: micros(started), ..committed });
        }
        for number in retired {
            let _ = std::fs::remove_file(overlay_dir(&self.state_dir).join(number.to_string()));
        }
        Ok(Committed { total_us: micros(started), ..committed })
    }

    /// What differs from the commit the mount is based on: O(changed
    /// directories), from the working set's cleared tree ids. The mount's
    /// trees are stored and handed to the operating system, so that another
    /// process can read them (and the files) from the store.
    pub(crate) fn status(&self) -> vst::Result<Status> {
        let mut inner = self.lock();
        self.finalize_all(&mut inner).map_err(|e| errno_error("finalizing open files", e))?;
        let tree = write_tree(&mut inner.ws, Durability::None)?;
        self.flush_store().map_err(|e| errno_error("writing the store", e))?;
        let changes = diff_trees(self.store.as_ref(), inner.base_tree, Some(tree))?;
        let stats = MountStats {
            inodes: inner.nodes.len() as u64,
            open_handles: inner.handles.len() as u64,
            journal_records: inner.journal.records(),
        };
        let lines = changes.into_iter().map(|c| StatusLine { kind: c.kind(), path: c.path });
        Ok(Status { lines: lines.collect(), stats, base: inner.base_tree, tree })
    }

    /// Moves the mount to `target`: only the paths that differ change, and
    /// the kernel's caches of them are invalidated. Refuses while there are
    /// uncommitted changes, unless `force` (which discards them). Then
    /// `HEAD` names `branch`, or `target` detached.
    pub(crate) fn checkout(
        &self,
        target: CommitId,
        branch: Option<RefName>,
        force: bool,
    ) -> Result<usize, CheckoutError> {
        // Read the target's trees before taking the lock.
        let new_ws = WorkingSet::from_commit(self.store.clone(), target)?;
        let target_tree = tree_of(self.store.as_ref(), Some(target))?;
        let (notes, changed, file, retired) = {
            let mut inner = self.lock();
            self.finalize_all(&mut inner)
                .map_err(|e| CheckoutError::Vst(errno_error("finalizing open files", e)))?;
            let current = write_tree(&mut inner.ws, Durability::None)?;
            if !force && Some(current) != inner.base_tree {
                return Err(CheckoutError::LocalChanges);
            }
            let changes = diff_trees(self.store.as_ref(), Some(current), target_tree)?;
            let head = match &branch {
                Some(b) => Head::Branch(b.clone()),
                None => Head::Detached(target.object_id()),
            };
            self.repo.refs().set_head(&head).map_err(CheckoutError::Ref)?;
            inner.ws = new_ws;
            inner.base_tree = target_tree;
            let notes = self.apply_changes(&mut inner, &changes);
            self.journal(&mut inner, Record::Base { commit: Some(*target.as_bytes()) });
            let retired = std::mem::take(&mut inner.retired);
            (notes, changes.len(), inner.journal.file(), retired)
        };
        if let Err(e) = file.sync_data() {
            self.log(&format!("syncing the journal after a checkout: {e}"));
        }
        for number in retired {
            let _ = std::fs::remove_file(overlay_dir(&self.state_dir).join(number.to_string()));
        }
        self.notify(notes);
        Ok(changed)
    }

    /// Brings the loaded part of the inode table to the new working set,
    /// path by changed path; returns what the kernel must forget.
    fn apply_changes(&self, inner: &mut Inner, changes: &[Change]) -> Vec<Note> {
        let mut notes = Vec::new();
        let t = now();
        for change in changes {
            let Some((parent_path, name)) = change.path.split_last() else { continue };
            let Ok(name) = Name::try_from(name) else { continue };
            let Some(parent) = inner.loaded(&parent_path) else { continue };
            let old = match inner.nodes.get(&parent).map(|n| &n.kind) {
                Some(Kind::Dir(Some(children))) => children.by_name.get(name.as_bytes()).copied(),
                _ => continue,
            };
            notes.push(Note::Inode(parent));
            let same_file = match (old.and_then(|o| inner.nodes.get(&o)), &change.new) {
                (Some(Node { kind: Kind::File(_), .. }), Some(EntryKind::File(_))) => old,
                _ => None,
            };
            if let (Some(ino), Some(EntryKind::File(f))) = (same_file, &change.new) {
                // The same inode, new content: an open reader sees it.
                inner.dirty.remove(&ino);
                if let Some(node) = inner.nodes.get_mut(&ino)
                    && let Kind::File(file) = &mut node.kind
                {
                    file.stored = *f;
                    let dropped = file.overlay.take();
                    node.meta.perm =
                        if f.executable { node.meta.perm | 0o111 } else { node.meta.perm & !0o111 };
                    node.meta.mtime = t;
                    node.meta.ctime = t;
                    if let Some(o) = dropped {
                        self.discard_overlay(inner, &o, true);
                    }
                }
                notes.push(Note::Inode(ino));
                continue;
            }
            if let Some(ino) = old {
                let was_dir = matches!(inner.nodes.get(&ino).map(|n| &n.kind), Some(Kind::Dir(_)));
                if let Some(Node { kind: Kind::Dir(Some(children)), .. }) =
                    inner.nodes.get_mut(&parent)
                {
                    children.remove(name.as_bytes(), was_dir);
                }
                self.orphan(inner, ino);
            }
            notes.push(Note::Entry(parent, name.clone()));
            if let Some(kind) = &change.new {
                let (kind, perm) = match kind {
                    EntryKind::File(f) => (
                        Kind::File(FileNode { stored: *f, overlay: None, writers: 0 }),
                        if f.executable { 0o755 } else { 0o644 },
                    ),
                    EntryKind::Dir(_) => (Kind::Dir(None), 0o755),
                    EntryKind::Symlink(s) => (Kind::Symlink(s.clone()), 0o777),
                };
                let meta =
                    Meta { perm, uid: self.uid, gid: self.gid, atime: t, mtime: t, ctime: t };
                let _ = inner.insert(parent, name, kind, meta);
            }
        }
        notes
    }

    /// Tells the kernel to forget cached entries, attributes and pages.
    /// Errors (the kernel did not know the entry) do not matter.
    fn notify(&self, notes: Vec<Note>) {
        let Some(notifier) = self.notifier.get() else { return };
        for note in notes {
            let _ = match note {
                Note::Entry(parent, name) => {
                    notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(name.as_bytes()))
                }
                Note::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
            };
        }
    }

    /// Finalizes every file, syncs the store, and writes a compact journal
    /// (the base and the differences from it), then deletes the overlays:
    /// what an orderly unmount leaves for the next mount.
    pub(crate) fn checkpoint(&self) -> vst::Result<()> {
        let mut inner = self.lock();
        let open: Vec<Ino> = inner.dirty.iter().copied().collect();
        for ino in open {
            if let Ok(f) = inner.file_mut(ino) {
                f.writers = 0;
            }
        }
        self.finalize_all(&mut inner).map_err(|e| errno_error("finalizing open files", e))?;
        let tree = write_tree(&mut inner.ws, Durability::None)?;
        let changes = diff_trees(self.store.as_ref(), inner.base_tree, Some(tree))?;
        self.store.sync()?;
        let mut records = vec![Record::Base { commit: inner.ws.head().map(|c| *c.as_bytes()) }];
        records.extend(records_of(&changes));
        let path = inner.journal.path().to_owned();
        inner.journal = Journal::create(&path, &records).map_err(|e| io_error("the journal", e))?;
        inner.journal_failed = false;
        inner.retired.clear();
        let overlays = overlay_dir(&self.state_dir);
        drop(inner);
        remove_overlays(&overlays).map_err(|e| io_error("the overlay directory", e))?;
        Ok(())
    }
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

/// What the settler does next.
enum Work {
    /// Finalize closed files ([`Shared::settle_round`]).
    Settle,
    /// Store the changed trees of a quiet mount ([`Shared::store_trees`]).
    Store,
}

/// The settler thread of a writable mount ([`Shared::run_settler`]);
/// stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct Settler {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Settler {
    pub(crate) fn start(shared: Arc<Shared>) -> io::Result<Self> {
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vst-mount-settle".to_owned())
                .spawn(move || shared.run_settler())?
        };
        Ok(Self { shared, thread: Some(thread) })
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        self.shared.stop_settler();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why a checkout through the mount failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// There are uncommitted changes.
    #[error(
        "the mount has uncommitted changes: commit them, or check out with --force to discard them"
    )]
    LocalChanges,
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Vst(#[from] vst::Error),
    /// `HEAD` could not be moved.
    #[error("moving HEAD")]
    Ref(#[source] vst_cas::RefError),
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

/// Deletes every overlay file.
fn remove_overlays(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    Ok(())
}

/// What a new overlay starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// The file's stored content.
    Content,
    /// Nothing (the file is being truncated to 0).
    Nothing,
}

impl Inner {
    fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn file(&self, ino: Ino) -> Result<&FileNode, Errno> {
        match &self.node(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    /// The length of a file's content: its overlay's, else the stored one.
    fn size(&self, ino: Ino) -> Result<u64, Errno> {
        let f = self.file(ino)?;
        Ok(f.overlay.as_ref().map_or(f.stored.size, |o| o.size))
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileNode, Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    /// The path of `ino`; `None` if it is no longer in the tree.
    fn path(&self, ino: Ino) -> Option<RepoPath> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let node = self.nodes.get(&at)?;
            names.push(node.name.as_ref()?);
            at = node.parent;
        }
        let mut bytes = Vec::new();
        for name in names.iter().rev() {
            if !bytes.is_empty() {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(name.as_bytes());
        }
        repo_path(&bytes)
    }

    /// The path of `name` in directory `parent`.
    fn child_path(&self, parent: Ino, name: &Name) -> Result<RepoPath, Errno> {
        let dir = self.path(parent).ok_or(Errno::ENOENT)?;
        dir.join(name).map_err(|_| Errno::ENAMETOOLONG)
    }

    /// The inode of the directory at `path` if it and every directory above
    /// it are loaded.
    fn loaded(&self, path: &RepoPath) -> Option<Ino> {
        let mut at = ROOT;
        for name in path.components() {
            match &self.nodes.get(&at)?.kind {
                Kind::Dir(Some(children)) => at = *children.by_name.get(name)?,
                _ => return None,
            }
        }
        Some(at)
    }

    /// The children of directory `ino`, loaded from the working set the
    /// first time.
    fn children(&mut self, ino: Ino) -> Result<&BTreeMap<Name, Ino>, Errno> {
        self.load(ino)?;
        match &self.node(ino)?.kind {
            Kind::Dir(Some(children)) => Ok(&children.by_name),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn children_mut(&mut self, ino: Ino) -> Result<&mut Children, Errno> {
        self.load(ino)?;
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(Some(children)) => Ok(children),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn child(&mut self, parent: Ino, name: &[u8]) -> Result<Option<Ino>, Errno> {
        Ok(self.children(parent)?.get(name).copied())
    }

    fn load(&mut self, ino: Ino) -> Result<(), Errno> {
        match &self.node(ino)?.kind {
            Kind::Dir(Some(_)) => return Ok(()),
            Kind::Dir(None) => {}
            _ => return Err(Errno::ENOTDIR),
        }
        let listed = match self.path(ino) {
            Some(path) => self.ws.list_dir(&path).map_err(|e| errno(&e))?,
            None => Vec::new(),
        };
        let (uid, gid, time) = {
            let meta = self.node(ino)?.meta;
            (meta.uid, meta.gid, self.base_time)
        };
        let mut children = Children::default();
        for (name, stat) in listed {
            let (kind, perm) = match stat {
                Stat::File(f) => (
                    Kind::File(FileNode { stored: f, overlay: None, writers: 0 }),
                    if f.executable { 0o755 } else { 0o644 },
                ),
                Stat::Symlink(t) => (Kind::Symlink(t), 0o777),
                Stat::Dir(_) => (Kind::Dir(None), 0o755),
            };
            let child = self.next_ino;
            self.next_ino += 1;
            let meta = Meta { perm, uid, gid, atime: time, mtime: time, ctime: time };
            let node = Node { parent: ino, name: Some(name.clone()), kind, meta, lookups: 0 };
            let is_dir = matches!(node.kind, Kind::Dir(_));
            self.nodes.insert(child, node);
            children.add(name, child, is_dir);
        }
        self.node_mut(ino)?.kind = Kind::Dir(Some(children));
        Ok(())
    }

    /// Adds a new node `name` in directory `parent`.
    fn insert(&mut self, parent: Ino, name: Name, kind: Kind, meta: Meta) -> Result<Ino, Errno> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_dir = matches!(kind, Kind::Dir(_));
        self.nodes.insert(ino, Node { parent, name: Some(name.clone()), kind, meta, lookups: 0 });
        self.children_mut(parent)?.add(name, ino, is_dir);
        Ok(ino)
    }

    fn open_handle(&mut self, ino: Ino, writable: bool) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (ino, writable));
        if writable && let Ok(f) = self.file_mut(ino) {
            f.writers += 1;
        }
        fh
    }
}

/// The writable filesystem the kernel talks to.
pub(crate) struct WriteFs {
    pub(crate) shared: Arc<Shared>,
}

impl WriteFs {
    /// Runs one request's handler; a panic answers it with `EIO`.
    fn guard(&self, op: &'static str, f: impl FnOnce()) {
        if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
            self.shared.log(&format!("{op}: internal error (panic); answered EIO"));
        }
    }

    fn ttl(&self) -> Duration {
        self.shared.ttl
    }
}

fn reply_entry(reply: ReplyEntry, ttl: Duration, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&ttl, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for WriteFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // After a checkout invalidates a file's attributes, a read through
        // a handle opened before must fetch them again (the size changed),
        // and drop pages cached under the old ones.
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.shared.checkpoint() {
            self.shared.log(&format!("saving the uncommitted tree at unmount: {e}"));
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.guard("lookup", || reply_entry(reply, self.ttl(), self.shared.lookup(parent.0, name)))
    }

    // fuser's default `batch_forget` calls this for each inode (its
    // `ForgetOne` is not exported, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.guard("forget", || self.shared.forget(&mut self.shared.lock(), ino.0, nlookup))
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.guard("getattr", || match self.shared.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl(), &attr),
            Err(e) => reply.error(e),
        })
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.guard("setattr", || {
            match self.shared.setattr(ino.0, mode, uid, gid, size, atime, mtime) {
                Ok(attr) => reply.attr(&self.ttl(), &attr),
                Err(e) => reply.error(e),
            }
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.guard("readlink", || match self.shared.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        })
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.guard("mknod", || {
            // Only regular files: vst trees hold no devices, FIFOs or sockets.
            if (mode & nix::libc::S_IFMT) != nix::libc::S_IFREG {
                return reply.error(Errno::EPERM);
            }
            let result = self.shared.create_file(req, parent.0, name, mode, umask, None);
            reply_entry(reply, self.ttl(), result.map(|(attr, _)| attr))
        })
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.guard("mkdir", || {
            reply_entry(reply, self.ttl(), self.shared.mkdir(req, parent.0, name, mode, umask))
        })
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guard("unlink", || reply_empty(reply, self.shared.unlink(parent.0, name, false)))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guard("rmdir", || reply_empty(reply, self.shared.unlink(parent.0, name, true)))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.guard("symlink", || {
            reply_entry(reply, self.ttl(), self.shared.symlink(req, parent.0, link_name, target))
        })
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.guard("rename", || {
            reply_empty(reply, self.shared.rename(parent.0, name, newparent.0, newname, flags))
        })
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // A tree has no hard links: each path is its own file.
        reply.error(Errno::EPERM)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.guard("open", || match self.shared.open_file(ino.0, flags) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.guard("read", || match self.shared.read(ino.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        })
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.guard("write", || match self.shared.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        })
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Content is finalized at release (after the last close).
        reply.ok()
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.guard("release", || reply_empty(reply, self.shared.release(fh.0)))
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.guard("fsync", || reply_empty(reply, self.shared.fsync(ino.0)))
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.guard("opendir", || {
            let kind = self.shared.lock().node(ino.0).map(|n| matches!(n.kind, Kind::Dir(_)));
            match kind {
                Ok(true) => {
                    reply.opened(FileHandle(self.shared.open_listing()), FopenFlags::empty())
                }
                Ok(false) => reply.error(Errno::ENOTDIR),
                Err(e) => reply.error(e),
            }
        })
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.guard("readdir", || match self.shared.listing(ino.0, fh.0, offset) {
            Ok(listing) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (child, next, kind, name) in listing.iter().skip(start) {
                    if reply.add(INodeNo(*child), *next, *kind, OsStr::from_bytes(name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        })
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.guard("releasedir", || {
            self.shared.release_listing(fh.0);
            reply.ok()
        })
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.guard("fsyncdir", || reply_empty(reply, self.shared.sync()))
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.guard("statfs", || match nix::sys::statvfs::statvfs(&self.shared.state_dir) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                NAME_LEN_MAX as u32,
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        })
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.guard("getxattr", || {
            if ino.0 != ROOT || name.as_bytes() != XATTR_REPO {
                return reply.error(Errno::NO_XATTR);
            }
            crate::fs::xattr_reply(reply, size, self.shared.repo_dir().as_os_str().as_bytes())
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.guard("listxattr", || {
            let names: &[u8] = if ino.0 == ROOT { b"user.vst.repo\0" } else { b"" };
            crate::fs::xattr_reply(reply, size, names)
        })
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP)
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        self.guard("access", || match self.shared.lock().node(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        })
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.guard("create", || {
            let writable = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
            match self.shared.create_file(req, parent.0, name, mode, umask, Some(writable)) {
                Ok((attr, fh)) => reply.created(
                    &self.ttl(),
                    &attr,
                    Generation(0),
                    FileHandle(fh.unwrap_or(0)),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(e),
            }
        })
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.guard("fallocate", || {
            reply_empty(reply, self.shared.fallocate(ino.0, offset, length, mode))
        })
    }
}
