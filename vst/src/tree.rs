//! Tree objects (directories) and their canonical encoding.
//!
//! The byte layout is specified in `docs/format.md`; this module is its
//! implementation. Encoding is a pure function and cannot fail. Decoding
//! accepts only canonical input: for every `b` that decodes,
//! `Tree::decode(b)?.encode() == b`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::{BlobId, TreeId};
use crate::limits::{SYMLINK_TARGET_LEN_MAX, TREE_ENTRIES_MAX};
use crate::name::{InvalidName, Name};

/// The first byte of every encoded tree.
pub const TREE_FORMAT_VERSION: u8 = 1;

/// A regular file in a tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FileEntry {
    /// The id of the content: BLAKE3 of the file's bytes.
    pub id: BlobId,
    /// Length of the content in bytes.
    pub size: u64,
    /// Whether the file is executable (the only permission bit vst versions).
    pub executable: bool,
}

/// The target of a symbolic link: any bytes but NUL, not empty, at most
/// [`SYMLINK_TARGET_LEN_MAX`] bytes. It is stored as written, never
/// resolved: a target may point anywhere, and checkout creates the link
/// without following it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SymlinkTarget(Arc<[u8]>);

/// Why a symlink target was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSymlink {
    /// The target is empty.
    #[error("a symlink target cannot be empty")]
    Empty,
    /// The target holds a NUL byte.
    #[error("a symlink target cannot contain a NUL byte")]
    Nul,
    /// The target is longer than [`SYMLINK_TARGET_LEN_MAX`].
    #[error("a symlink target is at most {SYMLINK_TARGET_LEN_MAX} bytes, this one has {0}")]
    TooLong(usize),
}

impl SymlinkTarget {
    /// The target's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<&[u8]> for SymlinkTarget {
    type Error = InvalidSymlink;
    fn try_from(bytes: &[u8]) -> Result<Self, InvalidSymlink> {
        if bytes.is_empty() {
            Err(InvalidSymlink::Empty)
        } else if bytes.len() > SYMLINK_TARGET_LEN_MAX {
            Err(InvalidSymlink::TooLong(bytes.len()))
        } else if bytes.contains(&0) {
            Err(InvalidSymlink::Nul)
        } else {
            Ok(Self(bytes.into()))
        }
    }
}

impl TryFrom<&str> for SymlinkTarget {
    type Error = InvalidSymlink;
    fn try_from(s: &str) -> Result<Self, InvalidSymlink> {
        Self::try_from(s.as_bytes())
    }
}

impl fmt::Debug for SymlinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// What a tree entry is.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum EntryKind {
    /// A regular file.
    File(FileEntry),
    /// A directory, by the id of its tree.
    Dir(TreeId),
    /// A symbolic link.
    Symlink(SymlinkTarget),
}

/// One entry of a tree: a name and what it names.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TreeEntry {
    /// The entry's name in its directory.
    pub name: Name,
    /// What the entry is.
    pub kind: EntryKind,
}

/// A directory: entries with unique names, sorted by name bytes.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Tree {
    entries: Vec<TreeEntry>,
}

