//! Users, their unique e-mails and referral codes, sign-in throttling.

use super::item::{key, n, s, Item, ItemExt};
use super::{get_item as get, now_epoch, now_rfc3339, put_new, StoreError, Table};
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
        referral.insert("referee_email_masked".into(), s(new.email.masked()));
        referral.insert("created_at".into(), s(&now));
        referral.insert("gsi1pk".into(), s(format!("REFERRER#{referrer}")));
        referral.insert("gsi1sk".into(), s(&now));
        items.push(put_new(table, referral)?);
    }

    // One transaction with a ClientRequestToken (`store::transact`): a repeat of an attempt whose
    // answer was lost is answered "done", never `email_taken` for the person's own sign-up.
    match super::transact(table, items).await {
        Ok(()) => Ok(User {
            id: new.id.clone(),
            email: new.email.clone(),
            roles: vec![Role::User],
            kyc_status: KycStatus::NotStarted,
            referral_code: new.referral_code.clone(),
            referred_by: new.referred_by.as_ref().map(|(u, _)| u.clone()),
            created_at: now,
        }),
        Err(super::TransactError::Refused(reasons)) => {
            let failed = |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
            if failed(1) {
                Err(CreateUserError::EmailTaken)
            } else if failed(2) {
                Err(CreateUserError::ReferralCodeTaken)
            } else if failed(4) {
                Err(CreateUserError::ReferrerMissing)
            } else {
                Err(StoreError::Dynamo(format!("sign-up transaction cancelled: {reasons:?}")).into())
            }
        }
        Err(super::TransactError::Store(e)) => Err(e.into()),
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

/// Sign-in attempts allowed per e-mail within [`THROTTLE_WINDOW_SECONDS`]; a successful sign-in
/// gives the allowance back, so in practice these are failed attempts.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// The window over which attempts are counted, measured from the last attempt let through: the
/// lock lasts this long after the attempt that used up the allowance.
pub const THROTTLE_WINDOW_SECONDS: i64 = 15 * 60;

/// How many sign-in attempts one e-mail gets, and over what window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Attempts let through per window.
    pub max_attempts: i64,
    /// Seconds a window lives after the last attempt let through.
    pub window_seconds: i64,
}

impl LoginThrottle {
    /// What `POST /v1/auth/login` uses: [`MAX_FAILED_LOGINS`] per [`THROTTLE_WINDOW_SECONDS`].
    pub const SIGN_IN: Self = Self { max_attempts: MAX_FAILED_LOGINS, window_seconds: THROTTLE_WINDOW_SECONDS };
}

/// Whether a sign-in attempt may check the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// A slot was claimed: check the password.
    Allowed,
    /// The allowance is used up; try again in `retry_after` seconds.
    Locked { retry_after: i64 },
}

fn throttle_key(email: &Email) -> Item {
    key(format!("LOGINFAIL#{email}"), "LOGINFAIL")
}

/// Rounds of "count in the live window, else start a new one" before giving up. Each round that
/// does not decide means another claimer changed the record between our two writes; that
/// happens at most a couple of times, so running out is treated as locked (fail safe).
const CLAIM_ROUNDS: usize = 4;

/// Claims one sign-in attempt for `email` **before** its password is checked, with conditional
/// writes only, so concurrent guesses cannot all be checked: at most `throttle.max_attempts` are
/// let through per window, however many arrive at once.
///
/// The record `LOGINFAIL#<email>` holds `attempts` and `expires_at` (epoch seconds). Each round:
///
/// 1. `UpdateItem ADD attempts :one SET expires_at = now + window`, on condition that the window
///    is live (`expires_at > now`) and `attempts < max`. Success: [`LoginAttempt::Allowed`].
/// 2. Otherwise the window is missing, stale or full. `PutItem` a new window (`attempts = 1`),
///    on condition that no live window exists (`attribute_not_exists(pk) OR expires_at <= now`).
///    Success: [`LoginAttempt::Allowed`] — of concurrent claimers racing a stale window, only
///    one can start the new one; the others fail this condition.
/// 3. That condition failed: a live window exists. If it is full, [`LoginAttempt::Locked`] until
///    it expires; if not, another claimer just started it, so go round again and count in it.
///
/// Expiry is checked here, not left to DynamoDB's TTL, which deletes lazily (and the emulator
/// never). A locked attempt writes nothing, so hammering a locked e-mail does not prolong the lock.
///
/// A write whose answer was lost and that the SDK repeats may count one attempt twice. That
/// fails safe: the e-mail locks one attempt early; it can never lock late.
///
/// # Errors
/// [`StoreError`] on storage failure; the caller must then not check the password.
pub async fn claim_login_attempt(
    table: &Table,
    email: &Email,
    throttle: LoginThrottle,
) -> Result<LoginAttempt, StoreError> {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
    for _ in 0..CLAIM_ROUNDS {
        let now = now_epoch();
        let until = now + throttle.window_seconds;
        let counted = table
            .client
            .update_item()
            .table_name(&table.name)
            .set_key(Some(throttle_key(email)))
            .update_expression("ADD attempts :one SET expires_at = :until")
            // A live record without `attempts` (written by an earlier version) counts from zero.
            .condition_expression(
                "attribute_exists(pk) AND expires_at > :now AND (attribute_not_exists(attempts) OR attempts < :max)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":max", n(throttle.max_attempts))
            .send()
            .await;
        match counted {
            Ok(_) => return Ok(LoginAttempt::Allowed),
            Err(e) if e.as_service_error().is_some_and(super::is_conditional_failure) => {}
            Err(e) => return Err(StoreError::dynamo(e)),
        }

        let mut item = throttle_key(email);
        item.insert("attempts".into(), n(1));
        item.insert("expires_at".into(), n(until));
        let started = table
            .client
            .put_item()
            .table_name(&table.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let live = match started {
            Ok(_) => return Ok(LoginAttempt::Allowed),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => match c.item() {
                    Some(old) => Some(old.clone()),
                    // The emulator may not return the old item: read it.
                    None => get(table, throttle_key(email)).await?,
                },
                _ => return Err(StoreError::dynamo(e)),
            },
        };
        // Gone again (a successful sign-in cleared it): go round and start a window.
        let Some(live) = live else { continue };
        let (attempts, expires_at) = (live.opt_int("attempts").unwrap_or(0), live.opt_int("expires_at").unwrap_or(0));
        if attempts >= throttle.max_attempts && expires_at > now {
            // Another claimer may have written its expiry a moment after our `now`.
            let retry_after = (expires_at - now_epoch()).clamp(1, throttle.window_seconds);
            return Ok(LoginAttempt::Locked { retry_after });
        }
    }
    tracing::warn!("sign-in throttle kept changing under us; treating the attempt as locked");
    Ok(LoginAttempt::Locked { retry_after: throttle.window_seconds })
}

/// Gives the allowance back after a successful sign-in.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn clear_login_attempts(table: &Table, email: &Email) -> Result<(), StoreError> {
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
