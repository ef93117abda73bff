//! What the applier keeps in the db's meta bucket beside the data: the
//! consistent index and its term (written by the backend's pre-commit hook,
//! so they reach the db in the same commit as the entry's effects) and the
//! last raft snapshot mark the db holds the state of.
//!
//! Formats: `consistent_index` and `term` are 8-byte big-endian integers;
//! `strata_raft_snapshot` is the mark as [`encode_mark`] writes it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use strata_engine::backend::{Bucket, ReadView};
use strata_engine::mvcc as m;
use strata_engine::wal::{ConfState, SnapshotMark};

pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
pub const TERM_KEY: &[u8] = b"term";
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
    match view.get(Bucket::Meta, SNAPSHOT_KEY)? {
        Some(b) => Ok(Some(decode_mark(&b).ok_or_else(|| {
            anyhow::anyhow!(
                "meta {:?} is damaged",
                String::from_utf8_lossy(SNAPSHOT_KEY)
            )
        })?)),
        None => Ok(None),
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[u64]) {
    out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

/// The snapshot marker as the meta bucket keeps it: index, term (8 bytes
/// BE each), then voters, learners, outgoing voters, next learners (a
/// 4-byte BE count then 8-byte ids each), then auto_leave (one byte).
pub fn encode_mark(m: &SnapshotMark) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&m.index.to_be_bytes());
    out.extend_from_slice(&m.term.to_be_bytes());
    put_ids(&mut out, &m.conf_state.voters);
    put_ids(&mut out, &m.conf_state.learners);
    put_ids(&mut out, &m.conf_state.voters_outgoing);
    put_ids(&mut out, &m.conf_state.learners_next);
    out.push(u8::from(m.conf_state.auto_leave));
    out
}

pub fn decode_mark(b: &[u8]) -> Option<SnapshotMark> {
    let mut pos = 0;
    let u64_at = |pos: &mut usize| -> Option<u64> {
        let v = u64::from_be_bytes(b.get(*pos..*pos + 8)?.try_into().ok()?);
        *pos += 8;
        Some(v)
    };
    let index = u64_at(&mut pos)?;
    let term = u64_at(&mut pos)?;
    let mut lists: Vec<Vec<u64>> = Vec::new();
    for _ in 0..4 {
        let n = u32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        let mut ids = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            ids.push(u64_at(&mut pos)?);
        }
        lists.push(ids);
    }
    let auto_leave = *b.get(pos)? != 0;
    let mut it = lists.into_iter();
    Some(SnapshotMark {
        index,
        term,
        conf_state: ConfState {
            voters: it.next()?,
            learners: it.next()?,
            voters_outgoing: it.next()?,
            learners_next: it.next()?,
            auto_leave,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(decode_mark(&encode_mark(&m)), Some(m.clone()));
        let b = encode_mark(&m);
        assert_eq!(decode_mark(&b[..b.len() - 1]), None);
    }
}
