//! Membership changes as raft carries them, and etcd's checks on them.
//!
//! A change is a raft `ConfChange` (v1) whose `id` is the proposing
//! request's id and whose `context` is the member (`etcdserverpb.Member`,
//! prost-encoded):
//! - `AddNode` of an id the cluster does not have: a new voter;
//! - `AddLearnerNode`: a new learner;
//! - `AddNode` of a learner: its promotion;
//! - `RemoveNode`: a removal (context: the id alone).
//!
//! The context also carries the proposer's `--max-learners` (field 100 of
//! a `LearnerLimit` appended to the member's bytes: a decoder of
//! `Member` skips it), so the learner limit every member checks is the
//! entry's, not its own flag. A context without it (written by an older
//! strata) is checked against the applying member's flag.
//!
//! Peer URL updates are not raft configuration changes (raft has no such
//! change); they travel as normal entries (`MemberUpdateRequest`).
//!
//! [`validate`] is etcd's ValidateConfigurationChange, run by every member
//! when the entry applies, against the membership the entries before it
//! made: every member reaches the same verdict, and a refused change
//! touches neither the membership nor raft's configuration.

use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use strata_proto::etcdserverpb as pb;

use super::{Member, Membership};
use crate::errors::EtcdError;

/// What a conf change entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(Member),
    Promote(u64),
    Remove(u64),
}

impl Change {
    pub fn node_id(&self) -> u64 {
        match self {
            Change::Add(m) => m.id,
            Change::Promote(id) | Change::Remove(id) => *id,
        }
    }
}

/// The proposer's learner limit, appended to a conf change's context.
#[derive(Clone, PartialEq, prost::Message)]
struct LearnerLimit {
    #[prost(uint64, optional, tag = "100")]
    max_learners: Option<u64>,
}

