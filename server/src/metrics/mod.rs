//! `/metrics`: Prometheus text with etcd's metric names, labels and
//! histogram buckets, so etcd's dashboards and alerts read a Strata
//! member unchanged.
//!
//! One registry per process (as Go's default one): counters and
//! histograms are updated where things happen (raft leader changes, WAL
//! fsyncs, backend commits, peer bytes, gRPC calls); gauges that mirror
//! state (leader, indexes, db sizes, keys, the process's own figures from
//! /proc) are read when scraped.

pub mod grpc;
pub mod process;

use std::sync::OnceLock;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What the state gauges show at a scrape (read by the caller from the
/// member: this module sits below the server).
#[derive(Debug, Clone, Copy, Default)]
pub struct State {
    pub leader: u64,
    pub member: u64,
    pub committed: u64,
    pub applied: u64,
    pub pending: usize,
    pub db_size: i64,
    pub db_in_use: i64,
    pub keys: usize,
}

pub struct Metrics {
    registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub db_total_size: IntGauge,
    pub db_in_use: IntGauge,
    pub keys_total: IntGauge,
    pub peer_sent: IntCounterVec,
    pub peer_received: IntCounterVec,
    pub peer_rtt: HistogramVec,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    /// etcd 3.6's `etcd_server_feature_enabled{name, stage}`.
    pub feature_enabled: IntGaugeVec,
    process: process::ProcessMetrics,
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

/// etcd's disk histograms: 1 ms doubling 14 times (to about 8 s).
fn disk_histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let buckets = exponential_buckets(0.001, 2.0, 14).unwrap_or_default();
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(h.clone()));
    h
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let peer_rtt = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 14).unwrap_or_default()),
            &["To"],
        )
        .unwrap_or_else(|e| panic!("peer rtt: {e}"));
        let _ = r.register(Box::new(peer_rtt.clone()));
        let process = process::ProcessMetrics::new();
        process.register(&r);
        for (name, help, label, v) in [
            (
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                "server_version",
                crate::version::ETCD_VERSION,
            ),
            (
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                "cluster_version",
                crate::version::CLUSTER_VERSION,
            ),
        ] {
            let g = IntGauge::with_opts(Opts::new(name, help).const_label(label, v))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            g.set(1);
            let _ = r.register(Box::new(g));
        }
        Metrics {
            has_leader: gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes: counter(
                &r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed: gauge(
                &r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                &r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: gauge(
                &r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            wal_fsync: disk_histogram(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit: disk_histogram(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            db_total_size: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys_total: gauge(
                &r,
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            ),
            peer_sent: counter_vec(
                &r,
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            peer_received: counter_vec(
                &r,
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            peer_rtt,
            grpc_started: counter_vec(
                &r,
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_type", "grpc_service", "grpc_method"],
            ),
            grpc_handled: counter_vec(
                &r,
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            ),
            feature_enabled: {
                let name = "etcd_server_feature_enabled";
                let g = IntGaugeVec::new(
                    Opts::new(
                        name,
                        "Whether or not a feature is enabled. 1 is enabled, 0 is not.",
                    ),
                    &["name", "stage"],
                )
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
                let _ = r.register(Box::new(g.clone()));
                g
            },
            process,
            registry: r,
        }
    }

    /// Sets the state gauges from `st`, then renders every metric.
    pub fn render(&self, st: State) -> String {
        self.has_leader.set(i64::from(st.leader != 0));
        self.is_leader
            .set(i64::from(st.leader != 0 && st.leader == st.member));
        self.proposals_committed.set(st.committed as i64);
        self.proposals_applied.set(st.applied as i64);
        self.proposals_pending.set(st.pending as i64);
        self.db_total_size.set(st.db_size);
        self.db_in_use.set(st.db_in_use);
        self.keys_total.set(st.keys as i64);
        self.process.update();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// A member id as etcd labels peers: 16 hex digits.
pub fn peer_label(id: u64) -> String {
    format!("{id:016x}")
}
