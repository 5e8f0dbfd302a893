//! What both bindings need beyond the library: revisions, status words
//! and error messages. Both include this one file (`#[path]`) rather than
//! each keeping a copy; a crate for it would be a boundary that is not
//! real.
//!
//! Revisions: `HEAD` (or `@`), a branch name, a full commit id or a
//! unique prefix of one (at least 4 hex digits), each optionally followed
//! by `~N` (the Nth first-parent ancestor): the CLI's syntax (its
//! `rev.rs`), which the bindings cannot reach since they do not depend on
//! the CLI crate, and the library has no resolver.

use vst::{ChangeKind, CommitId, EntryKind, Repo, RepoPath, read};
use vst_cas::RefName;

/// Why a revision names no commit.
#[derive(Debug, thiserror::Error)]
pub enum RevError {
    /// Neither `HEAD`, a branch, nor (a prefix of) a commit id.
    #[error("unknown revision {rev:?}: not HEAD, a branch, or (a prefix of) a commit id")]
    Unknown {
        /// The revision as given.
        rev: String,
    },
    /// A prefix that several commits start with.
    #[error("revision {rev:?} is ambiguous: {count} commits start with it; give more digits")]
    Ambiguous {
        /// The revision as given.
        rev: String,
        /// How many commits start with it.
        count: usize,
    },
    /// `HEAD` on a branch with no commit yet.
    #[error("HEAD has no commit yet")]
    Unborn,
    /// `~N` whose `N` is not a number.
    #[error("bad revision {rev:?}: what follows `~` is not a number")]
    BadAncestor {
        /// The revision as given.
        rev: String,
    },
    /// `~N` past the first commit.
    #[error("{rev} does not exist: history has only {have} ancestors")]
    TooFarBack {
        /// The revision as given.
        rev: String,
        /// How many first-parent ancestors there are.
        have: usize,
    },
    /// Reading the refs or a commit failed.
    #[error(transparent)]
    Vst(#[from] vst::Error),
}

/// The commit `spec` names.
pub fn resolve(repo: &Repo, spec: &str) -> Result<CommitId, RevError> {
    let (base, back) = match spec.rsplit_once('~') {
        Some((base, "")) => (base, 1),
        Some((base, n)) => {
            let n = n.parse().map_err(|_| RevError::BadAncestor { rev: spec.to_owned() })?;
            (base, n)
        }
        None => (spec, 0),
    };
    // `A~1~2` is `(A~1)~2`.
    let mut id = if base.contains('~') { resolve(repo, base)? } else { resolve_base(repo, base)? };
    for have in 0..back {
        let commit = read::read_commit(repo.store().as_ref(), id)?;
        id = *commit
            .parents
            .first()
            .ok_or_else(|| RevError::TooFarBack { rev: spec.to_owned(), have })?;
    }
    Ok(id)
}

fn resolve_base(repo: &Repo, base: &str) -> Result<CommitId, RevError> {
    if base == "HEAD" || base == "@" {
        return repo.head_commit()?.ok_or(RevError::Unborn);
    }
    if let Ok(name) = RefName::try_from(base)
        && let Some(id) = repo.refs().get(&name).map_err(ref_err)?
    {
        return Ok(CommitId::new(id));
    }
    let hex = base.to_ascii_lowercase();
    if hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let store = repo.store();
        let mut matches: Vec<CommitId> = if let Ok(id) = hex.parse::<CommitId>() {
            // A full id: one lookup, not a pass over every object.
            vec![id]
        } else {
            repo.object_ids()
                .into_iter()
                .filter(|id| id.to_string().starts_with(&hex))
                .map(CommitId::new)
                .collect()
        };
        matches.retain(|id| read::read_commit(store.as_ref(), *id).is_ok());
        matches.sort();
        match matches.len() {
            0 => {}
            1 => return Ok(matches[0]),
            count => return Err(RevError::Ambiguous { rev: base.to_owned(), count }),
        }
    }
    Err(RevError::Unknown { rev: base.to_owned() })
}

/// A ref error as the library reports it (as `vst::repo` maps them).
pub fn ref_err(e: vst_cas::RefError) -> RevError {
    RevError::Vst(match e {
        vst_cas::RefError::Store(e) => vst::Error::Store(e),
        other => vst::Error::Ref(other),
    })
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
