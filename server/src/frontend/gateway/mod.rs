//! The grpc-gateway JSON API on the client port, as etcd serves it:
//! `POST /v3/<service>/<method>` with a JSON request, answered in JSON
//! (conventions: [`json`]); `/v3beta/...` is the same API under 3.4's old
//! prefix. The paths are those of etcd's `google.api.http` annotations.
//!
//! Every call goes through the member's own gRPC router in-process
//! ([`call`]), as etcd's gateway is a gRPC client of its own member: the
//! same checks, errors and metrics as a gRPC client. etcd's gateway shares
//! one HTTP/2 connection, so `--max-concurrent-streams` caps the gateway's
//! calls in flight together; so it does here (a call beyond the cap waits).
//!
//! Streams: Watch and LeaseKeepAlive read any number of JSON values from
//! the request body as it arrives (the first bad one is the call's error,
//! a later one ends the requests) and answer `{"result":...}` lines;
//! Snapshot and Observe take one request and answer lines.

pub mod call;
pub mod json;

use axum::http;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_proto::etcdserverpb as pb;
use strata_proto::{v3electionpb as epb, v3lockpb as lpb};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Status;
use tower::ServiceExt;

/// What every gateway route shares.
struct Gateway {
    /// The member's gRPC services, with their layers.
    grpc: Router,
    /// Calls in flight (`--max-concurrent-streams`).
    streams: Arc<Semaphore>,
    /// The most bytes a request body may hold.
    body_limit: usize,
}

type Gw = Arc<Gateway>;

/// How a method's requests and answers travel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One request, one answer.
    Unary,
    /// One request, a stream of answers.
    ServerStream,
    /// Requests and answers both streamed.
    Bidi,
}

