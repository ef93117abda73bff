//! What the applier keeps in the db's meta bucket beside the data: the
//! consistent index and its term (written by the backend's pre-commit hook,
//! so they reach the db in the same commit as the entry's effects) and the
//! last raft snapshot mark the db holds the state of.
//!
//! Formats: `consistent_index` and `term` are 8-byte big-endian integers;
//! `strata_raft_snapshot` is the mark in the engine's own encoding
//! ([`SnapshotMark::encode`], the body of the WAL's snapshot record).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use strata_engine::backend::{Bucket, ReadView};
use strata_engine::mvcc as m;
use strata_engine::wal::SnapshotMark;

pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
pub const TERM_KEY: &[u8] = b"term";
/// Raft's configuration after the last membership change the db holds
/// (a snapshot mark's encoding: that entry's index and term, and the
/// configuration).
pub const CONF_STATE_KEY: &[u8] = b"strata_conf_state";
/// The last raft snapshot marker whose state this db holds.
pub const SNAPSHOT_KEY: &[u8] = b"strata_raft_snapshot";

/// The consistent index and its term, shared with the pre-commit hook.
#[derive(Default)]
pub struct IndexCells {
    pub index: AtomicU64,
    pub term: AtomicU64,
}

/// Makes every backend commit write the consistent index and term the
/// applier last set (the hook runs under the batch lock, so it never sees an
/// index without its entry's effects, or the reverse).
pub fn install_consistent_index_hook(store: &m::Store, cells: Arc<IndexCells>) {
    use std::sync::atomic::Ordering::Acquire;
    store.backend().set_pre_commit_hook(Box::new(move |b| {
        let index = cells.index.load(Acquire);
        if index == 0 {
            return Ok(());
        }
        b.put(Bucket::Meta, CONSISTENT_INDEX_KEY, &index.to_be_bytes())?;
        b.put(
            Bucket::Meta,
            TERM_KEY,
            &cells.term.load(Acquire).to_be_bytes(),
        )
    }));
}

/// An 8-byte big-endian integer of the meta bucket (0 when absent).
pub fn read_u64(view: &ReadView, key: &[u8]) -> anyhow::Result<u64> {
    Ok(match view.get(Bucket::Meta, key)? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!("meta {:?} is not 8 bytes", String::from_utf8_lossy(key))
        })?),
        None => 0,
    })
}

/// The snapshot mark the db records, if any.
pub fn read_mark(view: &ReadView) -> anyhow::Result<Option<SnapshotMark>> {
    read_mark_at(view, SNAPSHOT_KEY)
}

/// The configuration after the last membership change the db holds.
pub fn read_conf(view: &ReadView) -> anyhow::Result<Option<SnapshotMark>> {
    read_mark_at(view, CONF_STATE_KEY)
}

fn read_mark_at(view: &ReadView, key: &[u8]) -> anyhow::Result<Option<SnapshotMark>> {
    match view.get(Bucket::Meta, key)? {
        Some(b) => Ok(Some(SnapshotMark::decode(&b).ok_or_else(|| {
            anyhow::anyhow!("meta {:?} is damaged", String::from_utf8_lossy(key))
        })?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use strata_engine::wal::ConfState;

    #[test]
    fn snapshot_marks_round_trip() {
        let m = SnapshotMark {
            index: 12345,
            term: 7,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![9],
                voters_outgoing: vec![],
                learners_next: vec![4],
                auto_leave: true,
            },
        };
        assert_eq!(SnapshotMark::decode(&m.encode()), Some(m.clone()));
        let b = m.encode();
        assert_eq!(SnapshotMark::decode(&b[..b.len() - 1]), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(SnapshotMark::decode(&longer), None);
    }
}
