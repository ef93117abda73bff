//! The auth store: users, roles and their key permissions, whether auth is
//! on, and the auth revision; who a request comes from (token or client
//! certificate) and whether they may do what they ask. etcd's semantics
//! throughout (auth/store.go, etcdserver/apply_auth.go).
//!
//! Storage (etcd's buckets and encodings): `auth` holds `authEnabled`
//! (one byte, 1 or 0) and `authRevision` (8 bytes big-endian); `authUsers`
//! maps a name to an `authpb.User` (bcrypt hash), `authRoles` a name to an
//! `authpb.Role`.
//!
//! Invariants:
//! - Only the applier changes the store ([`AuthStore::apply`], inside the
//!   entry's own transaction), so every member holds the same users,
//!   roles and revision at the same index. Memory mirrors the buckets and
//!   is rebuilt from them at start and after a snapshot install.
//! - Every change bumps the auth revision except enabling auth (as etcd).
//!   A request carries the revision its credentials were checked at; a
//!   write whose revision is older than the store's when it applies is
//!   refused ("revision of auth store is old"), so a revoked permission
//!   never lets a write through.
//! - Password hashes are computed and checked by the member that received
//!   the request, never in the apply loop; at most [`HASHERS`] bcrypt runs
//!   at once, and an unknown user costs the same bcrypt run as a wrong
//!   password.
//! - With auth off, every check passes and costs one atomic load.

pub mod password;
pub mod perms;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use prost::Message;
use strata_engine::backend::{Bucket, ReadView};
use strata_proto::authpb;
use strata_proto::etcdserverpb as pb;

use crate::errors::EtcdError;
use perms::Perms;
use token::Tokens;

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";
const ENABLED_KEY: &[u8] = b"authEnabled";
const REVISION_KEY: &[u8] = b"authRevision";

/// Concurrent bcrypt runs allowed (each is tens of milliseconds of CPU).
pub const HASHERS: usize = 2;

/// Who a request comes from, and the auth revision that was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// One change to a bucket, made in the applying entry's transaction.
pub type Write = (Bucket, Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct State {
    users: BTreeMap<String, authpb::User>,
    roles: BTreeMap<String, authpb::Role>,
    /// Each user's permissions, merged over their roles.
    perms: HashMap<String, Perms>,
}

impl State {
    fn refresh_perms(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, u)| {
                let p = Perms::merge(u.roles.iter().filter_map(|r| roles.get(r)));
                (name.clone(), p)
            })
            .collect();
    }
}

fn has_root_role(u: &authpb::User) -> bool {
    u.roles.iter().any(|r| r == ROOT_ROLE)
}

fn user_write(u: &authpb::User) -> Write {
    (Bucket::AuthUsers, u.name.clone(), Some(u.encode_to_vec()))
}

fn role_write(r: &authpb::Role) -> Write {
    (Bucket::AuthRoles, r.name.clone(), Some(r.encode_to_vec()))
}

/// The auth requests that go through raft.
pub enum Change {
    Enable,
    Disable,
    /// (name, simple token letters)
    Authenticate(String, String),
    UserAdd(pb::AuthUserAddRequest),
    UserDelete(pb::AuthUserDeleteRequest),
    UserChangePassword(pb::AuthUserChangePasswordRequest),
    UserGrantRole(pb::AuthUserGrantRoleRequest),
    UserRevokeRole(pb::AuthUserRevokeRoleRequest),
    RoleAdd(pb::AuthRoleAddRequest),
    RoleDelete(pb::AuthRoleDeleteRequest),
    RoleGrantPermission(pb::AuthRoleGrantPermissionRequest),
    RoleRevokePermission(pb::AuthRoleRevokePermissionRequest),
}

impl Change {
    /// etcd's needAdminPermission: every change but Authenticate needs
    /// the root role (once auth is on).
    fn needs_admin(&self) -> bool {
        !matches!(self, Change::Authenticate(..))
    }
}

pub struct AuthStore {
    enabled: AtomicBool,
    revision: AtomicU64,
    state: RwLock<State>,
    pub tokens: Tokens,
    pub bcrypt_cost: u32,
    pub hashing: tokio::sync::Semaphore,
}

