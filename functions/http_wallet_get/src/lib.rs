//! `GET /v1/wallet`: The caller's wallet: balance, available and held, as exact decimal strings.
//!
//! Wiring only: parse the request, call one service function, shape the answer.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::accounts;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_wallet_get` Lambda function.
pub struct Function {
    table: Table,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let _ = req;
        let wallet = accounts::wallet(&self.table, &ctx.caller()?.user_id).await?;
        http::json(StatusCode::OK, &wallet)
    }
}
