//! `vst-fuse`: read-only FUSE mounts of vst commits.
//!
//! A [`View`] is what the mount shows: the tree of one commit
//! ([`View::commit`]), or every branch and every commit of a repository
//! ([`View::all`]: `branches/NAME/...` and `commits/ID/...`). [`mount`]
//! serves it in the calling thread until it is unmounted; [`spawn_mount`]
//! returns a [`Mounted`] handle once the mount is live, and unmounts when
//! told to or dropped.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! let repo = vst::Repo::open_with(
//!     std::sync::Arc::new(vst_cas::vfs::RealFs::new()),
//!     Path::new("project/.vst"),
//!     vst_cas::Access::ReadOnly,
//! )?;
//! let head = repo.head_commit()?.ok_or("no commit yet")?;
//! let view = vst_fuse::View::commit(repo.store().as_ref(), head)?;
//! let mut mounted =
//!     vst_fuse::spawn_mount(repo.store(), view, Path::new("/mnt/x"), &Default::default())?;
//! // ... read /mnt/x ...
//! mounted.unmount()?;
//! # Ok(()) }
//! ```
//!
//! Everything under a mount is immutable, so the kernel is told to cache
//! entries, attributes, listings, link targets and pages for
//! [`MountOptions::ttl`]. Trees are read from the store when a directory
//! is first looked into, file content by range when it is read. A missing
//! or corrupt object fails only the file or directory that needs it, with
//! `EIO`, and is reported to [`MountOptions::error_log`]. Every request
//! that would change something fails with `EROFS`.

#![forbid(unsafe_code)]

pub mod control;
mod follow;
mod fs;
mod inodes;
mod journal;
mod kernel;
mod put_batch;
mod write;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vst::{CommitId, Repo, TreeId, read};
use vst_cas::{RefName, Store};

use crate::fs::VstFs;
use crate::write::{Settler, Shared, WriteFs};

pub use crate::write::{
    CheckoutError, Committed, Left, MountStats, Saved, Start, StartError, StatusLine, XATTR_REPO,
};

/// What a mount shows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum View {
    /// One tree; every time in it is `time`.
    Tree {
        /// The root directory.
        root: TreeId,
        /// The time of every file and directory (a commit's time).
        time: SystemTime,
    },
    /// `branches/NAME/...`, each branch's head tree (a name with `/` is
    /// nested directories), and `commits/ID/...`, every commit reachable
    /// from those heads by its full id. Each commit's files carry its time.
    All {
        /// The branches and their head commits.
        branches: Vec<(RefName, CommitId)>,
    },
}

impl View {
    /// The tree of commit `id`, with the commit's time.
    pub fn commit(store: &dyn Store, id: CommitId) -> Result<Self, Error> {
        let commit = read::read_commit(store, id).map_err(|source| Error::Commit { id, source })?;
        Ok(View::Tree { root: commit.tree, time: kernel::system_time(commit.time) })
    }

    /// Every branch of `repo` as it is now, and every commit they reach.
    /// The view does not follow later commits: remount to see them.
    pub fn all(repo: &Repo) -> Result<Self, Error> {
        let branches = repo.refs().list().map_err(|source| Error::Refs { source })?;
        Ok(View::All {
            branches: branches.into_iter().map(|(name, id)| (name, CommitId::new(id))).collect(),
        })
    }
}

/// Who may use a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Only the user who mounted it (FUSE's default).
    #[default]
    Owner,
    /// Every user (`allow_other`; an unprivileged user needs
    /// `user_allow_other` in `/etc/fuse.conf`). Permissions are still
    /// checked against the modes shown.
    Everyone,
}

/// Where the mount reports what it could not read.
#[derive(Clone, Default)]
pub enum ErrorLog {
    /// One line on standard error per failure. The one place this library
    /// writes output: a mount daemon has no caller to return errors to. A
    /// failed write is ignored, never a panic.
    #[default]
    Stderr,
    /// Nowhere.
    Discard,
    /// To a function, one line per call (without a newline).
    Call(Arc<dyn Fn(&str) + Send + Sync>),
}

impl ErrorLog {
    /// Writes one line (`message`, without a newline) where this log goes;
    /// for what a mount's owner must know but no caller can be told.
    pub fn report(&self, message: &str) {
        self.write(message);
    }

    fn write(&self, message: &str) {
        match self {
            ErrorLog::Stderr => {
                use std::io::Write;
                let _ = writeln!(io::stderr().lock(), "vst-fuse: {message}");
            }
            ErrorLog::Discard => {}
            ErrorLog::Call(f) => f(message),
        }
    }
}

