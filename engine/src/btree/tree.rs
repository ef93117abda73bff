//! Reading a tree: node resolution, point lookups and cursors, shared by read
//! and write transactions.
//!
//! A [`Source`] turns a [`Ptr`] into a [`NodeRef`]: a verified view of a
//! committed page, or (in a write transaction) a dirty node. Every committed
//! node is verified against the checksum its parent recorded, and fully
//! validated, the first time it is read after being written; the mapping
//! remembers which pages passed.

use std::path::Path;

use super::mmap::Mapping;
use super::node::{Node, Ptr};
use super::page::{verify_run, Header, NodeView, PageId, FLAG_BUCKET};
use crate::error::{Error, Result};

/// A node to read: a committed page or a dirty node.
#[derive(Clone, Copy)]
pub enum NodeRef<'a> {
    Page(NodeView<'a>),
    Dirty(&'a Node),
}

impl<'a> NodeRef<'a> {
    pub fn is_leaf(&self) -> bool {
        match self {
            NodeRef::Page(v) => v.is_leaf(),
            NodeRef::Dirty(n) => n.is_leaf(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            NodeRef::Page(v) => v.len(),
            NodeRef::Dirty(n) => n.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn key(&self, i: usize) -> &'a [u8] {
        match self {
            NodeRef::Page(v) => v.key(i),
            NodeRef::Dirty(Node::Leaf(l)) => l.key(i),
            NodeRef::Dirty(Node::Branch(es)) => &es[i].key,
        }
    }

    /// Leaf: value and flags of element i.
    pub fn value(&self, i: usize) -> (&'a [u8], u8) {
        match self {
            NodeRef::Page(v) => v.value(i),
            NodeRef::Dirty(Node::Leaf(l)) => (l.value(i), l.flags(i)),
            NodeRef::Dirty(Node::Branch(_)) => (&[], 0),
        }
    }

    /// Branch: child i.
    pub fn child(&self, i: usize) -> Ptr {
        match self {
            NodeRef::Page(v) => {
                let (pgid, crc) = v.child(i);
                Ptr::Page { pgid, crc }
            }
            NodeRef::Dirty(Node::Branch(es)) => es[i].child,
            NodeRef::Dirty(Node::Leaf(_)) => Ptr::Dirty(usize::MAX),
        }
    }

    /// (index of first key >= key, exact match)
    pub fn lower_bound(&self, key: &[u8]) -> (usize, bool) {
        match self {
            NodeRef::Page(v) => v.lower_bound(key),
            NodeRef::Dirty(n) => {
                let r = match n {
                    Node::Leaf(l) => l.search(key),
                    Node::Branch(es) => es.binary_search_by(|e| e.key.as_slice().cmp(key)),
                };
                match r {
                    Ok(i) => (i, true),
                    Err(i) => (i, false),
                }
            }
        }
    }

    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.lower_bound(key) {
            (i, true) => i,
            (0, false) => 0,
            (i, false) => i - 1,
        }
    }
}

/// Where committed pages are read from.
pub struct PageReader<'a> {
    pub map: &'a Mapping,
    pub page_count: u64,
    pub path: &'a Path,
}

impl<'a> PageReader<'a> {
    /// The whole run of the node at `pgid`, bounds-checked against the
    /// committed page count, without verification.
    pub fn run(&self, pgid: PageId) -> Result<&'a [u8]> {
        if pgid < 2 || pgid >= self.page_count {
            return Err(self.corrupt(pgid, format!("page id outside 2..{}", self.page_count)));
        }
        let first = self
            .map
            .pages(pgid, 1)
            .ok_or_else(|| self.corrupt(pgid, "page outside the map"))?;
        let h = Header::read(first).ok_or_else(|| self.corrupt(pgid, "short page"))?;
        let pages = u64::from(h.overflow) + 1;
        if pgid
            .checked_add(pages)
            .is_none_or(|end| end > self.page_count)
        {
            return Err(self.corrupt(
                pgid,
                format!("overflow of {} pages runs past the file", h.overflow),
            ));
        }
        self.map
            .pages(pgid, pages)
            .ok_or_else(|| self.corrupt(pgid, "run outside the map"))
    }

    /// A verified view of the branch or leaf node at `pgid`, which its
    /// parent recorded with checksum `crc`.
    pub fn node(&self, pgid: PageId, crc: u32) -> Result<NodeView<'a>> {
        let run = self.run(pgid)?;
        if self.map.is_verified(pgid) {
            // Verified since last written, and committed pages do not change.
            return NodeView::parse_trusted(run)
                .ok_or_else(|| self.corrupt(pgid, "not a tree node"));
        }
        verify_run(run, pgid, crc).map_err(|w| self.corrupt(pgid, w))?;
        let view = NodeView::parse(run).map_err(|w| self.corrupt(pgid, w))?;
        self.map.set_verified(pgid);
        Ok(view)
    }

    /// Like [`PageReader::node`], but always verifies (for `check`).
    pub fn node_uncached(&self, pgid: PageId, crc: u32) -> Result<NodeView<'a>> {
        let run = self.run(pgid)?;
        verify_run(run, pgid, crc).map_err(|w| self.corrupt(pgid, w))?;
        NodeView::parse(run).map_err(|w| self.corrupt(pgid, w))
    }

    pub fn map_page_size(&self) -> u64 {
        self.map.page_size() as u64
    }

    pub fn corrupt(&self, pgid: PageId, what: impl Into<String>) -> Error {
        Error::corrupted(self.path, pgid, what)
    }
}

