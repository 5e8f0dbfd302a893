//! Scanning the work tree against the index: what differs from the
//! index's tree, reading and hashing only files whose stat changed; the
//! whole tree, or only the paths a caller says changed.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use vst_cas::Store;

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
        for (path, file, stat) in &self.hashed {
            index.set_stat(path, file, *stat);
        }
        // Stats taken by earlier scans stay trustworthy under a later
        // stamp: each was settled (older than its own scan's stamp) when
        // it was last trusted or taken. Not so after a scan of some paths:
        // a racy stat elsewhere was neither trusted nor taken again, so
        // the stamp stays (what it hashed counts as racy until a full scan).
        if let Some(stamp_ns) = self.stamp_ns {
            index.stamp_ns = stamp_ns;
        }
    }
}

/// One thing the walk found.
enum Walked {
    /// A difference known without reading a file.
    Delta(Delta),
    /// A file to read and hash; `old` is the index's entry there.
    Hash { path: RepoPath, full: PathBuf, stat: DiskStat, old: Option<EntryKind> },
    /// A socket, FIFO or device (its path relative to the root).
    Skipped(PathBuf),
}

/// The ignore file's name: gitignore syntax, in any directory.
pub const IGNORE_FILE: &str = ".vstignore";

/// `.vstignore` matchers from the root down to a directory.
#[derive(Clone, Default)]
struct IgnoreChain(Vec<Arc<ignore::gitignore::Gitignore>>);

impl IgnoreChain {
    /// Whether `full` is ignored: the deepest `.vstignore` with a verdict
    /// wins (a `!pattern` below can re-include what a parent excluded).
    fn ignored(&self, full: &Path, is_dir: bool) -> bool {
        for gi in self.0.iter().rev() {
            match gi.matched(full, is_dir) {
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
                ignore::Match::None => {}
            }
        }
        false
    }

    /// This chain, plus `dir`'s `.vstignore` if it has one.
    fn enter(&self, dir: &Path, has_ignore_file: bool) -> Result<Self> {
        let mut chain = self.clone();
        let file = dir.join(IGNORE_FILE);
        if has_ignore_file && file.is_file() {
            let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
            if let Some(source) = builder.add(&file) {
                return Err(Error::Ignore { path: file, source });
            }
            let gi = builder.build().map_err(|source| Error::Ignore { path: file, source })?;
            chain.0.push(Arc::new(gi));
        }
        Ok(chain)
    }
}

struct WalkCtx<'a> {
    root: &'a Path,
    repo_name: &'a OsStr,
    stamp_ns: i64,
    out: Mutex<Vec<Walked>>,
}

impl WalkCtx<'_> {
    fn emit(&self, found: Vec<Walked>) {
        if !found.is_empty() {
            self.out.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
        }
    }
}

