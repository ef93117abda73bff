//! The state machine: what a committed entry does, and the state it does it
//! to. Every member applies the same entries to the same state and reaches
//! the same result (DESIGN.md: deterministic apply).
//!
//! - [`apply`]: committed entries into the MVCC store, one file per request
//!   family; [`meta`]: the consistent index, snapshot mark and conf state in
//!   the db's meta bucket;
//! - [`state`]: what the applier and the services share (store, lessor,
//!   alarms, waiters); [`statehash`]: whole-state hashes and the marks
//!   members compare them at;
//! - [`lease`]: the lessor; [`auth`]: users, roles, permissions, tokens;
//!   [`membership`]: the members list and its conf changes;
//! - [`convert`]: wire types to engine types; [`snapdir`]: received
//!   snapshot files and finishing an interrupted install.
//!
//! May use: the engine, [`crate::raftnode`] (its state machine seam),
//! [`crate::errors`], [`crate::metrics`]. Never the server, the transport
//! or the front end.

pub mod apply;
pub mod auth;
pub mod convert;
pub mod lease;
pub mod membership;
pub mod meta;
pub mod snapdir;
pub mod state;
pub mod statehash;
pub mod versions;
