//! The applier: committed raft entries into the MVCC store, the lessor and
//! the alarms, with each entry's result handed to the client waiting for it.
//!
//! One file per request family: [`kv`] (put, delete, txn, compaction),
//! [`lease`] (grant, revoke, checkpoint), [`alarm`], `member` (published
//! attributes); `install` swaps in a db snapshot from the leader; [`meta`] keeps the
//! consistent index and the snapshot mark in the db's meta bucket.
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
//! - A request's own failure is its client's error (`Ok(Err(..))`); an
//!   `Err` from these functions is a storage failure that stops the member.

mod alarm;
mod auth;
mod install;
mod kv;
mod lease;
mod mark;
mod member;
mod versions;

use std::sync::Arc;

use prost::Message;
use raft::eraftpb::Entry;
use strata_engine::backend::Bucket;
use strata_engine::mvcc::{self as m, TxnWrite};
use strata_engine::wal::SnapshotMark;
use strata_proto::etcdserverpb as pb;

use crate::errors::EtcdError;
use crate::raftnode::StateMachine;
use crate::statemachine::meta;
use crate::statemachine::state::{Applied, ApplyResult, Shared};

pub use crate::statemachine::meta::{install_consistent_index_hook, IndexCells};

/// A request's result, or the storage failure that stops the member.
type Outcome = strata_engine::Result<ApplyResult>;

/// The one request an entry carries.
enum Request {
    Put(pb::PutRequest),
    DeleteRange(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
    Compaction(pb::CompactionRequest),
    LeaseGrant(pb::LeaseGrantRequest),
    LeaseRevoke(pb::LeaseRevokeRequest),
    LeaseCheckpoint(pb::LeaseCheckpointRequest),
    Alarm(pb::AlarmRequest),
    MemberAttr(pb::MemberAttrRequest),
    MemberUpdate(pb::MemberUpdateRequest),
    Auth(crate::statemachine::auth::Change),
    StateHash,
    DowngradeInfoSet(pb::DowngradeInfoSetRequest),
    /// A new leader's empty entry, or a request of no kind we know: only
    /// its index is recorded.
    Nothing,
}

impl From<pb::InternalRaftRequest> for Request {
    fn from(r: pb::InternalRaftRequest) -> Request {
        let pb::InternalRaftRequest {
            put,
            delete_range,
            txn,
            compaction,
            lease_grant,
            lease_revoke,
            lease_checkpoint,
            alarm,
            member_attr,
            member_update,
            auth_enable,
            auth_disable,
            authenticate,
            auth_user_add,
            auth_user_delete,
            auth_user_change_password,
            auth_user_grant_role,
            auth_user_revoke_role,
            auth_role_add,
            auth_role_delete,
            auth_role_grant_permission,
            auth_role_revoke_permission,
            state_hash,
            downgrade_info_set,
            ..
        } = r;
        use crate::statemachine::auth::Change as C;
        let auth = auth_enable
            .map(|_| C::Enable)
            .or(auth_disable.map(|_| C::Disable))
            .or(authenticate.map(|a| C::Authenticate(a.name, a.simple_token)))
            .or(auth_user_add.map(C::UserAdd))
            .or(auth_user_delete.map(C::UserDelete))
            .or(auth_user_change_password.map(C::UserChangePassword))
            .or(auth_user_grant_role.map(C::UserGrantRole))
            .or(auth_user_revoke_role.map(C::UserRevokeRole))
            .or(auth_role_add.map(C::RoleAdd))
            .or(auth_role_delete.map(C::RoleDelete))
            .or(auth_role_grant_permission.map(C::RoleGrantPermission))
            .or(auth_role_revoke_permission.map(C::RoleRevokePermission));
        put.map(Request::Put)
            .or(delete_range.map(Request::DeleteRange))
            .or(txn.map(Request::Txn))
            .or(compaction.map(Request::Compaction))
            .or(lease_grant.map(Request::LeaseGrant))
            .or(lease_revoke.map(Request::LeaseRevoke))
            .or(lease_checkpoint.map(Request::LeaseCheckpoint))
            .or(alarm.map(Request::Alarm))
            .or(member_attr.map(Request::MemberAttr))
            .or(member_update.map(Request::MemberUpdate))
            .or(auth.map(Request::Auth))
            .or(state_hash.map(|_| Request::StateHash))
            .or(downgrade_info_set.map(Request::DowngradeInfoSet))
            .unwrap_or(Request::Nothing)
    }
}

/// Where in the log the entry being applied sits.
#[derive(Clone, Copy)]
struct At {
    index: u64,
    term: u64,
    request_id: u64,
}

pub struct Applier {
    shared: Arc<Shared>,
    membership: Arc<crate::statemachine::membership::Membership>,
    /// The last index whose effects the db holds.
    ci: u64,
    /// What the pre-commit hook writes: the index and term of the last
    /// entry applied (see [`install_consistent_index_hook`]).
    cells: Arc<IndexCells>,
    /// Results of this batch, handed out at its end.
    results: Vec<(u64, ApplyResult)>,
    /// Who asked for the entry being applied: None for the member's own
    /// requests (no permission checks), else the client (its name empty
    /// if it sent no credentials).
    caller: Option<crate::statemachine::auth::AuthInfo>,
    /// `--max-learners`.
    max_learners: usize,
    /// `--warning-apply-duration`.
    warning_apply: std::time::Duration,
    /// The verdict on the conf change being applied (checked before raft
    /// takes it, recorded after).
    pending_change: Option<Result<crate::statemachine::membership::change::Change, EtcdError>>,
}

/// An engine error as the entry's outcome: the request's own failure is
/// its client's error; a storage failure stops the member
/// ([`strata_engine::Error::kind`] sorts them).
fn request_err(e: strata_engine::Error) -> Outcome {
    match e.kind() {
        strata_engine::ErrorKind::Storage => Err(e),
        strata_engine::ErrorKind::Request => Ok(Err(e.into())),
    }
}

impl Applier {
    pub fn new(
        shared: Arc<Shared>,
        membership: Arc<crate::statemachine::membership::Membership>,
        ci: u64,
        cells: Arc<IndexCells>,
    ) -> Applier {
        Applier {
            shared,
            membership,
            ci,
            cells,
            results: Vec::new(),
            caller: None,
            max_learners: 1,
            warning_apply: std::time::Duration::from_millis(100),
            pending_change: None,
        }
    }

