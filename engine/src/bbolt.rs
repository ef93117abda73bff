//! bbolt's file format, written and read, so that a Strata backup is the
//! file etcd's tools expect: `etcdctl snapshot status` and `snapshot
//! restore` (and `bbolt` itself) open what Strata's Maintenance/Snapshot
//! streams, and Strata's tools read what etcd's does.
//!
//! Format (bbolt's page.go, db.go; all integers little-endian):
//! - pages of `page_size` bytes; page `i` starts at `i * page_size`; a node
//!   larger than a page runs over `overflow` more pages;
//! - page header (16 bytes): `id u64, flags u16, count u16, overflow u32`;
//!   flags 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist;
//! - pages 0 and 1: metas after the header: `magic u32 = 0xED0CDAED,
//!   version u32 = 2, page_size u32, flags u32, root bucket {root u64,
//!   sequence u64}, freelist u64, pgid u64 (pages in use), txid u64,
//!   checksum u64` (FNV-1a 64 of the 56 bytes before it);
//! - leaf elements (16 bytes each, after the header): `flags u32, pos u32,
//!   ksize u32, vsize u32`, `pos` counted from the element to its key,
//!   the value right after the key; flag 0x01 marks a bucket, whose value
//!   is `{root u64, sequence u64}` (root 0: an inline bucket follows);
//! - branch elements: `pos u32, ksize u32, pgid u64`, the key being the
//!   first key under that child;
//! - freelist page: `count` page ids (u64).
//!
//! The writer lays the file out as a fresh, compacted bbolt file: metas,
//! an empty freelist at page 2, then each bucket's tree bottom-up (leaves
//! packed to a page, branches above them), then the root bucket's leaf;
//! every page is reachable exactly once, as `bbolt check` wants. Every
//! bucket gets its own root page (no inline buckets).

use std::io::{Seek, SeekFrom, Write};

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const BUCKET_FLAG: u32 = 0x01;
/// bbolt's page size on the machines etcd runs on.
pub const PAGE_SIZE: usize = 4096;

fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes a bbolt file: [`BoltWriter::bucket`] for each top-level bucket
/// (keys ascending), then [`BoltWriter::finish`].
pub struct BoltWriter<W: Write + Seek> {
    out: W,
    page_size: usize,
    /// The next free page id.
    next: u64,
    /// (bucket name, root page) of the buckets written.
    buckets: Vec<(Vec<u8>, u64)>,
}