/// The raft conf change that proposes `c` for request `request_id`, with
/// the proposer's learner limit.
pub fn encode(request_id: u64, c: &Change, max_learners: usize) -> ConfChange {
    let (change_type, node_id, context) = match c {
        Change::Add(m) => (
            if m.is_learner {
                ConfChangeType::AddLearnerNode
            } else {
                ConfChangeType::AddNode
            },
            m.id,
            m.to_pb().encode_to_vec(),
        ),
        Change::Promote(id) => (
            ConfChangeType::AddNode,
            *id,
            pb::Member {
                id: *id,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        Change::Remove(id) => (
            ConfChangeType::RemoveNode,
            *id,
            pb::Member {
                id: *id,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    };
    let mut context = context;
    LearnerLimit {
        max_learners: Some(max_learners as u64),
    }
    .encode(&mut context)
    .expect("a Vec grows as needed");
    ConfChange {
        id: request_id,
        change_type,
        node_id,
        context: context.into(),
        ..Default::default()
    }
}

/// Reads a committed conf change against the current membership (an
/// `AddNode` of a learner is its promotion), with the learner limit its
/// proposer carried (None: an older entry without one).
pub fn decode(cc: &ConfChange, members: &Membership) -> Result<(Change, Option<usize>), String> {
    let ctx = pb::Member::decode(cc.context.as_ref()).map_err(|e| e.to_string())?;
    let limit = LearnerLimit::decode(cc.context.as_ref())
        .map_err(|e| e.to_string())?
        .max_learners
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if ctx.id != cc.node_id {
        return Err(format!(
            "conf change for {:x} carries member {:x}",
            cc.node_id, ctx.id
        ));
    }
    let change = match cc.change_type {
        ConfChangeType::RemoveNode => Change::Remove(cc.node_id),
        ConfChangeType::AddNode if members.get(cc.node_id).is_some_and(|m| m.is_learner) => {
            Change::Promote(cc.node_id)
        }
        ConfChangeType::AddNode => Change::Add(Member::from_pb(pb::Member {
            is_learner: false,
            ..ctx
        })),
        ConfChangeType::AddLearnerNode => Change::Add(Member::from_pb(pb::Member {
            is_learner: true,
            ..ctx
        })),
    };
    Ok((change, limit))
}

/// Whether `c` may apply to `members` (etcd's checks and errors). A
/// second add of a member the cluster already has, with the same peer
/// URLs and role, is accepted and changes nothing (a retried proposal).
pub fn validate(c: &Change, members: &Membership, max_learners: usize) -> Result<(), EtcdError> {
    let id = c.node_id();
    if members.is_removed(id) {
        return Err(EtcdError::MemberNotFound);
    }
    match c {
        Change::Add(m) => {
            if let Some(have) = members.get(id) {
                if have.peer_urls == m.peer_urls && have.is_learner == m.is_learner {
                    return Ok(());
                }
                return Err(EtcdError::MemberExists);
            }
            let taken = members
                .list()
                .iter()
                .any(|o| o.peer_urls.iter().any(|u| m.peer_urls.contains(u)));
            if taken {
                return Err(EtcdError::PeerUrlExists);
            }
            if m.is_learner
                && members.list().iter().filter(|o| o.is_learner).count() >= max_learners
            {
                return Err(EtcdError::TooManyLearners);
            }
            Ok(())
        }
        Change::Promote(id) => match members.get(*id) {
            None => Err(EtcdError::MemberNotFound),
            Some(m) if !m.is_learner => Err(EtcdError::MemberNotLearner),
            Some(_) => Ok(()),
        },
        Change::Remove(id) => {
            if members.get(*id).is_none() {
                return Err(EtcdError::MemberNotFound);
            }
            Ok(())
        }
    }
}

/// Applies a validated change to the membership; the member as it is now
/// (None for a removal).
pub fn apply(c: &Change, members: &Membership) -> Option<Member> {
    match c {
        Change::Add(m) => {
            if members.get(m.id).is_none() {
                members.add(m.clone());
            }
            members.get(m.id)
        }
        Change::Promote(id) => members.promote(*id),
        Change::Remove(id) => {
            members.remove(*id);
            None
        }
    }
}

/// A majority of `n` voters.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// etcd's IsReadyToAddVotingMember: after adding one more voter, the
/// started voters still make a quorum (or the cluster is one started
/// member growing to two, the restore case).
pub fn ready_to_add_voter(members: &Membership) -> bool {
    let voters: Vec<Member> = members
        .list()
        .into_iter()
        .filter(|m| !m.is_learner)
        .collect();
    let started = voters.iter().filter(|m| m.started()).count();
    let n = voters.len() + 1;
    if started == 1 && n == 2 {
        return true;
    }
    started >= quorum(n)
}

/// etcd's IsReadyToRemoveVotingMember: the started voters left make a
/// quorum of the voters left.
pub fn ready_to_remove_voter(members: &Membership, id: u64) -> bool {
    let rest: Vec<Member> = members
        .list()
        .into_iter()
        .filter(|m| !m.is_learner && m.id != id)
        .collect();
    let started = rest.iter().filter(|m| m.started()).count();
    started >= quorum(rest.len())
}

/// etcd's IsReadyToPromoteMember: the started voters, with the learner
/// counted as a started voter, make a quorum of the voters after it.
pub fn ready_to_promote(members: &Membership, _id: u64) -> bool {
    let voters: Vec<Member> = members
        .list()
        .into_iter()
        .filter(|m| !m.is_learner)
        .collect();
    let started = voters.iter().filter(|m| m.started()).count() + 1;
    let n = voters.len() + 1;
    started >= quorum(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, learner: bool) -> Member {
        Member {
            id,
            name: format!("m{id}"),
            peer_urls: vec![url.to_string()],
            client_urls: Vec::new(),
            is_learner: learner,
        }
    }

    #[test]
    fn changes_round_trip_through_raft_s_conf_change() {
        let ms = Membership::new(vec![
            member(1, "http://a:1", false),
            member(2, "http://b:1", true),
        ]);
        for c in [
            Change::Add(member(3, "http://c:1", false)),
            Change::Add(member(4, "http://d:1", true)),
            Change::Promote(2),
            Change::Remove(1),
        ] {
            let (mut got, limit) = decode(&encode(7, &c, 3), &ms).unwrap();
            assert_eq!(limit, Some(3), "the proposer's learner limit travels");
            if let (Change::Add(g), Change::Add(w)) = (&mut got, &c) {
                assert_eq!(g.id, w.id);
                assert_eq!(g.peer_urls, w.peer_urls);
                assert_eq!(g.is_learner, w.is_learner);
                continue;
            }
            assert_eq!(got, c);
        }
    }

    #[test]
    fn a_context_without_a_learner_limit_still_decodes() {
        let ms = Membership::new(vec![member(1, "http://a:1", false)]);
        let m = member(3, "http://c:1", true);
        let cc = ConfChange {
            id: 7,
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 3,
            context: m.to_pb().encode_to_vec().into(),
            ..Default::default()
        };
        let (got, limit) = decode(&cc, &ms).unwrap();
        assert_eq!(got.node_id(), 3);
        assert_eq!(limit, None);
    }

    #[test]
    fn etcd_s_refusals() {
        let ms = Membership::new(vec![
            member(1, "http://a:1", false),
            member(2, "http://b:1", true),
        ]);
        let v = |c: Change| validate(&c, &ms, 1);
        assert_eq!(
            v(Change::Add(member(1, "http://z:1", false))),
            Err(EtcdError::MemberExists)
        );
        assert_eq!(v(Change::Add(member(1, "http://a:1", false))), Ok(()));
        assert_eq!(
            v(Change::Add(member(3, "http://a:1", false))),
            Err(EtcdError::PeerUrlExists)
        );
        assert_eq!(
            v(Change::Add(member(3, "http://c:1", true))),
            Err(EtcdError::TooManyLearners)
        );
        assert_eq!(v(Change::Add(member(3, "http://c:1", false))), Ok(()));
        assert_eq!(v(Change::Promote(1)), Err(EtcdError::MemberNotLearner));
        assert_eq!(v(Change::Promote(9)), Err(EtcdError::MemberNotFound));
        assert_eq!(v(Change::Promote(2)), Ok(()));
        assert_eq!(v(Change::Remove(9)), Err(EtcdError::MemberNotFound));
        ms.remove(1);
        assert_eq!(
            v(Change::Add(member(1, "http://a:1", false))),
            Err(EtcdError::MemberNotFound)
        );
    }

    #[test]
    fn started_quorums() {
        let mut a = member(1, "http://a:1", false);
        let ms = Membership::new(vec![a.clone()]);
        // One started member may grow to two (restoring a cluster).
        assert!(ready_to_add_voter(&ms));
        a.id = 2;
        a.name.clear();
        a.peer_urls = vec!["http://b:1".into()];
        ms.add(a);
        // Two voters, one started: a third would leave 1 of 3 started.
        assert!(!ready_to_add_voter(&ms));
        assert!(ready_to_remove_voter(&ms, 2));
        assert!(!ready_to_remove_voter(&ms, 1));
    }
}
