//! Applying alarms: activate, deactivate, list. The set in memory and the
//! alarm bucket change together, in the entry's own transaction.

use prost::Message;
use strata_engine::backend::Bucket;
use strata_proto::etcdserverpb as pb;

use super::{Applier, At};
use crate::statemachine::state::Applied;

fn alarm_member(member_id: u64, alarm: i32) -> pb::AlarmMember {
    pb::AlarmMember { member_id, alarm }
}

impl Applier {
    pub(super) fn alarm(&mut self, a: pb::AlarmRequest, at: At) -> strata_engine::Result<Applied> {
        use pb::alarm_request::AlarmAction;
        let none = pb::AlarmType::None as i32;
        let sh = self.shared.clone();
        let mut tx = self.begin(at)?;
        let mut out = Vec::new();
        // etcd's applier: the member id is the request's own (0 is a member
        // id like any other, never "this member": the entry must mean the
        // same on every member); ACTIVATE of NONE and an unknown action
        // change nothing and list nothing; DEACTIVATE removes exactly the
        // (member, alarm) pair it names.
        match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Activate) if a.alarm != none => {
                if sh.alarms().insert((a.member_id, a.alarm)) {
                    let key = alarm_member(a.member_id, a.alarm).encode_to_vec();
                    tx.put_bucket(Bucket::Alarm, &key, &[])?;
                    tracing::warn!(
                        member = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm raised"
                    );
                }
                out.push(alarm_member(a.member_id, a.alarm));
            }
            Ok(AlarmAction::Deactivate) => {
                if sh.alarms().remove(&(a.member_id, a.alarm)) {
                    let key = alarm_member(a.member_id, a.alarm).encode_to_vec();
                    tx.delete_bucket(Bucket::Alarm, &key)?;
                    tracing::warn!(
                        member = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm cleared"
                    );
                    out.push(alarm_member(a.member_id, a.alarm));
                }
            }
            Ok(AlarmAction::Get) => {
                for &(m, t) in sh.alarms().iter() {
                    if a.alarm == none || t == a.alarm {
                        out.push(alarm_member(m, t));
                    }
                }
            }
            Ok(AlarmAction::Activate) | Err(_) => {}
        }
        let rev = tx.end();
        Ok(Applied::Alarm(pb::AlarmResponse {
            header: Some(sh.header(rev)),
            alarms: out,
        }))
    }
}
