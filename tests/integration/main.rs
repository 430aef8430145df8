//! Integration tests: the functions, through the local API Gateway, against the emulator.
//!
//! Every test spawns its own [`purse_tests::TestApp`] on fresh tables, so tests run in parallel.

mod auth;
mod deposits;
mod events;
mod history;
mod idempotency;
mod ledger;
mod logs;
mod openapi;
mod revio_client;
mod stack;
mod tokens;
