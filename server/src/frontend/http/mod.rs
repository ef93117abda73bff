//! HTTP/1.1 (and h2) endpoints served on the client listeners beside gRPC,
//! as etcd serves them on the same port:
//!
//! - `GET /health`: `{"health":"true","reason":""}` with 200, or
//!   `"false"` with 503 and etcd 3.5's reason: an active alarm
//!   (`ALARM NOSPACE`, `ALARM CORRUPT`; `?exclude=NAME` ignores one, and may
//!   repeat), no leader (`RAFT NO LEADER`), or a failed quorum read
//!   (`QGET ERROR:...`; `?serializable=true` skips the quorum round).
//! - `GET /version`: the server and cluster versions etcd reports.
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//! - `GET /livez` and `GET /readyz` (etcd 3.6's probes): named checks run
//!   in order: `/livez` runs `serializable_read`; `/readyz` runs
//!   `data_corruption` (no CORRUPT alarm), `serializable_read`,
//!   `linearizable_read` and `non_learner` (3.6: a learner is not ready).
//!   `/livez/<check>` runs one; `?exclude=<check>`
//!   skips one (unknown names are ignored); `?verbose` lists each result.
//!   Success: 200 `ok`; failure: 503 with a `[+]name ok` or `[-]name
//!   failed: reason` line per check. Other methods get 405. Each check's
//!   result goes to `etcd_server_healthcheck{type,name}` (1 passed, 0
//!   failed) and `etcd_server_healthchecks_total{type,name,status}`;
//!   `/health`'s to `etcd_server_health_success` / `_failures`.
//!
//! Everything else on these paths is gRPC's (tonic routes by path).

pub mod access;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;

use strata_proto::etcdserverpb as pb;

use crate::server::EtcdServer;
use crate::version::ETCD_VERSION;

pub fn router(srv: Arc<EtcdServer>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/livez", axum::routing::any(livez))
        .route("/livez/{check}", axum::routing::any(livez_one))
        .route("/readyz", axum::routing::any(readyz))
        .route("/readyz/{check}", axum::routing::any(readyz_one))
        .with_state(srv)
}

fn json(status: StatusCode, body: String) -> impl IntoResponse {
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(srv): State<Arc<EtcdServer>>) -> impl IntoResponse {
    use std::sync::atomic::Ordering::Acquire;
    let st = &srv.shared.status;
    let (db_size, db_in_use) = srv.db_size();
    let state = crate::metrics::State {
        leader: st.leader.load(Acquire),
        member: srv.member_id(),
        learner: srv.is_learner(),
        revision: srv.store().revision(),
        compact_revision: srv.store().compact_revision(),
        committed: st.commit.load(Acquire),
        applied: st.applied.load(Acquire),
        pending: srv.shared.waiters.len(),
        db_size,
        db_in_use,
        keys: srv.store().index_len(),
    };
    let members: Vec<u64> = srv.membership.list().iter().map(|m| m.id).collect();
    let alarms: Vec<(u64, &str)> = srv
        .shared
        .alarms()
        .iter()
        .map(|&(m, t)| {
            let name = pb::AlarmType::try_from(t).map_or("UNKNOWN", |a| a.as_str_name());
            (m, name)
        })
        .collect();
    crate::metrics::global().set_alarms(&alarms);
    crate::metrics::global().set_cluster_version(&srv.cluster_version());
    crate::metrics::global().set_known_peers(srv.member_id(), &members, &srv.membership.removed());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::global().render(state),
    )
}

async fn version(State(srv): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let cluster = srv.cluster_version();
    json(
        StatusCode::OK,
        format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{cluster}"}}"#),
    )
}

