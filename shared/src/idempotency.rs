//! Exactly-once POSTs: the `Idempotency-Key` header, a port of the Powertools idempotency design.
//!
//! A client sends `Idempotency-Key: <1–255 visible ASCII characters>` with every POST that moves
//! money. [`Idempotency::run`] makes sure the operation behind it runs at most once per key and
//! that every retry gets the first answer back. The key lives in one item of the single table:
//!
//! | pk                                       | sk            | what                           |
//! |------------------------------------------|---------------|--------------------------------|
//! | `IDEMPOTENCY#<scope>#<sha256(key), hex>` | `IDEMPOTENCY` | one key's claim and its answer |
//!
//! The record's life cycle:
//!
//! 1. **Claim.** One conditional `PutItem` writes `status = IN_PROGRESS` with the request's
//!    fingerprint (SHA-256 of method, path and body), a fresh `claim_id`, `lease_until` (now +
//!    [`LEASE_SECONDS`]) and `expires_at` (now + [`RECORD_TTL_SECONDS`]). It succeeds only when no
//!    live record exists, so of many concurrent requests exactly one runs the operation.
//! 2. **Complete.** The operation's answer is stored (`status = COMPLETED`, status code, content
//!    type, body) by an update that is conditional on still holding the claim. Later requests with
//!    the same key and fingerprint get that answer replayed, marked `Idempotent-Replayed: true`.
//! 3. **Release.** An answer that says "try again" (5xx, 429, or anything carrying `Retry-After`),
//!    or one too large to store, deletes the record instead, so that a retry runs again.
//! 4. **Expire.** After [`RECORD_TTL_SECONDS`] the key is forgotten. DynamoDB's TTL deletes lazily
//!    (and the emulator never does), so every condition here treats `expires_at < now` as absent.
//! 5. **Take over.** A record still `IN_PROGRESS` after its lease belongs to a request that died
//!    (the lease outlasts the function timeout). The next request with the same fingerprint takes
//!    it over with a conditional update, so only one taker wins.
//!
//! A key is reused with a different request → 422 `idempotency_key_reused`; the first request is
//! still running → 409 `idempotency_request_in_progress` with `Retry-After: 1`.
//!
//! This guards the HTTP exchange, not the ledger: if storing the answer fails after the operation
//! took effect (logged as an error), a retry after the lease runs it again. Money movements should
//! therefore also be idempotent in their own write (e.g. a transaction id derived from the key).
//!
//! ```ignore
//! let scope = format!("{}:POST /v1/deposits", caller.user_id);
//! self.idempotency.run(&scope, &req, || self.deposit(&caller, &req)).await
//! ```

use crate::error::ApiError;
use crate::http;
use crate::store::item::{key, n, s, Item, ItemExt};
use crate::store::{is_conditional_failure, now_epoch, now_rfc3339, StoreError, Table};
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};
use std::future::Future;

/// The request header that carries the key.
pub const HEADER: &str = "idempotency-key";
/// The response header that marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;
/// How long a claim protects a running request. Must exceed the function timeout (10 s in
/// `template.yaml`), so that only a request that has certainly died is taken over.
pub const LEASE_SECONDS: i64 = 60;
/// How long a key and its stored answer are kept (the `expires_at` TTL).
pub const RECORD_TTL_SECONDS: i64 = 25 * 60 * 60;
/// Largest response body that is stored for replay; a larger answer releases the key.
pub const MAX_STORED_BODY_BYTES: usize = 64 * 1024;

const SK: &str = "IDEMPOTENCY";
const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";
/// Claim attempts before answering "in progress"; only a record that vanishes between a failed
/// claim and the read (released or expired meanwhile) needs a second one.
const MAX_CLAIM_ATTEMPTS: usize = 3;

