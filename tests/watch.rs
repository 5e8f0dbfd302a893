//! The work tree's watcher (`vst::worktree::watch`): after every step of
//! random edits (files, whole directories, renames in, out and within the
//! tree, deep new trees, ignore files, bursts from another process), a
//! status through the watcher equals a full scan's; an overflowed queue
//! falls back to a full scan and says so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use vst::repo::InitStore;
use vst::worktree::watch::{Changes, FullScan};
use vst::worktree::{Empty, Looked, ScanOptions, WorkTree};
use vst::{CommitOptions, Repo};

use crate::support::p;

/// Held by tests that change `fs.inotify.max_queued_events` and by those
/// that check what a watched scan looked at (a watcher started while the
/// limit is low would overflow).
static QUEUE_LIMIT: Mutex<()> = Mutex::new(());

fn limit_guard() -> std::sync::MutexGuard<'static, ()> {
    QUEUE_LIMIT.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A status as the tests compare it: each path and its status word.
fn status(wt: &mut WorkTree, full: bool) -> (Vec<(String, &'static str)>, Looked) {
    let status = wt.status(&ScanOptions { full, ..Default::default() }).unwrap();
    let list = status.changes.iter().map(|d| (d.path.to_string(), d.status())).collect();
    (list, status.looked)
}

/// A full scan by a work tree opened afresh from what is on disk.
fn fresh_status(repo_dir: &Path, root: &Path) -> Vec<(String, &'static str)> {
    let options = vst::repo::OpenOptions {
        access: vst_cas::Access::ReadOnly,
        settings: &|_| None,
        pack: Default::default(),
    };
    let repo = Repo::open_configured(repo_dir, &options).unwrap();
    let mut wt = WorkTree::open(repo, root).unwrap();
    status(&mut wt, true).0
}

/// A small deterministic generator (xorshift64*), so that a failing seed
/// can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A path of one to four components from a small alphabet, so that edits
/// meet each other.
fn path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(4);
    (0..depth).map(|_| rng.pick(&["a", "b", "c", "d.txt", "e"])).collect::<Vec<_>>().join("/")
}

/// Applies one random edit under `root` (`outside` is a directory beside
/// the tree, for moves in and out). Edits that do not apply (a parent is a
/// file, say) are skipped.
fn edit(rng: &mut Rng, root: &Path, outside: &Path) {
    let a = path(rng);
    let b = path(rng);
    let (fa, fb) = (root.join(&a), root.join(&b));
    let parent_dir = |p: &Path| {
        let parent = p.parent().unwrap();
        fs::create_dir_all(parent).is_ok()
    };
    match rng.below(14) {
        0 | 1 => {
            if parent_dir(&fa) && !fa.is_dir() {
                let _ = fs::write(&fa, format!("content {}", rng.below(4)));
            }
        }
        2 => {
            // Truncate or append.
            if fa.is_file() {
                let _ = if rng.below(2) == 0 {
                    fs::write(&fa, b"")
                } else {
                    use std::io::Write;
                    fs::OpenOptions::new()
                        .append(true)
                        .open(&fa)
                        .and_then(|mut f| f.write_all(b"+"))
                };
            }
        }
        3 => {
            let _ = fs::remove_file(&fa);
        }
        4 => {
            let _ = fs::remove_dir_all(&fa);
        }
        5 | 6 => {
            // A file or a whole directory moved within the tree.
            if fa.symlink_metadata().is_ok()
                && !b.starts_with(&format!("{a}/"))
                && parent_dir(&fb)
                && fb.symlink_metadata().is_err()
            {
                let _ = fs::rename(&fa, &fb);
            }
        }
        7 => {
            // Out of the tree, or back in.
            let away = outside.join("away");
            if away.symlink_metadata().is_err() {
                if fa.symlink_metadata().is_ok()
                    && fs::rename(&fa, &away).is_ok()
                    && rng.below(2) == 0
                {
                    // And something new where it was, at once.
                    let _ = fs::create_dir(&fa).and_then(|()| fs::write(fa.join("d.txt"), b"new"));
                }
            } else if parent_dir(&fa) && fa.symlink_metadata().is_err() {
                let _ = fs::rename(&away, &fa);
            }
        }
        8 => {
            // A deep new tree filled at once.
            let deep = fa.join("x/y/z");
            if fs::create_dir_all(&deep).is_ok() {
                for i in 0..3 {
                    let _ = fs::write(deep.join(format!("f{i}")), b"deep");
                    let _ = fs::write(fa.join(format!("x/g{i}")), b"less deep");
                }
            }
        }
        9 => {
            if fa.is_file() {
                let mode = if rng.below(2) == 0 { 0o755 } else { 0o644 };
                let _ = fs::set_permissions(&fa, fs::Permissions::from_mode(mode));
            }
        }
        10 => {
            if parent_dir(&fa) && fa.symlink_metadata().is_err() {
                let _ = std::os::unix::fs::symlink(&b, &fa);
            }
        }
        11 => {
            // An ignore file, or its removal.
            let dir = fa.parent().unwrap().to_owned();
            let file = dir.join(".vstignore");
            if rng.below(3) == 0 {
                let _ = fs::remove_file(&file);
            } else if dir.is_dir() {
                let _ = fs::write(&file, format!("{}\n", rng.pick(&["c", "*.txt", "e/", "!c"])));
            }
        }
        _ => {
            // A burst from another process: a new directory filled and
            // moved, files written and removed, faster than we look.
            let script = format!(
                "mkdir -p n/m && for i in 1 2 3 4 5; do echo $i > n/m/f$i; done; \
                 {{ mv n n2; echo z > {a}.burst; rm -rf n2/m; mkdir -p {b}.dir/q; \
                 echo q > {b}.dir/q/r; }} 2>/dev/null; true"
            );
            let status =
                std::process::Command::new("sh").arg("-c").arg(script).current_dir(root).status();
            assert!(status.unwrap().success());
        }
    }
}

