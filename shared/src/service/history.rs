//! Transaction history: the caller's movements, newest first, filtered and paginated by a
//! DynamoDB Query on the `gsi1` index (never a Scan).
//!
//! The page cursor is opaque: the position (the index sort key and id of the last item
//! examined) plus an HMAC-SHA256 over the position, the caller's id and the filters. A cursor
//! cannot be edited, and another user's cursor (or one from other filters) is refused.

use crate::domain::ids::{TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, history_partition, transaction_from_item, transaction_key};
use crate::ledger::{TransactionStatus, TransactionType};
use crate::service::views::TransactionView;
use crate::store::item::{s, Item, ItemExt};
use crate::store::{StoreError, Table};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Index pages read per request at most, so a sparse filter cannot make one request unbounded.
const MAX_PAGES_PER_REQUEST: usize = 10;

/// Filters of `GET /v1/transactions`, as parsed from the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub kind: Option<TransactionType>,
    pub status: Option<TransactionStatus>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: usize,
}

fn normalize_time(name: &str, text: &str) -> Result<String, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_filter",
                format!("{name} must be an RFC 3339 time such as 2026-11-01T00:00:00Z"),
            )
        })
}

impl Filters {
    /// Parses the query parameters.
    ///
    /// # Errors
    /// 400 `invalid_filter` / `invalid_limit` naming the parameter.
    pub fn parse(
        kind: Option<&str>,
        status: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Self, ApiError> {
        let kind = kind
            .map(|k| {
                TransactionType::parse(k).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_filter",
                        format!("type must be one of {}", TransactionType::ALL.map(|t| t.as_str()).join(", ")),
                    )
                })
            })
            .transpose()?;
        let status = status
            .map(|k| {
                TransactionStatus::parse(k).ok_or_else(|| {
                    ApiError::bad_request("invalid_filter", "status must be PENDING, COMPLETED or FAILED")
                })
            })
            .transpose()?;
        let from = from.map(|f| normalize_time("from", f)).transpose()?;
        let to = to.map(|t| normalize_time("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (&from, &to) {
            if f > t {
                return Err(ApiError::bad_request("invalid_filter", "from must not be after to"));
            }
        }
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) => l.parse::<usize>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                ApiError::bad_request("invalid_limit", format!("limit must be a whole number from 1 to {MAX_LIMIT}"))
            })?,
        };
        Ok(Self { kind, status, from, to, limit })
    }

    fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.kind.map(TransactionType::as_str).unwrap_or(""),
            self.status.map(TransactionStatus::as_str).unwrap_or(""),
            self.from.as_deref().unwrap_or(""),
            self.to.as_deref().unwrap_or(""),
            self.limit
        )
    }
}

/// A page of history.
#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<TransactionView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Position {
    /// `gsi1sk` of the last examined item.
    k: String,
    /// Its transaction id.
    t: String,
}

/// The longest cursor accepted (ours are about 150 characters).
pub const MAX_CURSOR_CHARS: usize = 1024;

