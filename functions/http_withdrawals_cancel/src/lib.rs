//! `POST /v1/withdrawals/{id}/cancel`: cancels the caller's withdrawal while its payout has not
//! been taken by the payout worker: the hold is released and the coins are available again.
//! Cancel and the worker race on one condition; exactly one wins. A repeat answers the same.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::withdrawals::Withdrawals;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_withdrawals_cancel` Lambda function.
pub struct Function {
    withdrawals: Withdrawals,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { withdrawals: Withdrawals::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id = http::path_param(&req, "id")?;
        let view = self.withdrawals.cancel(&ctx.caller()?.user_id, &id).await?;
        http::json(StatusCode::OK, &view)
    }
}
