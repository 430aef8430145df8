//! Paid calls: placing, answering, per-period billing on the ledger, ending and settling.
//!
//! ## Billing
//!
//! The caller pays the callee's price per minute (fixed when the call is placed); the callee
//! earns a configured share, the platform keeps the rest. The call's own item is a ledger
//! account, its **escrow** (`call:<id>`). Every minute is one ledger movement `CALL_CHARGE`
//! from the caller's wallet into the escrow, whose id derives from `<call id>#<minute>`, so it
//! exists at most once:
//!
//! 1. On answer, minute 1 is **held** on the caller's wallet in the same write that turns the
//!    call ACTIVE, and a delayed SQS message (the billing tick of minute 1) is queued for the end
//!    of the period.
//! 2. The tick of minute *k* **posts** minute *k* into the escrow and **holds** minute *k+1*, in
//!    one write (4 items, 8 write units) conditioned on the call being ACTIVE with *k−1* minutes
//!    billed. A duplicate or late tick finds *k* billed (or the call ended) and changes nothing.
//!    Then it queues the tick of *k+1*.
//! 3. When minute *k+1* cannot be held, minute *k* is posted alone and the call ends with
//!    `insufficient_funds`, in one write; both parties are told.
//! 4. On end (either party, a disconnect, the maximum duration, or the sweeper), the running
//!    minute is charged **per second, rounded up to the coin's smallest unit** — never more than
//!    the minute held — and the rest of the hold is released, in one write that also ends the
//!    call.
//! 5. Then the escrow is **paid out** once ([`Calls::payout`]): one `CALL_EARNING` movement with
//!    two legs, the callee's share (rounded down to the smallest unit) to their wallet and the
//!    rest to platform revenue, so the legs always sum to the charge exactly. A payout that
//!    fails is retried by the sweeper; the callee's wallet is written once per call.
//!
//! Nothing here trusts a clock more than it must: a tick that arrives early is re-queued for
//! its due time; a tick lost for good is replayed by the sweeper ([`Calls::sweep`]).

use crate::config::{Env, InitError};
use crate::domain::ids::{CallId, TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, Escrow, HeldPosting, Leg, NewSplit};
use crate::ledger::{AccountId, LedgerError, NewHold, Side, SystemAccount, TransactionType};
use crate::money::{Amount, Currency};
use crate::store::calls::{self as store, Call, CallStatus, EscrowCredit};
use crate::store::item::{n, s};
use crate::store::{now_rfc3339, transact, StoreError, Table};
use crate::ws::{Pushed, Pusher};
use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// The coin calls are paid in.
const CURRENCY: Currency = Currency::Coin;

/// Call settings, read once per cold start.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// The billing period (60 s in production; a few seconds in tests and demos).
    pub period_seconds: u64,
    /// The price per minute of a callee who set none.
    pub default_price: Decimal,
    /// Bounds of a price a callee may set.
    pub min_price: Decimal,
    pub max_price: Decimal,
    /// The callee's share of each charge, in percent (the platform keeps the rest).
    pub callee_share_percent: u32,
    /// The longest a call may run, in billing periods.
    pub max_minutes: u32,
    /// How long a call rings before it ends unanswered.
    pub ring_seconds: u64,
}

impl CallSettings {
    /// Reads `PURSE_BILLING_PERIOD_SECONDS`, `CALL_DEFAULT_PRICE`, `CALL_PRICE_MIN`,
    /// `CALL_PRICE_MAX`, `CALLEE_SHARE_PERCENT`, `CALL_MAX_MINUTES`, `CALL_RING_SECONDS`.
    ///
    /// # Errors
    /// A missing or inconsistent setting.
    pub fn from_env(env: &Env) -> Result<Self, InitError> {
        let settings = Self {
            period_seconds: env.require_parsed("PURSE_BILLING_PERIOD_SECONDS")?,
            default_price: env.require_parsed("CALL_DEFAULT_PRICE")?,
            min_price: env.require_parsed("CALL_PRICE_MIN")?,
            max_price: env.require_parsed("CALL_PRICE_MAX")?,
            callee_share_percent: env.require_parsed("CALLEE_SHARE_PERCENT")?,
            max_minutes: env.require_parsed("CALL_MAX_MINUTES")?,
            ring_seconds: env.require_parsed("CALL_RING_SECONDS")?,
        };
        let invalid = |name: &str, reason: &str| InitError::InvalidEnv { name: name.into(), reason: reason.into() };
        if !(1..=900).contains(&settings.period_seconds) {
            return Err(invalid("PURSE_BILLING_PERIOD_SECONDS", "must be 1 to 900 (SQS delays at most 15 minutes)"));
        }
        if settings.min_price <= Decimal::ZERO
            || settings.min_price > settings.max_price
            || !(settings.min_price..=settings.max_price).contains(&settings.default_price)
            || settings.min_price.scale() > CURRENCY.scale()
            || settings.default_price.scale() > CURRENCY.scale()
        {
            return Err(invalid("CALL_PRICE_MIN/CALL_PRICE_MAX/CALL_DEFAULT_PRICE", "need 0 < min <= default <= max"));
        }
        if settings.callee_share_percent > 100 {
            return Err(invalid("CALLEE_SHARE_PERCENT", "must be 0 to 100"));
        }
        if settings.max_minutes == 0 || settings.ring_seconds == 0 {
            return Err(invalid("CALL_MAX_MINUTES/CALL_RING_SECONDS", "must be positive"));
        }
        Ok(settings)
    }

    /// Parses and bounds a price a callee sets.
    ///
    /// # Errors
    /// 400 with the amount's own code, 422 `price_out_of_range`.
    pub fn parse_price(&self, text: &str) -> Result<Decimal, ApiError> {
        let amount = Amount::parse(text, CURRENCY).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
        if amount.value() < self.min_price || amount.value() > self.max_price {
            return Err(ApiError::unprocessable(
                "price_out_of_range",
                format!(
                    "price_per_minute must be from {} to {}",
                    crate::money::format(self.min_price, CURRENCY),
                    crate::money::format(self.max_price, CURRENCY)
                ),
            ));
        }
        Ok(amount.value())
    }
}

