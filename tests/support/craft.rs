//! Crafted repositories, written byte by byte from `docs/format.md`: tree
//! and commit encodings, pack records and refs. Nothing here calls the
//! library, so a test that opens what this writes exercises the library's
//! own checks, as a repository from an attacker would.
//!
//! Standalone (only `std` and `blake3`, the format's hash), so that the
//! CLI's and the mount's tests can include it with `#[path]`.

#![allow(dead_code)] // Each test binary uses a different part.

use std::fs;
use std::path::Path;

/// Entry encodings, for crafting trees the library itself would refuse to
/// build.
pub mod raw {
    pub fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn name(name: &[u8], out: &mut Vec<u8>) {
        varint(name.len() as u64, out);
        out.extend_from_slice(name);
    }

    pub fn file(name_bytes: &[u8], id: &[u8; 32], size: u64, exec: bool) -> Vec<u8> {
        let mut out = Vec::new();
        name(name_bytes, &mut out);
        out.push(0); // tag: file
        out.extend_from_slice(id);
        varint(size, &mut out);
        out.push(exec as u8);
        out
    }

    pub fn dir(name_bytes: &[u8], id: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::new();
        name(name_bytes, &mut out);
        out.push(1); // tag: directory
        out.extend_from_slice(id);
        out
    }

    pub fn symlink(name_bytes: &[u8], target: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        name(name_bytes, &mut out);
        out.push(2); // tag: symlink
        varint(target.len() as u64, &mut out);
        out.extend_from_slice(target);
        out
    }

    /// A tree of `entries`, in the order given (sorting them is the
    /// caller's business: a test may want them out of order).
    pub fn tree(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![1u8];
        varint(entries.len() as u64, &mut out);
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    /// A commit of `tree` with `parents`, a fixed author and time.
    pub fn commit(tree: &[u8; 32], parents: &[[u8; 32]], message: &str) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(tree);
        varint(parents.len() as u64, &mut out);
        for p in parents {
            out.extend_from_slice(p);
        }
        let author = b"Crafted <crafted@example.com>";
        varint(author.len() as u64, &mut out);
        out.extend_from_slice(author);
        let time_unix_us: i64 = 1_700_000_000_000_000;
        varint(((time_unix_us << 1) ^ (time_unix_us >> 63)) as u64, &mut out);
        varint(0, &mut out); // tz_offset_min 0, zigzag
        varint(message.len() as u64, &mut out);
        out.extend_from_slice(message.as_bytes());
        out
    }
}

/// The BLAKE3 id of `bytes`.
pub fn id_of(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// CRC-32 (IEEE, reflected, as zlib), bit by bit: slow and obviously
/// right, for the few records a test writes.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The objects of a crafted repository, in the order they go into its
/// pack.
#[derive(Default)]
pub struct Objects {
    objects: Vec<[u8; 32]>,
    pack: Vec<u8>,
}

impl Objects {
    /// Adds `bytes` as one whole object (kind 0, codec raw); returns its id.
    /// Objects of 1 MiB or more would be chunked by a real writer; a reader
    /// accepts them whole, and the tests keep them small anyway.
    pub fn put(&mut self, bytes: &[u8]) -> [u8; 32] {
        let id = id_of(bytes);
        if self.objects.contains(&id) {
            return id;
        }
        let start = self.pack.len();
        self.pack.push(0); // kind: object
        self.pack.push(0); // codec: raw
        self.pack.extend_from_slice(&0u16.to_le_bytes());
        self.pack.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.pack.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.pack.extend_from_slice(&id);
        self.pack.extend_from_slice(bytes);
        let crc = crc32(&self.pack[start..]);
        self.pack.extend_from_slice(&crc.to_le_bytes());
        self.objects.push(id);
        id
    }

    /// Adds a tree of `entries` (see [`raw`]); returns its id.
    pub fn tree(&mut self, entries: &[Vec<u8>]) -> [u8; 32] {
        self.put(&raw::tree(entries))
    }

    /// Adds a commit of `tree` without parents; returns its id.
    pub fn commit(&mut self, tree: &[u8; 32], message: &str) -> [u8; 32] {
        self.put(&raw::commit(tree, &[], message))
    }

    /// Writes the repository directory `repo_dir` (a `.vst`): one pack
    /// holding every object, the branch `main` at `tip` and `HEAD` on it.
    /// No index: a reader rebuilds it from the pack.
    pub fn write_repo(&self, repo_dir: &Path, tip: &[u8; 32]) {
        fs::create_dir_all(repo_dir.join("packs")).unwrap();
        fs::create_dir_all(repo_dir.join("refs/heads")).unwrap();
        let mut pack = b"VSTPACK\x01".to_vec();
        pack.extend_from_slice(&self.pack);
        fs::write(repo_dir.join("packs/pack-00000000.pack"), pack).unwrap();
        // A branch file: two 4096-byte slots, the first holding seq 1.
        let line = format!("{:016x} {}", 1, hex(tip));
        let line = format!("{line} {:08x}\n", crc32(format!("{line} ").as_bytes()));
        let mut branch = vec![0u8; 8192];
        branch[..line.len()].copy_from_slice(line.as_bytes());
        fs::write(repo_dir.join("refs/heads/main"), branch).unwrap();
        fs::write(repo_dir.join("HEAD"), "ref: heads/main\n").unwrap();
    }
}
