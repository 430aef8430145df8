//! Cases: deposits that need a person.
//!
//! Money that arrived where the ledger cannot take it automatically never disappears into a log
//! line: settlement opens a case, which an operator lists (`GET /v1/admin/cases`,
//! `purse-admin cases`) and resolves with a reason (`POST /v1/admin/cases/{case_id}/resolve`,
//! `purse-admin resolve-case`). Opening counts the `CasesOpened` metric, which is alarmed.
//!
//! | kind | what happened | resolutions |
//! |---|---|---|
//! | `PAID_AFTER_FAILED` | Revio reports paid a purchase whose deposit we had failed (expired, provider errors) | `credit` the paid amount, or `refund` it at Revio |
//! | `AMOUNT_MISMATCH` | the paid amount differs from the deposit's (the deposit was failed) | `credit` what was paid, or `refund` |
//! | `UNKNOWN_PURCHASE_PAID` | Revio reports paid a purchase no deposit of ours belongs to | `refund` (nobody to credit) |
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `CASE#<case_id>` | `CASE` | one case; open ones carry `gsi2pk = CASES#OPEN` |
//!
//! A case's id derives from its kind and the purchase, so settlement meeting the same purchase
//! again (a redelivered webhook, the next reconciliation) finds the case instead of opening
//! another. Resolving is exactly once: a `credit` posts a DEPOSIT movement whose id derives
//! from the case, in the same transaction that closes the case under the condition that it is
//! still open; a `refund` first claims the case (`OPEN` → `REFUNDING`, after which it cannot be
//! credited), asks Revio to refund, and closes the case once Revio confirms — a refund Revio
//! did not confirm leaves it `REFUNDING`, listed, for the refund to be retried. The
//! closed case keeps who resolved it, when, how and why: the audit trail.

use crate::domain::ids::{TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{AccountId, NewTransaction, Side, SystemAccount, TransactionType};
use crate::money::{Amount, Currency};
use crate::revio::{PurchaseStatus, RevioClient, RevioError};
use crate::store::item::{key, n, s, Item, ItemExt};
use crate::store::{now_rfc3339, StoreError, Table};
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A case whose refund was asked of Revio and not yet confirmed: it can no longer be credited.
const REFUNDING: &str = "REFUNDING";

/// The index partition of open cases (a handful at any time: one partition is enough).
const OPEN_PARTITION: &str = "CASES#OPEN";

/// Why a deposit needs a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseKind {
    PaidAfterFailed,
    AmountMismatch,
    UnknownPurchasePaid,
}

impl CaseKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::PaidAfterFailed => "PAID_AFTER_FAILED",
            CaseKind::AmountMismatch => "AMOUNT_MISMATCH",
            CaseKind::UnknownPurchasePaid => "UNKNOWN_PURCHASE_PAID",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [CaseKind::PaidAfterFailed, CaseKind::AmountMismatch, CaseKind::UnknownPurchasePaid]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// What settlement knows when it opens a case.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub kind: CaseKind,
    pub purchase_id: String,
    /// The deposit concerned, when there is one.
    pub transaction_id: Option<TransactionId>,
    /// Whose deposit it is, when known.
    pub user_id: Option<UserId>,
    /// What Revio collected, in minor units, and in which currency.
    pub paid_minor: i64,
    pub paid_currency: String,
    /// A sentence for the operator.
    pub detail: String,
}

/// A case as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub case_id: String,
    pub kind: CaseKind,
    pub status: &'static str,
    pub purchase_id: String,
    pub transaction_id: Option<String>,
    pub user_id: Option<String>,
    /// What Revio collected, as a decimal string in coins (one coin per rand).
    pub paid_amount: String,
    pub paid_currency: String,
    pub detail: String,
    pub opened_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// How a case was closed.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub action: ResolveAction,
    pub reason: String,
    pub resolved_by: String,
    pub resolved_at: String,
    /// The movement that credited the user (`credit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// What an operator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveAction {
    /// Credit what Revio collected to the user's wallet.
    Credit,
    /// Have Revio refund the payer.
    Refund,
}

impl ResolveAction {
    fn as_str(self) -> &'static str {
        match self {
            ResolveAction::Credit => "credit",
            ResolveAction::Refund => "refund",
        }
    }
}

/// `POST /v1/admin/cases/{case_id}/resolve` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveInput {
    pub action: ResolveAction,
    pub reason: String,
}

/// Longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Most open cases one listing answers with, and how many it answers with by default.
pub const MAX_LIST_LIMIT: i32 = 100;

