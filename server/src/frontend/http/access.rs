//! Who may use the HTTP side of a client listener (the endpoints of this
//! folder and the JSON gateway; gRPC is not affected), as etcd's access
//! controller decides:
//! - a plain-HTTP request whose Host (without its port) is not in
//!   `--host-whitelist` is refused with 421 Misdirected Request, against
//!   DNS rebinding (CVE-2018-5702); `*` (the default) allows any host, and
//!   TLS requests are never refused for it;
//! - with `--client-cert-auth` and auth enabled, a gateway request over TLS
//!   whose client certificate has a common name is refused (400): the
//!   gateway does not take a certificate's name as the user, so the
//!   request would not run as the client meant;
//! - allowed origins (`--cors`, `*` by default) get CORS headers, and an
//!   OPTIONS preflight is answered 200 at once.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::EtcdServer;
use crate::transport::tls::incoming::ConnInfo;

/// etcd's words for a gateway request that carries a certificate name.
const CN_IGNORED: &str =
    "CommonName of client sending a request against gateway will be ignored and not used as expected";

/// What the checks need, read from the flags once per listener.
pub struct Access {
    srv: Arc<EtcdServer>,
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Access {
    pub fn new(srv: Arc<EtcdServer>) -> Access {
        Access {
            hosts: srv.cfg.allowed_hosts.clone(),
            origins: srv.cfg.cors_origins.clone(),
            srv,
        }
    }
}

/// The checks, in etcd's order, then the CORS headers.
pub async fn control(access: Arc<Access>, req: Request, next: Next) -> Response {
    let srv = &access.srv;
    let conn = req.extensions().get::<ConnInfo>();
    let tls = conn.is_some_and(|c| c.tls);
    let path = req.uri().path();
    let gateway_path = path.starts_with("/v3/") || path.starts_with("/v3beta/");
    if !tls {
        let host = host_name(&req);
        if !host_allowed(&access.hosts, host) {
            tracing::warn!(
                host,
                "refusing an HTTP request whose Host is not in --host-whitelist (DNS rebinding)"
            );
            return (StatusCode::MISDIRECTED_REQUEST, misdirected(host)).into_response();
        }
    } else if srv.cfg.client_cert_auth
        && srv.cfg.enable_grpc_gateway
        && srv.shared.auth.enabled()
        && gateway_path
        && conn.is_some_and(|c| c.cn.as_deref().is_some_and(|cn| !cn.is_empty()))
    {
        return (StatusCode::BAD_REQUEST, format!("{CN_IGNORED}\n")).into_response();
    }
    let origins = &access.origins;
    let allow = if origins.iter().any(|o| o == "*") {
        Some(HeaderValue::from_static("*"))
    } else {
        req.headers()
            .get(header::ORIGIN)
            .filter(|o| origins.iter().any(|a| a.as_bytes() == o.as_bytes()))
            .cloned()
    };
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(req).await
    };
    if let Some(origin) = allow {
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("accept, content-type, authorization"),
        );
    }
    resp
}

/// The request's host without its port (HTTP/1.1 Host, or h2 authority).
fn host_name(req: &Request) -> &str {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    }
}

fn host_allowed(allowed: &[String], host: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| a == "*" || a == host)
}

fn misdirected(host: &str) -> String {
    format!(
        "This member does not serve plain-HTTP requests for host {host:?}.\n\
         Name it in --host-whitelist, or use TLS (TLS requests are not checked).\n\
         The check guards against DNS rebinding (CVE-2018-5702).\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str) -> Request {
        axum::http::Request::builder()
            .uri("/version")
            .header(header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn hosts_are_compared_without_their_port() {
        assert_eq!(host_name(&req("good.example:2379")), "good.example");
        assert_eq!(host_name(&req("good.example")), "good.example");
        assert_eq!(host_name(&req("[::1]:2379")), "::1");
        let allowed = vec!["good.example".to_string()];
        assert!(host_allowed(&allowed, "good.example"));
        assert!(!host_allowed(&allowed, "127.0.0.1"));
        assert!(host_allowed(&["*".to_string()], "anything"));
        assert!(host_allowed(&[], "anything"));
    }
}
