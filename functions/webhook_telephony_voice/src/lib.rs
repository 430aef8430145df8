//! `POST /webhooks/telephony/voice`, behind a Lambda Function URL: the telephony provider's
//! voice webhook, signed with `X-Twilio-Signature`. It asks for the PIN, connects the callee for
//! the time the caller's balance pays for, and (`?leg=dial`, the Dial's action) settles the call
//! from the talk time. Answers TwiML.
//!
//! Wiring only; the flow is [`purse::service::phone::TelephonyWebhooks`].

use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::phone::TelephonyWebhooks;
use purse::telephony::WebhookRequest;
use purse::{Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `webhook_telephony_voice` Lambda function.
pub struct Function {
    webhooks: TelephonyWebhooks,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Public;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { webhooks: TelephonyWebhooks::voice_from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        self.webhooks.voice(&WebhookRequest::of(&req)).await?.into_response()
    }
}
