//! `POST /v1/calls/phone`: the signed-in user places a phone call to another user. The answer
//! says which number to dial and which PIN to key in; the call rings until the caller dials in
//! (the telephony webhooks take it from there, [`purse::service::phone`]).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::phone::{PhoneCallInput, PhoneCalls};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_calls_phone` Lambda function.
pub struct Function {
    phone: PhoneCalls,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { phone: PhoneCalls::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let input: PhoneCallInput = http::json_body(&req)?;
        let ticket = self.phone.place(&ctx.caller()?.user_id, &input).await?;
        http::json(StatusCode::CREATED, &ticket)
    }
}
