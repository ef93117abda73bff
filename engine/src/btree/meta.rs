//! The two meta pages (pages 0 and 1). Commit `txid` writes slot `txid % 2`,
//! so the other slot always holds the previous commit. On open the valid meta
//! with the highest txid whose tree verifies wins.
//!
//! Layout (little-endian), checksummed over bytes 4..128 so a meta can be read
//! before the page size is known:
//!
//! ```text
//! 0..32    node header (crc, kind 1, page id = slot, txid)
//! 32..40   magic "STRATADB"
//! 40..44   format version (1)
//! 44..48   page size
//! 48..56   root page of the top-level bucket tree
//! 56..60   crc32 of that root node (vouches for the whole tree)
//! 64..72   page count: pages [0, count) are in use or free
//! 72..80   freelist page (0: none; rebuild by walking the tree)
//! 80..84   crc32 of the freelist node
//! ```

use super::page::{le_u32, le_u64, put_u32, put_u64, Header, PageId, TxId, KIND_META};

pub const META_LEN: usize = 128;
pub const MAGIC: &[u8; 8] = b"STRATADB";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub txid: TxId,
    pub page_size: u32,
    pub root: PageId,
    pub root_crc: u32,
    pub page_count: u64,
    pub freelist: PageId,
    pub freelist_crc: u32,
}

impl Meta {
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        Header {
            crc: 0,
            kind: KIND_META,
            pgid: self.txid % 2,
            txid: self.txid,
            overflow: 0,
            count: 0,
        }
        .write(&mut b);
        b[32..40].copy_from_slice(MAGIC);
        put_u32(&mut b, 40, VERSION);
        put_u32(&mut b, 44, self.page_size);
        put_u64(&mut b, 48, self.root);
        put_u32(&mut b, 56, self.root_crc);
        put_u64(&mut b, 64, self.page_count);
        put_u64(&mut b, 72, self.freelist);
        put_u32(&mut b, 80, self.freelist_crc);
        let crc = crc32fast::hash(&b[4..]);
        put_u32(&mut b, 0, crc);
        b
    }

    /// Decodes and validates the meta in slot `slot` from its first bytes.
    pub fn decode(b: &[u8], slot: u64) -> Result<Meta, String> {
        if b.len() < META_LEN {
            return Err("meta page is short".into());
        }
        let b = &b[..META_LEN];
        let stored = le_u32(b, 0);
        let actual = crc32fast::hash(&b[4..]);
        if stored != actual {
            return Err(format!(
                "meta checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"
            ));
        }
        if b[4] != KIND_META || &b[32..40] != MAGIC {
            return Err("not a strata meta page".into());
        }
        let version = le_u32(b, 40);
        if version != VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        let m = Meta {
            txid: le_u64(b, 16),
            page_size: le_u32(b, 44),
            root: le_u64(b, 48),
            root_crc: le_u32(b, 56),
            page_count: le_u64(b, 64),
            freelist: le_u64(b, 72),
            freelist_crc: le_u32(b, 80),
        };
        if le_u64(b, 8) != slot || m.txid % 2 != slot {
            return Err(format!("meta for txid {} found in slot {slot}", m.txid));
        }
        if !valid_page_size(m.page_size as usize) {
            return Err(format!("invalid page size {}", m.page_size));
        }
        if m.root < 2 || m.root >= m.page_count || (m.freelist != 0 && m.freelist >= m.page_count) {
            return Err("root or freelist page outside the file".into());
        }
        Ok(m)
    }
}

pub fn valid_page_size(n: usize) -> bool {
    n.is_power_of_two() && (1024..=65536).contains(&n)
}