/// The gateway's routes, calling into `grpc`.
pub fn router(grpc: Router, max_streams: u32, body_limit: usize) -> Router {
    let gw = Arc::new(Gateway {
        grpc,
        streams: Arc::new(Semaphore::new(
            (max_streams as usize).min(Semaphore::MAX_PERMITS),
        )),
        body_limit,
    });
    let mut r = Router::new();
    macro_rules! route {
        ($shape:expr, $grpc:literal, $req:ty, $resp:ty, $($http:literal),+) => {
            for p in [$($http),+] {
                for prefix in ["/v3", "/v3beta"] {
                    r = r.route(
                        &format!("{prefix}{p}"),
                        post(|State(gw): State<Gw>, req: Request| {
                            handle::<$req, $resp>(gw, $shape, $grpc, req)
                        })
                        .fallback(|| async {
                            (http::StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
                        }),
                    );
                }
            }
        };
    }
    use Shape::{Bidi, ServerStream, Unary};
    route!(
        Unary,
        "/etcdserverpb.KV/Range",
        pb::RangeRequest,
        pb::RangeResponse,
        "/kv/range"
    );
    route!(
        Unary,
        "/etcdserverpb.KV/Put",
        pb::PutRequest,
        pb::PutResponse,
        "/kv/put"
    );
    route!(
        Unary,
        "/etcdserverpb.KV/DeleteRange",
        pb::DeleteRangeRequest,
        pb::DeleteRangeResponse,
        "/kv/deleterange"
    );
    route!(
        Unary,
        "/etcdserverpb.KV/Txn",
        pb::TxnRequest,
        pb::TxnResponse,
        "/kv/txn"
    );
    route!(
        Unary,
        "/etcdserverpb.KV/Compact",
        pb::CompactionRequest,
        pb::CompactionResponse,
        "/kv/compaction"
    );
    route!(
        Bidi,
        "/etcdserverpb.Watch/Watch",
        pb::WatchRequest,
        pb::WatchResponse,
        "/watch"
    );
    route!(
        Unary,
        "/etcdserverpb.Lease/LeaseGrant",
        pb::LeaseGrantRequest,
        pb::LeaseGrantResponse,
        "/lease/grant"
    );
    route!(
        Unary,
        "/etcdserverpb.Lease/LeaseRevoke",
        pb::LeaseRevokeRequest,
        pb::LeaseRevokeResponse,
        "/lease/revoke",
        "/kv/lease/revoke"
    );
    route!(
        Bidi,
        "/etcdserverpb.Lease/LeaseKeepAlive",
        pb::LeaseKeepAliveRequest,
        pb::LeaseKeepAliveResponse,
        "/lease/keepalive"
    );
    route!(
        Unary,
        "/etcdserverpb.Lease/LeaseTimeToLive",
        pb::LeaseTimeToLiveRequest,
        pb::LeaseTimeToLiveResponse,
        "/lease/timetolive",
        "/kv/lease/timetolive"
    );
    route!(
        Unary,
        "/etcdserverpb.Lease/LeaseLeases",
        pb::LeaseLeasesRequest,
        pb::LeaseLeasesResponse,
        "/lease/leases",
        "/kv/lease/leases"
    );
    route!(
        Unary,
        "/etcdserverpb.Cluster/MemberAdd",
        pb::MemberAddRequest,
        pb::MemberAddResponse,
        "/cluster/member/add"
    );
    route!(
        Unary,
        "/etcdserverpb.Cluster/MemberRemove",
        pb::MemberRemoveRequest,
        pb::MemberRemoveResponse,
        "/cluster/member/remove"
    );
    route!(
        Unary,
        "/etcdserverpb.Cluster/MemberUpdate",
        pb::MemberUpdateRequest,
        pb::MemberUpdateResponse,
        "/cluster/member/update"
    );
    route!(
        Unary,
        "/etcdserverpb.Cluster/MemberList",
        pb::MemberListRequest,
        pb::MemberListResponse,
        "/cluster/member/list"
    );
    route!(
        Unary,
        "/etcdserverpb.Cluster/MemberPromote",
        pb::MemberPromoteRequest,
        pb::MemberPromoteResponse,
        "/cluster/member/promote"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/Alarm",
        pb::AlarmRequest,
        pb::AlarmResponse,
        "/maintenance/alarm"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/Status",
        pb::StatusRequest,
        pb::StatusResponse,
        "/maintenance/status"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/Defragment",
        pb::DefragmentRequest,
        pb::DefragmentResponse,
        "/maintenance/defragment"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/Hash",
        pb::HashRequest,
        pb::HashResponse,
        "/maintenance/hash"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/HashKV",
        pb::HashKvRequest,
        pb::HashKvResponse,
        "/maintenance/hashkv"
    );
    route!(
        ServerStream,
        "/etcdserverpb.Maintenance/Snapshot",
        pb::SnapshotRequest,
        pb::SnapshotResponse,
        "/maintenance/snapshot"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/MoveLeader",
        pb::MoveLeaderRequest,
        pb::MoveLeaderResponse,
        "/maintenance/transfer-leadership"
    );
    route!(
        Unary,
        "/etcdserverpb.Maintenance/Downgrade",
        pb::DowngradeRequest,
        pb::DowngradeResponse,
        "/maintenance/downgrade"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/AuthEnable",
        pb::AuthEnableRequest,
        pb::AuthEnableResponse,
        "/auth/enable"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/AuthDisable",
        pb::AuthDisableRequest,
        pb::AuthDisableResponse,
        "/auth/disable"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/AuthStatus",
        pb::AuthStatusRequest,
        pb::AuthStatusResponse,
        "/auth/status"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/Authenticate",
        pb::AuthenticateRequest,
        pb::AuthenticateResponse,
        "/auth/authenticate"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserAdd",
        pb::AuthUserAddRequest,
        pb::AuthUserAddResponse,
        "/auth/user/add"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserGet",
        pb::AuthUserGetRequest,
        pb::AuthUserGetResponse,
        "/auth/user/get"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserList",
        pb::AuthUserListRequest,
        pb::AuthUserListResponse,
        "/auth/user/list"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserDelete",
        pb::AuthUserDeleteRequest,
        pb::AuthUserDeleteResponse,
        "/auth/user/delete"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserChangePassword",
        pb::AuthUserChangePasswordRequest,
        pb::AuthUserChangePasswordResponse,
        "/auth/user/changepw"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserGrantRole",
        pb::AuthUserGrantRoleRequest,
        pb::AuthUserGrantRoleResponse,
        "/auth/user/grant"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/UserRevokeRole",
        pb::AuthUserRevokeRoleRequest,
        pb::AuthUserRevokeRoleResponse,
        "/auth/user/revoke"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/RoleAdd",
        pb::AuthRoleAddRequest,
        pb::AuthRoleAddResponse,
        "/auth/role/add"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/RoleGet",
        pb::AuthRoleGetRequest,
        pb::AuthRoleGetResponse,
        "/auth/role/get"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/RoleList",
        pb::AuthRoleListRequest,
        pb::AuthRoleListResponse,
        "/auth/role/list"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/RoleDelete",
        pb::AuthRoleDeleteRequest,
        pb::AuthRoleDeleteResponse,
        "/auth/role/delete"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/RoleGrantPermission",
        pb::AuthRoleGrantPermissionRequest,
        pb::AuthRoleGrantPermissionResponse,
        "/auth/role/grant"
    );
    route!(
        Unary,
        "/etcdserverpb.Auth/RoleRevokePermission",
        pb::AuthRoleRevokePermissionRequest,
        pb::AuthRoleRevokePermissionResponse,
        "/auth/role/revoke"
    );
    route!(
        Unary,
        "/v3lockpb.Lock/Lock",
        lpb::LockRequest,
        lpb::LockResponse,
        "/lock/lock"
    );
    route!(
        Unary,
        "/v3lockpb.Lock/Unlock",
        lpb::UnlockRequest,
        lpb::UnlockResponse,
        "/lock/unlock"
    );
    route!(
        Unary,
        "/v3electionpb.Election/Campaign",
        epb::CampaignRequest,
        epb::CampaignResponse,
        "/election/campaign"
    );
    route!(
        Unary,
        "/v3electionpb.Election/Proclaim",
        epb::ProclaimRequest,
        epb::ProclaimResponse,
        "/election/proclaim"
    );
    route!(
        Unary,
        "/v3electionpb.Election/Leader",
        epb::LeaderRequest,
        epb::LeaderResponse,
        "/election/leader"
    );
    route!(
        ServerStream,
        "/v3electionpb.Election/Observe",
        epb::LeaderRequest,
        epb::LeaderResponse,
        "/election/observe"
    );
    route!(
        Unary,
        "/v3electionpb.Election/Resign",
        epb::ResignRequest,
        epb::ResignResponse,
        "/election/resign"
    );
    // Other paths under the prefixes: grpc-gateway's plain 404.
    for prefix in ["/v3", "/v3beta"] {
        r = r.route(
            &format!("{prefix}/{{*rest}}"),
            axum::routing::any(|| async { (http::StatusCode::NOT_FOUND, "Not Found\n") }),
        );
    }
    r.with_state(gw)
}

/// One gateway call of `shape` to the gRPC method at `path`.
async fn handle<Req, Resp>(gw: Gw, shape: Shape, path: &'static str, req: Request) -> Response
where
    Req: prost::Message + DeserializeOwned + Default + Send + 'static,
    Resp: prost::Message + Serialize + Default + Send + 'static,
{
    let Ok(permit) = gw.streams.clone().acquire_owned().await else {
        return json::error(&Status::unavailable("the member is stopping"));
    };
    let (parts, body) = req.into_parts();
    let inner = match shape {
        Shape::Bidi => match streamed_requests::<Req>(body, gw.body_limit).await {
            Ok(b) => b,
            Err(s) => return json::error(&s),
        },
        Shape::Unary | Shape::ServerStream => {
            let bytes = match axum::body::to_bytes(body, gw.body_limit).await {
                Ok(b) => b,
                Err(e) => return json::error(&Status::invalid_argument(e.to_string())),
            };
            match json::parse_one::<Req>(&bytes) {
                Ok(m) => Body::from(call::frame(&m)),
                Err(s) => return json::error(&s),
            }
        }
    };
    let resp = match gw
        .grpc
        .clone()
        .oneshot(call::request(&parts, path, inner))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let mut replies = call::Replies::new(resp);
    let first = replies.next().await;
    if shape == Shape::Unary {
        drop(permit);
        return match first {
            Some(Ok(bytes)) => match Resp::decode(bytes) {
                Ok(m) => json::message(&m),
                Err(e) => json::error(&Status::internal(e.to_string())),
            },
            Some(Err(s)) => json::error(&s),
            None => json::error(&Status::internal("empty response")),
        };
    }
    // A stream whose first answer is an error answers with that error's
    // HTTP status; after a first result the status (200) is already out.
    let first = match first {
        Some(Ok(bytes)) => result_line::<Resp>(bytes),
        Some(Err(s)) => return json::error(&s),
        None => Bytes::new(),
    };
    let lines = tokio_stream::once(first).chain(lines::<Resp>(replies, permit));
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines.map(Ok::<_, std::convert::Infallible>)),
    )
        .into_response()
}

