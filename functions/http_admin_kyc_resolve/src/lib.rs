//! `POST /v1/admin/kyc/{kyc_id}/resolve` `{"decision": "approve" | "reject", "reason": "..."}`:
//! an administrator decides a PENDING attempt, exactly once; the decision, the reason and the
//! administrator's id are kept on the attempt. A repeat answers 409 `kyc_not_pending`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::kyc::{self, ResolveInput};
use purse::service::referrals::RewardsRelay;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_kyc_resolve` Lambda function.
pub struct Function {
    table: Table,
    relay: RewardsRelay,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)?, relay: RewardsRelay::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id = http::path_param(&req, "kyc_id")?;
        let input: ResolveInput = http::json_body(&req)?;
        let view = kyc::resolve(&self.table, Some(&self.relay), &ctx.caller()?.user_id, &id, input).await?;
        http::json(StatusCode::OK, &view)
    }
}
