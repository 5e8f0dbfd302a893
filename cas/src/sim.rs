//! A simulated filesystem for crash and fault tests.
//!
//! [`SimFs`] keeps, for every file, the bytes written so far and the bytes
//! made durable by the last `sync`, and for every directory, the entries as
//! they are and as they were at its last `sync_dir`. It counts mutating
//! operations and can be told to fail one of them ([`Fault`]) or to "crash"
//! at one: that operation and every later one fail, as if the process had
//! died. [`SimFs::crash_image`] then builds the filesystem a reboot would
//! find, keeping, dropping or tearing what was not synced.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::vfs::{Vfs, VfsLock};

/// `len` bytes that look random (so zstd cannot shrink them) and are the
/// same for the same `seed` (so tests and benchmarks repeat exactly).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    // A splitmix64 step spreads the seed (so neighbouring seeds give
    // unrelated bytes), then xorshift64: a few lines, no dependency.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut x = (z ^ (z >> 31)) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What to do to one mutating operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The process dies at this operation: it and everything after fail.
    Crash,
    /// This operation fails with this error; an append or an in-place
    /// write writes half of its bytes first (a short write). Later
    /// operations work again.
    Error(io::ErrorKind),
}

/// What a crash does to bytes that were written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    /// They are lost.
    Drop,
    /// They all reached the disk.
    Keep,
    /// The first half of them reached the disk (of bytes appended, or of
    /// the range overwritten in place).
    TearHalf,
    /// The file kept its new length but the new bytes read as zeros (bytes
    /// overwritten in place read as zeros too).
    Zeros,
    /// Each file fares differently: by the order the files were created
    /// in, unsynced bytes are kept, dropped, torn in half, zeroed, in turn.
    /// So the pack may keep its tail while the index loses its own, or the
    /// other way round.
    Mixed,
}

impl Unsynced {
    /// Every outcome, for tests that try each.
    pub const ALL: [Unsynced; 5] =
        [Unsynced::Drop, Unsynced::Keep, Unsynced::TearHalf, Unsynced::Zeros, Unsynced::Mixed];
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Bytes overwritten in place whose sync failed, not written since, as
    /// (offset, the durable bytes there): like Linux after a failed
    /// `fsync`, the new bytes stay readable, but their pages count as
    /// written back, so no later sync makes them durable.
    lost: Vec<(usize, Vec<u8>)>,
}

impl Inode {
    /// `data` as a crash or a sync leaves it on disk: lost bytes as they
    /// were.
    fn on_disk(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        for (at, old) in &self.lost {
            if let Some(range) = out.get_mut(*at..*at + old.len()) {
                range.copy_from_slice(old);
            }
        }
        out
    }

    /// A write of `len` bytes at `at`: the pages are dirty again.
    fn rewritten(&mut self, at: usize, len: usize) {
        self.lost.retain(|(start, old)| *start + old.len() <= at || at + len <= *start);
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dirs: HashSet<PathBuf>,
    locks: HashSet<PathBuf>,
    locks_refused: usize,
    ops: usize,
    bytes_read: u64,
    fault: Option<(usize, Fault)>,
    crashed: bool,
}

/// A simulated filesystem. Cheap to clone: clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash")
}

impl SimFs {
    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes read so far (by `read_at`, `read_file` included).
    pub fn bytes_read(&self) -> u64 {
        self.lock_state().bytes_read
    }

    /// Tries to take a lock that another holder had, so far.
    pub fn locks_refused(&self) -> usize {
        self.lock_state().locks_refused
    }

    /// Mutating operations performed so far.
    pub fn ops(&self) -> usize {
        self.lock_state().ops
    }

    /// Applies `fault` to the mutating operation number `at` (counting
    /// from 0, as [`SimFs::ops`] counts).
    pub fn set_fault(&self, at: usize, fault: Fault) {
        self.lock_state().fault = Some((at, fault));
    }

    /// Whether a [`Fault::Crash`] has happened.
    pub fn has_crashed(&self) -> bool {
        self.lock_state().crashed
    }

