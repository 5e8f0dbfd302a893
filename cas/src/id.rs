//! Object ids: BLAKE3 digests of an object's bytes.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;

/// Length of an [`ObjectId`] in bytes.
pub const ID_LEN: usize = 32;

/// The address of an object in a store: the BLAKE3 hash of its bytes.
///
/// The store does not know what kind of object an id names; the typed ids of
/// the `vst` crate (`BlobId`, `TreeId`, `CommitId`) wrap this one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId([u8; ID_LEN]);

impl ObjectId {
    /// The id of `bytes`: their BLAKE3 hash.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps raw digest bytes (for example read from disk).
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl From<blake3::Hash> for ObjectId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Twelve hex digits are plenty to tell ids apart in logs and test output.
        write!(f, "ObjectId({})", &self.to_string()[..12])
    }
}

/// Why a string is not an object id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string is not exactly 64 bytes long.
    #[error("an object id is 64 hexadecimal digits, got {len} bytes")]
    Length {
        /// The length that was given.
        len: usize,
    },
    /// The string holds a character that is not a hexadecimal digit.
    #[error("an object id is made of hexadecimal digits, found {found:?}")]
    Digit {
        /// The offending character.
        found: char,
    },
}

impl FromStr for ObjectId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != ID_LEN * 2 {
            return Err(ParseIdError::Length { len: s.len() });
        }
        let mut out = [0u8; ID_LEN];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Result<u8, ParseIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseIdError::Digit { found: c as char }),
    }
}

/// A hasher for maps keyed by [`ObjectId`].
///
/// Ids are already uniform random bits, so the first eight bytes are as good
/// a hash as SipHash would compute, at no cost. Only for keys that are ids:
/// it reads nothing but the first eight bytes it is given.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }
}

/// A `BuildHasher` for `HashMap<ObjectId, _>`.
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ObjectId::of(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(text.parse::<ObjectId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<ObjectId>().unwrap(), id);
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert_eq!("abc".parse::<ObjectId>(), Err(ParseIdError::Length { len: 3 }));
        let bad = "g".repeat(64);
        assert_eq!(bad.parse::<ObjectId>(), Err(ParseIdError::Digit { found: 'g' }));
        // A multi-byte character must not be sliced mid-way.
        let odd = format!("{}é", "a".repeat(62));
        assert!(odd.parse::<ObjectId>().is_err());
    }
}
