//! `POST /v1/games/rewards`: a game service pays a user a reward, from the rewards pool to
//! their wallet (see [`purse::service::games`]). Game services only: a credential holding
//! the scope `games:rewards`, checked before the handler runs.
//!
//! Exactly once per game session: the movement's id derives from the service, the kind and
//! `game_session_id`, so a retry gets the first movement back, never a second payment.

use lambda_http::{Body, Request, Response};
use purse::auth::service::SCOPE_GAME_REWARDS;
use purse::config::InitError;
use purse::service::games::{self, GameLimits, GameMovement};
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_games_rewards` Lambda function.
pub struct Function {
    table: Table,
    limits: GameLimits,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Service(SCOPE_GAME_REWARDS);

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let table = Table::from_env(&ctx.env, &ctx.aws)?;
        let limits = GameLimits::from_env(&ctx.env, GameMovement::Reward)?;
        Ok(Self { table, limits })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let service = ctx.service()?;
        let input = http::json_body(&req)?;
        games::record(&self.table, &self.limits, GameMovement::Reward, service, input).await?.response()
    }
}
