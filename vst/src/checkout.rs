//! Materializing a tree as files on disk: into an empty directory, or by
//! updating a directory from one tree to another.
//!
//! **Invariant: checkout never writes outside its target directory.** It
//! works one component at a time through directory descriptors: every
//! directory is opened relative to its parent with `O_NOFOLLOW |
//! O_DIRECTORY`, and every create, remove, rename and mode change is an
//! `*at` call on a single validated [`crate::Name`] (never `.` or `..`)
//! relative to such a descriptor. A symlink on disk is never followed: it
//! is removed or replaced as a link, and where the update needs a
//! directory and finds a symlink it stops ([`Error::CheckoutUnsafe`]).
//! Files are written under a temporary name (in the repository's own
//! directory when the caller gives one, so a killed checkout leaves no
//! half-written file in the work tree) and renamed into place, which
//! replaces a link instead of following it. A mode change opens the file
//! with `O_NOFOLLOW` and changes it only if it is a regular file with one
//! link; a hard link is replaced instead. A tree that breaks the naming
//! rules does not decode, so it is refused before anything is written for
//! it.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use vst_cas::Store;

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::limits::PATH_DEPTH_MAX;
use crate::name::RepoPath;
use crate::read::{WalkBudget, check_depth, merge, read_tree};
use crate::tree::{EntryKind, FileEntry, SymlinkTarget};
use crate::worktree::{DiskStat, Force, Progress, ProgressEvent};

/// What a checkout did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutStats {
    /// Files written.
    pub files_written: u64,
    /// Bytes written into those files.
    pub bytes_written: u64,
    /// Symlinks created.
    pub symlinks_created: u64,
    /// Directories created.
    pub dirs_created: u64,
    /// Files whose executable bit was changed in place.
    pub modes_changed: u64,
    /// Entries removed (files, symlinks, and directories left empty).
    pub removed: u64,
    /// Directories of the old tree that were kept because they still hold
    /// files the tree does not list (ignored or untracked).
    pub kept_unknown: u64,
}

/// How to update.
#[derive(Clone, Copy, Default)]
pub struct UpdateOptions<'a> {
    /// With [`Force::Yes`], whatever is on disk where the new tree puts
    /// something is removed first (a directory with all it holds, never
    /// following a link); with [`Force::No`] it stops the update.
    pub force: Force,
    /// A directory on the same filesystem where files are written before
    /// they are renamed into place (created if missing); `None`: files are
    /// written in place.
    pub tmp_dir: Option<&'a Path>,
    /// Where to report progress.
    pub progress: Option<Progress<'a>>,
    /// Set to stop at the next safe point ([`Error::Interrupted`]).
    pub interrupt: Option<&'a AtomicBool>,
}

/// A file an update wrote (or changed the mode of), with its stat right
/// after.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where.
    pub path: RepoPath,
    /// What.
    pub file: FileEntry,
    /// Its stat once in place.
    pub stat: DiskStat,
}

/// What an update did.
#[derive(Debug, Default)]
pub struct UpdateOutcome {
    /// Counts.
    pub stats: CheckoutStats,
    /// Every file written.
    pub written: Vec<Written>,
}

/// Writes the tree `tree` into `target`, which must be missing or an empty
/// directory. The tree is written into a new hidden sibling directory and
/// renamed to `target` once complete (a rename replaces an empty
/// directory), so a checkout that fails or is killed never leaves a partial
/// tree at `target`; one that fails removes its sibling.
pub fn checkout(store: &dyn Store, tree: TreeId, target: &Path) -> Result<CheckoutStats> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(target).map_err(io("read directory", target))?;
            if entries.next().is_some() {
                return Err(Error::TargetNotEmpty { path: target.to_owned() });
            }
        }
        Ok(_) => {
            return Err(Error::TargetNotEmpty { path: target.to_owned() });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect", target)(e)),
    }
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(Error::TargetNotEmpty { path: target.to_owned() });
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    let mut aside_name = std::ffi::OsString::from(".");
    aside_name.push(name);
    aside_name.push(format!(".vst-checkout-{}", std::process::id()));
    let aside = parent.join(aside_name);
    fs::create_dir(&aside).map_err(io("create directory", &aside))?;
    let written = (|| {
        let ctx = Ctx::new(store, &aside, &UpdateOptions::default())?;
        let pass = on_walk_stack(|| {
            let mut pass = Pass::default();
            pass.budget.spend_walk(store, tree, 0)?;
            let root = ctx.root.clone();
            ctx.sync_dir(&root, &aside, &RepoPath::root(), None, tree, 0, Fresh::Yes, &mut pass)?;
            Ok(pass)
        })?;
        let stats = ctx.write_files(pass)?.stats;
        fs::rename(&aside, target).map_err(io("rename into place", target))?;
        Ok(stats)
    })();
    if written.is_err() {
        let _ = fs::remove_dir_all(&aside);
    }
    written
}

