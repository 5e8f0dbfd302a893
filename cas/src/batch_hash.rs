//! Hashing many small inputs at once, one input per SIMD lane.
//!
//! `blake3::hash` of an input of one chunk (1 KiB) or less compresses its
//! blocks one after the other, in one lane of the eight (AVX2) or sixteen
//! (AVX-512) the CPU has; an input of a few chunks fills as many lanes as
//! it has chunks. [`hash_many`] puts the chunks of many inputs side by side
//! instead, through the `blake3` crate's own lane-parallel compression
//! (`blake3::platform::Platform::hash_many`, with the crate's runtime CPU
//! detection), so a batch of 1 KiB files costs a fraction of one call per
//! file. Ids are bit for bit those of `blake3::hash`.
//!
//! Why the crate's hidden API and not our own lanes: `Platform::hash_many`
//! is public but hidden and "for benchmarks only", so `blake3` is pinned to
//! an exact version in the workspace's `Cargo.toml` and a test here fails
//! when the pin moves (`blake3_is_pinned`). A lane-parallel BLAKE3 of our own
//! would need `std::arch` intrinsics behind `#[target_feature]`, that is
//! `unsafe` code, plus its own runtime dispatch; the crate's assembly is
//! faster than what we would write and already tested against the spec.
//! This module needs no `unsafe` (the crate's API is safe).
//!
//! How (the BLAKE3 spec, sections 2.4 and 2.5): an input is cut into chunks
//! of 1 KiB, the last one possibly shorter. A chunk's blocks are compressed
//! in sequence from the IV with the chunk's index as counter, the first
//! flagged `CHUNK_START`, the last `CHUNK_END` with its true length,
//! zero-padded; its first 32 bytes are the chunk's chaining value. An
//! input of one chunk is its own root (`ROOT` on its last block: those 32
//! bytes are the hash); a longer one merges chaining values pairwise in
//! parent nodes (`PARENT`, the root's also `ROOT`), the left subtree
//! holding the largest power of two of chunks that leaves one for the
//! right. `Platform::hash_many` compresses whole 64-byte blocks only, with
//! one counter and one length per call. So the chunks are grouped by
//! index, number of whole blocks, and whether that includes the last block
//! (a length that is a positive multiple of 64) and whether it is a root;
//! the last, partial block of a chunk is compressed on its own from the
//! chaining value the lanes returned, and so are parent nodes (one block
//! per chunk: a sixteenth of the work).
//!
//! Inputs longer than [`LANE_LEN_MAX`] are hashed with `blake3::hash`,
//! which fills the lanes with their own chunks.

use blake3::platform::Platform;

use crate::id::{ID_LEN, ObjectId};

/// Inputs up to this many bytes (eight BLAKE3 chunks) are hashed across
/// SIMD lanes beside each other; longer ones with `blake3::hash`, whose own
/// chunks fill the lanes. Measured with `cargo bench --bench commit --
/// lanes/`: see ARCHITECTURE.md.
pub const LANE_LEN_MAX: usize = 8 * CHUNK_LEN;

const BLOCK_LEN: usize = blake3::BLOCK_LEN;
const CHUNK_LEN: usize = blake3::CHUNK_LEN;
/// Blocks in a chunk: the most a lane group holds.
const CHUNK_BLOCKS: usize = CHUNK_LEN / BLOCK_LEN;
/// Chunks of the longest input hashed in lanes.
const LANE_CHUNKS: usize = LANE_LEN_MAX.div_ceil(CHUNK_LEN);

// Domain flags of the BLAKE3 spec (section 2.1, table 3); private in the
// crate, fixed by the spec.
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const PARENT: u8 = 1 << 2;
const ROOT: u8 = 1 << 3;

/// The BLAKE3 IV (the spec's, shared with SHA-256).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

/// A chaining value, or a hash, as bytes.
type Cv = [u8; ID_LEN];

/// The BLAKE3 ids of `inputs`, in order: equal to `ObjectId::of` of each.
/// Inputs of at most [`LANE_LEN_MAX`] bytes are hashed side by side in the
/// CPU's SIMD lanes (detected at run time); longer ones one at a time with
/// `blake3::hash`. One thread: callers spread big batches over threads.
pub fn hash_many<T: AsRef<[u8]>>(inputs: &[T]) -> Vec<ObjectId> {
    hash_many_on(Platform::detect(), inputs)
}

