//! The server's end-to-end tests, one binary (one link of the whole server
//! instead of one per file): real `strata` processes (and real etcd and
//! etcdctl, for differential tests) through `strata-testkit`.
//!
//! - [`auth`]: users, roles, tokens; [`client`]: the etcd-client crate;
//! - [`cluster`]: three members, kill -9 under load, corruption checks;
//! - [`differential`]: the same etcdctl sessions against etcd and strata;
//! - [`durability`]: kill -9 during writes; [`etcdctl`]: etcdctl 3.4/3.5;
//! - [`gateway`]: the JSON gateway and Python clients;
//! - [`lock_election`]: the concurrency services;
//! - [`membership`]: add, remove, promote, join; [`startup`]: flags and
//!   refusals at start; [`tls`]: certificates on both ports;
//! - [`range_stream`]: etcd 3.7's KV.RangeStream against Range.
//!
//! Tests that start several members take
//! `strata_testkit::one_cluster_at_a_time()` first.

mod auth;
mod client;
mod cluster;
mod differential;
mod downgrade;
mod durability;
mod etcdctl;
mod gateway;
mod lock_election;
mod membership;
mod range_stream;
mod startup;
mod tls;
