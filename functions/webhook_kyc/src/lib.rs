//! `POST /webhooks/kyc`, behind a Lambda Function URL: the KYC provider's asynchronous results,
//! signed per Standard Webhooks.
//!
//! Wiring only; the pipeline (cap, verify, log, de-duplicate by `webhook-id`, queue) is
//! [`purse::service::webhooks::WebhookPipeline`] with [`purse::service::kyc::KycSource`].

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::kyc::KycWebhooks;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `webhook_kyc` Lambda function.
pub struct Function {
    webhooks: KycWebhooks,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Public;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { webhooks: KycWebhooks::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let receipt = self.webhooks.receive(req.headers(), http::body_bytes(&req)).await?;
        http::json(StatusCode::OK, &receipt)
    }
}
