//! A read-only mount of a repository moves to its store's new packs after
//! `vst gc`: the store it opened keeps the old packs open (they stay
//! readable, deleted), so without this their space would return only at
//! unmount.
//!
//! Before each read from the store the mount compares the identity of the
//! store's index file with the one it had when the store in use was
//! opened. GC replaces that file whole (a new inode) once the new packs
//! hold everything, before it deletes the old ones; a commit appends to
//! it, which changes nothing here. On a change the store is opened again,
//! and used from then on if it holds the view's roots (the tree mounted,
//! or each branch head of `--all`): GC keeps or drops by reachability, so
//! a store that holds a root holds everything below it. One that does not
//! (the mounted commit was collected) is not moved to: the mount keeps
//! serving from the old packs, as before, and says so once in its log.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::SystemTime;

use vst::Repo;
use vst_cas::{Access, ObjectId, Store};

/// The identity of a file: device, inode, and birth time where the
/// filesystem records one (an inode number freed by one GC may be reused
/// by the next).
type Stamp = (u64, u64, Option<SystemTime>);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.created().ok()))
}

/// How a mount of a local repository opens its store again.
#[derive(Debug)]
pub(crate) struct Follow {
    repo_dir: PathBuf,
    /// The pack store's index file.
    index: PathBuf,
    /// The index file's identity when the store in use was opened (or
    /// last looked at); held while one thread opens the store again.
    seen: Mutex<Option<Stamp>>,
    /// What a new store must hold to serve the view.
    roots: Vec<ObjectId>,
}

impl Follow {
    /// How to follow the store of `repo` (`None` unless its objects are in
    /// a local pack store), serving a view whose roots are `roots`. The
    /// index file is looked at now, after `repo` was opened: a GC that
    /// replaces it in between is not followed (the mount reads the old
    /// packs, correctly, and their space returns at unmount or after the
    /// next GC).
    pub(crate) fn new(repo: &Repo, roots: Vec<ObjectId>) -> Option<Self> {
        let index = repo.pack_store()?.index_path();
        Some(Self {
            repo_dir: repo.dir().to_owned(),
            seen: Mutex::new(stamp(&index)),
            index,
            roots,
        })
    }

    /// The store to use from now on, if the one in use was replaced by a
    /// GC and the new one holds the view. Cheap when nothing changed (a
    /// stat); a thread that finds another one opening the store goes on
    /// with the current one.
    pub(crate) fn moved(&self, log: &dyn Fn(&str)) -> Option<Arc<dyn Store>> {
        let mut seen = match self.seen.try_lock() {
            Ok(seen) => seen,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
        };
        let now = stamp(&self.index);
        if now == *seen || now.is_none() {
            return None;
        }
        // Looked at once per change, whatever comes of it.
        *seen = now;
        let repo = match Repo::open_with(
            Arc::new(vst_cas::vfs::RealFs::new()),
            &self.repo_dir,
            Access::ReadOnly,
        ) {
            Ok(repo) => repo,
            Err(e) => {
                log(&format!(
                    "the store was rewritten; opening it again failed ({e}): still reading the packs opened before"
                ));
                return None;
            }
        };
        let store = repo.store();
        for root in &self.roots {
            match store.contains(root) {
                Ok(true) => {}
                Ok(false) => {
                    log(&format!(
                        "the store was rewritten without {root}, which this mount serves: still reading the packs opened before (their space returns at unmount)"
                    ));
                    return None;
                }
                Err(e) => {
                    log(&format!(
                        "the store was rewritten; looking for {root} in it failed ({e}): still reading the packs opened before"
                    ));
                    return None;
                }
            }
        }
        Some(store)
    }
}
