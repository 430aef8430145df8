//! The WebSocket side of the API: frames, errors and pushes to connections.
//!
//! Clients talk to an API Gateway WebSocket API whose routes are Lambdas; the server talks back
//! only by pushing frames through the API Gateway Management API (`POST @connections/{id}`).
//! A push to a connection that no longer exists answers `GoneException`: the caller forgets
//! that connection. Locally, `make dev` serves the same API (see `tools/devserver`).

use crate::config::{Env, InitError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde::Serialize;

/// The largest frame a client may send (API Gateway allows 128 KB; SDP offers are a few KB).
pub const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024;

/// Why a WebSocket route refused: sent to the client as an `error` frame (or, for `$connect`,
/// as the handshake's HTTP status).
#[derive(Debug, Clone)]
pub struct WsError {
    /// The HTTP-like status (used only to refuse a handshake and to choose the log level).
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// The call the error is about, when there is one.
    pub call_id: Option<String>,
    /// Logged for 5xx, never sent.
    pub cause: Option<String>,
}

impl WsError {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), call_id: None, cause: None }
    }

    /// The error is about this call.
    #[must_use]
    pub fn for_call(mut self, call_id: impl Into<String>) -> Self {
        self.call_id = Some(call_id.into());
        self
    }

    /// A failure on our side; `cause` is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(500, "internal_error", "something went wrong on our side; it has been logged");
        e.cause = Some(cause.to_string());
        e
    }

    /// The `error` frame sent to the client.
    pub fn frame(&self) -> serde_json::Value {
        let mut frame = serde_json::json!({"type": "error", "code": self.code, "message": self.message});
        if let Some(id) = &self.call_id {
            frame["call_id"] = serde_json::Value::String(id.clone());
        }
        frame
    }
}

impl From<crate::ApiError> for WsError {
    fn from(e: crate::ApiError) -> Self {
        Self { status: e.status.as_u16(), code: e.code, message: e.message, call_id: None, cause: e.cause }
    }
}

impl From<crate::store::StoreError> for WsError {
    fn from(e: crate::store::StoreError) -> Self {
        WsError::from(crate::ApiError::from(e))
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Handed to the connection.
    Delivered,
    /// The connection no longer exists (`GoneException`): forget it.
    Gone,
}

/// Why a push failed (not `Gone`: that is an answer, not a failure).
#[derive(Debug, thiserror::Error)]
#[error("push failed: {0}")]
pub struct PushError(pub String);

/// Pushes frames to connections through the API Gateway Management API.
#[derive(Clone, Debug)]
pub struct Pusher {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl Pusher {
    /// A pusher for the WebSocket API whose callback URL is `PURSE_WS_CALLBACK_URL`
    /// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` on AWS; the local
    /// WebSocket endpoint's `http://127.0.0.1:{port}` in `make dev`).
    ///
    /// # Errors
    /// [`InitError::MissingEnv`] when it is not set.
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let endpoint = env.require("PURSE_WS_CALLBACK_URL")?;
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(aws)
            .endpoint_url(endpoint)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(std::time::Duration::from_secs(2))
                    .operation_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .build();
        Ok(Self { client: aws_sdk_apigatewaymanagement::Client::from_conf(config) })
    }

    /// Sends `frame` (as JSON text) to one connection.
    ///
    /// # Errors
    /// [`PushError`] when the Management API failed (after the SDK's retries).
    pub async fn send(&self, connection_id: &str, frame: &impl Serialize) -> Result<Pushed, PushError> {
        let data = serde_json::to_vec(frame).map_err(|e| PushError(e.to_string()))?;
        match self.client.post_to_connection().connection_id(connection_id).data(Blob::new(data)).send().await {
            Ok(_) => Ok(Pushed::Delivered),
            Err(e) => {
                let service = e.into_service_error();
                if service.is_gone_exception() {
                    Ok(Pushed::Gone)
                } else {
                    Err(PushError(format!("{service:?}")))
                }
            }
        }
    }

    /// Closes a connection (a server-side hang-up).
    ///
    /// # Errors
    /// [`PushError`] when the Management API failed; a connection already gone is not an error.
    pub async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        match self.client.delete_connection().connection_id(connection_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let service = e.into_service_error();
                if service.is_gone_exception() {
                    Ok(())
                } else {
                    Err(PushError(format!("{service:?}")))
                }
            }
        }
    }
}
