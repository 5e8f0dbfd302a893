//! The filesystem operations, on [`Shared`]: each takes the lock, changes
//! the inode table, the working set and the journal together, and returns
//! what the kernel is answered ([`super::fuse`] adapts them).

use super::*;

impl Shared {
    pub(super) fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FileAttr, Errno> {
        // A name no entry can have (`.vst` among them) is simply not there;
        // creating one is `EINVAL`.
        let name = name_of(name).map_err(|e| if e == Errno::EINVAL { Errno::ENOENT } else { e })?;
        let mut inner = self.lock();
        let ino = inner.child(parent, name.as_bytes())?.ok_or(Errno::ENOENT)?;
        self.entry(&mut inner, ino)
    }

    pub(super) fn getattr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let mut inner = self.lock();
        self.attr(&mut inner, ino)
    }

    pub(super) fn create_file(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        writable: Option<bool>,
    ) -> Result<(FileAttr, Option<u64>), Errno> {
        let name = name_of(name)?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(parent, &name)?;
        let perm = mode & !umask;
        let entry = FileEntry { id: BlobId::of(b""), size: 0, executable: perm & 0o100 != 0 };
        inner.ws.put_file(&path, entry).map_err(|e| errno(&e))?;
        let record = Record::File {
            path: path_bytes(&path),
            id: *entry.id.as_bytes(),
            size: 0,
            executable: entry.executable,
        };
        self.journal(&mut inner, record);
        let file = FileNode { stored: entry, overlay: None, writers: 0 };
        let meta = self.new_meta(&inner, parent, req, perm, false);
        let ino = inner.insert(parent, name, Kind::File(file), meta)?;
        self.touch_dir(&mut inner, parent);
        let fh = writable.map(|w| inner.open_handle(ino, w));
        Ok((self.entry(&mut inner, ino)?, fh))
    }

    pub(super) fn mkdir(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, Errno> {
        let name = name_of(name)?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(parent, &name)?;
        inner.ws.create_dir_all(&path).map_err(|e| errno(&e))?;
        self.journal(&mut inner, Record::Mkdir { path: path_bytes(&path) });
        let meta = self.new_meta(&inner, parent, req, mode & !umask, true);
        let ino = inner.insert(parent, name, Kind::Dir(Some(Children::default())), meta)?;
        self.touch_dir(&mut inner, parent);
        self.entry(&mut inner, ino)
    }

    pub(super) fn symlink(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, Errno> {
        let name = name_of(name)?;
        let target_bytes = target.as_os_str().as_bytes();
        let target = SymlinkTarget::try_from(target_bytes).map_err(|e| match e {
            vst::tree::InvalidSymlink::TooLong(_) => Errno::ENAMETOOLONG,
            vst::tree::InvalidSymlink::Empty => Errno::ENOENT,
            _ => Errno::EINVAL,
        })?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(parent, &name)?;
        inner.ws.symlink(&path, target_bytes).map_err(|e| errno(&e))?;
        let record = Record::Symlink { path: path_bytes(&path), target: target_bytes.to_vec() };
        self.journal(&mut inner, record);
        let meta = self.new_meta(&inner, parent, req, 0o777, false);
        let ino = inner.insert(parent, name, Kind::Symlink(target), meta)?;
        self.touch_dir(&mut inner, parent);
        self.entry(&mut inner, ino)
    }

    /// A FIFO, socket or device node: an entry of the mount only
    /// ([`Kind::Special`]).
    pub(super) fn mknod_special(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<FileAttr, Errno> {
        let kind = match mode & nix::libc::S_IFMT {
            nix::libc::S_IFIFO => FileType::NamedPipe,
            nix::libc::S_IFSOCK => FileType::Socket,
            nix::libc::S_IFCHR => FileType::CharDevice,
            nix::libc::S_IFBLK => FileType::BlockDevice,
            _ => return Err(Errno::EINVAL),
        };
        let name = name_of(name)?;
        let mut inner = self.lock();
        if inner.child(parent, name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        // Its path must be one the working set could hold, as any entry's.
        inner.child_path(parent, &name)?;
        let meta = self.new_meta(&inner, parent, req, mode & !umask, false);
        let ino = inner.insert(parent, name, Kind::Special { kind, rdev }, meta)?;
        inner.specials.insert(ino);
        self.touch_dir(&mut inner, parent);
        self.entry(&mut inner, ino)
    }

    /// A hard link: `new_name` in `new_parent` becomes another name of
    /// `ino` (not a directory). The working set and the journal get a file
    /// (or symlink) of its own at the new path, with the same content.
    pub(super) fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &OsStr,
    ) -> Result<FileAttr, Errno> {
        let new_name = name_of(new_name)?;
        let mut inner = self.lock();
        let node = inner.node(ino)?;
        if node.name.is_none() {
            return Err(Errno::ENOENT);
        }
        if matches!(node.kind, Kind::Dir(_)) {
            return Err(Errno::EPERM);
        }
        if !matches!(inner.node(new_parent)?.kind, Kind::Dir(_)) {
            return Err(Errno::ENOTDIR);
        }
        if inner.child(new_parent, new_name.as_bytes())?.is_some() {
            return Err(Errno::EEXIST);
        }
        let path = inner.child_path(new_parent, &new_name)?;
        let record = match &inner.node(ino)?.kind {
            // Its last finalized content; a dirty overlay reaches every
            // name when it is settled.
            Kind::File(f) => {
                let entry = f.stored;
                inner.ws.put_file(&path, entry).map_err(|e| errno(&e))?;
                Some(Record::File {
                    path: path_bytes(&path),
                    id: *entry.id.as_bytes(),
                    size: entry.size,
                    executable: entry.executable,
                })
            }
            Kind::Symlink(target) => {
                let target = target.as_bytes().to_vec();
                inner.ws.symlink(&path, &target).map_err(|e| errno(&e))?;
                Some(Record::Symlink { path: path_bytes(&path), target })
            }
            _ => None,
        };
        if let Some(record) = record {
            self.journal(&mut inner, record);
        }
        inner.children_mut(new_parent)?.add(new_name.clone(), ino, false);
        let node = inner.node_mut(ino)?;
        node.links.push((new_parent, new_name));
        node.meta.ctime = now();
        self.touch_dir(&mut inner, new_parent);
        self.entry(&mut inner, ino)
    }

    pub(super) fn unlink(&self, parent: Ino, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let name = name_of(name)?;
        let mut inner = self.lock();
        let ino = inner.child(parent, name.as_bytes())?.ok_or(Errno::ENOENT)?;
        let is_dir = matches!(inner.node(ino)?.kind, Kind::Dir(_));
        match (dir, is_dir) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if !inner.children(ino)?.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        if !matches!(inner.node(ino)?.kind, Kind::Special { .. }) {
            let path = inner.child_path(parent, &name)?;
            inner.ws.remove(&path).map_err(|e| errno(&e))?;
            self.journal(&mut inner, Record::Remove { path: path_bytes(&path) });
        }
        self.unlink_entry(&mut inner, parent, &name, ino);
        self.touch_dir(&mut inner, parent);
        Ok(())
    }

    pub(super) fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        let (name, new_name) = (name_of(name)?, name_of(new_name)?);
        let mut inner = self.lock();
        let ino = inner.child(parent, name.as_bytes())?.ok_or(Errno::ENOENT)?;
        if !matches!(inner.node(new_parent)?.kind, Kind::Dir(_)) {
            return Err(Errno::ENOTDIR);
        }
        let is_dir = matches!(inner.node(ino)?.kind, Kind::Dir(_));
        if is_dir {
            // Not into itself or below itself.
            let mut at = new_parent;
            loop {
                if at == ino {
                    return Err(Errno::EINVAL);
                }
                if at == ROOT {
                    break;
                }
                at = inner.node(at)?.parent;
            }
        }
        let target = inner.child(new_parent, new_name.as_bytes())?;
        if let Some(target) = target {
            if target == ino {
                return Ok(());
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            let target_is_dir = matches!(inner.node(target)?.kind, Kind::Dir(_));
            match (is_dir, target_is_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !inner.children(target)?.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        let from = inner.child_path(parent, &name)?;
        let to = inner.child_path(new_parent, &new_name)?;
        let special = |inner: &Inner, ino| {
            matches!(inner.nodes.get(&ino).map(|n| &n.kind), Some(Kind::Special { .. }))
        };
        if !special(&inner, ino) {
            inner.ws.rename(&from, &to).map_err(|e| errno(&e))?;
            self.journal(
                &mut inner,
                Record::Rename { from: path_bytes(&from), to: path_bytes(&to) },
            );
        } else if target.is_some_and(|t| !special(&inner, t)) {
            // A special file is not in the working set: what it replaces
            // leaves it.
            inner.ws.remove(&to).map_err(|e| errno(&e))?;
            self.journal(&mut inner, Record::Remove { path: path_bytes(&to) });
        }
        inner.children_mut(parent)?.remove(name.as_bytes(), is_dir);
        if let Some(target) = target {
            self.unlink_entry(&mut inner, new_parent, &new_name, target);
        }
        inner.children_mut(new_parent)?.add(new_name.clone(), ino, is_dir);
        inner.move_link(ino, (parent, &name), (new_parent, new_name));
        inner.node_mut(ino)?.meta.ctime = now();
        self.touch_dir(&mut inner, parent);
        self.touch_dir(&mut inner, new_parent);
        Ok(())
    }

    pub(super) fn open_file(&self, ino: Ino, flags: OpenFlags) -> Result<u64, Errno> {
        let mut inner = self.lock();
        match inner.node(ino)?.kind {
            Kind::File(_) => {}
            Kind::Dir(_) => return Err(Errno::EISDIR),
            Kind::Symlink(_) => return Err(Errno::ELOOP),
            // The kernel opens these itself.
            Kind::Special { .. } => return Err(Errno::ENXIO),
        }
        let writable = flags.acc_mode() != OpenAccMode::O_RDONLY;
        Ok(inner.open_handle(ino, writable))
    }

    pub(super) fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        enum Source {
            Overlay(Arc<File>, u64),
            Store(FileEntry),
        }
        let source = {
            let mut inner = self.lock();
            let file = inner.file(ino)?;
            let source = match &file.overlay {
                Some(o) => Source::Overlay(o.file.clone(), o.size),
                None => Source::Store(file.stored),
            };
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.meta.atime = now();
            }
            source
        };
        // The lock is released: a slow read holds up only this request.
        match source {
            Source::Overlay(file, file_size) => {
                let end = offset.saturating_add(u64::from(size)).min(file_size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                read_at(&file, offset, end - offset).map_err(|e| io_errno(&e))
            }
            Source::Store(entry) => {
                self.check_len(&entry)?;
                let bytes = self.windows.read(self.store.as_ref(), &entry, offset, size);
                bytes.map(|b| b.to_vec()).map_err(|e| {
                    match &e {
                        ReadError::Store { what, source } => self.log(&format!("{what}: {source}")),
                        ReadError::Length { what, len } => {
                            self.log(&format!("{what}: the store returned {len} bytes"))
                        }
                    }
                    e.errno()
                })
            }
        }
    }

    pub(super) fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let mut inner = self.lock();
        let file = self.overlay(&mut inner, ino, Fill::Content)?;
        file.write_all_at(data, offset).map_err(|e| io_errno(&e))?;
        let end = offset + data.len() as u64;
        if let Some(o) = &mut inner.file_mut(ino)?.overlay {
            o.size = o.size.max(end);
            o.dirty = true;
            o.generation += 1;
        }
        inner.dirty.insert(ino);
        let node = inner.node_mut(ino)?;
        let t = now();
        node.meta.mtime = t;
        node.meta.ctime = t;
        // The set-user-id and set-group-id bits a write clears reach us from
        // the kernel as a setattr of the mode.
        Ok(u32::try_from(data.len()).unwrap_or(u32::MAX))
    }

    fn truncate(&self, inner: &mut Inner, ino: Ino, size: u64) -> Result<(), Errno> {
        let fill = if size == 0 { Fill::Nothing } else { Fill::Content };
        if inner.size(ino)? == size && inner.file(ino)?.overlay.is_none() {
            return Ok(());
        }
        self.resize(inner, ino, size, fill)
    }

    /// Sets the length of `ino`'s content (in its overlay, made with
    /// `fill` if it has none), and finalizes it at once if no writable
    /// handle is open (no release will come).
    fn resize(&self, inner: &mut Inner, ino: Ino, size: u64, fill: Fill) -> Result<(), Errno> {
        let file = self.overlay(inner, ino, fill)?;
        file.set_len(size).map_err(|e| io_errno(&e))?;
        if let Some(o) = &mut inner.file_mut(ino)?.overlay {
            o.size = size;
            o.dirty = true;
            o.generation += 1;
        }
        inner.dirty.insert(ino);
        if inner.file(ino)?.writers == 0 {
            self.finalize(inner, ino)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn setattr(
        &self,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr, Errno> {
        let mut inner = self.lock();
        let t = now();
        if let Some(size) = size {
            match inner.node(ino)?.kind {
                Kind::File(_) => {}
                Kind::Dir(_) => return Err(Errno::EISDIR),
                Kind::Symlink(_) | Kind::Special { .. } => return Err(Errno::EINVAL),
            }
            self.truncate(&mut inner, ino, size)?;
            let node = inner.node_mut(ino)?;
            node.meta.mtime = t;
            node.meta.ctime = t;
        }
        if let Some(mode) = mode {
            let perm = (mode & 0o7777) as u16;
            let executable = perm & 0o100 != 0;
            let was = match &inner.node(ino)?.kind {
                Kind::File(f) => Some(f.stored.executable),
                _ => None,
            };
            if let Some(was) = was
                && was != executable
            {
                for path in inner.paths(ino) {
                    inner.ws.set_executable(&path, executable).map_err(|e| errno(&e))?;
                    self.journal(
                        &mut inner,
                        Record::Executable { path: path_bytes(&path), executable },
                    );
                }
            }
            if let Kind::File(f) = &mut inner.node_mut(ino)?.kind {
                f.stored.executable = executable;
            }
            let node = inner.node_mut(ino)?;
            node.meta.perm = perm;
            node.meta.ctime = t;
        }
        if uid.is_some() || gid.is_some() {
            let node = inner.node_mut(ino)?;
            if let Some(uid) = uid {
                node.meta.uid = uid;
            }
            if let Some(gid) = gid {
                node.meta.gid = gid;
            }
            node.meta.ctime = t;
        }
        let resolve = |x: TimeOrNow| match x {
            TimeOrNow::SpecificTime(s) => s,
            TimeOrNow::Now => t,
        };
        if let Some(a) = atime {
            let node = inner.node_mut(ino)?;
            node.meta.atime = resolve(a);
            node.meta.ctime = t;
        }
        if let Some(m) = mtime {
            let node = inner.node_mut(ino)?;
            node.meta.mtime = resolve(m);
            node.meta.ctime = t;
        }
        self.attr(&mut inner, ino)
    }

    pub(super) fn release(&self, fh: u64) -> Result<(), Errno> {
        let mut inner = self.lock();
        let Some((ino, writable)) = inner.handles.remove(&fh) else { return Ok(()) };
        let released = if writable { self.release_writer(&mut inner, ino) } else { Ok(()) };
        self.drop_if_unused(&mut inner, ino);
        let backlog = inner.closed.len() >= SETTLE_QUEUE_LEN_MAX;
        drop(inner);
        if backlog {
            // Each file waiting for the settler holds its overlay open: a
            // writer closing files faster than the settler's share of the
            // lock lets it keep up would run the daemon out of file
            // descriptors. The close that fills the queue settles it (the
            // hashing without the lock, as the settler would).
            self.settle_round();
        }
        released
    }

    /// The last writable handle of `ino` closed: its content is final.
    fn release_writer(&self, inner: &mut Inner, ino: Ino) -> Result<(), Errno> {
        let Ok(f) = inner.file_mut(ino) else { return Ok(()) };
        f.writers = f.writers.saturating_sub(1);
        if f.writers > 0 {
            return Ok(());
        }
        if matches!(&f.overlay, Some(o) if o.dirty) && inner.path(ino).is_some() {
            // Hashed by the settler with the other files closed meanwhile,
            // without the lock: closing holds up no other request.
            inner.closed.insert(ino);
            self.settle_wake.notify_one();
            Ok(())
        } else {
            self.finalize(inner, ino)
        }
    }

    pub(super) fn fsync(&self, ino: Ino) -> Result<(), Errno> {
        let file = {
            let inner = self.lock();
            inner
                .file(ino)
                .ok()
                .and_then(|f| f.overlay.as_ref().map(|o| (o.file.clone(), o.number)))
        };
        if let Some((file, number)) = file {
            file.sync_data().map_err(|e| io_errno(&e))?;
            let mut inner = self.lock();
            let paths = inner.paths(ino);
            let perm = inner.node(ino)?.meta.perm;
            let records: Vec<Record> = match &mut inner.file_mut(ino)?.overlay {
                Some(o) if o.number == number && o.dirty && !paths.is_empty() => {
                    o.journaled = true;
                    let overlay = |path: &RepoPath| Record::Overlay {
                        path: path_bytes(path),
                        overlay: number,
                        executable: perm & 0o100 != 0,
                    };
                    paths.iter().map(overlay).collect()
                }
                _ => Vec::new(),
            };
            self.journal_all(&mut inner, &records);
        }
        self.sync()
    }

    /// A new directory handle (never 0).
    pub(super) fn open_listing(&self) -> u64 {
        self.last_listing.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The listing of directory handle `fh`, taken afresh at offset 0 (or
    /// if the handle has none).
    pub(super) fn listing(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
    ) -> Result<Arc<Vec<DirEntry>>, Errno> {
        let held = || self.listings.lock().unwrap_or_else(PoisonError::into_inner);
        if offset != 0
            && let Some(listing) = held().get(&fh)
        {
            return Ok(listing.clone());
        }
        let listing = Arc::new(self.list(ino)?);
        held().insert(fh, listing.clone());
        Ok(listing)
    }

    pub(super) fn release_listing(&self, fh: u64) {
        self.listings.lock().unwrap_or_else(PoisonError::into_inner).remove(&fh);
    }

    /// Every entry of directory `ino`, `.` and `..` first, each with the
    /// offset of the one after it.
    fn list(&self, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        let mut inner = self.lock();
        let parent = inner.node(ino)?.parent;
        let children: Vec<(Name, Ino)> =
            inner.children(ino)?.iter().map(|(n, i)| (n.clone(), *i)).collect();
        let kind = |inner: &Inner, i: Ino| match inner.nodes.get(&i).map(|n| &n.kind) {
            Some(Kind::File(_)) => FileType::RegularFile,
            Some(Kind::Symlink(_)) => FileType::Symlink,
            Some(Kind::Special { kind, .. }) => *kind,
            _ => FileType::Directory,
        };
        let mut all = vec![
            (ino, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        all.extend(children.into_iter().map(|(n, i)| (i, kind(&inner, i), n.as_bytes().to_vec())));
        Ok(all.into_iter().enumerate().map(|(at, (i, k, n))| (i, at as u64 + 1, k, n)).collect())
    }

    pub(super) fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        let inner = self.lock();
        match &inner.node(ino)?.kind {
            Kind::Symlink(t) => Ok(t.as_bytes().to_vec()),
            _ => Err(Errno::EINVAL),
        }
    }

    pub(super) fn fallocate(
        &self,
        ino: Ino,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut inner = self.lock();
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        if end > inner.size(ino)? {
            self.resize(&mut inner, ino, end, Fill::Content)?;
            inner.node_mut(ino)?.meta.mtime = now();
        }
        inner.node_mut(ino)?.meta.ctime = now();
        Ok(())
    }
}
