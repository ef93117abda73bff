//! Installing a database snapshot received from the leader: the received
//! file (sealed with the snapshot's mark, see [`crate::statemachine::snapdir`]) replaces
//! `member/db`, and everything kept in memory beside the db is rebuilt
//! from it: the MVCC index and revisions (watchers catch up from the new
//! file), the lessor, the alarms, the members, and the consistent index.
//!
//! Invariants:
//! - The WAL holds the snapshot's mark before this runs (the raft thread
//!   writes it first), so a crash after the rename restarts on the new db
//!   and a crash before it finishes the rename at start-up.
//! - No backend commit can write the old consistent index into the new
//!   file: the pre-commit hook's index is cleared (0: the hook writes
//!   nothing) under the batch lock before the swap, and set to the new
//!   file's own index after it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use strata_engine::wal::SnapshotMark;
use strata_engine::Error;

use super::Applier;
use crate::statemachine::meta;
use crate::statemachine::snapdir;

impl Applier {
    fn snap_dir(&self) -> PathBuf {
        self.store()
            .backend()
            .path()
            .parent()
            .map(|p| p.join("snap"))
            .unwrap_or_default()
    }

    /// The received db file a raft snapshot's data names.
    pub(super) fn snapshot_file(&self, data: &[u8]) -> Option<PathBuf> {
        snapdir::resolve(&self.snap_dir(), data)
    }

    pub(super) fn install(
        &mut self,
        data: &[u8],
        mark: &SnapshotMark,
    ) -> strata_engine::Result<()> {
        let backend = self.store().backend().clone();
        let snap_dir = self.snap_dir();
        let file = snapdir::resolve(&snap_dir, data).ok_or_else(|| {
            Error::Internal(format!(
                "a raft snapshot names no received db file ({} bytes of data)",
                data.len()
            ))
        })?;
        let cells = self.cells.clone();
        backend.replace_with(&file, || {
            cells.index.store(0, Ordering::Release);
            cells.term.store(0, Ordering::Release);
        })?;
        let view = backend.read();
        let read = |key| meta::read_u64(&view, key).map_err(|e| Error::Internal(format!("{e:#}")));
        let ci = read(meta::CONSISTENT_INDEX_KEY)?;
        let term = read(meta::TERM_KEY)?;
        let recorded = meta::read_mark(&view)
            .map_err(|e| Error::Internal(format!("{e:#}")))?
            .map(|m| m.index);
        drop(view);
        if recorded != Some(mark.index) || ci < mark.index {
            return Err(Error::Internal(format!(
                "the installed snapshot records mark {recorded:?} and index {ci}, not the snapshot at {}",
                mark.index
            )));
        }
        cells.term.store(term, Ordering::Release);
        cells.index.store(ci, Ordering::Release);
        self.ci = ci;

        strata_engine::crash_point!(applyAfterSwapSnapshot);
        let leased = self.shared.store.reload()?;
        self.shared
            .restore_leases_and_alarms(leased)
            .map_err(|e| Error::Internal(format!("rebuilding leases and alarms: {e:#}")))?;
        self.shared
            .settle_storage_version()
            .map_err(|e| Error::Internal(format!("settling the storage version: {e:#}")))?;
        let members = crate::statemachine::membership::load(&backend)
            .map_err(|e| Error::Internal(format!("reading the members: {e:#}")))?;
        let removed = crate::statemachine::membership::load_removed(&backend.read())
            .map_err(|e| Error::Internal(format!("reading the removed members: {e:#}")))?;
        let me = self.shared.member_id;
        let learner = members.iter().any(|m| m.id == me && m.is_learner);
        self.membership.replace(members);
        self.membership.set_removed(removed);
        self.shared.status.learner.store(learner, Ordering::Release);
        if self.membership.is_removed(me) {
            self.membership.mark_self_removed();
        }
        snapdir::remove_up_to(&snap_dir, mark.index);
        tracing::info!(
            index = mark.index,
            consistent_index = ci,
            revision = self.store().revision(),
            "database snapshot swapped in; index, leases, alarms and members rebuilt"
        );
        Ok(())
    }
}
