//! The Python module `vst._vst` (re-exported as `vst`): the library's
//! repository, working set and work tree, over PyO3 with the stable ABI.
//!
//! Every call that hashes, reads or writes the store releases the GIL
//! (`Python::detach`), so threads run in parallel. The handles are frozen
//! Python objects whose mutable state sits behind a mutex: two threads
//! using one working set take turns, and never see "already borrowed".
//! Paths are `str` or `bytes`; paths come back as `str`, or as `bytes`
//! when they are not UTF-8.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString};
use vst::repo::{InitStore, REPO_DIR_NAME};
use vst::worktree::{CheckoutOptions, Empty, Force, ScanOptions};
use vst::{CommitId, CommitOptions, FileWrite, RepoPath, Stat};
use vst_cas::{Head, RefName};

#[path = "../../common.rs"]
mod common;

pyo3::create_exception!(
    vst,
    VstError,
    PyException,
    "An error of the vst library; the message is the library's."
);

/// The Python exception for a library (or revision) error.
fn err(e: impl std::error::Error + 'static) -> PyErr {
    VstError::new_err(common::message(&e))
}

/// The state behind `mutex`. A panic while it was held (reported to
/// Python as `PanicException`) may have left it half-changed: refused.
fn lock<T>(mutex: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    mutex
        .lock()
        .map_err(|_| VstError::new_err("this object is unusable: an earlier call on it panicked"))
}

/// A path in a tree, from a Python `str` or `bytes`.
struct PathArg(RepoPath);

impl<'a, 'py> FromPyObject<'a, 'py> for PathArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let bytes = path_bytes(&obj)?;
        RepoPath::try_from(bytes.as_slice()).map(PathArg).map_err(|e| {
            let path = String::from_utf8_lossy(&bytes);
            VstError::new_err(format!("invalid path {path:?}: {}", common::message(&e)))
        })
    }
}

/// The bytes of a `str` (UTF-8; lone surrogates as `os.fsencode` turns
/// them back into bytes) or `bytes` path or symlink target.
fn path_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return match s.to_cow() {
            Ok(s) => Ok(s.as_bytes().to_vec()),
            Err(_) => {
                let encoded = s.call_method1("encode", ("utf-8", "surrogateescape"))?;
                Ok(encoded.cast::<PyBytes>()?.as_bytes().to_vec())
            }
        };
    }
    Err(PyTypeError::new_err(format!("a path is str or bytes, not {}", obj.get_type().name()?)))
}

/// A path for Python: `str` if it is UTF-8, else `bytes`.
fn path_obj<'py>(py: Python<'py>, path: &[u8]) -> Bound<'py, PyAny> {
    match std::str::from_utf8(path) {
        Ok(s) => PyString::new(py, s).into_any(),
        Err(_) => PyBytes::new(py, path).into_any(),
    }
}

/// The paths of a `changed=` argument.
fn changed_paths(changed: Option<Vec<PathArg>>) -> Option<Vec<RepoPath>> {
    changed.map(|paths| paths.into_iter().map(|p| p.0).collect())
}

/// A repository on disk: a work tree's `.vst` directory.
///
/// Open one `Repo` per repository in a process and share it (it is
/// thread-safe): it holds the store open for writing.
#[pyclass(frozen, module = "vst")]
struct Repo {
    inner: vst::Repo,
    root: PathBuf,
}

#[pymethods]
impl Repo {
    /// Creates a repository in `path/.vst` (making `path` if missing),
    /// with `HEAD` on the unborn branch `main`.
    #[staticmethod]
    fn init(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let dir = path.join(REPO_DIR_NAME);
        let inner =
            py.detach(|| vst::Repo::init(&dir, &InitStore::Local, &|_| None)).map_err(err)?;
        Ok(Self { inner, root: path })
    }

