//! `POST /webhooks/telephony/status`, behind a Lambda Function URL: the telephony provider's
//! status callback, signed with `X-Twilio-Signature`, sent once a call is over. A phone call the
//! Dial action did not settle is settled here from the provider's Calls resource.
//!
//! Wiring only; the flow is [`purse::service::phone::TelephonyWebhooks`].

use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::phone::TelephonyWebhooks;
use purse::telephony::WebhookRequest;
use purse::{Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `webhook_telephony_status` Lambda function.
pub struct Function {
    webhooks: TelephonyWebhooks,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Public;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { webhooks: TelephonyWebhooks::status_from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        self.webhooks.status(&WebhookRequest::of(&req)).await?.into_response()
    }
}
