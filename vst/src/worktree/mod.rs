//! The work tree on disk: a directory of files with its repository in
//! `.vst/`, snapshotted, committed and checked out by the library, so that
//! a build tool can link it (the CLI is a thin layer over this module).
//!
//! - [`index`]: the index file (`.vst/worktree`): the tree the files are
//!   at, with each file's stat when it was hashed.
//! - [`scan`]: the comparison of the disk with the index, of everything or
//!   of the paths a caller says changed, with `.vstignore` and the racy
//!   timestamp rule.
//! - [`watch`]: an inotify watcher that keeps the paths changed since a
//!   token; a work tree that watches ([`WorkTree::watch`]) looks at those
//!   only, and at everything when the watcher may have missed something.
//! - [`WorkTree`]: status, snapshot, commit, check out and reset, over one
//!   update rule ([`WorkTree::check_out`]) that `checkout`, `switch` and
//!   `pull` share.
//!
//! A build tool that knows which outputs it wrote passes them as
//! [`ScanOptions::changed`] and pays O(changes): only those paths (and what
//! is below them) are looked at. What the list omits is not looked at, so
//! a change it misses is not seen until a full scan; a path it names that
//! did not change costs a `lstat`, never a wrong answer for that path. An
//! ignore file in the list makes its whole directory looked at (it changes
//! what is ignored there).

pub mod index;
pub mod scan;
pub mod watch;

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use vst_cas::{Head, Store};

use crate::checkout::{UpdateOptions, Written};
use crate::error::{Error, Result};
use crate::read::read_commit;
use crate::repo::{Location, Repo};
use crate::{CheckoutStats, CommitId, CommitOptions, EntryKind, RepoPath, Tree, TreeId};

use index::{Index, IndexDir, IndexNode};
pub use scan::{Delta, DiskStat, Found, IGNORE_FILE};

/// What a long operation reports as it goes. The library never prints:
/// the CLI turns these into a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent {
    /// `done` of `total` files to read have been read and hashed.
    Hashed {
        /// Files hashed so far.
        done: u64,
        /// Files to hash.
        total: u64,
    },
    /// `done` of `total` files to write have been written.
    Written {
        /// Files written so far.
        done: u64,
        /// Files to write.
        total: u64,
    },
}

/// A progress sink; called from several threads.
pub type Progress<'a> = &'a (dyn Fn(ProgressEvent) + Sync);

/// How to scan.
#[derive(Clone, Copy, Default)]
pub struct ScanOptions<'a> {
    /// Only these paths (files or directories, with everything below
    /// them) are looked at; `None`: the whole tree. See the module docs.
    pub changed: Option<&'a [RepoPath]>,
    /// Where to report progress.
    pub progress: Option<Progress<'a>>,
    /// Look at the whole tree even when a watcher runs (with `changed`
    /// `None`).
    pub full: bool,
    /// A file the index does not have (a new file) larger than this many
    /// bytes is left out: not read, not stored, not part of a snapshot,
    /// and listed in the outcome's `too_large` (a guard against a stray
    /// disk image or core dump going into history). A file already
    /// tracked is never left out. `None`: no limit.
    pub new_file_len_max: Option<u64>,
}

/// What a scan looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looked {
    /// The whole tree; with a watcher running, why it had to.
    Everything(Option<watch::FullScan>),
    /// This many paths: the caller's, or those the watcher saw change.
    Paths(usize),
}

/// Whether an update may overwrite local changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Force {
    /// Refuse when a local change or an untracked or ignored file is in
    /// the way ([`Error::Conflicts`]).
    #[default]
    No,
    /// Overwrite them.
    Yes,
}

/// How to check out.
#[derive(Clone, Copy, Default)]
pub struct CheckoutOptions<'a> {
    /// Whether local changes in the way are overwritten.
    pub force: Force,
    /// What `HEAD` becomes once the files are in place; `None` leaves it.
    pub head: Option<&'a Head>,
    /// Where to report progress.
    pub progress: Option<Progress<'a>>,
    /// Set (by a signal handler, say) to stop at the next safe point: the
    /// update then fails with [`Error::Interrupted`] and the next one
    /// finishes it.
    pub interrupt: Option<&'a AtomicBool>,
}

/// A commit the work tree is at, for messages (`None`: no commit yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCommit(pub Option<CommitId>);

impl std::fmt::Display for AtCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{:.12}", id.to_string()),
            None => f.write_str("no commit"),
        }
    }
}

