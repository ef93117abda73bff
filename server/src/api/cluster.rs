//! The Cluster service. One member for now: MemberList answers it; changes
//! to membership need peers and are refused as etcd refuses a change it
//! cannot make.

use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService {
    pub srv: Arc<EtcdServer>,
}

impl ClusterService {
    fn me(&self) -> pb::Member {
        let cfg = &self.srv.cfg;
        pb::Member {
            id: self.srv.member_id(),
            name: cfg.name.clone(),
            peer_ur_ls: self.srv.peer_urls.clone(),
            client_ur_ls: cfg
                .advertise_client_urls
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            is_learner: false,
        }
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
        _req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(self.refuse())
    }

    async fn member_remove(
        &self,
        _req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(self.refuse())
    }

    async fn member_update(
        &self,
        _req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
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
            members: vec![self.me()],
        }))
    }

    async fn member_promote(
        &self,
        _req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(Status::failed_precondition(
            "etcdserver: can only promote a learner member",
        ))
    }
}
