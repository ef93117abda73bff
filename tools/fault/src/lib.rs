//! The fault harness: N real `strata` processes on loopback, every peer
//! link through a proxy the harness controls ([`proxy`]), clients that
//! record every operation and a watcher on every member ([`workload`]),
//! faults drawn from a seed ([`faults`]: kill -9, SIGSTOP, partitions,
//! one-way loss, delays, drops, crash points, a full disk, failing fsyncs,
//! power losses ([`powerloss`], through the `LD_PRELOAD` shim in
//! `tools/fault/shim`), wall-clock steps), and the checks of each history
//! ([`check`], [`linearizable`]).
//! [`run::run_seed`] is one run; the `strata-fault` binary runs many and
//! prints the table; [`sweep`] crashes a member at each crash point in
//! turn; [`scenario`] builds exact sequences a seed rarely draws; `server/tests/faults.rs` runs both, on a short budget, in CI.
//!
//! A real cluster is not deterministic: a seed fixes the faults' kinds,
//! order, members and durations and the clients' operations, not the
//! interleaving. The deterministic simulation
//! (`strata_testkit::sim`) covers what needs exact replay.

pub mod check;
pub mod faults;
pub mod run;
pub mod scenario;
pub mod sweep;
pub mod workload;

/// The cluster runner, its peer proxies, the power-loss replayer and the
/// linearizability checker live with the other test support
/// (`strata-testkit`), which the server's tests share.
pub use strata_testkit::{cluster, linearizable, powerloss, proxy};
