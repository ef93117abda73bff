//! Restoring a backup into a new member's data dir (`strata-util snapshot
//! restore`, like `etcdutl snapshot restore`), and what `snapshot status`
//! reports of a backup.
//!
//! A backup is a bbolt file (what Maintenance/Snapshot streams, Strata's
//! or etcd's: the format is the same) usually followed by the SHA-256 of
//! the file: a length of a multiple of 512 plus 32 bytes says a digest is
//! there (etcd's rule). The digest is checked unless the caller skips it;
//! a file without one is refused unless the check is skipped.
//!
//! Restoring writes a db holding every bucket of the backup (keys,
//! revisions, leases, auth, alarms), minus the old cluster's members and
//! its raft bookkeeping (consistent index, markers), plus the new
//! cluster's members from `--initial-cluster` and `--initial-cluster-token`.
//! With `--bump-revision N --mark-compacted` (etcd 3.6's etcdutl) the db
//! also records a compaction N revisions past the backup's last one: the
//! member opens at that revision with everything before it compacted
//! (strata_engine's `Store::schedule_bumped_compaction`).
//! The data dir is built under a temporary name and renamed into place
//! once synced. The member then starts with `--initial-cluster-state new`
//! and the same flags: finding its members in the db, it creates its WAL
//! and starts from the backup's revision.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::Digest;
use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_engine::bbolt::BoltFile;

use crate::statemachine::membership;
use crate::statemachine::meta;

/// What etcdutl 3.6's `snapshot status` reports
/// (etcdutl/snapshot/v3_snapshot.go Status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every bucket's name, then its keys and values.
    pub hash: u32,
    /// The main revision of the last entry of the `key` bucket.
    pub revision: i64,
    /// Keys live at that revision (3.6: each key whose newest revision is
    /// not a deletion; 3.4 and 3.5 counted every entry of every bucket).
    pub total_key: u64,
    /// Bytes of the db (without the digest).
    pub total_size: u64,
    /// The backup's storage version (`X.Y.Z`), empty when it records none.
    pub version: String,
    /// Entries in all buckets (what a restore copies).
    pub entries: u64,
}

/// A backup file read: its db bytes, and whether a digest followed.
pub struct Backup {
    pub db: Vec<u8>,
    pub had_digest: bool,
}

