//! # Purse
//!
//! The shared library of every Purse Lambda function: the domain, the ledger, authentication,
//! the HTTP conventions, and the adapters to DynamoDB, SQS and Secrets Manager.
//!
//! A tour, from the outside in:
//!
//! - [`runtime`]: the [`runtime::HttpFunction`] contract each function crate implements, and
//!   the one place where authentication, role checks and error shaping happen.
//! - [`http`] and [`error`]: request parsing (JSON only, size-capped, unknown fields refused)
//!   and the single error shape `{"error": {"code", "message", "request_id"}}`.
//! - [`service`]: the use cases, one function per operation, each with its own error enum.
//! - [`domain`] and [`money`]: values that cannot be invalid once parsed (`Email`, `Password`,
//!   `Amount`, ids) and the product's rules. No AWS, no HTTP.
//! - [`ledger`]: double-entry accounts and transfers.
//! - [`kyc`]: the KYC provider port and its Karza-style adapter; [`pii`]: encryption and keyed
//!   hashes of personal data.
//! - [`auth`]: argon2id password hashing, JWT access tokens, rotating refresh tokens.
//! - [`store`]: the DynamoDB single-table layout and repositories.
//! - [`retry`]: the one retry policy (backoff with full jitter, per-request time budget) and
//!   which layer retries what under DynamoDB's failure modes.
//! - [`config`], [`secrets`], [`telemetry`]: cold-start configuration, secrets that never
//!   print, and logging.
//! - [`tls`]: the one TLS set-up (rustls on ring, compiled-in roots) of the SDK's and the
//!   providers' HTTPS clients; [`http_client`]: the providers' HTTP client, on the SDK's hyper.

pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod http_client;
pub mod idempotency;
pub mod kyc;
pub mod ledger;
pub mod metrics;
pub mod money;
pub mod pii;
pub mod retry;
pub mod revio;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod telephony;
pub mod tls;
pub mod ws;

pub use error::ApiError;
pub use runtime::{Access, HttpFunction, InitContext, RequestCtx};
