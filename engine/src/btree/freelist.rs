//! Free-page tracking, kept in memory.
//!
//! - `free`: runs of pages that no committed tree and no open reader uses,
//!   coalesced, as start -> length.
//! - `pending`: runs freed by commit T; they become free once no open reader
//!   is older than T (a reader at txid R < T can still reach them).
//!
//! Commits do not write the freelist (no per-commit cost proportional to the
//! free pages, unlike bbolt). A clean close writes it once into a freelist
//! node named by the meta; the next commit clears that pointer. A file opened
//! without one (after a crash) rebuilds the list by walking every tree: a page
//! is free iff no tree reaches it.
//!
//! Allocation is best fit (the shortest free run that is long enough, lowest
//! first), found through an index by length: O(log runs) whatever the number
//! of free pages.
//!
//! Freelist node body: `count` pairs of (start u64, length u64).

use std::collections::{BTreeMap, BTreeSet};

use super::page::{le_u64, put_u64, PageId, TxId, HEADER};

#[derive(Debug, Default, Clone)]
pub struct Freelist {
    free: BTreeMap<PageId, u64>,
    /// The same runs as (length, start).
    by_len: BTreeSet<(u64, PageId)>,
    free_pages: u64,
    pending: BTreeMap<TxId, Vec<(PageId, u64)>>,
}

impl Freelist {
    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    pub fn pending_pages(&self) -> u64 {
        self.pending.values().flatten().map(|r| r.1).sum()
    }

    fn insert_run(&mut self, start: PageId, len: u64) {
        self.free.insert(start, len);
        self.by_len.insert((len, start));
    }

    fn remove_run(&mut self, start: PageId, len: u64) {
        self.free.remove(&start);
        self.by_len.remove(&(len, start));
    }

    /// Takes `n` contiguous free pages: the shortest run that fits.
    pub fn allocate(&mut self, n: u64) -> Option<PageId> {
        let &(len, start) = self.by_len.range((n, 0)..).next()?;
        self.remove_run(start, len);
        if len > n {
            self.insert_run(start + n, len - n);
        }
        self.free_pages -= n;
        Some(start)
    }

    /// Returns a run to the free set, merging it with its neighbours.
    pub fn free(&mut self, start: PageId, len: u64) {
        if len == 0 {
            return;
        }
        self.free_pages += len;
        let (mut s, mut l) = (start, len);
        if let Some((&ps, &pl)) = self.free.range(..start).next_back() {
            debug_assert!(ps + pl <= start, "double free of page {start}");
            if ps + pl == start {
                self.remove_run(ps, pl);
                s = ps;
                l += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(start + len)) {
            self.remove_run(start + len, nl);
            l += nl;
        }
        self.insert_run(s, l);
    }

    pub fn add_pending(&mut self, txid: TxId, runs: Vec<(PageId, u64)>) {
        if !runs.is_empty() {
            self.pending.entry(txid).or_default().extend(runs);
        }
    }

    /// Frees every run pending from commits `<= upto`.
    pub fn release(&mut self, upto: TxId) {
        let keep = self.pending.split_off(&(upto + 1));
        let done = std::mem::replace(&mut self.pending, keep);
        for (s, l) in done.into_values().flatten() {
            self.free(s, l);
        }
    }

    /// Every free and pending run: what a persisted freelist holds at close.
    pub fn all_runs(&self) -> Vec<(PageId, u64)> {
        let mut all: Vec<_> = self.free.iter().map(|(&s, &l)| (s, l)).collect();
        all.extend(self.pending.values().flatten().copied());
        all.sort_unstable();
        all
    }

    #[cfg(test)]
    pub fn contains(&self, pgid: PageId) -> bool {
        self.free
            .range(..=pgid)
            .next_back()
            .is_some_and(|(&s, &l)| pgid < s + l)
            || self
                .pending
                .values()
                .flatten()
                .any(|&(s, l)| (s..s + l).contains(&pgid))
    }

    /// Size in bytes of the freelist node body for `runs`.
    pub fn encoded_size(runs: usize) -> usize {
        HEADER + runs * 16
    }

    pub fn encode_into(runs: &[(PageId, u64)], buf: &mut [u8]) {
        for (i, &(s, l)) in runs.iter().enumerate() {
            put_u64(buf, HEADER + i * 16, s);
            put_u64(buf, HEADER + i * 16 + 8, l);
        }
    }

    /// Decodes a freelist node's runs; `count` comes from its header.
    /// Checks that runs are sorted, disjoint and inside `page_count`.
    pub fn decode(run: &[u8], count: usize, page_count: u64) -> Result<Vec<(PageId, u64)>, String> {
        if Self::encoded_size(count) > run.len() {
            return Err("freelist count overruns its node".into());
        }
        let mut out = Vec::with_capacity(count);
        let mut end = 2;
        for i in 0..count {
            let s = le_u64(run, HEADER + i * 16);
            let l = le_u64(run, HEADER + i * 16 + 8);
            if s < end || l == 0 || s.checked_add(l).is_none_or(|e| e > page_count) {
                return Err(format!(
                    "freelist run {i} ({s}+{l}) is out of order or bounds"
                ));
            }
            end = s + l;
            out.push((s, l));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_and_allocates_best_fit() {
        let mut f = Freelist::default();
        f.free(10, 2);
        f.free(14, 1);
        f.free(12, 2);
        assert_eq!(f.all_runs(), vec![(10, 5)]);
        f.free(30, 1);
        f.free(40, 2);
        // A single page comes from the single-page run, two from the pair.
        assert_eq!(f.allocate(1), Some(30));
        assert_eq!(f.allocate(2), Some(40));
        assert_eq!(f.allocate(3), Some(10));
        assert_eq!(f.allocate(3), None);
        assert_eq!(f.allocate(2), Some(13));
        assert_eq!(f.free_pages(), 0);
        assert!(f.by_len.is_empty());
    }

    #[test]
    fn pending_released_by_txid() {
        let mut f = Freelist::default();
        f.add_pending(5, vec![(3, 1)]);
        f.add_pending(7, vec![(4, 1)]);
        f.release(6);
        assert_eq!(f.free_pages(), 1);
        assert!(f.contains(4));
        f.release(7);
        assert_eq!(f.all_runs(), vec![(3, 2)]);
    }
}
