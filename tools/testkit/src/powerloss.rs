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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Write {
        ino: u64,
        off: u64,
        len: u64,
        old_size: u64,
        /// None: the old bytes were all zero.
        old: Option<Vec<u8>>,
    },
    Size {
        ino: u64,
        old: u64,
        new: u64,
        tail: Vec<u8>,
    },
    SyncBegin {
        ino: u64,
        seq: u64,
    },
    SyncEnd {
        seq: u64,
        ok: bool,
    },
    Create {
        parent: u64,
        path: PathBuf,
    },
    Mkdir {
        parent: u64,
        path: PathBuf,
    },
    Rename {
        ino: u64,
        to_parent: u64,
        from: PathBuf,
        to: PathBuf,
        saved: Option<PathBuf>,
    },
    Unlink {
        parent: u64,
        path: PathBuf,
        saved: Option<PathBuf>,
    },
    Rmdir {
        parent: u64,
        path: PathBuf,
    },
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

/// The journal's records (`strata_fault_shim::record`, the format the
/// shim writes), as the undo reads them.
fn parse(b: &[u8]) -> Result<Vec<Rec>> {
    use std::os::unix::ffi::OsStringExt;
    let path = |b: Vec<u8>| PathBuf::from(std::ffi::OsString::from_vec(b));
    let saved = |b: Vec<u8>| (!b.is_empty()).then(|| path(b));
    let records = Record::decode_all(b).map_err(anyhow::Error::msg)?;
    Ok(records
        .into_iter()
        .map(|r| match r {
            Record::Write {
                ino,
                off,
                len,
                old_size,
                old,
                ..
            } => Rec::Write {
                ino,
                off,
                len,
                old_size,
                old,
            },
            Record::Size {
                ino,
                old,
                new,
                tail,
                ..
            } => Rec::Size {
                ino,
                old,
                new,
                tail,
            },
            Record::SyncBegin { ino, seq } => Rec::SyncBegin { ino, seq },
            Record::SyncEnd { seq, result } => Rec::SyncEnd {
                seq,
                ok: result == 0,
            },
            Record::Create { parent, path: p } => Rec::Create {
                parent,
                path: path(p),
            },
            Record::Mkdir { parent, path: p } => Rec::Mkdir {
                parent,
                path: path(p),
            },
            Record::Rename {
                ino,
                to_parent,
                from,
                to,
                saved: s,
                ..
            } => Rec::Rename {
                ino,
                to_parent,
                from: path(from),
                to: path(to),
                saved: saved(s),
            },
            Record::Unlink {
                parent,
                path: p,
                saved: s,
            } => Rec::Unlink {
                parent,
                path: path(p),
                saved: saved(s),
            },
            Record::Rmdir { parent, path: p } => Rec::Rmdir {
                parent,
                path: path(p),
            },
        })
        .collect())
}

/// For each record: is it safe (a completed sync of its file or directory
/// follows it)?
fn safe(recs: &[Rec]) -> Vec<bool> {
    let done: HashSet<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Rec::SyncEnd { seq, ok: true } => Some(*seq),
            _ => None,
        })
        .collect();
    let mut synced_after = HashSet::new();
    let mut out = vec![false; recs.len()];
    for (i, r) in recs.iter().enumerate().rev() {
        out[i] = match r {
            Rec::SyncBegin { ino, seq } => {
                if done.contains(seq) {
                    synced_after.insert(*ino);
                }
                true
            }
            Rec::SyncEnd { .. } => true,
            Rec::Write { ino, .. } | Rec::Size { ino, .. } => synced_after.contains(ino),
            Rec::Create { parent, .. }
            | Rec::Mkdir { parent, .. }
            | Rec::Unlink { parent, .. }
            | Rec::Rmdir { parent, .. } => synced_after.contains(parent),
            Rec::Rename { to_parent, .. } => synced_after.contains(to_parent),
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
    let recs = parse(&bytes).with_context(|| journal.display().to_string())?;
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
            Rec::Write {
                ino,
                off,
                len,
                old_size,
                old,
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
            Rec::Size {
                ino,
                old,
                new,
                tail,
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
            Rec::SyncBegin { .. } | Rec::SyncEnd { .. } => {}
            Rec::Create { path, .. } => {
                if let Some(ino) = ino_of(path) {
                    std::fs::remove_file(path).with_context(|| path.display().to_string())?;
                    files.remove(&ino);
                    undone.names.push(format!("created {}", path.display()));
                }
            }
            Rec::Mkdir { path, .. } => {
                if path.is_dir() {
                    std::fs::remove_dir_all(path).with_context(|| path.display().to_string())?;
                    files.retain(|_, p| !p.starts_with(path));
                    undone.names.push(format!("mkdir {}", path.display()));
                }
            }
            Rec::Rename {
                ino,
                from,
                to,
                saved,
                ..
            } => {
                if ino_of(to) == Some(*ino) {
                    std::fs::rename(to, from)
                        .with_context(|| format!("{} -> {}", to.display(), from.display()))?;
                    files.insert(*ino, from.clone());
                    undone
                        .names
                        .push(format!("rename {} -> {}", from.display(), to.display()));
                }
                if let Some(s) = saved {
                    if ino_of(to).is_none() {
                        if let Some(sino) = ino_of(s) {
                            std::fs::rename(s, to)?;
                            files.insert(sino, to.clone());
                        }
                    }
                }
            }
            Rec::Unlink { path, saved, .. } => {
                if let Some(s) = saved {
                    if ino_of(path).is_none() {
                        if let Some(sino) = ino_of(s) {
                            std::fs::rename(s, path).with_context(|| {
                                format!("{} -> {}", s.display(), path.display())
                            })?;
                            files.insert(sino, path.clone());
                            undone.names.push(format!("unlink {}", path.display()));
                        }
                    }
                }
            }
            Rec::Rmdir { path, .. } => {
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
        let w = |ino| Rec::Write {
            ino,
            off: 0,
            len: 1,
            old_size: 0,
            old: None,
        };
        let recs = vec![
            w(1),
            w(2),
            Rec::SyncBegin { ino: 1, seq: 1 },
            Rec::SyncBegin { ino: 2, seq: 2 },
            w(1),
            Rec::SyncEnd { seq: 1, ok: true },
            Rec::SyncEnd { seq: 2, ok: false },
            Rec::Create {
                parent: 9,
                path: "/r/a".into(),
            },
            Rec::SyncBegin { ino: 9, seq: 3 },
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
