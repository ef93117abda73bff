//! On-disk node format: one node is a run of `1 + overflow` contiguous pages.
//!
//! Every node starts with a 32-byte header (all integers little-endian):
//!
//! ```text
//! 0..4    crc32 of bytes 4..(run length)      the node's own checksum
//! 4       kind: 1 meta, 2 branch, 3 leaf, 4 freelist
//! 5..8    reserved, zero
//! 8..16   page id of the first page           catches misdirected writes
//! 16..24  txid of the commit that wrote it
//! 24..28  overflow: extra pages in the run
//! 28..32  count: number of elements
//! ```
//!
//! Branch and leaf bodies: `count` u32 offsets (from the start of the node)
//! follow the header, then the elements they point at, in key order.
//! - leaf element:   `flags u8, klen u32, vlen u32, key, value`
//! - branch element: `klen u32, child page u64, child crc32 u32, key`
//!
//! A branch stores, next to each child's page id, the checksum that child was
//! written with, so a checksum at the root (kept in the meta page) vouches for
//! the whole tree: a stale or torn page anywhere below is caught by its
//! parent. In a branch, element i's key is a lower bound of every key in child
//! i and greater than every key in child i-1 (child 0 also takes keys below
//! its own bound).
//!
//! [`NodeView::parse`] validates a node completely (bounds, ordering), so the
//! accessors of a parsed view never read out of bounds.

pub type PageId = u64;
pub type TxId = u64;

pub const HEADER: usize = 32;
pub const KIND_META: u8 = 1;
pub const KIND_BRANCH: u8 = 2;
pub const KIND_LEAF: u8 = 3;
pub const KIND_FREELIST: u8 = 4;

/// Leaf element flag: the value is a nested bucket's root reference.
pub const FLAG_BUCKET: u8 = 1;

pub const LEAF_ELEM: usize = 9;
pub const BRANCH_ELEM: usize = 16;
pub const SLOT: usize = 4;

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The checksum of a node: crc32 over everything but the checksum field.
pub fn checksum(run: &[u8]) -> u32 {
    crc32fast::hash(&run[4..])
}

/// The fixed header fields of a node, read without any validation but length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub crc: u32,
    pub kind: u8,
    pub pgid: PageId,
    pub txid: TxId,
    pub overflow: u32,
    pub count: u32,
}

impl Header {
    pub fn read(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER {
            return None;
        }
        Some(Header {
            crc: le_u32(b, 0),
            kind: b[4],
            pgid: le_u64(b, 8),
            txid: le_u64(b, 16),
            overflow: le_u32(b, 24),
            count: le_u32(b, 28),
        })
    }

    pub fn write(&self, b: &mut [u8]) {
        put_u32(b, 0, self.crc);
        b[4] = self.kind;
        b[5..8].fill(0);
        put_u64(b, 8, self.pgid);
        put_u64(b, 16, self.txid);
        put_u32(b, 24, self.overflow);
        put_u32(b, 28, self.count);
    }
}

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_META => "meta",
        KIND_BRANCH => "branch",
        KIND_LEAF => "leaf",
        KIND_FREELIST => "freelist",
        _ => "unknown",
    }
}

/// A validated, read-only view of a branch or leaf node.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    buf: &'a [u8],
    leaf: bool,
    count: usize,
}

