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

mod view;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::btree::{Database, Options, WriteBucket, WriteTxn};
use crate::error::{Error, Result};

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

    /// Writes a consistent copy of the whole database (after committing what
    /// is pending) and returns its size and SHA-256.
    pub fn snapshot(&self, w: &mut dyn std::io::Write) -> Result<(u64, [u8; 32])> {
        use sha2::Digest;
        struct Hashing<'a> {
            w: &'a mut dyn std::io::Write,
            h: sha2::Sha256,
        }
        impl std::io::Write for Hashing<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let n = self.w.write(buf)?;
                self.h.update(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.w.flush()
            }
        }
        let mut hw = Hashing {
            w,
            h: sha2::Sha256::new(),
        };
        let size = self.write_consistent(&mut hw)?;
        Ok((size, hw.h.finalize().into()))
    }

    /// Writes every bucket of one consistent view as a bbolt file (etcd's
    /// backup format, see [`crate::bbolt`]) to `f`, then returns its size
    /// and SHA-256. Buckets are read in pieces of 10,000 entries, so memory
    /// stays bounded by a piece, not the db.
    pub fn export_bbolt(&self, f: &mut std::fs::File) -> Result<(u64, [u8; 32])> {
        use sha2::Digest;
        use std::io::{Read, Seek, SeekFrom};
        const PIECE: usize = 10_000;
        let view = self.read();
        let mut w = crate::bbolt::BoltWriter::new(std::io::BufWriter::new(&mut *f))?;
        for bucket in Bucket::ALL {
            let mut next: Vec<u8> = Vec::new();
            let mut piece = std::collections::VecDeque::new();
            let mut done = false;
            let entries = std::iter::from_fn(|| {
                if piece.is_empty() && !done {
                    match view.range(bucket, &next, &[], PIECE) {
                        Ok(got) => {
                            done = got.len() < PIECE;
                            if let Some((k, _)) = got.last() {
                                next = k.clone();
                                next.push(0);
                            }
                            piece.extend(got);
                        }
                        Err(e) => {
                            done = true;
                            return Some(Err(e));
                        }
                    }
                }
                piece.pop_front().map(Ok)
            });
            w.bucket(bucket.name(), entries)?;
        }
        let (out, size) = w.finish()?;
        drop(out);
        f.seek(SeekFrom::Start(0))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            f.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok((size, h.finalize().into()))
    }

    /// Commits what is pending, then writes a copy of the whole database as
    /// of that commit; returns its size.
    fn write_consistent(&self, w: &mut dyn std::io::Write) -> Result<u64> {
        self.force_commit()?;
        self.inner.db().begin_read().write_snapshot(w)
    }

    /// The CRC-32C (Castagnoli) of a consistent copy of the whole database
    /// (after committing what is pending), streamed: the file's bytes, so
    /// two members holding the same data may differ (the Hash RPC answers
    /// the logical `mvcc::statehash` instead).
    pub fn hash(&self) -> Result<u32> {
        struct Crc(u32);
        impl std::io::Write for Crc {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 = crc32c::crc32c_append(self.0, buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut c = Crc(0);
        self.write_consistent(&mut c)?;
        Ok(c.0)
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

/// Catch-up rounds before the final replay with writers held off.
const DEFRAG_CATCH_UP_ROUNDS: usize = 8;
/// A journal this short is replayed with writers held off.
const DEFRAG_FINAL_REPLAY: usize = 1000;

/// Applies journaled changes to the copy, in order, in one transaction.
fn replay(copy: &Database, journal: &[JournalEntry]) -> Result<()> {
    if journal.is_empty() {
        return Ok(());
    }
    let mut tx = copy.begin_write()?;
    let mut ids = HashMap::new();
    for b in Bucket::ALL {
        ids.insert(
            b,
            tx.bucket(WriteBucket::ROOT, b.name())?
                .ok_or(Error::BucketNotFound)?,
        );
    }
    for (bucket, key, value) in journal {
        match value {
            Some(v) => tx.put(ids[bucket], key, v)?,
            None => {
                tx.delete(ids[bucket], key)?;
            }
        }
    }
    tx.commit()
}

fn defrag_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.defrag", path.display()))
}

/// What an online defragmentation did.
#[derive(Debug, Clone)]
pub struct DefragStats {
    pub size_before: u64,
    pub size_after: u64,
    /// The whole operation.
    pub total: Duration,
    /// How long writers were held off (the final replay and swap).
    pub stall: Duration,
    /// Changes made while the snapshot was copied, replayed at the end.
    pub journaled: usize,
}

impl Backend {
    /// Rewrites the database into a new, compact file while reads and writes
    /// go on: a snapshot is copied without any lock while changes are
    /// journaled; then, with writers held off, the journal is replayed into
    /// the copy, which replaces the file. Readers never wait; open readers
    /// keep the old file until they finish. A crash before the final rename
    /// leaves the old file as it was.
    pub fn defrag(&self) -> Result<DefragStats> {
        let inner = &*self.inner;
        let start = std::time::Instant::now();
        let path = inner.cfg.path.clone();
        let tmp = defrag_path(&path);
        let size_before = std::fs::metadata(&path)?.len();
        let (rx, page_size) = {
            let mut b = lock(&inner.batch);
            if b.failed {
                return Err(Error::Poisoned);
            }
            publish(inner, &mut b);
            commit(inner, &mut b)?;
            b.journal = Some(Vec::new());
            let db = inner.db();
            (db.begin_read(), db.info().page_size)
        };
        let _ = std::fs::remove_file(&tmp);
        crate::crash_point!(defragBeforeCopy);
        let copied = crate::btree::compact_snapshot(&rx, page_size, &tmp, &mut |_| {});
        drop(rx);
        let copy = match copied.and_then(|_| {
            Database::open(
                &tmp,
                Options {
                    no_sync: true,
                    ..Options::default()
                },
            )
        }) {
            Ok(c) => c,
            Err(e) => {
                lock(&inner.batch).journal = None;
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Catch up in rounds without holding writers off, while the journal
        // keeps filling; only a short final remainder is replayed with
        // writers held.
        let mut journaled = 0;
        let mut b = lock(&inner.batch);
        for _ in 0..DEFRAG_CATCH_UP_ROUNDS {
            let pending = b.journal.as_ref().map_or(0, Vec::len);
            if pending <= DEFRAG_FINAL_REPLAY {
                break;
            }
            let journal = b.journal.replace(Vec::new()).unwrap_or_default();
            drop(b);
            journaled += journal.len();
            // Flushed here, so the final sync with writers held is short.
            let replayed = replay(&copy, &journal).and_then(|()| copy.sync());
            b = lock(&inner.batch);
            if let Err(e) = replayed {
                b.journal = None;
                drop(copy);
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        let stall_start = std::time::Instant::now();
        let journal = b.journal.take().unwrap_or_default();
        journaled += journal.len();
        let res = (|| -> Result<DefragStats> {
            publish(inner, &mut b);
            commit(inner, &mut b)?;
            replay(&copy, &journal)?;
            // Closing writes the freelist and syncs everything.
            copy.close()?;
            crate::crash_point!(defragBeforeRename);
            swap_in(inner, &mut b, &tmp)?;
            Ok(DefragStats {
                size_before,
                size_after: std::fs::metadata(&path)?.len(),
                total: start.elapsed(),
                stall: stall_start.elapsed(),
                journaled,
            })
        })();
        if let Err(e) = &res {
            fail_batch(&mut b, &path, e);
        }
        res
    }
}

impl Backend {
    /// Replaces the whole database with the file `from` (a complete,
    /// synced database, such as a snapshot received from the raft leader):
    /// with writers held off, what is pending is committed to the old file,
    /// `before_swap` runs (nothing can commit from then on until the swap),
    /// `from` is renamed over the backend's file and the directory synced,
    /// and readers move to the new file. Open readers keep the old one
    /// until they finish. A crash before the rename leaves the old file
    /// whole; after it, the new one.
    pub fn replace_with(&self, from: &Path, before_swap: impl FnOnce()) -> Result<()> {
        let inner = &*self.inner;
        let mut b = lock(&inner.batch);
        if b.failed {
            return Err(Error::Poisoned);
        }
        publish(inner, &mut b);
        let res = commit(inner, &mut b).and_then(|()| {
            before_swap();
            swap_in(inner, &mut b, from)
        });
        if let Err(e) = &res {
            fail_batch(&mut b, &inner.cfg.path, e);
        }
        res
    }
}

/// With the batch held and empty (just committed): renames `from` over the
/// backend's file, syncs the directory, opens the new file and moves the
/// batch and the readers' view to it.
fn swap_in(inner: &Inner, b: &mut Batch, from: &Path) -> Result<()> {
    let path = &inner.cfg.path;
    std::fs::rename(from, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let db = Database::open(
        path,
        Options {
            no_sync: inner.cfg.no_sync,
            ..Options::default()
        },
    )?;
    // End the (empty) batch on the old file.
    b.tx = None;
    let (tx, ids) = begin(&db)?;
    let view = ReadView::new(db.begin_read(), Buffer::default())?;
    // Old readers may hold the replaced file a while. Its last close frees
    // the whole unlinked file (blocks and page cache), which must not land
    // on a reader: a reaper thread holds it until no one else does, and
    // closes it without writing.
    let old = inner.db();
    old.retire();
    *inner.db.write().unwrap_or_else(|e| e.into_inner()) = db;
    std::thread::spawn(move || {
        while old.handles() > 1 {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(old);
    });
    b.tx = Some(tx);
    b.ids = ids;
    *inner.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    Ok(())
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
