//! Phone (PSTN) calls: a user calls another user from any telephone, through the telephony
//! provider ([`crate::telephony`]), and pays the callee's price per minute for the talk time.
//!
//! ## Flow
//!
//! 1. `POST /v1/calls/phone {"callee_id"}` ([`PhoneCalls::place`]) takes a random 6-digit PIN
//!    that no other ringing phone call holds (a claim item living for the ring window), places
//!    a RINGING call on channel `pstn` ([`Calls::place`]), and answers the toll-free number to
//!    dial and the PIN.
//! 2. The caller dials in. The provider POSTs our voice webhook ([`TelephonyWebhooks::voice`]):
//!    without `Digits` we answer a `<Gather>` for the PIN; with them we find the ringing call,
//!    work out how many seconds the caller's available balance pays for (per second, at most
//!    `CALL_MAX_MINUTES` periods) and, in ONE write, hold that amount on the caller's wallet
//!    (movement `minute_id(call, 1)`), turn the call ACTIVE and claim the provider's `CallSid`.
//!    We answer `<Dial timeLimit="<those seconds>" action="<this URL>?leg=dial">
//!    <Client>callee</Client></Dial>`: the provider itself cuts the call when the money held runs
//!    out, so nothing of ours has to tick while the call runs. A caller whose balance pays for
//!    less than one period hears so and is hung up on (the call ends `insufficient_funds`).
//! 3. When the Dial ends the provider POSTs its action (`?leg=dial`) with `DialCallDuration`,
//!    the seconds the callee talked. They are charged per second, rounded up to the coin's
//!    smallest unit and never more than held, into the call's escrow; the rest of the hold is
//!    released and the call ends, all in one write conditioned on the call being ACTIVE
//!    ([`TelephonyWebhooks::settle`]); then the escrow is paid out, the callee's share to their
//!    wallet and the rest to platform revenue ([`Calls::payout`]). No talk at all releases the
//!    whole hold.
//! 4. The status callback comes once the whole call is over ([`TelephonyWebhooks::status`]). If
//!    the Dial action never settled the call (it failed or never came), the talk seconds are read
//!    from the provider's Calls resource (the Dial's child leg) and settled the same way.
//!
//! Every request is verified (`X-Twilio-Signature`) before anything is read from it, and every
//! repeat of any of them changes nothing: the claims and the call's status make each step
//! happen once, whichever copy of a request arrives first.
//!
//! ## Why `DialCallDuration`
//!
//! The inbound call's own `CallDuration` counts from our first answer (the PIN prompt) to the
//! hang-up: the prompt and the callee's ringing are in it. Only the Dial leg's duration is talk.

use crate::config::{Env, InitError};
use crate::domain::ids::{CallId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, Escrow, HeldPosting, LedgerError, NewHold};
use crate::ledger::{AccountId, Side, TransactionStatus, TransactionType};
use crate::money::{Amount, Currency};
use crate::secrets::SecretString;
use crate::service::calls::{ceil_unit, minute_id, CallError, Calls};
use crate::store::calls::{self as call_store, Call, CallStatus, EscrowCredit};
use crate::store::item::{n, s};
use crate::store::phone as claims;
use crate::store::{now_epoch, now_rfc3339, StoreError};
use crate::telephony::{
    self, Form, ProviderCall, TelephonyClient, TelephonyError, TelephonySecret, Twiml, WebhookRequest,
};
use http::StatusCode;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The telephony provider's name in metrics (`DeliveriesRejected`'s `Provider`).
const TELEPHONY: &str = "telephony";

/// The channel of a phone call.
pub const PSTN: &str = "pstn";
/// Digits of a PIN.
pub const PIN_DIGITS: u32 = 6;
/// How long after its time limit an ACTIVE phone call may wait for its callbacks before it
/// counts as stuck: the Dial's own ringing (up to 30 s) and the provider's latency.
pub const SETTLE_GRACE_MS: i64 = 120_000;

