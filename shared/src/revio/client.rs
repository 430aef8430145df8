//! The HTTP client of Revio's merchant API.

mod payouts;

use super::purchase::CreateBody;
use super::{json_error_kind, NewPurchase, Purchase, RetryPolicy, RevioError};
use crate::config::{Env, InitError};
use crate::http_client::{self, HttpClient, HttpClientConfig, Request};
use crate::secrets::{self, SecretString};
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Method, StatusCode};
use std::time::Duration;
use url::Url;

/// Everything a [`RevioClient`] needs. [`RevioConfig::new`] fills in the default time bounds.
#[derive(Debug, Clone)]
pub struct RevioConfig {
    /// Where Revio lives, without the API path: `https://gate.reviopay.com`.
    pub base_url: String,
    /// The Bearer API key.
    pub api_key: SecretString,
    /// The brand every purchase is made for.
    pub brand_id: String,
    /// Longest wait for a connection (TCP and TLS) to open.
    pub connect_timeout: Duration,
    /// Longest wait for one whole request, connecting and reading the answer included.
    pub request_timeout: Duration,
    /// How reads ([`RevioClient::get_purchase`], [`RevioClient::public_key_pem`]) are repeated;
    /// a purchase creation uses it only for connections that could not be opened.
    pub retry: RetryPolicy,
    /// Whether an `http://` base URL is accepted. Only a local stack talking to the Revio
    /// sandbox sets this (`REVIO_ALLOW_INSECURE_HTTP=true`); everywhere else the API key and the
    /// webhook signing key travel over https only.
    pub allow_insecure_http: bool,
}

impl RevioConfig {
    /// Default bound on opening a connection.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default bound on a whole request.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// A configuration with the default time bounds and [`RetryPolicy::default`], https only.
    pub fn new(base_url: impl Into<String>, api_key: SecretString, brand_id: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            brand_id: brand_id.into(),
            connect_timeout: Self::CONNECT_TIMEOUT,
            request_timeout: Self::REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            allow_insecure_http: false,
        }
    }

    /// The same configuration, also accepting an `http://` base URL (the local sandbox only).
    #[must_use]
    pub fn allowing_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// The configuration from `REVIO_BASE_URL`, optional `REVIO_TIMEOUT_MS` (whole-request bound,
    /// 1..=60000), optional `REVIO_ALLOW_INSECURE_HTTP` and the already loaded secret `secret_id`
    /// (`{"api_key": ..., "brand_id": ...}`).
    fn from_parts(env: &Env, secret_id: &str, secret: &SecretString) -> Result<Self, InitError> {
        let base_url = env.require("REVIO_BASE_URL")?;
        let allow_insecure_http = allows_insecure_http(env)?;
        let timeout = env.optional("REVIO_TIMEOUT_MS").map(|raw| parse_timeout(&raw)).transpose()?;
        let (api_key, brand_id) =
            read_credentials(secret).map_err(|reason| InitError::Secret { id: secret_id.to_owned(), reason })?;
        let mut config = Self::new(base_url, api_key, brand_id);
        config.allow_insecure_http = allow_insecure_http;
        if let Some(timeout) = timeout {
            config.request_timeout = timeout;
            config.connect_timeout = config.connect_timeout.min(timeout);
        }
        Ok(config)
    }
}

/// The local-only switch that lets the client speak plain http to the Revio sandbox.
pub const ALLOW_INSECURE_HTTP_ENV: &str = "REVIO_ALLOW_INSECURE_HTTP";

/// Reads [`ALLOW_INSECURE_HTTP_ENV`]: unset (or empty) and `false` mean https only, `true`
/// allows http. Anything else is refused rather than guessed at.
fn allows_insecure_http(env: &Env) -> Result<bool, InitError> {
    match env.optional(ALLOW_INSECURE_HTTP_ENV).as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(InitError::InvalidEnv {
            name: ALLOW_INSECURE_HTTP_ENV.into(),
            reason: "must be true or false (true only for a local stack talking to the Revio sandbox)".into(),
        }),
    }
}

