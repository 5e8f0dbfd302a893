//! Refs: named pointers to objects (commits, for vst), updated by
//! compare-and-swap under a lock, with a reflog.
//!
//! Layout under the store directory:
//!
//! ```text
//! HEAD                  "ref: heads/NAME\n" (a branch) or "<64 hex>\n" (detached)
//! refs/heads/NAME       two slots (below); "<64 hex>\n" as written before them
//! logs/HEAD             the same, for commits a detached HEAD pointed at
//! logs/heads/NAME       one line per update: "<old hex or 0*64> <new hex or 0*64> <unix_us> <message>\n"
//! refs/heads/NAME.lock  held exclusively while that ref is read-compared-written
//! HEAD.lock             the same, for HEAD
//! refs/remotes/REMOTE/BRANCH  remote-tracking refs (see [`TrackingRefs`]): the
//!                       same file, lock and reflog (logs/remotes/...) as a branch
//! refs/tags/NAME        tags (see [`Tags`]), likewise (logs/tags/NAME)
//! ```
//!
//! A branch file holds two slots, 4 KiB apart, each
//! `"<seq:16 hex> <id:64 hex> <crc:8 hex>\n"`; the branch's value is the
//! valid slot with the higher sequence number. An update overwrites the
//! other slot in place with the next sequence number and syncs the file:
//! one small write and one `fdatasync` that changes no metadata (about
//! 0.1 ms here, where a temporary file, rename and directory sync take
//! 0.5 ms). A crash that tears the slot being written leaves its CRC wrong
//! and the other slot, the old value, in force; a reader that catches a
//! slot half copied does the same. If the in-place write or its sync fails,
//! the whole file is rewritten as below (see `docs/format.md` for why).
//! The other slot keeps the value before, which [`Refs::held`] reports so
//! that GC keeps it too. A branch is created (or converted from
//! the one-line form) by writing the whole file to a temporary file,
//! syncing it, renaming it over the ref and syncing the directory; `HEAD`
//! is always written that way.
//!
//! With [`Refs::update_once_durable`], the caller's store syncs what the
//! new value names first (during the temporary file's write and sync, on
//! another thread, when there is one). After `update` returns, the new
//! value survives a crash, and at no point can a crash leave a ref half
//! written. Two processes updating the same ref serialize on its lock file
//! (names ending in `.lock` are not valid ref names, so a lock can never be
//! taken for a ref); updates of different refs run in parallel, so their
//! fsyncs can overlap. A compare-and-swap whose expected value is stale
//! fails with [`RefError::Conflict`] and changes nothing.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::vfs::Vfs;
use crate::{ObjectId, StoreError};

/// Longest ref name, in bytes.
pub const REF_NAME_LEN_MAX: usize = 200;

/// A validated branch name: components of ASCII letters, digits, `.`, `_`
/// and `-` joined by `/`; no component starts with `.` or ends with
/// `.lock`; at most [`REF_NAME_LEN_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefName(String);

impl RefName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RefName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for RefName {
    type Error = RefError;
    fn try_from(s: &str) -> Result<Self, RefError> {
        let invalid = || RefError::InvalidName { name: s.to_owned() };
        if s.is_empty() || s.len() > REF_NAME_LEN_MAX {
            return Err(invalid());
        }
        for part in s.split('/') {
            let ok_chars = part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if part.is_empty() || part.starts_with('.') || part.ends_with(".lock") || !ok_chars {
                return Err(invalid());
            }
        }
        Ok(Self(s.to_owned()))
    }
}

/// What `HEAD` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A branch (which may not exist yet: an unborn branch).
    Branch(RefName),
    /// A commit directly.
    Detached(ObjectId),
}

/// One reflog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflogEntry {
    /// The value before, `None` if the ref was created.
    pub old: Option<ObjectId>,
    /// The value after, `None` if the ref was deleted.
    pub new: Option<ObjectId>,
    /// When, in microseconds since the Unix epoch.
    pub time_unix_us: i64,
    /// Why.
    pub message: String,
}

