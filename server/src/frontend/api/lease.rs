//! The Lease service. Grant and Revoke go through raft; KeepAlive and
//! TimeToLive are answered by the leader's lessor (a follower forwards
//! them over the peer channel); Leases lists what this member applied.

use std::pin::Pin;
use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::propose;
use crate::server::EtcdServer;

pub struct LeaseService {
    pub srv: Arc<EtcdServer>,
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let who = self.srv.require_user(&req).await?;
        let g = req.into_inner();
        self.srv.check_quota(0).await?;
        let g = self.srv.lease_grant_request(g.id, g.ttl)?;
        propose(&self.srv, who.as_ref(), g).await
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let who = self.srv.require_user(&req).await?;
        propose(&self.srv, who.as_ref(), req.into_inner()).await
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let srv = self.srv.clone();
        tokio::spawn(async move {
            while let Some(Ok(k)) = input.next().await {
                // The leader's lessor renews (forwarded from a follower);
                // an unknown lease answers TTL 0, as etcd's does.
                let ttl = match srv.lease_renew(k.id).await {
                    Ok(ttl) => ttl,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let resp = pb::LeaseKeepAliveResponse {
                    header: Some(srv.header()),
                    id: k.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let who = self.srv.require_user(&req).await?;
        let r = req.into_inner();
        let info = self.srv.lease_time_to_live(r.id, r.keys).await?;
        // Listing a lease's keys needs read permission on each (etcd 3.5).
        if let Some(i) = info.as_ref().filter(|_| r.keys) {
            for k in &i.keys {
                self.srv.shared.auth.check_read(who.as_ref(), k, &[])?;
            }
        }
        let resp = match info {
            Some(i) => pb::LeaseTimeToLiveResponse {
                header: Some(self.srv.header()),
                id: r.id,
                ttl: i.ttl,
                granted_ttl: i.granted_ttl,
                keys: i.keys,
            },
            // etcd: a missing lease answers TTL -1.
            None => pb::LeaseTimeToLiveResponse {
                header: Some(self.srv.header()),
                id: r.id,
                ttl: -1,
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.srv.read_barrier().await?;
        let leases = self
            .srv
            .shared
            .lessor
            .list()
            .into_iter()
            .map(|id| pb::LeaseStatus { id })
            .collect();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.srv.header()),
            leases,
        }))
    }
}
