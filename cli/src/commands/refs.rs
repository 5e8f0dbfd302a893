//! Branches and tags: `vst branch`, `vst branch -r` for the
//! remote-tracking refs, and `vst tag`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::{CommitId, Repo};
use vst_cas::{Access, Head, ObjectId, RefName};

use crate::args::Cli;
use crate::output::out;
use crate::rev;
use crate::workspace::{find, open, open_for_refs};

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
        print_refs(cli, &repo.tracking_refs().list()?, |name, id| {
            format!("  {name} {:.12}", id.to_string())
        })?;
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
            let repo = open_for_refs(&ws)?;
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
            let repo = open_for_refs(&ws)?;
            let name = Repo::branch(name)?;
            let target = rev::resolve(&repo, rev.unwrap_or("HEAD"))?;
            if repo.refs().get(&name)?.is_some() {
                bail!(
                    "branch {name} already exists; pick another name, or delete it first with `vst branch -d {name}`"
                );
            }
            if repo.tags().get(&name)?.is_some() {
                bail!(
                    "a tag named {name} exists, and a branch of that name would hide it; pick another"
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

/// `vst tag`: lists the tags; `vst tag NAME [REV]` tags REV (default
/// `HEAD`), refusing to move an existing tag unless `force`; `-d` deletes.
pub fn tag(
    cli: &Cli,
    name: Option<&str>,
    rev: Option<&str>,
    delete: bool,
    force: bool,
) -> Result<ExitCode> {
    let ws = find(cli)?;
    let Some(name) = name else {
        let repo = open(&ws, Access::ReadOnly)?;
        let store = repo.store();
        print_refs(cli, &repo.tags().list()?, |name, id| {
            let commit = vst::read::read_commit(store.as_ref(), CommitId::new(id));
            let subject = commit.as_ref().map_or("", |c| c.message.lines().next().unwrap_or(""));
            format!("{name} {:.12} {subject}", id.to_string())
        })?;
        return Ok(ExitCode::SUCCESS);
    };
    let repo = open_for_refs(&ws)?;
    let name = Repo::branch(name)?;
    let tags = repo.tags();
    let old = tags.get(&name)?;
    if delete {
        let old = old.ok_or_else(|| anyhow!("no tag named {name}; `vst tag` lists them"))?;
        repo.update_tag(&name, Some(old), None, "tag: delete")?;
        if cli.json {
            writeln!(out(), "{}", json!({ "deleted": name.as_str(), "was": old.to_string() }))?;
        } else if !cli.quiet {
            writeln!(out(), "deleted tag {name} (was {:.12})", old.to_string())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let target = rev::resolve(&repo, rev.unwrap_or("HEAD"))?;
    if let Some(old) = old
        && !force
    {
        bail!(
            "tag {name} already exists (at {:.12}); a tag names one commit: `vst tag -f {name} REV` moves it",
            old.to_string()
        );
    }
    if repo.refs().get(&name)?.is_some() {
        // A revision is a branch before it is a tag: this tag could never
        // be named.
        bail!("a branch named {name} exists, and would hide a tag of that name; pick another");
    }
    if repo.tracking_refs().get(&name)?.is_some() {
        // ... and a tag before a tracking ref: it would hide that one.
        bail!("{name} is a remote-tracking ref, which a tag of that name would hide; pick another");
    }
    let message = if old.is_some() { "tag: move" } else { "tag: create" };
    repo.update_tag(&name, old, Some(target.object_id()), message)
        .with_context(|| format!("tagging {name}"))?;
    if cli.json {
        let value = json!({ "tagged": name.as_str(), "commit": target.to_string(), "was": old.map(|o| o.to_string()) });
        writeln!(out(), "{value}")?;
    } else if !cli.quiet
        && let Some(old) = old
    {
        writeln!(out(), "moved tag {name} (was {:.12})", old.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the refs `list`: with `--json` an array of `{name, commit}`,
/// otherwise `line` of each.
fn print_refs(
    cli: &Cli,
    list: &[(RefName, ObjectId)],
    line: impl Fn(&RefName, ObjectId) -> String,
) -> Result<()> {
    let mut out = out();
    if cli.json {
        let list: Vec<_> = list
            .iter()
            .map(|(name, id)| json!({ "name": name.as_str(), "commit": id.to_string() }))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else {
        for (name, id) in list {
            writeln!(out, "{}", line(name, *id))?;
        }
    }
    Ok(())
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
