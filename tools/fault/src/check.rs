//! The checks on one run's history and the cluster it leaves behind.
//!
//! - linearizability of the KV operations ([`crate::linearizable`]):
//!   puts, linearizable gets, deletes and compare-and-sets (serializable
//!   gets may be stale by design and are checked apart);
//! - serializable gets return only values some write offered;
//! - no acknowledged write lost, checked against the cluster's own log
//!   (every event from revision 1, read by a watch at the end): each
//!   acknowledged put, successful compare-and-set and delete that removed
//!   a key is the event at the revision its response named; each read
//!   that found a key saw the value the log holds at its mod_revision; the
//!   log holds no value that no client wrote;
//! - watch guarantees ([`watches`]): each member's watcher saw exactly
//!   the log, in order, across reconnects, no revision split, no progress
//!   notification ahead of its events;
//! - members' logs hold no panic.

use std::collections::{BTreeMap, HashSet};

use crate::linearizable::{self, Event, Op};
use crate::workload::{Kind, Record};

/// One event of the cluster's log: a put of a value, or a delete (None).
pub type LogEvent = (String, Option<String>);

/// The log, by revision.
pub type Log = BTreeMap<i64, Vec<LogEvent>>;

/// The KV operations as the checker's events.
pub fn events(records: &[Record]) -> Vec<Event> {
    let mut out = Vec::new();
    for r in records {
        let op = match &r.kind {
            Kind::Put { value } => Op::Write(value.clone()),
            Kind::Get {
                serializable: false,
                value,
            } => Op::Read(value.clone()),
            Kind::Get { .. } => continue,
            Kind::Delete { .. } => Op::Delete,
            Kind::Cas {
                expect,
                new,
                succeeded,
                seen,
            } => match succeeded {
                Some(false) => Op::CasFailed {
                    expect: expect.clone(),
                    seen: seen.clone(),
                },
                _ => Op::Cas {
                    expect: expect.clone(),
                    new: new.clone(),
                },
            },
        };
        out.push(Event {
            key: r.key.clone(),
            op,
            invoke: r.invoke,
            ret: r.ret,
        });
    }
    out
}

pub fn linearizability(records: &[Record]) -> Vec<String> {
    match linearizable::check(&events(records)) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("linearizability: {e}")],
    }
}

/// Every value some client offered to write (a put's, a compare-and-set's).
fn offered(records: &[Record]) -> HashSet<&str> {
    records
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Put { value } => Some(value.as_str()),
            Kind::Cas { new, .. } => Some(new.as_str()),
            _ => None,
        })
        .collect()
}

/// Serializable reads: only values some client offered to write.
pub fn serializable_reads(records: &[Record]) -> Vec<String> {
    let offered = offered(records);
    records
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Get {
                serializable: true,
                value: Some(v),
            } if !offered.contains(v.as_str()) => Some(format!(
                "serializable read on m{} of {} returned {v:?}, which no client wrote",
                r.member, r.key
            )),
            _ => None,
        })
        .collect()
}

/// Acknowledged writes against the cluster's log.
pub fn acknowledged_in_log(records: &[Record], log: &Log) -> Vec<String> {
    let mut out = Vec::new();
    let has = |rev: i64, ev: &LogEvent| log.get(&rev).is_some_and(|evs| evs.contains(ev));
    for r in records.iter().filter(|r| r.ret.is_some()) {
        let Some(rev) = r.revision else { continue };
        let expect: Option<LogEvent> = match &r.kind {
            Kind::Put { value } => Some((r.key.clone(), Some(value.clone()))),
            Kind::Cas {
                new,
                succeeded: Some(true),
                ..
            } => Some((r.key.clone(), Some(new.clone()))),
            Kind::Delete { deleted: Some(n) } if *n > 0 => Some((r.key.clone(), None)),
            _ => None,
        };
        if let Some(ev) = expect {
            if !has(rev, &ev) {
                out.push(format!(
                    "acknowledged write lost: client {} {:?} on {} answered revision {rev}, whose events are {:?}",
                    r.client,
                    r.kind,
                    r.key,
                    log.get(&rev)
                ));
            }
        }
        if let (Kind::Get { value: Some(v), .. }, Some(m)) = (&r.kind, r.mod_revision) {
            if !has(m, &(r.key.clone(), Some(v.clone()))) {
                out.push(format!(
                    "read on m{} of {} saw {v:?} at mod_revision {m}, whose events are {:?}",
                    r.member,
                    r.key,
                    log.get(&m)
                ));
            }
        }
    }
    let offered = offered(records);
    for (rev, evs) in log {
        for (k, v) in evs {
            if let Some(v) = v {
                if !offered.contains(v.as_str()) {
                    out.push(format!(
                        "the log holds {k}={v:?} at {rev}, which no client wrote"
                    ));
                }
            }
        }
    }
    out
}

