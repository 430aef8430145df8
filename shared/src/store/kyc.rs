//! KYC attempts, the user's KYC fields, and the uniqueness of a PAN across accounts.
//!
//! | pk                 | sk        | what                                                      |
//! |--------------------|-----------|-----------------------------------------------------------|
//! | `KYC#<kyc_id>`     | `KYC`     | one attempt: provider, reference, status, reason, encrypted PAN and details |
//! | `PANCLAIM#<hmac>`  | `PANCLAIM`| the account a PAN belongs to (`ACTIVE`, `VERIFIED`, `RELEASED`) |
//!
//! The user's profile (`USER#<id>`) carries the current attempt's id, status, masked PAN and
//! rejection reason, so `GET /v1/kyc` is one read. Attempts are listed per user under
//! `gsi1pk = USER#<id>#KYC`; those awaiting a person under `gsi2pk = KYC#REVIEW`.
//!
//! Every change is one transaction over the attempt, the profile and the PAN claim (and, when a
//! referred user verifies, the referral's outbox marker), each conditioned so that a repeat or a
//! race changes nothing: the attempt must still be PENDING, the profile must still point at it.

use super::item::{key, s, Item, ItemExt};
use super::{now_rfc3339, put_new, transact, StoreError, Table, TransactError};
use crate::domain::ids::{KycId, UserId};
use crate::domain::user::KycStatus;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

/// The sparse-index partition of attempts awaiting a person.
pub const REVIEW_PARTITION: &str = "KYC#REVIEW";

fn attempt_key(id: &KycId) -> Item {
    key(format!("KYC#{id}"), "KYC")
}

fn profile_key(user: &UserId) -> Item {
    key(format!("USER#{user}"), "PROFILE")
}

fn claim_key(pan_hash: &str) -> Item {
    key(format!("PANCLAIM#{pan_hash}"), "PANCLAIM")
}

/// A stored attempt. The PAN and the person's details exist here only encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: KycId,
    pub user_id: UserId,
    pub provider: String,
    pub provider_reference: String,
    pub status: KycStatus,
    pub rejection_reason: Option<String>,
    pub pan_masked: String,
    pub pan_hash: String,
    /// Whether the user was referred (a verification then marks the referral due).
    pub referred: bool,
    pub needs_review: bool,
    pub submitted_at: String,
    pub updated_at: String,
    /// The administrator who decided it by hand, and why.
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
}

/// An attempt to record, after the provider accepted the check.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub id: KycId,
    pub user_id: UserId,
    pub provider: &'static str,
    pub provider_reference: String,
    /// PENDING, or the provider's synchronous VERIFIED / REJECTED.
    pub status: KycStatus,
    pub rejection_reason: Option<String>,
    pub pan_masked: String,
    pub pan_hash: String,
    pub pan_ciphertext: String,
    /// Name and date of birth, encrypted together.
    pub details_ciphertext: String,
    pub referred: bool,
}

/// Why an attempt was not recorded. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The user's KYC is PENDING or VERIFIED: no new attempt now.
    #[error("a KYC attempt is pending or verified")]
    NotAllowed,
    /// Another account holds this PAN.
    #[error("this PAN belongs to another account")]
    PanInUse,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn from_item(item: &Item) -> Result<Attempt, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("kyc attempt: {what}"));
    let opt = |name: &str| item.opt_str(name).map(str::to_owned);
    Ok(Attempt {
        id: KycId::parse(item.str("kyc_id")?).map_err(|_| corrupt("kyc_id"))?,
        user_id: UserId::parse(item.str("user_id")?).map_err(|_| corrupt("user_id"))?,
        provider: item.str("provider")?.to_owned(),
        provider_reference: item.str("provider_reference")?.to_owned(),
        status: KycStatus::parse(item.str("status")?).ok_or_else(|| corrupt("status"))?,
        rejection_reason: opt("rejection_reason"),
        pan_masked: item.str("pan_masked")?.to_owned(),
        pan_hash: item.str("pan_hash")?.to_owned(),
        referred: item.flag("referred"),
        needs_review: item.flag("needs_review"),
        submitted_at: item.str("submitted_at")?.to_owned(),
        updated_at: item.str("updated_at")?.to_owned(),
        resolved_by: opt("resolved_by"),
        resolution_note: opt("resolution_note"),
    })
}

