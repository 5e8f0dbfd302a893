//! What both bindings need beyond the library: status words and error
//! messages. Both include this one file (`#[path]`) rather than
//! each keeping a copy; a crate for it would be a boundary that is not
//! real.
//!
//! Revisions are the library's (`vst::rev`), so they mean what they mean
//! in the CLI.

use vst::{ChangeKind, CommitId, EntryKind, Repo, RepoPath, read};

pub use vst::RevError;
pub use vst::resolve;

/// A ref error as the library reports it (as `vst::repo` maps them).
pub fn ref_err(e: vst_cas::RefError) -> RevError {
    RevError::from(e)
}

/// The CLI's word for a change (`vst diff --json`).
pub fn status_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "deleted",
        ChangeKind::Modified => "modified",
        ChangeKind::TypeChanged => "type_changed",
    }
}

/// `e` and every error below it, joined by `: `: the library's whole
/// message (its `Display` names only the outermost step).
pub fn message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // A transparent wrapper repeats its source's message.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The tree of commit `id` (`None`: no commit, the empty tree).
fn tree_of(repo: &Repo, id: Option<CommitId>) -> Result<Option<vst::TreeId>, vst::Error> {
    id.map(|id| Ok(read::read_commit(repo.store().as_ref(), id)?.tree)).transpose()
}

/// The files and symlinks that differ between commits `a` and `b`
/// (`None`: the empty tree), with their status words, as `vst diff`
/// lists them: a directory shows through what is in it.
pub fn diff(
    repo: &Repo,
    a: Option<CommitId>,
    b: Option<CommitId>,
) -> Result<Vec<(RepoPath, &'static str)>, vst::Error> {
    let changes = vst::diff_trees(repo.store().as_ref(), tree_of(repo, a)?, tree_of(repo, b)?)?;
    Ok(changes
        .into_iter()
        .filter(|c| {
            !matches!(
                (&c.old, &c.new),
                (Some(EntryKind::Dir(_)) | None, Some(EntryKind::Dir(_)) | None)
            )
        })
        .map(|c| {
            let word = status_word(c.kind());
            (c.path, word)
        })
        .collect())
}

/// The content of the file at `path` in commit `id`.
pub fn read_file(repo: &Repo, id: CommitId, path: &RepoPath) -> Result<bytes::Bytes, vst::Error> {
    let tree = read::read_commit(repo.store().as_ref(), id)?.tree;
    read::read_file(repo.store().as_ref(), tree, path)
}
