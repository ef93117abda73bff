//! A linearizability checker for key-value histories (Wing & Gong's
//! search with Lowe's memoization), one key at a time: each key is a
//! register, and a history of registers is linearizable iff each key's is.
//!
//! An operation has an invoke and a return time (client-side, one clock).
//! An operation that changes the key and whose outcome is unknown
//! (timeout, connection lost) has no return: it may take effect at any
//! point after its invoke, or never. A read with no answer carries no
//! information and is left out by the recorder.
//!
//! The search is bounded ([`check_bounded`]): a history whose search
//! visits more states than the bound is reported as undecided, never as
//! linearizable.
//!
//! Pruning ([`prune`]): an operation of unknown outcome that would set a
//! value nobody observed (no read returned it, no compare-and-set expected
//! or saw it) is dropped before the search. Values are unique, so had it
//! taken effect, no operation could have been linearized while the key
//! held its value (each would have observed it): removing it leaves a
//! history that is linearizable exactly when the original is. Faults leave
//! many such writes (a put sent to a member that was then killed), and
//! each one kept would double the states to search.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set the key to the value (a put).
    Write(String),
    /// Remove the key (a delete).
    Delete,
    /// Observed this value (None: the key did not exist).
    Read(Option<String>),
    /// A compare-and-set that succeeded: the key held `expect` (None:
    /// absent) and now holds `new`.
    Cas { expect: Option<String>, new: String },
    /// A compare-and-set that failed: the key did not hold `expect`, and
    /// the same transaction read `seen`.
    CasFailed {
        expect: Option<String>,
        seen: Option<String>,
    },
}

impl Op {
    /// The state after this operation from `state`, or None when the
    /// operation cannot take place there.
    fn step(&self, state: &Option<String>) -> Option<Option<String>> {
        match self {
            Op::Write(v) => Some(Some(v.clone())),
            Op::Delete => Some(None),
            Op::Read(v) => (v == state).then(|| state.clone()),
            Op::Cas { expect, new } => (expect == state).then(|| Some(new.clone())),
            Op::CasFailed { expect, seen } => {
                (expect != state && seen == state).then(|| state.clone())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub op: Op,
    pub invoke: u64,
    /// None: an operation whose outcome is unknown.
    pub ret: Option<u64>,
}

/// The default bound on the states one key's search may visit.
pub const DEFAULT_STATES: usize = 2_000_000;

/// Checks the whole history; on failure names the first key whose history
/// has no linearization.
pub fn check(history: &[Event]) -> Result<(), String> {
    check_bounded(history, DEFAULT_STATES)
}

/// As [`check`], giving up (an error saying so) on a key whose search
/// visits more than `max_states` states.
pub fn check_bounded(history: &[Event], max_states: usize) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        by_key.entry(&e.key).or_default().push(e);
    }
    for (key, ops) in by_key {
        let ops = prune(ops);
        match register(&ops, max_states) {
            Some(true) => {}
            Some(false) => {
                return Err(format!(
                    "key {key:?}: no linearization of its {} operations",
                    ops.len()
                ))
            }
            None => {
                return Err(format!(
                    "key {key:?}: undecided, the search of its {} operations passed {max_states} states",
                    ops.len()
                ))
            }
        }
    }
    Ok(())
}

/// One key's operations without the unknown-outcome writes of values
/// nobody observed (see the module's notes).
fn prune(ops: Vec<&Event>) -> Vec<&Event> {
    let observed: HashSet<&str> = ops
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read(Some(v)) => Some(v.as_str()),
            Op::Cas {
                expect: Some(v), ..
            } => Some(v.as_str()),
            Op::CasFailed { seen: Some(v), .. } => Some(v.as_str()),
            _ => None,
        })
        .collect();
    ops.into_iter()
        .filter(|e| {
            let set = match &e.op {
                Op::Write(v) | Op::Cas { new: v, .. } => Some(v.as_str()),
                _ => None,
            };
            !(e.ret.is_none() && set.is_some_and(|v| !observed.contains(v)))
        })
        .collect()
}

