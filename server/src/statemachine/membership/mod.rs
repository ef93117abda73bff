//! The cluster's members: ids, names, peer URLs (where raft traffic goes)
//! and client URLs (what MemberList shows).
//!
//! Invariants:
//! - A new cluster's members come from `--initial-cluster`; their ids are
//!   etcd's (SHA-1 of the sorted peer URLs and the token) and so is the
//!   cluster id (SHA-1 of the sorted member ids). The list is written to
//!   the db's `members` bucket before the WAL is created; from then on the
//!   db is the source and the `--initial-*` flags are ignored, as etcd
//!   ignores them on restart.
//! - Changes after bootstrap are raft entries applied into the bucket, so
//!   every member holds the same list: conf changes (add, add as learner,
//!   remove, promote; see [`change`]), peer URL updates and published
//!   attributes (name, client URLs).
//! - A removed member's id goes to `members_removed` and never comes back.
//! - Stored value: the etcdserverpb `Member` message; key: the id, 8 bytes
//!   big-endian. `members_removed`: the id as key, an empty value.
//! - Every change bumps [`Membership::version`], which the transport and
//!   the peer listeners follow.

pub mod change;

use std::collections::BTreeMap;
use std::sync::RwLock;

use prost::Message;
use strata_engine::backend::{Backend, Bucket};
use strata_proto::etcdserverpb as pb;

use sha1::{Digest, Sha1};

/// etcd's member id: the first 8 bytes (big-endian) of SHA-1 over the
/// sorted peer URLs followed by the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's cluster id: SHA-1 over the sorted member ids (8 bytes BE each).
pub fn cluster_id(members: &[u64]) -> u64 {
    let mut ids = members.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// A member as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    pub fn to_pb(&self) -> pb::Member {
        pb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }

    pub fn from_pb(m: pb::Member) -> Member {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_ur_ls,
            client_urls: m.client_ur_ls,
            is_learner: m.is_learner,
        }
    }

    /// etcd's IsStarted: the member has published its name.
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// `--initial-cluster` as members: `name=url` pairs, a name's URLs
/// together, ids as etcd computes them.
pub fn from_initial_cluster(initial: &str, token: &str) -> anyhow::Result<Vec<Member>> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in initial.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--initial-cluster entry {part:?} is not name=url"))?;
        by_name
            .entry(name.trim().to_string())
            .or_default()
            .push(url.trim().to_string());
    }
    let members: Vec<Member> = by_name
        .into_iter()
        .map(|(name, peer_urls)| Member {
            id: member_id(&peer_urls, token),
            name,
            peer_urls,
            client_urls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        anyhow::bail!("--initial-cluster has duplicate peer URLs for different names");
    }
    Ok(members)
}

/// The cluster id of a set of members.
pub fn cluster_id_of(members: &[Member]) -> u64 {
    cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>())
}

/// The members as this member knows them (shared by the transport, the
/// applier and the Cluster service).
pub struct Membership {
    members: RwLock<BTreeMap<u64, Member>>,
    removed: RwLock<std::collections::BTreeSet<u64>>,
    version: tokio::sync::watch::Sender<u64>,
    /// This member was removed (it applied its own removal, or its peers
    /// refuse it as removed).
    self_removed: std::sync::atomic::AtomicBool,
    /// Since when each peer's raft stream has been up (the transport's).
    active: std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>,
}

impl Default for Membership {
    fn default() -> Membership {
        Membership::new(Vec::new())
    }
}

impl Membership {
    pub fn new(members: Vec<Member>) -> Membership {
        Membership {
            members: RwLock::new(members.into_iter().map(|m| (m.id, m)).collect()),
            removed: RwLock::default(),
            version: tokio::sync::watch::Sender::new(0),
            active: std::sync::Mutex::default(),
            self_removed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This member learned that it was removed from the cluster.
    pub fn mark_self_removed(&self) {
        if !self
            .self_removed
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::warn!("the member has been permanently removed from the cluster");
            self.changed();
        }
    }

    pub fn self_removed(&self) -> bool {
        self.self_removed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The transport's word on peer `id`: its stream is up, or down.
    pub fn set_active(&self, id: u64, up: bool) {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if up {
            a.entry(id).or_insert_with(std::time::Instant::now);
        } else {
            a.remove(&id);
        }
    }

    /// Whether peer `id`'s stream has been up for at least `d`.
    pub fn active_for(&self, id: u64, d: std::time::Duration) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|t| t.elapsed() >= d)
    }

