//! Personal data at rest: application-level encryption and keyed hashes.
//!
//! A PAN (and later a bank account number) is stored encrypted with AES-256-GCM under a key
//! from Secrets Manager, loaded once per cold start ([`PiiKeys::from_env`]). The ciphertext
//! names its key (`v1:<key id>:<base64 nonce‖ciphertext>`), so keys rotate by adding a new one
//! and making it active: old records keep decrypting with the key they name. The associated
//! data binds a ciphertext to its owner and purpose (`kyc:<user id>:pan`), so a ciphertext
//! copied onto another record does not decrypt.
//!
//! Uniqueness ("one PAN verifies one account") needs equality without the plaintext: a keyed
//! hash, HMAC-SHA256 under a separate key of the same secret, so nobody holding only the table
//! can test guesses (PANs have little entropy; a plain SHA-256 would be brute-forced).
//!
//! Why a key in Secrets Manager rather than KMS envelope encryption (`GenerateDataKey` per
//! record): it costs no network call per request (a KMS call would add a round trip to every
//! submission and every read of the masked value's source), and the secret itself is encrypted
//! by KMS in AWS with access logged when a function loads it. What we give up is a KMS audit
//! entry per decryption; nothing in Purse decrypts on a request path today (responses show
//! the masked form, stored beside the ciphertext).

use crate::config::{Env, InitError};
use crate::secrets::SecretString;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;
use std::fmt;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a value could not be decrypted. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext names key {0}, which is not loaded")]
    UnknownKey(String),
    #[error("ciphertext does not decrypt (wrong key, owner or purpose)")]
    Undecryptable,
}

/// The encryption keys by id, the active one, and the hashing key. Prints nothing secret.
#[derive(Clone)]
pub struct PiiKeys {
    active: String,
    keys: BTreeMap<String, [u8; 32]>,
    hash_key: [u8; 32],
}

impl fmt::Debug for PiiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiiKeys").field("active", &self.active).field("keys", &self.keys.len()).finish()
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Stored {
    active_key_id: String,
    keys: BTreeMap<String, String>,
    hash_key: String,
}

fn key32(text: &str) -> Option<[u8; 32]> {
    B64.decode(text.trim()).ok()?.try_into().ok()
}

impl PiiKeys {
    /// Parses the secret's JSON: `{"active_key_id": "k1", "keys": {"k1": "<base64 32 bytes>"},
    /// "hash_key": "<base64 32 bytes>"}`.
    ///
    /// # Errors
    /// A description of what is wrong (never a key).
    pub fn from_json(json: &str) -> Result<Self, String> {
        let stored: Stored = serde_json::from_str(json).map_err(|e| format!("not the expected JSON: {e}"))?;
        let mut keys = BTreeMap::new();
        for (id, k) in &stored.keys {
            if id.is_empty() || id.contains(':') {
                return Err(format!("key id {id:?} is empty or contains ':'"));
            }
            keys.insert(id.clone(), key32(k).ok_or_else(|| format!("key {id} is not 32 bytes of base64"))?);
        }
        if !keys.contains_key(&stored.active_key_id) {
            return Err(format!("active key {} is not among the keys", stored.active_key_id));
        }
        let hash_key = key32(&stored.hash_key).ok_or("hash_key is not 32 bytes of base64")?;
        Ok(Self { active: stored.active_key_id, keys, hash_key })
    }

    /// Fresh random keys (local stacks and tests), as the secret's JSON.
    pub fn random_json(key_id: &str) -> String {
        use rand::RngCore;
        let mut rng = rand::thread_rng();
        let mut k = [0_u8; 32];
        let mut h = [0_u8; 32];
        rng.fill_bytes(&mut k);
        rng.fill_bytes(&mut h);
        serde_json::to_string(&Stored {
            active_key_id: key_id.to_owned(),
            keys: BTreeMap::from([(key_id.to_owned(), B64.encode(k))]),
            hash_key: B64.encode(h),
        })
        .unwrap_or_default()
    }

