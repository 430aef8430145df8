//! Calls, WebSocket connections and connection tickets in DynamoDB.
//!
//! - `CALL#<id> / CALL`: the call (status, parties, price, what was billed). While RINGING or
//!   ACTIVE it is listed in the sparse index partition `CALLS#LIVE#<shard>` (`gsi2`) that the
//!   sweeper walks.
//! - `CALL#<id> / PARTY#<user>`: one per party, indexed under `USER#<user>#CALLS` (`gsi1`), so
//!   both the caller and the callee list their calls.
//! - `CONN#<connection id> / CONN`: a WebSocket connection and its user, indexed under
//!   `USER#<user>#CONN` (`gsi1`), kept for at most API Gateway's two hours (TTL).
//! - `WSTICKET#<sha-256 of the ticket> / WSTICKET`: a one-time ticket for `$connect`, valid for a
//!   minute (TTL; the expiry is also checked, since TTL deletes late).

use super::item::{key, n, s, Item, ItemExt};
use super::{get_item, now_epoch, put_new, StoreError, Table};
use crate::domain::ids::{CallId, UserId};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use rust_decimal::Decimal;

/// Shards of the live-calls index partition. Every billed minute rewrites its call's entry, so
/// at 100× today's users (5,600 billed minutes/s at peak) 8 shards would take 700 index write
/// units/s each, within 2× of a partition's 1,000; 32 take 175 (docs/benchmarks.md, "Scale").
/// The count can grow freely: a call keeps the shard it was listed under, and the sweeper walks
/// them all.
pub const LIVE_SHARDS: u32 = 32;
/// How long a connection record lives at most (API Gateway closes a connection after 2 hours).
pub const CONNECTION_TTL_SECONDS: i64 = 2 * 3600 + 600;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// Invited, not answered yet.
    Ringing,
    /// Answered; billed per period.
    Active,
    /// Over; settled.
    Ended,
}

impl CallStatus {
    /// The stored and sent name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "RINGING",
            CallStatus::Active => "ACTIVE",
            CallStatus::Ended => "ENDED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "RINGING" => Some(CallStatus::Ringing),
            "ACTIVE" => Some(CallStatus::Active),
            "ENDED" => Some(CallStatus::Ended),
            _ => None,
        }
    }
}

/// A stored call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: CallId,
    pub caller: UserId,
    pub callee: UserId,
    pub status: CallStatus,
    /// `app` (WebRTC, signaled over the WebSocket API) or `pstn` (through the telephony provider).
    pub channel: String,
    /// The callee's price per minute when the call was placed.
    pub price_per_minute: Decimal,
    /// The callee's share of every charge, in percent.
    pub callee_share_percent: u32,
    /// The billing period in seconds (60 in production).
    pub period_seconds: u64,
    pub created_at: String,
    /// When the call was invited, in epoch milliseconds.
    pub created_ms: i64,
    /// When it was answered (billing starts), in epoch milliseconds.
    pub accepted_ms: Option<i64>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    /// Whole periods posted so far.
    pub billed_minutes: u32,
    /// What the caller was charged in all.
    pub charged: Decimal,
    /// What the callee earned in all.
    pub earned: Decimal,
    pub duration_seconds: Option<u64>,
    pub caller_connection: Option<String>,
    pub callee_connection: Option<String>,
    /// When the next billing tick is due (epoch ms), while ACTIVE.
    pub next_tick_ms: Option<i64>,
    /// A PSTN call: the provider's call id, the PIN the caller keys in, the seconds paid for.
    pub provider_call_id: Option<String>,
    pub pin: Option<String>,
    /// The `<Dial timeLimit>`: the talk seconds the hold pays for (a connected PSTN call).
    pub paid_seconds: Option<u64>,
    /// An ended call's escrow has been paid out (or held nothing).
    pub settled: bool,
}

/// The key of a call item.
pub fn call_key(id: &CallId) -> Item {
    key(format!("CALL#{id}"), "CALL")
}

