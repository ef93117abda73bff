//! Raft's log storage: raft-rs's in-memory log (what raft reads) in front
//! of the engine's WAL (what survives a crash).
//!
//! Invariants:
//! - Entries and hard state reach the WAL, and are synced when raft says
//!   they must be, before the messages and acknowledgements that depend on
//!   them leave this member ([`LogStore::persist`]).
//! - A snapshot marker is written to the WAL, and synced, before anything
//!   refers to it; WAL segments are released only below a marker the state
//!   machine's db has recorded.
//! - The in-memory log keeps the entries after the last snapshot (minus a
//!   catch-up margin once peers exist).
//! - A snapshot raft sends a follower is at the applied index, which the
//!   db copy sent with it holds (or passes): the db is copied after the
//!   message is made, and the applied index only grows.
//! - A snapshot received from the leader reaches the WAL (its mark,
//!   synced) before raft's in-memory log restarts at it and before the db
//!   file is swapped.

use super::error::{NodeError, Result};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};
use strata_engine::wal;

pub fn entry_to_wal(e: &Entry) -> wal::Entry {
    wal::Entry {
        index: e.index,
        term: e.term,
        entry_type: e.entry_type as u8,
        data: e.data.to_vec(),
    }
}

pub fn entry_from_wal(e: wal::Entry) -> Entry {
    let mut out = Entry {
        index: e.index,
        term: e.term,
        data: e.data.into(),
        ..Default::default()
    };
    out.entry_type = match e.entry_type {
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    };
    out
}

pub fn conf_to_wal(c: &ConfState) -> wal::ConfState {
    wal::ConfState {
        voters: c.voters.clone(),
        learners: c.learners.clone(),
        voters_outgoing: c.voters_outgoing.clone(),
        learners_next: c.learners_next.clone(),
        auto_leave: c.auto_leave,
    }
}

pub fn conf_from_wal(c: &wal::ConfState) -> ConfState {
    ConfState {
        voters: c.voters.clone(),
        learners: c.learners.clone(),
        voters_outgoing: c.voters_outgoing.clone(),
        learners_next: c.learners_next.clone(),
        auto_leave: c.auto_leave,
        ..Default::default()
    }
}

pub struct LogStore {
    mem: MemStorage,
    wal: wal::Wal,
    /// The state machine's applied index and the configuration there: what
    /// a snapshot for a follower describes.
    applied: u64,
    conf: ConfState,
}

impl LogStore {
    /// Builds the in-memory log from what the WAL held when opened at
    /// `mark` (with `newer_conf`, the configuration membership changes
    /// applied after the marker made, if the db holds any). `applied` is the state machine's consistent index: entries up
    /// to it were committed (they were applied), whatever the saved hard
    /// state says.
    pub fn restore(
        wal: wal::Wal,
        mark: &wal::SnapshotMark,
        rec: wal::Recovered,
        applied: u64,
        newer_conf: Option<wal::ConfState>,
    ) -> raft::Result<LogStore> {
        let mem = MemStorage::new();
        let conf = conf_from_wal(newer_conf.as_ref().unwrap_or(&mark.conf_state));
        {
            let mut core = mem.wl();
            if mark.index > 0 {
                let mut snap = Snapshot::default();
                let md = snap.mut_metadata();
                md.index = mark.index;
                md.term = mark.term;
                md.set_conf_state(conf_from_wal(&mark.conf_state));
                core.apply_snapshot(snap)?;
            }
            core.set_conf_state(conf.clone());
            let entries: Vec<Entry> = rec.entries.into_iter().map(entry_from_wal).collect();
            let last = entries.last().map_or(mark.index, |e| e.index);
            core.append(&entries)?;
            let mut hs = HardState {
                term: rec.hard_state.term,
                vote: rec.hard_state.vote,
                commit: rec.hard_state.commit,
                ..Default::default()
            };
            hs.commit = hs.commit.max(applied.min(last)).max(mark.index);
            hs.term = hs.term.max(mark.term);
            core.set_hardstate(hs);
        }
        Ok(LogStore {
            mem,
            wal,
            applied: applied.max(mark.index),
            conf,
        })
    }

