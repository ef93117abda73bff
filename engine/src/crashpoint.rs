//! Crash points: named places where a fault test can make the process
//! die at once, as kill -9 would there (abort: no destructor runs, nothing
//! buffered is flushed). They are the `fail` crate's fail points, compiled
//! in only when its `failpoints` feature is on (this crate's and the
//! server's test builds, or the `failpoints` feature); otherwise
//! [`crash_point!`] expands to nothing. A point is armed with the fail
//! crate's syntax, e.g. `FAILPOINTS=raftAfterSave=return` in the
//! environment of a `strata` process, or `fail::cfg` in a test.
//!
//! The names are etcd's gofail names where etcd has the same place
//! (`raftBeforeSave`, `beforeCommit`, `defragBeforeRename`, ...), so that a
//! fault schedule written for etcd reads the same here.
//!
//! Invariant: [`NAMES`] is the one list of crash points. [`crash_point!`]
//! takes a name from [`points`], so a misspelled point does not compile;
//! the fault harness sweeps [`NAMES`] and refuses a name not in it, and a
//! member built with fail points refuses to start when `FAILPOINTS` arms an
//! unknown one ([`unknown_armed`]).

pub use fail;

macro_rules! crash_points {
    ($($name:ident,)*) => {
        /// Every crash point, one constant each (etcd's gofail spelling).
        #[allow(non_upper_case_globals)]
        pub mod points {
            $(pub const $name: &str = stringify!($name);)*
        }

        /// Every crash point's name.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

crash_points! {
    // The raft loop (server/src/raftnode), as etcd's raft.go names them.
    raftBeforeSave,
    raftAfterSave,
    raftBeforeLeaderSend,
    raftBeforeFollowerSend,
    raftBeforeSaveSnap,
    raftAfterSaveSnap,
    raftBeforeApplySnap,
    raftAfterApplySnap,
    raftAfterWALRelease,
    raftBeforeLocalSnap,
    raftAfterLocalSnap,
    raftAfterLocalWALRelease,
    // Applying entries and swapping in a received db snapshot.
    beforeApplyOneEntryNormal,
    afterApplyOneEntryNormal,
    beforeApplyOneConfChange,
    afterApplyOneConfChange,
    applyAfterSwapSnapshot,
    // Db snapshots streamed between members.
    snapshotSendMidway,
    snapshotReceiveMidway,
    // The backend's commit, defrag and scheduled compaction (bbolt/mvcc).
    beforeCommit,
    afterCommit,
    dbBeforeFsync,
    defragBeforeCopy,
    defragBeforeRename,
    compactBeforeCommitScheduledCompact,
    compactAfterCommitScheduledCompact,
    compactAfterDeleteBatch,
    compactBeforeSetFinishedCompact,
    compactAfterSetFinishedCompact,
    // The WAL's sync.
    walBeforeFsync,
}

/// The crash points a `FAILPOINTS` value (`name=action;name=action`) arms
/// that are not in [`NAMES`]. Fail points of the engine's own tests
/// (`module::place` names) are not crash points and are left alone.
pub fn unknown_armed(failpoints: &str) -> Vec<String> {
    failpoints
        .split(';')
        .filter_map(|item| item.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.contains("::") && !NAMES.contains(name))
        .map(str::to_string)
        .collect()
}

/// Ends the process at once, saying which point did it.
#[cold]
pub fn crash(name: &str) -> ! {
    eprintln!("crash point {name}: the process ends here (fault test)");
    std::process::abort()
}

/// A named crash point; armed (any action that returns, such as
/// `return`), the process aborts here.
#[macro_export]
macro_rules! crash_point {
    ($name:ident) => {{
        let _point: &str = $crate::crashpoint::points::$name;
        $crate::crashpoint::fail::fail_point!(_point, |_| $crate::crashpoint::crash(_point))
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_unknown_ones_are_named() {
        let mut sorted = NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), NAMES.len());
        assert_eq!(points::walBeforeFsync, "walBeforeFsync");
        assert!(unknown_armed("raftAfterSave=return;walBeforeFsync=return").is_empty());
        assert!(unknown_armed("btree::commit::sync=return").is_empty());
        assert_eq!(
            unknown_armed("raftAfterSave=return;raftAfterSvae=return"),
            vec!["raftAfterSvae".to_string()]
        );
    }
}
