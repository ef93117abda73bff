//! The TLS flags as etcd reads them: which listener serves what, and the
//! client and peer TLS settings (a self-signed pair under the data dir
//! with `--auto-tls`/`--peer-auto-tls` when no certificate is given).

use super::Config;
use crate::transport::tls::{self, incoming::Schemes, TlsInfo};
use crate::urls::parse_urls;

/// One address to listen on and the schemes its URLs name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `host:port`, or a unix socket's file.
    pub addr: String,
    pub plain: bool,
    pub tls: bool,
    /// A unix socket (`unix://`, `unixs://`).
    pub unix: bool,
}

impl Config {
    /// The client listeners (`--listen-client-urls`, then
    /// `--listen-client-http-urls`): one per address, `http` and `https`
    /// URLs of the same address served together (a unix socket file serves
    /// `unix` or `unixs`, not both).
    pub fn client_listens(&self) -> anyhow::Result<Vec<Listen>> {
        let out = self.client_listens_merged()?;
        if let Some(l) = out.iter().find(|l| l.unix && l.plain && l.tls) {
            anyhow::bail!(
                "--listen-client-urls: unix socket {} is named as unix:// and unixs://; a socket file serves one of them",
                l.addr
            );
        }
        Ok(out)
    }

    fn client_listens_merged(&self) -> anyhow::Result<Vec<Listen>> {
        let mut out = listens("listen-client-urls", &self.listen_client_urls)?;
        if !self.listen_client_http_urls.trim().is_empty() {
            for l in listens("listen-client-http-urls", &self.listen_client_http_urls)? {
                match out.iter_mut().find(|o| o.addr == l.addr) {
                    Some(o) if o.unix == l.unix => {
                        o.plain |= l.plain;
                        o.tls |= l.tls;
                    }
                    Some(_) => out.push(l),
                    None => out.push(l),
                }
            }
        }
        Ok(out)
    }

    /// The listeners of `--listen-metrics-urls` (none by default).
    pub fn metrics_listens(&self) -> anyhow::Result<Vec<Listen>> {
        if self.listen_metrics_urls.trim().is_empty() {
            return Ok(Vec::new());
        }
        listens("listen-metrics-urls", &self.listen_metrics_urls)
    }

    /// The peer listeners (TCP: members dial each other's peer URLs over
    /// TCP, so a unix peer URL is refused).
    pub fn peer_listens(&self) -> anyhow::Result<Vec<Listen>> {
        let out = listens("listen-peer-urls", &self.listen_peer_urls)?;
        if let Some(l) = out.iter().find(|l| l.unix) {
            anyhow::bail!(
                "--listen-peer-urls: unix sockets are served for clients only, not peers: {}",
                l.addr
            );
        }
        Ok(out)
    }

    /// Client TLS, or None when no certificate is configured.
    pub fn client_tls(&self) -> anyhow::Result<Option<TlsInfo>> {
        let info = TlsInfo {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
            crl_file: self.client_crl_file.clone(),
            allowed_hostnames: list(&self.client_cert_allowed_hostname),
            ..TlsInfo::default()
        };
        self.complete_tls(info, self.auto_tls, &self.listen_client_urls, "client")
    }

    /// Peer TLS, or None when no certificate is configured.
    pub fn peer_tls(&self) -> anyhow::Result<Option<TlsInfo>> {
        let info = TlsInfo {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            crl_file: self.peer_crl_file.clone(),
            allowed_cns: list(&self.peer_cert_allowed_cn),
            allowed_hostnames: list(&self.peer_cert_allowed_hostname),
            ..TlsInfo::default()
        };
        self.complete_tls(info, self.peer_auto_tls, &self.listen_peer_urls, "peer")
    }

    /// One side's settings completed with what both sides share (versions,
    /// suites) and, with `auto` and no certificate given, the self-signed
    /// pair under `fixtures/<side>` for the hosts of `urls`.
    fn complete_tls(
        &self,
        mut info: TlsInfo,
        auto: bool,
        urls: &str,
        side: &str,
    ) -> anyhow::Result<Option<TlsInfo>> {
        (info.tls12, info.tls13) = self.tls_versions()?;
        info.cipher_suites = self.cipher_suites();
        if auto && info.is_set() {
            tracing::warn!("ignoring {side} auto TLS since certs given");
        } else if auto {
            let (cert, key) = tls::auto::self_cert(
                &self.data_dir().join("fixtures").join(side),
                &hosts(urls)?,
                self.self_signed_cert_validity,
            )?;
            info.cert_file = Some(cert);
            info.key_file = Some(key);
            info.self_signed = true;
        }
        Ok(info.is_set().then_some(info))
    }

