//! The raft member: one thread drives raft-rs's `RawNode` through its Ready
//! loop.
//!
//! Seams, so that several members can later run in one process over a
//! simulated network and clock without a rewrite:
//! - [`Transport`] carries raft messages to peers (a one-member cluster has
//!   none);
//! - time enters only as [`Input::Tick`] (a ticker thread in production, the
//!   test in a simulation);
//! - [`StateMachine`] applies committed entries (the server's applier over
//!   the MVCC store); this module knows nothing of etcd's requests.
//!
//! Order in each Ready (raft-rs's contract): send messages, apply committed
//! entries that were already persisted, persist new entries and hard state
//! (one WAL fdatasync for the whole batch), send the messages that needed
//! them persisted, advance, apply what that committed, advance apply.

mod confchange;
pub mod error;
mod log;
pub mod readindex;
mod reads;
pub mod storage;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use strata_engine::crash_point;

use raft::eraftpb::{ConfChange, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, StateRole, Storage};
use tokio::sync::oneshot;

use reads::ReadRounds;

pub use error::NodeError;
use error::Result;
use storage::LogStore;

/// Carries messages to other members.
pub trait Transport: Send {
    fn send(&mut self, msgs: Vec<Message>);
    /// What happened to earlier sends that raft must hear about.
    fn reports(&mut self) -> Vec<TransportReport> {
        Vec::new()
    }
}

/// A transport's news for raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportReport {
    /// Messages to this peer were dropped: raft probes it again.
    Unreachable(u64),
    /// A snapshot for this peer could not be sent.
    SnapshotFailed(u64),
    /// The peer holds the snapshot it was sent.
    SnapshotFinished(u64),
}

/// What the member applies committed entries to.
pub trait StateMachine: Send {
    /// Applies one committed normal entry (empty ones included). An error
    /// is a storage failure: the member stops.
    fn apply(&mut self, entry: &Entry) -> strata_engine::Result<()>;
    /// A proposal raft refused (no leader): fail its waiter.
    fn dropped(&mut self, request_id: u64);
    /// The end of a batch of applied entries: results held back until now
    /// may be handed out (waking every waiter of a batch together lets the
    /// gRPC connections write their responses together).
    fn end_batch(&mut self);
    /// Makes everything applied so far durable, records the snapshot marker
    /// in the state machine's db, and returns once both are on disk.
    fn snapshot_taken(
        &mut self,
        mark: &strata_engine::wal::SnapshotMark,
    ) -> strata_engine::Result<()>;
    /// The leader or this member's role changed.
    fn role_changed(&mut self, leader: u64, term: u64, is_leader: bool);
    /// Makes every applied entry durable (before a WAL snapshot marker).
    fn flush(&mut self) -> strata_engine::Result<()>;
    /// Whether the db file a raft snapshot's `data` names is here, whole
    /// (checked before raft may take the snapshot).
    fn has_snapshot(&self, data: &[u8]) -> bool;
    /// Whether a committed conf change may apply (etcd's checks, against
    /// the membership the entries before it made). Nothing changes yet.
    fn check_conf_change(&mut self, entry: &Entry, cc: &ConfChange) -> bool;
    /// Records a committed conf change: its effect on the membership (if
    /// `accepted`, raft having taken it: `conf` is the configuration now),
    /// with the entry's index, in one transaction; answers its proposer.
    fn conf_change_applied(
        &mut self,
        entry: &Entry,
        cc: &ConfChange,
        accepted: bool,
        conf: &ConfState,
    ) -> strata_engine::Result<()>;
    /// Replaces the whole state with a snapshot received from the leader:
    /// `data` is the raft snapshot's data (it names the received db file);
    /// `mark`, its index, term and configuration, is already in the WAL.
    fn install_snapshot(
        &mut self,
        data: &[u8],
        mark: &strata_engine::wal::SnapshotMark,
    ) -> strata_engine::Result<()>;
}

pub enum Input {
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    /// A linearizable read: answered with the index the read must wait for
    /// the applied index to reach.
    ReadIndex(oneshot::Sender<u64>),
    Tick,
    Step(Box<Message>),
    /// A peer's batch of messages, in order (one wake of the loop).
    Steps(Vec<Message>),
    /// A membership change (its `id` is the request's).
    ProposeConfChange(ConfChange),
    /// Whether learner `id` has caught up with the leader (None: this
    /// member is not the leader).
    LearnerReady(u64, oneshot::Sender<Option<bool>>),
    /// Hand leadership to this member (raft's leader transfer).
    TransferLeader(u64),
    Stop,
}

