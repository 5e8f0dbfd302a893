//! The pack store: conformance, recovery, corruption, faults, chunking.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vst_cas::sim::noise;

use vst_cas::pack::{CHUNKING_LEN_MIN, PACK_MAGIC};
use vst_cas::sim::{Fault, SimFs, Unsynced};
use vst_cas::vfs::Vfs;
use vst_cas::{Access, ObjectId, PackStore, Store, StoreError, conformance};

fn sim_store(fs: &SimFs) -> PackStore {
    PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadWrite).unwrap()
}

/// A store whose packs roll over at 4 KiB, so tests see several packs.
fn small_packs(fs: &SimFs) -> PackStore {
    let options = vst_cas::PackOptions { pack_len_max: 4096, ..Default::default() };
    PackStore::open_with_options(Arc::new(fs.clone()), Path::new("/s"), Access::ReadWrite, options)
        .unwrap()
}

fn pack1() -> PathBuf {
    PathBuf::from("/s/packs/pack-00000001.pack")
}

fn blob(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j as u32).wrapping_mul(2654435761).wrapping_add(i).to_le_bytes()[1]).collect()
}

#[test]
fn pack_store_conforms_on_disk() {
    let dirs: std::cell::RefCell<Vec<tempfile::TempDir>> = Default::default();
    conformance::run_all(&mut || {
        let dir = tempfile::tempdir().unwrap();
        let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
        dirs.borrow_mut().push(dir);
        store
    });
}

#[test]
fn pack_store_conforms_on_the_simulated_fs() {
    conformance::run_all(&mut || sim_store(&SimFs::new()));
}

#[test]
fn objects_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let objects: Vec<Vec<u8>> = (0..200).map(|i| blob(i, 100 + i as usize * 37)).collect();
    {
        let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
        for o in &objects {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
    }
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    assert_eq!(store.recovery().records_reindexed, 0, "the index covered everything");
    for o in &objects {
        assert_eq!(&store.get(&ObjectId::of(o)).unwrap()[..], &o[..]);
    }
}

#[test]
fn a_second_writer_is_refused_and_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let first = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    first.put(ObjectId::of(b"x"), b"x").unwrap();
    first.sync().unwrap();
    match PackStore::open(dir.path(), Access::ReadWrite) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("a second writer must be refused, got {other:?}"),
    }
    let reader = PackStore::open(dir.path(), Access::ReadOnly).unwrap();
    assert_eq!(&reader.get(&ObjectId::of(b"x")).unwrap()[..], b"x");
    assert!(matches!(reader.put(ObjectId::of(b"y"), b"y"), Err(StoreError::ReadOnly)));
    drop(first);
    PackStore::open(dir.path(), Access::ReadWrite).expect("the lock is released on drop");
}

