//! The webhook log: every delivery we receive, verified or not, with what became of it.
//!
//! | pk                                   | sk        | what                                   |
//! |--------------------------------------|-----------|----------------------------------------|
//! | `WEBHOOK#<delivery_id>`              | `WEBHOOK` | one delivery: hash, size, verification, outcome |
//!
//! An event's **first** verified delivery is logged under an id derived from the provider and
//! the event ([`first_delivery_id`]), written only if absent ([`record_first`]): that one write
//! is both the delivery's log entry and the event's de-duplication claim, and the consumer
//! records the event's outcome on it. Later deliveries of the same event are logged under ids
//! of their own: `DUPLICATE`, or `REQUEUED` when the first was never queued (its queueing
//! failed, or it is still unprocessed [`REQUEUE_AFTER_SECONDS`] after it arrived).
//!
//! Bodies are never stored, only their SHA-256 and size. What a body says is trusted only once
//! its signature verified, and the log is laid out so that an unauthenticated sender cannot
//! steer or swamp it:
//!
//! - **Verified** deliveries are kept [`RETENTION_SECONDS`] (90 days). One whose body names a
//!   transaction (its `reference`, our id as we gave it to the provider) is indexed under
//!   `gsi1pk = TXN#<transaction_id>#WEBHOOKS`, which is what an operator lists
//!   ([`for_transaction`]); others under `WEBHOOKS#UNLINKED#<date>`. Only the provider can
//!   produce these, so their volume is the provider's own traffic for our brand.
//! - **Rejected** deliveries (signature missing or invalid, or refused before verification, such
//!   as too large) are kept only [`REJECTED_RETENTION_SECONDS`] (7 days) and are **indexed
//!   nowhere**: no `gsi1pk`, so a flood of forgeries writes one small base-table item each
//!   (bounded in size, gone within a week) and cannot reach a transaction's list or any shared
//!   index partition. What the unverified body claimed is kept for forensics as plain, truncated
//!   attributes (`claimed_reference`, `event_type`, `provider_reference`), never as a link. Find
//!   a rejected delivery by its `delivery_id` from the log line every delivery writes.

use super::item::{key, n, s, Item, ItemExt};
use super::{is_conditional_failure, now_epoch, now_rfc3339, StoreError, Table};
use crate::domain::ids::TransactionId;
use serde::Serialize;

/// How long de-duplication records and verified deliveries are kept (Revio retries for up to
/// 36 h).
pub const RETENTION_SECONDS: i64 = 90 * 24 * 3600;

/// How long a rejected (unverified) delivery is kept: long enough to investigate a forgery
/// campaign, short enough that a flood cannot pile up storage.
pub const REJECTED_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// Longest unverified `reference` claim kept (ours are 30 characters).
const MAX_CLAIMED_REFERENCE_CHARS: usize = 64;

/// What signature verification concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verification {
    Valid,
    Invalid,
    Missing,
    /// Signed, but with a timestamp outside the accepted window (a replay, or a clock far off).
    Stale,
    /// Not checked (the body was refused before verification, e.g. too large).
    NotChecked,
}

impl Verification {
    fn as_str(self) -> &'static str {
        match self {
            Verification::Valid => "VALID",
            Verification::Invalid => "INVALID",
            Verification::Missing => "MISSING",
            Verification::Stale => "STALE",
            Verification::NotChecked => "NOT_CHECKED",
        }
    }
}

/// One received delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub provider: &'static str,
    pub body_sha256: String,
    pub body_size: usize,
    pub verification: Verification,
    /// What the body says its event type is (a claim until verified).
    pub event_type: Option<String>,
    /// What the body says the provider's id is (a claim until verified).
    pub provider_reference: Option<String>,
    /// What the body says its `reference` is: our transaction id, as we gave it to the provider.
    /// Links the delivery to that transaction only when verified ([`Delivery::linked_transaction`]).
    pub reference: Option<String>,
    /// First processing status (`QUEUED`, `REJECTED_SIGNATURE`, `MALFORMED`, `TOO_LARGE`, `DUPLICATE`).
    pub outcome: String,
    pub detail: Option<String>,
}

impl Delivery {
    /// A new delivery id.
    pub fn new_id() -> String {
        format!("whd_{}", ulid::Ulid::new())
    }

    /// The transaction this delivery is logged under: the body's `reference`, and only when the
    /// signature verified. An unverified body names nothing.
    pub fn linked_transaction(&self) -> Option<TransactionId> {
        if self.verification != Verification::Valid {
            return None;
        }
        self.reference.as_deref().and_then(|r| TransactionId::parse(r).ok())
    }
}