impl<W: Write + Seek> BoltWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<BoltWriter<W>> {
        let page_size = PAGE_SIZE;
        // Pages 0 and 1 (metas) are written last; page 2 is the freelist.
        out.seek(SeekFrom::Start(2 * page_size as u64))?;
        let mut w = BoltWriter {
            out,
            page_size,
            next: 2,
            buckets: Vec::new(),
        };
        w.node(FREELIST, 0, &[])?;
        Ok(w)
    }

    /// Writes one node (header + body) at the next page; returns its id.
    fn node(&mut self, flags: u16, count: usize, body: &[u8]) -> std::io::Result<u64> {
        let id = self.next;
        let len = HEADER + body.len();
        let pages = len.div_ceil(self.page_size).max(1);
        let mut buf = Vec::with_capacity(pages * self.page_size);
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(&flags.to_le_bytes());
        let count = u16::try_from(count)
            .map_err(|_| std::io::Error::other("more than 65535 elements in a bbolt page"))?;
        buf.extend_from_slice(&count.to_le_bytes());
        buf.extend_from_slice(&((pages - 1) as u32).to_le_bytes());
        buf.extend_from_slice(body);
        buf.resize(pages * self.page_size, 0);
        self.out.seek(SeekFrom::Start(id * self.page_size as u64))?;
        self.out.write_all(&buf)?;
        self.next += pages as u64;
        Ok(id)
    }

    /// A leaf of `items` (flags, key, value).
    fn leaf(&mut self, items: &[(u32, Vec<u8>, Vec<u8>)]) -> std::io::Result<u64> {
        let mut elems = Vec::with_capacity(items.len() * ELEMENT);
        let mut data = Vec::new();
        for (i, (flags, k, v)) in items.iter().enumerate() {
            // From this element to its key: the rest of the element array,
            // then the data before it.
            let pos = (items.len() - i) * ELEMENT + data.len();
            elems.extend_from_slice(&flags.to_le_bytes());
            elems.extend_from_slice(&(pos as u32).to_le_bytes());
            elems.extend_from_slice(&(k.len() as u32).to_le_bytes());
            elems.extend_from_slice(&(v.len() as u32).to_le_bytes());
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        elems.extend_from_slice(&data);
        self.node(LEAF, items.len(), &elems)
    }

    /// A branch over `children` (first key, page).
    fn branch(&mut self, children: &[(Vec<u8>, u64)]) -> std::io::Result<u64> {
        let mut elems = Vec::with_capacity(children.len() * ELEMENT);
        let mut data = Vec::new();
        for (i, (k, pgid)) in children.iter().enumerate() {
            let pos = (children.len() - i) * ELEMENT + data.len();
            elems.extend_from_slice(&(pos as u32).to_le_bytes());
            elems.extend_from_slice(&(k.len() as u32).to_le_bytes());
            elems.extend_from_slice(&pgid.to_le_bytes());
            data.extend_from_slice(k);
        }
        elems.extend_from_slice(&data);
        self.node(BRANCH, children.len(), &elems)
    }

    /// Writes the tree of one bucket from its entries in ascending key
    /// order; returns its root page.
    fn tree<E>(
        &mut self,
        entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), E>>,
    ) -> Result<u64, E>
    where
        E: From<std::io::Error>,
    {
        let limit = self.page_size - HEADER;
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut items: Vec<(u32, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0;
        for e in entries {
            let (k, v) = e?;
            let add = ELEMENT + k.len() + v.len();
            if !items.is_empty() && size + add > limit {
                let first = items[0].1.clone();
                level.push((first, self.leaf(&items)?));
                items.clear();
                size = 0;
            }
            size += add;
            items.push((0, k, v));
        }
        if !items.is_empty() || level.is_empty() {
            let first = items.first().map(|i| i.1.clone()).unwrap_or_default();
            level.push((first, self.leaf(&items)?));
        }
        while level.len() > 1 {
            let mut up = Vec::new();
            let mut group: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut size = 0;
            for (k, pgid) in level {
                let add = ELEMENT + k.len();
                if !group.is_empty() && size + add > limit {
                    let first = group[0].0.clone();
                    up.push((first, self.branch(&group)?));
                    group.clear();
                    size = 0;
                }
                size += add;
                group.push((k, pgid));
            }
            let first = group[0].0.clone();
            up.push((first, self.branch(&group)?));
            level = up;
        }
        Ok(level[0].1)
    }

    /// Writes a top-level bucket.
    pub fn bucket<E>(
        &mut self,
        name: &[u8],
        entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), E>>,
    ) -> Result<(), E>
    where
        E: From<std::io::Error>,
    {
        let root = self.tree(entries)?;
        self.buckets.push((name.to_vec(), root));
        Ok(())
    }

    /// Writes the root bucket and the metas; returns the output and the
    /// file's length.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let items: Vec<(u32, Vec<u8>, Vec<u8>)> = buckets
            .into_iter()
            .map(|(name, root)| {
                let mut v = root.to_le_bytes().to_vec();
                v.extend_from_slice(&0u64.to_le_bytes());
                (BUCKET_FLAG, name, v)
            })
            .collect();
        let root = self.leaf(&items)?;
        for (slot, txid) in [(0u64, 0u64), (1, 1)] {
            let mut m = Vec::with_capacity(64);
            m.extend_from_slice(&MAGIC.to_le_bytes());
            m.extend_from_slice(&VERSION.to_le_bytes());
            m.extend_from_slice(&(self.page_size as u32).to_le_bytes());
            m.extend_from_slice(&0u32.to_le_bytes());
            m.extend_from_slice(&root.to_le_bytes());
            m.extend_from_slice(&0u64.to_le_bytes());
            m.extend_from_slice(&2u64.to_le_bytes());
            m.extend_from_slice(&self.next.to_le_bytes());
            m.extend_from_slice(&txid.to_le_bytes());
            let sum = fnv64a(&m);
            m.extend_from_slice(&sum.to_le_bytes());
            let mut page = Vec::with_capacity(self.page_size);
            page.extend_from_slice(&slot.to_le_bytes());
            page.extend_from_slice(&META.to_le_bytes());
            page.extend_from_slice(&0u16.to_le_bytes());
            page.extend_from_slice(&0u32.to_le_bytes());
            page.extend_from_slice(&m);
            page.resize(self.page_size, 0);
            self.out
                .seek(SeekFrom::Start(slot * self.page_size as u64))?;
            self.out.write_all(&page)?;
        }
        self.out.flush()?;
        let len = self.next * self.page_size as u64;
        Ok((self.out, len))
    }
}

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A bbolt file read whole: each top-level bucket's entries in key order.
#[derive(Debug, Default)]
pub struct BoltFile {
    pub buckets: Vec<(Vec<u8>, Vec<Entry>)>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Why a file is not a bbolt file Strata can read, with the offset.
#[derive(Debug, thiserror::Error)]
#[error("not a readable bbolt file: {what} (at byte {offset})")]
pub struct BoltError {
    pub what: String,
    pub offset: u64,
}

fn bad(what: impl Into<String>, offset: usize) -> BoltError {
    BoltError {
        what: what.into(),
        offset: offset as u64,
    }
}

struct Reader<'a> {
    file: &'a [u8],
    page_size: usize,
    pages: u64,
    /// Pages visited, against loops.
    seen: std::collections::HashSet<u64>,
}

