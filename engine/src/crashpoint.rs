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

pub use fail;

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
    ($name:literal) => {
        $crate::crashpoint::fail::fail_point!($name, |_| $crate::crashpoint::crash($name))
    };
}
