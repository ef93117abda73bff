//! HTTP/1.1 (and h2) endpoints served on the client listeners beside gRPC,
//! as etcd serves them on the same port:
//!
//! - `GET /health`: `{"health":"true","reason":""}` with 200, or
//!   `"false"` with 503 and etcd 3.5's reason: an active alarm
//!   (`ALARM NOSPACE`, `ALARM CORRUPT`; `?exclude=NAME` ignores one, and may
//!   repeat), no leader (`RAFT NO LEADER`), or a failed quorum read
//!   (`QGET ERROR:...`; `?serializable=true` skips the quorum round).
//! - `GET /version`: the server and cluster versions etcd reports.
//!
//! Everything else on these paths is gRPC's (tonic routes by path).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::{EtcdServer, ETCD_VERSION};

/// The cluster version etcd 3.5 members report.
const CLUSTER_VERSION: &str = "3.5.0";

pub fn router(srv: Arc<EtcdServer>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(srv)
}

fn json(status: StatusCode, body: String) -> impl IntoResponse {
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn version() -> impl IntoResponse {
    json(
        StatusCode::OK,
        format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{CLUSTER_VERSION}"}}"#),
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
