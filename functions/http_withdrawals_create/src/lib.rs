//! `POST /v1/withdrawals`: holds the amount on the caller's wallet (KYC verified, own bank
//! account past its cooling-off period, limits and the daily cap checked in the same write)
//! and queues the payout. Answers 202 with the PENDING movement.
//!
//! Requires an `Idempotency-Key`: a retry gets the first answer, never a second withdrawal.

use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::domain::ids::TransactionId;
use purse::idempotency::{self, Idempotency};
use purse::service::withdrawals::{self, Withdrawals};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_withdrawals_create` Lambda function.
pub struct Function {
    withdrawals: Withdrawals,
    idempotency: Idempotency,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let withdrawals = Withdrawals::from_env(&ctx.env, &ctx.aws)?;
        let idempotency = Idempotency::new(withdrawals.table.clone());
        Ok(Self { withdrawals, idempotency })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let user = ctx.caller()?.user_id.clone();
        let scope = format!("{user}:POST /v1/withdrawals");
        self.idempotency
            .run(&scope, &req, || async {
                let input = http::json_body(&req)?;
                let id = TransactionId::derived_from(&idempotency::operation_key(&scope, &req)?);
                let view = self.withdrawals.create(&user, id, input).await?;
                http::json(withdrawals::ACCEPTED, &view)
            })
            .await
    }
}
