//! Large objects as streams, in bounded memory: storing what a reader
//! yields ([`Store::put_reader`]), and reading an object out a few chunks
//! at a time ([`ObjectReader`]).
//!
//! Storing from a reader cuts chunks with FastCDC's streaming form
//! (`fastcdc::v2020::StreamCDC`), which finds the same cut points as the
//! form over a whole buffer that `put` uses: both look at most
//! [`CHUNK_LEN_MAX`] bytes ahead of the last cut, and the stream keeps that
//! much buffered. The object's id is hashed as the chunks pass. So the ids
//! and the records are those `put` of the same bytes writes (tested), and
//! what is held is the stream's buffer, the chunks of an object not yet
//! known to reach [`CHUNKING_LEN_MIN`] (an object shorter than that is
//! stored whole), and the chunk being written.

use std::collections::VecDeque;
use std::io::{self, Read};

use bytes::Bytes;

use crate::chunking::{
    CHUNK_LEN_AVG, CHUNK_LEN_MAX, CHUNK_LEN_MIN, CHUNKING_LEN_MIN, encode_manifest,
};
use crate::record::{Damage, Kind};
use crate::{ObjectId, Store, StoreError};

/// Bytes of chunks an [`ObjectReader`] fetches at once (at least one
/// chunk): one request per pack for a remote store, a few chunks in memory.
pub const READ_AHEAD_LEN_MAX: u64 = 8 << 20;

/// The error for a reader that failed while its content was being stored:
/// a [`StoreError`] it wraps (an [`ObjectReader`]'s) comes back as itself.
pub(crate) fn reader_err(e: io::Error) -> StoreError {
    if e.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<StoreError>().expect("checked above");
    }
    StoreError::Io { op: "read the content to store", source: e }
}

/// Retries reads interrupted by a signal, which `StreamCDC` would take for
/// a failure.
struct Retrying<'a>(&'a mut dyn Read);

impl Read for Retrying<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Stores what `reader` yields as `put_records` stores the same bytes,
/// through `add` (kind, id, payload, raw length), which skips what is
/// already stored. Returns the object's id and length.
pub(crate) fn put_records_from_reader(
    reader: &mut dyn Read,
    add: &mut crate::chunking::AddRecord<'_>,
) -> Result<(ObjectId, u64), StoreError> {
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    // Chunks not written yet: all of them while the object may still turn
    // out shorter than CHUNKING_LEN_MIN (then it is one record), at most
    // CHUNKING_LEN_MIN + CHUNK_LEN_MAX bytes.
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut listed: Vec<(ObjectId, u64)> = Vec::new();
    let mut write_chunk =
        |data: &[u8], listed: &mut Vec<(ObjectId, u64)>| -> Result<(), StoreError> {
            let cid = ObjectId::of(data);
            add(Kind::Chunk, cid, data, data.len() as u64)?;
            listed.push((cid, data.len() as u64));
            Ok(())
        };
    let chunker = fastcdc::v2020::StreamCDC::new(
        Retrying(reader),
        CHUNK_LEN_MIN,
        CHUNK_LEN_AVG,
        CHUNK_LEN_MAX,
    );
    for chunk in chunker {
        let data = match chunk {
            Ok(chunk) => chunk.data,
            Err(fastcdc::v2020::Error::IoError(e)) => return Err(reader_err(e)),
            Err(other) => return Err(reader_err(io::Error::other(other.to_string()))),
        };
        hasher.update(&data);
        len += data.len() as u64;
        held.push(data);
        if len >= CHUNKING_LEN_MIN as u64 {
            for data in held.drain(..) {
                write_chunk(&data, &mut listed)?;
            }
        }
    }
    let id = ObjectId::from_bytes(*hasher.finalize().as_bytes());
    if len < CHUNKING_LEN_MIN as u64 {
        let whole = held.concat();
        add(Kind::Object, id, &whole, len)?;
        return Ok((id, len));
    }
    // As in `put_records`: an object that is one chunk is that chunk's
    // record alone.
    if let [(only, _)] = listed[..]
        && only == id
    {
        return Ok((id, len));
    }
    add(Kind::Manifest, id, &encode_manifest(&listed), len)?;
    Ok((id, len))
}

/// Reads object `id` out of a store a few chunks at a time: at most
/// [`READ_AHEAD_LEN_MAX`] bytes of chunks (or one chunk, or the whole of an
/// object the store keeps whole) are in memory. Each chunk is verified
/// against its id as it is read, and the whole object against `id` once
/// its last byte has been read: a mismatch is then an error (so the bytes
/// handed out before it may be wrong, and the caller must not take them
/// for the object unless the end was reached without error).
///
/// [`ObjectReader::next_piece`] hands out the pieces; as a
/// [`std::io::Read`] it wraps store errors in `io::Error`s (which
/// [`Store::put_reader`] unwraps).
#[derive(Debug)]
pub struct ObjectReader<'a> {
    store: &'a dyn Store,
    id: ObjectId,
    len: u64,
    /// Chunks not fetched yet, and those fetched but not handed out.
    pending: VecDeque<(ObjectId, u64)>,
    fetched: VecDeque<Bytes>,
    /// `None` for an object read whole (`get` verified it).
    hasher: Option<blake3::Hasher>,
    /// What `read` has left of the last piece.
    current: Bytes,
}