/// Checks that `text` has the shape of a case id: `case_` and 26 lower-case hex digits (see
/// [`case_id`]).
///
/// # Errors
/// 400 `invalid_case_id` for anything else.
pub fn parse_case_id(text: &str) -> Result<&str, ApiError> {
    let hex = text.strip_prefix("case_").unwrap_or_default();
    if hex.len() == 26 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(text)
    } else {
        Err(ApiError::bad_request("invalid_case_id", "a case id is case_ followed by 26 lower-case hex digits"))
    }
}

/// The `limit` of a listing of open cases: absent means [`MAX_LIST_LIMIT`].
///
/// # Errors
/// 400 `invalid_limit` unless it is a whole number (digits only) from 1 to [`MAX_LIST_LIMIT`].
pub fn parse_list_limit(raw: Option<&str>) -> Result<i32, ApiError> {
    let Some(raw) = raw else { return Ok(MAX_LIST_LIMIT) };
    Some(raw)
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|r| r.parse::<i32>().ok())
        .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
        .ok_or_else(|| {
            ApiError::bad_request("invalid_limit", format!("limit must be a whole number from 1 to {MAX_LIST_LIMIT}"))
        })
}

/// The id of the case of `kind` for `purchase_id`.
pub fn case_id(kind: CaseKind, purchase_id: &str) -> String {
    let digest = Sha256::digest(format!("{}#{purchase_id}", kind.as_str()).as_bytes());
    let hex: String = digest.iter().take(13).map(|b| format!("{b:02x}")).collect();
    format!("case_{hex}")
}

fn case_key(id: &str) -> Item {
    key(format!("CASE#{id}"), "CASE")
}

/// Opens a case unless it is open or was resolved already; `true` when this call opened it.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn open(table: &Table, new: &NewCase) -> Result<bool, StoreError> {
    let id = case_id(new.kind, &new.purchase_id);
    let now = now_rfc3339();
    let mut item = case_key(&id);
    item.insert("entity".into(), s("case"));
    item.insert("case_id".into(), s(&id));
    item.insert("kind".into(), s(new.kind.as_str()));
    item.insert("status".into(), s("OPEN"));
    item.insert("purchase_id".into(), s(&new.purchase_id));
    item.insert("paid_minor".into(), n(new.paid_minor));
    item.insert("paid_currency".into(), s(&new.paid_currency));
    item.insert("detail".into(), s(&new.detail));
    item.insert("opened_at".into(), s(&now));
    item.insert("gsi2pk".into(), s(OPEN_PARTITION));
    item.insert("gsi2sk".into(), s(format!("{now}#{id}")));
    if let Some(t) = &new.transaction_id {
        item.insert("transaction_id".into(), s(t.as_str()));
    }
    if let Some(u) = &new.user_id {
        item.insert("user_id".into(), s(u.as_str()));
    }
    let result = table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match result {
        Ok(_) => {
            tracing::error!(case_id = %id, kind = new.kind.as_str(), purchase_id = %new.purchase_id, "case opened: a deposit needs a person");
            crate::metrics::Metric::count("CasesOpened", 1)
                .dimension("Kind", new.kind.as_str())
                .property("case_id", &id)
                .emit();
            Ok(true)
        }
        Err(e) if e.as_service_error().is_some_and(crate::store::is_conditional_failure) => Ok(false),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

fn case_from_item(item: &Item) -> Result<Case, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("case item: {what}"));
    let paid_minor = item.int("paid_minor")?;
    let resolution = match item.opt_str("resolution_action") {
        None => None,
        Some(action) => Some(Resolution {
            action: match action {
                "credit" => ResolveAction::Credit,
                "refund" => ResolveAction::Refund,
                _ => return Err(corrupt("resolution_action")),
            },
            reason: item.str("resolution_reason")?.to_owned(),
            resolved_by: item.str("resolved_by")?.to_owned(),
            resolved_at: item.str("resolved_at")?.to_owned(),
            transaction_id: item.opt_str("resolution_transaction_id").map(str::to_owned),
        }),
    };
    Ok(Case {
        case_id: item.str("case_id")?.to_owned(),
        kind: CaseKind::parse(item.str("kind")?).ok_or_else(|| corrupt("kind"))?,
        status: match item.str("status")? {
            "OPEN" => "OPEN",
            REFUNDING => REFUNDING,
            _ => "RESOLVED",
        },
        purchase_id: item.str("purchase_id")?.to_owned(),
        transaction_id: item.opt_str("transaction_id").map(str::to_owned),
        user_id: item.opt_str("user_id").map(str::to_owned),
        paid_amount: crate::money::format(rust_decimal::Decimal::new(paid_minor, 2), Currency::Coin),
        paid_currency: item.str("paid_currency")?.to_owned(),
        detail: item.opt_str("detail").unwrap_or_default().to_owned(),
        opened_at: item.str("opened_at")?.to_owned(),
        resolution,
    })
}

