//! etcd 3.6's Maintenance.Downgrade and storage version, on three members:
//! VALIDATE, ENABLE and CANCEL with etcd's checks, codes and messages
//! (v3.7.1 server/etcdserver/v3_server.go, version/version.go,
//! api/v3rpc/rpctypes/error.go); the job replicated to every member and
//! kept across a restart; the cluster version (Status, /version, metrics)
//! at the job's target while it is on; a db of a newer storage schema
//! refused at start with the way back, one of a known schema opened and
//! settled to the binary's storage version.

use strata_proto::etcdserverpb as pb;
use strata_testkit::cluster::Cluster;
use strata_testkit::{grpc_unary, http_get, Server};
use tonic::{Code, Status};

use pb::downgrade_request::DowngradeAction as A;

async fn downgrade(port: u16, action: A, version: &str) -> Result<pb::DowngradeResponse, Status> {
    grpc_unary(
        port,
        "/etcdserverpb.Maintenance/Downgrade",
        pb::DowngradeRequest {
            action: action as i32,
            version: version.into(),
        },
        None,
    )
    .await
}

async fn status(port: u16) -> pb::StatusResponse {
    grpc_unary(
        port,
        "/etcdserverpb.Maintenance/Status",
        pb::StatusRequest {},
        None,
    )
    .await
    .expect("status")
}

fn refused(r: Result<pb::DowngradeResponse, Status>, code: Code, msg: &str) {
    let e = r.expect_err(msg);
    assert_eq!((e.code(), e.message()), (code, msg));
}

/// The cluster version /version reports (`X.Y.0`), as (major, minor).
fn cluster_version(port: u16) -> (u64, u64) {
    let (code, body) = http_get(port, "/version");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = v["etcdcluster"].as_str().unwrap().to_string();
    let mut it = s.split('.').map(|p| p.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// The storage version a member keeps at cluster version (major, minor):
/// etcd 3.5's schema has none.
fn storage_for(v: (u64, u64)) -> String {
    if v > (3, 5) {
        format!("{}.{}.0", v.0, v.1)
    } else {
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_validate_enable_cancel_as_etcd() {
    let mut c = Cluster::local(3, &[]);
    let ports: Vec<u16> = c.members.iter().map(|m| m.client_port).collect();
    let p = ports[0];
    let (major, minor) = cluster_version(p);
    let target = format!("{major}.{}", minor - 1);
    let too_old = format!("{major}.{}", minor - 2);
    let now = format!("{major}.{minor}");
    let st = status(p).await;
    assert_eq!(st.storage_version, storage_for((major, minor)));
    assert!(!st.downgrade_info.unwrap().enabled);

    // Formats and targets refused with etcd's words.
    refused(
        downgrade(p, A::Validate, "x.y").await,
        Code::InvalidArgument,
        "etcdserver: wrong downgrade target version format",
    );
    for bad in [too_old.as_str(), now.as_str(), "4.0"] {
        refused(
            downgrade(p, A::Validate, bad).await,
            Code::InvalidArgument,
            "etcdserver: invalid downgrade target version",
        );
    }
    let e = grpc_unary::<_, pb::DowngradeResponse>(
        p,
        "/etcdserverpb.Maintenance/Downgrade",
        pb::DowngradeRequest {
            action: 7,
            version: target.clone(),
        },
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "etcdserver: unknown method")
    );
    // One minor down validates ("X.Y" and "X.Y.Z" alike); the answer
    // carries the cluster version.
    for t in [target.clone(), format!("{target}.0")] {
        let r = downgrade(p, A::Validate, &t).await.unwrap();
        assert_eq!(r.version, now);
        assert!(r.header.is_some());
    }
    // Cancel without a job: answered, nothing changes (etcd only logs).
    assert_eq!(downgrade(p, A::Cancel, "").await.unwrap().version, now);

    // Enabled on one member, seen on all: the job, the cluster version
    // and the storage version that follows it.
    let r = downgrade(p, A::Enable, &target).await.unwrap();
    assert_eq!(r.version, now);
    let lowered = (major, minor - 1);
    for &port in &ports {
        let seen =
            strata_testkit::wait_for(10, || (cluster_version(port) == lowered).then_some(()));
        assert!(seen.is_some(), "member on {port} did not lower its version");
        let st = status(port).await;
        let d = st.downgrade_info.unwrap();
        assert!(d.enabled);
        assert_eq!(d.target_version, format!("{target}.0"));
        assert_eq!(st.storage_version, storage_for(lowered));
    }
    let (_, metrics) = http_get(p, "/metrics");
    assert!(
        metrics.contains(&format!(
            "etcd_cluster_version{{cluster_version=\"{target}.0\"}} 1"
        )),
        "{metrics}"
    );
    // A job in progress: the next target down validates as a target but
    // the job refuses it; the same target is no longer one minor down.
    refused(
        downgrade(ports[1], A::Validate, &too_old).await,
        Code::FailedPrecondition,
        "etcdserver: cluster has a downgrade job in progress",
    );
    refused(
        downgrade(ports[1], A::Enable, &target).await,
        Code::InvalidArgument,
        "etcdserver: invalid downgrade target version",
    );

    // The job is in the db: a restarted member still has it.
    c.restart(2);
    let st = status(c.members[2].client_port).await;
    assert!(st.downgrade_info.unwrap().enabled);
    assert_eq!(cluster_version(c.members[2].client_port), lowered);

    // Cancelled: everything back to the binary's versions.
    assert_eq!(
        downgrade(ports[1], A::Cancel, "").await.unwrap().version,
        target
    );
    for m in &c.members {
        let port = m.client_port;
        let back = strata_testkit::wait_for(10, || {
            (cluster_version(port) == (major, minor)).then_some(())
        });
        assert!(back.is_some());
        let st = status(port).await;
        assert!(!st.downgrade_info.unwrap().enabled);
        assert_eq!(st.storage_version, storage_for((major, minor)));
    }
}

/// Writes `v` as a stopped member's storage version.
fn set_storage_version(data: &std::path::Path, v: &str) {
    use strata_engine::backend::{Backend, BackendConfig, Bucket};
    let b = Backend::open(BackendConfig::new(data.join("member").join("db"))).unwrap();
    {
        let mut tx = b.batch().unwrap();
        tx.put(Bucket::Meta, b"storageVersion", v.as_bytes())
            .unwrap();
    }
    b.force_commit().unwrap();
    b.close().unwrap();
}

/// A db written by a newer storage schema than the binary knows is refused
/// at start, naming the way back; one of a schema it knows (3.7 here) opens
/// and is settled to the binary's storage version, as etcd's monitor
/// settles it to the cluster version.
#[test]
fn a_newer_storage_schema_is_refused_and_a_known_one_settled() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    s.etcdctl_ok(&["put", "k", "v"]);
    let (major, minor) = cluster_version(s.port);
    assert_eq!(s.terminate(), Some(0));
    let data = dir.path().join("data");

    set_storage_version(&data, "3.9.0");
    let out = strata_testkit::process::start_refused(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("storage version 3.9.0 is newer than this binary knows")
            && err.contains("strata-util migrate"),
        "{err}"
    );

    set_storage_version(&data, "3.7.0");
    let s = Server::start_in(dir.path(), &[]);
    assert_eq!(s.etcdctl_ok(&["get", "k", "--print-value-only"]), "v\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let st = rt.block_on(status(s.port));
    assert_eq!(st.storage_version, storage_for((major, minor)));
}
