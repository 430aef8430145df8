//! `PUT /v1/me/call-price`: the price per minute callers pay to call this user (bounded by
//! configuration); calls placed from now on pay it.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::calls::{CallPriceInput, Calls};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_me_call_price` Lambda function.
pub struct Function {
    calls: Calls,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { calls: Calls::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let input: CallPriceInput = http::json_body(&req)?;
        let view = self.calls.set_price(&ctx.caller()?.user_id, &input).await?;
        http::json(StatusCode::OK, &view)
    }
}
