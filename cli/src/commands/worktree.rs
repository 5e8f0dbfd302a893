//! The work tree: `init`, `commit`, `status`, `checkout`, `switch`. Each
//! is a call into `vst::worktree` and its output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::repo::{InitStore, REPO_DIR_NAME};
use vst::worktree::{CheckoutOptions, Empty, Force, ScanOptions, WorkTree};
use vst::{CommitOptions, Repo};
use vst_cas::{Access, Head};

use crate::args::Cli;
use crate::output::{out, short, status_letter};
use crate::rev;
use crate::workspace::{Bar, author, find, open_worktree, repo_paths, save_index, settings};

/// `vst init [DIR] [--store URL]`.
pub fn init(
    cli: &Cli,
    dir: Option<&Path>,
    store: Option<&str>,
    cache_mib: u64,
) -> Result<ExitCode> {
    let base = crate::workspace::start_dir(cli)?;
    let root = dir.map_or(base.clone(), |d| base.join(d));
    let repo_dir = root.join(REPO_DIR_NAME);
    if repo_dir.exists() {
        bail!("{} already holds a repository", root.display());
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let store = match store {
        Some(url) => InitStore::Remote {
            url: url.to_owned(),
            cache_len_max: cache_mib.saturating_mul(1 << 20),
        },
        None => InitStore::Local,
    };
    Repo::init(&repo_dir, &store, &settings)
        .with_context(|| format!("creating the repository in {}", repo_dir.display()))?;
    if !cli.quiet {
        writeln!(out(), "initialized an empty vst repository in {}", repo_dir.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The error for a work tree whose files are not where `HEAD` is, with
/// what to do.
fn explain(e: vst::Error) -> anyhow::Error {
    match e {
        vst::Error::WorkTreeBehind { at, head } => anyhow!(
            "the work tree's files are at {at}, but HEAD is at {head} (a writable mount or another process moved the branch, or a checkout was interrupted); run `vst checkout HEAD` to bring the files there first (local changes are kept)"
        ),
        other => other.into(),
    }
}

/// Warns about paths a scan skipped.
fn warn_skipped(skipped: &[PathBuf]) {
    for path in skipped {
        eprintln!("vst: warning: skipping {}: not a file, directory or symlink", path.display());
    }
}

/// `vst commit`.
pub fn commit(
    cli: &Cli,
    message: &str,
    allow_empty: bool,
    author_arg: Option<String>,
    paths: &[PathBuf],
) -> Result<ExitCode> {
    let ws = find(cli)?;
    let mut worktree = open_worktree(&ws, Access::ReadWrite)?;
    let changed = (!paths.is_empty()).then(|| repo_paths(cli, &ws.root, paths)).transpose()?;
    let options = CommitOptions {
        author: author(author_arg),
        message: message.to_owned(),
        ..Default::default()
    };
    let empty = if allow_empty { Empty::Allow } else { Empty::Skip };
    let bar = Bar::new(cli.quiet);
    let progress = |e| bar.event(e);
    let scan = ScanOptions {
        changed: changed.as_deref(),
        progress: Some(&progress),
        ..Default::default()
    };
    let outcome = worktree.commit(&options, empty, &scan);
    bar.finish();
    let outcome = outcome.map_err(explain)?;
    warn_skipped(&outcome.snapshot.skipped);
    // The commit is made: an index that cannot be saved only costs a rehash.
    save_index(&mut worktree);
    let tree = outcome.snapshot.tree.to_string();
    let hashed = outcome.snapshot.hashed;
    match outcome.commit {
        None if cli.json => writeln!(
            out(),
            "{}",
            json!({ "commit": null, "tree": tree, "hashed": hashed, "reason": "nothing to commit" })
        )?,
        None if !cli.quiet => {
            writeln!(out(), "nothing to commit: the working directory matches HEAD")?
        }
        None => {}
        Some(id) if cli.json => writeln!(
            out(),
            "{}",
            json!({ "commit": id.to_string(), "tree": tree, "hashed": hashed })
        )?,
        Some(id) => writeln!(out(), "{id}")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst status [PATH...]`.
pub fn status(cli: &Cli, paths: &[PathBuf]) -> Result<ExitCode> {
    let ws = find(cli)?;
    let mut worktree = open_worktree(&ws, Access::ReadOnly)?;
    let changed = (!paths.is_empty()).then(|| repo_paths(cli, &ws.root, paths)).transpose()?;
    let bar = Bar::new(cli.quiet);
    let progress = |e| bar.event(e);
    let status = worktree.status(&ScanOptions {
        changed: changed.as_deref(),
        progress: Some(&progress),
        ..Default::default()
    });
    bar.finish();
    let status = status?;
    // Refreshing the index makes the next status cheap.
    save_index(&mut worktree);
    let behind = (worktree.at() != worktree.head()).then(|| (worktree.at(), worktree.head()));
    if cli.json {
        let list: Vec<_> = status
            .changes
            .iter()
            .map(|d| json!({ "path": d.path.to_string(), "status": d.status() }))
            .collect();
        let mut value = json!({ "changes": list });
        if let Some(to) = status.interrupted {
            value["interrupted_checkout"] = json!(to.to_string());
        }
        if let Some((at, head)) = behind {
            value["at"] = json!(at.map(|c| c.to_string()));
            value["head"] = json!(head.map(|c| c.to_string()));
        }
        writeln!(out(), "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(to) = status.interrupted {
        eprintln!(
            "vst: a checkout of {} was interrupted; `vst checkout {}` finishes it (what it already wrote is not a local change)",
            short(to),
            short(to)
        );
    }
    if let Some((at, head)) = behind {
        eprintln!(
            "vst: the files are at {}, but HEAD is at {} (moved by a writable mount or another process); these changes are against the files' commit: `vst checkout HEAD` brings the files to HEAD, keeping local changes",
            at.map_or("no commit".to_owned(), short),
            head.map_or("no commit".to_owned(), short)
        );
    }
    warn_skipped(&status.skipped);
    if status.changes.is_empty() {
        if !cli.quiet {
            writeln!(out(), "clean: the working directory matches HEAD")?;
        }
    } else {
        let mut out = out();
        for d in &status.changes {
            writeln!(out, "{} {}", status_letter(d.status()), d.path)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst switch NAME`: checks out branch NAME and makes it current.
pub fn switch(cli: &Cli, name: &str, force: bool) -> Result<ExitCode> {
    let branch = Repo::branch(name)?;
    let ws = find(cli)?;
    let repo = crate::workspace::open(&ws, Access::ReadOnly)?;
    if repo.refs().get(&branch)?.is_none() {
        bail!("no branch named {name}; `vst branch` lists them, `vst branch {name}` creates it");
    }
    drop(repo);
    checkout(cli, name, None, force)
}

/// `vst checkout REV [--into DIR] [--force]`.
pub fn checkout(cli: &Cli, spec: &str, into: Option<&Path>, force: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    if let Some(dir) = into {
        let repo = crate::workspace::open(&ws, Access::ReadOnly)?;
        let tree = vst::read::read_commit(repo.store().as_ref(), rev::resolve(&repo, spec)?)?.tree;
        let target = crate::workspace::start_dir(cli)?.join(dir);
        let bar = crate::workspace::spinner(&format!("checking out {spec}"));
        let stats = vst::checkout(repo.store().as_ref(), tree, &target)
            .with_context(|| format!("checking out {spec} into {}", target.display()));
        bar.finish_and_clear();
        let stats = stats?;
        if !cli.quiet {
            writeln!(
                out(),
                "checked out {spec} into {}: {} files, {} directories, {} symlinks",
                target.display(),
                stats.files_written,
                stats.dirs_created,
                stats.symlinks_created
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut worktree = open_worktree(&ws, Access::ReadWrite)?;
    let repo = worktree.repo().clone();
    let target = rev::resolve(&repo, spec)?;
    let base = spec.split('~').next().unwrap_or(spec);
    let head = match vst_cas::RefName::try_from(base) {
        // `checkout HEAD` keeps HEAD where it is (on its branch).
        _ if (base == "HEAD" || base == "@") && !spec.contains('~') => repo.refs().head()?,
        Ok(name) if !spec.contains('~') && repo.refs().get(&name)?.is_some() => Head::Branch(name),
        _ => Head::Detached(target.object_id()),
    };
    let stats = check_out(cli, &mut worktree, target, &head, force, spec)?;
    if let Head::Detached(_) = head
        && !cli.quiet
    {
        eprintln!(
            "vst: note: HEAD is now detached at {spec}; `vst switch BRANCH` goes back to a branch"
        );
    }
    if !cli.quiet {
        let mut out = out();
        writeln!(
            out,
            "now at {spec}: {} files written, {} removed",
            stats.files_written, stats.removed
        )?;
        if stats.kept_unknown > 0 {
            writeln!(
                out,
                "kept {} directories that still hold untracked or ignored files",
                stats.kept_unknown
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the work-tree update to `target` (`checkout`, `switch`, `pull`),
/// with a progress bar, SIGINT stopping it at a safe point, and errors
/// that say what to do.
pub fn check_out(
    cli: &Cli,
    worktree: &mut WorkTree,
    target: vst::CommitId,
    head: &Head,
    force: bool,
    spec: &str,
) -> Result<vst::CheckoutStats> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let handler = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupt.clone())
        .context("handling SIGINT")?;
    let bar = Bar::new(cli.quiet);
    let progress = |e| bar.event(e);
    let options = CheckoutOptions {
        force: if force { Force::Yes } else { Force::No },
        head: Some(head),
        progress: Some(&progress),
        interrupt: Some(&interrupt),
    };
    let result = worktree.check_out(target, &options);
    bar.finish();
    signal_hook::low_level::unregister(handler);
    match result {
        Ok(stats) => Ok(stats),
        Err(e @ vst::Error::Conflicts { .. }) => bail!(
            "checking out {spec}: {e}; commit or move them, or pass --force to overwrite them"
        ),
        Err(vst::Error::Interrupted) => bail!(
            "interrupted: the checkout of {spec} stopped at a safe point with the work tree partly updated; `vst checkout {spec}` finishes it"
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "checking out {spec}: the work tree may be partly updated; `vst checkout {spec}` finishes it (`--force` if something is in the way)"
        ))),
    }
}
