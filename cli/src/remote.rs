//! Remotes: `vst remote add/list/remove`, `vst push`, `vst pull` and
//! `vst clone`, against S3-compatible object stores.
//!
//! A remote is a name and an `s3://BUCKET/PREFIX` URL, kept in
//! `.vst/remotes`: one line per remote, `NAME URL\n`, sorted by name
//! (names follow the branch-name rules; a URL has no whitespace). The
//! endpoint and the credentials come from the environment, as other S3
//! tools take them: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`; plain HTTP
//! is allowed for a loopback endpoint, or with `AWS_ALLOW_HTTP=true`.
//!
//! `pull_cmd` uses `scan_worktree` and `save_index` from `main.rs` (to
//! refuse a pull over local changes and to refresh the index after
//! updating the working directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::repo::REPO_DIR_NAME;
use vst::sync::{PullOutcome, PushOutcome, TransferStats};
use vst::{CommitId, Repo, read};
use vst_cas::remote::{Remote, RemoteOptions, S3Config};
use vst_cas::{Head, RefName, Store};

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

/// `vst push NAME [BRANCH]`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The remote.
    pub remote: String,
    /// The branch (default: the current one).
    pub branch: Option<String>,
}

/// `vst pull NAME [BRANCH]`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The remote.
    pub remote: String,
    /// The branch (default: the current one).
    pub branch: Option<String>,
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

/// The object store at `url`, configured from the environment.
pub fn open_remote(url: &str) -> Result<Remote> {
    let config = S3Config::from_url(url, &|k| std::env::var(k).ok())?;
    Remote::s3(&config).with_context(|| format!("connecting to {}", config.describe()))
}

/// The file in `.vst/` that says the repository's objects are in an
/// object store: its URL on the first line, the local cache's limit in
/// bytes on the second.
pub const STORE_FILE: &str = "store";
/// The local cache of a repository whose objects are remote, in `.vst/`.
const CACHE_DIR: &str = "cache";
/// The cache's limit unless `vst init --cache-mib` says otherwise.
pub const CACHE_MIB_DEFAULT: u64 = 1024;

