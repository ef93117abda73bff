//! What the running member needs to know, built once from the flags
//! (`embed::config::Config::server_config`): resolved values (paths with
//! their defaults, the quota in bytes, the election in ticks, auto
//! compaction parsed), not flag spellings. The server and the front end
//! read this; only the embed layer knows the flags.
//!
//! Invariant: a `ServerConfig` comes from flags that passed
//! `Config::validate`, so its values are in range (election at least five
//! heartbeats, URLs well-formed).

use std::path::PathBuf;
use std::time::Duration;

use crate::transport::tls::TlsInfo;

/// Auto compaction (`--auto-compaction-mode` and `-retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    // Who this member is and which cluster it starts or joins.
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    /// `--initial-cluster`, or this member alone at its peer URLs.
    pub initial_cluster: String,
    /// `--initial-cluster-state existing`: join a running cluster.
    pub join_existing: bool,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    pub advertise_client_urls: String,
    pub force_new_cluster: bool,

    // Raft.
    /// Milliseconds.
    pub heartbeat_interval: u64,
    /// Milliseconds.
    pub election_timeout: u64,
    /// The election timeout in heartbeats (at least 2).
    pub election_ticks: usize,
    pub pre_vote: bool,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub max_learners: usize,
    /// `--warning-apply-duration`.
    pub warning_apply_duration: std::time::Duration,
    pub strict_reconfig_check: bool,

    // Storage.
    pub unsafe_no_fsync: bool,
    pub wal_segment_size: u64,
    pub backend_batch_interval: Duration,
    pub backend_batch_limit: usize,
    /// Bytes; None: no quota.
    pub quota: Option<u64>,

    // Requests.
    pub max_request_bytes: u32,
    pub max_txn_ops: u32,
    pub client_cert_auth: bool,
    pub enable_grpc_gateway: bool,
    /// `--host-whitelist` (`*` or none: any).
    pub allowed_hosts: Vec<String>,
    /// `--cors` (`*`: any).
    pub cors_origins: Vec<String>,

    // Auth and leases.
    pub auth_token: String,
    pub auth_token_ttl: u64,
    pub bcrypt_cost: u32,
    /// Seconds: ceil(1.5 x the election timeout).
    pub min_lease_ttl: i64,

    // Periodic work.
    pub auto_compaction: Option<AutoCompaction>,
    pub initial_corrupt_check: bool,
    pub corrupt_check_time: Duration,
    pub lease_checkpoint_interval: Duration,
    pub watch_progress_notify_interval: Duration,

    /// Every feature gate etcd knows: name, stage, on (the
    /// `etcd_server_feature_enabled` metric).
    pub feature_gates: Vec<(&'static str, &'static str, bool)>,

    /// TLS to peers (dialing them), when peer URLs are https.
    pub peer_tls: Option<TlsInfo>,
}