/// Updates `target`, which holds a checkout of the tree `from`, to hold the
/// tree `to`, touching only the paths that differ between the two trees,
/// with the default [`UpdateOptions`].
pub fn checkout_update(
    store: &dyn Store,
    from: TreeId,
    to: TreeId,
    target: &Path,
) -> Result<CheckoutStats> {
    Ok(update(store, from, to, target, &UpdateOptions::default())?.stats)
}

/// Updates `target` from the tree `from` to the tree `to`, touching only
/// the paths that differ. The caller vouches that `target` matches `from`
/// (the work tree checks for local changes first); where the disk
/// disagrees in a way that could lead outside `target` (a symlink where
/// `from` has a directory), the update stops with
/// [`Error::CheckoutUnsafe`].
pub fn update(
    store: &dyn Store,
    from: TreeId,
    to: TreeId,
    target: &Path,
    options: &UpdateOptions<'_>,
) -> Result<UpdateOutcome> {
    let ctx = Ctx::new(store, target, options)?;
    let pass = on_walk_stack(|| {
        let mut pass = Pass::default();
        if from != to {
            let root = ctx.root.clone();
            ctx.sync_dir(
                &root,
                target,
                &RepoPath::root(),
                Some(from),
                to,
                0,
                Fresh::No,
                &mut pass,
            )?;
        }
        Ok(pass)
    })?;
    ctx.write_files(pass)
}

/// The stack of the thread that walks the trees: the walk recurses once
/// per level, up to [`PATH_DEPTH_MAX`] deep, and its frames hold
/// descriptors and paths; the caller's thread may have far less (2 MiB for
/// a test thread or a rayon worker).
const WALK_STACK_BYTES: usize = 64 << 20;

/// Runs `walk` on a thread with a stack of [`WALK_STACK_BYTES`].
fn on_walk_stack<T: Send>(walk: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        let spawned =
            std::thread::Builder::new().stack_size(WALK_STACK_BYTES).spawn_scoped(s, walk);
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(source) => Err(Error::CheckoutIo {
                op: "start the checkout thread",
                path: PathBuf::new(),
                source,
            }),
        }
    })
}

/// A file still to write: the directory it goes in, its name there.
struct Pending {
    dir: Arc<OwnedFd>,
    dir_path: PathBuf,
    path: RepoPath,
    file: FileEntry,
}

/// Directories, symlinks, removals and mode changes are done in one walk
/// over the trees, on a thread of its own with a stack sized for the
/// deepest tree ([`on_walk_stack`]); the files, most of the work, are written afterwards on all
/// cores, once every directory they go in exists.
#[derive(Default)]
struct Pass {
    stats: CheckoutStats,
    writes: Vec<Pending>,
    /// What the directories this checkout creates may hold, counted
    /// before any of them is created.
    budget: WalkBudget,
    /// Files whose mode was changed in place, with their stat after.
    modes: Vec<Written>,
}

/// Whether a directory was just created by this checkout (and so cannot
/// hold anything unexpected).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Yes,
    No,
}

struct Ctx<'a> {
    store: &'a dyn Store,
    root: Arc<OwnedFd>,
    force: Force,
    tmp: Option<(OwnedFd, PathBuf)>,
    tmp_seq: AtomicU64,
    progress: Option<Progress<'a>>,
    interrupt: Option<&'a AtomicBool>,
}