    /// Whether TLS 1.2 and TLS 1.3 are on, from `--tls-min-version` and
    /// `--tls-max-version` (etcd's values TLS1.0 ... TLS1.3; rustls has no
    /// TLS 1.0 or 1.1, so a minimum below 1.2 means 1.2, with a warning,
    /// and a maximum below 1.2 is refused).
    pub fn tls_versions(&self) -> anyhow::Result<(bool, bool)> {
        fn level(flag: &str, v: &str) -> anyhow::Result<u8> {
            Ok(match v {
                "TLS1.0" => 10,
                "TLS1.1" => 11,
                "TLS1.2" => 12,
                "TLS1.3" => 13,
                _ => anyhow::bail!(
                    "unexpected TLS version {v:?} for --{flag} (TLS1.0, TLS1.1, TLS1.2 or TLS1.3)"
                ),
            })
        }
        let min = level("tls-min-version", self.tls_min_version.trim())?;
        let max = match self.tls_max_version.trim() {
            "" => 13,
            v => level("tls-max-version", v)?,
        };
        if min > max {
            anyhow::bail!(
                "min version ({}) is greater than max version ({})",
                self.tls_min_version,
                self.tls_max_version
            );
        }
        if max < 12 {
            anyhow::bail!(
                "--tls-max-version {}: strata offers TLS 1.2 and 1.3 only",
                self.tls_max_version
            );
        }
        if min == 13 && !self.cipher_suites.trim().is_empty() {
            anyhow::bail!("cipher suites cannot be configured when only TLS1.3 is enabled");
        }
        Ok((min <= 12, max >= 13))
    }

    fn cipher_suites(&self) -> Vec<String> {
        self.cipher_suites
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// Checks that every `https` URL has a certificate to serve (etcd's
    /// words), and that client certificate checks have a CA.
    pub(super) fn check_tls(&self) -> anyhow::Result<()> {
        self.tls_versions()?;
        if matches!(self.tls_min_version.trim(), "TLS1.0" | "TLS1.1") {
            tracing::warn!(
                min = %self.tls_min_version,
                "TLS 1.0 and 1.1 are not offered; the minimum is TLS1.2"
            );
        }
        let client_certs = (self.cert_file.is_some() && self.key_file.is_some()) || self.auto_tls;
        let mut client_urls = parse_urls("listen-client-urls", &self.listen_client_urls)?;
        if !self.listen_client_http_urls.trim().is_empty() {
            client_urls.extend(parse_urls(
                "listen-client-http-urls",
                &self.listen_client_http_urls,
            )?);
        }
        for u in client_urls {
            if u.is_tls() && !client_certs {
                anyhow::bail!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                    u.raw
                );
            }
        }
        let peer_certs =
            (self.peer_cert_file.is_some() && self.peer_key_file.is_some()) || self.peer_auto_tls;
        for u in parse_urls("listen-peer-urls", &self.listen_peer_urls)? {
            if u.is_tls() && !peer_certs {
                anyhow::bail!(
                    "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {} with HTTPS scheme",
                    u.raw
                );
            }
        }
        if self.client_cert_auth && self.trusted_ca_file.is_none() && !self.auto_tls {
            anyhow::bail!("--client-cert-auth needs --trusted-ca-file");
        }
        let names =
            !self.peer_cert_allowed_cn.is_empty() || !self.peer_cert_allowed_hostname.is_empty();
        let (cns, hosts) = (
            list(&self.peer_cert_allowed_cn),
            list(&self.peer_cert_allowed_hostname),
        );
        if !cns.is_empty() && !hosts.is_empty() {
            anyhow::bail!(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns={}, hostnames={})",
                go_quoted(&cns),
                go_quoted(&hosts)
            );
        }
        if names && !self.peer_client_cert_auth {
            anyhow::bail!(
                "--peer-cert-allowed-cn and --peer-cert-allowed-hostname need --peer-client-cert-auth"
            );
        }
        if self.peer_client_cert_auth && self.peer_trusted_ca_file.is_none() && !self.peer_auto_tls
        {
            anyhow::bail!("--peer-client-cert-auth needs --peer-trusted-ca-file");
        }
        Ok(())
    }
}

