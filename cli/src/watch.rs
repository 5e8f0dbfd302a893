//! `vst watch`: a daemon that holds the work tree's index in memory with
//! an inotify watcher (`vst::worktree::watch`), so that `vst status`,
//! `vst diff` and `vst commit` ask it over `.vst/watch.sock` and pay for
//! what changed only.
//!
//! A client never trusts a daemon it cannot reach: no socket, a refused
//! connection, a daemon of another protocol version, or one that stops
//! while answering, and the command scans as it would without one. The
//! daemon itself re-reads the index when another process committed or
//! checked out, and its watcher answers "everything" whenever it may have
//! missed an event, so a running daemon never gives a wrong answer either.
//!
//! One request per connection: a frame is `"VSW"`, [`PROTOCOL_VERSION`],
//! `len: u32 LE` and a postcard payload; requests are served one at a time.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vst::worktree::{Empty, ScanOptions, WorkTree};
use vst::{CommitOptions, RepoPath};
use vst_cas::Access;

use crate::args::Cli;
use crate::commands::history::{FileDiff, worktree_diff};
use crate::commands::worktree::{CommitReport, StatusReport, commit_in, status_in};
use crate::output::out;
use crate::workspace::{find, open_dir};

/// `vst watch`'s options.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// Start the daemon in the background; return once it answers.
    #[arg(long, conflicts_with_all = ["stop", "status"])]
    background: bool,
    /// Stop the daemon.
    #[arg(long, conflicts_with = "status")]
    stop: bool,
    /// Whether a daemon runs, and what it watches (exit status 1: none).
    #[arg(long)]
    status: bool,
}

/// The daemon's socket, in the repository directory.
pub const SOCKET: &str = "watch.sock";

/// Held (flock) by the running daemon: one per work tree.
const LOCK: &str = "watch.lock";

/// Where a daemon started with `--background` writes its errors.
const LOG: &str = "watch.log";

/// The version of the requests and responses below: bumped whenever
/// either changes shape.
const PROTOCOL_VERSION: u8 = 3;

const FRAME_MAGIC: [u8; 3] = *b"VSW";

/// The longest frame either side accepts (a diff of many files).
const FRAME_LEN_MAX: u32 = 1 << 30;

/// How long `--background` waits for the daemon's first answer (its first
/// full scan of a large tree included).
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// How long `--stop` waits for the daemon to be gone.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// `vst status [PATH...]`.
    Status {
        /// The paths to look at (bytes), or the watcher's.
        paths: Option<Vec<Vec<u8>>>,
        /// New files larger than this are listed apart (`None`: no limit).
        new_file_len_max: Option<u64>,
    },
    /// `vst diff [REV]` against the working directory.
    Diff {
        /// The revision (default: the commit the files are at).
        rev: Option<String>,
        /// New files larger than this are left out (`None`: no limit).
        new_file_len_max: Option<u64>,
    },
    /// `vst commit`.
    Commit {
        /// The message.
        message: String,
        /// The author.
        author: String,
        /// Commit even if nothing changed.
        allow_empty: bool,
        /// The paths to look at (bytes), or the watcher's.
        paths: Option<Vec<Vec<u8>>>,
        /// New files larger than this are left out (`None`: no limit).
        new_file_len_max: Option<u64>,
    },
    /// `vst watch --status`.
    Info,
    /// `vst watch --stop`.
    Stop,
}

/// The daemon's answer.
#[derive(Serialize, Deserialize)]
pub enum Response {
    /// A status.
    Status(StatusReport),
    /// A diff.
    Diff(Vec<FileDiff>),
    /// A commit.
    Committed(CommitReport),
    /// What the daemon does.
    Info(Info),
    /// The daemon stops.
    Stopping,
    /// The request failed; why, for a person.
    Error(String),
}

/// What `vst watch --status` reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct Info {
    pid: u32,
    root: PathBuf,
    dirs: usize,
    changed: usize,
    broken: Option<String>,
    served: u64,
}

/// Paths for a request.
pub fn wire_paths(paths: Option<&[RepoPath]>) -> Option<Vec<Vec<u8>>> {
    paths.map(|paths| paths.iter().map(|p| p.as_bytes().to_vec()).collect())
}

