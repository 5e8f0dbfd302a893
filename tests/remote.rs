//! Push, pull and clone through an object store: round trips, racing
//! pushes, and a server killed in the middle of a push. Against
//! object_store's InMemory and against SeaweedFS on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use vst::sync::{PullOutcome, PushOutcome, Rejection, clone_into, pull, push, transfer};
use vst::{CommitId, CommitOptions, ReadData, Repo, fsck, read};
use vst_cas::remote::{Remote, RemoteOptions, S3Config};
use vst_cas::sim::noise;
use vst_cas::{RefName, Store};

use crate::seaweed;
use crate::support::p;

fn main_branch() -> RefName {
    RefName::try_from("main").unwrap()
}

fn small_packs() -> RemoteOptions {
    RemoteOptions { pack_len_target: 1 << 20, ..Default::default() }
}

/// Commits `files` (path, content) on `main` of `repo`.
fn commit_files(repo: &Repo, files: &[(String, Vec<u8>)], message: &str) -> CommitId {
    let mut ws = repo.working_set().unwrap();
    for (path, content) in files {
        ws.write(&p(path), content).unwrap();
    }
    let options = CommitOptions { message: message.to_owned(), ..Default::default() };
    repo.commit_on(&mut ws, &main_branch(), &options).unwrap()
}

fn tree_of(store: &dyn Store, commit: CommitId) -> vst::TreeId {
    read::read_commit(store, commit).unwrap().tree
}

/// fsck of everything the remote's branches reach, reading every byte.
fn assert_remote_clean(remote: &Remote) {
    let store = remote.store(RemoteOptions::default()).unwrap();
    let roots: Vec<CommitId> =
        remote.refs().list().unwrap().into_iter().map(|(_, id)| CommitId::new(id)).collect();
    let report = fsck(&store, &roots, ReadData::Yes);
    assert!(report.is_clean(), "remote fsck: {:?}", report.problems);
}

fn round_trip(remote: &Remote) {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = crate::support::repo(dirs.0.path());
    let files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("d{}/f{i}.txt", i % 17), noise(i, 100 + (i as usize * 53) % 4000)))
        .chain([("big.bin".to_owned(), noise(1, 3 << 20))])
        .collect();
    let first = commit_files(&a, &files, "first");
    let store = remote.store(small_packs()).unwrap();
    let refs = remote.refs();
    match push(a.store().as_ref(), &store, &refs, &main_branch(), first).unwrap() {
        PushOutcome::Pushed { old: None, new, stats } => {
            assert_eq!(new, first);
            assert_eq!(stats.blobs, 301);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        push(a.store().as_ref(), &store, &refs, &main_branch(), first).unwrap(),
        PushOutcome::UpToDate
    );

    // Clone into B, commit there, push.
    let b = crate::support::repo(dirs.1.path());
    let store_b = remote.store(small_packs()).unwrap();
    let (branches, _) = clone_into(&b, &store_b, &remote.refs()).unwrap();
    assert_eq!(branches, vec![(main_branch(), first)]);
    let second = commit_files(&b, &[("d3/f3.txt".to_owned(), b"changed".to_vec())], "second");
    match push(b.store().as_ref(), &store_b, &remote.refs(), &main_branch(), second).unwrap() {
        PushOutcome::Pushed { stats, .. } => {
            // One blob, the changed directory and the root, the commit:
            // nothing unchanged is walked or sent.
            assert_eq!((stats.commits, stats.trees, stats.blobs), (1, 2, 1), "{stats:?}");
        }
        other => panic!("{other:?}"),
    }
    // A is now behind: its push is rejected, and nothing changes remotely.
    let third = commit_files(&a, &[("x".to_owned(), b"x".to_vec())], "diverging");
    let err = push(a.store().as_ref(), &store, &refs, &main_branch(), third).unwrap_err();
    assert!(err.to_string().contains("pull first"), "{err}");
    assert_eq!(refs.get(&main_branch()).unwrap(), Some(second.object_id()));
    // Undo the diverging commit in A, then pull.
    a.refs()
        .update(&main_branch(), Some(third.object_id()), Some(first.object_id()), "test")
        .unwrap();
    let (outcome, stats) = pull(&a, &store, &refs, &main_branch()).unwrap().unwrap();
    assert_eq!(outcome, PullOutcome::FastForward { old: first, new: second });
    assert_eq!((stats.commits, stats.trees, stats.blobs), (1, 2, 1), "{stats:?}");
    assert_eq!(a.head_commit().unwrap(), Some(second));
    assert_eq!(tree_of(a.store().as_ref(), second), tree_of(b.store().as_ref(), second));
    let report = a.fsck(ReadData::Yes).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(pull(&a, &store, &refs, &main_branch()).unwrap().unwrap().0, PullOutcome::UpToDate);
    // Identical trees, file by file.
    let disk = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ta, tb) = (tree_of(a.store().as_ref(), second), tree_of(&store_b, second));
    vst::checkout(a.store().as_ref(), ta, &disk.0.path().join("w")).unwrap();
    vst::checkout(&store_b, tb, &disk.1.path().join("w")).unwrap();
    assert_eq!(
        crate::support::read_disk(&disk.0.path().join("w")),
        crate::support::read_disk(&disk.1.path().join("w"))
    );
    assert_remote_clean(remote);
}

#[test]
fn round_trip_in_memory() {
    let remote =
        Remote::with_client(Arc::new(object_store::memory::InMemory::new()), "r", "memory")
            .unwrap();
    round_trip(&remote);
}