    /// Sets `--warning-apply-duration`.
    pub fn with_warning_apply_duration(mut self, d: std::time::Duration) -> Applier {
        self.warning_apply = d;
        self
    }

    /// etcd's apply metrics and slow-apply warning for one entry
    /// (v3.6.14 server/etcdserver/apply/uber_applier.go dispatch,
    /// txn/util.go): its time by op and success (a compacted revision
    /// counts as success, as etcd counts it), and past
    /// `--warning-apply-duration` a warning and etcd_server_slow_apply_total.
    fn observe_apply(
        &self,
        op: &str,
        result: &crate::statemachine::state::ApplyResult,
        took: std::time::Duration,
    ) {
        let success = matches!(result, Ok(_) | Err(EtcdError::Compacted));
        let m = crate::metrics::global();
        m.observe_apply(op, success, took);
        if took > self.warning_apply {
            m.slow_apply();
            tracing::warn!(
                took = ?took,
                expected_duration = ?self.warning_apply,
                request = op,
                error = result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                "apply request took too long"
            );
        }
    }

    /// Sets `--max-learners`.
    pub fn with_max_learners(mut self, n: usize) -> Applier {
        self.max_learners = n;
        self
    }

    /// Runs a permission check for the entry's caller; the member's own
    /// requests pass.
    fn permitted(
        &self,
        check: impl FnOnce(
            &crate::statemachine::auth::AuthStore,
            Option<&crate::statemachine::auth::AuthInfo>,
        ) -> Result<(), EtcdError>,
    ) -> Result<(), EtcdError> {
        // Auth off: nothing to check, and nothing (a lease's keys) to
        // gather for a check.
        if !self.shared.auth.enabled() {
            return Ok(());
        }
        match &self.caller {
            None => Ok(()),
            Some(who) => check(&self.shared.auth, Some(who)),
        }
    }

