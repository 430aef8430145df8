//! Users, their unique e-mails and referral codes, sign-in throttling.

use super::item::{key, n, s, Item, ItemExt};
use super::{cancellation_reasons, get_item as get, now_epoch, now_rfc3339, put_new, StoreError, Table};
use crate::domain::ids::UserId;
use crate::domain::user::{Email, KycStatus, ReferralCode, Role};
use crate::ledger::AccountId;
use crate::money::Currency;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};

/// A stored user (the password hash is kept apart, in [`Credentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub roles: Vec<Role>,
    pub kyc_status: KycStatus,
    pub referral_code: ReferralCode,
    pub referred_by: Option<UserId>,
    pub created_at: String,
}

/// What sign-in needs: the user and the stored password hash.
#[derive(Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

/// A new user, ready to be written.
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub password_hash: String,
    pub referral_code: ReferralCode,
    pub referred_by: Option<(UserId, ReferralCode)>,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account has this e-mail.
    #[error("email already registered")]
    EmailTaken,
    /// The generated referral code collided; generate another and retry.
    #[error("referral code collision")]
    ReferralCodeTaken,
    /// The referral code given at sign-up no longer belongs to anyone.
    #[error("referrer vanished")]
    ReferrerMissing,
    /// A concurrent transaction touched the same items; safe to retry.
    #[error("transaction conflict")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn user_pk(id: &UserId) -> String {
    format!("USER#{id}")
}
fn email_pk(email: &Email) -> String {
    format!("EMAIL#{email}")
}
fn refcode_pk(code: &ReferralCode) -> String {
    format!("REFCODE#{}", code.as_str())
}

/// Creates the user, the e-mail and referral-code claims, the wallet, and the referral record in
/// one transaction: either all exist afterwards or none.
///
/// # Errors
/// [`CreateUserError::EmailTaken`] when the e-mail is claimed (also by a concurrent sign-up),
/// [`CreateUserError::ReferralCodeTaken`] on a code collision, [`CreateUserError::ReferrerMissing`]
/// when the referrer's code vanished.
pub async fn create(table: &Table, new: &NewUser) -> Result<User, CreateUserError> {
    let now = now_rfc3339();
    let mut profile = key(user_pk(&new.id), "PROFILE");
    profile.insert("entity".into(), s("user"));
    profile.insert("user_id".into(), s(new.id.as_str()));
    profile.insert("email".into(), s(new.email.as_str()));
    profile.insert("password_hash".into(), s(&new.password_hash));
    profile.insert("roles".into(), AttributeValue::L(vec![s(Role::User.as_str())]));
    profile.insert("kyc_status".into(), s(KycStatus::NotStarted.as_str()));
    profile.insert("referral_code".into(), s(new.referral_code.as_str()));
    profile.insert("created_at".into(), s(&now));
    profile.insert("updated_at".into(), s(&now));
    if let Some((referrer, code)) = &new.referred_by {
        profile.insert("referred_by_user_id".into(), s(referrer.as_str()));
        profile.insert("referred_by_code".into(), s(code.as_str()));
    }

    let mut email = key(email_pk(&new.email), "EMAIL");
    email.insert("user_id".into(), s(new.id.as_str()));

    let mut code = key(refcode_pk(&new.referral_code), "REFCODE");
    code.insert("user_id".into(), s(new.id.as_str()));

    let wallet =
        crate::ledger::store::new_account_item(&AccountId::wallet(&new.id), Currency::Coin, Some(&new.id), &now);

    let mut items =
        vec![put_new(table, profile)?, put_new(table, email)?, put_new(table, code)?, put_new(table, wallet)?];
    if let Some((referrer, referrer_code)) = &new.referred_by {
        let check = ConditionCheck::builder()
            .table_name(&table.name)
            .set_key(Some(key(refcode_pk(referrer_code), "REFCODE")))
            .condition_expression("user_id = :referrer")
            .expression_attribute_values(":referrer", s(referrer.as_str()))
            .build()
            .map_err(StoreError::dynamo)?;
        items.push(TransactWriteItem::builder().condition_check(check).build());
        let mut referral = key(format!("REFERRAL#{}", new.id), "REFERRAL");
        referral.insert("entity".into(), s("referral"));
        referral.insert("referral_id".into(), s(format!("ref_{}", ulid::Ulid::new())));
        referral.insert("referrer_user_id".into(), s(referrer.as_str()));
        referral.insert("referee_user_id".into(), s(new.id.as_str()));
        referral.insert("status".into(), s("PENDING"));
        referral.insert("created_at".into(), s(&now));
        referral.insert("gsi1pk".into(), s(format!("REFERRER#{referrer}")));
        referral.insert("gsi1sk".into(), s(&now));
        items.push(put_new(table, referral)?);
    }

    let result = table.client.transact_write_items().set_transact_items(Some(items)).send().await;
    match result {
        Ok(_) => Ok(User {
            id: new.id.clone(),
            email: new.email.clone(),
            roles: vec![Role::User],
            kyc_status: KycStatus::NotStarted,
            referral_code: new.referral_code.clone(),
            referred_by: new.referred_by.as_ref().map(|(u, _)| u.clone()),
            created_at: now,
        }),
        Err(e) => match cancellation_reasons(&e) {
            Some(reasons) => {
                let failed = |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
                if failed(1) {
                    Err(CreateUserError::EmailTaken)
                } else if failed(2) {
                    Err(CreateUserError::ReferralCodeTaken)
                } else if failed(4) {
                    Err(CreateUserError::ReferrerMissing)
                } else if reasons.iter().any(|r| r == "TransactionConflict") {
                    Err(CreateUserError::Conflict)
                } else {
                    Err(StoreError::Dynamo(format!("sign-up transaction cancelled: {reasons:?}")).into())
                }
            }
            None => Err(StoreError::dynamo(e).into()),
        },
    }
}

