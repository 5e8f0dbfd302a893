//! The working set: a persistent, copy-on-write tree of directories that
//! every snapshot shares, and the one-pass incremental commit over it.
//!
//! # Layout
//!
//! The working set is a trie of directories. Each [`Dir`] is an
//! `imbl::OrdMap` from [`Name`] to [`Node`], and a node that is a directory
//! holds its `Dir` inline. Cloning a `Dir` copies one pointer, so
//! [`WorkingSet::snapshot`] is O(1); a write after a snapshot copies only the
//! B-tree nodes on the path it changes.
//!
//! Each `Dir` caches the id of its tree as of the last commit, or `None`
//! once anything below it changed. A write clears the cache on every
//! directory from the root down to the changed entry. That chain of cleared
//! caches *is* the parent map of the changed paths: commit follows it from
//! the root and visits only changed directories, encoding and hashing them
//! bottom-up. Unchanged subtrees keep their cached ids and are never
//! visited, so a commit costs O(changed directories x their entries), not
//! O(tree).
//!
//! **Invariant:** if a `Dir` has `id == Some(t)`, then `t` is the id of its
//! current contents and every directory below it also has `Some` id. If it
//! is not *prepared* in the current generation as well, every tree and blob
//! under `t` is in the store.
//!
//! [`WorkingSet::hash_trees`] computes ids ahead of a commit without storing
//! anything: a directory it hashes is marked with the working set's current
//! generation, and its encoding goes into the working set's table of
//! prepared trees (counted: several directories may have the same tree)
//! until the next commit stores the whole table and starts a new
//! generation. A caller with idle time between changes and a commit (the
//! writable mount) moves the hashing off the commit's path that way, and
//! the commit does not walk the prepared directories at all. An edit below
//! a prepared directory clears its id and takes one count off its tree, so
//! a tree that no directory has any more is not stored. (A prepared
//! directory that is removed keeps its count: its tree is stored, unused,
//! as the blobs of files written and removed before a commit are.)

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use rayon::prelude::*;
use smallvec::SmallVec;
use vst_cas::{Durability, ObjectId, Store};

use crate::blob_hash::{PARALLEL_BATCH_LEN_MIN, hash_blob, hash_blobs};
use crate::commit::{Commit, Timestamp};
use crate::error::{Error, Result};
use crate::id::{BlobId, CommitId, TreeId};
use crate::limits::{PATH_DEPTH_MAX, TREE_ENTRIES_MAX};
use crate::name::{Name, RepoPath};
use crate::read;
use crate::tree::{EntryKind, FileEntry, SymlinkTarget, WireKind, encode_entries};

/// A commit with at least this many changed directories hashes sibling
/// subtrees on all cores. Measured: a first commit of 10k files (about 1,200
/// new directories) is 1.5x faster on two cores, while commits touching a
/// few hundred directories were 5-25% slower in parallel. Measured with `cargo bench --bench
/// commit -- import`: see ARCHITECTURE.md.
pub const PARALLEL_DIRTY_DIRS_MIN: usize = 1024;

/// A directory in the working set.
#[derive(Clone, Default)]
pub(crate) struct Dir {
    pub(crate) children: OrdMap<Name, Node>,
    /// The id of this directory's tree, if nothing below it changed since it
    /// was last computed.
    pub(crate) id: Option<TreeId>,
    /// The generation in which [`WorkingSet::hash_trees`] computed `id`
    /// (0: a commit did, or it was loaded). The tree is not stored yet while
    /// that is the working set's current generation.
    prepared: u64,
}

/// An encoded tree, shared by the working sets cloned from one another.
type Encoded = Arc<Vec<u8>>;

/// The trees [`WorkingSet::hash_trees`] encoded and no commit stored yet:
/// each with how many of the working set's directories have it.
type Prepared = HashMap<ObjectId, (Encoded, usize)>;

impl Dir {
    /// The id of this directory's tree if the store holds it, in a working
    /// set whose current generation is `generation`.
    fn stored_id(&self, generation: u64) -> Option<TreeId> {
        if self.prepared == generation { None } else { self.id }
    }
}

/// An entry of a [`Dir`].
#[derive(Clone)]
pub(crate) enum Node {
    File(FileEntry),
    Symlink(SymlinkTarget),
    Dir(Dir),
}

/// What is at a path of a working set or a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stat {
    /// A regular file.
    File(FileEntry),
    /// A symbolic link.
    Symlink(SymlinkTarget),
    /// A directory, with its tree id if it is unchanged since the last
    /// commit.
    Dir(Option<TreeId>),
}

impl Node {
    fn stat(&self, generation: u64) -> Stat {
        match self {
            Node::File(f) => Stat::File(*f),
            Node::Symlink(t) => Stat::Symlink(t.clone()),
            Node::Dir(d) => Stat::Dir(d.stored_id(generation)),
        }
    }
}

