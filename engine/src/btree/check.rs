//! Full integrity check and space statistics.
//!
//! `check` re-verifies every reachable node (checksum against its own header
//! and against its parent, structure, key order inside the node and against
//! its parent's bounds, uniform leaf depth), and that every page is exactly
//! one of: meta, reachable, free or pending. It reports every problem it finds
//! (naming the page) instead of stopping at the first.

use super::db::Database;
use super::page::{decode_bucket, PageId, FLAG_BUCKET, HEADER};
use super::tree::PageReader;
use crate::error::{Error, Result};

/// Space and shape figures of a database.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub page_size: usize,
    pub page_count: u64,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    /// Extra pages of multi-page nodes.
    pub overflow_pages: u64,
    pub free_pages: u64,
    pub pending_pages: u64,
    /// Bytes of branch / leaf runs in use (headers and elements).
    pub branch_inuse: u64,
    pub leaf_inuse: u64,
    pub buckets: u64,
    pub keys: u64,
    pub max_depth: usize,
}

impl Stats {
    pub fn branch_fill(&self) -> f64 {
        fill(self.branch_inuse, self.branch_pages, self.page_size)
    }

    pub fn leaf_fill(&self) -> f64 {
        fill(self.leaf_inuse, self.leaf_pages, self.page_size)
    }
}

fn fill(used: u64, pages: u64, ps: usize) -> f64 {
    if pages == 0 {
        0.0
    } else {
        used as f64 / (pages as f64 * ps as f64)
    }
}

struct Job {
    pgid: PageId,
    crc: u32,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    depth: usize,
    tree: usize,
}

/// Walks everything; returns the problems found and the statistics.
fn scan(db: &Database) -> Result<(Vec<String>, Stats)> {
    let tx = db.begin_read();
    let reader: PageReader<'_> = tx.reader();
    let info = db.info();
    let n = tx.page_count();
    let mut problems = Vec::new();
    let mut owner = vec![0u8; n as usize]; // 0 unseen, 1 meta, 2 reachable, 3 free
    owner[0] = 1;
    owner[1] = 1;
    let mut st = Stats {
        page_size: info.page_size,
        page_count: n,
        ..Default::default()
    };
    let mut leaf_depth: Vec<Option<usize>> = vec![None];
    let root = tx.root();
    let mut stack = vec![Job {
        pgid: root.root,
        crc: root.crc,
        lower: None,
        upper: None,
        depth: 0,
        tree: 0,
    }];
    while let Some(job) = stack.pop() {
        let view = match reader.node_uncached(job.pgid, job.crc) {
            Ok(v) => v,
            Err(Error::Corrupted { page, what, .. }) => {
                problems.push(format!("page {page}: {what}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let run_pages = reader.run(job.pgid)?.len() as u64 / info.page_size as u64;
        for p in job.pgid..job.pgid + run_pages {
            match owner[p as usize] {
                0 => owner[p as usize] = 2,
                _ => problems.push(format!(
                    "page {p}: reachable twice (from node {})",
                    job.pgid
                )),
            }
        }
        st.overflow_pages += run_pages - 1;
        st.max_depth = st.max_depth.max(job.depth + 1);
        let used: u64 = if view.is_empty() {
            HEADER as u64
        } else {
            let (last_key, last_len) = (view.key(view.len() - 1), view.len());
            let _ = last_len;
            // End of the last element = end of its key (+ value for leaves).
            let end = last_key.as_ptr() as usize
                + last_key.len()
                + if view.is_leaf() {
                    view.value(view.len() - 1).0.len()
                } else {
                    0
                };
            (end - reader.run(job.pgid)?.as_ptr() as usize) as u64
        };
        let first = view.len().checked_sub(1).map(|_| view.key(0));
        let last = view.len().checked_sub(1).map(|i| view.key(i));
        if let (Some(lo), Some(f)) = (&job.lower, first) {
            if f < lo.as_slice() {
                problems.push(format!(
                    "page {}: first key below its parent's bound",
                    job.pgid
                ));
            }
        }
        if let (Some(hi), Some(l)) = (&job.upper, last) {
            if l >= hi.as_slice() {
                problems.push(format!(
                    "page {}: last key not below the next sibling's bound",
                    job.pgid
                ));
            }
        }
        if view.is_leaf() {
            st.leaf_pages += run_pages;
            st.leaf_inuse += used;
            match leaf_depth[job.tree] {
                None => leaf_depth[job.tree] = Some(job.depth),
                Some(d) if d != job.depth => problems.push(format!(
                    "page {}: leaf at depth {} where others are at {d}",
                    job.pgid, job.depth
                )),
                _ => {}
            }
            for i in 0..view.len() {
                let (v, flags) = view.value(i);
                if flags & FLAG_BUCKET != 0 {
                    st.buckets += 1;
                    match decode_bucket(v) {
                        Some((r, c)) => {
                            leaf_depth.push(None);
                            stack.push(Job {
                                pgid: r,
                                crc: c,
                                lower: None,
                                upper: None,
                                depth: 0,
                                tree: leaf_depth.len() - 1,
                            });
                        }
                        None => {
                            problems.push(format!("page {}: malformed bucket reference", job.pgid))
                        }
                    }
                } else if job.tree == 0 {
                    problems.push(format!(
                        "page {}: plain key in the top-level namespace",
                        job.pgid
                    ));
                } else {
                    st.keys += 1;
                }
            }
        } else {
            st.branch_pages += run_pages;
            st.branch_inuse += used;
            for i in (0..view.len()).rev() {
                let (c, cc) = view.child(i);
                let lower = if i == 0 {
                    job.lower.clone()
                } else {
                    Some(view.key(i).to_vec())
                };
                let upper = if i + 1 < view.len() {
                    Some(view.key(i + 1).to_vec())
                } else {
                    job.upper.clone()
                };
                stack.push(Job {
                    pgid: c,
                    crc: cc,
                    lower,
                    upper,
                    depth: job.depth + 1,
                    tree: job.tree,
                });
            }
        }
    }
    for (s, l) in db.free_runs() {
        for p in s..s + l {
            match owner.get(p as usize) {
                Some(0) => owner[p as usize] = 3,
                Some(_) => problems.push(format!("page {p}: free but also in use")),
                None => problems.push(format!("page {p}: free page beyond the page count {n}")),
            }
        }
    }
    let leaked: Vec<usize> = owner
        .iter()
        .enumerate()
        .filter(|(_, &o)| o == 0)
        .map(|(i, _)| i)
        .collect();
    if !leaked.is_empty() {
        problems.push(format!(
            "{} page(s) neither reachable nor free (first: {})",
            leaked.len(),
            leaked[0]
        ));
    }
    st.free_pages = info.free_pages;
    st.pending_pages = info.pending_pages;
    Ok((problems, st))
}

/// Checks the whole database; an empty list means it is consistent. Waits
/// for an open write transaction to end (it needs the freelist).
pub fn check(db: &Database) -> Result<Vec<String>> {
    Ok(scan(db)?.0)
}

/// Page and fill statistics (a full walk).
pub fn stats(db: &Database) -> Result<Stats> {
    Ok(scan(db)?.1)
}