/// Reads a backup, checking its SHA-256 trailer unless `skip_hash_check`.
pub fn read_backup(path: &Path, skip_hash_check: bool) -> anyhow::Result<Backup> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let had_digest = bytes.len() % 512 == 32;
    if had_digest {
        let at = bytes.len() - 32;
        let want = bytes.split_off(at);
        if !skip_hash_check {
            let got = sha2::Sha256::digest(&bytes);
            if got.as_slice() != want.as_slice() {
                bail!(
                    "expected sha256 {}, got {} (file {})",
                    hex(&want),
                    hex(&got),
                    path.display()
                );
            }
        }
    } else if !skip_hash_check {
        bail!(
            "snapshot missing hash but --skip-hash-check=false ({}: a copy of a db file, not a saved snapshot?)",
            path.display()
        );
    }
    Ok(Backup {
        db: bytes,
        had_digest,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// etcdctl's `snapshot status` of a db.
pub fn status(db: &[u8]) -> anyhow::Result<Status> {
    status_of(&BoltFile::read(db)?, db.len())
}

/// [`status`] of a db already read (`len`: its size in bytes).
pub fn status_of(f: &BoltFile, len: usize) -> anyhow::Result<Status> {
    use prost::Message;
    let mut crc = 0u32;
    let mut entries = 0u64;
    let mut revision = 0i64;
    // Live keys, in revision order: a tombstone (a revision key ending in
    // `t`) ends its key's life.
    let mut live: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut version = String::new();
    for (name, bucket) in &f.buckets {
        crc = crc32c::crc32c_append(crc, name);
        for (k, v) in bucket {
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, v);
            entries += 1;
        }
        if name.as_slice() == Bucket::Meta.name() {
            if let Some((_, v)) = bucket
                .iter()
                .find(|(k, _)| k.as_slice() == crate::statemachine::versions::STORAGE_VERSION_KEY)
            {
                if let Ok(sv) = semver::Version::parse(&String::from_utf8_lossy(v)) {
                    version = sv.to_string();
                }
            }
        }
        if name.as_slice() == Bucket::Key.name() {
            if let Some((k, _)) = bucket.last() {
                let main: [u8; 8] = k
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .context("a key bucket entry shorter than a revision")?;
                revision = i64::from_be_bytes(main);
            }
            for (k, v) in bucket {
                let kv = strata_proto::mvccpb::KeyValue::decode(v.as_slice())
                    .with_context(|| format!("the key bucket's value at {}", hex(k)))?;
                if k.len() == 18 && k[17] == b't' {
                    live.remove(&kv.key);
                } else {
                    live.insert(kv.key);
                }
            }
        }
    }
    Ok(Status {
        hash: crc,
        revision,
        total_key: live.len() as u64,
        total_size: len as u64,
        version,
        entries,
    })
}

/// What a restore needs to know of the new cluster.
pub struct RestoreParams {
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: Vec<String>,
    pub data_dir: PathBuf,
    /// etcdutl's `--bump-revision N --mark-compacted`: the restored member
    /// starts N revisions past the backup's last, everything before
    /// compacted (so watchers of the old cluster see a compaction, never
    /// revisions that repeat). None: starts at the backup's revision.
    pub bump_revision: Option<u64>,
}

/// What a restore made.
pub struct Restored {
    /// The new cluster's members.
    pub members: Vec<membership::Member>,
    /// With `bump_revision`: the backup's last revision and the one the
    /// member starts at, compacted.
    pub bumped: Option<(i64, i64)>,
}

/// etcdutl's rule (etcdutl/etcdutl/snapshot_command.go): the two flags
/// come together or not at all, in etcd's words.
pub fn bump_of(bump_revision: u64, mark_compacted: bool) -> anyhow::Result<Option<u64>> {
    if (bump_revision == 0) == mark_compacted {
        bail!("--mark-compacted required if --revision-bump > 0");
    }
    Ok((bump_revision > 0).then_some(bump_revision))
}

/// Meta keys of the old cluster's raft that a restored member must not
/// inherit.
const RAFT_META: [&[u8]; 4] = [
    meta::CONSISTENT_INDEX_KEY,
    meta::TERM_KEY,
    meta::SNAPSHOT_KEY,
    meta::CONF_STATE_KEY,
];

/// Builds a new member's data dir from a backup's db (read with
/// [`BoltFile::read`]); returns the new members (id, name, peer URLs) and
/// the bump made. `progress` is told of every entry copied.
pub fn restore(
    f: &BoltFile,
    p: &RestoreParams,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Restored> {
    if p.data_dir.exists() {
        bail!("data-dir {:?} exists", p.data_dir.display().to_string());
    }
    let members = membership::from_initial_cluster(&p.initial_cluster, &p.initial_cluster_token)?;
    let me = members
        .iter()
        .find(|m| m.name == p.name)
        .with_context(|| format!("{:?} is not in --initial-cluster", p.name))?;
    let mut mine = me.peer_urls.clone();
    mine.sort();
    let mut given = p.initial_advertise_peer_urls.clone();
    given.sort();
    if mine != given {
        bail!(
            "--initial-cluster has {}={:?} but --initial-advertise-peer-urls is {:?}",
            p.name,
            me.peer_urls,
            p.initial_advertise_peer_urls
        );
    }
    let tmp = p.data_dir.with_extension("restoring");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let member_dir = tmp.join("member");
    std::fs::create_dir_all(member_dir.join("wal"))?;
    std::fs::create_dir_all(member_dir.join("snap"))?;
    let backend = Backend::open(BackendConfig::new(member_dir.join("db")))?;
    for (name, entries) in &f.buckets {
        let Some(bucket) = Bucket::ALL
            .into_iter()
            .find(|b| b.name() == name.as_slice())
        else {
            tracing::warn!(bucket = %String::from_utf8_lossy(name), "a bucket strata does not keep was left out");
            continue;
        };
        if matches!(bucket, Bucket::Members | Bucket::MembersRemoved) {
            continue;
        }
        for chunk in entries.chunks(10_000) {
            {
                let mut b = backend.batch()?;
                for (k, v) in chunk {
                    if bucket == Bucket::Meta && RAFT_META.contains(&k.as_slice()) {
                        continue;
                    }
                    b.put(bucket, k, v)?;
                }
            }
            backend.force_commit()?;
            progress(chunk.len() as u64);
        }
    }
    backend.close()?;
    let backend = Backend::open(BackendConfig::new(member_dir.join("db")))?;
    membership::store(&backend, &members)?;
    let bumped = match p.bump_revision {
        Some(n) => {
            let amount = i64::try_from(n).context("--bump-revision is too large")?;
            Some(strata_engine::mvcc::Store::schedule_bumped_compaction(
                &backend, amount,
            )?)
        }
        None => None,
    };
    backend.close()?;
    crate::statemachine::snapdir::sync_dirs_up(
        &[&member_dir.join("wal"), &member_dir.join("snap")],
        &tmp,
    )?;
    std::fs::rename(&tmp, &p.data_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), p.data_dir.display()))?;
    crate::statemachine::snapdir::sync_dirs_up(&[&p.data_dir], &p.data_dir)?;
    Ok(Restored { members, bumped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn kv(key: &str, rev: i64) -> Vec<u8> {
        strata_proto::mvccpb::KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: rev,
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn rev(main: i64, tombstone: bool) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0i64.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    /// etcdutl 3.6's count: keys whose newest revision is not a deletion;
    /// the version is the meta bucket's storage version.
    #[test]
    fn status_counts_live_keys_and_reads_the_storage_version() {
        let f = BoltFile {
            buckets: vec![
                (
                    b"key".to_vec(),
                    vec![
                        (rev(2, false), kv("a", 2)),
                        (rev(3, false), kv("b", 3)),
                        (rev(4, false), kv("a", 4)),
                        (rev(5, true), kv("b", 5)),
                        (rev(6, false), kv("c", 6)),
                    ],
                ),
                (
                    b"meta".to_vec(),
                    vec![(b"storageVersion".to_vec(), b"3.6.0".to_vec())],
                ),
            ],
        };
        let s = status_of(&f, 4096).unwrap();
        assert_eq!((s.total_key, s.revision, s.entries), (2, 6, 6));
        assert_eq!(s.version, "3.6.0");
    }
}
