//! What readers see: a pinned B+tree snapshot plus the changes applied since
//! it, overlaid. A view never changes; new changes make a new view.

use crate::btree::{ReadBucket, ReadTxn};
use crate::error::{Error, Result};

use super::Bucket;

/// Changes applied after a snapshot: `None` marks a deletion. A persistent
/// map, so cloning is O(1) and inserting O(log n).
pub type Buffer = imbl::OrdMap<(Bucket, Vec<u8>), Option<Vec<u8>>>;

pub struct ReadView {
    tx: ReadTxn,
    buckets: Vec<(Bucket, ReadBucket)>,
    buf: Buffer,
}

impl ReadView {
    pub(super) fn new(tx: ReadTxn, buf: Buffer) -> Result<ReadView> {
        let mut buckets = Vec::new();
        for b in Bucket::ALL {
            let tb = tx
                .bucket(tx.root(), b.name())?
                .ok_or(Error::BucketNotFound)?;
            buckets.push((b, tb));
        }
        Ok(ReadView { tx, buckets, buf })
    }

    /// The db file this view reads.
    pub fn path(&self) -> &std::path::Path {
        self.tx.path()
    }

    /// The same snapshot with more changes on top.
    pub(super) fn with_changes(&self, changes: Buffer) -> ReadView {
        // ReadTxn is not Clone (it registers itself); pin the snapshot again
        // through its database handle.
        let mut view = ReadView {
            tx: self.tx.pin_again(),
            buckets: self.buckets.clone(),
            buf: self.buf.clone(),
        };
        view.add_changes(changes);
        view
    }

    /// Puts more changes on top of this view (only while no reader holds
    /// it: a view never changes under a reader).
    pub(super) fn add_changes(&mut self, changes: Buffer) {
        for (k, v) in changes {
            self.buf.insert(k, v);
        }
    }

    fn tree(&self, b: Bucket) -> ReadBucket {
        self.buckets
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, t)| *t)
            .expect("every bucket is resolved")
    }

    /// The B+tree snapshot's txid.
    pub fn txid(&self) -> u64 {
        self.tx.txid()
    }

    pub fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.buf.get(&(bucket, key.to_vec())) {
            return Ok(v.clone());
        }
        Ok(self.tx.get(self.tree(bucket), key)?.map(<[u8]>::to_vec))
    }

    /// The value of `key` without a copy: borrowed from the snapshot's
    /// pages or from the changes on top of it.
    pub fn get_ref(&self, bucket: Bucket, key: &[u8]) -> Result<Option<&[u8]>> {
        if let Some(v) = self.buf.get(&(bucket, key.to_vec())) {
            return Ok(v.as_deref());
        }
        self.tx.get(self.tree(bucket), key)
    }

    /// Key/value pairs of `bucket` in `[start, end)` (`end` empty: to the
    /// end), at most `limit` (0: all): the snapshot merged with the changes.
    pub fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let in_range = |k: &[u8]| !end.is_empty() && k >= end;
        let mut changes = self
            .buf
            .range((bucket, start.to_vec())..)
            .take_while(|((b, k), _)| *b == bucket && !in_range(k))
            .peekable();
        let mut c = self.tx.cursor(self.tree(bucket));
        let mut it = c.seek(start)?;
        let mut out = Vec::new();
        loop {
            if limit != 0 && out.len() >= limit {
                break;
            }
            let tree_key = it.filter(|e| !in_range(e.key)).map(|e| e.key);
            let change_key = changes.peek().map(|((_, k), _)| k.as_slice());
            match (tree_key, change_key) {
                (None, None) => break,
                (Some(t), Some(ch)) if t == ch => {
                    it = c.next()?;
                    if let Some(((_, k), Some(v))) = changes.next() {
                        out.push((k.clone(), v.clone()));
                    }
                }
                (Some(t), ch) if ch.is_none_or(|ch| t < ch) => {
                    let e = it.expect("tree key present");
                    out.push((e.key.to_vec(), e.value.to_vec()));
                    it = c.next()?;
                }
                _ => {
                    if let Some(((_, k), Some(v))) = changes.next() {
                        out.push((k.clone(), v.clone()));
                    }
                }
            }
        }
        Ok(out)
    }
}