/// Rounds up to the coin's smallest unit.
pub fn ceil_unit(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(CURRENCY.scale(), RoundingStrategy::ToPositiveInfinity)
}

/// The charge for `seconds` of a minute priced `price` over a period of `period` seconds: per
/// second, rounded up to the smallest unit, never more than the price.
pub fn partial_charge(price: Decimal, seconds: u64, period: u64) -> Decimal {
    if seconds >= period {
        return price;
    }
    ceil_unit(price * Decimal::from(seconds) / Decimal::from(period)).min(price)
}

/// The callee's and the platform's parts of `charge`: the callee's rounded down to the
/// smallest unit, the platform's the rest (they sum to `charge` exactly).
pub fn shares(charge: Decimal, callee_percent: u32) -> (Decimal, Decimal) {
    let callee = (charge * Decimal::from(callee_percent) / Decimal::from(100))
        .round_dp_with_strategy(CURRENCY.scale(), RoundingStrategy::ToNegativeInfinity);
    (callee, charge - callee)
}

/// The movement of minute `minute` of a call.
pub fn minute_id(call: &CallId, minute: u32) -> TransactionId {
    TransactionId::derived_from(&format!("{call}#{minute}"))
}

/// A message on the call billing queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BillingMessage {
    /// Post minute `minute` and hold the next.
    Tick { call_id: String, minute: u32 },
    /// End the call if it is still ringing.
    RingTimeout { call_id: String },
}

/// Why a call operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no such call")]
    NotFound,
    #[error("no such user to call")]
    CalleeNotFound,
    #[error("you cannot call yourself")]
    SelfCall,
    #[error("the caller's available balance does not cover the first minute")]
    InsufficientFunds,
    #[error("the wallet is restricted until a reversal shortfall is covered")]
    WalletRestricted,
    #[error("only the callee can answer or decline a call")]
    NotCallee,
    #[error("the call is not ringing any more")]
    NotRinging,
    #[error("the call is over")]
    Ended,
    #[error("this device is already in a call; end it first")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CallError {
    /// The stable code and the status this refusal stands for.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            CallError::NotFound => (404, "call_not_found"),
            CallError::CalleeNotFound => (404, "callee_not_found"),
            CallError::SelfCall => (422, "cannot_call_self"),
            CallError::InsufficientFunds => (422, "insufficient_funds"),
            CallError::WalletRestricted => (409, "wallet_restricted"),
            CallError::NotCallee => (403, "not_callee"),
            CallError::NotRinging => (409, "call_not_ringing"),
            CallError::Ended => (409, "call_ended"),
            CallError::Busy => (409, "device_busy"),
            CallError::Store(_) => (503, "temporarily_unavailable"),
        }
    }
}

impl From<LedgerError> for CallError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InsufficientFunds => CallError::InsufficientFunds,
            LedgerError::WalletRestricted => CallError::WalletRestricted,
            LedgerError::Store(s) => CallError::Store(s),
            other => CallError::Store(StoreError::Unavailable(other.to_string())),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let (status, code) = e.code();
        match e {
            CallError::Store(s) => ApiError::from(s),
            CallError::NotFound => ApiError::new(http::StatusCode::NOT_FOUND, "call_not_found", "no such call"),
            CallError::CalleeNotFound => {
                ApiError::new(http::StatusCode::NOT_FOUND, "callee_not_found", "no such user to call")
            }
            CallError::SelfCall => ApiError::unprocessable("cannot_call_self", "you cannot call yourself"),
            other => ApiError::new(
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::CONFLICT),
                code,
                other.to_string(),
            ),
        }
    }
}

/// `PUT /v1/me/call-price` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallPriceInput {
    pub price_per_minute: String,
}

/// A callee's price, as sent.
#[derive(Debug, Serialize)]
pub struct CallPriceView {
    pub price_per_minute: String,
    pub currency: &'static str,
    /// The callee's share of each charge, in percent.
    pub callee_share_percent: u32,
}

/// A call as one of its parties sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub id: String,
    /// `caller` or `callee`: the viewer's part in it.
    pub role: &'static str,
    pub caller_id: String,
    pub callee_id: String,
    pub channel: String,
    pub status: &'static str,
    pub price_per_minute: String,
    pub currency: &'static str,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    pub duration_seconds: u64,
    pub minutes_billed: u32,
    /// What the caller paid (for the caller) or the callee earned (for the callee).
    pub amount: String,
}

impl CallView {
    /// The view of `call` for `viewer`.
    pub fn of(call: &Call, viewer: &UserId) -> Self {
        let is_caller = &call.caller == viewer;
        Self {
            id: call.id.to_string(),
            role: if is_caller { "caller" } else { "callee" },
            caller_id: call.caller.to_string(),
            callee_id: call.callee.to_string(),
            channel: call.channel.clone(),
            status: call.status.as_str(),
            price_per_minute: crate::money::format(call.price_per_minute, CURRENCY),
            currency: CURRENCY.code(),
            created_at: call.created_at.clone(),
            started_at: call.accepted_ms.and_then(rfc3339_of_ms),
            ended_at: call.ended_at.clone(),
            end_reason: call.end_reason.clone(),
            duration_seconds: call.duration_seconds.unwrap_or(0),
            minutes_billed: call.billed_minutes,
            // The callee's share is paid when the call ends; until then, what it will be.
            amount: crate::money::format(
                match (is_caller, call.settled) {
                    (true, _) => call.charged,
                    (false, true) => call.earned,
                    (false, false) => shares(call.charged, call.callee_share_percent).0,
                },
                CURRENCY,
            ),
        }
    }
}

/// Publishes `minutes` (whole, or a last part of one counted as one) charged to a caller, and
/// their `charge`: `CallMinutesBilled` and `CallCoinsBilled`.
pub(crate) fn count_billed(call: &CallId, minutes: u64, charge: Decimal) {
    crate::metrics::counted_with_coins(
        "CallMinutesBilled",
        minutes,
        "CallCoinsBilled",
        charge,
        "call_id",
        call.as_str(),
    );
}

