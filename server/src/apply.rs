//! The applier: committed raft entries into the MVCC store, the lessor and
//! the alarms, with each entry's result handed to the client waiting for it.
//!
//! Invariants:
//! - Every entry's effects and its index (`consistent_index` in the meta
//!   bucket) reach the db in the same commit: the applier sets the index
//!   while its write transaction holds the backend batch, and the backend's
//!   pre-commit hook (which runs under that same lock) writes it. After a
//!   crash the db has both or neither, so a restart re-applies exactly the
//!   entries the db lacks (those above the consistent index), never one
//!   twice.
//! - Requests are validated again here, against the state they apply to
//!   (lease existence, the NOSPACE alarm, compacted revisions): every member
//!   reaches the same answer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use raft::eraftpb::Entry;
use strata_engine::backend::Bucket;
use strata_engine::mvcc::{self as m, txn as mtxn, TxnWrite, WatchableStore};
use strata_engine::wal::{ConfState, SnapshotMark};
use strata_proto::etcdserverpb as pb;
use tokio::sync::oneshot;

use crate::convert;
use crate::errors::EtcdError;
use crate::lease::Lessor;
use crate::raftnode::{NodeStatus, StateMachine};

pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
pub const TERM_KEY: &[u8] = b"term";
/// The last raft snapshot marker whose state this db holds.
pub const SNAPSHOT_KEY: &[u8] = b"strata_raft_snapshot";

/// What applying a request produced.
#[derive(Debug)]
pub enum Applied {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compaction(pb::CompactionResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    Alarm(pb::AlarmResponse),
    Checkpoint,
    /// Answered later, from another thread (a physical compaction).
    Pending,
}

pub type ApplyResult = Result<Applied, EtcdError>;

/// Clients waiting for their proposals to be applied, by request id.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<ApplyResult>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, id: u64) -> oneshot::Receiver<ApplyResult> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn trigger(&self, id: u64, r: ApplyResult) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(r);
        }
    }
}

/// State the applier and the API share.
pub struct Shared {
    pub store: WatchableStore,
    pub lessor: Lessor,
    pub waiters: Waiters,
    /// Active alarms: (member id, alarm type).
    pub alarms: Mutex<BTreeSet<(u64, i32)>>,
    pub cluster_id: u64,
    pub member_id: u64,
    pub status: Arc<NodeStatus>,
}

impl Shared {
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.status.term.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    pub fn alarms(&self) -> MutexGuard<'_, BTreeSet<(u64, i32)>> {
        self.alarms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn nospace(&self) -> bool {
        self.alarms()
            .iter()
            .any(|&(_, a)| a == pb::AlarmType::Nospace as i32)
    }
}

pub struct Applier {
    shared: Arc<Shared>,
    /// The last index whose effects the db holds.
    ci: u64,
    /// What the pre-commit hook writes: the index and term of the last
    /// entry applied (see [`install_consistent_index_hook`]).
    cells: Arc<IndexCells>,
    /// Results of this batch, handed out at its end.
    results: Vec<(u64, ApplyResult)>,
}

/// The consistent index and its term, shared with the pre-commit hook.
#[derive(Default)]
pub struct IndexCells {
    pub index: std::sync::atomic::AtomicU64,
    pub term: std::sync::atomic::AtomicU64,
}

/// Makes every backend commit write the consistent index and term the
/// applier last set (the hook runs under the batch lock, so it never sees an
/// index without its entry's effects, or the reverse).
pub fn install_consistent_index_hook(store: &m::Store, cells: Arc<IndexCells>) {
    use std::sync::atomic::Ordering::Acquire;
    store.backend().set_pre_commit_hook(Box::new(move |b| {
        let index = cells.index.load(Acquire);
        if index == 0 {
            return Ok(());
        }
        b.put(Bucket::Meta, CONSISTENT_INDEX_KEY, &index.to_be_bytes())?;
        b.put(
            Bucket::Meta,
            TERM_KEY,
            &cells.term.load(Acquire).to_be_bytes(),
        )
    }));
}

/// A request's error, or the storage failure that stops the member.
fn request_err(e: strata_engine::Error) -> strata_engine::Result<ApplyResult> {
    match e {
        strata_engine::Error::Io(_)
        | strata_engine::Error::Poisoned
        | strata_engine::Error::Corrupted { .. } => Err(e),
        e => Ok(Err(e.into())),
    }
}