    /// Opens the repository of the work tree at or above `path`.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let (inner, root) = py
            .detach(|| {
                let at = vst::Repo::discover(&path)?;
                Ok::<_, vst::Error>((vst::Repo::open(&at.repo_dir)?, at.root))
            })
            .map_err(err)?;
        Ok(Self { inner, root })
    }

    /// The work tree's root (the directory holding `.vst`).
    #[getter]
    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    /// The commit `HEAD` is at, as hex; `None` before the first commit.
    #[getter]
    fn head(&self) -> PyResult<Option<String>> {
        Ok(self.inner.head_commit().map_err(err)?.map(|id| id.to_string()))
    }

    /// Every branch and the commit it is at: `{name: hex id}`.
    fn branches<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, id) in self.inner.refs().list().map_err(err)? {
            dict.set_item(name.to_string(), id.to_string())?;
        }
        Ok(dict)
    }

    /// The commit `rev` names (`HEAD`, a branch, a commit id or a unique
    /// prefix of one, with an optional `~N`), as hex.
    fn resolve(&self, py: Python<'_>, rev: &str) -> PyResult<String> {
        Ok(py.detach(|| common::resolve(&self.inner, rev)).map_err(err)?.to_string())
    }

    /// A working set holding the commit `HEAD` is at, or with `branch`
    /// the one that branch is at (empty if it has none yet).
    #[pyo3(signature = (branch=None))]
    fn working_set(&self, py: Python<'_>, branch: Option<&str>) -> PyResult<WorkingSet> {
        let inner = py
            .detach(|| match branch {
                None => self.inner.working_set().map_err(common::RevError::from),
                Some(name) => {
                    let name = vst::Repo::branch(name)?;
                    let store = self.inner.store();
                    let at = self.inner.refs().get(&name).map_err(common::ref_err)?;
                    Ok(match at {
                        Some(id) => vst::WorkingSet::from_commit(store, CommitId::new(id))?,
                        None => vst::WorkingSet::new(store),
                    })
                }
            })
            .map_err(err)?;
        Ok(WorkingSet { inner: Mutex::new(inner) })
    }

    /// Commits `ws` and moves the current branch (or `branch`) from the
    /// commit `ws` descends from to the new one; returns its id as hex.
    /// Refused if the branch moved meanwhile (another writer).
    #[pyo3(signature = (ws, message="", author="", branch=None))]
    fn commit(
        &self,
        py: Python<'_>,
        ws: &Bound<'_, WorkingSet>,
        message: &str,
        author: &str,
        branch: Option<&str>,
    ) -> PyResult<String> {
        let branch: Option<RefName> = branch.map(vst::Repo::branch).transpose().map_err(err)?;
        let options = CommitOptions {
            author: author.to_owned(),
            message: message.to_owned(),
            ..Default::default()
        };
        let ws = ws.get();
        let id = py.detach(|| {
            let mut ws = lock(&ws.inner)?;
            match &branch {
                None => self.inner.commit(&mut ws, &options),
                Some(name) => self.inner.commit_on(&mut ws, name, &options),
            }
            .map_err(err)
        })?;
        Ok(id.to_string())
    }

    /// The content of the file at `path` in the commit `rev` names.
    fn read<'py>(
        &self,
        py: Python<'py>,
        rev: &str,
        path: PathArg,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = py
            .detach(|| {
                let id = common::resolve(&self.inner, rev)?;
                Ok::<_, common::RevError>(common::read_file(&self.inner, id, &path.0)?)
            })
            .map_err(err)?;
        Ok(PyBytes::new(py, &data))
    }

    /// The files and symlinks that differ from `rev_a` to `rev_b` (`None`:
    /// nothing, the empty tree), sorted: `[(path, status)]` with the
    /// CLI's status words `added`, `modified`, `deleted`, `type_changed`.
    fn diff<'py>(
        &self,
        py: Python<'py>,
        rev_a: Option<&str>,
        rev_b: Option<&str>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, &'static str)>> {
        let changes = py
            .detach(|| {
                let resolve =
                    |rev: Option<&str>| rev.map(|r| common::resolve(&self.inner, r)).transpose();
                let (a, b) = (resolve(rev_a)?, resolve(rev_b)?);
                Ok::<_, common::RevError>(common::diff(&self.inner, a, b)?)
            })
            .map_err(err)?;
        Ok(changes.into_iter().map(|(path, word)| (path_obj(py, path.as_bytes()), word)).collect())
    }

    fn __repr__(&self) -> String {
        format!("vst.Repo({:?})", self.root)
    }
}

/// A tree of files in memory, committed with `Repo.commit`. Content goes
/// into the store when it is written; a commit only hashes the
/// directories that changed.
#[pyclass(frozen, module = "vst")]
struct WorkingSet {
    inner: Mutex<vst::WorkingSet>,
}

#[pymethods]
impl WorkingSet {
    /// An empty working set over a store in memory, outside any
    /// repository: for computing blob, tree and commit ids (committed
    /// with `WorkingSet.commit`). A repository's working sets come from
    /// `Repo.working_set`.
    #[new]
    fn new() -> Self {
        let store = std::sync::Arc::new(vst_cas::MemStore::new());
        Self { inner: Mutex::new(vst::WorkingSet::new(store)) }
    }

    /// Commits into the working set's own store without moving any ref
    /// (`Repo.commit` also moves a branch); returns the commit id as hex.
    /// For an in-memory working set, the way to commit.
    #[pyo3(signature = (message="", author=""))]
    fn commit(&self, py: Python<'_>, message: &str, author: &str) -> PyResult<String> {
        let options = CommitOptions {
            author: author.to_owned(),
            message: message.to_owned(),
            ..Default::default()
        };
        let id = py.detach(|| vst::commit(&mut *lock(&self.inner)?, &options).map_err(err))?;
        Ok(id.to_string())
    }