/// A frozen view of a working set, taken in O(1) by
/// [`WorkingSet::snapshot`]. Later changes to the working set never show in
/// it.
#[derive(Clone)]
pub struct Snapshot {
    root: Dir,
    store: Arc<dyn Store>,
    head: Option<CommitId>,
    /// The generation of prepared trees not yet stored (at least 1; see
    /// [`Dir::prepared`]).
    generation: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("head", &self.head).field("tree", &self.root.id).finish()
    }
}

impl Snapshot {
    /// What is at `path`, if anything.
    pub fn stat(&self, path: &RepoPath) -> Option<Stat> {
        if path.is_root() {
            return Some(Stat::Dir(self.root.stored_id(self.generation)));
        }
        let (parent, name) = path.split_last()?;
        let node = resolve_dir(&self.root, &parent).ok()?.children.get(name)?;
        Some(node.stat(self.generation))
    }

    /// The content of the file at `path`, read from the store (verified).
    pub fn read(&self, path: &RepoPath) -> Result<Bytes> {
        match self.stat(path) {
            Some(Stat::File(f)) => Ok(self.store.get(&f.id.object_id())?),
            Some(Stat::Dir(_)) => Err(Error::IsADirectory { path: path.clone() }),
            Some(Stat::Symlink(_)) => Err(Error::NotAFile { path: path.clone() }),
            None => Err(Error::NotFound { path: path.clone() }),
        }
    }

    /// The entries of the directory at `path`, sorted by name.
    pub fn list_dir(&self, path: &RepoPath) -> Result<Vec<(Name, Stat)>> {
        let dir = resolve_dir(&self.root, path)?;
        Ok(dir
            .children
            .iter()
            .map(|(name, node)| (name.clone(), node.stat(self.generation)))
            .collect())
    }

    /// Every entry below the root, in tree order (pre-order, siblings by
    /// name).
    pub fn walk(&self) -> Vec<(RepoPath, Stat)> {
        let mut out = Vec::new();
        walk_dir(&self.root, &RepoPath::root(), self.generation, &mut out);
        out
    }

    /// The root tree's id if nothing changed since it was last stored.
    pub fn tree_id(&self) -> Option<TreeId> {
        self.root.stored_id(self.generation)
    }

    /// The commit this state descends from.
    pub fn head(&self) -> Option<CommitId> {
        self.head
    }

    /// The store content is read from.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

fn walk_dir(dir: &Dir, path: &RepoPath, generation: u64, out: &mut Vec<(RepoPath, Stat)>) {
    for (name, node) in dir.children.iter() {
        let child = path.join_unchecked(name.as_bytes());
        out.push((child.clone(), node.stat(generation)));
        if let Node::Dir(d) = node {
            walk_dir(d, &child, generation, out);
        }
    }
}

/// The directory at `path`; the error names the first component that is
/// missing or not a directory (built only on that path).
fn resolve_dir<'a>(root: &'a Dir, path: &RepoPath) -> Result<&'a Dir> {
    let mut dir = root;
    for (depth, name) in path.components().enumerate() {
        match dir.children.get(name) {
            Some(Node::Dir(d)) => dir = d,
            Some(_) => return Err(Error::NotADirectory { path: path.prefix(depth + 1) }),
            None => return Err(Error::NotFound { path: path.prefix(depth + 1) }),
        }
    }
    Ok(dir)
}

/// The mutable tree of files that commits are taken from.
///
/// File content goes into the store when it is written (hashed then, not at
/// commit), so a commit only encodes and hashes the directories that
/// changed. The store must not be garbage-collected behind a working set's
/// back.
#[derive(Clone)]
pub struct WorkingSet {
    current: Snapshot,
    /// How many directories were created or lost their cached id since the
    /// last commit (an upper bound: removals do not subtract). Commit
    /// decides from it, in O(1), whether hashing trees on all cores pays.
    dirty_dirs: usize,
    /// Trees hashed ahead and not stored yet, of generation
    /// `current.generation`.
    prepared: Prepared,
}

impl std::fmt::Debug for WorkingSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkingSet")
            .field("current", &self.current)
            .field("dirty_dirs", &self.dirty_dirs)
            .field("prepared_trees", &self.prepared.len())
            .finish()
    }
}

/// A file to write with [`WorkingSet::write_batch`].
#[derive(Clone, Copy, Debug)]
pub struct FileWrite<'a> {
    /// Where.
    pub path: &'a RepoPath,
    /// The whole content.
    pub content: &'a [u8],
}

/// How to make a commit.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// Who makes it.
    pub author: String,
    /// Why.
    pub message: String,
    /// When; `None` means now.
    pub time: Option<Timestamp>,
    /// Whether the commit is synced to stable storage before it returns.
    pub durability: Durability,
    /// Parents after the first: the commits a merge brings in.
    pub merged: Vec<CommitId>,
}

