//! Applying a member's published attributes: its name and client URLs,
//! into the membership and the members bucket in the entry's own
//! transaction. A member the cluster does not have is ignored (it may
//! have been removed after it proposed).

use prost::Message;
use strata_engine::backend::Bucket;
use strata_proto::etcdserverpb as pb;

use super::{Applier, At, Outcome};
use crate::membership;
use crate::state::Applied;

impl Applier {
    pub(super) fn member_attr(&mut self, m: pb::MemberAttrRequest, at: At) -> Outcome {
        let mut tx = self.begin(at)?;
        if let Some(member) = self
            .membership
            .set_client_urls(m.member_id, &m.name, m.client_urls)
        {
            tx.put_bucket(
                Bucket::Members,
                &membership::key(member.id),
                &member.to_pb().encode_to_vec(),
            )?;
        }
        tx.end();
        Ok(Ok(Applied::Checkpoint))
    }
}
