//! The receiving side of the Peer service: batches of raft messages from
//! other members, checked before they reach raft.
//!
//! A batch is refused (and the refusal logged) when its header names
//! another cluster (etcd: "request cluster ID mismatch"), a removed sender
//! ("the member has been permanently removed from the cluster": the
//! sender stops), a sender that is not a member, or another recipient.
//! `Members` answers anyone (a member joining knows no ids yet), as
//! etcd's peer `/members` does; `Promote` is a MemberPromote forwarded to
//! the leader. Messages are decoded by prost (frames are size-limited by
//! the server) and converted; one raft does not know ends the stream.

use std::sync::Arc;

use strata_proto::peerpb as p;
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;
use crate::transport::peer::{convert, snapshot};

pub struct PeerService {
    pub srv: Arc<EtcdServer>,
    /// Held while a db snapshot arrives (one at a time).
    pub receiving: tokio::sync::Mutex<()>,
}

impl PeerService {
    fn check(&self, h: Option<&p::PeerHeader>) -> Result<(), Status> {
        let h = h.ok_or_else(|| Status::invalid_argument("peer batch without a header"))?;
        let me = &self.srv.shared;
        if h.cluster_id != me.cluster_id {
            tracing::warn!(
                local = format!("{:x}", me.cluster_id),
                remote = format!("{:x}", h.cluster_id),
                from = format!("{:x}", h.from),
                "request cluster ID mismatch"
            );
            return Err(Status::failed_precondition("request cluster ID mismatch"));
        }
        if self.srv.membership.is_removed(h.from) {
            tracing::warn!(
                from = format!("{:x}", h.from),
                "rejected raft traffic from a removed member"
            );
            return Err(Status::permission_denied(
                crate::transport::peer::transport::REMOVED,
            ));
        }
        if !self.srv.membership.contains(h.from) {
            tracing::warn!(
                from = format!("{:x}", h.from),
                "raft traffic from a member this cluster does not have"
            );
            return Err(Status::failed_precondition(format!(
                "member {:x} is not in this cluster",
                h.from
            )));
        }
        if h.to != me.member_id {
            return Err(Status::failed_precondition(format!(
                "this member is {:x}, not {:x}",
                me.member_id, h.to
            )));
        }
        Ok(())
    }
}

impl PeerService {
    /// A forwarded lease call is answered by the leader only.
    fn leader_only(&self) -> Result<(), Status> {
        if self.srv.is_leader() {
            Ok(())
        } else {
            Err(Status::unavailable(NOT_LEADER))
        }
    }
}

/// What a member that is not the leader answers a forwarded lease call.
pub const NOT_LEADER: &str = "etcdserver: not leader";

/// How long a member waits to apply and hash a state-hash mark it is asked
/// about.
const MARK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[tonic::async_trait]
impl p::peer_server::Peer for PeerService {
    async fn members(
        &self,
        _req: Request<p::MembersAsk>,
    ) -> Result<Response<p::MembersAnswer>, Status> {
        let ms = &self.srv.membership;
        Ok(Response::new(p::MembersAnswer {
            cluster_id: self.srv.shared.cluster_id,
            members: ms.list().iter().map(crate::server::join::to_info).collect(),
            removed: ms.removed(),
        }))
    }

    async fn ping(&self, req: Request<p::PingAsk>) -> Result<Response<p::PingAnswer>, Status> {
        self.check(req.get_ref().header.as_ref())?;
        Ok(Response::new(p::PingAnswer {}))
    }

    async fn promote(
        &self,
        req: Request<p::PromoteAsk>,
    ) -> Result<Response<p::PromoteAnswer>, Status> {
        let r = req.into_inner();
        self.check(r.header.as_ref())?;
        self.leader_only()?;
        self.srv.promote_here(r.id).await?;
        Ok(Response::new(p::PromoteAnswer {}))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<p::LeaseRenew>,
    ) -> Result<Response<p::LeaseRenewed>, Status> {
        let r = req.into_inner();
        self.check(r.header.as_ref())?;
        self.leader_only()?;
        let ttl = self.srv.lease_renew_here(r.id).await?;
        Ok(Response::new(p::LeaseRenewed { ttl }))
    }

