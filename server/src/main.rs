//! `strata`: one member of a strata cluster, configured with etcd's flags.

use clap::Parser;
use strata_server::Config;

// The request path allocates small buffers at a high rate (gRPC frames,
// protobuf messages, raft entries); mimalloc serves them with far less
// contention than glibc's malloc.
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
    let mut cfg = Config::parse();
    let mut notes = Vec::new();
    if let Some(path) = cfg.config_file.clone() {
        (cfg, notes) = strata_server::config::file::load(&path)?;
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
        strata_server::config::LogLevel::Debug
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
    let (writer, terminal) = match output {
        "" | "default" | "stderr" | "systemd/journal" => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
        "stdout" => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
        path => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("opening log output {path}: {e}"))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(f)), false)
        }
    };
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
        builder.event_format(strata_server::logging::ZapJson).init();
    } else {
        builder.init();
    }
    for n in notes {
        tracing::info!("{n}");
    }
    for w in cfg.compat.warnings() {
        tracing::warn!("{w}");
    }
    if cfg.logger == "capnslog" {
        tracing::warn!("--logger=capnslog is accepted; logs keep Strata's structured format");
    }
    if output == "systemd/journal" {
        tracing::warn!("--log-outputs=systemd/journal: logging to stderr, which systemd collects");
    }
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
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))?;
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
