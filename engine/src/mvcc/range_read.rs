//! A range answered from one pinned snapshot, value by value, instead of
//! as a list of every key-value in memory.
//!
//! [`Store::range_read`] resolves the range against the in-memory index
//! under the store's state lock — which keys exist at the revision, which
//! revision holds each one's value, the count, the order and the limit —
//! and pins the backend snapshot taken under the same lock. The caller
//! then sizes and writes the answer one KeyValue at a time
//! ([`RangeRead::kv_len`], [`RangeRead::write_kv`]) with the lock free.
//!
//! Invariants:
//! - the pinned view holds every revision the index named: both were taken
//!   under one state lock, and a compaction never frees pages a pinned
//!   view reaches;
//! - entries are in the answer's order with the limit applied, exactly as
//!   [`Store::range`] orders and cuts them; `count` is what etcd reports
//!   (keys in the range at the revision, filters and limit aside), or -1
//!   when the caller did not ask for it;
//! - a stored value is handed out only after it decoded as the KeyValue of
//!   that key's revision; otherwise the error names the file and record;
//! - keys-only answers come from the index alone, as etcd 3.7 serves them:
//!   key, revisions and version, no value and no lease;
//! - sorting by value needs every value at once: [`RangeRead::supports`]
//!   says no, and such requests take [`Store::range`].

use std::sync::Arc;

use prost::Message;

use super::index::End;
use super::key_index::Found;
use super::kv::KeyValue;
use super::store::{corrupt_record, decode_kv, read_revision, Store};
use super::types::{RangeRequest, SortOrder, SortTarget};
use crate::backend::{Bucket, ReadView};
use crate::error::{Error, Result};

/// One key of the answer.
struct Entry {
    found: Found,
    /// Kept for keys-only answers and when asked for (a chunked reader
    /// needs the last key to go on from).
    key: Option<Box<[u8]>>,
}

/// A resolved range over a pinned snapshot.
pub struct RangeRead {
    view: Arc<ReadView>,
    entries: Vec<Entry>,
    keys_only: bool,
    /// The limit cut the answer.
    pub more: bool,
    /// Keys in the range at the revision read; -1 when not counted.
    pub count: i64,
    /// The store's revision when the range was resolved (the header's).
    pub revision: i64,
}

impl RangeRead {
    /// Whether [`Store::range_read`] can answer `req`: everything but an
    /// order by value.
    pub fn supports(req: &RangeRequest) -> bool {
        req.sort_target != SortTarget::Value
    }

    /// How many key-values the answer holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value's revision of entry `i` (its mod revision).
    pub fn mod_revision(&self, i: usize) -> i64 {
        self.entries[i].found.modified.main
    }

