//! Refs in an object store: one key per branch, changed only by
//! conditional writes, after a probe that the server honours them.

use std::sync::OnceLock;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{Remote, remote_err};
use crate::refs::{RefError, RefName, show};
use crate::{ObjectId, StoreError};

/// Length of a remote ref's value: 64 hex digits and a newline. A read
/// takes no more than this from the server.
const REF_LEN: usize = 64 + 1;

/// What a deleted branch's key holds. A branch is deleted by a conditional
/// write of this tombstone, not by a DELETE: S3 has no portable
/// conditional delete, and a plain one could remove a value a racing push
/// had just written. A tombstone reads as no branch; a push creates the
/// branch again by a write conditional on the tombstone's ETag.
const TOMBSTONE: &[u8] = b"deleted\n";
const _: () = assert!(TOMBSTONE.len() <= REF_LEN);

/// The branches of a [`Remote`] location, `refs/heads/NAME`, or (from
/// [`RemoteRefs::tags`]) its tags, `refs/tags/NAME`: each holding
/// `"<64 hex>\n"`.
///
/// [`RemoteRefs::update`] is a compare-and-swap: a ref is created with
/// `If-None-Match: *` and changed with `If-Match: <ETag of the value
/// compared>`, so of two writers that read the same value, exactly one
/// succeeds and the other gets [`RefError::Conflict`]. Before its first
/// update a handle probes that the server honours both conditions (some
/// S3-compatible servers ignore them and would let both writers win); a
/// server that fails is refused with [`RefError::Unconditional`].
///
/// [`RemoteRefs::delete`] is a compare-and-swap too: it writes a
/// tombstone, conditional on the ETag of the value compared, so a delete
/// and a push that read the same value cannot both succeed.
///
/// The caller makes everything a new value reaches durable in the store
/// first (`Store::sync`), so a ref never names a missing object.
#[derive(Debug)]
pub struct RemoteRefs {
    remote: Remote,
    probed: OnceLock<Result<(), &'static str>>,
    /// The directory under `refs/`: `heads` or `tags`.
    ns: &'static str,
}

impl RemoteRefs {
    pub(super) fn new(remote: Remote) -> Self {
        Self { remote, probed: OnceLock::new(), ns: "heads" }
    }

    /// The tags of the same remote: the same compare-and-swap, under
    /// `refs/tags/`.
    pub fn tags(&self) -> Self {
        Self { remote: self.remote.clone(), probed: OnceLock::new(), ns: "tags" }
    }

    fn key(&self, name: &RefName) -> Key {
        self.remote.key(&format!("refs/{}/{name}", self.ns))
    }

