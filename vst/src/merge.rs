//! Three-way merges of trees, and the merge base of two commits.
//!
//! [`merge_trees`] decides by id wherever it can: a subtree whose id is the
//! same on both sides, or unchanged on one side from the base, is taken
//! whole without being read, so a merge reads only the directories on the
//! paths that both sides changed. Where both changed the same entry:
//!
//! - two directories are merged entry by entry;
//! - two files merge their content and their executable bit apart (as git
//!   and jj do): each is taken from the side that changed it, and is a
//!   conflict only if both changed it differently (a file added on both
//!   sides with the same content but different bits is a conflict: there
//!   is no base to say which changed);
//! - anything else is a [`Conflict`]: the merged tree keeps our entry
//!   there, and the caller decides what the work tree shows.
//!
//! No rename detection and no merging of file content: a file changed on
//! both sides is a conflict even when the changes touch different lines
//! (the CLI writes conflict markers for text).

use std::collections::{BinaryHeap, HashMap};

use vst_cas::Store;

use crate::error::Result;
use crate::id::{CommitId, TreeId};
use crate::limits::MERGE_BASE_COMMITS_MAX;
use crate::name::RepoPath;
use crate::read::{check_depth, read_commit, read_tree};
use crate::tree::{EntryKind, FileEntry, Tree, TreeEntry};

/// A path both sides changed in ways that do not merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The path.
    pub path: RepoPath,
    /// The entry in the base (`None`: absent).
    pub base: Option<EntryKind>,
    /// Our entry (what the merged tree holds there).
    pub ours: Option<EntryKind>,
    /// Their entry.
    pub theirs: Option<EntryKind>,
}

/// What kind of conflict a [`Conflict`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConflictKind {
    /// Both sides changed the entry differently (content, target, kind,
    /// or content on one side and a file's executable bit in a way that
    /// does not merge).
    BothModified,
    /// Both sides added the path, differently.
    BothAdded,
    /// One side changed the entry, the other removed it.
    ModifiedDeleted,
    /// A directory on one side, a file or symlink on the other.
    FileDirectory,
}

impl Conflict {
    /// What kind of conflict this is.
    pub fn kind(&self) -> ConflictKind {
        let is_dir = |e: &Option<EntryKind>| matches!(e, Some(EntryKind::Dir(_)));
        match (&self.base, &self.ours, &self.theirs) {
            (_, Some(_), Some(_)) if is_dir(&self.ours) != is_dir(&self.theirs) => {
                ConflictKind::FileDirectory
            }
            (_, None, _) | (_, _, None) => ConflictKind::ModifiedDeleted,
            (None, _, _) => ConflictKind::BothAdded,
            _ => ConflictKind::BothModified,
        }
    }
}

/// The result of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The merged tree, stored; at each conflict it holds our entry.
    pub tree: TreeId,
    /// The conflicts, in path order.
    pub conflicts: Vec<Conflict>,
}

/// Merges `theirs` into `ours`, both changed from `base` (`None`: the empty
/// tree, for histories with no common commit). The merged tree and every
/// tree in it is written to `store`.
pub fn merge_trees(
    store: &dyn Store,
    base: Option<TreeId>,
    ours: TreeId,
    theirs: TreeId,
) -> Result<Merged> {
    let mut merger = Merger { store, conflicts: Vec::new() };
    let root = RepoPath::root();
    let tree = merger.dirs(&root, 0, base, Some(ours), Some(theirs))?;
    let tree = match tree {
        Some(tree) => tree,
        // (Only when both sides are the empty tree's id, never `None`.)
        None => put_tree(store, Tree::default())?,
    };
    merger.conflicts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Merged { tree, conflicts: merger.conflicts })
}

struct Merger<'s> {
    store: &'s dyn Store,
    conflicts: Vec<Conflict>,
}

fn put_tree(store: &dyn Store, tree: Tree) -> Result<TreeId> {
    let id = tree.id();
    store.put(id.object_id(), &tree.encode())?;
    Ok(id)
}

