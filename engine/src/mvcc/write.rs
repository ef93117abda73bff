//! The write primitive: one write transaction holds the store's state lock
//! and the backend batch, records each change at the next main revision's
//! sub revisions, and on [`TxnWrite::end`] moves the store's revision,
//! tells the watchers and publishes to readers.
//!
//! Invariants: all changes of one transaction share one main revision; a
//! transaction that changed nothing takes no revision; readers see its
//! changes only after `end`, while the index is still locked, and before
//! the batch may commit.

use std::sync::RwLockWriteGuard;

use prost::Message;

use super::index::End;
use super::kv::KeyValue;
use super::revision::Revision;
use super::store::{corrupt_record, decode_kv, range_at, State, Store, Values};
use super::types::*;
use crate::backend::{BatchTx, Bucket};
use crate::error::{Error, Result};

/// A write transaction: holds the store's state lock and the backend batch
/// until [`TxnWrite::end`].
pub struct TxnWrite<'a> {
    observer: Option<std::sync::Arc<dyn super::store::Observer>>,
    st: RwLockWriteGuard<'a, State>,
    batch: Option<BatchTx<'a>>,
    begin: i64,
    changes: Vec<KeyValue>,
}

impl<'a> TxnWrite<'a> {
    fn batch(&self) -> &BatchTx<'a> {
        self.batch.as_ref().expect("the batch is held until end")
    }

    fn batch_mut(&mut self) -> &mut BatchTx<'a> {
        self.batch.as_mut().expect("the batch is held until end")
    }

    /// The revision reads in this transaction see: its own changes included.
    fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    /// The changes so far: one KeyValue per sub revision (a deletion holds
    /// only the key).
    pub fn changes(&self) -> &[KeyValue] {
        &self.changes
    }

    /// The changes as watch events. A previous KeyValue is the key's value
    /// before this transaction (or before its earlier change in it).
    fn events(&self, with_prev: bool) -> Vec<Event> {
        let rev = self.begin + 1;
        let mut last: std::collections::HashMap<&[u8], KeyValue> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(self.changes.len());
        for kv in &self.changes {
            let prev_kv = if with_prev {
                match last.get(kv.key.as_slice()) {
                    Some(p) => Some(p.clone()),
                    None => self.st.index.get(&kv.key, self.begin).and_then(|f| {
                        let rev_key = f.modified.to_key(false);
                        let bytes = self.batch().revision_value(&rev_key).ok().flatten()?;
                        decode_kv(self.batch().path(), &rev_key, &bytes).ok()
                    }),
                }
            } else {
                None
            };
            let deleted = kv.mod_revision == 0;
            let mut ev_kv = kv.clone();
            if deleted {
                ev_kv.mod_revision = rev;
            }
            if with_prev {
                if deleted {
                    last.remove(kv.key.as_slice());
                } else {
                    last.insert(kv.key.as_slice(), kv.clone());
                }
            }
            out.push(Event {
                kind: if deleted {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                kv: ev_kv,
                prev_kv: prev_kv.filter(|p| p.mod_revision != 0),
            });
        }
        out
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let mut r = range_at(&self.st, self.batch() as &dyn Values, req, self.read_rev())?;
        r.revision = self.read_rev();
        Ok(r)
    }

    /// The key's current KeyValue, if it exists.
    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let Some(f) = self.st.index.get(key, self.read_rev()) else {
            return Ok(None);
        };
        Ok(Some(self.stored(f.modified)?))
    }

    /// The KeyValue stored at a revision the index names.
    fn stored(&self, rev: Revision) -> Result<KeyValue> {
        let rev_key = rev.to_key(false);
        let batch = self.batch();
        let bytes = batch.revision_value(&rev_key)?.ok_or_else(|| {
            corrupt_record(
                batch.path(),
                Bucket::Key,
                &rev_key,
                "in the index but not stored",
            )
        })?;
        decode_kv(batch.path(), &rev_key, &bytes)
    }

    fn put_raw(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<()> {
        let rev = self.begin + 1;
        let (created, version) = match self.st.index.get(key, rev) {
            Some(f) => (f.created.main, f.version),
            None => (rev, 0),
        };
        let idx = Revision::new(rev, self.changes.len() as i64);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: created,
            mod_revision: rev,
            version: version + 1,
            value,
            lease,
        };
        self.batch_mut()
            .put(Bucket::Key, &idx.to_key(false), &kv.encode_to_vec())?;
        self.st.index.put(key, idx);
        self.changes.push(kv);
        Ok(())
    }

    fn delete_raw(&mut self, key: &[u8]) -> Result<()> {
        let idx = Revision::new(self.begin + 1, self.changes.len() as i64);
        let kv = KeyValue {
            key: key.to_vec(),
            ..KeyValue::default()
        };
        self.batch_mut()
            .put(Bucket::Key, &idx.to_key(true), &kv.encode_to_vec())?;
        self.st.index.tombstone(key, idx);
        self.changes.push(kv);
        Ok(())
    }

    /// etcd's Put (validated by the caller).
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = if req.prev_kv || req.ignore_value || req.ignore_lease {
            self.current(&req.key)?
        } else {
            None
        };
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        self.put_raw(&req.key, value, lease)?;
        Ok(PutResponse {
            prev_kv: if req.prev_kv { prev } else { None },
            revision: self.begin + 1,
        })
    }

    /// etcd's DeleteRange.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let end = End::from_range_end(&req.range_end);
        let (keys, _) = self.st.index.range(&req.key, &end, self.read_rev(), 0);
        let mut prev_kvs = Vec::new();
        for (k, f) in &keys {
            if req.prev_kv {
                prev_kvs.push(self.stored(f.modified)?);
            }
            self.delete_raw(k)?;
        }
        let revision = if keys.is_empty() {
            self.read_rev()
        } else {
            self.begin + 1
        };
        Ok(DeleteRangeResponse {
            deleted: keys.len() as i64,
            prev_kvs,
            revision,
        })
    }

    /// Writes to a bucket other than `key` (meta, lease, alarm…) in the same
    /// batch commit as this transaction's changes: after a crash both are
    /// there or neither is.
    pub fn put_bucket(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<()> {
        if bucket == Bucket::Key {
            return Err(Error::Internal(
                "put_bucket may not write the key bucket".into(),
            ));
        }
        self.batch_mut().put(bucket, key, value)
    }

    /// Deletes from a bucket other than `key`; see [`TxnWrite::put_bucket`].
    pub fn delete_bucket(&mut self, bucket: Bucket, key: &[u8]) -> Result<()> {
        if bucket == Bucket::Key {
            return Err(Error::Internal(
                "delete_bucket may not write the key bucket".into(),
            ));
        }
        self.batch_mut().delete(bucket, key)
    }

    /// Ends the transaction: the store moves to the next revision if anything
    /// changed. Returns the store's revision.
    pub fn end(mut self) -> i64 {
        let rev = if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        };
        self.st.current = rev;
        if !self.changes.is_empty() {
            if let Some(o) = self.observer.clone() {
                let events = self.events(o.needs_prev_kv());
                o.on_write(rev, &events);
            }
        }
        // Publish to readers while the index is still locked, release the
        // state, then unlock the batch (which may commit and fsync).
        if let Some(b) = self.batch.as_mut() {
            b.publish();
        }
        let batch = self.batch.take();
        drop(self.st);
        drop(batch);
        rev
    }
}

impl Store {
    /// Starts a write transaction (waits for the current one).
    pub fn write(&self) -> Result<TxnWrite<'_>> {
        let st = self.write_state();
        let batch = self.backend.batch()?;
        let begin = st.current;
        Ok(TxnWrite {
            observer: self.observer(),
            st,
            batch: Some(batch),
            begin,
            changes: Vec::new(),
        })
    }
}
