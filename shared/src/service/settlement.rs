//! Settling deposits from Revio's truth.
//!
//! A webhook only says "look at purchase X". Settlement asks Revio's API for the purchase and
//! acts on what it says: `paid` posts the deposit (PENDING → COMPLETED and the credit, one
//! write, exactly once), a failed/cancelled/expired purchase fails it, anything else waits.
//! The webhook consumer and the reconciler both call [`settle_purchase`].

use crate::domain::ids::TransactionId;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{TransactionStatus, TransactionType};
use crate::revio::{PurchaseStatus, RevioClient, RevioError};
use crate::store::Table;

/// What settling a purchase did. Every variant is final for that event except
/// [`Outcome::NotFinal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The deposit was credited now.
    Credited(TransactionId),
    /// It had been credited before (a duplicate or retried event).
    AlreadyCredited(TransactionId),
    /// The payment failed and the deposit is now FAILED.
    Failed(TransactionId),
    /// It had failed before.
    AlreadyFailed(TransactionId),
    /// Revio has not reached a final state for the purchase yet.
    NotFinal(TransactionId),
    /// Revio does not know the purchase.
    UnknownPurchase,
    /// No deposit of ours belongs to the purchase.
    NoDeposit,
    /// The purchase's amount or currency differs from the deposit's: nothing credited, the
    /// deposit FAILED with `amount_mismatch`, for an operator to resolve.
    AmountMismatch(TransactionId),
    /// Revio says paid, but the deposit was already FAILED: nothing credited, for an operator.
    PaidAfterFailed(TransactionId),
}

impl Outcome {
    /// A short stable name for the webhook log.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Credited(_) => "APPLIED",
            Outcome::AlreadyCredited(_) => "ALREADY_APPLIED",
            Outcome::Failed(_) => "DEPOSIT_FAILED",
            Outcome::AlreadyFailed(_) => "ALREADY_FAILED",
            Outcome::NotFinal(_) => "NOT_FINAL",
            Outcome::UnknownPurchase => "UNKNOWN_PURCHASE",
            Outcome::NoDeposit => "NO_DEPOSIT",
            Outcome::AmountMismatch(_) => "AMOUNT_MISMATCH",
            Outcome::PaidAfterFailed(_) => "NEEDS_REVIEW",
        }
    }

    /// The deposit concerned, when there is one.
    pub fn transaction_id(&self) -> Option<&TransactionId> {
        match self {
            Outcome::Credited(t)
            | Outcome::AlreadyCredited(t)
            | Outcome::Failed(t)
            | Outcome::AlreadyFailed(t)
            | Outcome::NotFinal(t)
            | Outcome::AmountMismatch(t)
            | Outcome::PaidAfterFailed(t) => Some(t),
            _ => None,
        }
    }
}

/// A failure worth retrying later (Revio or DynamoDB unavailable, write conflicts).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryLater(pub String);

/// Confirms purchase `purchase_id` with Revio and applies it to its deposit exactly once.
///
/// # Errors
/// [`RetryLater`] when Revio or storage failed; calling again is safe.
pub async fn settle_purchase(table: &Table, revio: &RevioClient, purchase_id: &str) -> Result<Outcome, RetryLater> {
    let purchase = match revio.get_purchase(purchase_id).await {
        Ok(p) => p,
        Err(RevioError::NotFound) => return Ok(Outcome::UnknownPurchase),
        Err(e) => return Err(RetryLater(format!("Revio: {e}"))),
    };
    let by_reference =
        ledger::transaction_by_reference(table, "revio", &purchase.id).await.map_err(|e| RetryLater(e.to_string()))?;
    // The purchase carries our id as its reference; use it if the reference claim was never written.
    let id = match by_reference.or_else(|| purchase.reference.as_deref().and_then(|r| TransactionId::parse(r).ok())) {
        Some(id) => id,
        None => return Ok(Outcome::NoDeposit),
    };
    let Some(tx) = ledger::get_transaction(table, &id).await.map_err(|e| RetryLater(e.to_string()))? else {
        return Ok(Outcome::NoDeposit);
    };
    if tx.kind != TransactionType::Deposit || tx.reference.as_deref().is_some_and(|r| r != purchase.id) {
        return Ok(Outcome::NoDeposit);
    }
    let expected_minor = tx.amount.minor_units(tx.currency);
    if purchase.total_minor != expected_minor || !purchase.currency.eq_ignore_ascii_case("ZAR") {
        tracing::error!(
            transaction_id = %id, purchase_id = %purchase.id, expected_minor, got_minor = purchase.total_minor,
            "purchase amount differs from the deposit; not crediting"
        );
        if tx.status == TransactionStatus::Pending {
            apply(ledger::fail(table, &id, "amount_mismatch").await)?;
        }
        return Ok(Outcome::AmountMismatch(id));
    }
    match purchase.status {
        PurchaseStatus::Paid => match ledger::post(table, &id).await {
            Ok(s) if s.changed => {
                tracing::info!(transaction_id = %id, purchase_id = %purchase.id, "deposit credited");
                Ok(Outcome::Credited(id))
            }
            Ok(_) => Ok(Outcome::AlreadyCredited(id)),
            Err(LedgerError::AlreadyFinal(TransactionStatus::Failed)) => {
                tracing::error!(transaction_id = %id, purchase_id = %purchase.id, "Revio says paid but the deposit is FAILED; needs review");
                Ok(Outcome::PaidAfterFailed(id))
            }
            Err(e) => Err(RetryLater(e.to_string())),
        },
        PurchaseStatus::Error | PurchaseStatus::Cancelled | PurchaseStatus::Expired => {
            match ledger::fail(table, &id, "payment_failed").await {
                Ok(s) if s.changed => Ok(Outcome::Failed(id)),
                Ok(_) => Ok(Outcome::AlreadyFailed(id)),
                Err(LedgerError::AlreadyFinal(TransactionStatus::Completed)) => Ok(Outcome::AlreadyCredited(id)),
                Err(e) => Err(RetryLater(e.to_string())),
            }
        }
        _ => Ok(Outcome::NotFinal(id)),
    }
}

