//! Real mounts, read through the kernel like any program would.
//!
//! These need `/dev/fuse` and the right to mount (root, or `fusermount3`).
//! Where mounting is impossible, each test fails loudly when `CI` is set
//! and otherwise prints a warning and returns.
//!
//! The tests take one lock, so that one runs at a time: the last one
//! counts the process's FUSE threads, and the mounts of other tests would
//! be counted with them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Read as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use vst::{CommitId, CommitOptions, EntryKind, Repo, RepoPath, Timestamp, WorkingSet, read};
use vst_cas::Access;
use vst_cas::sim::noise;
use vst_fuse::{ErrorLog, MountOptions, Mounted, View};

#[path = "../../tests/support/craft.rs"]
mod craft;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The commit time every test commit carries (with microseconds, to see
/// them survive).
const TIME_US: i64 = 1_700_000_000_123_456;

fn commit_time(offset_s: i64) -> Timestamp {
    Timestamp { unix_us: TIME_US + offset_s * 1_000_000, tz_offset_min: 0 }
}

fn path(s: &str) -> RepoPath {
    RepoPath::try_from(s).unwrap()
}

fn open_repo(dir: &Path, access: Access) -> Repo {
    Repo::open_with(Arc::new(vst_cas::vfs::RealFs::new()), dir, access).unwrap()
}

/// Commits `ws` on `branch` with the time `commit_time(offset_s)`.
fn commit(repo: &Repo, ws: &mut WorkingSet, branch: &str, offset_s: i64) -> CommitId {
    let options = CommitOptions {
        author: "test".into(),
        message: format!("commit at +{offset_s}s"),
        time: Some(commit_time(offset_s)),
        ..CommitOptions::default()
    };
    repo.commit_on(ws, &Repo::branch(branch).unwrap(), &options).unwrap()
}

/// Mounts `view`, or says loudly why it cannot: a failure in CI, a
/// warning elsewhere (`None`, and the test returns).
fn try_mount(repo: &Repo, view: View, at: &Path, options: &MountOptions) -> Option<Mounted> {
    let why = if !Path::new("/dev/fuse").exists() {
        "/dev/fuse does not exist".to_owned()
    } else {
        match vst_fuse::spawn_mount(repo.store(), view, at, options) {
            Ok(m) => return Some(m),
            Err(e) => format!("{e}: {:?}", std::error::Error::source(&e)),
        }
    };
    if std::env::var_os("CI").is_some() {
        panic!("cannot mount FUSE in CI, where these tests must run: {why}");
    }
    eprintln!("\n!!!!!!!! WARNING: FUSE MOUNT TEST SKIPPED: cannot mount: {why} !!!!!!!!\n");
    None
}

fn quiet() -> MountOptions {
    let mut o = MountOptions::default();
    o.error_log = ErrorLog::Discard;
    o
}

/// Every entry under `root` by path: the tree as the library reads it.
fn entries(repo: &Repo, root: vst::TreeId) -> BTreeMap<Vec<u8>, EntryKind> {
    let mut out = BTreeMap::new();
    read::walk(repo.store().as_ref(), root, &mut |p, kind| {
        out.insert(p.as_bytes().to_vec(), kind.clone());
        Ok(())
    })
    .unwrap();
    out
}

fn xattr_id(p: &Path) -> Option<String> {
    xattr::get(p, "user.vst.id").unwrap().map(|v| String::from_utf8(v).unwrap())
}

/// Every path under `root`, relative, sorted, directories included.
fn walk_disk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    out
}