/// A client's `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a key's shape.
    ///
    /// # Errors
    /// [`IdempotencyError::InvalidKey`] when it is empty, longer than [`MAX_KEY_LEN`] or holds
    /// anything but visible ASCII.
    pub fn parse(raw: &str) -> Result<Self, IdempotencyError> {
        let visible = raw.bytes().all(|b| b.is_ascii_graphic());
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || !visible {
            return Err(IdempotencyError::InvalidKey);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key of a request's `Idempotency-Key` header.
    ///
    /// # Errors
    /// [`IdempotencyError::KeyRequired`] when the header is absent,
    /// [`IdempotencyError::InvalidKey`] when its value is not a valid key.
    pub fn from_request(req: &Request) -> Result<Self, IdempotencyError> {
        let value = req.headers().get(HEADER).ok_or(IdempotencyError::KeyRequired)?;
        Self::parse(value.to_str().map_err(|_| IdempotencyError::InvalidKey)?)
    }

    /// The key as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why [`Idempotency::run`] did not run the operation (or could not record its answer).
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// 400 `idempotency_key_required`: the request has no `Idempotency-Key` header.
    #[error("the Idempotency-Key header is required")]
    KeyRequired,
    /// 400 `invalid_idempotency_key`: the header is not 1–255 visible ASCII characters.
    #[error("the Idempotency-Key header is not valid")]
    InvalidKey,
    /// 422 `idempotency_key_reused`: the key was used with a different method, path or body.
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    /// 409 `idempotency_request_in_progress`: the first request with this key is still running.
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    /// 500: the record could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IdempotencyError> for ApiError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::KeyRequired => ApiError::bad_request(
                "idempotency_key_required",
                "send an Idempotency-Key header (1-255 visible ASCII characters, e.g. a UUID) with this request",
            ),
            IdempotencyError::InvalidKey => ApiError::bad_request(
                "invalid_idempotency_key",
                "the Idempotency-Key header must be 1-255 visible ASCII characters",
            ),
            IdempotencyError::KeyReused => ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ),
            IdempotencyError::InProgress => ApiError::conflict(
                "idempotency_request_in_progress",
                "a request with this Idempotency-Key is still in progress; retry shortly",
            )
            .with_retry_after(1),
            IdempotencyError::Store(e) => ApiError::from(e),
        }
    }
}

/// Runs each keyed request's operation at most once and replays its answer to retries.
#[derive(Debug, Clone)]
pub struct Idempotency {
    table: Table,
}

/// Our hold on a key while the operation runs.
struct Claim {
    key: Item,
    claim_id: String,
    fingerprint: String,
}

/// What the claim step decided.
enum Outcome {
    /// We hold the key: run the operation.
    Run(Claim),
    /// The key already has an answer: send it again.
    Replay(Response<Body>),
}

