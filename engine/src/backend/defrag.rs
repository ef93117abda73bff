//! Online defragmentation: the database rewritten into a compact file while
//! reads and writes go on.
//!
//! Invariants: changes made while the copy is written are journaled and
//! replayed into it, the last of them with writers held off; the copy
//! replaces the file only whole and synced, so a crash before the rename
//! leaves the old file as it was (crash points `defragBeforeCopy`,
//! `defragBeforeRename`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::swap_in;
use super::{commit, fail_batch, lock, publish, Backend, Bucket, JournalEntry};
use crate::btree::{Database, Options, WriteBucket};
use crate::error::{Error, Result};

/// Catch-up rounds before the final replay with writers held off.
const DEFRAG_CATCH_UP_ROUNDS: usize = 8;
/// A journal this short is replayed with writers held off.
const DEFRAG_FINAL_REPLAY: usize = 1000;

/// Applies journaled changes to the copy, in order, in one transaction.
fn replay(copy: &Database, journal: &[JournalEntry]) -> Result<()> {
    if journal.is_empty() {
        return Ok(());
    }
    let mut tx = copy.begin_write()?;
    let mut ids = HashMap::new();
    for b in Bucket::ALL {
        ids.insert(
            b,
            tx.bucket(WriteBucket::ROOT, b.name())?
                .ok_or(Error::BucketNotFound)?,
        );
    }
    for (bucket, key, value) in journal {
        match value {
            Some(v) => tx.put(ids[bucket], key, v)?,
            None => {
                tx.delete(ids[bucket], key)?;
            }
        }
    }
    tx.commit()
}

pub(super) fn defrag_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.defrag", path.display()))
}

/// What an online defragmentation did.
#[derive(Debug, Clone)]
pub struct DefragStats {
    pub size_before: u64,
    pub size_after: u64,
    /// The whole operation.
    pub total: Duration,
    /// How long writers were held off (the final replay and swap).
    pub stall: Duration,
    /// Changes made while the snapshot was copied, replayed at the end.
    pub journaled: usize,
}

impl Backend {
    /// Rewrites the database into a new, compact file while reads and writes
    /// go on: a snapshot is copied without any lock while changes are
    /// journaled; then, with writers held off, the journal is replayed into
    /// the copy, which replaces the file. Readers never wait; open readers
    /// keep the old file until they finish. A crash before the final rename
    /// leaves the old file as it was.
    pub fn defrag(&self) -> Result<DefragStats> {
        let inner = &*self.inner;
        let start = std::time::Instant::now();
        let path = inner.cfg.path.clone();
        let tmp = defrag_path(&path);
        let size_before = std::fs::metadata(&path)?.len();
        let (rx, page_size) = {
            let mut b = lock(&inner.batch);
            if b.failed {
                return Err(Error::Poisoned);
            }
            publish(inner, &mut b);
            commit(inner, &mut b)?;
            b.journal = Some(Vec::new());
            let db = inner.db();
            (db.begin_read(), db.info().page_size)
        };
        let _ = std::fs::remove_file(&tmp);
        crate::crash_point!(defragBeforeCopy);
        let copied = crate::btree::compact_snapshot(&rx, page_size, &tmp, &mut |_| {});
        drop(rx);
        let copy = match copied.and_then(|_| {
            Database::open(
                &tmp,
                Options {
                    no_sync: true,
                    ..Options::default()
                },
            )
        }) {
            Ok(c) => c,
            Err(e) => {
                lock(&inner.batch).journal = None;
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Catch up in rounds without holding writers off, while the journal
        // keeps filling; only a short final remainder is replayed with
        // writers held.
        let mut journaled = 0;
        let mut b = lock(&inner.batch);
        for _ in 0..DEFRAG_CATCH_UP_ROUNDS {
            let pending = b.journal.as_ref().map_or(0, Vec::len);
            if pending <= DEFRAG_FINAL_REPLAY {
                break;
            }
            let journal = b.journal.replace(Vec::new()).unwrap_or_default();
            drop(b);
            journaled += journal.len();
            // Flushed here, so the final sync with writers held is short.
            let replayed = replay(&copy, &journal).and_then(|()| copy.sync());
            b = lock(&inner.batch);
            if let Err(e) = replayed {
                b.journal = None;
                drop(copy);
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        let stall_start = std::time::Instant::now();
        let journal = b.journal.take().unwrap_or_default();
        journaled += journal.len();
        let res = (|| -> Result<DefragStats> {
            publish(inner, &mut b);
            commit(inner, &mut b)?;
            replay(&copy, &journal)?;
            // Closing writes the freelist and syncs everything.
            copy.close()?;
            crate::crash_point!(defragBeforeRename);
            swap_in(inner, &mut b, &tmp)?;
            Ok(DefragStats {
                size_before,
                size_after: std::fs::metadata(&path)?.len(),
                total: start.elapsed(),
                stall: stall_start.elapsed(),
                journaled,
            })
        })();
        if let Err(e) = &res {
            fail_batch(&mut b, &path, e);
        }
        res
    }
}
