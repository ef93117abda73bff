//! The member: opens (or bootstraps) the data dir, starts the raft thread,
//! and offers the services what they need: propose-and-wait, the
//! linearizable read barrier, and the shared state.
//!
//! Data dir layout (docs/format.md): `member/wal/` the raft log,
//! `member/db` the backend. The db's meta bucket holds the consistent
//! index and the last raft snapshot marker; startup opens the WAL at that
//! marker and replays the entries after the consistent index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use sha1::{Digest, Sha1};
use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_engine::mvcc::{self as m, Store, WatchableStore};
use strata_engine::wal::{self, Metadata, SnapshotMark, Wal, WalOptions};
use strata_proto::etcdserverpb as pb;
use tokio::sync::{oneshot, watch};

use crate::apply::{self, Applied, Applier, Shared, Waiters};
use crate::config::{AutoCompaction, Config};
use crate::errors::EtcdError;
use crate::lease::Lessor;
use crate::raftnode::storage::LogStore;
use crate::raftnode::{Input, NoPeers, Node, NodeConfig, NodeStatus};

/// The version Status reports: the etcd API level strata serves (clients,
/// Kubernetes among them, parse it as semver to pick features).
pub const ETCD_VERSION: &str = "3.5.17";

/// etcd's member id: the first 8 bytes (big-endian) of SHA-1 over the
/// sorted peer URLs followed by the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// etcd's cluster id: SHA-1 over the sorted member ids (8 bytes BE each).
pub fn cluster_id(members: &[u64]) -> u64 {
    let mut ids = members.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

pub struct EtcdServer {
    pub cfg: Config,
    pub shared: Arc<Shared>,
    raft_tx: Sender<Input>,
    applied_rx: watch::Receiver<u64>,
    next_id: AtomicU64,
    raft_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    pub peer_urls: Vec<String>,
    /// When the NOSPACE alarm was last proposed (not again for a second).
    nospace_proposed: Mutex<Option<Instant>>,
    /// The db file's size as the quota check sees it, and when it was read
    /// (ms since `started`): refreshed at most every 100 ms, so the check
    /// costs no system call per request.
    quota_size: AtomicU64,
    quota_size_at: AtomicU64,
    started: Instant,
}

fn meta_u64(view: &strata_engine::backend::ReadView, key: &[u8]) -> anyhow::Result<u64> {
    Ok(match view.get(Bucket::Meta, key)? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!("meta {:?} is not 8 bytes", String::from_utf8_lossy(key))
        })?),
        None => 0,
    })
}

fn has_wal(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
    })
}

