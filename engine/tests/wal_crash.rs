//! WAL crash sweep and corruption: after every sync the directory a crash
//! would leave must reopen with exactly the synced batches. The last batch,
//! cut at every byte offset (the file shortened there), or with every
//! 512-byte sector from some point on never written (still zero: a sector is
//! written whole or not at all), must reopen with the synced batches plus a
//! whole-record prefix of the last one, keep a copy of the torn file, and
//! accept new writes. Flipped bits in synced data are a hard error naming
//! the file and offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_engine::wal::{Entry, HardState, Metadata, SnapshotMark, Wal, WalOptions};
use strata_engine::Error;

type Image = BTreeMap<String, Vec<u8>>;

fn image(dir: &Path) -> Image {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn restore(img: &Image) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in img {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    dir
}

fn batch(first: u64, n: u64, term: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|i| Entry {
            index: i,
            term,
            entry_type: 0,
            data: vec![i as u8; (i % 7 * 30) as usize],
        })
        .collect()
}

const OPTS: WalOptions = WalOptions {
    segment_size: 2048,
    no_sync: false,
};

fn open(dir: &Path) -> strata_engine::Result<(Wal, strata_engine::wal::Recovered)> {
    Wal::open(dir, &SnapshotMark::default(), OPTS)
}

#[test]
fn every_sync_point_and_every_cut_of_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::create(
        dir.path(),
        Metadata {
            member_id: 1,
            cluster_id: 2,
        },
        OPTS,
    )
    .unwrap();
    let mut synced: Vec<Entry> = Vec::new();
    let mut points: Vec<(Image, Vec<Entry>, HardState)> = Vec::new();
    let mut next = 1;
    for b in 0..12u64 {
        let es = batch(next, 1 + b % 4, 1);
        next += es.len() as u64;
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: next - 1,
        };
        w.save(Some(&hs), &es).unwrap();
        w.sync().unwrap();
        synced.extend(es);
        points.push((image(dir.path()), synced.clone(), hs));
    }
    assert!(w.segments().len() > 2, "the sweep must cross segment cuts");
    // Crash right after each sync.
    for (img, entries, hs) in &points {
        let d = restore(img);
        let (_, rec) = open(d.path()).unwrap();
        assert_eq!(&rec.entries, entries);
        assert_eq!(&rec.hard_state, hs);
    }
    // The last batch, written but not synced, cut at every byte offset.
    let before = image(dir.path());
    let last_seg = before.keys().last().unwrap().clone();
    let start = data_end(&before[&last_seg]);
    let es = batch(next, 5, 2);
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: next + 4,
    };
    w.save(Some(&hs), &es).unwrap();
    w.sync().unwrap();
    let after = image(dir.path());
    assert_eq!(
        after.keys().last(),
        Some(&last_seg),
        "the last batch must stay in one segment"
    );
    let end = data_end(&after[&last_seg]);
    assert!(end > start);
    let full = after[&last_seg].clone();
    let boundaries = record_starts(&full, start, end);
    for cut in start..=end {
        let sector_cut = cut % 512 == 0 || cut == start || cut == end;
        for shorten in [true, false] {
            if !shorten && !sector_cut {
                continue;
            }
            let mut img = after.clone();
            let seg = img.get_mut(&last_seg).unwrap();
            if shorten {
                seg.truncate(cut);
            } else {
                seg[cut..].fill(0);
            }
            let d = restore(&img);
            let (mut w2, rec) = open(d.path()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(
                &rec.entries[..synced.len()],
                &synced[..],
                "cut {cut}: synced entries lost"
            );
            let extra = &rec.entries[synced.len()..];
            assert_eq!(
                extra,
                &es[..extra.len()],
                "cut {cut}: not a prefix of the last batch"
            );
            if cut == end {
                assert_eq!(extra.len(), es.len());
                assert_eq!(rec.hard_state, hs);
                assert!(rec.repaired.is_none());
            } else if !boundaries.contains(&cut) {
                assert!(rec.repaired.is_some(), "cut {cut}: torn tail not reported");
                assert_eq!(
                    std::fs::read(rec.repaired.as_ref().unwrap()).unwrap(),
                    img[&last_seg]
                );
            }
            // The repaired log takes new writes and keeps them.
            let more = batch(synced.len() as u64 + extra.len() as u64 + 1, 2, 3);
            w2.save(None, &more).unwrap();
            w2.sync().unwrap();
            drop(w2);
            let (_, rec2) = open(d.path()).unwrap();
            assert_eq!(
                &rec2.entries[rec.entries.len()..],
                &more[..],
                "cut {cut}: appends after repair lost"
            );
        }
    }
}

/// Offsets where records of the segment image start, between `from` and
/// `to` (inclusive).
fn record_starts(seg: &[u8], from: usize, to: usize) -> Vec<usize> {
    let mut out = vec![];
    let mut off = 0;
    while off <= to {
        if off >= from {
            out.push(off);
        }
        if off + 16 > seg.len() || seg[off..off + 16].iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes(seg[off..off + 4].try_into().unwrap()) as usize;
        off += (16 + len).div_ceil(8) * 8;
    }
    out
}

