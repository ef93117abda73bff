//! The payload of a committed conf change entry, decoded by prost from our
//! description of raft's wire format (`peerpb::ConfChange`,
//! `peerpb::ConfChangeV2`: same field numbers) and converted to raft-rs's
//! types. Entries reach a member from its leader over a socket and come
//! back from the WAL; neither path hands their bytes to the protobuf 2
//! codec raft 0.7 carries (DESIGN.md, peers; RUSTSEC-2024-0437). An unknown
//! change type or transition is an error, never a guess.

use prost::Message as _;
use protobuf::ProtobufEnum;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2,
};
use strata_proto::peerpb as p;

fn change_type(v: i32) -> Result<ConfChangeType, String> {
    ConfChangeType::from_i32(v).ok_or_else(|| format!("unknown conf change type {v}"))
}

/// An `EntryConfChange` payload.
pub fn decode_v1(data: &[u8]) -> Result<ConfChange, String> {
    let m = p::ConfChange::decode(data).map_err(|e| e.to_string())?;
    Ok(ConfChange {
        id: m.id,
        change_type: change_type(m.change_type)?,
        node_id: m.node_id,
        context: m.context.into(),
        ..Default::default()
    })
}

/// An `EntryConfChangeV2` payload.
pub fn decode_v2(data: &[u8]) -> Result<ConfChangeV2, String> {
    let m = p::ConfChangeV2::decode(data).map_err(|e| e.to_string())?;
    let changes = m
        .changes
        .into_iter()
        .map(|c| {
            Ok(ConfChangeSingle {
                change_type: change_type(c.change_type)?,
                node_id: c.node_id,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ConfChangeV2 {
        transition: ConfChangeTransition::from_i32(m.transition)
            .ok_or_else(|| format!("unknown conf change transition {}", m.transition))?,
        changes: changes.into(),
        context: m.context.into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_s_own_bytes_decode_to_the_same_changes() {
        let v1 = ConfChange {
            id: 9,
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 0x1234,
            context: b"peer-urls".to_vec().into(),
            ..Default::default()
        };
        let bytes = protobuf::Message::write_to_bytes(&v1).unwrap();
        assert_eq!(decode_v1(&bytes).unwrap(), v1);

        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::RemoveNode);
        single.set_node_id(7);
        let v2 = ConfChangeV2 {
            transition: ConfChangeTransition::Explicit,
            changes: vec![single].into(),
            context: b"ctx".to_vec().into(),
            ..Default::default()
        };
        let bytes = protobuf::Message::write_to_bytes(&v2).unwrap();
        assert_eq!(decode_v2(&bytes).unwrap(), v2);
    }

    #[test]
    fn garbage_and_unknown_values_are_errors() {
        assert!(decode_v1(&[0xff, 0xff, 0xff]).is_err());
        let bad = p::ConfChange {
            change_type: 42,
            ..Default::default()
        };
        assert!(decode_v1(&bad.encode_to_vec()).is_err());
        let bad = p::ConfChangeV2 {
            transition: 9,
            ..Default::default()
        };
        assert!(decode_v2(&bad.encode_to_vec()).is_err());
    }
}