impl std::fmt::Debug for ErrorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorLog::Stderr => "Stderr",
            ErrorLog::Discard => "Discard",
            ErrorLog::Call(_) => "Call(..)",
        })
    }
}

/// How the kernel may cache entries and attributes by default: a day.
/// Nothing under a mount ever changes, so any length is correct; this one
/// keeps the kernel's caches from holding entries for ever.
pub const TTL_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// Default number of threads serving requests; see
/// [`MountOptions::threads`].
pub const THREADS_DEFAULT: usize = 2;

/// Most threads a mount may serve requests with.
pub const THREADS_MAX: usize = 64;

/// How to mount.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MountOptions {
    /// Threads serving requests, each on its own clone of the FUSE
    /// device ([`THREADS_DEFAULT`]; clamped to 1..=[`THREADS_MAX`]).
    pub threads: usize,
    /// Who may use the mount.
    pub sharing: Sharing,
    /// How long the kernel may cache entries (names, including names that
    /// do not exist) and attributes.
    pub ttl: Duration,
    /// Where read errors go.
    pub error_log: ErrorLog,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            threads: THREADS_DEFAULT,
            sharing: Sharing::Owner,
            ttl: TTL_DEFAULT,
            error_log: ErrorLog::Stderr,
        }
    }
}

/// What went wrong mounting, serving or unmounting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The commit to mount cannot be read.
    #[error("cannot read commit {id}")]
    Commit {
        /// The commit.
        id: CommitId,
        /// Why.
        #[source]
        source: vst::Error,
    },
    /// The branches cannot be listed.
    #[error("cannot list the branches")]
    Refs {
        /// Why.
        #[source]
        source: vst_cas::RefError,
    },
    /// The kernel refused the mount, or the FUSE session did not start.
    #[error("cannot mount at {}", mountpoint.display())]
    Mount {
        /// Where.
        mountpoint: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Serving requests failed (the FUSE device broke).
    #[error("the mount at {} failed while serving", mountpoint.display())]
    Serve {
        /// Where.
        mountpoint: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel refused to unmount (most often: a file or directory
    /// under it is still in use).
    #[error("cannot unmount {}", mountpoint.display())]
    Unmount {
        /// Where.
        mountpoint: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The writable mount's state could not be opened.
    #[error("cannot start the writable mount")]
    Start(#[from] StartError),
    /// The control socket could not be opened.
    #[error("cannot open the control socket {}", path.display())]
    Control {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A thread serving the mount panicked (a bug).
    #[error("a thread serving {} panicked", mountpoint.display())]
    Panicked {
        /// Where.
        mountpoint: PathBuf,
    },
}

/// Whether a mount may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadOnly,
    ReadWrite,
}

fn config(options: &MountOptions, mode: Mode) -> fuser::Config {
    use fuser::MountOption;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        if mode == Mode::ReadOnly { MountOption::RO } else { MountOption::RW },
        MountOption::DefaultPermissions,
        MountOption::FSName("vst".to_owned()),
        // As a plain option (not `Subtype`) so that it reaches the kernel
        // when fuser mounts by itself, not only through fusermount3: the
        // mount shows as `fuse.vst`.
        MountOption::CUSTOM("subtype=vst".to_owned()),
    ];
    config.acl = acl(options.sharing);
    config.n_threads = Some(options.threads.clamp(1, THREADS_MAX));
    // Each thread reads its own clone of the device (FUSE_DEV_IOC_CLONE).
    config.clone_fd = true;
    config
}

/// Who fuser lets through, for `sharing`.
fn acl(sharing: Sharing) -> fuser::SessionACL {
    match sharing {
        Sharing::Owner => fuser::SessionACL::Owner,
        Sharing::Everyone => fuser::SessionACL::All,
    }
}

/// Mounts `view` at `mountpoint` and serves it in this thread until it is
/// unmounted (`vst umount`, `fusermount3 -u`, `umount`).
pub fn mount(
    store: Arc<dyn Store>,
    view: View,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<(), Error> {
    let canonical = mountpoint
        .canonicalize()
        .map_err(|source| Error::Mount { mountpoint: mountpoint.to_owned(), source })?;
    let session =
        session(VstFs::new(store, view, None, options), &canonical, options, Mode::ReadOnly)?;
    session.run().map_err(|source| Error::Serve { mountpoint: canonical, source })
}

/// Mounts `view` at `mountpoint` and serves it from background threads.
/// Returns once the mount is live: the kernel has opened the session, and
/// a path under `mountpoint` resolves through it.
pub fn spawn_mount(
    store: Arc<dyn Store>,
    view: View,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<Mounted, Error> {
    spawn_read_only(VstFs::new(store, view, None, options), mountpoint, options)
}

/// Mounts `view` of `repo` as [`spawn_mount`] does, following the store:
/// once `vst gc` has rewritten it, the mount moves to the new packs (if
/// they hold what it serves), so that the old ones' space returns while it
/// is mounted. Takes `repo` so that nothing else holds the old packs open.
/// A repository whose objects are in an object store is not followed.
pub fn spawn_repo_mount(
    repo: Repo,
    view: View,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<Mounted, Error> {
    let roots = match &view {
        View::Tree { root, .. } => vec![root.object_id()],
        View::All { branches } => branches.iter().map(|(_, head)| head.object_id()).collect(),
    };
    let follow = follow::Follow::new(&repo, roots);
    let store = repo.store();
    drop(repo);
    spawn_read_only(VstFs::new(store, view, follow, options), mountpoint, options)
}

fn spawn_read_only(fs: VstFs, mountpoint: &Path, options: &MountOptions) -> Result<Mounted, Error> {
    let mount_err = |source| Error::Mount { mountpoint: mountpoint.to_owned(), source };
    let canonical = mountpoint.canonicalize().map_err(mount_err)?;
    let session = session(fs, &canonical, options, Mode::ReadOnly)?;
    let session = session.spawn().map_err(mount_err)?;
    Ok(Mounted { session: Some(session), mountpoint: canonical })
}

/// Mounts a writable working tree of `repo` at `mountpoint`, served from
/// background threads, with its control socket in `.vst/mount/sock`.
/// The tree is the uncommitted tree the last writable mount of `repo`
/// left (its journal in `.vst/mount/`) if it holds changes on `start`'s
/// commit, else the tree of that commit; changes on another commit are
/// refused, dropped or saved as [`Start::left`] says. Once mounted, `HEAD`
/// names [`Start::head`] if given. `repo` must be open for writing: the
/// mount holds the store's lock while it lives.
pub fn spawn_writable(
    repo: Repo,
    start: Start,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<WritableMount, Error> {
    let mount_err = |source| Error::Mount { mountpoint: mountpoint.to_owned(), source };
    let canonical = mountpoint.canonicalize().map_err(mount_err)?;
    // Short: the kernel asks again after a second. Every change but a
    // checkout goes through the kernel, and a checkout invalidates what
    // it changes.
    let ttl = options.ttl.min(WRITABLE_TTL_MAX);
    let shared = Arc::new(Shared::open(repo, &start, options.error_log.clone(), ttl)?);
    // The socket first: once the mount shows, a `vst` inside it finds its
    // daemon.
    let server = control::Server::start(shared.clone())
        .map_err(|source| Error::Control { path: shared.socket_path(), source })?;
    let fs = WriteFs { shared: shared.clone() };
    let session = session(fs, &canonical, options, Mode::ReadWrite)?;
    // A session made from a descriptor leaves its mount behind when
    // dropped: what fails from here unmounts it. `HEAD` moves only once
    // the mount is made.
    let started = (|| {
        if let Some(head) = &start.head {
            shared.point_head(head)?;
        }
        let _ = shared.notifier.set(session.notifier());
        let settler = Settler::start(shared.clone()).map_err(mount_err)?;
        Ok::<_, Error>(settler)
    })();
    let settler = match started {
        Ok(settler) => settler,
        Err(e) => {
            drop(session);
            let _ = unmount(&canonical, Lazy::Yes);
            return Err(e);
        }
    };
    let session = match session.spawn() {
        Ok(session) => session,
        Err(e) => {
            let _ = unmount(&canonical, Lazy::Yes);
            return Err(mount_err(e));
        }
    };
    Ok(WritableMount {
        saved: shared.saved.clone(),
        mounted: Mounted { session: Some(session), mountpoint: canonical },
        server: Some(server),
        settler: Some(settler),
    })
}

/// The longest the kernel may cache entries and attributes of a writable
/// mount.
pub const WRITABLE_TTL_MAX: Duration = Duration::from_secs(1);

/// A live writable mount: the FUSE session and the control socket. An
/// orderly unmount saves the uncommitted tree (the journal, compacted)
/// for the next mount.
#[derive(Debug)]
pub struct WritableMount {
    mounted: Mounted,
    server: Option<control::Server>,
    /// Finalizes closed files and hashes trees in the background.
    settler: Option<Settler>,
    saved: Option<Saved>,
}

impl WritableMount {
    /// Where it is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        self.mounted.mountpoint()
    }

    /// Whether the serving threads have stopped (unmounted from outside).
    pub fn is_finished(&self) -> bool {
        self.mounted.is_finished()
    }

    /// Where the uncommitted changes the last mount left on another commit
    /// went, if this mount saved them ([`Left::SaveAs`]).
    pub fn saved(&self) -> Option<&Saved> {
        self.saved.as_ref()
    }

    /// Unmounts, waits for the uncommitted tree to be saved, and closes
    /// the control socket. Fails, leaving the mount live, while something
    /// under it is in use.
    pub fn unmount(&mut self) -> Result<(), Error> {
        self.mounted.unmount()?;
        self.server.take();
        self.settler.take();
        Ok(())
    }

    /// Detaches the mount (a lazy unmount), busy or not: it leaves the
    /// file tree at once, and its threads serve what is still open under
    /// it; then [`WritableMount::wait`] returns once the last of it is
    /// closed and the uncommitted tree is saved.
    pub fn detach(&mut self) -> Result<(), Error> {
        self.mounted.detach()
    }

    /// Waits until the mount is unmounted from outside (or detached and
    /// no longer used).
    pub fn wait(mut self) -> Result<(), Error> {
        let result = self.mounted.join();
        self.server.take();
        self.settler.take();
        result
    }
}

/// Mounts `fs` at `mountpoint` (canonical) and opens the FUSE session:
/// when privileged, with mount(2) here; otherwise through fuser, which
/// runs `fusermount3`.
///
/// Why not always through fuser: the session fuser mounts unmounts its
/// mount point again when it is dropped, even after an unmount from
/// outside (fuser 0.18 takes a dead connection for a live one), and by
/// then the same path may hold a new mount: `vst umount D; vst mount D`
/// lost the new mount that way. A session made from a descriptor owns no
/// mount, and [`Mounted`] unmounts only while its own session serves. The
/// unprivileged path keeps that race; see ARCHITECTURE.md.
fn session<FS: fuser::Filesystem>(
    fs: FS,
    mountpoint: &Path,
    options: &MountOptions,
    mode: Mode,
) -> Result<fuser::Session<FS>, Error> {
    let mount_err = |source| Error::Mount { mountpoint: mountpoint.to_owned(), source };
    let config = config(options, mode);
    match mount_privileged(mountpoint, options, mode) {
        Ok(fd) => fuser::Session::from_fd(fs, fd, config.acl, config).map_err(|e| {
            let _ = unmount(mountpoint, Lazy::Yes);
            mount_err(e)
        }),
        Err(nix::errno::Errno::EPERM) => {
            fuser::Session::new(fs, mountpoint, &config).map_err(mount_err)
        }
        Err(e) => Err(mount_err(io::Error::from(e))),
    }
}

/// Opens `/dev/fuse` and mounts it at `mountpoint` with mount(2) (read-only
/// unless `mode` says otherwise); `EPERM` when not privileged.
fn mount_privileged(
    mountpoint: &Path,
    options: &MountOptions,
    mode: Mode,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::MetadataExt as _;

    use nix::mount::MsFlags;
    let io_errno = |e: io::Error| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
    let root_mode = std::fs::metadata(mountpoint).map_err(io_errno)?.mode();
    // Opened close-on-exec (std does), so no child inherits it.
    let device =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").map_err(io_errno)?;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={},default_permissions,subtype=vst",
        device.as_raw_fd(),
        root_mode & nix::libc::S_IFMT,
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if options.sharing == Sharing::Everyone {
        data.push_str(",allow_other");
    }
    // A writable mount keeps device nodes made in it usable, as a local
    // disk does (making one takes CAP_MKNOD, which the kernel checks
    // before asking us; a tree never holds one). A user mount through
    // fusermount3 is always `nodev`.
    let mut flags = MsFlags::MS_NOSUID;
    if mode == Mode::ReadOnly {
        flags |= MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    }
    nix::mount::mount(Some("vst"), mountpoint, Some("fuse"), flags, Some(data.as_str()))?;
    Ok(device.into())
}

/// A live mount served from background threads. Dropping it unmounts
/// (lazily, if something under it is still in use) without reporting
/// errors; [`Mounted::unmount`] reports them.
#[derive(Debug)]
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl Mounted {
    /// Where it is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the serving threads have stopped: the mount was unmounted
    /// from outside (`vst umount`), or failed.
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts and waits for the serving threads to stop. If the kernel
    /// refuses (something under the mount is in use), this is
    /// [`Error::Unmount`] and the mount stays live: close what uses it and
    /// call this again.
    pub fn unmount(&mut self) -> Result<(), Error> {
        let Some(session) = &self.session else { return Ok(()) };
        if !session.guard.is_finished() {
            unmount(&self.mountpoint, Lazy::No)?;
        }
        self.join()
    }

    /// Detaches the mount (a lazy unmount), busy or not: it leaves the
    /// file tree at once, and the threads serve what is still open under
    /// it until the last of it is closed; [`Mounted::wait`] waits for that.
    pub fn detach(&mut self) -> Result<(), Error> {
        match &self.session {
            Some(session) if !session.guard.is_finished() => unmount(&self.mountpoint, Lazy::Yes),
            _ => Ok(()),
        }
    }

    /// Waits until the mount is unmounted from outside (or detached and
    /// no longer used).
    pub fn wait(mut self) -> Result<(), Error> {
        self.join()
    }

    fn join(&mut self) -> Result<(), Error> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let mountpoint = self.mountpoint.clone();
        match session.guard.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::Serve { mountpoint, source }),
            Err(_) => Err(Error::Panicked { mountpoint }),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let Some(session) = &self.session else { return };
        if session.guard.is_finished() || unmount(&self.mountpoint, Lazy::No).is_ok() {
            let _ = self.join();
        } else if unmount(&self.mountpoint, Lazy::Yes).is_ok() {
            // Detached: the threads serve what is still open under it and
            // stop when the last of it is closed. Not joined here, so that
            // dropping never blocks on another process.
            self.session = None;
        }
    }
}

/// Whether to detach a busy mount rather than fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lazy {
    No,
    Yes,
}

/// Unmounts `mountpoint`: with umount2(2) when privileged, else through
/// `fusermount3 -u`.
fn unmount(mountpoint: &Path, lazy: Lazy) -> Result<(), Error> {
    use nix::mount::{MntFlags, umount2};
    let err = |source| Error::Unmount { mountpoint: mountpoint.to_owned(), source };
    let flags = if lazy == Lazy::Yes { MntFlags::MNT_DETACH } else { MntFlags::empty() };
    match umount2(mountpoint, flags) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let mut command = Command::new("fusermount3");
            command.arg("-u").arg("-q");
            if lazy == Lazy::Yes {
                command.arg("-z");
            }
            let out = command.arg("--").arg(mountpoint).output().map_err(err)?;
            if out.status.success() {
                Ok(())
            } else {
                Err(err(io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned())))
            }
        }
        Err(e) => Err(err(io::Error::from(e))),
    }
}

