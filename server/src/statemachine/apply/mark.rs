//! Applying a state-hash mark (see [`crate::statemachine::statehash`]): the entry changes
//! nothing but the consistent index; the state after the entries before it
//! is captured here, on the apply loop, and hashed on a thread of its own.

use super::{Applier, At, Outcome};
use crate::statemachine::state::Applied;

impl Applier {
    pub(super) fn state_hash_mark(&mut self, at: At) -> Outcome {
        self.begin(at)?.end();
        let (capture, ()) = self.store().capture_state(|| ());
        let sh = self.shared.clone();
        sh.marks.applied(at.index);
        std::thread::Builder::new()
            .name("state-hash".into())
            .spawn(move || {
                let hash = crate::statemachine::statehash::hash(&capture);
                drop(capture);
                sh.marks.finished(at.index, hash);
            })?;
        Ok(Ok(Applied::StateHash { index: at.index }))
    }
}
