//! The exported functions and the types C sees.
//!
//! Conventions: every function returns a [`VstStatus`] and writes its
//! results through `out` pointers, only on success. A handle made by a
//! `vst_*_open`/`init` function is freed by its `vst_*_free` (NULL is
//! ignored). Paths are bytes with a length (they need not be UTF-8);
//! revisions, messages and file-system paths are NUL-terminated UTF-8.
//! A handle may be used from any thread, but not from two at once.
//!
//! The unsafe code is the dereferencing of the caller's pointers, in the
//! helpers below: each states what the caller promised.

use std::ffi::{CStr, c_char};

use vst::repo::{InitStore, REPO_DIR_NAME};
use vst::{CommitId, CommitOptions, FileWrite, RepoPath};

use crate::boundary::{Error, VstStatus, common, guard, with_last_error};

/// The size of a [`VstId`]: 64 hex digits and a NUL.
pub const VST_ID_SIZE: usize = 65;

/// An open repository.
pub struct VstRepo {
    repo: vst::Repo,
}

/// A tree of files in memory, committed with `vst_commit`.
pub struct VstWorkingSet {
    ws: vst::WorkingSet,
}

/// A frozen copy of a working set.
pub struct VstSnapshot {
    snapshot: vst::Snapshot,
}

/// The changes between two commits, read one at a time with
/// `vst_diff_next`.
pub struct VstDiff {
    changes: Vec<(RepoPath, &'static CStr)>,
    next: usize,
}

/// An object id: 64 hex digits and a NUL.
#[repr(C)]
pub struct VstId {
    /// The id, NUL-terminated.
    pub hex: [c_char; VST_ID_SIZE],
}

/// Bytes owned by vst, freed with `vst_buf_free`.
#[repr(C)]
pub struct VstBuf {
    /// The bytes (never NULL once filled in).
    pub data: *mut u8,
    /// How many.
    pub len: usize,
}

/// One file for `vst_working_set_write_many`.
#[repr(C)]
pub struct VstFile {
    /// The path's bytes (not NUL-terminated).
    pub path: *const u8,
    /// The path's length.
    pub path_len: usize,
    /// The content.
    pub data: *const u8,
    /// The content's length.
    pub data_len: usize,
}

/// One change of a diff. The pointers stay valid until `vst_diff_free`.
#[repr(C)]
pub struct VstChange {
    /// The path's bytes (not NUL-terminated).
    pub path: *const u8,
    /// The path's length.
    pub path_len: usize,
    /// `added`, `modified`, `deleted` or `type_changed` (the CLI's words),
    /// NUL-terminated.
    pub status: *const c_char,
}

// ---- The caller's pointers. Each helper's contract is the promise that
// every exported function documents in its `# Safety` section.

/// `len` bytes at `ptr` (NULL is allowed when `len` is 0).
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes, unchanged while `'a`
/// lasts.
unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::Null { what });
    }
    // SAFETY: not NULL, and the caller promised `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The path of `len` bytes at `ptr`, validated.
///
/// # Safety
/// As [`bytes`].
unsafe fn path(ptr: *const u8, len: usize) -> Result<RepoPath, Error> {
    // SAFETY: passed on from the caller.
    let raw = unsafe { bytes(ptr, len, "path") }?;
    RepoPath::try_from(raw)
        .map_err(|source| Error::Path { path: String::from_utf8_lossy(raw).into_owned(), source })
}

/// The NUL-terminated UTF-8 text at `ptr`; `None` if `ptr` is NULL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string, unchanged while
/// `'a` lasts.
unsafe fn opt_text<'a>(ptr: *const c_char, what: &'static str) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL, and the caller promised a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map(Some).map_err(|_| Error::NotUtf8 { what })
}

/// As [`opt_text`], NULL refused.
///
/// # Safety
/// As [`opt_text`].
unsafe fn text<'a>(ptr: *const c_char, what: &'static str) -> Result<&'a str, Error> {
    // SAFETY: passed on from the caller.
    unsafe { opt_text(ptr, what) }?.ok_or(Error::Null { what })
}

