//! `GET /v1/admin/kyc/reviews`: KYC attempts whose result never came (polling gave up) or that
//! the provider lost, oldest first. Administrators only; PANs masked.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_kyc_reviews` Lambda function.
pub struct Function {
    table: Table,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, _req: Request) -> Result<Response<Body>, ApiError> {
        let reviews = purse::service::kyc::reviews(&self.table, 100).await?;
        http::json(StatusCode::OK, &purse::service::kyc::Reviews { reviews })
    }
}
