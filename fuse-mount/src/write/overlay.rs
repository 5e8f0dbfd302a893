//! File content being written: overlays (copy-up, the copy a write goes
//! to) and finalizing them (hash, store, record in the working set and
//! the journal).

use super::*;

/// Reads `len` bytes of `file` from `offset`, fewer at its end.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Reads a file by position (`pread`), from `offset` to `end`, without
/// moving the cursor that other clones of its handle share.
struct RangeReader<'a> {
    file: &'a File,
    offset: u64,
    end: u64,
}

impl io::Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Puts the first `size` bytes of `file` (an overlay) into `store` and
/// returns their id: in memory up to [`FINALIZE_IN_MEMORY_LEN_MAX`], else
/// streamed. The error says what went wrong, for the log.
pub(crate) fn put_content(store: &dyn Store, file: &File, size: u64) -> Result<BlobId, String> {
    if size <= FINALIZE_IN_MEMORY_LEN_MAX {
        let bytes = read_at(file, 0, size).map_err(|e| format!("reading its overlay: {e}"))?;
        if bytes.len() as u64 != size {
            return Err(format!("its overlay is {} bytes, expected {size}", bytes.len()));
        }
        let id = hash_blob(&bytes);
        store.put(id.object_id(), &bytes).map_err(|e| format!("storing its content: {e}"))?;
        return Ok(id);
    }
    let mut reader = RangeReader { file, offset: 0, end: size };
    let (id, len) =
        store.put_reader(&mut reader).map_err(|e| format!("storing its content: {e}"))?;
    if len != size {
        return Err(format!("its overlay is {len} bytes, expected {size}"));
    }
    Ok(BlobId::new(id))
}

/// BLAKE3 of file content, on all cores when large (as the working set
/// hashes written content).
fn hash_blob(content: &[u8]) -> BlobId {
    if content.len() >= vst::PARALLEL_BLOB_LEN_MIN {
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(content);
        BlobId::new(ObjectId::from(hasher.finalize()))
    } else {
        BlobId::of(content)
    }
}

