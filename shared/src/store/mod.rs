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
//! | `LOGINFAIL#<email>`     | `LOGINFAIL` | sign-in attempts claimed in the current window     |
//! | `TXN#<transaction_id>`  | `TXN`       | a ledger movement (see [`crate::ledger`])          |
//! | `REF#<provider>#<ref>`  | `REF`       | a provider's id (Revio purchase) → movement        |
//! | `DEPCAP#<user>#<day>`   | `QUOTA`     | deposits counted against the daily limit ([`crate::ledger::Quota`]) |
//! | `CASE#<case_id>`        | `CASE`      | a deposit that needs a person ([`crate::service::cases`]) |
//! | `RECONCILE#DEPOSITS`    | `CURSOR`    | where the last reconciliation run stopped          |
//! | `IDEMPOTENCY#<scope>#<sha256(key)>` | `IDEMPOTENCY` | an Idempotency-Key claim and its stored answer |
//! | `WEBHOOK#<delivery_id>` | `WEBHOOK`   | one received webhook delivery (see [`webhooks`])  |
//! | `KYC#<kyc_id>`          | `KYC`       | one KYC attempt, PAN encrypted ([`kyc`])           |
//! | `PANCLAIM#<hmac(pan)>`  | `PANCLAIM`  | the one account a PAN belongs to ([`kyc`])         |
//! | `SERVICE#<svc_id>`      | `SERVICE`   | a game service's credential, secret by hash only ([`services`]) |
//! | `GAMEFEECAP#<user>#<day>`, `GAMEREWARDCAP#<user>#<day>` | `QUOTA` | game fees / rewards counted against the daily limit ([`crate::service::games`]) |
//!
//! Index `gsi1` lists a user's movements (`USER#<id>#TXN`, newest by `gsi1sk`) and a movement's
//! webhook deliveries (`TXN#<id>#WEBHOOKS`). Index `gsi2` is sparse: PENDING movements carry
//! `gsi2pk = PENDING#<TYPE>#<shard>`, for reconciliation; open cases `CASES#OPEN`; wallets
//! restricted by a reversal shortfall `RESTRICTED#WALLETS`; KYC attempts awaiting a person
//! `KYC#REVIEW`; referrals with an unprocessed reward event `REFERRALS#DUE`, and verified users
//! whose own referrals were not yet looked at `REFERRERS#VERIFIED` ([`referrals`]); manual
//! adjustments by month `ADJUSTMENTS#<YYYY-MM>` ([`crate::service::admin`]); every game service
//! credential `SERVICES` ([`services`]).
//! `gsi1` also lists a user's KYC attempts (`USER#<id>#KYC`) and a referrer's referrals
//! (`REFERRER#<id>`).
//!
//! Items that expire carry `expires_at` (epoch seconds), the table's TTL attribute; code that
//! depends on expiry also checks it itself, since TTL deletion is lazy.

pub mod bank_accounts;
pub mod calls;
pub mod item;
pub mod kyc;
pub mod phone;
pub mod referrals;
pub mod services;
pub mod sessions;
pub mod users;
pub mod webhooks;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::TransactWriteItem;

/// A storage failure. Callers map it to a 5xx: [`StoreError::Unavailable`] to 503 (retry
/// later), the others to 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB (or SQS) is throttling, failing with 5xx, timing out or conflicting, and the
    /// retries within the request's budget did not get through. Nothing is known to be
    /// half-applied: every multi-item change is one transaction. Safe to retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// DynamoDB refused the request for a reason retrying will not change (a bug).
    #[error("dynamodb: {0}")]
    Dynamo(String),
    /// An item does not have the shape this code wrote.
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps an SDK error (or a request-building error) with its full context, classified as
    /// [`StoreError::Unavailable`] when retrying later can succeed.
    pub fn dynamo<E: Classify>(e: E) -> Self {
        if e.is_transient() {
            StoreError::Unavailable(e.context())
        } else {
            StoreError::Dynamo(e.context())
        }
    }

    /// Whether retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Error codes AWS answers when it is overloaded or briefly failing; retrying later succeeds.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TransactionInProgressException",
    "TransactionConflict",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// What [`StoreError::dynamo`] needs to know about an error.
