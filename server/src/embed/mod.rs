//! Starting a member from the outside: [`config`] (etcd's flags, their
//! `ETCD_*` twins and the config file), [`logging`] (etcd's zap format),
//! [`restore`] (a backup into a new member's data dir), [`serve`] (the
//! member wired to its listeners: the server from the flags'
//! [`crate::server::ServerConfig`], the front end's services on each
//! listener). `main.rs` calls [`serve::run`].
//!
//! May use every layer. Nothing else names it but the binary and the tests.

pub mod config;
pub mod logging;
pub mod restore;
pub mod serve;
