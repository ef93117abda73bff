//! Segment files: naming, listing, creation and reading.
//!
//! A segment is named `%016x-%016x.wal` (sequence number, index of the first
//! entry it was cut for), so names sort in log order. It is created as
//! `<name>.tmp`, preallocated with zeros, given its header records (crc,
//! metadata, last snapshot marker, last hard state), synced, renamed into
//! place, and the directory is synced. A leftover `.tmp` is an unfinished
//! cut and is deleted on open.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{HardState, Metadata, Record, SnapshotMark};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}.wal", self.seq, self.first_index)
    }

    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(".wal")?;
        let (a, b) = stem.split_once('-')?;
        if a.len() != 16 || b.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(a, 16).ok()?,
            first_index: u64::from_str_radix(b, 16).ok()?,
        })
    }
}

/// The segments in `dir`, in order. Removes leftover `.tmp` files when
/// `clean` is set.
pub fn list(dir: &Path, clean: bool) -> io::Result<Vec<SegmentName>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = SegmentName::parse(&name) {
            out.push(s);
        } else if clean && name.ends_with(".wal.tmp") {
            std::fs::remove_file(e.path())?;
        }
    }
    out.sort();
    Ok(out)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The records every segment starts with, encoded; returns the chain value
/// after them.
pub fn header_records(
    prev_crc: u32,
    metadata: Metadata,
    snapshot: Option<&SnapshotMark>,
    state: Option<&HardState>,
    out: &mut Vec<u8>,
) -> u32 {
    let mut crc = Record::Crc(prev_crc).encode(prev_crc, out);
    crc = Record::Metadata(metadata).encode(crc, out);
    if let Some(s) = snapshot {
        crc = Record::Snapshot(s.clone()).encode(crc, out);
    }
    if let Some(h) = state {
        crc = Record::State(*h).encode(crc, out);
    }
    crc
}

/// Creates segment `name` in `dir` holding `header`, preallocated to `size`
/// bytes; returns the open file, positioned data ends at `header.len()`.
pub fn create(
    dir: &Path,
    name: SegmentName,
    header: &[u8],
    size: u64,
    sync: bool,
) -> io::Result<(File, PathBuf)> {
    let path = dir.join(name.file_name());
    let tmp = dir.join(format!("{}.tmp", name.file_name()));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    preallocate(&f, size.max(header.len() as u64))?;
    f.write_all_at(header, 0)?;
    if sync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if sync {
        sync_dir(dir)?;
    }
    Ok((f, path))
}

/// Reserves `size` bytes of zeros for the file.
pub fn preallocate(f: &File, size: u64) -> io::Result<()> {
    use fs2::FileExt;
    if f.allocate(size).is_err() {
        f.set_len(size)?;
    }
    Ok(())
}
