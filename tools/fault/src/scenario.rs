//! Fault scenarios too precise to wait for a seed to draw: each builds the
//! exact sequence of events, then checks the same invariants as a run
//! (the members start, converge to one revision and HashKV, no log holds a
//! panic). Each returns the violations found, empty when it held.
//!
//! [`reread_unsynced`]: a member killed between writing entries to its WAL
//! and syncing them still finds them there when it restarts (the page
//! cache outlives the process), and acknowledges them to the leader when
//! the leader sends them again (nothing new to write, so nothing to sync).
//! A power loss before its next sync takes them, and the leader, which
//! counted them as held, sends it a commit index past the end of its log.
//! A member must make durable what it reads back before using it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;

use crate::run::converge;
use strata_testkit::cluster::{find_shim, Cluster};
use strata_testkit::free_ports;
use strata_testkit::powerloss::Loss;

/// Waits (20 s at most) for member `i` to die at its armed crash point,
/// writing through `writer` meanwhile so that it has entries to sync.
async fn until_exit(c: &mut Cluster, i: usize, writer: usize, key: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while Instant::now() < end {
        if c.wait_exit(i, Duration::from_millis(300)).await.is_some() {
            return Ok(());
        }
        if let Ok(mut cl) = c.client(writer).await {
            let _ = cl.put(format!("{key}/{n}"), "v", None).await;
            n += 1;
        }
    }
    bail!("m{i} did not reach walBeforeFsync within 20 s")
}

/// See the module's docs. Needs the shim and a `strata` with crash points.
pub async fn reread_unsynced(bin: &Path, dir: &Path) -> Result<Vec<String>> {
    let shim = find_shim(bin).context("the shim (cargo build -p strata-fault builds it)")?;
    let _ = std::fs::remove_dir_all(dir);
    let ports = free_ports(9);
    let mut c = Cluster::start_with(bin, dir, 3, &ports, "reread", &[], Some(shim)).await?;
    converge(&mut c)
        .await
        .map_err(|e| anyhow!("the cluster did not start: {e}"))?;
    let leader = c.leader().await.ok_or_else(|| anyhow!("no leader"))?;
    let m = (leader + 1) % 3;
    // Entries written, never synced: the process dies before its fsync.
    c.kill(m);
    c.spawn(m, Some("walBeforeFsync=return"))?;
    until_exit(&mut c, m, leader, "reread/a").await?;
    // Restarted, it reads them back; the leader sends them again and is
    // answered; its next sync never happens.
    c.spawn(m, Some("walBeforeFsync=return"))?;
    until_exit(&mut c, m, leader, "reread/b").await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    c.power_loss(m, Loss::All, &mut rng)?;
    c.spawn(m, None)?;
    let mut out = Vec::new();
    if let Err(e) = converge(&mut c).await {
        out.push(e);
    }
    out.extend(c.crashed());
    out.extend(c.stop_and_find_panics());
    drop(c);
    if out.is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(out)
}