/// One SeaweedFS for the tests that do not kill it.
fn shared_seaweed() -> Option<&'static Mutex<seaweed::Seaweed>> {
    static SERVER: OnceLock<Option<Mutex<seaweed::Seaweed>>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let server = seaweed::start()?;
            server.bucket("vst");
            Some(Mutex::new(server))
        })
        .as_ref()
}

fn s3_remote(endpoint: &str, prefix: &str, retry: Duration) -> Remote {
    let var = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| endpoint.to_owned());
    let mut config = S3Config::from_url(&format!("s3://vst/{prefix}"), &var).unwrap();
    config.retry_timeout = retry;
    Remote::s3(&config).unwrap()
}

fn seaweed_remote(prefix: &str) -> Option<Remote> {
    let endpoint = shared_seaweed()?.lock().unwrap().endpoint.clone();
    Some(s3_remote(&endpoint, prefix, Duration::from_secs(10)))
}

#[test]
fn round_trip_seaweedfs() {
    let Some(remote) = seaweed_remote("round-trip") else { return };
    round_trip(&remote);
}

/// Two clients (each its own HTTP client, runtime and local repository,
/// as two processes would have) push a new commit to the same branch at
/// the same moment, many times: exactly one wins each round, the other is
/// told to pull first, and the branch always reaches a complete tree.
#[test]
fn racing_pushes_seaweedfs() {
    let Some(remote) = seaweed_remote("race") else { return };
    let endpoint = shared_seaweed().unwrap().lock().unwrap().endpoint.clone();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let seed = crate::support::repo(dirs[0].path());
    let base = commit_files(&seed, &[("README".to_owned(), b"base".to_vec())], "base");
    push(
        seed.store().as_ref(),
        &remote.store(small_packs()).unwrap(),
        &remote.refs(),
        &main_branch(),
        base,
    )
    .unwrap();
    drop(seed);
    const ROUNDS: usize = 12;
    let barrier = Rendezvous::new(2);
    let wins = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let rejected = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for side in 0..2 {
            let (dirs, barrier, wins, rejected, endpoint) =
                (&dirs, &barrier, &wins, &rejected, &endpoint);
            s.spawn(move || {
                let _breaks = barrier.break_on_panic();
                let remote = s3_remote(endpoint, "race", Duration::from_secs(10));
                let repo = crate::support::repo(dirs[side].path());
                let store = remote.store(small_packs()).unwrap();
                let refs = remote.refs();
                for round in 0..ROUNDS {
                    // Start from the remote's branch, whoever won last.
                    let tip =
                        vst::sync::fetch(&store, &refs, &main_branch(), repo.store().as_ref())
                            .unwrap()
                            .unwrap()
                            .0;
                    let current = repo.refs().get(&main_branch()).unwrap();
                    repo.refs()
                        .update(&main_branch(), current, Some(tip.object_id()), "reset")
                        .unwrap();
                    let files: Vec<(String, Vec<u8>)> = (0..20)
                        .map(|i| {
                            (
                                format!("s{side}/r{round}/f{i}"),
                                noise((side * 1000 + round * 50 + i) as u64, 3000),
                            )
                        })
                        .collect();
                    let mine = commit_files(&repo, &files, &format!("side {side} round {round}"));
                    barrier.wait();
                    match push(repo.store().as_ref(), &store, &refs, &main_branch(), mine) {
                        Ok(PushOutcome::Pushed { .. }) => {
                            wins[side].fetch_add(1, Ordering::SeqCst);
                        }
                        Err(vst::Error::PushRejected { reason, .. }) => {
                            assert!(
                                matches!(reason, Rejection::Raced | Rejection::Unknown { .. }),
                                "{reason}"
                            );
                            rejected.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("{other:?}"),
                    }
                    // Both have pushed (or been refused) before either
                    // looks at the result.
                    barrier.wait();
                    if side == 0 {
                        assert_eq!(
                            wins[0].load(Ordering::SeqCst) + wins[1].load(Ordering::SeqCst),
                            round + 1,
                            "exactly one winner in round {round}"
                        );
                    }
                    barrier.wait();
                }
            });
        }
    });
    assert_eq!(rejected.load(Ordering::SeqCst), ROUNDS);
    assert_remote_clean(&remote);
}

/// A barrier that a panicking party breaks: the others then panic too
/// instead of waiting for ever, so a failed assertion in one thread of a
/// race test is reported as a failure, not a hang (`std::sync::Barrier`
/// waits for a party that is gone).
struct Rendezvous {
    parties: usize,
    /// Arrived in this generation, the generation, broken.
    state: Mutex<(usize, u64, bool)>,
    turned: Condvar,
}

/// Breaks its [`Rendezvous`] when dropped by a panicking thread.
struct BreakOnPanic<'a>(&'a Rendezvous);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.state().2 = true;
            self.0.turned.notify_all();
        }
    }
}

impl Rendezvous {
    fn new(parties: usize) -> Self {
        Self { parties, state: Mutex::new((0, 0, false)), turned: Condvar::new() }
    }

    fn state(&self) -> MutexGuard<'_, (usize, u64, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held by each party for as long as it may wait.
    fn break_on_panic(&self) -> BreakOnPanic<'_> {
        BreakOnPanic(self)
    }

    fn wait(&self) {
        let mut state = self.state();
        let generation = state.1;
        state.0 += 1;
        if state.0 == self.parties {
            *state = (0, generation + 1, state.2);
            self.turned.notify_all();
        }
        while state.1 == generation && !state.2 {
            state = self.turned.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        assert!(!state.2 || state.1 != generation, "another thread of the test panicked");
    }
}