fn run_random(seed: u64, steps: usize) {
    let _guard = limit_guard();
    let dir = tempfile::tempdir().unwrap();
    let (repo_dir, root, outside) =
        (dir.path().join("repo"), dir.path().join("root"), dir.path().join("outside"));
    for d in [&root, &outside] {
        fs::create_dir(d).unwrap();
    }
    Repo::init(&repo_dir, &InitStore::Local, &|_| None).unwrap();
    let mut wt = WorkTree::open(Repo::open(&repo_dir).unwrap(), &root).unwrap();
    wt.watch().unwrap();
    let mut rng = Rng(seed);
    let mut watched = 0;
    for step in 0..steps {
        edit(&mut rng, &root, &outside);
        if rng.below(25) == 0 {
            // A commit through the watcher: afterwards what it committed
            // is what a full scan finds.
            let options = CommitOptions { message: format!("step {step}"), ..Default::default() };
            wt.commit(&options, Empty::Allow, &ScanOptions::default()).unwrap();
            wt.save().unwrap();
        }
        let (got, looked) = status(&mut wt, false);
        let want = fresh_status(&repo_dir, &root);
        assert_eq!(got, want, "seed {seed}, step {step}: the watcher's status differs");
        watched += usize::from(matches!(looked, Looked::Paths(_)));
    }
    // Only the first status had no earlier answer to build on.
    assert_eq!(watched, steps - 1, "seed {seed}: watched statuses");
}

#[test]
fn watched_status_equals_a_full_scan_after_random_edits() {
    for seed in [1, 2, 3, 0x5eed] {
        run_random(seed, 600);
    }
}

