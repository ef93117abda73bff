//! Opening, recovering and closing a database file; beginning transactions.
//!
//! Invariants:
//! - One process has the file open (exclusive `flock`); within it, one write
//!   transaction at a time (the writer state is handed from transaction to
//!   transaction) and any number of readers, each pinned to a snapshot.
//! - A commit writes its new pages and its meta, then issues one fdatasync.
//!   Pages it writes were free in the previous commit's tree, so that tree is
//!   intact whatever part of the commit reached the disk. On open, a meta is
//!   accepted only if its whole tree verifies (each node against the checksum
//!   its parent recorded, the root against the meta); otherwise the previous
//!   meta is used. A file closed cleanly carries its freelist and is trusted
//!   without a walk. Open syncs the file and its directory before it
//!   returns, so that what it read (maybe a killed process's unsynced
//!   commit, or its unsynced rename of the file) is durable.
//! - After a failed write or sync the database is poisoned: no further write
//!   transaction begins (retrying an fsync can report success for lost data).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::freelist::Freelist;
use super::io::{FileIo, StorageIo};
use super::meta::{valid_page_size, Meta, META_LEN};
use super::mmap::Mapping;
use super::page::{checksum, seal, Header, NodeBuilder, PageId, TxId, KIND_FREELIST, KIND_LEAF};
use super::read::ReadTxn;
use super::state::{lock, DbState, Snapshot, WriterState};
use super::tree::PageReader;
use super::walk::walk;
use super::write::WriteTxn;
use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: usize = 4096;

#[derive(Debug, Clone)]
pub struct Options {
    /// Page size for a new file (a power of two, 1 KiB..64 KiB); an existing
    /// file keeps its own.
    pub page_size: usize,
    /// Skip fdatasync at commit. Commits are then not durable: for benchmarks
    /// and bulk loads only.
    pub no_sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page_size: DEFAULT_PAGE_SIZE,
            no_sync: false,
        }
    }
}

/// Bytes a retired database's file shrinks by per step when it is
/// released ([`Database::release_gradually`]).
pub const RELEASE_STEP: u64 = 256 << 20;

/// A database file. Cheap to clone; the file is closed (and its freelist
/// saved) when the last handle and transaction are dropped.
#[derive(Clone)]
pub struct Database {
    pub(crate) shared: Arc<DbState>,
}

/// Summary figures of an open database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub page_size: usize,
    pub txid: TxId,
    pub page_count: u64,
    pub file_len: u64,
    pub free_pages: u64,
    pub pending_pages: u64,
    pub root: PageId,
    pub freelist_saved: bool,
}

