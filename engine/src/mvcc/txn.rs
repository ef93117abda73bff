//! Write transactions and etcd's Txn: compares, then one branch of ops, as
//! one main revision.
//!
//! Validation happens before anything is written, as in etcd: empty keys,
//! `ignore_value`/`ignore_lease` misuse, a key written twice in one branch
//! (or written inside a range the branch deletes), ranges at compacted or
//! future revisions, and `ignore_*` on a missing key all fail the whole
//! request with no revision taken.

use std::collections::BTreeSet;
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

    /// etcd's Txn inside this write transaction, validated first. Stamp the
    /// response with [`stamp`] and the revision [`TxnWrite::end`] returns.
    /// `lease_exists` is asked about every lease the puts of the chosen
    /// branches attach, before anything is written.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<TxnResponse> {
        validate_txn(req)?;
        let path = decide(&*self, req)?;
        precheck(&*self, req, &path)?;
        check_leases(req, &path, lease_exists)?;
        execute(self, req, &path)
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

/// etcd's checks of a Put request that need no state.
pub fn validate_put(p: &PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

fn validate_ops(ops: &[RequestOp]) -> Result<()> {
    for op in ops {
        match op {
            RequestOp::Range(r) if r.key.is_empty() => return Err(Error::KeyNotProvided),
            RequestOp::Put(p) => validate_put(p)?,
            RequestOp::DeleteRange(d) if d.key.is_empty() => return Err(Error::KeyNotProvided),
            RequestOp::Txn(t) => validate_txn(t)?,
            _ => {}
        }
    }
    Ok(())
}

/// Keys put and ranges deleted by a branch (nested txns: both of their
/// branches, each checked on its own first).
fn writes(
    ops: &[RequestOp],
    puts: &mut BTreeSet<Vec<u8>>,
    dels: &mut Vec<(Vec<u8>, End)>,
) -> Result<()> {
    for op in ops {
        match op {
            RequestOp::Put(p) => {
                if !puts.insert(p.key.clone()) {
                    return Err(Error::DuplicateKey);
                }
            }
            RequestOp::DeleteRange(d) => {
                dels.push((d.key.clone(), End::from_range_end(&d.range_end)))
            }
            RequestOp::Txn(t) => {
                let mut union = BTreeSet::new();
                for branch in [&t.success, &t.failure] {
                    let (mut p, mut d) = (BTreeSet::new(), Vec::new());
                    writes(branch, &mut p, &mut d)?;
                    check_puts_outside_deletes(&p, &d)?;
                    union.extend(p);
                    dels.extend(d);
                }
                for k in union {
                    if !puts.insert(k) {
                        return Err(Error::DuplicateKey);
                    }
                }
            }
            RequestOp::Range(_) => {}
        }
    }
    Ok(())
}

fn in_range(key: &[u8], start: &[u8], end: &End) -> bool {
    match end {
        End::Single => key == start,
        End::Before(e) => key >= start && key < e.as_slice(),
        End::Unbounded => key >= start,
    }
}

fn check_puts_outside_deletes(puts: &BTreeSet<Vec<u8>>, dels: &[(Vec<u8>, End)]) -> Result<()> {
    if puts
        .iter()
        .any(|k| dels.iter().any(|(s, e)| in_range(k, s, e)))
    {
        return Err(Error::DuplicateKey);
    }
    Ok(())
}

/// etcd's checks of a Txn request that need no state.
pub fn validate_txn(t: &TxnRequest) -> Result<()> {
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(Error::KeyNotProvided);
        }
    }
    for branch in [&t.success, &t.failure] {
        validate_ops(branch)?;
        let (mut puts, mut dels) = (BTreeSet::new(), Vec::new());
        writes(branch, &mut puts, &mut dels)?;
        check_puts_outside_deletes(&puts, &dels)?;
    }
    Ok(())
}

/// Whether a branch of ops writes anything.
pub fn is_write(ops: &[RequestOp]) -> bool {
    ops.iter().any(|op| match op {
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
        RequestOp::Txn(t) => is_write(&t.success) || is_write(&t.failure),
        RequestOp::Range(_) => false,
    })
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// Something that can serve ranges at one revision: a read snapshot or a
/// write transaction.
trait Reader {
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse>;
}

impl Reader for TxnWrite<'_> {
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        TxnWrite::range(self, req)
    }
}

struct Snapshot<'a> {
    st: &'a State,
    view: &'a crate::backend::ReadView,
}

impl Reader for Snapshot<'_> {
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        range_at(self.st, self.view, req, self.st.current)
    }
}

