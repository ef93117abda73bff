//! Passwords: bcrypt hashes as etcd stores them (`$2a$`/`$2b$`, cost
//! `--bcrypt-cost`, default 10), computed and checked off the async
//! threads, at most [`super::HASHERS`] at a time.
//!
//! A login for an unknown user (or one without a password) still runs one
//! bcrypt check, against a hash of nothing anyone knows, so its answer
//! takes as long as a wrong password's and does not tell which names
//! exist. bcrypt's own comparison of the digests is constant-time.

use std::sync::OnceLock;

use super::AuthStore;
use crate::errors::EtcdError;

/// A hash no password matches in practice (of 32 random bytes drawn at
/// first use), at the store's cost.
fn decoy(cost: u32) -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 32] = rand::random();
        bcrypt::hash(secret, cost).unwrap_or_default()
    })
}

impl AuthStore {
    /// The bcrypt hash of `password`.
    pub async fn hash_password(&self, password: String) -> Result<String, EtcdError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| EtcdError::Stopped)?;
        let cost = self.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()))?
            .map_err(|e| EtcdError::Internal(format!("hashing a password: {e}")))
    }

    /// etcd's CheckPassword: the auth revision the password was checked
    /// at, or "authentication failed".
    pub async fn check_password(&self, name: &str, password: String) -> Result<u64, EtcdError> {
        if !self.enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let found = self.password_hash(name);
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| EtcdError::Stopped)?;
        let cost = self.bcrypt_cost;
        let (hash, revision) = match found {
            Some((h, rev)) => (String::from_utf8_lossy(&h).into_owned(), Some(rev)),
            None => (decoy(cost).to_string(), None),
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()))?
            .unwrap_or(false);
        match revision {
            Some(rev) if ok => Ok(rev),
            _ => {
                tracing::info!(user_name = name, "invalid password or user");
                Err(EtcdError::AuthFailed)
            }
        }
    }
}
