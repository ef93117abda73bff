//! `grpc_server_started_total` and `grpc_server_handled_total` (the
//! go-grpc-prometheus names etcd exports): a middleware on the client
//! listeners' gRPC routes. An RPC counts as started when its request
//! arrives and as handled with its status code when it ends: from the
//! response headers for an error answered at once, else from the
//! trailers when the response body ends (streams included); a response
//! dropped before its trailers (the client went away) counts as
//! `Canceled`.
//!
//! With `--metrics=extensive` each handled RPC's time from its request to
//! its end (a stream's whole life) goes to `grpc_server_handling_seconds`.
//! The bytes of request and response bodies (gRPC messages with their
//! 5-byte prefixes) go to `etcd_network_client_grpc_{received,sent}_bytes_total`.
//!
//! The counters of each method are looked up once and kept (a lookup by
//! label values hashes every label; this runs on every request): at most
//! [`CACHED_METHODS`] methods, past which (paths are the client's to
//! choose) a request's counters are looked up by label as before.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use http_body::Frame;

/// grpc-go's names of the status codes, by code.
const NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The code's index in [`NAMES`] (a code grpc-go does not name is
/// `Unknown`).
fn code_index(code: &[u8]) -> usize {
    const UNKNOWN: usize = 2;
    std::str::from_utf8(code)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&i| i < NAMES.len())
        .unwrap_or(UNKNOWN)
}

#[cfg(test)]
fn code_name(code: &[u8]) -> &'static str {
    NAMES[code_index(code)]
}

const OK: usize = 0;
const CANCELED: usize = 1;

/// go-grpc-prometheus's grpc_type of each streaming method; the rest are
/// unary.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("etcdserverpb.KV", "RangeStream")
        | ("v3electionpb.Election", "Observe") => "server_stream",
        _ => "unary",
    }
}

/// One method's counters: started, and handled by code (made on first
/// use).
struct Labels {
    started: prometheus::IntCounter,
    typ: &'static str,
    service: String,
    method: String,
    handled: [OnceLock<prometheus::IntCounter>; 17],
    handling: OnceLock<prometheus::Histogram>,
}

impl Labels {
    fn new(service: &str, method: &str) -> Labels {
        let typ = grpc_type(service, method);
        Labels {
            started: super::global()
                .grpc_started
                .with_label_values(&[typ, service, method]),
            typ,
            service: service.to_string(),
            method: method.to_string(),
            handled: Default::default(),
            handling: OnceLock::new(),
        }
    }

    /// Counts the RPC begun at `start` as ended with `code`.
    fn handled(&self, code: usize, start: Instant) {
        let m = super::global();
        if m.extensive() {
            self.handling
                .get_or_init(|| {
                    m.grpc_handling
                        .with_label_values(&[self.typ, &self.service, &self.method])
                })
                .observe(start.elapsed().as_secs_f64());
        }
        self.count(code);
    }

    fn count(&self, code: usize) {
        self.handled[code]
            .get_or_init(|| {
                super::global().grpc_handled.with_label_values(&[
                    self.typ,
                    &self.service,
                    &self.method,
                    NAMES[code],
                ])
            })
            .inc();
    }
}

/// How many methods' counters are kept.
pub const CACHED_METHODS: usize = 256;

/// The counters of the method at `path` (`/service/method`).
fn labels(path: &str) -> Option<Arc<Labels>> {
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<Labels>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(l) = cache.read().unwrap_or_else(|e| e.into_inner()).get(path) {
        return Some(l.clone());
    }
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let l = Arc::new(Labels::new(service, method));
    let mut w = cache.write().unwrap_or_else(|e| e.into_inner());
    if w.len() < CACHED_METHODS {
        w.insert(path.to_string(), l.clone());
    }
    Some(l)
}

/// A body that counts its bytes (into `bytes`: received for a request,
/// sent for a response) and, for a response, its RPC as handled when it
/// ends.
struct Counted {
    inner: Body,
    bytes: &'static prometheus::IntCounter,
    labels: Option<Arc<Labels>>,
    start: Instant,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.inc_by(data.len() as u64);
                }
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    if let Some(l) = self.labels.take() {
                        l.handled(code_index(code.as_bytes()), self.start);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(l) = self.labels.take() {
                    l.handled(OK, self.start);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(l) = self.labels.take() {
            l.handled(CANCELED, self.start);
        }
    }
}

/// The middleware.
/// Counts the RPC `run` answers (the middleware's body, for a caller that
/// has more to do in the same layer).
pub async fn track<F, Fut>(req: axum::extract::Request, run: F) -> Response
where
    F: FnOnce(axum::extract::Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some(labels) = labels(req.uri().path()) else {
        return run(req).await;
    };
    let start = Instant::now();
    labels.started.inc();
    let m = super::global();
    let req = req.map(|inner| {
        Body::new(Counted {
            inner,
            bytes: &m.client_grpc_received,
            labels: None,
            start,
        })
    });
    let resp = run(req).await;
    if let Some(code) = resp.headers().get("grpc-status") {
        labels.handled(code_index(code.as_bytes()), start);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Counted {
            inner: body,
            bytes: &m.client_grpc_sent,
            labels: Some(labels),
            start,
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_named_as_grpc_go_names_them() {
        assert_eq!(super::code_name(b"0"), "OK");
        assert_eq!(super::code_name(b"1"), "Canceled");
        assert_eq!(super::code_name(b"14"), "Unavailable");
        assert_eq!(super::code_name(b"16"), "Unauthenticated");
        assert_eq!(super::code_name(b"99"), "Unknown");
    }
}