/// Work tree, repository and watcher, with one commit of `files` files.
fn watched_tree(files: usize) -> (tempfile::TempDir, WorkTree) {
    let dir = tempfile::tempdir().unwrap();
    let (repo_dir, root) = (dir.path().join("repo"), dir.path().join("root"));
    fs::create_dir(&root).unwrap();
    for i in 0..files {
        fs::create_dir_all(root.join(format!("d{}", i % 10))).unwrap();
        fs::write(root.join(format!("d{}/f{i}", i % 10)), format!("{i}")).unwrap();
    }
    Repo::init(&repo_dir, &InitStore::Local, &|_| None).unwrap();
    let mut wt = WorkTree::open(Repo::open(&repo_dir).unwrap(), &root).unwrap();
    wt.watch().unwrap();
    let options = CommitOptions { message: "base".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    (dir, wt)
}

#[test]
fn a_watched_scan_looks_at_what_changed_only() {
    let _guard = limit_guard();
    let (_dir, mut wt) = watched_tree(100);
    let root = wt.root().to_owned();
    // The commit looked at everything (the watcher's first answer).
    let (changes, looked) = status(&mut wt, false);
    assert!(changes.is_empty());
    assert_eq!(looked, Looked::Paths(0));
    fs::write(root.join("d3/f3"), b"changed").unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes, vec![("d3/f3".to_owned(), "modified")]);
    assert_eq!(looked, Looked::Paths(1));
    // Still dirty, so still looked at; nothing else.
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes.len(), 1);
    assert_eq!(looked, Looked::Paths(1));
    // `full` looks at everything and says why not the watcher: it was
    // asked to.
    let (_, looked) = status(&mut wt, true);
    assert_eq!(looked, Looked::Everything(None));
}

#[test]
fn files_created_in_a_new_directory_before_its_watch_are_found() {
    let _guard = limit_guard();
    let (_dir, mut wt) = watched_tree(10);
    let root = wt.root().to_owned();
    status(&mut wt, false);
    // Created and filled in one go: the files exist before the watcher
    // can have watched the new directories.
    let deep = root.join("new/a/b/c");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), b"1").unwrap();
    fs::write(root.join("new/a/g"), b"2").unwrap();
    let (changes, _) = status(&mut wt, false);
    let paths: Vec<&str> = changes.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["new", "new/a", "new/a/b", "new/a/b/c", "new/a/b/c/f", "new/a/g"]);
    // And the new directories are watched now (committed, so that only
    // the watcher can say that something below them changed).
    let options = CommitOptions { message: "new".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    fs::write(deep.join("f2"), b"3").unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert!(changes.iter().any(|(p, _)| p == "new/a/b/c/f2"), "{changes:?}");
    assert!(matches!(looked, Looked::Paths(_)));
}

#[test]
fn directories_moved_out_of_and_into_the_tree_are_seen() {
    let _guard = limit_guard();
    let (dir, mut wt) = watched_tree(30);
    let root = wt.root().to_owned();
    status(&mut wt, false);
    // Out: an IN_MOVED_FROM with no IN_MOVED_TO.
    fs::rename(root.join("d1"), dir.path().join("d1-away")).unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert!(changes.iter().all(|(p, s)| p.starts_with("d1") && *s == "deleted"), "{changes:?}");
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(matches!(looked, Looked::Paths(_)));
    // An edit in the moved-away directory is not in the tree.
    fs::write(dir.path().join("d1-away/f1"), b"elsewhere").unwrap();
    assert_eq!(status(&mut wt, false).0.len(), 4);
    // In, under another name: an IN_MOVED_TO with no IN_MOVED_FROM; what
    // is in it is found, and it is watched from then on.
    fs::rename(dir.path().join("d1-away"), root.join("back")).unwrap();
    fs::write(root.join("back/f11"), b"edited after the move").unwrap();
    let (changes, _) = status(&mut wt, false);
    assert!(changes.contains(&("back/f11".to_owned(), "added")), "{changes:?}");
    assert_eq!(changes, fresh_status(wt.repo().dir(), &root));
    // Within the tree: the watches follow the directory.
    fs::rename(root.join("back"), root.join("d2/inner")).unwrap();
    fs::write(root.join("d2/inner/f21"), b"after the second move").unwrap();
    let (changes, _) = status(&mut wt, false);
    assert!(changes.contains(&("d2/inner/f21".to_owned(), "added")), "{changes:?}");
    assert_eq!(changes, fresh_status(wt.repo().dir(), &root));
}

