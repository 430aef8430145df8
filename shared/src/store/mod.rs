//! DynamoDB adapter: the single table, its key layout, and the repositories over it.
//!
//! One table (`PurseTable` in `template.yaml`) holds every entity under a typed partition key:
//!
//! | pk                      | sk          | what                                              |
//! |-------------------------|-------------|---------------------------------------------------|
//! | `USER#<user_id>`        | `PROFILE`   | profile, password hash, roles, KYC status         |
//! | `EMAIL#<email>`         | `EMAIL`     | uniqueness of a normalised e-mail → user id       |
//! | `REFCODE#<code>`        | `REFCODE`   | uniqueness of a referral code → user id           |
//! | `REFERRAL#<referee>`    | `REFERRAL`  | referral record (PENDING → COMPLETED)             |
//! | `ACCOUNT#<account_id>`  | `ACCOUNT`   | ledger account: balance, held, available          |
//! | `SESSION#<session_id>`  | `SESSION`   | a refresh-token family, revocable as a whole      |
//! | `REFRESH#<sha256>`      | `REFRESH`   | one refresh token, by hash only                   |
//! | `LOGINFAIL#<email>`     | `LOGINFAIL` | failed sign-in counter for throttling             |
//! | `TXN#<transaction_id>`  | `TXN`       | a ledger movement (see [`crate::ledger`])          |
//! | `REF#<provider>#<ref>`  | `REF`       | a provider's id (Revio purchase) → movement        |
//! | `DEPCAP#<user>#<day>`   | `DEPCAP`    | deposits counted against the daily limit           |
//! | `IDEMPOTENCY#<scope>#<sha256(key)>` | `IDEMPOTENCY` | an Idempotency-Key claim and its stored answer |
//! | `WEBHOOK#<delivery_id>` | `WEBHOOK`   | one received webhook delivery (see [`webhooks`])  |
//! | `WHEVENT#<provider>#<event>` | `WHEVENT` | de-duplication of a provider event          |
//!
//! Index `gsi1` lists a user's movements (`USER#<id>#TXN`, newest by `gsi1sk`) and a movement's
//! webhook deliveries (`TXN#<id>#WEBHOOKS`). Index `gsi2` is sparse: only PENDING movements carry
//! `gsi2pk = PENDING#<TYPE>#<shard>`, for reconciliation.
//!
//! Items that expire carry `expires_at` (epoch seconds), the table's TTL attribute; code that
//! depends on expiry also checks it itself, since TTL deletion is lazy.

pub mod item;
pub mod sessions;
pub mod users;
pub mod webhooks;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};

/// A storage failure. Callers map it to a 5xx.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused or failed the request.
    #[error("dynamodb: {0}")]
    Dynamo(String),
    /// An item does not have the shape this code wrote.
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps any SDK error with its full context.
    pub fn dynamo<E: std::error::Error + 'static>(e: E) -> Self {
        StoreError::Dynamo(DisplayErrorContext(&e).to_string())
    }
}

/// The DynamoDB table and its client, built once per cold start.
#[derive(Debug, Clone)]
pub struct Table {
    pub client: aws_sdk_dynamodb::Client,
    pub name: String,
}

impl Table {
    /// The table named by `PURSE_TABLE`.
    ///
    /// # Errors
    /// [`crate::config::InitError::MissingEnv`] when `PURSE_TABLE` is unset.
    pub fn from_env(env: &crate::config::Env, aws: &aws_config::SdkConfig) -> Result<Self, crate::config::InitError> {
        Ok(Self { client: aws_sdk_dynamodb::Client::new(aws), name: env.require("PURSE_TABLE")? })
    }
}

/// A transaction item that creates `item` only if no item with its key exists.
///
/// # Errors
/// [`StoreError`] when the request cannot be built.
pub fn put_new(table: &Table, item: item::Item) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, StoreError> {
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(StoreError::dynamo)?;
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder().put(put).build())
}

/// One item by key, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_item(table: &Table, key: item::Item) -> Result<Option<item::Item>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok(out.item)
}

/// The per-item reasons of a cancelled `TransactWriteItems`, in request order
/// (`"ConditionalCheckFailed"`, `"None"`, `"TransactionConflict"`, ...), or `None` when the
/// error is not a cancellation.
pub fn cancellation_reasons<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            Some(e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect())
        }
        _ => None,
    }
}

/// Whether an error is DynamoDB's `ConditionalCheckFailedException`.
pub fn is_conditional_failure<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// Now, in epoch seconds.
pub fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Now, as RFC 3339 with milliseconds (sorts as text).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
