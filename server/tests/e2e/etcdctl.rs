//! End to end: the real `strata` binary driven by etcdctl 3.4 (Debian's
//! etcd-client package), checking outputs and etcd's exact error strings.

use strata_testkit as common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn put_get_delete_and_ranges() {
    let s = Server::start(&[]);
    assert_eq!(s.etcdctl_ok(&["put", "foo", "bar"]), "OK\n");
    assert_eq!(s.etcdctl_ok(&["get", "foo"]), "foo\nbar\n");
    for k in ["a1", "a2", "a3", "b1"] {
        s.etcdctl_ok(&["put", k, &format!("v-{k}")]);
    }
    assert_eq!(
        s.etcdctl_ok(&["get", "a", "--prefix", "--keys-only"]),
        "a1\n\na2\n\na3\n\n"
    );
    assert_eq!(
        s.etcdctl_ok(&[
            "get",
            "a",
            "--prefix",
            "--limit=1",
            "--sort-by=KEY",
            "--order=DESCEND"
        ]),
        "a3\nv-a3\n"
    );
    assert_eq!(
        s.etcdctl_ok(&["get", "a1", "b1"]),
        "a1\nv-a1\na2\nv-a2\na3\nv-a3\n"
    );
    assert_eq!(
        s.etcdctl_ok(&["get", "--from-key", "b"]),
        "b1\nv-b1\nfoo\nbar\n"
    );
    // Revisions: 1 empty, foo=2, a1..b1 = 3..6.
    let json = s.etcdctl_ok(&["get", "a2", "-w", "json"]);
    assert!(json.contains("\"revision\":6"), "{json}");
    assert!(
        json.contains("\"create_revision\":4,\"mod_revision\":4,\"version\":1"),
        "{json}"
    );
    assert_eq!(s.etcdctl_ok(&["get", "foo", "--rev=2"]), "foo\nbar\n");
    assert_eq!(s.etcdctl_ok(&["del", "a", "--prefix"]), "3\n");
    assert_eq!(s.etcdctl_ok(&["del", "nothing"]), "0\n");
    assert_eq!(s.etcdctl_ok(&["get", "a", "--prefix"]), "");
    assert_eq!(
        s.etcdctl_ok(&["get", "--from-key", "", "--keys-only", "-w", "fields"])
            .lines()
            .find(|l| l.starts_with("\"Count\""))
            .unwrap_or_default(),
        "\"Count\" : 2"
    );
    assert_eq!(
        s.etcdctl_ok(&["put", "foo", "baz", "--prev-kv"]),
        "OK\nfoo\nbar\n"
    );
    // Serializable reads answer too.
    assert_eq!(
        s.etcdctl_ok(&["get", "foo", "--consistency=s"]),
        "foo\nbaz\n"
    );
    assert_eq!(
        s.etcdctl_err(&["get", "foo", "--rev=100"]),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );
}

