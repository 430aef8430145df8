//! `GET /v1/users/{id}`: another user, looked up by `usr_…` id or by referral code, as a caller
//! needs them before placing a call: their id and what a minute with them costs. Never their
//! e-mail, roles, KYC state or wallet: any signed-in user may ask about any other.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::domain::ids::UserId;
use purse::domain::user::ReferralCode;
use purse::money::Currency;
use purse::service::calls::CallSettings;
use purse::store::{calls, users, Table};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};
use serde::Serialize;

/// The coin calls are paid in.
const CURRENCY: Currency = Currency::Coin;

/// The `http_users_get` Lambda function.
pub struct Function {
    table: Table,
    settings: CallSettings,
}

/// What anyone signed in may know of a user: enough to call them.
#[derive(Debug, Serialize)]
pub struct PublicUser {
    /// The `usr_…` id (`callee_id` of `call.invite`).
    pub id: String,
    /// What the caller pays per billed period ("minute"), in `currency`.
    pub price_per_minute: String,
    pub currency: Currency,
    /// The length of a billed "minute" in seconds (60 deployed; a few seconds in demos).
    pub billing_period_seconds: u64,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)?, settings: CallSettings::from_env(&ctx.env)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id_or_code = http::path_param(&req, "id")?;
        let id = self.resolve(&id_or_code).await?.ok_or_else(user_not_found)?;
        // The profile item holds the price; a missing profile is a missing user.
        users::get_user(&self.table, &id).await?.ok_or_else(user_not_found)?;
        let price = calls::call_price(&self.table, &id).await?.unwrap_or(self.settings.default_price);
        let user = PublicUser {
            id: id.to_string(),
            price_per_minute: purse::money::format(price, CURRENCY),
            currency: CURRENCY,
            billing_period_seconds: self.settings.period_seconds,
        };
        http::json(StatusCode::OK, &user)
    }
}

impl Function {
    /// The user a `usr_…` id or a referral code (as a person types it: case, dashes and spaces
    /// forgiven) names; `None` when it is neither or names nobody.
    async fn resolve(&self, id_or_code: &str) -> Result<Option<UserId>, ApiError> {
        if id_or_code.starts_with(UserId::PREFIX) {
            return Ok(UserId::parse(id_or_code).ok());
        }
        let Ok(code) = ReferralCode::parse(id_or_code) else { return Ok(None) };
        Ok(users::user_id_by_referral_code(&self.table, &code).await?)
    }
}

/// 404 `user_not_found`, alike for a malformed id or code and for an unknown one.
fn user_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no user has this id or referral code")
}