const CURRENCY: Currency = Currency::Coin;
const PROMPT: &str = "Welcome to Purse. Please enter your six digit call PIN.";
const NO_PIN: &str = "We did not receive a PIN. Goodbye.";
const UNKNOWN_PIN: &str = "That PIN is not valid or has expired. Please request a new call in the app. Goodbye.";
const NO_FUNDS: &str = "Your balance does not cover one minute of this call. Please top up in the app. Goodbye.";
const OVER: &str = "This call has ended. Goodbye.";

/// The talk seconds `available` coins pay for at `price` per `period` seconds, charged per
/// second and rounded up ([`charge_for`]), at most `max_seconds`.
pub fn affordable_seconds(available: Decimal, price: Decimal, period: u64, max_seconds: u64) -> u64 {
    if price <= Decimal::ZERO || available <= Decimal::ZERO || period == 0 {
        return 0;
    }
    let mut seconds = (available * Decimal::from(period) / price).floor().to_u64().unwrap_or(u64::MAX).min(max_seconds);
    // Decimal division rounds at its 28th digit: never hold more than is available.
    while seconds > 0 && charge_for(price, seconds, period) > available {
        seconds -= 1;
    }
    seconds
}

/// The charge for `seconds` of talk at `price` per `period` seconds: per second, rounded up to
/// the coin's smallest unit (for less than one period, [`crate::service::calls::partial_charge`]).
pub fn charge_for(price: Decimal, seconds: u64, period: u64) -> Decimal {
    ceil_unit(price * Decimal::from(seconds) / Decimal::from(period.max(1)))
}

/// Why a phone call ended, from the Dial's outcome and its talk time.
pub fn end_reason(dial_status: &str, talk: u64, paid: u64, max_seconds: u64) -> &'static str {
    match dial_status {
        "completed" if talk > 0 && talk >= paid && paid >= max_seconds => "max_duration",
        "completed" if talk > 0 && talk >= paid => "insufficient_funds",
        "busy" => "busy",
        "no-answer" => "no_answer",
        "canceled" => "canceled",
        "failed" => "failed",
        _ => "hangup",
    }
}

/// Whether an ACTIVE phone call has outlived its time limit by more than [`SETTLE_GRACE_MS`]
/// without being settled: its callbacks were lost.
pub fn is_overdue(call: &Call, now_ms: i64) -> bool {
    call.channel == PSTN
        && call.status == CallStatus::Active
        && call.accepted_ms.is_some_and(|accepted| {
            let limit_ms = i64::try_from(call.paid_seconds.unwrap_or(0)).unwrap_or(i64::MAX / 2) * 1000;
            now_ms > accepted.saturating_add(limit_ms).saturating_add(SETTLE_GRACE_MS)
        })
}

fn random_pin() -> String {
    use rand::Rng;
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000_u32))
}

fn is_pin(text: &str) -> bool {
    text.len() == PIN_DIGITS as usize && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `text` is an E.164 number (`+` and 7 to 15 digits, not starting with 0).
fn is_e164(text: &str) -> bool {
    text.strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
}

// ------------------------------------------------------------------------------------------
// Placing a call
// ------------------------------------------------------------------------------------------

/// `POST /v1/calls/phone` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneCallInput {
    pub callee_id: String,
}

/// What the caller needs to dial in.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneCallTicket {
    pub call_id: String,
    pub status: &'static str,
    /// The number to call (E.164).
    pub dial: String,
    /// The PIN to key in when asked.
    pub pin: String,
    pub price_per_minute: String,
    pub currency: &'static str,
    pub billing_period_seconds: u64,
    /// Until when the PIN is good: dial in before (the ring window).
    pub expires_at: String,
}

/// Placing phone calls (`POST /v1/calls/phone`).
pub struct PhoneCalls {
    calls: Calls,
    toll_free: String,
}

