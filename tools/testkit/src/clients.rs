//! Small clients for what etcdctl cannot send: plain HTTP GETs, raw unary
//! gRPC calls with forged or missing tokens, and the auth set-up several
//! tests share.

use std::time::Duration;

/// A plain HTTP/1.1 GET of `path` on 127.0.0.1:`port`: the status code and
/// the body (the server closes the connection after one response).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an HTTP response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A fresh, ready connection to 127.0.0.1:`port` (answers of any size),
/// and `req` with the optional `token` metadata.
async fn call<Req>(
    port: u16,
    req: Req,
    token: Option<&str>,
) -> Result<
    (
        tonic::client::Grpc<tonic::transport::Channel>,
        tonic::Request<Req>,
    ),
    tonic::Status,
> {
    let ch = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut g = tonic::client::Grpc::new(ch).max_decoding_message_size(usize::MAX);
    g.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut r = tonic::Request::new(req);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("token", t.parse().expect("ascii token"));
    }
    Ok((g, r))
}

/// One unary gRPC call on `path` to 127.0.0.1:`port`, with optional
/// `token` metadata (for tests that make or forge tokens).
pub async fn grpc_unary<Req, Resp>(
    port: u16,
    path: &str,
    req: Req,
    token: Option<&str>,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let (mut g, r) = call(port, req, token).await?;
    g.unary(
        r,
        path.parse().expect("path"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

/// A server-streaming call on `path` (e.g. `/etcdserverpb.KV/RangeStream`)
/// over a fresh connection, with an optional auth token.
pub async fn grpc_server_stream<Req, Resp>(
    port: u16,
    path: &str,
    req: Req,
    token: Option<&str>,
) -> Result<tonic::Streaming<Resp>, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let (mut g, r) = call(port, req, token).await?;
    g.server_streaming(
        r,
        path.parse().expect("path"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

/// Authenticate: the token.
pub async fn login(port: u16, name: &str, password: &str) -> Result<String, tonic::Status> {
    use strata_proto::etcdserverpb as pb;
    let req = pb::AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    };
    grpc_unary::<_, pb::AuthenticateResponse>(port, "/etcdserverpb.Auth/Authenticate", req, None)
        .await
        .map(|r| r.token)
}

/// A put of `key` with a token.
pub async fn put_with_token(
    port: u16,
    key: &str,
    token: Option<&str>,
) -> Result<strata_proto::etcdserverpb::PutResponse, tonic::Status> {
    let req = strata_proto::etcdserverpb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    grpc_unary(port, "/etcdserverpb.KV/Put", req, token).await
}

/// Users root (password rootpw, root role) and alice (alicepw, readwrite
/// on the key "a" through role "ra"), then auth on.
pub fn set_up_auth(endpoint: &str) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "ra"],
        &["role", "grant-permission", "ra", "readwrite", "a"],
        &["user", "grant-role", "alice", "ra"],
        &["auth", "enable"],
    ] {
        crate::etcdctl_ok(endpoint, args);
    }
}