/// One case.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get(table: &Table, id: &str) -> Result<Option<Case>, StoreError> {
    crate::store::get_item(table, case_key(id)).await?.as_ref().map(case_from_item).transpose()
}

/// The open cases, oldest first, at most `limit`.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn list_open(table: &Table, limit: i32) -> Result<Vec<Case>, StoreError> {
    // The index is eventually consistent: confirm each case from its item.
    let mut cases = Vec::new();
    for item in crate::store::gsi2_partition(table, OPEN_PARTITION, limit).await? {
        if let Some(id) = item.opt_str("case_id") {
            if let Some(case) = get(table, id).await? {
                if case.status != "RESOLVED" {
                    cases.push(case);
                }
            }
        }
    }
    Ok(cases)
}

/// Why a case could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no such case")]
    NotFound,
    #[error("the case is already resolved")]
    AlreadyResolved,
    #[error("a reason of 1 to {MAX_REASON_CHARS} characters is required")]
    ReasonRequired,
    #[error("this case has no user to credit; refund it instead")]
    NotCreditable,
    #[error("Revio does not confirm the refund: the purchase is {0}")]
    RefundNotConfirmed(String),
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("the payment provider refused: {0}")]
    ProviderRefused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::NotFound => ApiError::not_found("no such case"),
            ResolveError::AlreadyResolved => ApiError::conflict("case_already_resolved", e.to_string()),
            ResolveError::ReasonRequired => ApiError::bad_request("reason_required", e.to_string()),
            ResolveError::NotCreditable => ApiError::unprocessable("case_not_creditable", e.to_string()),
            ResolveError::RefundNotConfirmed(_) => ApiError::unprocessable("refund_not_confirmed", e.to_string()),
            ResolveError::ProviderUnavailable(cause) => {
                let mut err = ApiError::unavailable(cause, 30);
                err.code = "payment_provider_unavailable";
                err.message = "the payment provider is unavailable; the case stays open, please retry shortly".into();
                err
            }
            ResolveError::ProviderRefused(cause) => {
                let mut err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_rejected",
                    "the payment provider refused the refund",
                );
                err.cause = Some(cause);
                err
            }
            ResolveError::Store(e) => ApiError::from(e),
        }
    }
}

