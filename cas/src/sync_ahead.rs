//! Syncing ahead: while a large batch of objects is being put, a thread
//! beside the writers calls [`Store::sync`] each time another
//! [`SYNC_AHEAD_LEN`] bytes have been put. The disk then writes the start
//! of the batch while the rest is still being read and hashed, and the
//! sync that ends the batch waits only for its tail (a first import of
//! 100 MB spent 70 ms in its final sync without this, about 20 with it).
//!
//! Each of these syncs is an ordinary one (a local store's group-commit
//! `fsync`), so what it makes durable is durable, and a failure is the
//! store's: it is returned to the caller, and the store refuses further
//! writes as after any failed sync. Only a store that says it pays
//! ([`Store::syncs_ahead`]) is synced ahead; for any other, reports cost
//! nothing and no thread starts.

use std::sync::{Condvar, Mutex};

use crate::{Store, StoreError};

/// Bytes put between two syncs ahead. Large enough that a sync's fixed cost
/// (a journal commit) is small beside writing the bytes, small enough that
/// the final sync has little left.
pub const SYNC_AHEAD_LEN: u64 = 8 << 20;

/// What the writers report and the syncing thread reads.
pub struct SyncAhead<'scope, 'env> {
    shared: &'env Shared<'env>,
    scope: &'scope std::thread::Scope<'scope, 'env>,
}

struct Shared<'s> {
    store: &'s dyn Store,
    /// [`Store::syncs_ahead`].
    enabled: bool,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Bytes put since the last sync began.
    unsynced: u64,
    /// Whether the syncing thread was started (at the first
    /// [`SYNC_AHEAD_LEN`] bytes: a small batch starts none).
    started: bool,
    /// The writers are done: the thread stops.
    done: bool,
    /// The first sync that failed.
    error: Option<StoreError>,
}

impl<'scope, 'env> SyncAhead<'scope, 'env> {
    /// Runs `f`, and beside it (if `store` [syncs ahead](Store::syncs_ahead))
    /// a thread (started once `f` has reported
    /// [`SYNC_AHEAD_LEN`] bytes with [`SyncAhead::put`]) that syncs `store`
    /// each time another [`SYNC_AHEAD_LEN`] bytes were put. Returns what `f`
    /// returned and whether every sync ahead succeeded. The thread is gone
    /// when this returns, even if `f` panicked.
    pub fn run<R>(
        store: &dyn Store,
        f: impl for<'s, 'e> FnOnce(&SyncAhead<'s, 'e>) -> R,
    ) -> (R, Result<(), StoreError>) {
        let enabled = store.syncs_ahead();
        let shared = Shared { store, enabled, state: Mutex::default(), wake: Condvar::new() };
        let result = std::thread::scope(|scope| {
            // Stops the thread however `f` ends, or the scope would wait
            // for it forever.
            let _stop = Stop(&shared);
            f(&SyncAhead { shared: &shared, scope })
        });
        let error = shared.state.into_inner().unwrap_or_else(|e| e.into_inner()).error;
        (result, error.map_or(Ok(()), Err))
    }

    /// Reports `len` more bytes put.
    pub fn put(&self, len: u64) {
        if !self.shared.enabled {
            return;
        }
        let mut state = self.shared.lock();
        state.unsynced += len;
        if state.unsynced < SYNC_AHEAD_LEN {
            return;
        }
        if !state.started {
            state.started = true;
            let shared = self.shared;
            self.scope.spawn(move || shared.sync_while_putting());
        }
        self.shared.wake.notify_one();
    }
}

impl Shared<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: syncs while enough bytes wait, and waits for more,
    /// until done or a sync fails.
    fn sync_while_putting(&self) {
        loop {
            let mut state = self.lock();
            while !state.done && state.unsynced < SYNC_AHEAD_LEN {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.done {
                return;
            }
            state.unsynced = 0;
            drop(state);
            if let Err(e) = self.store.sync() {
                self.lock().error = Some(e);
                return;
            }
        }
    }
}

/// Tells the syncing thread to stop when dropped.
struct Stop<'a, 's>(&'a Shared<'s>);

impl Drop for Stop<'_, '_> {
    fn drop(&mut self) {
        self.0.lock().done = true;
        self.0.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemStore, ObjectId};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that counts syncs and can be told to fail them.
    #[derive(Debug)]
    struct Counting {
        inner: MemStore,
        syncs: AtomicUsize,
        fail: bool,
    }

    impl Store for Counting {
        fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.put(id, bytes)
        }
        fn get(&self, id: &ObjectId) -> Result<crate::Bytes, StoreError> {
            self.inner.get(id)
        }
        fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
            self.inner.contains(id)
        }
        fn sync(&self) -> Result<(), StoreError> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail { Err(StoreError::Poisoned) } else { Ok(()) }
        }
        fn syncs_ahead(&self) -> bool {
            true
        }
    }

    fn counting(fail: bool) -> Counting {
        Counting { inner: MemStore::new(), syncs: AtomicUsize::new(0), fail }
    }

    #[test]
    fn syncs_once_enough_is_put_and_never_for_less() {
        let store = counting(false);
        let ((), synced) = SyncAhead::run(&store, |ahead| ahead.put(SYNC_AHEAD_LEN - 1));
        synced.unwrap();
        assert_eq!(store.syncs.load(Ordering::SeqCst), 0, "under the length: no sync ahead");

        // The thread is waited for (the scope joins it), so once enough was
        // put, its sync has happened or the thread saw `done` first; report
        // in steps and wait for each sync so the count is exact.
        let store = counting(false);
        let ((), synced) = SyncAhead::run(&store, |ahead| {
            for n in 1..=3 {
                ahead.put(SYNC_AHEAD_LEN);
                while store.syncs.load(Ordering::SeqCst) < n {
                    std::thread::yield_now();
                }
            }
        });
        synced.unwrap();
        assert_eq!(store.syncs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_store_that_does_not_sync_ahead_is_never_synced() {
        // A MemStore says no (as a remote store does: its sync publishes).
        #[derive(Debug)]
        struct NoAhead(Counting);
        impl Store for NoAhead {
            fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
                self.0.put(id, bytes)
            }
            fn get(&self, id: &ObjectId) -> Result<crate::Bytes, StoreError> {
                self.0.get(id)
            }
            fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
                self.0.contains(id)
            }
            fn sync(&self) -> Result<(), StoreError> {
                self.0.sync()
            }
        }
        let store = NoAhead(counting(false));
        let ((), synced) = SyncAhead::run(&store, |ahead| {
            for _ in 0..4 {
                ahead.put(SYNC_AHEAD_LEN);
            }
            assert!(!ahead.shared.lock().started, "no thread for a store that says no");
        });
        synced.unwrap();
        assert_eq!(store.0.syncs.load(Ordering::SeqCst), 0);
        assert!(!MemStore::new().syncs_ahead());
    }

    #[test]
    fn a_failed_sync_ahead_is_returned() {
        let store = counting(true);
        let (value, synced) = SyncAhead::run(&store, |ahead| {
            ahead.put(SYNC_AHEAD_LEN);
            while store.syncs.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            7
        });
        assert_eq!(value, 7);
        assert!(matches!(synced, Err(StoreError::Poisoned)));
    }

    #[test]
    fn a_panic_in_the_writers_stops_the_thread() {
        let store = counting(false);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SyncAhead::run(&store, |_| panic!("a writer failed"))
        }));
        assert!(caught.is_err(), "the panic comes through, and nothing hangs");
    }
}