fn live_partition(id: &CallId) -> String {
    let shard = id.as_str().bytes().fold(0_u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % LIVE_SHARDS;
    format!("CALLS#LIVE#{shard}")
}

/// One shard of the live-calls index partition.
pub fn live_partition_shard(shard: u32) -> String {
    format!("CALLS#LIVE#{shard}")
}

/// The index partition of a user's calls.
pub fn calls_partition(user: &UserId) -> String {
    format!("USER#{user}#CALLS")
}

/// The items of a new RINGING call: the call and one party item per user (3 puts).
///
/// # Errors
/// [`StoreError`] when an item cannot be built.
pub fn new_call_items(table: &Table, call: &Call) -> Result<Vec<TransactWriteItem>, StoreError> {
    let mut item = call_key(&call.id);
    item.insert("entity".into(), s("call"));
    item.insert("call_id".into(), s(call.id.as_str()));
    item.insert("caller_id".into(), s(call.caller.as_str()));
    item.insert("callee_id".into(), s(call.callee.as_str()));
    item.insert("status".into(), s(call.status.as_str()));
    item.insert("channel".into(), s(&call.channel));
    item.insert("price_per_minute".into(), n(call.price_per_minute));
    item.insert("callee_share_percent".into(), n(call.callee_share_percent));
    item.insert("period_seconds".into(), n(call.period_seconds));
    item.insert("created_at".into(), s(&call.created_at));
    item.insert("created_ms".into(), n(call.created_ms));
    item.insert("billed_minutes".into(), n(0));
    item.insert("charged".into(), n(0));
    item.insert("earned".into(), n(0));
    // The call is also a ledger account: its escrow (`call:<id>`), holding what the caller has
    // paid until it is paid out to the callee and the platform when the call ends.
    item.insert("account_id".into(), s(crate::ledger::AccountId::call(&call.id).as_str()));
    item.insert("currency".into(), s(crate::money::Currency::Coin.code()));
    item.insert("balance".into(), n(0));
    item.insert("held".into(), n(0));
    item.insert("available".into(), n(0));
    item.insert("updated_at".into(), s(&call.created_at));
    if let Some(c) = &call.caller_connection {
        item.insert("caller_connection".into(), s(c));
    }
    if let Some(p) = &call.pin {
        item.insert("pin".into(), s(p));
    }
    item.insert("gsi2pk".into(), s(live_partition(&call.id)));
    item.insert("gsi2sk".into(), s(format!("{}#{}", call.created_at, call.id)));
    let mut items = vec![put_new(table, item)?];
    for (user, role) in [(&call.caller, "caller"), (&call.callee, "callee")] {
        let mut party = key(format!("CALL#{}", call.id), format!("PARTY#{user}"));
        party.insert("entity".into(), s("call_party"));
        party.insert("call_id".into(), s(call.id.as_str()));
        party.insert("role".into(), s(role));
        party.insert("gsi1pk".into(), s(calls_partition(user)));
        party.insert("gsi1sk".into(), s(format!("{}#{}", call.created_at, call.id)));
        items.push(put_new(table, party)?);
    }
    Ok(items)
}

/// Reads a call item.
///
/// # Errors
/// [`StoreError::Corrupt`] when an attribute is missing or invalid.
pub fn call_from_item(item: &Item) -> Result<Call, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("call item: {what}"));
    let user = |name: &str| -> Result<UserId, StoreError> { UserId::parse(item.str(name)?).map_err(|_| corrupt(name)) };
    Ok(Call {
        id: CallId::parse(item.str("call_id")?).map_err(|_| corrupt("call_id"))?,
        caller: user("caller_id")?,
        callee: user("callee_id")?,
        status: CallStatus::parse(item.str("status")?).ok_or_else(|| corrupt("status"))?,
        channel: item.str("channel")?.to_owned(),
        price_per_minute: item.decimal("price_per_minute")?,
        callee_share_percent: u32::try_from(item.int("callee_share_percent")?).map_err(|_| corrupt("share"))?,
        period_seconds: u64::try_from(item.int("period_seconds")?).map_err(|_| corrupt("period"))?,
        created_at: item.str("created_at")?.to_owned(),
        created_ms: item.int("created_ms")?,
        accepted_ms: item.opt_int("accepted_ms"),
        ended_at: item.opt_str("ended_at").map(str::to_owned),
        end_reason: item.opt_str("end_reason").map(str::to_owned),
        billed_minutes: u32::try_from(item.int("billed_minutes")?).map_err(|_| corrupt("billed_minutes"))?,
        charged: item.decimal("charged")?,
        earned: item.decimal("earned")?,
        duration_seconds: item.opt_int("duration_seconds").and_then(|d| u64::try_from(d).ok()),
        caller_connection: item.opt_str("caller_connection").map(str::to_owned),
        callee_connection: item.opt_str("callee_connection").map(str::to_owned),
        next_tick_ms: item.opt_int("next_tick_ms"),
        provider_call_id: item.opt_str("provider_call_id").map(str::to_owned),
        settled: item.flag("settled"),
        pin: item.opt_str("pin").map(str::to_owned),
        paid_seconds: item.opt_int("paid_seconds").and_then(|p| u64::try_from(p).ok()),
    })
}

/// One call, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_call(table: &Table, id: &CallId) -> Result<Option<Call>, StoreError> {
    get_item(table, call_key(id)).await?.as_ref().map(call_from_item).transpose()
}

