//! Whole-state hashes: what a member's applied state hashes to, every
//! bucket (keys, leases, auth, members, alarms, meta), so members can check
//! that they applied the same entries to the same effect. The hash itself
//! is the engine's ([`strata_engine::mvcc::statehash`]); this module says
//! which meta keys are the member's own, and keeps the hashes taken at
//! *marks*.
//!
//! A mark is a raft entry (`InternalRaftRequest.state_hash`) that changes
//! nothing: every member that applies it captures its state right after
//! the entries before it, and hashes the capture on a thread of its own
//! (the apply loop goes on). Members compare hashes of one mark, so of one
//! log prefix, whatever their pace: the leader's periodic corruption check
//! proposes a mark and asks each follower for its hash of it.
//!
//! Invariants:
//! - A mark's entry is recorded as pending before the applier returns, so
//!   a member whose applied index has passed a mark and has no record of it
//!   never applied it (it installed a snapshot past it, or restarted and
//!   forgot it): it answers "not kept", never a wrong hash.
//! - At most [`KEPT`] marks are kept, newest last.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use strata_engine::backend::Bucket;
use strata_engine::mvcc::{StateCapture, StateHash};
use tokio::sync::Notify;

use crate::statemachine::meta;

/// Meta keys that are this member's own, left out of the hash: where its
/// db stands in its log (consistent index, term), its last raft snapshot
/// (each member snapshots at its own index), and the configuration raft
/// holds with the index it changed at (the members bucket holds the
/// membership itself), and the storage version its binary keeps (members
/// of one cluster may run different binaries during an upgrade).
pub const OWN_KEYS: [(Bucket, &[u8]); 5] = [
    (Bucket::Meta, meta::CONSISTENT_INDEX_KEY),
    (Bucket::Meta, meta::TERM_KEY),
    (Bucket::Meta, meta::SNAPSHOT_KEY),
    (Bucket::Meta, meta::CONF_STATE_KEY),
    (
        Bucket::Meta,
        crate::statemachine::versions::STORAGE_VERSION_KEY,
    ),
];

/// Marks kept.
pub const KEPT: usize = 16;

/// Hashes a capture of this member's state, leaving out its own keys.
pub fn hash(capture: &StateCapture) -> Result<StateHash, String> {
    capture.hash(&OWN_KEYS).map_err(|e| e.to_string())
}

/// A mark's hash as this member knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// Applied; the hash is being computed.
    Pending,
    Done(StateHash),
    Failed(String),
    /// This member passed the mark without applying it, or forgot it.
    NotKept,
    /// Not applied within the time asked.
    NotYet,
}

/// The hashes of the last marks this member applied.
#[derive(Default)]
pub struct Marks {
    kept: Mutex<VecDeque<(u64, Marked)>>,
    changed: Notify,
}

impl Marks {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Marked)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mark at `index` was applied (the applier, before it returns).
    pub fn applied(&self, index: u64) {
        let mut k = self.lock();
        k.retain(|(i, _)| *i != index);
        k.push_back((index, Marked::Pending));
        while k.len() > KEPT {
            k.pop_front();
        }
    }

    /// The hash of the mark at `index` is known.
    pub fn finished(&self, index: u64, hash: Result<StateHash, String>) {
        if let Some(slot) = self.lock().iter_mut().find(|(i, _)| *i == index) {
            slot.1 = match hash {
                Ok(h) => Marked::Done(h),
                Err(e) => Marked::Failed(e),
            };
        }
        self.changed.notify_waiters();
    }

    fn get(&self, index: u64, applied: u64) -> Option<Marked> {
        let k = self.lock();
        match k.iter().find(|(i, _)| *i == index) {
            Some((_, Marked::Pending)) => None,
            Some((_, m)) => Some(m.clone()),
            None if applied >= index => Some(Marked::NotKept),
            None => None,
        }
    }

    /// The hash of the mark at `index`, waiting up to `limit` for this
    /// member to apply it and hash it; `applied` reads the member's applied
    /// index.
    pub async fn wait(&self, index: u64, applied: impl Fn() -> u64, limit: Duration) -> Marked {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.get(index, applied()) {
                return m;
            }
            // The applied index moves without a notification: look again
            // now and then.
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            if tokio::time::timeout_at(step.min(end), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= end
            {
                return self.get(index, applied()).unwrap_or(Marked::NotYet);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: u32) -> StateHash {
        StateHash {
            hash: x,
            revision: 1,
            compact: 0,
            buckets: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_mark_is_answered_once_hashed_and_a_passed_one_is_not_kept() {
        let m = Marks::default();
        let limit = Duration::from_millis(200);
        assert_eq!(m.wait(5, || 4, limit).await, Marked::NotYet);
        assert_eq!(m.wait(5, || 9, limit).await, Marked::NotKept);
        m.applied(5);
        assert_eq!(m.wait(5, || 5, limit).await, Marked::NotYet);
        m.finished(5, Ok(h(7)));
        assert_eq!(m.wait(5, || 5, limit).await, Marked::Done(h(7)));
        for i in 0..KEPT as u64 {
            m.applied(10 + i);
        }
        assert_eq!(m.wait(5, || 100, limit).await, Marked::NotKept);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_hash_is_done() {
        let m = std::sync::Arc::new(Marks::default());
        m.applied(3);
        let m2 = m.clone();
        let t = tokio::spawn(async move { m2.wait(3, || 3, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        m.finished(3, Err("disk".into()));
        assert_eq!(t.await.unwrap(), Marked::Failed("disk".into()));
    }
}
