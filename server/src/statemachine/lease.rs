//! The lessor: leases, their expiry and the keys attached to them.
//!
//! Invariants:
//! - Grants, revokes and checkpoints change leases only when a committed
//!   raft entry is applied, so every member holds the same leases; the lease
//!   bucket is written in the same batch as the entry's consistent index.
//! - Expiry is the primary's (raft leader's) business: only it keeps
//!   deadlines, renews on KeepAlive, and proposes a revoke for a lease past
//!   its deadline. Elsewhere deadlines are "never" until promotion, which
//!   restarts every lease from its checkpointed remaining TTL (or its whole
//!   TTL).
//! - key -> lease and lease -> keys are kept in step by [`Lessor::set_key`].

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::errors::EtcdError;

/// etcd's largest TTL (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone)]
struct Lease {
    ttl: i64,
    /// Remaining TTL as of the last checkpoint (0: none).
    remaining: i64,
    /// None while not primary.
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    key_lease: HashMap<Vec<u8>, i64>,
    heap: BinaryHeap<Reverse<(Instant, i64)>>,
    primary: bool,
    /// Revokes proposed and not yet applied, with when they were proposed.
    revoking: HashMap<i64, Instant>,
}

pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
}

/// A lease as TimeToLive and Leases report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    pub granted_ttl: i64,
    /// Seconds left (the whole TTL when not primary).
    pub ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Lessor {
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor {
            inner: Mutex::new(Inner::default()),
            min_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// The TTL a grant of `ttl` gets (raised to the minimum), or etcd's
    /// error for one too large.
    pub fn effective_ttl(&self, ttl: i64) -> Result<i64, EtcdError> {
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        Ok(ttl.max(self.min_ttl))
    }

    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Adds a lease (applying a grant, or restoring one from the db) with
    /// the TTL the entry carries: the proposer raised it to its minimum
    /// ([`Lessor::effective_ttl`]), so every member grants the same TTL
    /// whatever its own `--election-timeout`.
    pub fn grant(&self, id: i64, ttl: i64, remaining: i64) -> Result<i64, EtcdError> {
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut g = self.lock();
        if g.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        let expiry = g
            .primary
            .then(|| deadline(if remaining > 0 { remaining } else { ttl }));
        if let Some(at) = expiry {
            g.heap.push(Reverse((at, id)));
        }
        g.leases.insert(
            id,
            Lease {
                ttl,
                remaining,
                expiry,
                keys: BTreeSet::new(),
            },
        );
        Ok(ttl)
    }

    /// Removes a lease; returns its keys (to be deleted by the caller in
    /// the same write).
    pub fn revoke(&self, id: i64) -> Result<Vec<Vec<u8>>, EtcdError> {
        let mut g = self.lock();
        g.revoking.remove(&id);
        let l = g.leases.remove(&id).ok_or(EtcdError::LeaseNotFound)?;
        for k in &l.keys {
            g.key_lease.remove(k);
        }
        Ok(l.keys.into_iter().collect())
    }

    /// The keys attached to a lease (empty if it does not exist).
    pub fn keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.lock()
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records that `key` is now attached to `lease` (0: none, or deleted).
    pub fn set_key(&self, key: &[u8], lease: i64) {
        let mut g = self.lock();
        let old = g.key_lease.get(key).copied().unwrap_or(0);
        if old == lease {
            return;
        }
        if old != 0 {
            if let Some(l) = g.leases.get_mut(&old) {
                l.keys.remove(key);
            }
            g.key_lease.remove(key);
        }
        if lease != 0 {
            if let Some(l) = g.leases.get_mut(&lease) {
                l.keys.insert(key.to_vec());
                g.key_lease.insert(key.to_vec(), lease);
            }
        }
    }

    /// Applies a checkpoint: the remaining TTL a restart resumes from (at
    /// least one second: 0 would read as "none", the whole TTL). Returns
    /// what was kept, None for an unknown lease.
    pub fn checkpoint(&self, id: i64, remaining: i64) -> Option<i64> {
        let mut g = self.lock();
        let l = g.leases.get_mut(&id)?;
        l.remaining = remaining.max(1);
        Some(l.remaining)
    }

    /// KeepAlive (primary only): a new deadline one TTL away. Returns the
    /// TTL.
    pub fn renew(&self, id: i64) -> Result<i64, EtcdError> {
        let mut g = self.lock();
        if !g.primary {
            return Err(EtcdError::NoLeader);
        }
        let l = g.leases.get_mut(&id).ok_or(EtcdError::LeaseNotFound)?;
        let at = deadline(l.ttl);
        l.expiry = Some(at);
        // A renewal supersedes the checkpointed remainder.
        l.remaining = 0;
        let ttl = l.ttl;
        g.heap.push(Reverse((at, id)));
        Ok(ttl)
    }

    /// Whether this lessor keeps deadlines (the leader's, once promoted).
    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    pub fn info(&self, id: i64, with_keys: bool) -> Option<LeaseInfo> {
        let g = self.lock();
        let l = g.leases.get(&id)?;
        Some(info(id, l, with_keys))
    }

    pub fn list(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Forgets every lease and key (before the leases of a snapshot from the
    /// leader are restored); primary or not stays as it was.
    pub fn clear(&self) {
        let mut g = self.lock();
        let primary = g.primary;
        *g = Inner {
            primary,
            ..Inner::default()
        };
    }

    /// Becomes primary: every lease gets a deadline from now.
    pub fn promote(&self) {
        let mut g = self.lock();
        g.primary = true;
        g.heap.clear();
        g.revoking.clear();
        let mut heap = Vec::new();
        for (&id, l) in g.leases.iter_mut() {
            let at = deadline(if l.remaining > 0 { l.remaining } else { l.ttl });
            l.expiry = Some(at);
            heap.push(Reverse((at, id)));
        }
        g.heap = heap.into();
    }

    pub fn demote(&self) {
        let mut g = self.lock();
        g.primary = false;
        g.heap.clear();
        g.revoking.clear();
        for l in g.leases.values_mut() {
            l.expiry = None;
        }
    }

    /// Leases past their deadline that need a revoke proposed (at most
    /// `limit`). A revoke proposed but not applied within `retry` is
    /// offered again.
    pub fn expired(&self, limit: usize, retry: Duration) -> Vec<i64> {
        let now = Instant::now();
        let mut g = self.lock();
        if !g.primary {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut again = Vec::new();
        while out.len() < limit {
            let Some(&Reverse((at, id))) = g.heap.peek() else {
                break;
            };
            if at > now {
                break;
            }
            g.heap.pop();
            // Stale heap entries (renewed or revoked leases) are skipped.
            let current = g.leases.get(&id).and_then(|l| l.expiry);
            if current != Some(at) {
                continue;
            }
            match g.revoking.get(&id) {
                Some(&when) if now.duration_since(when) < retry => {
                    again.push(Reverse((at, id)));
                    continue;
                }
                _ => {}
            }
            g.revoking.insert(id, now);
            again.push(Reverse((at, id)));
            out.push(id);
        }
        for e in again {
            g.heap.push(e);
        }
        out
    }

    /// Remaining TTLs of every lease, for a checkpoint (primary only), in
    /// whole seconds rounded up and at least one: a lease with half a
    /// second left, or past its deadline and not yet revoked, resumes with
    /// one second on a new leader, never with its whole TTL.
    pub fn remaining(&self) -> Vec<(i64, i64)> {
        let g = self.lock();
        if !g.primary {
            return Vec::new();
        }
        let now = Instant::now();
        g.leases
            .iter()
            .filter_map(|(&id, l)| {
                let left = l.expiry?.saturating_duration_since(now);
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                Some((id, (secs as i64).max(1)))
            })
            .collect()
    }
}

fn deadline(secs: i64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(secs.max(0) as u64))
        .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400))
}

fn info(id: i64, l: &Lease, with_keys: bool) -> LeaseInfo {
    let ttl = match l.expiry {
        Some(at) => at.saturating_duration_since(Instant::now()).as_secs() as i64,
        None => l.ttl,
    };
    LeaseInfo {
        id,
        granted_ttl: l.ttl,
        ttl,
        keys: if with_keys {
            l.keys.iter().cloned().collect()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_raised_to_the_minimum_before_proposing_and_capped() {
        let l = Lessor::new(2);
        assert_eq!(l.effective_ttl(1), Ok(2));
        assert_eq!(l.effective_ttl(3), Ok(3));
        assert_eq!(
            l.effective_ttl(MAX_LEASE_TTL + 1),
            Err(EtcdError::LeaseTtlTooLarge)
        );
        // Applying takes the entry's TTL as it is: a member with another
        // minimum grants the same lease.
        assert_eq!(l.grant(1, 1, 0), Ok(1));
        assert_eq!(l.grant(1, 5, 0), Err(EtcdError::LeaseExist));
        assert_eq!(
            l.grant(2, MAX_LEASE_TTL + 1, 0),
            Err(EtcdError::LeaseTtlTooLarge)
        );
    }

    #[test]
    fn a_lease_checkpointed_past_its_deadline_never_gets_its_ttl_back() {
        let l = Lessor::new(1);
        l.promote();
        l.grant(7, 1, 0).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        // Past its deadline, not revoked yet: checkpointed as one second.
        assert_eq!(l.remaining(), vec![(7, 1)]);
        l.checkpoint(7, 0);
        l.demote();
        l.grant(8, 100, 0).unwrap();
        l.checkpoint(8, 40);
        // A checkpoint of 0 (an older leader's, rounded down) is a second.
        l.grant(9, 100, 0).unwrap();
        l.checkpoint(9, 0);
        l.promote();
        assert!(l.info(7, false).unwrap().ttl <= 1);
        assert!(l.info(8, false).unwrap().ttl <= 40);
        assert!(
            l.info(9, false).unwrap().ttl <= 1,
            "a lease resumed with its whole TTL"
        );
    }

    #[test]
    fn keys_follow_their_lease() {
        let l = Lessor::new(1);
        l.grant(1, 10, 0).unwrap();
        l.grant(2, 10, 0).unwrap();
        l.set_key(b"a", 1);
        l.set_key(b"b", 1);
        l.set_key(b"a", 2);
        assert_eq!(l.keys(1), vec![b"b".to_vec()]);
        assert_eq!(l.keys(2), vec![b"a".to_vec()]);
        l.set_key(b"b", 0);
        assert!(l.keys(1).is_empty());
        assert_eq!(l.revoke(2).unwrap(), vec![b"a".to_vec()]);
        assert_eq!(l.revoke(2), Err(EtcdError::LeaseNotFound));
    }

    #[test]
    fn only_the_primary_expires_and_renews() {
        let l = Lessor::new(1);
        l.grant(7, 1, 0).unwrap();
        assert_eq!(l.renew(7), Err(EtcdError::NoLeader));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(l.expired(10, Duration::from_secs(1)).is_empty());
        l.promote();
        assert!(l.expired(10, Duration::from_secs(1)).is_empty());
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.expired(10, Duration::from_secs(5)), vec![7]);
        // Proposed once; not again until the retry interval passes.
        assert!(l.expired(10, Duration::from_secs(5)).is_empty());
        assert_eq!(l.renew(7), Ok(1));
        assert_eq!(l.renew(8), Err(EtcdError::LeaseNotFound));
    }
}
