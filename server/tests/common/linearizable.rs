//! A linearizability checker for key-value histories (Wing & Gong's
//! search with Lowe's memoization), one key at a time: each key is a
//! register, and a history of registers is linearizable iff each key's is.
//!
//! An operation has an invoke and a return time (client-side, one clock).
//! A write whose outcome is unknown (timeout, connection lost) has no
//! return: it may take effect at any point after its invoke, or never. A
//! read with no answer carries no information and is left out by the
//! recorder.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set the key to the value.
    Write(String),
    /// Observed this value (None: the key did not exist).
    Read(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub op: Op,
    pub invoke: u64,
    /// None: a write whose outcome is unknown.
    pub ret: Option<u64>,
}

/// Checks the whole history; on failure names the first key whose history
/// has no linearization.
pub fn check(history: &[Event]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        by_key.entry(&e.key).or_default().push(e);
    }
    for (key, ops) in by_key {
        if !register(&ops) {
            return Err(format!(
                "key {key:?}: no linearization of its {} operations",
                ops.len()
            ));
        }
    }
    Ok(())
}

/// One register's history, starting from "absent".
fn register(ops: &[&Event]) -> bool {
    let n = ops.len();
    let words = n.div_ceil(64);
    // Depth-first: the stack holds (done set, state, next candidate to try).
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(Vec<u64>, Option<String>)> = vec![(vec![0; words], None)];
    while let Some((done, state)) = stack.pop() {
        let finished = (0..n).all(|i| is_done(&done, i) || ops[i].ret.is_none());
        if finished {
            return true;
        }
        if !seen.insert((done.clone(), state.clone())) {
            continue;
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
            let next = match &ops[i].op {
                Op::Write(v) => Some(v.clone()),
                Op::Read(v) if *v == state => state.clone(),
                Op::Read(_) => continue,
            };
            let mut d = done.clone();
            d[i / 64] |= 1 << (i % 64);
            stack.push((d, next));
        }
    }
    false
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, v: &str, invoke: u64, ret: u64) -> Event {
        Event {
            key: key.into(),
            op: Op::Write(v.into()),
            invoke,
            ret: Some(ret),
        }
    }

    fn r(key: &str, v: Option<&str>, invoke: u64, ret: u64) -> Event {
        Event {
            key: key.into(),
            op: Op::Read(v.map(Into::into)),
            invoke,
            ret: Some(ret),
        }
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
}
