//! `KV.RangeStream` (etcd 3.7): one range answered as a stream of chunks.
//!
//! Semantics, as etcd v3.7.1 serves them:
//! - the first chunk pins the revision (the request's, or the store's when
//!   it asked for none); every later chunk reads at it, so writes after the
//!   stream began are not seen, and a compaction past it ends the stream
//!   with etcd's compacted error;
//! - chunks carry disjoint, ordered slices of the keys; header, `more` and
//!   `count` ride on the last chunk only, so merging every chunk equals the
//!   unary Range at that revision; count-only is one chunk;
//! - custom orders and revision filters are refused (`Unimplemented`, with
//!   etcd's messages); auth, learner and leader rules are Range's;
//! - a chunk's key count starts at 10 and doubles or halves to keep chunks
//!   near `--max-request-bytes`.
//!
//! Memory: each chunk is read from its own snapshot, which is released
//! before the chunk is queued; the queue holds one chunk, and the producer
//! waits while the client does not read (HTTP/2 flow control), so a stalled
//! or abandoned stream holds one chunk and no snapshot. A client that goes
//! away drops the queue and the producer stops.

use std::sync::Arc;

use strata_engine::mvcc as m;
use strata_proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tonic::Status;

use crate::errors::EtcdError;
use crate::server::EtcdServer;
use crate::statemachine::convert;

/// The first chunk's key count (etcd's).
const FIRST_CHUNK_KEYS: i64 = 10;

pub type Chunks = tokio_stream::wrappers::ReceiverStream<Result<pb::RangeStreamResponse, Status>>;

/// etcd's checkRangeStreamRequest beyond Range's own checks.
pub fn check(r: &pb::RangeRequest) -> Result<(), Status> {
    use pb::range_request::{SortOrder, SortTarget};
    let default_order = r.sort_order == SortOrder::None as i32
        || (r.sort_target == SortTarget::Key as i32 && r.sort_order == SortOrder::Ascend as i32);
    if !default_order {
        return Err(Status::unimplemented(
            "RangeStream does not support custom sort orders",
        ));
    }
    if r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
    {
        return Err(Status::unimplemented(
            "RangeStream does not support revision filters",
        ));
    }
    Ok(())
}

/// Starts the producer of `req`'s chunks (already admitted: checked,
/// authorized, after the read barrier) and returns the client's stream.
pub fn start(srv: Arc<EtcdServer>, req: m::RangeRequest) -> Chunks {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut p = Producer::new(srv, req);
        loop {
            let step = p.next_chunk();
            let last = !matches!(step, Ok((_, false)));
            let item = step.map(|(chunk, _)| pb::RangeStreamResponse {
                range_response: Some(chunk),
            });
            if tx.send(item.map_err(Status::from)).await.is_err() || last {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

struct Producer {
    srv: Arc<EtcdServer>,
    req: m::RangeRequest,
    /// The client's limit (i64::MAX for none).
    total_limit: i64,
    /// Keys sent so far.
    sent: i64,
    /// The header's revision: the store's when the first chunk was read.
    header_rev: i64,
}

impl Producer {
    fn new(srv: Arc<EtcdServer>, mut req: m::RangeRequest) -> Producer {
        // Only key order is streamed (a target with no order is key order
        // here: chunks are cut by key).
        req.sort_target = m::SortTarget::Key;
        req.sort_order = m::SortOrder::None;
        let total_limit = if req.limit <= 0 { i64::MAX } else { req.limit };
        req.limit = FIRST_CHUNK_KEYS.min(total_limit);
        Producer {
            srv,
            req,
            total_limit,
            sent: 0,
            header_rev: 0,
        }
    }

    /// The next chunk, and whether it is the last.
    fn next_chunk(&mut self) -> Result<(pb::RangeResponse, bool), EtcdError> {
        let store = self.srv.store();
        if self.req.count_only {
            let r = store.range_read(&self.req, true, false)?;
            let out = pb::RangeResponse {
                header: Some(self.srv.shared.header(r.revision)),
                count: r.count,
                ..Default::default()
            };
            return Ok((out, true));
        }
        let read = store.range_read(&self.req, false, true)?;
        if self.header_rev == 0 {
            self.header_rev = read.revision;
            if self.req.revision <= 0 {
                self.req.revision = read.revision;
            }
        }
        let mut kvs = Vec::with_capacity(read.len());
        for i in 0..read.len() {
            kvs.push(convert::kv_out(read.kv(i)?));
        }
        let more = read.more;
        let next_key = match read.len() {
            0 => None,
            n => read.key(n - 1).map(|k| {
                let mut k = k.to_vec();
                k.push(0);
                k
            }),
        };
        drop(read);
        self.sent += kvs.len() as i64;
        let mut out = pb::RangeResponse {
            kvs,
            ..Default::default()
        };
        let done = !more || self.sent == self.total_limit || next_key.is_none();
        if done {
            out.header = Some(self.srv.shared.header(self.header_rev));
            out.more = more;
            out.count = self.sent;
            if let (true, Some(from)) = (more, &next_key) {
                let rest = m::RangeRequest {
                    key: from.clone(),
                    range_end: self.req.range_end.clone(),
                    revision: self.req.revision,
                    count_only: true,
                    ..Default::default()
                };
                out.count += store.range_read(&rest, true, false)?.count;
            }
            return Ok((out, true));
        }
        let size = prost::Message::encoded_len(&out);
        let target = self.srv.cfg.max_request_bytes as usize;
        let mut limit = self.req.limit;
        if size < target / 2 {
            limit = limit.saturating_mul(2);
        } else if size > target.saturating_mul(2) {
            limit /= 2;
        }
        self.req.limit = limit.max(1).min(self.total_limit - self.sent);
        self.req.key = next_key.unwrap_or_default();
        Ok((out, false))
    }
}
