//! Library part of the tools: measurements shared by `strata-util` and the
//! criterion benchmarks.
#![forbid(unsafe_code)]

pub mod defragbench;
pub mod loadgen;
pub mod mvccbench;
pub mod walbench;
