//! `LD_PRELOAD` library for the fault harness (`strata-fault`): what it
//! needs to simulate a power loss and a wall-clock jump in a real `strata`
//! process, without root and without a special filesystem.
//!
//! # Journal (power loss)
//! With `STRATA_SHIM_ROOT` (an absolute directory: the member's data dir)
//! and `STRATA_SHIM_JOURNAL` (a file outside it) set, every change the
//! process makes to files and directories strictly inside the root is
//! first appended to the journal, with what it needs to be undone, then
//! made. After a kill -9 the harness reads the journal and undoes what a
//! power loss could have lost (`strata_testkit::powerloss`): data written
//! to a file since its last completed fsync/fdatasync, and names created,
//! renamed or removed in a directory since that directory's last completed
//! fsync. Names removed or replaced are kept as hard links under
//! `<journal>.saved/` so that their contents can come back.
//!
//! The records and their bytes are in the `strata-fault-record` crate,
//! which the replayer reads with.
//!
//! A record is written before its change, under one lock with it, so the
//! journal's order is the order of the changes; a change the process died
//! before making undoes to what is already there. The journal is not
//! fsynced: the process is killed, the machine is not.
//!
//! # Clock
//! With `STRATA_SHIM_CLOCK` naming an 8-byte file, `clock_gettime` adds the
//! little-endian i64 of nanoseconds it holds to the wall clock
//! (`CLOCK_REALTIME` and its variants), read at every call: the harness
//! steps a member's wall clock by rewriting the file. Monotonic clocks are
//! left alone: Linux never steps them, and std's timed waits hand the
//! kernel absolute monotonic deadlines, which a shifted monotonic clock
//! would stretch.
//!
//! Everything else passes through. The library calls the kernel directly
//! (`syscall`) for its own work and for the calls it wraps, so nothing it
//! does comes back into it.
//!
//! Modules: `journal` (the journal and which paths it covers), `files`
//! (the wrapped file calls), `clock` (the shifted wall clock).

#![allow(clippy::missing_safety_doc)]

mod clock;
mod files;
mod journal;
