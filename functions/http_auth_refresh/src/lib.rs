//! `POST /v1/auth/refresh`: Rotates a refresh token into a new token pair; a reused token revokes its session.
//!
//! Wiring only: parse the request, call one service function, shape the answer.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::auth::tokens::AccessTokens;
use purse::config::InitError;
use purse::service::accounts;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_auth_refresh` Lambda function.
pub struct Function {
    table: Table,
    tokens: AccessTokens,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Public;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            tokens: AccessTokens::from_env(&ctx.env, &ctx.aws).await?,
        })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let input = http::json_body(&req)?;
        let pair = accounts::refresh(&self.table, &self.tokens, input).await?;
        http::json(StatusCode::OK, &pair)
    }
}