/// Lines of the members' logs that say a thread panicked.
pub use strata_testkit::cluster::panics;

/// A copy of the history with one stale read planted: a linearizable
/// read, invoked after a put to its key had returned, that claims to see
/// the key's value from before that put. None when the history has no
/// such pair. A checker that passes the result is broken.
pub fn plant_stale_read(records: &[Record]) -> Option<Vec<Record>> {
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_key.entry(r.key.as_str()).or_default().push(r);
    }
    for (key, rs) in by_key {
        // Two puts that returned one after the other without overlap.
        let puts: Vec<&&Record> = rs
            .iter()
            .filter(|r| matches!(r.kind, Kind::Put { .. }) && r.ret.is_some())
            .collect();
        for w in puts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (Kind::Put { value: old }, Some(b_ret)) = (&a.kind, b.ret) else {
                continue;
            };
            if a.ret? >= b.invoke {
                continue;
            }
            let mut out = records.to_vec();
            out.push(Record {
                client: usize::MAX,
                member: 0,
                key: key.to_string(),
                kind: Kind::Get {
                    serializable: false,
                    value: Some(old.clone()),
                },
                invoke: b_ret + 1,
                ret: Some(b_ret + 2),
                revision: None,
                mod_revision: None,
            });
            // Something else may have written the old value back (values
            // are unique, so only a put of it could): none did.
            return Some(out);
        }
    }
    None
}

/// etcd's watch guarantees, each watcher against the log: its events are
/// exactly the log's from revision 1 up to the last it saw (ordered,
/// unique, no gap, right values, resumed without loss after reconnects);
/// no response split a revision; no progress notification claimed a
/// revision whose events had not all been delivered before it; no watch
/// was canceled.
pub fn watches(logs: &[crate::workload::WatchLog], log: &Log) -> Vec<String> {
    let flat: Vec<(i64, &String, &Option<String>)> = log
        .iter()
        .flat_map(|(rev, evs)| evs.iter().map(move |(k, v)| (*rev, k, v)))
        .collect();
    let mut out = Vec::new();
    for w in logs {
        let m = w.member;
        if let Some(i) = w
            .events
            .iter()
            .zip(flat.iter())
            .position(|(a, b)| (a.0, &a.1, &a.2) != (b.0, b.1, b.2))
        {
            out.push(format!(
                "watch on m{m}: event {i} is {:?}, the log's is {:?}",
                w.events[i], flat[i]
            ));
            continue;
        }
        if w.events.len() > flat.len() {
            out.push(format!(
                "watch on m{m}: {} events, more than the log's {}",
                w.events.len(),
                flat.len()
            ));
        }
        for rev in &w.split_revisions {
            out.push(format!(
                "watch on m{m}: revision {rev} was split over two responses"
            ));
        }
        for (seen, rev) in &w.progress {
            let due = flat.iter().take_while(|e| e.0 <= *rev).count();
            if due > *seen && due <= flat.len() && *rev <= log.keys().last().copied().unwrap_or(0) {
                out.push(format!(
                    "watch on m{m}: a progress notification at revision {rev} came after {seen} events, {due} were due"
                ));
            }
        }
        for reason in &w.canceled {
            out.push(format!("watch on m{m} canceled: {reason}"));
        }
    }
    out
}

