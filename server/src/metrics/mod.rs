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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

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
    pub learner: bool,
    pub revision: i64,
    pub compact_revision: i64,
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
    /// `grpc_server_handling_seconds{grpc_type, grpc_service,
    /// grpc_method}`: registered by `--metrics=extensive` only
    /// ([`Metrics::enable_extensive`]), as etcd's interceptor.
    pub grpc_handling: HistogramVec,
    extensive: AtomicBool,
    /// Bytes of gRPC messages from and to clients (the message bytes with
    /// gRPC's 5-byte length prefix of each).
    pub client_grpc_received: IntCounter,
    pub client_grpc_sent: IntCounter,
    /// Raft messages to a peer that were dropped or whose stream failed.
    pub peer_sent_failures: IntCounterVec,
    /// 1 for each member of the membership (Remote), 0 for one removed.
    pub known_peers: IntGaugeVec,
    /// The effective `--quota-backend-bytes`.
    pub quota_backend_bytes: IntGauge,
    /// 1 while a defragmentation runs on this member.
    pub defrag_inflight: IntGauge,
    /// Time of each read of a range from the store (etcd's txn.Range), by
    /// success.
    pub range_duration: HistogramVec,
    /// A request's whole time on this member, by etcd's request type
    /// (`Range`, `ReadonlyTxn`, `Put`, `Txn`, `LeaseGrant`, …) and success.
    pub request_duration: HistogramVec,
    /// `etcd_debugging_server_alarms{server_id, alarm_type}`: active
    /// alarms by member.
    pub alarms: IntGaugeVec,
    alarms_seen: std::sync::Mutex<std::collections::BTreeSet<(u64, String)>>,
    /// `etcd_cluster_version{cluster_version}`: 1 for the version now (a
    /// downgrade job's target while one is enabled).
    cluster_version: IntGaugeVec,
    /// etcd 3.7's watch send-loop histograms: one response of events, the
    /// same per event, a control response (created, canceled), a progress
    /// notification.
    pub watch_send_events: Histogram,
    pub watch_send_per_event: Histogram,
    pub watch_send_control: Histogram,
    pub watch_send_progress: Histogram,
    /// Each entry's apply time by op and success, and the applies that
    /// took longer than `--warning-apply-duration`.
    apply_duration: HistogramVec,
    apply_series: ByType,
    request_series: ByType,
    range_series: [OnceLock<Histogram>; 2],
    slow_applies: IntCounter,
    /// etcd's mvcc counters (metrics_txn.go): ranges, puts, deletes seen
    /// by this member, transactions of more than one operation, and the
    /// bytes of the puts' keys and values.
    mvcc_range: IntCounter,
    mvcc_put: IntCounter,
    mvcc_delete: IntCounter,
    mvcc_txn: IntCounter,
    mvcc_put_bytes: IntGauge,
    mvcc_current_revision: IntGauge,
    mvcc_compact_revision: IntGauge,
    /// Open watch streams and their watchers.
    pub watch_streams: IntGauge,
    pub watchers: IntGauge,
    is_learner: IntGauge,
    server_id: IntGaugeVec,
    /// `/health` answers, healthy or not.
    health_success: IntCounter,
    health_failures: IntCounter,
    /// The probes' checks: the last result by (type, name), and counts by
    /// status.
    healthcheck: IntGaugeVec,
    healthchecks_total: IntCounterVec,
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

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

/// A histogram vector with `buckets`; registered unless `register` is
/// false (the caller registers it later).
fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
    register: bool,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    if register {
        let _ = r.register(Box::new(h.clone()));
    }
    h
}

/// A histogram with `buckets`.
fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(h.clone()));
    h
}

/// etcd's names of request types (v3_server.go getRequestType) and
/// `ReadonlyTxn`: the labels whose series are looked up once and kept.
const REQUEST_TYPES: [&str; 24] = [
    "Range",
    "ReadonlyTxn",
    "Put",
    "DeleteRange",
    "Txn",
    "Compaction",
    "LeaseGrant",
    "LeaseRevoke",
    "LeaseCheckpoint",
    "Alarm",
    "Authenticate",
    "AuthEnable",
    "AuthDisable",
    "AuthUserAdd",
    "AuthUserDelete",
    "AuthUserChangePassword",
    "AuthUserGrantRole",
    "AuthUserRevokeRole",
    "AuthRoleAdd",
    "AuthRoleGrantPermission",
    "AuthRoleRevokePermission",
    "AuthRoleDelete",
    "ClusterMemberAttrSet",
    "DowngradeInfoSet",
];

