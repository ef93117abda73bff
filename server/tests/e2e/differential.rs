//! Differential: the same etcdctl sessions against real etcd (Debian's
//! etcd-server) and against strata; outputs must be identical once ids,
//! terms, remaining TTLs and timings are normalized. Add scenarios here
//! whenever a behaviour is found to differ.

use strata_testkit as common;

use common::{etcdctl, Etcd, Server};
use regex::Regex;

/// One etcdctl invocation: arguments (with `$LEASE` standing for the last
/// lease this session granted) and optional stdin.
struct Step(&'static [&'static str], Option<&'static str>);

fn normalize(s: &str) -> String {
    let rules = [
        (r#""cluster_id":\d+"#, r#""cluster_id":C"#),
        (r#""member_id":\d+"#, r#""member_id":M"#),
        (r#""raft_term":\d+"#, r#""raft_term":T"#),
        (r#""(ClusterID|MemberID|RaftTerm)" : \d+"#, r#""$1" : X"#),
        (r"\b[0-9a-f]{16}\b", "LEASEID"),
        (r#""(ID|lease|Lease)"( : |:)\d{6,}"#, r#""$1"${2}LEASE"#),
        (r"remaining\(\d+s\)", "remaining(Ns)"),
        (r"TTL\((\d+)s\), remaining", "TTL(${1}s), remaining"),
        (r#"\{"level":.*\n"#, ""),
        (r"took = .*", "took = T"),
        (r"127\.0\.0\.1:\d+", "ENDPOINT"),
        // etcd 3.4's maintenance calls return the auth store's raw error
        // (code Unknown); 3.5 maps it, as strata does.
        (
            r"rpc error: code = Unknown desc = auth: permission denied",
            "etcdserver: permission denied",
        ),
        // The harness gives etcd loopback peer URLs; strata keeps its default.
        (r#""peerURLs":\[[^\]]*\]"#, r#""peerURLs":[P]"#),
    ];
    let mut out = s.to_string();
    for (re, rep) in rules {
        out = Regex::new(re).unwrap().replace_all(&out, rep).into_owned();
    }
    // etcd lists a lease's keys in Go map order, which changes from run to
    // run: compare them as a set.
    Regex::new(r"attached keys\(\[([^\]]*)\]\)")
        .unwrap()
        .replace_all(&out, |c: &regex::Captures| {
            let mut keys: Vec<&str> = c[1].split(' ').collect();
            keys.sort_unstable();
            format!("attached keys([{}])", keys.join(" "))
        })
        .into_owned()
}

fn run_session(endpoint: &str, steps: &[Step]) -> Vec<String> {
    let lease_re = Regex::new(r"lease ([0-9a-f]{16}) granted").unwrap();
    let mut lease = String::new();
    let mut transcript = Vec::new();
    for Step(args, stdin) in steps {
        let args: Vec<String> = args.iter().map(|a| a.replace("$LEASE", &lease)).collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = if argv.contains(&"watch") {
            // A watch never ends by itself: give it two seconds.
            std::process::Command::new("timeout")
                .arg("2")
                .arg(common::tool("etcdctl"))
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args(&argv)
                .output()
                .expect("etcdctl watch")
        } else {
            etcdctl(endpoint, &argv, *stdin)
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(c) = lease_re.captures(&stdout) {
            lease = c[1].to_string();
        }
        let errors: Vec<&str> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("Error:"))
            .map(|l| l.to_owned())
            .collect::<Vec<_>>()
            .leak()
            .iter()
            .map(String::as_str)
            .collect();
        transcript.push(normalize(&format!(
            "$ etcdctl {}\n{}{}exit={}",
            args.join(" "),
            stdout,
            errors.iter().map(|e| format!("{e}\n")).collect::<String>(),
            out.status.code().unwrap_or(-1)
        )));
    }
    transcript
}

fn compare(name: &str, steps: &[Step]) {
    let etcd = Etcd::start();
    let strata = Server::start(&[]);
    let want = run_session(&etcd.endpoint(), steps);
    let got = run_session(&strata.endpoint(), steps);
    if std::env::var_os("STRATA_DIFF_SHOW").is_some() {
        for g in &got {
            println!("{g}");
        }
    }
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(
            g, w,
            "scenario {name}: strata (left) differs from etcd (right)"
        );
    }
}

#[test]
fn kv_reads_and_writes() {
    compare(
        "kv",
        &[
            Step(&["put", "foo", "bar"], None),
            Step(&["put", "foo", "baz", "--prev-kv"], None),
            Step(&["put", "a1", "1"], None),
            Step(&["put", "a2", "2"], None),
            Step(&["put", "a3", "3"], None),
            Step(&["get", "foo"], None),
            Step(&["get", "foo", "-w", "json"], None),
            Step(&["get", "a", "--prefix"], None),
            Step(&["get", "a", "--prefix", "--keys-only"], None),
            Step(&["get", "a", "--prefix", "--limit=2", "-w", "json"], None),
            Step(
                &["get", "a", "--prefix", "--sort-by=VALUE", "--order=DESCEND"],
                None,
            ),
            Step(
                &[
                    "get",
                    "a",
                    "--prefix",
                    "--sort-by=MODIFY",
                    "--order=ASCEND",
                    "--print-value-only",
                ],
                None,
            ),
            Step(&["get", "a1", "a3"], None),
            Step(&["get", "--from-key", "a2"], None),
            Step(&["get", "foo", "--rev=2"], None),
            Step(&["get", "foo", "--rev=3", "-w", "fields"], None),
            Step(&["get", "foo", "--rev=99"], None),
            Step(&["get", "missing", "-w", "json"], None),
            Step(&["del", "a", "--prefix", "--prev-kv"], None),
            Step(&["del", "nothing"], None),
            Step(&["get", "", "--from-key", "-w", "json"], None),
            Step(&["put", "foo", "--ignore-value"], None),
            Step(&["put", "nokey", "--ignore-value"], None),
            Step(&["get", "foo", "--consistency=s"], None),
        ],
    );
}

#[test]
fn txns() {
    compare(
        "txn",
        &[
            Step(&["put", "k", "v1"], None),
            Step(&["txn"], Some("value(\"k\") = \"v1\"\n\nput k v2\nget k\n\nput k nope\n\n")),
            Step(&["txn"], Some("value(\"k\") = \"v1\"\n\nput k v2\n\nput k nope\nget k\n\n")),
            Step(&["txn"], Some("version(\"k\") > \"1\"\nmod(\"k\") < \"100\"\ncreate(\"k\") = \"2\"\n\ndel k\n\n\n")),
            Step(&["txn", "-w", "json"], Some("version(\"missing\") = \"0\"\n\nput m 1\n\n\n")),
            Step(&["txn"], Some("\n\nput d 1\nput d 2\n\n\n")),
            Step(&["txn"], Some("\n\nput d 1\ndel d\n\n\n")),
            Step(&["txn"], Some("value(\"absent\") = \"\"\n\nput x 1\n\nput y 1\n\n")),
            Step(&["get", "", "--from-key"], None),
        ],
    );
}

#[test]
fn compaction_and_watch_history() {
    compare(
        "compaction",
        &[
            Step(&["put", "w", "1"], None),
            Step(&["put", "w", "2"], None),
            Step(&["put", "w", "3"], None),
            Step(&["del", "w"], None),
            Step(&["watch", "w", "--rev=1", "--prev-kv"], None),
            Step(&["compaction", "3"], None),
            Step(&["compaction", "3"], None),
            Step(&["compaction", "99"], None),
            Step(&["get", "w", "--rev=2"], None),
            Step(&["get", "w", "--rev=3"], None),
            Step(&["get", "w", "--rev=4", "-w", "json"], None),
        ],
    );
}

#[test]
fn leases() {
    compare(
        "lease",
        &[
            Step(&["lease", "grant", "1"], None),
            Step(&["lease", "grant", "100"], None),
            Step(&["put", "k1", "v", "--lease=$LEASE"], None),
            Step(&["put", "k2", "v", "--lease=$LEASE"], None),
            Step(&["get", "k1", "-w", "json"], None),
            Step(&["lease", "timetolive", "$LEASE", "--keys"], None),
            Step(&["lease", "keep-alive", "--once", "$LEASE"], None),
            Step(&["lease", "revoke", "$LEASE"], None),
            Step(&["get", "k", "--prefix"], None),
            Step(&["lease", "timetolive", "$LEASE"], None),
            Step(&["lease", "revoke", "$LEASE"], None),
            Step(&["put", "k3", "v", "--lease=$LEASE"], None),
            Step(&["lease", "keep-alive", "--once", "$LEASE"], None),
        ],
    );
}

const TXN_129_PUTS: &str = "\n\nput t0 v\nput t1 v\nput t2 v\nput t3 v\nput t4 v\nput t5 v\nput t6 v\nput t7 v\nput t8 v\nput t9 v\nput t10 v\nput t11 v\nput t12 v\nput t13 v\nput t14 v\nput t15 v\nput t16 v\nput t17 v\nput t18 v\nput t19 v\nput t20 v\nput t21 v\nput t22 v\nput t23 v\nput t24 v\nput t25 v\nput t26 v\nput t27 v\nput t28 v\nput t29 v\nput t30 v\nput t31 v\nput t32 v\nput t33 v\nput t34 v\nput t35 v\nput t36 v\nput t37 v\nput t38 v\nput t39 v\nput t40 v\nput t41 v\nput t42 v\nput t43 v\nput t44 v\nput t45 v\nput t46 v\nput t47 v\nput t48 v\nput t49 v\nput t50 v\nput t51 v\nput t52 v\nput t53 v\nput t54 v\nput t55 v\nput t56 v\nput t57 v\nput t58 v\nput t59 v\nput t60 v\nput t61 v\nput t62 v\nput t63 v\nput t64 v\nput t65 v\nput t66 v\nput t67 v\nput t68 v\nput t69 v\nput t70 v\nput t71 v\nput t72 v\nput t73 v\nput t74 v\nput t75 v\nput t76 v\nput t77 v\nput t78 v\nput t79 v\nput t80 v\nput t81 v\nput t82 v\nput t83 v\nput t84 v\nput t85 v\nput t86 v\nput t87 v\nput t88 v\nput t89 v\nput t90 v\nput t91 v\nput t92 v\nput t93 v\nput t94 v\nput t95 v\nput t96 v\nput t97 v\nput t98 v\nput t99 v\nput t100 v\nput t101 v\nput t102 v\nput t103 v\nput t104 v\nput t105 v\nput t106 v\nput t107 v\nput t108 v\nput t109 v\nput t110 v\nput t111 v\nput t112 v\nput t113 v\nput t114 v\nput t115 v\nput t116 v\nput t117 v\nput t118 v\nput t119 v\nput t120 v\nput t121 v\nput t122 v\nput t123 v\nput t124 v\nput t125 v\nput t126 v\nput t127 v\nput t128 v\n\n\n";

#[test]
fn errors_limits_and_hashes() {
    compare(
        "errors",
        &[
            Step(&["txn"], Some(TXN_129_PUTS)),
            Step(&["get", "t127"], None),
            Step(&["put", "a", "1"], None),
            Step(&["put", "b", "2"], None),
            Step(&["del", "a"], None),
            Step(&["endpoint", "hashkv", "-w", "json"], None),
            Step(&["compaction", "2"], None),
            Step(&["endpoint", "hashkv", "-w", "json"], None),
            Step(&["lease", "grant", "9000000001"], None),
            Step(&["lease", "timetolive", "1234"], None),
            Step(&["lease", "keep-alive", "--once", "1234"], None),
            Step(&["member", "list", "-w", "json"], None),
            Step(&["alarm", "list"], None),
        ],
    );
}

#[test]
fn sorting_ranges_and_ignore_flags() {
    compare(
        "sorting",
        &[
            Step(&["put", "s/b", "2"], None),
            Step(&["put", "s/a", "3"], None),
            Step(&["put", "s/c", "1"], None),
            Step(&["put", "s/a", "4"], None),
            Step(
                &[
                    "get",
                    "s/",
                    "--prefix",
                    "--sort-by=CREATE",
                    "--order=DESCEND",
                ],
                None,
            ),
            Step(
                &[
                    "get",
                    "s/",
                    "--prefix",
                    "--sort-by=VERSION",
                    "--order=DESCEND",
                    "--limit=1",
                ],
                None,
            ),
            Step(&["get", "s/", "--prefix", "--sort-by=VALUE"], None),
            Step(&["get", "s/", "--prefix", "--order=DESCEND"], None),
            Step(
                &["get", "s/", "--prefix", "--limit=2", "-w", "fields"],
                None,
            ),
            Step(&["get", "s/", "--prefix", "--rev=3", "-w", "json"], None),
            Step(&["lease", "grant", "100"], None),
            Step(&["put", "s/b", "9", "--lease=$LEASE"], None),
            Step(&["put", "s/b", "10", "--ignore-lease"], None),
            Step(&["put", "s/b", "--ignore-value", "--ignore-lease"], None),
            Step(&["get", "s/b", "-w", "json"], None),
            Step(&["put", "s/d", "--ignore-lease"], None),
            Step(&["del", "s/b", "--from-key", "--prev-kv"], None),
            Step(&["get", "s/", "--prefix", "-w", "json"], None),
            Step(&["watch", "s/", "--prefix", "--rev=2"], None),
        ],
    );
}

#[test]
fn maintenance_outputs() {
    compare(
        "maintenance",
        &[
            Step(&["put", "m", "1"], None),
            Step(&["defrag"], None),
            Step(&["alarm", "list"], None),
            Step(&["alarm", "disarm"], None),
            Step(&["endpoint", "health"], None),
            Step(&["endpoint", "hashkv"], None),
            Step(&["get", "m", "--print-value-only"], None),
        ],
    );
}

#[test]
fn auth_users_roles_and_permissions() {
    const ROOT: &str = "--user=root:rootpw";
    const ALICE: &str = "--user=alice:alicepw";
    compare(
        "auth",
        &[
            // Refused without a root user (etcdctl itself adds the root
            // role when only that is missing).
            Step(&["auth", "enable"], None),
            Step(&["user", "add", "root:rootpw"], None),
            Step(&["role", "add", "root"], None),
            Step(&["user", "grant-role", "root", "root"], None),
            Step(&["user", "add", "root:again"], None),
            Step(&["user", "add", "alice:alicepw"], None),
            Step(&["user", "add", "bob", "--new-user-password=bobpw"], None),
            Step(&["role", "add", "r1"], None),
            Step(&["role", "add", "r1"], None),
            Step(
                &["role", "grant-permission", "r1", "readwrite", "foo"],
                None,
            ),
            Step(
                &[
                    "role",
                    "grant-permission",
                    "r1",
                    "read",
                    "pre/",
                    "--prefix=true",
                ],
                None,
            ),
            Step(
                &[
                    "role",
                    "grant-permission",
                    "r1",
                    "write",
                    "from",
                    "--from-key",
                ],
                None,
            ),
            Step(&["role", "grant-permission", "r1", "read", "a", "c"], None),
            Step(&["role", "grant-permission", "nobody", "read", "a"], None),
            Step(&["user", "grant-role", "alice", "r1"], None),
            Step(&["user", "grant-role", "alice", "nope"], None),
            Step(&["user", "grant-role", "nobody", "r1"], None),
            Step(&["role", "get", "r1"], None),
            Step(&["role", "get", "r1", "-w", "json"], None),
            Step(&["user", "get", "alice"], None),
            Step(&["user", "get", "alice", "--detail"], None),
            Step(&["user", "list"], None),
            Step(&["role", "list"], None),
            Step(&["auth", "enable"], None),
            // Auth on: no credentials, bad credentials, each permission.
            Step(&["put", "foo", "1"], None),
            Step(&["get", "foo"], None),
            Step(&["--user=alice:wrong", "get", "foo"], None),
            Step(&["--user=nobody:x", "get", "foo"], None),
            Step(&[ALICE, "put", "foo", "1"], None),
            Step(&[ALICE, "get", "foo"], None),
            Step(&[ALICE, "put", "bar", "1"], None),
            Step(&[ROOT, "put", "pre/a", "1"], None),
            Step(&[ALICE, "get", "pre/", "--prefix"], None),
            Step(&[ALICE, "get", "pre", "--prefix"], None),
            Step(&[ALICE, "put", "pre/b", "1"], None),
            Step(&[ALICE, "put", "fromzzz", "1"], None),
            Step(&[ALICE, "put", "frol", "1"], None),
            Step(&[ALICE, "get", "a", "c"], None),
            Step(&[ALICE, "get", "a", "d"], None),
            Step(&[ALICE, "del", "foo"], None),
            Step(&[ALICE, "del", "foo", "--prev-kv"], None),
            Step(
                &[ALICE, "txn"],
                Some("value(\"foo\") = \"1\"\n\nput foo 2\n\nput bar 2\n\n"),
            ),
            Step(
                &[ALICE, "txn"],
                Some("value(\"foo\") = \"1\"\n\nput foo 2\n\nget foo\n\n"),
            ),
            Step(
                &[ALICE, "txn"],
                Some("value(\"bar\") = \"1\"\n\nput foo 2\n\n\n"),
            ),
            // Watches need read permission on their range; a lease with
            // keys alice may not write cannot be revoked by her.
            Step(&[ALICE, "watch", "b"], None),
            Step(&[ALICE, "watch", "foo", "--rev=1"], None),
            Step(&[ROOT, "lease", "grant", "100"], None),
            Step(&[ROOT, "put", "b", "1", "--lease=$LEASE"], None),
            Step(&[ALICE, "put", "a", "2", "--lease=$LEASE"], None),
            Step(&[ALICE, "lease", "revoke", "$LEASE"], None),
            Step(&[ROOT, "lease", "revoke", "$LEASE"], None),
            // Management needs the root role.
            Step(&[ALICE, "user", "list"], None),
            Step(&[ALICE, "role", "list"], None),
            Step(&[ALICE, "user", "get", "alice"], None),
            Step(&[ALICE, "user", "get", "bob"], None),
            Step(&[ALICE, "role", "get", "r1"], None),
            Step(&[ALICE, "role", "get", "root"], None),
            Step(&[ALICE, "user", "add", "eve:evepw"], None),
            Step(&[ALICE, "auth", "disable"], None),
            Step(&[ALICE, "defrag"], None),
            Step(&[ALICE, "endpoint", "hashkv"], None),
            // Compaction is root's since etcd 3.6 (3.4, the etcd here,
            // let any user compact): root on both; alice's refusal is
            // auth::calls_that_etcd_3_7_guards_need_a_user_or_root.
            Step(&[ROOT, "compaction", "1"], None),
            Step(&[ROOT, "user", "delete", "root"], None),
            Step(&[ROOT, "role", "delete", "root"], None),
            Step(&[ROOT, "user", "revoke-role", "root", "root"], None),
            Step(&[ROOT, "user", "revoke-role", "alice", "r2"], None),
            Step(&[ROOT, "role", "revoke-permission", "r1", "nothere"], None),
            Step(&[ROOT, "role", "revoke-permission", "r1", "foo"], None),
            Step(&[ALICE, "get", "foo"], None),
            Step(
                &[
                    ROOT,
                    "role",
                    "revoke-permission",
                    "r1",
                    "pre/",
                    "--prefix=true",
                ],
                None,
            ),
            Step(
                &[
                    ROOT,
                    "role",
                    "revoke-permission",
                    "r1",
                    "from",
                    "--from-key",
                ],
                None,
            ),
            Step(&[ROOT, "role", "get", "r1"], None),
            Step(
                &[ROOT, "user", "passwd", "alice", "--interactive=false"],
                Some("newpw\n"),
            ),
            Step(&[ALICE, "get", "a"], None),
            Step(&["--user=alice:newpw", "get", "a"], None),
            Step(&[ROOT, "role", "delete", "r1"], None),
            Step(&[ROOT, "user", "get", "alice"], None),
            Step(&[ROOT, "user", "delete", "bob"], None),
            Step(&[ROOT, "user", "delete", "bob"], None),
            Step(&[ROOT, "user", "list"], None),
            Step(&[ROOT, "auth", "disable"], None),
            Step(&["put", "foo", "3"], None),
            Step(&["user", "list"], None),
            Step(&["--user=root:rootpw", "get", "foo"], None),
        ],
    );
}
