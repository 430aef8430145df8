//! Revio, the payment provider: an HTTP client for its merchant API and its webhook signatures.
//!
//! - [`RevioClient`], built once per cold start ([`RevioClient::from_env`]): create a purchase
//!   ([`RevioClient::create_purchase`]), read one back ([`RevioClient::get_purchase`]), fetch the
//!   webhook signing key ([`RevioClient::public_key_pem`]). Bearer API key, a `brand_id`, the API
//!   under `<REVIO_BASE_URL>/api/v1/`.
//! - [`WebhookVerifier`]: RSA PKCS#1 v1.5 / SHA-256 over the raw webhook body.
//! - [`Purchase`] and [`PurchaseStatus`]: Revio's purchase JSON read leniently.
//!
//! Time is bounded: connecting takes at most 2 s and a whole request 5 s (configurable). Reads
//! are repeated a few times with jittered backoff when Revio is slow, unreachable or answers
//! 429/5xx; a purchase creation is repeated only when the connection could not even be opened,
//! since a repeated POST could create a second purchase. Whatever still fails is
//! [`RevioError::Unavailable`], which callers answer with 503.
//!
//! The API key lives in a [`SecretString`](crate::secrets::SecretString): it is sent only in the
//! `Authorization` header (marked sensitive) and appears in no error, log or `Debug` output.
//!
//! Locally, `tools/sandbox/revio.py` plays Revio (see its docstring), including outages on demand.

mod client;
pub mod payout;
mod purchase;
mod retry;
mod signature;

pub use client::{RevioClient, RevioConfig};
pub use payout::{NewPayout, Payout, PayoutStatus, Recipient};
pub use purchase::{NewPurchase, Purchase, PurchaseStatus};
pub use retry::RetryPolicy;
pub use signature::{KeyError, WebhookVerifier, MIN_KEY_BITS};

/// Why a call to Revio did not give an answer Purse can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevioError {
    /// Revio could not be reached, was too slow, or answered 429 or 5xx, after any retries.
    /// Nothing is known to have happened; the caller answers 503 and may try again later.
    #[error("Revio is unavailable: {0}")]
    Unavailable(String),
    /// Revio does not know the purchase.
    #[error("Revio does not know this purchase")]
    NotFound,
    /// Revio refused the request (a 4xx other than 404 on a read, 429 excluded). `message` is
    /// Revio's own short explanation, truncated; never the whole body.
    #[error("Revio rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// Revio answered something that is not what its API promises.
    #[error("Revio's answer is malformed: {0}")]
    Malformed(String),
}

/// Names a serde_json error's category without quoting the input (which may hold personal data).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "I/O error",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected shape",
        Category::Eof => "truncated JSON",
    }
}
