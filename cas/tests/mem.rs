//! The conformance suite and the damage checks against the memory store.

use vst_cas::{MemStore, ObjectId, Store, StoreError, conformance};

#[test]
fn mem_store_conforms() {
    conformance::run_all(&mut MemStore::new);
}

#[test]
fn damaged_object_is_an_error_not_wrong_bytes() {
    let store = MemStore::new();
    let id = ObjectId::of(b"good");
    store.insert_unchecked(id, &b"evil"[..]);
    match store.get(&id) {
        Err(StoreError::Corrupt { id: got, actual }) => {
            assert_eq!(got, id);
            assert_eq!(actual, ObjectId::of(b"evil"));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(store.read_range(&id, 0, 1).is_err());
}
