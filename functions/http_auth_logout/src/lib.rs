//! `POST /v1/auth/logout`: Revokes the session a refresh token belongs to.
//!
//! Wiring only: parse the request, call one service function, shape the answer.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::accounts;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_auth_logout` Lambda function.
pub struct Function {
    table: Table,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Public;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let input = http::json_body(&req)?;
        accounts::logout(&self.table, input).await?;
        http::empty(StatusCode::NO_CONTENT)
    }
}
