//! TLS end to end, with etcdctl: a three-member cluster whose peers talk
//! TLS with certificates from a CA made here and check each other's
//! (`--peer-client-cert-auth`), whose clients need a certificate from that
//! CA (`--client-cert-auth`); a cluster on self-signed peer certificates
//! (`--peer-auto-tls`); and one member serving `http` and `https` on the
//! same port with a generated certificate (`--auto-tls`); unix socket
//! client URLs, plain and TLS. Refusals: no
//! client certificate, one from another CA, plaintext to a TLS port. With
//! auth on, a client certificate's common name is its user.

use strata_testkit as common;

use std::path::{Path, PathBuf};

use common::{etcdctl, free_ports, Server};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A CA and the files of the certificates it signed.
struct Pki {
    dir: PathBuf,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (Issuer::new(p, key), cert.pem())
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, sans: &[&str]) -> (String, String) {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let (issuer, ca_pem) = ca("strata test CA");
        std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
        let (c, k) = leaf(&issuer, "member", &["localhost", "127.0.0.1"]);
        std::fs::write(dir.join("server.crt"), c).unwrap();
        std::fs::write(dir.join("server.key"), k).unwrap();
        let (c, k) = leaf(&issuer, "root", &[]);
        std::fs::write(dir.join("client.crt"), c).unwrap();
        std::fs::write(dir.join("client.key"), k).unwrap();
        let (c, k) = leaf(&issuer, "alice", &[]);
        std::fs::write(dir.join("alice.crt"), c).unwrap();
        std::fs::write(dir.join("alice.key"), k).unwrap();
        let (other, _) = ca("another CA");
        let (c, k) = leaf(&other, "root", &[]);
        std::fs::write(dir.join("other.crt"), c).unwrap();
        std::fs::write(dir.join("other.key"), k).unwrap();
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// The member certificate, its key and the CA, with certificate
    /// checks on, as the flags under `prefix` ("--" for clients,
    /// "--peer-" for peers).
    fn flags(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("{prefix}cert-file"),
            self.path("server.crt"),
            format!("{prefix}key-file"),
            self.path("server.key"),
            format!("{prefix}trusted-ca-file"),
            self.path("ca.crt"),
            format!("{prefix}client-cert-auth"),
        ]
    }
}

/// Three members with `peer_flags` on https peer URLs and `client_flags`,
/// ready.
fn cluster(
    dir: &Path,
    scheme: &str,
    peer_flags: &[String],
    client_flags: &[String],
) -> Vec<Server> {
    let mut flags: Vec<String> = vec![
        "--listen-client-urls".into(),
        format!("{scheme}://127.0.0.1:0"),
        "--heartbeat-interval".into(),
        "50".into(),
        "--election-timeout".into(),
        "500".into(),
    ];
    flags.extend(peer_flags.iter().cloned());
    flags.extend(client_flags.iter().cloned());
    let mut members = launch(dir, &flags);
    for m in &mut members {
        m.wait_ready();
    }
    members
}

/// Three members on https peer URLs with `flags`, started without waiting
/// for them to be ready.
fn launch(dir: &Path, flags: &[String]) -> Vec<Server> {
    let ports = free_ports(3);
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}=https://127.0.0.1:{p}"))
        .collect();
    let initial = initial.join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let peer = format!("https://127.0.0.1:{p}");
            let mut args: Vec<String> = vec![
                "--name".into(),
                format!("m{i}"),
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer,
                "--initial-cluster".into(),
                initial.clone(),
            ];
            args.extend(flags.iter().cloned());
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let d = dir.join(format!("m{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Server::launch_in(&d, &a)
        })
        .collect()
}

