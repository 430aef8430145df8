//! Integration tests: the functions, through the local API Gateway, against the emulator.
//!
//! Every test spawns its own [`purse_tests::TestApp`] on fresh tables, so tests run in parallel.

mod admin;
mod admin_queues;
mod amounts;
mod auth;
mod budgets;
mod calls;
mod cases;
mod chaos;
mod deposits;
mod events;
mod games;
mod hardening;
mod history;
mod iam;
mod idempotency;
mod kyc;
mod ledger;
mod logs;
mod metrics;
mod openapi;
mod phone_calls;
mod reconciliation;
mod referrals;
mod reversals;
mod revio_client;
mod revio_key;
mod routing;
mod signin_throttle;
mod stack;
mod tokens;
mod users;
mod webhook_forgery;
mod withdrawals;
