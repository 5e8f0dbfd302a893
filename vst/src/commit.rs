//! Commit objects and their canonical encoding.

use smallvec::SmallVec;

use crate::id::{CommitId, TreeId};
use crate::limits::{AUTHOR_LEN_MAX, COMMIT_PARENTS_MAX, MESSAGE_LEN_MAX};
use crate::tree::{DecodeError, WireId, check_version, take};

/// The first byte of every encoded commit.
pub const COMMIT_FORMAT_VERSION: u8 = 1;

/// Largest timezone offset, in minutes, exclusive: a day.
const TZ_OFFSET_MIN_LIMIT: i16 = 24 * 60;

/// When a commit was made.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Timestamp {
    /// Microseconds since the Unix epoch, UTC.
    pub unix_us: i64,
    /// The author's offset from UTC, in minutes (for display only).
    pub tz_offset_min: i16,
}

impl Timestamp {
    /// The current time, in UTC.
    pub fn now() -> Self {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self {
            unix_us: i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
            tz_offset_min: 0,
        }
    }
}

/// A commit: a tree, its parents, and who made it when and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Commit {
    /// The root tree.
    pub tree: TreeId,
    /// The parent commits: none for a first commit, one usually, more for a
    /// merge.
    pub parents: SmallVec<[CommitId; 1]>,
    /// Who made it (free text, at most [`AUTHOR_LEN_MAX`] bytes).
    pub author: String,
    /// When it was made.
    pub time: Timestamp,
    /// Why it was made (at most [`MESSAGE_LEN_MAX`] bytes).
    pub message: String,
}

/// Why a commit cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommit {
    /// More parents than [`COMMIT_PARENTS_MAX`].
    #[error("a commit has at most {COMMIT_PARENTS_MAX} parents, this one has {0}")]
    TooManyParents(usize),
    /// The author is longer than [`AUTHOR_LEN_MAX`].
    #[error("the author is at most {AUTHOR_LEN_MAX} bytes, this one has {0}")]
    AuthorTooLong(usize),
    /// The message is longer than [`MESSAGE_LEN_MAX`].
    #[error("the message is at most {MESSAGE_LEN_MAX} bytes, this one has {0}")]
    MessageTooLong(usize),
    /// The timezone offset is a day or more.
    #[error("timezone offset of {0} minutes is out of range")]
    Timezone(i16),
}

impl Commit {
    /// Checks the limits; [`Commit::encode`] requires a valid commit.
    pub fn validate(&self) -> Result<(), InvalidCommit> {
        if self.parents.len() > COMMIT_PARENTS_MAX {
            return Err(InvalidCommit::TooManyParents(self.parents.len()));
        }
        if self.author.len() > AUTHOR_LEN_MAX {
            return Err(InvalidCommit::AuthorTooLong(self.author.len()));
        }
        if self.message.len() > MESSAGE_LEN_MAX {
            return Err(InvalidCommit::MessageTooLong(self.message.len()));
        }
        if !tz_in_range(self.time.tz_offset_min) {
            return Err(InvalidCommit::Timezone(self.time.tz_offset_min));
        }
        Ok(())
    }

    /// The canonical encoding; an error if the commit breaks a limit
    /// ([`Commit::validate`]), since it could never be decoded.
    pub fn encode(&self) -> Result<Vec<u8>, InvalidCommit> {
        self.validate()?;
        let parents: SmallVec<[WireId; 2]> =
            self.parents.iter().map(|p| p.object_id().into()).collect();
        let wire = WireCommit {
            tree: self.tree.object_id().into(),
            parents: &parents,
            author: &self.author,
            time_unix_us: self.time.unix_us,
            tz_offset_min: self.time.tz_offset_min,
            message: &self.message,
        };
        let out = vec![COMMIT_FORMAT_VERSION];
        Ok(postcard::to_extend(&wire, out).expect("writing to a Vec cannot fail"))
    }

    /// The commit's id: BLAKE3 of its canonical encoding.
    pub fn id(&self) -> Result<CommitId, InvalidCommit> {
        self.encode().map(|bytes| CommitId::of(&bytes))
    }

    /// Decodes a canonical encoding. Anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let rest = check_version(bytes, COMMIT_FORMAT_VERSION)?;
        let (tree, rest) = take::<WireId>(rest, "tree id")?;
        let (count, mut rest) = take::<u64>(rest, "parent count")?;
        if count > COMMIT_PARENTS_MAX as u64 {
            return Err(DecodeError::TooMany { field: "parent", count, max: COMMIT_PARENTS_MAX });
        }
        let mut parents = SmallVec::new();
        for _ in 0..count {
            let (parent, next) = take::<WireId>(rest, "parent id")?;
            parents.push(CommitId::new(parent.into_id()));
            rest = next;
        }
        let (author, rest) = take::<&str>(rest, "author")?;
        check_len("author", author.len(), AUTHOR_LEN_MAX)?;
        let (unix_us, rest) = take::<i64>(rest, "time")?;
        let (tz_offset_min, rest) = take::<i16>(rest, "timezone")?;
        if !tz_in_range(tz_offset_min) {
            return Err(DecodeError::InvalidTimezone { minutes: tz_offset_min });
        }
        let (message, rest) = take::<&str>(rest, "message")?;
        check_len("message", message.len(), MESSAGE_LEN_MAX)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { len: rest.len() });
        }
        let commit = Commit {
            tree: TreeId::new(tree.into_id()),
            parents,
            author: author.to_owned(),
            time: Timestamp { unix_us, tz_offset_min },
            message: message.to_owned(),
        };
        if commit.encode().ok().as_deref() != Some(bytes) {
            return Err(DecodeError::NotCanonical);
        }
        Ok(commit)
    }
}

/// Offsets strictly between -24 h and +24 h. (Not `abs()`: `i16::MIN`
/// has no absolute value.)
fn tz_in_range(minutes: i16) -> bool {
    -TZ_OFFSET_MIN_LIMIT < minutes && minutes < TZ_OFFSET_MIN_LIMIT
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max { Err(DecodeError::TooLong { field, len, max }) } else { Ok(()) }
}

/// A commit on the wire. Postcard writes a struct as its fields in order,
/// which is what [`Commit::decode`] reads one by one.
#[derive(serde::Serialize)]
struct WireCommit<'a> {
    tree: WireId,
    parents: &'a [WireId],
    author: &'a str,
    time_unix_us: i64,
    tz_offset_min: i16,
    message: &'a str,
}
