//! The canonical encoding: golden ids, round trips, and rejection of
//! everything that is not canonical.

use proptest::prelude::*;
use smallvec::smallvec;
use vst::{
    BlobId, Commit, CommitId, CommitOptions, DecodeError, EntryKind, FileEntry, Name,
    SymlinkTarget, Timestamp, Tree, TreeEntry, TreeId, WorkingSet, commit,
};

use crate::support::{mem, p, raw};

fn file(content: &[u8], executable: bool) -> EntryKind {
    EntryKind::File(FileEntry { id: BlobId::of(content), size: content.len() as u64, executable })
}

fn entry(name: &str, kind: EntryKind) -> TreeEntry {
    TreeEntry { name: Name::try_from(name).unwrap(), kind }
}

const RUN_SH: &[u8] = b"#!/bin/sh\necho hi\n";

/// The golden fixture: a small tree with every kind of entry.
fn golden_trees() -> (Tree, Tree) {
    let bin = Tree::new(vec![entry("run.sh", file(RUN_SH, true))]).unwrap();
    let root = Tree::new(vec![
        entry("link", EntryKind::Symlink(SymlinkTarget::try_from("README.md").unwrap())),
        entry("README.md", file(b"hello\n", false)),
        entry("empty", EntryKind::Dir(Tree::default().id())),
        entry("bin", EntryKind::Dir(bin.id())),
    ])
    .unwrap();
    (bin, root)
}

fn golden_commit(tree: TreeId) -> Commit {
    Commit {
        tree,
        parents: smallvec![],
        author: "Golden Test <golden@example.com>".into(),
        time: Timestamp { unix_us: 1_700_000_000_123_456, tz_offset_min: 60 },
        message: "golden\n".into(),
    }
}

/// Pinned ids. If this test fails, the format changed: every id in every
/// store changes with it. Bump the format version and update
/// docs/format.md, do not just paste the new ids.
#[test]
fn golden_ids() {
    assert_eq!(
        BlobId::of(b"hello\n").to_string(),
        // `printf 'hello\n' | b3sum`
        "8e4c7c1b99dbfd50e7a95185fead5ee1448fa904a2fdd778eaf5f2dbfd629a99",
        "a blob id is plain BLAKE3 of the content"
    );
    let (bin, root) = golden_trees();
    let bin_hex =
        "01010672756e2e7368004b694fa6468140836e2f43625aca1150ec72032dc23a12e13416ca026c647ef31201";
    assert_eq!(hex(&bin.encode()), bin_hex);
    // The same bytes from the tests' own encoder, written from docs/format.md.
    let run_sh_id = *BlobId::of(RUN_SH).as_bytes();
    assert_eq!(
        hex(&raw::tree(&[raw::file(b"run.sh", &run_sh_id, RUN_SH.len() as u64, true)])),
        bin_hex
    );
    assert_eq!(Tree::default().encode(), [1, 0], "the empty tree is version 1, zero entries");
    assert_eq!(
        Tree::default().id().to_string(),
        "687376c930d7020a32f04c396fc2e5eab49cd09a738fa03d573033416a6a47ce"
    );
    assert_eq!(
        root.id().to_string(),
        "0924539dabd156de2db5c57c06eddc8f5762d66d72e41df696c57bbf0c042eaa"
    );
    assert_eq!(
        golden_commit(root.id()).id().unwrap().to_string(),
        "d941d6d0bacb5646bd25d91fc9809f107f9188bcd6bfb56555faa5f889cf7e1a"
    );
}

