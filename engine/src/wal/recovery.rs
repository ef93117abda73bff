//! Recovery: reading a log back from its segments when it is opened.
//!
//! Order: an unfinished cut (a newest segment whose header never reached
//! the disk and that holds nothing after it; logs written before cuts
//! synced their header ahead of the rename can hold one) is kept as
//! `.broken` and dropped; the segments must then be consecutive; each must
//! start with a `Crc` record continuing the previous segment's chain; its
//! records are replayed in order into a [`Replay`]. A torn record in the
//! last segment ends the log there (the segment is kept as `.broken`, then
//! cut and zeroed); any other damage is an error naming the file and
//! offset.
//!
//! Replay rules: entries above the snapshot `at` are collected, an entry
//! replacing every entry from its index on; the last hard state and
//! snapshot marker win; the metadata must agree across segments; the
//! marker for `at` must be found (unless `at` is index 0).
//!
//! A marker for `at` whose term differs from the term of the log's own
//! entry at `at.index` records a snapshot installed from the leader (raft
//! installs one only when its log does not hold that entry with that
//! term): the entries above it written before the marker belong to the
//! log that diverged, and are dropped. A local snapshot's marker has the
//! term of the entry it was taken at, and the entries above it stay.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::record::{self, Decoded};
use super::HEADER_SECTOR;
use super::{corrupt, segment, Metadata, Record, Recovered, SegmentName, SnapshotMark};
use crate::error::{Error, Result};

/// What replaying the records builds up.
struct Replay<'a> {
    /// The snapshot the log is read from.
    at: &'a SnapshotMark,
    rec: Recovered,
    /// The marker for `at` was seen.
    found: bool,
    metadata: Option<Metadata>,
    /// Index of the last entry record, whatever its index.
    last_index: u64,
    /// The term of the last entry record at `at.index`.
    term_at_mark: Option<u64>,
}

/// A log read back: what it held, and where appending continues.
pub(super) struct Replayed {
    pub rec: Recovered,
    /// Chain value after the last good record.
    pub crc: u32,
    pub last_index: u64,
    /// End of the last good record in the newest segment.
    pub tail_end: usize,
}

impl Replay<'_> {
    /// Takes one record found at `off` in `path`.
    fn record(&mut self, path: &Path, off: u64, r: Record) -> Result<()> {
        match r {
            Record::Crc(_) => return Err(corrupt(path, off, "crc record inside a segment")),
            Record::Metadata(m) => match &self.metadata {
                Some(prev) if *prev != m => {
                    return Err(corrupt(path, off, "metadata differs from earlier segments"))
                }
                _ => self.metadata = Some(m),
            },
            Record::Entry(e) => {
                self.last_index = e.index;
                if e.index == self.at.index {
                    self.term_at_mark = Some(e.term);
                }
                let entries = &mut self.rec.entries;
                if e.index > self.at.index {
                    let first = self.at.index + 1;
                    let pos = (e.index - first) as usize;
                    if pos > entries.len() {
                        return Err(corrupt(
                            path,
                            off,
                            format!(
                                "entry {} after {} leaves a gap",
                                e.index,
                                first + entries.len() as u64 - 1
                            ),
                        ));
                    }
                    entries.truncate(pos);
                    entries.push(e);
                } else {
                    // It replaces everything from its index on, all of
                    // which we hold is above it.
                    entries.clear();
                }
            }
            Record::State(h) => self.rec.hard_state = h,
            Record::Snapshot(s) => {
                if s.index == self.at.index {
                    if s.term != self.at.term {
                        return Err(corrupt(
                            path,
                            off,
                            format!(
                                "snapshot marker at {} has term {}, not {}",
                                s.index, s.term, self.at.term
                            ),
                        ));
                    }
                    // Only where it was written: each new segment repeats
                    // the last marker at its head, after entries that
                    // followed it.
                    if !self.found && self.term_at_mark.is_some_and(|t| t != s.term) {
                        // Installed from the leader over a diverged log.
                        self.rec.entries.clear();
                    }
                    self.found = true;
                }
                self.rec.last_snapshot = Some(s);
            }
        }
        Ok(())
    }
}

