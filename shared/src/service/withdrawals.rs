//! Withdrawals: coins leave Purse once, only to their verified owner's bank account, through a
//! Revio payout — or come back to the wallet. Never both, never neither.
//!
//! 1. **Request** ([`Withdrawals::create`], `POST /v1/withdrawals`, with an Idempotency-Key):
//!    KYC VERIFIED, the caller's own bank account past its cooling-off period, amount limits.
//!    One transaction records the PENDING `WITHDRAWAL`, moves the amount from available to held
//!    under the balance condition (and the wallet not restricted), and counts it against the
//!    daily cap. The PENDING movement is its own outbox: it is on the PENDING index, so if the
//!    process dies before queueing the payout, reconciliation queues it.
//! 2. **Payout** ([`Payouts::process`], the payouts queue's consumer): claims the movement
//!    (`payout_state = SUBMITTING`, refused once cancelled), submits the payout with our
//!    movement id as its reference (Revio keeps one payout per reference), and records it
//!    (`SUBMITTED`). A failure that may pass (Revio down, a timeout) is retried through SQS
//!    with exponential backoff and jitter (the message's visibility, never a sleep); after a
//!    timeout the payout is first looked up by reference, so an accepted one is never sent
//!    twice. After the last attempt the movement is marked `STUCK` and the message goes to the
//!    dead-letter queue for an operator. A refusal (bad account) fails the withdrawal.
//! 3. **Result** ([`apply_payout`], from Revio's webhook or reconciliation, always confirmed by
//!    reading the payout from Revio): paid posts the hold (COMPLETED); unpaid or rejected
//!    releases it (FAILED, coins available again); a payout returned after it was paid is a
//!    `WITHDRAWAL_REVERSAL` crediting the wallet back, its id derived from the withdrawal so it
//!    happens once. Events out of order or twice change nothing after the final state.
//! 4. **Cancel** ([`Withdrawals::cancel`]) fails the movement only while no payout was claimed:
//!    cancel and the worker race on one condition, and exactly one wins.

use crate::config::{Env, InitError};
use crate::domain::ids::{BankAccountId, TransactionId, UserId};
use crate::domain::user::KycStatus;
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{
    AccountId, NewHold, NewTransaction, Quota, Side, SystemAccount, Transaction, TransactionStatus, TransactionType,
};
use crate::money::{Amount, AmountError, Currency};
use crate::pii::PiiKeys;
use crate::revio::{NewPayout, Payout, PayoutStatus, RevioClient, RevioError};
use crate::runtime::{MessageError, SqsMessage};
use crate::service::views::TransactionView;
use crate::store::item::{s, ItemExt};
use crate::store::{bank_accounts, StoreError, Table};
use aws_sdk_dynamodb::types::AttributeValue;
use http::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Per-withdrawal and per-day limits.
#[derive(Debug, Clone, Copy)]
pub struct WithdrawalLimits {
    pub minimum: Decimal,
    pub maximum: Decimal,
    pub daily: Decimal,
}

impl WithdrawalLimits {
    /// Reads `WITHDRAWAL_MIN`, `WITHDRAWAL_MAX` and `WITHDRAWAL_DAILY_LIMIT`.
    ///
    /// # Errors
    /// [`InitError`] when one is missing, not a decimal, or they are inconsistent.
    pub fn from_env(env: &Env) -> Result<Self, InitError> {
        let limits = Self {
            minimum: env.require_parsed("WITHDRAWAL_MIN")?,
            maximum: env.require_parsed("WITHDRAWAL_MAX")?,
            daily: env.require_parsed("WITHDRAWAL_DAILY_LIMIT")?,
        };
        if limits.minimum <= Decimal::ZERO || limits.minimum > limits.maximum || limits.maximum > limits.daily {
            return Err(InitError::InvalidEnv {
                name: "WITHDRAWAL_MIN/WITHDRAWAL_MAX/WITHDRAWAL_DAILY_LIMIT".into(),
                reason: "need 0 < minimum <= maximum <= daily".into(),
            });
        }
        Ok(limits)
    }
}

/// `POST /v1/withdrawals` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWithdrawalInput {
    pub amount: String,
    pub bank_account_id: String,
}

/// The answer to a withdrawal request or cancel: the movement, its id also as `transaction_id`.
#[derive(Debug, Serialize)]
pub struct WithdrawalView {
    pub transaction_id: String,
    #[serde(flatten)]
    pub transaction: TransactionView,
}

