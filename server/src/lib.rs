//! strata: a member serving etcd's v3 API.
//!
//! Folders are layers; each names what it may use, and imports run one way
//! (downwards in this list; `tools/scripts/module-cycles.py` checks it):
//!
//! - [`embed`]: flags and config file ([`embed::config`]), logging,
//!   restoring a backup, and [`run`]: the member from the flags, on its
//!   listeners;
//! - [`frontend`]: the gRPC services, the JSON gateway, `/health` and
//!   `/metrics`, the inbound peer service;
//! - [`server`]: the running member, every `impl EtcdServer`: bootstrap,
//!   propose-and-wait, reads, membership operations, joining, forwarding to
//!   the leader, leadership transfer, corruption checks, periodic duties,
//!   and the [`server::ServerConfig`] it runs with;
//! - [`transport`]: raft traffic and db snapshots between members
//!   ([`transport::peer`]), TLS for both ports ([`transport::tls`]);
//! - [`statemachine`]: committed entries applied to the store, the lessor,
//!   auth, the members list, whole-state hashes;
//! - [`raftnode`]: the raft Ready loop over our WAL and the ReadIndex
//!   barrier; knows nothing of etcd's requests;
//! - foundations used by every layer: [`errors`] (etcd's errors, in one
//!   place), [`metrics`] (etcd's metric names), [`version`], [`duration`]
//!   (Go's duration spelling), [`urls`] (URL flags checked as etcd checks
//!   them).
//!
//! `fuzzing` holds the bodies of the fuzz targets (fuzz/) for every parser
//! of untrusted bytes.
//!
//! [`run`] serves a member on a listener until a shutdown future completes
//! (tests bind 127.0.0.1:0 and stop it by completing the future).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod duration;
pub mod embed;
pub mod errors;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod raftnode;
pub mod server;
pub mod statemachine;
pub mod transport;
pub mod urls;
pub mod version;

pub use embed::config::Config;
pub use embed::serve::run;
pub use server::EtcdServer;
