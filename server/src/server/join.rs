//! Joining a running cluster (`--initial-cluster-state existing`, a data
//! dir without a WAL): the member asks the peers named in
//! `--initial-cluster` (other than itself) who the cluster is, checks that
//! the cluster's members are the ones `--initial-cluster` names (etcd's
//! ValidateClusterAndAssignIDs), and takes its id and the cluster id from
//! the answer. It then starts with an empty log: the leader, whose log
//! starts after a snapshot marker, sends it a db snapshot with the
//! membership and raft's configuration.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context};
use strata_proto::peerpb as p;

use crate::statemachine::membership::Member;
use crate::transport::tls::dial::Dialer;

/// What the cluster told a joining member.
#[derive(Debug, Clone)]
pub struct Joined {
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Vec<Member>,
    pub removed: Vec<u64>,
}

fn from_info(m: p::MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_urls: m.peer_urls,
        client_urls: m.client_urls,
        is_learner: m.is_learner,
    }
}

pub fn to_info(m: &Member) -> p::MemberInfo {
    p::MemberInfo {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

/// Asks each of `urls` in turn (for up to `within`) for the cluster.
async fn ask(
    dialer: &Dialer,
    urls: &[String],
    within: Duration,
) -> anyhow::Result<p::MembersAnswer> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("no peer URLs to ask");
    loop {
        for u in urls {
            match crate::transport::peer::client::connect(dialer, u).await {
                Some(mut c) => match c.members(p::MembersAsk {}).await {
                    Ok(a) => return Ok(a.into_inner()),
                    Err(e) => last = format!("{u}: {}", e.message()),
                },
                None => last = format!("{u}: cannot connect"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("could not retrieve cluster information from the given URLs ({last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn url_set(ms: &[Member]) -> BTreeSet<Vec<String>> {
    ms.iter()
        .map(|m| {
            let mut u = m.peer_urls.clone();
            u.sort();
            u
        })
        .collect()
}

/// Checks the remote membership against `--initial-cluster` and finds
/// this member (by `my_urls`, its advertised peer URLs) in it.
pub fn validate(remote: &[Member], local: &[Member], my_urls: &[String]) -> anyhow::Result<u64> {
    if remote.len() != local.len() {
        bail!(
            "error validating peerURLs {:?}: member count is unequal",
            remote.iter().map(|m| &m.peer_urls).collect::<Vec<_>>()
        );
    }
    if url_set(remote) != url_set(local) {
        bail!(
            "error validating peerURLs {:?}: unmatched member while checking PeerURLs",
            remote.iter().map(|m| &m.peer_urls).collect::<Vec<_>>()
        );
    }
    let mut mine = my_urls.to_vec();
    mine.sort();
    remote
        .iter()
        .find(|m| {
            let mut u = m.peer_urls.clone();
            u.sort();
            u == mine
        })
        .map(|m| m.id)
        .context("this member's --initial-advertise-peer-urls are not a member of the cluster (was it added with `member add`?)")
}

/// Joins the cluster `local` (`--initial-cluster`) names.
pub async fn join(
    dialer: &Dialer,
    local: &[Member],
    my_urls: &[String],
    within: Duration,
) -> anyhow::Result<Joined> {
    let others: Vec<String> = local
        .iter()
        .flat_map(|m| m.peer_urls.iter())
        .filter(|u| !my_urls.contains(u))
        .cloned()
        .collect();
    let a = ask(dialer, &others, within).await?;
    let members: Vec<Member> = a.members.into_iter().map(from_info).collect();
    let member_id = validate(&members, local, my_urls)?;
    if a.removed.contains(&member_id) {
        bail!("the member has been permanently removed from the cluster");
    }
    Ok(Joined {
        cluster_id: a.cluster_id,
        member_id,
        members,
        removed: a.removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, url: &str) -> Member {
        Member {
            id,
            name: String::new(),
            peer_urls: vec![url.into()],
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    #[test]
    fn the_joining_member_is_found_by_its_urls() {
        let remote = vec![m(1, "http://a:1"), m(2, "http://b:1")];
        let local = vec![m(9, "http://b:1"), m(8, "http://a:1")];
        assert_eq!(
            validate(&remote, &local, &["http://b:1".into()]).unwrap(),
            2
        );
        let e = validate(&remote, &local[..1], &["http://b:1".into()]).unwrap_err();
        assert!(e.to_string().contains("member count is unequal"), "{e}");
        let other = vec![m(9, "http://b:1"), m(8, "http://c:1")];
        let e = validate(&remote, &other, &["http://b:1".into()]).unwrap_err();
        assert!(e.to_string().contains("unmatched member"), "{e}");
        assert!(validate(&remote, &local, &["http://z:1".into()]).is_err());
    }
}
