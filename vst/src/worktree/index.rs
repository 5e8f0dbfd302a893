//! The index: the tree the work tree's files are at (`HEAD`'s, or the last
//! snapshot's), kept in one file in `.vst/` together with the stat of each
//! file as it was when the file was hashed (git's index and cache tree in
//! one).
//!
//! A scan compares the disk with the index directory by directory and
//! reads only files whose stat changed; a commit applies what the scan
//! found to the index and encodes only the directories above a change,
//! without reading a tree from the store. When it is missing or damaged, it
//! is rebuilt from `HEAD`'s tree with no stats (the next scan reads every
//! file once); a checkout moves it to the target's tree keeping the stats
//! of whatever the two share. Its commit says which commit the files are at: when
//! that is not `HEAD`'s, it is kept (see `WorkTree`), not rebuilt.
//!
//! The file (little-endian): the magic `VSTWTRE2`; the commit the tree is
//! based on (a u8 flag, then 32 bytes; none on an unborn branch), so that
//! an index for `HEAD` is known without opening the store; that commit's
//! tree id (32 bytes; the empty tree's for none); the stamp (i64, the
//! filesystem's clock when the scan that took the stats started); the root
//! directory; the BLAKE3 hash of everything before it. A directory is its
//! tree id (32 bytes), its entry count (u32) and its entries sorted by name.
//! An entry is its name (u8 length, bytes), a tag, and then: for a file
//! (tag 0, or 1 if executable) its blob id, size (u64) and stat (a u8 flag,
//! then size, mtime and ctime in ns, inode, mode); for a symlink (tag 2) its
//! target (u16 length, bytes); for a directory (tag 3) the directory.

use std::path::Path;

use vst_cas::{ObjectId, Store};

use super::scan::{Delta, DiskStat, Found};
use crate::error::{Error, Result};
use crate::limits::{PATH_DEPTH_MAX, WALK_ENTRIES_MAX};
use crate::{
    BlobId, CommitId, EntryKind, FileEntry, Name, RepoPath, SymlinkTarget, Tree, TreeEntry, TreeId,
};

/// The index's file name in `.vst/` (`.vst/index` is the pack store's).
pub const INDEX_FILE: &str = "worktree";
/// The lock a save of the index takes (an flock, released with the file).
const INDEX_LOCK_FILE: &str = "worktree.lock";
const MAGIC: &[u8; 8] = b"VSTWTRE2";

/// One directory of the index.
#[derive(Clone, Debug)]
pub struct IndexDir {
    /// The directory's tree id; `None` once an edit changed it, until
    /// [`Index::write_trees`] computes it again.
    pub id: Option<TreeId>,
    /// The entries, sorted by name.
    pub entries: Vec<(Name, IndexNode)>,
}

/// What an index entry is.
#[derive(Clone, Debug)]
pub enum IndexNode {
    /// A file, and its stat when it was hashed, if known.
    File(FileEntry, Option<DiskStat>),
    /// A symbolic link.
    Symlink(SymlinkTarget),
    /// A directory.
    Dir(IndexDir),
}

impl IndexNode {
    /// The tree entry this node stands for.
    pub fn kind(&self) -> EntryKind {
        match self {
            IndexNode::File(f, _) => EntryKind::File(*f),
            IndexNode::Symlink(t) => EntryKind::Symlink(t.clone()),
            // Ids are cleared only between an edit and write_trees,
            // which asks for the kind of files and symlinks only.
            IndexNode::Dir(d) => EntryKind::Dir(d.id.expect("a directory's id is known")),
        }
    }
}

