//! Segment files: naming, listing, creation.
//!
//! A segment is named `%016x-%016x.wal` (sequence number, index of the first
//! entry it was cut for), so names sort in log order. The next segment's
//! file is preallocated with zeros and synced in the background; a cut
//! writes its header records (crc, metadata, last snapshot marker, last hard
//! state), syncs them, renames the file into place and syncs the directory.
//! A leftover `.tmp` is an unfinished cut and is deleted on open.

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

/// A preallocated, synced, empty file waiting to become the next segment
/// (made in the background, like etcd's file pipeline, so a cut does not
/// wait for the allocation).
pub struct Spare {
    pub file: File,
    pub tmp: PathBuf,
}

/// Starts preparing a spare segment file in `dir`.
pub fn prepare_spare(
    dir: &Path,
    size: u64,
    sync: bool,
) -> std::thread::JoinHandle<io::Result<Spare>> {
    let tmp = dir.join(format!("spare-{}.wal.tmp", std::process::id()));
    std::thread::spawn(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        preallocate(&file, size)?;
        if sync {
            file.sync_all()?;
        }
        Ok(Spare { file, tmp })
    })
}

/// Creates segment `name` in `dir` holding `header`, preallocated to `size`
/// bytes (using `spare` if given); returns the open file, whose data ends at
/// `header.len()`.
pub fn create(
    dir: &Path,
    name: SegmentName,
    header: &[u8],
    size: u64,
    sync: bool,
    spare: Option<Spare>,
) -> io::Result<(File, PathBuf)> {
    let path = dir.join(name.file_name());
    let from_spare = spare.is_some();
    let (f, tmp) = match spare {
        Some(s) => (s.file, s.tmp),
        None => {
            let tmp = dir.join(format!("{}.tmp", name.file_name()));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            preallocate(&f, size.max(header.len() as u64))?;
            (f, tmp)
        }
    };
    f.write_all_at(header, 0)?;
    // The header is synced before the name appears (as etcd's cut does):
    // a power loss may keep any part of unsynced writes, so a header left
    // to the first sync of the records could be lost while records after
    // it survive, and the segment would read as damaged.
    if sync {
        if from_spare {
            f.sync_data()?;
        } else {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, &path)?;
    if sync {
        sync_dir(dir)?;
    }
    Ok((f, path))
}

/// Reserves `size` bytes of zeros for the file, and writes them. Space
/// fallocate reserves is "unwritten" on ext4 and xfs: every fdatasync after
/// a write into it commits the filesystem journal to record the
/// conversion. Over written zeros an fdatasync carries the data alone
/// (measured on this project's ext4 machine: 1.5x the syncs per second and
/// a quarter less kernel CPU per sync; a 64 MB segment is written in about
/// 40 ms). fallocate still comes first, so that a full disk fails here
/// (ENOSPC) and the blocks are reserved together. A filesystem without
/// fallocate gets the zeros alone. Only the part past the file's current
/// length is written.
pub fn preallocate(f: &File, size: u64) -> io::Result<()> {
    // Linux's ENOSYS and EOPNOTSUPP: the call, or the filesystem, cannot
    // preallocate.
    const ENOSYS: i32 = 38;
    const EOPNOTSUPP: i32 = 95;
    const CHUNK: u64 = 1 << 20;
    let len = f.metadata()?.len();
    if len >= size {
        return Ok(());
    }
    match fs4::FileExt::allocate(f, size) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(ENOSYS | EOPNOTSUPP)) => {}
        Err(e) => return Err(e),
    }
    let zeros = vec![0u8; CHUNK.min(size - len) as usize];
    let mut off = len;
    while off < size {
        let n = CHUNK.min(size - off) as usize;
        f.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    Ok(())
}