#[test]
fn txn_from_stdin() {
    let s = Server::start(&[]);
    s.etcdctl_ok(&["put", "k", "v1"]);
    let script = "value(\"k\") = \"v1\"\n\nput k v2\nget k\n\nput k nope\n\n";
    let out = etcdctl(&s.endpoint(), &["txn"], Some(script));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SUCCESS\n\nOK\n\nk\nv2\n"
    );
    let out = etcdctl(&s.endpoint(), &["txn"], Some(script));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "FAILURE\n\nOK\n");
    assert_eq!(s.etcdctl_ok(&["get", "k"]), "k\nnope\n");
    // A missing key compares as version 0.
    let out = etcdctl(
        &s.endpoint(),
        &["txn"],
        Some("version(\"missing\") = \"0\"\n\nput created yes\n\n\n"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SUCCESS\n\nOK\n");
}

#[test]
fn watch_from_history_and_live() {
    let s = Server::start(&[]);
    s.etcdctl_ok(&["put", "w/a", "1"]);
    s.etcdctl_ok(&["put", "w/b", "2"]);
    s.etcdctl_ok(&["del", "w/a"]);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new(tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", s.endpoint()))
            .args(["watch", "w/", "--prefix", "--rev=1", "--prev-kv"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl watch"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let next = |lines: &mut Vec<String>, n: usize| {
        while lines.len() < n {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
    };
    // History: PUT w/a, PUT w/b, DELETE w/a (etcdctl prints the previous
    // KeyValue, then the deleted key with no value).
    next(&mut lines, 11);
    assert_eq!(
        lines,
        ["PUT", "w/a", "1", "PUT", "w/b", "2", "DELETE", "w/a", "1", "w/a", ""]
            .map(String::from)
            .to_vec()
    );
    lines.clear();
    s.etcdctl_ok(&["put", "w/c", "3"]);
    s.etcdctl_ok(&["put", "other", "x"]);
    next(&mut lines, 3);
    assert_eq!(lines, ["PUT", "w/c", "3"].map(String::from).to_vec());
}

#[test]
fn leases_attach_expire_and_revoke() {
    let s = Server::start(&[]);
    // The minimum TTL (ceil(1.5 x 1 s election timeout) = 2 s) applies.
    let out = s.etcdctl_ok(&["lease", "grant", "1"]);
    assert!(out.ends_with("granted with TTL(2s)\n"), "{out}");
    let id = out.split_whitespace().nth(1).expect("lease id").to_string();
    s.etcdctl_ok(&["put", "eph", "x", &format!("--lease={id}")]);
    let ttl = s.etcdctl_ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([eph])"), "{ttl}");
    // Expiry deletes the key, through raft.
    let gone = wait_for(15, || {
        s.etcdctl_ok(&["get", "eph"]).is_empty().then_some(())
    });
    assert!(gone.is_some(), "the lease's key outlived it");
    assert!(s
        .etcdctl_ok(&["lease", "timetolive", &id])
        .contains("already expired"));

    let out = s.etcdctl_ok(&["lease", "grant", "60"]);
    let id2 = out.split_whitespace().nth(1).expect("lease id").to_string();
    s.etcdctl_ok(&["put", "k1", "v", &format!("--lease={id2}")]);
    s.etcdctl_ok(&["put", "k2", "v", &format!("--lease={id2}")]);
    let ka = s.etcdctl_ok(&["lease", "keep-alive", "--once", &id2]);
    assert!(ka.contains("keepalived with TTL(60)"), "{ka}");
    assert!(s.etcdctl_ok(&["lease", "list"]).contains(&id2));
    assert_eq!(
        s.etcdctl_ok(&["lease", "revoke", &id2]),
        format!("lease {id2} revoked\n")
    );
    assert_eq!(s.etcdctl_ok(&["get", "k", "--prefix"]), "");
    assert_eq!(
        s.etcdctl_err(&["put", "k3", "v", &format!("--lease={id2}")]),
        "Error: etcdserver: requested lease not found"
    );
    assert_eq!(
        s.etcdctl_err(&["lease", "revoke", &id2]),
        "Error: failed to revoke lease (etcdserver: requested lease not found)"
    );
}

#[test]
fn compaction_and_its_errors() {
    let s = Server::start(&[]);
    for i in 0..5 {
        s.etcdctl_ok(&["put", "c", &i.to_string()]);
    }
    assert_eq!(s.etcdctl_ok(&["compaction", "4"]), "compacted revision 4\n");
    assert_eq!(
        s.etcdctl_err(&["get", "c", "--rev=3"]),
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(s.etcdctl_ok(&["get", "c", "--rev=4"]), "c\n2\n");
    assert_eq!(
        s.etcdctl_err(&["compaction", "4"]),
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        s.etcdctl_err(&["compaction", "100"]),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(
        s.etcdctl_ok(&["compaction", "--physical", "5"]),
        "compacted revision 5\n"
    );
    // A watch from a compacted revision is canceled with the compact
    // revision.
    let out = Command::new(tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", s.endpoint()))
        .args(["watch", "c", "--rev=2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("etcdctl watch");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("required revision has been compacted"),
        "{all}"
    );
}

#[test]
fn request_and_txn_limits() {
    let s = Server::start(&["--max-request-bytes=1024", "--max-txn-ops=3"]);
    let big = "x".repeat(2000);
    assert_eq!(
        s.etcdctl_err(&["put", "big", &big]),
        "Error: etcdserver: request is too large"
    );
    assert_eq!(s.etcdctl_ok(&["put", "small", "ok"]), "OK\n");
    let many = "\n\nput a 1\nput b 2\nput c 3\nput d 4\n\n\n";
    let out = etcdctl(&s.endpoint(), &["txn"], Some(many));
    assert_eq!(
        last_error_line(&out),
        "Error: etcdserver: too many operations in txn request"
    );
    let dup = "\n\nput a 1\nput a 2\n\n\n";
    let out = etcdctl(&s.endpoint(), &["txn"], Some(dup));
    assert_eq!(
        last_error_line(&out),
        "Error: etcdserver: duplicate key given in txn request"
    );
    // The gRPC receive limit is the request limit plus 512 KiB.
    let huge = "y".repeat(600 * 1024);
    let out = etcdctl(&s.endpoint(), &["put", "huge"], Some(&huge));
    assert!(!out.status.success());
    let err = last_error_line(&out);
    assert!(
        err.contains("ResourceExhausted") || err.contains("larger than max"),
        "{err}"
    );
}

#[test]
fn nospace_alarm_refuses_writes_until_disarmed() {
    // Small quota: the db starts at a few pages; a few writes pass it once
    // the backend commits them (at most --backend-batch-interval later).
    let s = Server::start(&[
        "--quota-backend-bytes=300000",
        "--backend-batch-interval=200ms",
    ]);
    let val = "v".repeat(50_000);
    let mut refused = None;
    for i in 0..200 {
        let out = s.etcdctl(&["put", &format!("key{i}"), &val]);
        if !out.status.success() {
            refused = Some(last_error_line(&out));
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some("Error: etcdserver: mvcc: database space exceeded")
    );
    let alarms = s.etcdctl_ok(&["alarm", "list"]);
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    // /health says so (etcd 3.5's words), unless NOSPACE is excluded.
    assert_eq!(
        http_get(s.port, "/health"),
        (
            503,
            r#"{"health":"false","reason":"ALARM NOSPACE"}"#.to_string()
        )
    );
    assert_eq!(
        http_get(s.port, "/health?exclude=NOSPACE"),
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    // Reads and deletes still work; writes stay refused.
    assert!(!s.etcdctl_ok(&["get", "key0", "--keys-only"]).is_empty());
    assert_eq!(
        s.etcdctl_err(&["put", "tiny", "x"]),
        "Error: etcdserver: mvcc: database space exceeded"
    );
    s.etcdctl_ok(&["del", "key", "--prefix"]);
    let status = s.etcdctl_ok(&["endpoint", "status"]);
    assert!(status.contains("alarm:NOSPACE"), "{status}");
    // Compact and defragment to get the space back, then disarm.
    let rev = s
        .etcdctl_ok(&["get", "x", "-w", "fields"])
        .lines()
        .find_map(|l| l.strip_prefix("\"Revision\" : ").map(str::to_string))
        .expect("revision");
    s.etcdctl_ok(&["compaction", "--physical", &rev]);
    s.etcdctl_ok(&["defrag"]);
    s.etcdctl_ok(&["alarm", "disarm"]);
    assert_eq!(s.etcdctl_ok(&["alarm", "list"]), "");
    assert_eq!(http_get(s.port, "/health").0, 200);
    assert_eq!(s.etcdctl_ok(&["put", "tiny", "x"]), "OK\n");
}

#[test]
fn maintenance_and_cluster() {
    let s = Server::start(&[]);
    s.etcdctl_ok(&["put", "m", "1"]);
    let st = s.etcdctl_ok(&["endpoint", "status", "-w", "json"]);
    assert!(st.contains("\"version\":\"3.5.17\""), "{st}");
    assert!(st.contains("\"leader\":"), "{st}");
    let members = s.etcdctl_ok(&["member", "list"]);
    assert!(members.contains(", started, default, "), "{members}");
    assert!(s
        .etcdctl_ok(&["endpoint", "hashkv"])
        .starts_with(&s.endpoint()));
    let health = s.etcdctl(&["endpoint", "health"]);
    assert!(health.status.success());
    assert!(String::from_utf8_lossy(&health.stderr)
        .contains("is healthy: successfully committed proposal"));
    assert!(s.etcdctl_ok(&["defrag"]).contains("Finished defragmenting"));
    let snap = s.dir.join("snap.db");
    let out = s.etcdctl(&["snapshot", "save", snap.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The saved file is the db stream followed by its SHA-256.
    let bytes = std::fs::read(&snap).expect("snapshot file");
    use sha2::Digest;
    let (db, sum) = bytes.split_at(bytes.len() - 32);
    assert_eq!(sha2::Sha256::digest(db).as_slice(), sum);
}

/// etcdctl 3.4 dials each endpoint of `endpoint status`, `endpoint hashkv`
/// and `defrag` as `passthrough:///http://host:port` and sends that URL as
/// the HTTP/2 authority; etcd serves it, and so must strata.
#[test]
fn per_endpoint_commands_take_urls_with_a_scheme() {
    let s = Server::start(&[]);
    let url = s.url();
    for (args, expect) in [
        (&["endpoint", "status"][..], url.as_str()),
        (&["endpoint", "hashkv"][..], url.as_str()),
        (&["defrag"][..], "Finished defragmenting etcd member"),
        (&["endpoint", "health"][..], "is healthy"),
    ] {
        let out = common::etcdctl(&url, args, None);
        // (`endpoint health` reports on stderr.)
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.contains(expect) && !said.contains("PROTOCOL_ERROR"),
            "{args:?}: {said}"
        );
    }
}

/// etcd's HTTP endpoints on the client port, beside gRPC.
#[test]
fn health_and_version_over_http_on_the_client_port() {
    let metrics_port = free_ports(1)[0];
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let s = Server::start(&["--listen-metrics-urls", &metrics_url]);
    // --listen-metrics-urls serves /metrics and the probes too.
    let (code, body) = http_get(metrics_port, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("\netcd_server_has_leader 1\n"), "{body}");
    assert_eq!(http_get(metrics_port, "/livez"), (200, "ok\n".to_string()));
    assert_eq!(http_get(metrics_port, "/health").0, 200);
    assert_eq!(
        http_get(s.port, "/health"),
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    assert_eq!(http_get(s.port, "/health?serializable=true").0, 200);
    assert_eq!(http_get(s.port, "/livez"), (200, "ok\n".to_string()));
    assert_eq!(
        http_get(s.port, "/readyz?verbose"),
        (
            200,
            "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
                .to_string()
        )
    );
    assert_eq!(
        http_get(s.port, "/readyz/linearizable_read?verbose"),
        (200, "[+]linearizable_read ok\nok\n".to_string())
    );
    assert_eq!(http_get(s.port, "/livez/nope").0, 404);
    // Each check and each /health answer counted as etcd 3.6 counts them
    // (v3.6.14 server/etcdserver/api/etcdhttp/health.go recordMetrics).
    let (_, m) = http_get(s.port, "/metrics");
    for line in [
        "etcd_server_healthcheck{name=\"non_learner\",type=\"readyz\"} 1",
        "etcd_server_healthcheck{name=\"serializable_read\",type=\"livez\"} 1",
        "etcd_server_healthchecks_total{name=\"linearizable_read\",status=\"success\",type=\"readyz\"} 2",
        "etcd_server_health_success 3",
        "etcd_server_health_failures 0",
    ] {
        assert!(m.contains(line), "no {line:?} in {m}");
    }
    assert_eq!(
        http_get(s.port, "/version"),
        (
            200,
            r#"{"etcdserver":"3.5.17","etcdcluster":"3.5.0"}"#.to_string()
        )
    );
    // gRPC still answers on the same port.
    s.etcdctl_ok(&["put", "k", "v"]);
}

/// A Strata backup is etcd's format: `etcdctl snapshot status` reads it,
/// `etcdctl snapshot restore` turns it into an etcd data dir, and real
/// etcd serves the same keys, deletions and leases from it.
#[test]
fn a_backup_is_read_by_etcdctl_and_served_by_real_etcd() {
    let s = Server::start(&[]);
    for i in 0..300 {
        s.etcdctl_ok(&["put", &format!("k{i:03}"), &format!("v{i}")]);
    }
    s.etcdctl_ok(&["del", "k007"]);
    let lease = s.etcdctl_ok(&["lease", "grant", "600"]);
    let lease = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    s.etcdctl_ok(&["put", "leased", "x", &format!("--lease={lease}")]);
    let snap = s.dir.join("backup.db");
    let snap = snap.to_str().expect("utf-8 path");
    s.etcdctl_ok(&["snapshot", "save", snap]);
    let st = s.etcdctl_ok(&["snapshot", "status", snap, "-w", "json"]);
    // 300 puts, one delete, one leased put: revision 303.
    assert!(st.contains("\"revision\":303"), "{st}");
    let restored = s.dir.join("restored");
    let out = s.etcdctl(&[
        "snapshot",
        "restore",
        snap,
        "--data-dir",
        restored.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let [port, peer] = free_ports(2)[..] else {
        unreachable!("two ports")
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut etcd = Command::new(tool("etcd"))
        .arg("--data-dir")
        .arg(&restored)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let ep = format!("127.0.0.1:{port}");
    let got = wait_for(30, || {
        let o = etcdctl(&ep, &["get", "k299", "--print-value-only"], None);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    let keys = etcdctl(&ep, &["get", "k", "--prefix", "--keys-only"], None);
    let deleted = etcdctl(&ep, &["get", "k007"], None);
    let leases = etcdctl(&ep, &["lease", "list"], None);
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert_eq!(got.as_deref(), Some("v299\n"));
    let listed = String::from_utf8_lossy(&keys.stdout);
    assert_eq!(
        listed.lines().filter(|l| !l.is_empty()).count(),
        299,
        "{listed}"
    );
    assert!(deleted.stdout.is_empty());
    assert!(String::from_utf8_lossy(&leases.stdout).contains(&lease));
}
