//! A single-file, copy-on-write B+tree with nested buckets.
//!
//! ```text
//! db        open / recover / close, beginning transactions
//! state     what a file's handle and transactions share: snapshot,
//!           writer hand-off, reader registry, poisoning, growth
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
//! Only the API is public (re-exported below, as redb does); `inspect` stays
//! a module of its own for the tools' page-level views.
//!
//! Guarantees: a commit is durable when `commit` returns (one fdatasync);
//! a crash at any instant leaves the last committed state readable; pages are
//! checksummed and verified on first read and by `check`; corrupt data is an
//! error naming the page.
//!
//! ```
//! use strata_engine::btree::{Database, Options, WriteBucket};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
//! let mut tx = db.begin_write().unwrap();
//! let b = tx.create_bucket(WriteBucket::ROOT, b"key").unwrap();
//! tx.put(b, b"foo", b"bar").unwrap();
//! tx.commit().unwrap();
//! let rx = db.begin_read();
//! let b = rx.bucket(rx.root(), b"key").unwrap().unwrap();
//! assert_eq!(rx.get(b, b"foo").unwrap(), Some(&b"bar"[..]));
//! ```

mod check;
mod compact;
mod db;
pub(crate) mod freelist;
pub mod inspect;
mod io;
pub(crate) mod meta;
mod mmap;
mod node;
pub(crate) mod page;
mod read;
mod state;
mod tree;
mod walk;
mod write;

pub use check::{check, stats, Stats};
pub use compact::{compact, compact_snapshot};
pub use db::{Database, Info, Options, DEFAULT_PAGE_SIZE};
pub use io::{FileIo, StorageIo};
pub use read::{ReadBucket, ReadTxn};
pub use state::{MAX_KEY_SIZE, MAX_VALUE_SIZE};
pub use tree::{Cursor, Entry};
pub use write::{WriteBucket, WriteTxn};