/// An S3 client that runs `hook` once, when the `at`th pack upload
/// (counting from 0) is about to be sent: a test acts at an exact point of
/// a push instead of after a guessed delay.
struct AtPackUpload {
    inner: Arc<dyn object_store::ObjectStore>,
    at: usize,
    packs: AtomicUsize,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for AtPackUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtPackUpload")
    }
}

impl std::fmt::Display for AtPackUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AtPackUpload({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for AtPackUpload {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if location.as_ref().ends_with(".pack")
            && self.packs.fetch_add(1, Ordering::SeqCst) == self.at
            && let Some(hook) = self.hook.lock().unwrap().take()
        {
            hook();
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// The server is killed while a push uploads its packs (just before the
/// fourth pack's upload is sent, whatever the timing): the push fails
/// (after its retries), the remote's branch is unchanged and everything it
/// reaches is complete; after a restart the same push succeeds.
#[test]
fn server_killed_during_a_push_seaweedfs() {
    let Some(server) = seaweed::start() else { return };
    server.bucket("vst");
    let endpoint = server.endpoint.clone();
    let server = Arc::new(Mutex::new(server));
    let remote = s3_remote(&endpoint, "killed", Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    let first = commit_files(&repo, &[("a".to_owned(), b"first".to_vec())], "first");
    let store = remote.store(small_packs()).unwrap();
    push(repo.store().as_ref(), &store, &remote.refs(), &main_branch(), first).unwrap();
    let files: Vec<(String, Vec<u8>)> =
        (0..48).map(|i| (format!("big/{i}"), noise(5000 + i, 1 << 20))).collect();
    let second = commit_files(&repo, &files, "second");
    let killer = server.clone();
    let var = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| endpoint.clone());
    let mut config = S3Config::from_url("s3://vst/killed", &var).unwrap();
    config.retry_timeout = Duration::from_secs(3);
    let gated = Remote::with_client(
        Arc::new(AtPackUpload {
            inner: Arc::new(config.build().unwrap()),
            at: 3,
            packs: AtomicUsize::new(0),
            hook: Mutex::new(Some(Box::new(move || killer.lock().unwrap().kill()))),
        }),
        &config.prefix,
        &config.describe(),
    )
    .unwrap();
    let gated_store = gated.store(small_packs()).unwrap();
    let packs_before = gated_store.pack_count();
    let err = push(repo.store().as_ref(), &gated_store, &gated.refs(), &main_branch(), second)
        .expect_err("the push fails once the server is gone");
    assert!(!matches!(err, vst::Error::PushRejected { .. }), "{err}");
    drop(gated_store);
    server.lock().unwrap().restart();
    assert_eq!(remote.refs().get(&main_branch()).unwrap(), Some(first.object_id()));
    assert_remote_clean(&remote);
    let published = remote.store(RemoteOptions::default()).unwrap().pack_count() - packs_before;
    assert!(
        published <= 3,
        "{published} packs of the failed push visible: at most those sent before the kill"
    );
    // A new handle (the old one is poisoned) finishes the job.
    drop(store);
    let store = remote.store(small_packs()).unwrap();
    match push(repo.store().as_ref(), &store, &remote.refs(), &main_branch(), second).unwrap() {
        PushOutcome::Pushed { old, .. } => assert_eq!(old, Some(first)),
        other => panic!("{other:?}"),
    }
    assert_remote_clean(&remote);
    let copy = tempfile::tempdir().unwrap();
    let local = crate::support::repo(copy.path());
    transfer(&remote.store(RemoteOptions::default()).unwrap(), local.store().as_ref(), second)
        .unwrap();
    assert!(local.store().contains(&tree_of(&store, second).object_id()).unwrap());
}

/// A store that refuses to take a tree before every subtree it names.
#[derive(Debug)]
struct ClosedUnderPut(vst_cas::MemStore);

impl Store for ClosedUnderPut {
    fn put(&self, id: vst_cas::ObjectId, bytes: &[u8]) -> Result<(), vst_cas::StoreError> {
        if let Ok(tree) = vst::Tree::decode(bytes) {
            for entry in tree.entries() {
                if let vst::EntryKind::Dir(sub) = &entry.kind {
                    assert!(
                        self.0.contains(&sub.object_id())?,
                        "tree {id} was stored before its subtree {sub}"
                    );
                }
            }
        }
        self.0.put(id, bytes)
    }
    fn put_batch(&self, objects: &[(vst_cas::ObjectId, &[u8])]) -> Result<(), vst_cas::StoreError> {
        objects.iter().try_for_each(|(id, bytes)| self.put(*id, bytes))
    }
    fn get(&self, id: &vst_cas::ObjectId) -> Result<bytes::Bytes, vst_cas::StoreError> {
        self.0.get(id)
    }
    fn contains(&self, id: &vst_cas::ObjectId) -> Result<bool, vst_cas::StoreError> {
        self.0.contains(id)
    }
    fn sync(&self) -> Result<(), vst_cas::StoreError> {
        Ok(())
    }
}

#[test]
fn a_transfer_stores_every_tree_after_its_subtrees() {
    // The same directory `s` at depth 1 (top/s) and at depth 3 (a/b/c/s):
    // read first at level 1, but its parent c is at level 3, and a/b/c/s's
    // copy must not make the transfer write c before s.
    let from: Arc<dyn Store> = Arc::new(vst_cas::MemStore::new());
    let mut ws = vst::WorkingSet::new(from.clone());
    for dir in ["top/s", "a/b/c/s", "a/b/c/s2/deeper/s"] {
        for f in ["x", "y"] {
            ws.write(
                &vst::RepoPath::try_from(format!("{dir}/{f}").as_str()).unwrap(),
                f.as_bytes(),
            )
            .unwrap();
        }
    }
    let tip = vst::commit(&mut ws, &vst::CommitOptions::default()).unwrap();
    let to = ClosedUnderPut(vst_cas::MemStore::new());
    let stats = vst::sync::transfer(from.as_ref(), &to, tip).unwrap();
    // root, top (= deeper: both hold just s), s, a, b, c, s2.
    assert_eq!(stats.trees, 7, "{stats:?}");
    assert!(to.contains(&tip.object_id()).unwrap());
}

/// A large file travels a few chunks at a time, never whole: pushed from
/// a pack store to an object store and cloned back, no read of the
/// transfer hands out more than 8 MiB and a chunk, and no write takes more
/// than a small blob's batch; the file arrives intact.
#[test]
fn a_large_file_travels_a_few_chunks_at_a_time() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = crate::support::repo(dirs.0.path());
    let big = noise(21, 40 << 20);
    let files = vec![("big.bin".to_owned(), big.clone()), ("small".to_owned(), b"s".to_vec())];
    let tip = commit_files(&a, &files, "big");
    let remote =
        Remote::with_client(Arc::new(object_store::memory::InMemory::new()), "r", "memory")
            .unwrap();
    let local = crate::support::Largest::new(a.store());
    let store = remote.store(RemoteOptions::default()).unwrap();
    match push(&local, &store, &remote.refs(), &main_branch(), tip).unwrap() {
        PushOutcome::Pushed { stats, .. } => assert_eq!(stats.blob_bytes, (40 << 20) + 1),
        other => panic!("{other:?}"),
    }
    let read_max = vst_cas::stream::READ_AHEAD_LEN_MAX + vst_cas::pack::CHUNK_LEN_MAX as u64;
    let (read, _) = local.largest();
    assert!(read <= read_max, "push: {read} bytes in one read");

    let b = crate::support::repo(dirs.1.path());
    let (from, to) = (
        crate::support::Largest::new(remote.store(RemoteOptions::default()).unwrap()),
        crate::support::Largest::new(b.store()),
    );
    transfer(&from, &to, tip).unwrap();
    let (read, _) = from.largest();
    let (_, written) = to.largest();
    assert!(read <= read_max, "clone: {read} bytes in one read");
    assert!(written < 1 << 20, "clone: {written} bytes in one write");
    let tree = tree_of(b.store().as_ref(), tip);
    assert!(b.fsck(ReadData::Yes).unwrap().is_clean());
    // Read out (as `vst cat` does) the same way.
    let local = crate::support::Largest::new(b.store());
    let mut out = Vec::new();
    assert_eq!(read::copy_file(&local, tree, &p("big.bin"), &mut out).unwrap(), 40 << 20);
    assert!(out == big);
    let (read, _) = local.largest();
    assert!(read <= read_max, "copy_file: {read} bytes in one read");
}

/// A push and a delete of the same remote branch, from two repositories
/// that both saw it at the same commit, race for many rounds: exactly one
/// of the two writes conditional on that commit wins each round, and the
/// remote is what the winner left. (A push that reads the branch only
/// after the delete landed finds none and creates it again: the delete
/// won, and the push came after it. Which happens is timing.)
#[test]
fn a_delete_racing_a_push_seaweedfs() {
    let Some(remote) = seaweed_remote("delete-race") else { return };
    let endpoint = shared_seaweed().unwrap().lock().unwrap().endpoint.clone();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let origin = RefName::try_from("origin").unwrap();
    const ROUNDS: usize = 8;
    let barrier = Rendezvous::new(2);
    let (pushed, deleted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for side in 0..2 {
            let (dirs, barrier, pushed, deleted, endpoint, origin) =
                (&dirs, &barrier, &pushed, &deleted, &endpoint, &origin);
            s.spawn(move || {
                let _breaks = barrier.break_on_panic();
                let remote = s3_remote(endpoint, "delete-race", Duration::from_secs(10));
                let repo = crate::support::repo(dirs[side].path());
                let store = remote.store(small_packs()).unwrap();
                let refs = remote.refs();
                let mut deleted_before = 0;
                for round in 0..ROUNDS {
                    if side == 0 {
                        // A new base on the remote, from side 0.
                        let files = [(format!("base{round}"), noise(round as u64, 5000))];
                        let base = commit_files(&repo, &files, "base");
                        let old = refs.get(&main_branch()).unwrap();
                        if let Some(old) = old {
                            refs.delete(&main_branch(), old).unwrap();
                        }
                        let _ = vst::sync::push(
                            repo.store().as_ref(),
                            &store,
                            &refs,
                            &main_branch(),
                            base,
                        )
                        .unwrap();
                    }
                    barrier.wait();
                    // Both see the base.
                    let (tip, _) =
                        vst::tracking::fetch_branch(&repo, origin, &store, &refs, &main_branch())
                            .unwrap()
                            .unwrap();
                    let current = repo.refs().get(&main_branch()).unwrap();
                    repo.refs()
                        .update(&main_branch(), current, Some(tip.object_id()), "reset")
                        .unwrap();
                    let mine = if side == 0 {
                        let files = [(format!("r{round}"), noise(100 + round as u64, 300_000))];
                        Some(commit_files(&repo, &files, "pushed"))
                    } else {
                        None
                    };
                    barrier.wait();
                    // Whether this round's push moved the branch at all.
                    let mut landed = false;
                    match mine {
                        Some(mine) => {
                            match push(repo.store().as_ref(), &store, &refs, &main_branch(), mine) {
                                Ok(PushOutcome::Pushed { old: Some(old), .. }) => {
                                    assert_eq!(old, tip);
                                    pushed.fetch_add(1, Ordering::SeqCst);
                                    landed = true;
                                }
                                // The push read the branch after the delete
                                // landed, and made it again: the delete won
                                // the race, and the push came after it.
                                Ok(PushOutcome::Pushed { old: None, .. }) => landed = true,
                                Err(vst::Error::PushRejected { .. }) => {}
                                other => panic!("{other:?}"),
                            }
                        }
                        None => {
                            match vst::tracking::delete_branch(&repo, origin, &refs, &main_branch())
                            {
                                Ok(was) => {
                                    assert_eq!(was, tip);
                                    deleted.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(vst::Error::DeleteRejected { .. }) => {}
                                other => panic!("{other:?}"),
                            }
                        }
                    }
                    barrier.wait();
                    if let Some(mine) = mine {
                        let (p, d) =
                            (pushed.load(Ordering::SeqCst), deleted.load(Ordering::SeqCst));
                        assert_eq!(p + d, round + 1, "round {round}: exactly one winner");
                        // Whoever won, the remote is what it left (or
                        // what a push after a winning delete made).
                        let expected = landed.then(|| mine.object_id());
                        assert_eq!(refs.get(&main_branch()).unwrap(), expected, "round {round}");
                        assert!(landed || d > deleted_before, "round {round}: nobody won");
                        deleted_before = d;
                    }
                    barrier.wait();
                }
            });
        }
    });
    assert_eq!(pushed.load(Ordering::SeqCst) + deleted.load(Ordering::SeqCst), ROUNDS);
    assert_remote_clean(&remote);
}

/// Bytes under the remote's `packs/`.
fn remote_bytes(remote: &Remote) -> u64 {
    let lock = vst_cas::remote::gc::GcLock::take(remote).unwrap();
    let len = lock.stored_len().unwrap();
    lock.release().unwrap();
    len
}

/// After a branch holding a large file is deleted, a gc with no grace
/// leaves less than a tenth of the file's bytes, and every remaining
/// branch is complete; with a grace period longer than the packs' age it
/// deletes nothing.
fn gc_collects_a_deleted_branch(remote: &Remote) {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo(dir.path());
    let files: Vec<(String, Vec<u8>)> =
        (0..50).map(|i| (format!("src/f{i}"), noise(7000 + i, 2000))).collect();
    let main = commit_files(&repo, &files, "main");
    let big = noise(7777, 12 << 20);
    let topic_branch = RefName::try_from("topic").unwrap();
    repo.refs().update(&topic_branch, None, Some(main.object_id()), "branch").unwrap();
    let mut ws = repo.working_set().unwrap();
    ws.write(&p("big.bin"), &big).unwrap();
    let options = CommitOptions { message: "big".to_owned(), ..Default::default() };
    let topic = repo.commit_on(&mut ws, &topic_branch, &options).unwrap();
    let store = remote.store(small_packs()).unwrap();
    push(repo.store().as_ref(), &store, &remote.refs(), &main_branch(), main).unwrap();
    push(repo.store().as_ref(), &store, &remote.refs(), &topic_branch, topic).unwrap();
    drop(store);
    let full = remote_bytes(remote);
    assert!(full > big.len() as u64, "{full}");

    let hour = Duration::from_secs(3600);
    let kept = vst::remote_gc::gc_remote(remote, hour, &small_packs()).unwrap();
    // Everything is live, and the copies come out byte for byte as the
    // packs they copy (named by their content): nothing to delete.
    assert_eq!(kept.packs_deleted, 0, "{kept:?}");
    // The same bytes, and the consolidated index.
    let consolidated_len = kept.consolidated.unwrap().len;
    assert_eq!(kept.bytes_after, kept.bytes_before + consolidated_len, "{kept:?}");
    assert_remote_clean(remote);

    remote.refs().delete(&topic_branch, topic.object_id()).unwrap();
    let stats = vst::remote_gc::gc_remote(remote, Duration::ZERO, &small_packs()).unwrap();
    assert_eq!(stats.branches, 1);
    let left = remote_bytes(remote);
    assert_eq!(left, stats.bytes_after);
    assert!(left < big.len() as u64 / 10, "{left} bytes left of {full}: {stats:?}");
    assert_remote_clean(remote);
    // The remaining branch clones whole; the deleted one's file is gone.
    let copy = tempfile::tempdir().unwrap();
    let local = crate::support::repo(copy.path());
    let fresh = remote.store(RemoteOptions::default()).unwrap();
    let (branches, _) = clone_into(&local, &fresh, &remote.refs()).unwrap();
    assert_eq!(branches, vec![(main_branch(), main)]);
    assert!(local.fsck(ReadData::Yes).unwrap().is_clean());
    assert!(!fresh.contains(&vst_cas::ObjectId::of(&big)).unwrap());
    // A push of the deleted branch again (its objects are gone remotely,
    // and a handle that knew them learns that) makes it whole again.
    let store = remote.store(small_packs()).unwrap();
    push(repo.store().as_ref(), &store, &remote.refs(), &topic_branch, topic).unwrap();
    assert_remote_clean(remote);
}

#[test]
fn gc_collects_a_deleted_branch_in_memory() {
    let remote =
        Remote::with_client(Arc::new(object_store::memory::InMemory::new()), "r", "memory")
            .unwrap();
    gc_collects_a_deleted_branch(&remote);
}

#[test]
fn gc_collects_a_deleted_branch_seaweedfs() {
    let Some(remote) = seaweed_remote("gc-deleted") else { return };
    gc_collects_a_deleted_branch(&remote);
}

/// A remote gc with no grace period starts together with five clients'
/// pushes, each to its own branch, round after round; every other round a
/// client deletes its branch first and pushes a commit that brings back
/// content of the deleted one (which a handle may still see in a pack a
/// gc is about to delete). Every push that succeeded is whole on the
/// remote: the final branches pass a remote fsck reading every byte, and
/// a fresh clone of each equals what its client pushed.
#[test]
fn gc_racing_five_pushes_seaweedfs() {
    let Some(_) = seaweed_remote("gc-race") else { return };
    let endpoint = shared_seaweed().unwrap().lock().unwrap().endpoint.clone();
    const CLIENTS: usize = 5;
    const ROUNDS: usize = 8;
    let dirs: Vec<_> = (0..CLIENTS).map(|_| tempfile::tempdir().unwrap()).collect();
    let done = AtomicUsize::new(0);
    let gcs = AtomicUsize::new(0);
    let start = Rendezvous::new(CLIENTS + 1);
    let end = Rendezvous::new(CLIENTS + 1);
    let lost: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let finals: Vec<Mutex<Option<CommitId>>> = (0..CLIENTS).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for client in 0..CLIENTS {
            let (dirs, done, endpoint, finals, start, end, lost) =
                (&dirs, &done, &endpoint, &finals, &start, &end, &lost);
            s.spawn(move || {
                let _breaks = (start.break_on_panic(), end.break_on_panic());
                let remote = s3_remote(endpoint, "gc-race", Duration::from_secs(10));
                let repo = crate::support::repo(dirs[client].path());
                let store = remote.store(small_packs()).unwrap();
                let refs = remote.refs();
                let branch = RefName::try_from(format!("c{client}").as_str()).unwrap();
                let mut ws = repo.working_set().unwrap();
                for round in 0..ROUNDS {
                    if round % 2 == 1 {
                        // Delete the branch: what it held is garbage now.
                        let old = refs.get(&branch).unwrap().unwrap();
                        refs.delete(&branch, old).unwrap();
                    }
                    // Content that comes back: the same bytes every other
                    // round, plus some new.
                    let back = noise((client * 100 + round / 2) as u64, 400_000);
                    ws.write(&p(&format!("back{}", round % 2)), &back).unwrap();
                    ws.write(
                        &p(&format!("new/r{round}")),
                        // Several packs: the push's ref write comes well
                        // after a gc that started with it has read the refs.
                        &noise((client * 100 + 50 + round) as u64, 3 << 20),
                    )
                    .unwrap();
                    let options =
                        CommitOptions { message: format!("r{round}"), ..Default::default() };
                    let tip = repo.commit_on(&mut ws, &branch, &options).unwrap();
                    start.wait();
                    match push(repo.store().as_ref(), &store, &refs, &branch, tip) {
                        Ok(PushOutcome::Pushed { .. }) => {}
                        other => lost
                            .lock()
                            .unwrap()
                            .push(format!("client {client} round {round}: {other:?}")),
                    }
                    *finals[client].lock().unwrap() = Some(tip);
                    // Once this round's gc is done, what the push was told
                    // is stored is all there.
                    end.wait();
                    // (Recorded, not asserted here: the other clients'
                    // rounds go on.)
                    let fresh = remote.store(RemoteOptions::default()).unwrap();
                    let report = fsck(&fresh, &[tip], ReadData::No);
                    if !report.is_clean() {
                        lost.lock()
                            .unwrap()
                            .push(format!("client {client} round {round}: {:?}", report.problems));
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (endpoint, gcs, start, end) = (&endpoint, &gcs, &start, &end);
        s.spawn(move || {
            let _breaks = (start.break_on_panic(), end.break_on_panic());
            let remote = s3_remote(endpoint, "gc-race", Duration::from_secs(10));
            for _ in 0..ROUNDS {
                start.wait();
                vst::remote_gc::gc_remote(&remote, Duration::ZERO, &small_packs()).unwrap();
                gcs.fetch_add(1, Ordering::SeqCst);
                end.wait();
            }
        });
    });
    let lost = lost.into_inner().unwrap();
    assert!(lost.is_empty(), "{lost:#?}");
    assert_eq!(gcs.load(Ordering::SeqCst), ROUNDS);
    assert_eq!(done.load(Ordering::SeqCst), CLIENTS);
    let remote = seaweed_remote("gc-race").unwrap();
    // Once more with everything quiet, then check.
    vst::remote_gc::gc_remote(&remote, Duration::ZERO, &small_packs()).unwrap();
    assert_remote_clean(&remote);
    let branches = remote.refs().list().unwrap();
    assert_eq!(branches.len(), CLIENTS);
    for (client, fin) in finals.iter().enumerate() {
        let tip = fin.lock().unwrap().unwrap();
        assert_eq!(branches[client].1, tip.object_id(), "client {client}");
        let copy = tempfile::tempdir().unwrap();
        let local = crate::support::repo(copy.path());
        transfer(&remote.store(RemoteOptions::default()).unwrap(), local.store().as_ref(), tip)
            .unwrap();
        assert!(local.fsck(ReadData::Yes).unwrap().is_clean(), "client {client}");
    }
}

/// Requests an S3 client made, by what they asked for.
#[derive(Debug, Default)]
struct Requests {
    /// GETs (ranged or not) of a pack.
    pack_gets: AtomicUsize,
    /// GETs of a pack's index.
    index_gets: AtomicUsize,
    /// GETs of a consolidated index.
    consolidated_gets: AtomicUsize,
    /// Every request.
    all: AtomicUsize,
}

impl Requests {
    fn take(&self) -> (usize, usize, usize) {
        (
            self.pack_gets.swap(0, Ordering::SeqCst),
            self.index_gets.swap(0, Ordering::SeqCst),
            self.all.swap(0, Ordering::SeqCst),
        )
    }
}

/// An S3 client that counts the requests made through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<object_store::memory::InMemory>,
    requests: Arc<Requests>,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

impl Counting {
    fn count(&self) {
        self.requests.all.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.count();
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.count();
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.count();
        if !options.head {
            let key = location.as_ref();
            if key.ends_with(".pack") {
                self.requests.pack_gets.fetch_add(1, Ordering::SeqCst);
            } else if key.ends_with(".idx") {
                self.requests.index_gets.fetch_add(1, Ordering::SeqCst);
            } else if key.ends_with(".cidx") {
                self.requests.consolidated_gets.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.count();
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.count();
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.count();
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.count();
        self.inner.copy_opts(from, to, options).await
    }
}

/// A remote on an in-memory server whose requests are counted, and the
/// server itself.
fn counted_remote() -> (Remote, Arc<Requests>, Arc<object_store::memory::InMemory>) {
    let requests = Arc::new(Requests::default());
    let server = Arc::new(object_store::memory::InMemory::new());
    let client = Counting { inner: server.clone(), requests: requests.clone() };
    (Remote::with_client(Arc::new(client), "r", "counted").unwrap(), requests, server)
}

/// Adds `n` commits to `main` of `repo`, each changing one file of 20 to
/// `file_len` fresh bytes; one sync at the end.
fn grow_history(repo: &Repo, n: u64, file_len: usize) -> CommitId {
    let mut ws = repo.working_set().unwrap();
    let old = ws.head();
    let mut options = CommitOptions { durability: vst_cas::Durability::None, ..Default::default() };
    for i in 0..n {
        let seed = 50_000 + old.map_or(0, |_| 10_000) + i;
        ws.write(&p(&format!("d{}/f{}", i % 4, i % 20)), &noise(seed, file_len)).unwrap();
        options.message = format!("commit {i}");
        vst::commit(&mut ws, &options).unwrap();
    }
    repo.store().sync().unwrap();
    let tip = ws.head().unwrap();
    repo.refs()
        .update(&main_branch(), old.map(|c| c.object_id()), Some(tip.object_id()), "grow")
        .unwrap();
    tip
}

/// A clone reads a long history in a number of requests bounded by the
/// packs it is in, not by its commits (each commit a round trip before);
/// so does a pull of the commits pushed since. Counted on an in-memory
/// server.
#[test]
fn clone_and_pull_take_requests_per_pack_not_per_commit() {
    use vst_cas::remote::READ_AHEAD_MISSES_MIN;
    const COMMITS: u64 = 400;
    let (remote, requests, _) = counted_remote();
    let dir = tempfile::tempdir().unwrap();
    let src = crate::support::repo(dir.path());
    // 12 KiB of noise a commit: about 5 MiB, several packs of 1 MiB.
    let tip = grow_history(&src, COMMITS, 12 << 10);
    let store = remote.store(small_packs()).unwrap();
    push(src.store().as_ref(), &store, &remote.refs(), &main_branch(), tip).unwrap();
    let packs = store.pack_count();
    assert!(packs >= 4, "{packs} packs");
    // Per pack, at most: its index, the reads before its window and the
    // window itself, in each of the transfer's two passes (commits newest
    // first, then their trees and blobs oldest first).
    let bound = packs * (1 + 2 * (READ_AHEAD_MISSES_MIN + 1));
    requests.take();

    let copy = tempfile::tempdir().unwrap();
    let local = crate::support::repo(copy.path());
    let fresh = remote.store(RemoteOptions::default()).unwrap();
    let (branches, stats) = clone_into(&local, &fresh, &remote.refs()).unwrap();
    assert_eq!(branches, vec![(main_branch(), tip)]);
    assert_eq!(stats.commits, COMMITS);
    let (pack_gets, index_gets, all) = requests.take();
    assert_eq!(index_gets, packs);
    assert!(pack_gets + index_gets <= bound, "{pack_gets} pack GETs for {packs} packs");
    assert!(all <= bound + 8, "{all} requests for {packs} packs");
    assert!(local.fsck(ReadData::Yes).unwrap().is_clean());
    drop(fresh);

    // The same again for a pull of as many new commits.
    let tip2 = grow_history(&src, COMMITS, 12 << 10);
    push(src.store().as_ref(), &store, &remote.refs(), &main_branch(), tip2).unwrap();
    let new_packs = store.pack_count() - packs;
    requests.take();
    let fresh = remote.store(RemoteOptions::default()).unwrap();
    let (pulled, stats) = pull(&local, &fresh, &remote.refs(), &main_branch()).unwrap().unwrap();
    assert_eq!(pulled, PullOutcome::FastForward { old: tip, new: tip2 });
    assert_eq!(stats.commits, COMMITS);
    let (pack_gets, _, _) = requests.take();
    // A pack of the first push holds at most the commit the walk stops at.
    let bound = packs + new_packs * 2 * (READ_AHEAD_MISSES_MIN + 1);
    assert!(pack_gets <= bound, "{pack_gets} pack GETs for {new_packs} new packs");
    assert!(local.fsck(ReadData::Yes).unwrap().is_clean());
}

/// Opening a store after many pushes and a remote gc reads the gc's
/// consolidated index and the indexes of the packs pushed since, not one
/// per pack. A pack the consolidated index names but the listing does not
/// (deleted by a gc that died before writing its own) is not taken to be
/// there; a damaged consolidated index is passed over.
#[test]
fn an_open_after_a_gc_reads_one_index_and_those_pushed_since() {
    use object_store::ObjectStoreExt;
    const PUSHES: usize = 12;
    const SINCE: usize = 3;
    let (remote, requests, server) = counted_remote();
    let dir = tempfile::tempdir().unwrap();
    let src = crate::support::repo(dir.path());
    let push_one = || {
        let tip = grow_history(&src, 1, 2000);
        let store = remote.store(small_packs()).unwrap();
        push(src.store().as_ref(), &store, &remote.refs(), &main_branch(), tip).unwrap();
    };
    (0..PUSHES).for_each(|_| push_one());
    let open = || {
        requests.take();
        requests.consolidated_gets.store(0, Ordering::SeqCst);
        let store = remote.store(RemoteOptions::default()).unwrap();
        let (_, index_gets, _) = requests.take();
        let consolidated_gets = requests.consolidated_gets.swap(0, Ordering::SeqCst);
        (store, index_gets, consolidated_gets)
    };
    assert_eq!(open().1, PUSHES, "no gc yet: every index");

    // A gc that deletes nothing (every pack is young) still consolidates.
    let hour = Duration::from_secs(3600);
    let stats = vst::remote_gc::gc_remote(&remote, hour, &small_packs()).unwrap();
    let consolidated = stats.consolidated.unwrap();
    assert_eq!(consolidated.generation, 0);
    assert_eq!(consolidated.packs, PUSHES + 1, "the old packs and the copy: {stats:?}");
    let consolidated_packs = remote.store(RemoteOptions::default()).unwrap().pack_names();
    (0..SINCE).for_each(|_| push_one());
    let (store, index_gets, consolidated_gets) = open();
    assert_eq!((index_gets, consolidated_gets), (SINCE, 1));
    assert_eq!(store.pack_count(), PUSHES + 1 + SINCE);
    drop(store);

    // A pack deleted after the consolidated index was written is not
    // believed in.
    let gone = consolidated_packs[0];
    let lock = vst_cas::remote::gc::GcLock::take(&remote).unwrap();
    lock.delete_pack(&gone).unwrap();
    lock.release().unwrap();
    let (store, index_gets, consolidated_gets) = open();
    assert_eq!((index_gets, consolidated_gets), (SINCE, 1));
    assert!(!store.pack_names().contains(&gone));
    assert_eq!(store.pack_count(), PUSHES + SINCE);
    drop(store);

    // Damaged, it is passed over: every pack's own index is read.
    let tip = CommitId::new(remote.refs().get(&main_branch()).unwrap().unwrap());
    let key = object_store::path::Path::from("r/packs/all-0000000000000000.cidx");
    let junk = object_store::PutPayload::from_static(b"junk");
    tokio_free_block_on(server.put(&key, junk)).unwrap();
    let (store, index_gets, consolidated_gets) = open();
    assert_eq!((index_gets, consolidated_gets), (PUSHES + SINCE, 1));
    assert!(fsck(&store, &[tip], ReadData::Yes).is_clean());
    drop(store);

    // A gc that deletes: the next generation holds what is left, and the
    // older one is gone.
    let stats = vst::remote_gc::gc_remote(&remote, Duration::ZERO, &small_packs()).unwrap();
    assert_eq!(stats.consolidated.unwrap().generation, 1);
    let keys: Vec<String> = remote_keys(&server);
    let cidx: Vec<&String> = keys.iter().filter(|k| k.ends_with(".cidx")).collect();
    assert_eq!(cidx, vec!["r/packs/all-0000000000000001.cidx"]);
    (0..SINCE).for_each(|_| push_one());
    let (store, index_gets, consolidated_gets) = open();
    assert_eq!((index_gets, consolidated_gets), (SINCE, 1));
    let tip = CommitId::new(remote.refs().get(&main_branch()).unwrap().unwrap());
    assert!(fsck(&store, &[tip], ReadData::Yes).is_clean());
}

/// Every key on an in-memory server.
fn remote_keys(server: &object_store::memory::InMemory) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let listed: Vec<object_store::ObjectMeta> =
        tokio_free_block_on(server.list(None).try_collect()).unwrap();
    let mut keys: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    keys
}

/// Runs a future of the in-memory server, which never waits on anything
/// (so polling it in a loop with a waker that does nothing finishes).
fn tokio_free_block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
