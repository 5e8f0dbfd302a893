//! Reading committed state back from the store: commits, trees, paths,
//! file content, and walks over a whole tree.

use std::collections::HashMap;

use bytes::Bytes;
use vst_cas::{Store, StoreError};

use crate::commit::Commit;
use crate::error::{Error, ObjectKind, Result};
use crate::id::{CommitId, TreeId};
use crate::limits::{PATH_DEPTH_MAX, WALK_ENTRIES_MAX};
use crate::name::RepoPath;
use crate::tree::{EntryKind, FileEntry, Tree, TreeEntry};

/// The commit `id`, verified and decoded.
pub fn read_commit(store: &dyn Store, id: CommitId) -> Result<Commit> {
    let bytes = store.get(&id.object_id())?;
    Commit::decode(&bytes).map_err(|source| Error::Decode {
        kind: ObjectKind::Commit,
        id: id.object_id(),
        source,
    })
}

/// The tree `id`, verified and decoded.
pub fn read_tree(store: &dyn Store, id: TreeId) -> Result<Tree> {
    let bytes = store.get(&id.object_id())?;
    Tree::decode(&bytes).map_err(|source| Error::Decode {
        kind: ObjectKind::Tree,
        id: id.object_id(),
        source,
    })
}

/// The entry at `path` under the tree `root`; `None` if nothing is there.
/// The root itself is `EntryKind::Dir(root)`.
pub fn lookup(store: &dyn Store, root: TreeId, path: &RepoPath) -> Result<Option<EntryKind>> {
    let mut current = EntryKind::Dir(root);
    let mut walked = RepoPath::root();
    for name in path.components() {
        let EntryKind::Dir(dir) = current else {
            return Err(Error::NotADirectory { path: walked });
        };
        walked = walked.join_unchecked(name);
        match read_tree(store, dir)?.get(name) {
            Some(entry) => current = entry.kind.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// The tree of the directory at `path` under `root`.
pub fn list_dir(store: &dyn Store, root: TreeId, path: &RepoPath) -> Result<Tree> {
    match lookup(store, root, path)? {
        Some(EntryKind::Dir(id)) => read_tree(store, id),
        Some(_) => Err(Error::NotADirectory { path: path.clone() }),
        None => Err(Error::NotFound { path: path.clone() }),
    }
}

/// The content of the file at `path` under `root`, verified against its
/// id and its recorded size (see [`read_blob`]).
pub fn read_file(store: &dyn Store, root: TreeId, path: &RepoPath) -> Result<Bytes> {
    match lookup(store, root, path)? {
        Some(EntryKind::File(f)) => read_blob(store, &f),
        Some(EntryKind::Dir(_)) => Err(Error::IsADirectory { path: path.clone() }),
        Some(EntryKind::Symlink(_)) => Err(Error::NotAFile { path: path.clone() }),
        None => Err(Error::NotFound { path: path.clone() }),
    }
}

/// Writes the content of the file at `path` under `root` to `out`, a few
/// chunks at a time (see [`vst_cas::stream::ObjectReader`]): memory stays
/// bounded whatever the file's size. Returns its length. Each chunk is
/// verified before it is written and the whole file at the end: on an
/// error, what was written must not be taken for the file.
pub fn copy_file(
    store: &dyn Store,
    root: TreeId,
    path: &RepoPath,
    out: &mut dyn std::io::Write,
) -> Result<u64> {
    let id = match lookup(store, root, path)? {
        Some(EntryKind::File(f)) => {
            // The size the tree records is the file's size, for every
            // reader (the mount, checkout, fsck).
            check_file_len(store, &f)?;
            f.id.object_id()
        }
        Some(EntryKind::Dir(_)) => return Err(Error::IsADirectory { path: path.clone() }),
        Some(EntryKind::Symlink(_)) => return Err(Error::NotAFile { path: path.clone() }),
        None => return Err(Error::NotFound { path: path.clone() }),
    };
    let mut reader = vst_cas::stream::ObjectReader::new(store, &id)?;
    let mut len = 0u64;
    while let Some(piece) = reader.next_piece()? {
        out.write_all(&piece).map_err(|source| Error::Output { source })?;
        len += piece.len() as u64;
    }
    out.flush().map_err(|source| Error::Output { source })?;
    Ok(len)
}

/// The content of `file`, verified against its id, and of the size the
/// entry records: a size that disagrees with the blob is
/// [`Error::SizeMismatch`], never a prefix or more bytes than recorded.
pub fn read_blob(store: &dyn Store, file: &FileEntry) -> Result<Bytes> {
    let bytes = store.get(&file.id.object_id())?;
    check_size(file, bytes.len() as u64)?;
    Ok(bytes)
}

/// Checks, without reading it, that the blob of `file` is stored with the
/// length the entry records ([`Store::object_len`]: the store's record of
/// the length, as [`Store::contains`] trusts its record of the object).
/// What serves part of a file calls this, so that every reader agrees on
/// a file's size.
pub fn check_file_len(store: &dyn Store, file: &FileEntry) -> Result<()> {
    let id = file.id.object_id();
    match store.object_len(&id)? {
        Some(len) => check_size(file, len),
        None => Err(StoreError::NotFound { id }.into()),
    }
}

fn check_size(file: &FileEntry, actual: u64) -> Result<()> {
    if actual == file.size {
        Ok(())
    } else {
        Err(Error::SizeMismatch { id: file.id, recorded: file.size, actual })
    }
}

/// Checks that the entries of `tree`, a directory `depth` components below
/// the root, stay within [`PATH_DEPTH_MAX`] components: a directory at the
/// deepest level must be empty. Every reader that recurses into trees calls
/// this before recursing, so recursion stops at `PATH_DEPTH_MAX + 1` levels.
pub(crate) fn check_depth(depth: usize, id: TreeId, tree: &Tree) -> Result<()> {
    if depth >= PATH_DEPTH_MAX && !tree.is_empty() {
        Err(Error::TooDeep { id: id.object_id() })
    } else {
        Ok(())
    }
}

/// Calls `visit` on every entry under `root`, in tree order: pre-order,
/// siblings by name. Stops at the first error `visit` returns. Nesting is
/// bounded by [`PATH_DEPTH_MAX`], and the entries visited by
/// [`WALK_ENTRIES_MAX`]: a tree over it is [`Error::WalkTooLarge`] before
/// `visit` is called.
pub fn walk(
    store: &dyn Store,
    root: TreeId,
    visit: &mut dyn FnMut(&RepoPath, &EntryKind) -> Result<()>,
) -> Result<()> {
    WalkBudget::default().spend_walk(store, root, 0)?;
    walk_dir(store, root, &RepoPath::root(), 0, visit)
}

/// What one walk may still visit: [`WALK_ENTRIES_MAX`] entries at most,
/// an entry counted once for every path to it.
#[derive(Debug, Default)]
pub(crate) struct WalkBudget {
    spent: u64,
    /// The entries under each tree counted so far, at every level (what a
    /// full walk of it visits).
    expanded: HashMap<TreeId, u64>,
}

impl WalkBudget {
    /// Spends `n` entries visited in a walk of `id`.
    pub(crate) fn spend(&mut self, id: TreeId, n: u64) -> Result<()> {
        self.spent = self.spent.saturating_add(n);
        if self.spent > WALK_ENTRIES_MAX {
            return Err(Error::WalkTooLarge { id: id.object_id() });
        }
        Ok(())
    }

    /// Spends what a full walk of `id`, `depth` components below the root,
    /// visits, before any of it is walked: each distinct tree under it is
    /// read once however often it is reused, so a tree that expands past
    /// the budget is refused after reading its few distinct trees, not
    /// after walking its paths. Nesting is checked where a tree is first
    /// read (the walk that follows checks it everywhere).
    pub(crate) fn spend_walk(&mut self, store: &dyn Store, id: TreeId, depth: usize) -> Result<()> {
        let left = WALK_ENTRIES_MAX.saturating_sub(self.spent);
        let n = self.expand(store, id, depth, id, left)?;
        self.spend(id, n)
    }

    /// The entries a full walk of `id` visits; [`Error::WalkTooLarge`]
    /// (for `root`) as soon as they pass `left`.
    fn expand(
        &mut self,
        store: &dyn Store,
        id: TreeId,
        depth: usize,
        root: TreeId,
        left: u64,
    ) -> Result<u64> {
        if let Some(&n) = self.expanded.get(&id) {
            return Ok(n);
        }
        let tree = read_tree(store, id)?;
        check_depth(depth, id, &tree)?;
        let mut n = tree.len() as u64;
        for entry in tree.entries() {
            if n > left {
                return Err(Error::WalkTooLarge { id: root.object_id() });
            }
            if let EntryKind::Dir(sub) = entry.kind {
                n = n.saturating_add(self.expand(store, sub, depth + 1, root, left)?);
            }
        }
        if n > left {
            return Err(Error::WalkTooLarge { id: root.object_id() });
        }
        self.expanded.insert(id, n);
        Ok(n)
    }
}

fn walk_dir(
    store: &dyn Store,
    id: TreeId,
    path: &RepoPath,
    depth: usize,
    visit: &mut dyn FnMut(&RepoPath, &EntryKind) -> Result<()>,
) -> Result<()> {
    let tree = read_tree(store, id)?;
    check_depth(depth, id, &tree)?;
    for entry in tree.entries() {
        let child = path.join_unchecked(entry.name.as_bytes());
        visit(&child, &entry.kind)?;
        if let EntryKind::Dir(sub) = entry.kind {
            walk_dir(store, sub, &child, depth + 1, visit)?;
        }
    }
    Ok(())
}

/// Pairs up the entries of two sorted entry lists by name: each item is
/// (entry in `a`, entry in `b`), with `None` where a name is on one side
/// only. Diff and checkout both walk two trees with it.
pub(crate) fn merge<'a>(
    a: &'a [TreeEntry],
    b: &'a [TreeEntry],
) -> impl Iterator<Item = (Option<&'a TreeEntry>, Option<&'a TreeEntry>)> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let pair = match (a.get(i), b.get(j)) {
            (None, None) => return None,
            (Some(x), None) => (Some(x), None),
            (None, Some(y)) => (None, Some(y)),
            (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                std::cmp::Ordering::Less => (Some(x), None),
                std::cmp::Ordering::Greater => (None, Some(y)),
                std::cmp::Ordering::Equal => (Some(x), Some(y)),
            },
        };
        i += pair.0.is_some() as usize;
        j += pair.1.is_some() as usize;
        Some(pair)
    })
}
