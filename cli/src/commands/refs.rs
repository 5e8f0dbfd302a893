//! Branches: `vst branch`, and `vst branch -r` for the remote-tracking
//! refs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use vst::Repo;
use vst_cas::Access;

use crate::args::Cli;
use crate::output::out;
use crate::rev;
use crate::workspace::{find, open};

/// `vst branch`.
pub fn branch(
    cli: &Cli,
    name: Option<&str>,
    rev: Option<&str>,
    delete: bool,
    remotes: bool,
) -> Result<ExitCode> {
    let ws = find(cli)?;
    if remotes {
        let repo = open(&ws, Access::ReadOnly)?;
        let mut out = out();
        for (name, id) in repo.tracking_refs().list()? {
            writeln!(out, "  {name} {:.12}", id.to_string())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    match (name, delete) {
        (None, _) => {
            let repo = open(&ws, Access::ReadOnly)?;
            let current = rev::current_branch(&repo)?;
            let mut out = out();
            for (name, id) in repo.refs().list()? {
                let mark = if Some(&name) == current.as_ref() { '*' } else { ' ' };
                writeln!(out, "{mark} {name} {:.12}", id.to_string())?;
            }
        }
        (Some(name), true) => {
            let repo = open(&ws, Access::ReadWrite)?;
            let name = Repo::branch(name)?;
            if rev::current_branch(&repo)?.as_ref() == Some(&name) {
                bail!(
                    "cannot delete branch {name}: it is the current branch; switch to another first"
                );
            }
            let old = repo.refs().get(&name)?.ok_or_else(|| anyhow!("no branch named {name}"))?;
            repo.refs().update(&name, Some(old), None, "branch: delete")?;
            if !cli.quiet {
                writeln!(out(), "deleted branch {name} (was {:.12})", old.to_string())?;
            }
        }
        (Some(name), false) => {
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
        }
    }
    Ok(ExitCode::SUCCESS)
}