/// Why bytes are not a valid encoding of an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is empty: not even a version byte.
    #[error("empty input")]
    Empty,
    /// The leading format version is not one this build knows.
    #[error("unknown format version {version}")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
    },
    /// A field could not be decoded (truncated input, a bad varint, a bad
    /// tag, invalid UTF-8).
    #[error("malformed {field}")]
    Malformed {
        /// The field being decoded.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: postcard::Error,
    },
    /// A count is over its limit.
    #[error("{field} count {count} is over the limit of {max}")]
    TooMany {
        /// What was counted.
        field: &'static str,
        /// The count found.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// A string field is over its limit.
    #[error("{field} of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An entry name breaks the naming rules.
    #[error("invalid entry name {name:?}")]
    InvalidName {
        /// The name, lossily decoded.
        name: String,
        /// The rule it breaks.
        #[source]
        source: InvalidName,
    },
    /// A symlink target breaks its rules.
    #[error("invalid symlink target for entry {name:?}")]
    InvalidSymlink {
        /// The entry's name.
        name: String,
        /// The rule it breaks.
        #[source]
        source: InvalidSymlink,
    },
    /// Entries are not in strictly increasing name order (this includes a
    /// duplicated name).
    #[error("entry {name:?} is out of order or duplicated")]
    Unsorted {
        /// The entry that is out of place.
        name: String,
    },
    /// A timezone offset is outside of ±24 hours.
    #[error("timezone offset of {minutes} minutes is out of range")]
    InvalidTimezone {
        /// The offset found.
        minutes: i16,
    },
    /// Bytes follow the end of the object.
    #[error("{len} bytes after the end of the object")]
    TrailingBytes {
        /// How many.
        len: usize,
    },
    /// The input decodes, but is not the canonical encoding of what it
    /// decodes to (for example an over-long varint).
    #[error("not the canonical encoding")]
    NotCanonical,
}

/// Why a list of entries cannot form a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTree {
    /// Two entries share a name.
    #[error("duplicate entry name {0}")]
    Duplicate(Name),
    /// More entries than [`TREE_ENTRIES_MAX`].
    #[error("{0} entries is over the limit of {TREE_ENTRIES_MAX}")]
    TooManyEntries(usize),
}

impl Tree {
    /// A tree of `entries`, in any order; they are sorted by name.
    pub fn new(mut entries: Vec<TreeEntry>) -> Result<Self, InvalidTree> {
        if entries.len() > TREE_ENTRIES_MAX {
            return Err(InvalidTree::TooManyEntries(entries.len()));
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(InvalidTree::Duplicate(pair[0].name.clone()));
        }
        Ok(Self { entries })
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// The entry called `name`, if any.
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_entries(
            self.entries.len(),
            self.entries.iter().map(|e| (e.name.as_bytes(), WireKind::from(&e.kind))),
        )
    }

    /// The tree's id: BLAKE3 of its canonical encoding.
    pub fn id(&self) -> TreeId {
        TreeId::of(&self.encode())
    }

    /// Decodes a canonical encoding. Anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let rest = check_version(bytes, TREE_FORMAT_VERSION)?;
        let (count, mut rest) = take::<u64>(rest, "entry count")?;
        if count > TREE_ENTRIES_MAX as u64 {
            return Err(DecodeError::TooMany { field: "entry", count, max: TREE_ENTRIES_MAX });
        }
        // Every entry takes at least 5 bytes (name length, one name byte,
        // tag, the shortest symlink target), so a crafted count cannot make
        // this allocate more than the input's size in entries.
        let mut entries = Vec::with_capacity((count as usize).min(rest.len() / 5));
        for _ in 0..count {
            let (wire, next) = take::<WireEntry<'_>>(rest, "tree entry")?;
            rest = next;
            let name = Name::try_from(wire.name).map_err(|source| DecodeError::InvalidName {
                name: String::from_utf8_lossy(wire.name).into_owned(),
                source,
            })?;
            if let Some(prev) = entries.last().map(|e: &TreeEntry| &e.name)
                && prev >= &name
            {
                return Err(DecodeError::Unsorted { name: name.to_string() });
            }
            let kind = match wire.kind {
                WireKind::File { id, size, executable } => {
                    EntryKind::File(FileEntry { id: BlobId::new(id.into_id()), size, executable })
                }
                WireKind::Dir { id } => EntryKind::Dir(TreeId::new(id.into_id())),
                WireKind::Symlink { target } => {
                    EntryKind::Symlink(SymlinkTarget::try_from(target).map_err(|source| {
                        DecodeError::InvalidSymlink { name: name.to_string(), source }
                    })?)
                }
            };
            entries.push(TreeEntry { name, kind });
        }
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { len: rest.len() });
        }
        let tree = Self { entries };
        if tree.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(tree)
    }
}

/// A 32-byte digest on the wire: postcard writes a byte array as its bytes.
#[derive(Serialize, Deserialize, Clone, Copy)]
pub(crate) struct WireId([u8; 32]);

