//! The cluster version, the cluster's downgrade job and the storage
//! version (etcd 3.6's Maintenance.Downgrade and storage schema).
//!
//! Invariants:
//! - The cluster version is the binary's ([`crate::version::CLUSTER_VERSION`])
//!   unless a downgrade job is enabled; then it is the job's target, one
//!   minor below (etcd's monitor lowers it likewise once a job is on).
//! - A job is enabled and cancelled through raft (`DowngradeInfoSet`,
//!   etcd's entry). Applying one writes, in the entry's own transaction,
//!   the cluster bucket's `downgrade` key (etcd's JSON,
//!   `{"target-version":"3.5.0","enabled":true}`) and, while a job is on,
//!   the `clusterVersion` key (its target; a cancel removes it): the
//!   replicated state depends only on the entry and the state before it,
//!   never on the binary applying it. The same transaction moves the
//!   storage version, which is the member's own.
//! - The storage version (meta `storageVersion`, `X.Y.0`, as etcd writes
//!   it) is the cluster version's major.minor; etcd 3.5's schema has none
//!   (the key came with 3.6's). A member settles it when it opens its db
//!   and when the cluster version changes. It is each member's own fact,
//!   left out of the whole-state hash (members may run different binaries
//!   during an upgrade).
//! - This binary knows the schemas of 3.5 to [`NEWEST_KNOWN`]; a db whose
//!   storage version is newer is refused at open, naming the way back
//!   (`strata-util migrate` of the binary that wrote it).
//!
//! Strata members all run one binary, so a job never completes by itself
//! as etcd's does when every member runs the older etcd: it stays enabled
//! (cluster version at the target, storage migrated) until cancelled.

use std::sync::RwLock;

use strata_engine::backend::{Bucket, ReadView};
use strata_proto::etcdserverpb as pb;

use crate::errors::EtcdError;

/// Meta key of the storage version (etcd's `MetaStorageVersionName`).
pub const STORAGE_VERSION_KEY: &[u8] = b"storageVersion";
/// Cluster bucket key of the downgrade job (etcd's `downgrade`).
pub const DOWNGRADE_KEY: &[u8] = b"downgrade";
/// Cluster bucket key of the cluster version (etcd's `clusterVersion`).
pub const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";

/// The oldest storage schema (etcd 3.5's: no storage version recorded).
pub const OLDEST_KNOWN: Minor = Minor(3, 5);
/// The newest storage schema this binary can read and migrate.
pub const NEWEST_KNOWN: Minor = Minor(3, 7);

/// A major.minor version (what cluster and storage versions keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minor(pub u64, pub u64);

impl Minor {
    /// `X.Y.0`, as etcd prints cluster and storage versions.
    pub fn full(self) -> String {
        format!("{}.{}.0", self.0, self.1)
    }

    /// `X.Y`, as etcd's DowngradeResponse carries the cluster version.
    pub fn short(self) -> String {
        format!("{}.{}", self.0, self.1)
    }

    /// A semantic version's major.minor (`3.6.14` is 3.6).
    pub fn of_semver(v: &str) -> Option<Minor> {
        semver::Version::parse(v)
            .ok()
            .map(|v| Minor(v.major, v.minor))
    }
}

impl std::fmt::Display for Minor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

/// The binary's cluster version.
pub fn binary() -> Minor {
    Minor::of_semver(crate::version::CLUSTER_VERSION).unwrap_or(OLDEST_KNOWN)
}

/// etcd's convertToClusterVersion: a semantic version, or `X.Y`, kept as
/// major.minor.
pub fn parse_target(v: &str) -> Result<Minor, EtcdError> {
    Minor::of_semver(v)
        .or_else(|| Minor::of_semver(&format!("{v}.0")))
        .ok_or(EtcdError::WrongDowngradeVersionFormat)
}

/// A db's storage version (None: 3.5's schema, which records none).
pub fn storage_version(view: &ReadView) -> anyhow::Result<Option<Minor>> {
    let Some(v) = view.get(Bucket::Meta, STORAGE_VERSION_KEY)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&v);
    Minor::of_semver(&text)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("meta {STORAGE_VERSION_KEY:?} is {text:?}, not a version"))
}