fn success_label(success: bool) -> &'static str {
    if success {
        "true"
    } else {
        "false"
    }
}

/// A histogram vector's series by request type and success, each looked
/// up by label once (a lookup hashes every label; these are observed on
/// every request and every applied entry). A type not in
/// [`REQUEST_TYPES`] is looked up by label each time.
#[derive(Default)]
struct ByType {
    cells: [[OnceLock<Histogram>; 2]; REQUEST_TYPES.len()],
}

impl ByType {
    /// The series of `vec` with labels `first`, then `typ` and `success`.
    fn get(&self, vec: &HistogramVec, first: &[&str], typ: &str, success: bool) -> Histogram {
        let labels = |typ: &str| {
            let mut l = first.to_vec();
            l.extend([typ, success_label(success)]);
            vec.with_label_values(&l)
        };
        match REQUEST_TYPES.iter().position(|t| *t == typ) {
            Some(i) => self.cells[i][usize::from(success)]
                .get_or_init(|| labels(typ))
                .clone(),
            None => labels(typ),
        }
    }
}

/// `start` doubled `count - 1` times.
fn doubling(start: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, 2.0, count).unwrap_or_default()
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
        let g = IntGauge::with_opts(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            )
            .const_label("server_version", crate::version::ETCD_VERSION),
        )
        .unwrap_or_else(|e| panic!("metric etcd_server_version: {e}"));
        g.set(1);
        let _ = r.register(Box::new(g));
        let cluster_version = gauge_vec(
            &r,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            &["cluster_version"],
        );
        cluster_version
            .with_label_values(&[crate::version::CLUSTER_VERSION])
            .set(1);
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
            grpc_handling: histogram_vec(
                &r,
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                prometheus::DEFAULT_BUCKETS.to_vec(),
                &["grpc_type", "grpc_service", "grpc_method"],
                false,
            ),
            extensive: AtomicBool::new(false),
            client_grpc_received: counter(
                &r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            client_grpc_sent: counter(
                &r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            peer_sent_failures: counter_vec(
                &r,
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                &["To"],
            ),
            known_peers: gauge_vec(
                &r,
                "etcd_network_known_peers",
                "The current number of known peers.",
                &["Local", "Remote"],
            ),
            quota_backend_bytes: gauge(
                &r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            defrag_inflight: gauge(
                &r,
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            ),
            range_duration: histogram_vec(
                &r,
                "etcd_server_range_duration_seconds",
                "The latency distributions of txn.Range",
                doubling(0.0001, 20),
                &["success"],
                true,
            ),
            request_duration: histogram_vec(
                &r,
                "etcd_server_request_duration_seconds",
                "Response latency distribution in seconds for each type.",
                doubling(0.001, 14),
                &["type", "success"],
                true,
            ),
            alarms: gauge_vec(
                &r,
                "etcd_debugging_server_alarms",
                "Alarms for every member in cluster. 1 for 'server_id' label with current ID. 2 for 'alarm_type' label with type of this alarm",
                &["server_id", "alarm_type"],
            ),
            alarms_seen: Default::default(),
            cluster_version,
            watch_send_events: histogram(
                &r,
                "etcd_debugging_server_watch_send_loop_watch_stream_duration_seconds",
                "The total duration in seconds of running through the send loop watch stream response all events.",
                doubling(0.001, 14),
            ),
            watch_send_per_event: histogram(
                &r,
                "etcd_debugging_server_watch_send_loop_watch_stream_duration_per_event_seconds",
                "The average duration in seconds of running through the send loop watch stream response, per event.",
                doubling(0.001, 14),
            ),
            watch_send_control: histogram(
                &r,
                "etcd_debugging_server_watch_send_loop_control_stream_duration_seconds",
                "The total duration in seconds of running through the send loop control stream response.",
                doubling(0.001, 14),
            ),
            watch_send_progress: histogram(
                &r,
                "etcd_debugging_server_watch_send_loop_progress_duration_seconds",
                "The total duration in seconds of running through the progress loop control stream response.",
                doubling(0.001, 14),
            ),
            apply_duration: histogram_vec(
                &r,
                "etcd_server_apply_duration_seconds",
                "The latency distributions of v2 apply called by backend.",
                doubling(0.0001, 20),
                &["version", "op", "success"],
                true,
            ),
            apply_series: ByType::default(),
            request_series: ByType::default(),
            range_series: Default::default(),
            slow_applies: counter(
                &r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            mvcc_range: counter(
                &r,
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            mvcc_put: counter(
                &r,
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            mvcc_delete: counter(
                &r,
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            mvcc_txn: counter(
                &r,
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            mvcc_put_bytes: gauge(
                &r,
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            ),
            mvcc_current_revision: gauge(
                &r,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            mvcc_compact_revision: gauge(
                &r,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            watch_streams: gauge(
                &r,
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            watchers: gauge(
                &r,
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            is_learner: gauge(
                &r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            server_id: gauge_vec(
                &r,
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                &["server_id"],
            ),
            health_success: counter(
                &r,
                "etcd_server_health_success",
                "The total number of successful health checks",
            ),
            health_failures: counter(
                &r,
                "etcd_server_health_failures",
                "The total number of failed health checks",
            ),
            healthcheck: gauge_vec(
                &r,
                "etcd_server_healthcheck",
                "The result of each kind of healthcheck.",
                &["type", "name"],
            ),
            healthchecks_total: counter_vec(
                &r,
                "etcd_server_healthchecks_total",
                "The total number of each kind of healthcheck.",
                &["type", "name", "status"],
            ),
            process,
            registry: r,
        }
    }

    /// One transaction's operations, as etcd's metricsTxnWrite counts them
    /// when it ends: a transaction of more than one counts as a txn.
    pub fn mvcc_ops(&self, ranges: u64, puts: u64, deletes: u64, put_bytes: u64) {
        if ranges + puts + deletes > 1 {
            self.mvcc_txn.inc();
        }
        self.mvcc_range.inc_by(ranges);
        self.mvcc_put.inc_by(puts);
        self.mvcc_delete.inc_by(deletes);
        self.mvcc_put_bytes.add(put_bytes as i64);
    }

    /// [`Metrics::mvcc_ops`] of a transaction that ran: the operations of
    /// the branch it took, nested transactions' included.
    pub fn mvcc_txn(
        &self,
        req: &strata_engine::mvcc::TxnRequest,
        resp: &strata_engine::mvcc::TxnResponse,
    ) {
        fn walk(
            req: &strata_engine::mvcc::TxnRequest,
            resp: &strata_engine::mvcc::TxnResponse,
            c: &mut [u64; 4],
        ) {
            use strata_engine::mvcc::{RequestOp as Q, ResponseOp as A};
            let branch = if resp.succeeded {
                &req.success
            } else {
                &req.failure
            };
            for (q, a) in branch.iter().zip(&resp.responses) {
                match (q, a) {
                    (_, A::Range(_)) => c[0] += 1,
                    (Q::Put(p), A::Put(_)) => {
                        c[1] += 1;
                        c[3] += (p.key.len() + p.value.len()) as u64;
                    }
                    (_, A::Put(_)) => c[1] += 1,
                    (_, A::DeleteRange(_)) => c[2] += 1,
                    (Q::Txn(inner), A::Txn(r)) => walk(inner, r, c),
                    (_, A::Txn(_)) => {}
                }
            }
        }
        let mut c = [0u64; 4];
        walk(req, resp, &mut c);
        self.mvcc_ops(c[0], c[1], c[2], c[3]);
    }

    /// One entry applied (etcd's ApplySecObserve, version "v3").
    pub fn observe_apply(&self, op: &str, success: bool, took: Duration) {
        self.apply_series
            .get(&self.apply_duration, &["v3"], op, success)
            .observe(took.as_secs_f64());
    }

    /// One apply past `--warning-apply-duration`.
    pub fn slow_apply(&self) {
        self.slow_applies.inc();
    }

    /// One `/health` answer.
    pub fn health(&self, healthy: bool) {
        if healthy {
            self.health_success.inc();
        } else {
            self.health_failures.inc();
        }
    }

    /// One check of a probe (`livez`, `readyz`), as etcd's recordMetrics.
    pub fn health_check(&self, kind: &str, name: &str, passed: bool) {
        self.healthcheck
            .with_label_values(&[kind, name])
            .set(i64::from(passed));
        let status = if passed { "success" } else { "error" };
        self.healthchecks_total
            .with_label_values(&[kind, name, status])
            .inc();
    }

    /// `--metrics=extensive`: gRPC handling-time histograms from now on.
    pub fn enable_extensive(&self) {
        if !self.extensive.swap(true, Ordering::AcqRel) {
            let _ = self.registry.register(Box::new(self.grpc_handling.clone()));
        }
    }

    /// Whether `--metrics=extensive` is on.
    pub fn extensive(&self) -> bool {
        self.extensive.load(Ordering::Acquire)
    }

    /// `etcd_network_known_peers`: 1 for each member, 0 for each removed
    /// one, labelled with this member's id and the peer's (etcd's
    /// membership metric; the member itself is among them, as in etcd).
    pub fn set_known_peers(&self, local: u64, members: &[u64], removed: &[u64]) {
        let local = peer_label(local);
        for (ids, v) in [(members, 1), (removed, 0)] {
            for id in ids {
                self.known_peers
                    .with_label_values(&[&local, &peer_label(*id)])
                    .set(v);
            }
        }
    }

    /// `etcd_debugging_server_alarms`: 1 for each active (member, alarm
    /// type), 0 for one seen active before and cleared since (etcd's
    /// gauge goes up on activation and down on deactivation).
    pub fn set_alarms(&self, active: &[(u64, &str)]) {
        let mut seen = self.alarms_seen.lock().unwrap_or_else(|e| e.into_inner());
        for (member, typ) in seen.iter() {
            if !active.iter().any(|(m, t)| m == member && t == typ) {
                self.alarms
                    .with_label_values(&[&peer_label(*member), typ])
                    .set(0);
            }
        }
        for &(member, typ) in active {
            self.alarms
                .with_label_values(&[&peer_label(member), typ])
                .set(1);
            seen.insert((member, typ.to_string()));
        }
    }

    /// Counts `n` raft messages to peer `to` as not sent
    /// (`etcd_network_peer_sent_failures_total`).
    pub fn peer_send_failed(&self, to: u64, n: u64) {
        if n > 0 {
            self.peer_sent_failures
                .with_label_values(&[&peer_label(to)])
                .inc_by(n);
        }
    }

    /// Shows `v` as the cluster version (its series alone).
    pub fn set_cluster_version(&self, v: &str) {
        self.cluster_version.reset();
        self.cluster_version.with_label_values(&[v]).set(1);
    }

    /// One request's time by etcd's type name and outcome.
    pub fn observe_request(&self, typ: &str, success: bool, took: Duration) {
        self.request_series
            .get(&self.request_duration, &[], typ, success)
            .observe(took.as_secs_f64());
    }

    /// One read of a range from the store.
    pub fn observe_range(&self, success: bool, took: Duration) {
        self.range_series[usize::from(success)]
            .get_or_init(|| {
                self.range_duration
                    .with_label_values(&[success_label(success)])
            })
            .observe(took.as_secs_f64());
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
        self.mvcc_current_revision.set(st.revision);
        self.mvcc_compact_revision.set(st.compact_revision);
        self.is_learner.set(i64::from(st.learner));
        if st.member != 0 {
            self.server_id.reset();
            self.server_id
                .with_label_values(&[&peer_label(st.member)])
                .set(1);
        }
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

/// A member id as etcd labels peers (types.ID's String: hex, no leading
/// zeros).
pub fn peer_label(id: u64) -> String {
    format!("{id:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(m: &Metrics, name: &str) -> Vec<String> {
        m.render(State::default())
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn alarms_show_1_while_active_and_0_once_cleared() {
        let m = Metrics::new();
        m.set_alarms(&[(0xabc, "NOSPACE")]);
        assert_eq!(
            series(&m, "etcd_debugging_server_alarms"),
            ["etcd_debugging_server_alarms{alarm_type=\"NOSPACE\",server_id=\"abc\"} 1"]
        );
        m.set_alarms(&[]);
        assert_eq!(
            series(&m, "etcd_debugging_server_alarms"),
            ["etcd_debugging_server_alarms{alarm_type=\"NOSPACE\",server_id=\"abc\"} 0"]
        );
    }

    #[test]
    fn known_peers_and_peer_labels_are_hex_without_leading_zeros() {
        let m = Metrics::new();
        m.set_known_peers(0x0f, &[0x0f, 0x1234], &[0x99]);
        let mut got = series(&m, "etcd_network_known_peers");
        got.sort();
        assert_eq!(
            got,
            [
                "etcd_network_known_peers{Local=\"f\",Remote=\"1234\"} 1",
                "etcd_network_known_peers{Local=\"f\",Remote=\"99\"} 0",
                "etcd_network_known_peers{Local=\"f\",Remote=\"f\"} 1",
            ]
        );
    }

    #[test]
    fn the_handling_histogram_is_exported_only_when_extensive() {
        let m = Metrics::new();
        m.grpc_handling
            .with_label_values(&["unary", "etcdserverpb.KV", "Put"])
            .observe(0.001);
        assert!(series(&m, "grpc_server_handling_seconds").is_empty());
        m.enable_extensive();
        assert!(!series(&m, "grpc_server_handling_seconds_bucket").is_empty());
    }
}
