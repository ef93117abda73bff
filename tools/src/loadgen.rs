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

#[derive(Debug, Clone)]
pub struct Common {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub total: u64,
}

/// Latencies of one run, and how long it took.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn requests_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at percentile `p` (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)]
    }

    /// etcd benchmark's report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut v = self.latencies.clone();
        v.sort_unstable();
        let n = v.len().max(1) as f64;
        let secs = |d: Duration| d.as_secs_f64();
        let (avg, var) = if v.is_empty() {
            (0.0, 0.0)
        } else {
            let avg = v.iter().map(|d| secs(*d)).sum::<f64>() / n;
            (
                avg,
                v.iter().map(|d| (secs(*d) - avg).powi(2)).sum::<f64>() / n,
            )
        };
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{:.4} secs.", secs(self.elapsed));
        let _ = writeln!(
            out,
            "  Slowest:\t{:.4} secs.",
            v.last().map_or(0.0, |d| secs(*d))
        );
        let _ = writeln!(
            out,
            "  Fastest:\t{:.4} secs.",
            v.first().map_or(0.0, |d| secs(*d))
        );
        let _ = writeln!(out, "  Average:\t{avg:.4} secs.");
        let _ = writeln!(out, "  Stddev:\t{:.4} secs.", var.sqrt());
        let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.requests_per_sec());
        if self.errors > 0 {
            let _ = writeln!(out, "  Errors:\t{}", self.errors);
        }
        if let (Some(first), Some(last)) = (v.first(), v.last()) {
            let _ = writeln!(out, "\nResponse time histogram:");
            let (lo, hi) = (secs(*first), secs(*last));
            let buckets = 10;
            let step = (hi - lo) / buckets as f64;
            let mut counts = vec![0usize; buckets + 1];
            for d in &v {
                let i = if step > 0.0 {
                    (((secs(*d) - lo) / step) as usize).min(buckets)
                } else {
                    0
                };
                counts[i] += 1;
            }
            let max = *counts.iter().max().unwrap_or(&1).max(&1);
            for (i, c) in counts.iter().enumerate() {
                let bar = "∎".repeat(c * 40 / max);
                let _ = writeln!(out, "  {:.4} [{c}]\t|{bar}", lo + step * i as f64);
            }
            let _ = writeln!(out, "\nLatency distribution:");
            for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
                let _ = writeln!(out, "  {p}% in {:.4} secs.", secs(self.percentile(p)));
            }
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

async fn connect(c: &Common) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::new();
    for _ in 0..c.conns.max(1) {
        out.push(Client::connect(c.endpoints.clone(), None).await?);
    }
    Ok(out)
}

/// Runs `op(client, request number)` `total` times over the clients.
async fn drive<F, Fut>(c: &Common, op: F) -> anyhow::Result<Report>
where
    F: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), etcd_client::Error>> + Send,
{
    let conns = connect(c).await?;
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let total = c.total;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c.clients.max(1) {
        let client = conns[w % conns.len()].clone();
        let next = next.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let t = Instant::now();
                match op(client.clone(), n).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, start).await
}

type Task = tokio::task::JoinHandle<(Vec<Duration>, u64)>;

/// Merges the workers' latencies and errors into one report, timed from
/// `start`.
async fn collect(tasks: Vec<Task>, start: Instant) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for t in tasks {
        let (lat, errors) = t.await?;
        report.latencies.extend(lat);
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
        let mut client = conns[w % conns.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
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
                    Ok(Some(_)) => lat.push(t.elapsed()),
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
pub async fn watch(
    c: &Common,
    streams: usize,
    watchers: usize,
    val_size: usize,
) -> anyhow::Result<Report> {
    let conns = connect(c).await?;
    let key = b"strata-bench-watch".to_vec();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<i64, Instant>>> = Default::default();
    let mut receivers = Vec::new();
    for s in 0..streams.max(1) {
        let mut client = conns[s % conns.len()].clone();
        let mut ws = client.watch(key.clone(), None).await?;
        for _ in 1..watchers.max(1) {
            ws.watch(key.clone(), None).await?;
        }
        // Wait for every created response.
        let mut created = 0;
        while created < watchers.max(1) {
            if let Some(r) = ws.message().await? {
                if r.created() {
                    created += 1;
                }
            }
        }
        let sent = sent.clone();
        let total = c.total;
        let per_stream = total * watchers.max(1) as u64;
        receivers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while (lat.len() as u64) < per_stream {
                let Ok(Some(r)) = ws.message().await else {
                    break;
                };
                let now = Instant::now();
                for ev in r.events() {
                    let rev = ev.kv().map_or(0, |kv| kv.mod_revision());
                    if let Some(t) = sent.lock().unwrap_or_else(|e| e.into_inner()).get(&rev) {
                        lat.push(now.duration_since(*t));
                    }
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut client = conns[0].clone();
    let value = vec![b'x'; val_size];
    for _ in 0..c.total {
        let t = Instant::now();
        let r = client.put(key.clone(), value.clone(), None).await?;
        let rev = r.header().map_or(0, |h| h.revision());
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rev, t);
    }
    let mut report = Report::default();
    for r in receivers {
        let lat = tokio::time::timeout(Duration::from_secs(30), r).await??;
        report.latencies.extend(lat);
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
        let r = Report {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            errors: 0,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(r.percentile(50.0), Duration::from_millis(51));
        assert_eq!(r.percentile(99.0), Duration::from_millis(99));
        assert_eq!(r.requests_per_sec(), 100.0);
        let text = r.render();
        assert!(text.contains("Requests/sec:\t100.0000"));
        assert!(text.contains("99% in 0.0990 secs."));
    }
}
