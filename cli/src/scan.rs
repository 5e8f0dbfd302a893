//! Scanning the working directory into entries, with a stat cache so that
//! only files whose metadata changed are read and hashed again.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use vst::{BlobId, FileEntry, RepoPath};
use vst_cas::{ObjectId, Store};

/// The stat cache's file name in `.vst/`.
const CACHE_FILE: &str = "statcache";
const CACHE_MAGIC: &[u8; 8] = b"VSTSTAT2";

/// What a scan found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file, hashed (or known from the cache).
    File(FileEntry),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A directory.
    Dir,
}

/// The metadata that says a file may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    mode: u32,
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
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    scan_started_ns: i64,
    entries: Vec<CacheEntry>,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    path: Vec<u8>,
    stat: Stat,
    id: [u8; 32],
}

/// path -> (stat, blob id) as of the last scan.
pub struct StatCache {
    entries: HashMap<Vec<u8>, (Stat, BlobId)>,
    /// When the scan that wrote the cache started, on the filesystem's own
    /// clock: a file modified at or after it may have changed again within
    /// the same timestamp tick after it was hashed ("racy"), so its entry is
    /// never trusted.
    written_ns: i64,
}

impl StatCache {
    /// Loads the cache; an unreadable or damaged cache is an empty one (it
    /// only saves work).
    pub fn load(repo_dir: &Path) -> Self {
        let empty = Self { entries: HashMap::new(), written_ns: i64::MIN };
        let Ok(bytes) = fs::read(repo_dir.join(CACHE_FILE)) else { return empty };
        let Some(body) = bytes.strip_prefix(CACHE_MAGIC) else { return empty };
        let Ok(cache) = postcard::from_bytes::<CacheFile>(body) else { return empty };
        Self {
            entries: cache
                .entries
                .into_iter()
                .map(|e| (e.path, (e.stat, BlobId::new(ObjectId::from_bytes(e.id)))))
                .collect(),
            written_ns: cache.scan_started_ns,
        }
    }

    fn lookup(&self, path: &[u8], stat: &Stat) -> Option<BlobId> {
        let (cached, id) = self.entries.get(path)?;
        // Trusted only if the file had not been touched when the scan that
        // hashed it started: a change later in the same timestamp tick
        // would leave mtime and ctime as they were.
        let settled = stat.mtime_ns < self.written_ns && stat.ctime_ns < self.written_ns;
        (cached == stat && settled).then_some(*id)
    }

    /// Writes a cache of `found` (with the stats the scan saw), replacing
    /// the old one, unless the scan hashed nothing (then the old cache
    /// already says all it would). Not synced: after a crash it is rebuilt
    /// by hashing.
    pub fn save(repo_dir: &Path, scan: &Scan) -> Result<()> {
        if scan.hashed == 0 && repo_dir.join(CACHE_FILE).exists() {
            return Ok(());
        }
        let entries: Vec<CacheEntry> = scan
            .stats
            .iter()
            .map(|(path, (stat, id))| CacheEntry {
                path: path.clone(),
                stat: *stat,
                id: *id.as_bytes(),
            })
            .collect();
        let file = CacheFile { scan_started_ns: scan.started_ns, entries };
        let mut bytes = CACHE_MAGIC.to_vec();
        bytes.extend(postcard::to_allocvec(&file).context("encoding the stat cache")?);
        // A name of its own, so that two processes saving at once cannot
        // rename each other's file away.
        let tmp = repo_dir.join(format!("{CACHE_FILE}.tmp-{}", std::process::id()));
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, repo_dir.join(CACHE_FILE)).context("replacing the stat cache")?;
        Ok(())
    }
}

/// One entry the walk found.
enum Walked {
    /// Known without reading it (the stat is given for a cached file).
    Entry(RepoPath, Found, Option<Stat>),
    /// A file to read and hash.
    Hash(RepoPath, PathBuf, Stat),
    /// A socket, FIFO or device.
    Skipped(RepoPath, PathBuf),
}

impl Walked {
    fn path(&self) -> &RepoPath {
        match self {
            Walked::Entry(p, ..) | Walked::Hash(p, ..) | Walked::Skipped(p, ..) => p,
        }
    }
}