fn from_wire(paths: Option<Vec<Vec<u8>>>) -> Result<Option<Vec<RepoPath>>> {
    paths
        .map(|paths| {
            paths.iter().map(|p| RepoPath::try_from(&p[..]).map_err(anyhow::Error::from)).collect()
        })
        .transpose()
}

fn write_frame(stream: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    let payload = postcard::to_allocvec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= FRAME_LEN_MAX)
        .ok_or_else(|| std::io::Error::other("frame too long"))?;
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&FRAME_MAGIC);
    bytes.push(PROTOCOL_VERSION);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&payload);
    stream.write_all(&bytes)
}

/// Why a frame was not read.
enum FrameError {
    /// The other side speaks another version (or is no vst daemon).
    Version(String),
    /// The connection broke, or the bytes make no sense.
    Io(std::io::Error),
}

fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut impl Read) -> Result<T, FrameError> {
    let mut header = [0; 8];
    stream.read_exact(&mut header).map_err(FrameError::Io)?;
    if header[..3] != FRAME_MAGIC || header[3] != PROTOCOL_VERSION {
        return Err(FrameError::Version(format!(
            "the watch daemon speaks another protocol (version {}, this vst speaks {PROTOCOL_VERSION}): it was started by another build of vst; `vst watch --stop` and start it again",
            header[3]
        )));
    }
    let len = u32::from_le_bytes(header[4..].try_into().expect("four bytes"));
    if len > FRAME_LEN_MAX {
        return Err(FrameError::Io(std::io::Error::other("frame too long")));
    }
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).map_err(FrameError::Io)?;
    postcard::from_bytes(&payload)
        .map_err(|e| FrameError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// The socket's address: its path, or, when that is too long for a Unix
/// socket address (108 bytes), the same file through `/proc/self/fd` and
/// the repository directory held open.
fn socket_path(repo_dir: &Path) -> std::io::Result<(PathBuf, Option<std::fs::File>)> {
    let path = repo_dir.join(SOCKET);
    if path.as_os_str().len() < 100 {
        return Ok((path, None));
    }
    let dir = std::fs::File::open(repo_dir)?;
    use std::os::fd::AsRawFd;
    Ok((PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())), Some(dir)))
}

fn connect(repo_dir: &Path) -> std::io::Result<UnixStream> {
    let (path, _dir) = socket_path(repo_dir)?;
    UnixStream::connect(path)
}

/// Asks the work tree's daemon, if one runs: `None` if none can answer
/// (the caller then scans itself), else its answer; an error it reports
/// is an error of the command.
pub fn ask(repo_dir: &Path, request: &Request) -> Option<Result<Response>> {
    let mut stream = connect(repo_dir).ok()?;
    if write_frame(&mut stream, request).is_err() {
        return None;
    }
    match read_frame(&mut stream) {
        Ok(Response::Error(e)) => Some(Err(anyhow!(e))),
        Ok(response) => Some(Ok(response)),
        Err(FrameError::Version(why)) => {
            eprintln!("vst: note: {why}; scanning instead");
            None
        }
        Err(FrameError::Io(e)) => {
            eprintln!("vst: note: the watch daemon did not answer ({e}); scanning instead");
            None
        }
    }
}

/// `vst watch [--background | --stop | --status]`.
pub fn watch_cmd(cli: &Cli, args: &WatchArgs) -> Result<ExitCode> {
    let start = crate::workspace::start_dir(cli)?;
    if crate::mount::writable_repo(&start)?.is_some() {
        bail!("this is a writable mount: it tracks its changes itself, no watcher is needed");
    }
    let ws = find(cli)?;
    if args.status {
        return status(cli, &ws.repo_dir, &ws.root);
    }
    if args.stop {
        return stop(cli, &ws.repo_dir, &ws.root);
    }
    if args.background {
        return background(cli, &ws.repo_dir, &ws.root);
    }
    serve(&ws.repo_dir, &ws.root)
}

