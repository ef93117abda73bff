//! The write transaction.
//!
//! Changes go to dirty in-memory nodes (see [`super::node`]); the committed
//! pages they replace are freed, but only into this transaction's list, which
//! becomes "pending at this txid" when it commits. Dropping the transaction
//! without committing discards everything: nothing touched the file.
//!
//! Commit, in order: spill every modified bucket tree bottom-up (nested
//! buckets first, each new root recorded in its parent), grow the file if
//! needed, write the new pages, write the meta into slot `txid % 2`, one
//! fdatasync, then publish the new snapshot to readers. Any I/O error
//! poisons the database.

use std::collections::HashMap;
use std::sync::Arc;

use super::meta::Meta;
use super::mmap::Mapping;
use super::node::{branch_child_index, split_points, BranchEntry, Leaf, Node, NodeId, Ptr};
use super::page::{
    branch_elem_size, decode_bucket, encode_bucket, seal, NodeBuilder, PageId, TxId, FLAG_BUCKET,
    HEADER, KIND_BRANCH, KIND_LEAF,
};
use super::state::{grow, DbState, Snapshot, WriterState, MAX_KEY_SIZE, MAX_VALUE_SIZE};
use super::tree::{lookup, Cursor, Entry, NodeRef, PageReader, Source};
use super::walk::walk;
use crate::error::{Error, Result};

/// A bucket as seen by a write transaction: a handle valid until the
/// transaction ends or the bucket is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteBucket(usize);

impl WriteBucket {
    /// The top-level namespace: it holds buckets only.
    pub const ROOT: WriteBucket = WriteBucket(0);
}

struct BucketState {
    parent: WriteBucket,
    name: Vec<u8>,
    root: Ptr,
    depth: usize,
    alive: bool,
}

/// Page allocation and the pages written during one commit.
struct Alloc<'w> {
    ws: &'w mut WriterState,
    page_count: u64,
    txid: TxId,
    page_size: usize,
    writes: Vec<(PageId, Vec<u8>)>,
}

impl Alloc<'_> {
    fn write(&mut self, mut b: NodeBuilder, count: usize) -> (PageId, u32) {
        let pages = b.pages(self.page_size);
        let pgid = self.ws.freelist.allocate(pages).unwrap_or_else(|| {
            let p = self.page_count;
            self.page_count += pages;
            p
        });
        let crc = seal(&mut b.buf, self.page_size, pgid, self.txid, count as u32);
        self.writes.push((pgid, b.buf));
        (pgid, crc)
    }
}

type Spilled = Vec<(Vec<u8>, PageId, u32)>;
/// Nested buckets met while freeing: name and stored root reference.
type NestedRefs = Vec<(Vec<u8>, Option<(PageId, u32)>)>;

pub struct WriteTxn {
    shared: Arc<DbState>,
    ws: Option<WriterState>,
    snap: Arc<Snapshot>,
    txid: TxId,
    nodes: Vec<Option<Node>>,
    buckets: Vec<BucketState>,
    by_name: HashMap<(WriteBucket, Vec<u8>), WriteBucket>,
    freed: Vec<(PageId, u64)>,
    /// (branch, child index) from the root to the last leaf `leaf_for` found.
    path: Vec<(NodeId, usize)>,
}

/// A dirty node larger than this many pages is split during the
/// transaction, not only at commit.
const EAGER_SPLIT_PAGES: usize = 4;

/// How many leading elements fill `pages` page bodies of `body` bytes when
/// packed page by page (at least 1, and at most all but one, so both sides
/// of a split are non-empty).
fn fill_index(sizes: impl ExactSizeIterator<Item = usize>, pages: usize, body: usize) -> usize {
    let n = sizes.len();
    let (mut page, mut used, mut at) = (0, 0, 0);
    for s in sizes {
        if used + s > body {
            page += 1;
            used = 0;
        }
        if page == pages {
            break;
        }
        used += s;
        at += 1;
    }
    at.clamp(1, n.saturating_sub(1).max(1))
}

