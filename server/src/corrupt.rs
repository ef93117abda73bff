//! The initial corruption check (`--experimental-initial-corrupt-check`):
//! a member restarting on an existing data dir compares its HashKV with
//! each peer's at its own current revision before it serves, as etcd's
//! CheckInitialHashKV does.
//!
//! Rules (etcd's): a peer whose hash differs at the same compact revision
//! is a mismatch; a different compact revision, a peer that has not yet
//! reached the revision, a revision the peer has compacted, or a peer that
//! cannot be reached is logged and skipped. Any mismatch stops the member
//! with "<id> found data inconsistency with peers". A new member (a fresh
//! data dir) has nothing to compare and skips the check.

use strata_proto::peerpb;

use crate::server::EtcdServer;

impl EtcdServer {
    pub async fn initial_corrupt_check(self: &std::sync::Arc<Self>) -> anyhow::Result<()> {
        let me = self.member_id();
        let srv = self.clone();
        let (hash, rev, compact) =
            tokio::task::spawn_blocking(move || srv.store().hash_kv(0)).await??;
        tracing::info!(
            member = format!("{me:x}"),
            revision = rev,
            compact_revision = compact,
            "starting initial corruption check"
        );
        let mut mismatch = 0;
        for peer in self.membership.list() {
            if peer.id == me {
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
                .await;
            let remote = format!("{:x}", peer.id);
            match asked.map(|r| r.into_inner()) {
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
}