/// Up to five paths, for an error message.
pub(crate) fn shown(paths: &[RepoPath]) -> String {
    paths.iter().take(5).map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

/// What differs between the work tree and the commit its files are at
/// (`HEAD`'s, unless another process moved the branch: see
/// [`WorkTree::at`]).
#[derive(Debug, Clone)]
pub struct Status {
    /// Every path that differs, sorted; a directory that appeared or went
    /// away comes with everything below it.
    pub changes: Vec<Delta>,
    /// Paths that cannot be stored (sockets, FIFOs, devices), relative to
    /// the root.
    pub skipped: Vec<PathBuf>,
    /// New files left out for their size (see
    /// [`ScanOptions::new_file_len_max`]), with their sizes.
    pub too_large: Vec<(RepoPath, u64)>,
    /// Files read and hashed because their stat did not vouch for them.
    pub hashed: usize,
    /// Where an interrupted checkout was going, if one was.
    pub interrupted: Option<CommitId>,
    /// What the scan looked at.
    pub looked: Looked,
}

/// What a snapshot made.
#[derive(Debug, Clone)]
pub struct SnapshotOutcome {
    /// The tree of the work tree, stored with everything below it.
    pub tree: TreeId,
    /// What differed from the previous snapshot (or `HEAD`).
    pub changes: Vec<Delta>,
    /// Paths that cannot be stored, relative to the root.
    pub skipped: Vec<PathBuf>,
    /// New files left out for their size, with their sizes.
    pub too_large: Vec<(RepoPath, u64)>,
    /// Files read and hashed.
    pub hashed: usize,
    /// What the scan looked at.
    pub looked: Looked,
}

/// What a commit made.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    /// The new commit; `None` if nothing changed and the options did not
    /// allow an empty commit.
    pub commit: Option<CommitId>,
    /// The snapshot it committed.
    pub snapshot: SnapshotOutcome,
}

/// Whether a commit is made when nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Empty {
    /// No commit; [`CommitOutcome::commit`] is `None`.
    #[default]
    Skip,
    /// Commit anyway.
    Allow,
}

/// The file that records a checkout under way: the tree the disk was at
/// and the commit it is going to (two hex ids on a line). Written before
/// the first file is touched, removed once the index records the target.
const CHECKOUT_MARKER: &str = "checkout";

/// Where a checkout writes files before renaming them into place (in the
/// repository directory, so on the work tree's filesystem, and never seen
/// by a scan).
const CHECKOUT_TMP_DIR: &str = "tmp";

/// A work tree: its root directory, its repository and its index.
pub struct WorkTree {
    repo: Repo,
    root: PathBuf,
    index: Index,
    /// `HEAD` when the work tree was opened (or last moved by it).
    head: Option<CommitId>,
    /// The watcher, when the work tree watches.
    watching: Option<Watching>,
}

/// A running watcher and what the index knows relative to it.
struct Watching {
    watcher: watch::Watcher,
    /// The watcher's answer the index is up to date with: at that point
    /// the disk was as the index says except at `dirty`. `None`: nothing
    /// yet (the next scan looks at everything).
    token: Option<watch::WatchToken>,
    /// Where the disk differed from the index at `token`.
    dirty: Vec<RepoPath>,
}

/// What one scan looks at, decided before it starts.
enum Plan {
    /// The caller's paths; the watcher's state is left alone.
    Caller,
    /// With a watcher: these paths, or everything; `token` is the answer.
    Watched { token: watch::WatchToken, paths: Option<Vec<RepoPath>>, why: Option<watch::FullScan> },
    /// Everything, with no watcher.
    Everything,
}

impl WorkTree {
    /// Opens the work tree at `root` of `repo`. Reads the index; when it is
    /// missing or damaged, rebuilds it from `HEAD`'s tree (every file is
    /// then read once by the next scan).
    pub fn open(repo: Repo, root: &Path) -> Result<Self> {
        let head = repo.head_commit()?;
        let index = match Index::load_file(repo.dir()) {
            Some(index) => index,
            None => {
                let tree = match head {
                    Some(id) => Some(read_commit(repo.store().as_ref(), id)?.tree),
                    None => None,
                };
                Index::load(repo.dir(), repo.store().as_ref(), head, tree)?
            }
        };
        Ok(Self { repo, root: root.to_owned(), index, head, watching: None })
    }

    /// Starts watching the tree (inotify, see [`watch`]): from now on a
    /// status, diff, snapshot, commit or checkout that names no paths
    /// looks only at what changed since the last one (the first looks at
    /// everything). A no-op if already watching.
    pub fn watch(&mut self) -> Result<()> {
        if self.watching.is_none() {
            let watcher = watch::Watcher::start(&self.root, self.repo.dir())?;
            self.watching = Some(Watching { watcher, token: None, dirty: Vec::new() });
        }
        Ok(())
    }

    /// The watcher, if the work tree watches.
    pub fn watcher(&self) -> Option<&watch::Watcher> {
        self.watching.as_ref().map(|w| &w.watcher)
    }