/// A generated tree: nested directories of small files (some executable,
/// some empty), symlinks of every sort, empty directories, a name that is
/// not UTF-8, and one large file the store chunks.
fn generated_tree(ws: &mut WorkingSet, files: usize, large: &[u8]) {
    for i in 0..files {
        let p = if i % 100 == 7 {
            format!("deep/a/b/c/d/e/f/g/h{}/file{i}.txt", i % 3)
        } else {
            format!("d{}/e{}/file{i}.txt", i % 7, (i / 7) % 11)
        };
        let p = path(&p);
        ws.write(&p, &noise(i as u64, (i * 37) % 5000)).unwrap();
        if i % 13 == 0 {
            ws.set_executable(&p, true).unwrap();
        }
    }
    ws.write(&path("big/large.bin"), large).unwrap();
    ws.symlink(&path("links/relative"), b"../d1/e1/file8.txt").unwrap();
    ws.symlink(&path("links/absolute"), b"/etc/hostname").unwrap();
    ws.symlink(&path("links/dangling"), b"nowhere/at/all").unwrap();
    ws.symlink(&path("links/to-dir"), b"../d2").unwrap();
    ws.create_dir_all(&path("empty/nested/deeper")).unwrap();
    ws.create_dir_all(&path("empty2")).unwrap();
    let odd = RepoPath::try_from(&b"names/caf\xe9 \\ \t x"[..]).unwrap();
    ws.write(&odd, b"not utf-8\n").unwrap();
}

