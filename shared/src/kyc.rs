//! The KYC provider: the port the KYC service talks to ([`KycProvider`]), its Karza-style HTTP
//! adapter ([`KarzaClient`]), and the verifier of the provider's Standard Webhooks callbacks
//! ([`KycWebhookVerifier`]).
//!
//! The provider answers a PAN check either at once (verified or rejected) or later: then it
//! calls our webhook, and we can also ask for the result by its reference (the polling
//! fallback). Both arrive here as a [`ProviderAnswer`].

use crate::config::{Env, InitError};
use crate::domain::ids::KycId;
use crate::domain::kyc::KycSubmission;
use crate::http_client::{HttpClient, HttpClientConfig, Request};
use crate::secrets::SecretString;
use http::header::{HeaderName, HeaderValue, ACCEPT};
use http::{Method, StatusCode};
use std::future::Future;
use std::time::Duration;

/// What the provider says about one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Not decided yet; the result comes by webhook or polling.
    Pending,
    Verified,
    /// Refused, with the provider's reason code (such as `name_mismatch`).
    Rejected(String),
}

/// The provider's answer to a submission or a status read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAnswer {
    /// The provider's id of the check.
    pub reference: String,
    pub status: ProviderStatus,
}

/// Why the provider could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Down, slow (past the time bound), 429 or 5xx: try again later.
    #[error("KYC provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request (4xx): retrying the same request will not help.
    #[error("KYC provider refused the request: {0}")]
    Rejected(String),
    /// The provider does not know the reference.
    #[error("KYC provider does not know this check")]
    NotFound,
    /// An answer we cannot read.
    #[error("KYC provider answer unreadable: {0}")]
    Malformed(String),
}

/// The port: what the KYC service needs from a provider. Each method MUST return
/// [`ProviderError::Unavailable`] for failures that may pass (timeouts, 5xx) and never block
/// longer than the adapter's time bound.
pub trait KycProvider: Send + Sync {
    /// The provider's name, stored on each attempt.
    fn name(&self) -> &'static str;

    /// Starts a check of `submission`, tagged with our `client_ref`; `callback_url` is where
    /// the asynchronous result is to be posted.
    fn submit(
        &self,
        client_ref: &KycId,
        submission: &KycSubmission,
        callback_url: &str,
    ) -> impl Future<Output = Result<ProviderAnswer, ProviderError>> + Send;

    /// Reads the current result of a check.
    fn status(&self, reference: &str) -> impl Future<Output = Result<ProviderAnswer, ProviderError>> + Send;
}

/// A Karza-style PAN verification API: header `x-karza-key`, body
/// `{"consent": "Y", "pan": ..., "name": ..., "dob": ..., "client_ref": ..., "callback_url": ...}`
/// at `POST /v3/pan-verification`, results at `GET /v3/pan-verification/<request_id>`.
#[derive(Debug, Clone)]
pub struct KarzaClient {
    http: HttpClient,
    base_url: String,
    api_key: SecretString,
}

/// The KYC secret: `{"api_key": "...", "webhook_secrets": ["whsec_...", ...]}` (several during a
/// rotation of the webhook signing secret).
pub struct KycSecret {
    pub api_key: SecretString,
    pub webhook_secrets: Vec<SecretString>,
}

impl KycSecret {
    /// Loads the secret named by `KYC_SECRET_ID`.
    ///
    /// # Errors
    /// [`InitError`] naming the variable or the secret; its value is never quoted.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let id = env.require("KYC_SECRET_ID")?;
        let raw = crate::secrets::load(aws, &id).await?;
        let bad = |reason: &str| InitError::Secret { id: id.clone(), reason: reason.to_owned() };
        let json: serde_json::Value = serde_json::from_str(raw.expose())
            .map_err(|_| bad("must be JSON {\"api_key\": ..., \"webhook_secrets\": [...]}"))?;
        let api_key =
            json["api_key"].as_str().filter(|k| !k.trim().is_empty() && k.bytes().all(|b| b.is_ascii_graphic()));
        let api_key = api_key.ok_or_else(|| bad("api_key is missing or not a usable header value"))?;
        let secrets: Vec<SecretString> = json["webhook_secrets"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).map(|s| SecretString::new(s.to_owned())).collect())
            .unwrap_or_default();
        if secrets.is_empty() {
            return Err(bad("webhook_secrets must list at least one whsec_ secret"));
        }
        Ok(Self { api_key: SecretString::new(api_key.to_owned()), webhook_secrets: secrets })
    }
}