#[test]
fn ignored_directories_are_not_watched() {
    let _guard = limit_guard();
    let (_dir, mut wt) = watched_tree(10);
    let root = wt.root().to_owned();
    fs::write(root.join(".vstignore"), b"target/\n").unwrap();
    fs::create_dir_all(root.join("target/debug")).unwrap();
    status(&mut wt, false);
    let dirs = wt.watcher().unwrap().stats().dirs;
    fs::create_dir_all(root.join("target/debug/deps/more")).unwrap();
    for i in 0..50 {
        fs::write(root.join(format!("target/debug/out{i}")), b"build output").unwrap();
    }
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes, vec![(".vstignore".to_owned(), "added")]);
    assert_eq!(looked, Looked::Paths(1), "build output costs nothing");
    assert_eq!(wt.watcher().unwrap().stats().dirs, dirs, "target/ is not watched");
    // Un-ignored: now watched, and what is in it is found.
    fs::write(root.join(".vstignore"), b"nothing\n").unwrap();
    let (changes, _) = status(&mut wt, false);
    assert!(changes.iter().any(|(p, _)| p == "target/debug/out7"), "{changes:?}");
    assert!(wt.watcher().unwrap().stats().dirs > dirs);
    fs::write(root.join("target/debug/deps/more/late"), b"x").unwrap();
    let (changes, _) = status(&mut wt, false);
    assert!(changes.iter().any(|(p, _)| p == "target/debug/deps/more/late"), "{changes:?}");
}

/// Sets `fs.inotify.max_queued_events` until dropped (root only).
struct QueueLimit(String);

const QUEUE_LIMIT_FILE: &str = "/proc/sys/fs/inotify/max_queued_events";

impl QueueLimit {
    fn set(limit: u32) -> Self {
        let old = fs::read_to_string(QUEUE_LIMIT_FILE).unwrap();
        fs::write(QUEUE_LIMIT_FILE, limit.to_string()).unwrap_or_else(|e| {
            panic!(
                "cannot set {QUEUE_LIMIT_FILE} ({e}): this test needs root (CI runs as root) to \
                 make the inotify queue overflow"
            )
        });
        Self(old)
    }
}

impl Drop for QueueLimit {
    fn drop(&mut self) {
        fs::write(QUEUE_LIMIT_FILE, self.0.trim()).unwrap();
    }
}

#[test]
fn an_overflowed_queue_falls_back_to_a_full_scan_and_says_so() {
    let _guard = limit_guard();
    let dir = tempfile::tempdir().unwrap();
    let (repo_dir, root) = (dir.path().join("repo"), dir.path().join("root"));
    fs::create_dir(&root).unwrap();
    Repo::init(&repo_dir, &InitStore::Local, &|_| None).unwrap();
    let mut wt = WorkTree::open(Repo::open(&repo_dir).unwrap(), &root).unwrap();
    {
        // The limit is read when the inotify instance is made.
        let _limit = QueueLimit::set(16);
        wt.watch().unwrap();
    }
    status(&mut wt, false);
    // Far more than 16 events while the watcher reads none.
    {
        let _held = wt.watcher().unwrap().hold_events();
        let script = "for i in $(seq 1 2000); do echo $i > f$i; done";
        let ran =
            std::process::Command::new("sh").arg("-c").arg(script).current_dir(&root).status();
        assert!(ran.unwrap().success());
    }
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes.len(), 2000);
    assert_eq!(changes, fresh_status(&repo_dir, &root));
    assert_eq!(looked, Looked::Everything(Some(FullScan::Overflow)));
    // The watches were redone: the next answer builds on this one.
    fs::write(root.join("f7"), b"again").unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes.len(), 2000);
    assert!(matches!(looked, Looked::Paths(_)), "{looked:?}");
}

/// Sets `fs.inotify.max_user_watches` until dropped (root only).
struct WatchLimit(String);

const WATCH_LIMIT_FILE: &str = "/proc/sys/fs/inotify/max_user_watches";

impl WatchLimit {
    fn set(limit: u32) -> Self {
        let old = fs::read_to_string(WATCH_LIMIT_FILE).unwrap();
        fs::write(WATCH_LIMIT_FILE, limit.to_string()).unwrap_or_else(|e| {
            panic!(
                "cannot set {WATCH_LIMIT_FILE} ({e}): this test needs root (CI runs as root) to \
                 reach the inotify watch limit"
            )
        });
        Self(old)
    }
}

impl Drop for WatchLimit {
    fn drop(&mut self) {
        fs::write(WATCH_LIMIT_FILE, self.0.trim()).unwrap();
    }
}

