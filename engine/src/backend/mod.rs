//! etcd's backend over the B+tree: named buckets, one batched write
//! transaction, and readers that see applied writes before they commit.
//!
//! Invariants:
//! - There is one B+tree write transaction at a time, the *batch*. Writers
//!   take the batch lock ([`Backend::batch`]), change it, and unlock. The batch
//!   commits when [`BackendConfig::batch_limit`] changes have accumulated at
//!   an unlock, every [`BackendConfig::batch_interval`] (background thread),
//!   on [`Backend::force_commit`] and on close.
//! - Right before each commit the pre-commit hook runs inside the batch, so
//!   what it writes (the consistent index and term, in `meta`) is committed
//!   atomically with the data it describes.
//! - Readers see a [`ReadView`]: a pinned B+tree snapshot plus a buffer of
//!   every change applied since that snapshot, published whenever a writer
//!   unlocks. The buffer is a persistent map (cheap to clone), so publishing
//!   and starting a read cost no copies. A commit swaps in the new snapshot
//!   and an empty buffer. Readers never wait for a commit or its fsync.
//! - [`Backend::close`] commits what is pending. Dropping the last handle
//!   without closing discards the uncommitted batch, as a crash would (the
//!   server replays it from its WAL).
//!
//! Here: the buckets, the batch, commits and readers' views. The whole-file
//! operations (snapshot, bbolt export, hash, replacement) are in `files`;
//! online defragmentation in `defrag`.

mod defrag;
mod files;
mod view;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::btree::{Database, Options, WriteBucket, WriteTxn};
use crate::error::{Error, Result};

use defrag::defrag_path;
pub use defrag::DefragStats;
pub use view::{Buffer, ReadView};

/// The buckets of an etcd backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    Key,
    Meta,
    Lease,
    Alarm,
    Cluster,
    Members,
    MembersRemoved,
    Auth,
    AuthUsers,
    AuthRoles,
}

impl Bucket {
    pub const ALL: [Bucket; 10] = [
        Bucket::Key,
        Bucket::Meta,
        Bucket::Lease,
        Bucket::Alarm,
        Bucket::Cluster,
        Bucket::Members,
        Bucket::MembersRemoved,
        Bucket::Auth,
        Bucket::AuthUsers,
        Bucket::AuthRoles,
    ];

