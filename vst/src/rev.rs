//! Revisions: the names a user gives a commit.
//!
//! `HEAD` (or `@`); a branch; a tag; a remote-tracking ref
//! (`REMOTE/BRANCH`); a full commit id or a unique prefix of one (at least
//! [`REV_PREFIX_LEN_MIN`](crate::limits::REV_PREFIX_LEN_MIN) hex digits). A name that is both a branch and a
//! tag (or tracking ref) is the branch, as the branch is what commits move.
//! Any of them may be followed by `~N`, the `N`th first-parent ancestor
//! (`~` alone is `~1`; `A~1~2` is `(A~1)~2`).
//!
//! The CLI and the bindings resolve revisions here, so a revision means
//! the same everywhere.

use vst_cas::{RefError, RefName};

use crate::error::Error;
use crate::id::CommitId;
use crate::limits::{COMMIT_LEN_BOUND, REV_PREFIX_LEN_MIN};
use crate::read;
use crate::repo::Repo;

/// Why a revision names no commit.
#[derive(Debug, thiserror::Error)]
pub enum RevError {
    /// Neither `HEAD`, a branch, a tag, a tracking ref, nor (a prefix of)
    /// a commit id.
    #[error(
        "unknown revision {rev:?}: not HEAD, a branch, a tag, a remote-tracking ref, or (a prefix of) a commit id"
    )]
    Unknown {
        /// The revision as given.
        rev: String,
    },
    /// Hex digits too few to be a commit id prefix.
    #[error(
        "revision {rev:?} is too short: a commit id prefix needs at least {REV_PREFIX_LEN_MIN} hex digits"
    )]
    TooShort {
        /// The revision as given.
        rev: String,
    },
    /// A prefix that several commits start with.
    #[error("revision {rev:?} is ambiguous: {} commits start with it; give more digits", candidates.len())]
    Ambiguous {
        /// The revision as given.
        rev: String,
        /// Every commit that starts with it, sorted.
        candidates: Vec<CommitId>,
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
    Vst(#[from] Error),
}

impl From<RefError> for RevError {
    fn from(e: RefError) -> Self {
        Self::Vst(crate::repo::ref_err(e))
    }
}

/// The commit `spec` names in `repo`.
pub fn resolve(repo: &Repo, spec: &str) -> Result<CommitId, RevError> {
    let (base, back) = match spec.rsplit_once('~') {
        Some((base, "")) => (base, 1),
        Some((base, n)) => {
            let n = n.parse().map_err(|_| RevError::BadAncestor { rev: spec.to_owned() })?;
            (base, n)
        }
        None => (spec, 0),
    };
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
    if let Ok(name) = RefName::try_from(base) {
        let named = match repo.refs().get(&name)? {
            Some(id) => Some(id),
            None => match repo.tags().get(&name)? {
                Some(id) => Some(id),
                None => repo.tracking_refs().get(&name)?,
            },
        };
        if let Some(id) = named {
            return Ok(CommitId::new(id));
        }
    }
    let hex = base.to_ascii_lowercase();
    let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && hex.len() < REV_PREFIX_LEN_MIN {
        return Err(RevError::TooShort { rev: base.to_owned() });
    }
    if is_hex && hex.len() <= 64 {
        let store = repo.store();
        let matches: Vec<CommitId> = if let Ok(id) = hex.parse::<CommitId>() {
            // A full id: one lookup, not a pass over every object.
            vec![id]
        } else {
            repo.object_ids()
                .into_iter()
                .filter(|id| id.to_string().starts_with(&hex))
                .map(CommitId::new)
                .collect()
        };
        // Only commits count: an object too long to be one is not read,
        // and one that does not decode as one is some other object; a
        // store that cannot read it is an error, not "unknown".
        let mut commits = Vec::new();
        for id in matches {
            let len = store.object_len(&id.object_id()).map_err(Error::Store)?;
            if len.is_none_or(|len| len > COMMIT_LEN_BOUND as u64) {
                continue;
            }
            match read::read_commit(store.as_ref(), id) {
                Ok(_) => commits.push(id),
                Err(Error::Decode { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut matches = commits;
        matches.sort();
        match matches.len() {
            0 => {}
            1 => return Ok(matches[0]),
            _ => return Err(RevError::Ambiguous { rev: base.to_owned(), candidates: matches }),
        }
    }
    Err(RevError::Unknown { rev: base.to_owned() })
}
