//! Clients that drive the cluster and record every operation with its
//! invoke and return time (µs since the run began, one clock for all).
//!
//! Client c talks to member c mod N alone, so that followers serve as
//! much as the leader. Operations, on a few keys (`k0`..): put,
//! linearizable and serializable get, delete, and compare-and-set (a txn:
//! if the key holds what this client last saw, put a new value, else get
//! it). Every value written is unique (`cC-N`). An operation that fails or
//! times out is recorded with no return when it may have changed the key
//! (its outcome is unknown), and left out when it is a read; the client
//! then reconnects after a short pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub const KEYS: usize = 5;
const OP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Put {
        value: String,
    },
    Get {
        serializable: bool,
        value: Option<String>,
    },
    /// `deleted`: how many keys the delete removed (unknown without return).
    Delete {
        deleted: Option<i64>,
    },
    /// `succeeded` None: outcome unknown; `seen`: what the else branch read.
    Cas {
        expect: Option<String>,
        new: String,
        succeeded: Option<bool>,
        seen: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Record {
    pub client: usize,
    pub member: usize,
    pub key: String,
    pub kind: Kind,
    pub invoke: u64,
    /// None: no answer (outcome unknown).
    pub ret: Option<u64>,
    /// The response header's revision.
    pub revision: Option<i64>,
    /// For a get that found the key: its mod_revision.
    pub mod_revision: Option<i64>,
}

#[derive(Debug, Default)]
pub struct History {
    pub records: Mutex<Vec<Record>>,
}

impl History {
    fn push(&self, r: Record) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs `clients` clients until `stop` is set; each one's choices come
/// from `seed` and its index.
pub async fn run(
    endpoints: Vec<String>,
    clients: usize,
    seed: u64,
    start: Instant,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let member = c % endpoints.len();
        let ep = endpoints[member].clone();
        let history = history.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            client_loop(c, member, ep, seed, start, history, stop).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn connect(ep: &str) -> Option<Client> {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(OP_TIMEOUT);
    Client::connect([ep], Some(opts)).await.ok()
}

/// [`connect`], pausing 100 ms when it fails (a loop that reconnects
/// does not spin on a member that is down).
async fn connect_or_pause(ep: &str) -> Option<Client> {
    let c = connect(ep).await;
    if c.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c
}

async fn client_loop(
    c: usize,
    member: usize,
    ep: String,
    seed: u64,
    start: Instant,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(c as u64 + 1)));
    let mut client: Option<Client> = None;
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS];
    let mut n = 0u64;
    let now = || start.elapsed().as_micros() as u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(cl) = client.as_mut() else {
            client = connect_or_pause(&ep).await;
            continue;
        };
        let k = rng.random_range(0..KEYS);
        let key = format!("k{k}");
        n += 1;
        let value = format!("c{c}-{n}");
        let roll = rng.random_range(0..100);
        let invoke = now();
        let mut rec = Record {
            client: c,
            member,
            key: key.clone(),
            kind: Kind::Put {
                value: value.clone(),
            },
            invoke,
            ret: None,
            revision: None,
            mod_revision: None,
        };
        let ok = match roll {
            0..35 => {
                let r =
                    tokio::time::timeout(OP_TIMEOUT, cl.put(key.as_str(), value.as_str(), None))
                        .await;
                match r {
                    Ok(Ok(resp)) => {
                        rec.revision = resp.header().map(|h| h.revision());
                        last_seen[k] = Some(value);
                        true
                    }
                    _ => false,
                }
            }
            35..70 => {
                let serializable = roll >= 60;
                let opts = serializable.then(|| GetOptions::new().with_serializable());
                match tokio::time::timeout(OP_TIMEOUT, cl.get(key.as_str(), opts)).await {
                    Ok(Ok(resp)) => {
                        let kv = resp.kvs().first();
                        let got = kv.map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                        rec.mod_revision = kv.map(|kv| kv.mod_revision());
                        rec.revision = resp.header().map(|h| h.revision());
                        last_seen[k] = got.clone();
                        rec.kind = Kind::Get {
                            serializable,
                            value: got,
                        };
                        true
                    }
                    _ => {
                        // A read without an answer tells nothing.
                        client = None;
                        tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
                        continue;
                    }
                }
            }
            70..80 => {
                rec.kind = Kind::Delete { deleted: None };
                match tokio::time::timeout(OP_TIMEOUT, cl.delete(key.as_str(), None)).await {
                    Ok(Ok(resp)) => {
                        rec.revision = resp.header().map(|h| h.revision());
                        rec.kind = Kind::Delete {
                            deleted: Some(resp.deleted()),
                        };
                        last_seen[k] = None;
                        true
                    }
                    _ => false,
                }
            }
            _ => {
                let expect = last_seen[k].clone();
                let cmp = match &expect {
                    Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                    None => Compare::version(key.as_str(), CompareOp::Equal, 0),
                };
                let txn = Txn::new()
                    .when([cmp])
                    .and_then([TxnOp::put(key.as_str(), value.as_str(), None)])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                rec.kind = Kind::Cas {
                    expect: expect.clone(),
                    new: value.clone(),
                    succeeded: None,
                    seen: None,
                };
                match tokio::time::timeout(OP_TIMEOUT, cl.txn(txn)).await {
                    Ok(Ok(resp)) => {
                        rec.revision = resp.header().map(|h| h.revision());
                        let seen = if resp.succeeded() {
                            None
                        } else {
                            resp.op_responses()
                                .into_iter()
                                .find_map(|r| match r {
                                    TxnOpResponse::Get(g) => Some(g.kvs().first().map(|kv| {
                                        String::from_utf8_lossy(kv.value()).into_owned()
                                    })),
                                    _ => None,
                                })
                                .flatten()
                        };
                        last_seen[k] = if resp.succeeded() {
                            Some(value.clone())
                        } else {
                            seen.clone()
                        };
                        rec.kind = Kind::Cas {
                            expect,
                            new: value,
                            succeeded: Some(resp.succeeded()),
                            seen,
                        };
                        true
                    }
                    _ => false,
                }
            }
        };
        if ok {
            rec.ret = Some(now());
        }
        history.push(rec);
        if !ok {
            client = None;
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
        }
    }
}

