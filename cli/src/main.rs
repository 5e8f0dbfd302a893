//! `vst`: the command-line tool. The only crate that prints, reads the
//! environment or exits.

mod index;
mod mount;
mod remote;
mod rev;
mod scan;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use vst::repo::REPO_DIR_NAME;
use vst::{
    CommitId, CommitOptions, EntryKind, ReadData, Repo, RepoPath, TreeId, checkout,
    checkout_update, read,
};
use vst_cas::{Access, GcMode, Head};

use crate::index::{Index, IndexNode};
use crate::scan::{Delta, Found, Scan};

/// Content-addressed snapshots of a file tree.
#[derive(Parser)]
#[command(name = "vst", version, about)]
struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print nothing but errors (and what a command is asked to output).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Machine-readable output (commit, status, log, ls, show).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository (DIR/.vst) in DIR, or in the current directory.
    Init {
        /// Where to create it (default: the current directory, or -C's).
        // Not named `dir`: clap would merge it with the global -C.
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
        /// Keep the objects in an object store (s3://BUCKET/PREFIX; the
        /// endpoint and credentials come from the AWS_* environment), with
        /// a bounded cache in .vst/cache; refs stay in .vst.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// The local cache's limit with --store, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = remote::CACHE_MIB_DEFAULT, requires = "store")]
        cache_mib: u64,
    },
    /// Snapshot the working directory and make it the current branch's head.
    Commit {
        /// Why.
        #[arg(short, long)]
        message: String,
        /// Commit even if nothing changed.
        #[arg(long)]
        allow_empty: bool,
        /// Who (default: $VST_AUTHOR, else $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// What changed in the working directory since HEAD.
    Status,
    /// Commits from REV (default HEAD) back along first parents.
    Log {
        rev: Option<String>,
        /// At most N commits.
        #[arg(short = 'n')]
        max: Option<usize>,
    },
    /// List a directory of a commit: REV or REV:PATH.
    Ls { spec: std::ffi::OsString },
    /// Print a file of a commit: REV:PATH.
    Cat { spec: std::ffi::OsString },
    /// A commit's metadata and what it changed.
    Show { rev: Option<String> },
    /// Differences: the working directory against HEAD, against REV, or
    /// between two revisions.
    Diff {
        /// Zero, one or two revisions.
        #[arg(num_args = 0..=2)]
        revs: Vec<String>,
        /// A line per file with the count of changed lines.
        #[arg(long)]
        stat: bool,
        /// A line per file with its status letter.
        #[arg(long)]
        name_status: bool,
    },
    /// Check out branch NAME in place and make it the current branch.
    Switch {
        name: String,
        /// Overwrite uncommitted changes.
        #[arg(long)]
        force: bool,
    },
    /// List branches; create NAME at REV (default HEAD); delete with -d.
    Branch {
        name: Option<String>,
        rev: Option<String>,
        /// Delete the branch.
        #[arg(short = 'd', long)]
        delete: bool,
    },
    /// Check out REV in place (only what differs), or into a new directory.
    Checkout {
        rev: String,
        /// Materialize REV into DIR (new or empty) instead.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// Overwrite uncommitted changes.
        #[arg(long)]
        force: bool,
    },
    /// Check the repository: everything reachable, its structure and ids.
    Fsck {
        /// Also read and rehash every byte.
        #[arg(long)]
        read_data: bool,
    },
    /// Remove what no branch or recent reflog entry reaches.
    Gc {
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Keep what reflog entries younger than this many hours reach.
        #[arg(long, default_value_t = 24 * 14)]
        grace_hours: u64,
    },
    /// Mount a commit (default HEAD), or every branch and commit, read-only.
    Mount(mount::MountArgs),
    /// Unmount what `vst mount` mounted.
    Umount(mount::UmountArgs),
    /// Manage remotes (object stores to push to and pull from).
    Remote {
        #[command(subcommand)]
        action: remote::RemoteAction,
    },
    /// Send a branch to a remote (fast-forward only).
    Push(remote::PushArgs),
    /// Fetch a branch from a remote and fast-forward to it.
    Pull(remote::PullArgs),
    /// Copy a remote into a new repository in DIR and check out HEAD.
    Clone(remote::CloneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`vst log | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("vst: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The working directory root and its repository directory.
struct Workspace {
    root: PathBuf,
    repo_dir: PathBuf,
}

fn start_dir(cli: &Cli) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    match &cli.dir {
        // Resolved, so that `-C typo` fails instead of finding the
        // repository around the current directory.
        Some(dir) => cwd
            .join(dir)
            .canonicalize()
            .with_context(|| format!("-C {}: no such directory", dir.display())),
        None => Ok(cwd),
    }
}

/// Finds the repository containing the start directory.
fn find(cli: &Cli) -> Result<Workspace> {
    let start = start_dir(cli)?;
    let mut dir = start.as_path();
    loop {
        let candidate = dir.join(REPO_DIR_NAME);
        if candidate.is_dir() {
            return Ok(Workspace { root: dir.to_owned(), repo_dir: candidate });
        }
        let Some(parent) = dir.parent() else {
            // Inside a writable mount: its repository.
            if let Some(repo_dir) = mount::writable_repo(&start)? {
                let root = repo_dir.parent().unwrap_or(&repo_dir).to_owned();
                return Ok(Workspace { root, repo_dir });
            }
            bail!(
                "{} is not in a vst repository (no {REPO_DIR_NAME} here or above); create one with `vst init`",
                start.display()
            )
        };
        dir = parent;
    }
}

fn open(ws: &Workspace, access: Access) -> Result<Repo> {
    open_dir(&ws.repo_dir, access)
}

/// Opens the repository in `repo_dir`: its pack store, or the object store
/// `.vst/store` names.
fn open_dir(repo_dir: &Path, access: Access) -> Result<Repo> {
    open_dir_as(repo_dir, access, vst_cas::Holder::Brief)
}

/// `open_dir` for a writer of the given kind: a brief one waits up to
/// `LOCK_WAIT_DEFAULT` for another brief one; the mount's daemon is long-lived.
fn open_dir_as(repo_dir: &Path, access: Access, holder: vst_cas::Holder) -> Result<Repo> {
    let context = || format!("opening the repository at {}", repo_dir.display());
    match remote::store_config(repo_dir)? {
        Some((url, cache_len_max)) => {
            remote::open_remote_repo(repo_dir, &url, cache_len_max).with_context(context)
        }
        None => {
            let vfs = std::sync::Arc::new(vst_cas::vfs::RealFs::new());
            let lock_wait = vst_cas::pack::LOCK_WAIT_DEFAULT;
            let options = vst_cas::PackOptions { lock_wait, holder, ..Default::default() };
            let opened = Repo::open_with_options(vfs, repo_dir, access, options);
            if let Err(vst::Error::Store(vst_cas::StoreError::Locked { .. })) = &opened
                && let Some(point) = mount::writable_mount_of(repo_dir)
            {
                bail!(
                    "the repository at {} is held by its writable mount at {}: run this inside the mount (commit, status, diff, checkout and switch go to its daemon), or `vst umount {}` first",
                    repo_dir.display(),
                    point.display(),
                    point.display()
                );
            }
            opened.with_context(context)
        }
    }
}

/// A spinner with the elapsed time for a long operation that does not
/// report its progress; draws nothing when stderr is not a terminal.
fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("a valid template"),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

fn run(cli: &Cli) -> Result<ExitCode> {
    if let Some(code) = mount::in_writable_mount(cli)? {
        return Ok(code);
    }
    match &cli.command {
        Command::Init { path, store, cache_mib } => {
            init(cli, path.as_deref(), store.as_deref(), *cache_mib)
        }
        Command::Commit { message, allow_empty, author } => {
            commit(cli, message, *allow_empty, author.clone())
        }
        Command::Status => status(cli),
        Command::Log { rev, max } => log(cli, rev.as_deref(), *max),
        Command::Mount(args) => {
            let ws = find(cli)?;
            if let Ok(point) = args.mountpoint.canonicalize()
                && point.starts_with(&ws.root)
            {
                bail!(
                    "mount point {} is inside the working tree {}: `vst commit` would snapshot the mount; mount outside it",
                    args.mountpoint.display(),
                    ws.root.display()
                );
            }
            let repo = open(&ws, Access::ReadOnly)?;
            if args.write {
                let commit = match &args.rev {
                    Some(spec) => Some(rev::resolve(&repo, spec)?),
                    None => repo.head_commit()?,
                };
                let start = match (commit, args.rev.is_some(), args.discard) {
                    (commit, _, true) => vst_fuse::Start::Discard(commit),
                    (Some(commit), true, false) => vst_fuse::Start::At(commit),
                    (commit, _, false) => vst_fuse::Start::Resume(commit),
                };
                drop(repo);
                return mount::mount_writable(&ws.repo_dir, start, args, cli.quiet);
            }
            let target = mount::target(&repo, args)?;
            mount::mount(&repo, target, args, cli.quiet)
        }
        Command::Umount(args) => mount::umount(args, cli.quiet),
        Command::Remote { action } => remote::remote_cmd(&find(cli)?.repo_dir, action, cli.quiet),
        Command::Push(args) => remote::push_cmd(&find(cli)?.repo_dir, args, cli.quiet, cli.json),
        Command::Pull(args) => remote::pull_cmd(cli, &find(cli)?, args),
        Command::Clone(args) => remote::clone_cmd(&start_dir(cli)?, args, cli.quiet, cli.json),
        Command::Ls { spec } => ls(cli, spec),
        Command::Cat { spec } => cat(cli, spec),
        Command::Show { rev } => show(cli, rev.as_deref()),
        Command::Diff { revs, stat, name_status } => diff(cli, revs, *stat, *name_status),
        Command::Switch { name, force } => {
            Repo::branch(name)?;
            let ws = find(cli)?;
            let repo = open(&ws, Access::ReadOnly)?;
            if repo.refs().get(&Repo::branch(name)?)?.is_none() {
                bail!(
                    "no branch named {name}; `vst branch` lists them, `vst branch {name}` creates it"
                );
            }
            drop(repo);
            checkout_cmd(cli, name, None, *force)
        }
        Command::Branch { name, rev, delete } => {
            branch(cli, name.as_deref(), rev.as_deref(), *delete)
        }
        Command::Checkout { rev, into, force } => checkout_cmd(cli, rev, into.as_deref(), *force),
        Command::Fsck { read_data } => fsck(cli, *read_data),
        Command::Gc { dry_run, grace_hours } => gc(cli, *dry_run, *grace_hours),
    }
}

fn init(cli: &Cli, dir: Option<&Path>, store: Option<&str>, cache_mib: u64) -> Result<ExitCode> {
    let base = start_dir(cli)?;
    let root = dir.map_or(base.clone(), |d| base.join(d));
    let repo_dir = root.join(REPO_DIR_NAME);
    if repo_dir.exists() {
        bail!("{} already holds a repository", root.display());
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let repo = match store {
        Some(url) => {
            // Reached before anything is written, so that a wrong URL or
            // missing credentials leave no half-made repository.
            remote::open_remote(url)?
                .store(Default::default())
                .with_context(|| format!("opening the object store at {url}"))?;
            std::fs::create_dir_all(&repo_dir)
                .with_context(|| format!("creating {}", repo_dir.display()))?;
            remote::write_store_config(&repo_dir, url, cache_mib.saturating_mul(1 << 20))?;
            open_dir(&repo_dir, Access::ReadWrite)?
        }
        None => Repo::open(&repo_dir)
            .with_context(|| format!("creating the repository in {}", repo_dir.display()))?,
    };
    repo.refs().set_head(&Head::Branch(Repo::branch("main")?))?;
    if !cli.quiet {
        writeln!(out(), "initialized an empty vst repository in {}", repo_dir.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The commit `HEAD` names, read from the refs alone.
fn head_from_refs(ws: &Workspace) -> Result<Option<CommitId>> {
    let refs = vst_cas::Refs::new(std::sync::Arc::new(vst_cas::vfs::RealFs::new()), &ws.repo_dir);
    Ok(match refs.head()? {
        Head::Detached(id) => Some(CommitId::new(id)),
        Head::Branch(name) => refs.get(&name)?.map(CommitId::new),
    })
}

/// Scans the working directory against the index of `HEAD`'s tree: hashes
/// only what changed, and stores new content when `write`. Returns the
/// repository if it was opened (always when `write`; otherwise only if the
/// index had to be rebuilt from the store: a scan against a current index
/// reads no object, and opening the store costs a fifth of a scan), `HEAD`,
/// the index with the stats the scan took, and the scan.
fn scan_worktree(
    ws: &Workspace,
    write: bool,
) -> Result<(Option<Repo>, Option<CommitId>, Index, Scan)> {
    let access = if write { Access::ReadWrite } else { Access::ReadOnly };
    let head = head_from_refs(ws)?;
    let (repo, mut index, walk) = match Index::load_current(&ws.repo_dir, head) {
        Some(index) => {
            // Opening the store for writing (which reads its index) runs
            // beside the walk.
            let (repo, walk) = std::thread::scope(|s| {
                let opening = write.then(|| s.spawn(|| open(ws, access)));
                let walk = scan::walk(&ws.root, &ws.repo_dir, &index);
                let repo = opening
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .transpose();
                (repo, walk)
            });
            (repo?, index, walk?)
        }
        None => {
            let repo = open(ws, access)?;
            let tree = match head {
                Some(head) => Some(read::read_commit(repo.store().as_ref(), head)?.tree),
                None => None,
            };
            let index = Index::load(&ws.repo_dir, repo.store().as_ref(), head, tree)?;
            let walk = scan::walk(&ws.root, &ws.repo_dir, &index)?;
            (Some(repo), index, walk)
        }
    };
    let store = repo.as_ref().filter(|_| write).map(|r| r.store());
    let scanned = walk.hash(store.as_deref())?;
    scanned.refresh(&mut index);
    Ok((repo, head, index, scanned))
}

/// Saves the index; it only saves work, so a failure is a warning (and a
/// repository being written by another process is simply not refreshed).
fn save_index(ws: &Workspace, index: &mut Index) {
    if let Err(e) = index.save(&ws.repo_dir) {
        eprintln!("vst: warning: could not save the index (the next scan rehashes more): {e:#}");
    }
}

fn author(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("VST_AUTHOR").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn commit(
    cli: &Cli,
    message: &str,
    allow_empty: bool,
    author_arg: Option<String>,
) -> Result<ExitCode> {
    let ws = find(cli)?;
    let (repo, head, mut index, scanned) = scan_worktree(&ws, true)?;
    let repo = repo.expect("opened to write");
    let store = repo.store();
    for skipped in &scanned.skipped {
        eprintln!("vst: warning: skipping {}: not a file, directory or symlink", skipped.display());
    }
    let hashed = scanned.hashed.len();
    if scanned.deltas.is_empty() && !allow_empty {
        save_index(&ws, &mut index);
        let tree = index.root.id.expect("an unchanged index has its id");
        if cli.json {
            writeln!(
                out(),
                "{}",
                json!({ "commit": null, "tree": tree.to_string(), "hashed": hashed, "reason": "nothing to commit" })
            )?;
        } else if !cli.quiet {
            writeln!(out(), "nothing to commit: the working directory matches HEAD")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    index.apply(&scanned.deltas)?;
    scanned.refresh(&mut index);
    let tree = index.write_trees(store.as_ref())?;
    let options = CommitOptions {
        author: author(author_arg),
        message: message.to_owned(),
        ..Default::default()
    };
    let id = repo.commit_tree(tree, head, &options)?;
    index.commit = Some(id);
    // The commit is made: an index that cannot be saved only costs a rehash.
    save_index(&ws, &mut index);
    if cli.json {
        writeln!(
            out(),
            "{}",
            json!({ "commit": id.to_string(), "tree": tree.to_string(), "hashed": hashed })
        )?;
    } else {
        writeln!(out(), "{id}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Path -> entry of everything in `tree`.
fn flatten(repo: &Repo, tree: Option<TreeId>) -> Result<BTreeMap<Vec<u8>, EntryKind>> {
    let mut map = BTreeMap::new();
    if let Some(tree) = tree {
        read::walk(repo.store().as_ref(), tree, &mut |path, kind| {
            map.insert(path.as_bytes().to_vec(), kind.clone());
            Ok(())
        })?;
    }
    Ok(map)
}

fn same(a: &EntryKind, b: &Found) -> bool {
    match (a, b) {
        (EntryKind::File(x), Found::File(y)) => x == y,
        (EntryKind::Symlink(x), Found::Symlink(y)) => x.as_bytes() == y.as_slice(),
        (EntryKind::Dir(_), Found::Dir) => true,
        _ => false,
    }
}

/// Everything in the working directory (the index with a scan's deltas
/// applied) that differs from `base` (`None`: an empty tree), sorted by
/// path. When `base` is the index's own tree, that is the scan's deltas.
fn compare(
    repo: &Repo,
    base: Option<TreeId>,
    mut index: Index,
    scanned: Scan,
) -> Result<Vec<Delta>> {
    if base.is_some() && base == index.root.id {
        return Ok(scanned.deltas);
    }
    index.apply(&scanned.deltas)?;
    let mut old = flatten(repo, base)?;
    let mut out = Vec::new();
    index.root.for_each(&RepoPath::root(), &mut |path, node| {
        let found = match node {
            IndexNode::File(f, _) => Found::File(*f),
            IndexNode::Symlink(t) => Found::Symlink(t.as_bytes().to_vec()),
            IndexNode::Dir(_) => Found::Dir,
        };
        let before = old.remove(path.as_bytes());
        if !before.as_ref().is_some_and(|kind| same(kind, &found)) {
            out.push(Delta { path, old: before, new: Some(found) });
        }
    });
    for (path, kind) in old {
        let path = RepoPath::try_from(&path[..]).expect("paths from a tree are valid");
        out.push(Delta { path, old: Some(kind), new: None });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn status(cli: &Cli) -> Result<ExitCode> {
    let ws = find(cli)?;
    let (_, _, mut index, scanned) = scan_worktree(&ws, false)?;
    // Refreshing the index makes the next status cheap.
    save_index(&ws, &mut index);
    let changes: Vec<(RepoPath, &str)> = scanned
        .deltas
        .into_iter()
        .map(|d| {
            let s = d.status();
            (d.path, s)
        })
        .collect();
    if cli.json {
        let list: Vec<_> = changes
            .iter()
            .map(|(path, s)| json!({ "path": path.to_string(), "status": s }))
            .collect();
        writeln!(out(), "{}", json!({ "changes": list }))?;
    } else if changes.is_empty() {
        if !cli.quiet {
            writeln!(out(), "clean: the working directory matches HEAD")?;
        }
    } else {
        let mut out = out();
        for (path, s) in &changes {
            let path = path.to_string();
            writeln!(out, "{} {path}", status_letter(s))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn commit_json(id: CommitId, c: &vst::Commit) -> serde_json::Value {
    json!({
        "commit": id.to_string(),
        "tree": c.tree.to_string(),
        "parents": c.parents.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "author": c.author,
        "time_unix_us": c.time.unix_us,
        "message": c.message,
    })
}

fn log(cli: &Cli, rev: Option<&str>, max: Option<usize>) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let mut next = Some(rev::resolve(&repo, rev.unwrap_or("HEAD"))?);
    let mut out = out();
    let mut shown = 0;
    let mut list = Vec::new();
    while let Some(id) = next {
        if max.is_some_and(|m| shown >= m) {
            break;
        }
        let c = read::read_commit(repo.store().as_ref(), id)?;
        if cli.json {
            list.push(commit_json(id, &c));
        } else {
            writeln!(
                out,
                "commit {id}\nauthor {}\ndate   {}\n\n    {}\n",
                c.author,
                utc(c.time.unix_us),
                c.message.trim_end().replace('\n', "\n    ")
            )?;
        }
        shown += 1;
        next = c.parents.first().copied();
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `unix_us` as `YYYY-MM-DD HH:MM:SS UTC` (days to civil date after Howard
/// Hinnant's algorithm; a date library for one line of output is not worth
/// a dependency).
fn utc(unix_us: i64) -> String {
    let secs = unix_us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Splits REV[:PATH]; PATH is bytes (file names need not be UTF-8).
fn split_spec(spec: &std::ffi::OsStr) -> Result<(&str, RepoPath)> {
    let bytes = spec.as_bytes();
    let (rev, path) = match bytes.iter().position(|&b| b == b':') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    let rev = std::str::from_utf8(rev)
        .map_err(|_| anyhow!("bad revision in {spec:?}: revisions are ASCII"))?;
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let end = path.iter().rposition(|&b| b != b'/').map_or(start, |i| i + 1);
    let path = RepoPath::try_from(&path[start..end.max(start)])
        .with_context(|| format!("bad path in {spec:?}"))?;
    Ok((rev, path))
}

fn ls(cli: &Cli, spec: &std::ffi::OsStr) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let (rev, path) = split_spec(spec)?;
    let tree = read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree;
    let listing = read::list_dir(repo.store().as_ref(), tree, &path)?;
    let mut out = out();
    let mut list = Vec::new();
    for entry in listing.entries() {
        let name = entry.name.to_string();
        let (kind, id, size, executable, target) = match &entry.kind {
            EntryKind::File(f) => ("file", f.id.to_string(), Some(f.size), f.executable, None),
            EntryKind::Dir(t) => ("dir", t.to_string(), None, false, None),
            EntryKind::Symlink(t) => (
                "symlink",
                String::new(),
                None,
                false,
                Some(String::from_utf8_lossy(t.as_bytes()).into_owned()),
            ),
        };
        if cli.json {
            list.push(json!({ "name": name, "type": kind, "id": id, "size": size, "executable": executable, "target": target }));
        } else {
            let mode = match (kind, executable) {
                ("dir", _) => "d",
                ("symlink", _) => "l",
                (_, true) => "x",
                _ => "-",
            };
            let shown = match &target {
                Some(t) => format!("{name} -> {t}"),
                None => name,
            };
            writeln!(
                out,
                "{mode} {:>10} {:.12} {shown}",
                size.map_or(String::new(), |s| s.to_string()),
                id
            )?;
        }
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cat(cli: &Cli, spec: &std::ffi::OsStr) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let (rev, path) = split_spec(spec)?;
    if path.is_root() {
        bail!("`vst cat` needs REV:PATH, the path of a file");
    }
    let tree = read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree;
    read::copy_file(repo.store().as_ref(), tree, &path, &mut out())?;
    Ok(ExitCode::SUCCESS)
}

fn show(cli: &Cli, rev: Option<&str>) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let id = rev::resolve(&repo, rev.unwrap_or("HEAD"))?;
    let c = read::read_commit(repo.store().as_ref(), id)?;
    let parent_tree = match c.parents.first() {
        Some(p) => Some(read::read_commit(repo.store().as_ref(), *p)?.tree),
        None => None,
    };
    let changes = vst::diff_trees(repo.store().as_ref(), parent_tree, Some(c.tree))?;
    let mut out = out();
    if cli.json {
        let mut value = commit_json(id, &c);
        value["changes"] = changes
            .iter()
            .map(|ch| json!({ "path": ch.path.to_string(), "status": status_word(letter(ch.kind())) }))
            .collect();
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "commit {id}\nauthor {}\n\n    {}\n", c.author, c.message.trim_end())?;
        for ch in changes {
            writeln!(out, "{:?} {}", ch.kind(), ch.path)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One changed path and its two sides' bytes (a symlink's target stands
/// for its content; a directory has none).
struct FileDiff {
    path: String,
    status: char,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
}

/// The one vocabulary of `--json` statuses.
fn status_word(letter: char) -> &'static str {
    match letter {
        'A' => "added",
        'D' => "deleted",
        'M' => "modified",
        _ => "type_changed",
    }
}

/// The letter of a `--json` status word.
fn status_letter(word: &str) -> char {
    match word {
        "added" => 'A',
        "deleted" => 'D',
        "modified" => 'M',
        _ => 'T',
    }
}

fn letter(kind: vst::ChangeKind) -> char {
    match kind {
        vst::ChangeKind::Added => 'A',
        vst::ChangeKind::Removed => 'D',
        vst::ChangeKind::Modified => 'M',
        vst::ChangeKind::TypeChanged => 'T',
    }
}

fn stored_bytes(repo: &Repo, kind: Option<&EntryKind>) -> Result<Option<Vec<u8>>> {
    Ok(match kind {
        Some(EntryKind::File(f)) => Some(repo.store().get(&f.id.object_id())?.to_vec()),
        Some(EntryKind::Symlink(t)) => Some(t.as_bytes().to_vec()),
        _ => None,
    })
}

fn diff(cli: &Cli, revs: &[String], stat: bool, name_status: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let tree_of = |rev: &str| -> Result<vst::TreeId> {
        Ok(read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree)
    };
    let mut files = Vec::new();
    if let [a, b] = revs {
        files = tree_diff(&repo, Some(tree_of(a)?), Some(tree_of(b)?))?;
    } else {
        // Against the working directory.
        let base = match revs.first() {
            Some(rev) => Some(tree_of(rev)?),
            None => match repo.head_commit()? {
                Some(head) => Some(read::read_commit(repo.store().as_ref(), head)?.tree),
                None => None,
            },
        };
        let (_, _, mut index, scanned) = scan_worktree(&ws, false)?;
        save_index(&ws, &mut index);
        for d in compare(&repo, base, index, scanned)? {
            // A directory shows through its contents.
            let dir_or_absent_before = matches!(d.old, None | Some(EntryKind::Dir(_)));
            if dir_or_absent_before && matches!(d.new, None | Some(Found::Dir)) {
                continue;
            }
            let new = match &d.new {
                Some(Found::File(_)) => {
                    let full = ws.root.join(std::ffi::OsStr::from_bytes(d.path.as_bytes()));
                    Some(
                        std::fs::read(&full)
                            .with_context(|| format!("reading {}", full.display()))?,
                    )
                }
                Some(Found::Symlink(t)) => Some(t.clone()),
                Some(Found::Dir) | None => None,
            };
            let status = status_letter(d.status());
            files.push(FileDiff {
                path: d.path.to_string(),
                status,
                old: stored_bytes(&repo, d.old.as_ref())?,
                new,
            });
        }
    }
    print_diff(cli, &files, stat, name_status)
}

/// The files (and symlinks) that differ between trees `a` and `b` of the
/// store, with both sides' bytes; a directory shows through its contents.
fn tree_diff(repo: &Repo, a: Option<vst::TreeId>, b: Option<vst::TreeId>) -> Result<Vec<FileDiff>> {
    let mut files = Vec::new();
    for change in vst::diff_trees(repo.store().as_ref(), a, b)? {
        if matches!(
            (&change.old, &change.new),
            (Some(EntryKind::Dir(_)) | None, Some(EntryKind::Dir(_)) | None)
        ) {
            continue;
        }
        files.push(FileDiff {
            path: change.path.to_string(),
            status: letter(change.kind()),
            old: stored_bytes(repo, change.old.as_ref())?,
            new: stored_bytes(repo, change.new.as_ref())?,
        });
    }
    Ok(files)
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(8000).any(|&b| b == 0) || std::str::from_utf8(bytes).is_err()
}

fn print_diff(cli: &Cli, files: &[FileDiff], stat: bool, name_status: bool) -> Result<ExitCode> {
    let mut out = out();
    if cli.json {
        let list: Vec<_> = files
            .iter()
            .map(|f| json!({ "path": f.path, "status": status_word(f.status) }))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (mut total_ins, mut total_del) = (0usize, 0usize);
    for f in files {
        let old = f.old.as_deref().unwrap_or(b"");
        let new = f.new.as_deref().unwrap_or(b"");
        if name_status {
            writeln!(out, "{}\t{}", f.status, f.path)?;
            continue;
        }
        let binary = is_binary(old) || is_binary(new);
        if stat {
            if binary {
                writeln!(out, " {} | binary", f.path)?;
            } else {
                let d = similar::TextDiff::from_lines(
                    std::str::from_utf8(old).expect("checked"),
                    std::str::from_utf8(new).expect("checked"),
                );
                let (mut ins, mut del) = (0, 0);
                for change in d.iter_all_changes() {
                    match change.tag() {
                        similar::ChangeTag::Insert => ins += 1,
                        similar::ChangeTag::Delete => del += 1,
                        similar::ChangeTag::Equal => {}
                    }
                }
                total_ins += ins;
                total_del += del;
                writeln!(
                    out,
                    " {} | {} {}{}",
                    f.path,
                    ins + del,
                    "+".repeat(ins.min(40)),
                    "-".repeat(del.min(40))
                )?;
            }
            continue;
        }
        writeln!(out, "diff {} ({})", f.path, f.status)?;
        if binary {
            writeln!(out, "binary content differs")?;
            continue;
        }
        let d = similar::TextDiff::from_lines(
            std::str::from_utf8(old).expect("checked"),
            std::str::from_utf8(new).expect("checked"),
        );
        let a = if f.old.is_some() { format!("a/{}", f.path) } else { "/dev/null".to_owned() };
        let b = if f.new.is_some() { format!("b/{}", f.path) } else { "/dev/null".to_owned() };
        write!(out, "{}", d.unified_diff().context_radius(3).header(&a, &b))?;
    }
    if stat {
        writeln!(
            out,
            " {} files changed, {total_ins} insertions(+), {total_del} deletions(-)",
            files.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn branch(cli: &Cli, name: Option<&str>, rev: Option<&str>, delete: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
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

fn checkout_cmd(cli: &Cli, spec: &str, into: Option<&Path>, force: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    if let Some(dir) = into {
        let repo = open(&ws, Access::ReadOnly)?;
        let tree = read::read_commit(repo.store().as_ref(), rev::resolve(&repo, spec)?)?.tree;
        let target = start_dir(cli)?.join(dir);
        let bar = spinner(&format!("checking out {spec}"));
        let stats = checkout(repo.store().as_ref(), tree, &target)
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
    let repo = open(&ws, Access::ReadWrite)?;
    let target = rev::resolve(&repo, spec)?;
    let store = repo.store();
    let head_tree = match repo.head_commit()? {
        Some(head) => read::read_commit(store.as_ref(), head)?.tree,
        None => vst::Tree::default().id(),
    };
    let to = read::read_commit(store.as_ref(), target)?.tree;
    // The paths the checkout will touch: those that differ between HEAD
    // and the target. Everything else on disk, local changes and ignored
    // files included, is left as it is.
    let touched: HashSet<Vec<u8>> = vst::diff_trees(store.as_ref(), Some(head_tree), Some(to))?
        .into_iter()
        .map(|c| c.path.as_bytes().to_vec())
        .collect();
    let (_, _, index, scanned) = scan_worktree(&ws, false)?;
    // An untracked directory is not a conflict by itself (it may hold only
    // ignored files, and a checkout fills it); the files in it are.
    let local: Vec<&Delta> =
        scanned.deltas.iter().filter(|d| !(d.old.is_none() && d.new == Some(Found::Dir))).collect();
    let local_set: HashSet<Vec<u8>> = local.iter().map(|d| d.path.as_bytes().to_vec()).collect();
    // A local change collides if it is a touched path, under one, or above
    // one; so does anything already on disk where the target adds a path
    // HEAD does not have (an ignored file, say).
    let mut in_the_way: Vec<RepoPath> = local
        .iter()
        .filter(|d| overlaps(&touched, d.path.as_bytes()))
        .map(|d| d.path.clone())
        .collect();
    for path in &touched {
        let repo_path = RepoPath::try_from(&path[..]).expect("paths from a tree are valid");
        let disk = std::fs::symlink_metadata(ws.root.join(std::ffi::OsStr::from_bytes(path)));
        let in_head = read::lookup(store.as_ref(), head_tree, &repo_path)?.is_some();
        // A directory on disk where the target adds one is merged into.
        let target_dir =
            matches!(read::lookup(store.as_ref(), to, &repo_path)?, Some(EntryKind::Dir(_)));
        let on_disk = disk.is_ok_and(|m| !(m.is_dir() && target_dir));
        let unknown_file_there = on_disk && !in_head;
        let under_or_above_a_change = overlaps(&local_set, path);
        if (unknown_file_there || under_or_above_a_change) && !local_set.contains(path) {
            in_the_way.push(repo_path);
        }
    }
    in_the_way.sort();
    in_the_way.dedup();
    if !in_the_way.is_empty() && !force {
        let shown: Vec<String> = in_the_way.iter().take(5).map(|p| p.to_string()).collect();
        bail!(
            "checking out {spec} would overwrite {} uncommitted change(s) or untracked file(s): {}{}; commit or move them, or pass --force to overwrite them",
            in_the_way.len(),
            shown.join(", "),
            if in_the_way.len() > 5 { ", ..." } else { "" }
        );
    }
    if force {
        // Make the disk match HEAD at the colliding paths, so that the
        // update below can run; everything else stays.
        for path in &in_the_way {
            let full = ws.root.join(std::ffi::OsStr::from_bytes(path.as_bytes()));
            if read::lookup(store.as_ref(), head_tree, path)?.is_none() {
                match std::fs::symlink_metadata(&full) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&full),
                    Ok(_) => std::fs::remove_file(&full),
                    Err(_) => Ok(()),
                }
                .with_context(|| format!("removing {} to make way for {spec}", full.display()))?;
            }
        }
    }
    // With --force, local changes to tracked files are discarded: update
    // from HEAD as modified on disk, so that each of them differs from the
    // target and is rewritten. Untracked files are not in that tree, so
    // they stay (unless they were in the way, above).
    let tracked: Vec<Delta> =
        local.iter().filter(|d| d.old.is_some()).map(|d| (*d).clone()).collect();
    let from = if force && !tracked.is_empty() {
        let mut index = index;
        index.apply(&tracked)?;
        index.write_trees(store.as_ref())?
    } else {
        head_tree
    };
    let bar = spinner(&format!("checking out {spec}"));
    let stats = checkout_update(store.as_ref(), from, to, &ws.root).with_context(|| {
        format!("checking out {spec}: the working directory may be partly updated; run `vst checkout {spec} --force` to finish")
    });
    bar.finish_and_clear();
    let stats = stats?;
    let base = spec.split('~').next().unwrap_or(spec);
    let head = match vst_cas::RefName::try_from(base) {
        // `checkout HEAD` keeps HEAD where it is (on its branch).
        _ if (base == "HEAD" || base == "@") && !spec.contains('~') => repo.refs().head()?,
        Ok(name) if !spec.contains('~') && repo.refs().get(&name)?.is_some() => Head::Branch(name),
        _ => Head::Detached(target.object_id()),
    };
    repo.refs().set_head(&head)?;
    if let Head::Detached(_) = head
        && !cli.quiet
    {
        eprintln!(
            "vst: note: HEAD is now detached at {spec}; `vst switch BRANCH` goes back to a branch"
        );
    }
    // The index of the new HEAD, with the stats of what was written, so
    // that the next scan reads nothing.
    match scan_worktree(&ws, false) {
        Ok((_, _, mut index, _)) => save_index(&ws, &mut index),
        Err(e) => eprintln!("vst: warning: could not refresh the index: {e:#}"),
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

/// Whether `path` or one of its parent directories is in `set`, or `path`
/// is a parent directory of something in `set`.
fn overlaps(set: &HashSet<Vec<u8>>, path: &[u8]) -> bool {
    if set.contains(path) {
        return true;
    }
    let parent_in =
        path.iter().enumerate().filter(|(_, b)| **b == b'/').any(|(i, _)| set.contains(&path[..i]));
    parent_in
        || set.iter().any(|s| s.len() > path.len() && s.starts_with(path) && s[path.len()] == b'/')
}

fn fsck(cli: &Cli, read_data: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let bar =
        spinner(if read_data { "checking every object and byte" } else { "checking every object" });
    let report = repo.fsck(if read_data { ReadData::Yes } else { ReadData::No });
    bar.finish_and_clear();
    let report = report?;
    let mut out = out();
    for p in &report.problems {
        writeln!(out, "{} {}: {}", p.kind, p.id, p.error)?;
    }
    for (name, e) in &report.bad_refs {
        writeln!(out, "ref {name}: {e}")?;
    }
    for pack in &report.damaged_packs {
        writeln!(out, "pack {pack}: damaged records")?;
    }
    for (id, e) in &report.damaged_records {
        writeln!(out, "record {id}: {e}")?;
    }
    if report.is_clean() {
        if !cli.quiet {
            writeln!(
                out,
                "ok: {} commits, {} trees, {} blobs",
                report.commits, report.trees, report.blobs
            )?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

fn gc(cli: &Cli, dry_run: bool, grace_hours: u64) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadWrite)?;
    let mode = if dry_run { GcMode::DryRun } else { GcMode::Collect };
    let bar = spinner("collecting garbage");
    let stats = repo.gc(std::time::Duration::from_secs(grace_hours.saturating_mul(3600)), mode);
    bar.finish_and_clear();
    let stats = stats?;
    if !cli.quiet {
        let verb = if dry_run { "would remove" } else { "removed" };
        writeln!(
            out(),
            "{verb} {} records, kept {}; packs {} -> {} bytes",
            stats.records_removed,
            stats.records_kept,
            stats.bytes_before,
            stats.bytes_after
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
