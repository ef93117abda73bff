//! Revisions and their encoding as keys of the `key` bucket.
//!
//! A revision is `{main, sub}`: `main` is the store revision of a write
//! transaction, `sub` the position of a change inside it. As a key it is 17
//! bytes: `main` big-endian, `_`, `sub` big-endian, so byte order is
//! revision order. A tombstone (a deletion) carries an 18th byte, `t`.

/// Length of an encoded revision.
pub const REV_BYTES: usize = 17;
/// Length of an encoded tombstone revision.
pub const TOMBSTONE_REV_BYTES: usize = 18;
pub const TOMBSTONE_MARK: u8 = b't';

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The key-bucket key for this revision.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(TOMBSTONE_REV_BYTES);
        k.extend_from_slice(&self.main.to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            k.push(TOMBSTONE_MARK);
        }
        k
    }

    /// Decodes a key-bucket key: the revision and whether it marks a
    /// tombstone. `None` if the bytes are not a revision key.
    pub fn from_key(k: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match k.len() {
            REV_BYTES => false,
            TOMBSTONE_REV_BYTES if k[17] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if k[8] != b'_' {
            return None;
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&k[0..8]);
        let main = i64::from_be_bytes(a);
        a.copy_from_slice(&k[9..17]);
        let sub = i64::from_be_bytes(a);
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_sorts_like_revisions() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_key(false) < w[1].to_key(false));
        }
        for r in revs {
            assert_eq!(Revision::from_key(&r.to_key(false)), Some((r, false)));
            assert_eq!(Revision::from_key(&r.to_key(true)), Some((r, true)));
        }
        assert_eq!(Revision::from_key(b"short"), None);
        let mut bad = Revision::new(3, 4).to_key(true);
        bad[17] = b'x';
        assert_eq!(Revision::from_key(&bad), None);
    }
}
