//! `member/snap/`: database snapshots a follower received from the leader.
//!
//! Names: `<term>-<index>.db.part` (16 hex digits each) while the bytes
//! arrive; `<term>-<index>.db` once the file is whole, its SHA-256 checked,
//! synced, and its meta bucket holds the raft snapshot mark for (index,
//! term) (so once it replaces `member/db`, start-up opens the WAL at that
//! mark).
//!
//! Install order (the raft thread, [`crate::raftnode`]): the WAL records
//! the mark and is synced; only then is the file renamed over `member/db`.
//! A crash between the two leaves a `.db` file here whose mark the WAL
//! holds: [`recover`] finishes the rename at start-up. Any other file here
//! (a partial transfer, a snapshot raft never took) is removed then.

use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::wal::{SnapshotMark, Wal, WalOptions};

use crate::statemachine::meta;

/// The name of a snapshot file that is still arriving.
pub fn part_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.db.part")
}

/// The name of a whole, verified snapshot file.
pub fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.db")
}

/// (term, index) of a whole snapshot file's name.
pub fn parse(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".db")?;
    let (t, i) = stem.split_once('-')?;
    if t.len() != 16 || i.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(t, 16).ok()?,
        u64::from_str_radix(i, 16).ok()?,
    ))
}

/// The snapshot file a raft snapshot's data names (only a name this module
/// makes is accepted: no other path can be reached through it).
pub fn resolve(snap_dir: &Path, data: &[u8]) -> Option<PathBuf> {
    let name = std::str::from_utf8(data).ok()?;
    parse(name)?;
    Some(snap_dir.join(name))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes the names on the way from `top`'s parent down to each of `dirs`
/// durable: fsyncs every directory from each of them up to and including
/// `top`'s parent, once each (a dir outside `top` is synced alone). A
/// directory created and never synced, or whose parent never was, can be
/// gone after a power loss with everything written in it (POSIX asks a
/// directory fsync for a new name; some filesystems keep it anyway, others
/// do not).
pub fn sync_dirs_up(dirs: &[&Path], top: &Path) -> std::io::Result<()> {
    let dot = |p: &Path| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    };
    let top_parent = dot(top.parent().unwrap_or(Path::new("")));
    let mut synced = std::collections::HashSet::new();
    for dir in dirs {
        let mut at = Some(*dir);
        while let Some(d) = at {
            let d = dot(d);
            if synced.insert(d.clone()) {
                sync_dir(&d)?;
            }
            if d == top_parent || !d.starts_with(top) {
                break;
            }
            at = at.and_then(Path::parent);
        }
    }
    Ok(())
}

/// Removes every file of `snap_dir`.
pub fn remove_all(snap_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(snap_dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if let Err(err) = std::fs::remove_file(&p) {
            tracing::warn!(file = %p.display(), error = %err, "could not remove a left-over snapshot file");
        }
    }
}

/// Removes the whole snapshot files of `snap_dir` at or below `index` (a
/// newer one may be on its way to raft).
pub fn remove_up_to(snap_dir: &Path, index: u64) {
    let Ok(rd) = std::fs::read_dir(snap_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if parse(&name).is_some_and(|(_, i)| i <= index) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(file = %e.path().display(), error = %err, "could not remove an installed snapshot file");
            }
        }
    }
}

/// Writes the mark into the db file at `path` (a received snapshot) and
/// syncs it; returns the consistent index the file holds. Fails if the
/// file is not a database, or holds less than the mark's index.
pub fn seal(path: &Path, mark: &SnapshotMark) -> anyhow::Result<u64> {
    let backend = Backend::open(BackendConfig::new(path))
        .with_context(|| format!("opening the received snapshot {}", path.display()))?;
    let view = backend.read();
    let ci = meta::read_u64(&view, meta::CONSISTENT_INDEX_KEY)?;
    drop(view);
    if ci < mark.index {
        let _ = backend.close();
        anyhow::bail!(
            "the received snapshot {} holds index {ci}, below the snapshot's {}",
            path.display(),
            mark.index
        );
    }
    {
        let mut b = backend.batch()?;
        b.put(
            strata_engine::backend::Bucket::Meta,
            meta::SNAPSHOT_KEY,
            &mark.encode(),
        )?;
    }
    backend.close()?;
    Ok(ci)
}

/// Makes a received snapshot whole: seals `part` with `mark`, renames it
/// to its `.db` name and syncs the directory; returns that path and the
/// consistent index it holds.
pub fn finish(part: &Path, mark: &SnapshotMark) -> anyhow::Result<(PathBuf, u64)> {
    let ci = seal(part, mark)?;
    let dir = part.parent().unwrap_or(Path::new("."));
    let whole = dir.join(file_name(mark.term, mark.index));
    std::fs::rename(part, &whole)?;
    sync_dir(dir)?;
    Ok((whole, ci))
}

