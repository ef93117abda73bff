//! Model-based property test of the WAL: saves (with suffix overwrites),
//! hard states, snapshot markers (local, and installed from a leader over a
//! diverged log), segment cuts, releases and reopens against an in-memory
//! log.

use proptest::prelude::*;
use strata_engine::wal::{ConfState, Entry, HardState, Metadata, SnapshotMark, Wal, WalOptions};

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries, first rewinding `back` entries (overwrite).
    Save {
        n: usize,
        back: usize,
        len: usize,
        state: bool,
    },
    Snapshot,
    /// A snapshot from the leader at `back` entries below the log's end
    /// plus `ahead` beyond it, of a newer term: the log above it is gone.
    Install {
        back: usize,
        ahead: usize,
    },
    Cut,
    Release,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1..20usize, 0..4usize, 0..300usize, any::<bool>()).prop_map(|(n, back, len, state)| Op::Save { n, back, len, state }),
        2 => Just(Op::Snapshot),
        1 => (0..6usize, 0..4usize).prop_map(|(back, ahead)| Op::Install { back, ahead }),
        1 => Just(Op::Cut),
        2 => Just(Op::Release),
        2 => Just(Op::Reopen),
    ]
}

struct Model {
    entries: Vec<Entry>, // index i+1 at position i
    state: HardState,
    snapshot: SnapshotMark,
    term: u64,
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 4096,
        no_sync: true,
    };
    let meta = Metadata {
        member_id: 7,
        cluster_id: 9,
    };
    let mut wal = Some(Wal::create(dir.path(), meta, opts.clone()).unwrap());
    let mut m = Model {
        entries: Vec::new(),
        state: HardState::default(),
        snapshot: SnapshotMark::default(),
        term: 1,
    };
    for op in ops {
        let w = wal.as_mut().unwrap();
        match op {
            Op::Save {
                n,
                back,
                len,
                state,
            } => {
                // Never rewind into the snapshot (raft never overwrites it).
                let floor = m.snapshot.index as usize;
                let keep = m.entries.len().saturating_sub(back).max(floor);
                m.entries.truncate(keep);
                m.term += u64::from(back > 0);
                let new: Vec<Entry> = (0..n)
                    .map(|i| Entry {
                        index: (keep + i + 1) as u64,
                        term: m.term,
                        entry_type: (i % 3) as u8,
                        data: vec![(keep + i) as u8; len],
                    })
                    .collect();
                let hs = HardState {
                    term: m.term,
                    vote: 1,
                    commit: keep as u64,
                };
                w.save(state.then_some(&hs), &new).unwrap();
                if state {
                    m.state = hs;
                }
                m.entries.extend(new);
                w.sync().unwrap();
            }
            Op::Snapshot => {
                if let Some(e) = m.entries.last() {
                    let mark = SnapshotMark {
                        index: e.index,
                        term: e.term,
                        conf_state: ConfState {
                            voters: vec![1, 2, 3],
                            ..Default::default()
                        },
                    };
                    w.save_snapshot(&mark).unwrap();
                    w.sync().unwrap();
                    m.snapshot = mark;
                }
            }
            Op::Install { back, ahead } => {
                let floor = m.snapshot.index as usize;
                let at = (m.entries.len().saturating_sub(back) + ahead).max(floor + 1);
                m.term += 1;
                let mark = SnapshotMark {
                    index: at as u64,
                    term: m.term,
                    conf_state: ConfState {
                        voters: vec![1, 2, 3],
                        ..Default::default()
                    },
                };
                w.save_snapshot(&mark).unwrap();
                w.sync().unwrap();
                // The snapshot stands for everything up to it (those
                // entries are never read back: the log opens above it; the
                // one at its index has its term, as a local snapshot
                // taken there would record).
                m.entries.truncate(at - 1);
                while m.entries.len() < at {
                    let index = m.entries.len() as u64 + 1;
                    m.entries.push(Entry {
                        index,
                        term: m.term,
                        entry_type: 0,
                        data: Vec::new(),
                    });
                }
                m.snapshot = mark;
            }
            Op::Cut => w.cut().unwrap(),
            Op::Release => w.release_before(m.snapshot.index).unwrap(),
            Op::Reopen => {
                drop(wal.take());
                let (w, rec) = Wal::open(dir.path(), &m.snapshot, opts.clone()).unwrap();
                assert_eq!(rec.metadata, meta);
                assert_eq!(rec.hard_state, m.state);
                let expect: Vec<Entry> = m.entries[m.snapshot.index as usize..].to_vec();
                assert_eq!(rec.entries, expect);
                if m.snapshot.index > 0 {
                    assert_eq!(rec.last_snapshot.as_ref(), Some(&m.snapshot));
                }
                assert!(rec.repaired.is_none());
                wal = Some(w);
            }
        }
    }
    drop(wal);
    let (_, rec) = Wal::open(dir.path(), &m.snapshot, opts).unwrap();
    assert_eq!(rec.entries, m.entries[m.snapshot.index as usize..].to_vec());
    assert_eq!(rec.hard_state, m.state);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn wal_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn second_open_is_refused_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _w = Wal::create(dir.path(), Metadata::default(), WalOptions::default()).unwrap();
    let r = Wal::open(dir.path(), &SnapshotMark::default(), WalOptions::default());
    assert!(matches!(r, Err(strata_engine::Error::Locked(_))));
}

#[test]
fn leftover_tmp_segment_from_an_unfinished_cut_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 4096,
        no_sync: false,
    };
    let mut w = Wal::create(dir.path(), Metadata::default(), opts.clone()).unwrap();
    let e = Entry {
        index: 1,
        term: 1,
        entry_type: 0,
        data: b"x".to_vec(),
    };
    w.save(None, std::slice::from_ref(&e)).unwrap();
    w.sync().unwrap();
    drop(w);
    let tmp = dir.path().join("0000000000000001-0000000000000002.wal.tmp");
    std::fs::write(&tmp, b"half a segment").unwrap();
    let (_w, rec) = Wal::open(dir.path(), &SnapshotMark::default(), opts).unwrap();
    assert_eq!(rec.entries, vec![e]);
    assert!(!tmp.exists());
}