/// A chunk of an input hashed in lanes.
#[derive(Clone, Copy)]
struct Piece<'a> {
    bytes: &'a [u8],
    /// The chunk's index in its input: its counter.
    index: u8,
    /// Whether it is the whole input (its chaining value is the hash).
    root: bool,
}

impl Piece<'_> {
    /// The lane group: by index, blocks handed to the lanes (1..=16),
    /// whether those include the last block, and root; `None` when the
    /// chunk has no block before its last, partial one.
    fn group(&self) -> Option<usize> {
        let len = self.bytes.len();
        let blocks = len / BLOCK_LEN;
        if blocks == 0 {
            return None;
        }
        let whole = len.is_multiple_of(BLOCK_LEN);
        let g = usize::from(self.index) * CHUNK_BLOCKS + (blocks - 1);
        Some((g * 2 + usize::from(whole)) * 2 + usize::from(self.root))
    }
}

/// Lane groups: index x blocks x whole x root.
const GROUPS: usize = LANE_CHUNKS * CHUNK_BLOCKS * 4;

/// [`hash_many`] on a given platform. Only `Platform::detect()` and
/// platforms the CPU reports may be passed: the crate trusts the variant
/// and runs its instructions unchecked.
fn hash_many_on<T: AsRef<[u8]>>(platform: Platform, inputs: &[T]) -> Vec<ObjectId> {
    if inputs.len() <= 1 {
        // Nothing to put beside it.
        return inputs.iter().map(|input| ObjectId::of(input.as_ref())).collect();
    }
    // The chunks of every input hashed in lanes, each input's together.
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(inputs.len());
    for input in inputs {
        let input = input.as_ref();
        if input.is_empty() || input.len() > LANE_LEN_MAX {
            continue;
        }
        let root = input.len() <= CHUNK_LEN;
        for (index, bytes) in input.chunks(CHUNK_LEN).enumerate() {
            let index = u8::try_from(index).expect("LANE_CHUNKS fits a u8");
            pieces.push(Piece { bytes, index, root });
        }
    }
    // Counting sort of the pieces by lane group, over the groups up to the
    // highest one used (a batch of small inputs uses the first few: a
    // commit calls this once per directory, often with two or three).
    let mut counts = [0usize; GROUPS + 1];
    let mut used = 0;
    for piece in &pieces {
        if let Some(g) = piece.group() {
            counts[g + 1] += 1;
            used = used.max(g + 1);
        }
    }
    for g in 0..used {
        counts[g + 1] += counts[g];
    }
    let mut order = vec![0u32; counts[used]];
    let mut next = counts;
    for (i, piece) in pieces.iter().enumerate() {
        if let Some(g) = piece.group() {
            order[next[g]] = u32::try_from(i).expect("a batch holds fewer than 2^32 chunks");
            next[g] += 1;
        }
    }
    let mut out = vec![0u8; order.len() * ID_LEN];
    let mut members: Vec<&[u8]> = Vec::new();
    for g in 0..used {
        let group = &order[counts[g]..counts[g + 1]];
        if group.is_empty() {
            continue;
        }
        let root = g % 2 == 1;
        let whole = (g / 2) % 2 == 1;
        let blocks = (g / 4) % CHUNK_BLOCKS + 1;
        let index = (g / 4 / CHUNK_BLOCKS) as u64;
        let flags_end = match (whole, root) {
            (true, true) => CHUNK_END | ROOT,
            (true, false) => CHUNK_END,
            (false, _) => 0,
        };
        members.clear();
        members.extend(group.iter().map(|&p| pieces[p as usize].bytes));
        let out = &mut out[counts[g] * ID_LEN..counts[g + 1] * ID_LEN];
        lanes(platform, blocks, &members, index, flags_end, out);
    }
    let mut lane_cv: Vec<Option<Cv>> = vec![None; pieces.len()];
    for (p, cv) in order.iter().zip(out.chunks_exact(ID_LEN)) {
        lane_cv[*p as usize] = Some(cv.try_into().expect("chunks of ID_LEN"));
    }
    // Each chunk's chaining value (a root's: the hash).
    let cvs: Vec<Cv> = pieces
        .iter()
        .zip(lane_cv)
        .map(|(piece, cv)| match cv {
            Some(cv) if piece.bytes.len().is_multiple_of(BLOCK_LEN) => cv,
            cv => finish(platform, piece, cv),
        })
        .collect();
    let mut cvs = cvs.as_slice();
    inputs
        .iter()
        .map(|input| {
            let input = input.as_ref();
            if input.is_empty() || input.len() > LANE_LEN_MAX {
                return ObjectId::of(input);
            }
            let (mine, rest) = cvs.split_at(input.len().div_ceil(CHUNK_LEN));
            cvs = rest;
            match mine {
                [hash] => ObjectId::from_bytes(*hash),
                _ => {
                    let left = left_chunks(mine.len());
                    let (l, r) =
                        (subtree(platform, &mine[..left]), subtree(platform, &mine[left..]));
                    ObjectId::from_bytes(parent(platform, &l, &r, ROOT))
                }
            }
        })
        .collect()
}

