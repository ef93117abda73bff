//! The `strata-util` binary against real files: every inspect verb, compact
//! and waldump, including a corrupted page and a corrupted log.

mod common;
use common::util;

use std::path::Path;
use std::process::Command;

use strata_engine::btree::{Database, Options, WriteBucket};
use strata_engine::wal::{Entry, HardState, Metadata, Wal, WalOptions};

fn make_db(path: &Path) {
    let db = Database::open(path, Options::default()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let key = tx.create_bucket(WriteBucket::ROOT, b"key").unwrap();
    let meta = tx.create_bucket(WriteBucket::ROOT, b"meta").unwrap();
    let nested = tx.create_bucket(meta, b"inner").unwrap();
    for i in 0..3000u32 {
        tx.put(key, format!("k{i:05}").as_bytes(), &[b'v'; 100])
            .unwrap();
    }
    tx.put(meta, b"consistent_index", b"42").unwrap();
    tx.put(nested, b"deep", b"value").unwrap();
    tx.commit().unwrap();
}

#[test]
fn inspect_verbs_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    make_db(&db);
    let p = db.to_str().unwrap();
    let (ok, out) = util(&["inspect", "check", p]);
    assert!(ok && out.trim() == "OK", "{out}");
    let (ok, out) = util(&["inspect", "info", p]);
    assert!(ok && out.contains("Page size:      4096"), "{out}");
    let (ok, out) = util(&["inspect", "stats", p]);
    assert!(ok && out.contains("keys") && out.contains("3002"), "{out}");
    let (ok, out) = util(&["inspect", "buckets", p]);
    assert!(ok && out == "key\nmeta\n", "{out}");
    let (ok, out) = util(&["inspect", "keys", p, "meta", "inner"]);
    assert!(ok && out == "deep\n", "{out}");
    let (ok, out) = util(&["inspect", "get", p, "meta", "consistent_index"]);
    assert!(ok && out == "42\n", "{out}");
    let (ok, out) = util(&["inspect", "get", p, "meta", "missing"]);
    assert!(!ok && out.contains("key not found"), "{out}");
    let (ok, out) = util(&["inspect", "pages", p]);
    assert!(
        ok && out.contains("branch") && out.contains("leaf") && out.contains("meta"),
        "{out}"
    );
    let (ok, out) = util(&["inspect", "page", p, "0"]);
    assert!(ok && out.contains("Page Type:  meta"), "{out}");

    let dst = dir.path().join("compacted");
    let (ok, out) = util(&["compact", p, dst.to_str().unwrap()]);
    assert!(ok && out.contains("3002 keys"), "{out}");
    let (ok, out) = util(&["inspect", "check", dst.to_str().unwrap()]);
    assert!(ok && out.trim() == "OK", "{out}");
    assert!(std::fs::metadata(&dst).unwrap().len() < std::fs::metadata(&db).unwrap().len());

    // A flipped bit in a leaf: check names the page and fails.
    let leaf = {
        let d = Database::open(&db, Options::default()).unwrap();
        let pages = strata_engine::btree::inspect::pages(&d).unwrap();
        pages
            .iter()
            .find(|p| p.used == strata_engine::btree::inspect::PageUse::Leaf)
            .unwrap()
            .pgid as usize
    };
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[leaf * 4096 + 200] ^= 1;
    std::fs::write(&db, &bytes).unwrap();
    let (ok, out) = util(&["inspect", "check", p]);
    assert!(!ok && out.contains(&format!("page {leaf}:")), "{out}");
}

#[test]
fn bench_runs_with_bbolt_flags() {
    let (ok, out) = util(&[
        "bench",
        "--count",
        "2000",
        "--batch-size",
        "500",
        "--key-size",
        "16",
        "--write-mode",
        "rnd",
        "--read-mode",
        "rnd",
        "--no-sync",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("# Write\t") && out.contains("# Read\t") && out.contains("op/sec"),
        "{out}"
    );
}

#[test]
fn waldump_lists_records_and_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let mut w = Wal::create(
        &wal_dir,
        Metadata {
            member_id: 0xabc,
            cluster_id: 0xdef,
        },
        WalOptions::default(),
    )
    .unwrap();
    for i in 1..=5u64 {
        let e = Entry {
            index: i,
            term: 1,
            entry_type: if i == 1 { 1 } else { 0 },
            data: vec![i as u8; 10],
        };
        w.save(
            Some(&HardState {
                term: 1,
                vote: 1,
                commit: i,
            }),
            &[e],
        )
        .unwrap();
    }
    w.sync().unwrap();
    let seg = w.tail_path().to_path_buf();
    drop(w);
    let d = wal_dir.to_str().unwrap();
    let (ok, out) = util(&["waldump", d]);
    assert!(ok, "{out}");
    assert!(
        out.contains("member abc cluster def") && out.contains("confchange"),
        "{out}"
    );
    assert!(out.contains("5 entries shown, 0 problem(s)"), "{out}");
    let (ok, out) = util(&[
        "waldump",
        d,
        "--start-index",
        "2",
        "--end-index",
        "3",
        "--entries-only",
        "--raw",
    ]);
    assert!(
        ok && out.contains("2 entries shown") && out.contains("03030303"),
        "{out}"
    );
    let (ok, out) = util(&[
        "waldump",
        d,
        "--entry-type",
        "conf-change",
        "--entries-only",
    ]);
    assert!(ok && out.contains("1 entries shown"), "{out}");
    // Damage in the middle: reported with its offset, exit 1.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[200] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let (ok, out) = util(&["waldump", d]);
    assert!(!ok && out.contains("PROBLEM: offset"), "{out}");
}

/// The layer checker finds the circles it is shown (grouped imports,
/// aliases, `self`/`super` paths, re-exports, inside a folder) and passes
/// a clean crate: a checker that could not fail would prove nothing.
#[test]
fn the_import_circle_checker_finds_planted_circles() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/module-cycles.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--self-test")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("circle found").count(), 5, "{text}");
    assert!(text.contains("ok: clean: no circle"), "{text}");
}
