//! The read-only memory map of the database file. The only module of the
//! engine with `unsafe` code.
//!
//! Invariants that make the map sound to read as `&[u8]`:
//! - the file is locked exclusively (flock, through fs4) by this process, so no other process
//!   writes it while it is mapped;
//! - within the process, the writer only writes pages that no reader can reach
//!   (copy-on-write, and freed pages are reused only once no open reader's
//!   snapshot contains them), so bytes a reader looks at never change under it;
//! - the file is never shortened while open, and readers only touch pages
//!   below the committed page count, which lies inside the file; the map may
//!   extend past the end of the file so that growing the file rarely needs a
//!   new map.
//!
//! A map is never replaced in place: growth makes a new [`Mapping`] and old
//! readers keep theirs (each holds an `Arc`), so readers never wait for a
//! remap.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions};

pub struct Mapping {
    map: Mmap,
    /// One bit per page: its checksum and structure were verified since it
    /// was last written. Lets reads verify every page once, not every time.
    verified: Box<[AtomicU64]>,
    page_size: usize,
}

impl Mapping {
    pub fn new(file: &File, len: usize, page_size: usize) -> io::Result<Mapping> {
        // SAFETY: see the module invariants: no other process writes the file
        // (exclusive lock), this process never writes a page a reader can
        // reach, and never shortens the file while mapped.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        // No readahead: B+tree reads are random, and readahead builds large
        // page-cache folios, so that each later 4 KiB page write dirties (and
        // writeback writes) a whole folio (bbolt advises the same).
        map.advise(memmap2::Advice::Random)?;
        let pages = len / page_size;
        let verified = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(Mapping {
            map,
            verified,
            page_size,
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The bytes of `pages` pages starting at `pgid`, if inside the map.
    pub fn pages(&self, pgid: u64, pages: u64) -> Option<&[u8]> {
        let start = usize::try_from(pgid).ok()?.checked_mul(self.page_size)?;
        let len = usize::try_from(pages).ok()?.checked_mul(self.page_size)?;
        self.map.get(start..start.checked_add(len)?)
    }

    pub fn is_verified(&self, pgid: u64) -> bool {
        let i = pgid as usize;
        self.verified
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    pub fn set_verified(&self, pgid: u64) {
        let i = pgid as usize;
        if let Some(w) = self.verified.get(i / 64) {
            w.fetch_or(1 << (i % 64), Ordering::AcqRel);
        }
    }

    pub fn clear_verified(&self, pgid: u64) {
        let i = pgid as usize;
        if let Some(w) = self.verified.get(i / 64) {
            w.fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        }
    }
}
