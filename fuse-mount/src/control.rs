//! The writable mount's control socket (`.vst/mount/sock`): `vst commit`,
//! `status`, `diff` and `checkout`/`switch` run inside the mount ask the
//! daemon instead of scanning.
//!
//! One request per connection: the client writes a frame, the daemon
//! answers with one frame and closes. A frame is `"VSC"`, the protocol's
//! version (one byte, [`PROTOCOL_VERSION`]), `len: u32 LE` and a postcard
//! payload of at most [`FRAME_LEN_MAX`] bytes. A daemon started by another
//! build of vst may speak another version: either side refuses a frame of
//! another version with an error that says so, rather than misreading it.
//! Requests are served one at a time, on the socket's own thread.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vst::{CommitId, CommitOptions, RepoPath};
use vst_cas::{ObjectId, RefName};

use crate::write::Shared;

/// The longest frame either side accepts (a status of many paths).
pub const FRAME_LEN_MAX: u32 = 256 << 20;

/// The version of the requests and responses below: bumped whenever
/// either changes shape.
pub const PROTOCOL_VERSION: u8 = 4;

/// What every frame starts with, before the version.
const FRAME_MAGIC: [u8; 3] = *b"VSC";

/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Commit the mount's tree and move the branch.
    Commit {
        /// The message.
        message: String,
        /// The author.
        author: String,
        /// Commit even if nothing changed.
        allow_empty: bool,
    },
    /// What changed since the commit the mount is based on.
    Status,
    /// Move the mount to a commit.
    Checkout {
        /// The commit's id.
        commit: [u8; 32],
        /// The branch `HEAD` names afterwards (`None`: detached).
        branch: Option<String>,
        /// Discard uncommitted changes.
        force: bool,
    },
    /// Merge a commit into `HEAD` (no conflicts: see `Shared::merge`).
    Merge {
        /// The commit to merge.
        commit: [u8; 32],
        /// The merge commit's message.
        message: String,
        /// Its author.
        author: String,
    },
}

/// What changed at one path (the status letters of `vst status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// `A`.
    Added,
    /// `D`.
    Removed,
    /// `M`.
    Modified,
    /// `T`.
    TypeChanged,
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// A commit was made (`commit: None`: nothing to commit).
    Committed {
        /// The new commit.
        commit: Option<[u8; 32]>,
        /// Its tree.
        tree: [u8; 32],
        /// Files the commit hashed itself (not yet settled).
        hashed: u64,
        /// Microseconds spent finalizing files and hashing trees.
        hash_us: u64,
        /// Microseconds for the whole commit in the daemon (syncs included).
        total_us: u64,
        /// Special files (FIFOs, sockets, devices) in the mount, not
        /// committed: a tree cannot hold them.
        skipped: Vec<Vec<u8>>,
    },
    /// The changes, in tree order.
    Status {
        /// Each changed path (bytes, not necessarily UTF-8) and how.
        changes: Vec<(ChangeKind, Vec<u8>)>,
        /// What the daemon holds.
        stats: crate::MountStats,
        /// The tree of the commit the mount is based on.
        base: Option<[u8; 32]>,
        /// The mount's tree, in the store (not synced): with `base`, what
        /// a content diff compares.
        tree: [u8; 32],
        /// Special files in the mount, which a tree cannot hold.
        skipped: Vec<Vec<u8>>,
    },
    /// The checkout is done.
    CheckedOut {
        /// How many paths changed.
        changed: u64,
    },
    /// The merge is done.
    Merged {
        /// `None`: already up to date; else the commit `HEAD` is at now.
        commit: Option<[u8; 32]>,
        /// Whether that is a fast-forward (no merge commit).
        fast_forward: bool,
        /// How many paths changed.
        changed: u64,
    },
    /// The request failed; why, for a person.
    Error(String),
}

fn write_frame(stream: &mut (impl io::Write + ?Sized), value: &impl Serialize) -> io::Result<()> {
    let payload = postcard::to_allocvec(value).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= FRAME_LEN_MAX)
        .ok_or_else(|| io::Error::other("frame too long"))?;
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&FRAME_MAGIC);
    bytes.push(PROTOCOL_VERSION);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&payload);
    stream.write_all(&bytes)
}

fn read_frame<T: for<'de> Deserialize<'de>>(
    stream: &mut (impl io::Read + ?Sized),
) -> io::Result<T> {
    let mut header = [0; 8];
    stream.read_exact(&mut header)?;
    if header[..3] != FRAME_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the other side does not speak the vst mount protocol (a vst from before its protocol had versions?): unmount and mount again with this vst",
        ));
    }
    if header[3] != PROTOCOL_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the other side speaks version {} of the vst mount protocol, this vst speaks {PROTOCOL_VERSION}: the mount was started by another build of vst; unmount and mount again with this one",
                header[3]
            ),
        ));
    }
    let len = u32::from_le_bytes(header[4..].try_into().expect("four bytes"));
    if len > FRAME_LEN_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload)?;
    postcard::from_bytes(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Sends `request` to the daemon listening on `socket` and waits for the
/// answer.
pub fn request(socket: &Path, request: &Request) -> io::Result<Response> {
    let mut stream = UnixStream::connect(socket)?;
    write_frame(&mut stream, request)?;
    read_frame(&mut stream)
}

/// The repository directory (`.vst`) of the writable vst mount that holds
/// `dir`, if `dir` is inside one: the innermost vst mount point above it
/// (from `/proc/self/mountinfo`) that names its repository in the
/// `user.vst.repo` attribute of its root.
pub fn writable_repo_for(dir: &Path) -> io::Result<Option<PathBuf>> {
    let points = crate::mount_points()?;
    let Some(point) =
        points.iter().filter(|p| dir.starts_with(p)).max_by_key(|p| p.as_os_str().len())
    else {
        return Ok(None);
    };
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::OsStr::from_bytes(crate::write::XATTR_REPO);
    match xattr::get(point, name) {
        Ok(Some(value)) => {
            use std::os::unix::ffi::OsStringExt as _;
            Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(value))))
        }
        Ok(None) => Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The control socket's server: accepts on its own thread until stopped.
