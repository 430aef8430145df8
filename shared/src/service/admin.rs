//! Operators' tools over the API: manual adjustments of a wallet, and looking a user up.
//!
//! **Adjustments** (`POST /v1/admin/adjustments`, `GET /v1/admin/adjustments?month=YYYY-MM`).
//! An administrator corrects a wallet by hand, always with a reason. A `credit` moves money from
//! the system account [`SystemAccount::Adjustments`] to the user's wallet; a `debit` moves it
//! from the wallet back to that account. Either is one ledger transfer of type `ADJUSTMENT`
//! (the movement and its two legs in one write), so a debit is conditioned on the wallet's
//! available balance in that very write: an adjustment can never take a wallet below zero, nor
//! debit a wallet restricted by a reversal shortfall. The movement appears in the user's
//! history like any other.
//!
//! The request carries an `Idempotency-Key`, and the movement's id derives from it, so a retry
//! (or fifty concurrent copies) makes one adjustment; a repeat whose stored answer was lost meets
//! the movement and answers it again.
//!
//! The audit trail is the movement item itself:
//!
//! | attribute | what |
//! |---|---|
//! | `adjusted_by` | the administrator's user id |
//! | `adjustment_reason` | why, 1 to [`MAX_REASON_CHARS`] characters |
//! | `gsi2pk` = `ADJUSTMENTS#<YYYY-MM>` | the month of its `created_at`: the sparse index lists a month's adjustments |
//! | `gsi2sk` = `<created_at>#<txn id>` | newest last; the listing reads it backwards |
//!
//! (COMPLETED movements do not otherwise use `gsi2`; PENDING ones use `PENDING#<TYPE>#<shard>`.)
//!
//! **User lookup** (`GET /v1/admin/users/{id_or_email}`): a user by `usr_…` id or by e-mail,
//! with their profile (never the password hash), wallet, and most recent movements, the
//! adjustments among them showing who made them and why.

use crate::domain::ids::{TransactionId, UserId};
use crate::domain::user::Email;
use crate::error::ApiError;
use crate::idempotency::IdempotencyError;
use crate::ledger::store::{self as ledger, history_partition, transaction_from_item, transaction_key, LedgerError};
use crate::ledger::{AccountId, NewTransaction, Side, SystemAccount, Transaction, TransactionType};
use crate::money::{Amount, AmountError, Currency};
use crate::service::accounts::{Profile, WalletView};
use crate::service::views::TransactionView;
use crate::store::item::{s, Item, ItemExt};
use crate::store::{StoreError, Table};
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// Longest adjustment reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Most adjustments one monthly listing answers with.
pub const MAX_LISTED_ADJUSTMENTS: i32 = 200;

/// How many of a user's most recent movements a lookup shows.
pub const RECENT_TRANSACTIONS: i32 = 20;

/// The status a new adjustment is answered with.
pub const CREATED: StatusCode = StatusCode::CREATED;

/// The currency adjustments are made in (the only one the ledger keeps).
const CURRENCY: Currency = Currency::Coin;

/// The index partition of the adjustments made in the month of `created_at` (RFC 3339).
fn month_partition(created_at: &str) -> String {
    format!("ADJUSTMENTS#{}", created_at.get(..7).unwrap_or(created_at))
}

/// Which way an adjustment moves money, seen from the user's wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the wallet, from the adjustments account.
    Credit,
    /// Out of the wallet, to the adjustments account.
    Debit,
}

impl Direction {
    /// The name as sent (`credit`, `debit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Credit => "credit",
            Direction::Debit => "debit",
        }
    }
}

/// `POST /v1/admin/adjustments` body, as sent. Every field is checked by [`Adjustment::parse`],
/// so that each mistake has its own error code.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustInput {
    pub user_id: String,
    pub direction: String,
    /// A decimal string, such as `"12.50"`.
    pub amount: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A checked adjustment request: it cannot exist with a bad direction, amount or reason.
#[derive(Debug, Clone)]
pub struct Adjustment {
    user_id: String,
    direction: Direction,
    amount: Amount,
    reason: String,
}

impl Adjustment {
    /// Checks the direction, the amount (strictly, as [`Amount::parse`]) and the reason (trimmed,
    /// 1 to [`MAX_REASON_CHARS`] characters), in that order.
    ///
    /// # Errors
    /// [`AdjustError::InvalidDirection`], [`AdjustError::InvalidAmount`],
    /// [`AdjustError::ReasonRequired`].
    pub fn parse(input: AdjustInput) -> Result<Self, AdjustError> {
        let direction = match input.direction.as_str() {
            "credit" => Direction::Credit,
            "debit" => Direction::Debit,
            _ => return Err(AdjustError::InvalidDirection),
        };
        let amount = Amount::parse(&input.amount, CURRENCY)?;
        let reason = input.reason.as_deref().unwrap_or_default().trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(AdjustError::ReasonRequired);
        }
        Ok(Self { user_id: input.user_id, direction, amount, reason: reason.to_owned() })
    }
}

