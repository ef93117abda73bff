//! Membership changes a client asks for (MemberAdd, MemberRemove,
//! MemberUpdate, MemberPromote): etcd's checks before proposing, then the
//! proposal, answered once this member applied it.
//!
//! With `--strict-reconfig-check` (on by default) a change that would
//! leave too few started members for a quorum is refused ("not enough
//! started members"), and so is one made while this member has not heard
//! from every voter lately ("unhealthy cluster"), as etcd refuses them.
//! Only the leader knows whether a learner has caught up, so a promotion
//! asked of a follower is forwarded to the leader.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_proto::peerpb;

use crate::errors::EtcdError;
use crate::raftnode::Input;
use crate::server::EtcdServer;
use crate::statemachine::membership::change::{self, Change};
use crate::statemachine::membership::{member_id, Member};
use crate::statemachine::state::Applied;

/// etcd's HealthInterval: a peer heard from this recently is active.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Peer URLs as a member add or update gives them: each must be a URL
/// with a scheme and host:port (etcd: "given member URLs are invalid").
fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for u in urls {
        crate::urls::parse_urls("peer-urls", u).map_err(|_| EtcdError::MemberBadUrls)?;
    }
    Ok(())
}

/// A definitive answer of the leader to a forwarded promotion.
fn promote_error(message: &str) -> Option<EtcdError> {
    [
        EtcdError::LearnerNotReady,
        EtcdError::MemberNotFound,
        EtcdError::MemberNotLearner,
        EtcdError::NotEnoughStarted,
    ]
    .into_iter()
    .find(|e| e.to_string() == message)
}

impl EtcdServer {
    async fn propose_change(&self, c: Change) -> Result<Applied, EtcdError> {
        self.check_running()?;
        let id = self.next_id();
        let cc = change::encode(id, &c, self.cfg.max_learners);
        let rx = self.shared.waiters.register(id);
        if let Err(e) = self.send(Input::ProposeConfChange(cc)) {
            self.shared.waiters.cancel(id);
            return Err(e);
        }
        match tokio::time::timeout(self.request_timeout(), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.shared.waiters.cancel(id);
                Err(EtcdError::Timeout)
            }
        }
    }

    /// Voters this member has been connected to for the last health
    /// interval, itself included.
    fn active_voters(&self) -> (usize, usize) {
        let me = self.member_id();
        let voters: Vec<Member> = self
            .membership
            .list()
            .into_iter()
            .filter(|m| !m.is_learner)
            .collect();
        let active = voters
            .iter()
            .filter(|m| m.id == me || self.membership.active_for(m.id, HEALTH_INTERVAL))
            .count();
        (active, voters.len())
    }

    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<Applied, EtcdError> {
        check_urls(&peer_urls)?;
        if self.cfg.strict_reconfig_check {
            if !learner && !change::ready_to_add_voter(&self.membership) {
                tracing::warn!("rejecting member add request; not enough started members");
                return Err(EtcdError::NotEnoughStarted);
            }
            let (active, voters) = self.active_voters();
            if active < voters {
                tracing::warn!(
                    "rejecting member add request; local member has not been connected to all peers"
                );
                return Err(EtcdError::Unhealthy);
            }
        }
        // etcd's NewMember: the URLs, and the time, make the id.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let salt = format!("{}{now}", self.cfg.initial_cluster_token);
        let m = Member {
            id: member_id(&peer_urls, &salt),
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner: learner,
        };
        change::validate(
            &Change::Add(m.clone()),
            &self.membership,
            self.cfg.max_learners,
        )?;
        self.propose_change(Change::Add(m)).await
    }

    pub async fn remove_member(&self, id: u64) -> Result<Applied, EtcdError> {
        let Some(target) = self.membership.get(id) else {
            return Err(EtcdError::MemberNotFound);
        };
        if self.cfg.strict_reconfig_check && !target.is_learner {
            if !change::ready_to_remove_voter(&self.membership, id) {
                return Err(EtcdError::NotEnoughStarted);
            }
            // A member that is down may go: it is not part of the quorum.
            let down = id != self.member_id() && !self.membership.active_for(id, HEALTH_INTERVAL);
            if !down {
                let (active, voters) = self.active_voters();
                if active.saturating_sub(1) < 1 + (voters.saturating_sub(1)) / 2 {
                    return Err(EtcdError::Unhealthy);
                }
            }
        }
        self.propose_change(Change::Remove(id)).await
    }

    pub async fn update_member(
        &self,
        who: Option<&crate::statemachine::auth::AuthInfo>,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Applied, EtcdError> {
        check_urls(&peer_urls)?;
        if self.membership.get(id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        let req = strata_proto::etcdserverpb::MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls,
        };
        self.propose_for(req, who).await
    }

    /// MemberPromote on the leader: the learner must have caught up.
    pub async fn promote_here(&self, id: u64) -> Result<Applied, EtcdError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Input::LearnerReady(id, tx))?;
        match rx.await.map_err(|_| EtcdError::Stopped)? {
            None => return Err(EtcdError::NotLeader),
            Some(false) => return Err(EtcdError::LearnerNotReady),
            Some(true) => {}
        }
        if self.cfg.strict_reconfig_check && !change::ready_to_promote(&self.membership, id) {
            return Err(EtcdError::NotEnoughStarted);
        }
        change::validate(
            &Change::Promote(id),
            &self.membership,
            self.cfg.max_learners,
        )?;
        self.propose_change(Change::Promote(id)).await
    }

    /// MemberPromote: on the leader, or forwarded to it.
    pub async fn promote_member(&self, id: u64) -> Result<Applied, EtcdError> {
        // Ok(Some): applied here; Ok(None): the leader applied it;
        // Err: a definitive refusal.
        let outcome: Result<Option<Applied>, EtcdError> = self
            .on_leader(
                || async { Ok(self.promote_here(id).await.map(Some)) },
                |mut c, header| async move {
                    let asked = c
                        .promote(peerpb::PromoteAsk {
                            header: Some(header),
                            id,
                        })
                        .await;
                    match asked {
                        Ok(_) => Ok(Ok(None)),
                        Err(s) => match promote_error(s.message()) {
                            Some(e) => Ok(Err(e)),
                            None => Err(s),
                        },
                    }
                },
            )
            .await?;
        match outcome? {
            Some(applied) => Ok(applied),
            // The leader applied it; this member answers once it has too.
            None => {
                self.read_barrier().await?;
                Ok(Applied::Members {
                    header: self.header(),
                    member: None,
                    members: self.membership.list().iter().map(|m| m.to_pb()).collect(),
                })
            }
        }
    }
}
