//! `GET /v1/calls/{id}`: one of the caller's calls; another user's call answers exactly like a
//! missing one.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::calls::{CallView, Calls};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_calls_get` Lambda function.
pub struct Function {
    calls: Calls,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { calls: Calls::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id = http::path_param(&req, "id")?;
        let user = &ctx.caller()?.user_id;
        let call = self.calls.get_for(user, &id).await?;
        http::json(StatusCode::OK, &CallView::of(&call, user))
    }
}
