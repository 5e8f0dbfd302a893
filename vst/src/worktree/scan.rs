//! Scanning the work tree against the index: what differs from the
//! index's tree, reading and hashing only files whose stat changed; the
//! whole tree, or only the paths a caller says changed.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use vst_cas::{Store, SyncAhead};

use super::index::{Index, IndexDir, IndexNode};
use super::{Progress, ProgressEvent};
use crate::error::{Error, Result};
use crate::{BlobId, EntryKind, FileEntry, Name, RepoPath};

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::WorkTreeIo { op, path: path.to_owned(), source }
}

fn unstorable<'p>(path: &'p Path) -> impl FnOnce(crate::InvalidName) -> Error + 'p {
    move |source| Error::Unstorable { path: path.to_owned(), source }
}

/// What a scan found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file, hashed.
    File(FileEntry),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A directory.
    Dir,
}

/// The metadata that says a file may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
}

impl DiskStat {
    /// The stat of `meta`.
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }

    /// Whether a file with this stat is the one the index hashed: the same
    /// stat, and not touched when the scan that took it started (a change
    /// later in the same timestamp tick would leave mtime and ctime as
    /// they were, so such a "racy" file is always read again).
    fn vouches(&self, cached: Option<DiskStat>, stamp_ns: i64) -> bool {
        cached == Some(*self) && self.mtime_ns < stamp_ns && self.ctime_ns < stamp_ns
    }
}

/// What kind of entry is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    /// A socket, FIFO or device.
    Other,
}

/// An entry's kind and stat, from `lstat`.
#[derive(Debug, Clone, Copy)]
struct Meta {
    kind: Kind,
    stat: DiskStat,
}

impl Meta {
    fn of_raw(st: &rustix::fs::Stat) -> Self {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        #[allow(clippy::unnecessary_cast)] // the field types differ between targets
        let stat = DiskStat {
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
        };
        Self { kind, stat }
    }

    fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// One path where the disk differs from the index (`HEAD`'s tree).
#[derive(Debug, Clone)]
pub struct Delta {
    /// Where.
    pub path: RepoPath,
    /// The index's entry, if any.
    pub old: Option<EntryKind>,
    /// What is on disk, if anything.
    pub new: Option<Found>,
}

impl Delta {
    /// `added`, `modified`, `deleted` or `type_changed`.
    pub fn status(&self) -> &'static str {
        match (&self.old, &self.new) {
            (None, _) => "added",
            (_, None) => "deleted",
            (Some(EntryKind::File(_)), Some(Found::File(_)))
            | (Some(EntryKind::Symlink(_)), Some(Found::Symlink(_)))
            | (Some(EntryKind::Dir(_)), Some(Found::Dir)) => "modified",
            _ => "type_changed",
        }
    }
}

/// The result of a scan.
pub struct Scan {
    /// Every path where the disk differs from the index. A directory that
    /// appeared or went away comes with everything below it.
    pub deltas: Vec<Delta>,
    /// Files read and hashed because their stat changed (or was racy),
    /// with the stat taken before reading: whether or not they differ
    /// from the index, the next scan can trust that stat for that content.
    pub hashed: Vec<(RepoPath, FileEntry, DiskStat)>,
    /// Paths skipped: sockets, FIFOs, devices.
    pub skipped: Vec<PathBuf>,
    /// New files left out for their size, and their sizes, sorted.
    pub too_large: Vec<(RepoPath, u64)>,
    /// When the scan started, on the filesystem's clock; `None` for a scan
    /// of some paths only, which vouches for nothing else (see
    /// [`Scan::refresh`]).
    pub stamp_ns: Option<i64>,
}

impl Scan {
    /// Records in `index` the stats of the files this scan hashed, wherever
    /// the index holds the content hashed, and the scan's stamp.
    pub fn refresh(&self, index: &mut Index) {
        if self.hashed.is_empty() {
            return;
        }
        index.set_stats(&self.hashed);
        // Stats taken by earlier scans stay trustworthy under a later
        // stamp: each was settled (older than its own scan's stamp) when
        // it was last trusted or taken. Not so after a scan of some paths:
        // a racy stat elsewhere was neither trusted nor taken again, so
        // the stamp stays (what it hashed counts as racy until a full scan).
        if let Some(stamp_ns) = self.stamp_ns {
            index.set_stamp(stamp_ns);
        }
    }
}

/// One thing the walk found.
enum Walked {
    /// A difference known without reading a file.
    Delta(Delta),
    /// A file to read and hash; `old` is the index's entry there.
    Hash(ToHash),
    /// A socket, FIFO or device (its path relative to the root).
    Skipped(PathBuf),
    /// A new file above the size limit, and its size: not looked at.
    TooLarge(RepoPath, u64),
}

/// Whether `name` is a repository directory's, in any letter case: never
/// part of a tree (names refuse it), so a scan skips it, ours or a nested
/// repository's, wherever it is.
pub(crate) fn is_repo_dir(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(crate::repo::REPO_DIR_NAME.as_bytes())
}

/// The ignore file's name: gitignore syntax, in any directory.
pub const IGNORE_FILE: &str = ".vstignore";

/// A file to read and hash: where, its stat, the index's entry there, and
/// its directory's descriptor when the walk opened one (then it is opened
/// relative to it, by its name, without following a link).
struct ToHash {
    path: RepoPath,
    full: PathBuf,
    /// From the walk's `lstat`; `None` for a new file the directory listing
    /// said is a regular file, stat-ed through its descriptor once open.
    stat: Option<DiskStat>,
    old: Option<EntryKind>,
    /// The file's directory, or (`from_root`) the root.
    dir: Arc<OwnedFd>,
    from_root: bool,
}

/// The directory a run of files opened from the root was last opened in
/// (its path's bytes and descriptor): files of one directory come one
/// after another, so each directory is looked up from the root once per
/// run, not once per file.
type LastDir = Option<(Vec<u8>, Arc<OwnedFd>)>;

