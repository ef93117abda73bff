//! Applying the auth family: the store's change and its bucket writes go
//! into the entry's own transaction (so they reach the db with its
//! consistent index); an Authenticate also records its simple token.

use super::{Applier, At, Outcome};
use crate::statemachine::auth::Change;
use crate::statemachine::state::Applied;

impl Applier {
    pub(super) fn auth(&mut self, c: Change, at: At) -> Outcome {
        let sh = self.shared.clone();
        let writes = match sh.auth.apply(c, self.caller.as_ref(), at.index) {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        let mut tx = self.begin(at)?;
        for (bucket, key, value) in writes {
            match value {
                Some(v) => tx.put_bucket(bucket, &key, &v)?,
                None => tx.delete_bucket(bucket, &key)?,
            }
        }
        let rev = tx.end();
        Ok(Ok(Applied::Auth {
            header: sh.header(rev),
            index: at.index,
            revision: sh.auth.revision(),
        }))
    }
}
