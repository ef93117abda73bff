//! Read transactions: a pinned snapshot of one commit.
//!
//! A reader registers the txid of its snapshot; pages freed by later commits
//! are not reused while it is open, so everything it can reach stays as it
//! was. Readers never wait for the writer or for file growth.

use std::sync::Arc;

use super::node::Ptr;
use super::page::{decode_bucket, PageId, TxId};
use super::state::{DbState, Snapshot};
use super::tree::{lookup, Cursor, NodeRef, PageReader, Source};
use crate::error::{Error, Result};

/// A bucket as seen by a read transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBucket {
    pub(crate) root: PageId,
    pub(crate) crc: u32,
}

impl ReadBucket {
    pub fn root_page(&self) -> PageId {
        self.root
    }

    fn ptr(&self) -> Ptr {
        Ptr::Page {
            pgid: self.root,
            crc: self.crc,
        }
    }
}

pub struct ReadTxn {
    shared: Arc<DbState>,
    snap: Arc<Snapshot>,
}

impl ReadTxn {
    pub(crate) fn new(shared: Arc<DbState>, snap: Arc<Snapshot>) -> ReadTxn {
        ReadTxn { shared, snap }
    }

    /// The database file this transaction reads.
    pub fn path(&self) -> &std::path::Path {
        &self.shared.path
    }

    pub fn txid(&self) -> TxId {
        self.snap.meta.txid
    }

    pub fn page_count(&self) -> u64 {
        self.snap.meta.page_count
    }

    /// The freelist node named by this snapshot's meta, if any.
    pub fn freelist_page(&self) -> Option<PageId> {
        (self.snap.meta.freelist != 0).then_some(self.snap.meta.freelist)
    }

    /// The top-level namespace: it holds buckets only.
    pub fn root(&self) -> ReadBucket {
        ReadBucket {
            root: self.snap.meta.root,
            crc: self.snap.meta.root_crc,
        }
    }

    pub(crate) fn reader(&self) -> PageReader<'_> {
        PageReader {
            map: &self.snap.map,
            page_count: self.snap.meta.page_count,
            path: &self.shared.path,
        }
    }

    /// The nested bucket `name` of `parent`, if it exists.
    pub fn bucket(&self, parent: ReadBucket, name: &[u8]) -> Result<Option<ReadBucket>> {
        match lookup(self, parent.ptr(), name)? {
            None => Ok(None),
            Some(e) if !e.is_bucket => Err(Error::IncompatibleValue),
            Some(e) => {
                let (root, crc) = decode_bucket(e.value).ok_or_else(|| {
                    self.reader()
                        .corrupt(parent.root, "malformed bucket reference")
                })?;
                Ok(Some(ReadBucket { root, crc }))
            }
        }
    }

    /// A bucket by its path of names from the top level.
    pub fn bucket_path(&self, path: &[&[u8]]) -> Result<Option<ReadBucket>> {
        let mut b = self.root();
        for name in path {
            match self.bucket(b, name)? {
                Some(n) => b = n,
                None => return Ok(None),
            }
        }
        Ok(Some(b))
    }

    pub fn get(&self, bucket: ReadBucket, key: &[u8]) -> Result<Option<&[u8]>> {
        match lookup(self, bucket.ptr(), key)? {
            Some(e) if e.is_bucket => Err(Error::IncompatibleValue),
            Some(e) => Ok(Some(e.value)),
            None => Ok(None),
        }
    }

    pub fn cursor(&self, bucket: ReadBucket) -> Cursor<'_, ReadTxn> {
        Cursor::new(self, bucket.ptr())
    }
}

impl Source for ReadTxn {
    fn node(&self, ptr: Ptr) -> Result<NodeRef<'_>> {
        match ptr {
            Ptr::Page { pgid, crc } => Ok(NodeRef::Page(self.reader().node(pgid, crc)?)),
            Ptr::Dirty(_) => Err(self
                .reader()
                .corrupt(0, "read transaction met a dirty node")),
        }
    }
}

impl Drop for ReadTxn {
    fn drop(&mut self) {
        let mut readers = self.shared.readers();
        let txid = self.snap.meta.txid;
        if let Some(n) = readers.get_mut(&txid) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&txid);
            }
        }
    }
}

impl ReadTxn {
    /// Writes this snapshot as a complete database file: two metas naming
    /// this snapshot's root (no freelist, so the receiver rebuilds it), then
    /// every page up to the snapshot's page count. Pages no tree of this
    /// snapshot reaches are written as zeros, so the same state always gives
    /// the same bytes. Returns the number of bytes written.
    pub fn write_snapshot(&self, w: &mut dyn std::io::Write) -> Result<u64> {
        use super::walk::walk;
        let meta = self.snap.meta;
        let ps = meta.page_size as usize;
        let n = meta.page_count as usize;
        let mut used = vec![false; n];
        let reader = self.reader();
        walk(&reader, meta.root, meta.root_crc, &mut |v| {
            for p in v.pgid..v.pgid + v.pages {
                used[p as usize] = true;
            }
            Ok(())
        })?;
        let mut page = vec![0u8; ps];
        for slot in 0..2u64 {
            let txid = if meta.txid % 2 == slot {
                meta.txid
            } else {
                meta.txid - 1
            };
            let m = super::meta::Meta {
                txid,
                freelist: 0,
                freelist_crc: 0,
                ..meta
            };
            page.fill(0);
            page[..super::meta::META_LEN].copy_from_slice(&m.encode());
            w.write_all(&page)?;
        }
        let zero = vec![0u8; ps];
        for (p, &u) in used.iter().enumerate().skip(2) {
            if u {
                let bytes = self
                    .snap
                    .map
                    .pages(p as u64, 1)
                    .ok_or_else(|| reader.corrupt(p as u64, "page outside the map"))?;
                w.write_all(bytes)?;
            } else {
                w.write_all(&zero)?;
            }
        }
        Ok((n * ps) as u64)
    }
}

impl ReadTxn {
    /// Another read transaction on the same snapshot.
    pub fn pin_again(&self) -> ReadTxn {
        let mut readers = self.shared.readers();
        *readers.entry(self.snap.meta.txid).or_default() += 1;
        drop(readers);
        ReadTxn {
            shared: self.shared.clone(),
            snap: self.snap.clone(),
        }
    }
}
