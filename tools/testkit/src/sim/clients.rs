//! The simulation's clients: puts and linearizable reads sent to members,
//! settled as their answers arrive, and recorded in the history the
//! linearizability checker reads.

use crate::linearizable;

use prost::Message as _;
use rand::RngExt;
use strata_proto::etcdserverpb as pb;
use strata_server::raftnode::Input;
use strata_server::statemachine::state::{Applied, ApplyResult};
use tokio::sync::oneshot;

use super::*;

/// A client's request in flight.
pub(super) enum Pending {
    Put {
        rx: oneshot::Receiver<ApplyResult>,
    },
    ReadIndex {
        key: usize,
        rx: oneshot::Receiver<u64>,
    },
    ReadWait {
        key: usize,
        index: u64,
    },
}

pub(super) struct Request {
    pub(super) member: usize,
    pub(super) invoke: u64,
    pub(super) pending: Pending,
    /// Its place in the history (puts are recorded when sent).
    pub(super) event: Option<usize>,
}

impl Sim {
    pub(super) fn record(&mut self, key: usize, op: linearizable::Op) -> usize {
        self.history.push(linearizable::Event {
            key: format!("k{key}"),
            op,
            invoke: self.now,
            ret: None,
        });
        self.history.len() - 1
    }

    /// Client `c` starts its next request.
    pub(super) fn client(&mut self, c: usize) {
        if self.clients_stop {
            return;
        }
        let up: Vec<usize> = (0..MEMBERS).filter(|&i| self.members[i].up()).collect();
        if up.is_empty() {
            self.at(100, Ev::Client(c));
            return;
        }
        let member = up[self.rng.random_range(0..up.len())];
        let key = self.rng.random_range(0..KEYS);
        if self.rng.random_bool(0.5) {
            self.put(c, member, key);
        } else {
            self.read(c, member, key);
        }
    }

    pub(super) fn put(&mut self, c: usize, member: usize, key: usize) {
        self.next_value += 1;
        let value = format!("v{}", self.next_value);
        let id = self.next_id;
        self.next_id += 1;
        let req = pb::InternalRaftRequest {
            header: Some(pb::RequestHeader {
                id,
                ..Default::default()
            }),
            put: Some(pb::PutRequest {
                key: format!("k{key}").into_bytes(),
                value: value.clone().into_bytes(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (_, shared) = self.members[member].running.as_ref().unwrap();
        let rx = shared.waiters.register(id);
        let event = self.record(key, linearizable::Op::Write(value.clone()));
        self.requests[c] = Some(Request {
            member,
            invoke: self.now,
            pending: Pending::Put { rx },
            event: Some(event),
        });
        self.process(
            member,
            vec![Input::Propose {
                id,
                data: req.encode_to_vec(),
            }],
        );
        self.settle(c);
    }

    pub(super) fn read(&mut self, c: usize, member: usize, key: usize) {
        if self.stale_reads {
            self.requests[c] = Some(Request {
                member,
                invoke: self.now,
                pending: Pending::ReadWait { key, index: 0 },
                event: None,
            });
            self.settle(c);
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.requests[c] = Some(Request {
            member,
            invoke: self.now,
            pending: Pending::ReadIndex { key, rx },
            event: None,
        });
        self.process(member, vec![Input::ReadIndex(tx)]);
        self.settle(c);
    }

    /// Moves client `c`'s request on if it can; when it ends, schedules the
    /// client's next one.
    pub(super) fn settle(&mut self, c: usize) {
        let Some(mut r) = self.requests[c].take() else {
            return;
        };
        let down = !self.members[r.member].up();
        let timed_out = self.now >= r.invoke + REQUEST_MS;
        enum Next {
            Keep,
            Done,
        }
        let next = match &mut r.pending {
            Pending::Put { rx, .. } => match rx.try_recv() {
                Ok(Ok(Applied::Put(p))) => {
                    let what = r
                        .event
                        .map(|e| format!("{} {:?}", self.history[e].key, self.history[e].op));
                    self.log(|| {
                        format!(
                            "client {c} put {what:?} on member {} done at revision {}",
                            r.member,
                            p.header.as_ref().map_or(0, |h| h.revision)
                        )
                    });
                    if let Some(e) = r.event {
                        self.history[e].ret = Some(self.now);
                    }
                    Next::Done
                }
                Ok(Err(strata_server::errors::EtcdError::NoLeader)) => {
                    // Refused by raft (no leader): never applied.
                    if let Some(e) = r.event {
                        self.history[e].op = linearizable::Op::Read(None);
                        self.history[e].key = String::new();
                    }
                    Next::Done
                }
                Ok(other) => {
                    self.violations.push(format!("a put answered {other:?}"));
                    Next::Done
                }
                Err(oneshot::error::TryRecvError::Closed) => Next::Done,
                Err(oneshot::error::TryRecvError::Empty) if down || timed_out => Next::Done,
                Err(oneshot::error::TryRecvError::Empty) => Next::Keep,
            },
            Pending::ReadIndex { key, rx } => match rx.try_recv() {
                Ok(index) => {
                    r.pending = Pending::ReadWait { key: *key, index };
                    self.requests[c] = Some(r);
                    return self.settle(c);
                }
                Err(oneshot::error::TryRecvError::Empty) if !(down || timed_out) => Next::Keep,
                Err(_) => Next::Done,
            },
            Pending::ReadWait { key, index } => {
                if down || timed_out {
                    Next::Done
                } else {
                    let (_, shared) = self.members[r.member].running.as_ref().unwrap();
                    let applied = shared
                        .status
                        .applied
                        .load(std::sync::atomic::Ordering::Acquire);
                    if applied < *index {
                        Next::Keep
                    } else {
                        let got = shared
                            .store
                            .store()
                            .range(&strata_engine::mvcc::RangeRequest {
                                key: format!("k{key}").into_bytes(),
                                ..Default::default()
                            })
                            .unwrap();
                        let value = got
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8(kv.value.clone()).unwrap());
                        let key = *key;
                        self.log(|| {
                            format!(
                                "client {c} read k{key} on member {} at index {index} (applied {applied}): {value:?}",
                                r.member
                            )
                        });
                        let e = self.record(key, linearizable::Op::Read(value));
                        self.history[e].invoke = r.invoke;
                        self.history[e].ret = Some(self.now);
                        if let Some(slot) = self.final_reads.get_mut(key) {
                            if slot.is_none() && self.clients_stop {
                                *slot = Some(e);
                            }
                        }
                        Next::Done
                    }
                }
            }
        };
        match next {
            Next::Keep => self.requests[c] = Some(r),
            Next::Done => {
                let pause = self.rng.random_range(0..50);
                self.at(pause, Ev::Client(c));
            }
        }
    }

    pub(super) fn settle_all(&mut self) {
        for c in 0..CLIENTS {
            self.settle(c);
        }
    }
}
