//! Putting the content of many closed files (overlays) into the store at
//! once, for the writable mount's settler: small files are read in runs,
//! hashed side by side in SIMD lanes (`vst::hash_blobs`) and put in one
//! batch per run; large ones go one at a time as before.

use std::fs::File;

use rayon::prelude::*;
use vst::BlobId;
use vst_cas::{ObjectId, Store};

use crate::write::{put_content, read_at};

/// Overlays up to this size are read whole in runs of
/// `vst::PARALLEL_BATCH_RUN_LEN`; larger ones are put one at a time
/// (`put_content`, which streams the largest). A run holds at most 64 x
/// 64 KiB in memory.
const RUN_FILE_LEN_MAX: u64 = 64 * 1024;

/// Puts the first `size` bytes of each overlay into `store` and returns
/// their ids, in order, on all cores. An error says what went wrong, for
/// the log, as `put_content`'s does.
pub(crate) fn put_contents(
    store: &dyn Store,
    overlays: &[(&File, u64)],
) -> Vec<Result<BlobId, String>> {
    let (small, large): (Vec<usize>, Vec<usize>) =
        (0..overlays.len()).partition(|&i| overlays[i].1 <= RUN_FILE_LEN_MAX);
    let tasks: Vec<&[usize]> =
        small.chunks(vst::PARALLEL_BATCH_RUN_LEN).chain(large.chunks(1)).collect();
    let done: Vec<Vec<Result<BlobId, String>>> = tasks
        .par_iter()
        .map(|task| match task {
            [i] if overlays[*i].1 > RUN_FILE_LEN_MAX => {
                let (file, size) = overlays[*i];
                vec![put_content(store, file, size)]
            }
            run => put_run(store, run.iter().map(|&i| overlays[i])),
        })
        .collect();
    let mut ids: Vec<Option<Result<BlobId, String>>> = vec![None; overlays.len()];
    for (task, results) in tasks.iter().zip(done) {
        for (&i, result) in task.iter().zip(results) {
            ids[i] = Some(result);
        }
    }
    ids.into_iter().map(|id| id.expect("every overlay is in one task")).collect()
}

/// Reads a run of small overlays, hashes them together, and puts them in
/// one batch.
fn put_run<'a>(
    store: &dyn Store,
    run: impl Iterator<Item = (&'a File, u64)>,
) -> Vec<Result<BlobId, String>> {
    let read: Vec<Result<Vec<u8>, String>> = run
        .map(|(file, size)| {
            let bytes = read_at(file, 0, size).map_err(|e| format!("reading its overlay: {e}"))?;
            if bytes.len() as u64 != size {
                return Err(format!("its overlay is {} bytes, expected {size}", bytes.len()));
            }
            Ok(bytes)
        })
        .collect();
    let contents: Vec<&[u8]> = read.iter().filter_map(|r| r.as_deref().ok()).collect();
    let ids = vst::hash_blobs(&contents);
    let objects: Vec<(ObjectId, &[u8])> =
        ids.iter().zip(&contents).map(|(id, c)| (id.object_id(), *c)).collect();
    let stored = store.put_batch(&objects).map_err(|e| format!("storing its content: {e}"));
    let mut ids = ids.into_iter();
    read.into_iter()
        .map(|r| {
            r?;
            let id = ids.next().expect("one id per overlay read");
            stored.clone().map(|()| id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use vst_cas::MemStore;

    use super::*;

    #[test]
    fn ids_and_content_equal_one_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let lens = [0usize, 1, 1024, 5000, 64 * 1024, 64 * 1024 + 1, 300_000];
        let mut files = Vec::new();
        for i in 0..150 {
            let len = lens[i % lens.len()];
            let content: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            let mut file = File::create(dir.path().join(i.to_string())).unwrap();
            file.write_all(&content).unwrap();
            files.push((File::open(dir.path().join(i.to_string())).unwrap(), content));
        }
        let store = MemStore::new();
        // The last claims more bytes than its overlay has.
        let overlays: Vec<(&File, u64)> = files
            .iter()
            .enumerate()
            .map(|(i, (f, c))| (f, c.len() as u64 + u64::from(i == 149)))
            .collect();
        let ids = put_contents(&store, &overlays);
        for (i, ((_, content), id)) in files.iter().zip(&ids).enumerate() {
            if i == 149 {
                let expected = format!("its overlay is {} bytes, expected {}", 1024, 1025);
                assert_eq!(id.as_ref().unwrap_err(), &expected);
                continue;
            }
            let id = id.as_ref().unwrap();
            assert_eq!(*id, BlobId::of(content));
            assert_eq!(&store.get(&id.object_id()).unwrap()[..], &content[..]);
        }
    }
}
