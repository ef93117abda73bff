//! What a member must ask of the leader outside raft: lease keep-alives
//! and time-to-live questions (deadlines live in the leader's lessor). On
//! the leader they are answered here; on a follower they are forwarded
//! over the peer channel, and a leader change or a missing leader is
//! waited out up to the request timeout, as etcd's lease forwarding does.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_proto::peerpb::{self, peer_client::PeerClient};

use crate::errors::EtcdError;
use crate::server::EtcdServer;
use crate::statemachine::lease::LeaseInfo;

impl EtcdServer {
    /// A keep-alive on this member, the leader: the TTL, or 0 for a lease
    /// that does not exist (etcd's answer). A lease granted just before
    /// must be applied here first, hence the barrier.
    pub async fn lease_renew_here(&self, id: i64) -> Result<i64, EtcdError> {
        self.read_barrier().await?;
        match self.shared.lessor.renew(id) {
            Ok(ttl) => Ok(ttl),
            Err(EtcdError::LeaseNotFound) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// A lease's time to live on this member, the leader (after the
    /// barrier, for the same reason as a keep-alive). Only a primary lessor
    /// knows deadlines: a member that leads but has not promoted its
    /// lessor yet (just elected) would report every lease's whole TTL, so
    /// it answers "not leader" and the caller asks again.
    pub async fn lease_time_to_live_here(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseInfo>, EtcdError> {
        self.read_barrier().await?;
        if !self.shared.lessor.is_primary() {
            return Err(EtcdError::NotLeader);
        }
        Ok(self.shared.lessor.info(id, keys))
    }

    /// A peer header for a call to member `to`.
    pub(crate) fn peer_header(&self, to: u64) -> peerpb::PeerHeader {
        peerpb::PeerHeader {
            cluster_id: self.shared.cluster_id,
            from: self.member_id(),
            to,
        }
    }

    /// Runs `call` on the leader: here if this member leads, else through
    /// the peer channel; a leader change or a missing leader is waited out
    /// (up to the request timeout), as etcd's lease forwarding does.
    pub(crate) async fn on_leader<T, Here, HereFut, There, ThereFut>(
        &self,
        here: Here,
        there: There,
    ) -> Result<T, EtcdError>
    where
        Here: Fn() -> HereFut,
        HereFut: std::future::Future<Output = Result<T, EtcdError>>,
        There: Fn(PeerClient<tonic::transport::Channel>, peerpb::PeerHeader) -> ThereFut,
        ThereFut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            self.check_running()?;
            let leader = self.shared.status.leader.load(Ordering::Acquire);
            if leader == self.member_id() {
                match here().await {
                    // Leading by raft, the lessor not promoted yet (or
                    // just demoted): ask again.
                    Err(EtcdError::NotLeader | EtcdError::NoLeader) => {}
                    other => return other,
                }
            } else if leader != 0 {
                if let Some(client) = self.peers.get(&self.membership, leader) {
                    match there(client, self.peer_header(leader)).await {
                        Ok(v) => return Ok(v),
                        Err(s) => tracing::debug!(
                            leader = format!("{leader:x}"),
                            error = %s.message(),
                            "forwarding to the leader"
                        ),
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(if leader == 0 {
                    EtcdError::NoLeader
                } else {
                    EtcdError::Timeout
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A lease keep-alive, answered by the leader's lessor (forwarded from
    /// a follower): the TTL, 0 for an unknown lease.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        self.on_leader(
            || self.lease_renew_here(id),
            |mut c, header| async move {
                let r = c
                    .lease_keep_alive(peerpb::LeaseRenew {
                        header: Some(header),
                        id,
                    })
                    .await?;
                Ok(r.into_inner().ttl)
            },
        )
        .await
    }

    /// A lease's time to live as the leader's lessor knows it (None: no
    /// such lease).
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseInfo>, EtcdError> {
        self.on_leader(
            || self.lease_time_to_live_here(id, keys),
            |mut c, header| async move {
                let a = c
                    .lease_time_to_live(peerpb::LeaseAsk {
                        header: Some(header),
                        id,
                        keys,
                    })
                    .await?
                    .into_inner();
                Ok(a.found.then_some(LeaseInfo {
                    id,
                    granted_ttl: a.granted_ttl,
                    ttl: a.ttl,
                    keys: a.keys,
                }))
            },
        )
        .await
    }
}
