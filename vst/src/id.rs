//! Typed object ids.
//!
//! A file's id is the BLAKE3 hash of its raw bytes (so `b3sum` agrees with
//! vst); a tree's and a commit's id is the BLAKE3 hash of its canonical
//! encoding. The types keep the three apart: a `TreeId` cannot be passed
//! where a `BlobId` is expected.

use std::fmt;
use std::str::FromStr;

use vst_cas::{ObjectId, ParseIdError};

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(ObjectId);

        impl $name {
            /// Wraps a store id.
            pub const fn new(id: ObjectId) -> Self {
                Self(id)
            }

            /// The id of `bytes`: their BLAKE3 hash.
            pub fn of(bytes: &[u8]) -> Self {
                Self(ObjectId::of(bytes))
            }

            /// The untyped store id.
            pub const fn object_id(&self) -> ObjectId {
                self.0
            }

            /// The raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }
        }

        impl From<$name> for ObjectId {
            fn from(id: $name) -> ObjectId {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.0.to_string()[..12])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

typed_id!(
    /// The id of a file's content: BLAKE3 of its raw bytes.
    BlobId
);
typed_id!(
    /// The id of a tree (a directory): BLAKE3 of its canonical encoding.
    TreeId
);
typed_id!(
    /// The id of a commit: BLAKE3 of its canonical encoding.
    CommitId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_is_plain_blake3() {
        let id = BlobId::of(b"hello world\n");
        assert_eq!(id.to_string(), blake3::hash(b"hello world\n").to_hex().as_str());
        assert_eq!(id.to_string().parse::<BlobId>().unwrap(), id);
    }
}
