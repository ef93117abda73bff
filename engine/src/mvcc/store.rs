//! The multi-version store: etcd's mvcc semantics over the backend.
//!
//! Invariants:
//! - The store's revision starts at 1. Each write transaction that changes
//!   anything takes the next main revision; its changes take sub revisions
//!   0, 1, 2… A delete that matches nothing changes nothing.
//! - Every change is a `key` bucket entry under its revision (17 bytes, plus
//!   `t` for a tombstone) holding a `mvccpb.KeyValue`; the in-memory index
//!   maps keys to their revisions and is rebuilt from that bucket on open.
//! - Lock order: the store's state lock, then the backend batch. A write
//!   transaction holds both; it publishes its changes to readers before it
//!   releases the state lock, and a batch commit (fsync) that it triggers
//!   happens after, so readers never wait for an fsync.
//! - Compaction at R first records `scheduledCompactRev = R` (in the batch)
//!   and refuses reads below R; then, off the caller's path, commits that,
//!   compacts the index a slice of keys at a time, deletes the revisions no
//!   read >= R needs, in batches, and finally records
//!   `finishedCompactRev = R`. On open, a scheduled but unfinished
//!   compaction runs again.
//! - The store's revision is never below its compact revision, scheduled
//!   or finished: a db whose `scheduledCompactRev` lies past its last
//!   write (a backup restored with etcdutl's `--bump-revision
//!   --mark-compacted`, see [`Store::schedule_bumped_compaction`]) opens at
//!   that revision, every older one compacted, and writes go on from it.

use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message;

use super::index::{End, TreeIndex};
use super::kv::KeyValue;
use super::revision::Revision;
use super::types::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::backend::{Backend, BatchTx, Bucket, ReadView};
use crate::error::{Error, Result};

pub const SCHEDULED_COMPACT_KEY: &[u8] = b"scheduledCompactRev";
pub const FINISHED_COMPACT_KEY: &[u8] = b"finishedCompactRev";
/// Revisions deleted per batch by compaction (etcd's default).
pub const COMPACTION_BATCH: usize = 1000;
/// Index keys compacted per hold of the state lock.
pub const INDEX_COMPACTION_SLICE: usize = 2_000;
/// The pause between two holds of a lock by compaction.
const LOCK_GAP: std::time::Duration = std::time::Duration::from_micros(50);

pub(super) struct State {
    pub index: TreeIndex,
    /// The store's revision.
    pub current: i64,
    /// Reads below this revision are compacted away.
    pub compact: i64,
}

/// Told about every write transaction that changed something, in revision
/// order, while the store's state is still locked (so nothing can interleave).
pub trait Observer: Send + Sync {
    /// Whether events need their previous KeyValue filled in.
    fn needs_prev_kv(&self) -> bool;
    /// The events of revision `rev`, in sub-revision order.
    fn on_write(&self, rev: i64, events: &[super::types::Event]);
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(super) backend: Backend,
    pub(super) state: Arc<RwLock<State>>,
    /// Weak: the observer (the watchable store's hub) owns its background
    /// thread's clone of this store, so a strong reference here would keep
    /// both, and the db file, alive forever.
    pub(super) observer: Arc<RwLock<Option<std::sync::Weak<dyn Observer>>>>,
    /// Held while a compaction deletes (one at a time).
    compactor: Arc<std::sync::Mutex<()>>,
}

/// Where values of revisions are read from: a reader's view, or the write
/// batch (which sees its own changes).
pub(super) trait Values {
    fn revision_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The db file the values come from (for errors).
    fn file(&self) -> &Path;
}

impl Values for ReadView {
    fn file(&self) -> &Path {
        self.path()
    }

    fn revision_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(Bucket::Key, key)
    }
}

impl Values for BatchTx<'_> {
    fn file(&self) -> &Path {
        self.path()
    }

    fn revision_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(Bucket::Key, key)
    }
}

/// Live keys that carry a lease, with the lease id.
pub type LeasedKeys = Vec<(Vec<u8>, i64)>;

