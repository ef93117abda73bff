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

/// `strata --version` prints etcd's block (etcd v3.7.1
/// server/etcdmain/config.go: `etcd Version`, `Git SHA`, the toolchain,
/// `Go OS/Arch`) and then strata's own line, and exits 0 without starting.
#[test]
fn version_prints_etcds_block_then_strata_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::strata_bin())
        .arg("--version")
        .current_dir(dir.path())
        .output()
        .expect("strata runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("etcd Version: 3."), "{text}");
    assert!(lines[1].starts_with("Git SHA: "), "{text}");
    assert!(lines[2].starts_with("Rust Version: rustc "), "{text}");
    assert!(lines[3].starts_with("Go OS/Arch: linux/"), "{text}");
    assert!(lines[4].starts_with("strata Version: "), "{text}");
    // Nothing was started: no default data dir appeared.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Under systemd's Type=notify (the Debian package's unit) the member
/// sends READY=1 on $NOTIFY_SOCKET once it serves clients, as etcd does,
/// and STOPPING=1 when it begins to stop.
#[test]
fn systemd_is_told_ready_when_clients_are_served_and_stopping_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(common::strata_bin())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen-client-urls=http://127.0.0.1:0")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("STRATA_WAL_SEGMENT_SIZE", common::TEST_WAL_SEGMENT_SIZE)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 512];
    let first = sock.recv(&mut buf).map(|n| buf[..n].to_vec());
    // The line is logged just before the notification; the reader thread
    // may still be carrying it.
    let mut log = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    let mut ready_logged = false;
    while !ready_logged && Instant::now() < until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            ready_logged = line.contains("ready to serve client requests");
            log.push(line);
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let second = sock.recv(&mut buf).map(|n| buf[..n].to_vec());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first.expect("a notification"), b"READY=1\n");
    assert!(ready_logged, "no 'ready to serve client requests': {log:?}");
    assert_eq!(second.expect("a notification"), b"STOPPING=1\n");
    assert!(status.expect("stopped within 20 s").success());
}
