//! Page-level views for the offline tools (`strata-util inspect`): what each
//! page holds, one page decoded, and the state of both metas. Read-only.

use super::db::{read_metas, Database};
use super::meta::{Meta, META_LEN};
use super::page::{checksum, decode_bucket, kind_name, Header, NodeView, PageId, FLAG_BUCKET};
use super::walk::walk;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageUse {
    Meta,
    Branch,
    Leaf,
    /// An extra page of a multi-page node that starts at the given page.
    Overflow(PageId),
    Freelist,
    Free,
    /// Neither reachable nor free (should not happen; `check` reports it).
    Unused,
}

#[derive(Debug, Clone, Copy)]
pub struct PageSummary {
    pub pgid: PageId,
    pub used: PageUse,
    /// Elements in the node (0 for other pages).
    pub count: u32,
    /// Extra pages in the node's run.
    pub overflow: u32,
    /// Nesting level of the bucket the node belongs to.
    pub bucket_level: usize,
}

/// Every page of the current snapshot and what it holds.
pub fn pages(db: &Database) -> Result<Vec<PageSummary>> {
    let rx = db.begin_read();
    let n = rx.page_count();
    let mut out: Vec<PageSummary> = (0..n)
        .map(|pgid| PageSummary {
            pgid,
            used: PageUse::Unused,
            count: 0,
            overflow: 0,
            bucket_level: 0,
        })
        .collect();
    out[0].used = PageUse::Meta;
    out[1].used = PageUse::Meta;
    let reader = rx.reader();
    let root = rx.root();
    walk(&reader, root.root, root.crc, &mut |v| {
        let s = &mut out[v.pgid as usize];
        s.used = if v.view.is_leaf() {
            PageUse::Leaf
        } else {
            PageUse::Branch
        };
        s.count = v.view.len() as u32;
        s.overflow = (v.pages - 1) as u32;
        s.bucket_level = v.bucket_level;
        for p in v.pgid + 1..v.pgid + v.pages {
            out[p as usize].used = PageUse::Overflow(v.pgid);
        }
        Ok(())
    })?;
    for (s, l) in db.free_runs() {
        for p in s..(s + l).min(n) {
            if out[p as usize].used == PageUse::Unused {
                out[p as usize].used = PageUse::Free;
            }
        }
    }
    if let Some(fl) = rx.freelist_page() {
        if let Ok(run) = reader.run(fl) {
            let pages = run.len() as u64 / db.info().page_size as u64;
            out[fl as usize].used = PageUse::Freelist;
            for p in fl + 1..fl + pages {
                out[p as usize].used = PageUse::Overflow(fl);
            }
        }
    }
    Ok(out)
}

/// One element of a decoded node.
#[derive(Debug, Clone)]
pub enum Element {
    Value {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Bucket {
        key: Vec<u8>,
        root: PageId,
    },
    Child {
        key: Vec<u8>,
        page: PageId,
        crc: u32,
    },
}

/// A page decoded for display.
#[derive(Debug, Clone)]
pub struct PageDump {
    pub pgid: PageId,
    pub header: Header,
    pub kind: &'static str,
    /// Whether the stored checksum matches the bytes.
    pub checksum_ok: bool,
    /// Why the node does not parse, if it does not.
    pub problem: Option<String>,
    pub elements: Vec<Element>,
    pub meta: Option<std::result::Result<Meta, String>>,
    /// The raw bytes of the first page.
    pub raw: Vec<u8>,
}

/// Decodes page `pgid` of the current snapshot, whatever it holds.
pub fn page(db: &Database, pgid: PageId) -> Result<PageDump> {
    let rx = db.begin_read();
    let reader = rx.reader();
    let ps = db.info().page_size;
    if pgid >= rx.page_count() {
        return Err(reader.corrupt(
            pgid,
            format!("no such page: the file has {}", rx.page_count()),
        ));
    }
    let first = reader
        .map
        .pages(pgid, 1)
        .ok_or_else(|| reader.corrupt(pgid, "page outside the map"))?;
    let header = Header::read(first).ok_or_else(|| reader.corrupt(pgid, "short page"))?;
    let mut dump = PageDump {
        pgid,
        header,
        kind: kind_name(header.kind),
        checksum_ok: false,
        problem: None,
        elements: Vec::new(),
        meta: None,
        raw: first.to_vec(),
    };
    if pgid < 2 {
        dump.checksum_ok = crc32fast::hash(&first[4..META_LEN]) == header.crc;
        dump.meta = Some(Meta::decode(first, pgid));
        return Ok(dump);
    }
    let run = match reader.run(pgid) {
        Ok(r) => r,
        Err(e) => {
            dump.problem = Some(e.to_string());
            return Ok(dump);
        }
    };
    dump.checksum_ok = checksum(run) == header.crc;
    let _ = ps;
    match NodeView::parse(run) {
        Ok(v) => {
            for i in 0..v.len() {
                let key = v.key(i).to_vec();
                dump.elements.push(if v.is_leaf() {
                    let (value, flags) = v.value(i);
                    match (flags & FLAG_BUCKET != 0, decode_bucket(value)) {
                        (true, Some((root, _))) => Element::Bucket { key, root },
                        _ => Element::Value {
                            key,
                            value: value.to_vec(),
                        },
                    }
                } else {
                    let (page, crc) = v.child(i);
                    Element::Child { key, page, crc }
                });
            }
        }
        Err(e) => dump.problem = Some(e),
    }
    Ok(dump)
}

/// Both meta slots as found on disk (valid ones, newest first) and the
/// reasons the others were rejected.
pub fn metas(db: &Database) -> (Vec<Meta>, Vec<String>) {
    let len = db.shared.io.len().unwrap_or(0);
    read_metas(&*db.shared.io, len)
}
