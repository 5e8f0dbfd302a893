//! Pack records: the one format both stores write and read (local packs
//! and remote packs alike, `docs/format.md`, "Packs"). A record is a
//! header (kind, codec, lengths, id), the stored payload (raw or zstd) and
//! a CRC-32 of both. Pure functions: nothing here touches a disk or a
//! network.

use crate::chunking::{CHUNK_LEN_MAX, CHUNKING_LEN_MIN};
use crate::{ObjectId, StoreError};

/// First bytes of every pack file, local or remote.
pub const PACK_MAGIC: [u8; 8] = *b"VSTPACK\x01";
/// Records shorter than this are never compressed: zstd's frame overhead
/// and the call itself cost more than it saves on small objects.
pub const COMPRESS_LEN_MIN: usize = 4096;
/// zstd level for chunks and objects: fast, and most of the gain.
const ZSTD_LEVEL: i32 = 3;

/// Kind, codec, two zero bytes, stored length, raw length, id.
pub(crate) const RECORD_HEADER_LEN: usize = 48;
/// The CRC-32 after the payload.
pub(crate) const RECORD_TRAILER_LEN: usize = 4;

// A whole (unchunked) object and the largest chunk must fit a record's u32
// length.
const _: () = assert!(CHUNKING_LEN_MIN <= u32::MAX as usize);

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A whole object.
    Object = 0,
    /// One chunk of a large object; its id is the hash of the chunk.
    Chunk = 1,
    /// The list of chunks of a large object, stored under the object's id.
    Manifest = 2,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Kind::Object),
            1 => Some(Kind::Chunk),
            2 => Some(Kind::Manifest),
            _ => None,
        }
    }
}

/// How a record's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Where a record is. The remote store numbers its packs the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) stored_len: u32,
    /// Length of the payload once decoded; for a manifest, the length of the
    /// whole object.
    pub(crate) raw_len: u64,
    pub(crate) kind: Kind,
    pub(crate) codec: Codec,
}

impl Location {
    pub(crate) fn end(&self) -> u64 {
        self.offset + (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64 + u64::from(self.stored_len)
    }
}

/// What is wrong with a damaged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The record's checksum does not match its bytes.
    Checksum,
    /// The index points at a record of another object.
    WrongRecord,
    /// The record ends past the end of its pack.
    Truncated,
    /// The compressed payload does not decompress to its recorded length.
    Decompress,
    /// A chunk list is malformed or fails its own hash.
    Manifest,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::Checksum => "its record fails its checksum",
            Damage::WrongRecord => "the index points at another record",
            Damage::Truncated => "its record is cut short",
            Damage::Decompress => "its compressed bytes do not decompress",
            Damage::Manifest => "its chunk list is damaged",
        })
    }
}

/// The record payload's compressed form, if it is stored compressed: zstd
/// for chunks and whole objects of at least [`COMPRESS_LEN_MIN`] bytes when
/// that saves at least 1/32.
pub(crate) fn compress(kind: Kind, payload: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        /// One compression context per thread: making one per record cost
        /// about 40 µs, as much as compressing 20 KB of text.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    if payload.len() < COMPRESS_LEN_MIN || kind == Kind::Manifest || looks_incompressible(payload) {
        return None;
    }
    COMPRESSOR
        .with_borrow_mut(|c| {
            let c = match c {
                Some(c) => c,
                None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
            };
            c.compress(payload).ok()
        })
        .filter(|c| c.len() + payload.len() / 32 <= payload.len())
}

/// Bits per byte of order-0 entropy above which a payload is stored
/// without trying zstd. Random and already compressed data measure about
/// 8; a directory's tree of short names (mostly 32-byte ids) about 7.5,
/// where zstd saves under a fifth at about 120 MB/s on the project's
/// machine (longer names bring a tree below the limit, and zstd then
/// gains more); source text and executables measure 3 to 5.
const INCOMPRESSIBLE_BITS_PER_BYTE: f64 = 7.0;
/// Bytes the estimate reads: this many slices of [`ENTROPY_SLICE_LEN`],
/// spread over the payload.
const ENTROPY_SLICES: usize = 16;
const ENTROPY_SLICE_LEN: usize = 256;

/// Whether `payload` would gain too little from zstd to be worth its
/// time, judged by the byte entropy of a sample (a few µs, where trying
/// zstd on a 20 KB tree costs about 150 µs).
fn looks_incompressible(payload: &[u8]) -> bool {
    let mut counts = [0u32; 256];
    let step = (payload.len() / ENTROPY_SLICES).max(ENTROPY_SLICE_LEN);
    let mut n = 0u32;
    for start in (0..payload.len()).step_by(step) {
        for &b in &payload[start..payload.len().min(start + ENTROPY_SLICE_LEN)] {
            counts[b as usize] += 1;
        }
        n += payload.len().min(start + ENTROPY_SLICE_LEN) as u32 - start as u32;
    }
    let n = f64::from(n);
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    bits > INCOMPRESSIBLE_BITS_PER_BYTE
}

/// Decodes a record's stored payload (checked against its header already)
/// to the bytes it holds. Does not hash them.
pub(crate) fn decode_stored(
    id: &ObjectId,
    loc: &Location,
    stored: &[u8],
) -> Result<Vec<u8>, StoreError> {
    match loc.codec {
        Codec::Raw => Ok(stored.to_vec()),
        Codec::Zstd => {
            let len = usize::try_from(loc.raw_len)
                .map_err(|_| StoreError::Damaged { id: *id, damage: Damage::Decompress })?;
            zstd::bulk::decompress(stored, len)
                .ok()
                .filter(|d| d.len() == len)
                .ok_or(StoreError::Damaged { id: *id, damage: Damage::Decompress })
        }
    }
}

