//! Remotes: `vst remote add/list/remove`, `vst fetch`, `vst push` (and
//! `push --delete`), `vst pull` and `vst clone`, against S3-compatible
//! object stores. Each keeps the remote-tracking refs (`REMOTE/BRANCH`,
//! see `vst::tracking`) at what it saw on the remote.
//!
//! A remote is a name and an `s3://BUCKET/PREFIX` URL, kept in
//! `.vst/remotes`: one line per remote, `NAME URL\n`, sorted by name
//! (names follow the branch-name rules; a URL has no whitespace). The
//! endpoint and the credentials come from the environment, as other S3
//! tools take them: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`; plain HTTP
//! is allowed for a loopback endpoint, or with `AWS_ALLOW_HTTP=true`.
//!
//! `pull` updates the work tree by the one update rule
//! (`vst::worktree::WorkTree::check_out`, through
//! `commands::worktree::check_out`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::repo::{InitStore, Location, REPO_DIR_NAME};
use vst::sync::{PullOutcome, PushOutcome, TransferStats};
use vst::worktree::{CheckoutOptions, WorkTree};
use vst::{CommitId, Repo};
use vst_cas::remote::{Remote, RemoteOptions, S3Config};
use vst_cas::{Head, RefName};

use crate::args::Cli;
use crate::workspace::spinner;

/// `vst remote ...`.
#[derive(clap::Subcommand, Debug)]
pub enum RemoteAction {
    /// Add remote NAME at URL (s3://BUCKET/PREFIX).
    Add {
        /// The remote's name (like a branch name).
        name: String,
        /// s3://BUCKET/PREFIX
        url: String,
    },
    /// List the remotes.
    List,
    /// Forget remote NAME (nothing is deleted in the object store).
    Remove {
        /// The remote's name.
        name: String,
    },
}

/// `vst push NAME [BRANCH]`, `vst push NAME --delete BRANCH`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The remote.
    pub remote: String,
    /// The branch (default: the current one).
    pub branch: Option<String>,
    /// Delete BRANCH on the remote instead, if it is still where this
    /// repository last saw it (REMOTE/BRANCH).
    #[arg(long, requires = "branch")]
    pub delete: bool,
    /// Push every tag instead (each created on the remote, or refused if
    /// the remote's tag of that name is at another commit).
    #[arg(long, conflicts_with_all = ["branch", "delete"])]
    pub tags: bool,
    /// With --tags: move a remote tag that is at another commit.
    #[arg(long, requires = "tags")]
    pub force: bool,
}

/// `vst fetch NAME`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The remote.
    pub remote: String,
}

/// `vst pull NAME [BRANCH]`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The remote.
    pub remote: String,
    /// The branch (default: the current one).
    pub branch: Option<String>,
    /// Refuse to merge when the branches diverged (only a fast-forward).
    #[arg(long)]
    pub ff_only: bool,
}

/// `vst clone URL DIR`.
#[derive(clap::Args, Debug)]
pub struct CloneArgs {
    /// s3://BUCKET/PREFIX
    pub url: String,
    /// The new repository's directory (new or empty).
    #[arg(value_name = "DIR")]
    pub target: PathBuf,
}

/// The remotes file in the repository directory.
const REMOTES_FILE: &str = "remotes";

/// The remotes of the repository in `repo_dir`, sorted by name.
pub fn load_remotes(repo_dir: &Path) -> Result<Vec<(String, String)>> {
    let path = repo_dir.join(REMOTES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(url), None) => out.push((name.to_owned(), url.to_owned())),
            (None, ..) => {}
            _ => bail!("{}:{}: expected `NAME URL`; fix or delete the line", path.display(), n + 1),
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the remotes file (temporary file, rename: never half written).
fn save_remotes(repo_dir: &Path, remotes: &[(String, String)]) -> Result<()> {
    let path = repo_dir.join(REMOTES_FILE);
    let tmp = repo_dir.join(format!("{REMOTES_FILE}.tmp-{}", std::process::id()));
    let text: String = remotes.iter().map(|(n, u)| format!("{n} {u}\n")).collect();
    // Written, synced, renamed, and the directory synced: a crash leaves
    // the old list or the new one, never a torn or missing file.
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(repo_dir)?.sync_all()
    };
    write().with_context(|| format!("replacing {}", path.display()))
}

