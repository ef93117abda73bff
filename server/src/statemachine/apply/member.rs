//! Applying membership: conf changes (add, add as learner, promote,
//! remove: checked, then recorded with raft's configuration in the
//! entry's own transaction), peer URL updates, and a member's published
//! attributes (name, client URLs). A member the cluster does not have is
//! ignored by the last two (it may have been removed after it proposed).
//!
//! The configuration raft holds after each change is kept in the meta
//! bucket (`strata_conf_state`, a snapshot mark's encoding: index, term,
//! configuration), so a restart whose db is ahead of the WAL's last
//! marker starts raft with the right voters and learners.

use prost::Message;
use raft::eraftpb::{ConfChange, ConfState, Entry};
use strata_engine::backend::Bucket;
use strata_engine::wal::SnapshotMark;
use strata_proto::etcdserverpb as pb;

use super::{Applier, At, Outcome};
use crate::errors::EtcdError;
use crate::raftnode::storage::conf_to_wal;
use crate::statemachine::membership::{self, change};
use crate::statemachine::meta;
use crate::statemachine::state::Applied;

impl Applier {
    pub(super) fn member_attr(&mut self, m: pb::MemberAttrRequest, at: At) -> Outcome {
        let mut tx = self.begin(at)?;
        if let Some(member) = self
            .membership
            .set_client_urls(m.member_id, &m.name, m.client_urls)
        {
            tx.put_bucket(
                Bucket::Members,
                &membership::key(member.id),
                &member.to_pb().encode_to_vec(),
            )?;
        }
        tx.end();
        Ok(Ok(Applied::Checkpoint))
    }

    /// MemberUpdate: a member's new peer URLs (not taken by another).
    pub(super) fn member_update(&mut self, u: pb::MemberUpdateRequest, at: At) -> Outcome {
        let ms = self.membership.clone();
        if ms.get(u.id).is_none() || ms.is_removed(u.id) {
            return Ok(Err(EtcdError::MemberNotFound));
        }
        let taken = ms
            .list()
            .iter()
            .any(|o| o.id != u.id && o.peer_urls.iter().any(|x| u.peer_ur_ls.contains(x)));
        if taken {
            return Ok(Err(EtcdError::PeerUrlExists));
        }
        let mut tx = self.begin(at)?;
        if let Some(member) = ms.set_peer_urls(u.id, u.peer_ur_ls) {
            tx.put_bucket(
                Bucket::Members,
                &membership::key(member.id),
                &member.to_pb().encode_to_vec(),
            )?;
            tracing::info!(
                member = format!("{:x}", member.id),
                peer_urls = ?member.peer_urls,
                "updated a member's peer URLs"
            );
        }
        let rev = tx.end();
        Ok(Ok(self.members_applied(rev, None)))
    }

    fn members_applied(&self, rev: i64, member: Option<pb::Member>) -> Applied {
        Applied::Members {
            header: self.shared.header(rev),
            member,
            members: self.membership.list().iter().map(|m| m.to_pb()).collect(),
        }
    }

    pub(super) fn check_member_change(&mut self, e: &Entry, cc: &ConfChange) -> bool {
        let verdict = change::decode(cc, &self.membership)
            .map_err(|reason| {
                tracing::error!(index = e.index, %reason, "undecodable membership change refused");
                EtcdError::Internal(format!("membership change: {reason}"))
            })
            .and_then(|(c, limit)| {
                let limit = limit.unwrap_or(self.max_learners);
                change::validate(&c, &self.membership, limit).map(|()| c)
            });
        let ok = verdict.is_ok();
        self.pending_change = Some(verdict);
        ok
    }

    pub(super) fn member_change_applied(
        &mut self,
        e: &Entry,
        cc: &ConfChange,
        conf: &ConfState,
    ) -> strata_engine::Result<()> {
        if e.index <= self.ci {
            return Ok(());
        }
        let at = At {
            index: e.index,
            term: e.term,
            request_id: cc.id,
        };
        let verdict = self
            .pending_change
            .take()
            .unwrap_or_else(|| Err(EtcdError::Internal("membership change not checked".into())));
        let ms = self.membership.clone();
        let mut tx = self.begin(at)?;
        let mut added = None;
        if let Ok(c) = &verdict {
            let now = change::apply(c, &ms);
            match (c, &now) {
                (change::Change::Remove(id), _) => {
                    tx.delete_bucket(Bucket::Members, &membership::key(*id))?;
                    tx.put_bucket(Bucket::MembersRemoved, &membership::key(*id), &[])?;
                    tracing::info!(
                        member = format!("{id:x}"),
                        "removed a member from the cluster"
                    );
                }
                (_, Some(m)) => {
                    tx.put_bucket(
                        Bucket::Members,
                        &membership::key(m.id),
                        &m.to_pb().encode_to_vec(),
                    )?;
                    tracing::info!(
                        member = format!("{:x}", m.id),
                        peer_urls = ?m.peer_urls,
                        learner = m.is_learner,
                        "applied a membership change"
                    );
                    added = Some(m.to_pb());
                }
                (_, None) => {}
            }
        }
        let mark = SnapshotMark {
            index: e.index,
            term: e.term,
            conf_state: conf_to_wal(conf),
        };
        tx.put_bucket(Bucket::Meta, meta::CONF_STATE_KEY, &mark.encode())?;
        let rev = tx.end();
        self.ci = e.index;
        let me = self.shared.member_id;
        if let Ok(c) = &verdict {
            use std::sync::atomic::Ordering::Release;
            let status = &self.shared.status;
            match c {
                change::Change::Remove(id) if *id == me => {
                    status.removed.store(true, Release);
                    ms.mark_self_removed();
                }
                change::Change::Promote(id) if *id == me => status.learner.store(false, Release),
                _ => {}
            }
        }
        if cc.id != 0 {
            let result = verdict.map(|_| self.members_applied(rev, added));
            self.results.push((cc.id, result));
        }
        Ok(())
    }
}
