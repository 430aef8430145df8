//! `POST /v1/auth/register`: Creates an account, its wallet and (with a referral code) a PENDING referral.
//!
//! Wiring only: parse the request, call one service function, shape the answer.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::accounts;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_auth_register` Lambda function.
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
        let user = accounts::register(&self.table, input).await?;
        http::json(StatusCode::CREATED, &accounts::Profile::from(user))
    }
}
