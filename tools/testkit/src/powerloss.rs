//! Simulated power loss: after a member was killed, undo in its data dir
//! what the machine losing power at that instant could have lost, from the
//! journal its shim kept (`strata-fault-shim`; the record format is the
//! `strata-fault-record` crate, which this reads with).
//!
//! The model (POSIX, strict, as LazyFS's): a file's data and length are
//! safe once an fsync or fdatasync of it completed after they were
//! written; a name created, renamed or removed in a directory is safe once
//! an fsync of that directory completed after. Everything else may be
//! lost: [`Loss::All`] loses all of it; [`Loss::Torn`] loses names and
//! lengths the same way, and of the unsynced writes inside the old length
//! keeps a random part, 512-byte sector by sector (a disk writes a sector
//! whole or not at all, and writes back in any order: any sector may end
//! at any of the versions it had since it was last safe).
//!
//! Undo runs over the journal backwards; the journal is kept as `<journal>.lost-N` and the
//! links it kept are removed after, so the next start journals afresh from what the
//! power loss left.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::RngExt;
use strata_fault_record::{replaced, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    All,
    Torn,
}

/// What one power loss undid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Undone {
    /// Records in the journal.
    pub records: usize,
    /// Unsynced writes and length changes undone (wholly or in part).
    pub writes: usize,
    /// Sectors of unsynced writes that survived ([`Loss::Torn`]).
    pub kept_sectors: usize,
    /// Unsynced creations, renames and removals undone, as text.
    pub names: Vec<String>,
}

/// A journaled path as a path (the shim records the bytes the process
/// named).
fn path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// A saved copy's path; None when the record kept none.
fn saved(b: &[u8]) -> Option<&Path> {
    (!b.is_empty()).then(|| path(b))
}

/// For each record: is it safe (a completed sync of its file or directory
/// follows it)?
fn safe(recs: &[Record]) -> Vec<bool> {
    let done: HashSet<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::SyncEnd { seq, result: 0 } => Some(*seq),
            _ => None,
        })
        .collect();
    let mut synced_after = HashSet::new();
    let mut out = vec![false; recs.len()];
    for (i, r) in recs.iter().enumerate().rev() {
        out[i] = match r {
            Record::SyncBegin { ino, seq } => {
                if done.contains(seq) {
                    synced_after.insert(*ino);
                }
                true
            }
            Record::SyncEnd { .. } => true,
            Record::Write { ino, .. } | Record::Size { ino, .. } => synced_after.contains(ino),
            Record::Create { parent, .. }
            | Record::Mkdir { parent, .. }
            | Record::Unlink { parent, .. }
            | Record::Rmdir { parent, .. } => synced_after.contains(parent),
            Record::Rename { to_parent, .. } => synced_after.contains(to_parent),
        };
    }
    out
}

/// Every file under `root` (and `saved`) by inode; names under `root`
/// first.
fn inodes(root: &Path, saved: &Path) -> HashMap<u64, PathBuf> {
    fn walk(dir: &Path, out: &mut HashMap<u64, PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), out);
            } else {
                out.entry(m.ino()).or_insert_with(|| e.path());
            }
        }
    }
    let mut out = HashMap::new();
    walk(root, &mut out);
    walk(saved, &mut out);
    out
}

/// The file of inode `ino`, opened for writing (None: it is gone).
fn open_ino(files: &HashMap<u64, PathBuf>, ino: u64) -> Result<Option<std::fs::File>> {
    let Some(path) = files.get(&ino) else {
        return Ok(None);
    };
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    Ok(Some(f))
}

fn ino_of(p: &Path) -> Option<u64> {
    std::fs::symlink_metadata(p).ok().map(|m| m.ino())
}

