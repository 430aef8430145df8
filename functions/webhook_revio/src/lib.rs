//! `POST /webhooks/revio`, behind a Lambda Function URL: Revio's webhook deliveries.
//!
//! Wiring only; the pipeline (cap, verify, log, de-duplicate, queue) is
//! [`purse::service::webhooks::RevioWebhooks`].

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::webhooks::{Receipt, RevioWebhooks};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `webhook_revio` Lambda function.
pub struct Function {
    webhooks: RevioWebhooks,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Public;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { webhooks: RevioWebhooks::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let receipt: Receipt = self.webhooks.receive(req.headers(), http::body_bytes(&req)).await?;
        http::json(StatusCode::OK, &receipt)
    }
}