impl Merger<'_> {
    /// Merges three directories (`None`: absent); returns the merged one.
    fn dirs(
        &mut self,
        path: &RepoPath,
        depth: usize,
        base: Option<TreeId>,
        ours: Option<TreeId>,
        theirs: Option<TreeId>,
    ) -> Result<Option<TreeId>> {
        // By id alone, without reading anything.
        if ours == theirs || base == theirs {
            return Ok(ours);
        }
        if base == ours {
            return Ok(theirs);
        }
        let read = |id: Option<TreeId>| -> Result<Tree> {
            match id {
                Some(id) => {
                    let tree = read_tree(self.store, id)?;
                    check_depth(depth, id, &tree)?;
                    Ok(tree)
                }
                None => Ok(Tree::default()),
            }
        };
        let (b, o, t) = (read(base)?, read(ours)?, read(theirs)?);
        let mut names: Vec<&crate::Name> =
            b.entries().iter().chain(o.entries()).chain(t.entries()).map(|e| &e.name).collect();
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let get = |tree: &Tree| tree.get(name.as_bytes()).map(|e| e.kind.clone());
            let child = path.join(name).expect("a name from a stored tree");
            if let Some(kind) = self.entry(&child, depth, get(&b), get(&o), get(&t))? {
                out.push(TreeEntry { name: name.clone(), kind });
            }
        }
        // (Names are unique: each came once from the union.)
        let tree =
            Tree::new(out).map_err(|_| crate::Error::TooManyEntries { path: path.clone() })?;
        Ok(Some(put_tree(self.store, tree)?))
    }

    /// Merges one entry; records a conflict (keeping ours) when it does
    /// not merge.
    fn entry(
        &mut self,
        path: &RepoPath,
        depth: usize,
        base: Option<EntryKind>,
        ours: Option<EntryKind>,
        theirs: Option<EntryKind>,
    ) -> Result<Option<EntryKind>> {
        if ours == theirs || base == theirs {
            return Ok(ours);
        }
        if base == ours {
            return Ok(theirs);
        }
        let dir = |e: &Option<EntryKind>| match e {
            Some(EntryKind::Dir(id)) => Some(*id),
            _ => None,
        };
        match (&ours, &theirs) {
            (Some(EntryKind::Dir(o)), Some(EntryKind::Dir(t))) => {
                let merged = self.dirs(path, depth + 1, dir(&base), Some(*o), Some(*t))?;
                return Ok(merged.map(EntryKind::Dir));
            }
            (Some(EntryKind::File(o)), Some(EntryKind::File(t))) => {
                let b = match &base {
                    Some(EntryKind::File(b)) => Some(b),
                    _ => None,
                };
                if let Some(file) = merge_files(b, o, t) {
                    return Ok(Some(EntryKind::File(file)));
                }
            }
            _ => {}
        }
        self.conflicts.push(Conflict { path: path.clone(), base, ours: ours.clone(), theirs });
        Ok(ours)
    }
}

/// Two files changed from `base`: content and executable bit merged apart;
/// `None` if either conflicts.
fn merge_files(
    base: Option<&FileEntry>,
    ours: &FileEntry,
    theirs: &FileEntry,
) -> Option<FileEntry> {
    let content = if ours.id == theirs.id || base.is_some_and(|b| b.id == theirs.id) {
        (ours.id, ours.size)
    } else if base.is_some_and(|b| b.id == ours.id) {
        (theirs.id, theirs.size)
    } else {
        return None;
    };
    let executable = if ours.executable == theirs.executable {
        ours.executable
    } else {
        // Booleans: with a base, exactly one side changed it.
        base?.executable ^ ours.executable ^ theirs.executable
    };
    Some(FileEntry { id: content.0, size: content.1, executable })
}

/// A best common ancestor of `a` and `b` (`None` if they share no
/// history): both histories are walked newest first (by commit time), and
/// the first commit reached from both sides is the answer. With clocks
/// that went backwards, or criss-cross merges, that is one of the common
/// ancestors, not necessarily the one git would pick.
pub fn merge_base(store: &dyn Store, a: CommitId, b: CommitId) -> Result<Option<CommitId>> {
    if a == b {
        return Ok(Some(a));
    }
    const A: u8 = 1;
    const B: u8 = 2;
    let mut flags: HashMap<CommitId, u8> = HashMap::new();
    let mut queue: BinaryHeap<(i64, CommitId)> = BinaryHeap::new();
    for (id, side) in [(a, A), (b, B)] {
        flags.insert(id, side);
        queue.push((read_commit(store, id)?.time.unix_us, id));
    }
    let mut processed: std::collections::HashSet<CommitId> = std::collections::HashSet::new();
    while let Some((_, id)) = queue.pop() {
        let side = flags[&id];
        if side == A | B {
            return Ok(Some(id));
        }
        if processed.len() >= MERGE_BASE_COMMITS_MAX {
            return Err(crate::Error::HistoryTooLong { max: MERGE_BASE_COMMITS_MAX });
        }
        processed.insert(id);
        for parent in read_commit(store, id)?.parents {
            let seen = flags.entry(parent).or_insert(0);
            let before = *seen;
            *seen |= side;
            if before == 0 {
                queue.push((read_commit(store, parent)?.time.unix_us, parent));
            } else if *seen == A | B && processed.contains(&parent) {
                // Already walked from the other side (a clock that went
                // backwards): common all the same.
                return Ok(Some(parent));
            }
        }
    }
    Ok(None)
}
