//! # purse-devserver
//!
//! The whole of Purse on localhost: a local API Gateway (HTTP API, payload 2.0) and Lambda
//! Function URLs in front of every HTTP function, a local API Gateway WebSocket API (and its
//! `@connections` Management API) in front of every WebSocket route function, and a local SQS
//! event source mapping in front of every SQS consumer. Functions are started through
//! `purse_local::router::Router`, the very router the integration tests use, so `make dev` and
//! `make test` route and build events alike.
//!
//! A tour:
//!
//! - [`config`]: `PURSE_HOST`, `PURSE_PORT`, `PURSE_WS_PORT`, `PURSE_STACK_PREFIX`, and the
//!   refusal to start without `AWS_ENDPOINT_URL` (the dev server never talks to real AWS).
//! - [`gateway`]: the HTTP side — reading a hyper request into a `RawRequest` (bodies capped at
//!   [`gateway::MAX_REQUEST_BYTES`]), turning the function's `lambda_http` response into a hyper
//!   response, the access log, and the server loop with graceful shutdown.
//! - [`sqs`]: the event source mapping — the `SqsEvent` exactly as Lambda sends it, partial batch
//!   responses (`batchItemFailures`) deciding what is deleted, and the long-polling loop.
//! - [`websocket`]: the local API Gateway WebSocket API on its own port (`PURSE_WS_PORT`, 3001):
//!   handshakes through `$connect`, messages routed by `$request.body.action`, `$disconnect`,
//!   API Gateway's limits, and the `@connections` Management API the functions push frames
//!   through (an unknown id answers `GoneException`, as in AWS).
//! - [`webapp`]: the web app (`web/dist`) at `/app/`, same origin as the API, with the cache
//!   headers CloudFront gives it in a deployed stack.
//! - [`banner`]: what is printed on start: URLs, routes, webhooks, queues and a curl walk-through.
//! - [`shutdown_signal`]: Ctrl-C or SIGTERM.

pub mod banner;
pub mod config;
pub mod gateway;
pub mod schedule;
pub mod sqs;
pub mod webapp;
pub mod websocket;

/// Completes on Ctrl-C or, on Unix, SIGTERM.
///
/// If a signal handler cannot be installed this is logged and the other signal still works.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Completes once `stop` turns true (or its sender is gone); the server loop and the pollers
/// wait on it.
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}
