//! The engine's error type. Corruption always names the file and the page (or
//! byte offset) where it was found; it is never returned as data.
//! [`Error::kind`] says whether an error is the request's or the storage's,
//! exhaustively: callers never sort variants by hand.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupted data in {}: page {page}: {what}", file.display())]
    Corrupted {
        file: PathBuf,
        page: u64,
        what: String,
    },
    /// A stored record that does not decode, or a record the index names
    /// that is missing: the file, the bucket and the record's key (hex).
    #[error("corrupted record in {}: bucket {bucket}, key {key}: {what}", file.display())]
    CorruptedRecord {
        file: PathBuf,
        bucket: &'static str,
        key: String,
        what: String,
    },
    #[error("corrupted log {}: offset {offset}: {what}", file.display())]
    CorruptedLog {
        file: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{} is locked by another process", .0.display())]
    Locked(PathBuf),
    #[error("a previous write or fsync failed; the database refuses writes until reopened")]
    Poisoned,
    /// An internal invariant did not hold (a bug, not bad data or a failed
    /// write): what was expected, and where.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("bucket not found")]
    BucketNotFound,
    #[error("bucket already exists")]
    BucketExists,
    #[error("incompatible value: a bucket where a value was expected, or the reverse")]
    IncompatibleValue,
    #[error("key required")]
    KeyRequired,
    #[error("key too large: {len} bytes, at most {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value too large: {len} bytes, at most {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("{} already holds a WAL", .0.display())]
    WalExists(PathBuf),
    #[error("{} holds no WAL", .0.display())]
    NoWal(PathBuf),
    /// The WAL holds no snapshot marker matching the one the caller's
    /// state starts at (the log and the state do not belong together).
    #[error("snapshot marker at index {index} term {term} not found in the WAL in {}", dir.display())]
    SnapshotMarkNotFound { dir: PathBuf, index: u64, term: u64 },
    #[error("{} already exists", .0.display())]
    AlreadyExists(PathBuf),
    #[error("the database still has open transactions or handles")]
    InUse,
    // The store's errors, with etcd's messages (the server adds the
    // "etcdserver: " prefix etcd's gRPC layer shows).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("key not found")]
    KeyNotFound,
    #[error("key is not provided")]
    KeyNotProvided,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A put names a lease the caller does not know (the server's lessor
    /// decides; the store only asks).
    #[error("requested lease not found")]
    LeaseNotFound,
}

/// Whose failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be served as asked (etcd's request errors, a key
    /// or value too large, a missing bucket, a misused handle): the store
    /// is intact, and every replica given the same request and state
    /// refuses it the same way. The caller's error to report.
    Request,
    /// The files, the disk or an invariant failed: nothing more may be
    /// written through this store; a replicated state machine stops rather
    /// than answer (another member's store may not have failed).
    Storage,
}

impl Error {
    /// Sorts this error (an exhaustive match: a new variant must be sorted
    /// here before the crate compiles).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io(_)
            | Error::Corrupted { .. }
            | Error::CorruptedRecord { .. }
            | Error::CorruptedLog { .. }
            | Error::Poisoned
            | Error::Internal(_)
            | Error::SnapshotMarkNotFound { .. } => ErrorKind::Storage,
            Error::Locked(_)
            | Error::BucketNotFound
            | Error::BucketExists
            | Error::IncompatibleValue
            | Error::KeyRequired
            | Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::InvalidOption(_)
            | Error::WalExists(_)
            | Error::NoWal(_)
            | Error::AlreadyExists(_)
            | Error::InUse
            | Error::Compacted
            | Error::FutureRevision
            | Error::KeyNotFound
            | Error::KeyNotProvided
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::DuplicateKey
            | Error::LeaseNotFound => ErrorKind::Request,
        }
    }

    pub(crate) fn corrupted(file: &std::path::Path, page: u64, what: impl Into<String>) -> Error {
        Error::Corrupted {
            file: file.to_path_buf(),
            page,
            what: what.into(),
        }
    }
}