/// `.vstignore` matchers from the root down to a directory.
#[derive(Clone, Default)]
struct IgnoreChain(Vec<std::sync::Arc<ignore::gitignore::Gitignore>>);

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
}

struct WalkCtx<'a> {
    root: &'a Path,
    repo_name: &'a std::ffi::OsStr,
    cache: &'a StatCache,
    store: Option<&'a dyn Store>,
    out: &'a std::sync::Mutex<Vec<Result<Walked>>>,
}

/// Walks the directory `rel` (relative to the root): its entries into
/// `ctx.out`, its subdirectories on rayon's threads.
fn walk_dir(ctx: &WalkCtx<'_>, rel: &Path, parent_ignores: &IgnoreChain) -> Result<()> {
    let dir = ctx.root.join(rel);
    let mut ignores = parent_ignores.clone();
    let ignore_file = dir.join(".vstignore");
    if ignore_file.is_file() {
        let mut builder = ignore::gitignore::GitignoreBuilder::new(&dir);
        if let Some(e) = builder.add(&ignore_file) {
            return Err(anyhow::Error::new(e).context(format!("reading {}", ignore_file.display())));
        }
        let gi = builder.build().with_context(|| format!("reading {}", ignore_file.display()))?;
        ignores.0.push(std::sync::Arc::new(gi));
    }
    let mut subdirs = Vec::new();
    let mut found = Vec::new();
    let entries =
        fs::read_dir(&dir).with_context(|| format!("reading the directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading the directory {}", dir.display()))?;
        let name = entry.file_name();
        if name == ctx.repo_name {
            continue; // a repository directory, ours or a nested one
        }
        // lstat relative to the directory being read (std uses statx on
        // the directory's descriptor): no path lookup from the root.
        let full = entry.path();
        let meta = entry.metadata().with_context(|| format!("reading {}", full.display()))?;
        if ignores.ignored(&full, meta.is_dir()) {
            continue;
        }
        let rel_child = rel.join(&name);
        let walked = visit(&rel_child, &full, &meta, ctx.cache, ctx.store);
        if meta.is_dir() && walked.is_ok() {
            subdirs.push(rel_child);
        }
        found.push(walked);
    }
    ctx.out.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
    subdirs.par_iter().try_for_each(|sub| walk_dir(ctx, sub, &ignores))
}

/// Looks at one entry of the walk: validates its path, reads a link, and
/// looks a file up in the cache.
fn visit(
    rel: &Path,
    full: &Path,
    meta: &fs::Metadata,
    cache: &StatCache,
    store: Option<&dyn Store>,
) -> Result<Walked> {
    let path = RepoPath::try_from(rel.as_os_str().as_bytes()).with_context(|| {
        format!("{} cannot be stored: its path breaks vst's naming rules", rel.display())
    })?;
    let kind = meta.file_type();
    Ok(if kind.is_symlink() {
        let target =
            fs::read_link(full).with_context(|| format!("reading the link {}", full.display()))?;
        Walked::Entry(path, Found::Symlink(target.as_os_str().as_bytes().to_vec()), None)
    } else if kind.is_dir() {
        Walked::Entry(path, Found::Dir, None)
    } else if kind.is_file() {
        let stat = Stat::of(meta);
        // A cached id saves reading the file, but when the content must be
        // stored, only if the store has it: `status` caches ids of content
        // it hashed without storing.
        let cached = cache.lookup(path.as_bytes(), &stat).filter(|id| match store {
            Some(store) => store.contains(&id.object_id()).unwrap_or(false),
            None => true,
        });
        match cached {
            Some(id) => {
                let file = FileEntry { id, size: stat.size, executable: stat.mode & 0o100 != 0 };
                Walked::Entry(path, Found::File(file), Some(stat))
            }
            None => Walked::Hash(path, full.to_owned(), stat),
        }
    } else {
        Walked::Skipped(path, rel.to_owned())
    })
}

/// The result of a scan.
pub struct Scan {
    /// Every entry under the root (but `.vst/` and what `.vstignore`
    /// excludes), sorted by path.
    pub entries: Vec<(RepoPath, Found)>,
    /// Files hashed because their stat changed (or was racy).
    pub hashed: usize,
    /// Paths skipped: sockets, FIFOs, devices.
    pub skipped: Vec<PathBuf>,
    /// When the scan started, on the filesystem's clock.
    started_ns: i64,
    stats: Vec<(Vec<u8>, (Stat, BlobId))>,
}