impl<'a> ObjectReader<'a> {
    /// A reader of object `id` in `store`.
    pub fn new(store: &'a dyn Store, id: &ObjectId) -> Result<Self, StoreError> {
        let (len, pending, fetched, hasher) = match store.chunks(id)? {
            Some(chunks) => {
                let len = chunks.iter().try_fold(0u64, |sum, (_, l)| sum.checked_add(*l));
                let len = len.ok_or(StoreError::Damaged { id: *id, damage: Damage::Manifest })?;
                (len, chunks.into(), VecDeque::new(), Some(blake3::Hasher::new()))
            }
            None => {
                let bytes = store.get(id)?;
                (bytes.len() as u64, VecDeque::new(), VecDeque::from([bytes]), None)
            }
        };
        Ok(Self { store, id: *id, len, pending, fetched, hasher, current: Bytes::new() })
    }

    /// The object's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next piece of the object (a chunk, or the whole of an object
    /// kept whole); `None` after the last, once the whole object has been
    /// verified.
    pub fn next_piece(&mut self) -> Result<Option<Bytes>, StoreError> {
        if self.fetched.is_empty() && !self.pending.is_empty() {
            self.fetch()?;
        }
        match self.fetched.pop_front() {
            Some(piece) => {
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&piece);
                }
                Ok(Some(piece))
            }
            None => {
                if let Some(hasher) = self.hasher.take() {
                    let actual = ObjectId::from_bytes(*hasher.finalize().as_bytes());
                    if actual != self.id {
                        return Err(StoreError::Corrupt { id: self.id, actual });
                    }
                }
                Ok(None)
            }
        }
    }

    /// Fetches the next chunks, up to [`READ_AHEAD_LEN_MAX`] bytes.
    fn fetch(&mut self) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        let mut lens = Vec::new();
        let mut total = 0u64;
        while let Some(&(cid, len)) = self.pending.front() {
            if !ids.is_empty() && total + len > READ_AHEAD_LEN_MAX {
                break;
            }
            self.pending.pop_front();
            ids.push(cid);
            lens.push(len);
            total += len;
        }
        for (data, len) in self.store.get_many(&ids)?.into_iter().zip(lens) {
            if data.len() as u64 != len {
                return Err(StoreError::Damaged { id: self.id, damage: Damage::Manifest });
            }
            self.fetched.push_back(data);
        }
        Ok(())
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.next_piece().map_err(io::Error::other)? {
                Some(piece) => self.current = piece,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes a call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The premise of `put_reader`: FastCDC's streaming form cuts where the
    /// form over a whole buffer (`put`'s) cuts, however the reader splits
    /// its reads: on random bytes, on zeros (no cut point: every chunk is
    /// CHUNK_LEN_MAX), and on a mixture with repeats.
    #[test]
    fn the_stream_chunker_cuts_where_put_cuts() {
        let noise = crate::sim::noise(7, 9 << 20);
        let mut mixed = noise[..3 << 20].to_vec();
        mixed.extend_from_slice(&[0u8; 3 << 20]);
        mixed.extend_from_slice(&noise[1 << 20..4 << 20]);
        mixed.extend_from_slice(&noise[..12_345]);
        let zeros = vec![0u8; (5 << 20) + 3];
        for (name, bytes) in [("noise", &noise[..]), ("mixed", &mixed[..]), ("zeros", &zeros[..])] {
            let whole: Vec<usize> = crate::chunking::chunks(bytes).map(<[u8]>::len).collect();
            assert!(whole.len() > 4, "{name}: several chunks");
            for step in [1 << 20, 4096, 999_983] {
                let streamed: Vec<usize> = fastcdc::v2020::StreamCDC::new(
                    Trickle(bytes, step),
                    CHUNK_LEN_MIN,
                    CHUNK_LEN_AVG,
                    CHUNK_LEN_MAX,
                )
                .map(|c| c.unwrap().length)
                .collect();
                assert_eq!(streamed, whole, "{name}, reads of {step} bytes");
            }
        }
    }

    /// A reader's error comes back as the store error it wraps, or as an
    /// I/O error of the reader.
    #[test]
    fn reader_errors_keep_what_they_wrap() {
        let wrapped = io::Error::other(StoreError::NotFound { id: ObjectId::of(b"x") });
        assert!(matches!(reader_err(wrapped), StoreError::NotFound { .. }));
        let plain = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(reader_err(plain), StoreError::Io { .. }));
    }
}