impl WorkingSet {
    /// An empty working set with no commits, over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            current: Snapshot { root: Dir::default(), store, head: None, generation: 1 },
            dirty_dirs: 1,
            prepared: Prepared::new(),
        }
    }

    /// A working set holding the tree of `commit`, with `commit` as its head.
    pub fn from_commit(store: Arc<dyn Store>, commit: CommitId) -> Result<Self> {
        let tree = read::read_commit(store.as_ref(), commit)?.tree;
        let mut ws = Self::from_tree(store, tree)?;
        ws.current.head = Some(commit);
        Ok(ws)
    }

    /// A working set holding `tree`, with no head. Every tree is read and
    /// checked; a subtree that occurs several times is read once and shared.
    pub fn from_tree(store: Arc<dyn Store>, tree: TreeId) -> Result<Self> {
        let mut memo = HashMap::new();
        let (root, _) = load_dir(store.as_ref(), tree, 0, &mut memo)?;
        Ok(Self {
            current: Snapshot { root, store, head: None, generation: 1 },
            dirty_dirs: 0,
            prepared: Prepared::new(),
        })
    }

    /// Makes `head` the commit the next commit descends from, without
    /// changing the content (for a working set rebuilt from a disk scan).
    pub fn set_head(&mut self, head: Option<CommitId>) {
        self.current.head = head;
    }

    /// About how many directories the next commit will encode: those
    /// created or changed since the last commit (an upper bound, since
    /// removals are not subtracted). Commit uses it to decide whether
    /// hashing trees on all cores pays.
    pub fn changed_dirs_estimate(&self) -> usize {
        self.dirty_dirs
    }

    /// A frozen copy of the current state, in O(1).
    pub fn snapshot(&self) -> Snapshot {
        self.current.clone()
    }

    /// What is at `path`, if anything.
    pub fn stat(&self, path: &RepoPath) -> Option<Stat> {
        self.current.stat(path)
    }

    /// The content of the file at `path`.
    pub fn read(&self, path: &RepoPath) -> Result<Bytes> {
        self.current.read(path)
    }

    /// The entries of the directory at `path`, sorted by name.
    pub fn list_dir(&self, path: &RepoPath) -> Result<Vec<(Name, Stat)>> {
        self.current.list_dir(path)
    }

    /// The commit the working set descends from.
    pub fn head(&self) -> Option<CommitId> {
        self.current.head
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.current.store
    }

    /// Writes a regular file: hashes `content`, puts it into the store, and
    /// records it at `path`. Missing parent directories are created. An
    /// existing file keeps its executable bit; a symlink is replaced; a
    /// directory is an error.
    pub fn write(&mut self, path: &RepoPath, content: &[u8]) -> Result<BlobId> {
        let id = hash_blob(content);
        self.current.store.put(id.object_id(), content)?;
        self.record_content(path, id, content.len() as u64)?;
        Ok(id)
    }

    /// Writes several files: hashes them ([`crate::hash_blobs`]: side by
    /// side in SIMD lanes, on all cores when the batch is large enough to
    /// pay for waking them, [`crate::PARALLEL_BATCH_LEN_MIN`]), puts the content
    /// into the store in one batch (beside the recording, on another core,
    /// when as large), and records each file
    /// as [`WorkingSet::write`] would. On an error, the files before the
    /// failing one stay written.
    pub fn write_batch(&mut self, files: &[FileWrite<'_>]) -> Result<()> {
        let contents: Vec<&[u8]> = files.iter().map(|f| f.content).collect();
        let ids = hash_blobs(&contents);
        // One batch rather than puts from the hashing threads: measured, the
        // store's lock contended and made a 1000-file batch 8% slower.
        let objects: Vec<(ObjectId, &[u8])> =
            ids.iter().zip(files).map(|(id, f)| (id.object_id(), f.content)).collect();
        let total: usize = contents.iter().map(|c| c.len()).sum();
        if total < PARALLEL_BATCH_LEN_MIN || files.len() < 2 {
            self.current.store.put_batch(&objects)?;
            return self.record_batch(files, &ids);
        }
        // Large enough to pay for a second thread: the store copies the
        // content while this one records the files (measured on an idle
        // 2-core machine, `seed/write_commit/1000`: 0.47 ms to 0.31 ms). A
        // failed put undoes the records (from a clone of the root, O(1),
        // taken first), so that the outcome is the sequential one.
        let store = Arc::clone(&self.current.store);
        let before = (self.current.root.clone(), self.dirty_dirs, self.prepared.clone());
        // (`join` runs its first closure on this thread: the records, so
        // that the new directories are allocated where they are used.)
        let (recorded, put) =
            rayon::join(|| self.record_batch(files, &ids), || store.put_batch(&objects));
        if let Err(e) = put {
            (self.current.root, self.dirty_dirs, self.prepared) = before;
            return Err(e.into());
        }
        recorded
    }

    /// Records each of `files` with its id, as [`WorkingSet::record_content`]
    /// in order would, but walking down to each directory once: the files
    /// are grouped by parent directory (in order of first appearance, each
    /// group in batch order), and each group is recorded in one edit.
    ///
    /// Grouping reorders files of different directories, which matters
    /// only when one fails (a file where another file needs a directory, a
    /// full directory): then the state from before the batch is put back
    /// (an O(1) clone of the root, taken first) and the files are recorded
    /// one by one, so the outcome, error included, is that of the plain
    /// loop.
    fn record_batch(&mut self, files: &[FileWrite<'_>], ids: &[BlobId]) -> Result<()> {
        if files.len() < 2 {
            return self.record_each(files, ids);
        }
        let mut groups: Vec<SmallVec<[usize; 8]>> = Vec::new();
        let mut group_of: HashMap<&[u8], usize> = HashMap::new();
        let mut last: Option<(&[u8], usize)> = None;
        for (i, f) in files.iter().enumerate() {
            let Some((parent, _)) = f.path.split_last_bytes() else {
                // The root is no file: let the plain loop report it.
                return self.record_each(files, ids);
            };
            // Consecutive files are often in one directory: skip the map.
            let g = match last {
                Some((p, g)) if p == parent => g,
                _ => *group_of.entry(parent).or_insert_with(|| {
                    groups.push(SmallVec::new());
                    groups.len() - 1
                }),
            };
            last = Some((parent, g));
            groups[g].push(i);
        }
        let before = (self.current.root.clone(), self.dirty_dirs, self.prepared.clone());
        for group in &groups {
            let first = files[group[0]].path;
            let recorded = self.edit_dir(first, "written", Missing::Create, |dir| {
                let mut edited = Edited::Unchanged;
                for &i in group {
                    let f = &files[i];
                    let (_, name) = f.path.split_last_bytes().expect("grouped paths have a parent");
                    if record_leaf(dir, name, f.path, ids[i], f.content.len() as u64)?
                        == Edited::Changed
                    {
                        edited = Edited::Changed;
                    }
                }
                Ok(edited)
            });
            if recorded.is_err() {
                (self.current.root, self.dirty_dirs, self.prepared) = before;
                return self.record_each(files, ids);
            }
        }
        Ok(())
    }

    /// Records `files` one by one, stopping at the first error.
    fn record_each(&mut self, files: &[FileWrite<'_>], ids: &[BlobId]) -> Result<()> {
        for (f, id) in files.iter().zip(ids) {
            self.record_content(f.path, *id, f.content.len() as u64)?;
        }
        Ok(())
    }

    /// Records a file whose content is already in the store (for example
    /// hashed from disk by a caller). The caller vouches that `file.id` is
    /// stored; commit does not check it. Replaces a file or a symlink; a
    /// directory is an error.
    pub fn put_file(&mut self, path: &RepoPath, file: FileEntry) -> Result<()> {
        self.edit(path, "written", Missing::Create, |dir, name| {
            replace_leaf(dir, name, path, |old| match old {
                Some(Node::File(f)) if *f == file => None,
                _ => Some(Node::File(file)),
            })
        })
    }

    /// Points `path` at new content, keeping the executable bit of a file
    /// that is already there.
    fn record_content(&mut self, path: &RepoPath, id: BlobId, size: u64) -> Result<()> {
        self.edit(path, "written", Missing::Create, |dir, name| {
            record_leaf(dir, name, path, id, size)
        })
    }

    /// Creates or replaces a symlink at `path` pointing to `target`.
    /// Missing parent directories are created; a directory is an error.
    pub fn symlink(&mut self, path: &RepoPath, target: &[u8]) -> Result<()> {
        let target = SymlinkTarget::try_from(target)
            .map_err(|source| Error::InvalidSymlink { path: path.clone(), source })?;
        self.edit(path, "replaced by a symlink", Missing::Create, |dir, name| {
            replace_leaf(dir, name, path, |old| match old {
                Some(Node::Symlink(t)) if *t == target => None,
                _ => Some(Node::Symlink(target)),
            })
        })
    }

    /// Sets or clears the executable bit of the file at `path`.
    pub fn set_executable(&mut self, path: &RepoPath, executable: bool) -> Result<()> {
        self.edit(path, "made executable", Missing::Fail, |dir, name| {
            match dir.children.get_mut(name) {
                Some(Node::File(f)) if f.executable == executable => Ok(Edited::Unchanged),
                Some(Node::File(f)) => {
                    f.executable = executable;
                    Ok(Edited::Changed)
                }
                Some(Node::Dir(_)) => Err(Error::IsADirectory { path: path.clone() }),
                Some(Node::Symlink(_)) => Err(Error::NotAFile { path: path.clone() }),
                None => Err(Error::NotFound { path: path.clone() }),
            }
        })
    }

    /// Creates the directory at `path` and any missing parents; an existing
    /// directory is fine, anything else in the way is an error.
    pub fn create_dir_all(&mut self, path: &RepoPath) -> Result<()> {
        if path.is_root() {
            return Ok(());
        }
        self.edit(path, "created", Missing::Create, |dir, name| match dir.children.get(name) {
            Some(Node::Dir(_)) => Ok(Edited::Unchanged),
            Some(_) => Err(Error::NotADirectory { path: path.clone() }),
            None => {
                check_room(dir, path, path.depth() - 1)?;
                dir.children.insert(Name::from_valid(name), Node::Dir(Dir::default()));
                Ok(Edited::Changed)
            }
        })
    }

    /// Removes whatever is at `path`; a directory goes with everything in it.
    pub fn remove(&mut self, path: &RepoPath) -> Result<()> {
        self.edit(path, "removed", Missing::Fail, |dir, name| match dir.children.remove(name) {
            Some(_) => Ok(Edited::Changed),
            None => Err(Error::NotFound { path: path.clone() }),
        })
    }

    /// Moves whatever is at `from` (a file, a symlink, or a directory with
    /// everything in it) to `to`, replacing whatever is at `to`. The parent
    /// of `to` must exist. A directory keeps its cached tree id (its content
    /// did not change), so a commit after moving a large directory encodes
    /// only the two parents. Which replacements are allowed (POSIX refuses a
    /// file over a directory, or a non-empty directory) is the caller's
    /// business; moving a directory below itself, or over a directory that
    /// contains it, is an error. Renaming a
    /// path to itself changes nothing.
    pub fn rename(&mut self, from: &RepoPath, to: &RepoPath) -> Result<()> {
        if from == to {
            return match self.stat(from) {
                Some(_) => Ok(()),
                None => Err(Error::NotFound { path: from.clone() }),
            };
        }
        let below = |a: &RepoPath, b: &RepoPath| a.depth() > b.depth() && a.prefix(b.depth()) == *b;
        if below(to, from) || below(from, to) {
            return Err(Error::RenameIntoItself { from: from.clone(), to: to.clone() });
        }
        let (from_parent, from_name) = from.split_last().ok_or(Error::Root { op: "renamed" })?;
        let node = resolve_dir(&self.current.root, &from_parent)?
            .children
            .get(from_name)
            .cloned()
            .ok_or_else(|| Error::NotFound { path: from.clone() })?;
        let (to_parent, _) = to.split_last().ok_or(Error::Root { op: "replaced" })?;
        resolve_dir(&self.current.root, &to_parent)?;
        let moved_dirs = usize::from(matches!(node, Node::Dir(_)));
        self.edit(to, "replaced", Missing::Fail, |dir, name| {
            if !dir.children.contains_key(name) {
                check_room(dir, to, to.depth() - 1)?;
            }
            dir.children.insert(Name::from_valid(name), node);
            Ok(Edited::Changed)
        })?;
        self.dirty_dirs += moved_dirs;
        self.remove(from)
    }

    /// Runs `edit` on the parent directory of `path` and the last name of
    /// `path`. Walks down once; on the way back up, and only if `edit`
    /// changed something, clears the cached tree id of every directory from
    /// the parent to the root. So a failed or empty operation leaves the
    /// cached ids as they were, and a commit after it has nothing to do.
    fn edit<'p>(
        &mut self,
        path: &'p RepoPath,
        op: &'static str,
        missing: Missing,
        edit: impl FnOnce(&mut Dir, &'p [u8]) -> Result<Edited>,
    ) -> Result<()> {
        let (_, name) = path.split_last_bytes().ok_or(Error::Root { op })?;
        self.edit_dir(path, op, missing, |dir| edit(dir, name))
    }

    /// Runs `edit` on the parent directory of `path`, as [`Self::edit`]
    /// does (`path` names that directory in errors).
    fn edit_dir(
        &mut self,
        path: &RepoPath,
        op: &'static str,
        missing: Missing,
        edit: impl FnOnce(&mut Dir) -> Result<Edited>,
    ) -> Result<()> {
        let (parent, _) = path.split_last_bytes().ok_or(Error::Root { op })?;
        let parents = parent.split(|&b| b == b'/').filter(|c| !c.is_empty());
        let mut dirtied =
            Dirtied { generation: self.current.generation, count: 0, released: SmallVec::new() };
        let edited = edit_at(&mut self.current.root, path, parents, 0, missing, &mut dirtied, edit);
        // Directories created on the way count even if the edit then failed.
        self.dirty_dirs += dirtied.count;
        for id in dirtied.released {
            if let Some((_, count)) = self.prepared.get_mut(&id.object_id()) {
                *count -= 1;
                if *count == 0 {
                    self.prepared.remove(&id.object_id());
                }
            }
        }
        edited.map(drop)
    }
}

/// What an edit did to the cached ids on its way back up.
struct Dirtied {
    /// The working set's current generation of prepared trees.
    generation: u64,
    /// Directories created or whose id was cleared.
    count: usize,
    /// The ids cleared from directories prepared in `generation`: one
    /// directory fewer has each of those trees.
    released: SmallVec<[TreeId; 4]>,
}

/// Whether an edit changed the working set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edited {
    Changed,
    Unchanged,
}

/// What an edit does about missing parent directories.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    Create,
    Fail,
}