/// Lease safety. A key put with a lease (and never kept alive) is there
/// until the lease's TTL has passed since its grant was asked for (no read
/// that returned before then finds it gone), and gone once the TTL, one
/// checkpoint interval, two election timeouts and a second of slack have
/// passed since the put returned, plus one checkpoint interval and four
/// election timeouts for each election (a term going up, `terms`) in the
/// lease's life: a new leader resumes each lease from its last
/// checkpointed remaining TTL, so a leader change costs a lease at most
/// the time since that checkpoint and the election. Time the whole cluster
/// was down (`outages`, µs intervals) is not charged to leases either, as
/// in etcd: no leader counts it. A lease given its whole TTL back by a
/// leader change late in its life overruns this.
pub fn leases(
    leases: &[crate::workload::LeaseRecord],
    terms: &[(u64, u64)],
    outages: &[(u64, u64)],
    checkpoint_us: u64,
    election_us: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    // What a leader change may cost a lease: the checkpoint interval, and
    // the time from the old leader's last committed checkpoint to the new
    // leader's promotion: up to an election timeout before a leader that
    // cannot reach its followers steps down (check-quorum), and up to two
    // more before an election (randomized timeouts, pre-vote) ends.
    let per_election = checkpoint_us + 4 * election_us;
    for l in leases {
        let ttl = l.ttl as u64 * 1_000_000;
        let earliest = l.grant_invoke + ttl;
        if let Some(&(_, ret, _)) = l.reads.iter().find(|r| !r.2 && r.1 < earliest) {
            out.push(format!(
                "lease {:x} (TTL {} s): its key {} was gone {:.2} s after the grant was asked, before its TTL",
                l.id,
                l.ttl,
                l.key,
                (ret - l.grant_invoke) as f64 / 1e6
            ));
        }
        let base = l.put_ret + ttl + per_election + 1_000_000;
        // Elections while the lease lived (a window past the base, so
        // that the elections the bound allows for are counted too).
        let window = base + 4 * per_election;
        let polled = terms
            .windows(2)
            .filter(|w| w[1].0 > l.grant_invoke && w[1].0 < window)
            .count() as u64;
        // Or as many as the lease's own TimeToLive answers show (a term
        // going up between two of them), should the pollers have missed
        // one (see below).
        let answered: u64 = l
            .ttls
            .windows(2)
            .map(|w| w[1].3.saturating_sub(w[0].3))
            .sum();
        let elections = polled.max(answered);
        let latest = base + elections * per_election + down(outages, l.grant_invoke, window);
        // The remaining TTL counts down: between two answers it may rise
        // (against the time that passed) by two seconds of rounding, and by
        // the election allowance for each election between them; a TTL
        // given back whole rises by what the lease had used.
        for w in l.ttls.windows(2) {
            let ((i0, r0, t0, term0), (i1, r1, t1, term1)) = (w[0], w[1]);
            let passed = i1.saturating_sub(r0) as i64;
            // Against what it should have counted down to (it stops at
            // 0 while an expired lease waits for its revoke).
            let expected_us = (t0 * 1_000_000 - passed).max(0);
            let rise_us = t1 * 1_000_000 - expected_us;
            // An answer holds the TTL at some moment before it returned;
            // an election is seen up to a poll (200 ms) and a status call
            // late, later still by a poller whose member is slow to answer.
            let between = terms
                .windows(2)
                .filter(|t| t[1].0 + 2_000_000 > i0 && t[1].0 < r1 + 2_000_000)
                .count() as u64;
            // The answers' own terms show an election the pollers may not
            // have seen yet (they reconnect after a restart at their own
            // pace, and stop with the run: a cluster restarted by the last
            // fault elects just before the final answers).
            let between = between.max(term1.saturating_sub(term0));
            // Two seconds of rounding: answers are whole seconds rounded
            // down, checkpoints whole seconds rounded up.
            let allowed = 2_000_000 + between * per_election + down(outages, i0, r1);
            if rise_us > allowed as i64 {
                out.push(format!(
                    "lease {:x} (TTL {} s): its remaining TTL went from {t0} s to {t1} s in {:.2} s ({between} elections between): given back",
                    l.id,
                    l.ttl,
                    passed as f64 / 1e6
                ));
                break;
            }
        }
        if let Some(&(invoke, _, _)) = l.reads.iter().find(|r| r.2 && r.0 > latest) {
            out.push(format!(
                "lease {:x} (TTL {} s): its key {} was still there {:.2} s after the put returned (allowed {:.2} s, {elections} elections)",
                l.id,
                l.ttl,
                l.key,
                (invoke - l.put_ret) as f64 / 1e6,
                (latest - l.put_ret) as f64 / 1e6
            ));
        }
    }
    out
}

