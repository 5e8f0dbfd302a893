//! The consolidated index: the indexes of many packs in one object, so that
//! opening a store costs a listing, one GET and the indexes written since,
//! not a GET per pack.
//!
//! A remote gc writes `packs/all-<G>.cidx` (`G`: a generation, 16 hex
//! digits, one more than the highest listed) holding a byte-for-byte copy
//! of the index of every pack listed after its deletions, then deletes the
//! older generations. Readers use the highest generation listed, and take
//! from it only the packs whose own index is listed too: the consolidated
//! index is a cache of those indexes, never a reason to think a pack is
//! there. So a pack is visible exactly when its `.idx` is listed, as
//! without it, and the remote gc protocol's argument (`docs/format.md`) is
//! unchanged. A damaged or missing one is ignored: the packs' own indexes
//! are read instead.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::gc::GcLock;
use super::{
    INDEX_FETCHES_IN_FLIGHT_MAX, INDEX_HEADER_LEN, Keys, REMOTE_INDEX_LEN_MAX, Shared,
    decode_index, get_range_exact, remote_err,
};
use crate::record::Location;
use crate::{ObjectId, StoreError};

/// First bytes of a consolidated index.
pub const CONSOLIDATED_INDEX_MAGIC: [u8; 8] = *b"VSTCIDX\x01";
/// Largest consolidated index written or read: about 19 million entries
/// (the in-memory index of such a store is larger still). A gc that would
/// write a larger one writes none; readers then read every pack's index.
pub const CONSOLIDATED_INDEX_LEN_MAX: u64 = 1 << 30;
/// magic, generation, pack count.
const HEADER_LEN: usize = 8 + 8 + 4;

/// A pack's name and its index's entries (pack 0: the caller numbers
/// them).
pub(super) type PackIndex = (ObjectId, Vec<(ObjectId, Location)>);

/// The key name (under the prefix) of generation `generation`.
pub(super) fn key_name(generation: u64) -> String {
    format!("packs/all-{generation:016x}.cidx")
}

