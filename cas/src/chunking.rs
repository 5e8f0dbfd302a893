//! Large objects as chunks: the content-defined cut (FastCDC), the plan of
//! records that stores an object (whole, or chunks and a chunk list), the
//! chunk list's encoding, and reading a range of a chunked object. Used by
//! every store that writes pack records.

use bytes::Bytes;

use crate::record::{Damage, Kind};
use crate::{ObjectId, StoreError};

/// Objects at least this long are split into content-defined chunks.
pub const CHUNKING_LEN_MIN: usize = 1 << 20;
/// Smallest chunk FastCDC may cut (except the last of a file).
pub const CHUNK_LEN_MIN: usize = 64 * 1024;
/// The chunk length FastCDC aims for.
pub const CHUNK_LEN_AVG: usize = 256 * 1024;
/// Largest chunk FastCDC may cut.
pub const CHUNK_LEN_MAX: usize = 1 << 20;
/// A range read asks for the chunks it needs in groups of at most this
/// many bytes, so that what it holds besides its answer stays bounded.
const RANGE_GROUP_LEN_MAX: u64 = 16 << 20;

// Chunks must be smaller than what gets chunked.
const _: () = assert!(CHUNK_LEN_MAX <= CHUNKING_LEN_MIN);
const _: () = assert!(CHUNK_LEN_MIN < CHUNK_LEN_AVG && CHUNK_LEN_AVG < CHUNK_LEN_MAX);
const _: () = assert!(CHUNK_LEN_MAX as u64 <= RANGE_GROUP_LEN_MAX);

/// Appends one record: kind, id, payload, raw length.
pub(crate) type AddRecord<'a> =
    dyn FnMut(Kind, ObjectId, &[u8], u64) -> Result<(), StoreError> + 'a;

/// Puts the records that store `bytes` as `id` through `add` (kind, id,
/// payload, raw length), skipping what `has` says is stored: the object
/// whole below [`CHUNKING_LEN_MIN`], else its chunks and a chunk list. One
/// plan for every store that writes pack records.
pub(crate) fn put_records(
    id: ObjectId,
    bytes: &[u8],
    has: &dyn Fn(&ObjectId) -> bool,
    add: &mut AddRecord<'_>,
) -> Result<(), StoreError> {
    if has(&id) {
        return Ok(());
    }
    if bytes.len() < CHUNKING_LEN_MIN {
        return add(Kind::Object, id, bytes, bytes.len() as u64);
    }
    let mut listed = Vec::new();
    for data in chunks(bytes) {
        let cid = ObjectId::of(data);
        if !has(&cid) {
            add(Kind::Chunk, cid, data, data.len() as u64)?;
        }
        listed.push((cid, data.len() as u64));
    }
    // An object that is one chunk (at most CHUNK_LEN_MAX long) has the
    // chunk's id: the chunk record is the object, and a chunk list under
    // the same id would shadow it.
    if let [(only, _)] = listed[..]
        && only == id
    {
        return Ok(());
    }
    add(Kind::Manifest, id, &encode_manifest(&listed), bytes.len() as u64)
}

/// The content-defined chunks of an object of at least
/// [`CHUNKING_LEN_MIN`] bytes, in order.
pub(crate) fn chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    fastcdc::v2020::FastCDC::new(bytes, CHUNK_LEN_MIN, CHUNK_LEN_AVG, CHUNK_LEN_MAX)
        .map(move |c| &bytes[c.offset..c.offset + c.length])
}

/// A chunk list's payload: the count, each chunk's id and length, and the
/// BLAKE3 of what comes before.
pub(crate) fn encode_manifest(listed: &[(ObjectId, u64)]) -> Vec<u8> {
    let mut manifest = Vec::new();
    put_varint(&mut manifest, listed.len() as u64);
    for (cid, len) in listed {
        manifest.extend_from_slice(cid.as_bytes());
        put_varint(&mut manifest, *len);
    }
    let check = ObjectId::of(&manifest);
    manifest.extend_from_slice(check.as_bytes());
    manifest
}