impl<'a> Ctx<'a> {
    fn new(store: &'a dyn Store, target: &Path, options: &UpdateOptions<'a>) -> Result<Self> {
        let root = open_dir(target).map_err(io("open directory", target))?;
        let tmp = match options.tmp_dir {
            Some(dir) => {
                match fs::create_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("create directory", dir)(e)),
                }
                Some((open_dir(dir).map_err(io("open directory", dir))?, dir.to_owned()))
            }
            None => None,
        };
        Ok(Self {
            store,
            root: Arc::new(root),
            force: options.force,
            tmp,
            tmp_seq: AtomicU64::new(0),
            progress: options.progress,
            interrupt: options.interrupt,
        })
    }

    fn check_interrupt(&self) -> Result<()> {
        match self.interrupt {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sync_dir(
        &self,
        dir: &Arc<OwnedFd>,
        dir_path: &Path,
        rel: &RepoPath,
        old: Option<TreeId>,
        new: TreeId,
        depth: usize,
        fresh: Fresh,
        pass: &mut Pass,
    ) -> Result<()> {
        self.check_interrupt()?;
        // The empty tree need not be stored.
        let old_tree = old
            .filter(|id| *id != crate::Tree::default().id())
            .map(|id| read_tree(self.store, id))
            .transpose()?
            .unwrap_or_default();
        let new_tree = read_tree(self.store, new)?;
        check_depth(depth, new, &new_tree)?;
        for (a, b) in merge(old_tree.entries(), new_tree.entries()) {
            let name = a.or(b).expect("merge yields at least one side").name.as_bytes();
            let at = At { dir, dir_path, name, rel };
            match (a.map(|e| &e.kind), b.map(|e| &e.kind)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), None) => self.remove(&at, x, depth, pass)?,
                (None, Some(y)) => {
                    count_new(self.store, old, y, depth, pass)?;
                    self.create(&at, y, depth, fresh, pass)?
                }
                (Some(EntryKind::Dir(x)), Some(EntryKind::Dir(y))) => {
                    let sub = Arc::new(at.open_dir()?);
                    let sub_path = at.path();
                    let sub_rel = rel.join_unchecked(name);
                    self.sync_dir(
                        &sub,
                        &sub_path,
                        &sub_rel,
                        Some(*x),
                        *y,
                        depth + 1,
                        Fresh::No,
                        pass,
                    )?
                }
                (Some(EntryKind::File(x)), Some(EntryKind::File(y)))
                    if x.id == y.id && x.size == y.size =>
                {
                    if let Some(stat) = set_executable(&at, y.executable)? {
                        pass.stats.modes_changed += 1;
                        let path = at.rel.join_unchecked(at.name);
                        pass.modes.push(Written { path, file: *y, stat });
                    } else {
                        // A hard link (or not a regular file): changing
                        // its mode would change a file that may live
                        // outside the target. Replace it instead.
                        pass.writes.push(at.pending(*y));
                    }
                }
                // New content: written aside and renamed over the old.
                (Some(EntryKind::File(_)), Some(EntryKind::File(y))) => {
                    if let Some(meta) = at.lstat()?
                        && meta.is_dir()
                    {
                        self.clear(&at, "a directory", pass)?;
                    }
                    pass.writes.push(at.pending(*y));
                }
                (Some(x), Some(y)) => {
                    count_new(self.store, old, y, depth, pass)?;
                    self.remove(&at, x, depth, pass)?;
                    self.create(&at, y, depth, Fresh::No, pass)?;
                }
                (None, None) => unreachable!("merge yields at least one side"),
            }
        }
        Ok(())
    }

    /// Creates `kind` at `at`. In a directory that is not fresh, something
    /// may be there already: a directory where one is wanted is filled;
    /// anything else is removed with [`Force::Yes`] and stops the update
    /// otherwise.
    fn create(
        &self,
        at: &At<'_>,
        kind: &EntryKind,
        depth: usize,
        fresh: Fresh,
        pass: &mut Pass,
    ) -> Result<()> {
        if fresh == Fresh::No
            && let Some(meta) = at.lstat()?
        {
            let wanted_dir = matches!(kind, EntryKind::Dir(_));
            if !(wanted_dir && meta.is_dir()) {
                self.clear(at, describe(meta), pass)?;
            }
        }
        match kind {
            EntryKind::File(f) => {
                pass.writes.push(at.pending(*f));
                Ok(())
            }
            EntryKind::Symlink(target) => {
                create_symlink(at, target)?;
                pass.stats.symlinks_created += 1;
                Ok(())
            }
            EntryKind::Dir(id) => {
                let fresh = match rustix::fs::mkdirat(at.dir.as_fd(), at.name, Mode::from(0o777)) {
                    Ok(()) => {
                        pass.stats.dirs_created += 1;
                        Fresh::Yes
                    }
                    // A directory already there (holding ignored or
                    // untracked files): filled, checked entry by entry.
                    Err(Errno::EXIST) => Fresh::No,
                    Err(e) => return Err(at.err("create directory", e)),
                };
                let sub = Arc::new(at.open_dir()?);
                let sub_rel = at.rel.join_unchecked(at.name);
                self.sync_dir(&sub, &at.path(), &sub_rel, None, *id, depth + 1, fresh, pass)
            }
        }
    }

    /// Something not in the old tree is where the new tree puts an entry:
    /// removed with [`Force::Yes`], else the update stops.
    fn clear(&self, at: &At<'_>, found: &'static str, pass: &mut Pass) -> Result<()> {
        if self.force == Force::No {
            return Err(Error::CheckoutUnsafe { path: at.path(), found });
        }
        remove_all(at.dir, &at.path(), at.name, 0)?;
        pass.stats.removed += 1;
        Ok(())
    }

    /// Removes the entry `old` of the previous tree from disk. A directory
    /// loses only the entries its tree lists, and is removed itself only if
    /// that leaves it empty: files the tree does not know (ignored build
    /// output, untracked notes) are never deleted by a checkout.
    fn remove(&self, at: &At<'_>, old: &EntryKind, depth: usize, pass: &mut Pass) -> Result<()> {
        let Some(meta) = at.lstat()? else { return Ok(()) };
        match (old, meta.is_dir()) {
            (EntryKind::Dir(id), true) => {
                let tree = read_tree(self.store, *id)?;
                check_depth(depth + 1, *id, &tree)?;
                let sub = Arc::new(at.open_dir()?);
                let sub_path = at.path();
                let sub_rel = at.rel.join_unchecked(at.name);
                for entry in tree.entries() {
                    let child = At {
                        dir: &sub,
                        dir_path: &sub_path,
                        name: entry.name.as_bytes(),
                        rel: &sub_rel,
                    };
                    self.remove(&child, &entry.kind, depth + 1, pass)?;
                }
                drop(sub);
                match rustix::fs::unlinkat(at.dir.as_fd(), at.name, AtFlags::REMOVEDIR) {
                    Ok(()) => pass.stats.removed += 1,
                    // Something the tree does not list is still in there:
                    // keep it (and the directory).
                    Err(Errno::NOTEMPTY) => pass.stats.kept_unknown += 1,
                    Err(e) => return Err(at.err("remove directory", e)),
                }
            }
            // The tree had a file here but the disk has a directory: not
            // ours to delete, unless forced.
            (_, true) => self.clear(at, "a directory", pass)?,
            (_, false) => {
                rustix::fs::unlinkat(at.dir.as_fd(), at.name, AtFlags::empty())
                    .map_err(|e| at.err("remove", e))?;
                pass.stats.removed += 1;
            }
        }
        Ok(())
    }

    /// Writes the pending files on all cores.
    fn write_files(&self, pass: Pass) -> Result<UpdateOutcome> {
        let Pass { mut stats, writes, modes, .. } = pass;
        let total = writes.len() as u64;
        let done = AtomicU64::new(0);
        let written: Vec<Written> = writes
            .par_iter()
            .map(|p| {
                self.check_interrupt()?;
                let stat = self.write_file(p)?;
                if let Some(progress) = self.progress {
                    let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(ProgressEvent::Written { done, total });
                }
                Ok(Written { path: p.path.clone(), file: p.file, stat })
            })
            .collect::<Result<_>>()?;
        stats.files_written += written.len() as u64;
        stats.bytes_written += written.iter().map(|w| w.file.size).sum::<u64>();
        let mut written = written;
        written.extend(modes);
        Ok(UpdateOutcome { stats, written })
    }

    /// Writes one file: aside and renamed into place (a rename replaces a
    /// file or a link at the name, never following it). Aside is the
    /// temporary directory, or, when the file's directory is on another
    /// filesystem (a mount point in the work tree), a hidden name in that
    /// directory. With no temporary directory (the caller gave none), in
    /// place: the old file removed, then `O_CREAT | O_EXCL`.
    fn write_file(&self, p: &Pending) -> Result<DiskStat> {
        // Verified chunk by chunk and whole at the end; a few chunks in
        // memory at a time, whatever the file's size.
        crate::read::check_file_len(self.store, &p.file)?;
        let name = p.path.components().next_back().expect("a file is never the root");
        let full = p.dir_path.join(std::ffi::OsStr::from_bytes(name));
        let Some((tmp, tmp_path)) = &self.tmp else {
            // In place: whatever is at the name (a file being replaced)
            // goes first; O_EXCL then fails on anything that appears
            // meanwhile.
            match rustix::fs::unlinkat(p.dir.as_fd(), name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(errno_io("remove", &full, e)),
            }
            let file = self.create_file(p.dir.as_fd(), name, &full, p)?;
            return file_stat(&file, &full);
        };
        match self.write_aside(tmp.as_fd(), tmp_path, "checkout", p, name, &full)? {
            Ok(stat) => Ok(stat),
            Err(Errno::XDEV) => match self.write_aside(
                p.dir.as_fd(),
                &p.dir_path,
                ".vst-checkout",
                p,
                name,
                &full,
            )? {
                Ok(stat) => Ok(stat),
                Err(e) => Err(errno_io("rename into place", &full, e)),
            },
            Err(e) => Err(errno_io("rename into place", &full, e)),
        }
    }

    /// Creates `name` in `dir` (`O_EXCL`) with `p`'s content.
    fn create_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &Path,
        p: &Pending,
    ) -> Result<fs::File> {
        let mode = Mode::from(if p.file.executable { 0o777 } else { 0o666 });
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir, name, flags, mode)
            .map_err(|e| errno_io("create file", path, e))?;
        let mut file = fs::File::from(fd);
        let mut content = vst_cas::stream::ObjectReader::new(self.store, &p.file.id.object_id())?;
        copy_object(&mut content, &mut file, path)?;
        Ok(file)
    }

    /// Writes `p` under a new name in `aside` (at `aside_path`), then
    /// renames it to `name` in its directory; the rename's error, if any,
    /// comes back as the inner `Err` (the file written aside removed).
    fn write_aside(
        &self,
        aside: BorrowedFd<'_>,
        aside_path: &Path,
        prefix: &str,
        p: &Pending,
        name: &[u8],
        full: &Path,
    ) -> Result<std::result::Result<DiskStat, Errno>> {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!("{prefix}-{}-{seq}", std::process::id());
        let written = self.create_file(aside, tmp_name.as_bytes(), &aside_path.join(&tmp_name), p);
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = rustix::fs::unlinkat(aside, tmp_name.as_str(), AtFlags::empty());
                return Err(e);
            }
        };
        match rustix::fs::renameat(aside, tmp_name.as_str(), p.dir.as_fd(), name) {
            Ok(()) => Ok(Ok(file_stat(&file, full)?)),
            Err(e) => {
                let _ = rustix::fs::unlinkat(aside, tmp_name.as_str(), AtFlags::empty());
                Ok(Err(e))
            }
        }
    }
}

