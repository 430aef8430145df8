//! `POST /v1/admin/cases/{case_id}/resolve`: an administrator closes an open case with a reason,
//! either crediting what Revio collected to the user's wallet (`credit`) or having Revio refund
//! the payer (`refund`). Administrators only; recorded as resolved by `admin:<user id>`.
//!
//! No `Idempotency-Key`: a resolution applies exactly once by its own conditions, and a repeat
//! answers 409 `case_already_resolved` without changing anything.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::revio::RevioClient;
use purse::service::cases::{self, ResolveInput};
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_cases_resolve` Lambda function.
pub struct Function {
    table: Table,
    revio: RevioClient,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            revio: RevioClient::from_env(&ctx.env, &ctx.aws).await?,
        })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let raw_id = http::path_param(&req, "case_id")?;
        let id = cases::parse_case_id(&raw_id)?;
        let input: ResolveInput = http::json_body(&req)?;
        let by = format!("admin:{}", ctx.caller()?.user_id);
        let case = cases::resolve(&self.table, &self.revio, id, &input, &by).await?;
        http::json(StatusCode::OK, &case)
    }
}
