//! What the tools' integration tests share: running `strata-util`.

use std::process::Command;

/// Runs `strata-util` with `args`: whether it succeeded, and its stdout
/// then stderr.
pub fn util(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata-util"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
