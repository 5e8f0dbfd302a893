//! A repository on disk: the pack store and the refs in one directory
//! (`.vst/` under the working tree, for the CLI), and the commit protocol
//! that ties them together.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vst_cas::remote::RemoteStore;
use vst_cas::vfs::{RealFs, Vfs};
use vst_cas::{
    Access, Durability, GcMode, GcStats, Head, ObjectId, PackOptions, PackStore, RefError, RefName,
    Refs, Store, Tags, TrackingRefs,
};

use crate::commit::{Commit, Timestamp};
use crate::error::{Error, Result};
use crate::format::{self, Format};
use crate::fsck::{FsckReport, ReadData, fsck};
use crate::fsck::{Reached, for_each_reachable};
use crate::id::{CommitId, TreeId};
use crate::working_set::{CommitOptions, WorkingSet, commit};

/// The directory name a repository keeps under its working tree.
pub const REPO_DIR_NAME: &str = ".vst";

/// An open repository: where its objects are, and its refs (always in the
/// repository directory).
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
    objects: Objects,
    refs: Refs,
}

/// Where a repository keeps its objects.
#[derive(Debug, Clone)]
pub enum Objects {
    /// The pack store in the repository directory (the default).
    Local(Arc<PackStore>),
    /// An object store, with a bounded cache on local disk in front;
    /// reads fetch only what they need, when they need it.
    Remote(Arc<RemoteStore>),
}

/// The file in the repository directory that says its objects are in an
/// object store: the URL on the first line, the local cache's limit in
/// bytes on the second.
pub const STORE_FILE: &str = "store";
/// The local cache of a repository whose objects are remote.
const CACHE_DIR: &str = "cache";

/// A repository's own settings lookup: a function from a setting's name
/// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...) to its value. The
/// library never reads the environment; the CLI passes one that does.
pub type Settings<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How to open a repository ([`Repo::open_configured`]).
#[derive(Clone)]
pub struct OpenOptions<'a> {
    /// For reading only, or for writing (one writer at a time).
    pub access: Access,
    /// The settings an object store is reached with.
    pub settings: Settings<'a>,
    /// The local pack store's options: how long to wait for another
    /// writer, and what kind of writer this is.
    pub pack: PackOptions,
}

/// Where a new repository keeps its objects.
#[derive(Debug, Clone, Default)]
pub enum InitStore {
    /// A pack store in the repository directory.
    #[default]
    Local,
    /// An object store (`s3://BUCKET/PREFIX`) with a bounded local cache
    /// of `cache_len_max` bytes.
    Remote {
        /// The object store's URL.
        url: String,
        /// The cache's limit in bytes.
        cache_len_max: u64,
    },
}

/// Where a repository is: its work tree's root and its repository
/// directory (`root/.vst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The work tree's root.
    pub root: PathBuf,
    /// The repository directory.
    pub repo_dir: PathBuf,
}

impl Repo {
    /// Creates a repository in `dir` (the repository directory, `.vst`
    /// under a work tree for the CLI) with its format file and the
    /// objects where `store` says, with `HEAD` on `main`. Refuses a
    /// directory that already holds one. A remote store is reached before
    /// anything is written, so a wrong URL or missing credentials leave no
    /// half-made repository.
    pub fn init(dir: &Path, store: &InitStore, settings: Settings<'_>) -> Result<Self> {
        if is_repo_dir(dir) {
            return Err(Error::AlreadyARepository { path: dir.to_owned() });
        }
        let remote = match store {
            InitStore::Local => None,
            InitStore::Remote { url, .. } => Some(open_remote_store(url, settings, None)?),
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::RepoIo {
            op: "create",
            path: dir.to_owned(),
            source,
        })?;
        // Where the objects are before the format that says they are
        // remote: a crash between the two leaves no repository (no format
        // file, no HEAD), never one that would open a local store.
        if let InitStore::Remote { url, cache_len_max } = store {
            let text = format!("{url}\n{cache_len_max}\n");
            format::write_durably(dir, STORE_FILE, text.as_bytes())?;
        }
        Format::current(remote.is_some()).write(dir)?;
        let repo = match (store, remote) {
            (InitStore::Remote { .. }, Some(_)) => {
                let options =
                    OpenOptions { access: Access::ReadWrite, settings, pack: Default::default() };
                Self::open_configured(dir, &options)?
            }
            _ => Self::open_with(Arc::new(RealFs::new()), dir, Access::ReadWrite)?,
        };
        repo.refs.set_head(&Head::Branch(Self::branch("main")?)).map_err(ref_err)?;
        Ok(repo)
    }