    /// Writes a regular file (parents are created); returns its blob id,
    /// BLAKE3 of `data`, as hex.
    fn write(&self, py: Python<'_>, path: PathArg, data: PyBackedBytes) -> PyResult<String> {
        let id = py.detach(|| lock(&self.inner)?.write(&path.0, &data).map_err(err))?;
        Ok(id.to_string())
    }

    /// Writes every `(path, data)` of `files`, hashed as one batch (on all
    /// cores when it is large). On an error the files before the failing
    /// one stay written.
    fn write_many(&self, py: Python<'_>, files: &Bound<'_, PyAny>) -> PyResult<()> {
        let files: Vec<(PathArg, PyBackedBytes)> =
            files.try_iter()?.map(|f| f?.extract()).collect::<PyResult<_>>()?;
        py.detach(|| {
            let batch: Vec<FileWrite<'_>> = files
                .iter()
                .map(|(path, data)| FileWrite { path: &path.0, content: data })
                .collect();
            lock(&self.inner)?.write_batch(&batch).map_err(err)
        })
    }

    /// Removes what is at `path` (a directory with everything in it).
    fn remove(&self, py: Python<'_>, path: PathArg) -> PyResult<()> {
        py.detach(|| lock(&self.inner)?.remove(&path.0).map_err(err))
    }

    /// Makes `path` a symlink to `target` (`str` or `bytes`).
    fn symlink(&self, py: Python<'_>, path: PathArg, target: &Bound<'_, PyAny>) -> PyResult<()> {
        let target = path_bytes(target)?;
        py.detach(|| lock(&self.inner)?.symlink(&path.0, &target).map_err(err))
    }

    /// The content of the file at `path`.
    fn read<'py>(&self, py: Python<'py>, path: PathArg) -> PyResult<Bound<'py, PyBytes>> {
        let data = py.detach(|| lock(&self.inner)?.read(&path.0).map_err(err))?;
        Ok(PyBytes::new(py, &data))
    }

    /// A frozen copy of the current state, in O(1): later writes do not
    /// show in it.
    fn snapshot(&self) -> PyResult<Snapshot> {
        Ok(Snapshot { inner: lock(&self.inner)?.snapshot() })
    }

    /// The commit this working set descends from, as hex (`None`: none).
    #[getter]
    fn head(&self) -> PyResult<Option<String>> {
        Ok(lock(&self.inner)?.head().map(|id| id.to_string()))
    }
}

/// A frozen view of a working set (`WorkingSet.snapshot()`).
#[pyclass(frozen, module = "vst")]
struct Snapshot {
    inner: vst::Snapshot,
}

#[pymethods]
impl Snapshot {
    /// The content of the file at `path`.
    fn read<'py>(&self, py: Python<'py>, path: PathArg) -> PyResult<Bound<'py, PyBytes>> {
        let data = py.detach(|| self.inner.read(&path.0)).map_err(err)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Every entry, in tree order: `[(path, kind)]`, kind `file`,
    /// `symlink` or `dir`.
    fn walk<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyAny>, &'static str)> {
        let entries = py.detach(|| self.inner.walk());
        entries
            .into_iter()
            .map(|(path, stat)| {
                let kind = match stat {
                    Stat::File(_) => "file",
                    Stat::Symlink(_) => "symlink",
                    Stat::Dir(_) => "dir",
                };
                (path_obj(py, path.as_bytes()), kind)
            })
            .collect()
    }

    /// Whether anything is at `path`.
    fn __contains__(&self, path: PathArg) -> bool {
        self.inner.stat(&path.0).is_some()
    }
}

/// A work tree on disk: the files under `root`, with the repository in
/// `root/.vst`. `changed=` (a list of paths) makes a scan look only at
/// those paths and what is below them: a build tool that knows what it
/// wrote pays for that, not for the whole tree.
#[pyclass(frozen, module = "vst")]
struct WorkTree {
    inner: Mutex<vst::WorkTree>,
}

#[pymethods]
impl WorkTree {
    /// The work tree of `repo` at `root` (default: the repository's).
    #[new]
    #[pyo3(signature = (repo, root=None))]
    fn new(py: Python<'_>, repo: &Bound<'_, Repo>, root: Option<PathBuf>) -> PyResult<Self> {
        let repo = repo.get();
        let root = root.unwrap_or_else(|| repo.root.clone());
        let inner = py.detach(|| vst::WorkTree::open(repo.inner.clone(), &root)).map_err(err)?;
        Ok(Self { inner: Mutex::new(inner) })
    }

