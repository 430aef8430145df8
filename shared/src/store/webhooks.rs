//! The webhook log: every delivery we receive, verified or not, with what became of it.
//!
//! | pk                                   | sk        | what                                   |
//! |--------------------------------------|-----------|----------------------------------------|
//! | `WEBHOOK#<delivery_id>`              | `WEBHOOK` | one delivery: hash, size, verification, outcome |
//! | `WHEVENT#<provider>#<event key>`     | `WHEVENT` | de-duplication of one provider event   |
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
    /// Not checked (the body was refused before verification, e.g. too large).
    NotChecked,
}

impl Verification {
    fn as_str(self) -> &'static str {
        match self {
            Verification::Valid => "VALID",
            Verification::Invalid => "INVALID",
            Verification::Missing => "MISSING",
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

/// Writes a delivery to the log: indexed and kept 90 days when verified, unindexed and kept 7
/// days when not (see the module documentation).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn record(table: &Table, d: &Delivery) -> Result<(), StoreError> {
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
    table.client.put_item().table_name(&table.name).set_item(Some(item)).send().await.map_err(StoreError::dynamo)?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Records what processing made of a delivery.
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
        .condition_expression("attribute_exists(pk)")
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

/// Whether an event was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClaim {
    /// First time: process it.
    New,
    /// Seen and already handed to the queue: nothing more to do.
    AlreadyQueued,
    /// Seen but not known to have reached the queue (the earlier attempt failed midway):
    /// hand it over again; processing is idempotent.
    SeenNotQueued,
}

fn event_key(provider: &str, event: &str) -> Item {
    key(format!("WHEVENT#{provider}#{event}"), "WHEVENT")
}

/// Claims an event key with one conditional write.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn claim_event(
    table: &Table,
    provider: &str,
    event: &str,
    delivery_id: &str,
) -> Result<EventClaim, StoreError> {
    let mut item = event_key(provider, event);
    item.insert("state".into(), s("RECEIVED"));
    item.insert("first_delivery_id".into(), s(delivery_id));
    item.insert("created_at".into(), s(now_rfc3339()));
    item.insert("expires_at".into(), n(now_epoch() + RETENTION_SECONDS));
    let put = table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match put {
        Ok(_) => Ok(EventClaim::New),
        Err(e) => {
            let queued = match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    c.item().and_then(|i| i.opt_str("state").map(|s| s == "QUEUED"))
                }
                _ => return Err(StoreError::dynamo(e)),
            };
            match queued {
                Some(true) => Ok(EventClaim::AlreadyQueued),
                Some(false) => Ok(EventClaim::SeenNotQueued),
                // The emulator may not return the old item: read it.
                None => {
                    let got = table
                        .client
                        .get_item()
                        .table_name(&table.name)
                        .set_key(Some(event_key(provider, event)))
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(StoreError::dynamo)?;
                    let state = got.item.as_ref().and_then(|i| i.opt_str("state").map(str::to_owned));
                    Ok(if state.as_deref() == Some("QUEUED") {
                        EventClaim::AlreadyQueued
                    } else {
                        EventClaim::SeenNotQueued
                    })
                }
            }
        }
    }
}

/// Marks an event as handed to the queue.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn mark_event_queued(table: &Table, provider: &str, event: &str) -> Result<(), StoreError> {
    table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(event_key(provider, event)))
        .update_expression("SET #state = :q")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":q", s("QUEUED"))
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok(())
}
