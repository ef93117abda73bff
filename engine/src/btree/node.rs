//! Nodes a write transaction has modified, held in memory until commit.
//!
//! A write transaction copies a page into a [`Node`] the first time it
//! changes it ("materializes" it) and frees the page; the tree then points at
//! the node through [`Ptr::Dirty`]. At commit, dirty nodes are merged when
//! under a quarter full, split when over a page, and written to new pages
//! (copy-on-write): a committed page is never modified.

use super::page::{
    branch_elem_size, leaf_elem_size, NodeView, PageId, HEADER,
};

pub type NodeId = usize;

/// A reference to a child node: a committed page run (with the checksum it
/// was written with) or a dirty node of the current write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ptr {
    Page { pgid: PageId, crc: u32 },
    Dirty(NodeId),
}

#[derive(Debug, Clone)]
pub struct LeafEntry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub flags: u8,
}

#[derive(Debug, Clone)]
pub struct BranchEntry {
    pub key: Vec<u8>,
    pub child: Ptr,
}

#[derive(Debug, Clone)]
pub enum Node {
    Leaf(Vec<LeafEntry>),
    Branch(Vec<BranchEntry>),
}

impl Node {
    pub fn from_view(v: &NodeView<'_>) -> Node {
        if v.is_leaf() {
            Node::Leaf(
                (0..v.len())
                    .map(|i| {
                        let (value, flags) = v.value(i);
                        LeafEntry { key: v.key(i).to_vec(), value: value.to_vec(), flags }
                    })
                    .collect(),
            )
        } else {
            Node::Branch(
                (0..v.len())
                    .map(|i| {
                        let (pgid, crc) = v.child(i);
                        BranchEntry { key: v.key(i).to_vec(), child: Ptr::Page { pgid, crc } }
                    })
                    .collect(),
            )
        }
    }

    /// Encoded size in bytes if written as one node.
    pub fn size(&self) -> usize {
        HEADER
            + match self {
                Node::Leaf(es) => es.iter().map(|e| leaf_elem_size(e.key.len(), e.value.len())).sum(),
                Node::Branch(es) => es.iter().map(|e| branch_elem_size(e.key.len())).sum::<usize>(),
            }
    }

    pub fn len(&self) -> usize {
        match self {
            Node::Leaf(es) => es.len(),
            Node::Branch(es) => es.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_leaf(&self) -> bool {
        matches!(self, Node::Leaf(_))
    }
}

/// Index of the child of a branch whose key range holds `key`.
pub fn branch_child_index(entries: &[BranchEntry], key: &[u8]) -> usize {
    match entries.binary_search_by(|e| e.key.as_slice().cmp(key)) {
        Ok(i) => i,
        Err(0) => 0,
        Err(i) => i - 1,
    }
}

/// Splits elements of the given encoded sizes into consecutive groups that
/// each fit a page (a single element larger than a page gets a group, and a
/// run of pages, of its own). Groups are balanced: a node just over a page
/// splits into two halves, a long run of appends fills pages.
pub fn split_points(sizes: &[usize], page_size: usize) -> Vec<std::ops::Range<usize>> {
    let body = page_size - HEADER;
    let total: usize = sizes.iter().sum();
    if total <= body || sizes.len() <= 1 {
        #[allow(clippy::single_range_in_vec_init)]
        return vec![0..sizes.len()];
    }
    let target = total.div_ceil(total.div_ceil(body));
    let mut out = Vec::new();
    let (mut start, mut cur) = (0, 0);
    for (i, &s) in sizes.iter().enumerate() {
        if cur > 0 && (cur + s > body || cur >= target) {
            out.push(start..i);
            start = i;
            cur = 0;
        }
        cur += s;
    }
    out.push(start..sizes.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_balances_and_respects_page() {
        let sizes = vec![100; 50]; // 5000 bytes
        let groups = split_points(&sizes, 4096);
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| g.len() * 100 <= 4096 - HEADER));
        let big = vec![10, 9000, 10];
        let groups = split_points(&big, 4096);
        assert_eq!(groups, vec![0..1, 1..2, 2..3]);
        assert_eq!(split_points(&[], 4096), vec![0..0]);
    }
}
