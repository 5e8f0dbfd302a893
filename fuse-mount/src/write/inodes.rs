//! The inode table: nodes by inode, directories loaded from the working
//! set on first use, names and hard links, attributes, and nodes leaving
//! the table once out of the tree, closed and forgotten by the kernel.

use super::*;

impl Inner {
    pub(super) fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn file(&self, ino: Ino) -> Result<&FileNode, Errno> {
        match &self.node(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) | Kind::Special { .. } => Err(Errno::EINVAL),
        }
    }

    /// The length of a file's content: its overlay's, else the stored one.
    pub(super) fn size(&self, ino: Ino) -> Result<u64, Errno> {
        let f = self.file(ino)?;
        Ok(f.overlay.as_ref().map_or(f.stored.size, |o| o.size))
    }

    pub(super) fn file_mut(&mut self, ino: Ino) -> Result<&mut FileNode, Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) | Kind::Special { .. } => Err(Errno::EINVAL),
        }
    }

    /// The path of `ino`; `None` if it is no longer in the tree.
    pub(super) fn path(&self, ino: Ino) -> Option<RepoPath> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let node = self.nodes.get(&at)?;
            names.push(node.name.as_ref()?);
            at = node.parent;
        }
        let mut bytes = Vec::new();
        for name in names.iter().rev() {
            if !bytes.is_empty() {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(name.as_bytes());
        }
        repo_path(&bytes)
    }

    /// The path of `name` in directory `parent`.
    pub(super) fn child_path(&self, parent: Ino, name: &Name) -> Result<RepoPath, Errno> {
        let dir = self.path(parent).ok_or(Errno::ENOENT)?;
        dir.join(name).map_err(|_| Errno::ENAMETOOLONG)
    }

    /// Every path of `ino`: its name's, then its hard links' (empty if it
    /// is no longer in the tree).
    pub(super) fn paths(&self, ino: Ino) -> Vec<RepoPath> {
        let Some(first) = self.path(ino) else { return Vec::new() };
        let links = self.nodes.get(&ino).map_or(&[][..], |n| &n.links[..]);
        let mut all = vec![first];
        all.extend(links.iter().filter_map(|(p, n)| self.child_path(*p, n).ok()));
        all
    }

    /// Takes the name `name` in `parent` away from `ino` (the caller takes
    /// it out of the directory); returns whether the node still has a
    /// name, which one of its hard links then is.
    fn remove_link(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> bool {
        let Some(node) = self.nodes.get_mut(&ino) else { return false };
        let is = |p: Ino, n: &Name| p == parent && n.as_bytes() == name;
        if node.name.as_ref().is_some_and(|n| is(node.parent, n)) {
            match node.links.pop() {
                Some((p, n)) => {
                    node.parent = p;
                    node.name = Some(n);
                }
                None => return false,
            }
        } else {
            node.links.retain(|(p, n)| !is(*p, n));
        }
        node.meta.ctime = now();
        node.name.is_some()
    }

    /// Moves the name `name` in `parent` of `ino` to `new_name` in
    /// `new_parent` (a rename).
    pub(super) fn move_link(&mut self, ino: Ino, (parent, name): (Ino, &Name), to: (Ino, Name)) {
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        if node.parent == parent && node.name.as_ref() == Some(name) {
            (node.parent, node.name) = (to.0, Some(to.1));
        } else if let Some(link) = node.links.iter_mut().find(|(p, n)| *p == parent && n == name) {
            *link = to;
        }
    }

    /// The paths of the special files (a status and a commit skip them).
    pub(super) fn special_paths(&self) -> Vec<RepoPath> {
        let mut found: Vec<RepoPath> =
            self.specials.iter().flat_map(|&ino| self.paths(ino)).collect();
        found.sort();
        found
    }

    /// The inode of the directory at `path` if it and every directory above
    /// it are loaded.
    pub(super) fn loaded(&self, path: &RepoPath) -> Option<Ino> {
        let mut at = ROOT;
        for name in path.components() {
            match &self.nodes.get(&at)?.kind {
                Kind::Dir(Some(children)) => at = *children.by_name.get(name)?,
                _ => return None,
            }
        }
        Some(at)
    }

    /// The children of directory `ino`, loaded from the working set the
    /// first time.
    pub(super) fn children(&mut self, ino: Ino) -> Result<&BTreeMap<Name, Ino>, Errno> {
        self.load(ino)?;
        match &self.node(ino)?.kind {
            Kind::Dir(Some(children)) => Ok(&children.by_name),
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub(super) fn children_mut(&mut self, ino: Ino) -> Result<&mut Children, Errno> {
        self.load(ino)?;
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(Some(children)) => Ok(children),
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub(super) fn child(&mut self, parent: Ino, name: &[u8]) -> Result<Option<Ino>, Errno> {
        Ok(self.children(parent)?.get(name).copied())
    }

    fn load(&mut self, ino: Ino) -> Result<(), Errno> {
        match &self.node(ino)?.kind {
            Kind::Dir(Some(_)) => return Ok(()),
            Kind::Dir(None) => {}
            _ => return Err(Errno::ENOTDIR),
        }
        let listed = match self.path(ino) {
            Some(path) => self.ws.list_dir(&path).map_err(|e| errno(&e))?,
            None => Vec::new(),
        };
        let (uid, gid, time) = {
            let meta = self.node(ino)?.meta;
            (meta.uid, meta.gid, self.base_time)
        };
        let mut children = Children::default();
        for (name, stat) in listed {
            let (kind, perm) = match stat {
                Stat::File(f) => (
                    Kind::File(FileNode { stored: f, overlay: None, writers: 0 }),
                    if f.executable { 0o755 } else { 0o644 },
                ),
                Stat::Symlink(t) => (Kind::Symlink(t), 0o777),
                Stat::Dir(_) => (Kind::Dir(None), 0o755),
            };
            let child = self.next_ino;
            self.next_ino += 1;
            let meta = Meta { perm, uid, gid, atime: time, mtime: time, ctime: time };
            let node = Node {
                parent: ino,
                name: Some(name.clone()),
                links: Vec::new(),
                kind,
                meta,
                lookups: 0,
            };
            let is_dir = matches!(node.kind, Kind::Dir(_));
            self.nodes.insert(child, node);
            children.add(name, child, is_dir);
        }
        self.node_mut(ino)?.kind = Kind::Dir(Some(children));
        Ok(())
    }

    /// Adds a new node `name` in directory `parent`.
    pub(super) fn insert(
        &mut self,
        parent: Ino,
        name: Name,
        kind: Kind,
        meta: Meta,
    ) -> Result<Ino, Errno> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_dir = matches!(kind, Kind::Dir(_));
        let node =
            Node { parent, name: Some(name.clone()), links: Vec::new(), kind, meta, lookups: 0 };
        self.nodes.insert(ino, node);
        self.children_mut(parent)?.add(name, ino, is_dir);
        Ok(ino)
    }

    pub(super) fn open_handle(&mut self, ino: Ino, writable: bool) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (ino, writable));
        if writable && let Ok(f) = self.file_mut(ino) {
            f.writers += 1;
        }
        fh
    }
}