/// Corruption found in a record: the db file, the bucket and the key.
pub(super) fn corrupt_record(
    file: &Path,
    bucket: Bucket,
    key: &[u8],
    what: impl Into<String>,
) -> Error {
    Error::CorruptedRecord {
        file: file.to_path_buf(),
        bucket: std::str::from_utf8(bucket.name()).unwrap_or("?"),
        key: key.iter().map(|b| format!("{b:02x}")).collect(),
        what: what.into(),
    }
}

/// The KeyValue stored under revision key `rev_key` of the key bucket.
pub(super) fn decode_kv(file: &Path, rev_key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(bytes)
        .map_err(|e| corrupt_record(file, Bucket::Key, rev_key, format!("value: {e}")))
}

/// A revision key of the key bucket.
pub(super) fn parse_rev_key(file: &Path, k: &[u8]) -> Result<(Revision, bool)> {
    Revision::from_key(k).ok_or_else(|| corrupt_record(file, Bucket::Key, k, "not a revision"))
}

fn meta_rev(view: &ReadView, key: &[u8]) -> Result<Option<i64>> {
    Ok(match view.get(Bucket::Meta, key)? {
        Some(v) => Some(
            Revision::from_key(&v)
                .ok_or_else(|| corrupt_record(view.path(), Bucket::Meta, key, "not a revision"))?
                .0
                .main,
        ),
        None => None,
    })
}

impl Store {
    /// Opens the store on a backend: rebuilds the index from the key bucket
    /// and finishes an interrupted compaction.
    pub fn open(backend: Backend) -> Result<Store> {
        Ok(Store::open_with_leases(backend)?.0)
    }

    /// [`Store::open`], also handing back every live key that has a lease
    /// with its lease id (found by the same scan that rebuilds the index),
    /// so a lessor can be rebuilt without a second pass over the keys.
    pub fn open_with_leases(backend: Backend) -> Result<(Store, LeasedKeys)> {
        let view = backend.read();
        let finished = meta_rev(&view, FINISHED_COMPACT_KEY)?;
        let scheduled = meta_rev(&view, SCHEDULED_COMPACT_KEY)?;
        let mut st = State {
            index: TreeIndex::default(),
            current: 1,
            compact: finished.unwrap_or(-1),
        };
        let leased = restore(&backend, &mut st)?;
        if st.current < st.compact {
            st.current = st.compact;
        }
        let store = Store {
            backend,
            state: Arc::new(RwLock::new(st)),
            observer: Arc::new(RwLock::new(None)),
            compactor: Arc::new(std::sync::Mutex::new(())),
        };
        if let Some(s) = scheduled {
            if Some(s) != finished {
                store.run_compaction(s)?;
            }
        }
        Ok((store, leased))
    }

    /// Rebuilds the index and revisions from the backend, after its file
    /// was replaced ([`Backend::replace_with`]); `during` runs while the
    /// state is still locked (the watchers move to catching up there, so no
    /// watcher can be created between the old state and the new). Waits for
    /// a running compaction; finishes one the new file had scheduled.
    /// Returns the live keys with a lease, as [`Store::open_with_leases`].
    pub(super) fn reload(&self, during: impl FnOnce()) -> Result<LeasedKeys> {
        let (leased, scheduled, finished) = {
            let _no_compaction = self.compactor.lock().unwrap_or_else(|e| e.into_inner());
            let view = self.backend.read();
            let finished = meta_rev(&view, FINISHED_COMPACT_KEY)?;
            let scheduled = meta_rev(&view, SCHEDULED_COMPACT_KEY)?;
            drop(view);
            let mut fresh = State {
                index: TreeIndex::default(),
                current: 1,
                compact: finished.unwrap_or(-1),
            };
            let leased = restore(&self.backend, &mut fresh)?;
            fresh.current = fresh.current.max(fresh.compact);
            let mut st = self.write_state();
            *st = fresh;
            during();
            (leased, scheduled, finished)
        };
        if let Some(s) = scheduled {
            if Some(s) != finished {
                self.run_compaction(s)?;
            }
        }
        Ok(leased)
    }

