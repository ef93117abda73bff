//! A hash of a store's whole logical state: every bucket, so members of a
//! replicated state machine can check that they applied the same entries
//! to the same effect (HashKV covers the key bucket alone).
//!
//! What is hashed, bucket by bucket in [`Bucket::ALL`]'s order, each a
//! CRC-32C over the bucket's name and then each key and value in key order:
//! - the key bucket as a read at the captured revision needs it: revisions
//!   at or below the compact revision that compaction keeps, and every
//!   revision above it. A compaction deletes the others on its own thread,
//!   at its own pace; leaving them out makes the hash independent of how
//!   far that deletion got (unlike etcd's HashKV, which counts them while
//!   none is kept);
//! - every other bucket as it is, less `finishedCompactRev` (how far that
//!   deletion got, again) and the keys the caller names as the member's
//!   own (its consistent index, its raft snapshot mark, ...).
//!
//! The whole-state hash is a CRC-32C over each bucket's name and its hash
//! (big-endian), so two members that differ can say in which buckets.
//!
//! Invariants: a capture is taken under the store's state lock, so its
//! view holds whole write transactions only, and its revision and compact
//! revision are the view's. Hashing reads the captured view in pieces of
//! [`PIECE`] entries: memory is bounded by a piece, not by the db, and
//! writers are never held (the view is a pinned snapshot).

use std::collections::HashSet;
use std::sync::Arc;

use super::revision::Revision;
use super::store::{parse_rev_key, Store, FINISHED_COMPACT_KEY};
use crate::backend::{Bucket, ReadView};
use crate::error::Result;

/// Entries read from the view at a time.
pub const PIECE: usize = 10_000;

/// The state of a store at one point, ready to hash.
pub struct StateCapture {
    view: Arc<ReadView>,
    revision: i64,
    compact: i64,
    /// Revisions at or below `compact` a read at `revision` needs (empty
    /// when nothing is compacted).
    keep: HashSet<Revision>,
}

/// A whole-state hash and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateHash {
    pub hash: u32,
    pub revision: i64,
    pub compact: i64,
    /// Each bucket's own hash, in [`Bucket::ALL`]'s order.
    pub buckets: Vec<(Bucket, u32)>,
}

impl StateHash {
    /// The buckets whose hashes differ from `other`'s.
    pub fn differing(&self, other: &StateHash) -> Vec<Bucket> {
        self.buckets
            .iter()
            .zip(&other.buckets)
            .filter(|(a, b)| a != b)
            .map(|((b, _), _)| *b)
            .collect()
    }
}

impl Store {
    /// Captures the store's state now, running `also` under the same lock
    /// (so what it reads is in step with the capture: no write transaction
    /// can run in between). Costs one pass over the index when something is
    /// compacted (the revisions compaction keeps), as HashKV does.
    pub fn capture_state<T>(&self, also: impl FnOnce() -> T) -> (StateCapture, T) {
        let st = self.read_state();
        let keep = if st.compact > 0 {
            st.index.keep(st.current)
        } else {
            HashSet::new()
        };
        let capture = StateCapture {
            view: self.backend.read(),
            revision: st.current,
            compact: st.compact,
            keep,
        };
        let t = also();
        (capture, t)
    }
}

impl StateCapture {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Hashes the captured state, leaving out the `ignore`d (bucket, key)
    /// pairs (the member's own bookkeeping).
    pub fn hash(&self, ignore: &[(Bucket, &[u8])]) -> Result<StateHash> {
        let mut buckets = Vec::with_capacity(Bucket::ALL.len());
        for bucket in Bucket::ALL {
            let mut crc = crc32c::crc32c(bucket.name());
            let mut start: Vec<u8> = Vec::new();
            loop {
                let piece = self.view.range(bucket, &start, &[], PIECE)?;
                for (k, v) in &piece {
                    if !self.counts(bucket, k, ignore)? {
                        continue;
                    }
                    crc = crc32c::crc32c_append(crc, k);
                    crc = crc32c::crc32c_append(crc, v);
                }
                match piece.last() {
                    Some((k, _)) if piece.len() == PIECE => {
                        start = k.clone();
                        start.push(0);
                    }
                    _ => break,
                }
            }
            buckets.push((bucket, crc));
        }
        let mut hash = 0;
        for (bucket, h) in &buckets {
            hash = crc32c::crc32c_append(hash, bucket.name());
            hash = crc32c::crc32c_append(hash, &h.to_be_bytes());
        }
        Ok(StateHash {
            hash,
            revision: self.revision,
            compact: self.compact,
            buckets,
        })
    }

