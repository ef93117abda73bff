//! One gRPC call made in-process through the member's own gRPC router, so
//! that a gateway request meets exactly what a gRPC client's request meets
//! (the leader requirement, the learner gate, auth, metrics, size limits).
//!
//! Framing is gRPC's length-prefixed messages: a flag byte (0: not
//! compressed; the gateway never asks for compression, so a compressed
//! frame is a protocol error), a 4-byte big-endian length, the message.
//! A call's outcome is its `grpc-status`, from the response headers (a
//! trailers-only answer, as tonic gives for an error before any message)
//! or from the trailers after the last message.

use axum::body::{Body, Bytes};
use axum::http;
use http_body::Body as _;
use tonic::{Code, Status};

use crate::transport::tls::incoming::ConnInfo;

/// The gRPC frame holding `msg`.
pub fn frame(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    msg.encode(&mut out)
        .expect("a Vec grows to hold any message");
    Bytes::from(out)
}

/// The request the gRPC router sees for a gateway call to `path` (e.g.
/// `/etcdserverpb.KV/Range`): the HTTP request's connection facts travel
/// along, but for the certificate's name, its `Authorization` header becomes
/// the `authorization` metadata etcd reads a token from, and every
/// `Grpc-Metadata-<key>` header becomes metadata `<key>`, as grpc-gateway
/// forwards them.
pub fn request(
    parts: &http::request::Parts,
    path: &'static str,
    body: Body,
) -> http::Request<Body> {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static(path);
    *req.version_mut() = http::Version::HTTP_2;
    *req.extensions_mut() = parts.extensions.clone();
    // etcd's gateway is its own client: a client certificate's name never
    // becomes the caller's identity through it.
    if let Some(conn) = req.extensions_mut().get_mut::<ConnInfo>() {
        conn.cn = None;
    }
    let h = req.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    if let Some(v) = parts.headers.get(http::header::AUTHORIZATION) {
        h.insert("authorization", v.clone());
    }
    for (name, v) in &parts.headers {
        if let Some(key) = name.as_str().strip_prefix("grpc-metadata-") {
            if let Ok(key) = http::HeaderName::from_bytes(key.as_bytes()) {
                h.append(key, v.clone());
            }
        }
    }
    req
}

/// The answers of one call, message by message.
pub struct Replies {
    body: Option<Body>,
    buf: Vec<u8>,
    /// The call's outcome once known and not yet reported.
    end: Option<Status>,
}

impl Replies {
    /// Reads the call's response: an error status in its headers ends it
    /// at once.
    pub fn new(resp: http::Response<Body>) -> Replies {
        let (parts, body) = resp.into_parts();
        let end = Status::from_header_map(&parts.headers);
        let done = end.is_some();
        Replies {
            body: (!done).then_some(body),
            buf: Vec::new(),
            end,
        }
    }

    /// The next message, the call's error, or None once it ended well.
    pub async fn next(&mut self) -> Option<Result<Bytes, Status>> {
        loop {
            if let Some(msg) = self.take_frame() {
                return Some(msg);
            }
            let Some(body) = self.body.as_mut() else {
                return self.finish();
            };
            let mut body = std::pin::Pin::new(body);
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(f) => {
                        if let Some(t) = f.trailers_ref() {
                            self.end = Status::from_header_map(t);
                        }
                        self.body = None;
                    }
                },
                Some(Err(e)) => {
                    self.body = None;
                    self.end = Some(Status::unavailable(e.to_string()));
                }
                None => self.body = None,
            }
        }
    }

    fn take_frame(&mut self) -> Option<Result<Bytes, Status>> {
        if self.buf.len() < 5 {
            return None;
        }
        if self.buf[0] != 0 {
            self.body = None;
            self.buf.clear();
            return Some(Err(Status::internal("compressed gRPC frame")));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let end = 5 + len as usize;
        if self.buf.len() < end {
            return None;
        }
        let msg = Bytes::copy_from_slice(&self.buf[5..end]);
        self.buf.drain(..end);
        Some(Ok(msg))
    }

    /// After the body: a partial frame is an error, then the status.
    fn finish(&mut self) -> Option<Result<Bytes, Status>> {
        if !self.buf.is_empty() {
            self.buf.clear();
            return Some(Err(Status::internal("truncated gRPC frame")));
        }
        match self.end.take() {
            Some(s) if s.code() != Code::Ok => Some(Err(s)),
            _ => None,
        }
    }
}
