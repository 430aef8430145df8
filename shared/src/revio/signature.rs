//! Revio webhook signatures.
//!
//! Revio signs each webhook body with its RSA key: the `X-Signature` header is the base64 of an
//! RSA PKCS#1 v1.5 signature over SHA-256 of the exact raw body bytes. Verify before parsing the
//! body, and still confirm the purchase with Revio's API before acting: the webhook is a trigger.
//!
//! Where the public key comes from ([`WebhookVerifier::from_env`]):
//!
//! - **Pinned** (recommended in production): `REVIO_PUBLIC_KEY_PEM` holds the PEM, taken from
//!   Revio's merchant dashboard or support through a channel we trust. It is used as is and
//!   nothing is fetched, so neither Revio's unauthenticated key endpoint nor anything between us
//!   and it can substitute a key, and a cold start does not depend on Revio being up. Newlines
//!   may be written as `\n` so that the PEM fits on one line of a deployment parameter. When
//!   Revio rotates its key, every webhook fails verification (401, Revio retries for 36 h) until
//!   the pin is updated; reconciliation keeps settling deposits from Revio's API meanwhile.
//! - **Fetched**, when nothing is pinned: `GET /api/v1/public_key/`
//!   ([`super::RevioClient::public_key_pem`]) once per cold start, over https only (the client
//!   refuses `http://` outside the local sandbox).

use super::{RevioClient, RevioError};
use crate::config::{Env, InitError};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use sha2::Sha256;

/// Smallest RSA modulus accepted for a provider's signing key.
pub const MIN_KEY_BITS: usize = 2048;

/// The variable that pins Revio's webhook signing key (a PEM; `\n` may stand for newlines).
pub const PINNED_KEY_ENV: &str = "REVIO_PUBLIC_KEY_PEM";

/// Largest `X-Signature` header looked at (a 4096-bit signature is 684 base64 characters).
const MAX_SIGNATURE_HEADER: usize = 2048;

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither a SubjectPublicKeyInfo (`PUBLIC KEY`) nor a PKCS#1 (`RSA PUBLIC KEY`) RSA PEM.
    #[error("not an RSA public key in PEM form")]
    NotRsaPem,
    /// An RSA key too short to trust.
    #[error("the RSA key has {0} bits; at least {MIN_KEY_BITS} are required")]
    TooShort(usize),
}

/// Checks Revio webhook signatures against Revio's public key. Built once per cold start.
#[derive(Debug, Clone)]
pub struct WebhookVerifier {
    key: VerifyingKey<Sha256>,
}

impl WebhookVerifier {
    /// Reads an RSA public key in PEM form: SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`,
    /// what Revio serves) or PKCS#1 (`-----BEGIN RSA PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`KeyError::NotRsaPem`] for anything else, [`KeyError::TooShort`] below
    /// [`MIN_KEY_BITS`] bits.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let key = RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|_| KeyError::NotRsaPem)?;
        let bits = key.size() * 8;
        if bits < MIN_KEY_BITS {
            return Err(KeyError::TooShort(bits));
        }
        Ok(Self { key: VerifyingKey::new(key) })
    }

    /// The verifier a function starts with: the key pinned in [`PINNED_KEY_ENV`] when it is set
    /// (nothing is fetched), otherwise the key fetched through `client` (see the module docs).
    ///
    /// # Errors
    /// [`InitError::InvalidEnv`] naming [`PINNED_KEY_ENV`] when the pinned value is not a usable
    /// RSA public key; [`InitError::Dependency`] when nothing is pinned and the key cannot be
    /// fetched.
    pub async fn from_env(env: &Env, client: &RevioClient) -> Result<Self, InitError> {
        if let Some(pinned) = env.optional(PINNED_KEY_ENV) {
            let verifier = Self::from_pem(&pinned.replace("\\n", "\n"))
                .map_err(|e| InitError::InvalidEnv { name: PINNED_KEY_ENV.into(), reason: e.to_string() })?;
            tracing::info!(key_source = "pinned", "Revio webhook key loaded");
            return Ok(verifier);
        }
        let verifier = Self::from_client(client)
            .await
            .map_err(|e| InitError::Dependency(format!("Revio public key could not be loaded: {e}")))?;
        tracing::info!(key_source = "fetched", "Revio webhook key loaded");
        Ok(verifier)
    }

    /// Fetches Revio's public key through `client` and reads it.
    ///
    /// # Errors
    /// Whatever [`RevioClient::public_key_pem`] returns, or [`RevioError::Malformed`] when the
    /// answer is not a usable RSA public key.
    pub async fn from_client(client: &RevioClient) -> Result<Self, RevioError> {
        let pem = client.public_key_pem().await?;
        Self::from_pem(&pem).map_err(|e| RevioError::Malformed(format!("Revio's public key: {e}")))
    }

    /// Whether `signature_header` (base64, standard or URL-safe, padding optional) is Revio's
    /// signature of exactly these `body` bytes. Any decoding problem is simply `false`.
    pub fn verify(&self, body: &[u8], signature_header: &str) -> bool {
        let Some(raw) = decode_base64(signature_header) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(raw.as_slice()) else {
            return false;
        };
        self.key.verify(body, &signature).is_ok()
    }
}

