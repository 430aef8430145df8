//! Running Purse without AWS.
//!
//! - [`template`]: `template.yaml` as data — tables, queues, secrets, functions, routes.
//! - [`provision`]: creates what the template declares in the emulator, under a name prefix, and
//!   resolves each function's environment exactly as the template sets it.
//! - [`iam`]: each function's own credentials and its template policy, registered with the
//!   emulator, which enforces it.
//! - [`registry`]: every function by binary name, initialised through the same code as in Lambda.
//! - [`router`]: the local API Gateway over all of them, shared by the dev server and the tests.
//! - [`apigw`]: turns a plain HTTP request into the API Gateway payload-2.0 event and parses it
//!   with `lambda_http`, as the Lambda runtime would.
//! - [`wsapi`]: the API Gateway WebSocket API's events (`$connect`, messages, `$disconnect`),
//!   route selection by `$request.body.action`, connection ids and limits.

pub mod apigw;
pub mod iam;
pub mod provision;
pub mod registry;
pub mod router;
pub mod template;
pub mod wsapi;
