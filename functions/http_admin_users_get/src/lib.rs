//! `GET /v1/admin/users/{id}`: a user looked up by `usr_…` id or by e-mail, with their profile
//! (never the password hash), wallet and 20 most recent movements. Administrators only.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::admin;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_users_get` Lambda function.
pub struct Function {
    table: Table,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id_or_email = http::path_param(&req, "id")?;
        let detail = admin::lookup_user(&self.table, &id_or_email).await?;
        http::json(StatusCode::OK, &detail)
    }
}
