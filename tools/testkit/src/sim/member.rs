//! One simulated member: its real raft loop, WAL, applier and store
//! (bootstrapped on its own dir), the transport that hands its messages to
//! the simulation, and the recorder of what it applied (for the
//! "same entry everywhere" check).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Parser;
use prost::Message as _;
use raft::eraftpb::{Entry, Message};
use strata_engine::wal::SnapshotMark;
use strata_proto::etcdserverpb as pb;
use strata_server::raftnode::{Node, StateMachine, Transport, TransportReport};
use strata_server::server::bootstrap::bootstrap_with;
use strata_server::statemachine::apply::Applier;
use strata_server::statemachine::state::Shared;
use strata_server::Config;

/// Messages a member's raft sent, waiting for the network.
#[derive(Default, Clone)]
pub(super) struct Outbox(pub(super) Arc<Mutex<Vec<Message>>>);

pub(super) struct SimTransport {
    pub(super) out: Outbox,
    pub(super) reports: Arc<Mutex<Vec<TransportReport>>>,
}

impl Transport for SimTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        self.out.0.lock().unwrap().extend(msgs);
    }

    fn reports(&mut self) -> Vec<TransportReport> {
        std::mem::take(&mut *self.reports.lock().unwrap())
    }
}

/// What the members applied, by index: (term, data), for the check that a
/// committed entry is the same everywhere.
#[derive(Default)]
pub(super) struct Applies {
    pub(super) by_index: BTreeMap<u64, (u64, Vec<u8>, usize)>,
    pub(super) violations: Vec<String>,
}

/// The applier, recording each normal entry it is given.
pub(super) struct Recorder {
    pub(super) inner: Applier,
    pub(super) member: usize,
    pub(super) applies: Arc<Mutex<Applies>>,
}

impl StateMachine for Recorder {
    fn apply(&mut self, e: &Entry) -> strata_engine::Result<()> {
        if std::env::var("STRATA_SIM_APPLIES").is_ok() {
            let r = pb::InternalRaftRequest::decode(e.data.as_ref()).unwrap_or_default();
            let put = r.put.map(|p| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&p.key),
                    String::from_utf8_lossy(&p.value)
                )
            });
            eprintln!(
                "apply member {} index {} term {} {put:?}",
                self.member, e.index, e.term
            );
        }
        {
            let mut a = self.applies.lock().unwrap();
            match a.by_index.get(&e.index) {
                Some((term, data, by)) if *term != e.term || data[..] != e.data[..] => {
                    let v = format!(
                        "entry {} applied by member {} as term {}, by member {by} as term {term}",
                        e.index, self.member, e.term
                    );
                    a.violations.push(v);
                }
                Some(_) => {}
                None => {
                    a.by_index
                        .insert(e.index, (e.term, e.data.to_vec(), self.member));
                }
            }
        }
        self.inner.apply(e)
    }
    fn dropped(&mut self, request_id: u64) {
        self.inner.dropped(request_id)
    }
    fn end_batch(&mut self) {
        self.inner.end_batch()
    }
    fn snapshot_taken(&mut self, mark: &SnapshotMark) -> strata_engine::Result<()> {
        self.inner.snapshot_taken(mark)
    }
    fn role_changed(&mut self, leader: u64, term: u64, is_leader: bool) {
        self.inner.role_changed(leader, term, is_leader)
    }
    fn flush(&mut self) -> strata_engine::Result<()> {
        self.inner.flush()
    }
    fn install_snapshot(&mut self, data: &[u8], mark: &SnapshotMark) -> strata_engine::Result<()> {
        self.inner.install_snapshot(data, mark)
    }
    fn has_snapshot(&self, data: &[u8]) -> bool {
        self.inner.has_snapshot(data)
    }
    fn check_conf_change(&mut self, e: &Entry, cc: &raft::eraftpb::ConfChange) -> bool {
        self.inner.check_conf_change(e, cc)
    }
    fn conf_change_applied(
        &mut self,
        e: &Entry,
        cc: &raft::eraftpb::ConfChange,
        accepted: bool,
        conf: &raft::eraftpb::ConfState,
    ) -> strata_engine::Result<()> {
        self.inner.conf_change_applied(e, cc, accepted, conf)
    }
}

pub(super) struct Member {
    pub(super) id: u64,
    pub(super) dir: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) running: Option<(Node<SimTransport, Recorder>, Arc<Shared>)>,
    pub(super) out: Outbox,
    pub(super) reports: Arc<Mutex<Vec<TransportReport>>>,
}

impl Member {
    pub(super) fn start(&mut self, index: usize, election: usize, applies: &Arc<Mutex<Applies>>) {
        let cfg = Config::parse_from(&self.args)
            .server_config()
            .expect("the simulated member's flags");
        let (out, reports) = (self.out.clone(), self.reports.clone());
        out.0.lock().unwrap().clear();
        reports.lock().unwrap().clear();
        // The previous incarnation's threads let go of its files at once,
        // but not always before this line.
        let mut tries = 0;
        let b = loop {
            let (out, reports) = (out.clone(), reports.clone());
            match bootstrap_with(
                &cfg,
                Some((election, election + 1)),
                None,
                move |_| SimTransport { out, reports },
                |inner| Recorder {
                    inner,
                    member: index,
                    applies: applies.clone(),
                },
            ) {
                Ok(b) => break b,
                Err(e) if tries < 200 && format!("{e:#}").contains("ocked") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("member {index} does not start: {e:#}"),
            }
        };
        self.id = b.shared.member_id;
        self.running = Some((b.node, b.shared));
    }

    pub(super) fn up(&self) -> bool {
        self.running.is_some()
    }
}

pub(super) fn msg_to_id(m: &Member) -> u64 {
    m.id
}
