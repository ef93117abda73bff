//! The initial corruption check (`--experimental-initial-corrupt-check`):
//! a member restarting on an existing data dir compares its HashKV with
//! each peer's at its own current revision before it serves, as etcd's
//! CheckInitialHashKV does.
//!
//! The periodic check (`--corrupt-check-time`, etcd's
//! checkHashKV) runs on the leader only: it hashes its store, asks every
//! follower for its hash at the same revision, hashes again, and raises
//! the CORRUPT alarm (through raft) for a follower whose compact revision
//! is past the leader's, or whose hash differs at the leader's compact
//! revision, and for itself when its two hashes of one revision differ.
//! Beside HashKV it compares whole states (every bucket, see
//! [`crate::statemachine::statehash`]): it proposes a state-hash mark and asks each
//! voter for its hash of that mark; a follower whose hash differs gets
//! the CORRUPT alarm too.
//! While CORRUPT is raised every member refuses writes ("etcdserver:
//! corrupt cluster"); reads go on, as in etcd.
//!
//! Rules of the initial check (etcd's): a peer whose hash differs at the same compact revision
//! is a mismatch; a different compact revision, a peer that has not yet
//! reached the revision, a revision the peer has compacted, or a peer that
//! cannot be reached is logged and skipped. Any mismatch stops the member
//! with "<id> found data inconsistency with peers". A new member (a fresh
//! data dir) has nothing to compare and skips the check.

use std::sync::Arc;
use std::time::Duration;

use strata_engine::backend::Bucket;
use strata_proto::etcdserverpb as pb;
use strata_proto::peerpb;

use crate::server::EtcdServer;

