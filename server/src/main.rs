//! `strata`: one member of a strata cluster, configured with etcd's flags.

use clap::Parser;
use strata_server::Config;

// The request path allocates small buffers at a high rate (gRPC frames,
// protobuf messages, raft entries); mimalloc serves them with far less
// contention than glibc's malloc. Built without transparent huge pages
// (Cargo.toml: `no_thp`): mimalloc would madvise its arenas into 2 MiB
// pages, and every first touch of one then zeroes 2 MiB; under a put
// load that zeroing was a tenth of the raft thread's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A start-up failure is one line, cause chain included (as etcd's
    // fatal log line), never a backtrace, whatever RUST_BACKTRACE says.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    use strata_server::embed::config::renamed;
    // etcd 3.6's names read the old ETCD_EXPERIMENTAL_* variables too (the
    // new variable wins when both are set); each old one is warned about.
    let mut deprecated = Vec::new();
    for (old, new) in renamed::in_env(|k| std::env::var(k).ok()) {
        let new_env = renamed::env_name(new);
        if std::env::var_os(&new_env).is_none() {
            if let Some(v) = std::env::var_os(renamed::env_name(old)) {
                std::env::set_var(&new_env, v);
            }
        }
        deprecated.push(renamed::warning(old, new));
    }
    let args: Vec<String> = std::env::args().collect();
    deprecated.extend(renamed::in_args(args.iter().map(String::as_str)));
    let mut cfg = Config::parse_from(&args);
    if cfg.print_version {
        print!("{}", strata_server::version::version_block());
        return Ok(());
    }
    let mut notes = Vec::new();
    if let Some(path) = cfg.config_file.clone() {
        (cfg, notes) = strata_server::embed::config::file::load(&path)?;
        // The file's own old spellings are among its notes.
        deprecated.clear();
        notes.insert(
            0,
            format!(
                "loaded --config-file {}; other flags and ETCD_* variables are ignored",
                path.display()
            ),
        );
    }
    // raft-rs's own records come under the target `raft` at the same level
    // (raftnode/log.rs); colours only on a terminal.
    let level = if cfg.debug {
        strata_server::embed::config::LogLevel::Debug
    } else {
        cfg.log_level
    };
    let filter = tracing_subscriber::EnvFilter::try_new(level.directive())?;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let output = cfg
        .log_outputs
        .split(',')
        .next()
        .unwrap_or("default")
        .trim();
    // Lines go through tracing-appender's worker thread: a slow disk, or a
    // reader of stderr that stops reading, holds back the log (whose lines
    // are then dropped and counted by the appender), never a tokio worker
    // or the raft thread. The guard flushes what is queued when main
    // returns.
    let (sink, terminal): (Box<dyn std::io::Write + Send>, bool) = match output {
        "" | "default" | "stderr" | "systemd/journal" => (
            Box::new(std::io::stderr()),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
        "stdout" => (
            Box::new(std::io::stdout()),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
        path => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("opening log output {path}: {e}"))?;
            (Box::new(f), false)
        }
    };
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(sink);
    let writer = BoxMakeWriter::new(writer);
    let json = match cfg.log_format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal && !json);
    if json {
        builder
            .event_format(strata_server::embed::logging::ZapJson)
            .init();
    } else {
        builder.init();
    }
    for n in notes {
        tracing::info!("{n}");
    }
    for w in cfg.compat.warnings().into_iter().chain(deprecated) {
        tracing::warn!("{w}");
    }
    for n in cfg.feature_gates.notes() {
        tracing::info!("{n}");
    }
    if cfg.logger == "capnslog" {
        tracing::warn!("--logger=capnslog is accepted; logs keep Strata's structured format");
    }
    if output == "systemd/journal" {
        tracing::warn!("--log-outputs=systemd/journal: logging to stderr, which systemd collects");
    }
    arm_crash_points()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // Responses of one applied batch leave a connection in one write
    // (.cargo/config.toml sets tokio_unstable for this).
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let rt = builder.build()?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for l in cfg.client_listens()? {
            let addr = l.addr;
            let l = strata_server::transport::tls::incoming::Listener::bind(&addr, l.unix)
                .await
                .map_err(|e| {
                    let net = if l.unix { "unix" } else { "tcp" };
                    anyhow::anyhow!("listen {net} {addr}: {e}")
                })?;
            listeners.push(l);
        }
        strata_server::run(cfg, listeners, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Arms the crash points FAILPOINTS names (the fail crate's syntax,
/// `name=action;name=action`; see strata_engine::crashpoint). A build
/// without them says so instead of pretending.
fn arm_crash_points() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(());
    };
    let fail = &strata_engine::crashpoint::fail::has_failpoints;
    if !fail() {
        tracing::warn!(
            failpoints = %spec,
            "FAILPOINTS is set but this build has no fail points (build with --features failpoints)"
        );
        return Ok(());
    }
    let unknown = strata_engine::crashpoint::unknown_armed(&spec);
    if !unknown.is_empty() {
        anyhow::bail!(
            "FAILPOINTS: no crash point named {} (strata_engine::crashpoint::NAMES lists them)",
            unknown.join(", ")
        );
    }
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, actions) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("FAILPOINTS: {part:?} is not name=action"))?;
        strata_engine::crashpoint::fail::cfg(name.trim(), actions.trim())
            .map_err(|e| anyhow::anyhow!("FAILPOINTS: {name}: {e}"))?;
        tracing::warn!(
            failpoint = name.trim(),
            action = actions.trim(),
            "fail point armed"
        );
    }
    Ok(())
}