/// The line for one answer of a stream.
fn result_line<Resp: prost::Message + Serialize + Default>(bytes: Bytes) -> Bytes {
    match Resp::decode(bytes) {
        Ok(m) => json::stream_item(&m),
        Err(e) => json::stream_error(&Status::internal(e.to_string())),
    }
}

/// The rest of a stream's lines. The call (and its permit) ends when the
/// answers end or when the HTTP client goes away, whichever is first.
fn lines<Resp>(
    mut replies: call::Replies,
    permit: OwnedSemaphorePermit,
) -> impl tokio_stream::Stream<Item = Bytes> + Send + 'static
where
    Resp: prost::Message + Serialize + Default + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let next = tokio::select! {
                r = replies.next() => r,
                () = tx.closed() => break,
            };
            let (line, last) = match next {
                Some(Ok(bytes)) => (result_line::<Resp>(bytes), false),
                Some(Err(s)) => (json::stream_error(&s), true),
                None => break,
            };
            if tx.send(line).await.is_err() || last {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The request frames of a streaming call: the body is read up to its
/// first value before the call (a bad one is the call's error), the rest
/// as it arrives; a later bad value, or more than `limit` bytes of one
/// value, ends the requests.
async fn streamed_requests<Req>(body: Body, limit: usize) -> Result<Body, Status>
where
    Req: prost::Message + DeserializeOwned + Default + Send + 'static,
{
    let mut data = body.into_data_stream();
    let mut values = json::ValueStream::new(limit);
    let mut first = Vec::new();
    let mut ended = false;
    while first.is_empty() && !ended {
        match data.next().await {
            Some(Ok(chunk)) => {
                let (v, err) = values.push::<Req>(&chunk);
                first = v;
                if let Some(e) = err {
                    if first.is_empty() {
                        return Err(e);
                    }
                    ended = true;
                }
            }
            Some(Err(e)) => return Err(Status::invalid_argument(e.to_string())),
            None => {
                if let Some(e) = values.finish() {
                    return Err(e);
                }
                ended = true;
            }
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for v in first {
            if tx.send(call::frame(&v)).await.is_err() {
                return;
            }
        }
        while !ended {
            let Some(Ok(chunk)) = data.next().await else {
                return;
            };
            let (vs, err) = values.push::<Req>(&chunk);
            for v in vs {
                if tx.send(call::frame(&v)).await.is_err() {
                    return;
                }
            }
            ended = err.is_some();
        }
    });
    Ok(Body::from_stream(
        ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>),
    ))
}
