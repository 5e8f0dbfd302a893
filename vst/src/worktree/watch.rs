//! Watching the work tree with inotify: the set of paths that changed
//! since a token, so that a status, snapshot or commit looks at those
//! paths only ([`super::WorkTree::watch`]).
//!
//! A watcher over-approximates and never under-approximates: a path it
//! names that did not change costs a `lstat`; a change it could have missed
//! makes the next query answer [`Changes::Everything`] with the reason.
//! The rules, each of which a test holds:
//!
//! - **Every directory is watched before it is read.** A new directory
//!   (created, or moved in from outside the tree) is watched, then listed
//!   to watch its subdirectories, and reported whole: the scan walks it,
//!   so files created in it before its watch existed are found.
//! - **Renames need no pairing to be right.** The old path and the new one
//!   are each reported when their event arrives; a directory moved within
//!   the tree has its watches moved with it (the new subtree is watched
//!   again, which the kernel answers with the same watch descriptors), and
//!   one moved out of the tree (an `IN_MOVED_FROM` that no `IN_MOVED_TO`
//!   follows before the next query) loses its watches. Events are read in
//!   the order the kernel queued them, so an event from inside a moved
//!   directory that arrives before its move is resolved names a path that
//!   the move's report covers.
//! - **A lost event costs a full scan, never a wrong answer.** A queue
//!   overflow (`IN_Q_OVERFLOW`: more than `fs.inotify.max_queued_events`
//!   unread) or an unmounted filesystem re-watches the whole tree and makes
//!   the next query look at everything; a directory that cannot be watched
//!   (`fs.inotify.max_user_watches` reached) makes every query look at
//!   everything until a re-watch succeeds (each query tries again).
//! - **A query sees every change made before it.** It creates a cookie
//!   file in `.vst/watch/` and waits until the watcher has read that
//!   file's event: everything queued before it has been read by then.
//! - **Ignored directories cost nothing**: `.vst/` (ours or a nested
//!   repository's) and directories `.vstignore` excludes are not watched;
//!   ignored paths that changed, and the ignored directories, are answered
//!   apart ([`Changes::Paths::ignored`]): the caller looks at those the
//!   index tracks (ignoring never drops what was committed), which for
//!   build output is none. A changed `.vstignore` is reported (the scan
//!   then walks its directory) and its directory's watches are redone
//!   under the new rules.
//!
//! What inotify cannot see is not seen: writes through a hard link from
//! outside the tree, writes through a shared `mmap` (until the file is
//! closed), and changes made on another machine to a network filesystem.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::io::Errno;

use super::scan::{IGNORE_FILE, IgnoreChain, is_repo_dir};
use crate::RepoPath;
use crate::error::{Error, Result};

/// The directory in the repository where queries write their cookies.
pub const COOKIE_DIR: &str = "watch";

/// How long a query waits for its cookie's event before it gives up and
/// answers [`Changes::Everything`] ([`FullScan::NoAnswer`]): slower, never
/// wrong.
pub const COOKIE_WAIT_MAX: Duration = Duration::from_secs(10);

/// What a watch asks the kernel to report for each directory.
const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);

/// Why a query has to look at the whole tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullScan {
    /// The token is not from this watcher (its first query, or a token
    /// from before the work tree's index was replaced).
    NewWatcher,
    /// The kernel's event queue overflowed: events were lost.
    Overflow,
    /// A filesystem below the root was unmounted.
    Unmounted,
    /// A directory could not be watched.
    CannotWatch {
        /// The directory.
        dir: PathBuf,
        /// Why, for a person.
        reason: String,
    },
    /// The watcher stopped: it cannot vouch for anything.
    Stopped(String),
    /// The query's cookie did not come back within [`COOKIE_WAIT_MAX`].
    NoAnswer,
}

impl std::fmt::Display for FullScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NewWatcher => f.write_str("the watcher has no earlier answer to build on"),
            Self::Overflow => f.write_str(
                "the kernel's inotify queue overflowed (raise fs.inotify.max_queued_events)",
            ),
            Self::Unmounted => f.write_str("a filesystem in the work tree was unmounted"),
            Self::CannotWatch { dir, reason } => {
                write!(f, "cannot watch {}: {reason}", dir.display())
            }
            Self::Stopped(why) => write!(f, "the watcher stopped: {why}"),
            Self::NoAnswer => f.write_str("the watcher did not answer in time"),
        }
    }
}

/// A point in a watcher's history: what a query answered up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchToken {
    instance: u64,
    seq: u64,
}

