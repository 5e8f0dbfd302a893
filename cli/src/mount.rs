//! `vst mount` and `vst umount`: a commit, or every branch and commit, as
//! a read-only filesystem, or with `--write` a writable working tree
//! (crate `vst-fuse`); and the commands that, run inside a writable mount,
//! go to its daemon ([`in_writable_mount`]).
//!
//! `--background` starts this same binary again as
//! `vst -C ROOT -q mount MOUNTPOINT (--rev ID | --all) --serve-detached`
//! (the global `-C` and `-q` must stay as they are), in its own process
//! group, and returns once the mount shows in `/proc/self/mountinfo`.

use std::fs;
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use vst::{CommitId, Repo};
use vst_fuse::{ErrorLog, MountOptions, Sharing, View};

/// How long `--background` waits for the mount to come up.
const BACKGROUND_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a foreground mount checks for a signal or an unmount from
/// outside.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// `vst mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// An existing, empty directory.
    pub mountpoint: PathBuf,
    /// The commit to mount (default: HEAD). With --write, a branch name
    /// makes HEAD name that branch, and any other commit than HEAD's
    /// detaches HEAD there, so that a commit in the mount moves what it
    /// started from.
    #[arg(long, conflicts_with = "all")]
    pub rev: Option<String>,
    /// Every branch (branches/NAME) and every commit they reach
    /// (commits/ID), as they are when mounting.
    #[arg(long)]
    pub all: bool,
    /// A writable working tree of REV (default: the current branch's head),
    /// with the uncommitted changes the last writable mount left on that
    /// commit; changes it left on another commit (the branch moved since)
    /// make it refuse, unless --save or --discard. Inside it, `vst
    /// commit`, `status`, `diff`, `checkout` and `switch` go to the mount's
    /// daemon.
    #[arg(long, conflicts_with = "all")]
    pub write: bool,
    /// With --write: drop the uncommitted changes the last writable mount
    /// left, and start at REV (they cannot be recovered).
    #[arg(long, requires = "write")]
    pub discard: bool,
    /// With --write: if the last writable mount left uncommitted changes on
    /// another commit than REV, commit them on a new branch BRANCH (on top
    /// of the commit they were made on), then mount REV.
    #[arg(long, value_name = "BRANCH", requires = "write", conflicts_with = "discard")]
    pub save: Option<String>,
    /// Return once the mount is live, leaving a detached process to serve
    /// it until `vst umount`.
    #[arg(long)]
    pub background: bool,
    /// Let other users read the mount (needs `user_allow_other` in
    /// /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Threads serving requests.
    #[arg(long, value_name = "N", default_value_t = vst_fuse::THREADS_DEFAULT)]
    pub threads: usize,
    /// Append what cannot be read to FILE (default: standard error, which
    /// `--background` drops once the mount is up).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Internal: this process is the server `--background` started.
    #[arg(long, hide = true)]
    pub serve_detached: bool,
}

/// `vst umount`.
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Where `vst mount` mounted.
    pub mountpoint: PathBuf,
}

/// What to mount, resolved before anything is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One commit's tree.
    Commit(CommitId),
    /// `branches/` and `commits/`.
    All,
}

/// The target `args` ask for: `--all`, else `--rev` (default `HEAD`)
/// resolved, so that an unknown revision fails before mounting.
pub fn target(repo: &Repo, args: &MountArgs) -> Result<Target> {
    if args.all {
        return Ok(Target::All);
    }
    Ok(Target::Commit(crate::rev::resolve(repo, args.rev.as_deref().unwrap_or("HEAD"))?))
}

