//! Linearizable reads waiting on raft's ReadIndex, batched as etcd's read
//! loop batches them: at most one round is in flight per member; reads that
//! arrive meanwhile queue and share the next round. Fewer rounds means fewer
//! heartbeats to the followers (on the leader) and fewer ReadIndex messages
//! to the leader (on a follower) under load, at the cost of waiting for the
//! round in flight at most once.
//!
//! A round's context is an 8-byte big-endian counter that starts from the
//! clock at start-up, so an answer meant for an earlier run of this member
//! never matches a round of this one.

use tokio::sync::oneshot::Sender;

pub struct ReadRounds {
    inflight: Option<(u64, Vec<Sender<u64>>)>,
    queued: Vec<Sender<u64>>,
    seq: u64,
}

impl ReadRounds {
    pub fn new(first_seq: u64) -> Self {
        ReadRounds {
            inflight: None,
            queued: Vec::new(),
            seq: first_seq,
        }
    }

    /// A read joins the next round.
    pub fn queue(&mut self, tx: Sender<u64>) {
        self.queued.push(tx);
    }

    /// If no round is in flight and reads are queued, they become the
    /// round in flight: returns its context for raft's `read_index`.
    pub fn start(&mut self) -> Option<Vec<u8>> {
        if self.inflight.is_some() || self.queued.is_empty() {
            return None;
        }
        self.seq = self.seq.wrapping_add(1);
        self.inflight = Some((self.seq, std::mem::take(&mut self.queued)));
        Some(self.seq.to_be_bytes().to_vec())
    }

    /// Whether [`ReadRounds::start`] would start a round.
    pub fn can_start(&self) -> bool {
        self.inflight.is_none() && !self.queued.is_empty()
    }

    /// The context of the round in flight (raft drops a ReadIndex a leader
    /// cannot answer yet, so it is asked again on every tick).
    pub fn inflight(&self) -> Option<Vec<u8>> {
        self.inflight
            .as_ref()
            .map(|(seq, _)| seq.to_be_bytes().to_vec())
    }

    /// raft answered the round `ctx` with `index`: its reads may go on once
    /// this member has applied `index`. Answers to other contexts (an older
    /// ask of this round, another run) are ignored.
    pub fn answered(&mut self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        let seq = u64::from_be_bytes(bytes);
        if self.inflight.as_ref().is_some_and(|(s, _)| *s == seq) {
            if let Some((_, waiters)) = self.inflight.take() {
                for w in waiters {
                    let _ = w.send(index);
                }
            }
        }
    }

    /// The leader changed: the round in flight can no longer be answered.
    /// Its readers see their channel closed (etcd's "leader changed");
    /// queued reads go to the next round.
    pub fn abandon_inflight(&mut self) {
        self.inflight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[test]
    fn one_round_in_flight_and_the_rest_share_the_next() {
        let mut r = ReadRounds::new(10);
        let (a, mut ra) = oneshot::channel();
        r.queue(a);
        let first = r.start().expect("a round starts");
        let (b, mut rb) = oneshot::channel();
        let (c, mut rc) = oneshot::channel();
        r.queue(b);
        r.queue(c);
        assert!(r.start().is_none(), "a second round waits for the first");
        assert_eq!(r.inflight(), Some(first.clone()));
        r.answered(&first, 7);
        assert_eq!(ra.try_recv(), Ok(7));
        assert!(rb.try_recv().is_err());
        let second = r.start().expect("the queued reads start the next round");
        assert_ne!(first, second);
        r.answered(&first, 99); // a late duplicate answer is ignored
        assert!(rb.try_recv().is_err());
        r.answered(&second, 9);
        assert_eq!(rb.try_recv(), Ok(9));
        assert_eq!(rc.try_recv(), Ok(9));
        assert!(r.start().is_none());
    }

    #[test]
    fn an_abandoned_round_closes_its_readers_and_keeps_the_queue() {
        let mut r = ReadRounds::new(0);
        let (a, mut ra) = oneshot::channel();
        r.queue(a);
        let ctx = r.start().unwrap();
        let (b, _rb) = oneshot::channel();
        r.queue(b);
        r.abandon_inflight();
        assert!(matches!(
            ra.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        r.answered(&ctx, 5);
        assert!(r.start().is_some(), "the queued read gets its own round");
        assert!(r.answered_ignores_garbage());
    }

    impl ReadRounds {
        fn answered_ignores_garbage(&mut self) -> bool {
            self.answered(b"short", 1);
            self.inflight.is_some()
        }
    }
}
