//! The URL flags (`--listen-client-urls`, `--advertise-client-urls`,
//! `--listen-peer-urls`, `--initial-advertise-peer-urls`, and the URLs of
//! `--initial-cluster`), checked at start as etcd checks them
//! (client/pkg/types NewURLs): a scheme etcd knows, an explicit
//! `host:port`, no path. The strings themselves are kept as given: member
//! ids are hashed from them, as etcd hashes them. A foundation: the flags
//! (embed) and membership operations (server) both check URLs here.

use url::Url;

/// A checked URL of a URL flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUrl {
    /// As given (trimmed).
    pub raw: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl FlagUrl {
    /// A unix socket (`unix://`, `unixs://`): etcd's file named by the
    /// URL's `host:port`, relative to the working directory.
    pub fn is_unix(&self) -> bool {
        self.scheme == "unix" || self.scheme == "unixs"
    }

    /// Whether the URL asks for TLS (`https`, `unixs`).
    pub fn is_tls(&self) -> bool {
        self.scheme == "https" || self.scheme == "unixs"
    }

    /// The socket address to bind, `localhost` as 127.0.0.1; for a unix
    /// socket, its file (`host:port` as given, as etcd's resolveURL).
    pub fn bind_addr(&self) -> String {
        if self.is_unix() {
            let after = &self.raw[self.scheme.len() + 3..];
            return after.to_string();
        }
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
    }
}

/// Parses one URL as etcd's NewURLs does, with its error messages.
pub fn parse_url(raw: &str) -> Result<FlagUrl, String> {
    let raw = raw.trim();
    let u = Url::parse(raw).map_err(|e| format!("parse {raw:?}: {e}"))?;
    match u.scheme() {
        "http" | "https" | "unix" | "unixs" => {}
        _ => {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {raw}"
            ))
        }
    }
    // What follows "scheme://" up to the path: the url crate normalizes a
    // missing path to "/" and hides a default port, so the explicit form
    // is read from the string itself.
    let after = &raw[u.scheme().len() + 3..];
    let (authority, path) = match after.find(['/', '?', '#']) {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let port_text = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            port
        }
        _ => "",
    };
    let port: u16 = match port_text.parse() {
        Ok(p) => p,
        Err(_) => {
            return Err(format!(
                "URL address does not have the form \"host:port\": {raw}"
            ))
        }
    };
    if path.starts_with('/') {
        return Err(format!("URL must not contain a path: {raw}"));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("URL address does not have the form \"host:port\": {raw}"))?;
    Ok(FlagUrl {
        raw: raw.to_string(),
        scheme: u.scheme().to_string(),
        host: host.to_string(),
        port,
    })
}

/// A comma-separated URL flag; `flag` names it in errors.
pub fn parse_urls(flag: &str, list: &str) -> anyhow::Result<Vec<FlagUrl>> {
    let urls: Vec<FlagUrl> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_url)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
    if urls.is_empty() {
        anyhow::bail!("--{flag}: no valid URLs given");
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_etcd_accepts() {
        let u = parse_url("http://localhost:2379").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 2379));
        assert_eq!(u.bind_addr(), "127.0.0.1:2379");
        assert_eq!(parse_url(" http://127.0.0.1:80 ").unwrap().port, 80);
        assert_eq!(
            parse_url("http://[::1]:2380").unwrap().bind_addr(),
            "[::1]:2380"
        );
        assert_eq!(parse_url("https://10.0.0.1:0").unwrap().port, 0);
        // A unix socket is named by host:port, as etcd names it.
        let u = parse_url("unix://localhost:12345").unwrap();
        assert!(u.is_unix() && !u.is_tls());
        assert_eq!(u.bind_addr(), "localhost:12345");
        assert!(parse_url("unixs://sock:1").unwrap().is_tls());
    }

    #[test]
    fn refuses_with_etcds_words() {
        assert_eq!(
            parse_url("http://localhost").unwrap_err(),
            "URL address does not have the form \"host:port\": http://localhost"
        );
        assert_eq!(
            parse_url("http://localhost:2379/v3").unwrap_err(),
            "URL must not contain a path: http://localhost:2379/v3"
        );
        assert_eq!(
            parse_url("http://localhost:2379/").unwrap_err(),
            "URL must not contain a path: http://localhost:2379/"
        );
        assert_eq!(
            parse_url("ftp://localhost:21").unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: ftp://localhost:21"
        );
        assert!(parse_url("localhost:2379").is_err());
        assert_eq!(
            parse_url("unix:///tmp/etcd.sock").unwrap_err(),
            "URL address does not have the form \"host:port\": unix:///tmp/etcd.sock"
        );
        assert!(parse_urls("listen-client-urls", "http://a:1,http://b").is_err());
    }
}
