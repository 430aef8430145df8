//! Game fees and rewards: game services (programs, not people) charge and pay users.
//!
//! - `POST /v1/games/fees` (scope `games:fees`): a `GAME_FEE` moves `amount` from the user's
//!   wallet to [`SystemAccount::PlatformRevenue`], conditioned in the same write on the wallet's
//!   available balance (and on the wallet not being restricted by a reversal shortfall).
//! - `POST /v1/games/rewards` (scope `games:rewards`): a `REWARD` moves `amount` from
//!   [`SystemAccount::RewardsPool`] to the user's wallet.
//!
//! Both take `{"user_id", "amount", "game_session_id"}`; the movement is the user's (it shows in
//! their `GET /v1/transactions`, `reference` = the game session id) and is one `TransactWriteItems`:
//! the movement, its two legs and the user's daily counter for the kind (4 items, 8 write units).
//!
//! **Exactly once, by the game's own id.** The movement's id derives from (the service's name,
//! the kind, the game session id), so the ledger's put-if-absent is the de-duplication: a retry,
//! ten concurrent copies, or a repeat after a lost answer meet the first movement, and every one
//! of them is answered `201` with that movement (`Idempotent-Replayed: true` on all but the one
//! that wrote it). The same session id with another user or amount is `409
//! game_session_conflict` and moves nothing. A fee and a reward of one session are independent,
//! and so are two services' sessions. The name, not the credential, is in the id, so rotating a
//! service's credential keeps retries exactly-once. Refusals (limits, funds) are not remembered:
//! nothing was written, so a retry is judged again.
//!
//! **Limits** (template parameters, read at cold start): a per-call maximum and a per-day limit
//! per user and kind (all services together, UTC days), the latter a counter updated in the
//! movement's own write (`used + amount <= limit` is its condition), so concurrent calls cannot
//! overshoot it.

use crate::auth::ServiceCaller;
use crate::config::{Env, InitError};
use crate::domain::ids::{TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{AccountId, NewTransaction, Quota, Side, SystemAccount, Transaction, TransactionType};
use crate::money::{Amount, AmountError, Currency};
use crate::store::item::s;
use crate::store::{StoreError, Table};
use http::StatusCode;
use lambda_http::{Body, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The currency of game movements (the only one the ledger keeps).
const CURRENCY: Currency = Currency::Coin;

/// Longest game session id accepted, in characters.
pub const MAX_SESSION_ID_CHARS: usize = 128;

/// Which way a game moves money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GameMovement {
    /// The user pays a game fee: wallet → platform revenue.
    Fee,
    /// The user is paid a reward: rewards pool → wallet.
    Reward,
}

impl GameMovement {
    /// The ledger type.
    pub fn kind(self) -> TransactionType {
        match self {
            GameMovement::Fee => TransactionType::GameFee,
            GameMovement::Reward => TransactionType::Reward,
        }
    }

    /// The scope a credential needs for it.
    pub fn scope(self) -> &'static str {
        match self {
            GameMovement::Fee => crate::auth::service::SCOPE_GAME_FEES,
            GameMovement::Reward => crate::auth::service::SCOPE_GAME_REWARDS,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            GameMovement::Fee => "game fee",
            GameMovement::Reward => "game reward",
        }
    }

    /// The environment variables of its limits: (per call, per day).
    fn limit_variables(self) -> (&'static str, &'static str) {
        match self {
            GameMovement::Fee => ("GAME_FEE_MAX", "GAME_FEE_DAILY_LIMIT"),
            GameMovement::Reward => ("GAME_REWARD_MAX", "GAME_REWARD_DAILY_LIMIT"),
        }
    }

    fn quota(self, user: &UserId, day: &str, limit: Decimal) -> Quota {
        match self {
            GameMovement::Fee => Quota::daily_game_fees(user, day, limit),
            GameMovement::Reward => Quota::daily_game_rewards(user, day, limit),
        }
    }

    /// (debit, credit) for `user`.
    fn sides(self, user: &UserId) -> (Side, Side) {
        let wallet = Side::Account(AccountId::wallet(user));
        match self {
            GameMovement::Fee => (wallet, Side::System(SystemAccount::PlatformRevenue)),
            GameMovement::Reward => (Side::System(SystemAccount::RewardsPool), wallet),
        }
    }

    /// The movement's id: the same service, kind and game session always give the same id.
    pub fn movement_id(self, service: &str, session: &GameSessionId) -> TransactionId {
        TransactionId::derived_from(&format!("game:{service}:{}:{}", self.kind().as_str(), session.0))
    }
}