impl ToHash {
    /// Opens the file, not following a link. A file found from the root
    /// is opened by its name in its directory, which is opened from the
    /// root refusing every symlink on the way (or taken from `last`).
    fn open(&self, last: &mut LastDir) -> Result<fs::File> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        // (Non-blocking: a FIFO put where a file was listed must not block
        // the open; reads of a regular file ignore the flag.)
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let (parent, name) = self.path.split_last_bytes().expect("a file is never the root");
        let fd = if !self.from_root || parent.is_empty() {
            rustix::fs::openat(&*self.dir, name, flags, Mode::empty())
        } else {
            let dir = match last {
                Some((path, fd)) if path[..] == *parent => Ok(fd.clone()),
                _ => {
                    let dir_flags =
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
                    rustix::fs::openat2(&*self.dir, parent, dir_flags, Mode::empty(), resolve).map(
                        |fd| {
                            let fd = Arc::new(fd);
                            *last = Some((parent.to_vec(), fd.clone()));
                            fd
                        },
                    )
                }
            };
            match dir {
                Ok(dir) => rustix::fs::openat(&*dir, name, flags, Mode::empty()),
                // A kernel before 5.6: by path, the file itself not followed.
                Err(rustix::io::Errno::NOSYS) => rustix::fs::open(&self.full, flags, Mode::empty()),
                Err(e) => Err(e),
            }
        };
        Ok(fs::File::from(fd.map_err(|e| io("read", &self.full)(e.into()))?))
    }

    /// Reads the file: whole if it is small, for the caller to hash with
    /// others; from [`STREAM_LEN_MIN`] on a piece at a time, hashed and
    /// (with `store`) stored as it is read, so memory stays bounded
    /// whatever its size. A new file not stat-ed by the walk is stat-ed
    /// here, before it is read, and left unread above `len_max`.
    ///
    /// A small file is read up to the length its stat gave, in one `read`
    /// for most (as git does): a file that grew since was changed after
    /// the scan's stamp, so its stat vouches for nothing next time.
    fn read(&self, store: Option<&dyn Store>, last: &mut LastDir, len_max: u64) -> Result<Read> {
        let mut file = self.open(last)?;
        let stat = match self.stat {
            Some(stat) => stat,
            None => {
                let st =
                    rustix::fs::fstat(&file).map_err(|e| io("inspect", &self.full)(e.into()))?;
                let meta = Meta::of_raw(&st);
                if meta.kind != Kind::File {
                    let changed = std::io::Error::other("it stopped being a file during the scan");
                    return Err(io("read", &self.full)(changed));
                }
                if meta.stat.size > len_max {
                    return Ok(Read::TooLarge(meta.stat.size));
                }
                meta.stat
            }
        };
        let executable = stat.mode & 0o100 != 0;
        if stat.size >= STREAM_LEN_MIN {
            let (id, size) = match store {
                Some(store) => {
                    let (id, size) = store.put_reader(&mut file)?;
                    (BlobId::new(id), size)
                }
                None => hash_reader(&mut file).map_err(io("read", &self.full))?,
            };
            return Ok(Read::Streamed(FileEntry { id, size, executable }, stat));
        }
        let mut content = Vec::with_capacity(usize::try_from(stat.size).unwrap_or(0));
        std::io::Read::read_to_end(&mut std::io::Read::take(file, stat.size), &mut content)
            .map_err(io("read", &self.full))?;
        Ok(Read::Whole { content, executable, stat })
    }
}

/// A file read by [`ToHash::read`], with the stat taken before reading.
enum Read {
    /// Hashed (and stored) as it was read.
    Streamed(FileEntry, DiskStat),
    /// Read whole, to hash with other files.
    Whole { content: Vec<u8>, executable: bool, stat: DiskStat },
    /// A new file above the size limit, and its size: not read.
    TooLarge(u64),
}

impl Read {
    /// Bytes it holds in memory.
    fn held(&self) -> u64 {
        match self {
            Read::Whole { content, .. } => content.len() as u64,
            Read::Streamed(..) | Read::TooLarge(_) => 0,
        }
    }
}

/// From this length on, a file is read, hashed and stored a piece at a
/// time ([`Store::put_reader`]), never held whole in memory.
pub const STREAM_LEN_MIN: u64 = 8 << 20;

/// The BLAKE3 id and length of what `reader` yields, read in pieces of
/// [`STREAM_LEN_MIN`] bytes (hashed on all cores, as a large blob is).
fn hash_reader(reader: &mut dyn std::io::Read) -> std::io::Result<(BlobId, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; STREAM_LEN_MIN as usize];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        hasher.update_rayon(&buf[..filled]);
        len += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    Ok((BlobId::new(vst_cas::ObjectId::from_bytes(*hasher.finalize().as_bytes())), len))
}

/// `.vstignore` matchers from the root down to a directory.
#[derive(Clone, Default)]
pub(crate) struct IgnoreChain {
    files: Vec<Arc<ignore::gitignore::Gitignore>>,
    /// Set below an ignored directory that is walked because the index
    /// tracks it: everything there is ignored (unless tracked), and no
    /// `.vstignore` inside can re-include it (git's rule).
    below_ignored: bool,
}

impl IgnoreChain {
    /// Whether nothing is ignored (no rules apply).
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && !self.below_ignored
    }

    /// Whether `full` is ignored: the deepest `.vstignore` with a verdict
    /// wins (a `!pattern` below can re-include what a parent excluded).
    pub(crate) fn ignored(&self, full: &Path, is_dir: bool) -> bool {
        if self.below_ignored {
            return true;
        }
        for gi in self.files.iter().rev() {
            match gi.matched(full, is_dir) {
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
                ignore::Match::None => {}
            }
        }
        false
    }

    /// The chain below the directory `dir`: this one plus `dir`'s
    /// `.vstignore` if it has one, or, if `dir` itself is ignored (walked
    /// only because the index tracks it), one that ignores everything.
    pub(crate) fn enter(&self, dir: &Path, has_ignore_file: bool) -> Result<Self> {
        if self.below_ignored {
            return Ok(self.clone());
        }
        if !self.files.is_empty() && self.ignored(dir, true) {
            return Ok(Self { files: Vec::new(), below_ignored: true });
        }
        let mut chain = self.clone();
        let file = dir.join(IGNORE_FILE);
        if has_ignore_file && file.is_file() {
            let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
            if let Some(source) = builder.add(&file) {
                return Err(Error::Ignore { path: file, source });
            }
            let gi = builder.build().map_err(|source| Error::Ignore { path: file, source })?;
            chain.files.push(Arc::new(gi));
        }
        Ok(chain)
    }
}

struct WalkCtx<'a> {
    root: &'a Path,
    /// The root, open: every directory and file below it is opened from
    /// it without following a symlink on the way.
    root_fd: Arc<OwnedFd>,
    stamp_ns: i64,
    /// A file the index does not have and larger than this is left out
    /// (see [`ScanOptions::new_file_len_max`](super::ScanOptions)).
    new_file_len_max: u64,
    out: Mutex<Vec<Walked>>,
    /// Where files to read go as the walk finds them, in runs (see
    /// [`scan`]); `None`: into `out`, read after the walk.
    queue: Option<&'a Queue<'a>>,
    /// Files found and not yet queued: fewer than a run.
    pending: Mutex<Vec<ToHash>>,
}

/// Takes a run of files to read and hash.
type Queue<'a> = dyn Fn(Vec<ToHash>) + Sync + 'a;

