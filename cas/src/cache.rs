//! A bounded cache of files on local disk, for what the remote store
//! fetches: verified objects and chunks, chunk lists, pack indexes.
//!
//! Everything in it is immutable and named by its content's id, so a cached
//! file never goes stale; the cache only trades disk for round trips. It
//! holds at most `len_max` bytes: room for a new file is made (least
//! recently used files removed) before the file is written, so the bytes on
//! disk never exceed the limit, temporary files included. Nothing is synced:
//! a file torn by a crash fails its check when read, is removed and fetched
//! again (callers verify what they read, as every store does).
//!
//! One process uses a cache directory at a time (the repository's lock
//! covers it); two processes sharing one would each keep its own count.
//! Which of the files found on open was used last is not known, so they are
//! evicted first, in name order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::vfs::Vfs;

/// A bounded directory of immutable files. See the module documentation.
#[derive(Debug)]
pub struct FileCache {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    len_max: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Name -> (length, last use).
    files: HashMap<String, (u64, u64)>,
    /// Last use -> name: the eviction order.
    by_use: BTreeMap<u64, String>,
    /// Name -> length of the files being written: counted in `len`, but
    /// neither readable nor evictable until their rename is done.
    pending: HashMap<String, u64>,
    /// Bytes on disk or reserved for a file being written.
    len: u64,
    clock: u64,
}

impl State {
    fn touch(&mut self, name: &str) {
        self.clock += 1;
        let clock = self.clock;
        if let Some((_, used)) = self.files.get_mut(name) {
            self.by_use.remove(used);
            *used = clock;
            self.by_use.insert(clock, name.to_owned());
        }
    }

    fn forget(&mut self, name: &str) -> bool {
        match self.files.remove(name) {
            Some((len, used)) => {
                self.by_use.remove(&used);
                self.len -= len;
                true
            }
            None => false,
        }
    }
}

/// A cache file name must be one plain component: ids in hex with a
/// suffix, never a path.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