    async fn hash_kv(&self, req: Request<p::HashAsk>) -> Result<Response<p::HashAnswer>, Status> {
        let r = req.into_inner();
        self.check(r.header.as_ref())?;
        let srv = self.srv.clone();
        let res = tokio::task::spawn_blocking(move || srv.store().hash_kv(r.revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match res {
            Ok((hash, _, compact_revision)) => p::HashAnswer {
                hash,
                compact_revision,
                refused: 0,
            },
            Err(strata_engine::Error::Compacted) => p::HashAnswer {
                refused: 1,
                ..Default::default()
            },
            Err(strata_engine::Error::FutureRevision) => p::HashAnswer {
                refused: 2,
                ..Default::default()
            },
            Err(e) => return Err(crate::errors::EtcdError::from(e).into()),
        }))
    }

    async fn state_hash(
        &self,
        req: Request<p::StateHashAsk>,
    ) -> Result<Response<p::StateHashAnswer>, Status> {
        use crate::statemachine::statehash::Marked;
        let r = req.into_inner();
        self.check(r.header.as_ref())?;
        let marked = self.srv.shared.mark_hash(r.index, MARK_WAIT).await;
        let refused = |refused, error: String| p::StateHashAnswer {
            refused,
            error,
            ..Default::default()
        };
        Ok(Response::new(match marked {
            Marked::Done(h) => p::StateHashAnswer {
                hash: h.hash,
                revision: h.revision,
                buckets: h.buckets.iter().map(|(_, b)| *b).collect(),
                refused: 0,
                error: String::new(),
            },
            Marked::NotKept => refused(1, String::new()),
            Marked::Pending | Marked::NotYet => refused(2, String::new()),
            Marked::Failed(e) => refused(3, e),
        }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<p::LeaseAsk>,
    ) -> Result<Response<p::LeaseAnswer>, Status> {
        let r = req.into_inner();
        self.check(r.header.as_ref())?;
        self.leader_only()?;
        Ok(Response::new(
            match self.srv.lease_time_to_live_here(r.id, r.keys).await? {
                Some(i) => p::LeaseAnswer {
                    found: true,
                    ttl: i.ttl,
                    granted_ttl: i.granted_ttl,
                    keys: i.keys,
                },
                None => p::LeaseAnswer::default(),
            },
        ))
    }

    async fn snapshot(
        &self,
        req: Request<Streaming<p::SnapshotChunk>>,
    ) -> Result<Response<p::SnapshotAck>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        self.check(first.header.as_ref())?;
        let Ok(_one_at_a_time) = self.receiving.try_lock() else {
            return Err(Status::unavailable(
                "this member is already receiving a snapshot",
            ));
        };
        let snap_dir = self.srv.cfg.data_dir.join("member").join("snap");
        let (msg, size) = snapshot::receive(&snap_dir, first, stream).await?;
        self.srv.step(msg)?;
        Ok(Response::new(p::SnapshotAck { size }))
    }

    async fn raft(
        &self,
        req: Request<Streaming<p::RaftBatch>>,
    ) -> Result<Response<p::RaftAck>, Status> {
        let mut stream = req.into_inner();
        let mut received: Option<prometheus::IntCounter> = None;
        while let Some(batch) = stream.message().await? {
            self.check(batch.header.as_ref())?;
            let counter = received.get_or_insert_with(|| {
                let from = batch.header.as_ref().map_or(0, |h| h.from);
                crate::metrics::global()
                    .peer_received
                    .with_label_values(&[&crate::metrics::peer_label(from)])
            });
            counter.inc_by(prost::Message::encoded_len(&batch) as u64);
            let mut ms = Vec::with_capacity(batch.messages.len());
            for m in batch.messages {
                let m = convert::from_pb(m).map_err(Status::invalid_argument)?;
                if m.msg_type == raft::eraftpb::MessageType::MsgSnapshot {
                    // Only the snapshot stream brings one, with its db.
                    return Err(Status::invalid_argument(
                        "a raft snapshot outside the snapshot stream",
                    ));
                }
                ms.push(m);
            }
            self.srv.step_all(ms)?;
        }
        Ok(Response::new(p::RaftAck {}))
    }
}
