//! Differences between two trees. Subtrees with equal ids are skipped
//! without being read, so a diff costs O(what differs), not O(tree).

use vst_cas::Store;

use crate::error::Result;
use crate::id::TreeId;
use crate::name::RepoPath;
use crate::read::{WalkBudget, check_depth, merge, read_tree};
use crate::tree::{EntryKind, Tree};

/// One path whose entry differs between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The path.
    pub path: RepoPath,
    /// The entry in the old tree, if any.
    pub old: Option<EntryKind>,
    /// The entry in the new tree, if any.
    pub new: Option<EntryKind>,
}

/// How a path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// Only in the new tree.
    Added,
    /// Only in the old tree.
    Removed,
    /// The same kind of entry on both sides, with different content, target
    /// or executable bit.
    Modified,
    /// A file, symlink or directory replaced by another kind.
    TypeChanged,
}

impl Change {
    /// How the path changed.
    pub fn kind(&self) -> ChangeKind {
        match (&self.old, &self.new) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            (Some(a), Some(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => {
                ChangeKind::Modified
            }
            _ => ChangeKind::TypeChanged,
        }
    }
}

/// Every difference between the trees `old` and `new` (`None` is an empty
/// tree), in tree order.
///
/// A file or symlink that differs is one change. A directory that exists on
/// both sides is not a change itself; what differs inside it is. A
/// directory that was added or removed (or replaces another kind of entry)
/// is a change, followed by one change for every entry inside it.
///
/// The entries visited are bounded by [`crate::limits::WALK_ENTRIES_MAX`]
/// ([`crate::Error::WalkTooLarge`]): a directory on one side only is
/// counted whole before it is walked, those on both sides as they are
/// read.
pub fn diff_trees(
    store: &dyn Store,
    old: Option<TreeId>,
    new: Option<TreeId>,
) -> Result<Vec<Change>> {
    let mut diff = Diff { store, budget: WalkBudget::default(), out: Vec::new() };
    if old != new {
        diff.dirs(&RepoPath::root(), old, new, 0, Counted::No)?;
    }
    Ok(diff.out)
}

/// Whether the directories being compared are inside a directory on one
/// side only, whose walk was counted whole already.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    Yes,
    No,
}

struct Diff<'a> {
    store: &'a dyn Store,
    budget: WalkBudget,
    out: Vec<Change>,
}

impl Diff<'_> {
    fn dirs(
        &mut self,
        path: &RepoPath,
        old: Option<TreeId>,
        new: Option<TreeId>,
        depth: usize,
        counted: Counted,
    ) -> Result<()> {
        let counted = match (counted, old, new) {
            (Counted::No, Some(id), None) | (Counted::No, None, Some(id)) => {
                self.budget.spend_walk(self.store, id, depth)?;
                Counted::Yes
            }
            _ => counted,
        };
        let store = self.store;
        let load = |id: Option<TreeId>| -> Result<Tree> {
            let Some(id) = id else { return Ok(Tree::default()) };
            let tree = read_tree(store, id)?;
            check_depth(depth, id, &tree)?;
            Ok(tree)
        };
        let (old_tree, new_tree) = (load(old)?, load(new)?);
        if counted == Counted::No {
            let id = new.or(old).expect("a diff compares at least one tree");
            self.budget.spend(id, (old_tree.len() + new_tree.len()) as u64)?;
        }
        self.entries(path, &old_tree, &new_tree, depth, counted)
    }

    fn entries(
        &mut self,
        path: &RepoPath,
        old: &Tree,
        new: &Tree,
        depth: usize,
        counted: Counted,
    ) -> Result<()> {
        for (a, b) in merge(old.entries(), new.entries()) {
            let a = a.map(|e| (&e.name, &e.kind));
            let b = b.map(|e| (&e.name, &e.kind));
            let name = a.or(b).expect("merge yields at least one side").0;
            let (a, b) = (a.map(|x| x.1), b.map(|x| x.1));
            if a == b {
                continue;
            }
            let child = path.join_unchecked(name.as_bytes());
            let sub = |k: Option<&EntryKind>| match k {
                Some(EntryKind::Dir(id)) => Some(*id),
                _ => None,
            };
            if let (Some(EntryKind::Dir(_)), Some(EntryKind::Dir(_))) = (a, b) {
                self.dirs(&child, sub(a), sub(b), depth + 1, counted)?;
                continue;
            }
            self.out.push(Change { path: child.clone(), old: a.cloned(), new: b.cloned() });
            if sub(a).is_some() || sub(b).is_some() {
                self.dirs(&child, sub(a), sub(b), depth + 1, counted)?;
            }
        }
        Ok(())
    }
}
