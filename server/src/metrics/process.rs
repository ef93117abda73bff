//! The `process_*` metrics Prometheus clients export, read from Linux's
//! /proc when scraped: CPU seconds, resident and virtual memory, open and
//! maximum file descriptors, start time. Elsewhere they stay 0.

use prometheus::{Gauge, IntGauge, Registry};

pub struct ProcessMetrics {
    cpu: Gauge,
    rss: IntGauge,
    vsize: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start: Gauge,
}

/// Linux's USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s.
const TICKS: f64 = 100.0;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// A `Key:   N kB` line of /proc/self/status, in bytes.
fn status_kb(status: &str, key: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl ProcessMetrics {
    pub(super) fn new() -> ProcessMetrics {
        let g = |n: &str, h: &str| Gauge::new(n, h).unwrap_or_else(|e| panic!("{n}: {e}"));
        let i = |n: &str, h: &str| IntGauge::new(n, h).unwrap_or_else(|e| panic!("{n}: {e}"));
        ProcessMetrics {
            cpu: g(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            ),
            rss: i(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            vsize: i(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: i("process_open_fds", "Number of open file descriptors."),
            max_fds: i(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start: g(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
        }
    }

    pub fn register(&self, r: &Registry) {
        let _ = r.register(Box::new(self.cpu.clone()));
        let _ = r.register(Box::new(self.rss.clone()));
        let _ = r.register(Box::new(self.vsize.clone()));
        let _ = r.register(Box::new(self.open_fds.clone()));
        let _ = r.register(Box::new(self.max_fds.clone()));
        let _ = r.register(Box::new(self.start.clone()));
    }

    pub fn update(&self) {
        if let Some(stat) = read("/proc/self/stat") {
            // Fields after the command (which may hold spaces) in ")".
            let rest: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace()
                .collect();
            // rest[0] is field 3 (state): utime is 14, stime 15, starttime 22.
            let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<f64>().ok());
            if let (Some(u), Some(s)) = (field(14), field(15)) {
                self.cpu.set((u + s) / TICKS);
            }
            let boot = read("/proc/stat").and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            if let (Some(start), Some(boot)) = (field(22), boot) {
                self.start.set(boot + start / TICKS);
            }
        }
        if let Some(status) = read("/proc/self/status") {
            if let Some(v) = status_kb(&status, "VmRSS:") {
                self.rss.set(v);
            }
            if let Some(v) = status_kb(&status, "VmSize:") {
                self.vsize.set(v);
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(rd.count() as i64);
        }
        if let Some(limits) = read("/proc/self/limits") {
            let soft = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok());
            if let Some(v) = soft {
                self.max_fds.set(v);
            }
        }
    }
}
