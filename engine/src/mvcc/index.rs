//! The in-memory index: every key's history ([`KeyIndex`]) in key order.
//!
//! Ranges follow etcd's `range_end` rules, decided by the caller and passed
//! as [`End`]: a single key, keys in `[key, end)`, or every key from `key`
//! on. The index is rebuilt from the key bucket when a store opens.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::key_index::{Found, KeyIndex};
use super::revision::Revision;

/// Where a range ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Only the key itself.
    Single,
    /// Keys below this one.
    Before(Vec<u8>),
    /// Every key from the start key on.
    Unbounded,
}

impl End {
    /// etcd's `range_end`: empty = the key alone; `"\0"` = every key >= key.
    pub fn from_range_end(range_end: &[u8]) -> End {
        match range_end {
            [] => End::Single,
            [0] => End::Unbounded,
            e => End::Before(e.to_vec()),
        }
    }
}

#[derive(Debug, Default)]
pub struct TreeIndex {
    keys: BTreeMap<Box<[u8]>, KeyIndex>,
}

impl TreeIndex {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn put(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev);
                self.keys.insert(key.into(), ki);
            }
        }
    }

    /// Records a deletion; false if the key does not exist now.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Rebuilds a key from a stored revision (on open, in revision order).
    pub fn restore(&mut self, key: &[u8], created: Revision, modified: Revision, ver: i64) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(modified),
            None => {
                let mut ki = KeyIndex::new();
                ki.restore(created, modified, ver);
                self.keys.insert(key.into(), ki);
            }
        }
    }

    /// Rebuilds a deletion from a stored tombstone (on open).
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => {
                ki.tombstone(rev);
            }
            None => {
                let mut ki = KeyIndex::new();
                ki.restore_tombstone(rev);
                self.keys.insert(key.into(), ki);
            }
        }
    }

    /// Builds the index from keys in any order (a restore): a build from
    /// sorted entries fills the map's nodes, where one-by-one inserts leave
    /// them about half full (about 35 bytes more per key).
    pub fn from_unsorted(keys: std::collections::HashMap<Box<[u8]>, KeyIndex>) -> TreeIndex {
        let mut v: Vec<(Box<[u8]>, KeyIndex)> = keys.into_iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        TreeIndex {
            keys: v.into_iter().collect(),
        }
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key)?.get(at)
    }

    fn iter<'a>(
        &'a self,
        key: &'a [u8],
        end: &'a End,
    ) -> Box<dyn Iterator<Item = (&'a Box<[u8]>, &'a KeyIndex)> + 'a> {
        match end {
            End::Single => Box::new(self.keys.get_key_value(key).into_iter()),
            End::Before(e) if e.as_slice() <= key => Box::new(std::iter::empty()),
            End::Before(e) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(key), Bound::Excluded(e.as_slice()))),
            ),
            End::Unbounded => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(key), Bound::Unbounded)),
            ),
        }
    }

    /// The keys that exist at `at` in the range, in key order, with what
    /// `get` would return; at most `limit` of them (0: all), and the total.
    pub fn range(
        &self,
        key: &[u8],
        end: &End,
        at: i64,
        limit: usize,
    ) -> (Vec<(Vec<u8>, Found)>, usize) {
        let mut out = Vec::new();
        let mut total = 0;
        for (k, ki) in self.iter(key, end) {
            if let Some(f) = ki.get(at) {
                total += 1;
                if limit == 0 || out.len() < limit {
                    out.push((k.to_vec(), f));
                }
            }
        }
        (out, total)
    }

    /// Calls `f` with every key that exists at `at` in the range, in key
    /// order, until it returns false.
    pub fn visit(&self, key: &[u8], end: &End, at: i64, mut f: impl FnMut(&[u8], Found) -> bool) {
        for (k, ki) in self.iter(key, end) {
            if let Some(found) = ki.get(at) {
                if !f(k, found) {
                    return;
                }
            }
        }
    }

    /// How many keys exist at `at` in the range.
    pub fn count(&self, key: &[u8], end: &End, at: i64) -> usize {
        self.iter(key, end)
            .filter(|(_, ki)| ki.get(at).is_some())
            .count()
    }

    /// Every revision `>= rev` of the keys in the range (the last one per
    /// main revision and key), in revision order: what a watcher catching up
    /// from `rev` must see.
    pub fn revisions_since(&self, key: &[u8], end: &End, rev: i64) -> Vec<Revision> {
        let mut out: Vec<Revision> = self
            .iter(key, end)
            .flat_map(|(_, ki)| ki.since(rev))
            .collect();
        out.sort_unstable();
        out
    }

    /// Compacts every key at `rev`; returns the revisions still needed.
    pub fn compact(&mut self, rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        self.compact_slice(rev, &[], usize::MAX, &mut available);
        available
    }

    /// Compacts at `rev` up to `max` keys from `from` on, adding the
    /// revisions still needed to `available`; returns the key to go on
    /// from, or None when the last key was done.
    pub fn compact_slice(
        &mut self,
        rev: i64,
        from: &[u8],
        max: usize,
        available: &mut HashSet<Revision>,
    ) -> Option<Box<[u8]>> {
        let mut emptied = Vec::new();
        let mut next = None;
        let range = self
            .keys
            .range_mut::<[u8], _>((Bound::Included(from), Bound::Unbounded));
        for (i, (k, ki)) in range.enumerate() {
            if i == max {
                next = Some(k.clone());
                break;
            }
            ki.compact(rev, available);
            if ki.is_empty() {
                emptied.push(k.clone());
            }
        }
        for k in emptied {
            self.keys.remove(&k);
        }
        next
    }

    /// The revisions a compaction at `rev` would keep.
    pub fn keep(&self, rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(rev, &mut available);
        }
        available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_rules() {
        let mut t = TreeIndex::default();
        for (i, k) in [&b"a"[..], b"ab", b"b", b"c"].iter().enumerate() {
            t.put(k, Revision::new(i as i64 + 2, 0));
        }
        let keys = |end: End, key: &[u8]| -> Vec<Vec<u8>> {
            t.range(key, &end, 10, 0)
                .0
                .into_iter()
                .map(|x| x.0)
                .collect()
        };
        assert_eq!(keys(End::Single, b"ab"), vec![b"ab".to_vec()]);
        assert_eq!(
            keys(End::from_range_end(b"b"), b"a"),
            vec![b"a".to_vec(), b"ab".to_vec()]
        );
        assert_eq!(
            keys(End::from_range_end(b"\0"), b"b"),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(keys(End::from_range_end(b"a"), b"b"), Vec::<Vec<u8>>::new());
        let (limited, total) = t.range(b"a", &End::Unbounded, 10, 2);
        assert_eq!((limited.len(), total), (2, 4));
        assert_eq!(t.count(b"a", &End::Unbounded, 3), 2);
        assert!(t.tombstone(b"a", Revision::new(6, 0)));
        assert!(!t.tombstone(b"a", Revision::new(7, 0)));
        assert_eq!(t.range(b"a", &End::Unbounded, 6, 0).1, 3);
        assert_eq!(t.range(b"a", &End::Unbounded, 5, 0).1, 4);
        let avail = t.compact(6);
        assert!(avail.contains(&Revision::new(6, 0)));
        assert_eq!(t.len(), 4);
        t.compact(7);
        assert_eq!(
            t.len(),
            3,
            "a deleted key is forgotten once compacted past its tombstone"
        );
    }
}
