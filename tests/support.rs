//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use vst::{EntryKind, RepoPath, TreeId, read};
use vst_cas::{MemStore, ObjectId, Store};

/// A path from a string known to be valid.
pub fn p(s: &str) -> RepoPath {
    RepoPath::try_from(s).unwrap()
}

/// A fresh memory store, shared.
pub fn mem() -> Arc<MemStore> {
    Arc::new(MemStore::new())
}

/// A path's entry as the tests compare it: what a user would see on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plain {
    File { content: Vec<u8>, executable: bool },
    Symlink(Vec<u8>),
    Dir,
}

/// Every entry under `root` on disk, keyed by path bytes relative to it.
/// Symlinks are read, never followed.
pub fn read_disk(root: &Path) -> BTreeMap<Vec<u8>, Plain> {
    let mut out = BTreeMap::new();
    read_disk_into(root, &[], &mut out);
    out
}

fn read_disk_into(dir: &Path, prefix: &[u8], out: &mut BTreeMap<Vec<u8>, Plain>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mut key = prefix.to_vec();
        if !key.is_empty() {
            key.push(b'/');
        }
        key.extend_from_slice(entry.file_name().as_bytes());
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let plain = if meta.file_type().is_symlink() {
            Plain::Symlink(fs::read_link(entry.path()).unwrap().as_os_str().as_bytes().to_vec())
        } else if meta.is_dir() {
            read_disk_into(&entry.path(), &key, out);
            Plain::Dir
        } else {
            Plain::File {
                content: fs::read(entry.path()).unwrap(),
                executable: meta.permissions().mode() & 0o100 != 0,
            }
        };
        out.insert(key, plain);
    }
}

/// Every entry of a committed tree, in the same form as [`read_disk`].
pub fn read_tree_plain(store: &dyn Store, tree: TreeId) -> BTreeMap<Vec<u8>, Plain> {
    let mut out = BTreeMap::new();
    read::walk(store, tree, &mut |path, kind| {
        let plain = match kind {
            EntryKind::File(f) => Plain::File {
                content: store.get(&f.id.object_id())?.to_vec(),
                executable: f.executable,
            },
            EntryKind::Symlink(t) => Plain::Symlink(t.as_bytes().to_vec()),
            EntryKind::Dir(_) => Plain::Dir,
        };
        out.insert(path.as_bytes().to_vec(), plain);
        Ok(())
    })
    .unwrap();
    out
}

/// Stores raw bytes under their hash: a crafted object, as an attacker
/// with write access to a store could make one.
pub fn put_raw(store: &MemStore, bytes: &[u8]) -> ObjectId {
    let id = ObjectId::of(bytes);
    store.put(id, bytes).unwrap();
    id
}

pub mod craft;

/// Hand-made encodings, independent of the library's encoder, for crafting
/// trees the library itself would refuse to build.
pub use craft::raw;

/// The repository in `dir`: opened if it exists, else created (with a
/// local pack store).
pub fn repo(dir: &Path) -> vst::Repo {
    match vst::Repo::open(dir) {
        Ok(repo) => repo,
        Err(vst::Error::NotARepository { .. }) => {
            vst::Repo::init(dir, &vst::repo::InitStore::Local, &|_| None).unwrap()
        }
        Err(e) => panic!("opening {}: {e}", dir.display()),
    }
}

/// A store that records the most bytes one read handed out and one write
/// took (a batch counts whole).
#[derive(Debug)]
pub struct Largest<S> {
    inner: S,
    read: std::sync::atomic::AtomicU64,
    written: std::sync::atomic::AtomicU64,
    gets: std::sync::atomic::AtomicU64,
}

impl<S: vst_cas::Store> Largest<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            read: Default::default(),
            written: Default::default(),
            gets: Default::default(),
        }
    }
    /// How many objects were read (`get` and `get_many`).
    pub fn gets(&self) -> u64 {
        self.gets.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// The most bytes one read handed out and one write took.
    pub fn largest(&self) -> (u64, u64) {
        (
            self.read.load(std::sync::atomic::Ordering::SeqCst),
            self.written.load(std::sync::atomic::Ordering::SeqCst),
        )
    }
}

impl<S: vst_cas::Store> vst_cas::Store for Largest<S> {
    fn put(&self, id: vst_cas::ObjectId, bytes: &[u8]) -> Result<(), vst_cas::StoreError> {
        self.written.fetch_max(bytes.len() as u64, std::sync::atomic::Ordering::SeqCst);
        self.inner.put(id, bytes)
    }
    fn put_batch(&self, objects: &[(vst_cas::ObjectId, &[u8])]) -> Result<(), vst_cas::StoreError> {
        let len: usize = objects.iter().map(|(_, b)| b.len()).sum();
        self.written.fetch_max(len as u64, std::sync::atomic::Ordering::SeqCst);
        self.inner.put_batch(objects)
    }
    fn get(&self, id: &vst_cas::ObjectId) -> Result<bytes::Bytes, vst_cas::StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let got = self.inner.get(id)?;
        self.read.fetch_max(got.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(got)
    }
    fn get_many(
        &self,
        ids: &[vst_cas::ObjectId],
    ) -> Result<Vec<bytes::Bytes>, vst_cas::StoreError> {
        self.gets.fetch_add(ids.len() as u64, std::sync::atomic::Ordering::SeqCst);
        let got = self.inner.get_many(ids)?;
        let len: usize = got.iter().map(|b| b.len()).sum();
        self.read.fetch_max(len as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(got)
    }
    fn read_range(
        &self,
        id: &vst_cas::ObjectId,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes, vst_cas::StoreError> {
        let got = self.inner.read_range(id, offset, len)?;
        self.read.fetch_max(got.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(got)
    }
    fn contains(&self, id: &vst_cas::ObjectId) -> Result<bool, vst_cas::StoreError> {
        self.inner.contains(id)
    }
    fn object_len(&self, id: &vst_cas::ObjectId) -> Result<Option<u64>, vst_cas::StoreError> {
        self.inner.object_len(id)
    }
    fn sync(&self) -> Result<(), vst_cas::StoreError> {
        self.inner.sync()
    }
    fn put_reader(
        &self,
        reader: &mut dyn std::io::Read,
    ) -> Result<(vst_cas::ObjectId, u64), vst_cas::StoreError> {
        self.inner.put_reader(reader)
    }
    fn chunks(
        &self,
        id: &vst_cas::ObjectId,
    ) -> Result<Option<Vec<(vst_cas::ObjectId, u64)>>, vst_cas::StoreError> {
        self.inner.chunks(id)
    }
}