/// A movement's per-call and per-day limits.
#[derive(Debug, Clone, Copy)]
pub struct GameLimits {
    /// Most one call may move.
    pub maximum: Decimal,
    /// Most one user may be charged (fees) or paid (rewards) per UTC day.
    pub daily: Decimal,
}

impl GameLimits {
    /// Reads `GAME_FEE_MAX` and `GAME_FEE_DAILY_LIMIT`, or `GAME_REWARD_MAX` and
    /// `GAME_REWARD_DAILY_LIMIT` (decimal strings).
    ///
    /// # Errors
    /// [`InitError`] when one is missing, not a decimal, or they are inconsistent.
    pub fn from_env(env: &Env, movement: GameMovement) -> Result<Self, InitError> {
        let (max, daily) = movement.limit_variables();
        let limits = Self { maximum: env.require_parsed(max)?, daily: env.require_parsed(daily)? };
        if limits.maximum <= Decimal::ZERO || limits.maximum > limits.daily {
            return Err(InitError::InvalidEnv {
                name: format!("{max}/{daily}"),
                reason: "need 0 < per-call maximum <= daily limit".into(),
            });
        }
        Ok(limits)
    }
}

/// A game's own id of the round or match a movement is for: 1 to [`MAX_SESSION_ID_CHARS`]
/// visible ASCII characters (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameSessionId(String);

impl GameSessionId {
    /// Checks a session id's shape.
    ///
    /// # Errors
    /// [`GameError::InvalidSessionId`].
    pub fn parse(raw: &str) -> Result<Self, GameError> {
        if raw.is_empty() || raw.len() > MAX_SESSION_ID_CHARS || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(GameError::InvalidSessionId);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as the game sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `POST /v1/games/fees` and `POST /v1/games/rewards` body, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameMovementInput {
    pub user_id: String,
    /// A decimal string, such as `"5.00"`.
    pub amount: String,
    pub game_session_id: String,
}

/// A checked request: it cannot exist with a bad amount or session id.
#[derive(Debug, Clone)]
struct GameRequest {
    user_id: String,
    amount: Amount,
    session: GameSessionId,
}

impl GameRequest {
    /// Checks the amount (strictly, as [`Amount::parse`]) and the session id, in that order.
    fn parse(input: GameMovementInput) -> Result<Self, GameError> {
        let amount = Amount::parse(&input.amount, CURRENCY)?;
        let session = GameSessionId::parse(&input.game_session_id)?;
        Ok(Self { user_id: input.user_id, amount, session })
    }
}

/// A game movement as the game service sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GameMovementView {
    pub transaction_id: String,
    /// `GAME_FEE` or `REWARD`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub user_id: String,
    /// Exact decimal string at the currency's places (`"5.00"`).
    pub amount: String,
    pub currency: &'static str,
    pub game_session_id: String,
    /// The service's name.
    pub service: String,
    pub description: String,
    pub created_at: String,
}

impl GameMovementView {
    fn of(tx: &Transaction, service: &str, session: &GameSessionId) -> Self {
        Self {
            transaction_id: tx.id.to_string(),
            kind: tx.kind.as_str(),
            status: tx.status.as_str(),
            user_id: tx.user_id.to_string(),
            amount: crate::money::format(tx.amount.value(), tx.currency),
            currency: tx.currency.code(),
            game_session_id: session.0.clone(),
            service: service.to_owned(),
            description: tx.description.clone(),
            created_at: tx.created_at.clone(),
        }
    }
}

/// The outcome of a game movement request: the movement, and whether an earlier request made it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub movement: GameMovementView,
    /// `true` when the movement existed already (a retry or a concurrent duplicate).
    pub replayed: bool,
}

impl Recorded {
    /// `201` with the movement; `Idempotent-Replayed: true` when an earlier request made it.
    ///
    /// # Errors
    /// Only if the answer cannot be built (an internal error).
    pub fn response(&self) -> Result<Response<Body>, ApiError> {
        let mut response = crate::http::json(StatusCode::CREATED, &self.movement)?;
        if self.replayed {
            response.headers_mut().insert(crate::idempotency::REPLAYED_HEADER, http::HeaderValue::from_static("true"));
        }
        Ok(response)
    }
}