/// A logged delivery, as listed to operators.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub delivery_id: String,
    pub provider: String,
    pub received_at: String,
    pub body_sha256: String,
    pub body_size: i64,
    pub verification: String,
    pub event_type: Option<String>,
    pub provider_reference: Option<String>,
    pub transaction_id: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub updated_at: String,
}

fn delivery_key(id: &str) -> Item {
    key(format!("WEBHOOK#{id}"), "WEBHOOK")
}

/// A delivery's log item: indexed and kept 90 days when verified, unindexed and kept 7 days
/// when not (see the module documentation).
fn delivery_item(d: &Delivery) -> Item {
    let now = now_rfc3339();
    let verified = d.verification == Verification::Valid;
    let retention = if verified { RETENTION_SECONDS } else { REJECTED_RETENTION_SECONDS };
    let mut item = delivery_key(&d.id);
    item.insert("entity".into(), s("webhook_delivery"));
    item.insert("delivery_id".into(), s(&d.id));
    item.insert("provider".into(), s(d.provider));
    item.insert("received_at".into(), s(&now));
    item.insert("updated_at".into(), s(&now));
    item.insert("body_sha256".into(), s(&d.body_sha256));
    item.insert("body_size".into(), n(d.body_size));
    item.insert("verification".into(), s(d.verification.as_str()));
    item.insert("outcome".into(), s(&d.outcome));
    item.insert("expires_at".into(), n(now_epoch() + retention));
    if let Some(v) = &d.event_type {
        item.insert("event_type".into(), s(truncate(v, 100)));
    }
    if let Some(v) = &d.provider_reference {
        item.insert("provider_reference".into(), s(truncate(v, 200)));
    }
    if let Some(v) = &d.detail {
        item.insert("detail".into(), s(truncate(v, 500)));
    }
    if verified {
        match d.linked_transaction() {
            Some(t) => {
                item.insert("transaction_id".into(), s(t.as_str()));
                item.insert("gsi1pk".into(), s(format!("TXN#{t}#WEBHOOKS")));
            }
            None => {
                item.insert("gsi1pk".into(), s(format!("WEBHOOKS#UNLINKED#{}", &now[..10])));
            }
        }
        item.insert("gsi1sk".into(), s(format!("{now}#{}", d.id)));
    } else if let Some(claim) = &d.reference {
        // For forensics only: not a link, not indexed.
        item.insert("claimed_reference".into(), s(truncate(claim, MAX_CLAIMED_REFERENCE_CHARS)));
    }
    item
}

/// Writes a delivery to the log: indexed and kept 90 days when verified, unindexed and kept 7
/// days when not (see the module documentation).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn record(table: &Table, d: &Delivery) -> Result<(), StoreError> {
    let item = delivery_item(d);
    table.client.put_item().table_name(&table.name).set_item(Some(item)).send().await.map_err(StoreError::dynamo)?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Records what processing made of a delivery, unless it already has a final outcome (a repeat
/// of an event already processed keeps the record saying what the first processing did).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn set_outcome(
    table: &Table,
    delivery_id: &str,
    outcome: &str,
    detail: Option<&str>,
    transaction_id: Option<&TransactionId>,
) -> Result<(), StoreError> {
    let mut expr = "SET outcome = :o, updated_at = :now, detail = :d".to_owned();
    let mut req = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(delivery_key(delivery_id)))
        .condition_expression(
            "attribute_exists(pk) AND outcome IN (:queued, :requeued, :failed, :retrying, :not_final)",
        )
        .expression_attribute_values(":queued", s("QUEUED"))
        .expression_attribute_values(":requeued", s("REQUEUED"))
        .expression_attribute_values(":failed", s(QUEUE_FAILED))
        .expression_attribute_values(":retrying", s("RETRYING"))
        .expression_attribute_values(":not_final", s("NOT_FINAL"))
        .expression_attribute_values(":o", s(outcome))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .expression_attribute_values(":d", s(truncate(detail.unwrap_or(""), 500)));
    if let Some(t) = transaction_id {
        expr.push_str(", transaction_id = :t, gsi1pk = :g");
        req = req
            .expression_attribute_values(":t", s(t.as_str()))
            .expression_attribute_values(":g", s(format!("TXN#{t}#WEBHOOKS")));
    }
    match req.update_expression(expr).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(()),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

