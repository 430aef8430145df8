//! `POST /v1/kyc`: the caller submits their PAN, name and date of birth (with consent) for
//! verification. The provider is asked first; nothing is recorded if it is down or slow (503
//! `kyc_provider_unavailable` within the client's time bound). Answers 201 with the status:
//! PENDING, or VERIFIED / REJECTED when the provider decides at once.
//!
//! No `Idempotency-Key`: a second submission while one is PENDING is refused (409), so a retry
//! cannot start two checks for one person.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::kyc::{KarzaClient, KycSecret};
use purse::service::kyc::{KycService, SubmitInput};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_kyc_submit` Lambda function.
pub struct Function {
    kyc: KycService<KarzaClient>,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let secret = KycSecret::from_env(&ctx.env, &ctx.aws).await?;
        let provider = KarzaClient::from_env(&ctx.env, &secret)?;
        Ok(Self { kyc: KycService::from_env(&ctx.env, &ctx.aws, provider).await? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let input: SubmitInput = http::json_body(&req)?;
        let view = self.kyc.submit(&ctx.caller()?.user_id, input).await?;
        http::json(StatusCode::CREATED, &view)
    }
}
