//! The /v3 JSON gateway: the same curl calls against strata and real etcd
//! 3.5 give the same answers (JSON compared as values, with the member's
//! own ids left out); a real gateway client (etcd3gw) works; streams are
//! JSON lines, and `--max-concurrent-streams` caps gateway calls in flight
//! as etcd's single gateway connection does.

use strata_testkit as common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{Etcd, Server};
use serde_json::Value;

/// `curl -X POST` of `body` to `path`, with extra headers; at most `secs`
/// seconds. Returns the HTTP status and the body.
fn curl(port: u16, path: &str, body: &str, headers: &[&str], secs: u32) -> (u16, String) {
    let out = curl_cmd("-s", "POST", port, path, headers, secs)
        .args(["-d", body, "-w", "\n%{http_code}"])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A curl command: `flags`, `method` on `path`, extra headers, at most
/// `secs` seconds.
fn curl_cmd(
    flags: &str,
    method: &str,
    port: u16,
    path: &str,
    headers: &[&str],
    secs: u32,
) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args([flags, "-m", &secs.to_string(), "-X", method])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd
}

/// How a step's answers are compared.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// As JSON values, ids of the member left out.
    Json,
    /// Status and gRPC code only (error texts of JSON parsers differ).
    Code,
    /// The raw text.
    Text,
}

/// Leaves out what differs between two clusters that behave the same:
/// member and cluster ids, raft terms, hashes and tokens; and a lease's
/// remaining TTL in TimeToLive (the clock moves between the two runs).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["cluster_id", "member_id", "raft_term", "hash", "token"] {
                m.remove(k);
            }
            if m.contains_key("grantedTTL") {
                m.remove("TTL");
            }
            m.values_mut().for_each(normalize);
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or(Value::String(l.to_string()));
            normalize(&mut v);
            v
        })
        .collect()
}