impl AuthStore {
    pub fn new(tokens: Tokens, bcrypt_cost: u32) -> AuthStore {
        AuthStore {
            enabled: AtomicBool::new(false),
            revision: AtomicU64::new(0),
            state: RwLock::new(State::default()),
            tokens,
            bcrypt_cost,
            hashing: tokio::sync::Semaphore::new(HASHERS),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Rebuilds the store from the db (start, snapshot install).
    pub fn load(&self, view: &ReadView) -> anyhow::Result<()> {
        use anyhow::Context;
        let mut st = State::default();
        for (k, v) in view.range(Bucket::AuthUsers, &[], &[], 0)? {
            let u = authpb::User::decode(v.as_slice())
                .with_context(|| format!("authUsers entry {:?}", String::from_utf8_lossy(&k)))?;
            st.users
                .insert(String::from_utf8_lossy(&u.name).into_owned(), u);
        }
        for (k, v) in view.range(Bucket::AuthRoles, &[], &[], 0)? {
            let r = authpb::Role::decode(v.as_slice())
                .with_context(|| format!("authRoles entry {:?}", String::from_utf8_lossy(&k)))?;
            st.roles
                .insert(String::from_utf8_lossy(&r.name).into_owned(), r);
        }
        st.refresh_perms();
        let enabled = view
            .get(Bucket::Auth, ENABLED_KEY)?
            .is_some_and(|v| v == [1]);
        let revision = match view.get(Bucket::Auth, REVISION_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .context("authRevision is not 8 bytes")?,
            ),
            // A store that never changed is at revision 1, as etcd's
            // starts (`etcdctl auth status` on a new cluster shows 1).
            None => 1,
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = st;
        self.revision.store(revision, Ordering::Release);
        if !enabled {
            self.tokens.clear();
        }
        self.enabled.store(enabled, Ordering::Release);
        Ok(())
    }

    // ---- checks (etcd's isOpPermitted and IsAdminPermitted) ----

    /// Whether `who` may touch `[key, range_end)` for reading or writing.
    pub fn check_op(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), EtcdError> {
        if !self.enabled() {
            return Ok(());
        }
        let who = match who {
            Some(w) if w.revision != 0 => w,
            _ => return Err(EtcdError::UserEmpty),
        };
        if who.revision < self.revision() {
            return Err(EtcdError::AuthOldRevision);
        }
        let st = self.read();
        let Some(user) = st.users.get(&who.username) else {
            return Err(EtcdError::PermissionDenied);
        };
        if has_root_role(user) {
            return Ok(());
        }
        let ok = st.perms.get(&who.username).is_some_and(|p| {
            if write {
                p.can_write(key, range_end)
            } else {
                p.can_read(key, range_end)
            }
        });
        if ok {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    pub fn check_read(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        end: &[u8],
    ) -> Result<(), EtcdError> {
        self.check_op(who, key, end, false)
    }

    pub fn check_write(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        end: &[u8],
    ) -> Result<(), EtcdError> {
        self.check_op(who, key, end, true)
    }

    /// Whether `who` holds the root role.
    pub fn check_admin(&self, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if !self.enabled() {
            return Ok(());
        }
        let who = match who {
            Some(w) if !w.username.is_empty() => w,
            _ => return Err(EtcdError::UserEmpty),
        };
        match self.read().users.get(&who.username) {
            None => Err(EtcdError::UserNotFound),
            Some(u) if has_root_role(u) => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    /// Every compare and every op of a txn, nested txns too.
    pub fn check_txn(&self, who: Option<&AuthInfo>, t: &pb::TxnRequest) -> Result<(), EtcdError> {
        if !self.enabled() {
            return Ok(());
        }
        for c in &t.compare {
            self.check_read(who, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            use pb::request_op::Request as R;
            match &op.request {
                Some(R::RequestRange(r)) => self.check_read(who, &r.key, &r.range_end)?,
                Some(R::RequestPut(p)) => {
                    self.check_write(who, &p.key, &[])?;
                    if p.prev_kv {
                        self.check_read(who, &p.key, &[])?;
                    }
                }
                Some(R::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.check_read(who, &d.key, &d.range_end)?;
                    }
                    self.check_write(who, &d.key, &d.range_end)?;
                }
                Some(R::RequestTxn(inner)) => self.check_txn(who, inner)?,
                None => {}
            }
        }
        Ok(())
    }

    /// etcd's checkLeasePuts: a lease may be revoked, or attached to a new
    /// key, only by someone who may write every key already on it.
    pub fn check_lease_keys(
        &self,
        who: Option<&AuthInfo>,
        keys: &[Vec<u8>],
    ) -> Result<(), EtcdError> {
        if !self.enabled() || self.check_admin(who).is_ok() {
            return Ok(());
        }
        for k in keys {
            self.check_write(who, k, &[])?;
        }
        Ok(())
    }

    // ---- reads (served locally, after the read barrier) ----

    pub fn user_get(&self, who: Option<&AuthInfo>, name: &str) -> Result<Vec<String>, EtcdError> {
        if let Err(e) = self.check_admin(who) {
            if who.is_none_or(|w| w.username != name) {
                return Err(e);
            }
        }
        let st = self.read();
        let u = st.users.get(name).ok_or(EtcdError::UserNotFound)?;
        Ok(u.roles.clone())
    }

    pub fn user_list(&self, who: Option<&AuthInfo>) -> Result<Vec<String>, EtcdError> {
        self.check_admin(who)?;
        Ok(self.read().users.keys().cloned().collect())
    }

    pub fn role_get(
        &self,
        who: Option<&AuthInfo>,
        role: &str,
    ) -> Result<Vec<authpb::Permission>, EtcdError> {
        if let Err(e) = self.check_admin(who) {
            let st = self.read();
            let holds = who
                .and_then(|w| st.users.get(&w.username))
                .is_some_and(|u| u.roles.iter().any(|r| r == role));
            if !holds {
                return Err(e);
            }
        }
        let st = self.read();
        let r = st.roles.get(role).ok_or(EtcdError::RoleNotFound)?;
        Ok(r.key_permission.clone())
    }

    pub fn role_list(&self, who: Option<&AuthInfo>) -> Result<Vec<String>, EtcdError> {
        self.check_admin(who)?;
        Ok(self.read().roles.keys().cloned().collect())
    }

    /// The stored hash of a user who may log in with a password, and the
    /// revision it was read at; None for an unknown user or one without a
    /// password (both are "authentication failed").
    pub fn password_hash(&self, name: &str) -> Option<(Vec<u8>, u64)> {
        let st = self.read();
        let u = st.users.get(name)?;
        if u.options.as_ref().is_some_and(|o| o.no_password) {
            return None;
        }
        Some((u.password.clone(), self.revision()))
    }

    // ---- changes (the applier's) ----

    fn bump(&self, writes: &mut Vec<Write>) {
        let rev = self.revision.fetch_add(1, Ordering::AcqRel) + 1;
        writes.push((
            Bucket::Auth,
            REVISION_KEY.to_vec(),
            Some(rev.to_be_bytes().to_vec()),
        ));
    }

    /// Applies one auth change for `who` (None: no credentials) at raft
    /// index `index`; returns the writes for the entry's transaction.
    pub fn apply(
        &self,
        c: Change,
        who: Option<&AuthInfo>,
        index: u64,
    ) -> Result<Vec<Write>, EtcdError> {
        if c.needs_admin() {
            self.check_admin(who)?;
        }
        let mut w = Vec::new();
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        match c {
            Change::Enable => {
                if self.enabled() {
                    return Ok(w);
                }
                let root = st.users.get(ROOT_USER).ok_or(EtcdError::RootUserNotExist)?;
                if !has_root_role(root) {
                    return Err(EtcdError::RootRoleNotExist);
                }
                w.push((Bucket::Auth, ENABLED_KEY.to_vec(), Some(vec![1])));
                self.enabled.store(true, Ordering::Release);
                tracing::info!("enabled authentication");
            }
            Change::Disable => {
                if !self.enabled() {
                    return Ok(w);
                }
                w.push((Bucket::Auth, ENABLED_KEY.to_vec(), Some(vec![0])));
                self.bump(&mut w);
                self.enabled.store(false, Ordering::Release);
                self.tokens.clear();
                tracing::info!("disabled authentication");
            }
            Change::Authenticate(name, letters) => {
                if !self.enabled() {
                    return Err(EtcdError::AuthNotEnabled);
                }
                let u = st.users.get(&name).ok_or(EtcdError::AuthFailed)?;
                if u.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(EtcdError::AuthFailed);
                }
                self.tokens.record(&letters, index, &name);
                // Nobody's permissions changed.
                return Ok(w);
            }
            Change::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if st.users.contains_key(&r.name) {
                    return Err(EtcdError::UserAlreadyExist);
                }
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                let u = authpb::User {
                    name: r.name.clone().into_bytes(),
                    password: if no_password {
                        Vec::new()
                    } else {
                        r.hashed_password.into_bytes()
                    },
                    roles: Vec::new(),
                    options: Some(r.options.unwrap_or_default()),
                };
                w.push(user_write(&u));
                st.users.insert(r.name.clone(), u);
                self.bump(&mut w);
                tracing::info!(user_name = %r.name, "added a user");
            }
            Change::UserDelete(r) => {
                if self.enabled() && r.name == ROOT_USER {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                st.users.remove(&r.name).ok_or(EtcdError::UserNotFound)?;
                w.push((Bucket::AuthUsers, r.name.clone().into_bytes(), None));
                self.bump(&mut w);
                self.tokens.invalidate_user(&r.name);
                tracing::info!(user_name = %r.name, "deleted a user");
            }
            Change::UserChangePassword(r) => {
                let u = st.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
                u.password = r.hashed_password.into_bytes();
                w.push(user_write(u));
                self.bump(&mut w);
                self.tokens.invalidate_user(&r.name);
                tracing::info!(user_name = %r.name, "changed a password of a user");
            }
            Change::UserGrantRole(r) => {
                if !st.users.contains_key(&r.user) {
                    return Err(EtcdError::UserNotFound);
                }
                if r.role != ROOT_ROLE && !st.roles.contains_key(&r.role) {
                    return Err(EtcdError::RoleNotFound);
                }
                let u = st.users.get_mut(&r.user).ok_or(EtcdError::UserNotFound)?;
                if let Err(at) = u.roles.binary_search(&r.role) {
                    u.roles.insert(at, r.role.clone());
                    w.push(user_write(u));
                    self.bump(&mut w);
                    tracing::info!(user_name = %r.user, role_name = %r.role, "granted a role to a user");
                }
            }
            Change::UserRevokeRole(r) => {
                if self.enabled() && r.name == ROOT_USER && r.role == ROOT_ROLE {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let u = st.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
                let before = u.roles.len();
                u.roles.retain(|x| *x != r.role);
                if u.roles.len() == before {
                    return Err(EtcdError::RoleNotGranted);
                }
                w.push(user_write(u));
                self.bump(&mut w);
                tracing::info!(user_name = %r.name, role_name = %r.role, "revoked a role from a user");
            }
            Change::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if st.roles.contains_key(&r.name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                let role = authpb::Role {
                    name: r.name.clone().into_bytes(),
                    key_permission: Vec::new(),
                };
                w.push(role_write(&role));
                st.roles.insert(r.name.clone(), role);
                self.bump(&mut w);
                tracing::info!(role_name = %r.name, "created a role");
            }
            Change::RoleDelete(r) => {
                if self.enabled() && r.role == ROOT_ROLE {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                st.roles.remove(&r.role).ok_or(EtcdError::RoleNotFound)?;
                w.push((Bucket::AuthRoles, r.role.clone().into_bytes(), None));
                for u in st.users.values_mut() {
                    let before = u.roles.len();
                    u.roles.retain(|x| *x != r.role);
                    if u.roles.len() != before {
                        w.push(user_write(u));
                    }
                }
                self.bump(&mut w);
                tracing::info!(role_name = %r.role, "deleted a role");
            }
            Change::RoleGrantPermission(r) => {
                let perm = r.perm.ok_or(EtcdError::PermissionNotGiven)?;
                let role = st.roles.get_mut(&r.name).ok_or(EtcdError::RoleNotFound)?;
                let same = role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end);
                match same {
                    Some(p) => p.perm_type = perm.perm_type,
                    None => {
                        let at = role.key_permission.partition_point(|p| p.key <= perm.key);
                        role.key_permission.insert(at, perm);
                    }
                }
                w.push(role_write(role));
                self.bump(&mut w);
                tracing::info!(role_name = %r.name, "granted/updated a permission to a role");
            }
            Change::RoleRevokePermission(r) => {
                let role = st.roles.get_mut(&r.role).ok_or(EtcdError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| !(p.key == r.key && p.range_end == r.range_end));
                if role.key_permission.len() == before {
                    return Err(EtcdError::PermissionNotGranted);
                }
                w.push(role_write(role));
                self.bump(&mut w);
                tracing::info!(role_name = %r.role, "revoked a permission on range");
            }
        }
        st.refresh_perms();
        Ok(w)
    }
}