    /// Re-reads the index and `HEAD` if another process changed them (a
    /// commit or checkout not made through this work tree); returns whether
    /// it did. A watching work tree then looks at everything once.
    pub fn reload_if_changed(&mut self) -> Result<bool> {
        if !self.changed_elsewhere()? {
            return Ok(false);
        }
        let reopened = Self::open(self.repo.clone(), &self.root)?;
        let watching = self.watching.take();
        *self = reopened;
        self.watching = watching.map(|w| Watching { token: None, dirty: Vec::new(), ..w });
        Ok(true)
    }

    /// Whether another process moved `HEAD` or replaced the index file
    /// since this work tree read or saved it (reads no lock: a caller
    /// holding the index lock can ask).
    pub fn changed_elsewhere(&self) -> Result<bool> {
        let head = self.repo.head_commit()?;
        Ok(head != self.head || !self.index.is_file_current(self.repo.dir()))
    }

    /// Uses `repo` (the same repository, opened again: to see what other
    /// processes stored since, or to write) from now on; returns the one
    /// used until now.
    pub fn replace_repo(&mut self, repo: Repo) -> Repo {
        std::mem::replace(&mut self.repo, repo)
    }

    /// Decides what a scan looks at; with a watcher, asks it.
    fn plan(&mut self, options: &ScanOptions<'_>) -> Plan {
        if options.changed.is_some() {
            return Plan::Caller;
        }
        let Some(w) = self.watching.as_mut().filter(|_| !options.full) else {
            return match self.watching.as_mut() {
                // A full scan still brings the watcher's state up to date.
                Some(w) => {
                    let (_, token) = w.watcher.changes_since(w.token);
                    Plan::Watched { token, paths: None, why: None }
                }
                None => Plan::Everything,
            };
        };
        match w.watcher.changes_since(w.token) {
            (watch::Changes::Paths { mut changed, ignored }, token) => {
                changed.extend(w.dirty.iter().cloned());
                // Ignored, but tracked: still looked at (an ignored
                // directory the index has, walked whole, is not watched).
                changed.extend(ignored.into_iter().filter(|p| self.index.node(p).is_some()));
                Plan::Watched { token, paths: Some(changed), why: None }
            }
            (watch::Changes::Everything(why), token) => {
                Plan::Watched { token, paths: None, why: Some(why) }
            }
        }
    }

    /// Records, after a scan made as `plan` says, where the disk may
    /// differ from the index: at `deltas` if the index did not take them
    /// (`absorbed` false), nowhere else.
    fn settle(&mut self, plan: Plan, scanned: &scan::Scan, absorbed: bool) {
        if let (Plan::Watched { token, .. }, Some(w)) = (plan, self.watching.as_mut()) {
            w.token = Some(token);
            let deltas = scanned.deltas.iter().filter(|_| !absorbed).map(|d| d.path.clone());
            // A file left out for its size is looked at again next time,
            // as a full scan would (its limit may be lifted).
            w.dirty = deltas.chain(scanned.too_large.iter().map(|(p, _)| p.clone())).collect();
        }
    }

    /// Scans what `plan` says to look at: walks it and reads what the walk
    /// finds (storing it in `store`, if given).
    fn scan_as_planned(
        &self,
        plan: &Plan,
        options: &ScanOptions<'_>,
        store: Option<&dyn Store>,
    ) -> Result<(scan::Scan, Looked)> {
        let (paths, looked) = match plan {
            Plan::Caller => {
                let paths = options.changed.expect("a caller's plan has paths");
                (Some(paths), Looked::Paths(paths.len()))
            }
            Plan::Watched { paths: Some(paths), .. } => {
                (Some(&paths[..]), Looked::Paths(paths.len()))
            }
            Plan::Watched { paths: None, why, .. } => (None, Looked::Everything(why.clone())),
            Plan::Everything => (None, Looked::Everything(None)),
        };
        let (root, repo_dir) = (&self.root, self.repo.dir());
        let max = options.new_file_len_max;
        let scanned = scan::scan(root, repo_dir, &self.index, paths, max, store, options.progress)?;
        Ok((scanned, looked))
    }