/// An update of a call item conditioned on its status (and, when given, on how many minutes
/// it has billed), for a transaction.
///
/// `set` is the update's `SET`/`REMOVE` text; its values are `values`.
///
/// # Errors
/// [`StoreError`] when the update cannot be built.
pub fn call_update(
    table: &Table,
    id: &CallId,
    expect: CallStatus,
    billed: Option<u32>,
    set: &str,
    values: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, StoreError> {
    let mut condition = "#status = :expect".to_owned();
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(call_key(id)))
        .update_expression(set)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":expect", s(expect.as_str()));
    if let Some(b) = billed {
        condition.push_str(" AND billed_minutes = :billed");
        update = update.expression_attribute_values(":billed", n(b));
    }
    for (name, value) in values {
        update = update.expression_attribute_values(name, value);
    }
    let update = update.condition_expression(condition).build().map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// What [`escrow_update`] writes on an ACTIVE call's item.
#[derive(Debug, Default)]
pub struct EscrowCredit<'a> {
    /// The minutes billed before this write (its condition).
    pub billed: u32,
    /// What is credited to the escrow (and added to `charged`).
    pub charge: Decimal,
    /// A tick's whole minute: `billed_minutes` becomes `billed + 1`. (The running minute
    /// charged at the end is not counted as a billed minute.)
    pub whole_minute: bool,
    /// Further `SET` assignments, with their `values`.
    pub set: &'a str,
    pub values: Vec<(&'a str, AttributeValue)>,
    /// Attributes to drop (`REMOVE`), empty for none.
    pub remove: &'a str,
}

/// The update of an ACTIVE call's item that credits its escrow with `charge` and counts it:
/// `charged` and the escrow's `balance`/`available` grow by `charge`. Conditioned on the call
/// being ACTIVE with exactly `billed` minutes billed, so each minute is credited once.
///
/// # Errors
/// [`StoreError`] when the update cannot be built.
pub fn escrow_update(table: &Table, id: &CallId, credit: EscrowCredit<'_>) -> Result<TransactWriteItem, StoreError> {
    let mut expression =
        "SET balance = balance + :c, available = available + :c, charged = charged + :c, updated_at = :now".to_owned();
    let mut values = vec![(":c", n(credit.charge)), (":now", s(super::now_rfc3339()))];
    if credit.whole_minute {
        expression.push_str(", billed_minutes = :k");
        values.push((":k", n(credit.billed + 1)));
    }
    if !credit.set.is_empty() {
        expression.push_str(", ");
        expression.push_str(credit.set);
    }
    if !credit.remove.is_empty() {
        expression.push_str(" REMOVE ");
        expression.push_str(credit.remove);
    }
    values.extend(credit.values);
    call_update(table, id, CallStatus::Active, Some(credit.billed), &expression, values)
}

/// The update that pays an ended call's escrow out: `total` leaves `balance` and `available`,
/// the callee's `earned` part is recorded, the call is marked settled and leaves the live
/// index. Conditioned on the call being ENDED, unsettled, with exactly `total` in escrow.
///
/// # Errors
/// [`StoreError`] when the update cannot be built.
pub fn settle_update(
    table: &Table,
    id: &CallId,
    total: Decimal,
    earned: Decimal,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(call_key(id)))
        .update_expression(
            "SET balance = balance - :t, available = available - :t, earned = :e, settled = :yes, updated_at = :now \
             REMOVE gsi2pk, gsi2sk",
        )
        .condition_expression("#status = :ended AND attribute_not_exists(settled) AND balance = :t")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":ended", s(CallStatus::Ended.as_str()))
        .expression_attribute_values(":t", n(total))
        .expression_attribute_values(":e", n(earned))
        .expression_attribute_values(":yes", AttributeValue::Bool(true))
        .expression_attribute_values(":now", s(super::now_rfc3339()))
        .build()
        .map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The ids of `user`'s calls, newest first, from `start` (an index position) on.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn calls_of(
    table: &Table,
    user: &UserId,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<CallId>, Option<Item>), StoreError> {
    let (items, last) = super::index_page(table, "gsi1", &calls_partition(user), limit, start).await?;
    let ids = items.iter().filter_map(|i| i.opt_str("call_id").and_then(|c| CallId::parse(c).ok())).collect();
    Ok((ids, last))
}

/// Live (RINGING or ACTIVE) calls of one shard of the live index.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn live_calls(table: &Table, shard: u32, limit: i32) -> Result<Vec<CallId>, StoreError> {
    let items = super::gsi2_partition(table, &live_partition_shard(shard), limit).await?;
    Ok(items.iter().filter_map(|i| i.opt_str("call_id").and_then(|c| CallId::parse(c).ok())).collect())
}

// ------------------------------------------------------------------------------------------
// Connections
// ------------------------------------------------------------------------------------------