/// What a listener of `l` serves, with `info`'s server side for TLS.
pub fn schemes(l: &Listen, info: Option<&TlsInfo>) -> anyhow::Result<Schemes> {
    let tls = match (l.tls, info) {
        (true, Some(info)) => Some(tls::server_config(info)?),
        (true, None) => anyhow::bail!("{} needs TLS, and no certificate is configured", l.addr),
        (false, _) => None,
    };
    Ok(Schemes {
        plain: l.plain,
        tls,
    })
}

/// A comma-separated flag's values (Go's StringsValue), blanks dropped.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

fn listens(flag: &str, urls: &str) -> anyhow::Result<Vec<Listen>> {
    let mut out: Vec<Listen> = Vec::new();
    for u in parse_urls(flag, urls)? {
        let addr = u.bind_addr();
        let unix = u.is_unix();
        let i = match out.iter().position(|l| l.addr == addr && l.unix == unix) {
            Some(i) => i,
            None => {
                out.push(Listen {
                    addr,
                    plain: false,
                    tls: false,
                    unix,
                });
                out.len() - 1
            }
        };
        if u.is_tls() {
            out[i].tls = true;
        } else {
            out[i].plain = true;
        }
    }
    Ok(out)
}

/// The hosts the URLs name (for self-signed certificates).
fn hosts(urls: &str) -> anyhow::Result<Vec<String>> {
    Ok(parse_urls("listen-urls", urls)?
        .into_iter()
        .map(|u| {
            u.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn one_address_may_serve_http_and_https() {
        let c = Config::parse_from([
            "strata",
            "--listen-client-urls",
            "http://localhost:2379,https://localhost:2379,https://127.0.0.1:2479",
            "--auto-tls",
        ]);
        assert_eq!(
            c.client_listens().unwrap(),
            vec![
                Listen {
                    addr: "127.0.0.1:2379".into(),
                    plain: true,
                    tls: true,
                    unix: false
                },
                Listen {
                    addr: "127.0.0.1:2479".into(),
                    plain: false,
                    tls: true,
                    unix: false
                },
            ]
        );
        c.check_tls().unwrap();
    }

    #[test]
    fn http_client_urls_are_more_client_listeners() {
        let c = Config::parse_from([
            "strata",
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--listen-client-http-urls",
            "http://127.0.0.1:2380,https://127.0.0.1:2379",
        ]);
        assert_eq!(
            c.client_listens().unwrap(),
            vec![
                Listen {
                    addr: "127.0.0.1:2379".into(),
                    plain: true,
                    tls: true,
                    unix: false
                },
                Listen {
                    addr: "127.0.0.1:2380".into(),
                    plain: true,
                    tls: false,
                    unix: false
                },
            ]
        );
        let e = c.check_tls().unwrap_err().to_string();
        assert!(e.contains("https://127.0.0.1:2379"), "{e}");
    }

    #[test]
    fn tls_versions_as_etcd_names_them() {
        let v = |args: &[&str]| {
            let mut all = vec!["strata"];
            all.extend_from_slice(args);
            Config::parse_from(all).tls_versions()
        };
        assert_eq!(v(&[]).unwrap(), (true, true));
        assert_eq!(v(&["--tls-min-version", "TLS1.3"]).unwrap(), (false, true));
        assert_eq!(v(&["--tls-max-version", "TLS1.2"]).unwrap(), (true, false));
        assert_eq!(v(&["--tls-min-version", "TLS1.0"]).unwrap(), (true, true));
        let e = v(&["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        let e = v(&[
            "--tls-min-version",
            "TLS1.3",
            "--cipher-suites",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("only TLS1.3"), "{e}");
        assert!(v(&["--tls-min-version", "SSL3"]).is_err());
        assert!(v(&["--tls-max-version", "TLS1.1"]).is_err());
    }

    #[test]
    fn https_without_a_certificate_is_refused_with_etcds_words() {
        let c = Config::parse_from(["strata", "--listen-client-urls", "https://127.0.0.1:2379"]);
        let e = c.check_tls().unwrap_err().to_string();
        assert!(e.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"), "{e}");
    }
}
