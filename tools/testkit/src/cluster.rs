//! N real `strata` processes on loopback, each behind its peer proxy
//! ([`crate::proxy`]): member i listens for peers on its own port and
//! advertises its proxy's, so every message between members crosses the
//! harness's network. Each member's stdout and stderr go to `mI.log` in
//! the run's directory, appended across restarts with a marker line, and
//! its data dir is `mI/` there: a restart reuses it, as after a crash.
//!
//! Ports come from the caller (never 20000-20100, where etcd's e2e suite
//! listens). Dropping the cluster kills every process it started.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};
use rand::rngs::StdRng;

use crate::powerloss::{self, Loss, Undone};
use crate::proxy::{self, Net};

#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub proxy_port: u16,
    child: Option<Child>,
    /// Set while the process is stopped with SIGSTOP.
    pub paused: bool,
}

#[derive(Debug)]
pub struct Cluster {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub token: String,
    pub members: Vec<Member>,
    pub net: Arc<Net>,
    /// More flags for every member.
    pub extra: Vec<String>,
    /// The shim members run under (`LD_PRELOAD`), for power losses and
    /// clock jumps ([`crate::powerloss`]); see [`find_shim`].
    pub shim: Option<PathBuf>,
    /// What a [`Cluster::local`] keeps alive beside its members.
    owned: Option<Owned>,
}

/// A local cluster's own runtime (its proxies run there, so sync and async
/// tests alike can hold the cluster), temp dir and turn.
#[derive(Debug)]
struct Owned {
    rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl Member {
    /// `127.0.0.1:` and the client port.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:` and the client port.
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    /// etcdctl against this member alone.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        crate::etcdctl(&self.endpoint(), args, None)
    }

    /// etcdctl's output for a command that must succeed here.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        crate::etcdctl_ok(&self.endpoint(), args)
    }

    /// etcdctl's error line for a command that must fail here.
    pub fn etcdctl_err(&self, args: &[&str]) -> String {
        crate::etcdctl_err(&self.endpoint(), args)
    }
}

/// The harness's `LD_PRELOAD` library (`strata-fault-shim`, built with
/// this crate: cargo leaves it in the profile's `deps/`), looked for beside
/// `near` (a binary) and beside the running program; the newest found.
pub fn find_shim(near: &Path) -> Option<PathBuf> {
    let name = "libstrata_fault_shim.so";
    let mut dirs = Vec::new();
    if let Some(d) = near.parent() {
        dirs.push(d.to_path_buf());
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.to_path_buf()))
    {
        dirs.push(d);
    }
    // The newest: `cargo build -p strata-fault-shim` leaves a copy beside
    // the binaries that a later build of the harness does not refresh.
    dirs.iter()
        .flat_map(|d| [d.join(name), d.join("deps").join(name)])
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

impl Cluster {
    /// Starts `n` members under `dir`; `ports` holds 3n free ports.
    /// Must run inside a tokio runtime (the proxies are its tasks).
    pub async fn start(
        bin: &Path,
        dir: &Path,
        n: usize,
        ports: &[u16],
        token: &str,
    ) -> Result<Cluster> {
        Cluster::start_with(bin, dir, n, ports, token, &[], None).await
    }

    /// As [`Cluster::start`], with more flags for every member and maybe
    /// the shim under each.
    pub async fn start_with(
        bin: &Path,
        dir: &Path,
        n: usize,
        ports: &[u16],
        token: &str,
        extra: &[&str],
        shim: Option<PathBuf>,
    ) -> Result<Cluster> {
        Cluster::assemble(bin, dir, n, ports, token, extra, shim)
    }