#[test]
fn peers_whose_certificate_lacks_the_allowed_common_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let mut peer = pki.flags("--peer-");
    peer.extend(["--peer-cert-allowed-cn".into(), "someone-else".into()]);
    let members = launch(tmp.path(), &peer);
    // Every peer connection is refused: no leader, nobody ready, and the
    // refusals say why.
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline
        && !log
            .iter()
            .any(|l: &String| l.contains("client certificate authentication failed"))
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        log.extend(members[0].drain_log());
    }
    assert!(
        log.iter()
            .any(|l| l.contains("client certificate authentication failed")),
        "{}",
        log.join("\n")
    );
    assert!(!log
        .iter()
        .any(|l| l.contains("ready to serve client requests")));
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_cluster_over_verified_peer_tls_serves_clients_with_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let mut peer = pki.flags("--peer-");
    // etcd 3.6: a list of names, any of which will do.
    peer.extend([
        "--peer-cert-allowed-cn".into(),
        "someone-else,member".into(),
    ]);
    let client = pki.flags("--");
    let members = cluster(tmp.path(), "https", &peer, &client);
    let (cacert, cert, key) = (
        format!("--cacert={}", pki.path("ca.crt")),
        format!("--cert={}", pki.path("client.crt")),
        format!("--key={}", pki.path("client.key")),
    );
    let ep = |m: &Server| format!("https://127.0.0.1:{}", m.port);
    assert!(members[0]
        .startup
        .iter()
        .any(|l| l.contains("serving client traffic securely")));
    // Written through one member, read through the others: raft crossed
    // the TLS peer links.
    ok(etcdctl(
        &ep(&members[0]),
        &[&cacert, &cert, &key, "put", "k", "over-tls"],
        None,
    ));
    for m in &members[1..] {
        let got = ok(etcdctl(
            &ep(m),
            &[&cacert, &cert, &key, "get", "k", "--print-value-only"],
            None,
        ));
        assert_eq!(got.trim(), "over-tls");
    }
    // No client certificate, one from another CA, plaintext: refused.
    let short = ["--dial-timeout=2s", "--command-timeout=3s"];
    let no_cert = etcdctl(
        &ep(&members[1]),
        &[&cacert, short[0], short[1], "get", "k"],
        None,
    );
    assert!(!no_cert.status.success());
    let other = etcdctl(
        &ep(&members[1]),
        &[
            &cacert,
            &format!("--cert={}", pki.path("other.crt")),
            &format!("--key={}", pki.path("other.key")),
            short[0],
            short[1],
            "get",
            "k",
        ],
        None,
    );
    assert!(!other.status.success());
    let plain = etcdctl(
        &format!("http://127.0.0.1:{}", members[1].port),
        &[short[0], short[1], "get", "k"],
        None,
    );
    assert!(!plain.status.success());
    let log = members[1].drain_log().join("\n");
    assert!(log.contains("rejected connection"), "{log}");

    // With auth on, a certificate's common name is its user: "root" may
    // manage auth with no password, "alice" gets what her role grants, on
    // every member.
    let root = |m: &Server, args: &[&str]| {
        let mut a = vec![cacert.as_str(), cert.as_str(), key.as_str()];
        a.extend_from_slice(args);
        ok(etcdctl(&ep(m), &a, None))
    };
    for args in [
        &["user", "add", "root", "--no-password"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice", "--no-password"],
        &["role", "add", "ra"],
        &["role", "grant-permission", "ra", "readwrite", "a"],
        &["user", "grant-role", "alice", "ra"],
        &["auth", "enable"],
    ] {
        root(&members[0], args);
    }
    let (alice_cert, alice_key) = (
        format!("--cert={}", pki.path("alice.crt")),
        format!("--key={}", pki.path("alice.key")),
    );
    let alice = |m: &Server, args: &[&str]| {
        let mut a = vec![cacert.as_str(), alice_cert.as_str(), alice_key.as_str()];
        a.extend_from_slice(args);
        etcdctl(&ep(m), &a, None)
    };
    ok(alice(&members[1], &["put", "a", "by-cn"]));
    let denied = alice(&members[2], &["put", "b", "by-cn"]);
    assert!(
        common::last_error_line(&denied).contains("etcdserver: permission denied"),
        "{denied:?}"
    );
    let denied = alice(&members[2], &["user", "list"]);
    assert!(
        common::last_error_line(&denied).contains("etcdserver: permission denied"),
        "{denied:?}"
    );
    // A no-password user cannot log in with a password.
    let pw = alice(&members[0], &["--user=alice:anything", "get", "a"]);
    assert!(
        common::last_error_line(&pw).contains("authentication failed"),
        "{pw:?}"
    );
    assert_eq!(
        root(&members[2], &["get", "a", "--print-value-only"]).trim(),
        "by-cn"
    );
}

