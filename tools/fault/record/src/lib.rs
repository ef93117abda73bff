//! The fault shim's journal record format, written by the shim
//! (`strata-fault-shim`) and read back by the power-loss replayer
//! (`strata_testkit::powerloss`): one crate, so the two cannot drift apart
//! (and the harness reads records without linking the shim's libc
//! wrappers into itself).
//!
//! Records follow each other with no framing; integers are little-endian
//! u64 and a path (or saved path, or byte string) is a u32 length and its
//! bytes. The first byte names the record:
//! - `W` ino off len old_size zeroed:u8 [old bytes] path — a write of
//!   `len` bytes at `off`; the old bytes are the file's bytes there before
//!   it ([`replaced`] of them), left out when all zero.
//! - `Z` ino old_size new_size tail_len [tail] path — the file's length
//!   changed (ftruncate, O_TRUNC, or a change seen but not made through
//!   the shim, such as fallocate by raw syscall); `tail` is what a shrink
//!   cut off.
//! - `S` ino seq, then `s` seq result (seq: the process id, then a counter,
//!   in the high and low 32 bits; result 0 or the errno) — an
//!   fsync/fdatasync of a file or directory began, and ended; only an
//!   ended, successful one counts.
//! - `C` parent_ino path — a file created (the name did not exist).
//! - `M` parent_ino path — a directory created.
//! - `R` ino from_parent to_parent from to saved — a rename of inode `ino`;
//!   `saved` (maybe empty) holds what `to` named before.
//! - `U` parent_ino path saved — a file unlinked, kept at `saved`.
//! - `D` parent_ino path — an (empty) directory removed.

/// One journaled change (paths as the bytes the process named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Write {
        ino: u64,
        off: u64,
        len: u64,
        old_size: u64,
        /// None: the old bytes were all zero.
        old: Option<Vec<u8>>,
        path: Vec<u8>,
    },
    Size {
        ino: u64,
        old: u64,
        new: u64,
        tail: Vec<u8>,
        path: Vec<u8>,
    },
    SyncBegin {
        ino: u64,
        seq: u64,
    },
    SyncEnd {
        seq: u64,
        /// 0, or the errno the sync failed with.
        result: u64,
    },
    Create {
        parent: u64,
        path: Vec<u8>,
    },
    Mkdir {
        parent: u64,
        path: Vec<u8>,
    },
    Rename {
        ino: u64,
        from_parent: u64,
        to_parent: u64,
        from: Vec<u8>,
        to: Vec<u8>,
        /// Empty: `to` named nothing (or nothing worth keeping).
        saved: Vec<u8>,
    },
    Unlink {
        parent: u64,
        path: Vec<u8>,
        saved: Vec<u8>,
    },
    Rmdir {
        parent: u64,
        path: Vec<u8>,
    },
}

/// How many bytes a write of `len` at `off` replaced in a file of
/// `old_size` bytes (the old bytes a `W` record carries).
pub fn replaced(off: u64, len: u64, old_size: u64) -> u64 {
    if off < old_size {
        (old_size - off).min(len)
    } else {
        0
    }
}

