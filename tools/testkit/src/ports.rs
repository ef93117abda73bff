//! Free loopback ports for what a test must name before a process binds
//! (peer URLs in `--initial-cluster`, the fault harness's proxies).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// `n` different free loopback ports, for URLs a test must name before
/// the member starts (peer URLs in `--initial-cluster`). They come from
/// below the kernel's ephemeral range, which `bind(0)` and outgoing
/// connections draw from, so no other test's member or client can take
/// one between this pick and the member's bind; never from 20000-20100
/// (etcd's e2e harness), and never the same port twice in one process
/// until the range is used up (a long fault campaign then reuses the
/// ports of clusters long gone; each is still checked free).
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (21000u16, ephemeral_low.max(22000));
    let span = u32::from(high - low);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Start where this process's id points, so that test binaries running
    // side by side start apart.
    let mut out = Vec::new();
    for round in 0..2 {
        if round == 1 {
            if out.len() == n {
                break;
            }
            given.clear();
            given.extend(out.iter().copied());
        }
        let mut at = std::process::id() % span;
        for _ in 0..span {
            if out.len() == n {
                break;
            }
            at = (at + 7919) % span;
            let port = low + at as u16;
            if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            given.insert(port);
            out.push(port);
        }
    }
    assert_eq!(
        out.len(),
        n,
        "free loopback ports below the ephemeral range"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_outside_etcds_range() {
        let a = free_ports(5);
        let b = free_ports(5);
        let mut all: Vec<u16> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|p| !(20000..=20100).contains(p)));
        for p in all {
            TcpListener::bind(("127.0.0.1", p)).expect("free");
        }
    }
}
