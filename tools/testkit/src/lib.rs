//! Test support shared by the server's tests, the tools' tests and the
//! fault harness, so that each exists once:
//! - [`ports`]: free loopback ports below the ephemeral range, never
//!   20000-20100 (etcd's e2e harness) and never twice in one process;
//! - [`process`]: `strata` ([`Server`]) and real etcd ([`Etcd`]) as child
//!   processes in temp dirs, `etcdctl`, [`wait_for`];
//! - [`cluster`]: the cluster runner: N `strata` processes, every peer
//!   link through a [`proxy`] the test controls (partitions, loss,
//!   delays), optionally under the fault shim for power losses
//!   ([`powerloss`]) and clock steps;
//! - [`inprocess`]: a member inside the test's process;
//! - [`clients`]: plain HTTP GETs and raw gRPC calls;
//! - [`linearizable`]: the linearizability checker for recorded histories
//!   (the fault harness's, the simulation's and the cluster tests');
//! - [`sim`]: the deterministic simulation of three members in one
//!   process;
//! - [`one_cluster_at_a_time`]: the turn tests take before starting
//!   several members (two clusters at once overload a 2-core machine).
//!
//! Every process started here is killed on drop; temp dirs are removed.
#![allow(clippy::unwrap_used)]

pub mod clients;
pub mod cluster;
pub mod inprocess;
pub mod linearizable;
pub mod ports;
pub mod powerloss;
pub mod process;
pub mod proxy;
pub mod sim;

pub use clients::{grpc_unary, http_get, login, put_with_token, set_up_auth};
pub use ports::free_ports;
pub use process::{
    etcdctl, etcdctl_err, etcdctl_ok, last_error_line, strata_bin, tool, wait_for, Etcd, Server,
    TEST_WAL_SEGMENT_SIZE,
};

use std::sync::{Mutex, MutexGuard};

/// Holds the turn of a test that starts several members until dropped; a
/// test that failed holding it does not block the next.
pub fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}