/// An adjustment as operators see it: the answer to `POST /v1/admin/adjustments` and one item
/// of `GET /v1/admin/adjustments`.
#[derive(Debug, Clone, Serialize)]
pub struct AdjustmentView {
    pub transaction_id: String,
    pub user_id: String,
    pub direction: Direction,
    /// Exact decimal string at the currency's places (`"12.50"`).
    pub amount: String,
    pub currency: &'static str,
    pub reason: String,
    /// The administrator's user id.
    pub adjusted_by: String,
    pub created_at: String,
}

impl AdjustmentView {
    /// The view of a stored ADJUSTMENT movement item.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the item is not an adjustment with its audit attributes.
    fn of_item(item: &Item) -> Result<Self, StoreError> {
        let tx = transaction_from_item(item)?;
        if tx.kind != TransactionType::Adjustment {
            return Err(StoreError::Corrupt(format!("movement {} is not an adjustment", tx.id)));
        }
        Ok(Self {
            direction: direction_of(&tx),
            transaction_id: tx.id.to_string(),
            user_id: tx.user_id.to_string(),
            amount: crate::money::format(tx.amount.value(), tx.currency),
            currency: tx.currency.code(),
            reason: item.str("adjustment_reason")?.to_owned(),
            adjusted_by: item.str("adjusted_by")?.to_owned(),
            created_at: tx.created_at,
        })
    }
}

fn direction_of(tx: &Transaction) -> Direction {
    if tx.credit_account == AccountId::wallet(&tx.user_id).as_str() {
        Direction::Credit
    } else {
        Direction::Debit
    }
}

