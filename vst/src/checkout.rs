//! Materializing a tree as files on disk.
//!
//! **Invariant: checkout never writes outside its target directory.** Every
//! name it joins to a path is a validated [`crate::Name`] (one component, not
//! `.` or `..`), so a path can only go down. Every directory it writes into
//! was either created by this checkout or checked with `lstat` to be a real
//! directory, not a symlink, and each path is handled once, so nothing
//! turns such a directory into a link before the files are written into it
//! (after the walk, on all cores). Files are created with `O_CREAT | O_EXCL`,
//! which never follows a symlink, and symlinks are created, never followed.
//! A mode change touches only a regular file with one link; a hard link is
//! replaced instead.
//! A tree that breaks the naming rules does not decode, so it is refused
//! before anything is written for it.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use vst_cas::Store;

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::read::{WalkBudget, check_depth, merge, read_tree};
use crate::tree::{EntryKind, FileEntry, SymlinkTarget};

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

/// Writes the tree `tree` into `target`, which must be missing or an empty
/// directory (it is created if missing).
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(io("create directory", target))?;
        }
        Err(e) => return Err(io("inspect", target)(e)),
    }
    let mut pass = Pass::default();
    pass.budget.spend_walk(store, tree, 0)?;
    sync_dir(store, target, None, tree, 0, Fresh::Yes, &mut pass)?;
    pass.write_files(store)
}

/// Updates `target`, which holds a checkout of the tree `from`, to hold the
/// tree `to`, touching only the paths that differ between the two trees.
///
/// The caller vouches that `target` matches `from` (the CLI checks for
/// local changes first). Where the disk disagrees in a way that could lead
/// outside `target` (a symlink where `from` has a directory), the checkout
/// stops with [`Error::CheckoutUnsafe`].
pub fn checkout_update(
    store: &dyn Store,
    from: TreeId,
    to: TreeId,
    target: &Path,
) -> Result<CheckoutStats> {
    let mut pass = Pass::default();
    if from != to {
        sync_dir(store, target, Some(from), to, 0, Fresh::No, &mut pass)?;
    }
    pass.write_files(store)
}

/// A checkout under way: what it did so far, and the files it has still to
/// write. Directories, symlinks, removals and mode changes are done in one
/// walk over the trees, on the caller's thread (its recursion is as deep as
/// the tree); the files, most of the work, are written afterwards on all
/// cores, once every directory they go in exists.
#[derive(Default)]
struct Pass {
    stats: CheckoutStats,
    writes: Vec<(PathBuf, FileEntry)>,
    /// What the directories this checkout creates may hold, counted
    /// before any of them is created.
    budget: WalkBudget,
}

impl Pass {
    fn write_files(self, store: &dyn Store) -> Result<CheckoutStats> {
        let Pass { mut stats, writes, .. } = self;
        let bytes: Vec<u64> = writes
            .par_iter()
            .map(|(path, file)| write_file(store, path, file))
            .collect::<Result<_>>()?;
        stats.files_written += bytes.len() as u64;
        stats.bytes_written += bytes.iter().sum::<u64>();
        Ok(stats)
    }
}

/// Whether a directory was just created by this checkout (and so cannot
/// hold anything unexpected).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Yes,
    No,
}

fn sync_dir(
    store: &dyn Store,
    dir: &Path,
    old: Option<TreeId>,
    new: TreeId,
    depth: usize,
    fresh: Fresh,
    pass: &mut Pass,
) -> Result<()> {
    if fresh == Fresh::No {
        ensure_real_dir(dir)?;
    }
    let old_tree = old.map(|id| read_tree(store, id)).transpose()?.unwrap_or_default();
    let new_tree = read_tree(store, new)?;
    check_depth(depth, new, &new_tree)?;
    for (a, b) in merge(old_tree.entries(), new_tree.entries()) {
        let name = a.or(b).expect("merge yields at least one side").name.as_bytes();
        let path = dir.join(OsStr::from_bytes(name));
        match (a.map(|e| &e.kind), b.map(|e| &e.kind)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), None) => remove(store, &path, x, depth, pass)?,
            (None, Some(y)) => {
                count_new(store, old, y, depth, pass)?;
                create(store, &path, y, depth, pass)?
            }
            (Some(EntryKind::Dir(x)), Some(EntryKind::Dir(y))) => {
                sync_dir(store, &path, Some(*x), *y, depth + 1, Fresh::No, pass)?
            }
            (Some(EntryKind::File(x)), Some(EntryKind::File(y)))
                if x.id == y.id && x.size == y.size =>
            {
                if shares_inode(&path)? {
                    // A hard link: changing its mode would change a file
                    // that may live outside the target. Replace it instead.
                    remove(store, &path, a.map(|e| &e.kind).expect("both sides"), depth, pass)?;
                    pass.writes.push((path, *y));
                } else {
                    set_executable(&path, y.executable)?;
                    pass.stats.modes_changed += 1;
                }
            }
            (Some(x), Some(y)) => {
                count_new(store, old, y, depth, pass)?;
                remove(store, &path, x, depth, pass)?;
                create(store, &path, y, depth, pass)?;
            }
            (None, None) => unreachable!("merge yields at least one side"),
        }
    }
    Ok(())
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

