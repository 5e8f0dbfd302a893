//! Hashing many small inputs at once, one input per SIMD lane.
//!
//! `blake3::hash` of an input of one chunk (1 KiB) or less compresses its
//! blocks one after the other, in one lane of the eight (AVX2) or sixteen
//! (AVX-512) the CPU has. [`hash_many`] puts up to that many inputs side by
//! side instead, through the `blake3` crate's own lane-parallel compression
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
//! How an input of one chunk or less is hashed (the BLAKE3 spec, section
//! 2.4): its blocks are compressed in sequence from the IV, the first with
//! `CHUNK_START`, the last with `CHUNK_END | ROOT` and its true length,
//! zero-padded; the first 32 bytes of that last compression are the hash.
//! `Platform::hash_many` compresses whole 64-byte blocks only, for inputs
//! of one length per call. So inputs are grouped by their number of blocks
//! handed to the lanes: an input whose length is a positive multiple of 64
//! goes there whole, its last block flagged `CHUNK_END | ROOT`; any other
//! input gives the lanes its whole blocks (flagged as the middle of a
//! chunk) and its last, partial block is compressed on its own from the
//! chaining value the lanes returned.
//!
//! Inputs longer than [`LANE_LEN_MAX`] are hashed with `blake3::hash`,
//! which already spreads a multi-chunk input's chunks over the lanes.

use blake3::platform::Platform;

use crate::id::{ID_LEN, ObjectId};

/// Inputs up to this many bytes (one BLAKE3 chunk) are hashed across SIMD
/// lanes; longer ones with `blake3::hash`, which from two chunks on uses
/// several lanes for one input.
pub const LANE_LEN_MAX: usize = blake3::CHUNK_LEN;

const BLOCK_LEN: usize = blake3::BLOCK_LEN;
/// Blocks in a chunk: the most a lane group holds.
const CHUNK_BLOCKS: usize = LANE_LEN_MAX / BLOCK_LEN;

// Domain flags of the BLAKE3 spec (section 2.1, table 3); private in the
// crate, fixed by the spec.
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
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

/// The BLAKE3 ids of `inputs`, in order: equal to `ObjectId::of` of each.
/// Inputs of at most [`LANE_LEN_MAX`] bytes are hashed side by side in the
/// CPU's SIMD lanes (detected at run time); longer ones one at a time with
/// `blake3::hash`. One thread: callers spread big batches over threads.
pub fn hash_many<T: AsRef<[u8]>>(inputs: &[T]) -> Vec<ObjectId> {
    hash_many_on(Platform::detect(), inputs)
}

/// [`hash_many`] on a given platform. Only `Platform::detect()` and
/// `Platform::Portable` may be passed: the crate trusts the variant and
/// runs its instructions unchecked.
fn hash_many_on<T: AsRef<[u8]>>(platform: Platform, inputs: &[T]) -> Vec<ObjectId> {
    let mut ids = vec![ObjectId::from_bytes([0; ID_LEN]); inputs.len()];
    if inputs.len() == 1 {
        // Nothing to put beside it.
        ids[0] = ObjectId::of(inputs[0].as_ref());
        return ids;
    }
    // Group by the number of blocks the lanes take (1..=16) and whether
    // that includes the last block (a length that is a positive multiple of
    // 64): group `2 * (blocks - 1) + whole`. Counting sort: no comparisons.
    const GROUPS: usize = 2 * CHUNK_BLOCKS;
    let group_of = |len: usize| -> Option<usize> {
        if len == 0 || len > LANE_LEN_MAX {
            return None;
        }
        if len % BLOCK_LEN == 0 {
            Some(2 * (len / BLOCK_LEN - 1) + 1)
        } else if len > BLOCK_LEN {
            Some(2 * (len / BLOCK_LEN - 1))
        } else {
            None
        }
    };
    let mut counts = [0usize; GROUPS + 1];
    for input in inputs {
        if let Some(g) = group_of(input.as_ref().len()) {
            counts[g + 1] += 1;
        }
    }
    for g in 0..GROUPS {
        counts[g + 1] += counts[g];
    }
    let mut order = vec![0u32; counts[GROUPS]];
    let mut next = counts;
    for (i, input) in inputs.iter().enumerate() {
        if let Some(g) = group_of(input.as_ref().len()) {
            order[next[g]] = u32::try_from(i).expect("a batch holds fewer than 2^32 inputs");
            next[g] += 1;
        }
    }
    // Chaining values (or, for whole groups, the ids) from the lanes.
    let mut out = vec![0u8; order.len() * ID_LEN];
    for g in 0..GROUPS {
        let members = &order[counts[g]..counts[g + 1]];
        if members.is_empty() {
            continue;
        }
        let blocks = g / 2 + 1;
        let flags_end = if g % 2 == 1 { CHUNK_END | ROOT } else { 0 };
        let out = &mut out[counts[g] * ID_LEN..counts[g + 1] * ID_LEN];
        lanes(platform, blocks, inputs, members, flags_end, out);
    }
    let mut lane_cv = vec![None; inputs.len()];
    for (slot, cv) in order.iter().zip(out.chunks_exact(ID_LEN)) {
        lane_cv[*slot as usize] = Some(<[u8; ID_LEN]>::try_from(cv).expect("chunks of ID_LEN"));
    }
    for ((input, id), cv) in inputs.iter().zip(&mut ids).zip(lane_cv) {
        let input = input.as_ref();
        *id = if input.len() > LANE_LEN_MAX {
            ObjectId::of(input)
        } else if input.len() % BLOCK_LEN == 0 && !input.is_empty() {
            ObjectId::from_bytes(cv.expect("a whole input's id comes from the lanes"))
        } else {
            finish(platform, input, cv)
        };
    }
    ids
}

