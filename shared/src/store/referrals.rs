//! Referral records and their reward outbox.
//!
//! | pk                   | sk         | what                                                    |
//! |----------------------|------------|---------------------------------------------------------|
//! | `REFERRAL#<referee>` | `REFERRAL` | who referred the referee, PENDING → COMPLETED, the reward |
//!
//! Listed per referrer by `gsi1pk = REFERRER#<referrer>` (newest by `gsi1sk`).
//!
//! **The outbox.** The reward is owed when both conditions hold: the referee's first deposit
//! completed and the referee's KYC verified, in either order. Each event writes its fact onto
//! the referral record *in the same DynamoDB transaction as the event itself* (the deposit's
//! credit, the KYC verification) and marks the record due (`gsi2pk = REFERRALS#DUE`). So the
//! fact cannot be lost if the process dies right after: the marker is the outbox. After the
//! write the event's process sends `{referee}` to the rewards queue; if that send is lost, the
//! scheduled relay ([`due`]) finds the marker and sends it again. The consumer pays the reward
//! and marks the record COMPLETED in one transaction whose condition is `status = PENDING`,
//! with a transaction id derived from the referral: exactly once, however often the event
//! arrives. A marker whose conditions are not both met yet is cleared ([`clear_due`]); the
//! missing event sets it again.

use super::item::{key, s, Item, ItemExt};
use super::{StoreError, Table};
use crate::domain::ids::{TransactionId, UserId};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

/// The sparse-index partition of referrals with an unprocessed event.
pub const DUE_PARTITION: &str = "REFERRALS#DUE";

/// The sparse-index partition of user profiles whose KYC verified and whose own referrals (as
/// a referrer) have not been looked at since: a referrer must be verified too before a reward
/// pays, and this is how their verification reaches referrals that waited for it. Written in
/// the verification's own transaction, cleared by [`clear_verified_referrer`].
pub const VERIFIED_REFERRERS_PARTITION: &str = "REFERRERS#VERIFIED";

/// The key of a referee's referral record.
pub fn referral_key(referee: &UserId) -> Item {
    key(format!("REFERRAL#{referee}"), "REFERRAL")
}

/// The referrer index partition (`gsi1pk`).
pub fn referrer_partition(referrer: &UserId) -> String {
    format!("REFERRER#{referrer}")
}

/// A referral record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub referral_id: String,
    pub referrer: UserId,
    pub referee: UserId,
    /// `PENDING` or `COMPLETED`.
    pub status: String,
    pub referee_email_masked: Option<String>,
    pub created_at: String,
    /// The referee's first completed deposit, once it happened.
    pub first_deposit_txn: Option<String>,
    /// When the referee's KYC verified.
    pub kyc_verified_at: Option<String>,
    /// The keyed hash of the PAN the referee verified with.
    pub referee_pan_hash: Option<String>,
    /// `rewarded` or `cap_reached` once COMPLETED.
    pub outcome: Option<String>,
    pub reward_txn: Option<String>,
    pub reward_amount: Option<String>,
    pub completed_at: Option<String>,
    /// The due marker's sort key while one is set.
    pub due_since: Option<String>,
}

/// Reads a stored record.
///
/// # Errors
/// [`StoreError::Corrupt`] when an attribute is missing.
pub fn from_item(item: &Item) -> Result<Referral, StoreError> {
    let user = |name: &str| {
        item.str(name).and_then(|u| UserId::parse(u).map_err(|_| StoreError::Corrupt(format!("referral {name}"))))
    };
    let opt = |name: &str| item.opt_str(name).map(str::to_owned);
    Ok(Referral {
        referral_id: item.str("referral_id")?.to_owned(),
        referrer: user("referrer_user_id")?,
        referee: user("referee_user_id")?,
        status: item.str("status")?.to_owned(),
        referee_email_masked: opt("referee_email_masked"),
        created_at: item.str("created_at")?.to_owned(),
        first_deposit_txn: opt("first_deposit_txn"),
        kyc_verified_at: opt("kyc_verified_at"),
        referee_pan_hash: opt("referee_pan_hash"),
        outcome: opt("outcome"),
        reward_txn: opt("reward_txn"),
        reward_amount: item.get("reward_amount").and_then(|v| v.as_n().ok()).cloned(),
        completed_at: opt("completed_at"),
        due_since: if item.opt_str("gsi2pk") == Some(DUE_PARTITION) { opt("gsi2sk") } else { None },
    })
}