/// Resolves pointers to nodes.
pub trait Source {
    fn node(&self, ptr: Ptr) -> Result<NodeRef<'_>>;
}

/// One element found by a lookup or a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The element is a nested bucket (its value is internal).
    pub is_bucket: bool,
}

/// Finds `key` in the tree at `root`.
pub fn lookup<'a, S: Source + ?Sized>(
    src: &'a S,
    root: Ptr,
    key: &[u8],
) -> Result<Option<Entry<'a>>> {
    let mut ptr = root;
    loop {
        let node = src.node(ptr)?;
        if node.is_leaf() {
            let (i, found) = node.lower_bound(key);
            if !found {
                return Ok(None);
            }
            let (value, flags) = node.value(i);
            return Ok(Some(Entry {
                key: node.key(i),
                value,
                is_bucket: flags & FLAG_BUCKET != 0,
            }));
        }
        ptr = node.child(node.child_index(key));
    }
}

/// A cursor over one bucket's keys, in order. Sees the state of its
/// transaction when created; a write transaction cannot change while a
/// cursor borrows it.
pub struct Cursor<'a, S: Source + ?Sized> {
    src: &'a S,
    root: Ptr,
    stack: Vec<(NodeRef<'a>, usize)>,
    /// Where an empty stack is: past the last key (after `next` ran off the
    /// end, so `prev` gives the last key) or before the first.
    past_end: bool,
}

impl<'a, S: Source + ?Sized> Cursor<'a, S> {
    pub(crate) fn new(src: &'a S, root: Ptr) -> Self {
        Cursor {
            src,
            root,
            stack: Vec::new(),
            past_end: false,
        }
    }

    fn current(&self) -> Option<Entry<'a>> {
        let (node, i) = self.stack.last()?;
        if *i >= node.len() {
            return None;
        }
        let (value, flags) = node.value(*i);
        Some(Entry {
            key: node.key(*i),
            value,
            is_bucket: flags & FLAG_BUCKET != 0,
        })
    }

    fn descend(&mut self, mut ptr: Ptr, from_end: bool) -> Result<()> {
        loop {
            let node = self.src.node(ptr)?;
            let i = if from_end {
                node.len().saturating_sub(1)
            } else {
                0
            };
            self.stack.push((node, i));
            if node.is_leaf() {
                return Ok(());
            }
            if node.is_empty() {
                // Only a dirty branch could be empty, and none is; the
                // settle/step loops treat it as exhausted.
                return Ok(());
            }
            ptr = node.child(i);
        }
    }

    /// Moves forward until the top of the stack is a valid leaf element.
    fn settle_forward(&mut self) -> Result<()> {
        loop {
            match self.stack.last() {
                None => return Ok(()),
                Some((node, i)) if *i < node.len() => return Ok(()),
                Some(_) => {}
            }
            self.stack.pop();
            // Climb to the first ancestor with a next child.
            loop {
                let Some((node, i)) = self.stack.last_mut() else {
                    return Ok(());
                };
                if *i + 1 < node.len() {
                    *i += 1;
                    let child = node.child(*i);
                    self.descend(child, false)?;
                    break;
                }
                self.stack.pop();
            }
        }
    }

    /// Moves backward to the previous leaf element (from the current one).
    fn step_back(&mut self) -> Result<()> {
        loop {
            let Some((node, i)) = self.stack.last_mut() else {
                return Ok(());
            };
            if node.is_leaf() && *i > 0 && *i <= node.len() {
                *i -= 1;
                return Ok(());
            }
            self.stack.pop();
            loop {
                let Some((node, i)) = self.stack.last_mut() else {
                    return Ok(());
                };
                if *i > 0 {
                    *i -= 1;
                    let child = node.child(*i);
                    self.descend(child, true)?;
                    break;
                }
                self.stack.pop();
            }
            // A non-empty leaf landed on its last element: done.
            if let Some((node, i)) = self.stack.last() {
                if *i < node.len() {
                    return Ok(());
                }
            }
        }
    }

    pub fn first(&mut self) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        self.past_end = true;
        self.descend(self.root, false)?;
        self.settle_forward()?;
        Ok(self.current())
    }

    pub fn last(&mut self) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        self.past_end = false;
        self.descend(self.root, true)?;
        if let Some((node, _)) = self.stack.last() {
            if node.is_empty() {
                self.step_back()?;
            }
        }
        Ok(self.current())
    }

    /// Positions at the first key >= `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        self.past_end = true;
        let mut ptr = self.root;
        loop {
            let node = self.src.node(ptr)?;
            if node.is_leaf() {
                let (i, _) = node.lower_bound(key);
                self.stack.push((node, i));
                break;
            }
            let i = node.child_index(key);
            self.stack.push((node, i));
            ptr = node.child(i);
        }
        self.settle_forward()?;
        Ok(self.current())
    }

    #[allow(clippy::should_implement_trait)]
    /// The next key; after the last, `None` (and `prev` then gives the
    /// last key again).
    pub fn next(&mut self) -> Result<Option<Entry<'a>>> {
        match self.stack.last_mut() {
            None if self.past_end => return Ok(None),
            None => return self.first(),
            Some((_, i)) => *i += 1,
        }
        self.settle_forward()?;
        self.past_end = true;
        Ok(self.current())
    }

    /// The previous key; before the first, `None` (and `next` then gives the
    /// first key again).
    pub fn prev(&mut self) -> Result<Option<Entry<'a>>> {
        if self.stack.is_empty() {
            return if self.past_end { self.last() } else { Ok(None) };
        }
        self.step_back()?;
        self.past_end = false;
        Ok(self.current())
    }
}
