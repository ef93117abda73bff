//! Sending raft messages to peers. The raft thread hands each Ready's
//! messages to [`PeerTransport::send`], which groups them by peer and puts
//! each group on that peer's bounded queue without waiting; a task per peer
//! (on the tokio runtime) keeps one long-lived `Peer/Raft` stream open,
//! whose body takes the batches off the queue in order (no task in
//! between to wake per batch).
//!
//! Invariants:
//! - The raft thread never blocks on a peer: a full queue, or a peer whose
//!   stream is down, drops the batch and the peer is reported unreachable
//!   to raft (which then probes it again, at its own pace).
//! - Messages to one peer leave in the order raft produced them.
//! - Every member of the membership has a link, opened when the transport
//!   first sends and kept in step with the membership (a removed member's
//!   link closes, a member with new peer URLs gets a new link); each link
//!   tells the membership whether its peer is up (etcd's ActiveSince),
//!   and a peer refusing this member as removed marks it removed.
//! - A database snapshot (`MsgSnapshot`) is not sent on this stream: it
//!   goes with the db on its own stream ([`super::snapshot`]), one per peer
//!   at a time.

use crate::transport::tls::dial::Dialer;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use strata_proto::peerpb as p;
use tokio::sync::mpsc;

use super::{convert, snapshot};
use crate::raftnode::{Transport, TransportReport};
use crate::statemachine::membership::Membership;
use strata_engine::backend::Backend;

/// Batches waiting for one peer's stream.
const QUEUE: usize = 4096;
/// How long a dead peer is left alone before the next connection attempt.
const RETRY: Duration = Duration::from_millis(100);

pub struct PeerTransport {
    me: u64,
    cluster_id: u64,
    membership: Arc<Membership>,
    rt: tokio::runtime::Handle,
    queues: HashMap<u64, (mpsc::Sender<Vec<Message>>, Vec<String>)>,
    /// The membership version the links were last matched to (None:
    /// never).
    synced: Option<u64>,
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
            synced: None,
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

    /// The queue of peer `to`.
    fn queue(&mut self, to: u64) -> Option<mpsc::Sender<Vec<Message>>> {
        self.sync_links();
        self.queues.get(&to).map(|(q, _)| q.clone())
    }

    /// Matches the links to the membership: one per other member, on its
    /// current peer URLs.
    fn sync_links(&mut self) {
        let version = self.membership.version_now();
        if self.synced == Some(version) {
            return;
        }
        self.synced = Some(version);
        let members = self.membership.list();
        self.queues
            .retain(|id, (_, urls)| members.iter().any(|m| m.id == *id && m.peer_urls == *urls));
        for member in members {
            if member.id == self.me || self.queues.contains_key(&member.id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            let link = Link {
                to: member.id,
                urls: member.peer_urls.clone(),
                header: p::PeerHeader {
                    cluster_id: self.cluster_id,
                    from: self.me,
                    to: member.id,
                },
                reports: self.reports.clone(),
                dialer: self.dialer.clone(),
                membership: self.membership.clone(),
            };
            self.rt.spawn(link.run(rx));
            self.queues.insert(member.id, (tx, member.peer_urls));
        }
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
                    let n = batch.len() as u64;
                    if q.try_send(batch).is_err() {
                        crate::metrics::global().peer_send_failed(to, n);
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

/// One peer's connection.
struct Link {
    to: u64,
    urls: Vec<String>,
    header: p::PeerHeader,
    reports: Arc<Mutex<Vec<TransportReport>>>,
    dialer: Dialer,
    membership: Arc<Membership>,
}

/// What a member answers raft traffic from a member it removed.
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

impl Link {
    fn unreachable(&self) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(TransportReport::Unreachable(self.to));
    }

    /// Drops what is queued (the peer cannot take it now); how many
    /// messages that was.
    fn drain(queue: &mut mpsc::Receiver<Vec<Message>>) -> usize {
        let mut n = 0;
        while let Ok(batch) = queue.try_recv() {
            n += batch.len();
        }
        n
    }

    async fn connect(
        &self,
        attempt: usize,
    ) -> Option<p::peer_client::PeerClient<tonic::transport::Channel>> {
        super::client::connect(
            &self.dialer,
            self.urls.get(attempt % self.urls.len().max(1))?,
        )
        .await
    }

    async fn run(self, queue: mpsc::Receiver<Vec<Message>>) {
        let sent = crate::metrics::global()
            .peer_sent
            .with_label_values(&[&crate::metrics::peer_label(self.to)]);
        // Each stream's body pulls its batches from the queue itself (no
        // task between the raft thread and the connection to wake for
        // every batch); between streams this task holds it.
        let queue = Arc::new(Mutex::new(queue));
        let mut attempt = 0usize;
        let mut was_up = false;
        loop {
            let Some(mut client) = self.connect(attempt).await else {
                attempt += 1;
                {
                    let mut q = lock(&queue);
                    if q.is_closed() && q.is_empty() {
                        return;
                    }
                    let dropped = Self::drain(&mut q);
                    crate::metrics::global().peer_send_failed(self.to, dropped as u64);
                    if dropped > 0 || was_up {
                        self.unreachable();
                    }
                }
                if was_up {
                    tracing::warn!(
                        peer = format!("{:x}", self.to),
                        "lost the connection to a peer"
                    );
                    was_up = false;
                    self.membership.set_active(self.to, false);
                }
                tokio::time::sleep(RETRY).await;
                continue;
            };
            if !was_up {
                tracing::info!(peer = format!("{:x}", self.to), "connected to a peer");
                was_up = true;
                self.membership.set_active(self.to, true);
            }
            let outbox = Outbox {
                queue: queue.clone(),
                header: self.header,
                sent: sent.clone(),
            };
            let ended = client.raft(outbox).await;
            let closed = {
                let q = lock(&queue);
                q.is_closed() && q.is_empty()
            };
            if closed {
                // The member left the membership (or the transport is
                // gone): the stream ended because its queue did.
                self.membership.set_active(self.to, false);
                return;
            }
            if let Err(status) = ended {
                // What the stream carried when it broke is lost.
                crate::metrics::global().peer_send_failed(self.to, 1);
                if status.message() == REMOVED {
                    self.membership.mark_self_removed();
                }
                tracing::warn!(peer = format!("{:x}", self.to), error = %status.message(), "peer stream ended");
            }
            self.unreachable();
            tokio::time::sleep(RETRY).await;
        }
    }
}

type Queue = Mutex<mpsc::Receiver<Vec<Message>>>;

/// A peer's queue, held by its link task or by the stream reading it (a
/// poisoned lock still guards a whole queue).
fn lock(q: &Queue) -> std::sync::MutexGuard<'_, mpsc::Receiver<Vec<Message>>> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// One stream's body: the batches on a peer's queue, in order, as they
/// arrive; it ends when the queue is closed.
struct Outbox {
    queue: Arc<Queue>,
    header: p::PeerHeader,
    sent: prometheus::IntCounter,
}

impl tokio_stream::Stream for Outbox {
    type Item = p::RaftBatch;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<p::RaftBatch>> {
        let polled = lock(&self.queue).poll_recv(cx);
        polled.map(|msgs| {
            let b = p::RaftBatch {
                header: Some(self.header),
                messages: msgs?.iter().map(convert::to_pb).collect(),
            };
            self.sent.inc_by(prost::Message::encoded_len(&b) as u64);
            Some(b)
        })
    }
}