/// The referral of `referee`, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get(table: &Table, referee: &UserId) -> Result<Option<Referral>, StoreError> {
    super::get_item(table, referral_key(referee)).await?.as_ref().map(from_item).transpose()
}

fn due_update(
    table: &Table,
    referee: &UserId,
    set: &str,
    values: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, StoreError> {
    let now = super::now_rfc3339();
    // A marker unique per event, so clearing an older one never clears a newer one.
    let due = format!("{now}#{}", ulid::Ulid::new());
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(referral_key(referee)))
        .update_expression(format!("SET {set}, gsi2pk = :due_pk, gsi2sk = :due_sk"))
        // Written only for a record known to exist (its referee is referred); the condition
        // keeps a bug from creating a stray record, and holds whenever it is used.
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":due_pk", s(DUE_PARTITION))
        .expression_attribute_values(":due_sk", s(due));
    for (name, value) in values {
        update = update.expression_attribute_values(name, value);
    }
    Ok(TransactWriteItem::builder().update(update.build().map_err(StoreError::dynamo)?).build())
}

/// The outbox item a first deposit writes with its credit: the deposit (the first one only
/// ever counts) and the due marker.
///
/// # Errors
/// [`StoreError`] when the request cannot be built.
pub fn first_deposit_marker(
    table: &Table,
    referee: &UserId,
    deposit: &TransactionId,
) -> Result<TransactWriteItem, StoreError> {
    due_update(
        table,
        referee,
        "first_deposit_txn = if_not_exists(first_deposit_txn, :txn)",
        vec![(":txn", s(deposit.as_str()))],
    )
}

/// The first-deposit outbox item for a credit of `user`'s deposit `deposit`, when `user` was
/// referred and no deposit of theirs counted yet; `None` otherwise (one read decides).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn first_deposit_marker_if_owed(
    table: &Table,
    user: &UserId,
    deposit: &TransactionId,
) -> Result<Option<TransactWriteItem>, StoreError> {
    match get(table, user).await? {
        Some(r) if r.status == "PENDING" && r.first_deposit_txn.is_none() => {
            Ok(Some(first_deposit_marker(table, user, deposit)?))
        }
        _ => Ok(None),
    }
}

/// The outbox item a KYC verification writes with it: when, with which PAN (its keyed hash),
/// and the due marker.
///
/// # Errors
/// [`StoreError`] when the request cannot be built.
pub fn kyc_verified_marker(table: &Table, referee: &UserId, pan_hash: &str) -> Result<TransactWriteItem, StoreError> {
    let now = super::now_rfc3339();
    due_update(
        table,
        referee,
        "kyc_verified_at = if_not_exists(kyc_verified_at, :now), referee_pan_hash = :pan",
        vec![(":now", s(now)), (":pan", s(pan_hash))],
    )
}

/// The update that completes a referral, written with the reward's transfer (or alone when no
/// reward is paid): PENDING → COMPLETED, conditioned on both facts and on it still being PENDING.
///
/// # Errors
/// [`StoreError`] when the request cannot be built.
pub fn complete(
    table: &Table,
    referee: &UserId,
    outcome: &str,
    reward: Option<(&TransactionId, rust_decimal::Decimal)>,
) -> Result<TransactWriteItem, StoreError> {
    let now = super::now_rfc3339();
    let mut set = "#status = :completed, outcome = :outcome, completed_at = :now".to_owned();
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(referral_key(referee)))
        .condition_expression(
            "#status = :pending AND attribute_exists(first_deposit_txn) AND attribute_exists(kyc_verified_at)",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":completed", s("COMPLETED"))
        .expression_attribute_values(":pending", s("PENDING"))
        .expression_attribute_values(":outcome", s(outcome))
        .expression_attribute_values(":now", s(now));
    if let Some((txn, amount)) = reward {
        set.push_str(", reward_txn = :txn, reward_amount = :amount");
        update = update
            .expression_attribute_values(":txn", s(txn.as_str()))
            .expression_attribute_values(":amount", super::item::n(amount));
    }
    let update =
        update.update_expression(format!("SET {set} REMOVE gsi2pk, gsi2sk")).build().map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Clears the due marker `due_since` if it is still the current one (a newer event's marker
/// stays). Returns whether it was cleared.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn clear_due(table: &Table, referee: &UserId, due_since: &str) -> Result<bool, StoreError> {
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(referral_key(referee)))
        .update_expression("REMOVE gsi2pk, gsi2sk")
        .condition_expression("gsi2sk = :due")
        .expression_attribute_values(":due", s(due_since))
        .send()
        .await;
    super::update_applied(out)
}