fn decode_base64(header: &str) -> Option<Vec<u8>> {
    let text = header.trim();
    if text.is_empty() || text.len() > MAX_SIGNATURE_HEADER {
        return None;
    }
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::{EncodeRsaPublicKey, LineEnding};
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::RsaPrivateKey;
    use std::sync::OnceLock;

    /// Two 2048-bit keys, generated once for all tests (keygen is the slow part).
    fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
        static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let mut rng = rand::thread_rng();
            (RsaPrivateKey::new(&mut rng, 2048).unwrap(), RsaPrivateKey::new(&mut rng, 2048).unwrap())
        })
    }

    fn sign(key: &RsaPrivateKey, body: &[u8]) -> Vec<u8> {
        SigningKey::<Sha256>::new(key.clone()).sign(body).to_vec()
    }

    fn verifier(key: &RsaPrivateKey) -> WebhookVerifier {
        let pem = key.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        WebhookVerifier::from_pem(&pem).unwrap()
    }

    const BODY: &[u8] = br#"{"id":"d6c9b0a4","type":"purchase","status":"paid","event_type":"purchase.paid"}"#;

    #[test]
    fn revio_s_signature_of_the_exact_body_verifies() {
        let (revio, _) = keys();
        let sig = STANDARD.encode(sign(revio, BODY));
        assert!(verifier(revio).verify(BODY, &sig));
        assert!(verifier(revio).verify(BODY, &format!("  {sig}\n")), "surrounding whitespace is tolerated");
    }

    #[test]
    fn a_url_safe_or_unpadded_signature_verifies_too() {
        let (revio, _) = keys();
        let raw = sign(revio, BODY);
        let v = verifier(revio);
        for engine in [URL_SAFE, URL_SAFE_NO_PAD, STANDARD_NO_PAD] {
            assert!(v.verify(BODY, &engine.encode(&raw)));
        }
    }

    #[test]
    fn a_body_changed_by_one_byte_fails() {
        let (revio, _) = keys();
        let sig = STANDARD.encode(sign(revio, BODY));
        let mut changed = BODY.to_vec();
        let at = changed.iter().position(|b| *b == b'p').unwrap();
        changed[at] = b'q';
        assert!(!verifier(revio).verify(&changed, &sig));
        assert!(!verifier(revio).verify(&BODY[..BODY.len() - 1], &sig));
        let mut longer = BODY.to_vec();
        longer.push(b' ');
        assert!(!verifier(revio).verify(&longer, &sig), "even trailing whitespace changes the body");
    }

    #[test]
    fn a_signature_from_another_key_fails() {
        let (revio, other) = keys();
        let sig = STANDARD.encode(sign(other, BODY));
        assert!(!verifier(revio).verify(BODY, &sig));
    }

    #[test]
    fn a_flipped_signature_bit_fails() {
        let (revio, _) = keys();
        let mut raw = sign(revio, BODY);
        raw[10] ^= 1;
        assert!(!verifier(revio).verify(BODY, &STANDARD.encode(raw)));
    }

    #[test]
    fn empty_garbage_or_truncated_headers_fail() {
        let (revio, _) = keys();
        let v = verifier(revio);
        let sig = STANDARD.encode(sign(revio, BODY));
        let long = "A".repeat(10_000);
        for header in ["", "   ", "not base64 at all!", "sha256=abc", "AAAA", &sig[..sig.len() / 2], &long] {
            assert!(!v.verify(BODY, header), "{header:.20}");
        }
    }

    #[test]
    fn a_pkcs1_rsa_public_key_is_accepted() {
        let (revio, _) = keys();
        let pem = revio.to_public_key().to_pkcs1_pem(LineEnding::CRLF).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        let v = WebhookVerifier::from_pem(&pem).unwrap();
        assert!(v.verify(BODY, &STANDARD.encode(sign(revio, BODY))));
    }

    #[test]
    fn anything_but_an_rsa_public_key_is_refused() {
        assert_eq!(WebhookVerifier::from_pem("").unwrap_err(), KeyError::NotRsaPem);
        assert_eq!(
            WebhookVerifier::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap_err(),
            KeyError::NotRsaPem
        );
        // an EC P-256 public key (SubjectPublicKeyInfo): valid PEM, wrong algorithm
        let ec = "-----BEGIN PUBLIC KEY-----\n\
                  MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\n\
                  q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n\
                  -----END PUBLIC KEY-----\n";
        assert_eq!(WebhookVerifier::from_pem(ec).unwrap_err(), KeyError::NotRsaPem);
    }

    /// A client whose key fetch can only fail: nothing listens on port 9, one attempt.
    fn unreachable_revio() -> RevioClient {
        let mut config =
            crate::revio::RevioConfig::new("http://127.0.0.1:9", crate::secrets::SecretString::new("k".into()), "b")
                .allowing_insecure_http();
        config.retry.max_attempts = 1;
        RevioClient::new(config).unwrap()
    }

    fn pinned(pem: &str) -> Env {
        Env::default().with(PINNED_KEY_ENV, pem)
    }

    #[tokio::test]
    async fn a_pinned_key_is_used_without_fetching_it() {
        let (revio, _) = keys();
        let pem = revio.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let v = WebhookVerifier::from_env(&pinned(&pem), &unreachable_revio()).await.expect("no fetch needed");
        assert!(v.verify(BODY, &STANDARD.encode(sign(revio, BODY))));
        // Without a pin the key must be fetched, and here that fails.
        let err = WebhookVerifier::from_env(&Env::default(), &unreachable_revio()).await.unwrap_err();
        assert!(matches!(err, InitError::Dependency(_)), "{err}");
    }

    #[tokio::test]
    async fn a_pinned_key_may_be_written_on_one_line_with_escaped_newlines() {
        let (revio, _) = keys();
        let pem = revio.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let one_line = pem.trim_end().replace('\n', "\\n");
        assert!(!one_line.contains('\n'));
        let v = WebhookVerifier::from_env(&pinned(&one_line), &unreachable_revio()).await.unwrap();
        assert!(v.verify(BODY, &STANDARD.encode(sign(revio, BODY))));
    }

    #[tokio::test]
    async fn a_pinned_value_that_is_not_a_usable_key_stops_the_start_naming_the_variable() {
        let short = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let short = short.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        for bad in ["not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", short.as_str()] {
            let err = WebhookVerifier::from_env(&pinned(bad), &unreachable_revio()).await.unwrap_err();
            assert!(matches!(err, InitError::InvalidEnv { ref name, .. } if name == PINNED_KEY_ENV), "{err}");
        }
    }

    #[tokio::test]
    async fn a_wrong_pinned_key_fails_every_real_signature() {
        let (revio, other) = keys();
        let wrong = other.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let v = WebhookVerifier::from_env(&pinned(&wrong), &unreachable_revio()).await.unwrap();
        for body in [BODY, b"{}".as_slice(), br#"{"id":"x","event_type":"purchase.paid"}"#.as_slice()] {
            assert!(!v.verify(body, &STANDARD.encode(sign(revio, body))));
        }
    }

    #[test]
    fn a_short_rsa_key_is_refused() {
        let small = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let pem = small.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(WebhookVerifier::from_pem(&pem).unwrap_err(), KeyError::TooShort(1024));
    }
}