    fn store(&self) -> &m::Store {
        self.shared.store.store()
    }

    /// Opens the write transaction an entry applies in, and sets the
    /// consistent index to it (no commit can run while the transaction
    /// holds the batch).
    fn begin(&self, at: At) -> strata_engine::Result<TxnWrite<'_>> {
        use std::sync::atomic::Ordering::Release;
        let tx = self.store().write()?;
        self.cells.term.store(at.term, Release);
        self.cells.index.store(at.index, Release);
        Ok(tx)
    }

    /// Keeps the lessor's key sets in step with the transaction's changes.
    fn track_leases(&self, tx: &TxnWrite<'_>) {
        for kv in tx.changes() {
            let lease = if kv.mod_revision == 0 { 0 } else { kv.lease };
            self.shared.lessor.set_key(&kv.key, lease);
        }
    }

    fn apply_request(&mut self, r: Request, at: At) -> Outcome {
        match r {
            Request::Put(p) => self.put(p, at),
            Request::DeleteRange(d) => self.delete_range(d, at),
            Request::Txn(t) => self.txn(t, at),
            Request::Compaction(c) => self.compaction(c, at),
            Request::LeaseGrant(g) => self.lease_grant(g, at),
            Request::LeaseRevoke(r) => self.lease_revoke(r, at),
            Request::LeaseCheckpoint(c) => self.lease_checkpoint(c, at),
            Request::Alarm(a) => self.alarm(a, at).map(Ok),
            Request::MemberAttr(m) => self.member_attr(m, at),
            Request::MemberUpdate(u) => self.member_update(u, at),
            Request::Auth(c) => self.auth(c, at),
            Request::StateHash => self.state_hash_mark(at),
            Request::DowngradeInfoSet(d) => self.downgrade_info_set(d, at),
            Request::Nothing => {
                self.begin(at)?.end();
                Ok(Ok(Applied::Checkpoint))
            }
        }
    }
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
        let header = req.header.clone().unwrap_or_default();
        let at = At {
            index: e.index,
            term: e.term,
            request_id: header.id,
        };
        // Entries without a header (a new leader's empty entry) are the
        // member's own.
        self.caller = if req.header.is_some() && !header.internal {
            Some(crate::statemachine::auth::AuthInfo {
                username: header.username,
                revision: header.auth_revision,
            })
        } else {
            None
        };
        let op = crate::statemachine::state::request_type(&req);
        let started = std::time::Instant::now();
        let result = self.apply_request(req.into(), at)?;
        if let Some(op) = op {
            self.observe_apply(op, &result, started.elapsed());
        }
        self.ci = e.index;
        if at.request_id != 0 {
            self.results.push((at.request_id, result));
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
            b.put(Bucket::Meta, meta::SNAPSHOT_KEY, &mark.encode())?;
        }
        self.store().backend().force_commit()
    }

    fn check_conf_change(&mut self, e: &Entry, cc: &raft::eraftpb::ConfChange) -> bool {
        self.check_member_change(e, cc)
    }

    fn conf_change_applied(
        &mut self,
        e: &Entry,
        cc: &raft::eraftpb::ConfChange,
        _accepted: bool,
        conf: &raft::eraftpb::ConfState,
    ) -> strata_engine::Result<()> {
        self.member_change_applied(e, cc, conf)
    }

    fn install_snapshot(&mut self, data: &[u8], mark: &SnapshotMark) -> strata_engine::Result<()> {
        self.install(data, mark)
    }

    fn has_snapshot(&self, data: &[u8]) -> bool {
        self.snapshot_file(data).is_some_and(|p| p.is_file())
    }

    fn role_changed(&mut self, leader: u64, term: u64, is_leader: bool) {
        tracing::info!(
            leader = format!("{leader:x}"),
            term,
            is_leader,
            "raft leader changed"
        );
        if leader != 0 {
            crate::metrics::global().leader_changes.inc();
        }
        if is_leader {
            self.shared.lessor.promote();
        } else {
            self.shared.lessor.demote();
        }
    }
}
