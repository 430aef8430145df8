//! `GET /v1/calls`: the caller's calls (made and received), newest first, with duration,
//! minutes billed, amount and end reason; `limit` (1-50) and `cursor` page through them.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::calls::Calls;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_calls_list` Lambda function.
pub struct Function {
    calls: Calls,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { calls: Calls::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let limit = http::query_param(&req, "limit");
        let cursor = http::query_param(&req, "cursor");
        let page = self.calls.list(&ctx.caller()?.user_id, limit.as_deref(), cursor.as_deref()).await?;
        http::json(StatusCode::OK, &page)
    }
}