/// Why an adjustment was not made. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    #[error("direction must be credit or debit")]
    InvalidDirection,
    #[error("{0}")]
    InvalidAmount(#[from] AmountError),
    #[error("a reason of 1 to {MAX_REASON_CHARS} characters is required")]
    ReasonRequired,
    #[error("no user has this id")]
    UserNotFound,
    #[error("the wallet's available balance does not cover this debit")]
    InsufficientFunds,
    #[error("the wallet is restricted until a reversal shortfall is covered; it cannot be debited")]
    WalletRestricted,
    /// The movement this key derives exists, but was made by a different request (the key's
    /// record expired and the key was used again with another body).
    #[error("this Idempotency-Key was used for a different adjustment")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<AdjustError> for ApiError {
    fn from(e: AdjustError) -> Self {
        match e {
            AdjustError::InvalidDirection => ApiError::bad_request("invalid_direction", e.to_string()),
            AdjustError::InvalidAmount(AmountError::TooManyDecimals(_)) => {
                ApiError::bad_request("too_many_decimals", e.to_string())
            }
            AdjustError::InvalidAmount(_) => ApiError::bad_request("invalid_amount", e.to_string()),
            AdjustError::ReasonRequired => ApiError::bad_request("reason_required", e.to_string()),
            AdjustError::UserNotFound => user_not_found(),
            AdjustError::InsufficientFunds => ApiError::unprocessable("insufficient_funds", e.to_string()),
            AdjustError::WalletRestricted => ApiError::conflict("wallet_restricted", e.to_string()),
            AdjustError::KeyReused => ApiError::from(IdempotencyError::KeyReused),
            AdjustError::Store(e) => ApiError::from(e),
            AdjustError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

fn user_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no user has this id or e-mail")
}

/// Makes adjustment `id` as administrator `by`.
///
/// `id` derives from the request's Idempotency-Key, so a repeat of a request whose answer was
/// never stored meets the first attempt's movement and answers it instead of moving money again.
///
/// # Errors
/// See [`AdjustError`].
pub async fn adjust(
    table: &Table,
    by: &UserId,
    id: TransactionId,
    input: AdjustInput,
) -> Result<AdjustmentView, AdjustError> {
    let request = Adjustment::parse(input)?;
    let user = UserId::parse(&request.user_id).map_err(|_| AdjustError::UserNotFound)?;
    crate::store::users::get_user(table, &user).await?.ok_or(AdjustError::UserNotFound)?;
    let wallet = Side::Account(AccountId::wallet(&user));
    let adjustments = Side::System(SystemAccount::Adjustments);
    let (debit, credit) = match request.direction {
        Direction::Credit => (adjustments, wallet),
        Direction::Debit => (wallet, adjustments),
    };
    let new = NewTransaction {
        id: id.clone(),
        user_id: user.clone(),
        kind: TransactionType::Adjustment,
        amount: request.amount,
        currency: CURRENCY,
        debit,
        credit,
        description: format!("Manual {} of {} {CURRENCY} by Purse support", request.direction.as_str(), request.amount),
        reference: None,
    };
    let audit = vec![("adjusted_by", s(by.as_str())), ("adjustment_reason", s(&request.reason))];
    match ledger::transfer_with_attributes(table, &new, audit, Some(month_partition)).await {
        Ok(tx) => {
            tracing::warn!(
                transaction_id = %tx.id,
                user_id = %user,
                adjusted_by = %by,
                direction = request.direction.as_str(),
                amount = %request.amount,
                "manual adjustment made"
            );
            Ok(AdjustmentView {
                transaction_id: tx.id.to_string(),
                user_id: user.to_string(),
                direction: request.direction,
                amount: crate::money::format(tx.amount.value(), tx.currency),
                currency: tx.currency.code(),
                reason: request.reason,
                adjusted_by: by.to_string(),
                created_at: tx.created_at,
            })
        }
        Err(LedgerError::Duplicate) => {
            // A repeat of this very request whose answer was lost: answer what it made.
            let item = crate::store::get_item(table, transaction_key(&id))
                .await?
                .ok_or_else(|| AdjustError::Internal(format!("adjustment {id} refused as a duplicate but absent")))?;
            let made = AdjustmentView::of_item(&item).map_err(|_| AdjustError::KeyReused)?;
            let same = made.user_id == user.as_str()
                && made.direction == request.direction
                && made.amount == crate::money::format(request.amount.value(), CURRENCY)
                && made.reason == request.reason
                && made.adjusted_by == by.as_str();
            if !same {
                return Err(AdjustError::KeyReused);
            }
            tracing::info!(transaction_id = %id, "adjustment request repeated; answering the existing adjustment");
            Ok(made)
        }
        Err(LedgerError::InsufficientFunds) => Err(AdjustError::InsufficientFunds),
        Err(LedgerError::WalletRestricted) => Err(AdjustError::WalletRestricted),
        Err(LedgerError::Store(e)) => Err(e.into()),
        Err(other) => Err(AdjustError::Internal(format!("adjustment {id}: {other}"))),
    }
}

/// Why the adjustments of a month could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListAdjustmentsError {
    #[error("month must be YYYY-MM, such as 2026-11")]
    InvalidMonth,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ListAdjustmentsError> for ApiError {
    fn from(e: ListAdjustmentsError) -> Self {
        match e {
            ListAdjustmentsError::InvalidMonth => ApiError::bad_request("invalid_month", e.to_string()),
            ListAdjustmentsError::Store(e) => ApiError::from(e),
        }
    }
}

/// The `month` of a listing: `YYYY-MM` (a real month), absent meaning the current UTC month.
///
/// # Errors
/// [`ListAdjustmentsError::InvalidMonth`] for anything else.
pub fn parse_month(raw: Option<&str>) -> Result<String, ListAdjustmentsError> {
    let Some(raw) = raw else { return Ok(chrono::Utc::now().format("%Y-%m").to_string()) };
    let shaped =
        raw.len() == 7 && raw.bytes().enumerate().all(|(i, b)| if i == 4 { b == b'-' } else { b.is_ascii_digit() });
    let real = shaped && chrono::NaiveDate::parse_from_str(&format!("{raw}-01"), "%Y-%m-%d").is_ok();
    if real {
        Ok(raw.to_owned())
    } else {
        Err(ListAdjustmentsError::InvalidMonth)
    }
}

/// The adjustments made in `month` (`YYYY-MM`, see [`parse_month`]), newest first, at most
/// [`MAX_LISTED_ADJUSTMENTS`]. Read from the index, so one made a moment ago may be missing.
///
/// # Errors
/// [`ListAdjustmentsError::Store`] on storage failure.
pub async fn list_adjustments(table: &Table, month: &str) -> Result<Vec<AdjustmentView>, ListAdjustmentsError> {
    let items =
        crate::store::index_newest(table, "gsi2", &format!("ADJUSTMENTS#{month}"), MAX_LISTED_ADJUSTMENTS).await?;
    Ok(items.iter().map(AdjustmentView::of_item).collect::<Result<_, _>>()?)
}

/// One movement as an operator sees it: the owner's view, and for an adjustment who made it
/// and why.
#[derive(Debug, Clone, Serialize)]
pub struct MovementView {
    #[serde(flatten)]
    pub transaction: TransactionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusted_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustment_reason: Option<String>,
}

/// The answer to `GET /v1/admin/users/{id_or_email}`.
#[derive(Serialize)]
pub struct UserDetail {
    /// Profile only: the password hash is never read into it.
    pub profile: Profile,
    pub wallet: WalletView,
    /// The [`RECENT_TRANSACTIONS`] most recent movements, newest first.
    pub recent_transactions: Vec<MovementView>,
}

/// Why a user could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no user has this id or e-mail")]
    UserNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::UserNotFound => user_not_found(),
            LookupError::Store(e) => ApiError::from(e),
        }
    }
}