impl IndexDir {
    fn empty() -> Self {
        Self { id: None, entries: Vec::new() }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&IndexNode> {
        self.find(name).ok().map(|i| &self.entries[i].1)
    }

    /// Applies `delta`, whose path is an entry of this directory.
    fn apply(&mut self, delta: &Delta) -> Result<()> {
        let (_, name) = delta.path.split_last_bytes().expect("a delta is never the root");
        let at = self.find(name);
        match (&delta.new, at) {
            (None, Ok(i)) => {
                self.entries.remove(i);
            }
            (None, Err(_)) => {}
            (Some(found), at) => {
                let node = match found {
                    Found::File(f) => IndexNode::File(*f, None),
                    Found::Symlink(t) => {
                        IndexNode::Symlink(SymlinkTarget::try_from(&t[..]).map_err(|source| {
                            Error::InvalidSymlink { path: delta.path.clone(), source }
                        })?)
                    }
                    Found::Dir => IndexNode::Dir(IndexDir::empty()),
                };
                match at {
                    Ok(i) => self.entries[i].1 = node,
                    Err(i) => self.entries.insert(i, (Name::from_valid(name), node)),
                }
            }
        }
        Ok(())
    }

    fn find(&self, name: &[u8]) -> std::result::Result<usize, usize> {
        self.entries.binary_search_by(|(n, _)| n.as_bytes().cmp(name))
    }

    /// Calls `f` with the path and entry of everything below this
    /// directory (at `path`), parents before their children.
    pub fn for_each(&self, path: &RepoPath, f: &mut dyn FnMut(RepoPath, &IndexNode)) {
        for (name, node) in &self.entries {
            let child = path.join(name).expect("index paths are valid");
            if let IndexNode::Dir(d) = node {
                f(child.clone(), node);
                d.for_each(&child, f);
            } else {
                f(child, node);
            }
        }
    }
}

/// The index lock, held (see [`Index::lock`]).
pub struct IndexLock {
    _held: std::fs::File,
}

/// The index: a tree and the stats of its files.
pub struct Index {
    /// The commit whose tree this is (`None`: the empty tree, or a tree no
    /// commit has yet).
    pub commit: Option<CommitId>,
    /// That commit's tree (the empty tree for none): the root's id when
    /// no snapshot since changed the index.
    pub base_tree: TreeId,
    /// The root directory.
    pub root: IndexDir,
    /// When the scan that took the stats started, on the filesystem's
    /// clock (see [`DiskStat`]).
    pub stamp_ns: i64,
    /// Whether the index differs from its file.
    changed: bool,
    /// The first bytes (magic, commit, base) of the file this index was
    /// read from or rebuilt over, `None` if there was none: a save checks
    /// that the file still starts with them, so that a process holding an
    /// older index (a status) never writes over a newer one (a commit's).
    loaded: Option<Vec<u8>>,
}

impl Index {
    /// The index file, if it can be read and is sound; reads nothing but
    /// that file.
    pub fn load_file(repo_dir: &Path) -> Option<Self> {
        Self::read(repo_dir).ok()
    }

    /// The index of `head`'s tree `tree` (`None`s: an unborn branch), built
    /// from the store with no stats (every file is read once by the next
    /// scan): for when the file is missing or damaged. It may replace
    /// whatever file is there.
    pub fn load(
        repo_dir: &Path,
        store: &dyn Store,
        head: Option<CommitId>,
        tree: Option<TreeId>,
    ) -> Result<Self> {
        let loaded = match Self::read(repo_dir) {
            Ok(index) => index.loaded,
            Err(header) => header,
        };
        let empty = Self {
            commit: None,
            base_tree: Tree::default().id(),
            root: IndexDir::empty(),
            stamp_ns: i64::MIN,
            changed: true,
            loaded,
        };
        Self::rebase(&empty, store, head, tree)
    }

    /// The index of `commit`'s tree `tree` (`None`s: empty), taking from
    /// `old` every subtree with the same id and every stat of a file with
    /// the same content; `old`'s stamp stays.
    pub fn rebase(
        old: &Index,
        store: &dyn Store,
        commit: Option<CommitId>,
        tree: Option<TreeId>,
    ) -> Result<Self> {
        let tree = tree.unwrap_or_else(|| Tree::default().id());
        let root = from_tree(store, tree, Some(&old.root), 0, &mut 0)?;
        let loaded = old.loaded.clone();
        Ok(Self { commit, base_tree: tree, root, stamp_ns: old.stamp_ns, changed: true, loaded })
    }

    /// Records the stamp of a scan (see [`DiskStat`]); saved with the index.
    pub fn set_stamp(&mut self, stamp_ns: i64) {
        if self.stamp_ns != stamp_ns {
            self.stamp_ns = stamp_ns;
            self.changed = true;
        }
    }

    /// Records that the index's tree is now `commit`'s, `tree`.
    pub fn set_base(&mut self, commit: Option<CommitId>, tree: TreeId) {
        self.commit = commit;
        self.base_tree = tree;
        self.changed = true;
    }

    /// A copy of this index to edit (the file is not shared).
    pub fn clone_tree(&self) -> Self {
        Self {
            commit: self.commit,
            base_tree: self.base_tree,
            root: self.root.clone(),
            stamp_ns: self.stamp_ns,
            changed: true,
            loaded: self.loaded.clone(),
        }
    }

