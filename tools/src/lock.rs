//! `strata-util --timeout` (etcdutl 3.7's flag, v3.7.1 etcdutl/ctl.go):
//! how long a verb waits for the lock on a db file that another process
//! holds (another strata-util, say) before it gives up; 0 waits
//! indefinitely. Default 10 s, as etcdutl's.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;

static TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// How often a held lock is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// Sets the wait (once, from the command line).
pub fn set_timeout(d: Duration) {
    let _ = TIMEOUT.set(d);
}

fn timeout() -> Duration {
    TIMEOUT.get().copied().unwrap_or(Duration::from_secs(10))
}

/// Runs `open` until it stops finding `path` locked, or the wait is over.
pub fn waiting<T>(path: &Path, mut open: impl FnMut() -> strata_engine::Result<T>) -> Result<T> {
    let limit = timeout();
    let began = Instant::now();
    loop {
        match open() {
            Err(strata_engine::Error::Locked(_))
                if limit.is_zero() || began.elapsed() < limit =>
            {
                std::thread::sleep(RETRY);
            }
            Err(strata_engine::Error::Locked(_)) => anyhow::bail!(
                "timeout: {} is locked by another process (waited {:?}; --timeout sets the wait, 0 waits indefinitely)",
                path.display(),
                limit
            ),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("opening {}", path.display()))),
            Ok(v) => return Ok(v),
        }
    }
}
