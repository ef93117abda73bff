//! The member-wide state that the applier writes and the services read:
//! the store, the lessor, the alarms, the clients waiting for their
//! proposals, and what applying a request produced.
//!
//! Invariants:
//! - Only the applier (the raft thread) changes the store, the lessor's
//!   leases and the alarms; services read them, and a result reaches its
//!   client through [`Waiters`] once the entry is applied on this member.
//! - A waiter is triggered at most once: [`Waiters::trigger`] removes it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use strata_engine::mvcc::WatchableStore;
use strata_proto::etcdserverpb as pb;
use tokio::sync::oneshot;

use crate::errors::EtcdError;
use crate::raftnode::NodeStatus;
use crate::statemachine::lease::Lessor;

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
    /// An auth change: its header, the entry's index (a simple token's
    /// suffix) and the auth revision after it.
    Auth {
        header: pb::ResponseHeader,
        index: u64,
        revision: u64,
    },
    /// A membership change or update: the member added (for an add) and
    /// every member after it.
    Members {
        header: pb::ResponseHeader,
        member: Option<pb::Member>,
        members: Vec<pb::Member>,
    },
    /// A state-hash mark, applied at this index.
    StateHash {
        index: u64,
    },
    /// Applied, with nothing to answer (a checkpoint, an empty entry).
    Checkpoint,
    /// A physical compaction, applied: its answer once `done` says the
    /// job finished (the client waits for it without the request timeout,
    /// as etcd waits: at scale the deletion takes longer than that).
    Compacting {
        answer: pb::CompactionResponse,
        done: tokio::sync::oneshot::Receiver<Result<(), EtcdError>>,
    },
}

/// Each response type an RPC waits for comes out of its own [`Applied`]
/// variant; any other variant is handed back.
macro_rules! applied_responses {
    ($($variant:ident => $resp:ty),* $(,)?) => {$(
        impl TryFrom<Applied> for $resp {
            type Error = Applied;
            fn try_from(a: Applied) -> Result<Self, Applied> {
                match a {
                    Applied::$variant(r) => Ok(r),
                    other => Err(other),
                }
            }
        }
    )*};
}

applied_responses! {
    Put => pb::PutResponse,
    DeleteRange => pb::DeleteRangeResponse,
    Txn => pb::TxnResponse,
    Compaction => pb::CompactionResponse,
    LeaseGrant => pb::LeaseGrantResponse,
    LeaseRevoke => pb::LeaseRevokeResponse,
    Alarm => pb::AlarmResponse,
}

/// A request that can be proposed: each kind travels through raft in its
/// own field of `InternalRaftRequest`.
pub trait RaftRequest {
    fn into_raft(self) -> pb::InternalRaftRequest;
}

impl RaftRequest for pb::InternalRaftRequest {
    fn into_raft(self) -> pb::InternalRaftRequest {
        self
    }
}

macro_rules! raft_requests {
    ($($req:ty => $field:ident),* $(,)?) => {$(
        impl RaftRequest for $req {
            fn into_raft(self) -> pb::InternalRaftRequest {
                pb::InternalRaftRequest {
                    $field: Some(self),
                    ..Default::default()
                }
            }
        }
    )*};
}

raft_requests! {
    pb::PutRequest => put,
    pb::DeleteRangeRequest => delete_range,
    pb::TxnRequest => txn,
    pb::CompactionRequest => compaction,
    pb::LeaseGrantRequest => lease_grant,
    pb::LeaseRevokeRequest => lease_revoke,
    pb::LeaseCheckpointRequest => lease_checkpoint,
    pb::AlarmRequest => alarm,
    pb::MemberAttrRequest => member_attr,
    pb::MemberUpdateRequest => member_update,
    pb::AuthEnableRequest => auth_enable,
    pb::AuthDisableRequest => auth_disable,
    pb::InternalAuthenticateRequest => authenticate,
    pb::AuthUserAddRequest => auth_user_add,
    pb::AuthUserDeleteRequest => auth_user_delete,
    pb::AuthUserChangePasswordRequest => auth_user_change_password,
    pb::AuthUserGrantRoleRequest => auth_user_grant_role,
    pb::AuthUserRevokeRoleRequest => auth_user_revoke_role,
    pb::AuthRoleAddRequest => auth_role_add,
    pb::AuthRoleDeleteRequest => auth_role_delete,
    pb::AuthRoleGrantPermissionRequest => auth_role_grant_permission,
    pb::AuthRoleRevokePermissionRequest => auth_role_revoke_permission,
    pb::StateHashRequest => state_hash,
    pb::DowngradeInfoSetRequest => downgrade_info_set,
}