/// Checks a record read whole (`raw`, exactly its bytes) as the record of
/// `id` at `loc` (its checksum, then its header against the index entry)
/// and decodes its payload. Does not hash what it decodes: callers do, by
/// kind.
pub(crate) fn open_record(
    id: &ObjectId,
    loc: &Location,
    raw: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let Some((found, header, len)) = parse_record(raw) else {
        return Err(StoreError::Damaged { id: *id, damage: Damage::Checksum });
    };
    let same = (header.kind, header.codec, header.stored_len, header.raw_len)
        == (loc.kind, loc.codec, loc.stored_len, loc.raw_len);
    if found != *id || !same || len != raw.len() {
        return Err(StoreError::Damaged { id: *id, damage: Damage::WrongRecord });
    }
    decode_stored(id, loc, &raw[RECORD_HEADER_LEN..RECORD_HEADER_LEN + loc.stored_len as usize])
}

pub(crate) fn encode_record(out: &mut Vec<u8>, id: ObjectId, loc: &Location, stored: &[u8]) {
    let start = out.len();
    out.push(loc.kind as u8);
    out.push(loc.codec as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&loc.stored_len.to_le_bytes());
    out.extend_from_slice(&loc.raw_len.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(stored);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The fixed fields of the record header at the start of `bytes` (kind,
/// codec, stored and raw lengths), if they are valid together (see
/// [`lengths_ok`]); the checksum is not checked here.
pub(crate) fn header_fields(bytes: &[u8]) -> Option<(Kind, Codec, u32, u64)> {
    let header = bytes.get(..RECORD_HEADER_LEN)?;
    let (kind, codec) = (Kind::from_byte(header[0])?, Codec::from_byte(header[1])?);
    if header[2..4] != [0, 0] {
        return None;
    }
    let stored_len = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let raw_len = u64::from_le_bytes(header[8..16].try_into().ok()?);
    lengths_ok(kind, codec, stored_len, raw_len).then_some((kind, codec, stored_len, raw_len))
}

/// Parses the record at the start of `bytes`: its id, its location fields
/// (pack and offset left 0) and its total length. `None` if it is
/// truncated, malformed or fails its checksum.
pub(crate) fn parse_record(bytes: &[u8]) -> Option<(ObjectId, Location, usize)> {
    // Lengths first: they are cheap to check, and a CRC over a bogus length
    // would be work for nothing (a scan tries many offsets).
    let (kind, codec, stored_len, raw_len) = header_fields(bytes)?;
    let id = ObjectId::from_bytes(bytes[16..48].try_into().ok()?);
    let body_end = RECORD_HEADER_LEN.checked_add(stored_len as usize)?;
    let crc = bytes.get(body_end..body_end + RECORD_TRAILER_LEN)?;
    if crc32fast::hash(&bytes[..body_end]).to_le_bytes() != crc {
        return None;
    }
    let loc = Location { pack: 0, offset: 0, stored_len, raw_len, kind, codec };
    Some((id, loc, body_end + RECORD_TRAILER_LEN))
}

/// Whether a record's lengths can be true: a whole object is under the
/// chunking threshold, a chunk at most the largest chunk, a raw payload is
/// as long as its object, a compressed one shorter, and a chunk list is
/// never compressed. Lengths come from disk; nothing is allocated or
/// sliced by them before this holds.
pub(crate) fn lengths_ok(kind: Kind, codec: Codec, stored_len: u32, raw_len: u64) -> bool {
    let stored = u64::from(stored_len);
    let size_ok = match kind {
        Kind::Object => raw_len < CHUNKING_LEN_MIN as u64,
        Kind::Chunk => raw_len <= CHUNK_LEN_MAX as u64,
        Kind::Manifest => codec == Codec::Raw,
    };
    let codec_ok = match (kind, codec) {
        (Kind::Manifest, _) => true,
        (_, Codec::Raw) => raw_len == stored,
        (_, Codec::Zstd) => stored <= raw_len,
    };
    size_ok && codec_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text and repetitive data are worth compressing; random bytes and a
    /// tree-like layout (short names, 32-byte ids) are not.
    #[test]
    fn incompressible_data_is_recognized_by_its_entropy() {
        let text = include_bytes!("record.rs");
        assert!(!looks_incompressible(text));
        assert!(!looks_incompressible(&[7u8; 10_000]));
        let mut random = Vec::new();
        let mut tree = Vec::new();
        for i in 0..500u32 {
            let id = ObjectId::of(&i.to_le_bytes());
            random.extend_from_slice(id.as_bytes());
            let name = format!("f{i}.txt");
            tree.push(name.len() as u8);
            tree.extend_from_slice(name.as_bytes());
            tree.push(1);
            tree.extend_from_slice(id.as_bytes());
            tree.extend_from_slice(&(i * 37 % 4000).to_le_bytes()[..2]);
        }
        assert!(looks_incompressible(&random));
        assert!(looks_incompressible(&tree));
        assert_eq!(compress(Kind::Object, &tree), None, "stored as it is");
        assert!(compress(Kind::Object, text).is_some());
    }
}