    /// The key of entry `i`, if it was kept.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.entries[i].key.as_deref()
    }

    fn index_kv(&self, i: usize) -> KeyValue {
        let e = &self.entries[i];
        KeyValue {
            key: e.key.as_deref().unwrap_or_default().to_vec(),
            create_revision: e.found.created.main,
            mod_revision: e.found.modified.main,
            version: e.found.version,
            value: Vec::new(),
            lease: 0,
        }
    }

    /// The stored bytes of entry `i` (not yet checked).
    fn stored(&self, i: usize) -> Result<(Vec<u8>, &[u8])> {
        let rev_key = self.entries[i].found.modified.to_key(false);
        let bytes = self.view.get_ref(Bucket::Key, &rev_key)?.ok_or_else(|| {
            corrupt_record(
                self.view.path(),
                Bucket::Key,
                &rev_key,
                "in the index but not stored",
            )
        })?;
        Ok((rev_key, bytes))
    }

    /// The encoded length of entry `i`'s KeyValue (what [`Self::write_kv`]
    /// appends).
    pub fn kv_len(&self, i: usize) -> Result<usize> {
        if self.keys_only {
            return Ok(self.index_kv(i).encoded_len());
        }
        Ok(self.stored(i)?.1.len())
    }

    /// Entry `i`'s KeyValue, decoded and checked.
    pub fn kv(&self, i: usize) -> Result<KeyValue> {
        if self.keys_only {
            return Ok(self.index_kv(i));
        }
        let (rev_key, bytes) = self.stored(i)?;
        self.checked(&rev_key, bytes, i)
    }

    fn checked(&self, rev_key: &[u8], bytes: &[u8], i: usize) -> Result<KeyValue> {
        let kv = decode_kv(self.view.path(), rev_key, bytes)?;
        let want = self.entries[i].found.modified.main;
        if kv.mod_revision != want || kv.key.is_empty() {
            return Err(corrupt_record(
                self.view.path(),
                Bucket::Key,
                rev_key,
                format!(
                    "holds mod revision {} of key {:?}, the index says {want}",
                    kv.mod_revision,
                    String::from_utf8_lossy(&kv.key)
                ),
            ));
        }
        Ok(kv)
    }

    /// Appends entry `i`'s KeyValue, encoded as etcd's `mvccpb.KeyValue`,
    /// to `out`: the stored bytes themselves once checked.
    pub fn write_kv(&self, i: usize, out: &mut Vec<u8>) -> Result<()> {
        if self.keys_only {
            self.index_kv(i)
                .encode(out)
                .map_err(|e| Error::Internal(format!("encoding a key-value: {e}")))?;
            return Ok(());
        }
        let (rev_key, bytes) = self.stored(i)?;
        self.checked(&rev_key, bytes, i)?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// The key of entry `i`: kept, or read from its stored value.
    pub fn key_of(&self, i: usize) -> Result<Vec<u8>> {
        match self.key(i) {
            Some(k) => Ok(k.to_vec()),
            None => Ok(self.kv(i)?.key),
        }
    }
}

impl Store {
    /// Resolves `req` (which [`RangeRead::supports`]) at its revision.
    /// `with_count`: also count every key of the range (a full walk of the
    /// index over the range); without it the walk stops at the limit.
    /// `keep_keys`: keep each entry's key in memory.
    pub fn range_read(
        &self,
        req: &RangeRequest,
        with_count: bool,
        keep_keys: bool,
    ) -> Result<RangeRead> {
        if !RangeRead::supports(req) {
            return Err(Error::Internal(
                "an order by value needs Store::range".into(),
            ));
        }
        let st = self.read_state();
        let current = st.current;
        let rev = read_revision(&st, req.revision, current)?;
        let end = End::from_range_end(&req.range_end);
        let view = self.backend.read();
        if req.count_only {
            let count = st.index.count(&req.key, &end, rev) as i64;
            return Ok(RangeRead {
                view,
                entries: Vec::new(),
                keys_only: req.keys_only,
                more: false,
                count,
                revision: current,
            });
        }
        let fetch = req.index_fetch().unwrap_or(usize::MAX);
        let keep = keep_keys || req.keys_only;
        let mut entries = Vec::new();
        let mut total = 0usize;
        st.index.visit(&req.key, &end, rev, |k, found| {
            total += 1;
            if entries.len() < fetch {
                entries.push(Entry {
                    found,
                    key: keep.then(|| k.into()),
                });
            }
            with_count || entries.len() < fetch
        });
        drop(st);
        entries.retain(|e| req.passes_filters(e.found.modified.main, e.found.created.main));
        let order = req.effective_order();
        if order != SortOrder::None {
            let field = |f: &Found| match req.sort_target {
                SortTarget::Version => f.version,
                SortTarget::Create => f.created.main,
                SortTarget::Mod => f.modified.main,
                SortTarget::Key | SortTarget::Value => 0,
            };
            if req.sort_target == SortTarget::Key {
                // Keys are unique: descending is the reverse.
                entries.reverse();
            } else {
                entries.sort_by(|a, b| {
                    let o = field(&a.found).cmp(&field(&b.found));
                    if order == SortOrder::Descend {
                        o.reverse()
                    } else {
                        o
                    }
                });
            }
        }
        let mut more = false;
        if req.limit > 0 && entries.len() > req.limit as usize {
            entries.truncate(req.limit as usize);
            more = true;
        }
        Ok(RangeRead {
            view,
            entries,
            keys_only: req.keys_only,
            more,
            count: if with_count { total as i64 } else { -1 },
            revision: current,
        })
    }
}