/// Scans the working directory at `root` (whose repository directory is
/// `repo_dir`), hashing on all cores the files whose stat differs from the
/// cache, and storing their content when `store` is given.
pub fn scan(
    root: &Path,
    repo_dir: &Path,
    cache: &StatCache,
    store: Option<&dyn Store>,
) -> Result<Scan> {
    // On a terminal, long scans show how far hashing got; elsewhere the bar
    // draws nothing (indicatif hides itself when stderr is not a terminal).
    let progress = indicatif::ProgressBar::new(0);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    // The filesystem's idea of "now", before anything is looked at: the
    // mtime of a file written now. (The system clock may differ from the
    // one that stamps files, in source and in granularity.)
    let stamp = repo_dir.join(format!("scan-stamp-{}", std::process::id()));
    let started_ns = fs::write(&stamp, b"")
        .and_then(|()| fs::metadata(&stamp))
        .map(|m| Stat::of(&m).mtime_ns)
        .unwrap_or(i64::MIN);
    let _ = fs::remove_file(&stamp);
    let repo_name = repo_dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
    // The walk is bound by one lstat per entry: walk directories on all
    // cores, stat each entry relative to its directory (no path lookup from
    // the root), look it up in the cache where it is found, sort afterwards.
    let walked: std::sync::Mutex<Vec<Result<Walked>>> = std::sync::Mutex::new(Vec::new());
    let ctx = WalkCtx { root, repo_name: &repo_name, cache, store, out: &walked };
    walk_dir(&ctx, Path::new(""), &IgnoreChain::default())?;
    let mut walked: Vec<Walked> = walked
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .collect::<Result<_>>()?;
    walked.sort_unstable_by(|a, b| a.path().as_bytes().cmp(b.path().as_bytes()));

    let mut entries: Vec<(RepoPath, Found)> = Vec::with_capacity(walked.len());
    let mut to_hash: Vec<(usize, PathBuf, Stat)> = Vec::new();
    let mut stats: Vec<(Vec<u8>, (Stat, BlobId))> = Vec::new();
    let mut skipped = Vec::new();
    for w in walked {
        match w {
            Walked::Entry(path, found, cached) => {
                if let (Found::File(f), Some(stat)) = (&found, cached) {
                    stats.push((path.as_bytes().to_vec(), (stat, f.id)));
                }
                entries.push((path, found));
            }
            Walked::Hash(path, full, stat) => {
                to_hash.push((entries.len(), full, stat));
                let file = FileEntry {
                    id: BlobId::of(b""),
                    size: stat.size,
                    executable: stat.mode & 0o100 != 0,
                };
                entries.push((path, Found::File(file)));
            }
            Walked::Skipped(_, rel) => skipped.push(rel),
        }
    }
    if to_hash.len() >= 1000 {
        progress.set_length(to_hash.len() as u64);
        progress.set_message("hashing");
    } else {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let hashed: Vec<(usize, Stat, BlobId, u64)> = to_hash
        .par_iter()
        .map(|(index, full, stat)| -> Result<_> {
            let content = fs::read(full).with_context(|| format!("reading {}", full.display()))?;
            progress.inc(1);
            let id = BlobId::of(&content);
            if let Some(store) = store {
                store
                    .put(id.object_id(), &content)
                    .with_context(|| format!("storing {}", full.display()))?;
            }
            Ok((*index, *stat, id, content.len() as u64))
        })
        .collect::<Result<_>>()?;
    progress.finish_and_clear();
    let count = hashed.len();
    for (index, stat, id, len) in hashed {
        let (path, found) = &mut entries[index];
        if let Found::File(f) = found {
            f.id = id;
            f.size = len;
        }
        // The stat taken before reading: if the file changed while it was
        // read, the next scan sees a different stat and hashes it again.
        stats.push((path.as_bytes().to_vec(), (stat, id)));
    }
    Ok(Scan { entries, hashed: count, skipped, stats, started_ns })
}
