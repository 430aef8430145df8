//! Deposits: buying coins through Revio's redirect payment flow.
//!
//! 1. `POST /v1/deposits` validates the amount, records a PENDING DEPOSIT (and counts it against
//!    the daily limit in the same write), creates a Revio purchase whose `reference` is our
//!    transaction id, and answers with the checkout URL.
//! 2. The person pays on Revio's page. Revio's webhook is a trigger only:
//!    [`crate::service::settlement`] confirms the purchase with Revio's API before crediting.
//! 3. If Revio is down or slow, the caller gets 503 within the client's time bound and the
//!    PENDING record stays without a purchase: the client's retry with the same Idempotency-Key
//!    meets it (the id derives from the key) and carries on; without a retry the reconciler
//!    fails it (`never_reached_provider`), giving the daily allowance back in the same write.
//!    If Revio refuses the purchase (4xx), the deposit fails (`provider_rejected`) and the
//!    answer, 502 `provider_rejected`, is final: a retry replays it.

use crate::config::{Env, InitError};
use crate::domain::ids::{TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{AccountId, NewTransaction, Quota, Side, SystemAccount, TransactionStatus, TransactionType};
use crate::money::{Amount, AmountError, Currency};
use crate::revio::{NewPurchase, RevioClient, RevioError};
use crate::service::views::TransactionView;
use crate::store::{StoreError, Table};
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
    /// Revio refused to create the purchase (a 4xx): the same request will be refused again.
    #[error("the payment provider refused the payment: {0}")]
    ProviderRejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

/// The failure reason of a deposit whose purchase Revio refused.
pub const PROVIDER_REJECTED: &str = "provider_rejected";

impl From<DepositError> for ApiError {
    fn from(e: DepositError) -> Self {
        match e {
            DepositError::InvalidAmount(AmountError::TooManyDecimals(_)) => {
                ApiError::bad_request("too_many_decimals", e.to_string())
            }
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
            DepositError::ProviderRejected(cause) => {
                let mut err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_rejected",
                    "the payment provider refused this payment; nothing was charged",
                )
                .final_answer();
                err.cause = Some(cause);
                err
            }
            DepositError::Store(e) => ApiError::from(e),
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

impl Deposits {
    /// Starts deposit `id` for `user`, whose e-mail Revio shows on its checkout page: `email`
    /// when the caller's token carries it, else read from the user's record.
    ///
    /// `id` derives from the request's Idempotency-Key ([`crate::idempotency::operation_id`]),
    /// so a repeat of a request whose answer was never stored (a crash, a lost response, a 503)
    /// meets the first attempt's records instead of starting a second deposit: it answers the
    /// deposit that exists, or carries on where the first attempt stopped.
    ///
    /// # Errors
    /// See [`DepositError`]. Nothing is left PENDING without a way forward: a deposit that never
    /// reached Revio is failed by reconciliation, giving its daily allowance back.
    pub async fn create(
        &self,
        user: &UserId,
        email: Option<&str>,
        id: TransactionId,
        input: CreateDepositInput,
    ) -> Result<DepositView, DepositError> {
        let currency = Currency::Coin;
        let amount = Amount::parse(&input.amount, currency)?;
        if amount.value() < self.limits.minimum {
            return Err(DepositError::BelowMinimum(crate::money::format(self.limits.minimum, currency)));
        }
        if amount.value() > self.limits.maximum {
            return Err(DepositError::AboveMaximum(crate::money::format(self.limits.maximum, currency)));
        }
        let email = match email {
            Some(e) => e.to_owned(),
            None => crate::store::users::get_user(&self.table, user)
                .await?
                .ok_or_else(|| DepositError::Internal("depositing user does not exist".into()))?
                .email
                .to_string(),
        };

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
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let quota = Quota::daily_deposits(user, &day, self.limits.daily);
        let mut tx = match ledger::record_pending(&self.table, &new, Some(&quota)).await {
            Ok(tx) => tx,
            Err(LedgerError::LimitExceeded) => {
                return Err(DepositError::DailyLimit(crate::money::format(self.limits.daily, currency)))
            }
            Err(LedgerError::Duplicate) => {
                // A repeat of this very request: answer what the first attempt left.
                let tx = ledger::get_transaction(&self.table, &id)
                    .await?
                    .filter(|t| &t.user_id == user && t.kind == TransactionType::Deposit && t.amount == amount)
                    .ok_or_else(|| {
                        DepositError::Internal(format!("derived deposit id {id} belongs to another request"))
                    })?;
                match (tx.status, &tx.reference) {
                    (TransactionStatus::Pending, None) => tx,
                    (TransactionStatus::Failed, _) if tx.failure_reason.as_deref() == Some(PROVIDER_REJECTED) => {
                        return Err(DepositError::ProviderRejected(PROVIDER_REJECTED.into()));
                    }
                    _ => {
                        tracing::info!(transaction_id = %id, "deposit request repeated; answering the existing deposit");
                        return Ok(DepositView {
                            transaction_id: tx.id.to_string(),
                            transaction: TransactionView::of(&tx, user),
                        });
                    }
                }
            }
            Err(LedgerError::Store(e)) => return Err(e.into()),
            Err(other) => return Err(DepositError::Internal(other.to_string())),
        };

        let redirect = |url: &Option<String>| url.as_ref().map(|u| u.replace("{id}", id.as_str()));
        let purchase = self
            .revio
            .create_purchase(&NewPurchase {
                email,
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
            Err(RevioError::Unavailable(cause)) => {
                // Left PENDING without a purchase: the client's retry with the same key carries on
                // from here; without one, reconciliation fails it (`never_reached_provider`) and
                // gives the daily allowance back.
                tracing::warn!(transaction_id = %id, error = %cause, "Revio unavailable at purchase creation");
                return Err(DepositError::ProviderUnavailable(cause));
            }
            Err(e) => {
                // Revio refused the purchase: the same request will be refused again. The deposit
                // fails (its allowance given back in the same write) and the answer is final.
                tracing::warn!(transaction_id = %id, error = %e, "Revio refused the purchase; deposit FAILED");
                ledger::fail(&self.table, &id, PROVIDER_REJECTED).await.map_err(|e| match e {
                    LedgerError::Store(e) => DepositError::Store(e),
                    other => DepositError::Internal(other.to_string()),
                })?;
                return Err(DepositError::ProviderRejected(e.to_string()));
            }
        };
        match ledger::attach_reference(&self.table, &id, "revio", &purchase.id, purchase.checkout_url.as_deref()).await
        {
            Ok(()) => {}
            Err(LedgerError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(DepositError::Internal(e.to_string())),
        }
        tracing::info!(transaction_id = %id, purchase_id = %purchase.id, "deposit started");
        let (value, txn) = (amount.value(), id.as_str());
        crate::metrics::counted_with_coins("DepositsCreated", 1, "DepositCoinsCreated", value, "transaction_id", txn);
        tx.reference = Some(purchase.id);
        tx.checkout_url = purchase.checkout_url;
        Ok(DepositView { transaction_id: tx.id.to_string(), transaction: TransactionView::of(&tx, user) })
    }
}