/// Counts a directory that an update adds to `old` against the walk
/// budget, before anything of it is written. A fresh checkout counted its
/// whole tree at the start, and what is inside a directory being created
/// was counted with it (`old` is `None` there).
fn count_new(
    store: &dyn Store,
    old: Option<TreeId>,
    kind: &EntryKind,
    depth: usize,
    pass: &mut Pass,
) -> Result<()> {
    match (old, kind) {
        (Some(_), EntryKind::Dir(id)) => pass.budget.spend_walk(store, *id, depth + 1),
        _ => Ok(()),
    }
}

/// Writes what `object` reads out into `file` (at `path`, for errors).
fn copy_object(
    object: &mut vst_cas::stream::ObjectReader<'_>,
    file: &mut fs::File,
    path: &Path,
) -> Result<()> {
    while let Some(piece) = object.next_piece()? {
        file.write_all(&piece).map_err(io("write file", path))?;
    }
    Ok(())
}

fn file_stat(file: &fs::File, path: &Path) -> Result<DiskStat> {
    Ok(DiskStat::of(&file.metadata().map_err(io("inspect", path))?))
}

/// One entry of a directory open as a descriptor.
struct At<'a> {
    dir: &'a Arc<OwnedFd>,
    dir_path: &'a Path,
    name: &'a [u8],
    /// The directory's path in the tree.
    rel: &'a RepoPath,
}

