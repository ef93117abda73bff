//! Serving a member: its gRPC services registered on each client
//! listener, and the order of start and stop. TLS (plain, TLS, or both on
//! one address: [`crate::transport::tls::incoming`]), the HTTP endpoints and the JSON
//! gateway plug in here, at the one place listeners become servers.
//!
//! `run`'s listeners are the client listeners in the order of
//! `--listen-client-urls` addresses ([`Config::client_listens`]); each
//! serves the schemes its URLs name (a listener beyond them: plain).
//!
//! Order: the member is opened (raft running) and ready (a leader known,
//! the committed log applied) before any listener serves;
//! on shutdown the listeners stop first (in-flight requests get up to 5 s),
//! then raft stops and the backend commits what was applied.

use std::future::Future;
use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use strata_proto::peerpb;
use tonic::service::interceptor::InterceptedService;

use crate::embed::config::tls::{self as tls_config, Listen};
use crate::embed::config::Config;
use crate::frontend::api;
use crate::frontend::http;
use crate::frontend::peer_service::PeerService;
use crate::server::EtcdServer;
use crate::transport::peer::MAX_FRAME;
use crate::transport::tls::incoming::{self, Schemes};

/// Serves the member on `listeners` until `shutdown` completes, then stops
/// raft and closes the storage.
pub async fn run(
    cfg: Config,
    listeners: Vec<incoming::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server_cfg = cfg.server_config()?;
    let metrics = crate::metrics::global();
    // etcd shows the configured quota, the default for 0, and a negative
    // (no quota) as given.
    metrics
        .quota_backend_bytes
        .set(cfg.quota().map_or(cfg.quota_backend_bytes, |q| q as i64));
    if cfg.metrics == "extensive" {
        metrics.enable_extensive();
    }
    let srv = tokio::task::spawn_blocking(move || EtcdServer::start(server_cfg)).await??;
    srv.spawn_duties();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    let client_tls = cfg.client_tls()?;
    let client_listens = cfg.client_listens()?;
    let peer_listens = cfg.peer_listens()?;
    // Peers first: electing a leader needs them. A lone member binds them
    // once the membership grows.
    if srv.membership.count() >= 2 {
        for (l, schemes) in bind_peers(&srv, &peer_listens).await? {
            tasks.push(serve_peer(&srv, l, schemes, stop_tx.subscribe())?);
        }
    } else {
        peers_when_joined(&srv, &stop_tx, peer_listens.clone());
    }
    if srv.cfg.initial_corrupt_check && srv.initialized && srv.membership.count() > 1 {
        if let Err(e) = srv.initial_corrupt_check().await {
            stop(&srv, &stop_tx, tasks).await?;
            return Err(e);
        }
    }
    let mut shutdown = std::pin::pin!(shutdown);
    // Clients are served once the member is ready: a leader is known and
    // what was committed is applied (connections wait in the backlog).
    let ready = tokio::select! {
        r = srv.wait_ready() => r,
        () = &mut shutdown => Err(crate::errors::EtcdError::Stopped),
        () = removed(&srv) => {
            // Its peers refuse it: a member removed while it was down.
            stop(&srv, &stop_tx, tasks).await?;
            anyhow::bail!("the member has been permanently removed from the cluster");
        }
    };
    if let Err(e) = ready {
        tracing::info!(error = %e, "stopping before the member became ready");
        return stop(&srv, &stop_tx, tasks).await;
    }
    // tonic's cap sits above etcd's limit so that the KV service's own check
    // (grpc-go's status and message) is what clients see; the cap still
    // bounds memory.
    let recv_limit = (srv.recv_limit() * 2).max(4 << 20);
    let health = grpc_health(&srv, &stop_tx);
    for (i, l) in listeners.into_iter().enumerate() {
        let addr = l.local_addr()?;
        let schemes = match client_listens.get(i) {
            Some(listen) => tls_config::schemes(listen, client_tls.as_ref())?,
            None => Schemes {
                plain: true,
                tls: None,
            },
        };
        let (plain, secure) = (schemes.plain, schemes.tls.is_some());
        let leader = require_leader(&srv);
        let grpc = tonic::service::Routes::builder()
            .add_service(InterceptedService::new(
                api::range_body::WithRange {
                    inner: pb::kv_server::KvServer::new(api::kv::KvService { srv: srv.clone() })
                        .max_decoding_message_size(recv_limit)
                        .max_encoding_message_size(usize::MAX),
                    srv: srv.clone(),
                },
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::watch_server::WatchServer::new(api::watch::WatchService { srv: srv.clone() })
                    .max_decoding_message_size(recv_limit)
                    .max_encoding_message_size(usize::MAX),
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::lease_server::LeaseServer::new(api::lease::LeaseService { srv: srv.clone() })
                    .max_decoding_message_size(recv_limit),
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::maintenance_server::MaintenanceServer::new(
                    api::maintenance::MaintenanceService { srv: srv.clone() },
                )
                .max_decoding_message_size(recv_limit)
                .max_encoding_message_size(usize::MAX),
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::cluster_server::ClusterServer::new(api::cluster::ClusterService {
                    srv: srv.clone(),
                })
                .max_decoding_message_size(recv_limit),
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::auth_server::AuthServer::new(api::auth::AuthService { srv: srv.clone() })
                    .max_decoding_message_size(recv_limit),
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                strata_proto::v3lockpb::lock_server::LockServer::new(api::lock::LockService {
                    srv: srv.clone(),
                })
                .max_decoding_message_size(recv_limit),
                leader.clone(),
            ))
            .add_service(InterceptedService::new(
                strata_proto::v3electionpb::election_server::ElectionServer::new(
                    api::election::ElectionService { srv: srv.clone() },
                )
                .max_decoding_message_size(recv_limit),
                leader,
            ))
            .add_service(health.clone())
            .clone()
            .routes();
        // gRPC and etcd's HTTP endpoints on one listener; HTTP/1.1 is
        // accepted for the latter.
        let status = srv.shared.status.clone();
        let grpc = grpc
            .into_axum_router()
            .layer(axum::middleware::from_fn(move |req, next| {
                client_rpc(status.clone(), req, next)
            }));
        // The JSON gateway calls into the same gRPC router; the HTTP side
        // passes etcd's access controller (Host, CORS).
        let mut web = http::router(srv.clone());
        if srv.cfg.enable_grpc_gateway {
            web = web.merge(crate::frontend::gateway::router(
                grpc.clone(),
                cfg.max_concurrent_streams,
                recv_limit,
            ));
        }
        let access = Arc::new(http::access::Access::new(srv.clone()));
        let web = web.layer(axum::middleware::from_fn(move |req, next| {
            http::access::control(access.clone(), req, next)
        }));
        let routes = tonic::service::Routes::from(grpc.merge(web));
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .accept_http1(true)
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .http2_keepalive_interval(Some(cfg.grpc_keepalive_interval))
            .http2_keepalive_timeout(Some(cfg.grpc_keepalive_timeout))
            .add_routes(routes);
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            router
                // Accepted connections get TCP_NODELAY (incoming.rs):
                // without it, Nagle holds a response's second write until
                // the client's delayed ACK (40 ms).
                .serve_with_incoming_shutdown(incoming::accept(l, schemes), async move {
                    let _ = stop.recv().await;
                })
                .await
        }));
        if secure {
            tracing::info!(address = %addr, "serving client traffic securely");
        }
        if plain {
            tracing::info!(address = %addr, "serving client traffic insecurely; this is strongly discouraged!");
        }
    }
    for listen in cfg.metrics_listens()? {
        let schemes = tls_config::schemes(&listen, client_tls.as_ref())?;
        let addr = &listen.addr;
        let l = incoming::Listener::bind(addr, listen.unix)
            .await
            .map_err(|e| anyhow::anyhow!("listen {addr}: {e}"))?;
        let routes = tonic::service::Routes::from(http::router(srv.clone()));
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(routes);
        let mut stop = stop_tx.subscribe();
        tracing::info!(address = %addr, "serving metrics");
        tasks.push(tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming::accept(l, schemes), async move {
                    let _ = stop.recv().await;
                })
                .await
        }));
    }
    tracing::info!(
        member = format!("{:x}", srv.member_id()),
        "ready to serve client requests"
    );
    // Under systemd (Type=notify, the Debian package's unit) this is when
    // `systemctl start` returns, as with etcd; without NOTIFY_SOCKET it does
    // nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the member is ready");
    }
    {
        let s = srv.clone();
        tokio::spawn(async move { s.publish().await });
    }
    tokio::select! {
        () = &mut shutdown => tracing::info!("received shutdown; stopping"),
        () = removed(&srv) => tracing::warn!("the member has been permanently removed from the cluster; stopping"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    stop(&srv, &stop_tx, tasks).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The gRPC health service (`grpc.health.v1.Health`, what load balancers
/// probe): the whole server (service "") is SERVING while this member
/// knows a leader and NOT_SERVING while it does not, checked every 200 ms.
fn grpc_health(
    srv: &Arc<EtcdServer>,
    stop_tx: &tokio::sync::broadcast::Sender<()>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    let srv = srv.clone();
    let mut stop = stop_tx.subscribe();
    tokio::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.recv() => {
                    reporter.set_service_status("", ServingStatus::NotServing).await;
                    return;
                }
            }
            let leader = srv
                .shared
                .status
                .leader
                .load(std::sync::atomic::Ordering::Acquire);
            let now = if leader != 0 {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(now) {
                reporter.set_service_status("", now).await;
                last = Some(now);
            }
        }
    });
    service
}