    /// Saves entries and the hard state to the WAL (synced if `sync`), then
    /// makes the entries visible to raft.
    pub fn persist(&mut self, entries: &[Entry], hs: Option<&HardState>, sync: bool) -> Result<()> {
        let wal_hs = hs.map(|h| wal::HardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        });
        let wal_entries: Vec<wal::Entry> = entries.iter().map(entry_to_wal).collect();
        if !wal_entries.is_empty() || wal_hs.is_some() {
            self.wal.save(wal_hs.as_ref(), &wal_entries)?;
        }
        if sync {
            let started = std::time::Instant::now();
            self.wal.sync()?;
            crate::metrics::global()
                .wal_fsync
                .observe(started.elapsed().as_secs_f64());
        }
        let mut core = self.mem.wl();
        if !entries.is_empty() {
            core.append(entries).map_err(|error| NodeError::Log {
                what: "appending entries",
                error,
            })?;
        }
        if let Some(h) = hs {
            core.set_hardstate(h.clone());
        }
        Ok(())
    }

    /// Records the commit index raft reported after an advance (not synced:
    /// a lost commit index is recomputed by raft).
    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        let hs = {
            let mut core = self.mem.wl();
            core.mut_hard_state().commit = commit;
            core.hard_state().clone()
        };
        self.persist(&[], Some(&hs), false)
    }

    /// Writes a snapshot marker at `index` (applied and durable in the db)
    /// and syncs it.
    pub fn mark_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: &ConfState,
    ) -> Result<wal::SnapshotMark> {
        let mark = wal::SnapshotMark {
            index,
            term,
            conf_state: conf_to_wal(conf),
        };
        self.wal.save_snapshot(&mark)?;
        self.wal.sync()?;
        Ok(mark)
    }

    /// The state machine applied up to `index`, where the configuration is
    /// `conf`.
    pub fn set_applied(&mut self, index: u64, conf: &ConfState) {
        self.applied = index;
        if self.conf != *conf {
            self.conf = conf.clone();
        }
    }

    /// Takes a snapshot received from the leader: its mark is written to
    /// the WAL and synced, then raft's in-memory log restarts at it.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<wal::SnapshotMark> {
        let md = snap.get_metadata();
        let mark = wal::SnapshotMark {
            index: md.index,
            term: md.term,
            conf_state: conf_to_wal(md.get_conf_state()),
        };
        self.wal.save_snapshot(&mark)?;
        self.wal.sync()?;
        self.mem
            .wl()
            .apply_snapshot(snap.clone())
            .map_err(|error| NodeError::Log {
                what: "installing a snapshot",
                error,
            })?;
        self.applied = md.index;
        self.conf = md.get_conf_state().clone();
        Ok(mark)
    }

    /// Drops in-memory entries up to `keep_after` and WAL segments below the
    /// recorded snapshot `index`.
    pub fn release(&mut self, keep_after: u64, index: u64) -> Result<()> {
        let first = self.mem.first_index().unwrap_or(1);
        if keep_after >= first {
            let last = self.mem.last_index().unwrap_or(0);
            let upto = (keep_after + 1).min(last + 1);
            if upto > first {
                let _ = self.mem.wl().compact(upto);
            }
        }
        Ok(self.wal.release_before(index)?)
    }

    pub fn wal_dir(&self) -> &std::path::Path {
        self.wal.dir()
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// A snapshot at the applied index (raft's own in-memory storage would
    /// use the commit index, which the db may not hold yet).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.applied;
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        let md = snap.mut_metadata();
        md.index = index;
        md.term = self.mem.term(index)?;
        md.set_conf_state(self.conf.clone());
        Ok(snap)
    }
}
