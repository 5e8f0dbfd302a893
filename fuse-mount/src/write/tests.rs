//! The settler and the overlays, driven in-process (no FUSE, no kernel):
//! a [`Shared`] over a repository in a temporary directory, its store
//! wrapped so that a test can make puts fail or change a file while the
//! settler hashes it.

use std::sync::atomic::AtomicBool;

use vst::repo::InitStore;
use vst_cas::StoreError;

use super::*;

/// A hook run by the next put, without the mount's lock (where the settler
/// hashes and stores).
type PutHook = Box<dyn FnOnce() + Send>;

/// The repository's store, with failures and a hook on demand.
struct Faulty {
    inner: Arc<dyn Store>,
    fail_puts: AtomicBool,
    fail_flush: AtomicBool,
    on_put: Mutex<Option<PutHook>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faulty")
    }
}

impl Faulty {
    fn before_put(&self) -> Result<(), StoreError> {
        let hook = self.on_put.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(StoreError::Io { op: "put", source: io::Error::other("disk full") });
        }
        Ok(())
    }
}

impl Store for Faulty {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        self.before_put()?;
        self.inner.put(id, bytes)
    }
    fn put_batch(&self, objects: &[(ObjectId, &[u8])]) -> Result<(), StoreError> {
        self.before_put()?;
        self.inner.put_batch(objects)
    }
    fn get(&self, id: &ObjectId) -> Result<bytes::Bytes, StoreError> {
        self.inner.get(id)
    }
    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<bytes::Bytes, StoreError> {
        self.inner.read_range(id, offset, len)
    }
    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        self.inner.contains(id)
    }
    fn object_len(&self, id: &ObjectId) -> Result<Option<u64>, StoreError> {
        self.inner.object_len(id)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.fail_flush.load(Ordering::SeqCst) {
            return Err(StoreError::Io { op: "flush", source: io::Error::other("disk full") });
        }
        self.inner.flush()
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.flush()?;
        self.inner.sync()
    }
    fn put_reader(&self, reader: &mut dyn io::Read) -> Result<(ObjectId, u64), StoreError> {
        self.before_put()?;
        self.inner.put_reader(reader)
    }
    fn chunks(&self, id: &ObjectId) -> Result<Option<Vec<(ObjectId, u64)>>, StoreError> {
        self.inner.chunks(id)
    }
}

/// A writable mount's state, with no kernel attached.
struct Fixture {
    _dir: tempfile::TempDir,
    shared: Arc<Shared>,
    store: Arc<Faulty>,
    log: Arc<Mutex<Vec<String>>>,
}

fn path(s: &str) -> RepoPath {
    RepoPath::try_from(s).unwrap()
}

/// A repository whose one commit holds `files` (path, entry) and the
/// blobs `stored`, mounted writable in-process. An entry may lie about its
/// blob (its size, or a blob never stored): the commit records what it is
/// given.
fn mount_entries(files: &[(&str, FileEntry)], stored: &[&[u8]]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join(".vst");
    let repo = Repo::init(&repo_dir, &InitStore::Local, &|_| None).unwrap();
    for content in stored {
        repo.store().put(BlobId::of(content).object_id(), content).unwrap();
    }
    let mut ws = WorkingSet::new(repo.store());
    for (p, entry) in files {
        ws.put_file(&path(p), *entry).unwrap();
    }
    let options = CommitOptions {
        author: "test".into(),
        message: "base".into(),
        time: None,
        durability: Durability::Sync,
        merged: Vec::new(),
    };
    let commit = repo.commit(&mut ws, &options).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let error_log = {
        let log = log.clone();
        ErrorLog::Call(Arc::new(move |m: &str| log.lock().unwrap().push(m.to_owned())))
    };
    let start = Start { commit: Some(commit), left: Left::Resume, head: None };
    let mut shared = Shared::open(repo, &start, error_log, Duration::from_secs(1)).unwrap();
    let store = Arc::new(Faulty {
        inner: shared.store.clone(),
        fail_puts: AtomicBool::new(false),
        fail_flush: AtomicBool::new(false),
        on_put: Mutex::new(None),
    });
    shared.store = store.clone();
    // The working set stores trees through its own handle: the same one.
    let ws = WorkingSet::from_commit(store.clone(), commit).unwrap();
    shared.inner.get_mut().unwrap().ws = ws;
    Fixture { _dir: dir, shared: Arc::new(shared), store, log }
}