    /// Finds the repository above `start`, opens it as `options` say, and
    /// its work tree.
    pub fn discover(start: &Path, options: &crate::repo::OpenOptions<'_>) -> Result<Self> {
        let Location { root, repo_dir } = Repo::discover(start)?;
        let repo = Repo::open_configured(&repo_dir, options)?;
        Self::open(repo, &root)
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The commit `HEAD` named when this work tree was opened.
    pub fn head(&self) -> Option<CommitId> {
        self.head
    }

    /// The commit the files are at: `HEAD`'s, unless another process (a
    /// writable mount) moved the branch, or a checkout was interrupted.
    pub fn at(&self) -> Option<CommitId> {
        self.index.commit
    }

    /// Where an interrupted checkout was going, if one was.
    pub fn interrupted(&self) -> Result<Option<CommitId>> {
        Ok(read_marker(self.repo.dir())?.map(|(_, to)| to))
    }

    /// Fails with [`Error::WorkTreeBehind`] unless the files are at `HEAD`.
    fn check_at_head(&self) -> Result<()> {
        if self.index.commit != self.head {
            return Err(Error::WorkTreeBehind {
                at: AtCommit(self.index.commit),
                head: AtCommit(self.head),
            });
        }
        if let Some(to) = self.interrupted()? {
            return Err(Error::WorkTreeBehind {
                at: AtCommit(self.index.commit),
                head: AtCommit(Some(to)),
            });
        }
        Ok(())
    }

    /// Compares the disk with the index (everything, or what `options`
    /// names), hashing what its stat does not vouch for, storing new
    /// content when `store` is given; refreshes the index's stats.
    fn scan(
        &mut self,
        options: &ScanOptions<'_>,
        store: Option<&dyn Store>,
    ) -> Result<(scan::Scan, Looked)> {
        let plan = self.plan(options);
        let (scanned, looked) = self.scan_as_planned(&plan, options, store)?;
        scanned.refresh(&mut self.index);
        self.settle(plan, &scanned, false);
        Ok((scanned, looked))
    }

    /// What differs between the disk and the commit the files are at
    /// (`HEAD`'s, unless another process moved the branch), without
    /// storing anything.
    /// The index's stats are refreshed in memory ([`WorkTree::save`] keeps
    /// them, so the next status reads less).
    pub fn status(&mut self, options: &ScanOptions<'_>) -> Result<Status> {
        let (scanned, looked) = self.scan(options, None)?;
        let interrupted = self.interrupted()?;
        let changes = self.changes_from(self.index.base_tree, scanned.deltas)?;
        Ok(Status {
            changes,
            skipped: scanned.skipped,
            too_large: scanned.too_large,
            hashed: scanned.hashed.len(),
            interrupted,
            looked,
        })
    }

    /// What differs between the disk and the stored tree `base` (`None`:
    /// the empty tree), without storing anything; refreshes the index's
    /// stats in memory.
    pub fn diff_from(
        &mut self,
        base: Option<TreeId>,
        options: &ScanOptions<'_>,
    ) -> Result<Vec<Delta>> {
        let (scanned, _) = self.scan(options, None)?;
        self.changes_from(base.unwrap_or_else(|| Tree::default().id()), scanned.deltas)
    }

    /// What differs between `base` and the index with a scan's `deltas`
    /// applied: the deltas themselves when the index holds `base`.
    fn changes_from(&self, base: TreeId, deltas: Vec<Delta>) -> Result<Vec<Delta>> {
        if self.index.root.id == Some(base) {
            return Ok(deltas);
        }
        let mut index = self.index.clone_tree();
        index.apply(&deltas)?;
        diff_index(self.repo.store().as_ref(), base, &index.root)
    }

    /// Stores what changed on disk (content and trees) and returns the
    /// tree: no ref moves, and nothing is made durable on purpose (a
    /// local store is synced ahead while a large snapshot fills it, see
    /// [`vst_cas::SyncAhead`]; what that made durable only stays so).
    /// The index follows the snapshot in memory, so the next snapshot with
    /// `changed` needs to name only what changed since this one.
    pub fn snapshot(&mut self, options: &ScanOptions<'_>) -> Result<SnapshotOutcome> {
        let store = self.repo.store();
        let plan = self.plan(options);
        let (scanned, looked) = self.scan_as_planned(&plan, options, Some(store.as_ref()))?;
        // The differences first, then the stats of what was hashed (for the
        // content the index now holds).
        self.index.apply(&scanned.deltas)?;
        scanned.refresh(&mut self.index);
        let tree = self.index.write_trees(store.as_ref())?;
        if tree == Tree::default().id() {
            // The index starts at the empty tree without storing it.
            store.put(tree.object_id(), &Tree::default().encode())?;
        }
        self.settle(plan, &scanned, true);
        Ok(SnapshotOutcome {
            tree,
            changes: scanned.deltas,
            skipped: scanned.skipped,
            too_large: scanned.too_large,
            hashed: scanned.hashed.len(),
            looked,
        })
    }

    /// Snapshots and commits: the objects are synced, then the current
    /// branch (or a detached `HEAD`) moves from the commit the files are
    /// at to the new one. Refuses when another process moved the branch
    /// since ([`Error::WorkTreeBehind`]): check out `HEAD` first.
    pub fn commit(
        &mut self,
        options: &CommitOptions,
        empty: Empty,
        scan: &ScanOptions<'_>,
    ) -> Result<CommitOutcome> {
        self.check_at_head()?;
        let snapshot = self.snapshot(scan)?;
        // (With no commit yet, the base is the empty tree.)
        if snapshot.tree == self.index.base_tree && empty == Empty::Skip {
            return Ok(CommitOutcome { commit: None, snapshot });
        }
        let id = self.repo.commit_tree(snapshot.tree, self.head, options)?;
        self.index.set_base(Some(id), snapshot.tree);
        self.head = Some(id);
        Ok(CommitOutcome { commit: Some(id), snapshot })
    }

    /// Moves the index to `commit` without touching a file (`git reset`):
    /// afterwards the disk's differences from that commit are local
    /// changes. `HEAD` is not moved; the caller moves it.
    pub fn reset(&mut self, commit: Option<CommitId>) -> Result<()> {
        let store = self.repo.store();
        let tree = match commit {
            Some(id) => Some(read_commit(store.as_ref(), id)?.tree),
            None => None,
        };
        self.index = Index::rebase(&self.index, store.as_ref(), commit, tree)?;
        self.head = self.repo.head_commit()?;
        // Where the disk differs from the new index is not known.
        if let Some(w) = self.watching.as_mut() {
            w.token = None;
        }
        Ok(())
    }

    /// Writes the index if it changed. Not synced: a lost index is rebuilt.
    pub fn save(&mut self) -> Result<()> {
        self.index.save(self.repo.dir())
    }

    /// Takes the index's lock for a save that [`WorkTree::save_locked`]
    /// finishes: meanwhile every process that reads the index waits, so a
    /// daemon can answer a commit first and save after.
    pub fn lock_index(&self) -> Result<index::IndexLock> {
        Index::lock(self.repo.dir())
    }

    /// [`WorkTree::save`] under the lock [`WorkTree::lock_index`] took.
    pub fn save_locked(&mut self, lock: index::IndexLock) -> Result<()> {
        self.index.save_locked(self.repo.dir(), &lock)
    }

    /// Brings `paths` (files, or directories with all they hold) back to
    /// what the stored tree `source` has there, whatever is on disk
    /// (`git restore --source`): local changes at those paths are lost, a
    /// path `source` lacks is removed; nothing else is looked at or
    /// touched, and neither `HEAD` nor the index's commit moves.
    pub fn restore(
        &mut self,
        source: TreeId,
        paths: &[RepoPath],
        options: &CheckoutOptions<'_>,
    ) -> Result<CheckoutStats> {
        let store = self.repo.store();
        // The disk at those paths, stored, so that the update starts from
        // what is really there.
        let scan_options = ScanOptions { changed: Some(paths), ..Default::default() };
        let (scanned, _) = self.scan(&scan_options, Some(store.as_ref()))?;
        let mut disk = self.index.clone_tree();
        disk.apply(&scanned.deltas)?;
        let from = disk.write_trees(store.as_ref())?;
        let mut deltas = Vec::new();
        for path in paths.iter().filter(|p| !p.is_root()) {
            // Directories on the way that the disk lacks come back too.
            let mut above = RepoPath::root();
            for component in path.components().take(path.depth() - 1) {
                above = above.join_unchecked(component);
                if !matches!(disk.node(&above), Some(IndexNode::Dir(_))) {
                    deltas.push(Delta { path: above.clone(), old: None, new: Some(Found::Dir) });
                }
            }
            let entry = crate::read::lookup(store.as_ref(), source, path)?;
            deltas.push(Delta { path: path.clone(), old: None, new: entry.as_ref().map(found_of) });
            if let Some(EntryKind::Dir(tree)) = entry {
                crate::read::walk(store.as_ref(), tree, &mut |below, kind| {
                    let mut full = path.clone();
                    for c in below.components() {
                        full = full.join_unchecked(c);
                    }
                    deltas.push(Delta { path: full, old: None, new: Some(found_of(kind)) });
                    Ok(())
                })?;
            }
        }
        let mut target = disk;
        target.apply(&deltas)?;
        let to = target.write_trees(store.as_ref())?;
        let tmp_dir = self.repo.dir().join(CHECKOUT_TMP_DIR);
        remove_leftovers(&tmp_dir)?;
        let outcome = crate::checkout::update(
            store.as_ref(),
            from,
            to,
            &self.root,
            &UpdateOptions {
                force: Force::Yes,
                tmp_dir: Some(&tmp_dir),
                progress: options.progress,
                interrupt: options.interrupt,
            },
        )?;
        // What was written with the index's content there needs no reading.
        for Written { path, file, stat } in outcome.written {
            self.index.set_stat(&path, &file, stat);
        }
        Ok(outcome.stats)
    }

    /// Checks out `target` in place: the one work-tree update rule.
    ///
    /// Only the paths that differ between the tree the files are at and
    /// `target`'s are touched. A local change (or an untracked or ignored
    /// file) at such a path, below it or above it is in the way: the
    /// update is refused ([`Error::Conflicts`], nothing written) unless
    /// `options.force`, which overwrites them. Local changes elsewhere
    /// stay. The target is recorded before the first file is touched, so
    /// an interrupted checkout is finished by the next one (what it had
    /// written is not counted as a local change), and the index records the
    /// stats of what it wrote, so the next scan reads none of it back.
    /// Nothing is ever written through a symlink or outside the root.
    pub fn check_out(
        &mut self,
        target: CommitId,
        options: &CheckoutOptions<'_>,
    ) -> Result<CheckoutStats> {
        let store = self.repo.store();
        let to = read_commit(store.as_ref(), target)?.tree;
        // With --force, local content may go into the tree the update
        // starts from (`from_disk` below), which is stored: so is that
        // content, since a stored tree must never name a missing object.
        let scan_store = (options.force == Force::Yes).then_some(store.as_ref());
        // A scan of what a watcher saw takes no stamp of its own; a full
        // scan does, so the clock is read here only with a watcher.
        let before_scan =
            if self.watching.is_some() { scan::fs_now(self.repo.dir()) } else { i64::MIN };
        let scan_options = ScanOptions { progress: options.progress, ..Default::default() };
        let (scanned, _) = self.scan(&scan_options, scan_store)?;
        let scan_stamp = scanned.stamp_ns.unwrap_or(before_scan);
        let from = match self.index.root.id {
            Some(id) => id,
            None => self.index.write_trees(store.as_ref())?,
        };
        // What an interrupted checkout already wrote is where it was going.
        let marker = read_marker(self.repo.dir())?;
        let resumed_to = match marker {
            Some((marked_from, to_commit)) if marked_from == from => {
                Some(read_commit(store.as_ref(), to_commit)?.tree)
            }
            _ => None,
        };
        let empty = Tree::default().id();
        let changes =
            crate::diff_trees(store.as_ref(), Some(from).filter(|t| *t != empty), Some(to))?;
        // A local change that is already what the target has there (a
        // file an interrupted checkout wrote, an edit that made the same
        // content) is not in the way: it counts as done.
        let target_entries: std::collections::HashMap<&RepoPath, Option<&EntryKind>> =
            changes.iter().map(|c| (&c.path, c.new.as_ref())).collect();
        let mut done: Vec<Delta> = Vec::new();
        for d in &scanned.deltas {
            let as_target =
                target_entries.get(&d.path).is_some_and(|entry| same_entry(*entry, d.new.as_ref()));
            let is_done = as_target
                || match resumed_to {
                    Some(was_going) => {
                        let there = crate::read::lookup(store.as_ref(), was_going, &d.path)?;
                        same_entry(there.as_ref(), d.new.as_ref())
                    }
                    None => false,
                };
            if is_done {
                done.push(d.clone());
            }
        }
        let done_paths: HashSet<RepoPath> = done.iter().map(|d| d.path.clone()).collect();
        // A local change in the way: at a touched path, below one or above
        // one. A new directory alone is not (it may hold only ignored
        // files, and the update fills it); what is in it is.
        let touched_sorted: std::collections::BTreeSet<&[u8]> =
            changes.iter().map(|c| c.path.as_bytes()).collect();
        let in_the_way: Vec<&Delta> = scanned
            .deltas
            .iter()
            .filter(|d| !done_paths.contains(&d.path))
            .filter(|d| !(d.old.is_none() && d.new == Some(Found::Dir)))
            .filter(|d| overlaps(&touched_sorted, &d.path))
            .collect();
        // Something untracked on disk (an ignored file, say) where the
        // target puts something: a path the target adds is looked at when
        // its directory is on disk (one lstat per directory), and a
        // directory already there is merged into; a directory the target
        // replaces by a file or a link must hold only what the index has.
        let local: HashSet<&RepoPath> = scanned.deltas.iter().map(|d| &d.path).collect();
        let mut dirs_on_disk: std::collections::HashMap<RepoPath, bool> =
            std::collections::HashMap::new();
        let full = |p: &RepoPath| self.root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
        let mut ignored_in_the_way = Vec::new();
        for c in changes.iter().filter(|c| !local.contains(&c.path)) {
            match (&c.old, &c.new) {
                (None, Some(new)) => {
                    let (parent, _) = c.path.split_last().expect("a change is never the root");
                    let parent_on_disk = *dirs_on_disk.entry(parent.clone()).or_insert_with(|| {
                        std::fs::symlink_metadata(full(&parent)).is_ok_and(|m| m.is_dir())
                    });
                    if !parent_on_disk {
                        continue;
                    }
                    if let Ok(meta) = std::fs::symlink_metadata(full(&c.path))
                        && !(meta.is_dir() && matches!(new, EntryKind::Dir(_)))
                    {
                        ignored_in_the_way.push(c.path.clone());
                    }
                }
                (Some(EntryKind::Dir(old)), Some(new)) if !matches!(new, EntryKind::Dir(_)) => {
                    let unknown =
                        holds_unknown(store.as_ref(), *old, &full(&c.path), c.path.depth())?;
                    ignored_in_the_way.extend(unknown.then(|| c.path.clone()));
                }
                _ => {}
            }
        }
        if options.force == Force::No && (!in_the_way.is_empty() || !ignored_in_the_way.is_empty())
        {
            let mut paths: Vec<RepoPath> =
                in_the_way.iter().map(|d| d.path.clone()).chain(ignored_in_the_way).collect();
            paths.sort();
            paths.dedup();
            return Err(Error::Conflicts { paths });
        }
        // The tree the disk is at, as far as the update goes: what an
        // interrupted checkout wrote, and with --force what is in the way.
        // With --force, every local change to a tracked path is discarded
        // (as `git checkout --force` does), and untracked files in the
        // way go; other untracked files stay.
        let mut applied: Vec<Delta> = done;
        if options.force == Force::Yes {
            let in_the_way: HashSet<&RepoPath> = in_the_way.iter().map(|d| &d.path).collect();
            let discarded = scanned.deltas.iter().filter(|d| !done_paths.contains(&d.path));
            applied.extend(
                discarded.filter(|d| d.old.is_some() || in_the_way.contains(&d.path)).cloned(),
            );
        }
        let from_disk = if applied.is_empty() {
            from
        } else {
            let mut index = self.index.clone_tree();
            index.apply(&applied)?;
            index.write_trees(store.as_ref())?
        };
        write_marker(self.repo.dir(), from, target)?;
        let tmp_dir = self.repo.dir().join(CHECKOUT_TMP_DIR);
        remove_leftovers(&tmp_dir)?;
        let outcome = crate::checkout::update(
            store.as_ref(),
            from_disk,
            to,
            &self.root,
            &UpdateOptions {
                force: options.force,
                tmp_dir: Some(&tmp_dir),
                progress: options.progress,
                interrupt: options.interrupt,
            },
        )?;
        if let Some(head) = options.head {
            self.repo.refs().set_head(head).map_err(crate::repo::ref_err)?;
        }
        self.head = self.repo.head_commit()?;
        // The index of the target, with the stats of what was written and
        // of what the scan found settled; the stamp is taken after the
        // writes, so a stat the scan took of a file touched in its own
        // tick is dropped rather than trusted under the later stamp.
        let newest = outcome.written.iter().map(|w| w.stat.mtime_ns.max(w.stat.ctime_ns)).max();
        let stamp_after = scan::fs_now_after(self.repo.dir(), newest.unwrap_or(i64::MIN));
        let mut index = Index::rebase(&self.index, store.as_ref(), Some(target), Some(to))?;
        index.drop_stats_since(scan_stamp);
        for Written { path, file, stat } in outcome.written {
            index.set_stat(&path, &file, stat);
        }
        index.stamp_ns = stamp_after;
        self.index = index;
        self.index.save(self.repo.dir())?;
        remove_marker(self.repo.dir())?;
        Ok(outcome.stats)
    }
}

/// Whether the directory `dir` on disk holds anything the stored tree
/// `tree` does not list (an ignored or untracked entry, at any depth).
fn holds_unknown(store: &dyn Store, tree: TreeId, dir: &Path, depth: usize) -> Result<bool> {
    let listed = crate::read::read_tree(store, tree)?;
    crate::read::check_depth(depth, tree, &listed)?;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Gone or not a directory: nothing unknown in it.
        Err(_) => return Ok(false),
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::WorkTreeIo {
            op: "read the directory",
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(listed) = listed.get(name.as_bytes()) else { return Ok(true) };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let (EntryKind::Dir(sub), true) = (&listed.kind, is_dir)
            && holds_unknown(store, *sub, &entry.path(), depth + 1)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a scan would find for the stored entry `kind`.
fn found_of(kind: &EntryKind) -> Found {
    match kind {
        EntryKind::File(f) => Found::File(*f),
        EntryKind::Symlink(t) => Found::Symlink(t.as_bytes().to_vec()),
        EntryKind::Dir(_) => Found::Dir,
    }
}

/// Whether the disk's `found` is the tree entry `entry` (a directory is a
/// directory, whatever it holds).
fn same_entry(entry: Option<&EntryKind>, found: Option<&Found>) -> bool {
    match (entry, found) {
        (None, None) => true,
        (Some(EntryKind::File(a)), Some(Found::File(b))) => a == b,
        (Some(EntryKind::Symlink(a)), Some(Found::Symlink(b))) => a.as_bytes() == b.as_slice(),
        (Some(EntryKind::Dir(_)), Some(Found::Dir)) => true,
        _ => false,
    }
}

/// Whether `path`, one of its ancestors, or one of its descendants is in
/// `set` (paths as bytes, sorted).
fn overlaps(set: &std::collections::BTreeSet<&[u8]>, path: &RepoPath) -> bool {
    let bytes = path.as_bytes();
    if set.contains(bytes) {
        return true;
    }
    let ancestor = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .any(|(i, _)| set.contains(&bytes[..i]));
    if ancestor {
        return true;
    }
    // Descendants are `path/...`: from `path/` up to, not including,
    // `path0` ('0' follows '/').
    let mut low = bytes.to_vec();
    low.push(b'/');
    let mut high = bytes.to_vec();
    high.push(b'0');
    set.range::<[u8], _>((
        std::ops::Bound::Included(&low[..]),
        std::ops::Bound::Excluded(&high[..]),
    ))
    .next()
    .is_some()
}

/// What differs between the stored tree `base` and the index's `dir`,
/// skipping every subtree whose id the index knows to be the same.
fn diff_index(store: &dyn Store, base: TreeId, dir: &IndexDir) -> Result<Vec<Delta>> {
    let mut out = Vec::new();
    diff_index_dir(store, &RepoPath::root(), Some(base), dir, 0, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn diff_index_dir(
    store: &dyn Store,
    path: &RepoPath,
    base: Option<TreeId>,
    dir: &IndexDir,
    depth: usize,
    out: &mut Vec<Delta>,
) -> Result<()> {
    if base.is_some() && base == dir.id {
        return Ok(());
    }
    let tree = match base.filter(|id| *id != Tree::default().id()) {
        Some(id) => {
            let tree = crate::read::read_tree(store, id)?;
            crate::read::check_depth(depth, id, &tree)?;
            tree
        }
        None => Tree::default(),
    };
    let (old, new) = (tree.entries(), &dir.entries);
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some((b, _))) => a.name.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let a = (order != std::cmp::Ordering::Greater).then(|| &old[i]);
        let b = (order != std::cmp::Ordering::Less).then(|| &new[j].1);
        i += usize::from(a.is_some());
        j += usize::from(b.is_some());
        let name = a.map_or_else(|| new[j - 1].0.as_bytes(), |e| e.name.as_bytes());
        let child = path.join_unchecked(name);
        let found = b.map(|node| match node {
            IndexNode::File(f, _) => Found::File(*f),
            IndexNode::Symlink(t) => Found::Symlink(t.as_bytes().to_vec()),
            IndexNode::Dir(_) => Found::Dir,
        });
        let old_kind = a.map(|e| e.kind.clone());
        let old_dir = match &old_kind {
            Some(EntryKind::Dir(id)) => Some(*id),
            _ => None,
        };
        match b {
            Some(IndexNode::Dir(d)) => {
                if old_dir.is_none() {
                    out.push(Delta { path: child.clone(), old: old_kind.clone(), new: found });
                }
                diff_index_dir(store, &child, old_dir, d, depth + 1, out)?;
            }
            _ => {
                if !same_entry(old_kind.as_ref(), found.as_ref()) {
                    out.push(Delta { path: child.clone(), old: old_kind, new: found });
                }
                if let Some(id) = old_dir {
                    crate::read::walk(store, id, &mut |p, kind| {
                        let mut full = child.clone();
                        for c in p.components() {
                            full = full.join_unchecked(c);
                        }
                        out.push(Delta { path: full, old: Some(kind.clone()), new: None });
                        Ok(())
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Removes what a killed checkout left in `tmp_dir` (the files it was
/// writing; the repository's write lock says no other checkout runs).
fn remove_leftovers(tmp_dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(tmp_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::RepoIo { op: "read", path: tmp_dir.to_owned(), source }),
    };
    for entry in entries {
        let path = entry
            .map_err(|source| Error::RepoIo { op: "read", path: tmp_dir.to_owned(), source })?
            .path();
        std::fs::remove_file(&path).map_err(|source| Error::RepoIo {
            op: "remove",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The checkout marker: `(tree the disk was at, commit it is going to)`.
fn read_marker(repo_dir: &Path) -> Result<Option<(TreeId, CommitId)>> {
    // Two ids and a space; a longer file is not one this library wrote.
    let Some((path, text)) = crate::format::read_small(repo_dir, CHECKOUT_MARKER, 256)? else {
        return Ok(None);
    };
    let mut words = text.split_whitespace().map(|w| w.parse::<vst_cas::ObjectId>());
    match (words.next(), words.next()) {
        (Some(Ok(from)), Some(Ok(to))) => Ok(Some((TreeId::new(from), CommitId::new(to)))),
        _ => Err(Error::DamagedRepoFile { path, reason: "want two ids on a line" }),
    }
}

fn write_marker(repo_dir: &Path, from: TreeId, to: CommitId) -> Result<()> {
    crate::format::write_durably(repo_dir, CHECKOUT_MARKER, format!("{from} {to}\n").as_bytes())
}

fn remove_marker(repo_dir: &Path) -> Result<()> {
    let path = repo_dir.join(CHECKOUT_MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::RepoIo { op: "remove", path, source }),
    }
}