impl WalkCtx<'_> {
    fn emit(&self, mut found: Vec<Walked>) {
        if let Some(queue) = self.queue {
            let mut files = Vec::new();
            found = (found.into_iter())
                .filter_map(|w| match w {
                    Walked::Hash(h) => {
                        files.push(h);
                        None
                    }
                    other => Some(other),
                })
                .collect();
            if !files.is_empty() {
                // Full runs leave, the rest waits for more (a directory
                // of many files makes many runs, for all cores).
                let runs = {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    pending.append(&mut files);
                    let full = pending.len() - pending.len() % crate::PARALLEL_BATCH_RUN_LEN;
                    let rest = pending.split_off(full);
                    std::mem::replace(&mut *pending, rest)
                };
                let mut runs = runs.into_iter().peekable();
                while runs.peek().is_some() {
                    queue(runs.by_ref().take(crate::PARALLEL_BATCH_RUN_LEN).collect());
                }
            }
        }
        if !found.is_empty() {
            self.out.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
        }
    }

    /// Queues the files still pending.
    fn flush(&self) {
        if let Some(queue) = self.queue {
            let run = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
            if !run.is_empty() {
                queue(run);
            }
        }
    }
}

/// A subdirectory still to walk: its path, and the index's directory there.
type Subdir<'i> = (RepoPath, Option<&'i IndexDir>);

/// Walks the directory at `rel`, comparing it with `index` (the index's
/// directory there, if any): differences go to `ctx.out`, subdirectories
/// are walked on rayon's threads.
fn walk_dir(
    ctx: &WalkCtx<'_>,
    rel: &RepoPath,
    index: Option<&IndexDir>,
    parent_ignores: &IgnoreChain,
) -> Result<()> {
    let dir = ctx.root.join(OsStr::from_bytes(rel.as_bytes()));
    // Opened from the root refusing any symlink on the way, so a directory
    // swapped for a link during the scan is an error, never a walk
    // outside the root; entries are stat-ed relative to it.
    let opened = {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if rel.is_root() {
            rustix::fs::openat(&*ctx.root_fd, ".", flags, Mode::empty())
        } else {
            let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
            match rustix::fs::openat2(&*ctx.root_fd, rel.as_bytes(), flags, Mode::empty(), resolve)
            {
                // A kernel before 5.6: by path, the last component not
                // followed.
                Err(rustix::io::Errno::NOSYS) => rustix::fs::open(&dir, flags, Mode::empty()),
                other => other,
            }
        }
    };
    let mut listing =
        rustix::fs::Dir::new(opened.map_err(|e| io("open the directory", &dir)(e.into()))?)
            .map_err(|e| io("read the directory", &dir)(e.into()))?;
    // Names, and their types as the listing gives them.
    let mut disk: Vec<(OsString, rustix::fs::FileType)> = Vec::new();
    for entry in &mut listing {
        let entry = entry.map_err(|e| io("read the directory", &dir)(e.into()))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        if !is_repo_dir(name.as_bytes()) {
            // (a repository directory, ours or a nested one, is not)
            disk.push((name, entry.file_type()));
        }
    }
    let dir_fd = listing.fd().map_err(|e| io("read the directory", &dir)(e.into()))?;
    let has_ignore_file = disk.iter().any(|(n, _)| n.as_bytes() == IGNORE_FILE.as_bytes());
    let ignores = parent_ignores.enter(&dir, has_ignore_file)?;
    disk.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let old: &[(Name, IndexNode)] = index.map_or(&[], |d| &d.entries);

    let mut found = Vec::new();
    let mut subdirs: Vec<Subdir<'_>> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < disk.len() || j < old.len() {
        let order = match (disk.get(i), old.get(j)) {
            (Some((d, _)), Some((o, _))) => d.as_bytes().cmp(o.as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (on_disk, in_index) = match order {
            std::cmp::Ordering::Less => (Some(&disk[i]), None),
            std::cmp::Ordering::Greater => (None, Some(&old[j])),
            std::cmp::Ordering::Equal => (Some(&disk[i]), Some(&old[j])),
        };
        i += usize::from(on_disk.is_some());
        j += usize::from(in_index.is_some());
        let in_index = in_index.map(|(_, node)| node);
        let at = InDir { rel, dir: &dir, fd: dir_fd, keep: None };
        match on_disk {
            // A new file, as the listing says: stat-ed once open, so that
            // its name is looked up once, not twice (a first import of many
            // small files spent a tenth of its time in those lookups).
            Some((name, rustix::fs::FileType::RegularFile)) if in_index.is_none() => {
                visit_new_file(ctx, &at, &ignores, name, &mut found)?;
            }
            Some((name, _)) => {
                // lstat relative to the directory being read: no path
                // lookup from the root.
                let st = rustix::fs::statat(
                    dir_fd,
                    name.as_os_str(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io("inspect", &dir.join(name))(e.into()))?;
                let meta = Meta::of_raw(&st);
                visit(ctx, &at, &ignores, name, &meta, in_index, &mut found, &mut subdirs)?;
            }
            None => {
                let (name, node) = &old[j - 1];
                deleted(rel.join_unchecked(name.as_bytes()), node, &mut found);
            }
        }
    }
    ctx.emit(found);
    subdirs.par_iter().try_for_each(|(sub, index)| walk_dir(ctx, sub, *index, &ignores))
}

/// The directory an entry is in: its path in the tree and on disk, and
/// its descriptor.
struct InDir<'a> {
    rel: &'a RepoPath,
    dir: &'a Path,
    fd: std::os::fd::BorrowedFd<'a>,
    /// The descriptor files to hash keep (a hinted scan, which opens few
    /// directories); `None`: they are opened again from the root (a full
    /// scan, which must not hold a descriptor per directory).
    keep: Option<&'a Arc<OwnedFd>>,
}

/// Compares one entry on disk with the index's entry at the same path.
/// An ignored entry the index does not have is skipped; one it has stays
/// tracked (as git's rules: ignoring never drops what was committed).
#[allow(clippy::too_many_arguments)]
fn visit<'i>(
    ctx: &WalkCtx<'_>,
    at: &InDir<'_>,
    ignores: &IgnoreChain,
    name: &OsStr,
    meta: &Meta,
    old: Option<&'i IndexNode>,
    found: &mut Vec<Walked>,
    subdirs: &mut Vec<Subdir<'i>>,
) -> Result<()> {
    let (rel, dir) = (at.rel, at.dir);
    if old.is_none() && !ignores.is_empty() && ignores.ignored(&dir.join(name), meta.is_dir()) {
        return Ok(());
    }
    let kind = meta.kind;
    if kind == Kind::File {
        let stat = meta.stat;
        if let Some(IndexNode::File(_, cached)) = old
            && stat.vouches(*cached, ctx.stamp_ns)
        {
            return Ok(());
        }
    }
    // Something to report: it needs its paths.
    let full = dir.join(name);
    let path =
        Name::try_from(name.as_bytes()).and_then(|n| rel.join(&n)).map_err(unstorable(&full))?;
    if kind == Kind::Dir
        && let Some(IndexNode::Dir(d)) = old
    {
        subdirs.push((path, Some(d)));
        return Ok(());
    }
    // A type change: what was below the old directory is gone.
    if let Some(IndexNode::Dir(d)) = old {
        deleted_below(&path, d, found);
    }
    let old_kind = old.map(IndexNode::kind);
    if kind == Kind::File && old.is_none() && meta.stat.size > ctx.new_file_len_max {
        found.push(Walked::TooLarge(path, meta.stat.size));
        return Ok(());
    }
    if kind == Kind::File {
        let dir = at.keep.unwrap_or(&ctx.root_fd).clone();
        let from_root = at.keep.is_none();
        found.push(Walked::Hash(ToHash {
            path,
            full,
            stat: Some(meta.stat),
            old: old_kind,
            dir,
            from_root,
        }));
    } else if kind == Kind::Symlink {
        let target = rustix::fs::readlinkat(at.fd, name, Vec::new())
            .map_err(|e| io("read the link", &full)(e.into()))?;
        let target = target.as_bytes();
        if !matches!(&old_kind, Some(EntryKind::Symlink(t)) if t.as_bytes() == target) {
            let new = Some(Found::Symlink(target.to_vec()));
            found.push(Walked::Delta(Delta { path, old: old_kind, new }));
        }
    } else if kind == Kind::Dir {
        found.push(Walked::Delta(Delta {
            path: path.clone(),
            old: old_kind,
            new: Some(Found::Dir),
        }));
        subdirs.push((path, None));
    } else {
        if old_kind.is_some() {
            found.push(Walked::Delta(Delta { path: path.clone(), old: old_kind, new: None }));
        }
        let rel_path = PathBuf::from(OsStr::from_bytes(path.as_bytes()));
        found.push(Walked::Skipped(rel_path));
    }
    Ok(())
}