/// A cut whose header never reached the disk: the newest segment holds no
/// synced record. Keeps a copy, removes it and returns the copy's path.
fn drop_unfinished_cut(dir: &Path, segments: &mut Vec<SegmentName>) -> Result<Option<PathBuf>> {
    let Some(&name) = segments.last() else {
        return Ok(None);
    };
    if segments.len() < 2 {
        return Ok(None);
    }
    let path = dir.join(name.file_name());
    let data = std::fs::read(&path)?;
    let header_lost = matches!(
        record::decode(&data, 0, 0),
        Decoded::End | Decoded::Bad { torn: true, .. }
    );
    // Records written after the header would reach past its first sector;
    // if any reached the disk, this is damage, not an unfinished cut.
    let nothing_after = data
        .get(HEADER_SECTOR..)
        .is_none_or(|rest| rest.iter().all(|&b| b == 0));
    if !(header_lost && nothing_after) {
        return Ok(None);
    }
    let kept = keep_copy(&path)?;
    std::fs::remove_file(&path)?;
    segment::sync_dir(dir)?;
    segments.pop();
    Ok(Some(kept))
}

/// Reads the log in `dir` from the snapshot `at`; `segments` lose an
/// unfinished cut.
pub(super) fn replay(
    dir: &Path,
    segments: &mut Vec<SegmentName>,
    at: &SnapshotMark,
    segment_size: u64,
) -> Result<Replayed> {
    let repaired = drop_unfinished_cut(dir, segments)?;
    for w in segments.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return Err(corrupt(
                &dir.join(w[1].file_name()),
                0,
                format!("segment {} is missing", w[0].seq + 1),
            ));
        }
    }
    let mut replay = Replay {
        at,
        rec: Recovered {
            repaired,
            ..Recovered::default()
        },
        found: at.index == 0,
        metadata: None,
        last_index: 0,
        term_at_mark: None,
    };
    let mut crc = 0;
    let mut tail_end = 0;
    for (i, name) in segments.iter().enumerate() {
        let path = dir.join(name.file_name());
        let data = std::fs::read(&path)?;
        let last = i + 1 == segments.len();
        // The first record continues the chain of the previous segment (or,
        // for the oldest segment kept, starts it). A segment only appears
        // (by rename) once its header is synced, so a bad first record is
        // damage, never a torn write.
        let (first, after, len) = record::decode_crc_record(&data)
            .ok_or_else(|| corrupt(&path, 0, "segment does not start with a valid crc record"))?;
        if i > 0 && first != crc {
            return Err(corrupt(
                &path,
                0,
                format!(
                    "crc chain broken: segment continues {first:#010x}, previous ended {crc:#010x}"
                ),
            ));
        }
        crc = after;
        let mut off = len;
        loop {
            match record::decode(&data, off, crc) {
                Decoded::Record(r, c, len) => {
                    replay.record(&path, off as u64, r)?;
                    crc = c;
                    off += len;
                }
                Decoded::End => break,
                Decoded::Bad { torn: true, .. } if last => {
                    replay.rec.repaired = Some(repair(&path, off as u64, segment_size)?);
                    break;
                }
                Decoded::Bad { what, .. } => return Err(corrupt(&path, off as u64, what)),
            }
        }
        tail_end = off;
    }
    if !replay.found {
        return Err(Error::SnapshotMarkNotFound {
            dir: dir.to_path_buf(),
            index: at.index,
            term: at.term,
        });
    }
    let mut rec = replay.rec;
    rec.metadata = replay.metadata.unwrap_or_default();
    Ok(Replayed {
        rec,
        crc,
        last_index: replay.last_index,
        tail_end,
    })
}
/// Copies `path` to `<path>.broken` (or `.broken.N`) and returns the copy.
fn keep_copy(path: &Path) -> Result<PathBuf> {
    let mut broken = PathBuf::from(format!("{}.broken", path.display()));
    let mut n = 1;
    while broken.exists() {
        broken = PathBuf::from(format!("{}.broken.{n}", path.display()));
        n += 1;
    }
    std::fs::copy(path, &broken)?;
    Ok(broken)
}

/// Keeps a copy of a segment with a torn tail as `<name>.broken`, then cuts
/// it at `off` and zeroes the rest of its preallocated space.
fn repair(path: &Path, off: u64, segment_size: u64) -> Result<PathBuf> {
    let broken = keep_copy(path)?;
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(off)?;
    segment::preallocate(&f, segment_size.max(off))?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        segment::sync_dir(dir)?;
    }
    Ok(broken)
}