/// Where a repository's objects are, if not in its own pack store: the
/// URL and the cache limit from `.vst/store`.
pub fn store_config(repo_dir: &Path) -> Result<Option<(String, u64)>> {
    let path = repo_dir.join(STORE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut lines = text.lines();
    let (Some(url), Some(len_max)) = (lines.next(), lines.next().and_then(|l| l.parse().ok()))
    else {
        bail!("{} is damaged: want a URL line and a cache size line", path.display());
    };
    Ok(Some((url.to_owned(), len_max)))
}

/// Writes `.vst/store` (durably: it decides where every object goes).
pub fn write_store_config(repo_dir: &Path, url: &str, cache_len_max: u64) -> Result<()> {
    vst_cas::remote::parse_url(url)?;
    let path = repo_dir.join(STORE_FILE);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create_new(&path)?;
        file.write_all(format!("{url}\n{cache_len_max}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::File::open(repo_dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Opens the repository in `repo_dir` whose objects are at `url`, with its
/// bounded cache in `.vst/cache`.
pub fn open_remote_repo(repo_dir: &Path, url: &str, cache_len_max: u64) -> Result<Repo> {
    let vfs: std::sync::Arc<dyn vst_cas::vfs::Vfs> =
        std::sync::Arc::new(vst_cas::vfs::RealFs::new());
    let options = RemoteOptions {
        cache: Some(vst_cas::remote::CacheOptions {
            dir: repo_dir.join(CACHE_DIR),
            len_max: cache_len_max,
            vfs: vfs.clone(),
        }),
        ..RemoteOptions::default()
    };
    let store = open_remote(url)?
        .store(options)
        .with_context(|| format!("opening the object store at {url}"))?;
    Ok(Repo::open_remote(vfs, repo_dir, store)?)
}

/// `vst remote add/list/remove`.
pub fn remote_cmd(repo_dir: &Path, action: &RemoteAction, quiet: bool) -> Result<ExitCode> {
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
            if !quiet {
                writeln!(std::io::stdout(), "added remote {name} at {url}")?;
            }
        }
        RemoteAction::List => {
            let mut out = std::io::stdout().lock();
            for (name, url) in &remotes {
                writeln!(out, "{name} {url}")?;
            }
        }
        RemoteAction::Remove { name } => {
            let before = remotes.len();
            remotes.retain(|(n, _)| n != name);
            if remotes.len() == before {
                bail!("no remote named {name}; `vst remote list` shows them");
            }
            save_remotes(repo_dir, &remotes)?;
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

/// `vst push NAME [BRANCH]`.
pub fn push_cmd(repo_dir: &Path, args: &PushArgs, quiet: bool, as_json: bool) -> Result<ExitCode> {
    let repo = Repo::open_with(
        std::sync::Arc::new(vst_cas::vfs::RealFs::new()),
        repo_dir,
        vst_cas::Access::ReadOnly,
    )
    .with_context(|| format!("opening the repository at {}", repo_dir.display()))?;
    let branch = branch_or_current(&repo, args.branch.as_deref())?;
    let tip = repo
        .refs()
        .get(&branch)?
        .map(CommitId::new)
        .ok_or_else(|| anyhow!("no branch named {branch} here; commit first"))?;
    let url = remote_url(repo_dir, &args.remote)?;
    let remote = open_remote(&url)?;
    let store = remote.store(RemoteOptions::default())?;
    let outcome = vst::sync::push(repo.store().as_ref(), &store, &remote.refs(), &branch, tip)
        .with_context(|| format!("pushing {branch} to {} ({url})", args.remote))?;
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

/// `vst pull NAME [BRANCH]`: fetches and fast-forwards the local branch;
/// if it is the current branch, the working directory is updated too,
/// which requires it to have no uncommitted changes.
pub fn pull_cmd(cli: &crate::Cli, ws: &crate::Workspace, args: &PullArgs) -> Result<ExitCode> {
    let url = remote_url(&ws.repo_dir, &args.remote)?;
    let repo = crate::open(ws, vst_cas::Access::ReadWrite)?;
    let branch = branch_or_current(&repo, args.branch.as_deref())?;
    let current = matches!(repo.refs().head()?, Head::Branch(ref b) if *b == branch);
    if current {
        drop(repo);
        let (_, _, _, scanned) = crate::scan_worktree(ws, false)?;
        if !scanned.deltas.is_empty() {
            bail!(
                "the working directory has {} uncommitted change(s); commit them (or check out {branch} --force) before pulling",
                scanned.deltas.len()
            );
        }
    }
    let repo = crate::open(ws, vst_cas::Access::ReadWrite)?;
    let remote = open_remote(&url)?;
    let store = remote.store(RemoteOptions::default())?;
    let pulled = vst::sync::pull(&repo, &store, &remote.refs(), &branch)
        .with_context(|| format!("pulling {branch} from {} ({url})", args.remote))?;
    let Some((outcome, stats)) = pulled else {
        bail!("remote {} has no branch {branch}", args.remote);
    };
    let local_store = repo.store();
    let moved = match outcome {
        PullOutcome::FastForward { old, new } => Some((Some(old), new)),
        PullOutcome::Created { new } => Some((None, new)),
        _ => None,
    };
    // From where the branch was when it moved (a commit may have landed
    // between the scan and the pull).
    if current && let Some((old, new)) = moved {
        let from = match old {
            Some(old) => read::read_commit(local_store.as_ref(), old)?.tree,
            None => {
                let empty = vst::Tree::default();
                local_store.put(empty.id().object_id(), &empty.encode())?;
                empty.id()
            }
        };
        let to = read::read_commit(local_store.as_ref(), new)?.tree;
        vst::checkout_update(local_store.as_ref(), from, to, &ws.root).with_context(|| {
            format!("updating the working directory to {branch}: it may be partly updated; run `vst checkout {branch} --force` to finish")
        })?;
        drop(repo);
        match crate::scan_worktree(ws, false) {
            Ok((_, _, mut index, _)) => crate::save_index(ws, &mut index),
            Err(e) => eprintln!("vst: warning: could not refresh the index: {e:#}"),
        }
    }
    let mut out = std::io::stdout().lock();
    if cli.json {
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
            json!({ "branch": branch.as_str(), "status": status, "commit": commit.map(|c| c.to_string()), "fetched": stats_json(&stats) })
        )?;
    }
    match outcome {
        PullOutcome::Diverged { local, remote } => bail!(
            "{branch} has diverged: here it is at {:.12}, on {} at {:.12}; vst cannot merge yet (the remote's commits are fetched)",
            local.to_string(),
            args.remote,
            remote.to_string()
        ),
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

/// `vst clone URL DIR`: a new repository in DIR with every branch of the
/// remote, `origin` naming it, HEAD on `main` (or the first branch) and
/// checked out.
pub fn clone_cmd(base: &Path, args: &CloneArgs, quiet: bool, as_json: bool) -> Result<ExitCode> {
    let root = base.join(&args.target);
    if std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} exists and is not empty; clone into a new or empty directory", root.display());
    }
    let remote = open_remote(&args.url)?;
    let store = remote.store(RemoteOptions::default())?;
    let refs = remote.refs();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let repo_dir = root.join(REPO_DIR_NAME);
    let repo = Repo::open(&repo_dir)
        .with_context(|| format!("creating the repository in {}", repo_dir.display()))?;
    save_remotes(&repo_dir, &[("origin".to_owned(), args.url.clone())])?;
    let (branches, stats) = vst::sync::clone_into(&repo, &store, &refs)
        .with_context(|| format!("cloning {}", args.url))?;
    let main = Repo::branch("main")?;
    let head = if branches.iter().any(|(n, _)| *n == main) {
        main
    } else {
        branches.first().map_or(main, |(n, _)| n.clone())
    };
    repo.refs().set_head(&Head::Branch(head.clone()))?;
    if let Some((_, tip)) = branches.iter().find(|(n, _)| *n == head) {
        let local = repo.store();
        let empty = vst::Tree::default();
        local.put(empty.id().object_id(), &empty.encode())?;
        local.sync()?;
        let tree = read::read_commit(local.as_ref(), *tip)?.tree;
        vst::checkout_update(local.as_ref(), empty.id(), tree, &root)
            .with_context(|| format!("checking out {head} into {}", root.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<_> = branches
            .iter()
            .map(|(n, c)| json!({ "branch": n.as_str(), "commit": c.to_string() }))
            .collect();
        writeln!(
            out,
            "{}",
            json!({ "dir": root.display().to_string(), "branches": list, "fetched": stats_json(&stats) })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_file_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_remotes(dir.path()).unwrap().is_empty());
        let add = |name: &str, url: &str| {
            remote_cmd(dir.path(), &RemoteAction::Add { name: name.into(), url: url.into() }, true)
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
        remote_cmd(dir.path(), &RemoteAction::Remove { name: "backup".into() }, true).unwrap();
        assert!(
            remote_cmd(dir.path(), &RemoteAction::Remove { name: "backup".into() }, true).is_err()
        );
        assert_eq!(load_remotes(dir.path()).unwrap().len(), 1);
        std::fs::write(dir.path().join(REMOTES_FILE), "origin\n").unwrap();
        assert!(load_remotes(dir.path()).is_err(), "a malformed line is an error");
    }
}
