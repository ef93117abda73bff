//! The unary `KV.Range`, encoded while it is sent: a response of any size
//! costs the server a few pieces of it, not a list of key-values plus the
//! message plus its encoding.
//!
//! [`WithRange`] wraps the KV service; it answers `/etcdserverpb.KV/Range`
//! itself and passes every other method on. The request is admitted exactly
//! as the generated service admits it (size, key, options, barrier, auth).
//! The answer is a [`RangeRead`]: the index's entries and a pinned snapshot.
//! Its encoded size is summed first (the gRPC frame states it up front);
//! then header, key-values (each the stored `mvccpb.KeyValue` bytes, checked
//! as they are read), `more` and `count` are written in `PIECE`-sized
//! pieces to a queue of `QUEUED` that the HTTP/2 stream drains as the
//! client reads, and `grpc-status` ends the stream in trailers.
//!
//! The bytes are exactly prost's encoding of the same `RangeResponse`
//! (fields in tag order, defaults left out). An error found after the frame
//! began (a corrupt record) ends the stream with that error in the
//! trailers; the client sees the call fail, never a short message. Orders
//! by value (which need every value at once) are answered as before, by
//! the generated service's path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http;
use http_body::Frame;
use http_body_util::BodyExt;
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;
use strata_engine::mvcc as m;
use strata_proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use super::kv::{admit_range, stale_check};
use crate::server::EtcdServer;

/// The method answered here.
pub const RANGE_PATH: &str = "/etcdserverpb.KV/Range";
/// Bytes per piece handed to the HTTP/2 stream.
const PIECE: usize = 256 << 10;
/// Pieces queued ahead of the client.
const QUEUED: usize = 2;
/// grpc-go's send limit as etcd sets it (math.MaxInt32).
const MAX_SEND: usize = i32::MAX as usize;

/// The KV service with Range answered by [`serve`].
#[derive(Clone)]
pub struct WithRange<S> {
    pub inner: S,
    pub srv: Arc<EtcdServer>,
}

impl<S: NamedService> NamedService for WithRange<S> {
    const NAME: &'static str = S::NAME;
}

type Reply = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for WithRange<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Reply;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Reply {
        if req.uri().path() == RANGE_PATH {
            let srv = self.srv.clone();
            return Box::pin(async move {
                Ok(match serve(srv, req).await {
                    Ok(resp) => resp,
                    Err(status) => status.into_http(),
                })
            });
        }
        Box::pin(self.inner.call(req))
    }
}

/// The one gRPC message of a unary request body.
async fn request(body: Body, limit: usize) -> Result<pb::RangeRequest, Status> {
    let bytes = http_body_util::Limited::new(body, limit.saturating_add(5))
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Status::resource_exhausted(format!(
                    "grpc: received message larger than max (more than {limit})"
                ))
            } else {
                Status::internal(format!("reading the request: {e}"))
            }
        })?
        .to_bytes();
    let (head, msg) = bytes
        .split_at_checked(5)
        .ok_or_else(|| Status::internal("grpc: a request frame shorter than its header"))?;
    if head[0] != 0 {
        return Err(Status::unimplemented(
            "grpc: compressed requests are not accepted",
        ));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len != msg.len() {
        return Err(Status::internal(format!(
            "grpc: a request frame of {len} bytes carries {}",
            msg.len()
        )));
    }
    pb::RangeRequest::decode(msg)
        .map_err(|e| Status::internal(format!("grpc: failed to unmarshal the request: {e}")))
}