    /// Moves a closed db's revision `amount` past its last write and marks
    /// every revision below the new one compacted (etcdutl's `snapshot
    /// restore --bump-revision --mark-compacted`): records
    /// `scheduledCompactRev` at the new revision, so the next open runs
    /// the compaction and starts there. Returns (last write, new revision).
    /// Clients' watches and reads from before then see a compaction, never
    /// a revision that goes back.
    pub fn schedule_bumped_compaction(backend: &Backend, amount: i64) -> Result<(i64, i64)> {
        let latest = {
            let rx = backend.db().begin_read();
            let bucket = rx
                .bucket(rx.root(), Bucket::Key.name())?
                .ok_or(Error::BucketNotFound)?;
            let mut c = rx.cursor(bucket);
            match c.last()? {
                Some(e) => parse_rev_key(rx.path(), e.key)?.0.main,
                None => 1,
            }
        };
        let view = backend.read();
        let latest = [SCHEDULED_COMPACT_KEY, FINISHED_COMPACT_KEY]
            .into_iter()
            .filter_map(|k| meta_rev(&view, k).transpose())
            .try_fold(latest, |a, r| r.map(|r| a.max(r)))?;
        drop(view);
        let bumped = latest.checked_add(amount).ok_or_else(|| {
            Error::InvalidOption(format!("revision {latest} bumped by {amount} overflows"))
        })?;
        {
            let mut batch = backend.batch()?;
            batch.put(
                Bucket::Meta,
                SCHEDULED_COMPACT_KEY,
                &Revision::new(bumped, 0).to_key(false),
            )?;
        }
        backend.force_commit()?;
        Ok((latest, bumped))
    }

    /// Installs the observer of writes (the watchable store).
    /// The store keeps a weak reference: the caller owns the observer.
    pub fn set_observer(&self, o: &Arc<dyn Observer>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(o));
    }

    pub(super) fn observer(&self) -> Option<Arc<dyn Observer>> {
        self.observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(super) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's revision.
    pub fn revision(&self) -> i64 {
        self.read_state().current
    }

    /// How many keys the index holds (live or with history).
    pub fn index_len(&self) -> usize {
        self.read_state().index.len()
    }

    /// The compacted revision (-1 if never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.read_state().compact
    }

    /// A range at the current or a past revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let st = self.read_state();
        // Taken under the state lock: holds every revision the index has.
        let view = self.backend.read();
        range_at(&st, &*view, req, st.current)
    }

    /// Compacts away every revision below `rev` that no read at `rev` or
    /// later needs. Returns once the compaction is durable and done.
    pub fn compact(&self, rev: i64) -> Result<()> {
        self.begin_compaction(rev)?.finish()
    }

    /// The first half of a compaction: records `scheduledCompactRev` in the
    /// batch and makes reads below `rev` fail, under the state lock for a
    /// moment (no pass over the index). The returned job makes the schedule
    /// durable, compacts the index a slice of keys at a time and deletes the
    /// old revisions, on whatever thread runs it, while reads and writes go
    /// on; from the schedule's commit on, the compaction survives a crash
    /// (open runs it again).
    pub fn begin_compaction(&self, rev: i64) -> Result<CompactionJob> {
        let mut st = self.write_state();
        if rev <= st.compact {
            return Err(Error::Compacted);
        }
        if rev > st.current {
            return Err(Error::FutureRevision);
        }
        let mut batch = self.backend.batch()?;
        batch.put(
            Bucket::Meta,
            SCHEDULED_COMPACT_KEY,
            &Revision::new(rev, 0).to_key(false),
        )?;
        st.compact = rev;
        Ok(CompactionJob {
            store: self.clone(),
            rev,
        })
    }

    fn run_compaction(&self, rev: i64) -> Result<()> {
        {
            let mut st = self.write_state();
            st.compact = st.compact.max(rev);
            st.current = st.current.max(rev);
        }
        CompactionJob {
            store: self.clone(),
            rev,
        }
        .finish()
    }

    /// Compacts the index at `rev`, [`INDEX_COMPACTION_SLICE`] keys per
    /// hold of the state lock, and returns the revisions at or below `rev`
    /// still needed. Between slices writers add revisions above `rev`
    /// only, which compaction at `rev` never touches; reads at or above
    /// `rev` answer the same from a compacted key as from one not yet
    /// compacted.
    fn compact_index(&self, rev: i64) -> std::collections::HashSet<Revision> {
        let mut keep = std::collections::HashSet::new();
        let mut from: Option<Box<[u8]>> = Some(Box::default());
        while let Some(start) = from {
            let began = std::time::Instant::now();
            // The slice's own set: the big one grows (and rehashes, tens of
            // MB at millions of keys) outside the lock.
            let mut kept = std::collections::HashSet::new();
            let mut st = self.write_state();
            from = st
                .index
                .compact_slice(rev, &start, INDEX_COMPACTION_SLICE, &mut kept);
            drop(st);
            keep.extend(kept);
            // Paced like the deletion (see there).
            std::thread::sleep(began.elapsed().max(LOCK_GAP));
        }
        keep
    }

    /// etcd's HashKV: a CRC-32C over the key bucket's name and its entries
    /// up to `rev` (0: the current revision), leaving out revisions at or
    /// below the compact revision that a read at `rev` no longer needs
    /// (etcd's rule: only when some are still needed) and a tombstone at
    /// exactly the compact revision (etcd ≥3.5.16 keeps it where older
    /// versions deleted it; the hash is the same either way). A `rev` below
    /// the compact revision is compacted; the compact revision itself is
    /// hashed (etcd 3.6 and 3.5.17). Returns (hash, the store's revision,
    /// the compact revision).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let (view, current, compact, keep, upper) = {
            let st = self.read_state();
            if rev > 0 && rev < st.compact {
                return Err(Error::Compacted);
            }
            if rev > st.current {
                return Err(Error::FutureRevision);
            }
            let upper = if rev <= 0 { st.current } else { rev };
            (
                self.backend.read(),
                st.current,
                st.compact,
                st.index.keep(upper),
                upper,
            )
        };
        // CRC-32C over the bucket name, then each kept key and value, as
        // etcd hashes them.
        let mut crc = crc32c::crc32c(Bucket::Key.name());
        let end = Revision::new(upper + 1, 0).to_key(false);
        for (k, v) in view.range(Bucket::Key, b"", &end, 0)? {
            let (r, tombstone) = parse_rev_key(view.path(), &k)?;
            if r.main <= compact && !keep.is_empty() && !keep.contains(&r) {
                continue;
            }
            if r.main == compact && tombstone {
                continue;
            }
            crc = crc32c::crc32c_append(crc, &k);
            crc = crc32c::crc32c_append(crc, &v);
        }
        Ok((crc, current, compact))
    }
}

