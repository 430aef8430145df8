//! The dev server's own settings, read once at start from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PURSE_HOST` | `127.0.0.1` | address to listen on |
//! | `PURSE_PORT` | `3000` | port to listen on |
//! | `PURSE_WS_PORT` | `3001` | port of the WebSocket API (`ws://`) and its `@connections` endpoint |
//! | `PURSE_STACK_PREFIX` | `purse-dev-` | name prefix of the tables, queues and secrets |
//! | `AWS_ENDPOINT_URL` | — (required) | the emulator; the AWS SDK reads it itself |
//!
//! A variable that is unset takes its default; one that is set but unusable stops the server
//! with a message naming it.

/// Default `PURSE_HOST`.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default `PURSE_PORT`.
pub const DEFAULT_PORT: u16 = 3000;
/// Default `PURSE_WS_PORT`.
pub const DEFAULT_WS_PORT: u16 = 3001;
/// Default `PURSE_STACK_PREFIX`.
pub const DEFAULT_PREFIX: &str = "purse-dev-";

/// Why the dev server cannot start with this environment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No emulator configured: without it the SDK would talk to real AWS.
    #[error(
        "AWS_ENDPOINT_URL is not set; the dev server only talks to the local emulator. \
         Start it with `make dev`, or run tools/stack/up.sh and export AWS_ENDPOINT_URL=http://127.0.0.1:4566 \
         (plus AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing)"
    )]
    NoEmulator,
    /// `AWS_ENDPOINT_URL` points at AWS itself.
    #[error("AWS_ENDPOINT_URL={0} is a real AWS endpoint; the dev server only talks to the local emulator")]
    RealAws(String),
    /// A variable is set to something unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The dev server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (a name or an IP address).
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// Port of the WebSocket API and its `@connections` endpoint.
    pub ws_port: u16,
    /// Name prefix of every provisioned resource.
    pub prefix: String,
    /// The emulator's URL, for the banner (the SDK reads `AWS_ENDPOINT_URL` itself).
    pub endpoint: String,
}

impl Config {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// See [`Config::from_lookup`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` (the environment, or a map in tests).
    ///
    /// # Errors
    /// - [`ConfigError::NoEmulator`] when `AWS_ENDPOINT_URL` is unset or blank;
    /// - [`ConfigError::RealAws`] when it names an `amazonaws.com` endpoint;
    /// - [`ConfigError::Invalid`] when `PURSE_PORT` or `PURSE_WS_PORT` is not a port number (or
    ///   both are the same), or `PURSE_HOST` or
    ///   `PURSE_STACK_PREFIX` is set but blank.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let endpoint = get("AWS_ENDPOINT_URL").filter(|v| !v.trim().is_empty()).ok_or(ConfigError::NoEmulator)?;
        if endpoint.to_ascii_lowercase().contains("amazonaws.com") {
            return Err(ConfigError::RealAws(endpoint));
        }
        let host = match get("PURSE_HOST") {
            None => DEFAULT_HOST.to_owned(),
            Some(h) if h.trim().is_empty() => return Err(invalid("PURSE_HOST", "it is set but empty")),
            Some(h) => h.trim().to_owned(),
        };
        let port = read_port(&get, "PURSE_PORT", DEFAULT_PORT)?;
        let ws_port = read_port(&get, "PURSE_WS_PORT", DEFAULT_WS_PORT)?;
        if ws_port == port && port != 0 {
            return Err(invalid("PURSE_WS_PORT", format!("{ws_port} is PURSE_PORT too; choose another port")));
        }
        let prefix = match get("PURSE_STACK_PREFIX") {
            None => DEFAULT_PREFIX.to_owned(),
            Some(p) if p.trim().is_empty() => return Err(invalid("PURSE_STACK_PREFIX", "it is set but empty")),
            Some(p) => p.trim().to_owned(),
        };
        Ok(Self { host, port, ws_port, prefix, endpoint })
    }

    /// The URL clients reach the server at, e.g. `http://127.0.0.1:3000`.
    pub fn base_url(&self) -> String {
        self.url_on(self.port)
    }

    /// The WebSocket API's http URL, e.g. `http://127.0.0.1:3001`: where functions push frames
    /// (`@connections`); clients connect to the same address as `ws://`.
    pub fn ws_base_url(&self) -> String {
        self.url_on(self.ws_port)
    }

    fn url_on(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{port}", self.host)
        } else {
            format!("http://{}:{port}", self.host)
        }
    }
}

fn read_port(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: u16) -> Result<u16, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(p) => p.trim().parse().map_err(|e| invalid(name, format!("{p:?} is not a port number ({e})"))),
    }
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_apply_when_only_the_emulator_is_set() {
        let c = Config::from_lookup(lookup(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")])).unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 3000);
        assert_eq!(c.ws_port, 3001);
        assert_eq!(c.ws_base_url(), "http://127.0.0.1:3001");
        assert_eq!(c.prefix, "purse-dev-");
        assert_eq!(c.base_url(), "http://127.0.0.1:3000");
    }

    #[test]
    fn the_server_refuses_to_start_without_an_emulator() {
        let err = Config::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(err, ConfigError::NoEmulator);
        assert!(err.to_string().starts_with("AWS_ENDPOINT_URL is not set"));
        assert_eq!(Config::from_lookup(lookup(&[("AWS_ENDPOINT_URL", " ")])).unwrap_err(), ConfigError::NoEmulator);
    }

    #[test]
    fn a_real_aws_endpoint_is_refused() {
        let err =
            Config::from_lookup(lookup(&[("AWS_ENDPOINT_URL", "https://sqs.us-east-1.amazonaws.com")])).unwrap_err();
        assert!(matches!(err, ConfigError::RealAws(_)));
    }

    #[test]
    fn an_unparsable_port_is_named_in_the_error() {
        let err = Config::from_lookup(lookup(&[("AWS_ENDPOINT_URL", "http://e"), ("PURSE_PORT", "http")])).unwrap_err();
        assert!(err.to_string().starts_with("environment variable PURSE_PORT is invalid"), "{err}");
    }

    #[test]
    fn explicit_settings_are_used_and_ipv6_hosts_are_bracketed() {
        let c = Config::from_lookup(lookup(&[
            ("AWS_ENDPOINT_URL", "http://e"),
            ("PURSE_HOST", "::1"),
            ("PURSE_PORT", "3111"),
            ("PURSE_WS_PORT", "3112"),
            ("PURSE_STACK_PREFIX", "mine-"),
        ]))
        .unwrap();
        assert_eq!(c.base_url(), "http://[::1]:3111");
        assert_eq!(c.ws_base_url(), "http://[::1]:3112");
        assert_eq!(c.prefix, "mine-");
    }

    #[test]
    fn a_blank_prefix_is_refused_rather_than_defaulted() {
        let err =
            Config::from_lookup(lookup(&[("AWS_ENDPOINT_URL", "http://e"), ("PURSE_STACK_PREFIX", "")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { name: "PURSE_STACK_PREFIX", .. }));
    }

    #[test]
    fn the_websocket_port_must_be_a_port_and_not_the_http_one() {
        let err =
            Config::from_lookup(lookup(&[("AWS_ENDPOINT_URL", "http://e"), ("PURSE_WS_PORT", "ws")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { name: "PURSE_WS_PORT", .. }), "{err}");
        let err = Config::from_lookup(lookup(&[
            ("AWS_ENDPOINT_URL", "http://e"),
            ("PURSE_PORT", "4000"),
            ("PURSE_WS_PORT", "4000"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { name: "PURSE_WS_PORT", .. }), "{err}");
    }
}
