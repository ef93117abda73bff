//! The faults a run injects, one at a time, each chosen from the seed:
//! inject, hold, heal, pause. Every fault is healed before the next one,
//! so that at most one member is down or cut off at once (a three-member
//! cluster keeps its quorum between faults and usually during them).
//!
//! - `kill`, `kill-leader`: kill -9, restart on the same data dir after
//!   the hold;
//! - `pause`: SIGSTOP, SIGCONT after the hold (a long GC pause, a frozen
//!   VM);
//! - `isolate`, `isolate-leader`: the member cut off from every other, both
//!   ways (a minority partition; for the leader, the old leader keeps
//!   believing it leads until check-quorum);
//! - `partition`: the members split at random into a minority and a
//!   majority, cut from each other both ways;
//! - `bridge`: two groups cut from each other, both still connected to one
//!   member between them (with three members: two that cannot talk, both
//!   talking to the third);
//! - `one-way`: what one member sends to the others is lost, what they
//!   send it arrives;
//! - `delay`: every link slowed by the same 50-400 ms, or each (one
//!   way) by its own 0-400 ms (messages on different paths then overtake
//!   each other);
//! - `drop`: every link loses what it carries, and its connection, with a
//!   probability of 2-20% per chunk read;
//! - `crash-point`: the member restarted with one of the crash points that
//!   normal traffic reaches armed ([`CRASH_POINTS`]); it must die there
//!   (or the fault says it was not reached), and is restarted plain;
//! - `disk-full`: the member restarted with its WAL writes failing with
//!   ENOSPC after a random number of them; `fsync-error`: its WAL or db
//!   fsyncs failing with EIO after some. The member must stop accepting
//!   writes and say why in its log (checked at the heal, when the failure
//!   was reached), the others go on; the heal restarts it plain;
//! - `power-loss`: the member killed, and what a power loss could lose
//!   undone in its data dir ([`strata_testkit::powerloss`]: every unsynced write
//!   and name, or names and a random part of the unsynced sectors);
//!   restarted after the hold; `power-loss-all`: the same for every
//!   member at once (a data centre going dark: every acknowledged write
//!   was fsynced by a majority, so it must all come back);
//! - `clock-jump`: the member's wall clock stepped 30 s to 3 days ahead
//!   or back (an NTP step, a bad RTC), stepped back at the heal. Strata
//!   times leases, elections and requests on the monotonic clock; the wall
//!   clock must not matter.
//!
//! The last three need the harness's shim under every member
//! ([`NEEDS_SHIM`], [`strata_testkit::cluster::find_shim`]).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::RngExt;
use strata_engine::crashpoint::points;

use strata_testkit::cluster::Cluster;
use strata_testkit::powerloss::{Loss, Undone};

/// All unsynced changes lost, or torn, at even odds.
fn any_loss(rng: &mut StdRng) -> Loss {
    if rng.random_bool(0.5) {
        Loss::All
    } else {
        Loss::Torn
    }
}

fn loss_name(l: Loss) -> &'static str {
    match l {
        Loss::All => "all unsynced lost",
        Loss::Torn => "torn",
    }
}

fn undone(u: &Undone) -> String {
    format!(
        "{} unsynced writes undone, {} sectors kept, names undone: [{}]",
        u.writes,
        u.kept_sectors,
        u.names.join(", ")
    )
}

pub const ALL: &[&str] = &[
    "kill",
    "kill-leader",
    "pause",
    "isolate",
    "isolate-leader",
    "partition",
    "bridge",
    "one-way",
    "delay",
    "drop",
    "crash-point",
    "disk-full",
    "fsync-error",
    "power-loss",
    "power-loss-all",
    "clock-jump",
];

/// Faults that need every member to run under the shim.
pub const NEEDS_SHIM: &[&str] = &["power-loss", "power-loss-all", "clock-jump"];

/// Crash points that a member under write load reaches by itself.
pub const CRASH_POINTS: &[&str] = &[
    points::raftBeforeLeaderSend,
    points::raftBeforeSave,
    points::raftAfterSave,
    points::raftBeforeFollowerSend,
    points::beforeApplyOneEntryNormal,
    points::afterApplyOneEntryNormal,
    points::beforeCommit,
    points::afterCommit,
    points::walBeforeFsync,
    points::dbBeforeFsync,
];

/// Crash points where the WAL or the db has been written and not yet
/// synced: a power loss there has the most to lose.
pub const POWER_POINTS: &[&str] = &[points::walBeforeFsync, points::dbBeforeFsync];