impl Reader<'_> {
    fn page(&mut self, id: u64) -> Result<(&[u8], u16, usize), BoltError> {
        if id < 2 || id >= self.pages {
            return Err(bad(format!("page {id} out of bounds"), 0));
        }
        if !self.seen.insert(id) {
            return Err(bad(format!("page {id} referenced twice"), 0));
        }
        let at = id as usize * self.page_size;
        let h = self
            .file
            .get(at..at + HEADER)
            .ok_or_else(|| bad("page past the end of the file", at))?;
        let flags = u16_at(h, 8).unwrap_or(0);
        let count = u16_at(h, 10).unwrap_or(0) as usize;
        let overflow = u32_at(h, 12).unwrap_or(0) as usize;
        let end = at + (overflow + 1) * self.page_size;
        let p = self
            .file
            .get(at..end)
            .ok_or_else(|| bad("page run past the end of the file", at))?;
        Ok((p, flags, count))
    }

    fn entries(&mut self, id: u64, out: &mut Vec<Entry>) -> Result<(), BoltError> {
        let base = id as usize * self.page_size;
        let (p, flags, count) = self.page(id)?;
        let p = p.to_vec();
        if flags & LEAF != 0 {
            for i in 0..count {
                let e = HEADER + i * ELEMENT;
                let (eflags, pos, ks, vs) = (
                    u32_at(&p, e),
                    u32_at(&p, e + 4),
                    u32_at(&p, e + 8),
                    u32_at(&p, e + 12),
                );
                let (Some(eflags), Some(pos), Some(ks), Some(vs)) = (eflags, pos, ks, vs) else {
                    return Err(bad("leaf element past its page", base + e));
                };
                let k = e + pos as usize;
                let kv = p
                    .get(k..k + ks as usize + vs as usize)
                    .ok_or_else(|| bad("leaf key or value past its page", base + e))?;
                if eflags & BUCKET_FLAG != 0 {
                    return Err(bad("nested buckets are not expected here", base + e));
                }
                let (key, value) = kv.split_at(ks as usize);
                out.push((key.to_vec(), value.to_vec()));
            }
            Ok(())
        } else if flags & BRANCH != 0 {
            for i in 0..count {
                let e = HEADER + i * ELEMENT;
                let child = u64_at(&p, e + 8)
                    .ok_or_else(|| bad("branch element past its page", base + e))?;
                self.entries(child, out)?;
            }
            Ok(())
        } else {
            Err(bad(
                format!("page {id} is neither a branch nor a leaf"),
                base,
            ))
        }
    }
}

