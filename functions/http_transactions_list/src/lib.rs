//! `GET /v1/transactions`: the caller's history, newest first.
//!
//! Query parameters: `type`, `status`, `from`, `to` (RFC 3339), `limit` (1–100, default 20),
//! `cursor` (from the previous page's `next_cursor`).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::history::{self, CursorSigner, Filters};
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_transactions_list` Lambda function.
pub struct Function {
    table: Table,
    cursors: CursorSigner,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            cursors: CursorSigner::from_env(&ctx.env, &ctx.aws).await?,
        })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let q = |name: &str| http::query_param(&req, name);
        let filters = Filters::parse(
            q("type").as_deref(),
            q("status").as_deref(),
            q("from").as_deref(),
            q("to").as_deref(),
            q("limit").as_deref(),
        )?;
        let page =
            history::list(&self.table, &self.cursors, &ctx.caller()?.user_id, &filters, q("cursor").as_deref()).await?;
        http::json(StatusCode::OK, &page)
    }
}
