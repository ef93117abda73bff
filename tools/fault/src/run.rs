//! One seeded run: start the cluster, drive the workload while faults come
//! and go, heal everything, let the members converge, read the cluster's
//! log back, and check ([`crate::check`]). The run's directory (data dirs,
//! member logs, `history.txt`) is removed when every check passed and kept
//! otherwise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{EventType, WatchOptions};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use strata_testkit::free_ports;

use crate::check::{self, Log};
use crate::faults;
use crate::workload::{self, History, Kind, Record, KEYS};
use strata_testkit::cluster::{find_shim, Cluster};

/// The TTLs of the leases the run follows, in seconds, in turn: short
/// ones expire within a run (their keys are checked gone in time), long
/// ones live through several leader changes, where a remaining TTL given
/// back whole rises far past what [`check::leases`] allows.
pub const LEASE_TTLS: [i64; 2] = [6, 30];

#[derive(Debug, Clone)]
pub struct Config {
    pub strata: PathBuf,
    /// Runs go in `dir/seed-N`.
    pub dir: PathBuf,
    pub members: usize,
    pub clients: usize,
    /// How long the workload runs under faults.
    pub duration: Duration,
    /// Fault kinds to draw from ([`faults::ALL`] names).
    pub faults: Vec<String>,
    /// Keep the run's directory even when it passed.
    pub keep: bool,
    /// More flags for every member (`--unsafe-no-fsync` shows the power
    /// loss checks failing, say).
    pub member_flags: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub ops: usize,
    pub acknowledged: usize,
    pub unknown: usize,
    /// Events the watchers received (one watcher per member).
    pub watch_events: usize,
    /// Leases granted and followed (one granter per member).
    pub leases: usize,
    /// Elections seen (the members' highest term going up).
    pub elections: usize,
    pub faults: Vec<String>,
    pub violations: Vec<String>,
    /// Set when the run was kept.
    pub kept: Option<PathBuf>,
    /// How long the closing phases took.
    pub phases: Vec<(&'static str, Duration)>,
    /// The history itself.
    pub records: Vec<Record>,
    pub took: Duration,
}

pub async fn run_seed(cfg: &Config, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let dir = cfg.dir.join(format!("seed-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ports = free_ports(3 * cfg.members);
    if ports.len() != 3 * cfg.members {
        bail!("not enough free loopback ports");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report {
        seed,
        ..Report::default()
    };
    // Leases checkpoint their remaining TTL every second, so that a
    // leader change resumes from it (the lease check relies on this).
    let shim = if cfg
        .faults
        .iter()
        .any(|f| faults::NEEDS_SHIM.contains(&f.as_str()))
    {
        Some(find_shim(&cfg.strata).context(
            "faults that need the shim, and no libstrata_fault_shim.so near the strata binary \
             or this program (cargo build -p strata-fault builds it)",
        )?)
    } else {
        None
    };
    let mut flags = vec!["--experimental-lease-checkpoint-interval", "1s"];
    flags.extend(cfg.member_flags.iter().map(String::as_str));
    let mut cluster = Cluster::start_with(
        &cfg.strata,
        &dir,
        cfg.members,
        &ports,
        &format!("fault-{seed}"),
        &flags,
        shim,
    )
    .await?;
    if !has_leader(&mut cluster, Duration::from_secs(20)).await {
        report
            .violations
            .push("no leader within 20 s of the start".into());
    }

    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let endpoints: Vec<String> = (0..cfg.members).map(|i| cluster.endpoint(i)).collect();
    let watchers: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(m, ep)| tokio::spawn(workload::watch(m, ep.clone(), stop.clone())))
        .collect();
    let leasers: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(m, ep)| {
            tokio::spawn(workload::leases(
                m,
                ep.clone(),
                LEASE_TTLS,
                t0,
                stop.clone(),
            ))
        })
        .collect();
    let terms = tokio::spawn(workload::terms(endpoints.clone(), t0, stop.clone()));
    let load = tokio::spawn(workload::run(
        endpoints,
        cfg.clients,
        seed,
        t0,
        history.clone(),
        stop.clone(),
    ));

    let end = t0 + cfg.duration;
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
    // When the whole cluster was down (µs since t0, from before the fault
    // to after its heal).
    let mut outages = Vec::new();
    while Instant::now() + Duration::from_secs(1) < end && !cfg.faults.is_empty() {
        let kind = cfg.faults[rng.random_range(0..cfg.faults.len())].clone();
        let began = t0.elapsed().as_micros() as u64;
        let f = faults::inject(&mut cluster, &kind, &mut rng).await?;
        let hold = Duration::from_millis(rng.random_range(500..3000));
        tokio::time::sleep(hold.min(end.saturating_duration_since(Instant::now()))).await;
        let note = faults::heal(&mut cluster, &f).await?;
        if f.stops_cluster() {
            outages.push((began, t0.elapsed().as_micros() as u64));
        }
        if note.contains("VIOLATION") {
            report.violations.push(format!("{}{note}", f.what));
        }
        report.faults.push(format!(
            "{:>6.1}s {}{note} for {} ms",
            (Instant::now() - t0).as_secs_f64(),
            f.what,
            hold.as_millis()
        ));
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2000))).await;
    }
    tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let mut watched = Vec::new();
    for w in watchers {
        if let Ok(w) = w.await {
            watched.push(w);
        }
    }
    report.watch_events = watched.iter().map(|w| w.events.len()).sum();
    let mut leases = Vec::new();
    for l in leasers {
        if let Ok(l) = l.await {
            leases.extend(l);
        }
    }
    report.leases = leases.len();
    let terms = terms.await.unwrap_or_default();
    report.elections = terms.len().saturating_sub(1);
    report.violations.extend(check::leases(
        &leases, &terms, &outages, 1_000_000, 1_000_000,
    ));

    // Heal whatever is left and converge.
    cluster.net.heal();
    for i in 0..cfg.members {
        if cluster.members[i].paused {
            cluster.pause(i, false)?;
        }
    }
    for c in cluster.crashed() {
        report.violations.push(c);
    }
    for i in 0..cfg.members {
        if !cluster.is_running(i) {
            cluster.spawn(i, None)?;
        }
    }
    let mut records = history.take();
    let phase = Instant::now();
    let revision = match converge(&mut cluster).await {
        Ok(rev) => Some(rev),
        Err(e) => {
            report.violations.push(e);
            None
        }
    };
    report.phases.push(("converge", phase.elapsed()));
    final_reads(&cluster, &mut records, t0).await;
    if let Some(rev) = revision {
        match read_log(&cluster, rev).await {
            Ok(log) => {
                report
                    .violations
                    .extend(check::acknowledged_in_log(&records, &log));
                report.violations.extend(check::watches(&watched, &log));
            }
            Err(e) => report
                .violations
                .push(format!("reading the log back: {e:#}")),
        }
    }
    let phase = Instant::now();
    report.violations.extend(check::linearizability(&records));
    report.phases.push(("linearizability", phase.elapsed()));
    report
        .violations
        .extend(check::serializable_reads(&records));
    report.violations.extend(cluster.stop_and_find_panics());
    drop(cluster);

    report.ops = records.len();
    report.acknowledged = records.iter().filter(|r| r.ret.is_some()).count();
    report.unknown = report.ops - report.acknowledged;
    write_history(&dir, &records, &leases, &terms, &report)?;
    if report.violations.is_empty() && !cfg.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        report.kept = Some(dir);
    }
    report.took = started.elapsed();
    report.records = records;
    Ok(report)
}

