//! Validated names (path components) and repository paths.

use std::borrow::Borrow;
use std::fmt;

use smallvec::SmallVec;

use crate::limits::{NAME_LEN_MAX, PATH_DEPTH_MAX};
use crate::repo::REPO_DIR_NAME;

/// Why a name or a path was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is empty.
    #[error("a name cannot be empty")]
    Empty,
    /// The name is `.` or `..`.
    #[error("a name cannot be `.` or `..`")]
    Dot,
    /// The name holds a `/`.
    #[error("a name cannot contain `/`")]
    Slash,
    /// The name holds a NUL byte.
    #[error("a name cannot contain a NUL byte")]
    Nul,
    /// The name is longer than [`NAME_LEN_MAX`].
    #[error("a name is at most {NAME_LEN_MAX} bytes, this one has {0}")]
    TooLong(usize),
    /// The path has more than [`PATH_DEPTH_MAX`] components.
    #[error("a path has at most {PATH_DEPTH_MAX} components")]
    TooDeep,
    /// The name is `.vst` in some letter case: the name of the repository
    /// directory.
    #[error(
        "a name cannot be `{REPO_DIR_NAME}` in any letter case: that is the repository directory"
    )]
    RepoDir,
}

/// Checks the rules of a name: not empty, not `.` or `..`, not `.vst` in
/// any letter case, no `/`, no NUL, at most [`NAME_LEN_MAX`] bytes. Any
/// other bytes, UTF-8 or not, are fine.
///
/// `.vst` is refused at every depth (as git refuses `.git`): a tree that
/// held one would write a repository directory when checked out, and a
/// tree's `.vst/store` in the root of a clone would send the next commit's
/// objects wherever it names. Refused in every letter case, whatever the
/// filesystem, so that a tree checked out where names fold case cannot
/// carry one either.
pub fn validate_name(bytes: &[u8]) -> Result<(), InvalidName> {
    match bytes {
        [] => Err(InvalidName::Empty),
        b"." | b".." => Err(InvalidName::Dot),
        _ if bytes.eq_ignore_ascii_case(REPO_DIR_NAME.as_bytes()) => Err(InvalidName::RepoDir),
        _ if bytes.len() > NAME_LEN_MAX => Err(InvalidName::TooLong(bytes.len())),
        _ => match bytes.iter().find(|&&b| b == b'/' || b == 0) {
            Some(b'/') => Err(InvalidName::Slash),
            Some(_) => Err(InvalidName::Nul),
            None => Ok(()),
        },
    }
}

/// One component of a path: a validated directory-entry name.
///
/// Built only through `TryFrom`, so a `Name` always keeps the rules of
/// [`validate_name`]. Names order by their bytes, which is the order of
/// entries in a tree. Short names (most of them) are stored inline, so
/// cloning one does not allocate.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(SmallVec<[u8; 24]>);

impl Name {
    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// For bytes already known to be valid (a component of a [`RepoPath`]).
    pub(crate) fn from_valid(bytes: &[u8]) -> Self {
        debug_assert_eq!(validate_name(bytes), Ok(()));
        Self(SmallVec::from_slice(bytes))
    }
}

impl TryFrom<&[u8]> for Name {
    type Error = InvalidName;
    fn try_from(bytes: &[u8]) -> Result<Self, InvalidName> {
        validate_name(bytes)?;
        Ok(Self(SmallVec::from_slice(bytes)))
    }
}