/// The mount points of every vst mount this process can see (from
/// `/proc/self/mountinfo`).
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    // procfs reports no size, so `fs::read` would start from a 32-byte
    // read and double: one system call for a whole table of mounts.
    let mut info = Vec::with_capacity(64 << 10);
    std::io::Read::read_to_end(&mut std::fs::File::open("/proc/self/mountinfo")?, &mut info)?;
    Ok(info.split(|&b| b == b'\n').filter_map(parse_mountinfo_line).collect())
}

/// The mount point of a line of `/proc/self/mountinfo` if it is a vst
/// mount: type `fuse.vst`, or `fuse` with source `vst`.
fn parse_mountinfo_line(line: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let dash = fields.iter().position(|f| *f == b"-")?;
    let fstype = *fields.get(dash + 1)?;
    let source = *fields.get(dash + 2)?;
    let ours = fstype == b"fuse.vst" || (fstype.starts_with(b"fuse") && source == b"vst");
    if !ours {
        return None;
    }
    let point = fields.get(4)?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(unescape_octal(point))))
}

/// Undoes mountinfo's escapes: a space, tab, newline or backslash in a
/// path is written as `\` and three octal digits.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits = field.get(i + 1..i + 4);
        match digits {
            Some(d) if field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let ours = b"99 30 0:51 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:1 - fuse.vst vst ro,user_id=0";
        assert_eq!(parse_mountinfo_line(ours), Some(PathBuf::from("/tmp/a b")));
        let direct = b"99 30 0:51 / /m ro - fuse vst ro,user_id=0";
        assert_eq!(parse_mountinfo_line(direct), Some(PathBuf::from("/m")));
        let other = b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw";
        assert_eq!(parse_mountinfo_line(other), None);
        let sshfs = b"36 35 0:9 / /s rw - fuse.sshfs host: rw";
        assert_eq!(parse_mountinfo_line(sshfs), None);
        assert_eq!(parse_mountinfo_line(b""), None);
        assert_eq!(unescape_octal(b"a\\134b\\01"), b"a\\b\\01");
    }
}