impl WithdrawalView {
    fn of(tx: &Transaction) -> Self {
        Self { transaction_id: tx.id.to_string(), transaction: TransactionView::of(tx, &tx.user_id) }
    }
}

/// The status a new withdrawal is answered with: accepted, paid out later.
pub const ACCEPTED: StatusCode = StatusCode::ACCEPTED;

/// The payouts queue's message: the withdrawal's id only.
#[derive(Debug, Serialize, Deserialize)]
pub struct PayoutMessage {
    pub transaction_id: TransactionId,
}

/// Queues payouts.
#[derive(Debug, Clone)]
pub struct PayoutQueue {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl PayoutQueue {
    /// The queue named by `PAYOUTS_QUEUE_URL`.
    ///
    /// # Errors
    /// [`InitError::MissingEnv`].
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self { sqs: crate::store::sqs_client(aws), queue_url: env.require("PAYOUTS_QUEUE_URL")? })
    }

    /// Queues the payout of withdrawal `id`.
    ///
    /// # Errors
    /// The SQS failure, in words.
    pub async fn send(&self, id: &TransactionId) -> Result<(), String> {
        let body = serde_json::to_string(&PayoutMessage { transaction_id: id.clone() }).map_err(|e| e.to_string())?;
        crate::store::send_message(&self.sqs, &self.queue_url, body).await
    }
}

/// The withdrawal use cases of the HTTP API, built once per cold start.
pub struct Withdrawals {
    pub table: Table,
    limits: WithdrawalLimits,
    queue: PayoutQueue,
}

fn not_found() -> ApiError {
    ApiError::not_found("no such withdrawal")
}