#[test]
fn a_cluster_on_self_signed_peer_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let members = cluster(tmp.path(), "http", &["--peer-auto-tls".to_string()], &[]);
    let peer_cert = tmp.path().join("m0/data/fixtures/peer/cert.pem");
    assert!(peer_cert.exists(), "{}", peer_cert.display());
    ok(etcdctl(&members[2].url(), &["put", "k", "auto"], None));
    let got = ok(etcdctl(
        &members[0].url(),
        &["get", "k", "--print-value-only"],
        None,
    ));
    assert_eq!(got.trim(), "auto");
}

#[test]
fn one_port_serves_http_and_https_with_a_generated_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let port = free_ports(1)[0];
    let urls = format!("http://127.0.0.1:{port},https://127.0.0.1:{port}");
    let mut m = Server::start(&["--listen-client-urls", &urls, "--auto-tls"]);
    let https = format!("https://127.0.0.1:{port}");
    ok(etcdctl(&m.url(), &["put", "k", "plain"], None));
    let got = ok(etcdctl(
        &https,
        &[
            "--insecure-transport=false",
            "--insecure-skip-tls-verify",
            "get",
            "k",
            "--print-value-only",
        ],
        None,
    ));
    assert_eq!(got.trim(), "plain");
    // The generated pair is kept, its key private, and reused.
    let dir = m.dir.join("data/fixtures/client");
    let cert = std::fs::read(dir.join("cert.pem")).unwrap();
    let mode = std::fs::metadata(dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key.pem is {mode:o}");
    m.restart();
    assert_eq!(std::fs::read(dir.join("cert.pem")).unwrap(), cert);
    // Without skipping verification, nothing vouches for a self-signed
    // certificate.
    let refused = etcdctl(
        &https,
        &[
            "--insecure-transport=false",
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "get",
            "k",
        ],
        None,
    );
    assert!(!refused.status.success());
}

