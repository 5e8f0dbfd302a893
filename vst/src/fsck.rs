//! Checking a store: reachability and structure, optionally every byte.

use std::collections::HashSet;

use vst_cas::{ObjectId, Store};

use crate::error::{Error, ObjectKind, Result};
use crate::id::{CommitId, TreeId};
use crate::read::{check_depth, check_file_len, read_blob, read_commit, read_tree};
use crate::tree::{EntryKind, FileEntry};

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
pub(crate) fn for_each_reachable(
    store: &dyn Store,
    roots: &[CommitId],
    visit: &mut dyn FnMut(Reached<'_>) -> Result<()>,
) -> Result<()> {
    // One set per kind: a file whose bytes happen to be a tree's encoding
    // has that tree's id, and must not make the walk skip the tree.
    let mut seen_commits: HashSet<CommitId> = HashSet::new();
    let mut seen_trees: HashSet<TreeId> = HashSet::new();
    let mut seen_blobs: HashSet<(ObjectId, u64)> = HashSet::new();
    let mut commits: Vec<CommitId> = roots.to_vec();
    let mut trees: Vec<(TreeId, usize)> = Vec::new();
    while let Some(id) = commits.pop() {
        if !seen_commits.insert(id) {
            continue;
        }
        match read_commit(store, id) {
            Ok(commit) => {
                commits.extend(commit.parents.iter().copied());
                trees.push((commit.tree, 0));
                visit(Reached::Commit(id))?;
            }
            Err(error) => {
                visit(Reached::Broken { id: id.object_id(), kind: ObjectKind::Commit, error })?
            }
        }
        while let Some((tree_id, depth)) = trees.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = match read_tree(store, tree_id)
                .and_then(|t| check_depth(depth, tree_id, &t).map(|()| t))
            {
                Ok(tree) => tree,
                Err(error) => {
                    visit(Reached::Broken {
                        id: tree_id.object_id(),
                        kind: ObjectKind::Tree,
                        error,
                    })?;
                    continue;
                }
            };
            visit(Reached::Tree(tree_id))?;
            for entry in tree.entries() {
                match &entry.kind {
                    EntryKind::Dir(sub) => trees.push((*sub, depth + 1)),
                    EntryKind::File(f) if seen_blobs.insert((f.id.object_id(), f.size)) => {
                        visit(Reached::Blob(f))?
                    }
                    EntryKind::File(_) | EntryKind::Symlink(_) => {}
                }
            }
        }
    }
    Ok(())
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