fn compare(r: &dyn Reader, c: &Compare) -> Result<bool> {
    let rr = r.range(&RangeRequest {
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        ..RangeRequest::default()
    })?;
    if rr.kvs.is_empty() {
        // A missing key compares as an empty KeyValue, except its value,
        // which compares false (etcd: there is no "missing" value).
        return Ok(
            !matches!(c.target, CompareTarget::Value(_)) && compare_kv(c, &KeyValue::default())
        );
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// The branch each (nested) txn takes, decided before any op runs.
#[derive(Debug)]
struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

fn decide(r: &dyn Reader, t: &TxnRequest) -> Result<Path> {
    let mut succeeded = true;
    for c in &t.compare {
        if !compare(r, c)? {
            succeeded = false;
            break;
        }
    }
    let ops = t.branch(succeeded);
    let mut nested = Vec::new();
    for op in ops {
        if let RequestOp::Txn(inner) = op {
            nested.push(decide(r, inner)?);
        }
    }
    Ok(Path { succeeded, nested })
}

/// Checks the chosen ops against state before any runs: ranges at
/// compacted or future revisions, and `ignore_*` puts on missing keys.
fn precheck(r: &dyn Reader, t: &TxnRequest, path: &Path) -> Result<()> {
    let ops = t.branch(path.succeeded);
    let mut nested = path.nested.iter();
    for op in ops {
        match op {
            RequestOp::Range(req) if req.revision != 0 => {
                r.range(&RangeRequest {
                    key: req.key.clone(),
                    revision: req.revision,
                    count_only: true,
                    ..RangeRequest::default()
                })?;
            }
            RequestOp::Put(p) if p.ignore_value || p.ignore_lease => {
                let rr = r.range(&RangeRequest {
                    key: p.key.clone(),
                    count_only: true,
                    ..RangeRequest::default()
                })?;
                if rr.count == 0 {
                    return Err(Error::KeyNotFound);
                }
            }
            RequestOp::Txn(inner) => {
                if let Some(p) = nested.next() {
                    precheck(r, inner, p)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_leases(t: &TxnRequest, path: &Path, exists: &dyn Fn(i64) -> bool) -> Result<()> {
    let ops = t.branch(path.succeeded);
    let mut nested = path.nested.iter();
    for op in ops {
        match op {
            RequestOp::Put(p) if p.lease != 0 && !exists(p.lease) => {
                return Err(Error::LeaseNotFound)
            }
            RequestOp::Txn(inner) => {
                if let Some(p) = nested.next() {
                    check_leases(inner, p, exists)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl TxnRequest {
    /// The ops of the branch a compare outcome selects.
    pub fn branch(&self, succeeded: bool) -> &[RequestOp] {
        if succeeded {
            &self.success
        } else {
            &self.failure
        }
    }
}

/// A nested txn with no decided path: the path was computed from another
/// request than the one executed.
fn nested_mismatch() -> Error {
    Error::Internal("a nested txn has no decided branch (path and request differ)".into())
}

fn execute(tx: &mut TxnWrite<'_>, t: &TxnRequest, path: &Path) -> Result<TxnResponse> {
    let ops = t.branch(path.succeeded);
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            RequestOp::Range(r) => ResponseOp::Range(tx.range(r)?),
            RequestOp::Put(p) => ResponseOp::Put(tx.put(p)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(tx.delete_range(d)?),
            RequestOp::Txn(inner) => {
                let p = nested.next().ok_or_else(nested_mismatch)?;
                ResponseOp::Txn(execute(tx, inner, p)?)
            }
        });
    }
    Ok(TxnResponse {
        succeeded: path.succeeded,
        responses,
        revision: 0,
    })
}

fn read_only(r: &dyn Reader, t: &TxnRequest, path: &Path, rev: i64) -> Result<TxnResponse> {
    let ops = t.branch(path.succeeded);
    let mut nested = path.nested.iter();
    let mut responses = Vec::new();
    for op in ops {
        responses.push(match op {
            RequestOp::Range(req) => ResponseOp::Range(r.range(req)?),
            RequestOp::Txn(inner) => {
                let p = nested.next().ok_or_else(nested_mismatch)?;
                ResponseOp::Txn(read_only(r, inner, p, rev)?)
            }
            _ => {
                return Err(Error::Internal(
                    "a write op in a txn served as read-only".into(),
                ))
            }
        });
    }
    Ok(TxnResponse {
        succeeded: path.succeeded,
        responses,
        revision: rev,
    })
}

/// Sets the header revision of every (nested) response to the txn's.
/// Sets the revision of a Txn response and of every response inside it.
pub fn stamp(resp: &mut TxnResponse, rev: i64) {
    resp.revision = rev;
    for r in &mut resp.responses {
        match r {
            ResponseOp::Range(x) => x.revision = rev,
            ResponseOp::Put(x) => x.revision = rev,
            ResponseOp::DeleteRange(x) => x.revision = rev,
            ResponseOp::Txn(x) => stamp(x, rev),
        }
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

    pub fn put(&self, req: &PutRequest) -> Result<PutResponse> {
        validate_put(req)?;
        let mut tx = self.write()?;
        let mut resp = tx.put(req)?;
        resp.revision = tx.end();
        Ok(resp)
    }

    pub fn delete_range(&self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(Error::KeyNotProvided);
        }
        let mut tx = self.write()?;
        let mut resp = tx.delete_range(req)?;
        resp.revision = tx.end();
        Ok(resp)
    }

    /// etcd's Txn: one main revision for all its writes.
    pub fn txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        validate_txn(req)?;
        if !is_write(&req.success) && !is_write(&req.failure) {
            let st = self.read_state();
            let view = self.backend.read();
            let snap = Snapshot {
                st: &st,
                view: &view,
            };
            let path = decide(&snap, req)?;
            precheck(&snap, req, &path)?;
            return read_only(&snap, req, &path, st.current);
        }
        let mut tx = self.write()?;
        let path = decide(&tx, req)?;
        precheck(&tx, req, &path)?;
        let mut resp = execute(&mut tx, req, &path)?;
        let rev = tx.end();
        stamp(&mut resp, rev);
        Ok(resp)
    }
}
