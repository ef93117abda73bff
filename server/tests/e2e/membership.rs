//! etcd's runtime reconfiguration and disaster recovery guides, step by
//! step with etcdctl against real processes: replace a killed member
//! (remove, add, start with `existing`), grow 3 -> 5 -> 3, add a learner
//! that catches up from a snapshot and is promoted, a removed member that
//! refuses to come back; `--force-new-cluster` after losing quorum; and a
//! backup restored into three new members.

use strata_testkit as common;

use std::path::Path;

use common::{free_ports, wait_for, Server};

fn peer_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Starts member `name` on `peer` with `initial` and `state`.
fn launch(
    dir: &Path,
    name: &str,
    peer: &str,
    initial: &str,
    state: &str,
    extra: &[&str],
) -> Server {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut args = vec![
        "--name",
        name,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        state,
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
    ];
    args.extend_from_slice(extra);
    Server::launch_in(&d, &args)
}

/// Three members m0..m2, ready.
fn three(dir: &Path) -> (Vec<Server>, Vec<String>) {
    let urls: Vec<String> = free_ports(3).into_iter().map(peer_url).collect();
    let initial: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("m{i}={u}"))
        .collect();
    let initial = initial.join(",");
    let mut ms: Vec<Server> = (0..3)
        .map(|i| launch(dir, &format!("m{i}"), &urls[i], &initial, "new", &[]))
        .collect();
    for m in &mut ms {
        m.wait_ready();
    }
    (ms, urls)
}