pub trait Classify {
    /// The error with its whole cause chain, for the log.
    fn context(&self) -> String;
    /// Whether retrying later can succeed (throttling, 5xx, timeouts, dropped connections).
    fn is_transient(&self) -> bool;
}

impl<E> Classify for SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn context(&self) -> String {
        DisplayErrorContext(self).to_string()
    }

    fn is_transient(&self) -> bool {
        match self {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(ctx) => {
                ctx.raw().status().as_u16() >= 500 || ctx.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
            }
            _ => false,
        }
    }
}

impl Classify for aws_sdk_dynamodb::error::BuildError {
    fn context(&self) -> String {
        DisplayErrorContext(self).to_string()
    }

    fn is_transient(&self) -> bool {
        false
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
        Ok(Self { client: dynamodb_client(aws), name: env.require("PURSE_TABLE")? })
    }
}

/// A DynamoDB client whose every call is bounded in time: at most
/// [`crate::retry::DYNAMODB_ATTEMPT_TIMEOUT`] per attempt and
/// [`crate::retry::DYNAMODB_OPERATION_TIMEOUT`] with the SDK's retries.
pub fn dynamodb_client(aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(crate::retry::DYNAMODB_ATTEMPT_TIMEOUT)
        .operation_timeout(crate::retry::DYNAMODB_OPERATION_TIMEOUT)
        .build();
    let config = aws_sdk_dynamodb::config::Builder::from(aws)
        .timeout_config(timeouts)
        .interceptor(crate::retry::SdkRetryMetrics)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SQS client whose every call is bounded in time like DynamoDB's (a send that hangs must not
/// outlive the request's budget).
pub fn sqs_client(aws: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(crate::retry::DYNAMODB_ATTEMPT_TIMEOUT)
        .operation_timeout(crate::retry::DYNAMODB_OPERATION_TIMEOUT)
        .build();
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(aws)
            .timeout_config(timeouts)
            .interceptor(crate::retry::SdkRetryMetrics)
            .build(),
    )
}

/// Why [`transact`] did not apply a transaction.
#[derive(Debug)]
pub enum TransactError {
    /// A condition refused it: the per-item reasons in request order (`"ConditionalCheckFailed"`,
    /// `"None"`, ...). Nothing was written.
    Refused(Vec<String>),
    /// Storage failed (after the retries that fit in the budget, when transient).
    Store(StoreError),
}

impl TransactError {
    /// The index of the first item whose condition refused the write.
    pub fn refused_at(&self) -> Option<usize> {
        match self {
            TransactError::Refused(reasons) => reasons.iter().position(|r| r == "ConditionalCheckFailed"),
            TransactError::Store(_) => None,
        }
    }
}

impl From<StoreError> for TransactError {
    fn from(e: StoreError) -> Self {
        TransactError::Store(e)
    }
}

