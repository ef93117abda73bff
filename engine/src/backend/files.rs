//! The database as one file: a consistent copy written out (a snapshot for
//! a follower or a backup), a bbolt export (etcd's backup format), the
//! copy's checksum, and replacing the whole file with a received one.
//!
//! Invariants: every copy is of one commit (what was pending is committed
//! first); a replacement happens with writers held off and an empty batch,
//! and a crash leaves either the old file whole or the new one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{begin, commit, fail_batch, lock, publish, Backend, Batch, Bucket, Inner};
use crate::backend::{Buffer, ReadView};
use crate::btree::{Database, Options};
use crate::error::{Error, Result};

impl Backend {
    /// Writes a consistent copy of the whole database (after committing what
    /// is pending) and returns its size and SHA-256.
    pub fn snapshot(&self, w: &mut dyn std::io::Write) -> Result<(u64, [u8; 32])> {
        use sha2::Digest;
        struct Hashing<'a> {
            w: &'a mut dyn std::io::Write,
            h: sha2::Sha256,
        }
        impl std::io::Write for Hashing<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let n = self.w.write(buf)?;
                self.h.update(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.w.flush()
            }
        }
        let mut hw = Hashing {
            w,
            h: sha2::Sha256::new(),
        };
        let size = self.write_consistent(&mut hw)?;
        Ok((size, hw.h.finalize().into()))
    }

    /// Writes every bucket of one consistent view as a bbolt file (etcd's
    /// backup format, see [`crate::bbolt`]) to `f`, then returns its size
    /// and SHA-256. Buckets are read in pieces of 10,000 entries, so memory
    /// stays bounded by a piece, not the db.
    pub fn export_bbolt(&self, f: &mut std::fs::File) -> Result<(u64, [u8; 32])> {
        use sha2::Digest;
        use std::io::{Read, Seek, SeekFrom};
        const PIECE: usize = 10_000;
        let view = self.read();
        let mut w = crate::bbolt::BoltWriter::new(std::io::BufWriter::new(&mut *f))?;
        for bucket in Bucket::ALL {
            let mut next: Vec<u8> = Vec::new();
            let mut piece = std::collections::VecDeque::new();
            let mut done = false;
            let entries = std::iter::from_fn(|| {
                if piece.is_empty() && !done {
                    match view.range(bucket, &next, &[], PIECE) {
                        Ok(got) => {
                            done = got.len() < PIECE;
                            if let Some((k, _)) = got.last() {
                                next = k.clone();
                                next.push(0);
                            }
                            piece.extend(got);
                        }
                        Err(e) => {
                            done = true;
                            return Some(Err(e));
                        }
                    }
                }
                piece.pop_front().map(Ok)
            });
            w.bucket(bucket.name(), entries)?;
        }
        let (out, size) = w.finish()?;
        drop(out);
        f.seek(SeekFrom::Start(0))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            f.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok((size, h.finalize().into()))
    }

    /// Commits what is pending, then writes a copy of the whole database as
    /// of that commit; returns its size.
    fn write_consistent(&self, w: &mut dyn std::io::Write) -> Result<u64> {
        self.force_commit()?;
        self.inner.db().begin_read().write_snapshot(w)
    }

    /// The CRC-32C (Castagnoli) of a consistent copy of the whole database
    /// (after committing what is pending), streamed: the file's bytes, so
    /// two members holding the same data may differ (the Hash RPC answers
    /// the logical `mvcc::statehash` instead).
    pub fn hash(&self) -> Result<u32> {
        struct Crc(u32);
        impl std::io::Write for Crc {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 = crc32c::crc32c_append(self.0, buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut c = Crc(0);
        self.write_consistent(&mut c)?;
        Ok(c.0)
    }
}

impl Backend {
    /// Replaces the whole database with the file `from` (a complete,
    /// synced database, such as a snapshot received from the raft leader):
    /// with writers held off, what is pending is committed to the old file,
    /// `before_swap` runs (nothing can commit from then on until the swap),
    /// `from` is renamed over the backend's file and the directory synced,
    /// and readers move to the new file. Open readers keep the old one
    /// until they finish. A crash before the rename leaves the old file
    /// whole; after it, the new one.
    pub fn replace_with(&self, from: &Path, before_swap: impl FnOnce()) -> Result<()> {
        let inner = &*self.inner;
        let mut b = lock(&inner.batch);
        if b.failed {
            return Err(Error::Poisoned);
        }
        publish(inner, &mut b);
        let res = commit(inner, &mut b).and_then(|()| {
            before_swap();
            swap_in(inner, &mut b, from)
        });
        if let Err(e) = &res {
            fail_batch(&mut b, &inner.cfg.path, e);
        }
        res
    }
}

/// With the batch held and empty (just committed): renames `from` over the
/// backend's file, syncs the directory, opens the new file and moves the
/// batch and the readers' view to it.
pub(super) fn swap_in(inner: &Inner, b: &mut Batch, from: &Path) -> Result<()> {
    let path = &inner.cfg.path;
    std::fs::rename(from, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let db = Database::open(
        path,
        Options {
            no_sync: inner.cfg.no_sync,
            ..Options::default()
        },
    )?;
    // End the (empty) batch on the old file.
    b.tx = None;
    let (tx, ids) = begin(&db)?;
    let view = ReadView::new(db.begin_read(), Buffer::default())?;
    // Old readers may hold the replaced file a while. Its last close frees
    // the whole unlinked file (blocks and page cache), which must not land
    // on a reader: a reaper thread holds it until no one else does, then
    // shrinks it in steps (no one long stall of the filesystem) and closes
    // it without writing.
    let old = inner.db();
    old.retire();
    *inner.db.write().unwrap_or_else(|e| e.into_inner()) = db;
    std::thread::spawn(move || {
        while old.handles() > 1 {
            std::thread::sleep(Duration::from_millis(20));
        }
        old.release_gradually();
    });
    b.tx = Some(tx);
    b.ids = ids;
    *inner.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    Ok(())
}