/// `member add`: the new member's id and the ETCD_INITIAL_CLUSTER line.
fn add(via: &Server, name: &str, peer: &str, learner: bool) -> (String, String) {
    let mut args = vec!["member", "add", name];
    let flag = format!("--peer-urls={peer}");
    args.push(&flag);
    if learner {
        args.push("--learner");
    }
    // Until every voter has been connected for etcd's health interval,
    // an add is refused as "unhealthy cluster": retry for a while.
    let out = wait_for(20, || {
        let o = via.etcdctl(&args);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .expect("member add succeeds");
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("Member <id> added")
        .to_string();
    let initial = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .expect("ETCD_INITIAL_CLUSTER line")
        .trim_end_matches('"')
        .to_string();
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    (id, initial)
}

fn member_ids(via: &Server) -> Vec<(String, String, bool)> {
    via.etcdctl_ok(&["member", "list"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            (f[0].to_string(), f[2].to_string(), f[5] == "true")
        })
        .collect()
}

fn id_of(via: &Server, name: &str) -> String {
    member_ids(via)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .map(|(id, _, _)| id)
        .unwrap_or_else(|| panic!("{name} in the member list"))
}

fn get(m: &Server, key: &str, serializable: bool) -> Option<String> {
    let mut args = vec!["get", key, "--print-value-only"];
    if serializable {
        args.push("--consistency=s");
    }
    let o = m.etcdctl(&args);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn replace_grow_shrink_learners_and_removed_members() {
    let _turn = common::one_cluster_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut ms, _) = three(dir);
    for i in 0..100 {
        ms[0].etcdctl_ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }

    // Replace a killed member: remove it, add a new one, start it.
    ms[2].kill9();
    let dead = id_of(&ms[0], "m2");
    // If the killed member led, the first tries time out until a new
    // leader is elected (as with etcd): retry.
    // (A try that timed out may still apply: then the member is gone.)
    let removed = wait_for(20, || {
        let o = ms[0].etcdctl(&["--command-timeout=3s", "member", "remove", &dead]);
        let said = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() {
            assert!(
                // etcdctl prints ids as %16x: an id with a leading zero
                // digit comes out padded with a space.
                said.contains(&format!("Member {dead:>16} removed from cluster")),
                "{said}"
            );
            return Some(());
        }
        let gone = ms[0].etcdctl(&["member", "list"]);
        (gone.status.success() && !String::from_utf8_lossy(&gone.stdout).contains(&dead))
            .then_some(())
    });
    assert!(removed.is_some(), "member remove succeeds");
    let [p3, p4, p5, p6] = free_ports(4)[..] else {
        unreachable!()
    };
    let (_, initial) = add(&ms[0], "m3", &peer_url(p3), false);
    let mut m3 = launch(dir, "m3", &peer_url(p3), &initial, "existing", &[]);
    m3.wait_ready();
    assert_eq!(get(&m3, "k99", false).as_deref(), Some("v99"));
    m3.etcdctl_ok(&["put", "after-replace", "1"]);
    assert_eq!(get(&ms[1], "after-replace", false).as_deref(), Some("1"));

    // The removed member, restarted on its old data, refuses to serve.
    let mut back = std::process::Command::new(common::strata_bin())
        .arg("--data-dir")
        .arg(dir.join("m2").join("data"))
        .args(["--listen-client-urls", "http://127.0.0.1:0"])
        .args(ms[2].args.iter())
        .env("STRATA_WAL_SEGMENT_SIZE", common::TEST_WAL_SEGMENT_SIZE)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(30, || back.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = back.kill();
    }
    let out = back.wait_with_output().unwrap();
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the removed member must stop"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the member has been permanently removed from the cluster"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Grow to five, then back to three.
    let (_, initial) = add(&ms[0], "m4", &peer_url(p4), false);
    let mut m4 = launch(dir, "m4", &peer_url(p4), &initial, "existing", &[]);
    m4.wait_ready();
    let (_, initial) = add(&ms[0], "m5", &peer_url(p5), false);
    let mut m5 = launch(dir, "m5", &peer_url(p5), &initial, "existing", &[]);
    m5.wait_ready();
    assert_eq!(member_ids(&m5).len(), 5);
    m5.etcdctl_ok(&["put", "five", "yes"]);
    for m in [&ms[0], &ms[1], &m3, &m4] {
        assert_eq!(get(m, "five", false).as_deref(), Some("yes"));
    }
    for name in ["m4", "m5"] {
        let id = id_of(&ms[0], name);
        ms[0].etcdctl_ok(&["member", "remove", &id]);
    }
    assert_eq!(member_ids(&ms[1]).len(), 3);
    let stopped = wait_for(10, || {
        let a = m4
            .child
            .as_mut()
            .map(|c| c.try_wait().ok().flatten().is_some());
        let b = m5
            .child
            .as_mut()
            .map(|c| c.try_wait().ok().flatten().is_some());
        (a == Some(true) && b == Some(true)).then_some(())
    });
    assert!(stopped.is_some(), "removed members stop");
    ms[1].etcdctl_ok(&["put", "three-again", "1"]);

    // A learner: catches up from a snapshot, serves serializable reads
    // only, is not counted for quorum, then is promoted.
    let (id6, initial) = add(&ms[0], "m6", &peer_url(p6), true);
    let mut m6 = launch(dir, "m6", &peer_url(p6), &initial, "existing", &[]);
    m6.wait_ready();
    assert!(member_ids(&ms[0]).iter().any(|(id, _, l)| *id == id6 && *l));
    let caught_up = wait_for(10, || {
        (get(&m6, "three-again", true).as_deref() == Some("1")).then_some(())
    });
    assert!(caught_up.is_some(), "the learner caught up");
    let refused = m6.etcdctl(&["--command-timeout=2s", "put", "x", "1"]);
    assert!(
        common::last_error_line(&refused).contains("rpc not supported for learner"),
        "{refused:?}"
    );
    // etcd 3.6's /readyz: a learner is not ready (non_learner), though it
    // is live.
    let (code, body) = common::http_get(m6.port, "/readyz");
    assert_eq!(code, 503);
    assert!(
        body.contains("[-]non_learner failed: not supported for learner"),
        "{body}"
    );
    assert_eq!(common::http_get(m6.port, "/livez").0, 200);
    // Of the streams, a learner serves Snapshot (etcd 3.5.x and later).
    let snap = dir.join("from-learner.db");
    m6.etcdctl_ok(&["snapshot", "save", snap.to_str().expect("utf-8 path")]);
    assert!(std::fs::metadata(&snap).map(|m| m.len()).unwrap_or(0) > 0);
    // A second learner is one too many (etcd's default maximum is 1).
    let too_many = ms[0].etcdctl(&[
        "member",
        "add",
        "m7",
        "--learner",
        "--peer-urls=http://127.0.0.1:1",
    ]);
    assert!(
        common::last_error_line(&too_many).contains("too many learner members in cluster"),
        "{too_many:?}"
    );
    let promoted = wait_for(20, || {
        let o = ms[1].etcdctl(&["member", "promote", &id6]);
        o.status.success().then_some(())
    });
    assert!(promoted.is_some(), "the caught-up learner is promoted");
    let not_learner = ms[1].etcdctl(&["member", "promote", &id6]);
    assert!(
        common::last_error_line(&not_learner).contains("can only promote a learner member"),
        "{not_learner:?}"
    );
    let voter = wait_for(10, || get(&m6, "k1", false).filter(|v| v == "v1"));
    assert!(
        voter.is_some(),
        "the promoted member serves linearizable reads"
    );
    m6.etcdctl_ok(&["put", "by-promoted", "1"]);
    assert_eq!(get(&m3, "by-promoted", false).as_deref(), Some("1"));

    // Removing the leader: it leaves once the change commits, the others
    // elect a new one and go on.
    let status = m6.etcdctl_ok(&["endpoint", "status", "-w", "json"]);
    let at = status.find("\"leader\":").unwrap() + 9;
    let leader: u64 = status[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap();
    let leader = format!("{leader:x}");
    let names: Vec<(String, String)> = member_ids(&m6)
        .into_iter()
        .map(|(id, name, _)| (id, name))
        .collect();
    let leader_name = names
        .iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, n)| n.clone())
        .expect("the leader is a member");
    let out = m6.etcdctl_ok(&["member", "remove", &leader]);
    assert!(out.contains("removed from cluster"), "{out}");
    let [m0, m1] = &mut ms[..2] else {
        unreachable!()
    };
    let mut by_name: Vec<(&str, &mut Server)> =
        vec![("m0", m0), ("m1", m1), ("m3", &mut m3), ("m6", &mut m6)];
    let (_, old) = by_name
        .iter_mut()
        .find(|(n, _)| *n == leader_name)
        .expect("the leader's process");
    let left = wait_for(10, || {
        old.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .map(|_| ())
    });
    assert!(left.is_some(), "the removed leader stops");
    let rest: Vec<&Server> = by_name
        .iter()
        .filter(|(n, _)| *n != leader_name)
        .map(|(_, m)| &**m)
        .collect();
    let wrote = wait_for(15, || {
        rest[0]
            .etcdctl(&["--command-timeout=2s", "put", "after-leader-left", "1"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        wrote.is_some(),
        "the cluster goes on without its old leader"
    );
    for m in &rest {
        assert_eq!(get(m, "after-leader-left", false).as_deref(), Some("1"));
        assert!(member_ids(m).iter().all(|(id, _, _)| *id != leader));
    }
}

#[test]
fn force_new_cluster_after_losing_quorum() {
    let _turn = common::one_cluster_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let (mut ms, _) = three(tmp.path());
    for i in 0..50 {
        ms[0].etcdctl_ok(&["put", &format!("k{i}"), "v"]);
    }
    ms[1].kill9();
    ms[2].kill9();
    // The survivor, restarted alone with --force-new-cluster.
    ms[0].kill9();
    let mut args = ms[0].args.clone();
    args.push("--force-new-cluster".into());
    ms[0].args = args;
    ms[0].restart();
    assert_eq!(get(&ms[0], "k49", false).as_deref(), Some("v"));
    ms[0].etcdctl_ok(&["put", "alone", "1"]);
    assert_eq!(member_ids(&ms[0]).len(), 1);
    // And without the flag it stays a one-member cluster.
    let args: Vec<String> = ms[0]
        .args
        .iter()
        .filter(|a| *a != "--force-new-cluster")
        .cloned()
        .collect();
    ms[0].args = args;
    ms[0].restart();
    ms[0].etcdctl_ok(&["put", "still-alone", "1"]);
    assert_eq!(member_ids(&ms[0]).len(), 1);
}

#[test]
fn a_backup_restored_into_three_new_members() {
    let _turn = common::one_cluster_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut ms, _) = three(dir);
    for i in 0..200 {
        ms[i % 3].etcdctl_ok(&["put", &format!("k{i:03}"), &format!("v{i}")]);
    }
    ms[0].etcdctl_ok(&["del", "k000"]);
    let rev = ms[1].etcdctl_ok(&["endpoint", "status", "-w", "json"]);
    let backup = dir.join("backup.db");
    let b = backup.to_str().unwrap();
    ms[2].etcdctl_ok(&["snapshot", "save", b]);
    // Every member and its data is gone.
    for m in &mut ms {
        m.kill9();
    }
    for i in 0..3 {
        std::fs::remove_dir_all(dir.join(format!("m{i}"))).unwrap();
    }
    let urls: Vec<String> = free_ports(3).into_iter().map(peer_url).collect();
    let initial: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("r{i}={u}"))
        .collect();
    let initial = initial.join(",");
    let mut restored = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let name = format!("r{i}");
        let d = dir.join(&name);
        std::fs::create_dir_all(&d).unwrap();
        // What `strata-util snapshot restore` runs.
        let backup = strata_server::embed::restore::read_backup(&backup, false).unwrap();
        let params = strata_server::embed::restore::RestoreParams {
            name: name.clone(),
            initial_cluster: initial.clone(),
            initial_cluster_token: "restored".into(),
            initial_advertise_peer_urls: vec![url.clone()],
            data_dir: d.join("data"),
            bump_revision: None,
        };
        let file = strata_engine::bbolt::BoltFile::read(&backup.db).unwrap();
        strata_server::embed::restore::restore(&file, &params, |_| {}).unwrap();
        restored.push(launch(
            dir,
            &name,
            url,
            &initial,
            "new",
            &["--initial-cluster-token", "restored"],
        ));
    }
    for m in &mut restored {
        m.wait_ready();
    }
    let field = |s: &str| -> String {
        let at = s.find("\"revision\":").unwrap() + 11;
        s[at..].chars().take_while(|c| c.is_ascii_digit()).collect()
    };
    for m in &restored {
        assert_eq!(get(m, "k199", false).as_deref(), Some("v199"));
        assert_eq!(get(m, "k000", false).as_deref(), Some(""));
        let st = m.etcdctl_ok(&["endpoint", "status", "-w", "json"]);
        assert_eq!(field(&st), field(&rev), "the same revision back");
    }
    assert_eq!(member_ids(&restored[0]).len(), 3);
    restored[1].etcdctl_ok(&["put", "after-restore", "1"]);
    assert_eq!(
        get(&restored[2], "after-restore", false).as_deref(),
        Some("1")
    );
}