/// Signs and checks page cursors with a key set of their own (`CURSOR_KEYS_SECRET_ID`, the same
/// `{"active_kid", "keys"}` document as the JWT keys, rotated apart from them): a cursor names
/// the key that signed it, so cursors issued before a rotation keep working while their key
/// stays in the set, and rotating the JWT key never touches pagination.
#[derive(Clone)]
pub struct CursorSigner {
    keys: crate::auth::tokens::SigningKeys,
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSigner(<redacted>)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CursorSigner {
    /// A signer over this key set.
    pub fn new(keys: crate::auth::tokens::SigningKeys) -> Self {
        Self { keys }
    }

    /// Loads the key set named by `CURSOR_KEYS_SECRET_ID`.
    ///
    /// # Errors
    /// [`crate::config::InitError`] naming the missing variable or the unloadable secret.
    pub async fn from_env(
        env: &crate::config::Env,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::InitError> {
        let secret_id = env.require("CURSOR_KEYS_SECRET_ID")?;
        let text = crate::secrets::load(aws, &secret_id).await?;
        let keys = crate::auth::tokens::SigningKeys::from_json(text.expose())
            .map_err(|reason| crate::config::InitError::Secret { id: secret_id.clone(), reason })?;
        Ok(Self::new(keys))
    }

    fn mac(key: &[u8], user: &UserId, filters: &Filters, kid: &str, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"purse-history-cursor-v2\0");
        mac.update(kid.as_bytes());
        mac.update(b"\0");
        mac.update(user.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(filters.fingerprint().as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    fn encode(&self, user: &UserId, filters: &Filters, position: &Position) -> String {
        let (kid, key) = self.keys.active();
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default());
        let tag = Self::mac(key, user, filters, kid, &payload).finalize().into_bytes();
        format!("{kid}.{payload}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag))
    }

    fn decode(&self, user: &UserId, filters: &Filters, cursor: &str) -> Result<Position, ApiError> {
        let invalid = || {
            ApiError::bad_request("invalid_cursor", "the cursor is not valid for this listing; start again without one")
        };
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid());
        }
        let mut parts = cursor.splitn(3, '.');
        let (Some(kid), Some(payload), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let key = self.keys.get(kid).ok_or_else(invalid)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        Self::mac(key, user, filters, kid, payload).verify_slice(&tag).map_err(|_| invalid())?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

/// One page of `user`'s history.
///
/// # Errors
/// 400 `invalid_cursor` for a forged, edited or foreign cursor; 5xx on storage failure.
pub async fn list(
    table: &Table,
    signer: &CursorSigner,
    user: &UserId,
    filters: &Filters,
    cursor: Option<&str>,
) -> Result<Page, ApiError> {
    let partition = history_partition(user);
    let mut start: Option<Item> = match cursor {
        None => None,
        Some(c) => {
            let pos = signer.decode(user, filters, c)?;
            let id = TransactionId::parse(&pos.t)
                .map_err(|_| ApiError::bad_request("invalid_cursor", "the cursor is not valid"))?;
            let mut k = transaction_key(&id);
            k.insert("gsi1pk".into(), s(&partition));
            k.insert("gsi1sk".into(), s(pos.k));
            Some(k)
        }
    };
    let mut conditions = vec!["gsi1pk = :pk".to_owned()];
    let mut values: Vec<(&str, String)> = vec![(":pk", partition.clone())];
    match (&filters.from, &filters.to) {
        (Some(f), Some(t)) => {
            conditions.push("gsi1sk BETWEEN :from AND :to".into());
            values.push((":from", f.clone()));
            values.push((":to", format!("{t}~")));
        }
        (Some(f), None) => {
            conditions.push("gsi1sk >= :from".into());
            values.push((":from", f.clone()));
        }
        (None, Some(t)) => {
            conditions.push("gsi1sk <= :to".into());
            values.push((":to", format!("{t}~")));
        }
        (None, None) => {}
    }
    let mut filter_parts = Vec::new();
    if let Some(k) = filters.kind {
        filter_parts.push("#type = :type");
        values.push((":type", k.as_str().to_owned()));
    }
    if let Some(st) = filters.status {
        filter_parts.push("#status = :status");
        values.push((":status", st.as_str().to_owned()));
    }

    let mut items = Vec::new();
    let mut next: Option<Position> = None;
    for _ in 0..MAX_PAGES_PER_REQUEST {
        let mut q = table
            .client
            .query()
            .table_name(&table.name)
            .index_name("gsi1")
            .key_condition_expression(conditions.join(" AND "))
            .scan_index_forward(false)
            .limit(i32::try_from(filters.limit - items.len()).unwrap_or(1).max(1))
            .set_exclusive_start_key(start.take());
        for (name, value) in &values {
            q = q.expression_attribute_values(*name, s(value));
        }
        if !filter_parts.is_empty() {
            q = q.filter_expression(filter_parts.join(" AND "));
            if filters.kind.is_some() {
                q = q.expression_attribute_names("#type", "type");
            }
            if filters.status.is_some() {
                q = q.expression_attribute_names("#status", "status");
            }
        }
        let out = q.send().await.map_err(|e| ApiError::from(StoreError::dynamo(e)))?;
        for item in out.items() {
            let tx = transaction_from_item(item)?;
            items.push(TransactionView::of(&tx, user));
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => {
                next = Some(Position {
                    k: k.str("gsi1sk")?.to_owned(),
                    t: k.str("pk")?.trim_start_matches("TXN#").to_owned(),
                });
                if items.len() >= filters.limit {
                    break;
                }
                start = Some(k);
            }
            _ => {
                next = None;
                break;
            }
        }
    }
    Ok(Page { items, next_cursor: next.map(|p| signer.encode(user, filters, &p)) })
}

/// One of the caller's movements. Another user's id answers exactly like a missing one.
///
/// # Errors
/// 404 `not_found` for malformed, missing and foreign ids alike.
pub async fn get(table: &Table, user: &UserId, id: &str) -> Result<TransactionView, ApiError> {
    let not_found = || ApiError::not_found("no such transaction");
    let id = TransactionId::parse(id).map_err(|_| not_found())?;
    let tx = ledger::get_transaction(table, &id).await?.ok_or_else(not_found)?;
    if &tx.user_id != user {
        return Err(not_found());
    }
    Ok(TransactionView::of(&tx, user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::SigningKeys;

    fn position() -> Position {
        Position { k: "2026-12-02T10:00:00.000Z#txn_x".into(), t: "txn_x".into() }
    }

    #[test]
    fn a_cursor_outlives_a_rotation_of_its_key_until_the_old_key_is_retired() {
        let user = UserId::generate();
        let filters = Filters::parse(None, None, None, None, None).unwrap();
        let mut keys = SigningKeys::random("c1");
        let cursor = CursorSigner::new(keys.clone()).encode(&user, &filters, &position());
        assert!(cursor.starts_with("c1."), "{cursor}");

        keys.add_random("c2").unwrap();
        keys.activate("c2").unwrap();
        let rotated = CursorSigner::new(keys.clone());
        assert_eq!(rotated.decode(&user, &filters, &cursor).unwrap().t, "txn_x");
        assert!(rotated.encode(&user, &filters, &position()).starts_with("c2."));

        keys.retire_inactive();
        let retired = CursorSigner::new(keys);
        assert_eq!(retired.decode(&user, &filters, &cursor).unwrap_err().code, "invalid_cursor");
    }

    #[test]
    fn a_cursor_is_bound_to_its_user_its_filters_and_its_key() {
        let user = UserId::generate();
        let filters = Filters::parse(None, None, None, None, None).unwrap();
        let signer = CursorSigner::new(SigningKeys::random("c1"));
        let cursor = signer.encode(&user, &filters, &position());
        let refused = |c: &str, u: &UserId, f: &Filters| signer.decode(u, f, c).unwrap_err().code;
        assert_eq!(refused(&cursor, &UserId::generate(), &filters), "invalid_cursor");
        let deposits = Filters::parse(Some("DEPOSIT"), None, None, None, None).unwrap();
        assert_eq!(refused(&cursor, &user, &deposits), "invalid_cursor");
        assert_eq!(refused(&cursor.replacen("c1.", "c9.", 1), &user, &filters), "invalid_cursor");
        assert_eq!(refused(&cursor.replacen("c1.", "", 1), &user, &filters), "invalid_cursor");
        let other_key = CursorSigner::new(SigningKeys::random("c1")).encode(&user, &filters, &position());
        assert_eq!(refused(&other_key, &user, &filters), "invalid_cursor");
    }
}
