//! `POST /v1/games/fees`: a game service charges a user a game fee, from their wallet to
//! platform revenue (see [`purse::service::games`]). Game services only: a credential holding
//! the scope `games:fees`, checked before the handler runs.
//!
//! Exactly once per game session: the movement's id derives from the service, the kind and
//! `game_session_id`, so a retry gets the first movement back, never a second charge.

use lambda_http::{Body, Request, Response};
use purse::auth::service::SCOPE_GAME_FEES;
use purse::config::InitError;
use purse::service::games::{self, GameLimits, GameMovement};
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_games_fees` Lambda function.
pub struct Function {
    table: Table,
    limits: GameLimits,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Service(SCOPE_GAME_FEES);

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let table = Table::from_env(&ctx.env, &ctx.aws)?;
        let limits = GameLimits::from_env(&ctx.env, GameMovement::Fee)?;
        Ok(Self { table, limits })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let service = ctx.service()?;
        let input = http::json_body(&req)?;
        games::record(&self.table, &self.limits, GameMovement::Fee, service, input).await?.response()
    }
}