/// What went wrong with a ref.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// The name breaks the rules of [`RefName`].
    #[error("invalid branch name {name:?}: use letters, digits, '.', '_', '-' and '/'")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Compare-and-swap failed: the ref moved since it was read.
    #[error("branch {name} is at {actual}, not {expected} as expected: someone else updated it")]
    Conflict {
        /// The ref.
        name: RefName,
        /// What the caller expected (`none` for absent).
        expected: String,
        /// What it is.
        actual: String,
    },
    /// A ref file does not hold a valid id.
    #[error("ref {path} is damaged: {content:?}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What it holds (at most 100 bytes of it).
        content: String,
    },
    /// The object store holding the refs ignores conditional writes, so two
    /// updates of one ref could both succeed and one be lost: vst keeps no
    /// refs there.
    #[error(
        "the object store at {server} does not honour conditional writes: {failed}; vst keeps no refs there, because two pushes to one branch could both succeed and one of them be lost; use a server that supports If-None-Match and If-Match on PUT (AWS S3, MinIO, SeaweedFS 4, Cloudflare R2)"
    )]
    Unconditional {
        /// The server (endpoint and bucket).
        server: String,
        /// Which check of the probe failed.
        failed: &'static str,
    },
    /// The filesystem or the object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What must succeed before a ref may name new objects: makes them
/// durable (a store's `sync`).
pub type Durable<'a> = dyn Fn() -> Result<(), StoreError> + Sync + 'a;

/// Bytes from one slot of a branch file to the next, and the file's length.
const SLOT_LEN: usize = 4096;
const SLOTS_FILE_LEN: usize = 2 * SLOT_LEN;
/// `"<seq:16 hex> <id:64 hex> <crc:8 hex>\n"`; the CRC-32 covers the 82
/// bytes before it.
const SLOT_LINE_LEN: usize = 16 + 1 + 64 + 1 + 8 + 1;
const SLOT_CHECKED_LEN: usize = 16 + 1 + 64 + 1;

/// A branch's value as its file holds it.
#[derive(Debug, Clone, Copy)]
struct Stored {
    id: ObjectId,
    /// Where and with which sequence number, if the file has slots (`None`:
    /// the one-line form).
    slot: Option<(usize, u64)>,
    /// The other slot's id, if it is valid: the value before, which the
    /// branch falls back to if the current slot is ever damaged.
    other: Option<ObjectId>,
}

fn encode_slot(seq: u64, id: ObjectId) -> Vec<u8> {
    let mut line = format!("{seq:016x} {id} ").into_bytes();
    let crc = crc32fast::hash(&line);
    line.extend_from_slice(format!("{crc:08x}\n").as_bytes());
    debug_assert_eq!(line.len(), SLOT_LINE_LEN);
    line
}

/// The sequence number and id of a slot, `None` if it does not hold a
/// whole valid line (never written, torn, or damaged).
fn decode_slot(slot: &[u8]) -> Option<(u64, ObjectId)> {
    let line = slot.get(..SLOT_LINE_LEN)?;
    let text = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
    let (checked, crc) = text.split_at_checked(SLOT_CHECKED_LEN)?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(&line[..SLOT_CHECKED_LEN]) {
        return None;
    }
    let (seq, id) = checked.strip_suffix(' ')?.split_once(' ')?;
    Some((u64::from_str_radix(seq, 16).ok()?, id.parse().ok()?))
}

/// A new branch file holding `id` in its first slot.
fn slots_file(id: ObjectId) -> Vec<u8> {
    let mut file = vec![0; SLOTS_FILE_LEN];
    file[..SLOT_LINE_LEN].copy_from_slice(&encode_slot(1, id));
    file
}

pub(crate) fn show(id: Option<ObjectId>) -> String {
    id.map_or_else(|| "none".to_owned(), |i| i.to_string())
}

/// The refs of one store.
#[derive(Debug, Clone)]
pub struct Refs {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    /// The directory under `refs/` and `logs/` the names live in: `heads`
    /// for branches, `remotes` and `tags` for the views [`Refs::tracking`]
    /// and [`Refs::tags`] return.
    ns: &'static str,
}

