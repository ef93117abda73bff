//! etcd's Put, DeleteRange and Txn over the write primitive
//! ([`TxnWrite`]): a Txn compares, then runs one branch of ops as one main
//! revision; a Txn without writes is answered from a read snapshot.
//!
//! Validation happens before anything is written, as in etcd: empty keys,
//! `ignore_value`/`ignore_lease` misuse, a key written twice in one branch
//! (or written inside a range the branch deletes), ranges at compacted or
//! future revisions, and `ignore_*` on a missing key all fail the whole
//! request with no revision taken.

use std::collections::BTreeSet;

use super::index::End;
use super::kv::KeyValue;
use super::store::{range_at, State, Store};
use super::types::*;
use super::write::TxnWrite;
use crate::error::{Error, Result};

impl TxnWrite<'_> {
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
