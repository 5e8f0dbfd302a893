//! Named limits. Every object that comes from disk or from a user is checked
//! against these before it is used, so that a crafted input cannot make vst
//! allocate without bound, recurse without bound, or build an invalid tree.

/// Longest name of a directory entry, in bytes (as on Linux filesystems).
pub const NAME_LEN_MAX: usize = 255;

/// Deepest path: components from the root to an entry. Recursion over a
/// tree is bounded by this.
pub const PATH_DEPTH_MAX: usize = 256;

/// Most entries in one directory.
pub const TREE_ENTRIES_MAX: usize = 1 << 20;

/// Longest symlink target, in bytes (`PATH_MAX - 1` on Linux).
pub const SYMLINK_TARGET_LEN_MAX: usize = 4095;

/// Most entries one walk over a tree visits, counting an entry once for
/// every path it is reached by: a walk (`read::walk`), a checkout (of the
/// whole tree, or of the directories an update adds), a diff. Trees are
/// shared by id, so 41 small trees, each holding two entries for the one
/// below, make 2^41 paths; without this a checkout of them would create
/// directories until the disk is full.
///
/// 4,194,304: about 40 times the 100,000 files (and ~10,000
/// directories) of the largest trees vst is built for, and 4 directories
/// of the largest size ([`TREE_ENTRIES_MAX`]), so no real tree comes near
/// it; small enough that what a walk holds per entry (a diff's change
/// with its path, about 150 bytes) stays well under a gigabyte when a
/// diff reaches it, where a shared-subtree bomb would grow without end.
/// What a full walk visits is counted before it starts (each distinct
/// tree read once), so such a tree is refused before anything is written.
pub const WALK_ENTRIES_MAX: u64 = 1 << 22;

/// The most commits `merge::merge_base` walks before it gives up: a bound
/// on the work two long unrelated histories can cost.
pub const MERGE_BASE_COMMITS_MAX: usize = 1 << 20;

/// Most parents of one commit.
pub const COMMIT_PARENTS_MAX: usize = 64;

/// Longest author field of a commit, in bytes.
pub const AUTHOR_LEN_MAX: usize = 1024;

/// Longest commit message, in bytes.
pub const MESSAGE_LEN_MAX: usize = 1 << 20;

/// Longest encoding of one tree entry: a name, a tag, and the largest
/// variant (a symlink target), each behind a varint of at most 10 bytes.
pub const TREE_ENTRY_LEN_MAX: usize = 10 + NAME_LEN_MAX + 1 + 10 + SYMLINK_TARGET_LEN_MAX;

/// Longest encoded tree: the version byte, the entry count and the entries.
pub const TREE_LEN_MAX: usize = 1 + 10 + TREE_ENTRIES_MAX * TREE_ENTRY_LEN_MAX;

/// A bound on an encoded commit's length (message, author, parents and
/// the fixed fields): an object longer than this is no commit, which
/// finding a commit by an id prefix knows without reading it.
pub const COMMIT_LEN_BOUND: usize =
    MESSAGE_LEN_MAX + AUTHOR_LEN_MAX + COMMIT_PARENTS_MAX * 80 + 1024;

/// The fewest hex digits a commit id prefix in a revision may have (see
/// [`crate::rev`]): fewer would match much of a store and read as a typo
/// of something else.
pub const REV_PREFIX_LEN_MIN: usize = 4;

// A name must fit in a path of the maximal depth without overflowing the
// platform's `usize`, and a tree of the maximal size must be addressable.
const _: () = assert!(NAME_LEN_MAX < 256, "names are at most one byte of length on Linux");
const _: () = assert!(PATH_DEPTH_MAX * (NAME_LEN_MAX + 1) < u32::MAX as usize);
const _: () = assert!(TREE_LEN_MAX < (1 << 33), "a tree encoding stays well below 8 GiB");
const _: () = assert!(COMMIT_PARENTS_MAX >= 2, "merges need two parents");
const _: () = assert!(
    WALK_ENTRIES_MAX >= 4 * TREE_ENTRIES_MAX as u64,
    "a walk covers several directories of the largest size"
);