    /// The value of ref `name` (a branch or a tag; `None` for a tombstone) and the version
    /// to compare against; `None` if the key does not exist.
    #[allow(clippy::type_complexity)]
    fn read(&self, name: &RefName) -> Result<Option<(Option<ObjectId>, UpdateVersion)>, RefError> {
        let key = self.key(name);
        let client = &self.remote.inner.client;
        let got = self.remote.block_on(async {
            match client.get(&key).await {
                Ok(result) => {
                    let version = UpdateVersion {
                        e_tag: result.meta.e_tag.clone(),
                        version: result.meta.version.clone(),
                    };
                    Ok(Some((super::body_capped(result, REF_LEN as u64).await?, version)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some((bytes, version)) = got.map_err(remote_err("read", &key))? else {
            return Ok(None);
        };
        let Some(bytes) = bytes else {
            return Err(RefError::Damaged {
                path: key.to_string().into(),
                content: format!("more than the {REF_LEN} bytes a ref holds"),
            });
        };
        if bytes[..] == *TOMBSTONE {
            return Ok(Some((None, version)));
        }
        let id = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.strip_suffix('\n'))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| RefError::Damaged {
                path: key.to_string().into(),
                content: String::from_utf8_lossy(&bytes).chars().take(100).collect(),
            })?;
        Ok(Some((Some(id), version)))
    }

    /// The value of ref `name` (a branch, or a tag), if it exists.
    pub fn get(&self, name: &RefName) -> Result<Option<ObjectId>, RefError> {
        Ok(self.read(name)?.and_then(|(id, _)| id))
    }

    /// Every ref (branch, or tag) and its value, sorted by name.
    pub fn list(&self) -> Result<Vec<(RefName, ObjectId)>, RefError> {
        let dir = self.remote.key(&format!("refs/{}", self.ns));
        let client = &self.remote.inner.client;
        let listed: Vec<object_store::ObjectMeta> = self
            .remote
            .block_on(client.list(Some(&dir)).try_collect())
            .map_err(remote_err("list", &dir))?;
        let mut out = Vec::new();
        for meta in listed {
            let Some(rel) = meta.location.as_ref().strip_prefix(dir.as_ref()) else { continue };
            let Ok(name) = RefName::try_from(rel.trim_start_matches('/')) else { continue };
            // Deleted between the listing and the read: not a branch.
            if let Some(id) = self.get(&name)? {
                out.push((name, id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Checks, once per handle, that the server honours conditional
    /// writes: a create-if-absent of an existing key must fail, a write
    /// conditional on a wrong ETag must fail, and one on the right ETag
    /// must succeed. Uses a fresh key under `probe/` and deletes it.
    pub fn probe(&self) -> Result<(), RefError> {
        let outcome = match self.probed.get() {
            Some(outcome) => *outcome,
            None => {
                let outcome = self.run_probe()?;
                *self.probed.get_or_init(|| outcome)
            }
        };
        outcome.map_err(|failed| RefError::Unconditional {
            server: self.remote.name().to_owned(),
            failed,
        })
    }

    /// The probe's verdict: `Err` names the check that failed; a request
    /// that fails outright is an error of its own.
    fn run_probe(&self) -> Result<Result<(), &'static str>, RefError> {
        let nonce = ObjectId::of(
            format!(
                "{}-{:?}-{:?}",
                std::process::id(),
                std::time::SystemTime::now(),
                std::thread::current().id()
            )
            .as_bytes(),
        );
        let key = self.remote.key(&format!("probe/{nonce}"));
        let client = &self.remote.inner.client;
        let put = |mode: PutMode, body: &'static str| {
            let opts = PutOptions { mode, ..Default::default() };
            self.remote.block_on(client.put_opts(
                &key,
                PutPayload::from_static(body.as_bytes()),
                opts,
            ))
        };
        let verdict = (|| {
            let first = put(PutMode::Create, "1").map_err(remote_err("probe", &key))?;
            match put(PutMode::Create, "2") {
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Ok(_) => {
                    return Ok(Err(
                        "a create-if-absent write (If-None-Match: *) replaced a key that existed",
                    ));
                }
                Err(object_store::Error::NotImplemented { .. }) => {
                    return Ok(Err("create-if-absent writes are not implemented"));
                }
                Err(e) => return Err(remote_err("probe", &key)(e)),
            }
            let wrong = UpdateVersion {
                e_tag: Some("\"00000000000000000000000000000000\"".to_owned()),
                version: None,
            };
            match put(PutMode::Update(wrong), "3") {
                Err(object_store::Error::Precondition { .. }) => {}
                Ok(_) => {
                    return Ok(Err("a write conditional on a wrong ETag (If-Match) succeeded"));
                }
                Err(e) => return Err(remote_err("probe", &key)(e)),
            }
            match put(PutMode::Update(first.into()), "4") {
                Ok(_) => {}
                Err(object_store::Error::Precondition { .. }) => {
                    return Ok(Err("a write conditional on the current ETag (If-Match) failed"));
                }
                Err(e) => return Err(remote_err("probe", &key)(e)),
            }
            let now: Option<Bytes> = self
                .remote
                .block_on(async { super::body_capped(client.get(&key).await?, 1).await })
                .map_err(remote_err("probe", &key))?;
            if now.as_deref() != Some(b"4") {
                return Ok(Err("the key does not hold what the last successful write wrote"));
            }
            Ok::<_, StoreError>(Ok(()))
        })();
        // Best effort: a leftover probe key is harmless.
        let _ = self.remote.block_on(client.delete(&key));
        Ok(verdict?)
    }

    /// Sets ref `name` to `new` if it is now `expected` (`None`: must
    /// not exist). If it already holds `new`, that is success. Otherwise a
    /// value other than `expected`, or another writer winning the
    /// conditional write, is [`RefError::Conflict`] and changes nothing.
    pub fn update(
        &self,
        name: &RefName,
        expected: Option<ObjectId>,
        new: ObjectId,
    ) -> Result<(), RefError> {
        self.probe()?;
        let current = self.read(name)?;
        let actual = current.as_ref().and_then(|(id, _)| *id);
        if actual == Some(new) {
            return Ok(());
        }
        if actual != expected {
            return Err(RefError::Conflict {
                name: name.clone(),
                expected: show(expected),
                actual: show(actual),
            });
        }
        let mode = match current {
            None => PutMode::Create,
            Some((_, version)) => PutMode::Update(version),
        };
        let key = self.key(name);
        let client = &self.remote.inner.client;
        let opts = PutOptions { mode, ..Default::default() };
        let body = PutPayload::from(format!("{new}\n").into_bytes());
        match self.remote.block_on(client.put_opts(&key, body, opts)) {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                // Another writer won; or this write landed and a retry of
                // it was refused, in which case the ref holds `new`.
                let now = self.get(name)?;
                if now == Some(new) {
                    Ok(())
                } else {
                    Err(RefError::Conflict {
                        name: name.clone(),
                        expected: show(expected),
                        actual: show(now),
                    })
                }
            }
            Err(e) => Err(remote_err("update", &key)(e).into()),
        }
    }

    /// Deletes ref `name` if it is now `expected`: a tombstone written
    /// conditionally on the ETag of the value read. A branch that is
    /// already gone when the write is refused (a retry of this write that
    /// landed, or another delete) is success; any other value is
    /// [`RefError::Conflict`] and changes nothing.
    pub fn delete(&self, name: &RefName, expected: ObjectId) -> Result<(), RefError> {
        self.probe()?;
        let current = self.read(name)?;
        let actual = current.as_ref().and_then(|(id, _)| *id);
        let conflict = |actual: Option<ObjectId>| RefError::Conflict {
            name: name.clone(),
            expected: show(Some(expected)),
            actual: show(actual),
        };
        let Some((Some(_), version)) = current.filter(|_| actual == Some(expected)) else {
            return Err(conflict(actual));
        };
        let key = self.key(name);
        let client = &self.remote.inner.client;
        let opts = PutOptions { mode: PutMode::Update(version), ..Default::default() };
        match self.remote.block_on(client.put_opts(&key, PutPayload::from_static(TOMBSTONE), opts))
        {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => match self.get(name)? {
                None => Ok(()),
                now => Err(conflict(now)),
            },
            Err(e) => Err(remote_err("delete", &key)(e).into()),
        }
    }
}
