//! The Election service (etcd's v3election): Campaign waits until the
//! caller's `<name>/<lease>` key is the oldest under `<name>/` (see
//! [`super::concurrency`]); the leader Proclaims values and Resigns;
//! Leader and Observe read the oldest key. Errors are etcd's texts
//! ("election: not leader", "election: no leader", `"leader" field must
//! be provided`).

use std::pin::Pin;
use std::sync::Arc;

use strata_engine::mvcc as m;
use strata_proto::v3electionpb as ep;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::concurrency::{self, prefix_end, Watching};
use super::lock::lease_or_new;
use crate::server::EtcdServer;

pub struct ElectionService {
    pub srv: Arc<EtcdServer>,
}

fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<ep::LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ep::election_server::Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<ep::CampaignRequest>,
    ) -> Result<Response<ep::CampaignResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let r = req.into_inner();
        let lease = lease_or_new(&self.srv, who.as_ref(), r.lease).await?;
        let (key, rev, header) = concurrency::acquire(
            &self.srv,
            who.as_ref(),
            &prefix(&r.name),
            lease,
            &r.value,
            true,
        )
        .await?;
        Ok(Response::new(ep::CampaignResponse {
            header: Some(header),
            leader: Some(ep::LeaderKey {
                name: r.name,
                key,
                rev,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ep::ProclaimRequest>,
    ) -> Result<Response<ep::ProclaimResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let r = req.into_inner();
        let l = r.leader.ok_or_else(missing_leader)?;
        let (ok, header) =
            concurrency::proclaim(&self.srv, who.as_ref(), &l.key, l.rev, l.lease, &r.value)
                .await?;
        if !ok {
            return Err(Status::unknown("election: not leader"));
        }
        Ok(Response::new(ep::ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        req: Request<ep::LeaderRequest>,
    ) -> Result<Response<ep::LeaderResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let name = req.into_inner().name;
        let (kv, header) =
            concurrency::by_create(&self.srv, who.as_ref(), &prefix(&name), false, 0).await?;
        let kv = kv.ok_or_else(|| Status::unknown("election: no leader"))?;
        Ok(Response::new(ep::LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    /// The leader now, then every change: a new value of the leader's key,
    /// or, once it is gone, the next leader.
    async fn observe(
        &self,
        req: Request<ep::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let who = self.srv.who_of(&req).await?;
        let pfx = prefix(&req.into_inner().name);
        let srv = self.srv.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let (kv, header) =
                    match concurrency::by_create(&srv, who.as_ref(), &pfx, false, 0).await {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                let Some(kv) = kv else {
                    // No leader yet: wait for a key under the prefix.
                    let mut w = Watching::new(&srv, &pfx, &prefix_end(&pfx), header.revision + 1);
                    tokio::select! {
                        _ = w.rx.recv() => continue,
                        () = tx.closed() => return,
                    }
                };
                let (key, mut last) = (kv.key.clone(), kv.value.clone());
                let from = header.revision + 1;
                if tx
                    .send(Ok(ep::LeaderResponse {
                        header: Some(header),
                        kv: Some(kv),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                let mut w = Watching::new(&srv, &key, &[], from);
                'leader: loop {
                    let r = tokio::select! {
                        r = w.rx.recv() => r,
                        () = tx.closed() => return,
                    };
                    let Some(r) = r else { return };
                    for e in r.events {
                        if e.kind == m::EventKind::Delete {
                            break 'leader;
                        }
                        if e.kv.value != last {
                            last = e.kv.value.clone();
                            let resp = ep::LeaderResponse {
                                header: Some(srv.shared.header(r.revision)),
                                kv: Some(crate::statemachine::convert::kv_out(e.kv)),
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                return;
                            }
                        }
                    }
                    if r.canceled {
                        break 'leader;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<ep::ResignRequest>,
    ) -> Result<Response<ep::ResignResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let l = req.into_inner().leader.ok_or_else(missing_leader)?;
        let header = concurrency::release(&self.srv, who.as_ref(), &l.key, l.rev).await?;
        Ok(Response::new(ep::ResignResponse {
            header: Some(header),
        }))
    }
}
