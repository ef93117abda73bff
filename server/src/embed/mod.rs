//! Starting a member from the outside: [`config`] (etcd's flags, their
//! `ETCD_*` twins and the config file), [`logging`] (etcd's zap format),
//! [`restore`] (a backup into a new member's data dir). `main.rs` wires
//! these to [`crate::frontend::serve`].
//!
//! May use every layer. Nothing else names it but the binary and the tests.

pub mod config;
pub mod logging;
pub mod restore;
