//! Checking a store: reachability and structure, optionally every byte.

use std::collections::HashSet;

use vst_cas::{ObjectId, Store};

use crate::error::{Error, ObjectKind};
use crate::id::{CommitId, TreeId};
use crate::read::{check_depth, read_commit, read_tree};
use crate::tree::EntryKind;

/// Whether fsck reads and rehashes file content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadData {
    /// Check that every blob is stored, without reading it.
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
    /// Distinct blobs checked.
    pub blobs: u64,
    /// Everything missing, corrupt or malformed.
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks everything reachable from `roots`: every commit and its
/// ancestors, every tree (decoded, so canonical, sorted, named by the
/// rules), and every blob (present; rehashed with [`ReadData::Yes`]).
/// Each object is checked once however often it is referenced. Problems
/// are collected, not fatal: the report lists all of them.
pub fn fsck(store: &dyn Store, roots: &[CommitId], read_data: ReadData) -> FsckReport {
    let mut report = FsckReport::default();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut commits: Vec<CommitId> = roots.to_vec();
    // (tree, depth): an explicit stack, so a deep tree cannot overflow ours.
    let mut trees: Vec<(TreeId, usize)> = Vec::new();
    while let Some(id) = commits.pop() {
        if !seen.insert(id.object_id()) {
            continue;
        }
        report.commits += 1;
        match read_commit(store, id) {
            Ok(commit) => {
                commits.extend(commit.parents.iter().copied());
                trees.push((commit.tree, 0));
            }
            Err(error) => report.problems.push(Problem {
                id: id.object_id(),
                kind: ObjectKind::Commit,
                error,
            }),
        }
        while let Some((tree_id, depth)) = trees.pop() {
            if !seen.insert(tree_id.object_id()) {
                continue;
            }
            report.trees += 1;
            let tree = match read_tree(store, tree_id)
                .and_then(|t| check_depth(depth, tree_id, &t).map(|()| t))
            {
                Ok(tree) => tree,
                Err(error) => {
                    report.problems.push(Problem {
                        id: tree_id.object_id(),
                        kind: ObjectKind::Tree,
                        error,
                    });
                    continue;
                }
            };
            for entry in tree.entries() {
                match &entry.kind {
                    EntryKind::Dir(sub) => trees.push((*sub, depth + 1)),
                    EntryKind::File(f) => {
                        let blob = f.id.object_id();
                        if !seen.insert(blob) {
                            continue;
                        }
                        report.blobs += 1;
                        let result = match read_data {
                            ReadData::No => match store.contains(&blob) {
                                Ok(true) => Ok(()),
                                Ok(false) => Err(vst_cas::StoreError::NotFound { id: blob }.into()),
                                Err(e) => Err(e.into()),
                            },
                            ReadData::Yes => match store.get(&blob) {
                                Ok(bytes) if bytes.len() as u64 == f.size => Ok(()),
                                Ok(bytes) => Err(Error::SizeMismatch {
                                    id: f.id,
                                    recorded: f.size,
                                    actual: bytes.len() as u64,
                                }),
                                Err(e) => Err(e.into()),
                            },
                        };
                        if let Err(error) = result {
                            report.problems.push(Problem {
                                id: blob,
                                kind: ObjectKind::Blob,
                                error,
                            });
                        }
                    }
                    EntryKind::Symlink(_) => {}
                }
            }
        }
    }
    report
}
