//! `GET /v1/admin/cases`: the open cases — deposits that need a person (paid after failed,
//! amount mismatch, unknown purchase paid) — oldest first. Administrators only.
//!
//! Query parameter: `limit` (1–100, default 100).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::cases;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_cases_list` Lambda function.
pub struct Function {
    table: Table,
}

#[derive(serde::Serialize)]
struct Listing {
    items: Vec<cases::Case>,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let limit = cases::parse_list_limit(http::query_param(&req, "limit").as_deref())?;
        let items = cases::list_open(&self.table, limit).await?;
        http::json(StatusCode::OK, &Listing { items })
    }
}
