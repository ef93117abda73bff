//! Bytes between members and to clients: [`peer`] (raft messages, db
//! snapshots and forwarded calls over the peer URLs) and [`tls`]
//! (certificates, verification and dialing for both ports, auto-TLS).
//!
//! May use: [`crate::raftnode`] (the messages it carries),
//! [`crate::statemachine`] (the members list it dials, the snapshot files),
//! [`crate::errors`], [`crate::metrics`]. Never the server or the front end:
//! what arrives is handed up through the seams in [`peer::snapshot`].

pub mod peer;
pub mod tls;
