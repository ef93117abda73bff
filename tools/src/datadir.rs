//! A stopped member's whole data dir: `strata-util check --data-dir`
//! (the WAL's records and chain, the db's pages, and whether the two agree)
//! and `strata-util defrag --data-dir` (the db rewritten compactly, as
//! `etcdutl defrag` does). Both refuse a data dir a running member holds.
//!
//! What check looks at:
//! - every WAL segment's records (checksums, the CRC chain across
//!   segments, torn tails), entry indexes that only move forward, and the
//!   snapshot markers;
//! - the db's B+tree (every page reachable once, checksums, key order);
//! - agreement: the db's consistent index is covered by the WAL (a db
//!   ahead of its log lost the log), and the marker the db records is one
//!   the WAL has.
//!
//! Problems are printed with their file and offset; the exit code is 1
//! when any was found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_engine::btree::{self, Database, Options};
use strata_engine::wal::dump::scan;
use strata_engine::wal::{Record, SnapshotMark};

#[derive(Args)]
pub struct DataDirArgs {
    /// The member's data dir (holding member/wal and member/db).
    #[arg(long)]
    pub data_dir: PathBuf,
}

fn u64_meta(db: &Database, key: &[u8]) -> Result<u64> {
    let rx = db.begin_read();
    let Some(meta) = rx.bucket(rx.root(), Bucket::Meta.name())? else {
        return Ok(0);
    };
    Ok(match rx.get(meta, key)? {
        Some(v) => u64::from_be_bytes(v.try_into().unwrap_or([0; 8])),
        None => 0,
    })
}

fn mark_meta(db: &Database) -> Result<Option<SnapshotMark>> {
    let rx = db.begin_read();
    let Some(meta) = rx.bucket(rx.root(), Bucket::Meta.name())? else {
        return Ok(None);
    };
    Ok(rx
        .get(meta, b"strata_raft_snapshot")?
        .and_then(SnapshotMark::decode))
}

/// Refuses a data dir whose WAL a running member has locked.
pub(crate) fn not_running(wal: &Path) -> Result<()> {
    let lock = wal.join("LOCK");
    if let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
    {
        if fs4::FileExt::try_lock(&f).is_err() {
            anyhow::bail!("{} is in use by a running member", wal.display());
        }
        let _ = fs4::FileExt::unlock(&f);
    }
    Ok(())
}

pub fn check(a: &DataDirArgs) -> Result<ExitCode> {
    let wal_dir = a.data_dir.join("member").join("wal");
    let db_path = a.data_dir.join("member").join("db");
    not_running(&wal_dir)?;
    let mut problems: Vec<String> = Vec::new();

    let segments = scan(&wal_dir).with_context(|| format!("reading {}", wal_dir.display()))?;
    if segments.is_empty() {
        problems.push(format!("{}: no WAL segments", wal_dir.display()));
    }
    let bar = indicatif::ProgressBar::new(segments.len() as u64);
    let (mut last_index, mut entries) = (0u64, 0u64);
    let mut marks: Vec<u64> = Vec::new();
    for seg in &segments {
        bar.inc(1);
        if let Some(p) = &seg.problem {
            problems.push(format!("{} at offset {}: {p}", seg.path.display(), seg.end));
        }
        for r in &seg.records {
            match &r.record {
                Record::Entry(e) => {
                    // A new leader may overwrite a tail: an index may go
                    // back, never skip ahead.
                    if last_index != 0 && e.index > last_index + 1 {
                        problems.push(format!(
                            "{} at offset {}: entry {} follows entry {} (a gap)",
                            seg.path.display(),
                            r.offset,
                            e.index,
                            last_index
                        ));
                    }
                    last_index = e.index;
                    entries += 1;
                }
                Record::Snapshot(s) => {
                    marks.push(s.index);
                    last_index = last_index.max(s.index);
                }
                _ => {}
            }
        }
    }
    bar.finish_and_clear();

    let db = crate::lock::waiting(&db_path, || Database::open(&db_path, Options::default()))?;
    for p in btree::check(&db)? {
        problems.push(format!("{}: {p}", db_path.display()));
    }
    let ci = u64_meta(&db, b"consistent_index")?;
    let mark = mark_meta(&db)?;
    if ci > last_index {
        problems.push(format!(
            "{}: consistent index {ci} is past the WAL's last index {last_index} (the log lost entries the db applied)",
            db_path.display()
        ));
    }
    if let Some(m) = &mark {
        if !marks.contains(&m.index) && marks.iter().all(|&x| x < m.index) {
            problems.push(format!(
                "{}: the db's snapshot marker {} is not in the WAL (markers: {marks:?})",
                db_path.display(),
                m.index
            ));
        }
    }
    let info = db.info();
    println!(
        "WAL: {} segment(s), {entries} entries, last index {last_index}, snapshot markers {marks:?}",
        segments.len()
    );
    println!(
        "db: {} pages of {} bytes, consistent index {ci}, snapshot marker {}",
        info.page_count,
        info.page_size,
        mark.map_or("none".to_string(), |m| m.index.to_string())
    );
    if problems.is_empty() {
        println!("OK");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("{p}");
        }
        println!("{} problem(s) found", problems.len());
        Ok(ExitCode::from(1))
    }
}

pub fn defrag(a: &DataDirArgs) -> Result<ExitCode> {
    let wal_dir = a.data_dir.join("member").join("wal");
    let db_path = a.data_dir.join("member").join("db");
    not_running(&wal_dir)?;
    let backend = crate::lock::waiting(&db_path, || {
        Backend::open(BackendConfig::new(db_path.clone()))
    })?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("defragmenting {}", db_path.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let stats = backend.defrag()?;
    backend.close()?;
    spinner.finish_and_clear();
    println!(
        "Finished defragmenting etcd data[{}] ({} -> {} bytes)",
        a.data_dir.display(),
        stats.size_before,
        stats.size_after
    );
    Ok(ExitCode::SUCCESS)
}