/// Parses and checks the chunk list of object `id` of `raw_len` bytes.
pub(crate) fn decode_manifest(
    id: &ObjectId,
    raw_len: u64,
    bytes: &[u8],
) -> Result<Vec<(ObjectId, u64)>, StoreError> {
    let damaged = || StoreError::Damaged { id: *id, damage: Damage::Manifest };
    let body_len = bytes.len().checked_sub(32).ok_or_else(damaged)?;
    let (body, check) = bytes.split_at(body_len);
    if ObjectId::of(body).as_bytes() != check {
        return Err(damaged());
    }
    let (count, mut rest) = take_varint(body).ok_or_else(damaged)?;
    let mut chunks = Vec::new();
    let mut total = 0u64;
    for _ in 0..count {
        let cid: [u8; 32] = rest.get(..32).ok_or_else(damaged)?.try_into().expect("32 bytes");
        let (len, next) = take_varint(&rest[32..]).ok_or_else(damaged)?;
        total = total.checked_add(len).ok_or_else(damaged)?;
        chunks.push((ObjectId::from_bytes(cid), len));
        rest = next;
    }
    if !rest.is_empty() || total != raw_len {
        return Err(damaged());
    }
    Ok(chunks)
}

/// Reads chunks (ids and lengths, in order) and returns their bytes, each
/// verified against its id, in the same order.
pub(crate) type ReadChunks<'a> =
    dyn FnMut(&[(ObjectId, u64)]) -> Result<Vec<Vec<u8>>, StoreError> + 'a;

/// `offset + len` if the range lies within an object of `size` bytes.
pub(crate) fn range_end(
    id: &ObjectId,
    offset: u64,
    len: u64,
    size: u64,
) -> Result<u64, StoreError> {
    offset.checked_add(len).filter(|&e| e <= size).ok_or(StoreError::RangeOutOfBounds {
        id: *id,
        offset,
        len,
        size,
    })
}

/// The bytes `[offset, end)` of a whole object's `bytes`, which were
/// verified by their hash; their length comes from the index, and must
/// agree with it (`size`) before the slice.
pub(crate) fn slice_whole(
    id: &ObjectId,
    bytes: Bytes,
    offset: u64,
    end: u64,
    size: u64,
) -> Result<Bytes, StoreError> {
    if bytes.len() as u64 != size {
        return Err(StoreError::Damaged { id: *id, damage: Damage::WrongRecord });
    }
    Ok(bytes.slice(offset as usize..end as usize))
}

/// The bytes `[offset, end)` of object `id`, stored as `chunks` (its chunk
/// list: ids and lengths). Only the chunks that overlap the range are
/// read, through `read` (given some of them in order, it returns their
/// bytes, each verified against its id), in groups of at most
/// [`RANGE_GROUP_LEN_MAX`] bytes; a chunk not as long as the list says is
/// damage to the list.
pub(crate) fn read_chunked_range(
    id: &ObjectId,
    chunks: &[(ObjectId, u64)],
    offset: u64,
    end: u64,
    read: &mut ReadChunks<'_>,
) -> Result<Bytes, StoreError> {
    // Each wanted chunk with where it starts in the object.
    let mut wanted: Vec<(ObjectId, u64, u64)> = Vec::new();
    let mut chunk_start = 0u64;
    for (cid, chunk_len) in chunks {
        let chunk_end = chunk_start + chunk_len;
        if chunk_end > offset && chunk_start < end {
            wanted.push((*cid, *chunk_len, chunk_start));
        }
        if chunk_end >= end {
            break;
        }
        chunk_start = chunk_end;
    }
    let mut out = Vec::with_capacity((end - offset) as usize);
    let mut rest = &wanted[..];
    while !rest.is_empty() {
        let mut n = 0;
        let mut group_len = 0u64;
        while n < rest.len() && (n == 0 || group_len + rest[n].1 <= RANGE_GROUP_LEN_MAX) {
            group_len += rest[n].1;
            n += 1;
        }
        let (group, next) = rest.split_at(n);
        let listed: Vec<(ObjectId, u64)> = group.iter().map(|(c, l, _)| (*c, *l)).collect();
        let datas = read(&listed)?;
        for (data, (_, chunk_len, chunk_start)) in datas.iter().zip(group) {
            if data.len() as u64 != *chunk_len {
                return Err(StoreError::Damaged { id: *id, damage: Damage::Manifest });
            }
            let from = offset.max(*chunk_start) - chunk_start;
            let to = end.min(chunk_start + chunk_len) - chunk_start;
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        rest = next;
    }
    Ok(Bytes::from(out))
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((n, &bytes[i + 1..]));
        }
    }
    None
}
