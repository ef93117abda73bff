//! What a member says when it starts: raft's own log lines come through,
//! and bad flag values are refused at once with the accepted values or
//! etcd's words.

use strata_testkit as common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn raft_elections_are_logged() {
    let s = Server::start(&[]);
    // Not a terminal: every line is etcd's zap JSON (level, ts, caller,
    // msg, then fields).
    for l in &s.startup {
        assert!(
            l.starts_with("{\"level\":\"")
                && l.contains("\"ts\":\"")
                && l.contains("\"caller\":\"")
                && l.contains("\"msg\":\""),
            "not a zap line: {l}"
        );
    }
    let raft: Vec<&String> = s
        .startup
        .iter()
        .filter(|l| l.contains("\"caller\":\"raft\""))
        .collect();
    // The bootstrap state is term 1 (as etcd's), so the first election is
    // term 2.
    for line in ["became candidate at term 2", "became leader at term 2"] {
        assert!(
            raft.iter()
                .any(|l| l.contains(line) && l.contains("raft_id=")),
            "no raft line {line:?} in:\n{}",
            s.startup.join("\n")
        );
    }
    // The bound address and readiness come after the election.
    let leader = s.startup.iter().position(|l| l.contains("became leader"));
    let ready = s.startup.iter().position(|l| l.contains("ready to serve"));
    assert!(leader < ready);
}

/// Runs strata with `args` in a temp dir; it must exit non-zero within
/// 10 s (a member that accepted the flags is killed, and the test fails).
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::strata_bin());
    cmd.arg("--data-dir").arg(dir.path().join("data"));
    if !args.iter().any(|a| a.starts_with("--listen-client-urls")) {
        cmd.arg("--listen-client-urls=http://127.0.0.1:0");
    }
    let mut child = cmd
        .args(args)
        // A refusal is a message, not a backtrace, even when asked for.
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} was accepted: strata kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr read");
    assert!(!status.success(), "{args:?} was accepted");
    assert!(!err.contains("backtrace"), "{err}");
    err
}

#[test]
fn unknown_enum_values_are_refused_with_the_accepted_ones() {
    let e = refused(&["--log-level=loud"]);
    assert!(
        e.contains("possible values: debug, info, warn, error, panic, fatal"),
        "{e}"
    );
    let e = refused(&["--initial-cluster-state=old"]);
    assert!(e.contains("possible values: new, existing"), "{e}");
    let e = refused(&["--auto-compaction-mode=hourly"]);
    assert!(e.contains("possible values: periodic, revision"), "{e}");
}

#[test]
fn bad_urls_are_refused_with_etcds_words() {
    let e = refused(&["--listen-client-urls=http://localhost"]);
    assert!(
        e.contains(r#"URL address does not have the form "host:port": http://localhost"#),
        "{e}"
    );
    let e = refused(&["--advertise-client-urls=http://127.0.0.1:2379/v3"]);
    assert!(
        e.contains("URL must not contain a path: http://127.0.0.1:2379/v3"),
        "{e}"
    );
    let e = refused(&["--listen-peer-urls=tcp://127.0.0.1:2380"]);
    assert!(
        e.contains("URL scheme must be http, https, unix, or unixs: tcp://127.0.0.1:2380"),
        "{e}"
    );
}

/// Every flag of `etcd --help` starts strata: the ones that cannot apply
/// here are named once at start-up with why; discovery is refused.
#[test]
fn etcd_flags_that_cannot_apply_are_accepted_with_a_warning() {
    let s = Server::start(&[
        "--enable-v2",
        "--enable-pprof=true",
        "--max-wals",
        "5",
        "--max-snapshots=5",
        "--proxy=off",
        "--cors=*",
        "--logger=zap",
        "--experimental-backend-bbolt-freelist-type=map",
        "--grpc-keepalive-min-time=5s",
        "--max-concurrent-streams=100",
        "--grpc-keepalive-interval=1h",
        "--grpc-keepalive-timeout=10s",
    ]);
    let log = s.startup.join("\n");
    for flag in [
        "--enable-v2=true",
        "--enable-pprof=true",
        "--max-wals=5",
        "--max-snapshots=5",
        "--proxy=off",
    ] {
        let line = format!("{flag} is accepted and ignored");
        assert_eq!(log.matches(&line).count(), 1, "{line} once in:\n{log}");
    }
    for implemented in ["--max-concurrent-streams", "--cors"] {
        assert!(
            !log.contains(implemented),
            "implemented flags are not warned about: {implemented}"
        );
    }
    assert_eq!(s.etcdctl_ok(&["put", "k", "v"]), "OK\n");
    let e = refused(&["--discovery=https://discovery.etcd.io/x"]);
    assert!(
        e.contains("discovery (--discovery, --discovery-srv) is not supported"),
        "{e}"
    );
}

/// etcd's YAML file: its settings apply, and flags given beside it are
/// ignored, as etcd does.
#[test]
fn a_config_file_is_used_and_overrides_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("etcd.yml");
    std::fs::write(
        &cfg,
        format!(
            "name: from-file\n\
             data-dir: {}\n\
             listen-client-urls: http://127.0.0.1:0\n\
             snapshot-count: 1000\n\
             log-outputs: [stderr]\n\
             client-transport-security:\n  client-cert-auth: false\n\
             no-such-setting: 1\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // The harness's own --data-dir and this --name are ignored.
    let s = common::Server::start_in(
        dir.path(),
        &[
            "--config-file",
            cfg.to_str().unwrap(),
            "--name",
            "from-flag",
            "--listen-client-urls",
            "http://127.0.0.1:0",
        ],
    );
    let members = s.etcdctl_ok(&["member", "list"]);
    assert!(members.contains("from-file"), "{members}");
    assert!(
        s.startup
            .iter()
            .any(|l| l.contains("no-such-setting names no flag")),
        "{:?}",
        s.startup
    );
    assert!(dir.path().join("data").join("member").exists());
}

/// Auto compaction as etcd's flags set it: revision mode keeps the last N
/// revisions, periodic mode compacts what is older than the period.
#[test]
fn auto_compaction_in_revision_and_periodic_modes() {
    for flags in [
        [
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=3",
        ],
        [
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=2s",
        ],
    ] {
        let s = Server::start(&flags);
        for i in 0..10 {
            s.etcdctl_ok(&["put", "k", &i.to_string()]);
        }
        let compacted = common::wait_for(30, || {
            let out = s.etcdctl(&["get", "k", "--rev=2"]);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            err.contains("required revision has been compacted")
                .then_some(())
        });
        assert!(
            compacted.is_some(),
            "{flags:?}: revision 2 was never compacted"
        );
        // The newest revisions stay readable.
        let latest = s.etcdctl_ok(&["get", "k", "--rev=11", "--print-value-only"]);
        assert_eq!(latest.trim(), "9", "{flags:?}");
    }
}