impl<'a> NodeView<'a> {
    /// Validates the node in `run` (its whole page run): kind, element bounds
    /// and strictly ascending keys. The checksum is checked by the caller.
    pub fn parse(run: &'a [u8]) -> std::result::Result<NodeView<'a>, String> {
        let h = Header::read(run).ok_or("node shorter than its header")?;
        let leaf = match h.kind {
            KIND_LEAF => true,
            KIND_BRANCH => false,
            k => return Err(format!("expected a branch or leaf node, found kind {k}")),
        };
        let count = h.count as usize;
        let slots_end = count
            .checked_mul(SLOT)
            .and_then(|n| n.checked_add(HEADER))
            .filter(|&n| n <= run.len())
            .ok_or("element count overruns the node")?;
        if !leaf && count == 0 {
            return Err("branch node without children".into());
        }
        let view = NodeView {
            buf: run,
            leaf,
            count,
        };
        let mut prev: Option<&[u8]> = None;
        for i in 0..count {
            let off = le_u32(run, HEADER + i * SLOT) as usize;
            let fixed = if leaf { LEAF_ELEM } else { BRANCH_ELEM };
            if off < slots_end || off.checked_add(fixed).is_none_or(|e| e > run.len()) {
                return Err(format!("element {i} offset {off} out of bounds"));
            }
            let (klen, vlen) = if leaf {
                (le_u32(run, off + 1) as usize, le_u32(run, off + 5) as usize)
            } else {
                (le_u32(run, off) as usize, 0)
            };
            let end = (off + fixed)
                .checked_add(klen)
                .and_then(|e| e.checked_add(vlen));
            if end.is_none_or(|e| e > run.len()) {
                return Err(format!("element {i} runs past the end of the node"));
            }
            let key = view.key(i);
            if leaf && key.is_empty() {
                return Err(format!("element {i} has an empty key"));
            }
            if let Some(p) = prev {
                if p >= key {
                    return Err(format!("element {i} is out of key order"));
                }
            }
            prev = Some(key);
        }
        Ok(view)
    }

    pub fn is_leaf(&self) -> bool {
        self.leaf
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn off(&self, i: usize) -> usize {
        le_u32(self.buf, HEADER + i * SLOT) as usize
    }

    pub fn key(&self, i: usize) -> &'a [u8] {
        let off = self.off(i);
        if self.leaf {
            let klen = le_u32(self.buf, off + 1) as usize;
            &self.buf[off + LEAF_ELEM..off + LEAF_ELEM + klen]
        } else {
            let klen = le_u32(self.buf, off) as usize;
            &self.buf[off + BRANCH_ELEM..off + BRANCH_ELEM + klen]
        }
    }

    /// Leaf only: (offset of the key in the node, key length, value length,
    /// flags) of element i; the value follows the key.
    pub fn leaf_elem(&self, i: usize) -> (usize, usize, usize, u8) {
        let off = self.off(i);
        let klen = le_u32(self.buf, off + 1) as usize;
        let vlen = le_u32(self.buf, off + 5) as usize;
        (off + LEAF_ELEM, klen, vlen, self.buf[off])
    }

    /// The node's bytes (its whole run).
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Leaf only: the value and flags of element i.
    pub fn value(&self, i: usize) -> (&'a [u8], u8) {
        let off = self.off(i);
        let klen = le_u32(self.buf, off + 1) as usize;
        let vlen = le_u32(self.buf, off + 5) as usize;
        let start = off + LEAF_ELEM + klen;
        (&self.buf[start..start + vlen], self.buf[off])
    }

    /// Branch only: child page id and the checksum it was written with.
    pub fn child(&self, i: usize) -> (PageId, u32) {
        let off = self.off(i);
        (le_u64(self.buf, off + 4), le_u32(self.buf, off + 12))
    }

    /// Index of the first key >= `key` (leaf search).
    pub fn lower_bound(&self, key: &[u8]) -> (usize, bool) {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Equal => return (mid, true),
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        (lo, false)
    }

    /// Branch search: the child whose range holds `key`.
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.lower_bound(key) {
            (i, true) => i,
            (0, false) => 0,
            (i, false) => i - 1,
        }
    }
}

/// Encoded size of a leaf element including its slot.
pub fn leaf_elem_size(klen: usize, vlen: usize) -> usize {
    SLOT + LEAF_ELEM + klen + vlen
}

/// Encoded size of a branch element including its slot.
pub fn branch_elem_size(klen: usize) -> usize {
    SLOT + BRANCH_ELEM + klen
}

/// Builds a node in a buffer of whole pages. The header checksum, page id and
/// txid are filled in by [`seal`].
pub struct NodeBuilder {
    pub buf: Vec<u8>,
    count: usize,
    cap: usize,
    data: usize,
}

