//! Settling deposits from Revio's truth.
//!
//! A webhook only says "look at purchase X". Settlement asks Revio's API for the purchase and
//! acts on what it says: `paid` posts the deposit (PENDING → COMPLETED and the credit, one
//! write, exactly once), a failed/cancelled/expired purchase fails it, a refund or chargeback
//! reverses a credited deposit, money that cannot be credited opens a case, anything else
//! waits.
//! The webhook consumer and the reconciler both call [`settle_purchase`].

use crate::domain::ids::TransactionId;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{Transaction, TransactionStatus, TransactionType};
use crate::revio::{PurchaseStatus, RevioClient, RevioError};
use crate::service::cases::{self, CaseKind, NewCase};
use crate::service::referrals::RewardsRelay;
use crate::store::referrals;
use crate::store::{StoreError, Table};
use aws_sdk_dynamodb::types::AttributeValue;

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
    /// No deposit of ours belongs to the purchase (a case is open if it was paid).
    NoDeposit,
    /// The purchase's amount or currency differs from the deposit's: nothing credited, the
    /// deposit FAILED with `amount_mismatch`, a case open if money was collected.
    AmountMismatch(TransactionId),
    /// Revio says paid, but the deposit was already FAILED: nothing credited, a case open.
    PaidAfterFailed(TransactionId),
    /// Revio took the payment back (refund, chargeback) and the credited deposit was reversed now.
    Reversed(TransactionId),
    /// ... it had been reversed before.
    AlreadyReversed(TransactionId),
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
            Outcome::Reversed(_) => "REVERSED",
            Outcome::AlreadyReversed(_) => "ALREADY_REVERSED",
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
            | Outcome::PaidAfterFailed(t)
            | Outcome::Reversed(t)
            | Outcome::AlreadyReversed(t) => Some(t),
            _ => None,
        }
    }
}

/// Posts a PENDING deposit; when it is its user's first deposit and the user was referred, the
/// referral's outbox marker is written in the same transaction as the credit
/// ([`referrals::first_deposit_marker`]). Returns whether the marker was written.
async fn credit_deposit(table: &Table, tx: &Transaction) -> Result<(ledger::Settled, bool), LedgerError> {
    let marker = if tx.status == TransactionStatus::Pending {
        referrals::first_deposit_marker_if_owed(table, &tx.user_id, &tx.id).await?
    } else {
        None
    };
    let referred = marker.is_some();
    let settled = ledger::post_loaded(table, tx.clone(), move |_| marker.into_iter().collect()).await?;
    Ok((settled, referred))
}

/// A failure worth retrying later (Revio or DynamoDB unavailable, write conflicts).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryLater(pub String);

fn later(e: impl std::fmt::Display) -> RetryLater {
    RetryLater(e.to_string())
}

/// Confirms purchase `purchase_id` with Revio and applies it to its deposit exactly once.
///
/// Revio's state decides: `paid` credits, a failed/cancelled/expired purchase fails the
/// deposit, a refund or chargeback of a credited deposit reverses it
/// ([`ledger::reverse_deposit`]), and money collected where the ledger cannot take it (paid
/// after we failed the deposit, a different amount, a purchase no deposit belongs to) opens a
/// case for an operator ([`cases`]).
///
/// # Errors
/// [`RetryLater`] when Revio or storage failed; calling again is safe.
pub async fn settle_purchase(table: &Table, revio: &RevioClient, purchase_id: &str) -> Result<Outcome, RetryLater> {
    settle_purchase_with(table, revio, None, purchase_id).await
}