/// `vst mount`: checks the mount point, mounts `target` of `repo`, and
/// serves it until unmounted, SIGINT or SIGTERM (then unmounts); with
/// `--background`, returns once a detached server has it mounted.
/// The mount follows the store across `vst gc` (`spawn_repo_mount`): it
/// takes `repo`, so that nothing else holds the old packs open.
pub fn mount(repo: Repo, target: Target, args: &MountArgs, quiet: bool) -> Result<ExitCode> {
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    let what = match target {
        Target::Commit(id) => format!("commit {id}"),
        Target::All => "every branch and commit".to_owned(),
    };
    if args.background && !args.serve_detached {
        return background(repo.dir(), Some(target), args, &mountpoint, &what, quiet);
    }
    let bar = crate::workspace::spinner(&format!("reading {what}"), quiet);
    let view = match target {
        Target::Commit(id) => View::commit(repo.store().as_ref(), id),
        Target::All => View::all(&repo),
    }
    .with_context(|| format!("reading {what}"));
    bar.finish_and_clear();
    let view = view?;
    let options = mount_options(args)?;
    let stop = stop_flag(args)?;
    let mounted = vst_fuse::spawn_repo_mount(repo, view, &mountpoint, &options)
        .with_context(|| mount_hint(&mountpoint, args.allow_other))?;
    serve(mounted, &mountpoint, &what, &stop, &options.error_log, quiet)
}

/// The mount options `args` ask for.
fn mount_options(args: &MountArgs) -> Result<MountOptions> {
    let mut options = MountOptions::default();
    options.threads = args.threads;
    options.sharing = if args.allow_other { Sharing::Everyone } else { Sharing::Owner };
    if let Some(log) = &args.log {
        options.error_log = file_log(log)?;
    }
    Ok(options)
}

/// The flag SIGINT and SIGTERM set to stop serving, registered before
/// mounting: a signal that comes while the mount starts is then seen, not
/// fatal. A detached server also ignores SIGHUP (closing the terminal it
/// was started from must not end it).
fn stop_flag(args: &MountArgs) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("handling signals")?;
    }
    if args.serve_detached {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::new(AtomicBool::new(false)))
            .context("handling signals")?;
    }
    Ok(stop)
}

/// Where `vst mount --write` starts, from `args`: the commit (`--rev`,
/// default `HEAD`'s), what `HEAD` names once mounted, and what becomes of
/// the uncommitted changes the last writable mount left on another commit.
///
/// `HEAD` must name what the mount starts from, since a commit in the
/// mount moves it by compare-and-swap from there: `--rev BRANCH` makes
/// `HEAD` name that branch, and a revision that is neither a branch name
/// nor `HEAD`'s commit detaches `HEAD` at it (as `vst checkout REV` in the
/// mount does), so that commits in the mount move no branch.
pub fn writable_start(repo: &Repo, args: &MountArgs) -> Result<vst_fuse::Start> {
    use vst_cas::Head;
    let head_commit = repo.head_commit()?;
    let (commit, head) = match &args.rev {
        None => (head_commit, None),
        Some(spec) => {
            let commit = crate::rev::resolve(repo, spec)?;
            let current = repo.refs().head().context("reading HEAD")?;
            let head = match branch_named(repo, spec)? {
                Some(branch) => Head::Branch(branch),
                None if Some(commit) == head_commit => current.clone(),
                None => Head::Detached(commit.object_id()),
            };
            (Some(commit), (head != current).then_some(head))
        }
    };
    let left = match (&args.save, args.discard) {
        (_, true) => vst_fuse::Left::Discard,
        (Some(name), false) => {
            let branch = Repo::branch(name).with_context(|| format!("--save {name}"))?;
            if repo.refs().get(&branch)?.is_some() {
                bail!("branch {branch} already exists; give --save a new branch name");
            }
            vst_fuse::Left::SaveAs { branch, author: crate::config::author(None, repo.dir()) }
        }
        (None, false) => vst_fuse::Left::Resume,
    };
    Ok(vst_fuse::Start { commit, left, head })
}

