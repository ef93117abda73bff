//! Sending raft messages to peers. The raft thread hands each Ready's
//! messages to [`PeerTransport::send`], which groups them by peer and puts
//! each group on that peer's bounded queue without waiting; a task per peer
//! (on the tokio runtime) keeps one long-lived `Peer/Raft` stream open and
//! writes the batches in order.
//!
//! Invariants:
//! - The raft thread never blocks on a peer: a full queue, or a peer whose
//!   stream is down, drops the batch and the peer is reported unreachable
//!   to raft (which then probes it again, at its own pace).
//! - Messages to one peer leave in the order raft produced them.
//! - A database snapshot (`MsgSnapshot`) is not sent on this stream: it
//!   goes with the db on its own stream ([`super::snapshot`]), one per peer
//!   at a time.

use crate::tls::dial::Dialer;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use strata_proto::peerpb as p;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{convert, snapshot};
use crate::membership::Membership;
use crate::raftnode::{Transport, TransportReport};
use strata_engine::backend::Backend;

/// Batches waiting for one peer's stream.
const QUEUE: usize = 4096;
/// How long a dead peer is left alone before the next connection attempt.
const RETRY: Duration = Duration::from_millis(100);
/// Largest frame a member sends or accepts (raft appends are capped at
/// 1 MiB of entries, but a single entry may be larger).
pub const MAX_FRAME: usize = 64 << 20;

pub struct PeerTransport {
    me: u64,
    cluster_id: u64,
    membership: Arc<Membership>,
    rt: tokio::runtime::Handle,
    queues: HashMap<u64, mpsc::Sender<Vec<Message>>>,
    reports: Arc<Mutex<Vec<TransportReport>>>,
    /// What snapshots for followers are copied from.
    backend: Backend,
    /// Peers with a snapshot on its way.
    snapshots: Arc<Mutex<HashSet<u64>>>,
    dialer: Dialer,
}

impl PeerTransport {
    pub fn new(
        me: u64,
        cluster_id: u64,
        membership: Arc<Membership>,
        rt: tokio::runtime::Handle,
        backend: Backend,
        dialer: Dialer,
    ) -> PeerTransport {
        PeerTransport {
            me,
            cluster_id,
            membership,
            rt,
            queues: HashMap::new(),
            reports: Arc::default(),
            backend,
            snapshots: Arc::default(),
            dialer,
        }
    }

    fn report(&self, r: TransportReport) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// The queue of peer `to`, its task started on first use.
    fn queue(&mut self, to: u64) -> Option<mpsc::Sender<Vec<Message>>> {
        if let Some(q) = self.queues.get(&to) {
            return Some(q.clone());
        }
        let member = self.membership.get(to)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let link = Link {
            to,
            urls: member.peer_urls,
            header: p::PeerHeader {
                cluster_id: self.cluster_id,
                from: self.me,
                to,
            },
            reports: self.reports.clone(),
            dialer: self.dialer.clone(),
        };
        self.rt.spawn(link.run(rx));
        self.queues.insert(to, tx.clone());
        Some(tx)
    }
}

impl PeerTransport {
    /// Starts sending a db snapshot to `m.to`, unless one is on its way.
    fn send_snapshot(&mut self, m: Message) {
        let to = m.to;
        let Some(member) = self.membership.get(to) else {
            self.report(TransportReport::SnapshotFailed(to));
            return;
        };
        if !self
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(to)
        {
            return;
        }
        tracing::info!(
            to = format!("{to:x}"),
            index = m
                .snapshot
                .as_ref()
                .and_then(|s| s.metadata.as_ref())
                .map_or(0, |md| md.index),
            "a follower is behind the retained log; sending it a database snapshot"
        );
        let out = snapshot::Outgoing {
            msg: m,
            header: p::PeerHeader {
                cluster_id: self.cluster_id,
                from: self.me,
                to,
            },
            urls: member.peer_urls,
            backend: self.backend.clone(),
            reports: self.reports.clone(),
            in_flight: self.snapshots.clone(),
            dialer: self.dialer.clone(),
        };
        self.rt.spawn(snapshot::send(out));
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        let mut by_peer: HashMap<u64, Vec<Message>> = HashMap::new();
        for m in msgs {
            if m.msg_type == MessageType::MsgSnapshot {
                self.send_snapshot(m);
                continue;
            }
            by_peer.entry(m.to).or_default().push(m);
        }
        for (to, batch) in by_peer {
            if to == self.me {
                continue;
            }
            match self.queue(to) {
                Some(q) => {
                    if q.try_send(batch).is_err() {
                        self.report(TransportReport::Unreachable(to));
                    }
                }
                None => {
                    tracing::warn!(
                        to = format!("{to:x}"),
                        "raft message to an unknown member dropped"
                    );
                }
            }
        }
    }

    fn reports(&mut self) -> Vec<TransportReport> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A client of the peer at `url` (None: it did not answer).
pub async fn connect(
    dialer: &Dialer,
    url: &str,
) -> Option<p::peer_client::PeerClient<tonic::transport::Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = dialer.connect(endpoint).await.ok()?;
    Some(
        p::peer_client::PeerClient::new(channel)
            .max_encoding_message_size(MAX_FRAME)
            .max_decoding_message_size(MAX_FRAME),
    )
}

/// One peer's connection.
struct Link {
    to: u64,
    urls: Vec<String>,
    header: p::PeerHeader,
    reports: Arc<Mutex<Vec<TransportReport>>>,
    dialer: Dialer,
}

impl Link {
    fn unreachable(&self) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(TransportReport::Unreachable(self.to));
    }

    /// Drops what is queued (the peer cannot take it now).
    fn drain(queue: &mut mpsc::Receiver<Vec<Message>>) -> usize {
        let mut n = 0;
        while queue.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    async fn connect(
        &self,
        attempt: usize,
    ) -> Option<p::peer_client::PeerClient<tonic::transport::Channel>> {
        connect(
            &self.dialer,
            self.urls.get(attempt % self.urls.len().max(1))?,
        )
        .await
    }

    async fn run(self, mut queue: mpsc::Receiver<Vec<Message>>) {
        let mut attempt = 0usize;
        let mut was_up = false;
        loop {
            let Some(mut client) = self.connect(attempt).await else {
                attempt += 1;
                if queue.is_closed() && queue.is_empty() {
                    return;
                }
                if Self::drain(&mut queue) > 0 || was_up {
                    self.unreachable();
                }
                if was_up {
                    tracing::warn!(
                        peer = format!("{:x}", self.to),
                        "lost the connection to a peer"
                    );
                    was_up = false;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            };
            if !was_up {
                tracing::info!(peer = format!("{:x}", self.to), "connected to a peer");
                was_up = true;
            }
            let (tx, rx) = mpsc::channel::<p::RaftBatch>(64);
            let mut call = tokio::spawn(async move { client.raft(ReceiverStream::new(rx)).await });
            loop {
                tokio::select! {
                    batch = queue.recv() => {
                        let Some(msgs) = batch else {
                            call.abort();
                            return;
                        };
                        let b = p::RaftBatch {
                            header: Some(self.header),
                            messages: msgs.iter().map(convert::to_pb).collect(),
                        };
                        if tx.send(b).await.is_err() {
                            break;
                        }
                    }
                    ended = &mut call => {
                        if let Ok(Err(status)) = ended {
                            tracing::warn!(peer = format!("{:x}", self.to), error = %status.message(), "peer stream ended");
                        }
                        break;
                    }
                }
            }
            call.abort();
            self.unreachable();
            tokio::time::sleep(RETRY).await;
        }
    }
}