impl Applier {
    pub fn new(shared: Arc<Shared>, ci: u64, cells: Arc<IndexCells>) -> Applier {
        Applier {
            shared,
            ci,
            cells,
            results: Vec::new(),
        }
    }

    fn store(&self) -> &m::Store {
        self.shared.store.store()
    }

    /// Opens the write transaction an entry applies in, and sets the
    /// consistent index to it (no commit can run while the transaction
    /// holds the batch).
    fn begin(&self, index: u64, term: u64) -> strata_engine::Result<TxnWrite<'_>> {
        use std::sync::atomic::Ordering::Release;
        let tx = self.store().write()?;
        self.cells.term.store(term, Release);
        self.cells.index.store(index, Release);
        Ok(tx)
    }

    /// Keeps the lessor's key sets in step with the transaction's changes.
    fn track_leases(&self, tx: &TxnWrite<'_>) {
        for kv in tx.changes() {
            let lease = if kv.mod_revision == 0 { 0 } else { kv.lease };
            self.shared.lessor.set_key(&kv.key, lease);
        }
    }

    fn apply_request(
        &mut self,
        r: pb::InternalRaftRequest,
        index: u64,
        term: u64,
        request_id: u64,
    ) -> strata_engine::Result<ApplyResult> {
        let sh = self.shared.clone();
        if let Some(p) = r.put {
            let p = convert::put_in(&p);
            if let Err(e) = mtxn::validate_put(&p) {
                return Ok(Err(e.into()));
            }
            if sh.nospace() {
                return Ok(Err(EtcdError::NoSpace));
            }
            if p.lease != 0 && !sh.lessor.exists(p.lease) {
                return Ok(Err(EtcdError::LeaseNotFound));
            }
            let mut tx = self.begin(index, term)?;
            let res = tx.put(&p);
            self.track_leases(&tx);
            let rev = tx.end();
            return match res {
                Ok(resp) => Ok(Ok(Applied::Put(convert::put_out(resp, sh.header(rev))))),
                Err(e) => request_err(e),
            };
        }
        if let Some(d) = r.delete_range {
            let d = convert::delete_in(&d);
            if d.key.is_empty() {
                return Ok(Err(EtcdError::EmptyKey));
            }
            let mut tx = self.begin(index, term)?;
            let res = tx.delete_range(&d);
            self.track_leases(&tx);
            let rev = tx.end();
            return match res {
                Ok(resp) => Ok(Ok(Applied::DeleteRange(convert::delete_out(
                    resp,
                    sh.header(rev),
                )))),
                Err(e) => request_err(e),
            };
        }
        if let Some(t) = r.txn {
            let t = match convert::txn_in(&t) {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            if sh.nospace() && has_put(&t) {
                return Ok(Err(EtcdError::NoSpace));
            }
            let mut tx = self.begin(index, term)?;
            let lessor = &sh.lessor;
            let res = tx.txn(&t, &|l| lessor.exists(l));
            self.track_leases(&tx);
            let rev = tx.end();
            return match res {
                Ok(mut resp) => {
                    mtxn::stamp(&mut resp, rev);
                    Ok(Ok(Applied::Txn(convert::txn_out(resp, &sh.header(rev)))))
                }
                Err(e) => request_err(e),
            };
        }
        if let Some(c) = r.compaction {
            // The index is compacted here; old revisions are deleted on
            // another thread while writes go on (etcd's physical option
            // waits for that).
            let res = self.store().begin_compaction(c.revision);
            let tx = self.begin(index, term)?;
            let rev = tx.end();
            let job = match res {
                Ok(job) => job,
                Err(e) => return request_err(e),
            };
            let resp = pb::CompactionResponse {
                header: Some(sh.header(rev)),
            };
            let physical = c.physical;
            let waiter = sh.clone();
            let spawned = std::thread::Builder::new()
                .name("compaction".into())
                .spawn(move || {
                    let at = job.revision();
                    let done = job.finish();
                    if let Err(e) = &done {
                        tracing::error!(revision = at, error = %e, "compaction failed");
                    }
                    if physical {
                        waiter.waiters.trigger(
                            request_id,
                            done.map(|()| Applied::Compaction(resp))
                                .map_err(EtcdError::from),
                        );
                    }
                });
            if let Err(e) = spawned {
                return Err(strata_engine::Error::Io(e));
            }
            return Ok(Ok(if physical {
                Applied::Pending
            } else {
                Applied::Compaction(pb::CompactionResponse {
                    header: Some(sh.header(rev)),
                })
            }));
        }
        if let Some(g) = r.lease_grant {
            if sh.nospace() {
                return Ok(Err(EtcdError::NoSpace));
            }
            let ttl = match sh.lessor.grant(g.id, g.ttl, 0) {
                Ok(ttl) => ttl,
                Err(e) => return Ok(Err(e)),
            };
            let mut tx = self.begin(index, term)?;
            let pbl = pb::LeasePb {
                id: g.id,
                ttl,
                remaining_ttl: 0,
            };
            tx.put_bucket(Bucket::Lease, &lease_key(g.id), &pbl.encode_to_vec())?;
            let rev = tx.end();
            return Ok(Ok(Applied::LeaseGrant(pb::LeaseGrantResponse {
                header: Some(sh.header(rev)),
                id: g.id,
                ttl,
                error: String::new(),
            })));
        }
        if let Some(rv) = r.lease_revoke {
            let keys = match sh.lessor.revoke(rv.id) {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
            let mut tx = self.begin(index, term)?;
            for k in &keys {
                tx.delete_range(&m::DeleteRangeRequest {
                    key: k.clone(),
                    ..Default::default()
                })?;
            }
            tx.delete_bucket(Bucket::Lease, &lease_key(rv.id))?;
            let rev = tx.end();
            return Ok(Ok(Applied::LeaseRevoke(pb::LeaseRevokeResponse {
                header: Some(sh.header(rev)),
            })));
        }
        if let Some(cp) = r.lease_checkpoint {
            let mut tx = self.begin(index, term)?;
            for c in cp.checkpoints {
                if let Some(info) = sh.lessor.info(c.id, false) {
                    sh.lessor.checkpoint(c.id, c.remaining_ttl);
                    let pbl = pb::LeasePb {
                        id: c.id,
                        ttl: info.granted_ttl,
                        remaining_ttl: c.remaining_ttl,
                    };
                    tx.put_bucket(Bucket::Lease, &lease_key(c.id), &pbl.encode_to_vec())?;
                }
            }
            tx.end();
            return Ok(Ok(Applied::Checkpoint));
        }
        if let Some(a) = r.alarm {
            return self.apply_alarm(a, index, term).map(Ok);
        }
        // An empty entry (a new leader's) or a request of no kind we know:
        // only its index is recorded.
        let tx = self.begin(index, term)?;
        tx.end();
        Ok(Ok(Applied::Checkpoint))
    }

    fn apply_alarm(
        &mut self,
        a: pb::AlarmRequest,
        index: u64,
        term: u64,
    ) -> strata_engine::Result<Applied> {
        use pb::alarm_request::AlarmAction;
        let sh = self.shared.clone();
        let mut tx = self.begin(index, term)?;
        let member = if a.member_id == 0 {
            sh.member_id
        } else {
            a.member_id
        };
        let key = pb::AlarmMember {
            member_id: member,
            alarm: a.alarm,
        }
        .encode_to_vec();
        let mut out = Vec::new();
        match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Activate) if a.alarm != pb::AlarmType::None as i32 => {
                if sh.alarms().insert((member, a.alarm)) {
                    tx.put_bucket(Bucket::Alarm, &key, &[])?;
                    tracing::warn!(
                        member = format!("{member:x}"),
                        alarm = a.alarm,
                        "alarm raised"
                    );
                }
                out.push(pb::AlarmMember {
                    member_id: member,
                    alarm: a.alarm,
                });
            }
            Ok(AlarmAction::Deactivate) => {
                let gone: Vec<(u64, i32)> = sh
                    .alarms()
                    .iter()
                    .copied()
                    .filter(|&(mm, t)| {
                        (a.member_id == 0 || mm == a.member_id)
                            && (a.alarm == pb::AlarmType::None as i32 || t == a.alarm)
                    })
                    .collect();
                for (mm, t) in gone {
                    sh.alarms().remove(&(mm, t));
                    let k = pb::AlarmMember {
                        member_id: mm,
                        alarm: t,
                    }
                    .encode_to_vec();
                    tx.delete_bucket(Bucket::Alarm, &k)?;
                    out.push(pb::AlarmMember {
                        member_id: mm,
                        alarm: t,
                    });
                }
            }
            _ => {
                for &(mm, t) in sh.alarms().iter() {
                    if a.alarm == pb::AlarmType::None as i32 || t == a.alarm {
                        out.push(pb::AlarmMember {
                            member_id: mm,
                            alarm: t,
                        });
                    }
                }
            }
        }
        let rev = tx.end();
        Ok(Applied::Alarm(pb::AlarmResponse {
            header: Some(sh.header(rev)),
            alarms: out,
        }))
    }
}