#[test]
fn a_mounted_commit_reads_back_exactly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let repo = open_repo(&dir.path().join("repo"), Access::ReadWrite);
    let large = noise(42, 100 << 20);
    let mut ws = WorkingSet::new(repo.store());
    generated_tree(&mut ws, 3000, &large);
    let id = commit(&repo, &mut ws, "main", 0);
    let tree = read::read_commit(repo.store().as_ref(), id).unwrap().tree;
    let expected = dir.path().join("expected");
    vst::checkout(repo.store().as_ref(), tree, &expected).unwrap();
    let by_path = entries(&repo, tree);

    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let view = View::commit(repo.store().as_ref(), id).unwrap();
    let Some(mut mounted) = try_mount(&repo, view, &mnt, &quiet()) else { return };

    // Random ranges of the large file first, while nothing is cached.
    let big = fs::File::open(mnt.join("big/large.bin")).unwrap();
    let mut state = 0x5eed_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let len = (next() % (3 << 20)) as usize + 1;
        let offset = (next() % (large.len() as u64 + 4096)) as usize;
        let mut buf = vec![0; len];
        let n = big.read_at(&mut buf, offset as u64).unwrap();
        let want = &large[offset.min(large.len())..(offset + len).min(large.len())];
        // A read may return less than asked only at the end of the file.
        assert!(n == want.len() || (n > 0 && n < want.len()), "read {n} of {len} at {offset}");
        assert!(buf[..n] == want[..n], "bytes differ in {len} at {offset}");
    }
    drop(big);

    // Every path: same names, kinds, modes, bytes, link targets, link
    // counts; the commit's time; the id as an xattr.
    let on_disk = walk_disk(&expected);
    assert_eq!(walk_disk(&mnt), on_disk, "the mount lists what checkout wrote");
    assert!(on_disk.len() > 3000);
    let want_time = UNIX_EPOCH + Duration::from_micros(TIME_US as u64);
    let mut inodes = BTreeMap::new();
    for rel in &on_disk {
        let (m, e) = (mnt.join(rel), expected.join(rel));
        let (mm, em) = (fs::symlink_metadata(&m).unwrap(), fs::symlink_metadata(&e).unwrap());
        let kind = &by_path[rel.as_os_str().as_bytes()];
        assert_eq!(mm.file_type(), em.file_type(), "{rel:?}");
        assert_eq!(mm.modified().unwrap(), want_time, "{rel:?}");
        assert_eq!(mm.uid(), nix::unistd::getuid().as_raw());
        inodes.insert(rel.clone(), mm.ino());
        let mode = mm.permissions().mode() & 0o7777;
        match kind {
            EntryKind::File(f) => {
                assert_eq!(mode, if f.executable { 0o755 } else { 0o644 }, "{rel:?}");
                assert_eq!(em.permissions().mode() & 0o100 != 0, f.executable, "{rel:?}");
                assert_eq!(mm.len(), f.size);
                assert_eq!(mm.nlink(), 1);
                if f.size < (1 << 20) {
                    assert!(fs::read(&m).unwrap() == fs::read(&e).unwrap(), "{rel:?}");
                }
                assert_eq!(xattr_id(&m), Some(f.id.to_string()), "{rel:?}");
            }
            EntryKind::Dir(t) => {
                assert_eq!(mode, 0o755, "{rel:?}");
                assert_eq!(mm.nlink(), em.nlink(), "2 + subdirectories: {rel:?}");
                assert_eq!(xattr_id(&m), Some(t.to_string()), "{rel:?}");
            }
            EntryKind::Symlink(s) => {
                assert_eq!(mode, 0o777, "{rel:?}");
                assert_eq!(fs::read_link(&m).unwrap().as_os_str().as_bytes(), s.as_bytes());
                assert_eq!(fs::read_link(&m).unwrap(), fs::read_link(&e).unwrap());
            }
        }
    }
    // The large file, streamed whole.
    let mut streamed = Vec::new();
    fs::File::open(mnt.join("big/large.bin")).unwrap().read_to_end(&mut streamed).unwrap();
    assert!(streamed == large, "the large file streams back exactly");
    drop(streamed);
    // The root: its tree id, its link count.
    assert_eq!(xattr_id(&mnt), Some(tree.to_string()));
    assert_eq!(fs::metadata(&mnt).unwrap().nlink(), fs::metadata(&expected).unwrap().nlink());
    assert_eq!(
        xattr::list(mnt.join("d0")).unwrap().map(|n| n.as_bytes().to_vec()).collect::<Vec<_>>(),
        vec![b"user.vst.id".to_vec()]
    );
    assert_eq!(xattr::get(mnt.join("d0"), "user.other").unwrap(), None, "ENODATA");
    let link = mnt.join("links/relative");
    assert_eq!(xattr::list(&link).unwrap().count(), 0, "a symlink has no id");
    // A name that is not there, twice (the second from the kernel's cache).
    for _ in 0..2 {
        let err = fs::metadata(mnt.join("d0/no-such-file")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
    // Inode numbers: one per path, the same after the kernel forgets them.
    let unique: BTreeSet<u64> = inodes.values().copied().collect();
    assert_eq!(unique.len(), inodes.len(), "every path has its own inode");
    let dropped = fs::write("/proc/sys/vm/drop_caches", "2").is_ok();
    if !dropped {
        eprintln!("note: cannot drop the kernel's caches here; inodes checked while cached");
    }
    for (rel, ino) in &inodes {
        assert_eq!(fs::symlink_metadata(mnt.join(rel)).unwrap().ino(), *ino, "{rel:?}");
    }
    let stat = nix::sys::statvfs::statvfs(&mnt).unwrap();
    assert!(stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    mounted.unmount().unwrap();
}

#[test]
fn every_write_fails_with_erofs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let repo = open_repo(&dir.path().join("repo"), Access::ReadWrite);
    let mut ws = WorkingSet::new(repo.store());
    ws.write(&path("dir/file"), b"content\n").unwrap();
    ws.symlink(&path("link"), b"dir/file").unwrap();
    let id = commit(&repo, &mut ws, "main", 0);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let view = View::commit(repo.store().as_ref(), id).unwrap();
    let Some(mut mounted) = try_mount(&repo, view, &mnt, &quiet()) else { return };

    let file = mnt.join("dir/file");
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{what}: {e}");
    };
    erofs("open for writing", fs::OpenOptions::new().write(true).open(&file).map(drop));
    erofs("open for appending", fs::OpenOptions::new().append(true).open(&file).map(drop));
    erofs("create", fs::File::create(mnt.join("dir/new")).map(drop));
    erofs("create over", fs::File::create(&file).map(drop));
    erofs("mkdir", fs::create_dir(mnt.join("newdir")));
    erofs("unlink", fs::remove_file(&file));
    erofs("unlink a symlink", fs::remove_file(mnt.join("link")));
    erofs("rmdir", fs::remove_dir(mnt.join("dir")));
    erofs("rename", fs::rename(&file, mnt.join("dir/renamed")));
    erofs("symlink", std::os::unix::fs::symlink("x", mnt.join("newlink")));
    erofs("hard link", fs::hard_link(&file, mnt.join("hard")));
    erofs("chmod", fs::set_permissions(&file, fs::Permissions::from_mode(0o600)));
    erofs("truncate", nix::unistd::truncate(&file, 0).map_err(std::io::Error::from));
    erofs("setxattr", xattr::set(&file, "user.x", b"1"));
    erofs("removexattr", xattr::remove(&file, "user.vst.id"));
    erofs(
        "utimes",
        fs::File::open(&file).and_then(|f| f.set_modified(SystemTime::now())).map(drop),
    );
    // Reading still works, and nothing changed.
    assert_eq!(fs::read(&file).unwrap(), b"content\n");
    assert_eq!(walk_disk(&mnt), [PathBuf::from("dir"), "dir/file".into(), "link".into()]);
    mounted.unmount().unwrap();
}