    /// `n` members of the `strata` under test ([`crate::strata_bin`]) in a
    /// temp dir, with `extra` flags (and the tests' small WAL segments),
    /// after taking [`crate::one_cluster_at_a_time`]; the proxies run on a
    /// runtime the cluster owns. Returns once every member is ready to
    /// serve; panics if one is not within 30 s (a test's helper).
    pub fn local(n: usize, extra: &[&str]) -> Cluster {
        let turn = crate::one_cluster_at_a_time();
        let tmp = tempfile::tempdir().expect("a temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the proxies");
        let ports = crate::free_ports(3 * n);
        let mut flags = vec!["--wal-segment-size", crate::TEST_WAL_SEGMENT_SIZE];
        flags.extend_from_slice(extra);
        let assembled = {
            let _in = rt.enter();
            Cluster::assemble(
                &crate::strata_bin(),
                tmp.path(),
                n,
                &ports,
                "cluster-test",
                &flags,
                None,
            )
        };
        let mut c = assembled.expect("the cluster's members start");
        c.owned = Some(Owned {
            rt,
            _tmp: tmp,
            _turn: turn,
        });
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    /// Binds the proxies (on the runtime entered) and starts the members.
    fn assemble(
        bin: &Path,
        dir: &Path,
        n: usize,
        ports: &[u16],
        token: &str,
        extra: &[&str],
        shim: Option<PathBuf>,
    ) -> Result<Cluster> {
        assert_eq!(ports.len(), 3 * n);
        std::fs::create_dir_all(dir)?;
        // Absolute: the shim journals paths under the data dirs.
        let dir = &std::fs::canonicalize(dir)?;
        let net = Net::new(n);
        let mut members = Vec::new();
        for i in 0..n {
            let (client_port, peer_port, proxy_port) =
                (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let listener = std::net::TcpListener::bind(("127.0.0.1", proxy_port))
                .with_context(|| format!("proxy port {proxy_port}"))?;
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            proxy::spawn(net.clone(), i, listener, ([127, 0, 0, 1], peer_port).into());
            members.push(Member {
                name: format!("m{i}"),
                client_port,
                peer_port,
                proxy_port,
                child: None,
                paused: false,
            });
        }
        let mut c = Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            token: token.to_string(),
            members,
            net,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            shim,
            owned: None,
        };
        for i in 0..n {
            c.spawn(i, None)?;
        }
        Ok(c)
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.members[i].name))
    }

    /// Member i's shim journal (see [`crate::powerloss`]).
    pub fn journal_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.journal", self.members[i].name))
    }

    /// The file whose 8 bytes shift member i's wall clock.
    pub fn clock_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.clock", self.members[i].name))
    }

    /// kill -9 member i, then undo what a power loss at that instant could
    /// have lost from its data dir. Needs the shim.
    pub fn power_loss(&mut self, i: usize, loss: Loss, rng: &mut StdRng) -> Result<Undone> {
        if self.shim.is_none() {
            bail!("power loss needs the shim (libstrata_fault_shim.so)");
        }
        self.kill(i);
        let root = self.dir.join(&self.members[i].name);
        let mut u = powerloss::power_loss(&self.journal_path(i), &root, loss, rng)?;
        // Names relative to the run's directory, for the report.
        let prefix = format!("{}/", self.dir.display());
        for n in &mut u.names {
            *n = n.replace(&prefix, "");
        }
        Ok(u)
    }

    /// Sets member i's wall clock `offset_ns` away from the true time (it
    /// reads the file at every clock read). Needs the shim.
    pub fn set_clock(&self, i: usize, offset_ns: i64) -> Result<()> {
        if self.shim.is_none() {
            bail!("clock jumps need the shim (libstrata_fault_shim.so)");
        }
        // Rewritten in place: the member has it mapped.
        let f = OpenOptions::new().write(true).open(self.clock_path(i))?;
        f.write_all_at(&offset_ns.to_le_bytes(), 0)?;
        Ok(())
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts member `i` on its data dir; `failpoints` (the fail crate's
    /// FAILPOINTS syntax) arms fail points in that process.
    pub fn spawn(&mut self, i: usize, failpoints: Option<&str>) -> Result<()> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect();
        let m = &self.members[i];
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .context("member log")?;
        writeln!(
            log,
            "=== harness: starting {} (failpoints: {})",
            m.name,
            failpoints.unwrap_or("none")
        )?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.join(&m.name))
            .arg("--listen-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client_port))
            .arg("--advertise-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client_port))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.proxy_port))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .args(&self.extra)
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f);
        }
        if let Some(shim) = &self.shim {
            let clock = self.clock_path(i);
            if !clock.exists() {
                std::fs::write(&clock, 0i64.to_le_bytes())?;
            }
            cmd.env("LD_PRELOAD", shim)
                .env("STRATA_SHIM_ROOT", self.dir.join(&self.members[i].name))
                .env("STRATA_SHIM_JOURNAL", self.journal_path(i))
                .env("STRATA_SHIM_CLOCK", clock);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.net.set_pid(i, Some(child.id()));
        let m = &mut self.members[i];
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// kill -9, and waits for the process to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.members[i].paused = false;
        self.net.set_pid(i, None);
    }

    /// Waits up to `limit` for member `i`'s process to end by itself; its
    /// exit status, or None if it still runs.
    pub async fn wait_exit(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + limit;
        loop {
            let status = self.members[i].child.as_mut()?.try_wait().ok().flatten();
            if let Some(s) = status {
                self.members[i].child = None;
                self.net.set_pid(i, None);
                return Some(s);
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOP (true) or SIGCONT (false).
    pub fn pause(&mut self, i: usize, stop: bool) -> Result<()> {
        let Some(c) = self.members[i].child.as_ref() else {
            return Ok(());
        };
        let sig = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .arg(sig)
            .arg(c.id().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {} failed", c.id());
        }
        self.members[i].paused = stop;
        Ok(())
    }

    /// A client of member `i` alone, with short timeouts.
    pub async fn client(&self, i: usize) -> Result<Client> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        Ok(Client::connect([self.endpoint(i)], Some(opts)).await?)
    }

    /// Member `i`'s id, from its Status.
    pub async fn member_id(&self, i: usize) -> Option<u64> {
        let mut c = self.client(i).await.ok()?;
        let s = tokio::time::timeout(Duration::from_secs(2), c.status())
            .await
            .ok()?
            .ok()?;
        s.header().map(|h| h.member_id())
    }

    /// The index of the member that says it leads, asking each running one.
    pub async fn leader(&mut self) -> Option<usize> {
        for i in 0..self.members.len() {
            if !self.is_running(i) || self.members[i].paused {
                continue;
            }
            let Ok(mut c) = self.client(i).await else {
                continue;
            };
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), c.status()).await else {
                continue;
            };
            let id = s.header().map(|h| h.member_id()).unwrap_or(0);
            if id != 0 && s.leader() == id {
                return Some(i);
            }
        }
        None
    }

    /// Every member's whole-state hash (the Hash RPC), taken while all
    /// stand at one raft applied index, the same before and after: that
    /// index and the hashes, in member order; None when a member did not
    /// answer or the index moved (ask again).
    pub async fn whole_state_hashes(&self) -> Option<(u64, Vec<u32>)> {
        let mut clients = Vec::new();
        for i in 0..self.members.len() {
            clients.push(self.client(i).await.ok()?);
        }
        let mut applied = Vec::new();
        let mut hashes = Vec::new();
        for round in 0..3 {
            for cl in clients.iter_mut() {
                if round == 1 {
                    hashes.push(cl.hash().await.ok()?.hash());
                }
                applied.push(cl.status().await.ok()?.raft_applied_index());
            }
        }
        let first = applied[0];
        applied
            .iter()
            .all(|a| *a == first)
            .then_some((first, hashes))
    }

    /// Member `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.members[i].name)
    }

    /// What member `i` logged since its last start.
    pub fn log_since_start(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        match text.rfind("=== harness: starting") {
            Some(at) => text[at..].to_string(),
            None => text,
        }
    }

    /// Waits (30 s at most) until member `i` logs that it serves clients;
    /// panics with its log otherwise.
    pub fn wait_ready(&mut self, i: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log_since_start(i);
            if log.contains("ready to serve client requests") {
                return;
            }
            let gone = !self.is_running(i);
            if gone || std::time::Instant::now() >= deadline {
                panic!(
                    "{} did not become ready ({}):\n{log}",
                    self.members[i].name,
                    if gone { "it exited" } else { "30 s" }
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of member `i`, then a start on the same data dir, ready.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, None).expect("the member starts again");
        self.wait_ready(i);
    }

    /// SIGTERM to member `i`, then waits (20 s at most) for its exit; its
    /// status code (None: killed after the wait, or not running).
    pub fn terminate(&mut self, i: usize) -> Option<i32> {
        let mut c = self.members[i].child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        self.net.set_pid(i, None);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The index of the member that says it leads (etcdctl's endpoint
    /// status, so no runtime is needed), waiting up to 10 s; panics if
    /// none does.
    pub fn leader_now(&mut self) -> usize {
        let n = self.members.len();
        crate::wait_for(10, || {
            (0..n).find(|&i| {
                if !self.is_running(i) || self.members[i].paused {
                    return false;
                }
                let out = self.members[i].etcdctl(&["endpoint", "status", "-w", "json"]);
                let json = String::from_utf8_lossy(&out.stdout);
                let id = json_number(&json, "member_id");
                out.status.success() && id.is_some() && id == json_number(&json, "leader")
            })
        })
        .expect("a leader within 10 s")
    }

    /// Stops every member (kill -9), then reads their logs for panics
    /// ([`panics`]).
    pub fn stop_and_find_panics(&mut self) -> Vec<String> {
        let mut logs = Vec::new();
        for i in 0..self.members.len() {
            self.kill(i);
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            logs.push((self.members[i].name.clone(), text));
        }
        panics(&logs)
    }

    /// The exit statuses of members that died by themselves, as text.
    pub fn crashed(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            if let Some(c) = self.members[i].child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    out.push(format!("{} exited on its own: {s}", self.members[i].name));
                }
            }
        }
        out
    }
}

/// Lines of the members' logs that say a thread panicked.
pub fn panics(logs: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in logs {
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.contains("panicked at") {
                // Rust prints the panic's message on the next line.
                let message = lines.next().unwrap_or_default();
                out.push(format!("{name}: {line} {message}"));
            }
        }
    }
    out
}

/// A number field of etcdctl's JSON output.
pub fn json_number(json: &str, name: &str) -> Option<u64> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        // Not a plain drop: a test may hold the cluster inside its own
        // runtime, where blocking on another's shutdown is refused.
        if let Some(owned) = self.owned.take() {
            owned.rt.shutdown_background();
        }
    }
}