    /// The filesystem a reboot finds: the durable directory entries, and
    /// for each file its durable bytes plus what `unsynced` keeps of the
    /// rest. Locks are released. The new image has no fault set.
    pub fn crash_image(&self, unsynced: Unsynced) -> SimFs {
        let st = self.lock_state();
        let mut inodes = Vec::with_capacity(st.inodes.len());
        for (n, inode) in st.inodes.iter().enumerate() {
            let on_disk = inode.on_disk();
            let (durable, data) = (&inode.durable, &on_disk);
            let appended = data.len() > durable.len() && data.starts_with(durable);
            // Bytes overwritten in place and not synced: from the first to
            // the last byte that differs.
            let overwritten = if data.len() == durable.len() {
                let first = data.iter().zip(durable).position(|(a, b)| a != b);
                let last = data.iter().zip(durable).rposition(|(a, b)| a != b);
                first.zip(last).map(|(first, last)| first..last + 1)
            } else {
                None
            };
            let unsynced = match unsynced {
                Unsynced::Mixed => {
                    [Unsynced::Keep, Unsynced::Drop, Unsynced::TearHalf, Unsynced::Zeros][n % 4]
                }
                other => other,
            };
            let after = match (unsynced, overwritten) {
                (Unsynced::Keep, _) => data.clone(),
                (Unsynced::TearHalf, _) if appended => {
                    data[..durable.len() + (data.len() - durable.len()) / 2].to_vec()
                }
                (Unsynced::Zeros, _) if appended => {
                    let mut v = durable.clone();
                    v.resize(data.len(), 0);
                    v
                }
                (Unsynced::TearHalf, Some(range)) => {
                    let half = range.start..range.start + range.len() / 2;
                    let mut v = durable.clone();
                    v[half.clone()].copy_from_slice(&data[half]);
                    v
                }
                (Unsynced::Zeros, Some(range)) => {
                    let mut v = durable.clone();
                    v[range].fill(0);
                    v
                }
                _ => durable.clone(),
            };
            inodes.push(Inode { data: after.clone(), durable: after, lost: Vec::new() });
        }
        let names = st.durable_names.clone();
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                durable_names: names.clone(),
                names,
                dirs: st.dirs.clone(),
                ..State::default()
            })),
        }
    }

    /// The filesystem as the kernel still holds it after the process died
    /// (not the machine): every written byte and name is there, but what
    /// was not synced is still not durable, so a later
    /// [`SimFs::crash_image`] can still lose it. Locks are released.
    pub fn kill_image(&self) -> SimFs {
        let st = self.lock_state();
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes: st.inodes.clone(),
                names: st.names.clone(),
                durable_names: st.durable_names.clone(),
                dirs: st.dirs.clone(),
                ..State::default()
            })),
        }
    }

    /// Applies `edit` to the current bytes of `path`, as a disk that
    /// flipped bits would: the change is durable and bypasses the counters.
    pub fn tamper(&self, path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut st = self.lock_state();
        if let Some(&ino) = st.names.get(path) {
            edit(&mut st.inodes[ino].data);
            st.inodes[ino].durable = st.inodes[ino].data.clone();
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a mutating operation and returns the fault for it, if any.
    fn step(st: &mut State) -> io::Result<Option<io::ErrorKind>> {
        if st.crashed {
            return Err(crashed());
        }
        let n = st.ops;
        st.ops += 1;
        match st.fault {
            Some((at, Fault::Crash)) if at == n => {
                st.crashed = true;
                Err(crashed())
            }
            Some((at, Fault::Error(kind))) if at == n => Ok(Some(kind)),
            _ => Ok(None),
        }
    }

    fn inode<'a>(st: &'a mut State, path: &Path) -> io::Result<&'a mut Inode> {
        let ino = *st.names.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(&mut st.inodes[ino])
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        if st.crashed {
            return Err(crashed());
        }
        // Directories are treated as durable at once: the store creates
        // them when it is first opened, before anything is acknowledged.
        let mut d = Some(dir);
        while let Some(p) = d {
            st.dirs.insert(p.to_owned());
            d = p.parent();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>> {
        let st = self.lock_state();
        let name = |p: &PathBuf| p.file_name()?.to_str().map(str::to_owned);
        let files = st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| Some((name(p)?, false)));
        let dirs = st
            .dirs
            .iter()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| Some((name(p)?, true)));
        let mut out: Vec<(String, bool)> = files.chain(dirs).collect();
        out.sort();
        Ok(out)
    }

    fn len(&self, path: &Path) -> io::Result<Option<u64>> {
        let st = self.lock_state();
        Ok(st.names.get(path).map(|&ino| st.inodes[ino].data.len() as u64))
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        st.bytes_read += buf.len() as u64;
        let data = &Self::inode(&mut st, path)?.data;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start.checked_add(buf.len()).filter(|&e| e <= data.len());
        let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        let fault = Self::step(&mut st)?;
        if !st.names.contains_key(path) {
            st.inodes.push(Inode::default());
            let ino = st.inodes.len() - 1;
            st.names.insert(path.to_owned(), ino);
        }
        let inode = Self::inode(&mut st, path)?;
        match fault {
            None => {
                inode.data.extend_from_slice(bytes);
                Ok(())
            }
            Some(kind) => {
                inode.data.extend_from_slice(&bytes[..bytes.len() / 2]);
                Err(kind.into())
            }
        }
    }

    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        let fault = Self::step(&mut st)?;
        let inode = Self::inode(&mut st, path)?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let written = if fault.is_some() { &bytes[..bytes.len() / 2] } else { bytes };
        let end = start + written.len();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[start..end].copy_from_slice(written);
        inode.rewritten(start, written.len());
        fault.map_or(Ok(()), |kind| Err(kind.into()))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.lock_state();
        if let Some(kind) = Self::step(&mut st)? {
            return Err(kind.into());
        }
        let len = usize::try_from(len).map_err(io::Error::other)?;
        Self::inode(&mut st, path)?.data.truncate(len);
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        let fault = Self::step(&mut st)?;
        let inode = Self::inode(&mut st, path)?;
        if let Some(kind) = fault {
            // The bytes overwritten since the last sync are lost for good.
            let len = inode.data.len().min(inode.durable.len());
            let differs = |i: &usize| inode.data[*i] != inode.durable[*i];
            if let (Some(first), Some(last)) =
                ((0..len).find(differs), (0..len).rev().find(differs))
            {
                let old = inode.durable[first..=last].to_vec();
                inode.lost.push((first, old));
            }
            return Err(kind.into());
        }
        inode.durable = inode.on_disk();
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        if let Some(kind) = Self::step(&mut st)? {
            return Err(kind.into());
        }
        // A new inode, like O_TRUNC on a fresh file: the old one may still
        // be named durably until the directory is synced.
        st.inodes.push(Inode { data: bytes.to_vec(), durable: Vec::new(), lost: Vec::new() });
        let ino = st.inodes.len() - 1;
        st.names.insert(path.to_owned(), ino);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        if let Some(kind) = Self::step(&mut st)? {
            return Err(kind.into());
        }
        let ino = st.names.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.names.insert(to.to_owned(), ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        if let Some(kind) = Self::step(&mut st)? {
            return Err(kind.into());
        }
        let in_dir = |p: &Path| p.parent() == Some(dir);
        st.durable_names.retain(|p, _| !in_dir(p));
        let current: Vec<(PathBuf, usize)> =
            st.names.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        st.durable_names.extend(current);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        if let Some(kind) = Self::step(&mut st)? {
            return Err(kind.into());
        }
        st.names.remove(path).map(drop).ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn lock(&self, path: &Path, _wait: bool) -> io::Result<VfsLock> {
        let mut st = self.lock_state();
        if !st.locks.insert(path.to_owned()) {
            st.locks_refused += 1;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        struct Held(SimFs, PathBuf);
        impl Drop for Held {
            fn drop(&mut self) {
                self.0.lock_state().locks.remove(&self.1);
            }
        }
        Ok(VfsLock::new(Held(self.clone(), path.to_owned())))
    }
}
