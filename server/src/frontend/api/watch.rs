//! The Watch service: one bidirectional stream carries many watchers.
//!
//! Per stream: watch ids are the stream's own (0, 1, 2… or chosen by the
//! client); all its watchers share one bounded channel from the watchable
//! store (a full channel makes a watcher a victim there, never blocks a
//! write). Responses follow etcd: a `created` response first (header
//! revision = the store's revision at creation), events with the header
//! revision of their write, a compacted start answered by a canceled
//! response carrying `compact_revision`, progress responses (watch id -1
//! for RequestProgress, sent once every watcher of the stream is synced),
//! periodic progress notifications for watchers that asked, and fragments
//! when asked for and a response is larger than the request limit.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use strata_engine::mvcc::{self as m, watch::WatchSink};
use strata_proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;
use crate::statemachine::convert;

pub struct WatchService {
    pub srv: Arc<EtcdServer>,
}

/// Runs one step of the stream's loop and records its time in `h` (etcd
/// 3.7's watch send-loop histograms).
async fn timed(h: &prometheus::Histogram, step: impl std::future::Future<Output = bool>) -> bool {
    let start = Instant::now();
    let ok = step.await;
    h.observe(start.elapsed().as_secs_f64());
    ok
}

/// etcd's id for "no watcher" (progress responses, refused creates).
const INVALID_WATCH_ID: i64 = -1;

pub(crate) struct Sink(pub(crate) mpsc::Sender<m::WatchResponse>);

impl WatchSink for Sink {
    fn try_send(&self, r: m::WatchResponse) -> Result<(), TrySendError<m::WatchResponse>> {
        self.0.try_send(r).map_err(|e| match e {
            mpsc::error::TrySendError::Full(r) => TrySendError::Full(r),
            mpsc::error::TrySendError::Closed(r) => TrySendError::Disconnected(r),
        })
    }
}

struct Watcher {
    engine_id: i64,
    progress_notify: bool,
    fragment: bool,
    /// Events were sent since the last periodic progress notification.
    active: bool,
}

struct StreamState {
    srv: Arc<EtcdServer>,
    /// The stream's credentials, checked at each create (etcd's
    /// isWatchPermitted).
    md: tonic::metadata::MetadataMap,
    conn: Option<crate::transport::tls::incoming::ConnInfo>,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    ev_tx: mpsc::Sender<m::WatchResponse>,
    watchers: HashMap<i64, Watcher>,
    by_engine: HashMap<i64, i64>,
    next_id: i64,
    progress_pending: bool,
}

impl StreamState {
    fn header(&self, rev: i64) -> pb::ResponseHeader {
        self.srv.shared.header(rev)
    }

    async fn permitted(&self, c: &pb::WatchCreateRequest) -> Result<(), crate::errors::EtcdError> {
        let who = self.srv.who(&self.md, self.conn.as_ref()).await?;
        self.srv
            .shared
            .auth
            .check_read(who.as_ref(), &c.key, &c.range_end)
    }

