//! Applying alarms: activate, deactivate, list. The set in memory and the
//! alarm bucket change together, in the entry's own transaction.

use prost::Message;
use strata_engine::backend::Bucket;
use strata_proto::etcdserverpb as pb;

use super::{Applier, At};
use crate::state::Applied;

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
        match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Activate) if a.alarm != none => {
                let member = if a.member_id == 0 {
                    sh.member_id
                } else {
                    a.member_id
                };
                if sh.alarms().insert((member, a.alarm)) {
                    let key = alarm_member(member, a.alarm).encode_to_vec();
                    tx.put_bucket(Bucket::Alarm, &key, &[])?;
                    tracing::warn!(
                        member = format!("{member:x}"),
                        alarm = a.alarm,
                        "alarm raised"
                    );
                }
                out.push(alarm_member(member, a.alarm));
            }
            Ok(AlarmAction::Deactivate) => {
                let gone: Vec<(u64, i32)> = sh
                    .alarms()
                    .iter()
                    .copied()
                    .filter(|&(m, t)| {
                        (a.member_id == 0 || m == a.member_id) && (a.alarm == none || t == a.alarm)
                    })
                    .collect();
                for (m, t) in gone {
                    sh.alarms().remove(&(m, t));
                    tx.delete_bucket(Bucket::Alarm, &alarm_member(m, t).encode_to_vec())?;
                    out.push(alarm_member(m, t));
                }
            }
            _ => {
                for &(m, t) in sh.alarms().iter() {
                    if a.alarm == none || t == a.alarm {
                        out.push(alarm_member(m, t));
                    }
                }
            }
        }
        let rev = tx.end();
        Ok(Applied::Alarm(pb::AlarmResponse {
            header: Some(sh.header(rev)),
            alarms: out,
        }))
    }
}