/// What one watcher saw: every event of the `k` prefix from revision 1,
/// across reconnects (each resumes from the revision after the last event
/// seen), and the progress notifications it asked for (one a second).
#[derive(Debug, Default)]
pub struct WatchLog {
    pub member: usize,
    /// (revision, key, value; None: a delete), in the order received.
    pub events: Vec<(i64, String, Option<String>)>,
    /// (events received before it, its revision).
    pub progress: Vec<(usize, i64)>,
    pub reconnects: usize,
    /// Responses that split one revision's events.
    pub split_revisions: Vec<i64>,
    pub canceled: Vec<String>,
}

/// Watches member `member` until `stop` is set.
pub async fn watch(member: usize, ep: String, stop: Arc<AtomicBool>) -> WatchLog {
    use etcd_client::{EventType, WatchOptions};
    let mut log = WatchLog {
        member,
        ..WatchLog::default()
    };
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            log.reconnects += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first = false;
        let Some(mut client) = connect(&ep).await else {
            continue;
        };
        let from = log.events.last().map_or(1, |e| e.0 + 1);
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(OP_TIMEOUT, client.watch("k", Some(opts))).await
        else {
            continue;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if stop.load(Ordering::Relaxed) || stream.request_progress().await.is_err() {
                        break;
                    }
                }
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        _ => break,
                    };
                    if resp.canceled() {
                        log.canceled.push(resp.cancel_reason().to_string());
                        break;
                    }
                    if resp.created() {
                        continue;
                    }
                    if resp.events().is_empty() {
                        let rev = resp.header().map_or(0, |h| h.revision());
                        log.progress.push((log.events.len(), rev));
                        continue;
                    }
                    // The last revision of a response must not go on in
                    // the next one.
                    let starts = resp.events().first().and_then(|e| e.kv()).map(|kv| kv.mod_revision());
                    if starts.is_some() && starts == log.events.last().map(|e| e.0) {
                        log.split_revisions.push(starts.unwrap_or(0));
                    }
                    for e in resp.events() {
                        let Some(kv) = e.kv() else { continue };
                        let value = match e.event_type() {
                            EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                            EventType::Delete => None,
                        };
                        log.events.push((kv.mod_revision(), String::from_utf8_lossy(kv.key()).into_owned(), value));
                    }
                }
            }
        }
    }
    log
}

