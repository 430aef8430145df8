//! `GET /v1/bank-accounts`: the caller's active bank accounts, newest first, numbers masked.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::bank_accounts::BankAccounts;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_bank_accounts_list` Lambda function.
pub struct Function {
    accounts: BankAccounts,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { accounts: BankAccounts::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, ctx: &RequestCtx, _req: Request) -> Result<Response<Body>, ApiError> {
        http::json(StatusCode::OK, &self.accounts.list(&ctx.caller()?.user_id).await?)
    }
}
