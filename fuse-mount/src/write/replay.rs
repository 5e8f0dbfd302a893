//! Where a writable mount starts: the journal replayed onto its base,
//! the start refused or the changes saved when they are on another
//! commit, and the compact journal written for the new mount.

use super::*;

/// Why a writable mount could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The mount's state directory or journal could not be read or written.
    #[error("mount state in {}", dir.display())]
    State {
        /// `.vst/mount`.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The repository could not be read.
    #[error("reading the repository")]
    Repo {
        /// Why.
        #[source]
        source: vst::Error,
    },
    /// The last writable mount left uncommitted changes on top of another
    /// commit than the one to mount (the branch moved since, or another
    /// was asked for): mounting would hide them, and a commit in the mount
    /// could not move the branch. Nothing was changed.
    #[error(
        "the last writable mount of this repository left {changes} uncommitted changes ({}) on top of {}, not on {}, the commit to mount",
        show_paths(paths, *changes),
        show(*base),
        show(*wanted)
    )]
    Uncommitted {
        /// The commit the changes are on.
        base: Option<CommitId>,
        /// The commit to mount.
        wanted: Option<CommitId>,
        /// How many paths they change.
        changes: usize,
        /// The first of those paths (at most 10),
        /// in tree order.
        paths: Vec<RepoPath>,
    },
    /// The uncommitted changes could not be saved on a new branch.
    #[error("cannot save the uncommitted changes on a new branch {branch}")]
    Save {
        /// The branch asked for.
        branch: RefName,
        /// Why (most often: it exists). Boxed: it would make every
        /// mount error as large.
        #[source]
        source: Box<vst_cas::RefError>,
    },
    /// `HEAD` could not be moved to what the mount starts at.
    #[error("cannot point HEAD at {head:?}")]
    Head {
        /// What it was to name.
        head: Head,
        /// Why. Boxed: it would make every mount error as large.
        #[source]
        source: Box<vst_cas::RefError>,
    },
}

/// At most this many of the uncommitted paths a refused mount names.
const UNCOMMITTED_SHOWN_MAX: usize = 10;

/// `paths`, the first of `all`, for a message.
fn show_paths(paths: &[RepoPath], all: usize) -> String {
    let mut shown = paths.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if all > paths.len() {
        shown.push_str(&format!(" and {} more", all - paths.len()));
    }
    shown
}

/// A commit, or the empty tree, for a message.
fn show(commit: Option<CommitId>) -> String {
    commit.map_or_else(|| "an empty tree".to_owned(), |c| format!("commit {c}"))
}

/// Where a writable mount starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The commit whose tree to mount (`None`: the empty tree of a
    /// repository without a commit).
    pub commit: Option<CommitId>,
    /// What to do with the uncommitted changes the last writable mount
    /// left, if it left any.
    pub left: Left,
    /// What `HEAD` names once mounted (a commit in the mount moves it);
    /// `None` leaves it as it is, which must then name `commit`.
    pub head: Option<Head>,
}

/// What a writable mount does with the uncommitted changes the last one
/// left. Changes on `Start::commit` are resumed unless discarded; none is
/// ever dropped without [`Left::Discard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// Resume them if they are on the commit to mount, else refuse
    /// ([`StartError::Uncommitted`]).
    Resume,
    /// Drop them.
    Discard,
    /// Resume them if they are on the commit to mount, else commit them
    /// (parent: the commit they are on) on the new branch `branch`, and
    /// start clean ([`WritableMount::saved`](crate::WritableMount::saved)
    /// says so).
    SaveAs {
        /// The new branch.
        branch: RefName,
        /// The saved commit's author.
        author: String,
    },
}

/// Uncommitted changes a mount saved on a new branch ([`Left::SaveAs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The new branch.
    pub branch: RefName,
    /// The commit it names: the changes, on top of `base`.
    pub commit: CommitId,
    /// The commit the changes were made on.
    pub base: Option<CommitId>,
}