/// Start-up: finishes an install a crash interrupted (see the module
/// docs) and removes every other file. `db_mark` is the index of the mark
/// `member/db` records; `wal` are the options the member opens its WAL
/// with (opening it may repair its tail).
pub fn recover(
    member_dir: &Path,
    wal_dir: &Path,
    wal: &WalOptions,
    db_mark: u64,
) -> anyhow::Result<()> {
    let snap_dir = member_dir.join("snap");
    let newest = std::fs::read_dir(&snap_dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    parse(&name).map(|(t, i)| (i, t, e.path()))
                })
                .max()
        })
        .unwrap_or(None);
    if let Some((index, term, path)) = newest.filter(|(i, _, _)| *i > db_mark) {
        let at = SnapshotMark {
            index,
            term,
            ..Default::default()
        };
        match Wal::open(wal_dir, &at, wal.clone()) {
            Ok(_) => {
                std::fs::rename(&path, member_dir.join("db"))?;
                sync_dir(member_dir)?;
                tracing::warn!(
                    index,
                    term,
                    "finished installing a database snapshot that a crash interrupted"
                );
            }
            Err(strata_engine::Error::SnapshotMarkNotFound { .. }) => {}
            Err(e) => return Err(e).context("checking the WAL for a received snapshot's mark"),
        }
    }
    remove_all(&snap_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_resolves() {
        let n = file_name(7, 0x1234);
        assert_eq!(parse(&n), Some((7, 0x1234)));
        assert_eq!(parse(&part_name(7, 0x1234)), None);
        let dir = Path::new("/x/snap");
        assert_eq!(resolve(dir, n.as_bytes()), Some(dir.join(&n)));
        assert_eq!(resolve(dir, b"../db"), None);
        assert_eq!(resolve(dir, b"0000000000000007-/../../db"), None);
        assert_eq!(resolve(dir, b""), None);
    }

    fn small_segments() -> WalOptions {
        WalOptions {
            segment_size: 1 << 20,
            ..WalOptions::default()
        }
    }

    /// A member dir whose WAL holds marks at 0 and `wal_mark`, whose db
    /// holds `old`, and whose snap dir holds a sealed snapshot at
    /// (2, `snap_index`) holding `new`.
    fn member_dir(wal_mark: u64, snap_index: u64) -> tempfile::TempDir {
        use strata_engine::backend::Bucket;
        use strata_engine::wal::Metadata;
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        std::fs::create_dir_all(m.join("snap")).unwrap();
        let mut wal = Wal::create(
            m.join("wal"),
            Metadata {
                member_id: 1,
                cluster_id: 2,
            },
            small_segments(),
        )
        .unwrap();
        wal.save_snapshot(&SnapshotMark::default()).unwrap();
        wal.save_snapshot(&SnapshotMark {
            index: wal_mark,
            term: 2,
            ..Default::default()
        })
        .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let db = Backend::open(BackendConfig::new(m.join("db"))).unwrap();
        db.batch()
            .unwrap()
            .put(Bucket::Key, b"which", b"old")
            .unwrap();
        db.close().unwrap();
        let snap = m.join("snap").join(part_name(2, snap_index));
        let b = Backend::open(BackendConfig::new(&snap)).unwrap();
        b.batch()
            .unwrap()
            .put(Bucket::Key, b"which", b"new")
            .unwrap();
        b.batch()
            .unwrap()
            .put(
                Bucket::Meta,
                meta::CONSISTENT_INDEX_KEY,
                &snap_index.to_be_bytes(),
            )
            .unwrap();
        b.close().unwrap();
        let mark = SnapshotMark {
            index: snap_index,
            term: 2,
            ..Default::default()
        };
        assert_eq!(seal(&snap, &mark).unwrap(), snap_index);
        std::fs::rename(&snap, m.join("snap").join(file_name(2, snap_index))).unwrap();
        // A partial transfer beside it.
        std::fs::write(m.join("snap").join(part_name(3, 99)), b"partial").unwrap();
        dir
    }

    fn which(m: &Path) -> Vec<u8> {
        use strata_engine::backend::Bucket;
        let db = Backend::open(BackendConfig::new(m.join("db"))).unwrap();
        let v = db.read().get(Bucket::Key, b"which").unwrap().unwrap();
        db.close().unwrap();
        v
    }

    #[test]
    fn a_crash_after_the_wal_took_the_mark_finishes_the_install_at_start() {
        let dir = member_dir(10, 10);
        recover(dir.path(), &dir.path().join("wal"), &small_segments(), 0).unwrap();
        assert_eq!(which(dir.path()), b"new");
        let db = Backend::open(BackendConfig::new(dir.path().join("db"))).unwrap();
        let mark = meta::read_mark(&db.read()).unwrap().unwrap();
        db.close().unwrap();
        assert_eq!((mark.index, mark.term), (10, 2));
        assert_eq!(
            std::fs::read_dir(dir.path().join("snap")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_snapshot_the_wal_never_took_is_dropped_at_start() {
        let dir = member_dir(10, 20);
        recover(dir.path(), &dir.path().join("wal"), &small_segments(), 0).unwrap();
        assert_eq!(which(dir.path()), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path().join("snap")).unwrap().count(),
            0
        );
        // One the db already has (its mark at or past it) is dropped too.
        let dir = member_dir(10, 10);
        recover(dir.path(), &dir.path().join("wal"), &small_segments(), 10).unwrap();
        assert_eq!(which(dir.path()), b"old");
    }

    #[test]
    fn a_snapshot_below_its_own_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        Backend::open(BackendConfig::new(&p))
            .unwrap()
            .close()
            .unwrap();
        let mark = SnapshotMark {
            index: 5,
            term: 1,
            ..Default::default()
        };
        let e = seal(&p, &mark).unwrap_err();
        assert!(format!("{e:#}").contains("holds index 0"), "{e:#}");
        std::fs::write(&p, b"not a database at all").unwrap();
        assert!(seal(&p, &mark).is_err());
    }
}
