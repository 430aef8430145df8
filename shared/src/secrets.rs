//! Secrets from AWS Secrets Manager, loaded once per cold start and never printed.

use crate::config::InitError;
use std::fmt;

/// A secret value. `Debug` and `Display` show only `<redacted>`.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Fetches the current value of a secret (its `SecretString`).
///
/// # Errors
/// [`InitError::Secret`] naming the secret id and the failure, never its value.
pub async fn load(aws: &aws_config::SdkConfig, secret_id: &str) -> Result<SecretString, InitError> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| InitError::Secret {
        id: secret_id.to_owned(),
        reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
    })?;
    out.secret_string()
        .map(|s| SecretString::new(s.to_owned()))
        .ok_or_else(|| InitError::Secret { id: secret_id.to_owned(), reason: "the secret has no string value".into() })
}