/// [`settle_purchase`], announcing on `relay` a credit that was a referred user's first deposit
/// (the announcement is also recorded, in the credit's own write, for the scheduled relay).
///
/// # Errors
/// As [`settle_purchase`].
pub async fn settle_purchase_with(
    table: &Table,
    revio: &RevioClient,
    relay: Option<&RewardsRelay>,
    purchase_id: &str,
) -> Result<Outcome, RetryLater> {
    let purchase = match revio.get_purchase(purchase_id).await {
        Ok(p) => p,
        Err(RevioError::NotFound) => return Ok(Outcome::UnknownPurchase),
        Err(e) => return Err(RetryLater(format!("Revio: {e}"))),
    };
    let collected = matches!(purchase.status, PurchaseStatus::Paid);
    let case = |kind: CaseKind, tx: Option<&Transaction>, detail: String| NewCase {
        kind,
        purchase_id: purchase.id.clone(),
        transaction_id: tx.map(|t| t.id.clone()),
        user_id: tx.map(|t| t.user_id.clone()),
        paid_minor: purchase.total_minor,
        paid_currency: purchase.currency.clone(),
        detail,
    };
    // The purchase carries our id as its reference, as we created it; the movement's own record
    // of its purchase is checked below. Only a purchase without a usable reference needs the
    // reference claim (`REF#revio#<purchase id>`) to find its deposit.
    let id = match purchase.reference.as_deref().and_then(|r| TransactionId::parse(r).ok()) {
        Some(id) => Some(id),
        None => ledger::transaction_by_reference(table, "revio", &purchase.id).await.map_err(later)?,
    };
    let tx = match &id {
        Some(id) => ledger::get_transaction(table, id).await.map_err(later)?,
        None => None,
    };
    let Some(tx) = tx.filter(|t| t.kind == TransactionType::Deposit) else {
        if collected {
            let detail = "Revio collected money for a purchase no deposit of ours belongs to".to_owned();
            cases::open(table, &case(CaseKind::UnknownPurchasePaid, None, detail)).await.map_err(later)?;
        }
        return Ok(Outcome::NoDeposit);
    };
    if tx.reference.as_deref().is_some_and(|r| r != purchase.id) {
        // A second purchase naming our deposit (e.g. created by a retried request whose first
        // purchase is the one attached): the money is this user's, but not this deposit's.
        if collected {
            let detail = format!("Revio collected money for a second purchase naming deposit {}", tx.id);
            cases::open(table, &case(CaseKind::UnknownPurchasePaid, Some(&tx), detail)).await.map_err(later)?;
        }
        return Ok(Outcome::NoDeposit);
    }
    let id = tx.id.clone();
    let expected_minor = tx.amount.minor_units(tx.currency);
    if purchase.total_minor != expected_minor || !purchase.currency.eq_ignore_ascii_case("ZAR") {
        tracing::error!(
            transaction_id = %id, purchase_id = %purchase.id, expected_minor, got_minor = purchase.total_minor,
            "purchase amount differs from the deposit; not crediting"
        );
        if tx.status == TransactionStatus::Pending {
            apply(ledger::fail(table, &id, "amount_mismatch").await)?;
        }
        if collected && tx.status != TransactionStatus::Completed {
            let detail = format!(
                "Revio collected {} {} for a deposit of {} minor units",
                purchase.total_minor, purchase.currency, expected_minor
            );
            cases::open(table, &case(CaseKind::AmountMismatch, Some(&tx), detail)).await.map_err(later)?;
        }
        return Ok(Outcome::AmountMismatch(id));
    }
    match purchase.status {
        PurchaseStatus::Paid => match credit_deposit(table, &tx).await {
            Ok((s, referred)) if s.changed => {
                tracing::info!(transaction_id = %id, purchase_id = %purchase.id, "deposit credited");
                let (value, txn) = (tx.amount.value(), id.as_str());
                crate::metrics::counted_with_coins(
                    "DepositsCredited",
                    1,
                    "DepositCoinsCredited",
                    value,
                    "transaction_id",
                    txn,
                );
                if let (true, Some(relay)) = (referred, relay) {
                    relay.notify(&tx.user_id).await;
                }
                Ok(Outcome::Credited(id))
            }
            Ok(_) => Ok(Outcome::AlreadyCredited(id)),
            Err(LedgerError::AlreadyFinal(TransactionStatus::Failed)) => {
                tracing::error!(transaction_id = %id, purchase_id = %purchase.id, "Revio says paid but the deposit is FAILED; case opened");
                let detail = format!(
                    "Revio reports purchase paid after deposit {} failed ({})",
                    id,
                    tx.failure_reason.as_deref().unwrap_or("no reason")
                );
                cases::open(table, &case(CaseKind::PaidAfterFailed, Some(&tx), detail)).await.map_err(later)?;
                Ok(Outcome::PaidAfterFailed(id))
            }
            Err(e) => Err(later(e)),
        },
        PurchaseStatus::Error | PurchaseStatus::Cancelled | PurchaseStatus::Expired => {
            // Only reconciliation cancels a purchase, when it stayed unpaid past its age: expired.
            let reason = if purchase.status == PurchaseStatus::Error { "payment_failed" } else { "expired" };
            match ledger::fail(table, &id, reason).await {
                Ok(s) if s.changed => Ok(Outcome::Failed(id)),
                Ok(_) => Ok(Outcome::AlreadyFailed(id)),
                Err(LedgerError::AlreadyFinal(TransactionStatus::Completed)) => Ok(Outcome::AlreadyCredited(id)),
                Err(e) => Err(later(e)),
            }
        }
        PurchaseStatus::Refunded | PurchaseStatus::Chargeback => {
            let reason = if purchase.status == PurchaseStatus::Refunded { "refunded" } else { "chargeback" };
            match tx.status {
                TransactionStatus::Completed => reverse(table, &id, id.clone(), reason).await,
                // Never credited: paid and taken back before we saw it paid.
                TransactionStatus::Pending => match ledger::fail(table, &id, "payment_reversed").await {
                    Ok(s) if s.changed => Ok(Outcome::Failed(id)),
                    Ok(_) => Ok(Outcome::AlreadyFailed(id)),
                    Err(LedgerError::AlreadyFinal(TransactionStatus::Completed)) => {
                        Err(RetryLater("deposit was credited meanwhile; reversing on the next attempt".into()))
                    }
                    Err(e) => Err(later(e)),
                },
                // Never credited as a deposit, but an operator may have credited it through a
                // case: then that credit is what Revio took back.
                TransactionStatus::Failed => match case_credit(table, &purchase.id).await.map_err(later)? {
                    Some(credit) => reverse(table, &credit, id, reason).await,
                    None => Ok(Outcome::AlreadyFailed(id)),
                },
            }
        }
        _ => Ok(Outcome::NotFinal(id)),
    }
}