/// Writes `items` as one `TransactWriteItems`, exactly once, surviving DynamoDB's failure modes.
///
/// The request carries a fresh `ClientRequestToken` and is built once: every repetition sends
/// the identical request, so DynamoDB's ten-minute idempotency turns a repeat of an attempt that
/// was applied but whose answer was lost into a success that changes nothing. A cancellation
/// for `TransactionConflict` (another write raced ours on an item; the SDK does not retry it)
/// and any transient failure that outlasted the SDK's own retries are repeated with
/// [`crate::retry::TRANSACT_POLICY`] while they fit in the request's budget
/// ([`crate::retry::fits`]).
///
/// # Errors
/// [`TransactError::Refused`] when a condition failed (nothing written);
/// [`TransactError::Store`] with [`StoreError::Unavailable`] when the retries ran out, or
/// another [`StoreError`] for a request DynamoDB will never accept.
pub async fn transact(table: &Table, items: Vec<TransactWriteItem>) -> Result<(), TransactError> {
    use crate::retry::{fits, RetryKind, COUNTERS, TRANSACT_POLICY};
    use std::sync::atomic::Ordering;
    let token = ulid::Ulid::new().to_string();
    let request = table.client.transact_write_items().set_transact_items(Some(items)).client_request_token(token);
    let mut attempt = 1;
    loop {
        let (failure, kind) = match request.clone().send().await {
            Ok(_) => return Ok(()),
            Err(e) => match cancellation_reasons(&e) {
                Some(reasons) if reasons.iter().any(|r| r == "ConditionalCheckFailed") => {
                    return Err(TransactError::Refused(reasons));
                }
                Some(reasons) if reasons.iter().any(|r| r == "TransactionConflict") => {
                    COUNTERS.conflicts.fetch_add(1, Ordering::Relaxed);
                    (StoreError::Unavailable(format!("transaction conflict: {reasons:?}")), RetryKind::Conflict)
                }
                // An item of the transaction was throttled (a hot item, such as a popular
                // callee's wallet): transient, retried like a conflict with the same token.
                Some(reasons)
                    if reasons.iter().any(|r| r == "ThrottlingError" || r == "ProvisionedThroughputExceeded") =>
                {
                    COUNTERS.transient.fetch_add(1, Ordering::Relaxed);
                    (StoreError::Unavailable(format!("transaction throttled: {reasons:?}")), RetryKind::Throttle)
                }
                Some(reasons) => return Err(TransactError::Refused(reasons)),
                None => {
                    let kind = crate::retry::kind_of_sdk_error(&e);
                    let err = StoreError::dynamo(e);
                    if !err.is_transient() {
                        return Err(err.into());
                    }
                    COUNTERS.transient.fetch_add(1, Ordering::Relaxed);
                    (err, kind)
                }
            },
        };
        let delay = TRANSACT_POLICY.delay(attempt, &mut rand::thread_rng());
        if attempt >= TRANSACT_POLICY.max_attempts || !fits(delay) {
            COUNTERS.exhausted.fetch_add(1, Ordering::Relaxed);
            crate::retry::record_exhausted();
            tracing::warn!(attempts = attempt, error = %failure, "transaction gave up after its retries");
            return Err(failure.into());
        }
        tracing::debug!(attempt, error = %failure, "transaction retried");
        crate::retry::record_retry(kind);
        tokio::time::sleep(delay).await;
        attempt += 1;
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

/// The first `limit` items of one partition of the sparse index `gsi2`, in `gsi2sk` order
/// (eventually consistent, like every index read).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn gsi2_partition(table: &Table, partition: &str, limit: i32) -> Result<Vec<item::Item>, StoreError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name("gsi2")
        .key_condition_expression("gsi2pk = :pk")
        .expression_attribute_values(":pk", item::s(partition))
        .limit(limit)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok(out.items.unwrap_or_default())
}

/// The first `limit` items of one partition of index `index` (`gsi1` or `gsi2`), newest first
/// by its sort key (eventually consistent, like every index read).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn index_newest(
    table: &Table,
    index: &str,
    partition: &str,
    limit: i32,
) -> Result<Vec<item::Item>, StoreError> {
    Ok(index_page(table, index, partition, limit, None).await?.0)
}

/// One page of one partition of index `index`, newest first, from `start` (the previous page's
/// last key); the page's items and the key to continue from, if there is more.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn index_page(
    table: &Table,
    index: &str,
    partition: &str,
    limit: i32,
    start: Option<item::Item>,
) -> Result<(Vec<item::Item>, Option<item::Item>), StoreError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(index)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", format!("{index}pk"))
        .expression_attribute_values(":pk", item::s(partition))
        .scan_index_forward(false)
        .limit(limit)
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    let last = out.last_evaluated_key.filter(|k| !k.is_empty());
    Ok((out.items.unwrap_or_default(), last))
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

/// The outcome of a conditional `UpdateItem`: `true` when applied, `false` when its condition
/// refused it (nothing written), a [`StoreError`] otherwise.
///
/// # Errors
/// [`StoreError`] for every failure but the condition.
pub fn update_applied<T>(
    result: Result<
        T,
        SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    >,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
        Err(e) => Err(StoreError::dynamo(e)),
    }
}

/// Sends one message to an SQS queue; the failure in words (for a log line or a retry).
///
/// # Errors
/// The SQS failure, with its whole context.
pub async fn send_message(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: String) -> Result<(), String> {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
    Ok(())
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