impl PhoneCalls {
    /// [`Calls::from_env`], and `TELEPHONY_TOLL_FREE_NUMBER` (E.164), the number callers dial.
    ///
    /// # Errors
    /// A missing or invalid setting.
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let toll_free = env.require("TELEPHONY_TOLL_FREE_NUMBER")?.trim().to_owned();
        if !is_e164(&toll_free) {
            return Err(InitError::InvalidEnv {
                name: "TELEPHONY_TOLL_FREE_NUMBER".into(),
                reason: "must be an E.164 number such as +18005550100".into(),
            });
        }
        Ok(Self { calls: Calls::from_env(env, aws)?, toll_free })
    }

    /// Places a phone call from `caller` to `input.callee_id` under a fresh PIN.
    ///
    /// # Errors
    /// As [`Calls::place`] maps them (404 `callee_not_found`, 422 `cannot_call_self`, 422
    /// `insufficient_funds`), 503 when no PIN could be claimed or storage failed.
    pub async fn place(&self, caller: &UserId, input: &PhoneCallInput) -> Result<PhoneCallTicket, ApiError> {
        let callee = UserId::parse(input.callee_id.trim()).map_err(|_| CallError::CalleeNotFound)?;
        let table = &self.calls.table;
        let ring = i64::try_from(self.calls.settings.ring_seconds).unwrap_or(60);
        let expires_at = now_epoch() + ring;
        let nonce = ulid::Ulid::new().to_string();
        let mut pin = None;
        // A million PINs against a few thousand live calls: a collision is rare, eight in a row
        // is an emergency.
        for _ in 0..8 {
            let candidate = random_pin();
            if claims::claim_pin(table, &candidate, caller, &nonce, expires_at).await? {
                pin = Some(candidate);
                break;
            }
        }
        let pin = pin.ok_or_else(|| ApiError::temporarily_unavailable("no free PIN after 8 draws"))?;
        let call = match self.calls.place(caller, &callee, PSTN, None, Some(pin.clone())).await {
            Ok(call) => call,
            Err(e) => {
                if let Err(release) = claims::release_pin(table, &pin, &nonce).await {
                    tracing::warn!(error = %release, "a PIN claim was not released; it expires with the ring window");
                }
                return Err(e.into());
            }
        };
        if !claims::attach_pin(table, &pin, &nonce, &call.id).await? {
            // Cannot happen while the claim is live; end the call rather than leave it unreachable.
            tracing::error!(call_id = %call.id, "the PIN claim of a new phone call was lost");
            self.calls.finish(&call.id, "failed").await?;
            return Err(ApiError::temporarily_unavailable("the PIN claim was lost"));
        }
        tracing::info!(call_id = %call.id, "phone call placed; waiting for the caller to dial in");
        Ok(PhoneCallTicket {
            call_id: call.id.to_string(),
            status: call.status.as_str(),
            dial: self.toll_free.clone(),
            pin,
            price_per_minute: crate::money::format(call.price_per_minute, CURRENCY),
            currency: CURRENCY.code(),
            billing_period_seconds: call.period_seconds,
            expires_at: chrono::DateTime::from_timestamp(expires_at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        })
    }
}

// ------------------------------------------------------------------------------------------
// The provider's requests
// ------------------------------------------------------------------------------------------

/// A request whose signature verified.
struct Verified {
    form: Form,
    query: Form,
    /// The URL this request was sent to, without its query string (our own URL, as the
    /// provider knows it).
    own_url: String,
}

/// Why a phone call could not be settled from the provider's records.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Provider(#[from] TelephonyError),
    #[error("this function has no provider API client (TELEPHONY_BASE_URL)")]
    NoProvider,
}

impl From<StoreError> for SettleError {
    fn from(e: StoreError) -> Self {
        SettleError::Call(CallError::Store(e))
    }
}

impl From<SettleError> for ApiError {
    fn from(e: SettleError) -> Self {
        match e {
            SettleError::Call(c) => c.into(),
            other => ApiError::temporarily_unavailable(other),
        }
    }
}

/// The provider's requests about phone calls: the voice webhook (PIN, connect, the Dial's
/// outcome) and the status callback.
pub struct TelephonyWebhooks {
    calls: Calls,
    auth_token: SecretString,
    public_base: Option<String>,
    provider: Option<TelephonyClient>,
}