fn u64_to(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes_to(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Record {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(64);
        match self {
            Record::Write {
                ino,
                off,
                len,
                old_size,
                old,
                path,
            } => {
                r.push(b'W');
                for v in [*ino, *off, *len, *old_size] {
                    u64_to(&mut r, v);
                }
                r.push(old.is_none() as u8);
                if let Some(old) = old {
                    r.extend_from_slice(old);
                }
                bytes_to(&mut r, path);
            }
            Record::Size {
                ino,
                old,
                new,
                tail,
                path,
            } => {
                r.push(b'Z');
                for v in [*ino, *old, *new, tail.len() as u64] {
                    u64_to(&mut r, v);
                }
                r.extend_from_slice(tail);
                bytes_to(&mut r, path);
            }
            Record::SyncBegin { ino, seq } => {
                r.push(b'S');
                u64_to(&mut r, *ino);
                u64_to(&mut r, *seq);
            }
            Record::SyncEnd { seq, result } => {
                r.push(b's');
                u64_to(&mut r, *seq);
                u64_to(&mut r, *result);
            }
            Record::Create { parent, path } | Record::Mkdir { parent, path } => {
                r.push(if matches!(self, Record::Create { .. }) {
                    b'C'
                } else {
                    b'M'
                });
                u64_to(&mut r, *parent);
                bytes_to(&mut r, path);
            }
            Record::Rename {
                ino,
                from_parent,
                to_parent,
                from,
                to,
                saved,
            } => {
                r.push(b'R');
                for v in [*ino, *from_parent, *to_parent] {
                    u64_to(&mut r, v);
                }
                bytes_to(&mut r, from);
                bytes_to(&mut r, to);
                bytes_to(&mut r, saved);
            }
            Record::Unlink {
                parent,
                path,
                saved,
            } => {
                r.push(b'U');
                u64_to(&mut r, *parent);
                bytes_to(&mut r, path);
                bytes_to(&mut r, saved);
            }
            Record::Rmdir { parent, path } => {
                r.push(b'D');
                u64_to(&mut r, *parent);
                bytes_to(&mut r, path);
            }
        }
        r
    }

    /// Every record of a journal, in order; an error names the byte where
    /// the journal stops making sense.
    pub fn decode_all(b: &[u8]) -> Result<Vec<Record>, String> {
        let mut r = Cursor { b, at: 0 };
        let mut out = Vec::new();
        while r.at < b.len() {
            let kind = r.take(1)?[0];
            out.push(match kind {
                b'W' => {
                    let (ino, off, len, old_size) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                    let zeroed = r.take(1)?[0] != 0;
                    let old = if zeroed {
                        None
                    } else {
                        Some(r.take(replaced(off, len, old_size) as usize)?.to_vec())
                    };
                    Record::Write {
                        ino,
                        off,
                        len,
                        old_size,
                        old,
                        path: r.bytes()?,
                    }
                }
                b'Z' => {
                    let (ino, old, new, n) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                    Record::Size {
                        ino,
                        old,
                        new,
                        tail: r.take(n as usize)?.to_vec(),
                        path: r.bytes()?,
                    }
                }
                b'S' => Record::SyncBegin {
                    ino: r.u64()?,
                    seq: r.u64()?,
                },
                b's' => Record::SyncEnd {
                    seq: r.u64()?,
                    result: r.u64()?,
                },
                b'C' => Record::Create {
                    parent: r.u64()?,
                    path: r.bytes()?,
                },
                b'M' => Record::Mkdir {
                    parent: r.u64()?,
                    path: r.bytes()?,
                },
                b'R' => Record::Rename {
                    ino: r.u64()?,
                    from_parent: r.u64()?,
                    to_parent: r.u64()?,
                    from: r.bytes()?,
                    to: r.bytes()?,
                    saved: r.bytes()?,
                },
                b'U' => Record::Unlink {
                    parent: r.u64()?,
                    path: r.bytes()?,
                    saved: r.bytes()?,
                },
                b'D' => Record::Rmdir {
                    parent: r.u64()?,
                    path: r.bytes()?,
                },
                other => {
                    return Err(format!(
                        "journal: unknown record {other:#x} at byte {}",
                        r.at - 1
                    ))
                }
            });
        }
        Ok(out)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.b.len() - self.at < n {
            return Err(format!("journal cut short at byte {}", self.at));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut v = [0u8; 8];
        v.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(v))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let mut n = [0u8; 4];
        n.copy_from_slice(self.take(4)?);
        Ok(self.take(u32::from_le_bytes(n) as usize)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_as_written() {
        let recs = vec![
            Record::Write {
                ino: 7,
                off: 10,
                len: 8,
                old_size: 14,
                old: Some(b"abcd".to_vec()),
                path: b"/d/f".to_vec(),
            },
            Record::Write {
                ino: 7,
                off: 0,
                len: 8,
                old_size: 100,
                old: None,
                path: b"/d/f".to_vec(),
            },
            Record::Size {
                ino: 7,
                old: 5,
                new: 2,
                tail: b"xyz".to_vec(),
                path: b"/d/f".to_vec(),
            },
            Record::SyncBegin {
                ino: 7,
                seq: 1 << 32 | 3,
            },
            Record::SyncEnd {
                seq: 1 << 32 | 3,
                result: 5,
            },
            Record::Create {
                parent: 2,
                path: b"/d/g".to_vec(),
            },
            Record::Mkdir {
                parent: 2,
                path: b"/d/h".to_vec(),
            },
            Record::Rename {
                ino: 9,
                from_parent: 2,
                to_parent: 3,
                from: b"/d/a".to_vec(),
                to: b"/e/b".to_vec(),
                saved: Vec::new(),
            },
            Record::Unlink {
                parent: 2,
                path: b"/d/g".to_vec(),
                saved: b"/j.saved/1-1".to_vec(),
            },
            Record::Rmdir {
                parent: 2,
                path: b"/d/h".to_vec(),
            },
        ];
        let bytes: Vec<u8> = recs.iter().flat_map(Record::encode).collect();
        assert_eq!(Record::decode_all(&bytes).unwrap(), recs);
        let cut = Record::decode_all(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(cut.contains("cut short"), "{cut}");
        assert!(Record::decode_all(b"Q")
            .unwrap_err()
            .contains("unknown record 0x51"));
    }
}