    /// Forgets every stat whose mtime or ctime is at or after `stamp_ns`
    /// (taken in the tick a scan started: not to be trusted under a later
    /// stamp).
    pub fn drop_stats_since(&mut self, stamp_ns: i64) {
        fn walk(dir: &mut IndexDir, stamp_ns: i64) {
            for (_, node) in &mut dir.entries {
                match node {
                    IndexNode::File(_, stat) => {
                        if stat.is_some_and(|s| s.mtime_ns >= stamp_ns || s.ctime_ns >= stamp_ns) {
                            *stat = None;
                        }
                    }
                    IndexNode::Dir(d) => walk(d, stamp_ns),
                    IndexNode::Symlink(_) => {}
                }
            }
        }
        walk(&mut self.root, stamp_ns);
        self.changed = true;
    }

    /// The index file, if it can be read and is sound; else the first
    /// bytes of the file that is there, if any.
    pub(crate) fn read(repo_dir: &Path) -> std::result::Result<Self, Option<Vec<u8>>> {
        // Shared, so that a save under way (a daemon that answered a
        // commit and saves after) is waited for. Where the lock cannot be
        // had (a read-only repository), the file is read as it is.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(repo_dir.join(INDEX_LOCK_FILE))
            .ok()
            .filter(|f| rustix::fs::flock(f, rustix::fs::FlockOperation::LockShared).is_ok());
        let bytes = std::fs::read(repo_dir.join(INDEX_FILE)).map_err(|_| None)?;
        drop(lock);
        decode(&bytes).map_err(|_| Some(header(&bytes).to_vec()))
    }

    /// Whether the index file is still the one this index was read from
    /// or last saved to (same commit and base): no other process
    /// committed or checked out since.
    pub fn is_file_current(&self, repo_dir: &Path) -> bool {
        file_header(repo_dir) == self.loaded
    }

    /// Writes the index to its file if it changed. Not synced: after a
    /// crash, a lost or stale index is rebuilt (it only saves work).
    pub fn save(&mut self, repo_dir: &Path) -> Result<()> {
        if !self.needs_saving() {
            return Ok(());
        }
        let lock = Self::lock(repo_dir)?;
        self.save_locked(repo_dir, &lock)
    }

    /// Whether [`Index::save`] would write anything.
    fn needs_saving(&self) -> bool {
        // Trees left unwritten (a snapshot whose store failed): the file
        // keeps the state before it, which the next scan compares against.
        self.changed && self.root.id.is_some()
    }

    /// Takes the index lock (`worktree.lock`) exclusively, for
    /// [`Index::save_locked`]: until it is dropped, every process that
    /// reads the index waits.
    pub fn lock(repo_dir: &Path) -> Result<IndexLock> {
        let lock_path = repo_dir.join(INDEX_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::RepoIo { op: "open", path: lock_path.clone(), source })?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::RepoIo { op: "lock", path: lock_path, source: e.into() })?;
        Ok(IndexLock { _held: file })
    }