/// As [`mount_entries`], with each file's content stored.
fn mount(files: &[(&str, &[u8])]) -> Fixture {
    let entries: Vec<(&str, FileEntry)> = files
        .iter()
        .map(|(p, content)| {
            (
                *p,
                FileEntry {
                    id: BlobId::of(content),
                    size: content.len() as u64,
                    executable: false,
                },
            )
        })
        .collect();
    let contents: Vec<&[u8]> = files.iter().map(|(_, c)| *c).collect();
    mount_entries(&entries, &contents)
}

const WRONLY: OpenFlags = OpenFlags(nix::libc::O_WRONLY);

impl Fixture {
    fn ino(&self, name: &str) -> Ino {
        self.shared.lookup(ROOT, OsStr::new(name)).unwrap().ino.0
    }

    /// Opens `ino` for writing, writes `data` at `offset`, closes it.
    fn write(&self, ino: Ino, offset: u64, data: &[u8]) {
        let fh = self.shared.open_file(ino, WRONLY).unwrap();
        self.shared.write(ino, offset, data).unwrap();
        self.shared.release(fh).unwrap();
    }

    fn read(&self, ino: Ino) -> Vec<u8> {
        self.shared.read(ino, 0, 1 << 20).unwrap()
    }

    /// What the working set holds at `p` (what a commit takes).
    fn recorded(&self, p: &str) -> Option<FileEntry> {
        match self.shared.lock().ws.stat(&path(p)) {
            Some(Stat::File(entry)) => Some(entry),
            _ => None,
        }
    }