impl WriteTxn {
    pub(crate) fn new(shared: Arc<DbState>, ws: WriterState, snap: Arc<Snapshot>) -> WriteTxn {
        let root = BucketState {
            parent: WriteBucket::ROOT,
            name: Vec::new(),
            root: Ptr::Page {
                pgid: snap.meta.root,
                crc: snap.meta.root_crc,
            },
            depth: 0,
            alive: true,
        };
        WriteTxn {
            txid: snap.meta.txid + 1,
            shared,
            ws: Some(ws),
            snap,
            nodes: Vec::new(),
            buckets: vec![root],
            by_name: HashMap::new(),
            freed: Vec::new(),
            path: Vec::new(),
        }
    }

    /// The txid this transaction commits as.
    pub fn txid(&self) -> TxId {
        self.txid
    }

    fn reader(&self) -> PageReader<'_> {
        PageReader {
            map: &self.snap.map,
            page_count: self.snap.meta.page_count,
            path: &self.shared.path,
        }
    }

    fn state(&self, b: WriteBucket) -> Result<&BucketState> {
        self.buckets
            .get(b.0)
            .filter(|s| s.alive)
            .ok_or(Error::BucketNotFound)
    }

    fn root_of(&self, b: WriteBucket) -> Result<Ptr> {
        Ok(self.state(b)?.root)
    }

    fn push_node(&mut self, n: Node) -> NodeId {
        self.nodes.push(Some(n));
        self.nodes.len() - 1
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id].as_mut().expect("dirty node taken twice")
    }

    /// Turns a committed node into a dirty one, freeing its pages.
    fn materialize(&mut self, ptr: Ptr) -> Result<NodeId> {
        match ptr {
            Ptr::Dirty(id) => Ok(id),
            Ptr::Page { pgid, crc } => {
                let (node, pages) = {
                    let r = self.reader();
                    let view = r.node(pgid, crc)?;
                    (
                        Node::from_view(&view),
                        r.run(pgid)?.len() / self.shared.page_size,
                    )
                };
                self.freed.push((pgid, pages as u64));
                Ok(self.push_node(node))
            }
        }
    }

    /// Materializes child `i` of a dirty branch and points the branch at it.
    fn materialize_child(&mut self, branch: NodeId, i: usize) -> Result<NodeId> {
        let child = match self.node_mut(branch) {
            Node::Branch(es) => es[i].child,
            Node::Leaf(_) => unreachable!("materialize_child on a leaf"),
        };
        let id = self.materialize(child)?;
        if let Node::Branch(es) = self.node_mut(branch) {
            es[i].child = Ptr::Dirty(id);
        }
        Ok(id)
    }

    /// Dirties the path from bucket `b`'s root to the leaf for `key`.
    fn leaf_for(&mut self, b: WriteBucket, key: &[u8]) -> Result<NodeId> {
        self.path.clear();
        let root = self.root_of(b)?;
        let mut id = self.materialize(root)?;
        self.buckets[b.0].root = Ptr::Dirty(id);
        loop {
            let i = match self.node_mut(id) {
                Node::Leaf(_) => return Ok(id),
                Node::Branch(es) => branch_child_index(es, key),
            };
            self.path.push((id, i));
            id = self.materialize_child(id, i)?;
        }
    }

    /// Splits a dirty node that grew past [`EAGER_SPLIT_PAGES`] pages in two,
    /// and its ancestors as needed (the path is the one `leaf_for` took), so
    /// that inserts into one node stay cheap in a large transaction. Commit
    /// still splits nodes to page size.
    fn split_if_big(&mut self, b: WriteBucket, mut id: NodeId) {
        let limit = EAGER_SPLIT_PAGES * self.shared.page_size;
        while self.node_mut(id).size() > limit && self.node_mut(id).len() >= 2 {
            // The left part gets exactly what fills half the pages, so
            // that commit writes it as full pages (appends go right).
            let (pages, body) = (EAGER_SPLIT_PAGES / 2, self.shared.page_size - HEADER);
            let (right, right_key, left_key) = match self.node_mut(id) {
                Node::Leaf(l) => {
                    let at = fill_index((0..l.len()).map(|i| l.elem_size(i)), pages, body);
                    let r = l.split_off(at);
                    let (rk, lk) = (r.key(0).to_vec(), l.key(0).to_vec());
                    (Node::Leaf(r), rk, lk)
                }
                Node::Branch(es) => {
                    let at = fill_index(
                        es.iter().map(|e| branch_elem_size(e.key.len())),
                        pages,
                        body,
                    );
                    let r = es.split_off(at);
                    let (rk, lk) = (r[0].key.clone(), es[0].key.clone());
                    (Node::Branch(r), rk, lk)
                }
            };
            let rid = self.push_node(right);
            let entry = BranchEntry {
                key: right_key,
                child: Ptr::Dirty(rid),
            };
            match self.path.pop() {
                Some((parent, i)) => {
                    if let Node::Branch(es) = self.node_mut(parent) {
                        es.insert(i + 1, entry);
                    }
                    id = parent;
                }
                None => {
                    let left = BranchEntry {
                        key: left_key,
                        child: Ptr::Dirty(id),
                    };
                    let root = self.push_node(Node::Branch(vec![left, entry]));
                    self.buckets[b.0].root = Ptr::Dirty(root);
                    return;
                }
            }
        }
    }

    /// Sets `key` in bucket `b`'s tree. With `check`, refuses to replace a
    /// nested bucket (the path is dirtied either way; that only costs a
    /// rewrite at commit).
    fn tree_put(
        &mut self,
        b: WriteBucket,
        key: &[u8],
        value: &[u8],
        flags: u8,
        check: bool,
    ) -> Result<()> {
        let leaf = self.leaf_for(b, key)?;
        let Node::Leaf(l) = self.node_mut(leaf) else {
            unreachable!()
        };
        match l.search(key) {
            Ok(i) if check && l.flags(i) & FLAG_BUCKET != 0 => {
                return Err(Error::IncompatibleValue)
            }
            Ok(i) => l.set(i, value, flags),
            Err(i) => l.insert(i, key, value, flags),
        }
        if l.size() > EAGER_SPLIT_PAGES * self.shared.page_size {
            self.split_if_big(b, leaf);
        }
        Ok(())
    }

    fn tree_remove(&mut self, b: WriteBucket, key: &[u8]) -> Result<()> {
        let leaf = self.leaf_for(b, key)?;
        let Node::Leaf(l) = self.node_mut(leaf) else {
            unreachable!()
        };
        if let Ok(i) = l.search(key) {
            l.remove(i);
        }
        Ok(())
    }

    fn find(&self, b: WriteBucket, key: &[u8]) -> Result<Option<Entry<'_>>> {
        lookup(self, self.root_of(b)?, key)
    }

    fn check_key(key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::KeyRequired);
        }
        if key.len() > MAX_KEY_SIZE {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY_SIZE,
            });
        }
        Ok(())
    }

    /// Sets `key` to `value` in bucket `b`.
    pub fn put(&mut self, b: WriteBucket, key: &[u8], value: &[u8]) -> Result<()> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_SIZE,
            });
        }
        if b == WriteBucket::ROOT {
            return Err(Error::IncompatibleValue);
        }
        self.tree_put(b, key, value, 0, true)
    }

    /// Removes `key` from bucket `b`; returns whether it was there.
    pub fn delete(&mut self, b: WriteBucket, key: &[u8]) -> Result<bool> {
        match self.find(b, key)? {
            None => Ok(false),
            Some(e) if e.is_bucket => Err(Error::IncompatibleValue),
            Some(_) => {
                self.tree_remove(b, key)?;
                Ok(true)
            }
        }
    }

    pub fn get(&self, b: WriteBucket, key: &[u8]) -> Result<Option<&[u8]>> {
        match self.find(b, key)? {
            Some(e) if e.is_bucket => Err(Error::IncompatibleValue),
            Some(e) => Ok(Some(e.value)),
            None => Ok(None),
        }
    }

    pub fn cursor(&self, b: WriteBucket) -> Result<Cursor<'_, WriteTxn>> {
        Ok(Cursor::new(self, self.root_of(b)?))
    }

    /// The nested bucket `name` of `parent`, if it exists.
    pub fn bucket(&mut self, parent: WriteBucket, name: &[u8]) -> Result<Option<WriteBucket>> {
        self.state(parent)?;
        if let Some(&id) = self.by_name.get(&(parent, name.to_vec())) {
            if self.buckets[id.0].alive {
                return Ok(Some(id));
            }
        }
        let root = match self.find(parent, name)? {
            None => return Ok(None),
            Some(e) if !e.is_bucket => return Err(Error::IncompatibleValue),
            Some(e) => decode_bucket(e.value).ok_or_else(|| {
                self.reader()
                    .corrupt(self.snap.meta.root, "malformed bucket reference")
            })?,
        };
        Ok(Some(self.add_state(
            parent,
            name,
            Ptr::Page {
                pgid: root.0,
                crc: root.1,
            },
        )))
    }

    /// A bucket by its path of names from the top level.
    pub fn bucket_path(&mut self, path: &[&[u8]]) -> Result<Option<WriteBucket>> {
        let mut b = WriteBucket::ROOT;
        for name in path {
            match self.bucket(b, name)? {
                Some(n) => b = n,
                None => return Ok(None),
            }
        }
        Ok(Some(b))
    }

    fn add_state(&mut self, parent: WriteBucket, name: &[u8], root: Ptr) -> WriteBucket {
        let id = WriteBucket(self.buckets.len());
        let depth = self.buckets[parent.0].depth + 1;
        self.buckets.push(BucketState {
            parent,
            name: name.to_vec(),
            root,
            depth,
            alive: true,
        });
        self.by_name.insert((parent, name.to_vec()), id);
        id
    }

    /// Creates bucket `name` in `parent`.
    pub fn create_bucket(&mut self, parent: WriteBucket, name: &[u8]) -> Result<WriteBucket> {
        Self::check_key(name)?;
        if self.bucket(parent, name)?.is_some() {
            return Err(Error::BucketExists);
        }
        // The real root reference is written at commit.
        self.tree_put(parent, name, &encode_bucket(0, 0), FLAG_BUCKET, false)?;
        let leaf = self.push_node(Node::Leaf(Leaf::default()));
        Ok(self.add_state(parent, name, Ptr::Dirty(leaf)))
    }

    pub fn create_bucket_if_missing(
        &mut self,
        parent: WriteBucket,
        name: &[u8],
    ) -> Result<WriteBucket> {
        match self.bucket(parent, name)? {
            Some(b) => Ok(b),
            None => self.create_bucket(parent, name),
        }
    }

    /// Deletes bucket `name` of `parent` with everything in it.
    pub fn delete_bucket(&mut self, parent: WriteBucket, name: &[u8]) -> Result<()> {
        let id = self.bucket(parent, name)?.ok_or(Error::BucketNotFound)?;
        self.free_bucket(id)?;
        self.tree_remove(parent, name)
    }

    /// Frees every page of bucket `id` and of the buckets inside it, and
    /// ends their handles. A nested bucket opened in this transaction is
    /// freed through its handle (its root may be dirty), any other through
    /// the reference stored in its parent.
    fn free_bucket(&mut self, id: WriteBucket) -> Result<()> {
        self.buckets[id.0].alive = false;
        let mut stack = vec![self.buckets[id.0].root];
        let mut nested: NestedRefs = Vec::new();
        while let Some(ptr) = stack.pop() {
            match ptr {
                Ptr::Dirty(n) => match self.nodes[n].take() {
                    Some(Node::Branch(es)) => stack.extend(es.iter().map(|e| e.child)),
                    Some(Node::Leaf(l)) => nested.extend(
                        (0..l.len())
                            .filter(|&i| l.flags(i) & FLAG_BUCKET != 0)
                            .map(|i| (l.key(i).to_vec(), decode_bucket(l.value(i)))),
                    ),
                    None => {}
                },
                Ptr::Page { pgid, crc } => {
                    let reader = self.reader();
                    let view = reader.node(pgid, crc)?;
                    let pages = reader.run(pgid)?.len() / self.shared.page_size;
                    for i in 0..view.len() {
                        if view.is_leaf() {
                            let (v, flags) = view.value(i);
                            if flags & FLAG_BUCKET != 0 {
                                nested.push((view.key(i).to_vec(), decode_bucket(v)));
                            }
                        } else {
                            let (c, cc) = view.child(i);
                            stack.push(Ptr::Page { pgid: c, crc: cc });
                        }
                    }
                    self.freed.push((pgid, pages as u64));
                }
            }
        }
        for (name, reference) in nested {
            match self.by_name.get(&(id, name)).copied() {
                Some(child) if self.buckets[child.0].alive => self.free_bucket(child)?,
                _ => {
                    let (pgid, crc) = reference
                        .ok_or_else(|| self.reader().corrupt(0, "malformed bucket reference"))?;
                    let mut freed = Vec::new();
                    walk(&self.reader(), pgid, crc, &mut |v| {
                        freed.push((v.pgid, v.pages));
                        Ok(())
                    })?;
                    self.freed.extend(freed);
                }
            }
        }
        Ok(())
    }

    /// Merges dirty children under a quarter page with a neighbour.
    fn rebalance(&mut self, es: &mut Vec<BranchEntry>) -> Result<()> {
        let threshold = self.shared.page_size / 4;
        let snug = self.shared.page_size * 3 / 4;
        let dirty_size = |t: &Self, p: Ptr| match p {
            Ptr::Dirty(id) => t.nodes[id].as_ref().map(Node::size),
            Ptr::Page { .. } => None,
        };
        let mut i = 0;
        while i < es.len() && es.len() > 1 {
            let size = dirty_size(self, es[i].child);
            let next = es.get(i + 1).and_then(|e| dirty_size(self, e.child));
            // Under a quarter page: merge with a neighbour whatever its state.
            // Two dirty neighbours that fit in three quarters of a page: join.
            let small = size.is_some_and(|s| s < threshold);
            let snug_pair = matches!((size, next), (Some(a), Some(b)) if a + b - HEADER <= snug);
            if !small && !snug_pair {
                i += 1;
                continue;
            }
            let (l, r) = if i + 1 < es.len() {
                (i, i + 1)
            } else {
                (i - 1, i)
            };
            let lid = self.materialize_entry(es, l)?;
            let rid = self.materialize_entry(es, r)?;
            let right = self.nodes[rid].take();
            match (self.node_mut(lid), right) {
                (Node::Leaf(a), Some(Node::Leaf(b))) => a.extend(&b),
                (Node::Branch(a), Some(Node::Branch(b))) => a.extend(b),
                (_, right) => {
                    // Different heights cannot happen; keep both.
                    self.nodes[rid] = right;
                    i += 1;
                    continue;
                }
            }
            es.remove(r);
        }
        Ok(())
    }

    fn materialize_entry(&mut self, es: &mut [BranchEntry], i: usize) -> Result<NodeId> {
        let id = self.materialize(es[i].child)?;
        es[i].child = Ptr::Dirty(id);
        Ok(id)
    }

    /// Writes a dirty node (split into pages as needed) and returns the
    /// entries its parent needs. An emptied node returns none; a root branch
    /// left with one child returns that child (the tree gets shorter).
    fn spill(&mut self, id: NodeId, a: &mut Alloc<'_>, is_root: bool) -> Result<Spilled> {
        let node = self.nodes[id].take().expect("dirty node spilled twice");
        let ps = self.shared.page_size;
        match node {
            Node::Leaf(l) => {
                if l.is_empty() {
                    return Ok(Vec::new());
                }
                let sizes: Vec<usize> = (0..l.len()).map(|i| l.elem_size(i)).collect();
                let mut out = Vec::new();
                for g in split_points(&sizes, ps) {
                    let size: usize = sizes[g.clone()].iter().sum::<usize>() + HEADER;
                    let mut b = NodeBuilder::new(KIND_LEAF, g.len(), size, ps);
                    for i in g.clone() {
                        b.push_leaf(l.key(i), l.value(i), l.flags(i));
                    }
                    let (pgid, crc) = a.write(b, g.len());
                    out.push((l.key(g.start).to_vec(), pgid, crc));
                }
                Ok(out)
            }
            Node::Branch(mut es) => {
                self.rebalance(&mut es)?;
                let mut children: Spilled = Vec::with_capacity(es.len());
                for e in es {
                    match e.child {
                        Ptr::Page { pgid, crc } => children.push((e.key, pgid, crc)),
                        Ptr::Dirty(c) => children.extend(self.spill(c, a, false)?),
                    }
                }
                if children.is_empty() || (is_root && children.len() == 1) {
                    return Ok(children);
                }
                let sizes: Vec<usize> = children
                    .iter()
                    .map(|c| branch_elem_size(c.0.len()))
                    .collect();
                let mut out = Vec::new();
                for g in split_points(&sizes, ps) {
                    let size: usize = sizes[g.clone()].iter().sum::<usize>() + HEADER;
                    let mut b = NodeBuilder::new(KIND_BRANCH, g.len(), size, ps);
                    for (k, p, c) in &children[g.clone()] {
                        b.push_branch(k, *p, *c);
                    }
                    let (pgid, crc) = a.write(b, g.len());
                    out.push((children[g.start].0.clone(), pgid, crc));
                }
                Ok(out)
            }
        }
    }

    /// Spills a whole tree and returns its new root.
    fn spill_root(&mut self, root: Ptr, a: &mut Alloc<'_>) -> Result<(PageId, u32)> {
        let Ptr::Dirty(id) = root else {
            let Ptr::Page { pgid, crc } = root else {
                unreachable!()
            };
            return Ok((pgid, crc));
        };
        let mut res = self.spill(id, a, true)?;
        loop {
            match res.len() {
                0 => {
                    let b = NodeBuilder::new(KIND_LEAF, 0, 0, self.shared.page_size);
                    return Ok(a.write(b, 0));
                }
                1 => return Ok((res[0].1, res[0].2)),
                _ => {
                    let es = res
                        .into_iter()
                        .map(|(key, pgid, crc)| BranchEntry {
                            key,
                            child: Ptr::Page { pgid, crc },
                        })
                        .collect();
                    let id = self.push_node(Node::Branch(es));
                    res = self.spill(id, a, false)?;
                }
            }
        }
    }

    /// Makes every change durable and visible to new readers.
    pub fn commit(mut self) -> Result<()> {
        let Some(mut ws) = self.ws.take() else {
            return Err(Error::Poisoned);
        };
        let res = self.commit_with(&mut ws);
        self.shared.return_writer(ws);
        res
    }

    fn commit_with(&mut self, ws: &mut WriterState) -> Result<()> {
        let shared = self.shared.clone();
        if shared.is_poisoned() {
            return Err(Error::Poisoned);
        }
        if !self
            .buckets
            .iter()
            .any(|b| b.alive && matches!(b.root, Ptr::Dirty(_)))
        {
            return Ok(()); // nothing changed
        }
        let base = self.snap.meta;
        let oldest = shared
            .readers()
            .keys()
            .next()
            .copied()
            .unwrap_or(base.txid)
            .min(base.txid);
        ws.freelist.release(oldest);
        let res = self.commit_inner(ws, &shared, base);
        if let Err(e) = &res {
            // Pages may have been allocated and the file touched.
            shared.poison(e);
        }
        res
    }

    fn commit_inner(&mut self, ws: &mut WriterState, shared: &DbState, base: Meta) -> Result<()> {
        let ps = shared.page_size;
        let mut order: Vec<usize> = (1..self.buckets.len())
            .filter(|&i| self.buckets[i].alive)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.buckets[i].depth));
        let mut alloc = Alloc {
            ws,
            page_count: base.page_count,
            txid: self.txid,
            page_size: ps,
            writes: Vec::new(),
        };
        for i in order {
            if !matches!(self.buckets[i].root, Ptr::Dirty(_)) {
                continue;
            }
            let (pgid, crc) = self.spill_root(self.buckets[i].root, &mut alloc)?;
            self.buckets[i].root = Ptr::Page { pgid, crc };
            let (parent, name) = (self.buckets[i].parent, self.buckets[i].name.clone());
            self.tree_put(parent, &name, &encode_bucket(pgid, crc), FLAG_BUCKET, false)?;
        }
        let (root, root_crc) = self.spill_root(self.buckets[0].root, &mut alloc)?;
        let meta = Meta {
            txid: self.txid,
            root,
            root_crc,
            page_count: alloc.page_count,
            freelist: 0,
            freelist_crc: 0,
            ..base
        };
        let mut writes = std::mem::take(&mut alloc.writes);
        let ws = alloc.ws;

        grow(shared, ws, meta.page_count)?;
        writes.sort_unstable_by_key(|w| w.0);
        write_nodes(shared, &writes)?;
        shared
            .io
            .write_at(&meta.encode(), (meta.txid % 2) * ps as u64)?;
        if !shared.no_sync {
            // Pages and meta written, not yet durable: where a power loss
            // bites.
            crate::crash_point!(dbBeforeFsync);
            // A failed fsync: EIO, as fdatasync(2) reports it.
            fail::fail_point!("btree::commit::sync", |_| Err(
                std::io::Error::from_raw_os_error(5).into()
            ));
            shared.io.sync_data()?;
        }

        ws.freelist
            .add_pending(self.txid, std::mem::take(&mut self.freed));
        let map = if ws.file_len as usize > self.snap.map.len() {
            Arc::new(Mapping::new(shared.io.file(), ws.file_len as usize, ps)?)
        } else {
            self.snap.map.clone()
        };
        // We produced these bytes: no need to verify them on first read.
        // Later pages of a run are never a node's start.
        for (pgid, data) in &writes {
            map.set_verified(*pgid);
            for p in pgid + 1..pgid + (data.len() / ps) as u64 {
                map.clear_verified(p);
            }
        }
        shared.publish(Snapshot { meta, map });
        Ok(())
    }
}

/// Writes each node with its own positioned write, in page order. Joining
/// neighbours into one large write would be fewer syscalls, but it makes the
/// kernel build large page-cache folios there, and every later 4 KiB page
/// rewrite then dirties (and flushes) the whole folio: 3.8x the device bytes
/// in `strata-util bench --write-mode rnd`.
fn write_nodes(shared: &DbState, writes: &[(PageId, Vec<u8>)]) -> Result<()> {
    let ps = shared.page_size as u64;
    for (pgid, data) in writes {
        shared.io.write_at(data, pgid * ps)?;
    }
    Ok(())
}

impl Source for WriteTxn {
    fn node(&self, ptr: Ptr) -> Result<NodeRef<'_>> {
        match ptr {
            Ptr::Page { pgid, crc } => Ok(NodeRef::Page(self.reader().node(pgid, crc)?)),
            Ptr::Dirty(id) => self.nodes[id]
                .as_ref()
                .map(NodeRef::Dirty)
                .ok_or_else(|| self.reader().corrupt(0, "dangling dirty node")),
        }
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            self.shared.return_writer(ws);
        }
    }
}