    /// [`Index::save`] under a lock already taken.
    pub fn save_locked(&mut self, repo_dir: &Path, _lock: &IndexLock) -> Result<()> {
        if !self.needs_saving() {
            return Ok(());
        }
        let bytes = self.encode();
        let path = repo_dir.join(INDEX_FILE);
        // Only over the file this index came from: a newer one (written
        // since by another process) is left alone.
        if file_header(repo_dir) != self.loaded {
            return Ok(());
        }
        // A name of its own, so that two processes saving at once cannot
        // rename each other's file away.
        let tmp = repo_dir.join(format!("{INDEX_FILE}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(|source| Error::RepoIo {
            op: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| Error::RepoIo {
            op: "replace",
            path,
            source,
        })?;
        self.loaded = Some(header(&bytes).to_vec());
        self.changed = false;
        Ok(())
    }

    /// Applies a scan's differences: afterwards the index holds what the
    /// disk held (directories above a change lose their ids until
    /// [`Index::write_trees`]).
    pub fn apply(&mut self, deltas: &[Delta]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        // Parents before children (a path sorts before every path below
        // it), and the changes of one directory mostly side by side, so
        // that each run of them costs one descent from the root. (A scan
        // gives them sorted: then sorting costs a comparison each.)
        let mut sorted: Vec<&Delta> = deltas.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for run in sorted.chunk_by(|a, b| same_parent(&a.path, &b.path)) {
            let (parent, _) = run[0].path.split_last_bytes().expect("a delta is never the root");
            let Some(dir) = self.dir_mut(parent) else {
                // Below a directory that went away or became something
                // else: gone with it.
                // (A scan reports a new directory before what is in it, so
                // anything else has a directory to go in.)
                continue;
            };
            for delta in run {
                dir.apply(delta)?;
            }
        }
        self.changed = true;
        Ok(())
    }

    /// The node at `path` (`None` for the root or a path not held).
    pub fn node(&self, path: &RepoPath) -> Option<&IndexNode> {
        let mut dir = &self.root;
        let mut components = path.components().peekable();
        while let Some(component) = components.next() {
            let node = dir.get(component)?;
            if components.peek().is_none() {
                return Some(node);
            }
            match node {
                IndexNode::Dir(d) => dir = d,
                _ => return None,
            }
        }
        None
    }

    /// Records the stat a file had when it was hashed to `file`, if the
    /// index holds that file at `path` (so the stat vouches for the
    /// index's content, never for something else).
    pub fn set_stat(&mut self, path: &RepoPath, file: &FileEntry, stat: DiskStat) {
        let Some((parent, name)) = path.split_last_bytes() else { return };
        let Some(dir) = self.dir_mut_keep_ids(parent) else { return };
        let Ok(i) = dir.find(name) else { return };
        let node = &mut dir.entries[i].1;
        // Nothing is marked changed for a stat the index already has.
        if matches!(node, IndexNode::File(f, s) if f == file && *s != Some(stat)) {
            *node = IndexNode::File(*file, Some(stat));
            self.changed = true;
        }
    }

    /// [`Index::set_stat`] for many files, one descent from the root for
    /// each run of them in one directory.
    pub fn set_stats(&mut self, hashed: &[(RepoPath, FileEntry, DiskStat)]) {
        let mut changed = false;
        for run in hashed.chunk_by(|a, b| same_parent(&a.0, &b.0)) {
            let Some((parent, _)) = run[0].0.split_last_bytes() else { continue };
            let Some(dir) = self.dir_mut_keep_ids(parent) else { continue };
            for (path, file, stat) in run {
                let (_, name) = path.split_last_bytes().expect("a run holds no root");
                let Ok(i) = dir.find(name) else { continue };
                let node = &mut dir.entries[i].1;
                // Nothing is marked changed for a stat the index already has.
                if matches!(node, IndexNode::File(f, s) if f == file && *s != Some(*stat)) {
                    *node = IndexNode::File(*file, Some(*stat));
                    changed = true;
                }
            }
        }
        self.changed |= changed;
    }

    /// Encodes and stores every directory whose id an edit cleared, bottom
    /// up, in one batch; returns the root's tree id.
    pub fn write_trees(&mut self, store: &dyn Store) -> Result<TreeId> {
        let mut objects = Vec::new();
        let root = hash_dirty(&mut self.root, &RepoPath::root(), &mut objects)?;
        let batch: Vec<(ObjectId, &[u8])> =
            objects.iter().map(|(id, b)| (*id, b.as_slice())).collect();
        store.put_batch(&batch)?;
        Ok(root)
    }

    /// The directory at `path`, clearing the ids on the way (it is about
    /// to change).
    fn dir_mut(&mut self, path: &[u8]) -> Option<&mut IndexDir> {
        // In one descent: if the path turns out to be missing, the ids
        // cleared on the way only cost their recomputation.
        let mut dir = &mut self.root;
        dir.id = None;
        for name in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let i = dir.find(name).ok()?;
            let IndexNode::Dir(d) = &mut dir.entries[i].1 else { return None };
            dir = d;
            dir.id = None;
        }
        Some(dir)
    }

    /// The directory at `path`, ids kept (for a stat, which is not part of
    /// a tree).
    fn dir_mut_keep_ids(&mut self, path: &[u8]) -> Option<&mut IndexDir> {
        let mut dir = &mut self.root;
        for name in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let i = dir.find(name).ok()?;
            let IndexNode::Dir(d) = &mut dir.entries[i].1 else { return None };
            dir = d;
        }
        Some(dir)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(MAGIC);
        match self.commit {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(id.as_bytes());
            }
        }
        out.extend_from_slice(self.base_tree.as_bytes());
        out.extend_from_slice(&self.stamp_ns.to_le_bytes());
        encode_dir(&self.root, &mut out);
        let check = BlobId::of(&out);
        out.extend_from_slice(check.as_bytes());
        out
    }
}