    /// Bumped by every change.
    pub fn version(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The version now.
    pub fn version_now(&self) -> u64 {
        *self.version.borrow()
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Member>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a member (a conf change applied).
    pub fn add(&self, m: Member) {
        self.write().insert(m.id, m);
        self.changed();
    }

    /// Removes a member for good.
    pub fn remove(&self, id: u64) -> Option<Member> {
        let m = self.write().remove(&id);
        self.removed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.changed();
        m
    }

    /// Makes a learner a voter.
    pub fn promote(&self, id: u64) -> Option<Member> {
        let m = {
            let mut g = self.write();
            let m = g.get_mut(&id)?;
            m.is_learner = false;
            m.clone()
        };
        self.changed();
        Some(m)
    }

    /// Sets a member's peer URLs.
    pub fn set_peer_urls(&self, id: u64, urls: Vec<String>) -> Option<Member> {
        let m = {
            let mut g = self.write();
            let m = g.get_mut(&id)?;
            m.peer_urls = urls;
            m.clone()
        };
        self.changed();
        Some(m)
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    pub fn removed(&self) -> Vec<u64> {
        self.removed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Replaces the removed ids (from the db).
    pub fn set_removed(&self, ids: Vec<u64>) {
        *self.removed.write().unwrap_or_else(|e| e.into_inner()) = ids.into_iter().collect();
        self.changed();
    }

    pub fn list(&self) -> Vec<Member> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Member> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Replaces every member (from a db snapshot the leader sent).
    pub fn replace(&self, members: Vec<Member>) {
        *self.write() = members.into_iter().map(|m| (m.id, m)).collect();
        self.changed();
    }

    /// How many members the cluster has.
    pub fn count(&self) -> usize {
        self.members.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sets a member's client URLs (its published attributes); false if it
    /// is not a member.
    pub fn set_client_urls(&self, id: u64, name: &str, urls: Vec<String>) -> Option<Member> {
        let m = {
            let mut g = self.write();
            let m = g.get_mut(&id)?;
            if !name.is_empty() {
                m.name = name.to_string();
            }
            m.client_urls = urls;
            m.clone()
        };
        self.changed();
        Some(m)
    }
}

/// The ids in the db's `members_removed` bucket.
pub fn load_removed(view: &strata_engine::backend::ReadView) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for (k, _) in view.range(Bucket::MembersRemoved, &[], &[], 0)? {
        let b: [u8; 8] = k
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("members_removed key of {} bytes", k.len()))?;
        out.push(u64::from_be_bytes(b));
    }
    Ok(out)
}

/// The members stored in the db (empty for a db that has none yet).
pub fn load(backend: &Backend) -> anyhow::Result<Vec<Member>> {
    let view = backend.read();
    let mut out = Vec::new();
    for (_, v) in view.range(Bucket::Members, &[], &[], 0)? {
        let m = pb::Member::decode(v.as_slice())
            .map_err(|e| anyhow::anyhow!("members bucket entry: {e}"))?;
        out.push(Member::from_pb(m));
    }
    Ok(out)
}

/// A member's key in the members bucket.
pub fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Writes the members into the db and commits (bootstrap).
pub fn store(backend: &Backend, members: &[Member]) -> anyhow::Result<()> {
    {
        let mut b = backend.batch()?;
        for m in members {
            b.put(Bucket::Members, &key(m.id), &m.to_pb().encode_to_vec())?;
        }
    }
    backend.force_commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd_defaults() {
        // etcd's default member (name default, peer URL
        // http://localhost:2380, token etcd-cluster) is 8e9e05c52164694d in
        // cluster cdf818194e3a8c32.
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(id, 0x8e9e05c52164694d);
        assert_eq!(cluster_id(&[id]), 0xcdf818194e3a8c32);
    }

    #[test]
    fn initial_cluster_ids_are_etcds() {
        // etcd's default one-member cluster.
        let ms = from_initial_cluster("default=http://localhost:2380", "etcd-cluster").unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].id, 0x8e9e05c52164694d);
        assert_eq!(cluster_id_of(&ms), 0xcdf818194e3a8c32);
        let ms = from_initial_cluster(
            "a=http://127.0.0.1:1,b=http://127.0.0.1:2,a=http://127.0.0.1:3",
            "t",
        )
        .unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].peer_urls.len(), 2);
        assert!(from_initial_cluster("a=http://x:1,b=http://x:1", "t").is_err());
    }
}