/// One attempt, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get(table: &Table, id: &KycId) -> Result<Option<Attempt>, StoreError> {
    super::get_item(table, attempt_key(id)).await?.as_ref().map(from_item).transpose()
}

/// The KYC fields of a user's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileKyc {
    pub status: KycStatus,
    pub kyc_id: Option<KycId>,
    pub pan_masked: Option<String>,
    pub rejection_reason: Option<String>,
    pub updated_at: Option<String>,
    /// Whether the user signed up with a referral code.
    pub referred: bool,
}

/// The KYC fields of `user`'s profile; `None` when the user does not exist.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn profile(table: &Table, user: &UserId) -> Result<Option<ProfileKyc>, StoreError> {
    let Some(item) = super::get_item(table, profile_key(user)).await? else { return Ok(None) };
    Ok(Some(ProfileKyc {
        status: KycStatus::parse(item.str("kyc_status")?).ok_or_else(|| StoreError::Corrupt("kyc_status".into()))?,
        kyc_id: item.opt_str("kyc_id").and_then(|k| KycId::parse(k).ok()),
        pan_masked: item.opt_str("kyc_pan_masked").map(str::to_owned),
        rejection_reason: item.opt_str("kyc_rejection_reason").map(str::to_owned),
        updated_at: item.opt_str("kyc_updated_at").map(str::to_owned),
        referred: item.opt_str("referred_by_user_id").is_some(),
    }))
}

/// Which account holds a PAN, and whether it verified with it (`ACTIVE`, `VERIFIED`,
/// `RELEASED`).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn pan_holder(table: &Table, pan_hash: &str) -> Result<Option<(UserId, String)>, StoreError> {
    let Some(item) = super::get_item(table, claim_key(pan_hash)).await? else { return Ok(None) };
    let user = UserId::parse(item.str("user_id")?).map_err(|_| StoreError::Corrupt("pan claim".into()))?;
    Ok(Some((user, item.str("state")?.to_owned())))
}

fn claim_state(status: KycStatus) -> &'static str {
    match status {
        KycStatus::Verified => "VERIFIED",
        KycStatus::Rejected => "RELEASED",
        _ => "ACTIVE",
    }
}

/// What a change sets on the profile: the status, the rejection reason (removed when `None`),
/// and, for a new attempt, its masked PAN (which also points the profile at the attempt).
struct ProfileChange<'a> {
    status: KycStatus,
    reason: Option<&'a str>,
    pan_masked: Option<&'a str>,
}

/// The profile's KYC fields changed as `change` says for attempt `id`, under `condition`.
fn profile_update(
    table: &Table,
    user: &UserId,
    id: &KycId,
    change: ProfileChange<'_>,
    condition: &str,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    let ProfileChange { status, reason, pan_masked } = change;
    let mut set = "kyc_status = :st, kyc_updated_at = :now, updated_at = :now".to_owned();
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(profile_key(user)))
        .condition_expression(condition)
        .expression_attribute_values(":st", s(status.as_str()))
        .expression_attribute_values(":id", s(id.as_str()))
        .expression_attribute_values(":now", s(now));
    if let Some(masked) = pan_masked {
        set.push_str(", kyc_id = :id, kyc_pan_masked = :masked");
        update = update.expression_attribute_values(":masked", s(masked));
    }
    if status == KycStatus::Verified {
        // The referrer side of the referral outbox: a verified user's own referrals may now be
        // owed (see `store::referrals::VERIFIED_REFERRERS_PARTITION`).
        set.push_str(", gsi2pk = :vr, gsi2sk = :now");
        update = update.expression_attribute_values(":vr", s(super::referrals::VERIFIED_REFERRERS_PARTITION));
    }
    let expression = match reason {
        Some(r) => {
            update = update.expression_attribute_values(":reason", s(r));
            format!("SET {set}, kyc_rejection_reason = :reason")
        }
        None => format!("SET {set} REMOVE kyc_rejection_reason"),
    };
    if condition.contains(":ns") {
        update = update
            .expression_attribute_values(":ns", s(KycStatus::NotStarted.as_str()))
            .expression_attribute_values(":rej", s(KycStatus::Rejected.as_str()));
    }
    let update = update.update_expression(expression).build().map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Records a new attempt, points the profile at it and claims the PAN, in one transaction:
