//! The history of one key: its generations.
//!
//! A generation runs from a key's creation to its deletion: the revisions of
//! every put, ending with the tombstone's. A deletion closes the current
//! generation and opens an empty one. `ver` counts the changes of the
//! generation (so the version of the key at its n-th revision is n).
//!
//! Compaction at revision R keeps, in the generation alive at R (or the first
//! one created after it), the largest revision <= R and everything after it;
//! earlier generations go. A key whose only generation is empty is gone.
//! These are etcd's semantics (server/storage/mvcc/key_index.go).

use std::collections::HashSet;

use super::revision::Revision;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    pub ver: i64,
    /// The revision that created the key in this generation.
    pub created: Revision,
    pub revs: Vec<Revision>,
}

impl Generation {
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the last revision with `main <= at`.
    fn last_at(&self, at: i64) -> Option<usize> {
        self.revs.partition_point(|r| r.main <= at).checked_sub(1)
    }
}

/// A key's history. The key itself is the index's map key; the memory of
/// this struct is most of the index's, so vectors are allocated exactly
/// (a key with one revision holds one generation of one revision).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    pub generations: Vec<Generation>,
}

/// What `get` returns: the revision that holds the key's value at the asked
/// revision, the revision that created it, and its version there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// The last revision that changed the key.
    pub fn modified(&self) -> Revision {
        self.generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last().copied())
            .unwrap_or_default()
    }

    fn push_generation(&mut self, g: Generation) {
        self.generations.reserve_exact(1);
        self.generations.push(g);
    }

    /// Records a put at `rev`, which must be later than every revision so
    /// far.
    pub fn put(&mut self, rev: Revision) {
        debug_assert!(
            rev > self.modified(),
            "put at {rev:?} not after {:?}",
            self.modified()
        );
        if self.generations.is_empty() {
            self.push_generation(Generation::default());
        }
        let g = self.generations.last_mut().expect("a generation exists");
        if g.revs.is_empty() {
            g.created = rev;
            g.revs.reserve_exact(1);
        }
        g.revs.push(rev);
        g.ver += 1;
    }

    /// Rebuilds a key from its latest stored value (on open).
    pub fn restore(&mut self, created: Revision, modified: Revision, ver: i64) {
        debug_assert!(self.generations.is_empty());
        self.push_generation(Generation {
            ver,
            created,
            revs: vec![modified],
        });
    }

    /// Rebuilds a key whose first stored revision is a tombstone.
    pub fn restore_tombstone(&mut self, rev: Revision) {
        self.restore(Revision::default(), rev, 1);
        self.push_generation(Generation::default());
    }

    /// Records a deletion at `rev`: closes the current generation. Returns
    /// false (and changes nothing) if the key does not exist now.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        match self.generations.last() {
            Some(g) if !g.is_empty() => {}
            _ => return false,
        }
        self.put(rev);
        self.push_generation(Generation::default());
        true
    }

    /// The generation holding the key at revision `at`, if it exists there.
    fn generation_at(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            // A closed generation ends at its tombstone.
            if i != last && end.main <= at {
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key as of revision `at`.
    pub fn get(&self, at: i64) -> Option<Found> {
        let g = self.generation_at(at)?;
        let n = g.last_at(at)?;
        Some(Found {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// Every revision `>= (rev, 0)`, keeping only the last one of each main
    /// revision (a watcher sees the final state of a transaction).
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        let since = Revision::new(rev, 0);
        let mut start = 0;
        for (i, g) in self.generations.iter().enumerate().rev() {
            if i == 0 {
                break;
            }
            if !g.is_empty() && since > g.created {
                start = i;
                break;
            }
        }
        let mut out: Vec<Revision> = Vec::new();
        for g in &self.generations[start..] {
            for &r in &g.revs {
                if r < since {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.main == r.main => *last = r,
                    _ => out.push(r),
                }
            }
        }
        out
    }

    /// Finds the generation and position compaction at `at` keeps from, and
    /// marks the revision kept there as still available.
    fn compaction_point(
        &self,
        at: i64,
        available: &mut HashSet<Revision>,
    ) -> (usize, Option<usize>) {
        let mut gi = 0;
        while gi + 1 < self.generations.len() {
            let g = &self.generations[gi];
            if g.revs.last().is_some_and(|t| t.main >= at) {
                break;
            }
            gi += 1;
        }
        let n = self.generations[gi].last_at(at);
        if let Some(n) = n {
            available.insert(self.generations[gi].revs[n]);
        }
        (gi, n)
    }

    /// Drops every revision <= `at` but the latest one of the generation
    /// alive at `at`, and every earlier generation.
    pub fn compact(&mut self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gi, n) = self.compaction_point(at, available);
        if let Some(n) = n {
            self.generations[gi].revs.drain(..n);
        }
        self.generations.drain(..gi);
    }

    /// Marks what `compact(at)` would keep, without compacting; a tombstone
    /// at `at` is not kept (as etcd's hash computation expects).
    pub fn keep(&self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gi, n) = self.compaction_point(at, available);
        let g = &self.generations[gi];
        if let Some(n) = n {
            if n + 1 == g.revs.len() && gi + 1 != self.generations.len() {
                available.remove(&g.revs[n]);
            }
        }
    }

    /// No revision left: the key can be forgotten.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put(1) put(2) tombstone(3) put(4) tombstone(5)
    fn example() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(1));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        ki.put(r(4));
        assert!(ki.tombstone(r(5)));
        ki
    }

    #[test]
    fn get_follows_generations() {
        let ki = example();
        assert_eq!(ki.get(0), None);
        assert_eq!(
            ki.get(1),
            Some(Found {
                modified: r(1),
                created: r(1),
                version: 1
            })
        );
        assert_eq!(
            ki.get(2),
            Some(Found {
                modified: r(2),
                created: r(1),
                version: 2
            })
        );
        assert_eq!(ki.get(3), None);
        assert_eq!(
            ki.get(4),
            Some(Found {
                modified: r(4),
                created: r(4),
                version: 1
            })
        );
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(100), None);
        assert!(!example().clone().tombstone(r(6)), "deleting a deleted key");
    }

    #[test]
    fn compaction_keeps_the_latest_revision_per_generation() {
        let mut ki = example();
        let mut avail = HashSet::new();
        ki.compact(2, &mut avail);
        assert_eq!(ki.generations.len(), 3);
        assert_eq!(ki.generations[0].revs, vec![r(2), r(3)]);
        assert_eq!(avail, HashSet::from([r(2)]));
        ki.compact(4, &mut HashSet::new());
        assert_eq!(ki.generations.len(), 2);
        assert_eq!(ki.generations[0].revs, vec![r(4), r(5)]);
        ki.compact(5, &mut HashSet::new());
        assert_eq!(ki.generations[0].revs, vec![r(5)]);
        ki.compact(6, &mut HashSet::new());
        assert!(ki.is_empty());
    }

    #[test]
    fn since_keeps_the_last_sub_revision() {
        let mut ki = KeyIndex::new();
        ki.put(Revision::new(2, 0));
        ki.put(Revision::new(2, 1));
        ki.put(Revision::new(3, 0));
        assert_eq!(ki.since(1), vec![Revision::new(2, 1), Revision::new(3, 0)]);
        assert_eq!(ki.since(3), vec![Revision::new(3, 0)]);
    }

    #[test]
    fn keep_skips_a_tombstone_at_the_revision() {
        let ki = example();
        let mut avail = HashSet::new();
        ki.keep(3, &mut avail);
        assert!(avail.is_empty());
        ki.keep(2, &mut avail);
        assert_eq!(avail, HashSet::from([r(2)]));
    }
}