/// The branch `spec` names, if it is a branch's name (not a revision
/// relative to one).
fn branch_named(repo: &Repo, spec: &str) -> Result<Option<vst_cas::RefName>> {
    match vst_cas::RefName::try_from(spec) {
        Ok(name) if !spec.contains('~') && repo.refs().get(&name)?.is_some() => Ok(Some(name)),
        _ => Ok(None),
    }
}

/// `vst mount --write`: mounts a writable working tree of the repository
/// in `repo_dir` as `start` says (see [`writable_start`]), and serves it
/// as [`mount`] does.
pub fn mount_writable(
    repo_dir: &Path,
    start: vst_fuse::Start,
    args: &MountArgs,
    quiet: bool,
) -> Result<ExitCode> {
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    let mut what = match start.commit {
        Some(id) => format!("a writable tree of commit {id}"),
        None => "a writable empty tree".to_owned(),
    };
    match &start.head {
        Some(vst_cas::Head::Branch(b)) => what.push_str(&format!(" (HEAD now names branch {b})")),
        Some(vst_cas::Head::Detached(_)) => {
            what.push_str(" (HEAD detached there: a commit in the mount moves no branch)")
        }
        None => {}
    }
    if args.background && !args.serve_detached {
        // The server resolves the revision itself, as given: a branch name
        // must reach it as one.
        background(repo_dir, None, args, &mountpoint, &what, quiet)?;
        if let (vst_fuse::Left::SaveAs { branch, .. }, false) = (&start.left, quiet) {
            let repo = open_read_only(repo_dir)?;
            if let Some(id) = repo.refs().get(branch)? {
                let id = CommitId::new(id);
                let base = vst::read::read_commit(repo.store().as_ref(), id)
                    .ok()
                    .and_then(|c| c.parents.first().copied());
                print_saved(branch, id, base)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Through the CLI's opening, so that a repository whose objects are
    // remote is opened as such.
    let long_lived = vst_cas::Holder::LongLived;
    let repo = crate::workspace::open_dir_as(repo_dir, vst_cas::Access::ReadWrite, long_lived)
        .with_context(|| {
        format!(
            "opening the repository at {} for writing (a writable mount holds it for as long as it lives: is one already up?)",
            repo_dir.display()
        )
    })?;
    let mut options = mount_options(args)?;
    if args.serve_detached && args.log.is_none() {
        // Nobody reads this server's standard error once it is mounted.
        let state = repo_dir.join("mount");
        fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
        options.error_log = file_log(&state.join("log"))?;
    }
    let stop = stop_flag(args)?;
    let mounted = match vst_fuse::spawn_writable(repo, start, &mountpoint, &options) {
        Err(vst_fuse::Error::Start(e @ vst_fuse::StartError::Uncommitted { base, wanted, .. })) => {
            let wanted = wanted.map_or_else(|| "the empty tree".to_owned(), |c| c.to_string());
            let resume = match base {
                Some(base) => format!(
                    "`--rev {base}` resumes them where they were made (HEAD detached there); "
                ),
                None => String::new(),
            };
            bail!(
                "{e}. Nothing was mounted or changed. Choose: `--save BRANCH` commits them on a new branch BRANCH and mounts {wanted}; {resume}`--discard` drops them"
            )
        }
        other => other.with_context(|| mount_hint(&mountpoint, args.allow_other))?,
    };
    if let (Some(saved), false) = (mounted.saved(), quiet) {
        print_saved(&saved.branch, saved.commit, saved.base)?;
    }
    serve(mounted, &mountpoint, &what, &stop, &options.error_log, quiet)
}

/// Tells where a mount saved the uncommitted changes the last one left.
fn print_saved(branch: &vst_cas::RefName, commit: CommitId, base: Option<CommitId>) -> Result<()> {
    let on = base.map_or_else(|| "the empty tree".to_owned(), |b| format!("commit {b}"));
    writeln!(
        std::io::stdout().lock(),
        "saved the uncommitted changes the last writable mount left on {on} as commit {commit}, on the new branch {branch}"
    )?;
    Ok(())
}

/// A live mount of either kind.
trait Live {
    fn is_finished(&self) -> bool;
    fn unmount(&mut self) -> Result<(), vst_fuse::Error>;
    fn detach(&mut self) -> Result<(), vst_fuse::Error>;
    fn wait(self) -> Result<(), vst_fuse::Error>;
}

impl Live for vst_fuse::Mounted {
    fn is_finished(&self) -> bool {
        vst_fuse::Mounted::is_finished(self)
    }
    fn unmount(&mut self) -> Result<(), vst_fuse::Error> {
        vst_fuse::Mounted::unmount(self)
    }
    fn detach(&mut self) -> Result<(), vst_fuse::Error> {
        vst_fuse::Mounted::detach(self)
    }
    fn wait(self) -> Result<(), vst_fuse::Error> {
        vst_fuse::Mounted::wait(self)
    }
}

impl Live for vst_fuse::WritableMount {
    fn is_finished(&self) -> bool {
        vst_fuse::WritableMount::is_finished(self)
    }
    fn unmount(&mut self) -> Result<(), vst_fuse::Error> {
        vst_fuse::WritableMount::unmount(self)
    }
    fn detach(&mut self) -> Result<(), vst_fuse::Error> {
        vst_fuse::WritableMount::detach(self)
    }
    fn wait(self) -> Result<(), vst_fuse::Error> {
        vst_fuse::WritableMount::wait(self)
    }
}

/// Serves `mounted` until it is unmounted from outside, or a signal asks
/// to unmount it. A mount still in use when the signal comes is detached
/// (it leaves the file tree at once, serves what is open under it, and
/// ends once that is closed), and that is said in `log`: a background
/// server has no terminal, and a signal must not be dropped.
fn serve(
    mut mounted: impl Live,
    mountpoint: &Path,
    what: &str,
    stop: &AtomicBool,
    log: &ErrorLog,
    quiet: bool,
) -> Result<ExitCode> {
    if !quiet {
        writeln!(
            std::io::stdout().lock(),
            "mounted {what} at {}; Ctrl-C or `vst umount {}` unmounts",
            mountpoint.display(),
            mountpoint.display()
        )?;
    }
    let cause = |e: &vst_fuse::Error| {
        std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default()
    };
    let mut detach_failed = false;
    loop {
        if mounted.is_finished() {
            // Unmounted from outside.
            mounted.wait().context("serving the mount")?;
            return Ok(ExitCode::SUCCESS);
        }
        if stop.load(Ordering::SeqCst) {
            let busy = match mounted.unmount() {
                Ok(()) => return Ok(ExitCode::SUCCESS),
                Err(e) => e,
            };
            match mounted.detach() {
                Ok(()) => {
                    log.report(&format!(
                        "asked to stop, but {busy}{}: detached it; this server exits once what uses it is closed",
                        cause(&busy)
                    ));
                    mounted.wait().context("serving the detached mount")?;
                    return Ok(ExitCode::SUCCESS);
                }
                // Tried again at every poll; said once.
                Err(e) if !detach_failed => {
                    detach_failed = true;
                    log.report(&format!(
                        "asked to stop, but {busy}{}, and {e}{}; trying again",
                        cause(&busy),
                        cause(&e)
                    ));
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `vst umount`: `fusermount3 -u`, else `umount`.
pub fn umount(args: &UmountArgs, quiet: bool) -> Result<ExitCode> {
    let mountpoint = absolute(&args.mountpoint)?;
    let mounted = vst_fuse::mount_points().context("reading /proc/self/mountinfo")?;
    if !mounted.contains(&mountpoint) {
        bail!(
            "{} is not a vst mount (`grep fuse.vst /proc/self/mountinfo` lists them)",
            mountpoint.display()
        );
    }
    // A writable mount's server lets go of its repository only after the
    // unmount (it saves the uncommitted tree first): wait for that, so that
    // a command right after this one finds the repository free.
    let held = vst_fuse::control::writable_repo_for(&mountpoint).ok().flatten();
    let mut failures = Vec::new();
    for (program, flag) in [("fusermount3", "-u"), ("umount", "")] {
        let mut command = Command::new(program);
        if !flag.is_empty() {
            command.arg(flag);
        }
        match command.arg("--").arg(&mountpoint).output() {
            Ok(out) if out.status.success() => {
                if let Some(repo_dir) = &held {
                    wait_for_release(repo_dir)?;
                }
                if !quiet {
                    writeln!(std::io::stdout().lock(), "unmounted {}", mountpoint.display())?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr);
                failures.push(said.trim().trim_end_matches('.').to_owned())
            }
            Err(e) => failures.push(format!("{program}: {e}")),
        }
    }
    bail!(
        "cannot unmount {}: {}. If it is busy, close what uses it (`fuser -vm {}` lists it)",
        mountpoint.display(),
        failures.join("; "),
        mountpoint.display()
    )
}

/// How long `vst umount` waits for a writable mount's server to exit.
const RELEASE_WAIT: Duration = Duration::from_secs(60);

/// Waits until no process holds the store lock of the repository in
/// `repo_dir` (a writable mount's server holds it until it exits), taking
/// it the way the store does and letting go at once.
fn wait_for_release(repo_dir: &Path) -> Result<()> {
    use vst_cas::vfs::Vfs as _;
    let lock = repo_dir.join("lock");
    let fs = vst_cas::vfs::RealFs::new();
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match fs.lock(&lock, false) {
            Ok(_taken) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => bail!(
                "unmounted, but the mount server still holds {} after {}s; it may still be saving the uncommitted tree",
                repo_dir.display(),
                RELEASE_WAIT.as_secs()
            ),
            Err(e) => return Err(e).with_context(|| format!("locking {}", lock.display())),
        }
    }
}

/// The mount point, canonical, once it is known to be an existing empty
/// directory that is not already a vst mount.
fn check_mountpoint(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("mount point {shown} does not exist; create it with `mkdir {shown}`")
        }
        Err(e) if e.kind() == ErrorKind::NotConnected => bail!(
            "{shown} is still mounted, but its server is gone; `vst umount {shown}` removes it"
        ),
        Err(e) => return Err(e).with_context(|| format!("mount point {shown}")),
    };
    if !meta.is_dir() {
        bail!("mount point {shown} is not a directory");
    }
    let canonical = path.canonicalize().with_context(|| format!("mount point {shown}"))?;
    if vst_fuse::mount_points().unwrap_or_default().contains(&canonical) {
        bail!("{shown} is already a vst mount; `vst umount {shown}` first");
    }
    let mut entries = fs::read_dir(path).with_context(|| format!("listing {shown}"))?;
    if entries.next().is_some() {
        bail!("mount point {shown} is not empty; mount on an empty directory");
    }
    Ok(canonical)
}

/// `path` made absolute with its parent resolved, without touching `path`
/// itself (a mount whose server died cannot be stat'ed).
fn absolute(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(parent
            .canonicalize()
            .with_context(|| format!("{}: no such directory", parent.display()))?
            .join(name)),
        _ => Ok(abs),
    }
}

fn mount_hint(mountpoint: &Path, allow_other: bool) -> String {
    let shown = mountpoint.display();
    if allow_other {
        format!(
            "mounting at {shown} with --allow-other (an ordinary user needs the line `user_allow_other` in /etc/fuse.conf; root does not)"
        )
    } else if Path::new("/dev/fuse").exists() {
        format!("mounting at {shown} (needs root, or fusermount3 from the fuse3 package)")
    } else {
        format!("mounting at {shown}: /dev/fuse is missing (load the fuse module: `modprobe fuse`)")
    }
}

/// An error log appending one line per error to `path`.
fn file_log(path: &Path) -> Result<ErrorLog> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log {}", path.display()))?;
    let file = Mutex::new(file);
    Ok(ErrorLog::Call(Arc::new(move |line: &str| {
        let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(f, "{line}");
    })))
}

/// Starts this binary again as a detached server and waits until it has
/// the mount up, or reports what it said if it stopped before.
fn background(
    repo_dir: &Path,
    target: Option<Target>,
    args: &MountArgs,
    mountpoint: &Path,
    what: &str,
    quiet: bool,
) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("finding the vst binary to start the server")?;
    let dir = repo_dir.canonicalize().context("resolving the repository directory")?;
    let root = dir.parent().ok_or_else(|| anyhow!("{} has no parent", dir.display()))?;
    let count = |points: Vec<PathBuf>| points.iter().filter(|p| *p == mountpoint).count();
    let before = count(vst_fuse::mount_points().context("reading /proc/self/mountinfo")?);

    let mut command = Command::new(exe);
    command.arg("-C").arg(root).arg("-q").arg("mount").arg(mountpoint);
    match target {
        Some(Target::Commit(id)) => command.arg("--rev").arg(id.to_string()),
        Some(Target::All) => command.arg("--all"),
        None => &mut command,
    };
    if args.write {
        command.arg("--write");
    }
    if args.discard {
        command.arg("--discard");
    }
    if let Some(branch) = &args.save {
        command.arg("--save").arg(branch);
    }
    if let (true, Some(rev)) = (args.write, &args.rev) {
        command.arg("--rev").arg(rev);
    }
    command.arg("--threads").arg(args.threads.to_string()).arg("--serve-detached");
    if args.allow_other {
        command.arg("--allow-other");
    }
    if let Some(log) = &args.log {
        command.arg("--log").arg(std::path::absolute(log).context("the log's path")?);
    }
    // Its own process group, so that Ctrl-C in this terminal does not
    // reach it; no directory kept busy; standard error read here until
    // the mount is up, to report why it failed if it does.
    command
        .process_group(0)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("starting the mount server")?;
    let said = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut stderr) = child.stderr.take() {
        let said = said.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                said.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(&buf[..n]);
            }
        });
    }
    let deadline = Instant::now() + BACKGROUND_START_TIMEOUT;
    loop {
        if count(vst_fuse::mount_points()?) > before {
            break;
        }
        if let Some(status) = child.try_wait().context("waiting for the mount server")? {
            // Let the reader take the last of what it wrote.
            std::thread::sleep(Duration::from_millis(50));
            let said = said.lock().unwrap_or_else(PoisonError::into_inner).clone();
            bail!(
                "the mount server stopped ({status}) before mounting: {}",
                String::from_utf8_lossy(&said).trim()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the mount server did not mount {} within {} s; stopped it",
                mountpoint.display(),
                BACKGROUND_START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !quiet {
        writeln!(
            std::io::stdout().lock(),
            "mounted {what} at {} (server process {}); `vst umount {}` unmounts",
            mountpoint.display(),
            child.id(),
            mountpoint.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The repository in `repo_dir`, read-only: a writable mount holds its
/// lock.
fn open_read_only(repo_dir: &Path) -> Result<Repo> {
    Repo::open_with(Arc::new(vst_cas::vfs::RealFs::new()), repo_dir, vst_cas::Access::ReadOnly)
        .with_context(|| format!("opening the repository at {}", repo_dir.display()))
}

/// The live writable mount of the repository in `repo_dir`, if any.
pub fn writable_mount_of(repo_dir: &Path) -> Option<PathBuf> {
    let repo_dir = repo_dir.canonicalize().ok()?;
    vst_fuse::mount_points().ok()?.into_iter().find(|point| {
        let held = vst_fuse::control::writable_repo_for(point).ok().flatten();
        held.and_then(|r| r.canonicalize().ok()).as_ref() == Some(&repo_dir)
    })
}

/// Warns about the special files (FIFOs, sockets, devices) the daemon
/// skipped, as a status or commit on disk does.
fn warn_skipped(skipped: &[Vec<u8>]) {
    for path in skipped {
        let path = String::from_utf8_lossy(path);
        eprintln!("vst: warning: skipping {path}: not a file, directory or symlink");
    }
}

/// The repository of the writable mount `dir` is in, if any.
pub fn writable_repo(dir: &Path) -> Result<Option<PathBuf>> {
    vst_fuse::control::writable_repo_for(dir)
        .with_context(|| format!("asking the vst mount above {} for its repository", dir.display()))
}

/// Runs `cli`'s command through the daemon of the writable mount the
/// start directory is in, if it is in one and the command is one the
/// daemon serves: `commit`, `status`, `diff` (of the working tree against
/// HEAD: the changed paths, as `--name-status`), `checkout REV` (in place)
/// and `switch NAME`. `None`: run it as usual.
pub fn in_writable_mount(cli: &crate::args::Cli) -> Result<Option<ExitCode>> {
    use crate::args::Command;
    use vst_fuse::control::{ChangeKind, Request, Response, request};
    let served = match &cli.command {
        Command::Commit { paths, .. } => paths.is_empty(),
        Command::Status { paths, .. } => paths.is_empty(),
        Command::Switch { .. } => true,
        Command::Diff { revs, .. } => revs.is_empty(),
        Command::Checkout { into, .. } => into.is_none(),
        Command::Merge { rev, .. } => rev.is_some(),
        _ => false,
    };
    if !served {
        return Ok(None);
    }
    let start = crate::workspace::start_dir(cli)?;
    let Some(repo_dir) = writable_repo(&start)? else { return Ok(None) };
    let socket = repo_dir.join("mount").join("sock");
    let ask = |req: Request| -> Result<Response> {
        match request(&socket, &req).with_context(|| {
            format!(
                "asking the mount daemon at {} (is `vst mount --write` still running?)",
                socket.display()
            )
        })? {
            Response::Error(e) => bail!("the mount daemon: {e}"),
            other => Ok(other),
        }
    };
    let mut out = std::io::stdout().lock();
    // The daemon's kinds in the one vocabulary of `output.rs`.
    let letter = |k: ChangeKind| {
        crate::output::letter(match k {
            ChangeKind::Added => vst::ChangeKind::Added,
            ChangeKind::Removed => vst::ChangeKind::Removed,
            ChangeKind::Modified => vst::ChangeKind::Modified,
            ChangeKind::TypeChanged => vst::ChangeKind::TypeChanged,
        })
    };
    let word = |k: ChangeKind| crate::output::status_word(letter(k));
    match &cli.command {
        Command::Commit { message, allow_empty, author, .. } => {
            let req = Request::Commit {
                message: message.clone(),
                author: crate::config::author(author.clone(), &repo_dir),
                allow_empty: *allow_empty,
            };
            let Response::Committed { commit, tree, hashed, hash_us, total_us, skipped } =
                ask(req)?
            else {
                bail!("the mount daemon answered a commit with something else");
            };
            warn_skipped(&skipped);
            let tree = vst::TreeId::new(vst_cas::ObjectId::from_bytes(tree));
            let commit = commit.map(|c| CommitId::new(vst_cas::ObjectId::from_bytes(c)));
            if cli.json {
                let mut value = serde_json::json!({
                    "commit": commit.map(|c| c.to_string()),
                    "tree": tree.to_string(),
                    "hashed": hashed,
                    "daemon_hash_us": hash_us,
                    "daemon_total_us": total_us,
                });
                if commit.is_none() {
                    value["reason"] = "nothing to commit".into();
                }
                writeln!(out, "{value}")?;
            } else if let Some(id) = commit {
                writeln!(out, "{id}")?;
            } else if !cli.quiet {
                writeln!(out, "nothing to commit: the mount matches HEAD")?;
            }
        }
        Command::Diff { stat, name_status, exit_code, .. } => {
            let Response::Status { base, tree, .. } = ask(Request::Status)? else {
                bail!("the mount daemon answered a status with something else");
            };
            // The daemon stored the mount's tree: diff it from the store
            // against the base, as `vst diff A B` does.
            let repo = open_read_only(&repo_dir)?;
            let tree_id = |t: [u8; 32]| vst::TreeId::new(vst_cas::ObjectId::from_bytes(t));
            let files =
                crate::commands::history::tree_diff(&repo, base.map(tree_id), Some(tree_id(tree)))?;
            drop(out);
            let style = crate::commands::history::DiffStyle {
                stat: *stat,
                name_status: *name_status,
                exit_code: *exit_code,
            };
            return crate::commands::history::print_diff(cli, &files, style).map(Some);
        }
        Command::Status { short, .. } => {
            let Response::Status { changes, stats, skipped, .. } = ask(Request::Status)? else {
                bail!("the mount daemon answered a status with something else");
            };
            warn_skipped(&skipped);
            let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
            if cli.json {
                let list: Vec<_> = changes
                    .iter()
                    .map(|(k, p)| serde_json::json!({ "path": show(p), "status": word(*k) }))
                    .collect();
                let value = serde_json::json!({ "changes": list, "mount": stats });
                writeln!(out, "{value}")?;
                return Ok(Some(ExitCode::SUCCESS));
            }
            if !short && !cli.quiet {
                drop(out);
                crate::commands::worktree::print_status_header(&repo_dir)?;
                out = std::io::stdout().lock();
            }
            if changes.is_empty() {
                if !cli.quiet && !short {
                    writeln!(out, "clean: the mount matches HEAD")?;
                }
            } else {
                for (k, p) in &changes {
                    writeln!(out, "{} {}", letter(*k), show(p))?;
                }
            }
        }
        Command::Checkout { rev, force, .. } | Command::Switch { name: rev, force } => {
            let repo = open_read_only(&repo_dir)?;
            let branch = match vst_cas::RefName::try_from(rev.as_str()) {
                Ok(name) if !rev.contains('~') && repo.refs().get(&name)?.is_some() => {
                    Some(rev.clone())
                }
                _ if matches!(cli.command, Command::Switch { .. }) => bail!(
                    "no branch named {rev}; `vst branch` lists them, `vst branch {rev}` creates it"
                ),
                _ => None,
            };
            let target = crate::rev::resolve(&repo, rev)?;
            let req = Request::Checkout { commit: *target.as_bytes(), branch, force: *force };
            let Response::CheckedOut { changed } = ask(req)? else {
                bail!("the mount daemon answered a checkout with something else");
            };
            if !cli.quiet {
                writeln!(out, "now at {rev}: {changed} paths changed")?;
            }
        }
        Command::Merge { rev: Some(rev), .. } => {
            let repo = open_read_only(&repo_dir)?;
            let theirs = crate::rev::resolve(&repo, rev)?;
            let req = Request::Merge {
                commit: *theirs.as_bytes(),
                message: format!("merge {rev}"),
                author: crate::config::author(None, &repo_dir),
            };
            let Response::Merged { commit, fast_forward, .. } = ask(req)? else {
                bail!("the mount daemon answered a merge with something else");
            };
            drop(out);
            use crate::commands::merge::Outcome;
            let id = |c: [u8; 32]| CommitId::new(vst_cas::ObjectId::from_bytes(c));
            let outcome = match commit {
                None => Outcome::UpToDate,
                Some(c) if fast_forward => Outcome::FastForward(id(c)),
                Some(c) => Outcome::Merged(id(c)),
            };
            return crate::commands::merge::report(cli, rev, &outcome).map(Some);
        }
        _ => return Ok(None),
    }
    Ok(Some(ExitCode::SUCCESS))
}