impl Withdrawals {
    /// Reads `PURSE_TABLE`, the limits and `PAYOUTS_QUEUE_URL`.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(env, aws)?,
            limits: WithdrawalLimits::from_env(env)?,
            queue: PayoutQueue::from_env(env, aws)?,
        })
    }

    /// Requests withdrawal `id` (derived from the Idempotency-Key) for `user`.
    ///
    /// # Errors
    /// 400 `invalid_amount` / `too_many_decimals` / `invalid_bank_account_id`, 403
    /// `kyc_required`, 404 `bank_account_not_found`, 409 `bank_account_cooling_off` /
    /// `wallet_restricted`, 422 `amount_below_minimum` / `amount_above_maximum` /
    /// `insufficient_funds` / `daily_limit_exceeded`, or a storage failure.
    pub async fn create(
        &self,
        user: &UserId,
        id: TransactionId,
        input: CreateWithdrawalInput,
    ) -> Result<WithdrawalView, ApiError> {
        let currency = Currency::Coin;
        let amount = Amount::parse(&input.amount, currency).map_err(|e| match e {
            AmountError::TooManyDecimals(_) => ApiError::bad_request("too_many_decimals", e.to_string()),
            _ => ApiError::bad_request("invalid_amount", e.to_string()),
        })?;
        if amount.value() < self.limits.minimum {
            let min = crate::money::format(self.limits.minimum, currency);
            return Err(ApiError::unprocessable("amount_below_minimum", format!("the minimum withdrawal is {min}")));
        }
        if amount.value() > self.limits.maximum {
            let max = crate::money::format(self.limits.maximum, currency);
            return Err(ApiError::unprocessable("amount_above_maximum", format!("the maximum withdrawal is {max}")));
        }
        let account_id = BankAccountId::parse(&input.bank_account_id).map_err(|_| {
            ApiError::bad_request("invalid_bank_account_id", "bank_account_id is not a bank account id")
        })?;
        let kyc =
            crate::store::kyc::profile(&self.table, user).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
        if kyc.status != KycStatus::Verified {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "kyc_required",
                "verify your identity (POST /v1/kyc) before withdrawing",
            ));
        }
        let account = bank_accounts::get(&self.table, user, &account_id)
            .await?
            .filter(|a| a.status == "ACTIVE")
            .ok_or_else(|| ApiError::not_found("no such bank account").with_code("bank_account_not_found"))?;
        if account.usable_from.as_str() > crate::store::now_rfc3339().as_str() {
            return Err(ApiError::conflict(
                "bank_account_cooling_off",
                format!("a new bank account receives withdrawals from {}", account.usable_from),
            ));
        }
        let hold = NewHold {
            id: id.clone(),
            user_id: user.clone(),
            kind: TransactionType::Withdrawal,
            amount,
            currency,
            credit: Side::System(SystemAccount::RevioClearing),
            description: format!("Withdrawal of {amount} {currency} to {}", account.number_masked),
            reference: None,
        };
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let quota = Quota::daily_withdrawals(user, &day, self.limits.daily);
        let attributes = vec![("bank_account_id", AttributeValue::S(account_id.to_string()))];
        let tx = match ledger::hold_with(&self.table, &hold, Some(&quota), attributes).await {
            Ok(tx) => tx,
            Err(LedgerError::Duplicate) => {
                // A repeat of this very request whose answer was lost: answer what it left.
                let tx = ledger::get_transaction(&self.table, &id)
                    .await?
                    .filter(|t| &t.user_id == user && t.kind == TransactionType::Withdrawal && t.amount == amount)
                    .ok_or_else(|| {
                        ApiError::internal(format!("derived withdrawal id {id} belongs to another request"))
                    })?;
                return Ok(WithdrawalView::of(&tx));
            }
            Err(LedgerError::InsufficientFunds) => {
                return Err(ApiError::unprocessable(
                    "insufficient_funds",
                    "your available balance does not cover this withdrawal",
                ))
            }
            Err(LedgerError::WalletRestricted) => {
                return Err(ApiError::conflict(
                    "wallet_restricted",
                    "your wallet owes a reversed payment; withdrawals resume once it is covered",
                ))
            }
            Err(LedgerError::LimitExceeded) => {
                let daily = crate::money::format(self.limits.daily, currency);
                return Err(ApiError::unprocessable(
                    "daily_limit_exceeded",
                    format!("this withdrawal would exceed your daily withdrawal limit of {daily}"),
                ));
            }
            Err(LedgerError::Store(e)) => return Err(e.into()),
            Err(other) => return Err(ApiError::internal(other)),
        };
        tracing::info!(user_id = %user, transaction_id = %id, "withdrawal requested");
        let (value, txn) = (tx.amount.value(), id.as_str());
        crate::metrics::counted_with_coins(
            "WithdrawalsRequested",
            1,
            "WithdrawalCoinsRequested",
            value,
            "transaction_id",
            txn,
        );
        if let Err(e) = self.queue.send(&id).await {
            // Recorded and held: reconciliation queues the payout of a PENDING withdrawal the
            // worker has not taken.
            tracing::warn!(transaction_id = %id, error = %e, "payout not queued now; reconciliation will");
        }
        Ok(WithdrawalView::of(&tx))
    }

    /// Cancels the caller's withdrawal while its payout has not been claimed by the worker.
    ///
    /// # Errors
    /// 404 for an unknown or another user's id, 409 `withdrawal_not_cancellable` once the
    /// payout was submitted or the withdrawal is final.
    pub async fn cancel(&self, user: &UserId, id: &str) -> Result<WithdrawalView, ApiError> {
        let id = TransactionId::parse(id).map_err(|_| not_found())?;
        let tx = ledger::get_transaction(&self.table, &id)
            .await?
            .filter(|t| &t.user_id == user && t.kind == TransactionType::Withdrawal)
            .ok_or_else(not_found)?;
        let refused = || {
            ApiError::conflict(
                "withdrawal_not_cancellable",
                "the payout was already sent to the bank; it can no longer be cancelled",
            )
        };
        if tx.status == TransactionStatus::Failed && tx.failure_reason.as_deref() == Some(CANCELLED) {
            return Ok(WithdrawalView::of(&tx));
        }
        match ledger::fail_when(&self.table, &id, CANCELLED, Some("attribute_not_exists(payout_state)")).await {
            Ok(settled) if settled.transaction.failure_reason.as_deref() == Some(CANCELLED) => {
                tracing::info!(user_id = %user, transaction_id = %id, "withdrawal cancelled");
                Ok(WithdrawalView::of(&settled.transaction))
            }
            Ok(_) | Err(LedgerError::ConditionFailed | LedgerError::AlreadyFinal(_)) => Err(refused()),
            Err(LedgerError::Store(e)) => Err(e.into()),
            Err(other) => Err(ApiError::internal(other)),
        }
    }
}

/// The failure reason of a withdrawal its owner cancelled.
pub const CANCELLED: &str = "cancelled";

