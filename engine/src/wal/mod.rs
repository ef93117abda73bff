//! The write-ahead log: raft's entries, hard state and snapshot markers,
//! in segment files in one directory. It does not depend on the B+tree.
//!
//! Guarantees and invariants:
//! - `save` only encodes and buffers; nothing is durable, or may be
//!   acknowledged, before the next `sync` returns. `sync` is one fdatasync
//!   for everything saved since the last one (group commit).
//! - `open` returns only what is durable: it syncs the tail segment and the
//!   directory first (a killed process's unsynced writes outlive it in the
//!   page cache, and would otherwise be read back, acknowledged, and lost
//!   to a power loss).
//! - Every record's CRC is chained to the previous record's, across segments
//!   too (each segment starts with a `Crc` record holding the value it
//!   continues from), so a missing or swapped segment is detected.
//! - Recovery (`recovery.rs`): in the last segment, a record that looks like an unfinished
//!   write (it runs past the end of the file, or one of its 512-byte sectors
//!   is still zero) ends the log there. The broken file is kept as
//!   `<name>.broken`, and the tail is cut and zeroed. Any other damage,
//!   anywhere, is a hard error naming the file and offset: synced data is
//!   never dropped silently.
//! - An entry whose index is already in the log replaces it and everything
//!   after it (raft overwrites uncommitted entries).
//! - After a failed write or sync the log refuses writes.
//! - One process at a time: an exclusive lock on `<dir>/LOCK`.

pub mod dump;
pub mod record;
mod recovery;
mod segment;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use record::{ConfState, Entry, HardState, Metadata, Record, RecordType, SnapshotMark};
use recovery::Replayed;
pub use segment::SegmentName;

use crate::error::{Error, Result};

/// etcd's segment size: 64,000,000 bytes.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64_000_000;
/// The sector a new segment's header starts in (written whole or not at
/// all).
const HEADER_SECTOR: usize = 512;
/// Saved bytes are written to the file once this many are buffered.
const FLUSH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size segments are preallocated to; the log cuts to a new segment
    /// once the current one is this full.
    pub segment_size: u64,
    /// Skip fdatasync (tests and benchmarks only: nothing is durable).
    pub no_sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            no_sync: false,
        }
    }
}

/// What a log held when it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub metadata: Metadata,
    /// The last hard state saved (zero if none).
    pub hard_state: HardState,
    /// Every entry after the snapshot the log was opened at, in order.
    pub entries: Vec<Entry>,
    /// The last snapshot marker in the log.
    pub last_snapshot: Option<SnapshotMark>,
    /// Where the torn tail's original was kept, if the tail was repaired.
    pub repaired: Option<PathBuf>,
}

pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    _lock: File,
    segments: Vec<SegmentName>,
    tail: File,
    tail_path: PathBuf,
    /// End of the data written to the tail file.
    offset: u64,
    /// Encoded records not yet written to the file.
    buf: Vec<u8>,
    /// Chain value after the last encoded record.
    crc: u32,
    metadata: Metadata,
    state: Option<HardState>,
    snapshot: Option<SnapshotMark>,
    last_index: u64,
    poisoned: bool,
    /// The next segment's file, being preallocated in the background.
    spare: Option<std::thread::JoinHandle<std::io::Result<segment::Spare>>>,
}

fn lock_dir(dir: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("LOCK"))?;
    fs4::FileExt::try_lock(&f).map_err(|_| Error::Locked(dir.to_path_buf()))?;
    Ok(f)
}

fn corrupt(file: &Path, offset: u64, what: impl Into<String>) -> Error {
    Error::CorruptedLog {
        file: file.to_path_buf(),
        offset,
        what: what.into(),
    }
}