fn edit_at<'a>(
    dir: &mut Dir,
    path: &RepoPath,
    mut parents: impl Iterator<Item = &'a [u8]>,
    depth: usize,
    missing: Missing,
    dirtied: &mut Dirtied,
    edit: impl FnOnce(&mut Dir) -> Result<Edited>,
) -> Result<Edited> {
    let result = match parents.next() {
        None => edit(dir),
        Some(name) => {
            let mut created = false;
            if missing == Missing::Create && !dir.children.contains_key(name) {
                check_room(dir, path, depth)?;
                dir.children.insert(Name::from_valid(name), Node::Dir(Dir::default()));
                dirtied.count += 1;
                created = true;
            }
            match dir.children.get_mut(name) {
                Some(Node::Dir(child)) => {
                    edit_at(child, path, parents, depth + 1, missing, dirtied, edit)
                        // A directory created here is a change, whatever the
                        // edit below it did.
                        .map(|edited| if created { Edited::Changed } else { edited })
                }
                Some(_) => Err(Error::NotADirectory { path: path.prefix(depth + 1) }),
                None => Err(Error::NotFound { path: path.prefix(depth + 1) }),
            }
        }
    };
    // Clear the cached id if anything below changed. On an error, clear it
    // too if the child might have changed (conservative: a cleared id costs
    // one re-encode at the next commit; a stale one would lose data).
    let changed = match &result {
        Ok(edited) => *edited == Edited::Changed,
        Err(_) => dir.children.iter().any(|(_, n)| matches!(n, Node::Dir(d) if d.id.is_none())),
    };
    if changed && let Some(id) = dir.id.take() {
        if dir.prepared == dirtied.generation {
            dirtied.released.push(id);
        }
        dir.prepared = 0;
        dirtied.count += 1;
    }
    result
}