fn status(cli: &Cli, repo_dir: &Path, root: &Path) -> Result<ExitCode> {
    let info = match ask(repo_dir, &Request::Info) {
        Some(answer) => match answer? {
            Response::Info(info) => Some(info),
            _ => bail!("the watch daemon answered --status with something else"),
        },
        None => None,
    };
    if cli.json {
        let value = match &info {
            Some(i) => json!({
                "running": true, "pid": i.pid, "root": i.root, "dirs": i.dirs,
                "changed": i.changed, "full_scan": i.broken, "served": i.served,
            }),
            None => json!({ "running": false, "root": root }),
        };
        writeln!(out(), "{value}")?;
    } else {
        match &info {
            Some(i) => {
                writeln!(
                    out(),
                    "watching {} (daemon process {}): {} directories, {} paths changed since the last answer, {} requests served",
                    i.root.display(),
                    i.pid,
                    i.dirs,
                    i.changed,
                    i.served
                )?;
                if let Some(why) = &i.broken {
                    writeln!(out(), "every answer scans the whole tree: {why}")?;
                }
            }
            None => writeln!(out(), "no watch daemon runs for {}", root.display())?,
        }
    }
    Ok(if info.is_some() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Whether the daemon's lock is free (no daemon runs).
fn lock_free(repo_dir: &Path) -> Result<bool> {
    let path = repo_dir.join(LOCK);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    Ok(file.try_lock().is_ok())
}

fn stop(cli: &Cli, repo_dir: &Path, root: &Path) -> Result<ExitCode> {
    match ask(repo_dir, &Request::Stop) {
        Some(answer) => {
            answer?;
        }
        None => {
            if cli.json {
                writeln!(out(), "{}", json!({ "root": root, "stopped": false, "running": false }))?;
            } else if !cli.quiet {
                writeln!(out(), "no watch daemon runs for {}", root.display())?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !lock_free(repo_dir)? {
        if Instant::now() > deadline {
            bail!(
                "the watch daemon said it stops, but still runs after {} s",
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if cli.json {
        writeln!(out(), "{}", json!({ "root": root, "stopped": true, "running": false }))?;
    } else if !cli.quiet {
        writeln!(out(), "stopped watching {}", root.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn background(cli: &Cli, repo_dir: &Path, root: &Path) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    if !lock_free(repo_dir)? {
        bail!("a watch daemon already runs for {} (`vst watch --status`)", root.display());
    }
    let exe = std::env::current_exe().context("finding the vst binary to start the daemon")?;
    let log_path = repo_dir.join(LOG);
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    // Its own process group, so that Ctrl-C in this terminal does not
    // reach it; no directory kept busy.
    let mut child = Process::new(exe)
        .arg("-C")
        .arg(root)
        .arg("watch")
        .process_group(0)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the watch daemon")?;
    let deadline = Instant::now() + START_TIMEOUT;
    let pid = loop {
        if let Some(Ok(Response::Info(info))) = ask(repo_dir, &Request::Info) {
            break info.pid;
        }
        if let Some(status) = child.try_wait().context("waiting for the watch daemon")? {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("the watch daemon stopped ({status}) before answering: {}", said.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the watch daemon did not answer within {} s; stopped it",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if cli.json {
        writeln!(out(), "{}", json!({ "root": root, "running": true, "pid": pid }))?;
    } else if !cli.quiet {
        writeln!(
            out(),
            "watching {} (daemon process {pid}); `vst watch --stop` stops it",
            root.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon: watches, then answers until stopped (`--stop`, SIGTERM,
/// SIGINT, SIGHUP).
fn serve(repo_dir: &Path, root: &Path) -> Result<ExitCode> {
    let lock_path = repo_dir.join(LOCK);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!("a watch daemon already runs for {} (`vst watch --status`)", root.display());
    }
    let mut store_seen = store_stamp(repo_dir);
    let repo = open_dir(repo_dir, Access::ReadOnly)?;
    let mut worktree = WorkTree::open(repo, root)
        .with_context(|| format!("reading the index of {}", root.display()))?;
    worktree.watch().with_context(|| format!("watching {}", root.display()))?;
    // The first answer looks at everything: given before anyone asks.
    status_in(&mut worktree, &ScanOptions::default())?;
    let (path, _dir) = socket_path(repo_dir)?;
    // Only the holder of the lock gets here: a socket left is stale.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("listening on {}", repo_dir.join(SOCKET).display()))?;
    let daemon = Arc::new(Mutex::new(Daemon { worktree, pending: None }));
    let socket = repo_dir.join(SOCKET);
    {
        // A signal stops the daemon between two requests.
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .context("handling signals")?;
        let (daemon, socket) = (daemon.clone(), socket.clone());
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                let mut daemon = daemon.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = std::fs::remove_file(&socket);
                daemon.save();
                std::process::exit(0);
            }
        });
    }
    let mut served = 0u64;
    loop {
        let pending = daemon.lock().unwrap_or_else(PoisonError::into_inner).pending.is_some();
        let Some(mut stream) = next_client(&listener, pending)? else {
            // Idle with a save pending: now.
            daemon.lock().unwrap_or_else(PoisonError::into_inner).save();
            continue;
        };
        let request: Request = match read_frame(&mut stream) {
            Ok(request) => request,
            Err(FrameError::Version(why)) => {
                let _ = write_frame(&mut stream, &Response::Error(why));
                continue;
            }
            Err(FrameError::Io(_)) => continue,
        };
        served += 1;
        let mut daemon = daemon.lock().unwrap_or_else(PoisonError::into_inner);
        let stop = matches!(request, Request::Stop);
        let (response, committed) =
            match answer(&mut daemon, repo_dir, request, served, &mut store_seen) {
                Ok(answered) => answered,
                Err(e) => (Response::Error(format!("{e:#}")), false),
            };
        if stop {
            // Gone before the client hears so, so that what it runs next
            // scans by itself.
            let _ = std::fs::remove_file(&socket);
            daemon.save();
        }
        // A client that went away does not stop the daemon.
        let _ = write_frame(&mut stream, &response);
        drop(stream);
        if committed {
            after_commit(&mut daemon.worktree, repo_dir, &mut store_seen);
            if daemon.pending.is_none() {
                daemon.save();
            }
        }
        if stop {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the daemon waits for the next request before it saves the
/// index a commit changed: back-to-back commits (a build tool's steps)
/// pay for one save, not one each. Readers of the index wait meanwhile
/// (the daemon holds the index lock from the answer on).
const SAVE_IDLE: Duration = Duration::from_millis(50);

/// The next client; with a save pending, `None` once [`SAVE_IDLE`] passes
/// without one.
fn next_client(listener: &UnixListener, pending: bool) -> Result<Option<UnixStream>> {
    if !pending {
        loop {
            match listener.accept() {
                Ok((stream, _)) => return Ok(Some(stream)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("accepting a connection"),
            }
        }
    }
    listener.set_nonblocking(true).context("polling the socket")?;
    let deadline = Instant::now() + SAVE_IDLE;
    let got = loop {
        match listener.accept() {
            Ok((stream, _)) => break Some(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => break None,
        }
    };
    listener.set_nonblocking(false).context("polling the socket")?;
    if let Some(stream) = &got {
        stream.set_nonblocking(false).context("reading a request")?;
    }
    Ok(got)
}

/// The daemon's state: the work tree, and the index lock it holds from a
/// commit's answer until the index is saved.
struct Daemon {
    worktree: WorkTree,
    pending: Option<vst::worktree::index::IndexLock>,
}

impl Daemon {
    /// Saves the index (under the lock already held, if a commit left one).
    fn save(&mut self) {
        let saved = match self.pending.take() {
            Some(lock) => self.worktree.save_locked(lock),
            None => self.worktree.save(),
        };
        if let Err(e) = saved {
            eprintln!(
                "vst: warning: could not save the index (the next scan rehashes more): {e:#}"
            );
        }
    }
}

/// What says whether the local store changed since it was opened: its
/// index file's identity, length and mtime (every object a ref can reach
/// is in that file before the ref moves; GC replaces the file). `None`
/// for a store that is not a local pack store: opened for every request.
fn store_stamp(repo_dir: &Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(repo_dir.join("index")).ok()?;
    Some((meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()))
}

/// What follows a commit, once it is answered (or failed): the writable
/// store goes (its lock with it) and the read-only one comes back.
fn after_commit(
    worktree: &mut WorkTree,
    repo_dir: &Path,
    store_seen: &mut Option<(u64, u64, i64, i64)>,
) {
    // (The stamp first: a store changed in between is opened again at the
    // next request.)
    *store_seen = store_stamp(repo_dir);
    match open_dir(repo_dir, Access::ReadOnly) {
        Ok(repo) => drop(worktree.replace_repo(repo)),
        Err(e) => {
            // Kept until the next request opens it again.
            *store_seen = None;
            eprintln!("vst: warning: could not open the repository again: {e:#}");
        }
    }
}

/// Answers one request; says whether it committed (the writable store is
/// then still open: [`after_commit`]). A commit leaves the index lock in
/// `daemon.pending` (taken before the answer, so that every reader of the
/// index waits for the save).
fn answer(
    daemon: &mut Daemon,
    repo_dir: &Path,
    request: Request,
    served: u64,
    store_seen: &mut Option<(u64, u64, i64, i64)>,
) -> Result<(Response, bool)> {
    let Daemon { worktree, pending } = daemon;
    // A commit or checkout by another process: the index is read again
    // (and the next answer looks at everything). A save this daemon still
    // owes goes first, or its lock would keep the reload from reading (the
    // save itself is skipped: the file is no longer the one it read).
    if worktree.changed_elsewhere()? {
        if let Some(lock) = pending.take() {
            let _ = worktree.save_locked(lock);
        }
        worktree.reload_if_changed()?;
    }
    let reopen = |access| open_dir(repo_dir, access);
    // Opened again when another process stored something since, so that
    // what it stored can be read.
    let mut refresh = |worktree: &mut WorkTree| -> Result<()> {
        let now = store_stamp(repo_dir);
        if now.is_none() || now != *store_seen {
            worktree.replace_repo(reopen(Access::ReadOnly)?);
            *store_seen = now;
        }
        Ok(())
    };
    let mut committed = false;
    let response = match request {
        Request::Status { paths, new_file_len_max } => {
            refresh(worktree)?;
            let paths = from_wire(paths)?;
            let scan =
                ScanOptions { changed: paths.as_deref(), new_file_len_max, ..Default::default() };
            Response::Status(status_in(worktree, &scan)?)
        }
        Request::Diff { rev, new_file_len_max } => {
            refresh(worktree)?;
            let scan = ScanOptions { new_file_len_max, ..Default::default() };
            Response::Diff(worktree_diff(worktree, rev.as_deref(), &scan)?)
        }
        Request::Commit { message, author, allow_empty, paths, new_file_len_max } => {
            let paths = from_wire(paths)?;
            let scan =
                ScanOptions { changed: paths.as_deref(), new_file_len_max, ..Default::default() };
            let options = CommitOptions { author, message, ..Default::default() };
            let empty = if allow_empty { Empty::Allow } else { Empty::Skip };
            // The repository's write lock only while committing (it goes
            // once the answer is sent: see `after_commit`).
            worktree.replace_repo(reopen(Access::ReadWrite)?);
            let report = commit_in(worktree, &options, empty, &scan);
            // Taken before the answer: what the client runs next reads the
            // index only once it is saved. (Held already if a save waits.)
            let lock = match pending {
                Some(_) => Ok(()),
                None => worktree.lock_index().map(|lock| *pending = Some(lock)),
            };
            match report {
                Ok(report) => {
                    // The commit is made: a lock that cannot be had before
                    // the answer only means the index is saved after it.
                    if let Err(e) = lock {
                        eprintln!("vst: warning: could not take the index lock: {e:#}");
                    }
                    committed = true;
                    Response::Committed(report)
                }
                Err(e) => {
                    drop(lock);
                    after_commit(worktree, repo_dir, store_seen);
                    return Err(e);
                }
            }
        }
        Request::Info => {
            let stats = worktree.watcher().map(|w| w.stats());
            Response::Info(Info {
                pid: std::process::id(),
                root: worktree.root().to_owned(),
                dirs: stats.as_ref().map_or(0, |s| s.dirs),
                changed: stats.as_ref().map_or(0, |s| s.changed),
                broken: stats.and_then(|s| s.broken).map(|why| why.to_string()),
                served,
            })
        }
        Request::Stop => Response::Stopping,
    };
    Ok((response, committed))
}
