//! Scanning the working directory against the index: what differs from
//! `HEAD`'s tree, reading and hashing only files whose stat changed.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rayon::prelude::*;
use vst::{BlobId, EntryKind, FileEntry, Name, RepoPath};
use vst_cas::Store;

use crate::index::{Index, IndexDir, IndexNode};

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
pub struct Stat {
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

impl Stat {
    fn of(meta: &fs::Metadata) -> Self {
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
    fn vouches(&self, cached: Option<Stat>, stamp_ns: i64) -> bool {
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
    pub hashed: Vec<(RepoPath, FileEntry, Stat)>,
    /// Paths skipped: sockets, FIFOs, devices.
    pub skipped: Vec<PathBuf>,
    /// When the scan started, on the filesystem's clock.
    pub stamp_ns: i64,
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
        // it was last trusted or taken.
        index.stamp_ns = self.stamp_ns;
    }
}

/// One thing the walk found.
enum Walked {
    /// A difference known without reading a file.
    Delta(Delta),
    /// A file to read and hash; `old` is the index's entry there.
    Hash { path: RepoPath, full: PathBuf, stat: Stat, old: Option<EntryKind> },
    /// A socket, FIFO or device (its path relative to the root).
    Skipped(PathBuf),
}

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
        let file = dir.join(".vstignore");
        if has_ignore_file && file.is_file() {
            let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
            if let Some(e) = builder.add(&file) {
                return Err(anyhow::Error::new(e).context(format!("reading {}", file.display())));
            }
            let gi = builder.build().with_context(|| format!("reading {}", file.display()))?;
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
    for entry in
        fs::read_dir(&dir).with_context(|| format!("reading the directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("reading the directory {}", dir.display()))?;
        let name = entry.file_name();
        if name != ctx.repo_name {
            disk.push((name, entry)); // (a repository directory, ours or a nested one, is not)
        }
    }
    let ignores =
        parent_ignores.enter(&dir, disk.iter().any(|(n, _)| n.as_bytes() == b".vstignore"))?;
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
                let meta = entry
                    .metadata()
                    .with_context(|| format!("reading {}", dir.join(name).display()))?;
                if !ignores.0.is_empty() && ignores.ignored(&dir.join(name), meta.is_dir()) {
                    if let Some(node) = in_index {
                        let path = rel.join(&Name::try_from(name.as_bytes())?)?;
                        deleted(path, node, &mut found);
                    }
                    continue;
                }
                visit(ctx, rel, &dir, name, &meta, in_index, &mut found, &mut subdirs)?;
            }
            None => {
                let (name, node) = &old[j - 1];
                deleted(rel.join(name)?, node, &mut found);
            }
        }
    }
    ctx.emit(found);
    subdirs.par_iter().try_for_each(|(sub, index)| walk_dir(ctx, sub, *index, &ignores))
}

/// Compares one entry on disk with the index's entry at the same path.
#[allow(clippy::too_many_arguments)]
fn visit<'i>(
    ctx: &WalkCtx<'_>,
    rel: &RepoPath,
    dir: &Path,
    name: &OsStr,
    meta: &fs::Metadata,
    old: Option<&'i IndexNode>,
    found: &mut Vec<Walked>,
    subdirs: &mut Vec<Pending<'i>>,
) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        let stat = Stat::of(meta);
        if let Some(IndexNode::File(_, cached)) = old
            && stat.vouches(*cached, ctx.stamp_ns)
        {
            return Ok(());
        }
    }
    // Something to report: it needs its paths.
    let full = dir.join(name);
    let path = Name::try_from(name.as_bytes())
        .map_err(anyhow::Error::from)
        .and_then(|n| Ok(rel.join(&n)?))
        .with_context(|| {
            format!("{} cannot be stored: its path breaks vst's naming rules", full.display())
        })?;
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
        found.push(Walked::Hash { path, full, stat: Stat::of(meta), old: old_kind });
    } else if kind.is_symlink() {
        let target =
            fs::read_link(&full).with_context(|| format!("reading the link {}", full.display()))?;
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
    to_hash: Vec<(RepoPath, PathBuf, Stat, Option<EntryKind>)>,
    skipped: Vec<PathBuf>,
    stamp_ns: i64,
}

/// Walks the working directory at `root` (whose repository directory is
/// `repo_dir`) and compares it with `index`, reading no file.
pub fn walk(root: &Path, repo_dir: &Path, index: &Index) -> Result<Walk> {
    // The filesystem's idea of "now", before anything is looked at: the
    // mtime of a file written now. (The system clock may differ from the
    // one that stamps files, in source and in granularity.)
    let stamp = repo_dir.join(format!("scan-stamp-{}", std::process::id()));
    let stamp_ns = fs::write(&stamp, b"")
        .and_then(|()| fs::metadata(&stamp))
        .map(|m| Stat::of(&m).mtime_ns)
        .unwrap_or(i64::MIN);
    let _ = fs::remove_file(&stamp);
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
    walk_dir(&ctx, &RepoPath::root(), Some(&index.root), &IgnoreChain::default())?;
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

impl Walk {
    /// Reads and hashes, on all cores, the files whose stat did not vouch
    /// for the index's content, storing the content of those that differ
    /// from it when `store` is given.
    pub fn hash(self, store: Option<&dyn Store>) -> Result<Scan> {
        let Walk { mut deltas, to_hash, mut skipped, stamp_ns } = self;
        // On a terminal, long scans show how far hashing got; elsewhere the bar
        // draws nothing (indicatif hides itself when stderr is not a terminal).
        let progress = if to_hash.len() >= 1000 {
            let bar = indicatif::ProgressBar::new(to_hash.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message("hashing");
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let results: Vec<(Option<Delta>, (RepoPath, FileEntry, Stat))> = to_hash
            .into_par_iter()
            .map(|(path, full, stat, old)| -> Result<_> {
                let content =
                    fs::read(&full).with_context(|| format!("reading {}", full.display()))?;
                progress.inc(1);
                let file = FileEntry {
                    id: BlobId::of(&content),
                    size: content.len() as u64,
                    executable: stat.mode & 0o100 != 0,
                };
                let same = matches!(&old, Some(EntryKind::File(f)) if *f == file);
                if let (Some(store), false) = (store, same) {
                    store
                        .put(file.id.object_id(), &content)
                        .with_context(|| format!("storing {}", full.display()))?;
                }
                let delta = (!same).then(|| Delta {
                    path: path.clone(),
                    old,
                    new: Some(Found::File(file)),
                });
                Ok((delta, (path, file, stat)))
            })
            .collect::<Result<_>>()?;
        progress.finish_and_clear();
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