    async fn send(&self, r: pb::WatchResponse) -> bool {
        self.out.send(Ok(r)).await.is_ok()
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> bool {
        let store = self.srv.shared.store.clone();
        let current = store.store().revision();
        if let Err(e) = self.permitted(&c).await {
            // etcd answers a created-and-canceled response whose reason is
            // the gRPC error's text.
            let status = tonic::Status::from(e);
            return self
                .send(pb::WatchResponse {
                    header: Some(self.header(current)),
                    watch_id: INVALID_WATCH_ID,
                    created: true,
                    canceled: true,
                    cancel_reason: format!(
                        "rpc error: code = {:?} desc = {}",
                        status.code(),
                        status.message()
                    ),
                    ..Default::default()
                })
                .await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watchers.contains_key(&id) || id < 0 {
            return self
                .send(pb::WatchResponse {
                    header: Some(self.header(current)),
                    watch_id: INVALID_WATCH_ID,
                    created: true,
                    canceled: true,
                    cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                    ..Default::default()
                })
                .await;
        }
        let no_put = c
            .filters
            .contains(&(pb::watch_create_request::FilterType::Noput as i32));
        let no_delete = c
            .filters
            .contains(&(pb::watch_create_request::FilterType::Nodelete as i32));
        // The created response goes out before any event of the watcher.
        if !self
            .send(pb::WatchResponse {
                header: Some(self.header(current)),
                watch_id: id,
                created: true,
                ..Default::default()
            })
            .await
        {
            return false;
        }
        let req = m::WatchRequest {
            key: c.key,
            range_end: c.range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            no_put,
            no_delete,
        };
        let engine_id = store.watch_into(&req, Box::new(Sink(self.ev_tx.clone())));
        self.by_engine.insert(engine_id, id);
        crate::metrics::global().watchers.inc();
        self.watchers.insert(
            id,
            Watcher {
                engine_id,
                progress_notify: c.progress_notify,
                fragment: c.fragment,
                active: false,
            },
        );
        if c.watch_id == 0 {
            self.next_id = id + 1;
        }
        true
    }

    async fn cancel(&mut self, id: i64) -> bool {
        let Some(w) = self.watchers.remove(&id) else {
            return true;
        };
        crate::metrics::global().watchers.dec();
        self.by_engine.remove(&w.engine_id);
        self.srv.shared.store.cancel(w.engine_id);
        let rev = self.srv.store().revision();
        self.send(pb::WatchResponse {
            header: Some(self.header(rev)),
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
        .await
    }

    /// The store revision if every watcher of the stream is synced.
    fn all_synced(&self) -> Option<i64> {
        let store = &self.srv.shared.store;
        store.progress_all(self.watchers.values().map(|w| w.engine_id))
    }

    /// Delivers what the engine already queued for this stream: a
    /// progress response at revision R must come after every event at or
    /// below R, and those may still wait in the queue.
    async fn flush_queued(&mut self, ev_rx: &mut mpsc::Receiver<m::WatchResponse>) -> bool {
        while let Ok(r) = ev_rx.try_recv() {
            if !self.deliver(r).await {
                return false;
            }
        }
        true
    }

    async fn progress_request(&mut self, ev_rx: &mut mpsc::Receiver<m::WatchResponse>) -> bool {
        match self.all_synced() {
            Some(rev) => {
                self.progress_pending = false;
                if !self.flush_queued(ev_rx).await {
                    return false;
                }
                self.send(pb::WatchResponse {
                    header: Some(self.header(rev)),
                    watch_id: INVALID_WATCH_ID,
                    ..Default::default()
                })
                .await
            }
            None => {
                self.progress_pending = true;
                true
            }
        }
    }

    async fn deliver(&mut self, r: m::WatchResponse) -> bool {
        let Some(&id) = self.by_engine.get(&r.watch_id) else {
            return true;
        };
        let canceled = r.canceled || r.compact_revision != 0;
        let fragment = match self.watchers.get_mut(&id) {
            Some(w) => {
                w.active = true;
                w.fragment
            }
            None => return true,
        };
        if canceled {
            if let Some(w) = self.watchers.remove(&id) {
                crate::metrics::global().watchers.dec();
                self.by_engine.remove(&w.engine_id);
            }
        }
        // etcd's compaction cancel carries no revision in its header.
        let revision = if r.compact_revision != 0 {
            0
        } else {
            r.revision
        };
        let mut resp = pb::WatchResponse {
            header: Some(self.header(revision)),
            watch_id: id,
            compact_revision: r.compact_revision,
            canceled,
            events: r.events.into_iter().map(convert::event_out).collect(),
            ..Default::default()
        };
        let limit = self.srv.cfg.max_request_bytes as usize;
        if !fragment || resp.encoded_len() < limit || resp.events.len() < 2 {
            return self.send(resp).await;
        }
        // Fragments: as many events as fit under the limit each, all but the
        // last flagged.
        let mut events = std::mem::take(&mut resp.events);
        let base = resp;
        while !events.is_empty() {
            let mut size = base.encoded_len();
            let mut n = 0;
            while n < events.len() && (n == 0 || size + events[n].encoded_len() + 8 < limit) {
                size += events[n].encoded_len() + 8;
                n += 1;
            }
            let rest = events.split_off(n);
            let part = pb::WatchResponse {
                events,
                fragment: !rest.is_empty(),
                ..base.clone()
            };
            if !self.send(part).await {
                return false;
            }
            events = rest;
        }
        true
    }

    async fn periodic_progress(&mut self, ev_rx: &mut mpsc::Receiver<m::WatchResponse>) -> bool {
        let store = self.srv.shared.store.clone();
        let mut due = Vec::new();
        for (&id, w) in self.watchers.iter_mut() {
            if w.progress_notify {
                if !w.active {
                    if let Some(rev) = store.progress(w.engine_id) {
                        due.push((id, rev));
                    }
                }
                w.active = false;
            }
        }
        if !due.is_empty() && !self.flush_queued(ev_rx).await {
            return false;
        }
        for (id, rev) in due {
            if !self
                .send(pb::WatchResponse {
                    header: Some(self.header(rev)),
                    watch_id: id,
                    ..Default::default()
                })
                .await
            {
                return false;
            }
        }
        true
    }

    fn close(&mut self) {
        for w in self.watchers.values() {
            self.srv.shared.store.cancel(w.engine_id);
        }
        crate::metrics::global()
            .watchers
            .sub(self.watchers.len() as i64);
        self.watchers.clear();
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // etcd's require-leader watch: a stream that asked for a leader is
        // ended with "no leader" once this member has had none for three
        // election timeouts in a row.
        let require_leader = req
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        let md = req.metadata().clone();
        let conn = req
            .extensions()
            .get::<crate::transport::tls::incoming::ConnInfo>()
            .cloned();
        let mut input = req.into_inner();
        let (out, out_rx) = mpsc::channel(128);
        let (ev_tx, mut ev_rx) = mpsc::channel(m::watch::CHANNEL_CAPACITY);
        let mut st = StreamState {
            srv: self.srv.clone(),
            md,
            conn,
            out,
            ev_tx,
            watchers: HashMap::new(),
            by_engine: HashMap::new(),
            next_id: 0,
            progress_pending: false,
        };
        let notify_every = self.srv.cfg.watch_progress_notify_interval;
        let election = Duration::from_millis(self.srv.cfg.election_timeout.max(1));
        let status = self.srv.shared.status.clone();
        tokio::spawn(async move {
            let mut leader_check = tokio::time::interval(election);
            let mut leaderless = 0u32;
            let mut notify = tokio::time::interval(notify_every.max(Duration::from_millis(100)));
            notify.tick().await;
            let mut pending_check = tokio::time::interval(Duration::from_millis(100));
            // A client that half-closes its side still gets its events (as
            // etcd: its receive loop ends, the stream does not); the stream
            // ends when the client goes away or the input fails.
            let mut input_open = true;
            let metrics = crate::metrics::global();
            metrics.watch_streams.inc();
            loop {
                let ok = tokio::select! {
                    msg = input.next(), if input_open => match msg {
                        None => {
                            input_open = false;
                            true
                        }
                        Some(Ok(w)) => {
                            use pb::watch_request::RequestUnion as U;
                            match w.request_union {
                                Some(U::CreateRequest(c)) => timed(&metrics.watch_send_control, st.create(c)).await,
                                Some(U::CancelRequest(c)) => timed(&metrics.watch_send_control, st.cancel(c.watch_id)).await,
                                Some(U::ProgressRequest(_)) => st.progress_request(&mut ev_rx).await,
                                None => true,
                            }
                        }
                        _ => false,
                    },
                    () = st.out.closed() => false,
                    Some(r) = ev_rx.recv() => {
                        let start = Instant::now();
                        let events = r.events.len();
                        let ok = st.deliver(r).await;
                        if events > 0 {
                            let took = start.elapsed().as_secs_f64();
                            metrics.watch_send_events.observe(took);
                            metrics.watch_send_per_event.observe(took / events as f64);
                        }
                        ok
                    }
                    _ = notify.tick() => timed(&metrics.watch_send_progress, st.periodic_progress(&mut ev_rx)).await,
                    _ = pending_check.tick(), if st.progress_pending => st.progress_request(&mut ev_rx).await,
                    _ = leader_check.tick(), if require_leader => {
                        if status.leader.load(std::sync::atomic::Ordering::Acquire) == 0 {
                            leaderless += 1;
                        } else {
                            leaderless = 0;
                        }
                        if leaderless >= 3 {
                            let _ = st.out.send(Err(crate::errors::EtcdError::NoLeader.into())).await;
                            false
                        } else {
                            true
                        }
                    }
                };
                if !ok {
                    break;
                }
            }
            st.close();
            metrics.watch_streams.dec();
        });
        let s = ReceiverStream::new(out_rx);
        Ok(Response::new(Box::pin(s.map(|r| r))))
    }
}