/// Applies one journal record to `ws` (replay). A record that cannot be
/// applied is reported through `log` and skipped: the rest still counts.
fn replay(ws: &mut WorkingSet, record: &Record, state_dir: &Path, log: &dyn Fn(String)) {
    let store = ws.store().clone();
    let result: Result<(), String> = (|| {
        let path_of = |p: &[u8]| repo_path(p).ok_or_else(|| "an invalid path".to_owned());
        match record {
            Record::Base { commit } => {
                *ws = match commit {
                    Some(c) => {
                        WorkingSet::from_commit(store, CommitId::new(ObjectId::from_bytes(*c)))
                            .map_err(|e| e.to_string())?
                    }
                    None => WorkingSet::new(store),
                };
                Ok(())
            }
            Record::File { path, id, size, executable } => {
                let id = BlobId::new(ObjectId::from_bytes(*id));
                let path = path_of(path)?;
                if !store.contains(&id.object_id()).map_err(|e| e.to_string())? {
                    // Its blob was lost with the store's buffer: the file was
                    // not fsynced since.
                    let _ = ws.remove(&path);
                    return Err(format!("{path}: content {id} is not in the store; dropped"));
                }
                let entry = FileEntry { id, size: *size, executable: *executable };
                ws.put_file(&path, entry).map_err(|e| e.to_string())
            }
            Record::Overlay { path, overlay, executable } => {
                let path = path_of(path)?;
                let file = overlay_dir(state_dir).join(overlay.to_string());
                let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
                let open = File::open(&file).map_err(|e| shown(&e))?;
                let size = open.metadata().map_err(|e| shown(&e))?.len();
                let id = put_content(store.as_ref(), &open, size).map_err(|e| shown(&e))?;
                let entry = FileEntry { id, size, executable: *executable };
                ws.put_file(&path, entry).map_err(|e| e.to_string())
            }
            Record::Symlink { path, target } => {
                ws.symlink(&path_of(path)?, target).map_err(|e| e.to_string())
            }
            Record::Mkdir { path } => ws.create_dir_all(&path_of(path)?).map_err(|e| e.to_string()),
            Record::Remove { path } => match ws.remove(&path_of(path)?) {
                Ok(()) | Err(vst::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Record::Rename { from, to } => {
                ws.rename(&path_of(from)?, &path_of(to)?).map_err(|e| e.to_string())
            }
            Record::Executable { path, executable } => {
                ws.set_executable(&path_of(path)?, *executable).map_err(|e| e.to_string())
            }
        }
    })();
    if let Err(e) = result {
        log(format!("journal replay: {record:?}: {e}"));
    }
}

/// The records that rebuild `changes` (from a diff of the base tree to the
/// current one) on top of the base.
pub(super) fn records_of(changes: &[Change]) -> Vec<Record> {
    let mut out = Vec::new();
    for c in changes {
        let path = path_bytes(&c.path);
        let kind_changed = matches!((&c.old, &c.new), (Some(a), Some(b))
            if std::mem::discriminant(a) != std::mem::discriminant(b));
        if kind_changed || c.new.is_none() {
            out.push(Record::Remove { path: path.clone() });
        }
        match &c.new {
            None => {}
            Some(EntryKind::File(f)) => out.push(Record::File {
                path,
                id: *f.id.as_bytes(),
                size: f.size,
                executable: f.executable,
            }),
            Some(EntryKind::Dir(_)) => out.push(Record::Mkdir { path }),
            Some(EntryKind::Symlink(t)) => {
                out.push(Record::Symlink { path, target: t.as_bytes().to_vec() })
            }
        }
    }
    out
}

/// The tree id of `commit` (`None` for no commit).
pub(super) fn tree_of(store: &dyn Store, commit: Option<CommitId>) -> vst::Result<Option<TreeId>> {
    commit.map(|c| read::read_commit(store, c).map(|c| c.tree)).transpose()
}

/// Commits `tree` (stored, with everything below it) with `base` as its
/// parent on the new branch `branch`, once the store is durable: where a
/// mount keeps the uncommitted changes the last one left on another commit.
/// The branch's reflog records it.
fn save_on_branch(
    repo: &Repo,
    tree: TreeId,
    base: Option<CommitId>,
    branch: &RefName,
    author: &str,
) -> Result<CommitId, StartError> {
    let repo_err = |source| StartError::Repo { source };
    let commit = vst::Commit {
        tree,
        parents: base.into_iter().collect(),
        author: author.to_owned(),
        time: vst::Timestamp::now(),
        message: format!(
            "uncommitted changes a writable mount left on {}, saved at a remount",
            show(base)
        ),
    };
    let bytes = commit.encode().map_err(|e| repo_err(e.into()))?;
    let id = CommitId::of(&bytes);
    repo.store().put(id.object_id(), &bytes).map_err(|e| repo_err(e.into()))?;
    let store = repo.store();
    let durable = || store.sync();
    repo.refs()
        .update_once_durable(
            branch,
            None,
            Some(id.object_id()),
            "mount: save uncommitted changes",
            &durable,
        )
        .map_err(|source| StartError::Save { branch: branch.clone(), source: Box::new(source) })?;
    Ok(id)
}

/// Deletes every overlay file.
pub(super) fn remove_overlays(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    Ok(())
}

impl Shared {
    /// Opens the mount state of `repo`: resumes the journal in
    /// `.vst/mount/` (the uncommitted tree of the last mount) if it holds
    /// changes and `start` allows, else starts at `start`'s commit. Then
    /// writes a compact journal (the differences from the base, every blob
    /// synced first) and deletes the overlays, which it has put into the
    /// store.
    pub(crate) fn open(
        repo: Repo,
        start: &Start,
        error_log: ErrorLog,
        ttl: Duration,
    ) -> Result<Self, StartError> {
        let repo_dir = repo.dir().canonicalize().unwrap_or_else(|_| repo.dir().to_owned());
        let state_dir = repo_dir.join("mount");
        let state_err = |source| StartError::State { dir: state_dir.clone(), source };
        let repo_err = |source| StartError::Repo { source };
        std::fs::create_dir_all(overlay_dir(&state_dir)).map_err(state_err)?;
        let store = repo.store();
        let empty = BlobId::of(b"");
        store.put(empty.object_id(), b"").map_err(|e| repo_err(e.into()))?;

        let log = |m: String| error_log.write(&m);
        let journal_file = journal_path(&state_dir);
        let found = match &start.left {
            Left::Discard => None,
            _ => journal::read(&journal_file).map_err(state_err)?,
        };
        let at = |commit: Option<CommitId>| match commit {
            Some(c) => WorkingSet::from_commit(store.clone(), c).map_err(repo_err),
            None => Ok(WorkingSet::new(store.clone())),
        };
        // The journal starts with its own base.
        let resumed = found.is_some();
        let mut ws = if resumed { WorkingSet::new(store.clone()) } else { at(start.commit)? };
        if let Some(found) = found {
            if found.torn {
                log(format!(
                    "{}: cut a torn tail after {} bytes (not fsynced)",
                    journal_file.display(),
                    found.valid_len
                ));
            }
            for record in &found.records {
                replay(&mut ws, record, &state_dir, &log);
            }
        }
        let tree = write_tree(&mut ws, Durability::None).map_err(repo_err)?;
        // A commit through the mount moves the ref before the journal's new
        // base is durable: if the ref's commit has exactly this tree, the
        // crash came in between, and that commit is the base.
        if let Ok(Some(head)) = repo.head_commit()
            && Some(head) != ws.head()
            && tree_of(store.as_ref(), Some(head)).ok() == Some(Some(tree))
        {
            ws.set_head(Some(head));
        }
        let mut base_tree = tree_of(store.as_ref(), ws.head()).map_err(repo_err)?;
        let mut changes = diff_trees(store.as_ref(), base_tree, Some(tree)).map_err(repo_err)?;
        let mut saved = None;
        if resumed && ws.head() != start.commit {
            // Architecture invariant: uncommitted changes are never dropped
            // without `Left::Discard`. Resuming them on their old base would
            // hide what the branch gained meanwhile, and a commit in the
            // mount could not move it; starting where asked would lose them.
            if !changes.is_empty() {
                let base = ws.head();
                match &start.left {
                    Left::SaveAs { branch, author } => {
                        let commit = save_on_branch(&repo, tree, base, branch, author)?;
                        saved = Some(Saved { branch: branch.clone(), commit, base });
                    }
                    _ => {
                        return Err(StartError::Uncommitted {
                            base,
                            wanted: start.commit,
                            changes: changes.len(),
                            paths: changes
                                .iter()
                                .take(UNCOMMITTED_SHOWN_MAX)
                                .map(|c| c.path.clone())
                                .collect(),
                        });
                    }
                }
            }
            // Nothing uncommitted left to keep: start where asked (the
            // branch may have moved while nothing was mounted).
            ws = at(start.commit)?;
            base_tree = tree_of(store.as_ref(), ws.head()).map_err(repo_err)?;
            changes.clear();
        }
        store.sync().map_err(|e| repo_err(e.into()))?;
        let mut records = vec![Record::Base { commit: ws.head().map(|c| *c.as_bytes()) }];
        records.extend(records_of(&changes));
        let journal = Journal::create(&journal_file, &records).map_err(state_err)?;
        remove_overlays(&overlay_dir(&state_dir)).map_err(state_err)?;

        let base_time = match ws.head() {
            Some(c) => read::read_commit(store.as_ref(), c)
                .map(|c| crate::kernel::system_time(c.time))
                .map_err(repo_err)?,
            None => now(),
        };
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let root = Node {
            parent: ROOT,
            name: None,
            links: Vec::new(),
            lookups: 0,
            kind: Kind::Dir(None),
            meta: Meta {
                perm: 0o755,
                uid,
                gid,
                atime: base_time,
                mtime: base_time,
                ctime: base_time,
            },
        };
        let inner = Inner {
            ws,
            base_tree,
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            next_overlay: 1,
            next_fh: 1,
            handles: HashMap::new(),
            dirty: BTreeSet::new(),
            closed: BTreeSet::new(),
            specials: BTreeSet::new(),
            settler_stop: false,
            settler_idle: false,
            last_change: Instant::now(),
            changes: 0,
            store_quiet: STORE_QUIET_MIN,
            journal,
            journal_failed: false,
            retired: Vec::new(),
            trash: Vec::new(),
            base_time,
        };
        Ok(Self {
            inner: Mutex::new(inner),
            listings: Mutex::new(HashMap::new()),
            last_listing: AtomicU64::new(0),
            settle_wake: Condvar::new(),
            windows: Windows::default(),
            store,
            repo,
            state_dir,
            repo_dir,
            notifier: OnceLock::new(),
            error_log,
            ttl,
            uid,
            gid,
            saved,
        })
    }

    /// Points `HEAD` at `head` unless it names it already: where a mount
    /// of another commit than `HEAD`'s puts it, so that a commit in the
    /// mount moves it (and no branch, if it is a detached commit).
    pub(crate) fn point_head(&self, head: &Head) -> Result<(), StartError> {
        let err = |source| StartError::Head { head: head.clone(), source: Box::new(source) };
        if self.repo.refs().head().map_err(err)? != *head {
            self.repo.refs().set_head(head).map_err(err)?;
        }
        Ok(())
    }
}
