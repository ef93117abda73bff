//! WAL record framing and the record types.
//!
//! A frame starts at an 8-byte-aligned offset with a 16-byte header:
//!
//! ```text
//! 0..4    body length (u32, little-endian)
//! 4..8    crc32 of bytes 0..4, xor LEN_CHECK  (a torn or flipped length is caught)
//! 8..12   crc32 of type + body, seeded with the previous record's crc (the chain)
//! 12      record type
//! 13..16  zero
//! 16..    body, then zeros up to the next multiple of 8
//! ```
//!
//! An all-zero header marks the end of the records (segments are
//! preallocated with zeros). A 16-byte header at an 8-aligned offset never
//! straddles a 512-byte sector, so a length is never torn.
//!
//! Bodies (little-endian):
//! - `Crc` (first record of every segment): the chain value the segment
//!   continues from (u32).
//! - `Metadata`: member id u64, cluster id u64.
//! - `Entry`: index u64, term u64, entry type u8, data.
//! - `State`: term u64, vote u64, commit u64.
//! - `Snapshot`: index u64, term u64, then the conf state as five lists
//!   (voters, learners, voters outgoing, learners next: count u32 + ids u64
//!   each) and auto_leave u8.

pub const HEADER: usize = 16;
/// Keeps an all-zero header from passing the length check.
pub const LEN_CHECK: u32 = 0x5354_5241;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Crc = 1,
    Metadata = 2,
    Entry = 3,
    State = 4,
    Snapshot = 5,
}

impl RecordType {
    pub fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Crc,
            2 => RecordType::Metadata,
            3 => RecordType::Entry,
            4 => RecordType::State,
            5 => RecordType::Snapshot,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordType::Crc => "crc",
            RecordType::Metadata => "metadata",
            RecordType::Entry => "entry",
            RecordType::State => "state",
            RecordType::Snapshot => "snapshot",
        }
    }
}

/// Raft entry types as the log stores them (raft-rs / etcd numbering).
pub const ENTRY_NORMAL: u8 = 0;
pub const ENTRY_CONF_CHANGE: u8 = 1;
pub const ENTRY_CONF_CHANGE_V2: u8 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    pub member_id: u64,
    pub cluster_id: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub entry_type: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

/// A snapshot marker: the log may be read from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMark {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
}

impl SnapshotMark {
    /// The marker's own encoding, the body of a WAL snapshot record:
    /// index, term (8 bytes LE each), then voters, learners, outgoing
    /// voters, next learners (a 4-byte LE count, then 8-byte LE ids each),
    /// then auto_leave (one byte). Whoever else stores a marker (the
    /// server's db) uses this too.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        snapshot_body(self, &mut out);
        out
    }

    /// The inverse of [`SnapshotMark::encode`]; None if `b` is not exactly
    /// one marker.
    pub fn decode(b: &[u8]) -> Option<SnapshotMark> {
        match parse(RecordType::Snapshot, b)? {
            Record::Snapshot(m) => Some(m),
            _ => None,
        }
    }
}

fn snapshot_body(s: &SnapshotMark, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.index.to_le_bytes());
    out.extend_from_slice(&s.term.to_le_bytes());
    let c = &s.conf_state;
    for list in [&c.voters, &c.learners, &c.voters_outgoing, &c.learners_next] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for x in list.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.push(u8::from(c.auto_leave));
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Crc(u32),
    Metadata(Metadata),
    Entry(Entry),
    State(HardState),
    Snapshot(SnapshotMark),
}

impl Record {
    pub fn kind(&self) -> RecordType {
        match self {
            Record::Crc(_) => RecordType::Crc,
            Record::Metadata(_) => RecordType::Metadata,
            Record::Entry(_) => RecordType::Entry,
            Record::State(_) => RecordType::State,
            Record::Snapshot(_) => RecordType::Snapshot,
        }
    }