/// Counters other threads read (Status, headers, read waits).
#[derive(Default)]
pub struct NodeStatus {
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    pub applied: AtomicU64,
    /// The raft thread stopped after a storage failure: no more writes.
    pub failed: AtomicBool,
    /// When the current leader became known (ms since the Unix epoch; 0:
    /// never), for etcd's "possibly due to previous leader failure".
    pub leader_since_ms: AtomicU64,
    /// This member was removed from the cluster (it applied its own
    /// removal, or its peers refuse it as removed): it must stop.
    pub removed: AtomicBool,
    /// This member is a learner (its own membership says so).
    pub learner: AtomicBool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct NodeConfig {
    pub id: u64,
    pub pre_vote: bool,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub snapshot_count: u64,
    /// Entries kept in memory behind a snapshot for slow followers.
    pub catch_up_entries: u64,
    /// Applied index the state machine's db already holds.
    pub applied: u64,
    /// The index of the last snapshot marker the db recorded.
    pub snapshot_index: u64,
    /// raft's randomized election timeout range in ticks, [min, max)
    /// (None: raft's default, [election, 2 x election)). A simulation
    /// fixes it per member: raft draws from an unseeded generator.
    pub election_tick_range: Option<(usize, usize)>,
}

pub struct Node<T: Transport, S: StateMachine> {
    raw: RawNode<LogStore>,
    transport: T,
    sm: S,
    status: Arc<NodeStatus>,
    applied_tx: tokio::sync::watch::Sender<u64>,
    conf: ConfState,
    snapshot_count: u64,
    catch_up: u64,
    snapshot_index: u64,
    applied: u64,
    /// Reads waiting for a ReadIndex round.
    reads: ReadRounds,
    /// The leader and role the state machine was last told about.
    last_leader: u64,
    was_leader: bool,
}

impl<T: Transport, S: StateMachine> Node<T, S> {
    pub fn new(
        cfg: &NodeConfig,
        log: LogStore,
        transport: T,
        sm: S,
        status: Arc<NodeStatus>,
        applied_tx: tokio::sync::watch::Sender<u64>,
    ) -> raft::Result<Self> {
        let conf = log.initial_state()?.conf_state;
        let rc = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: cfg.applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 512,
            check_quorum: true,
            pre_vote: cfg.pre_vote,
            min_election_tick: cfg.election_tick_range.map_or(0, |r| r.0),
            max_election_tick: cfg.election_tick_range.map_or(0, |r| r.1),
            ..Default::default()
        };
        rc.validate()?;
        let mut raw = RawNode::new(&rc, log, &log::raft_logger())?;
        if conf.voters == [cfg.id] && conf.learners.is_empty() {
            // Alone: no reason to wait an election timeout.
            raw.campaign()?;
        }
        status.applied.store(cfg.applied, Ordering::Release);
        applied_tx.send_replace(cfg.applied);
        Ok(Node {
            raw,
            transport,
            sm,
            status,
            applied_tx,
            conf,
            snapshot_count: cfg.snapshot_count.max(1),
            catch_up: cfg.catch_up_entries,
            snapshot_index: cfg.snapshot_index,
            applied: cfg.applied,
            // Distinct from the contexts of an earlier run of this member,
            // whose answers may still be on their way.
            reads: ReadRounds::new(now_ms() << 16),
            last_leader: u64::MAX,
            was_leader: false,
        })
    }

