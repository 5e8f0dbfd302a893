//! What the read-only filesystem (`fs.rs`) and the writable one
//! (`write/fuse.rs`) share at the kernel boundary: the panic guard, the
//! one mapping from errors to errno, attributes, extended attribute
//! replies, and the windowed reader of stored file content.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fuser::{Errno, FileAttr, FileType, INodeNo, ReplyXattr};
use vst::{BlobId, FileEntry, Timestamp};
use vst_cas::Store;

use crate::ErrorLog;

/// Runs one request's handler; a panic answers it with `EIO` (the reply,
/// moved into `f`, sends that when dropped) and is logged: a panic must
/// not end the mount.
pub(crate) fn guard(log: &ErrorLog, op: &'static str, f: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
        log.write(&format!("{op}: internal error (panic); answered EIO"));
    }
}

/// The errno for a library error. An edit of the working set refused for
/// a reason the kernel has a word for gets that word; whatever went wrong
/// reading the store (a missing object, a corrupt one, an I/O error) is
/// `EIO`: the file or directory cannot be read.
pub(crate) fn errno(e: &vst::Error) -> Errno {
    match e {
        vst::Error::NotFound { .. } => Errno::ENOENT,
        vst::Error::NotADirectory { .. } => Errno::ENOTDIR,
        vst::Error::IsADirectory { .. } => Errno::EISDIR,
        vst::Error::NotAFile { .. } => Errno::EINVAL,
        vst::Error::TooManyEntries { .. } => Errno::ENOSPC,
        vst::Error::RenameIntoItself { .. } => Errno::EINVAL,
        vst::Error::TooDeep { .. } => Errno::ENAMETOOLONG,
        vst::Error::Root { .. } => Errno::EBUSY,
        vst::Error::InvalidSymlink { source, .. } => match source {
            vst::tree::InvalidSymlink::TooLong(_) => Errno::ENAMETOOLONG,
            vst::tree::InvalidSymlink::Empty => Errno::ENOENT,
            _ => Errno::EINVAL,
        },
        _ => Errno::EIO,
    }
}

/// The errno for an I/O error: its own, else `EIO`.
pub(crate) fn io_errno(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}

/// The time of a commit as the kernel shows it.
pub(crate) fn system_time(t: Timestamp) -> SystemTime {
    let micros = Duration::from_micros(t.unix_us.unsigned_abs());
    let time = if t.unix_us >= 0 {
        UNIX_EPOCH.checked_add(micros)
    } else {
        UNIX_EPOCH.checked_sub(micros)
    };
    time.unwrap_or(UNIX_EPOCH)
}

/// What the kernel is told about an inode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr {
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    /// Permission bits (`0o7777`).
    pub(crate) perm: u16,
    pub(crate) size: u64,
    pub(crate) nlink: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// A device's number (0 for anything else).
    pub(crate) rdev: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    /// Also shown as the creation time.
    pub(crate) ctime: SystemTime,
}

impl Attr {
    /// The attributes as the kernel takes them: blocks of 512 bytes as
    /// many as the size needs, 4 KiB I/O blocks.
    pub(crate) fn to_fuse(self) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.ino),
            size: self.size,
            blocks: self.size.div_ceil(512),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind: self.kind,
            perm: self.perm,
            nlink: u32::try_from(self.nlink).unwrap_or(u32::MAX),
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: 4096,
            flags: 0,
        }
    }
}

/// Answers an extended attribute request for `value`: its size when asked
/// with size 0 (the probe), `ERANGE` if it does not fit, else the bytes.
pub(crate) fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len)
    } else if size < len {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}

/// Sequential reads of a file are served from windows of this many bytes,
/// fetched with one `read_range` each (the store's largest chunk): the
/// kernel asks for 256 KiB at a time, and a chunk read for each of those
/// would read and verify most chunks twice. A read that does not start
/// where the last read of its content ended fetches only its own range, so
/// a random 4 KiB read touches only the one or two chunks under it.
pub(crate) const READ_WINDOW_LEN: u64 = 1 << 20;

/// How many contents keep a read window (least recently read dropped
/// first): bounds their memory to this many times [`READ_WINDOW_LEN`].
pub(crate) const READ_WINDOWS_MAX: usize = 16;

/// Where reading a content has got to.
#[derive(Debug, Default)]
struct ReadState {
    /// Where the last read ended: a read starting here is sequential.
    next_offset: u64,
    /// The current window: its offset in the content and its bytes.
    window: Option<(u64, Bytes)>,
}

/// Why a windowed read failed, for the caller's log.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The store failed.
    Store {
        /// What was being read.
        what: String,
        /// Why.
        source: vst::Error,
    },
    /// The store returned another length than asked: its contract broken.
    Length {
        /// What was being read.
        what: String,
        /// What it returned.
        len: usize,
    },
}

