//! Why the raft thread stops: the storage under it failed (the WAL or the
//! db: the member refuses writes from then on), raft-rs refused an
//! operation on its own log, or a committed conf change could not be
//! decoded or applied (every member would apply it the same way, so it is
//! never skipped: skipping would leave this member's membership behind the
//! cluster's).

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] strata_engine::Error),
    #[error("raft log: {what}: {error}")]
    Log {
        what: &'static str,
        error: raft::Error,
    },
    #[error("conf change at index {index} does not decode: {reason}")]
    ConfChangeDecode { index: u64, reason: String },
    #[error("conf change at index {index} cannot be applied: {error}")]
    ConfChangeApply { index: u64, error: raft::Error },
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;