/// The methods every view of one namespace of refs other than branches
/// has: the branch methods of the same name, on that namespace.
macro_rules! namespace_view {
    ($view:ident, $what:literal) => {
        impl $view {
            #[doc = concat!("The value of ", $what, " `name`, if it exists.")]
            pub fn get(&self, name: &RefName) -> Result<Option<ObjectId>, RefError> {
                self.0.get(name)
            }

            /// Every id the file of `name` holds (see [`Refs::held`]).
            pub fn held(&self, name: &RefName) -> Result<Vec<ObjectId>, RefError> {
                self.0.held(name)
            }

            #[doc = concat!("Every ", $what, " and its value, sorted by name.")]
            pub fn list(&self) -> Result<Vec<(RefName, ObjectId)>, RefError> {
                self.0.list()
            }

            #[doc = concat!("The names of every ", $what, " file, without reading them, sorted.")]
            pub fn names(&self) -> Result<Vec<RefName>, RefError> {
                self.0.names()
            }

            #[doc = concat!("Every ", $what, " that has a reflog, deleted ones included.")]
            pub fn logged(&self) -> Result<Vec<RefName>, RefError> {
                self.0.logged()
            }

            #[doc = concat!("The reflog of ", $what, " `name`, oldest first.")]
            pub fn reflog(&self, name: &RefName) -> Result<Vec<ReflogEntry>, RefError> {
                self.0.reflog(name)
            }

            #[doc = concat!("Sets ", $what, " `name` to `new` (`None` deletes it) if it is now")]
            /// `expected`, durably, and logs it (see [`Refs::update`]).
            pub fn update(
                &self,
                name: &RefName,
                expected: Option<ObjectId>,
                new: Option<ObjectId>,
                message: &str,
            ) -> Result<(), RefError> {
                self.0.update(name, expected, new, message)
            }
        }
    };
}

/// The remote-tracking refs of a store: `refs/remotes/REMOTE/BRANCH`, one
/// for each branch of each remote as the last fetch, push or clone saw it,
/// named `REMOTE/BRANCH`. They are files of slots with reflogs exactly
/// like branches (the same compare-and-swap, durability and GC), but never
/// what `HEAD` names and never committed to; only their own namespace is
/// reachable through this type.
#[derive(Debug, Clone)]
pub struct TrackingRefs(Refs);

namespace_view!(TrackingRefs, "tracking ref");

impl TrackingRefs {
    /// The name of the tracking ref of `branch` of `remote`: `REMOTE/BRANCH`
    /// (an error if that is longer than a ref name may be).
    pub fn name(remote: &RefName, branch: &RefName) -> Result<RefName, RefError> {
        RefName::try_from(format!("{remote}/{branch}").as_str())
    }

    /// The tracking refs of `remote`: each of its branches and the value
    /// last seen, sorted by branch.
    pub fn of_remote(&self, remote: &RefName) -> Result<Vec<(RefName, ObjectId)>, RefError> {
        let prefix = format!("{remote}/");
        let mut out = Vec::new();
        for (name, id) in self.list()? {
            if let Some(branch) = name.as_str().strip_prefix(&prefix) {
                out.push((RefName(branch.to_owned()), id));
            }
        }
        Ok(out)
    }
}

/// The tags of a store: `refs/tags/NAME`, names for commits that do not
/// move as a branch does (the CLI refuses to move one unless forced). The
/// same files, compare-and-swap, reflogs and GC as branches; never what
/// `HEAD` names and never committed to.
#[derive(Debug, Clone)]
pub struct Tags(Refs);

namespace_view!(Tags, "tag");

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> RefError {
    move |source| RefError::Store(StoreError::Io { op, source })
}

impl Refs {
    /// The refs stored under `dir` (the store directory).
    pub fn new(vfs: Arc<dyn Vfs>, dir: &Path) -> Self {
        Self { vfs, dir: dir.to_owned(), ns: "heads" }
    }

    /// The remote-tracking refs stored beside these branches.
    pub fn tracking(&self) -> TrackingRefs {
        TrackingRefs(Self { vfs: self.vfs.clone(), dir: self.dir.clone(), ns: "remotes" })
    }

    /// The tags stored beside these branches.
    pub fn tags(&self) -> Tags {
        Tags(Self { vfs: self.vfs.clone(), dir: self.dir.clone(), ns: "tags" })
    }

    fn ref_path(&self, name: &RefName) -> PathBuf {
        self.dir.join("refs").join(self.ns).join(name.as_str())
    }

    fn log_path(&self, name: &RefName) -> PathBuf {
        self.dir.join("logs").join(self.ns).join(name.as_str())
    }

    fn read_id_file(&self, path: &Path) -> Result<Option<String>, RefError> {
        match self.vfs.read_file(path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read a ref")(e)),
        }
    }

    fn parse_id(path: &Path, text: &str) -> Result<ObjectId, RefError> {
        text.strip_suffix('\n').and_then(|t| t.parse().ok()).ok_or_else(|| RefError::Damaged {
            path: path.to_owned(),
            content: text.chars().take(100).collect(),
        })
    }