fn apply(r: Result<ledger::Settled, LedgerError>) -> Result<(), RetryLater> {
    match r {
        Ok(_) | Err(LedgerError::AlreadyFinal(_)) => Ok(()),
        Err(e) => Err(RetryLater(e.to_string())),
    }
}

/// What a reconciliation pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReconcileReport {
    pub examined: usize,
    pub credited: usize,
    pub failed: usize,
    pub still_pending: usize,
    /// Deposits that never got a Revio purchase (creation died midway) and were failed.
    pub abandoned: usize,
    pub needs_review: usize,
    pub errors: usize,
}

/// Settles every PENDING deposit older than `min_age_seconds` by asking Revio — the safety net
/// for lost webhooks. Deposits that never reached Revio are failed after `abandon_after_seconds`.
///
/// # Errors
/// Only when the index cannot be read; per-deposit failures are counted and left for the next pass.
pub async fn reconcile_pending_deposits(
    table: &Table,
    revio: &RevioClient,
    min_age_seconds: i64,
    abandon_after_seconds: i64,
) -> Result<ReconcileReport, crate::store::StoreError> {
    use crate::store::item::{s, ItemExt};
    let mut report = ReconcileReport::default();
    let now = chrono::Utc::now();
    let cutoff =
        (now - chrono::Duration::seconds(min_age_seconds)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for shard in 0..ledger::PENDING_INDEX_SHARDS {
        let mut start = None;
        loop {
            let page = table
                .client
                .query()
                .table_name(&table.name)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :pk AND gsi2sk < :cutoff")
                .expression_attribute_values(":pk", s(ledger::pending_partition_shard(TransactionType::Deposit, shard)))
                .expression_attribute_values(":cutoff", s(format!("{cutoff}#")))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(crate::store::StoreError::dynamo)?;
            for item in page.items() {
                report.examined += 1;
                let Ok(tx) = ledger::transaction_from_item(item) else {
                    report.errors += 1;
                    continue;
                };
                let Some(purchase_id) = tx.reference.clone().or_else(|| item.opt_str("reference").map(str::to_owned))
                else {
                    let age = chrono::DateTime::parse_from_rfc3339(&tx.created_at)
                        .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds())
                        .unwrap_or(0);
                    if age >= abandon_after_seconds {
                        match ledger::fail(table, &tx.id, "never_reached_provider").await {
                            Ok(_) => report.abandoned += 1,
                            Err(_) => report.errors += 1,
                        }
                    } else {
                        report.still_pending += 1;
                    }
                    continue;
                };
                match settle_purchase(table, revio, &purchase_id).await {
                    Ok(Outcome::Credited(_)) => report.credited += 1,
                    Ok(Outcome::Failed(_)) => report.failed += 1,
                    Ok(Outcome::NotFinal(_)) => report.still_pending += 1,
                    Ok(
                        Outcome::AmountMismatch(_)
                        | Outcome::PaidAfterFailed(_)
                        | Outcome::NoDeposit
                        | Outcome::UnknownPurchase,
                    ) => report.needs_review += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(transaction_id = %tx.id, error = %e, "reconciliation could not settle a deposit");
                        report.errors += 1;
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
    }
    tracing::info!(?report, "reconciliation pass finished");
    Ok(report)
}