impl TelephonyWebhooks {
    /// For the voice webhook: [`Calls::from_env`], the provider secret (`TELEPHONY_SECRET_ID`)
    /// and the optional `TELEPHONY_PUBLIC_BASE_URL` ([`crate::telephony`]).
    ///
    /// # Errors
    /// A missing or invalid setting, or a secret that cannot be loaded.
    pub async fn voice_from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let secret = TelephonySecret::from_env(env, aws).await?;
        Ok(Self {
            calls: Calls::from_env(env, aws)?,
            auth_token: secret.auth_token,
            public_base: telephony::public_base_from_env(env)?,
            provider: None,
        })
    }

    /// For the status callback (and reconciliation): as [`TelephonyWebhooks::voice_from_env`],
    /// plus the provider's API (`TELEPHONY_BASE_URL`).
    ///
    /// # Errors
    /// A missing or invalid setting, or a secret that cannot be loaded.
    pub async fn status_from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let secret = TelephonySecret::from_env(env, aws).await?;
        Ok(Self {
            calls: Calls::from_env(env, aws)?,
            public_base: telephony::public_base_from_env(env)?,
            provider: Some(TelephonyClient::from_env(env, &secret)?),
            auth_token: secret.auth_token,
        })
    }

    /// Caps the body, rebuilds the URL, checks the signature.
    fn verified(&self, req: &WebhookRequest<'_>) -> Result<Verified, ApiError> {
        use crate::service::webhooks::{count_rejected, Rejection};
        if req.body.len() > crate::service::webhooks::MAX_WEBHOOK_BODY_BYTES {
            count_rejected(TELEPHONY, Rejection::Size, None);
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "webhook body too large"));
        }
        let refuse_as = |reason: Rejection, why: &str| {
            tracing::warn!(path = req.raw_path, why, "telephony request refused: signature");
            count_rejected(TELEPHONY, reason, None);
            ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_signature",
                "X-Twilio-Signature is missing or does not verify",
            )
        };
        let refuse = |why: &str| refuse_as(Rejection::Signature, why);
        let signature = req
            .headers
            .get(telephony::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refuse("no X-Twilio-Signature"))?;
        let url = telephony::request_url(self.public_base.as_deref(), req.headers, req.raw_path, req.raw_query)
            .ok_or_else(|| refuse("no Host"))?;
        let form = Form::parse(req.body).map_err(|_| refuse_as(Rejection::Shape, "the body is not a form"))?;
        if !telephony::verify(self.auth_token.expose(), &url, form.pairs(), signature) {
            return Err(refuse("signature does not verify"));
        }
        let query = Form::parse(req.raw_query.unwrap_or_default().as_bytes()).unwrap_or_default();
        let own_url = telephony::request_url(self.public_base.as_deref(), req.headers, req.raw_path, None)
            .ok_or_else(|| refuse("no Host"))?;
        Ok(Verified { form, query, own_url })
    }

    /// The voice webhook: the first request of a call (asks for the PIN), the PIN (connects),
    /// and the Dial's action (`?leg=dial`: settles).
    ///
    /// # Errors
    /// 413 `payload_too_large`, 403 `invalid_signature` (nothing read, nothing changed), 503
    /// when storage failed (the provider then plays its error message and hangs up; a call
    /// already connected is settled by the status callback).
    pub async fn voice(&self, req: &WebhookRequest<'_>) -> Result<Twiml, ApiError> {
        let verified = self.verified(req)?;
        let Some(call_sid) = verified.form.get("CallSid").filter(|s| !s.is_empty()) else {
            return Ok(Twiml::say_and_hang_up(OVER));
        };
        if verified.query.get("leg") == Some("dial") {
            return Ok(self.dial_ended(call_sid, &verified.form).await?);
        }
        match verified.form.get("Digits") {
            None => Ok(Twiml::gather(PIN_DIGITS, &verified.own_url, PROMPT, NO_PIN)),
            Some(digits) => Ok(self.connect(call_sid, digits.trim(), &verified.own_url).await?),
        }
    }

    /// The status callback: the provider's call is over. A call the Dial action did not settle
    /// is settled from the provider's records.
    ///
    /// # Errors
    /// 413, 403 as [`TelephonyWebhooks::voice`]; 503 when storage or the provider failed, or
    /// the provider has not finished the call's Dial leg yet (a retry settles it).
    pub async fn status(&self, req: &WebhookRequest<'_>) -> Result<Twiml, ApiError> {
        let verified = self.verified(req)?;
        let (Some(call_sid), Some(status)) = (verified.form.get("CallSid"), verified.form.get("CallStatus")) else {
            return Ok(Twiml::empty());
        };
        if !matches!(status, "completed" | "busy" | "no-answer" | "failed" | "canceled") {
            return Ok(Twiml::empty());
        }
        // A provider call never answered into one of ours held nothing.
        let Some(id) = claims::call_of_provider_call(&self.calls.table, call_sid).await? else {
            return Ok(Twiml::empty());
        };
        let Some(call) = call_store::get_call(&self.calls.table, &id).await? else { return Ok(Twiml::empty()) };
        if call.status != CallStatus::Active {
            return Ok(Twiml::empty()); // settled by the Dial action (or this is a repeat)
        }
        tracing::warn!(call_id = %id, "phone call still ACTIVE at its status callback: settling from the provider");
        match self.settle_from_provider(&call).await? {
            Some(_) => Ok(Twiml::empty()),
            None => Err(ApiError::temporarily_unavailable("the provider has not finished the call's Dial leg")),
        }
    }

    /// The PIN: holds what the caller's balance pays for and connects the callee, or says why not.
    async fn connect(&self, call_sid: &str, pin: &str, own_url: &str) -> Result<Twiml, CallError> {
        let table = &self.calls.table;
        // The provider repeats a request it got no answer to: the same Dial again.
        if let Some(id) = claims::call_of_provider_call(table, call_sid).await? {
            return self.answer_again(&id, own_url).await;
        }
        let unknown = || Ok(Twiml::say_and_hang_up(UNKNOWN_PIN));
        if !is_pin(pin) {
            return unknown();
        }
        let Some(id) = claims::call_of_pin(table, pin).await? else {
            tracing::info!("a phone call dialled in with an unknown or expired PIN");
            return unknown();
        };
        for _ in 0..4 {
            let Some(call) = call_store::get_call(table, &id).await? else { return unknown() };
            if call.channel != PSTN || call.pin.as_deref() != Some(pin) || call.status != CallStatus::Ringing {
                return unknown();
            }
            let available = ledger::get_account(table, &AccountId::wallet(&call.caller))
                .await?
                .map_or(Decimal::ZERO, |wallet| wallet.available);
            let max_seconds = u64::from(self.calls.settings.max_minutes) * call.period_seconds;
            let seconds = affordable_seconds(available, call.price_per_minute, call.period_seconds, max_seconds);
            if seconds < call.period_seconds {
                return self.refuse(&id, "insufficient_funds").await;
            }
            let amount = charge_for(call.price_per_minute, seconds, call.period_seconds);
            let hold = NewHold {
                id: minute_id(&id, 1),
                user_id: call.caller.clone(),
                kind: TransactionType::CallCharge,
                amount: Amount::new(amount, CURRENCY).map_err(|_| StoreError::Corrupt("phone call hold".into()))?,
                currency: CURRENCY,
                credit: Side::Account(AccountId::call(&id)),
                description: format!("Phone call {id}"),
                reference: Some(id.to_string()),
            };
            let activate = call_store::call_update(
                table,
                &id,
                CallStatus::Ringing,
                None,
                "SET #status = :active, accepted_ms = :acc, provider_call_id = :sid, paid_seconds = :paid",
                vec![
                    (":active", s(CallStatus::Active.as_str())),
                    (":acc", n(chrono::Utc::now().timestamp_millis())),
                    (":sid", s(call_sid)),
                    (":paid", n(seconds)),
                ],
            )?;
            let claim = claims::claim_provider_call(table, call_sid, &id)?;
            match ledger::hold_and(table, &hold, vec![activate, claim]).await {
                Ok(_) => {
                    tracing::info!(call_id = %id, seconds, held = %amount, "phone call connected; its paid time is held");
                    return Ok(Self::dial(&call.callee, seconds, own_url));
                }
                // Spent meanwhile: look at the balance again.
                Err(LedgerError::InsufficientFunds) => continue,
                Err(LedgerError::WalletRestricted) => return self.refuse(&id, "wallet_restricted").await,
                Err(LedgerError::ConditionFailed | LedgerError::Duplicate) => {
                    // Answered meanwhile: by this very provider call (a repeat that raced us), or
                    // by another one with the same PIN, or the ring window closed.
                    return match claims::call_of_provider_call(table, call_sid).await? {
                        Some(won) => self.answer_again(&won, own_url).await,
                        None => unknown(),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.refuse(&id, "insufficient_funds").await
    }

    fn dial(callee: &UserId, seconds: u64, own_url: &str) -> Twiml {
        Twiml::dial_client(callee.as_str(), seconds, &format!("{own_url}?leg=dial"))
    }

    /// The answer to a repeated PIN request: the same Dial while the call is connected.
    async fn answer_again(&self, id: &CallId, own_url: &str) -> Result<Twiml, CallError> {
        let call = call_store::get_call(&self.calls.table, id).await?.ok_or(CallError::NotFound)?;
        Ok(match (call.status, call.paid_seconds) {
            (CallStatus::Active, Some(seconds)) => Self::dial(&call.callee, seconds, own_url),
            _ => Twiml::say_and_hang_up(OVER),
        })
    }

    /// Ends a ringing call the caller cannot pay for, and says so.
    async fn refuse(&self, id: &CallId, reason: &str) -> Result<Twiml, CallError> {
        self.calls.finish(id, reason).await?;
        tracing::info!(call_id = %id, reason, "phone call refused at dial-in");
        Ok(Twiml::say_and_hang_up(NO_FUNDS))
    }

    /// The Dial's action: the callee's leg is over, `DialCallDuration` is the talk time.
    async fn dial_ended(&self, call_sid: &str, form: &Form) -> Result<Twiml, CallError> {
        let Some(id) = claims::call_of_provider_call(&self.calls.table, call_sid).await? else {
            tracing::warn!(call_sid, "a Dial action for a provider call we never connected");
            return Ok(Twiml::hang_up());
        };
        let talk = form.get("DialCallDuration").and_then(|d| d.trim().parse::<u64>().ok()).unwrap_or(0);
        let status = form.get("DialCallStatus").unwrap_or("completed");
        self.settle(&id, talk, status).await?;
        Ok(Twiml::hang_up())
    }

    /// Settles an ACTIVE phone call for `talk_seconds` of talk (at most what was paid for):
    /// charged per second into the call's escrow, the rest of the hold released, the call
    /// ended, in one write conditioned on the call being ACTIVE; then the escrow is paid out to
    /// the callee and platform revenue ([`Calls::payout`]). Returns the
    /// call after, and whether this settled it (`false`: it was settled before).
    ///
    /// # Errors
    /// [`CallError::NotFound`], storage failures.
    pub async fn settle(&self, id: &CallId, talk_seconds: u64, dial_status: &str) -> Result<(Call, bool), CallError> {
        let table = &self.calls.table;
        for _ in 0..8 {
            let call = call_store::get_call(table, id).await?.ok_or(CallError::NotFound)?;
            if call.status != CallStatus::Active {
                // Ended before (a duplicate callback); pay it out if that did not happen yet.
                self.calls.payout(&call).await?;
                return Ok((call, false));
            }
            let movement = minute_id(id, 1);
            let held = match ledger::get_transaction(table, &movement).await? {
                Some(tx) if tx.status == TransactionStatus::Pending => tx.amount.value(),
                Some(_) => continue, // settled between our two reads: look again
                None => return Err(StoreError::Corrupt(format!("ACTIVE phone call {id} holds nothing")).into()),
            };
            let paid = call.paid_seconds.unwrap_or(0);
            let talk = talk_seconds.min(paid);
            let charge = charge_for(call.price_per_minute, talk, call.period_seconds).min(held);
            let max_seconds = u64::from(self.calls.settings.max_minutes) * call.period_seconds;
            let reason = end_reason(dial_status, talk, paid, max_seconds);
            let at = now_rfc3339();
            // The talk time is charged into the call's escrow in the write that ends the call;
            // the escrow is then paid out to the callee and the platform (`Calls::payout`).
            let end = |charge: Decimal| {
                call_store::escrow_update(
                    table,
                    id,
                    EscrowCredit {
                        billed: call.billed_minutes,
                        charge,
                        whole_minute: false,
                        set: "#status = :ended, end_reason = :reason, ended_at = :at, duration_seconds = :d, \
                              billed_minutes = :b",
                        values: vec![
                            (":ended", s(CallStatus::Ended.as_str())),
                            (":reason", s(reason)),
                            (":at", s(&at)),
                            (":d", n(talk)),
                            (":b", n(talk.div_ceil(call.period_seconds.max(1)))),
                        ],
                        remove: "next_tick_ms",
                    },
                )
            };
            let result = if charge > Decimal::ZERO {
                let escrow = Escrow { account: AccountId::call(id), update: end(charge)? };
                ledger::post_held(table, &movement, HeldPosting { charge, escrow, next: None, extra: vec![] })
                    .await
                    .map(|settled| settled.changed)
            } else {
                ledger::fail_and(table, &movement, "call_ended", vec![end(Decimal::ZERO)?]).await.map(|s| s.changed)
            };
            match result {
                Ok(true) => {
                    if charge > Decimal::ZERO {
                        crate::service::calls::count_billed(id, talk.div_ceil(call.period_seconds.max(1)), charge);
                    }
                    let ended = call_store::get_call(table, id).await?.ok_or(CallError::NotFound)?;
                    self.calls.payout(&ended).await?;
                    let ended = call_store::get_call(table, id).await?.ok_or(CallError::NotFound)?;
                    tracing::info!(call_id = %id, talk, charged = %charge, reason, "phone call settled");
                    return Ok((ended, true));
                }
                Ok(false) | Err(LedgerError::ConditionFailed | LedgerError::AlreadyFinal(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("the phone call kept changing while it was being settled".into()).into())
    }

    /// Settles an ACTIVE phone call from the provider's Calls resource: once the provider's
    /// call and its Dial leg to the callee are over, the leg's duration is the talk time.
    /// `None` while the provider has not finished them.
    ///
    /// # Errors
    /// [`SettleError`]: no provider client, the provider unreadable, storage failures.
    pub async fn settle_from_provider(&self, call: &Call) -> Result<Option<(Call, bool)>, SettleError> {
        let provider = self.provider.as_ref().ok_or(SettleError::NoProvider)?;
        let Some(sid) = call.provider_call_id.as_deref() else {
            return Err(StoreError::Corrupt(format!("ACTIVE phone call {} has no provider call", call.id)).into());
        };
        if !provider.call(sid).await?.is_some_and(|parent| parent.is_final()) {
            return Ok(None);
        }
        let client = format!("client:{}", call.callee);
        let legs: Vec<ProviderCall> =
            provider.dial_legs(sid).await?.into_iter().filter(|l| l.to.as_deref() == Some(client.as_str())).collect();
        if legs.iter().any(|l| !l.is_final()) {
            return Ok(None);
        }
        let talk = legs.iter().filter(|l| l.status == "completed").map(ProviderCall::seconds).sum();
        let status = legs.first().map_or("no-answer", |l| l.status.as_str());
        Ok(Some(self.settle(&call.id, talk, status).await?))
    }

    /// Settles every phone call that outlived its time limit by [`SETTLE_GRACE_MS`] at `now_ms`
    /// from the provider's records (the callbacks were lost); one that cannot be settled is
    /// left ACTIVE, its hold intact, and logged as an error.
    ///
    /// # Errors
    /// Storage failures while listing the live calls.
    pub async fn reconcile(&self, now_ms: i64) -> Result<serde_json::Value, CallError> {
        let table = &self.calls.table;
        let (mut overdue, mut settled, mut stuck) = (0_u32, 0_u32, 0_u32);
        for shard in 0..call_store::LIVE_SHARDS {
            for id in call_store::live_calls(table, shard, 200).await? {
                let Some(call) = call_store::get_call(table, &id).await? else { continue };
                if !is_overdue(&call, now_ms) {
                    continue;
                }
                overdue += 1;
                match self.settle_from_provider(&call).await {
                    Ok(Some((_, true))) => settled += 1,
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        stuck += 1;
                        tracing::error!(call_id = %id, "stuck phone call: the provider has not finished it; left unsettled");
                    }
                    Err(e) => {
                        stuck += 1;
                        tracing::error!(call_id = %id, error = %e, "stuck phone call could not be settled; left unsettled");
                    }
                }
            }
        }
        crate::metrics::count("PstnCallsStuck", u64::from(stuck));
        Ok(serde_json::json!({"overdue": overdue, "settled": settled, "stuck": stuck}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn the_balance_pays_for_whole_seconds_and_never_more_than_it_holds() {
        // 10.00 per 60 s: 15.84 pays for 95 s (15.8333... rounded up), not 96 (16.00).
        assert_eq!(affordable_seconds(dec("15.84"), dec("10.00"), 60, 7200), 95);
        assert_eq!(charge_for(dec("10.00"), 95, 60), dec("15.84"));
        assert_eq!(affordable_seconds(dec("50.00"), dec("10.00"), 60, 7200), 300);
        assert_eq!(affordable_seconds(dec("50.00"), dec("10.00"), 60, 120), 120);
        assert_eq!(affordable_seconds(dec("9.99"), dec("10.00"), 60, 7200), 59);
        assert_eq!(affordable_seconds(dec("0"), dec("10.00"), 60, 7200), 0);
        for cents in 1..3000_i64 {
            let available = Decimal::new(cents, 2);
            for price in ["0.01", "1.00", "3.33", "7.77", "10.00"] {
                let seconds = affordable_seconds(available, dec(price), 60, u64::MAX);
                assert!(charge_for(dec(price), seconds, 60) <= available, "{available} at {price}");
                assert!(charge_for(dec(price), seconds + 1, 60) > available, "{available} at {price}");
            }
        }
    }

    #[test]
    fn a_charge_is_per_second_rounded_up_and_agrees_with_the_app_calls_partial_minute() {
        assert_eq!(charge_for(dec("3.33"), 95, 2), dec("158.18"));
        for seconds in 0..60 {
            assert_eq!(
                charge_for(dec("10.00"), seconds, 60),
                crate::service::calls::partial_charge(dec("10.00"), seconds, 60)
            );
        }
    }

    #[test]
    fn the_end_reason_says_whether_the_money_or_the_maximum_ran_out() {
        assert_eq!(end_reason("completed", 95, 300, 7200), "hangup");
        assert_eq!(end_reason("completed", 300, 300, 7200), "insufficient_funds");
        assert_eq!(end_reason("completed", 7200, 7200, 7200), "max_duration");
        assert_eq!(end_reason("completed", 0, 300, 7200), "hangup");
        assert_eq!(end_reason("no-answer", 0, 300, 7200), "no_answer");
        assert_eq!(end_reason("busy", 0, 300, 7200), "busy");
        assert_eq!(end_reason("canceled", 0, 300, 7200), "canceled");
    }

    #[test]
    fn pins_are_six_digits() {
        for _ in 0..1000 {
            assert!(is_pin(&random_pin()));
        }
        assert!(!is_pin("12345"));
        assert!(!is_pin("12345a"));
        assert!(!is_pin("1234567"));
        assert!(is_e164("+18005550100"));
        assert!(!is_e164("18005550100"));
        assert!(!is_e164("+0800555"));
    }
}