/// Why a game movement was not made. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum GameError {
    #[error("{0}")]
    InvalidAmount(#[from] AmountError),
    #[error("game_session_id must be 1 to {MAX_SESSION_ID_CHARS} visible ASCII characters")]
    InvalidSessionId,
    #[error("no user has this id")]
    UserNotFound,
    #[error("the amount is above the per-call maximum of {0}")]
    AboveMaximum(String),
    #[error("this would exceed the user's daily limit of {0} for this kind of movement")]
    DailyLimit(String),
    #[error("the user's available balance does not cover this game fee")]
    InsufficientFunds,
    #[error("the user's wallet is restricted until a reversal shortfall is covered; it cannot be charged")]
    WalletRestricted,
    /// The movement this session derives exists, for another user or amount.
    #[error("this game session was already charged or paid with another user or amount")]
    SessionConflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<GameError> for ApiError {
    fn from(e: GameError) -> Self {
        match e {
            GameError::InvalidAmount(AmountError::TooManyDecimals(_)) => {
                ApiError::bad_request("too_many_decimals", e.to_string())
            }
            GameError::InvalidAmount(_) => ApiError::bad_request("invalid_amount", e.to_string()),
            GameError::InvalidSessionId => ApiError::bad_request("invalid_game_session_id", e.to_string()),
            GameError::UserNotFound => ApiError::new(StatusCode::NOT_FOUND, "user_not_found", e.to_string()),
            GameError::AboveMaximum(_) => ApiError::unprocessable("amount_above_maximum", e.to_string()),
            GameError::DailyLimit(_) => ApiError::unprocessable("daily_limit_exceeded", e.to_string()),
            GameError::InsufficientFunds => ApiError::unprocessable("insufficient_funds", e.to_string()),
            GameError::WalletRestricted => ApiError::conflict("wallet_restricted", e.to_string()),
            GameError::SessionConflict => ApiError::conflict("game_session_conflict", e.to_string()),
            GameError::Store(e) => ApiError::from(e),
            GameError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Charges a game fee or pays a game reward for `service`, once per game session.
///
/// Checks, in order: the amount (400 `invalid_amount` / `too_many_decimals`), the session id
/// (400), the user id's shape (404), the per-call maximum (422); then one write whose conditions
/// are the movement's absence, the wallet (exists; for a fee, covers the amount and is not
/// restricted) and the daily counter.
///
/// # Errors
/// See [`GameError`].
pub async fn record(
    table: &Table,
    limits: &GameLimits,
    movement: GameMovement,
    service: &ServiceCaller,
    input: GameMovementInput,
) -> Result<Recorded, GameError> {
    let request = GameRequest::parse(input)?;
    let user = UserId::parse(&request.user_id).map_err(|_| GameError::UserNotFound)?;
    let id = movement.movement_id(&service.name, &request.session);
    let earlier = || existing(table, &id, &user, request.amount, &service.name, &request.session);
    if request.amount.value() > limits.maximum {
        // A repeat of a movement made before the maximum was lowered still gets its answer.
        if let Some(done) = earlier().await? {
            return Ok(done);
        }
        return Err(GameError::AboveMaximum(crate::money::format(limits.maximum, CURRENCY)));
    }
    let (debit, credit) = movement.sides(&user);
    let new = NewTransaction {
        id: id.clone(),
        user_id: user.clone(),
        kind: movement.kind(),
        amount: request.amount,
        currency: CURRENCY,
        debit,
        credit,
        description: format!(
            "{} for game session {} ({})",
            capitalised(movement.noun()),
            request.session.as_str(),
            service.name
        ),
        reference: Some(request.session.as_str().to_owned()),
    };
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let quota = movement.quota(&user, &day, limits.daily);
    let attributes = vec![
        ("game_service", s(&service.name)),
        ("game_service_client", s(service.service_id.as_str())),
        ("game_session_id", s(request.session.as_str())),
    ];
    match ledger::transfer_within_quota(table, &new, &quota, attributes).await {
        Ok(tx) => {
            tracing::info!(
                transaction_id = %tx.id,
                user_id = %user,
                service = %service.name,
                kind = movement.kind().as_str(),
                amount = %request.amount,
                "game movement made"
            );
            let (count, coins) = match movement {
                GameMovement::Fee => ("GameFeesCharged", "GameFeeCoins"),
                GameMovement::Reward => ("GameRewardsPaid", "GameRewardCoins"),
            };
            crate::metrics::counted_with_coins(count, 1, coins, tx.amount.value(), "transaction_id", tx.id.as_str());
            Ok(Recorded { movement: GameMovementView::of(&tx, &service.name, &request.session), replayed: false })
        }
        Err(LedgerError::Duplicate) => earlier()
            .await?
            .ok_or_else(|| GameError::Internal(format!("game movement {id} refused as a duplicate but absent"))),
        Err(LedgerError::InsufficientFunds) => Err(GameError::InsufficientFunds),
        Err(LedgerError::WalletRestricted) => Err(GameError::WalletRestricted),
        Err(LedgerError::AccountMissing) => Err(GameError::UserNotFound),
        Err(LedgerError::LimitExceeded) => Err(GameError::DailyLimit(crate::money::format(limits.daily, CURRENCY))),
        Err(LedgerError::Store(e)) => Err(e.into()),
        Err(other) => Err(GameError::Internal(format!("game movement {id}: {other}"))),
    }
}

/// The movement `id` made earlier, answered again when it is for the same user and amount;
/// [`GameError::SessionConflict`] when it is not; `None` when there is none.
async fn existing(
    table: &Table,
    id: &TransactionId,
    user: &UserId,
    amount: Amount,
    service: &str,
    session: &GameSessionId,
) -> Result<Option<Recorded>, GameError> {
    let Some(tx) = ledger::get_transaction(table, id).await? else { return Ok(None) };
    if &tx.user_id != user || tx.amount != amount {
        tracing::info!(transaction_id = %id, service, "game session reused with another user or amount");
        return Err(GameError::SessionConflict);
    }
    tracing::info!(transaction_id = %id, service, "game movement repeated; answering the existing movement");
    Ok(Some(Recorded { movement: GameMovementView::of(&tx, service, session), replayed: true }))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(amount: &str, session: &str) -> GameMovementInput {
        GameMovementInput {
            user_id: UserId::generate().to_string(),
            amount: amount.into(),
            game_session_id: session.into(),
        }
    }

    fn code(e: GameError) -> &'static str {
        ApiError::from(e).code
    }

    #[test]
    fn a_request_needs_a_strict_amount_and_a_visible_ascii_session_id() {
        for (amount, places) in [("5", "5.00"), ("5.0", "5.00"), ("5.05", "5.05"), ("0.01", "0.01")] {
            let ok = GameRequest::parse(input(amount, "match-42")).unwrap();
            assert_eq!(ok.amount.to_string(), places, "{amount}");
        }
        for bad in ["", "0", "0.00", "-1.00", "1e3", " 1.00", "01.00", "+5", "5.", ".5", "five"] {
            assert_eq!(code(GameRequest::parse(input(bad, "m")).unwrap_err()), "invalid_amount", "{bad:?}");
        }
        for bad in ["5.000", "5.001", "0.001"] {
            assert_eq!(code(GameRequest::parse(input(bad, "m")).unwrap_err()), "too_many_decimals", "{bad:?}");
        }
        let long = "x".repeat(MAX_SESSION_ID_CHARS + 1);
        for bad in ["", "with space", "tab\t", "é", long.as_str()] {
            assert_eq!(code(GameRequest::parse(input("1.00", bad)).unwrap_err()), "invalid_game_session_id", "{bad:?}");
        }
        assert!(GameRequest::parse(input("1.00", &"x".repeat(MAX_SESSION_ID_CHARS))).is_ok());
    }

    #[test]
    fn the_movement_id_depends_on_the_service_the_kind_and_the_session_only() {
        let session = GameSessionId::parse("round-7").unwrap();
        let fee = GameMovement::Fee.movement_id("chess", &session);
        assert_eq!(fee, GameMovement::Fee.movement_id("chess", &session));
        assert_ne!(fee, GameMovement::Reward.movement_id("chess", &session));
        assert_ne!(fee, GameMovement::Fee.movement_id("poker", &session));
        assert_ne!(fee, GameMovement::Fee.movement_id("chess", &GameSessionId::parse("round-8").unwrap()));
    }

    #[test]
    fn limits_must_be_consistent() {
        let env = |max: &str, daily: &str| Env::default().with("GAME_FEE_MAX", max).with("GAME_FEE_DAILY_LIMIT", daily);
        assert!(GameLimits::from_env(&env("10.00", "50.00"), GameMovement::Fee).is_ok());
        assert!(GameLimits::from_env(&env("60.00", "50.00"), GameMovement::Fee).is_err());
        assert!(GameLimits::from_env(&env("0", "50.00"), GameMovement::Fee).is_err());
        assert!(GameLimits::from_env(&env("10.00", "50.00"), GameMovement::Reward).is_err(), "its own variables");
    }
}
