//! Client certificate verification as Go's crypto/x509 does it for etcd:
//! webpki's checks (chain to a trusted CA, validity, usage, revocation
//! lists), and, where webpki refuses a certificate that is itself one of
//! the trusted CA certificates (a CA certificate used as a client's own,
//! as etcd's CommonName fixtures are), acceptance of that exact
//! certificate, because Go trusts any certificate in its root pool. The
//! handshake still proves the client holds the certificate's key.
//!
//! Then the name rules (etcd 3.6's lists, client/pkg/transport/listener.go):
//! on the peer listener `--peer-cert-allowed-cn` and
//! `--peer-cert-allowed-hostname`, on the client listener
//! `--client-cert-allowed-hostname`, each a comma-separated list, require
//! the client's certificate to carry one of the common names, or a subject
//! alternative name that matches one of the host names (wildcards as Go
//! matches them); a certificate that does not is refused with etcd 3.6's
//! words, "client certificate authentication failed".

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug)]
pub struct RootsOrChain {
    pub webpki: Arc<dyn ClientCertVerifier>,
    /// The trusted CA certificates, as their files hold them.
    pub roots: Vec<CertificateDer<'static>>,
    pub allowed_cns: Vec<String>,
    pub allowed_hostnames: Vec<String>,
}

impl RootsOrChain {
    /// The name rules on an otherwise trusted certificate.
    fn names(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.allowed_cns.is_empty() && self.allowed_hostnames.is_empty() {
            return Ok(());
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| rustls::Error::General(format!("x509: {e}")))?;
        let failed = || rustls::Error::General("client certificate authentication failed".into());
        if !self.allowed_cns.is_empty() {
            let theirs = common_name(&parsed);
            if !self
                .allowed_cns
                .iter()
                .any(|cn| theirs.as_deref() == Some(cn))
            {
                return Err(failed());
            }
        }
        if !self.allowed_hostnames.is_empty()
            && !self
                .allowed_hostnames
                .iter()
                .any(|h| matches_host(&parsed, h))
        {
            return Err(failed());
        }
        Ok(())
    }
}

/// The subject's first common name.
pub fn common_name(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Whether a subject alternative name of `cert` names `host` (an IP
/// address, or a DNS name where `*` stands for one whole left-most label).
fn matches_host(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let ip: Option<std::net::IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    san.value.general_names.iter().any(|n| match (n, ip) {
        (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
            std::net::IpAddr::V4(v4) => *bytes == v4.octets(),
            std::net::IpAddr::V6(v6) => *bytes == v6.octets(),
        },
        (GeneralName::DNSName(name), None) => dns_matches(name, host),
        _ => false,
    })
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => pattern == host,
    }
}

impl ClientCertVerifier for RootsOrChain {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = match self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(v) => v,
            Err(e) => {
                if self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref()) {
                    ClientCertVerified::assertion()
                } else {
                    return Err(e);
                }
            }
        };
        self.names(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> CertificateDer<'static> {
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    fn rules(cn: Option<&str>, host: Option<&str>) -> RootsOrChain {
        let cns: Vec<String> = cn
            .into_iter()
            .flat_map(|c| c.split(','))
            .map(String::from)
            .collect();
        let hosts: Vec<String> = host
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(String::from)
            .collect();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert("ca", &[])).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        RootsOrChain {
            webpki: rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap(),
            roots: Vec::new(),
            allowed_cns: cns,
            allowed_hostnames: hosts,
        }
    }

    #[test]
    fn allowed_common_name_and_host_name() {
        let c = cert(
            "member-1",
            &["m1.example.com", "*.peers.example.com", "10.0.0.7"],
        );
        assert!(rules(Some("member-1"), None).names(&c).is_ok());
        // etcd 3.6: any of a list.
        assert!(rules(Some("member-2,member-1"), None).names(&c).is_ok());
        let e = rules(Some("member-2,member-3"), None)
            .names(&c)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("client certificate authentication failed"),
            "{e}"
        );
        assert!(rules(None, Some("m9.example.com,10.0.0.7"))
            .names(&c)
            .is_ok());
        for ok in [
            "m1.example.com",
            "M1.Example.com",
            "a.peers.example.com",
            "10.0.0.7",
        ] {
            assert!(rules(None, Some(ok)).names(&c).is_ok(), "{ok}");
        }
        for bad in [
            "m2.example.com",
            "a.b.peers.example.com",
            "peers.example.com",
            "10.0.0.8",
        ] {
            assert!(rules(None, Some(bad)).names(&c).is_err(), "{bad}");
        }
    }
}