impl Idempotency {
    /// Idempotency records kept in `table`.
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// Runs `f` once per `Idempotency-Key` within `scope`, and answers retries with its answer.
    ///
    /// `scope` is chosen by the caller and should name the user and the route, e.g.
    /// `"usr_123:POST /v1/deposits"`, so that keys of different users or routes never collide.
    ///
    /// Which answers are stored: every answer below 500 — success and deterministic 4xx, an
    /// `Err(ApiError)` rendered with [`http::error_response`] — and a 5xx error marked
    /// [`ApiError::final_answer`] (the provider refused) is stored and replayed as is
    /// (status, content type, body; the stored error body keeps the first request's id). An
    /// answer that invites a retry (5xx, 429, or one with a `Retry-After` header) releases the key
    /// instead, so the retry runs `f` again; so does a body over [`MAX_STORED_BODY_BYTES`].
    /// Stored 4xx errors are returned as `Ok` (already rendered); errors that release the key
    /// are returned as they came.
    ///
    /// # Errors
    /// - 400 `idempotency_key_required` when the header is missing;
    /// - 400 `invalid_idempotency_key` when it is not 1–255 visible ASCII characters;
    /// - 422 `idempotency_key_reused` when the key was used with a different method, path or body;
    /// - 409 `idempotency_request_in_progress` (`Retry-After: 1`) while the first request runs;
    /// - 500 when the record cannot be read or written before `f` runs;
    /// - whatever `f` fails with, when that error releases the key (see above).
    pub async fn run<F, Fut>(&self, scope: &str, req: &Request, f: F) -> Result<Response<Body>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Response<Body>, ApiError>>,
    {
        let idempotency_key = IdempotencyKey::from_request(req)?;
        let claim = match self.claim(scope, &idempotency_key, fingerprint(req)).await? {
            Outcome::Replay(resp) => {
                tracing::info!(status = resp.status().as_u16(), "idempotent replay");
                return Ok(resp);
            }
            Outcome::Run(claim) => claim,
        };

        let (answer, final_answer) = match f().await {
            Ok(resp) => (resp, false),
            Err(err) => {
                if !err.is_final() && invites_retry(err.status, err.retry_after.is_some()) {
                    self.release_logged(&claim).await;
                    return Err(err);
                }
                (http::error_response(&err, &http::request_id(req)), err.is_final())
            }
        };
        let has_retry_after = answer.headers().contains_key(::http::header::RETRY_AFTER);
        if !final_answer && invites_retry(answer.status(), has_retry_after) {
            self.release_logged(&claim).await;
            return Ok(answer);
        }
        match StoredBody::of(answer.body()) {
            Some(body) if body.len() <= MAX_STORED_BODY_BYTES => {
                if let Err(e) = self.complete(&claim, &answer, body).await {
                    // The operation has taken effect: the client gets its answer regardless. The
                    // record stays IN_PROGRESS until its lease passes.
                    tracing::error!(error = %e, "idempotency record could not be completed");
                }
            }
            Some(_) => {
                tracing::warn!(
                    limit = MAX_STORED_BODY_BYTES,
                    "response too large to store for idempotent replay; key released"
                );
                self.release_logged(&claim).await;
            }
            None => {
                tracing::warn!("response body of an unknown kind; key released");
                self.release_logged(&claim).await;
            }
        }
        Ok(answer)
    }