    /// Whether an entry is part of the logical state.
    fn counts(&self, bucket: Bucket, k: &[u8], ignore: &[(Bucket, &[u8])]) -> Result<bool> {
        if bucket == Bucket::Key {
            let (r, _) = parse_rev_key(self.view.path(), k)?;
            return Ok(r.main <= self.revision && (r.main > self.compact || self.keep.contains(&r)));
        }
        if bucket == Bucket::Meta && k == FINISHED_COMPACT_KEY {
            return Ok(false);
        }
        Ok(!ignore.iter().any(|&(b, key)| b == bucket && key == k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, BackendConfig};
    use crate::mvcc::PutRequest;

    fn open(dir: &std::path::Path) -> Store {
        let mut cfg = BackendConfig::new(dir.join("db"));
        cfg.no_sync = true;
        Store::open(Backend::open(cfg).unwrap()).unwrap()
    }

    fn put(s: &Store, k: &str, v: &str) {
        let mut tx = s.write().unwrap();
        tx.put(&PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
        .unwrap();
        tx.end();
    }

    fn hash(s: &Store) -> StateHash {
        s.capture_state(|| ())
            .0
            .hash(&[(Bucket::Meta, b"mine")])
            .unwrap()
    }

    #[test]
    fn equal_histories_hash_alike_whatever_compaction_has_deleted() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (open(a.path()), open(b.path()));
        for s in [&sa, &sb] {
            for i in 0..50 {
                put(s, &format!("k{}", i % 7), &format!("v{i}"));
            }
        }
        assert_eq!(hash(&sa), hash(&sb));
        // One compacts and finishes deleting; the other has only compacted
        // its index (the deleting half not run yet): the same logical state.
        sa.begin_compaction(30).unwrap().finish().unwrap();
        let job = sb.begin_compaction(30).unwrap();
        assert_eq!(hash(&sa), hash(&sb));
        job.finish().unwrap();
        assert_eq!(hash(&sa), hash(&sb));
        // A member's own keys do not count; anything else does.
        sa.backend()
            .batch()
            .unwrap()
            .put(Bucket::Meta, b"mine", b"1")
            .unwrap();
        assert_eq!(hash(&sa), hash(&sb));
        sa.backend()
            .batch()
            .unwrap()
            .put(Bucket::Alarm, b"x", b"")
            .unwrap();
        let (ha, hb) = (hash(&sa), hash(&sb));
        assert_ne!(ha.hash, hb.hash);
        assert_eq!(ha.differing(&hb), vec![Bucket::Alarm]);
        put(&sb, "other", "v");
        assert!(hash(&sb).differing(&hash(&sa)).contains(&Bucket::Key));
    }

    #[test]
    fn a_capture_is_the_state_when_it_was_taken() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        put(&s, "a", "1");
        let before = hash(&s);
        let (capture, rev) = s.capture_state(|| s.revision());
        assert_eq!(capture.revision(), rev);
        put(&s, "a", "2");
        assert_eq!(capture.hash(&[(Bucket::Meta, b"mine")]).unwrap(), before);
        assert_ne!(hash(&s), before);
    }

    #[test]
    fn buckets_longer_than_a_piece_are_hashed_whole() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        {
            let mut b = s.backend().batch().unwrap();
            for i in 0..(PIECE + 5) as u32 {
                b.put(Bucket::Lease, &i.to_be_bytes(), b"l").unwrap();
            }
        }
        let h1 = hash(&s);
        s.backend()
            .batch()
            .unwrap()
            .delete(Bucket::Lease, &((PIECE + 3) as u32).to_be_bytes())
            .unwrap();
        assert_eq!(hash(&s).differing(&h1), vec![Bucket::Lease]);
    }
}