#[test]
fn a_directory_that_cannot_be_watched_makes_every_answer_scan_until_it_can() {
    let _guard = limit_guard();
    let (_dir, mut wt) = watched_tree(10);
    let root = wt.root().to_owned();
    status(&mut wt, false);
    {
        // Below what this user already watches: no watch can be added.
        let _limit = WatchLimit::set(1);
        fs::create_dir_all(root.join("new/sub")).unwrap();
        fs::write(root.join("new/sub/f"), b"1").unwrap();
        let (changes, looked) = status(&mut wt, false);
        assert_eq!(changes.len(), 3, "{changes:?}");
        let Looked::Everything(Some(FullScan::CannotWatch { reason, .. })) = looked else {
            panic!("{looked:?}")
        };
        assert!(reason.contains("max_user_watches"), "{reason}");
        // Not only once: the watcher cannot vouch for the new directory.
        fs::write(root.join("new/sub/f"), b"2").unwrap();
        let (_, looked) = status(&mut wt, false);
        assert!(matches!(looked, Looked::Everything(Some(FullScan::CannotWatch { .. }))));
    }
    // The limit raised again: the next answer watches again (and still
    // looks at everything, for what happened meanwhile), then builds on it.
    let (_, looked) = status(&mut wt, false);
    assert!(matches!(looked, Looked::Everything(Some(FullScan::CannotWatch { .. }))));
    let options = CommitOptions { message: "new".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    fs::write(root.join("new/sub/f"), b"3").unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes, vec![("new/sub/f".to_owned(), "modified")]);
    assert_eq!(looked, Looked::Paths(1));
}

