//! raft-rs logs through slog; this drain hands its records to tracing under
//! the target `raft`, so elections, leadership changes, rejected messages
//! and raft's warnings reach the member's log (and its `--log-level`).
//!
//! Levels map one to one (slog's critical becomes error). A record's
//! key-value pairs, its own and the logger's (`raft_id`), follow the
//! message as ` key=value`. Nothing is formatted for a level the
//! subscriber would drop.

use std::fmt::Write as _;

use slog::{Drain, Level, Never, OwnedKVList, Record, KV};

/// The logger raft-rs is given.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

struct TracingDrain;

/// The pairs of a record as ` key=value` text.
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn text(record: &Record, values: &OwnedKVList) -> String {
    let mut pairs = Pairs(String::new());
    let _ = record.kv().serialize(record, &mut pairs);
    let _ = values.serialize(record, &mut pairs);
    format!("{}{}", record.msg(), pairs.0)
}

macro_rules! forward {
    ($level:expr, $record:expr, $values:expr) => {
        if tracing::enabled!(target: "raft", $level) {
            tracing::event!(target: "raft", $level, "{}", text($record, $values));
        }
    };
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), Never> {
        use tracing::Level as T;
        match record.level() {
            Level::Critical | Level::Error => forward!(T::ERROR, record, values),
            Level::Warning => forward!(T::WARN, record, values),
            Level::Info => forward!(T::INFO, record, values),
            Level::Debug => forward!(T::DEBUG, record, values),
            Level::Trace => forward!(T::TRACE, record, values),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Keeps what [`text`] makes of each record.
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl Drain for Capture {
        type Ok = ();
        type Err = Never;
        fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), Never> {
            self.0.lock().unwrap().push(text(record, values));
            Ok(())
        }
    }

    #[test]
    fn pairs_follow_the_message() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = slog::Logger::root(Capture(seen.clone()), slog::o!("raft_id" => 7));
        slog::info!(log, "became leader at term {}", 2; "term" => 2);
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["became leader at term 2 term=2 raft_id=7"]
        );
    }
}
