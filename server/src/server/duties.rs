//! The member's periodic duties, and who runs them:
//! - on the leader only (the lessor is primary there and idle elsewhere):
//!   proposing a revoke for each expired lease, and checkpointing every
//!   lease's remaining TTL through raft, so a restart or a new leader
//!   resumes from it;
//! - on every member: dropping simple auth tokens past their TTL;
//! - on every member: timing a round trip to each peer every 5 s (the
//!   peer round-trip metric);
//! - also on the leader only: auto compaction (`--auto-compaction-mode`).
//!   Every member samples its revisions, so a new leader compacts on the
//!   same schedule, but only the leader proposes (etcd pauses its
//!   compactor on followers and resumes it on the leader).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::etcdserverpb as pb;

use crate::server::config::AutoCompaction;
use crate::server::EtcdServer;

impl EtcdServer {
    /// Starts the duties on the runtime: lease expiry and checkpoints
    /// (acting only while leader), and auto compaction if configured.
    pub fn spawn_duties(self: &Arc<Self>) {
        let srv = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut last_checkpoint = Instant::now();
            loop {
                tick.tick().await;
                if srv.stopping.load(Ordering::Acquire) {
                    return;
                }
                // Simple tokens past their TTL (every member holds them).
                srv.shared.auth.tokens.sweep();
                for id in srv.shared.lessor.expired(1000, Duration::from_secs(3)) {
                    let s = srv.clone();
                    tokio::spawn(async move {
                        let req = pb::LeaseRevokeRequest { id };
                        if let Err(e) = s.propose(req).await {
                            tracing::debug!(lease = id, error = %e, "revoking an expired lease");
                        }
                    });
                }
                let every = srv.cfg.lease_checkpoint_interval;
                if !every.is_zero() && last_checkpoint.elapsed() >= every {
                    last_checkpoint = Instant::now();
                    srv.checkpoint_leases().await;
                }
            }
        });
        let every = self.cfg.corrupt_check_time;
        if !every.is_zero() {
            // etcd's monitorKVHash: the leader compares hashes with its
            // followers (corrupt.rs).
            let srv = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if srv.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    if !srv.is_leader() {
                        continue;
                    }
                    if let Err(e) = srv.periodic_corrupt_check().await {
                        tracing::warn!(error = %e, "failed to check hashes with peers");
                    }
                }
            });
        }
        {
            // etcd's prober: each peer's round trip, every 5 s.
            let srv = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    if srv.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    srv.probe_peers().await;
                }
            });
        }
        if let Some(ac) = self.cfg.auto_compaction {
            let srv = self.clone();
            tokio::spawn(async move { srv.auto_compact(ac).await });
        }
    }

    /// Times one round trip to each other member.
    async fn probe_peers(&self) {
        let me = self.member_id();
        for m in self.membership.list() {
            if m.id == me {
                continue;
            }
            let Some(mut c) = self.peers.get(&self.membership, m.id) else {
                continue;
            };
            let started = Instant::now();
            let ask = strata_proto::peerpb::PingAsk {
                header: Some(self.peer_header(m.id)),
            };
            let answered = tokio::time::timeout(Duration::from_secs(1), c.ping(ask)).await;
            if let Ok(Ok(_)) = answered {
                crate::metrics::global()
                    .peer_rtt
                    .with_label_values(&[&crate::metrics::peer_label(m.id)])
                    .observe(started.elapsed().as_secs_f64());
            }
        }
    }

    /// Proposes the remaining TTL of every lease, so a restart resumes
    /// from it.
    pub async fn checkpoint_leases(&self) {
        let rem = self.shared.lessor.remaining();
        for chunk in rem.chunks(1000) {
            let req = pb::LeaseCheckpointRequest {
                checkpoints: chunk
                    .iter()
                    .map(|&(id, r)| pb::LeaseCheckpoint {
                        id,
                        remaining_ttl: r,
                    })
                    .collect(),
            };
            if let Err(e) = self.propose(req).await {
                tracing::debug!(error = %e, "lease checkpoint");
            }
        }
    }

    async fn auto_compact(self: Arc<Self>, ac: AutoCompaction) {
        // Revisions seen at each sample: compact to the oldest sample that
        // is past the retention.
        let mut samples: std::collections::VecDeque<(Instant, i64)> = Default::default();
        let every = match ac {
            AutoCompaction::Periodic(d) => {
                (d / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
            }
            AutoCompaction::Revision(_) => Duration::from_secs(300),
        };
        let mut last_compacted = 0;
        loop {
            tokio::time::sleep(every.min(Duration::from_secs(5))).await;
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let rev = self.store().revision();
            let target = match ac {
                AutoCompaction::Revision(keep) => rev - keep,
                AutoCompaction::Periodic(d) => {
                    samples.push_back((Instant::now(), rev));
                    let mut t = 0;
                    while let Some(&(at, r)) = samples.front() {
                        if at.elapsed() >= d {
                            t = r;
                            samples.pop_front();
                        } else {
                            break;
                        }
                    }
                    t
                }
            };
            if !self.is_leader() {
                continue;
            }
            if target <= last_compacted || target <= self.store().compact_revision() || target <= 0
            {
                continue;
            }
            let req = pb::CompactionRequest {
                revision: target,
                physical: false,
            };
            match self.propose(req).await {
                Ok(_) => {
                    last_compacted = target;
                    tracing::info!(revision = target, "auto compaction done");
                }
                Err(e) => tracing::warn!(revision = target, error = %e, "auto compaction failed"),
            }
        }
    }
}
