//! `grpc_server_started_total` and `grpc_server_handled_total` (the
//! go-grpc-prometheus names etcd exports): a middleware on the client
//! listeners' gRPC routes. An RPC counts as started when its request
//! arrives and as handled with its status code when it ends: from the
//! response headers for an error answered at once, else from the
//! trailers when the response body ends (streams included); a response
//! dropped before its trailers (the client went away) counts as
//! `Canceled`.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

/// grpc-go's names of the status codes.
fn code_name(code: &[u8]) -> &'static str {
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
    std::str::from_utf8(code)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("Unknown")
}

/// go-grpc-prometheus's grpc_type of each streaming method; the rest are
/// unary.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
            "server_stream"
        }
        _ => "unary",
    }
}

struct Labels {
    typ: &'static str,
    service: String,
    method: String,
}

impl Labels {
    fn handled(&self, code: &str) {
        super::global()
            .grpc_handled
            .with_label_values(&[self.typ, &self.service, &self.method, code])
            .inc();
    }
}

/// A response body that counts its RPC as handled when it ends.
struct Counted {
    inner: Body,
    labels: Option<Labels>,
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
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    if let Some(l) = self.labels.take() {
                        l.handled(code_name(code.as_bytes()));
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(l) = self.labels.take() {
                    l.handled("OK");
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
            l.handled("Canceled");
        }
    }
}

/// The middleware.
pub async fn track(req: axum::extract::Request, next: Next) -> Response {
    let path = req.uri().path();
    let Some((service, method)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(s, m)| (s.to_string(), m.to_string()))
    else {
        return next.run(req).await;
    };
    let labels = Labels {
        typ: grpc_type(&service, &method),
        service,
        method,
    };
    super::global()
        .grpc_started
        .with_label_values(&[labels.typ, &labels.service, &labels.method])
        .inc();
    let resp = next.run(req).await;
    if let Some(code) = resp.headers().get("grpc-status") {
        labels.handled(code_name(code.as_bytes()));
        return resp;
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Counted {
            inner: body,
            labels: Some(labels),
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