fn connection_key(id: &str) -> Item {
    key(format!("CONN#{id}"), "CONN")
}

fn connections_partition(user: &UserId) -> String {
    format!("USER#{user}#CONN")
}

/// Records a connection of `user`.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn put_connection(table: &Table, id: &str, user: &UserId, now: &str) -> Result<(), StoreError> {
    let mut item = connection_key(id);
    item.insert("entity".into(), s("connection"));
    item.insert("connection_id".into(), s(id));
    item.insert("user_id".into(), s(user.as_str()));
    item.insert("connected_at".into(), s(now));
    item.insert("expires_at".into(), n(now_epoch() + CONNECTION_TTL_SECONDS));
    item.insert("gsi1pk".into(), s(connections_partition(user)));
    item.insert("gsi1sk".into(), s(format!("{now}#{id}")));
    table.client.put_item().table_name(&table.name).set_item(Some(item)).send().await.map_err(StoreError::dynamo)?;
    Ok(())
}

/// The user of a live connection (`None` when it is gone or expired).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn connection_user(table: &Table, id: &str) -> Result<Option<UserId>, StoreError> {
    let Some(item) = get_item(table, connection_key(id)).await? else { return Ok(None) };
    if item.opt_int("expires_at").is_some_and(|e| e < now_epoch()) {
        return Ok(None);
    }
    Ok(UserId::parse(item.str("user_id")?).ok())
}

/// Forgets a connection; returns whose it was (`None` when it was already gone).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn delete_connection(table: &Table, id: &str) -> Result<Option<UserId>, StoreError> {
    let out = table
        .client
        .delete_item()
        .table_name(&table.name)
        .set_key(Some(connection_key(id)))
        .return_values(ReturnValue::AllOld)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok(out.attributes.and_then(|a| a.opt_str("user_id").and_then(|u| UserId::parse(u).ok())))
}

/// The live connections of a user (at most 10, newest first; eventually consistent).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn connections_of(table: &Table, user: &UserId) -> Result<Vec<String>, StoreError> {
    let items = super::index_newest(table, "gsi1", &connections_partition(user), 10).await?;
    let now = now_epoch();
    Ok(items
        .iter()
        .filter(|i| i.opt_int("expires_at").is_none_or(|e| e >= now))
        .filter_map(|i| i.opt_str("connection_id").map(str::to_owned))
        .collect())
}

// ------------------------------------------------------------------------------------------
// Tickets
// ------------------------------------------------------------------------------------------

fn ticket_key(ticket: &str) -> Item {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(ticket.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    key(format!("WSTICKET#{hex}"), "WSTICKET")
}

/// Stores a ticket (only its hash) for `user`, valid until `expires_at` (epoch seconds).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn put_ticket(table: &Table, ticket: &str, user: &UserId, expires_at: i64) -> Result<(), StoreError> {
    let mut item = ticket_key(ticket);
    item.insert("entity".into(), s("ws_ticket"));
    item.insert("user_id".into(), s(user.as_str()));
    item.insert("expires_at".into(), n(expires_at));
    table.client.put_item().table_name(&table.name).set_item(Some(item)).send().await.map_err(StoreError::dynamo)?;
    Ok(())
}

/// Redeems a ticket for connection `connection_id`: once. A repeat by the same connection (a
/// retried write whose answer was lost) is the same redemption; any other is refused.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn redeem_ticket(table: &Table, ticket: &str, connection_id: &str) -> Result<Option<UserId>, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(ticket_key(ticket)))
        .update_expression("SET used_by = :conn")
        .condition_expression(
            "attribute_exists(pk) AND expires_at > :now AND (attribute_not_exists(used_by) OR used_by = :conn)",
        )
        .expression_attribute_values(":conn", s(connection_id))
        .expression_attribute_values(":now", n(now_epoch()))
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.attributes.and_then(|a| a.opt_str("user_id").and_then(|u| UserId::parse(u).ok()))),
        Err(e) if e.as_service_error().is_some_and(super::is_conditional_failure) => Ok(None),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

/// The callee's price per minute, when they set one.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn call_price(table: &Table, user: &UserId) -> Result<Option<Decimal>, StoreError> {
    match get_item(table, key(format!("USER#{user}"), "PROFILE")).await? {
        Some(item) if item.contains_key("call_price") => Ok(Some(item.decimal("call_price")?)),
        _ => Ok(None),
    }
}

/// Sets a user's price per minute; `false` when the user does not exist.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn set_call_price(table: &Table, user: &UserId, price: Decimal) -> Result<bool, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(key(format!("USER#{user}"), "PROFILE")))
        .update_expression("SET call_price = :p")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":p", n(price))
        .send()
        .await;
    super::update_applied(result)
}