/// What was done, for the report; `restart` says what healing must do.
#[derive(Debug)]
pub struct Injected {
    pub what: String,
    heal: Heal,
}

impl Injected {
    /// Every member is down until the heal: the cluster has no leader, and
    /// leases do not count down (a new leader resumes them from their
    /// checkpoints).
    pub fn stops_cluster(&self) -> bool {
        matches!(self.heal, Heal::RestartAll)
    }
}

#[derive(Debug)]
enum Heal {
    Restart(usize),
    /// Every member is down.
    RestartAll,
    /// The member was started with a crash point armed; the power goes
    /// when it is reached (or at the heal).
    /// The last field seeds the torn sectors' draw.
    PowerLossAt(usize, String, Loss, u64),
    /// The member's wall clock is off.
    Clock(usize),
    Resume(usize),
    Network,
    /// The member was started with a crash point armed.
    CrashPoint(usize, String),
    /// The member was started with a disk fault armed; its log must say
    /// this once the fault was reached.
    Disk(usize, &'static str),
}

/// Injects one fault of `kind`.
pub async fn inject(c: &mut Cluster, kind: &str, rng: &mut StdRng) -> anyhow::Result<Injected> {
    let n = c.members.len();
    let any = rng.random_range(0..n);
    let pick = |leader: Option<usize>| leader.unwrap_or(any);
    let i = match kind {
        "kill-leader" | "isolate-leader" => pick(c.leader().await),
        _ => any,
    };
    let name = c.members[i].name.clone();
    Ok(match kind {
        "kill" | "kill-leader" => {
            c.kill(i);
            Injected {
                what: format!("{kind} {name}"),
                heal: Heal::Restart(i),
            }
        }
        "pause" => {
            c.pause(i, true)?;
            Injected {
                what: format!("pause {name}"),
                heal: Heal::Resume(i),
            }
        }
        "isolate" | "isolate-leader" => {
            let others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            c.net.partition(&[i], &others);
            Injected {
                what: format!("{kind} {name}"),
                heal: Heal::Network,
            }
        }
        "partition" | "bridge" => {
            // A random order: the bridge (if any) first, then the groups.
            let mut order: Vec<usize> = (0..n).collect();
            for k in (1..n).rev() {
                order.swap(k, rng.random_range(0..=k));
            }
            let names = |g: &[usize]| {
                g.iter()
                    .map(|&m| c.members[m].name.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let what = if kind == "bridge" && n >= 3 {
                let (bridge, rest) = order.split_at(1);
                let (a, b) = rest.split_at(rest.len() / 2);
                c.net.partition(a, b);
                format!(
                    "bridge: {} | {} | {} between",
                    names(a),
                    names(b),
                    names(bridge)
                )
            } else {
                let (minority, majority) = order.split_at(((n - 1) / 2).max(1));
                c.net.partition(minority, majority);
                format!("partition: {} | {}", names(minority), names(majority))
            };
            Injected {
                what,
                heal: Heal::Network,
            }
        }
        "one-way" => {
            for j in (0..n).filter(|&j| j != i) {
                c.net.block(i, j);
            }
            Injected {
                what: format!("one-way: {name} unheard"),
                heal: Heal::Network,
            }
        }
        "delay" if rng.random_bool(0.5) => {
            let ms = rng.random_range(50..400);
            c.net.delay_all(ms);
            Injected {
                what: format!("delay {ms} ms"),
                heal: Heal::Network,
            }
        }
        "delay" => {
            let mut links = Vec::new();
            for from in 0..n {
                for to in (0..n).filter(|&t| t != from) {
                    let ms = rng.random_range(0..400);
                    c.net.delay_link(from, to, ms);
                    links.push(format!("m{from}->m{to} {ms}"));
                }
            }
            Injected {
                what: format!("delay per link (ms): {}", links.join(", ")),
                heal: Heal::Network,
            }
        }
        "drop" => {
            let pct = rng.random_range(2..=20);
            c.net.drop_all(f64::from(pct) / 100.0);
            Injected {
                what: format!("drop {pct}% of chunks (and their connections)"),
                heal: Heal::Network,
            }
        }
        "crash-point" => {
            let point = CRASH_POINTS[rng.random_range(0..CRASH_POINTS.len())];
            c.kill(i);
            c.spawn(i, Some(&format!("{point}=return")))?;
            Injected {
                what: format!("crash-point {point} on {name}"),
                heal: Heal::CrashPoint(i, point.to_string()),
            }
        }
        "disk-full" | "fsync-error" => {
            let (point, says) = match (kind, rng.random_range(0..2)) {
                ("disk-full", _) => ("wal::write", "No space left on device"),
                (_, 0) => ("wal::sync", "Input/output error"),
                _ => ("btree::commit::sync", "Input/output error"),
            };
            let after = rng.random_range(20..400);
            c.kill(i);
            c.spawn(i, Some(&format!("{point}={after}*off->return")))?;
            Injected {
                what: format!("{kind}: {point} fails after {after} on {name}"),
                heal: Heal::Disk(i, says),
            }
        }
        "power-loss" => {
            let loss = any_loss(rng);
            if rng.random_bool(0.5) {
                // Now, wherever the member is.
                let u = c.power_loss(i, loss, rng)?;
                Injected {
                    what: format!("power-loss ({}) {name}: {}", loss_name(loss), undone(&u)),
                    heal: Heal::Restart(i),
                }
            } else {
                // Between a write and its fsync (at the heal).
                let point = POWER_POINTS[rng.random_range(0..POWER_POINTS.len())];
                c.kill(i);
                c.spawn(i, Some(&format!("{point}=return")))?;
                Injected {
                    what: format!("power-loss ({}) at {point} on {name}", loss_name(loss)),
                    heal: Heal::PowerLossAt(i, point.to_string(), loss, rng.random()),
                }
            }
        }
        "power-loss-all" => {
            let mut parts = Vec::new();
            for m in 0..n {
                let loss = any_loss(rng);
                let u = c.power_loss(m, loss, rng)?;
                parts.push(format!(
                    "{} ({}): {}",
                    c.members[m].name,
                    loss_name(loss),
                    undone(&u)
                ));
            }
            Injected {
                what: format!("power-loss-all: {}", parts.join("; ")),
                heal: Heal::RestartAll,
            }
        }
        "clock-jump" => {
            let secs = rng.random_range(30..3 * 86_400i64);
            let secs = if rng.random_bool(0.5) { secs } else { -secs };
            c.set_clock(i, secs * 1_000_000_000)?;
            Injected {
                what: format!("clock-jump {name} {secs:+} s"),
                heal: Heal::Clock(i),
            }
        }
        other => anyhow::bail!("unknown fault {other:?} (known: {})", ALL.join(", ")),
    })
}

/// Undoes `f`; returns a note to add to its description (one holding
/// "VIOLATION" is one).
pub async fn heal(c: &mut Cluster, f: &Injected) -> anyhow::Result<String> {
    Ok(match &f.heal {
        Heal::Restart(i) => {
            c.spawn(*i, None)?;
            String::new()
        }
        Heal::RestartAll => {
            for i in 0..c.members.len() {
                c.spawn(i, None)?;
            }
            String::new()
        }
        Heal::PowerLossAt(i, point, loss, seed) => {
            let i = *i;
            let reached = match c.wait_exit(i, Duration::ZERO).await {
                Some(status) => format!("reached: {status}"),
                None => format!("{point} not reached"),
            };
            let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(*seed);
            let u = c.power_loss(i, *loss, &mut rng)?;
            c.spawn(i, None)?;
            format!(" ({reached}; {})", undone(&u))
        }
        Heal::Clock(i) => {
            c.set_clock(*i, 0)?;
            String::new()
        }
        Heal::Resume(i) => {
            c.pause(*i, false)?;
            String::new()
        }
        Heal::Network => {
            c.net.heal();
            String::new()
        }
        Heal::CrashPoint(i, point) => {
            let i = *i;
            let note = match c.wait_exit(i, Duration::ZERO).await {
                Some(status) => format!(" (reached: {status})"),
                None => {
                    c.kill(i);
                    format!(" (not reached; {point} killed with -9)")
                }
            };
            c.spawn(i, None)?;
            note
        }
        Heal::Disk(i, says) => {
            let i = *i;
            let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
            // This start's part of the log only.
            let this = log.rsplit("=== harness: starting").next().unwrap_or("");
            let failed = this.contains("this member stops accepting writes");
            let note = match (failed, this.contains(says)) {
                (false, _) => " (not reached)".to_string(),
                (true, true) => format!(" (reached: writes refused, the log says {says:?})"),
                (true, false) => format!(
                    " (VIOLATION: {} refused writes without saying {says:?})",
                    c.members[i].name
                ),
            };
            c.kill(i);
            c.spawn(i, None)?;
            note
        }
    })
}
