//! Game service credentials (see [`crate::auth::service`]).
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `SERVICE#<svc_id>` | `SERVICE` | `service_id`, `name`, `scopes` (list), `secret_sha256`, `status` (`ACTIVE` → `REVOKED`, once), `created_at`, `created_by`, `revoked_at`, `revoked_by`; `gsi2pk = SERVICES`, `gsi2sk = <created_at>#<svc_id>` so every credential, revoked ones too, can be listed |
//!
//! The secret itself is never stored, only its SHA-256.

use super::item::{key, s, Item, ItemExt};
use super::{get_item, now_rfc3339, update_applied, StoreError, Table};
use crate::auth::service::{Scopes, ServiceName, ServiceSecret};
use crate::domain::ids::ServiceId;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

/// The index partition listing every credential.
const LISTED: &str = "SERVICES";
const ACTIVE: &str = "ACTIVE";
const REVOKED: &str = "REVOKED";
/// Most credentials one listing answers with.
pub const MAX_LISTED: i32 = 1000;

/// A stored credential (never its secret). Serialised for operators without the hash.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceCredential {
    #[serde(rename = "client_id")]
    pub id: ServiceId,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub secret_sha256: String,
    /// `ACTIVE` or `REVOKED`.
    pub status: String,
    pub created_at: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl ServiceCredential {
    /// Whether requests may use it.
    pub fn is_active(&self) -> bool {
        self.status == ACTIVE
    }

    fn of_item(item: &Item) -> Result<Self, StoreError> {
        Ok(Self {
            id: ServiceId::parse(item.str("service_id")?)
                .map_err(|_| StoreError::Corrupt("service credential id".into()))?,
            name: item.str("name")?.to_owned(),
            scopes: item.str_list("scopes"),
            secret_sha256: item.str("secret_sha256")?.to_owned(),
            status: item.str("status")?.to_owned(),
            created_at: item.str("created_at")?.to_owned(),
            created_by: item.str("created_by")?.to_owned(),
            revoked_at: item.opt_str("revoked_at").map(str::to_owned),
            revoked_by: item.opt_str("revoked_by").map(str::to_owned),
        })
    }
}

fn credential_key(id: &ServiceId) -> Item {
    key(format!("SERVICE#{id}"), "SERVICE")
}

/// Creates an ACTIVE credential for service `name` with `scopes`, recorded as made by
/// `created_by`; returns it and its secret, which exists nowhere else from now on.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn create(
    table: &Table,
    name: &ServiceName,
    scopes: &Scopes,
    created_by: &str,
) -> Result<(ServiceCredential, ServiceSecret), StoreError> {
    let id = ServiceId::generate();
    let secret = ServiceSecret::generate();
    let now = now_rfc3339();
    let mut item = credential_key(&id);
    item.insert("entity".into(), s("service_credential"));
    item.insert("service_id".into(), s(id.as_str()));
    item.insert("name".into(), s(name.as_str()));
    item.insert("scopes".into(), AttributeValue::L(scopes.as_slice().iter().map(s).collect()));
    item.insert("secret_sha256".into(), s(secret.hash()));
    item.insert("status".into(), s(ACTIVE));
    item.insert("created_at".into(), s(&now));
    item.insert("created_by".into(), s(created_by));
    item.insert("gsi2pk".into(), s(LISTED));
    item.insert("gsi2sk".into(), s(format!("{now}#{id}")));
    let credential = ServiceCredential::of_item(&item)?;
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    Ok((credential, secret))
}

/// One credential, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get(table: &Table, id: &ServiceId) -> Result<Option<ServiceCredential>, StoreError> {
    get_item(table, credential_key(id)).await?.as_ref().map(ServiceCredential::of_item).transpose()
}

/// One credential as a request's authentication reads it: eventually consistent, half the read
/// units of [`get`]. Every request of a game service reads its one credential item, so at
/// 1,500 requests/s a consistent read would take half of a partition's 3,000 read units/s
/// (docs/benchmarks.md, "Scale"); a revocation or a new credential is seen within about a
/// second instead of at once.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_for_request(table: &Table, id: &ServiceId) -> Result<Option<ServiceCredential>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(credential_key(id)))
        .consistent_read(false)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    out.item.as_ref().map(ServiceCredential::of_item).transpose()
}

/// Every credential, revoked ones too, oldest first (at most [`MAX_LISTED`]; read from the
/// index, so one made a moment ago may be missing).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn list(table: &Table) -> Result<Vec<ServiceCredential>, StoreError> {
    let items = super::gsi2_partition(table, LISTED, MAX_LISTED).await?;
    items.iter().map(ServiceCredential::of_item).collect()
}

/// What [`revoke`] found.
#[derive(Debug)]
pub enum Revoked {
    /// Revoked now.
    Now(ServiceCredential),
    /// It was revoked before; nothing changed.
    Already(ServiceCredential),
    /// No credential has this id.
    NotFound,
}

/// Revokes a credential, at once and for good (one conditional update: ACTIVE → REVOKED).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn revoke(table: &Table, id: &ServiceId, by: &str) -> Result<Revoked, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(credential_key(id)))
        .update_expression("SET #status = :revoked, revoked_at = :now, revoked_by = :by")
        .condition_expression("attribute_exists(pk) AND #status = :active")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":revoked", s(REVOKED))
        .expression_attribute_values(":active", s(ACTIVE))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .expression_attribute_values(":by", s(by))
        .send()
        .await;
    let applied = update_applied(result)?;
    match get(table, id).await? {
        Some(credential) if applied => Ok(Revoked::Now(credential)),
        Some(credential) => Ok(Revoked::Already(credential)),
        None => Ok(Revoked::NotFound),
    }
}