/// Reverses the credited movement `credited` (the deposit itself, or an operator's credit of
/// it), reporting the outcome for deposit `id` and counting the metrics.
async fn reverse(
    table: &Table,
    credited: &TransactionId,
    id: TransactionId,
    reason: &str,
) -> Result<Outcome, RetryLater> {
    match ledger::reverse_deposit(table, credited, reason).await {
        Ok(r) if r.changed => {
            crate::metrics::count("DepositsReversed", 1);
            if r.shortfall > rust_decimal::Decimal::ZERO {
                crate::metrics::count("ReversalShortfalls", 1);
            }
            Ok(Outcome::Reversed(id))
        }
        Ok(_) => Ok(Outcome::AlreadyReversed(id)),
        Err(e) => Err(later(e)),
    }
}

/// The movement an operator credited for `purchase_id` when resolving its case, if any.
async fn case_credit(table: &Table, purchase_id: &str) -> Result<Option<TransactionId>, StoreError> {
    for kind in [CaseKind::PaidAfterFailed, CaseKind::AmountMismatch] {
        if let Some(case) = cases::get(table, &cases::case_id(kind, purchase_id)).await? {
            let credited = case.resolution.and_then(|r| r.transaction_id).and_then(|t| TransactionId::parse(&t).ok());
            if credited.is_some() {
                return Ok(credited);
            }
        }
    }
    Ok(None)
}

fn apply(r: Result<ledger::Settled, LedgerError>) -> Result<(), RetryLater> {
    match r {
        Ok(_) | Err(LedgerError::AlreadyFinal(_)) => Ok(()),
        Err(e) => Err(later(e)),
    }
}

/// How reconciliation runs (from the function's configuration).
#[derive(Debug, Clone, Copy)]
pub struct ReconcileConfig {
    /// Deposits younger than this are left to their webhooks.
    pub min_age_seconds: i64,
    /// A deposit that never got a Revio purchase (creation died midway) is failed after this.
    pub abandon_after_seconds: i64,
    /// A deposit Revio still reports unpaid after this is cancelled at Revio and failed `expired`.
    pub expire_after_seconds: i64,
    /// How long one run may work; it then saves where it stopped and the next run resumes there.
    pub budget: std::time::Duration,
}

/// What a reconciliation pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReconcileReport {
    pub examined: usize,
    pub credited: usize,
    pub failed: usize,
    /// Unpaid deposits past their age, cancelled at Revio and failed `expired`.
    pub expired: usize,
    pub still_pending: usize,
    /// Deposits that never got a Revio purchase (creation died midway) and were failed.
    pub abandoned: usize,
    pub needs_review: usize,
    pub errors: usize,
    /// Restricted wallets whose shortfall was (partly) covered by later credits.
    pub shortfalls_recovered: usize,
    /// The shard and position this run started from.
    pub started_at_shard: u32,
    /// How many index shards were walked to their end (one more when the run resumed inside a
    /// shard: that shard's head, before the saved position, is walked last).
    pub shards_completed: u32,
    /// `true` when every shard was walked within the budget; `false` when the run stopped at its
    /// budget and saved its position for the next run.
    pub complete: bool,
}