    /// The value of branch `name`, if it exists.
    pub fn get(&self, name: &RefName) -> Result<Option<ObjectId>, RefError> {
        Ok(self.read_branch(&self.ref_path(name))?.map(|s| s.id))
    }

    /// Every id branch `name`'s file holds: its value and, if valid, the
    /// other slot's (the value before, which the branch would fall back to
    /// if its current slot were damaged). GC keeps both.
    pub fn held(&self, name: &RefName) -> Result<Vec<ObjectId>, RefError> {
        Ok(self.read_branch(&self.ref_path(name))?.map_or(Vec::new(), |s| {
            std::iter::once(s.id).chain(s.other.filter(|o| *o != s.id)).collect()
        }))
    }

    /// A branch file: its slots, or the one-line form. A file of slots
    /// with neither valid is read once more before it is called damaged: a
    /// reader that took no lock may have caught two updates in a row, each
    /// tearing the slot it copied.
    fn read_branch(&self, path: &Path) -> Result<Option<Stored>, RefError> {
        match self.read_branch_once(path) {
            Err(RefError::Damaged { .. }) => self.read_branch_once(path),
            other => other,
        }
    }

    fn read_branch_once(&self, path: &Path) -> Result<Option<Stored>, RefError> {
        let bytes = match self.vfs.read_file(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read a ref")(e)),
        };
        let damaged = || RefError::Damaged {
            path: path.to_owned(),
            content: String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned(),
        };
        if bytes.len() != SLOTS_FILE_LEN {
            let text = String::from_utf8_lossy(&bytes);
            return Ok(Some(Stored { id: Self::parse_id(path, &text)?, slot: None, other: None }));
        }
        let slots = [0, 1].map(|k| decode_slot(&bytes[k * SLOT_LEN..]));
        let current = (0..2).filter_map(|k| slots[k].map(|(seq, id)| (seq, k, id))).max();
        let (seq, k, id) = current.ok_or_else(damaged)?;
        let other = slots[1 - k].map(|(_, id)| id);
        Ok(Some(Stored { id, slot: Some((k, seq)), other }))
    }

    /// Every branch and its value, sorted by name.
    pub fn list(&self) -> Result<Vec<(RefName, ObjectId)>, RefError> {
        let mut out = Vec::new();
        for name in self.names_under(&format!("refs/{}", self.ns))? {
            if let Some(id) = self.get(&name)? {
                out.push((name, id));
            }
        }
        Ok(out)
    }

    /// The names of every branch file, without reading them (so a damaged
    /// one is still listed), sorted.
    pub fn names(&self) -> Result<Vec<RefName>, RefError> {
        self.names_under(&format!("refs/{}", self.ns))
    }

    /// Every branch that has a reflog, deleted branches included, sorted.
    pub fn logged(&self) -> Result<Vec<RefName>, RefError> {
        self.names_under(&format!("logs/{}", self.ns))
    }