/// End of the records in a segment image: the first all-zero 8-aligned
/// header.
fn data_end(seg: &[u8]) -> usize {
    let mut off = 0;
    while off + 16 <= seg.len() && seg[off..off + 16].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(seg[off..off + 4].try_into().unwrap()) as usize;
        off += (16 + len).div_ceil(8) * 8;
    }
    off
}

#[test]
fn bit_flips_in_synced_records_are_hard_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::create(dir.path(), Metadata::default(), OPTS).unwrap();
    let mut next = 1;
    for _ in 0..10 {
        let es = batch(next, 3, 1);
        next += 3;
        w.save(
            Some(&HardState {
                term: 1,
                vote: 0,
                commit: next - 1,
            }),
            &es,
        )
        .unwrap();
        w.sync().unwrap();
    }
    drop(w);
    let img = image(dir.path());
    let mut checked = 0;
    for (name, data) in &img {
        let end = data_end(data);
        // Every 8th byte of the records (headers, bodies, padding).
        for off in (0..end).step_by(8).chain([end - 1]) {
            let mut bad = img.clone();
            bad.get_mut(name).unwrap()[off] ^= 0x04;
            let d = restore(&bad);
            match open(d.path()) {
                Err(Error::CorruptedLog { file, offset, .. }) => {
                    let file: PathBuf = file;
                    assert_eq!(file.file_name().unwrap().to_string_lossy(), *name);
                    assert!(offset as usize <= off, "{name}+{off}: reported at {offset}");
                }
                Ok(_) => {
                    // A flip in padding changes no record and no check.
                    assert!(is_padding(data, off), "{name}+{off}: flip went unnoticed");
                }
                Err(e) => panic!("{name}+{off}: unexpected error {e}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 50);
}

fn is_padding(seg: &[u8], at: usize) -> bool {
    let mut off = 0;
    while off + 16 <= seg.len() && seg[off..off + 16].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(seg[off..off + 4].try_into().unwrap()) as usize;
        let frame = (16 + len).div_ceil(8) * 8;
        if at >= off && at < off + frame {
            return (13..16).contains(&(at - off)) || at >= off + 16 + len;
        }
        off += frame;
    }
    false
}

#[test]
fn missing_middle_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::create(dir.path(), Metadata::default(), OPTS).unwrap();
    for b in 0..10u64 {
        w.save(None, &batch(b * 4 + 1, 4, 1)).unwrap();
        w.sync().unwrap();
    }
    let segs: Vec<String> = w.segments().iter().map(|s| s.file_name()).collect();
    drop(w);
    assert!(segs.len() >= 3);
    std::fs::remove_file(dir.path().join(&segs[1])).unwrap();
    assert!(matches!(open(dir.path()), Err(Error::CorruptedLog { .. })));
}

/// Logs written while cuts renamed the new segment before syncing its
/// header can end in a segment whose header never reached the disk. It
/// holds no synced record, so it is dropped and the log continues in the
/// previous segment. The same lost header with records after it is damage:
/// an error.
#[test]
fn cut_whose_header_never_reached_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::create(dir.path(), Metadata::default(), OPTS).unwrap();
    let mut all = Vec::new();
    for b in 0..6u64 {
        let es = batch(b * 4 + 1, 4, 1);
        w.save(None, &es).unwrap();
        w.sync().unwrap();
        all.extend(es);
    }
    w.cut().unwrap();
    let last = w.segments().last().unwrap().file_name();
    drop(w);
    // The header of the fresh segment is lost: all zeros.
    let path = dir.path().join(&last);
    let mut data = std::fs::read(&path).unwrap();
    data[..512].fill(0);
    std::fs::write(&path, &data).unwrap();
    let (mut w, rec) = open(dir.path()).unwrap();
    assert_eq!(rec.entries, all);
    assert!(rec.repaired.is_some());
    assert!(!path.exists());
    let more = batch(25, 3, 2);
    w.save(None, &more).unwrap();
    w.sync().unwrap();
    w.cut().unwrap();
    w.save(None, &batch(28, 2, 2)).unwrap();
    w.sync().unwrap();
    drop(w);
    let (_, rec) = open(dir.path()).unwrap();
    assert_eq!(rec.entries.len(), all.len() + 5);

    // Records synced after a header that is now missing: a hard error.
    let mut w = Wal::open(dir.path(), &SnapshotMark::default(), OPTS)
        .unwrap()
        .0;
    w.cut().unwrap();
    // Past the first sector, short of another cut.
    w.save(
        None,
        &[Entry {
            index: 30,
            term: 2,
            entry_type: 0,
            data: vec![7; 600],
        }],
    )
    .unwrap();
    w.sync().unwrap();
    let last = dir.path().join(w.segments().last().unwrap().file_name());
    drop(w);
    let mut data = std::fs::read(&last).unwrap();
    assert!(data[512..].iter().any(|&b| b != 0));
    data[..512].fill(0);
    std::fs::write(&last, &data).unwrap();
    assert!(matches!(open(dir.path()), Err(Error::CorruptedLog { .. })));
}