/// What changed since a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// These paths (a directory with everything below it), and nothing
    /// else.
    Paths {
        /// What changed.
        changed: Vec<RepoPath>,
        /// Ignored paths that changed, and ignored directories (which are
        /// not watched): they matter only where the index tracks them
        /// (ignoring never drops what was committed), which the caller
        /// knows.
        ignored: Vec<RepoPath>,
    },
    /// Anything may have changed: look at everything.
    Everything(FullScan),
}

/// What a watcher holds, for `vst watch --status`.
#[derive(Debug, Clone)]
pub struct WatchStats {
    /// Directories watched.
    pub dirs: usize,
    /// Paths recorded as changed and not yet forgotten.
    pub changed: usize,
    /// Why queries look at everything now, if they do.
    pub broken: Option<FullScan>,
}

/// Tells the watchers of one process apart.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// A running watcher: a thread reading inotify events into the set of
/// changed paths. Dropping it stops the thread and removes the watches.
pub struct Watcher {
    shared: Arc<Shared>,
    instance: u64,
    /// An eventfd that wakes the thread to stop.
    wake: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    cookie_dir: PathBuf,
    cookie_next: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a cookie's event has been read, events were lost,
    /// or the thread stopped.
    seen: Condvar,
}

#[derive(Default)]
struct State {
    /// Counts what was recorded; a token is a value of it.
    seq: u64,
    /// Each changed path and the `seq` of its last change.
    changed: HashMap<RepoPath, u64>,
    /// The same for ignored paths.
    ignored_changed: HashMap<RepoPath, u64>,
    /// Ignored directories, not watched.
    unwatched: HashSet<RepoPath>,
    /// A token older than this may have missed events...
    valid_from: u64,
    /// ... for this reason.
    lost: Option<FullScan>,
    /// Set while the watcher cannot vouch for anything.
    broken: Option<FullScan>,
    /// What is older than this was forgotten.
    forgotten: u64,
    /// Cookies whose events have been read, with their `seq`.
    cookies: HashMap<Vec<u8>, u64>,
    dirs: usize,
}

impl State {
    fn record(&mut self, path: RepoPath) {
        self.seq += 1;
        self.changed.insert(path, self.seq);
    }

    fn record_ignored(&mut self, path: RepoPath) {
        self.seq += 1;
        self.ignored_changed.insert(path, self.seq);
    }