/// Fails if the directory at the first `depth` components of `path` cannot
/// take one more entry.
fn check_room(dir: &Dir, path: &RepoPath, depth: usize) -> Result<()> {
    if dir.children.len() >= TREE_ENTRIES_MAX {
        return Err(Error::TooManyEntries { path: path.prefix(depth) });
    }
    Ok(())
}

/// Points `name` in `dir` (at `path`) at new content, keeping the
/// executable bit of a file that is already there.
fn record_leaf(
    dir: &mut Dir,
    name: &[u8],
    path: &RepoPath,
    id: BlobId,
    size: u64,
) -> Result<Edited> {
    replace_leaf(dir, name, path, |old| match old {
        Some(Node::File(f)) if f.id == id && f.size == size => None,
        Some(Node::File(f)) => Some(Node::File(FileEntry { id, size, executable: f.executable })),
        _ => Some(Node::File(FileEntry { id, size, executable: false })),
    })
}

/// Puts the node `new(old)` at `name`, unless it is `None` (nothing to
/// change). A directory at `name` is an error: it is never replaced
/// silently.
fn replace_leaf(
    dir: &mut Dir,
    name: &[u8],
    path: &RepoPath,
    new: impl FnOnce(Option<&Node>) -> Option<Node>,
) -> Result<Edited> {
    let old = dir.children.get(name);
    match old {
        Some(Node::Dir(_)) => return Err(Error::IsADirectory { path: path.clone() }),
        None => check_room(dir, path, path.depth() - 1)?,
        Some(_) => {}
    }
    match new(old) {
        None => Ok(Edited::Unchanged),
        Some(node) => {
            dir.children.insert(Name::from_valid(name), node);
            Ok(Edited::Changed)
        }
    }
}

