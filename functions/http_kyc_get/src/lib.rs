//! `GET /v1/kyc`: the caller's KYC status (`NOT_STARTED`, `PENDING`, `VERIFIED`, `REJECTED`),
//! the rejection reason, whether they may submit (again), and the masked PAN. One read.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::store::{kyc, Table};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_kyc_get` Lambda function.
pub struct Function {
    table: Table,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, _req: Request) -> Result<Response<Body>, ApiError> {
        let profile = kyc::profile(&self.table, &ctx.caller()?.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        http::json(StatusCode::OK, &purse::service::kyc::KycView::of(&profile))
    }
}
