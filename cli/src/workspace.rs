//! Finding and opening the repository a command runs in: where to start,
//! the settings the library takes from the environment, and the errors
//! that tell a user what to do.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vst::repo::Location;
use vst::worktree::{ProgressEvent, WorkTree};
use vst::{Repo, RepoPath};
use vst_cas::Access;

use crate::args::Cli;

/// The local cache's limit with `init --store` unless `--cache-mib` says
/// otherwise, in MiB.
pub const CACHE_MIB_DEFAULT: u64 = 1024;

/// The directory a command starts in: `-C DIR` (resolved, so that `-C
/// typo` fails instead of finding the repository around the current
/// directory), else the current directory.
pub fn start_dir(cli: &Cli) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    match &cli.dir {
        Some(dir) => cwd
            .join(dir)
            .canonicalize()
            .with_context(|| format!("-C {}: no such directory", dir.display())),
        None => Ok(cwd),
    }
}

/// The settings the library asks for (the object store's endpoint and
/// credentials): the environment.
pub fn settings(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Finds the repository containing the start directory (or, inside a
/// writable mount, the mount's repository).
pub fn find(cli: &Cli) -> Result<Location> {
    let start = start_dir(cli)?;
    match Repo::discover(&start) {
        Ok(location) => Ok(location),
        Err(vst::Error::NotARepository { .. }) => {
            if let Some(repo_dir) = crate::mount::writable_repo(&start)? {
                let root = repo_dir.parent().unwrap_or(&repo_dir).to_owned();
                return Ok(Location { root, repo_dir });
            }
            bail!(
                "{} is not in a vst repository (no .vst here or above); create one with `vst init`",
                start.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the repository in `repo_dir`: its pack store, or the object store
/// `.vst/store` names, refusing a format this vst does not know; a writer
/// waits a while for another brief writer (a commit, a GC).
pub fn open_dir(repo_dir: &Path, access: Access) -> Result<Repo> {
    open_dir_as(repo_dir, access, vst_cas::Holder::Brief)
}

/// [`open_dir`] for a writer of the given kind: a brief one waits up to
/// `LOCK_WAIT_DEFAULT` for another brief one; the mount's daemon is
/// long-lived, and nobody waits for it.
pub fn open_dir_as(repo_dir: &Path, access: Access, holder: vst_cas::Holder) -> Result<Repo> {
    if let Ok(url) = std::fs::read_to_string(repo_dir.join(crate::remote::CLONING_MARKER)) {
        let root = repo_dir.parent().unwrap_or(repo_dir);
        bail!(
            "{} is an unfinished clone of {}; run `vst clone {} {}` again to finish it",
            root.display(),
            url.trim(),
            url.trim(),
            root.display()
        );
    }
    let pack = vst_cas::PackOptions {
        lock_wait: vst_cas::pack::LOCK_WAIT_DEFAULT,
        holder,
        ..Default::default()
    };
    let options = vst::repo::OpenOptions { access, settings: &settings, pack };
    let opened = Repo::open_configured(repo_dir, &options);
    if let Err(vst::Error::Store(vst_cas::StoreError::Locked { .. })) = &opened
        && let Some(point) = crate::mount::writable_mount_of(repo_dir)
    {
        bail!(
            "the repository at {} is held by its writable mount at {}: run this inside the mount (commit, status, diff, checkout and switch go to its daemon), or `vst umount {}` first",
            repo_dir.display(),
            point.display(),
            point.display()
        );
    }
    if let Err(e @ vst::Error::UnsupportedFormat { .. }) = opened {
        return Err(anyhow::Error::new(e).context("upgrade vst to use this repository"));
    }
    opened.with_context(|| format!("opening the repository at {}", repo_dir.display()))
}

/// Opens the repository of `location` to change refs only (branches,
/// tags): for writing, or, while a writable mount's daemon holds the
/// repository (so no GC can run), for reading; refs have locks of their
/// own and need no writer's lock.
pub fn open_for_refs(location: &Location) -> Result<Repo> {
    if crate::mount::writable_mount_of(&location.repo_dir).is_some() {
        return open(location, Access::ReadOnly);
    }
    open(location, Access::ReadWrite)
}

/// Opens the repository of `location`.
pub fn open(location: &Location, access: Access) -> Result<Repo> {
    open_dir(&location.repo_dir, access)
}

/// Opens the work tree of `location`.
pub fn open_worktree(location: &Location, access: Access) -> Result<WorkTree> {
    let repo = open(location, access)?;
    WorkTree::open(repo, &location.root)
        .with_context(|| format!("reading the index of {}", location.root.display()))
}

/// Saves the index; it only saves work, so a failure is a warning.
pub fn save_index(worktree: &mut WorkTree) {
    if let Err(e) = worktree.save() {
        eprintln!("vst: warning: could not save the index (the next scan rehashes more): {e:#}");
    }
}

/// Paths named on the command line, relative to the start directory, as
/// paths in the work tree at `root`.
pub fn repo_paths(cli: &Cli, root: &Path, given: &[PathBuf]) -> Result<Vec<RepoPath>> {
    use std::os::unix::ffi::OsStrExt;
    let start = start_dir(cli)?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    given
        .iter()
        .map(|p| {
            let full = lexical_normal(&start.join(p));
            let rel = full.strip_prefix(&root).with_context(|| {
                format!("{} is outside the work tree {}", p.display(), root.display())
            })?;
            RepoPath::try_from(rel.as_os_str().as_bytes())
                .with_context(|| format!("{} is not a path vst can store", p.display()))
        })
        .collect()
}

/// `path` with `.` and `..` components resolved lexically.
fn lexical_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A progress bar for the library's progress events, drawn only on a
/// terminal (indicatif hides itself otherwise) and only for work large
/// enough to be worth watching.
pub struct Bar {
    /// `None` with `quiet`: events cost nothing then.
    bar: Option<indicatif::ProgressBar>,
    /// The length the bar was last given, so that an event takes the bar's
    /// lock only to move it (every file of an import sends one, from all
    /// cores).
    len: std::sync::atomic::AtomicU64,
    /// The phase and length the bar shows, changed under this lock only:
    /// a scan's total grows while it reads, and events from two threads
    /// must not leave the bar at the smaller length.
    shown: std::sync::Mutex<(&'static str, u64)>,
}

/// Below this many files, no bar is drawn.
const BAR_FILES_MIN: u64 = 1000;

impl Bar {
    /// A bar that shows nothing until events say there is enough to show,
    /// and never with `quiet`.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        let (len, shown) = (std::sync::atomic::AtomicU64::new(0), std::sync::Mutex::new(("", 0)));
        Self { bar, len, shown }
    }

    /// Records one event (from any thread).
    pub fn event(&self, event: ProgressEvent) {
        let Some(bar) = &self.bar else { return };
        let (message, done, total) = match event {
            ProgressEvent::Hashed { done, total } => ("hashing", done, total),
            ProgressEvent::Written { done, total } => ("writing", done, total),
        };
        if total < BAR_FILES_MIN {
            return;
        }
        if self.len.load(std::sync::atomic::Ordering::Relaxed) != total {
            let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
            // A new phase starts over; within one, the length only grows.
            if shown.0 != message || shown.1 < total {
                *shown = (message, total);
                bar.set_length(total);
                bar.set_message(message);
                self.len.store(total, std::sync::atomic::Ordering::Relaxed);
            }
        }
        bar.set_position(done);
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A spinner with the elapsed time for a long operation that does not
/// report its progress; draws nothing when stderr is not a terminal, or
/// with `quiet`.
pub fn spinner(message: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("a valid template"),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