impl BoltFile {
    /// Reads every top-level bucket of a bbolt file held in memory.
    pub fn read(file: &[u8]) -> Result<BoltFile, BoltError> {
        // A valid meta's (txid, root, pages, page size).
        let meta = |slot: usize, page_size: usize| -> Option<(u64, u64, u64, usize)> {
            let m = slot * page_size + HEADER;
            let body = file.get(m..m + 64)?;
            let valid = u32_at(body, 0)? == MAGIC
                && u32_at(body, 4)? == VERSION
                && u64_at(body, 56)? == fnv64a(&body[..56]);
            if !valid {
                return None;
            }
            Some((
                u64_at(body, 48)?,
                u64_at(body, 16)?,
                u64_at(body, 40)?,
                u32_at(body, 8)? as usize,
            ))
        };
        let first = meta(0, 0).or_else(|| meta(1, PAGE_SIZE));
        let page_size = first
            .map(|m| m.3)
            .ok_or_else(|| bad("no valid meta page (magic, version or checksum)", 0))?;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(bad(format!("page size {page_size}"), 24));
        }
        let (_, root, pages, _) = [meta(0, page_size), meta(1, page_size)]
            .into_iter()
            .flatten()
            .max_by_key(|m| m.0)
            .ok_or_else(|| bad("no valid meta page", 0))?;
        if pages as usize * page_size > file.len() {
            return Err(bad(
                format!(
                    "{pages} pages of {page_size} bytes do not fit in {} bytes",
                    file.len()
                ),
                0,
            ));
        }
        let mut r = Reader {
            file,
            page_size,
            pages,
            seen: Default::default(),
        };
        let (p, flags, count) = r.page(root)?;
        let p = p.to_vec();
        if flags & LEAF == 0 {
            return Err(bad(
                "the root bucket is not one leaf",
                root as usize * page_size,
            ));
        }
        let mut buckets = Vec::new();
        for i in 0..count {
            let e = HEADER + i * ELEMENT;
            let at = root as usize * page_size + e;
            let (Some(eflags), Some(pos), Some(ks)) =
                (u32_at(&p, e), u32_at(&p, e + 4), u32_at(&p, e + 8))
            else {
                return Err(bad("root element past its page", at));
            };
            if eflags & BUCKET_FLAG == 0 {
                return Err(bad("a key outside any bucket", at));
            }
            let k = e + pos as usize;
            let name = p
                .get(k..k + ks as usize)
                .ok_or_else(|| bad("bucket name past its page", at))?
                .to_vec();
            let broot = u64_at(&p, k + ks as usize)
                .ok_or_else(|| bad("bucket header past its page", at))?;
            let mut entries = Vec::new();
            if broot == 0 {
                // An inline bucket: a leaf page right after the header.
                let inline = k + ks as usize + 16;
                let count = u16_at(&p, inline + 10).unwrap_or(0) as usize;
                for j in 0..count {
                    let ie = inline + HEADER + j * ELEMENT;
                    let (Some(pos), Some(ks), Some(vs)) =
                        (u32_at(&p, ie + 4), u32_at(&p, ie + 8), u32_at(&p, ie + 12))
                    else {
                        return Err(bad("inline element past its page", at));
                    };
                    let kk = ie + pos as usize;
                    let kv = p
                        .get(kk..kk + ks as usize + vs as usize)
                        .ok_or_else(|| bad("inline key past its page", at))?;
                    let (key, value) = kv.split_at(ks as usize);
                    entries.push((key.to_vec(), value.to_vec()));
                }
            } else {
                r.entries(broot, &mut entries)?;
            }
            buckets.push((name, entries));
        }
        Ok(BoltFile { buckets })
    }

    pub fn bucket(&self, name: &[u8]) -> Option<&[Entry]> {
        self.buckets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_with_big_and_many_entries() {
        let mut w = BoltWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
        let many: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000u32)
            .map(|i| {
                (
                    format!("k{i:08}").into_bytes(),
                    vec![(i % 251) as u8; (i % 97) as usize],
                )
            })
            .collect();
        let big = vec![(b"big".to_vec(), vec![7u8; 3 * PAGE_SIZE + 5])];
        w.bucket::<std::io::Error>(b"key", many.clone().into_iter().map(Ok))
            .unwrap();
        w.bucket::<std::io::Error>(b"empty", std::iter::empty())
            .unwrap();
        w.bucket::<std::io::Error>(b"blob", big.clone().into_iter().map(Ok))
            .unwrap();
        let (out, len) = w.finish().unwrap();
        let bytes = out.into_inner();
        assert_eq!(bytes.len() as u64, len);
        assert_eq!(len % PAGE_SIZE as u64, 0);
        let f = BoltFile::read(&bytes).unwrap();
        let names: Vec<&[u8]> = f.buckets.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"blob"[..], b"empty", b"key"]);
        assert_eq!(f.bucket(b"key").unwrap(), many.as_slice());
        assert_eq!(f.bucket(b"blob").unwrap(), big.as_slice());
        assert!(f.bucket(b"empty").unwrap().is_empty());
    }

    #[test]
    fn damaged_metas_and_truncation_are_reported() {
        let mut w = BoltWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
        w.bucket::<std::io::Error>(b"a", [(b"k".to_vec(), b"v".to_vec())].into_iter().map(Ok))
            .unwrap();
        let (out, _) = w.finish().unwrap();
        let mut bytes = out.into_inner();
        let mut broken = bytes.clone();
        broken[HEADER + 20] ^= 1;
        broken[PAGE_SIZE + HEADER + 20] ^= 1;
        assert!(BoltFile::read(&broken).is_err());
        bytes.truncate(bytes.len() - PAGE_SIZE);
        let e = BoltFile::read(&bytes).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
        assert!(BoltFile::read(b"not a db").is_err());
    }
}