trait WithCode {
    fn with_code(self, code: &'static str) -> Self;
}

impl WithCode for ApiError {
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

// ------------------------------------------------------------------------------------------
// The payout worker
// ------------------------------------------------------------------------------------------

/// How the worker retries.
#[derive(Debug, Clone, Copy)]
pub struct PayoutRetry {
    /// Attempts (SQS receives) before the movement is marked STUCK and the message parked;
    /// equal to the queue's `maxReceiveCount`.
    pub max_attempts: u32,
    /// The first retry's delay in seconds; doubling each time, with jitter, at most 900.
    pub base_delay_seconds: u32,
}

impl PayoutRetry {
    /// The visibility delay before attempt `attempt + 1`, with ±20 % jitter.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> i32 {
        let base = f64::from(self.base_delay_seconds) * 2_f64.powi(attempt.saturating_sub(1).min(16) as i32);
        let jittered = base * rng.gen_range(0.8..=1.2);
        jittered.round().clamp(1.0, 900.0) as i32
    }
}

/// The payouts queue's consumer, built once per cold start.
pub struct Payouts {
    table: Table,
    revio: RevioClient,
    keys: PiiKeys,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    callback_url: String,
    retry: PayoutRetry,
}

/// Payout states on the movement.
pub const SUBMITTING: &str = "SUBMITTING";
pub const SUBMITTED: &str = "SUBMITTED";
pub const STUCK: &str = "STUCK";

impl Payouts {
    /// Attempts per payout (`PAYOUT_MAX_ATTEMPTS`, equal to the queue's `maxReceiveCount`).
    pub fn max_attempts(&self) -> u32 {
        self.retry.max_attempts
    }

