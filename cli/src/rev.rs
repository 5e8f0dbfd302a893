//! Revisions (`vst::rev`): the library resolves them; this adds what a
//! person needs next to its errors (the candidates of an ambiguous prefix,
//! the commands that list names).

use anyhow::{Result, anyhow};
use vst::{CommitId, Repo, RevError, read};
use vst_cas::{Head, RefName};

/// The most candidates an ambiguous prefix's error lists.
const AMBIGUOUS_SHOWN_MAX: usize = 10;

/// The commit `spec` names.
pub fn resolve(repo: &Repo, spec: &str) -> Result<CommitId> {
    vst::resolve(repo, spec).map_err(|e| match e {
        RevError::Unborn => anyhow!("HEAD has no commit yet: make one with `vst commit -m MESSAGE`"),
        RevError::Unknown { .. } => anyhow!(
            "{e}; `vst branch` lists branches, `vst tag` tags, `vst branch -r` remote-tracking refs, `vst log` commits"
        ),
        RevError::Ambiguous { ref candidates, .. } => {
            let store = repo.store();
            let shown: Vec<String> = candidates
                .iter()
                .take(AMBIGUOUS_SHOWN_MAX)
                .map(|id| {
                    let c = read::read_commit(store.as_ref(), *id);
                    let first = c.as_ref().map_or("", |c| c.message.lines().next().unwrap_or(""));
                    format!("\n  {:.12} {first}", id.to_string())
                })
                .collect();
            let more = if candidates.len() > AMBIGUOUS_SHOWN_MAX { "\n  ..." } else { "" };
            anyhow!("{e}:{}{more}", shown.concat())
        }
        RevError::Vst(e) => anyhow::Error::new(e),
        other => anyhow::Error::new(other),
    })
}

/// The branch `HEAD` is on, if any.
pub fn current_branch(repo: &Repo) -> Result<Option<RefName>> {
    Ok(match repo.refs().head()? {
        Head::Branch(name) => Some(name),
        Head::Detached(_) => None,
    })
}
