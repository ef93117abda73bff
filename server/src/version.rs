//! The etcd versions strata answers with: the API level it serves
//! (clients, Kubernetes among them, parse it as semver to pick features)
//! and the cluster version every member agrees on.

/// What Status, `/version` and `etcd_server_version` report.
pub const ETCD_VERSION: &str = "3.5.17";

/// The cluster version (`/version`'s `etcdcluster`, `etcd_cluster_version`).
pub const CLUSTER_VERSION: &str = "3.5.0";

/// `strata --version`: etcd's block (`etcd --version`, etcd's
/// server/etcdmain/config.go: version, commit, toolchain, OS/Arch), the
/// toolchain line naming rustc, then strata's own version. The OS/Arch
/// line keeps etcd's label and Go's names (`linux/amd64`), which scripts
/// that pick a binary compare against.
pub fn version_block() -> String {
    format!(
        "etcd Version: {ETCD_VERSION}\nGit SHA: {}\nRust Version: {}\nGo OS/Arch: {}/{}\nstrata Version: {}\n",
        env!("STRATA_GIT_SHA"),
        env!("STRATA_RUSTC"),
        std::env::consts::OS,
        go_arch(std::env::consts::ARCH),
        env!("CARGO_PKG_VERSION"),
    )
}

/// Go's GOARCH for Rust's architecture names.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_has_etcds_lines_in_etcds_order() {
        let b = version_block();
        let labels: Vec<&str> = b.lines().map(|l| l.split(": ").next().unwrap()).collect();
        assert_eq!(
            labels,
            [
                "etcd Version",
                "Git SHA",
                "Rust Version",
                "Go OS/Arch",
                "strata Version"
            ]
        );
        assert!(b.starts_with(&format!("etcd Version: {ETCD_VERSION}\n")));
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}