fn base_url(env: &Env) -> Result<String, InitError> {
    let raw = env.require("KYC_BASE_URL")?;
    let insecure_ok = match env.optional("KYC_ALLOW_INSECURE_HTTP").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(InitError::InvalidEnv {
                name: "KYC_ALLOW_INSECURE_HTTP".into(),
                reason: "must be true or false".into(),
            })
        }
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| InitError::InvalidEnv {
        name: "KYC_BASE_URL".into(),
        reason: format!("not an absolute URL ({e})"),
    })?;
    match url.scheme() {
        "https" => {}
        "http" if insecure_ok => {}
        _ => {
            return Err(InitError::InvalidEnv {
                name: "KYC_BASE_URL".into(),
                reason: "must be https (http only in a local stack, with KYC_ALLOW_INSECURE_HTTP=true)".into(),
            })
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl KarzaClient {
    /// Default bound on a whole request: a submission answers 503 within it.
    pub const TIMEOUT: Duration = Duration::from_secs(3);

    /// Reads `KYC_BASE_URL`, optional `KYC_TIMEOUT_MS` and `KYC_ALLOW_INSECURE_HTTP`, with the
    /// API key of an already loaded [`KycSecret`].
    ///
    /// # Errors
    /// [`InitError`] naming the variable.
    pub fn from_env(env: &Env, secret: &KycSecret) -> Result<Self, InitError> {
        let timeout = match env.optional("KYC_TIMEOUT_MS") {
            None => Self::TIMEOUT,
            Some(raw) => match raw.trim().parse::<u64>() {
                // Bounded well inside the request's 6 s budget: a submission answers 503 in time.
                Ok(ms @ 1..=4_000) => Duration::from_millis(ms),
                _ => {
                    return Err(InitError::InvalidEnv {
                        name: "KYC_TIMEOUT_MS".into(),
                        reason: "must be milliseconds between 1 and 4000".into(),
                    })
                }
            },
        };
        // Redirects are not followed: the shared client returns every answer as it came.
        let http = HttpClient::new(
            &HttpClientConfig::new(timeout.min(Duration::from_secs(2)), timeout)
                .pool_idle_timeout(Duration::from_secs(30)),
        )?;
        Ok(Self { http, base_url: base_url(env)?, api_key: secret.api_key.clone() })
    }

    async fn answer(&self, request: Request) -> Result<ProviderAnswer, ProviderError> {
        let request = request
            .secret_header(HeaderName::from_static("x-karza-key"), self.api_key.expose())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        let response = self.http.send(request).await.map_err(|e| {
            ProviderError::Unavailable(if e.is_timeout() { "timed out".into() } else { "unreachable".into() })
        })?;
        let status = response.status();
        let body = response
            .read_body(usize::MAX)
            .await
            .map_err(|_| ProviderError::Unavailable("answer cut short".into()))?
            .bytes;
        if status == StatusCode::NOT_FOUND {
            return Err(ProviderError::NotFound);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(ProviderError::Unavailable(format!("answered {}", status.as_u16())));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| ProviderError::Malformed("not JSON".into()))?;
        if !status.is_success() {
            let code = json["error"].as_str().unwrap_or("unknown").chars().take(64).collect::<String>();
            return Err(ProviderError::Rejected(format!("{} {code}", status.as_u16())));
        }
        parse_answer(&json)
    }
}

/// Reads `{"request_id": ..., "status": "pending"|"verified"|"rejected", "reason": ...}`.
///
/// # Errors
/// [`ProviderError::Malformed`].
pub fn parse_answer(json: &serde_json::Value) -> Result<ProviderAnswer, ProviderError> {
    let reference = json["request_id"]
        .as_str()
        .filter(|r| !r.is_empty() && r.len() <= 128)
        .ok_or_else(|| ProviderError::Malformed("no request_id".into()))?
        .to_owned();
    let status = match json["status"].as_str() {
        Some("pending") => ProviderStatus::Pending,
        Some("verified") => ProviderStatus::Verified,
        Some("rejected") => ProviderStatus::Rejected(
            json["reason"].as_str().filter(|r| !r.is_empty()).unwrap_or("rejected").chars().take(64).collect(),
        ),
        _ => return Err(ProviderError::Malformed("unknown status".into())),
    };
    Ok(ProviderAnswer { reference, status })
}

impl KycProvider for KarzaClient {
    fn name(&self) -> &'static str {
        "karza"
    }

    async fn submit(
        &self,
        client_ref: &KycId,
        submission: &KycSubmission,
        callback_url: &str,
    ) -> Result<ProviderAnswer, ProviderError> {
        let body = serde_json::json!({
            "consent": "Y",
            "pan": submission.pan.expose(),
            "name": submission.full_name.expose(),
            "dob": submission.date_of_birth.iso(),
            "client_ref": client_ref.as_str(),
            "callback_url": callback_url,
        });
        let url = format!("{}/v3/pan-verification", self.base_url);
        self.answer(Request::new(Method::POST, url).json_body(body.to_string().into_bytes())).await
    }

    async fn status(&self, reference: &str) -> Result<ProviderAnswer, ProviderError> {
        if reference.is_empty() || !reference.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(ProviderError::NotFound);
        }
        self.answer(Request::get(format!("{}/v3/pan-verification/{reference}", self.base_url))).await
    }
}

