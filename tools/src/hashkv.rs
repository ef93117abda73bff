//! `strata-util hashkv <db>`: etcdutl's `hashkv` (etcd 3.6): the KV history
//! hash of a stopped member's db file, as the member's own HashKV computes
//! it (the same CRC-32C over the key bucket up to a revision), with the
//! revision hashed and the compact revision. Opening the store finishes a
//! compaction the db had scheduled, as etcdutl's does.
//!
//! Output as etcdutl prints it: simple (`hash, hash revision, compact
//! revision`), table, or JSON (`hash`, `hashRevision`, `compactRevision`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::Store;

use crate::snapshot::Format;

#[derive(Args)]
pub struct HashKvArgs {
    /// The db file (a stopped member's member/db).
    pub file: PathBuf,
    /// Maximum revision to hash (default: latest revision).
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
    pub write_out: Format,
}

pub fn run(a: &HashKvArgs) -> Result<ExitCode> {
    if !a.file.is_file() {
        anyhow::bail!("{} is not a file", a.file.display());
    }
    let backend = crate::lock::waiting(&a.file, || {
        Backend::open(BackendConfig::new(a.file.clone()))
    })?;
    let store =
        Store::open(backend.clone()).with_context(|| format!("reading {}", a.file.display()))?;
    let (hash, revision, compact) = store
        .hash_kv(a.rev)
        .with_context(|| format!("hashing {} at revision {}", a.file.display(), a.rev))?;
    drop(store);
    backend.close()?;
    // At an explicit revision etcd reports that revision as hashed.
    let hashed = if a.rev > 0 { a.rev } else { revision };
    match a.write_out {
        Format::Simple => println!("{hash}, {hashed}, {compact}"),
        Format::Json => {
            println!(r#"{{"hash":{hash},"hashRevision":{hashed},"compactRevision":{compact}}}"#)
        }
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_style(comfy_table::presets::ASCII_FULL_CONDENSED);
            t.set_header(["HASH", "HASH REVISION", "COMPACT REVISION"]);
            t.add_row([hash.to_string(), hashed.to_string(), compact.to_string()]);
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
