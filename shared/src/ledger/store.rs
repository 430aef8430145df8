//! DynamoDB layout of ledger accounts.

use super::{Account, AccountId};
use crate::domain::ids::UserId;
use crate::money::Currency;
use crate::store::item::{key, n, s, Item, ItemExt};
use crate::store::{StoreError, Table};

/// The key of an account item.
pub fn account_key(id: &AccountId) -> Item {
    key(format!("ACCOUNT#{id}"), "ACCOUNT")
}

/// A new, empty account item.
pub fn new_account_item(id: &AccountId, currency: Currency, owner: Option<&UserId>, now: &str) -> Item {
    let mut item = account_key(id);
    item.insert("entity".into(), s("account"));
    item.insert("account_id".into(), s(id.as_str()));
    item.insert("currency".into(), s(currency.code()));
    item.insert("balance".into(), n(0));
    item.insert("held".into(), n(0));
    item.insert("available".into(), n(0));
    item.insert("created_at".into(), s(now));
    item.insert("updated_at".into(), s(now));
    if let Some(owner) = owner {
        item.insert("owner_id".into(), s(owner.as_str()));
    }
    item
}

/// Reads an account item.
///
/// # Errors
/// [`StoreError::Corrupt`] when an attribute is missing.
pub fn account_from_item(item: &Item) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::from_stored(item.str("account_id")?),
        currency: Currency::parse(item.str("currency")?)
            .ok_or_else(|| StoreError::Corrupt("account currency".into()))?,
        balance: item.decimal("balance")?,
        held: item.decimal("held")?,
        available: item.decimal("available")?,
        updated_at: item.str("updated_at")?.to_owned(),
    })
}

/// One account, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_account(table: &Table, id: &AccountId) -> Result<Option<Account>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(account_key(id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(StoreError::dynamo)?;
    out.item.as_ref().map(account_from_item).transpose()
}