/// The URL of remote `name`.
fn remote_url(repo_dir: &Path, name: &str) -> Result<String> {
    load_remotes(repo_dir)?.into_iter().find(|(n, _)| n == name).map(|(_, u)| u).ok_or_else(|| {
        anyhow!("no remote named {name}; add it with `vst remote add {name} s3://BUCKET/PREFIX`")
    })
}

/// Remote `name` as the first part of its tracking refs' names.
fn remote_ref_name(name: &str) -> Result<RefName> {
    RefName::try_from(name).map_err(|_| {
        anyhow!("invalid remote name {name:?}: use letters, digits, '.', '_', '-'; `vst remote list` shows the remotes")
    })
}

/// The object store at `url`, configured from the environment.
pub fn open_remote(url: &str) -> Result<Remote> {
    let config = S3Config::from_url(url, &crate::workspace::settings)?;
    Remote::s3(&config).with_context(|| format!("connecting to {}", config.describe()))
}

/// `vst remote add/list/remove`.
pub fn remote_cmd(
    repo_dir: &Path,
    action: &RemoteAction,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let mut remotes = load_remotes(repo_dir)?;
    match action {
        RemoteAction::Add { name, url } => {
            RefName::try_from(name.as_str()).map_err(|_| {
                anyhow!("invalid remote name {name:?}: use letters, digits, '.', '_', '-'")
            })?;
            vst_cas::remote::parse_url(url)?;
            if remotes.iter().any(|(n, _)| n == name) {
                bail!(
                    "remote {name} already exists; remove it first with `vst remote remove {name}`"
                );
            }
            remotes.push((name.clone(), url.clone()));
            remotes.sort();
            save_remotes(repo_dir, &remotes)?;
            if json {
                writeln!(std::io::stdout(), "{}", json!({ "added": name, "url": url }))?;
            } else if !quiet {
                writeln!(std::io::stdout(), "added remote {name} at {url}")?;
            }
        }
        RemoteAction::List => {
            let mut out = std::io::stdout().lock();
            if json {
                let list: Vec<_> =
                    remotes.iter().map(|(name, url)| json!({ "name": name, "url": url })).collect();
                writeln!(out, "{}", serde_json::Value::Array(list))?;
            } else {
                for (name, url) in &remotes {
                    writeln!(out, "{name} {url}")?;
                }
            }
        }
        RemoteAction::Remove { name } => {
            let before = remotes.len();
            remotes.retain(|(n, _)| n != name);
            if remotes.len() == before {
                bail!("no remote named {name}; `vst remote list` shows them");
            }
            save_remotes(repo_dir, &remotes)?;
            if json {
                writeln!(std::io::stdout(), "{}", json!({ "removed": name }))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The branch named, or the current one.
fn branch_or_current(repo: &Repo, branch: Option<&str>) -> Result<RefName> {
    match branch {
        Some(name) => Ok(Repo::branch(name)?),
        None => match repo.refs().head()? {
            Head::Branch(name) => Ok(name),
            Head::Detached(_) => bail!("HEAD is detached: name the branch to push or pull"),
        },
    }
}

fn stats_json(stats: &TransferStats) -> serde_json::Value {
    json!({ "commits": stats.commits, "trees": stats.trees, "blobs": stats.blobs, "blob_bytes": stats.blob_bytes })
}

/// `vst push NAME [BRANCH]`; on success the tracking ref NAME/BRANCH
/// names what was pushed.
pub fn push_cmd(cli: &Cli, ws: &Location, args: &PushArgs) -> Result<ExitCode> {
    let (quiet, as_json) = (cli.quiet, cli.json);
    // Where `.vst/store` says: a repository made by `init --store` pushes
    // from its object store.
    let repo = crate::workspace::open(ws, vst_cas::Access::ReadOnly)?;
    let repo_dir = &ws.repo_dir;
    let branch = branch_or_current(&repo, args.branch.as_deref())?;
    let url = remote_url(repo_dir, &args.remote)?;
    let remote_name = remote_ref_name(&args.remote)?;
    if args.delete {
        return delete_cmd(cli, &repo, &remote_name, &url, &branch);
    }
    if args.tags {
        return push_tags(cli, &repo, args, &url);
    }
    let tip = repo
        .refs()
        .get(&branch)?
        .map(CommitId::new)
        .ok_or_else(|| anyhow!("no branch named {branch} here; commit first"))?;
    let remote = open_remote(&url)?;
    let store = remote.store(RemoteOptions::default())?;
    let bar = spinner(&format!("pushing {branch} to {}", args.remote), quiet);
    let outcome = vst::sync::push(repo.store().as_ref(), &store, &remote.refs(), &branch, tip);
    bar.finish_and_clear();
    let outcome =
        outcome.with_context(|| format!("pushing {branch} to {} ({url})", args.remote))?;
    vst::tracking::track(&repo, &remote_name, &branch, Some(tip), "push").with_context(|| {
        format!(
            "{branch} is on {}, but its tracking ref was not updated; `vst fetch {}` updates it",
            args.remote, args.remote
        )
    })?;
    let mut out = std::io::stdout().lock();
    match outcome {
        PushOutcome::UpToDate if as_json => writeln!(
            out,
            "{}",
            json!({ "branch": branch.as_str(), "status": "up to date", "commit": tip.to_string() })
        )?,
        PushOutcome::UpToDate if !quiet => {
            writeln!(out, "{} is up to date on {}", branch, args.remote)?
        }
        PushOutcome::Pushed { old, new, stats } if as_json => writeln!(
            out,
            "{}",
            json!({ "branch": branch.as_str(), "status": "pushed", "old": old.map(|o| o.to_string()), "new": new.to_string(), "sent": stats_json(&stats) })
        )?,
        PushOutcome::Pushed { old, new, stats } if !quiet => writeln!(
            out,
            "{}: {} -> {:.12} on {} ({} commits, {} trees, {} blobs, {} bytes sent)",
            branch,
            old.map_or("new branch".to_owned(), |o| format!("{:.12}", o.to_string())),
            new.to_string(),
            args.remote,
            stats.commits,
            stats.trees,
            stats.blobs,
            stats.blob_bytes
        )?,
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst push NAME --tags [--force]`: every tag, each by its own
/// compare-and-swap; the first refused stops the push (those before it
/// are pushed).
fn push_tags(cli: &Cli, repo: &Repo, args: &PushArgs, url: &str) -> Result<ExitCode> {
    let remote = open_remote(url)?;
    let store = remote.store(RemoteOptions::default())?;
    let tags = remote.refs().tags();
    let branches = remote.refs().list()?;
    let mut pushed = Vec::new();
    let bar = spinner(&format!("pushing tags to {}", args.remote), cli.quiet);
    let mut failed = None;
    for (name, id) in repo.tags().list()? {
        if branches.iter().any(|(b, _)| *b == name) {
            failed = Some(anyhow!(
                "{} has a branch named {name}, which would hide the tag there; rename the tag (`vst tag NEW {name}` and `vst tag -d {name}`)",
                args.remote
            ));
            break;
        }
        let tip = CommitId::new(id);
        let outcome =
            vst::sync::push_tag(repo.store().as_ref(), &store, &tags, &name, tip, args.force)
                .with_context(|| format!("pushing tag {name} to {} ({url})", args.remote));
        match outcome {
            Ok(PushOutcome::UpToDate) => {}
            Ok(PushOutcome::Pushed { old, .. }) => pushed.push((name, old, tip)),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    bar.finish_and_clear();
    if let Some(e) = failed {
        // What went before the refusal is on the remote: say so.
        for (name, _, new) in &pushed {
            eprintln!("vst: tag {name} pushed at {:.12}", new.to_string());
        }
        return Err(e);
    }
    let mut out = std::io::stdout().lock();
    if cli.json {
        let list: Vec<_> = pushed
            .iter()
            .map(|(n, old, new)| json!({ "tag": n.as_str(), "old": old.map(|o| o.to_string()), "new": new.to_string() }))
            .collect();
        writeln!(out, "{}", json!({ "pushed_tags": list }))?;
    } else if !cli.quiet {
        for (name, old, new) in &pushed {
            let was = old.map_or("new tag".to_owned(), |o| format!("{:.12}", o.to_string()));
            writeln!(out, "tag {name}: {was} -> {:.12} on {}", new.to_string(), args.remote)?;
        }
        if pushed.is_empty() {
            writeln!(out, "tags are up to date on {}", args.remote)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fetches the remote's tags that this repository lacks (after a fetch,
/// pull or clone of its branches) and says which came, which differ from
/// the ones here (kept) and which a branch or tracking ref here hides. A
/// failure is only a warning: the branches are done, and the next fetch
/// tries again. Returns what it did as JSON.
fn fetch_tags(
    cli: &Cli,
    repo: &Repo,
    store: &vst_cas::remote::RemoteStore,
    remote: &Remote,
    name: &str,
) -> serde_json::Value {
    let bar = spinner(&format!("fetching the tags of {name}"), cli.quiet);
    let fetched = vst::tracking::fetch_tags(repo, store, &remote.refs().tags());
    bar.finish_and_clear();
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(e) => {
            let e = anyhow::Error::new(e);
            eprintln!(
                "vst: warning: the tags of {name} were not fetched: {e:#}; `vst fetch {name}` tries again"
            );
            return json!({ "error": format!("{e:#}") });
        }
    };
    if !cli.quiet && !cli.json {
        for (tag, at) in &fetched.created {
            eprintln!("vst: new tag {tag} at {:.12}", at.to_string());
        }
        for (tag, at) in &fetched.differing {
            eprintln!(
                "vst: tag {tag} is at {:.12} on {name}, not as here: kept as it is here",
                at.to_string()
            );
        }
        for tag in &fetched.shadowed {
            eprintln!(
                "vst: tag {tag} of {name} not taken: a branch or remote-tracking ref here has that name"
            );
        }
    }
    let list = |l: &[(RefName, CommitId)]| -> Vec<serde_json::Value> {
        l.iter().map(|(n, c)| json!({ "tag": n.as_str(), "commit": c.to_string() })).collect()
    };
    let shadowed: Vec<&str> = fetched.shadowed.iter().map(RefName::as_str).collect();
    json!({ "new": list(&fetched.created), "differing": list(&fetched.differing), "shadowed": shadowed })
}

/// `vst push NAME --delete BRANCH`.
fn delete_cmd(
    cli: &Cli,
    repo: &Repo,
    remote_name: &RefName,
    url: &str,
    branch: &RefName,
) -> Result<ExitCode> {
    let remote = open_remote(url)?;
    let was = vst::tracking::delete_branch(repo, remote_name, &remote.refs(), branch)
        .with_context(|| format!("deleting {branch} on {remote_name} ({url})"))?;
    let mut out = std::io::stdout().lock();
    if cli.json {
        writeln!(
            out,
            "{}",
            json!({ "branch": branch.as_str(), "status": "deleted", "was": was.to_string() })
        )?;
    } else if !cli.quiet {
        writeln!(out, "deleted {branch} on {remote_name} (was {:.12})", was.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst fetch NAME`: copies what every branch of the remote reaches and
/// sets the tracking refs NAME/BRANCH to the remote's branches (those the
/// remote no longer has are deleted). Moves no local branch.
pub fn fetch_cmd(cli: &Cli, ws: &Location, args: &FetchArgs) -> Result<ExitCode> {
    let url = remote_url(&ws.repo_dir, &args.remote)?;
    let remote_name = remote_ref_name(&args.remote)?;
    let repo = crate::workspace::open(ws, vst_cas::Access::ReadWrite)?;
    let remote = open_remote(&url)?;
    let store = remote.store(RemoteOptions::default())?;
    let bar = spinner(&format!("fetching from {}", args.remote), cli.quiet);
    let fetched = vst::tracking::fetch_all(&repo, &remote_name, &store, &remote.refs());
    bar.finish_and_clear();
    let fetched = fetched.with_context(|| format!("fetching from {} ({url})", args.remote))?;
    let tags = fetch_tags(cli, &repo, &store, &remote, &args.remote);
    let mut out = std::io::stdout().lock();
    let short =
        |c: Option<CommitId>| c.map_or("none".to_owned(), |c| format!("{:.12}", c.to_string()));
    if cli.json {
        let updates: Vec<_> = fetched
            .updates
            .iter()
            .map(|u| json!({ "ref": format!("{remote_name}/{}", u.branch), "old": u.old.map(|c| c.to_string()), "new": u.new.map(|c| c.to_string()) }))
            .collect();
        writeln!(
            out,
            "{}",
            json!({ "updated": updates, "fetched": stats_json(&fetched.stats), "tags": tags })
        )?;
    } else if !cli.quiet {
        for u in &fetched.updates {
            let what = match (u.old, u.new) {
                (None, _) => format!("new at {}", short(u.new)),
                (_, None) => format!("deleted (was {})", short(u.old)),
                _ => format!("{} -> {}", short(u.old), short(u.new)),
            };
            writeln!(out, "{remote_name}/{}: {what}", u.branch)?;
        }
        if fetched.updates.is_empty() {
            writeln!(out, "{remote_name}: up to date")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst pull NAME [BRANCH]`: fetches and fast-forwards the local branch;
/// if it is the current branch, the work tree follows by the one update
/// rule (local changes in the way refuse the update, and the branch is
/// left moved: `vst status` says so and `vst checkout HEAD` finishes).
pub fn pull_cmd(cli: &Cli, ws: &Location, args: &PullArgs) -> Result<ExitCode> {
    let url = remote_url(&ws.repo_dir, &args.remote)?;
    // Opened once, for writing: the pull and the work-tree update share it.
    let mut worktree = crate::workspace::open_worktree(ws, vst_cas::Access::ReadWrite)?;
    let repo = worktree.repo().clone();
    let branch = branch_or_current(&repo, args.branch.as_deref())?;
    let current = matches!(repo.refs().head()?, Head::Branch(ref b) if *b == branch);
    let remote_name = remote_ref_name(&args.remote)?;
    let remote = open_remote(&url)?;
    let store = remote.store(RemoteOptions::default())?;
    let bar = spinner(&format!("fetching {branch} from {}", args.remote), cli.quiet);
    let pulled = vst::tracking::fetch_branch(&repo, &remote_name, &store, &remote.refs(), &branch)
        .and_then(|fetched| match fetched {
            Some((tip, stats)) => Ok(Some((vst::sync::fast_forward(&repo, &branch, tip)?, stats))),
            None => Ok(None),
        });
    bar.finish_and_clear();
    let pulled =
        pulled.with_context(|| format!("pulling {branch} from {} ({url})", args.remote))?;
    let Some((outcome, stats)) = pulled else {
        bail!("remote {} has no branch {branch}", args.remote);
    };
    let moved = match outcome {
        PullOutcome::FastForward { new, .. } | PullOutcome::Created { new } => Some(new),
        _ => None,
    };
    if current && let Some(new) = moved {
        let head = Head::Branch(branch.clone());
        crate::commands::worktree::check_out(
            cli,
            &mut worktree,
            new,
            &head,
            false,
            branch.as_str(),
        )
        .with_context(|| {
            format!("{branch} moved to {:.12}, but the work tree was not updated", new.to_string())
        })?;
    }
    // After the branch and the files: tags never fail a pull half way.
    let tags = fetch_tags(cli, &repo, &store, &remote, &args.remote);
    let mut out = std::io::stdout().lock();
    // Diverged on the current branch: the merge reports instead.
    let merges = matches!(outcome, PullOutcome::Diverged { .. }) && current && !args.ff_only;
    if cli.json && !merges {
        let (status, commit) = match &outcome {
            PullOutcome::UpToDate => ("up to date", None),
            PullOutcome::Created { new } => ("created", Some(*new)),
            PullOutcome::FastForward { new, .. } => ("fast-forward", Some(*new)),
            PullOutcome::Ahead => ("ahead", None),
            PullOutcome::Diverged { remote, .. } => ("diverged", Some(*remote)),
        };
        writeln!(
            out,
            "{}",
            json!({ "branch": branch.as_str(), "status": status, "commit": commit.map(|c| c.to_string()), "fetched": stats_json(&stats), "tags": tags })
        )?;
    }
    match outcome {
        PullOutcome::Diverged { local, remote } if args.ff_only || !current => bail!(
            "{branch} has diverged: here it is at {:.12}, on {} at {:.12} (their commits are fetched); {}",
            local.to_string(),
            args.remote,
            remote.to_string(),
            if current {
                format!("`vst pull {}` without --ff-only merges them", args.remote)
            } else {
                format!("switch to {branch} and pull again to merge them")
            }
        ),
        PullOutcome::Diverged { remote, .. } => {
            drop(out);
            let spec = format!("{}/{branch}", args.remote);
            let merged = crate::commands::merge::merge_into(cli, &mut worktree, remote, &spec)?;
            return crate::commands::merge::report(cli, &spec, &merged);
        }
        _ if cli.json || cli.quiet => {}
        PullOutcome::UpToDate => writeln!(out, "{branch} is up to date with {}", args.remote)?,
        PullOutcome::Ahead => writeln!(
            out,
            "{branch} already contains {}'s commits; push to share yours",
            args.remote
        )?,
        PullOutcome::Created { new } | PullOutcome::FastForward { new, .. } => writeln!(
            out,
            "{branch} -> {:.12} ({} commits, {} trees, {} blobs, {} bytes fetched)",
            new.to_string(),
            stats.commits,
            stats.trees,
            stats.blobs,
            stats.blob_bytes
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration such as `30s`, `15m`, `1h`, `2d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let (digits, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| {
        anyhow!("bad duration {text:?}: use a number and s, m, h or d, such as 30s or 1h")
    })?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| {
        anyhow!("bad duration {text:?}: use a number and s, m, h or d, such as 30s or 1h")
    })?;
    Ok(std::time::Duration::from_secs(secs))
}

/// `vst gc --remote NAME [--grace DURATION]`: deletes the remote's packs
/// that no branch needs (see `vst::remote_gc`).
pub fn gc_cmd(cli: &Cli, ws: &Location, name: &str, grace: Option<&str>) -> Result<ExitCode> {
    let grace = match grace {
        Some(text) => parse_duration(text)?,
        None => vst::remote_gc::REMOTE_GC_GRACE_DEFAULT,
    };
    let url = remote_url(&ws.repo_dir, name)?;
    let remote = open_remote(&url)?;
    let stats = vst::remote_gc::gc_remote(&remote, grace, &RemoteOptions::default())
        .with_context(|| format!("collecting {name} ({url})"))?;
    let mut out = std::io::stdout().lock();
    if cli.json {
        writeln!(
            out,
            "{}",
            json!({ "branches": stats.branches, "packs_before": stats.packs_before, "packs_deleted": stats.packs_deleted, "packs_young": stats.packs_young, "bytes_before": stats.bytes_before, "bytes_after": stats.bytes_after })
        )?;
    } else if !cli.quiet {
        writeln!(
            out,
            "{name}: {} branches; {} of {} packs deleted, {} kept as younger than the grace period; {} -> {} bytes",
            stats.branches,
            stats.packs_deleted,
            stats.packs_before,
            stats.packs_young,
            stats.bytes_before,
            stats.bytes_after
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The file in a repository being cloned into: a clone that stops before
/// it is removed (killed, interrupted, failed) is cleaned up by the next
/// `vst clone` into the same directory.
pub const CLONING_MARKER: &str = "cloning";

/// `vst clone URL DIR`: a new repository in DIR with every branch of the
/// remote, `origin` naming it, HEAD on `main` (or the first branch) and
/// checked out.
pub fn clone_cmd(cli: &Cli, args: &CloneArgs) -> Result<ExitCode> {
    let (quiet, as_json) = (cli.quiet, cli.json);
    let root = crate::workspace::start_dir(cli)?.join(&args.target);
    let repo_dir = root.join(REPO_DIR_NAME);
    if repo_dir.join(CLONING_MARKER).exists() {
        // What an earlier clone into this directory left: the directory
        // was new or empty when it started, so all of it is the clone's.
        empty_dir(&root).with_context(|| {
            format!("removing what an earlier clone left in {}", root.display())
        })?;
    }
    if std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} exists and is not empty; clone into a new or empty directory", root.display());
    }
    let remote = open_remote(&args.url)?;
    // A prefix with no branch is most likely a mistyped URL: an empty
    // clone would hide that.
    if remote
        .refs()
        .list()
        .with_context(|| format!("listing the branches of {}", args.url))?
        .is_empty()
    {
        bail!(
            "{} holds no branch: nothing to clone (check the URL; to start a repository there, `vst init`, `vst remote add NAME {}` and `vst push NAME`)",
            args.url,
            args.url
        );
    }
    let store = remote.store(RemoteOptions::default())?;
    let created_root = !root.exists();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let bar = spinner(&format!("cloning {}", args.url), quiet);
    let cloned = clone_into(&root, &repo_dir, args, &store, &remote.refs());
    bar.finish_and_clear();
    let (branches, stats, head) = match cloned {
        Ok(done) => done,
        Err(e) => {
            // Leave nothing behind: the directory was new or empty.
            let cleaned =
                if created_root { std::fs::remove_dir_all(&root) } else { empty_dir(&root) };
            if let Err(c) = cleaned {
                eprintln!(
                    "vst: warning: could not clean up {}: {c}; `vst clone` into it again cleans it",
                    root.display()
                );
            }
            return Err(e);
        }
    };
    // The clone is whole: its tags come after, and never undo it.
    let repo = crate::workspace::open_dir(&repo_dir, vst_cas::Access::ReadWrite)?;
    let tags = fetch_tags(cli, &repo, &store, &remote, "origin");
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<_> = branches
            .iter()
            .map(|(n, c)| json!({ "branch": n.as_str(), "commit": c.to_string() }))
            .collect();
        writeln!(
            out,
            "{}",
            json!({ "dir": root.display().to_string(), "branches": list, "fetched": stats_json(&stats), "tags": tags })
        )?;
    } else if !quiet {
        writeln!(
            out,
            "cloned {} into {}: {} branches, {} commits, {} blobs ({} bytes); on {head}",
            args.url,
            root.display(),
            branches.len(),
            stats.commits,
            stats.blobs,
            stats.blob_bytes
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a clone took: every branch and its commit, the counts, and the
/// branch checked out.
type Cloned = (Vec<(RefName, CommitId)>, TransferStats, RefName);

/// Makes the repository in `repo_dir` (marked as a clone under way), takes
/// every branch of the remote, and checks out `main` (or the first branch)
/// into `root`; returns the branches, what was fetched, and the branch
/// checked out.
fn clone_into(
    root: &Path,
    repo_dir: &Path,
    args: &CloneArgs,
    store: &vst_cas::remote::RemoteStore,
    refs: &vst_cas::remote::RemoteRefs,
) -> Result<Cloned> {
    // The marker first: whatever a killed clone leaves, the next clone
    // into the directory knows it for its own, and no other command works
    // in it meanwhile.
    let marker = repo_dir.join(CLONING_MARKER);
    std::fs::create_dir_all(repo_dir)
        .with_context(|| format!("creating {}", repo_dir.display()))?;
    std::fs::write(&marker, format!("{}\n", args.url))
        .with_context(|| format!("writing {}", marker.display()))?;
    let repo = Repo::init(repo_dir, &InitStore::Local, &crate::workspace::settings)
        .with_context(|| format!("creating the repository in {}", repo_dir.display()))?;
    save_remotes(repo_dir, &[("origin".to_owned(), args.url.clone())])?;
    // Opened while HEAD is unborn: the index starts empty, as the
    // directory is.
    let mut worktree = WorkTree::open(repo, root)?;
    let (branches, stats) = vst::sync::clone_into(worktree.repo(), store, refs)
        .with_context(|| format!("cloning {}", args.url))?;
    let origin = remote_ref_name("origin")?;
    for (branch, tip) in &branches {
        vst::tracking::track(worktree.repo(), &origin, branch, Some(*tip), "clone")?;
    }

    let main = Repo::branch("main")?;
    let head = if branches.iter().any(|(n, _)| *n == main) {
        main
    } else {
        branches.first().map_or(main, |(n, _)| n.clone())
    };
    let head_ref = Head::Branch(head.clone());
    match branches.iter().find(|(n, _)| *n == head) {
        Some((_, tip)) => {
            let options = CheckoutOptions { head: Some(&head_ref), ..Default::default() };
            worktree
                .check_out(*tip, &options)
                .with_context(|| format!("checking out {head} into {}", root.display()))?;
        }
        None => worktree.repo().refs().set_head(&head_ref)?,
    }
    std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    Ok((branches, stats, head))
}

/// Removes everything in the directory `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.symlink_metadata()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |t: &str| parse_duration(t).map(|d| d.as_secs()).ok();
        assert_eq!(d("0s"), Some(0));
        assert_eq!(d("90"), Some(90));
        assert_eq!(d("15m"), Some(900));
        assert_eq!(d("1h"), Some(3600));
        assert_eq!(d("2d"), Some(172_800));
        for bad in ["", "h", "1x", "-1s", "1.5h", "99999999999999999999d"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn remotes_file_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_remotes(dir.path()).unwrap().is_empty());
        let add = |name: &str, url: &str| {
            remote_cmd(
                dir.path(),
                &RemoteAction::Add { name: name.into(), url: url.into() },
                false,
                true,
            )
        };
        add("origin", "s3://bkt/team/repo").unwrap();
        add("backup", "s3://other-bkt").unwrap();
        assert!(add("origin", "s3://bkt/x").is_err(), "duplicate name");
        assert!(add("bad name", "s3://bkt/x").is_err());
        assert!(add("x", "https://bkt/x").is_err(), "not s3://");
        assert_eq!(
            load_remotes(dir.path()).unwrap(),
            vec![
                ("backup".to_owned(), "s3://other-bkt".to_owned()),
                ("origin".to_owned(), "s3://bkt/team/repo".to_owned())
            ]
        );
        assert_eq!(remote_url(dir.path(), "origin").unwrap(), "s3://bkt/team/repo");
        let err = remote_url(dir.path(), "nope").unwrap_err().to_string();
        assert!(err.contains("vst remote add nope"), "{err}");
        remote_cmd(dir.path(), &RemoteAction::Remove { name: "backup".into() }, false, true)
            .unwrap();
        assert!(
            remote_cmd(dir.path(), &RemoteAction::Remove { name: "backup".into() }, false, true)
                .is_err()
        );
        assert_eq!(load_remotes(dir.path()).unwrap().len(), 1);
        std::fs::write(dir.path().join(REMOTES_FILE), "origin\n").unwrap();
        assert!(load_remotes(dir.path()).is_err(), "a malformed line is an error");
    }
}
