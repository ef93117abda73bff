//! Read-only scan of a WAL directory for `strata-util waldump`: every
//! segment and every record with its offset, without locking, repairing or
//! stopping at the first problem of a segment.

use std::path::{Path, PathBuf};

use super::record::{self, Decoded, Record};
use super::segment::{self, SegmentName};
use crate::error::Result;

#[derive(Debug)]
pub struct DumpRecord {
    pub offset: u64,
    pub len: usize,
    pub record: Record,
}

#[derive(Debug)]
pub struct SegmentDump {
    pub path: PathBuf,
    pub name: SegmentName,
    pub file_len: u64,
    pub records: Vec<DumpRecord>,
    /// Where the records end (the first zero header or the problem).
    pub end: u64,
    /// Why reading stopped before a clean end, if it did.
    pub problem: Option<String>,
}

pub fn scan(dir: &Path) -> Result<Vec<SegmentDump>> {
    let mut out = Vec::new();
    for name in segment::list(dir, false)? {
        let path = dir.join(name.file_name());
        let data = std::fs::read(&path)?;
        let mut d = SegmentDump {
            path,
            name,
            file_len: data.len() as u64,
            records: Vec::new(),
            end: 0,
            problem: None,
        };
        let mut off = 0;
        let mut crc = 0;
        match record::decode_crc_record(&data) {
            Some((prev, after, len)) => {
                d.records.push(DumpRecord {
                    offset: 0,
                    len,
                    record: Record::Crc(prev),
                });
                crc = after;
                off = len;
            }
            None => d.problem = Some("no valid crc record at offset 0".into()),
        }
        while d.problem.is_none() {
            match record::decode(&data, off, crc) {
                Decoded::Record(r, c, len) => {
                    d.records.push(DumpRecord {
                        offset: off as u64,
                        len,
                        record: r,
                    });
                    crc = c;
                    off += len;
                }
                Decoded::End => break,
                Decoded::Bad { what, torn } => {
                    d.problem = Some(format!(
                        "offset {off}: {what}{}",
                        if torn { " (torn write)" } else { "" }
                    ));
                }
            }
        }
        d.end = off as u64;
        out.push(d);
    }
    Ok(out)
}