/// One lease and what was seen of its key: granted with `ttl` seconds,
/// the key put with it, then read (linearizably) and its remaining TTL
/// asked every 250 ms until it is gone or the lease is three TTLs old. No
/// keepalive: the lease must expire on its own.
#[derive(Debug, Clone)]
pub struct LeaseRecord {
    pub id: i64,
    pub member: usize,
    pub key: String,
    pub ttl: i64,
    pub grant_invoke: u64,
    pub put_ret: u64,
    /// (invoke, return, the key was there)
    pub reads: Vec<(u64, u64, bool)>,
    /// (invoke, return, remaining TTL in seconds, the answering member's
    /// raft term) from TimeToLive, while the lease lives.
    pub ttls: Vec<(u64, u64, i64, u64)>,
}

/// Grants a lease every two seconds on member `member` (the two TTLs in
/// turn) and follows its key, until `stop` is set.
pub async fn leases(
    member: usize,
    ep: String,
    ttls: [i64; 2],
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<LeaseRecord> {
    let now = || start.elapsed().as_micros() as u64;
    let mut done: Vec<LeaseRecord> = Vec::new();
    let mut open: Vec<LeaseRecord> = Vec::new();
    let mut client: Option<Client> = None;
    let mut n = 0;
    let mut next_grant = now();
    while !stop.load(Ordering::Relaxed) {
        let Some(cl) = client.as_mut() else {
            client = connect_or_pause(&ep).await;
            continue;
        };
        let mut failed = false;
        if now() >= next_grant {
            next_grant = now() + 2_000_000;
            n += 1;
            let grant_invoke = now();
            let ttl = ttls[n % 2];
            let granted = tokio::time::timeout(OP_TIMEOUT, cl.lease_grant(ttl, None)).await;
            if let Ok(Ok(g)) = granted {
                let key = format!("lease/m{member}-{n}");
                let opts = etcd_client::PutOptions::new().with_lease(g.id());
                match tokio::time::timeout(OP_TIMEOUT, cl.put(key.as_str(), "v", Some(opts))).await
                {
                    Ok(Ok(_)) => open.push(LeaseRecord {
                        id: g.id(),
                        member,
                        key,
                        ttl,
                        grant_invoke,
                        put_ret: now(),
                        reads: Vec::new(),
                        ttls: Vec::new(),
                    }),
                    _ => failed = true,
                }
            } else {
                failed = true;
            }
        }
        let mut still = Vec::new();
        for mut l in open.drain(..) {
            if failed {
                still.push(l);
                continue;
            }
            let invoke = now();
            if let Ok(Ok(t)) =
                tokio::time::timeout(OP_TIMEOUT, cl.lease_time_to_live(l.id, None)).await
            {
                if t.ttl() >= 0 {
                    let term = t.header().map_or(0, |h| h.raft_term());
                    l.ttls.push((invoke, now(), t.ttl(), term));
                }
            }
            let invoke = now();
            match tokio::time::timeout(OP_TIMEOUT, cl.get(l.key.as_str(), None)).await {
                Ok(Ok(r)) => {
                    let there = !r.kvs().is_empty();
                    l.reads.push((invoke, now(), there));
                    let old = now().saturating_sub(l.grant_invoke) > 3 * l.ttl as u64 * 1_000_000;
                    if !there || old {
                        done.push(l);
                    } else {
                        still.push(l);
                    }
                }
                _ => {
                    failed = true;
                    still.push(l);
                }
            }
        }
        open = still;
        if failed {
            client = None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done.extend(open);
    done
}

/// The raft term as the members report it, each member polled every
/// 200 ms on its own (a dead member's timeouts delay no other): one
/// (time, term) each time the highest term seen goes up (a new election).
pub async fn terms(
    endpoints: Vec<String>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, u64)> {
    let mut pollers = Vec::new();
    for ep in endpoints {
        let stop = stop.clone();
        pollers.push(tokio::spawn(async move {
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let mut client: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    client = connect(&ep).await;
                }
                if let Some(c) = client.as_mut() {
                    let asked = start.elapsed().as_micros() as u64;
                    match tokio::time::timeout(Duration::from_millis(500), c.status()).await {
                        Ok(Ok(s)) => {
                            if s.raft_term() > seen.last().map_or(0, |t| t.1) {
                                seen.push((asked, s.raft_term()));
                            }
                        }
                        _ => client = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for p in pollers {
        all.extend(p.await.unwrap_or_default());
    }
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (at, term) in all {
        if term > out.last().map_or(0, |t| t.1) {
            out.push((at, term));
        }
    }
    out
}
