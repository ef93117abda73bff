//! The crash-point sweep: in one three-member cluster (small snapshot
//! settings, so that snapshots happen), each crash point in turn is armed
//! on the member where it can be reached, the traffic that reaches it is
//! made, and the member must die there. It is then restarted plain, and
//! the same invariants as a fault run's are checked: it starts, every
//! member converges to the same revision and HashKV, every write
//! acknowledged during the step reads back on every member, and no log
//! holds a panic.
//!
//! How each point is reached ([`trigger`]):
//! - writes: the WAL save and apply points, backend commits;
//! - a leader move to the armed member: `raftBeforeLeaderSend`;
//! - defragment on the armed member: `defragBefore*`;
//! - a compaction: `compact*`;
//! - a learner added (and removed after): the conf change points;
//! - enough writes for a local snapshot: `raftBeforeLocalSnap`...;
//! - the armed member killed, the leader's log moved past it, the member
//!   restarted: the points of receiving and installing a db snapshot;
//! - the same with the leader armed: `snapshotSendMidway`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use etcd_client::{GetOptions, MemberAddOptions};

use crate::run::converge;
use strata_testkit::cluster::Cluster;
use strata_testkit::free_ports;

/// Every crash point the sweep covers: all of them.
pub const POINTS: &[&str] = strata_engine::crashpoint::NAMES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Writes,
    BecomeLeader,
    Defrag,
    Compact,
    AddLearner,
    LocalSnapshot,
    ReceiveSnapshot,
    SendSnapshot,
}

