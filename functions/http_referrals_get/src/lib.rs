//! `GET /v1/referrals`: the caller's referral code and share link, the people who joined with it
//! (masked e-mails, newest first, paged by `limit` and `cursor`), their status, and the rewards
//! earned.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::referrals::{self, RewardRules};
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_referrals_get` Lambda function.
pub struct Function {
    table: Table,
    rules: RewardRules,
    share_base_url: String,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            rules: RewardRules::from_env(&ctx.env)?,
            share_base_url: ctx.env.require("REFERRAL_SHARE_BASE_URL")?,
        })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let limit = http::query_param(&req, "limit");
        let cursor = http::query_param(&req, "cursor");
        let view = referrals::overview(
            &self.table,
            &self.rules,
            &self.share_base_url,
            &ctx.caller()?.user_id,
            limit.as_deref(),
            cursor.as_deref(),
        )
        .await?;
        http::json(StatusCode::OK, &view)
    }
}