    /// The file records of the journal for `p`, in order.
    fn journaled(&self, p: &str) -> Vec<[u8; 32]> {
        let records = journal::read(&journal_path(&self.shared.state_dir)).unwrap().unwrap();
        records
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::File { path, id, .. } if path == p.as_bytes() => Some(id),
                _ => None,
            })
            .collect()
    }

    fn overlay_files(&self) -> usize {
        std::fs::read_dir(overlay_dir(&self.shared.state_dir)).unwrap().count()
    }

    /// The dirty overlay's state of `ino`: `None` if it has none.
    fn overlay(&self, ino: Ino) -> Option<(bool, u64)> {
        let inner = self.shared.lock();
        inner.file(ino).unwrap().overlay.as_ref().map(|o| (o.dirty, o.generation))
    }

    fn logged(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

#[test]
fn a_closed_file_is_settled_recorded_journaled_and_served_from_the_store() {
    let f = mount(&[("a.txt", b"hello world")]);
    let ino = f.ino("a.txt");
    f.write(ino, 6, b"there");
    // Closed, waiting for the settler: its overlay serves it, and the
    // working set still holds the committed content.
    assert_eq!(f.read(ino), b"hello there");
    assert_eq!(f.recorded("a.txt").unwrap().id, BlobId::of(b"hello world"));
    assert!(f.shared.lock().closed.contains(&ino));
    assert_eq!(f.overlay(ino).map(|o| o.0), Some(true));

    f.shared.settle_round();

    let id = BlobId::of(b"hello there");
    assert_eq!(f.recorded("a.txt"), Some(FileEntry { id, size: 11, executable: false }));
    assert_eq!(f.journaled("a.txt"), vec![*id.as_bytes()]);
    assert_eq!(&f.store.get(&id.object_id()).unwrap()[..], b"hello there");
    // The overlay is gone (its file deleted), the store serves the file.
    assert_eq!(f.overlay(ino), None);
    assert_eq!(f.overlay_files(), 0);
    assert_eq!(f.read(ino), b"hello there");
    assert!(f.shared.lock().dirty.is_empty());
    assert_eq!(f.logged(), "");
}

#[test]
fn a_file_changed_while_the_settler_hashes_it_is_not_recorded_until_settled_again() {
    let f = Arc::new(mount(&[("a.txt", b"one")]));
    let ino = f.ino("a.txt");
    f.write(ino, 0, b"two");
    // While the settler stores "two" (without the lock), another writer
    // opens the file, writes and closes it.
    {
        let f2 = f.clone();
        *f.store.on_put.lock().unwrap() = Some(Box::new(move || f2.write(ino, 3, b"-three")));
    }
    let generation = f.overlay(ino).unwrap().1;

    f.shared.settle_round();

    // "two" was hashed and stored, but is not what the file holds: it is
    // not recorded, and the overlay stays, dirty, queued again by the
    // second close.
    assert!(f.store.on_put.lock().unwrap().is_none(), "the hook ran");
    assert!(f.store.contains(&BlobId::of(b"two").object_id()).unwrap());
    assert_eq!(f.recorded("a.txt").unwrap().id, BlobId::of(b"one"));
    assert_eq!(f.journaled("a.txt"), Vec::<[u8; 32]>::new());
    let (dirty, later) = f.overlay(ino).unwrap();
    assert!(dirty && later > generation);
    assert!(f.shared.lock().closed.contains(&ino));
    assert_eq!(f.read(ino), b"two-three");

    f.shared.settle_round();

    let id = BlobId::of(b"two-three");
    assert_eq!(f.recorded("a.txt").unwrap().id, id);
    assert_eq!(f.journaled("a.txt"), vec![*id.as_bytes()]);
    assert_eq!(f.overlay(ino), None);
}

#[test]
fn a_store_that_fails_leaves_the_file_dirty_and_a_commit_records_it_once_it_works() {
    let f = mount(&[("a.txt", b"one"), ("b.txt", b"bee")]);
    let (a, b) = (f.ino("a.txt"), f.ino("b.txt"));
    f.write(a, 0, b"two");
    f.store.fail_puts.store(true, Ordering::SeqCst);

    f.shared.settle_round();

    // Nothing recorded or journaled: a record must never name a blob the
    // store does not hold. The overlay keeps the content.
    assert_eq!(f.recorded("a.txt").unwrap().id, BlobId::of(b"one"));
    assert_eq!(f.journaled("a.txt"), Vec::<[u8; 32]>::new());
    assert_eq!(f.overlay(a).map(|o| o.0), Some(true));
    assert_eq!(f.read(a), b"two");
    assert!(f.logged().contains("a.txt: storing its content"), "{}", f.logged());

    // The same when the store takes the content but cannot hand it to the
    // operating system.
    f.store.fail_puts.store(false, Ordering::SeqCst);
    f.store.fail_flush.store(true, Ordering::SeqCst);
    f.write(b, 0, b"bea");
    f.shared.settle_round();
    assert_eq!(f.recorded("b.txt").unwrap().id, BlobId::of(b"bee"));
    assert_eq!(f.journaled("b.txt"), Vec::<[u8; 32]>::new());
    assert_eq!(f.overlay(b).map(|o| o.0), Some(true));
    assert!(f.logged().contains("writing to the store"), "{}", f.logged());

    // A commit or a status finalizes what is dirty, once the store works.
    f.store.fail_flush.store(false, Ordering::SeqCst);
    f.shared.finalize_all(&mut f.shared.lock()).unwrap();
    assert_eq!(f.recorded("a.txt").unwrap().id, BlobId::of(b"two"));
    assert_eq!(f.recorded("b.txt").unwrap().id, BlobId::of(b"bea"));
    assert_eq!(f.journaled("a.txt"), vec![*BlobId::of(b"two").as_bytes()]);
    assert_eq!((f.overlay(a), f.overlay(b)), (None, None));
}

#[test]
fn a_file_unlinked_before_it_is_settled_is_not_recorded() {
    let f = mount(&[("a.txt", b"one")]);
    let ino = f.ino("a.txt");
    f.write(ino, 0, b"two");
    f.shared.unlink(ROOT, OsStr::new("a.txt"), false).unwrap();

    f.shared.settle_round();

    assert_eq!(f.recorded("a.txt"), None);
    assert_eq!(f.journaled("a.txt"), Vec::<[u8; 32]>::new());
    assert!(!f.store.contains(&BlobId::of(b"two").object_id()).unwrap());
    assert_eq!(f.logged(), "");
}

#[test]
fn storing_trees_that_fails_reports_the_change_count_and_stores_nothing() {
    let f = mount(&[("a.txt", b"one")]);
    f.write(f.ino("a.txt"), 0, b"two");
    f.shared.settle_round();
    let changes = f.shared.lock().changes;
    f.store.fail_puts.store(true, Ordering::SeqCst);

    assert_eq!(f.shared.store_trees(), Err(changes));
    assert!(f.logged().contains("storing the changed trees"), "{}", f.logged());

    f.store.fail_puts.store(false, Ordering::SeqCst);
    assert_eq!(f.shared.store_trees(), Ok(()));
    let tree = write_tree(&mut f.shared.lock().ws, Durability::None).unwrap();
    assert!(f.store.inner.contains(&tree.object_id()).unwrap());
}

#[test]
fn a_write_copies_the_stored_content_up_keeping_zeros_as_holes() {
    let mut content = vec![0u8; 4 << 20];
    content[..5].copy_from_slice(b"start");
    let f = mount(&[("sparse", &content)]);
    let ino = f.ino("sparse");
    let fh = f.shared.open_file(ino, WRONLY).unwrap();
    f.shared.write(ino, 2, b"AR").unwrap();

    let overlay = f.shared.lock().file(ino).unwrap().overlay.as_ref().unwrap().file.clone();
    let meta = overlay.metadata().unwrap();
    assert_eq!(meta.len(), 4 << 20);
    // Copied a piece at a time: the piece that holds data is written, the
    // three of zeros are left as a hole.
    use std::os::unix::fs::MetadataExt as _;
    assert!(meta.blocks() * 512 <= COPY_LEN + (64 << 10), "{} blocks", meta.blocks());
    assert_eq!(&f.shared.read(ino, 0, 8).unwrap(), b"stARt\0\0\0");
    assert_eq!(f.shared.read(ino, (4 << 20) - 4, 100).unwrap(), vec![0; 4]);
    f.shared.release(fh).unwrap();
}

#[test]
fn a_truncation_with_no_writer_open_is_settled_at_once() {
    let f = mount(&[("a.txt", b"hello")]);
    let ino = f.ino("a.txt");
    f.shared.setattr(ino, None, None, None, Some(3), None, None).unwrap();
    assert_eq!(f.recorded("a.txt").unwrap().id, BlobId::of(b"hel"));
    assert_eq!(f.overlay(ino), None);
    assert!(f.shared.lock().closed.is_empty());

    // To 0: nothing is copied, and the empty file is recorded.
    f.shared.setattr(ino, None, None, None, Some(0), None, None).unwrap();
    assert_eq!(
        f.recorded("a.txt").unwrap(),
        FileEntry { id: BlobId::of(b""), size: 0, executable: false }
    );
}

#[test]
fn a_stored_blob_that_is_missing_or_of_another_length_is_never_copied_up() {
    let missing = BlobId::of(b"never stored");
    let f = mount_entries(
        &[
            ("missing", FileEntry { id: missing, size: 12, executable: false }),
            ("short", FileEntry { id: BlobId::of(b""), size: 7, executable: false }),
        ],
        &[],
    );
    for name in ["missing", "short"] {
        let ino = f.ino(name);
        let fh = f.shared.open_file(ino, WRONLY).unwrap();
        assert_eq!(f.shared.write(ino, 0, b"x"), Err(Errno::EIO), "{name}");
        assert_eq!(f.shared.read(ino, 0, 4), Err(Errno::EIO), "{name}");
        f.shared.release(fh).unwrap();
        assert_eq!(f.overlay(ino), None);
    }
    assert!(f.logged().contains(&missing.to_string()), "{}", f.logged());
    assert_eq!(f.overlay_files(), 0);
}