/// The script both servers get: (path, body, timeout, comparison). A path
/// ending in ` TOKEN` is sent with the token that server's last
/// authenticate answered; `REV` in a body is the revision of the leader
/// key its last campaign answered.
const SCRIPT: &[(&str, &str, u32, Cmp)] = &[
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#, 5, Cmp::Json),
    (
        "/v3beta/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","revision":100}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_range":{"key":"Zm9v"}}]}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"LESS","target":"MOD","mod_revision":"2"}],"failure":[{"requestPut":{"key":"YQ==","value":"MQ=="}},{"request_delete_range":{"key":"Yg=="}}]}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"result":0,"target":1,"key":"Zm9v","TargetUnion":null}],"success":[{"Request":{"RequestPut":{"key":"Zm9v","value":"YmFy"}}}]}"#,
        5,
        Cmp::Code,
    ),
    ("/v3/kv/txn", "not json", 5, Cmp::Code),
    (
        "/v3/kv/deleterange",
        r#"{"key":"Zm9v","prev_kv":true}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/kv/compaction", r#"{"revision":"3"}"#, 5, Cmp::Json),
    ("/v3/kv/compaction", r#"{"revision":"3"}"#, 5, Cmp::Json),
    ("/v3/lease/grant", r#"{"TTL":30,"ID":4660}"#, 5, Cmp::Json),
    ("/v3/lease/grant", r#"{"TTL":30,"ID":4660}"#, 5, Cmp::Json),
    (
        "/v3/kv/put",
        r#"{"key":"bGVhc2Vk","value":"dg==","lease":"4660"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/lease/timetolive",
        r#"{"ID":4660,"keys":true}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/kv/lease/leases", "{}", 5, Cmp::Json),
    ("/v3/lease/keepalive", r#"{"ID":4660}"#, 5, Cmp::Json),
    ("/v3/lease/revoke", r#"{"ID":4660}"#, 5, Cmp::Json),
    ("/v3/kv/lease/revoke", r#"{"ID":4660}"#, 5, Cmp::Json),
    // From a compacted revision: created, then canceled (the curl waits
    // out its second: the stream stays open).
    (
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v","start_revision":1}}"#,
        1,
        Cmp::Json,
    ),
    (
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v"}} {"create_request":{"key":"YmFy","watch_id":7}}"#,
        1,
        Cmp::Json,
    ),
    ("/v3/election/proclaim", r#"{"value":"djI="}"#, 5, Cmp::Json),
    ("/v3/election/resign", "{}", 5, Cmp::Json),
    ("/v3/election/leader", r#"{"name":"ZQ=="}"#, 5, Cmp::Json),
    ("/v3/lease/grant", r#"{"TTL":30,"ID":4661}"#, 5, Cmp::Json),
    (
        "/v3/lock/lock",
        r#"{"name":"bG9jaw==","lease":"4661"}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/lock/unlock", r#"{"key":"bG9jay8xMjM1"}"#, 5, Cmp::Json),
    (
        "/v3/election/campaign",
        r#"{"name":"ZWw=","lease":"4661","value":"djE="}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/election/leader", r#"{"name":"ZWw="}"#, 5, Cmp::Json),
    ("/v3/election/observe", r#"{"name":"ZWw="}"#, 1, Cmp::Json),
    (
        "/v3/election/proclaim",
        r#"{"leader":{"name":"ZWw=","key":"ZWwvMTIzNQ==","rev":"REV","lease":"4661"},"value":"djI="}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/election/resign",
        r#"{"leader":{"name":"ZWw=","key":"ZWwvMTIzNQ==","rev":"REV","lease":"4661"}}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/maintenance/alarm", r#"{"action":"GET"}"#, 5, Cmp::Json),
    ("/v3/maintenance/defragment", "{}", 5, Cmp::Json),
    ("/v3/auth/role/add", r#"{"name":"reader"}"#, 5, Cmp::Json),
    (
        "/v3/auth/role/grant",
        r#"{"name":"reader","perm":{"permType":"READ","key":"YQ==","range_end":"Yg=="}}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/auth/role/get", r#"{"role":"reader"}"#, 5, Cmp::Json),
    (
        "/v3/auth/role/revoke",
        r#"{"role":"reader","key":"YQ==","range_end":"Yg=="}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/auth/role/list", "{}", 5, Cmp::Json),
    (
        "/v3/auth/user/add",
        r#"{"name":"u1","password":"p1"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/auth/user/grant",
        r#"{"user":"u1","role":"reader"}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/auth/user/get", r#"{"name":"u1"}"#, 5, Cmp::Json),
    (
        "/v3/auth/user/revoke",
        r#"{"name":"u1","role":"reader"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/auth/user/changepw",
        r#"{"name":"u1","password":"p2"}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/auth/user/delete", r#"{"name":"u1"}"#, 5, Cmp::Json),
    ("/v3/auth/role/delete", r#"{"role":"reader"}"#, 5, Cmp::Json),
    ("/v3/cluster/member/remove", r#"{"ID":"1"}"#, 5, Cmp::Json),
    (
        "/v3/auth/user/add",
        r#"{"name":"root","password":"toor"}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/auth/user/get", r#"{"name":"nobody"}"#, 5, Cmp::Json),
    ("/v3/auth/role/add", r#"{"name":"root"}"#, 5, Cmp::Json),
    (
        "/v3/auth/user/grant",
        r#"{"user":"root","role":"root"}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/auth/enable", "{}", 5, Cmp::Json),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"wrong"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"toor"}"#,
        5,
        Cmp::Json,
    ),
    (
        "/v3/kv/put TOKEN",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
        5,
        Cmp::Json,
    ),
    ("/v3/kv/range TOKEN", r#"{"key":"Zm9v"}"#, 5, Cmp::Json),
    ("/v3/auth/user/list TOKEN", "{}", 5, Cmp::Json),
    ("/v3/auth/disable TOKEN", "{}", 5, Cmp::Json),
    ("/v3/nope", "{}", 5, Cmp::Text),
];

/// Runs the script on a server: each step's status and body.
fn run_script(port: u16) -> Vec<(u16, String)> {
    let mut token = String::new();
    let mut rev = String::new();
    let mut out = Vec::new();
    for (path, body, secs, _) in SCRIPT {
        let (path, auth) = match path.strip_suffix(" TOKEN") {
            Some(p) => (p, format!("Authorization: {token}")),
            None => (*path, String::new()),
        };
        let headers: Vec<&str> = [auth.as_str()]
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect();
        let body = body.replace("REV", &rev);
        let (code, text) = curl(port, path, &body, &headers, *secs);
        if path.ends_with("/campaign") && code == 200 {
            let v: Value = serde_json::from_str(&text).expect("campaign answers JSON");
            rev = v["leader"]["rev"]
                .as_str()
                .expect("a leader rev")
                .to_string();
        }
        if path.ends_with("/authenticate") && code == 200 {
            let v: Value = serde_json::from_str(&text).expect("authenticate answers JSON");
            token = v["token"].as_str().expect("a token").to_string();
        }
        out.push((code, text));
    }
    out
}

#[test]
fn curl_calls_answer_as_etcd_3_5_answers_them() {
    let strata = Server::start(&[]);
    let etcd = Etcd::start_35();
    let ours = run_script(strata.port);
    let theirs = run_script(etcd.port);
    let mut diffs = Vec::new();
    for (i, (step, (a, b))) in SCRIPT.iter().zip(ours.iter().zip(&theirs)).enumerate() {
        let same = match step.3 {
            Cmp::Json => a.0 == b.0 && lines(&a.1) == lines(&b.1),
            Cmp::Code => a.0 == b.0 && lines(&a.1)[0]["code"] == lines(&b.1)[0]["code"],
            Cmp::Text => a == b,
        };
        if !same {
            diffs.push(format!(
                "step {i} {} {}\n  strata [{}] {}\n  etcd   [{}] {}",
                step.0, step.1, a.0, a.1, b.0, b.1
            ));
        }
    }
    assert!(diffs.is_empty(), "answers differ:\n{}", diffs.join("\n"));
    // The script reached what it meant to: auth was on, then off.
    let at = |p: &str| SCRIPT.iter().position(|s| s.0 == p).unwrap();
    let put_after_enable = at("/v3/auth/enable") + 1;
    assert!(
        ours[put_after_enable].1.contains("user name is empty"),
        "{:?}",
        ours[put_after_enable]
    );
    assert!(ours[at("/v3/kv/put TOKEN")].1.contains("revision"));
}

#[test]
fn the_etcd3gw_python_client_works() {
    let s = Server::start(&[]);
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/gateway_client.py"
        ))
        .arg(s.port.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "etcd3gw failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A POST of `body` to `path` on a raw connection, left open: the
/// response head has been read.
fn open_stream(port: u16, path: &str, body: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    r
}

/// The next JSON line of a chunked stream.
fn next_line(r: &mut BufReader<TcpStream>) -> Value {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("a line of the stream");
        let t = line.trim();
        // Chunk sizes are hex digits alone on their line.
        if t.is_empty() || t.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        return serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t}"));
    }
}

#[test]
fn streams_are_json_lines_and_calls_in_flight_are_capped() {
    let s = Server::start(&["--max-concurrent-streams", "2"]);
    let watch = r#"{"create_request":{"key":"dw=="}}"#;
    let mut w1 = open_stream(s.port, "/v3/watch", watch);
    assert_eq!(next_line(&mut w1)["result"]["created"], true);
    let mut w2 = open_stream(s.port, "/v3/watch", watch);
    assert_eq!(next_line(&mut w2)["result"]["created"], true);
    // Both streams are in flight: a third call waits (curl gives up).
    let (code, _) = curl(
        s.port,
        "/v3/kv/put",
        r#"{"key":"dw==","value":"MQ=="}"#,
        &[],
        2,
    );
    assert_eq!(code, 0, "a call beyond the cap must wait");
    // A stream whose client went away frees its place.
    drop(w2);
    let put = common::wait_for(10, || {
        let (code, body) = curl(
            s.port,
            "/v3/kv/put",
            r#"{"key":"dw==","value":"Mg=="}"#,
            &[],
            2,
        );
        (code == 200).then_some(body)
    });
    assert!(put.is_some(), "the closed stream kept its place");
    // The open watch saw the write (and, if it reached the member after
    // the timed-out curl gave up, the first one before it).
    let ev = next_line(&mut w1);
    let events = ev["result"]["events"].as_array().expect("events").clone();
    let last = events.last().expect("an event");
    assert_eq!(last["kv"]["key"], "dw==");
}

/// `curl -si` with `method` and headers: the status and the
/// Access-Control-Allow-Origin header, if any.
fn head(port: u16, method: &str, path: &str, headers: &[&str]) -> (u16, Option<String>) {
    let out = curl_cmd("-si", method, port, path, headers, 5)
        .output()
        .expect("curl runs");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let origin = out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("access-control-allow-origin")
            .then(|| v.trim().to_string())
    });
    (status, origin)
}

#[test]
fn host_whitelist_and_cors_as_etcd_3_5() {
    let flags = [
        "--cors",
        "http://a.example:80",
        "--host-whitelist",
        "good.example",
    ];
    let strata = Server::start(&flags);
    let etcd = Etcd::start_35_with(&flags);
    let cases: &[(&str, &str, &[&str])] = &[
        ("GET", "/version", &[]),
        ("GET", "/version", &["Host: good.example:2379"]),
        (
            "GET",
            "/version",
            &["Host: good.example", "Origin: http://a.example:80"],
        ),
        (
            "GET",
            "/version",
            &["Host: good.example", "Origin: http://b.example:80"],
        ),
        (
            "OPTIONS",
            "/v3/kv/range",
            &["Host: good.example", "Origin: http://a.example:80"],
        ),
        ("POST", "/v3/kv/range", &["Host: evil.example"]),
    ];
    for (method, path, headers) in cases {
        let ours = head(strata.port, method, path, headers);
        let theirs = head(etcd.port, method, path, headers);
        assert_eq!(ours, theirs, "{method} {path} {headers:?}");
    }
    assert_eq!(head(strata.port, "GET", "/version", &[]).0, 421);
}
