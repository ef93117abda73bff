//! Applying the key-value family: Put, DeleteRange, Txn and Compaction.

use strata_engine::mvcc::{self as m, txn as mtxn};
use strata_proto::etcdserverpb as pb;

use super::{request_err, Applier, At, Outcome};
use crate::errors::EtcdError;
use crate::statemachine::convert;
use crate::statemachine::state::Applied;

impl Applier {
    pub(super) fn put(&mut self, p: pb::PutRequest, at: At) -> Outcome {
        if self.shared.corrupt() {
            return Ok(Err(EtcdError::Corrupt));
        }
        let sh = self.shared.clone();
        let checked = self.permitted(|a, who| {
            a.check_write(who, &p.key, &[])?;
            if p.lease != 0 {
                a.check_lease_keys(who, &sh.lessor.keys(p.lease))?;
            }
            if p.prev_kv {
                a.check_read(who, &p.key, &[])?;
            }
            Ok(())
        });
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let p = convert::put_in(&p);
        if let Err(e) = mtxn::validate_put(&p) {
            return Ok(Err(e.into()));
        }
        if sh.nospace() {
            return Ok(Err(EtcdError::NoSpace));
        }
        if p.lease != 0 && !sh.lessor.exists(p.lease) {
            return Ok(Err(EtcdError::LeaseNotFound));
        }
        let mut tx = self.begin(at)?;
        let res = tx.put(&p);
        self.track_leases(&tx);
        let rev = tx.end();
        if res.is_ok() {
            crate::metrics::global().mvcc_ops(0, 1, 0, (p.key.len() + p.value.len()) as u64);
        }
        match res {
            Ok(resp) => Ok(Ok(Applied::Put(convert::put_out(resp, sh.header(rev))))),
            Err(e) => request_err(e),
        }
    }

    pub(super) fn delete_range(&mut self, d: pb::DeleteRangeRequest, at: At) -> Outcome {
        if self.shared.corrupt() {
            return Ok(Err(EtcdError::Corrupt));
        }
        let sh = self.shared.clone();
        let checked = self.permitted(|a, who| {
            a.check_write(who, &d.key, &d.range_end)?;
            if d.prev_kv {
                a.check_read(who, &d.key, &d.range_end)?;
            }
            Ok(())
        });
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let d = convert::delete_in(&d);
        if d.key.is_empty() {
            return Ok(Err(EtcdError::EmptyKey));
        }
        let mut tx = self.begin(at)?;
        let res = tx.delete_range(&d);
        self.track_leases(&tx);
        let rev = tx.end();
        if res.is_ok() {
            crate::metrics::global().mvcc_ops(0, 0, 1, 0);
        }
        match res {
            Ok(resp) => Ok(Ok(Applied::DeleteRange(convert::delete_out(
                resp,
                sh.header(rev),
            )))),
            Err(e) => request_err(e),
        }
    }

    pub(super) fn txn(&mut self, t: pb::TxnRequest, at: At) -> Outcome {
        if self.shared.corrupt() {
            return Ok(Err(EtcdError::Corrupt));
        }
        let sh = self.shared.clone();
        if let Err(e) = self.permitted(|a, who| a.check_txn(who, &t)) {
            return Ok(Err(e));
        }
        let t = match convert::txn_in(&t) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if sh.nospace() && has_put(&t) {
            return Ok(Err(EtcdError::NoSpace));
        }
        let mut tx = self.begin(at)?;
        let lessor = &sh.lessor;
        let res = tx.txn(&t, &|l| lessor.exists(l));
        self.track_leases(&tx);
        let rev = tx.end();
        match res {
            Ok(mut resp) => {
                crate::metrics::global().mvcc_txn(&t, &resp);
                mtxn::stamp(&mut resp, rev);
                Ok(Ok(Applied::Txn(convert::txn_out(resp, &sh.header(rev)))))
            }
            Err(e) => request_err(e),
        }
    }

    /// Reads below the revision are refused from here on; the schedule's
    /// commit, the index's compaction and the old revisions' deletion run
    /// on another thread while writes go on (etcd's physical option waits
    /// for that: its client gets a receiver for the job's end).
    pub(super) fn compaction(&mut self, c: pb::CompactionRequest, at: At) -> Outcome {
        if self.shared.corrupt() {
            return Ok(Err(EtcdError::Corrupt));
        }
        let sh = self.shared.clone();
        let res = self.store().begin_compaction(c.revision);
        let rev = self.begin(at)?.end();
        let job = match res {
            Ok(job) => job,
            Err(e) => return request_err(e),
        };
        let resp = pb::CompactionResponse {
            header: Some(sh.header(rev)),
        };
        let (finished, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("compaction".into())
            .spawn(move || {
                let revision = job.revision();
                let res = job.finish();
                if let Err(e) = &res {
                    tracing::error!(revision, error = %e, "compaction failed");
                }
                // Nobody may be waiting (not physical, another member's
                // request, a client gone).
                let _ = finished.send(res.map_err(EtcdError::from));
            })?;
        Ok(Ok(if c.physical {
            Applied::Compacting { answer: resp, done }
        } else {
            Applied::Compaction(resp)
        }))
    }
}

fn has_put(t: &m::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        m::RequestOp::Put(_) => true,
        m::RequestOp::Txn(inner) => has_put(inner),
        _ => false,
    })
}
