//! `strata-fault`: seeded fault runs against real `strata` processes.
//!
//!   cargo build --release -p strata-server --features failpoints
//!   cargo run --release -p strata-fault -- --strata target/release/strata --seeds 20 --duration 30
//!
//! One line per run in a table (operations, acknowledged, unknown, faults,
//! violations); a failing run keeps its directory (data dirs, member logs,
//! history.txt) and prints the command that runs its seed again. Exits 1
//! when any run found a violation.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use comfy_table::Table;
use strata_fault::{faults, run, sweep};

#[derive(Parser, Debug)]
#[command(about = "Seeded fault runs against a real strata cluster")]
struct Args {
    /// The strata binary (with --features failpoints for crash-point faults).
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Where runs keep their files (a failing run's stay).
    #[arg(long, default_value = "fault-runs")]
    dir: PathBuf,
    /// How many seeds, from --base.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// The first seed (default: from the clock, printed).
    #[arg(long)]
    base: Option<u64>,
    /// Seconds of load under faults per run.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 3)]
    members: usize,
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Fault kinds, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Keep every run's directory.
    #[arg(long)]
    keep: bool,
    /// A flag for every member, repeatable (`--member-flag=--unsafe-no-fsync`
    /// shows the power-loss checks failing).
    #[arg(long = "member-flag", allow_hyphen_values = true)]
    member_flags: Vec<String>,
    /// Print each run's faults.
    #[arg(long, short)]
    verbose: bool,
    /// Instead of seeded runs: crash a member at each crash point in turn
    /// (all of them, or those named with --points).
    #[arg(long)]
    sweep: bool,
    #[arg(long, value_delimiter = ',')]
    points: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let base = a.base.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let faults = if a.faults.is_empty() {
        faults::ALL.iter().map(|s| s.to_string()).collect()
    } else {
        a.faults.clone()
    };
    let cfg = run::Config {
        strata: std::fs::canonicalize(&a.strata)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.strata.display()))?,
        dir: a.dir.clone(),
        members: a.members,
        clients: a.clients,
        duration: Duration::from_secs(a.duration),
        faults,
        keep: a.keep,
        member_flags: a.member_flags.clone(),
    };
    println!(
        "seeds {base}..{} of {} s each, faults: {}",
        base + a.seeds,
        a.duration,
        cfg.faults.join(",")
    );
    let rt = tokio::runtime::Runtime::new()?;
    if a.sweep {
        let points: Vec<&str> = if a.points.is_empty() {
            sweep::POINTS.to_vec()
        } else {
            a.points.iter().map(String::as_str).collect()
        };
        if let Some(p) = points.iter().find(|p| !sweep::POINTS.contains(p)) {
            anyhow::bail!(
                "--points: no crash point named {p} (the sweep knows {})",
                sweep::POINTS.join(", ")
            );
        }
        let dir = a.dir.join("sweep");
        let out = rt.block_on(sweep::sweep(&cfg.strata, &dir, &points))?;
        let mut table = Table::new();
        table.set_header([
            "crash point",
            "member",
            "reached",
            "writes",
            "violations",
            "took",
        ]);
        let mut bad = 0;
        for o in &out {
            for v in &o.violations {
                println!("{}: VIOLATION {v}", o.point);
            }
            bad += o.violations.len();
            table.add_row([
                o.point.clone(),
                o.member.clone(),
                o.reached.to_string(),
                o.writes.to_string(),
                o.violations.len().to_string(),
                format!("{:.1} s", o.took.as_secs_f64()),
            ]);
        }
        println!("{table}");
        if bad > 0 {
            println!("files in {}", dir.display());
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header([
        "seed",
        "ops",
        "acknowledged",
        "unknown",
        "watch events",
        "leases",
        "faults",
        "violations",
        "took",
    ]);
    let mut failed = Vec::new();
    let mut totals = (0usize, 0usize, 0usize, 0usize, 0usize);
    for seed in base..base + a.seeds {
        let r = rt.block_on(run::run_seed(&cfg, seed))?;
        if a.verbose || !r.violations.is_empty() {
            for f in &r.faults {
                println!("seed {seed}: {f}");
            }
            for (what, took) in &r.phases {
                println!("seed {seed}: {what} took {:.1} s", took.as_secs_f64());
            }
        }
        for v in &r.violations {
            println!("seed {seed}: VIOLATION {v}");
        }
        table.add_row([
            seed.to_string(),
            r.ops.to_string(),
            r.acknowledged.to_string(),
            r.unknown.to_string(),
            r.watch_events.to_string(),
            r.leases.to_string(),
            r.faults.len().to_string(),
            r.violations.len().to_string(),
            format!("{:.0} s", r.took.as_secs_f64()),
        ]);
        totals.0 += 1;
        totals.1 += r.ops;
        totals.2 += r.acknowledged;
        totals.3 += r.faults.len();
        totals.4 += r.violations.len();
        if let Some(dir) = &r.kept {
            if !r.violations.is_empty() {
                failed.push((seed, dir.clone()));
            }
        }
    }
    table.add_row([
        format!("{} runs", totals.0),
        totals.1.to_string(),
        totals.2.to_string(),
        String::new(),
        String::new(),
        String::new(),
        totals.3.to_string(),
        totals.4.to_string(),
        String::new(),
    ]);
    println!("{table}");
    for (seed, dir) in &failed {
        println!(
            "seed {seed} failed; files in {}; again: strata-fault --strata {} --base {seed} --seeds 1 --duration {} --members {} --clients {} --faults {}{}",
            dir.display(),
            a.strata.display(),
            a.duration,
            a.members,
            a.clients,
            cfg.faults.join(","),
            cfg.member_flags
                .iter()
                .map(|f| format!(" --member-flag={f}"))
                .collect::<String>()
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
