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

/// Serializable reads: only values some client offered to write.
pub fn serializable_reads(records: &[Record]) -> Vec<String> {
    let offered: HashSet<&str> = records
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Put { value } => Some(value.as_str()),
            Kind::Cas { new, .. } => Some(new.as_str()),
            _ => None,
        })
        .collect();
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
    let offered: HashSet<&str> = records
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Put { value } => Some(value.as_str()),
            Kind::Cas { new, .. } => Some(new.as_str()),
            _ => None,
        })
        .collect();
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
pub fn panics(logs: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in logs {
        for line in text.lines().filter(|l| l.contains("panicked at")) {
            out.push(format!("{name}: {line}"));
        }
    }
    out
}

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