/// Why a KYC webhook was refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRefusal {
    /// A Standard Webhooks header is absent.
    Missing,
    /// The timestamp is more than five minutes away from now (a replay or a skewed clock).
    StaleOrFuture,
    /// No signature matches any of our secrets.
    Invalid,
}

/// Verifies Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`) with the official crate, against each configured secret (during a
/// rotation the provider may sign with either; the header may also carry several signatures).
pub struct KycWebhookVerifier {
    secrets: Vec<standardwebhooks::Webhook>,
}

impl KycWebhookVerifier {
    /// A verifier for these `whsec_` secrets.
    ///
    /// # Errors
    /// [`InitError::InvalidEnv`] when a secret is not base64.
    pub fn new(secrets: &[SecretString]) -> Result<Self, InitError> {
        let secrets =
            secrets.iter().map(|s| standardwebhooks::Webhook::new(s.expose())).collect::<Result<Vec<_>, _>>().map_err(
                |_| InitError::InvalidEnv {
                    name: "KYC webhook_secrets".into(),
                    reason: "a secret is not whsec_<base64>".into(),
                },
            )?;
        Ok(Self { secrets })
    }

    /// Checks one delivery.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), WebhookRefusal> {
        use standardwebhooks::WebhookError as E;
        let mut refusal = WebhookRefusal::Invalid;
        for secret in &self.secrets {
            match secret.verify(body, headers) {
                Ok(()) => return Ok(()),
                Err(E::MissingHeader(_) | E::InvalidHeader(_) | E::InvalidTimestamp) => {
                    return Err(WebhookRefusal::Missing)
                }
                Err(E::TimestampTooOldError | E::FutureTimestampError) => return Err(WebhookRefusal::StaleOrFuture),
                Err(_) => refusal = WebhookRefusal::Invalid,
            }
        }
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, ts: i64, sig: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
        standardwebhooks::Webhook::new(secret).unwrap().sign(id, ts, body).unwrap()
    }

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_c2FuZGJveC1reWMtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM=";

    #[test]
    fn the_reference_vector_of_standard_webhooks_signs_as_published() {
        let sig = sign(OLD, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn either_secret_verifies_during_a_rotation() {
        let v = KycWebhookVerifier::new(&[SecretString::new(NEW.into()), SecretString::new(OLD.into())]).unwrap();
        let now = chrono::Utc::now().timestamp();
        for s in [OLD, NEW] {
            assert_eq!(v.verify(&headers("msg_1", now, &sign(s, "msg_1", now, b"{}")), b"{}"), Ok(()));
        }
        let both = format!(
            "{} {}",
            sign("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "msg_1", now, b"{}"),
            sign(NEW, "msg_1", now, b"{}")
        );
        assert_eq!(v.verify(&headers("msg_1", now, &both), b"{}"), Ok(()));
    }

    #[test]
    fn forged_stale_future_and_unsigned_deliveries_are_refused_with_their_reason() {
        let v = KycWebhookVerifier::new(&[SecretString::new(NEW.into())]).unwrap();
        let now = chrono::Utc::now().timestamp();
        let forged = sign(OLD, "msg_1", now, b"{}");
        assert_eq!(v.verify(&headers("msg_1", now, &forged), b"{}"), Err(WebhookRefusal::Invalid));
        let altered = sign(NEW, "msg_1", now, b"{}");
        assert_eq!(v.verify(&headers("msg_1", now, &altered), b"{ }"), Err(WebhookRefusal::Invalid));
        assert_eq!(v.verify(&headers("msg_2", now, &altered), b"{}"), Err(WebhookRefusal::Invalid));
        for ts in [now - 301, now + 301] {
            let sig = sign(NEW, "msg_1", ts, b"{}");
            assert_eq!(v.verify(&headers("msg_1", ts, &sig), b"{}"), Err(WebhookRefusal::StaleOrFuture));
        }
        assert_eq!(v.verify(&http::HeaderMap::new(), b"{}"), Err(WebhookRefusal::Missing));
    }

    #[test]
    fn provider_answers_are_read_strictly() {
        let a = parse_answer(&serde_json::json!({"request_id": "r1", "status": "rejected", "reason": "name_mismatch"}))
            .unwrap();
        assert_eq!(a.status, ProviderStatus::Rejected("name_mismatch".into()));
        assert!(parse_answer(&serde_json::json!({"request_id": "r1", "status": "maybe"})).is_err());
        assert!(parse_answer(&serde_json::json!({"status": "verified"})).is_err());
    }
}
