//! `strata-util waldump DIR`: the segments and records of a WAL directory
//! (like etcd-dump-logs), read-only, without locking or repairing.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use strata_engine::wal::dump::scan;
use strata_engine::wal::record::{ENTRY_CONF_CHANGE, ENTRY_CONF_CHANGE_V2, ENTRY_NORMAL};
use strata_engine::wal::Record;

use crate::display::hex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EntryKind {
    Normal,
    ConfChange,
    ConfChangeV2,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::Normal => ENTRY_NORMAL,
            EntryKind::ConfChange => ENTRY_CONF_CHANGE,
            EntryKind::ConfChangeV2 => ENTRY_CONF_CHANGE_V2,
        }
    }
}

fn entry_type_name(t: u8) -> String {
    match t {
        ENTRY_NORMAL => "normal".into(),
        ENTRY_CONF_CHANGE => "confchange".into(),
        ENTRY_CONF_CHANGE_V2 => "confchangev2".into(),
        other => format!("type{other}"),
    }
}

#[derive(Args, Debug)]
pub struct WalDumpArgs {
    /// The WAL directory (e.g. DATA_DIR/member/wal).
    dir: std::path::PathBuf,
    /// Only entries with index >= this.
    #[arg(long)]
    start_index: Option<u64>,
    /// Only entries with index <= this.
    #[arg(long)]
    end_index: Option<u64>,
    /// Only entries of these types (repeat or comma-separate); other
    /// records are shown unless --entries-only.
    #[arg(long, value_enum, value_delimiter = ',')]
    entry_type: Vec<EntryKind>,
    /// Show only entry records.
    #[arg(long)]
    entries_only: bool,
    /// Print entry data in hex.
    #[arg(long)]
    raw: bool,
}

/// A key or value as text: printable ASCII as is, other bytes escaped.
fn show(b: &[u8]) -> String {
    let mut out = String::from("\"");
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out.push('"');
    out
}

/// A normal entry of a strata member, decoded: its request id and what it
/// asks (like etcd-dump-logs' request column).
pub fn describe_request(data: &[u8]) -> String {
    use prost::Message;
    use strata_proto::etcdserverpb::InternalRaftRequest;
    if data.is_empty() {
        return "(empty: a new leader's entry)".into();
    }
    let Ok(r) = InternalRaftRequest::decode(data) else {
        return "(not a strata request)".into();
    };
    let (id, user) = r
        .header
        .as_ref()
        .map_or((0, String::new()), |h| (h.id, h.username.clone()));
    let what = if let Some(p) = &r.put {
        format!(
            "put key={} value_size={} lease={}{}",
            show(&p.key),
            p.value.len(),
            p.lease,
            if p.prev_kv { " prev_kv" } else { "" }
        )
    } else if let Some(d) = &r.delete_range {
        format!(
            "delete_range key={} range_end={}",
            show(&d.key),
            show(&d.range_end)
        )
    } else if let Some(t) = &r.txn {
        format!(
            "txn compare={} success={} failure={}",
            t.compare.len(),
            t.success.len(),
            t.failure.len()
        )
    } else if let Some(c) = &r.compaction {
        format!("compaction revision={} physical={}", c.revision, c.physical)
    } else if let Some(g) = &r.lease_grant {
        format!("lease_grant id={:x} ttl={}", g.id, g.ttl)
    } else if let Some(v) = &r.lease_revoke {
        format!("lease_revoke id={:x}", v.id)
    } else if let Some(a) = &r.alarm {
        format!(
            "alarm action={} member={:x} alarm={}",
            a.action, a.member_id, a.alarm
        )
    } else if let Some(c) = &r.lease_checkpoint {
        format!("lease_checkpoint leases={}", c.checkpoints.len())
    } else if let Some(m) = &r.member_attr {
        format!("member_attr member={:x} name={}", m.member_id, m.name)
    } else if let Some(what) = auth_request(&r) {
        what
    } else {
        "(no request)".into()
    };
    if user.is_empty() {
        format!("id={id:x} {what}")
    } else {
        format!("id={id:x} user={user} {what}")
    }
}