/// A user by `usr_…` id or by e-mail (anything with an `@`), with their wallet and most recent
/// movements.
///
/// # Errors
/// [`LookupError::UserNotFound`] for an unknown or malformed id or e-mail.
pub async fn lookup_user(table: &Table, id_or_email: &str) -> Result<UserDetail, LookupError> {
    let user = if id_or_email.starts_with(UserId::PREFIX) {
        let id = UserId::parse(id_or_email).map_err(|_| LookupError::UserNotFound)?;
        crate::store::users::get_user(table, &id).await?
    } else {
        let email = Email::parse(id_or_email).map_err(|_| LookupError::UserNotFound)?;
        crate::store::users::credentials_by_email(table, &email).await?.map(|c| c.user)
    };
    let user = user.ok_or(LookupError::UserNotFound)?;
    let wallet = ledger::get_account(table, &AccountId::wallet(&user.id))
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("user {} has no wallet", user.id)))?;
    let recent_transactions = recent_movements(table, &user.id).await?;
    Ok(UserDetail { profile: Profile::from(user), wallet: WalletView::from(wallet), recent_transactions })
}

/// The user's [`RECENT_TRANSACTIONS`] most recent movements, newest first (their history index).
async fn recent_movements(table: &Table, user: &UserId) -> Result<Vec<MovementView>, StoreError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", s(history_partition(user)))
        .scan_index_forward(false)
        .limit(RECENT_TRANSACTIONS)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    out.items()
        .iter()
        .map(|item| {
            Ok(MovementView {
                transaction: TransactionView::of(&transaction_from_item(item)?, user),
                adjusted_by: item.opt_str("adjusted_by").map(str::to_owned),
                adjustment_reason: item.opt_str("adjustment_reason").map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(direction: &str, amount: &str, reason: Option<&str>) -> AdjustInput {
        AdjustInput {
            user_id: UserId::generate().to_string(),
            direction: direction.into(),
            amount: amount.into(),
            reason: reason.map(str::to_owned),
        }
    }

    fn code(e: AdjustError) -> &'static str {
        ApiError::from(e).code
    }

    #[test]
    fn an_adjustment_needs_a_direction_a_strict_amount_and_a_reason() {
        let ok = Adjustment::parse(input("debit", "12.50", Some("  goodwill, ticket 42 "))).unwrap();
        assert_eq!(
            (ok.direction, ok.amount.to_string(), ok.reason.as_str()),
            (Direction::Debit, "12.50".into(), "goodwill, ticket 42")
        );
        assert_eq!(code(Adjustment::parse(input("refund", "1.00", Some("x"))).unwrap_err()), "invalid_direction");
        assert_eq!(code(Adjustment::parse(input("Credit", "1.00", Some("x"))).unwrap_err()), "invalid_direction");
        for bad in ["", "0", "-1.00", "1e3", " 1.00", "01.00", "ten"] {
            assert_eq!(
                code(Adjustment::parse(input("credit", bad, Some("x"))).unwrap_err()),
                "invalid_amount",
                "{bad:?}"
            );
        }
        assert_eq!(code(Adjustment::parse(input("credit", "1.005", Some("x"))).unwrap_err()), "too_many_decimals");
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        for bad in [None, Some(""), Some("   "), Some(long.as_str())] {
            assert_eq!(
                code(Adjustment::parse(input("credit", "1.00", bad)).unwrap_err()),
                "reason_required",
                "{bad:?}"
            );
        }
        assert!(Adjustment::parse(input("credit", "1.00", Some(&"é".repeat(MAX_REASON_CHARS)))).is_ok());
    }

    #[test]
    fn a_month_is_yyyy_mm_and_defaults_to_this_one() {
        assert_eq!(parse_month(Some("2026-11")).unwrap(), "2026-11");
        assert_eq!(parse_month(None).unwrap(), chrono::Utc::now().format("%Y-%m").to_string());
        for bad in
            ["", "2026", "2026-13", "2026-00", "2026-1", "2026/11", "26-11", "2026-11-01", "２０２６-11", "+026-11"]
        {
            assert!(parse_month(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_adjustment_is_listed_under_the_month_of_its_creation() {
        assert_eq!(month_partition("2026-11-30T23:59:59.999Z"), "ADJUSTMENTS#2026-11");
    }
}
