//! Accepting connections on a listener that may serve plain TCP, TLS, or
//! both on one address (etcd allows `http://h:p` and `https://h:p` in one
//! `--listen-client-urls`). A TLS connection starts with a handshake
//! record (first byte 0x16); anything else is plain. Each connection is
//! sorted and, for TLS, handshaken on its own task, so a slow or silent
//! client never holds up the accept loop; a failed handshake is logged
//! and closed, as Go's server does.
//!
//! A listener is TCP or a unix socket (etcd's `unix://` and `unixs://`
//! client URLs: the socket file is the URL's `host:port`, relative to the
//! working directory; a file already there is removed before binding and
//! the socket's file when the listener is dropped, as etcd's unix
//! listener does).
//!
//! The stream ends when its consumer drops it; the accept loop stops and
//! releases the listener then.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::either::Either;

use super::authority::AuthorityFix;

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener serves.
#[derive(Clone, Default)]
pub struct Schemes {
    pub plain: bool,
    pub tls: Option<Arc<ServerConfig>>,
}

/// A bound client listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// A unix socket's file, removed when dropped.
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Listener {
    /// Binds `addr`: a TCP `host:port`, or with `unix` a socket file.
    pub async fn bind(addr: &str, unix: bool) -> io::Result<Listener> {
        if !unix {
            return Ok(Listener::Tcp(TcpListener::bind(addr).await?));
        }
        match std::fs::remove_file(addr) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let l = UnixListener::bind(addr)?;
        Ok(Listener::Unix(l, SocketFile(PathBuf::from(addr))))
    }

    /// What it listens on, for the log: `host:port`, or `unix:<file>`.
    pub fn local_addr(&self) -> io::Result<String> {
        Ok(match self {
            Listener::Tcp(l) => l.local_addr()?.to_string(),
            Listener::Unix(_, f) => format!("unix:{}", f.0.display()),
        })
    }

    async fn accept(&self) -> io::Result<(Raw, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (tcp, from) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(
                    &socket2::TcpKeepalive::new().with_time(Duration::from_secs(7200)),
                );
                Ok((Either::Left(tcp), Some(from)))
            }
            Listener::Unix(l, _) => Ok((Either::Right(l.accept().await?.0), None)),
        }
    }
}

/// A connection's transport: TCP or a unix socket.
pub type Raw = Either<TcpStream, UnixStream>;

/// The first byte a client sent, left unread. A unix socket serves one
/// scheme (the configuration refuses `unix` and `unixs` on one file), so
/// it is never asked.
async fn peek_first(raw: &Raw) -> io::Result<u8> {
    match raw {
        Either::Left(tcp) => {
            let mut first = [0u8; 1];
            tcp.peek(&mut first).await?;
            Ok(first[0])
        }
        Either::Right(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a unix socket serves one scheme",
        )),
    }
}

/// One accepted (or dialed) connection.
pub enum Conn {
    Plain(Raw),
    Tls(Box<tokio_rustls::TlsStream<Raw>>),
}

/// What a request can learn of its connection.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The common name of the client's certificate, when the handshake
    /// verified one (etcd's identity for `--client-cert-auth`).
    pub cn: Option<String>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The subject common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        let tls = matches!(self, Conn::Tls(_));
        let (tcp, cn) = match self {
            Conn::Plain(s) => (s, None),
            Conn::Tls(s) => {
                let (tcp, session) = s.get_ref();
                let cn = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| common_name(leaf.as_ref()));
                (tcp, cn)
            }
        };
        let remote = match tcp {
            Either::Left(t) => t.peer_addr().ok(),
            Either::Right(_) => None,
        };
        ConnInfo { remote, cn, tls }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections `listener` accepts, sorted by `schemes`.
pub fn accept(
    listener: Listener,
    schemes: Schemes,
) -> ReceiverStream<io::Result<AuthorityFix<Conn>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (raw, from) = tokio::select! {
                () = tx.closed() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let tx = tx.clone();
            let schemes = schemes.clone();
            tokio::spawn(async move {
                if let Some(conn) = sort(raw, from, &schemes).await {
                    let _ = tx.send(Ok(AuthorityFix::new(conn))).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Plain or TLS, by the first byte the client sends.
async fn sort(raw: Raw, from: Option<SocketAddr>, schemes: &Schemes) -> Option<Conn> {
    let Some(tls) = &schemes.tls else {
        return Some(Conn::Plain(raw));
    };
    if schemes.plain {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, peek_first(&raw)).await {
            Ok(Ok(first)) if first != 0x16 => return Some(Conn::Plain(raw)),
            Ok(Ok(_)) => {}
            _ => return None,
        }
    }
    let from = from.map_or_else(|| "unix socket".to_string(), |a| a.to_string());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(raw)).await {
        Ok(Ok(s)) => Some(Conn::Tls(Box::new(s.into()))),
        Ok(Err(e)) => {
            tracing::warn!(remote = %from, error = %e, "rejected connection: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::warn!(remote = %from, "rejected connection: TLS handshake timed out");
            None
        }
    }
}
