//! The Auth service: enabling auth, logging in, users, roles and their
//! permissions.
//!
//! Changes go through raft and are checked when they apply (the root role
//! once auth is on); passwords are hashed here, by the member that
//! received them, and only the hash enters the log. Reads (user and role
//! get and list, status) are served locally after the read barrier, with
//! etcd's checks: the root role, or a user's own record, or a role the
//! user holds.

use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use crate::errors::EtcdError;
use crate::server::EtcdServer;
use crate::statemachine::auth::AuthInfo;
use crate::statemachine::state::{Applied, RaftRequest};

pub struct AuthService {
    pub srv: Arc<EtcdServer>,
}

/// What an applied auth change answers with: its header, the entry's
/// index and the auth revision after it.
struct Done {
    header: pb::ResponseHeader,
    index: u64,
    revision: u64,
}

impl AuthService {
    async fn change(&self, who: Option<&AuthInfo>, r: impl RaftRequest) -> Result<Done, Status> {
        match self.srv.propose_for(r, who).await? {
            Applied::Auth {
                header,
                index,
                revision,
            } => Ok(Done {
                header,
                index,
                revision,
            }),
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// Checks who may read auth records, after the read barrier.
    async fn reader<T>(&self, req: &Request<T>) -> Result<Option<AuthInfo>, Status> {
        let who = self.srv.who_of(req).await?;
        self.srv.read_barrier().await?;
        Ok(who)
    }

    /// Hashing costs tens of milliseconds of CPU: only for someone who may
    /// then make the change (checked again when it applies).
    async fn hash_for(&self, who: Option<&AuthInfo>, password: String) -> Result<String, Status> {
        self.srv.shared.auth.check_admin(who)?;
        Ok(self.srv.shared.auth.hash_password(password).await?)
    }
}

/// An auth change whose response is its header alone.
macro_rules! header_only {
    ($self:ident, $req:ident, $resp:ident) => {{
        let who = $self.srv.who_of(&$req).await?;
        let d = $self.change(who.as_ref(), $req.into_inner()).await?;
        Ok(Response::new(pb::$resp {
            header: Some(d.header),
        }))
    }};
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        header_only!(self, req, AuthEnableResponse)
    }

    async fn auth_disable(
        &self,
        req: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        header_only!(self, req, AuthDisableResponse)
    }

    async fn auth_status(
        &self,
        _req: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        self.srv.read_barrier().await?;
        let auth = &self.srv.shared.auth;
        Ok(Response::new(pb::AuthStatusResponse {
            header: Some(self.srv.header()),
            enabled: auth.enabled(),
            auth_revision: auth.revision(),
        }))
    }

    /// etcd's Authenticate: the password is checked here, then the login
    /// goes through raft (every member learns a simple token); if the
    /// auth store changed in between, the check is made again.
    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = req.into_inner();
        let auth = &self.srv.shared.auth;
        if !auth.enabled() {
            return Err(EtcdError::AuthNotEnabled.into());
        }
        self.srv.read_barrier().await?;
        for _ in 0..8 {
            let checked = auth.check_password(&r.name, r.password.clone()).await?;
            let letters = auth.tokens.new_prefix();
            let internal = pb::InternalAuthenticateRequest {
                name: r.name.clone(),
                password: String::new(),
                simple_token: letters.clone(),
            };
            let d = self.change(None, internal).await?;
            if d.revision != checked {
                tracing::info!("revision when password checked became stale; retrying");
                continue;
            }
            let token = auth
                .tokens
                .issue(&letters, d.index, &r.name, d.revision)
                .map_err(|e| Status::internal(format!("{e:#}")))?;
            return Ok(Response::new(pb::AuthenticateResponse {
                header: Some(d.header),
                token,
            }));
        }
        Err(EtcdError::AuthOldRevision.into())
    }

    async fn user_add(
        &self,
        req: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let mut r = req.into_inner();
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        r.hashed_password = if no_password {
            String::new()
        } else {
            self.hash_for(who.as_ref(), std::mem::take(&mut r.password))
                .await?
        };
        r.password.clear();
        let d = self.change(who.as_ref(), r).await?;
        Ok(Response::new(pb::AuthUserAddResponse {
            header: Some(d.header),
        }))
    }

    async fn user_get(
        &self,
        req: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let who = self.reader(&req).await?;
        let roles = self
            .srv
            .shared
            .auth
            .user_get(who.as_ref(), &req.get_ref().name)?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: Some(self.srv.header()),
            roles,
        }))
    }

    async fn user_list(
        &self,
        req: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let who = self.reader(&req).await?;
        let users = self.srv.shared.auth.user_list(who.as_ref())?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: Some(self.srv.header()),
            users,
        }))
    }

    async fn user_delete(
        &self,
        req: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        header_only!(self, req, AuthUserDeleteResponse)
    }

    async fn user_change_password(
        &self,
        req: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let mut r = req.into_inner();
        r.hashed_password = self
            .hash_for(who.as_ref(), std::mem::take(&mut r.password))
            .await?;
        let d = self.change(who.as_ref(), r).await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse {
            header: Some(d.header),
        }))
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        header_only!(self, req, AuthUserGrantRoleResponse)
    }

    async fn user_revoke_role(
        &self,
        req: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        header_only!(self, req, AuthUserRevokeRoleResponse)
    }

    async fn role_add(
        &self,
        req: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        header_only!(self, req, AuthRoleAddResponse)
    }

    async fn role_get(
        &self,
        req: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let who = self.reader(&req).await?;
        let perm = self
            .srv
            .shared
            .auth
            .role_get(who.as_ref(), &req.get_ref().role)?;
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: Some(self.srv.header()),
            perm,
        }))
    }

    async fn role_list(
        &self,
        req: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let who = self.reader(&req).await?;
        let roles = self.srv.shared.auth.role_list(who.as_ref())?;
        Ok(Response::new(pb::AuthRoleListResponse {
            header: Some(self.srv.header()),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        req: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        header_only!(self, req, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        header_only!(self, req, AuthRoleGrantPermissionResponse)
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        header_only!(self, req, AuthRoleRevokePermissionResponse)
    }
}