/// The tree id of `dir`, encoding and queueing every directory below it
/// whose id was cleared.
fn hash_dirty(
    dir: &mut IndexDir,
    path: &RepoPath,
    objects: &mut Vec<(ObjectId, Vec<u8>)>,
) -> Result<TreeId> {
    if let Some(id) = dir.id {
        return Ok(id);
    }
    let mut entries = Vec::with_capacity(dir.entries.len());
    for (name, node) in &mut dir.entries {
        let kind = match node {
            IndexNode::Dir(d) => {
                EntryKind::Dir(hash_dirty(d, &path.join_unchecked(name.as_bytes()), objects)?)
            }
            other => other.kind(),
        };
        entries.push(TreeEntry { name: name.clone(), kind });
    }
    // Sorted and unique already; only the entry limit can fail.
    let tree = Tree::new(entries).map_err(|_| Error::TooManyEntries { path: path.clone() })?;
    let bytes = tree.encode();
    let id = TreeId::of(&bytes);
    objects.push((id.object_id(), bytes));
    dir.id = Some(id);
    Ok(id)
}

/// The directory of the stored tree `id`, taking from `reuse` (the old
/// index at the same path) every subtree it has with the same id, and the
/// stat of every file it has with the same content. Entries read from the
/// store count in `read` against [`WALK_ENTRIES_MAX`]: a tree whose
/// subtrees are shared many times over (a "bomb") is refused before it is
/// expanded.
fn from_tree(
    store: &dyn Store,
    id: TreeId,
    reuse: Option<&IndexDir>,
    depth: usize,
    read: &mut u64,
) -> Result<IndexDir> {
    if let Some(old) = reuse.filter(|d| d.id == Some(id)) {
        return Ok(old.clone());
    }
    if id == Tree::default().id() {
        return Ok(IndexDir { id: Some(id), entries: Vec::new() });
    }
    let tree = crate::read::read_tree(store, id)?;
    crate::read::check_depth(depth, id, &tree)?;
    *read += tree.len() as u64;
    if *read > WALK_ENTRIES_MAX {
        return Err(Error::WalkTooLarge { id: id.object_id() });
    }
    let mut entries = Vec::with_capacity(tree.len());
    for entry in tree.entries() {
        let old = reuse.and_then(|d| d.get(entry.name.as_bytes()));
        let node = match &entry.kind {
            EntryKind::File(f) => {
                let stat = match old {
                    Some(IndexNode::File(g, stat)) if g == f => *stat,
                    _ => None,
                };
                IndexNode::File(*f, stat)
            }
            EntryKind::Symlink(t) => IndexNode::Symlink(t.clone()),
            EntryKind::Dir(sub) => {
                let old_dir = match old {
                    Some(IndexNode::Dir(d)) => Some(d),
                    _ => None,
                };
                IndexNode::Dir(from_tree(store, *sub, old_dir, depth + 1, read)?)
            }
        };
        entries.push((entry.name.clone(), node));
    }
    Ok(IndexDir { id: Some(id), entries })
}