    fn body(&self, out: &mut Vec<u8>) {
        match self {
            Record::Crc(c) => out.extend_from_slice(&c.to_le_bytes()),
            Record::Metadata(m) => {
                out.extend_from_slice(&m.member_id.to_le_bytes());
                out.extend_from_slice(&m.cluster_id.to_le_bytes());
            }
            Record::Entry(_) => unreachable!("entries are framed by encode_entry"),
            Record::State(h) => {
                for v in [h.term, h.vote, h.commit] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Record::Snapshot(s) => snapshot_body(s, out),
        }
    }

    /// Appends the framed record to `out` (which must be 8-aligned in the
    /// file) and returns the new chain value.
    pub fn encode(&self, prev_crc: u32, out: &mut Vec<u8>) -> u32 {
        match self {
            Record::Entry(e) => encode_entry(e, prev_crc, out),
            _ => frame(self.kind(), prev_crc, out, |out| self.body(out)),
        }
    }
}

/// Appends an entry record without building a [`Record`] (no copy of the
/// entry's data besides the one into `out`).
pub fn encode_entry(e: &Entry, prev_crc: u32, out: &mut Vec<u8>) -> u32 {
    frame(RecordType::Entry, prev_crc, out, |out| {
        out.extend_from_slice(&e.index.to_le_bytes());
        out.extend_from_slice(&e.term.to_le_bytes());
        out.push(e.entry_type);
        out.extend_from_slice(&e.data);
    })
}

fn frame(
    kind: RecordType,
    prev_crc: u32,
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>),
) -> u32 {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    body(out);
    let body_len = out.len() - start - HEADER;
    let mut h = crc32fast::Hasher::new_with_initial(prev_crc);
    h.update(&[kind as u8]);
    h.update(&out[start + HEADER..]);
    let crc = h.finalize();
    let len = (body_len as u32).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&(crc32fast::hash(&len) ^ LEN_CHECK).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    out[start + 12] = kind as u8;
    out.resize(start + frame_len(body_len), 0);
    crc
}

/// Bytes a frame with a body of `body_len` takes, padding included.
pub fn frame_len(body_len: usize) -> usize {
    (HEADER + body_len).div_ceil(8) * 8
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record, its chain value and its frame length.
    Record(Record, u32, usize),
    /// An all-zero header, or the end of the data: no more records.
    End,
    /// Something that is not a valid record; `torn` when it looks like an
    /// unfinished write (runs past the end, or holds a zero-filled 512-byte
    /// sector) rather than damage to written data.
    Bad { what: String, torn: bool },
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Decodes the frame at `off` of `seg` (`off` is 8-aligned), checking it
/// against the chain value `prev_crc`. Never panics.
pub fn decode(seg: &[u8], off: usize, prev_crc: u32) -> Decoded {
    let Some(h) = seg.get(off..off + HEADER) else {
        return if seg.len() <= off || seg[off..].iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad {
                what: "header runs past the end".into(),
                torn: true,
            }
        };
    };
    if h.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let len_bytes = &h[0..4];
    if crc32fast::hash(len_bytes) ^ LEN_CHECK != le_u32(h, 4) {
        return Decoded::Bad {
            what: "length check mismatch".into(),
            torn: zero_sector(seg, off, HEADER),
        };
    }
    let body_len = le_u32(h, 0) as usize;
    let total = frame_len(body_len);
    let Some(frame) = seg.get(off..off + total) else {
        return Decoded::Bad {
            what: format!("record of {total} bytes runs past the end"),
            torn: true,
        };
    };
    let body = &frame[HEADER..HEADER + body_len];
    let mut hasher = crc32fast::Hasher::new_with_initial(prev_crc);
    hasher.update(&h[12..13]);
    hasher.update(body);
    let crc = hasher.finalize();
    if crc != le_u32(h, 8) {
        return Decoded::Bad {
            what: format!(
                "crc mismatch: stored {:#010x}, computed {crc:#010x}",
                le_u32(h, 8)
            ),
            torn: zero_sector(seg, off, total),
        };
    }
    match RecordType::from_u8(h[12]).and_then(|t| parse(t, body)) {
        Some(r) => Decoded::Record(r, crc, total),
        None => Decoded::Bad {
            what: format!("malformed record of type {}", h[12]),
            torn: false,
        },
    }
}