/// The handle at `ptr`, shared.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` made by this library, not
/// being changed by another thread.
unsafe fn handle<'a, T>(ptr: *const T, what: &'static str) -> Result<&'a T, Error> {
    // SAFETY: the caller promised a live, unaliased-for-writing handle.
    unsafe { ptr.as_ref() }.ok_or(Error::Null { what })
}

/// The handle at `ptr`, exclusive.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` made by this library, used
/// by no other thread during the call.
unsafe fn handle_mut<'a, T>(ptr: *mut T, what: &'static str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller promised a live handle nobody else uses now.
    unsafe { ptr.as_mut() }.ok_or(Error::Null { what })
}

/// Checks that the out pointer `out` is not NULL (before any work, so that
/// a call refused for it changes nothing).
fn out_ok<T>(out: *mut T, what: &'static str) -> Result<(), Error> {
    if out.is_null() { Err(Error::Null { what }) } else { Ok(()) }
}

/// Writes `value` through `out`, checked by [`out_ok`].
///
/// # Safety
/// `out` is valid for a write of a `T` (what it held is not dropped).
unsafe fn put<T>(out: *mut T, value: T) -> VstStatus {
    // SAFETY: the caller promised a writable `T`; `out_ok` checked NULL.
    unsafe { out.write(value) };
    VstStatus::Ok
}

/// Frees a handle made by [`Box::into_raw`].
///
/// # Safety
/// `ptr` is NULL or a handle of type `T` made by this library and not
/// freed yet; nobody uses it afterwards.
unsafe fn free<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: made by `Box::into_raw` and freed once, as promised.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

fn id_of(id: impl std::fmt::Display) -> VstId {
    let mut hex = [0; VST_ID_SIZE];
    let text = id.to_string();
    debug_assert_eq!(text.len() + 1, VST_ID_SIZE);
    // The last slot stays 0: the NUL.
    for (slot, b) in hex.iter_mut().zip(text.bytes()) {
        *slot = b as c_char;
    }
    VstId { hex }
}

fn buf_of(data: &[u8]) -> VstBuf {
    let boxed: Box<[u8]> = data.into();
    let len = boxed.len();
    VstBuf { data: Box::into_raw(boxed).cast::<u8>(), len }
}

fn resolve(repo: &vst::Repo, rev: Option<&str>) -> Result<Option<CommitId>, Error> {
    Ok(rev.map(|r| common::resolve(repo, r)).transpose()?)
}

// ---- The API.

/// The message of the last call on this thread that failed (an empty
/// string if none did). Valid until the next failing call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn vst_last_error() -> *const c_char {
    // The CString lives in a thread-local that is only replaced by the
    // next failure on this thread, as documented.
    with_last_error(|m| m.as_ptr())
}

/// Creates a repository in `path/.vst` (making `path` if missing), with
/// `HEAD` on the unborn branch `main`, and opens it into `*out`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_repo_init(path: *const c_char, out: *mut *mut VstRepo) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let root = unsafe { text(path, "path") }?;
        out_ok(out, "out")?;
        let dir = std::path::Path::new(root).join(REPO_DIR_NAME);
        let repo = vst::Repo::init(&dir, &InitStore::Local, &|_| None)?;
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, Box::into_raw(Box::new(VstRepo { repo }))) })
    })
}

/// Opens the repository of the work tree at or above `path` into `*out`,
/// for writing: one handle per repository at a time.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_repo_open(path: *const c_char, out: *mut *mut VstRepo) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let start = unsafe { text(path, "path") }?;
        out_ok(out, "out")?;
        let at = vst::Repo::discover(std::path::Path::new(start))?;
        let repo = vst::Repo::open(&at.repo_dir)?;
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, Box::into_raw(Box::new(VstRepo { repo }))) })
    })
}

