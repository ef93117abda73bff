//! The network between members: one TCP proxy in front of each member's
//! peer port, which every other member reaches it through (the member
//! advertises the proxy's URL). Strata sends its raft messages to member
//! j on a connection it dials to j, so what member i sends to j is
//! exactly what arrives at j's proxy on connections dialed by i. The
//! proxy learns the dialer of each connection from the kernel: the
//! connection's source port names a socket in /proc/net/tcp, whose inode
//! one member process holds among its /proc/PID/fd.
//!
//! Rules, per ordered pair (from, to):
//! - blocked: the connections from `from` to `to` are closed, and a new
//!   one is accepted but swallows what it is sent without answering (a
//!   black hole, as a lost route looks to TCP) until the block is lifted,
//!   when it is closed so that the member dials again;
//! - delay: bytes from `from` to `to`, and the answers on those
//!   connections, are held that long before they are passed on (in
//!   order);
//! - drop: each chunk read from `from` on a connection to `to` (or from
//!   `to` on it, going back) is, with this probability, thrown away and
//!   the connection closed: what it carried is lost, as messages are when
//!   a link fails, and the member dials again. (TCP delivers whole
//!   prefixes: a proxy cannot lose one message and pass the next.)
//!
//! A connection whose dialer is no member (it died, or is not ours) is
//! passed through without rules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The rules and the members' process ids, shared by every proxy.
#[derive(Debug)]
pub struct Net {
    n: usize,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    blocked: Vec<bool>,
    delay_ms: Vec<u64>,
    drop_p: Vec<f64>,
    pids: Vec<Option<u32>>,
    generation: u64,
}

impl Net {
    pub fn new(n: usize) -> Arc<Net> {
        Arc::new(Net {
            n,
            state: Mutex::new(State {
                blocked: vec![false; n * n],
                delay_ms: vec![0; n * n],
                drop_p: vec![0.0; n * n],
                pids: vec![None; n],
                generation: 0,
            }),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, mut s: std::sync::MutexGuard<'_, State>) {
        s.generation += 1;
        let g = s.generation;
        drop(s);
        self.changed.send_replace(g);
    }

    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.lock().pids[member] = pid;
    }

    /// Cuts what `from` sends to `to` (one way).
    pub fn block(&self, from: usize, to: usize) {
        let mut s = self.lock();
        s.blocked[from * self.n + to] = true;
        self.bump(s);
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let mut s = self.lock();
        for &x in a {
            for &y in b {
                s.blocked[x * self.n + y] = true;
                s.blocked[y * self.n + x] = true;
            }
        }
        self.bump(s);
    }

    /// Delays every link by `ms`.
    pub fn delay_all(&self, ms: u64) {
        let mut s = self.lock();
        s.delay_ms.iter_mut().for_each(|d| *d = ms);
        self.bump(s);
    }

    /// Delays the link from `from` to `to` by `ms`.
    pub fn delay_link(&self, from: usize, to: usize, ms: u64) {
        let mut s = self.lock();
        s.delay_ms[from * self.n + to] = ms;
        self.bump(s);
    }

    /// Makes every link lose a chunk, and its connection, with
    /// probability `p`.
    pub fn drop_all(&self, p: f64) {
        let mut s = self.lock();
        s.drop_p.iter_mut().for_each(|d| *d = p);
        self.bump(s);
    }

    /// Lifts every block, delay and drop.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.blocked.iter_mut().for_each(|b| *b = false);
        s.delay_ms.iter_mut().for_each(|d| *d = 0);
        s.drop_p.iter_mut().for_each(|d| *d = 0.0);
        self.bump(s);
    }

    fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.lock().blocked[from * self.n + to]
    }

    fn delay(&self, from: usize, to: usize) -> Duration {
        Duration::from_millis(self.lock().delay_ms[from * self.n + to])
    }

    /// Whether this chunk on the link from `from` to `to` is lost.
    fn drops(&self, from: usize, to: usize) -> bool {
        let p = self.lock().drop_p[from * self.n + to];
        p > 0.0 && rand::rng().random_bool(p.min(1.0))
    }
}

