//! Auth tokens, as etcd's `--auth-token` names them.
//!
//! - `simple` (default): `<16 random letters>.<raft index>`. The letters
//!   are drawn by the member that received Authenticate; the index is the
//!   Authenticate entry's. Every member records the token when it applies
//!   that entry, so a token works on any member once it has applied it
//!   (a member behind waits for it). A token lives `--auth-token-ttl`
//!   seconds past its last use; disabling auth, deleting the user or
//!   changing their password drops it. Tokens are kept by index (not a
//!   secret) and their letters compared in constant time.
//! - `jwt,pub-key=F,priv-key=F,sign-method=M[,ttl=D]`: a signed JWT with
//!   etcd's claims (`username`, `revision`, `exp`). A member with only
//!   the public key verifies tokens but cannot issue them. The key files
//!   may hold a certificate (its public key is used), as etcd allows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use subtle::ConstantTimeEq;

use super::AuthInfo;
use crate::duration::parse_duration;

/// The length of a simple token's random part.
const SIMPLE_LETTERS: usize = 16;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

struct Simple {
    letters: String,
    user: String,
    expires: Instant,
}

/// A parsed token that still has to be looked up.
pub enum Parsed {
    /// A simple token issued at this raft index.
    Simple {
        index: u64,
    },
    /// A verified JWT.
    Jwt(AuthInfo),
    Invalid,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

struct Jwt {
    alg: Algorithm,
    encode: Option<EncodingKey>,
    decode: DecodingKey,
    ttl: Duration,
}

enum Kind {
    Simple,
    Jwt(Box<Jwt>),
}

pub struct Tokens {
    kind: Kind,
    ttl: Duration,
    simple: Mutex<HashMap<u64, Simple>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// etcd's jwt sign-method names.
fn algorithm(name: &str) -> anyhow::Result<Algorithm> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        other => bail!("auth: invalid auth signature method {other:?}"),
    })
}

/// The public key of a PEM file that holds a certificate, as DER the
/// decoding key takes (the subject public key's bits).
fn cert_public_key(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    if p.label != "CERTIFICATE" {
        return None;
    }
    let cert = p.parse_x509().ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

fn decoding_key(alg: Algorithm, pem: &[u8]) -> anyhow::Result<DecodingKey> {
    use Algorithm::*;
    if let Some(der) = cert_public_key(pem) {
        return Ok(match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_der(&der),
            ES256 | ES384 => DecodingKey::from_ec_der(&der),
            EdDSA => DecodingKey::from_ed_der(&der),
            _ => bail!("auth: a certificate cannot hold an HMAC key"),
        });
    }
    Ok(match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem)?,
        ES256 | ES384 => DecodingKey::from_ec_pem(pem)?,
        EdDSA => DecodingKey::from_ed_pem(pem)?,
        HS256 | HS384 | HS512 => DecodingKey::from_secret(pem),
    })
}

fn encoding_key(alg: Algorithm, pem: &[u8]) -> anyhow::Result<EncodingKey> {
    use Algorithm::*;
    Ok(match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(pem)?,
        ES256 | ES384 => EncodingKey::from_ec_pem(pem)?,
        EdDSA => EncodingKey::from_ed_pem(pem)?,
        HS256 | HS384 | HS512 => EncodingKey::from_secret(pem),
    })
}

impl Jwt {
    /// Parses etcd's `jwt,...` options (after the `jwt`).
    fn parse(opts: &[&str]) -> anyhow::Result<Jwt> {
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, None);
        for o in opts {
            let (k, v) = o
                .split_once('=')
                .with_context(|| format!("auth: invalid auth options {o:?}"))?;
            match k {
                "pub-key" => public = Some(v),
                "priv-key" => private = Some(v),
                "sign-method" => method = Some(v),
                "ttl" => ttl = Some(parse_duration(v).map_err(anyhow::Error::msg)?),
                other => bail!("auth: invalid auth options: unknown option {other:?}"),
            }
        }
        let alg = algorithm(method.context("auth: invalid auth signature method \"\"")?)?;
        let read = |f: &str| std::fs::read(f).with_context(|| format!("reading jwt key {f}"));
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        let (encode, decode) = match (private, public) {
            (Some(p), _) if hmac => {
                let k = read(p)?;
                (Some(encoding_key(alg, &k)?), decoding_key(alg, &k)?)
            }
            (Some(p), Some(q)) => {
                let (pk, qk) = (read(p)?, read(q)?);
                (Some(encoding_key(alg, &pk)?), decoding_key(alg, &qk)?)
            }
            (None, Some(q)) if !hmac => (None, decoding_key(alg, &read(q)?)?),
            (Some(_), None) => bail!("auth: missing key data: jwt needs pub-key to verify tokens"),
            _ => bail!("auth: missing key data"),
        };
        let jwt = Jwt {
            alg,
            encode,
            decode,
            ttl: ttl.unwrap_or(Duration::from_secs(300)),
        };
        // A pair that does not match would issue tokens nobody accepts.
        if jwt.encode.is_some() {
            let probe = jwt.sign("probe", 1)?;
            if jwt.verify(&probe).is_none() {
                bail!("auth: public and private keys don't match");
            }
        }
        Ok(jwt)
    }

    fn sign(&self, user: &str, revision: u64) -> anyhow::Result<String> {
        let key = self
            .encode
            .as_ref()
            .context("auth: token signing attempted with verify-only key")?;
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp: now_secs() + self.ttl.as_secs().max(1),
        };
        Ok(jsonwebtoken::encode(&Header::new(self.alg), &claims, key)?)
    }

    fn verify(&self, token: &str) -> Option<AuthInfo> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.validate_exp = true;
        v.required_spec_claims = ["exp".to_string()].into();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decode, &v).ok()?;
        Some(AuthInfo {
            username: data.claims.username,
            revision: data.claims.revision,
        })
    }
}