    /// Reads `PURSE_TABLE`, the Revio client, the PII keys, `PAYOUTS_QUEUE_URL`,
    /// `REVIO_WEBHOOK_URL`, `PAYOUT_MAX_ATTEMPTS` and `PAYOUT_RETRY_BASE_SECONDS`.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(env, aws)?,
            revio: RevioClient::from_env(env, aws).await?,
            keys: PiiKeys::from_env(env, aws).await?,
            sqs: aws_sdk_sqs::Client::new(aws),
            queue_url: env.require("PAYOUTS_QUEUE_URL")?,
            callback_url: env.require("REVIO_WEBHOOK_URL")?,
            retry: PayoutRetry {
                max_attempts: env.require_parsed("PAYOUT_MAX_ATTEMPTS")?,
                base_delay_seconds: env.require_parsed("PAYOUT_RETRY_BASE_SECONDS")?,
            },
        })
    }

    /// Processes one payout message.
    ///
    /// # Errors
    /// A [`MessageError`] when the payout must be tried again later (the message's visibility
    /// is set to the backoff delay first), or after the last attempt (the movement is marked
    /// STUCK and the message goes to the dead-letter queue).
    pub async fn process(&self, message: &SqsMessage) -> Result<(), MessageError> {
        let body: PayoutMessage = serde_json::from_str(message.body.as_deref().unwrap_or(""))
            .map_err(|e| MessageError(format!("unreadable payout message: {e}")))?;
        let attempt: u32 = message.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        match self.attempt(&body).await {
            Ok(()) => Ok(()),
            // Every failure, Revio's or storage's, is retried the same way.
            Err(e) => self.later(message, attempt, &body.transaction_id, &e.0).await,
        }
    }

    async fn attempt(&self, body: &PayoutMessage) -> Result<(), MessageError> {
        let store = |e: StoreError| MessageError(e.to_string());
        let Some(tx) = ledger::get_transaction(&self.table, &body.transaction_id).await.map_err(store)? else {
            tracing::warn!(transaction_id = %body.transaction_id, "payout for an unknown movement; dropped");
            return Ok(());
        };
        if tx.kind != TransactionType::Withdrawal || tx.status != TransactionStatus::Pending {
            return Ok(());
        }
        match tx.payout_state.as_deref() {
            Some(SUBMITTED) => Ok(()),
            None => {
                if wallet_restricted(&self.table, &tx.user_id).await.map_err(store)? {
                    // A reversal left the wallet owing: nothing leaves it until that is covered.
                    match ledger::fail_when(
                        &self.table,
                        &tx.id,
                        "wallet_restricted",
                        Some("attribute_not_exists(payout_state)"),
                    )
                    .await
                    {
                        Ok(_) | Err(LedgerError::ConditionFailed | LedgerError::AlreadyFinal(_)) => return Ok(()),
                        Err(e) => return Err(MessageError(e.to_string())),
                    }
                }
                if !claim(&self.table, &tx.id).await.map_err(store)? {
                    // Cancelled, or another delivery claimed it: that one carries on.
                    return Ok(());
                }
                self.submit(&tx).await
            }
            // A previous attempt may have reached Revio (a timeout): ask before sending again.
            Some(_) => match self.revio.find_payout(tx.id.as_str()).await {
                Ok(Some(payout)) => {
                    record_submitted(&self.table, &tx.id, &payout.id).await.map_err(store)?;
                    apply_payout(&self.table, &payout).await.map_err(|e| MessageError(e.0))?;
                    Ok(())
                }
                Ok(None) => self.submit(&tx).await,
                Err(e) => Err(MessageError(e.to_string())),
            },
        }
    }

    async fn submit(&self, tx: &Transaction) -> Result<(), MessageError> {
        let store = |e: StoreError| MessageError(e.to_string());
        let account_id = tx
            .bank_account_id
            .as_deref()
            .and_then(|a| BankAccountId::parse(a).ok())
            .ok_or_else(|| MessageError(format!("withdrawal {} names no bank account", tx.id)))?;
        let account = bank_accounts::get(&self.table, &tx.user_id, &account_id)
            .await
            .map_err(store)?
            .ok_or_else(|| MessageError(format!("bank account of withdrawal {} is gone", tx.id)))?;
        let recipient = crate::service::bank_accounts::recipient(&self.keys, &account).map_err(store)?;
        let payout = NewPayout {
            reference: tx.id.to_string(),
            amount_minor: tx.amount.minor_units(tx.currency),
            currency: "ZAR".into(),
            recipient,
            callback_url: Some(self.callback_url.clone()),
        };
        match self.revio.create_payout(&payout).await {
            Ok(p) => {
                record_submitted(&self.table, &tx.id, &p.id).await.map_err(store)?;
                tracing::info!(transaction_id = %tx.id, payout_id = %p.id, "payout submitted");
                crate::metrics::Metric::count("PayoutsSubmitted", 1).property("transaction_id", tx.id.as_str()).emit();
                Ok(())
            }
            Err(RevioError::Rejected { status, message: why }) => {
                tracing::warn!(transaction_id = %tx.id, status, reason = %why, "Revio refused the payout; withdrawal FAILED");
                match ledger::fail(&self.table, &tx.id, "payout_rejected").await {
                    Ok(s) => {
                        if s.changed {
                            count_payout_failed("refused", &tx.id);
                        }
                        Ok(())
                    }
                    Err(LedgerError::AlreadyFinal(_)) => Ok(()),
                    Err(e) => Err(MessageError(e.to_string())),
                }
            }
            Err(e) => Err(MessageError(e.to_string())),
        }
    }

    /// Schedules the next attempt through the message's visibility, or after the last one
    /// marks the movement STUCK and lets the message go to the dead-letter queue.
    async fn later(
        &self,
        message: &SqsMessage,
        attempt: u32,
        id: &TransactionId,
        why: &str,
    ) -> Result<(), MessageError> {
        if attempt >= self.retry.max_attempts {
            mark_stuck(&self.table, id, why).await.map_err(|e| MessageError(e.to_string()))?;
            tracing::error!(transaction_id = %id, attempts = attempt, error = why, "payout stuck after its last attempt; parked for an operator");
            crate::metrics::count("PayoutsStuck", 1);
            return Err(MessageError(format!("payout stuck after {attempt} attempts: {why}")));
        }
        let delay = self.retry.delay(attempt, &mut rand::thread_rng());
        if let Some(handle) = message.receipt_handle.as_deref() {
            let changed = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(delay)
                .send()
                .await;
            if let Err(e) = changed {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not set the retry delay; the queue's visibility timeout applies");
            }
        }
        tracing::warn!(transaction_id = %id, attempt, delay_seconds = delay, error = why, "payout not sent; retrying later");
        Err(MessageError(format!("payout not sent (attempt {attempt}), retrying in {delay} s: {why}")))
    }
}

/// Publishes one failed payout (`PayoutsFailed`): `refused` by Revio at submission, or failed
/// at the `bank` afterwards.
fn count_payout_failed(reason: &'static str, id: &TransactionId) {
    crate::metrics::Metric::count("PayoutsFailed", 1)
        .dimension("Reason", reason)
        .property("transaction_id", id.as_str())
        .emit();
}

async fn wallet_restricted(table: &Table, user: &UserId) -> Result<bool, StoreError> {
    Ok(crate::store::get_item(table, ledger::account_key(&AccountId::wallet(user)))
        .await?
        .is_some_and(|w| w.contains_key("shortfall")))
}

/// Claims a PENDING withdrawal for submission; `false` when it is no longer PENDING or was
/// claimed already (the one condition a cancel also checks).
async fn claim(table: &Table, id: &TransactionId) -> Result<bool, StoreError> {
    conditional_update(
        table,
        id,
        "SET payout_state = :state, payout_claimed_at = :now, updated_at = :now",
        "#status = :pending AND attribute_not_exists(payout_state)",
        vec![(":state", s(SUBMITTING))],
    )
    .await
}

