//! The claim items of phone (PSTN) calls in DynamoDB.
//!
//! - `PSTNPIN#<pin> / PSTNPIN`: a 6-digit PIN taken by one ringing phone call: `call_id`,
//!   `caller_id`, a `nonce` (the writer's own token, so a repeat of the same write is not a
//!   collision), `expires_at` (the end of the ring window; TTL). A PIN whose claim has expired
//!   is free again even before TTL deletes the item.
//! - `PSTNCALL#<CallSid> / PSTNCALL`: the provider's call that was answered into one of ours
//!   (`call_id`), written in the same transaction that holds the money and turns the call
//!   ACTIVE; every later callback about that `CallSid` finds the call through it. Kept 30 days.

use super::item::{key, n, s, Item, ItemExt};
use super::{get_item, now_epoch, put_new, StoreError, Table};
use crate::domain::ids::{CallId, UserId};
use aws_sdk_dynamodb::types::TransactWriteItem;

/// How long a provider call's claim is kept after the call was answered.
pub const PROVIDER_CALL_TTL_SECONDS: i64 = 30 * 24 * 3600;

fn pin_key(pin: &str) -> Item {
    key(format!("PSTNPIN#{pin}"), "PSTNPIN")
}

fn provider_call_key(call_sid: &str) -> Item {
    key(format!("PSTNCALL#{call_sid}"), "PSTNCALL")
}

/// Takes `pin` for `caller` until `expires_at` (epoch seconds), unless a live claim holds it.
/// `true` when the PIN is now ours (also when this very write was applied before and is being
/// repeated: same `nonce`).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn claim_pin(
    table: &Table,
    pin: &str,
    caller: &UserId,
    nonce: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    let mut item = pin_key(pin);
    item.insert("entity".into(), s("pstn_pin"));
    item.insert("caller_id".into(), s(caller.as_str()));
    item.insert("nonce".into(), s(nonce));
    item.insert("expires_at".into(), n(expires_at));
    let result = table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR nonce = :nonce")
        .expression_attribute_values(":now", n(now_epoch()))
        .expression_attribute_values(":nonce", s(nonce))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(super::is_conditional_failure) => Ok(false),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

/// Points our claim of `pin` at the call placed with it; `false` when the claim is no longer
/// ours.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn attach_pin(table: &Table, pin: &str, nonce: &str, call: &CallId) -> Result<bool, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(pin_key(pin)))
        .update_expression("SET call_id = :call")
        .condition_expression("nonce = :nonce")
        .expression_attribute_values(":call", s(call.as_str()))
        .expression_attribute_values(":nonce", s(nonce))
        .send()
        .await;
    super::update_applied(result)
}

/// Gives up our claim of `pin` (the call could not be placed). Best effort: the claim expires
/// with the ring window anyway.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn release_pin(table: &Table, pin: &str, nonce: &str) -> Result<(), StoreError> {
    let result = table
        .client
        .delete_item()
        .table_name(&table.name)
        .set_key(Some(pin_key(pin)))
        .condition_expression("nonce = :nonce")
        .expression_attribute_values(":nonce", s(nonce))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(super::is_conditional_failure) => Ok(()),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

/// The call a live PIN belongs to (`None`: nobody's, expired, or not attached to a call yet).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn call_of_pin(table: &Table, pin: &str) -> Result<Option<CallId>, StoreError> {
    let Some(item) = get_item(table, pin_key(pin)).await? else { return Ok(None) };
    if item.opt_int("expires_at").is_none_or(|e| e < now_epoch()) {
        return Ok(None);
    }
    Ok(item.opt_str("call_id").and_then(|c| CallId::parse(c).ok()))
}

/// The claim of the provider's call `call_sid` by our call `call`, for the transaction that
/// answers it (refused when the provider call is already claimed).
///
/// # Errors
/// [`StoreError`] when the request cannot be built.
pub fn claim_provider_call(table: &Table, call_sid: &str, call: &CallId) -> Result<TransactWriteItem, StoreError> {
    let mut item = provider_call_key(call_sid);
    item.insert("entity".into(), s("pstn_call"));
    item.insert("call_id".into(), s(call.as_str()));
    item.insert("expires_at".into(), n(now_epoch() + PROVIDER_CALL_TTL_SECONDS));
    put_new(table, item)
}

/// Our call the provider's call `call_sid` was answered into.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn call_of_provider_call(table: &Table, call_sid: &str) -> Result<Option<CallId>, StoreError> {
    let Some(item) = get_item(table, provider_call_key(call_sid)).await? else { return Ok(None) };
    Ok(item.opt_str("call_id").and_then(|c| CallId::parse(c).ok()))
}
