//! Configuration read once per cold start.
//!
//! Each function names only the variables it needs through [`Env::require`]; a missing variable
//! fails initialisation with an error that names it. Nothing silently falls back to a default.

use std::collections::HashMap;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A required environment variable is not set (or is empty).
    #[error("environment variable {0} is required but not set")]
    MissingEnv(String),
    /// An environment variable is set but cannot be used.
    #[error("environment variable {name} is invalid: {reason}")]
    InvalidEnv { name: String, reason: String },
    /// A secret could not be loaded or parsed. The message never contains the secret's value.
    #[error("secret {id} could not be loaded: {reason}")]
    Secret { id: String, reason: String },
    /// An outside dependency (such as a provider's public key) could not be reached at start.
    #[error("{0}")]
    Dependency(String),
}

/// A snapshot of the environment a function starts with.
///
/// Lambda functions read the process environment; the local dev server and the tests build one
/// from a map so that several functions can run side by side with their own settings.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The environment of the current process.
    pub fn from_process() -> Self {
        Self { vars: std::env::vars().collect() }
    }

    /// An environment made of exactly these variables.
    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self { vars }
    }

    /// Sets one variable, returning the changed environment.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// The value of a variable that must be set.
    ///
    /// # Errors
    /// [`InitError::MissingEnv`] naming the variable when it is unset or empty.
    pub fn require(&self, name: &str) -> Result<String, InitError> {
        match self.vars.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v.clone()),
            _ => Err(InitError::MissingEnv(name.to_owned())),
        }
    }

    /// A variable that must be set and parse as `T`.
    ///
    /// # Errors
    /// [`InitError::MissingEnv`] when unset, [`InitError::InvalidEnv`] when it does not parse.
    pub fn require_parsed<T>(&self, name: &str) -> Result<T, InitError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self.require(name)?;
        raw.parse().map_err(|e: T::Err| InitError::InvalidEnv { name: name.to_owned(), reason: e.to_string() })
    }

    /// A variable that may be absent.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
}

/// Loads the AWS SDK configuration (region, credentials, endpoint override) once.
///
/// `AWS_ENDPOINT_URL` and the per-service variants are honoured by the SDK itself, which is how
/// the local emulator is reached. Every client built from it retries throttling, 5xx and
/// timeouts in standard mode with [`crate::retry::SDK_MAX_ATTEMPTS`] attempts and short,
/// jittered backoff (see [`crate::retry`]); DynamoDB clients add their own time bounds
/// ([`crate::store::dynamodb_client`]).
///
/// Every client built from it shares one HTTP client ([`crate::tls::aws_http_client`]): HTTPS
/// verified against the compiled-in roots, never the system store; plain `http://` endpoints
/// (the emulator) as before.
pub async fn load_aws() -> aws_config::SdkConfig {
    use crate::retry::{SDK_INITIAL_BACKOFF, SDK_MAX_ATTEMPTS, SDK_MAX_BACKOFF};
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(SDK_INITIAL_BACKOFF)
        .with_max_backoff(SDK_MAX_BACKOFF);
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry)
        .http_client(crate::tls::aws_http_client())
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let env = Env::default();
        let err = env.require("PURSE_TABLE").unwrap_err();
        assert_eq!(err.to_string(), "environment variable PURSE_TABLE is required but not set");
    }

    #[test]
    fn an_empty_variable_counts_as_missing() {
        let env = Env::default().with("PURSE_TABLE", "  ");
        assert!(matches!(env.require("PURSE_TABLE"), Err(InitError::MissingEnv(_))));
    }

    #[test]
    fn an_unparsable_variable_is_invalid() {
        let env = Env::default().with("N", "ten");
        assert!(matches!(env.require_parsed::<u32>("N"), Err(InitError::InvalidEnv { .. })));
    }
}