/// The write that closes an open case, conditioned on it still being open.
fn close(
    table: &Table,
    id: &str,
    from: &str,
    action: ResolveAction,
    reason: &str,
    by: &str,
    movement: Option<&TransactionId>,
) -> Result<TransactWriteItem, StoreError> {
    let mut set = "SET #status = :resolved, resolution_action = :action, resolution_reason = :reason, \
                   resolved_by = :by, resolved_at = :now"
        .to_owned();
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(case_key(id)))
        .condition_expression("#status = :open")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":resolved", s("RESOLVED"))
        .expression_attribute_values(":open", s(from))
        .expression_attribute_values(":action", s(action.as_str()))
        .expression_attribute_values(":reason", s(reason))
        .expression_attribute_values(":by", s(by))
        .expression_attribute_values(":now", s(now_rfc3339()));
    if let Some(m) = movement {
        set.push_str(", resolution_transaction_id = :m");
        update = update.expression_attribute_values(":m", s(m.as_str()));
    }
    let update =
        update.update_expression(format!("{set} REMOVE gsi2pk, gsi2sk")).build().map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Resolves case `id` as `by` (an admin's user id, or `operator:<name>` from `purse-admin`).
///
/// # Errors
/// See [`ResolveError`]; nothing changes unless the whole resolution applies.
pub async fn resolve(
    table: &Table,
    revio: &RevioClient,
    id: &str,
    input: &ResolveInput,
    by: &str,
) -> Result<Case, ResolveError> {
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ResolveError::ReasonRequired);
    }
    let case = get(table, id).await?.ok_or(ResolveError::NotFound)?;
    match (case.status, input.action) {
        ("OPEN", _) | (REFUNDING, ResolveAction::Refund) => {}
        _ => return Err(ResolveError::AlreadyResolved),
    }
    match input.action {
        ResolveAction::Credit => {
            let user =
                case.user_id.as_deref().and_then(|u| UserId::parse(u).ok()).ok_or(ResolveError::NotCreditable)?;
            let amount = Amount::parse(&case.paid_amount, Currency::Coin).map_err(|_| ResolveError::NotCreditable)?;
            let movement_id = TransactionId::derived_from(&format!("{id}#credit"));
            let new = NewTransaction {
                id: movement_id.clone(),
                user_id: user.clone(),
                kind: TransactionType::Deposit,
                amount,
                currency: Currency::Coin,
                debit: Side::System(SystemAccount::RevioClearing),
                credit: Side::Account(AccountId::wallet(&user)),
                description: format!("Deposit of {amount} COIN via Revio, credited by an operator"),
                reference: Some(case.purchase_id.clone()),
            };
            let closing = close(table, id, "OPEN", ResolveAction::Credit, reason, by, Some(&movement_id))?;
            let mut extra = vec![closing];
            // A referred user's first deposit counts for the referral however it was credited;
            // the scheduled relay announces it.
            extra.extend(crate::store::referrals::first_deposit_marker_if_owed(table, &user, &movement_id).await?);
            match ledger::transfer_with(table, &new, extra).await {
                Ok(_) => {}
                Err(LedgerError::Duplicate | LedgerError::ConditionFailed) => {
                    return Err(ResolveError::AlreadyResolved)
                }
                Err(LedgerError::Store(e)) => return Err(e.into()),
                Err(other) => return Err(StoreError::Corrupt(other.to_string()).into()),
            }
        }
        ResolveAction::Refund => {
            // Claim the case for the refund first: from here on it cannot be credited, so a
            // credit and a refund racing each other cannot both happen. A refund that Revio did
            // not confirm leaves the case REFUNDING, to be retried.
            let claimed = table
                .client
                .update_item()
                .table_name(&table.name)
                .set_key(Some(case_key(id)))
                .update_expression("SET #status = :refunding")
                .condition_expression("#status = :open OR #status = :refunding")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":refunding", s(REFUNDING))
                .expression_attribute_values(":open", s("OPEN"))
                .send()
                .await;
            match claimed {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(crate::store::is_conditional_failure) => {
                    return Err(ResolveError::AlreadyResolved)
                }
                Err(e) => return Err(StoreError::dynamo(e).into()),
            }
            let purchase = match revio.refund_purchase(&case.purchase_id).await {
                Ok(p) => p,
                // Refused: perhaps refunded already. Revio's state decides.
                Err(RevioError::Rejected { .. }) => revio.get_purchase(&case.purchase_id).await.map_err(provider)?,
                Err(e) => return Err(provider(e)),
            };
            if purchase.status != PurchaseStatus::Refunded {
                return Err(ResolveError::RefundNotConfirmed(purchase.status.to_string()));
            }
            let closing = close(table, id, REFUNDING, ResolveAction::Refund, reason, by, None)?;
            match crate::store::transact(table, vec![closing]).await {
                Ok(()) => {}
                Err(e) if e.refused_at().is_some() => return Err(ResolveError::AlreadyResolved),
                Err(crate::store::TransactError::Store(e)) => return Err(e.into()),
                Err(crate::store::TransactError::Refused(r)) => {
                    return Err(StoreError::Dynamo(format!("case close refused: {r:?}")).into())
                }
            }
        }
    }
    tracing::warn!(case_id = id, action = input.action.as_str(), resolved_by = by, "case resolved");
    get(table, id).await?.ok_or(ResolveError::NotFound)
}

fn provider(e: RevioError) -> ResolveError {
    match e {
        RevioError::Unavailable(cause) => ResolveError::ProviderUnavailable(cause),
        other => ResolveError::ProviderRefused(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_id_is_what_case_id_makes_and_nothing_else() {
        let id = case_id(CaseKind::PaidAfterFailed, "5b0e3c52-8d0f-4f4e-9c43-1e0a6f1b2d7c");
        assert_eq!(parse_case_id(&id).unwrap(), id);
        let upper = id.to_uppercase().replacen("CASE_", "case_", 1);
        for bad in ["", "case_", "case_0123", &upper, &format!("{id}0"), &id.replacen("case_", "cas_", 1), "txn_x"] {
            assert_eq!(parse_case_id(bad).unwrap_err().code, "invalid_case_id", "{bad:?}");
        }
    }

    #[test]
    fn a_listing_limit_is_a_whole_number_from_1_to_100() {
        assert_eq!(parse_list_limit(None).unwrap(), MAX_LIST_LIMIT);
        assert_eq!(parse_list_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_list_limit(Some("100")).unwrap(), 100);
        for bad in ["", "0", "101", "-1", "+5", " 5", "5.0", "ten", "99999999999"] {
            assert_eq!(parse_list_limit(Some(bad)).unwrap_err().code, "invalid_limit", "{bad:?}");
        }
    }
}
