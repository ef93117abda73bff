//! The watchable store: watchers on a key or a range, from a past revision
//! or from now.
//!
//! A watcher is in exactly one set:
//! - *synced*: caught up; gets each write's events as the write ends (the
//!   store calls [`Hub::on_write`] under its state lock, so revisions arrive
//!   in order and none can slip between catch-up and sync);
//! - *unsynced*: behind (a past start revision, or back from being a
//!   victim); [`WatchableStore::sync`] (also run by a background thread
//!   every 100 ms) sends it the history from the key bucket, whole revisions
//!   at a time, then moves it to synced;
//! - *victim*: its channel was full. Its response is held, writers never
//!   block on it, and each sync retries the send.
//!
//! Guarantees: per watcher, events are in revision order, never duplicated,
//! never missing, and all events of one revision are in one response. A
//! watcher whose next revision was compacted away gets one response with
//! `compact_revision` set and `canceled`, then is removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::index::End;
use super::interval::{Interval, IntervalTree};
use super::revision::Revision;
use super::store::{decode_kv, Observer, Store};
use super::types::{Event, EventKind};
use crate::backend::Bucket;
use crate::error::Result;

/// etcd's watch channel buffer.
pub const CHANNEL_CAPACITY: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub key: Vec<u8>,
    /// etcd's range_end rules.
    pub range_end: Vec<u8>,
    /// 0: from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    pub watch_id: i64,
    pub events: Vec<Event>,
    /// The store revision the response reflects.
    pub revision: i64,
    /// Set (with `canceled`) when the watcher's revision was compacted.
    pub compact_revision: i64,
    pub canceled: bool,
}

/// Where a watcher's responses go. `try_send` must never block: a full
/// sink makes the watcher a victim, a closed one removes it.
pub trait WatchSink: Send {
    fn try_send(&self, r: WatchResponse) -> std::result::Result<(), TrySendError<WatchResponse>>;
}

impl WatchSink for SyncSender<WatchResponse> {
    fn try_send(&self, r: WatchResponse) -> std::result::Result<(), TrySendError<WatchResponse>> {
        SyncSender::try_send(self, r)
    }
}

struct Watcher {
    key: Vec<u8>,
    end: End,
    /// The next revision this watcher must see.
    next: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    tx: Box<dyn WatchSink>,
    /// A response its full channel did not take (victims only).
    held: Option<WatchResponse>,
}

impl Watcher {
    fn matches(&self, ev: &Event) -> bool {
        let k = ev.kv.key.as_slice();
        let in_range = match &self.end {
            End::Single => k == self.key.as_slice(),
            End::Before(e) => k >= self.key.as_slice() && k < e.as_slice(),
            End::Unbounded => k >= self.key.as_slice(),
        };
        in_range
            && !(self.no_put && ev.kind == EventKind::Put)
            && !(self.no_delete && ev.kind == EventKind::Delete)
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| self.matches(e))
            .map(|e| Event {
                prev_kv: if self.prev_kv {
                    e.prev_kv.clone()
                } else {
                    None
                },
                ..e.clone()
            })
            .collect()
    }
}

#[derive(Default)]
struct Sets {
    next_id: i64,
    synced: BTreeMap<i64, Watcher>,
    unsynced: BTreeMap<i64, Watcher>,
    victims: BTreeMap<i64, Watcher>,
    /// Every watcher by what it watches: single keys in a map, ranges in
    /// an interval tree (rebuilt when ranges change; `None`: stale).
    single: HashMap<Vec<u8>, BTreeSet<i64>>,
    ranges: BTreeMap<i64, Interval>,
    tree: Option<IntervalTree>,
}

