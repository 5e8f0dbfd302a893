//! The object-store backend: the conformance suite against an in-memory
//! object store and against SeaweedFS, indexes published in order, faults,
//! refs by conditional writes and the probe, the bounded cache.

#![cfg(feature = "s3")]

#[path = "support/seaweed.rs"]
mod seaweed;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use vst_cas::remote::{CacheOptions, Remote, RemoteOptions, S3Config};
use vst_cas::sim::noise;
use vst_cas::{ObjectId, RefError, RefName, Store, StoreError, conformance};

/// An object store that fails or misbehaves on purpose.
#[derive(Debug, Default)]
struct Faulty {
    inner: InMemory,
    /// Treat every conditional write as a plain one (as some servers do).
    ignore_conditions: bool,
    /// The upload of the pack that holds this id's record fails; the
    /// others succeed, so that a store publishing past the failure is
    /// caught. Chosen by content, not by the order uploads reach the
    /// server: several run at once, so which one arrives third is timing.
    pack_fails_holding: Option<ObjectId>,
    /// Follow every body a GET returns with this many more bytes (as a
    /// hostile server could), counting what the reader takes in `padding_read`.
    padding: AtomicUsize,
    padding_read: Arc<AtomicUsize>,
    /// Run once, when the first read of a branch's key has been answered:
    /// another writer acts exactly between a compare-and-swap's read and
    /// its write.
    after_ref_read: Hook,
}