impl EtcdServer {
    pub async fn initial_corrupt_check(self: &std::sync::Arc<Self>) -> anyhow::Result<()> {
        let me = self.member_id();
        let (hash, rev, compact) = self.local_hash().await?;
        tracing::info!(
            member = format!("{me:x}"),
            revision = rev,
            compact_revision = compact,
            "starting initial corruption check"
        );
        let mut mismatch = 0;
        for (peer, asked) in self.peer_hashes(rev, true).await {
            let remote = format!("{:x}", peer.id);
            match asked {
                Ok(a) if a.refused == 2 => {
                    tracing::warn!(remote, "cannot fetch hash from slow remote peer")
                }
                Ok(a) if a.refused == 1 => tracing::warn!(
                    remote,
                    "cannot fetch hash from remote peer; local member is behind"
                ),
                Ok(a) if a.hash != hash => {
                    if a.compact_revision == compact {
                        tracing::warn!(
                            remote,
                            local_hash = hash,
                            remote_hash = a.hash,
                            revision = rev,
                            "found different hash values from remote peer"
                        );
                        mismatch += 1;
                    } else {
                        tracing::warn!(
                            remote,
                            local_compact_revision = compact,
                            remote_compact_revision = a.compact_revision,
                            "found different compact revision values from remote peer"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(remote, error = %e.message(), "cannot fetch hash from remote peer")
                }
            }
        }
        if mismatch > 0 {
            anyhow::bail!("{me:x} found data inconsistency with peers");
        }
        tracing::info!(
            member = format!("{me:x}"),
            "initial corruption checking passed; no corruption"
        );
        Ok(())
    }

    /// One round of the leader's periodic check (module docs).
    pub async fn periodic_corrupt_check(self: &Arc<Self>) -> anyhow::Result<()> {
        let me = self.member_id();
        let (hash, rev, compact) = self.local_hash().await?;
        let mut answers = Vec::new();
        for (peer, asked) in self.peer_hashes(rev, false).await {
            match asked {
                // Answered at the revision asked (a peer behind it, or past
                // it by compaction, is not compared).
                Ok(a) if a.refused == 0 => answers.push((peer.id, a)),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    remote = format!("{:x}", peer.id),
                    error = %e.message(),
                    "cannot fetch hash from remote peer"
                ),
            }
        }
        let (hash2, rev2, compact2) = self.local_hash().await?;
        let mut corrupt = Vec::new();
        if hash2 != hash && rev2 == rev && compact2 == compact {
            tracing::warn!(
                member = format!("{me:x}"),
                hash,
                hash2,
                revision = rev,
                "found hash mismatch of the leader's own store"
            );
            corrupt.push(me);
        }
        for (id, a) in &answers {
            let remote = format!("{id:x}");
            if a.compact_revision > compact2 {
                tracing::warn!(
                    remote,
                    leader_compact_revision = compact2,
                    follower_compact_revision = a.compact_revision,
                    "compact revision from follower must be less than or equal to leader's"
                );
                corrupt.push(*id);
            } else if a.compact_revision == compact && a.hash != hash {
                tracing::warn!(
                    remote,
                    leader_hash = hash,
                    follower_hash = a.hash,
                    revision = rev,
                    compact_revision = compact,
                    "same compact revision then hashes must match"
                );
                corrupt.push(*id);
            }
        }
        match self.state_hash_check().await {
            Ok(ids) => {
                for id in ids {
                    if !corrupt.contains(&id) {
                        corrupt.push(id);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "failed to compare whole-state hashes"),
        }
        for id in corrupt {
            let req = pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: id,
                alarm: pb::AlarmType::Corrupt as i32,
            };
            if let Err(e) = self.propose(req).await {
                tracing::warn!(member = format!("{id:x}"), error = %e, "raising the CORRUPT alarm");
            }
        }
        tracing::info!(
            number_of_peers_checked = answers.len(),
            "finished peer corruption check"
        );
        Ok(())
    }

    /// The whole-state half of the periodic check: a state-hash mark
    /// through raft, this member's hash of it, then each voter's; returns
    /// the followers whose hash differs (etcd's rule for HashKV: the
    /// follower is the one marked corrupt).
    async fn state_hash_check(self: &Arc<Self>) -> anyhow::Result<Vec<u64>> {
        use crate::statemachine::statehash::Marked;
        let index = match self.propose(pb::StateHashRequest {}).await? {
            crate::statemachine::state::Applied::StateHash { index } => index,
            other => anyhow::bail!("a state-hash mark applied as {other:?}"),
        };
        let mine = match self.shared.mark_hash(index, Duration::from_secs(30)).await {
            Marked::Done(h) => h,
            other => anyhow::bail!("hashing the state at mark {index}: {other:?}"),
        };
        let me = self.member_id();
        let mut differ = Vec::new();
        for peer in self.membership.list() {
            if peer.id == me || peer.is_learner {
                continue;
            }
            let Some(mut client) = self.peers.get(&self.membership, peer.id) else {
                continue;
            };
            let remote = format!("{:x}", peer.id);
            let asked = client
                .state_hash(peerpb::StateHashAsk {
                    header: Some(self.peer_header(peer.id)),
                    index,
                })
                .await
                .map(|r| r.into_inner());
            match asked {
                Ok(a) if a.refused == 0 && a.hash != mine.hash => {
                    let theirs = strata_engine::mvcc::StateHash {
                        hash: a.hash,
                        revision: a.revision,
                        compact: 0,
                        buckets: Bucket::ALL.into_iter().zip(a.buckets).collect(),
                    };
                    let buckets: Vec<String> = mine
                        .differing(&theirs)
                        .into_iter()
                        .map(|b| String::from_utf8_lossy(b.name()).into_owned())
                        .collect();
                    tracing::warn!(
                        remote,
                        index,
                        leader_hash = mine.hash,
                        follower_hash = a.hash,
                        revision = mine.revision,
                        follower_revision = a.revision,
                        buckets = buckets.join(","),
                        "found whole-state hash mismatch with a follower at the same log index"
                    );
                    differ.push(peer.id);
                }
                Ok(a) if a.refused == 0 => {}
                Ok(a) => tracing::warn!(
                    remote,
                    index,
                    refused = a.refused,
                    error = a.error,
                    "cannot compare the whole-state hash with a follower"
                ),
                Err(e) => tracing::warn!(
                    remote,
                    error = %e.message(),
                    "cannot fetch the whole-state hash from a follower"
                ),
            }
        }
        if differ.is_empty() {
            tracing::info!(
                index,
                hash = mine.hash,
                "whole-state hashes of the voters agree"
            );
        }
        Ok(differ)
    }

    /// This member's HashKV at its current revision: (hash, revision,
    /// compact revision).
    async fn local_hash(self: &Arc<Self>) -> anyhow::Result<(u32, i64, i64)> {
        let srv = self.clone();
        Ok(tokio::task::spawn_blocking(move || srv.store().hash_kv(0)).await??)
    }

    /// Each other member's answer to "your HashKV at `rev`" (learners
    /// only when `learners`); members without a connection are left out.
    async fn peer_hashes(
        &self,
        rev: i64,
        learners: bool,
    ) -> Vec<(
        crate::statemachine::membership::Member,
        Result<peerpb::HashAnswer, tonic::Status>,
    )> {
        let me = self.member_id();
        let mut out = Vec::new();
        for peer in self.membership.list() {
            if peer.id == me || (peer.is_learner && !learners) {
                continue;
            }
            let Some(mut client) = self.peers.get(&self.membership, peer.id) else {
                continue;
            };
            let asked = client
                .hash_kv(peerpb::HashAsk {
                    header: Some(self.peer_header(peer.id)),
                    revision: rev,
                })
                .await
                .map(|r| r.into_inner());
            out.push((peer, asked));
        }
        out
    }
}
