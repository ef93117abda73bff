//! The Cluster service. MemberList answers from the membership; changes to
//! membership (issue: membership changes) are refused as etcd refuses a
//! change it cannot make.

use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService {
    pub srv: Arc<EtcdServer>,
}

impl ClusterService {
    /// Every member; this member's client URLs are its own flags until its
    /// published attributes are applied.
    fn members(&self) -> Vec<pb::Member> {
        let me = self.srv.member_id();
        self.srv
            .membership
            .list()
            .into_iter()
            .map(|m| {
                let mut out = m.to_pb();
                if m.id == me && out.client_ur_ls.is_empty() {
                    out.client_ur_ls = self.srv.client_urls();
                }
                out
            })
            .collect()
    }

    fn refuse(&self) -> Status {
        Status::failed_precondition(
            "etcdserver: re-configuration failed due to not enough started members",
        )
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.srv.require_admin(&req).await?;
        Err(self.refuse())
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.srv.require_admin(&req).await?;
        Err(self.refuse())
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.srv.require_admin(&req).await?;
        Err(self.refuse())
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.srv.read_barrier().await?;
        }
        // etcd's cluster responses carry no revision.
        let header = pb::ResponseHeader {
            revision: 0,
            ..self.srv.header()
        };
        Ok(Response::new(pb::MemberListResponse {
            header: Some(header),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.srv.require_admin(&req).await?;
        Err(Status::failed_precondition(
            "etcdserver: can only promote a learner member",
        ))
    }
}