/// Forgets a first deposit that was taken back (refunded, charged back), so that the referee's
/// next completed deposit counts instead. Only while the referral is PENDING and still names it.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn forget_first_deposit(table: &Table, referee: &UserId, deposit: &str) -> Result<(), StoreError> {
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(referral_key(referee)))
        .update_expression("REMOVE first_deposit_txn")
        .condition_expression("#status = :pending AND first_deposit_txn = :txn")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pending", s("PENDING"))
        .expression_attribute_values(":txn", s(deposit))
        .send()
        .await;
    super::update_applied(out).map(|_| ())
}

/// Marks a PENDING referral due again (its referrer has just verified).
///
/// # Errors
/// [`StoreError`] on storage failure; a referral no longer PENDING is left alone.
pub async fn mark_due(table: &Table, referee: &UserId) -> Result<(), StoreError> {
    let now = super::now_rfc3339();
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(referral_key(referee)))
        .update_expression("SET gsi2pk = :pk, gsi2sk = :sk")
        .condition_expression("#status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pk", s(DUE_PARTITION))
        .expression_attribute_values(":sk", s(format!("{now}#{}", ulid::Ulid::new())))
        .expression_attribute_values(":pending", s("PENDING"))
        .send()
        .await;
    super::update_applied(out).map(|_| ())
}

/// Verified users whose referrals have not been looked at since they verified, with the
/// marker to clear: `(user, gsi2sk)`.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn verified_referrers(table: &Table, limit: i32) -> Result<Vec<(UserId, String)>, StoreError> {
    super::gsi2_partition(table, VERIFIED_REFERRERS_PARTITION, limit)
        .await?
        .iter()
        .map(|i| {
            let user = UserId::parse(i.str("user_id")?).map_err(|_| StoreError::Corrupt("profile user_id".into()))?;
            Ok((user, i.str("gsi2sk")?.to_owned()))
        })
        .collect()
}

/// Clears a verified user's referrer marker if it is still `marker`.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn clear_verified_referrer(table: &Table, user: &UserId, marker: &str) -> Result<(), StoreError> {
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(key(format!("USER#{user}"), "PROFILE")))
        .update_expression("REMOVE gsi2pk, gsi2sk")
        .condition_expression("gsi2pk = :pk AND gsi2sk = :sk")
        .expression_attribute_values(":pk", s(VERIFIED_REFERRERS_PARTITION))
        .expression_attribute_values(":sk", s(marker))
        .send()
        .await;
    super::update_applied(out).map(|_| ())
}

/// Referees whose referral has an unprocessed event, oldest first (for the relay).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn due(table: &Table, limit: i32) -> Result<Vec<UserId>, StoreError> {
    super::gsi2_partition(table, DUE_PARTITION, limit)
        .await?
        .iter()
        .map(|i| {
            i.str("referee_user_id").and_then(|u| UserId::parse(u).map_err(|_| StoreError::Corrupt("referee".into())))
        })
        .collect()
}

/// A page of a referrer's referrals, newest first, after `after` (`(gsi1sk, referee)` of the
/// last one seen).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn of_referrer(
    table: &Table,
    referrer: &UserId,
    limit: i32,
    after: Option<(String, UserId)>,
) -> Result<(Vec<Referral>, Option<(String, UserId)>), StoreError> {
    let mut q = table
        .client
        .query()
        .table_name(&table.name)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", s(referrer_partition(referrer)))
        .scan_index_forward(false)
        .limit(limit);
    if let Some((sk, referee)) = after {
        let mut start = referral_key(&referee);
        start.insert("gsi1pk".into(), s(referrer_partition(referrer)));
        start.insert("gsi1sk".into(), s(sk));
        q = q.set_exclusive_start_key(Some(start));
    }
    let out = q.send().await.map_err(StoreError::dynamo)?;
    let items = out.items.unwrap_or_default().iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
    let next = match out.last_evaluated_key {
        Some(k) => {
            let sk = k.get("gsi1sk").and_then(|v| v.as_s().ok()).cloned();
            let referee = k
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("REFERRAL#"))
                .and_then(|u| UserId::parse(u).ok());
            sk.zip(referee)
        }
        None => None,
    };
    Ok((items, next))
}
