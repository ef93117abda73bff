//! Self-signed certificates for `--auto-tls` and `--peer-auto-tls`, as
//! etcd makes them: an ECDSA P-256 key, organization "etcd", one
//! certificate for every host the listen URLs name (IP addresses as IP
//! SANs, names as DNS SANs), valid for `--self-signed-cert-validity`
//! years, usable for server and client authentication. They live in the
//! data dir (`fixtures/client`, `fixtures/peer`: `cert.pem`, `key.pem`,
//! the key readable by the owner only) and are reused on restart.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The certificate and key files in `dir`, made first if missing, for
/// `hosts`.
pub fn self_cert(dir: &Path, hosts: &[String], years: u32) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !(cert.exists() && key.exists()) {
        make(dir, hosts, years).with_context(|| {
            format!(
                "cannot generate a self-signed certificate in {}",
                dir.display()
            )
        })?;
        tracing::info!(dir = %dir.display(), ?hosts, "generated a self-signed certificate");
    }
    Ok((cert, key))
}

fn make(dir: &Path, hosts: &[String], years: u32) -> anyhow::Result<()> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir)?;
    let mut hosts: Vec<String> = hosts.to_vec();
    hosts.sort();
    hosts.dedup();
    let mut params = CertificateParams::new(hosts)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(365 * i64::from(years.max(1)));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_private(&dir.join("key.pem"), key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