impl ReconcileReport {
    /// Deposits the run settled or escalated that the webhooks had not.
    pub fn findings(&self) -> usize {
        self.credited + self.failed + self.expired + self.abandoned + self.needs_review
    }
}

fn cursor_key() -> crate::store::item::Item {
    crate::store::item::key("RECONCILE#DEPOSITS", "CURSOR")
}

/// Where the last run stopped: the shard, and the index position within it.
async fn load_cursor(table: &Table) -> Result<(u32, Option<crate::store::item::Item>), StoreError> {
    use crate::store::item::ItemExt;
    let Some(item) = crate::store::get_item(table, cursor_key()).await? else { return Ok((0, None)) };
    let shard = u32::try_from(item.int("shard")?).unwrap_or(0) % ledger::PENDING_INDEX_SHARDS;
    let start = match item.get("start_key") {
        Some(AttributeValue::M(m)) => Some(m.clone()),
        _ => None,
    };
    Ok((shard, start))
}

async fn save_cursor(table: &Table, shard: u32, start: Option<crate::store::item::Item>) -> Result<(), StoreError> {
    use crate::store::item::{n, s};
    let mut item = cursor_key();
    item.insert("shard".into(), n(shard));
    item.insert("updated_at".into(), s(crate::store::now_rfc3339()));
    if let Some(start) = start {
        item.insert("start_key".into(), AttributeValue::M(start));
    }
    table.client.put_item().table_name(&table.name).set_item(Some(item)).send().await.map_err(StoreError::dynamo)?;
    Ok(())
}

/// The index position of an item of the PENDING index, to resume after it.
fn position_of(item: &crate::store::item::Item) -> crate::store::item::Item {
    ["pk", "sk", "gsi2pk", "gsi2sk"]
        .into_iter()
        .filter_map(|k| item.get(k).map(|v| (k.to_owned(), v.clone())))
        .collect()
}

/// Settles PENDING deposits older than `config.min_age_seconds` by asking Revio — the safety
/// net for lost webhooks — and expires those Revio still reports unpaid after
/// `config.expire_after_seconds`. Works within `config.budget`: it starts where the previous
/// run stopped, walks the index shards round-robin, and saves its position when the budget is
/// spent, so that every shard is reached however many deposits are pending. Then it covers
/// restricted wallets' shortfalls from later credits. Reports findings and errors as metrics.
///
/// # Errors
/// Only when the index or the saved position cannot be read at all; per-deposit failures are
/// counted and left for the next pass.
pub async fn reconcile_pending_deposits(
    table: &Table,
    revio: &RevioClient,
    config: ReconcileConfig,
) -> Result<ReconcileReport, StoreError> {
    use crate::store::item::s;
    let started = std::time::Instant::now();
    let out_of_time = || started.elapsed() >= config.budget;
    let mut report = ReconcileReport::default();
    let now = chrono::Utc::now();
    let cutoff =
        (now - chrono::Duration::seconds(config.min_age_seconds)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (mut shard, mut start) = load_cursor(table).await?;
    report.started_at_shard = shard;
    // Resumed inside a shard: its head (before the saved position) is walked last, so that a
    // complete run has seen every pending deposit once.
    let resumed_at = start.as_ref().and_then(|k| k.get("gsi2sk")).and_then(|v| v.as_s().ok()).cloned();
    let target = ledger::PENDING_INDEX_SHARDS + u32::from(resumed_at.is_some());
    'shards: while report.shards_completed < target {
        let upper = match &resumed_at {
            // Up to and including the saved position (`~` sorts after every character of an
            // index key), so that the complete run has examined that deposit too.
            Some(at) if report.shards_completed == ledger::PENDING_INDEX_SHARDS => {
                format!("{at}~").min(format!("{cutoff}#"))
            }
            _ => format!("{cutoff}#"),
        };
        loop {
            if out_of_time() {
                break 'shards;
            }
            let page = table
                .client
                .query()
                .table_name(&table.name)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :pk AND gsi2sk < :cutoff")
                .expression_attribute_values(":pk", s(ledger::pending_partition_shard(TransactionType::Deposit, shard)))
                .expression_attribute_values(":cutoff", s(&upper))
                .set_exclusive_start_key(start.clone())
                .limit(25)
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let e = StoreError::dynamo(e);
                    tracing::warn!(shard, error = %e, "reconciliation could not read the index; resuming next run");
                    report.errors += 1;
                    break 'shards;
                }
            };
            for item in page.items() {
                if out_of_time() {
                    break 'shards;
                }
                reconcile_one(table, revio, &config, item, now, &mut report).await;
                start = Some(position_of(item));
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        report.shards_completed += 1;
        shard = (shard + 1) % ledger::PENDING_INDEX_SHARDS;
        start = None;
    }
    report.complete = report.shards_completed >= target;
    if let Err(e) = save_cursor(table, shard, start).await {
        tracing::warn!(error = %e, "reconciliation could not save its position; the next run starts over");
        report.errors += 1;
    }
    if !out_of_time() {
        recover_shortfalls(table, &mut report).await;
    }
    crate::metrics::count("ReconcileFindings", report.findings() as u64);
    crate::metrics::count("ReconcileErrors", report.errors as u64);
    tracing::info!(?report, "reconciliation pass finished");
    Ok(report)
}

