//! A centered interval tree over key ranges `[start, end)` (`end` `None`:
//! unbounded), answering "which ranges contain this key" in
//! O(log n + matches). Built once from a set of ranges; the watch hub
//! rebuilds it when range watchers come or go (rare next to events).

type Key = Vec<u8>;

/// `[start, end)`, with the id of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: Key,
    pub end: Option<Key>,
    pub id: i64,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        self.start.as_slice() <= k && self.end.as_deref().is_none_or(|e| k < e)
    }
}

struct Node {
    center: Key,
    /// Intervals containing `center`, by start ascending.
    by_start: Vec<Interval>,
    /// The same, by end descending (unbounded first).
    by_end: Vec<Interval>,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

#[derive(Default)]
pub struct IntervalTree {
    root: Option<Box<Node>>,
    len: usize,
}

fn end_desc(a: &Interval, b: &Interval) -> std::cmp::Ordering {
    match (&a.end, &b.end) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, _) => std::cmp::Ordering::Less,
        (_, None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(x),
    }
}

fn build(mut items: Vec<Interval>) -> Option<Box<Node>> {
    if items.is_empty() {
        return None;
    }
    // The median start is contained by at least the interval it starts.
    items.sort_by(|a, b| a.start.cmp(&b.start));
    let center = items[items.len() / 2].start.clone();
    let (mut here, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
    for it in items {
        if it.contains(&center) {
            here.push(it);
        } else if it.start > center {
            right.push(it);
        } else {
            left.push(it);
        }
    }
    let mut by_end = here.clone();
    by_end.sort_by(end_desc);
    Some(Box::new(Node {
        center,
        by_start: here,
        by_end,
        left: build(left),
        right: build(right),
    }))
}

impl IntervalTree {
    pub fn new(items: Vec<Interval>) -> IntervalTree {
        // An empty range contains nothing (and would not split the build).
        let items: Vec<Interval> = items
            .into_iter()
            .filter(|it| it.end.as_deref().is_none_or(|e| it.start.as_slice() < e))
            .collect();
        let len = items.len();
        IntervalTree {
            root: build(items),
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids of the intervals containing `k`.
    pub fn stab(&self, k: &[u8], out: &mut Vec<i64>) {
        let mut node = self.root.as_deref();
        while let Some(n) = node {
            if k < n.center.as_slice() {
                // Everything here ends after the center, so after k: only
                // the start matters.
                for it in n.by_start.iter().take_while(|it| it.start.as_slice() <= k) {
                    out.push(it.id);
                }
                node = n.left.as_deref();
            } else {
                // Everything here starts at or before the center: only the
                // end matters.
                for it in n
                    .by_end
                    .iter()
                    .take_while(|it| it.end.as_deref().is_none_or(|e| k < e))
                {
                    out.push(it.id);
                }
                node = n.right.as_deref();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn stab_equals_a_linear_scan(
            ranges in prop::collection::vec((0u8..20, prop::option::of(0u8..22)), 0..40),
            probes in prop::collection::vec(0u8..22, 1..30),
        ) {
            let items: Vec<Interval> = ranges
                .iter()
                .enumerate()
                .map(|(i, (s, e))| Interval { start: vec![*s], end: e.map(|e| vec![e]), id: i as i64 })
                .collect();
            let tree = IntervalTree::new(items.clone());
            for p in probes {
                let mut got = Vec::new();
                tree.stab(&[p], &mut got);
                got.sort_unstable();
                let want: Vec<i64> = items.iter().filter(|it| it.contains(&[p])).map(|it| it.id).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
