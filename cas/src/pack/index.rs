//! The pack store's index: where each record is.
//!
//! On disk (`docs/format.md`, Index): a table sorted by id, written whole
//! (a rebuild, a GC, or once enough entries were appended since), then a
//! log of entries appended as records become durable. In memory the table
//! stays the bytes it was read as, searched through a fanout on the first
//! two bytes of the id, and only the log goes into a hash map. So opening a
//! store costs one read and a checksum of the table, not a hash map of
//! every entry: a short-lived command that looks up a few objects pays for
//! what it reads, not for the size of the repository.

use std::collections::HashMap;

use crate::record::{Codec, Kind, Location, PACK_MAGIC, lengths_ok};
use crate::{IdBuildHasher, ObjectId};

/// First bytes of an index whose entries are all a log (the first form).
pub const INDEX_MAGIC_V1: [u8; 8] = *b"VSTINDX\x01";
/// First bytes of an index that starts with a table sorted by id.
pub const INDEX_MAGIC: [u8; 8] = *b"VSTINDX\x02";
pub(crate) const INDEX_ENTRY_LEN: usize = 64;
/// The table is rewritten when the log holds more entries than this and
/// more than an eighth of the table's.
pub(crate) const LOG_ENTRIES_COMPACT_MIN: usize = 4096;
/// Fanout buckets: the first two bytes of an id.
const FANOUT: usize = 1 << 16;

/// What the table says of one pack: its records from the header up to
/// `covered` are all in the table, and none it names ends after `max_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackCover {
    pub(crate) pack: u32,
    pub(crate) covered: u64,
    pub(crate) max_end: u64,
}

/// Entries sorted by id, as their 64-byte encodings: `bytes[start..end]`
/// (the index file as read, so that the table is not copied).
#[derive(Debug, Default)]
pub(crate) struct Table {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    /// `fanout[b]`: the first entry whose id starts with two bytes `>= b`.
    fanout: Vec<u32>,
}

impl Table {
    /// The table over `bytes[start..end]`, entries sorted by id.
    fn new(bytes: Vec<u8>, start: usize, end: usize) -> Self {
        let count = (end - start) / INDEX_ENTRY_LEN;
        let mut fanout = vec![0u32; FANOUT + 1];
        for raw in bytes[start..end].chunks_exact(INDEX_ENTRY_LEN) {
            fanout[usize::from(u16::from_be_bytes([raw[0], raw[1]])) + 1] += 1;
        }
        for b in 0..FANOUT {
            fanout[b + 1] += fanout[b];
        }
        debug_assert_eq!(fanout[FANOUT] as usize, count);
        Self { bytes, start, end, fanout }
    }

    pub(crate) fn len(&self) -> usize {
        (self.end - self.start) / INDEX_ENTRY_LEN
    }

    fn entry(&self, i: usize) -> &[u8] {
        let at = self.start + i * INDEX_ENTRY_LEN;
        &self.bytes[at..at + INDEX_ENTRY_LEN]
    }

    fn get(&self, id: &ObjectId) -> Option<Location> {
        self.find(id).and_then(|i| decode_index_entry(self.entry(i)).map(|e| e.1))
    }

    /// Where `id`'s entry is, by its id alone (no decoding).
    fn find(&self, id: &ObjectId) -> Option<usize> {
        if self.start == self.end {
            return None;
        }
        let key = id.as_bytes();
        let b = usize::from(u16::from_be_bytes([key[0], key[1]]));
        let (mut lo, mut hi) = (self.fanout[b] as usize, self.fanout[b + 1] as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)[..32].cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn iter(&self) -> impl Iterator<Item = (ObjectId, Location)> + '_ {
        self.bytes[self.start..self.end]
            .chunks_exact(INDEX_ENTRY_LEN)
            .filter_map(decode_index_entry)
    }
}

/// The whole index in memory: the table read at open, and every entry
/// since (the log, records found by recovery, records put by this handle).
/// No id is in both.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) table: Table,
    pub(crate) map: HashMap<ObjectId, Location, IdBuildHasher>,
}

impl Index {
    pub(crate) fn get(&self, id: &ObjectId) -> Option<Location> {
        self.map.get(id).copied().or_else(|| self.table.get(id))
    }

