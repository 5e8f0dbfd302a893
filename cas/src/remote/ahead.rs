//! Read-ahead for transfers: a pack's small records in a few requests.
//!
//! A transfer walks history one commit at a time (a commit's parents are
//! known only once it is read), so reading record by record costs a round
//! trip per commit. But a push writes each commit right after its trees
//! and blobs, so what a history reaches lies together in few packs. While
//! a [`ReadAhead`] is alive, a pack that has answered
//! [`READ_AHEAD_MISSES_MIN`] reads is fetched whole instead: every record
//! that is not a chunk of a large object (objects, chunk lists), in
//! coalesced ranges, kept in memory as a "window" that answers the next
//! reads of that pack. Chunks are left out (a large object is streamed a
//! few chunks at a time, and must not be held whole); so are packs whose
//! small records would exceed [`READ_AHEAD_WINDOW_LEN_MAX`]. At most
//! [`READ_AHEAD_WINDOWS_MAX`] windows are held; the least recently used
//! goes first.
//!
//! A window holds raw records: each one is checked (CRC, header, hash) as
//! it is taken out, exactly as when it is fetched alone.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;

use super::{RemoteStore, get_range_exact, lock, read_lock};
use crate::StoreError;
use crate::record::{Kind, Location};

/// Reads of one pack answered one by one before the pack's small records
/// are fetched whole: a pull of a few commits reads only what it needs.
pub const READ_AHEAD_MISSES_MIN: usize = 4;
/// Windows (a pack's small records) held at once.
pub const READ_AHEAD_WINDOWS_MAX: usize = 2;
/// The most bytes of one window; a pack with more small records than this
/// is read record by record.
pub const READ_AHEAD_WINDOW_LEN_MAX: u64 = 48 << 20;
/// Records at most this far apart are fetched in one request (the bytes
/// between, chunks of large objects, are read and dropped).
const READ_AHEAD_GAP_MAX: u64 = 256 << 10;
/// Requests of one window in flight at once.
const READ_AHEAD_FETCHES_IN_FLIGHT_MAX: usize = 4;

/// What the read-ahead of a store holds. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct AheadState {
    /// Live [`ReadAhead`] guards; nothing is held while there are none.
    users: usize,
    /// Per pack: the coalesced ranges of its records that are not chunks.
    /// Built from the index in one pass when a pack not in it is needed.
    plans: HashMap<u32, Vec<Range<u64>>>,
    /// Per pack: the reads it answered without a window.
    misses: HashMap<u32, usize>,
    /// Most recently used last.
    windows: VecDeque<Window>,
}

#[derive(Debug)]
struct Window {
    slot: u32,
    /// Fetched ranges, by start offset.
    pieces: Vec<(u64, Bytes)>,
}

impl Window {
    fn slice(&self, loc: &Location) -> Option<Bytes> {
        let i = self.pieces.partition_point(|(start, _)| *start <= loc.offset).checked_sub(1)?;
        let (start, bytes) = &self.pieces[i];
        let from = usize::try_from(loc.offset - start).ok()?;
        let to = usize::try_from(loc.end() - start).ok()?;
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }

    fn slices(&self, locs: &[Location]) -> Option<Vec<Bytes>> {
        locs.iter().map(|l| self.slice(l)).collect()
    }
}

impl AheadState {
    /// The records at `locs` from the window of pack `slot`, which becomes
    /// the most recently used; `None` unless it holds them all.
    fn take(&mut self, slot: u32, locs: &[Location]) -> Option<Vec<Bytes>> {
        let at = self.windows.iter().position(|w| w.slot == slot)?;
        let out = self.windows[at].slices(locs)?;
        let window = self.windows.remove(at).expect("found");
        self.windows.push_back(window);
        Some(out)
    }
}

/// While alive, reads from its store read ahead (see the module
/// documentation). Dropping the last one frees every window.
#[derive(Debug)]
pub struct ReadAhead<'a> {
    store: &'a RemoteStore,
}

impl Drop for ReadAhead<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.store.ahead);
        state.users -= 1;
        if state.users == 0 {
            *state = AheadState::default();
        }
    }
}

impl RemoteStore {
    /// Reads ahead until the guard is dropped: for a transfer, which reads
    /// most of the small records of the packs it touches.
    pub fn read_ahead(&self) -> ReadAhead<'_> {
        lock(&self.ahead).users += 1;
        ReadAhead { store: self }
    }

    /// The records at `locs` of the uploaded pack `slot` (at `key`) from a
    /// window, fetching the window when the pack has been read often
    /// enough; `None`: read them one by one.
    pub(super) fn read_ahead_records(
        &self,
        slot: u32,
        key: &Key,
        locs: &[Location],
    ) -> Result<Option<Vec<Bytes>>, StoreError> {
        let ranges = {
            let mut state = lock(&self.ahead);
            if state.users == 0 || locs.iter().any(|l| l.kind == Kind::Chunk) {
                return Ok(None);
            }
            if let Some(out) = state.take(slot, locs) {
                return Ok(Some(out));
            }
            let misses = state.misses.entry(slot).or_default();
            *misses += 1;
            if *misses <= READ_AHEAD_MISSES_MIN {
                return Ok(None);
            }
            if !state.plans.contains_key(&slot) {
                state.plans = self.plan();
            }
            match state.plans.get(&slot) {
                Some(ranges) => ranges.clone(),
                None => return Ok(None),
            }
        };
        let len: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        if len > READ_AHEAD_WINDOW_LEN_MAX {
            return Ok(None);
        }
        // Fetched without the lock held: other reads go on meanwhile.
        let client = self.remote.inner.client.as_ref();
        let pieces: Vec<(u64, Bytes)> = self.remote.block_on(
            futures::stream::iter(ranges.into_iter().map(|r| async move {
                let start = r.start;
                Ok::<_, StoreError>((start, get_range_exact(client, key, r).await?))
            }))
            .buffered(READ_AHEAD_FETCHES_IN_FLIGHT_MAX)
            .try_collect(),
        )?;
        let mut state = lock(&self.ahead);
        if state.users == 0 {
            // The last guard went meanwhile: answer, keep nothing.
            return Ok(Window { slot, pieces }.slices(locs));
        }
        state.windows.retain(|w| w.slot != slot);
        state.windows.push_back(Window { slot, pieces });
        while state.windows.len() > READ_AHEAD_WINDOWS_MAX {
            state.windows.pop_front();
        }
        Ok(state.take(slot, locs))
    }

    /// Every pack's records that are not chunks, as coalesced ranges.
    fn plan(&self) -> HashMap<u32, Vec<Range<u64>>> {
        let mut by_pack: HashMap<u32, Vec<Range<u64>>> = HashMap::new();
        for loc in read_lock(&self.shared.index).values() {
            if loc.kind != Kind::Chunk {
                by_pack.entry(loc.pack).or_default().push(loc.offset..loc.end());
            }
        }
        for ranges in by_pack.values_mut() {
            ranges.sort_by_key(|r| r.start);
            let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
            for r in ranges.drain(..) {
                match merged.last_mut() {
                    Some(last) if r.start <= last.end.saturating_add(READ_AHEAD_GAP_MAX) => {
                        last.end = last.end.max(r.end);
                    }
                    _ => merged.push(r),
                }
            }
            *ranges = merged;
        }
        by_pack
    }
}