/// The query's values for `name` (`a=1&a=2`), without decoding beyond
/// what alarm names and booleans need.
fn query_values<'a>(uri: &'a Uri, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    uri.query().unwrap_or("").split('&').filter_map(move |kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

async fn health(State(srv): State<Arc<EtcdServer>>, uri: Uri) -> impl IntoResponse {
    let excluded: Vec<&str> = query_values(&uri, "exclude").collect();
    let serializable = query_values(&uri, "serializable").any(|v| v == "true");
    let reason = unhealthy(&srv, &excluded, serializable).await;
    crate::metrics::global().health(reason.is_none());
    let (status, health, reason) = match reason {
        None => (StatusCode::OK, "true", String::new()),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, "false", r),
    };
    let reason = reason.replace('\\', "\\\\").replace('"', "\\\"");
    json(
        status,
        format!(r#"{{"health":"{health}","reason":"{reason}"}}"#),
    )
}

/// Why this member is unhealthy, in etcd's order: alarms, leader, a read.
async fn unhealthy(srv: &EtcdServer, excluded: &[&str], serializable: bool) -> Option<String> {
    let alarms: Vec<i32> = srv.shared.alarms().iter().map(|&(_, a)| a).collect();
    for a in alarms {
        let name = match strata_proto::etcdserverpb::AlarmType::try_from(a) {
            Ok(strata_proto::etcdserverpb::AlarmType::Nospace) => "NOSPACE",
            Ok(strata_proto::etcdserverpb::AlarmType::Corrupt) => "CORRUPT",
            _ => "UNKNOWN",
        };
        if !excluded.contains(&name) {
            return Some(format!("ALARM {name}"));
        }
    }
    if srv
        .shared
        .status
        .leader
        .load(std::sync::atomic::Ordering::Acquire)
        == 0
    {
        return Some("RAFT NO LEADER".into());
    }
    if !serializable {
        // etcd's QGET: a linearizable read within a second.
        match tokio::time::timeout(Duration::from_secs(1), srv.read_barrier()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(format!("QGET ERROR:{e}")),
            Err(_) => return Some("QGET ERROR:context deadline exceeded".into()),
        }
    }
    None
}

const LIVEZ: &[&str] = &["serializable_read"];
const READYZ: &[&str] = &[
    "data_corruption",
    "serializable_read",
    "linearizable_read",
    "non_learner",
];

/// One named check: None when it passes, else why not.
async fn run_check(srv: &EtcdServer, name: &str) -> Option<String> {
    use strata_proto::etcdserverpb::AlarmType;
    match name {
        "data_corruption" => srv
            .shared
            .alarms()
            .iter()
            .any(|&(_, a)| a == AlarmType::Corrupt as i32)
            .then(|| "alarm activated: CORRUPT".to_string()),
        "serializable_read" => {
            let r = strata_engine::mvcc::RangeRequest {
                key: vec![0],
                range_end: vec![0],
                limit: 1,
                keys_only: true,
                ..Default::default()
            };
            srv.store()
                .range(&r)
                .err()
                .map(|e| crate::errors::EtcdError::from(e).to_string())
        }
        "linearizable_read" => {
            match tokio::time::timeout(srv.request_timeout(), srv.read_barrier()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("context deadline exceeded".into()),
            }
        }
        "non_learner" => srv
            .is_learner()
            .then(|| "not supported for learner".to_string()),
        other => Some(format!("unknown check {other}")),
    }
}

/// Runs `checks` (minus `?exclude=`) and answers as etcd's probes do.
async fn probe(
    srv: &EtcdServer,
    method: &axum::http::Method,
    uri: &Uri,
    kind: &str,
    checks: &[&str],
) -> axum::response::Response {
    if method != axum::http::Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "Method Not Allowed\n",
        )
            .into_response();
    }
    let excluded: Vec<&str> = query_values(uri, "exclude")
        .flat_map(|v| v.split(','))
        .collect();
    let verbose = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "verbose" || kv.starts_with("verbose="));
    let mut lines = String::new();
    let mut failed = false;
    for name in checks.iter().filter(|c| !excluded.contains(c)) {
        let result = run_check(srv, name).await;
        crate::metrics::global().health_check(kind, name, result.is_none());
        match result {
            None => lines.push_str(&format!("[+]{name} ok\n")),
            Some(why) => {
                failed = true;
                lines.push_str(&format!("[-]{name} failed: {why}\n"));
            }
        }
    }
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if failed {
        return (StatusCode::SERVICE_UNAVAILABLE, text, format!("{lines}\n")).into_response();
    }
    let body = if verbose {
        format!("{lines}ok\n")
    } else {
        "ok\n".to_string()
    };
    (StatusCode::OK, text, body).into_response()
}

async fn livez(
    State(srv): State<Arc<EtcdServer>>,
    method: axum::http::Method,
    uri: Uri,
) -> axum::response::Response {
    probe(&srv, &method, &uri, "livez", LIVEZ).await
}

async fn readyz(
    State(srv): State<Arc<EtcdServer>>,
    method: axum::http::Method,
    uri: Uri,
) -> axum::response::Response {
    probe(&srv, &method, &uri, "readyz", READYZ).await
}

/// `/livez/<check>` or `/readyz/<check>`: that check alone, if the probe
/// has it.
async fn one(
    srv: &EtcdServer,
    method: &axum::http::Method,
    uri: &Uri,
    kind: &str,
    all: &[&str],
    check: &str,
) -> axum::response::Response {
    match all.iter().find(|c| **c == check) {
        Some(c) => probe(srv, method, uri, kind, &[c]).await,
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

async fn livez_one(
    State(srv): State<Arc<EtcdServer>>,
    axum::extract::Path(check): axum::extract::Path<String>,
    method: axum::http::Method,
    uri: Uri,
) -> axum::response::Response {
    one(&srv, &method, &uri, "livez", LIVEZ, &check).await
}

async fn readyz_one(
    State(srv): State<Arc<EtcdServer>>,
    axum::extract::Path(check): axum::extract::Path<String>,
    method: axum::http::Method,
    uri: Uri,
) -> axum::response::Response {
    one(&srv, &method, &uri, "readyz", READYZ, &check).await
}