impl Wal {
    /// Creates a new log in `dir` (created if missing; it must hold no
    /// segments yet).
    pub fn create(dir: impl AsRef<Path>, metadata: Metadata, opts: WalOptions) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let lock = lock_dir(&dir)?;
        if !segment::list(&dir, true)?.is_empty() {
            return Err(Error::WalExists(dir.to_path_buf()));
        }
        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let mut header = Vec::new();
        let crc = segment::header_records(0, metadata, None, None, &mut header);
        let (tail, tail_path) =
            segment::create(&dir, name, &header, opts.segment_size, !opts.no_sync, None)?;
        let spare = Some(segment::prepare_spare(
            &dir,
            opts.segment_size,
            !opts.no_sync,
        ));
        Ok(Wal {
            spare,
            dir,
            opts,
            _lock: lock,
            segments: vec![name],
            tail,
            tail_path,
            offset: header.len() as u64,
            buf: Vec::new(),
            crc,
            metadata,
            state: None,
            snapshot: None,
            last_index: 0,
            poisoned: false,
        })
    }

    /// Opens the log in `dir` and reads it from the snapshot `at` (index 0:
    /// from the start); a marker for `at` must be in the log. Repairs a torn
    /// tail.
    pub fn open(
        dir: impl AsRef<Path>,
        at: &SnapshotMark,
        opts: WalOptions,
    ) -> Result<(Wal, Recovered)> {
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        let mut segments = segment::list(&dir, true)?;
        if segments.is_empty() {
            return Err(Error::NoWal(dir.to_path_buf()));
        }
        let Replayed {
            rec,
            crc,
            last_index,
            tail_end,
        } = recovery::replay(&dir, &mut segments, at, opts.segment_size)?;
        let tail_name = *segments
            .last()
            .ok_or_else(|| corrupt(&dir, 0, "no segments"))?;
        let tail_path = dir.join(tail_name.file_name());
        let tail = OpenOptions::new().read(true).write(true).open(&tail_path)?;
        if !opts.no_sync {
            // What was read back may be in the page cache only (a process
            // killed between a write and its fsync leaves it there), and
            // raft will acknowledge it as held: make it durable first. The
            // tail and the names suffice: a cut synced every older segment.
            tail.sync_data()?;
            segment::sync_dir(&dir)?;
        }
        let has_state = rec.hard_state != HardState::default();
        let spare = Some(segment::prepare_spare(
            &dir,
            opts.segment_size,
            !opts.no_sync,
        ));
        let wal = Wal {
            spare,
            dir,
            opts,
            _lock: lock,
            segments,
            tail,
            tail_path,
            offset: tail_end as u64,
            buf: Vec::new(),
            crc,
            metadata: rec.metadata,
            state: has_state.then_some(rec.hard_state),
            snapshot: rec.last_snapshot.clone(),
            last_index,
            poisoned: false,
        };
        Ok((wal, rec))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segments(&self) -> &[SegmentName] {
        &self.segments
    }

    /// Index of the last entry saved.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Refuses writes from now on, logging the first cause once, here
    /// where it happened; hands the error back.
    fn poison(&mut self, cause: Error) -> Error {
        if !self.poisoned {
            self.poisoned = true;
            tracing::error!(
                file = %self.tail_path.display(),
                error = %cause,
                "a WAL write or fsync failed; the log refuses writes until reopened"
            );
        }
        cause
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Appends entries, then the hard state if given. Not durable until
    /// [`Wal::sync`].
    pub fn save(&mut self, state: Option<&HardState>, entries: &[Entry]) -> Result<()> {
        self.check()?;
        self.buf.reserve(
            entries
                .iter()
                .map(|e| record::frame_len(17 + e.data.len()))
                .sum(),
        );
        for e in entries {
            self.crc = record::encode_entry(e, self.crc, &mut self.buf);
            self.last_index = e.index;
        }
        if let Some(h) = state {
            self.crc = Record::State(*h).encode(self.crc, &mut self.buf);
            self.state = Some(*h);
        }
        self.after_append()
    }

    /// Records that a snapshot at `mark` exists, so the log can be opened
    /// there. Not durable until [`Wal::sync`].
    pub fn save_snapshot(&mut self, mark: &SnapshotMark) -> Result<()> {
        self.check()?;
        self.crc = Record::Snapshot(mark.clone()).encode(self.crc, &mut self.buf);
        self.snapshot = Some(mark.clone());
        self.after_append()
    }

    fn after_append(&mut self) -> Result<()> {
        if self.offset + self.buf.len() as u64 >= self.opts.segment_size {
            return self.cut();
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = (|| {
            // A full disk: ENOSPC, as write(2) reports it.
            fail::fail_point!("wal::write", |_| Err(std::io::Error::from_raw_os_error(28)));
            self.tail.write_all_at(&self.buf, self.offset)
        })();
        if let Err(e) = written {
            return Err(self.poison(e.into()));
        }
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes everything saved so far durable: one fdatasync.
    pub fn sync(&mut self) -> Result<()> {
        self.check()?;
        self.flush()?;
        if !self.opts.no_sync {
            // Written, not yet durable: where a power loss bites.
            crate::crash_point!(walBeforeFsync);
            let synced = (|| {
                // A failed fsync: EIO, as fdatasync(2) reports it.
                fail::fail_point!("wal::sync", |_| Err(std::io::Error::from_raw_os_error(5)));
                self.tail.sync_data()
            })();
            if let Err(e) = synced {
                return Err(self.poison(e.into()));
            }
        }
        Ok(())
    }

    /// Closes the current segment (synced, cut to its data) and starts the
    /// next one, which repeats the metadata, last snapshot marker and hard
    /// state so older segments can be released.
    pub fn cut(&mut self) -> Result<()> {
        self.sync()?;
        let res = (|| -> Result<()> {
            // The closed segment keeps its zeroed, preallocated tail (a zero
            // header ends its records); its data is already synced, so the
            // cut costs no extra journal commit for it.
            let prev = *self.segments.last().ok_or(Error::Poisoned)?;
            let name = SegmentName {
                seq: prev.seq + 1,
                first_index: self.last_index + 1,
            };
            let mut header = Vec::new();
            let crc = segment::header_records(
                self.crc,
                self.metadata,
                self.snapshot.as_ref(),
                self.state.as_ref(),
                &mut header,
            );
            let spare = match self.spare.take().map(|h| h.join()) {
                Some(Ok(Ok(s))) => Some(s),
                // A failed background allocation: allocate here instead.
                _ => None,
            };
            let sync = !self.opts.no_sync;
            let (f, path) = segment::create(
                &self.dir,
                name,
                &header,
                self.opts.segment_size,
                sync,
                spare,
            )?;
            self.spare = Some(segment::prepare_spare(
                &self.dir,
                self.opts.segment_size,
                sync,
            ));
            self.tail = f;
            self.tail_path = path;
            self.offset = header.len() as u64;
            self.crc = crc;
            self.segments.push(name);
            Ok(())
        })();
        res.map_err(|e| self.poison(e))
    }

    /// Deletes the segments that hold only entries below `index` (never the
    /// current one).
    pub fn release_before(&mut self, index: u64) -> Result<()> {
        let mut n = 0;
        while n + 1 < self.segments.len() && self.segments[n + 1].first_index <= index {
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        for s in self.segments.drain(..n) {
            std::fs::remove_file(self.dir.join(s.file_name()))?;
        }
        segment::sync_dir(&self.dir)?;
        Ok(())
    }

    pub fn tail_path(&self) -> &Path {
        &self.tail_path
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Hand buffered records to the OS; they were never acknowledged.
        if !self.poisoned {
            let _ = self.flush();
        }
        if let Some(Ok(Ok(spare))) = self.spare.take().map(|h| h.join()) {
            let _ = std::fs::remove_file(spare.tmp);
        }
    }
}