    /// Claims the key, or finds the answer (or the reason) that stops us from running.
    async fn claim(
        &self,
        scope: &str,
        idempotency_key: &IdempotencyKey,
        fingerprint: String,
    ) -> Result<Outcome, IdempotencyError> {
        let key = record_key(scope, idempotency_key);
        // One claim id for every attempt, so that an attempt whose answer was lost is recognised
        // as ours when we read the record back.
        let claim_id = ulid::Ulid::new().to_string();
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let now = now_epoch();
            let claim = Claim { key: key.clone(), claim_id: claim_id.clone(), fingerprint: fingerprint.clone() };
            if self.put_claim(&claim, now).await? {
                return Ok(Outcome::Run(claim));
            }
            let Some(record) = self.read(&key).await? else {
                continue;
            };
            if record.int("expires_at")? < now {
                continue;
            }
            if record.str("fingerprint")? != fingerprint {
                return Err(IdempotencyError::KeyReused);
            }
            if record.opt_str("claim_id") == Some(claim.claim_id.as_str()) && record.str("status")? == IN_PROGRESS {
                // Our own claim: the write was applied but its answer lost, and the SDK's repeat
                // met the record it had just written.
                return Ok(Outcome::Run(claim));
            }
            match record.str("status")? {
                COMPLETED => return Ok(Outcome::Replay(replay(&record)?)),
                IN_PROGRESS if record.int("lease_until")? >= now => return Err(IdempotencyError::InProgress),
                IN_PROGRESS => {
                    if self.take_over(&claim, now).await? {
                        tracing::warn!("took over an idempotency key whose request never finished");
                        return Ok(Outcome::Run(claim));
                    }
                }
                other => return Err(StoreError::Corrupt(format!("idempotency record status {other}")).into()),
            }
        }
        Err(IdempotencyError::InProgress)
    }

    /// The single conditional put that claims a key; `false` when a live record exists.
    async fn put_claim(&self, claim: &Claim, now: i64) -> Result<bool, StoreError> {
        let mut item = claim.key.clone();
        item.insert("entity".into(), s("idempotency"));
        item.insert("status".into(), s(IN_PROGRESS));
        item.insert("fingerprint".into(), s(&claim.fingerprint));
        item.insert("claim_id".into(), s(&claim.claim_id));
        item.insert("lease_until".into(), n(now + LEASE_SECONDS));
        item.insert("expires_at".into(), n(now + RECORD_TTL_SECONDS));
        item.insert("created_at".into(), s(now_rfc3339()));
        let result = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(StoreError::dynamo(e)),
        }
    }

    /// Takes over an abandoned claim (same request, lease passed); `false` when another taker won.
    async fn take_over(&self, claim: &Claim, now: i64) -> Result<bool, StoreError> {
        let result = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(claim.key.clone()))
            .update_expression("SET claim_id = :claim, lease_until = :lease, expires_at = :expires")
            .condition_expression(
                "#status = :in_progress AND fingerprint = :fp AND lease_until < :now AND expires_at >= :now",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .expression_attribute_values(":lease", n(now + LEASE_SECONDS))
            .expression_attribute_values(":expires", n(now + RECORD_TTL_SECONDS))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":fp", s(&claim.fingerprint))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(StoreError::dynamo(e)),
        }
    }

    async fn read(&self, key: &Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        Ok(out.item)
    }

    /// Stores the answer, if we still hold the claim.
    async fn complete(&self, claim: &Claim, answer: &Response<Body>, body: StoredBody) -> Result<(), StoreError> {
        let mut update =
            String::from("SET #status = :completed, response_status = :code, completed_at = :at REMOVE lease_until");
        let mut request = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(claim.key.clone()))
            .condition_expression("#status = :in_progress AND claim_id = :claim AND fingerprint = :fp")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":code", n(answer.status().as_u16()))
            .expression_attribute_values(":at", s(now_rfc3339()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .expression_attribute_values(":fp", s(&claim.fingerprint));
        let content_type = answer.headers().get(::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if let Some(content_type) = content_type {
            update = update.replacen(" REMOVE", ", response_content_type = :ct REMOVE", 1);
            request = request.expression_attribute_values(":ct", s(content_type));
        }
        if let Some(body) = body.into_attribute() {
            update = update.replacen(" REMOVE", ", response_body = :body REMOVE", 1);
            request = request.expression_attribute_values(":body", body);
        }
        match request.update_expression(update).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                tracing::warn!("idempotency claim was taken over before the answer was stored");
                Ok(())
            }
            Err(e) => Err(StoreError::dynamo(e)),
        }
    }

    /// Deletes the record, if we still hold the claim, so that a retry runs again.
    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let result = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .set_key(Some(claim.key.clone()))
            .condition_expression("#status = :in_progress AND claim_id = :claim")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(()),
            Err(e) => Err(StoreError::dynamo(e)),
        }
    }

    /// [`Self::release`], logging a failure: the lease then frees the key a little later.
    async fn release_logged(&self, claim: &Claim) {
        if let Err(e) = self.release(claim).await {
            tracing::error!(error = %e, "idempotency key could not be released; it frees when its lease passes");
        }
    }
}

/// The `pk`/`sk` of the record for `key` within `scope` (for operators and tests).
///
/// The key is hashed, which bounds the item key's length whatever the client sent.
pub fn record_key(scope: &str, idempotency_key: &IdempotencyKey) -> Item {
    key(format!("IDEMPOTENCY#{scope}#{}", sha256_hex(idempotency_key.as_str().as_bytes())), SK)
}

/// What identifies the operation behind a keyed request: its record's key, i.e. the scope and
/// the SHA-256 of the client's key. An operation derives the ids of what it creates from it
/// (e.g. [`crate::domain::ids::TransactionId::derived_from`]), so that a repeat of a request
/// whose answer was lost meets the first attempt's records instead of creating new ones.
///
/// # Errors
/// As [`IdempotencyKey::from_request`].
pub fn operation_key(scope: &str, req: &Request) -> Result<String, IdempotencyError> {
    let key = IdempotencyKey::from_request(req)?;
    Ok(record_key(scope, &key)["pk"].as_s().map(String::to_owned).unwrap_or_default())
}

