//! The etcd versions strata answers with: the API level it serves
//! (clients, Kubernetes among them, parse it as semver to pick features)
//! and the cluster version every member agrees on.

/// What Status, `/version` and `etcd_server_version` report.
pub const ETCD_VERSION: &str = "3.5.17";

/// The cluster version (`/version`'s `etcdcluster`, `etcd_cluster_version`).
pub const CLUSTER_VERSION: &str = "3.5.0";