    pub(crate) fn contains(&self, id: &ObjectId) -> bool {
        self.map.contains_key(id) || self.table.find(id).is_some()
    }

    /// Adds an entry for an id the index does not have.
    pub(crate) fn insert(&mut self, id: ObjectId, loc: Location) {
        debug_assert!(self.table.find(&id).is_none(), "an id indexed twice");
        self.map.insert(id, loc);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ObjectId, Location)> + '_ {
        self.table.iter().chain(self.map.iter().map(|(i, l)| (*i, *l)))
    }
}

/// An index file as read: `None` if it does not match the packs (or is
/// unreadable), and then it is rebuilt from them.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) index: Index,
    /// What the table covers of each pack.
    pub(crate) covers: Vec<PackCover>,
    /// Where the valid entries end, if a torn or damaged tail follows.
    pub(crate) valid_len: Option<u64>,
}

/// Reads an index file of either form. Every entry must name a pack that
/// exists and end inside it; the first log entry that fails its CRC ends
/// the log (a torn append).
pub(crate) fn load(bytes: Vec<u8>, pack_len: &HashMap<u32, u64>) -> Option<Loaded> {
    let fits = |pack: u32, end: u64| pack_len.get(&pack).is_some_and(|&len| end <= len);
    let magic = bytes.get(..8)?;
    let (covers, table_start, log_start) = if magic == INDEX_MAGIC_V1 {
        (Vec::new(), 8, 8)
    } else if magic == INDEX_MAGIC {
        let (covers, table_start, log_start) = parse_header(&bytes)?;
        if !covers.iter().all(|c| fits(c.pack, c.max_end)) {
            return None;
        }
        (covers, table_start, log_start)
    } else {
        return None;
    };
    let len = bytes.len();
    let table = Table::new(bytes, table_start, log_start);
    let bytes = &table.bytes;
    let mut map: HashMap<ObjectId, Location, IdBuildHasher> = HashMap::default();
    map.reserve((bytes.len() - log_start) / INDEX_ENTRY_LEN);
    let mut valid = log_start;
    for raw in bytes[log_start..].chunks(INDEX_ENTRY_LEN) {
        let Some((id, loc)) = decode_index_entry(raw) else { break };
        if !fits(loc.pack, loc.end()) {
            return None;
        }
        // The first entry of an id wins (the table's, then the log's).
        if table.find(&id).is_none() {
            map.entry(id).or_insert(loc);
        }
        valid += INDEX_ENTRY_LEN;
    }
    let valid_len = (valid < len).then_some(valid as u64);
    // The log's bytes are in the map now: keep only the table's.
    let mut table = table;
    table.bytes.truncate(log_start);
    table.bytes.shrink_to_fit();
    Some(Loaded { index: Index { table, map }, covers, valid_len })
}

/// The header of the second form: the covers, where the table starts and
/// where it ends (the log starts); `None` if it is cut short or its CRC
/// fails.
fn parse_header(bytes: &[u8]) -> Option<(Vec<PackCover>, usize, usize)> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let count = usize::try_from(u64_at(8)?).ok()?;
    let packs = usize::try_from(u32_at(16)?).ok()?;
    let mut at = 20;
    let mut covers = Vec::with_capacity(packs.min(1 << 16));
    for _ in 0..packs {
        covers.push(PackCover {
            pack: u32_at(at)?,
            covered: u64_at(at + 4)?,
            max_end: u64_at(at + 12)?,
        });
        at += 20;
    }
    let crc_at = at;
    let table_end = (crc_at + 4).checked_add(count.checked_mul(INDEX_ENTRY_LEN)?)?;
    let table = bytes.get(crc_at + 4..table_end)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..crc_at]);
    crc.update(table);
    (crc.finalize() == u32_at(crc_at)?).then_some((covers, crc_at + 4, table_end))
}

/// The bytes of an index in the second form holding `entries` (any order,
/// no id twice) as its table, with an empty log, and its table.
pub(crate) fn encode(mut entries: Vec<(ObjectId, Location)>) -> (Vec<u8>, Table) {
    entries.sort_unstable_by_key(|(id, _)| *id);
    let covers = covers_of(&entries);
    let mut out = INDEX_MAGIC.to_vec();
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&(covers.len() as u32).to_le_bytes());
    for c in &covers {
        out.extend_from_slice(&c.pack.to_le_bytes());
        out.extend_from_slice(&c.covered.to_le_bytes());
        out.extend_from_slice(&c.max_end.to_le_bytes());
    }
    let table = encode_index_entries(&entries);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(&table);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&table);
    let len = table.len();
    (out, Table::new(table, 0, len))
}