impl At<'_> {
    fn path(&self) -> PathBuf {
        self.dir_path.join(std::ffi::OsStr::from_bytes(self.name))
    }

    fn err(&self, op: &'static str, e: Errno) -> Error {
        errno_io(op, &self.path(), e)
    }

    /// The entry's type, not following a link; `None` if there is none.
    fn lstat(&self) -> Result<Option<FileType>> {
        match rustix::fs::statat(self.dir.as_fd(), self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err("inspect", e)),
        }
    }

    /// Opens the entry as a directory, refusing a link or anything else.
    fn open_dir(&self) -> Result<OwnedFd> {
        match open_dir_at(self.dir.as_fd(), self.name) {
            Ok(fd) => Ok(fd),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let found = self.lstat()?.map_or("missing", describe);
                Err(Error::CheckoutUnsafe { path: self.path(), found })
            }
            Err(e) => Err(self.err("open directory", e)),
        }
    }

    fn pending(&self, file: FileEntry) -> Pending {
        Pending {
            dir: self.dir.clone(),
            dir_path: self.dir_path.to_owned(),
            path: self.rel.join_unchecked(self.name),
            file,
        }
    }
}

fn open_dir_at(dir: impl AsFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Removes the entry `name` of `dir` and, if it is a directory, all it
/// holds, never following a link.
fn remove_all(dir: &OwnedFd, dir_path: &Path, name: &[u8], depth: usize) -> Result<()> {
    let path = dir_path.join(std::ffi::OsStr::from_bytes(name));
    match rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(errno_io("remove", &path, e)),
    }
    if depth > PATH_DEPTH_MAX {
        return Err(Error::CheckoutUnsafe { path, found: "a directory nested too deep" });
    }
    let sub = open_dir_at(dir.as_fd(), name).map_err(|e| errno_io("open directory", &path, e))?;
    let names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(sub.as_fd())
        .map_err(|e| errno_io("read directory", &path, e))?
        .map(|entry| entry.map(|e| e.file_name().to_bytes().to_vec()))
        .collect::<rustix::io::Result<_>>()
        .map_err(|e| errno_io("read directory", &path, e))?;
    for child in names.iter().filter(|n| n.as_slice() != b"." && n.as_slice() != b"..") {
        // A nested repository is never deleted, even by a forced checkout.
        if child.eq_ignore_ascii_case(crate::repo::REPO_DIR_NAME.as_bytes()) {
            return Err(Error::CheckoutUnsafe { path, found: "a directory holding a repository" });
        }
        remove_all(&sub, &path, child, depth + 1)?;
    }
    rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::REMOVEDIR)
        .map_err(|e| errno_io("remove directory", &path, e))
}