/// A loaded directory and its height: how many components its deepest
/// entry adds to the directory's own path (0 for an empty directory).
type Loaded = (Dir, usize);

/// Loads tree `id`, found `depth` components below the root. A subtree
/// that occurs several times is read once; reusing it at another depth
/// checks its height against the limit again.
fn load_dir(
    store: &dyn Store,
    id: TreeId,
    depth: usize,
    memo: &mut HashMap<TreeId, Loaded>,
) -> Result<Loaded> {
    if let Some((dir, height)) = memo.get(&id) {
        if depth + height > PATH_DEPTH_MAX {
            return Err(Error::TooDeep { id: id.object_id() });
        }
        return Ok((dir.clone(), *height));
    }
    let tree = read::read_tree(store, id)?;
    read::check_depth(depth, id, &tree)?;
    let mut children = OrdMap::new();
    let mut height = 0;
    for entry in tree.entries() {
        let (node, entry_height) = match &entry.kind {
            EntryKind::File(f) => (Node::File(*f), 1),
            EntryKind::Symlink(t) => (Node::Symlink(t.clone()), 1),
            EntryKind::Dir(sub) => {
                let (dir, sub_height) = load_dir(store, *sub, depth + 1, memo)?;
                (Node::Dir(dir), 1 + sub_height)
            }
        };
        height = height.max(entry_height);
        children.insert(entry.name.clone(), node);
    }
    let dir = Dir { children, id: Some(id), prepared: 0 };
    memo.insert(id, (dir.clone(), height));
    Ok((dir, height))
}

