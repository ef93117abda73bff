//! The member's configuration: etcd's flag names and meanings, each with
//! its `ETCD_*` environment twin, so an etcd command line works unchanged.

use std::time::Duration;

use clap::Parser;

pub use crate::server::config::AutoCompaction;
use crate::server::ServerConfig;

pub use crate::duration::parse_duration;

/// The non-empty items of a comma-separated flag value.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub mod compat;
pub mod file;
pub mod gates;
pub mod renamed;
pub mod tls;

pub use crate::urls;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "strata",
    // `--version` prints etcd's block ([`crate::version::version_block`]).
    disable_version_flag = true,
    about = "A distributed, strongly consistent key-value store speaking the etcd v3 API",
    // Go's flag package takes a flag given twice, the last value winning
    // (etcd's own test harness passes --client-cert-auth twice).
    args_override_self = true
)]
pub struct Config {
    /// etcd's YAML configuration file; when given, every other flag and
    /// ETCD_* variable is ignored, as etcd does ([`file`]).
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<std::path::PathBuf>,

    /// Print the version (etcd's block, then strata's) and exit.
    #[arg(long = "version")]
    pub print_version: bool,

    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: ${name}.strata).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,

    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,

    /// More URLs for client traffic (etcd 3.5+ serves only its HTTP side
    /// there: the JSON gateway, /health, /metrics; strata serves the whole
    /// client port on them, gRPC included).
    #[arg(long, env = "ETCD_LISTEN_CLIENT_HTTP_URLS", default_value = "")]
    pub listen_client_http_urls: String,

    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub advertise_client_urls: String,

    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,

    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping (name=peer-url,...).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ('new' or 'existing').
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_STATE",
        value_enum,
        default_value_t = ClusterState::New
    )]
    pub initial_cluster_state: ClusterState,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Disables fsync of the WAL and the db: unsafe, an OS crash or power
    /// loss loses acknowledged writes (etcd's flag; for tests and
    /// simulations).
    #[arg(long, env = "ETCD_UNSAFE_NO_FSYNC", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub unsafe_no_fsync: bool,

    /// Number of committed transactions to trigger a snapshot to disk
    /// (etcd 3.6's default, 10,000; 3.5's was 100,000).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    pub snapshot_count: u64,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Raise alarms when backend size exceeds the given quota (0 defaults to
    /// 2 GiB; a negative value disables the quota).
    #[arg(
        long,
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,

    /// Interpret 'auto-compaction-retention' as hours ('periodic') or as a
    /// number of revisions ('revision').
    #[arg(
        long,
        env = "ETCD_AUTO_COMPACTION_MODE",
        value_enum,
        default_value_t = AutoCompactionMode::Periodic
    )]
    pub auto_compaction_mode: AutoCompactionMode,

    /// Auto compaction retention ("0": off; periodic: a duration, or a
    /// number of hours; revision: revisions to keep).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// The maximum time before committing the backend transaction. etcd's
    /// default is 100ms; strata's is longer because every acknowledged
    /// write is already in the WAL (the interval only bounds how much a
    /// restart replays), and each commit costs the apply loop a stall.
    #[arg(long, env = "ETCD_BACKEND_BATCH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub backend_batch_interval: Duration,

    /// The maximum operations before committing the backend transaction.
    #[arg(long, env = "ETCD_BACKEND_BATCH_LIMIT", default_value_t = 10_000)]
    pub backend_batch_limit: usize,

    /// Log level: debug, info, warn, error, panic or fatal (the last two
    /// log errors only, as etcd's do).
    #[arg(long, env = "ETCD_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log at debug level (etcd's older switch; same as --log-level debug).
    #[arg(long, env = "ETCD_DEBUG", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub debug: bool,

    /// etcd's logger: zap (structured lines, Strata's only kind); capnslog
    /// is accepted with a warning.
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,

    /// Where logs go: stderr (default), stdout, or a file path (the first
    /// of a comma-separated list).
    #[arg(
        long,
        env = "ETCD_LOG_OUTPUTS",
        default_value = "default",
        alias = "log-output"
    )]
    pub log_outputs: String,

    /// Log line format: json (etcd's zap lines) or console; default: json
    /// unless the output is a terminal.
    #[arg(long, env = "ETCD_LOG_FORMAT", value_parser = ["json", "console"])]
    pub log_format: Option<String>,

    /// The WAL's directory (default: <data-dir>/member/wal), e.g. on a
    /// faster disk.
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<std::path::PathBuf>,

    /// Strata's own: the size WAL segment files are preallocated to
    /// (etcd's fixed 64,000,000 bytes by default). Each member keeps the
    /// current segment and one spare, so small disks and test clusters
    /// can pick less; at least 1 MiB.
    #[arg(long, env = "STRATA_WAL_SEGMENT_SIZE", default_value_t = strata_engine::wal::DEFAULT_SEGMENT_SIZE,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub wal_segment_size: u64,

    /// Serve the JSON gateway (`/v3/...`) on the client listeners.
    #[arg(long, env = "ETCD_ENABLE_GRPC_GATEWAY", default_value_t = true,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_grpc_gateway: bool,

    /// Comma-separated origins (URLs) whose browsers may call the HTTP
    /// endpoints and the gateway (CORS); `*` for any.
    #[arg(long, env = "ETCD_CORS", default_value = "*")]
    pub cors: String,

    /// Comma-separated host names plain-HTTP requests may name in their
    /// Host header (against DNS rebinding); `*` for any.
    #[arg(long, env = "ETCD_HOST_WHITELIST", default_value = "*")]
    pub host_whitelist: String,

    /// The most concurrent streams one client connection may open
    /// (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; default: no limit).
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,

    /// How often the server pings an idle client connection.
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_INTERVAL", default_value = "2h", value_parser = parse_duration)]
    pub grpc_keepalive_interval: Duration,

    /// How long it waits for the ping's answer before closing.
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub grpc_keepalive_timeout: Duration,

    /// etcd's discovery bootstrap: not supported; a non-empty value is
    /// refused (bootstrapping without it would form a different cluster).
    #[arg(long, env = "ETCD_DISCOVERY", default_value = "")]
    pub discovery: String,

    /// DNS SRV discovery: not supported; refused when set, as --discovery.
    #[arg(long, env = "ETCD_DISCOVERY_SRV", default_value = "")]
    pub discovery_srv: String,

    /// Flags accepted for compatibility and ignored ([`compat`]).
    #[command(flatten)]
    pub compat: compat::Compat,

    /// Whether raft runs its pre-vote phase before an election (etcd 3.5's
    /// default: on).
    #[arg(long, env = "ETCD_PRE_VOTE", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub pre_vote: bool,

    /// Before serving, a restarting member compares its HashKV with its
    /// peers' and refuses to start on a mismatch.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,

    /// How often the leader compares its HashKV with every follower's and
    /// raises the CORRUPT alarm on a mismatch (0: never).
    #[arg(long, alias = "experimental-corrupt-check-time", env = "ETCD_CORRUPT_CHECK_TIME",
          default_value = "0s", value_parser = parse_duration)]
    pub corrupt_check_time: Duration,

    /// Entries the leader keeps in memory behind a snapshot for slow
    /// followers.
    #[arg(
        long,
        alias = "experimental-snapshot-catchup-entries",
        env = "ETCD_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub snapshot_catchup_entries: u64,

    /// Duration of periodic watch progress notifications.
    #[arg(long, alias = "experimental-watch-progress-notify-interval",
          env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub watch_progress_notify_interval: Duration,

    /// How often the leader checkpoints the remaining TTL of leases (so a
    /// restart resumes from it).
    #[arg(long, env = "ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub experimental_lease_checkpoint_interval: Duration,

    /// More URLs serving /metrics and the health probes (http, or https
    /// with the client certificate).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,

    /// `basic` or `extensive`: extensive adds gRPC's handling-time
    /// histograms (`grpc_server_handling_seconds`), as etcd's flag does
    /// (etcd reads any other value as basic).
    #[arg(long, env = "ETCD_METRICS", default_value = "basic")]
    pub metrics: String,

    /// Start from this data dir as a one-member cluster: every other member
    /// is removed (disaster recovery after losing quorum).
    #[arg(long, env = "ETCD_FORCE_NEW_CLUSTER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub force_new_cluster: bool,

    /// Refuse membership changes that would leave too few started members
    /// for a quorum (etcd's strict reconfiguration check).
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub strict_reconfig_check: bool,

    /// An entry that takes longer than this to apply is logged ("apply
    /// request took too long") and counted in etcd_server_slow_apply_total.
    #[arg(long, alias = "experimental-warning-apply-duration", env = "ETCD_WARNING_APPLY_DURATION",
          default_value = "100ms", value_parser = parse_duration)]
    pub warning_apply_duration: Duration,

    /// The most learners a cluster may have.
    #[arg(
        long,
        alias = "experimental-max-learners",
        env = "ETCD_MAX_LEARNERS",
        default_value_t = 1
    )]
    pub max_learners: usize,

    /// etcd 3.6/3.7's feature gates, `Name=bool,...` ([`gates`]).
    #[arg(long, env = "ETCD_FEATURE_GATES", default_value = "", value_parser = gates::FeatureGates::parse)]
    pub feature_gates: gates::FeatureGates,

    /// Auth token type and its options: `simple`, or
    /// `jwt,pub-key=F,priv-key=F,sign-method=RS256[,ttl=5m]`.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// Seconds a simple token lives past its last use.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,

    /// bcrypt cost of stored password hashes (4 to 31).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<std::path::PathBuf>,

    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,

    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<std::path::PathBuf>,

    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,

    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<std::path::PathBuf>,

    /// Client TLS using generated certificates.
    #[arg(long, env = "ETCD_AUTO_TLS", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_tls: bool,

    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<std::path::PathBuf>,

    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<std::path::PathBuf>,

    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<std::path::PathBuf>,

    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,

    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<std::path::PathBuf>,

    /// Peer TLS using generated certificates.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,

    /// Minimum TLS version for client and peer connections (TLS1.2 or
    /// TLS1.3; older values mean TLS1.2).
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,

    /// Maximum TLS version (empty: the newest, TLS1.3).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,

    /// Comma-separated list of allowed CNs for inter-peer authentication
    /// (needs --peer-client-cert-auth; etcd 3.6 takes a list).
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "")]
    pub peer_cert_allowed_cn: String,

    /// Comma-separated list of allowed TLS host names for inter-peer
    /// authentication (needs --peer-client-cert-auth; exclusive with
    /// --peer-cert-allowed-cn).
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub peer_cert_allowed_hostname: String,

    /// Comma-separated list of allowed TLS host names for client
    /// certificate authentication (with --client-cert-auth).
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub client_cert_allowed_hostname: String,

    /// The validity period of the client and peer certificates generated
    /// by --auto-tls and --peer-auto-tls, in years.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,

    /// Comma-separated list of supported TLS 1.2 cipher suites between
    /// client/server and peers (empty: rustls's defaults). TLS 1.3 suites
    /// are always on, as in Go.
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AutoCompactionMode {
    Periodic,
    Revision,
}

