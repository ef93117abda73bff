//! `strata-bench`: load for etcd-API servers (strata or etcd), like etcd's
//! tools/benchmark.

use clap::{Args, Parser, Subcommand};
use strata_tools::loadgen::{self, Common, PutOpts};

// The generator shares the machine's cores with the servers it measures:
// every cycle it spends is one they do not get. glibc's malloc was a tenth
// of its time under a put load (its frees consolidating chunks); mimalloc,
// as the server uses, is a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strata-bench",
    about = "Load generator for etcd v3 API servers (strata or etcd)"
)]
struct Cli {
    /// gRPC endpoints, comma separated.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Total number of concurrent clients.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Send every request to the leader (its client URLs, found through
    /// Status and MemberList), as etcd's benchmark `--target-leader`.
    #[arg(long, global = true)]
    target_leader: bool,
    /// Also stop once this file exists (a load another program ends).
    #[arg(long, global = true)]
    stop_file: Option<std::path::PathBuf>,
    /// Record latencies only once this file exists (the load runs warm
    /// before the window another program measures).
    #[arg(long, global = true)]
    start_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct KeyArgs {
    /// Total number of requests.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Key size of each request.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of each request.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Use sequential keys.
    #[arg(long)]
    sequential_keys: bool,
}

/// etcd benchmark's `--consistency`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Subcommand)]
enum Cmd {
    /// Puts.
    Put(KeyArgs),
    /// Ranges over [key, end).
    Range {
        key: String,
        end: Option<String>,
        /// Linearizable (l) or serializable (s).
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
        #[arg(long, default_value_t = 10_000)]
        total: u64,
    },
    /// Txns of puts.
    TxnPut {
        #[command(flatten)]
        keys: KeyArgs,
        /// Puts per txn.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Events delivered to watchers.
    Watch {
        #[arg(long, default_value_t = 10)]
        streams: usize,
        #[arg(long, default_value_t = 10)]
        watch_per_stream: usize,
        /// Puts to the watched key.
        #[arg(long, default_value_t = 1000)]
        total: u64,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
    },
    /// One Range, unary or through etcd 3.7's KV.RangeStream, counted and
    /// dropped as it arrives; prints {"kvs", "bytes", "messages",
    /// "seconds"} as JSON (every key by default).
    Scan {
        #[arg(long, default_value = "\\0")]
        key: String,
        #[arg(long, default_value = "\\0")]
        end: String,
        /// At most this many keys (0: all).
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Through KV.RangeStream.
        #[arg(long)]
        stream: bool,
    },
    /// Lease keep-alives (one lease per client).
    LeaseKeepalive {
        #[arg(long, default_value_t = 10_000)]
        total: u64,
    },
}

fn common(cli: &Cli, endpoints: &[String], total: u64) -> Common {
    Common {
        endpoints: endpoints.to_vec(),
        conns: cli.conns,
        clients: cli.clients,
        total,
        stop_file: cli.stop_file.clone(),
        start_file: cli.start_file.clone(),
    }
}

fn put_opts(k: &KeyArgs) -> PutOpts {
    PutOpts {
        key_size: k.key_size,
        val_size: k.val_size,
        key_space_size: k.key_space_size,
        sequential_keys: k.sequential_keys,
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Cmd::Scan {
        key,
        end,
        limit,
        stream,
    } = &cli.cmd
    {
        // "\0" on the command line is the zero byte (etcd's "every key").
        let bytes = |s: &str| match s {
            "\\0" => vec![0],
            s => s.as_bytes().to_vec(),
        };
        let ep = cli.endpoints.first().cloned().unwrap_or_default();
        let s = rt.block_on(loadgen::scan(&ep, bytes(key), bytes(end), *limit, *stream))?;
        println!(
            "{{\"kvs\": {}, \"bytes\": {}, \"messages\": {}, \"seconds\": {:.3}}}",
            s.kvs, s.bytes, s.messages, s.seconds
        );
        return Ok(());
    }
    let report = rt.block_on(async {
        let endpoints = if cli.target_leader {
            loadgen::leader_endpoints(&cli.endpoints).await?
        } else {
            cli.endpoints.clone()
        };
        let common = |total| common(&cli, &endpoints, total);
        match &cli.cmd {
            Cmd::Put(k) => loadgen::put(&common(k.total), &put_opts(k)).await,
            Cmd::Range {
                key,
                end,
                consistency,
                total,
            } => {
                let serializable = *consistency == Consistency::S;
                loadgen::range(
                    &common(*total),
                    key.clone().into_bytes(),
                    end.clone().map(String::into_bytes),
                    serializable,
                )
                .await
            }
            Cmd::TxnPut { keys, txn_ops } => {
                loadgen::txn_put(&common(keys.total), &put_opts(keys), *txn_ops).await
            }
            Cmd::Watch {
                streams,
                watch_per_stream,
                total,
                val_size,
            } => loadgen::watch(&common(*total), *streams, *watch_per_stream, *val_size).await,
            Cmd::LeaseKeepalive { total } => loadgen::lease_keepalive(&common(*total)).await,
            Cmd::Scan { .. } => unreachable!("answered above"),
        }
    })?;
    print!("{}", report.render());
    Ok(())
}
