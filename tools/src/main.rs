//! `strata-util`: offline tools for Strata's data files.
//!
//! - `inspect info|check|stats|pages|page|buckets|keys|get`: the bbolt CLI's
//!   inspection verbs on a B+tree file;
//! - `compact SRC DST`: copy live data into a new, smaller file;
//! - `bench`: the engine benchmark, with `bbolt bench`'s flags and output;
//! - `waldump DIR`: a WAL's segments and records (like etcd-dump-logs);
//! - `bench-wal`: WAL appends beside the disk's own fdatasync rate and
//!   sequential bandwidth;
//! - `bench-mvcc`: the MVCC store at scale (puts, ranges, memory);
//! - `bench-defrag`: online defragmentation and the stall it causes;
//! - `check --data-dir`, `defrag --data-dir`: a stopped member's WAL and
//!   db checked together, its db defragmented (like etcdutl);
//! - `hashkv FILE [--rev]`: a stopped member's KV history hash (etcdutl
//!   3.6's hashkv), as the member's HashKV answers;
//! - `migrate --data-dir --target-version X.Y`: a stopped member's storage
//!   schema moved to another release's (etcdutl migrate);
//! - `snapshot save|status|restore`: backups, as etcdutl makes and reads
//!   them (bbolt files with a SHA-256 trailer; etcd's own backups too).
#![forbid(unsafe_code)]

mod bench;
mod datadir;
mod display;
mod hashkv;
mod inspect;
mod lock;
mod migrate;
mod snapshot;
mod waldump;

use strata_tools::{defragbench, mvccbench, walbench};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata-util",
    version,
    about = "Offline tools for Strata data files"
)]
struct Cli {
    /// Time to wait to obtain a file lock on a db file, 0 to block
    /// indefinitely (etcdutl's --timeout).
    #[arg(long, global = true, default_value = "10s", value_parser = strata_server::duration::parse_duration)]
    timeout: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect a B+tree database file (like the bbolt CLI).
    Inspect {
        #[command(subcommand)]
        verb: inspect::Verb,
    },
    /// Copy the live data of SRC into a new, compact file DST.
    Compact { src: PathBuf, dst: PathBuf },
    /// Engine benchmark with bbolt bench's flags and output.
    Bench(bench::BenchArgs),
    /// Segments and records of a WAL directory (like etcd-dump-logs).
    Waldump(waldump::WalDumpArgs),
    /// Quick WAL append benchmark beside the disk's fdatasync rate and
    /// sequential write bandwidth, measured in the same run.
    BenchWal(walbench::BenchWalArgs),
    /// The MVCC store at scale: puts, ranges, index rebuild and memory.
    BenchMvcc(mvccbench::BenchMvccArgs),
    /// Online defragmentation of a large backend, with the longest stall a
    /// concurrent writer and reader see.
    BenchDefrag(defragbench::BenchDefragArgs),
    /// Backups: save from a live member, status, restore into a new
    /// member's data dir (like etcdutl snapshot).
    Snapshot {
        #[command(subcommand)]
        verb: snapshot::Verb,
    },
    /// Check a stopped member's data dir: WAL records and chain, db pages,
    /// and that the two agree.
    Check(datadir::DataDirArgs),
    /// Defragment a stopped member's db.
    Defrag(datadir::DataDirArgs),
    /// The KV history hash of a stopped member's db file (etcdutl hashkv).
    Hashkv(hashkv::HashKvArgs),
    /// Move a stopped member's storage schema to another release's
    /// (etcdutl migrate).
    Migrate(migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lock::set_timeout(cli.timeout);
    let result = match cli.command {
        Command::Inspect { verb } => inspect::run(verb),
        Command::Compact { src, dst } => inspect::compact(&src, &dst),
        Command::Bench(args) => bench::run(&args),
        Command::Waldump(args) => waldump::run(&args),
        Command::BenchWal(args) => walbench::run(&args),
        Command::BenchMvcc(args) => mvccbench::run(&args),
        Command::BenchDefrag(args) => defragbench::run(&args),
        Command::Snapshot { verb } => snapshot::run(verb),
        Command::Check(args) => datadir::check(&args),
        Command::Defrag(args) => datadir::defrag(&args),
        Command::Hashkv(args) => hashkv::run(&args),
        Command::Migrate(args) => migrate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata-util: {e:#}");
            ExitCode::from(2)
        }
    }
}
