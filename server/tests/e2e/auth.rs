//! Auth end to end on a real member: raw gRPC calls with tokens the test
//! makes or forges (JWT with a key pair generated here, `alg: none`, a
//! foreign key, expired; simple tokens with wrong letters, expired, or of
//! a deleted user), auth state across a restart, and the Authenticate
//! guard (an unknown user answers like a wrong password).

use strata_testkit as common;

use std::time::Duration;

use common::{grpc_unary as call, Server};
use strata_proto::etcdserverpb as pb;
use tonic::{Code, Status};

use common::login;

async fn get(port: u16, key: &str, token: Option<&str>) -> Result<pb::RangeResponse, Status> {
    let req = pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    call(port, "/etcdserverpb.KV/Range", req, token).await
}

use common::put_with_token as put;

fn assert_status(r: Result<impl std::fmt::Debug, Status>, code: Code, msg: &str) {
    let e = r.expect_err(msg);
    assert_eq!((e.code(), e.message()), (code, msg));
}

fn set_up_users(s: &Server) {
    common::set_up_auth(&s.endpoint());
}

fn b64(bytes: &[u8]) -> String {
    // URL-safe base64 without padding, as JWTs use.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_malformed_jwts_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let (priv_path, pub_path) = (tmp.path().join("jwt.key"), tmp.path().join("jwt.pub"));
    std::fs::write(&priv_path, key.serialize_pem()).unwrap();
    std::fs::write(&pub_path, key.public_key_pem()).unwrap();
    let spec = format!(
        "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=2s",
        pub_path.display(),
        priv_path.display()
    );
    let s = Server::start(&["--auth-token", &spec]);
    set_up_users(&s);

    let token = login(s.port, "alice", "alicepw").await.unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    put(s.port, "a", Some(&token)).await.unwrap();
    assert_status(
        put(s.port, "b", Some(&token)).await,
        Code::PermissionDenied,
        "etcdserver: permission denied",
    );

    // The claims are etcd's: username, revision, exp.
    let claims = token.split('.').nth(1).unwrap();
    let forged_claims = b64(br#"{"username":"root","revision":99,"exp":9999999999}"#);
    assert!(!claims.is_empty());
    let invalid = "etcdserver: invalid auth token";

    // alg none, and a signature by another key, claiming to be root.
    let none = format!("{}.{forged_claims}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_status(
        get(s.port, "a", Some(&none)).await,
        Code::Unauthenticated,
        invalid,
    );
    let header = b64(br#"{"alg":"ES256","typ":"JWT"}"#);
    let foreign = {
        #[derive(serde::Serialize)]
        struct Claims {
            username: &'static str,
            revision: u64,
            exp: u64,
        }
        let claims = Claims {
            username: "root",
            revision: 99,
            exp: 9_999_999_999,
        };
        let k = jsonwebtoken::EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &k,
        )
        .unwrap()
    };
    assert_status(
        get(s.port, "a", Some(&foreign)).await,
        Code::Unauthenticated,
        invalid,
    );
    // alice's signature over root's claims.
    let sig = token.split('.').nth(2).unwrap();
    let spliced = format!("{header}.{forged_claims}.{sig}");
    assert_status(
        get(s.port, "a", Some(&spliced)).await,
        Code::Unauthenticated,
        invalid,
    );
    for junk in ["x", "a.b.c", "....", "abcdefghijklmnop.1"] {
        assert_status(
            get(s.port, "a", Some(junk)).await,
            Code::Unauthenticated,
            invalid,
        );
    }

    // The 2 s token expires.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_status(
        get(s.port, "a", Some(&token)).await,
        Code::Unauthenticated,
        invalid,
    );

    // A token from before a change to the auth store is stale for writes
    // (etcd: "revision of auth store is old").
    let fresh = login(s.port, "alice", "alicepw").await.unwrap();
    s.etcdctl_ok(&["--user=root:rootpw", "role", "add", "other"]);
    assert_status(
        put(s.port, "a", Some(&fresh)).await,
        Code::InvalidArgument,
        "etcdserver: revision of auth store is old",
    );
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_tokens_expire_die_with_their_user_and_auth_survives_a_restart() {
    let mut s = Server::start(&["--auth-token-ttl", "2", "--bcrypt-cost", "4"]);
    set_up_users(&s);
    let failed = "etcdserver: authentication failed, invalid user ID or password";
    assert_status(
        login(s.port, "alice", "nope").await,
        Code::InvalidArgument,
        failed,
    );
    assert_status(
        login(s.port, "nobody", "x").await,
        Code::InvalidArgument,
        failed,
    );

    let token = login(s.port, "alice", "alicepw").await.unwrap();
    let (letters, index) = token.split_once('.').unwrap();
    assert_eq!(letters.len(), 16);
    assert!(index.parse::<u64>().is_ok(), "{token}");
    get(s.port, "a", Some(&token)).await.unwrap();
    let invalid = "etcdserver: invalid auth token";
    let wrong = format!("{}.{index}", "Z".repeat(16));
    assert_status(
        get(s.port, "a", Some(&wrong)).await,
        Code::Unauthenticated,
        invalid,
    );

    // Used within its TTL it lives on; idle past it, it is gone.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        get(s.port, "a", Some(&token)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_status(
        get(s.port, "a", Some(&token)).await,
        Code::Unauthenticated,
        invalid,
    );

    // No credentials at all.
    assert_status(
        get(s.port, "a", None).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );

    // Deleting a user kills their tokens.
    s.etcdctl_ok(&["--user=root:rootpw", "user", "add", "bob:bobpw"]);
    let bob = login(s.port, "bob", "bobpw").await.unwrap();
    s.etcdctl_ok(&["--user=root:rootpw", "user", "delete", "bob"]);
    assert_status(
        get(s.port, "a", Some(&bob)).await,
        Code::Unauthenticated,
        invalid,
    );

    // Users, roles, permissions and the enabled flag survive a restart.
    s.restart();
    assert_status(
        get(s.port, "a", None).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    let token = login(s.port, "alice", "alicepw").await.unwrap();
    put(s.port, "a", Some(&token)).await.unwrap();
    assert_status(
        put(s.port, "b", Some(&token)).await,
        Code::PermissionDenied,
        "etcdserver: permission denied",
    );
    let out = s.etcdctl_ok(&["--user=root:rootpw", "role", "get", "ra"]);
    assert!(out.contains("KV Read:\n\ta\nKV Write:\n\ta"), "{out}");
}

/// etcd 3.6/3.7's rules: once auth is on, Status, Alarm GET, MemberList,
/// LeaseGrant, LeaseRevoke and LeaseTimeToLive need a user ("user name is
/// empty" without one); Compact and changing alarms need root; a token
/// may come as `Bearer <token>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_etcd_3_7_guards_need_a_user_or_root() {
    let s = Server::start(&[]);
    set_up_users(&s);
    let empty = "etcdserver: user name is empty";
    let denied = "etcdserver: permission denied";
    let alice = login(s.port, "alice", "alicepw").await.unwrap();
    let root = login(s.port, "root", "rootpw").await.unwrap();

    macro_rules! unary {
        ($path:literal, $req:expr, $token:expr, $resp:ty) => {
            call::<_, $resp>(s.port, $path, $req, $token).await
        };
    }
    let status = |t: Option<String>| async move {
        call::<_, pb::StatusResponse>(
            s.port,
            "/etcdserverpb.Maintenance/Status",
            pb::StatusRequest {},
            t.as_deref(),
        )
        .await
    };
    assert_status(status(None).await, Code::InvalidArgument, empty);
    status(Some(alice.clone())).await.unwrap();
    status(Some(format!("Bearer {alice}"))).await.unwrap();

    let list = pb::MemberListRequest::default();
    assert_status(
        unary!(
            "/etcdserverpb.Cluster/MemberList",
            list,
            None,
            pb::MemberListResponse
        ),
        Code::InvalidArgument,
        empty,
    );
    unary!(
        "/etcdserverpb.Cluster/MemberList",
        list,
        Some(alice.as_str()),
        pb::MemberListResponse
    )
    .unwrap();

    let get_alarms = pb::AlarmRequest::default();
    assert_status(
        unary!(
            "/etcdserverpb.Maintenance/Alarm",
            get_alarms,
            None,
            pb::AlarmResponse
        ),
        Code::InvalidArgument,
        empty,
    );
    unary!(
        "/etcdserverpb.Maintenance/Alarm",
        get_alarms,
        Some(alice.as_str()),
        pb::AlarmResponse
    )
    .unwrap();
    let disarm = pb::AlarmRequest {
        action: pb::alarm_request::AlarmAction::Deactivate as i32,
        member_id: 1,
        alarm: pb::AlarmType::Nospace as i32,
    };
    assert_status(
        unary!(
            "/etcdserverpb.Maintenance/Alarm",
            disarm,
            Some(alice.as_str()),
            pb::AlarmResponse
        ),
        Code::PermissionDenied,
        denied,
    );
    unary!(
        "/etcdserverpb.Maintenance/Alarm",
        disarm,
        Some(root.as_str()),
        pb::AlarmResponse
    )
    .unwrap();

    // Downgrade is root's (v3.7.1 server/etcdserver/api/v3rpc/maintenance.go,
    // authMaintenanceServer.Downgrade).
    let validate = pb::DowngradeRequest {
        action: pb::downgrade_request::DowngradeAction::Validate as i32,
        version: "3.0".into(),
    };
    assert_status(
        unary!(
            "/etcdserverpb.Maintenance/Downgrade",
            validate.clone(),
            Some(alice.as_str()),
            pb::DowngradeResponse
        ),
        Code::PermissionDenied,
        denied,
    );
    assert_status(
        unary!(
            "/etcdserverpb.Maintenance/Downgrade",
            validate,
            Some(root.as_str()),
            pb::DowngradeResponse
        ),
        Code::InvalidArgument,
        "etcdserver: invalid downgrade target version",
    );

    let grant = pb::LeaseGrantRequest { ttl: 60, id: 0 };
    assert_status(
        unary!(
            "/etcdserverpb.Lease/LeaseGrant",
            grant,
            None,
            pb::LeaseGrantResponse
        ),
        Code::InvalidArgument,
        empty,
    );
    let id = unary!(
        "/etcdserverpb.Lease/LeaseGrant",
        grant,
        Some(alice.as_str()),
        pb::LeaseGrantResponse
    )
    .unwrap()
    .id;
    let ttl = pb::LeaseTimeToLiveRequest { id, keys: false };
    assert_status(
        unary!(
            "/etcdserverpb.Lease/LeaseTimeToLive",
            ttl,
            None,
            pb::LeaseTimeToLiveResponse
        ),
        Code::InvalidArgument,
        empty,
    );
    unary!(
        "/etcdserverpb.Lease/LeaseTimeToLive",
        ttl,
        Some(alice.as_str()),
        pb::LeaseTimeToLiveResponse
    )
    .unwrap();
    let revoke = pb::LeaseRevokeRequest { id };
    assert_status(
        unary!(
            "/etcdserverpb.Lease/LeaseRevoke",
            revoke,
            None,
            pb::LeaseRevokeResponse
        ),
        Code::InvalidArgument,
        empty,
    );
    unary!(
        "/etcdserverpb.Lease/LeaseRevoke",
        revoke,
        Some(alice.as_str()),
        pb::LeaseRevokeResponse
    )
    .unwrap();

    let rev = put(s.port, "a", Some(&alice))
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let compact = pb::CompactionRequest {
        revision: rev,
        physical: false,
    };
    assert_status(
        unary!(
            "/etcdserverpb.KV/Compact",
            compact,
            Some(alice.as_str()),
            pb::CompactionResponse
        ),
        Code::PermissionDenied,
        denied,
    );
    unary!(
        "/etcdserverpb.KV/Compact",
        compact,
        Some(root.as_str()),
        pb::CompactionResponse
    )
    .unwrap();
    drop(s);
}