    /// Loads the secret named by `PII_KEYS_SECRET_ID`.
    ///
    /// # Errors
    /// [`InitError`] naming the variable or the secret.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let id = env.require("PII_KEYS_SECRET_ID")?;
        let secret: SecretString = crate::secrets::load(aws, &id).await?;
        Self::from_json(secret.expose()).map_err(|reason| InitError::Secret { id, reason })
    }

    /// Encrypts `plaintext` under the active key, bound to `context` (owner and purpose).
    pub fn encrypt(&self, plaintext: &str, context: &str) -> String {
        use rand::RngCore;
        let key = &self.keys[&self.active];
        let cipher = Aes256Gcm::new(key.into());
        let mut nonce = [0_u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for inputs of this size.
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{}:{}", self.active, B64.encode(out))
    }

    /// Decrypts what [`PiiKeys::encrypt`] produced for the same `context`.
    ///
    /// # Errors
    /// [`PiiError`] when the text is malformed, names an unknown key, or does not authenticate.
    pub fn decrypt(&self, ciphertext: &str, context: &str) -> Result<String, PiiError> {
        let mut parts = ciphertext.splitn(3, ':');
        let (Some("v1"), Some(kid), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PiiError::Malformed);
        };
        let key = self.keys.get(kid).ok_or_else(|| PiiError::UnknownKey(kid.to_owned()))?;
        let bytes = B64.decode(data).map_err(|_| PiiError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(PiiError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| PiiError::Malformed)?;
        let plain = Aes256Gcm::new(key.into())
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: context.as_bytes() })
            .map_err(|_| PiiError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| PiiError::Undecryptable)
    }

    /// The keyed hash of a value for equality lookups (hex HMAC-SHA256 over `purpose:value`).
    pub fn keyed_hash(&self, purpose: &str, value: &str) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.hash_key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> PiiKeys {
        PiiKeys::from_json(&PiiKeys::random_json("k1")).unwrap()
    }

    #[test]
    fn a_value_decrypts_only_with_its_own_context() {
        let k = keys();
        let c = k.encrypt("ABCPV1111Q", "kyc-pan:usr_1");
        assert!(!c.contains("ABCPV1111Q"));
        assert_eq!(k.decrypt(&c, "kyc-pan:usr_1").unwrap(), "ABCPV1111Q");
        assert_eq!(k.decrypt(&c, "kyc-pan:usr_2"), Err(PiiError::Undecryptable));
    }

    #[test]
    fn encrypting_twice_gives_different_ciphertexts() {
        let k = keys();
        assert_ne!(k.encrypt("ABCPV1111Q", "c"), k.encrypt("ABCPV1111Q", "c"));
    }

    #[test]
    fn a_rotated_keyring_still_decrypts_old_records() {
        let old = keys();
        let c = old.encrypt("secret", "c");
        let mut rotated = old.clone();
        rotated.keys.insert("k2".into(), [7; 32]);
        rotated.active = "k2".into();
        assert_eq!(rotated.decrypt(&c, "c").unwrap(), "secret");
        assert!(rotated.encrypt("x", "c").starts_with("v1:k2:"));
    }

    #[test]
    fn tampered_or_foreign_ciphertexts_are_refused() {
        let k = keys();
        let c = k.encrypt("secret", "c");
        let mut tampered = c.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(k.decrypt(&String::from_utf8(tampered).unwrap(), "c").is_err());
        assert_eq!(keys().decrypt(&c, "c"), Err(PiiError::Undecryptable));
        assert_eq!(k.decrypt("v1:k9:AAAA", "c"), Err(PiiError::UnknownKey("k9".into())));
        assert_eq!(k.decrypt("plain", "c"), Err(PiiError::Malformed));
    }

    #[test]
    fn keyed_hashes_are_stable_per_key_and_differ_across_keys() {
        let k = keys();
        assert_eq!(k.keyed_hash("pan", "ABCPV1111Q"), k.keyed_hash("pan", "ABCPV1111Q"));
        assert_ne!(k.keyed_hash("pan", "ABCPV1111Q"), k.keyed_hash("pan", "ABCPV1112Q"));
        assert_ne!(k.keyed_hash("pan", "ABCPV1111Q"), keys().keyed_hash("pan", "ABCPV1111Q"));
    }

    #[test]
    fn a_keyring_prints_no_key() {
        let json = PiiKeys::random_json("k1");
        let k = PiiKeys::from_json(&json).unwrap();
        let stored: Stored = serde_json::from_str(&json).unwrap();
        assert!(!format!("{k:?}").contains(&stored.hash_key));
    }

    #[test]
    fn a_malformed_secret_is_described_without_its_keys() {
        assert!(PiiKeys::from_json(r#"{"active_key_id":"k2","keys":{"k1":"AAAA"},"hash_key":"x"}"#).is_err());
        assert!(PiiKeys::from_json("not json").is_err());
    }
}
