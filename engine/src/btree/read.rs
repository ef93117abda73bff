//! Read transactions: a pinned snapshot of one commit.
//!
//! A reader registers the txid of its snapshot; pages freed by later commits
//! are not reused while it is open, so everything it can reach stays as it
//! was. Readers never wait for the writer or for file growth.

use std::sync::Arc;

use super::db::{Shared, Snapshot};
use super::node::Ptr;
use super::page::{decode_bucket, PageId, TxId};
use super::tree::{lookup, Cursor, NodeRef, PageReader, Source};
use crate::error::{Error, Result};

/// A bucket as seen by a read transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub(crate) root: PageId,
    pub(crate) crc: u32,
}

impl Bucket {
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
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
}

impl ReadTxn {
    pub(crate) fn new(shared: Arc<Shared>, snap: Arc<Snapshot>) -> ReadTxn {
        ReadTxn { shared, snap }
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
    pub fn root(&self) -> Bucket {
        Bucket {
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
    pub fn bucket(&self, parent: Bucket, name: &[u8]) -> Result<Option<Bucket>> {
        match lookup(self, parent.ptr(), name)? {
            None => Ok(None),
            Some(e) if !e.is_bucket => Err(Error::IncompatibleValue),
            Some(e) => {
                let (root, crc) = decode_bucket(e.value).ok_or_else(|| {
                    self.reader()
                        .corrupt(parent.root, "malformed bucket reference")
                })?;
                Ok(Some(Bucket { root, crc }))
            }
        }
    }

    /// A bucket by its path of names from the top level.
    pub fn bucket_path(&self, path: &[&[u8]]) -> Result<Option<Bucket>> {
        let mut b = self.root();
        for name in path {
            match self.bucket(b, name)? {
                Some(n) => b = n,
                None => return Ok(None),
            }
        }
        Ok(Some(b))
    }

    pub fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<&[u8]>> {
        match lookup(self, bucket.ptr(), key)? {
            Some(e) if e.is_bucket => Err(Error::IncompatibleValue),
            Some(e) => Ok(Some(e.value)),
            None => Ok(None),
        }
    }

    pub fn cursor(&self, bucket: Bucket) -> Cursor<'_, ReadTxn> {
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