/// A regular file (by its directory's listing) the index does not have:
/// unless ignored, a file to read, stat-ed when it is opened (the size
/// limit for new files is applied then).
fn visit_new_file(
    ctx: &WalkCtx<'_>,
    at: &InDir<'_>,
    ignores: &IgnoreChain,
    name: &OsStr,
    found: &mut Vec<Walked>,
) -> Result<()> {
    let full = at.dir.join(name);
    if !ignores.is_empty() && ignores.ignored(&full, false) {
        return Ok(());
    }
    let path =
        Name::try_from(name.as_bytes()).and_then(|n| at.rel.join(&n)).map_err(unstorable(&full))?;
    found.push(Walked::Hash(ToHash {
        path,
        full,
        stat: None,
        old: None,
        dir: at.keep.unwrap_or(&ctx.root_fd).clone(),
        from_root: at.keep.is_none(),
    }));
    Ok(())
}

/// `node` at `path` is in the index but not on disk: it and everything
/// below it are deleted.
fn deleted(path: RepoPath, node: &IndexNode, found: &mut Vec<Walked>) {
    if let IndexNode::Dir(d) = node {
        deleted_below(&path, d, found);
    }
    found.push(Walked::Delta(Delta { path, old: Some(node.kind()), new: None }));
}

/// Everything below the index's directory `dir` at `path` is deleted.
fn deleted_below(path: &RepoPath, dir: &IndexDir, found: &mut Vec<Walked>) {
    dir.for_each(path, &mut |p, node| {
        found.push(Walked::Delta(Delta { path: p, old: Some(node.kind()), new: None }))
    });
}

/// What a walk found: the differences known without reading a file, and
/// the files to read.
pub struct Walk {
    deltas: Vec<Delta>,
    to_hash: Vec<ToHash>,
    skipped: Vec<PathBuf>,
    too_large: Vec<(RepoPath, u64)>,
    stamp_ns: Option<i64>,
    /// The size limit for new files, for those the walk did not stat.
    new_file_len_max: u64,
}

/// Leaves out the new directories whose only content is files left out for
/// their size: they would be committed empty, and then show as a change
/// at every status. A new directory with anything else below it (an
/// empty subdirectory included) stays.
fn drop_dirs_only_left_out(deltas: &mut Vec<Delta>, too_large: &[(RepoPath, u64)]) {
    if too_large.is_empty() {
        return;
    }
    let below = |dir: &RepoPath, p: &RepoPath| p != dir && p.starts_with(dir);
    let mut candidates: Vec<usize> = (0..deltas.len())
        .filter(|&i| {
            let d = &deltas[i];
            d.old.is_none()
                && matches!(d.new, Some(Found::Dir))
                && too_large.iter().any(|(p, _)| below(&d.path, p))
        })
        .collect();
    // Deepest first: a directory goes when nothing below it stays.
    candidates.sort_by_key(|&i| std::cmp::Reverse(deltas[i].path.depth()));
    let mut keep = vec![true; deltas.len()];
    for i in candidates {
        let dir = &deltas[i].path;
        let stays = deltas.iter().zip(&keep).any(|(d, k)| *k && below(dir, &d.path));
        keep[i] = stays;
    }
    let mut keep = keep.into_iter();
    deltas.retain(|_| keep.next().unwrap_or(true));
}

/// The filesystem's idea of "now": the mtime of a file written now in
/// `repo_dir` (the system clock may differ from the one that stamps files,
/// in source and in granularity). `i64::MIN` if it cannot be had, which
/// makes every stat racy: slower, never wrong.
pub(crate) fn fs_now(repo_dir: &Path) -> i64 {
    let stamp = repo_dir.join(format!("scan-stamp-{}", std::process::id()));
    let stamp_ns = fs::write(&stamp, b"")
        .and_then(|()| fs::metadata(&stamp))
        .map(|m| DiskStat::of(&m).mtime_ns)
        .unwrap_or(i64::MIN);
    let _ = fs::remove_file(&stamp);
    stamp_ns
}

