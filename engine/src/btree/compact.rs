//! Offline compaction: copies every bucket and key of a database, in key
//! order, into a new file. Appending in order fills pages completely, and the
//! new file is cut to exactly its page count.

use std::path::Path;

use super::db::{Database, Info, Options};
use super::read::{ReadBucket, ReadTxn};
use super::write::{WriteBucket, WriteTxn};
use crate::error::{Error, Result};

/// Bytes copied between two commits of the destination. Each commit
/// syncs what it wrote: small commits keep the disk's queue short, so an
/// online defrag never makes a writer's fsync wait behind a large flush.
const BATCH_BYTES: usize = 4 << 20;

struct Copier<'a> {
    dst: &'a Database,
    tx: Option<WriteTxn>,
    pending: usize,
    copied: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Copier<'_> {
    fn tx(&mut self) -> Result<&mut WriteTxn> {
        if self.tx.is_none() {
            self.tx = Some(self.dst.begin_write()?);
        }
        self.tx.as_mut().ok_or(Error::Poisoned)
    }

    /// The destination bucket at `path`, created if missing.
    fn bucket(&mut self, path: &[Vec<u8>]) -> Result<WriteBucket> {
        let tx = self.tx()?;
        let mut b = WriteBucket::ROOT;
        for name in path {
            b = tx.create_bucket_if_missing(b, name)?;
        }
        Ok(b)
    }

    fn maybe_commit(&mut self) -> Result<()> {
        if self.pending >= BATCH_BYTES {
            if let Some(tx) = self.tx.take() {
                tx.commit()?;
            }
            self.pending = 0;
        }
        Ok(())
    }

    fn copy_bucket(&mut self, src: &ReadTxn, b: ReadBucket, path: &mut Vec<Vec<u8>>) -> Result<()> {
        let mut dst = self.bucket(path)?;
        let mut cur = src.cursor(b);
        let mut item = cur.first()?;
        while let Some(e) = item {
            if e.is_bucket {
                let child = src.bucket(b, e.key)?.ok_or(Error::BucketNotFound)?;
                path.push(e.key.to_vec());
                self.copy_bucket(src, child, path)?;
                path.pop();
                dst = self.bucket(path)?;
            } else {
                self.tx()?.put(dst, e.key, e.value)?;
                self.pending += e.key.len() + e.value.len();
                self.copied += 1;
                if self.pending >= BATCH_BYTES {
                    self.maybe_commit()?;
                    (self.progress)(self.copied);
                    dst = self.bucket(path)?;
                }
            }
            item = cur.next()?;
        }
        Ok(())
    }
}

/// Copies `src` into a new database at `dst` (which must not exist) and
/// returns the new file's figures. `progress` is called with the number of
/// keys copied so far.
pub fn compact(src: &Database, dst: &Path, progress: &mut dyn FnMut(u64)) -> Result<Info> {
    compact_snapshot(&src.begin_read(), src.info().page_size, dst, progress)
}

/// Like [`compact`], from a given snapshot (online defragmentation copies a
/// snapshot while writes go on).
pub fn compact_snapshot(
    rx: &ReadTxn,
    page_size: usize,
    dst: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Info> {
    if dst.exists() {
        return Err(Error::AlreadyExists(dst.to_path_buf()));
    }
    let opts = Options {
        page_size,
        ..Options::default()
    };
    let out = Database::open(dst, opts)?;
    let mut c = Copier {
        dst: &out,
        tx: None,
        pending: 0,
        copied: 0,
        progress,
    };
    let mut cur = rx.cursor(rx.root());
    let mut item = cur.first()?;
    while let Some(e) = item {
        let b = rx.bucket(rx.root(), e.key)?.ok_or(Error::BucketNotFound)?;
        c.copy_bucket(rx, b, &mut vec![e.key.to_vec()])?;
        item = cur.next()?;
    }
    if let Some(tx) = c.tx.take() {
        tx.commit()?;
    }
    let copied = c.copied;
    (c.progress)(copied);
    out.close()?;
    // Cut the preallocated tail: the new file ends at its last page.
    let reopened = Database::open(dst, Options::default())?;
    let info = reopened.info();
    drop(reopened);
    let f = std::fs::OpenOptions::new().write(true).open(dst)?;
    f.set_len(info.page_count * info.page_size as u64)?;
    f.sync_all()?;
    let mut info = info;
    info.file_len = info.page_count * info.page_size as u64;
    Ok(info)
}