    /// The bucket's name in the file: etcd's.
    pub fn name(self) -> &'static [u8] {
        match self {
            Bucket::Key => b"key",
            Bucket::Meta => b"meta",
            Bucket::Lease => b"lease",
            Bucket::Alarm => b"alarm",
            Bucket::Cluster => b"cluster",
            Bucket::Members => b"members",
            Bucket::MembersRemoved => b"members_removed",
            Bucket::Auth => b"auth",
            Bucket::AuthUsers => b"authUsers",
            Bucket::AuthRoles => b"authRoles",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub path: PathBuf,
    /// Commit at least this often while there are changes (etcd: 100 ms).
    pub batch_interval: Duration,
    /// Commit once this many changes are pending (etcd: 10,000).
    pub batch_limit: usize,
    /// Passed to the B+tree (benchmarks only).
    pub no_sync: bool,
}

impl BackendConfig {
    pub fn new(path: impl AsRef<Path>) -> BackendConfig {
        BackendConfig {
            path: path.as_ref().to_path_buf(),
            batch_interval: Duration::from_millis(100),
            batch_limit: 10_000,
            no_sync: false,
        }
    }
}

/// Runs inside the batch right before it commits.
pub type PreCommitHook = Box<dyn FnMut(&mut BatchTxRef<'_>) -> Result<()> + Send>;

/// Told how long each commit of the B+tree took (fsync included).
pub type CommitObserver = Box<dyn Fn(std::time::Duration) + Send>;

struct Batch {
    tx: Option<WriteTxn>,
    ids: HashMap<Bucket, WriteBucket>,
    /// Changes since the last commit.
    pending: usize,
    /// Changes since the last unlock, not yet visible to readers.
    unpublished: Buffer,
    hook: Option<PreCommitHook>,
    observer: Option<CommitObserver>,
    /// A commit failed: the backend refuses writes.
    failed: bool,
    /// While a defragmentation copies a snapshot: every change since.
    journal: Option<Vec<JournalEntry>>,
}

/// A journaled change during online defragmentation: bucket, key, value
/// (`None`: deleted).
type JournalEntry = (Bucket, Vec<u8>, Option<Vec<u8>>);

struct Inner {
    /// Replaced (under the batch lock) by online defragmentation.
    db: RwLock<Database>,
    cfg: BackendConfig,
    batch: Mutex<Batch>,
    view: RwLock<Arc<ReadView>>,
    /// Stops the committer; it waits on this, holding no reference to the
    /// backend, so dropping the last handle closes the file at once.
    signal: Arc<Signal>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The backend. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

/// A stop flag the committer sleeps on.
#[derive(Default)]
struct Signal {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    /// Sleeps up to `d`; true once stopped.
    fn wait(&self, d: Duration) -> bool {
        let g = lock(&self.stopped);
        if *g {
            return true;
        }
        let (g, _) = self
            .cv
            .wait_timeout(g, d)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }

    fn stop(&self) {
        *lock(&self.stopped) = true;
        self.cv.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend {
    /// Opens (or creates) the backend file and starts the committer.
    pub fn open(cfg: BackendConfig) -> Result<Backend> {
        // A defragmentation that did not reach its rename left this behind;
        // the original file is whole.
        let _ = std::fs::remove_file(defrag_path(&cfg.path));
        let db = Database::open(
            &cfg.path,
            Options {
                no_sync: cfg.no_sync,
                ..Options::default()
            },
        )?;
        // Make sure every bucket exists.
        let mut tx = db.begin_write()?;
        for b in Bucket::ALL {
            tx.create_bucket_if_missing(WriteBucket::ROOT, b.name())?;
        }
        tx.commit()?;
        let (tx, ids) = begin(&db)?;
        let view = ReadView::new(db.begin_read(), Buffer::default())?;
        let inner = Arc::new(Inner {
            db: RwLock::new(db),
            cfg,
            batch: Mutex::new(Batch {
                tx: Some(tx),
                ids,
                pending: 0,
                unpublished: Buffer::default(),
                hook: None,
                observer: None,
                failed: false,
                journal: None,
            }),
            view: RwLock::new(Arc::new(view)),
            signal: Arc::new(Signal::default()),
            committer: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let signal = inner.signal.clone();
        let interval = inner.cfg.batch_interval;
        let handle = std::thread::Builder::new()
            .name("backend-commit".into())
            .spawn(move || loop {
                if signal.wait(interval) {
                    return;
                }
                let Some(inner) = weak.upgrade() else { return };
                let mut guard = lock(&inner.batch);
                if guard.pending > 0 && !guard.failed {
                    // An error poisons the batch; writers see it.
                    let _ = commit(&inner, &mut guard);
                }
            })?;
        *lock(&inner.committer) = Some(handle);
        Ok(Backend { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.cfg.path
    }

    /// The B+tree underneath (for tools and tests).
    pub fn db(&self) -> Database {
        self.inner.db()
    }

    /// Sets the hook that runs inside the batch right before each commit.
    pub fn set_pre_commit_hook(&self, hook: PreCommitHook) {
        lock(&self.inner.batch).hook = Some(hook);
    }

    /// Sets what is told each commit's duration (metrics).
    pub fn set_commit_observer(&self, observer: CommitObserver) {
        lock(&self.inner.batch).observer = Some(observer);
    }

    /// Locks the batch for writing. Changes become visible to readers when
    /// the returned guard is dropped, and durable at the next commit.
    pub fn batch(&self) -> Result<BatchTx<'_>> {
        let guard = lock(&self.inner.batch);
        if guard.failed {
            return Err(Error::Poisoned);
        }
        Ok(BatchTx {
            inner: &self.inner,
            guard,
        })
    }

    /// A consistent view of everything applied so far. Never waits for a
    /// commit.
    pub fn read(&self) -> Arc<ReadView> {
        self.inner
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Commits the batch now (and waits for it to be durable).
    pub fn force_commit(&self) -> Result<()> {
        let mut guard = lock(&self.inner.batch);
        if guard.failed {
            return Err(Error::Poisoned);
        }
        publish(&self.inner, &mut guard);
        commit(&self.inner, &mut guard)
    }

    /// Commits what is pending and stops the committer.
    pub fn close(self) -> Result<()> {
        let res = self.force_commit();
        self.inner.signal.stop();
        if let Some(h) = lock(&self.inner.committer).take() {
            let _ = h.join();
        }
        res
    }
}

impl Inner {
    fn db(&self) -> Database {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.signal.stop();
    }
}

/// Marks the batch failed (every later write is refused with `Poisoned`),
/// logging the first cause once.
fn fail_batch(batch: &mut Batch, path: &Path, cause: &Error) {
    if !batch.failed {
        batch.failed = true;
        tracing::error!(
            file = %path.display(),
            error = %cause,
            "a backend commit failed; the backend refuses writes until reopened"
        );
    }
}

fn begin(db: &Database) -> Result<(WriteTxn, HashMap<Bucket, WriteBucket>)> {
    let mut tx = db.begin_write()?;
    let mut ids = HashMap::new();
    for b in Bucket::ALL {
        let id = tx
            .bucket(WriteBucket::ROOT, b.name())?
            .ok_or(Error::BucketNotFound)?;
        ids.insert(b, id);
    }
    Ok((tx, ids))
}

/// Makes the changes since the last unlock visible to new readers.
fn publish(inner: &Inner, batch: &mut Batch) {
    if batch.unpublished.is_empty() {
        return;
    }
    let changes = std::mem::take(&mut batch.unpublished);
    let mut slot = inner.view.write().unwrap_or_else(|e| e.into_inner());
    // No reader holds the current view: it takes the changes in place (a
    // persistent map shared with nobody is changed without copying its
    // nodes). Otherwise readers keep theirs and a new view is made.
    match Arc::get_mut(&mut slot) {
        Some(view) => view.add_changes(changes),
        None => *slot = Arc::new(slot.with_changes(changes)),
    }
}

/// Runs the hook, commits the batch, begins the next one and swaps the
/// readers' view to the new snapshot.
fn commit(inner: &Inner, batch: &mut Batch) -> Result<()> {
    let res = (|| -> Result<()> {
        if let Some(mut hook) = batch.hook.take() {
            let r = hook(&mut BatchTxRef { batch });
            batch.hook = Some(hook);
            r?;
            publish(inner, batch);
        }
        let tx = batch.tx.take().ok_or(Error::Poisoned)?;
        let started = std::time::Instant::now();
        crate::crash_point!(beforeCommit);
        tx.commit()?;
        crate::crash_point!(afterCommit);
        if let Some(observe) = &batch.observer {
            observe(started.elapsed());
        }
        let db = inner.db();
        let (tx, ids) = begin(&db)?;
        batch.tx = Some(tx);
        batch.ids = ids;
        batch.pending = 0;
        let view = ReadView::new(db.begin_read(), Buffer::default())?;
        *inner.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
        Ok(())
    })();
    if let Err(e) = &res {
        fail_batch(batch, &inner.cfg.path, e);
    }
    res
}

/// Write access to the batch, as the guard and the pre-commit hook see it.
pub struct BatchTxRef<'a> {
    batch: &'a mut Batch,
}

/// The locked batch.
pub struct BatchTx<'a> {
    inner: &'a Inner,
    guard: MutexGuard<'a, Batch>,
}

macro_rules! batch_ops {
    ($t:ty, $b:ident) => {
        impl $t {
            /// Sets `key` in `bucket`.
            pub fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<()> {
                let b = &mut *self.$b;
                let id = b.ids[&bucket];
                b.tx.as_mut().ok_or(Error::Poisoned)?.put(id, key, value)?;
                b.unpublished
                    .insert((bucket, key.to_vec()), Some(value.to_vec()));
                if let Some(j) = b.journal.as_mut() {
                    j.push((bucket, key.to_vec(), Some(value.to_vec())));
                }
                b.pending += 1;
                Ok(())
            }

            /// Removes `key` from `bucket`.
            pub fn delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<()> {
                let b = &mut *self.$b;
                let id = b.ids[&bucket];
                if b.tx.as_mut().ok_or(Error::Poisoned)?.delete(id, key)? {
                    b.unpublished.insert((bucket, key.to_vec()), None);
                    if let Some(j) = b.journal.as_mut() {
                        j.push((bucket, key.to_vec(), None));
                    }
                    b.pending += 1;
                }
                Ok(())
            }

            /// Reads `key` as this batch has it (its own writes included).
            pub fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
                let b = &*self.$b;
                let id = b.ids[&bucket];
                Ok(b.tx
                    .as_ref()
                    .ok_or(Error::Poisoned)?
                    .get(id, key)?
                    .map(<[u8]>::to_vec))
            }

            /// Key/value pairs of `bucket` in `[start, end)` (`end` empty:
            /// to the end), at most `limit` (0: all), as this batch has them.
            pub fn range(
                &self,
                bucket: Bucket,
                start: &[u8],
                end: &[u8],
                limit: usize,
            ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
                let b = &*self.$b;
                let id = b.ids[&bucket];
                let tx = b.tx.as_ref().ok_or(Error::Poisoned)?;
                let mut c = tx.cursor(id)?;
                let mut out = Vec::new();
                let mut it = c.seek(start)?;
                while let Some(e) = it {
                    if (!end.is_empty() && e.key >= end) || (limit != 0 && out.len() >= limit) {
                        break;
                    }
                    out.push((e.key.to_vec(), e.value.to_vec()));
                    it = c.next()?;
                }
                Ok(out)
            }
        }
    };
}

batch_ops!(BatchTx<'_>, guard);
batch_ops!(BatchTxRef<'_>, batch);

impl BatchTx<'_> {
    /// The db file this batch writes.
    pub fn path(&self) -> &Path {
        &self.inner.cfg.path
    }

    /// Makes the changes so far visible to new readers now (unlocking does
    /// it too).
    pub fn publish(&mut self) {
        publish(self.inner, &mut self.guard);
    }

    /// Changes since the last commit.
    pub fn pending(&self) -> usize {
        self.guard.pending
    }
}

impl Drop for BatchTx<'_> {
    fn drop(&mut self) {
        publish(self.inner, &mut self.guard);
        if self.guard.pending >= self.inner.cfg.batch_limit && !self.guard.failed {
            // An error poisons the batch; the next writer sees it.
            let _ = commit(self.inner, &mut self.guard);
        }
    }
}