/// A subdirectory still to walk: its path, and the index's directory there.
type Pending<'i> = (RepoPath, Option<&'i IndexDir>);

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
    let mut disk = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io("read the directory", &dir))? {
        let entry = entry.map_err(io("read the directory", &dir))?;
        let name = entry.file_name();
        if name != ctx.repo_name {
            disk.push((name, entry)); // (a repository directory, ours or a nested one, is not)
        }
    }
    let ignores = parent_ignores
        .enter(&dir, disk.iter().any(|(n, _)| n.as_bytes() == IGNORE_FILE.as_bytes()))?;
    disk.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let old: &[(Name, IndexNode)] = index.map_or(&[], |d| &d.entries);

    let mut found = Vec::new();
    let mut subdirs: Vec<Pending<'_>> = Vec::new();
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
        match on_disk {
            Some((name, entry)) => {
                // lstat relative to the directory being read (std uses
                // statx on its descriptor): no path lookup from the root.
                let meta = entry.metadata().map_err(io("inspect", &dir.join(name)))?;
                visit(ctx, rel, &dir, &ignores, name, &meta, in_index, &mut found, &mut subdirs)?;
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

/// Compares one entry on disk with the index's entry at the same path
/// (an ignored entry counts as absent).
#[allow(clippy::too_many_arguments)]
fn visit<'i>(
    ctx: &WalkCtx<'_>,
    rel: &RepoPath,
    dir: &Path,
    ignores: &IgnoreChain,
    name: &OsStr,
    meta: &fs::Metadata,
    old: Option<&'i IndexNode>,
    found: &mut Vec<Walked>,
    subdirs: &mut Vec<Pending<'i>>,
) -> Result<()> {
    if !ignores.0.is_empty() && ignores.ignored(&dir.join(name), meta.is_dir()) {
        if let Some(node) = old {
            let full = dir.join(name);
            let name = Name::try_from(name.as_bytes()).map_err(unstorable(&full))?;
            deleted(rel.join(&name).map_err(unstorable(&full))?, node, found);
        }
        return Ok(());
    }
    let kind = meta.file_type();
    if kind.is_file() {
        let stat = DiskStat::of(meta);
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
    if kind.is_dir()
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
    if kind.is_file() {
        found.push(Walked::Hash { path, full, stat: DiskStat::of(meta), old: old_kind });
    } else if kind.is_symlink() {
        let target = fs::read_link(&full).map_err(io("read the link", &full))?;
        let target = target.as_os_str().as_bytes();
        if !matches!(&old_kind, Some(EntryKind::Symlink(t)) if t.as_bytes() == target) {
            let new = Some(Found::Symlink(target.to_vec()));
            found.push(Walked::Delta(Delta { path, old: old_kind, new }));
        }
    } else if kind.is_dir() {
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
    to_hash: Vec<(RepoPath, PathBuf, DiskStat, Option<EntryKind>)>,
    skipped: Vec<PathBuf>,
    stamp_ns: Option<i64>,
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
) -> Result<Walk> {
    // A full scan takes its stamp before anything is looked at; a scan of
    // some paths vouches for nothing it did not look at, and needs none.
    let stamp_ns = changed.is_none().then(|| fs_now(repo_dir));
    let repo_name = repo_dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
    // Bound by one lstat per entry: directories are walked on all cores,
    // each entry is stat-ed relative to its directory and compared with the
    // index where it is found; only differences leave the walk.
    let ctx = WalkCtx {
        root,
        repo_name: &repo_name,
        stamp_ns: index.stamp_ns,
        out: Mutex::new(Vec::new()),
    };
    match changed {
        None => walk_dir(&ctx, &RepoPath::root(), Some(&index.root), &IgnoreChain::default())?,
        Some(paths) => walk_paths(&ctx, index, paths)?,
    }
    let walked = ctx.out.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Walk { deltas: Vec::new(), to_hash: Vec::new(), skipped: Vec::new(), stamp_ns };
    for w in walked {
        match w {
            Walked::Delta(d) => out.deltas.push(d),
            Walked::Hash { path, full, stat, old } => out.to_hash.push((path, full, stat, old)),
            Walked::Skipped(rel) => out.skipped.push(rel),
        }
    }
    Ok(out)
}

/// Compares the paths in `changed` with the index. Each path is reached
/// from the root one component at a time: where a directory on the way is
/// not a directory on both sides (or is ignored, or is the repository),
/// that directory is what changed and is compared instead. A path below
/// another one given, or below a directory that changed, is covered by it.
fn walk_paths(ctx: &WalkCtx<'_>, index: &Index, changed: &[RepoPath]) -> Result<()> {
    let mut paths: Vec<&RepoPath> = changed.iter().filter(|p| !p.is_root()).collect();
    if paths.len() < changed.len() {
        // The root itself: everything.
        return walk_dir(ctx, &RepoPath::root(), Some(&index.root), &IgnoreChain::default());
    }
    // Parents before children, so that a covered path is dropped by
    // looking at the last kept one.
    paths.sort_by(|a, b| a.components().cmp(b.components()));
    paths.dedup();
    // Directories on the way that are directories on both sides, with
    // their ignore chains: each looked at once.
    let mut dirs: std::collections::HashMap<RepoPath, Option<IgnoreChain>> =
        std::collections::HashMap::new();
    dirs.insert(RepoPath::root(), Some(IgnoreChain::default().enter(ctx.root, true)?));
    let mut covered: Vec<RepoPath> = Vec::new();
    let mut found = Vec::new();
    let mut subdirs: Vec<(RepoPath, Option<&IndexDir>, IgnoreChain)> = Vec::new();
    'paths: for path in paths {
        if covered.last().is_some_and(|c| path.starts_with(c)) {
            continue;
        }
        // Down from the root to the path's parent.
        let mut parent = RepoPath::root();
        let mut index_dir = Some(&index.root);
        let depth = path.depth();
        for (i, component) in path.components().enumerate() {
            let here = parent.join_unchecked(component);
            let last = i + 1 == depth;
            let node = index_dir.and_then(|d| d.get(component));
            if !last {
                let known = dirs.get(&here).cloned();
                let chain = match known {
                    Some(chain) => chain,
                    None => {
                        let parent_chain =
                            dirs[&parent].clone().expect("a parent on the way is a directory");
                        let chain = through_dir(ctx, &parent, &parent_chain, component, node)?;
                        dirs.insert(here.clone(), chain.clone());
                        chain
                    }
                };
                if chain.is_some() {
                    index_dir = match node {
                        Some(IndexNode::Dir(d)) => Some(d),
                        _ => None,
                    };
                    parent = here;
                    continue;
                }
                // Not a directory on both sides: this is what changed.
                if covered.last().is_some_and(|c| here.starts_with(c)) {
                    continue 'paths;
                }
            }
            let chain = dirs[&parent].clone().expect("a parent on the way is a directory");
            let dir = ctx.root.join(OsStr::from_bytes(parent.as_bytes()));
            let name = OsStr::from_bytes(component);
            let mut pending = Vec::new();
            if name != ctx.repo_name {
                match fs::symlink_metadata(dir.join(name)) {
                    Ok(meta) => visit(
                        ctx,
                        &parent,
                        &dir,
                        &chain,
                        name,
                        &meta,
                        node,
                        &mut found,
                        &mut pending,
                    )?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if let Some(node) = node {
                            deleted(here.clone(), node, &mut found);
                        }
                    }
                    Err(e) => return Err(io("inspect", &dir.join(name))(e)),
                }
            }
            subdirs.extend(pending.into_iter().map(|(p, d)| (p, d, chain.clone())));
            covered.push(here);
            continue 'paths;
        }
    }
    ctx.emit(found);
    subdirs
        .par_iter()
        .try_for_each(|(sub, index, parent_chain)| walk_dir(ctx, sub, *index, parent_chain))
}

/// Whether the entry `name` of the directory `parent` is a directory on
/// disk and in the index (`node`), neither ignored nor the repository: if
/// so, its ignore chain.
fn through_dir(
    ctx: &WalkCtx<'_>,
    parent: &RepoPath,
    parent_chain: &IgnoreChain,
    name: &[u8],
    node: Option<&IndexNode>,
) -> Result<Option<IgnoreChain>> {
    if !matches!(node, Some(IndexNode::Dir(_))) || OsStr::from_bytes(name) == ctx.repo_name {
        return Ok(None);
    }
    let full = ctx.root.join(OsStr::from_bytes(parent.as_bytes())).join(OsStr::from_bytes(name));
    match fs::symlink_metadata(&full) {
        Ok(meta) if meta.is_dir() => {
            if !parent_chain.0.is_empty() && parent_chain.ignored(&full, true) {
                return Ok(None);
            }
            Ok(Some(parent_chain.enter(&full, true)?))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("inspect", &full)(e)),
    }
}

impl Walk {
    /// Reads and hashes, on all cores, the files whose stat did not vouch
    /// for the index's content, storing the content of those that differ
    /// from it when `store` is given. Reports progress to `progress`.
    pub fn hash(self, store: Option<&dyn Store>, progress: Option<Progress<'_>>) -> Result<Scan> {
        let Walk { mut deltas, to_hash, mut skipped, stamp_ns } = self;
        let total = to_hash.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let hash_one =
            |(path, full, stat, old): (RepoPath, PathBuf, DiskStat, Option<EntryKind>)| {
                let content = fs::read(&full).map_err(io("read", &full))?;
                if let Some(progress) = progress {
                    let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress(ProgressEvent::Hashed { done, total });
                }
                let file = FileEntry {
                    id: BlobId::of(&content),
                    size: content.len() as u64,
                    executable: stat.mode & 0o100 != 0,
                };
                let same = matches!(&old, Some(EntryKind::File(f)) if *f == file);
                if let (Some(store), false) = (store, same) {
                    store.put(file.id.object_id(), &content)?;
                }
                let delta = (!same).then(|| Delta {
                    path: path.clone(),
                    old,
                    new: Some(Found::File(file)),
                });
                Ok((delta, (path, file, stat)))
            };
        // A few files are read on this thread: waking a worker costs more
        // than reading and hashing a small file.
        let results: Vec<(Option<Delta>, (RepoPath, FileEntry, DiskStat))> =
            if to_hash.len() <= HASH_SERIAL_FILES_MAX {
                to_hash.into_iter().map(hash_one).collect::<Result<_>>()?
            } else {
                to_hash.into_par_iter().map(hash_one).collect::<Result<_>>()?
            };
        let mut hashed = Vec::with_capacity(results.len());
        for (delta, h) in results {
            deltas.extend(delta);
            hashed.push(h);
        }
        deltas.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        skipped.sort();
        Ok(Scan { deltas, hashed, skipped, stamp_ns })
    }
}

/// Up to this many files to read, a scan reads them on the calling thread.
/// Reading and hashing a small file costs a few microseconds; waking a
/// rayon worker about 20 (see ARCHITECTURE.md, performance notes).
const HASH_SERIAL_FILES_MAX: usize = 4;