impl Shared {
    fn attr_of(&self, ino: Ino, node: &Node, subdirs: usize) -> FileAttr {
        let (kind, size, nlink) = match &node.kind {
            Kind::Dir(children) => (
                FileType::Directory,
                children.as_ref().map_or(0, |c| c.by_name.len()) as u64,
                2 + subdirs,
            ),
            Kind::File(f) => {
                (FileType::RegularFile, f.overlay.as_ref().map_or(f.stored.size, |o| o.size), 1)
            }
            Kind::Symlink(t) => (FileType::Symlink, t.as_bytes().len() as u64, 1),
            Kind::Special { kind, .. } => (*kind, 0, 1),
        };
        let nlink = if node.name.is_none() && ino != ROOT { 0 } else { nlink + node.links.len() };
        let rdev = match node.kind {
            Kind::Special { rdev, .. } => rdev,
            _ => 0,
        };
        let Meta { perm, uid, gid, atime, mtime, ctime } = node.meta;
        let nlink = u64::try_from(nlink).unwrap_or(u64::MAX);
        Attr { ino, kind, perm, size, nlink, uid, gid, rdev, atime, mtime, ctime }.to_fuse()
    }

    /// The attributes of `ino` (a directory is loaded for its link count).
    pub(super) fn attr(&self, inner: &mut Inner, ino: Ino) -> Result<FileAttr, Errno> {
        let is_dir = matches!(inner.node(ino)?.kind, Kind::Dir(_));
        let subdirs = if is_dir {
            inner.load(ino)?;
            let dirs = match &inner.node(ino)?.kind {
                Kind::Dir(Some(children)) => children.dirs,
                _ => 0,
            };
            // Checked only for small directories: the kernel asks for a
            // directory's attributes after every change in it, and a check
            // of every entry each time made a debug build quadratic in a
            // directory's length (20,000 creates took minutes).
            if cfg!(debug_assertions) && inner.children(ino)?.len() <= DEBUG_RECOUNT_LEN_MAX {
                let below: Vec<Ino> = inner.children(ino)?.values().copied().collect();
                let is_dir =
                    |c: &Ino| matches!(inner.nodes.get(c).map(|n| &n.kind), Some(Kind::Dir(_)));
                assert_eq!(
                    dirs,
                    below.iter().filter(|c| is_dir(c)).count(),
                    "subdirectories miscounted"
                );
            }
            dirs
        } else {
            0
        };
        Ok(self.attr_of(ino, inner.node(ino)?, subdirs))
    }