pub fn trigger(point: &str) -> Trigger {
    match point {
        "raftBeforeLeaderSend" => Trigger::BecomeLeader,
        p if p.starts_with("defrag") => Trigger::Defrag,
        p if p.starts_with("compact") => Trigger::Compact,
        p if p.ends_with("ConfChange") => Trigger::AddLearner,
        p if p.contains("LocalSnap") || p.contains("LocalWAL") => Trigger::LocalSnapshot,
        "snapshotSendMidway" => Trigger::SendSnapshot,
        p if p.contains("Snap") || p == "raftAfterWALRelease" || p == "snapshotReceiveMidway" => {
            Trigger::ReceiveSnapshot
        }
        _ => Trigger::Writes,
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub point: String,
    pub member: String,
    pub reached: bool,
    pub writes: usize,
    pub violations: Vec<String>,
    pub took: Duration,
}

/// Runs the sweep over `points` in a cluster under `dir` (kept when a
/// point failed, removed otherwise).
pub async fn sweep(bin: &Path, dir: &Path, points: &[&str]) -> Result<Vec<Outcome>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let ports = free_ports(9);
    let extra = [
        "--snapshot-count",
        "100",
        "--snapshot-catchup-entries",
        "20",
    ];
    let mut c = Cluster::start_with(bin, dir, 3, &ports, "sweep", &extra, None).await?;
    converge(&mut c)
        .await
        .map_err(|e| anyhow!("the cluster did not start: {e}"))?;
    let mut out = Vec::new();
    for (step, point) in points.iter().enumerate() {
        let started = Instant::now();
        let mut o = Outcome {
            point: point.to_string(),
            member: String::new(),
            reached: false,
            writes: 0,
            violations: Vec::new(),
            took: Duration::ZERO,
        };
        let mut acked = Vec::new();
        match one(&mut c, point, step, &mut o, &mut acked).await {
            Ok(()) => {}
            Err(e) => o.violations.push(format!("{e:#}")),
        }
        o.writes = acked.len();
        // Whatever happened, every member runs plain again.
        for i in 0..3 {
            if !c.is_running(i) {
                if let Err(e) = c.spawn(i, None) {
                    o.violations.push(format!("restarting m{i}: {e:#}"));
                }
            }
        }
        match converge(&mut c).await {
            Ok(_) => o.violations.extend(read_back(&c, &acked).await),
            Err(e) => o.violations.push(e),
        }
        o.took = started.elapsed();
        out.push(o);
    }
    let panics = c.stop_and_find_panics();
    drop(c);
    if let Some(last) = out.last_mut() {
        last.violations.extend(panics);
    }
    if out.iter().all(|o| o.violations.is_empty()) {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(out)
}

/// One point: arm it where it can be reached, make the traffic, wait for
/// the member to die there.
async fn one(
    c: &mut Cluster,
    point: &str,
    step: usize,
    o: &mut Outcome,
    acked: &mut Vec<(String, String)>,
) -> Result<()> {
    let leader = c.leader().await.ok_or_else(|| anyhow!("no leader"))?;
    let follower = (leader + 1) % 3;
    let third = (leader + 2) % 3;
    let arm = format!("{point}=return");
    let t = trigger(point);
    // A follower; the leader points make it the leader first.
    let target = follower;
    o.member = c.members[target].name.clone();
    // Writes go through a member that stays up.
    let writer = if t == Trigger::ReceiveSnapshot || t == Trigger::SendSnapshot {
        leader
    } else {
        third
    };
    let prefix = format!("sweep/{step:02}/");
    let mut learner = None;
    match t {
        Trigger::ReceiveSnapshot => {
            c.kill(target);
            write(c, writer, &prefix, 300, acked).await?;
            c.spawn(target, Some(&arm))?;
        }
        Trigger::SendSnapshot => {
            // The armed member becomes the leader; the third member falls
            // behind and is restarted, and the new leader sends it a db.
            c.kill(target);
            c.spawn(target, Some(&arm))?;
            wait_caught_up(c, target).await?;
            let id = c
                .member_id(target)
                .await
                .ok_or_else(|| anyhow!("no id for m{target}"))?;
            c.client(leader)
                .await?
                .move_leader(id)
                .await
                .context("move-leader")?;
            c.kill(third);
            write(c, target, &prefix, 300, acked).await?;
            c.spawn(third, None)?;
        }
        _ => {
            c.kill(target);
            c.spawn(target, Some(&arm))?;
            wait_caught_up(c, target).await?;
        }
    }
    match t {
        Trigger::Writes => write(c, writer, &prefix, 50, acked).await?,
        Trigger::BecomeLeader => {
            let id = c
                .member_id(target)
                .await
                .ok_or_else(|| anyhow!("no id for m{target}"))?;
            // The move answers only once the target leads; it dies first.
            let mut cl = c.client(leader).await?;
            let _ = tokio::time::timeout(Duration::from_secs(5), cl.move_leader(id)).await;
        }
        Trigger::Defrag => {
            let mut cl = c.client(target).await?;
            let _ = tokio::time::timeout(Duration::from_secs(10), cl.defragment()).await;
        }
        Trigger::Compact => {
            write(c, writer, &prefix, 20, acked).await?;
            let mut cl = c.client(writer).await?;
            let rev = cl
                .get("x", None)
                .await?
                .header()
                .map_or(0, |h| h.revision());
            cl.compact(rev, None).await.context("compact")?;
        }
        Trigger::AddLearner => {
            let mut cl = c.client(writer).await?;
            let spare = free_ports(1)[0];
            // As etcd, a member is added only once every voting member has
            // been connected for a while ("unhealthy cluster" before).
            let end = Instant::now() + Duration::from_secs(20);
            let added = loop {
                let r = cl
                    .member_add(
                        [format!("http://127.0.0.1:{spare}")],
                        Some(MemberAddOptions::new().with_is_learner()),
                    )
                    .await;
                match r {
                    Ok(a) => break a,
                    Err(e)
                        if e.to_string().contains("unhealthy cluster") && Instant::now() < end =>
                    {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e).context("member add"),
                }
            };
            learner = added.member().map(|m| m.id());
        }
        Trigger::LocalSnapshot => write(c, writer, &prefix, 250, acked).await?,
        Trigger::ReceiveSnapshot | Trigger::SendSnapshot => {}
    }
    let exited = c.wait_exit(target, Duration::from_secs(15)).await;
    if let Some(id) = learner {
        let mut cl = c.client(writer).await?;
        cl.member_remove(id).await.context("removing the learner")?;
    }
    match exited {
        Some(status) => {
            o.reached = !status.success();
            if !o.reached {
                anyhow::bail!("m{target} exited with {status}, not at the crash point");
            }
        }
        None => anyhow::bail!("{point} was not reached on m{target} within 15 s"),
    }
    let log = std::fs::read_to_string(c.log_path(target)).unwrap_or_default();
    let said = format!("crash point {point}:");
    if !log.contains(&said) {
        anyhow::bail!("m{target} died, but its log does not say it was at {point}");
    }
    Ok(())
}

/// `n` puts through member `via`, each acknowledged one remembered.
async fn write(
    c: &Cluster,
    via: usize,
    prefix: &str,
    n: usize,
    acked: &mut Vec<(String, String)>,
) -> Result<()> {
    let mut cl = c.client(via).await?;
    let mut failed = 0;
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i:04}"), format!("v{i}"));
        match cl.put(k.as_str(), v.as_str(), None).await {
            Ok(_) => acked.push((k, v)),
            Err(_) => {
                failed += 1;
                if failed > 20 {
                    anyhow::bail!("writes through m{via} keep failing");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

/// Waits until member `i` answers a linearizable read, or has died (an
/// armed point can be reached while it replays its log).
async fn wait_caught_up(c: &mut Cluster, i: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if !c.is_running(i) {
            return Ok(());
        }
        if let Ok(mut cl) = c.client(i).await {
            if cl.get("x", None).await.is_ok() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!(
        "m{i} did not serve a linearizable read within 20 s"
    ))
}

/// Every acknowledged write, read back from every member's own store.
async fn read_back(c: &Cluster, acked: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..c.members.len() {
        let mut cl = match c.client(i).await {
            Ok(cl) => cl,
            Err(e) => {
                out.push(format!("m{i}: {e}"));
                continue;
            }
        };
        for (k, v) in acked {
            let got = cl
                .get(k.as_str(), Some(GetOptions::new().with_serializable()))
                .await
                .ok()
                .and_then(|r| r.kvs().first().map(|kv| kv.value().to_vec()));
            if got.as_deref() != Some(v.as_bytes()) {
                out.push(format!("acknowledged {k}={v} reads {got:?} on m{i}"));
                break;
            }
        }
    }
    out
}
