//! `strata-util migrate --data-dir D --target-version X.Y [--force]`:
//! etcdutl's `migrate` (etcd 3.6, v3.7.1 etcdutl/etcdutl/migrate_command.go)
//! for strata's storage schema: moves a stopped member's db to the storage
//! version of another release, one minor step at a time, so a binary of
//! that release opens it. The schemas this binary knows are 3.5 (no
//! storage version recorded, etcd's own 3.5) to
//! [`versions::NEWEST_KNOWN`]; between them only the `storageVersion`
//! field differs (3.6 added it, as etcd's). A version outside them is
//! refused with etcd's words unless `--force` writes it anyway.
//!
//! A member opened afterwards settles its storage version to its cluster
//! version again (as etcd's monitor does): migrate before starting the
//! other release's binary, not this one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_server::statemachine::versions::{self, Minor, STORAGE_VERSION_KEY};

#[derive(Args)]
pub struct MigrateArgs {
    /// Path to the member's data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Target version to migrate the data dir to, "X.Y" (minimal 3.5).
    #[arg(long)]
    pub target_version: String,
    /// Ignore a migration failure and write the storage version anyway.
    /// Not recommended.
    #[arg(long)]
    pub force: bool,
}

/// etcdutl's reading of `--target-version`.
pub fn parse_target(v: &str) -> Result<Minor> {
    if v.matches('.').count() != 1 {
        bail!(r#"wrong target version format, expected "X.Y", got {v:?}"#);
    }
    let t = Minor::of_semver(&format!("{v}.0"))
        .with_context(|| format!("failed to parse target version: {v:?} is not a version"))?;
    if t < versions::OLDEST_KNOWN {
        bail!(
            r#"target version {:?} not supported. Minimal "3.5""#,
            t.short()
        );
    }
    Ok(t)
}

/// The steps from `from` to `to`, each a minor version, or etcd's error
/// for a version this binary does not know.
fn plan(from: Minor, to: Minor) -> Result<Vec<Minor>> {
    if from.0 != to.0 {
        bail!("cannot create migration plan: changing major storage version is not supported");
    }
    for v in [from, to] {
        if v > versions::NEWEST_KNOWN {
            bail!(
                "cannot create migration plan: version {:?} is not supported",
                v.full()
            );
        }
    }
    let steps = if from.1 < to.1 {
        (from.1 + 1..=to.1).map(|m| Minor(to.0, m)).collect()
    } else {
        (to.1..from.1).rev().map(|m| Minor(to.0, m)).collect()
    };
    Ok(steps)
}

pub fn run(a: &MigrateArgs) -> Result<ExitCode> {
    let target = parse_target(&a.target_version)?;
    let member = a.data_dir.join("member");
    if !member.is_dir() {
        bail!(
            "{} is not a member's data dir (no member/)",
            a.data_dir.display()
        );
    }
    crate::datadir::not_running(&member.join("wal"))?;
    let db = member.join("db");
    let backend = crate::lock::waiting(&db, || Backend::open(BackendConfig::new(db.clone())))?;
    let current = versions::storage_version(&backend.read())?.unwrap_or(versions::OLDEST_KNOWN);
    if current == target {
        println!("storage version up-to-date: {}", current.full());
        backend.close()?;
        return Ok(ExitCode::SUCCESS);
    }
    let steps = match plan(current, target) {
        Ok(s) => s,
        Err(e) if a.force => {
            eprintln!("normal migrate failed, trying with force: {e:#}");
            vec![target]
        }
        Err(e) => {
            backend.close()?;
            return Err(e);
        }
    };
    for step in steps {
        {
            let mut b = backend.batch()?;
            match versions::storage_change(step) {
                Some(v) => b.put(Bucket::Meta, STORAGE_VERSION_KEY, &v)?,
                None => b.delete(Bucket::Meta, STORAGE_VERSION_KEY)?,
            }
        }
        backend.force_commit()?;
        println!("updated storage version to {}", step.full());
    }
    backend.close()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_as_etcdutl_reads_them() {
        assert_eq!(parse_target("3.6").unwrap(), Minor(3, 6));
        let e = |v: &str| parse_target(v).unwrap_err().to_string();
        assert_eq!(
            e("3"),
            r#"wrong target version format, expected "X.Y", got "3""#
        );
        assert_eq!(
            e("3.6.0"),
            r#"wrong target version format, expected "X.Y", got "3.6.0""#
        );
        assert_eq!(
            e("3.4"),
            r#"target version "3.4" not supported. Minimal "3.5""#
        );
        assert!(e("a.b").starts_with("failed to parse target version"));
    }

    #[test]
    fn plans_step_one_minor_at_a_time_within_what_is_known() {
        assert_eq!(
            plan(Minor(3, 5), Minor(3, 7)).unwrap(),
            [Minor(3, 6), Minor(3, 7)]
        );
        assert_eq!(
            plan(Minor(3, 7), Minor(3, 5)).unwrap(),
            [Minor(3, 6), Minor(3, 5)]
        );
        assert_eq!(
            plan(Minor(3, 9), Minor(3, 5)).unwrap_err().to_string(),
            r#"cannot create migration plan: version "3.9.0" is not supported"#
        );
        assert!(plan(Minor(3, 5), Minor(4, 0)).is_err());
    }
}
