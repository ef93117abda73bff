//! What clients and peers call: [`api`] (etcd's gRPC services),
//! [`gateway`] (the JSON gateway), [`http`] (`/health`, `/version`,
//! `/metrics`, host and CORS checks) and [`peer_service`] (the inbound side
//! of the peer transport); `embed::serve` puts them on listeners.
//!
//! May use every layer below: [`crate::server`] and what it is built on.
//! Nothing below names the front end.

pub mod api;
pub mod gateway;
pub mod http;
pub mod peer_service;
