//! Serving a member: its gRPC services registered on each client
//! listener, and the order of start and stop. TLS and the HTTP endpoints
//! plug in here, at the one place listeners become servers.
//!
//! Order: the member is opened (raft running) and ready (a leader known,
//! the committed log applied) before any listener serves;
//! on shutdown the listeners stop first (in-flight requests get up to 5 s),
//! then raft stops and the backend commits what was applied.

use std::future::Future;

use strata_proto::etcdserverpb as pb;
use tokio::net::TcpListener;

use crate::api;
use crate::config::Config;
use crate::server::EtcdServer;

/// Serves the member on `listeners` until `shutdown` completes, then stops
/// raft and closes the storage.
pub async fn run(
    cfg: Config,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let srv = tokio::task::spawn_blocking(move || EtcdServer::start(cfg)).await??;
    srv.spawn_duties();
    let mut shutdown = std::pin::pin!(shutdown);
    // Clients are served once the member is ready: a leader is known and
    // what was committed is applied (connections wait in the backlog).
    let ready = tokio::select! {
        r = srv.wait_ready() => r,
        () = &mut shutdown => Err(crate::errors::EtcdError::Stopped),
    };
    if let Err(e) = ready {
        tracing::info!(error = %e, "stopping before the member became ready");
        let s = srv.clone();
        tokio::task::spawn_blocking(move || s.stop()).await?;
        return Ok(());
    }
    // tonic's cap sits above etcd's limit so that the KV service's own check
    // (grpc-go's status and message) is what clients see; the cap still
    // bounds memory.
    let recv_limit = (srv.recv_limit() * 2).max(4 << 20);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    for l in listeners {
        let addr = l.local_addr()?;
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(
                pb::kv_server::KvServer::new(api::kv::KvService { srv: srv.clone() })
                    .max_decoding_message_size(recv_limit)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                pb::watch_server::WatchServer::new(api::watch::WatchService { srv: srv.clone() })
                    .max_decoding_message_size(recv_limit)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                pb::lease_server::LeaseServer::new(api::lease::LeaseService { srv: srv.clone() })
                    .max_decoding_message_size(recv_limit),
            )
            .add_service(
                pb::maintenance_server::MaintenanceServer::new(
                    api::maintenance::MaintenanceService { srv: srv.clone() },
                )
                .max_decoding_message_size(recv_limit)
                .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                pb::cluster_server::ClusterServer::new(api::cluster::ClusterService {
                    srv: srv.clone(),
                })
                .max_decoding_message_size(recv_limit),
            );
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            router
                // tonic's own nodelay setting covers only listeners it
                // binds: without this, Nagle holds a response's second write
                // until the client's delayed ACK (40 ms).
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(l)
                        .with_nodelay(Some(true))
                        .with_keepalive(Some(std::time::Duration::from_secs(7200))),
                    async move {
                        let _ = stop.recv().await;
                    },
                )
                .await
        }));
        tracing::info!(address = %addr, "serving client traffic insecurely; this is strongly discouraged!");
    }
    tracing::info!(
        member = format!("{:x}", srv.member_id()),
        "ready to serve client requests"
    );
    shutdown.await;
    tracing::info!("received shutdown; stopping");
    let _ = stop_tx.send(());
    for t in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    let s = srv.clone();
    tokio::task::spawn_blocking(move || s.stop()).await?;
    tracing::info!("stopped");
    Ok(())
}
