//! `GET /v1/transactions/{id}`: one of the caller's transactions; another user's id answers
//! exactly like a missing one.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::history;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_transactions_get` Lambda function.
pub struct Function {
    table: Table,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id = http::path_param(&req, "id")?;
        let view = history::get(&self.table, &ctx.caller()?.user_id, &id).await?;
        http::json(StatusCode::OK, &view)
    }
}
