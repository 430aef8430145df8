//! Sign-in sessions: families of rotating refresh tokens.
//!
//! A session (`SESSION#<id>`) owns a chain of refresh tokens (`REFRESH#<sha256>`). Rotation marks
//! the presented token USED and stores its successor in one transaction that also checks the
//! session is not revoked. Presenting a USED token again means it was stolen or replayed: the
//! whole session is revoked, so the thief's and the owner's tokens both stop working.

use super::item::{key, n, s, Item, ItemExt};
use super::{get_item as get, now_epoch, now_rfc3339, put_new as put, StoreError, Table};
use crate::auth::tokens::REFRESH_TOKEN_TTL_SECONDS;
use crate::domain::ids::{SessionId, UserId};
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};

/// Why a refresh token was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown or expired token.
    #[error("refresh token is not valid")]
    Invalid,
    /// The token was already used: the session has now been revoked.
    #[error("refresh token was already used; session revoked")]
    Reused,
    /// The session was revoked (signed out, or after a reuse).
    #[error("session revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The owner of a successfully rotated token.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub user_id: UserId,
    pub session_id: SessionId,
}

fn session_key(id: &SessionId) -> Item {
    key(format!("SESSION#{id}"), "SESSION")
}
fn refresh_key(hash: &str) -> Item {
    key(format!("REFRESH#{hash}"), "REFRESH")
}

fn token_item(hash: &str, user: &UserId, session: &SessionId, now: i64) -> Item {
    let mut item = refresh_key(hash);
    item.insert("user_id".into(), s(user.as_str()));
    item.insert("session_id".into(), s(session.as_str()));
    item.insert("state".into(), s("ACTIVE"));
    item.insert("expires_at".into(), n(now + REFRESH_TOKEN_TTL_SECONDS));
    item
}

/// Starts a session with its first refresh token (stored by hash).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn start(table: &Table, user: &UserId, session: &SessionId, token_hash: &str) -> Result<(), StoreError> {
    let now = now_epoch();
    let mut item = session_key(session);
    item.insert("user_id".into(), s(user.as_str()));
    item.insert("revoked".into(), aws_sdk_dynamodb::types::AttributeValue::Bool(false));
    item.insert("created_at".into(), s(now_rfc3339()));
    item.insert("expires_at".into(), n(now + REFRESH_TOKEN_TTL_SECONDS * 12));
    let items = vec![put(table, item)?, put(table, token_item(token_hash, user, session, now))?];
    match crate::store::transact(table, items).await {
        Ok(()) => Ok(()),
        Err(crate::store::TransactError::Store(e)) => Err(e),
        Err(crate::store::TransactError::Refused(r)) => {
            Err(StoreError::Dynamo(format!("session start refused: {r:?}")))
        }
    }
}

/// Exchanges the token with hash `old_hash` for the token with hash `new_hash`.
///
/// # Errors
/// [`RefreshError::Invalid`] for unknown/expired tokens, [`RefreshError::Reused`] (after revoking
/// the session) when the token was already used, [`RefreshError::Revoked`] for a revoked session.
pub async fn rotate(table: &Table, old_hash: &str, new_hash: &str) -> Result<Rotated, RefreshError> {
    let now = now_epoch();
    let Some(old) = get(table, refresh_key(old_hash)).await? else { return Err(RefreshError::Invalid) };
    let user_id = UserId::parse(old.str("user_id")?).map_err(|_| StoreError::Corrupt("refresh user".into()))?;
    let session_id =
        SessionId::parse(old.str("session_id")?).map_err(|_| StoreError::Corrupt("refresh session".into()))?;
    if old.int("expires_at")? <= now {
        return Err(RefreshError::Invalid);
    }

    let mark_used = Update::builder()
        .table_name(&table.name)
        .set_key(Some(refresh_key(old_hash)))
        .update_expression("SET #state = :used, used_at = :now")
        .condition_expression("#state = :active")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":used", s("USED"))
        .expression_attribute_values(":active", s("ACTIVE"))
        .expression_attribute_values(":now", n(now))
        .build()
        .map_err(StoreError::dynamo)?;
    let session_live = ConditionCheck::builder()
        .table_name(&table.name)
        .set_key(Some(session_key(&session_id)))
        .condition_expression("revoked = :no")
        .expression_attribute_values(":no", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
        .build()
        .map_err(StoreError::dynamo)?;
    // One transaction with a ClientRequestToken: a repeat of an attempt whose answer was lost
    // is answered "done" by DynamoDB, so our own retry is never mistaken for a reuse.
    let items = vec![
        TransactWriteItem::builder().update(mark_used).build(),
        TransactWriteItem::builder().condition_check(session_live).build(),
        put(table, token_item(new_hash, &user_id, &session_id, now))?,
    ];
    match crate::store::transact(table, items).await {
        Ok(()) => Ok(Rotated { user_id, session_id }),
        Err(e) => match e.refused_at() {
            Some(1) => Err(RefreshError::Revoked),
            Some(0) => {
                revoke(table, &session_id).await?;
                tracing::warn!(session_id = %session_id, "refresh token reuse detected; session revoked");
                Err(RefreshError::Reused)
            }
            _ => match e {
                crate::store::TransactError::Store(e) => Err(e.into()),
                crate::store::TransactError::Refused(r) => {
                    Err(StoreError::Dynamo(format!("refresh rotation refused: {r:?}")).into())
                }
            },
        },
    }
}

/// Revokes a whole session. Idempotent.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn revoke(table: &Table, session: &SessionId) -> Result<(), StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(session_key(session)))
        .update_expression("SET revoked = :yes, revoked_at = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(super::is_conditional_failure) => Ok(()),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

/// The session a refresh token belongs to, if the token is known.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn session_of(table: &Table, token_hash: &str) -> Result<Option<SessionId>, StoreError> {
    let Some(item) = get(table, refresh_key(token_hash)).await? else { return Ok(None) };
    Ok(SessionId::parse(item.str("session_id")?).ok())
}