fn parse_timeout(raw: &str) -> Result<Duration, InitError> {
    match raw.trim().parse::<u64>() {
        Ok(ms @ 1..=60_000) => Ok(Duration::from_millis(ms)),
        _ => Err(InitError::InvalidEnv {
            name: "REVIO_TIMEOUT_MS".into(),
            reason: "must be a whole number of milliseconds between 1 and 60000".into(),
        }),
    }
}

/// Reads `{"api_key": "...", "brand_id": "..."}`. The reason never quotes the secret.
fn read_credentials(secret: &SecretString) -> Result<(SecretString, String), String> {
    let shape = "must be a JSON object with non-empty string fields api_key and brand_id";
    let json: serde_json::Value = serde_json::from_str(secret.expose()).map_err(|_| format!("the secret {shape}"))?;
    let field = |name: &str| match json.get(name) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(format!("field {name} is missing or not a non-empty string; the secret {shape}")),
    };
    let api_key = field("api_key")?;
    if !api_key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("field api_key contains characters an HTTP header cannot carry".into());
    }
    Ok((SecretString::new(api_key), field("brand_id")?))
}

/// The base URL without a trailing slash, checked to be an absolute https URL (or http, when
/// `allow_insecure_http`).
fn normalise_base_url(raw: &str, allow_insecure_http: bool) -> Result<String, InitError> {
    let invalid = |reason: &str| InitError::InvalidEnv { name: "REVIO_BASE_URL".into(), reason: reason.into() };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("must be an https URL with a host, such as https://gate.reviopay.com"));
    }
    if url.scheme() == "http" && !allow_insecure_http {
        return Err(invalid(
            "must be https: the API key and the webhook signing key are not sent over plain http \
             (http is accepted only by a local stack, with REVIO_ALLOW_INSECURE_HTTP=true)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials, a query or a fragment"));
    }
    if url.path().trim_end_matches('/').ends_with("/api/v1") {
        return Err(invalid("give Revio's base URL without /api/v1, such as https://gate.reviopay.com"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Largest answer body read from Revio; purchases and keys are a few KiB.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longest error message kept from a refusal.
const MAX_MESSAGE_CHARS: usize = 300;

/// When a failed attempt may be made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// A read: after timeouts, connection errors, 429 and 5xx.
    Safe,
    /// A write: only when the connection could not be opened, so nothing was sent.
    IfNothingSent,
}

/// One HTTP answer, read in full (up to [`MAX_ANSWER_BYTES`]).
struct Answer {
    status: StatusCode,
    json: bool,
    body: Vec<u8>,
    too_large: bool,
}

/// Revio's merchant API. Cheap to clone; build it once per cold start.
#[derive(Debug, Clone)]
pub struct RevioClient {
    http: HttpClient,
    base_url: String,
    api_key: SecretString,
    brand_id: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
}

impl RevioClient {
    /// Reads `REVIO_BASE_URL` (such as `https://gate.reviopay.com`), `REVIO_SECRET_ID` (a
    /// Secrets Manager secret holding `{"api_key": "...", "brand_id": "..."}`), optional
    /// `REVIO_TIMEOUT_MS` (the whole-request bound, default 5000) and optional
    /// `REVIO_ALLOW_INSECURE_HTTP` (`true` only in a local stack; an `http://` base URL is
    /// refused otherwise), and loads the secret.
    ///
    /// # Errors
    /// [`InitError::MissingEnv`] / [`InitError::InvalidEnv`] naming the variable (an `http://`
    /// `REVIO_BASE_URL` without the local switch among them), [`InitError::Secret`] when the
    /// secret cannot be loaded or lacks a field (its value is never quoted).
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        normalise_base_url(&env.require("REVIO_BASE_URL")?, allows_insecure_http(env)?)?;
        if let Some(raw) = env.optional("REVIO_TIMEOUT_MS") {
            parse_timeout(&raw)?;
        }
        let secret_id = env.require("REVIO_SECRET_ID")?;
        let secret = secrets::load(aws, &secret_id).await?;
        Self::new(RevioConfig::from_parts(env, &secret_id, &secret)?)
    }

    /// A client with exactly this configuration.
    ///
    /// # Errors
    /// [`InitError::InvalidEnv`] for an unusable base URL (`http://` included, unless
    /// [`RevioConfig::allow_insecure_http`]), [`InitError::Dependency`] when the HTTP client (TLS)
    /// cannot be set up.
    pub fn new(config: RevioConfig) -> Result<Self, InitError> {
        let base_url = normalise_base_url(&config.base_url, config.allow_insecure_http)?;
        // Redirects are not followed (an API answer never redirects; following one would resend
        // the request elsewhere): the shared client returns every answer as it came.
        let http = HttpClient::new(
            &HttpClientConfig::new(config.connect_timeout, config.request_timeout)
                // A frozen Lambda's idle connections may be dead on thaw; do not keep them long.
                .pool_idle_timeout(Duration::from_secs(30)),
        )?;
        Ok(Self {
            http,
            base_url,
            api_key: config.api_key,
            brand_id: config.brand_id,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            retry: RetryPolicy { max_attempts: config.retry.max_attempts.max(1), ..config.retry },
        })
    }

    /// Creates a purchase (`POST /api/v1/purchases/`) for one product priced
    /// `amount_minor` and returns it with its `checkout_url`.
    ///
    /// Not repeated after a timeout or an error answer, since Revio may have created the purchase
    /// already; only a connection that could not be opened is tried again.
    ///
    /// # Errors
    /// [`RevioError::Unavailable`] when Revio could not be reached in time or answered 429/5xx,
    /// [`RevioError::Rejected`] for a refusal (bad input, wrong key or brand),
    /// [`RevioError::Malformed`] for an answer that is not a purchase.
    pub async fn create_purchase(&self, purchase: &NewPurchase) -> Result<Purchase, RevioError> {
        let body = serde_json::to_vec(&CreateBody::new(&self.brand_id, purchase))
            .map_err(|e| RevioError::Malformed(format!("purchase could not be encoded ({})", json_error_kind(&e))))?;
        let answer = self.call(Method::POST, "/api/v1/purchases/", Some(body), Repeat::IfNothingSent).await?;
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        Purchase::from_json(&answer.body)
    }

    /// Reads a purchase (`GET /api/v1/purchases/<id>/`), retrying transient failures.
    ///
    /// # Errors
    /// [`RevioError::NotFound`] when Revio does not know `id` (or `id` cannot be a Revio id),
    /// [`RevioError::Unavailable`] when every attempt failed transiently,
    /// [`RevioError::Rejected`] for a refusal (such as a wrong key),
    /// [`RevioError::Malformed`] for an answer that is not a purchase.
    pub async fn get_purchase(&self, id: &str) -> Result<Purchase, RevioError> {
        if !is_plausible_id(id) {
            return Err(RevioError::NotFound);
        }
        let answer = self.call(Method::GET, &format!("/api/v1/purchases/{id}/"), None, Repeat::Safe).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(RevioError::NotFound);
        }
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        Purchase::from_json(&answer.body)
    }

    /// Fetches the PEM of the key Revio signs webhooks with (`GET /api/v1/public_key/`),
    /// served as `text/plain` or as a JSON string; transient failures are retried.
    ///
    /// # Errors
    /// [`RevioError::Unavailable`], [`RevioError::Rejected`], or [`RevioError::Malformed`] when
    /// the answer is not a PEM block.
    pub async fn public_key_pem(&self) -> Result<String, RevioError> {
        let answer = self.call(Method::GET, "/api/v1/public_key/", None, Repeat::Safe).await?;
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        let text = std::str::from_utf8(&answer.body)
            .map_err(|_| RevioError::Malformed("public key is not UTF-8 text".into()))?;
        let pem = if answer.json || text.trim_start().starts_with('"') {
            serde_json::from_str::<String>(text).map_err(|e| {
                RevioError::Malformed(format!("public key is not a JSON string ({})", json_error_kind(&e)))
            })?
        } else {
            text.to_owned()
        };
        let pem = pem.trim();
        if !(pem.starts_with("-----BEGIN ") && pem.ends_with("-----") && pem.contains("PUBLIC KEY-----")) {
            return Err(RevioError::Malformed("public key is not a PEM public key".into()));
        }
        Ok(format!("{pem}\n"))
    }

    /// Sends one call, repeating it as `repeat` allows. Answers every status; only transport
    /// failures and exhausted 429/5xx become errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        repeat: Repeat,
    ) -> Result<Answer, RevioError> {
        let url = format!("{}{path}", self.base_url);
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(method.clone(), &url, body.as_deref()).await;
            let retryable = match (&outcome, repeat) {
                (Ok(a), Repeat::Safe) => a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error(),
                (Ok(_), Repeat::IfNothingSent) => false,
                (Err(e), Repeat::Safe) => !e.is_builder(),
                (Err(e), Repeat::IfNothingSent) => e.is_connect(),
            };
            if !retryable || attempt >= self.retry.max_attempts {
                if retryable {
                    crate::retry::record_exhausted();
                }
                return match outcome {
                    Ok(a) if a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error() => {
                        Err(RevioError::Unavailable(format!(
                            "{method} {path} answered HTTP {} after {attempt} attempt(s)",
                            a.status.as_u16()
                        )))
                    }
                    Ok(a) => Ok(a),
                    Err(e) => Err(RevioError::Unavailable(format!(
                        "{method} {path} failed after {attempt} attempt(s): {}",
                        self.describe(&e)
                    ))),
                };
            }
            let delay = self.retry.delay(attempt, &mut rand::thread_rng());
            let reason = match &outcome {
                Ok(a) => format!("HTTP {}", a.status.as_u16()),
                Err(e) => self.describe(e),
            };
            tracing::warn!(%method, path, attempt, delay_ms = delay.as_millis() as u64, reason, "Revio call failed; retrying");
            crate::retry::record_retry(match &outcome {
                Ok(a) if a.status == StatusCode::TOO_MANY_REQUESTS => crate::retry::RetryKind::Throttle,
                Ok(_) => crate::retry::RetryKind::ServerError,
                Err(_) => crate::retry::RetryKind::LostResponse,
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, method: Method, url: &str, body: Option<&[u8]>) -> Result<Answer, http_client::Error> {
        let mut request = Request::new(method, url)
            .bearer_auth(self.api_key.expose())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(body) = body {
            request = request.json_body(body.to_vec());
        }
        let response = self.http.send(request).await?;
        let status = response.status();
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let body = response.read_body(MAX_ANSWER_BYTES).await?;
        Ok(Answer { status, json, body: body.bytes, too_large: body.too_large })
    }

    /// A transport failure in words: what happened and the underlying cause, never the key.
    fn describe(&self, e: &http_client::Error) -> String {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !causes.contains(&text) {
                causes.push(text);
            }
            source = cause.source();
        }
        let cause = if causes.is_empty() { e.to_string() } else { causes.join(": ") };
        let what = if e.is_connect() && e.is_timeout() {
            format!("could not connect within {} ms", self.connect_timeout.as_millis())
        } else if e.is_connect() {
            format!("could not connect ({cause})")
        } else if e.is_timeout() {
            format!("no complete answer within {} ms", self.request_timeout.as_millis())
        } else {
            format!("request failed ({cause})")
        };
        self.redact(what)
    }

    /// The error for a non-2xx answer that is not transient.
    fn refusal(&self, answer: &Answer) -> RevioError {
        let status = answer.status.as_u16();
        if answer.status.is_client_error() {
            RevioError::Rejected { status, message: self.redact(refusal_message(&answer.body)) }
        } else {
            RevioError::Malformed(format!("unexpected HTTP {status}"))
        }
    }

    /// Belt and braces: the API key never leaves in a message, even if echoed by the other side.
    fn redact(&self, text: String) -> String {
        let key = self.api_key.expose();
        if key.is_empty() || !text.contains(key) {
            text
        } else {
            text.replace(key, "<redacted>")
        }
    }
}