#[test]
fn the_all_view_lists_every_branch_and_commit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let repo = open_repo(&dir.path().join("repo"), Access::ReadWrite);
    // main: three commits; feature/x: two more on top of main's second;
    // release: main's first.
    let mut ws = WorkingSet::new(repo.store());
    let mut main = Vec::new();
    for i in 0..3 {
        ws.write(&path("f"), format!("main {i}\n").as_bytes()).unwrap();
        main.push(commit(&repo, &mut ws, "main", i));
    }
    let mut ws = WorkingSet::from_commit(repo.store(), main[1]).unwrap();
    let mut feature = Vec::new();
    for i in 0..2 {
        ws.write(&path("g"), format!("feature {i}\n").as_bytes()).unwrap();
        // The branch starts at main[1]: point it there first.
        if i == 0 {
            repo.refs()
                .update(&Repo::branch("feature/x").unwrap(), None, Some(main[1].object_id()), "b")
                .unwrap();
        }
        feature.push(commit(&repo, &mut ws, "feature/x", 10 + i));
    }
    repo.refs()
        .update(&Repo::branch("release").unwrap(), None, Some(main[0].object_id()), "b")
        .unwrap();

    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let view = View::all(&repo).unwrap();
    let Some(mut mounted) = try_mount(&repo, view, &mnt, &quiet()) else { return };

    let names = |p: &Path| -> BTreeSet<String> {
        fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    };
    assert_eq!(names(&mnt), ["branches", "commits"].map(String::from).into());
    assert_eq!(
        names(&mnt.join("branches")),
        ["feature", "main", "release"].map(String::from).into()
    );
    assert_eq!(names(&mnt.join("branches/feature")), ["x"].map(String::from).into());
    let all: BTreeSet<String> = main.iter().chain(&feature).map(|c| c.to_string()).collect();
    assert_eq!(names(&mnt.join("commits")), all, "every reachable commit, once");
    // Each branch shows its head's tree, with its head's time.
    assert_eq!(fs::read(mnt.join("branches/main/f")).unwrap(), b"main 2\n");
    assert_eq!(fs::read(mnt.join("branches/release/f")).unwrap(), b"main 0\n");
    assert_eq!(fs::read(mnt.join("branches/feature/x/f")).unwrap(), b"main 1\n");
    assert_eq!(fs::read(mnt.join("branches/feature/x/g")).unwrap(), b"feature 1\n");
    let time = |p: &Path| fs::symlink_metadata(p).unwrap().modified().unwrap();
    let at = |s: i64| UNIX_EPOCH + Duration::from_micros((TIME_US + s * 1_000_000) as u64);
    assert_eq!(time(&mnt.join("branches/feature/x/g")), at(11));
    // Each commit directory holds that commit's tree, with its time.
    for (i, c) in main.iter().enumerate() {
        let d = mnt.join("commits").join(c.to_string());
        assert_eq!(fs::read(d.join("f")).unwrap(), format!("main {i}\n").as_bytes());
        assert_eq!(time(&d.join("f")), at(i as i64));
        let tree = read::read_commit(repo.store().as_ref(), *c).unwrap().tree;
        assert_eq!(xattr_id(&d), Some(tree.to_string()));
    }
    let first_feature = mnt.join("commits").join(feature[0].to_string());
    assert_eq!(fs::read(first_feature.join("g")).unwrap(), b"feature 0\n");
    // Made-up directories: no id, read-only like the rest, and link counts.
    assert_eq!(xattr_id(&mnt.join("commits")), None);
    assert_eq!(fs::metadata(mnt.join("commits")).unwrap().nlink(), 2 + 5);
    assert_eq!(fs::metadata(&mnt).unwrap().nlink(), 2 + 2);
    let e = fs::create_dir(mnt.join("commits/new")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS));
    assert_eq!(fs::metadata(mnt.join("commits/0000")).unwrap_err().kind(), ErrorKind::NotFound);
    mounted.unmount().unwrap();
}