/// The working set commits the same tree the object model builds.
#[test]
fn working_set_matches_golden_tree() {
    let mut ws = WorkingSet::new(mem());
    ws.write(&p("README.md"), b"hello\n").unwrap();
    ws.write(&p("bin/run.sh"), RUN_SH).unwrap();
    ws.set_executable(&p("bin/run.sh"), true).unwrap();
    ws.symlink(&p("link"), b"README.md").unwrap();
    ws.create_dir_all(&p("empty")).unwrap();
    let options = CommitOptions {
        author: "Golden Test <golden@example.com>".into(),
        message: "golden\n".into(),
        time: Some(Timestamp { unix_us: 1_700_000_000_123_456, tz_offset_min: 60 }),
        ..Default::default()
    };
    let id = commit(&mut ws, &options).unwrap();
    let (_, root) = golden_trees();
    assert_eq!(ws.snapshot().tree_id(), Some(root.id()));
    assert_eq!(id, golden_commit(root.id()).id().unwrap());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_truncation_of_a_tree_is_an_error() {
    let (_, root) = golden_trees();
    let bytes = root.encode();
    for len in 0..bytes.len() {
        assert!(Tree::decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
    }
    assert_eq!(Tree::decode(&bytes).unwrap(), root);
}

#[test]
fn every_truncation_of_a_commit_is_an_error() {
    let c = golden_commit(golden_trees().1.id());
    let bytes = c.encode().unwrap();
    for len in 0..bytes.len() {
        assert!(Commit::decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
    }
    assert_eq!(Commit::decode(&bytes).unwrap(), c);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = golden_trees().1.encode();
    bytes.push(0);
    assert!(matches!(Tree::decode(&bytes), Err(DecodeError::TrailingBytes { len: 1 })));
    let mut bytes = golden_commit(Tree::default().id()).encode().unwrap();
    bytes.push(0);
    assert!(matches!(Commit::decode(&bytes), Err(DecodeError::TrailingBytes { len: 1 })));
}

#[test]
fn reordered_and_duplicated_entries_are_rejected() {
    let id = [7u8; 32];
    let a = raw::file(b"a", &id, 1, false);
    let b = raw::file(b"b", &id, 1, false);
    assert!(Tree::decode(&raw::tree(&[a.clone(), b.clone()])).is_ok());
    assert!(matches!(Tree::decode(&raw::tree(&[b, a.clone()])), Err(DecodeError::Unsorted { .. })));
    assert!(matches!(Tree::decode(&raw::tree(&[a.clone(), a])), Err(DecodeError::Unsorted { .. })));
    // The same name as a symlink and as a directory: the shape of an attempt
    // to make checkout write through a link.
    let link = raw::symlink(b"x", b"/tmp");
    let dir = raw::dir(b"x", &id);
    assert!(matches!(Tree::decode(&raw::tree(&[link, dir])), Err(DecodeError::Unsorted { .. })));
}

#[test]
fn invalid_names_are_rejected() {
    for bad in
        [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b", &[b'x'; 256], b".vst", b".VST", b".vSt"]
    {
        let bytes = raw::tree(&[raw::file(bad, &[1; 32], 0, false)]);
        assert!(
            matches!(Tree::decode(&bytes), Err(DecodeError::InvalidName { .. })),
            "name {:?} must be rejected",
            String::from_utf8_lossy(bad)
        );
        assert!(Name::try_from(bad).is_err());
    }
    // Names need not be UTF-8.
    assert!(Tree::decode(&raw::tree(&[raw::file(b"\xff", &[1; 32], 0, false)])).is_ok());
}

#[test]
fn invalid_symlinks_are_rejected() {
    for bad in [&b""[..], b"a\0b", &[b'x'; 4096]] {
        let bytes = raw::tree(&[raw::symlink(b"l", bad)]);
        assert!(matches!(Tree::decode(&bytes), Err(DecodeError::InvalidSymlink { .. })));
    }
}

#[test]
fn non_canonical_varints_and_flags_are_rejected() {
    // An entry count of 1 written in two bytes.
    let entry = raw::file(b"a", &[1; 32], 5, false);
    let mut overlong = vec![1u8, 0x81, 0x00];
    overlong.extend_from_slice(&entry);
    assert!(Tree::decode(&overlong).is_err());
    // A size written over-long.
    let mut e = Vec::new();
    raw::name(b"a", &mut e);
    e.push(0);
    e.extend_from_slice(&[1; 32]);
    e.extend_from_slice(&[0x85, 0x00]);
    e.push(0);
    assert!(Tree::decode(&raw::tree(&[e])).is_err());
    // A boolean that is neither 0 nor 1.
    let mut e = raw::file(b"a", &[1; 32], 5, false);
    *e.last_mut().unwrap() = 2;
    assert!(Tree::decode(&raw::tree(&[e])).is_err());
    // An unknown entry tag.
    let mut e = raw::dir(b"a", &[1; 32]);
    e[2] = 3;
    assert!(Tree::decode(&raw::tree(&[e])).is_err());
}

#[test]
fn versions_and_counts_are_checked() {
    assert!(matches!(Tree::decode(&[]), Err(DecodeError::Empty)));
    assert!(matches!(Tree::decode(&[2, 0]), Err(DecodeError::UnknownVersion { version: 2 })));
    // A huge entry count must fail without allocating for it.
    let mut bytes = vec![1u8];
    raw::varint(u64::MAX, &mut bytes);
    assert!(matches!(Tree::decode(&bytes), Err(DecodeError::TooMany { .. })));
    let mut bytes = vec![1u8];
    raw::varint(1 << 19, &mut bytes);
    assert!(Tree::decode(&bytes).is_err());
}

#[test]
fn commit_limits_are_checked() {
    let mut c = golden_commit(Tree::default().id());
    c.time.tz_offset_min = 24 * 60;
    assert!(c.validate().is_err());
    let mut c = golden_commit(Tree::default().id());
    c.parents = (0..65u8).map(|i| CommitId::of(&[i])).collect();
    assert!(c.validate().is_err());
    let mut ws = WorkingSet::new(mem());
    let options = CommitOptions { author: "x".repeat(2000), ..Default::default() };
    assert!(commit(&mut ws, &options).is_err(), "an over-long author is refused");
    assert!(
        commit(&mut ws, &CommitOptions::default()).is_ok(),
        "and the working set still commits"
    );
}

#[test]
fn timezone_offsets_are_bounded_without_overflow() {
    for tz in [i16::MIN, -1440, 1440, i16::MAX] {
        let mut c = golden_commit(Tree::default().id());
        c.time.tz_offset_min = tz;
        assert!(c.validate().is_err() && c.encode().is_err(), "offset {tz} must be refused");
        // The same commit crafted by hand must not decode (nor panic).
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(Tree::default().id().as_bytes());
        bytes.extend_from_slice(&[0, 0]); // no parents, empty author
        bytes.push(0); // time 0
        let zigzag = ((tz as i32) << 1) ^ ((tz as i32) >> 15);
        raw::varint(u64::from(zigzag as u16), &mut bytes);
        bytes.push(0); // empty message
        assert!(matches!(Commit::decode(&bytes), Err(DecodeError::InvalidTimezone { .. })), "{tz}");
    }
    let mut c = golden_commit(Tree::default().id());
    c.time.tz_offset_min = -1439;
    assert_eq!(Commit::decode(&c.encode().unwrap()).unwrap(), c);
}

#[test]
fn commit_decoding_rejects_every_broken_rule() {
    let good = golden_commit(Tree::default().id()).encode().unwrap();
    let mut bad_version = good.clone();
    bad_version[0] = 2;
    assert!(matches!(
        Commit::decode(&bad_version),
        Err(DecodeError::UnknownVersion { version: 2 })
    ));
    // 65 parents.
    let mut many = vec![1u8];
    many.extend_from_slice(&[0; 32]);
    raw::varint(65, &mut many);
    many.extend(std::iter::repeat_n(0u8, 65 * 32));
    assert!(matches!(Commit::decode(&many), Err(DecodeError::TooMany { .. })));
    // An author that is not UTF-8.
    let mut not_utf8 = vec![1u8];
    not_utf8.extend_from_slice(&[0; 32]);
    not_utf8.extend_from_slice(&[0, 1, 0xff, 0, 0, 0]);
    assert!(matches!(Commit::decode(&not_utf8), Err(DecodeError::Malformed { .. })));
    // An over-long author.
    let mut long = vec![1u8];
    long.extend_from_slice(&[0; 32]);
    long.push(0);
    raw::varint(1025, &mut long);
    long.extend(std::iter::repeat_n(b'a', 1025));
    long.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(Commit::decode(&long), Err(DecodeError::TooLong { .. })));
    // A parent count written over-long.
    let mut overlong = vec![1u8];
    overlong.extend_from_slice(&[0; 32]);
    overlong.extend_from_slice(&[0x80, 0x00, 0, 0, 0, 0]);
    assert!(Commit::decode(&overlong).is_err());
}

fn arb_name() -> impl Strategy<Value = Name> {
    prop::collection::vec(any::<u8>(), 1..12)
        .prop_filter_map("valid names", |b| Name::try_from(&b[..]).ok())
}

fn arb_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<u64>(), any::<bool>()).prop_map(|(id, size, executable)| {
            EntryKind::File(FileEntry {
                id: BlobId::new(vst_cas::ObjectId::from_bytes(id)),
                size,
                executable,
            })
        }),
        any::<[u8; 32]>()
            .prop_map(|id| EntryKind::Dir(TreeId::new(vst_cas::ObjectId::from_bytes(id)))),
        prop::collection::vec(1u8..=255, 1..40)
            .prop_map(|t| EntryKind::Symlink(SymlinkTarget::try_from(&t[..]).unwrap())),
    ]
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    prop::collection::btree_map(arb_name(), arb_kind(), 0..20).prop_map(|m| {
        Tree::new(m.into_iter().map(|(name, kind)| TreeEntry { name, kind }).collect()).unwrap()
    })
}

proptest! {
    #[test]
    fn trees_round_trip(tree in arb_tree()) {
        let bytes = tree.encode();
        prop_assert_eq!(Tree::decode(&bytes).unwrap(), tree);
    }

    #[test]
    fn commits_round_trip(
        parents in prop::collection::vec(any::<[u8; 32]>(), 0..4),
        author in ".{0,40}",
        message in ".{0,200}",
        unix_us in any::<i64>(),
        tz in -1439i16..1440,
    ) {
        let c = Commit {
            tree: TreeId::of(b"t"),
            parents: parents.iter().map(|p| CommitId::new(vst_cas::ObjectId::from_bytes(*p))).collect(),
            author,
            time: Timestamp { unix_us, tz_offset_min: tz },
            message,
        };
        prop_assert_eq!(Commit::decode(&c.encode().unwrap()).unwrap(), c);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Tree::decode(&bytes);
        let _ = Commit::decode(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic_and_stay_canonical(tree in arb_tree(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = tree.encode();
        let i = at % bytes.len();
        bytes[i] = byte;
        if let Ok(decoded) = Tree::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes, "whatever decodes re-encodes to the same bytes");
        }
    }
}
