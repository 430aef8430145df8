//! Deposits: buying coins through Revio's redirect payment flow.
//!
//! 1. `POST /v1/deposits` validates the amount, records a PENDING DEPOSIT (and counts it against
//!    the daily limit in the same write), creates a Revio purchase whose `reference` is our
//!    transaction id, and answers with the checkout URL.
//! 2. The person pays on Revio's page. Revio's webhook is a trigger only:
//!    [`crate::service::settlement`] confirms the purchase with Revio's API before crediting.
//! 3. If Revio is down or slow, the caller gets 503 within the client's time bound and the
//!    PENDING record is marked FAILED (`provider_unavailable`); if even that write fails, the
//!    reconciler finds the PENDING deposit without a purchase and fails it.

use crate::config::{Env, InitError};
use crate::domain::ids::{TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{AccountId, NewTransaction, Side, SystemAccount, TransactionType};
use crate::money::{Amount, AmountError, Currency};
use crate::revio::{NewPurchase, RevioClient, RevioError};
use crate::service::views::TransactionView;
use crate::store::item::{key, n};
use crate::store::{now_epoch, StoreError, Table};
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use http::StatusCode;
use rust_decimal::Decimal;
use serde::Deserialize;

/// Per-deposit and per-day limits, from the function's configuration.
#[derive(Debug, Clone, Copy)]
pub struct DepositLimits {
    pub minimum: Decimal,
    pub maximum: Decimal,
    pub daily: Decimal,
}

impl DepositLimits {
    /// Reads `DEPOSIT_MIN`, `DEPOSIT_MAX` and `DEPOSIT_DAILY_LIMIT` (decimal strings).
    ///
    /// # Errors
    /// [`InitError`] when one is missing, not a decimal, or they are inconsistent.
    pub fn from_env(env: &Env) -> Result<Self, InitError> {
        let limits = Self {
            minimum: env.require_parsed("DEPOSIT_MIN")?,
            maximum: env.require_parsed("DEPOSIT_MAX")?,
            daily: env.require_parsed("DEPOSIT_DAILY_LIMIT")?,
        };
        if limits.minimum <= Decimal::ZERO || limits.minimum > limits.maximum || limits.maximum > limits.daily {
            return Err(InitError::InvalidEnv {
                name: "DEPOSIT_MIN/DEPOSIT_MAX/DEPOSIT_DAILY_LIMIT".into(),
                reason: "need 0 < minimum <= maximum <= daily".into(),
            });
        }
        Ok(limits)
    }
}

/// The deposit use case, built once per cold start.
pub struct Deposits {
    pub table: Table,
    pub revio: RevioClient,
    pub limits: DepositLimits,
    /// Where Revio delivers this purchase's webhook (our Function URL).
    pub webhook_url: String,
    /// Where the person's browser returns after paying; `{id}` is replaced by the transaction id.
    pub success_redirect: Option<String>,
    pub failure_redirect: Option<String>,
}

impl Deposits {
    /// Reads `REVIO_WEBHOOK_URL`, optional `DEPOSIT_SUCCESS_REDIRECT` / `DEPOSIT_FAILURE_REDIRECT`,
    /// the limits, the table and the Revio client.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(env, aws)?,
            revio: RevioClient::from_env(env, aws).await?,
            limits: DepositLimits::from_env(env)?,
            webhook_url: env.require("REVIO_WEBHOOK_URL")?,
            success_redirect: env.optional("DEPOSIT_SUCCESS_REDIRECT"),
            failure_redirect: env.optional("DEPOSIT_FAILURE_REDIRECT"),
        })
    }
}

/// `POST /v1/deposits` body. The amount is a decimal string so no float ever touches it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDepositInput {
    pub amount: String,
}

