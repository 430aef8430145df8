//! `GET /v1/admin/adjustments`: the manual adjustments made in one month, newest first, at most
//! 200, each with who made it and why. Administrators only.
//!
//! Query parameter: `month` (`YYYY-MM`, default the current UTC month).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::admin::{self, AdjustmentView};
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_adjustments_list` Lambda function.
pub struct Function {
    table: Table,
}

#[derive(serde::Serialize)]
struct Listing {
    month: String,
    items: Vec<AdjustmentView>,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let month = admin::parse_month(http::query_param(&req, "month").as_deref())?;
        let items = admin::list_adjustments(&self.table, &month).await?;
        http::json(StatusCode::OK, &Listing { month, items })
    }
}