impl EtcdServer {
    /// Opens or bootstraps the member and starts raft.
    pub fn start(cfg: Config) -> anyhow::Result<Arc<EtcdServer>> {
        cfg.validate()?;
        let dir = cfg.data_dir();
        let member_dir = dir.join("member");
        let wal_dir = member_dir.join("wal");
        std::fs::create_dir_all(&wal_dir)
            .with_context(|| format!("creating {}", wal_dir.display()))?;
        std::fs::create_dir_all(member_dir.join("snap"))?;
        let mut bcfg = BackendConfig::new(member_dir.join("db"));
        bcfg.batch_interval = cfg.backend_batch_interval;
        bcfg.batch_limit = cfg.backend_batch_limit.max(1);
        let backend = Backend::open(bcfg)
            .with_context(|| format!("opening {}", member_dir.join("db").display()))?;
        let view = backend.read();
        let ci = meta_u64(&view, apply::CONSISTENT_INDEX_KEY)?;
        let ci_term = meta_u64(&view, apply::TERM_KEY)?;
        let mark =
            match view.get(Bucket::Meta, apply::SNAPSHOT_KEY)? {
                Some(b) => Some(apply::decode_mark(&b).ok_or_else(|| {
                    anyhow::anyhow!("meta {:?} is damaged", "strata_raft_snapshot")
                })?),
                None => None,
            };
        drop(view);

        let peer_urls = cfg.own_peer_urls()?;
        let (wal, rec, at) = if has_wal(&wal_dir) {
            let at = mark.clone().unwrap_or_default();
            let (w, rec) = Wal::open(&wal_dir, &at, WalOptions::default())
                .with_context(|| format!("opening the WAL in {}", wal_dir.display()))?;
            // With no marker recorded yet, the conf state is the bootstrap
            // marker's (index 0) in the log.
            let at = match (&mark, &rec.last_snapshot) {
                (None, Some(first)) if first.index == 0 => first.clone(),
                _ => at,
            };
            (w, rec, at)
        } else {
            if cfg.initial_cluster_state == "existing" {
                anyhow::bail!("--initial-cluster-state=existing needs a data dir with a WAL (joining a cluster arrives with multi-member support)");
            }
            let id = member_id(&peer_urls, &cfg.initial_cluster_token);
            let md = Metadata {
                member_id: id,
                cluster_id: cluster_id(&[id]),
            };
            let mut w = Wal::create(&wal_dir, md, WalOptions::default())?;
            let at = SnapshotMark {
                index: 0,
                term: 0,
                conf_state: wal::ConfState {
                    voters: vec![id],
                    ..Default::default()
                },
            };
            w.save_snapshot(&at)?;
            w.sync()?;
            tracing::info!(member = format!("{id:x}"), dir = %dir.display(), "bootstrapped a new one-member cluster");
            let rec = wal::Recovered {
                metadata: md,
                ..Default::default()
            };
            (w, rec, at)
        };
        let md = rec.metadata;
        if let Some(p) = &rec.repaired {
            tracing::warn!(kept = %p.display(), "repaired a torn WAL tail");
        }

        let store = Store::open(backend)?;
        let ws = WatchableStore::new(store);
        let status = Arc::new(NodeStatus::default());
        let shared = Arc::new(Shared {
            store: ws,
            lessor: Lessor::new(cfg.min_lease_ttl()),
            waiters: Waiters::default(),
            alarms: Mutex::new(Default::default()),
            cluster_id: md.cluster_id,
            member_id: md.member_id,
            status: status.clone(),
        });
        restore_leases_and_alarms(&shared)?;

        let cells = Arc::new(apply::IndexCells::default());
        cells.index.store(ci, Ordering::Release);
        cells.term.store(ci_term, Ordering::Release);
        apply::install_consistent_index_hook(shared.store.store(), cells.clone());
        let applied = ci.max(at.index);
        let log = LogStore::restore(wal, &at, rec, applied)?;
        let (applied_tx, applied_rx) = watch::channel(applied);
        let ncfg = NodeConfig {
            id: md.member_id,
            election_ticks: cfg.election_ticks(),
            heartbeat_ticks: 1,
            snapshot_count: cfg.snapshot_count,
            catch_up_entries: 5000,
            applied,
            snapshot_index: at.index,
        };
        let node = Node::new(
            &ncfg,
            log,
            NoPeers,
            Applier::new(shared.clone(), applied, cells),
            status,
            applied_tx,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let raft_thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || node.run(rx))?;
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let tx = tx.clone();
            let stopping = stopping.clone();
            let every = Duration::from_millis(cfg.heartbeat_interval);
            std::thread::Builder::new()
                .name("raft-ticker".into())
                .spawn(move || {
                    while !stopping.load(Ordering::Acquire) {
                        std::thread::sleep(every);
                        if tx.send(Input::Tick).is_err() {
                            return;
                        }
                    }
                })?;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let srv = Arc::new(EtcdServer {
            cfg,
            shared,
            raft_tx: tx,
            applied_rx,
            next_id: AtomicU64::new(
                ((md.member_id & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8),
            ),
            raft_thread: Mutex::new(Some(raft_thread)),
            stopping,
            peer_urls,
            nospace_proposed: Mutex::new(None),
            quota_size: AtomicU64::new(0),
            quota_size_at: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        });
        Ok(srv)
    }

    /// etcd's gRPC receive limit: the request limit plus 512 KiB.
    pub fn recv_limit(&self) -> usize {
        self.cfg.max_request_bytes as usize + 512 * 1024
    }

    pub fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    /// Waits (at most `limit`) until raft has a leader and this member has
    /// applied what the log held at startup.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.shared.status.leader.load(Ordering::Acquire) != 0 {
                return self.read_barrier().await.is_ok();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    pub fn store(&self) -> &m::Store {
        self.shared.store.store()
    }

    pub fn header(&self) -> pb::ResponseHeader {
        self.shared.header(self.store().revision())
    }

    fn send(&self, i: Input) -> Result<(), EtcdError> {
        self.raft_tx.send(i).map_err(|_| EtcdError::Stopped)
    }

    /// A fresh request id (unique per member: member bits, start time, a
    /// counter).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn request_timeout(&self) -> Duration {
        // etcd: 5 s plus two election timeouts.
        Duration::from_secs(5) + Duration::from_millis(2 * self.cfg.election_timeout)
    }