#[test]
fn a_lost_index_is_rebuilt_from_the_packs() {
    let fs = SimFs::new();
    let objects: Vec<Vec<u8>> = (0..50).map(|i| blob(i, 3000)).collect();
    {
        let store = sim_store(&fs);
        for o in &objects {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
    }
    fs.remove(Path::new("/s/index")).unwrap();
    let store = sim_store(&fs);
    assert!(store.recovery().index_rebuilt);
    for o in &objects {
        assert_eq!(&store.get(&ObjectId::of(o)).unwrap()[..], &o[..]);
    }
    // A damaged index is rebuilt too.
    drop(store);
    fs.tamper(Path::new("/s/index"), |b| b[3] ^= 0xff);
    let store = sim_store(&fs);
    assert!(store.recovery().index_rebuilt);
    assert_eq!(store.get(&ObjectId::of(&objects[7])).unwrap().len(), 3000);
}

#[test]
fn a_torn_tail_is_cut_and_the_rest_kept() {
    let fs = SimFs::new();
    let a = noise(1, 5000);
    let b = noise(2, 5000);
    {
        let store = sim_store(&fs);
        store.put(ObjectId::of(&a), &a).unwrap();
        store.sync().unwrap();
        store.put(ObjectId::of(&b), &b).unwrap();
        store.sync().unwrap();
    }
    // Lose the index's record of b and tear b's record in half.
    let len = fs.len(&pack1()).unwrap().unwrap();
    fs.tamper(&pack1(), |bytes| bytes.truncate(len as usize - 2000));
    fs.tamper(Path::new("/s/index"), |bytes| bytes.truncate(table_header_len(bytes) + 64));
    let store = sim_store(&fs);
    assert!(store.recovery().torn_bytes_cut > 0);
    assert_eq!(&store.get(&ObjectId::of(&a)).unwrap()[..], &a[..]);
    assert!(matches!(store.get(&ObjectId::of(&b)), Err(StoreError::NotFound { .. })));
    // And the store goes on appending after the cut.
    store.put(ObjectId::of(&b), &b).unwrap();
    store.sync().unwrap();
    drop(store);
    assert_eq!(&sim_store(&fs).get(&ObjectId::of(&b)).unwrap()[..], &b[..]);
}

#[test]
fn flipped_bytes_are_errors_never_wrong_data() {
    let fs = SimFs::new();
    let objects: Vec<Vec<u8>> = (0..20).map(|i| blob(i, 2000)).collect();
    {
        let store = sim_store(&fs);
        for o in &objects {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
    }
    let pack_len = fs.len(&pack1()).unwrap().unwrap() as usize;
    // Flip one byte in each of several places of the pack: every read
    // either returns the right bytes or an error naming the object.
    for at in [PACK_MAGIC.len() + 5, PACK_MAGIC.len() + 60, pack_len / 2, pack_len - 3] {
        let fs = fs.crash_image(Unsynced::Keep);
        fs.tamper(&pack1(), |bytes| bytes[at] ^= 0x40);
        let store = sim_store(&fs);
        let mut errors = 0;
        for o in &objects {
            let id = ObjectId::of(o);
            match store.get(&id) {
                Ok(bytes) => assert_eq!(&bytes[..], &o[..], "wrong data for {id}"),
                Err(StoreError::Damaged { id: got, .. } | StoreError::Corrupt { id: got, .. }) => {
                    assert_eq!(got, id);
                    errors += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(errors, 1, "a flip at {at} damages exactly one object");
        assert_eq!(store.verify_all().len(), 1, "verification finds it");
    }
}

#[test]
fn a_flipped_index_entry_is_dropped_and_recovered_from_the_pack() {
    let fs = SimFs::new();
    let o = blob(9, 4000);
    {
        let store = sim_store(&fs);
        store.put(ObjectId::of(&o), &o).unwrap();
        store.sync().unwrap();
    }
    fs.tamper(Path::new("/s/index"), |bytes| bytes[8 + 40] ^= 1);
    let store = sim_store(&fs);
    assert_eq!(&store.get(&ObjectId::of(&o)).unwrap()[..], &o[..]);
}

#[test]
fn write_and_sync_faults_poison_the_store_until_reopened() {
    for kind in [std::io::ErrorKind::Other, std::io::ErrorKind::StorageFull] {
        // Find the operations a put + sync performs, then fail each in turn.
        let probe = SimFs::new();
        let store = sim_store(&probe);
        let start = probe.ops();
        let data = blob(3, 10_000);
        store.put(ObjectId::of(&data), &data).unwrap();
        store.sync().unwrap();
        let end = probe.ops();
        drop(store);
        for at in start..end {
            let fs = SimFs::new();
            let store = sim_store(&fs);
            let committed = blob(4, 100);
            store.put(ObjectId::of(&committed), &committed).unwrap();
            store.sync().unwrap();
            fs.set_fault(fs.ops() + (at - start), Fault::Error(kind));
            let result = store.put(ObjectId::of(&data), &data).and_then(|()| store.sync());
            assert!(result.is_err(), "fault at op {at} must fail the operation");
            assert!(matches!(store.put(ObjectId::of(b"z"), b"z"), Err(StoreError::Poisoned)));
            assert!(matches!(store.sync(), Err(StoreError::Poisoned)));
            drop(store);
            let store = sim_store(&fs);
            assert!(store.verify_all().is_empty(), "reopened clean after a fault at op {at}");
            assert_eq!(&store.get(&ObjectId::of(&committed)).unwrap()[..], &committed[..]);
        }
    }
}

#[test]
fn large_objects_are_chunked_and_read_by_range() {
    let fs = SimFs::new();
    let store = sim_store(&fs);
    let big = noise(7, 5 * CHUNKING_LEN_MIN + 12345);
    let id = ObjectId::of(&big);
    store.put(id, &big).unwrap();
    store.sync().unwrap();
    assert_eq!(&store.get(&id).unwrap()[..], &big[..]);
    for (offset, len) in
        [(0u64, 10u64), (1_000_000, 4096), (big.len() as u64 - 1, 1), (123_456, 2_500_000)]
    {
        let got = store.read_range(&id, offset, len).unwrap();
        assert_eq!(&got[..], &big[offset as usize..(offset + len) as usize]);
    }
    drop(store);
    let store = sim_store(&fs);
    // 4 KiB from the middle reads one or two chunks, not the file.
    let before = fs.bytes_read();
    assert_eq!(&store.read_range(&id, 3_000_000, 4096).unwrap()[..], &big[3_000_000..3_004_096]);
    let read = fs.bytes_read() - before;
    assert!(read <= 2 * vst_cas::pack::CHUNK_LEN_MAX as u64 + 4096, "read {read} bytes for 4 KiB");
    assert!(read < big.len() as u64 / 2);
    assert!(store.verify_all().is_empty());
}

#[test]
fn compressible_objects_are_compressed_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    let text = b"the same line again and again\n".repeat(1000);
    let random = noise(5, 30_000);
    store.put(ObjectId::of(&text), &text).unwrap();
    store.put(ObjectId::of(&random), &random).unwrap();
    store.sync().unwrap();
    let pack_len = std::fs::metadata(dir.path().join("packs/pack-00000001.pack")).unwrap().len();
    assert!(pack_len < 30_000 + 2_000, "text compressed: pack is {pack_len} bytes");
    assert!(pack_len > 30_000, "random bytes stored as they are");
    assert_eq!(&store.get(&ObjectId::of(&text)).unwrap()[..], &text[..]);
    assert_eq!(&store.get(&ObjectId::of(&random)).unwrap()[..], &random[..]);
}

#[test]
fn ten_edited_versions_of_a_large_file_share_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    let len = 64 << 20;
    let mut file = noise(11, len);
    for version in 0..10u8 {
        // A small edit in the middle.
        let at = len / 2 + usize::from(version) * 4096;
        file[at..at + 100].fill(version);
        store.put(ObjectId::of(&file), &file).unwrap();
    }
    store.sync().unwrap();
    let stored: u64 = std::fs::read_dir(dir.path().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let ratio = stored as f64 / len as f64;
    assert!(ratio <= 1.2, "ten versions take {ratio:.3}x the space of one");
    assert_eq!(&store.get(&ObjectId::of(&file)).unwrap()[..], &file[..]);
}

#[test]
fn many_threads_committing_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(PackStore::open(dir.path(), Access::ReadWrite).unwrap());
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20u32 {
                    let data = blob(t * 1000 + i, 500);
                    store.put(ObjectId::of(&data), &data).unwrap();
                    store.sync().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(store);
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    for t in 0..8u32 {
        for i in 0..20u32 {
            let data = blob(t * 1000 + i, 500);
            assert_eq!(&store.get(&ObjectId::of(&data)).unwrap()[..], &data[..]);
        }
    }
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever bytes a pack or the index holds, opening the store and
        /// reading from it returns data that matches its id or an error,
        /// and never panics.
        #[test]
        fn arbitrary_pack_and_index_bytes_never_panic(
            pack_tail in prop::collection::vec(any::<u8>(), 0..600),
            index_tail in prop::collection::vec(any::<u8>(), 0..300),
            flip in any::<(usize, u8)>(),
        ) {
            let fs = SimFs::new();
            let good = noise(3, 5000);
            {
                let store = sim_store(&fs);
                store.put(ObjectId::of(&good), &good).unwrap();
                store.sync().unwrap();
            }
            fs.tamper(&pack1(), |b| {
                let i = flip.0 % b.len();
                b[i] ^= flip.1;
                b.extend_from_slice(&pack_tail);
            });
            fs.tamper(Path::new("/s/index"), |b| b.extend_from_slice(&index_tail));
            if let Ok(store) = PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadWrite) {
                for id in store.ids() {
                    if let Ok(bytes) = store.get(&id) {
                        prop_assert_eq!(ObjectId::of(&bytes), id);
                    }
                    let _ = store.read_range(&id, 0, 1);
                }
                let _ = store.verify_all();
            }
        }
    }
}

#[test]
fn flushed_objects_survive_the_process_dying() {
    let fs = SimFs::new();
    let store = sim_store(&fs);
    let data = noise(8, 3000);
    store.put(ObjectId::of(&data), &data).unwrap();
    store.flush().unwrap();
    // The process dies: the kernel keeps what was written, unsynced or not.
    let after = sim_store(&fs.crash_image(Unsynced::Keep));
    assert_eq!(&after.get(&ObjectId::of(&data)).unwrap()[..], &data[..]);
    assert_eq!(after.recovery().records_reindexed, 1);
    // Without flush, the record was only in the process's buffer.
    let fs = SimFs::new();
    let store = sim_store(&fs);
    store.put(ObjectId::of(&data), &data).unwrap();
    let after = sim_store(&fs.crash_image(Unsynced::Keep));
    assert!(!after.contains(&ObjectId::of(&data)).unwrap());
}

mod review {
    //! Scenarios from the review of the pack store's durability.
    use super::*;

    #[test]
    fn records_recovered_after_a_kill_are_synced_before_they_count() {
        let fs = SimFs::new();
        let data = noise(1, 3000);
        {
            let store = sim_store(&fs);
            store.put(ObjectId::of(&data), &data).unwrap();
            store.flush().unwrap(); // in the page cache, not synced
        }
        // The process is killed; a new one opens the store, puts the same
        // content (a no-op: it is already there) and syncs.
        let after_kill = fs.kill_image();
        let store = sim_store(&after_kill);
        store.put(ObjectId::of(&data), &data).unwrap();
        store.sync().unwrap();
        drop(store);
        // Then the power goes: the acknowledged object must be there.
        let after_power_cut = sim_store(&after_kill.crash_image(Unsynced::Drop));
        assert_eq!(&after_power_cut.get(&ObjectId::of(&data)).unwrap()[..], &data[..]);
    }

    #[test]
    fn index_entries_out_of_order_or_missing_lose_nothing() {
        let fs = SimFs::new();
        let objects: Vec<Vec<u8>> = (0..6).map(|i| noise(i, 2000)).collect();
        {
            let store = sim_store(&fs);
            for o in &objects {
                store.put(ObjectId::of(o), o).unwrap();
                store.sync().unwrap();
            }
        }
        // Keep only the last entry: it covers the end of the pack, but not
        // the records before it.
        fs.tamper(Path::new("/s/index"), |b| {
            let last = b[b.len() - 64..].to_vec();
            b.truncate(super::table_header_len(b));
            b.extend_from_slice(&last);
        });
        let store = sim_store(&fs);
        assert!(!store.recovery().index_rebuilt, "the log is cut, not the index rebuilt");
        for o in &objects {
            assert_eq!(&store.get(&ObjectId::of(o)).unwrap()[..], &o[..]);
        }
    }

    /// The same after a table: records the table does not name, after
    /// the run it covers, are found by the scan however the log misses
    /// them.
    #[test]
    fn records_after_the_table_that_the_log_misses_are_found() {
        let fs = SimFs::new();
        let first = super::many_objects(&fs, 5000);
        drop(sim_store(&fs)); // folds the log into the table
        let later: Vec<Vec<u8>> = (0..6).map(|i| noise(i + 50, 2000)).collect();
        {
            let store = sim_store(&fs);
            for o in &later {
                store.put(ObjectId::of(o), o).unwrap();
                store.sync().unwrap();
            }
        }
        fs.tamper(Path::new("/s/index"), |b| {
            let last = b[b.len() - 64..].to_vec();
            b.truncate(b.len() - 6 * 64);
            b.extend_from_slice(&last);
        });
        let store = sim_store(&fs);
        assert!(!store.recovery().index_rebuilt);
        assert_eq!(store.recovery().records_reindexed, 5);
        super::all_there(&store, &first);
        super::all_there(&store, &later);
    }

    #[test]
    fn damage_in_the_middle_of_the_last_pack_is_kept_not_cut() {
        let fs = SimFs::new();
        let objects: Vec<Vec<u8>> = (0..5).map(|i| noise(i + 10, 2000)).collect();
        {
            let store = sim_store(&fs);
            for o in &objects {
                store.put(ObjectId::of(o), o).unwrap();
            }
            store.sync().unwrap();
        }
        // The index is lost and a byte of the second record rots.
        fs.remove(Path::new("/s/index")).unwrap();
        fs.tamper(&pack1(), |b| b[8 + 2052 + 100] ^= 1);
        let store = sim_store(&fs);
        assert_eq!(
            store.recovery().torn_bytes_cut,
            0,
            "valid records follow: damage, not a torn write"
        );
        assert_eq!(store.recovery().damaged_packs, [1]);
        // What came before the damage is readable, and new writes go on.
        assert_eq!(&store.get(&ObjectId::of(&objects[0])).unwrap()[..], &objects[0][..]);
        let new = noise(99, 100);
        store.put(ObjectId::of(&new), &new).unwrap();
        store.sync().unwrap();
        drop(store);
        let store = sim_store(&fs);
        assert_eq!(&store.get(&ObjectId::of(&new)).unwrap()[..], &new[..]);
        assert_eq!(
            fs.len(&pack1()).unwrap().unwrap(),
            8 + 5 * 2052,
            "the damaged pack was not cut"
        );
    }

    #[test]
    fn small_packs_roll_over_and_survive_crashes_at_every_step() {
        let objects: Vec<Vec<u8>> = (0..12).map(|i| noise(i + 20, 1500)).collect();
        let probe = SimFs::new();
        let store = small_packs(&probe);
        let start = probe.ops();
        for o in &objects {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
        let end = probe.ops();
        drop(store);
        assert!(
            probe.list(Path::new("/s/packs")).unwrap().len() >= 4,
            "several packs were written"
        );
        let store = small_packs(&probe);
        for o in &objects {
            assert_eq!(&store.get(&ObjectId::of(o)).unwrap()[..], &o[..]);
        }
        drop(store);
        for at in start..end {
            for unsynced in Unsynced::ALL {
                let fs = SimFs::new();
                let store = small_packs(&fs);
                fs.set_fault(fs.ops() + (at - start), Fault::Crash);
                let mut acknowledged = true;
                for o in &objects {
                    acknowledged &= store.put(ObjectId::of(o), o).is_ok();
                }
                acknowledged &= store.sync().is_ok();
                drop(store);
                let store = small_packs(&fs.crash_image(unsynced));
                assert!(store.verify_all().is_empty(), "crash at {at} ({unsynced:?})");
                for o in &objects {
                    match store.get(&ObjectId::of(o)) {
                        Ok(bytes) => assert_eq!(&bytes[..], &o[..]),
                        Err(e) => assert!(
                            !acknowledged,
                            "acknowledged object lost at {at} ({unsynced:?}): {e}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn gc_with_small_packs_writes_several_and_leaves_no_stray_pack() {
        let fs = SimFs::new();
        let store = small_packs(&fs);
        let objects: Vec<Vec<u8>> = (0..12).map(|i| noise(i + 40, 1500)).collect();
        for o in &objects {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
        drop(store);
        let store = small_packs(&fs);
        let live: std::collections::HashSet<ObjectId> =
            objects[..8].iter().map(|o| ObjectId::of(o)).collect();
        let stats = store.gc(&live, vst_cas::GcMode::Collect).unwrap();
        assert_eq!(stats.records_removed, 4);
        drop(store);
        let store = small_packs(&fs);
        assert!(!store.recovery().index_rebuilt);
        assert_eq!(store.recovery().records_reindexed, 0, "no stray pack scanned back in");
        for o in &objects[..8] {
            assert_eq!(&store.get(&ObjectId::of(o)).unwrap()[..], &o[..]);
        }
        assert!(!store.contains(&ObjectId::of(&objects[9])).unwrap());
    }
}

mod rereview {
    use super::*;

    /// A kill at any step of a rollover, then a new process that commits,
    /// then a power cut: the acknowledged objects are there.
    #[test]
    fn a_kill_during_rollover_then_a_power_cut_loses_nothing_acknowledged() {
        let first: Vec<Vec<u8>> = (0..4).map(|i| noise(i + 60, 1500)).collect();
        let later = noise(70, 1500);
        let probe = SimFs::new();
        let store = small_packs(&probe);
        let start = probe.ops();
        for o in &first {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
        let end = probe.ops();
        drop(store);
        for at in start..end {
            let fs = SimFs::new();
            let store = small_packs(&fs);
            fs.set_fault(fs.ops() + (at - start), Fault::Crash);
            for o in &first {
                let _ = store.put(ObjectId::of(o), o);
            }
            let _ = store.sync();
            drop(store);
            // The process died; the machine did not. A new one commits.
            let alive = fs.kill_image();
            let store = small_packs(&alive);
            store.put(ObjectId::of(&later), &later).unwrap();
            store.sync().unwrap();
            drop(store);
            // Then the power goes.
            let after = small_packs(&alive.crash_image(Unsynced::Drop));
            assert_eq!(
                &after.get(&ObjectId::of(&later)).unwrap()[..],
                &later[..],
                "acknowledged after a kill at step {at}, lost to the power cut"
            );
            assert!(after.verify_all().is_empty());
        }
    }

    #[test]
    fn a_read_only_open_does_not_call_a_torn_tail_damage() {
        let fs = SimFs::new();
        let a = noise(80, 3000);
        {
            let store = sim_store(&fs);
            store.put(ObjectId::of(&a), &a).unwrap();
            store.sync().unwrap();
        }
        fs.tamper(&pack1(), |b| b.extend_from_slice(&[0u8; 100]));
        let store =
            PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadOnly).unwrap();
        assert!(store.recovery().damaged_packs.is_empty());
        assert_eq!(&store.get(&ObjectId::of(&a)).unwrap()[..], &a[..]);
    }
}

/// Puts `n` small distinct objects into a new simulated store, synced, and
/// returns them.
fn many_objects(fs: &SimFs, n: u32) -> Vec<Vec<u8>> {
    let objects: Vec<Vec<u8>> = (0..n).map(|i| format!("object {i}").into_bytes()).collect();
    let store = sim_store(fs);
    for o in &objects {
        store.put(ObjectId::of(o), o).unwrap();
    }
    store.sync().unwrap();
    objects
}

fn all_there(store: &PackStore, objects: &[Vec<u8>]) {
    for o in objects {
        assert_eq!(&store.get(&ObjectId::of(o)).unwrap()[..], &o[..]);
    }
}

/// The header of an index with a table: magic, count, pack count, 20
/// bytes a pack, CRC.
fn table_header_len(index: &[u8]) -> usize {
    let packs = u32::from_le_bytes(index[16..20].try_into().unwrap()) as usize;
    8 + 8 + 4 + 20 * packs + 4
}

/// How many entries an index's table holds.
fn table_len(index: &[u8]) -> u64 {
    u64::from_le_bytes(index[8..16].try_into().unwrap())
}

/// Entries appended since the table was written are rewritten into it at
/// the next open once there are many, so opening reads one sorted table;
/// a few are left in the log.
#[test]
fn the_index_log_is_folded_into_the_table_once_long() {
    let fs = SimFs::new();
    let index = Path::new("/s/index");
    let objects = many_objects(&fs, 5000);
    let before = fs.read_file(index).unwrap();
    assert_eq!(&before[..8], vst_cas::pack::INDEX_MAGIC.as_slice());
    assert_eq!(table_len(&before), 0, "a new store's table is empty");
    assert_eq!(before.len(), table_header_len(&before) + 5000 * 64, "5,000 in the log");
    let store = sim_store(&fs);
    all_there(&store, &objects);
    let after = fs.read_file(index).unwrap();
    assert_eq!(table_len(&after), 5000, "all in the table");
    assert_eq!(after.len(), table_header_len(&after) + 5000 * 64, "none in the log");
    let more: Vec<Vec<u8>> = (0..10).map(|i| format!("more {i}").into_bytes()).collect();
    for o in &more {
        store.put(ObjectId::of(o), o).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let store = sim_store(&fs);
    let later = fs.read_file(index).unwrap();
    assert_eq!((table_len(&later), later.len()), (5000, after.len() + 10 * 64), "ten in the log");
    all_there(&store, &objects);
    all_there(&store, &more);
    let reader =
        PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadOnly).unwrap();
    all_there(&reader, &more);
    assert_eq!(reader.ids().len(), 5010);
}

/// An index written before the table (the first form: a log of entries
/// after `VSTINDX\x01`) is read as it is, and folded into a table.
#[test]
fn an_index_of_the_first_form_is_read_and_folded() {
    let fs = SimFs::new();
    let index = Path::new("/s/index");
    let objects = many_objects(&fs, 5000);
    drop(sim_store(&fs));
    // The same entries as a log of the first form.
    let table = fs.read_file(index).unwrap();
    let mut first_form = vst_cas::pack::INDEX_MAGIC_V1.to_vec();
    first_form.extend_from_slice(&table[table_header_len(&table)..]);
    fs.write_file(index, &first_form).unwrap();
    let reader =
        PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadOnly).unwrap();
    assert!(!reader.recovery().index_rebuilt);
    all_there(&reader, &objects);
    drop(reader);
    let store = sim_store(&fs);
    assert!(!store.recovery().index_rebuilt);
    let folded = fs.read_file(index).unwrap();
    assert_eq!(&folded[..8], vst_cas::pack::INDEX_MAGIC.as_slice());
    assert_eq!(table_len(&folded), 5000);
    all_there(&store, &objects);
}

/// A table whose bytes do not match its checksum is not trusted: the
/// index is rebuilt from the packs.
#[test]
fn a_damaged_table_is_rebuilt_from_the_packs() {
    let fs = SimFs::new();
    let objects = many_objects(&fs, 5000);
    drop(sim_store(&fs));
    let index = Path::new("/s/index");
    let len = fs.read_file(index).unwrap().len();
    fs.tamper(index, |b| b[len / 2] ^= 0x40);
    let store = sim_store(&fs);
    assert!(store.recovery().index_rebuilt);
    all_there(&store, &objects);
}

/// A crash at any step of folding the log into the table loses nothing.
#[test]
fn a_crash_while_the_table_is_written_loses_nothing() {
    let setup = || {
        let fs = SimFs::new();
        let objects = many_objects(&fs, 5000);
        (fs, objects)
    };
    let ops = {
        let (fs, _) = setup();
        let start = fs.ops();
        drop(sim_store(&fs));
        fs.ops() - start
    };
    for at in 0..ops {
        for unsynced in [Unsynced::Drop, Unsynced::Keep, Unsynced::TearHalf, Unsynced::Mixed] {
            let (fs, objects) = setup();
            fs.set_fault(fs.ops() + at, Fault::Crash);
            // The open may fail, or (if the crash hit the optional fold)
            // go on without it: either way, the disk is what counts.
            let _ = PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadWrite);
            let image = fs.crash_image(unsynced);
            all_there(&sim_store(&image), &objects);
        }
    }
}

/// A writer that never reopens (a mount) folds the log into the table
/// itself, after syncing what it put; a short log is left alone.
#[test]
fn a_long_lived_writer_folds_the_index_log() {
    let fs = SimFs::new();
    let index = Path::new("/s/index");
    let store = sim_store(&fs);
    assert!(!store.fold_index().unwrap(), "nothing to fold");
    let objects: Vec<Vec<u8>> = (0..5000).map(|i| format!("object {i}").into_bytes()).collect();
    for o in &objects[..4990] {
        store.put(ObjectId::of(o), o).unwrap();
    }
    store.sync().unwrap();
    // Ten more put but not synced: the fold syncs them first.
    for o in &objects[4990..] {
        store.put(ObjectId::of(o), o).unwrap();
    }
    assert!(store.fold_index().unwrap());
    let folded = fs.read_file(index).unwrap();
    assert_eq!(table_len(&folded), 5000);
    assert_eq!(folded.len(), table_header_len(&folded) + 5000 * 64);
    all_there(&store, &objects);
    let more = b"after the fold".to_vec();
    store.put(ObjectId::of(&more), &more).unwrap();
    store.sync().unwrap();
    assert_eq!(fs.read_file(index).unwrap().len(), folded.len() + 64, "logged after the table");
    drop(store);
    // Everything survives a power cut right after.
    let store = sim_store(&fs.crash_image(Unsynced::Drop));
    assert!(!store.recovery().index_rebuilt);
    all_there(&store, &objects);
    all_there(&store, &[more]);
}

/// Folding the log at a writer's open is optional: if the table cannot
/// be written (a full disk at any step before it replaces the index), the
/// open goes on with the log, and no temporary file is left.
#[test]
fn a_fold_that_fails_leaves_the_log_in_use() {
    let ops = {
        let fs = SimFs::new();
        many_objects(&fs, 5000);
        let start = fs.ops();
        drop(sim_store(&fs));
        fs.ops() - start
    };
    let mut went_on = 0;
    for at in 0..ops {
        let fs = SimFs::new();
        let objects = many_objects(&fs, 5000);
        fs.set_fault(fs.ops() + at, Fault::Error(std::io::ErrorKind::StorageFull));
        let Ok(store) =
            PackStore::open_with(Arc::new(fs.clone()), Path::new("/s"), Access::ReadWrite)
        else {
            continue;
        };
        went_on += 1;
        all_there(&store, &objects);
        assert!(fs.len(Path::new("/s/index.tmp")).unwrap().is_none(), "fault at {at}");
        drop(store);
        all_there(&sim_store(&fs.crash_image(Unsynced::Drop)), &objects);
    }
    assert!(went_on >= 2, "a failed write and a failed sync of the table are survived");
}

/// Bytes of every pack file of the store at `/s` in `fs`.
fn packs_len(fs: &SimFs) -> u64 {
    let dir = Path::new("/s/packs");
    fs.list(dir).unwrap().iter().map(|(name, _)| fs.len(&dir.join(name)).unwrap().unwrap()).sum()
}

/// A GC killed while it copies (a SIGINT, three times over) leaves
/// partial copies of the packs; the next open deletes them, so the store
/// does not grow with each interruption, and keeps everything.
#[test]
fn copies_left_by_interrupted_gcs_are_removed_at_open() {
    let mut fs = SimFs::new();
    let objects: Vec<Vec<u8>> = (0..200).map(|i| blob(i, 1000)).collect();
    {
        let store = small_packs(&fs);
        for o in &objects {
            store.put(ObjectId::of(o), o).unwrap();
        }
        store.sync().unwrap();
    }
    let before = packs_len(&fs);
    let live: std::collections::HashSet<ObjectId> =
        objects[..150].iter().map(|o| ObjectId::of(o)).collect();
    // How many I/O operations a whole GC takes, on a copy.
    let gc_ops = {
        let probe = fs.crash_image(Unsynced::Keep);
        let store = small_packs(&probe);
        let start = probe.ops();
        store.gc(&live, vst_cas::GcMode::Collect).unwrap();
        probe.ops() - start
    };
    let pack_count = |fs: &SimFs| fs.list(Path::new("/s/packs")).unwrap().len();
    for round in 0..3 {
        let store = small_packs(&fs);
        let old_packs = pack_count(&fs);
        // Halfway: copying (a GC ends with the new index and the deletions).
        fs.set_fault(fs.ops() + gc_ops / 2, Fault::Crash);
        assert!(store.gc(&live, vst_cas::GcMode::Collect).is_err());
        drop(store);
        fs = fs.kill_image();
        assert!(pack_count(&fs) > old_packs + 2, "round {round}: the GC left copies");
        let store = small_packs(&fs);
        let recovery = store.recovery().clone();
        assert!(!recovery.stale_packs_removed.is_empty(), "round {round}: {recovery:?}");
        assert!(recovery.stale_bytes_removed > 0);
        all_there(&store, &objects);
        drop(store);
        let len = packs_len(&fs);
        assert!(len <= before + PACK_MAGIC.len() as u64, "round {round}: {len} > {before}");
    }
    let store = small_packs(&fs);
    assert!(store.recovery().stale_packs_removed.is_empty(), "nothing left for a second open");
    store.gc(&live, vst_cas::GcMode::Collect).unwrap();
    all_there(&store, &objects[..150]);
    assert!(store.verify_all().is_empty());
}

fn open_as(
    fs: &SimFs,
    holder: vst_cas::Holder,
    lock_wait: std::time::Duration,
) -> Result<PackStore, StoreError> {
    let options = vst_cas::PackOptions { holder, lock_wait, ..Default::default() };
    PackStore::open_with_options(Arc::new(fs.clone()), Path::new("/s"), Access::ReadWrite, options)
}

/// A writer waits for the lock while a brief holder (a commit, a GC) has
/// it, for as long as it was told to; a long-lived holder (a writable
/// mount's daemon) is never waited for. A long-lived holder that is gone
/// leaves its mark in the lock file, which the next holder clears.
#[test]
fn a_writer_waits_for_a_brief_holder_and_not_for_a_long_lived_one() {
    use std::time::Duration;
    use vst_cas::Holder;
    let hour = Duration::from_secs(3600);
    let fs = SimFs::new();
    drop(open_as(&fs, Holder::LongLived, Duration::ZERO).unwrap());
    let brief = open_as(&fs, Holder::Brief, Duration::ZERO).unwrap();
    match open_as(&fs, Holder::Brief, Duration::ZERO) {
        Err(StoreError::Locked { holder: Holder::Brief, .. }) => {}
        other => panic!("no wait asked: refused at once, got {other:?}"),
    }
    let refused = fs.locks_refused();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| open_as(&fs, Holder::Brief, hour));
        // Released only once the waiter has found the lock held twice.
        while fs.locks_refused() < refused + 2 && !waiter.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(brief);
        let store = waiter.join().unwrap().expect("the waiter gets the lock once it is released");
        store.put(ObjectId::of(b"w"), b"w").unwrap();
        store.sync().unwrap();
    });
    let long = open_as(&fs, Holder::LongLived, Duration::ZERO).unwrap();
    let refused = fs.locks_refused();
    // (Told to wait a second: waiting, it would try again within it.)
    match open_as(&fs, Holder::Brief, Duration::from_secs(1)) {
        Err(e @ StoreError::Locked { holder: Holder::LongLived, .. }) => {
            assert!(e.to_string().contains("for as long as it runs"), "{e}");
        }
        other => panic!("a long-lived holder is not waited for, got {other:?}"),
    }
    assert_eq!(fs.locks_refused(), refused + 1, "one try, no wait");
    drop(long);
    let store = open_as(&fs, Holder::Brief, Duration::ZERO).unwrap();
    assert_eq!(&store.get(&ObjectId::of(b"w")).unwrap()[..], b"w");
}

/// `put_reader` writes exactly the records `put` writes for the same
/// bytes: two stores, one filled by each, hold the same files byte for
/// byte (large objects with repeated chunks, one of exactly one chunk, one
/// under the chunking threshold, one already stored).
#[test]
fn put_reader_writes_the_records_put_writes() {
    let noise = noise(5, 12 << 20);
    let mut repeats = noise[..8 << 20].to_vec();
    repeats.extend_from_slice(&noise[2 << 20..6 << 20]);
    let zeros = vec![0u8; CHUNKING_LEN_MIN];
    let objects: Vec<&[u8]> =
        vec![&repeats, &noise[100..CHUNKING_LEN_MIN], &zeros, &noise[5 << 20..], &repeats];
    let (by_put, by_reader) = (SimFs::new(), SimFs::new());
    {
        let (a, b) = (sim_store(&by_put), sim_store(&by_reader));
        for o in &objects {
            a.put(ObjectId::of(o), o).unwrap();
            let (id, len) = b.put_reader(&mut &o[..]).unwrap();
            assert_eq!((id, len), (ObjectId::of(o), o.len() as u64));
        }
        a.sync().unwrap();
        b.sync().unwrap();
    }
    let files = |fs: &SimFs| -> Vec<(PathBuf, Vec<u8>)> {
        let packs = Path::new("/s/packs");
        let mut paths: Vec<PathBuf> =
            fs.list(packs).unwrap().into_iter().map(|(n, _)| packs.join(n)).collect();
        paths.push(PathBuf::from("/s/index"));
        paths.into_iter().map(|p| (p.clone(), fs.read_file(&p).unwrap())).collect()
    };
    let (a, b) = (files(&by_put), files(&by_reader));
    assert_eq!(a.len(), b.len());
    for ((path, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{} differs", path.display());
    }
}

/// Bytes that look random, made as they are read: a large object without a
/// buffer of its size in the test. Records, at each read, how far what it
/// has handed out is ahead of what the store has appended to its packs.
struct Source<'a> {
    left: u64,
    yielded: u64,
    x: u64,
    on_disk: &'a dyn Fn() -> u64,
    ahead_max: u64,
}

impl std::io::Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.ahead_max = self.ahead_max.max(self.yielded.saturating_sub((self.on_disk)()));
        let n = buf.len().min(64 << 10).min(self.left as usize);
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        self.yielded += n as u64;
        Ok(n)
    }
}

/// Storing from a reader holds a bounded amount of the object, whatever
/// its size: while 96 MiB are read, what the store has read but not yet
/// appended to a pack stays under 16 MiB (the stream's buffer, the chunks
/// held until the object is known to be chunked, the 4 MiB write buffer).
#[test]
fn put_reader_holds_a_bounded_amount_of_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackStore::open(dir.path(), Access::ReadWrite).unwrap();
    let packs = dir.path().join("packs");
    let on_disk = || -> u64 {
        std::fs::read_dir(&packs).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    };
    let len = 96u64 << 20;
    let mut source =
        Source { left: len, yielded: 0, x: 0x9e37_79b9, on_disk: &on_disk, ahead_max: 0 };
    let (id, got) = store.put_reader(&mut source).unwrap();
    assert_eq!(got, len);
    assert!(source.ahead_max < 16 << 20, "{} bytes held", source.ahead_max);
    assert!(source.ahead_max > 0);
    // Read back through a store that records the most any one call hands
    // out: a few chunks at a time, never the object.
    let counting = Largest { inner: store, largest: Default::default() };
    let mut reader = vst_cas::stream::ObjectReader::new(&counting, &id).unwrap();
    let mut hasher = blake3::Hasher::new();
    assert_eq!(std::io::copy(&mut reader, &mut hasher).unwrap(), len);
    assert_eq!(ObjectId::from_bytes(*hasher.finalize().as_bytes()), id);
    let largest = counting.largest.load(std::sync::atomic::Ordering::SeqCst);
    let bound = vst_cas::stream::READ_AHEAD_LEN_MAX + vst_cas::pack::CHUNK_LEN_MAX as u64;
    assert!(largest <= bound, "{largest} bytes in one read");
}

/// A store that records the most bytes one read handed out.
#[derive(Debug)]
struct Largest {
    inner: PackStore,
    largest: std::sync::atomic::AtomicU64,
}

impl Largest {
    fn saw(&self, len: usize) {
        self.largest.fetch_max(len as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Store for Largest {
    fn put(&self, id: ObjectId, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put(id, bytes)
    }
    fn get(&self, id: &ObjectId) -> Result<bytes::Bytes, StoreError> {
        let got = self.inner.get(id)?;
        self.saw(got.len());
        Ok(got)
    }
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<bytes::Bytes>, StoreError> {
        let got = self.inner.get_many(ids)?;
        self.saw(got.iter().map(|b| b.len()).sum());
        Ok(got)
    }
    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<bytes::Bytes, StoreError> {
        let got = self.inner.read_range(id, offset, len)?;
        self.saw(got.len());
        Ok(got)
    }
    fn contains(&self, id: &ObjectId) -> Result<bool, StoreError> {
        self.inner.contains(id)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
    fn chunks(&self, id: &ObjectId) -> Result<Option<Vec<(ObjectId, u64)>>, StoreError> {
        self.inner.chunks(id)
    }
}

/// A simulated filesystem whose appends to packs can be held at a gate:
/// the appending thread says it arrived and waits until opened.
#[derive(Debug, Clone)]
struct Gated {
    fs: SimFs,
    gate: Arc<(std::sync::Mutex<GateState>, std::sync::Condvar)>,
}

#[derive(Debug, Default)]
struct GateState {
    armed: bool,
    arrived: bool,
}

impl Gated {
    fn new(fs: &SimFs) -> Self {
        Self { fs: fs.clone(), gate: Arc::default() }
    }
    fn arm(&self) {
        self.gate.0.lock().unwrap().armed = true;
    }
    fn wait_for_arrival(&self) {
        let (state, cond) = &*self.gate;
        let mut s = state.lock().unwrap();
        while !s.arrived {
            s = cond.wait(s).unwrap();
        }
    }
    fn open(&self) {
        let (state, cond) = &*self.gate;
        state.lock().unwrap().armed = false;
        cond.notify_all();
    }
}

impl Vfs for Gated {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.fs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<(String, bool)>> {
        self.fs.list(dir)
    }
    fn len(&self, path: &Path) -> std::io::Result<Option<u64>> {
        self.fs.len(path)
    }
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.fs.read_at(path, offset, buf)
    }
    fn append(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        if path.extension().is_some_and(|e| e == "pack") {
            let (state, cond) = &*self.gate;
            let mut s = state.lock().unwrap();
            if s.armed {
                s.arrived = true;
                cond.notify_all();
                while s.armed {
                    s = cond.wait(s).unwrap();
                }
            }
        }
        self.fs.append(path, bytes)
    }
    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.fs.write_at(path, offset, bytes)
    }
    fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
        self.fs.truncate(path, len)
    }
    fn sync(&self, path: &Path) -> std::io::Result<()> {
        self.fs.sync(path)
    }
    fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.fs.write_file(path, bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.fs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.fs.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.fs.remove(path)
    }
    fn lock(&self, path: &Path, wait: bool) -> std::io::Result<vst_cas::vfs::VfsLock> {
        self.fs.lock(path, wait)
    }
}

/// Objects that fill the write buffer in one batch: their put hands the
/// buffer off and writes it to the pack without the writer lock.
fn buffer_full_of_objects(seed: u64) -> Vec<Vec<u8>> {
    let n = vst_cas::pack::WRITE_BUFFER_LEN_MAX / CHUNKING_LEN_MIN + 1;
    (0..n as u64).map(|i| noise(seed + i, CHUNKING_LEN_MIN - 1)).collect()
}

fn put_all(store: &PackStore, objects: &[Vec<u8>]) -> Result<(), StoreError> {
    let batch: Vec<(ObjectId, &[u8])> =
        objects.iter().map(|o| (ObjectId::of(o), o.as_slice())).collect();
    store.put_batch(&batch)
}

#[test]
fn a_full_buffer_is_written_while_other_threads_put_and_read_it() {
    let fs = SimFs::new();
    let gated = Gated::new(&fs);
    let store = Arc::new(
        PackStore::open_with(Arc::new(gated.clone()), Path::new("/s"), Access::ReadWrite).unwrap(),
    );
    let first = buffer_full_of_objects(100);
    gated.arm();
    let writer = {
        let (store, first) = (store.clone(), first.clone());
        std::thread::spawn(move || put_all(&store, &first))
    };
    gated.wait_for_arrival();
    // The first batch's buffer is being written (held at the gate): its
    // objects are read from the buffer in flight, and other puts go on.
    // On another thread, so that one stuck behind the write fails the test
    // instead of hanging it.
    let second = blob(7, 1000);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let (store, first, second) = (store.clone(), first.clone(), second.clone());
        std::thread::spawn(move || {
            let read_back = first.iter().all(|o| store.get(&ObjectId::of(o)).unwrap()[..] == o[..]);
            let put = store.put(ObjectId::of(&second), &second);
            let _ = done_tx.send((read_back, put));
        });
    }
    let done = done_rx.recv_timeout(std::time::Duration::from_secs(120));
    assert!(
        matches!(done, Ok((true, Ok(())))),
        "reads and puts waited for another thread's write, or failed: {done:?}"
    );
    assert_eq!(&store.get(&ObjectId::of(&second)).unwrap()[..], &second[..]);
    gated.open();
    writer.join().unwrap().unwrap();
    store.sync().unwrap();
    drop(store);
    let store = sim_store(&fs);
    assert!(store.verify_all().is_empty());
    all_there(&store, &first);
    all_there(&store, &[second]);
}

#[test]
fn a_failed_write_of_a_full_buffer_poisons_the_store() {
    let fs = SimFs::new();
    let store = sim_store(&fs);
    let committed = blob(4, 100);
    store.put(ObjectId::of(&committed), &committed).unwrap();
    store.sync().unwrap();
    // The next mutating operation is the append of the handed-off buffer.
    fs.set_fault(fs.ops(), Fault::Error(std::io::ErrorKind::StorageFull));
    let objects = buffer_full_of_objects(200);
    assert!(put_all(&store, &objects).is_err(), "the put that handed the buffer off fails");
    assert!(matches!(store.sync(), Err(StoreError::Poisoned)));
    drop(store);
    let store = sim_store(&fs);
    assert!(store.verify_all().is_empty(), "reopened clean");
    assert_eq!(&store.get(&ObjectId::of(&committed)).unwrap()[..], &committed[..]);
}
