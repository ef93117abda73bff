//! `strata-bench`: a load generator for etcd-API servers, shaped like
//! etcd's tools/benchmark (same subcommands and flags where they apply), so
//! strata and etcd are measured by the same client in the same run.
//!
//! Work is `--total` requests shared by `--clients` tasks over `--conns`
//! gRPC connections; each request's latency is recorded and the report is
//! etcd benchmark's: totals, requests/s, a latency histogram and
//! percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use hdrhistogram::Histogram;

#[derive(Debug, Clone)]
pub struct Common {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub total: u64,
    /// The run also ends once this file exists (polled every 10 ms): a load
    /// another program stops when its own measurement is done.
    pub stop_file: Option<std::path::PathBuf>,
    /// Latencies are recorded only once this file exists (polled every
    /// 10 ms): the load runs (connections warm) before the window another
    /// program measures.
    pub start_file: Option<std::path::PathBuf>,
}

/// A latency histogram in microseconds (3 significant digits: fixed memory
/// for runs of any length, about 100 KB a histogram for latencies up to
/// seconds).
pub type Latencies = Histogram<u64>;

/// An empty latency histogram.
pub fn latencies() -> Latencies {
    // Auto-resizing: any latency fits; 3 significant digits keep the
    // percentiles within 0.1%.
    let mut h = Histogram::new(3).expect("3 significant digits is a valid precision");
    h.auto(true);
    h
}

fn record(h: &mut Latencies, d: Duration) {
    let us = d.as_micros().min(u64::MAX as u128) as u64;
    // Auto-resize takes any u64; should a resize ever fail, the value is
    // kept at the largest trackable one rather than dropped.
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Latencies of one run, and how long it took.
#[derive(Debug, Clone)]
pub struct Report {
    pub latencies: Latencies,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            latencies: latencies(),
            errors: 0,
            elapsed: Duration::ZERO,
        }
    }
}

impl Report {
    /// Successful requests.
    pub fn count(&self) -> u64 {
        self.latencies.len()
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at percentile `p` (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.latencies.value_at_quantile(p / 100.0))
    }

    /// etcd benchmark's report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let h = &self.latencies;
        let mut out = String::new();
        let secs = |us: f64| us / 1e6;
        let (lo, hi) = if h.is_empty() {
            (0, 0)
        } else {
            (h.min(), h.max())
        };
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{:.4} secs.", self.elapsed.as_secs_f64());
        let _ = writeln!(out, "  Slowest:\t{:.4} secs.", secs(hi as f64));
        let _ = writeln!(out, "  Fastest:\t{:.4} secs.", secs(lo as f64));
        let _ = writeln!(out, "  Average:\t{:.4} secs.", secs(h.mean()));
        let _ = writeln!(out, "  Stddev:\t{:.4} secs.", secs(h.stdev()));
        let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.requests_per_sec());
        if self.errors > 0 {
            let _ = writeln!(out, "  Errors:\t{}", self.errors);
        }
        if h.is_empty() {
            return out;
        }
        let _ = writeln!(out, "\nResponse time histogram:");
        let buckets = 10;
        let step = (hi - lo) as f64 / buckets as f64;
        let mut counts = vec![0u64; buckets + 1];
        for v in h.iter_recorded() {
            let at = v.value_iterated_to().clamp(lo, hi);
            let i = if step > 0.0 {
                (((at - lo) as f64 / step) as usize).min(buckets)
            } else {
                0
            };
            counts[i] += v.count_at_value();
        }
        let max = counts.iter().copied().max().unwrap_or(1).max(1);
        for (i, c) in counts.iter().enumerate() {
            let bar = "∎".repeat((c * 40 / max) as usize);
            let mark = lo as f64 + step * i as f64;
            let _ = writeln!(out, "  {:.4} [{c}]\t|{bar}", secs(mark));
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
            let _ = writeln!(
                out,
                "  {p}% in {:.4} secs.",
                self.percentile(p).as_secs_f64()
            );
        }
        out
    }
}

/// etcd benchmark's keys: `size` bytes, the number varint-encoded at the
/// start.
pub fn make_key(n: u64, size: usize) -> Vec<u8> {
    let mut k = vec![0u8; size.max(1)];
    // Zig-zag varint of a non-negative number, as Go's PutVarint writes it.
    let mut x = n << 1;
    let mut i = 0;
    while x >= 0x80 && i < k.len() {
        k[i] = (x as u8) | 0x80;
        x >>= 7;
        i += 1;
    }
    if i < k.len() {
        k[i] = x as u8;
    }
    k
}