#[derive(Debug)]
pub(crate) struct Server {
    path: PathBuf,
    /// The listening socket, to shut down: that wakes the blocked accept
    /// even when the socket's path is gone.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on the mount's socket (replacing a stale one: only the
    /// process holding the store's lock gets here).
    pub(crate) fn start(shared: Arc<Shared>) -> io::Result<Self> {
        let path = shared.socket_path();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        let accepting = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new().name("vst-mount-control".to_owned()).spawn(move || {
                for stream in accepting.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else {
                        // A listener shut down fails every accept at once.
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
                    let response = match read_frame::<Request>(&mut stream) {
                        Ok(request) => serve(&shared, request),
                        Err(e) => Response::Error(format!("bad request: {e}")),
                    };
                    let _ = write_frame(&mut stream, &response);
                }
            })?
        };
        Ok(Self { path, listener, stop, thread: Some(thread) })
    }

    /// Stops accepting and removes the socket.
    pub(crate) fn stop(&mut self) {
        use std::os::fd::AsRawFd as _;
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread: accept fails on a socket shut down.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A chain of an error and its sources, for a person.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn serve(shared: &Shared, request: Request) -> Response {
    match request {
        Request::Commit { message, author, allow_empty } => {
            let options = CommitOptions { author, message, ..Default::default() };
            match shared.commit(&options, allow_empty) {
                Ok(c) => Response::Committed {
                    commit: c.commit.map(|id| *id.as_bytes()),
                    tree: *c.tree.as_bytes(),
                    hashed: c.hashed as u64,
                    hash_us: c.hash_us,
                    total_us: c.total_us,
                    skipped: c.skipped.iter().map(|p| p.as_bytes().to_vec()).collect(),
                },
                Err(e) => Response::Error(chain(&e)),
            }
        }
        Request::Status => match shared.status() {
            Ok(status) => Response::Status {
                stats: status.stats,
                base: status.base.map(|t| *t.as_bytes()),
                tree: *status.tree.as_bytes(),
                skipped: status.skipped.iter().map(|p| p.as_bytes().to_vec()).collect(),
                changes: status
                    .lines
                    .into_iter()
                    .map(|l| {
                        let kind = match l.kind {
                            vst::ChangeKind::Added => ChangeKind::Added,
                            vst::ChangeKind::Removed => ChangeKind::Removed,
                            vst::ChangeKind::Modified => ChangeKind::Modified,
                            vst::ChangeKind::TypeChanged => ChangeKind::TypeChanged,
                        };
                        (kind, RepoPath::as_bytes(&l.path).to_vec())
                    })
                    .collect(),
            },
            Err(e) => Response::Error(chain(&e)),
        },
        Request::Checkout { commit, branch, force } => {
            let branch = match branch.map(|b| RefName::try_from(b.as_str())).transpose() {
                Ok(b) => b,
                Err(e) => return Response::Error(chain(&e)),
            };
            let target = CommitId::new(ObjectId::from_bytes(commit));
            match shared.checkout(target, branch, force) {
                Ok(changed) => Response::CheckedOut { changed: changed as u64 },
                Err(e) => Response::Error(chain(&e)),
            }
        }
        Request::Merge { commit, message, author } => {
            let options = CommitOptions { author, message, ..Default::default() };
            let theirs = CommitId::new(ObjectId::from_bytes(commit));
            match shared.merge(theirs, &options) {
                Ok((done, changed)) => {
                    let (commit, fast_forward) = match done {
                        crate::write::MergeDone::UpToDate => (None, false),
                        crate::write::MergeDone::FastForward(c) => (Some(*c.as_bytes()), true),
                        crate::write::MergeDone::Merged(c) => (Some(*c.as_bytes()), false),
                    };
                    Response::Merged { commit, fast_forward, changed: changed as u64 }
                }
                Err(e) => Response::Error(chain(&e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_of_another_version_is_refused_naming_it() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Request::Status).unwrap();
        assert!(matches!(read_frame::<Request>(&mut bytes.as_slice()).unwrap(), Request::Status));
        bytes[3] = PROTOCOL_VERSION + 1;
        let e = read_frame::<Request>(&mut bytes.as_slice()).unwrap_err();
        let theirs = format!("version {} of", PROTOCOL_VERSION + 1);
        assert!(e.to_string().contains(&theirs), "{e}");
        // A frame from before versions: a bare length, then the payload.
        let mut old = 1u32.to_le_bytes().to_vec();
        old.extend_from_slice(&[1, 0, 0, 0]);
        let e = read_frame::<Request>(&mut old.as_slice()).unwrap_err();
        assert!(e.to_string().contains("does not speak"), "{e}");
    }
}