/// Offsets in the pack files where `needle` occurs.
fn find_in_packs(repo_dir: &Path, needle: &[u8]) -> Vec<(PathBuf, usize)> {
    let mut found = Vec::new();
    for entry in fs::read_dir(repo_dir.join("packs")).unwrap() {
        let p = entry.unwrap().path();
        let bytes = fs::read(&p).unwrap();
        for (i, w) in bytes.windows(needle.len()).enumerate() {
            if w == needle {
                found.push((p.clone(), i));
            }
        }
    }
    found
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = fs::read(file).unwrap();
    bytes[at] ^= 0x40;
    fs::write(file, bytes).unwrap();
}

#[test]
fn a_corrupt_object_fails_only_what_needs_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = open_repo(&repo_dir, Access::ReadWrite);
    let mut ws = WorkingSet::new(repo.store());
    // Random bytes are stored raw (zstd cannot shrink them): the record
    // holds them as they are, so they can be found in the pack.
    let victim = noise(1, 6000);
    ws.write(&path("a/victim.bin"), &victim).unwrap();
    ws.write(&path("a/fine.bin"), &noise(2, 6000)).unwrap();
    ws.write(&path("b/fine.bin"), &noise(3, 6000)).unwrap();
    ws.write(&path("c/inside"), &noise(4, 6000)).unwrap();
    let id = commit(&repo, &mut ws, "main", 0);
    let c_tree =
        match read::lookup(repo.store().as_ref(), ws.snapshot().tree_id().unwrap(), &path("c")) {
            Ok(Some(EntryKind::Dir(t))) => t,
            other => panic!("{other:?}"),
        };
    let c_tree_bytes = repo.store().get(&c_tree.object_id()).unwrap();
    drop((ws, repo));

    // Damage the victim's content and the tree of directory c.
    let hits = find_in_packs(&repo_dir, &victim);
    assert_eq!(hits.len(), 1, "the victim's bytes are in one record");
    flip_byte(&hits[0].0, hits[0].1 + 3000);
    let hits = find_in_packs(&repo_dir, &c_tree_bytes);
    assert_eq!(hits.len(), 1, "c's tree is in one record");
    flip_byte(&hits[0].0, hits[0].1 + c_tree_bytes.len() / 2);

    let repo = open_repo(&repo_dir, Access::ReadOnly);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let mut options = MountOptions::default();
    let sink = logged.clone();
    options.error_log = ErrorLog::Call(Arc::new(move |line: &str| {
        sink.lock().unwrap_or_else(PoisonError::into_inner).push(line.to_owned())
    }));
    let view = View::commit(repo.store().as_ref(), id).unwrap();
    let Some(mut mounted) = try_mount(&repo, view, &mnt, &options) else { return };

    let eio = |r: std::io::Result<Vec<u8>>| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(nix::libc::EIO));
    };
    // The file stats fine (its size is in its tree), but cannot be read.
    assert_eq!(fs::metadata(mnt.join("a/victim.bin")).unwrap().len(), 6000);
    eio(fs::read(mnt.join("a/victim.bin")));
    eio(fs::read(mnt.join("a/victim.bin")));
    // The damaged directory cannot be entered; listing its parent works.
    let e = fs::read_dir(mnt.join("c")).map(drop).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO));
    let root: BTreeSet<_> = fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(root.len(), 3);
    // Everything else reads fine.
    assert_eq!(fs::read(mnt.join("a/fine.bin")).unwrap(), noise(2, 6000));
    assert_eq!(fs::read(mnt.join("b/fine.bin")).unwrap(), noise(3, 6000));
    let lines = logged.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert!(lines.iter().any(|l| l.starts_with("/a/victim.bin: ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("/c: ")), "{lines:?}");
    mounted.unmount().unwrap();
}

/// The lines a mount logged.
type Logged = Arc<Mutex<Vec<String>>>;

/// Mounts the crafted repository `objects` (written byte by byte from
/// docs/format.md, not by the library) at commit `tip`, logging errors.
fn mount_crafted(
    dir: &Path,
    objects: &craft::Objects,
    tip: [u8; 32],
) -> Option<(Mounted, PathBuf, Logged)> {
    let repo_dir = dir.join("repo");
    objects.write_repo(&repo_dir, &tip);
    let repo = open_repo(&repo_dir, Access::ReadOnly);
    let mnt = dir.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let mut options = MountOptions::default();
    let sink = logged.clone();
    options.error_log = ErrorLog::Call(Arc::new(move |line: &str| {
        sink.lock().unwrap_or_else(PoisonError::into_inner).push(line.to_owned())
    }));
    let tip = CommitId::new(vst_cas::ObjectId::from_bytes(tip));
    let view = View::commit(repo.store().as_ref(), tip).unwrap();
    let mounted = try_mount(&repo, view, &mnt, &options)?;
    Some((mounted, mnt, logged))
}

/// Issue 16, item 12: a file entry whose recorded size disagrees with its
/// blob cannot be stat'ed or read (`EIO`), never served as a prefix or as
/// more bytes than recorded.
#[test]
fn a_file_whose_recorded_size_is_wrong_is_eio() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let mut objects = craft::Objects::default();
    let content = b"hello world\n";
    let blob = objects.put(content);
    let root = objects.tree(&[
        craft::raw::file(b"exact", &blob, 12, false),
        craft::raw::file(b"larger", &blob, 20, false),
        craft::raw::file(b"smaller", &blob, 5, false),
        craft::raw::file(b"zero", &blob, 0, false),
    ]);
    let tip = objects.commit(&root, "wrong sizes");
    let Some((mut mounted, mnt, logged)) = mount_crafted(dir.path(), &objects, tip) else { return };
    assert_eq!(fs::read(mnt.join("exact")).unwrap(), content);
    for name in ["larger", "smaller", "zero"] {
        let read = fs::read(mnt.join(name));
        assert_eq!(read.map_err(|e| e.raw_os_error()), Err(Some(nix::libc::EIO)), "{name}");
        let stat = fs::metadata(mnt.join(name)).map(|m| m.len());
        assert_eq!(stat.map_err(|e| e.raw_os_error()), Err(Some(nix::libc::EIO)), "{name}");
    }
    let lines = logged.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert!(
        lines.iter().any(|l| l.starts_with("/smaller: ") && l.contains("records 5")),
        "{lines:?}"
    );
    mounted.unmount().unwrap();
}

/// Issue 16, item 1: a directory whose tree holds `.vst` cannot be listed
/// (its tree does not decode); its siblings can.
#[test]
fn a_tree_holding_the_repository_directory_is_eio() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let mut objects = craft::Objects::default();
    let store_file = b"s3://attacker/loot\n1000000\n";
    let blob = objects.put(store_file);
    let dot_vst =
        objects.tree(&[craft::raw::file(b"store", &blob, store_file.len() as u64, false)]);
    let evil = objects.tree(&[craft::raw::dir(b".vst", &dot_vst)]);
    let fine = objects.tree(&[craft::raw::file(b"store", &blob, store_file.len() as u64, false)]);
    let root = objects.tree(&[craft::raw::dir(b"evil", &evil), craft::raw::dir(b"fine", &fine)]);
    let tip = objects.commit(&root, "a tree with .vst");
    let Some((mut mounted, mnt, _)) = mount_crafted(dir.path(), &objects, tip) else { return };
    let e = fs::read_dir(mnt.join("evil")).map(drop).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO));
    assert_eq!(
        fs::symlink_metadata(mnt.join("evil/.vst")).unwrap_err().raw_os_error(),
        Some(nix::libc::EIO)
    );
    assert_eq!(fs::read(mnt.join("fine/store")).unwrap(), store_file);
    mounted.unmount().unwrap();
}