/// The leader's client URLs: the leader named by the first endpoint that
/// answers Status and MemberList, looked up in that member list.
pub async fn leader_endpoints(endpoints: &[String]) -> anyhow::Result<Vec<String>> {
    for ep in endpoints {
        let Ok(mut client) = Client::connect([ep], None).await else {
            continue;
        };
        let Ok(status) = client.status().await else {
            continue;
        };
        if status.leader() == 0 {
            continue;
        }
        let Ok(members) = client.member_list().await else {
            continue;
        };
        if let Some(m) = members.members().iter().find(|m| m.id() == status.leader()) {
            if !m.client_urls().is_empty() {
                return Ok(m.client_urls().to_vec());
            }
        }
    }
    anyhow::bail!("no endpoint named a leader with client URLs")
}

/// `--conns` connections, each to one endpoint, the endpoints taken in turn
/// (as etcd's benchmark dials them). A connection is a plain channel to its
/// endpoint: the client's balancer, which it puts in front of even one
/// endpoint, costs the generator a queue and a worker task per request. A
/// worker whose connection fails moves on to the next one
/// (`Conns::after`), so a run keeps going when a member dies.
async fn connect(c: &Common) -> anyhow::Result<Conns> {
    if c.endpoints.is_empty() {
        anyhow::bail!("no endpoints");
    }
    let mut out = Vec::new();
    for i in 0..c.conns.max(1) {
        let channel = dial(&c.endpoints[i % c.endpoints.len()]).await?;
        out.push(Client::from_channel(etcd_client::Channel::Tonic(channel), None).await?);
    }
    Ok(Conns(out))
}

/// A plain channel to `endpoint` (`host:port` means http).
async fn dial(endpoint: &str) -> anyhow::Result<tonic::transport::Channel> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    Ok(tonic::transport::Endpoint::from_shared(url)?
        .connect()
        .await?)
}

/// The run's connections.
struct Conns(Vec<Client>);

impl Conns {
    fn get(&self, i: usize) -> (usize, Client) {
        let i = i % self.0.len();
        (i, self.0[i].clone())
    }

    /// The connection to try after connection `i` failed a request: the
    /// next one, which is dialed to the next endpoint.
    fn after(&self, i: usize) -> (usize, Client) {
        self.get(i + 1)
    }
}

/// A flag that turns true once `file` exists (polled every 10 ms); with
/// no file, `otherwise`.
fn when_exists(
    file: Option<std::path::PathBuf>,
    otherwise: bool,
) -> Arc<std::sync::atomic::AtomicBool> {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    match file {
        None => flag.store(otherwise, Ordering::Relaxed),
        Some(f) => {
            let flag = flag.clone();
            tokio::spawn(async move {
                while !f.exists() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                flag.store(true, Ordering::Relaxed);
            });
        }
    }
    flag
}

