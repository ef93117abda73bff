//! A user's key permissions, merged over all their roles, and the one
//! question asked of them: does the union of granted ranges cover the
//! range a request touches?
//!
//! Ranges are half-open byte intervals `[start, end)`; `end = None` is
//! open-ended. A permission's `range_end` follows etcd: empty is the one
//! key `key` (the interval `[key, key\0)`), `"\0"` is everything from
//! `key` on, anything else is `[key, range_end)`. A request's range reads
//! the same way, so a single-key request is covered exactly when some
//! granted interval holds its key.
//!
//! Invariant: each list is sorted by start and merged (no two intervals
//! overlap or touch), so a cover check is one binary search.

use strata_proto::authpb;

type Interval = (Vec<u8>, Option<Vec<u8>>);

/// The interval a (key, range_end) pair names, as described above.
pub fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            (key.to_vec(), Some(next))
        }
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

/// Sorts and merges intervals; empty ones (end at or before start) drop.
fn merge(mut ivs: Vec<Interval>) -> Vec<Interval> {
    ivs.retain(|(s, e)| e.as_ref().is_none_or(|e| e > s));
    ivs.sort();
    let mut out: Vec<Interval> = Vec::with_capacity(ivs.len());
    for (s, e) in ivs {
        if let Some((_, last_end)) = out.last_mut() {
            // Touching or overlapping the previous one: extend it.
            let joins = last_end.as_ref().is_none_or(|le| s <= *le);
            if joins {
                if last_end.is_some() && e.as_ref().is_none_or(|e| Some(e) > last_end.as_ref()) {
                    *last_end = e;
                }
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

/// Whether merged `ivs` cover `[start, end)` entirely.
fn covers(ivs: &[Interval], (start, end): &Interval) -> bool {
    // The last interval starting at or before `start`.
    let i = ivs.partition_point(|(s, _)| s <= start);
    if i == 0 {
        return false;
    }
    let (_, e) = &ivs[i - 1];
    match (e, end) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(end)) => e >= end && e > start,
    }
}

/// What one user may read and write.
#[derive(Debug, Default, Clone)]
pub struct Perms {
    read: Vec<Interval>,
    write: Vec<Interval>,
}

impl Perms {
    /// Merges the permissions of `roles`.
    pub fn merge<'a>(roles: impl IntoIterator<Item = &'a authpb::Role>) -> Perms {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        for role in roles {
            for p in &role.key_permission {
                let iv = interval(&p.key, &p.range_end);
                use authpb::permission::Type;
                match Type::try_from(p.perm_type) {
                    Ok(Type::Read) => read.push(iv),
                    Ok(Type::Write) => write.push(iv),
                    Ok(Type::Readwrite) => {
                        read.push(iv.clone());
                        write.push(iv);
                    }
                    Err(_) => {}
                }
            }
        }
        Perms {
            read: merge(read),
            write: merge(write),
        }
    }

    pub fn can_read(&self, key: &[u8], range_end: &[u8]) -> bool {
        covers(&self.read, &interval(key, range_end))
    }

    pub fn can_write(&self, key: &[u8], range_end: &[u8]) -> bool {
        covers(&self.write, &interval(key, range_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authpb::permission::Type;

    fn role(perms: &[(&[u8], &[u8], Type)]) -> authpb::Role {
        authpb::Role {
            name: b"r".to_vec(),
            key_permission: perms
                .iter()
                .map(|(k, e, t)| authpb::Permission {
                    perm_type: *t as i32,
                    key: k.to_vec(),
                    range_end: e.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn one_key_grants_that_key_only() {
        let p = Perms::merge([&role(&[(b"foo", b"", Type::Read)])]);
        assert!(p.can_read(b"foo", b""));
        assert!(!p.can_read(b"foo0", b""));
        assert!(!p.can_read(b"fo", b""));
        assert!(!p.can_write(b"foo", b""));
        // A range of just that key.
        assert!(p.can_read(b"foo", b"foo\0"));
        assert!(!p.can_read(b"foo", b"fop"));
    }

    #[test]
    fn prefix_and_from_key() {
        let p = Perms::merge([&role(&[
            (b"a/", b"a0", Type::Readwrite),
            (b"m", b"\0", Type::Write),
        ])]);
        assert!(p.can_read(b"a/x", b""));
        assert!(p.can_read(b"a/", b"a0"));
        assert!(p.can_read(b"a/b", b"a/c"));
        assert!(!p.can_read(b"a/", b"a1"));
        assert!(!p.can_read(b"a/", b"\0"));
        assert!(p.can_write(b"zzz", b""));
        assert!(p.can_write(b"m", b"\0"));
        assert!(!p.can_write(b"l", b"\0"));
        assert!(!p.can_read(b"zzz", b""));
    }

    #[test]
    fn adjacent_grants_of_two_roles_join() {
        let a = role(&[(b"a", b"c", Type::Read)]);
        let b = role(&[(b"c", b"e", Type::Read), (b"b", b"d", Type::Read)]);
        let p = Perms::merge([&a, &b]);
        assert!(p.can_read(b"a", b"e"));
        assert!(!p.can_read(b"a", b"e\0"));
        // A gap is not covered.
        let g = Perms::merge([&role(&[(b"a", b"b", Type::Read), (b"c", b"d", Type::Read)])]);
        assert!(!g.can_read(b"a", b"d"));
        assert!(g.can_read(b"c", b""));
    }

    #[test]
    fn no_permission_covers_nothing() {
        let p = Perms::merge(std::iter::empty());
        assert!(!p.can_read(b"", b"\0"));
        assert!(!p.can_write(b"x", b""));
    }
}