/// refused unless the user's KYC is NOT_STARTED or REJECTED, and unless the PAN is free, this
/// user's, or released by a rejected attempt. A synchronous verification of a referred user
/// also marks the referral due.
///
/// # Errors
/// [`RecordError`]; nothing is written in any case.
pub async fn record(table: &Table, new: &NewAttempt) -> Result<Attempt, RecordError> {
    let now = now_rfc3339();
    let mut item = attempt_key(&new.id);
    for (k, v) in [
        ("entity", "kyc_attempt"),
        ("kyc_id", new.id.as_str()),
        ("user_id", new.user_id.as_str()),
        ("provider", new.provider),
        ("provider_reference", &new.provider_reference),
        ("status", new.status.as_str()),
        ("pan_masked", &new.pan_masked),
        ("pan_hash", &new.pan_hash),
        ("pan_ciphertext", &new.pan_ciphertext),
        ("details_ciphertext", &new.details_ciphertext),
        ("submitted_at", &now),
        ("updated_at", &now),
        ("gsi1sk", &now),
    ] {
        item.insert(k.into(), s(v));
    }
    item.insert("gsi1pk".into(), s(format!("USER#{}#KYC", new.user_id)));
    item.insert("referred".into(), aws_sdk_dynamodb::types::AttributeValue::Bool(new.referred));
    if let Some(r) = &new.rejection_reason {
        item.insert("rejection_reason".into(), s(r));
    }
    let attempt = from_item(&item)?;

    let mut claim = claim_key(&new.pan_hash);
    claim.insert("user_id".into(), s(new.user_id.as_str()));
    claim.insert("kyc_id".into(), s(new.id.as_str()));
    claim.insert("state".into(), s(claim_state(new.status)));
    claim.insert("updated_at".into(), s(&now));
    let claim = aws_sdk_dynamodb::types::Put::builder()
        .table_name(&table.name)
        .set_item(Some(claim))
        .condition_expression("attribute_not_exists(pk) OR user_id = :me OR #state = :released")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":me", s(new.user_id.as_str()))
        .expression_attribute_values(":released", s("RELEASED"))
        .build()
        .map_err(StoreError::dynamo)?;

    let mut items = vec![
        put_new(table, item)?,
        profile_update(
            table,
            &new.user_id,
            &new.id,
            ProfileChange {
                status: new.status,
                reason: new.rejection_reason.as_deref(),
                pan_masked: Some(&new.pan_masked),
            },
            "attribute_exists(pk) AND kyc_status IN (:ns, :rej)",
            &now,
        )?,
        TransactWriteItem::builder().put(claim).build(),
    ];
    if new.status == KycStatus::Verified && new.referred {
        items.push(super::referrals::kyc_verified_marker(table, &new.user_id, &new.pan_hash)?);
    }
    match transact(table, items).await {
        Ok(()) => Ok(attempt),
        Err(TransactError::Store(e)) => Err(e.into()),
        Err(e) => match e.refused_at() {
            Some(1) => Err(RecordError::NotAllowed),
            Some(2) => Err(RecordError::PanInUse),
            // The attempt id is fresh, so 0 means this very write was applied before (a lost
            // answer that the token replay did not cover): report the attempt.
            Some(0) => Ok(attempt),
            _ => Err(StoreError::Dynamo(format!("kyc record refused: {e:?}")).into()),
        },
    }
}

/// The final result to apply to an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Verified,
    Rejected(String),
}

/// Who decided: the provider, or an administrator with a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    Provider,
    Admin { admin_id: UserId, note: String },
}

/// What [`finish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Applied now.
    Applied,
    /// The attempt was already final (a duplicate, a late or an outdated result): nothing changed.
    AlreadyFinal(KycStatus),
}