impl FileCache {
    /// Opens the cache in `dir` (created if missing), holding at most
    /// `len_max` bytes; evicts at once if what is there is over the limit.
    /// Leftover temporary files are removed.
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path, len_max: u64) -> std::io::Result<Self> {
        vfs.create_dir_all(dir)?;
        let mut state = State::default();
        let mut names: Vec<String> =
            vfs.list(dir)?.into_iter().filter(|(_, is_dir)| !is_dir).map(|(n, _)| n).collect();
        names.sort();
        for name in names {
            if name.starts_with(".tmp-") {
                // A temporary file of a write that did not finish.
                vfs.remove(&dir.join(&name))?;
                continue;
            }
            if !valid_name(&name) {
                continue; // not the cache's: left alone
            }
            if let Some(len) = vfs.len(&dir.join(&name))? {
                state.clock += 1;
                state.files.insert(name.clone(), (len, state.clock));
                state.by_use.insert(state.clock, name);
                state.len += len;
            }
        }
        let cache = Self { vfs, dir: dir.to_owned(), len_max, state: Mutex::new(state) };
        let mut state = cache.lock();
        cache.evict(&mut state, 0);
        drop(state);
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update of the state completes under the lock without
        // panicking in between, so a poisoned lock still holds a sound state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes least recently used files until `extra` more bytes fit.
    fn evict(&self, state: &mut State, extra: u64) {
        while state.len + extra > self.len_max {
            let Some((_, name)) = state.by_use.pop_first() else { break };
            if let Some((len, _)) = state.files.remove(&name) {
                state.len -= len;
            }
            // A file that cannot be removed is forgotten all the same; the
            // worst case is a file the count no longer covers, which a
            // reopen counts again.
            let _ = self.vfs.remove(&self.dir.join(&name));
        }
    }

    /// The most bytes the cache holds.
    pub fn len_max(&self) -> u64 {
        self.len_max
    }

    /// The bytes it holds now (and reserves for files being written).
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    /// Whether the cache holds no file.
    pub fn is_empty(&self) -> bool {
        self.lock().files.is_empty()
    }

    /// The file `name`, if cached. Not checked: the caller verifies it and
    /// calls [`FileCache::remove`] if it is damaged.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        if !self.lock().files.contains_key(name) {
            return None;
        }
        match self.vfs.read_file(&self.dir.join(name)) {
            Ok(bytes) => {
                self.lock().touch(name);
                Some(bytes)
            }
            Err(_) => {
                self.lock().forget(name);
                None
            }
        }
    }

    /// Caches `bytes` as `name`, evicting what it must to stay within the
    /// limit. A file larger than the whole cache is not cached. Failures
    /// are ignored: a cache that cannot write only costs round trips.
    pub fn insert(&self, name: &str, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if !valid_name(name) || len > self.len_max {
            return;
        }
        {
            let mut state = self.lock();
            if state.files.contains_key(name) || state.pending.contains_key(name) {
                return;
            }
            self.evict(&mut state, len);
            // Reserved before writing, so that concurrent inserts cannot
            // together go over the limit; pending, so that no reader sees
            // the file half written and no eviction removes it early.
            state.pending.insert(name.to_owned(), len);
            state.len += len;
        }
        let tmp = self.dir.join(format!(".tmp-{}-{name}", std::process::id()));
        let written = self
            .vfs
            .write_file(&tmp, bytes)
            .and_then(|()| self.vfs.rename(&tmp, &self.dir.join(name)));
        let mut state = self.lock();
        state.pending.remove(name);
        if written.is_ok() {
            state.clock += 1;
            let clock = state.clock;
            state.files.insert(name.to_owned(), (len, clock));
            state.by_use.insert(clock, name.to_owned());
        } else {
            state.len -= len;
            drop(state);
            let _ = self.vfs.remove(&tmp);
        }
    }

    /// Removes the file `name` (found damaged).
    pub fn remove(&self, name: &str) {
        if self.lock().forget(name) {
            let _ = self.vfs.remove(&self.dir.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::RealFs;

    fn disk_len(dir: &Path) -> u64 {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    }

    #[test]
    fn never_over_the_limit_and_least_recently_used_goes_first() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::open(Arc::new(RealFs::new()), tmp.path(), 10_000).unwrap();
        for i in 0..100u32 {
            cache.insert(&format!("f{i}"), &vec![i as u8; 300 + (i as usize * 37) % 900]);
            // Keep f0 in use: it must survive.
            assert!(cache.get("f0").is_some(), "f0 evicted at {i}");
            assert!(cache.len() <= 10_000);
            assert!(disk_len(tmp.path()) <= 10_000, "over the limit on disk at {i}");
            assert_eq!(cache.len(), disk_len(tmp.path()));
        }
        assert!(cache.get("f1").is_none(), "an old unused file was evicted");
        assert_eq!(cache.get("f99").unwrap(), vec![99u8; 300 + (99 * 37) % 900]);
        cache.insert("huge", &vec![0u8; 10_001]);
        assert!(cache.get("huge").is_none(), "a file larger than the cache is not cached");
    }

    #[test]
    fn reopen_counts_what_is_there_and_enforces_a_smaller_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(RealFs::new());
        let cache = FileCache::open(vfs.clone(), tmp.path(), 10_000).unwrap();
        for i in 0..10 {
            cache.insert(&format!("f{i}"), &[1u8; 1000]);
        }
        drop(cache);
        std::fs::write(tmp.path().join(".tmp-1-x"), b"leftover").unwrap();
        let cache = FileCache::open(vfs.clone(), tmp.path(), 10_000).unwrap();
        assert_eq!(cache.len(), 10_000);
        assert!(!tmp.path().join(".tmp-1-x").exists(), "leftover temporary files are removed");
        drop(cache);
        let cache = FileCache::open(vfs, tmp.path(), 4_500).unwrap();
        assert_eq!(cache.len(), 4_000);
        assert_eq!(disk_len(tmp.path()), 4_000);
    }

    #[test]
    fn files_not_named_like_the_caches_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("_mine"), b"not the cache's").unwrap();
        let cache = FileCache::open(Arc::new(RealFs::new()), tmp.path(), 100).unwrap();
        assert!(tmp.path().join("_mine").exists());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn concurrent_inserts_and_reads_keep_the_count_true() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::open(Arc::new(RealFs::new()), tmp.path(), 20_000).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let cache = &cache;
                s.spawn(move || {
                    for i in 0..150u32 {
                        // The same names from every thread: inserts race
                        // with reads and evictions of one another's files.
                        let name = format!("f{}", i % 40);
                        cache.insert(&name, &vec![t as u8; 200 + (i as usize * 53) % 1500]);
                        if let Some(bytes) = cache.get(&format!("f{}", (i + 7) % 40)) {
                            assert!(!bytes.is_empty(), "a file is never read half written");
                        }
                        assert!(cache.len() <= 20_000);
                    }
                });
            }
        });
        assert_eq!(cache.len(), disk_len(tmp.path()), "the count covers every file on disk");
        assert!(disk_len(tmp.path()) <= 20_000);
    }
}