/// Undoes what a power loss now could lose in `root`, from the journal at
/// `journal` (a missing journal: nothing was written). Renames the journal
/// to `<journal>.lost-N` and removes its saved links after.
pub fn power_loss(journal: &Path, root: &Path, loss: Loss, rng: &mut StdRng) -> Result<Undone> {
    let saved_dir = PathBuf::from(format!("{}.saved", journal.display()));
    let bytes = match std::fs::read(journal) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Undone::default()),
        Err(e) => return Err(e).context(journal.display().to_string()),
    };
    let recs = Record::decode_all(&bytes)
        .map_err(anyhow::Error::msg)
        .with_context(|| journal.display().to_string())?;
    let safe = safe(&recs);
    let mut files = inodes(root, &saved_dir);
    let mut undone = Undone {
        records: recs.len(),
        ..Undone::default()
    };
    for (r, safe) in recs.iter().zip(&safe).rev() {
        if *safe {
            continue;
        }
        match r {
            Record::Write {
                ino,
                off,
                len,
                old_size,
                old,
                ..
            } => {
                let Some(f) = open_ino(&files, *ino)? else {
                    continue;
                };
                let have = replaced(*off, *len, *old_size);
                let zeros;
                let old: &[u8] = match old {
                    Some(o) => o,
                    None => {
                        zeros = vec![0u8; have as usize];
                        &zeros
                    }
                };
                match loss {
                    Loss::All => f.write_all_at(old, *off)?,
                    Loss::Torn => {
                        // Sectors at absolute 512-byte boundaries.
                        let mut at = *off;
                        while at < off + have {
                            let end = ((at / 512 + 1) * 512).min(off + have);
                            if rng.random_bool(0.5) {
                                undone.kept_sectors += 1;
                            } else {
                                let s = (at - off) as usize..(end - off) as usize;
                                f.write_all_at(&old[s], at)?;
                            }
                            at = end;
                        }
                    }
                }
                if off + len > *old_size && f.metadata()?.len() > *old_size {
                    f.set_len(*old_size)?;
                }
                undone.writes += 1;
            }
            Record::Size {
                ino,
                old,
                new,
                tail,
                ..
            } => {
                let Some(f) = open_ino(&files, *ino)? else {
                    continue;
                };
                f.set_len(*old)?;
                if !tail.is_empty() {
                    f.write_all_at(tail, *new)?;
                }
                undone.writes += 1;
            }
            Record::SyncBegin { .. } | Record::SyncEnd { .. } => {}
            Record::Create { path: p, .. } => {
                let path = path(p);
                if let Some(ino) = ino_of(path) {
                    std::fs::remove_file(path).with_context(|| path.display().to_string())?;
                    files.remove(&ino);
                    undone.names.push(format!("created {}", path.display()));
                }
            }
            Record::Mkdir { path: p, .. } => {
                let path = path(p);
                if path.is_dir() {
                    std::fs::remove_dir_all(path).with_context(|| path.display().to_string())?;
                    files.retain(|_, p| !p.starts_with(path));
                    undone.names.push(format!("mkdir {}", path.display()));
                }
            }
            Record::Rename {
                ino,
                from,
                to,
                saved: s,
                ..
            } => {
                let (from, to, saved) = (path(from), path(to), saved(s));
                if ino_of(to) == Some(*ino) {
                    std::fs::rename(to, from)
                        .with_context(|| format!("{} -> {}", to.display(), from.display()))?;
                    files.insert(*ino, from.to_path_buf());
                    undone
                        .names
                        .push(format!("rename {} -> {}", from.display(), to.display()));
                }
                if let Some(s) = saved {
                    if ino_of(to).is_none() {
                        if let Some(sino) = ino_of(s) {
                            std::fs::rename(s, to)?;
                            files.insert(sino, to.to_path_buf());
                        }
                    }
                }
            }
            Record::Unlink {
                path: p, saved: s, ..
            } => {
                let path = path(p);
                if let Some(s) = saved(s) {
                    if ino_of(path).is_none() {
                        if let Some(sino) = ino_of(s) {
                            std::fs::rename(s, path).with_context(|| {
                                format!("{} -> {}", s.display(), path.display())
                            })?;
                            files.insert(sino, path.to_path_buf());
                            undone.names.push(format!("unlink {}", path.display()));
                        }
                    }
                }
            }
            Record::Rmdir { path: p, .. } => {
                let path = path(p);
                if ino_of(path).is_none() {
                    std::fs::create_dir(path).with_context(|| path.display().to_string())?;
                    undone.names.push(format!("rmdir {}", path.display()));
                }
            }
        }
    }
    // Kept beside, for a failing run's post-mortem (`<journal>.lost-N`).
    let kept = (1..)
        .map(|n| PathBuf::from(format!("{}.lost-{n}", journal.display())))
        .find(|p| !p.exists())
        .expect("a free name");
    std::fs::rename(journal, kept)?;
    let _ = std::fs::remove_dir_all(&saved_dir);
    Ok(undone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_a_completed_sync_follows_are_safe() {
        let w = |ino| Record::Write {
            ino,
            off: 0,
            len: 1,
            old_size: 0,
            old: None,
            path: Vec::new(),
        };
        let recs = vec![
            w(1),
            w(2),
            Record::SyncBegin { ino: 1, seq: 1 },
            Record::SyncBegin { ino: 2, seq: 2 },
            w(1),
            Record::SyncEnd { seq: 1, result: 0 },
            Record::SyncEnd { seq: 2, result: 5 },
            Record::Create {
                parent: 9,
                path: "/r/a".into(),
            },
            Record::SyncBegin { ino: 9, seq: 3 },
        ];
        let s = safe(&recs);
        // ino 1's first write is covered; the one during its sync is not;
        // ino 2's sync failed; the create's directory sync never ended.
        assert_eq!(
            s,
            vec![true, false, true, true, false, true, true, false, true]
        );
    }
}
