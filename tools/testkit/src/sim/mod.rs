//! Deterministic simulation: three members in one process, each with its
//! real raft loop, WAL, applier and MVCC store (on temporary dirs, without
//! fsync), over a simulated network and clock that one seeded generator
//! drives. Messages are delayed, reordered, duplicated and dropped; links
//! are cut (partitions); members crash (everything in memory dropped, as
//! kill -9 would) and restart on the same files; a member behind the
//! leader's retained log receives a db snapshot.
//!
//! Checked after every run:
//! - at most one leader per term;
//! - a committed entry is the same (term and data) wherever it is applied;
//! - once healed, every member reaches the same revision and HashKV;
//! - the clients' history (puts, linearizable reads, and a final read of
//!   every key) is linearizable ([`linearizable`], whose own tests show it
//!   refusing bad histories; the server's `stale_reads_are_caught` shows it
//!   catching a member that reads without ReadIndex).
//!
//! The tests that run it are the server's `tests/simulation.rs`; one seed:
//! `STRATA_SIM_SEED=N cargo test -p strata-server --test simulation --
//! --nocapture` (prints its faults). More seeds: `STRATA_SIM_SEEDS=K`
//! (default 100), from `STRATA_SIM_BASE` (default: from the clock,
//! printed). A failing seed prints the command that replays it.
//!
//! Determinism: every choice comes from the seed; raft's election timeout
//! is fixed per member start (raft-rs draws it from an unseeded
//! generator otherwise); time is the simulation's, in ms.
//!
//! Here: the event queue, the network and its faults, the run and its
//! checks; `member` (one simulated member), `clients` (requests and the
//! recorded history).

use crate::linearizable;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Message, MessageType};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use strata_engine::wal::SnapshotMark;
use strata_server::raftnode::storage::conf_to_wal;
use strata_server::raftnode::{Input, TransportReport};
use strata_server::statemachine::snapdir;

mod clients;
mod member;

use clients::Request;
use member::{msg_to_id, Applies, Member, Outbox};

const MEMBERS: usize = 3;
const KEYS: usize = 4;
const CLIENTS: usize = 4;
/// ms of simulated time per raft tick (etcd's default heartbeat).
const TICK: u64 = 100;
/// Faults happen during this much simulated time; then everything heals.
const CHAOS_MS: u64 = 20_000;
/// Clients go on this long after healing, then read every key.
const CALM_MS: u64 = 4_000;
/// A client gives up on a request after this long.
const REQUEST_MS: u64 = 3_000;

#[derive(Debug)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: Box<Message>,
    },
    Tick(usize),
    Client(usize),
    Fault,
    Heal,
    Restart(usize),
}

struct Sim {
    rng: StdRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: HashMap<usize, Ev>,
    next_event: usize,
    members: Vec<Member>,
    /// cut[a][b]: messages from a to b are lost.
    cut: [[bool; MEMBERS]; MEMBERS],
    drop_rate: f64,
    applies: Arc<Mutex<Applies>>,
    leaders: BTreeMap<u64, usize>,
    violations: Vec<String>,
    history: Vec<linearizable::Event>,
    requests: Vec<Option<Request>>,
    next_id: u64,
    next_value: u64,
    /// Reads skip ReadIndex (a bug the checker must catch).
    stale_reads: bool,
    clients_stop: bool,
    final_reads: Vec<Option<usize>>,
    trace: bool,
    _dir: tempfile::TempDir,
}