/// For each pack the entries name: how far from its header the entries
/// cover its records without a gap, and where the last record named ends.
fn covers_of(entries: &[(ObjectId, Location)]) -> Vec<PackCover> {
    let mut extents: Vec<(u32, u64, u64)> =
        entries.iter().map(|(_, l)| (l.pack, l.offset, l.end())).collect();
    extents.sort_unstable();
    let mut covers: Vec<PackCover> = Vec::new();
    for (pack, offset, end) in extents {
        match covers.last_mut() {
            Some(c) if c.pack == pack => {
                if offset == c.covered {
                    c.covered = end;
                }
                c.max_end = c.max_end.max(end);
            }
            _ => {
                let start = PACK_MAGIC.len() as u64;
                let covered = if offset == start { end } else { start };
                covers.push(PackCover { pack, covered, max_end: end });
            }
        }
    }
    covers
}

/// Extends what `covers` say the table covers of each pack with `log`
/// entries that continue it without a gap: the contiguous run of records
/// from each pack's header that the index names. Entries may be appended
/// out of order, and a power cut may keep any prefix of them, so the
/// highest end an entry names proves nothing about the records before it.
pub(crate) fn covered(
    covers: &[PackCover],
    log: impl Iterator<Item = Location>,
) -> HashMap<u32, u64> {
    let mut by_pack: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for loc in log {
        by_pack.entry(loc.pack).or_default().push((loc.offset, loc.end()));
    }
    let mut out: HashMap<u32, u64> = covers.iter().map(|c| (c.pack, c.covered)).collect();
    for (pack, mut extents) in by_pack {
        extents.sort_unstable();
        let cursor = out.entry(pack).or_insert(PACK_MAGIC.len() as u64);
        for (offset, end) in extents {
            if end <= *cursor {
                continue;
            }
            if offset != *cursor {
                break;
            }
            *cursor = end;
        }
    }
    out
}

/// Whether the index's log is long enough to be folded into its table.
pub(super) fn log_is_long(index: &Index) -> bool {
    index.map.len() > LOG_ENTRIES_COMPACT_MIN && index.map.len() > index.table.len() / 8
}

/// The 64-byte index entries of `entries` (`docs/format.md`, Index).
pub(crate) fn encode_index_entries(entries: &[(ObjectId, Location)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY_LEN);
    for (id, loc) in entries {
        let start = out.len();
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&loc.pack.to_le_bytes());
        out.extend_from_slice(&loc.offset.to_le_bytes());
        out.extend_from_slice(&loc.stored_len.to_le_bytes());
        out.extend_from_slice(&loc.raw_len.to_le_bytes());
        out.push(loc.kind as u8);
        out.push(loc.codec as u8);
        out.extend_from_slice(&[0, 0]);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

pub(crate) fn decode_index_entry(raw: &[u8]) -> Option<(ObjectId, Location)> {
    if raw.len() != INDEX_ENTRY_LEN {
        return None;
    }
    let (body, crc) = raw.split_at(INDEX_ENTRY_LEN - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let (kind, codec) = (Kind::from_byte(body[56])?, Codec::from_byte(body[57])?);
    if body[58..60] != [0, 0] {
        return None;
    }
    let loc = Location {
        pack: u32::from_le_bytes(body[32..36].try_into().ok()?),
        offset: u64::from_le_bytes(body[36..44].try_into().ok()?),
        stored_len: u32::from_le_bytes(body[44..48].try_into().ok()?),
        raw_len: u64::from_le_bytes(body[48..56].try_into().ok()?),
        kind,
        codec,
    };
    // A record starts after the pack header, and far enough from the end
    // of the address space that its end cannot overflow.
    let offset_ok = loc.offset >= PACK_MAGIC.len() as u64 && loc.offset < u64::MAX / 2;
    if !offset_ok || !lengths_ok(kind, codec, loc.stored_len, loc.raw_len) {
        return None;
    }
    Some((ObjectId::from_bytes(body[..32].try_into().ok()?), loc))
}
