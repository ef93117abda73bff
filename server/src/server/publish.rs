//! A member publishing its attributes (name, client URLs) through raft
//! when it starts, as etcd's members do; the lines etcd's tools wait for
//! (`published`, `enabled capabilities for version`) follow once it is
//! applied.

use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_proto::etcdserverpb as pb;

use crate::server::EtcdServer;

impl EtcdServer {
    /// Publishes this member's name and client URLs through raft (retried
    /// until it is applied or the member stops), as etcd's members do when
    /// they start; then logs what etcd logs.
    pub async fn publish(&self) {
        let req = pb::MemberAttrRequest {
            member_id: self.member_id(),
            name: self.cfg.name.clone(),
            client_urls: self.client_urls(),
        };
        loop {
            match self.propose(req.clone()).await {
                Ok(_) => {
                    tracing::info!(
                        member = format!("{:x}", self.member_id()),
                        name = %self.cfg.name,
                        client_urls = ?req.client_urls,
                        "published local member to cluster through raft"
                    );
                    tracing::info!(cluster_version = "3.5", "enabled capabilities for version");
                    return;
                }
                Err(e) => {
                    if self.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    tracing::warn!(error = %e, "publishing the local member failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
