//! TLS for the client and peer listeners and for peer connections, with
//! etcd's flags: a certificate and key (`--cert-file`/`--key-file`, or a
//! self-signed pair with `--auto-tls`), a CA to verify the other side
//! (`--trusted-ca-file`), required client certificates
//! (`--client-cert-auth`), revoked ones (`--client-crl-file`), and the same
//! for peers under `--peer-*`.
//!
//! Rules as etcd's: a listener serves TLS when one of its URLs is
//! `https` (or `unixs`); one address may carry both `http` and `https`
//! URLs, and each connection is told apart by its first byte
//! ([`incoming`]). Peer connections verify the other member's certificate
//! against the peer CA, except with `--peer-auto-tls`, whose self-signed
//! certificates cannot be verified (etcd skips the check there too).
//! ALPN offers h2 (gRPC). [`authority`] repairs a client quirk on every
//! accepted connection, TLS or not.

pub mod authority;
pub mod auto;
pub mod dial;
pub mod incoming;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// One side's TLS settings, as the flags give them.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    /// The pair was generated here (`--auto-tls`): peers cannot verify it.
    pub self_signed: bool,
    /// TLS 1.2 cipher suites by Go's names (`--cipher-suites`); empty: all
    /// that rustls offers.
    pub cipher_suites: Vec<String>,
    /// Whether TLS 1.2 and TLS 1.3 are offered (`--tls-min-version`,
    /// `--tls-max-version`; rustls offers nothing older).
    pub tls12: bool,
    pub tls13: bool,
    /// A client certificate must carry one of these common names
    /// (`--peer-cert-allowed-cn`; empty: any).
    pub allowed_cns: Vec<String>,
    /// A client certificate must be valid for one of these host names
    /// (`--peer-cert-allowed-hostname`, `--client-cert-allowed-hostname`;
    /// empty: any).
    pub allowed_hostnames: Vec<String>,
}

impl TlsInfo {
    /// Whether a certificate is configured.
    pub fn is_set(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

fn provider(info: &TlsInfo) -> anyhow::Result<Arc<CryptoProvider>> {
    let mut p = rustls::crypto::ring::default_provider();
    if !info.cipher_suites.is_empty() {
        let mut chosen: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in &info.cipher_suites {
            let name = name.trim();
            let found = p
                .cipher_suites
                .iter()
                .find(|s| go_suite_name(s.suite()).is_some_and(|n| n == name))
                .ok_or_else(|| anyhow::anyhow!("unexpected TLS cipher suite {name:?}"))?;
            chosen.push(*found);
        }
        p.cipher_suites = chosen;
    }
    Ok(Arc::new(p))
}

fn versions(info: &TlsInfo) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut v = Vec::new();
    if info.tls13 {
        v.push(&rustls::version::TLS13);
    }
    if info.tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// Go's name of a TLS 1.2 suite rustls offers (Go's cipher-suite flags).
fn go_suite_name(s: rustls::CipherSuite) -> Option<&'static str> {
    use rustls::CipherSuite as C;
    Some(match s {
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        }
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        _ => return None,
    })
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("open {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("read certificates from {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate found", path.display());
    }
    Ok(certs)
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("read the private key in {}", path.display()))
}

fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .with_context(|| format!("{}: a CA certificate rustls refuses", path.display()))?;
    }
    Ok(roots)
}

/// Revocation lists, PEM or DER (etcd's fixtures are DER).
fn crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("open {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        return CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("read revocation lists from {}", path.display()));
    }
    Ok(vec![CertificateRevocationListDer::from(bytes)])
}

/// The listener side of `info`.
pub fn server_config(info: &TlsInfo) -> anyhow::Result<Arc<ServerConfig>> {
    let (Some(cert), Some(key_file)) = (&info.cert_file, &info.key_file) else {
        anyhow::bail!("TLS needs a certificate and a key");
    };
    let provider = provider(info)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(info))?;
    let builder = if info.client_cert_auth {
        let ca = info.trusted_ca_file.as_ref().ok_or_else(|| {
            anyhow::anyhow!("client certificate authentication needs a trusted CA file")
        })?;
        let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider);
        if let Some(crl) = &info.crl_file {
            v = v.with_crls(crls(crl)?);
        }
        builder.with_client_cert_verifier(Arc::new(verify::RootsOrChain {
            webpki: v.build()?,
            roots: certs(ca)?,
            allowed_cns: info.allowed_cns.clone(),
            allowed_hostnames: info.allowed_hostnames.clone(),
        }))
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(certs(cert)?, key(key_file)?)
        .context("the certificate and the key do not go together")?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// The dialing side of `info` (peer connections): its certificate as the
/// client certificate, the other member's checked against the trusted CA
/// (not at all for self-signed pairs, as etcd).
pub fn client_config(info: &TlsInfo) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = provider(info)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(info))?;
    let builder = match (&info.trusted_ca_file, info.self_signed) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(dial::Unverified(provider))),
        (Some(ca), false) => builder.with_root_certificates(roots(ca)?),
        (None, false) => anyhow::bail!(
            "peer TLS needs --peer-trusted-ca-file to verify the other members (or --peer-auto-tls)"
        ),
    };
    let mut cfg = match (&info.cert_file, &info.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c)?, key(k)?)
            .context("the certificate and the key do not go together")?,
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
