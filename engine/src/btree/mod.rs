//! A single-file, copy-on-write B+tree with nested buckets.
//!
//! ```text
//! db        open / recover / close, the writer hand-off, reader registry
//! read      ReadTxn: a pinned snapshot
//! write     WriteTxn: dirty nodes, buckets, spill + commit
//! tree      node resolution, lookups, cursors (shared by both txn kinds)
//! node      dirty nodes and how they split
//! page      node format, checksums          meta   the two meta pages
//! freelist  free and pending page runs      walk   verified tree walks
//! mmap      the memory map (the only unsafe code)
//! io        the file behind a trait (for crash and failure tests)
//! check     full integrity check and statistics
//! compact   copy live data into a new file
//! inspect   page-level views for the tools
//! ```
//!
//! Guarantees: a commit is durable when `commit` returns (one fdatasync);
//! a crash at any instant leaves the last committed state readable; pages are
//! checksummed and verified on first read and by `check`; corrupt data is an
//! error naming the page.
//!
//! ```
//! use strata_engine::btree::{Database, Options, BucketId};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
//! let mut tx = db.begin_write().unwrap();
//! let b = tx.create_bucket(BucketId::ROOT, b"key").unwrap();
//! tx.put(b, b"foo", b"bar").unwrap();
//! tx.commit().unwrap();
//! let rx = db.begin_read();
//! let b = rx.bucket(rx.root(), b"key").unwrap().unwrap();
//! assert_eq!(rx.get(b, b"foo").unwrap(), Some(&b"bar"[..]));
//! ```

pub mod check;
pub mod compact;
pub mod db;
pub mod freelist;
pub mod inspect;
pub mod io;
pub mod meta;
mod mmap;
pub mod node;
pub mod page;
pub mod read;
pub mod tree;
pub mod walk;
pub mod write;

pub use check::{check, stats, Stats};
pub use compact::{compact, compact_snapshot};
pub use db::{Database, Info, Options, DEFAULT_PAGE_SIZE, MAX_KEY_SIZE, MAX_VALUE_SIZE};
pub use io::{FileIo, StorageIo};
pub use read::{Bucket, ReadTxn};
pub use tree::{Cursor, Entry};
pub use write::{BucketId, WriteTxn};