/// The filesystem's "now" once it is later than `ns`: waits (a
/// millisecond at a time, at most [`CLOCK_WAIT_MS_MAX`]) for the clock
/// that stamps files to pass `ns`, so that stats taken at `ns` can be
/// trusted under the stamp returned (files written in the same tick as the
/// stamp would count as racy and be read again). If the clock does not
/// move in time, the stamp returned is simply not later: slower, never
/// wrong.
pub(crate) fn fs_now_after(repo_dir: &Path, ns: i64) -> i64 {
    let mut now = fs_now(repo_dir);
    for _ in 0..CLOCK_WAIT_MS_MAX {
        if now > ns {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        now = fs_now(repo_dir);
    }
    now
}

/// The longest [`fs_now_after`] waits, in milliseconds: a few ticks of the
/// coarsest clock Linux stamps files with (HZ=100, 10 ms).
const CLOCK_WAIT_MS_MAX: u32 = 50;

/// Walks the work tree at `root` (whose repository directory is
/// `repo_dir`) and compares it with `index`, reading no file: everything,
/// or with `changed` only those paths (and what is below them), looking at
/// nothing else. A path in `changed` that did not change costs a `lstat`;
/// a path that changed but is not in `changed` (nor below one) is not
/// seen.
pub fn walk(
    root: &Path,
    repo_dir: &Path,
    index: &Index,
    changed: Option<&[RepoPath]>,
    new_file_len_max: Option<u64>,
) -> Result<Walk> {
    walk_queued(root, repo_dir, index, changed, new_file_len_max, None)
}

/// [`walk`], handing the files to read to `queue` as they are found
/// (then the walk's `to_hash` is empty).
fn walk_queued(
    root: &Path,
    repo_dir: &Path,
    index: &Index,
    changed: Option<&[RepoPath]>,
    new_file_len_max: Option<u64>,
    queue: Option<&Queue<'_>>,
) -> Result<Walk> {
    // A full scan takes its stamp before anything is looked at; a scan of
    // some paths vouches for nothing it did not look at, and needs none.
    let stamp_ns = changed.is_none().then(|| fs_now(repo_dir));
    // Bound by one lstat per entry: directories are walked on all cores,
    // each entry is stat-ed relative to its directory and compared with the
    // index where it is found; only differences leave the walk.
    let root_fd = Arc::new(open_dir_path(root)?);
    let ctx = WalkCtx {
        root,
        root_fd,
        stamp_ns: index.stamp_ns,
        new_file_len_max: new_file_len_max.unwrap_or(u64::MAX),
        out: Mutex::new(Vec::new()),
        queue,
        pending: Mutex::new(Vec::new()),
    };
    match changed {
        None => walk_dir(&ctx, &RepoPath::root(), Some(&index.root), &IgnoreChain::default())?,
        Some(paths) => walk_paths(&ctx, index, paths)?,
    }
    ctx.flush();
    let walked = ctx.out.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Walk {
        deltas: Vec::new(),
        to_hash: Vec::new(),
        skipped: Vec::new(),
        too_large: Vec::new(),
        stamp_ns,
        new_file_len_max: ctx.new_file_len_max,
    };
    for w in walked {
        match w {
            Walked::Delta(d) => out.deltas.push(d),
            Walked::Hash(h) => out.to_hash.push(h),
            Walked::Skipped(rel) => out.skipped.push(rel),
            Walked::TooLarge(path, len) => out.too_large.push((path, len)),
        }
    }
    Ok(out)
}

/// Compares the paths in `changed` with the index.
///
/// Where each path is, is first found in the index, in memory: the
/// deepest directory on the way that the index has. That directory is
/// opened from the root in one `openat2` that refuses any symlink on the
/// way (`RESOLVE_NO_SYMLINKS`), and the entry below it (the path, or the
/// first directory on the way the index lacks) is compared. Ignore files
/// on the way are read where the index has one; an ignore file the list
/// names changes what is ignored below it, so its whole directory is
/// looked at. If the directory cannot be opened so (something on the way is no
/// longer a directory, or the kernel lacks `openat2`), the path is walked
/// one component at a time instead ([`walk_path_slowly`]), and the first
/// directory on the way that changed is what is compared. A path below
/// another one given, or below a directory that changed, is covered by it.
fn walk_paths(ctx: &WalkCtx<'_>, index: &Index, changed: &[RepoPath]) -> Result<()> {
    let mut paths: Vec<&RepoPath> = changed.iter().filter(|p| !p.is_root()).collect();
    if paths.len() < changed.len() {
        // The root itself: everything.
        return walk_dir(ctx, &RepoPath::root(), Some(&index.root), &IgnoreChain::default());
    }
    // An ignore file that changed changes what is ignored everywhere
    // below its directory: that whole directory is looked at.
    let dirs_of_ignore_files: Vec<RepoPath> = paths
        .iter()
        .filter_map(|p| p.split_last())
        .filter(|(_, name)| *name == IGNORE_FILE.as_bytes())
        .map(|(dir, _)| dir)
        .collect();
    if dirs_of_ignore_files.iter().any(RepoPath::is_root) {
        return walk_dir(ctx, &RepoPath::root(), Some(&index.root), &IgnoreChain::default());
    }
    paths.retain(|p| p.split_last().is_none_or(|(_, name)| name != IGNORE_FILE.as_bytes()));
    paths.extend(dirs_of_ignore_files.iter());
    // Parents before children, so that a covered path follows the path
    // that covers it.
    paths.sort_by(|a, b| a.components().cmp(b.components()));
    paths.dedup();
    let mut walk = PathWalk {
        ctx,
        root: Arc::new(open_dir_path(ctx.root)?),
        chains: std::collections::HashMap::new(),
        slow: std::collections::HashMap::new(),
        found: Vec::new(),
        subdirs: Vec::new(),
    };
    // In memory first: for each path, the deepest directory on the way the
    // index has (its parent, or the first directory the index lacks is the
    // entry to compare), grouped by that directory.
    let mut groups: Vec<Group<'_, '_>> = Vec::new();
    let mut group_of: std::collections::HashMap<RepoPath, usize> = std::collections::HashMap::new();
    let mut slow_paths: Vec<&RepoPath> = Vec::new();
    // Ignore files are read where the index has one (a new one is in a
    // directory the list named, and that directory is walked whole).
    // Names sort by bytes, so `.vstignore` comes before most names: a
    // directory whose first entry sorts after it has none, known from one
    // entry instead of a search through cold memory.
    let has_ignore_file = |dir: &IndexDir| {
        let ignore = IGNORE_FILE.as_bytes();
        dir.entries.first().is_some_and(|(first, _)| first.as_bytes() <= ignore)
            && dir.get(ignore).is_some()
    };
    let root_chain = IgnoreChain::default().enter(ctx.root, has_ignore_file(&index.root))?;
    let mut covered: Option<RepoPath> = None;
    for path in paths {
        if covered.as_ref().is_some_and(|c| path.starts_with(c)) {
            continue;
        }
        let depth = path.depth();
        let mut index_dir = &index.root;
        let mut parent = RepoPath::root();
        // The ignore chain down the way (a directory the index has is
        // walked through, ignored or not).
        let mut chain = root_chain.clone();
        for component in path.components().take(depth - 1) {
            match index_dir.get(component) {
                Some(IndexNode::Dir(d)) if !is_repo_dir(component) => {
                    index_dir = d;
                    parent = parent.join_unchecked(component);
                }
                _ => break,
            }
            chain = walk.step(chain, &parent, has_ignore_file(index_dir))?;
        }
        let name = path.components().nth(parent.depth()).expect("the parent is above the path");
        let target = parent.join_unchecked(name);
        if covered.as_ref().is_some_and(|c| target.starts_with(c)) {
            continue;
        }
        covered = Some(target);
        let g = *group_of.entry(parent.clone()).or_insert_with(|| {
            groups.push(Group { dir: parent.clone(), chain, entries: Vec::new() });
            groups.len() - 1
        });
        groups[g].entries.push((path, name, index_dir.get(name)));
    }
    // Then on disk: each directory opened from the root in one step, its
    // entries compared; on all cores when there are many.
    let open_and_compare = |group| open_and_compare(ctx, &walk.root, group);
    let results: Vec<GroupResult<'_, '_>> = if groups.len() <= HASH_SERIAL_FILES_MAX {
        groups.iter().map(open_and_compare).collect::<Result<_>>()?
    } else {
        groups.par_iter().map(open_and_compare).collect::<Result<_>>()?
    };
    for result in results {
        match result {
            GroupResult::Compared { found, pending, chain } => {
                walk.found.extend(found);
                walk.subdirs.extend(pending.into_iter().map(|(p, d)| (p, d, chain.clone())));
            }
            GroupResult::Slow(paths) => slow_paths.extend(paths),
        }
    }
    // Something on the way changed: down one component at a time.
    slow_paths.sort_by(|a, b| a.components().cmp(b.components()));
    let mut covered: Option<RepoPath> = None;
    for path in slow_paths {
        if covered.as_ref().is_some_and(|c| path.starts_with(c)) {
            continue;
        }
        covered = Some(walk_path_slowly(&mut walk, index, path)?);
    }
    let PathWalk { found, subdirs, .. } = walk;
    ctx.emit(found);
    subdirs
        .par_iter()
        .try_for_each(|(sub, index, parent_chain)| walk_dir(ctx, sub, *index, parent_chain))
}

/// The paths of [`walk_paths`] below one directory the index has.
struct Group<'p, 'i> {
    dir: RepoPath,
    chain: IgnoreChain,
    /// Each path, the name of the entry of `dir` to compare, and the
    /// index's entry there.
    entries: Vec<(&'p RepoPath, &'p [u8], Option<&'i IndexNode>)>,
}

/// What comparing one [`Group`] gave.
enum GroupResult<'p, 'i> {
    Compared {
        found: Vec<Walked>,
        pending: Vec<Subdir<'i>>,
        chain: IgnoreChain,
    },
    /// The directory is not a directory all the way down from the root.
    Slow(Vec<&'p RepoPath>),
}

/// Opens the directory of `group` from `root` in one step and compares
/// its entries.
fn open_and_compare<'p, 'i>(
    ctx: &WalkCtx<'_>,
    root: &Arc<OwnedFd>,
    group: &Group<'p, 'i>,
) -> Result<GroupResult<'p, 'i>> {
    let Some(fd) = open_beneath(root, &group.dir) else {
        return Ok(GroupResult::Slow(group.entries.iter().map(|e| e.0).collect()));
    };
    let mut found = Vec::new();
    let mut pending = Vec::new();
    for (_, name, node) in &group.entries {
        compare(ctx, &group.dir, &fd, &group.chain, name, *node, &mut found, &mut pending)?;
    }
    Ok(GroupResult::Compared { found, pending, chain: group.chain.clone() })
}

/// The directory `dir` opened from `root` in one `openat2` that refuses
/// every symlink on the way; `None` if something on the way is not a
/// directory (or the kernel has no `openat2`).
fn open_beneath(root: &Arc<OwnedFd>, dir: &RepoPath) -> Option<Arc<OwnedFd>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    if dir.is_root() {
        return Some(root.clone());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    rustix::fs::openat2(&**root, dir.as_bytes(), flags, Mode::empty(), resolve).ok().map(Arc::new)
}

/// Compares the entry `name` of the directory `parent` (open as `fd`)
/// with the index's `node`.
#[allow(clippy::too_many_arguments)]
fn compare<'i>(
    ctx: &WalkCtx<'_>,
    parent: &RepoPath,
    fd: &Arc<OwnedFd>,
    chain: &IgnoreChain,
    name: &[u8],
    node: Option<&'i IndexNode>,
    found: &mut Vec<Walked>,
    pending: &mut Vec<Subdir<'i>>,
) -> Result<()> {
    let name = OsStr::from_bytes(name);
    if is_repo_dir(name.as_bytes()) {
        return Ok(());
    }
    let dir = ctx.root.join(OsStr::from_bytes(parent.as_bytes()));
    match rustix::fs::statat(&**fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let at = InDir { rel: parent, dir: &dir, fd: fd.as_fd(), keep: Some(fd) };
            visit(ctx, &at, chain, name, &Meta::of_raw(&st), node, found, pending)
        }
        Err(rustix::io::Errno::NOENT) => {
            if let Some(node) = node {
                deleted(parent.join_unchecked(name.as_bytes()), node, found);
            }
            Ok(())
        }
        Err(e) => Err(io("inspect", &dir.join(name))(e.into())),
    }
}

/// The state of [`walk_paths`]: directories opened, ignore chains built.
struct PathWalk<'c, 'i> {
    ctx: &'c WalkCtx<'c>,
    root: Arc<OwnedFd>,
    /// Ignore chains of the directories stepped through, once computed.
    chains: std::collections::HashMap<RepoPath, IgnoreChain>,
    /// Directories opened one component at a time; `None`: not one.
    slow: std::collections::HashMap<RepoPath, Option<OpenDir>>,
    found: Vec<Walked>,
    subdirs: Vec<(RepoPath, Option<&'i IndexDir>, IgnoreChain)>,
}

impl<'i> PathWalk<'_, 'i> {
    /// The ignore chain of the directory `dir` (one the index has, so
    /// tracked even if ignored) from its parent's `chain`, with its own
    /// ignore file read (once per directory) if it has one.
    fn step(
        &mut self,
        chain: IgnoreChain,
        dir: &RepoPath,
        has_ignore_file: bool,
    ) -> Result<IgnoreChain> {
        if chain.is_empty() && !has_ignore_file {
            return Ok(chain);
        }
        if let Some(known) = self.chains.get(dir) {
            return Ok(known.clone());
        }
        let full = self.ctx.root.join(OsStr::from_bytes(dir.as_bytes()));
        let entered = chain.enter(&full, has_ignore_file)?;
        self.chains.insert(dir.clone(), entered.clone());
        Ok(entered)
    }
}

/// [`walk_paths`] for one path whose directory could not be opened in one
/// step: down from the root one component at a time, each directory opened
/// relative to its parent with `O_NOFOLLOW`, until a directory on the way
/// is not a directory on both sides (or is a repository): that
/// one is compared. Returns the path compared.
fn walk_path_slowly<'i>(
    walk: &mut PathWalk<'_, 'i>,
    index: &'i Index,
    path: &RepoPath,
) -> Result<RepoPath> {
    if !walk.slow.contains_key(&RepoPath::root()) {
        let chain = IgnoreChain::default().enter(walk.ctx.root, has_ignore_file(&walk.root))?;
        let root = OpenDir { fd: walk.root.clone(), chain };
        walk.slow.insert(RepoPath::root(), Some(root));
    }
    let mut parent = RepoPath::root();
    let mut index_dir = Some(&index.root);
    let depth = path.depth();
    for (i, component) in path.components().enumerate() {
        let here = parent.join_unchecked(component);
        let node = index_dir.and_then(|d| d.get(component));
        if i + 1 < depth {
            if !walk.slow.contains_key(&here) {
                let opened = through_dir(walk.ctx, &parent, &walk.slow[&parent], component, node)?;
                walk.slow.insert(here.clone(), opened);
            }
            if walk.slow[&here].is_some() {
                index_dir = match node {
                    Some(IndexNode::Dir(d)) => Some(d),
                    _ => None,
                };
                parent = here;
                continue;
            }
        }
        let open = walk.slow[&parent].as_ref().expect("a parent on the way is a directory");
        let (fd, chain) = (open.fd.clone(), open.chain.clone());
        let mut pending = Vec::new();
        compare(walk.ctx, &parent, &fd, &chain, component, node, &mut walk.found, &mut pending)?;
        walk.subdirs.extend(pending.into_iter().map(|(p, d)| (p, d, chain.clone())));
        return Ok(here);
    }
    unreachable!("the loop returns at the last component")
}

