//! The repository format file, `.vst/format`: which version of the
//! repository layout this is and which features a program must know to
//! read or write it (see `docs/format.md`, "The format file").
//!
//! A program refuses a repository whose file names a version or a feature
//! it does not know, before it writes anything; a repository without the
//! file (made before it existed) is read as version 1 with the features
//! every such repository has, and gets the file at its next write.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The format file's name in the repository directory.
pub const FORMAT_FILE: &str = "format";

/// The first line's word, followed by the version.
const MAGIC: &str = "vst-repository";

/// The repository layout version this library reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Branch files of two checksummed slots, updated in place.
pub const FEATURE_SLOTTED_REFS: &str = "slotted-refs";
/// The pack index as a table sorted by id (`VSTINDX\x02`).
pub const FEATURE_INDEX_TABLE: &str = "index-table";
/// The objects are in an object store named by `.vst/store`.
pub const FEATURE_REMOTE_OBJECTS: &str = "remote-objects";
/// Tags (`refs/tags/NAME`) may exist: a program that does not know them
/// would collect what only a tag reaches. Added by the first tag written.
pub const FEATURE_TAGS: &str = "tags";

/// Every feature this library knows.
pub const FEATURES_KNOWN: &[&str] =
    &[FEATURE_SLOTTED_REFS, FEATURE_INDEX_TABLE, FEATURE_REMOTE_OBJECTS, FEATURE_TAGS];

/// The longest format file read: a few short lines; anything longer is
/// not a format file this library wrote.
const FORMAT_FILE_LEN_MAX: u64 = 4096;

/// A repository's format: its version and required features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The layout version.
    pub version: u32,
    /// The features a reader must know, in the file's order.
    pub features: Vec<String>,
}

impl Format {
    /// The format of a repository this library makes: local objects, or
    /// objects in an object store.
    pub fn current(remote_objects: bool) -> Self {
        let mut features = vec![FEATURE_SLOTTED_REFS.to_owned(), FEATURE_INDEX_TABLE.to_owned()];
        if remote_objects {
            features.push(FEATURE_REMOTE_OBJECTS.to_owned());
        }
        Self { version: FORMAT_VERSION, features }
    }

    /// The file's text.
    pub fn encode(&self) -> String {
        let mut text = format!("{MAGIC} {}\n", self.version);
        for f in &self.features {
            text.push_str(f);
            text.push('\n');
        }
        text
    }

    /// Parses and checks a format file's text: the version and every
    /// feature must be known.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let unsupported = |what: String| Error::UnsupportedFormat { path: path.to_owned(), what };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let version = first
            .strip_prefix(MAGIC)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| unsupported(format!("a first line {first:?}, not `{MAGIC} N`")))?;
        if version != FORMAT_VERSION {
            return Err(unsupported(format!(
                "version {version} (this vst knows version {FORMAT_VERSION})"
            )));
        }
        let mut features = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            if !FEATURES_KNOWN.contains(&line) {
                return Err(unsupported(format!("the feature {line:?}")));
            }
            features.push(line.to_owned());
        }
        Ok(Self { version, features })
    }

    /// Reads and checks the format file in `repo_dir`; `None` if there is
    /// none (a repository made before the file existed).
    pub fn read(repo_dir: &Path) -> Result<Option<Self>> {
        match read_small(repo_dir, FORMAT_FILE, FORMAT_FILE_LEN_MAX)? {
            Some((path, text)) => Self::parse(&path, &text).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the format file into `repo_dir` durably (temporary file,
    /// fsync, rename, fsync of the directory).
    pub fn write(&self, repo_dir: &Path) -> Result<()> {
        write_durably(repo_dir, FORMAT_FILE, self.encode().as_bytes())
    }
}

/// The text of the small file `repo_dir/name` (its path too, for
/// messages), at most `len_max` bytes of it; `None` if there is none.
pub(crate) fn read_small(
    repo_dir: &Path,
    name: &str,
    len_max: u64,
) -> Result<Option<(std::path::PathBuf, String)>> {
    use std::io::Read;
    let path = repo_dir.join(name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::RepoIo { op: "read", path, source }),
    };
    let mut text = String::new();
    match file.take(len_max + 1).read_to_string(&mut text) {
        Ok(read) if read as u64 > len_max => {
            Err(Error::DamagedRepoFile { path, reason: "longer than any such file vst writes" })
        }
        Ok(_) => Ok(Some((path, text))),
        Err(source) => Err(Error::RepoIo { op: "read", path, source }),
    }
}

/// Replaces `repo_dir/name` with `bytes`: a temporary file, synced,
/// renamed into place, and the directory synced, so that a crash leaves
/// the old file or the new one.
pub(crate) fn write_durably(repo_dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = repo_dir.join(name);
    let tmp = repo_dir.join(format!("{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(repo_dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::RepoIo { op: "write", path, source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let p = Path::new("f");
        for remote in [false, true] {
            let f = Format::current(remote);
            assert_eq!(Format::parse(p, &f.encode()).unwrap(), f);
        }
        assert_eq!(
            Format::current(false).encode(),
            "vst-repository 1\nslotted-refs\nindex-table\n"
        );
        for bad in [
            "vst-repository 2\n",
            "vst-repository 1\nfancy-packs\n",
            "vst-repository\n",
            "git\n",
            "",
        ] {
            let e = Format::parse(p, bad).unwrap_err();
            assert!(matches!(e, Error::UnsupportedFormat { .. }), "{bad:?}: {e}");
        }
        let e = Format::parse(p, "vst-repository 1\nfancy-packs\n").unwrap_err().to_string();
        assert!(e.contains("fancy-packs"), "{e}");
    }
}
