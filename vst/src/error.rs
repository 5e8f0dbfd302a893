//! The library's error type.

use std::path::PathBuf;

use vst_cas::{ObjectId, StoreError};

use crate::commit::InvalidCommit;
use crate::tree::{DecodeError, InvalidSymlink};
use crate::{CommitId, RepoPath};

/// What kind of object an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// File content.
    Blob,
    /// A directory.
    Tree,
    /// A commit.
    Commit,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Blob => "blob",
            ObjectKind::Tree => "tree",
            ObjectKind::Commit => "commit",
        })
    }
}

/// Everything that can go wrong in the `vst` library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (missing object, corrupt object, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ref could not be read or updated (bad name, lost race, damage).
    #[error(transparent)]
    Ref(vst_cas::RefError),
    /// An object's bytes are not a valid encoding.
    #[error("{kind} {id} is malformed")]
    Decode {
        /// What the object was expected to be.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// Why it does not decode.
        #[source]
        source: DecodeError,
    },
    /// No entry at this path.
    #[error("no such file or directory: {path}")]
    NotFound {
        /// The path.
        path: RepoPath,
    },
    /// A path goes through something that is not a directory.
    #[error("not a directory: {path}")]
    NotADirectory {
        /// The first component that is not a directory.
        path: RepoPath,
    },
    /// A file operation named a directory.
    #[error("is a directory: {path}")]
    IsADirectory {
        /// The path.
        path: RepoPath,
    },
    /// A file operation named a symlink.
    #[error("not a regular file: {path}")]
    NotAFile {
        /// The path.
        path: RepoPath,
    },
    /// The root cannot be written, removed or replaced.
    #[error("the root directory cannot be {op}")]
    Root {
        /// What was attempted.
        op: &'static str,
    },
    /// A symlink target breaks the rules.
    #[error("invalid symlink target for {path}")]
    InvalidSymlink {
        /// The link's path.
        path: RepoPath,
        /// The rule.
        #[source]
        source: InvalidSymlink,
    },
    /// A commit breaks a limit.
    #[error("invalid commit")]
    InvalidCommit(#[from] InvalidCommit),
    /// A tree from the store has entries deeper than
    /// [`crate::limits::PATH_DEPTH_MAX`] components.
    #[error("tree {id} nests deeper than {max} levels", max = crate::limits::PATH_DEPTH_MAX)]
    TooDeep {
        /// The tree at which the limit was reached.
        id: ObjectId,
    },
    /// A walk over the tree would visit more than
    /// [`crate::limits::WALK_ENTRIES_MAX`] entries, counting an entry once
    /// for every path to it (subtrees reused many times over).
    #[error(
        "tree {id} holds more than {max} entries counting every path to its subtrees (shared subtrees reused many times over?); vst does not walk it",
        max = crate::limits::WALK_ENTRIES_MAX
    )]
    WalkTooLarge {
        /// The tree whose walk passed the limit.
        id: ObjectId,
    },
    /// A walk of history read more commits than its limit.
    #[error("the history walk read more than {max} commits")]
    HistoryTooLong {
        /// The limit.
        max: usize,
    },
    /// Checkout could not do a filesystem operation.
    #[error("checkout: {op} {path}")]
    CheckoutIo {
        /// What checkout was doing.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Writing content out to the caller's writer failed (a closed pipe, a
    /// full disk).
    #[error("writing the content out failed")]
    Output {
        /// The writer's error.
        #[source]
        source: std::io::Error,
    },
    /// A blob's length differs from the size its tree entry records.
    #[error("blob {id} is {actual} bytes but its tree entry records {recorded}")]
    SizeMismatch {
        /// The blob.
        id: crate::BlobId,
        /// The size in the tree entry.
        recorded: u64,
        /// The blob's length.
        actual: u64,
    },
    /// A directory would get more than [`crate::limits::TREE_ENTRIES_MAX`]
    /// entries.
    #[error("directory {path} is full: at most {max} entries", max = crate::limits::TREE_ENTRIES_MAX)]
    TooManyEntries {
        /// The directory.
        path: RepoPath,
    },
    /// Checkout found something on disk that it will not write through (a
    /// symlink or a file where the tree has a directory).
    #[error("checkout refused: {path} is {found}, not a directory it can write into")]
    CheckoutUnsafe {
        /// The path on disk.
        path: PathBuf,
        /// What it found there.
        found: &'static str,
    },
    /// A pushed tag exists on the remote at another commit; nothing was
    /// changed there.
    #[error(
        "tag {tag} is at {at} on the remote: a tag names one commit; push with --force to move it there too"
    )]
    TagExists {
        /// The tag.
        tag: vst_cas::RefName,
        /// The commit the remote's tag names.
        at: crate::CommitId,
    },
    /// A push would have lost commits on the remote, or lost a race to
    /// another push; nothing was merged and the remote branch is as the
    /// other side left it.
    #[error("push of branch {branch} rejected: {reason}; pull first")]
    PushRejected {
        /// The branch.
        branch: vst_cas::RefName,
        /// Why.
        reason: crate::sync::Rejection,
    },
    /// Deleting a remote branch was refused: it is not at the commit this
    /// repository last saw there (or, without a tracking ref, at the one
    /// read a moment before: another push won). Nothing was deleted.
    #[error(
        "deleting remote branch {branch} refused: it is {}, not {} as this repository last saw it; fetch, look, and delete again",
        ids.actual.map_or_else(|| "gone".to_owned(), |a| format!("at {a}")),
        ids.expected
    )]
    DeleteRejected {
        /// The branch.
        branch: vst_cas::RefName,
        /// What was expected and found (boxed: errors stay small).
        ids: Box<DeleteIds>,
    },
    /// The remote has no branch of that name.
    #[error("the remote has no branch {branch}")]
    NoRemoteBranch {
        /// The branch.
        branch: vst_cas::RefName,
    },
    /// Something this repository cannot do.
    #[error("{what} is not supported")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// A checkout into a fresh directory found the directory not empty.
    #[error("checkout target {path} exists and is not an empty directory")]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// A rename would move a directory below itself, or over a directory
    /// that contains it.
    #[error("cannot move {from} to {to}: one contains the other")]
    RenameIntoItself {
        /// What was to move.
        from: RepoPath,
        /// Where to.
        to: RepoPath,
    },
    /// A repository file could not be read or written.
    #[error("{op} {path}")]
    RepoIo {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The repository's format file names a version or a feature this
    /// library does not know; nothing was written.
    #[error("the repository format in {path} needs a newer vst: it names {what}")]
    UnsupportedFormat {
        /// The format file.
        path: PathBuf,
        /// The unknown version or feature.
        what: String,
    },
    /// There is no repository at this directory (or above it, when
    /// discovering).
    #[error("{path} is not in a vst repository (no .vst here or above)")]
    NotARepository {
        /// Where the search started, or the directory opened.
        path: PathBuf,
    },
    /// `init` found a repository already there.
    #[error("{path} already holds a repository")]
    AlreadyARepository {
        /// The repository directory.
        path: PathBuf,
    },
    /// A repository file is damaged (it does not parse).
    #[error("{path} is damaged: {reason}")]
    DamagedRepoFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A work-tree operation failed on a path on disk.
    #[error("{op} {path}")]
    WorkTreeIo {
        /// What was being done.
        op: &'static str,
        /// The path on disk.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A `.vstignore` file could not be read or parsed.
    #[error("reading {path}")]
    Ignore {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ignore::Error,
    },
    /// A path on disk cannot be stored: one of its components breaks the
    /// naming rules (see `docs/format.md`).
    #[error("{path} cannot be stored: its path breaks vst's naming rules")]
    Unstorable {
        /// The path on disk.
        path: PathBuf,
        /// The rule it breaks.
        #[source]
        source: crate::InvalidName,
    },
    /// A work-tree update would overwrite uncommitted changes or untracked
    /// files; nothing was written.
    #[error("{} uncommitted change(s) or untracked file(s) in the way: {}{}", .paths.len(), crate::worktree::shown(.paths), if .paths.len() > 5 { ", ..." } else { "" })]
    Conflicts {
        /// Every path in the way, sorted.
        paths: Vec<RepoPath>,
    },
    /// A work-tree update stopped at a safe point because it was asked to
    /// (an interrupt); the next update finishes it.
    #[error("interrupted: the work tree is partly updated")]
    Interrupted,
    /// The work tree is not where its branch is: another process (a
    /// writable mount, say) moved the branch, or a checkout was
    /// interrupted. Nothing was changed.
    #[error("the work tree is at {at}, not at {head} where HEAD is")]
    WorkTreeBehind {
        /// The commit the work tree's files are at (`None`: empty).
        at: crate::worktree::AtCommit,
        /// The commit `HEAD` names.
        head: crate::worktree::AtCommit,
    },
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The commits of a refused remote-branch deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteIds {
    /// The commit the delete was conditional on.
    pub expected: CommitId,
    /// Where the branch is (`None`: it no longer exists).
    pub actual: Option<CommitId>,
}