/// Runs `op(client, request number)` `total` times over the clients.
async fn drive<F, Fut>(c: &Common, op: F) -> anyhow::Result<Report>
where
    F: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), etcd_client::Error>> + Send,
{
    let conns = Arc::new(connect(c).await?);
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let total = c.total;
    let stop = when_exists(c.stop_file.clone(), false);
    let recording = when_exists(c.start_file.clone(), true);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c.clients.max(1) {
        let conns = conns.clone();
        let next = next.clone();
        let op = op.clone();
        let stop = stop.clone();
        let recording = recording.clone();
        tasks.push(tokio::spawn(async move {
            let (mut at, mut client) = conns.get(w);
            let mut lat = latencies();
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                match op(client.clone(), n).await {
                    Ok(()) if recording.load(Ordering::Relaxed) => record(&mut lat, t.elapsed()),
                    Ok(()) => {}
                    Err(_) => {
                        errors += 1;
                        (at, client) = conns.after(at);
                    }
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, start).await
}

type Task = tokio::task::JoinHandle<(Latencies, u64)>;

/// Merges the workers' latencies and errors into one report, timed from
/// `start`.
async fn collect(tasks: Vec<Task>, start: Instant) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for t in tasks {
        let (lat, errors) = t.await?;
        report.latencies.add(&lat)?;
        report.errors += errors;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

#[derive(Debug, Clone)]
pub struct PutOpts {
    pub key_size: usize,
    pub val_size: usize,
    pub key_space_size: u64,
    pub sequential_keys: bool,
}

pub async fn put(c: &Common, o: &PutOpts) -> anyhow::Result<Report> {
    let o = o.clone();
    let value = vec![b'x'; o.val_size];
    drive(c, move |mut client, n| {
        let k = if o.sequential_keys {
            n % o.key_space_size.max(1)
        } else {
            rand::random::<u64>() % o.key_space_size.max(1)
        };
        let key = make_key(k, o.key_size);
        let value = value.clone();
        async move { client.put(key, value, None).await.map(|_| ()) }
    })
    .await
}

pub async fn range(
    c: &Common,
    key: Vec<u8>,
    end: Option<Vec<u8>>,
    serializable: bool,
) -> anyhow::Result<Report> {
    drive(c, move |mut client, _| {
        let key = key.clone();
        let mut opts = GetOptions::new();
        if let Some(e) = &end {
            opts = opts.with_range(e.clone());
        }
        if serializable {
            opts = opts.with_serializable();
        }
        async move { client.get(key, Some(opts)).await.map(|_| ()) }
    })
    .await
}

/// What one scan read.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub kvs: u64,
    /// Encoded bytes of the key-values received.
    pub bytes: u64,
    /// Messages: 1 for a unary Range, the chunks of a RangeStream.
    pub messages: u64,
    pub seconds: f64,
}

/// One Range of `[key, end)` (at most `limit` keys; 0: all), unary or
/// through etcd 3.7's `KV.RangeStream`; the answer is counted and dropped
/// as it arrives.
pub async fn scan(
    endpoint: &str,
    key: Vec<u8>,
    end: Vec<u8>,
    limit: i64,
    stream: bool,
) -> anyhow::Result<Scan> {
    use prost::Message;
    use strata_proto::etcdserverpb as pb;
    let channel = dial(endpoint).await?;
    let mut g = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    g.ready().await?;
    let req = pb::RangeRequest {
        key,
        range_end: end,
        limit,
        ..Default::default()
    };
    let codec = tonic_prost::ProstCodec::<pb::RangeRequest, pb::RangeResponse>::default();
    let mut out = Scan::default();
    let start = Instant::now();
    let mut count = |r: &pb::RangeResponse| {
        out.messages += 1;
        out.kvs += r.kvs.len() as u64;
        out.bytes += r.kvs.iter().map(|kv| kv.encoded_len() as u64).sum::<u64>();
    };
    if stream {
        let codec = tonic_prost::ProstCodec::<pb::RangeRequest, pb::RangeStreamResponse>::default();
        let path = "/etcdserverpb.KV/RangeStream".parse()?;
        let mut s = g
            .server_streaming(tonic::Request::new(req), path, codec)
            .await?
            .into_inner();
        while let Some(m) = s.message().await? {
            count(&m.range_response.unwrap_or_default());
        }
    } else {
        let path = "/etcdserverpb.KV/Range".parse()?;
        let r = g.unary(tonic::Request::new(req), path, codec).await?;
        count(r.get_ref());
    }
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

pub async fn txn_put(c: &Common, o: &PutOpts, ops: usize) -> anyhow::Result<Report> {
    let o = o.clone();
    let value = vec![b'x'; o.val_size];
    drive(c, move |mut client, n| {
        let txn_ops: Vec<TxnOp> = (0..ops.max(1) as u64)
            .map(|i| {
                let k = (n * ops as u64 + i) % o.key_space_size.max(1);
                TxnOp::put(make_key(k, o.key_size), value.clone(), None::<PutOptions>)
            })
            .collect();
        async move { client.txn(Txn::new().and_then(txn_ops)).await.map(|_| ()) }
    })
    .await
}

/// Leases: each client grants one, then keep-alives are the requests.
pub async fn lease_keepalive(c: &Common) -> anyhow::Result<Report> {
    let conns = connect(c).await?;
    let next = Arc::new(AtomicU64::new(0));
    let total = c.total;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c.clients.max(1) {
        let (_, mut client) = conns.get(w);
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = latencies();
            let mut errors = 0u64;
            let Ok(g) = client.lease_grant(30, None).await else {
                return (lat, 1);
            };
            let Ok((mut keeper, mut stream)) = client.lease_keep_alive(g.id()).await else {
                return (lat, 1);
            };
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                if keeper.keep_alive().await.is_err() {
                    errors += 1;
                    continue;
                }
                match stream.message().await {
                    Ok(Some(_)) => record(&mut lat, t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, start).await
}

/// Watch: `streams` watch streams with `watchers` watchers each on one key;
/// `total` puts to it. A request is one event delivered to one watcher; its
/// latency runs from the put's start to the event's arrival.
///
/// Both sides record times by revision (the putter when it starts each put,
/// the receivers when each event arrives) and the two are joined at the
/// end, so an event that arrives before its put's response is counted like
/// any other.
pub async fn watch(
    c: &Common,
    streams: usize,
    watchers: usize,
    val_size: usize,
) -> anyhow::Result<Report> {
    let conns = connect(c).await?;
    let key = b"strata-bench-watch".to_vec();
    let watchers = watchers.max(1);
    let mut receivers = Vec::new();
    for s in 0..streams.max(1) {
        let (_, mut client) = conns.get(s);
        let mut ws = client.watch(key.clone(), None).await?;
        for _ in 1..watchers {
            ws.watch(key.clone(), None).await?;
        }
        // Wait for every created response.
        let mut created = 0;
        while created < watchers {
            match ws.message().await? {
                Some(r) if r.created() => created += 1,
                Some(_) => {}
                None => anyhow::bail!("watch stream closed before its watchers were created"),
            }
        }
        let expected = c.total * watchers as u64;
        receivers.push(tokio::spawn(async move {
            let mut arrivals: Vec<(i64, Instant)> = Vec::new();
            while (arrivals.len() as u64) < expected {
                let Ok(Some(r)) = ws.message().await else {
                    break;
                };
                let now = Instant::now();
                for ev in r.events() {
                    arrivals.push((ev.kv().map_or(0, |kv| kv.mod_revision()), now));
                }
            }
            arrivals
        }));
    }
    let start = Instant::now();
    let (_, mut client) = conns.get(0);
    let value = vec![b'x'; val_size];
    let mut sent: std::collections::HashMap<i64, Instant> = Default::default();
    let mut report = Report::default();
    for _ in 0..c.total {
        let t = Instant::now();
        match client.put(key.clone(), value.clone(), None).await {
            Ok(r) => {
                sent.insert(r.header().map_or(0, |h| h.revision()), t);
            }
            Err(_) => report.errors += 1,
        }
    }
    for r in receivers {
        let arrivals = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .map_err(|_| anyhow::anyhow!("watch events still missing 30 s after the last put"))??;
        for (rev, at) in arrivals {
            match sent.get(&rev) {
                Some(t) => record(&mut report.latencies, at.duration_since(*t)),
                None => report.errors += 1,
            }
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_varints_padded_to_size() {
        assert_eq!(make_key(0, 4), vec![0, 0, 0, 0]);
        assert_eq!(make_key(1, 4), vec![2, 0, 0, 0]);
        assert_eq!(make_key(64, 4), vec![0x80, 1, 0, 0]);
    }

    #[test]
    fn percentiles_and_report() {
        let mut r = Report {
            elapsed: Duration::from_secs(1),
            ..Report::default()
        };
        for ms in 1..=100 {
            record(&mut r.latencies, Duration::from_millis(ms));
        }
        // Within the histogram's 3 significant digits.
        let near = |d: Duration, ms: u64| d.as_micros().abs_diff(ms as u128 * 1000) <= ms as u128;
        assert!(near(r.percentile(50.0), 50), "{:?}", r.percentile(50.0));
        assert!(near(r.percentile(99.0), 99), "{:?}", r.percentile(99.0));
        assert_eq!(r.requests_per_sec(), 100.0);
        let text = r.render();
        assert!(text.contains("Requests/sec:\t100.0000"), "{text}");
        assert!(text.contains("99% in 0.0990 secs."), "{text}");
        assert!(text.contains("Slowest:\t0.1000 secs."), "{text}");
        assert!(text.contains("Fastest:\t0.0010 secs."), "{text}");
        // The histogram's buckets hold every request.
        let counted: u64 = text
            .lines()
            .filter_map(|l| l.split_once('[')?.1.split_once(']')?.0.parse::<u64>().ok())
            .sum();
        assert_eq!(counted, 100);
    }
}