/// Applies the final result to a PENDING attempt, its user's profile and its PAN claim in one
/// transaction (and marks a referred user's referral due on verification). A repeat, or a
/// result for an attempt that is no longer PENDING, changes nothing.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn finish(
    table: &Table,
    attempt: &Attempt,
    decision: &Decision,
    by: &DecidedBy,
) -> Result<Finished, StoreError> {
    let now = now_rfc3339();
    let (status, reason) = match decision {
        Decision::Verified => (KycStatus::Verified, None),
        Decision::Rejected(r) => (KycStatus::Rejected, Some(r.as_str())),
    };
    let mut set = "#status = :st, updated_at = :now".to_owned();
    let mut mark = Update::builder()
        .table_name(&table.name)
        .set_key(Some(attempt_key(&attempt.id)))
        .condition_expression("#status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":st", s(status.as_str()))
        .expression_attribute_values(":pending", s(KycStatus::Pending.as_str()))
        .expression_attribute_values(":now", s(&now));
    if let Some(r) = reason {
        set.push_str(", rejection_reason = :reason");
        mark = mark.expression_attribute_values(":reason", s(r));
    }
    if let DecidedBy::Admin { admin_id, note } = by {
        set.push_str(", resolved_by = :admin, resolution_note = :note");
        mark = mark
            .expression_attribute_values(":admin", s(admin_id.as_str()))
            .expression_attribute_values(":note", s(note));
    }
    let mark = mark
        .update_expression(format!("SET {set} REMOVE gsi2pk, gsi2sk, needs_review"))
        .build()
        .map_err(StoreError::dynamo)?;
    let claim = Update::builder()
        .table_name(&table.name)
        .set_key(Some(claim_key(&attempt.pan_hash)))
        .update_expression("SET #state = :state, updated_at = :now")
        .condition_expression("kyc_id = :id")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":state", s(claim_state(status)))
        .expression_attribute_values(":id", s(attempt.id.as_str()))
        .expression_attribute_values(":now", s(&now))
        .build()
        .map_err(StoreError::dynamo)?;
    let mut items = vec![
        TransactWriteItem::builder().update(mark).build(),
        profile_update(
            table,
            &attempt.user_id,
            &attempt.id,
            ProfileChange { status, reason, pan_masked: None },
            "kyc_id = :id",
            &now,
        )?,
        TransactWriteItem::builder().update(claim).build(),
    ];
    if status == KycStatus::Verified && attempt.referred {
        items.push(super::referrals::kyc_verified_marker(table, &attempt.user_id, &attempt.pan_hash)?);
    }
    match transact(table, items).await {
        Ok(()) => Ok(Finished::Applied),
        Err(TransactError::Store(e)) => Err(e),
        Err(e) if e.refused_at() == Some(0) => {
            let now =
                get(table, &attempt.id).await?.ok_or_else(|| StoreError::Corrupt("kyc attempt vanished".into()))?;
            Ok(Finished::AlreadyFinal(now.status))
        }
        Err(e) => Err(StoreError::Dynamo(format!("kyc finish refused: {e:?}"))),
    }
}

/// Marks a PENDING attempt as needing a person (polling gave up). Returns whether it changed.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn mark_for_review(table: &Table, attempt: &Attempt, why: &str) -> Result<bool, StoreError> {
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(attempt_key(&attempt.id)))
        .update_expression("SET needs_review = :t, review_reason = :why, gsi2pk = :pk, gsi2sk = :sk, updated_at = :now")
        .condition_expression("#status = :pending AND attribute_not_exists(needs_review)")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .expression_attribute_values(":why", s(why))
        .expression_attribute_values(":pk", s(REVIEW_PARTITION))
        .expression_attribute_values(":sk", s(&attempt.submitted_at))
        .expression_attribute_values(":pending", s(KycStatus::Pending.as_str()))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .send()
        .await;
    super::update_applied(out)
}

/// Attempts awaiting a person, oldest first.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn awaiting_review(table: &Table, limit: i32) -> Result<Vec<Attempt>, StoreError> {
    super::gsi2_partition(table, REVIEW_PARTITION, limit).await?.iter().map(from_item).collect()
}
