//! The Maintenance service: Status, Defragment, Hash, HashKV, Snapshot,
//! Alarm, MoveLeader (raft's leader transfer, asked of the leader),
//! Downgrade (etcd 3.6's validate, enable and cancel of the cluster's
//! downgrade job: [`crate::statemachine::versions`]).

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::propose;
use crate::errors::{EtcdError, Grpc};
use crate::server::{EtcdServer, ETCD_VERSION};

pub struct MaintenanceService {
    pub srv: Arc<EtcdServer>,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

/// Chunk size of the Snapshot stream (etcd's 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

fn alarm_name(a: i32) -> &'static str {
    match pb::AlarmType::try_from(a) {
        Ok(pb::AlarmType::Nospace) => "NOSPACE",
        Ok(pb::AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        // etcd 3.6: listing needs a user, changing needs root.
        let who = if req.get_ref().action == pb::alarm_request::AlarmAction::Get as i32 {
            self.srv.require_user(&req).await?
        } else {
            self.srv.require_admin(&req).await?
        };
        propose(&self.srv, who.as_ref(), req.into_inner()).await
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.srv.require_user(&req).await?;
        use std::sync::atomic::Ordering::Acquire;
        let st = &self.srv.shared.status;
        let (db_size, in_use) = self.srv.db_size();
        // etcd's order: no leader first, then each alarm as its proto
        // text (with the trailing space).
        let leader = st.leader.load(Acquire);
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(EtcdError::NoLeader.to_string());
        }
        errors.extend(
            self.srv
                .shared
                .alarms()
                .iter()
                .map(|&(m, a)| format!("memberID:{m} alarm:{} ", alarm_name(a))),
        );
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.srv.header()),
            version: ETCD_VERSION.into(),
            db_size,
            leader,
            raft_index: st.commit.load(Acquire),
            raft_term: st.term.load(Acquire),
            raft_applied_index: st.applied.load(Acquire),
            errors,
            db_size_in_use: in_use,
            is_learner: self.srv.is_learner(),
            storage_version: self.srv.storage_version(),
            db_size_quota: self.srv.cfg.quota.map_or(0, |q| q as i64),
            downgrade_info: Some(self.srv.shared.versions.downgrade_info()),
        }))
    }

    async fn defragment(
        &self,
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.srv.require_admin(&req).await?;
        let srv = self.srv.clone();
        // The gauge follows the defragmentation itself, which goes on if
        // the client goes away.
        let stats = tokio::task::spawn_blocking(move || {
            let inflight = &crate::metrics::global().defrag_inflight;
            inflight.set(1);
            let stats = srv.store().backend().defrag();
            inflight.set(0);
            stats
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .grpc()?;
        tracing::info!(
            before = stats.size_before,
            after = stats.size_after,
            took = ?stats.total,
            writers_held = ?stats.stall,
            "defragmented the backend"
        );
        // etcd answers a defragment without a header.
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.srv.require_admin(&req).await?;
        // etcd's Hash covers the whole backend less the consistent index
        // and term; strata's hashes the logical state of every bucket less
        // the member's own keys (see crate::statemachine::statehash), so members that
        // applied the same entries answer alike whatever their files'
        // page layout or compaction progress.
        let srv = self.srv.clone();
        let h = tokio::task::spawn_blocking(move || srv.shared.state_hash())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::internal)?;
        Ok(Response::new(pb::HashResponse {
            header: Some(self.srv.shared.header(h.revision)),
            hash: h.hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.srv.require_admin(&req).await?;
        let rev = req.into_inner().revision;
        let srv = self.srv.clone();
        let (hash, current, compact) =
            tokio::task::spawn_blocking(move || srv.store().hash_kv(rev))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .grpc()?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.srv.shared.header(current)),
            hash,
            compact_revision: compact,
            hash_revision: if rev > 0 { rev } else { current },
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.srv.require_admin(&req).await?;
        let srv = self.srv.clone();
        // A consistent copy goes to a temporary file first (the stream
        // announces the bytes remaining in every chunk), in bbolt's format:
        // the backup etcd's tools read (`etcdctl snapshot status|restore`).
        let dir = srv.cfg.data_dir.join("member").join("snap");
        let (mut file, size, sum) = tokio::task::spawn_blocking(move || {
            let mut f = tempfile::tempfile_in(&dir)?;
            let (size, sum) = srv.store().backend().export_bbolt(&mut f)?;
            f.seek(SeekFrom::Start(0))?;
            Ok::<_, EtcdError>((f, size, sum))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let header = self.srv.header();
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut left = size;
            let mut first = true;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            while left > 0 {
                let n = (left as usize).min(SNAPSHOT_CHUNK);
                if let Err(e) = file.read_exact(&mut buf[..n]) {
                    let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                    return;
                }
                left -= n as u64;
                let r = pb::SnapshotResponse {
                    header: first.then_some(header),
                    remaining_bytes: left + sum.len() as u64,
                    blob: buf[..n].to_vec(),
                    version: if first {
                        ETCD_VERSION.into()
                    } else {
                        String::new()
                    },
                };
                first = false;
                if tx.blocking_send(Ok(r)).is_err() {
                    return;
                }
            }
            // The trailer: SHA-256 of everything sent before it.
            let _ = tx.blocking_send(Ok(pb::SnapshotResponse {
                header: first.then_some(header),
                remaining_bytes: 0,
                blob: sum.to_vec(),
                version: String::new(),
            }));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        if target != self.srv.member_id() || !self.srv.is_leader() {
            self.srv.move_leader(target).await?;
        }
        // etcd answers an empty response.
        Ok(Response::new(pb::MoveLeaderResponse::default()))
    }

    /// etcd v3.7.1's server/etcdserver/v3_server.go Downgrade and
    /// version/version.go: root only; VALIDATE and ENABLE accept the
    /// cluster version's minor minus one and no job in progress, after a
    /// linearizable read; ENABLE and CANCEL go through raft; CANCEL without
    /// a job answers as etcd does (no error). The response carries the
    /// cluster version as it was when the request came (etcd's monitor
    /// moves it a moment later; here the entry moves it).
    async fn downgrade(
        &self,
        req: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        use crate::statemachine::versions as v;
        use pb::downgrade_request::DowngradeAction as A;
        self.srv.require_admin(&req).await?;
        let r = req.into_inner();
        let versions = &self.srv.shared.versions;
        let validate = |target: v::Minor, cluster: v::Minor| {
            let allowed = v::Minor(cluster.0, cluster.1.saturating_sub(1));
            if cluster.1 == 0 || target != allowed {
                return Err(EtcdError::InvalidDowngradeTargetVersion);
            }
            if versions.downgrade().is_some() {
                return Err(EtcdError::DowngradeInProcess);
            }
            Ok(())
        };
        let cluster = match A::try_from(r.action) {
            Ok(A::Validate) => {
                let target = v::parse_target(&r.version)?;
                let cluster = versions.cluster();
                self.srv.read_barrier().await?;
                validate(target, versions.cluster())?;
                cluster
            }
            Ok(A::Enable) => {
                let target = v::parse_target(&r.version)?;
                self.srv.read_barrier().await?;
                let cluster = versions.cluster();
                validate(target, cluster)?;
                self.srv
                    .propose(pb::DowngradeInfoSetRequest {
                        enabled: true,
                        ver: target.full(),
                    })
                    .await?;
                tracing::info!(target = %target, "downgrade enabled");
                cluster
            }
            Ok(A::Cancel) => {
                self.srv.read_barrier().await?;
                let cluster = versions.cluster();
                if versions.downgrade().is_none() {
                    tracing::warn!(error = %EtcdError::NoInflightDowngrade, "failed to cancel downgrade");
                } else {
                    self.srv
                        .propose(pb::DowngradeInfoSetRequest {
                            enabled: false,
                            ver: String::new(),
                        })
                        .await?;
                    tracing::info!("downgrade cancelled");
                }
                cluster
            }
            Err(_) => return Err(Status::unknown("etcdserver: unknown method")),
        };
        Ok(Response::new(pb::DowngradeResponse {
            header: Some(self.srv.header()),
            version: cluster.short(),
        }))
    }
}