impl Sets {
    fn index(&mut self, id: i64, w: &Watcher) {
        match &w.end {
            End::Single => {
                self.single.entry(w.key.clone()).or_default().insert(id);
            }
            End::Before(e) => {
                self.ranges.insert(
                    id,
                    Interval {
                        start: w.key.clone(),
                        end: Some(e.clone()),
                        id,
                    },
                );
                self.tree = None;
            }
            End::Unbounded => {
                self.ranges.insert(
                    id,
                    Interval {
                        start: w.key.clone(),
                        end: None,
                        id,
                    },
                );
                self.tree = None;
            }
        }
    }

    /// Removes a watcher from its set and from the indexes.
    fn forget(&mut self, id: i64) -> Option<Watcher> {
        let w = self
            .synced
            .remove(&id)
            .or_else(|| self.unsynced.remove(&id))
            .or_else(|| self.victims.remove(&id))?;
        self.unindex(id, &w);
        Some(w)
    }

    fn unindex(&mut self, id: i64, w: &Watcher) {
        if let End::Single = w.end {
            if let Some(ids) = self.single.get_mut(&w.key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.single.remove(&w.key);
                }
            }
        } else if self.ranges.remove(&id).is_some() {
            self.tree = None;
        }
    }

    /// Ids of the watchers whose key or range holds `key`.
    fn watching(&mut self, key: &[u8], out: &mut Vec<i64>) {
        if let Some(ids) = self.single.get(key) {
            out.extend(ids.iter().copied());
        }
        if !self.ranges.is_empty() {
            let ranges = &self.ranges;
            self.tree
                .get_or_insert_with(|| IntervalTree::new(ranges.values().cloned().collect()))
                .stab(key, out);
        }
    }
}

/// The watchers, shared between the store's write path and sync.
#[derive(Default)]
pub struct Hub {
    sets: Mutex<Sets>,
    /// Wakes the background sync when the hub goes (it then lets go of its
    /// store at once, so the db file can be opened again right away).
    gone: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let (flag, cv) = &*self.gone;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

impl Hub {
    fn sets(&self) -> MutexGuard<'_, Sets> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for Hub {
    fn needs_prev_kv(&self) -> bool {
        self.sets().synced.values().any(|w| w.prev_kv)
    }