fn user_from_item(item: &Item) -> Result<User, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("user item: {what}"));
    Ok(User {
        id: UserId::parse(item.str("user_id")?).map_err(|_| corrupt("user_id"))?,
        email: Email::parse(item.str("email")?).map_err(|_| corrupt("email"))?,
        roles: item.str_list("roles").iter().filter_map(|r| Role::parse(r)).collect(),
        kyc_status: KycStatus::parse(item.str("kyc_status")?).ok_or_else(|| corrupt("kyc_status"))?,
        referral_code: ReferralCode::parse(item.str("referral_code")?).map_err(|_| corrupt("referral_code"))?,
        referred_by: item.opt_str("referred_by_user_id").and_then(|u| UserId::parse(u).ok()),
        created_at: item.str("created_at")?.to_owned(),
    })
}

/// The user with this id.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_user(table: &Table, id: &UserId) -> Result<Option<User>, StoreError> {
    get(table, key(user_pk(id), "PROFILE")).await?.map(|i| user_from_item(&i)).transpose()
}

/// The user owning this e-mail, with their password hash.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn credentials_by_email(table: &Table, email: &Email) -> Result<Option<Credentials>, StoreError> {
    let Some(claim) = get(table, key(email_pk(email), "EMAIL")).await? else { return Ok(None) };
    let id = UserId::parse(claim.str("user_id")?).map_err(|_| StoreError::Corrupt("email claim".into()))?;
    let Some(item) = get(table, key(user_pk(&id), "PROFILE")).await? else { return Ok(None) };
    Ok(Some(Credentials { user: user_from_item(&item)?, password_hash: item.str("password_hash")?.to_owned() }))
}

/// The user a referral code belongs to.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn user_id_by_referral_code(table: &Table, code: &ReferralCode) -> Result<Option<UserId>, StoreError> {
    let Some(item) = get(table, key(refcode_pk(code), "REFCODE")).await? else { return Ok(None) };
    UserId::parse(item.str("user_id")?).map(Some).map_err(|_| StoreError::Corrupt("referral code claim".into()))
}

/// Grants a role (operator command only; no request path reaches this).
///
/// # Errors
/// [`StoreError`] on storage failure or when the user does not exist.
pub async fn grant_role(table: &Table, id: &UserId, role: Role) -> Result<(), StoreError> {
    let user = get_user(table, id).await?.ok_or_else(|| StoreError::Corrupt(format!("no user {id}")))?;
    let mut roles = user.roles;
    if !roles.contains(&role) {
        roles.push(role);
    }
    table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(key(user_pk(id), "PROFILE")))
        .update_expression("SET #roles = :roles, updated_at = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#roles", "roles")
        .expression_attribute_values(":roles", AttributeValue::L(roles.iter().map(|r| s(r.as_str())).collect()))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok(())
}

/// Failed sign-ins allowed within [`THROTTLE_WINDOW_SECONDS`] before the account is locked.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// Window over which failures are counted, and how long a lock lasts.
pub const THROTTLE_WINDOW_SECONDS: i64 = 15 * 60;

fn throttle_key(email: &Email) -> Item {
    key(format!("LOGINFAIL#{email}"), "LOGINFAIL")
}

/// Seconds until sign-in is allowed again for this e-mail, if it is locked.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn login_locked_for(table: &Table, email: &Email) -> Result<Option<i64>, StoreError> {
    let Some(item) = get(table, throttle_key(email)).await? else { return Ok(None) };
    let now = now_epoch();
    Ok(item.opt_int("locked_until").filter(|until| *until > now).map(|until| until - now))
}

/// Counts one failed sign-in; locks the e-mail once [`MAX_FAILED_LOGINS`] are reached within the
/// window. Counting is a single atomic update, so concurrent guesses cannot slip past the limit.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn record_failed_login(table: &Table, email: &Email) -> Result<(), StoreError> {
    let now = now_epoch();
    // Count within the current window; a stale window starts over.
    let counted = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(throttle_key(email)))
        .update_expression("ADD failures :one")
        .condition_expression("attribute_exists(pk) AND expires_at > :now")
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":now", n(now))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .send()
        .await;
    let failures = match counted {
        Ok(out) => out.attributes.and_then(|a| a.opt_int("failures")).unwrap_or(1),
        Err(e) if e.as_service_error().is_some_and(super::is_conditional_failure) => {
            let mut item = throttle_key(email);
            item.insert("failures".into(), n(1));
            item.insert("expires_at".into(), n(now + THROTTLE_WINDOW_SECONDS));
            table
                .client
                .put_item()
                .table_name(&table.name)
                .set_item(Some(item))
                .send()
                .await
                .map_err(StoreError::dynamo)?;
            1
        }
        Err(e) => return Err(StoreError::dynamo(e)),
    };
    if failures >= MAX_FAILED_LOGINS {
        table
            .client
            .update_item()
            .table_name(&table.name)
            .set_key(Some(throttle_key(email)))
            .update_expression("SET locked_until = :until, expires_at = :until")
            .expression_attribute_values(":until", n(now + THROTTLE_WINDOW_SECONDS))
            .send()
            .await
            .map_err(StoreError::dynamo)?;
    }
    Ok(())
}

/// Forgets failed sign-ins after a successful one.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn clear_failed_logins(table: &Table, email: &Email) -> Result<(), StoreError> {
    table
        .client
        .delete_item()
        .table_name(&table.name)
        .set_key(Some(throttle_key(email)))
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok(())
}
