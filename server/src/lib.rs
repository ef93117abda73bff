//! strata: a member serving etcd's v3 API.
//!
//! - [`config`]: etcd's flags and their `ETCD_*` twins;
//! - [`bootstrap`]: opening or creating the data dir, ids, restoring the
//!   lessor and alarms;
//! - [`server`]: the running member: propose-and-wait, the linearizable
//!   read barrier, the quota check, stop;
//! - [`corrupt`]: the initial corruption check against peers;
//! - [`duties`]: periodic work (lease expiry and checkpoints, auto
//!   compaction) and which members do it;
//! - [`raftnode`]: the raft Ready loop, its WAL-backed log and its seams
//!   (transport, ticks, state machine);
//! - [`apply`]: committed entries into the MVCC store, atomically with the
//!   consistent index, one file per request family;
//! - [`state`]: what the applier and the services share;
//! - [`statehash`]: whole-state hashes and the marks members compare them at;
//! - [`leadership`]: MoveLeader (raft's leader transfer);
//! - [`auth`]: users, roles, permissions, tokens, and who a request
//!   comes from;
//! - [`lease`]: the lessor; [`membership`]: the members and their URLs,
//!   membership changes, joining a running cluster;
//! - [`restore`]: backups (bbolt files) read, checked and restored into a
//!   new member's data dir;
//! - [`peer`]: raft traffic between members (transport and service),
//!   db snapshots to followers; [`snapdir`]: the received snapshot files
//!   and finishing an install a crash interrupted;
//! - [`serve`]: listeners and service registration; [`tls`]: TLS for
//!   listeners and peer connections, auto-TLS certificates;
//! - [`http`]: `/health`, `/version` and `/metrics` beside gRPC on the
//!   client port, with the host and CORS checks; [`gateway`]: the JSON
//!   gateway (`/v3/...`); [`metrics`]: etcd's metric names;
//! - [`logging`]: log lines in etcd's zap format; [`version`]: the
//!   versions reported;
//! - [`api`]: the gRPC services; [`errors`]: etcd's errors, in one place;
//!   [`convert`]: wire types to engine types.
//!
//! `fuzzing` holds the bodies of the fuzz targets (fuzz/) for every parser
//! of untrusted bytes.
//!
//! [`run`] serves a member on a listener until a shutdown future completes
//! (tests bind 127.0.0.1:0 and stop it by completing the future).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod apply;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod convert;
pub mod corrupt;
pub mod duties;
pub mod errors;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod http;
pub mod leadership;
pub mod lease;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod peer;
pub mod raftnode;
mod readindex;
pub mod restore;
pub mod serve;
pub mod server;
pub mod snapdir;
pub mod state;
pub mod statehash;
pub mod tls;
pub mod version;

pub use config::Config;
pub use serve::run;
pub use server::EtcdServer;
