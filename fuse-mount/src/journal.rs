//! The writable mount's metadata journal (`.vst/mount/journal`): what
//! changed since the commit the mount is based on, so that a daemon killed
//! after an `fsync` comes back with everything that `fsync` covered. The
//! byte layout is in `docs/format.md`.
//!
//! The journal is append-only. Each record is framed as
//! `len: u32 LE | crc32(payload): u32 LE | payload` (payload in postcard),
//! after an 8-byte magic. Reading stops at the first frame that is torn or
//! fails its CRC: everything before it is the journal. A mount replays it
//! and writes a new one ([`Journal::create`]), so a torn tail is never
//! appended to.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The first bytes of a journal file.
pub(crate) const MAGIC: &[u8; 8] = b"VSTJRN01";

/// A frame's payload is at most this long (a record holds at most two
/// paths of at most 64 KiB each, plus a symlink target): a longer length
/// is damage, not a record.
const RECORD_LEN_MAX: u32 = 1 << 20;

/// One change, by path (components joined by `/`, as in `RepoPath`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// The state is this commit's tree (or the empty tree, with no
    /// commit); the records after it apply to it. Starts every journal,
    /// and is appended after each commit and checkout through the mount.
    Base {
        /// The commit, by id.
        commit: Option<[u8; 32]>,
    },
    /// A regular file whose content is in the store.
    File {
        /// Where.
        path: Vec<u8>,
        /// BLAKE3 of the content.
        id: [u8; 32],
        /// Its length.
        size: u64,
        /// The executable bit.
        executable: bool,
    },
    /// A regular file whose content is the overlay file `overlay/N`,
    /// written when a file is fsynced before it is closed.
    Overlay {
        /// Where.
        path: Vec<u8>,
        /// The overlay file's number.
        overlay: u64,
        /// The executable bit.
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Where.
        path: Vec<u8>,
        /// Its target.
        target: Vec<u8>,
    },
    /// A directory (with any missing parents).
    Mkdir {
        /// Where.
        path: Vec<u8>,
    },
    /// Whatever is at `path` is gone (a directory with all it held).
    Remove {
        /// Where.
        path: Vec<u8>,
    },
    /// What was at `from` is now at `to`, replacing what was there.
    Rename {
        /// From where.
        from: Vec<u8>,
        /// To where.
        to: Vec<u8>,
    },
    /// The executable bit of the file at `path` changed.
    Executable {
        /// Where.
        path: Vec<u8>,
        /// The new bit.
        executable: bool,
    },
}

/// The open journal: appends go to the operating system at once (so a
/// killed daemon loses none), and are durable after [`Journal::sync`].
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    /// How long it was when written whole ([`Journal::create`]).
    created_len: u64,
    /// How many records it holds.
    records: u64,
}

impl Journal {
    /// Replaces the journal at `path` with one holding `records`,
    /// atomically and durably: written to a temporary file, synced,
    /// renamed over the old one, the directory synced.
    pub(crate) fn create(path: &Path, records: &[Record]) -> io::Result<Self> {
        let tmp = path.with_extension("tmp");
        let mut bytes = MAGIC.to_vec();
        for record in records {
            frame(record, &mut bytes)?;
        }
        {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = bytes.len() as u64;
        let records = records.len() as u64;
        Ok(Self { path: path.to_owned(), file: Arc::new(file), len, created_len: len, records })
    }

    /// Appends `record` (handed to the operating system, not synced).
    pub(crate) fn append(&mut self, record: &Record) -> io::Result<()> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends `records` in one write.
    pub(crate) fn append_all(&mut self, records: &[Record]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            frame(record, &mut bytes)?;
        }
        self.file.write_all_at(&bytes, self.len)?;
        self.len += bytes.len() as u64;
        self.records += records.len() as u64;
        Ok(())
    }

    /// The file, to sync without holding whatever guards the journal.
    pub(crate) fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// How long the journal is.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// How many records it holds.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Whether anything was appended since it was written whole.
    pub(crate) fn grown(&self) -> bool {
        self.len > self.created_len
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Appends the frame of `record` to `out`.
fn frame(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = postcard::to_allocvec(record).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= RECORD_LEN_MAX)
        .ok_or_else(|| io::Error::other("journal record too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// What reading a journal found.
#[derive(Debug)]
pub(crate) struct Read {
    /// The valid records, in order.
    pub(crate) records: Vec<Record>,
    /// How many bytes they take, with the magic.
    pub(crate) valid_len: u64,
    /// Whether anything followed them (a torn or damaged tail).
    pub(crate) torn: bool,
}

/// Reads the journal at `path`; `None` if there is none. A file that does
/// not start with the magic is an error (not ours: never cut).
pub(crate) fn read(path: &Path) -> io::Result<Option<Read>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a vst mount journal", path.display()),
        ));
    }
    let mut at = MAGIC.len();
    let mut records = Vec::new();
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > RECORD_LEN_MAX {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(record) = postcard::from_bytes::<Record>(payload) else { break };
        records.push(record);
        at += 8 + len as usize;
    }
    Ok(Some(Read { records, valid_len: at as u64, torn: at != bytes.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        assert!(read(&path).unwrap().is_none());
        let base = Record::Base { commit: Some([7; 32]) };
        let mut journal = Journal::create(&path, std::slice::from_ref(&base)).unwrap();
        assert!(!journal.grown() && journal.records() == 1);
        let records = vec![
            base,
            Record::Mkdir { path: b"a".to_vec() },
            Record::File { path: b"a/f".to_vec(), id: [1; 32], size: 3, executable: true },
            Record::Rename { from: b"a/f".to_vec(), to: b"g".to_vec() },
            Record::Overlay { path: b"g".to_vec(), overlay: 9, executable: false },
        ];
        for r in &records[1..] {
            journal.append(r).unwrap();
        }
        assert!(journal.grown() && journal.records() == records.len() as u64);
        let found = read(&path).unwrap().unwrap();
        assert_eq!(found.records, records);
        assert!(!found.torn);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the last record drops only that record.
        let last_start = {
            let mut partial = read(&path).unwrap().unwrap();
            partial.records.pop();
            let mut bytes = MAGIC.to_vec();
            for r in &partial.records {
                frame(r, &mut bytes).unwrap();
            }
            bytes.len()
        };
        for cut in last_start..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let found = read(&path).unwrap().unwrap();
            assert_eq!(found.records, records[..4], "cut at {cut}");
            assert_eq!(found.valid_len, last_start as u64);
            assert_eq!(found.torn, cut != last_start);
        }
        // A flipped byte in a record ends the journal there.
        let mut bad = full.clone();
        bad[last_start + 9] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let found = read(&path).unwrap().unwrap();
        assert_eq!(found.records.len(), 4);
        assert!(found.torn);
        // Rewriting keeps what was valid, and appends follow it.
        let mut journal = Journal::create(&path, &found.records).unwrap();
        journal.append(&Record::Remove { path: b"g".to_vec() }).unwrap();
        let found = read(&path).unwrap().unwrap();
        assert_eq!(found.records.len(), 5);
        assert!(!found.torn);
        std::fs::write(&path, b"something else").unwrap();
        assert!(read(&path).is_err());
    }
}
