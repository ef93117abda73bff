//! etcd's multi-version store over the backend, and the watchable store.
//!
//! - [`revision`]: revisions and their 17/18-byte key encoding;
//! - [`key_index`]: one key's generations (etcd's keyIndex semantics);
//! - [`index`]: the in-memory index of every key;
//! - [`interval`]: the interval tree matching events to range watchers;
//! - [`kv`]: the stored `mvccpb.KeyValue`;
//! - [`types`]: requests and responses shaped like etcd's KV API;
//! - [`store`]: open/restore, ranges, compaction, HashKV;
//! - [`range_read`]: a range read value by value from a pinned snapshot;
//! - [`statehash`]: a hash of the whole logical state, every bucket;
//! - [`write`]: the write primitive (one transaction, one revision);
//!   [`txn`]: etcd's Put, DeleteRange and Txn over it, and their checks;
//! - [`watch`]: watchers (synced, unsynced, victims) over the store.

pub mod index;
pub mod interval;
pub mod key_index;
pub mod kv;
pub mod range_read;
pub mod revision;
pub mod statehash;
pub mod store;
pub mod txn;
pub mod types;
pub mod watch;
pub mod write;

pub use statehash::{StateCapture, StateHash};
pub use store::{CompactionJob, Store};
pub use types::*;
pub use watch::{WatchRequest, WatchResponse, WatchableStore};
pub use write::TxnWrite;

pub use index::{End, TreeIndex};
pub use key_index::{Found, Generation, KeyIndex};
pub use kv::KeyValue;
pub use range_read::RangeRead;
pub use revision::Revision;
