//! Strata's storage engine.
//!
//! - [`btree`]: a single-file, copy-on-write B+tree with nested buckets, one
//!   writer and any number of snapshot readers, checksummed pages and
//!   one-fdatasync commits. The file format is described in docs/format.md.
//!
//! - [`wal`]: the segmented, CRC-chained write-ahead log for raft's entries
//!   and hard state.
//! - [`backend`]: etcd's backend: named buckets, a batched write
//!   transaction, readers that see applied writes before they commit.
//! - [`mvcc`]: etcd's multi-version store: revisions, the in-memory key
//!   index, range/put/delete/txn, compaction, HashKV and the whole-state
//!   hash, and the watchable store.
//! - [`bbolt`]: etcd's backup format (bbolt files) read and written;
//!   [`crashpoint`]: named crash points for fault tests; [`error`]: the
//!   engine's errors.
//!
//! The engine knows nothing of raft or gRPC; the server builds on it.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backend;
pub mod bbolt;
pub mod btree;
pub mod crashpoint;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod fuzzing;
pub mod mvcc;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