/// Encodes `dir`, whose ids must all be known (callers run
/// [`Index::write_trees`] after an edit, before saving).
fn encode_dir(dir: &IndexDir, out: &mut Vec<u8>) {
    let id = dir.id.expect("an index is saved with its trees written");
    out.extend_from_slice(id.as_bytes());
    // Entry counts, name and target lengths are bounded by the limits the
    // types enforce (TREE_ENTRIES_MAX, NAME_LEN_MAX, SYMLINK_TARGET_LEN_MAX).
    out.extend_from_slice(&(dir.entries.len() as u32).to_le_bytes());
    for (name, node) in &dir.entries {
        out.push(name.as_bytes().len() as u8);
        out.extend_from_slice(name.as_bytes());
        match node {
            IndexNode::File(f, stat) => {
                out.push(u8::from(f.executable));
                out.extend_from_slice(f.id.as_bytes());
                out.extend_from_slice(&f.size.to_le_bytes());
                match stat {
                    None => out.push(0),
                    Some(s) => {
                        out.push(1);
                        out.extend_from_slice(&s.size.to_le_bytes());
                        out.extend_from_slice(&s.mtime_ns.to_le_bytes());
                        out.extend_from_slice(&s.ctime_ns.to_le_bytes());
                        out.extend_from_slice(&s.ino.to_le_bytes());
                        out.extend_from_slice(&s.mode.to_le_bytes());
                    }
                }
            }
            IndexNode::Symlink(t) => {
                out.push(2);
                out.extend_from_slice(&(t.as_bytes().len() as u16).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
            IndexNode::Dir(d) => {
                out.push(3);
                encode_dir(d, out);
            }
        }
    }
}

/// The first bytes of an index file: the magic, the commit and the base
/// tree (as much of them as there is).
/// The [`header`] of the index file, if it can be read (only its first
/// bytes are).
fn file_header(repo_dir: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(repo_dir.join(INDEX_FILE)).ok()?;
    let mut buf = Vec::with_capacity(HEADER_LEN_MAX);
    file.take(HEADER_LEN_MAX as u64).read_to_end(&mut buf).ok()?;
    Some(header(&buf).to_vec())
}

/// The longest [`header`]: magic, a commit's presence and id, the base.
const HEADER_LEN_MAX: usize = 8 + 1 + 32 + 32;

fn header(bytes: &[u8]) -> &[u8] {
    let commit_len = if bytes.get(8) == Some(&1) { 32 } else { 0 };
    &bytes[..bytes.len().min(8 + 1 + commit_len + 32)]
}

/// Why an index file was not used (the caller rebuilds the index).
type DecodeResult<T> = std::result::Result<T, &'static str>;

/// Reads an index file; anything unexpected is an error (and the caller
/// rebuilds the index).
fn decode(bytes: &[u8]) -> DecodeResult<Index> {
    let body_len = bytes.len().checked_sub(32).ok_or("too short")?;
    let (body, check) = bytes.split_at(body_len);
    if BlobId::of(body).as_bytes() != check {
        return Err("checksum mismatch");
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC {
        return Err("not an index");
    }
    let commit = match r.take(1)?[0] {
        0 => None,
        1 => Some(CommitId::new(ObjectId::from_bytes(r.array()?))),
        _ => return Err("bad commit flag"),
    };
    let base_tree = TreeId::new(ObjectId::from_bytes(r.array()?));
    let stamp_ns = i64::from_le_bytes(r.array()?);
    let root = decode_dir(&mut r, 0)?;
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    let loaded = Some(header(bytes).to_vec());
    Ok(Index { commit, base_tree, root, stamp_ns, changed: false, loaded })
}

fn decode_dir(r: &mut Reader<'_>, depth: usize) -> DecodeResult<IndexDir> {
    if depth > PATH_DEPTH_MAX {
        return Err("nested too deep");
    }
    let id = TreeId::new(ObjectId::from_bytes(r.array()?));
    let count = u32::from_le_bytes(r.array()?) as usize;
    let mut entries: Vec<(Name, IndexNode)> = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let len = r.take(1)?[0] as usize;
        let name = Name::try_from(r.take(len)?).map_err(|_| "bad name")?;
        if entries.last().is_some_and(|(last, _)| last >= &name) {
            return Err("entries out of order");
        }
        let node = match r.take(1)?[0] {
            tag @ (0 | 1) => {
                let id = BlobId::new(ObjectId::from_bytes(r.array()?));
                let size = u64::from_le_bytes(r.array()?);
                let file = FileEntry { id, size, executable: tag == 1 };
                let stat = match r.take(1)?[0] {
                    0 => None,
                    1 => Some(DiskStat {
                        size: u64::from_le_bytes(r.array()?),
                        mtime_ns: i64::from_le_bytes(r.array()?),
                        ctime_ns: i64::from_le_bytes(r.array()?),
                        ino: u64::from_le_bytes(r.array()?),
                        mode: u32::from_le_bytes(r.array()?),
                    }),
                    _ => return Err("bad stat flag"),
                };
                IndexNode::File(file, stat)
            }
            2 => {
                let len = u16::from_le_bytes(r.array()?) as usize;
                IndexNode::Symlink(SymlinkTarget::try_from(r.take(len)?).map_err(|_| "bad target")?)
            }
            3 => IndexNode::Dir(decode_dir(r, depth + 1)?),
            _ => return Err("bad entry tag"),
        };
        entries.push((name, node));
    }
    Ok(IndexDir { id: Some(id), entries })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
}

/// Whether `a` and `b` are entries of one directory.
fn same_parent(a: &RepoPath, b: &RepoPath) -> bool {
    a.split_last_bytes().map(|(p, _)| p) == b.split_last_bytes().map(|(p, _)| p)
}