/// A directory on the way to a changed path: its descriptor and ignore
/// chain.
struct OpenDir {
    fd: Arc<OwnedFd>,
    chain: IgnoreChain,
}

fn open_dir_path(path: &Path) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io("open the directory", path)(e.into()))
}

/// Whether the directory open as `fd` holds an ignore file (a cheap
/// lookup relative to it; the file is read only if it is there).
fn has_ignore_file(fd: &std::os::fd::OwnedFd) -> bool {
    rustix::fs::statat(fd, IGNORE_FILE, rustix::fs::AtFlags::empty()).is_ok()
}

/// Opens the entry `name` of the directory `parent` if it is a directory
/// on disk (not a link) and in the index (`node`), and not a repository.
fn through_dir(
    ctx: &WalkCtx<'_>,
    parent: &RepoPath,
    parent_dir: &Option<OpenDir>,
    name: &[u8],
    node: Option<&IndexNode>,
) -> Result<Option<OpenDir>> {
    use rustix::fs::{Mode, OFlags};
    let Some(parent_dir) = parent_dir else { return Ok(None) };
    if !matches!(node, Some(IndexNode::Dir(_))) || is_repo_dir(name) {
        return Ok(None);
    }
    let full = ctx.root.join(OsStr::from_bytes(parent.as_bytes())).join(OsStr::from_bytes(name));
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&parent_dir.fd, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(None);
        }
        Err(e) => return Err(io("open the directory", &full)(e.into())),
    };
    // (A directory the index has is tracked, ignored or not.)
    let chain = parent_dir.chain.enter(&full, has_ignore_file(&fd))?;
    Ok(Some(OpenDir { fd: Arc::new(fd), chain }))
}