impl WireId {
    pub(crate) fn into_id(self) -> vst_cas::ObjectId {
        vst_cas::ObjectId::from_bytes(self.0)
    }
}

impl From<vst_cas::ObjectId> for WireId {
    fn from(id: vst_cas::ObjectId) -> Self {
        Self(*id.as_bytes())
    }
}

/// One tree entry on the wire, as postcard decodes it. The field order and
/// the variant order are the format: changing either changes every tree id.
#[derive(Deserialize)]
struct WireEntry<'a> {
    #[serde(borrow)]
    name: &'a [u8],
    #[serde(borrow)]
    kind: WireKind<'a>,
}

#[derive(Deserialize)]
pub(crate) enum WireKind<'a> {
    File { id: WireId, size: u64, executable: bool },
    Dir { id: WireId },
    Symlink { target: &'a [u8] },
}

impl<'a> From<&'a EntryKind> for WireKind<'a> {
    fn from(kind: &'a EntryKind) -> Self {
        match kind {
            EntryKind::File(f) => WireKind::File {
                id: f.id.object_id().into(),
                size: f.size,
                executable: f.executable,
            },
            EntryKind::Dir(id) => WireKind::Dir { id: id.object_id().into() },
            EntryKind::Symlink(t) => WireKind::Symlink { target: t.as_bytes() },
        }
    }
}

/// Encodes `count` entries, which the caller yields sorted by name and
/// unique. Shared by [`Tree::encode`] and the working set's commit, so both
/// produce the same bytes for the same directory.
///
/// This writes postcard's encoding of the entry list by hand: a byte slice
/// is a varint length and the bytes, an enum is a varint variant index and
/// its fields, a `u64` a varint, a `bool` one byte, `[u8; 32]` its 32
/// bytes. Going through serde wrote slices one byte at a time and cost a
/// fifth of an incremental commit. [`Tree::decode`] decodes with postcard
/// itself and requires the re-encoding to match, so the two cannot drift
/// apart unnoticed.
pub(crate) fn encode_entries<'a>(
    count: usize,
    entries: impl Iterator<Item = (&'a [u8], WireKind<'a>)>,
) -> Vec<u8> {
    // 64 bytes covers a typical file entry (name, tag, id, size, flag).
    let mut out = Vec::with_capacity(11 + count * 64);
    out.push(TREE_FORMAT_VERSION);
    put_varint(&mut out, count as u64);
    let mut written = 0usize;
    let mut prev: Option<&[u8]> = None;
    for (name, kind) in entries {
        // Checked before the bytes can reach a store: an unsorted tree would
        // get an id that no decoder accepts.
        assert!(prev.is_none_or(|p| p < name), "tree entries must be sorted and unique");
        prev = Some(name);
        put_bytes(&mut out, name);
        match kind {
            WireKind::File { id, size, executable } => {
                out.push(0);
                out.extend_from_slice(&id.0);
                put_varint(&mut out, size);
                out.push(executable as u8);
            }
            WireKind::Dir { id } => {
                out.push(1);
                out.extend_from_slice(&id.0);
            }
            WireKind::Symlink { target } => {
                out.push(2);
                put_bytes(&mut out, target);
            }
        }
        written += 1;
    }
    assert_eq!(written, count, "the entry count must match the entries");
    out
}

/// LEB128, as postcard writes every integer wider than a byte: seven bits
/// a byte, low bits first, the high bit set on all but the last byte.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Splits off and checks the leading format version byte.
pub(crate) fn check_version(bytes: &[u8], expected: u8) -> Result<&[u8], DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&v, rest)) if v == expected => Ok(rest),
        Some((&version, _)) => Err(DecodeError::UnknownVersion { version }),
    }
}

/// Decodes one postcard value from the front of `bytes`.
pub(crate) fn take<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    field: &'static str,
) -> Result<(T, &'a [u8]), DecodeError> {
    postcard::take_from_bytes(bytes).map_err(|source| DecodeError::Malformed { field, source })
}
