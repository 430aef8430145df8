//! The one error shape every route answers with, and the one place that maps errors to statuses.
//!
//! Every failure leaves a handler as an [`ApiError`]: an HTTP status, a stable machine-readable
//! `code` a frontend can switch on, and a message for people. 5xx errors carry their cause for the
//! log only; the body says nothing about internals.

use http::StatusCode;
use serde::Serialize;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Stable, machine-readable code (`snake_case`), documented in `docs/openapi.yaml`.
    pub code: &'static str,
    /// Human-readable explanation. For 5xx a generic text.
    pub message: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
    /// Internal cause, logged for 5xx, never sent.
    pub cause: Option<String>,
    /// A 5xx that repeating the request will not change (the provider refused it): an
    /// Idempotency-Key keeps it as the answer instead of letting the retry run again.
    pub final_answer: bool,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, cause: None, final_answer: false }
    }

    /// 400 with a code naming what is wrong with the input.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: the input is well-formed but cannot be accepted.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 with a specific code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 500 `internal_error`; `cause` is logged, never returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; it has been logged",
        );
        e.cause = Some(cause.to_string());
        e
    }

    /// 503 `service_unavailable` for a dependency that is down; safe to retry later.
    pub fn unavailable(cause: impl std::fmt::Display, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "a service we depend on is unavailable; please retry shortly",
        );
        e.cause = Some(cause.to_string());
        e.retry_after = Some(retry_after);
        e
    }

    /// 503 `temporarily_unavailable`: our storage is throttling or failing and the retries that
    /// fit in the request's budget did not get through. Nothing was half-applied; retrying
    /// (with the same Idempotency-Key) is safe.
    pub fn temporarily_unavailable(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "we are briefly overloaded; nothing was changed, please retry shortly",
        );
        e.cause = Some(cause.to_string());
        e.retry_after = Some(1);
        e
    }

    /// Marks a 5xx as the final answer to this request (see [`ApiError::final_answer`]).
    #[must_use]
    pub fn final_answer(mut self) -> Self {
        self.final_answer = true;
        self
    }

    /// Whether an Idempotency-Key should keep this answer even though it is a 5xx.
    pub fn is_final(&self) -> bool {
        self.final_answer
    }

    /// Adds a `Retry-After` hint.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body sent to the client.
    pub fn body<'a>(&'a self, request_id: &'a str) -> ErrorBody<'a> {
        ErrorBody { error: ErrorDetail { code: self.code, message: &self.message, request_id } }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

/// `{"error": {"code", "message", "request_id"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// The inner object of [`ErrorBody`].
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub request_id: &'a str,
}

/// A storage failure: 503 `temporarily_unavailable` when retrying later can succeed
/// (throttling, 5xx, timeouts, conflicts that outlasted the retries), 500 otherwise.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_transient() {
            ApiError::temporarily_unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}
