//! raft-rs's messages (protobuf 2 structs) to and from our prost
//! description of the same wire format. Peer bytes are decoded by prost
//! only; a message type or entry type raft does not know is refused here.

use protobuf::ProtobufEnum;
use raft::eraftpb as r;
use strata_proto::peerpb as p;

fn conf_to_pb(c: &r::ConfState) -> p::ConfState {
    p::ConfState {
        voters: c.voters.clone(),
        learners: c.learners.clone(),
        voters_outgoing: c.voters_outgoing.clone(),
        learners_next: c.learners_next.clone(),
        auto_leave: c.auto_leave,
    }
}

fn conf_from_pb(c: p::ConfState) -> r::ConfState {
    r::ConfState {
        voters: c.voters,
        learners: c.learners,
        voters_outgoing: c.voters_outgoing,
        learners_next: c.learners_next,
        auto_leave: c.auto_leave,
        ..Default::default()
    }
}

fn entry_to_pb(e: &r::Entry) -> p::Entry {
    p::Entry {
        entry_type: e.entry_type.value(),
        term: e.term,
        index: e.index,
        data: e.data.to_vec(),
        sync_log: e.sync_log,
        context: e.context.to_vec(),
    }
}

/// A conf change payload from a peer, rewritten from what prost decoded:
/// raft-rs itself parses the payload of a proposed conf change with its
/// protobuf 2 codec (when a leader steps a forwarded MsgPropose), so only
/// canonical bytes of known fields, never a peer's own bytes, may reach
/// it. Undecodable payloads are refused.
fn canonical_conf_change(kind: r::EntryType, data: Vec<u8>) -> Result<Vec<u8>, String> {
    use prost::Message as _;
    Ok(match kind {
        r::EntryType::EntryConfChange => p::ConfChange::decode(data.as_slice())
            .map_err(|e| format!("conf change entry: {e}"))?
            .encode_to_vec(),
        r::EntryType::EntryConfChangeV2 => p::ConfChangeV2::decode(data.as_slice())
            .map_err(|e| format!("conf change entry: {e}"))?
            .encode_to_vec(),
        r::EntryType::EntryNormal => data,
    })
}

fn entry_from_pb(e: p::Entry) -> Result<r::Entry, String> {
    let entry_type = r::EntryType::from_i32(e.entry_type)
        .ok_or_else(|| format!("unknown entry type {}", e.entry_type))?;
    Ok(r::Entry {
        entry_type,
        term: e.term,
        index: e.index,
        data: canonical_conf_change(entry_type, e.data)?.into(),
        sync_log: e.sync_log,
        context: e.context.into(),
        ..Default::default()
    })
}

/// Ours, for the wire.
pub fn to_pb(m: &r::Message) -> p::Message {
    p::Message {
        msg_type: m.msg_type.value(),
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.iter().map(entry_to_pb).collect(),
        commit: m.commit,
        snapshot: m.snapshot.as_ref().map(|s| p::Snapshot {
            data: s.data.to_vec(),
            metadata: s.metadata.as_ref().map(|md| p::SnapshotMetadata {
                conf_state: md.conf_state.as_ref().map(conf_to_pb),
                index: md.index,
                term: md.term,
            }),
        }),
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.to_vec(),
        request_snapshot: m.request_snapshot,
        deprecated_priority: m.deprecated_priority,
        commit_term: m.commit_term,
        priority: m.priority,
    }
}

/// raft's, from the wire; an unknown message or entry type is an error.
pub fn from_pb(m: p::Message) -> Result<r::Message, String> {
    let snapshot = m.snapshot.map(|s| r::Snapshot {
        data: s.data.into(),
        metadata: s
            .metadata
            .map(|md| r::SnapshotMetadata {
                conf_state: md.conf_state.map(conf_from_pb).into(),
                index: md.index,
                term: md.term,
                ..Default::default()
            })
            .into(),
        ..Default::default()
    });
    Ok(r::Message {
        msg_type: r::MessageType::from_i32(m.msg_type)
            .ok_or_else(|| format!("unknown raft message type {}", m.msg_type))?,
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        commit: m.commit,
        commit_term: m.commit_term,
        snapshot: snapshot.into(),
        request_snapshot: m.request_snapshot,
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.into(),
        deprecated_priority: m.deprecated_priority,
        priority: m.priority,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_raft_s_own_bytes() {
        let e = r::Entry {
            index: 41,
            term: 7,
            data: b"put".to_vec().into(),
            ..Default::default()
        };
        let m = r::Message {
            msg_type: r::MessageType::MsgAppend,
            to: 2,
            from: 1,
            term: 7,
            index: 40,
            commit: 39,
            entries: vec![e].into(),
            context: b"ctx".to_vec().into(),
            ..Default::default()
        };
        let ours = to_pb(&m);
        let back = from_pb(ours.clone()).unwrap();
        assert_eq!(back, m);
        // The same bytes as raft's own codec: our description is its wire
        // format.
        let raft_bytes = protobuf::Message::write_to_bytes(&m).unwrap();
        let decoded = <p::Message as prost::Message>::decode(raft_bytes.as_slice()).unwrap();
        assert_eq!(decoded, ours);
        let mut bad = ours;
        bad.msg_type = 99;
        assert!(from_pb(bad).is_err());
    }

    #[test]
    fn conf_change_payloads_are_rewritten_canonically_or_refused() {
        use prost::Message as _;
        let cc = p::ConfChange {
            id: 1,
            change_type: 0,
            node_id: 5,
            context: b"x".to_vec(),
        };
        // A known payload plus an unknown field (tag 15, varint 1).
        let mut data = cc.encode_to_vec();
        data.extend_from_slice(&[0x78, 0x01]);
        let entry = |data: Vec<u8>| p::Entry {
            entry_type: r::EntryType::EntryConfChange.value(),
            data,
            ..Default::default()
        };
        let got = entry_from_pb(entry(data)).unwrap();
        assert_eq!(got.data.to_vec(), cc.encode_to_vec());
        assert!(entry_from_pb(entry(vec![0xff, 0xff, 0xff])).is_err());
        // Normal entries keep their bytes.
        let normal = p::Entry {
            data: vec![0xff, 0xff],
            ..Default::default()
        };
        assert_eq!(
            entry_from_pb(normal).unwrap().data.to_vec(),
            vec![0xff, 0xff]
        );
    }
}