#[derive(Default)]
struct Hook(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Pieces of [`Faulty::padding`] a body is padded with.
const PADDING_PIECE_LEN: usize = 64 << 10;

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faulty")
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Key,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.ignore_conditions {
            opts.mode = PutMode::Overwrite;
        }
        if location.as_ref().ends_with(".pack")
            && let Some(id) = self.pack_fails_holding
        {
            let bytes: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
            if bytes.windows(32).any(|w| w == id.as_bytes()) {
                return Err(object_store::Error::Generic {
                    store: "Faulty",
                    source: "injected upload failure".into(),
                });
            }
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Key,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        use futures::StreamExt;
        use object_store::GetResultPayload;
        let result = self.inner.get_opts(location, options).await?;
        let hook = if location.as_ref().contains("/refs/heads/") {
            self.after_ref_read.0.lock().unwrap().take()
        } else {
            None
        };
        if let Some(hook) = hook {
            // On a thread of its own: the hook's writer blocks on its own
            // runtime, which cannot be entered from this one's thread.
            std::thread::scope(|s| s.spawn(hook).join().unwrap());
        }
        let padding_len = self.padding.load(Ordering::SeqCst);
        if padding_len == 0 || result.range.is_empty() {
            return Ok(result);
        }
        let (meta, range, attributes) =
            (result.meta.clone(), result.range.clone(), result.attributes.clone());
        let body = result.into_stream();
        let piece = bytes::Bytes::from(vec![b'0'; PADDING_PIECE_LEN]);
        let read = self.padding_read.clone();
        let padding = futures::stream::iter(0..padding_len / PADDING_PIECE_LEN).map(move |_| {
            read.fetch_add(PADDING_PIECE_LEN, Ordering::SeqCst);
            Ok(piece.clone())
        });
        let payload = GetResultPayload::Stream(body.chain(padding).boxed());
        Ok(GetResult { payload, meta, range, attributes, extensions: Default::default() })
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Key>>,
    ) -> BoxStream<'static, object_store::Result<Key>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Key,
        to: &Key,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn memory() -> Remote {
    Remote::with_client(Arc::new(InMemory::new()), "repo", "memory").unwrap()
}

fn small_packs() -> RemoteOptions {
    RemoteOptions { pack_len_target: 1 << 20, ..Default::default() }
}

#[test]
fn conformance_in_memory() {
    conformance::run_all(&mut || memory().store(RemoteOptions::default()).unwrap());
}

#[test]
fn objects_survive_reopen_and_other_writers_are_found() {
    let remote = memory();
    let a = remote.store(small_packs()).unwrap();
    let blobs: Vec<Vec<u8>> = (0..40).map(|i| noise(i, 100_000)).collect();
    for b in &blobs[..20] {
        a.put(ObjectId::of(b), b).unwrap();
    }
    a.sync().unwrap();
    let b = remote.store(small_packs()).unwrap();
    for blob in &blobs[..20] {
        assert_eq!(&b.get(&ObjectId::of(blob)).unwrap()[..], &blob[..]);
    }
    for blob in &blobs[20..] {
        a.put(ObjectId::of(blob), blob).unwrap();
    }
    a.sync().unwrap();
    // Not yet in b's indexes: a miss makes it list again.
    assert!(!b.contains(&ObjectId::of(&blobs[39])).unwrap());
    assert_eq!(&b.get(&ObjectId::of(&blobs[39])).unwrap()[..], &blobs[39][..]);
    assert!(b.contains(&ObjectId::of(&blobs[25])).unwrap());
    assert!(a.pack_count() > 1, "the writes filled several packs");
}

#[test]
fn large_objects_are_chunked_and_ranges_fetch_what_they_need() {
    let remote = memory();
    let store = remote.store(small_packs()).unwrap();
    let data = noise(7, 5 << 20);
    let id = ObjectId::of(&data);
    store.put(id, &data).unwrap();
    for (offset, len) in [(0u64, 10u64), (1 << 20, 3 << 20), ((5 << 20) - 1, 1), (0, 5 << 20)] {
        // Read before and after the upload: from memory, then from the server.
        let got = store.read_range(&id, offset, len).unwrap();
        assert_eq!(&got[..], &data[offset as usize..(offset + len) as usize]);
    }
    store.sync().unwrap();
    let fresh = remote.store(small_packs()).unwrap();
    assert_eq!(&fresh.get(&id).unwrap()[..], &data[..]);
    let got = fresh.read_range(&id, 3_000_000, 100_000).unwrap();
    assert_eq!(&got[..], &data[3_000_000..3_100_000]);
    // An edit in the middle stores only the chunks it touched.
    let mut edited = data.clone();
    edited[2_500_000] ^= 0xff;
    let packs_before = fresh.pack_count();
    fresh.put(ObjectId::of(&edited), &edited).unwrap();
    fresh.sync().unwrap();
    assert_eq!(fresh.pack_count(), packs_before + 1, "one small pack for one or two chunks");
}

#[test]
fn a_damaged_record_is_an_error_never_wrong_bytes() {
    let client = Arc::new(InMemory::new());
    let remote = Remote::with_client(client.clone(), "", "memory").unwrap();
    let store = remote.store(RemoteOptions::default()).unwrap();
    let data = noise(3, 10_000);
    let id = ObjectId::of(&data);
    store.put(id, &data).unwrap();
    store.sync().unwrap();
    drop(store);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let packs: Vec<ObjectMeta> = rt.block_on(async {
        use futures::TryStreamExt;
        client.list(Some(&Key::from("packs"))).try_collect().await.unwrap()
    });
    let pack = packs.iter().find(|m| m.location.as_ref().ends_with(".pack")).unwrap();
    let mut bytes = rt
        .block_on(async { client.get(&pack.location).await.unwrap().bytes().await.unwrap() })
        .to_vec();
    let last = bytes.len() - 100;
    bytes[last] ^= 1;
    rt.block_on(client.put(&pack.location, bytes.into())).unwrap();
    let store = remote.store(RemoteOptions::default()).unwrap();
    assert!(matches!(store.get(&id), Err(StoreError::Damaged { .. } | StoreError::Corrupt { .. })));
}

/// A failed upload poisons the store, and what it publishes is exactly
/// the packs sealed before the failed one: the uploads run concurrently,
/// but indexes are written in sealing order and none after a failure, so
/// the outcome does not depend on which upload reaches the server first.
#[test]
fn a_failed_upload_poisons_and_publishes_only_a_prefix() {
    // Incompressible 200,000-byte objects in packs sealed once they reach
    // 1 MiB: each pack holds six (the sixth takes it past the target), so
    // object 25 is in the fifth pack, which holds objects 24 to 29.
    let blobs: Vec<Vec<u8>> = (0..60).map(|i| noise(100 + i, 200_000)).collect();
    let faulty = Arc::new(Faulty {
        pack_fails_holding: Some(ObjectId::of(&blobs[25])),
        ..Default::default()
    });
    let remote = Remote::with_client(faulty, "r", "faulty").unwrap();
    let store = remote.store(small_packs()).unwrap();
    let mut failed = false;
    for b in &blobs {
        if store.put(ObjectId::of(b), b).is_err() {
            failed = true;
            break;
        }
    }
    let synced = store.sync();
    assert!(failed || synced.is_err(), "the fifth pack's upload fails");
    assert!(matches!(store.put(ObjectId::of(b"x"), b"x"), Err(StoreError::Poisoned)));
    drop(store);
    // What another reader sees is a prefix of what was put, in order: the
    // four packs before the failed one, and nothing after it.
    let reader = remote.store(small_packs()).unwrap();
    let present: Vec<bool> =
        blobs.iter().map(|b| reader.contains(&ObjectId::of(b)).unwrap()).collect();
    let visible = present.iter().take_while(|p| **p).count();
    assert_eq!(visible, 24, "every pack sealed before the failed one is published");
    assert!(present[visible..].iter().all(|p| !p), "nothing after a gap: {present:?}");
    assert_eq!(reader.pack_count(), 4);
}

/// A server that answers every GET with far more than was asked for (a
/// ref, an index, a range of a pack): the reader stops at what the format
/// bounds and fails, instead of reading the whole body.
#[test]
fn oversized_answers_are_not_read_past_their_bound() {
    let faulty = Arc::new(Faulty::default());
    let remote = Remote::with_client(faulty.clone(), "r", "faulty").unwrap();
    let store = remote.store(RemoteOptions::default()).unwrap();
    let data = noise(11, 3 << 20);
    let id = ObjectId::of(&data);
    store.put(id, &data).unwrap();
    store.sync().unwrap();
    let main = RefName::try_from("main").unwrap();
    remote.refs().update(&main, None, id).unwrap();
    drop(store);

    let reader = remote.store(RemoteOptions::default()).unwrap();
    faulty.padding.store(256 << 20, Ordering::SeqCst);
    let err = reader.get(&id).unwrap_err();
    assert!(matches!(err, StoreError::RemoteDamaged { .. }), "{err}");
    let err = remote.refs().get(&main).unwrap_err();
    assert!(matches!(err, RefError::Damaged { .. }), "{err}");
    let err = remote.store(RemoteOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::RemoteDamaged { .. }), "{err}");
    // At most one piece past each of the three bounds was taken.
    let taken = faulty.padding_read.load(Ordering::SeqCst);
    assert!(taken <= 3 * PADDING_PIECE_LEN, "{taken} bytes of padding read");
}