/// Frees a repository handle (NULL is ignored).
///
/// # Safety
/// `repo` is NULL or a handle not freed yet, unused afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_repo_free(repo: *mut VstRepo) {
    // A panic in a drop is caught like any other.
    let _ = guard(|| {
        // SAFETY: as documented.
        unsafe { free(repo) };
        Ok(VstStatus::Ok)
    });
}

/// Writes into `*out` the commit `rev` names: `HEAD`, a branch, a commit
/// id or a unique prefix of one, optionally followed by `~N`.
///
/// # Safety
/// `repo` is a live handle; `rev` a NUL-terminated string; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_resolve(
    repo: *const VstRepo,
    rev: *const c_char,
    out: *mut VstId,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (repo, rev) = unsafe { (handle(repo, "repo")?, text(rev, "rev")?) };
        out_ok(out, "out")?;
        let id = common::resolve(&repo.repo, rev)?;
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, id_of(id)) })
    })
}

/// Opens into `*out` a working set holding the commit `HEAD` is at, or
/// with a non-NULL `branch` the one that branch is at (empty if it has
/// no commit yet).
///
/// # Safety
/// `repo` is a live handle; `branch` NULL or a NUL-terminated string;
/// `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_open(
    repo: *const VstRepo,
    branch: *const c_char,
    out: *mut *mut VstWorkingSet,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (repo, branch) = unsafe { (handle(repo, "repo")?, opt_text(branch, "branch")?) };
        out_ok(out, "out")?;
        let ws = match branch {
            None => repo.repo.working_set()?,
            Some(name) => {
                let name = vst::Repo::branch(name)?;
                let at = repo.repo.refs().get(&name).map_err(common::ref_err)?;
                match at {
                    Some(id) => vst::WorkingSet::from_commit(repo.repo.store(), CommitId::new(id))?,
                    None => vst::WorkingSet::new(repo.repo.store()),
                }
            }
        };
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, Box::into_raw(Box::new(VstWorkingSet { ws }))) })
    })
}

/// Frees a working set (NULL is ignored).
///
/// # Safety
/// `ws` is NULL or a handle not freed yet, unused afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_free(ws: *mut VstWorkingSet) {
    // A panic in a drop is caught like any other.
    let _ = guard(|| {
        // SAFETY: as documented.
        unsafe { free(ws) };
        Ok(VstStatus::Ok)
    });
}

/// Writes a regular file at `path` (parents are created); with a non-NULL
/// `out`, writes its blob id there (BLAKE3 of the content).
///
/// # Safety
/// `ws` is a live handle; `path` and `data` are valid for `path_len` and
/// `data_len` bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_write(
    ws: *mut VstWorkingSet,
    path: *const u8,
    path_len: usize,
    data: *const u8,
    data_len: usize,
    out: *mut VstId,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (ws, path, data) = unsafe {
            (handle_mut(ws, "ws")?, self::path(path, path_len)?, bytes(data, data_len, "data")?)
        };
        let id = ws.ws.write(&path, data)?;
        if out.is_null() {
            return Ok(VstStatus::Ok);
        }
        // SAFETY: `out` is writable when not NULL, as documented.
        Ok(unsafe { put(out, id_of(id)) })
    })
}

/// Writes `count` files, hashed as one batch (on all cores when it is
/// large). Every path is checked before anything is written; on a later
/// error the files before the failing one stay written.
///
/// # Safety
/// `ws` is a live handle; `files` is valid for `count` entries, each of
/// whose pointers is valid for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_write_many(
    ws: *mut VstWorkingSet,
    files: *const VstFile,
    count: usize,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let ws = unsafe { handle_mut(ws, "ws") }?;
        let files: &[VstFile] = if count == 0 {
            &[]
        } else if files.is_null() {
            return Err(Error::Null { what: "files" });
        } else {
            // SAFETY: not NULL, and the caller promised `count` entries.
            unsafe { std::slice::from_raw_parts(files, count) }
        };
        let mut paths = Vec::with_capacity(files.len());
        let mut contents = Vec::with_capacity(files.len());
        for f in files {
            // SAFETY: each entry's pointers are valid, as documented.
            let (path, content) =
                unsafe { (path(f.path, f.path_len)?, bytes(f.data, f.data_len, "data")?) };
            paths.push(path);
            contents.push(content);
        }
        let batch: Vec<FileWrite<'_>> = paths
            .iter()
            .zip(&contents)
            .map(|(path, content)| FileWrite { path, content })
            .collect();
        ws.ws.write_batch(&batch)?;
        Ok(VstStatus::Ok)
    })
}