/// Compresses the last, partial (or empty) block of `input`, of at most
/// one chunk, from the chaining value of its whole blocks (`None`: it has
/// none, so the IV) into its id.
fn finish(platform: Platform, input: &[u8], cv: Option<[u8; ID_LEN]>) -> ObjectId {
    let whole = input.len() / BLOCK_LEN * BLOCK_LEN;
    let (mut cv, start) = match cv {
        Some(bytes) => (words(&bytes), 0),
        None => (IV, CHUNK_START),
    };
    let tail = &input[whole..];
    let mut block = [0u8; BLOCK_LEN];
    block[..tail.len()].copy_from_slice(tail);
    let block_len = u8::try_from(tail.len()).expect("a partial block is shorter than 64 bytes");
    platform.compress_in_place(&mut cv, &block, block_len, 0, start | CHUNK_END | ROOT);
    let mut id = [0u8; ID_LEN];
    for (bytes, word) in id.chunks_exact_mut(4).zip(cv) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    ObjectId::from_bytes(id)
}

/// Little-endian words of a chaining value.
fn words(bytes: &[u8; ID_LEN]) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (word, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes(b.try_into().expect("chunks of 4"));
    }
    words
}

/// Runs `Platform::hash_many` on the first `blocks` blocks of each member,
/// all at chunk counter 0 (each input is its own single-chunk tree).
fn lanes<T: AsRef<[u8]>>(
    platform: Platform,
    blocks: usize,
    inputs: &[T],
    members: &[u32],
    flags_end: u8,
    out: &mut [u8],
) {
    // `hash_many` takes the block count as a const generic.
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match blocks {
                $($n => lanes_of::<{ $n * BLOCK_LEN }, T>(platform, inputs, members, flags_end, out),)*
                _ => unreachable!("a chunk has 1 to 16 blocks"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

fn lanes_of<const N: usize, T: AsRef<[u8]>>(
    platform: Platform,
    inputs: &[T],
    members: &[u32],
    flags_end: u8,
    out: &mut [u8],
) {
    let arrays: Vec<&[u8; N]> = members
        .iter()
        .map(|&i| inputs[i as usize].as_ref()[..N].try_into().expect("grouped inputs have N bytes"))
        .collect();
    platform.hash_many(
        &arrays,
        &IV,
        0,
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

    #[test]
    fn mixed_batches_of_1_to_100_equal_blake3() {
        let mut rng = Rng(2);
        for platform in platforms() {
            for size in 1..=100 {
                let inputs: Vec<Vec<u8>> = (0..size)
                    .map(|_| {
                        let len = match rng.below(8) {
                            // Lengths next to block and chunk edges.
                            0 => [0, 1, 63, 64, 65, 1023, 1024, 1025][rng.below(8)],
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
        let inputs: Vec<Vec<u8>> = (0..=4096).map(|len| rng.bytes(len)).collect();
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
