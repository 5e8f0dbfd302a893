//! The conformance suite every [`Store`] implementation must pass.
//!
//! Each backend's tests call [`run_all`] with a function that opens a fresh,
//! empty store. A failed check panics with a message naming the rule.

use crate::{ObjectId, Store, StoreError};

/// Runs every check against stores made by `open_empty`.
pub fn run_all<S: Store>(open_empty: &mut dyn FnMut() -> S) {
    put_then_get(&open_empty());
    missing_is_not_found(&open_empty());
    put_is_idempotent(&open_empty());
    batch_put(&open_empty());
    batch_with_repeats(&open_empty());
    ranges(&open_empty());
    large_objects(&open_empty());
    empty_object(&open_empty());
    sync_succeeds(&open_empty());
    streams(&open_empty());
}

fn put_then_get<S: Store>(store: &S) {
    let data = b"the quick brown fox".as_slice();
    let id = ObjectId::of(data);
    assert!(!store.contains(&id).unwrap(), "a fresh store contains nothing");
    store.put(id, data).unwrap();
    assert!(store.contains(&id).unwrap(), "contains after put");
    assert_eq!(&store.get(&id).unwrap()[..], data, "get returns what was put");
    assert_eq!(store.object_len(&id).unwrap(), Some(data.len() as u64), "object_len after put");
}

fn missing_is_not_found<S: Store>(store: &S) {
    let id = ObjectId::of(b"never stored");
    match store.get(&id) {
        Err(StoreError::NotFound { id: got }) => assert_eq!(got, id),
        other => panic!("get of a missing object must be NotFound, got {other:?}"),
    }
    assert!(store.read_range(&id, 0, 1).is_err(), "read_range of a missing object fails");
    assert_eq!(store.object_len(&id).unwrap(), None, "object_len of a missing object");
}

fn put_is_idempotent<S: Store>(store: &S) {
    let data = vec![7u8; 5000];
    let id = ObjectId::of(&data);
    store.put(id, &data).unwrap();
    store.put(id, &data).unwrap();
    assert_eq!(&store.get(&id).unwrap()[..], &data[..]);
}

fn batch_put<S: Store>(store: &S) {
    let blobs: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().repeat(i as usize + 1)).collect();
    let batch: Vec<(ObjectId, &[u8])> =
        blobs.iter().map(|b| (ObjectId::of(b), b.as_slice())).collect();
    store.put_batch(&batch).unwrap();
    for (id, bytes) in &batch {
        assert_eq!(&store.get(id).unwrap()[..], *bytes, "every object of a batch is stored");
    }
    let mut ids: Vec<ObjectId> = batch.iter().map(|(id, _)| *id).rev().collect();
    ids.push(ids[0]);
    let got = store.get_many(&ids).unwrap();
    assert_eq!(got.len(), ids.len(), "get_many answers every id, duplicates included");
    for (id, bytes) in ids.iter().zip(&got) {
        assert_eq!(ObjectId::of(bytes), *id, "get_many returns each object in the order asked");
    }
    store.sync().unwrap();
    let got = store.get_many(&ids).unwrap();
    assert!(ids.iter().zip(&got).all(|(id, b)| ObjectId::of(b) == *id), "after sync too");
    assert!(
        matches!(
            store.get_many(&[ids[0], ObjectId::of(b"absent")]),
            Err(StoreError::NotFound { .. })
        ),
        "get_many of a missing object is NotFound"
    );
}

/// A batch may hold an object twice, an empty object, and objects the
/// store already has, in any order: each is stored once with its bytes.
fn batch_with_repeats<S: Store>(store: &S) {
    let blobs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) * 37]).collect();
    let ids: Vec<ObjectId> = blobs.iter().map(|b| ObjectId::of(b)).collect();
    store.put(ids[3], &blobs[3]).unwrap();
    store.put_batch(&[(ids[5], blobs[5].as_slice())]).unwrap();
    let batch: Vec<(ObjectId, &[u8])> = [7, 0, 3, 7, 12, 5, 0, 39, 12, 1, 39]
        .into_iter()
        .chain(0..40)
        .map(|i| (ids[i], blobs[i].as_slice()))
        .collect();
    store.put_batch(&batch).unwrap();
    for (id, bytes) in ids.iter().zip(&blobs) {
        assert_eq!(&store.get(id).unwrap()[..], &bytes[..], "a repeated batch object is intact");
        assert_eq!(store.object_len(id).unwrap(), Some(bytes.len() as u64));
    }
}