impl Walk {
    /// Reads and hashes, on all cores, the files whose stat did not vouch
    /// for the index's content, storing the content of those that differ
    /// from it when `store` is given (synced ahead as it fills, see
    /// [`SyncAhead`]). Reports progress to `progress`. ([`scan`] does the
    /// walk and this at once.)
    pub fn hash(
        mut self,
        store: Option<&dyn Store>,
        progress: Option<Progress<'_>>,
    ) -> Result<Scan> {
        let to_hash = std::mem::take(&mut self.to_hash);
        let hasher = Hasher::new(store, progress, self.new_file_len_max);
        hasher.total.store(to_hash.len() as u64, Ordering::Relaxed);
        let hash_all = |ahead: Option<&SyncAhead<'_, '_>>| -> Result<Vec<Hashed>> {
            // A few files are read on this thread: waking a worker costs
            // more than reading and hashing a small file.
            if to_hash.len() <= HASH_SERIAL_FILES_MAX {
                return hasher.run(to_hash, ahead);
            }
            // (A file the walk did not stat counts as empty here; a run
            // bounds what it holds as it reads.)
            let runs = crate::blob_hash::runs(to_hash, |h| h.stat.map_or(0, |s| s.size));
            let runs: Vec<Vec<_>> =
                runs.into_par_iter().map(|run| hasher.run(run, ahead)).collect::<Result<_>>()?;
            Ok(runs.into_iter().flatten().collect())
        };
        let hashed = with_sync_ahead(store, hash_all)?;
        Ok(self.finish(hashed))
    }

    /// The scan: the walk's differences with what reading files found.
    fn finish(self, results: Vec<Hashed>) -> Scan {
        let Walk { mut deltas, to_hash, mut skipped, mut too_large, stamp_ns, .. } = self;
        debug_assert!(to_hash.is_empty(), "every file was read");
        let mut hashed = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Hashed::File { delta, path, file, stat } => {
                    deltas.extend(delta);
                    hashed.push((path, file, stat));
                }
                Hashed::TooLarge(path, len) => too_large.push((path, len)),
            }
        }
        deltas.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        skipped.sort();
        too_large.sort();
        drop_dirs_only_left_out(&mut deltas, &too_large);
        Scan { deltas, hashed, skipped, too_large, stamp_ns }
    }
}

/// Runs `f` with the store synced ahead ([`SyncAhead`]) when there is one.
/// A failed sync ahead is the error returned: it is the cause of what
/// failed after it.
fn with_sync_ahead<R>(
    store: Option<&dyn Store>,
    f: impl for<'s, 'e> FnOnce(Option<&SyncAhead<'s, 'e>>) -> Result<R>,
) -> Result<R> {
    match store {
        Some(store) => {
            let (result, synced) = SyncAhead::run(store, |ahead| f(Some(ahead)));
            synced?;
            result
        }
        None => f(None),
    }
}