    /// The valid ref names of the files under `sub`, nested directories
    /// included, sorted. Temporary files of an update are not valid names.
    fn names_under(&self, sub: &str) -> Result<Vec<RefName>, RefError> {
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(prefix) = dirs.pop() {
            let dir = self.dir.join(sub).join(&prefix);
            for (entry, is_dir) in self.vfs.list(&dir).map_err(io_err("list refs"))? {
                let full = if prefix.is_empty() { entry } else { format!("{prefix}/{entry}") };
                if is_dir {
                    dirs.push(full);
                } else if let Ok(name) = RefName::try_from(full.as_str()) {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Sets branch `name` to `new` (`None` deletes it) if it is now
    /// `expected` (`None`: must not exist), durably, and logs it.
    pub fn update(
        &self,
        name: &RefName,
        expected: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<(), RefError> {
        self.update_once(name, expected, new, message, None)
    }

    /// As [`Refs::update`], once `durable` has made what `new` names
    /// durable (a store's `sync`). A branch updated in place is written
    /// after `durable` returns; a branch created (or converted) gets its
    /// temporary file written and synced while `durable` runs, so the two
    /// syncs overlap, and the rename that publishes it waits for both. If
    /// `durable` fails, the ref is left as it was.
    pub fn update_once_durable(
        &self,
        name: &RefName,
        expected: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
        durable: &Durable<'_>,
    ) -> Result<(), RefError> {
        self.update_once(name, expected, new, message, Some(durable))
    }

    fn update_once(
        &self,
        name: &RefName,
        expected: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
        durable: Option<&Durable<'_>>,
    ) -> Result<(), RefError> {
        let path = self.ref_path(name);
        let parent = path.parent().expect("a ref path has a parent").to_owned();
        self.vfs.create_dir_all(&parent).map_err(io_err("create a ref directory"))?;
        let lock_path = parent
            .join(format!("{}.lock", path.file_name().and_then(|n| n.to_str()).unwrap_or("ref")));
        let _lock = self.vfs.lock(&lock_path, true).map_err(io_err("lock a ref"))?;
        let stored = self.read_branch(&path)?;
        let actual = stored.map(|s| s.id);
        if actual != expected {
            return Err(RefError::Conflict {
                name: name.clone(),
                expected: show(expected),
                actual: show(actual),
            });
        }
        match new {
            Some(id) => match stored.and_then(|s| s.slot) {
                Some((current, seq)) => {
                    // In place: only once what `id` names is durable, so
                    // that the ref can never reach the disk before it.
                    if let Some(durable) = durable {
                        durable()?;
                    }
                    let offset = ((1 - current) * SLOT_LEN) as u64;
                    let slot = encode_slot(seq + 1, id);
                    let in_place = self
                        .vfs
                        .write_at(&path, offset, &slot)
                        .map_err(io_err("write a ref"))
                        .and_then(|()| self.vfs.sync(&path).map_err(io_err("sync a ref")));
                    if let Err(e) = in_place {
                        // The new slot may be readable yet not durable, and
                        // the next update would overwrite the only durable
                        // one: rewrite the whole file instead (one valid
                        // slot), or report the first failure.
                        self.write_atomic(&path, &slots_file(id), None).map_err(|_| e)?;
                    }
                }
                None => self.write_atomic(&path, &slots_file(id), durable)?,
            },
            None => {
                if let Some(durable) = durable {
                    durable()?;
                }
                self.vfs.remove(&path).map_err(io_err("delete a ref"))?;
                self.vfs.sync_dir(&parent).map_err(io_err("sync a ref directory"))?;
            }
        }
        self.log(name, actual, new, message)
    }

    /// Writes `bytes` to `path` so that a crash leaves either the old or the
    /// new content: temp file, fsync, rename, fsync of the directory. With
    /// `durable`, it runs on another thread while this one writes and syncs
    /// the temporary file, and the rename waits for both.
    fn write_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        durable: Option<&Durable<'_>>,
    ) -> Result<(), RefError> {
        let dir = path.parent().expect("a ref path has a parent");
        let tmp = dir
            .join(format!(".tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("ref")));
        let write_tmp = || -> Result<(), RefError> {
            self.vfs.write_file(&tmp, bytes).map_err(io_err("write a ref"))?;
            self.vfs.sync(&tmp).map_err(io_err("sync a ref"))
        };
        match durable {
            None => write_tmp()?,
            Some(durable) => {
                let both = std::thread::scope(|s| {
                    // The new thread takes the store's sync, which is ready
                    // to start at once: its start-up (some 100 us in a VM)
                    // then overlaps the temporary file's write. Without a
                    // thread to spare, one after the other.
                    let syncer = std::thread::Builder::new().spawn_scoped(s, durable).ok();
                    let written = write_tmp();
                    let synced = match syncer {
                        Some(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        None => durable(),
                    };
                    synced.map_err(RefError::from).and(written)
                });
                if both.is_err() {
                    let _ = self.vfs.remove(&tmp);
                }
                both?;
            }
        }
        self.vfs.rename(&tmp, path).map_err(io_err("rename a ref into place"))?;
        self.vfs.sync_dir(dir).map_err(io_err("sync a ref directory"))
    }

    /// Appends to the reflog. Not synced: a lost reflog line after a crash
    /// only shortens what GC keeps for its grace period; the ref itself was
    /// made durable first.
    fn log(
        &self,
        name: &RefName,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<(), RefError> {
        self.log_to(&self.log_path(name), old, new, message)
    }

    fn log_to(
        &self,
        path: &Path,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<(), RefError> {
        let parent = path.parent().expect("a log path has a parent");
        self.vfs.create_dir_all(parent).map_err(io_err("create a log directory"))?;
        let zero = "0".repeat(64);
        let hex = |id: Option<ObjectId>| id.map_or(zero.clone(), |i| i.to_string());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let message: String = message.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
        let line = format!("{} {} {now} {message}\n", hex(old), hex(new));
        self.vfs.append(path, line.as_bytes()).map_err(io_err("append to a reflog"))
    }

    /// The reflog of branch `name`, oldest first. Lines that do not parse
    /// (a torn last line after a crash) are skipped.
    pub fn reflog(&self, name: &RefName) -> Result<Vec<ReflogEntry>, RefError> {
        self.reflog_at(&self.log_path(name))
    }

    /// The reflog of a detached `HEAD`: every commit `HEAD` pointed at
    /// directly, oldest first.
    pub fn head_reflog(&self) -> Result<Vec<ReflogEntry>, RefError> {
        self.reflog_at(&self.dir.join("logs/HEAD"))
    }

    fn reflog_at(&self, path: &Path) -> Result<Vec<ReflogEntry>, RefError> {
        let text = match self.vfs.read_file(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read a reflog")(e)),
        };
        let parse_id = |s: &str| -> Option<Option<ObjectId>> {
            if s.bytes().all(|b| b == b'0') && s.len() == 64 {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(4, ' ');
                Some(ReflogEntry {
                    old: parse_id(parts.next()?)?,
                    new: parse_id(parts.next()?)?,
                    time_unix_us: parts.next()?.parse().ok()?,
                    message: parts.next().unwrap_or("").to_owned(),
                })
            })
            .collect())
    }

    /// What `HEAD` points at; a new store's `HEAD` is branch `main`.
    pub fn head(&self) -> Result<Head, RefError> {
        let path = self.dir.join("HEAD");
        let Some(text) = self.read_id_file(&path)? else {
            return Ok(Head::Branch(RefName("main".to_owned())));
        };
        if let Some(branch) = text.strip_prefix("ref: heads/").and_then(|t| t.strip_suffix('\n')) {
            return RefName::try_from(branch).map(Head::Branch).map_err(|_| RefError::Damaged {
                path: path.clone(),
                content: text.chars().take(100).collect(),
            });
        }
        Self::parse_id(&path, &text).map(Head::Detached)
    }

    /// Moves `HEAD` from `expected` to `new` by compare-and-swap, durably,
    /// and logs detached values in `logs/HEAD`.
    pub fn update_head(&self, expected: &Head, new: &Head, message: &str) -> Result<(), RefError> {
        self.update_head_once(expected, new, message, None)
    }

    /// As [`Refs::update_head`], once `durable` has made what `new` names
    /// durable, overlapping the syncs as [`Refs::update_once_durable`] does.
    pub fn update_head_once_durable(
        &self,
        expected: &Head,
        new: &Head,
        message: &str,
        durable: &Durable<'_>,
    ) -> Result<(), RefError> {
        self.update_head_once(expected, new, message, Some(durable))
    }

    fn update_head_once(
        &self,
        expected: &Head,
        new: &Head,
        message: &str,
        durable: Option<&Durable<'_>>,
    ) -> Result<(), RefError> {
        self.vfs.create_dir_all(&self.dir).map_err(io_err("create the store directory"))?;
        let _lock =
            self.vfs.lock(&self.dir.join("HEAD.lock"), true).map_err(io_err("lock HEAD"))?;
        let actual = self.head()?;
        if actual != *expected {
            return Err(RefError::Conflict {
                name: RefName("HEAD".to_owned()),
                expected: format!("{expected:?}"),
                actual: format!("{actual:?}"),
            });
        }
        self.write_head(new, durable)?;
        let detached = |h: &Head| match h {
            Head::Detached(id) => Some(*id),
            Head::Branch(_) => None,
        };
        self.log_to(&self.dir.join("logs/HEAD"), detached(&actual), detached(new), message)
    }

    /// Points `HEAD` at a branch or a commit, durably, whatever it was.
    pub fn set_head(&self, head: &Head) -> Result<(), RefError> {
        self.vfs.create_dir_all(&self.dir).map_err(io_err("create the store directory"))?;
        let _lock =
            self.vfs.lock(&self.dir.join("HEAD.lock"), true).map_err(io_err("lock HEAD"))?;
        self.write_head(head, None)
    }

    fn write_head(&self, head: &Head, durable: Option<&Durable<'_>>) -> Result<(), RefError> {
        let text = match head {
            Head::Branch(name) => format!("ref: heads/{name}\n"),
            Head::Detached(id) => format!("{id}\n"),
        };
        self.write_atomic(&self.dir.join("HEAD"), text.as_bytes(), durable)
    }
}