async fn record_submitted(table: &Table, id: &TransactionId, payout_id: &str) -> Result<bool, StoreError> {
    conditional_update(
        table,
        id,
        "SET payout_state = :state, #reference = :payout, updated_at = :now REMOVE payout_error",
        "#status = :pending",
        vec![(":state", s(SUBMITTED)), (":payout", s(payout_id))],
    )
    .await
}

async fn mark_stuck(table: &Table, id: &TransactionId, why: &str) -> Result<bool, StoreError> {
    let why: String = why.chars().take(300).collect();
    conditional_update(
        table,
        id,
        "SET payout_state = :state, payout_error = :why, updated_at = :now",
        "#status = :pending AND payout_state <> :submitted",
        vec![(":state", s(STUCK)), (":why", s(why)), (":submitted", s(SUBMITTED))],
    )
    .await
}

async fn conditional_update(
    table: &Table,
    id: &TransactionId,
    set: &str,
    condition: &str,
    values: Vec<(&str, AttributeValue)>,
) -> Result<bool, StoreError> {
    let mut update = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(ledger::transaction_key(id)))
        .update_expression(set)
        .condition_expression(condition)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pending", s(TransactionStatus::Pending.as_str()))
        .expression_attribute_values(":now", s(crate::store::now_rfc3339()));
    if set.contains("#reference") {
        // `reference` is one of DynamoDB's reserved words.
        update = update.expression_attribute_names("#reference", "reference");
    }
    for (name, value) in values {
        update = update.expression_attribute_values(name, value);
    }
    crate::store::update_applied(update.send().await)
}

// ------------------------------------------------------------------------------------------
// Applying Revio's payout state
// ------------------------------------------------------------------------------------------

/// What applying a payout's state did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    Completed(TransactionId),
    AlreadyCompleted(TransactionId),
    Failed(TransactionId),
    AlreadyFailed(TransactionId),
    Reversed(TransactionId),
    AlreadyReversed(TransactionId),
    NotFinal(TransactionId),
    /// Revio's payout names no withdrawal of ours, or disagrees with it: nothing done, logged.
    NeedsReview,
    UnknownPayout,
}

impl PayoutOutcome {
    /// A short stable name for the webhook log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Completed(_) => "PAYOUT_COMPLETED",
            Self::AlreadyCompleted(_) => "ALREADY_COMPLETED",
            Self::Failed(_) => "PAYOUT_FAILED",
            Self::AlreadyFailed(_) => "ALREADY_FAILED",
            Self::Reversed(_) => "PAYOUT_RETURNED",
            Self::AlreadyReversed(_) => "ALREADY_RETURNED",
            Self::NotFinal(_) => "NOT_FINAL",
            Self::NeedsReview => "NEEDS_REVIEW",
            Self::UnknownPayout => "UNKNOWN_PAYOUT",
        }
    }

    /// The withdrawal concerned, when there is one.
    pub fn transaction_id(&self) -> Option<&TransactionId> {
        match self {
            Self::Completed(t)
            | Self::AlreadyCompleted(t)
            | Self::Failed(t)
            | Self::AlreadyFailed(t)
            | Self::Reversed(t)
            | Self::AlreadyReversed(t)
            | Self::NotFinal(t) => Some(t),
            _ => None,
        }
    }
}

pub use crate::service::settlement::RetryLater;

fn later(e: impl std::fmt::Display) -> RetryLater {
    RetryLater(e.to_string())
}

/// Reads payout `payout_id` from Revio (the truth) and applies it.
///
/// # Errors
/// [`RetryLater`] when Revio or storage failed.
pub async fn settle_payout(table: &Table, revio: &RevioClient, payout_id: &str) -> Result<PayoutOutcome, RetryLater> {
    match revio.get_payout(payout_id).await {
        Ok(p) => apply_payout(table, &p).await,
        Err(RevioError::NotFound) => Ok(PayoutOutcome::UnknownPayout),
        Err(e) => Err(later(format!("Revio: {e}"))),
    }
}

/// The reversal movement of a returned withdrawal: its id derives from the withdrawal.
pub fn reversal_id(withdrawal: &TransactionId) -> TransactionId {
    withdrawal.derive("returned")
}

