//! `strata-util migrate` (etcdutl 3.6's verb, v3.7.1
//! etcdutl/etcdutl/migrate_command.go) on a stopped member's data dir: up
//! and down between the schemas the binary knows, each step recorded as
//! etcd records it; etcd's refusals for bad or unknown targets; a running
//! member's data dir refused; `--force` writes what it is told, and the
//! member then refuses the unknown schema; a migrated data dir serves.

mod common;
use common::util;

use std::path::Path;
use std::time::Duration;

/// The db's storage version (None: etcd 3.5's schema, none recorded), as
/// `strata-util inspect get` reads it (another process: the in-process
/// member's handles may outlive its stop by a moment).
fn storage_version(data: &Path) -> Option<String> {
    let db = data.join("member").join("db");
    let (ok, out) = util(&[
        "inspect",
        "get",
        db.to_str().unwrap(),
        "meta",
        "storageVersion",
        "--format",
        "ascii-encoded",
    ]);
    if !ok {
        assert!(out.contains("key not found"), "{out}");
        return None;
    }
    Some(out.trim().to_string())
}

#[test]
fn migrate_moves_the_storage_schema_as_etcdutl_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let d2 = d.clone();
    strata_testkit::inprocess::with_member(&data, &[], Duration::from_secs(60), |ep| async move {
        let mut c = etcd_client::Client::connect([ep.as_str()], None)
            .await
            .unwrap();
        c.put("k", "v", None).await.unwrap();
        // A running member's data dir is not touched.
        let (ok, out) = tokio::task::spawn_blocking(move || {
            util(&["migrate", "--data-dir", &d2, "--target-version", "3.6"])
        })
        .await
        .unwrap();
        assert!(!ok && out.contains("in use by a running member"), "{out}");
    });
    let before = storage_version(&data);

    // Bad targets, in etcdutl's words.
    for (target, words) in [
        (
            "3",
            r#"wrong target version format, expected "X.Y", got "3""#,
        ),
        (
            "3.4",
            r#"target version "3.4" not supported. Minimal "3.5""#,
        ),
        (
            "3.9",
            r#"cannot create migration plan: version "3.9.0" is not supported"#,
        ),
    ] {
        let (ok, out) = util(&["migrate", "--data-dir", &d, "--target-version", target]);
        assert!(!ok && out.contains(words), "{target}: {out}");
        assert_eq!(storage_version(&data), before);
    }

    // Up two steps, down two, each step as etcd records it.
    let (ok, out) = util(&["migrate", "--data-dir", &d, "--target-version", "3.5"]);
    assert!(ok, "{out}");
    assert_eq!(storage_version(&data), None);
    let (ok, out) = util(&["migrate", "--data-dir", &d, "--target-version", "3.7"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("updated storage version to 3.6.0\nupdated storage version to 3.7.0"),
        "{out}"
    );
    assert_eq!(storage_version(&data).as_deref(), Some("3.7.0"));
    let (ok, out) = util(&["migrate", "--data-dir", &d, "--target-version", "3.7"]);
    assert!(
        ok && out.contains("storage version up-to-date: 3.7.0"),
        "{out}"
    );
    let (ok, out) = util(&["migrate", "--data-dir", &d, "--target-version", "3.5"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("updated storage version to 3.6.0\nupdated storage version to 3.5.0"),
        "{out}"
    );
    assert_eq!(storage_version(&data), None);

    // Forced to a schema the binary does not know: written, and the member
    // then refuses the data dir, naming the way back.
    let (ok, out) = util(&[
        "migrate",
        "--data-dir",
        &d,
        "--target-version",
        "3.9",
        "--force",
    ]);
    assert!(ok, "{out}");
    assert_eq!(storage_version(&data).as_deref(), Some("3.9.0"));
    let out = strata_testkit::process::start_refused(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("strata-util migrate"),
        "{err}"
    );

    // Back to a known schema: the member serves its data again.
    let (ok, out) = util(&[
        "migrate",
        "--data-dir",
        &d,
        "--target-version",
        "3.6",
        "--force",
    ]);
    assert!(ok, "{out}");
    strata_testkit::inprocess::with_member(&data, &[], Duration::from_secs(60), |ep| async move {
        let mut c = etcd_client::Client::connect([ep.as_str()], None)
            .await
            .unwrap();
        let r = c.get("k", None).await.unwrap();
        assert_eq!(r.kvs()[0].value(), b"v");
    });
}