impl Answer {
    fn usable(&self) -> Result<(), RevioError> {
        if self.too_large {
            return Err(RevioError::Malformed(format!("answer larger than {MAX_ANSWER_BYTES} bytes")));
        }
        Ok(())
    }
}

/// Revio's ids are UUIDs; anything that could change the URL's path is not one.
fn is_plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Revio's explanation from an error body `{"error", "message", "fields"?}`, truncated.
fn refusal_message(body: &[u8]) -> String {
    let Ok(serde_json::Value::Object(json)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return "no explanation given".into();
    };
    let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty());
    let mut message = match (text("error"), text("message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => "no explanation given".to_owned(),
    };
    if let Some(serde_json::Value::Object(fields)) = json.get("fields") {
        let details: Vec<String> =
            fields.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("invalid"))).collect();
        if !details.is_empty() {
            message = format!("{message} ({})", details.join("; "));
        }
    }
    truncate(message.chars().filter(|c| !c.is_control()).collect(), MAX_MESSAGE_CHARS)
}

fn truncate(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Changing a purchase after the fact: cancelling an unpaid one, refunding a paid one.
impl RevioClient {
    /// Cancels an unpaid purchase (`POST /api/v1/purchases/<id>/cancel/`), so that it can no
    /// longer be paid. Sent once (a repeated cancel is harmless, but the answer decides).
    ///
    /// # Errors
    /// [`RevioError::NotFound`], [`RevioError::Rejected`] when Revio refuses (for example the
    /// purchase was paid meanwhile: read it again), [`RevioError::Unavailable`],
    /// [`RevioError::Malformed`].
    pub async fn cancel_purchase(&self, id: &str) -> Result<Purchase, RevioError> {
        self.change_purchase(id, "cancel").await
    }

    /// Refunds a paid purchase in full (`POST /api/v1/purchases/<id>/refund/`).
    ///
    /// # Errors
    /// As [`RevioClient::cancel_purchase`]; a purchase that is not paid (already refunded, for
    /// one) is [`RevioError::Rejected`].
    pub async fn refund_purchase(&self, id: &str) -> Result<Purchase, RevioError> {
        self.change_purchase(id, "refund").await
    }

    async fn change_purchase(&self, id: &str, action: &str) -> Result<Purchase, RevioError> {
        if !is_plausible_id(id) {
            return Err(RevioError::NotFound);
        }
        let path = format!("/api/v1/purchases/{id}/{action}/");
        let answer = self.call(Method::POST, &path, Some(b"{}".to_vec()), Repeat::IfNothingSent).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(RevioError::NotFound);
        }
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        Purchase::from_json(&answer.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(json: &str) -> SecretString {
        SecretString::new(json.to_owned())
    }

    fn env() -> Env {
        Env::default().with("REVIO_BASE_URL", "https://gate.reviopay.com/")
    }

    #[test]
    fn the_configuration_comes_from_the_environment_and_the_secret() {
        let c =
            RevioConfig::from_parts(&env(), "revio", &secret(r#"{"api_key": "k-123", "brand_id": "b-1"}"#)).unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.api_key.expose(), c.brand_id.as_str()),
            ("https://gate.reviopay.com/", "k-123", "b-1")
        );
        assert_eq!((c.connect_timeout, c.request_timeout), (Duration::from_secs(2), Duration::from_secs(5)));
        assert!(!format!("{c:?}").contains("k-123"), "the key never prints");
    }

    #[test]
    fn a_timeout_from_the_environment_bounds_the_request_and_the_connection() {
        let env = env().with("REVIO_TIMEOUT_MS", "1500");
        let c = RevioConfig::from_parts(&env, "revio", &secret(r#"{"api_key": "k", "brand_id": "b"}"#)).unwrap();
        assert_eq!((c.connect_timeout, c.request_timeout), (Duration::from_millis(1500), Duration::from_millis(1500)));
        for bad in ["0", "-1", "2.5", "soon", "600000"] {
            let env = Env::default().with("REVIO_BASE_URL", "https://x").with("REVIO_TIMEOUT_MS", bad);
            let err =
                RevioConfig::from_parts(&env, "revio", &secret(r#"{"api_key": "k", "brand_id": "b"}"#)).unwrap_err();
            assert!(
                matches!(err, InitError::InvalidEnv { ref name, .. } if name == "REVIO_TIMEOUT_MS"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_bad_secret_is_named_without_quoting_it() {
        for value in [
            r#"{"api_key": "topsecret"}"#,
            r#"{"api_key": 7, "brand_id": "b"}"#,
            "topsecret",
            r#"{"api_key": "top secret", "brand_id": "b"}"#,
        ] {
            let err = RevioConfig::from_parts(&env(), "revio-api", &secret(value)).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, InitError::Secret { ref id, .. } if id == "revio-api"), "{text}");
            assert!(!text.contains("topsecret") && !text.contains("top secret"), "{text}");
        }
    }

    #[test]
    fn the_base_url_must_be_an_https_url_without_the_api_path() {
        assert_eq!(normalise_base_url("https://gate.reviopay.com/", false).unwrap(), "https://gate.reviopay.com");
        assert_eq!(normalise_base_url("http://127.0.0.1:4580", true).unwrap(), "http://127.0.0.1:4580");
        for bad in [
            "gate.reviopay.com",
            "ftp://gate.reviopay.com",
            "https://gate.reviopay.com/api/v1/",
            "https://k:s@gate.reviopay.com",
            "https://x/?a=1",
        ] {
            for insecure in [false, true] {
                assert!(matches!(normalise_base_url(bad, insecure), Err(InitError::InvalidEnv { .. })), "{bad}");
            }
        }
    }

    fn offline_aws() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder().build()
    }

    #[tokio::test]
    async fn an_http_base_url_is_refused_at_init_without_the_local_switch() {
        for flag in [None, Some("false"), Some("")] {
            let mut env =
                Env::default().with("REVIO_BASE_URL", "http://gate.reviopay.com").with("REVIO_SECRET_ID", "x");
            if let Some(flag) = flag {
                env = env.with("REVIO_ALLOW_INSECURE_HTTP", flag);
            }
            let err = RevioClient::from_env(&env, &offline_aws()).await.unwrap_err();
            assert!(
                matches!(err, InitError::InvalidEnv { ref name, ref reason } if name == "REVIO_BASE_URL" && reason.contains("https")),
                "{flag:?}: {err}"
            );
            assert!(err.to_string().contains("REVIO_ALLOW_INSECURE_HTTP"), "the message names the switch: {err}");
        }
        let plain = RevioConfig::new("http://127.0.0.1:4580", SecretString::new("k".into()), "b");
        assert!(
            matches!(RevioClient::new(plain), Err(InitError::InvalidEnv { ref name, .. }) if name == "REVIO_BASE_URL")
        );
    }

    #[test]
    fn the_local_switch_allows_http_and_accepts_only_true_or_false() {
        let creds = secret(r#"{"api_key": "k", "brand_id": "b"}"#);
        let local =
            Env::default().with("REVIO_BASE_URL", "http://127.0.0.1:4580").with("REVIO_ALLOW_INSECURE_HTTP", "true");
        let config = RevioConfig::from_parts(&local, "revio", &creds).unwrap();
        assert!(config.allow_insecure_http);
        assert!(RevioClient::new(config).is_ok());
        assert!(!RevioConfig::from_parts(&env(), "revio", &creds).unwrap().allow_insecure_http, "off unless set");
        for bad in ["yes", "1", "TRUE", "on"] {
            let env = env().with("REVIO_ALLOW_INSECURE_HTTP", bad);
            let err = RevioConfig::from_parts(&env, "revio", &creds).unwrap_err();
            assert!(
                matches!(err, InitError::InvalidEnv { ref name, .. } if name == "REVIO_ALLOW_INSECURE_HTTP"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_missing_variable_is_named() {
        let err = RevioConfig::from_parts(&Env::default(), "revio", &secret(r#"{"api_key": "k", "brand_id": "b"}"#))
            .unwrap_err();
        assert_eq!(err.to_string(), "environment variable REVIO_BASE_URL is required but not set");
    }

    #[test]
    fn a_refusal_keeps_revio_s_short_explanation() {
        let body = br#"{"error": "validation_error", "message": "invalid purchase", "fields": {"client.email": "a valid email is required"}}"#;
        assert_eq!(
            refusal_message(body),
            "validation_error: invalid purchase (client.email: a valid email is required)"
        );
        assert_eq!(refusal_message(br#"{"message": "nope"}"#), "nope");
        assert_eq!(refusal_message(b"<html>Bad gateway</html>"), "no explanation given");
        let long = serde_json::json!({"message": "x".repeat(5000)}).to_string();
        assert_eq!(refusal_message(long.as_bytes()).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn an_echoed_api_key_is_redacted_from_refusals() {
        let client =
            RevioClient::new(RevioConfig::new("https://127.0.0.1:9", SecretString::new("k-secret".into()), "b"))
                .unwrap();
        let answer = Answer {
            status: StatusCode::UNAUTHORIZED,
            json: true,
            body: br#"{"error": "unauthorized", "message": "key k-secret is not valid"}"#.to_vec(),
            too_large: false,
        };
        let err = client.refusal(&answer);
        assert_eq!(
            err,
            RevioError::Rejected { status: 401, message: "unauthorized: key <redacted> is not valid".into() }
        );
        assert!(!format!("{client:?}").contains("k-secret"));
    }

    #[test]
    fn ids_that_could_change_the_path_are_not_sent() {
        assert!(is_plausible_id("d6c9b0a4-3c1e-4b7a-9d55-0c1f7f2a9e10"));
        for bad in ["", "../public_key", "a/b", "a?b", "a b", "%2e%2e"] {
            assert!(!is_plausible_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_revio_is_unavailable_after_bounded_attempts() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
        let mut config =
            RevioConfig::new("http://127.0.0.1:9", SecretString::new("k".into()), "b").allowing_insecure_http();
        config.retry = RetryPolicy { max_attempts: 3, base: Duration::from_millis(1), cap: Duration::from_millis(5) };
        let client = RevioClient::new(config).unwrap();
        match client.get_purchase("abc").await {
            Err(RevioError::Unavailable(m)) => {
                assert!(m.contains("after 3 attempt(s)") && m.contains("could not connect"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(client.get_purchase("../x").await, Err(RevioError::NotFound));
    }

    #[tokio::test]
    async fn a_purchase_is_tried_again_only_while_no_connection_opens() {
        let mut config =
            RevioConfig::new("http://127.0.0.1:9", SecretString::new("k".into()), "b").allowing_insecure_http();
        config.retry = RetryPolicy { max_attempts: 2, base: Duration::from_millis(1), cap: Duration::from_millis(5) };
        let client = RevioClient::new(config).unwrap();
        let new = NewPurchase {
            email: "payer@example.com".into(),
            amount_minor: 100,
            currency: "ZAR".into(),
            product_name: "coins".into(),
            reference: "r".into(),
            success_redirect: None,
            failure_redirect: None,
            success_callback: None,
        };
        match client.create_purchase(&new).await {
            Err(RevioError::Unavailable(m)) => {
                assert!(m.contains("after 2 attempt(s)") && m.contains("could not connect"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