fn ranges<S: Store>(store: &S) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let id = ObjectId::of(&data);
    store.put(id, &data).unwrap();
    for (offset, len) in [(0u64, 0u64), (0, 1), (17, 100), (9_999, 1), (0, 10_000), (10_000, 0)] {
        let got = store.read_range(&id, offset, len).unwrap();
        assert_eq!(
            &got[..],
            &data[offset as usize..(offset + len) as usize],
            "range {offset}+{len}"
        );
    }
    for (offset, len) in [(9_999u64, 2u64), (10_001, 0), (u64::MAX, 2)] {
        assert!(
            matches!(store.read_range(&id, offset, len), Err(StoreError::RangeOutOfBounds { .. })),
            "range {offset}+{len} past the end is an error"
        );
    }
}

/// Objects around the chunking threshold, one of exactly one chunk (whose
/// id is its only chunk's id) and one of two equal chunks, read back
/// before and after `sync`.
fn large_objects<S: Store>(store: &S) {
    let len_min = crate::pack::CHUNKING_LEN_MIN;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..len_min * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // FastCDC finds no cut point in zeros: 1 MiB of them is one chunk,
    // 2 MiB two equal ones.
    let zeros = vec![0u8; len_min * 2];
    // The premise, checked: if chunking changes, this must be found anew.
    assert_eq!(
        crate::chunking::chunks(&zeros[..len_min]).count(),
        1,
        "1 MiB of zeros is one chunk"
    );
    let objects: Vec<&[u8]> = vec![
        &noise[..len_min - 1],
        &noise[1..len_min + 1],
        &noise[2..len_min * 3],
        &zeros[..len_min],
        &zeros[..],
    ];
    for bytes in &objects {
        store.put(ObjectId::of(bytes), bytes).unwrap();
    }
    for round in ["before sync", "after sync"] {
        for bytes in &objects {
            let id = ObjectId::of(bytes);
            assert_eq!(&store.get(&id).unwrap()[..], *bytes, "{} bytes, {round}", bytes.len());
            let len = store.object_len(&id).unwrap();
            assert_eq!(len, Some(bytes.len() as u64), "object_len, {} bytes, {round}", bytes.len());
            let mid = bytes.len() as u64 / 2;
            assert_eq!(
                &store.read_range(&id, mid - 10, 20).unwrap()[..],
                &bytes[mid as usize - 10..mid as usize + 10],
                "a range of {} bytes, {round}",
                bytes.len()
            );
        }
        store.sync().unwrap();
    }
}

fn empty_object<S: Store>(store: &S) {
    let id = ObjectId::of(b"");
    store.put(id, b"").unwrap();
    assert!(store.get(&id).unwrap().is_empty());
    assert_eq!(store.object_len(&id).unwrap(), Some(0));
}

fn sync_succeeds<S: Store>(store: &S) {
    let id = ObjectId::of(b"x");
    store.put(id, b"x").unwrap();
    store.sync().unwrap();
    assert!(store.contains(&id).unwrap());
}

/// A reader that hands out at most `step` bytes a call, so that the store
/// must gather what it reads.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// `put_reader` stores what `put` stores (same id, readable the same way,
/// idempotent either way round), and an `ObjectReader` reads it back, for
/// objects on both sides of the chunking threshold.
fn streams<S: Store>(store: &S) {
    let len_min = crate::pack::CHUNKING_LEN_MIN;
    let noise = crate::sim::noise(41, len_min * 3 + 17);
    for (i, len) in [0, 1, 4095, len_min - 1, len_min, len_min * 3 + 17].into_iter().enumerate() {
        let bytes = &noise[..len];
        let step = [1 << 20, 777, 65_536][i % 3];
        let (id, n) = store.put_reader(&mut Trickle { bytes, step }).unwrap();
        assert_eq!((id, n), (ObjectId::of(bytes), len as u64), "put_reader of {len} bytes");
        assert_eq!(&store.get(&id).unwrap()[..], bytes, "get after put_reader of {len} bytes");
        store.put(id, bytes).unwrap();
        let mut reader = crate::stream::ObjectReader::new(store, &id).unwrap();
        assert_eq!(reader.len(), len as u64);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        assert!(out == bytes, "ObjectReader of {len} bytes");
    }
    let other = &crate::sim::noise(42, len_min * 2)[..];
    store.put(ObjectId::of(other), other).unwrap();
    assert_eq!(
        store.put_reader(&mut &other[..]).unwrap().0,
        ObjectId::of(other),
        "put, then put_reader"
    );
    store.sync().unwrap();
    let mut out = Vec::new();
    let mut reader = crate::stream::ObjectReader::new(store, &ObjectId::of(other)).unwrap();
    std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
    assert!(out == other, "ObjectReader after sync");
    assert!(
        matches!(
            crate::stream::ObjectReader::new(store, &ObjectId::of(b"absent")),
            Err(StoreError::NotFound { .. })
        ),
        "a reader of a missing object is NotFound"
    );
}
