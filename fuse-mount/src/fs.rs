//! The filesystem the kernel talks to: [`VstFs`], a `fuser::Filesystem`
//! over the inode table and the store.
//!
//! Every handler runs inside [`VstFs::guard`]: a panic (there should be
//! none) answers that one request with `EIO` and the mount goes on. The
//! locks on shared tables are never held across a read from the store;
//! a file's read window is (one lock per open inode), so that the kernel's
//! parallel reads of one file fetch each window once.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use vst::{CommitId, EntryKind, Name, read};
use vst_cas::Store;

use crate::follow::Follow;
use crate::inodes::{Content, Ino, Listing, NewChild, ROOT, Table};
use crate::kernel::{self, Attr, ReadError, Windows, errno, system_time, xattr_reply};
use crate::{ErrorLog, MountOptions, View};

/// The one extended attribute: the id of a file's content or of a
/// directory's tree, as hex.
pub(crate) const XATTR_ID: &[u8] = b"user.vst.id";

/// The filesystem of one mount.
pub(crate) struct VstFs {
    /// Replaced when the store moves to new packs ([`Follow`]); each
    /// request reads through a clone of the one it found.
    store: RwLock<Arc<dyn Store>>,
    /// How to move to a store that GC rewrote (a mount of a local
    /// repository).
    follow: Option<Follow>,
    table: RwLock<Table>,
    /// The branch heads of the `--all` view (`commits/` walks from them).
    heads: Vec<CommitId>,
    ttl: Duration,
    uid: u32,
    gid: u32,
    error_log: ErrorLog,
    /// Windows over the content read last.
    windows: Windows,
    /// Whether the kernel takes `ENOSYS` from open and opendir as "open
    /// needs no message" (FUSE_NO_OPEN_SUPPORT and
    /// FUSE_NO_OPENDIR_SUPPORT): then it stops sending opens and releases,
    /// and caches as if FOPEN_KEEP_CACHE (and FOPEN_CACHE_DIR) were set.
    /// Set once, in `init`.
    zero_message_open: bool,
    zero_message_opendir: bool,
}

impl std::fmt::Debug for VstFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VstFs").field("heads", &self.heads.len()).finish_non_exhaustive()
    }
}

/// A directory tree of names, for building the synthetic directories of
/// the `--all` view.
enum Synth {
    Dir(BTreeMap<Name, Synth>),
    Leaf(Content, SystemTime),
}

