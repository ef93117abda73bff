//! The shim and the power-loss model together, on a real process (python3
//! under `LD_PRELOAD`, making every kind of change the model knows), and
//! the shim's wall clock.

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::SeedableRng;
use strata_fault::cluster::find_shim;
use strata_fault::powerloss::{power_loss, Loss};

fn shim() -> PathBuf {
    find_shim(Path::new(env!("CARGO_BIN_EXE_strata-fault")))
        .expect("libstrata_fault_shim.so is built with strata-fault")
}

/// Durable: d/, a (2048 x 'A'), c, e, f, g cut to 2 bytes. Not: an
/// overwrite and an append to a, b created (the file synced, its directory
/// not), t renamed over c, e unlinked, f cut to 0, sub/ and sub/x made.
const SCRIPT: &str = r#"
import os, sys
r = sys.argv[1]
def sync(p):
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)
def make(p, data):
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data); os.fsync(fd)
    return fd
os.mkdir(r + "/d"); sync(r)
a = make(r + "/d/a", b"A" * 2048)
make(r + "/d/c", b"old"); make(r + "/d/e", b"eee")
f = make(r + "/d/f", b"fff"); g = make(r + "/d/g", b"gggg")
sync(r + "/d")
os.ftruncate(g, 2); os.fsync(g)
os.pwrite(a, b"B" * 1024, 512)
os.pwrite(a, b"C" * 100, 2048)
make(r + "/d/b", b"x")
make(r + "/d/t", b"new")
os.rename(r + "/d/t", r + "/d/c")
os.unlink(r + "/d/e")
os.ftruncate(f, 0)
os.mkdir(r + "/d/sub"); make(r + "/d/sub/x", b"x")
"#;

fn run_script(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let journal = dir.join("journal");
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&root)
        .env("LD_PRELOAD", shim())
        .env("STRATA_SHIM_ROOT", &root)
        .env("STRATA_SHIM_JOURNAL", &journal)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (root, journal)
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn check_names_and_small_files(d: &Path) {
    assert_eq!(names(d), ["a", "c", "e", "f", "g"]);
    assert_eq!(std::fs::read(d.join("c")).unwrap(), b"old");
    assert_eq!(std::fs::read(d.join("e")).unwrap(), b"eee");
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"fff");
    assert_eq!(std::fs::read(d.join("g")).unwrap(), b"gg");
}

#[test]
fn a_power_loss_undoes_exactly_what_was_not_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (root, journal) = run_script(dir.path());
    // Before: everything the script did is there.
    let d = root.join("d");
    assert_eq!(names(&d), ["a", "b", "c", "f", "g", "sub"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let u = power_loss(&journal, &root, Loss::All, &mut rng).unwrap();
    check_names_and_small_files(&d);
    assert_eq!(std::fs::read(d.join("a")).unwrap(), vec![b'A'; 2048]);
    assert_eq!(u.kept_sectors, 0);
    assert!(u.writes >= 3, "{u:?}");
    assert!(!journal.exists(), "the next start journals afresh");
    // Nothing journaled since: a second loss changes nothing.
    let again = power_loss(&journal, &root, Loss::All, &mut rng).unwrap();
    assert_eq!(again.writes + again.names.len(), 0);
}

#[test]
fn a_torn_power_loss_leaves_each_sector_at_one_of_its_versions() {
    let mut mixed = false;
    for seed in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let (root, journal) = run_script(dir.path());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let u = power_loss(&journal, &root, Loss::Torn, &mut rng).unwrap();
        let d = root.join("d");
        check_names_and_small_files(&d);
        let a = std::fs::read(d.join("a")).unwrap();
        // The append went with the length; inside it, sector by sector.
        assert_eq!(a.len(), 2048);
        for (i, s) in a.chunks(512).enumerate() {
            let first = s[0];
            assert!(s.iter().all(|&b| b == first), "sector {i} torn inside");
            if (1..3).contains(&i) {
                assert!(first == b'A' || first == b'B');
            } else {
                assert_eq!(first, b'A');
            }
        }
        mixed |= u.kept_sectors > 0 && a[512..1536].contains(&b'A');
    }
    assert!(mixed, "some seed kept one sector and lost the other");
}

#[test]
fn the_shim_steps_the_wall_clock_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    let offset: i64 = 3 * 86_400;
    std::fs::write(&clock, (offset * 1_000_000_000).to_le_bytes()).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg("import time; print(time.time()); print(time.monotonic())")
        .env("LD_PRELOAD", shim())
        .env("STRATA_SHIM_CLOCK", &clock)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let wall: f64 = lines.next().unwrap().parse().unwrap();
    let mono: f64 = lines.next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (wall - now - offset as f64).abs() < 60.0,
        "wall {wall}, now {now}"
    );
    // The monotonic clock is the machine's uptime-based one, unshifted.
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mono <= uptime + 60.0, "monotonic {mono}, uptime {uptime}");
}