    /// Opens the existing repository in `dir` for writing (one process at
    /// a time), with no settings: a repository whose objects are in an
    /// object store needs [`Repo::open_configured`]. Never creates one.
    pub fn open(dir: &Path) -> Result<Self> {
        let options = OpenOptions {
            access: Access::ReadWrite,
            settings: &|_| None,
            pack: Default::default(),
        };
        Self::open_configured(dir, &options)
    }

    /// Opens the existing repository in `dir`: refuses a format this
    /// library does not know before anything is written, and opens the
    /// objects where `.vst/store` says (an object store, reached with
    /// `settings`), else the local pack store. Opened for writing, a
    /// repository made before the format file gets one.
    pub fn open_configured(dir: &Path, options: &OpenOptions<'_>) -> Result<Self> {
        let access = options.access;
        let format = Format::read(dir)?;
        if format.is_none() && !is_repo_dir(dir) {
            return Err(Error::NotARepository { path: dir.to_owned() });
        }
        let repo = match read_store_file(dir)? {
            Some((url, cache_len_max)) => {
                let vfs: Arc<dyn Vfs> = Arc::new(RealFs::new());
                let cache = vst_cas::remote::CacheOptions {
                    dir: dir.join(CACHE_DIR),
                    len_max: cache_len_max,
                    vfs: vfs.clone(),
                };
                let store = open_remote_store(&url, options.settings, Some(cache))?;
                Self::open_remote(vfs, dir, store)?
            }
            None => Self::open_with_options(Arc::new(RealFs::new()), dir, access, options.pack)?,
        };
        if format.is_none() && access == Access::ReadWrite {
            Format::current(matches!(repo.objects, Objects::Remote(_))).write(dir)?;
        }
        Ok(repo)
    }

    /// Finds the repository for `start`: the nearest directory at or above
    /// it holding `.vst`.
    pub fn discover(start: &Path) -> Result<Location> {
        // Absolute, so that the search goes above a relative start.
        let absolute;
        let start = if start.is_absolute() {
            start
        } else {
            let cwd = std::env::current_dir().map_err(|source| Error::RepoIo {
                op: "read the current directory",
                path: start.to_owned(),
                source,
            })?;
            absolute = cwd.join(start);
            &absolute
        };
        let mut dir = start;
        loop {
            let repo_dir = dir.join(REPO_DIR_NAME);
            if repo_dir.is_dir() {
                return Ok(Location { root: dir.to_owned(), repo_dir });
            }
            dir = dir.parent().ok_or_else(|| Error::NotARepository { path: start.to_owned() })?;
        }
    }

    /// Opens the pack store repository in `dir` through `vfs`: the
    /// low-level constructor (tests on a simulated disk, the mount). With
    /// [`Access::ReadWrite`] it creates the store if missing; it reads no
    /// format or store file.
    pub fn open_with(vfs: Arc<dyn Vfs>, dir: &Path, access: Access) -> Result<Self> {
        Self::open_with_options(vfs, dir, access, PackOptions::default())
    }

    /// Opens the repository in `dir` through `vfs`, its store tuned by
    /// `options` (among them how long to wait for another writer, and what
    /// kind of writer this is).
    pub fn open_with_options(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        access: Access,
        options: PackOptions,
    ) -> Result<Self> {
        let store = Arc::new(PackStore::open_with_options(vfs.clone(), dir, access, options)?);
        Ok(Self { dir: dir.to_owned(), objects: Objects::Local(store), refs: Refs::new(vfs, dir) })
    }

