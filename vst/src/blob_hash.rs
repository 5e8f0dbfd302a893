//! Blob ids of file content: one file ([`hash_blob`]) or many
//! ([`hash_blobs`]), with the policy for when to use more than one core.
//!
//! Many small files go through `vst_cas::batch_hash`, which hashes them
//! side by side in the CPU's SIMD lanes: a batch of 1 KiB files costs about
//! a sixth of one `blake3::hash` call per file (`cargo bench --bench commit
//! -- seed/hash_`).

use rayon::prelude::*;
use vst_cas::batch_hash;

use crate::id::BlobId;

/// Content at least this long is hashed with BLAKE3's multi-threaded
/// `update_rayon`. Below it, waking a second core (about 20 µs on the
/// project's 2-core machines) costs more than it saves. Measured with
/// `cargo bench --bench commit -- threshold/blob`: see ARCHITECTURE.md.
pub const PARALLEL_BLOB_LEN_MIN: usize = 128 * 1024;

/// A batch of files whose content adds up to at least this many bytes is
/// hashed on all cores (in runs of [`PARALLEL_BATCH_RUN_LEN`] files, each
/// run across SIMD lanes); a smaller batch is hashed on the calling thread.
/// Measured with `cargo bench --bench commit -- threshold/batch`: see
/// ARCHITECTURE.md.
pub const PARALLEL_BATCH_LEN_MIN: usize = 512 * 1024;

/// Files per task when a batch is hashed on all cores: several rounds of
/// sixteen lanes, and enough tasks for rayon to balance uneven sizes.
pub const PARALLEL_BATCH_RUN_LEN: usize = 64;

/// Bytes a run of [`runs`] holds at most, besides a larger item alone.
pub(crate) const RUN_LEN_MAX: u64 = 1 << 20;

/// Splits `items` into runs, in order, of at most [`PARALLEL_BATCH_RUN_LEN`]
/// items and [`RUN_LEN_MAX`] bytes by `len` (a larger item is a run of its
/// own): what one task reads before hashing the run with [`hash_blobs`], so
/// that memory stays bounded and rayon has tasks to balance.
pub(crate) fn runs<T>(items: Vec<T>, len: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut run_len = 0;
    for item in items {
        let item_len = len(&item);
        match runs.last_mut() {
            Some(run)
                if run.len() < PARALLEL_BATCH_RUN_LEN && run_len + item_len <= RUN_LEN_MAX =>
            {
                run.push(item);
                run_len += item_len;
            }
            _ => {
                runs.push(vec![item]);
                run_len = item_len;
            }
        }
    }
    runs
}

/// The blob id of `content`: BLAKE3, on all cores for large content.
pub fn hash_blob(content: &[u8]) -> BlobId {
    if content.len() >= PARALLEL_BLOB_LEN_MIN {
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(content);
        BlobId::new(hasher.finalize().into())
    } else {
        BlobId::of(content)
    }
}

/// The blob ids of `contents`, in order, equal to [`hash_blob`] of each:
/// small contents side by side in SIMD lanes, large ones
/// ([`PARALLEL_BLOB_LEN_MIN`] and up) each on all cores, and the batch on
/// all cores when it adds up to [`PARALLEL_BATCH_LEN_MIN`].
pub fn hash_blobs<T: AsRef<[u8]> + Sync>(contents: &[T]) -> Vec<BlobId> {
    let mut total = 0;
    let mut large = false;
    for content in contents {
        let len = content.as_ref().len();
        total += len;
        large |= len >= PARALLEL_BLOB_LEN_MIN;
    }
    if large {
        // Rare (a batch with a file of 128 KiB or more): each large file on
        // all cores, the small ones in lanes.
        let small: Vec<&[u8]> = contents
            .iter()
            .map(AsRef::as_ref)
            .filter(|c| c.len() < PARALLEL_BLOB_LEN_MIN)
            .collect();
        let mut small = hash_blobs(&small).into_iter();
        return contents
            .iter()
            .map(|c| match c.as_ref() {
                c if c.len() >= PARALLEL_BLOB_LEN_MIN => hash_blob(c),
                _ => small.next().expect("one id per small content"),
            })
            .collect();
    }
    let lanes = |run: &[T]| batch_hash::hash_many(run).into_iter().map(BlobId::new);
    if total >= PARALLEL_BATCH_LEN_MIN && contents.len() > PARALLEL_BATCH_RUN_LEN {
        let runs: Vec<Vec<BlobId>> =
            contents.par_chunks(PARALLEL_BATCH_RUN_LEN).map(|run| lanes(run).collect()).collect();
        runs.into_iter().flatten().collect()
    } else {
        lanes(contents).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_order_and_bounds() {
        let lens: Vec<u64> =
            [5, RUN_LEN_MAX, 1, RUN_LEN_MAX - 1, 1, 2].into_iter().chain([10; 200]).collect();
        let runs = runs(lens.clone(), |&l| l);
        assert_eq!(runs.concat(), lens, "every item once, in order");
        assert_eq!(runs[..3], [vec![5], vec![RUN_LEN_MAX], vec![1, RUN_LEN_MAX - 1]]);
        for run in &runs {
            assert!(run.len() <= PARALLEL_BATCH_RUN_LEN);
            assert!(run.len() == 1 || run.iter().sum::<u64>() <= RUN_LEN_MAX);
        }
    }

    #[test]
    fn hash_blobs_equals_hash_blob_on_every_path() {
        let lens = [0, 1, 64, 1000, 1024, 1025, 4096, PARALLEL_BLOB_LEN_MIN, 300_000];
        let mut contents: Vec<Vec<u8>> = Vec::new();
        // Enough small files to take the parallel path, then the large ones
        // mixed in.
        for i in 0..PARALLEL_BATCH_LEN_MIN / 100 {
            contents.push(vec![i as u8; lens[i % 5]]);
        }
        for (i, &len) in lens.iter().enumerate() {
            contents.insert(i * 7, vec![i as u8 ^ 0x5a; len]);
        }
        for batch in [&contents[..], &contents[..1], &contents[..20], &contents[..7]] {
            let ids = hash_blobs(batch);
            let expected: Vec<BlobId> = batch.iter().map(|c| BlobId::of(c)).collect();
            assert_eq!(ids, expected);
        }
    }
}
