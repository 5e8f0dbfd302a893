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

/// Hand-made encodings, independent of the library's encoder, for crafting
/// trees the library itself would refuse to build.
pub mod raw {
    pub fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn name(name: &[u8], out: &mut Vec<u8>) {
        varint(name.len() as u64, out);
        out.extend_from_slice(name);
    }

    pub fn file(name_bytes: &[u8], id: &[u8; 32], size: u64, exec: bool) -> Vec<u8> {
        let mut out = Vec::new();
        name(name_bytes, &mut out);
        out.push(0); // tag: file
        out.extend_from_slice(id);
        varint(size, &mut out);
        out.push(exec as u8);
        out
    }

    pub fn dir(name_bytes: &[u8], id: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::new();
        name(name_bytes, &mut out);
        out.push(1); // tag: directory
        out.extend_from_slice(id);
        out
    }

    pub fn symlink(name_bytes: &[u8], target: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        name(name_bytes, &mut out);
        out.push(2); // tag: symlink
        varint(target.len() as u64, &mut out);
        out.extend_from_slice(target);
        out
    }

    pub fn tree(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![1u8];
        varint(entries.len() as u64, &mut out);
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }
}

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
