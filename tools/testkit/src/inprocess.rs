//! A member inside the test's own process: `strata_server::run` on a
//! listener bound to port 0, stopped when the test's future is done. For
//! tests of tools that need a server but no process of their own.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use clap::Parser;

/// Runs `f` (given the member's `host:port`) against a member on `data`
/// started with `extra` flags, for at most `within`; then stops the
/// member and waits for it to end. Panics if the member fails or `f`
/// overruns.
pub fn with_member<F, Fut>(data: &Path, extra: &[&str], within: Duration, f: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let endpoint = listener.local_addr().expect("its address").to_string();
        let data = data.to_str().expect("a UTF-8 data dir");
        let mut args = vec![
            "strata",
            "--wal-segment-size",
            crate::TEST_WAL_SEGMENT_SIZE,
            "--data-dir",
            data,
        ];
        args.extend_from_slice(extra);
        let cfg = strata_server::Config::parse_from(args);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = strata_server::transport::tls::incoming::Listener::Tcp(listener);
        let member = tokio::spawn(strata_server::run(cfg, vec![listener], async move {
            let _ = stopped.await;
        }));
        tokio::time::timeout(within, f(endpoint))
            .await
            .expect("the test's work finished in time");
        let _ = stop.send(());
        member
            .await
            .expect("the member's task")
            .expect("the member stopped cleanly");
    });
}