fn member_args(dir: &Path, name: &str, initial: &str) -> Vec<String> {
    [
        "strata",
        "--name",
        name,
        "--data-dir",
        &dir.display().to_string(),
        "--initial-cluster",
        initial,
        "--initial-cluster-token",
        "sim",
        "--unsafe-no-fsync",
        "--wal-segment-size",
        "4194304",
        "--snapshot-count",
        "60",
        "--snapshot-catchup-entries",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Sim {
    fn new(seed: u64, stale_reads: bool, trace: bool) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let initial: Vec<String> = (0..MEMBERS)
            .map(|i| format!("m{i}=http://127.0.0.{}:2380", i + 1))
            .collect();
        let initial = initial.join(",");
        let members = (0..MEMBERS)
            .map(|i| {
                let d = dir.path().join(format!("m{i}"));
                Member {
                    id: 0,
                    args: member_args(&d, &format!("m{i}"), &initial),
                    dir: d,
                    running: None,
                    out: Outbox::default(),
                    reports: Arc::default(),
                }
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let drop_rate = rng.random_range(0.0..0.1);
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            members,
            cut: [[false; MEMBERS]; MEMBERS],
            drop_rate,
            applies: Arc::default(),
            leaders: BTreeMap::new(),
            violations: Vec::new(),
            history: Vec::new(),
            requests: (0..CLIENTS).map(|_| None).collect(),
            next_id: 1,
            next_value: 0,
            stale_reads,
            clients_stop: false,
            final_reads: Vec::new(),
            trace,
            _dir: dir,
        };
        for i in 0..MEMBERS {
            sim.start(i);
        }
        for c in 0..CLIENTS {
            let at = sim.rng.random_range(0..500);
            sim.at(at, Ev::Client(c));
        }
        let first = sim.rng.random_range(1_000..3_000);
        sim.at(first, Ev::Fault);
        sim
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, ev);
        self.queue.push(Reverse((self.now + delay, self.seq, id)));
    }

    /// `msg` from `from` arrives at `to` after `delay` ms.
    fn deliver(&mut self, delay: u64, from: usize, to: usize, msg: Message) {
        self.at(
            delay,
            Ev::Deliver {
                from,
                to,
                msg: Box::new(msg),
            },
        );
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>6} ms  {}", self.now, what());
        }
    }

    fn start(&mut self, i: usize) {
        let election = self.rng.random_range(10..20);
        let applies = self.applies.clone();
        self.members[i].start(i, election, &applies);
        // Ticks start at a random phase.
        let phase = self.rng.random_range(1..TICK);
        self.at(phase, Ev::Tick(i));
        self.log(|| format!("member {i} started (election after {election} ticks)"));
    }

    fn crash(&mut self, i: usize) {
        self.members[i].running = None;
        self.log(|| format!("member {i} crashed"));
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// One pass of member `i`'s loop with `inputs`, then its messages onto
    /// the network and the checks of what it did.
    fn process(&mut self, i: usize, inputs: Vec<Input>) {
        let Some((node, _)) = self.members[i].running.as_mut() else {
            return;
        };
        match node.process(inputs) {
            Ok(_) => {}
            Err(e) => {
                self.violations
                    .push(format!("member {i}: raft storage failed: {e}"));
                self.members[i].running = None;
                return;
            }
        }
        let (is_leader, term) = node.leadership();
        if is_leader {
            if let Some(&other) = self.leaders.get(&term) {
                if other != i {
                    self.violations.push(format!(
                        "two leaders in term {term}: members {other} and {i}"
                    ));
                }
            } else {
                self.leaders.insert(term, i);
                self.log(|| format!("member {i} leads term {term}"));
            }
        }
        let msgs = std::mem::take(&mut *self.members[i].out.0.lock().unwrap());
        for m in msgs {
            self.network(i, m);
        }
    }

    /// A message from member `from` enters the network.
    fn network(&mut self, from: usize, msg: Message) {
        let Some(to) = self.index_of(msg.to) else {
            return;
        };
        if msg.msg_type == MessageType::MsgSnapshot {
            self.snapshot(from, to, msg);
            return;
        }
        if self.rng.random_bool(self.drop_rate) {
            return;
        }
        let delay = if self.rng.random_bool(0.05) {
            self.rng.random_range(20..200)
        } else {
            self.rng.random_range(1..20)
        };
        // Duplicates: raft takes any message twice, except a forwarded
        // proposal, which would be a second request (the peer stream, one
        // ordered connection, never sends one twice).
        if msg.msg_type != MessageType::MsgPropose && self.rng.random_bool(0.01) {
            let later = delay + self.rng.random_range(1..50);
            self.deliver(later, from, to, msg.clone());
        }
        self.deliver(delay, from, to, msg);
    }

    /// A db snapshot from `from` to `to`: copied from the sender's db into
    /// the receiver's snap dir (as the Peer/Snapshot stream does), or
    /// failed if the link is cut or the receiver is down.
    fn snapshot(&mut self, from: usize, to: usize, mut msg: Message) {
        let ok = !self.cut[from][to] && self.members[to].up();
        let report = if ok {
            let md = msg.get_snapshot().get_metadata().clone();
            let mark = SnapshotMark {
                index: md.index,
                term: md.term,
                conf_state: conf_to_wal(md.get_conf_state()),
            };
            let snap_dir = self.members[to].dir.join("member").join("snap");
            let part = snap_dir.join(snapdir::part_name(md.term, md.index));
            let (_, shared) = self.members[from].running.as_ref().unwrap();
            let mut f = std::fs::File::create(&part).unwrap();
            shared.store.store().backend().snapshot(&mut f).unwrap();
            drop(f);
            snapdir::finish(&part, &mark).unwrap();
            msg.mut_snapshot().data = snapdir::file_name(md.term, md.index).into_bytes().into();
            self.log(|| format!("db snapshot at {} from member {from} to {to}", md.index));
            let delay = self.rng.random_range(5..50);
            self.deliver(delay, from, to, msg);
            TransportReport::SnapshotFinished(msg_to_id(&self.members[to]))
        } else {
            TransportReport::SnapshotFailed(msg_to_id(&self.members[to]))
        };
        self.members[from].reports.lock().unwrap().push(report);
    }

    fn fault(&mut self) {
        let kind = self.rng.random_range(0..3);
        match kind {
            0 => {
                // Isolate one member (often the leader).
                let leader = self.leaders.values().next_back().copied();
                let i = match leader {
                    Some(l) if self.rng.random_bool(0.5) => l,
                    _ => self.rng.random_range(0..MEMBERS),
                };
                for j in 0..MEMBERS {
                    if j != i {
                        self.cut[i][j] = true;
                        self.cut[j][i] = true;
                    }
                }
                let heal = self.rng.random_range(500..4_000);
                self.log(|| format!("member {i} cut off for {heal} ms"));
                self.at(heal, Ev::Heal);
            }
            1 => {
                // One way only: i hears nobody.
                let i = self.rng.random_range(0..MEMBERS);
                for j in 0..MEMBERS {
                    if j != i {
                        self.cut[j][i] = true;
                    }
                }
                let heal = self.rng.random_range(500..3_000);
                self.log(|| format!("member {i} deaf for {heal} ms"));
                self.at(heal, Ev::Heal);
            }
            _ => {
                let up: Vec<usize> = (0..MEMBERS).filter(|&i| self.members[i].up()).collect();
                if up.len() == MEMBERS {
                    let i = up[self.rng.random_range(0..up.len())];
                    self.crash(i);
                    let back = self.rng.random_range(200..3_000);
                    self.at(back, Ev::Restart(i));
                }
            }
        }
        let next = self.rng.random_range(500..2_500);
        if self.now + next < CHAOS_MS {
            self.at(next, Ev::Fault);
        }
    }

    fn heal(&mut self) {
        self.cut = [[false; MEMBERS]; MEMBERS];
        self.log(|| "links healed".into());
    }

    fn step(&mut self) -> bool {
        let Some(Reverse((at, _, id))) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        let ev = self.events.remove(&id).unwrap();
        match ev {
            Ev::Deliver { from, to, msg } => {
                if !self.cut[from][to] && self.members[to].up() {
                    self.process(to, vec![Input::Step(msg)]);
                }
            }
            Ev::Tick(i) => {
                if self.members[i].up() {
                    self.process(i, vec![Input::Tick]);
                    self.at(TICK, Ev::Tick(i));
                }
            }
            Ev::Client(c) => {
                if self.requests[c].is_none() {
                    self.client(c);
                }
            }
            Ev::Fault => self.fault(),
            Ev::Heal => self.heal(),
            Ev::Restart(i) => {
                if !self.members[i].up() {
                    self.start(i);
                }
            }
        }
        self.settle_all();
        true
    }

    fn run_until(&mut self, t: u64) {
        while self
            .queue
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= t)
        {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// The whole run; the violations found.
    fn run(mut self) -> Vec<String> {
        self.run_until(CHAOS_MS);
        self.heal();
        for i in 0..MEMBERS {
            if !self.members[i].up() {
                self.start(i);
            }
        }
        self.run_until(CHAOS_MS + CALM_MS);
        // Clients stop; then a linearizable read of every key.
        self.clients_stop = true;
        let deadline = self.now + 10_000;
        while self.requests.iter().any(Option::is_some) && self.now < deadline {
            if !self.step() {
                break;
            }
        }
        self.final_reads = vec![None; KEYS];
        self.clients_stop = false;
        for key in 0..KEYS {
            let member = self.rng.random_range(0..MEMBERS);
            for _attempt in 0..20 {
                if self.final_reads[key].is_some() {
                    break;
                }
                self.clients_stop = true;
                self.read(0, member, key);
                let until = self.now + REQUEST_MS + 100;
                while self.requests[0].is_some() && self.now < until {
                    if !self.step() {
                        break;
                    }
                }
                self.requests[0] = None;
            }
            if self.final_reads[key].is_none() {
                self.violations
                    .push(format!("no final read of k{key} succeeded"));
            }
        }
        self.converge();
        let mut v = std::mem::take(&mut self.violations);
        v.extend(std::mem::take(&mut self.applies.lock().unwrap().violations));
        let history: Vec<linearizable::Event> = self
            .history
            .iter()
            .filter(|e| !e.key.is_empty())
            .cloned()
            .collect();
        if let Err(e) = linearizable::check(&history) {
            if self.trace {
                for h in history
                    .iter()
                    .filter(|h| e.contains(&format!("{:?}", h.key)))
                {
                    eprintln!("{:>6} .. {:>6?}  {} {:?}", h.invoke, h.ret, h.key, h.op);
                }
            }
            v.push(format!("history not linearizable: {e}"));
        }
        v
    }

    /// Runs until every member has applied the same revision, and checks
    /// their HashKV agrees.
    fn converge(&mut self) {
        let deadline = self.now + 20_000;
        loop {
            let states: Vec<(i64, u64)> = self
                .members
                .iter()
                .map(|m| {
                    let (_, sh) = m.running.as_ref().unwrap();
                    (
                        sh.store.store().revision(),
                        sh.status.applied.load(std::sync::atomic::Ordering::Acquire),
                    )
                })
                .collect();
            let commit = self
                .members
                .iter()
                .map(|m| {
                    let (_, sh) = m.running.as_ref().unwrap();
                    sh.status.commit.load(std::sync::atomic::Ordering::Acquire)
                })
                .max()
                .unwrap_or(0);
            let same = states.windows(2).all(|w| w[0].0 == w[1].0);
            if same && states.iter().all(|s| s.1 >= commit) {
                break;
            }
            if self.now >= deadline || !self.step() {
                self.violations.push(format!(
                    "members did not converge: (revision, applied) {states:?}, commit {commit}"
                ));
                return;
            }
        }
        let hashes: Vec<(u32, i64)> = self
            .members
            .iter()
            .map(|m| {
                let (_, sh) = m.running.as_ref().unwrap();
                let (h, rev, _) = sh.store.store().hash_kv(0).unwrap();
                (h, rev)
            })
            .collect();
        if hashes.windows(2).any(|w| w[0] != w[1]) {
            self.violations
                .push(format!("members differ: (hash, revision) {hashes:?}"));
        }
        // Every bucket, not only the keys: members that applied the same
        // entries hold the same leases, alarms, members and auth.
        let states: Vec<(u64, strata_engine::mvcc::StateHash)> = self
            .members
            .iter()
            .map(|m| {
                let (_, sh) = m.running.as_ref().unwrap();
                let applied = sh.status.applied.load(std::sync::atomic::Ordering::Acquire);
                (applied, sh.state_hash().unwrap())
            })
            .collect();
        let applied_alike = states.windows(2).all(|w| w[0].0 == w[1].0);
        if applied_alike && states.windows(2).any(|w| w[0].1 != w[1].1) {
            let differ: Vec<_> = states
                .iter()
                .map(|(a, h)| (a, h.hash, h.differing(&states[0].1)))
                .collect();
            self.violations.push(format!(
                "members' whole states differ: (applied, hash, buckets unlike the first's) {differ:?}"
            ));
        }
    }
}

/// Runs one seed: its violations (empty when every check held).
/// `stale_reads` makes members answer linearizable reads without ReadIndex
/// (to show the checks catch it); `trace` prints every fault.
pub fn run_seed(seed: u64, stale_reads: bool, trace: bool) -> Vec<String> {
    Sim::new(seed, stale_reads, trace).run()
}

/// The seeds to run: `STRATA_SIM_BASE` (default: from the clock) and
/// `STRATA_SIM_SEEDS` (default 100).
pub fn seeds() -> (u64, u64) {
    let count = std::env::var("STRATA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let base = std::env::var("STRATA_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                % 1_000_000
                * 1000
        });
    (base, count)
}