/// The names of this process's threads that serve FUSE requests.
fn fuse_threads() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("fuser"))
        .collect()
}

/// Child processes of this process.
fn children() -> String {
    let mut out = String::new();
    for t in fs::read_dir("/proc/self/task").unwrap() {
        out += &fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default();
    }
    out
}

fn is_mounted(p: &Path) -> bool {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_owned());
    vst_fuse::mount_points().unwrap().contains(&p)
}

#[test]
fn unmounting_leaves_no_mount_thread_or_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new().unwrap();
    let repo = open_repo(&dir.path().join("repo"), Access::ReadWrite);
    let mut ws = WorkingSet::new(repo.store());
    ws.write(&path("f"), b"x").unwrap();
    let id = commit(&repo, &mut ws, "main", 0);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let view = || View::commit(repo.store().as_ref(), id).unwrap();
    assert!(fuse_threads().is_empty(), "no mount yet: {:?}", fuse_threads());

    // unmount(): reports, waits for the threads.
    let Some(mut mounted) = try_mount(&repo, view(), &mnt, &quiet()) else { return };
    assert!(is_mounted(&mnt));
    // A new thread names itself once it runs: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fuse_threads().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no thread serves the mount");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"x");
    // Busy: the kernel refuses, and the mount stays live.
    let cwd_holder = fs::File::open(mnt.join("f")).unwrap();
    let busy = mounted.unmount();
    assert!(busy.is_err(), "an open file keeps the mount: {busy:?}");
    assert!(is_mounted(&mnt) && !mounted.is_finished());
    drop(cwd_holder);
    mounted.unmount().unwrap();
    assert!(!is_mounted(&mnt));
    assert!(mounted.is_finished());
    assert!(fuse_threads().is_empty(), "threads left: {:?}", fuse_threads());
    assert_eq!(children(), "");

    // Drop: the same.
    let mounted = try_mount(&repo, view(), &mnt, &quiet()).unwrap();
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"x");
    drop(mounted);
    assert!(!is_mounted(&mnt));
    assert!(fuse_threads().is_empty(), "threads left: {:?}", fuse_threads());

    // Unmounted from outside (as `vst umount` does): wait() returns.
    let mounted = try_mount(&repo, view(), &mnt, &quiet()).unwrap();
    let out = std::process::Command::new("fusermount3").arg("-u").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    mounted.wait().unwrap();
    assert!(!is_mounted(&mnt));
    assert!(fuse_threads().is_empty(), "threads left: {:?}", fuse_threads());

    // Unmounted from outside and mounted again at once: the old mount's
    // end must not take the new mount with it.
    let old = try_mount(&repo, view(), &mnt, &quiet()).unwrap();
    let out = std::process::Command::new("fusermount3").arg("-u").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut new = try_mount(&repo, view(), &mnt, &quiet()).unwrap();
    old.wait().unwrap();
    assert!(is_mounted(&mnt), "the new mount survives the old one's end");
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"x");
    new.unmount().unwrap();
    assert!(!is_mounted(&mnt));

    // The foreground mount: serves in its thread until unmounted.
    let store = repo.store();
    let (at, v) = (mnt.clone(), view());
    let server = std::thread::spawn(move || vst_fuse::mount(store, v, &at, &quiet()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !is_mounted(&mnt) {
        assert!(std::time::Instant::now() < deadline, "the foreground mount never came up");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"x");
    let out = std::process::Command::new("fusermount3").arg("-u").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.join().unwrap().unwrap();
    assert!(!is_mounted(&mnt));
    assert!(fuse_threads().is_empty(), "threads left: {:?}", fuse_threads());
    assert_eq!(children(), "");
}
