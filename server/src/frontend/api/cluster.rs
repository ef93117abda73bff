//! The Cluster service. MemberList answers from the membership; changes go
//! through raft ([`crate::server::members`]) and answer with the members
//! once this member applied them. Root only, once auth is on.

use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;
use crate::statemachine::state::Applied;

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

    /// etcd's cluster responses carry no revision.
    fn header(&self) -> pb::ResponseHeader {
        pb::ResponseHeader {
            revision: 0,
            ..self.srv.header()
        }
    }
}

/// The member added and the members after a change.
fn members_of(a: Applied) -> Result<(Option<pb::Member>, Vec<pb::Member>), Status> {
    match a {
        Applied::Members {
            member, members, ..
        } => Ok((member, members)),
        other => Err(Status::internal(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.srv.require_admin(&req).await?;
        let r = req.into_inner();
        let (member, members) = members_of(self.srv.add_member(r.peer_ur_ls, r.is_learner).await?)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.header()),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.srv.require_admin(&req).await?;
        let (_, members) = members_of(self.srv.remove_member(req.into_inner().id).await?)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.header()),
            members,
        }))
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let who = self.srv.require_admin(&req).await?;
        let r = req.into_inner();
        let (_, members) = members_of(
            self.srv
                .update_member(who.as_ref(), r.id, r.peer_ur_ls)
                .await?,
        )?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.header()),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        if req.get_ref().linearizable {
            self.srv.read_barrier().await?;
        }
        self.srv.require_user(&req).await?;
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
        let (_, members) = members_of(self.srv.promote_member(req.into_inner().id).await?)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.header()),
            members,
        }))
    }
}
