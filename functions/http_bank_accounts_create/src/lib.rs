//! `POST /v1/bank-accounts`: adds a bank account the caller may withdraw to. The number is
//! stored encrypted and answered masked; withdrawals to it are accepted after the cooling-off
//! period (`usable_from`).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::bank_accounts::{AddInput, BankAccounts};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_bank_accounts_create` Lambda function.
pub struct Function {
    accounts: BankAccounts,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { accounts: BankAccounts::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let input: AddInput = http::json_body(&req)?;
        let view = self.accounts.add(&ctx.caller()?.user_id, input).await?;
        http::json(StatusCode::CREATED, &view)
    }
}