/// Removes what is at `path` (a directory with everything in it).
///
/// # Safety
/// `ws` is a live handle; `path` is valid for `path_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_remove(
    ws: *mut VstWorkingSet,
    path: *const u8,
    path_len: usize,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (ws, path) = unsafe { (handle_mut(ws, "ws")?, self::path(path, path_len)?) };
        ws.ws.remove(&path)?;
        Ok(VstStatus::Ok)
    })
}

/// Reads the file at `path` of the working set into `*out` (free it with
/// `vst_buf_free`).
///
/// # Safety
/// `ws` is a live handle; `path` is valid for `path_len` bytes; `out` is
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_read(
    ws: *const VstWorkingSet,
    path: *const u8,
    path_len: usize,
    out: *mut VstBuf,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (ws, path) = unsafe { (handle(ws, "ws")?, self::path(path, path_len)?) };
        out_ok(out, "out")?;
        let data = ws.ws.read(&path)?;
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, buf_of(&data)) })
    })
}

/// Takes a frozen copy of the working set into `*out`, in O(1): later
/// writes do not show in it.
///
/// # Safety
/// `ws` is a live handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_working_set_snapshot(
    ws: *const VstWorkingSet,
    out: *mut *mut VstSnapshot,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let ws = unsafe { handle(ws, "ws") }?;
        out_ok(out, "out")?;
        let snapshot = ws.ws.snapshot();
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, Box::into_raw(Box::new(VstSnapshot { snapshot }))) })
    })
}

/// Reads the file at `path` of a snapshot into `*out` (free it with
/// `vst_buf_free`).
///
/// # Safety
/// `snapshot` is a live handle; `path` is valid for `path_len` bytes;
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_snapshot_read(
    snapshot: *const VstSnapshot,
    path: *const u8,
    path_len: usize,
    out: *mut VstBuf,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (snapshot, path) =
            unsafe { (handle(snapshot, "snapshot")?, self::path(path, path_len)?) };
        out_ok(out, "out")?;
        let data = snapshot.snapshot.read(&path)?;
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, buf_of(&data)) })
    })
}

/// Frees a snapshot (NULL is ignored).
///
/// # Safety
/// `snapshot` is NULL or a handle not freed yet, unused afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_snapshot_free(snapshot: *mut VstSnapshot) {
    // A panic in a drop is caught like any other.
    let _ = guard(|| {
        // SAFETY: as documented.
        unsafe { free(snapshot) };
        Ok(VstStatus::Ok)
    });
}

/// Commits `ws` with `message`, moving the current branch (or, with a
/// non-NULL `branch`, that branch) from the commit `ws` descends from to
/// the new one, whose id goes into `*out`. `VST_STATUS_CONFLICT` if the
/// branch moved meanwhile: nothing is published.
///
/// # Safety
/// `repo` and `ws` are live handles; `message` is a NUL-terminated
/// string; `branch` NULL or one; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_commit(
    repo: *const VstRepo,
    ws: *mut VstWorkingSet,
    message: *const c_char,
    branch: *const c_char,
    out: *mut VstId,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (repo, ws, message, branch) = unsafe {
            (
                handle(repo, "repo")?,
                handle_mut(ws, "ws")?,
                text(message, "message")?,
                opt_text(branch, "branch")?,
            )
        };
        out_ok(out, "out")?;
        let options = CommitOptions { message: message.to_owned(), ..Default::default() };
        let id = match branch {
            None => repo.repo.commit(&mut ws.ws, &options)?,
            Some(name) => repo.repo.commit_on(&mut ws.ws, &vst::Repo::branch(name)?, &options)?,
        };
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, id_of(id)) })
    })
}

