#!/usr/bin/env python3
"""Scale benchmark: strata and etcd 3.5 side by side on one machine.

Each server in turn (fresh data dir, one member; alternating order when
--rounds > 1) is loaded with --keys keys of --value bytes (a second revision
for half of them), then measured:

  load rate (puts/s, 128 clients); RSS at rest and its heap part per key;
  one unary Range of the first --range-keys keys: time and the server's
  peak memory growth; the same over every key through KV.RangeStream
  (etcd 3.5 has none); `etcdctl snapshot save`: throughput and the server's
  growth (anchor: the disk's O_DIRECT read rate of the db file);
  physical compaction of every old revision under a 1-client put probe
  (latencies recorded from the call to its answer only): the probe's p99
  and worst against an idle 3 s window's; defrag under the same probe:
  defrag time, the probe's worst; kill -9 and restart: time to the first
  accepted put, RSS after it; a learner added to the member and caught up
  through a db snapshot: time until it can be promoted, each member's peak
  RSS above its rest.

Memory is sampled from /proc/PID/status every 20 ms (VmRSS: everything
resident, the mapped db included; RssAnon: the heap). Prints one table
(strata, etcd, ratio; medians when rounds > 1) and writes the raw figures as
JSON next to the data.

  usage: tools/scripts/scale.py [--keys 4000000] [--quick] [--rounds 1]
         (after `cargo build --release -p strata-server -p strata-tools`)
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MB = 1 << 20
# Members and probes to stop however the run ends.
RUNNING = set()
PROBES = set()


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if not 20000 <= p <= 20100:
            return p


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


class Peak:
    """Samples VmRSS and RssAnon of some processes until stopped."""

    def __init__(self, pids):
        self.pids = pids
        self.base = {p: (status_kb(p, "VmRSS"), status_kb(p, "RssAnon")) for p in pids}
        self.peak = dict(self.base)
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.is_set():
            for p in self.pids:
                r, a = status_kb(p, "VmRSS"), status_kb(p, "RssAnon")
                pr, pa = self.peak[p]
                self.peak[p] = (max(pr, r), max(pa, a))
            time.sleep(0.02)

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        return {p: (self.peak[p][0] - self.base[p][0], self.peak[p][1] - self.base[p][1])
                for p in self.pids}


def run(cmd, timeout=3600, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


class Member:
    def __init__(self, kind, binary, root, name, cluster=None, state="new"):
        self.kind, self.binary, self.name = kind, binary, name
        self.dir = os.path.join(root, name)
        self.client, self.peer = free_port(), free_port()
        self.cluster = cluster or f"{name}=http://127.0.0.1:{self.peer}"
        self.state = state
        self.proc = None

    @property
    def ep(self):
        return f"127.0.0.1:{self.client}"

    def start(self):
        args = [
            self.binary, "--name", self.name, "--data-dir", self.dir,
            "--listen-client-urls", f"http://127.0.0.1:{self.client}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.client}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}",
            "--initial-cluster", self.cluster,
            "--initial-cluster-state", self.state,
            "--quota-backend-bytes", str(16 << 30),
        ]
        log = open(os.path.join(os.path.dirname(self.dir), f"{self.name}.log"), "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        RUNNING.add(self)
        return self.proc.pid

    def kill9(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def db(self):
        # etcd keeps it under snap/, strata beside the WAL.
        for p in (os.path.join(self.dir, "member", "snap", "db"),
                  os.path.join(self.dir, "member", "db")):
            if os.path.exists(p):
                return p
        raise FileNotFoundError(f"no db file under {self.dir}")


def etcdctl(ep, *args, timeout=3600, check=True):
    env = dict(os.environ, ETCDCTL_API="3")
    return run(["etcdctl", "--endpoints", ep, "--command-timeout", f"{timeout}s", *args],
               timeout=timeout + 30, check=check, env=env)


def first_put(ep, deadline_s=600):
    """Seconds until a put is accepted (polled)."""
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        r = etcdctl(ep, "put", "scale-probe", "1", timeout=1, check=False)
        if r.returncode == 0:
            return time.time() - t0
        time.sleep(0.02)
    raise RuntimeError(f"{ep}: no put accepted in {deadline_s} s")


def bench(args, *cmd, timeout=7200):
    out = run([args.bench, *cmd], timeout=timeout).stdout
    return parse_report(out)


def parse_report(out):
    rep = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            rep["rps"] = float(line.split()[1])
        elif line.startswith("Slowest:"):
            rep["max"] = float(line.split()[1])
        elif line.startswith("99% in"):
            rep["p99"] = float(line.split()[2])
        elif line.startswith("Errors:"):
            rep["errors"] = int(line.split()[1])
        elif line.startswith("{"):
            rep.update(json.loads(line))
    return rep


class Probe:
    """A 1-client put load, warm before its window: latencies are recorded
    between begin() and stop() (strata-bench --start-file, --stop-file)."""

    def __init__(self, args, ep, tag):
        self.start_file = os.path.join(args.dir, f"start-{tag}")
        self.stop_file = os.path.join(args.dir, f"stop-{tag}")
        for f in (self.start_file, self.stop_file):
            if os.path.exists(f):
                os.remove(f)
        self.p = subprocess.Popen(
            [args.bench, "--endpoints", ep, "--clients", "1", "--start-file", self.start_file,
             "--stop-file", self.stop_file, "put", "--total", str(10**9), "--key-size", "16",
             "--val-size", str(args.value), "--key-space-size", "1000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        PROBES.add(self.p)
        time.sleep(1.0)

    def begin(self):
        open(self.start_file, "w").close()
        time.sleep(0.02)

    def stop(self):
        time.sleep(0.02)
        open(self.stop_file, "w").close()
        out, _ = self.p.communicate(timeout=120)
        PROBES.discard(self.p)
        return parse_report(out)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def measure(args, kind, binary, round_no):
    root = os.path.join(args.dir, f"{kind}-{round_no}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    m = Member(kind, binary, root, "m0")
    res = {}
    m.start()
    first_put(m.ep, 60)
    ep = m.ep
    n = args.keys
    common = ["--endpoints", ep, "--conns", "8", "--clients", "128"]
    print(f"[{kind}] loading {n} keys x {args.value} B", flush=True)
    rep = bench(args, *common, "put", "--total", str(n), "--key-space-size", str(n),
                "--sequential-keys", "--key-size", "16", "--val-size", str(args.value))
    res["load_puts_per_s"] = rep["rps"]
    bench(args, *common, "put", "--total", str(n // 2), "--key-space-size", str(n),
          "--sequential-keys", "--key-size", "16", "--val-size", str(args.value))
    time.sleep(5)
    res["rest_rss_mb"] = status_kb(m.pid, "VmRSS") / MB
    res["rest_heap_b_per_key"] = status_kb(m.pid, "RssAnon") / n
    res["db_mb"] = os.path.getsize(m.db()) / MB

    print(f"[{kind}] unary range of {min(n, args.range_keys)} keys", flush=True)
    peak = Peak([m.pid])
    t0 = time.time()
    rep = bench(args, "--endpoints", ep, "scan", "--limit", str(min(n, args.range_keys)))
    res["range_s"] = time.time() - t0
    g = peak.stop()[m.pid]
    res["range_mb"] = rep.get("bytes", 0) / MB
    res["range_rss_growth_mb"], res["range_heap_growth_mb"] = g[0] / MB, g[1] / MB

    print(f"[{kind}] RangeStream of every key", flush=True)
    peak = Peak([m.pid])
    t0 = time.time()
    r = run([args.bench, "--endpoints", ep, "scan", "--stream"], check=False, timeout=7200)
    if r.returncode == 0:
        rep = parse_report(r.stdout)
        res["stream_s"] = time.time() - t0
        res["stream_mb"] = rep.get("bytes", 0) / MB
        g = peak.stop()[m.pid]
        res["stream_rss_growth_mb"], res["stream_heap_growth_mb"] = g[0] / MB, g[1] / MB
    else:
        peak.stop()
        res["stream_error"] = (r.stderr or r.stdout).strip().splitlines()[-1:]

    print(f"[{kind}] snapshot save", flush=True)
    snap = os.path.join(root, "snapshot.db")
    peak = Peak([m.pid])
    t0 = time.time()
    etcdctl(ep, "snapshot", "save", snap)
    dt = time.time() - t0
    g = peak.stop()[m.pid]
    res["snapshot_mb_per_s"] = os.path.getsize(snap) / MB / dt
    res["snapshot_rss_growth_mb"], res["snapshot_heap_growth_mb"] = g[0] / MB, g[1] / MB
    os.remove(snap)
    t0 = time.time()
    run(["dd", f"if={m.db()}", "of=/dev/null", "bs=4M", "iflag=direct"])
    res["disk_read_mb_per_s"] = os.path.getsize(m.db()) / MB / (time.time() - t0)

    print(f"[{kind}] compaction under a 1-client put probe", flush=True)
    probe = Probe(args, ep, f"{kind}-{round_no}-i")
    probe.begin()
    time.sleep(3)
    rep = probe.stop()
    res["probe_idle_p99_ms"], res["probe_idle_max_ms"] = rep["p99"] * 1000, rep["max"] * 1000
    st = json.loads(etcdctl(ep, "endpoint", "status", "-w", "json").stdout)
    rev = st[0]["Status"]["header"]["revision"]
    probe = Probe(args, ep, f"{kind}-{round_no}-c")
    probe.begin()
    t0 = time.time()
    etcdctl(ep, "compact", str(rev), "--physical")
    res["compact_s"] = time.time() - t0
    rep = probe.stop()
    res["compact_probe_p99_ms"], res["compact_probe_max_ms"] = rep["p99"] * 1000, rep["max"] * 1000

    print(f"[{kind}] defrag under the probe", flush=True)
    probe = Probe(args, ep, f"{kind}-{round_no}-d")
    probe.begin()
    t0 = time.time()
    etcdctl(ep, "defrag")
    res["defrag_s"] = time.time() - t0
    rep = probe.stop()
    res["defrag_probe_p99_ms"], res["defrag_probe_max_ms"] = rep["p99"] * 1000, rep["max"] * 1000

    print(f"[{kind}] kill -9 and restart", flush=True)
    m.kill9()
    m.start()
    res["restart_first_put_s"] = first_put(ep)
    time.sleep(2)
    res["restart_rss_mb"] = status_kb(m.pid, "VmRSS") / MB

    print(f"[{kind}] a learner catches up", flush=True)
    l = Member(kind, binary, root, "m1")
    cluster = f"m0=http://127.0.0.1:{m.peer},m1=http://127.0.0.1:{l.peer}"
    out = etcdctl(ep, "member", "add", "m1", "--learner",
                  f"--peer-urls=http://127.0.0.1:{l.peer}", "-w", "json").stdout
    lid = json.loads(out)["member"]["ID"]
    l.cluster, l.state = cluster, "existing"
    time.sleep(1)
    leader_pid = m.pid
    t0 = time.time()
    l.start()
    peak = Peak([leader_pid, l.pid])
    promoted = None
    while time.time() - t0 < 3600:
        r = etcdctl(ep, "member", "promote", format(lid, "x"), timeout=5, check=False)
        if r.returncode == 0:
            promoted = time.time() - t0
            break
        time.sleep(0.2)
    time.sleep(3)
    g = peak.stop()
    rest_learner = status_kb(l.pid, "VmRSS")
    res["learner_promotable_s"] = promoted
    res["learner_sender_peak_mb"] = g[leader_pid][0] / MB
    res["learner_receiver_peak_over_rest_mb"] = (peak.peak[l.pid][0] - rest_learner) / MB
    res["learner_receiver_peak_mb"] = peak.peak[l.pid][0] / MB
    l.stop()
    m.stop()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return res


ROWS = [
    ("load_puts_per_s", "load rate (puts/s, 128 clients)", "higher"),
    ("db_mb", "db size after load (MB)", None),
    ("rest_rss_mb", "RSS at rest after load (MB)", "lower"),
    ("rest_heap_b_per_key", "heap at rest per key (B)", "lower"),
    ("range_mb", "unary Range: response (MB)", None),
    ("range_s", "unary Range: time (s)", "lower"),
    ("range_rss_growth_mb", "unary Range: server RSS growth (MB)", "lower"),
    ("range_heap_growth_mb", "unary Range: server heap growth (MB)", "lower"),
    ("stream_mb", "RangeStream of every key: bytes (MB)", None),
    ("stream_s", "RangeStream: time (s)", "lower"),
    ("stream_rss_growth_mb", "RangeStream: server RSS growth (MB)", "lower"),
    ("stream_heap_growth_mb", "RangeStream: server heap growth (MB)", "lower"),
    ("snapshot_mb_per_s", "snapshot save (MB/s)", "higher"),
    ("disk_read_mb_per_s", "  anchor: disk O_DIRECT read of the db (MB/s)", None),
    ("snapshot_rss_growth_mb", "snapshot save: server RSS growth (MB)", "lower"),
    ("snapshot_heap_growth_mb", "snapshot save: server heap growth (MB)", "lower"),
    ("probe_idle_p99_ms", "1-client put probe, idle 3 s: p99 (ms)", "lower"),
    ("probe_idle_max_ms", "  worst (ms)", "lower"),
    ("compact_s", "compaction of every old revision (s)", "lower"),
    ("compact_probe_p99_ms", "  put p99 during it (ms)", "lower"),
    ("compact_probe_max_ms", "  worst put during it (ms)", "lower"),
    ("defrag_s", "defrag (s)", "lower"),
    ("defrag_probe_p99_ms", "  put p99 during it (ms)", "lower"),
    ("defrag_probe_max_ms", "  worst put during it (ms)", "lower"),
    ("restart_first_put_s", "kill -9, restart: first put (s)", "lower"),
    ("restart_rss_mb", "  RSS after it (MB)", "lower"),
    ("learner_promotable_s", "learner: until promotable (s)", "lower"),
    ("learner_sender_peak_mb", "  sender's peak RSS above rest (MB)", "lower"),
    ("learner_receiver_peak_over_rest_mb", "  receiver's peak RSS above its rest (MB)", "lower"),
]


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=4_000_000)
    ap.add_argument("--value", type=int, default=1024)
    ap.add_argument("--range-keys", type=int, default=800_000,
                    help="keys in the unary Range (a gRPC message is at most 2 GiB)")
    ap.add_argument("--quick", action="store_true", help="200,000 keys")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/strata-scale")
    ap.add_argument("--strata", default=os.path.join(ROOT, "target/release/strata"))
    ap.add_argument("--etcd", default=shutil.which("etcd-3.5") or "/usr/local/bin/etcd-3.5")
    ap.add_argument("--bench", default=os.path.join(ROOT, "target/release/strata-bench"))
    ap.add_argument("--only", choices=["strata", "etcd"])
    ap.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = ap.parse_args()
    if args.quick:
        args.keys = 200_000
    os.makedirs(args.dir, exist_ok=True)
    kinds = [("strata", args.strata), ("etcd", args.etcd)]
    if args.only:
        kinds = [k for k in kinds if k[0] == args.only]
    results = {k: [] for k, _ in kinds}
    try:
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind, binary in order:
                results[kind].append(measure(args, kind, binary, r))
                with open(os.path.join(args.dir, "results.json"), "w") as f:
                    json.dump({"args": vars(args), "results": results}, f, indent=1)
    finally:
        for p in list(PROBES):
            p.kill()
        for m in list(RUNNING):
            m.kill9()
    ver = run([args.etcd, "--version"], check=False).stdout.splitlines()[:1]
    print(f"\n{args.keys:,} keys x {args.value} B, {args.rounds} round(s); etcd: {ver}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| | strata | etcd 3.5 | strata/etcd |")
    print("|---|---|---|---|")
    for key, label, _ in ROWS:
        s = median([r.get(key) for r in results.get("strata", [])])
        e = median([r.get(key) for r in results.get("etcd", [])])
        ratio = f"{s / e:.2f}x" if s is not None and e else "n/a"
        print(f"| {label} | {fmt(s)} | {fmt(e)} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
