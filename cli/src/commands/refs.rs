//! Branches: `vst branch`, and `vst branch -r` for the remote-tracking
//! refs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::{CommitId, Repo};
use vst_cas::{Access, Head};

use crate::args::Cli;
use crate::output::out;
use crate::rev;
use crate::workspace::{find, open};

/// `vst branch`.
pub fn branch(
    cli: &Cli,
    name: Option<&str>,
    rev: Option<&str>,
    delete: Delete,
    remotes: bool,
) -> Result<ExitCode> {
    let ws = find(cli)?;
    if remotes {
        let repo = open(&ws, Access::ReadOnly)?;
        let list = repo.tracking_refs().list()?;
        let mut out = out();
        if cli.json {
            let list: Vec<_> = list
                .iter()
                .map(|(name, id)| json!({ "name": name.as_str(), "commit": id.to_string() }))
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(list))?;
        } else {
            for (name, id) in list {
                writeln!(out, "  {name} {:.12}", id.to_string())?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match (name, delete) {
        (None, _) => {
            let repo = open(&ws, Access::ReadOnly)?;
            let head = repo.refs().head()?;
            let current = rev::current_branch(&repo)?;
            let list = repo.refs().list()?;
            let mut out = out();
            if cli.json {
                let branches: Vec<_> = list
                    .iter()
                    .map(|(name, id)| {
                        json!({
                            "name": name.as_str(),
                            "commit": id.to_string(),
                            "current": Some(name) == current.as_ref(),
                        })
                    })
                    .collect();
                let detached = match head {
                    Head::Detached(id) => Some(id.to_string()),
                    Head::Branch(_) => None,
                };
                writeln!(out, "{}", json!({ "branches": branches, "detached": detached }))?;
                return Ok(ExitCode::SUCCESS);
            }
            if let Head::Detached(id) = head {
                writeln!(out, "* (HEAD detached at {:.12})", id.to_string())?;
            }
            for (name, id) in list {
                let mark = if Some(&name) == current.as_ref() { '*' } else { ' ' };
                writeln!(out, "{mark} {name} {:.12}", id.to_string())?;
            }
        }
        (Some(name), Delete::Merged | Delete::Force) => {
            let repo = open(&ws, Access::ReadWrite)?;
            let name = Repo::branch(name)?;
            if rev::current_branch(&repo)?.as_ref() == Some(&name) {
                bail!(
                    "cannot delete branch {name}: it is the current branch; switch to another first"
                );
            }
            let old = repo.refs().get(&name)?.ok_or_else(|| anyhow!("no branch named {name}"))?;
            if delete == Delete::Merged {
                // As git: only what HEAD already holds, unless -D.
                let head = repo.head_commit()?;
                let merged = match head {
                    Some(head) => {
                        let base = vst::merge::merge_base(
                            repo.store().as_ref(),
                            CommitId::new(old),
                            head,
                        )?;
                        base == Some(CommitId::new(old))
                    }
                    None => false,
                };
                if !merged {
                    bail!(
                        "branch {name} ({:.12}) is not merged into HEAD: deleting it could lose its commits; `vst merge {name}` first, or `vst branch -D {name}` to delete it anyway",
                        old.to_string()
                    );
                }
            }
            repo.refs().update(&name, Some(old), None, "branch: delete")?;
            if cli.json {
                writeln!(out(), "{}", json!({ "deleted": name.as_str(), "was": old.to_string() }))?;
            } else if !cli.quiet {
                writeln!(out(), "deleted branch {name} (was {:.12})", old.to_string())?;
            }
        }
        (Some(name), Delete::No) => {
            let repo = open(&ws, Access::ReadWrite)?;
            let name = Repo::branch(name)?;
            let target = rev::resolve(&repo, rev.unwrap_or("HEAD"))?;
            if repo.refs().get(&name)?.is_some() {
                bail!(
                    "branch {name} already exists; pick another name, or delete it first with `vst branch -d {name}`"
                );
            }
            repo.refs()
                .update(&name, None, Some(target.object_id()), "branch: create")
                .with_context(|| format!("creating branch {name}"))?;
            if cli.json {
                let value = json!({ "created": name.as_str(), "commit": target.to_string() });
                writeln!(out(), "{value}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `vst branch NAME` deletes, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Delete {
    /// Creates.
    No,
    /// `-d`: only a branch HEAD already holds.
    Merged,
    /// `-D`: whatever it holds.
    Force,
}
