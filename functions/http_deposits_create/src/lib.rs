//! `POST /v1/deposits`: starts a deposit through Revio and answers with the checkout URL.
//!
//! Requires an `Idempotency-Key`: a retry gets the first answer, never a second deposit.

use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::domain::ids::TransactionId;
use purse::idempotency::{self, Idempotency};
use purse::service::deposits::{self, Deposits};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_deposits_create` Lambda function.
pub struct Function {
    deposits: Deposits,
    idempotency: Idempotency,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let deposits = Deposits::from_env(&ctx.env, &ctx.aws).await?;
        let idempotency = Idempotency::new(deposits.table.clone());
        Ok(Self { deposits, idempotency })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let caller = ctx.caller()?;
        let (user, email) = (caller.user_id.clone(), caller.email.as_deref());
        let scope = format!("{user}:POST /v1/deposits");
        self.idempotency
            .run(&scope, &req, || async {
                let input = http::json_body(&req)?;
                let id = TransactionId::derived_from(&idempotency::operation_key(&scope, &req)?);
                let view = self.deposits.create(&user, email, id, input).await?;
                http::json(deposits::CREATED, &view)
            })
            .await
    }
}