/// Refuses a db written by a newer schema than this binary knows.
pub fn check_known(view: &ReadView) -> anyhow::Result<()> {
    if let Some(v) = storage_version(view)? {
        if v > NEWEST_KNOWN {
            anyhow::bail!(
                "the data dir's storage version {} is newer than this binary knows ({} to {}): \
                 run the binary that wrote it, or migrate it down with that binary's \
                 strata-util migrate --data-dir <dir> --target-version {}",
                v.full(),
                OLDEST_KNOWN,
                NEWEST_KNOWN,
                binary()
            );
        }
    }
    Ok(())
}

/// What a batch needs to move the storage version to `to`: 3.5's schema
/// has no key; 3.6 and later record `X.Y.0`. (No other field differs
/// between the schemas this binary knows.)
pub fn storage_change(to: Minor) -> Option<Vec<u8>> {
    (to > OLDEST_KNOWN).then(|| to.full().into_bytes())
}

/// etcd's JSON of a downgrade job (DowngradeInfo with its json tags).
pub fn downgrade_json(target: Option<Minor>) -> String {
    format!(
        r#"{{"target-version":"{}","enabled":{}}}"#,
        target.map(Minor::full).unwrap_or_default(),
        target.is_some()
    )
}

/// The downgrade job a cluster bucket holds (None: none enabled).
fn read_downgrade(view: &ReadView) -> anyhow::Result<Option<Minor>> {
    let Some(v) = view.get(Bucket::Cluster, DOWNGRADE_KEY)? else {
        return Ok(None);
    };
    let j: serde_json::Value = serde_json::from_slice(&v)
        .map_err(|e| anyhow::anyhow!("cluster {DOWNGRADE_KEY:?} is not JSON: {e}"))?;
    if j.get("enabled").and_then(serde_json::Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let target = j
        .get("target-version")
        .and_then(serde_json::Value::as_str)
        .and_then(Minor::of_semver)
        .ok_or_else(|| anyhow::anyhow!("cluster {DOWNGRADE_KEY:?} has no target version"))?;
    Ok(Some(target))
}

/// The downgrade job as the member applied it.
#[derive(Default)]
pub struct Versions {
    downgrade: RwLock<Option<Minor>>,
}

impl Versions {
    /// The enabled job's target, if any.
    pub fn downgrade(&self) -> Option<Minor> {
        *self.downgrade.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_downgrade(&self, target: Option<Minor>) {
        *self.downgrade.write().unwrap_or_else(|e| e.into_inner()) = target;
    }

    /// The cluster version: the job's target while one is enabled.
    pub fn cluster(&self) -> Minor {
        self.downgrade().unwrap_or_else(binary)
    }

    /// Status's `downgradeInfo`.
    pub fn downgrade_info(&self) -> pb::DowngradeInfo {
        let t = self.downgrade();
        pb::DowngradeInfo {
            enabled: t.is_some(),
            target_version: t.map(Minor::full).unwrap_or_default(),
        }
    }

    /// Reads the job from the db (open, snapshot install).
    pub fn load(&self, view: &ReadView) -> anyhow::Result<()> {
        self.set_downgrade(read_downgrade(view)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_etcds_convert_to_cluster_version() {
        assert_eq!(parse_target("3.5"), Ok(Minor(3, 5)));
        assert_eq!(parse_target("3.5.0"), Ok(Minor(3, 5)));
        assert_eq!(parse_target("3.5.17"), Ok(Minor(3, 5)));
        assert_eq!(parse_target("3.6.0-rc.1"), Ok(Minor(3, 6)));
        for bad in ["", "3", "x.y", "3.5.0.1", "v3.5"] {
            assert_eq!(
                parse_target(bad),
                Err(EtcdError::WrongDowngradeVersionFormat),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn storage_versions_are_written_as_etcd_writes_them() {
        assert_eq!(storage_change(Minor(3, 5)), None);
        assert_eq!(storage_change(Minor(3, 6)), Some(b"3.6.0".to_vec()));
        assert_eq!(
            downgrade_json(Some(Minor(3, 5))),
            r#"{"target-version":"3.5.0","enabled":true}"#
        );
        assert_eq!(
            downgrade_json(None),
            r#"{"target-version":"","enabled":false}"#
        );
    }
}