/// Chunks in the left subtree of a tree of `chunks` (at least 2): the
/// largest power of two that leaves at least one for the right.
fn left_chunks(chunks: usize) -> usize {
    chunks.div_ceil(2).next_power_of_two()
}

/// The chaining value of a (non-root) subtree of chunk chaining values.
/// Recursion depth is at most log2(LANE_CHUNKS).
fn subtree(platform: Platform, cvs: &[Cv]) -> Cv {
    match cvs {
        [cv] => *cv,
        _ => {
            let left = left_chunks(cvs.len());
            let (l, r) = (subtree(platform, &cvs[..left]), subtree(platform, &cvs[left..]));
            parent(platform, &l, &r, 0)
        }
    }
}

/// A parent node: the compression of its children's chaining values.
fn parent(platform: Platform, left: &Cv, right: &Cv, flags: u8) -> Cv {
    let mut block = [0u8; BLOCK_LEN];
    block[..ID_LEN].copy_from_slice(left);
    block[ID_LEN..].copy_from_slice(right);
    let mut cv = IV;
    platform.compress_in_place(&mut cv, &block, BLOCK_LEN as u8, 0, PARENT | flags);
    bytes(&cv)
}

/// Compresses the last, partial block of a chunk from the chaining value
/// of its whole blocks (`None`: it has none, so the IV) into the chunk's
/// chaining value.
fn finish(platform: Platform, piece: &Piece<'_>, cv: Option<Cv>) -> Cv {
    let whole = piece.bytes.len() / BLOCK_LEN * BLOCK_LEN;
    let (mut cv, start) = match cv {
        Some(bytes) => (words(&bytes), 0),
        None => (IV, CHUNK_START),
    };
    let tail = &piece.bytes[whole..];
    let mut block = [0u8; BLOCK_LEN];
    block[..tail.len()].copy_from_slice(tail);
    let block_len = u8::try_from(tail.len()).expect("a partial block is shorter than 64 bytes");
    let root = if piece.root { ROOT } else { 0 };
    let counter = u64::from(piece.index);
    platform.compress_in_place(&mut cv, &block, block_len, counter, start | CHUNK_END | root);
    bytes(&cv)
}

/// Little-endian words of a chaining value.
fn words(bytes: &Cv) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (word, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes(b.try_into().expect("chunks of 4"));
    }
    words
}