    /// Takes the entry `name` (of `ino`) out of directory `parent`; if it
    /// was the node's last name, the node leaves the tree ([`Shared::orphan`]).
    pub(super) fn unlink_entry(&self, inner: &mut Inner, parent: Ino, name: &Name, ino: Ino) {
        let is_dir = matches!(inner.nodes.get(&ino).map(|n| &n.kind), Some(Kind::Dir(_)));
        if let Some(Node { kind: Kind::Dir(Some(children)), .. }) = inner.nodes.get_mut(&parent) {
            children.remove(name.as_bytes(), is_dir);
        }
        if !inner.remove_link(ino, parent, name.as_bytes()) {
            self.orphan(inner, ino);
        }
    }

    /// Takes `ino` out of the tree (after an unlink, rmdir, or a rename
    /// over it, of its last name): its name goes, its overlay too unless it
    /// is still open.
    fn orphan(&self, inner: &mut Inner, ino: Ino) {
        let t = now();
        let mut below = vec![ino];
        while let Some(ino) = below.pop() {
            let mut emptied = None;
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.name = None;
                node.links.clear();
                node.meta.ctime = t;
                match &mut node.kind {
                    // A directory a checkout removes may be loaded: what is
                    // below it leaves the tree with it, and it lists empty.
                    Kind::Dir(Some(children)) => emptied = Some(std::mem::take(children)),
                    Kind::File(f) if f.writers == 0 => {
                        if let Some(o) = f.overlay.take() {
                            self.discard_overlay(inner, &o, true);
                        }
                    }
                    _ => {}
                }
            }
            for (name, child) in emptied.map(|c| c.by_name).unwrap_or_default() {
                // A file with a hard link elsewhere stays there.
                if !inner.remove_link(child, ino, name.as_bytes()) {
                    below.push(child);
                }
            }
            inner.dirty.remove(&ino);
            inner.specials.remove(&ino);
            self.drop_if_unused(inner, ino);
        }
    }

    /// Removes `ino` from the inode table once nothing can reach it: out
    /// of the tree, no handle open, and every lookup forgotten by the
    /// kernel. A long-lived mount's table so stays as large as the loaded
    /// tree plus what is still open.
    pub(super) fn drop_if_unused(&self, inner: &mut Inner, ino: Ino) {
        let unused = ino != ROOT
            && inner.nodes.get(&ino).is_some_and(|n| n.name.is_none() && n.lookups == 0)
            && !inner.handles.values().any(|(i, _)| *i == ino);
        if !unused {
            return;
        }
        if let Some(Node { kind: Kind::File(f), .. }) = inner.nodes.remove(&ino)
            && let Some(o) = f.overlay
        {
            // As `orphan` does: a journal record may still name it.
            self.discard_overlay(inner, &o, true);
        }
        inner.dirty.remove(&ino);
        inner.closed.remove(&ino);
    }

    /// The kernel dropped `count` of its lookups of `ino`.
    pub(super) fn forget(&self, inner: &mut Inner, ino: Ino, count: u64) {
        if let Some(node) = inner.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
        }
        self.drop_if_unused(inner, ino);
    }

    /// The attributes of `ino` for a reply that hands the kernel the inode
    /// (an entry): counts the lookup that the kernel will later forget.
    pub(super) fn entry(&self, inner: &mut Inner, ino: Ino) -> Result<FileAttr, Errno> {
        let attr = self.attr(inner, ino)?;
        inner.node_mut(ino)?.lookups += 1;
        Ok(attr)
    }

    pub(super) fn touch_dir(&self, inner: &mut Inner, ino: Ino) {
        if let Some(node) = inner.nodes.get_mut(&ino) {
            let t = now();
            node.meta.mtime = t;
            node.meta.ctime = t;
        }
    }

    /// The metadata of a new node made by `req` in `parent`: owned by the
    /// caller, except that a set-group-id directory passes on its group
    /// (and, to a new directory, the bit), as on ext4.
    pub(super) fn new_meta(
        &self,
        inner: &Inner,
        parent: Ino,
        req: &Request,
        perm: u32,
        dir: bool,
    ) -> Meta {
        let t = now();
        let mut meta = Meta {
            perm: (perm & 0o7777) as u16,
            uid: req.uid(),
            gid: req.gid(),
            atime: t,
            mtime: t,
            ctime: t,
        };
        if let Ok(p) = inner.node(parent)
            && p.meta.perm & 0o2000 != 0
        {
            meta.gid = p.meta.gid;
            if dir {
                meta.perm |= 0o2000;
            }
        }
        meta
    }
}