fn has_put(t: &m::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        m::RequestOp::Put(_) => true,
        m::RequestOp::Txn(inner) => has_put(inner),
        _ => false,
    })
}

pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

impl StateMachine for Applier {
    fn apply(&mut self, e: &Entry) -> strata_engine::Result<()> {
        if e.index <= self.ci {
            return Ok(());
        }
        let req = if e.data.is_empty() {
            pb::InternalRaftRequest::default()
        } else {
            match pb::InternalRaftRequest::decode(e.data.as_ref()) {
                Ok(r) => r,
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "undecodable raft entry skipped");
                    pb::InternalRaftRequest::default()
                }
            }
        };
        let id = req.header.map_or(0, |h| h.id);
        let result = self.apply_request(req, e.index, e.term, id)?;
        self.ci = e.index;
        if id != 0 && !matches!(result, Ok(Applied::Pending)) {
            self.results.push((id, result));
        }
        Ok(())
    }

    fn end_batch(&mut self) {
        for (id, r) in self.results.drain(..) {
            self.shared.waiters.trigger(id, r);
        }
    }

    fn dropped(&mut self, request_id: u64) {
        self.shared
            .waiters
            .trigger(request_id, Err(EtcdError::NoLeader));
    }

    fn flush(&mut self) -> strata_engine::Result<()> {
        self.store().backend().force_commit()
    }

    fn snapshot_taken(&mut self, mark: &SnapshotMark) -> strata_engine::Result<()> {
        {
            let mut b = self.store().backend().batch()?;
            b.put(Bucket::Meta, SNAPSHOT_KEY, &encode_mark(mark))?;
        }
        self.store().backend().force_commit()
    }

    fn role_changed(&mut self, leader: u64, term: u64, is_leader: bool) {
        tracing::info!(
            leader = format!("{leader:x}"),
            term,
            is_leader,
            "raft leader changed"
        );
        if is_leader {
            self.shared.lessor.promote();
        } else {
            self.shared.lessor.demote();
        }
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[u64]) {
    out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

/// The snapshot marker as the meta bucket keeps it: index, term (8 bytes
/// BE each), then voters, learners, outgoing voters, next learners (a
/// 4-byte BE count then 8-byte ids each), then auto_leave (one byte).
pub fn encode_mark(m: &SnapshotMark) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&m.index.to_be_bytes());
    out.extend_from_slice(&m.term.to_be_bytes());
    put_ids(&mut out, &m.conf_state.voters);
    put_ids(&mut out, &m.conf_state.learners);
    put_ids(&mut out, &m.conf_state.voters_outgoing);
    put_ids(&mut out, &m.conf_state.learners_next);
    out.push(u8::from(m.conf_state.auto_leave));
    out
}