/// One register's history, starting from "absent"; None when the search
/// passed `max_states`.
fn register(ops: &[&Event], max_states: usize) -> Option<bool> {
    let n = ops.len();
    let words = n.div_ceil(64);
    // Depth-first: the stack holds (done set, state).
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(Vec<u64>, Option<String>)> = vec![(vec![0; words], None)];
    while let Some((done, state)) = stack.pop() {
        let finished = (0..n).all(|i| is_done(&done, i) || ops[i].ret.is_none());
        if finished {
            return Some(true);
        }
        if !seen.insert((done.clone(), state.clone())) {
            continue;
        }
        if seen.len() > max_states {
            return None;
        }
        // Everything returned must be linearized before an operation can
        // be placed after its return: the candidates are the pending ones
        // invoked before the earliest return among those left.
        let horizon = (0..n)
            .filter(|&i| !is_done(&done, i))
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..n {
            if is_done(&done, i) || ops[i].invoke > horizon {
                continue;
            }
            let Some(next) = ops[i].op.step(&state) else {
                continue;
            };
            let mut d = done.clone();
            d[i / 64] |= 1 << (i % 64);
            stack.push((d, next));
        }
    }
    Some(false)
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, op: Op, invoke: u64, ret: u64) -> Event {
        Event {
            key: key.into(),
            op,
            invoke,
            ret: Some(ret),
        }
    }

    fn w(key: &str, v: &str, invoke: u64, ret: u64) -> Event {
        ev(key, Op::Write(v.into()), invoke, ret)
    }

    fn r(key: &str, v: Option<&str>, invoke: u64, ret: u64) -> Event {
        ev(key, Op::Read(v.map(Into::into)), invoke, ret)
    }

    fn cas(key: &str, expect: Option<&str>, new: &str, invoke: u64, ret: u64) -> Event {
        let op = Op::Cas {
            expect: expect.map(Into::into),
            new: new.into(),
        };
        ev(key, op, invoke, ret)
    }

    fn cas_failed(key: &str, expect: Option<&str>, seen: Option<&str>, i: u64, r: u64) -> Event {
        let op = Op::CasFailed {
            expect: expect.map(Into::into),
            seen: seen.map(Into::into),
        };
        ev(key, op, i, r)
    }

    #[test]
    fn accepts_linearizable_histories() {
        // Concurrent write and read: the read may see either value.
        assert!(check(&[w("k", "1", 0, 10), r("k", Some("1"), 5, 6)]).is_ok());
        assert!(check(&[w("k", "1", 0, 10), r("k", None, 5, 6)]).is_ok());
        // A write of unknown outcome may have happened, or not.
        let lost = Event {
            key: "k".into(),
            op: Op::Write("2".into()),
            invoke: 20,
            ret: None,
        };
        assert!(check(&[w("k", "1", 0, 1), lost.clone(), r("k", Some("2"), 30, 31)]).is_ok());
        assert!(check(&[w("k", "1", 0, 1), lost, r("k", Some("1"), 30, 31)]).is_ok());
        // Deletes and compare-and-set.
        let h = [
            w("k", "1", 0, 1),
            cas("k", Some("1"), "2", 2, 3),
            cas_failed("k", Some("1"), Some("2"), 4, 5),
            ev("k", Op::Delete, 6, 7),
            r("k", None, 8, 9),
            cas("k", None, "3", 10, 11),
            r("k", Some("3"), 12, 13),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn refuses_stale_reads_and_reordering() {
        // A read after a write returned must see it: a stale read fails.
        assert!(check(&[w("k", "1", 0, 1), r("k", None, 2, 3)]).is_err());
        // Two reads may not see values in an order no write order allows.
        let h = [
            w("k", "a", 0, 100),
            w("k", "b", 0, 100),
            r("k", Some("a"), 10, 11),
            r("k", Some("b"), 12, 13),
            r("k", Some("a"), 14, 15),
        ];
        assert!(check(&h).is_err());
        // A value nobody wrote.
        assert!(check(&[r("k", Some("x"), 0, 1)]).is_err());
        // Other keys do not excuse one bad key.
        assert!(check(&[w("a", "1", 0, 1), w("b", "1", 0, 1), r("b", None, 2, 3)]).is_err());
    }

    #[test]
    fn refuses_impossible_compare_and_set() {
        // Succeeded against a value the key no longer held.
        let h = [
            w("k", "1", 0, 1),
            w("k", "2", 2, 3),
            cas("k", Some("1"), "3", 4, 5),
        ];
        assert!(check(&h).is_err());
        // Failed while the key held the expected value.
        let h = [
            w("k", "1", 0, 1),
            cas_failed("k", Some("1"), Some("1"), 2, 3),
        ];
        assert!(check(&h).is_err());
        // A read after a delete that returned sees nothing.
        let h = [
            w("k", "1", 0, 1),
            ev("k", Op::Delete, 2, 3),
            r("k", Some("1"), 4, 5),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn unobserved_writes_of_unknown_outcome_change_no_verdict() {
        let unknown = |v: &str, invoke| Event {
            key: "k".into(),
            op: Op::Write(v.into()),
            invoke,
            ret: None,
        };
        let mut ok = vec![w("k", "1", 0, 1), r("k", Some("1"), 2, 3)];
        let mut bad = vec![w("k", "1", 0, 1), r("k", None, 2, 3)];
        for i in 0..40 {
            ok.push(unknown(&format!("u{i}"), 0));
            bad.push(unknown(&format!("u{i}"), 0));
        }
        // Forty pending writes would be 2^40 subsets without the pruning.
        assert!(check_bounded(&ok, 1000).is_ok());
        assert!(check_bounded(&bad, 1000)
            .unwrap_err()
            .contains("no linearization"));
        // An observed one stays, and may explain a read.
        ok.push(r("k", Some("u3"), 10, 11));
        assert!(check_bounded(&ok, 1000).is_ok());
    }

    #[test]
    fn an_exhausted_search_is_undecided_not_linearizable() {
        // Many concurrent writes and a read no write order satisfies: the
        // search must visit many states before it can refuse.
        let mut h: Vec<Event> = (0..12).map(|i| w("k", &i.to_string(), 0, 100)).collect();
        h.push(r("k", Some("none"), 200, 201));
        let err = check_bounded(&h, 50).unwrap_err();
        assert!(err.contains("undecided"), "{err}");
        assert!(check(&h).unwrap_err().contains("no linearization"));
    }
}
