//! The state an open database file shares between its handle and its
//! transactions: the file and its I/O, the snapshot readers pin, the
//! writer's hand-off slot, the open readers, and the poisoned flag.
//!
//! Invariants:
//! - [`WriterState`] lives in `writer` while no write transaction is open,
//!   and inside the one write transaction otherwise: whoever holds it is
//!   the only writer.
//! - `current` is replaced only after a commit's fdatasync returned, so a
//!   reader never pins a state that a crash could lose.
//! - `readers` counts open readers by the txid of their snapshot; a page
//!   freed by a commit is reused only once no reader older than that commit
//!   remains.
//! - Once `poisoned` is set (a write or sync failed) it is never cleared
//!   while the file is open; the first cause is logged where it happened.
//! - Dropping the last handle writes the freelist (unless poisoned or
//!   retired), so a clean reopen needs no walk of the tree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use super::freelist::Freelist;
use super::io::StorageIo;
use super::meta::Meta;
use super::mmap::Mapping;
use super::page::{seal, NodeBuilder, TxId, KIND_FREELIST};
use crate::error::{Error, Result};

/// Largest key, in bytes.
pub const MAX_KEY_SIZE: usize = 32 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_SIZE: usize = 1 << 30;
/// A committed state readers can pin.
pub(crate) struct Snapshot {
    pub meta: Meta,
    pub map: Arc<Mapping>,
}

/// What only the writer touches; handed from write transaction to write
/// transaction.
pub(crate) struct WriterState {
    pub freelist: Freelist,
    pub file_len: u64,
}

/// An open file's state, shared by its [`Database`](super::Database)
/// handles and its transactions.
pub(crate) struct DbState {
    pub path: PathBuf,
    pub io: Box<dyn StorageIo>,
    pub page_size: usize,
    pub no_sync: bool,
    pub current: RwLock<Arc<Snapshot>>,
    /// Open readers by the txid of their snapshot.
    pub readers: Mutex<BTreeMap<TxId, usize>>,
    pub writer: Mutex<Option<WriterState>>,
    pub writer_cv: Condvar,
    pub poisoned: AtomicBool,
    /// The file was replaced (online defragmentation): closing it writes
    /// nothing.
    pub retired: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DbState {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, snap: Snapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    pub fn readers(&self) -> MutexGuard<'_, BTreeMap<TxId, usize>> {
        lock(&self.readers)
    }

    pub fn return_writer(&self, ws: WriterState) {
        *lock(&self.writer) = Some(ws);
        self.writer_cv.notify_one();
    }

    /// Refuses writes from now on; the first cause is logged, once, here
    /// where it happened (later writers only see `Poisoned`).
    pub fn poison(&self, cause: &Error) {
        if !self.poisoned.swap(true, Ordering::SeqCst) {
            tracing::error!(
                file = %self.path.display(),
                error = %cause,
                "a write or fsync of the database failed; it refuses writes until reopened"
            );
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Writes the freelist into a node past the last page and commits a meta
    /// naming it, so the next open need not walk the tree.
    pub(crate) fn persist_freelist(&self, ws: &mut WriterState) -> Result<()> {
        let snap = self.snapshot();
        if snap.meta.freelist != 0 || self.is_poisoned() || self.retired.load(Ordering::SeqCst) {
            return Ok(());
        }
        let ps = self.page_size;
        let runs = ws.freelist.all_runs();
        let size = Freelist::encoded_size(runs.len());
        let mut b = NodeBuilder::new(KIND_FREELIST, 0, size, ps);
        Freelist::encode_into(&runs, &mut b.buf);
        let pgid = snap.meta.page_count;
        let pages = b.pages(ps);
        let txid = snap.meta.txid + 1;
        let crc = seal(&mut b.buf, ps, pgid, txid, runs.len() as u32);
        let meta = Meta {
            txid,
            page_count: pgid + pages,
            freelist: pgid,
            freelist_crc: crc,
            ..snap.meta
        };
        let res = (|| -> Result<()> {
            grow(self, ws, meta.page_count)?;
            self.io.write_at(&b.buf, pgid * ps as u64)?;
            self.io.write_at(&meta.encode(), (txid % 2) * ps as u64)?;
            self.io.sync_data()?;
            Ok(())
        })();
        if let Err(e) = &res {
            self.poison(e);
        }
        res
    }
}

impl Drop for DbState {
    fn drop(&mut self) {
        if let Some(mut ws) = lock(&self.writer).take() {
            let _ = self.persist_freelist(&mut ws);
        }
    }
}

/// Grows the file to hold `page_count` pages: doubling up to 1 GiB, then
/// in 1 GiB steps, so growth is rare.
pub(crate) fn grow(shared: &DbState, ws: &mut WriterState, page_count: u64) -> Result<()> {
    let needed = page_count * shared.page_size as u64;
    if needed <= ws.file_len {
        return Ok(());
    }
    const GIB: u64 = 1 << 30;
    let new_len = if needed < GIB {
        needed.next_power_of_two().max(64 * 1024)
    } else {
        needed.div_ceil(GIB) * GIB
    };
    shared.io.set_len(new_len)?;
    ws.file_len = new_len;
    Ok(())
}