impl Shared {
    /// Gives `ino` an overlay if it has none: a copy of its stored content
    /// (`Fill::Content`), or empty (`Fill::Nothing`, for a truncation to 0).
    pub(super) fn overlay(
        &self,
        inner: &mut Inner,
        ino: Ino,
        fill: Fill,
    ) -> Result<Arc<File>, Errno> {
        let number = inner.next_overlay;
        let stored = match &inner.file(ino)?.overlay {
            Some(o) => return Ok(o.file.clone()),
            None => inner.file(ino)?.stored,
        };
        if fill == Fill::Content {
            self.check_len(&stored)?;
        }
        let path = overlay_dir(&self.state_dir).join(number.to_string());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| {
                self.log(&format!("creating overlay {}: {e}", path.display()));
                io_errno(&e)
            })?;
        inner.next_overlay += 1;
        let size = if fill == Fill::Content { stored.size } else { 0 };
        let mut offset = 0;
        while offset < size {
            let len = COPY_LEN.min(size - offset);
            let bytes =
                self.store.read_range(&stored.id.object_id(), offset, len).map_err(|e| {
                    self.log(&format!("copying blob {} into an overlay: {e}", stored.id));
                    Errno::EIO
                })?;
            if bytes.len() as u64 != len {
                return Err(Errno::EIO);
            }
            // Zeros stay a hole (the length is set below): a sparse file
            // copied up costs no disk for them.
            if bytes.iter().any(|&b| b != 0) {
                file.write_all_at(&bytes, offset).map_err(|e| io_errno(&e))?;
            }
            offset += len;
        }
        file.set_len(size).map_err(|e| io_errno(&e))?;
        let file = Arc::new(file);
        inner.file_mut(ino)?.overlay = Some(Overlay {
            number,
            file: file.clone(),
            size,
            dirty: false,
            journaled: false,
            generation: 0,
        });
        Ok(file)
    }

    /// Finalizes a dirty overlay: hashes it, puts it into the store (handed
    /// to the operating system), records it in the working set and the
    /// journal. Then, if nothing may write it any more, drops the overlay
    /// (the file is served from the store again).
    pub(super) fn finalize(&self, inner: &mut Inner, ino: Ino) -> Result<(), Errno> {
        let path = inner.path(ino);
        let Some(overlay) = &inner.file(ino)?.overlay else { return Ok(()) };
        let (file, size, dirty) = (overlay.file.clone(), overlay.size, overlay.dirty);
        let stored = match (&path, dirty) {
            (Some(path), true) => Some((self.store_overlay(&file, size, path)?, size)),
            _ => None,
        };
        let mut records = Vec::new();
        let settled = self.settle(inner, ino, stored, &mut records);
        self.journal_all(inner, &records);
        settled
    }

    /// Reads, hashes and stores (handed to the operating system) the
    /// first `size` bytes of an overlay: the content of the file at `path`.
    fn store_overlay(&self, file: &File, size: u64, path: &RepoPath) -> Result<BlobId, Errno> {
        let id = self.put_overlay(file, size, path)?;
        self.flush_store()?;
        Ok(id)
    }

    /// Reads, hashes and puts into the store the first `size` bytes of an
    /// overlay, maybe only into the store's buffer: flush before a journal
    /// record names the blob.
    pub(super) fn put_overlay(
        &self,
        file: &File,
        size: u64,
        path: &RepoPath,
    ) -> Result<BlobId, Errno> {
        put_content(self.store.as_ref(), file, size).map_err(|e| {
            self.log(&format!("{path}: {e}"));
            Errno::EIO
        })
    }

    /// Hands the store's buffer to the operating system.
    pub(super) fn flush_store(&self) -> Result<(), Errno> {
        self.store.flush().map_err(|e| {
            self.log(&format!("writing to the store: {e}"));
            Errno::EIO
        })
    }

    /// Records finalized content (`stored`: its id and size, if the file
    /// was dirty) in the working set and the journal, marks the overlay
    /// clean, and drops it if nothing may write the file any more.
    /// The journal record goes to `records`, for the caller to append
    /// with those of the rest of its batch.
    pub(super) fn settle(
        &self,
        inner: &mut Inner,
        ino: Ino,
        stored: Option<(BlobId, u64)>,
        records: &mut Vec<Record>,
    ) -> Result<(), Errno> {
        let paths = inner.paths(ino);
        let perm = inner.node(ino)?.meta.perm;
        if let Some((id, size)) = stored.filter(|_| !paths.is_empty()) {
            let entry = FileEntry { id, size, executable: perm & 0o100 != 0 };
            inner.file_mut(ino)?.stored = entry;
            // Every name of the file (hard links) has its content.
            for path in &paths {
                inner.ws.put_file(path, entry).map_err(|e| errno(&e))?;
                records.push(Record::File {
                    path: path_bytes(path),
                    id: *id.as_bytes(),
                    size,
                    executable: entry.executable,
                });
            }
        }
        inner.dirty.remove(&ino);
        let node = inner.file_mut(ino)?;
        if let Some(o) = &mut node.overlay {
            o.dirty = false;
        }
        let dropped = if node.writers == 0 { node.overlay.take() } else { None };
        if let Some(o) = dropped {
            self.discard_overlay(inner, &o, !paths.is_empty());
        }
        Ok(())
    }

    /// Finalizes every dirty overlay (before a commit or status), as
    /// [`Shared::finalize`] does one, but hashing them on all cores and
    /// flushing the store once. Returns how many files it hashed.
    pub(super) fn finalize_all(&self, inner: &mut Inner) -> Result<usize, Errno> {
        let work: Vec<(Ino, Option<Unsettled>)> = inner
            .dirty
            .iter()
            .map(|&ino| {
                let overlay = inner.file(ino).ok().and_then(|f| f.overlay.as_ref());
                let work = match (overlay, inner.path(ino)) {
                    (Some(o), Some(path)) if o.dirty => Some(Unsettled {
                        ino,
                        file: o.file.clone(),
                        size: o.size,
                        generation: o.generation,
                        path,
                    }),
                    _ => None,
                };
                (ino, work)
            })
            .collect();
        let ids: Vec<Result<Option<BlobId>, Errno>> = work
            .par_iter()
            .map(|(_, w)| {
                w.as_ref().map(|u| self.put_overlay(&u.file, u.size, &u.path)).transpose()
            })
            .collect();
        if ids.iter().any(|id| matches!(id, Ok(Some(_)))) {
            self.flush_store()?;
        }
        let mut records = Vec::new();
        let mut settled = Ok(());
        for ((ino, w), id) in work.iter().zip(ids) {
            settled = id.and_then(|id| {
                let stored = id.zip(w.as_ref().map(|u| u.size));
                self.settle(inner, *ino, stored, &mut records)
            });
            if settled.is_err() {
                break;
            }
        }
        self.journal_all(inner, &records);
        settled.map(|()| work.iter().filter(|(_, w)| w.is_some()).count())
    }

    /// Queues a dropped overlay's file for deletion: once the journal is
    /// next synced if a record may name it (`journaled`, of a file still
    /// named), else by the settler without the lock.
    pub(super) fn discard_overlay(&self, inner: &mut Inner, overlay: &Overlay, named: bool) {
        if overlay.journaled && named {
            inner.retired.push(overlay.number);
        } else {
            inner.trash.push(overlay.number);
            self.settle_wake.notify_one();
        }
    }

    /// Deletes overlay files (without the lock).
    pub(super) fn remove_overlay_files(&self, numbers: Vec<u64>) {
        let dir = overlay_dir(&self.state_dir);
        for number in numbers {
            let _ = std::fs::remove_file(dir.join(number.to_string()));
        }
    }
}