/// Starts the proxy for member `to`: accepts on `listener`, forwards to
/// `target` (the member's real peer port).
pub fn spawn(net: Arc<Net>, to: usize, listener: TcpListener, target: SocketAddr) {
    tokio::spawn(async move {
        loop {
            let Ok((sock, from_addr)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let local = sock.local_addr().map(|a| a.port()).unwrap_or(0);
            let net = net.clone();
            tokio::spawn(async move {
                let pids = net.lock().pids.clone();
                let port = from_addr.port();
                let from = tokio::task::spawn_blocking(move || dialer(port, local, &pids))
                    .await
                    .ok()
                    .flatten();
                connection(net, from, to, sock, target).await;
            });
        }
    });
}

async fn connection(
    net: Arc<Net>,
    from: Option<usize>,
    to: usize,
    sock: TcpStream,
    target: SocketAddr,
) {
    let mut changes = net.changed.subscribe();
    let blocked = |net: &Net| from.is_some_and(|f| net.is_blocked(f, to));
    if blocked(&net) {
        black_hole(sock, &mut changes, || blocked(&net)).await;
        return;
    }
    let Ok(up) = TcpStream::connect(target).await else {
        return;
    };
    let _ = sock.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_r, down_w) = sock.into_split();
    let (up_r, up_w) = up.into_split();
    let n1 = net.clone();
    let n2 = net.clone();
    let there = pump(down_r, up_w, move || {
        from.map_or(Some(Duration::ZERO), |f| {
            (!n1.drops(f, to)).then(|| n1.delay(f, to))
        })
    });
    let back = pump(up_r, down_w, move || {
        from.map_or(Some(Duration::ZERO), |f| {
            (!n2.drops(to, f)).then(|| n2.delay(to, f))
        })
    });
    tokio::select! {
        _ = there => {}
        _ = back => {}
        _ = async {
            while changes.changed().await.is_ok() {
                if blocked(&net) {
                    return;
                }
            }
            std::future::pending::<()>().await
        } => {}
    }
}

/// Swallows what arrives until `blocked` says no more, then closes.
async fn black_hole(
    mut sock: TcpStream,
    changes: &mut watch::Receiver<u64>,
    blocked: impl Fn() -> bool,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        tokio::select! {
            r = sock.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            c = changes.changed() => {
                if c.is_err() || !blocked() {
                    return;
                }
            }
        }
    }
}

/// Copies `r` to `w`, holding each chunk for the delay in force when it
/// was read (`delay`), or losing it and ending there (`delay` says None).
/// Ends when either side closes.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: impl Fn() -> Option<Duration> + Send + 'static,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let Some(delay) = delay() else { return };
                    let at = Instant::now() + delay;
                    if tx.send((at, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    // The writer drains what the reader queued before the reader's end
    // closes the channel.
    tokio::join!(reader, writer);
}

/// Which member dialed the connection whose source port is `port` (to
/// our port `ours`): the member process holding its socket.
fn dialer(port: u16, ours: u16, pids: &[Option<u32>]) -> Option<usize> {
    let inode = socket_inode(port, ours)?;
    let want = format!("socket:[{inode}]");
    for (i, pid) in pids.iter().enumerate() {
        let Some(pid) = pid else { continue };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == want) {
                return Some(i);
            }
        }
    }
    None
}

/// The inode of the loopback socket with local port `local` connected to
/// remote port `remote`, from /proc/net/tcp (and tcp6).
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let mut by_ports: HashMap<(u16, u16), u64> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
            if let (Some(l), Some(r), Ok(inode)) = (port(f[1]), port(f[2]), f[9].parse()) {
                by_ports.insert((l, r), inode);
            }
        }
    }
    by_ports.get(&(local, remote)).copied().filter(|&i| i != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_process_that_dialed_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", ours)).unwrap();
        let (_server, from) = listener.accept().unwrap();
        assert_eq!(from.port(), client.local_addr().unwrap().port());
        let me = Some(std::process::id());
        assert_eq!(dialer(from.port(), ours, &[None, me]), Some(1));
        assert_eq!(dialer(from.port(), ours, &[None]), None);
    }

    #[tokio::test]
    async fn a_block_closes_the_link_and_a_heal_opens_it() {
        let net = Net::new(2);
        net.set_pid(0, Some(std::process::id()));
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        spawn(net.clone(), 1, front, target);
        let echo_once = |mut s: TcpStream| async move {
            s.write_all(b"hi").await.ok()?;
            let mut b = [0u8; 2];
            tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut b))
                .await
                .ok()?
                .ok()?;
            Some((s, b))
        };
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut s, got) = echo_once(s).await.expect("an open link echoes");
        assert_eq!(&got, b"hi");
        net.block(0, 1);
        let mut b = [0u8; 2];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "the link was closed: {r:?}"
        );
        let s = TcpStream::connect(addr).await.unwrap();
        assert!(
            echo_once(s).await.is_none(),
            "a blocked link answers nothing"
        );
        net.heal();
        let s = TcpStream::connect(addr).await.unwrap();
        assert!(echo_once(s).await.is_some(), "a healed link echoes");
        // Dropping everything: what is sent is lost and the link closes.
        net.drop_all(1.0);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"hi").await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "the chunk was lost and the link closed: {r:?}"
        );
        net.heal();
        let s = TcpStream::connect(addr).await.unwrap();
        assert!(echo_once(s).await.is_some(), "a healed link echoes");
    }
}