/// Encodes and stores every changed directory, like [`commit`] but without
/// a commit object, and returns the root tree's id (synced with
/// `Durability::Sync`). Lets a caller compare the tree with its head's
/// before deciding to commit.
pub fn write_tree(ws: &mut WorkingSet, durability: Durability) -> Result<TreeId> {
    let (tree, objects) = hash_changed(ws, 0);
    store_objects(ws, &objects, durability)?;
    Ok(tree)
}

/// Encodes and hashes every changed directory (on all cores when there are
/// enough of them), returning the root's id and the new tree objects.
/// `generation` marks the directories hashed (0 when they are to be
/// stored now).
fn hash_changed(ws: &mut WorkingSet, generation: u64) -> (TreeId, Vec<(ObjectId, Encoded)>) {
    let parallel =
        if ws.dirty_dirs >= PARALLEL_DIRTY_DIRS_MIN { Parallel::Yes } else { Parallel::No };
    let mut objects = Vec::new();
    let tree = hash_dirty(&mut ws.current.root, &mut objects, parallel, generation);
    (tree, objects)
}

/// Puts `objects` and every prepared tree in one batch and applies
/// `durability`; then the prepared trees are stored, and a new generation
/// starts. On failure, drops the cached ids (the store may not hold the
/// trees they name).
fn store_objects(
    ws: &mut WorkingSet,
    objects: &[(ObjectId, Encoded)],
    durability: Durability,
) -> Result<()> {
    let prepared = ws.prepared.iter().map(|(id, (bytes, _))| (*id, bytes.as_slice()));
    let batch: Vec<(ObjectId, &[u8])> =
        prepared.chain(objects.iter().map(|(id, b)| (*id, b.as_slice()))).collect();
    let stored = ws.current.store.put_batch(&batch).and_then(|()| match durability {
        Durability::Sync => ws.current.store.sync(),
        Durability::Flush => ws.current.store.flush(),
        Durability::None => Ok(()),
    });
    if let Err(e) = stored {
        ws.forget_ids();
        return Err(e.into());
    }
    // Every changed directory now has its id, and its tree is stored.
    ws.dirty_dirs = 0;
    if !ws.prepared.is_empty() {
        ws.prepared.clear();
        ws.current.generation += 1;
    }
    Ok(())
}

/// Commits the working set: encodes and hashes every directory that changed
/// since the last commit, bottom-up, puts the new trees and the commit
/// object into the store in one batch, syncs it if `options.durability` asks
/// for it, and makes the new commit the working set's head.
///
/// On an error nothing is committed and the working set's content is
/// unchanged; its cached tree ids are dropped (the store may not hold the
/// trees they name), so the next commit rehashes every directory once.
pub fn commit(ws: &mut WorkingSet, options: &CommitOptions) -> Result<CommitId> {
    let mut commit = Commit {
        // Filled in once the trees are hashed; validate() checks the rest.
        tree: TreeId::of(b""),
        parents: ws.current.head.into_iter().chain(options.merged.iter().copied()).collect(),
        author: options.author.clone(),
        time: options.time.unwrap_or_else(Timestamp::now),
        message: options.message.clone(),
    };
    // Refuse bad options before hashing anything, so that a refused commit
    // leaves the cached ids alone.
    commit.validate()?;
    let (tree, mut objects) = hash_changed(ws, 0);
    commit.tree = tree;
    let bytes = commit.encode()?;
    let id = CommitId::of(&bytes);
    objects.push((id.object_id(), Arc::new(bytes)));

    store_objects(ws, &objects, options.durability)?;
    ws.current.head = Some(id);
    Ok(id)
}

impl WorkingSet {
    /// Computes the id of every directory that changed since the last
    /// commit, as a commit would, but stores nothing: the trees are kept
    /// encoded in memory, and the next commit (or [`write_tree`]) only
    /// stores them. Returns the root tree's id. For a caller with idle time
    /// before a commit; a change made afterwards costs only the
    /// directories above it again.
    pub fn hash_trees(&mut self) -> TreeId {
        let (tree, objects) = hash_changed(self, self.current.generation);
        for (id, bytes) in objects {
            self.prepared.entry(id).or_insert((bytes, 0)).1 += 1;
        }
        tree
    }

    /// Drops every cached tree id, after a failed commit: the store may not
    /// hold the trees they name. O(tree), and only on that error path.
    fn forget_ids(&mut self) {
        self.dirty_dirs = forget_ids(&mut self.current.root);
        self.prepared.clear();
    }
}

/// Whether [`hash_dirty`] may spread sibling subtrees over rayon's threads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parallel {
    Yes,
    No,
}