impl TryFrom<&str> for Name {
    type Error = InvalidName;
    fn try_from(s: &str) -> Result<Self, InvalidName> {
        Self::try_from(s.as_bytes())
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// A path inside a repository: names joined by `/`, relative to the root.
/// The empty path is the root itself.
///
/// Built only through `TryFrom` (or [`RepoPath::join`]), so every component is
/// a valid [`Name`]: no empty component, no `.`, `..` or `.vst`, no leading or
/// trailing `/`, at most [`PATH_DEPTH_MAX`] components. Bytes need not be
/// UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RepoPath(Box<[u8]>);

impl RepoPath {
    /// The root of the repository.
    pub fn root() -> Self {
        Self::default()
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's bytes, components joined by `/`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The components from the root down; none for the root.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> + Clone {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// How many components the path has.
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The parent directory and the last component, or `None` for the root.
    pub fn split_last(&self) -> Option<(RepoPath, &[u8])> {
        self.split_last_bytes().map(|(parent, name)| (RepoPath(parent.into()), name))
    }

    /// The parent's bytes and the last component, without allocating;
    /// `None` for the root.
    pub fn split_last_bytes(&self) -> Option<(&[u8], &[u8])> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.0[..i], &self.0[i + 1..]),
            None => (&[][..], &self.0[..]),
        })
    }

    /// The path made of the first `depth` components.
    pub fn prefix(&self, depth: usize) -> RepoPath {
        if depth == 0 {
            return RepoPath::root();
        }
        let slashes = self.0.iter().enumerate().filter(|(_, b)| **b == b'/');
        let end = slashes.map(|(i, _)| i).nth(depth - 1).unwrap_or(self.0.len());
        RepoPath(self.0[..end].into())
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &Name) -> Result<RepoPath, InvalidName> {
        if self.depth() >= PATH_DEPTH_MAX {
            return Err(InvalidName::TooDeep);
        }
        Ok(self.join_unchecked(name.as_bytes()))
    }

    /// Whether `prefix` is this path or one of its ancestors (component by
    /// component: `a/b` starts with `a`, not with `a/` or `a/b.txt`'s `a/b`).
    pub fn starts_with(&self, prefix: &RepoPath) -> bool {
        let (p, s) = (&prefix.0, &self.0);
        prefix.is_root() || (s.starts_with(p) && (s.len() == p.len() || s[p.len()] == b'/'))
    }

    /// `join` for a caller that bounds the depth itself.
    pub(crate) fn join_unchecked(&self, name: &[u8]) -> RepoPath {
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.len());
        bytes.extend_from_slice(&self.0);
        if !self.0.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        RepoPath(bytes.into())
    }
}

impl TryFrom<&[u8]> for RepoPath {
    type Error = InvalidName;
    fn try_from(bytes: &[u8]) -> Result<Self, InvalidName> {
        if bytes.is_empty() {
            return Ok(Self::root());
        }
        let mut depth = 0;
        for component in bytes.split(|&b| b == b'/') {
            validate_name(component)?;
            depth += 1;
            if depth > PATH_DEPTH_MAX {
                return Err(InvalidName::TooDeep);
            }
        }
        Ok(Self(bytes.into()))
    }
}

impl TryFrom<&str> for RepoPath {
    type Error = InvalidName;
    fn try_from(s: &str) -> Result<Self, InvalidName> {
        Self::try_from(s.as_bytes())
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert_eq!(Name::try_from(""), Err(InvalidName::Empty));
        assert_eq!(Name::try_from("."), Err(InvalidName::Dot));
        assert_eq!(Name::try_from(".."), Err(InvalidName::Dot));
        assert_eq!(Name::try_from("a/b"), Err(InvalidName::Slash));
        assert_eq!(Name::try_from("a\0b"), Err(InvalidName::Nul));
        assert_eq!(Name::try_from("x".repeat(256).as_str()), Err(InvalidName::TooLong(256)));
        assert!(Name::try_from("x".repeat(255).as_str()).is_ok());
        assert!(Name::try_from("...").is_ok());
        for repo_dir in [".vst", ".VST", ".Vst", ".vsT"] {
            assert_eq!(Name::try_from(repo_dir), Err(InvalidName::RepoDir), "{repo_dir}");
        }
        for fine in [".vstignore", ".vst2", "vst", "..vst", "a.vst"] {
            assert!(Name::try_from(fine).is_ok(), "{fine}");
        }
        assert!(Name::try_from(&b"\xff\xfe"[..]).is_ok(), "non-UTF-8 names are fine");
    }

    #[test]
    fn paths_follow_the_rules() {
        for bad in ["/a", "a/", "a//b", "a/./b", "../a", "a/..", ".vst/store", "a/.VST/b"] {
            assert!(RepoPath::try_from(bad).is_err(), "{bad:?} must be rejected");
        }
        let p = RepoPath::try_from("a/b/c").unwrap();
        assert_eq!(p.components().collect::<Vec<_>>(), [b"a", b"b", b"c"]);
        let (parent, last) = p.split_last().unwrap();
        assert_eq!(parent.as_bytes(), b"a/b");
        assert_eq!(last, b"c");
        assert!(RepoPath::root().split_last().is_none());
        assert_eq!(p.prefix(0), RepoPath::root());
        assert_eq!(p.prefix(1).as_bytes(), b"a");
        assert_eq!(p.prefix(2).as_bytes(), b"a/b");
        assert_eq!(p.prefix(3), p);
        assert_eq!(p.prefix(9), p);
        let deep = vec!["d"; PATH_DEPTH_MAX + 1].join("/");
        assert_eq!(RepoPath::try_from(deep.as_str()), Err(InvalidName::TooDeep));
    }
}