/// A chaining value as little-endian bytes.
fn bytes(words: &[u32; 8]) -> Cv {
    let mut bytes = [0u8; ID_LEN];
    for (b, word) in bytes.chunks_exact_mut(4).zip(words) {
        b.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Runs `Platform::hash_many` on the first `blocks` blocks of each member,
/// all chunks of index `counter`.
fn lanes(
    platform: Platform,
    blocks: usize,
    members: &[&[u8]],
    counter: u64,
    flags_end: u8,
    out: &mut [u8],
) {
    // `hash_many` takes the block count as a const generic.
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match blocks {
                $($n => lanes_of::<{ $n * BLOCK_LEN }>(platform, members, counter, flags_end, out),)*
                _ => unreachable!("a chunk has 1 to 16 blocks"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

fn lanes_of<const N: usize>(
    platform: Platform,
    members: &[&[u8]],
    counter: u64,
    flags_end: u8,
    out: &mut [u8],
) {
    let arrays: Vec<&[u8; N]> =
        members.iter().map(|m| m[..N].try_into().expect("grouped chunks have N bytes")).collect();
    platform.hash_many(
        &arrays,
        &IV,
        counter,
        blake3::IncrementCounter::No,
        0,
        CHUNK_START,
        flags_end,
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(len).collect()
        }
    }

    /// Every platform this CPU can run, the portable one included: the
    /// crate runs a variant's instructions unchecked, so only detected ones.
    fn platforms() -> Vec<Platform> {
        let mut all = vec![Platform::Portable, Platform::detect()];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("sse2") {
                all.push(Platform::SSE2);
            }
            if std::arch::is_x86_feature_detected!("sse4.1") {
                all.push(Platform::SSE41);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Platform::AVX2);
            }
        }
        all
    }

    fn check(platform: Platform, inputs: &[Vec<u8>]) {
        let ids = hash_many_on(platform, inputs);
        assert_eq!(ids.len(), inputs.len());
        for (input, id) in inputs.iter().zip(ids) {
            assert_eq!(
                id,
                ObjectId::from(blake3::hash(input)),
                "{platform:?}: input of {} bytes in a batch of {}",
                input.len(),
                inputs.len()
            );
        }
    }

    #[test]
    fn every_length_up_to_4_kib_alone_and_in_pairs() {
        let mut rng = Rng(1);
        let data = rng.bytes(4096);
        for platform in platforms() {
            for len in 0..=4096 {
                check(platform, &[data[..len].to_vec()]);
                // Two of one length: one lane group of two.
                check(platform, &[data[..len].to_vec(), data[4096 - len..].to_vec()]);
            }
        }
    }

    /// Lengths next to block, chunk and [`LANE_LEN_MAX`] edges.
    const EDGES: [usize; 16] =
        [0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 4097, 8191, 8192, 8193];

    #[test]
    fn mixed_batches_of_1_to_100_equal_blake3() {
        let mut rng = Rng(2);
        for platform in platforms() {
            for size in 1..=100 {
                let inputs: Vec<Vec<u8>> = (0..size)
                    .map(|_| {
                        let len = match rng.below(8) {
                            // Lengths next to block and chunk edges.
                            0 => EDGES[rng.below(EDGES.len())],
                            // Larger ones, beyond the lanes.
                            1 => 4097 + rng.below(64 * 1024),
                            _ => rng.below(4097),
                        };
                        rng.bytes(len)
                    })
                    .collect();
                check(platform, &inputs);
            }
        }
    }

    #[test]
    fn every_length_in_one_batch() {
        let mut rng = Rng(3);
        let inputs: Vec<Vec<u8>> = (0..=LANE_LEN_MAX + 100).map(|len| rng.bytes(len)).collect();
        for platform in platforms() {
            check(platform, &inputs);
        }
    }

    #[test]
    fn empty_batch() {
        assert!(hash_many::<&[u8]>(&[]).is_empty());
    }

    /// `Platform::hash_many` is hidden and unstable in `blake3`: this module
    /// was written against 1.8.7 (`src/platform.rs`: the argument order,
    /// `IncrementCounter`, the variants). Before moving the pin, read that
    /// file again in the new version, then update both places.
    #[test]
    fn blake3_is_pinned() {
        const PINNED: &str = "1.8.7";
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("blake3 = {{ version = \"={PINNED}\"")),
            "the workspace must pin blake3 to exactly {PINNED} (see cas/src/batch_hash.rs)"
        );
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        assert!(
            lock.contains(&format!("name = \"blake3\"\nversion = \"{PINNED}\"\n")),
            "Cargo.lock resolves blake3 to another version than {PINNED}: \
             batch_hash uses its hidden Platform::hash_many; check it against the new version"
        );
    }
}