async fn reconcile_one(
    table: &Table,
    revio: &RevioClient,
    config: &ReconcileConfig,
    item: &crate::store::item::Item,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut ReconcileReport,
) {
    report.examined += 1;
    let Ok(tx) = ledger::transaction_from_item(item) else {
        report.errors += 1;
        return;
    };
    let age = chrono::DateTime::parse_from_rfc3339(&tx.created_at)
        .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0);
    let Some(purchase_id) = tx.reference.clone() else {
        if age >= config.abandon_after_seconds {
            match ledger::fail(table, &tx.id, "never_reached_provider").await {
                Ok(_) | Err(LedgerError::AlreadyFinal(_)) => report.abandoned += 1,
                Err(_) => report.errors += 1,
            }
        } else {
            report.still_pending += 1;
        }
        return;
    };
    let mut outcome = settle_purchase(table, revio, &purchase_id).await;
    if matches!(outcome, Ok(Outcome::NotFinal(_))) && age >= config.expire_after_seconds {
        // Still unpaid long after: make sure it can no longer be paid, then fail it.
        outcome = match revio.cancel_purchase(&purchase_id).await {
            // Cancelled by us because it expired: that is the reason the person sees.
            Ok(p) if matches!(p.status, PurchaseStatus::Cancelled | PurchaseStatus::Expired) => {
                match ledger::fail(table, &tx.id, "expired").await {
                    Ok(_) => Ok(Outcome::Failed(tx.id.clone())),
                    Err(LedgerError::AlreadyFinal(_)) => settle_purchase(table, revio, &purchase_id).await,
                    Err(e) => Err(later(e)),
                }
            }
            // Refused (paid meanwhile, say) or something else: Revio's state decides.
            Ok(_) | Err(RevioError::Rejected { .. }) => settle_purchase(table, revio, &purchase_id).await,
            Err(e) => Err(RetryLater(format!("Revio cancel: {e}"))),
        };
        if matches!(outcome, Ok(Outcome::Failed(_))) {
            report.expired += 1;
            return;
        }
    }
    match outcome {
        Ok(Outcome::Credited(_)) => report.credited += 1,
        Ok(Outcome::Failed(_)) => report.failed += 1,
        Ok(Outcome::NotFinal(_)) => report.still_pending += 1,
        Ok(
            Outcome::AmountMismatch(_) | Outcome::PaidAfterFailed(_) | Outcome::NoDeposit | Outcome::UnknownPurchase,
        ) => {
            report.needs_review += 1;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(transaction_id = %tx.id, error = %e, "reconciliation could not settle a deposit");
            report.errors += 1;
        }
    }
}

async fn recover_shortfalls(table: &Table, report: &mut ReconcileReport) {
    let wallets = match ledger::restricted_wallets(table, 100).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "could not list restricted wallets");
            report.errors += 1;
            return;
        }
    };
    for user in wallets {
        match ledger::recover_shortfall(table, &user).await {
            Ok(r) if r.recovered > rust_decimal::Decimal::ZERO => report.shortfalls_recovered += 1,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "could not recover a shortfall");
                report.errors += 1;
            }
        }
    }
}