#[test]
fn a_reader_of_the_index_waits_for_a_save_under_way() {
    let (_dir, mut wt) = watched_tree(5);
    let root = wt.root().to_owned();
    wt.save().unwrap();
    fs::write(root.join("d1/f1"), b"changed").unwrap();
    let options = CommitOptions { message: "second".into(), ..Default::default() };
    let commit = wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap().commit;
    // The lock a daemon takes before it answers a commit.
    let lock = wt.lock_index().unwrap();
    let repo_dir = wt.repo().dir().to_owned();
    let reader = std::thread::spawn(move || {
        let options = vst::repo::OpenOptions {
            access: vst_cas::Access::ReadOnly,
            settings: &|_| None,
            pack: Default::default(),
        };
        let repo = Repo::open_configured(&repo_dir, &options).unwrap();
        WorkTree::open(repo, &root).unwrap().at()
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!reader.is_finished(), "the reader waits for the lock");
    wt.save_locked(lock).unwrap();
    // It read the saved index, not the one before the commit.
    assert_eq!(reader.join().unwrap(), commit);
}

#[test]
fn a_directory_made_where_one_moved_out_stays_watched() {
    let _guard = limit_guard();
    let (dir, mut wt) = watched_tree(20);
    let root = wt.root().to_owned();
    status(&mut wt, false);
    // Out, and a new directory of the same name at once (one query later
    // the old one's watches go: the new one's must not).
    fs::rename(root.join("d1"), dir.path().join("away")).unwrap();
    fs::create_dir(root.join("d1")).unwrap();
    fs::write(root.join("d1/new"), b"1").unwrap();
    status(&mut wt, false);
    let options = CommitOptions { message: "swap".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    status(&mut wt, false);
    fs::write(root.join("d1/new"), b"changed").unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes, vec![("d1/new".to_owned(), "modified")], "{looked:?}");
    assert_eq!(changes, fresh_status(wt.repo().dir(), &root));
}

#[test]
fn a_directory_moved_out_and_back_stays_watched() {
    let _guard = limit_guard();
    let (dir, mut wt) = watched_tree(20);
    let root = wt.root().to_owned();
    status(&mut wt, false);
    // Out and straight back before any query: the same directory (and
    // watch descriptors) at the same path; and a subdirectory of one moved
    // out, moved back in somewhere else.
    fs::create_dir(root.join("d2/sub")).unwrap();
    fs::write(root.join("d2/sub/s"), b"s").unwrap();
    let options = CommitOptions { message: "sub".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    fs::rename(root.join("d1"), dir.path().join("away")).unwrap();
    fs::rename(dir.path().join("away"), root.join("d1")).unwrap();
    fs::rename(root.join("d2"), dir.path().join("away2")).unwrap();
    fs::create_dir(root.join("d2")).unwrap();
    fs::rename(dir.path().join("away2/sub"), root.join("d2/sub")).unwrap();
    let (changes, _) = status(&mut wt, false);
    assert_eq!(changes, fresh_status(wt.repo().dir(), &root));
    wt.commit(&options, Empty::Allow, &ScanOptions::default()).unwrap();
    status(&mut wt, false);
    fs::write(root.join("d1/f1"), b"changed after the round trip").unwrap();
    fs::write(root.join("d2/sub/s"), b"changed after the move back").unwrap();
    let (changes, looked) = status(&mut wt, false);
    assert_eq!(changes.len(), 2, "{changes:?} {looked:?}");
    assert_eq!(changes, fresh_status(wt.repo().dir(), &root), "{looked:?}");
}

/// Ignoring never drops what is tracked (git's rule): a committed file an
/// ignore rule matches, and a committed directory it matches, stay in the
/// tree and their edits are seen, by a full scan and through the watcher
/// (which does not watch ignored directories); what is new there stays
/// ignored.
#[test]
fn ignore_rules_never_drop_tracked_files() {
    let _guard = limit_guard();
    let (_dir, mut wt) = watched_tree(0);
    let root = wt.root().to_owned();
    fs::create_dir_all(root.join("out/deep")).unwrap();
    fs::write(root.join("out/deep/kept"), b"1").unwrap();
    fs::write(root.join("notes.log"), b"1").unwrap();
    let options = CommitOptions { message: "tracked".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    fs::write(root.join(".vstignore"), b"out/\n*.log\n").unwrap();
    let added = vec![(".vstignore".to_owned(), "added")];
    for full in [true, false] {
        assert_eq!(status(&mut wt, full).0, added, "full scan: {full}");
    }
    fs::write(root.join("out/deep/kept"), b"2").unwrap();
    fs::write(root.join("out/deep/new"), b"build output").unwrap();
    fs::write(root.join("out/new"), b"build output").unwrap();
    fs::write(root.join("notes.log"), b"2").unwrap();
    fs::write(root.join("other.log"), b"new, ignored").unwrap();
    let want = vec![
        (".vstignore".to_owned(), "added"),
        ("notes.log".to_owned(), "modified"),
        ("out/deep/kept".to_owned(), "modified"),
    ];
    for full in [false, true] {
        assert_eq!(status(&mut wt, full).0, want, "full scan: {full}");
    }
    let options = CommitOptions { message: "edits".into(), ..Default::default() };
    wt.commit(&options, Empty::Skip, &ScanOptions::default()).unwrap();
    assert_eq!(status(&mut wt, true).0, vec![]);
    // Removed, a tracked file is a deletion, ignored or not.
    fs::remove_file(root.join("out/deep/kept")).unwrap();
    fs::remove_file(root.join("notes.log")).unwrap();
    let want = vec![("notes.log".to_owned(), "deleted"), ("out/deep/kept".to_owned(), "deleted")];
    for full in [false, true] {
        assert_eq!(status(&mut wt, full).0, want, "full scan: {full}");
    }
}

/// Ignored directories that come and go leave nothing behind in the
/// watcher: what it answers stays the size of what is there.
#[test]
fn ignored_directories_that_come_and_go_are_forgotten() {
    let _guard = limit_guard();
    let (_dir, wt) = watched_tree(1);
    let root = wt.root().to_owned();
    fs::write(root.join(".vstignore"), b"tmp-*/\n").unwrap();
    let watcher = wt.watcher().unwrap();
    let (_, mut token) = watcher.changes_since(None);
    for i in 0..50 {
        let dir = root.join(format!("tmp-{i}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), b"x").unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir(root.join("tmp-kept")).unwrap();
    let (changes, next) = watcher.changes_since(Some(token));
    token = next;
    let Changes::Paths { ignored, .. } = changes else { panic!("{changes:?}") };
    let kept = p("tmp-kept");
    assert!(ignored.contains(&kept), "{ignored:?}");
    // Each removed one was reported once as a change, then forgotten.
    let (changes, _) = watcher.changes_since(Some(token));
    let Changes::Paths { ignored, .. } = changes else { panic!("{changes:?}") };
    assert_eq!(ignored, vec![kept]);
}
