//! Access tokens (short-lived JWTs) and refresh tokens (opaque, stored only as a hash).
//!
//! Access tokens are HS256 JWTs with `iss`, `aud`, `sub`, `exp`, `iat`, `nbf`, `jti`, `roles`,
//! the session id `sid` and the user's `email`, and carry the signing key's `kid` in their header. The algorithm is
//! pinned: a token whose header names any other algorithm (`none` included) is refused. Keys come
//! from Secrets Manager as a set addressed by `kid`, so a new key can be added, made active, and
//! the old one retired once the last token it signed has expired.

use crate::config::{Env, InitError};
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::Role;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;

/// Lifetime of an access token.
pub const ACCESS_TOKEN_TTL_SECONDS: i64 = 15 * 60;
/// Lifetime of a refresh token (each rotation issues a fresh one with a fresh lifetime).
pub const REFRESH_TOKEN_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Clock skew tolerated when checking `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 5;
/// The one algorithm access tokens use.
const ALGORITHM: Algorithm = Algorithm::HS256;
/// Shortest signing key accepted (256 bits).
const MIN_KEY_BYTES: usize = 32;

/// The signing keys, by `kid`. Never printed.
#[derive(Clone)]
pub struct SigningKeys {
    active_kid: String,
    keys: HashMap<String, Vec<u8>>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("active_kid", &self.active_kid)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysDocument {
    active_kid: String,
    keys: Vec<KeyDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDocument {
    kid: String,
    /// Standard base64 of the raw key bytes.
    secret: String,
}

impl SigningKeys {
    /// The active key: its kid and bytes (what signs).
    pub fn active(&self) -> (&str, &[u8]) {
        (&self.active_kid, &self.keys[&self.active_kid])
    }

    /// The key named `kid`, if the set holds it (what verifies).
    pub fn get(&self, kid: &str) -> Option<&[u8]> {
        self.keys.get(kid).map(Vec::as_slice)
    }

    /// The kids in the set, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Rotation, phase 1: adds a random 256-bit key `kid` that verifies but does not sign yet.
    ///
    /// # Errors
    /// When the set already has a key `kid`.
    pub fn add_random(&mut self, kid: &str) -> Result<(), String> {
        use rand::RngCore;
        if self.keys.contains_key(kid) {
            return Err(format!("the set already has a key {kid}"));
        }
        let mut bytes = vec![0_u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        self.keys.insert(kid.to_owned(), bytes);
        Ok(())
    }

    /// Rotation, phase 2: key `kid`, already in the set, signs from now on.
    ///
    /// # Errors
    /// When the set has no key `kid`.
    pub fn activate(&mut self, kid: &str) -> Result<(), String> {
        if !self.keys.contains_key(kid) {
            return Err(format!("the set has no key {kid}"));
        }
        kid.clone_into(&mut self.active_kid);
        Ok(())
    }

    /// Rotation, phase 3: removes every key but the active one; returns the removed kids.
    pub fn retire_inactive(&mut self) -> Vec<String> {
        let mut removed: Vec<String> = self.keys.keys().filter(|k| **k != self.active_kid).cloned().collect();
        removed.sort_unstable();
        self.keys.retain(|kid, _| *kid == self.active_kid);
        removed
    }

    /// Parses the secret's JSON: `{"active_kid": "...", "keys": [{"kid": "...", "secret": "<base64>"}]}`.
    ///
    /// # Errors
    /// A reason (never containing key material) when the document is malformed, a key is shorter
    /// than 256 bits, or the active kid has no key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let doc: KeysDocument = serde_json::from_str(text).map_err(|e| format!("not a key set document: {e}"))?;
        let mut keys = HashMap::new();
        for k in doc.keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.secret.trim())
                .map_err(|_| format!("key {} is not base64", k.kid))?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(format!("key {} is shorter than 256 bits", k.kid));
            }
            keys.insert(k.kid, bytes);
        }
        if !keys.contains_key(&doc.active_kid) {
            return Err(format!("active_kid {} has no key", doc.active_kid));
        }
        Ok(Self { active_kid: doc.active_kid, keys })
    }

    /// A key set with a single random key, for tests and local set-up.
    pub fn random(kid: &str) -> Self {
        use rand::RngCore;
        let mut bytes = vec![0_u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self { active_kid: kid.to_owned(), keys: HashMap::from([(kid.to_owned(), bytes)]) }
    }

    /// The JSON document for this key set (what the secret stores).
    pub fn to_json(&self) -> String {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|(kid, k)| {
                serde_json::json!({"kid": kid, "secret": base64::engine::general_purpose::STANDARD.encode(k)})
            })
            .collect();
        serde_json::json!({"active_kid": self.active_kid, "keys": keys}).to_string()
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub roles: Vec<Role>,
    pub sid: String,
    /// The user's e-mail address as it was when the token was issued: what Revio's checkout
    /// shows, so starting a deposit needs no read of the user. Absent from older tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Why an access token was refused. All of them answer 401 alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct IssuedAccessToken {
    pub token: String,
    pub expires_in: i64,
}

/// Issues and verifies access tokens.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    keys: SigningKeys,
    issuer: String,
    audience: String,
}

impl AccessTokens {
    /// Tokens signed with `keys` for this issuer and audience.
    pub fn new(keys: SigningKeys, issuer: &str, audience: &str) -> Self {
        Self { keys, issuer: issuer.to_owned(), audience: audience.to_owned() }
    }

    /// Reads `JWT_KEYS_SECRET_ID`, `JWT_ISSUER`, `JWT_AUDIENCE` and loads the key set.
    ///
    /// # Errors
    /// [`InitError`] naming the missing variable or the unloadable secret.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let secret_id = env.require("JWT_KEYS_SECRET_ID")?;
        let issuer = env.require("JWT_ISSUER")?;
        let audience = env.require("JWT_AUDIENCE")?;
        let text = crate::secrets::load(aws, &secret_id).await?;
        let keys = SigningKeys::from_json(text.expose())
            .map_err(|reason| InitError::Secret { id: secret_id.clone(), reason })?;
        Ok(Self::new(keys, &issuer, &audience))
    }

    /// Signs an access token for this user with the active key.
    ///
    /// # Errors
    /// Only if signing fails, which is an internal error.
    pub fn issue(
        &self,
        user: &UserId,
        email: &str,
        roles: &[Role],
        session: &SessionId,
    ) -> Result<IssuedAccessToken, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_string(),
            exp: now + ACCESS_TOKEN_TTL_SECONDS,
            iat: now,
            nbf: now,
            jti: ulid::Ulid::new().to_string(),
            roles: roles.to_vec(),
            sid: session.to_string(),
            email: Some(email.to_owned()),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.keys.active_kid.clone());
        let key = &self.keys.keys[&self.keys.active_kid];
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key))?;
        Ok(IssuedAccessToken { token, expires_in: ACCESS_TOKEN_TTL_SECONDS })
    }

    /// Verifies signature, algorithm, `kid`, `iss`, `aud`, `exp` and `nbf`.
    ///
    /// # Errors
    /// A [`TokenError`] saying why; callers answer every one of them with 401.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Invalid("unexpected algorithm".into()));
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &DecodingKey::from_secret(key), &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    other => TokenError::Invalid(format!("{other:?}")),
                }
            })?;
        Ok(data.claims)
    }
}

/// A new opaque refresh token and the hash under which it is stored.
pub struct NewRefreshToken {
    /// Given to the client once; never stored.
    pub token: String,
    /// SHA-256 of the token, hex; the only form kept.
    pub hash: String,
}

impl NewRefreshToken {
    /// 256 random bits, base64url, prefixed `rt_`.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = format!("rt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        let hash = hash_refresh_token(&token);
        Self { token, hash }
    }
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AccessTokens {
        AccessTokens::new(SigningKeys::random("k1"), "https://purse.test", "purse-api")
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let t = tokens();
        let user = UserId::generate();
        let issued = t.issue(&user, "ada@example.com", &[Role::User], &SessionId::generate()).unwrap();
        let claims = t.verify(&issued.token).unwrap();
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.roles, vec![Role::User]);
        assert_eq!(claims.email.as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn a_two_phase_rotation_verifies_old_and_new_tokens_until_the_old_key_is_retired() {
        let mut keys = SigningKeys::random("k1");
        let old = AccessTokens::new(keys.clone(), "https://purse.test", "purse-api");
        let user = UserId::generate();
        let before = old.issue(&user, "ada@example.com", &[Role::User], &SessionId::generate()).unwrap().token;

        // Phase 1: the new key is published; it verifies, the old one still signs.
        keys.add_random("k2").unwrap();
        assert!(keys.add_random("k2").is_err());
        let published =
            AccessTokens::new(SigningKeys::from_json(&keys.to_json()).unwrap(), "https://purse.test", "purse-api");
        assert_eq!(keys.active().0, "k1");
        assert!(published.verify(&before).is_ok());

        // Phase 2: the new key signs; tokens of both keys verify.
        keys.activate("k2").unwrap();
        assert!(keys.activate("k9").is_err());
        let switched = AccessTokens::new(keys.clone(), "https://purse.test", "purse-api");
        let after = switched.issue(&user, "ada@example.com", &[Role::User], &SessionId::generate()).unwrap().token;
        assert!(switched.verify(&before).is_ok() && switched.verify(&after).is_ok());
        assert!(published.verify(&after).is_ok(), "functions still holding the published set verify new tokens");
        assert!(old.verify(&after).is_err(), "why phase 1 must reach every function before phase 2");

        // Phase 3: the old key is retired; its tokens are refused.
        assert_eq!(keys.retire_inactive(), vec!["k1".to_owned()]);
        assert_eq!(keys.kids(), vec!["k2"]);
        let retired = AccessTokens::new(keys, "https://purse.test", "purse-api");
        assert_eq!(retired.verify(&before).unwrap_err(), TokenError::UnknownKey);
        assert!(retired.verify(&after).is_ok());
    }

    #[test]
    fn the_key_set_document_round_trips_and_rejects_short_keys() {
        let keys = SigningKeys::random("k1");
        assert!(SigningKeys::from_json(&keys.to_json()).is_ok());
        let short = r#"{"active_kid":"a","keys":[{"kid":"a","secret":"c2hvcnQ="}]}"#;
        assert!(SigningKeys::from_json(short).unwrap_err().contains("shorter"));
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let keys = SigningKeys::random("k1");
        let json = keys.to_json();
        let secret: serde_json::Value = serde_json::from_str(&json).unwrap();
        let material = secret["keys"][0]["secret"].as_str().unwrap().to_owned();
        assert!(!format!("{keys:?}").contains(&material));
    }

    #[test]
    fn refresh_tokens_are_stored_only_as_a_hash() {
        let t = NewRefreshToken::generate();
        assert_ne!(t.token, t.hash);
        assert_eq!(hash_refresh_token(&t.token), t.hash);
        assert_eq!(t.hash.len(), 64);
    }
}