impl Database {
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Database> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Self::open_with_io(path, Box::new(FileIo(file)), opts)
    }

    /// Opens a database on a given I/O backend; `path` names it in errors.
    pub fn open_with_io(path: &Path, io: Box<dyn StorageIo>, opts: Options) -> Result<Database> {
        if !valid_page_size(opts.page_size) {
            return Err(Error::InvalidOption(format!(
                "page size {}",
                opts.page_size
            )));
        }
        fs4::FileExt::try_lock(io.file()).map_err(|_| Error::Locked(path.to_path_buf()))?;
        let mut len = io.len()?;
        if len == 0 {
            init(&*io, opts.page_size)?;
            len = io.len()?;
        }
        let (meta, map, freelist) = recover(&*io, path, len)?;
        if !opts.no_sync {
            // A commit a killed process wrote but never synced is read back
            // from the page cache, and so is a name it gave the file (a db
            // swapped in by rename, or just created): make both durable
            // before they are used.
            io.sync_data()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        let shared = DbState {
            path: path.to_path_buf(),
            page_size: meta.page_size as usize,
            no_sync: opts.no_sync,
            current: RwLock::new(Arc::new(Snapshot {
                meta,
                map: Arc::new(map),
            })),
            readers: Mutex::new(BTreeMap::new()),
            writer: Mutex::new(Some(WriterState {
                freelist,
                file_len: len,
            })),
            writer_cv: Condvar::new(),
            poisoned: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            io,
        };
        Ok(Database {
            shared: Arc::new(shared),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// A read transaction on the latest committed state. Never waits for the
    /// writer.
    pub fn begin_read(&self) -> ReadTxn {
        let mut readers = self.shared.readers();
        let snap = self.shared.snapshot();
        *readers.entry(snap.meta.txid).or_default() += 1;
        drop(readers);
        ReadTxn::new(self.shared.clone(), snap)
    }

    /// The write transaction; waits while another one is open.
    pub fn begin_write(&self) -> Result<WriteTxn> {
        if self.shared.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let mut slot = lock(&self.shared.writer);
        let ws = loop {
            if let Some(ws) = slot.take() {
                break ws;
            }
            slot = self
                .shared
                .writer_cv
                .wait(slot)
                .unwrap_or_else(|e| e.into_inner());
        };
        drop(slot);
        if self.shared.is_poisoned() {
            self.shared.return_writer(ws);
            return Err(Error::Poisoned);
        }
        Ok(WriteTxn::new(
            self.shared.clone(),
            ws,
            self.shared.snapshot(),
        ))
    }

    pub fn info(&self) -> Info {
        let snap = self.shared.snapshot();
        let (free, pending, file_len) = match lock(&self.shared.writer).as_ref() {
            Some(ws) => (
                ws.freelist.free_pages(),
                ws.freelist.pending_pages(),
                ws.file_len,
            ),
            None => (0, 0, self.shared.io.len().unwrap_or(0)),
        };
        Info {
            page_size: self.shared.page_size,
            txid: snap.meta.txid,
            page_count: snap.meta.page_count,
            file_len,
            free_pages: free,
            pending_pages: pending,
            root: snap.meta.root,
            freelist_saved: snap.meta.freelist != 0,
        }
    }

    /// Free and pending page runs (for tools); waits for the writer.
    pub fn free_runs(&self) -> Vec<(PageId, u64)> {
        let mut slot = lock(&self.shared.writer);
        loop {
            if let Some(ws) = slot.as_ref() {
                return ws.freelist.all_runs();
            }
            slot = self
                .shared
                .writer_cv
                .wait(slot)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// Marks the file as replaced: its last handle closes it without writing
    /// (so whichever reader drops it last does no I/O).
    pub fn retire(&self) {
        self.shared.retired.store(true, Ordering::SeqCst);
    }

    /// Gives back the disk space of a retired database whose file was
    /// replaced (renamed over, so this handle holds the only link to it),
    /// a step of [`RELEASE_STEP`] bytes at a time, then closes it. Freeing
    /// gigabytes in one close stalls the filesystem's journal, and with it
    /// every other fsync (the WAL's), for tens of milliseconds. Only a
    /// retired database that no one else holds is truncated; any other is
    /// just dropped.
    pub fn release_gradually(self) {
        let alone = Arc::strong_count(&self.shared) == 1;
        if !alone || !self.shared.retired.load(Ordering::SeqCst) {
            return;
        }
        let mut len = self.shared.io.len().unwrap_or(0);
        while len > 0 {
            len = len.saturating_sub(RELEASE_STEP);
            if self.shared.io.set_len(len).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Handles and open transactions on this database.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// fdatasync now: makes commits made with `no_sync` durable.
    pub fn sync(&self) -> Result<()> {
        if let Err(e) = self.shared.io.sync_data() {
            let e = Error::from(e);
            self.shared.poison(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Closes the database now, saving its freelist, and reports any error.
    /// Fails if transactions or other handles are still open.
    pub fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => {
                let ws = lock(&shared.writer).take();
                let res = match ws {
                    Some(mut ws) => shared.persist_freelist(&mut ws),
                    None => Ok(()),
                };
                // Nothing left to save in Drop.
                drop(shared);
                res
            }
            Err(_) => Err(Error::InUse),
        }
    }
}

/// Writes a new file: an empty top-level tree at page 2 and both metas.
fn init(io: &dyn StorageIo, ps: usize) -> Result<()> {
    let mut leaf = NodeBuilder::new(KIND_LEAF, 0, 0, ps);
    let crc = seal(&mut leaf.buf, ps, 2, 0, 0);
    io.set_len(3 * ps as u64)?;
    io.write_at(&leaf.buf, 2 * ps as u64)?;
    for txid in 0..2 {
        let meta = Meta {
            txid,
            page_size: ps as u32,
            root: 2,
            root_crc: crc,
            page_count: 3,
            freelist: 0,
            freelist_crc: 0,
        };
        io.write_at(&meta.encode(), txid * ps as u64)?;
    }
    io.sync_data()?;
    Ok(())
}

/// Reads both metas and returns them, valid ones only, newest first.
pub(crate) fn read_metas(io: &dyn StorageIo, len: u64) -> (Vec<Meta>, Vec<String>) {
    let mut errors = Vec::new();
    let mut metas = Vec::new();
    let mut buf = [0u8; META_LEN];
    let m0 = if len >= META_LEN as u64 {
        io.read_at(&mut buf, 0)
            .map_err(|e| e.to_string())
            .and_then(|()| Meta::decode(&buf, 0))
    } else {
        Err("file shorter than a meta page".into())
    };
    let sizes: Vec<usize> = match &m0 {
        Ok(m) => vec![m.page_size as usize],
        Err(_) => (10..=16).map(|s| 1usize << s).collect(),
    };
    match m0 {
        Ok(m) => metas.push(m),
        Err(e) => errors.push(format!("meta 0: {e}")),
    }
    let mut m1_err = None;
    for ps in sizes {
        if ps as u64 + META_LEN as u64 > len {
            continue;
        }
        let r = io
            .read_at(&mut buf, ps as u64)
            .map_err(|e| e.to_string())
            .and_then(|()| Meta::decode(&buf, 1))
            .and_then(|m| {
                if m.page_size as usize == ps {
                    Ok(m)
                } else {
                    Err("page size differs from meta 0".into())
                }
            });
        match r {
            Ok(m) => {
                metas.push(m);
                m1_err = None;
                break;
            }
            Err(e) => m1_err = Some(e),
        }
    }
    if let Some(e) = m1_err {
        errors.push(format!("meta 1: {e}"));
    }
    metas.retain(|m| {
        let fits = m.page_count * u64::from(m.page_size) <= len;
        if !fits {
            errors.push(format!(
                "meta txid {}: page count beyond the end of the file",
                m.txid
            ));
        }
        fits
    });
    metas.sort_by_key(|m| std::cmp::Reverse(m.txid));
    (metas, errors)
}

/// Picks the newest meta whose state is whole and returns it with the map
/// and the freelist to run with.
fn recover(io: &dyn StorageIo, path: &Path, len: u64) -> Result<(Meta, Mapping, Freelist)> {
    let (metas, mut errors) = read_metas(io, len);
    for meta in metas {
        let ps = meta.page_size as usize;
        let map = Mapping::new(io.file(), len as usize, ps)?;
        let reader = PageReader {
            map: &map,
            page_count: meta.page_count,
            path,
        };
        if meta.freelist != 0 {
            match load_freelist(&reader, &meta) {
                Ok(fl) => return Ok((meta, map, fl)),
                Err(e) => errors.push(format!("meta txid {}: freelist: {e}", meta.txid)),
            }
        }
        match rebuild_freelist(&reader, &meta) {
            Ok(fl) => return Ok((meta, map, fl)),
            Err(e) => errors.push(format!("meta txid {}: {e}", meta.txid)),
        }
    }
    Err(Error::corrupted(
        path,
        0,
        format!("no usable meta page: {}", errors.join("; ")),
    ))
}

fn load_freelist(reader: &PageReader<'_>, meta: &Meta) -> Result<Freelist> {
    let run = reader.run(meta.freelist)?;
    let h = Header::read(run).ok_or_else(|| reader.corrupt(meta.freelist, "short page"))?;
    if h.kind != KIND_FREELIST
        || h.pgid != meta.freelist
        || checksum(run) != h.crc
        || h.crc != meta.freelist_crc
    {
        return Err(reader.corrupt(meta.freelist, "freelist node fails its checksum"));
    }
    let runs = Freelist::decode(run, h.count as usize, meta.page_count)
        .map_err(|w| reader.corrupt(meta.freelist, w))?;
    let mut fl = Freelist::default();
    for (s, l) in runs {
        fl.free(s, l);
    }
    // The freelist node stays intact while this meta is the fallback: it is
    // freed by the next commit and reusable from the one after.
    fl.add_pending(
        meta.txid + 1,
        vec![(meta.freelist, u64::from(h.overflow) + 1)],
    );
    Ok(fl)
}

/// Walks the whole state, verifying every node; every page no tree reaches
/// is free.
fn rebuild_freelist(reader: &PageReader<'_>, meta: &Meta) -> Result<Freelist> {
    let n = meta.page_count as usize;
    let mut used = vec![false; n];
    used[0] = true;
    used[1] = true;
    walk(reader, meta.root, meta.root_crc, &mut |v| {
        for p in v.pgid..v.pgid + v.pages {
            let slot = &mut used[p as usize];
            if *slot {
                return Err(reader.corrupt(p, "page reachable twice"));
            }
            *slot = true;
        }
        Ok(())
    })?;
    let mut fl = Freelist::default();
    let mut i = 0;
    while i < n {
        if used[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && !used[i] {
            i += 1;
        }
        fl.free(start as u64, (i - start) as u64);
    }
    Ok(fl)
}