    fn check_running(&self) -> Result<(), EtcdError> {
        if self.shared.status.failed.load(Ordering::Acquire)
            || self.stopping.load(Ordering::Acquire)
        {
            return Err(EtcdError::Stopped);
        }
        Ok(())
    }

    /// Proposes a request through raft and waits for its applied result.
    pub async fn propose(&self, mut r: pb::InternalRaftRequest) -> Result<Applied, EtcdError> {
        self.check_running()?;
        let id = self.next_id();
        r.header = Some(pb::RequestHeader { id });
        let data = r.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes as usize {
            return Err(EtcdError::RequestTooLarge);
        }
        let rx = self.shared.waiters.register(id);
        if let Err(e) = self.send(Input::Propose { id, data }) {
            self.shared.waiters.cancel(id);
            return Err(e);
        }
        match tokio::time::timeout(self.request_timeout(), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.shared.waiters.cancel(id);
                Err(EtcdError::Timeout)
            }
        }
    }

    /// Waits until this member has applied everything committed when the
    /// call began (raft's ReadIndex, shared by concurrent reads).
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        self.check_running()?;
        let (tx, rx) = oneshot::channel();
        self.send(Input::ReadIndex(tx))?;
        let deadline = self.request_timeout();
        let index = match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(i)) => i,
            Ok(Err(_)) => return Err(EtcdError::NoLeader),
            Err(_) => return Err(EtcdError::Timeout),
        };
        let mut w = self.applied_rx.clone();
        let waited = tokio::time::timeout(deadline, async {
            w.wait_for(|a| *a >= index).await.map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    /// Size of the db file and the part of it in use.
    pub fn db_size(&self) -> (i64, i64) {
        let info = self.store().backend().db().info();
        let in_use = info
            .page_count
            .saturating_sub(info.free_pages + info.pending_pages)
            * info.page_size as u64;
        (info.file_len as i64, in_use as i64)
    }

    fn quota_db_size(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let at = self.quota_size_at.load(Ordering::Relaxed);
        if at == u64::MAX || now.saturating_sub(at) >= 100 {
            let (size, _) = self.db_size();
            self.quota_size.store(size as u64, Ordering::Relaxed);
            self.quota_size_at.store(now, Ordering::Relaxed);
        }
        self.quota_size.load(Ordering::Relaxed)
    }

    /// etcd's quota check for a request that adds `cost` bytes: past the
    /// quota, raise NOSPACE (once) and refuse.
    pub async fn check_quota(&self, cost: usize) -> Result<(), EtcdError> {
        if self.shared.nospace() {
            return Err(EtcdError::NoSpace);
        }
        let Some(quota) = self.cfg.quota() else {
            return Ok(());
        };
        let size = self.quota_db_size();
        if size.saturating_add(cost as u64) <= quota {
            return Ok(());
        }
        let propose = {
            let mut last = self
                .nospace_proposed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if propose {
            let req = pb::InternalRaftRequest {
                alarm: Some(pb::AlarmRequest {
                    action: pb::alarm_request::AlarmAction::Activate as i32,
                    member_id: self.member_id(),
                    alarm: pb::AlarmType::Nospace as i32,
                }),
                ..Default::default()
            };
            let _ = self.propose(req).await;
        }
        Err(EtcdError::NoSpace)
    }

    /// Background duties of the leader: revoking expired leases,
    /// checkpointing remaining TTLs, auto compaction.
    pub fn spawn_background(self: &Arc<Self>) {
        let srv = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut last_checkpoint = Instant::now();
            loop {
                tick.tick().await;
                if srv.stopping.load(Ordering::Acquire) {
                    return;
                }
                for id in srv.shared.lessor.expired(1000, Duration::from_secs(3)) {
                    let s = srv.clone();
                    tokio::spawn(async move {
                        let req = pb::InternalRaftRequest {
                            lease_revoke: Some(pb::LeaseRevokeRequest { id }),
                            ..Default::default()
                        };
                        if let Err(e) = s.propose(req).await {
                            tracing::debug!(lease = id, error = %e, "revoking an expired lease");
                        }
                    });
                }
                let every = srv.cfg.experimental_lease_checkpoint_interval;
                if !every.is_zero() && last_checkpoint.elapsed() >= every {
                    last_checkpoint = Instant::now();
                    srv.checkpoint_leases().await;
                }
            }
        });
        if let Ok(Some(ac)) = self.cfg.auto_compaction() {
            let srv = self.clone();
            tokio::spawn(async move { srv.auto_compact(ac).await });
        }
    }

    /// Proposes the remaining TTL of every lease, so a restart resumes
    /// from it.
    pub async fn checkpoint_leases(&self) {
        let rem = self.shared.lessor.remaining();
        for chunk in rem.chunks(1000) {
            let req = pb::InternalRaftRequest {
                lease_checkpoint: Some(pb::LeaseCheckpointRequest {
                    checkpoints: chunk
                        .iter()
                        .map(|&(id, r)| pb::LeaseCheckpoint {
                            id,
                            remaining_ttl: r,
                        })
                        .collect(),
                }),
                ..Default::default()
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
            if target <= last_compacted || target <= self.store().compact_revision() || target <= 0
            {
                continue;
            }
            let req = pb::InternalRaftRequest {
                compaction: Some(pb::CompactionRequest {
                    revision: target,
                    physical: false,
                }),
                ..Default::default()
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

    /// Stops raft and closes the storage (everything applied is committed).
    pub fn stop(&self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.send(Input::Stop);
        if let Some(h) = self
            .raft_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        if let Err(e) = self.store().backend().force_commit() {
            tracing::error!(error = %e, "final commit of the backend failed");
        }
    }
}

/// Rebuilds the lessor (leases, their keys) and the alarms from the db.
fn restore_leases_and_alarms(sh: &Shared) -> anyhow::Result<()> {
    let view = sh.store.store().backend().read();
    for (_, v) in view.range(Bucket::Lease, &[], &[], 0)? {
        let l = pb::LeasePb::decode(v.as_slice()).context("lease bucket entry")?;
        // Restored as granted (minimum TTL rules applied at grant time).
        let _ = sh.lessor.grant(l.id, l.ttl, l.remaining_ttl);
    }
    for (k, _) in view.range(Bucket::Alarm, &[], &[], 0)? {
        let a = pb::AlarmMember::decode(k.as_slice()).context("alarm bucket entry")?;
        sh.alarms().insert((a.member_id, a.alarm));
    }
    drop(view);
    let all = sh.store.store().range(&m::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })?;
    for kv in all.kvs {
        if kv.lease != 0 {
            sh.lessor.set_key(&kv.key, kv.lease);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd_defaults() {
        // etcd's default member (name default, peer URL
        // http://localhost:2380, token etcd-cluster) is 8e9e05c52164694d in
        // cluster cdf818194e3a8c32.
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(id, 0x8e9e05c52164694d);
        assert_eq!(cluster_id(&[id]), 0xcdf818194e3a8c32);
    }
}