/// SHA-256 over method, path and body, each length-prefixed so no two requests share a preimage.
pub fn fingerprint(req: &Request) -> String {
    let mut hasher = Sha256::new();
    for part in [req.method().as_str().as_bytes(), req.uri().path().as_bytes(), http::body_bytes(req)] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether an answer tells the client to try again later, so it must not be stored.
fn invites_retry(status: ::http::StatusCode, has_retry_after: bool) -> bool {
    status.is_server_error() || status == ::http::StatusCode::TOO_MANY_REQUESTS || has_retry_after
}

/// A response body in the form it is stored: text as `S`, bytes as `B`, no body as no attribute.
enum StoredBody {
    Empty,
    Text(String),
    Binary(Vec<u8>),
}

impl StoredBody {
    /// `None` for a body kind this code does not know, which cannot be stored.
    fn of(body: &Body) -> Option<Self> {
        match body {
            Body::Empty => Some(Self::Empty),
            Body::Text(t) => Some(Self::Text(t.clone())),
            Body::Binary(b) => Some(Self::Binary(b.clone())),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    fn into_attribute(self) -> Option<AttributeValue> {
        match self {
            Self::Empty => None,
            Self::Text(t) => Some(AttributeValue::S(t)),
            Self::Binary(b) => Some(AttributeValue::B(b.into())),
        }
    }
}

/// The stored answer, marked as a replay.
fn replay(record: &Item) -> Result<Response<Body>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("idempotency record: {what}"));
    let status = u16::try_from(record.int("response_status")?).map_err(|_| corrupt("response_status"))?;
    let body = match record.get("response_body") {
        None => Body::Empty,
        Some(AttributeValue::S(t)) => Body::Text(t.clone()),
        Some(AttributeValue::B(b)) => Body::Binary(b.clone().into_inner()),
        Some(_) => return Err(corrupt("response_body")),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(::http::header::CACHE_CONTROL, "no-store")
        .header(REPLAYED_HEADER, "true");
    if let Some(content_type) = record.opt_str("response_content_type") {
        builder = builder.header(::http::header::CONTENT_TYPE, content_type);
    }
    builder.body(body).map_err(|e| corrupt(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("0b6f1c4e-9d7a-4c1e-8a57-3f2d1e0c9b8a").is_ok());
        for bad in [String::new(), "k".repeat(256), "has space".into(), "tab\t".into(), "é".into()] {
            assert!(matches!(IdempotencyKey::parse(&bad), Err(IdempotencyError::InvalidKey)), "{bad:?}");
        }
    }

    #[test]
    fn only_answers_that_invite_a_retry_release_the_key() {
        use ::http::StatusCode;
        assert!(!invites_retry(StatusCode::OK, false));
        assert!(!invites_retry(StatusCode::CREATED, false));
        assert!(!invites_retry(StatusCode::UNPROCESSABLE_ENTITY, false));
        assert!(invites_retry(StatusCode::CONFLICT, true));
        assert!(invites_retry(StatusCode::TOO_MANY_REQUESTS, false));
        assert!(invites_retry(StatusCode::INTERNAL_SERVER_ERROR, false));
        assert!(invites_retry(StatusCode::SERVICE_UNAVAILABLE, false));
    }

    #[test]
    fn record_keys_are_scoped_and_bounded() {
        let key = IdempotencyKey::parse(&"k".repeat(255)).unwrap();
        let a = record_key("usr_a:POST /v1/deposits", &key);
        let b = record_key("usr_b:POST /v1/deposits", &key);
        assert_ne!(a["pk"], b["pk"]);
        assert_eq!(a["pk"].as_s().unwrap().len(), "IDEMPOTENCY#usr_a:POST /v1/deposits#".len() + 64);
    }
}