/// `--log-level`: etcd's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Panic,
    Fatal,
}

impl LogLevel {
    /// The tracing filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Panic | LogLevel::Fatal => "error",
        }
    }
}

/// etcd's default quota: 2 GiB.
pub const DEFAULT_QUOTA: i64 = 2 * 1024 * 1024 * 1024;

impl Config {
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| format!("{}.strata", self.name).into())
    }

    /// The WAL's directory: `--wal-dir`, else `<data-dir>/member/wal`.
    pub fn wal_dir(&self) -> std::path::PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("member").join("wal"))
    }

    /// The quota in bytes, or None for no quota.
    pub fn quota(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            0 => Some(DEFAULT_QUOTA as u64),
            q if q < 0 => None,
            q => Some(q as u64),
        }
    }

    /// The initial cluster, defaulting to this member at its advertised
    /// peer URLs.
    pub fn initial_cluster(&self) -> String {
        self.initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, self.initial_advertise_peer_urls))
    }

    /// This member's peer URLs as the initial cluster lists them.
    pub fn own_peer_urls(&self) -> anyhow::Result<Vec<String>> {
        let mut urls = Vec::new();
        for part in self.initial_cluster().split(',') {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--initial-cluster entry {part:?} is not name=url")
            })?;
            if name.trim() == self.name {
                urls.push(url.trim().to_string());
            }
        }
        if urls.is_empty() {
            anyhow::bail!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            );
        }
        Ok(urls)
    }

    /// Minimum lease TTL (seconds): ceil(1.5 x election timeout).
    pub fn min_lease_ttl(&self) -> i64 {
        let ticks = self.election_ticks() as u64;
        let ms = ticks * 3 / 2 * self.heartbeat_interval;
        ms.div_ceil(1000) as i64
    }

    pub fn election_ticks(&self) -> usize {
        (self.election_timeout / self.heartbeat_interval.max(1)).max(2) as usize
    }

    /// Checks every URL flag as etcd does.
    fn check_urls(&self) -> anyhow::Result<()> {
        self.client_listens()?;
        if !self.listen_client_http_urls.trim().is_empty() {
            urls::parse_urls("listen-client-http-urls", &self.listen_client_http_urls)?;
        }
        urls::parse_urls("advertise-client-urls", &self.advertise_client_urls)?;
        urls::parse_urls("listen-peer-urls", &self.listen_peer_urls)?;
        urls::parse_urls(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        for part in self.initial_cluster().split(',') {
            if let Some((_, url)) = part.split_once('=') {
                urls::parse_urls("initial-cluster", url)?;
            }
        }
        for origin in list(&self.cors) {
            if origin != "*" {
                urls::parse_urls("cors", origin)?;
            }
        }
        Ok(())
    }

    /// The origins `--cors` allows (`*`: any).
    pub fn cors_origins(&self) -> Vec<String> {
        list(&self.cors).map(str::to_string).collect()
    }

    /// The hosts `--host-whitelist` allows (`*` or none: any).
    pub fn allowed_hosts(&self) -> Vec<String> {
        list(&self.host_whitelist).map(str::to_string).collect()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.heartbeat_interval == 0 || self.election_timeout < 5 * self.heartbeat_interval {
            anyhow::bail!(
                "--election-timeout[{}ms] should be at least 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout,
                self.heartbeat_interval
            );
        }
        if !self.discovery.is_empty() || !self.discovery_srv.is_empty() {
            anyhow::bail!("discovery (--discovery, --discovery-srv) is not supported: list the members with --initial-cluster");
        }
        if !matches!(self.logger.as_str(), "zap" | "capnslog") {
            anyhow::bail!(
                "unknown logger option {:?} (want zap or capnslog)",
                self.logger
            );
        }
        self.check_urls()?;
        self.check_tls()?;
        self.auto_compaction()?;
        self.own_peer_urls()?;
        Ok(())
    }

    /// What the running member needs, resolved once from these flags
    /// (checked first, as [`Config::validate`] does; `--peer-auto-tls`
    /// makes its certificate here).
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        self.validate()?;
        Ok(ServerConfig {
            name: self.name.clone(),
            data_dir: self.data_dir(),
            wal_dir: self.wal_dir(),
            initial_cluster: self.initial_cluster(),
            join_existing: self.initial_cluster_state == ClusterState::Existing,
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            advertise_client_urls: self.advertise_client_urls.clone(),
            force_new_cluster: self.force_new_cluster,
            heartbeat_interval: self.heartbeat_interval,
            election_timeout: self.election_timeout,
            election_ticks: self.election_ticks(),
            pre_vote: self.pre_vote,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            max_learners: self.max_learners,
            warning_apply_duration: self.warning_apply_duration,
            strict_reconfig_check: self.strict_reconfig_check,
            unsafe_no_fsync: self.unsafe_no_fsync,
            wal_segment_size: self.wal_segment_size,
            backend_batch_interval: self.backend_batch_interval,
            backend_batch_limit: self.backend_batch_limit,
            quota: self.quota(),
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            client_cert_auth: self.client_cert_auth,
            enable_grpc_gateway: self.enable_grpc_gateway,
            allowed_hosts: self.allowed_hosts(),
            cors_origins: self.cors_origins(),
            auth_token: self.auth_token.clone(),
            auth_token_ttl: self.auth_token_ttl,
            bcrypt_cost: self.bcrypt_cost,
            min_lease_ttl: self.min_lease_ttl(),
            auto_compaction: self.auto_compaction()?,
            initial_corrupt_check: self.experimental_initial_corrupt_check
                || self.feature_gates.enabled("InitialCorruptCheck"),
            corrupt_check_time: self.corrupt_check_time,
            lease_checkpoint_interval: self.experimental_lease_checkpoint_interval,
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            feature_gates: self.feature_gates.all(),
            peer_tls: self.peer_tls()?,
        })
    }

    /// Auto compaction as configured: None when off.
    pub fn auto_compaction(&self) -> anyhow::Result<Option<AutoCompaction>> {
        let r = self.auto_compaction_retention.trim();
        if r.is_empty() || r == "0" {
            return Ok(None);
        }
        Ok(Some(match self.auto_compaction_mode {
            AutoCompactionMode::Revision => AutoCompaction::Revision(
                r.parse()
                    .map_err(|_| anyhow::anyhow!("invalid auto-compaction-retention {r:?}"))?,
            ),
            AutoCompactionMode::Periodic => AutoCompaction::Periodic(match r.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => parse_duration(r).map_err(|e| anyhow::anyhow!(e))?,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_given_twice_takes_the_last_value_as_go_does() {
        let c = Config::parse_from([
            "strata",
            "--client-cert-auth",
            "--name",
            "a",
            "--client-cert-auth",
            "--name",
            "b",
        ]);
        assert!(c.client_cert_auth);
        assert_eq!(c.name, "b");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn defaults_match_etcd() {
        let c = Config::parse_from(["strata"]);
        assert_eq!(c.data_dir(), std::path::PathBuf::from("default.strata"));
        assert_eq!(c.min_lease_ttl(), 2);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.quota(), Some(2 << 30));
        let l = c.client_listens().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].addr.as_str(), l[0].plain, l[0].tls),
            ("127.0.0.1:2379", true, false)
        );
        c.validate().unwrap();
    }
}
