//! Checking a store: reachability and structure, optionally every byte.

use std::collections::{HashMap, HashSet};

use vst_cas::{ObjectId, Store};

use crate::error::{Error, ObjectKind, Result};
use crate::id::{CommitId, TreeId};
use crate::limits::PATH_DEPTH_MAX;
use crate::read::{check_depth, check_file_len, read_blob, read_commit, read_tree};
use crate::tree::{EntryKind, FileEntry, Tree};

/// Whether fsck reads and rehashes file content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadData {
    /// Check that every blob is stored with the size its entry records,
    /// without reading it (from the store's record of its length).
    No,
    /// Read every blob and check it against its id.
    Yes,
}

/// One thing fsck found wrong.
#[derive(Debug)]
pub struct Problem {
    /// The object.
    pub id: ObjectId,
    /// What it was expected to be.
    pub kind: ObjectKind,
    /// What is wrong with it.
    pub error: Error,
}

/// What fsck checked and found.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// Commits checked.
    pub commits: u64,
    /// Distinct trees checked.
    pub trees: u64,
    /// Distinct blobs checked (a blob that entries record with different
    /// sizes, all but one of them wrong, is checked and counted once per
    /// size).
    pub blobs: u64,
    /// Everything missing, corrupt or malformed.
    pub problems: Vec<Problem>,
    /// Refs that could not be read (by name or path), and why.
    pub bad_refs: Vec<(String, Error)>,
    /// Packs whose records could not all be read when the store was opened.
    pub damaged_packs: Vec<u32>,
    /// Stored records (of any object or chunk, reachable or not) that fail
    /// their checks; filled only with [`ReadData::Yes`].
    pub damaged_records: Vec<(ObjectId, vst_cas::StoreError)>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
            && self.bad_refs.is_empty()
            && self.damaged_packs.is_empty()
            && self.damaged_records.is_empty()
    }
}

/// What [`for_each_reachable`] reached.
pub(crate) enum Reached<'a> {
    /// A commit that decoded.
    Commit(CommitId),
    /// A tree that decoded and is within the depth limit.
    Tree(TreeId),
    /// A file entry of a reached tree (its blob not read): once for each
    /// blob and size, so that every size recorded for a blob gets checked.
    Blob(&'a FileEntry),
    /// A commit or tree that could not be read or decoded.
    Broken { id: ObjectId, kind: ObjectKind, error: Error },
}