/// Applies Revio's state of a payout to its withdrawal, exactly once.
///
/// # Errors
/// [`RetryLater`] when storage failed.
pub async fn apply_payout(table: &Table, payout: &Payout) -> Result<PayoutOutcome, RetryLater> {
    let Some(id) = payout.reference.as_deref().and_then(|r| TransactionId::parse(r).ok()) else {
        tracing::error!(payout_id = %payout.id, "a payout names no withdrawal of ours");
        return Ok(PayoutOutcome::NeedsReview);
    };
    let Some(tx) =
        ledger::get_transaction(table, &id).await.map_err(later)?.filter(|t| t.kind == TransactionType::Withdrawal)
    else {
        tracing::error!(payout_id = %payout.id, "a payout names no withdrawal of ours");
        return Ok(PayoutOutcome::NeedsReview);
    };
    if payout.amount_minor != tx.amount.minor_units(tx.currency) || payout.currency != "ZAR" {
        tracing::error!(transaction_id = %id, payout_id = %payout.id, "payout amount differs from the withdrawal; nothing applied");
        crate::metrics::count("PayoutMismatches", 1);
        return Ok(PayoutOutcome::NeedsReview);
    }
    let reason = payout.failure_reason.clone().unwrap_or_else(|| "payout_failed".into());
    match &payout.status {
        PayoutStatus::Pending | PayoutStatus::Other(_) => Ok(PayoutOutcome::NotFinal(id)),
        PayoutStatus::Paid => match ledger::post(table, &id).await {
            Ok(s) if s.changed => {
                tracing::info!(transaction_id = %id, payout_id = %payout.id, "withdrawal paid out");
                let (value, txn) = (tx.amount.value(), id.as_str());
                crate::metrics::counted_with_coins(
                    "WithdrawalsCompleted",
                    1,
                    "WithdrawalCoinsPaidOut",
                    value,
                    "transaction_id",
                    txn,
                );
                Ok(PayoutOutcome::Completed(id))
            }
            Ok(_) => Ok(PayoutOutcome::AlreadyCompleted(id)),
            Err(LedgerError::AlreadyFinal(TransactionStatus::Failed)) => {
                tracing::error!(transaction_id = %id, payout_id = %payout.id, "Revio paid a withdrawal we had failed; needs a person");
                crate::metrics::count("PayoutMismatches", 1);
                Ok(PayoutOutcome::NeedsReview)
            }
            Err(e) => Err(later(e)),
        },
        PayoutStatus::Unpaid | PayoutStatus::Rejected => match ledger::fail(table, &id, &reason).await {
            Ok(s) if s.changed => {
                tracing::info!(transaction_id = %id, reason = %reason, "withdrawal failed at the bank; coins back");
                count_payout_failed("bank", &id);
                Ok(PayoutOutcome::Failed(id))
            }
            Ok(_) => Ok(PayoutOutcome::AlreadyFailed(id)),
            // Reported paid first, failed now: the money came back, as for a return.
            Err(LedgerError::AlreadyFinal(TransactionStatus::Completed)) => reverse(table, &tx, &reason).await,
            Err(e) => Err(later(e)),
        },
        PayoutStatus::Returned => match tx.status {
            TransactionStatus::Completed => reverse(table, &tx, &reason).await,
            TransactionStatus::Pending => match ledger::fail(table, &id, &reason).await {
                Ok(_) | Err(LedgerError::AlreadyFinal(TransactionStatus::Failed)) => Ok(PayoutOutcome::Failed(id)),
                Err(LedgerError::AlreadyFinal(TransactionStatus::Completed)) => {
                    Err(RetryLater("withdrawal completed meanwhile; reversing on the next attempt".into()))
                }
                Err(e) => Err(later(e)),
            },
            TransactionStatus::Failed => Ok(PayoutOutcome::AlreadyFailed(id)),
        },
    }
}

/// Credits a paid-out withdrawal back to the wallet, once (`WITHDRAWAL_REVERSAL`).
async fn reverse(table: &Table, tx: &Transaction, reason: &str) -> Result<PayoutOutcome, RetryLater> {
    let reversal = NewTransaction {
        id: reversal_id(&tx.id),
        user_id: tx.user_id.clone(),
        kind: TransactionType::WithdrawalReversal,
        amount: tx.amount,
        currency: tx.currency,
        debit: Side::System(SystemAccount::RevioClearing),
        credit: Side::Account(AccountId::wallet(&tx.user_id)),
        description: format!("Withdrawal {} returned by the bank ({reason})", tx.id),
        reference: Some(tx.id.to_string()),
    };
    match ledger::transfer(table, &reversal).await {
        Ok(_) => {
            tracing::info!(transaction_id = %tx.id, reversal_id = %reversal.id, "paid-out withdrawal returned; wallet credited back");
            crate::metrics::count("WithdrawalsReturned", 1);
            Ok(PayoutOutcome::Reversed(tx.id.clone()))
        }
        Err(LedgerError::Duplicate) => Ok(PayoutOutcome::AlreadyReversed(tx.id.clone())),
        Err(e) => Err(later(e)),
    }
}