fn create_symlink(at: &At<'_>, target: &SymlinkTarget) -> Result<()> {
    rustix::fs::symlinkat(target.as_bytes(), at.dir.as_fd(), at.name)
        .map_err(|e| at.err("create symlink", e))
}

/// Sets or clears the executable bits of the regular file at `at` with one
/// link, and returns its stat after; `None` (and nothing changed) for
/// anything else.
fn set_executable(at: &At<'_>, executable: bool) -> Result<Option<DiskStat>> {
    let fd = match rustix::fs::openat(
        at.dir.as_fd(),
        at.name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP | Errno::NOENT | Errno::ACCESS) => return Ok(None),
        Err(e) => return Err(at.err("open", e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| at.err("inspect", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink > 1 {
        return Ok(None);
    }
    let mode = st.st_mode & 0o7777;
    // Give execute permission to whoever may read, as git does.
    let new_mode = if executable { mode | ((mode & 0o444) >> 2) } else { mode & !0o111 };
    rustix::fs::fchmod(&fd, Mode::from(new_mode)).map_err(|e| at.err("change mode of", e))?;
    Ok(Some(file_stat(&fs::File::from(fd), &at.path())?))
}

fn describe(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "a symlink",
        FileType::Directory => "a directory",
        FileType::RegularFile => "a file",
        _ => "a special file",
    }
}

fn errno_io(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::CheckoutIo { op, path: path.to_owned(), source: e.into() }
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::CheckoutIo { op, path: PathBuf::from(path), source }
}
