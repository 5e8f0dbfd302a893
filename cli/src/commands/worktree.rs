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
use crate::commands::merge::MergeState;
use crate::output::{out, short, status_letter};
use crate::rev;
use crate::watch;
use crate::workspace::{Bar, find, open_worktree, repo_paths, save_index, settings};

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
    if cli.json {
        writeln!(out(), "{}", json!({ "repository": repo_dir, "root": root }))?;
    } else if !cli.quiet {
        writeln!(out(), "initialized an empty vst repository in {}", repo_dir.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The error for a work tree whose files are not where `HEAD` is, with
/// what to do.
pub fn explain(e: vst::Error) -> anyhow::Error {
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

/// Warns about the new files a scan left out for their size: `what` is
/// "left out of the commit" or "would be left out of a commit".
fn warn_too_large(too_large: &[(String, u64)], what: &str) {
    for (path, len) in too_large {
        eprintln!(
            "vst: warning: {path} ({}) {what}: a new file above snapshot.max-new-file-size; `vst commit --allow-large` takes it, `vst config snapshot.max-new-file-size SIZE` raises the limit, .vstignore keeps it out for good",
            indicatif::HumanBytes(*len)
        );
    }
}

/// The size limit for new files a command scans with.
fn new_file_len_max(repo_dir: &Path, allow_large: bool) -> Result<Option<u64>> {
    if allow_large { Ok(None) } else { crate::config::new_file_len_max(repo_dir) }
}

/// `vst commit`: through the watch daemon if one runs (and not `--scan`),
/// else by scanning here.
pub fn commit(
    cli: &Cli,
    message: &str,
    allow_empty: bool,
    author_arg: Option<String>,
    paths: &[PathBuf],
    scan: bool,
    allow_large: bool,
) -> Result<ExitCode> {
    let ws = find(cli)?;
    let changed = (!paths.is_empty()).then(|| repo_paths(cli, &ws.root, paths)).transpose()?;
    let new_file_len_max = new_file_len_max(&ws.repo_dir, allow_large)?;
    let options = CommitOptions {
        author: crate::config::author(author_arg, &ws.repo_dir),
        message: message.to_owned(),
        ..Default::default()
    };
    let empty = if allow_empty { Empty::Allow } else { Empty::Skip };
    if !scan {
        let request = watch::Request::Commit {
            message: options.message.clone(),
            author: options.author.clone(),
            allow_empty,
            paths: watch::wire_paths(changed.as_deref()),
            new_file_len_max,
        };
        if let Some(answer) = watch::ask(&ws.repo_dir, &request) {
            let watch::Response::Committed(report) = answer? else {
                bail!("the watch daemon answered a commit with something else");
            };
            return print_commit(cli, &report);
        }
    }
    let mut worktree = open_worktree(&ws, Access::ReadWrite)?;
    let bar = Bar::new(cli.quiet);
    let progress = |e| bar.event(e);
    let scan = ScanOptions {
        changed: changed.as_deref(),
        progress: Some(&progress),
        new_file_len_max,
        ..Default::default()
    };
    let report = commit_in(&mut worktree, &options, empty, &scan);
    bar.finish();
    let report = report?;
    // The commit is made: an index that cannot be saved only costs a rehash.
    save_index(&mut worktree);
    print_commit(cli, &report)
}

/// What a commit made, as `vst commit` prints it (and the watch daemon
/// sends it).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CommitReport {
    commit: Option<String>,
    tree: String,
    hashed: usize,
    skipped: Vec<PathBuf>,
    /// New files left out for their size.
    too_large: Vec<(String, u64)>,
}

/// Commits in `worktree` (the caller saves the index).
pub fn commit_in(
    worktree: &mut WorkTree,
    options: &CommitOptions,
    empty: Empty,
    scan: &ScanOptions<'_>,
) -> Result<CommitReport> {
    // A merge in progress: its commit has their commit as second parent,
    // even if the resolution kept our tree.
    let repo_dir = worktree.repo().dir().to_owned();
    let merging = MergeState::read(&repo_dir)?;
    let (options, empty) = match &merging {
        Some(state) => {
            if scan.changed.is_some() {
                bail!(
                    "a merge of {} is in progress: commit it whole (no PATH), so that the merge commit holds all of the resolution",
                    state.spec
                );
            }
            state.check_resolved(worktree.root())?;
            let options = CommitOptions { merged: vec![state.theirs], ..options.clone() };
            (std::borrow::Cow::Owned(options), Empty::Allow)
        }
        None => (std::borrow::Cow::Borrowed(options), empty),
    };
    let outcome = worktree.commit(&options, empty, scan).map_err(explain)?;
    if merging.is_some() {
        MergeState::remove(&repo_dir)?;
    }
    Ok(CommitReport {
        commit: outcome.commit.map(|id| id.to_string()),
        tree: outcome.snapshot.tree.to_string(),
        hashed: outcome.snapshot.hashed,
        skipped: outcome.snapshot.skipped,
        too_large: too_large_list(&outcome.snapshot.too_large),
    })
}

/// Paths left out for their size, as reports carry them.
fn too_large_list(too_large: &[(vst::RepoPath, u64)]) -> Vec<(String, u64)> {
    too_large.iter().map(|(p, len)| (p.to_string(), *len)).collect()
}

/// `too_large` as JSON: `[{path, size}]`.
fn too_large_json(too_large: &[(String, u64)]) -> serde_json::Value {
    too_large.iter().map(|(path, size)| json!({ "path": path, "size": size })).collect()
}

fn print_commit(cli: &Cli, report: &CommitReport) -> Result<ExitCode> {
    warn_skipped(&report.skipped);
    if !cli.json {
        warn_too_large(&report.too_large, "was left out of the commit");
    }
    let CommitReport { commit, tree, hashed, too_large, .. } = report;
    let too_large = too_large_json(too_large);
    match commit {
        None if cli.json => writeln!(
            out(),
            "{}",
            json!({ "commit": null, "tree": tree, "hashed": hashed, "reason": "nothing to commit", "too_large": too_large })
        )?,
        None if !cli.quiet && !report.too_large.is_empty() => writeln!(
            out(),
            "nothing to commit: {} new files left out for their size (above)",
            report.too_large.len()
        )?,
        None if !cli.quiet => {
            writeln!(out(), "nothing to commit: the working directory matches HEAD")?
        }
        None => {}
        Some(id) if cli.json => writeln!(
            out(),
            "{}",
            json!({ "commit": id, "tree": tree, "hashed": hashed, "too_large": too_large })
        )?,
        Some(id) => writeln!(out(), "{id}")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst status [PATH...]`: through the watch daemon if one runs (and not
/// `--scan`), else by scanning here.
pub fn status(cli: &Cli, paths: &[PathBuf], scan: bool, short: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let changed = (!paths.is_empty()).then(|| repo_paths(cli, &ws.root, paths)).transpose()?;
    let new_file_len_max = new_file_len_max(&ws.repo_dir, false)?;
    if !scan {
        let request = watch::Request::Status {
            paths: watch::wire_paths(changed.as_deref()),
            new_file_len_max,
        };
        if let Some(answer) = watch::ask(&ws.repo_dir, &request) {
            let watch::Response::Status(report) = answer? else {
                bail!("the watch daemon answered a status with something else");
            };
            return print_status(cli, &ws, &report, short);
        }
    }
    let mut worktree = open_worktree(&ws, Access::ReadOnly)?;
    let bar = Bar::new(cli.quiet);
    let progress = |e| bar.event(e);
    let scan = ScanOptions {
        changed: changed.as_deref(),
        progress: Some(&progress),
        new_file_len_max,
        ..Default::default()
    };
    let report = status_in(&mut worktree, &scan);
    bar.finish();
    let report = report?;
    // Refreshing the index makes the next status cheap.
    save_index(&mut worktree);
    print_status(cli, &ws, &report, short)
}

/// What `vst status` prints (and the watch daemon sends).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// Each change: its status word and path.
    changes: Vec<(String, String)>,
    skipped: Vec<PathBuf>,
    interrupted: Option<String>,
    /// The commit the files are at and `HEAD`'s, when they differ.
    behind: Option<(Option<String>, Option<String>)>,
    /// Why a watcher had to look at everything, if it did.
    full_scan: Option<String>,
    /// A merge in progress: what it merges and the paths in conflict.
    merging: Option<(String, String, Vec<String>)>,
    /// New files a commit would leave out for their size.
    too_large: Vec<(String, u64)>,
}

/// The status of `worktree`.
pub fn status_in(worktree: &mut WorkTree, scan: &ScanOptions<'_>) -> Result<StatusReport> {
    let status = worktree.status(scan)?;
    let hex = |c: Option<vst::CommitId>| c.map(|c| c.to_string());
    let behind =
        (worktree.at() != worktree.head()).then(|| (hex(worktree.at()), hex(worktree.head())));
    let merging = MergeState::read(worktree.repo().dir())?.map(|m| {
        (m.spec, m.theirs.to_string(), m.conflicts.iter().map(|p| p.to_string()).collect())
    });
    let full_scan = match &status.looked {
        vst::worktree::Looked::Everything(Some(why)) => Some(why.to_string()),
        _ => None,
    };
    Ok(StatusReport {
        changes: status
            .changes
            .iter()
            .map(|d| (d.status().to_owned(), d.path.to_string()))
            .collect(),
        skipped: status.skipped,
        interrupted: hex(status.interrupted),
        behind,
        full_scan,
        merging,
        too_large: too_large_list(&status.too_large),
    })
}

/// `path` (relative to the root) as seen from `cwd` (also relative to the
/// root): git's way of showing paths from a subdirectory.
fn relative_to(path: &str, cwd: &str) -> String {
    if cwd.is_empty() {
        return path.to_owned();
    }
    let (p, c): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), cwd.split('/').collect());
    let common = p.iter().zip(&c).take_while(|(a, b)| a == b).count();
    let mut out: Vec<&str> = vec![".."; c.len() - common];
    out.extend(&p[common..]);
    out.join("/")
}

/// The first line of `vst status` (without `--short`): the branch `HEAD`
/// names, or the commit it is detached at. In a writable mount too: the
/// mount commits to what `HEAD` names.
pub fn print_status_header(repo_dir: &Path) -> Result<()> {
    let header = match read_head(repo_dir)? {
        Head::Branch(name) => format!("On branch {name}"),
        Head::Detached(id) => format!("HEAD detached at {:.12}", id.to_string()),
    };
    writeln!(out(), "{header}")?;
    Ok(())
}

/// `HEAD` of the repository in `repo_dir`, read without opening its store
/// (which a writable mount's daemon may hold).
fn read_head(repo_dir: &Path) -> Result<Head> {
    Ok(vst_cas::Refs::new(Arc::new(vst_cas::vfs::RealFs::new()), repo_dir).head()?)
}

/// Prints `report`: a header naming the branch (or the detached commit),
/// a line per change (`M path`, from the current directory), and a line
/// saying so when nothing changed; `lines_only` (`--short`) prints the
/// change lines alone. Notes go to stderr either way.
fn print_status(
    cli: &Cli,
    ws: &vst::repo::Location,
    report: &StatusReport,
    lines_only: bool,
) -> Result<ExitCode> {
    let root = &ws.root;
    let short = |c: &Option<String>| short(c.as_deref());
    if cli.json {
        let list: Vec<_> = report
            .changes
            .iter()
            .map(|(status, path)| json!({ "path": path, "status": status }))
            .collect();
        let mut value = json!({ "changes": list });
        match read_head(&ws.repo_dir)? {
            Head::Branch(name) => value["branch"] = json!(name.as_str()),
            Head::Detached(id) => value["detached"] = json!(id.to_string()),
        }
        if let Some(to) = &report.interrupted {
            value["interrupted_checkout"] = json!(to);
        }
        if let Some((at, head)) = &report.behind {
            value["at"] = json!(at);
            value["head"] = json!(head);
        }
        if let Some(why) = &report.full_scan {
            value["full_scan"] = json!(why);
        }
        if let Some((spec, commit, conflicts)) = &report.merging {
            value["merging"] = json!({ "rev": spec, "commit": commit, "conflicts": conflicts });
        }
        if !report.too_large.is_empty() {
            value["too_large"] = too_large_json(&report.too_large);
        }
        writeln!(out(), "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(why), false) = (&report.full_scan, cli.quiet) {
        eprintln!("vst: note: the watcher looked at the whole tree: {why}");
    }
    if report.interrupted.is_some() {
        let to = short(&report.interrupted);
        eprintln!(
            "vst: a checkout of {to} was interrupted; `vst checkout {to}` finishes it (what it already wrote is not a local change)"
        );
    }
    if let Some((at, head)) = &report.behind {
        eprintln!(
            "vst: the files are at {}, but HEAD is at {} (moved by a writable mount or another process); these changes are against the files' commit: `vst checkout HEAD` brings the files to HEAD, keeping local changes",
            short(at),
            short(head)
        );
    }
    warn_skipped(&report.skipped);
    warn_too_large(&report.too_large, "would be left out of a commit");
    if !lines_only && !cli.quiet {
        print_status_header(&ws.repo_dir)?;
    }
    if let Some((spec, _, conflicts)) = &report.merging {
        eprintln!(
            "vst: merging {spec}: {} conflicts; resolve them and `vst commit`, or `vst merge --abort`",
            conflicts.len()
        );
        let mut out = out();
        for path in conflicts {
            writeln!(out, "C {path}")?;
        }
    }
    if report.changes.is_empty() {
        if !cli.quiet && !lines_only {
            writeln!(out(), "clean: the working directory matches HEAD")?;
        }
    } else {
        // Files, not every directory again: a directory that came or went
        // shows through what it holds (an empty one still shows).
        let above: std::collections::HashSet<&str> = report
            .changes
            .iter()
            .flat_map(|(_, path)| path.match_indices('/').map(move |(i, _)| &path[..i]))
            .collect();
        // Paths from the current directory, as git shows them.
        let start = crate::workspace::start_dir(cli)?;
        let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
        let cwd = start.strip_prefix(&root).map(|p| p.to_string_lossy().into_owned());
        let cwd = cwd.unwrap_or_default();
        let mut out = out();
        for (status, path) in &report.changes {
            if status != "type_changed" && above.contains(path.as_str()) {
                continue;
            }
            writeln!(out, "{} {}", status_letter(status), relative_to(path, &cwd))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst restore PATH... [--source REV]`.
pub fn restore(cli: &Cli, paths: &[PathBuf], source: &str) -> Result<ExitCode> {
    let ws = find(cli)?;
    let paths = repo_paths(cli, &ws.root, paths)?;
    let mut worktree = open_worktree(&ws, Access::ReadWrite)?;
    let repo = worktree.repo().clone();
    let tree = vst::read::read_commit(repo.store().as_ref(), rev::resolve(&repo, source)?)?.tree;
    let bar = Bar::new(cli.quiet);
    let progress = |e| bar.event(e);
    let options = CheckoutOptions { progress: Some(&progress), ..Default::default() };
    let stats = worktree.restore(tree, &paths, &options);
    bar.finish();
    let stats = stats.with_context(|| format!("restoring from {source}"))?;
    save_index(&mut worktree);
    if cli.json {
        let value = json!({
            "source": source,
            "paths": paths.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "files_written": stats.files_written,
            "removed": stats.removed,
        });
        writeln!(out(), "{value}")?;
    } else if !cli.quiet {
        writeln!(
            out(),
            "restored {} paths from {source}: {} files written, {} removed",
            paths.len(),
            stats.files_written,
            stats.removed
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst reset REV [--hard]`.
pub fn reset(cli: &Cli, spec: &str, hard: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let mut worktree = open_worktree(&ws, Access::ReadWrite)?;
    let repo = worktree.repo().clone();
    let target = rev::resolve(&repo, spec)?;
    let current = worktree.head();
    if hard {
        crate::commands::merge::update_to(cli, &mut worktree, current, target, spec, true)?;
    } else {
        match repo.refs().head()? {
            Head::Branch(branch) => repo
                .refs()
                .update(
                    &branch,
                    current.map(|c| c.object_id()),
                    Some(target.object_id()),
                    &format!("reset: moving to {spec}"),
                )
                .with_context(|| format!("moving {branch} to {spec}"))?,
            // Only from where it was: a commit made meanwhile (a mount, the
            // watch daemon) is not orphaned.
            Head::Detached(at) => repo
                .refs()
                .update_head(
                    &Head::Detached(at),
                    &Head::Detached(target.object_id()),
                    &format!("reset: moving to {spec}"),
                )
                .with_context(|| format!("moving HEAD to {spec}"))?,
        }
        worktree.reset(Some(target))?;
    }
    crate::commands::merge::MergeState::remove(&ws.repo_dir)?;
    save_index(&mut worktree);
    if cli.json {
        writeln!(out(), "{}", json!({ "commit": target.to_string(), "hard": hard }))?;
    } else if !cli.quiet {
        let what = if hard { "files and HEAD" } else { "HEAD (the files are as they were)" };
        writeln!(out(), "{what} now at {spec} ({:.12})", target.to_string())?;
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
        let bar = crate::workspace::spinner(&format!("checking out {spec}"), cli.quiet);
        let stats = vst::checkout(repo.store().as_ref(), tree, &target)
            .with_context(|| format!("checking out {spec} into {}", target.display()));
        bar.finish_and_clear();
        let stats = stats?;
        if cli.json {
            let value = json!({
                "rev": spec,
                "into": target,
                "files_written": stats.files_written,
                "dirs_created": stats.dirs_created,
                "symlinks_created": stats.symlinks_created,
            });
            writeln!(out(), "{value}")?;
        } else if !cli.quiet {
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
    if cli.json {
        let branch = match &head {
            Head::Branch(b) => Some(b.as_str().to_owned()),
            Head::Detached(_) => None,
        };
        let value = json!({
            "rev": spec,
            "commit": target.to_string(),
            "branch": branch,
            "files_written": stats.files_written,
            "removed": stats.removed,
            "kept_unknown": stats.kept_unknown,
        });
        writeln!(out(), "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
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
