//! The kernel adapter: [`WriteFs`], the `fuser::Filesystem` that runs each
//! request on [`Shared`] behind a panic guard and turns results into
//! replies.

use super::*;
use crate::kernel::{self, xattr_reply};

/// The writable filesystem the kernel talks to.
pub(crate) struct WriteFs {
    pub(crate) shared: Arc<Shared>,
}

impl WriteFs {
    /// Runs one request's handler ([`kernel::guard`]).
    fn guard(&self, op: &'static str, f: impl FnOnce()) {
        kernel::guard(&self.shared.error_log, op, f)
    }

    fn ttl(&self) -> Duration {
        self.shared.ttl
    }
}

fn reply_entry(reply: ReplyEntry, ttl: Duration, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&ttl, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for WriteFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // After a checkout invalidates a file's attributes, a read through
        // a handle opened before must fetch them again (the size changed),
        // and drop pages cached under the old ones.
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.shared.checkpoint() {
            self.shared.log(&format!("saving the uncommitted tree at unmount: {e}"));
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.guard("lookup", || reply_entry(reply, self.ttl(), self.shared.lookup(parent.0, name)))
    }

    // fuser's default `batch_forget` calls this for each inode (its
    // `ForgetOne` is not exported, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.guard("forget", || self.shared.forget(&mut self.shared.lock(), ino.0, nlookup))
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.guard("getattr", || match self.shared.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl(), &attr),
            Err(e) => reply.error(e),
        })
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.guard("setattr", || {
            match self.shared.setattr(ino.0, mode, uid, gid, size, atime, mtime) {
                Ok(attr) => reply.attr(&self.ttl(), &attr),
                Err(e) => reply.error(e),
            }
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.guard("readlink", || match self.shared.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        })
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.guard("mknod", || {
            let result = if (mode & nix::libc::S_IFMT) == nix::libc::S_IFREG {
                self.shared.create_file(req, parent.0, name, mode, umask, None).map(|(a, _)| a)
            } else {
                self.shared.mknod_special(req, parent.0, name, mode, umask, rdev)
            };
            reply_entry(reply, self.ttl(), result)
        })
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.guard("mkdir", || {
            reply_entry(reply, self.ttl(), self.shared.mkdir(req, parent.0, name, mode, umask))
        })
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guard("unlink", || reply_empty(reply, self.shared.unlink(parent.0, name, false)))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guard("rmdir", || reply_empty(reply, self.shared.unlink(parent.0, name, true)))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.guard("symlink", || {
            reply_entry(reply, self.ttl(), self.shared.symlink(req, parent.0, link_name, target))
        })
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.guard("rename", || {
            reply_empty(reply, self.shared.rename(parent.0, name, newparent.0, newname, flags))
        })
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.guard("link", || {
            reply_entry(reply, self.ttl(), self.shared.link(ino.0, newparent.0, newname))
        })
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.guard("open", || match self.shared.open_file(ino.0, flags) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.guard("read", || match self.shared.read(ino.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        })
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.guard("write", || match self.shared.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        })
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Content is finalized at release (after the last close).
        reply.ok()
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.guard("release", || reply_empty(reply, self.shared.release(fh.0)))
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.guard("fsync", || reply_empty(reply, self.shared.fsync(ino.0)))
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.guard("opendir", || {
            let kind = self.shared.lock().node(ino.0).map(|n| matches!(n.kind, Kind::Dir(_)));
            match kind {
                Ok(true) => {
                    reply.opened(FileHandle(self.shared.open_listing()), FopenFlags::empty())
                }
                Ok(false) => reply.error(Errno::ENOTDIR),
                Err(e) => reply.error(e),
            }
        })
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.guard("readdir", || match self.shared.listing(ino.0, fh.0, offset) {
            Ok(listing) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (child, next, kind, name) in listing.iter().skip(start) {
                    if reply.add(INodeNo(*child), *next, *kind, OsStr::from_bytes(name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        })
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.guard("releasedir", || {
            self.shared.release_listing(fh.0);
            reply.ok()
        })
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.guard("fsyncdir", || reply_empty(reply, self.shared.sync()))
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.guard("statfs", || match nix::sys::statvfs::statvfs(&self.shared.state_dir) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                NAME_LEN_MAX as u32,
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        })
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.guard("getxattr", || {
            if ino.0 != ROOT || name.as_bytes() != XATTR_REPO {
                return reply.error(Errno::NO_XATTR);
            }
            xattr_reply(reply, size, self.shared.repo_dir().as_os_str().as_bytes())
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.guard("listxattr", || {
            let names: &[u8] = if ino.0 == ROOT { b"user.vst.repo\0" } else { b"" };
            xattr_reply(reply, size, names)
        })
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP)
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        self.guard("access", || match self.shared.lock().node(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        })
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.guard("create", || {
            let writable = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
            match self.shared.create_file(req, parent.0, name, mode, umask, Some(writable)) {
                Ok((attr, fh)) => reply.created(
                    &self.ttl(),
                    &attr,
                    Generation(0),
                    FileHandle(fh.unwrap_or(0)),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(e),
            }
        })
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.guard("fallocate", || {
            reply_empty(reply, self.shared.fallocate(ino.0, offset, length, mode))
        })
    }
}
