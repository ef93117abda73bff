//! Build facts for `strata --version` (etcd's block): the commit built and
//! the compiler that built it, as `STRATA_GIT_SHA` and `STRATA_RUSTC`.
//! A build outside a git checkout (a source tarball) takes the commit
//! from the `STRATA_GIT_SHA` variable, or says it is unknown.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STRATA_GIT_SHA");
    // A new commit changes HEAD or the branch it names.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let sha = std::env::var("STRATA_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=9", "HEAD"]))
        .unwrap_or_else(|| "not provided (built outside a git checkout)".into());
    println!("cargo:rustc-env=STRATA_GIT_SHA={sha}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "rustc (unknown)".into());
    println!("cargo:rustc-env=STRATA_RUSTC={version}");
}

/// A command's first line of output, if it ran and succeeded.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let line = s.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}
