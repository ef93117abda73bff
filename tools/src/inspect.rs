//! `strata-util inspect …` and `strata-util compact`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use indicatif::{ProgressBar, ProgressStyle};
use strata_engine::btree::inspect::{self, Element, PageUse};
use strata_engine::btree::{self, Database, Options, ReadBucket, ReadTxn};

use crate::display::{hex, render, Format};

#[derive(Subcommand)]
pub enum Verb {
    /// Page size, page count, txid, free pages and both meta slots.
    Info { path: PathBuf },
    /// Verify every page's checksum, structure and key order, and that every
    /// page is in use or free. Exits 1 if anything is wrong.
    Check { path: PathBuf },
    /// Page counts by type, fill, buckets and keys.
    Stats { path: PathBuf },
    /// Every page with its type, element count and overflow.
    Pages { path: PathBuf },
    /// One page decoded: header and elements.
    Page {
        path: PathBuf,
        id: u64,
        /// Also dump the first page's bytes in hex.
        #[arg(long)]
        hex: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The top-level buckets.
    Buckets { path: PathBuf },
    /// The keys of a bucket (nested buckets: give the path of names).
    Keys {
        path: PathBuf,
        #[arg(required = true)]
        buckets: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The value of KEY in a bucket: PATH BUCKET [BUCKET…] KEY.
    Get {
        path: PathBuf,
        #[arg(required = true, num_args = 2..)]
        buckets_and_key: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

fn open(path: &Path) -> Result<Database> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    crate::lock::waiting(path, || Database::open(path, Options::default()))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY)
        .set_header(header.iter().copied());
    t
}

fn bucket(rx: &ReadTxn, names: &[String]) -> Result<ReadBucket> {
    let path: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    rx.bucket_path(&path)?
        .with_context(|| format!("bucket not found: {}", names.join("/")))
}

pub fn run(verb: Verb) -> Result<ExitCode> {
    match verb {
        Verb::Info { path } => {
            let db = open(&path)?;
            let i = db.info();
            println!("Page size:      {}", i.page_size);
            println!("Page count:     {}", i.page_count);
            println!("File size:      {} bytes", i.file_len);
            println!("Last txid:      {}", i.txid);
            println!("Root page:      {}", i.root);
            println!("Free pages:     {}", i.free_pages);
            println!("Pending pages:  {}", i.pending_pages);
            println!("Freelist saved: {}", i.freelist_saved);
            let (metas, problems) = inspect::metas(&db);
            for m in metas {
                println!(
                    "Meta slot {}:    txid {}, root {}, {} pages",
                    m.txid % 2,
                    m.txid,
                    m.root,
                    m.page_count
                );
            }
            for p in problems {
                println!("Meta problem:   {p}");
            }
        }
        Verb::Check { path } => {
            let db = open(&path)?;
            let problems = btree::check(&db)?;
            if problems.is_empty() {
                println!("OK");
            } else {
                for p in &problems {
                    println!("{p}");
                }
                println!("{} errors found", problems.len());
                return Ok(ExitCode::from(1));
            }
        }
        Verb::Stats { path } => {
            let db = open(&path)?;
            let s = btree::stats(&db)?;
            let mut t = table(&["", "value"]);
            let pct = |x: f64| format!("{:.1}%", x * 100.0);
            let rows: Vec<(&str, String)> = vec![
                ("page size", s.page_size.to_string()),
                ("page count", s.page_count.to_string()),
                ("branch pages", s.branch_pages.to_string()),
                ("leaf pages", s.leaf_pages.to_string()),
                ("overflow pages", s.overflow_pages.to_string()),
                ("free pages", s.free_pages.to_string()),
                ("pending pages", s.pending_pages.to_string()),
                (
                    "branch bytes in use",
                    format!("{} ({})", s.branch_inuse, pct(s.branch_fill())),
                ),
                (
                    "leaf bytes in use",
                    format!("{} ({})", s.leaf_inuse, pct(s.leaf_fill())),
                ),
                ("buckets", s.buckets.to_string()),
                ("keys", s.keys.to_string()),
                ("max depth", s.max_depth.to_string()),
            ];
            for (k, v) in rows {
                t.add_row(vec![k.to_string(), v]);
            }
            println!("{t}");
        }
        Verb::Pages { path } => {
            let db = open(&path)?;
            let mut t = table(&["ID", "TYPE", "ITEMS", "OVRFLW"]);
            for p in inspect::pages(&db)? {
                let kind = match p.used {
                    PageUse::Meta => "meta".to_string(),
                    PageUse::Branch => "branch".to_string(),
                    PageUse::Leaf => "leaf".to_string(),
                    PageUse::Overflow(start) => format!("overflow of {start}"),
                    PageUse::Freelist => "freelist".to_string(),
                    PageUse::Free => "free".to_string(),
                    PageUse::Unused => "unused".to_string(),
                };
                let items = if matches!(p.used, PageUse::Branch | PageUse::Leaf) {
                    p.count.to_string()
                } else {
                    String::new()
                };
                let ovf = if p.overflow > 0 {
                    p.overflow.to_string()
                } else {
                    String::new()
                };
                t.add_row(vec![p.pgid.to_string(), kind, items, ovf]);
            }
            println!("{t}");
        }
        Verb::Page {
            path,
            id,
            hex: dump_hex,
            format,
        } => {
            let db = open(&path)?;
            let d = inspect::page(&db, id)?;
            println!("Page ID:    {}", d.pgid);
            println!("Page Type:  {}", d.kind);
            println!("Header ID:  {}", d.header.pgid);
            println!("Txid:       {}", d.header.txid);
            println!("Overflow:   {}", d.header.overflow);
            println!("Count:      {}", d.header.count);
            println!(
                "Checksum:   {:#010x} ({})",
                d.header.crc,
                if d.checksum_ok { "ok" } else { "MISMATCH" }
            );
            if let Some(p) = &d.problem {
                println!("Problem:    {p}");
            }
            match &d.meta {
                Some(Ok(m)) => {
                    println!(
                        "Meta:       txid {}, root {} (crc {:#010x}), {} pages, freelist {}",
                        m.txid, m.root, m.root_crc, m.page_count, m.freelist
                    )
                }
                Some(Err(e)) => println!("Meta:       invalid: {e}"),
                None => {}
            }
            if !d.elements.is_empty() {
                let mut t = table(&["#", "KEY", "VALUE / CHILD"]);
                for (i, e) in d.elements.iter().enumerate() {
                    let (k, v) = match e {
                        Element::Value { key, value } => {
                            (render(key, format), render(value, format))
                        }
                        Element::Bucket { key, root } => {
                            (render(key, format), format!("<bucket, root page {root}>"))
                        }
                        Element::Child { key, page, crc } => (
                            render(key, format),
                            format!("page {page} (crc {crc:#010x})"),
                        ),
                    };
                    t.add_row(vec![i.to_string(), k, v]);
                }
                println!("{t}");
            }
            if dump_hex {
                for (i, chunk) in d.raw.chunks(32).enumerate() {
                    println!("{:08x}  {}", i * 32, hex(chunk));
                }
            }
        }
        Verb::Buckets { path } => {
            let db = open(&path)?;
            let rx = db.begin_read();
            let mut c = rx.cursor(rx.root());
            let mut it = c.first()?;
            while let Some(e) = it {
                println!("{}", render(e.key, Format::AsciiEncoded));
                it = c.next()?;
            }
        }
        Verb::Keys {
            path,
            buckets,
            format,
        } => {
            let db = open(&path)?;
            let rx = db.begin_read();
            let b = bucket(&rx, &buckets)?;
            let mut c = rx.cursor(b);
            let mut it = c.first()?;
            while let Some(e) = it {
                println!("{}", render(e.key, format));
                it = c.next()?;
            }
        }
        Verb::Get {
            path,
            buckets_and_key,
            format,
        } => {
            let db = open(&path)?;
            let rx = db.begin_read();
            let (key, names) = buckets_and_key.split_last().context("missing key")?;
            let b = bucket(&rx, names)?;
            match rx.get(b, key.as_bytes())? {
                Some(v) => println!("{}", render(v, format)),
                None => bail!("key not found: {key}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn compact(src: &Path, dst: &Path) -> Result<ExitCode> {
    let db = open(src)?;
    let total = btree::stats(&db)?.keys;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} keys ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let before = std::fs::metadata(src)?.len();
    let info = btree::compact(&db, dst, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let after = info.file_len;
    println!(
        "{} -> {}: {} -> {} bytes ({:.1}% of the original), {} keys",
        src.display(),
        dst.display(),
        before,
        after,
        after as f64 * 100.0 / before.max(1) as f64,
        total
    );
    Ok(ExitCode::SUCCESS)
}
