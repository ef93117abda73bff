//! `--config-file`: etcd's YAML configuration file. Its keys are the
//! flags' names (`name`, `data-dir`, `listen-client-urls`,
//! `initial-cluster`, `experimental-...`), with TLS in two sections,
//! `client-transport-security` and `peer-transport-security` (`cert-file`,
//! `key-file`, `client-cert-auth`, `trusted-ca-file`, `auto-tls`, as the
//! flags without and with the `peer-` prefix). Lists (`log-outputs`,
//! `cipher-suites`) are joined with commas; an empty value is the flag's
//! default.
//!
//! As in etcd, a configuration file makes every other flag and every
//! `ETCD_*` variable ignored: the file alone is parsed, through the same
//! definitions (and checks) as the command line. A key that names no flag
//! is reported and skipped (etcd's YAML reader ignores unknown keys too).

use std::path::Path;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use yaml_rust2::{Yaml, YamlLoader};

use super::Config;

/// The configuration the file at `path` describes, and a note for each
/// key that was skipped.
pub fn load(path: &Path) -> anyhow::Result<(Config, Vec<String>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --config-file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("--config-file {}: {e:#}", path.display()))
}

/// The configuration a config file's text describes, and a note for each
/// key that was skipped.
pub fn parse(text: &str) -> anyhow::Result<(Config, Vec<String>)> {
    let cmd = Config::command();
    let known = |flag: &str| {
        cmd.get_arguments().any(|a| {
            a.get_long() == Some(flag) || a.get_all_aliases().is_some_and(|al| al.contains(&flag))
        })
    };
    let (args, mut notes) = to_args(text, known).context("parsing")?;
    notes.extend(super::renamed::in_args(args.iter().map(String::as_str)));
    // The file alone: no ETCD_* variable is read.
    let cmd = Config::command().mut_args(|a| a.env(None::<&str>));
    let matches = cmd
        .try_get_matches_from(std::iter::once("strata".to_string()).chain(args))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = Config::from_arg_matches(&matches)?;
    Ok((cfg, notes))
}

/// The file's settings as `--flag=value` arguments; `known` tells which
/// flags exist.
fn to_args(text: &str, known: impl Fn(&str) -> bool) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut args = Vec::new();
    let mut notes = Vec::new();
    let Some(doc) = docs.first() else {
        return Ok((args, notes));
    };
    let Yaml::Hash(map) = doc else {
        anyhow::bail!("the file is not a mapping of settings");
    };
    for (k, v) in map {
        let key = key_of(k)?;
        match key.as_str() {
            "client-transport-security" | "peer-transport-security" => {
                let peer = key.starts_with("peer");
                let Yaml::Hash(section) = v else {
                    if !matches!(v, Yaml::Null) {
                        anyhow::bail!("{key} must be a mapping");
                    }
                    continue;
                };
                for (k, v) in section {
                    let sub = key_of(k)?;
                    let flag = match (peer, sub.as_str()) {
                        (false, "client-cert-auth") => "client-cert-auth".to_string(),
                        (true, "client-cert-auth") => "peer-client-cert-auth".to_string(),
                        (true, s) => format!("peer-{s}"),
                        (false, s) => s.to_string(),
                    };
                    push(
                        &mut args,
                        &mut notes,
                        &known,
                        &format!("{key}.{sub}"),
                        &flag,
                        v,
                    )?;
                }
            }
            "config-file" => notes.push("config-file inside a config file is ignored".into()),
            _ => push(&mut args, &mut notes, &known, &key, &key, v)?,
        }
    }
    Ok((args, notes))
}

fn key_of(k: &Yaml) -> anyhow::Result<String> {
    match k {
        Yaml::String(s) => Ok(s.clone()),
        other => anyhow::bail!("a key that is not a string: {other:?}"),
    }
}

/// Adds `--flag=value` for the setting `key`, or a note when no flag has
/// that name.
fn push(
    args: &mut Vec<String>,
    notes: &mut Vec<String>,
    known: &impl Fn(&str) -> bool,
    key: &str,
    flag: &str,
    v: &Yaml,
) -> anyhow::Result<()> {
    let Some(value) = scalar(v).with_context(|| format!("the value of {key}"))? else {
        return Ok(());
    };
    if known(flag) {
        args.push(format!("--{flag}={value}"));
    } else {
        notes.push(format!("{key} names no flag of strata; skipped"));
    }
    Ok(())
}

/// A value as the flag's text; None for an empty one.
fn scalar(v: &Yaml) -> anyhow::Result<Option<String>> {
    Ok(match v {
        Yaml::Null => None,
        Yaml::String(s) if s.is_empty() => None,
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        Yaml::Array(items) => {
            let parts = items
                .iter()
                .map(|i| scalar(i).map(Option::unwrap_or_default))
                .collect::<anyhow::Result<Vec<_>>>()?;
            (!parts.is_empty()).then(|| parts.join(","))
        }
        other => anyhow::bail!("not a plain value or a list: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of etcd's docs (etcd.conf.yml.sample), in part.
    const SAMPLE: &str = r#"
# This is the configuration file for the etcd server.
name: 'default'
data-dir:
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: http://localhost:2380
listen-client-urls: http://localhost:2379
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://localhost:2380
advertise-client-urls: http://localhost:2379
discovery:
discovery-fallback: 'proxy'
initial-cluster:
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-v2: true
enable-pprof: true
proxy: 'off'
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
  allowed-cn:
log-level: debug
logger: zap
log-outputs: [stderr]
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: "1"
cipher-suites: [
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
]
tls-min-version: 'TLS1.2'
no-such-setting: 1
"#;

    #[test]
    fn the_docs_sample_becomes_flags() {
        let known = |f: &str| f != "no-such-setting";
        let (args, notes) = to_args(SAMPLE, known).unwrap();
        for want in [
            "--name=default",
            "--snapshot-count=10000",
            "--listen-client-urls=http://localhost:2379",
            "--strict-reconfig-check=false",
            "--client-cert-auth=false",
            "--peer-client-cert-auth=false",
            "--peer-auto-tls=false",
            "--log-outputs=stderr",
            "--auto-compaction-retention=1",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing from {args:?}");
        }
        assert!(
            !args.iter().any(|a| a.starts_with("--data-dir")),
            "{args:?}"
        );
        assert_eq!(
            notes,
            vec!["no-such-setting names no flag of strata; skipped"]
        );
    }

    #[test]
    fn the_sample_parses_through_the_flag_definitions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(&path, SAMPLE).unwrap();
        let (cfg, notes) = load(&path).unwrap();
        assert_eq!(cfg.snapshot_count, 10000);
        assert!(!cfg.strict_reconfig_check);
        assert_eq!(cfg.log_outputs, "stderr");
        assert_eq!(notes.len(), 1);
        std::fs::write(&path, "name: [a: b]").unwrap();
        assert!(load(&path).is_err());
        std::fs::write(&path, "snapshot-count: lots").unwrap();
        assert!(load(&path).is_err());
    }
}
