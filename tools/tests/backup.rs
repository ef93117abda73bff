//! Backups with `strata-util snapshot`: saved from a live member (in this
//! process), read by `strata-util` and by etcdctl alike, restored into a
//! new data dir that a member then serves; a damaged backup refused; a
//! backup made by real etcd restored and served by Strata.

mod common;
use common::util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("etcdctl is installed (.ci/deps)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `f` against a member on `data` (with `extra` flags), then stops it.
fn with_member<F, Fut>(data: &Path, extra: &[&str], f: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    strata_testkit::inprocess::with_member(data, extra, Duration::from_secs(60), f);
}

fn json_field(json: &str, name: &str) -> i64 {
    let at = json.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn save_status_restore_and_serve_again() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.db");
    let b = backup.to_str().unwrap().to_string();
    with_member(&dir.path().join("data"), &[], |ep| {
        let b = b.clone();
        async move {
            let mut c = etcd_client::Client::connect([ep.as_str()], None)
                .await
                .unwrap();
            for i in 0..2000 {
                c.put(format!("k{i:04}"), vec![b'v'; 200], None)
                    .await
                    .unwrap();
            }
            c.delete("k0007", None).await.unwrap();
            let lease = c.lease_grant(600, None).await.unwrap().id();
            let opts = etcd_client::PutOptions::new().with_lease(lease);
            c.put("leased", "x", Some(opts)).await.unwrap();
            let (ok, out) = tokio::task::spawn_blocking(move || {
                util(&["snapshot", "save", &b, "--endpoints", &ep])
            })
            .await
            .unwrap();
            assert!(ok, "{out}");
            assert!(out.contains("Snapshot saved at"), "{out}");
        }
    });
    // strata-util reads the backup as etcdutl 3.6 does: hash, revision
    // and size as etcdctl 3.4 reads them; total keys are the live keys
    // (3.6's count; 3.4 counted every entry of every bucket) and the
    // version is the backup's storage version (none at the 3.5 level).
    let (ok, ours) = util(&["snapshot", "status", &b, "-w", "json"]);
    assert!(ok, "{ours}");
    let (ok, theirs) = etcdctl("127.0.0.1:1", &["snapshot", "status", &b, "-w", "json"]);
    assert!(ok);
    for field in ["hash", "revision", "totalSize"] {
        assert_eq!(
            json_field(&ours, field),
            json_field(&theirs, field),
            "{field}"
        );
    }
    assert_eq!(json_field(&ours, "revision"), 2003);
    // 2,000 keys, one deleted, one leased key.
    assert_eq!(json_field(&ours, "totalKey"), 2000);
    assert!(ours.trim().ends_with(r#","version":""}"#), "{ours}");

    // Restored into a new member of a new cluster.
    let restored = dir.path().join("restored");
    let r = restored.to_str().unwrap();
    let (ok, out) = util(&[
        "snapshot",
        "restore",
        &b,
        "--name",
        "m0",
        "--initial-cluster",
        "m0=http://127.0.0.1:1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
        "--data-dir",
        r,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("added member"), "{out}");
    // A second restore into the same place is refused.
    let (ok, out) = util(&["snapshot", "restore", &b, "--data-dir", r]);
    assert!(!ok && out.contains("exists"), "{out}");
    let flags = [
        "--name",
        "m0",
        "--initial-cluster",
        "m0=http://127.0.0.1:1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
    ];
    with_member(&restored, &flags, |ep| async move {
        let mut c = etcd_client::Client::connect([ep.as_str()], None)
            .await
            .unwrap();
        let r = c.get("k1999", None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), 2003);
        assert_eq!(r.kvs()[0].value(), vec![b'v'; 200].as_slice());
        assert!(c.get("k0007", None).await.unwrap().kvs().is_empty());
        let all = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        assert_eq!(c.get("k", Some(all)).await.unwrap().count(), 1999);
        assert_eq!(c.leases().await.unwrap().leases().len(), 1);
        let m = c.member_list().await.unwrap();
        assert_eq!(m.members().len(), 1);
        assert_eq!(m.members()[0].name(), "m0");
        c.put("after", "restore", None).await.unwrap();
    });

    // A damaged backup is refused: the digest no longer matches.
    let mut bytes = std::fs::read(&backup).unwrap();
    bytes[9000] ^= 0xff;
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    let (ok, out) = util(&[
        "snapshot",
        "restore",
        bad.to_str().unwrap(),
        "--data-dir",
        dir.path().join("r2").to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("expected sha256"), "{out}");

    // etcdutl 3.6's --bump-revision N --mark-compacted: the member starts
    // N past the backup's revision with everything before compacted, so a
    // watcher of the old cluster sees a compaction (etcd v3.7.1
    // etcdutl/snapshot/v3_snapshot.go modifyLatestRevision). The two flags
    // come together or not at all (etcdutl/etcdutl/snapshot_command.go).
    let bumped = dir.path().join("bumped");
    let bd = bumped.to_str().unwrap();
    for lone in [&["--bump-revision", "1000"][..], &["--mark-compacted"][..]] {
        let mut args = vec!["snapshot", "restore", &b, "--data-dir", bd];
        args.extend_from_slice(lone);
        let (ok, out) = util(&args);
        assert!(!ok, "{lone:?} alone was accepted");
        assert!(
            out.contains("--mark-compacted required if --revision-bump > 0"),
            "{out}"
        );
        assert!(!bumped.exists());
    }
    let (ok, out) = util(&[
        "snapshot",
        "restore",
        &b,
        "--data-dir",
        bd,
        "--bump-revision",
        "1000",
        "--mark-compacted",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("bumped the latest revision 2003 by 1000 to 3003"),
        "{out}"
    );
    with_member(&bumped, &[], |ep| async move {
        let mut c = etcd_client::Client::connect([ep.as_str()], None)
            .await
            .unwrap();
        let r = c.get("k1999", None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), 3003);
        assert_eq!(r.kvs()[0].mod_revision(), 2001);
        let old = etcd_client::GetOptions::new().with_revision(2003);
        let e = c.get("k1999", Some(old)).await.unwrap_err().to_string();
        assert!(e.contains("required revision has been compacted"), "{e}");
        let put = c.put("after", "bump", None).await.unwrap();
        assert_eq!(put.header().unwrap().revision(), 3004);
        let from_old = etcd_client::WatchOptions::new().with_start_revision(5);
        let mut events = c.watch("k0001", Some(from_old)).await.unwrap();
        let mut canceled = None;
        for _ in 0..2 {
            let r = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("a watch response in time")
                .unwrap()
                .unwrap();
            if r.canceled() {
                canceled = Some(r);
                break;
            }
        }
        let canceled = canceled.expect("the watcher canceled");
        assert_eq!(canceled.compact_revision(), 3003);
    });
}

#[test]
fn a_backup_of_real_etcd_is_restored_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = strata_testkit::Etcd::start();
    let ep = etcd.endpoint();
    let up = etcdctl(&ep, &["put", "e0", "first"]).0;
    let backup = dir.path().join("etcd.db");
    let b = backup.to_str().unwrap();
    let saved = up
        && (1..50).all(|i| etcdctl(&ep, &["put", &format!("e{i}"), "v"]).0)
        && etcdctl(&ep, &["snapshot", "save", b]).0;
    drop(etcd);
    assert!(saved, "real etcd took the writes and saved a backup");
    let restored = dir.path().join("restored");
    let (ok, out) = util(&[
        "snapshot",
        "restore",
        b,
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    with_member(&restored, &[], |ep| async move {
        let mut c = etcd_client::Client::connect([ep.as_str()], None)
            .await
            .unwrap();
        let r = c.get("e0", None).await.unwrap();
        assert_eq!(r.kvs()[0].value(), b"first");
        assert_eq!(r.header().unwrap().revision(), 51);
    });
}

/// `strata-util hashkv` (etcdutl 3.6's verb, v3.7.1
/// etcdutl/etcdutl/hashkv_command.go) on a stopped member's db answers what
/// the running member's HashKV answered: the hash, the revision hashed and
/// the compact revision; a compacted revision is refused.
#[test]
fn hashkv_of_a_stopped_member_is_its_live_hashkv() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = live.clone();
    with_member(&data, &[], |ep| async move {
        let mut c = etcd_client::Client::connect([ep.as_str()], None)
            .await
            .unwrap();
        for i in 0..100 {
            c.put(format!("h{:02}", i % 40), format!("v{i}"), None)
                .await
                .unwrap();
        }
        c.delete("h07", None).await.unwrap();
        c.compact(50, None).await.unwrap();
        for rev in [0, 80] {
            let h = c.hash_kv(rev).await.unwrap();
            let hashed = if rev == 0 {
                h.header().unwrap().revision()
            } else {
                rev
            };
            seen.lock()
                .unwrap()
                .push((rev, h.hash(), hashed, h.compact_version()));
        }
    });
    let db = data.join("member").join("db");
    let db = db.to_str().unwrap();
    let live = live.lock().unwrap().clone();
    assert_eq!(live.len(), 2);
    for (rev, hash, hashed, compact) in live {
        let (ok, out) = util(&["hashkv", db, "--rev", &rev.to_string(), "-w", "json"]);
        assert!(ok, "{out}");
        assert_eq!(
            out.trim(),
            format!(r#"{{"hash":{hash},"hashRevision":{hashed},"compactRevision":{compact}}}"#)
        );
        let (ok, simple) = util(&["hashkv", db, "--rev", &rev.to_string()]);
        assert!(ok);
        assert_eq!(simple.trim(), format!("{hash}, {hashed}, {compact}"));
    }
    let (ok, out) = util(&["hashkv", db, "--rev", "10"]);
    assert!(!ok && out.contains("compacted"), "{out}");
}