pub fn decode_mark(b: &[u8]) -> Option<SnapshotMark> {
    let mut pos = 0;
    let u64_at = |pos: &mut usize| -> Option<u64> {
        let v = u64::from_be_bytes(b.get(*pos..*pos + 8)?.try_into().ok()?);
        *pos += 8;
        Some(v)
    };
    let index = u64_at(&mut pos)?;
    let term = u64_at(&mut pos)?;
    let mut lists: Vec<Vec<u64>> = Vec::new();
    for _ in 0..4 {
        let n = u32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        let mut ids = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            ids.push(u64_at(&mut pos)?);
        }
        lists.push(ids);
    }
    let auto_leave = *b.get(pos)? != 0;
    let mut it = lists.into_iter();
    Some(SnapshotMark {
        index,
        term,
        conf_state: ConfState {
            voters: it.next()?,
            learners: it.next()?,
            voters_outgoing: it.next()?,
            learners_next: it.next()?,
            auto_leave,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_marks_round_trip() {
        let m = SnapshotMark {
            index: 12345,
            term: 7,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![9],
                voters_outgoing: vec![],
                learners_next: vec![4],
                auto_leave: true,
            },
        };
        assert_eq!(decode_mark(&encode_mark(&m)), Some(m.clone()));
        let b = encode_mark(&m);
        assert_eq!(decode_mark(&b[..b.len() - 1]), None);
    }
}