/// Calls `visit` once for every commit, tree and blob reachable from
/// `roots`, ancestors included. Uses explicit stacks, so a deep history or
/// tree cannot overflow the thread's stack. Stops at the first error
/// `visit` returns.
///
/// The depth limit is checked at every depth a tree is reached at, not
/// only where it is first seen, without walking a shared subtree again:
/// each tree's height is remembered, and a tree reached again at depth `d`
/// is within the limit there if `d + height <= PATH_DEPTH_MAX`. A subtree
/// too deep is reported once, as [`Error::TooDeep`].
pub(crate) fn for_each_reachable(
    store: &dyn Store,
    roots: &[CommitId],
    visit: &mut dyn FnMut(Reached<'_>) -> Result<()>,
) -> Result<()> {
    let mut seen_commits: HashSet<CommitId> = HashSet::new();
    let mut commits: Vec<CommitId> = roots.to_vec();
    let mut walk = TreeWalk::default();
    while let Some(id) = commits.pop() {
        if !seen_commits.insert(id) {
            continue;
        }
        match read_commit(store, id) {
            Ok(commit) => {
                commits.extend(commit.parents.iter().copied());
                visit(Reached::Commit(id))?;
                walk.run(store, commit.tree, visit)?;
            }
            Err(error) => {
                visit(Reached::Broken { id: id.object_id(), kind: ObjectKind::Commit, error })?
            }
        }
    }
    Ok(())
}

/// Calls `visit` on each tree and blob the trees `roots` reach (for roots
/// that are not commits: the work tree's index).
pub(crate) fn for_each_in_trees(
    store: &dyn Store,
    roots: &[crate::TreeId],
    visit: &mut dyn FnMut(Reached<'_>) -> Result<()>,
) -> Result<()> {
    let mut walk = TreeWalk::default();
    for tree in roots {
        walk.run(store, *tree, visit)?;
    }
    Ok(())
}

/// What the walk knows of a tree it has expanded.
#[derive(Clone, Copy)]
enum Known {
    /// Its height: how many components its deepest path adds (0 for an
    /// empty tree). A tree that could not be read counts as 0: nothing
    /// under it is reachable, so nothing under it can be too deep.
    Height(usize),
    /// Expanded at this depth, where a part of it was too deep (and
    /// reported): it is too deep at any greater depth too, and is expanded
    /// again only if reached at a smaller one. So a tree is expanded at
    /// most `PATH_DEPTH_MAX + 2` times, never once per path to it.
    TooDeepFrom(usize),
}

/// How a tree reached at some depth adds to its parent.
enum Entered {
    /// Within the limit, with this height.
    Height(usize),
    /// Too deep there (reported).
    TooDeep,
    /// New there: its entries are to be walked.
    Expand(Frame),
}

/// A tree being expanded: its entries not yet walked, and the height and
/// verdict of those walked.
struct Frame {
    id: TreeId,
    depth: usize,
    tree: Tree,
    next: usize,
    height: usize,
    too_deep: bool,
}

/// The state of the tree walk, shared by every commit's tree: a tree is
/// checked once whichever commit reaches it.
#[derive(Default)]
struct TreeWalk {
    known: HashMap<TreeId, Known>,
    /// Trees that decoded (reported once as [`Reached::Tree`]). One set
    /// per kind: a file whose bytes happen to be a tree's encoding has that
    /// tree's id, and must not make the walk skip the tree.
    seen_trees: HashSet<TreeId>,
    seen_blobs: HashSet<(ObjectId, u64)>,
    reported_too_deep: HashSet<TreeId>,
}

impl TreeWalk {
    fn run(
        &mut self,
        store: &dyn Store,
        root: TreeId,
        visit: &mut dyn FnMut(Reached<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut frames = match self.enter(store, root, 0, visit)? {
            Entered::Expand(frame) => vec![frame],
            Entered::Height(_) | Entered::TooDeep => return Ok(()),
        };
        while let Some(top) = frames.last_mut() {
            let Some(entry) = top.tree.entries().get(top.next) else {
                let done = frames.pop().expect("the loop holds a frame");
                let known = if done.too_deep {
                    Known::TooDeepFrom(done.depth)
                } else {
                    Known::Height(done.height)
                };
                self.known.insert(done.id, known);
                if let Some(parent) = frames.last_mut() {
                    parent.add(known_entered(known));
                }
                continue;
            };
            top.next += 1;
            let kind = entry.kind.clone();
            let depth = top.depth + 1;
            match kind {
                EntryKind::Dir(sub) => match self.enter(store, sub, depth, visit)? {
                    Entered::Expand(frame) => frames.push(frame),
                    entered => top_of(&mut frames).add(entered),
                },
                EntryKind::File(f) => {
                    top.height = top.height.max(1);
                    if self.seen_blobs.insert((f.id.object_id(), f.size)) {
                        visit(Reached::Blob(&f))?;
                    }
                }
                EntryKind::Symlink(_) => top.height = top.height.max(1),
            }
        }
        Ok(())
    }

    /// Reaches tree `id` at `depth`: from what is known of it, or by
    /// reading it.
    fn enter(
        &mut self,
        store: &dyn Store,
        id: TreeId,
        depth: usize,
        visit: &mut dyn FnMut(Reached<'_>) -> Result<()>,
    ) -> Result<Entered> {
        match self.known.get(&id) {
            Some(Known::Height(height)) if depth + height > PATH_DEPTH_MAX => {
                self.report_too_deep(id, visit)?;
                return Ok(Entered::TooDeep);
            }
            Some(&Known::Height(height)) => return Ok(Entered::Height(height)),
            Some(&Known::TooDeepFrom(at)) if depth >= at => return Ok(Entered::TooDeep),
            Some(Known::TooDeepFrom(_)) | None => {}
        }
        let tree = match read_tree(store, id) {
            Ok(tree) => tree,
            Err(error) => {
                self.known.insert(id, Known::Height(0));
                visit(Reached::Broken { id: id.object_id(), kind: ObjectKind::Tree, error })?;
                return Ok(Entered::Height(0));
            }
        };
        if check_depth(depth, id, &tree).is_err() {
            self.known.insert(id, Known::TooDeepFrom(depth));
            self.report_too_deep(id, visit)?;
            return Ok(Entered::TooDeep);
        }
        if self.seen_trees.insert(id) {
            visit(Reached::Tree(id))?;
        }
        Ok(Entered::Expand(Frame { id, depth, tree, next: 0, height: 0, too_deep: false }))
    }

    fn report_too_deep(
        &mut self,
        id: TreeId,
        visit: &mut dyn FnMut(Reached<'_>) -> Result<()>,
    ) -> Result<()> {
        if !self.reported_too_deep.insert(id) {
            return Ok(());
        }
        visit(Reached::Broken {
            id: id.object_id(),
            kind: ObjectKind::Tree,
            error: Error::TooDeep { id: id.object_id() },
        })
    }
}

impl Frame {
    /// Adds a subdirectory's verdict.
    fn add(&mut self, entered: Entered) {
        match entered {
            Entered::Height(height) => self.height = self.height.max(1 + height),
            Entered::TooDeep => self.too_deep = true,
            Entered::Expand(_) => unreachable!("an expanded subdirectory is added once done"),
        }
    }
}

fn known_entered(known: Known) -> Entered {
    match known {
        Known::Height(height) => Entered::Height(height),
        Known::TooDeepFrom(_) => Entered::TooDeep,
    }
}

fn top_of(frames: &mut [Frame]) -> &mut Frame {
    frames.last_mut().expect("the loop holds a frame")
}

/// Checks everything reachable from `roots`: every commit and its
/// ancestors, every tree (decoded, so canonical, sorted, named by the
/// rules), and every blob (present, of the size its entries record;
/// rehashed with [`ReadData::Yes`]).
/// Each object is checked once however often it is referenced. Problems
/// are collected, not fatal: the report lists all of them.
pub fn fsck(store: &dyn Store, roots: &[CommitId], read_data: ReadData) -> FsckReport {
    let mut report = FsckReport::default();
    let walked = for_each_reachable(store, roots, &mut |reached| {
        match reached {
            Reached::Commit(_) => report.commits += 1,
            Reached::Tree(_) => report.trees += 1,
            Reached::Broken { id, kind, error } => {
                report.problems.push(Problem { id, kind, error })
            }
            Reached::Blob(f) => {
                report.blobs += 1;
                if let Err(error) = check_blob(store, f, read_data) {
                    report.problems.push(Problem {
                        id: f.id.object_id(),
                        kind: ObjectKind::Blob,
                        error,
                    });
                }
            }
        }
        Ok(())
    });
    debug_assert!(walked.is_ok(), "the fsck visitor never fails");
    report
}

/// Checks a blob is stored with the size its entry records: from the
/// store's record of its length, or by reading and rehashing it.
fn check_blob(store: &dyn Store, file: &FileEntry, read_data: ReadData) -> Result<()> {
    match read_data {
        ReadData::No => check_file_len(store, file),
        ReadData::Yes => read_blob(store, file).map(drop),
    }
}