/// The generation a listed file name stands for, if it is a consolidated
/// index's.
pub(super) fn parse_name(filename: &str) -> Option<u64> {
    let hex = filename.strip_prefix("all-")?.strip_suffix(".cidx")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Encodes generation `generation` holding `indexes` (each a pack's index,
/// exactly as stored).
pub(super) fn encode(generation: u64, indexes: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = indexes.iter().map(|i| 4 + i.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + len + 32);
    out.extend_from_slice(&CONSOLIDATED_INDEX_MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(indexes.len()).expect("fewer than 2^32 packs").to_le_bytes(),
    );
    for index in indexes {
        out.extend_from_slice(
            &u32::try_from(index.len()).expect("an index is under 4 GiB").to_le_bytes(),
        );
        out.extend_from_slice(index);
    }
    let check = ObjectId::of(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

/// The packs generation `generation` holds, with their entries (pack 0:
/// the caller numbers them); `None` if it is damaged in any way.
pub(super) fn decode(generation: u64, bytes: &[u8]) -> Option<Vec<PackIndex>> {
    let body = bytes.get(..bytes.len().checked_sub(32)?)?;
    if ObjectId::of(body).as_bytes() != &bytes[body.len()..] {
        return None;
    }
    let header = body.get(..HEADER_LEN)?;
    if header[..8] != CONSOLIDATED_INDEX_MAGIC
        || u64::from_le_bytes(header[8..16].try_into().ok()?) != generation
    {
        return None;
    }
    let count = u32::from_le_bytes(header[16..20].try_into().ok()?) as usize;
    let mut rest = &body[HEADER_LEN..];
    let mut out = Vec::with_capacity(count.min(rest.len() / 4));
    let mut seen = HashSet::new();
    for _ in 0..count {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let index = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        let name = ObjectId::from_bytes(index.get(8..40)?.try_into().ok()?);
        if !seen.insert(name) || index.len() < INDEX_HEADER_LEN {
            return None;
        }
        out.push((name, decode_index(name, index)?));
    }
    rest.is_empty().then_some(out)
}

/// Loads generation `generation` (`size` bytes as listed), from the cache
/// when it is there.
pub(super) async fn load(
    client: &dyn object_store::ObjectStore,
    keys: &Keys,
    shared: &Shared,
    generation: u64,
    size: u64,
) -> Result<Vec<PackIndex>, StoreError> {
    let name = key_name(generation);
    let cache_name = name.trim_start_matches("packs/");
    let limits = super::Bounded {
        len_max: CONSOLIDATED_INDEX_LEN_MAX,
        invalid: "it fails its checksum or an index in it is invalid",
    };
    let decode = |bytes: &[u8]| decode(generation, bytes);
    super::load_cached(client, shared, cache_name, &keys.key(&name), size, limits, decode).await
}

/// What [`GcLock::consolidate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consolidated {
    /// The generation written.
    pub generation: u64,
    /// Packs it holds the index of.
    pub packs: usize,
    /// Its length in bytes.
    pub len: u64,
}

impl GcLock {
    /// Writes the next consolidated index, holding the index of every pack
    /// listed now, then deletes the older generations. `None`: it would be
    /// larger than [`CONSOLIDATED_INDEX_LEN_MAX`], and none is written
    /// (the older ones are deleted all the same: they name packs that are
    /// gone, and readers read each pack's index instead).
    ///
    /// Under the lock no push publishes a pack, so what is listed is what
    /// the gc kept.
    pub fn consolidate(&self) -> Result<Option<Consolidated>, StoreError> {
        let remote = self.remote();
        let client = remote.inner.client.as_ref();
        let keys = &remote.inner.keys;
        let dir = remote.key("packs");
        let listed: Vec<object_store::ObjectMeta> = remote
            .block_on(client.list(Some(&dir)).try_collect())
            .map_err(remote_err("list", &dir))?;
        let mut old = Vec::new();
        let mut indexes: Vec<(ObjectId, u64)> = Vec::new();
        for meta in &listed {
            let Some(filename) = meta.location.filename() else { continue };
            if let Some(generation) = parse_name(filename) {
                old.push(generation);
            } else if let Some(name) =
                filename.strip_suffix(".idx").and_then(|s| s.parse::<ObjectId>().ok())
            {
                indexes.push((name, meta.size));
            }
        }
        indexes.sort();
        let generation = old.iter().max().map_or(0, |g| g + 1);
        let total: u64 = indexes.iter().map(|(_, size)| 4 + size).sum();
        let written = if total + (HEADER_LEN as u64) + 32 > CONSOLIDATED_INDEX_LEN_MAX {
            None
        } else {
            let bytes: Vec<Vec<u8>> = remote.block_on(
                futures::stream::iter(indexes.iter().map(|&(name, size)| async move {
                    let key = keys.index(&name);
                    if size > REMOTE_INDEX_LEN_MAX {
                        return Err(StoreError::RemoteDamaged {
                            key: key.to_string(),
                            what: "it is too large",
                        });
                    }
                    let bytes = get_range_exact(client, &key, 0..size).await?;
                    // Copied only once checked: readers would skip a
                    // consolidated index with one bad index in it.
                    if decode_index(name, &bytes).is_none() {
                        return Err(StoreError::RemoteDamaged {
                            key: key.to_string(),
                            what: "it fails its checksum or its entries are invalid",
                        });
                    }
                    Ok(bytes.to_vec())
                }))
                .buffered(INDEX_FETCHES_IN_FLIGHT_MAX)
                .try_collect(),
            )?;
            let key = remote.key(&key_name(generation));
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            let body = encode(generation, &bytes);
            let len = body.len() as u64;
            let body = PutPayload::from(body);
            remote
                .block_on(client.put_opts(&key, body, opts))
                .map_err(remote_err("write the consolidated index", &key))?;
            Some(Consolidated { generation, packs: bytes.len(), len })
        };
        for generation in old {
            let key = remote.key(&key_name(generation));
            match remote.block_on(client.delete(&key)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(remote_err("delete", &key)(e)),
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Codec, Kind};

    #[test]
    fn round_trip_and_damage() {
        let entry = |b: &[u8], offset| {
            (
                ObjectId::of(b),
                Location {
                    pack: 0,
                    offset,
                    stored_len: 1,
                    raw_len: 1,
                    kind: Kind::Object,
                    codec: Codec::Raw,
                },
            )
        };
        let (a, b) = (ObjectId::of(b"pack a"), ObjectId::of(b"pack b"));
        let indexes = vec![
            super::super::encode_index(a, 200, &[entry(b"x", 8)]),
            super::super::encode_index(b, 200, &[entry(b"y", 8), entry(b"z", 61)]),
        ];
        let bytes = encode(7, &indexes);
        let packs = decode(7, &bytes).unwrap();
        assert_eq!(packs.len(), 2);
        assert_eq!(packs[0], (a, vec![entry(b"x", 8)]));
        assert_eq!(packs[1], (b, vec![entry(b"y", 8), entry(b"z", 61)]));
        assert!(decode(8, &bytes).is_none(), "named for its generation");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(7, &bad).is_none(), "flipped byte {i}");
        }
        let twice = encode(7, &[indexes[0].clone(), indexes[0].clone()]);
        assert!(decode(7, &twice).is_none(), "a pack twice");
        assert_eq!(decode(3, &encode(3, &[])).unwrap(), vec![]);
        assert_eq!(parse_name("all-0000000000000007.cidx"), Some(7));
        assert_eq!(key_name(7), "packs/all-0000000000000007.cidx");
        for bad in ["all-7.cidx", "all-000000000000000G.cidx", "all-0000000000000007.idx"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
