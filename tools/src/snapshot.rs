//! `strata-util snapshot save|status|restore`, as etcdutl (and etcdctl
//! 3.4) name and print them. A backup is a bbolt file plus its SHA-256
//! (see `strata_server::embed::restore`), so these work on etcd's backups too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use sha2::Digest;
use strata_server::embed::restore::{self, RestoreParams};

#[derive(Subcommand)]
pub enum Verb {
    /// Stream a backup from a live member to FILE (checksum verified).
    Save(SaveArgs),
    /// A backup's hash, revision, total keys and size.
    Status(StatusArgs),
    /// Build a new member's data dir from a backup.
    Restore(RestoreArgs),
}

#[derive(Args)]
pub struct SaveArgs {
    pub file: PathBuf,
    /// The member to copy (the first that answers, if several).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Simple,
    Table,
    Json,
}

#[derive(Args)]
pub struct StatusArgs {
    pub file: PathBuf,
    #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
    pub write_out: Format,
}

#[derive(Args)]
pub struct RestoreArgs {
    pub file: PathBuf,
    #[arg(long, default_value = "default")]
    pub name: String,
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Default: `<name>.strata`, as the member's own default.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Restore a file without a SHA-256 trailer (a copied db file).
    #[arg(long)]
    pub skip_hash_check: bool,
    /// How much to increase the latest revision after restore (etcdutl
    /// 3.6); needs --mark-compacted.
    #[arg(long, default_value_t = 0)]
    pub bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled
    /// compaction (required if --bump-revision > 0, disallowed otherwise).
    #[arg(long)]
    pub mark_compacted: bool,
}

pub fn run(v: Verb) -> Result<ExitCode> {
    match v {
        Verb::Save(a) => save(&a),
        Verb::Status(a) => status(&a),
        Verb::Restore(a) => restore_cmd(&a),
    }
}

/// go-humanize's Bytes: SI units, one decimal below 10.
pub fn humanize(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(units.len() - 1);
    let v = n as f64 / 1000f64.powi(e as i32);
    if v < 10.0 {
        format!("{v:.1} {}", units[e])
    } else {
        format!("{v:.0} {}", units[e])
    }
}

fn save(a: &SaveArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let part = a.file.with_extension("part");
    let mut last = None;
    for ep in &a.endpoints {
        match rt.block_on(fetch(ep, &part)) {
            Ok(()) => {
                std::fs::rename(&part, &a.file)?;
                println!("Snapshot saved at {}", a.file.display());
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                last = Some(e.context(format!("from {ep}")));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no endpoint given")))
}

/// Streams a member's backup into `to`, checks the trailing SHA-256 and
/// syncs the file.
async fn fetch(endpoint: &str, to: &Path) -> Result<()> {
    let mut c = etcd_client::Client::connect([endpoint], None).await?;
    let mut stream = c.snapshot().await?;
    let mut f = std::fs::File::create(to)?;
    let mut h = sha2::Sha256::new();
    // The last 32 bytes are the digest: hash everything before them.
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.message().await? {
        tail.extend_from_slice(chunk.blob());
        if tail.len() > 32 {
            let n = tail.len() - 32;
            h.update(&tail[..n]);
            f.write_all(&tail[..n])?;
            tail.drain(..n);
        }
    }
    if tail.len() != 32 || h.finalize().as_slice() != tail.as_slice() {
        bail!("the snapshot's SHA-256 does not match what was received");
    }
    f.write_all(&tail)?;
    f.sync_all()?;
    Ok(())
}

fn status(a: &StatusArgs) -> Result<ExitCode> {
    let b = restore::read_backup(&a.file, true)?;
    let s = restore::status(&b.db).with_context(|| format!("reading {}", a.file.display()))?;
    match a.write_out {
        Format::Simple => println!(
            "{:x}, {}, {}, {}, {}",
            s.hash,
            s.revision,
            s.total_key,
            humanize(s.total_size),
            s.version
        ),
        Format::Json => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{},\"version\":{:?}}}",
            s.hash, s.revision, s.total_key, s.total_size, s.version
        ),
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_style(comfy_table::presets::ASCII_FULL_CONDENSED);
            t.set_header(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"]);
            t.add_row([
                format!("{:x}", s.hash),
                s.revision.to_string(),
                s.total_key.to_string(),
                humanize(s.total_size),
                s.version.clone(),
            ]);
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn restore_cmd(a: &RestoreArgs) -> Result<ExitCode> {
    let bump_revision = restore::bump_of(a.bump_revision, a.mark_compacted)?;
    let b = restore::read_backup(&a.file, a.skip_hash_check)?;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.strata", a.name)));
    let params = RestoreParams {
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.clone(),
        data_dir: data_dir.clone(),
        bump_revision,
    };
    let file = strata_engine::bbolt::BoltFile::read(&b.db)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let st = restore::status_of(&file, b.db.len())?;
    let bar = indicatif::ProgressBar::new(st.entries);
    bar.set_style(
        indicatif::ProgressStyle::with_template("restoring {bar:40} {pos}/{len} entries")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let restore::Restored { members, bumped } = restore::restore(&file, &params, |n| bar.inc(n))?;
    bar.finish_and_clear();
    if let Some((latest, now)) = bumped {
        println!(
            "bumped the latest revision {latest} by {} to {now}, and marked {now} compacted",
            now - latest
        );
    }
    for m in &members {
        println!(
            "added member {:x} {} {:?} to cluster {:x}",
            m.id,
            m.name,
            m.peer_urls,
            strata_server::statemachine::membership::cluster_id_of(&members)
        );
    }
    println!(
        "restored snapshot {} (revision {}, {} entries) into {}; start the member with --initial-cluster-state new",
        a.file.display(),
        st.revision,
        st.entries,
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_print_as_go_humanize_prints_them() {
        assert_eq!(super::humanize(9), "9 B");
        assert_eq!(super::humanize(57344), "57 kB");
        assert_eq!(super::humanize(1_500_000), "1.5 MB");
        assert_eq!(super::humanize(20_480), "20 kB");
    }
}
