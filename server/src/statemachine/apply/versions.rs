//! Applying a downgrade job's change (etcd's `DowngradeInfoSet`): the job
//! (enabled with its target, or cancelled), the cluster version it sets
//! and the storage version that follows, in the entry's own transaction
//! (see [`crate::statemachine::versions`]). An entry whose target does not
//! parse changes nothing (the RPC checked it before proposing).

use strata_engine::backend::Bucket;
use strata_proto::etcdserverpb as pb;

use super::{Applier, At, Outcome};
use crate::statemachine::state::Applied;
use crate::statemachine::versions::{self as v, Minor};

impl Applier {
    pub(super) fn downgrade_info_set(&mut self, d: pb::DowngradeInfoSetRequest, at: At) -> Outcome {
        let target: Option<Minor> = if d.enabled {
            match v::parse_target(&d.ver) {
                Ok(t) => Some(t),
                Err(_) => {
                    self.begin(at)?.end();
                    return Ok(Ok(Applied::Checkpoint));
                }
            }
        } else {
            None
        };
        let cluster = target.unwrap_or_else(v::binary);
        let mut tx = self.begin(at)?;
        tx.put_bucket(
            Bucket::Cluster,
            v::DOWNGRADE_KEY,
            v::downgrade_json(target).as_bytes(),
        )?;
        // The replicated state holds only what the entry says: a job's
        // target, or no recorded cluster version once cancelled (each
        // member then runs at its binary's). The storage version, written
        // from the binary's, is the member's own (out of the state hash).
        match target {
            Some(t) => {
                tx.put_bucket(Bucket::Cluster, v::CLUSTER_VERSION_KEY, t.full().as_bytes())?
            }
            None => tx.delete_bucket(Bucket::Cluster, v::CLUSTER_VERSION_KEY)?,
        }
        match v::storage_change(cluster) {
            Some(sv) => tx.put_bucket(Bucket::Meta, v::STORAGE_VERSION_KEY, &sv)?,
            None => tx.delete_bucket(Bucket::Meta, v::STORAGE_VERSION_KEY)?,
        }
        tx.end();
        self.shared.versions.set_downgrade(target);
        match target {
            Some(t) => {
                tracing::info!(target = %t, "the cluster's downgrade job is enabled; cluster and storage version set to its target")
            }
            None => {
                tracing::info!(cluster = %cluster, "the cluster's downgrade job is cancelled; cluster and storage version back to the binary's")
            }
        }
        Ok(Ok(Applied::Checkpoint))
    }
}