    /// Every earlier token is stale, for `why`.
    fn invalidate(&mut self, why: FullScan) {
        self.seq += 1;
        self.valid_from = self.seq;
        self.lost = Some(why);
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Watcher {
    /// Watches the work tree at `root`, whose repository directory is
    /// `repo_dir`: every directory is watched when this returns. The first
    /// query answers [`Changes::Everything`].
    pub fn start(root: &Path, repo_dir: &Path) -> Result<Self> {
        let fail = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |e: Errno| Error::WorkTreeIo { op, path, source: e.into() }
        };
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(fail("start watching", root))?;
        let cookie_dir = repo_dir.join(COOKIE_DIR);
        std::fs::create_dir_all(&cookie_dir).map_err(|source| Error::RepoIo {
            op: "create",
            path: cookie_dir.clone(),
            source,
        })?;
        let cookie_wd = inotify::add_watch(&fd, &cookie_dir, WatchFlags::CREATE)
            .map_err(fail("watch", &cookie_dir))?;
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), seen: Condvar::new() });
        // Watched as what it is: a root given through a symlink would
        // otherwise not be a directory to `IN_DONT_FOLLOW`.
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
        let mut inner = Inner {
            root: root.clone(),
            fd: Arc::new(fd),
            shared: shared.clone(),
            dirs: HashMap::new(),
            cookie_wd,
            moved_out: HashMap::new(),
        };
        {
            let mut state = lock(&shared);
            if let Err(why) =
                inner.watch_tree(&mut state, &RepoPath::root(), IgnoreChain::default())
            {
                state.broken = Some(why);
            }
            state.dirs = inner.dirs.len();
        }
        let wake = Arc::new(
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
                .map_err(fail("start watching", &root))?,
        );
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("vst-watch".into())
            .spawn(move || inner.run(&thread_wake))
            .map_err(|source| Error::WorkTreeIo {
                op: "start the watcher thread for",
                path: root.to_owned(),
                source,
            })?;
        Ok(Self {
            shared,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            wake,
            thread: Some(thread),
            cookie_dir,
            cookie_next: AtomicU64::new(0),
        })
    }

    /// What changed since `token` (`None`: since before this watcher),
    /// and the token of this answer. Every change made before the call is
    /// in the answer; a change made during it may be too. A watcher has
    /// one consumer: what is older than `token` is forgotten (a later
    /// query with an older token is answered [`Changes::Everything`]).
    pub fn changes_since(&self, token: Option<WatchToken>) -> (Changes, WatchToken) {
        let (at, failed) = self.sync();
        let mut state = lock(&self.shared);
        let now = WatchToken { instance: self.instance, seq: at.unwrap_or(state.seq) };
        let everything = |why| (Changes::Everything(why), now);
        if let Some(why) = failed {
            return everything(why);
        }
        if let Some(why) = &state.broken {
            return everything(why.clone());
        }
        let since = match token {
            Some(t) if t.instance == self.instance => t.seq,
            _ => return everything(FullScan::NewWatcher),
        };
        if since < state.valid_from {
            return everything(state.lost.clone().unwrap_or(FullScan::Overflow));
        }
        if since < state.forgotten {
            return everything(FullScan::NewWatcher);
        }
        let after = |map: &HashMap<RepoPath, u64>| -> Vec<RepoPath> {
            map.iter().filter(|(_, s)| **s > since).map(|(p, _)| p.clone()).collect()
        };
        let changed = after(&state.changed);
        let mut ignored = after(&state.ignored_changed);
        ignored.extend(state.unwatched.iter().cloned());
        state.changed.retain(|_, s| *s > since);
        state.ignored_changed.retain(|_, s| *s > since);
        state.forgotten = since;
        (Changes::Paths { changed, ignored }, now)
    }

    /// Writes a cookie and waits for its event: the `seq` it was read at,
    /// or why not.
    fn sync(&self) -> (Option<u64>, Option<FullScan>) {
        let n = self.cookie_next.fetch_add(1, Ordering::Relaxed);
        let name = format!("cookie-{}-{}-{n}", std::process::id(), self.instance);
        let path = self.cookie_dir.join(&name);
        // An overflow while the cookie is on its way may have dropped its
        // event: the query then stops waiting (it looks at everything).
        let epoch = lock(&self.shared).valid_from;
        if let Err(e) = std::fs::File::create_new(&path) {
            let why = format!("cannot write the cookie {}: {e}", path.display());
            return (None, Some(FullScan::Stopped(why)));
        }
        let deadline = Instant::now() + COOKIE_WAIT_MAX;
        let mut state = lock(&self.shared);
        let answer = loop {
            if let Some(seq) = state.cookies.remove(name.as_bytes()) {
                break (Some(seq), None);
            }
            if let Some(why @ FullScan::Stopped(_)) = &state.broken {
                break (None, Some(why.clone()));
            }
            if state.valid_from != epoch {
                break (None, Some(state.lost.clone().unwrap_or(FullScan::Overflow)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break (None, Some(FullScan::NoAnswer));
            }
            state = self
                .shared
                .seen
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(state);
        let _ = std::fs::remove_file(&path);
        answer
    }

    /// Stops the watcher from reading events while the guard lives (the
    /// kernel queues them meanwhile): lets a test make the queue overflow
    /// whatever the machine's speed.
    #[doc(hidden)]
    pub fn hold_events(&self) -> impl Drop + '_ {
        lock(&self.shared)
    }

    /// What the watcher holds now.
    pub fn stats(&self) -> WatchStats {
        let state = lock(&self.shared);
        WatchStats { dirs: state.dirs, changed: state.changed.len(), broken: state.broken.clone() }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A watched directory.
struct Dir {
    path: RepoPath,
    /// The ignore rules above it (without its own `.vstignore`).
    outer: IgnoreChain,
    /// With its own.
    chain: IgnoreChain,
}

/// The thread's side: the inotify descriptor and the watch table.
struct Inner {
    root: PathBuf,
    fd: Arc<OwnedFd>,
    shared: Arc<Shared>,
    dirs: HashMap<i32, Dir>,
    cookie_wd: i32,
    /// Directories moved away (`IN_MOVED_FROM`), by rename cookie, with
    /// the watches they and their subdirectories had: if no `IN_MOVED_TO`
    /// comes before the next query, they left the tree, and those watches
    /// go (only those: a new directory may have the old one's path).
    moved_out: HashMap<u32, Vec<(i32, RepoPath)>>,
}

/// Room for many events per read (each is 16 bytes and a name).
const EVENT_BUF_LEN: usize = 64 << 10;

impl Inner {
    fn run(mut self, wake: &OwnedFd) {
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); EVENT_BUF_LEN];
        let stopped = loop {
            use rustix::event::{PollFd, PollFlags};
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN), PollFd::new(wake, PollFlags::IN)];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => break format!("waiting for events: {e}"),
            }
            if !fds[1].revents().is_empty() {
                return;
            }
            if let Err(e) = self.read_events(&mut buf) {
                break format!("reading events: {e}");
            }
        };
        let mut state = lock(&self.shared);
        state.broken = Some(FullScan::Stopped(stopped));
        self.shared.seen.notify_all();
    }

    /// Reads and records what is queued.
    fn read_events(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> rustix::io::Result<()> {
        let shared = self.shared.clone();
        let mut state = lock(&shared);
        let mut reader = inotify::Reader::new(self.fd.clone(), buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            };
            let (wd, mask, cookie) = (event.wd(), event.events(), event.cookie());
            let name = event.file_name().map(|n| n.to_bytes().to_vec());
            self.handle(&mut state, wd, mask, cookie, name.as_deref());
        }
        state.dirs = self.dirs.len();
        Ok(())
    }

    fn handle(
        &mut self,
        state: &mut State,
        wd: i32,
        mask: ReadFlags,
        cookie: u32,
        name: Option<&[u8]>,
    ) {
        if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            return self.rewatch_all(state, FullScan::Overflow);
        }
        if mask.contains(ReadFlags::UNMOUNT) {
            return self.rewatch_all(state, FullScan::Unmounted);
        }
        if wd == self.cookie_wd {
            if let Some(name) = name {
                self.cookie(state, name);
            }
            return;
        }
        if mask.contains(ReadFlags::IGNORED) {
            // The directory is gone (or its watch was removed): its
            // parent's event reported it.
            self.dirs.remove(&wd);
            return;
        }
        let Some(dir) = self.dirs.get(&wd) else { return };
        let Some(name) = name else {
            if dir.path.is_root() && mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
            {
                let why = "the work tree's root was moved or removed".to_owned();
                state.broken = Some(FullScan::Stopped(why));
            }
            return;
        };
        if is_repo_dir(name) {
            return;
        }
        let is_dir = mask.contains(ReadFlags::ISDIR);
        let is_ignore_file = name == IGNORE_FILE.as_bytes();
        let full =
            self.root.join(OsStr::from_bytes(dir.path.as_bytes())).join(OsStr::from_bytes(name));
        let ignored = !is_ignore_file && dir.chain.ignored(&full, is_dir);
        let Ok(path) = crate::Name::try_from(name).and_then(|n| dir.path.join(&n)) else {
            // A name no tree can hold: the scan of its directory says so.
            state.record(dir.path.clone());
            return;
        };
        if is_dir && mask.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
            // Gone from here: no ignored directory below it is left to
            // report (one moved within the tree is found again where it
            // arrives).
            state.unwatched.retain(|p| !p.starts_with(&path));
        }
        if ignored {
            // Not watched below; the caller looks only where the index
            // tracks it.
            if is_dir && mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                state.unwatched.insert(path.clone());
            }
            state.record_ignored(path);
            return;
        }
        let (parent, outer, chain) = (dir.path.clone(), dir.outer.clone(), dir.chain.clone());
        if is_ignore_file {
            // What is ignored below changed: the scan walks the directory,
            // and its watches are redone under the new rules.
            state.record(path);
            self.rewatch(state, &parent, outer);
            return;
        }
        if is_dir && mask.contains(ReadFlags::MOVED_FROM) {
            let watches = self.below(&path).into_iter().map(|wd| (wd, self.dirs[&wd].path.clone()));
            let watches = watches.collect();
            self.moved_out.insert(cookie, watches);
        }
        if is_dir && mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            self.moved_out.remove(&cookie);
            self.rewatch(state, &path, chain);
        }
        state.record(path);
    }

    /// A query's cookie was read: everything queued before it has been.
    fn cookie(&mut self, state: &mut State, name: &[u8]) {
        if !name.starts_with(b"cookie-") {
            return;
        }
        // A directory moved away with no arrival queued before the cookie
        // left the tree: its watches go.
        for (_, watches) in std::mem::take(&mut self.moved_out) {
            for (wd, path) in watches {
                // Still where the move found it (not re-watched elsewhere).
                if self.dirs.get(&wd).is_some_and(|d| d.path == path) {
                    self.dirs.remove(&wd);
                    let _ = inotify::remove_watch(&*self.fd, wd);
                }
            }
        }
        // A watcher that could not watch everything tries again at each
        // query (the limit may have been raised).
        if let Some(why @ FullScan::CannotWatch { .. }) = state.broken.clone() {
            self.rewatch_all(state, why);
        }
        state.seq += 1;
        state.cookies.insert(name.to_vec(), state.seq);
        state.dirs = self.dirs.len();
        self.shared.seen.notify_all();
    }

    /// Events were lost: every directory is watched again (the kernel
    /// keeps the descriptors of those still watched) and every earlier
    /// token is stale.
    fn rewatch_all(&mut self, state: &mut State, why: FullScan) {
        state.invalidate(why);
        // Queries waiting for a cookie whose event may be lost stop.
        self.shared.seen.notify_all();
        self.moved_out.clear();
        let old: HashSet<i32> = self.dirs.drain().map(|(wd, _)| wd).collect();
        state.unwatched.clear();
        let watched = self.watch_tree(state, &RepoPath::root(), IgnoreChain::default());
        // A stopped watcher (its root gone) stays stopped.
        if !matches!(state.broken, Some(FullScan::Stopped(_))) {
            state.broken = watched.err();
        }
        for wd in old.into_iter().filter(|wd| !self.dirs.contains_key(wd)) {
            let _ = inotify::remove_watch(&self.fd, wd);
        }
    }

    /// Watches `path` and everything below it again, under the ignore
    /// rules `outer` above it; watches below it that are no longer wanted
    /// (now ignored, or moved away) go. A failure makes queries look at
    /// everything.
    fn rewatch(&mut self, state: &mut State, path: &RepoPath, outer: IgnoreChain) {
        let old: Vec<i32> = self.below(path);
        for wd in &old {
            self.dirs.remove(wd);
        }
        state.unwatched.retain(|p| !p.starts_with(path));
        if let Err(why) = self.watch_tree(state, path, outer) {
            state.broken = Some(why);
        }
        for wd in old.into_iter().filter(|wd| !self.dirs.contains_key(wd)) {
            let _ = inotify::remove_watch(&self.fd, wd);
        }
        // A directory that went out and came back (to this path or
        // another) keeps the watches it has again: they are no longer the
        // leaving directory's to remove.
        let live: HashSet<i32> = self.below(path).into_iter().collect();
        for watches in self.moved_out.values_mut() {
            watches.retain(|(wd, _)| !live.contains(wd));
        }
    }

    /// The watches at and below `path`.
    fn below(&self, path: &RepoPath) -> Vec<i32> {
        self.dirs.iter().filter(|(_, d)| d.path.starts_with(path)).map(|(wd, _)| *wd).collect()
    }

    /// Watches the directory `path` and every directory below it that is
    /// neither ignored nor a repository, each before it is listed.
    fn watch_tree(
        &mut self,
        state: &mut State,
        path: &RepoPath,
        outer: IgnoreChain,
    ) -> Result<(), FullScan> {
        let mut stack = vec![(path.clone(), outer)];
        while let Some((path, outer)) = stack.pop() {
            let full = self.root.join(OsStr::from_bytes(path.as_bytes()));
            let cannot = |reason: String| FullScan::CannotWatch { dir: full.clone(), reason };
            let wd = match inotify::add_watch(&self.fd, &full, MASK) {
                Ok(wd) => wd,
                // Gone already, or not a directory: its parent's event
                // reports it (the root has no parent to).
                Err(Errno::NOENT | Errno::NOTDIR) if !path.is_root() => continue,
                Err(Errno::NOSPC) => {
                    return Err(cannot(
                        "the inotify watch limit is reached (raise fs.inotify.max_user_watches)"
                            .into(),
                    ));
                }
                Err(e) => return Err(cannot(e.to_string())),
            };
            let entries = match std::fs::read_dir(&full) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(cannot(e.to_string())),
            };
            let mut subdirs = Vec::new();
            let mut has_ignore_file = false;
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let name = entry.file_name();
                let name = name.as_bytes();
                has_ignore_file |= name == IGNORE_FILE.as_bytes();
                if !is_repo_dir(name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    subdirs.push(name.to_vec());
                }
            }
            // An ignore file that cannot be read ignores nothing here: more
            // is watched, and the scan reports the file.
            let chain = outer.enter(&full, has_ignore_file).unwrap_or_else(|_| outer.clone());
            for name in subdirs {
                let sub_full = full.join(OsStr::from_bytes(&name));
                let Ok(sub) = crate::Name::try_from(&name[..]).and_then(|n| path.join(&n)) else {
                    // The scan refuses it; nothing to watch below.
                    continue;
                };
                if chain.ignored(&sub_full, true) {
                    state.unwatched.insert(sub);
                } else {
                    stack.push((sub, chain.clone()));
                }
            }
            self.dirs.insert(wd, Dir { path, outer, chain });
        }
        Ok(())
    }
}