impl VstFs {
    /// The filesystem of `view`. For the `--all` view this reads each
    /// branch's head commit; one that cannot be read is logged and left out.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        view: View,
        follow: Option<Follow>,
        options: &MountOptions,
    ) -> Self {
        let mut fs = Self {
            store: RwLock::new(store),
            follow,
            table: RwLock::new(Table::new(Content::Synthetic, UNIX_EPOCH)),
            heads: Vec::new(),
            ttl: options.ttl,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            error_log: options.error_log.clone(),
            windows: Windows::default(),
            zero_message_open: false,
            zero_message_opendir: false,
        };
        match view {
            View::Tree { root, time } => {
                *fs.table.get_mut().unwrap_or_else(PoisonError::into_inner) =
                    Table::new(Content::Tree(root), time);
            }
            View::All { branches } => fs.build_all(branches),
        }
        fs
    }

    /// The store to read from: the one in use, or the one GC rewrote it
    /// into, moved to now if it holds the view ([`Follow`]).
    fn store(&self) -> Arc<dyn Store> {
        if let Some(moved) = self.follow.as_ref().and_then(|f| f.moved(&|m| self.log(m))) {
            *self.store.write().unwrap_or_else(PoisonError::into_inner) = moved;
        }
        self.store.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The root of the `--all` view: `branches/NAME` (branch names with
    /// `/` become nested directories) and `commits/`.
    fn build_all(&mut self, branches: Vec<(vst_cas::RefName, CommitId)>) {
        let mut tree = BTreeMap::new();
        let mut newest = UNIX_EPOCH;
        for (name, id) in branches {
            self.heads.push(id);
            let commit = match read::read_commit(self.store().as_ref(), id) {
                Ok(c) => c,
                Err(e) => {
                    self.log(&format!("branch {name}: commit {id}: {e}"));
                    continue;
                }
            };
            let time = system_time(commit.time);
            newest = newest.max(time);
            if !insert_branch(&mut tree, name.as_str(), Content::Tree(commit.tree), time) {
                self.log(&format!("branch {name}: its name collides with another branch's"));
            }
        }
        let mut root = BTreeMap::new();
        let name = |s: &str| Name::try_from(s).expect("a valid constant name");
        root.insert(name("branches"), Synth::Dir(tree));
        root.insert(name("commits"), Synth::Leaf(Content::Commits, newest));
        let table = self.table.get_mut().unwrap_or_else(PoisonError::into_inner);
        *table = Table::new(Content::Synthetic, newest);
        add_synthetic(table, ROOT, root, newest);
    }

    fn read_table(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_table(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one line to the error log. Never fails, never panics.
    fn log(&self, message: &str) {
        self.error_log.write(message);
    }

    fn log_read_error(&self, ino: Ino, what: &str, e: &vst::Error) {
        let path = self.read_table().path(ino);
        let mut message = format!("{path}: {what}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        self.log(&message);
    }

    /// Runs one request's handler ([`kernel::guard`]).
    fn guard(&self, op: &'static str, f: impl FnOnce()) {
        kernel::guard(&self.error_log, op, f)
    }

    /// The listing of directory `ino`, loaded from the store on first use.
    fn listing(&self, ino: Ino) -> Result<Listing, Errno> {
        let (content, time) = {
            let table = self.read_table();
            let node = table.get(ino).ok_or(Errno::ENOENT)?;
            if let Some(listing) = &node.listing {
                return Ok(listing.clone());
            }
            (node.content.clone(), node.time)
        };
        let children = match content {
            Content::Tree(id) => match read::read_tree(self.store().as_ref(), id) {
                Ok(tree) => tree
                    .entries()
                    .iter()
                    .map(|e| NewChild {
                        name: e.name.clone(),
                        content: match &e.kind {
                            EntryKind::File(f) => Content::File(*f),
                            EntryKind::Dir(t) => Content::Tree(*t),
                            EntryKind::Symlink(s) => Content::Symlink(s.clone()),
                        },
                        time,
                    })
                    .collect(),
                Err(e) => {
                    self.log_read_error(ino, &format!("reading tree {id}"), &e);
                    return Err(errno(&e));
                }
            },
            Content::Commits => self.reachable_commits(),
            Content::File(_) | Content::Symlink(_) => return Err(Errno::ENOTDIR),
            // Synthetic directories are listed when the mount is built.
            Content::Synthetic => Vec::new(),
        };
        self.write_table().set_children(ino, children).ok_or(Errno::ENOENT)
    }

    /// Every commit reachable from the branch heads, as directories named
    /// by their full id. A commit that cannot be read is logged and left
    /// out, with the history behind it (unless another path reaches it).
    fn reachable_commits(&self) -> Vec<NewChild> {
        let mut seen = HashSet::new();
        let mut stack = self.heads.clone();
        let mut out = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            match read::read_commit(self.store().as_ref(), id) {
                Ok(commit) => {
                    let name =
                        Name::try_from(id.to_string().as_str()).expect("hex is a valid name");
                    out.push(NewChild {
                        name,
                        content: Content::Tree(commit.tree),
                        time: system_time(commit.time),
                    });
                    stack.extend(commit.parents.iter().copied());
                }
                Err(e) => {
                    let mut message = format!("/commits: commit {id}: {e}");
                    if let Some(s) = std::error::Error::source(&e) {
                        message.push_str(&format!(": {s}"));
                    }
                    self.log(&message);
                }
            }
        }
        out
    }

    /// The attributes of `ino`. A directory's listing is loaded for its
    /// link count (2 + subdirectories).
    fn attr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let content = self.read_table().get(ino).ok_or(Errno::ENOENT)?.content.clone();
        let is_dir = content.is_dir();
        let listing = if is_dir { Some(self.listing(ino)?) } else { None };
        if let Content::File(f) = content {
            // The size given to the kernel is the size every read serves:
            // a file whose blob disagrees cannot be opened for a prefix.
            self.check_len(ino, &f)?;
        }
        let table = self.read_table();
        let node = table.get(ino).ok_or(Errno::ENOENT)?;
        let (kind, perm, size, nlink) = match (&node.content, &listing) {
            (Content::File(f), _) => {
                (FileType::RegularFile, if f.executable { 0o755 } else { 0o644 }, f.size, 1)
            }
            (Content::Symlink(s), _) => (FileType::Symlink, 0o777, s.as_bytes().len() as u64, 1),
            (_, Some(l)) => {
                (FileType::Directory, 0o755, l.children.len() as u64, l.subdirs.saturating_add(2))
            }
            (_, None) => return Err(Errno::EIO),
        };
        Ok(self.file_attr(ino, kind, perm, size, nlink, node.time))
    }

    /// Attributes as this view shows them: the mounting user's, every time
    /// the commit's.
    fn file_attr(
        &self,
        ino: Ino,
        kind: FileType,
        perm: u16,
        size: u64,
        nlink: u32,
        time: SystemTime,
    ) -> FileAttr {
        let (uid, gid, nlink) = (self.uid, self.gid, u64::from(nlink));
        let (atime, mtime, ctime) = (time, time, time);
        Attr { ino, kind, perm, size, nlink, uid, gid, rdev: 0, atime, mtime, ctime }.to_fuse()
    }

    fn kind(&self, ino: Ino) -> FileType {
        match self.read_table().get(ino).map(|n| &n.content) {
            Some(Content::File(_)) => FileType::RegularFile,
            Some(Content::Symlink(_)) => FileType::Symlink,
            _ => FileType::Directory,
        }
    }

    /// The entries of a directory listing from position `offset`: `.`,
    /// `..`, then the children; each with the offset of the entry after it.
    fn entries(&self, ino: Ino, offset: u64) -> Result<Vec<(Ino, u64, Vec<u8>)>, Errno> {
        let listing = self.listing(ino)?;
        let table = self.read_table();
        let parent = table.get(ino).map_or(ROOT, |n| n.parent);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let dots = [(ino, b".".to_vec()), (parent, b"..".to_vec())];
        let children = listing.children.iter().map(|&c| {
            let name = table.get(c).and_then(|n| n.name.as_ref());
            (c, name.map_or_else(Vec::new, |n| n.as_bytes().to_vec()))
        });
        Ok(dots
            .into_iter()
            .chain(children)
            .enumerate()
            .skip(start)
            .map(|(i, (c, name))| (c, i as u64 + 1, name))
            .collect())
    }

    /// The id of `ino` as hex, for `user.vst.id`: files and directories
    /// from the store have one; symlinks and made-up directories do not.
    fn id_hex(&self, ino: Ino) -> Result<Option<String>, Errno> {
        let table = self.read_table();
        Ok(match &table.get(ino).ok_or(Errno::ENOENT)?.content {
            Content::File(f) => Some(f.id.to_string()),
            Content::Tree(t) => Some(t.to_string()),
            Content::Symlink(_) | Content::Synthetic | Content::Commits => None,
        })
    }

    /// The file `ino`, its blob checked to have the size the entry records
    /// (`EIO` otherwise: never a prefix, never more than recorded).
    fn file(&self, ino: Ino) -> Result<vst::FileEntry, Errno> {
        self.file_in(self.store().as_ref(), ino)
    }

    /// [`Self::file`], checked against `store` (so that a read looks for a
    /// rewritten store once, not once per step).
    fn file_in(&self, store: &dyn Store, ino: Ino) -> Result<vst::FileEntry, Errno> {
        let file = match &self.read_table().get(ino).ok_or(Errno::ENOENT)?.content {
            Content::File(f) => *f,
            c if c.is_dir() => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        };
        self.check_len_in(store, ino, &file)?;
        Ok(file)
    }

    fn check_len(&self, ino: Ino, file: &vst::FileEntry) -> Result<(), Errno> {
        self.check_len_in(self.store().as_ref(), ino, file)
    }

    fn check_len_in(
        &self,
        store: &dyn Store,
        ino: Ino,
        file: &vst::FileEntry,
    ) -> Result<(), Errno> {
        vst::read::check_file_len(store, file).map_err(|e| {
            self.log_read_error(ino, &format!("checking the size of blob {}", file.id), &e);
            errno(&e)
        })
    }

    /// `size` bytes of file `ino` from `offset` (fewer at the end).
    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let store = self.store();
        let file = self.file_in(store.as_ref(), ino)?;
        self.windows.read(store.as_ref(), &file, offset, size).map_err(|e| {
            match &e {
                ReadError::Store { what, source } => self.log_read_error(ino, what, source),
                ReadError::Length { what, len } => {
                    let path = self.read_table().path(ino);
                    self.log(&format!("{path}: {what}: the store returned {len} bytes"));
                }
            }
            e.errno()
        })
    }
}

/// Adds `name` (split at `/`) under `tree`; false if it collides with a
/// branch already there (`a` and `a/b` cannot both be directories' names).
fn insert_branch(
    tree: &mut BTreeMap<Name, Synth>,
    name: &str,
    content: Content,
    time: SystemTime,
) -> bool {
    let Some((first, rest)) =
        name.split_once('/').map_or(Some((name, None)), |(a, b)| Some((a, Some(b))))
    else {
        return false;
    };
    let Ok(first) = Name::try_from(first) else { return false };
    match rest {
        None => {
            if tree.contains_key(&first) {
                return false;
            }
            tree.insert(first, Synth::Leaf(content, time));
            true
        }
        Some(rest) => match tree.entry(first).or_insert_with(|| Synth::Dir(BTreeMap::new())) {
            Synth::Dir(sub) => insert_branch(sub, rest, content, time),
            Synth::Leaf(..) => false,
        },
    }
}

/// Gives `parent` the children in `tree`, recursively (bounded by the
/// length of a branch name).
fn add_synthetic(table: &mut Table, parent: Ino, tree: BTreeMap<Name, Synth>, time: SystemTime) {
    let mut dirs = Vec::new();
    let children = tree
        .into_iter()
        .map(|(name, synth)| match synth {
            Synth::Leaf(content, time) => NewChild { name, content, time },
            Synth::Dir(sub) => {
                dirs.push((name.clone(), sub));
                NewChild { name, content: Content::Synthetic, time }
            }
        })
        .collect();
    let _ = table.set_children(parent, children);
    for (name, sub) in dirs {
        if let Some(ino) = table.child(parent, name.as_bytes()) {
            add_synthetic(table, ino, sub, time);
        }
    }
}

/// Every write-type request: the mount is read-only.
const READ_ONLY: Errno = Errno::EROFS;

impl Filesystem for VstFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each capability on its own: one the kernel lacks is skipped.
        for wanted in [
            // Attributes with the listing: one request per directory
            // batch instead of one lookup per entry.
            InitFlags::FUSE_DO_READDIRPLUS,
            // Link targets in the page cache.
            InitFlags::FUSE_CACHE_SYMLINKS,
            // Lookups and listings of one directory in parallel.
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            let _ = config.add_capabilities(wanted);
        }
        let capabilities = config.capabilities();
        self.zero_message_open = capabilities.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.zero_message_opendir = capabilities.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        // As much readahead as the kernel allows (it refuses more than it
        // offered, and says how much that is).
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.guard("lookup", || {
            if let Err(e) = self.listing(parent.0) {
                return reply.error(e);
            }
            let child = self.read_table().child(parent.0, name.as_bytes());
            match child {
                Some(ino) => match self.attr(ino) {
                    Ok(attr) => reply.entry_with_ttls(&self.ttl, &self.ttl, &attr, Generation(0)),
                    Err(e) => reply.error(e),
                },
                // A negative entry the kernel may cache as long as any
                // other: nothing will ever appear here.
                None => {
                    let attr = self.file_attr(0, FileType::RegularFile, 0, 0, 0, UNIX_EPOCH);
                    reply.entry_with_ttls(&self.ttl, &self.ttl, &attr, Generation(0))
                }
            }
        })
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.guard("getattr", || match self.attr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.guard("readlink", || {
            let target = match &self.read_table().get(ino.0).map(|n| &n.content) {
                Some(Content::Symlink(s)) => Ok(s.clone()),
                Some(_) => Err(Errno::EINVAL),
                None => Err(Errno::ENOENT),
            };
            match target {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(e),
            }
        })
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.guard("open", || {
            if flags.acc_mode() != OpenAccMode::O_RDONLY {
                return reply.error(READ_ONLY);
            }
            if let Err(e) = self.file(ino.0) {
                return reply.error(e);
            }
            if self.zero_message_open {
                // Opening costs a round trip per file (and a release per
                // close): this answer tells the kernel to stop asking, and
                // to keep pages cached as with FOPEN_KEEP_CACHE. With an
                // open, a release and a flush per file, a warm `tar` of the
                // Python library took 2.2 times as long as on disk; with
                // none of them, about as long.
                reply.error(Errno::ENOSYS)
            } else {
                // The content never changes: keep the pages cached from
                // one open to the next.
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
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
        self.guard("read", || match VstFs::read(self, ino.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
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
        // Nothing to flush. ENOSYS, not success: the kernel then stops
        // sending a flush on every close (a round trip each; 9 µs a close
        // instead of 3 in a warm `tar` of the Python library).
        reply.error(Errno::ENOSYS)
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // As for flush: the kernel takes ENOSYS as "nothing to sync",
        // answers success, and asks no more.
        reply.error(Errno::ENOSYS)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.guard("opendir", || {
            let is_dir = self.read_table().get(ino.0).map(|n| n.content.is_dir());
            match is_dir {
                // As for files: no message per open if the kernel can do
                // without, and then it caches listings as below.
                Some(true) if self.zero_message_opendir => reply.error(Errno::ENOSYS),
                // Listings never change: the kernel may cache them and keep
                // them from one open to the next.
                Some(true) => reply.opened(
                    FileHandle(0),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                ),
                Some(false) => reply.error(Errno::ENOTDIR),
                None => reply.error(Errno::ENOENT),
            }
        })
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.guard("readdir", || match self.entries(ino.0, offset) {
            Ok(entries) => {
                for (child, next, name) in entries {
                    if reply.add(INodeNo(child), next, self.kind(child), OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        })
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.guard("readdirplus", || match self.entries(ino.0, offset) {
            Ok(entries) => {
                for (child, next, name) in entries {
                    let (attr, ttl) = match self.attr(child) {
                        Ok(attr) => (attr, self.ttl),
                        // Listed, but not cached: the kernel looks it up
                        // again and gets the error then.
                        Err(_) => (
                            self.file_attr(child, self.kind(child), 0, 0, 1, UNIX_EPOCH),
                            Duration::ZERO,
                        ),
                    };
                    let name = OsStr::from_bytes(&name);
                    if reply.add(INodeNo(child), next, name, &ttl, &attr, Generation(0)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
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
        reply.error(Errno::ENOSYS)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.guard("statfs", || {
            // Nothing is free; the size of the view is not known without
            // reading all of it, so only the inodes seen so far are counted.
            let files = self.read_table().len() as u64;
            reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096)
        })
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.guard("getxattr", || {
            let value = match self.id_hex(ino.0) {
                Ok(Some(hex)) if name.as_bytes() == XATTR_ID => hex,
                Ok(_) => return reply.error(Errno::NO_XATTR),
                Err(e) => return reply.error(e),
            };
            xattr_reply(reply, size, value.as_bytes())
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.guard("listxattr", || {
            let names: &[u8] = match self.id_hex(ino.0) {
                Ok(Some(_)) => b"user.vst.id\0",
                Ok(None) => b"",
                Err(e) => return reply.error(e),
            };
            xattr_reply(reply, size, names)
        })
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.guard("access", || {
            if self.read_table().get(ino.0).is_none() {
                reply.error(Errno::ENOENT)
            } else if mask.contains(AccessFlags::W_OK) {
                reply.error(READ_ONLY)
            } else {
                reply.ok()
            }
        })
    }

    // Everything below would change the tree: EROFS. The kernel refuses
    // most of these itself on a read-only mount; these answer anything
    // that reaches the daemon anyway.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(READ_ONLY)
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(READ_ONLY)
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(READ_ONLY)
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(READ_ONLY)
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(READ_ONLY)
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(READ_ONLY)
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(READ_ONLY)
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(READ_ONLY)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(READ_ONLY)
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(READ_ONLY)
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
        reply.error(READ_ONLY)
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(READ_ONLY)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(READ_ONLY)
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(READ_ONLY)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vst::{RepoPath, WorkingSet};
    use vst_cas::sim::{SimFs, noise};
    use vst_cas::{Access, pack::CHUNK_LEN_MAX};

    use super::*;

    /// A filesystem over a pack store on a simulated disk that counts the
    /// bytes read, holding one 16 MiB file (`big`) and a small one.
    fn fixture() -> (SimFs, VstFs, Ino, Vec<u8>) {
        let sim = SimFs::new();
        let repo = vst::Repo::open_with(Arc::new(sim.clone()), Path::new("/r"), Access::ReadWrite)
            .unwrap();
        let content = noise(7, 16 << 20);
        let mut ws = WorkingSet::new(repo.store());
        ws.write(&RepoPath::try_from("big").unwrap(), &content).unwrap();
        ws.write(&RepoPath::try_from("small").unwrap(), b"small\n").unwrap();
        let id = repo.commit_on(&mut ws, &vst::Repo::branch("main").unwrap(), &Default::default());
        let view = View::commit(repo.store().as_ref(), id.unwrap()).unwrap();
        let options = MountOptions { error_log: ErrorLog::Discard, ..MountOptions::default() };
        let fs = VstFs::new(repo.store(), view, None, &options);
        fs.listing(ROOT).unwrap();
        let big = fs.read_table().child(ROOT, b"big").unwrap();
        (sim, fs, big, content)
    }

    #[test]
    fn a_random_read_fetches_only_the_chunks_under_it() {
        let (sim, fs, big, content) = fixture();
        for offset in [5 << 20, 9 << 20, 3 << 20] {
            let before = sim.bytes_read();
            let got = fs.read(big, offset, 4096).unwrap();
            assert_eq!(&got[..], &content[offset as usize..offset as usize + 4096]);
            let read = sim.bytes_read() - before;
            // The chunk list and at most the two chunks a range can span.
            assert!(read <= 2 * CHUNK_LEN_MAX as u64 + 64 * 1024, "{read} bytes for 4 KiB");
        }
    }

    #[test]
    fn sequential_reads_are_served_from_windows() {
        let (sim, fs, big, content) = fixture();
        let request = 256 * 1024;
        let before = sim.bytes_read();
        let mut offset = 0;
        while offset < content.len() as u64 {
            let got = fs.read(big, offset, request).unwrap();
            let end = (offset as usize + request as usize).min(content.len());
            assert!(got[..] == content[offset as usize..end], "bytes at {offset}");
            offset += got.len() as u64;
        }
        assert!(fs.read(big, offset, request).unwrap().is_empty(), "end of file");
        // Each chunk read about once: far less than once per request.
        let read = sim.bytes_read() - before;
        assert!(read < content.len() as u64 * 3 / 2, "{read} bytes read for 16 MiB");
        // Other files keep their own state; few windows are kept.
        let small = fs.read_table().child(ROOT, b"small").unwrap();
        assert_eq!(&fs.read(small, 0, 4096).unwrap()[..], b"small\n");
        assert_eq!(&fs.read(small, 2, 2).unwrap()[..], b"al");
        assert!(fs.windows.len() <= kernel::READ_WINDOWS_MAX);
        assert_eq!(fs.read(small, 0, 0).unwrap().len(), 0);
    }

    #[test]
    fn attributes_links_and_ids() {
        let (_sim, fs, big, content) = fixture();
        let attr = fs.attr(big).unwrap();
        assert_eq!((attr.size, attr.perm, attr.nlink), (content.len() as u64, 0o644, 1));
        let root = fs.attr(ROOT).unwrap();
        assert_eq!((root.kind, root.perm, root.nlink), (FileType::Directory, 0o755, 2));
        assert_eq!(fs.id_hex(big).unwrap(), Some(vst::BlobId::of(&content).to_string()));
        assert_eq!(fs.attr(999).unwrap_err(), Errno::ENOENT);
        assert_eq!(fs.listing(big).unwrap_err(), Errno::ENOTDIR);
        assert_eq!(fs.read(ROOT, 0, 10).unwrap_err(), Errno::EISDIR);
        let names: Vec<Vec<u8>> = fs.entries(ROOT, 0).unwrap().into_iter().map(|e| e.2).collect();
        assert_eq!(names, [&b"."[..], b"..", b"big", b"small"]);
        assert_eq!(fs.entries(ROOT, 3).unwrap().len(), 1, "resumes at the offset given");
        assert!(fs.entries(ROOT, u64::MAX).unwrap().is_empty());
    }
}