// ------------------------------------------------------------------------------------------
// Reconciliation
// ------------------------------------------------------------------------------------------

/// What a reconciliation pass over withdrawals did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct WithdrawalReport {
    pub checked: u32,
    /// Payouts queued for withdrawals the worker had not taken (the outbox relay).
    pub queued: u32,
    /// Withdrawals settled from Revio's state.
    pub settled: u32,
    /// Still pending at Revio.
    pub pending: u32,
    /// Could not be resolved now (Revio or storage failing, or a mismatch for a person).
    pub unresolved: u32,
}

/// Looks at every PENDING withdrawal older than `min_age_seconds` (at most `limit` per index
/// shard): queues the payout of one the worker never took, settles one Revio has decided, and
/// reports what it could not resolve.
///
/// # Errors
/// [`StoreError`] when the index cannot be read.
pub async fn reconcile(
    table: &Table,
    revio: &RevioClient,
    queue: &PayoutQueue,
    min_age_seconds: i64,
    limit: i32,
) -> Result<WithdrawalReport, StoreError> {
    let cutoff = (chrono::Utc::now() - chrono::Duration::seconds(min_age_seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut report = WithdrawalReport::default();
    for shard in 0..ledger::PENDING_INDEX_SHARDS {
        let partition = ledger::pending_partition_shard(TransactionType::Withdrawal, shard);
        for item in crate::store::gsi2_partition(table, &partition, limit).await? {
            let created = item.str("created_at")?.to_owned();
            if created.as_str() > cutoff.as_str() {
                continue;
            }
            let tx = ledger::transaction_from_item(&item)?;
            report.checked += 1;
            match reconcile_one(table, revio, queue, &tx).await {
                Ok(Some(true)) => report.settled += 1,
                Ok(Some(false)) => report.pending += 1,
                Ok(None) => report.queued += 1,
                Err(e) => {
                    tracing::warn!(transaction_id = %tx.id, error = %e.0, "withdrawal not reconciled now");
                    report.unresolved += 1;
                }
            }
        }
    }
    crate::metrics::count("WithdrawalReconcileFindings", u64::from(report.queued + report.settled));
    crate::metrics::count("ReconcileErrors", u64::from(report.unresolved));
    Ok(report)
}

/// `None`: queued for the worker; `Some(true)`: settled; `Some(false)`: still pending at Revio.
async fn reconcile_one(
    table: &Table,
    revio: &RevioClient,
    queue: &PayoutQueue,
    tx: &Transaction,
) -> Result<Option<bool>, RetryLater> {
    if tx.payout_state.is_none() {
        queue.send(&tx.id).await.map_err(later)?;
        return Ok(None);
    }
    let payout = match revio.find_payout(tx.id.as_str()).await {
        Ok(Some(p)) => p,
        // Claimed but never accepted by Revio: the worker submits it again.
        Ok(None) => {
            queue.send(&tx.id).await.map_err(later)?;
            return Ok(None);
        }
        Err(e) => return Err(later(e)),
    };
    if tx.payout_state.as_deref() != Some(SUBMITTED) {
        record_submitted(table, &tx.id, &payout.id).await.map_err(later)?;
    }
    match apply_payout(table, &payout).await? {
        PayoutOutcome::NotFinal(_) => Ok(Some(false)),
        PayoutOutcome::NeedsReview => Err(RetryLater("payout disagrees with the withdrawal; needs a person".into())),
        _ => Ok(Some(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payout_retries_back_off_with_jitter_up_to_sqs_longest_delay() {
        let retry = PayoutRetry { max_attempts: 8, base_delay_seconds: 10 };
        let mut rng = rand::thread_rng();
        for attempt in 1..=8 {
            let d = retry.delay(attempt, &mut rng);
            let base = 10.0 * 2_f64.powi(attempt as i32 - 1);
            assert!(
                f64::from(d) >= (base * 0.8).floor().min(900.0) && f64::from(d) <= (base * 1.2).ceil().min(900.0),
                "{attempt}: {d}"
            );
        }
        assert_eq!(PayoutRetry { max_attempts: 30, base_delay_seconds: 60 }.delay(25, &mut rng), 900);
    }
}