impl Tokens {
    /// From `--auth-token` and `--auth-token-ttl` (seconds, for simple
    /// tokens).
    pub fn new(spec: &str, simple_ttl_secs: u64) -> anyhow::Result<Tokens> {
        let mut parts = spec.split(',');
        let kind = match parts.next().unwrap_or("") {
            "simple" | "" => Kind::Simple,
            "jwt" => Kind::Jwt(Box::new(Jwt::parse(&parts.collect::<Vec<_>>())?)),
            other => bail!("auth: invalid auth options: unknown token type {other:?}"),
        };
        let ttl = if simple_ttl_secs == 0 {
            300
        } else {
            simple_ttl_secs
        };
        Ok(Tokens {
            kind,
            ttl: Duration::from_secs(ttl),
            simple: Mutex::new(HashMap::new()),
        })
    }

    fn simple(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Simple>> {
        self.simple.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_simple(&self) -> bool {
        matches!(self.kind, Kind::Simple)
    }

    /// The random part of a new simple token (empty for JWT).
    pub fn new_prefix(&self) -> String {
        if !self.is_simple() {
            return String::new();
        }
        use rand::RngExt;
        let mut rng = rand::rng();
        (0..SIMPLE_LETTERS)
            .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
            .collect()
    }

    /// Records the simple token an applied Authenticate issued (every
    /// member, at the entry's index).
    pub fn record(&self, letters: &str, index: u64, user: &str) {
        if !self.is_simple() || letters.is_empty() {
            return;
        }
        self.simple().insert(
            index,
            Simple {
                letters: letters.to_string(),
                user: user.to_string(),
                expires: Instant::now() + self.ttl,
            },
        );
    }

    /// The token Authenticate answers with.
    pub fn issue(
        &self,
        letters: &str,
        index: u64,
        user: &str,
        revision: u64,
    ) -> anyhow::Result<String> {
        match &self.kind {
            Kind::Simple => Ok(format!("{letters}.{index}")),
            Kind::Jwt(j) => j.sign(user, revision),
        }
    }

    pub fn parse(&self, token: &str) -> Parsed {
        match &self.kind {
            Kind::Simple => match token.split_once('.') {
                Some((letters, idx)) if letters.len() == SIMPLE_LETTERS => {
                    match idx.parse::<u64>() {
                        Ok(index) => Parsed::Simple { index },
                        Err(_) => Parsed::Invalid,
                    }
                }
                _ => Parsed::Invalid,
            },
            Kind::Jwt(j) => j.verify(token).map_or(Parsed::Invalid, Parsed::Jwt),
        }
    }

    /// The user of a simple token, renewing its lifetime; None if unknown
    /// or expired.
    pub fn simple_user(&self, token: &str, index: u64) -> Option<String> {
        let letters = token.split_once('.')?.0;
        let mut map = self.simple();
        let t = map.get_mut(&index)?;
        let now = Instant::now();
        if t.expires <= now {
            map.remove(&index);
            return None;
        }
        if !bool::from(t.letters.as_bytes().ct_eq(letters.as_bytes())) {
            return None;
        }
        t.expires = now + self.ttl;
        Some(t.user.clone())
    }

    /// Drops a user's simple tokens (deleted, or a new password).
    pub fn invalidate_user(&self, user: &str) {
        self.simple().retain(|_, t| t.user != user);
    }

    /// Drops every simple token (auth disabled).
    pub fn clear(&self) {
        self.simple().clear();
    }

    /// Drops expired simple tokens; returns how many are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut map = self.simple();
        map.retain(|_, t| t.expires > now);
        map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_match_letters_and_expire() {
        let t = Tokens::new("simple", 1).unwrap();
        let p = t.new_prefix();
        assert_eq!(p.len(), SIMPLE_LETTERS);
        t.record(&p, 7, "alice");
        let tok = t.issue(&p, 7, "alice", 3).unwrap();
        assert!(matches!(t.parse(&tok), Parsed::Simple { index: 7 }));
        assert_eq!(t.simple_user(&tok, 7).as_deref(), Some("alice"));
        let forged = format!("{}.7", "a".repeat(SIMPLE_LETTERS));
        assert_eq!(t.simple_user(&forged, 7), None);
        assert!(matches!(t.parse("nodot"), Parsed::Invalid));
        assert!(matches!(t.parse("short.7"), Parsed::Invalid));
        t.invalidate_user("alice");
        assert_eq!(t.simple_user(&tok, 7), None);
    }

    #[test]
    fn unknown_token_kinds_and_methods_are_refused() {
        assert!(Tokens::new("bogus", 0).is_err());
        assert!(Tokens::new("jwt,sign-method=XX999", 0).is_err());
        assert!(Tokens::new("jwt,sign-method=RS256", 0).is_err());
    }
}
