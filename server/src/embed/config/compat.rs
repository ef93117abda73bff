//! etcd flags that Strata accepts so that existing unit files and
//! manifests start it unchanged, but that cannot apply here (etcd's v2
//! API, its proxy, pprof, bbolt's own knobs). Each given one is named once at start-up with why it is
//! ignored. Flags Strata implements live in [`super::Config`]; this file
//! holds only the ones it does not.
//!
//! A boolean flag may be given bare (`--enable-v2`) or with a value
//! (`--enable-v2=false`), as Go's flag package allows.

use clap::Args;

/// Declares the accepted-and-ignored flags: field, flag, env, why.
macro_rules! ignored_flags {
    ($( $field:ident, $flag:literal, $env:literal, $why:literal; )*) => {
        #[derive(Args, Debug, Clone, Default)]
        pub struct Compat {
            $(
                #[arg(long = $flag, env = $env, hide = true, num_args = 0..=1,
                      default_missing_value = "true")]
                pub $field: Option<String>,
            )*
        }

        impl Compat {
            /// One line per flag given: the flag and why it has no effect.
            pub fn warnings(&self) -> Vec<String> {
                let mut out = Vec::new();
                $(
                    if let Some(v) = &self.$field {
                        out.push(format!(
                            "--{}={} is accepted and ignored: {}",
                            $flag, v, $why
                        ));
                    }
                )*
                out
            }
        }
    };
}