#[test]
fn refs_compare_and_swap() {
    let remote = memory();
    let refs = remote.refs();
    let main = RefName::try_from("main").unwrap();
    let (a, b, c) = (ObjectId::of(b"a"), ObjectId::of(b"b"), ObjectId::of(b"c"));
    assert_eq!(refs.get(&main).unwrap(), None);
    refs.update(&main, None, a).unwrap();
    assert!(matches!(refs.update(&main, None, b), Err(RefError::Conflict { .. })));
    refs.update(&main, Some(a), b).unwrap();
    assert!(matches!(refs.update(&main, Some(a), c), Err(RefError::Conflict { .. })));
    refs.update(&main, Some(a), b).unwrap(); // already there: success
    let topic = RefName::try_from("team/topic").unwrap();
    refs.update(&topic, None, c).unwrap();
    assert_eq!(refs.list().unwrap(), vec![(main.clone(), b), (topic, c)]);
    assert_eq!(remote.refs().get(&main).unwrap(), Some(b));
}

#[test]
fn racing_updates_have_exactly_one_winner() {
    let remote = memory();
    let main = RefName::try_from("main").unwrap();
    let base = ObjectId::of(b"base");
    remote.refs().update(&main, None, base).unwrap();
    let wins = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let (remote, main, wins) = (&remote, &main, &wins);
            s.spawn(move || {
                let refs = remote.refs();
                match refs.update(main, Some(base), ObjectId::of(&[i])) {
                    Ok(()) => {
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(RefError::Conflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::SeqCst), 1);
}

#[test]
fn delete_is_a_compare_and_swap_and_a_push_can_recreate() {
    let remote = memory();
    let refs = remote.refs();
    let main = RefName::try_from("main").unwrap();
    let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
    assert!(matches!(refs.delete(&main, a), Err(RefError::Conflict { .. })), "absent");
    refs.update(&main, None, a).unwrap();
    assert!(matches!(refs.delete(&main, b), Err(RefError::Conflict { .. })), "stale value");
    assert_eq!(refs.get(&main).unwrap(), Some(a), "a refused delete changes nothing");
    refs.delete(&main, a).unwrap();
    assert_eq!(refs.get(&main).unwrap(), None);
    assert!(refs.list().unwrap().is_empty(), "a deleted branch is not listed");
    assert!(matches!(refs.update(&main, Some(a), b), Err(RefError::Conflict { .. })));
    refs.update(&main, None, b).unwrap();
    assert_eq!(remote.refs().list().unwrap(), vec![(main, b)]);
}

/// The other writer acts exactly between a compare-and-swap's read and its
/// write, both ways round: a delete between a push's read and write makes
/// the push lose, and a push between a delete's read and write makes the
/// delete lose.
#[test]
fn a_write_between_the_read_and_the_write_of_another_makes_it_lose() {
    let main = RefName::try_from("main").unwrap();
    let (base, pushed) = (ObjectId::of(b"base"), ObjectId::of(b"pushed"));
    for delete_first in [true, false] {
        let faulty = Arc::new(Faulty::default());
        let remote = Remote::with_client(faulty.clone(), "r", "faulty").unwrap();
        let other = Remote::with_client(faulty.clone(), "r", "faulty").unwrap();
        remote.refs().update(&main, None, base).unwrap();
        let (remote_refs, other_refs) = (remote.refs(), other.refs());
        remote_refs.probe().unwrap();
        other_refs.probe().unwrap();
        let main2 = main.clone();
        let interloper: Box<dyn FnOnce() + Send> = if delete_first {
            Box::new(move || other_refs.delete(&main2, base).unwrap())
        } else {
            Box::new(move || other_refs.update(&main2, Some(base), pushed).unwrap())
        };
        *faulty.after_ref_read.0.lock().unwrap() = Some(interloper);
        let lost = if delete_first {
            remote_refs.update(&main, Some(base), pushed)
        } else {
            remote_refs.delete(&main, base)
        };
        assert!(matches!(lost, Err(RefError::Conflict { .. })), "{delete_first}: {lost:?}");
        let expected = if delete_first { None } else { Some(pushed) };
        assert_eq!(remote.refs().get(&main).unwrap(), expected);
    }
}

/// A delete and a push that read the same value race, many rounds: in
/// each, exactly one wins, and the branch holds the winner's result.
fn delete_races_update(remote: &Remote, rounds: usize) {
    let main = RefName::try_from("race-delete").unwrap();
    let mut current: Option<ObjectId> = None;
    for round in 0..rounds {
        let base = ObjectId::of(format!("base {round}").as_bytes());
        remote.refs().update(&main, current, base).unwrap();
        let pushed = ObjectId::of(format!("pushed {round}").as_bytes());
        let barrier = std::sync::Barrier::new(2);
        let (deleted, updated) = std::thread::scope(|s| {
            let deleter = s.spawn(|| {
                let refs = remote.refs();
                refs.probe().unwrap();
                barrier.wait();
                refs.delete(&main, base)
            });
            let pusher = s.spawn(|| {
                let refs = remote.refs();
                refs.probe().unwrap();
                barrier.wait();
                refs.update(&main, Some(base), pushed)
            });
            (deleter.join().unwrap(), pusher.join().unwrap())
        });
        let now = remote.refs().get(&main).unwrap();
        match (deleted, updated) {
            (Ok(()), Err(RefError::Conflict { .. })) => assert_eq!(now, None, "round {round}"),
            (Err(RefError::Conflict { .. }), Ok(())) => {
                assert_eq!(now, Some(pushed), "round {round}")
            }
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        }
        current = now;
    }
}

#[test]
fn a_delete_racing_a_push_has_exactly_one_winner() {
    delete_races_update(&memory(), 50);
}

/// The gc lock and push leases exclude each other: a push that starts
/// while a gc holds the lock gets its lease only after the gc released it,
/// and a gc that starts while a push holds a lease gets the lock only
/// after the push released it. (Each side is given a moment to get ahead
/// wrongly; correct code passes however long that is.)
#[test]
fn the_gc_lock_and_push_leases_exclude_each_other() {
    use std::sync::atomic::AtomicBool;
    use vst_cas::remote::gc::{GcLock, PushLease};
    let remote = memory();
    let gc = GcLock::take(&remote).unwrap();
    assert!(matches!(GcLock::take(&remote), Err(StoreError::RemoteLocked { .. })), "one gc");
    let released = AtomicBool::new(false);
    let released_lease = AtomicBool::new(false);
    std::thread::scope(|s| {
        let pusher = s.spawn(|| {
            let lease = PushLease::take(&remote).unwrap();
            assert!(released.load(Ordering::SeqCst), "a lease while the gc held the lock");
            lease
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        released.store(true, Ordering::SeqCst);
        gc.release().unwrap();
        let lease = pusher.join().unwrap();
        let gc = s.spawn(|| {
            let gc = GcLock::take(&remote).unwrap();
            assert!(released_lease.load(Ordering::SeqCst), "the lock while a push held a lease");
            gc
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        released_lease.store(true, Ordering::SeqCst);
        lease.release().unwrap();
        gc.join().unwrap().release().unwrap();
    });
    // Nothing left behind: the next gc and push go at once.
    GcLock::take(&remote).unwrap().release().unwrap();
    PushLease::take(&remote).unwrap().release().unwrap();
}

#[test]
fn a_server_that_ignores_conditions_gets_no_refs() {
    let faulty = Arc::new(Faulty { ignore_conditions: true, ..Default::default() });
    let remote = Remote::with_client(faulty, "r", "s3://bkt/r at http://garage.test").unwrap();
    let refs = remote.refs();
    let main = RefName::try_from("main").unwrap();
    let err = refs.update(&main, None, ObjectId::of(b"a")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RefError::Unconditional { .. }), "{text}");
    assert!(text.contains("http://garage.test") && text.contains("If-None-Match"), "{text}");
    assert_eq!(refs.get(&main).unwrap(), None, "nothing written");
    // Objects are still fine there: only refs need conditions.
    let store = remote.store(RemoteOptions::default()).unwrap();
    store.put(ObjectId::of(b"x"), b"x").unwrap();
    store.sync().unwrap();
}

#[test]
fn the_cache_never_grows_beyond_its_limit() {
    let remote = memory();
    let writer = remote.store(small_packs()).unwrap();
    let blobs: Vec<Vec<u8>> =
        (0..200).map(|i| noise(500 + i, 1000 + (i as usize * 997) % 60_000)).collect();
    for b in &blobs {
        writer.put(ObjectId::of(b), b).unwrap();
    }
    let big = noise(9, 3 << 20);
    writer.put(ObjectId::of(&big), &big).unwrap();
    writer.sync().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limit = 1_500_000u64;
    let options = RemoteOptions {
        cache: Some(CacheOptions {
            dir: dir.path().to_owned(),
            len_max: limit,
            vfs: Arc::new(vst_cas::vfs::RealFs::new()),
        }),
        ..small_packs()
    };
    let disk = || -> u64 {
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    };
    for round in 0..2 {
        let reader = remote.store(options.clone()).unwrap();
        for (i, b) in blobs.iter().enumerate() {
            assert_eq!(&reader.get(&ObjectId::of(b)).unwrap()[..], &b[..]);
            if i % 10 == 0 {
                assert_eq!(&reader.get(&ObjectId::of(&big)).unwrap()[..], &big[..]);
            }
            assert!(disk() <= limit, "round {round}, object {i}: {} bytes on disk", disk());
        }
        assert!(reader.cache().unwrap().len() > limit / 2, "the cache is used");
    }
}

/// One SeaweedFS for this test binary; each test takes its own prefix.
fn seaweed() -> Option<&'static Mutex<seaweed::Seaweed>> {
    static SERVER: OnceLock<Option<Mutex<seaweed::Seaweed>>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let server = seaweed::start()?;
            server.bucket("vst-test");
            Some(Mutex::new(server))
        })
        .as_ref()
}

fn seaweed_remote(prefix: &str) -> Option<Remote> {
    let server = seaweed()?;
    let endpoint = server.lock().unwrap().endpoint.clone();
    let var = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| endpoint.clone());
    let mut config = S3Config::from_url(&format!("s3://vst-test/{prefix}"), &var).unwrap();
    config.retry_timeout = std::time::Duration::from_secs(10);
    Some(Remote::s3(&config).unwrap())
}

#[test]
fn conformance_seaweedfs() {
    let Some(_) = seaweed() else { return };
    let n = AtomicUsize::new(0);
    conformance::run_all(&mut || {
        let prefix = format!("conformance/{}", n.fetch_add(1, Ordering::SeqCst));
        seaweed_remote(&prefix).unwrap().store(small_packs()).unwrap()
    });
}

#[test]
fn seaweedfs_round_trip_refs_and_probe() {
    let Some(remote) = seaweed_remote("round-trip") else { return };
    let store = remote.store(small_packs()).unwrap();
    let blobs: Vec<Vec<u8>> = (0..30).map(|i| noise(900 + i, 150_000)).collect();
    for b in &blobs {
        store.put(ObjectId::of(b), b).unwrap();
    }
    let big = noise(77, 3 << 20);
    store.put(ObjectId::of(&big), &big).unwrap();
    store.sync().unwrap();
    let fresh = remote.store(small_packs()).unwrap();
    for b in &blobs {
        assert_eq!(&fresh.get(&ObjectId::of(b)).unwrap()[..], &b[..]);
    }
    assert_eq!(
        &fresh.read_range(&ObjectId::of(&big), 1_000_000, 1_500_000).unwrap()[..],
        &big[1_000_000..2_500_000]
    );
    let refs = remote.refs();
    refs.probe().expect("SeaweedFS honours conditional writes");
    let main = RefName::try_from("main").unwrap();
    refs.update(&main, None, ObjectId::of(&big)).unwrap();
    assert!(matches!(refs.update(&main, None, ObjectId::of(b"x")), Err(RefError::Conflict { .. })));
    refs.update(&main, Some(ObjectId::of(&big)), ObjectId::of(b"y")).unwrap();
    assert_eq!(refs.get(&main).unwrap(), Some(ObjectId::of(b"y")));
}

#[test]
fn a_delete_racing_a_push_has_exactly_one_winner_seaweedfs() {
    let Some(remote) = seaweed_remote("race-delete") else { return };
    delete_races_update(&remote, 30);
}

/// `put_reader` writes the packs `put` writes (packs are named by their
/// BLAKE3, so equal listings are equal bytes).
#[test]
fn put_reader_writes_the_packs_put_writes() {
    let data = noise(13, 5 << 20);
    let small = noise(14, 5000);
    let listing = |client: &InMemory| -> Vec<(String, u64)> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut all: Vec<(String, u64)> = rt.block_on(async {
            use futures::TryStreamExt;
            let metas: Vec<ObjectMeta> = client.list(None).try_collect().await.unwrap();
            metas.into_iter().map(|m| (m.location.to_string(), m.size)).collect()
        });
        all.sort();
        all
    };
    let (a, b) = (Arc::new(InMemory::new()), Arc::new(InMemory::new()));
    {
        let by_put =
            Remote::with_client(a.clone(), "r", "a").unwrap().store(small_packs()).unwrap();
        let by_reader =
            Remote::with_client(b.clone(), "r", "b").unwrap().store(small_packs()).unwrap();
        for o in [&data[..], &small[..], &data[1..]] {
            by_put.put(ObjectId::of(o), o).unwrap();
            assert_eq!(by_reader.put_reader(&mut &o[..]).unwrap().0, ObjectId::of(o));
        }
        by_put.sync().unwrap();
        by_reader.sync().unwrap();
    }
    let (a, b) = (listing(&a), listing(&b));
    assert!(a.len() > 2, "{a:?}");
    assert_eq!(a, b);
}