async fn has_leader(c: &mut Cluster, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if c.leader().await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Waits (30 s at most) until every member answers Status with the same
/// revision, raft applied index and leader, then compares their HashKV at
/// that (current) revision, with their compact revisions, and their
/// whole-state hashes at one applied index. Returns the revision, or what
/// was wrong.
pub async fn converge(c: &mut Cluster) -> Result<i64, String> {
    let n = c.members.len();
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < end {
        let mut revs = Vec::new();
        for i in 0..n {
            let Ok(mut cl) = c.client(i).await else { break };
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), cl.status()).await else {
                break;
            };
            let rev = s.header().map(|h| h.revision()).unwrap_or(0);
            revs.push((rev, s.raft_applied_index(), s.leader()));
        }
        last = format!("{revs:?}");
        let same = revs.len() == n
            && revs
                .iter()
                .all(|r| r.0 == revs[0].0 && r.1 == revs[0].1 && r.2 != 0 && r.2 == revs[0].2);
        if same {
            let rev = revs[0].0;
            // At that revision (leases expiring after the run still write:
            // "current" moves); a revision at or below the compact one is
            // refused as compacted (etcd 3.5), then the current one is
            // hashed and compared only if every member is still at it.
            let mut hashes = Vec::new();
            let mut moved = false;
            for i in 0..n {
                let h = match c.client(i).await {
                    Ok(mut cl) => match cl.hash_kv(rev).await {
                        Ok(h) => Ok((h.hash(), h.compact_version())),
                        Err(e) if e.to_string().contains("compacted") => {
                            match cl.hash_kv(0).await {
                                Ok(h) => {
                                    moved |= h.header().map(|h| h.revision()) != Some(rev);
                                    Ok((h.hash(), h.compact_version()))
                                }
                                Err(e) => Err(e.to_string()),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                hashes.push(h);
            }
            if moved {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            if hashes.iter().all(|h| h.is_ok() && *h == hashes[0]) {
                match whole_states(c).await {
                    Some(Ok(())) => return Ok(rev),
                    Some(Err(e)) => return Err(e),
                    // The applied index moved under the hashes: again.
                    None => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                }
            }
            return Err(format!(
                "members' HashKV differ at revision {rev}: {hashes:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!(
        "the members did not converge within 30 s of healing: (revision, applied index, leader) {last}"
    ))
}

/// Every member's whole-state hash (the Hash RPC: every bucket, not only
/// the keys) taken while all stand at one raft applied index, the same
/// before and after: None when the index moved (ask again), else whether
/// they agree.
async fn whole_states(c: &Cluster) -> Option<Result<(), String>> {
    let (index, hashes) = c.whole_state_hashes().await?;
    if hashes.iter().all(|h| *h == hashes[0]) {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "members' whole-state hashes differ at applied index {index}: {hashes:?}"
        )))
    }
}

/// A linearizable read of every key on every member, appended to the
/// history (after everything else, from a client of its own).
async fn final_reads(c: &Cluster, records: &mut Vec<Record>, t0: Instant) {
    for i in 0..c.members.len() {
        let Ok(mut cl) = c.client(i).await else {
            continue;
        };
        for k in 0..KEYS {
            let key = format!("k{k}");
            let invoke = t0.elapsed().as_micros() as u64;
            let Ok(resp) = cl.get(key.as_str(), None).await else {
                continue;
            };
            let kv = resp.kvs().first();
            records.push(Record {
                client: 1000 + i,
                member: i,
                key,
                kind: Kind::Get {
                    serializable: false,
                    value: kv.map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                },
                invoke,
                ret: Some(t0.elapsed().as_micros() as u64),
                revision: resp.header().map(|h| h.revision()),
                mod_revision: kv.map(|kv| kv.mod_revision()),
            });
        }
    }
}

/// Every event of the `k` keys from revision 1 to `upto`, from member 0's
/// watch of every key (the lease keys' revisions come in between).
async fn read_log(c: &Cluster, upto: i64) -> Result<Log> {
    let mut log = Log::new();
    if upto < 2 {
        return Ok(log);
    }
    let mut cl = c.client(0).await?;
    let opts = WatchOptions::new().with_from_key().with_start_revision(1);
    let mut stream = cl.watch("\0", Some(opts)).await?;
    let mut seen = 0i64;
    let end = Instant::now() + Duration::from_secs(30);
    while seen < upto {
        let left = end.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .context("the log was not read back within 30 s")??;
        let Some(resp) = msg else {
            bail!("the watch ended at revision {seen}")
        };
        if resp.canceled() {
            bail!("the watch was canceled: {}", resp.cancel_reason());
        }
        for e in resp.events() {
            let Some(kv) = e.kv() else { continue };
            seen = seen.max(kv.mod_revision());
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if !key.starts_with('k') {
                continue;
            }
            let value = match e.event_type() {
                EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                EventType::Delete => None,
            };
            log.entry(kv.mod_revision()).or_default().push((key, value));
            seen = seen.max(kv.mod_revision());
        }
        // A progress notification past `upto` (not the creation answer,
        // which is empty too): nothing more below it.
        if let Some(h) = resp.header() {
            if !resp.created() && resp.events().is_empty() && h.revision() >= upto {
                break;
            }
        }
    }
    Ok(log)
}

fn write_history(
    dir: &Path,
    records: &[Record],
    leases: &[workload::LeaseRecord],
    terms: &[(u64, u64)],
    report: &Report,
) -> Result<()> {
    use std::fmt::Write;
    let mut s = String::new();
    for f in &report.faults {
        let _ = writeln!(s, "fault {f}");
    }
    for (at, term) in terms {
        let _ = writeln!(s, "term {term} seen at {at}");
    }
    for l in leases {
        let _ = writeln!(
            s,
            "lease {:x} on m{} key {} ttl {} granted {} put {} reads {:?} ttls {:?}",
            l.id, l.member, l.key, l.ttl, l.grant_invoke, l.put_ret, l.reads, l.ttls
        );
    }
    for v in &report.violations {
        let _ = writeln!(s, "VIOLATION {v}");
    }
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.invoke);
    for r in sorted {
        let _ = writeln!(
            s,
            "{:>10} {:>10} c{} m{} {} {:?} rev={:?} mod={:?}",
            r.invoke,
            r.ret.map_or("?".to_string(), |t| t.to_string()),
            r.client,
            r.member,
            r.key,
            r.kind,
            r.revision,
            r.mod_revision
        );
    }
    std::fs::write(dir.join("history.txt"), s)?;
    Ok(())
}