/// A TLS handshake with `versions` only, against 127.0.0.1:`port`.
fn handshake(
    port: u16,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(), String> {
    use std::io::Write;
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(
            strata_server::transport::tls::dial::Unverified(provider),
        ))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    conn.writer().flush().map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn tls_min_version_refuses_older_handshakes() {
    let m = Server::start(&[
        "--listen-client-urls",
        "https://127.0.0.1:0",
        "--auto-tls",
        "--tls-min-version",
        "TLS1.3",
    ]);
    handshake(m.port, &[&rustls::version::TLS13]).expect("a TLS 1.3 handshake");
    let e = handshake(m.port, &[&rustls::version::TLS12]).unwrap_err();
    assert!(!e.is_empty());
    let got = ok(etcdctl(
        &format!("https://127.0.0.1:{}", m.port),
        &[
            "--insecure-transport=false",
            "--insecure-skip-tls-verify",
            "put",
            "k",
            "v",
        ],
        None,
    ));
    assert!(got.contains("OK"));
}

/// etcd's unix socket client URLs (v3.6.14 server/embed/etcd.go
/// resolveURL, client/pkg/transport/unix_listener.go): `unix://localhost:1`
/// serves on the file `localhost:1` in the member's working directory,
/// `unixs://` with TLS; etcdctl reaches both; the files go when the member
/// stops. A socket file named as both unix and unixs is refused.
#[test]
fn unix_socket_client_urls_serve_plain_and_tls() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let pki = Pki::new(cwd);
    // A stale file where the socket goes is replaced, as etcd does.
    std::fs::write(cwd.join("localhost:1"), b"stale").unwrap();
    let mut child = Command::new(common::strata_bin())
        .current_dir(cwd)
        .args(["--data-dir", "data"])
        .args([
            "--listen-client-urls",
            "unix://localhost:1,unixs://localhost:2",
            "--advertise-client-urls",
            "unix://localhost:1",
            "--cert-file",
            &pki.path("server.crt"),
            "--key-file",
            &pki.path("server.key"),
        ])
        .env("STRATA_WAL_SEGMENT_SIZE", common::TEST_WAL_SEGMENT_SIZE)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    let mut ready = false;
    while !ready && Instant::now() < until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            ready = line.contains("ready to serve client requests");
            log.push(line);
        }
    }
    let ctl = |args: &[&str]| {
        Command::new("etcdctl")
            .current_dir(cwd)
            .env("ETCDCTL_API", "3")
            .args(["--dial-timeout=5s", "--command-timeout=5s"])
            .args(args)
            .output()
            .unwrap()
    };
    let put = ready.then(|| ctl(&["--endpoints", "unix://localhost:1", "put", "k", "over-unix"]));
    let get = ready.then(|| {
        ctl(&[
            "--endpoints",
            "unixs://localhost:2",
            "--insecure-transport=false",
            "--insecure-skip-tls-verify",
            "get",
            "k",
            "--print-value-only",
        ])
    });
    let members = ready.then(|| ctl(&["--endpoints", "unix://localhost:1", "member", "list"]));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let stopped = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(ready, "not ready: {log:?}");
    assert!(
        log.iter().any(|l| l.contains("unix:localhost:1")),
        "{log:?}"
    );
    let text = |o: Option<std::process::Output>| {
        let o = o.unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    assert_eq!(text(put).trim(), "OK");
    assert_eq!(text(get).trim(), "over-unix");
    assert!(text(members).contains("unix://localhost:1"));
    assert!(stopped);
    assert!(!cwd.join("localhost:1").exists());
    assert!(!cwd.join("localhost:2").exists());

    // One file cannot serve both schemes.
    let out = Command::new(common::strata_bin())
        .current_dir(cwd)
        .args(["--data-dir", "data2", "--auto-tls"])
        .args([
            "--listen-client-urls",
            "unix://localhost:3,unixs://localhost:3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a socket file serves one of them"),
        "{out:?}"
    );
}

/// etcd 3.6's `--client-cert-allowed-hostname` list (client/pkg/transport
/// listener.go): a client certificate valid for one of the names is
/// served, one valid for none is refused; allowed CNs and host names
/// together are refused at start with etcd's words.
#[test]
fn client_certificates_must_name_an_allowed_host() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let mut flags = pki.flags("--");
    flags.extend([
        "--listen-client-urls".into(),
        "https://127.0.0.1:0".into(),
        "--client-cert-allowed-hostname".into(),
        "nowhere.example,localhost".into(),
    ]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = Server::start(&args);
    let ep = format!("https://127.0.0.1:{}", m.port);
    let cacert = format!("--cacert={}", pki.path("ca.crt"));
    // The member certificate names localhost; the client one names nothing.
    ok(etcdctl(
        &ep,
        &[
            &cacert,
            &format!("--cert={}", pki.path("server.crt")),
            &format!("--key={}", pki.path("server.key")),
            "put",
            "k",
            "v",
        ],
        None,
    ));
    let refused = etcdctl(
        &ep,
        &[
            &cacert,
            &format!("--cert={}", pki.path("client.crt")),
            &format!("--key={}", pki.path("client.key")),
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "get",
            "k",
        ],
        None,
    );
    assert!(!refused.status.success());

    let mut both = pki.flags("--peer-");
    both.extend([
        "--peer-cert-allowed-cn".into(),
        "a,b".into(),
        "--peer-cert-allowed-hostname".into(),
        "h".into(),
        "--listen-peer-urls".into(),
        "https://127.0.0.1:1".into(),
    ]);
    let out = std::process::Command::new(common::strata_bin())
        .arg("--data-dir")
        .arg(tmp.path().join("both"))
        .args(&both)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"AllowedCNs and AllowedHostnames are mutually exclusive (cns=["a" "b"], hostnames=["h"])"#),
        "{err}"
    );
}