/// An auth request, by name and subject; passwords and hashes are never
/// shown.
fn auth_request(r: &strata_proto::etcdserverpb::InternalRaftRequest) -> Option<String> {
    let s = if r.auth_enable.is_some() {
        "auth_enable".to_string()
    } else if r.auth_disable.is_some() {
        "auth_disable".to_string()
    } else if let Some(a) = &r.authenticate {
        format!("authenticate name={}", a.name)
    } else if let Some(u) = &r.auth_user_add {
        format!("auth_user_add name={}", u.name)
    } else if let Some(u) = &r.auth_user_delete {
        format!("auth_user_delete name={}", u.name)
    } else if let Some(u) = &r.auth_user_change_password {
        format!("auth_user_change_password name={}", u.name)
    } else if let Some(g) = &r.auth_user_grant_role {
        format!("auth_user_grant_role user={} role={}", g.user, g.role)
    } else if let Some(g) = &r.auth_user_revoke_role {
        format!("auth_user_revoke_role user={} role={}", g.name, g.role)
    } else if let Some(a) = &r.auth_role_add {
        format!("auth_role_add name={}", a.name)
    } else if let Some(d) = &r.auth_role_delete {
        format!("auth_role_delete name={}", d.role)
    } else if let Some(g) = &r.auth_role_grant_permission {
        let key = g.perm.as_ref().map(|p| show(&p.key)).unwrap_or_default();
        format!("auth_role_grant_permission role={} key={key}", g.name)
    } else if let Some(v) = &r.auth_role_revoke_permission {
        format!(
            "auth_role_revoke_permission role={} key={}",
            v.role,
            show(&v.key)
        )
    } else {
        return None;
    };
    Some(s)
}

pub fn run(a: &WalDumpArgs) -> Result<ExitCode> {
    let segments = scan(Path::new(&a.dir))?;
    if segments.is_empty() {
        anyhow::bail!("{}: no WAL segments", a.dir.display());
    }
    let (mut entries, mut problems) = (0u64, 0);
    for seg in &segments {
        println!(
            "segment {} (seq {}, first index {}): {} bytes, records end at {}",
            seg.path.display(),
            seg.name.seq,
            seg.name.first_index,
            seg.file_len,
            seg.end
        );
        println!(
            "{:>10}  {:<9} {:>10} {:>6}  {:<13} {:>8}  REQUEST",
            "OFFSET", "TYPE", "INDEX", "TERM", "ENTRY TYPE", "SIZE"
        );
        for r in &seg.records {
            let line = match &r.record {
                Record::Entry(e) => {
                    let in_range = a.start_index.is_none_or(|s| e.index >= s)
                        && a.end_index.is_none_or(|x| e.index <= x);
                    let typed = a.entry_type.is_empty()
                        || a.entry_type.iter().any(|k| k.code() == e.entry_type);
                    if !in_range || !typed {
                        continue;
                    }
                    entries += 1;
                    let mut s = format!(
                        "{:>10}  {:<9} {:>10} {:>6}  {:<13} {:>8}",
                        r.offset,
                        "entry",
                        e.index,
                        e.term,
                        entry_type_name(e.entry_type),
                        e.data.len()
                    );
                    if e.entry_type == 0 {
                        s.push_str("  ");
                        s.push_str(&describe_request(&e.data));
                    }
                    if a.raw {
                        s.push_str("  ");
                        s.push_str(&hex(&e.data));
                    }
                    s
                }
                _ if a.entries_only => continue,
                Record::Crc(c) => format!("{:>10}  {:<9} continues crc {c:#010x}", r.offset, "crc"),
                Record::Metadata(m) => {
                    format!(
                        "{:>10}  {:<9} member {:x} cluster {:x}",
                        r.offset, "metadata", m.member_id, m.cluster_id
                    )
                }
                Record::State(h) => {
                    format!(
                        "{:>10}  {:<9} term {} vote {:x} commit {}",
                        r.offset, "state", h.term, h.vote, h.commit
                    )
                }
                Record::Snapshot(s) => format!(
                    "{:>10}  {:<9} {:>10} {:>6}  voters {:?} learners {:?}",
                    r.offset,
                    "snapshot",
                    s.index,
                    s.term,
                    s.conf_state.voters,
                    s.conf_state.learners
                ),
            };
            println!("{line}");
        }
        if let Some(p) = &seg.problem {
            problems += 1;
            println!("PROBLEM: {p}");
        }
        println!();
    }
    println!(
        "{} segment(s), {entries} entries shown, {problems} problem(s)",
        segments.len()
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use strata_proto::etcdserverpb as pb;

    #[test]
    fn requests_are_described() {
        let r = pb::InternalRaftRequest {
            header: Some(pb::RequestHeader {
                id: 0xab,
                ..Default::default()
            }),
            put: Some(pb::PutRequest {
                key: b"k\x01".to_vec(),
                value: b"vvv".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            describe_request(&r.encode_to_vec()),
            "id=ab put key=\"k\\x01\" value_size=3 lease=0"
        );
        assert_eq!(describe_request(&[]), "(empty: a new leader's entry)");
        assert_eq!(describe_request(&[0xff, 0xff]), "(not a strata request)");
    }
}
