//! Revisions: `HEAD`, a branch name, a remote-tracking ref (`REMOTE/BRANCH`,
//! when no branch has that name), a full commit id or a unique prefix of
//! one, each optionally followed by `~N` (the Nth first-parent ancestor).

use anyhow::{Context, Result, anyhow, bail};
use vst::{CommitId, Repo, read};
use vst_cas::{Head, RefName};

/// The commit `spec` names.
pub fn resolve(repo: &Repo, spec: &str) -> Result<CommitId> {
    let (base, back) = match spec.rsplit_once('~') {
        Some((base, n)) => {
            let n: usize = if n.is_empty() {
                1
            } else {
                n.parse().with_context(|| {
                    format!("bad revision {spec:?}: {n:?} after `~` is not a number")
                })?
            };
            (base, n)
        }
        None => (spec, 0),
    };
    // `A~1~2` is `(A~1)~2`.
    let mut id = if base.contains('~') { resolve(repo, base)? } else { resolve_base(repo, base)? };
    for step in 0..back {
        let commit = read::read_commit(repo.store().as_ref(), id)?;
        id = *commit.parents.first().ok_or_else(|| {
            anyhow!("{base}~{} does not exist: history has only {step} ancestors", step + 1)
        })?;
    }
    Ok(id)
}

/// The most candidates an ambiguous prefix's error lists.
const AMBIGUOUS_SHOWN_MAX: usize = 10;

fn resolve_base(repo: &Repo, base: &str) -> Result<CommitId> {
    if base == "HEAD" || base == "@" {
        return repo.head_commit()?.ok_or_else(|| {
            anyhow!("HEAD has no commit yet: make one with `vst commit -m MESSAGE`")
        });
    }
    if let Ok(name) = RefName::try_from(base) {
        if let Some(id) = repo.refs().get(&name)? {
            return Ok(CommitId::new(id));
        }
        if let Some(id) = repo.tracking_refs().get(&name)? {
            return Ok(CommitId::new(id));
        }
    }
    let hex = base.to_ascii_lowercase();
    if hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let store = repo.store();
        let mut matches: Vec<CommitId> = repo
            .object_ids()
            .into_iter()
            .filter(|id| id.to_string().starts_with(&hex))
            .map(CommitId::new)
            .filter(|id| read::read_commit(store.as_ref(), *id).is_ok())
            .collect();
        matches.sort();
        match matches.len() {
            1 => return Ok(matches[0]),
            0 => {}
            n => {
                let shown: Vec<String> = matches
                    .iter()
                    .take(AMBIGUOUS_SHOWN_MAX)
                    .map(|id| {
                        let c = read::read_commit(store.as_ref(), *id);
                        let first =
                            c.as_ref().map_or("", |c| c.message.lines().next().unwrap_or(""));
                        format!("\n  {:.12} {first}", id.to_string())
                    })
                    .collect();
                let more = if n > AMBIGUOUS_SHOWN_MAX { "\n  ..." } else { "" };
                bail!(
                    "revision {base:?} is ambiguous: {n} commits start with it; give more digits:{}{more}",
                    shown.concat()
                )
            }
        }
    } else if hex.len() < 4 && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("revision {base:?} is too short: a commit id prefix needs at least 4 hex digits");
    }
    bail!(
        "unknown revision {base:?}: not HEAD, a branch, a remote-tracking ref, or (a prefix of) a commit id; `vst branch` lists branches, `vst branch -r` remote-tracking refs, `vst log` commits"
    )
}

/// The branch `HEAD` is on, if any.
pub fn current_branch(repo: &Repo) -> Result<Option<RefName>> {
    Ok(match repo.refs().head()? {
        Head::Branch(name) => Some(name),
        Head::Detached(_) => None,
    })
}