/// The deleting half of a compaction (see [`Store::begin_compaction`]).
/// Jobs of one store run one at a time, in the order they finish.
pub struct CompactionJob {
    store: Store,
    rev: i64,
}

impl CompactionJob {
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Deletes, in batches of [`COMPACTION_BATCH`], every revision <= the
    /// compaction's that the index no longer needs, then records
    /// `finishedCompactRev` and commits. Writers get the batch between
    /// chunks.
    pub fn finish(self) -> Result<()> {
        let store = &self.store;
        let _one_at_a_time = store.compactor.lock().unwrap_or_else(|e| e.into_inner());
        // The schedule must be durable before anything is deleted.
        crate::crash_point!(compactBeforeCommitScheduledCompact);
        store.backend.force_commit()?;
        crate::crash_point!(compactAfterCommitScheduledCompact);
        let keep = store.compact_index(self.rev);
        let end = Revision::new(self.rev + 1, 0).to_key(false);
        let mut start = Vec::new();
        loop {
            let began = std::time::Instant::now();
            let view = store.backend.read();
            let chunk = view.range(Bucket::Key, &start, &end, COMPACTION_BATCH)?;
            if chunk.is_empty() {
                break;
            }
            let mut batch = store.backend.batch()?;
            for (k, _) in &chunk {
                let (r, _) = parse_rev_key(view.path(), k)?;
                if !keep.contains(&r) {
                    batch.delete(Bucket::Key, k)?;
                }
            }
            drop(batch);
            crate::crash_point!(compactAfterDeleteBatch);
            // Paced: as long off the CPU as the batch took on it, so that
            // writers keep a core (and get the unfair locks back).
            std::thread::sleep(began.elapsed().max(LOCK_GAP));
            start = chunk.last().map(|(k, _)| k.clone()).unwrap_or_default();
            start.push(0);
        }
        crate::crash_point!(compactBeforeSetFinishedCompact);
        {
            let mut batch = store.backend.batch()?;
            // A later compaction may have finished first: never move back.
            let done = match batch.get(Bucket::Meta, FINISHED_COMPACT_KEY)? {
                Some(v) => Revision::from_key(&v).map_or(0, |(r, _)| r.main),
                None => 0,
            };
            if self.rev > done {
                batch.put(
                    Bucket::Meta,
                    FINISHED_COMPACT_KEY,
                    &Revision::new(self.rev, 0).to_key(false),
                )?;
            }
        }
        store.backend.force_commit()?;
        crate::crash_point!(compactAfterSetFinishedCompact);
        Ok(())
    }
}

