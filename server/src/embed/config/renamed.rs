//! Flags etcd 3.6 renamed by dropping `experimental-` (etcd 3.7 knows only
//! the new names). Strata accepts both spellings, so 3.4/3.5 unit files
//! keep working beside 3.6/3.7 ones, and warns at start for each old
//! spelling used (on the command line, in the config file, or as an
//! `ETCD_EXPERIMENTAL_*` variable) with etcd 3.6's words.
//!
//! Invariant: both spellings of every pair parse: `Config` declares the
//! new name with the old one as its alias (both set one value), `Compat`
//! an ignored entry for each; a test below holds the lists together.

/// (old spelling, new spelling), from etcd v3.6's deprecated-flags table.
pub const RENAMED: &[(&str, &str)] = &[
    (
        "experimental-bootstrap-defrag-threshold-megabytes",
        "bootstrap-defrag-threshold-megabytes",
    ),
    (
        "experimental-compact-hash-check-time",
        "compact-hash-check-time",
    ),
    (
        "experimental-compaction-batch-limit",
        "compaction-batch-limit",
    ),
    (
        "experimental-compaction-sleep-interval",
        "compaction-sleep-interval",
    ),
    ("experimental-corrupt-check-time", "corrupt-check-time"),
    (
        "experimental-distributed-tracing-address",
        "distributed-tracing-address",
    ),
    (
        "experimental-distributed-tracing-instance-id",
        "distributed-tracing-instance-id",
    ),
    (
        "experimental-distributed-tracing-sampling-rate",
        "distributed-tracing-sampling-rate",
    ),
    (
        "experimental-distributed-tracing-service-name",
        "distributed-tracing-service-name",
    ),
    ("experimental-downgrade-check-time", "downgrade-check-time"),
    (
        "experimental-enable-distributed-tracing",
        "enable-distributed-tracing",
    ),
    ("experimental-max-learners", "max-learners"),
    ("experimental-memory-mlock", "memory-mlock"),
    (
        "experimental-peer-skip-client-san-verification",
        "peer-skip-client-san-verification",
    ),
    (
        "experimental-snapshot-catchup-entries",
        "snapshot-catchup-entries",
    ),
    (
        "experimental-warning-apply-duration",
        "warning-apply-duration",
    ),
    (
        "experimental-warning-unary-request-duration",
        "warning-unary-request-duration",
    ),
    (
        "experimental-watch-progress-notify-interval",
        "watch-progress-notify-interval",
    ),
];

/// etcd 3.6's warning for an old spelling.
pub fn warning(old: &str, new: &str) -> String {
    format!(
        "--{old} is deprecated in v3.6 and will be decommissioned in v3.7. Use '--{new}' instead."
    )
}

/// The warnings for the old spellings among command-line `args`
/// (`--name`, `--name=value`, `-name`, as Go's flag package reads them).
pub fn in_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for arg in args {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        let name = flag.split('=').next().unwrap_or(flag);
        if let Some((old, new)) = RENAMED.iter().find(|(old, _)| *old == name) {
            let w = warning(old, new);
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// The environment variable of a flag (`ETCD_` and the name in capitals).
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.replace('-', "_").to_uppercase())
}