ignored_flags! {
    enable_v2, "enable-v2", "ETCD_ENABLE_V2", "the v2 API is not served (etcd 3.6 removes it too)";
    experimental_enable_v2v3, "experimental-enable-v2v3", "ETCD_EXPERIMENTAL_ENABLE_V2V3", "the v2 API is not served";
    enable_pprof, "enable-pprof", "ETCD_ENABLE_PPROF", "Go's pprof does not exist here; use perf on the process";
    proxy, "proxy", "ETCD_PROXY", "the v2 proxy is not part of Strata";
    proxy_dial_timeout, "proxy-dial-timeout", "ETCD_PROXY_DIAL_TIMEOUT", "the v2 proxy is not part of Strata";
    proxy_failure_wait, "proxy-failure-wait", "ETCD_PROXY_FAILURE_WAIT", "the v2 proxy is not part of Strata";
    proxy_read_timeout, "proxy-read-timeout", "ETCD_PROXY_READ_TIMEOUT", "the v2 proxy is not part of Strata";
    proxy_refresh_interval, "proxy-refresh-interval", "ETCD_PROXY_REFRESH_INTERVAL", "the v2 proxy is not part of Strata";
    proxy_write_timeout, "proxy-write-timeout", "ETCD_PROXY_WRITE_TIMEOUT", "the v2 proxy is not part of Strata";
    discovery_fallback, "discovery-fallback", "ETCD_DISCOVERY_FALLBACK", "discovery is not supported (use --initial-cluster)";
    discovery_proxy, "discovery-proxy", "ETCD_DISCOVERY_PROXY", "discovery is not supported (use --initial-cluster)";
    discovery_srv_name, "discovery-srv-name", "ETCD_DISCOVERY_SRV_NAME", "discovery is not supported (use --initial-cluster)";
    experimental_backend_bbolt_freelist_type, "experimental-backend-bbolt-freelist-type", "ETCD_EXPERIMENTAL_BACKEND_BBOLT_FREELIST_TYPE", "a bbolt setting; Strata's B+tree keeps its own freelist";
    experimental_compaction_batch_limit, "experimental-compaction-batch-limit", "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT", "compaction deletes in batches of 1,000 (etcd's default)";
    experimental_enable_lease_checkpoint, "experimental-enable-lease-checkpoint", "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", "lease checkpoints are always on (see --experimental-lease-checkpoint-interval)";
    experimental_enable_lease_checkpoint_persist, "experimental-enable-lease-checkpoint-persist", "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST", "lease checkpoints are always persisted";
    experimental_peer_skip_client_san_verification, "experimental-peer-skip-client-san-verification", "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION", "peer client certificates are checked against the trusted CA and --peer-cert-allowed-cn/-hostname only";
    experimental_warning_unary_request_duration, "experimental-warning-unary-request-duration", "ETCD_EXPERIMENTAL_WARNING_UNARY_REQUEST_DURATION", "slow requests are not logged yet";
    experimental_memory_mlock, "experimental-memory-mlock", "ETCD_EXPERIMENTAL_MEMORY_MLOCK", "the db is not locked in memory";
    experimental_txn_mode_write_with_shared_buffer, "experimental-txn-mode-write-with-shared-buffer", "ETCD_EXPERIMENTAL_TXN_MODE_WRITE_WITH_SHARED_BUFFER", "a bbolt buffer setting with no counterpart here";
    experimental_bootstrap_defrag_threshold_megabytes, "experimental-bootstrap-defrag-threshold-megabytes", "ETCD_EXPERIMENTAL_BOOTSTRAP_DEFRAG_THRESHOLD_MEGABYTES", "use strata-util defrag --data-dir on a stopped member";
    experimental_downgrade_check_time, "experimental-downgrade-check-time", "ETCD_EXPERIMENTAL_DOWNGRADE_CHECK_TIME", "downgrades are not supported";
    experimental_wait_cluster_ready_timeout, "experimental-wait-cluster-ready-timeout", "ETCD_EXPERIMENTAL_WAIT_CLUSTER_READY_TIMEOUT", "a member serves once a leader is known, however long that takes";
    experimental_enable_distributed_tracing, "experimental-enable-distributed-tracing", "ETCD_EXPERIMENTAL_ENABLE_DISTRIBUTED_TRACING", "OpenTelemetry tracing is not exported";
    experimental_distributed_tracing_address, "experimental-distributed-tracing-address", "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_ADDRESS", "OpenTelemetry tracing is not exported";
    experimental_distributed_tracing_service_name, "experimental-distributed-tracing-service-name", "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SERVICE_NAME", "OpenTelemetry tracing is not exported";
    experimental_distributed_tracing_instance_id, "experimental-distributed-tracing-instance-id", "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_INSTANCE_ID", "OpenTelemetry tracing is not exported";
    experimental_distributed_tracing_sampling_rate, "experimental-distributed-tracing-sampling-rate", "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SAMPLING_RATE", "OpenTelemetry tracing is not exported";
    experimental_compact_hash_check_enabled, "experimental-compact-hash-check-enabled", "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_ENABLED", "the leader's periodic check compares whole-state hashes (--corrupt-check-time)";
    experimental_compact_hash_check_time, "experimental-compact-hash-check-time", "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_TIME", "the leader's periodic check compares whole-state hashes (--corrupt-check-time)";
    experimental_stop_grpc_service_on_defrag, "experimental-stop-grpc-service-on-defrag", "ETCD_EXPERIMENTAL_STOP_GRPC_SERVICE_ON_DEFRAG", "defragmentation does not stop the gRPC service here";
    max_snapshots, "max-snapshots", "ETCD_MAX_SNAPSHOTS", "snapshot files are removed once installed or superseded";
    max_wals, "max-wals", "ETCD_MAX_WALS", "WAL segments are released at each snapshot marker";
    log_package_levels, "log-package-levels", "ETCD_LOG_PACKAGE_LEVELS", "capnslog package levels; use --log-level";
    initial_election_tick_advance, "initial-election-tick-advance", "ETCD_INITIAL_ELECTION_TICK_ADVANCE", "a member waits a randomized election timeout before its first campaign";
    grpc_keepalive_min_time, "grpc-keepalive-min-time", "ETCD_GRPC_KEEPALIVE_MIN_TIME", "clients' keepalive pings are not rate-limited";
    socket_reuse_port, "socket-reuse-port", "ETCD_SOCKET_REUSE_PORT", "listeners do not set SO_REUSEPORT";
    socket_reuse_address, "socket-reuse-address", "ETCD_SOCKET_REUSE_ADDRESS", "listeners do not set SO_REUSEADDR";
    v2_deprecation, "v2-deprecation", "ETCD_V2_DEPRECATION", "the v2 store does not exist here";
    enable_log_rotation, "enable-log-rotation", "ETCD_ENABLE_LOG_ROTATION", "rotate logs with the service manager or logrotate";
    log_rotation_config_json, "log-rotation-config-json", "ETCD_LOG_ROTATION_CONFIG_JSON", "rotate logs with the service manager or logrotate";
    // etcd 3.6's names for the flags above that lost `experimental-`
    // (renamed.rs warns for the old spellings).
    experimental_compaction_sleep_interval, "experimental-compaction-sleep-interval", "ETCD_EXPERIMENTAL_COMPACTION_SLEEP_INTERVAL", "compaction does not pause between batches";
    compact_hash_check_time, "compact-hash-check-time", "ETCD_COMPACT_HASH_CHECK_TIME", "the leader's periodic check compares whole-state hashes (--corrupt-check-time)";
    compaction_batch_limit, "compaction-batch-limit", "ETCD_COMPACTION_BATCH_LIMIT", "compaction deletes in batches of 1,000 (etcd's default)";
    compaction_sleep_interval, "compaction-sleep-interval", "ETCD_COMPACTION_SLEEP_INTERVAL", "compaction does not pause between batches";
    downgrade_check_time, "downgrade-check-time", "ETCD_DOWNGRADE_CHECK_TIME", "downgrades are not supported";
    warning_unary_request_duration, "warning-unary-request-duration", "ETCD_WARNING_UNARY_REQUEST_DURATION", "slow requests are not logged yet";
    memory_mlock, "memory-mlock", "ETCD_MEMORY_MLOCK", "the db is not locked in memory";
    bootstrap_defrag_threshold_megabytes, "bootstrap-defrag-threshold-megabytes", "ETCD_BOOTSTRAP_DEFRAG_THRESHOLD_MEGABYTES", "use strata-util defrag --data-dir on a stopped member";
    enable_distributed_tracing, "enable-distributed-tracing", "ETCD_ENABLE_DISTRIBUTED_TRACING", "OpenTelemetry tracing is not exported";
    distributed_tracing_address, "distributed-tracing-address", "ETCD_DISTRIBUTED_TRACING_ADDRESS", "OpenTelemetry tracing is not exported";
    distributed_tracing_service_name, "distributed-tracing-service-name", "ETCD_DISTRIBUTED_TRACING_SERVICE_NAME", "OpenTelemetry tracing is not exported";
    distributed_tracing_instance_id, "distributed-tracing-instance-id", "ETCD_DISTRIBUTED_TRACING_INSTANCE_ID", "OpenTelemetry tracing is not exported";
    distributed_tracing_sampling_rate, "distributed-tracing-sampling-rate", "ETCD_DISTRIBUTED_TRACING_SAMPLING_RATE", "OpenTelemetry tracing is not exported";
    backend_bbolt_freelist_type, "backend-bbolt-freelist-type", "ETCD_BACKEND_BBOLT_FREELIST_TYPE", "a bbolt setting; Strata's B+tree keeps its own freelist";
    raft_read_timeout, "raft-read-timeout", "ETCD_RAFT_READ_TIMEOUT", "peer streams keep their own keepalive and timeouts";
    raft_write_timeout, "raft-write-timeout", "ETCD_RAFT_WRITE_TIMEOUT", "peer streams keep their own keepalive and timeouts";
    client_cert_file, "client-cert-file", "ETCD_CLIENT_CERT_FILE", "the JSON gateway calls the services in-process, with no client certificate";
    client_key_file, "client-key-file", "ETCD_CLIENT_KEY_FILE", "the JSON gateway calls the services in-process, with no client certificate";
    peer_client_cert_file, "peer-client-cert-file", "ETCD_PEER_CLIENT_CERT_FILE", "peers are dialed with --peer-cert-file and --peer-key-file";
    peer_client_key_file, "peer-client-key-file", "ETCD_PEER_CLIENT_KEY_FILE", "peers are dialed with --peer-cert-file and --peer-key-file";
    peer_skip_client_san_verification, "peer-skip-client-san-verification", "ETCD_PEER_SKIP_CLIENT_SAN_VERIFICATION", "peer client certificates are checked against the trusted CA and --peer-cert-allowed-cn/-hostname only";
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: super::Compat,
    }

    #[test]
    fn given_flags_are_named_once_each() {
        let t = T::parse_from(["t", "--enable-v2", "--max-wals=5", "--proxy", "off"]);
        let w = t.c.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("--enable-v2=true is accepted and ignored"));
        assert!(w.iter().any(|l| l.starts_with("--proxy=off")));
        assert!(T::parse_from(["t"]).c.warnings().is_empty());
    }
}