fn rfc3339_of_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The call use cases shared by the WebSocket routes, the billing consumer and the sweeper.
#[derive(Clone)]
pub struct Calls {
    pub table: Table,
    pub settings: CallSettings,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    pusher: Option<Pusher>,
}

impl Calls {
    /// Builds the service (`PURSE_TABLE`, `PURSE_CALL_BILLING_QUEUE_URL`, the call settings and,
    /// when set, `PURSE_WS_CALLBACK_URL` for pushes).
    ///
    /// # Errors
    /// A missing or invalid setting.
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let pusher = match env.optional("PURSE_WS_CALLBACK_URL") {
            Some(_) => Some(Pusher::from_env(env, aws)?),
            None => None,
        };
        Ok(Self {
            table: Table::from_env(env, aws)?,
            settings: CallSettings::from_env(env)?,
            sqs: crate::store::sqs_client(aws),
            queue_url: env.require("PURSE_CALL_BILLING_QUEUE_URL")?,
            pusher,
        })
    }

    /// The push client, when this function pushes.
    pub fn pusher(&self) -> Option<&Pusher> {
        self.pusher.as_ref()
    }

    fn period_ms(&self, call: &Call) -> i64 {
        i64::try_from(call.period_seconds).unwrap_or(60) * 1000
    }

    /// Pushes `frame` to a connection; a connection that is gone is forgotten. Never fails: a
    /// party that cannot be told finds out from `GET /v1/calls/{id}`.
    pub async fn push(&self, connection: &str, frame: &serde_json::Value) -> bool {
        let Some(pusher) = &self.pusher else { return false };
        match pusher.send(connection, frame).await {
            Ok(Pushed::Delivered) => true,
            Ok(Pushed::Gone) => {
                if let Err(e) = store::delete_connection(&self.table, connection).await {
                    tracing::warn!(error = %e, "could not forget a gone connection");
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "push failed");
                false
            }
        }
    }

    /// Queues a billing message, `delay_seconds` from now (at most 900).
    async fn queue(&self, message: &BillingMessage, delay_seconds: i64) -> Result<(), String> {
        let body = serde_json::to_string(message).map_err(|e| e.to_string())?;
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(i32::try_from(delay_seconds.clamp(0, 900)).unwrap_or(900))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        Ok(())
    }

    /// Queues the tick of `minute`, due at `due_ms`. A failure is logged: the sweeper replays
    /// overdue ticks.
    async fn queue_tick(&self, call: &CallId, minute: u32, due_ms: i64) {
        let delay = (due_ms - now_ms() + 999).div_euclid(1000);
        if let Err(e) = self.queue(&BillingMessage::Tick { call_id: call.to_string(), minute }, delay).await {
            tracing::warn!(call_id = %call, minute, error = %e, "billing tick not queued; the sweeper will replay it");
        }
    }

    /// One call, for one of its parties. Another user's call answers like a missing one.
    ///
    /// # Errors
    /// [`CallError::NotFound`].
    pub async fn get_for(&self, user: &UserId, id: &str) -> Result<Call, CallError> {
        let id = CallId::parse(id).map_err(|_| CallError::NotFound)?;
        let call = store::get_call(&self.table, &id).await?.ok_or(CallError::NotFound)?;
        if &call.caller != user && &call.callee != user {
            return Err(CallError::NotFound);
        }
        Ok(call)
    }

    /// Whether `user`'s connection `connection` already carries a live call (one device, one
    /// call: a device cannot answer or place a second call and be billed or paid for both). A
    /// read of the user's latest calls, not a lock: two answers on one device at the same
    /// instant could both pass, and each is still billed correctly.
    async fn connection_in_call(&self, user: &UserId, connection: &str) -> Result<bool, StoreError> {
        let (ids, _) = store::calls_of(&self.table, user, 10, None).await?;
        for id in ids {
            if let Some(call) = store::get_call(&self.table, &id).await? {
                let bound = [&call.caller_connection, &call.callee_connection]
                    .into_iter()
                    .any(|c| c.as_deref() == Some(connection));
                if bound && call.status == CallStatus::Active {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The callee's price per minute (theirs, or the default).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn price_of(&self, callee: &UserId) -> Result<Decimal, StoreError> {
        Ok(store::call_price(&self.table, callee).await?.unwrap_or(self.settings.default_price))
    }

    /// Places a call (RINGING) from `caller` to `callee`, when the caller can pay the first
    /// minute now (checked again, in the write, when the call is answered).
    ///
    /// # Errors
    /// [`CallError::SelfCall`], [`CallError::CalleeNotFound`], [`CallError::InsufficientFunds`].
    pub async fn place(
        &self,
        caller: &UserId,
        callee: &UserId,
        channel: &str,
        caller_connection: Option<&str>,
        pin: Option<String>,
    ) -> Result<Call, CallError> {
        if caller == callee {
            return Err(CallError::SelfCall);
        }
        if let Some(c) = caller_connection {
            if self.connection_in_call(caller, c).await? {
                return Err(CallError::Busy);
            }
        }
        if crate::store::users::get_user(&self.table, callee).await?.is_none() {
            return Err(CallError::CalleeNotFound);
        }
        let price = self.price_of(callee).await?;
        let wallet = crate::store::get_item(&self.table, ledger::account_key(&AccountId::wallet(caller))).await?;
        let Some(wallet) = wallet else { return Err(CallError::InsufficientFunds) };
        if wallet.contains_key("shortfall") {
            return Err(CallError::WalletRestricted);
        }
        if ledger::account_from_item(&wallet)?.available < price {
            return Err(CallError::InsufficientFunds);
        }
        let now = now_rfc3339();
        let call = Call {
            id: CallId::generate(),
            caller: caller.clone(),
            callee: callee.clone(),
            status: CallStatus::Ringing,
            channel: channel.to_owned(),
            price_per_minute: price,
            callee_share_percent: self.settings.callee_share_percent,
            period_seconds: self.settings.period_seconds,
            created_at: now,
            created_ms: now_ms(),
            accepted_ms: None,
            ended_at: None,
            end_reason: None,
            billed_minutes: 0,
            charged: Decimal::ZERO,
            earned: Decimal::ZERO,
            duration_seconds: None,
            caller_connection: caller_connection.map(str::to_owned),
            callee_connection: None,
            next_tick_ms: None,
            provider_call_id: None,
            pin,
            paid_seconds: None,
            settled: false,
        };
        transact(&self.table, store::new_call_items(&self.table, &call)?).await.map_err(|e| match e {
            crate::store::TransactError::Store(s) => CallError::Store(s),
            other => CallError::Store(StoreError::Unavailable(format!("{other:?}"))),
        })?;
        if let Err(e) = self
            .queue(
                &BillingMessage::RingTimeout { call_id: call.id.to_string() },
                i64::try_from(self.settings.ring_seconds).unwrap_or(60),
            )
            .await
        {
            tracing::warn!(call_id = %call.id, error = %e, "ring timeout not queued; the sweeper will end the call");
        }
        tracing::info!(call_id = %call.id, %price, channel, "call placed");
        Ok(call)
    }

    fn hold_of(&self, call: &Call, minute: u32, amount: Decimal) -> Result<NewHold, CallError> {
        Ok(NewHold {
            id: minute_id(&call.id, minute),
            user_id: call.caller.clone(),
            kind: TransactionType::CallCharge,
            amount: Amount::new(amount, CURRENCY).map_err(|_| StoreError::Corrupt("call price".into()))?,
            currency: CURRENCY,
            credit: Side::Account(AccountId::call(&call.id)),
            description: format!("Call {}, minute {minute}", call.id),
            reference: Some(call.id.to_string()),
        })
    }

    /// Answers a RINGING call: holds its first minute on the caller's wallet and turns it ACTIVE
    /// in one write, then queues the first billing tick. A repeat by the same connection answers
    /// the same. When the caller cannot pay the first minute, the call ends
    /// (`insufficient_funds`) and that is returned.
    ///
    /// # Errors
    /// [`CallError::NotFound`], [`CallError::NotCallee`], [`CallError::NotRinging`],
    /// [`CallError::InsufficientFunds`] / [`CallError::WalletRestricted`] (the call ended).
    pub async fn accept(&self, user: &UserId, id: &str, connection: Option<&str>) -> Result<Call, CallError> {
        let call = self.get_for(user, id).await?;
        if &call.callee != user {
            return Err(CallError::NotCallee);
        }
        // A phone call is answered by the caller dialling in with its PIN (service::phone), and
        // billed by the provider's measured talk time, never by app billing.
        if call.channel == crate::service::phone::PSTN {
            return Err(CallError::NotRinging);
        }
        match call.status {
            CallStatus::Ringing => {}
            CallStatus::Active if call.callee_connection.as_deref() == connection => {
                // A repeat (its first answer may have been lost before the first tick was
                // queued): queue it again; a duplicate tick changes nothing.
                if call.billed_minutes == 0 {
                    let due = call.accepted_ms.unwrap_or(call.created_ms) + self.period_ms(&call);
                    self.queue_tick(&call.id, 1, due).await;
                }
                return Ok(call);
            }
            _ => return Err(CallError::NotRinging),
        }
        if let Some(c) = connection {
            if self.connection_in_call(user, c).await? {
                return Err(CallError::Busy);
            }
        }
        let accepted = now_ms();
        let next_tick = accepted + self.period_ms(&call);
        let mut set = "SET #status = :active, accepted_ms = :acc, next_tick_ms = :next".to_owned();
        let mut values =
            vec![(":active", s(CallStatus::Active.as_str())), (":acc", n(accepted)), (":next", n(next_tick))];
        if let Some(c) = connection {
            set.push_str(", callee_connection = :conn");
            values.push((":conn", s(c)));
        }
        let activate = store::call_update(&self.table, &call.id, CallStatus::Ringing, None, &set, values)?;
        let hold = self.hold_of(&call, 1, call.price_per_minute)?;
        match ledger::hold_and(&self.table, &hold, vec![activate]).await {
            Ok(_) => {
                self.queue_tick(&call.id, 1, next_tick).await;
                tracing::info!(call_id = %call.id, "call answered; minute 1 held");
                Ok(store::get_call(&self.table, &call.id).await?.ok_or(CallError::NotFound)?)
            }
            Err(e @ (LedgerError::InsufficientFunds | LedgerError::WalletRestricted)) => {
                let (ended, changed) = self.end(user, &call.id, "insufficient_funds").await?;
                if changed {
                    self.announce(&ended).await;
                }
                Err(e.into())
            }
            Err(LedgerError::ConditionFailed | LedgerError::Duplicate) => {
                let now = store::get_call(&self.table, &call.id).await?.ok_or(CallError::NotFound)?;
                match now.status {
                    CallStatus::Active if now.callee_connection.as_deref() == connection => Ok(now),
                    _ => Err(CallError::NotRinging),
                }
            }
            // The write may have applied with its answer lost: if it did, go on as answered.
            Err(LedgerError::Store(e)) => match store::get_call(&self.table, &call.id).await? {
                Some(now) if now.status == CallStatus::Active && now.callee_connection.as_deref() == connection => {
                    self.queue_tick(&call.id, 1, now.accepted_ms.unwrap_or(accepted) + self.period_ms(&now)).await;
                    Ok(now)
                }
                _ => Err(CallError::Store(e)),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Ends a call for `reason`, settling it: a RINGING call just ends; an ACTIVE one is charged
    /// the running minute per second (rounded up, at most the minute held) and the rest of its
    /// hold released, in the write that ends it. Ending an ended call changes nothing.
    ///
    /// `by` must be a party (`None`: the system — the sweeper, a disconnect, billing).
    ///
    /// # Errors
    /// [`CallError::NotFound`] (also for someone else's call).
    pub async fn end(&self, by: &UserId, id: &CallId, reason: &str) -> Result<(Call, bool), CallError> {
        let call = store::get_call(&self.table, id).await?.ok_or(CallError::NotFound)?;
        if &call.caller != by && &call.callee != by {
            return Err(CallError::NotFound);
        }
        // The reason was chosen for this status: a call answered meanwhile is not "canceled".
        self.finish_from(id, reason, Some(call.status)).await
    }

    /// [`Calls::end`] without a party check (the system ends it). Returns the call after, and
    /// whether this call ended it.
    ///
    /// # Errors
    /// [`CallError::NotFound`], storage failures.
    pub async fn finish(&self, id: &CallId, reason: &str) -> Result<(Call, bool), CallError> {
        self.finish_from(id, reason, None).await
    }

    /// [`Calls::finish`], only while the call is still `expect` (the status the reason was
    /// chosen for: a ring timeout must not end a call answered meanwhile as `no_answer`).
    ///
    /// An ACTIVE call is charged its running minute per second into its escrow and ended in one
    /// write (the movement, the caller's wallet, the call: 3 items), then paid out
    /// ([`Calls::payout`]).
    ///
    /// # Errors
    /// [`CallError::NotFound`], storage failures.
    pub async fn finish_from(
        &self,
        id: &CallId,
        reason: &str,
        expect: Option<CallStatus>,
    ) -> Result<(Call, bool), CallError> {
        for _ in 0..8 {
            let call = store::get_call(&self.table, id).await?.ok_or(CallError::NotFound)?;
            if expect.is_some_and(|e| e != call.status) {
                return Ok((call, false));
            }
            let now = now_ms();
            let ended_at = now_rfc3339();
            match call.status {
                CallStatus::Ended => {
                    self.payout(&call).await?;
                    return Ok((call, false));
                }
                // A connected phone call ends when the provider says so, settled from the talk
                // time it measured (service::phone); its hold covers the whole time limit.
                CallStatus::Active if call.channel == crate::service::phone::PSTN => {
                    tracing::warn!(call_id = %id, reason, "a connected phone call is ended by the provider, not here");
                    return Ok((call, false));
                }
                CallStatus::Ringing => {
                    // Nothing was held or paid: it ends settled.
                    let update = store::call_update(
                        &self.table,
                        id,
                        CallStatus::Ringing,
                        None,
                        "SET #status = :ended, end_reason = :reason, ended_at = :at, duration_seconds = :zero, \
                         settled = :yes REMOVE gsi2pk, gsi2sk",
                        vec![
                            (":ended", s(CallStatus::Ended.as_str())),
                            (":reason", s(reason)),
                            (":at", s(&ended_at)),
                            (":zero", n(0)),
                            (":yes", AttributeValue::Bool(true)),
                        ],
                    )?;
                    match transact(&self.table, vec![update]).await {
                        Ok(()) => {}
                        Err(e) if e.refused_at() == Some(0) => continue,
                        Err(crate::store::TransactError::Store(e)) => return Err(e.into()),
                        Err(e) => return Err(StoreError::Unavailable(format!("{e:?}")).into()),
                    }
                }
                CallStatus::Active => {
                    let accepted = call.accepted_ms.unwrap_or(call.created_ms);
                    let period_ms = self.period_ms(&call);
                    let b = call.billed_minutes;
                    let start = accepted + i64::from(b) * period_ms;
                    let elapsed = (now - start).clamp(0, period_ms);
                    let seconds = u64::try_from((elapsed + 999) / 1000).unwrap_or(0);
                    let charge = partial_charge(call.price_per_minute, seconds, call.period_seconds);
                    let duration = u64::from(b) * call.period_seconds + seconds;
                    let minute = minute_id(id, b + 1);
                    let ending = |charge: Decimal| {
                        store::escrow_update(
                            &self.table,
                            id,
                            EscrowCredit {
                                billed: b,
                                charge,
                                whole_minute: false,
                                set: "end_reason = :reason, ended_at = :at, duration_seconds = :d, #status = :ended",
                                values: vec![
                                    (":ended", s(CallStatus::Ended.as_str())),
                                    (":reason", s(reason)),
                                    (":at", s(&ended_at)),
                                    (":d", n(duration)),
                                ],
                                remove: "next_tick_ms",
                            },
                        )
                    };
                    let result = if charge > Decimal::ZERO {
                        let escrow = Escrow { account: AccountId::call(id), update: ending(charge)? };
                        ledger::post_held(
                            &self.table,
                            &minute,
                            HeldPosting { charge, escrow, next: None, extra: vec![] },
                        )
                        .await
                        .map(|settled| settled.changed)
                    } else {
                        let update = ending(Decimal::ZERO)?;
                        ledger::fail_and(&self.table, &minute, "call_ended", vec![update]).await.map(|s| s.changed)
                    };
                    match result {
                        Ok(true) => {
                            if charge > Decimal::ZERO {
                                count_billed(id, 1, charge);
                            }
                        }
                        // Billed or ended meanwhile (a tick, the other party): look again.
                        Ok(false) | Err(LedgerError::ConditionFailed | LedgerError::AlreadyFinal(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let ended = store::get_call(&self.table, id).await?.ok_or(CallError::NotFound)?;
            self.payout_or_later(&ended).await;
            tracing::info!(call_id = %id, reason, charged = %ended.charged, "call ended");
            let ended = store::get_call(&self.table, id).await?.ok_or(CallError::NotFound)?;
            return Ok((ended, true));
        }
        Err(StoreError::Unavailable("the call kept changing while it was being ended".into()).into())
    }

    /// [`Calls::payout`], a failure logged: the call has ended either way and its parties are
    /// told; the sweeper pays out every ended call left unsettled.
    async fn payout_or_later(&self, call: &Call) {
        if let Err(e) = self.payout(call).await {
            tracing::warn!(call_id = %call.id, error = %e, "call payout failed; the sweeper retries it");
        }
    }

    /// Pays an ended call's escrow out, once: the callee's share (rounded down to the smallest
    /// unit) to their wallet, the rest to platform revenue, as one movement with two legs in
    /// the callee's history (`CALL_EARNING`), in the write that empties the escrow and marks
    /// the call settled (4 items). A call with nothing in escrow is just marked settled.
    /// Settled or not yet ended: nothing to do.
    ///
    /// # Errors
    /// Storage failures (the sweeper retries any ended call left unsettled).
    pub async fn payout(&self, call: &Call) -> Result<(), CallError> {
        if call.status != CallStatus::Ended || call.settled {
            return Ok(());
        }
        let total = call.charged;
        let (callee_part, platform_part) = shares(total, call.callee_share_percent);
        let settle = store::settle_update(&self.table, &call.id, total, callee_part)?;
        if total.is_zero() {
            match transact(&self.table, vec![settle]).await {
                Ok(()) => return Ok(()),
                Err(e) if e.refused_at() == Some(0) => return Ok(()),
                Err(crate::store::TransactError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(StoreError::Unavailable(format!("{e:?}")).into()),
            }
        }
        let split = NewSplit {
            id: TransactionId::derived_from(&format!("{}#payout", call.id)),
            user_id: call.callee.clone(),
            kind: TransactionType::CallEarning,
            currency: CURRENCY,
            debit: AccountId::call(&call.id),
            legs: self.legs(call, callee_part, platform_part),
            description: format!("Call {}: your share", call.id),
            reference: Some(call.id.to_string()),
        };
        match ledger::transfer_split(&self.table, &split, settle).await {
            Ok(_) => {
                tracing::info!(call_id = %call.id, %total, earned = %callee_part, "call paid out");
                let id = call.id.as_str();
                crate::metrics::counted_with_coins("CallPayoutsPaid", 1, "CallCoinsEarned", callee_part, "call_id", id);
                Ok(())
            }
            // Paid before (a repeat), or settled by someone else meanwhile: look.
            Err(LedgerError::Duplicate | LedgerError::ConditionFailed) => {
                match store::get_call(&self.table, &call.id).await? {
                    Some(now) if !now.settled => {
                        tracing::error!(call_id = %call.id, charged = %now.charged, "call escrow does not match what it charged; not paid out");
                        Err(StoreError::Corrupt(format!("escrow of {} does not match its charges", call.id)).into())
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The credit legs of a charge: the callee's share to their wallet, the rest to revenue.
    pub(crate) fn legs(&self, call: &Call, callee_part: Decimal, platform_part: Decimal) -> Vec<Leg> {
        vec![
            Leg { account: Side::Account(AccountId::wallet(&call.callee)), amount: callee_part },
            Leg { account: Side::System(SystemAccount::PlatformRevenue), amount: platform_part },
        ]
    }

    /// The billing tick of minute `minute`: posts it and holds the next, exactly once; a
    /// duplicate or late tick changes nothing. Returns the call when this tick changed it.
    ///
    /// # Errors
    /// Storage failures (the message is redelivered).
    pub async fn tick(&self, id: &CallId, minute: u32) -> Result<Option<Call>, CallError> {
        for _ in 0..8 {
            let Some(call) = store::get_call(&self.table, id).await? else { return Ok(None) };
            if call.status != CallStatus::Active || call.billed_minutes >= minute || call.channel != "app" {
                tracing::info!(call_id = %id, minute, "billing tick has nothing to do (duplicate, late or ended)");
                return Ok(None);
            }
            if call.billed_minutes + 1 != minute {
                tracing::warn!(call_id = %id, minute, billed = call.billed_minutes, "billing tick ahead of its turn; ignored");
                return Ok(None);
            }
            let period_ms = self.period_ms(&call);
            let due = call.accepted_ms.unwrap_or(call.created_ms) + i64::from(minute) * period_ms;
            if now_ms() + 250 < due {
                // Early (a clock or a short delay): come back when it is due.
                self.queue_tick(id, minute, due).await;
                return Ok(None);
            }
            let price = call.price_per_minute;
            let last = minute >= self.settings.max_minutes;
            let next_hold = self.hold_of(&call, minute + 1, price)?;
            // The call's item is its escrow: the minute is credited to it in the update that
            // also counts it, under "ACTIVE with minute - 1 billed".
            let billed = |reason: Option<&str>| -> Result<Escrow, CallError> {
                let credit =
                    EscrowCredit { billed: minute - 1, charge: price, whole_minute: true, ..Default::default() };
                let update = match reason {
                    None => store::escrow_update(
                        &self.table,
                        id,
                        EscrowCredit {
                            set: "next_tick_ms = :next",
                            values: vec![(":next", n(due + period_ms))],
                            ..credit
                        },
                    )?,
                    Some(r) => store::escrow_update(
                        &self.table,
                        id,
                        EscrowCredit {
                            set: "#status = :ended, end_reason = :reason, ended_at = :at, duration_seconds = :d",
                            values: vec![
                                (":ended", s(CallStatus::Ended.as_str())),
                                (":reason", s(r)),
                                (":at", s(now_rfc3339())),
                                (":d", n(u64::from(minute) * call.period_seconds)),
                            ],
                            remove: "next_tick_ms",
                            ..credit
                        },
                    )?,
                };
                Ok(Escrow { account: AccountId::call(id), update })
            };
            let posting = |next, escrow| HeldPosting { charge: price, escrow, next, extra: Vec::new() };
            let movement = minute_id(id, minute);
            let result = if last {
                ledger::post_held(&self.table, &movement, posting(None, billed(Some("max_duration"))?)).await
            } else {
                match ledger::post_held(&self.table, &movement, posting(Some(&next_hold), billed(None)?)).await {
                    Err(LedgerError::InsufficientFunds | LedgerError::WalletRestricted) => {
                        tracing::info!(call_id = %id, minute, "the next minute cannot be held; the call ends");
                        ledger::post_held(&self.table, &movement, posting(None, billed(Some("insufficient_funds"))?))
                            .await
                    }
                    other => other,
                }
            };
            match result {
                Ok(settled) if settled.changed => {
                    let mut after = store::get_call(&self.table, id).await?.ok_or(CallError::NotFound)?;
                    if after.status == CallStatus::Active {
                        self.queue_tick(id, minute + 1, due + period_ms).await;
                    } else {
                        self.payout_or_later(&after).await;
                        after = store::get_call(&self.table, id).await?.ok_or(CallError::NotFound)?;
                    }
                    tracing::info!(call_id = %id, minute, status = after.status.as_str(), "call minute billed");
                    count_billed(id, 1, price);
                    return Ok(Some(after));
                }
                Ok(_) | Err(LedgerError::ConditionFailed | LedgerError::AlreadyFinal(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("the call kept changing during billing".into()).into())
    }

    /// Tells both parties what a billing tick or an end did.
    pub async fn announce(&self, call: &Call) {
        let caller_wallet = ledger::get_account(&self.table, &AccountId::wallet(&call.caller)).await.ok().flatten();
        let base = |viewer: &UserId| {
            let view = CallView::of(call, viewer);
            serde_json::json!({
                "call_id": view.id,
                "minutes_billed": view.minutes_billed,
                "amount": view.amount,
                "currency": view.currency,
            })
        };
        let mut for_caller = base(&call.caller);
        let mut for_callee = base(&call.callee);
        // The caller's wallet: `balance` (what it owns, the minute now held included) and
        // `available` (what a next minute can be held from: below the price, the call ends).
        if let Some(w) = &caller_wallet {
            for_caller["balance"] = serde_json::Value::String(crate::money::format(w.balance, CURRENCY));
            for_caller["available"] = serde_json::Value::String(crate::money::format(w.available, CURRENCY));
        }
        let kind = if call.status == CallStatus::Ended { "call.ended" } else { "billing" };
        for frame in [&mut for_caller, &mut for_callee] {
            frame["type"] = serde_json::Value::String(kind.into());
            if call.status == CallStatus::Ended {
                frame["reason"] = serde_json::json!(call.end_reason);
                frame["duration_seconds"] = serde_json::json!(call.duration_seconds.unwrap_or(0));
            }
        }
        if let Some(c) = &call.caller_connection {
            self.push(c, &for_caller).await;
        }
        match &call.callee_connection {
            Some(c) => {
                self.push(c, &for_callee).await;
            }
            // Not answered: every device it rang on stops ringing.
            None if call.status == CallStatus::Ended && call.channel == "app" => {
                for c in store::connections_of(&self.table, &call.callee).await.unwrap_or_default() {
                    self.push(&c, &for_callee).await;
                }
            }
            None => {}
        }
    }

    /// Handles one billing-queue message.
    ///
    /// # Errors
    /// Storage failures (redelivered).
    pub async fn handle(&self, message: &BillingMessage) -> Result<(), CallError> {
        match message {
            BillingMessage::Tick { call_id, minute } => {
                let Ok(id) = CallId::parse(call_id) else { return Ok(()) };
                if let Some(call) = self.tick(&id, *minute).await? {
                    self.announce(&call).await;
                }
            }
            BillingMessage::RingTimeout { call_id } => {
                let Ok(id) = CallId::parse(call_id) else { return Ok(()) };
                if let Some(call) = store::get_call(&self.table, &id).await? {
                    let rang_ms = now_ms() - call.created_ms;
                    let ring_ms = i64::try_from(self.settings.ring_seconds).unwrap_or(60) * 1000;
                    if call.status == CallStatus::Ringing && rang_ms + 1000 < ring_ms {
                        // Early (a message sent sooner than its call's ring time): not yet.
                        let wait = (ring_ms - rang_ms + 999) / 1000;
                        self.queue(message, wait).await.map_err(StoreError::Unavailable)?;
                    } else if call.status == CallStatus::Ringing {
                        let (ended, changed) = self.finish_from(&id, "no_answer", Some(CallStatus::Ringing)).await?;
                        if changed {
                            self.announce(&ended).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The sweeper: ends calls that rang too long or whose parties vanished, and replays
    /// billing ticks that are overdue (a tick lost between a write and its queueing).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sweep(&self) -> Result<serde_json::Value, CallError> {
        use futures::StreamExt;
        let (mut examined, mut ended, mut replayed, mut paid_out, mut failed) = (0_u32, 0_u32, 0_u32, 0_u32, 0_u32);
        for shard in 0..store::LIVE_SHARDS {
            let ids = store::live_calls(&self.table, shard, 500).await?;
            examined += u32::try_from(ids.len()).unwrap_or(u32::MAX);
            // Sixteen at a time; one call's failure (a throttle, a corrupt item) must not stop
            // the others.
            let mut runs = futures::stream::iter(ids.into_iter().map(|id| async move {
                let result = self.sweep_one(&id).await;
                (id, result)
            }))
            .buffer_unordered(16);
            while let Some((id, result)) = runs.next().await {
                match result {
                    Ok(Swept::Ended) => ended += 1,
                    Ok(Swept::Replayed) => replayed += 1,
                    Ok(Swept::PaidOut) => paid_out += 1,
                    Ok(Swept::Nothing) => {}
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(call_id = %id, error = %e, "the sweeper could not look after a call; next run retries");
                    }
                }
            }
        }
        Ok(serde_json::json!({
            "examined": examined,
            "ended": ended,
            "ticks_replayed": replayed,
            "paid_out": paid_out,
            "failed": failed,
        }))
    }

    async fn sweep_one(&self, id: &CallId) -> Result<Swept, CallError> {
        let Some(call) = store::get_call(&self.table, id).await? else { return Ok(Swept::Nothing) };
        let now = now_ms();
        // ---- PSTN calls (service::phone) ------------------------------------------------------
        // A connected phone call is settled by the provider's callbacks from the talk time the
        // provider measured, never by this clock: no ticks, no disconnect rule. One whose
        // callbacks never came stays ACTIVE with its hold intact (charging the whole hold would
        // bill time nobody may have talked) and is reported loudly (alarm PstnCallsStuck);
        // `TelephonyWebhooks::reconcile` settles it from the provider's records. See
        // docs/runbook.md, "A stuck PSTN call".
        if call.channel == crate::service::phone::PSTN && call.status == CallStatus::Active {
            if crate::service::phone::is_overdue(&call, now) {
                crate::metrics::count("PstnCallsStuck", 1);
                tracing::error!(
                    call_id = %id,
                    provider_call_id = call.provider_call_id.as_deref().unwrap_or(""),
                    "stuck PSTN call: ACTIVE past its time limit, its callbacks never came; left unsettled"
                );
            }
            return Ok(Swept::Nothing);
        }
        // ---- end of PSTN calls ----------------------------------------------------------------
        let grace = 5_000 + self.period_ms(&call) / 2;
        let ring_ms = i64::try_from(self.settings.ring_seconds).unwrap_or(60) * 1000;
        let reason = match call.status {
            CallStatus::Ringing if now - call.created_ms > ring_ms + grace => Some("no_answer"),
            CallStatus::Active if call.channel == "app" && !self.parties_connected(&call).await? => {
                Some("disconnected")
            }
            _ => None,
        };
        if call.status == CallStatus::Ended {
            // Ended, not paid out yet (the end's payout failed): pay it now.
            self.payout(&call).await?;
            return Ok(Swept::PaidOut);
        }
        if let Some(reason) = reason {
            let (after, changed) = self.finish_from(id, reason, Some(call.status)).await?;
            if changed {
                self.announce(&after).await;
                return Ok(Swept::Ended);
            }
            return Ok(Swept::Nothing);
        }
        if call.status == CallStatus::Active && call.next_tick_ms.is_some_and(|t| now - t > grace) {
            if let Some(after) = self.tick(id, call.billed_minutes + 1).await? {
                self.announce(&after).await;
            }
            return Ok(Swept::Replayed);
        }
        Ok(Swept::Nothing)
    }

    async fn parties_connected(&self, call: &Call) -> Result<bool, StoreError> {
        for connection in [&call.caller_connection, &call.callee_connection].into_iter().flatten() {
            if store::connection_user(&self.table, connection).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sets `user`'s price per minute (calls placed from now on pay it).
    ///
    /// # Errors
    /// 400/422 for a price that does not parse or is out of bounds.
    pub async fn set_price(&self, user: &UserId, input: &CallPriceInput) -> Result<CallPriceView, ApiError> {
        let price = self.settings.parse_price(&input.price_per_minute)?;
        if !store::set_call_price(&self.table, user, price).await? {
            return Err(ApiError::not_found("no such user"));
        }
        Ok(CallPriceView {
            price_per_minute: crate::money::format(price, CURRENCY),
            currency: CURRENCY.code(),
            callee_share_percent: self.settings.callee_share_percent,
        })
    }

    /// A page of `user`'s calls, newest first.
    ///
    /// # Errors
    /// 400 `invalid_cursor` / `invalid_limit`; storage failures.
    pub async fn list(&self, user: &UserId, limit: Option<&str>, cursor: Option<&str>) -> Result<CallPage, ApiError> {
        let limit =
            match limit {
                None => 20,
                Some(l) => l.parse::<i32>().ok().filter(|l| (1..=50).contains(l)).ok_or_else(|| {
                    ApiError::bad_request("invalid_limit", "limit must be a whole number from 1 to 50")
                })?,
            };
        let start = cursor.map(|c| decode_cursor(user, c)).transpose()?;
        let (ids, last) = store::calls_of(&self.table, user, limit, start).await?;
        let calls = futures::future::join_all(ids.iter().map(|id| store::get_call(&self.table, id))).await;
        let mut items = Vec::new();
        for call in calls {
            if let Some(call) = call? {
                items.push(CallView::of(&call, user));
            }
        }
        let next_cursor = last.and_then(|k| k.get("gsi1sk").and_then(|v| v.as_s().ok()).map(|sk| encode_cursor(sk)));
        Ok(CallPage { items, next_cursor })
    }
}

/// What the sweeper did with one call.
enum Swept {
    Nothing,
    Ended,
    Replayed,
    PaidOut,
}

/// A page of calls.
#[derive(Debug, Serialize)]
pub struct CallPage {
    pub items: Vec<CallView>,
    pub next_cursor: Option<String>,
}

fn encode_cursor(sort_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_key)
}

/// The index position a cursor names. It can only name a position in the caller's own
/// partition (the partition is the caller's, not the cursor's), so no signature is needed.
fn decode_cursor(user: &UserId, cursor: &str) -> Result<crate::store::item::Item, ApiError> {
    use base64::Engine;
    let invalid =
        || ApiError::bad_request("invalid_cursor", "the cursor is not valid for this listing; start again without one");
    if cursor.len() > 256 {
        return Err(invalid());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let sort_key = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (_, id) = sort_key.rsplit_once('#').ok_or_else(invalid)?;
    let id = CallId::parse(id).map_err(|_| invalid())?;
    let mut key = crate::store::item::key(format!("CALL#{id}"), format!("PARTY#{user}"));
    key.insert("gsi1pk".into(), s(store::calls_partition(user)));
    key.insert("gsi1sk".into(), s(sort_key));
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn a_partial_minute_is_charged_per_second_rounded_up() {
        assert_eq!(partial_charge(dec("10.00"), 30, 60), dec("5.00"));
        assert_eq!(partial_charge(dec("10.00"), 1, 60), dec("0.17"));
        assert_eq!(partial_charge(dec("10.00"), 0, 60), dec("0"));
        assert_eq!(partial_charge(dec("10.00"), 59, 60), dec("9.84"));
        assert_eq!(partial_charge(dec("10.00"), 61, 60), dec("10.00"));
        assert_eq!(partial_charge(dec("1.00"), 1, 3), dec("0.34"));
    }

    #[test]
    fn shares_always_sum_to_the_charge_and_the_callee_is_rounded_down() {
        for cents in 0..2000_i64 {
            let charge = Decimal::new(cents, 2);
            for pct in [0, 1, 33, 70, 99, 100] {
                let (callee, platform) = shares(charge, pct);
                assert_eq!(callee + platform, charge);
                assert!(callee >= Decimal::ZERO && platform >= Decimal::ZERO);
                assert!(callee.scale() <= 2 && platform.scale() <= 2);
            }
        }
        assert_eq!(shares(dec("0.17"), 70), (dec("0.11"), dec("0.06")));
    }

    #[test]
    fn minute_ids_are_stable_and_distinct() {
        let call = CallId::generate();
        assert_eq!(minute_id(&call, 3), minute_id(&call, 3));
        assert_ne!(minute_id(&call, 3), minute_id(&call, 4));
    }

    #[test]
    fn billing_messages_have_a_stable_shape() {
        let m = BillingMessage::Tick { call_id: "call_x".into(), minute: 2 };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"kind": "tick", "call_id": "call_x", "minute": 2})
        );
    }
}