    fn on_write(&self, rev: i64, events: &[Event]) {
        let mut sets = self.sets();
        // Which synced watchers each event concerns, through the indexes.
        let mut mine: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        let mut ids = Vec::new();
        for ev in events {
            ids.clear();
            sets.watching(&ev.kv.key, &mut ids);
            for &id in &ids {
                if sets.synced.contains_key(&id) {
                    mine.entry(id).or_default().push(ev.clone());
                }
            }
        }
        let mut gone = Vec::new();
        let mut stuck = Vec::new();
        for (id, evs) in mine {
            let Some(w) = sets.synced.get(&id) else {
                continue;
            };
            // A watcher created with a start revision still in the future
            // sees nothing before it (etcd's minRev).
            if rev < w.next {
                continue;
            }
            let selected = w.select(&evs);
            if selected.is_empty() {
                continue;
            }
            let resp = WatchResponse {
                watch_id: id,
                events: selected,
                revision: rev,
                compact_revision: 0,
                canceled: false,
            };
            match w.tx.try_send(resp) {
                Ok(()) => {}
                Err(TrySendError::Full(r)) => stuck.push((id, r)),
                Err(TrySendError::Disconnected(_)) => gone.push(id),
            }
        }
        for w in sets.synced.values_mut() {
            w.next = w.next.max(rev + 1);
        }
        for id in gone {
            sets.forget(id);
        }
        for (id, r) in stuck {
            if let Some(mut w) = sets.synced.remove(&id) {
                w.held = Some(r);
                sets.victims.insert(id, w);
            }
        }
    }
}

/// A store with watchers. Cheap to clone.
#[derive(Clone)]
pub struct WatchableStore {
    store: Store,
    hub: Arc<Hub>,
}

impl WatchableStore {
    /// Wraps a store and starts the background sync (every 100 ms).
    pub fn new(store: Store) -> WatchableStore {
        let hub = Arc::new(Hub::default());
        let observer: Arc<dyn Observer> = hub.clone();
        store.set_observer(&observer);
        let ws = WatchableStore { store, hub };
        let weak: Weak<Hub> = Arc::downgrade(&ws.hub);
        let gone = ws.hub.gone.clone();
        let store = ws.store.clone();
        std::thread::spawn(move || loop {
            {
                let (flag, cv) = &*gone;
                let g = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (g, _) = cv
                    .wait_timeout_while(g, Duration::from_millis(100), |gone| !*gone)
                    .unwrap_or_else(|e| e.into_inner());
                if *g {
                    return;
                }
            }
            let Some(hub) = weak.upgrade() else { return };
            let _ = sync(&store, &hub);
        });
        ws
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a watcher; its responses arrive on the returned channel.
    pub fn watch(&self, req: &WatchRequest) -> (i64, Receiver<WatchResponse>) {
        self.watch_with_capacity(req, CHANNEL_CAPACITY)
    }

    pub fn watch_with_capacity(
        &self,
        req: &WatchRequest,
        capacity: usize,
    ) -> (i64, Receiver<WatchResponse>) {
        let (tx, rx) = sync_channel(capacity);
        (self.watch_into(req, Box::new(tx)), rx)
    }

    /// Creates a watcher whose responses go to `sink` (several watchers may
    /// share one). Returns its id.
    pub fn watch_into(&self, req: &WatchRequest, sink: Box<dyn WatchSink>) -> i64 {
        let tx = sink;
        // The store's state lock orders this against writes.
        let st = self.store.read_state();
        let current = st.current;
        let mut sets = self.hub.sets();
        sets.next_id += 1;
        let id = sets.next_id;
        let next = if req.start_revision <= 0 || req.start_revision > current {
            current + 1
        } else {
            req.start_revision
        };
        let w = Watcher {
            key: req.key.clone(),
            end: End::from_range_end(&req.range_end),
            next: next.max(req.start_revision),
            prev_kv: req.prev_kv,
            no_put: req.no_put,
            no_delete: req.no_delete,
            tx,
            held: None,
        };
        sets.index(id, &w);
        if w.next > current {
            sets.synced.insert(id, w);
        } else {
            sets.unsynced.insert(id, w);
        }
        drop(sets);
        drop(st);
        id
    }

    /// Reloads the store after its backend file was replaced (a snapshot
    /// from the raft leader): every synced watcher becomes unsynced, so the
    /// next sync sends it what the new file holds after its revision (or
    /// cancels it, when that was compacted away). Returns the live keys with
    /// a lease.
    pub fn reload(&self) -> Result<super::store::LeasedKeys> {
        let leased = self.store.reload(|| {
            let mut sets = self.hub.sets();
            let synced = std::mem::take(&mut sets.synced);
            sets.unsynced.extend(synced);
        })?;
        self.sync()?;
        Ok(leased)
    }

    /// Removes a watcher; false if it was not there.
    pub fn cancel(&self, id: i64) -> bool {
        self.hub.sets().forget(id).is_some()
    }

    /// The revision a progress notification for `id` may report: the store's
    /// revision if the watcher is synced, else `None`.
    pub fn progress(&self, id: i64) -> Option<i64> {
        let st = self.store.read_state();
        self.hub
            .sets()
            .synced
            .contains_key(&id)
            .then_some(st.current)
    }

    /// The store's revision if every watcher in `ids` is synced, read
    /// under one lock: every event at or below it for those watchers is
    /// then already in their channels (a write sends to synced watchers
    /// while it holds the store's state).
    pub fn progress_all(&self, ids: impl IntoIterator<Item = i64>) -> Option<i64> {
        let st = self.store.read_state();
        let sets = self.hub.sets();
        ids.into_iter()
            .all(|id| sets.synced.contains_key(&id))
            .then_some(st.current)
    }

    /// Catches unsynced watchers up and retries victims now.
    pub fn sync(&self) -> Result<()> {
        sync(&self.store, &self.hub)
    }
}

fn sync(store: &Store, hub: &Hub) -> Result<()> {
    // Same lock order as writes: the store's state, then the watchers.
    let st = store.read_state();
    let view = store.backend().read();
    let mut sets = hub.sets();
    // Victims: retry the held response.
    let ids: Vec<i64> = sets.victims.keys().copied().collect();
    for id in ids {
        let Some(mut w) = sets.victims.remove(&id) else {
            continue;
        };
        let held = w.held.take();
        let sent = match held {
            Some(r) => match w.tx.try_send(r) {
                Ok(()) => true,
                Err(TrySendError::Full(r)) => {
                    w.held = Some(r);
                    false
                }
                Err(TrySendError::Disconnected(_)) => {
                    sets.unindex(id, &w);
                    continue;
                }
            },
            None => true,
        };
        if !sent {
            sets.victims.insert(id, w);
        } else if w.next > st.current {
            sets.synced.insert(id, w);
        } else {
            sets.unsynced.insert(id, w);
        }
    }
    if sets.unsynced.is_empty() {
        return Ok(());
    }
    // One read of the history every unsynced watcher needs.
    let from = sets
        .unsynced
        .values()
        .map(|w| w.next)
        .min()
        .unwrap_or(st.current + 1)
        .max(st.compact);
    let start = Revision::new(from, 0).to_key(false);
    let end = Revision::new(st.current + 1, 0).to_key(false);
    let needs_prev = sets.unsynced.values().any(|w| w.prev_kv);
    let mut history: Vec<(i64, Event)> = Vec::new();
    for (k, v) in view.range(Bucket::Key, &start, &end, 0)? {
        let Some((rev, tombstone)) = Revision::from_key(&k) else {
            continue;
        };
        let mut kv = decode_kv(view.path(), &k, &v)?;
        if tombstone {
            kv.mod_revision = rev.main;
        }
        let prev_kv = if needs_prev {
            st.index.get(&kv.key, rev.main - 1).and_then(|f| {
                let rev_key = f.modified.to_key(false);
                let b = view.get(Bucket::Key, &rev_key).ok().flatten()?;
                decode_kv(view.path(), &rev_key, &b).ok()
            })
        } else {
            None
        };
        let kind = if tombstone {
            EventKind::Delete
        } else {
            EventKind::Put
        };
        history.push((rev.main, Event { kind, kv, prev_kv }));
    }
    let ids: Vec<i64> = sets.unsynced.keys().copied().collect();
    for id in ids {
        let Some(mut w) = sets.unsynced.remove(&id) else {
            continue;
        };
        if w.next < st.compact {
            let resp = WatchResponse {
                watch_id: id,
                events: Vec::new(),
                revision: st.current,
                compact_revision: st.compact,
                canceled: true,
            };
            let _ = w.tx.try_send(resp);
            sets.unindex(id, &w);
            continue;
        }
        let evs: Vec<Event> = history
            .iter()
            .filter(|(r, _)| *r >= w.next)
            .map(|(_, e)| e.clone())
            .collect();
        let mine = w.select(&evs);
        w.next = st.current + 1;
        if mine.is_empty() {
            sets.synced.insert(id, w);
            continue;
        }
        let resp = WatchResponse {
            watch_id: id,
            events: mine,
            revision: st.current,
            compact_revision: 0,
            canceled: false,
        };
        match w.tx.try_send(resp) {
            Ok(()) => {
                sets.synced.insert(id, w);
            }
            Err(TrySendError::Full(r)) => {
                w.held = Some(r);
                sets.victims.insert(id, w);
            }
            Err(TrySendError::Disconnected(_)) => sets.unindex(id, &w),
        }
    }
    Ok(())
}