/// The tree id of `dir`, computing every changed directory below it first,
/// and queueing the new trees in `objects`; each directory hashed is marked
/// with `generation`. Recursion depth is bounded by [`PATH_DEPTH_MAX`]:
/// every path in the working set was validated.
fn hash_dirty(
    dir: &mut Dir,
    objects: &mut Vec<(ObjectId, Encoded)>,
    parallel: Parallel,
    generation: u64,
) -> TreeId {
    if let Some(id) = dir.id {
        return id;
    }
    hash_dirty_below(dir, objects, parallel, generation);
    let bytes = Arc::new(encode_dir(dir));
    let id = TreeId::of(&bytes);
    objects.push((id.object_id(), bytes));
    dir.id = Some(id);
    dir.prepared = generation;
    id
}

/// Computes the id of every changed directory below `dir` (not `dir`'s
/// own), queueing the new trees in `objects`, as [`hash_dirty`] does.
fn hash_dirty_below(
    dir: &mut Dir,
    objects: &mut Vec<(ObjectId, Encoded)>,
    parallel: Parallel,
    generation: u64,
) {
    let dirty: SmallVec<[Name; 8]> = dir
        .children
        .iter()
        .filter(|(_, node)| matches!(node, Node::Dir(d) if d.id.is_none()))
        .map(|(name, _)| name.clone())
        .collect();
    if let [name] = dirty.as_slice() {
        // Nothing to hash beside it.
        let Some(Node::Dir(child)) = dir.children.get_mut(name) else {
            unreachable!("dirty names were collected from this directory's subdirectories")
        };
        hash_dirty(child, objects, parallel, generation);
        return;
    }
    if dirty.is_empty() {
        return;
    }
    if parallel == Parallel::Yes && dirty.len() > 1 {
        // Take the dirty subtrees out (an O(1) swap each), hash them on all
        // cores, and put them back with their ids set.
        let mut taken: Vec<(Name, Dir)> = dirty
            .into_iter()
            .map(|name| match dir.children.get_mut(&name) {
                Some(Node::Dir(child)) => {
                    let child = std::mem::take(child);
                    (name, child)
                }
                _ => {
                    unreachable!("dirty names were collected from this directory's subdirectories")
                }
            })
            .collect();
        let trees: Vec<Vec<(ObjectId, Encoded)>> = taken
            .par_iter_mut()
            .map(|(_, child)| {
                // Split once, at the top-most directory with several dirty
                // subtrees: rayon balances these tasks across two cores, and
                // nested splits below measured slower than none.
                let mut out = Vec::new();
                hash_dirty(child, &mut out, Parallel::No, generation);
                out
            })
            .collect();
        for (name, child) in taken {
            match dir.children.get_mut(&name) {
                Some(Node::Dir(slot)) => *slot = child,
                _ => unreachable!("the slot a subtree was taken from is still there"),
            }
        }
        objects.extend(trees.into_iter().flatten());
        return;
    }
    // Each changed subdirectory's own changed subdirectories first, then
    // the sibling trees hashed together, side by side in SIMD lanes: a
    // directory of a dozen files encodes to under 1 KiB, one BLAKE3 chunk.
    let mut encoded: SmallVec<[Vec<u8>; 8]> = SmallVec::new();
    for name in &dirty {
        let Some(Node::Dir(child)) = dir.children.get_mut(name) else {
            unreachable!("dirty names were collected from this directory's subdirectories")
        };
        hash_dirty_below(child, objects, parallel, generation);
        encoded.push(encode_dir(child));
    }
    let ids = vst_cas::batch_hash::hash_many(&encoded);
    for ((name, bytes), id) in dirty.iter().zip(encoded).zip(ids) {
        let Some(Node::Dir(child)) = dir.children.get_mut(name) else {
            unreachable!("dirty names were collected from this directory's subdirectories")
        };
        let id = TreeId::new(id);
        objects.push((id.object_id(), Arc::new(bytes)));
        child.id = Some(id);
        child.prepared = generation;
    }
}

/// The encoding of `dir`'s tree.
fn encode_dir(dir: &Dir) -> Vec<u8> {
    encode_entries(
        dir.children.len(),
        dir.children.iter().map(|(name, node)| {
            let kind = match node {
                Node::File(f) => WireKind::File {
                    id: f.id.object_id().into(),
                    size: f.size,
                    executable: f.executable,
                },
                Node::Symlink(t) => WireKind::Symlink { target: t.as_bytes() },
                Node::Dir(d) => WireKind::Dir {
                    id: d.id.expect("children are hashed before their parent").object_id().into(),
                },
            };
            (name.as_bytes(), kind)
        }),
    )
}

/// Drops every cached tree id below and at `dir`; returns how many
/// directories that is.
fn forget_ids(dir: &mut Dir) -> usize {
    dir.id = None;
    dir.prepared = 0;
    let mut count = 1;
    let names: Vec<Name> = dir
        .children
        .iter()
        .filter(|(_, n)| matches!(n, Node::Dir(_)))
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        if let Some(Node::Dir(child)) = dir.children.get_mut(&name) {
            count += forget_ids(child);
        }
    }
    count
}
