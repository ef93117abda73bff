//! Members talking to members over the peer URL (`--listen-peer-urls`):
//! [`transport`] sends raft messages (one long-lived stream per peer,
//! bounded queues, never blocking raft), [`crate::frontend::peer_service`] receives
//! them after checking cluster and sender (and answers lease calls
//! forwarded to the leader), [`snapshot`] streams db snapshots to followers behind the
//! retained log, [`client`] makes those calls, [`convert`] moves messages
//! between raft's
//! protobuf 2 structs and our prost description of the same wire format.

pub mod client;
pub mod convert;
pub mod snapshot;
pub mod transport;

pub use client::{PeerClients, MAX_FRAME};
pub use transport::PeerTransport;