/// How long the cluster was down between `from` and `to` (µs).
fn down(outages: &[(u64, u64)], from: u64, to: u64) -> u64 {
    outages
        .iter()
        .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::LeaseRecord;

    fn lease(reads: &[(f64, bool)]) -> LeaseRecord {
        let us = |s: f64| (s * 1e6) as u64;
        LeaseRecord {
            id: 1,
            member: 0,
            key: "lease/1".into(),
            ttl: 10,
            grant_invoke: 0,
            put_ret: us(0.1),
            reads: reads
                .iter()
                .map(|&(t, there)| (us(t), us(t) + 1000, there))
                .collect(),
            ttls: Vec::new(),
        }
    }

    const S: u64 = 1_000_000;

    #[test]
    fn leases_expire_neither_early_nor_late() {
        let ok = lease(&[(5.0, true), (10.5, true), (12.0, false)]);
        assert!(leases(&[ok], &[(0, 2)], &[], S, S).is_empty());
        let early = lease(&[(5.0, true), (9.0, false)]);
        assert!(leases(&[early], &[(0, 2)], &[], S, S)[0].contains("before its TTL"));
        // TTL + one election's allowance (5 s) + 1 s after the put.
        let late = lease(&[(5.0, true), (16.5, true)]);
        assert!(leases(&[late], &[(0, 2)], &[], S, S)[0].contains("still there"));
        // One election in the lease's life allows five seconds more.
        let terms = [(0, 2), (6 * S, 3)];
        let after_election = lease(&[(5.0, true), (20.5, true), (21.0, false)]);
        assert!(leases(std::slice::from_ref(&after_election), &terms, &[], S, S).is_empty());
        // The same election seen only in the lease's own answers' terms.
        let mut unpolled = after_election;
        unpolled.ttls = vec![(5 * S, 5 * S + 1, 5, 2), (8 * S, 8 * S + 1, 6, 3)];
        assert!(leases(&[unpolled], &[(0, 2)], &[], S, S).is_empty());
        let later = lease(&[(5.0, true), (21.5, true)]);
        assert!(leases(&[later], &terms, &[], S, S)[0].contains("still there"));
    }

    #[test]
    fn a_remaining_ttl_given_back_is_caught() {
        let us = |s: f64| (s * 1e6) as u64;
        let mut l = lease(&[]);
        // Counting down, one election between 6.0 and 6.25 s: a rise of
        // up to 2 + 5 s is allowed there.
        l.ttls = vec![
            (us(5.0), us(5.01), 5, 2),
            (us(6.0), us(6.01), 4, 2),
            (us(6.25), us(6.26), 6, 3),
        ];
        let terms = [(0, 2), (us(6.1), 3)];
        assert!(leases(&[l.clone()], &terms, &[], S, S).is_empty());
        // The whole TTL back at that election.
        l.ttls.push((us(11.0), us(11.01), 10, 3));
        assert!(leases(&[l.clone()], &terms, &[], S, S)[0].contains("given back"));
        // Any rise without an election.
        l.ttls = vec![(us(2.0), us(2.01), 5, 2), (us(2.25), us(2.26), 8, 2)];
        assert!(leases(&[l.clone()], &terms, &[], S, S)[0].contains("given back"));
        // An election the pollers did not see, shown by the answers' terms
        // (a whole cluster restarted just before the run's end).
        l.ttls = vec![(us(13.3), us(13.31), 22, 2), (us(16.6), us(16.61), 22, 3)];
        assert!(leases(&[l.clone()], &terms, &[], S, S).is_empty());
        l.ttls = vec![(us(13.3), us(13.31), 22, 3), (us(16.6), us(16.61), 22, 3)];
        assert!(leases(&[l], &terms, &[], S, S)[0].contains("given back"));
    }

    #[test]
    fn time_the_whole_cluster_was_down_is_not_charged_to_leases() {
        let us = |s: f64| (s * 1e6) as u64;
        let mut l = lease(&[]);
        l.ttl = 30;
        // Three whole-cluster restarts in a row, one election after the
        // last: the TTL stood still for 9.3 s.
        l.ttls = vec![(us(0.79), us(0.80), 29, 2), (us(10.1), us(10.11), 29, 3)];
        let terms = [(0, 2), (us(11.0), 3)];
        let outages = [(us(3.2), us(5.5)), (us(5.6), us(7.6)), (us(8.4), us(10.2))];
        assert!(leases(&[l.clone()], &terms, &outages, S, S).is_empty());
        assert!(leases(&[l.clone()], &terms, &[], S, S)[0].contains("given back"));
        // The whole TTL given back over a short outage is still caught.
        l.ttls = vec![(us(20.0), us(20.01), 10, 2), (us(24.0), us(24.01), 30, 3)];
        let terms = [(0, 2), (us(23.0), 3)];
        let outages = [(us(21.0), us(22.0))];
        assert!(leases(&[l], &terms, &outages, S, S)[0].contains("given back"));
    }
}
