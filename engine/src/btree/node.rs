//! Nodes a write transaction has modified, held in memory until commit.
//!
//! A write transaction copies a page into a [`Node`] the first time it
//! changes it ("materializes" it) and frees the page; the tree then points at
//! the node through [`Ptr::Dirty`]. At commit, dirty nodes are merged when
//! under a quarter full, split when over a page, and written to new pages
//! (copy-on-write): a committed page is never modified.

use super::page::{branch_elem_size, leaf_elem_size, NodeView, PageId, HEADER};

pub type NodeId = usize;

/// A reference to a child node: a committed page run (with the checksum it
/// was written with) or a dirty node of the current write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ptr {
    Page { pgid: PageId, crc: u32 },
    Dirty(NodeId),
}

/// A dirty leaf: the bytes of the page it was copied from (one copy, no
/// per-element allocation) plus anything added since, and an index of its
/// live elements in key order. A key is always followed by its value.
#[derive(Debug, Clone, Default)]
pub struct Leaf {
    buf: Vec<u8>,
    elems: Vec<LeafElem>,
    /// Encoded size of the elements, slots included.
    size: usize,
}

#[derive(Debug, Clone, Copy)]
struct LeafElem {
    off: u32,
    klen: u32,
    vlen: u32,
    flags: u8,
}

impl LeafElem {
    fn size(&self) -> usize {
        leaf_elem_size(self.klen as usize, self.vlen as usize)
    }
}

impl Leaf {
    pub fn from_view(v: &NodeView<'_>) -> Leaf {
        let mut size = 0;
        let elems = (0..v.len())
            .map(|i| {
                let (off, klen, vlen, flags) = v.leaf_elem(i);
                let e = LeafElem {
                    off: off as u32,
                    klen: klen as u32,
                    vlen: vlen as u32,
                    flags,
                };
                size += e.size();
                e
            })
            .collect();
        Leaf {
            buf: v.bytes().to_vec(),
            elems,
            size,
        }
    }

    pub fn len(&self) -> usize {
        self.elems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let e = self.elems[i];
        &self.buf[e.off as usize..(e.off + e.klen) as usize]
    }

    pub fn value(&self, i: usize) -> &[u8] {
        let e = self.elems[i];
        let start = (e.off + e.klen) as usize;
        &self.buf[start..start + e.vlen as usize]
    }

    pub fn flags(&self, i: usize) -> u8 {
        self.elems[i].flags
    }

    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        self.elems
            .binary_search_by(|e| self.buf[e.off as usize..(e.off + e.klen) as usize].cmp(key))
    }

    fn append(&mut self, key: &[u8], value: &[u8], flags: u8) -> LeafElem {
        let off = self.buf.len() as u32;
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        LeafElem {
            off,
            klen: key.len() as u32,
            vlen: value.len() as u32,
            flags,
        }
    }

    pub fn insert(&mut self, i: usize, key: &[u8], value: &[u8], flags: u8) {
        let e = self.append(key, value, flags);
        self.size += e.size();
        self.elems.insert(i, e);
    }

    /// Replaces the value of element i (its old bytes stay as garbage until
    /// the node is written).
    pub fn set(&mut self, i: usize, value: &[u8], flags: u8) {
        let old = self.elems[i];
        let e = if value.len() <= old.vlen as usize {
            let start = (old.off + old.klen) as usize;
            self.buf[start..start + value.len()].copy_from_slice(value);
            LeafElem {
                vlen: value.len() as u32,
                flags,
                ..old
            }
        } else {
            let key = self.key(i).to_vec();
            self.append(&key, value, flags)
        };
        self.size = self.size - old.size() + e.size();
        self.elems[i] = e;
    }

    pub fn remove(&mut self, i: usize) {
        let e = self.elems.remove(i);
        self.size -= e.size();
    }

    /// Appends every element of `other`, whose keys all sort after ours.
    pub fn extend(&mut self, other: &Leaf) {
        for i in 0..other.len() {
            let e = self.append(other.key(i), other.value(i), other.flags(i));
            self.size += e.size();
            self.elems.push(e);
        }
    }

    /// Moves elements `at..` into a new leaf.
    pub fn split_off(&mut self, at: usize) -> Leaf {
        let mut right = Leaf::default();
        for i in at..self.len() {
            let e = right.append(self.key(i), self.value(i), self.flags(i));
            right.size += e.size();
            right.elems.push(e);
        }
        for e in self.elems.drain(at..) {
            self.size -= e.size();
        }
        right
    }

    pub fn elem_size(&self, i: usize) -> usize {
        self.elems[i].size()
    }

    /// Encoded size as one node, header included.
    pub fn size(&self) -> usize {
        HEADER + self.size
    }
}

#[derive(Debug, Clone)]
pub struct BranchEntry {
    pub key: Vec<u8>,
    pub child: Ptr,
}

#[derive(Debug, Clone)]
pub enum Node {
    Leaf(Leaf),
    Branch(Vec<BranchEntry>),
}

impl Node {
    pub fn from_view(v: &NodeView<'_>) -> Node {
        if v.is_leaf() {
            Node::Leaf(Leaf::from_view(v))
        } else {
            Node::Branch(
                (0..v.len())
                    .map(|i| {
                        let (pgid, crc) = v.child(i);
                        BranchEntry {
                            key: v.key(i).to_vec(),
                            child: Ptr::Page { pgid, crc },
                        }
                    })
                    .collect(),
            )
        }
    }

    /// Encoded size in bytes if written as one node.
    pub fn size(&self) -> usize {
        HEADER
            + match self {
                Node::Leaf(l) => l.size() - HEADER,
                Node::Branch(es) => es
                    .iter()
                    .map(|e| branch_elem_size(e.key.len()))
                    .sum::<usize>(),
            }
    }

    pub fn len(&self) -> usize {
        match self {
            Node::Leaf(l) => l.len(),
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
