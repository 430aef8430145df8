//! Revio webhook signatures.
//!
//! Revio signs each webhook body with its RSA key: the `X-Signature` header is the base64 of an
//! RSA PKCS#1 v1.5 signature over SHA-256 of the exact raw body bytes. The public key comes from
//! `GET /api/v1/public_key/` ([`super::RevioClient::public_key_pem`]). Verify before parsing the
//! body, and still confirm the purchase with Revio's API before acting: the webhook is a trigger.

use super::{RevioClient, RevioError};
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

    #[test]
    fn a_short_rsa_key_is_refused() {
        let small = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let pem = small.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(WebhookVerifier::from_pem(&pem).unwrap_err(), KeyError::TooShort(1024));
    }
}