/// The renamed flags whose old variable (`ETCD_EXPERIMENTAL_...`) is set:
/// (old flag, new flag). The caller moves the value to the new variable,
/// which the flag parser reads, unless that one is set too (the new name
/// wins, as in etcd 3.6), and warns.
pub fn in_env(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, &'static str)> {
    RENAMED
        .iter()
        .filter(|(old, _)| get(&env_name(old)).is_some())
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::config::Config;
    use clap::Parser;

    #[test]
    fn old_spellings_are_named_with_etcds_words() {
        let w = in_args([
            "strata",
            "--experimental-corrupt-check-time=5s",
            "-experimental-max-learners",
            "2",
            "--name",
            "x",
        ]);
        assert_eq!(
            w,
            vec![
                "--experimental-corrupt-check-time is deprecated in v3.6 and will be decommissioned in v3.7. Use '--corrupt-check-time' instead.".to_string(),
                warning("experimental-max-learners", "max-learners"),
            ]
        );
        assert!(in_args(["strata", "--corrupt-check-time=5s"]).is_empty());
        assert_eq!(env_name("max-learners"), "ETCD_MAX_LEARNERS");
        let env = in_env(|k| (k == "ETCD_EXPERIMENTAL_MAX_LEARNERS").then(|| "3".to_string()));
        assert_eq!(env, vec![("experimental-max-learners", "max-learners")]);
    }

    #[test]
    fn both_spellings_set_the_same_value() {
        for (old, new) in RENAMED {
            for name in [old, new] {
                let value = if name.contains("time")
                    || name.contains("interval")
                    || name.contains("duration")
                {
                    "7s"
                } else if name.contains("address") || name.contains("name") || name.contains("id") {
                    "x"
                } else {
                    "7"
                };
                let arg =
                    if name.contains("enable") || name.contains("mlock") || name.contains("skip") {
                        format!("--{name}")
                    } else {
                        format!("--{name}={value}")
                    };
                let parsed = Config::try_parse_from(["strata", &arg]);
                assert!(parsed.is_ok(), "{arg}: {:?}", parsed.err());
            }
        }
        let c = Config::parse_from(["strata", "--experimental-corrupt-check-time=7s"]);
        assert_eq!(c.corrupt_check_time, std::time::Duration::from_secs(7));
        let c = Config::parse_from(["strata", "--experimental-max-learners=3"]);
        assert_eq!(c.max_learners, 3);
        let c = Config::parse_from(["strata", "--experimental-watch-progress-notify-interval=2s"]);
        assert_eq!(
            c.watch_progress_notify_interval,
            std::time::Duration::from_secs(2)
        );
        let c = Config::parse_from(["strata", "--experimental-snapshot-catchup-entries=9"]);
        assert_eq!(c.snapshot_catchup_entries, 9);
    }

    /// Every flag etcd v3.7.1 defines (server/embed/config.go) but the v3
    /// discovery ones (discovery is refused: list members with
    /// --initial-cluster) is accepted, so a 3.7 unit file starts strata.
    #[test]
    fn etcd_3_7_flags_are_accepted() {
        const BARE: &[&str] = &[
            "auto-tls",
            "client-cert-auth",
            "enable-distributed-tracing",
            "enable-grpc-gateway",
            "enable-log-rotation",
            "enable-pprof",
            "force-new-cluster",
            "memory-mlock",
            "peer-auto-tls",
            "peer-client-cert-auth",
            "peer-skip-client-san-verification",
            "pre-vote",
            "socket-reuse-address",
            "socket-reuse-port",
            "strict-reconfig-check",
            "unsafe-no-fsync",
        ];
        const VALUED: &[(&str, &str)] = &[
            ("data-dir", "d"),
            ("wal-dir", "w"),
            ("max-snapshots", "5"),
            ("max-wals", "5"),
            ("name", "n"),
            ("snapshot-count", "10000"),
            ("heartbeat-interval", "100"),
            ("election-timeout", "1000"),
            ("initial-election-tick-advance", "true"),
            ("quota-backend-bytes", "0"),
            ("backend-bbolt-freelist-type", "map"),
            ("backend-batch-interval", "100ms"),
            ("backend-batch-limit", "10000"),
            ("max-txn-ops", "128"),
            ("max-request-bytes", "1572864"),
            ("grpc-keepalive-min-time", "5s"),
            ("grpc-keepalive-interval", "2h"),
            ("grpc-keepalive-timeout", "20s"),
            ("max-concurrent-streams", "100"),
            ("raft-read-timeout", "5s"),
            ("raft-write-timeout", "5s"),
            ("initial-cluster", "n=http://127.0.0.1:2380"),
            ("initial-cluster-token", "t"),
            ("cert-file", "c"),
            ("key-file", "k"),
            ("client-cert-file", "c"),
            ("client-key-file", "k"),
            ("client-crl-file", "c"),
            ("client-cert-allowed-hostname", "h"),
            ("trusted-ca-file", "c"),
            ("peer-cert-file", "c"),
            ("peer-key-file", "k"),
            ("peer-client-cert-file", "c"),
            ("peer-client-key-file", "k"),
            ("peer-trusted-ca-file", "c"),
            ("self-signed-cert-validity", "1"),
            ("peer-crl-file", "c"),
            ("peer-cert-allowed-cn", "c"),
            ("peer-cert-allowed-hostname", "h"),
            ("cipher-suites", "TLS_AES_128_GCM_SHA256"),
            ("tls-min-version", "TLS1.2"),
            ("tls-max-version", "TLS1.3"),
            ("host-whitelist", "*"),
            ("logger", "zap"),
            ("log-outputs", "stderr"),
            ("log-level", "info"),
            ("log-format", "json"),
            ("log-rotation-config-json", "{}"),
            ("auto-compaction-retention", "1"),
            ("auto-compaction-mode", "periodic"),
            ("metrics", "basic"),
            ("distributed-tracing-address", "a"),
            ("distributed-tracing-service-name", "s"),
            ("distributed-tracing-instance-id", "i"),
            ("distributed-tracing-sampling-rate", "0"),
            ("auth-token", "simple"),
            ("bcrypt-cost", "10"),
            ("auth-token-ttl", "300"),
            ("corrupt-check-time", "0s"),
            ("compact-hash-check-time", "1m"),
            ("compaction-batch-limit", "1000"),
            ("compaction-sleep-interval", "10ms"),
            ("watch-progress-notify-interval", "10m"),
            ("downgrade-check-time", "5s"),
            ("warning-apply-duration", "100ms"),
            ("warning-unary-request-duration", "300ms"),
            ("bootstrap-defrag-threshold-megabytes", "0"),
            ("max-learners", "1"),
            ("snapshot-catchup-entries", "5000"),
            ("feature-gates", "InitialCorruptCheck=true"),
        ];
        for flag in BARE {
            let r = Config::try_parse_from(["strata", &format!("--{flag}")]);
            assert!(r.is_ok(), "--{flag}: {:?}", r.err());
        }
        for (flag, v) in VALUED {
            let r = Config::try_parse_from(["strata", &format!("--{flag}={v}")]);
            assert!(r.is_ok(), "--{flag}={v}: {:?}", r.err());
        }
        let c = Config::parse_from(["strata", "--feature-gates=InitialCorruptCheck=true"]);
        assert!(c.feature_gates.enabled("InitialCorruptCheck"));
        let bad = Config::try_parse_from(["strata", "--feature-gates=NoSuchGate=true"]);
        assert!(format!("{}", bad.expect_err("refused"))
            .contains("unrecognized feature gate: NoSuchGate"));
    }
}
