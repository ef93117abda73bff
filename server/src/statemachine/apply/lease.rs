//! Applying the lease family: Grant, Revoke and Checkpoint. The lessor and
//! the lease bucket change together, in the entry's own transaction.

use prost::Message;
use strata_engine::backend::Bucket;
use strata_engine::mvcc as m;
use strata_proto::etcdserverpb as pb;

use super::{Applier, At, Outcome};
use crate::errors::EtcdError;
use crate::statemachine::state::Applied;

/// A lease's key in the lease bucket: its id, 8 bytes big-endian.
pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

impl Applier {
    pub(super) fn lease_grant(&mut self, g: pb::LeaseGrantRequest, at: At) -> Outcome {
        if self.shared.corrupt() {
            return Ok(Err(EtcdError::Corrupt));
        }
        let sh = self.shared.clone();
        if sh.nospace() {
            return Ok(Err(EtcdError::NoSpace));
        }
        let ttl = match sh.lessor.grant(g.id, g.ttl, 0) {
            Ok(ttl) => ttl,
            Err(e) => return Ok(Err(e)),
        };
        let mut tx = self.begin(at)?;
        let stored = pb::LeasePb {
            id: g.id,
            ttl,
            remaining_ttl: 0,
        };
        tx.put_bucket(Bucket::Lease, &lease_key(g.id), &stored.encode_to_vec())?;
        let rev = tx.end();
        Ok(Ok(Applied::LeaseGrant(pb::LeaseGrantResponse {
            header: Some(sh.header(rev)),
            id: g.id,
            ttl,
            error: String::new(),
        })))
    }

    /// Deletes every key attached to the lease, in one revision.
    pub(super) fn lease_revoke(&mut self, r: pb::LeaseRevokeRequest, at: At) -> Outcome {
        if self.shared.corrupt() {
            return Ok(Err(EtcdError::Corrupt));
        }
        let sh = self.shared.clone();
        if let Err(e) = self.permitted(|a, who| a.check_lease_keys(who, &sh.lessor.keys(r.id))) {
            return Ok(Err(e));
        }
        let keys = match sh.lessor.revoke(r.id) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let mut tx = self.begin(at)?;
        for k in &keys {
            tx.delete_range(&m::DeleteRangeRequest {
                key: k.clone(),
                ..Default::default()
            })?;
        }
        tx.delete_bucket(Bucket::Lease, &lease_key(r.id))?;
        let rev = tx.end();
        Ok(Ok(Applied::LeaseRevoke(pb::LeaseRevokeResponse {
            header: Some(sh.header(rev)),
        })))
    }

    /// Records remaining TTLs, so a restart or a new leader resumes from
    /// them instead of granting each lease its whole TTL again. A
    /// remainder below one second is kept as one: stored, 0 means "no
    /// checkpoint" (etcd's lease record), which would give an expired
    /// lease its whole TTL back.
    pub(super) fn lease_checkpoint(&mut self, c: pb::LeaseCheckpointRequest, at: At) -> Outcome {
        let sh = self.shared.clone();
        let mut tx = self.begin(at)?;
        for cp in c.checkpoints {
            let kept = sh.lessor.checkpoint(cp.id, cp.remaining_ttl);
            if let (Some(info), Some(remaining)) = (sh.lessor.info(cp.id, false), kept) {
                let stored = pb::LeasePb {
                    id: cp.id,
                    ttl: info.granted_ttl,
                    remaining_ttl: remaining,
                };
                tx.put_bucket(Bucket::Lease, &lease_key(cp.id), &stored.encode_to_vec())?;
            }
        }
        tx.end();
        Ok(Ok(Applied::Checkpoint))
    }
}