/// Every verified delivery that names a transaction, oldest first (at most about 1,000).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn for_transaction(table: &Table, id: &TransactionId) -> Result<Vec<DeliveryView>, StoreError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = table
            .client
            .query()
            .table_name(&table.name)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :pk")
            .expression_attribute_values(":pk", s(format!("TXN#{id}#WEBHOOKS")))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        for item in page.items() {
            out.push(DeliveryView {
                delivery_id: item.str("delivery_id")?.to_owned(),
                provider: item.str("provider")?.to_owned(),
                received_at: item.str("received_at")?.to_owned(),
                body_sha256: item.str("body_sha256")?.to_owned(),
                body_size: item.int("body_size")?,
                verification: item.str("verification")?.to_owned(),
                event_type: item.opt_str("event_type").map(str::to_owned),
                provider_reference: item.opt_str("provider_reference").map(str::to_owned),
                transaction_id: item.opt_str("transaction_id").map(str::to_owned),
                outcome: item.str("outcome")?.to_owned(),
                detail: item.opt_str("detail").filter(|d| !d.is_empty()).map(str::to_owned),
                updated_at: item.str("updated_at")?.to_owned(),
            });
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() && out.len() < 1000 => start = Some(k),
            _ => break,
        }
    }
    Ok(out)
}

/// What writing an event's first delivery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstDelivery {
    /// The event is new: this delivery is its first, logged now.
    New,
    /// The event was delivered before; `outcome` is what its first delivery's record says
    /// (`QUEUED` until the consumer records what processing made of it), `age_seconds` how long
    /// ago that delivery arrived.
    Seen { outcome: String, age_seconds: i64 },
}

/// How long after its first delivery an event still `QUEUED` is taken as never queued (the
/// receiver stopped between its log write and the queue): well beyond a receiver's timeout and
/// a consumer's usual delay. Until then a repeat is a duplicate of an event in flight.
pub const REQUEUE_AFTER_SECONDS: i64 = 60;

impl FirstDelivery {
    /// Whether a repeat delivery should hand the event to the queue again: its queueing failed,
    /// or it is still unprocessed long after it arrived (the receiver may have stopped before
    /// queueing it). Handing it over again is safe: processing is idempotent.
    pub fn needs_requeue(&self) -> bool {
        match self {
            FirstDelivery::New => true,
            FirstDelivery::Seen { outcome, age_seconds } => {
                outcome == QUEUE_FAILED || (outcome == "QUEUED" && *age_seconds >= REQUEUE_AFTER_SECONDS)
            }
        }
    }
}

/// The outcome of a first delivery whose event could not be handed to the queue.
pub const QUEUE_FAILED: &str = "QUEUE_FAILED";

/// The log id of an event's first delivery: derived from the provider and the event, so that
/// every delivery of the event meets the same record.
pub fn first_delivery_id(provider: &str, event: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{provider}#{event}").as_bytes());
    let hex: String = digest.iter().take(13).map(|b| format!("{b:02x}")).collect();
    format!("whd_e{hex}")
}

/// Logs `d`, whose id is [`first_delivery_id`], if no delivery of its event was logged before:
/// one conditional write that is both the log entry and the event's de-duplication claim.
/// `attempt` (fresh per call) recognises this call's own write when a lost response makes the
/// SDK repeat it.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn record_first(table: &Table, d: &Delivery, attempt: &str) -> Result<FirstDelivery, StoreError> {
    let mut item = delivery_item(d);
    item.insert("attempt".into(), s(attempt));
    let put = table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    let old = match put {
        Ok(_) => return Ok(FirstDelivery::New),
        Err(e) => match e.as_service_error() {
            Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                c.item().cloned()
            }
            _ => return Err(StoreError::dynamo(e)),
        },
    };
    let old = match old {
        Some(old) => old,
        // DynamoDB returns the item; an emulator may not: read it.
        None => table
            .client
            .get_item()
            .table_name(&table.name)
            .set_key(Some(delivery_key(&d.id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo)?
            .item
            .unwrap_or_default(),
    };
    if old.opt_str("attempt") == Some(attempt) {
        // Our own write, repeated by the SDK after its response was lost.
        return Ok(FirstDelivery::New);
    }
    let received = old.opt_str("received_at").and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let age_seconds = received.map_or(i64::MAX, |t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
    Ok(FirstDelivery::Seen { outcome: old.opt_str("outcome").unwrap_or_default().to_owned(), age_seconds })
}

/// Records that a first delivery's event could not be queued, unless processing has recorded
/// an outcome meanwhile.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn mark_queue_failed(table: &Table, delivery_id: &str, cause: &str) -> Result<(), StoreError> {
    let update = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(delivery_key(delivery_id)))
        .update_expression("SET outcome = :f, updated_at = :now, detail = :d")
        .condition_expression("outcome = :queued")
        .expression_attribute_values(":f", s(QUEUE_FAILED))
        .expression_attribute_values(":queued", s("QUEUED"))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .expression_attribute_values(":d", s(truncate(cause, 500)))
        .send()
        .await;
    match update {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(()),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}
