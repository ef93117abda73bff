//! Handing leadership to another member (MoveLeader, `etcdctl
//! move-leader`) through raft's leader transfer, with etcd's errors:
//! asked of a member that does not lead, "etcdserver: not leader"; a
//! target that is not a member, "etcdserver: bad leader transferee"; no
//! transfer within the request timeout, "etcdserver: request timed out,
//! leader transfer took too long".

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::errors::EtcdError;
use crate::raftnode::Input;
use crate::server::EtcdServer;

impl EtcdServer {
    /// MoveLeader: this member, the leader, hands leadership to `target`
    /// and waits (polling every heartbeat, up to the request timeout) until
    /// it has it, as etcd's MoveLeader does.
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        if !self.membership.contains(target) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        let me = self.member_id();
        tracing::info!(
            local = format!("{me:x}"),
            transferee = format!("{target:x}"),
            "leadership transfer starting"
        );
        let started = Instant::now();
        self.send(Input::TransferLeader(target))?;
        let every = Duration::from_millis(self.cfg.heartbeat_interval.max(1));
        while self.shared.status.leader.load(Ordering::Acquire) != target {
            if started.elapsed() > self.request_timeout() {
                return Err(EtcdError::TimeoutLeaderTransfer);
            }
            tokio::time::sleep(every).await;
        }
        tracing::info!(
            old_leader = format!("{me:x}"),
            new_leader = format!("{target:x}"),
            took = ?started.elapsed(),
            "leadership transfer finished"
        );
        Ok(())
    }
}