/// Rebuilds the index from the key bucket, in revision order, and returns
/// the live keys that carry a lease (each key's newest revision decides).
fn restore(backend: &Backend, st: &mut State) -> Result<LeasedKeys> {
    use super::key_index::KeyIndex;
    let rx = backend.db().begin_read();
    let bucket = rx
        .bucket(rx.root(), Bucket::Key.name())?
        .ok_or(Error::BucketNotFound)?;
    let mut keys: std::collections::HashMap<Box<[u8]>, KeyIndex> = std::collections::HashMap::new();
    let mut leased: std::collections::HashMap<Box<[u8]>, i64> = std::collections::HashMap::new();
    let mut c = rx.cursor(bucket);
    let mut it = c.first()?;
    while let Some(e) = it {
        let (rev, tombstone) = parse_rev_key(rx.path(), e.key)?;
        let kv = decode_kv(rx.path(), e.key, e.value)?;
        if tombstone || kv.lease == 0 {
            leased.remove(kv.key.as_slice());
        } else {
            leased.insert(kv.key.clone().into_boxed_slice(), kv.lease);
        }
        match keys.get_mut(kv.key.as_slice()) {
            Some(ki) if tombstone => {
                ki.tombstone(rev);
            }
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new();
                if tombstone {
                    ki.restore_tombstone(rev);
                } else {
                    ki.restore(Revision::new(kv.create_revision, 0), rev, kv.version);
                }
                keys.insert(kv.key.into_boxed_slice(), ki);
            }
        }
        st.current = st.current.max(rev.main);
        it = c.next()?;
    }
    st.index = TreeIndex::from_unsorted(keys);
    Ok(leased
        .into_iter()
        .map(|(k, lease)| (k.into_vec(), lease))
        .collect())
}

/// The revision a read asked for `asked` answers at (0 or less: `current`),
/// or etcd's error for one in the future or compacted away.
pub(super) fn read_revision(st: &State, asked: i64, current: i64) -> Result<i64> {
    if asked > current {
        return Err(Error::FutureRevision);
    }
    let rev = if asked <= 0 { current } else { asked };
    if rev < st.compact {
        return Err(Error::Compacted);
    }
    Ok(rev)
}

/// A range as etcd serves it (`current` is the revision the reader treats as
/// the store's).
pub(super) fn range_at(
    st: &State,
    values: &dyn Values,
    req: &RangeRequest,
    current: i64,
) -> Result<RangeResponse> {
    let rev = read_revision(st, req.revision, current)?;
    let end = End::from_range_end(&req.range_end);
    if req.count_only {
        let count = st.index.count(&req.key, &end, rev) as i64;
        return Ok(RangeResponse {
            kvs: Vec::new(),
            more: false,
            count,
            revision: current,
        });
    }
    let fetch = req.index_fetch().unwrap_or(0);
    let (found, total) = st.index.range(&req.key, &end, rev, fetch);
    let mut kvs = Vec::with_capacity(found.len());
    for (_, f) in &found {
        let rev_key = f.modified.to_key(false);
        let bytes = values.revision_value(&rev_key)?.ok_or_else(|| {
            corrupt_record(
                values.file(),
                Bucket::Key,
                &rev_key,
                "in the index but not stored",
            )
        })?;
        kvs.push(decode_kv(values.file(), &rev_key, &bytes)?);
    }
    kvs.retain(|kv| req.passes_filters(kv.mod_revision, kv.create_revision));
    let order = req.effective_order();
    if order != SortOrder::None {
        kvs.sort_by(|a, b| {
            let o = match req.sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                o.reverse()
            } else {
                o
            }
        });
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        kvs,
        more,
        count: total as i64,
        revision: current,
    })
}
