//! Depth-first walk over every node reachable from a root, nested buckets
//! included, verifying each against the checksum its parent recorded.
//! Used by recovery (to rebuild the freelist), by deleting a bucket, and by
//! the inspection tools.

use super::page::{decode_bucket, NodeView, PageId, FLAG_BUCKET};
use super::tree::PageReader;
use crate::error::Result;

/// One visited node.
pub struct Visited<'a> {
    pub pgid: PageId,
    /// Pages in its run.
    pub pages: u64,
    /// Nesting level of its bucket (top-level bucket tree = 0).
    pub bucket_level: usize,
    pub view: NodeView<'a>,
}

pub fn walk<'a>(
    reader: &PageReader<'a>,
    root: PageId,
    crc: u32,
    visit: &mut dyn FnMut(&Visited<'a>) -> Result<()>,
) -> Result<()> {
    let mut stack = vec![(root, crc, 0usize)];
    while let Some((pgid, crc, level)) = stack.pop() {
        let view = reader.node(pgid, crc)?;
        let pages = reader.run(pgid)?.len() as u64 / reader.map_page_size();
        visit(&Visited {
            pgid,
            pages,
            bucket_level: level,
            view,
        })?;
        for i in (0..view.len()).rev() {
            if view.is_leaf() {
                let (v, flags) = view.value(i);
                if flags & FLAG_BUCKET != 0 {
                    let (r, c) = decode_bucket(v)
                        .ok_or_else(|| reader.corrupt(pgid, "malformed bucket reference"))?;
                    stack.push((r, c, level + 1));
                }
            } else {
                let (child, c) = view.child(i);
                stack.push((child, c, level));
            }
        }
    }
    Ok(())
}