/// Completes once this member learns it was removed from the cluster.
async fn removed(srv: &EtcdServer) {
    let mut v = srv.membership.version();
    while !srv.membership.self_removed() {
        if v.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Stops the listeners (`tasks` get up to 5 s each to finish what they
/// serve), then raft and the storage.
async fn stop<T>(
    srv: &Arc<EtcdServer>,
    stop_tx: &tokio::sync::broadcast::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> anyhow::Result<()> {
    let _ = stop_tx.send(());
    for t in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    let s = srv.clone();
    tokio::task::spawn_blocking(move || s.stop()).await?;
    Ok(())
}

/// etcd's require-leader rule: a request whose metadata says
/// `hasleader: true` (clientv3's WithRequireLeader, etcdctl's default for
/// watch) fails with "etcdserver: no leader" while this member knows none.
fn require_leader(
    srv: &Arc<EtcdServer>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    let status = srv.shared.status.clone();
    move |req: tonic::Request<()>| {
        let wants = req
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if wants && status.leader.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return Err(crate::errors::EtcdError::NoLeader.into());
        }
        Ok(req)
    }
}

/// Every client RPC, in one layer (each layer clones and boxes the
/// service behind it per request): counted in the gRPC metrics, and
/// gated on a learner: etcd's learners serve serializable reads, Status
/// and MemberList only; any other RPC gets "rpc not supported for
/// learner" (a linearizable Range is refused by the KV service itself).
async fn client_rpc(
    status: Arc<crate::raftnode::NodeStatus>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // etcd: a learner answers serializable ranges (the KV service checks
    // that), Status and, of the streams, Snapshot (3.5.x and later).
    const ALLOWED: [&str; 4] = [
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Maintenance/Snapshot",
        "/etcdserverpb.Cluster/MemberList",
    ];
    crate::metrics::grpc::track(req, |req| async move {
        let path = req.uri().path();
        if status.learner.load(std::sync::atomic::Ordering::Acquire)
            && path.starts_with("/etcdserverpb.")
            && !ALLOWED.contains(&path)
        {
            return tonic::Status::from(crate::errors::EtcdError::NotSupportedForLearner)
                .into_http();
        }
        next.run(req).await
    })
    .await
}

/// A lone member binds its peer listeners once a member is added (until
/// then, one-member clusters, tests among them, never compete for a peer
/// port).
fn peers_when_joined(
    srv: &Arc<EtcdServer>,
    stop_tx: &tokio::sync::broadcast::Sender<()>,
    peer_listens: Vec<Listen>,
) {
    let srv = srv.clone();
    let stop_tx = stop_tx.clone();
    tokio::spawn(async move {
        let mut v = srv.membership.version();
        let mut stop = stop_tx.subscribe();
        while srv.membership.count() < 2 {
            tokio::select! {
                r = v.changed() => if r.is_err() { return },
                _ = stop.recv() => return,
            }
        }
        match bind_peers(&srv, &peer_listens).await {
            Ok(ls) => {
                for (l, schemes) in ls {
                    if let Err(e) = serve_peer(&srv, l, schemes, stop_tx.subscribe()) {
                        tracing::error!(error = %e, "serving peer traffic");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "binding the peer listeners"),
        }
    });
}

/// The peer listeners (`--listen-peer-urls`).
async fn bind_peers(
    srv: &EtcdServer,
    peer_listens: &[Listen],
) -> anyhow::Result<Vec<(incoming::Listener, Schemes)>> {
    let mut out = Vec::new();
    for listen in peer_listens {
        let schemes = tls_config::schemes(listen, srv.peer_tls.as_ref())?;
        let addr = &listen.addr;
        let l = incoming::Listener::bind(addr, false)
            .await
            .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))?;
        out.push((l, schemes));
    }
    Ok(out)
}

/// Serves the Peer service on `l` until `stop` fires.
/// The receive window of a peer stream (its connection's is twice that).
const PEER_STREAM_WINDOW: u32 = 8 << 20;

fn serve_peer(
    srv: &Arc<EtcdServer>,
    l: incoming::Listener,
    schemes: Schemes,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let addr = l.local_addr()?;
    // HTTP/2's default 64 KiB windows cap a stream at a window per round
    // trip: a database snapshot (1 MiB pieces) and raft appends get room
    // for several pieces in flight.
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(PEER_STREAM_WINDOW))
        .initial_connection_window_size(Some(2 * PEER_STREAM_WINDOW))
        .add_service(
            peerpb::peer_server::PeerServer::new(PeerService {
                srv: srv.clone(),
                receiving: Default::default(),
            })
            .max_decoding_message_size(MAX_FRAME)
            .max_encoding_message_size(MAX_FRAME),
        );
    tracing::info!(address = %addr, tls = schemes.tls.is_some(), "serving peer traffic");
    Ok(tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming::accept(l, schemes), async move {
                let _ = stop.recv().await;
            })
            .await
    }))
}
