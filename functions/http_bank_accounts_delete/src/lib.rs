//! `DELETE /v1/bank-accounts/{bank_account_id}`: removes one of the caller's bank accounts
//! (404 for another user's). A withdrawal already on its way is still paid to it.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::bank_accounts::BankAccounts;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_bank_accounts_delete` Lambda function.
pub struct Function {
    accounts: BankAccounts,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { accounts: BankAccounts::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id = http::path_param(&req, "bank_account_id")?;
        self.accounts.delete(&ctx.caller()?.user_id, &id).await?;
        http::empty(StatusCode::NO_CONTENT)
    }
}