impl ReadError {
    /// The errno the read is answered with.
    pub(crate) fn errno(&self) -> Errno {
        match self {
            ReadError::Store { source, .. } => errno(source),
            ReadError::Length { .. } => Errno::EIO,
        }
    }
}

/// Stored file content read through windows, kept per content (by blob
/// id, not by inode: content never changes under its id, so a window is
/// never stale, whatever the file holds later; and with zero-message opens
/// the kernel sends no file handle to key them by).
#[derive(Debug, Default)]
pub(crate) struct Windows {
    /// The read states of the contents read last, most recent at the end.
    reads: Mutex<Vec<(BlobId, Arc<Mutex<ReadState>>)>>,
}

impl Windows {
    /// `size` bytes of `file`'s content from `offset` (fewer at its end),
    /// from `store`. The caller has checked that the blob has the size the
    /// entry records. A content's state is locked across the store read,
    /// so that the kernel's parallel reads of one file fetch each window
    /// once.
    pub(crate) fn read(
        &self,
        store: &dyn Store,
        file: &FileEntry,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, ReadError> {
        let end = offset.saturating_add(u64::from(size)).min(file.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let state = self.state(file.id);
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((start, bytes)) = &state.window {
            let window_end = start + bytes.len() as u64;
            if offset >= *start && end <= window_end {
                let out = bytes.slice((offset - start) as usize..(end - start) as usize);
                state.next_offset = end;
                return Ok(out);
            }
        }
        let out = if offset == state.next_offset {
            let window_end = offset.saturating_add(READ_WINDOW_LEN).min(file.size).max(end);
            let bytes = read_range(store, file, offset, window_end - offset)?;
            let out = bytes.slice(0..(end - offset) as usize);
            state.window = Some((offset, bytes));
            out
        } else {
            read_range(store, file, offset, end - offset)?
        };
        state.next_offset = end;
        Ok(out)
    }

    /// How many contents have a read state.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.reads.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The read state of `id`, made the most recent; the oldest is
    /// dropped past [`READ_WINDOWS_MAX`].
    fn state(&self, id: BlobId) -> Arc<Mutex<ReadState>> {
        let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        let state = match reads.iter().position(|(i, _)| *i == id) {
            Some(at) => reads.remove(at).1,
            None => Arc::default(),
        };
        reads.push((id, state.clone()));
        if reads.len() > READ_WINDOWS_MAX {
            reads.remove(0);
        }
        state
    }
}

/// `len` bytes of `file`'s content from `offset`, exactly.
fn read_range(
    store: &dyn Store,
    file: &FileEntry,
    offset: u64,
    len: u64,
) -> Result<Bytes, ReadError> {
    let what = || format!("reading {len} bytes at {offset} of blob {}", file.id);
    let bytes = store
        .read_range(&file.id.object_id(), offset, len)
        .map_err(|e| ReadError::Store { what: what(), source: e.into() })?;
    // The store's contract, checked: the slicing of windows relies on it.
    if bytes.len() as u64 != len {
        return Err(ReadError::Length { what: what(), len: bytes.len() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use vst_cas::MemStore;

    use super::*;

    fn stored(store: &MemStore, content: &[u8]) -> FileEntry {
        let id = BlobId::of(content);
        store.put(id.object_id(), content).unwrap();
        FileEntry { id, size: content.len() as u64, executable: false }
    }

    #[test]
    fn windows_are_kept_per_content_and_bounded() {
        let store = MemStore::new();
        let windows = Windows::default();
        let files: Vec<(Vec<u8>, FileEntry)> = (0..READ_WINDOWS_MAX + 4)
            .map(|i| {
                let content: Vec<u8> = (0..3000).map(|j| (i * 31 + j) as u8).collect();
                let entry = stored(&store, &content);
                (content, entry)
            })
            .collect();
        for (content, entry) in &files {
            for (offset, size) in [(0, 1000), (1000, 1000), (2000, 5000), (1500, 10), (3000, 1)] {
                let got = windows.read(&store, entry, offset, size).unwrap();
                let end = (offset as usize + size as usize).min(content.len());
                assert_eq!(&got[..], &content[offset as usize..end]);
            }
        }
        assert_eq!(windows.len(), READ_WINDOWS_MAX);
        // A store that breaks its contract fails the read, not the slicing.
        let missing = FileEntry { id: BlobId::of(b"nowhere"), size: 7, executable: false };
        let e = windows.read(&store, &missing, 0, 7).unwrap_err();
        assert!(matches!(e, ReadError::Store { .. }), "{e:?}");
        assert_eq!(e.errno(), Errno::EIO);
    }
}
