//! The one seam through which the pack store touches the disk.
//!
//! Every file operation of the pack store goes through [`Vfs`], so that
//! tests can swap the real filesystem for [`crate::sim::SimFs`], which keeps
//! written and durable bytes apart and can crash or fail at any step.
//! The calls are path-based and few: what a log-structured store needs.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A held exclusive lock; released when dropped (or when the process dies).
pub struct VfsLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl VfsLock {
    /// Wraps whatever keeps a lock alive.
    pub fn new(holder: impl Send + Sync + 'static) -> Self {
        Self(Box::new(holder))
    }
}

impl std::fmt::Debug for VfsLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VfsLock")
    }
}

/// File operations of the store. Each method documents what is durable
/// after it returns; nothing is durable unless a `sync` says so.
pub trait Vfs: Send + Sync + std::fmt::Debug {
    /// Creates `dir` and its missing parents, durably (the parent of each
    /// new directory is synced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The entries of `dir` as (name, is a directory), sorted by name;
    /// empty if `dir` is missing.
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>>;
    /// Length of the file at `path`; `None` if there is none.
    fn len(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Fills `buf` from `path` at `offset`; an error if the file is shorter.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Appends `bytes` at the end of `path`, creating it if missing. On an
    /// error, any prefix of `bytes` may have been written.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Overwrites the bytes of the existing file `path` at `offset` with
    /// `bytes`, in place (not durable: a crash may leave any part of them
    /// written). On an error, any part of `bytes` may have been written.
    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Cuts `path` to `len` bytes.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the content of `path` durable (`fsync`).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Creates or replaces `path` with `bytes` (not durable, not atomic).
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`. Durable once the directory
    /// is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing), blocking
    /// while another holder has it if `wait` is true, failing with
    /// `WouldBlock` otherwise.
    fn lock(&self, path: &Path, wait: bool) -> io::Result<VfsLock>;

    /// The whole content of `path`.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let len = self.len(path)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        self.read_at(path, 0, &mut buf)?;
        Ok(buf)
    }
}

/// The real filesystem. Keeps pack files and the index open between calls
/// (one system call per append or read); every other file is opened for
/// each operation, so that a ref renamed into place by another process is
/// seen, and so that thousands of refs do not hold thousands of files open.
#[derive(Debug, Default)]
pub struct RealFs {
    readers: Mutex<HashMap<PathBuf, Arc<File>>>,
    writers: Mutex<HashMap<PathBuf, Arc<File>>>,
}

/// Whether `path` is a file kept open: packs and the index.
fn kept_open(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pack") || path.file_name().is_some_and(|n| n == "index")
}

impl RealFs {
    /// A handle on the real filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle to read `path`; never creates it.
    fn reader(&self, path: &Path) -> io::Result<Arc<File>> {
        self.cached(&self.readers, path, || File::open(path))
    }

    /// A handle to append to `path`, created if `create`.
    fn writer(&self, path: &Path, create: bool) -> io::Result<Arc<File>> {
        self.cached(&self.writers, path, || {
            OpenOptions::new().append(true).create(create).open(path)
        })
    }

    fn cached(
        &self,
        cache: &Mutex<HashMap<PathBuf, Arc<File>>>,
        path: &Path,
        open: impl FnOnce() -> io::Result<File>,
    ) -> io::Result<Arc<File>> {
        if !kept_open(path) {
            return open().map(Arc::new);
        }
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(open()?);
        cache.insert(path.to_owned(), f.clone());
        Ok(f)
    }

    fn forget(&self, path: &Path) {
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
    }
}

impl Vfs for RealFs {
    /// Each directory it creates is made durable: its parent is synced.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.as_os_str().is_empty() || fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dir_all(parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => self.sync_dir(parent),
                _ => Ok(()),
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push((name, entry.file_type()?.is_dir()));
            }
        }
        names.sort();
        Ok(names)
    }

    fn len(&self, path: &Path) -> io::Result<Option<u64>> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reader(path)?.read_exact_at(buf, offset)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        (&*self.writer(path, true)?).write_all(bytes)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.writer(path, false)?.set_len(len)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.writer(path, false)?.sync_data()
    }

    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.forget(path);
        OpenOptions::new().write(true).open(path)?.write_all_at(bytes, offset)
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.forget(path);
        fs::write(path, bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        fs::remove_file(path)
    }

    fn lock(&self, path: &Path, wait: bool) -> io::Result<VfsLock> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if wait {
            file.lock()?;
        } else {
            file.try_lock().map_err(|e| match e {
                fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
                fs::TryLockError::Error(e) => e,
            })?;
        }
        Ok(VfsLock::new(file))
    }
}