/// etcd's name of a raft request's type (v3_server.go getRequestType), the
/// `type` label of `etcd_server_request_duration_seconds`; None for
/// strata's own entries, which etcd does not have.
pub fn request_type(r: &pb::InternalRaftRequest) -> Option<&'static str> {
    Some(if r.range.is_some() {
        "Range"
    } else if r.put.is_some() {
        "Put"
    } else if r.delete_range.is_some() {
        "DeleteRange"
    } else if r.txn.is_some() {
        "Txn"
    } else if r.compaction.is_some() {
        "Compaction"
    } else if r.lease_grant.is_some() {
        "LeaseGrant"
    } else if r.lease_revoke.is_some() {
        "LeaseRevoke"
    } else if r.lease_checkpoint.is_some() {
        "LeaseCheckpoint"
    } else if r.alarm.is_some() {
        "Alarm"
    } else if r.authenticate.is_some() {
        "Authenticate"
    } else if r.auth_enable.is_some() {
        "AuthEnable"
    } else if r.auth_disable.is_some() {
        "AuthDisable"
    } else if r.auth_user_add.is_some() {
        "AuthUserAdd"
    } else if r.auth_user_delete.is_some() {
        "AuthUserDelete"
    } else if r.auth_user_change_password.is_some() {
        "AuthUserChangePassword"
    } else if r.auth_user_grant_role.is_some() {
        "AuthUserGrantRole"
    } else if r.auth_user_revoke_role.is_some() {
        "AuthUserRevokeRole"
    } else if r.auth_role_add.is_some() {
        "AuthRoleAdd"
    } else if r.auth_role_grant_permission.is_some() {
        "AuthRoleGrantPermission"
    } else if r.auth_role_revoke_permission.is_some() {
        "AuthRoleRevokePermission"
    } else if r.auth_role_delete.is_some() {
        "AuthRoleDelete"
    } else if r.member_attr.is_some() {
        "ClusterMemberAttrSet"
    } else if r.downgrade_info_set.is_some() {
        "DowngradeInfoSet"
    } else {
        return None;
    })
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

    /// Proposals waiting to be applied.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
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
    pub auth: crate::statemachine::auth::AuthStore,
    /// Whole-state hashes of the last state-hash marks applied.
    pub marks: crate::statemachine::statehash::Marks,
    /// The downgrade job, and so the cluster version.
    pub versions: crate::statemachine::versions::Versions,
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

    /// Rebuilds the lessor (leases, their keys), the alarms and the auth
    /// store from the db,
    /// forgetting what they held; `leased_keys` are the live keys with a
    /// lease, as the store's own restore found them.
    pub fn restore_leases_and_alarms(
        &self,
        leased_keys: Vec<(Vec<u8>, i64)>,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        use prost::Message;
        use strata_engine::backend::Bucket;
        self.lessor.clear();
        let view = self.store.store().backend().read();
        crate::statemachine::versions::check_known(&view)?;
        self.versions.load(&view)?;
        for (_, v) in view.range(Bucket::Lease, &[], &[], 0)? {
            let l = pb::LeasePb::decode(v.as_slice()).context("lease bucket entry")?;
            // Restored as granted (minimum TTL rules applied at grant time).
            let _ = self.lessor.grant(l.id, l.ttl, l.remaining_ttl);
        }
        let mut alarms = BTreeSet::new();
        for (k, _) in view.range(Bucket::Alarm, &[], &[], 0)? {
            let a = pb::AlarmMember::decode(k.as_slice()).context("alarm bucket entry")?;
            alarms.insert((a.member_id, a.alarm));
        }
        *self.alarms() = alarms;
        for (key, lease) in leased_keys {
            self.lessor.set_key(&key, lease);
        }
        self.auth.load(&view)?;
        Ok(())
    }

    /// Moves the db's storage version to the cluster version's (etcd's
    /// monitor does this on every member), when they differ.
    pub fn settle_storage_version(&self) -> anyhow::Result<()> {
        use crate::statemachine::versions::{self, STORAGE_VERSION_KEY};
        let backend = self.store.store().backend();
        let to = self.versions.cluster();
        let now = versions::storage_version(&backend.read())?;
        let at = now.unwrap_or(versions::OLDEST_KNOWN);
        if at == to {
            return Ok(());
        }
        {
            let mut b = backend.batch()?;
            match versions::storage_change(to) {
                Some(v) => b.put(
                    strata_engine::backend::Bucket::Meta,
                    STORAGE_VERSION_KEY,
                    &v,
                )?,
                None => b.delete(strata_engine::backend::Bucket::Meta, STORAGE_VERSION_KEY)?,
            }
        }
        backend.force_commit()?;
        tracing::info!(from = %at, to = %to, "updated storage version");
        Ok(())
    }

    /// This member's whole-state hash now (every write transaction so far).
    pub fn state_hash(&self) -> Result<strata_engine::mvcc::StateHash, String> {
        let (capture, ()) = self.store.store().capture_state(|| ());
        crate::statemachine::statehash::hash(&capture)
    }

    /// This member's hash of the state-hash mark at `index`, waiting up to
    /// `limit` for it to be applied and hashed.
    pub async fn mark_hash(
        &self,
        index: u64,
        limit: std::time::Duration,
    ) -> crate::statemachine::statehash::Marked {
        let applied = || {
            self.status
                .applied
                .load(std::sync::atomic::Ordering::Acquire)
        };
        self.marks.wait(index, applied, limit).await
    }

    /// A member's data differs from the leader's (etcd's CORRUPT alarm):
    /// writes are refused everywhere until it is disarmed.
    pub fn corrupt(&self) -> bool {
        self.alarms()
            .iter()
            .any(|&(_, a)| a == pb::AlarmType::Corrupt as i32)
    }

    pub fn nospace(&self) -> bool {
        self.alarms()
            .iter()
            .any(|&(_, a)| a == pb::AlarmType::Nospace as i32)
    }
}