async fn serve(
    srv: Arc<EtcdServer>,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let (parts, body) = req.into_parts();
    let r = request(body, srv.recv_limit().saturating_mul(2).max(4 << 20)).await?;
    let req = tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(parts.headers),
        parts.extensions,
        r,
    );
    // Timed up to the read (etcd's Range request ends when its response
    // is built; the sending is not in it).
    let plan = super::kv::timed_request("Range", async {
        let (mr, who) = admit_range(&srv, req, false).await?;
        if !m::RangeRead::supports(&mr) {
            let resp = super::kv::materialized_range(&srv, &mr)?;
            stale_check(&srv, who.as_ref())?;
            return Ok(Err(resp));
        }
        let srv2 = srv.clone();
        let plan =
            tokio::task::spawn_blocking(move || super::kv::timed_range(|| Plan::new(&srv2, &mr)))
                .await
                .map_err(|e| Status::internal(format!("range: {e}")))??;
        stale_check(&srv, who.as_ref())?;
        Ok(Ok(plan))
    })
    .await?;
    let plan = match plan {
        Ok(plan) => plan,
        Err(whole_response) => return Ok(whole(&whole_response)),
    };
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::task::spawn_blocking(move || plan.send(tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(grpc_response(Body::new(http_body_util::StreamBody::new(
        stream,
    ))))
}

/// A response whose body is `body` (its frames and trailers).
fn grpc_response(body: Body) -> http::Response<Body> {
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

fn ok_trailers() -> Frame<Bytes> {
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from_static("0"));
    Frame::trailers(t)
}

/// A message answered whole (one frame, then the trailers).
fn whole(resp: &pb::RangeResponse) -> http::Response<Body> {
    let mut out = Vec::with_capacity(5 + resp.encoded_len());
    out.push(0);
    out.extend_from_slice(&(resp.encoded_len() as u32).to_be_bytes());
    resp.encode(&mut out).expect("a Vec grows");
    let frames = [
        Ok::<_, Status>(Frame::data(Bytes::from(out))),
        Ok(ok_trailers()),
    ];
    let stream = tokio_stream::iter(frames);
    grpc_response(Body::new(http_body_util::StreamBody::new(stream)))
}

/// The bytes a length-delimited field takes: tag, length, contents.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A resolved range and its encoded size.
struct Plan {
    read: m::RangeRead,
    header: Vec<u8>,
    size: usize,
}

impl Plan {
    fn new(srv: &EtcdServer, mr: &m::RangeRequest) -> Result<Plan, Status> {
        use crate::errors::Grpc;
        let read = srv.store().range_read(mr, true, false).grpc()?;
        let header = srv.shared.header(read.revision).encode_to_vec();
        let mut size = field_len(header.len());
        for i in 0..read.len() {
            size += field_len(read.kv_len(i).grpc()?);
        }
        if read.more {
            size += 2;
        }
        if read.count != 0 {
            size += 1 + encoded_len_varint(read.count as u64);
        }
        if size > MAX_SEND {
            return Err(Status::resource_exhausted(format!(
                "grpc: trying to send message larger than max ({size} vs. {MAX_SEND})"
            )));
        }
        Ok(Plan { read, header, size })
    }

    /// Writes the frame to `tx` (blocking: run off the async workers).
    fn send(self, tx: mpsc::Sender<Result<Frame<Bytes>, Status>>) {
        let mut out = Pieces {
            tx,
            buf: Vec::with_capacity(PIECE + 64),
        };
        match self.write(&mut out) {
            Ok(true) => {
                if out.flush() {
                    let _ = out.tx.blocking_send(Ok(ok_trailers()));
                }
            }
            // The client went away.
            Ok(false) => {}
            Err(e) => {
                let status: Status = crate::errors::EtcdError::from(e).into();
                let mut t = http::HeaderMap::new();
                if status.add_header(&mut t).is_ok() {
                    let _ = out.tx.blocking_send(Ok(Frame::trailers(t)));
                }
            }
        }
    }

    /// Ok(false): the client is gone.
    fn write(&self, out: &mut Pieces) -> strata_engine::Result<bool> {
        out.buf.push(0);
        out.buf.extend_from_slice(&(self.size as u32).to_be_bytes());
        out.buf.push(0x0a);
        encode_varint(self.header.len() as u64, &mut out.buf);
        out.buf.extend_from_slice(&self.header);
        for i in 0..self.read.len() {
            let len = self.read.kv_len(i)?;
            out.buf.push(0x12);
            encode_varint(len as u64, &mut out.buf);
            let at = out.buf.len();
            self.read.write_kv(i, &mut out.buf)?;
            if out.buf.len() - at != len {
                return Err(strata_engine::Error::Internal(format!(
                    "a key-value of {len} bytes wrote {}",
                    out.buf.len() - at
                )));
            }
            if out.buf.len() >= PIECE && !out.flush() {
                return Ok(false);
            }
        }
        if self.read.more {
            out.buf.extend_from_slice(&[0x18, 1]);
        }
        if self.read.count != 0 {
            out.buf.push(0x20);
            encode_varint(self.read.count as u64, &mut out.buf);
        }
        Ok(true)
    }
}

/// The pieces of the body on their way to the client.
struct Pieces {
    tx: mpsc::Sender<Result<Frame<Bytes>, Status>>,
    buf: Vec<u8>,
}

impl Pieces {
    /// Hands what is buffered to the stream; false if the client is gone.
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE + 64));
        self.tx
            .blocking_send(Ok(Frame::data(Bytes::from(piece))))
            .is_ok()
    }
}