    /// Runs until [`Input::Stop`] or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Input>) {
        // The first pass handles what `new` started (a lone member's
        // campaign) without waiting for input.
        let mut wait = Duration::ZERO;
        loop {
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            wait = Duration::from_millis(500);
            let inputs = first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()));
            match self.process(inputs) {
                Ok(false) => {}
                Ok(true) => return,
                Err(e) => {
                    tracing::error!(error = %e, "raft storage failed; this member stops accepting writes");
                    self.status.failed.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// One pass of the loop: takes `inputs`, then handles everything they
    /// caused (persist, send, apply). True if [`Input::Stop`] was among
    /// them. An error is a storage failure: the member must stop. (A
    /// simulation drives members through this, one pass at a time.)
    pub fn process(&mut self, inputs: impl IntoIterator<Item = Input>) -> Result<bool> {
        let mut stop = false;
        for m in inputs {
            match m {
                Input::Propose { id, data } => {
                    if self.raw.propose(Vec::new(), data).is_err() {
                        self.sm.dropped(id);
                    }
                }
                Input::ReadIndex(tx) => self.reads.queue(tx),
                Input::Tick => {
                    self.raw.tick();
                    // raft drops a ReadIndex a leader cannot answer yet
                    // (nothing committed in its term): ask again.
                    if let Some(ctx) = self.reads.inflight() {
                        self.raw.read_index(ctx);
                    }
                }
                Input::Step(msg) => self.step(*msg),
                Input::Steps(msgs) => msgs.into_iter().for_each(|m| self.step(m)),
                Input::ProposeConfChange(cc) => {
                    let id = cc.id;
                    if self.raw.propose_conf_change(Vec::new(), cc).is_err() {
                        self.sm.dropped(id);
                    }
                }
                Input::LearnerReady(id, tx) => {
                    let _ = tx.send(self.learner_ready(id));
                }
                Input::TransferLeader(to) => self.raw.transfer_leader(to),
                Input::Stop => stop = true,
            }
        }
        // A round answered in this pass lets the queued reads start the
        // next one at once (at most two turns: a round just started is
        // not answered before the next pass's input).
        loop {
            if let Some(ctx) = self.reads.start() {
                self.raw.read_index(ctx);
            }
            self.on_ready()?;
            if !self.reads.can_start() {
                break;
            }
        }
        let ss = self.raw.raft.soft_state();
        let term = self.raw.raft.term;
        let is_leader = ss.raft_state == StateRole::Leader;
        if ss.leader_id != self.last_leader || is_leader != self.was_leader {
            self.last_leader = ss.leader_id;
            self.was_leader = is_leader;
            self.status.leader.store(ss.leader_id, Ordering::Release);
            if ss.leader_id != 0 {
                self.status
                    .leader_since_ms
                    .store(now_ms(), Ordering::Release);
            }
            self.sm.role_changed(ss.leader_id, term, is_leader);
            if !is_leader {
                // Reads waiting on a round this member can no longer
                // answer are dropped: their callers get "leader changed".
                self.reads.abandon_inflight();
            }
        }
        self.status.term.store(term, Ordering::Release);
        Ok(stop)
    }

    fn step(&mut self, msg: Message) {
        if msg.msg_type == MessageType::MsgSnapshot
            && !self.sm.has_snapshot(&msg.get_snapshot().data)
        {
            // Its file is gone (a restart cleaned it up, or a newer
            // install): raft must not take it.
            tracing::warn!(
                from = format!("{:x}", msg.from),
                "a raft snapshot whose db file is missing was dropped"
            );
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(error = %e, "raft step");
        }
    }

    /// etcd's isLearnerReady: the learner's log reaches 90% of the
    /// leader's (None: not the leader; an unknown id is "ready", the apply
    /// refuses it).
    fn learner_ready(&self, id: u64) -> Option<bool> {
        if self.raw.raft.state != StateRole::Leader {
            return None;
        }
        let prs = self.raw.raft.prs();
        let leader = prs.get(self.raw.raft.id).map_or(0, |p| p.matched);
        Some(
            prs.get(id)
                .is_none_or(|p| p.matched as f64 >= leader as f64 * 0.9),
        )
    }

    /// Whether raft is this member's leader, and its term.
    pub fn leadership(&self) -> (bool, u64) {
        (self.raw.raft.state == StateRole::Leader, self.raw.raft.term)
    }

    /// The state machine (for a simulation's checks).
    pub fn state_machine(&self) -> &S {
        &self.sm
    }

    /// Hands messages to the transport and tells raft what it reported.
    fn send(&mut self, msgs: Vec<Message>) {
        self.transport.send(msgs);
        for r in self.transport.reports() {
            match r {
                TransportReport::Unreachable(id) => self.raw.report_unreachable(id),
                TransportReport::SnapshotFailed(id) => {
                    self.raw.report_snapshot(id, raft::SnapshotStatus::Failure)
                }
                TransportReport::SnapshotFinished(id) => {
                    self.raw.report_snapshot(id, raft::SnapshotStatus::Finish)
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            crash_point!(raftBeforeLeaderSend);
            self.send(rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot())?;
        }
        self.apply(rd.take_committed_entries())?;
        for rs in rd.take_read_states() {
            self.reads.answered(&rs.request_ctx, rs.index);
        }
        let hs = rd.hs().cloned();
        crash_point!(raftBeforeSave);
        self.raw
            .mut_store()
            .persist(rd.entries(), hs.as_ref(), rd.must_sync())?;
        crash_point!(raftAfterSave);
        if !rd.persisted_messages().is_empty() {
            crash_point!(raftBeforeFollowerSend);
            self.send(rd.take_persisted_messages());
        }
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
            self.status.commit.store(commit, Ordering::Release);
        }
        if !light.messages().is_empty() {
            self.send(light.take_messages());
        }
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.maybe_snapshot()
    }

    /// Applies a committed conf change entry to raft's configuration; its
    /// payload is decoded by `decode` ([`confchange`]: prost, not raft's
    /// protobuf 2).
    fn apply_conf_change<C>(
        &mut self,
        e: &Entry,
        decode: fn(&[u8]) -> std::result::Result<C, String>,
    ) -> Result<()>
    where
        C: raft_proto::ConfChangeI,
    {
        let cc = decode(&e.data).map_err(|reason| NodeError::ConfChangeDecode {
            index: e.index,
            reason,
        })?;
        self.conf =
            self.raw
                .apply_conf_change(&cc)
                .map_err(|error| NodeError::ConfChangeApply {
                    index: e.index,
                    error,
                })?;
        Ok(())
    }

    /// A membership change (v1 entries are the ones members propose):
    /// the state machine checks it, raft takes it if it passed, and the
    /// state machine records the outcome.
    fn apply_member_change(&mut self, e: &Entry) -> Result<()> {
        let cc = confchange::decode_v1(&e.data).map_err(|reason| NodeError::ConfChangeDecode {
            index: e.index,
            reason,
        })?;
        crash_point!(beforeApplyOneConfChange);
        let accepted = self.sm.check_conf_change(e, &cc);
        if accepted {
            self.conf =
                self.raw
                    .apply_conf_change(&cc)
                    .map_err(|error| NodeError::ConfChangeApply {
                        index: e.index,
                        error,
                    })?;
        }
        self.sm.conf_change_applied(e, &cc, accepted, &self.conf)?;
        crash_point!(afterApplyOneConfChange);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in &entries {
            match e.entry_type {
                EntryType::EntryNormal => {
                    crash_point!(beforeApplyOneEntryNormal);
                    self.sm.apply(e)?;
                    crash_point!(afterApplyOneEntryNormal);
                }
                EntryType::EntryConfChange => self.apply_member_change(e)?,
                EntryType::EntryConfChangeV2 => self.apply_conf_change(e, confchange::decode_v2)?,
            }
            self.applied = e.index;
        }
        self.sm.end_batch();
        self.raw.mut_store().set_applied(self.applied, &self.conf);
        self.status.applied.store(self.applied, Ordering::Release);
        self.applied_tx.send_replace(self.applied);
        let commit = self.raw.raft.raft_log.committed;
        self.status.commit.store(commit, Ordering::Release);
        Ok(())
    }

    /// A snapshot from the leader: the WAL records it, the state machine
    /// swaps its db for the received one, and the log before it is let go.
    fn install_snapshot(&mut self, snap: &raft::eraftpb::Snapshot) -> Result<()> {
        crash_point!(raftBeforeSaveSnap);
        let mark = self.raw.mut_store().apply_snapshot(snap)?;
        crash_point!(raftAfterSaveSnap);
        crash_point!(raftBeforeApplySnap);
        self.sm.install_snapshot(&snap.data, &mark)?;
        crash_point!(raftAfterApplySnap);
        self.conf = snap.get_metadata().get_conf_state().clone();
        self.applied = mark.index;
        self.snapshot_index = mark.index;
        self.raw.mut_store().release(mark.index, mark.index)?;
        crash_point!(raftAfterWALRelease);
        self.status.applied.store(self.applied, Ordering::Release);
        // The snapshot's index is committed (Status's raftIndex must not
        // lag the applied index until the next write).
        let commit = self.raw.raft.raft_log.committed.max(mark.index);
        self.status.commit.store(commit, Ordering::Release);
        self.applied_tx.send_replace(self.applied);
        tracing::info!(
            index = mark.index,
            term = mark.term,
            "installed a database snapshot from the leader"
        );
        Ok(())
    }

    /// Every `snapshot_count` applied entries: make the db durable, write a
    /// WAL marker, let the db record it, then drop what it made redundant.
    fn maybe_snapshot(&mut self) -> Result<()> {
        if self.applied < self.snapshot_index + self.snapshot_count {
            return Ok(());
        }
        let index = self.applied;
        let term = self
            .raw
            .store()
            .term(index)
            .map_err(|error| NodeError::Log {
                what: "the term of the applied index",
                error,
            })?;
        self.sm.flush()?;
        let conf = self.conf.clone();
        crash_point!(raftBeforeLocalSnap);
        let mark = self.raw.mut_store().mark_snapshot(index, term, &conf)?;
        self.sm.snapshot_taken(&mark)?;
        crash_point!(raftAfterLocalSnap);
        let keep_after = index.saturating_sub(self.catch_up);
        self.raw.mut_store().release(keep_after, index)?;
        crash_point!(raftAfterLocalWALRelease);
        self.snapshot_index = index;
        tracing::info!(
            index,
            term,
            "raft snapshot taken; older WAL segments released"
        );
        Ok(())
    }
}