    /// What differs between the files and the commit they are at:
    /// `[(path, status)]`, sorted, with the CLI's status words.
    #[pyo3(signature = (changed=None))]
    fn status<'py>(
        &self,
        py: Python<'py>,
        changed: Option<Vec<PathArg>>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, &'static str)>> {
        let changed = changed_paths(changed);
        let deltas = py.detach(|| {
            let mut wt = lock(&self.inner)?;
            let options = ScanOptions { changed: changed.as_deref(), ..Default::default() };
            let status = wt.status(&options).map_err(err)?;
            // The refreshed stats make the next scan cheaper; a lost index
            // is only rebuilt, so failing to save is not the caller's error.
            let _ = wt.save();
            Ok::<_, PyErr>(status.changes)
        })?;
        Ok(deltas.iter().map(|d| (path_obj(py, d.path.as_bytes()), d.status())).collect())
    }

    /// Stores the files (content and trees) without committing; returns
    /// the tree's id as hex.
    #[pyo3(signature = (changed=None))]
    fn snapshot(&self, py: Python<'_>, changed: Option<Vec<PathArg>>) -> PyResult<String> {
        let changed = changed_paths(changed);
        let tree = py.detach(|| {
            let mut wt = lock(&self.inner)?;
            let options = ScanOptions { changed: changed.as_deref(), ..Default::default() };
            let outcome = wt.snapshot(&options).map_err(err)?;
            wt.save().map_err(err)?;
            Ok::<_, PyErr>(outcome.tree)
        })?;
        Ok(tree.to_string())
    }

    /// Snapshots and commits, moving the current branch; returns the new
    /// commit's id as hex, or `None` when nothing changed (unless
    /// `allow_empty`).
    #[pyo3(signature = (message, changed=None, author="", allow_empty=false))]
    fn commit(
        &self,
        py: Python<'_>,
        message: &str,
        changed: Option<Vec<PathArg>>,
        author: &str,
        allow_empty: bool,
    ) -> PyResult<Option<String>> {
        let changed = changed_paths(changed);
        let options = CommitOptions {
            author: author.to_owned(),
            message: message.to_owned(),
            ..Default::default()
        };
        let empty = if allow_empty { Empty::Allow } else { Empty::Skip };
        let id = py.detach(|| {
            let mut wt = lock(&self.inner)?;
            let scan = ScanOptions { changed: changed.as_deref(), ..Default::default() };
            let outcome = wt.commit(&options, empty, &scan).map_err(err)?;
            wt.save().map_err(err)?;
            Ok::<_, PyErr>(outcome.commit)
        })?;
        Ok(id.map(|id| id.to_string()))
    }

    /// Updates the files to the commit `rev` names, as `vst checkout`:
    /// a branch is switched to, another revision detaches `HEAD`. Local
    /// changes in the way refuse it, unless `force`.
    #[pyo3(signature = (rev, force=false))]
    fn checkout(&self, py: Python<'_>, rev: &str, force: bool) -> PyResult<()> {
        py.detach(|| {
            let mut wt = lock(&self.inner)?;
            let repo = wt.repo().clone();
            let id = common::resolve(&repo, rev).map_err(err)?;
            let head = head_after_checkout(&repo, rev, id).map_err(err)?;
            let options = CheckoutOptions {
                force: if force { Force::Yes } else { Force::No },
                head: Some(&head),
                ..Default::default()
            };
            wt.check_out(id, &options).map_err(err)?;
            wt.save().map_err(err)
        })
    }
}

/// What `HEAD` becomes when a work tree checks out `spec` (resolved to
/// `id`), as the CLI's `checkout` does: `HEAD` stays where it is, a branch
/// is switched to, anything else detaches `HEAD` at `id`.
fn head_after_checkout(
    repo: &vst::Repo,
    spec: &str,
    id: CommitId,
) -> Result<Head, common::RevError> {
    if spec.contains('~') {
        return Ok(Head::Detached(id.object_id()));
    }
    if spec == "HEAD" || spec == "@" {
        return repo.refs().head().map_err(common::ref_err);
    }
    if let Ok(name) = RefName::try_from(spec)
        && repo.refs().get(&name).map_err(common::ref_err)?.is_some()
    {
        return Ok(Head::Branch(name));
    }
    Ok(Head::Detached(id.object_id()))
}

/// The module.
#[pymodule]
fn _vst(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VstError", m.py().get_type::<VstError>())?;
    m.add_class::<Repo>()?;
    m.add_class::<WorkingSet>()?;
    m.add_class::<Snapshot>()?;
    m.add_class::<WorkTree>()?;
    Ok(())
}