impl NodeBuilder {
    pub fn new(kind: u8, count: usize, size: usize, page_size: usize) -> NodeBuilder {
        let pages = size.div_ceil(page_size).max(1);
        let mut buf = vec![0u8; pages * page_size];
        buf[4] = kind;
        NodeBuilder {
            buf,
            count: 0,
            cap: count,
            data: HEADER + count * SLOT,
        }
    }

    fn slot(&mut self) -> usize {
        debug_assert!(self.count < self.cap);
        let at = self.data;
        put_u32(&mut self.buf, HEADER + self.count * SLOT, at as u32);
        self.count += 1;
        at
    }

    pub fn push_leaf(&mut self, key: &[u8], value: &[u8], flags: u8) {
        let at = self.slot();
        self.buf[at] = flags;
        put_u32(&mut self.buf, at + 1, key.len() as u32);
        put_u32(&mut self.buf, at + 5, value.len() as u32);
        let k = at + LEAF_ELEM;
        self.buf[k..k + key.len()].copy_from_slice(key);
        self.buf[k + key.len()..k + key.len() + value.len()].copy_from_slice(value);
        self.data = k + key.len() + value.len();
    }

    pub fn push_branch(&mut self, key: &[u8], child: PageId, crc: u32) {
        let at = self.slot();
        put_u32(&mut self.buf, at, key.len() as u32);
        put_u64(&mut self.buf, at + 4, child);
        put_u32(&mut self.buf, at + 12, crc);
        let k = at + BRANCH_ELEM;
        self.buf[k..k + key.len()].copy_from_slice(key);
        self.data = k + key.len();
    }

    pub fn pages(&self, page_size: usize) -> u64 {
        (self.buf.len() / page_size) as u64
    }
}

/// Fills in the header of a finished node run and returns its checksum.
pub fn seal(buf: &mut [u8], page_size: usize, pgid: PageId, txid: TxId, count: u32) -> u32 {
    let h = Header {
        crc: 0,
        kind: buf[4],
        pgid,
        txid,
        overflow: (buf.len() / page_size - 1) as u32,
        count,
    };
    h.write(buf);
    let crc = checksum(buf);
    put_u32(buf, 0, crc);
    crc
}

/// Checks a node run against the checksum its parent (or the meta) expects
/// and against its own header.
pub fn verify_run(run: &[u8], pgid: PageId, expected: u32) -> std::result::Result<(), String> {
    let h = Header::read(run).ok_or("node shorter than its header")?;
    if h.pgid != pgid {
        return Err(format!("header names page {}, expected {pgid}", h.pgid));
    }
    let actual = checksum(run);
    if actual != h.crc {
        return Err(format!(
            "checksum mismatch: stored {:#010x}, computed {actual:#010x}",
            h.crc
        ));
    }
    if actual != expected {
        return Err(format!(
            "checksum {actual:#010x} differs from {expected:#010x} recorded by its parent (stale page)"
        ));
    }
    Ok(())
}

/// Encoding of a nested bucket's reference as a leaf value.
pub fn encode_bucket(root: PageId, crc: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    put_u64(&mut b, 0, root);
    put_u32(&mut b, 8, crc);
    b
}

pub fn decode_bucket(v: &[u8]) -> Option<(PageId, u32)> {
    (v.len() == 12).then(|| (le_u64(v, 0), le_u32(v, 8)))
}

impl<'a> NodeView<'a> {
    /// A view of a node that [`NodeView::parse`] already accepted and that
    /// has not been written since.
    pub fn parse_trusted(run: &'a [u8]) -> Option<NodeView<'a>> {
        let h = Header::read(run)?;
        let leaf = match h.kind {
            KIND_LEAF => true,
            KIND_BRANCH => false,
            _ => return None,
        };
        Some(NodeView {
            buf: run,
            leaf,
            count: h.count as usize,
        })
    }
}