/// A segment's leading crc record: (the chain value it continues from, the
/// chain value after it, its frame length). The record is chained from the
/// value it holds, so it verifies on its own.
pub fn decode_crc_record(seg: &[u8]) -> Option<(u32, u32, usize)> {
    let body = seg.get(HEADER..HEADER + 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(body);
    let prev = u32::from_le_bytes(a);
    match decode(seg, 0, prev) {
        Decoded::Record(Record::Crc(v), after, len) if v == prev => Some((prev, after, len)),
        _ => None,
    }
}

/// Whether any 512-byte sector overlapping `seg[off..off+len]` is all zeros
/// inside the frame: the mark of a write that did not reach the disk.
fn zero_sector(seg: &[u8], off: usize, len: usize) -> bool {
    let end = (off + len).min(seg.len());
    let mut s = off;
    while s < end {
        let next = ((s / 512) + 1) * 512;
        let chunk = &seg[s..next.min(end)];
        if chunk.iter().all(|&b| b == 0) {
            return true;
        }
        s = next;
    }
    false
}

struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }
    fn u32(&mut self) -> Option<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Some(u32::from_le_bytes(a))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn list(&mut self) -> Option<Vec<u64>> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 8 {
            return None;
        }
        (0..n).map(|_| self.u64()).collect()
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse(t: RecordType, body: &[u8]) -> Option<Record> {
    let mut b = Body(body);
    let r = match t {
        RecordType::Crc => Record::Crc(b.u32()?),
        RecordType::Metadata => Record::Metadata(Metadata {
            member_id: b.u64()?,
            cluster_id: b.u64()?,
        }),
        RecordType::Entry => {
            let (index, term, entry_type) = (b.u64()?, b.u64()?, b.u8()?);
            let data = b.0.to_vec();
            b.0 = &[];
            Record::Entry(Entry {
                index,
                term,
                entry_type,
                data,
            })
        }
        RecordType::State => Record::State(HardState {
            term: b.u64()?,
            vote: b.u64()?,
            commit: b.u64()?,
        }),
        RecordType::Snapshot => {
            let (index, term) = (b.u64()?, b.u64()?);
            let conf_state = ConfState {
                voters: b.list()?,
                learners: b.list()?,
                voters_outgoing: b.list()?,
                learners_next: b.list()?,
                auto_leave: b.u8()? != 0,
            };
            Record::Snapshot(SnapshotMark {
                index,
                term,
                conf_state,
            })
        }
    };
    b.done().then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_chain() {
        let recs = vec![
            Record::Crc(7),
            Record::Metadata(Metadata {
                member_id: 1,
                cluster_id: 2,
            }),
            Record::Entry(Entry {
                index: 5,
                term: 2,
                entry_type: ENTRY_NORMAL,
                data: b"hello".to_vec(),
            }),
            Record::State(HardState {
                term: 2,
                vote: 1,
                commit: 5,
            }),
            Record::Snapshot(SnapshotMark {
                index: 4,
                term: 1,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![9],
                    auto_leave: true,
                    ..Default::default()
                },
            }),
        ];
        let mut buf = Vec::new();
        let mut crc = 7;
        for r in &recs {
            crc = r.encode(crc, &mut buf);
            assert_eq!(buf.len() % 8, 0);
        }
        let (mut off, mut prev) = (0, 7);
        for r in &recs {
            match decode(&buf, off, prev) {
                Decoded::Record(got, c, len) => {
                    assert_eq!(&got, r);
                    prev = c;
                    off += len;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(prev, crc);
        assert_eq!(decode(&buf, off, prev), Decoded::End);
        // A wrong chain value fails the crc; a flipped length fails its check.
        assert!(matches!(
            decode(&buf, 0, 8),
            Decoded::Bad { torn: false, .. }
        ));
        buf[1] ^= 1;
        assert!(matches!(
            decode(&buf, 0, 7),
            Decoded::Bad { torn: false, .. }
        ));
    }
}