/// Walks as [`walk`] does and reads the files it finds as
/// [`Walk::hash`] does. A full scan does both at once: runs of 64 files go
/// to rayon's threads as the walk finds them, so reading starts with the
/// first directory and both cores stay busy until the last file (a first
/// import of 50,000 small files walked for 27 ms before reading any). A
/// scan of named paths walks, then reads.
#[allow(clippy::too_many_arguments)]
pub fn scan(
    root: &Path,
    repo_dir: &Path,
    index: &Index,
    changed: Option<&[RepoPath]>,
    new_file_len_max: Option<u64>,
    store: Option<&dyn Store>,
    progress: Option<Progress<'_>>,
) -> Result<Scan> {
    if changed.is_some() {
        // Named paths: little walk to overlap, and a few files are read on
        // this thread without waking rayon's.
        return walk(root, repo_dir, index, changed, new_file_len_max)?.hash(store, progress);
    }
    let hasher = Hasher::new(store, progress, new_file_len_max.unwrap_or(u64::MAX));
    let walk_and_hash = |ahead: Option<&SyncAhead<'_, '_>>| -> Result<(Walk, Vec<Hashed>)> {
        let hashed = Mutex::new(Vec::new());
        let failed = Mutex::new(None);
        let walk = rayon::scope(|scope| {
            let (hasher, hashed, failed) = (&hasher, &hashed, &failed);
            let queue = move |run: Vec<ToHash>| {
                hasher.total.fetch_add(run.len() as u64, Ordering::Relaxed);
                scope.spawn(move |_| {
                    // (Once a run failed, the scan fails: nothing more is
                    // read.)
                    if failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                        return;
                    }
                    match hasher.run(run, ahead) {
                        Ok(files) => hashed.lock().unwrap_or_else(|e| e.into_inner()).extend(files),
                        Err(e) => {
                            failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        }
                    }
                });
            };
            walk_queued(root, repo_dir, index, changed, new_file_len_max, Some(&queue))
        });
        // (The walk's own error first: a read may have failed because of
        // what the walk failed on.)
        let walk = walk?;
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok((walk, hashed.into_inner().unwrap_or_else(|e| e.into_inner())))
    };
    let (walk, hashed) = with_sync_ahead(store, walk_and_hash)?;
    Ok(walk.finish(hashed))
}

/// Reads, hashes and (with a store) stores runs of files, from any thread;
/// counts them for progress.
struct Hasher<'a> {
    store: Option<&'a dyn Store>,
    progress: Option<Progress<'a>>,
    new_file_len_max: u64,
    /// Files to read known so far, and read.
    total: AtomicU64,
    done: AtomicU64,
}

impl<'a> Hasher<'a> {
    fn new(store: Option<&'a dyn Store>, progress: Option<Progress<'a>>, len_max: u64) -> Self {
        let (total, done) = (AtomicU64::new(0), AtomicU64::new(0));
        Self { store, progress, new_file_len_max: len_max, total, done }
    }

    /// Reads a run of files, hashes those read whole side by side in SIMD
    /// lanes (`crate::hash_blobs`), and stores those that differ from the
    /// index in one batch; again whenever what it holds read reaches
    /// `RUN_LEN_MAX` (the walk does not know every file's size). Reports
    /// what it put to `ahead`.
    fn run(&self, run: Vec<ToHash>, ahead: Option<&SyncAhead<'_, '_>>) -> Result<Vec<Hashed>> {
        let same =
            |h: &ToHash, file: &FileEntry| matches!(&h.old, Some(EntryKind::File(f)) if f == file);
        let mut out = Vec::with_capacity(run.len());
        let mut last = None;
        let mut run = run.into_iter().peekable();
        while run.peek().is_some() {
            let mut part: Vec<(ToHash, Read)> = Vec::new();
            let mut held = 0;
            while held < crate::blob_hash::RUN_LEN_MAX
                && let Some(h) = run.next()
            {
                let read = h.read(self.store, &mut last, self.new_file_len_max)?;
                held += read.held();
                part.push((h, read));
            }
            let whole: Vec<&[u8]> = part
                .iter()
                .filter_map(|(_, r)| match r {
                    Read::Whole { content, .. } => Some(content.as_slice()),
                    _ => None,
                })
                .collect();
            let mut ids = crate::hash_blobs(&whole).into_iter();
            let mut files: Vec<Option<(FileEntry, DiskStat)>> = part
                .iter()
                .map(|(_, r)| match r {
                    Read::Streamed(file, stat) => Some((*file, *stat)),
                    Read::Whole { content, executable, stat } => {
                        let id = ids.next().expect("one id per file read whole");
                        let size = content.len() as u64;
                        Some((FileEntry { id, size, executable: *executable }, *stat))
                    }
                    Read::TooLarge(_) => None,
                })
                .collect();
            if let Some(store) = self.store {
                let objects: Vec<(vst_cas::ObjectId, &[u8])> = (part.iter().zip(&files))
                    .filter_map(|((h, r), file)| match (r, file) {
                        (Read::Whole { content, .. }, Some((file, _))) if !same(h, file) => {
                            Some((file.id.object_id(), content.as_slice()))
                        }
                        _ => None,
                    })
                    .collect();
                store.put_batch(&objects)?;
                if let Some(ahead) = ahead {
                    let streamed = part.iter().map(|(_, r)| match r {
                        Read::Streamed(file, _) => file.size,
                        _ => 0,
                    });
                    let put = objects.iter().map(|(_, c)| c.len() as u64).sum::<u64>();
                    ahead.put(put + streamed.sum::<u64>());
                }
            }
            for ((h, read), file) in part.into_iter().zip(files.iter_mut()) {
                if let Some(progress) = self.progress {
                    let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
                    // (Counted before its run was spawned: never below done.)
                    let total = self.total.load(Ordering::Relaxed);
                    progress(ProgressEvent::Hashed { done, total });
                }
                out.push(match (file.take(), read) {
                    (Some((file, stat)), _) => {
                        let same = same(&h, &file);
                        let ToHash { path, old, .. } = h;
                        let new = Some(Found::File(file));
                        let delta = (!same).then(|| Delta { path: path.clone(), old, new });
                        Hashed::File { delta, path, file, stat }
                    }
                    (None, Read::TooLarge(len)) => Hashed::TooLarge(h.path, len),
                    (None, _) => unreachable!("only a file left unread has no entry"),
                });
            }
        }
        Ok(out)
    }
}

/// What reading one file found.
enum Hashed {
    /// Its content (a change unless the index has it), with the stat taken
    /// before reading.
    File { delta: Option<Delta>, path: RepoPath, file: FileEntry, stat: DiskStat },
    /// A new file left out for its size.
    TooLarge(RepoPath, u64),
}

/// Up to this many files to read, a scan reads them on the calling thread.
/// Reading and hashing a small file costs a few microseconds; waking a
/// rayon worker about 20 (see ARCHITECTURE.md, performance notes).
const HASH_SERIAL_FILES_MAX: usize = 4;
