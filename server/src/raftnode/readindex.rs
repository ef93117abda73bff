//! The linearizable read barrier's first half, as etcd's read loop: every
//! read that arrives while a ReadIndex round is in flight joins the next
//! round, and one task per busy period asks raft for each round. The raft
//! thread so hears one question per round, not one per read: under load it
//! is woken a few hundred times a second instead of once per request.
//!
//! Invariants: at most one driver task runs at a time (`driving`); a read
//! queued while the driver runs is answered by that driver, because the
//! driver only stops after finding the queue empty under the same lock that
//! queuing takes. Every queued read gets exactly one answer: an index, or
//! the error its round ended with. A dropped caller's answer goes nowhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::errors::EtcdError;
use crate::raftnode::{Input, NodeStatus};

type Answer = oneshot::Sender<Result<u64, EtcdError>>;

#[derive(Default)]
struct Queue {
    driving: bool,
    waiting: Vec<Answer>,
}

pub(crate) struct ReadIndex {
    raft_tx: Sender<Input>,
    queue: Mutex<Queue>,
    stopping: Arc<AtomicBool>,
    status: Arc<NodeStatus>,
    timeout: Duration,
}

impl ReadIndex {
    pub(crate) fn new(
        raft_tx: Sender<Input>,
        stopping: Arc<AtomicBool>,
        status: Arc<NodeStatus>,
        timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(ReadIndex {
            raft_tx,
            queue: Mutex::new(Queue::default()),
            stopping,
            status,
            timeout,
        })
    }

    /// The index a linearizable read that starts now must wait for.
    pub(crate) async fn index(self: &Arc<Self>) -> Result<u64, EtcdError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push(tx);
            !std::mem::replace(&mut q.driving, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.drive().await });
        }
        // The driver answers within two round timeouts (the round in
        // flight, then this read's); the bound here is the caller's own.
        match tokio::time::timeout(2 * self.timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::Acquire) || self.status.failed.load(Ordering::Acquire)
    }

    /// Runs rounds until no read waits.
    async fn drive(&self) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.waiting.is_empty() {
                    q.driving = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let answer = self.round().await;
            for w in batch {
                let _ = w.send(answer.clone());
            }
        }
    }

    /// One ReadIndex round through the raft thread.
    async fn round(&self) -> Result<u64, EtcdError> {
        if self.stopped() {
            return Err(EtcdError::Stopped);
        }
        let (tx, rx) = oneshot::channel();
        self.raft_tx
            .send(Input::ReadIndex(tx))
            .map_err(|_| EtcdError::Stopped)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(index)) => Ok(index),
            // The raft thread dropped the round: stopped, or this
            // member's leader changed.
            Ok(Err(_)) if self.stopped() => Err(EtcdError::Stopped),
            Ok(Err(_)) => Err(EtcdError::LeaderChanged),
            Err(_) => Err(EtcdError::Timeout),
        }
    }
}