fn create(
    store: &dyn Store,
    path: &Path,
    kind: &EntryKind,
    depth: usize,
    pass: &mut Pass,
) -> Result<()> {
    match kind {
        EntryKind::File(f) => {
            pass.writes.push((path.to_owned(), *f));
            Ok(())
        }
        EntryKind::Symlink(target) => create_symlink(path, target, &mut pass.stats),
        EntryKind::Dir(id) => match fs::create_dir(path) {
            Ok(()) => {
                pass.stats.dirs_created += 1;
                sync_dir(store, path, None, *id, depth + 1, Fresh::Yes, pass)
            }
            // A directory is already there (holding ignored or untracked
            // files): fill it, checking it is a real directory, and fail
            // on any file in the way rather than overwrite it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                sync_dir(store, path, None, *id, depth + 1, Fresh::No, pass)
            }
            Err(e) => Err(io("create directory", path)(e)),
        },
    }
}

/// Creates the file `path` with `file`'s content; returns its length.
fn write_file(store: &dyn Store, path: &Path, file: &FileEntry) -> Result<u64> {
    let content = store.get(&file.id.object_id())?;
    if content.len() as u64 != file.size {
        return Err(Error::SizeMismatch {
            id: file.id,
            recorded: file.size,
            actual: content.len() as u64,
        });
    }
    // O_CREAT | O_EXCL: fails on anything already there, a symlink included,
    // so the write can never land anywhere but at `path` itself.
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file_mode(file.executable))
        .open(path)
        .map_err(io("create file", path))?;
    out.write_all(&content).map_err(io("write file", path))?;
    Ok(file.size)
}

fn create_symlink(path: &Path, target: &SymlinkTarget, stats: &mut CheckoutStats) -> Result<()> {
    std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), path)
        .map_err(io("create symlink", path))?;
    stats.symlinks_created += 1;
    Ok(())
}

/// Permission bits a checkout asks for; the process umask still applies,
/// as it does for git.
fn file_mode(executable: bool) -> u32 {
    if executable { 0o777 } else { 0o666 }
}

/// Whether the regular file at `path` has other hard links.
fn shares_inode(path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    Ok(meta.file_type().is_file() && meta.nlink() > 1)
}

fn set_executable(path: &Path, executable: bool) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    if !meta.file_type().is_file() {
        return Err(Error::CheckoutUnsafe { path: path.to_owned(), found: describe(&meta) });
    }
    let mode = meta.permissions().mode();
    // Give execute permission to whoever may read, as git does.
    let new_mode = if executable { mode | ((mode & 0o444) >> 2) } else { mode & !0o111 };
    fs::set_permissions(path, fs::Permissions::from_mode(new_mode))
        .map_err(io("change mode of", path))
}

/// Removes the entry `old` of the previous tree from disk. A directory
/// loses only the entries its tree lists, and is removed itself only if
/// that leaves it empty: files the tree does not know (ignored build
/// output, untracked notes) are never deleted by a checkout.
fn remove(
    store: &dyn Store,
    path: &Path,
    old: &EntryKind,
    depth: usize,
    pass: &mut Pass,
) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspect", path)(e)),
    };
    // `symlink_metadata` does not follow links: a symlink to a directory is
    // removed as a link, never recursed into.
    match (old, meta.is_dir()) {
        (EntryKind::Dir(id), true) => {
            let tree = read_tree(store, *id)?;
            check_depth(depth + 1, *id, &tree)?;
            for entry in tree.entries() {
                remove(
                    store,
                    &path.join(OsStr::from_bytes(entry.name.as_bytes())),
                    &entry.kind,
                    depth + 1,
                    pass,
                )?;
            }
            match fs::remove_dir(path) {
                Ok(()) => pass.stats.removed += 1,
                // Something the tree does not list is still in there: keep
                // it (and the directory).
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    pass.stats.kept_unknown += 1
                }
                Err(e) => return Err(io("remove directory", path)(e)),
            }
        }
        (_, true) => {
            // The tree had a file here but the disk has a directory: not
            // ours to delete.
            return Err(Error::CheckoutUnsafe { path: path.to_owned(), found: "a directory" });
        }
        (_, false) => {
            fs::remove_file(path).map_err(io("remove", path))?;
            pass.stats.removed += 1;
        }
    }
    Ok(())
}

fn ensure_real_dir(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(Error::CheckoutUnsafe { path: path.to_owned(), found: describe(&meta) })
    }
}

fn describe(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::CheckoutIo { op, path: PathBuf::from(path), source }
}