    /// Opens the repository in `dir` whose objects are in `store` (the
    /// caller opens it: where it is and how to reach it is configuration
    /// this library does not read). Refs stay in `dir`.
    pub fn open_remote(vfs: Arc<dyn Vfs>, dir: &Path, store: RemoteStore) -> Result<Self> {
        vfs.create_dir_all(dir).map_err(|source| vst_cas::StoreError::Io {
            op: "create the repository directory",
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            objects: Objects::Remote(Arc::new(store)),
            refs: Refs::new(vfs, dir),
        })
    }

    /// Where the objects are.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The id of every object the store holds (for resolving a prefix).
    pub fn object_ids(&self) -> Vec<ObjectId> {
        match &self.objects {
            Objects::Local(s) => s.ids(),
            Objects::Remote(s) => s.ids(),
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pack store, for a repository whose objects are local.
    pub fn pack_store(&self) -> Option<&Arc<PackStore>> {
        match &self.objects {
            Objects::Local(s) => Some(s),
            Objects::Remote(_) => None,
        }
    }

    /// The store, as the rest of the library takes it.
    pub fn store(&self) -> Arc<dyn Store> {
        match &self.objects {
            Objects::Local(s) => s.clone(),
            Objects::Remote(s) => s.clone(),
        }
    }

    /// The refs.
    pub fn refs(&self) -> &Refs {
        &self.refs
    }

    /// The remote-tracking refs (`refs/remotes/REMOTE/BRANCH`): what each
    /// remote's branches were at when last fetched, pushed or cloned.
    /// GC keeps what they reach, as it does for branches.
    pub fn tracking_refs(&self) -> TrackingRefs {
        self.refs.tracking()
    }

    /// The tags (`refs/tags/NAME`): names of commits, kept by GC and
    /// checked by fsck as branches are. Write them with
    /// [`Repo::update_tag`], which marks the format first.
    pub fn tags(&self) -> Tags {
        self.refs.tags()
    }

    /// Sets tag `name` to `new` (`None` deletes it) if it is now
    /// `expected`, as [`Tags::update`] does, after adding the `tags`
    /// feature to the format file (once), so that a vst that does not know
    /// tags refuses the repository rather than collecting what only a tag
    /// reaches.
    pub fn update_tag(
        &self,
        name: &RefName,
        expected: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<()> {
        if new.is_some() {
            self.require_feature(format::FEATURE_TAGS)?;
        }
        self.refs.tags().update(name, expected, new, message).map_err(ref_err)
    }

    /// Adds `feature` to the format file if it is not there yet.
    fn require_feature(&self, feature: &str) -> Result<()> {
        let mut format = match Format::read(&self.dir)? {
            Some(format) => format,
            None => Format::current(matches!(self.objects, Objects::Remote(_))),
        };
        if format.features.iter().any(|f| f == feature) {
            return Ok(());
        }
        format.features.push(feature.to_owned());
        format.write(&self.dir)
    }

    /// The commit `HEAD` resolves to; `None` on an unborn branch.
    pub fn head_commit(&self) -> Result<Option<CommitId>> {
        match self.refs.head().map_err(ref_err)? {
            Head::Detached(id) => Ok(Some(CommitId::new(id))),
            Head::Branch(name) => Ok(self.refs.get(&name).map_err(ref_err)?.map(CommitId::new)),
        }
    }

    /// A working set holding `HEAD` (empty on an unborn branch).
    pub fn working_set(&self) -> Result<WorkingSet> {
        match self.head_commit()? {
            Some(id) => WorkingSet::from_commit(self.store(), id),
            None => Ok(WorkingSet::new(self.store())),
        }
    }

    /// Commits `ws` and moves the current branch to the new commit. The
    /// protocol (see `docs/format.md`): objects appended; the branch
    /// compared with `ws`'s previous head, under its lock; the objects
    /// synced; then the branch's new value written into the older of its
    /// file's two slots and synced (a new branch: written to a temporary
    /// name and synced while the objects sync, renamed, the directory
    /// synced). If the branch moved meanwhile (another writer), the commit
    /// object exists but no ref names it, and this is a
    /// [`RefError::Conflict`]; `ws` then still descends from its previous
    /// head, so that a later commit does not build on the unnamed one.
    /// With a detached `HEAD`, `HEAD` itself moves, through a temporary
    /// name.
    pub fn commit(&self, ws: &mut WorkingSet, options: &CommitOptions) -> Result<CommitId> {
        let parent = ws.head();
        let id = commit(ws, &unsynced(options))?;
        let published = match self.refs.head().map_err(ref_err) {
            Ok(Head::Branch(name)) => self.publish(&name, parent, id, options),
            Ok(Head::Detached(_)) => self.publish_detached(parent, id, options),
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            ws.set_head(parent);
            return Err(e);
        }
        Ok(id)
    }

    /// Commits `ws` and moves branch `branch` (whatever `HEAD` is) from
    /// `ws`'s previous head to the new commit, as [`Repo::commit`] does
    /// (refused, `ws` still descends from its previous head).
    pub fn commit_on(
        &self,
        ws: &mut WorkingSet,
        branch: &RefName,
        options: &CommitOptions,
    ) -> Result<CommitId> {
        let parent = ws.head();
        let id = commit(ws, &unsynced(options))?;
        if let Err(e) = self.publish(branch, parent, id, options) {
            ws.set_head(parent);
            return Err(e);
        }
        Ok(id)
    }

    /// Commits `tree`, which the store must already hold with everything
    /// below it, with `parent` as the only parent, and moves what `HEAD`
    /// names from `parent` to the new commit, as [`Repo::commit`] does.
    /// For callers that build trees themselves (the CLI's index).
    pub fn commit_tree(
        &self,
        tree: TreeId,
        parent: Option<CommitId>,
        options: &CommitOptions,
    ) -> Result<CommitId> {
        let commit = Commit {
            tree,
            parents: parent.into_iter().chain(options.merged.iter().copied()).collect(),
            author: options.author.clone(),
            time: options.time.unwrap_or_else(Timestamp::now),
            message: options.message.clone(),
        };
        let bytes = commit.encode()?;
        let id = CommitId::of(&bytes);
        self.store().put(id.object_id(), &bytes)?;
        match self.refs.head().map_err(ref_err)? {
            Head::Branch(name) => self.publish(&name, parent, id, options)?,
            Head::Detached(_) => self.publish_detached(parent, id, options)?,
        }
        Ok(id)
    }

    /// Moves `branch` from `parent` to `id` once everything `id` names is
    /// durable: a ref is durable, so what it names must be too, whatever
    /// durability the options asked of the objects (a no-op if synced).
    /// The store's sync comes first, or overlaps the ref's own for a new
    /// branch (see [`Refs::update_once_durable`]).
    fn publish(
        &self,
        branch: &RefName,
        parent: Option<CommitId>,
        id: CommitId,
        options: &CommitOptions,
    ) -> Result<()> {
        let message = reflog_message(options);
        let durable = || self.store().sync();
        self.refs
            .update_once_durable(
                branch,
                parent.map(|p| p.object_id()),
                Some(id.object_id()),
                &message,
                &durable,
            )
            .map_err(ref_err)
    }

    /// Moves a detached `HEAD` from `parent` to `id`, as [`Repo::publish`]
    /// moves a branch.
    fn publish_detached(
        &self,
        parent: Option<CommitId>,
        id: CommitId,
        options: &CommitOptions,
    ) -> Result<()> {
        let expected = match parent {
            Some(p) => Head::Detached(p.object_id()),
            None => self.refs.head().map_err(ref_err)?,
        };
        let message = reflog_message(options);
        let durable = || self.store().sync();
        self.refs
            .update_head_once_durable(
                &expected,
                &Head::Detached(id.object_id()),
                &message,
                &durable,
            )
            .map_err(ref_err)
    }

    /// Every commit a ref names: branches, remote-tracking refs, tags and a
    /// detached `HEAD`.
    pub fn roots(&self) -> Result<Vec<CommitId>> {
        let mut roots: Vec<CommitId> = self
            .refs
            .list()
            .map_err(ref_err)?
            .into_iter()
            .chain(self.tracking_refs().list().map_err(ref_err)?)
            .chain(self.tags().list().map_err(ref_err)?)
            .map(|(_, id)| CommitId::new(id))
            .collect();
        if let Head::Detached(id) = self.refs.head().map_err(ref_err)? {
            roots.push(CommitId::new(id));
        }
        Ok(roots)
    }

    /// Checks everything the refs reach (see [`fsck`]); with
    /// [`ReadData::Yes`] also every record in the packs, reachable or not.
    /// A ref that cannot be read is reported, and the others still checked.
    pub fn fsck(&self, read_data: ReadData) -> Result<FsckReport> {
        let mut roots = Vec::new();
        let mut bad_refs = Vec::new();
        for name in self.refs.names().map_err(ref_err)? {
            match self.refs.get(&name) {
                Ok(Some(id)) => roots.push(CommitId::new(id)),
                Ok(None) => {}
                Err(e) => bad_refs.push((name.to_string(), ref_err(e))),
            }
        }
        let tracking = self.tracking_refs();
        for name in tracking.names().map_err(ref_err)? {
            match tracking.get(&name) {
                Ok(Some(id)) => roots.push(CommitId::new(id)),
                Ok(None) => {}
                Err(e) => bad_refs.push((format!("remotes/{name}"), ref_err(e))),
            }
        }
        let tags = self.tags();
        for name in tags.names().map_err(ref_err)? {
            match tags.get(&name) {
                Ok(Some(id)) => roots.push(CommitId::new(id)),
                Ok(None) => {}
                Err(e) => bad_refs.push((format!("tags/{name}"), ref_err(e))),
            }
        }
        match self.refs.head() {
            Ok(Head::Detached(id)) => roots.push(CommitId::new(id)),
            Ok(Head::Branch(_)) => {}
            Err(e) => bad_refs.push(("HEAD".to_owned(), ref_err(e))),
        }
        let mut report = fsck(self.store().as_ref(), &roots, read_data);
        report.bad_refs = bad_refs;
        if let Objects::Local(store) = &self.objects {
            report.damaged_packs = store.recovery().damaged_packs.clone();
            if read_data == ReadData::Yes {
                report.damaged_records = store.verify_all();
            }
        }
        Ok(report)
    }

    /// Removes what nothing keeps: objects not reachable from a branch, a
    /// remote-tracking ref, a tag, a detached `HEAD`, or a reflog entry younger than `grace` (so a branch
    /// moved or deleted by mistake can be restored for that long), and not
    /// written through this handle since it was opened. See
    /// [`PackStore::gc`] for why this is safe while commits run.
    pub fn gc(&self, grace: std::time::Duration, mode: GcMode) -> Result<GcStats> {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let cutoff_us = now_us.saturating_sub(i64::try_from(grace.as_micros()).unwrap_or(i64::MAX));
        let mut roots = self.roots()?;
        // A branch file also holds its value before (see `Refs::held`).
        for name in self.refs.names().map_err(ref_err)? {
            roots.extend(self.refs.held(&name).map_err(ref_err)?.into_iter().map(CommitId::new));
        }
        let tracking = self.tracking_refs();
        for name in tracking.names().map_err(ref_err)? {
            roots.extend(tracking.held(&name).map_err(ref_err)?.into_iter().map(CommitId::new));
        }
        let tags = self.tags();
        for name in tags.names().map_err(ref_err)? {
            roots.extend(tags.held(&name).map_err(ref_err)?.into_iter().map(CommitId::new));
        }
        let mut logs = vec![self.refs.head_reflog().map_err(ref_err)?];
        for name in self.refs.logged().map_err(ref_err)? {
            logs.push(self.refs.reflog(&name).map_err(ref_err)?);
        }
        for name in tracking.logged().map_err(ref_err)? {
            logs.push(tracking.reflog(&name).map_err(ref_err)?);
        }
        for name in tags.logged().map_err(ref_err)? {
            logs.push(tags.reflog(&name).map_err(ref_err)?);
        }
        for entry in logs.into_iter().flatten() {
            if entry.time_unix_us >= cutoff_us {
                roots.extend(entry.old.into_iter().chain(entry.new).map(CommitId::new));
            }
        }
        let Objects::Local(store) = &self.objects else {
            return Err(Error::Unsupported {
                what: "gc of a repository whose objects are in an object store",
            });
        };
        let mut live = reachable(store.as_ref(), &roots)?;
        // The work tree's index may hold a snapshot no commit names yet
        // (a library caller's): what of it the store has is kept too. The
        // index is a cache, so what it names and the store lacks is not an
        // error here.
        if let Ok(index) = crate::worktree::index::Index::read(&self.dir)
            && let Some(snapshot) = index.root.id.filter(|t| *t != index.base_tree)
        {
            crate::fsck::for_each_in_trees(store.as_ref(), &[snapshot], &mut |reached| {
                match reached {
                    Reached::Tree(id) => live.insert(id.object_id()),
                    Reached::Blob(f) => live.insert(f.id.object_id()),
                    Reached::Commit(_) | Reached::Broken { .. } => false,
                };
                Ok(())
            })?;
        }
        Ok(store.gc(&live, mode)?)
    }

    /// Rewrites the local store's index as one sorted table if its log of
    /// entries has grown long (see `PackStore::fold_index`): for a
    /// long-lived writer such as a mount, which never reopens the store.
    /// Returns whether it did; a store that is not local has nothing to do.
    pub fn fold_index(&self) -> Result<bool> {
        match &self.objects {
            Objects::Local(store) => Ok(store.fold_index()?),
            Objects::Remote(_) => Ok(false),
        }
    }

    /// The branch `name`, validated.
    pub fn branch(name: &str) -> Result<RefName> {
        RefName::try_from(name).map_err(ref_err)
    }
}

/// Whether `dir` holds a repository: a format file, or (made before
/// format files) a `HEAD`.
fn is_repo_dir(dir: &Path) -> bool {
    dir.join(format::FORMAT_FILE).exists() || dir.join("HEAD").exists()
}

/// The longest `.vst/store` read (a URL and a number).
const STORE_FILE_LEN_MAX: u64 = 4096;

/// The URL and cache limit `dir/store` names, if there is one.
fn read_store_file(dir: &Path) -> Result<Option<(String, u64)>> {
    let Some((path, text)) = format::read_small(dir, STORE_FILE, STORE_FILE_LEN_MAX)? else {
        return Ok(None);
    };
    let mut lines = text.lines();
    match (lines.next(), lines.next().and_then(|l| l.parse().ok())) {
        (Some(url), Some(len_max)) => Ok(Some((url.to_owned(), len_max))),
        _ => Err(Error::DamagedRepoFile { path, reason: "want a URL line and a cache size line" }),
    }
}

/// The object store at `url`, reached with `settings`.
fn open_remote_store(
    url: &str,
    settings: Settings<'_>,
    cache: Option<vst_cas::remote::CacheOptions>,
) -> Result<RemoteStore> {
    let config = vst_cas::remote::S3Config::from_url(url, settings)?;
    let remote = vst_cas::remote::Remote::s3(&config)?;
    let options = vst_cas::remote::RemoteOptions { cache, ..Default::default() };
    Ok(remote.store(options)?)
}

/// Every object reachable from `roots`: commits, trees and blobs. An
/// object that cannot be read is an error: GC must not guess.
fn reachable(store: &dyn Store, roots: &[CommitId]) -> Result<HashSet<ObjectId>> {
    let mut live = HashSet::new();
    for_each_reachable(store, roots, &mut |reached| {
        match reached {
            Reached::Commit(id) => live.insert(id.object_id()),
            Reached::Tree(id) => live.insert(id.object_id()),
            Reached::Blob(f) => live.insert(f.id.object_id()),
            Reached::Broken { error, .. } => return Err(error),
        };
        Ok(())
    })?;
    Ok(live)
}

/// The reflog line for a commit: its message's first line.
fn reflog_message(options: &CommitOptions) -> String {
    format!("commit: {}", options.message.lines().next().unwrap_or(""))
}

/// `options` for the objects of a commit about to be published: not
/// synced by the commit, since publishing syncs them while it writes the
/// ref.
fn unsynced(options: &CommitOptions) -> CommitOptions {
    CommitOptions { durability: Durability::None, ..options.clone() }
}

pub(crate) fn ref_err(e: RefError) -> Error {
    match e {
        RefError::Store(e) => Error::Store(e),
        other => Error::Ref(other),
    }
}
