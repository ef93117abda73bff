//! etcd's multi-version store over the backend (work in progress).
//!
//! - [`revision`]: revisions and their 17/18-byte key encoding;
//! - [`key_index`]: one key's generations (etcd's keyIndex semantics);
//! - [`index`]: the in-memory index of every key;
//! - [`kv`]: the stored `mvccpb.KeyValue`.

pub mod index;
pub mod key_index;
pub mod kv;
pub mod revision;

pub use index::{End, TreeIndex};
pub use key_index::{Found, Generation, KeyIndex};
pub use kv::KeyValue;
pub use revision::Revision;