/// Reads the file at `path` in the commit `rev` names into `*out` (free
/// it with `vst_buf_free`).
///
/// # Safety
/// `repo` is a live handle; `rev` a NUL-terminated string; `path` valid
/// for `path_len` bytes; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_read(
    repo: *const VstRepo,
    rev: *const c_char,
    path: *const u8,
    path_len: usize,
    out: *mut VstBuf,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (repo, rev, path) =
            unsafe { (handle(repo, "repo")?, text(rev, "rev")?, self::path(path, path_len)?) };
        out_ok(out, "out")?;
        let id = common::resolve(&repo.repo, rev)?;
        let data = common::read_file(&repo.repo, id, &path)?;
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, buf_of(&data)) })
    })
}

/// Frees bytes vst returned (a zeroed `VstBuf` is ignored).
///
/// # Safety
/// `buf` was filled in by vst and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_buf_free(buf: VstBuf) {
    if buf.data.is_null() {
        return;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(buf.data, buf.len);
    // SAFETY: `buf_of` made it from a `Box<[u8]>` of this length, and it
    // is freed once, as documented.
    drop(unsafe { Box::from_raw(slice) });
}

/// Lists into `*out` the files and symlinks that differ from `rev_a` to
/// `rev_b` (NULL: the empty tree), sorted by path, as `vst diff` does;
/// read them with `vst_diff_next`, free with `vst_diff_free`.
///
/// # Safety
/// `repo` is a live handle; `rev_a` and `rev_b` are NULL or
/// NUL-terminated strings; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_diff(
    repo: *const VstRepo,
    rev_a: *const c_char,
    rev_b: *const c_char,
    out: *mut *mut VstDiff,
) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let (repo, a, b) = unsafe {
            (handle(repo, "repo")?, opt_text(rev_a, "rev_a")?, opt_text(rev_b, "rev_b")?)
        };
        out_ok(out, "out")?;
        let (a, b) = (resolve(&repo.repo, a)?, resolve(&repo.repo, b)?);
        let changes = common::diff(&repo.repo, a, b)?
            .into_iter()
            .map(|(path, word)| (path, status_cstr(word)))
            .collect();
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, Box::into_raw(Box::new(VstDiff { changes, next: 0 }))) })
    })
}

/// The NUL-terminated form of a status word.
fn status_cstr(word: &str) -> &'static CStr {
    match word {
        "added" => c"added",
        "deleted" => c"deleted",
        "modified" => c"modified",
        _ => c"type_changed",
    }
}

/// Writes the next change into `*out`: `VST_STATUS_OK`, or
/// `VST_STATUS_END` when there are no more (`*out` untouched).
///
/// # Safety
/// `diff` is a live handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_diff_next(diff: *mut VstDiff, out: *mut VstChange) -> VstStatus {
    guard(|| {
        // SAFETY: as documented.
        let diff = unsafe { handle_mut(diff, "diff") }?;
        out_ok(out, "out")?;
        let Some((path, status)) = diff.changes.get(diff.next) else {
            return Ok(VstStatus::End);
        };
        diff.next += 1;
        let change = VstChange {
            path: path.as_bytes().as_ptr(),
            path_len: path.as_bytes().len(),
            status: status.as_ptr(),
        };
        // SAFETY: `out` is writable, as documented.
        Ok(unsafe { put(out, change) })
    })
}

/// Frees a diff (NULL is ignored); the paths it gave out go with it.
///
/// # Safety
/// `diff` is NULL or a handle not freed yet, unused afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vst_diff_free(diff: *mut VstDiff) {
    // A panic in a drop is caught like any other.
    let _ = guard(|| {
        // SAFETY: as documented.
        unsafe { free(diff) };
        Ok(VstStatus::Ok)
    });
}