/// Why a deposit was not started.
#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("{0}")]
    InvalidAmount(#[from] AmountError),
    #[error("the minimum deposit is {0}")]
    BelowMinimum(String),
    #[error("the maximum deposit is {0}")]
    AboveMaximum(String),
    #[error("this deposit would exceed your daily deposit limit of {0}")]
    DailyLimit(String),
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for DepositError {
    fn from(e: StoreError) -> Self {
        DepositError::Internal(e.to_string())
    }
}

impl From<DepositError> for ApiError {
    fn from(e: DepositError) -> Self {
        match e {
            DepositError::InvalidAmount(_) => ApiError::bad_request("invalid_amount", e.to_string()),
            DepositError::BelowMinimum(_) => ApiError::unprocessable("amount_below_minimum", e.to_string()),
            DepositError::AboveMaximum(_) => ApiError::unprocessable("amount_above_maximum", e.to_string()),
            DepositError::DailyLimit(_) => ApiError::unprocessable("daily_limit_exceeded", e.to_string()),
            DepositError::ProviderUnavailable(cause) => {
                let mut err = ApiError::unavailable(cause, 30);
                err.code = "payment_provider_unavailable";
                err.message = "the payment provider is unavailable; nothing was charged, please retry shortly".into();
                err
            }
            DepositError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// The answer to `POST /v1/deposits`: the PENDING movement, its id also as `transaction_id`,
/// and the `checkout_url` to send the person to.
#[derive(Debug, serde::Serialize)]
pub struct DepositView {
    pub transaction_id: String,
    #[serde(flatten)]
    pub transaction: TransactionView,
}

/// The status a new deposit is answered with.
pub const CREATED: StatusCode = StatusCode::CREATED;

fn daily_counter(
    table: &Table,
    user: &UserId,
    amount: Amount,
    limit: Decimal,
) -> Result<TransactWriteItem, StoreError> {
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(key(format!("DEPCAP#{user}#{day}"), "DEPCAP")))
        .update_expression("SET deposited = if_not_exists(deposited, :zero) + :a, expires_at = :exp")
        .condition_expression("attribute_not_exists(deposited) OR deposited <= :room")
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":a", n(amount.value()))
        .expression_attribute_values(":room", n(limit - amount.value()))
        .expression_attribute_values(":exp", n(now_epoch() + 3 * 24 * 3600))
        .build()
        .map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

async fn release_daily_counter(table: &Table, user: &UserId, amount: Amount) {
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(key(format!("DEPCAP#{user}#{day}"), "DEPCAP")))
        .update_expression("SET deposited = deposited - :a")
        .condition_expression("deposited >= :a")
        .expression_attribute_values(":a", n(amount.value()))
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %StoreError::dynamo(e), "could not release the daily deposit counter");
    }
}

impl Deposits {
    /// Starts a deposit for `user` (whose e-mail Revio shows on its checkout page).
    ///
    /// # Errors
    /// See [`DepositError`]. Nothing is left PENDING without a way forward.
    pub async fn create(&self, user: &UserId, input: CreateDepositInput) -> Result<DepositView, DepositError> {
        let currency = Currency::Coin;
        let amount = Amount::parse(&input.amount, currency)?;
        if amount.value() < self.limits.minimum {
            return Err(DepositError::BelowMinimum(crate::money::format(self.limits.minimum, currency)));
        }
        if amount.value() > self.limits.maximum {
            return Err(DepositError::AboveMaximum(crate::money::format(self.limits.maximum, currency)));
        }
        let profile = crate::store::users::get_user(&self.table, user)
            .await?
            .ok_or_else(|| DepositError::Internal("depositing user does not exist".into()))?;

        let id = TransactionId::generate();
        let new = NewTransaction {
            id: id.clone(),
            user_id: user.clone(),
            kind: TransactionType::Deposit,
            amount,
            currency,
            debit: Side::System(SystemAccount::RevioClearing),
            credit: Side::Account(AccountId::wallet(user)),
            description: format!("Deposit of {amount} {currency} via Revio"),
            reference: None,
        };
        let counter = daily_counter(&self.table, user, amount, self.limits.daily)?;
        let mut tx = ledger::record_pending(&self.table, &new, vec![counter], vec![LedgerError::LimitExceeded])
            .await
            .map_err(|e| match e {
            LedgerError::LimitExceeded => DepositError::DailyLimit(crate::money::format(self.limits.daily, currency)),
            other => DepositError::Internal(other.to_string()),
        })?;

        let redirect = |url: &Option<String>| url.as_ref().map(|u| u.replace("{id}", id.as_str()));
        let purchase = self
            .revio
            .create_purchase(&NewPurchase {
                email: profile.email.to_string(),
                amount_minor: amount.minor_units(currency),
                currency: "ZAR".into(),
                product_name: format!("{amount} Purse coins"),
                reference: id.to_string(),
                success_redirect: redirect(&self.success_redirect),
                failure_redirect: redirect(&self.failure_redirect),
                success_callback: Some(self.webhook_url.clone()),
            })
            .await;
        let purchase = match purchase {
            Ok(p) => p,
            Err(e) => {
                let reason = match &e {
                    RevioError::Unavailable(_) => "provider_unavailable",
                    _ => "provider_rejected",
                };
                tracing::warn!(transaction_id = %id, error = %e, "Revio purchase creation failed; deposit marked FAILED");
                if let Err(fail) = ledger::fail(&self.table, &id, reason).await {
                    tracing::error!(transaction_id = %id, error = %fail, "could not mark deposit FAILED; reconciliation will");
                }
                release_daily_counter(&self.table, user, amount).await;
                return Err(match e {
                    RevioError::Unavailable(cause) => DepositError::ProviderUnavailable(cause),
                    other => DepositError::Internal(format!("Revio refused the purchase: {other}")),
                });
            }
        };
        ledger::attach_reference(&self.table, &id, "revio", &purchase.id, purchase.checkout_url.as_deref())
            .await
            .map_err(|e| DepositError::Internal(e.to_string()))?;
        tracing::info!(transaction_id = %id, purchase_id = %purchase.id, "deposit started");
        tx.reference = Some(purchase.id);
        tx.checkout_url = purchase.checkout_url;
        Ok(DepositView { transaction_id: tx.id.to_string(), transaction: TransactionView::of(&tx, user) })
    }
}
